/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * blkserv-log: offline checks of a log backend directory.
 *
 *   blkserv-log verify DIR   read and check every record of every segment
 *   blkserv-log stats DIR    the same, then print what the log holds
 *
 * Nothing is changed: a torn tail is reported (the daemon cuts it at its
 * next start).  Exit status: 0 sound (possibly with a torn tail), 1 the log
 * is damaged (the message names segment and offset), 2 usage or I/O error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "recover.h"
#include "store.h"

static const char *const level_names[8] = { "", "", "", "error", "warning", "notice", "info", "debug" };

__attribute__((format(printf, 3, 0))) static void to_stderr(void *ctx, int level, const char *fmt, va_list ap)
{
	fprintf(stderr, "blkserv-log: %s: ", level_names[level & 7]);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

static int usage(FILE *f, int status)
{
	fprintf(f, "usage: blkserv-log verify DIR\n"
		   "       blkserv-log stats DIR\n"
		   "Check every record of a log backend directory (checksums, sequence, ranges) without\n"
		   "changing it; stats also prints segments, live and garbage bytes.\n"
		   "Exit status: 0 sound, 1 damaged (segment and offset are named), 2 usage or I/O error.\n");
	return status;
}

static int open_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0) {
		fprintf(stderr, "blkserv-log: cannot open %s: %s\n", dir, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_SH | LOCK_NB) < 0)
		fprintf(stderr,
			"blkserv-log: warning: %s is in use by a running daemon; "
			"its newest records may still be changing\n",
			dir);
	return fd;
}

static void print_segments(struct log_store *s)
{
	printf("%-18s %12s %12s %12s %8s  %s\n", "segment", "bytes", "live", "garbage", "live%", "first_seq");
	for (size_t i = 0; i < s->nsegs; i++) {
		const struct log_segment *g = &s->segs[i];
		printf("%-18" PRIu64 " %12" PRIu64 " %12" PRIu64 " %12" PRIu64 " %7.1f%%  %" PRIu64 "%s\n", g->id,
		       g->size, g->live, g->size - g->live, g->size ? 100.0 * (double)g->live / (double)g->size : 0.0,
		       g->first_seq, g->flags & LOG_SEG_F_CHECKPOINT ? " (checkpoint)" : "");
	}
}

static void print_stats(struct log_store *s, const struct recover_result *rr)
{
	print_segments(s);
	printf("device_size=%" PRIu64 "\nblock_size=%u\nsegments=%zu\nlog_bytes=%" PRIu64 "\nlive_bytes=%" PRIu64
	       "\ngarbage_bytes=%" PRIu64 "\nextents=%" PRIu64 "\nnext_seq=%" PRIu64 "\ncheckpoint_segment=%" PRIu64
	       "\nreplayed_bytes=%" PRIu64 "\nspace_amplification=%.3f\n",
	       s->device_size, s->block_size, s->nsegs, s->total_bytes, s->live_bytes, s->total_bytes - s->live_bytes,
	       emap_count(&s->map), s->next_seq, s->ckpt_seg, rr->replayed_bytes,
	       s->live_bytes ? (double)s->total_bytes / (double)s->live_bytes : 0.0);
}

int main(int argc, char **argv)
{
	struct recover_opts ro = { .read_only = true, .verify_all = true };
	struct recover_result rr;
	struct log_store s;
	bool stats;
	int r;

	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
		return usage(stdout, 0);
	if (argc != 3 || (strcmp(argv[1], "verify") && strcmp(argv[1], "stats")))
		return usage(stderr, 2);
	stats = !strcmp(argv[1], "stats");
	store_init(&s);
	s.msg = to_stderr;
	s.dir = strdup(argv[2]);
	s.dirfd = open_dir(argv[2]);
	if (s.dirfd < 0 || !s.dir)
		return 2;
	r = log_recover(&s, &ro, &rr);
	if (r == -EBADMSG) {
		fprintf(stderr, "blkserv-log: %s is damaged\n", argv[2]);
		return 1;
	}
	if (r < 0) {
		fprintf(stderr, "blkserv-log: cannot read %s: %s\n", argv[2], strerror(-r));
		return 2;
	}
	if (stats)
		print_stats(&s, &rr);
	printf("%s: %s: %zu segment(s), %" PRIu64 " records verified (%" PRIu64 " bytes)%s\n", argv[2],
	       rr.torn_tail ? "sound, with a torn tail" : "sound", s.nsegs, rr.verified_records + rr.replayed_records,
	       rr.verified_bytes + rr.replayed_bytes, rr.torn_tail ? " (the daemon cuts it at its next start)" : "");
	close(s.dirfd);
	store_free(&s);
	return 0;
}

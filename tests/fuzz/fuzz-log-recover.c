/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz the log backend's recovery (backends/log/recover.c) on arbitrary
 * segment bytes: any directory content must give a log or -EBADMSG with a
 * message, never a crash, a hang or a leak.  And recovery must be
 * idempotent: once it accepted (and maybe cut) a log, opening that log
 * again finds nothing to cut and the same state.
 *
 * Input: one flags byte, then the segment files, split before each
 * occurrence of the segment magic "BLKSLOG1" (at most MAX_SEGS files named
 * seg-1, seg-2, ...).  Checksums stop a fuzzer cold, so flags can make the
 * harness repair them; the checks behind them still run on what remains.
 *
 *   0x01  compact header: a piece starts with the first 72 bytes of its
 *         header (magic .. created_ns); pad it to 4096 and checksum it
 *   0x02  fix the checksums of every well-framed record
 *   0x04  recover_truncate (cut corruption instead of refusing)
 *   0x08  verify every record (verify_on_start)
 *   0x10  read-only recovery (the offline tool blkserv-log)
 *   0x20  force each header's segment id to its file's (and checksum it)
 *   0x40  force each record's segment id to its file's (with 0x02)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "format.h"
#include "recover.h"
#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SEGS 8
#define COMPACT_HEADER 72
#define MAX_FILE (1u << 20)

enum {
	F_COMPACT = 0x01,
	F_FIX_RECORDS = 0x02,
	F_CUT = 0x04,
	F_VERIFY = 0x08,
	F_READ_ONLY = 0x10,
	F_HEADER_ID = 0x20,
	F_RECORD_ID = 0x40,
};

static char dir[64];
static unsigned char file[MAX_FILE];

static void make_dir(void)
{
	/* tmpfs: recovery fdatasyncs what it cuts. */
	snprintf(dir, sizeof(dir), "/dev/shm/fuzz-log-%d", (int)getpid());
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		abort();
}

static void clear_dir(void)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (!d)
		abort();
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			(void)unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
}

static bool verbose; /* BLKSERV_FUZZ_VERBOSE=1: print what recovery says */

static void quiet(void *ctx, int level, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));
static void quiet(void *ctx, int level, const char *fmt, va_list ap)
{
	/* An error must come with a message: record that one was given. */
	*(int *)ctx += 1;
	if (verbose) {
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
	}
}

/* Re-checksum every record that is framed well enough to find its end. */
static void fix_records(unsigned char *p, size_t len, uint64_t id, unsigned flags)
{
	size_t pos = LOG_SEG_HEADER_SIZE;

	while (pos <= len && len - pos >= LOG_REC_HEADER_SIZE && log_get32(p + pos) == LOG_REC_MAGIC) {
		unsigned char *h = p + pos;
		struct log_rec r = {
			.type = log_get16(h + 6),
			.seq = log_get64(h + 8),
			.offset = log_get64(h + 16),
			.length = log_get64(h + 24),
			.payload_len = log_get64(h + 32),
			.segment = flags & F_RECORD_ID ? id : log_get64(h + 40),
			.synced_seq = log_get64(h + 48),
		};
		size_t room = len - pos - LOG_REC_HEADER_SIZE;
		size_t plen = r.payload_len <= room ? (size_t)r.payload_len : room;

		log_rec_encode(&r, crc32c(0, h + LOG_REC_HEADER_SIZE, plen), h);
		if (r.payload_len > room)
			break;
		pos += LOG_REC_HEADER_SIZE + plen;
	}
}

/* Build segment file @id from @piece in `file`; returns its length. */
static size_t build_segment(const uint8_t *piece, size_t n, uint64_t id, unsigned flags)
{
	size_t len = n;

	if (flags & F_COMPACT) {
		size_t head = n < COMPACT_HEADER ? n : COMPACT_HEADER;
		if (n - head > MAX_FILE - LOG_SEG_HEADER_SIZE)
			n = head + MAX_FILE - LOG_SEG_HEADER_SIZE;
		memset(file, 0, LOG_SEG_HEADER_SIZE);
		memcpy(file, piece, head);
		memcpy(file + LOG_SEG_HEADER_SIZE, piece + head, n - head);
		len = LOG_SEG_HEADER_SIZE + n - head;
	} else {
		len = n < MAX_FILE ? n : MAX_FILE;
		memcpy(file, piece, len);
	}
	if (len >= LOG_SEG_HEADER_SIZE && (flags & F_HEADER_ID))
		log_put64(file + 32, id);
	if (len >= LOG_SEG_HEADER_SIZE && (flags & (F_COMPACT | F_HEADER_ID)))
		log_put32(file + LOG_SEG_HEADER_SIZE - 4, crc32c(0, file, LOG_SEG_HEADER_SIZE - 4));
	if (flags & F_FIX_RECORDS)
		fix_records(file, len, id, flags);
	return len;
}

static void write_segment(uint64_t id, size_t len)
{
	char name[LOG_SEG_NAME_LEN], path[128];
	int fd;

	log_seg_name(id, name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, file, len) != (ssize_t)len)
		abort();
	close(fd);
}

/* The start of the next piece: the next segment magic after @from. */
static size_t next_piece(const uint8_t *data, size_t size, size_t from)
{
	const uint8_t *m = from + 1 < size ? memmem(data + from + 1, size - from - 1, LOG_SEG_MAGIC, 8) : NULL;

	return m ? (size_t)(m - data) : size;
}

static int recover(const struct recover_opts *o, struct log_store *s, struct recover_result *res, int *msgs)
{
	int r;

	store_init(s);
	s->msg = quiet;
	s->msg_ctx = msgs;
	s->dir = strdup(dir);
	s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (!s->dir || s->dirfd < 0)
		abort();
	r = log_recover(s, o, res);
	close(s->dirfd);
	return r;
}

/* A log that recovery accepted must open again as is, in the same state. */
static void check_idempotent(const struct recover_opts *o, const struct log_store *first)
{
	struct recover_opts again = *o;
	struct recover_result res;
	struct log_store s;
	int msgs = 0, r;

	again.read_only = true;
	r = recover(&again, &s, &res, &msgs);
	if (r < 0 || res.torn_tail || res.cut_corruption || s.next_seq != first->next_seq || s.nsegs != first->nsegs ||
	    emap_count(&s.map) != emap_count(&first->map) || s.live_bytes != first->live_bytes) {
		fprintf(stderr, "second recovery differs: r=%d torn=%d cut=%d next_seq %llu/%llu segs %zu/%zu\n", r,
			res.torn_tail, res.cut_corruption, (unsigned long long)s.next_seq,
			(unsigned long long)first->next_seq, s.nsegs, first->nsegs);
		abort();
	}
	store_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct recover_opts o;
	struct recover_result res;
	struct log_store s;
	unsigned flags;
	int msgs = 0, r;
	uint64_t id = 1;

	if (size < 1)
		return 0;
	if (!dir[0]) {
		make_dir();
		verbose = getenv("BLKSERV_FUZZ_VERBOSE") != NULL;
	}
	clear_dir();
	flags = data[0];
	o = (struct recover_opts){ .cut_corruption = flags & F_CUT,
				   .verify_all = flags & F_VERIFY,
				   .read_only = flags & F_READ_ONLY };
	for (size_t at = 1; at < size && id <= MAX_SEGS; id++) {
		size_t end = next_piece(data, size, at);
		write_segment(id, build_segment(data + at, end - at, id, flags));
		at = end;
	}
	r = recover(&o, &s, &res, &msgs);
	if (r == -EBADMSG && msgs == 0) {
		fprintf(stderr, "recovery failed (%d) without a message\n", r);
		abort();
	}
	if (verbose)
		fprintf(stderr,
			"flags 0x%02x: %d segment file(s): recovery %d, %zu segment(s), next_seq %llu, "
			"%llu extents, torn %d, cut %d\n",
			flags, (int)id - 1, r, s.nsegs, (unsigned long long)s.next_seq,
			(unsigned long long)emap_count(&s.map), res.torn_tail, res.cut_corruption);
	if (r == 0 && !o.read_only)
		check_idempotent(&o, &s);
	store_free(&s);
	return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Recovery of a log directory at start (see recover.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "crc32c.h"
#include "io-util.h"
#include "recover.h"

#define LOG_ERR 3
#define LOG_WARNING 4
#define LOG_NOTICE 5
#define LOG_INFO 6

struct recovery {
	struct log_store *s;
	const struct recover_opts *o;
	struct recover_result *res;
	unsigned char *buf; /* payloads */
	size_t cap;
	uint64_t ckpt_end; /* where the records after the loaded checkpoint start */
};

static int grow(unsigned char **buf, size_t *cap, uint64_t len)
{
	unsigned char *n;

	if (len <= *cap)
		return 0;
	if (len > SIZE_MAX / 2)
		return -ENOMEM;
	n = realloc(*buf, (size_t)len);
	if (!n)
		return -ENOMEM;
	*buf = n;
	*cap = (size_t)len;
	return 0;
}

int log_read_record(const struct log_store *s, const struct log_segment *seg, uint64_t pos, struct log_rec *rec,
		    unsigned char **buf, size_t *cap, const char **why)
{
	unsigned char hdr[LOG_REC_HEADER_SIZE];
	int r;

	if (pos > seg->size || seg->size - pos < LOG_REC_HEADER_SIZE) {
		*why = "truncated record header";
		return -EBADMSG;
	}
	r = pread_full(seg->fd, hdr, sizeof(hdr), pos);
	if (r < 0)
		return r;
	r = log_rec_decode(hdr, rec, why);
	if (r >= 0)
		r = log_rec_check_fields(rec, s->device_size, why);
	if (r < 0)
		return r;
	if (rec->segment != seg->id) {
		*why = "record belongs to another segment";
		return -EBADMSG;
	}
	if (rec->payload_len > seg->size - pos - LOG_REC_HEADER_SIZE) {
		*why = "truncated record payload";
		return -EBADMSG;
	}
	r = grow(buf, cap, rec->payload_len);
	if (r >= 0 && rec->payload_len)
		r = pread_full(seg->fd, *buf, (size_t)rec->payload_len, pos + LOG_REC_HEADER_SIZE);
	if (r < 0)
		return r;
	if (log_rec_check_crc(hdr, crc32c(0, *buf, (size_t)rec->payload_len)) < 0) {
		*why = "record checksum mismatch";
		return -EBADMSG;
	}
	return 0;
}

/* ---- cutting ------------------------------------------------------- */

static int unlink_seg(struct recovery *rc, uint64_t id)
{
	char name[LOG_SEG_NAME_LEN];

	log_seg_name(id, name);
	if (!rc->o->read_only && unlinkat(rc->s->dirfd, name, 0) < 0 && errno != ENOENT)
		return -errno;
	store_remove_seg(rc->s, id);
	return 0;
}

/* Drop everything from segment index @i, offset @pos on. */
static int cut_at(struct recovery *rc, size_t i, uint64_t pos)
{
	struct log_store *s = rc->s;
	struct log_segment *seg = &s->segs[i];
	int r;

	while (s->nsegs > i + 1) {
		r = unlink_seg(rc, s->segs[s->nsegs - 1].id);
		if (r < 0)
			return r;
	}
	if (pos <= LOG_SEG_HEADER_SIZE) {
		/* Nothing but a header would be left: a segment with a
		 * checkpoint flag and no checkpoint must not stay. */
		r = unlink_seg(rc, seg->id);
	} else {
		r = 0;
		if (!rc->o->read_only && (ftruncate(seg->fd, (off_t)pos) < 0 || fdatasync(seg->fd) < 0))
			r = -errno;
		s->total_bytes -= seg->size - pos;
		seg->size = pos;
	}
	if (r >= 0 && !rc->o->read_only && fsync(s->dirfd) < 0)
		r = -errno;
	return r;
}

/* ---- telling a torn tail from corruption --------------------------- */

/* A record at @pos whose header and payload checksums hold (no other
 * checks: this looks for records beyond a damaged one). */
static bool valid_candidate(struct recovery *rc, int fd, uint64_t id, uint64_t size, uint64_t pos, struct log_rec *rec)
{
	unsigned char hdr[LOG_REC_HEADER_SIZE];
	const char *why;

	if (size - pos < LOG_REC_HEADER_SIZE || pread_full(fd, hdr, sizeof(hdr), pos) < 0 ||
	    log_rec_decode(hdr, rec, &why) < 0 || rec->segment != id ||
	    rec->payload_len > size - pos - LOG_REC_HEADER_SIZE || grow(&rc->buf, &rc->cap, rec->payload_len) < 0)
		return false;
	if (rec->payload_len && pread_full(fd, rc->buf, (size_t)rec->payload_len, pos + LOG_REC_HEADER_SIZE) < 0)
		return false;
	return log_rec_check_crc(hdr, crc32c(0, rc->buf, (size_t)rec->payload_len)) == 0;
}

struct evidence {
	uint64_t min_seq;    /* lowest seq of a valid record seen */
	uint64_t max_synced; /* highest synced_seq of a valid record seen */
};

/* Look at every valid record in [from, size) of a segment file. */
static void scan_valid(struct recovery *rc, int fd, uint64_t id, uint64_t size, uint64_t from, struct evidence *ev)
{
	static const unsigned char magic[4] = { 'B', 'L', 'R', 'C' };
	unsigned char win[1 << 16];
	uint64_t at = from;

	ev->min_seq = UINT64_MAX;
	ev->max_synced = 0;
	while (at + LOG_REC_HEADER_SIZE <= size) {
		size_t len = (size_t)(size - at < sizeof(win) ? size - at : sizeof(win));
		if (pread_full(fd, win, len, at) < 0)
			return;
		for (unsigned char *p = win; (p = memmem(p, len - (size_t)(p - win), magic, 4)); p++) {
			struct log_rec rec;
			if (!valid_candidate(rc, fd, id, size, at + (uint64_t)(p - win), &rec))
				continue;
			if (rec.seq < ev->min_seq)
				ev->min_seq = rec.seq;
			if (rec.synced_seq > ev->max_synced)
				ev->max_synced = rec.synced_seq;
		}
		if (len < 4)
			break;
		at += len - 3;
	}
}

/* Is there a valid record after @pos in @seg appended when @bad_seq was
 * already durable?  Then the record at @pos had been flushed. */
static bool flushed_later(struct recovery *rc, const struct log_segment *seg, uint64_t pos, uint64_t bad_seq)
{
	struct evidence ev;

	scan_valid(rc, seg->fd, seg->id, seg->size, pos + 1, &ev);
	return ev.max_synced >= bad_seq;
}

/* The last segment's header is bad: was the segment ever flushed?  If one
 * of its records says a record of it was durable, the header was too. */
static bool header_was_flushed(struct recovery *rc, int fd, uint64_t id, uint64_t size)
{
	struct evidence ev;

	scan_valid(rc, fd, id, size, 0, &ev);
	return ev.min_seq != UINT64_MAX && ev.max_synced >= ev.min_seq;
}

static void seg_path(const struct log_store *s, uint64_t id, char *buf, size_t len)
{
	char name[LOG_SEG_NAME_LEN];

	log_seg_name(id, name);
	snprintf(buf, len, "%s/%s", s->dir ? s->dir : ".", name);
}

static int torn_tail(struct recovery *rc, size_t i, uint64_t pos, const char *why)
{
	struct log_segment *seg = &rc->s->segs[i];
	char path[4096];

	seg_path(rc->s, seg->id, path, sizeof(path));
	rc->res->torn_tail = true;
	rc->res->torn_seg = seg->id;
	rc->res->torn_off = pos;
	rc->res->torn_bytes = seg->size - pos;
	store_msg(rc->s, LOG_WARNING,
		  "%s: torn tail at offset %" PRIu64 " (%s): %s %" PRIu64 " bytes written after the last flush", path,
		  pos, why, rc->o->read_only ? "recovery will cut" : "cutting", seg->size - pos);
	return cut_at(rc, i, pos);
}

/* A bad record at @pos of segment index @i, where @seq was expected. */
static int bad_record(struct recovery *rc, size_t i, uint64_t pos, uint64_t seq, const char *why)
{
	struct log_store *s = rc->s;
	struct log_segment *seg = &s->segs[i];
	bool last = i + 1 == s->nsegs;
	const char *where = last ? "before the last durable point" : "in a sealed segment";
	char path[4096];

	if (last && !flushed_later(rc, seg, pos, seq))
		return torn_tail(rc, i, pos, why);
	seg_path(s, seg->id, path, sizeof(path));
	if (!rc->o->cut_corruption) {
		store_msg(s, LOG_ERR,
			  "%s: corrupt record at offset %" PRIu64 " (segment %" PRIu64 ", seq %" PRIu64 "): %s, %s; "
			  "refusing to open the log (check it with `blkserv-log verify %s`; recover_truncate = true "
			  "cuts the log there, losing everything written after that point)",
			  path, pos, seg->id, seq, why, where, s->dir ? s->dir : ".");
		return -EBADMSG;
	}
	store_msg(s, LOG_ERR,
		  "%s: corrupt record at offset %" PRIu64 " (segment %" PRIu64 ", seq %" PRIu64 "): %s, %s; "
		  "recover_truncate is set: cutting the log there and dropping %zu later segment(s)",
		  path, pos, seg->id, seq, why, where, s->nsegs - i - 1);
	rc->res->cut_corruption = true;
	return cut_at(rc, i, pos);
}

/* ---- segments ------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int list_segments(int dirfd, uint64_t **ret, size_t *ret_n)
{
	int fd = dup(dirfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	uint64_t *ids = NULL, id;
	size_t n = 0, cap = 0;
	struct dirent *de;

	if (!d) {
		safe_close(fd);
		return -errno;
	}
	rewinddir(d);
	while ((de = readdir(d))) {
		if (log_seg_parse_name(de->d_name, &id) < 0)
			continue;
		if (n == cap) {
			uint64_t *nids = realloc(ids, (cap = cap ? cap * 2 : 64) * sizeof(*ids));
			if (!nids) {
				free(ids);
				closedir(d);
				return -ENOMEM;
			}
			ids = nids;
		}
		ids[n++] = id;
	}
	closedir(d);
	if (n > 1)
		qsort(ids, n, sizeof(*ids), cmp_u64);
	*ret = ids;
	*ret_n = n;
	return 0;
}

/* Does @h belong with the segments already read? */
static const char *header_mismatch(struct log_store *s, const struct log_seg_header *h, uint64_t id)
{
	if (h->id != id)
		return "segment id in the header differs from the file name";
	if (s->nsegs == 0)
		return NULL;
	if (memcmp(h->uuid, s->uuid, 16) != 0)
		return "segment belongs to another log (uuid differs)";
	if (h->device_size != s->device_size || h->block_size != s->block_size)
		return "segment header disagrees about the device size";
	return NULL;
}

static int open_one(struct recovery *rc, uint64_t id, bool last)
{
	struct log_store *s = rc->s;
	unsigned char buf[LOG_SEG_HEADER_SIZE];
	char name[LOG_SEG_NAME_LEN], path[4096];
	struct log_seg_header h;
	struct log_segment seg = { .id = id, .fd = -1 };
	const char *why = "segment shorter than its header";
	struct stat st;
	int r = -EBADMSG;

	log_seg_name(id, name);
	seg_path(s, id, path, sizeof(path));
	seg.fd = openat(s->dirfd, name, (rc->o->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOFOLLOW);
	if (seg.fd < 0 || fstat(seg.fd, &st) < 0) {
		r = -errno;
		store_msg(s, LOG_ERR, "cannot open %s: %s", path, strerror(-r));
		safe_close(seg.fd);
		return r;
	}
	seg.size = (uint64_t)st.st_size;
	if (seg.size >= LOG_SEG_HEADER_SIZE && (r = pread_full(seg.fd, buf, sizeof(buf), 0)) >= 0 &&
	    (r = log_seg_header_decode(buf, &h, &why)) >= 0) {
		why = header_mismatch(s, &h, id);
		r = why ? -EBADMSG : 0;
	}
	if (r == -EBADMSG && last && !header_was_flushed(rc, seg.fd, id, seg.size)) {
		/* Created but its header never became durable: a torn tail. */
		store_msg(s, LOG_WARNING, "%s: incomplete segment header (%s): %s the segment", path, why,
			  rc->o->read_only ? "recovery will remove" : "removing");
		close(seg.fd);
		if (!rc->o->read_only && (unlinkat(s->dirfd, name, 0) < 0 || fsync(s->dirfd) < 0))
			return -errno;
		return 0;
	}
	if (r < 0) {
		close(seg.fd);
		if (r == -EBADMSG)
			store_msg(s, LOG_ERR,
				  "%s: bad segment header at offset 0 (segment %" PRIu64 "): %s; "
				  "refusing to open the log",
				  path, id, why);
		return r;
	}
	if (s->nsegs == 0) {
		memcpy(s->uuid, h.uuid, 16);
		s->device_size = h.device_size;
		s->block_size = h.block_size;
	}
	seg.first_seq = h.first_seq;
	seg.flags = h.flags;
	r = store_add_seg(s, &seg);
	if (r < 0)
		close(seg.fd);
	return r;
}

static int open_segments(struct recovery *rc)
{
	_cleanup_free_ uint64_t *ids = NULL;
	size_t n = 0;
	int r;

	r = list_segments(rc->s->dirfd, &ids, &n);
	for (size_t i = 0; r >= 0 && i < n; i++)
		r = open_one(rc, ids[i], i + 1 == n);
	return r;
}

/* ---- replay -------------------------------------------------------- */

static void reset_index(struct log_store *s)
{
	emap_free(&s->map);
	emap_init(&s->map);
	for (size_t i = 0; i < s->nsegs; i++)
		s->segs[i].live = 0;
	s->live_bytes = 0;
	s->ckpt_seg = 0;
}

/* Load the checkpoint at the start of segment index @i.  1: loaded; 0: it
 * was a torn tail and is gone; <0: refuse. */
static int load_checkpoint(struct recovery *rc, size_t i)
{
	struct log_store *s = rc->s;
	struct log_segment *seg = &s->segs[i];
	const char *why = NULL;
	struct log_rec rec;
	int r;

	r = log_read_record(s, seg, LOG_SEG_HEADER_SIZE, &rec, &rc->buf, &rc->cap, &why);
	if (r == 0 && (rec.type != LOG_REC_CHECKPOINT || rec.seq != seg->first_seq)) {
		why = rec.type != LOG_REC_CHECKPOINT ? "expected a checkpoint record" : "unexpected sequence number";
		r = -EBADMSG;
	}
	if (r == -EBADMSG)
		return bad_record(rc, i, LOG_SEG_HEADER_SIZE, seg->first_seq, why);
	if (r < 0)
		return r;
	reset_index(s);
	r = store_ckpt_load(s, rc->buf, rec.length, seg->id, rc->o->cut_corruption);
	if (r < 0)
		return r;
	s->next_seq = rec.seq + 1;
	rc->ckpt_end = LOG_SEG_HEADER_SIZE + LOG_REC_HEADER_SIZE + rec.payload_len;
	rc->res->from_checkpoint = true;
	rc->res->ckpt_bytes = LOG_REC_HEADER_SIZE + rec.payload_len;
	return 1;
}

/* Verify (not apply) every record of segment index @i. */
static int verify_segment(struct recovery *rc, size_t i)
{
	struct log_store *s = rc->s;
	struct log_segment *seg = &s->segs[i];
	uint64_t pos = LOG_SEG_HEADER_SIZE, seq = seg->first_seq;
	char path[4096];

	seg->nrecs = 0; /* its record list, as a by-product */
	while (pos < seg->size) {
		struct log_rec rec;
		const char *why = NULL;
		int r = log_read_record(s, seg, pos, &rec, &rc->buf, &rc->cap, &why);
		if (r == 0 && rec.type == LOG_REC_WRITE) {
			r = store_rec_reserve(seg);
			if (r >= 0)
				store_rec_push(seg, pos, rec.payload_len);
		}
		if (r == 0 && rec.seq != seq) {
			why = "unexpected sequence number";
			r = -EBADMSG;
		}
		if (r == -EBADMSG) {
			seg_path(s, seg->id, path, sizeof(path));
			store_msg(s, LOG_ERR,
				  "%s: corrupt record at offset %" PRIu64 " (segment %" PRIu64 ", seq %" PRIu64
				  "): %s, in a sealed segment",
				  path, pos, seg->id, seq, why);
		}
		if (r < 0)
			return r;
		rc->res->verified_records++;
		rc->res->verified_bytes += LOG_REC_HEADER_SIZE + rec.payload_len;
		pos += LOG_REC_HEADER_SIZE + rec.payload_len;
		seq++;
	}
	seg->recs_known = true;
	return 0;
}

/* Replay segment index @i from @pos.  1: go on with the next segment;
 * 0: the log was cut here, stop; <0: refuse. */
static int replay_segment(struct recovery *rc, size_t i, uint64_t pos)
{
	struct log_store *s = rc->s;
	struct log_segment *seg = &s->segs[i];

	if (pos == LOG_SEG_HEADER_SIZE && seg->first_seq != s->next_seq) {
		int r = bad_record(rc, i, 0, s->next_seq,
				   "segment starts at an unexpected sequence number "
				   "(a segment is missing)");
		return r < 0 ? r : 0;
	}
	/* Replay sees every record from here on (before @pos there is at
	 * most the checkpoint): its record list is complete. */
	seg->recs_known = true;
	while (pos < seg->size) {
		struct log_rec rec;
		const char *why = NULL;
		int r = log_read_record(s, seg, pos, &rec, &rc->buf, &rc->cap, &why);
		if (r == 0 && rec.seq != s->next_seq) {
			why = "unexpected sequence number";
			r = -EBADMSG;
		}
		if (r == -EBADMSG) {
			r = bad_record(rc, i, pos, s->next_seq, why);
			return r < 0 ? r : 0;
		}
		if (r >= 0)
			r = store_apply(s, &rec, seg->id, pos);
		if (r < 0)
			return r;
		rc->res->replayed_records++;
		rc->res->replayed_bytes += LOG_REC_HEADER_SIZE + rec.payload_len;
		pos += LOG_REC_HEADER_SIZE + rec.payload_len;
		s->next_seq++;
	}
	return 1;
}

/* Pick where replay starts: after the newest checkpoint that loads. */
static int find_start(struct recovery *rc, size_t *ret_i, uint64_t *ret_pos)
{
	struct log_store *s = rc->s;

	for (size_t i = s->nsegs; i-- > 0;) {
		if (!(s->segs[i].flags & LOG_SEG_F_CHECKPOINT))
			continue;
		int r = load_checkpoint(rc, i);
		if (r < 0)
			return r;
		if (r > 0) {
			*ret_i = i;
			*ret_pos = rc->ckpt_end;
			return 0;
		}
	}
	reset_index(s);
	*ret_i = 0;
	*ret_pos = LOG_SEG_HEADER_SIZE;
	if (s->nsegs && s->segs[0].first_seq != 1) {
		char path[4096];
		seg_path(s, s->segs[0].id, path, sizeof(path));
		store_msg(s, LOG_ERR,
			  "%s: the log starts at sequence number %" PRIu64 " but has no checkpoint: "
			  "older segments are missing; refusing to open the log",
			  path, s->segs[0].first_seq);
		return -EBADMSG;
	}
	if (s->nsegs)
		s->next_seq = s->segs[0].first_seq;
	return 0;
}

int log_recover(struct log_store *s, const struct recover_opts *o, struct recover_result *res)
{
	struct recovery rc = { .s = s, .o = o, .res = res };
	uint64_t start = now_ns(), pos = 0;
	size_t i = 0;
	int r;

	memset(res, 0, sizeof(*res));
	r = open_segments(&rc);
	if (r >= 0 && s->nsegs)
		r = find_start(&rc, &i, &pos);
	res->start_seg = i < s->nsegs ? s->segs[i].id : 0;
	for (size_t k = 0; r >= 0 && o->verify_all && k < i; k++)
		r = verify_segment(&rc, k);
	for (r = r < 0 ? r : 1; r > 0 && i < s->nsegs; i++, pos = LOG_SEG_HEADER_SIZE)
		r = replay_segment(&rc, i, pos);
	free(rc.buf);
	res->duration_ns = now_ns() - start;
	return r < 0 ? r : 0;
}

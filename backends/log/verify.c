/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Verification of what the log hands out: every read checks the checksum
 * of each record its bytes come from (the whole record: the checksum
 * covers its header and whole payload), compaction checks what it copies,
 * and the online scrub walks every segment.  A mismatch fails the read
 * with EIO, never returns the bytes, counts the record once and logs it
 * once (rate-limited) with segment and offset.
 *
 * Finding the record of a byte: an extent of the index knows the file
 * offset of its bytes, not where their record starts, so every segment
 * keeps the list of its WRITE records (store.h).  Segments written or
 * replayed by this process have it from the start; older ones (before the
 * checkpoint the start loaded) are scanned once, at their first read.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "crc32c.h"
#include "io-util.h"
#include "logdev.h"

#define MSG_WINDOW_NS (10ull * 1000000000ull)
#define MSG_PER_WINDOW 20 /* corruption messages per 10 s, then a count */
#define MAX_BAD_REMEMBERED 65536
#define SCRUB_PROGRESS_BYTES (4ull << 20)
#define SCRUB_MAX_LINES 100 /* per-record lines of one scrub, then only the summary */

/* ---- reporting ----------------------------------------------------- */

static bool remember_bad(struct logdev *ld, uint64_t seg, uint64_t pos)
{
	for (size_t i = 0; i < ld->nbad; i++)
		if (ld->bad[i].seg == seg && ld->bad[i].pos == pos)
			return false;
	if (ld->nbad == ld->bad_cap && ld->nbad < MAX_BAD_REMEMBERED) {
		size_t cap = ld->bad_cap ? ld->bad_cap * 2 : 16;
		struct log_bad *n = realloc(ld->bad, cap * sizeof(*n));
		if (n) {
			ld->bad = n;
			ld->bad_cap = cap;
		}
	}
	if (ld->nbad < ld->bad_cap)
		ld->bad[ld->nbad++] = (struct log_bad){ seg, pos };
	return true;
}

/* May a message go out now?  bad_lock held. */
static bool msg_allowed(struct logdev *ld)
{
	uint64_t now = now_ns();

	if (now - ld->msg_window_ns >= MSG_WINDOW_NS) {
		if (ld->msg_suppressed)
			blkserv_error(ld->dev, "log %s: %" PRIu64 " more corruption message(s) suppressed", ld->s.dir,
				      ld->msg_suppressed);
		ld->msg_window_ns = now;
		ld->msg_count = 0;
		ld->msg_suppressed = 0;
	}
	if (ld->msg_count >= MSG_PER_WINDOW) {
		ld->msg_suppressed++;
		return false;
	}
	ld->msg_count++;
	return true;
}

void log_report_bad(struct logdev *ld, uint64_t seg, uint64_t pos, const char *why, const char *what)
{
	char name[LOG_SEG_NAME_LEN];

	pthread_mutex_lock(&ld->bad_lock);
	if (remember_bad(ld, seg, pos)) {
		ld->checksum_errors++;
		log_seg_name(seg, name);
		if (msg_allowed(ld))
			blkserv_error(ld->dev,
				      "log %s/%s: corrupt record at offset %" PRIu64 " (segment %" PRIu64 "): %s; %s",
				      ld->s.dir, name, pos, seg, why, what);
	}
	pthread_mutex_unlock(&ld->bad_lock);
}

/* ---- record lists of old segments ---------------------------------- */

/* Is there a whole valid record of segment @id at @pos?  Header and
 * payload checksums, fields and segment id: what a resync may trust. */
static bool valid_at(int fd, uint64_t id, uint64_t size, uint64_t device_size, uint64_t pos, struct log_rec *rec,
		     unsigned char **buf, size_t *cap)
{
	unsigned char hdr[LOG_REC_HEADER_SIZE];
	const char *why;

	if (size - pos < LOG_REC_HEADER_SIZE || pread_full(fd, hdr, sizeof(hdr), pos) < 0 ||
	    log_rec_decode(hdr, rec, &why) < 0 || log_rec_check_fields(rec, device_size, &why) < 0 ||
	    rec->segment != id || rec->payload_len > size - pos - LOG_REC_HEADER_SIZE)
		return false;
	if (rec->payload_len > *cap) {
		unsigned char *n = realloc(*buf, (size_t)rec->payload_len);
		if (!n)
			return false;
		*buf = n;
		*cap = (size_t)rec->payload_len;
	}
	if (rec->payload_len && pread_full(fd, *buf, (size_t)rec->payload_len, pos + LOG_REC_HEADER_SIZE) < 0)
		return false;
	return log_rec_check_crc(hdr, crc32c(0, *buf, (size_t)rec->payload_len)) == 0;
}

/* The next valid record after a bad header at @pos, or @size.  Records
 * are packed without alignment: look for the magic at every byte. */
static uint64_t resync(int fd, uint64_t id, uint64_t size, uint64_t device_size, uint64_t pos)
{
	static const unsigned char magic[4] = { 'B', 'L', 'R', 'C' };
	_cleanup_free_ unsigned char *win = malloc(1 << 16), *buf = NULL;
	size_t cap = 0;
	uint64_t at = pos + 1;

	if (!win)
		return size;
	while (at + LOG_REC_HEADER_SIZE <= size) {
		size_t len = (size_t)(size - at < (1 << 16) ? size - at : (1 << 16));
		if (pread_full(fd, win, len, at) < 0)
			return size;
		for (unsigned char *p = win; (p = memmem(p, len - (size_t)(p - win), magic, 4)); p++) {
			struct log_rec rec;
			if (valid_at(fd, id, size, device_size, at + (uint64_t)(p - win), &rec, &buf, &cap))
				return at + (uint64_t)(p - win);
		}
		if (len < 4)
			break;
		at += len - 3;
	}
	return size;
}

/* Read the record headers of @seg (sealed: it never changes) into a list
 * of its WRITE records; a header that does not decode is listed as bad
 * and reported, and the scan goes on at the next valid record. */
static int scan_segment(struct logdev *ld, struct log_segment *seg)
{
	uint64_t pos = LOG_SEG_HEADER_SIZE;
	int r = 0;

	seg->nrecs = 0;
	while (r >= 0 && pos < seg->size) {
		unsigned char hdr[LOG_REC_HEADER_SIZE];
		const char *why = "truncated record header";
		struct log_rec rec;
		bool ok = seg->size - pos >= LOG_REC_HEADER_SIZE;

		if (ok) {
			r = pread_full(seg->fd, hdr, sizeof(hdr), pos);
			if (r < 0)
				break;
			ok = log_rec_decode(hdr, &rec, &why) == 0 &&
			     log_rec_check_fields(&rec, ld->s.device_size, &why) == 0;
			if (ok && (rec.segment != seg->id || rec.payload_len > seg->size - pos - LOG_REC_HEADER_SIZE)) {
				why = rec.segment != seg->id ? "record belongs to another segment"
							     : "truncated record payload";
				ok = false;
			}
		}
		r = store_rec_reserve(seg);
		if (r < 0)
			break;
		if (ok) {
			if (rec.type == LOG_REC_WRITE)
				store_rec_push(seg, pos, rec.payload_len);
			pos += LOG_REC_HEADER_SIZE + rec.payload_len;
			continue;
		}
		uint64_t next = resync(seg->fd, seg->id, seg->size, ld->s.device_size, pos);
		if (next - pos > LOG_REC_HEADER_SIZE)
			store_rec_push(seg, pos, (next - pos - LOG_REC_HEADER_SIZE) | LOG_RECENT_BADHDR);
		log_report_bad(ld, seg->id, pos, why,
			       "found while indexing the segment; reads of the data "
			       "there fail with EIO");
		pos = next;
	}
	return r;
}

int log_recs_build(struct logdev *ld, uint64_t seg_id)
{
	struct log_segment *seg, tmp = { .id = seg_id, .fd = -1 };
	uint64_t t0 = now_ns();
	int r = 0;

	/* One scan at a time; the scan itself holds no index_lock, so
	 * writers and other readers go on meanwhile (it reads its own fd:
	 * compaction may delete the segment under it). */
	pthread_mutex_lock(&ld->scan_lock);
	pthread_rwlock_rdlock(&ld->index_lock);
	seg = store_seg(&ld->s, seg_id);
	if (seg && !atomic_load(&seg->recs_known)) {
		tmp.size = seg->size;
		tmp.fd = fcntl(seg->fd, F_DUPFD_CLOEXEC, 3);
		if (tmp.fd < 0)
			r = -errno;
	}
	pthread_rwlock_unlock(&ld->index_lock);
	if (tmp.fd >= 0) {
		r = scan_segment(ld, &tmp);
		close(tmp.fd);
	}
	if (r < 0) {
		(void)blkserv_error_errno(ld->dev, r,
					  "log %s: cannot read the record headers of segment %" PRIu64 ": %m",
					  ld->s.dir, seg_id);
	} else if (tmp.fd >= 0) {
		/* Nobody reads a list before recs_known says it is complete,
		 * and scan_lock keeps other installers out: shared is enough. */
		pthread_rwlock_rdlock(&ld->index_lock);
		seg = store_seg(&ld->s, seg_id);
		if (seg && !atomic_load(&seg->recs_known)) {
			free(seg->recs);
			seg->recs = tmp.recs;
			seg->nrecs = tmp.nrecs;
			seg->recs_cap = tmp.recs_cap;
			tmp.recs = NULL;
			atomic_store_explicit(&seg->recs_known, true, memory_order_release);
		}
		pthread_rwlock_unlock(&ld->index_lock);
		blkserv_debug(ld->dev, "log %s: indexed the %zu records of segment %" PRIu64 " in %.1f ms", ld->s.dir,
			      tmp.nrecs, seg_id, (double)(now_ns() - t0) / 1e6);
	}
	free(tmp.recs);
	pthread_mutex_unlock(&ld->scan_lock);
	return r;
}

/* ---- verified reads ------------------------------------------------ */

int log_read_verified(int fd, uint64_t seg_id, uint64_t device_size, const struct log_rec_ent *e, uint64_t foff,
		      uint64_t n, void *dst, const char **why)
{
	uint64_t payload = e->pos + LOG_REC_HEADER_SIZE, len = e->len & ~LOG_RECENT_BADHDR, before, after;
	unsigned char hdr[LOG_REC_HEADER_SIZE];
	_cleanup_free_ unsigned char *scratch = NULL;
	struct iovec iov[4];
	struct log_rec rec;
	uint32_t crc;
	int k = 0, r;

	if (foff < payload || n > len || foff - payload > len - n) {
		*why = "the index points outside its record";
		r = -EBADMSG;
		goto fail;
	}
	before = foff - payload;
	after = len - before - n;
	if (e->len & LOG_RECENT_BADHDR) {
		*why = "its record header is corrupt";
		r = -EBADMSG;
		goto fail;
	}
	/* One read: the header, the bytes asked for straight into @dst, and
	 * what else the checksum covers into scratch space. */
	if (before + after) {
		scratch = malloc((size_t)(before + after));
		if (!scratch) {
			r = -ENOMEM;
			goto fail;
		}
	}
	iov[k++] = (struct iovec){ hdr, sizeof(hdr) };
	if (before)
		iov[k++] = (struct iovec){ scratch, (size_t)before };
	iov[k++] = (struct iovec){ dst, (size_t)n };
	if (after)
		iov[k++] = (struct iovec){ scratch + before, (size_t)after };
	r = preadv_full(fd, iov, k, e->pos);
	if (r < 0)
		goto fail;
	r = -EBADMSG;
	if (log_rec_decode(hdr, &rec, why) < 0 || log_rec_check_fields(&rec, device_size, why) < 0)
		goto fail;
	if (rec.type != LOG_REC_WRITE || rec.segment != seg_id || rec.payload_len != len) {
		*why = "record header does not match the index";
		goto fail;
	}
	crc = crc32c(0, scratch, (size_t)before);
	crc = crc32c(crc, dst, (size_t)n);
	crc = crc32c(crc, scratch ? scratch + before : NULL, (size_t)after);
	if (log_rec_check_crc(hdr, crc) < 0) {
		*why = "record checksum mismatch";
		goto fail;
	}
	return 0;
fail:
	memset(dst, 0, (size_t)n); /* the bytes are not to be trusted: never hand them out */
	return r;
}

/* ---- scrub --------------------------------------------------------- */

/* One segment as the scrub reads it: its own fd, so the queues and
 * compaction never wait for the scrub's reads. */
struct scrub_seg {
	uint64_t id, size;
	int fd;
	bool replayed; /* at or after the newest checkpoint: the next start reads it */
};

struct scrub_run {
	struct logdev *ld;
	struct blkserv_scrub *sc;
	uint64_t total, done, next_progress;
	uint64_t errors, garbage, records, lines;
	uint64_t first_seg, first_pos;
	unsigned char *buf;
	size_t cap;
	bool cancelled;
};

/* Does the index point into [from, to) of segment @id?  Under index_lock:
 * a walk of the whole index, done only for a corrupt record. */
static bool range_live(struct logdev *ld, uint64_t id, uint64_t from, uint64_t to)
{
	struct emap_iter it;
	const struct extent *x;
	bool live = false;

	pthread_rwlock_rdlock(&ld->index_lock);
	emap_seek(&ld->s.map, 0, &it);
	for (; !live && (x = emap_get(&ld->s.map, &it)); emap_next(&ld->s.map, &it))
		live = x->seg == id && x->foff != EXTENT_ZERO && x->foff < to && x->foff + x->len > from;
	pthread_rwlock_unlock(&ld->index_lock);
	return live;
}

static void scrub_bad(struct scrub_run *sr, const struct scrub_seg *ss, uint64_t pos, uint64_t end, const char *why)
{
	struct logdev *ld = sr->ld;
	bool live = ss->replayed || range_live(ld, ss->id, pos, end);
	char name[LOG_SEG_NAME_LEN];

	log_seg_name(ss->id, name);
	if (!live) {
		sr->garbage++;
		if (sr->lines++ < SCRUB_MAX_LINES)
			blkserv_warning(ld->dev,
					"scrub of %s: %s: corrupt record at offset %" PRIu64 " (segment %" PRIu64
					"): %s; no data refers to it any more (garbage): nothing lost, but "
					"check the disk",
					ld->s.dir, name, pos, ss->id, why);
		return;
	}
	if (sr->errors++ == 0) {
		sr->first_seg = ss->id;
		sr->first_pos = pos;
	}
	if (sr->lines++ < SCRUB_MAX_LINES)
		blkserv_error(ld->dev,
			      "scrub of %s: %s: corrupt record at offset %" PRIu64 " (segment %" PRIu64 "): %s",
			      ld->s.dir, name, pos, ss->id, why);
	log_report_bad(ld, ss->id, pos, why, "found by scrub");
	pthread_mutex_lock(&ld->append_lock);
	struct log_segment *seg = store_seg(&ld->s, ss->id);
	if (seg)
		seg->bad = true;
	pthread_mutex_unlock(&ld->append_lock);
}

static bool scrub_progress(struct scrub_run *sr)
{
	if (sr->done < sr->next_progress)
		return true;
	sr->next_progress = sr->done + SCRUB_PROGRESS_BYTES;
	if (!sr->sc->progress(sr->sc, sr->done, sr->total, sr->errors))
		sr->cancelled = true;
	return !sr->cancelled;
}

/* Verify every record of one segment, walking its headers; after a bad
 * one, go on at the next valid record. */
static int scrub_segment(struct scrub_run *sr, const struct scrub_seg *ss)
{
	struct logdev *ld = sr->ld;
	struct log_segment seg = { .id = ss->id, .fd = ss->fd, .size = ss->size };
	unsigned char hdr[LOG_SEG_HEADER_SIZE];
	struct log_seg_header h;
	uint64_t pos = LOG_SEG_HEADER_SIZE;
	const char *why = NULL;
	int r;

	r = pread_full(ss->fd, hdr, sizeof(hdr), 0);
	if (r < 0)
		return r;
	if (log_seg_header_decode(hdr, &h, &why) < 0 || h.id != ss->id ||
	    memcmp(h.uuid, ld->s.uuid, sizeof(h.uuid)) != 0) {
		/* The next start refuses the log over this: always an error. */
		struct scrub_seg all = *ss;
		all.replayed = true;
		scrub_bad(sr, &all, 0, LOG_SEG_HEADER_SIZE, why ? why : "segment header does not match the log");
	}
	sr->done += LOG_SEG_HEADER_SIZE;
	while (pos < ss->size && scrub_progress(sr)) {
		struct log_rec rec;
		why = NULL;
		r = log_read_record(&ld->s, &seg, pos, &rec, &sr->buf, &sr->cap, &why);
		if (r == 0) {
			sr->records++;
			sr->done += LOG_REC_HEADER_SIZE + rec.payload_len;
			pos += LOG_REC_HEADER_SIZE + rec.payload_len;
			continue;
		}
		if (r != -EBADMSG)
			return r;
		uint64_t next = resync(ss->fd, ss->id, ss->size, ld->s.device_size, pos);
		scrub_bad(sr, ss, pos, next, why);
		sr->done += next - pos;
		pos = next;
	}
	return 0;
}

/* The segments to scrub, as they are now (later ones are new data). */
static int scrub_snapshot(struct logdev *ld, uint64_t **ret, size_t *ret_n, uint64_t *ret_total)
{
	uint64_t *ids;

	pthread_mutex_lock(&ld->append_lock);
	ids = calloc(ld->s.nsegs ? ld->s.nsegs : 1, sizeof(*ids));
	*ret_total = 0;
	for (size_t i = 0; ids && i < ld->s.nsegs; i++) {
		ids[i] = ld->s.segs[i].id;
		*ret_total += ld->s.segs[i].size;
	}
	*ret_n = ld->s.nsegs;
	pthread_mutex_unlock(&ld->append_lock);
	*ret = ids;
	return ids ? 0 : -ENOMEM;
}

/* Its own fd and current size; -ENOENT if compaction deleted it (its
 * live data was verified when copied). */
static int scrub_open_seg(struct logdev *ld, uint64_t id, struct scrub_seg *ret)
{
	struct log_segment *seg;
	int r = 0;

	pthread_mutex_lock(&ld->append_lock);
	seg = store_seg(&ld->s, id);
	if (!seg) {
		r = -ENOENT;
	} else {
		*ret = (struct scrub_seg){ .id = id,
					   .size = seg->size,
					   .replayed = id >= ld->ckpt_seg,
					   .fd = fcntl(seg->fd, F_DUPFD_CLOEXEC, 3) };
		if (ret->fd < 0)
			r = -errno;
	}
	pthread_mutex_unlock(&ld->append_lock);
	return r;
}

static void scrub_finish(struct scrub_run *sr, int r, uint64_t t0, size_t nsegs)
{
	struct logdev *ld = sr->ld;
	struct log_scrub_stats *st = &ld->scrub;
	struct timespec now;
	double secs = (double)(now_ns() - t0) / 1e9;
	char name[LOG_SEG_NAME_LEN];

	clock_gettime(CLOCK_REALTIME, &now);
	pthread_mutex_lock(&ld->bad_lock);
	st->running = false;
	st->runs++;
	st->last_result = r == -ECANCELED ? LOG_SCRUB_CANCELLED
			  : r < 0         ? LOG_SCRUB_FAILED
			  : sr->errors    ? LOG_SCRUB_CORRUPT
					  : LOG_SCRUB_CLEAN;
	st->errors = sr->errors;
	st->garbage_errors = sr->garbage;
	st->records = sr->records;
	st->bytes = sr->done;
	st->last_end = (uint64_t)now.tv_sec;
	st->duration_ns = now_ns() - t0;
	pthread_mutex_unlock(&ld->bad_lock);
	log_seg_name(sr->first_seg, name);
	if (r == -ECANCELED)
		blkserv_notice(ld->dev, "scrub of %s cancelled after %" PRIu64 " of %" PRIu64 " bytes", ld->s.dir,
			       sr->done, sr->total);
	else if (r < 0)
		(void)blkserv_error_errno(ld->dev, r, "scrub of %s failed after %" PRIu64 " bytes: %m", ld->s.dir,
					  sr->done);
	else if (sr->errors)
		blkserv_error(ld->dev,
			      "scrub of %s: %" PRIu64 " corrupt record(s) with live data (first: %s offset %" PRIu64
			      "), %" PRIu64 " in garbage; %" PRIu64 " records, %" PRIu64 " bytes in %zu "
			      "segment(s) read in %.1f s",
			      ld->s.dir, sr->errors, name, sr->first_pos, sr->garbage, sr->records, sr->done, nsegs,
			      secs);
	else
		blkserv_info(ld->dev,
			     "scrub of %s: clean: %" PRIu64 " records, %" PRIu64 " bytes in %zu segment(s) "
			     "verified in %.1f s%s",
			     ld->s.dir, sr->records, sr->done, nsegs, secs,
			     sr->garbage ? " (but corrupt garbage was found: check the disk)" : "");
}

int log_scrub(void *handle, struct blkserv_scrub *sc)
{
	struct logdev *ld = handle;
	struct scrub_run sr = { .ld = ld, .sc = sc };
	_cleanup_free_ uint64_t *ids = NULL;
	uint64_t t0 = now_ns();
	size_t n = 0;
	int r;

	pthread_mutex_lock(&ld->bad_lock);
	r = ld->scrub.running ? -EBUSY : 0;
	ld->scrub.running = true;
	pthread_mutex_unlock(&ld->bad_lock);
	if (r < 0)
		return r;
	r = scrub_snapshot(ld, &ids, &n, &sr.total);
	blkserv_info(ld->dev, "scrub of %s: verifying %zu segment(s), %" PRIu64 " bytes", ld->s.dir, n, sr.total);
	for (size_t i = 0; r >= 0 && i < n && !sr.cancelled; i++) {
		struct scrub_seg ss;
		r = scrub_open_seg(ld, ids[i], &ss);
		if (r == -ENOENT) {
			r = 0;
			continue;
		}
		if (r >= 0) {
			r = scrub_segment(&sr, &ss);
			close(ss.fd);
		}
		if (r < 0) {
			char name[LOG_SEG_NAME_LEN];
			log_seg_name(ids[i], name);
			(void)blkserv_error_errno(ld->dev, r, "scrub of %s: cannot read %s: %m", ld->s.dir, name);
		}
	}
	free(sr.buf);
	if (r >= 0 && sr.cancelled)
		r = -ECANCELED;
	if (r >= 0) {
		sr.done = sr.total > sr.done ? sr.done : sr.total;
		(void)sc->progress(sc, sr.done, sr.done, sr.errors);
	}
	scrub_finish(&sr, r, t0, n);
	return r < 0 ? r : sr.errors ? -EBADMSG : 0;
}

static const char *scrub_result_name(int result)
{
	switch (result) {
	case LOG_SCRUB_CLEAN:
		return "clean";
	case LOG_SCRUB_CORRUPT:
		return "corrupt";
	case LOG_SCRUB_FAILED:
		return "failed";
	case LOG_SCRUB_CANCELLED:
		return "cancelled";
	}
	return "none";
}

int log_verify_stats(struct logdev *ld, char *buf, size_t len)
{
	const struct log_scrub_stats *st = &ld->scrub;

	pthread_mutex_lock(&ld->bad_lock);
	snprintf(buf, len,
		 "checksum_errors=%" PRIu64 "\nchecksum_failed_reads=%" PRIu64 "\nscrub_running=%d\n"
		 "scrub_last_result=%s\nscrub_runs=%" PRIu64 "\nscrub_errors=%" PRIu64 "\nscrub_garbage_errors=%" PRIu64
		 "\nscrub_records=%" PRIu64 "\nscrub_bytes=%" PRIu64 "\nscrub_last_end=%" PRIu64
		 "\nscrub_duration_ms=%.1f\n",
		 ld->checksum_errors, atomic_load(&ld->checksum_failed_reads), st->running ? 1 : 0,
		 scrub_result_name(st->last_result), st->runs, st->errors, st->garbage_errors, st->records, st->bytes,
		 st->last_end, (double)st->duration_ns / 1e6);
	pthread_mutex_unlock(&ld->bad_lock);
	return 0;
}

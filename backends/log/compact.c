/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The background thread: periodic checkpoints and compaction.
 *
 * A compaction round picks the sealed segments with the least live data,
 * copies what the index still points at in them to the head of the log
 * (data as WRITE records, zeroed ranges as ZERO records: a trim must not be
 * forgotten while an older segment still holds the data it hid), writes a
 * checkpoint, waits for it to be durable, and only then deletes them.
 * Copies go in batches of COPY_BYTES under append_lock, re-checking each
 * piece against the index at that moment, so a client write that landed
 * meanwhile is never overwritten by stale data, and the log order still
 * equals the order of index changes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "crc32c.h"
#include "logdev.h"

#define COPY_BYTES (1u << 20)
#define MAX_VICTIMS 16
#define BG_PERIOD_MS 200
#define MAX_ROUNDS 64 /* then look at checkpoints and stopping again */

/* ---- choosing ------------------------------------------------------ */

static uint64_t seg_garbage(const struct logdev *ld, const struct log_segment *seg)
{
	uint64_t used = seg->live + (seg->id == ld->ckpt_seg ? ld->ckpt_bytes : 0);

	return seg->size > used ? seg->size - used : 0;
}

static bool space_pressure(const struct logdev *ld)
{
	return ld->max_size && ld->s.total_bytes + ld->segment_size > ld->max_size - log_reserve(ld);
}

static bool compaction_wanted_locked(const struct logdev *ld)
{
	uint64_t garbage = log_garbage_locked(ld);

	if (!ld->compaction)
		return false;
	if (space_pressure(ld) && garbage > 0)
		return true;
	return garbage >= ld->segment_size && garbage * 100 > ld->compact_pct * ld->s.total_bytes;
}

struct victim {
	uint64_t id;
	uint64_t live;
	uint64_t garbage;
	int fd;
	bool kept; /* holds a corrupt live record: not copied, not deleted */
};

static int cmp_victim(const void *a, const void *b)
{
	const struct victim *x = a, *y = b;

	/* Most garbage first: the cheapest space to win back. */
	return x->garbage > y->garbage ? -1 : x->garbage < y->garbage;
}

/* Sealed segments worth compacting, best first, whose live data fits in
 * the space reserved for compaction.  append_lock held. */
static size_t pick_victims(struct logdev *ld, struct victim *out)
{
	struct log_store *s = &ld->s;
	_cleanup_free_ struct victim *all = calloc(s->nsegs ? s->nsegs : 1, sizeof(*all));
	size_t n = 0, k = 0;
	uint64_t copy = 0;

	if (!all)
		return 0;
	for (size_t i = 0; i + 1 < s->nsegs; i++) {
		const struct log_segment *seg = &s->segs[i];
		uint64_t g = seg_garbage(ld, seg);
		/* At least a tenth of it must be reclaimable; a segment with a
		 * corrupt live record stays as it is, so its reads keep failing
		 * rather than its bad data being copied as good. */
		if (g * 10 >= seg->size && !seg->bad)
			all[n++] = (struct victim){ seg->id, seg->live, g, seg->fd, false };
	}
	qsort(all, n, sizeof(*all), cmp_victim);
	for (size_t i = 0; i < n && k < MAX_VICTIMS; i++) {
		if (k > 0 && copy + all[i].live > ld->segment_size)
			break;
		copy += all[i].live;
		out[k++] = all[i];
	}
	return k;
}

/* ---- copying ------------------------------------------------------- */

/* Does the index still hold @p's bytes at [start, ...) in its segment? */
static bool still_live(const struct extent *x, const struct extent *p, uint64_t start)
{
	if (x->seg != p->seg)
		return false;
	if (p->foff == EXTENT_ZERO)
		return x->foff == EXTENT_ZERO;
	return x->foff != EXTENT_ZERO && x->foff + (start - x->off) == p->foff + (start - p->off);
}

/* Re-append the parts of piece @p (data in @buf) the index still points
 * at.  append_lock held, so the index cannot change under us except by our
 * own appends (hence the seek on every step). */
static int copy_piece_locked(struct logdev *ld, const struct extent *p, const unsigned char *buf)
{
	uint64_t pos = p->off, end = p->off + p->len;

	while (pos < end) {
		struct emap_iter it;
		const struct extent *x;
		emap_seek(&ld->s.map, pos, &it);
		x = emap_get(&ld->s.map, &it);
		if (!x || x->off >= end)
			break;
		uint64_t start = x->off > pos ? x->off : pos;
		uint64_t stop = x->off + x->len < end ? x->off + x->len : end;
		/* Records of at most max_record_size, as a client write gets:
		 * a record of an older log written with larger ones is split
		 * as it is copied, so small reads of it get cheaper too. */
		if (ld->max_record && stop - start > ld->max_record && p->foff != EXTENT_ZERO)
			stop = start + ld->max_record;
		if (still_live(x, p, start)) {
			struct append a = { .type = p->foff == EXTENT_ZERO ? LOG_REC_ZERO : LOG_REC_WRITE,
					    .offset = start,
					    .length = stop - start,
					    .compaction = true };
			if (a.type == LOG_REC_WRITE) {
				a.payload = buf + (start - p->off);
				a.payload_len = a.length;
			}
			a.payload_crc = crc32c(0, a.payload, (size_t)a.payload_len);
			int r = log_append_locked(ld, &a, NULL);
			if (r < 0)
				return r;
			ld->compacted_bytes += a.payload_len;
		}
		pos = stop;
	}
	return 0;
}

/* The index extents that point into segment @id (a snapshot). */
static int extents_of(struct logdev *ld, uint64_t id, struct extent **ret, size_t *ret_n)
{
	struct extent *v = NULL;
	size_t n = 0, cap = 0;
	struct emap_iter it;
	const struct extent *x;
	int r = 0;

	pthread_rwlock_rdlock(&ld->index_lock);
	emap_seek(&ld->s.map, 0, &it);
	for (; (x = emap_get(&ld->s.map, &it)); emap_next(&ld->s.map, &it)) {
		if (x->seg != id)
			continue;
		if (n == cap) {
			struct extent *nv = realloc(v, (cap = cap ? cap * 2 : 256) * sizeof(*v));
			if (!nv) {
				r = -ENOMEM;
				break;
			}
			v = nv;
		}
		v[n++] = *x;
	}
	pthread_rwlock_unlock(&ld->index_lock);
	*ret = v;
	*ret_n = n;
	return r;
}

static int copy_piece(struct logdev *ld, const struct extent *p, const unsigned char *data)
{
	int r;

	pthread_mutex_lock(&ld->append_lock);
	r = copy_piece_locked(ld, p, data);
	pthread_mutex_unlock(&ld->append_lock);
	return r;
}

/*
 * Read the record extent @e lies in, verified: compaction gives what it
 * copies a fresh checksum, so it must never copy bytes whose own checksum
 * does not match (that would launder them).  The whole payload goes into
 * *buf; *ret_at is where @e's bytes start in it.  A sealed segment never
 * changes, and only this thread deletes segments: its fd can be read
 * without a lock (the record list needs index_lock).
 */
static int read_source(struct logdev *ld, const struct victim *v, const struct extent *e, unsigned char **buf,
		       size_t *cap, uint64_t *ret_at)
{
	struct log_rec_ent ent = { 0 };
	const struct log_rec_ent *found = NULL;
	const char *why = "no record holds these bytes";
	struct log_segment *seg;
	int r;

	for (bool known = false; !known;) {
		pthread_rwlock_rdlock(&ld->index_lock);
		seg = store_seg(&ld->s, v->id);
		r = seg ? 0 : -ENOENT;
		known = seg && log_recs_known(seg);
		if (known && (found = store_rec_find(seg, e->foff)))
			ent = *found;
		pthread_rwlock_unlock(&ld->index_lock);
		if (r >= 0 && !known)
			r = log_recs_build(ld, v->id);
		if (r < 0)
			return r;
	}
	uint64_t len = ent.len & ~LOG_RECENT_BADHDR, payload = ent.pos + LOG_REC_HEADER_SIZE;
	if (found && e->foff + e->len > payload + len)
		found = NULL;
	if (found && len > *cap) {
		unsigned char *n = realloc(*buf, (size_t)len);
		if (!n)
			return -ENOMEM;
		*buf = n;
		*cap = (size_t)len;
	}
	r = found ? log_read_verified(v->fd, v->id, ld->s.device_size, &ent, payload, len, *buf, &why) : -EBADMSG;
	if (r == -EBADMSG) {
		char what[200];
		snprintf(what, sizeof(what),
			 "compaction keeps segment %" PRIu64 " as it is (device offset %" PRIu64 "+%" PRIu64
			 " keeps failing reads with EIO until it is written again)",
			 v->id, e->off, e->len);
		log_report_bad(ld, v->id, found ? ent.pos : e->foff, why, what);
		return r;
	}
	if (r < 0)
		return blkserv_error_errno(ld->dev, r,
					   "compaction cannot read segment %" PRIu64 " of %s at offset %" PRIu64 ": %m",
					   v->id, ld->s.dir, e->foff);
	*ret_at = e->foff - payload;
	return 0;
}

static int copy_extent(struct logdev *ld, const struct victim *v, const struct extent *e, unsigned char **buf,
		       size_t *cap)
{
	uint64_t at = 0;
	int r = 0;

	if (e->foff == EXTENT_ZERO) /* zeros need no data: one record */
		return copy_piece(ld, e, NULL);
	r = read_source(ld, v, e, buf, cap, &at);
	for (uint64_t done = 0; r >= 0 && done < e->len; done += COPY_BYTES) {
		struct extent p = *e;
		p.off += done;
		p.foff += done;
		p.len = e->len - done < COPY_BYTES ? e->len - done : COPY_BYTES;
		r = copy_piece(ld, &p, *buf + at + done);
	}
	return r;
}

static int copy_victim(struct logdev *ld, struct victim *v, unsigned char **buf, size_t *cap)
{
	_cleanup_free_ struct extent *ext = NULL;
	size_t n;
	int r = extents_of(ld, v->id, &ext, &n);

	for (size_t i = 0; r >= 0 && i < n; i++)
		r = copy_extent(ld, v, &ext[i], buf, cap);
	if (r == -EBADMSG) {
		/* Leave this segment alone (until a restart looks again); the
		 * others of the round go on. */
		pthread_mutex_lock(&ld->append_lock);
		struct log_segment *seg = store_seg(&ld->s, v->id);
		if (seg)
			seg->bad = true;
		pthread_mutex_unlock(&ld->append_lock);
		v->kept = true;
		r = 0;
	}
	return r;
}

/* ---- deleting ------------------------------------------------------ */

static bool referenced(struct logdev *ld, uint64_t id)
{
	struct emap_iter it;
	const struct extent *x;

	emap_seek(&ld->s.map, 0, &it);
	for (; (x = emap_get(&ld->s.map, &it)); emap_next(&ld->s.map, &it))
		if (x->seg == id)
			return true;
	return false;
}

/* After a durable checkpoint that no longer needs them. */
static void delete_victims(struct logdev *ld, const struct victim *v, size_t n)
{
	char name[LOG_SEG_NAME_LEN];
	size_t deleted = 0;

	pthread_mutex_lock(&ld->append_lock);
	for (size_t i = 0; i < n; i++) {
		if (v[i].kept)
			continue;
		if (v[i].id >= ld->ckpt_seg || referenced(ld, v[i].id)) {
			blkserv_warning(ld->dev, "compaction: segment %" PRIu64 " of %s is still needed; kept", v[i].id,
					ld->s.dir);
			continue;
		}
		log_seg_name(v[i].id, name);
		if (unlinkat(ld->s.dirfd, name, 0) < 0) {
			blkserv_warning(ld->dev, "compaction: cannot remove %s/%s: %m", ld->s.dir, name);
			continue;
		}
		pthread_rwlock_wrlock(&ld->index_lock);
		store_remove_seg(&ld->s, v[i].id);
		pthread_rwlock_unlock(&ld->index_lock);
		deleted++;
	}
	ld->deleted_segments += deleted;
	ld->compactions++;
	pthread_mutex_unlock(&ld->append_lock);
	if (deleted && fsync(ld->s.dirfd) < 0)
		log_sync_failed(ld, "fsync of the directory", errno);
}

int log_compact_round(struct logdev *ld, bool force)
{
	struct victim v[MAX_VICTIMS];
	_cleanup_free_ unsigned char *buf = NULL;
	size_t n, cap = 0;
	int r = 0;

	pthread_mutex_lock(&ld->append_lock);
	n = force || compaction_wanted_locked(ld) ? pick_victims(ld, v) : 0;
	pthread_mutex_unlock(&ld->append_lock);
	if (n == 0)
		return 0;
	for (size_t i = 0; r >= 0 && i < n; i++)
		r = copy_victim(ld, &v[i], &buf, &cap);
	if (r >= 0)
		r = log_checkpoint(ld);
	if (r < 0)
		return blkserv_warning_errno(ld->dev, r, "compaction of %s stopped: %m", ld->s.dir);
	delete_victims(ld, v, n);
	return (int)n;
}

/* ---- the thread ---------------------------------------------------- */

static bool bg_stopping(struct logdev *ld)
{
	bool stop;

	pthread_mutex_lock(&ld->bg_lock);
	stop = ld->bg_stop;
	pthread_mutex_unlock(&ld->bg_lock);
	return stop;
}

/* Writers waiting for space look again; after a whole pass (@done) they
 * learn whether it freed anything. */
static void wake_space_waiters(struct logdev *ld, bool done, bool freed)
{
	pthread_mutex_lock(&ld->append_lock);
	if (done) {
		ld->bg_freed = freed;
		ld->bg_passes++;
	}
	pthread_cond_broadcast(&ld->space_cv);
	pthread_mutex_unlock(&ld->append_lock);
}

static void bg_work(struct logdev *ld)
{
	bool ckpt, freed = false;

	if (atomic_load(&ld->failed))
		return;
	pthread_mutex_lock(&ld->append_lock);
	ckpt = ld->since_ckpt >= ld->ckpt_interval;
	pthread_mutex_unlock(&ld->append_lock);
	if (ckpt)
		(void)log_checkpoint(ld);
	/* Round after round while garbage is over the threshold, so
	 * compaction keeps pace with writers (each round holds the append
	 * lock only for one batch at a time). */
	for (int i = 0; i < MAX_ROUNDS && !bg_stopping(ld); i++) {
		int n = log_compact_round(ld, false);
		freed |= n > 0;
		wake_space_waiters(ld, false, false);
		if (n <= 0)
			break;
	}
	wake_space_waiters(ld, true, freed);
}

static void *bg_main(void *arg)
{
	struct logdev *ld = arg;
	struct timespec ts;

	pthread_mutex_lock(&ld->bg_lock);
	while (!ld->bg_stop) {
		if (!ld->bg_kick) {
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_nsec += BG_PERIOD_MS * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&ld->bg_cv, &ld->bg_lock, &ts);
		}
		ld->bg_kick = false;
		if (ld->bg_stop)
			break;
		pthread_mutex_unlock(&ld->bg_lock);
		bg_work(ld);
		pthread_mutex_lock(&ld->bg_lock);
	}
	pthread_mutex_unlock(&ld->bg_lock);
	return NULL;
}

int log_bg_start(struct logdev *ld)
{
	int r = pthread_create(&ld->bg, NULL, bg_main, ld);

	if (r != 0)
		return -r;
	ld->bg_running = true;
	return 0;
}

void log_bg_kick(struct logdev *ld)
{
	pthread_mutex_lock(&ld->bg_lock);
	ld->bg_kick = true;
	pthread_cond_signal(&ld->bg_cv);
	pthread_mutex_unlock(&ld->bg_lock);
}

void log_bg_stop(struct logdev *ld)
{
	if (!ld->bg_running)
		return;
	pthread_mutex_lock(&ld->bg_lock);
	ld->bg_stop = true;
	pthread_cond_signal(&ld->bg_cv);
	pthread_mutex_unlock(&ld->bg_lock);
	pthread_join(ld->bg, NULL);
	ld->bg_running = false;
	ld->bg_stop = false;
}

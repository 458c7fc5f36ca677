/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The write side of the log: appending records, starting segments,
 * flushing (group commit) and checkpoints.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "crc32c.h"
#include "io-util.h"
#include "logdev.h"

/* Start writeback of the open segment every this many bytes, so the
 * fdatasync that seals it has little left to do. */
#define KICK_BYTES (8ull << 20)
/* How long a write waits for compaction to free space before -ENOSPC. */
#define SPACE_WAIT_MS 5000

void log_sync_failed(struct logdev *ld, const char *what, int err)
{
	if (!atomic_exchange(&ld->failed, true))
		(void)blkserv_error_errno(ld->dev, err,
					  "%s of the log in %s failed: %m; from now on every write and flush of this "
					  "device fails until the daemon restarts (data written since the last "
					  "successful flush may be lost)",
					  what, ld->s.dir);
}

/*
 * fdatasync, with a test hook like the file backend's: when
 * $BLKSERV_LOG_FAULT_FSYNC is N at open, the Nth call (counted per device)
 * reports EIO without syncing, so tests can see a failed sync poison the
 * device.
 */
int log_fdatasync(struct logdev *ld, int fd)
{
	uint64_t nth = atomic_fetch_add(&ld->fsyncs, 1) + 1;

	if (ld->fault_fsync && nth == ld->fault_fsync)
		return -EIO;
	return fdatasync(fd) < 0 ? -errno : 0;
}

uint64_t log_reserve(const struct logdev *ld)
{
	return 2 * ld->segment_size;
}

uint64_t log_garbage_locked(const struct logdev *ld)
{
	uint64_t used = ld->s.live_bytes + ld->ckpt_bytes;

	return ld->s.total_bytes > used ? ld->s.total_bytes - used : 0;
}

static void seq_max(_Atomic uint64_t *v, uint64_t seq)
{
	uint64_t cur = atomic_load(v);

	while (cur < seq && !atomic_compare_exchange_weak(v, &cur, seq))
		;
}

/* ---- segments ------------------------------------------------------ */

static int create_segment(struct logdev *ld, uint32_t flags, struct log_segment *ret)
{
	struct log_seg_header h = {
		.version = LOG_FORMAT_VERSION,
		.flags = flags,
		.id = ld->next_seg_id,
		.first_seq = ld->s.next_seq,
		.device_size = ld->s.device_size,
		.block_size = ld->s.block_size,
	};
	unsigned char buf[LOG_SEG_HEADER_SIZE];
	char name[LOG_SEG_NAME_LEN];
	struct timespec ts;
	struct iovec iov = { buf, sizeof(buf) };
	int fd, r;

	clock_gettime(CLOCK_REALTIME, &ts);
	h.created_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	memcpy(h.uuid, ld->s.uuid, 16);
	log_seg_header_encode(&h, buf);
	log_seg_name(h.id, name);
	fd = openat(ld->s.dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	r = pwritev_full(fd, &iov, 1, 0);
	if (r < 0) {
		close(fd);
		(void)unlinkat(ld->s.dirfd, name, 0);
		return r;
	}
	*ret = (struct log_segment){ .id = h.id,
				     .fd = fd,
				     .size = LOG_SEG_HEADER_SIZE,
				     .first_seq = h.first_seq,
				     .flags = flags,
				     .recs_known = true };
	return 0;
}

/*
 * Seal the open segment and start a new one.  The old one is made durable
 * first, so a segment that is not the last is always whole on disk: damage
 * there is corruption, never a torn write.  The directory is synced so the
 * new file survives a crash.
 */
int log_rotate_locked(struct logdev *ld, uint32_t flags)
{
	struct log_segment *last = store_last_seg(&ld->s), seg;
	int r;

	if (last) {
		r = log_fdatasync(ld, last->fd);
		if (r < 0) {
			log_sync_failed(ld, "fdatasync", -r);
			return -EIO;
		}
		seq_max(&ld->synced_seq, ld->s.next_seq - 1);
	}
	r = create_segment(ld, flags, &seg);
	if (r < 0)
		return blkserv_error_errno(ld->dev, r, "cannot create a segment in %s: %m", ld->s.dir);
	if (fsync(ld->s.dirfd) < 0) {
		log_sync_failed(ld, "fsync of the directory", errno);
		close(seg.fd);
		return -EIO;
	}
	pthread_rwlock_wrlock(&ld->index_lock);
	r = store_add_seg(&ld->s, &seg);
	pthread_rwlock_unlock(&ld->index_lock);
	if (r < 0) {
		close(seg.fd);
		return r;
	}
	ld->next_seg_id++;
	ld->disk_bytes += LOG_SEG_HEADER_SIZE;
	ld->kick_pos = LOG_SEG_HEADER_SIZE;
	return 0;
}

/* ---- space --------------------------------------------------------- */

static bool over_limit(struct logdev *ld, uint64_t len, const struct append *a)
{
	uint64_t limit;

	/* A checkpoint is exempt: compaction needs one to free anything. */
	if (!ld->max_size || a->type == LOG_REC_CHECKPOINT)
		return false;
	limit = a->compaction ? ld->max_size : ld->max_size - log_reserve(ld);
	return ld->s.total_bytes + len > limit;
}

/* Wait (append_lock held) until @len more bytes fit, while compaction
 * frees space, or fail with -ENOSPC: at once without garbage to reclaim,
 * after a background pass that freed nothing, or after SPACE_WAIT_MS. */
static int wait_for_space(struct logdev *ld, uint64_t len, const struct append *a)
{
	struct timespec deadline;

	if (!over_limit(ld, len, a))
		return 0;
	if (a->compaction || !ld->compaction)
		return -ENOSPC;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += SPACE_WAIT_MS / 1000;
	while (over_limit(ld, len, a)) {
		uint64_t pass = ld->bg_passes;
		if (log_garbage_locked(ld) < len || atomic_load(&ld->failed))
			return -ENOSPC;
		log_bg_kick(ld);
		while (ld->bg_passes == pass)
			if (pthread_cond_timedwait(&ld->space_cv, &ld->append_lock, &deadline) == ETIMEDOUT)
				return over_limit(ld, len, a) ? -ENOSPC : 0;
		if (!ld->bg_freed && over_limit(ld, len, a))
			return -ENOSPC;
	}
	return 0;
}

/* Make room for a record of @len bytes in the open segment. */
static int make_room(struct logdev *ld, uint64_t len, const struct append *a)
{
	struct log_segment *seg = store_last_seg(&ld->s);
	bool rotate = !seg || (seg->size > LOG_SEG_HEADER_SIZE && seg->size + len > ld->segment_size);
	int r;

	if (rotate && a->no_rotate)
		return -ENOSPC;
	r = wait_for_space(ld, len + (rotate ? LOG_SEG_HEADER_SIZE : 0), a);
	if (r < 0)
		return r;
	/* Waiting let others append: look again. */
	seg = store_last_seg(&ld->s);
	if (!seg || (seg->size > LOG_SEG_HEADER_SIZE && seg->size + len > ld->segment_size))
		r = log_rotate_locked(ld, 0);
	return r;
}

/* ---- appending ----------------------------------------------------- */

static void kick_writeback(struct logdev *ld, struct log_segment *seg)
{
	if (seg->size - ld->kick_pos < KICK_BYTES)
		return;
	(void)sync_file_range(seg->fd, (off_t)ld->kick_pos, (off_t)(seg->size - ld->kick_pos), SYNC_FILE_RANGE_WRITE);
	ld->kick_pos = seg->size;
}

/* Room in the index, and for a WRITE in the open segment's record list
 * (readers search both: they grow under index_lock). */
static int reserve_index(struct logdev *ld, bool write)
{
	const struct extent_map *m = &ld->s.map;
	struct log_segment *seg = store_last_seg(&ld->s);
	bool recs_full = write && seg->nrecs == seg->recs_cap;
	int r;

	if (m->cap >= m->n + 2 && m->nspare >= 2 && !recs_full)
		return 0;
	pthread_rwlock_wrlock(&ld->index_lock);
	r = emap_reserve(&ld->s.map);
	if (r >= 0 && recs_full)
		r = store_rec_reserve(seg);
	pthread_rwlock_unlock(&ld->index_lock);
	return r;
}

/* The record is on the page cache: apply it to the index and counters. */
static void appended(struct logdev *ld, const struct append *a, struct log_segment *seg, uint64_t pos, uint64_t seq)
{
	uint64_t len = LOG_REC_HEADER_SIZE + a->payload_len;

	seg->size += len;
	ld->s.total_bytes += len;
	ld->s.next_seq++;
	ld->disk_bytes += len;
	ld->since_ckpt += len;
	if (a->type == LOG_REC_WRITE && !a->compaction)
		ld->client_bytes += a->length;
	if (a->type == LOG_REC_WRITE || a->type == LOG_REC_TRIM || a->type == LOG_REC_ZERO) {
		pthread_rwlock_wrlock(&ld->index_lock);
		if (a->type == LOG_REC_WRITE) {
			store_rec_push(seg, pos, a->payload_len);
			store_map_data(&ld->s, a->offset, a->length, seg->id, pos + LOG_REC_HEADER_SIZE);
		} else
			store_map_zero(&ld->s, a->offset, a->length, seg->id);
		pthread_rwlock_unlock(&ld->index_lock);
		atomic_store(&ld->last_client_seq, seq);
	}
	kick_writeback(ld, seg);
}

/* A failed pwrite may have left part of a record: take it back. */
static void undo_partial(struct logdev *ld, struct log_segment *seg, int err)
{
	if (ftruncate(seg->fd, (off_t)seg->size) < 0)
		log_sync_failed(ld, "truncating a failed append", errno);
	else
		(void)blkserv_warning_errno(ld->dev, err, "append to segment %" PRIu64 " of %s failed: %m", seg->id,
					    ld->s.dir);
}

int log_append_locked(struct logdev *ld, const struct append *a, uint64_t *ret_seq)
{
	unsigned char hdr[LOG_REC_HEADER_SIZE];
	uint64_t len = LOG_REC_HEADER_SIZE + a->payload_len;
	struct log_segment *seg;
	struct log_rec rec;
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { (void *)a->payload, (size_t)a->payload_len } };
	int r;

	if (atomic_load(&ld->failed))
		return -EIO;
	r = make_room(ld, len, a);
	if (r >= 0)
		r = reserve_index(ld, a->type == LOG_REC_WRITE);
	if (r < 0)
		return r;
	seg = store_last_seg(&ld->s);
	rec = (struct log_rec){ .type = a->type,
				.seq = ld->s.next_seq,
				.offset = a->offset,
				.length = a->length,
				.payload_len = a->payload_len,
				.segment = seg->id,
				.synced_seq = atomic_load(&ld->synced_seq) };
	log_rec_encode(&rec, a->payload_crc, hdr);
	r = pwritev_full(seg->fd, iov, a->payload_len ? 2 : 1, seg->size);
	if (r < 0) {
		undo_partial(ld, seg, r);
		return r;
	}
	appended(ld, a, seg, seg->size, rec.seq);
	if (ret_seq)
		*ret_seq = rec.seq;
	return 0;
}

int log_append(struct logdev *ld, const struct append *a, uint64_t *ret_seq)
{
	int r;

	pthread_mutex_lock(&ld->append_lock);
	r = log_append_locked(ld, a, ret_seq);
	pthread_mutex_unlock(&ld->append_lock);
	return r;
}

/* ---- flushing ------------------------------------------------------ */

/* The open segment's fd, duplicated so compaction closing it cannot hurt. */
static int dup_last_fd(struct logdev *ld, uint64_t *ret_seq)
{
	struct log_segment *seg;
	int fd = -1;

	pthread_mutex_lock(&ld->append_lock);
	seg = store_last_seg(&ld->s);
	fd = seg ? fcntl(seg->fd, F_DUPFD_CLOEXEC, 3) : -ENOENT;
	if (fd == -1)
		fd = -errno;
	*ret_seq = ld->s.next_seq - 1;
	pthread_mutex_unlock(&ld->append_lock);
	return fd;
}

/* Record, after a flush, how far the log is durable: a later reader of a
 * damaged log can then tell lost flushed data from a torn tail. */
static void append_sync_marker(struct logdev *ld)
{
	struct append a = {
		.type = LOG_REC_SYNC, .payload_crc = crc32c(0, NULL, 0), .no_rotate = true, .compaction = true
	};

	(void)log_append(ld, &a, NULL);
}

/* Make every record up to @seq durable.  Segments before the open one were
 * synced when sealed, so one fdatasync of the open segment does it. */
int log_sync_upto(struct logdev *ld, uint64_t seq)
{
	uint64_t target;
	int fd, r = 0;

	if (atomic_load(&ld->failed))
		return -EIO;
	if (atomic_load(&ld->synced_seq) >= seq)
		return 0;
	pthread_mutex_lock(&ld->sync_lock);
	if (atomic_load(&ld->failed))
		r = -EIO;
	if (r < 0 || atomic_load(&ld->synced_seq) >= seq) /* another flush covered us */
		goto out;
	fd = dup_last_fd(ld, &target);
	if (fd == -ENOENT) /* no segment: nothing was ever written */
		goto out;
	r = fd < 0 ? fd : log_fdatasync(ld, fd);
	if (r < 0) {
		log_sync_failed(ld, "fdatasync", -r);
		r = -EIO;
	}
	safe_close(fd);
	if (r < 0)
		goto out;
	seq_max(&ld->synced_seq, target);
	append_sync_marker(ld);
out:
	pthread_mutex_unlock(&ld->sync_lock);
	return r;
}

/* ---- checkpoints --------------------------------------------------- */

/* A segment flagged as starting with a checkpoint must never hold anything
 * else first: if the checkpoint could not be written, remove the segment
 * (still empty: append_lock is held). */
static void drop_empty_last(struct logdev *ld)
{
	struct log_segment *seg = store_last_seg(&ld->s);
	char name[LOG_SEG_NAME_LEN];

	log_seg_name(seg->id, name);
	if (unlinkat(ld->s.dirfd, name, 0) < 0 || fsync(ld->s.dirfd) < 0) {
		log_sync_failed(ld, "removing an empty checkpoint segment", errno);
		return;
	}
	pthread_rwlock_wrlock(&ld->index_lock);
	store_remove_seg(&ld->s, seg->id);
	pthread_rwlock_unlock(&ld->index_lock);
}

/*
 * Write the whole index as the first record of a new segment and make it
 * durable.  Recovery then starts from there: its time depends on what was
 * written since, not on the age of the log.  Writes wait while the index is
 * serialised (append_lock); reads do not.
 */
int log_checkpoint(struct logdev *ld)
{
	_cleanup_free_ unsigned char *payload = NULL;
	struct append a = { .type = LOG_REC_CHECKPOINT, .compaction = true, .no_rotate = true };
	uint64_t count, seq = 0, seg_id = 0;
	int r, fd = -1;

	pthread_mutex_lock(&ld->append_lock);
	r = store_ckpt_encode(&ld->s, &payload, &a.payload_len, &count);
	if (r >= 0)
		r = log_rotate_locked(ld, LOG_SEG_F_CHECKPOINT);
	if (r >= 0) {
		a.length = count;
		a.payload = payload;
		a.payload_crc = crc32c(0, payload, (size_t)a.payload_len);
		r = log_append_locked(ld, &a, &seq);
		if (r < 0)
			drop_empty_last(ld);
	}
	if (r >= 0) {
		seg_id = store_last_seg(&ld->s)->id;
		fd = fcntl(store_last_seg(&ld->s)->fd, F_DUPFD_CLOEXEC, 3);
		ld->since_ckpt = 0;
	}
	pthread_mutex_unlock(&ld->append_lock);
	if (r < 0)
		return blkserv_warning_errno(ld->dev, r, "cannot write a checkpoint to %s: %m", ld->s.dir);
	r = fd < 0 ? -errno : log_fdatasync(ld, fd);
	if (r < 0) {
		log_sync_failed(ld, "fdatasync of a checkpoint", -r);
		safe_close(fd);
		return -EIO;
	}
	close(fd);
	seq_max(&ld->synced_seq, seq);
	pthread_mutex_lock(&ld->append_lock);
	ld->ckpt_seg = seg_id;
	ld->ckpt_bytes = LOG_REC_HEADER_SIZE + a.payload_len;
	ld->checkpoints++;
	pthread_mutex_unlock(&ld->append_lock);
	return 0;
}

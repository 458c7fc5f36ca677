/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * log: a device kept as an append-only, checksummed log of segment files in
 * a directory, with an in-memory index, crash recovery, checkpoints and
 * background compaction.  See blkservd-log(7) and format.h.
 *
 * Requests are served synchronously inside the callbacks (pread, pwritev,
 * fdatasync on the calling queue thread): every write is an append under
 * one lock anyway, and reads come from the page cache.  Locking: logdev.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blkserv/blkserv-plugin.h"
#include "cleanup.h"
#include "crc32c.h"
#include "logdev.h"
#include "parse.h"

#define MIN_SEGMENT_SIZE (64ull << 10)
/* The default of max_record_size.  A read checksums the whole record its
 * bytes come from: with one record per write, a 4 KiB read of data written
 * in 1 MiB requests read and checked 1 MiB (about 8x slower than with 64K
 * in bench/log.sh).  64K costs one 64-byte header (0.1 %) and one index
 * extent of 32 bytes per 64 KiB written in large requests, and sequential
 * 1 MiB writes run at the same speed. */
#define DEFAULT_MAX_RECORD (64ull << 10)

static const struct blkserv_option log_options[] = {
	{ "dir", BLKSERV_OPT_PATH, NULL, "directory of the log's segment files (created if missing)",
	  BLKSERV_OPTION_REQUIRED },
	{ "segment_size", BLKSERV_OPT_SIZE, "64M", "size at which a segment is sealed and a new one started", 0 },
	{ "max_size", BLKSERV_OPT_SIZE, "0",
	  "limit on the log's total size (0: none); writes past it fail "
	  "with ENOSPC",
	  0 },
	{ "compact_threshold", BLKSERV_OPT_UINT, "50", "compact when garbage exceeds this percentage of the log", 0 },
	{ "compaction", BLKSERV_OPT_BOOL, "true", "reclaim garbage in the background", 0 },
	{ "checkpoint_interval", BLKSERV_OPT_SIZE, "256M",
	  "write a checkpoint of the index after this many "
	  "bytes were appended",
	  0 },
	{ "recover_truncate", BLKSERV_OPT_BOOL, "false",
	  "at start, cut the log at a corrupt record instead of "
	  "refusing to start (loses what follows it)",
	  0 },
	{ "max_record_size", BLKSERV_OPT_SIZE, "64K",
	  "split larger writes into records of this size (0: one "
	  "record per write); bounds what a small read must read and checksum",
	  0 },
	{ "verify_on_start", BLKSERV_OPT_BOOL, "false",
	  "at start, verify every record of every segment, not "
	  "only those after the checkpoint",
	  0 },
	BLKSERV_OPTION_END,
};

static const struct blkserv_option_check log_checks[] = {
	{ "segment_size", MIN_SEGMENT_SIZE, 1ull << 40, NULL },
	{ "compact_threshold", 1, 99, NULL },
	BLKSERV_OPTION_CHECK_END,
};

/* max_record_size as configured, or its default, made to fit a small
 * segment_size (the default must not turn a valid segment_size into a
 * config error). */
static uint64_t max_record_of(const struct blkserv_config *cfg, uint64_t segment_size)
{
	uint64_t v = DEFAULT_MAX_RECORD;

	(void)blkserv_config_get_uint(cfg, "max_record_size", &v);
	if (!blkserv_config_is_set(cfg, "max_record_size") && v > segment_size / 4)
		v = segment_size / 4 / 4096 * 4096;
	return v;
}

static bool max_record_ok(uint64_t v, uint64_t segment_size)
{
	return v == 0 || (v >= 4096 && v % 4096 == 0 && v <= segment_size / 4);
}

/* What read_options and open_dir would refuse, without creating anything. */
static int log_validate(const struct blkserv_config *cfg)
{
	uint64_t segment_size = 64ull << 20, max_size = 0, max_record;
	const char *dir = NULL;
	struct stat st;

	(void)blkserv_config_get_string(cfg, "dir", &dir);
	(void)blkserv_config_get_uint(cfg, "segment_size", &segment_size);
	(void)blkserv_config_get_uint(cfg, "max_size", &max_size);
	max_record = max_record_of(cfg, segment_size);
	if (!max_record_ok(max_record, segment_size))
		return blkserv_config_error(cfg, "max_record_size",
					    "%" PRIu64 " is out of range: 0, or a multiple of 4K from 4K to a "
					    "quarter of segment_size (%" PRIu64 ")",
					    max_record, segment_size / 4);
	if (max_size && max_size / 4 < segment_size)
		return blkserv_config_error(cfg, "max_size",
					    "%" PRIu64 " is too small: it must be 0 (no limit) or at least "
					    "4 x segment_size (%" PRIu64 ")",
					    max_size, 4 * segment_size);
	if (!dir)
		return 0; /* required: the daemon reports it */
	if (stat(dir, &st) == 0 && !S_ISDIR(st.st_mode))
		return blkserv_config_error(cfg, "dir", "%s exists and is not a directory", dir);
	return blkserv_config_claim(cfg, "dir", "log directory", dir);
}

BLKSERV_PRINTF(3, 0) static void store_to_blkserv_log(void *ctx, int level, const char *fmt, va_list ap)
{
	blkserv_logv(ctx, level, fmt, ap);
}

/* ---- open ---------------------------------------------------------- */

static int read_options(struct logdev *ld, const struct blkserv_config *cfg, const char **ret_dir)
{
	uint64_t pct = 50;

	if (blkserv_config_get_string(cfg, "dir", ret_dir) < 0 || (*ret_dir)[0] != '/') {
		blkserv_error(ld->dev, "the log backend needs dir = \"/absolute/path\"");
		return -EINVAL;
	}
	(void)blkserv_config_get_uint(cfg, "segment_size", &ld->segment_size);
	(void)blkserv_config_get_uint(cfg, "max_size", &ld->max_size);
	(void)blkserv_config_get_uint(cfg, "checkpoint_interval", &ld->ckpt_interval);
	(void)blkserv_config_get_uint(cfg, "compact_threshold", &pct);
	(void)blkserv_config_get_bool(cfg, "compaction", &ld->compaction);
	(void)blkserv_config_get_bool(cfg, "recover_truncate", &ld->recover_truncate);
	(void)blkserv_config_get_bool(cfg, "verify_on_start", &ld->verify_on_start);
	ld->compact_pct = pct;
	if (ld->segment_size < MIN_SEGMENT_SIZE || ld->segment_size > (1ull << 40)) {
		blkserv_error(ld->dev, "segment_size %" PRIu64 " is out of range (64K to 1T)", ld->segment_size);
		return -EINVAL;
	}
	ld->max_record = max_record_of(cfg, ld->segment_size);
	if (!max_record_ok(ld->max_record, ld->segment_size)) {
		blkserv_error(ld->dev,
			      "max_record_size %" PRIu64 " is out of range (0, or a multiple of 4K from 4K "
			      "to a quarter of segment_size)",
			      ld->max_record);
		return -EINVAL;
	}
	if (pct < 1 || pct > 99) {
		blkserv_error(ld->dev, "compact_threshold %" PRIu64 " is out of range (1 to 99 percent)", pct);
		return -EINVAL;
	}
	if (ld->max_size && ld->max_size < 4 * ld->segment_size) {
		blkserv_error(ld->dev, "max_size %" PRIu64 " is too small: at least 4 x segment_size (%" PRIu64 ")",
			      ld->max_size, 4 * ld->segment_size);
		return -EINVAL;
	}
	if (ld->ckpt_interval == 0)
		ld->ckpt_interval = UINT64_MAX;
	/* Test hook; unset or junk leaves it off. */
	(void)parse_uint_dec(getenv("BLKSERV_LOG_FAULT_FSYNC"), &ld->fault_fsync);
	return 0;
}

/* mkdir -p, then open and lock the directory for this device alone. */
static int open_dir(struct logdev *ld, const char *dir)
{
	char path[4096];
	int fd;

	if (strlen(dir) >= sizeof(path))
		return -ENAMETOOLONG;
	strcpy(path, dir);
	for (char *p = path + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(path, 0750) < 0 && errno != EEXIST) {
			blkserv_error(ld->dev, "cannot create the log directory %s: %m", path);
			return -errno;
		}
		*p = c;
		if (!c)
			break;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		blkserv_error(ld->dev, "cannot open the log directory %s: %m", dir);
		return -errno;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int r = -errno;
		blkserv_error(ld->dev, "the log directory %s is in use by another device or process (locked)", dir);
		close(fd);
		return r == -EWOULDBLOCK ? -EBUSY : r;
	}
	ld->s.dirfd = fd;
	return 0;
}

static void report_recovery(struct logdev *ld)
{
	const struct recover_result *rr = &ld->recovery;

	if (rr->start_seg == 0) {
		blkserv_info(ld->dev, "log %s: a new log (%" PRIu64 " bytes)", ld->s.dir, ld->s.device_size);
		return;
	}
	blkserv_info(ld->dev,
		     "log %s: %zu segment(s), %" PRIu64 " bytes, %" PRIu64 " extents; replayed %" PRIu64
		     " record(s) (%" PRIu64 " bytes) %s%" PRIu64 " in %.1f ms%s",
		     ld->s.dir, ld->s.nsegs, ld->s.total_bytes, emap_count(&ld->s.map), rr->replayed_records,
		     rr->replayed_bytes, rr->from_checkpoint ? "after the checkpoint in segment " : "from segment ",
		     rr->start_seg, (double)rr->duration_ns / 1e6, rr->torn_tail ? "; a torn tail was cut" : "");
}

/* Adopt the recovered log, or set up a new one. */
static int adopt_log(struct logdev *ld, uint64_t size)
{
	int r;

	if (ld->s.nsegs == 0) {
		if (size == 0) {
			blkserv_error(ld->dev, "the log in %s is empty: the device needs its size option", ld->s.dir);
			return -EINVAL;
		}
		if (getrandom(ld->s.uuid, sizeof(ld->s.uuid), 0) != sizeof(ld->s.uuid))
			return -errno;
		ld->s.device_size = size;
		ld->s.block_size = blkserv_device_block_size(ld->dev);
		ld->next_seg_id = 1;
		return 0;
	}
	if (size && size != ld->s.device_size) {
		blkserv_error(ld->dev,
			      "the log in %s holds a device of %" PRIu64 " bytes, but size is %" PRIu64
			      " in the config",
			      ld->s.dir, ld->s.device_size, size);
		return -EINVAL;
	}
	ld->next_seg_id = store_last_seg(&ld->s)->id + 1;
	ld->ckpt_seg = ld->s.ckpt_seg;
	ld->ckpt_bytes = ld->recovery.ckpt_bytes;
	ld->since_ckpt = ld->recovery.replayed_bytes;
	/* What recovery served must not vanish in a later power cut. */
	r = log_fdatasync(ld, store_last_seg(&ld->s)->fd);
	if (r < 0)
		return blkserv_error_errno(ld->dev, r, "fdatasync of the recovered log in %s failed: %m", ld->s.dir);
	return 0;
}

static int init_locks(struct logdev *ld)
{
	pthread_rwlockattr_t attr;
	pthread_condattr_t cattr;

	pthread_mutex_init(&ld->sync_lock, NULL);
	pthread_mutex_init(&ld->append_lock, NULL);
	pthread_mutex_init(&ld->bg_lock, NULL);
	pthread_mutex_init(&ld->scan_lock, NULL);
	pthread_mutex_init(&ld->bad_lock, NULL);
	pthread_cond_init(&ld->space_cv, NULL);
	pthread_condattr_init(&cattr);
	pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC); /* the background thread's period */
	pthread_cond_init(&ld->bg_cv, &cattr);
	pthread_condattr_destroy(&cattr);
	pthread_rwlockattr_init(&attr);
	/* Writers wait for readers only briefly: readers must not starve them. */
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&ld->index_lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	return 0;
}

static void log_free(struct logdev *ld)
{
	log_bg_stop(ld);
	store_free(&ld->s);
	safe_close(ld->s.dirfd); /* releases the lock */
	pthread_mutex_destroy(&ld->sync_lock);
	pthread_mutex_destroy(&ld->append_lock);
	pthread_mutex_destroy(&ld->bg_lock);
	pthread_mutex_destroy(&ld->scan_lock);
	pthread_mutex_destroy(&ld->bad_lock);
	free(ld->bad);
	pthread_cond_destroy(&ld->space_cv);
	pthread_cond_destroy(&ld->bg_cv);
	pthread_rwlock_destroy(&ld->index_lock);
	free(ld);
}

static int log_open(struct blkserv_device *dev, const struct blkserv_config *cfg, uint64_t size, void **ret)
{
	struct recover_opts ro = { 0 };
	struct logdev *ld = calloc(1, sizeof(*ld));
	const char *dir;
	int r;

	if (!ld)
		return -ENOMEM;
	ld->dev = dev;
	store_init(&ld->s);
	init_locks(ld);
	ld->s.msg = store_to_blkserv_log;
	ld->s.msg_ctx = dev;
	r = read_options(ld, cfg, &dir);
	if (r >= 0 && !(ld->s.dir = strdup(dir)))
		r = -ENOMEM;
	if (r >= 0)
		r = open_dir(ld, dir);
	ro.cut_corruption = ld->recover_truncate;
	ro.verify_all = ld->verify_on_start;
	if (r >= 0)
		r = log_recover(&ld->s, &ro, &ld->recovery);
	if (r >= 0)
		r = adopt_log(ld, size);
	if (r >= 0) {
		atomic_store(&ld->synced_seq, ld->s.next_seq - 1);
		atomic_store(&ld->last_client_seq, ld->s.next_seq - 1);
		if (ld->s.nsegs == 0) {
			pthread_mutex_lock(&ld->append_lock);
			r = log_rotate_locked(ld, 0);
			pthread_mutex_unlock(&ld->append_lock);
		}
	}
	if (r >= 0)
		r = log_bg_start(ld);
	if (r < 0) {
		log_free(ld);
		return r;
	}
	report_recovery(ld);
	*ret = ld;
	return 0;
}

static void log_close(void *handle)
{
	log_free(handle);
}

static int log_get_size(void *handle, uint64_t *ret)
{
	*ret = ((struct logdev *)handle)->s.device_size;
	return 0;
}

static int log_get_caps(void *handle, uint64_t *ret)
{
	*ret = BLKSERV_CAP_FLUSH | BLKSERV_CAP_FUA | BLKSERV_CAP_TRIM | BLKSERV_CAP_WRITE_ZEROES;
	return 0;
}

/* ---- data ---------------------------------------------------------- */

/* Copy [pos, pos+n) of extent @x into @buf, verified against the
 * checksum of its record: -EBADMSG (reported) when it does not match.
 * index_lock held. */
static int read_extent(struct logdev *ld, const struct extent *x, uint64_t pos, uint64_t n, char *buf)
{
	uint64_t foff = x->foff + (pos - x->off);
	struct log_segment *seg;
	const struct log_rec_ent *e;
	const char *why = "no record holds these bytes";
	char what[160];
	int r;

	if (x->foff == EXTENT_ZERO) {
		memset(buf, 0, (size_t)n);
		return 0;
	}
	seg = store_seg(&ld->s, x->seg);
	if (!seg)
		return -EIO;
	if (!log_recs_known(seg))
		return -EAGAIN; /* its record list first, without index_lock */
	e = store_rec_find(seg, foff);
	if (e && foff + n > e->pos + LOG_REC_HEADER_SIZE + (e->len & ~LOG_RECENT_BADHDR))
		e = NULL; /* the index and the record disagree about where the data ends */
	r = e ? log_read_verified(seg->fd, seg->id, ld->s.device_size, e, foff, n, buf, &why) : -EBADMSG;
	if (r == -EBADMSG) {
		snprintf(what, sizeof(what), "reads of device offset %" PRIu64 "+%" PRIu64 " fail with EIO", x->off,
			 x->len);
		log_report_bad(ld, seg->id, e ? e->pos : foff, why, what);
	}
	return r; /* -EBADMSG: corrupt, the caller fails the read with EIO */
}

static int log_read(void *handle, struct blkserv_request *req)
{
	struct logdev *ld = handle;
	uint64_t pos = req->offset, end = req->offset + req->length;
	char *buf = req->buf;
	struct emap_iter it;
	uint64_t need_seg = 0;
	int r = 0;

again:
	pthread_rwlock_rdlock(&ld->index_lock);
	emap_seek(&ld->s.map, pos, &it);
	while (r >= 0 && pos < end) {
		const struct extent *x = emap_get(&ld->s.map, &it);
		uint64_t stop = !x || x->off >= end ? end : x->off;
		if (stop > pos) { /* never written, or trimmed long ago: zeros */
			memset(buf + (pos - req->offset), 0, (size_t)(stop - pos));
			pos = stop;
			continue;
		}
		stop = x->off + x->len < end ? x->off + x->len : end;
		r = read_extent(ld, x, pos, stop - pos, buf + (pos - req->offset));
		if (r == -EAGAIN)
			need_seg = x->seg;
		else
			pos = stop;
		emap_next(&ld->s.map, &it);
	}
	pthread_rwlock_unlock(&ld->index_lock);
	if (r == -EAGAIN) {
		/* An old segment, first read since the start: list its records,
		 * then go on from here (the index may have changed meanwhile,
		 * so look again). */
		r = log_recs_build(ld, need_seg);
		if (r >= 0)
			goto again;
	}
	if (r < 0) {
		/* No byte of a failed read goes out, verified or not. */
		memset(req->buf, 0, (size_t)req->length);
		if (r == -EBADMSG)
			atomic_fetch_add(&ld->checksum_failed_reads, 1);
		else
			(void)blkserv_error_errno(ld->dev, r, "read of %" PRIu64 "+%" PRIu64 " from %s failed: %m",
						  req->offset, req->length, ld->s.dir);
	}
	return r == -EBADMSG ? -EIO : r;
}

/* A write larger than max_record_size, as several records appended in one
 * go (nothing else in between): a read of part of it then reads and
 * checksums one record of at most max_record_size, not the whole write.
 * A crash may keep a prefix of them, as of any write not yet flushed. */
static int append_split(struct logdev *ld, struct blkserv_request *req)
{
	uint64_t n = (req->length + ld->max_record - 1) / ld->max_record, seq = 0;
	_cleanup_free_ uint32_t *crcs = calloc((size_t)n, sizeof(*crcs));
	int r = 0;

	if (!crcs)
		return -ENOMEM;
	for (uint64_t i = 0; i < n; i++) /* outside the lock */
		crcs[i] = crc32c(0, (const char *)req->buf + i * ld->max_record,
				 (size_t)(i + 1 < n ? ld->max_record : req->length - i * ld->max_record));
	pthread_mutex_lock(&ld->append_lock);
	for (uint64_t i = 0; r >= 0 && i < n; i++) {
		uint64_t off = i * ld->max_record;
		struct append a = { .type = LOG_REC_WRITE,
				    .offset = req->offset + off,
				    .length = i + 1 < n ? ld->max_record : req->length - off,
				    .payload = (const char *)req->buf + off,
				    .payload_crc = crcs[i] };
		a.payload_len = a.length;
		r = log_append_locked(ld, &a, &seq);
	}
	pthread_mutex_unlock(&ld->append_lock);
	if (r >= 0 && (req->flags & BLKSERV_REQ_FUA))
		r = log_sync_upto(ld, seq);
	return r;
}

static int append_request(struct logdev *ld, struct blkserv_request *req, uint16_t type)
{
	struct append a = { .type = type, .offset = req->offset, .length = req->length };
	uint64_t seq;
	int r;

	if (type == LOG_REC_WRITE && ld->max_record && req->length > ld->max_record)
		return append_split(ld, req);
	if (type == LOG_REC_WRITE) {
		a.payload = req->buf;
		a.payload_len = req->length;
	}
	/* The checksum of the payload is computed outside the lock. */
	a.payload_crc = crc32c(0, a.payload, (size_t)a.payload_len);
	r = log_append(ld, &a, &seq);
	if (r >= 0 && (req->flags & BLKSERV_REQ_FUA))
		r = log_sync_upto(ld, seq);
	return r;
}

static int log_write(void *handle, struct blkserv_request *req)
{
	return append_request(handle, req, LOG_REC_WRITE);
}

static int log_trim(void *handle, struct blkserv_request *req)
{
	return append_request(handle, req, LOG_REC_TRIM);
}

static int log_write_zeroes(void *handle, struct blkserv_request *req)
{
	return append_request(handle, req, LOG_REC_ZERO);
}

static int log_flush(void *handle, struct blkserv_request *req)
{
	struct logdev *ld = handle;

	return log_sync_upto(ld, atomic_load(&ld->last_client_seq));
}

/* A clean stop: a checkpoint, so the next start replays nothing. */
static int log_sync(void *handle)
{
	struct logdev *ld = handle;
	bool need;

	/* No compaction after the final checkpoint: the next start then
	 * replays nothing. */
	log_bg_stop(ld);
	if (atomic_load(&ld->failed))
		return -EIO;
	pthread_mutex_lock(&ld->append_lock);
	need = ld->since_ckpt > 0;
	pthread_mutex_unlock(&ld->append_lock);
	return need ? log_checkpoint(ld) : log_sync_upto(ld, atomic_load(&ld->last_client_seq));
}

static int log_get_stats(void *handle, char *buf, size_t len)
{
	struct logdev *ld = handle;
	uint64_t client, disk;

	pthread_mutex_lock(&ld->append_lock);
	client = ld->client_bytes;
	disk = ld->disk_bytes;
	snprintf(buf, len,
		 "log_bytes=%" PRIu64 "\nsegments=%zu\nlive_bytes=%" PRIu64 "\ngarbage_bytes=%" PRIu64
		 "\ncheckpoint_bytes=%" PRIu64 "\nextents=%" PRIu64 "\nclient_write_bytes=%" PRIu64
		 "\ndisk_write_bytes=%" PRIu64 "\nwrite_amplification=%.3f\ncompactions=%" PRIu64
		 "\ncompacted_bytes=%" PRIu64 "\ndeleted_segments=%" PRIu64 "\ncheckpoints=%" PRIu64
		 "\nnext_seq=%" PRIu64 "\nsynced_seq=%" PRIu64 "\nsync_failed=%d\nrecovery_ms=%.3f"
		 "\nrecovery_replayed_bytes=%" PRIu64 "\n",
		 ld->s.total_bytes, ld->s.nsegs, ld->s.live_bytes, log_garbage_locked(ld), ld->ckpt_bytes,
		 emap_count(&ld->s.map), client, disk, client ? (double)disk / (double)client : 0.0, ld->compactions,
		 ld->compacted_bytes, ld->deleted_segments, ld->checkpoints, ld->s.next_seq,
		 atomic_load(&ld->synced_seq), atomic_load(&ld->failed) ? 1 : 0, (double)ld->recovery.duration_ns / 1e6,
		 ld->recovery.replayed_bytes);
	pthread_mutex_unlock(&ld->append_lock);
	size_t used = strlen(buf);
	return log_verify_stats(ld, buf + used, len - used);
}

static struct blkserv_backend log_backend = {
	.name = "log",
	.description = "append-only checksummed log in a directory, with crash recovery and compaction",
	.options = log_options,
	.open = log_open,
	.close = log_close,
	.get_size = log_get_size,
	.get_caps = log_get_caps,
	.read = log_read,
	.write = log_write,
	.flush = log_flush,
	.trim = log_trim,
	.write_zeroes = log_write_zeroes,
	.sync = log_sync,
	.get_stats = log_get_stats,
	.option_checks = log_checks,
	.validate = log_validate,
	.scrub = log_scrub,
};

BLKSERV_REGISTER_BACKEND(log_backend)

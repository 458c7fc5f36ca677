/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The log backend's instance and its locking.
 *
 * Locks (taken in this order):
 *  - sync_lock: one fdatasync for client flushes at a time; a flush that
 *    finds its records already synced by another returns at once (group
 *    commit).
 *  - append_lock: serialises everything that changes the log or the index:
 *    appends, segment rotation, checkpoints, compaction batches.  This is a
 *    device-wide lock on the write path, on purpose: appends to one log are
 *    serial by nature (one tail, one sequence), and the index must change
 *    in exactly log order or replay would not rebuild what was served.  It
 *    is held for a pwrite into the page cache, never across a client
 *    flush's fdatasync (only across the one that seals a full segment).
 *    Holders may read the index without index_lock.
 *  - index_lock (writer-preferring rwlock): readers take it shared to walk
 *    the index and pread; changers of the index or the segment table take
 *    it exclusively for the in-memory update only.
 */
#ifndef BLKSERV_LOG_LOGDEV_H
#define BLKSERV_LOG_LOGDEV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "blkserv/blkserv-plugin.h"
#include "recover.h"
#include "store.h"

struct log_bad {
	uint64_t seg, pos;
};

struct log_scrub_stats {
	bool running;
	int last_result; /* 0 none yet, else LOG_SCRUB_* */
	uint64_t runs, errors, garbage_errors, records, bytes;
	uint64_t last_end; /* realtime seconds */
	uint64_t duration_ns;
};

enum { LOG_SCRUB_CLEAN = 1, LOG_SCRUB_CORRUPT, LOG_SCRUB_FAILED, LOG_SCRUB_CANCELLED };

struct logdev {
	struct blkserv_device *dev;
	struct log_store s;

	/* Options. */
	uint64_t segment_size;
	uint64_t max_record;    /* split writes into records of at most this (0: never) */
	uint64_t max_size;      /* 0: no limit */
	uint64_t ckpt_interval; /* bytes appended between checkpoints */
	uint64_t compact_pct;   /* compact when garbage exceeds this % of the log */
	bool compaction;
	bool recover_truncate;
	bool verify_on_start;
	uint64_t fault_fsync; /* test hook: fail the Nth fdatasync */
	_Atomic uint64_t fsyncs;

	pthread_mutex_t sync_lock;
	pthread_mutex_t append_lock;
	pthread_rwlock_t index_lock;
	pthread_cond_t space_cv; /* with append_lock: space was freed */

	_Atomic uint64_t synced_seq;      /* every record up to it is durable */
	_Atomic uint64_t last_client_seq; /* newest record a flush must cover */
	_Atomic bool failed;              /* an fdatasync failed: read-only until restart */
	uint64_t next_seg_id;
	uint64_t since_ckpt; /* bytes appended since the last checkpoint */
	uint64_t kick_pos;   /* writeback started up to here in the last segment */
	uint64_t ckpt_seg;   /* segment of the newest durable checkpoint */
	uint64_t ckpt_bytes; /* its size: needed, so not garbage */

	/* Counters, under append_lock. */
	uint64_t client_bytes; /* WRITE payload from clients */
	uint64_t disk_bytes;   /* everything appended: headers, payload, checkpoints */
	uint64_t compactions, compacted_bytes, deleted_segments, checkpoints;
	struct recover_result recovery;

	/* Verification (verify.c).  scan_lock: one scan of an old
	 * segment's record headers at a time (taken with index_lock shared).
	 * Taken before index_lock, never while holding it.
	 * bad_lock: the corrupt records seen so far and what counts them. */
	pthread_mutex_t scan_lock;
	pthread_mutex_t bad_lock;
	struct log_bad *bad; /* corrupt records found, each logged once */
	size_t nbad, bad_cap;
	uint64_t checksum_errors; /* distinct corrupt records found */
	_Atomic uint64_t checksum_failed_reads;
	uint64_t msg_window_ns; /* rate limit of the messages */
	unsigned msg_count;
	uint64_t msg_suppressed;
	struct log_scrub_stats scrub; /* under bad_lock */

	/* The background thread: checkpoints and compaction. */
	pthread_t bg;
	bool bg_running;
	pthread_mutex_t bg_lock;
	pthread_cond_t bg_cv;
	bool bg_stop, bg_kick;
	uint64_t bg_passes; /* under append_lock: background passes done */
	bool bg_freed;      /* under append_lock: the last pass deleted segments */
};

/* What to append. */
struct append {
	uint16_t type;           /* LOG_REC_* */
	uint64_t offset, length; /* device range (WRITE/TRIM/ZERO) */
	const void *payload;
	uint64_t payload_len;
	uint32_t payload_crc; /* crc32c(0, payload, payload_len) */
	bool compaction;      /* may use the space reserved for compaction */
	bool no_rotate;       /* fail with -ENOSPC rather than start a segment */
};

/* writer.c */
int log_fdatasync(struct logdev *ld, int fd); /* 0 or -errno */
int log_append_locked(struct logdev *ld, const struct append *a, uint64_t *ret_seq);
int log_append(struct logdev *ld, const struct append *a, uint64_t *ret_seq);
int log_rotate_locked(struct logdev *ld, uint32_t flags);
int log_sync_upto(struct logdev *ld, uint64_t seq);
int log_checkpoint(struct logdev *ld);
void log_sync_failed(struct logdev *ld, const char *what, int err);
uint64_t log_garbage_locked(const struct logdev *ld);
/* Reserved for compaction below max_size. */
uint64_t log_reserve(const struct logdev *ld);

/* verify.c */
/* Is @seg's record list complete?  (index_lock held.)  If not, the
 * caller drops index_lock, calls log_recs_build() and looks again. */
static inline bool log_recs_known(struct log_segment *seg)
{
	return atomic_load_explicit(&seg->recs_known, memory_order_acquire);
}
/* Scan the record headers of segment @seg_id (index_lock not held). */
int log_recs_build(struct logdev *ld, uint64_t seg_id);
/* Read and verify the WRITE record @e of segment @seg_id through @fd: its
 * payload bytes at file offsets [foff, foff+n) go to @dst, the rest is
 * read into scratch space (the whole payload is checksummed).  0,
 * -EBADMSG with *why, or -errno.  @dst is zeroed on failure. */
int log_read_verified(int fd, uint64_t seg_id, uint64_t device_size, const struct log_rec_ent *e, uint64_t foff,
		      uint64_t n, void *dst, const char **why);
/* A corrupt record at @pos of segment @seg: count it, log it once
 * (rate-limited); @what says who found it and what follows. */
void log_report_bad(struct logdev *ld, uint64_t seg, uint64_t pos, const char *why, const char *what);
/* The backend's scrub callback. */
int log_scrub(void *handle, struct blkserv_scrub *sc);
/* "key=value\n" lines of the verification counters. */
int log_verify_stats(struct logdev *ld, char *buf, size_t len);

/* compact.c */
int log_bg_start(struct logdev *ld);
void log_bg_stop(struct logdev *ld);
void log_bg_kick(struct logdev *ld);
int log_compact_round(struct logdev *ld, bool force);

#endif

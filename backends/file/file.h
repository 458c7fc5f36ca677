/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The file backend's shared state: the instance (file.c sets it up) and the
 * per-queue state and data path (file-io.c).
 */
#ifndef BLKSERV_BACKEND_FILE_H
#define BLKSERV_BACKEND_FILE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "blkserv/blkserv-plugin.h"

/* The zero-filled source of the "write zeroes by writing" fallback. */
#define FILE_ZERO_CHUNK (1u << 20)

/* One configured file or block device. */
struct file_backend {
	struct blkserv_device *dev;
	char *path;
	int fd; /* holds the lock; used by sync() at stop */
	uint64_t size;
	dev_t st_dev; /* identity of what we opened, checked on every reopen */
	ino_t st_ino;
	dev_t rdev; /* block devices: the device number */

	bool is_blockdev;
	bool read_only;
	bool direct;
	uint32_t dio_offset_align;   /* direct: offset and length alignment */
	uint32_t dio_mem_align;      /* direct: buffer alignment */
	uint32_t bdev_logical_block; /* block devices: for discard/zeroout rounding */

	bool can_punch;   /* regular file: FALLOC_FL_PUNCH_HOLE works */
	bool can_discard; /* block device: BLKDISCARD works */
	bool rotational;
	atomic_bool no_zero_range; /* learnt at first use: ZERO_RANGE is EOPNOTSUPP */
	atomic_bool no_punch_zero; /* zeroing by punching fails (EOPNOTSUPP) */

	const void *zeroes; /* FILE_ZERO_CHUNK bytes, read-only */

	/* A failed fdatasync (0: none).  Shared by every queue: once set, every
	 * flush and FUA write fails until the device is restarted. */
	atomic_int sync_error;
	atomic_bool eof_warned;

	/* Counters for blkservctl stats (relaxed). */
	atomic_ullong short_io_resubmits;
	atomic_ullong bounced;
	atomic_ullong buffered_unaligned;
	atomic_ullong zero_writes;
};

struct file_queue;

/* Per-request state, in the request's private area (no allocation). */
struct file_request {
	struct blkserv_event ev; /* first: the CQE finds the request */
	struct blkserv_request *req;
	struct file_queue *fq;
	char *buf;          /* reads land / writes come from here: the frontend's
			     * buffer, a bounce buffer, or the zero chunk */
	size_t bounce_size; /* > 0: buf is a bounce buffer of this size */
	uint64_t done;      /* bytes finished so far (short I/O continues here) */
	int falloc_mode;    /* the fallocate running */
	uint16_t retries;   /* -EAGAIN/-EINTR resubmissions */
	bool zeroing;       /* writing zeros: buf is the zero chunk, it does not advance */
};

/* file-io.c: the data path. */
int file_queue_open(void *handle, struct blkserv_queue *q, void **ret_qdata);
void file_queue_close(void *qdata);
int file_read(void *qdata, struct blkserv_request *req);
int file_write(void *qdata, struct blkserv_request *req);
int file_flush(void *qdata, struct blkserv_request *req);
int file_trim(void *qdata, struct blkserv_request *req);
int file_write_zeroes(void *qdata, struct blkserv_request *req);

/* Record a failed fdatasync (or FUA write) and log it loudly, once. */
void file_set_sync_error(struct file_backend *fb, int error, const char *what);

/* file.c: open @fb->path again (a new open file description, so each queue
 * sees writeback errors itself), checking it is still the same file. */
int file_reopen(struct file_backend *fb, bool direct, int *ret_fd);

#endif

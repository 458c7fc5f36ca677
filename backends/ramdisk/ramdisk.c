/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ramdisk: a device in memory.  The bytes live in a memfd, which is sparse
 * (pages exist only where written; trim gives them back) and can be kept in
 * systemd's fd store, so the data outlives a daemon crash and restart.
 * Small requests are served synchronously with pread/pwrite straight into
 * the frontend's buffer: one copy, no mapping to lock (and reading a hole
 * allocates nothing, unlike a read fault on a mapping).  Large ones go on
 * the queue's io_uring, so the copy of one request overlaps the network
 * or kernel transfer of the next instead of stalling the queue thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blkserv/blkserv-plugin.h"
#include "cleanup.h"
#include "io-util.h"
#include "macro.h"

#define FDSTORE_KEY "memfd"
/* From this size on, reads and writes are submitted on the ring. */
#define ASYNC_MIN_BYTES (128u << 10)

struct ramdisk {
	struct blkserv_device *dev;
	int fd;
	uint64_t size;
	bool preserve;
};

/* Per-queue state: what the data callbacks receive. */
struct ramdisk_queue {
	struct ramdisk *rd;
	struct blkserv_queue *q;
};

/* Per-request state of an asynchronous read or write. */
struct ramdisk_io {
	struct blkserv_event ev;
	struct blkserv_request *req;
	struct ramdisk *rd;
	uint64_t done;
};

static int new_memfd(struct blkserv_device *dev, uint64_t size)
{
	_cleanup_close_ int fd = -1;
	char name[64];

	snprintf(name, sizeof(name), "blkserv-ramdisk:%s", blkserv_device_name(dev));
	fd = memfd_create(name, MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0)
		return -errno;
	return TAKE_FD(fd);
}

/* The memfd a previous daemon left in the fd store, if it fits. */
static int adopt_stored_memfd(struct blkserv_device *dev, uint64_t size)
{
	int fd = blkserv_fd_take(dev, FDSTORE_KEY);
	struct stat st;

	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != size) {
		blkserv_warning(dev, "stored ramdisk has size %lld, configured size is %llu: starting empty",
				(long long)st.st_size, (unsigned long long)size);
		close(fd);
		return -ESTALE;
	}
	blkserv_notice(dev, "kept the ramdisk contents of the previous daemon (fd store)");
	return fd;
}

static int ramdisk_open(struct blkserv_device *dev, const struct blkserv_config *cfg, uint64_t size, void **ret_handle)
{
	struct ramdisk *rd;
	int r;

	if (size == 0) {
		blkserv_error(dev, "the ramdisk backend needs the device's size option (like size = 1G)");
		return -EINVAL;
	}
	if (size > (uint64_t)INT64_MAX) {
		blkserv_error(dev, "ramdisk size %llu is too large", (unsigned long long)size);
		return -EFBIG;
	}
	rd = calloc(1, sizeof(*rd));
	if (!rd)
		return -ENOMEM;
	rd->dev = dev;
	rd->size = size;
	rd->fd = adopt_stored_memfd(dev, size);
	if (rd->fd < 0) {
		rd->fd = new_memfd(dev, size);
		/* A kernel device the last daemon left holds data we lost. */
		blkserv_device_set_data_fresh(dev);
	}
	if (rd->fd < 0) {
		r = rd->fd;
		(void)blkserv_error_errno(dev, r, "cannot create the ramdisk memfd: %m");
		free(rd);
		return r;
	}
	/* Under systemd, keep the memory across a crash of the daemon. */
	(void)blkserv_fd_store(dev, FDSTORE_KEY, rd->fd);
	*ret_handle = rd;
	return 0;
}

static void ramdisk_close(void *handle)
{
	struct ramdisk *rd = handle;

	/* A clean stop drops the data; a restart keeps it (preserve). */
	if (!rd->preserve)
		blkserv_fd_forget(rd->dev, FDSTORE_KEY);
	close(rd->fd);
	free(rd);
}

static int ramdisk_preserve(void *handle)
{
	struct ramdisk *rd = handle;

	rd->preserve = true;
	return 0;
}

static int ramdisk_get_size(void *handle, uint64_t *ret_size)
{
	*ret_size = ((struct ramdisk *)handle)->size;
	return 0;
}

static int ramdisk_get_caps(void *handle, uint64_t *ret_caps)
{
	/* Memory has no volatile cache: a completed write is as durable as a
	 * ramdisk gets.  FLUSH is accepted (and free) so kernels and clients
	 * that insist on it work. */
	*ret_caps = BLKSERV_CAP_FLUSH | BLKSERV_CAP_FUA | BLKSERV_CAP_WRITE_THROUGH | BLKSERV_CAP_TRIM |
		    BLKSERV_CAP_WRITE_ZEROES;
	return 0;
}

static int sync_read(struct ramdisk *rd, struct blkserv_request *req)
{
	return pread_full(rd->fd, req->buf, req->length, req->offset);
}

static int sync_write(struct ramdisk *rd, struct blkserv_request *req)
{
	return pwrite_full(rd->fd, req->buf, req->length, req->offset);
}

/* Put the rest of @io's transfer on the ring; false if the ring is full. */
static bool submit_rest(struct ramdisk_io *io)
{
	struct blkserv_request *req = io->req;
	struct io_uring_sqe *sqe = blkserv_queue_get_sqe(req->queue);
	char *buf = (char *)req->buf + io->done;

	if (!sqe)
		return false;
	if (req->op == BLKSERV_OP_READ)
		io_uring_prep_read(sqe, io->rd->fd, buf, (unsigned)(req->length - io->done), req->offset + io->done);
	else
		io_uring_prep_write(sqe, io->rd->fd, buf, (unsigned)(req->length - io->done), req->offset + io->done);
	/* Straight to an io-wq worker: on tmpfs the ring would otherwise copy
	 * inline, in this thread, and nothing would overlap. */
	io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
	blkserv_sqe_set_event(sqe, &io->ev);
	return true;
}

static void on_transfer(struct blkserv_event *ev, int32_t res, uint32_t cqe_flags)
{
	struct ramdisk_io *io = container_of(ev, struct ramdisk_io, ev);
	struct blkserv_request *req = io->req;

	if (res <= 0) {
		blkserv_request_complete(req, res < 0 ? res : -EIO);
		return;
	}
	io->done += (uint64_t)res;
	if (io->done < req->length && submit_rest(io))
		return;
	/* Done, or the ring is full: finish the remainder here. */
	if (io->done < req->length) {
		struct blkserv_request rest = *req;
		rest.buf = (char *)req->buf + io->done;
		rest.offset += io->done;
		rest.length -= io->done;
		res = req->op == BLKSERV_OP_READ ? sync_read(io->rd, &rest) : sync_write(io->rd, &rest);
		blkserv_request_complete(req, res);
		return;
	}
	blkserv_request_complete(req, 0);
}

static int transfer(struct ramdisk_queue *qd, struct blkserv_request *req)
{
	struct ramdisk_io *io = blkserv_request_priv(req);

	if (req->length >= ASYNC_MIN_BYTES) {
		io->ev.fn = on_transfer;
		io->req = req;
		io->rd = qd->rd;
		io->done = 0;
		if (submit_rest(io))
			return BLKSERV_ASYNC;
	}
	return req->op == BLKSERV_OP_READ ? sync_read(qd->rd, req) : sync_write(qd->rd, req);
}

static int ramdisk_read(void *qdata, struct blkserv_request *req)
{
	return transfer(qdata, req);
}

static int ramdisk_write(void *qdata, struct blkserv_request *req)
{
	return transfer(qdata, req);
}

/* The bytes are in the memfd as they are: a frontend may send them from
 * there (sendfile), which saves copying them into its buffer.  A hole reads
 * as the zero page there too, allocating nothing. */
static int ramdisk_read_map(void *qdata, const struct blkserv_request *req, int *ret_fd, uint64_t *ret_offset)
{
	*ret_fd = ((struct ramdisk_queue *)qdata)->rd->fd;
	*ret_offset = req->offset;
	return 0;
}

static int ramdisk_queue_open(void *handle, struct blkserv_queue *q, void **ret_qdata)
{
	struct ramdisk_queue *qd = calloc(1, sizeof(*qd));

	if (!qd)
		return -ENOMEM;
	qd->rd = handle;
	qd->q = q;
	*ret_qdata = qd;
	return 0;
}

static void ramdisk_queue_close(void *qdata)
{
	free(qdata);
}

static int ramdisk_flush(void *handle, struct blkserv_request *req)
{
	return 0;
}

/* Punching a hole gives the pages back; the range reads as zeros. */
static int punch(struct ramdisk *rd, uint64_t offset, uint64_t length)
{
	if (fallocate(rd->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length) < 0)
		return -errno;
	return 0;
}

static int ramdisk_trim(void *qdata, struct blkserv_request *req)
{
	return punch(((struct ramdisk_queue *)qdata)->rd, req->offset, req->length);
}

static int ramdisk_write_zeroes(void *qdata, struct blkserv_request *req)
{
	struct ramdisk *rd = ((struct ramdisk_queue *)qdata)->rd;
	int r = punch(rd, req->offset, req->length);

	/* NO_HOLE: the range must stay allocated, so allocate zeroed pages. */
	if (r >= 0 && (req->flags & BLKSERV_REQ_NO_HOLE) &&
	    fallocate(rd->fd, FALLOC_FL_KEEP_SIZE, (off_t)req->offset, (off_t)req->length) < 0)
		r = -errno;
	return r;
}

static int ramdisk_get_stats(void *handle, char *buf, size_t len)
{
	struct ramdisk *rd = handle;
	struct stat st;

	if (fstat(rd->fd, &st) < 0)
		return -errno;
	snprintf(buf, len, "size=%llu\nallocated_bytes=%llu\n", (unsigned long long)rd->size,
		 (unsigned long long)st.st_blocks * 512ull);
	return 0;
}

/* The memfd is made at open with the device's size: there must be one. */
static int ramdisk_validate(const struct blkserv_config *cfg)
{
	uint64_t size = blkserv_config_device_size(cfg);

	if (size == 0)
		return blkserv_config_error(cfg, NULL,
					    "the ramdisk backend needs the device's size option "
					    "(like size = 1G)");
	if (size > (uint64_t)INT64_MAX)
		return blkserv_config_error(cfg, NULL, "size %llu is too large", (unsigned long long)size);
	return 0;
}

static struct blkserv_backend ramdisk_backend = {
	.name = "ramdisk",
	.description = "device in memory (a sparse memfd, kept across restarts under systemd)",
	.options = NULL,
	.request_priv_size = sizeof(struct ramdisk_io),
	.open = ramdisk_open,
	.close = ramdisk_close,
	.get_size = ramdisk_get_size,
	.get_caps = ramdisk_get_caps,
	.queue_open = ramdisk_queue_open,
	.queue_close = ramdisk_queue_close,
	.read = ramdisk_read,
	.write = ramdisk_write,
	.flush = ramdisk_flush,
	.trim = ramdisk_trim,
	.write_zeroes = ramdisk_write_zeroes,
	.get_stats = ramdisk_get_stats,
	.preserve = ramdisk_preserve,
	.read_map = ramdisk_read_map,
	.validate = ramdisk_validate,
};

BLKSERV_REGISTER_BACKEND(ramdisk_backend)

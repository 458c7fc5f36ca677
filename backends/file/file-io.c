/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The file backend's data path.  Every request is submitted on the queue's
 * own io_uring and completed from its CQE; no thread waits for a request.
 * Short reads and writes are continued where they stopped.  Each queue opens
 * the file again, so each queue's fdatasync reports a writeback error
 * itself (the kernel reports such an error once per open file description).
 *
 * With direct = true, a request whose offset and length suit O_DIRECT but
 * whose buffer does not goes through an aligned bounce buffer.  A request
 * whose offset or length does not suit O_DIRECT goes through a second,
 * buffered descriptor of the same file: the kernel does the partial-block
 * read-modify-write in the page cache under its page lock, which stays
 * correct when two such requests touch the same block (a read-modify-write
 * of ours would lose one of them), and it writes back and invalidates the
 * cache around O_DIRECT I/O on the range, so both paths see the same bytes.
 */
#include <errno.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cleanup.h"
#include "file.h"
#include "macro.h"
#include "parse.h"

#define MAX_RETRIES 64
#define BOUNCE_CACHE 4
#define BOUNCE_ROUND (64u << 10)

struct bounce_cache {
	void *buf[BOUNCE_CACHE];
	size_t size[BOUNCE_CACHE];
	unsigned n;
};

struct file_queue {
	struct file_backend *fb;
	struct blkserv_queue *q;
	int fd;          /* O_DIRECT when direct = true */
	int fd_buffered; /* direct = true: for requests O_DIRECT cannot take; else fd */
	struct bounce_cache bounce;
};

static void on_rw(struct blkserv_event *ev, int32_t res, uint32_t cqe_flags);
static void on_fsync(struct blkserv_event *ev, int32_t res, uint32_t cqe_flags);
static void on_fallocate(struct blkserv_event *ev, int32_t res, uint32_t cqe_flags);

static struct file_request *request_of(struct blkserv_event *ev)
{
	return container_of(ev, struct file_request, ev);
}

static bool is_aligned(uint64_t v, uint64_t align)
{
	return (v & (align - 1)) == 0;
}

static void count(atomic_ullong *counter)
{
	atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
}

/* ---- bounce buffers: a small cache per queue, allocated on first use -- */

static void *bounce_get(struct bounce_cache *c, size_t need, size_t align, size_t *ret_size)
{
	void *p;

	for (unsigned i = 0; i < c->n; i++) {
		if (c->size[i] < need)
			continue;
		p = c->buf[i];
		*ret_size = c->size[i];
		c->n--;
		c->buf[i] = c->buf[c->n];
		c->size[i] = c->size[c->n];
		return p;
	}
	need = (need + BOUNCE_ROUND - 1) & ~(size_t)(BOUNCE_ROUND - 1);
	if (posix_memalign(&p, align < 4096 ? 4096 : align, need) != 0)
		return NULL;
	*ret_size = need;
	return p;
}

static void bounce_put(struct bounce_cache *c, void *buf, size_t size)
{
	unsigned smallest = 0;

	if (c->n < BOUNCE_CACHE) {
		c->buf[c->n] = buf;
		c->size[c->n++] = size;
		return;
	}
	/* Keep the larger buffers: they serve every smaller request too. */
	for (unsigned i = 1; i < c->n; i++)
		if (c->size[i] < c->size[smallest])
			smallest = i;
	if (c->size[smallest] < size) {
		free(c->buf[smallest]);
		c->buf[smallest] = buf;
		c->size[smallest] = size;
		return;
	}
	free(buf);
}

/* ---- queues ------------------------------------------------------------ */

int file_queue_open(void *handle, struct blkserv_queue *q, void **ret_qdata)
{
	struct file_backend *fb = handle;
	struct file_queue *fq = calloc(1, sizeof(*fq));
	int r;

	if (!fq)
		return -ENOMEM;
	fq->fb = fb;
	fq->q = q;
	fq->fd = fq->fd_buffered = -1;
	r = file_reopen(fb, fb->direct, &fq->fd);
	if (r >= 0 && fb->direct)
		r = file_reopen(fb, false, &fq->fd_buffered);
	else
		fq->fd_buffered = fq->fd;
	if (r < 0) {
		file_queue_close(fq);
		return r;
	}
	*ret_qdata = fq;
	return 0;
}

void file_queue_close(void *qdata)
{
	struct file_queue *fq = qdata;

	if (fq->fd_buffered != fq->fd)
		safe_close(fq->fd_buffered);
	safe_close(fq->fd);
	for (unsigned i = 0; i < fq->bounce.n; i++)
		free(fq->bounce.buf[i]);
	free(fq);
}

/* ---- durability --------------------------------------------------------- */

/* The error every flush and FUA write gets once an fdatasync failed. */
static int sync_error(const struct file_backend *fb)
{
	return atomic_load(&((struct file_backend *)fb)->sync_error);
}

/* Errors by which the kernel reports (once) that writeback failed.  A FUA
 * write syncs through RWF_DSYNC, so when it fails with one of these, the
 * report may have been used up by it: the next fdatasync could succeed
 * although data was lost.  Treat it as a failed fdatasync. */
static bool is_writeback_error(int r)
{
	return r == -EIO || r == -ENOSPC || r == -EDQUOT;
}

#ifdef FILE_FAULT_INJECTION
/*
 * TEST BUILDS ONLY (blkserv-backend-file-fault.so, never installed): make the
 * Nth fdatasync of the process report -EIO, N from $BLKSERV_FILE_FAULT_FSYNC.
 * The fdatasync itself still runs; only its result is replaced.
 */
static atomic_uint fault_fsync_count;

static int32_t fault_inject_fsync(int32_t res)
{
	const char *n = getenv("BLKSERV_FILE_FAULT_FSYNC");
	unsigned nth = atomic_fetch_add(&fault_fsync_count, 1) + 1;
	uint64_t want;

	return n && parse_uint_dec(n, &want) == 0 && want == nth ? -EIO : res;
}
#endif

/* ---- completion --------------------------------------------------------- */

static void finish(struct file_request *fr, int r)
{
	struct blkserv_request *req = fr->req;
	struct file_backend *fb = fr->fq->fb;

	if (fr->bounce_size) {
		if (r == 0 && req->op == BLKSERV_OP_READ)
			memcpy(req->buf, fr->buf, req->length);
		bounce_put(&fr->fq->bounce, fr->buf, fr->bounce_size);
		fr->bounce_size = 0;
	}
	if (req->flags & BLKSERV_REQ_FUA) {
		bool dsync_write = req->op == BLKSERV_OP_WRITE || fr->zeroing;

		if (r < 0 && dsync_write && is_writeback_error(r))
			file_set_sync_error(fb, r, "FUA write (RWF_DSYNC)");
		/* Another queue's fdatasync may have failed meanwhile. */
		if (r == 0 && sync_error(fb) < 0)
			r = sync_error(fb);
	}
	blkserv_request_complete(req, r);
}

/* A read or write that made no progress. */
static int no_progress(struct file_request *fr)
{
	struct blkserv_request *req = fr->req;
	struct file_backend *fb = fr->fq->fb;

	if (req->op == BLKSERV_OP_READ && !atomic_exchange(&fb->eof_warned, true))
		blkserv_error(fb->dev,
			      "reading %s at byte %llu hit the end of the file: it is shorter than the device "
			      "(truncated behind the daemon's back?); such reads fail with EIO",
			      fb->path, (unsigned long long)(req->offset + fr->done));
	return -EIO;
}

/* ---- reads and writes --------------------------------------------------- */

static int rw_fd(const struct file_request *fr, uint64_t offset, uint64_t len, const void *p)
{
	const struct file_backend *fb = fr->fq->fb;

	if (fb->direct && is_aligned(offset | len, fb->dio_offset_align) && is_aligned((uintptr_t)p, fb->dio_mem_align))
		return fr->fq->fd;
	return fr->fq->fd_buffered;
}

/* Submit what is left of a read or write (or the next chunk of zeros). */
static int submit_rw(struct file_request *fr)
{
	struct blkserv_request *req = fr->req;
	uint64_t offset = req->offset + fr->done;
	uint64_t left = req->length - fr->done;
	const char *p = fr->zeroing ? fr->buf : fr->buf + fr->done;
	struct io_uring_sqe *sqe;
	int fd;

	if (fr->zeroing && left > FILE_ZERO_CHUNK)
		left = FILE_ZERO_CHUNK;
	sqe = blkserv_queue_get_sqe(fr->fq->q);
	if (!sqe)
		return -EAGAIN;
	fd = rw_fd(fr, offset, left, p);
	if (req->op == BLKSERV_OP_READ) {
		io_uring_prep_read(sqe, fd, (void *)p, (unsigned)left, offset);
	} else {
		io_uring_prep_write(sqe, fd, p, (unsigned)left, offset);
		if (req->flags & BLKSERV_REQ_FUA)
			sqe->rw_flags = RWF_DSYNC;
	}
	fr->ev.fn = on_rw;
	blkserv_sqe_set_event(sqe, &fr->ev);
	return BLKSERV_ASYNC;
}

static void on_rw(struct blkserv_event *ev, int32_t res, uint32_t cqe_flags)
{
	struct file_request *fr = request_of(ev);
	int r;

	if (res > 0) {
		fr->done += (uint64_t)res;
		if (fr->done >= fr->req->length) {
			finish(fr, 0);
			return;
		}
		if (!fr->zeroing)
			count(&fr->fq->fb->short_io_resubmits);
		r = submit_rw(fr);
	} else if (res == 0) {
		r = no_progress(fr);
	} else if ((res == -EAGAIN || res == -EINTR) && fr->retries++ < MAX_RETRIES) {
		r = submit_rw(fr);
	} else {
		r = res;
	}
	if (r != BLKSERV_ASYNC)
		finish(fr, r);
}

static struct file_request *start(struct file_queue *fq, struct blkserv_request *req)
{
	struct file_request *fr = blkserv_request_priv(req);

	*fr = (struct file_request){ .req = req, .fq = fq, .buf = req->buf };
	return fr;
}

/* O_DIRECT with a buffer it cannot take: copy through an aligned one.  If
 * there is no memory for it, the buffered descriptor serves the request. */
static void maybe_bounce(struct file_request *fr)
{
	struct file_backend *fb = fr->fq->fb;
	struct blkserv_request *req = fr->req;
	void *b;

	if (!fb->direct)
		return;
	if (!is_aligned(req->offset | req->length, fb->dio_offset_align)) {
		count(&fb->buffered_unaligned);
		return;
	}
	if (is_aligned((uintptr_t)req->buf, fb->dio_mem_align))
		return;
	b = bounce_get(&fr->fq->bounce, req->length, fb->dio_mem_align, &fr->bounce_size);
	if (!b)
		return;
	if (req->op == BLKSERV_OP_WRITE)
		memcpy(b, req->buf, req->length);
	fr->buf = b;
	count(&fb->bounced);
}

int file_read(void *qdata, struct blkserv_request *req)
{
	struct file_request *fr = start(qdata, req);
	int r;

	maybe_bounce(fr);
	r = submit_rw(fr);
	if (r != BLKSERV_ASYNC)
		finish(fr, r); /* releases the bounce buffer */
	return BLKSERV_ASYNC;
}

int file_write(void *qdata, struct blkserv_request *req)
{
	struct file_request *fr = start(qdata, req);
	struct file_backend *fb = fr->fq->fb;
	int r;

	if ((req->flags & BLKSERV_REQ_FUA) && sync_error(fb) < 0)
		return sync_error(fb);
	maybe_bounce(fr);
	r = submit_rw(fr);
	if (r != BLKSERV_ASYNC)
		finish(fr, r);
	return BLKSERV_ASYNC;
}

/* ---- flush -------------------------------------------------------------- */

static int submit_fsync(struct file_request *fr)
{
	struct io_uring_sqe *sqe = blkserv_queue_get_sqe(fr->fq->q);

	if (!sqe)
		return -EAGAIN;
	io_uring_prep_fsync(sqe, fr->fq->fd, IORING_FSYNC_DATASYNC);
	fr->ev.fn = on_fsync;
	blkserv_sqe_set_event(sqe, &fr->ev);
	return BLKSERV_ASYNC;
}

static void on_fsync(struct blkserv_event *ev, int32_t res, uint32_t cqe_flags)
{
	struct file_request *fr = request_of(ev);
	struct file_backend *fb = fr->fq->fb;

#ifdef FILE_FAULT_INJECTION
	res = fault_inject_fsync(res);
#endif
	if (res < 0)
		file_set_sync_error(fb, res, "fdatasync");
	/* Never report a flush as done once any fdatasync failed: the kernel
	 * reports a lost write only once, so a later success proves nothing. */
	blkserv_request_complete(fr->req, sync_error(fb));
}

int file_flush(void *qdata, struct blkserv_request *req)
{
	struct file_request *fr = start(qdata, req);

	if (sync_error(fr->fq->fb) < 0)
		return sync_error(fr->fq->fb);
	return submit_fsync(fr);
}

/* TRIM or WRITE_ZEROES done: a FUA one is durable only after an fdatasync. */
static int after_range_op(struct file_request *fr, int r)
{
	if (r < 0 || !(fr->req->flags & BLKSERV_REQ_FUA))
		return r;
	return submit_fsync(fr);
}

/* ---- trim and write zeroes ---------------------------------------------- */

static int submit_fallocate(struct file_request *fr, int mode)
{
	struct io_uring_sqe *sqe = blkserv_queue_get_sqe(fr->fq->q);

	if (!sqe)
		return -EAGAIN;
	io_uring_prep_fallocate(sqe, fr->fq->fd, mode, (off_t)fr->req->offset, (off_t)fr->req->length);
	fr->falloc_mode = mode;
	fr->ev.fn = on_fallocate;
	blkserv_sqe_set_event(sqe, &fr->ev);
	return BLKSERV_ASYNC;
}

static int submit_zero_write(struct file_request *fr)
{
	count(&fr->fq->fb->zero_writes);
	fr->zeroing = true;
	fr->buf = (char *)fr->fq->fb->zeroes;
	fr->done = 0;
	return submit_rw(fr);
}

/*
 * Zeroing, cheapest first: punch a hole (when the range may be unmapped),
 * FALLOC_FL_ZERO_RANGE, then writing zeros.  On a block device the same
 * fallocate modes are the kernel's BLKZEROOUT (with and without unmap),
 * run asynchronously; they need the logical block alignment.
 */
static int start_zeroing(struct file_request *fr)
{
	struct file_backend *fb = fr->fq->fb;
	struct blkserv_request *req = fr->req;
	bool may_unmap = !(req->flags & BLKSERV_REQ_NO_HOLE);

	if (fb->is_blockdev && !is_aligned(req->offset | req->length, fb->bdev_logical_block))
		return submit_zero_write(fr);
	if (may_unmap && !atomic_load(&fb->no_punch_zero))
		return submit_fallocate(fr, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
	if (!atomic_load(&fb->no_zero_range))
		return submit_fallocate(fr, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE);
	return submit_zero_write(fr);
}

static void on_fallocate(struct blkserv_event *ev, int32_t res, uint32_t cqe_flags)
{
	struct file_request *fr = request_of(ev);
	struct file_backend *fb = fr->fq->fb;
	int r = res;

	if (res == -EOPNOTSUPP && fr->req->op == BLKSERV_OP_WRITE_ZEROES) {
		/* Learn it once for the instance, then take the next way. */
		if (fr->falloc_mode & FALLOC_FL_PUNCH_HOLE)
			atomic_store(&fb->no_punch_zero, true);
		else
			atomic_store(&fb->no_zero_range, true);
		r = start_zeroing(fr);
	} else {
		r = after_range_op(fr, r);
	}
	if (r != BLKSERV_ASYNC)
		finish(fr, r);
}

/* BLKDISCARD is a synchronous ioctl (the kernel has no asynchronous discard
 * before 6.12).  TRIM may leave any data, so the range shrinks to whole
 * logical blocks. */
static int discard(struct file_request *fr)
{
	struct file_backend *fb = fr->fq->fb;
	uint64_t a = fb->bdev_logical_block;
	uint64_t start = (fr->req->offset + a - 1) / a * a;
	uint64_t end = (fr->req->offset + fr->req->length) / a * a;
	uint64_t range[2] = { start, end - start };

	if (end <= start)
		return 0;
	if (ioctl(fr->fq->fd, BLKDISCARD, range) < 0)
		return -errno;
	return 0;
}

int file_trim(void *qdata, struct blkserv_request *req)
{
	struct file_request *fr = start(qdata, req);

	if ((req->flags & BLKSERV_REQ_FUA) && sync_error(fr->fq->fb) < 0)
		return sync_error(fr->fq->fb);
	if (!fr->fq->fb->is_blockdev)
		return submit_fallocate(fr, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
	return after_range_op(fr, discard(fr));
}

int file_write_zeroes(void *qdata, struct blkserv_request *req)
{
	struct file_request *fr = start(qdata, req);
	int r;

	if ((req->flags & BLKSERV_REQ_FUA) && sync_error(fr->fq->fb) < 0)
		return sync_error(fr->fq->fb);
	r = start_zeroing(fr);
	if (r != BLKSERV_ASYNC)
		finish(fr, r);
	return BLKSERV_ASYNC;
}

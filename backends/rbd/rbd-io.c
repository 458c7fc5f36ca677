/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The rbd backend's data path: each request becomes one librbd
 * asynchronous call reading into or writing from the frontend's buffer.
 * librbd completes it on one of its own threads; the callback posts the
 * result back to the queue that owns the request
 * (blkserv_request_complete_remote), which takes no lock.
 *
 * A request never outlives the cluster's timeout: librados fails an
 * operation the OSDs or monitors did not answer within rados_osd_op_timeout
 * (set from the timeout option), so a dead cluster gives I/O errors.
 */
#include <errno.h>
#include <string.h>

#include "rbd.h"

/* The errno a client sees: a full pool or quota is "no space"; anything
 * else (timeouts, a lost lock, a blocklisted client) is an I/O error. */
static int client_error(int r)
{
	return r == -ENOSPC || r == -EDQUOT ? -ENOSPC : -EIO;
}

static const char *op_name(uint32_t op)
{
	static const char *const names[] = { "read", "write", "flush", "trim", "write-zeroes" };

	return op < BLKSERV_OP__MAX ? names[op] : "request";
}

/* Log the 1st, 2nd, 4th, 8th, ... error: a dead cluster does not flood the
 * journal, and the count still shows how bad it is. */
static void note_error(struct rbd_backend *rb, const struct blkserv_request *req, int r)
{
	unsigned long long n = atomic_fetch_add_explicit(&rb->io_errors, 1, memory_order_relaxed) + 1;

	atomic_store_explicit(&rb->last_error, r, memory_order_relaxed);
	if (n & (n - 1))
		return;
	(void)blkserv_error_errno(rb->dev, r, "rbd %s: %s of %llu bytes at %llu failed: %m (%llu errors so far)",
				  rb->spec, op_name(req->op), (unsigned long long)req->length,
				  (unsigned long long)req->offset, n);
}

static int result_of(struct rbd_backend *rb, struct blkserv_request *req, ssize_t r)
{
	if (r >= 0 && req->op == BLKSERV_OP_READ && (uint64_t)r != req->length)
		r = -EIO; /* librbd fills holes with zeros: a short read is a bug */
	if (req->op == BLKSERV_OP_FLUSH) {
		if (r < 0)
			rbd_set_flush_error(rb, (int)r, "a flush");
		else /* a flush that raced with a failing one fails too */
			r = atomic_load(&rb->flush_error);
	}
	if (r >= 0)
		return 0;
	note_error(rb, req, (int)r);
	return client_error((int)r);
}

/* librbd's thread. */
static void on_complete(rbd_completion_t c, void *arg)
{
	struct rbd_request *rr = arg;
	struct blkserv_request *req = rr->req;
	ssize_t r = rbd_aio_get_return_value(c);

	rbd_aio_release(c);
	blkserv_request_complete_remote(req, result_of(rr->rb, req, r));
}

static int new_completion(struct rbd_backend *rb, struct blkserv_request *req, rbd_completion_t *ret)
{
	struct rbd_request *rr = blkserv_request_priv(req);
	int r;

	rr->req = req;
	rr->rb = rb;
	r = rbd_aio_create_completion(rr, on_complete, ret);
	if (r < 0)
		note_error(rb, req, r);
	return r < 0 ? client_error(r) : 0;
}

/* librbd refused the call: the callback will not run. */
static int submitted(struct rbd_backend *rb, struct blkserv_request *req, rbd_completion_t c, int r)
{
	if (r >= 0)
		return BLKSERV_ASYNC;
	rbd_aio_release(c);
	note_error(rb, req, r);
	return client_error(r);
}

int rbd_io_read(void *qdata, struct blkserv_request *req)
{
	struct rbd_backend *rb = qdata;
	rbd_completion_t c;
	int r = new_completion(rb, req, &c);

	if (r < 0)
		return r;
	return submitted(rb, req, c, rbd_aio_read(rb->image, req->offset, req->length, req->buf, c));
}

int rbd_io_write(void *qdata, struct blkserv_request *req)
{
	struct rbd_backend *rb = qdata;
	rbd_completion_t c;
	int r = new_completion(rb, req, &c);

	if (r < 0)
		return r;
	return submitted(rb, req, c, rbd_aio_write(rb->image, req->offset, req->length, req->buf, c));
}

int rbd_io_flush(void *qdata, struct blkserv_request *req)
{
	struct rbd_backend *rb = qdata;
	int err = atomic_load(&rb->flush_error);
	rbd_completion_t c;
	int r;

	if (err < 0)
		return client_error(err); /* sticky: see rbd_set_flush_error */
	r = new_completion(rb, req, &c);
	if (r < 0)
		return r;
	r = rbd_aio_flush(rb->image, c);
	if (r < 0)
		rbd_set_flush_error(rb, r, "a flush");
	return submitted(rb, req, c, r);
}

/* librbd may skip the parts of the range that do not cover whole objects
 * (rbd_skip_partial_discard): TRIM promises nothing about the data. */
int rbd_io_trim(void *qdata, struct blkserv_request *req)
{
	struct rbd_backend *rb = qdata;
	rbd_completion_t c;
	int r = new_completion(rb, req, &c);

	if (r < 0)
		return r;
	return submitted(rb, req, c, rbd_aio_discard(rb->image, req->offset, req->length, c));
}

/* Reads back as zeros; librbd deallocates whole objects unless asked to
 * keep the range allocated (NO_HOLE → thick provisioning). */
int rbd_io_write_zeroes(void *qdata, struct blkserv_request *req)
{
	struct rbd_backend *rb = qdata;
	int zflags = req->flags & BLKSERV_REQ_NO_HOLE ? RBD_WRITE_ZEROES_FLAG_THICK_PROVISION : 0;
	rbd_completion_t c;
	int r = new_completion(rb, req, &c);

	if (r < 0)
		return r;
	return submitted(rb, req, c, rbd_aio_write_zeroes(rb->image, req->offset, req->length, c, zflags, 0));
}

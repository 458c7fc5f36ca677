/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Queues: the data path.  A queue is owned by one thread and has its own
 * io_uring; frontends and backends put SQEs on it whose user_data points to
 * a struct blkserv_event.  Requests live in a fixed array allocated with the
 * queue, each followed by the backend's private area, so nothing is
 * allocated per request.  Completions from other threads come back through
 * a lock-free list and an eventfd read on the ring.
 */
#include <assert.h>
#include <errno.h>
#include <liburing.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "cleanup.h"
#include "device.h"
#include "faults.h"
#include "io-util.h"
#include "log.h"
#include "macro.h"
#include "queue.h"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

enum fua_state {
	FUA_NONE,
	FUA_AFTER_WRITE, /* the write runs; a flush follows it */
	FUA_FLUSHING,    /* the flush runs; then the request completes */
};

struct request_slot {
	struct blkserv_request req; /* first: a request pointer is a slot pointer */
	struct request_slot *remote_next;
	int remote_result;
	enum fua_state fua;
	uint32_t orig_op;
	uint64_t orig_offset;
	uint64_t orig_length;
};

#define SLOT_HEADER_SIZE ((sizeof(struct request_slot) + 15) & ~(size_t)15)

/* A request held back by fault injection (delay_ms): a timeout on the ring. */
struct fault_delay {
	struct blkserv_event ev;
	struct __kernel_timespec ts;
	struct blkserv_request *req;
	bool resumed; /* the wait is over: go on to the backend */
};

struct blkserv_queue {
	struct blkserv_device *dev;
	struct io_uring ring;
	size_t sqe_size;
	uint32_t depth;
	uint32_t inflight;
	size_t stride;
	char *slots;
	void *backend_qdata;
	bool backend_open;
	bool ring_ready; /* io_uring_queue_init succeeded */

	_Atomic(struct request_slot *) remote_head;
	_Atomic unsigned remote_posting; /* threads inside complete_remote */
	int efd;
	uint64_t efd_value;
	struct blkserv_event efd_event;

	struct fault_delay *delays; /* per tag; only with a faults section */

	_Atomic uint64_t heartbeat_ns;
	struct io_stats stats;
	struct blkserv_queue *next; /* in the device's list */
};

static _Atomic bool io_flusher_warned;

static struct request_slot *slot_of(struct blkserv_request *req)
{
	return (struct request_slot *)req;
}

/* ---- completion ---------------------------------------------------- */

static void finish(struct blkserv_request *req, int result)
{
	struct blkserv_queue *q = req->queue;
	uint64_t bytes = req->op == BLKSERV_OP_FLUSH ? 0 : req->length;

	assert(q->inflight > 0);
	if (req->op < BLKSERV_OP__MAX) /* an invalid op is refused, not counted */
		stats_record(&q->stats.op[req->op], bytes, result, now_ns() - req->start_ns);
	q->inflight--;
	atomic_store_explicit((_Atomic uint64_t *)&q->stats.inflight, q->inflight, memory_order_relaxed);
	req->done(req, result);
}

static blkserv_data_fn backend_fn(const struct blkserv_device *dev, uint32_t op)
{
	const struct blkserv_backend *b = &dev->backend->backend;

	switch (op) {
	case BLKSERV_OP_READ:
		return b->read;
	case BLKSERV_OP_WRITE:
		return b->write;
	case BLKSERV_OP_FLUSH:
		return b->flush;
	case BLKSERV_OP_TRIM:
		return b->trim;
	case BLKSERV_OP_WRITE_ZEROES:
		return b->write_zeroes;
	}
	return NULL;
}

static bool fault_intercept(struct blkserv_request *req);

/* A backend that declares BLKSERV_THREAD_MODEL_SERIALIZE gets one call at
 * a time for the device, from whichever queue's thread. */
static void backend_enter(struct blkserv_device *dev)
{
	if (dev->backend->backend.thread_model == BLKSERV_THREAD_MODEL_SERIALIZE)
		pthread_mutex_lock(&dev->backend_lock);
}

static void backend_leave(struct blkserv_device *dev)
{
	if (dev->backend->backend.thread_model == BLKSERV_THREAD_MODEL_SERIALIZE)
		pthread_mutex_unlock(&dev->backend_lock);
}

/*
 * A data callback returns 0, a negative errno or BLKSERV_ASYNC; read_map
 * 0 or a negative errno.  Any other value is a bug of the plugin: the
 * request fails with EIO (never with a value nobody defined), and the bug
 * is logged once per device, not once per request.
 */
static int backend_result(struct blkserv_queue *q, const char *callback, int r)
{
	struct blkserv_device *dev = q->dev;

	if (r <= 0)
		return r;
	if (!atomic_exchange(&dev->bad_return_logged, true))
		blkserv_error(dev,
			      "backend %s: %s returned %d, which is neither 0, a negative errno nor "
			      "BLKSERV_ASYNC: a bug of the plugin (such requests fail with EIO)",
			      device_backend_name(dev), callback, r);
	return -EIO;
}

/* A READ the frontend can send from a file: ask the backend where its
 * bytes are.  true: @req completed that way (or with the backend's error).
 * Never with fault injection, whose read errors must reach the client. */
static bool answer_with_map(struct blkserv_queue *q, void *qdata, struct blkserv_request *req)
{
	const struct blkserv_backend *b = &q->dev->backend->backend;
	uint64_t offset;
	int fd, r;

	if (!b->read_map || q->dev->faults)
		return false;
	backend_enter(q->dev);
	r = b->read_map(qdata, req, &fd, &offset);
	backend_leave(q->dev);
	if (r == -EOPNOTSUPP)
		return false;
	if (r == 0) {
		req->map_fd = fd;
		req->map_offset = offset;
		stats_count_mapped_read(&q->stats);
	}
	blkserv_request_complete(req, backend_result(q, "read_map", r));
	return true;
}

static void call_backend(struct blkserv_request *req)
{
	struct blkserv_queue *q = req->queue;
	void *qdata = q->backend_open ? q->backend_qdata : q->dev->backend_handle;
	blkserv_data_fn fn;
	int r;

	/* The one test of the data path for fault injection. */
	if (__builtin_expect(q->dev->faults != NULL, 0) && fault_intercept(req))
		return;
	if ((req->flags & BLKSERV_REQ_MAP_OK) && answer_with_map(q, qdata, req))
		return;
	fn = backend_fn(q->dev, req->op);
	if (fn) {
		backend_enter(q->dev);
		r = fn(qdata, req);
		backend_leave(q->dev);
	} else {
		r = -EOPNOTSUPP;
	}
	if (r != BLKSERV_ASYNC)
		blkserv_request_complete(req, backend_result(q, op_name(req->op), r));
}

/* ---- fault injection (a device's faults section; tests only) -------- */

static void on_fault_delay(struct blkserv_event *ev, int32_t res, uint32_t flags)
{
	struct fault_delay *d = container_of(ev, struct fault_delay, ev);

	d->resumed = true;
	call_backend(d->req);
}

/* Hold @req for @ms with a timeout on the queue's ring: the queue thread
 * goes on serving other requests meanwhile.  0, or -EAGAIN (ring full:
 * the request goes on without waiting). */
static int fault_delay(struct blkserv_request *req, uint32_t ms)
{
	struct blkserv_queue *q = req->queue;
	struct fault_delay *d = &q->delays[req->tag];
	struct io_uring_sqe *sqe = blkserv_queue_get_sqe(q);

	if (!sqe)
		return -EAGAIN;
	d->req = req;
	d->resumed = false;
	d->ts = kernel_timespec_from_ms(ms);
	io_uring_prep_timeout(sqe, &d->ts, 0, 0);
	blkserv_sqe_set_event(sqe, &d->ev);
	return 0;
}

/* Delay, fail or pass @req as the faults section says.  true: @req was
 * taken care of (it waits, or it completed with its error). */
static bool fault_intercept(struct blkserv_request *req)
{
	struct blkserv_queue *q = req->queue;
	struct fault_delay *d = q->delays ? &q->delays[req->tag] : NULL;
	int r;

	/* Delay a request once, when it arrives (not the flush of an
	 * emulated FUA write). */
	if (d && !d->resumed && slot_of(req)->fua != FUA_FLUSHING) {
		uint32_t ms = faults_delay_ms(q->dev->faults, req);
		if (ms && fault_delay(req, ms) == 0)
			return true;
	}
	if (d)
		d->resumed = false;
	r = faults_check(q->dev->faults, req);
	if (r == 0)
		return false;
	blkserv_request_complete(req, r);
	return true;
}

void blkserv_request_complete(struct blkserv_request *req, int result)
{
	struct request_slot *s = slot_of(req);

	switch (s->fua) {
	case FUA_AFTER_WRITE:
		if (result < 0)
			break;
		/* The write is done; make it durable with a flush. */
		s->fua = FUA_FLUSHING;
		req->op = BLKSERV_OP_FLUSH;
		req->offset = 0;
		req->length = 0;
		call_backend(req);
		return;
	case FUA_FLUSHING:
		req->op = s->orig_op;
		req->offset = s->orig_offset;
		req->length = s->orig_length;
		break;
	case FUA_NONE:
		break;
	}
	s->fua = FUA_NONE;
	finish(req, result);
}

void blkserv_request_complete_remote(struct blkserv_request *req, int result)
{
	struct request_slot *s = slot_of(req);
	struct blkserv_queue *q = req->queue;
	struct request_slot *head = atomic_load(&q->remote_head);

	/* Once the request is on the list the owner may complete it and free
	 * the queue; remote_posting keeps the queue alive until the eventfd
	 * write is done (blkserv_queue_free waits for it). */
	atomic_fetch_add(&q->remote_posting, 1);
	s->remote_result = result;
	do
		s->remote_next = head;
	while (!atomic_compare_exchange_weak(&q->remote_head, &head, s));
	(void)eventfd_write(q->efd, 1);
	atomic_fetch_sub(&q->remote_posting, 1);
}

static void arm_eventfd(struct blkserv_queue *q);

static void on_eventfd(struct blkserv_event *ev, int32_t res, uint32_t flags)
{
	struct blkserv_queue *q = container_of(ev, struct blkserv_queue, efd_event);
	struct request_slot *s = atomic_exchange(&q->remote_head, NULL);

	while (s) {
		struct request_slot *next = s->remote_next;

		assert(s->req.queue == q); /* completed on the queue that owns it */
		blkserv_request_complete(&s->req, s->remote_result);
		s = next;
	}
	if (res != -ECANCELED)
		arm_eventfd(q);
}

static void arm_eventfd(struct blkserv_queue *q)
{
	struct io_uring_sqe *sqe = blkserv_queue_get_sqe(q);

	if (!sqe) /* cannot happen: a fresh ring or one just drained */
		return;
	io_uring_prep_read(sqe, q->efd, &q->efd_value, sizeof(q->efd_value), 0);
	blkserv_sqe_set_event(sqe, &q->efd_event);
}

/* ---- submission ---------------------------------------------------- */

/* The checks every request passes before a backend sees it. */
int request_validate(const struct blkserv_device *dev, const struct blkserv_request *req)
{
	bool is_write = req->op == BLKSERV_OP_WRITE || req->op == BLKSERV_OP_WRITE_ZEROES || req->op == BLKSERV_OP_TRIM;

	if (req->op >= BLKSERV_OP__MAX || (req->flags & ~BLKSERV_REQ__ALL))
		return -EINVAL;
	if ((req->flags & BLKSERV_REQ_NO_HOLE) && req->op != BLKSERV_OP_WRITE_ZEROES)
		return -EINVAL;
	if ((req->flags & BLKSERV_REQ_FUA) && !is_write)
		return -EINVAL;
	if ((req->flags & BLKSERV_REQ_MAP_OK) && req->op != BLKSERV_OP_READ)
		return -EINVAL;
	if (is_write && (dev->caps & BLKSERV_CAP_READ_ONLY))
		return -EPERM;
	switch (req->op) {
	case BLKSERV_OP_FLUSH:
		return dev->caps & BLKSERV_CAP_FLUSH ? 0 : -EOPNOTSUPP;
	case BLKSERV_OP_TRIM:
		if (!(dev->caps & BLKSERV_CAP_TRIM))
			return -EOPNOTSUPP;
		break;
	case BLKSERV_OP_WRITE_ZEROES:
		if (!(dev->caps & BLKSERV_CAP_WRITE_ZEROES))
			return -EOPNOTSUPP;
		break;
	case BLKSERV_OP_READ:
	case BLKSERV_OP_WRITE:
		if (req->length > BLKSERV_MAX_IO_BYTES || !req->buf)
			return -EINVAL;
		break;
	default: /* refused above; never a data operation by default */
		return -EINVAL;
	}
	if ((req->flags & BLKSERV_REQ_FUA) && !(dev->caps & BLKSERV_CAP_FUA))
		return -EOPNOTSUPP;
	if (req->length == 0)
		return -EINVAL;
	/* Written so that nothing overflows, even with offsets near 2^64. */
	if (req->offset > dev->size || req->length > dev->size - req->offset)
		return is_write && req->op != BLKSERV_OP_TRIM ? -ENOSPC : -EINVAL;
	return 0;
}

/* Decide how a FUA write is honoured: natively, by a following flush, or
 * not at all because the backend has no volatile cache. */
static void plan_fua(struct blkserv_device *dev, struct blkserv_request *req)
{
	struct request_slot *s = slot_of(req);
	bool writes = req->op == BLKSERV_OP_WRITE || req->op == BLKSERV_OP_WRITE_ZEROES;

	if (dev->write_through && writes)
		req->flags |= BLKSERV_REQ_FUA;
	if (!(req->flags & BLKSERV_REQ_FUA) || (dev->native_caps & BLKSERV_CAP_FUA))
		return;
	req->flags &= ~BLKSERV_REQ_FUA;
	if (dev->native_caps & BLKSERV_CAP_WRITE_THROUGH)
		return;
	s->fua = FUA_AFTER_WRITE;
	s->orig_op = req->op;
	s->orig_offset = req->offset;
	s->orig_length = req->length;
}

void blkserv_submit(struct blkserv_request *req)
{
	struct blkserv_queue *q = req->queue;
	struct blkserv_device *dev = q->dev;
	int r;

	assert(req == blkserv_queue_request(q, req->tag)); /* one of this queue's slots */
	assert(q->inflight < q->depth);
	q->inflight++;
	req->start_ns = now_ns();
	req->map_fd = -1;
	slot_of(req)->fua = FUA_NONE;
	r = request_validate(dev, req);
	if (r < 0) {
		finish(req, r);
		return;
	}
	if (req->op == BLKSERV_OP_FLUSH)
		req->offset = req->length = 0;
	plan_fua(dev, req);
	call_backend(req);
}

/* ---- the queue ----------------------------------------------------- */

static void set_io_flusher(struct blkserv_device *dev)
{
	/* Reclaim must not wait on writeback to a device this thread serves. */
	if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) < 0 && !atomic_exchange(&io_flusher_warned, true))
		log_full(dev, BLKSERV_LOG_WARNING, errno,
			 "cannot mark I/O threads PR_SET_IO_FLUSHER (%m; needs CAP_SYS_RESOURCE): "
			 "memory pressure may deadlock a device used for writeback");
}

/* Free a queue blkserv_queue_new did not finish (never linked to its
 * device, no backend queue open). */
static void queue_unmake(struct blkserv_queue *q)
{
	if (q->ring_ready)
		io_uring_queue_exit(&q->ring);
	safe_close(q->efd);
	free(q->delays);
	free(q->slots);
	free(q);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(struct blkserv_queue *, queue_unmake);

static int queue_alloc(struct blkserv_device *dev, uint32_t depth, struct blkserv_queue **ret)
{
	size_t priv = (dev->backend->backend.request_priv_size + 15) & ~(size_t)15;
	struct blkserv_queue *q = calloc(1, sizeof(*q));

	if (!q)
		return -ENOMEM;
	q->dev = dev;
	q->depth = depth;
	q->efd = -1;
	q->stride = SLOT_HEADER_SIZE + priv;
	q->slots = calloc(depth, q->stride);
	if (!q->slots) {
		free(q);
		return -ENOMEM;
	}
	/* From here on queue_unmake frees what there is. */
	for (uint32_t tag = 0; tag < depth; tag++) {
		struct blkserv_request *req = blkserv_queue_request(q, tag);
		req->queue = q;
		req->tag = tag;
	}
	q->efd_event.fn = on_eventfd;
	if (dev->faults && dev->faults->cfg.delay_ms != FAULT_OFF) {
		q->delays = calloc(depth, sizeof(*q->delays));
		if (!q->delays) {
			queue_unmake(q);
			return -ENOMEM;
		}
		for (uint32_t tag = 0; tag < depth; tag++)
			q->delays[tag].ev.fn = on_fault_delay;
	}
	*ret = q;
	return 0;
}

static void queue_link(struct blkserv_queue *q)
{
	struct blkserv_device *dev = q->dev;

	pthread_mutex_lock(&dev->queues_lock);
	q->next = dev->queues;
	dev->queues = q;
	pthread_mutex_unlock(&dev->queues_lock);
}

static void queue_unlink(struct blkserv_queue *q)
{
	struct blkserv_device *dev = q->dev;

	pthread_mutex_lock(&dev->queues_lock);
	for (struct blkserv_queue **p = &dev->queues; *p; p = &(*p)->next)
		if (*p == q) {
			*p = q->next;
			break;
		}
	stats_add(&dev->retired_stats, &q->stats);
	dev->retired_stats.inflight = 0;
	pthread_mutex_unlock(&dev->queues_lock);
}

int blkserv_queue_new(struct blkserv_device *dev, uint32_t depth, uint32_t ring_flags, struct blkserv_queue **ret)
{
	const struct blkserv_backend *b = &dev->backend->backend;
	_cleanup_(queue_unmakep) struct blkserv_queue *q = NULL;
	int r;

	if (depth == 0 || depth > 4096)
		return -EINVAL;
	r = queue_alloc(dev, depth, &q);
	if (r < 0)
		return r;
	set_io_flusher(dev);
	q->sqe_size = (ring_flags & IORING_SETUP_SQE128) ? 128 : 64;
	/* Room for a command per tag, backend I/O and the eventfd read. */
	r = io_uring_queue_init(depth * 2 + 8, &q->ring, ring_flags);
	if (r < 0)
		return r;
	q->ring_ready = true;
	q->efd = eventfd(0, EFD_CLOEXEC);
	if (q->efd < 0)
		return -errno;
	arm_eventfd(q);
	if (b->queue_open) {
		backend_enter(dev);
		r = b->queue_open(dev->backend_handle, q, &q->backend_qdata);
		backend_leave(dev);
		if (r < 0)
			return r;
		q->backend_open = true;
	}
	blkserv_queue_heartbeat(q);
	queue_link(q);
	*ret = TAKE_PTR(q);
	return 0;
}

void blkserv_queue_free(struct blkserv_queue *q)
{
	const struct blkserv_backend *b;

	if (!q)
		return;
	b = &q->dev->backend->backend;
	while (atomic_load(&q->remote_posting) > 0)
		sched_yield();
	if (q->backend_open && b->queue_close) {
		backend_enter(q->dev);
		b->queue_close(q->backend_qdata);
		backend_leave(q->dev);
	}
	queue_unlink(q);
	io_uring_queue_exit(&q->ring);
	safe_close(q->efd);
	free(q->delays);
	free(q->slots);
	free(q);
}

struct blkserv_request *blkserv_queue_request(struct blkserv_queue *q, uint32_t tag)
{
	if (tag >= q->depth)
		return NULL;
	return (struct blkserv_request *)(q->slots + (size_t)tag * q->stride);
}

void *blkserv_request_priv(struct blkserv_request *req)
{
	return (char *)req + SLOT_HEADER_SIZE;
}

uint32_t blkserv_queue_depth(struct blkserv_queue *q)
{
	return q->depth;
}

uint32_t blkserv_queue_inflight(struct blkserv_queue *q)
{
	return q->inflight;
}

struct blkserv_device *blkserv_queue_device(struct blkserv_queue *q)
{
	return q->dev;
}

void *blkserv_queue_backend_data(struct blkserv_queue *q)
{
	return q->backend_qdata;
}

int blkserv_queue_ring_fd(struct blkserv_queue *q)
{
	return q->ring.ring_fd;
}

struct io_uring_sqe *blkserv_queue_get_sqe(struct blkserv_queue *q)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);

	if (!sqe) {
		(void)io_uring_submit(&q->ring);
		sqe = io_uring_get_sqe(&q->ring);
	}
	if (sqe)
		memset(sqe, 0, q->sqe_size);
	return sqe;
}

void blkserv_sqe_set_event(struct io_uring_sqe *sqe, struct blkserv_event *ev)
{
	io_uring_sqe_set_data(sqe, ev);
}

static int dispatch(struct blkserv_queue *q)
{
	struct io_uring_cqe *cqe;
	int n = 0;

	while (io_uring_peek_cqe(&q->ring, &cqe) == 0) {
		struct blkserv_event *ev = io_uring_cqe_get_data(cqe);
		int32_t res = cqe->res;
		uint32_t flags = cqe->flags;

		io_uring_cqe_seen(&q->ring, cqe);
		if (ev)
			ev->fn(ev, res, flags);
		n++;
	}
	return n;
}

static int submit_and_wait(struct blkserv_queue *q, unsigned min_events, int timeout_ms)
{
	struct __kernel_timespec ts = kernel_timespec_from_ms(timeout_ms >= 0 ? (uint64_t)timeout_ms : 0);
	struct io_uring_cqe *cqe;

	return io_uring_submit_and_wait_timeout(&q->ring, &cqe, min_events, timeout_ms >= 0 ? &ts : NULL, NULL);
}

/*
 * Valgrind (3.19) lets no other thread run while one is blocked in
 * io_uring_enter(), so a queue waiting for a completion another thread
 * posts would wait out its whole timeout under it.  There, wait in short
 * slices and yield between them; elsewhere RUNNING_ON_VALGRIND is 0 and
 * this is one call.
 */
#define VALGRIND_WAIT_SLICE_MS 5

static int wait_events(struct blkserv_queue *q, unsigned min_events, int timeout_ms)
{
	int left = timeout_ms, slice, r;

	if (!RUNNING_ON_VALGRIND)
		return submit_and_wait(q, min_events, timeout_ms);
	for (;;) {
		slice = left < 0 || left > VALGRIND_WAIT_SLICE_MS ? VALGRIND_WAIT_SLICE_MS : left;
		r = submit_and_wait(q, min_events, slice);
		if (r != -ETIME || left == slice)
			return r;
		if (left > 0)
			left -= slice;
		sched_yield();
	}
}

int blkserv_queue_process(struct blkserv_queue *q, unsigned min_events, int timeout_ms)
{
	int r, n;

	if (min_events > 0)
		r = wait_events(q, min_events, timeout_ms);
	else
		r = io_uring_submit(&q->ring);
	n = dispatch(q);
	if (n > 0)
		return n;
	return r < 0 ? r : 0;
}

int blkserv_queue_register_fd(struct blkserv_queue *q, int fd)
{
	return io_uring_register_files(&q->ring, &fd, 1);
}

void blkserv_queue_heartbeat(struct blkserv_queue *q)
{
	atomic_store_explicit(&q->heartbeat_ns, now_ns(), memory_order_relaxed);
}

/* ---- for the device ----------------------------------------------- */

void queue_stats_add(struct blkserv_queue *q, struct io_stats *sum)
{
	stats_add(sum, &q->stats);
}

struct blkserv_queue *queue_next(struct blkserv_queue *q)
{
	return q->next;
}

uint64_t queue_heartbeat_ns(struct blkserv_queue *q)
{
	return atomic_load_explicit(&q->heartbeat_ns, memory_order_relaxed);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Queue threads.  Each ublk queue has one thread that owns a blkserv queue
 * (and so its io_uring): the driver accepts a queue's commands only from the
 * task that sent its FETCHes.  Per tag the thread keeps one command in the
 * kernel: FETCH_REQ at start, then COMMIT_AND_FETCH_REQ carrying the result
 * of the request just served and asking for the next one.  Commits are put
 * on the ring from the request's completion callback and go to the kernel
 * in the same io_uring_enter as the backend's own I/O, which shares the
 * ring.  Each tag has a buffer of max_io_size bytes, allocated once: the
 * kernel copies write data into it and read data out of it.
 */
#include <assert.h>
#include <errno.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "io-util.h"
#include "macro.h"
#include "ublk.h"

/* How long the loop sleeps at most: bounds the latency of a stop request
 * and keeps the health timestamp fresh on an idle queue. */
#define LOOP_TIMEOUT_MS 1000
/* A queue whose loop has not turned for this long, or with a request the
 * backend has held this long, is reported unhealthy. */
#define STALL_NS (30ull * 1000000000ull)
#define SCAN_NS 1000000000ull

enum tag_state {
	TAG_IN_KERNEL, /* a FETCH or COMMIT_AND_FETCH is outstanding */
	TAG_SERVING,   /* the request is with the backend */
	TAG_DONE,      /* aborted by the driver (stopping) or rejected */
};

struct ublk_tag {
	struct blkserv_event ev; /* first: the CQE's user_data */
	struct ublk_queue *uq;
	struct blkserv_request *req;
	void *buf;
	uint16_t tag;
	uint8_t state;
	int32_t result; /* of the request to commit */
	uint32_t op;    /* the kernel's op, for logs */
};

static struct ublk_tag *tag_of_event(struct blkserv_event *ev)
{
	return container_of(ev, struct ublk_tag, ev);
}

static void log_once(struct ublk_queue *uq, const char *what, int tag, int res)
{
	if (atomic_exchange(&uq->failed, true))
		return;
	(void)blkserv_error_errno(uq->u->dev, res < 0 ? res : EPROTO,
				  "queue %u tag %d: %s: %m; the queue can no longer serve this tag", uq->q_id, tag,
				  what);
}

/* ---- commands ------------------------------------------------------- */

static void prep_io_cmd(struct io_uring_sqe *sqe, struct ublk_tag *t, uint32_t cmd_op)
{
	struct bs_ublk_io_cmd cmd = {
		.q_id = t->uq->q_id,
		.tag = t->tag,
		.result = t->result,
		.addr = (uint64_t)(uintptr_t)t->buf,
	};

	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = 0; /* fixed file 0: /dev/ublkcN */
	sqe->flags = IOSQE_FIXED_FILE;
	sqe->cmd_op = cmd_op;
	memcpy(sqe->cmd, &cmd, sizeof(cmd));
	blkserv_sqe_set_event(sqe, &t->ev);
	t->state = TAG_IN_KERNEL;
}

/* Queue COMMIT_AND_FETCH for @t; if the ring is full, keep it for later. */
static void queue_commit(struct ublk_tag *t)
{
	struct ublk_queue *uq = t->uq;
	struct io_uring_sqe *sqe = blkserv_queue_get_sqe(uq->q);

	if (!sqe) {
		assert(uq->nr_pending < uq->u->opt.depth); /* a tag is pending once at most */
		uq->pending[uq->nr_pending++] = t->tag;
		return;
	}
	prep_io_cmd(sqe, t, UBLK_U_IO_COMMIT_AND_FETCH_REQ);
}

static void flush_pending(struct ublk_queue *uq)
{
	while (uq->nr_pending > 0) {
		struct io_uring_sqe *sqe = blkserv_queue_get_sqe(uq->q);
		if (!sqe)
			return;
		prep_io_cmd(sqe, &uq->tags[uq->pending[--uq->nr_pending]], UBLK_U_IO_COMMIT_AND_FETCH_REQ);
	}
}

/* ---- requests ------------------------------------------------------- */

static void request_done(struct blkserv_request *req, int result)
{
	struct ublk_tag *t = req->frontend_data;
	bool rw = req->op == BLKSERV_OP_READ || req->op == BLKSERV_OP_WRITE;

	/* The driver wants bytes for reads and writes (a short count would
	 * be requeued), and 0 for the rest. */
	if (result < 0)
		t->result = result;
	else
		t->result = rw ? (int32_t)req->length : 0;
	queue_commit(t);
}

/* Fill @req from the kernel's descriptor; -EOPNOTSUPP for ops we never
 * advertise (zoned, WRITE_SAME). */
static int map_request(const struct bs_ublk_io_desc *d, struct ublk_tag *t, uint32_t max_io)
{
	struct blkserv_request *req = t->req;
	uint32_t op = d->op_flags & 0xff;

	t->op = op;
	req->flags = 0;
	req->offset = d->start_sector << 9;
	req->length = (uint64_t)d->nr_sectors << 9;
	req->buf = NULL;
	switch (op) {
	case UBLK_IO_OP_READ:
	case UBLK_IO_OP_WRITE:
		if (req->length > max_io)
			return -EIO;
		req->op = op == UBLK_IO_OP_READ ? BLKSERV_OP_READ : BLKSERV_OP_WRITE;
		req->buf = t->buf;
		break;
	case UBLK_IO_OP_FLUSH:
		req->op = BLKSERV_OP_FLUSH;
		req->offset = req->length = 0;
		return 0;
	case UBLK_IO_OP_DISCARD:
		req->op = BLKSERV_OP_TRIM;
		return 0;
	case UBLK_IO_OP_WRITE_ZEROES:
		req->op = BLKSERV_OP_WRITE_ZEROES;
		if (d->op_flags & UBLK_IO_F_NOUNMAP)
			req->flags |= BLKSERV_REQ_NO_HOLE;
		break;
	default:
		return -EOPNOTSUPP;
	}
	if ((d->op_flags & UBLK_IO_F_FUA) && op != UBLK_IO_OP_READ)
		req->flags |= BLKSERV_REQ_FUA;
	return 0;
}

static void serve(struct ublk_tag *t)
{
	struct ublk_queue *uq = t->uq;
	/* The kernel wrote the descriptor before posting the CQE. */
	struct bs_ublk_io_desc d = uq->descs[t->tag];
	int r = map_request(&d, t, uq->u->opt.max_io_size);

	if (r < 0) {
		t->result = r;
		queue_commit(t);
		return;
	}
	t->state = TAG_SERVING;
	uq->nr_served++;
	blkserv_submit(t->req);
}

/* The CQE of a tag's FETCH or COMMIT_AND_FETCH. */
static void on_cmd_cqe(struct blkserv_event *ev, int32_t res, uint32_t cqe_flags)
{
	struct ublk_tag *t = tag_of_event(ev);
	struct ublk_queue *uq = t->uq;

	if (res == UBLK_IO_RES_OK) {
		serve(t);
		return;
	}
	t->state = TAG_DONE;
	uq->nr_aborted++;
	if (res == UBLK_IO_RES_ABORT) /* the device is stopping: do not re-issue */
		return;
	log_once(uq, res == UBLK_IO_RES_NEED_GET_DATA ? "unexpected NEED_GET_DATA" : "command rejected", t->tag,
		 res == UBLK_IO_RES_NEED_GET_DATA ? -EPROTO : res);
}

/* ---- the thread ----------------------------------------------------- */

static int map_descriptors(struct ublk_queue *uq)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t len =
		((size_t)uq->u->opt.depth * sizeof(struct bs_ublk_io_desc) + (size_t)page - 1) & ~((size_t)page - 1);
	void *p = mmap(NULL, len, PROT_READ, MAP_SHARED | MAP_POPULATE, uq->u->cdev_fd,
		       (off_t)ublk_desc_area_offset(uq->q_id, page));

	if (p == MAP_FAILED)
		return -errno;
	uq->descs = p;
	uq->descs_len = len;
	return 0;
}

static int alloc_tags(struct ublk_queue *uq)
{
	uint32_t depth = uq->u->opt.depth;
	size_t max_io = uq->u->opt.max_io_size;

	/* Page-aligned buffers (O_DIRECT backends); pages appear when used. */
	uq->bufs_len = (size_t)depth * max_io;
	uq->bufs = mmap(NULL, uq->bufs_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (uq->bufs == MAP_FAILED) {
		uq->bufs = NULL;
		return -ENOMEM;
	}
	uq->tags = calloc(depth, sizeof(*uq->tags));
	uq->pending = calloc(depth, sizeof(*uq->pending));
	if (!uq->tags || !uq->pending)
		return -ENOMEM;
	for (uint32_t i = 0; i < depth; i++) {
		struct ublk_tag *t = &uq->tags[i];
		t->ev.fn = on_cmd_cqe;
		t->uq = uq;
		t->tag = (uint16_t)i;
		t->buf = uq->bufs + i * max_io;
		t->req = blkserv_queue_request(uq->q, i);
		t->req->done = request_done;
		t->req->frontend_data = t;
	}
	return 0;
}

static int new_queue(struct ublk_queue *uq)
{
	/* Only this thread submits (SINGLE_ISSUER), and task work - how the
	 * driver hands us requests - runs only when it waits for completions
	 * (DEFER_TASKRUN), batched, instead of interrupting it. */
	static const uint32_t flag_sets[] = {
		IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER,
		0,
	};
	struct blkserv_device *dev = uq->u->dev;
	int r = -EINVAL;

	for (size_t i = 0; i < ELEMENTSOF(flag_sets) && r == -EINVAL; i++)
		r = blkserv_queue_new(dev, uq->u->opt.depth, flag_sets[i], &uq->q);
	if (r < 0)
		return blkserv_error_errno(dev, r, "queue %u: cannot create the queue: %m", uq->q_id);
	return r;
}

static int submit_fetches(struct ublk_queue *uq)
{
	for (uint32_t i = 0; i < uq->u->opt.depth; i++) {
		struct io_uring_sqe *sqe = blkserv_queue_get_sqe(uq->q);
		if (!sqe)
			return -EBUSY;
		uq->tags[i].result = 0;
		prep_io_cmd(sqe, &uq->tags[i], UBLK_U_IO_FETCH_REQ);
	}
	/* Submit now: a rejected FETCH completes at once and is seen here. */
	return blkserv_queue_process(uq->q, 0, 0) < 0 ? -EIO : 0;
}

static int queue_setup(struct ublk_queue *uq)
{
	struct blkserv_device *dev = uq->u->dev;
	const char *what;
	int r;

	r = new_queue(uq);
	if (r < 0)
		return r;
	what = "cannot register the char device with the ring";
	r = blkserv_queue_register_fd(uq->q, uq->u->cdev_fd);
	if (r >= 0) {
		what = "cannot map the I/O descriptors";
		r = map_descriptors(uq);
	}
	if (r >= 0) {
		what = "cannot allocate the tag buffers";
		r = alloc_tags(uq);
	}
	if (r >= 0) {
		what = "the driver rejected FETCH_REQ";
		r = submit_fetches(uq);
		if (r >= 0 && atomic_load(&uq->failed))
			r = -EIO;
	}
	if (r < 0)
		return blkserv_error_errno(dev, r, "queue %u: %s: %m", uq->q_id, what);
	return r;
}

static void queue_teardown(struct ublk_queue *uq)
{
	/* Closing the ring cancels the commands still in the kernel and
	 * drops the ring's reference to /dev/ublkcN. */
	blkserv_queue_free(uq->q);
	uq->q = NULL;
	if (uq->descs)
		munmap((void *)uq->descs, uq->descs_len);
	uq->descs = NULL;
	if (uq->bufs)
		munmap(uq->bufs, uq->bufs_len);
	uq->bufs = NULL;
	free(uq->tags);
	uq->tags = NULL;
	free(uq->pending);
	uq->pending = NULL;
}

/* Every tag is aborted (the device stopped), or we were asked to stop; in
 * both cases only once no request is with the backend or waiting to commit. */
static bool may_exit(struct ublk_queue *uq)
{
	if (blkserv_queue_inflight(uq->q) > 0 || uq->nr_pending > 0)
		return false;
	return uq->nr_aborted == uq->u->opt.depth || atomic_load(&uq->stop);
}

/* Is a request with the backend for longer than STALL_NS?  The driver has
 * no timeout of its own for root's devices (P-U10). */
static bool backend_stalled(struct ublk_queue *uq, uint64_t now)
{
	for (uint32_t i = 0; i < uq->u->opt.depth; i++) {
		const struct ublk_tag *t = &uq->tags[i];
		if (t->state == TAG_SERVING && now - t->req->start_ns > STALL_NS)
			return true;
	}
	return false;
}

static void touch(struct ublk_queue *uq)
{
	uint64_t now = now_ns();

	blkserv_queue_heartbeat(uq->q);
	atomic_store_explicit(&uq->loop_ns, now, memory_order_relaxed);
	if (now - uq->scan_ns < SCAN_NS)
		return;
	uq->scan_ns = now;
	if (backend_stalled(uq, now) != atomic_load_explicit(&uq->stalled, memory_order_relaxed)) {
		atomic_store(&uq->stalled, !atomic_load(&uq->stalled));
		if (atomic_load(&uq->stalled))
			blkserv_error(uq->u->dev, "queue %u: the backend has held a request for more than %llu s",
				      uq->q_id, STALL_NS / 1000000000ull);
	}
}

static void queue_loop(struct ublk_queue *uq)
{
	for (;;) {
		int r;

		flush_pending(uq);
		if (may_exit(uq)) {
			/* Hand the last commits to the kernel; they may bring
			 * new requests, which are served before leaving. */
			(void)blkserv_queue_process(uq->q, 0, 0);
			if (may_exit(uq))
				return;
		}
		r = blkserv_queue_process(uq->q, 1, LOOP_TIMEOUT_MS);
		if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
			(void)blkserv_error_errno(uq->u->dev, r, "queue %u: io_uring failed: %m", uq->q_id);
			atomic_store(&uq->failed, true);
			/* Do not spin on a broken ring. */
			nanosleep(&(struct timespec){ .tv_nsec = 100000000 }, NULL);
		}
		touch(uq);
	}
}

static void *queue_thread(void *arg)
{
	struct ublk_queue *uq = arg;
	char name[16];
	int r;

	snprintf(name, sizeof(name), "ublk%u-q%u", uq->u->info.dev_id, uq->q_id);
	(void)pthread_setname_np(pthread_self(), name);
	r = queue_setup(uq);
	if (r < 0) {
		queue_teardown(uq); /* no request can have arrived yet */
		atomic_store(&uq->setup_result, r);
		sem_post(&uq->u->ready);
		return NULL;
	}
	touch(uq);
	atomic_store(&uq->running, true);
	atomic_store(&uq->setup_result, 0);
	sem_post(&uq->u->ready);
	queue_loop(uq);
	atomic_store(&uq->running, false);
	/* The ring is closed by ublk_queues_stop once this thread is gone,
	 * as after kill -9.  Closed here, by the live thread, the driver's
	 * quiesce could wait forever for a started request that was never
	 * requeued (6.12: planned restarts under load hung within three;
	 * none did in sixteen since, see VM scenario systemd-restart-ublk). */
	return NULL;
}

/* ---- for the main thread ------------------------------------------ */

int ublk_queues_start(struct ublk *u)
{
	int r = 0;

	for (uint32_t i = 0; i < u->nr_queues; i++) {
		struct ublk_queue *uq = &u->queues[i];

		memset(uq, 0, sizeof(*uq));
		uq->u = u;
		uq->q_id = (uint16_t)i;
		atomic_store(&uq->setup_result, 1);
		r = -pthread_create(&uq->thread, NULL, queue_thread, uq);
		if (r < 0) {
			(void)blkserv_error_errno(u->dev, r, "cannot start the thread of queue %u: %m", i);
			break;
		}
		uq->thread_started = true;
	}
	for (uint32_t i = 0; i < u->nr_queues; i++) {
		if (!u->queues[i].thread_started)
			continue;
		while (sem_wait(&u->ready) < 0 && errno == EINTR)
			;
	}
	for (uint32_t i = 0; i < u->nr_queues && r >= 0; i++)
		r = atomic_load(&u->queues[i].setup_result);
	return r;
}

void ublk_queues_stop(struct ublk *u)
{
	for (uint32_t i = 0; i < u->nr_queues; i++)
		atomic_store(&u->queues[i].stop, true);
	for (uint32_t i = 0; i < u->nr_queues; i++) {
		if (!u->queues[i].thread_started)
			continue;
		pthread_join(u->queues[i].thread, NULL);
		u->queues[i].thread_started = false;
		if (atomic_load(&u->queues[i].setup_result) == 0)
			queue_teardown(&u->queues[i]);
	}
}

void ublk_queues_log_counts(struct ublk *u)
{
	char line[512];
	size_t n = 0;

	line[0] = '\0';
	for (uint32_t i = 0; i < u->nr_queues && n < sizeof(line); i++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, " %llu", (unsigned long long)u->queues[i].nr_served);
	blkserv_info(u->dev, "requests served per queue:%s", line);
}

int ublk_queues_health(struct ublk *u)
{
	uint64_t now = now_ns();

	for (uint32_t i = 0; i < u->nr_queues; i++) {
		struct ublk_queue *uq = &u->queues[i];

		if (atomic_load(&uq->failed))
			return -EIO;
		if (!atomic_load(&uq->running))
			return -ESRCH;
		if (now - atomic_load_explicit(&uq->loop_ns, memory_order_relaxed) > STALL_NS ||
		    atomic_load(&uq->stalled))
			return -ETIMEDOUT;
	}
	return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The server threads.  Each blocks in DEVICE_OPERATION with every signal
 * blocked (the original module swallowed signals that interrupted it), gets
 * one request, runs it on its own queue and answers it in the next call,
 * which also waits for the next request.  A thread has one request in
 * flight, so the device's concurrency is the number of threads.
 *
 * A thread ends when the kernel says the device is gone: the exit operation
 * (8086), or ENOENT for a device destroyed while the thread was busy.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "dblock.h"

static void on_done(struct blkserv_request *req, int result)
{
	struct dblock_thread *t = req->frontend_data;

	t->req_result = result;
	t->req_done = true;
}

/* Run one request on the thread's queue and wait for it: the backend may
 * complete it later, from its ring or from another thread. */
static int run(struct dblock_thread *t, uint32_t op, uint32_t flags, uint64_t offset, uint64_t length, void *buf)
{
	struct blkserv_request *req = t->req;
	int r;

	req->op = op;
	req->flags = flags;
	req->offset = offset;
	req->length = length;
	req->buf = buf;
	req->done = on_done;
	req->frontend_data = t;
	t->req_done = false;
	blkserv_submit(req);
	while (!t->req_done) {
		r = blkserv_queue_process(t->q, 1, -1);
		if (r < 0 && r != -EINTR && r != -ETIME && r != -EAGAIN && r != -EBUSY && !t->process_warned) {
			(void)blkserv_warning_errno(blkserv_queue_device(t->q), r,
						    "thread %u: waiting for a "
						    "request failed: %m (retrying)",
						    t->index);
			t->process_warned = true;
		}
	}
	return t->req_result;
}

/* READ/WRITE: the segments are contiguous (the original module sends one
 * bio's pages), but a run of segments is served per contiguous piece, so a
 * module that does otherwise is still served right. */
static int run_data(struct dblock_thread *t, uint32_t op, uint32_t flags)
{
	struct dblock_operation *o = t->op;
	uint32_t nseg = o->packet.request.number_of_segments;
	uint64_t total = o->packet.request.total_length_of_all_bio_segments, done = 0;
	uint32_t i = 0;
	int r;

	if (nseg == 0 || nseg > DBLOCK_MAX_SEGMENTS || total > DBLOCK_MAX_DATA_BYTES)
		return -EINVAL;
	while (i < nseg) {
		uint64_t start = o->metadata[i].start, len = o->metadata[i].length;

		for (i++; i < nseg && o->metadata[i].start == start + len; i++)
			len += o->metadata[i].length;
		if (len == 0 || len > total - done)
			return -EINVAL;
		r = run(t, op, flags, start, len, o->data + done);
		if (r < 0)
			return r;
		done += len;
	}
	return done == total ? 0 : -EINVAL;
}

/* DISCARD, WRITE_ZEROES: one range, no data. */
static int run_range(struct dblock_thread *t, uint32_t op, uint32_t flags)
{
	struct dblock_operation *o = t->op;

	if (o->packet.request.number_of_segments != 1 ||
	    o->metadata[0].length != o->packet.request.total_length_of_all_bio_segments)
		return -EINVAL;
	return run(t, op, flags, o->metadata[0].start, o->metadata[0].length, NULL);
}

static void answer(struct dblock_thread *t, uint32_t code, uint32_t op, int result)
{
	struct dblock_operation *o = t->op;
	uint64_t len = o->packet.request.total_length_of_all_bio_segments;

	if (result < 0) {
		t->counters.errors++;
	} else {
		t->counters.ops[op]++;
		if (o->header.flags & DBLOCK_REQ_FUA)
			t->counters.fua++;
	}
	/* handle_id and operation_id stay as the request had them. */
	o->header.operation = code;
	o->header.flags = 0;
	o->error = result < 0 ? result : 0;
	memset(&o->packet, 0, sizeof(o->packet));
	o->packet.response.total_length = result < 0 ? 0 : len;
}

int dblock_serve_op(struct dblock_thread *t)
{
	struct dblock_operation *o = t->op;
	uint32_t fua = o->header.flags & DBLOCK_REQ_FUA ? BLKSERV_REQ_FUA : 0;
	uint32_t no_hole = o->header.flags & DBLOCK_REQ_NOUNMAP ? BLKSERV_REQ_NO_HOLE : 0;

	switch (o->header.operation) {
	case DBLOCK_OP_KERNEL_USERSPACE_EXIT:
	case DBLOCK_OP_KERNEL_DETACHED: /* a stop that keeps the device */
		return DBLOCK_SERVE_EXIT;
	case DBLOCK_OP_KERNEL_BLOCK_FOR_REQUEST:
		o->header.operation = DBLOCK_OP_BLOCK_FOR_REQUEST;
		return 0;
	case DBLOCK_OP_KERNEL_READ_REQUEST:
		answer(t, DBLOCK_OP_READ_RESPONSE, BLKSERV_OP_READ, run_data(t, BLKSERV_OP_READ, 0));
		return 0;
	case DBLOCK_OP_KERNEL_WRITE_REQUEST:
		answer(t, DBLOCK_OP_WRITE_RESPONSE, BLKSERV_OP_WRITE, run_data(t, BLKSERV_OP_WRITE, fua));
		return 0;
	case DBLOCK_OP_KERNEL_FLUSH_REQUEST:
		answer(t, DBLOCK_OP_FLUSH_RESPONSE, BLKSERV_OP_FLUSH, run(t, BLKSERV_OP_FLUSH, 0, 0, 0, NULL));
		return 0;
	case DBLOCK_OP_KERNEL_DISCARD_REQUEST:
		answer(t, DBLOCK_OP_DISCARD_RESPONSE, BLKSERV_OP_TRIM, run_range(t, BLKSERV_OP_TRIM, 0));
		return 0;
	case DBLOCK_OP_KERNEL_WRITE_ZEROES_REQUEST:
		answer(t, DBLOCK_OP_WRITE_ZEROES_RESPONSE, BLKSERV_OP_WRITE_ZEROES,
		       run_range(t, BLKSERV_OP_WRITE_ZEROES, no_hole));
		return 0;
	}
	/* Not answered: the kernel fails it at its timeout. */
	o->header.operation = DBLOCK_OP_BLOCK_FOR_REQUEST;
	return -EPROTO;
}

/* ---- the thread ------------------------------------------------------------ */

int dblock_thread_alloc(struct dblock_thread *t)
{
	size_t size = sizeof(struct dblock_operation) + DBLOCK_MAX_DATA_BYTES;

	/* Page-aligned, and touched now: the daemon locks its memory, so
	 * serving never waits for a page fault. */
	t->op = aligned_alloc(4096, (size + 4095) & ~(size_t)4095);
	if (!t->op)
		return -ENOMEM;
	memset(t->op, 0, size);
	return 0;
}

void dblock_thread_free(struct dblock_thread *t)
{
	free(t->op);
	t->op = NULL;
}

static void block_all_signals(void)
{
	sigset_t all;

	/* A signal would interrupt DEVICE_OPERATION; the daemon's main
	 * thread takes the ones it handles through its signalfd. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
}

static void serve_loop(struct dblock_thread *t)
{
	struct blkserv_device *dev = t->d->dev;
	struct dblock_operation *o = t->op;
	bool warned = false;
	int r;

	o->header.operation = DBLOCK_OP_BLOCK_FOR_REQUEST;
	for (;;) {
		o->handle_id = t->d->handle_id;
		if (ioctl(t->fd, DBLOCK_IOCTL_DEVICE_OPERATION, o) < 0) {
			if (errno == EINTR) {
				/* Any answer in that call was taken. */
				o->header.operation = DBLOCK_OP_BLOCK_FOR_REQUEST;
				continue;
			}
			if (errno != ENOENT) {
				blkserv_error(dev, "thread %u: DEVICE_OPERATION failed: %m; it stops serving",
					      t->index);
				atomic_store(&t->failed, true);
			}
			return;
		}
		r = dblock_serve_op(t);
		if (r == DBLOCK_SERVE_EXIT)
			return;
		if (r == -EPROTO && !warned) {
			blkserv_warning(dev,
					"thread %u: unknown request operation from the module: "
					"left unanswered (it fails at the timeout)",
					t->index);
			warned = true;
		}
		blkserv_queue_heartbeat(t->q);
	}
}

void *dblock_thread_main(void *arg)
{
	struct dblock_thread *t = arg;
	int r;

	block_all_signals();
	r = blkserv_queue_new(t->d->dev, 1, 0, &t->q);
	if (r >= 0)
		t->req = blkserv_queue_request(t->q, 0);
	t->setup_result = r;
	sem_post(&t->d->ready);
	if (r >= 0)
		serve_loop(t);
	if (!atomic_load(&t->d->stopping) && !atomic_load(&t->failed) && r >= 0) {
		blkserv_error(t->d->dev, "thread %u: /dev/%s was destroyed behind the daemon's back", t->index,
			      t->d->opt.name);
		atomic_store(&t->failed, true);
	}
	blkserv_queue_free(t->q);
	t->q = NULL;
	atomic_store(&t->exited, true);
	return NULL;
}

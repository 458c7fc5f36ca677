/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dblock: serve the device as /dev/NAME through the dblock kernel module
 * (ours, frontends/dblock/kmod, or any module with the original dblock ABI).
 *
 * start: open /dev/dblockctl, probe the module's extensions, create the
 * device (with FLUSH/FUA/TRIM/WRITE_ZEROES when both the module and the
 * backend have them; otherwise the backend is asked for write-through, since
 * the kernel then takes every completed write as durable), then start the
 * server threads, each with its own /dev/NAME-ctl file and its own queue.
 *
 * A device the previous daemon left (recorded in the state file, see
 * dblock-takeover.c) is taken over instead: its waiting I/O is served.
 *
 * stop: flush /dev/NAME, destroy it (forced): the module fails what is
 * still queued and wakes every server thread with its exit operation; join
 * them.  With BLKSERV_STOP_KEEP_DEVICE (and a module with DEVICE_DETACH)
 * the threads are detached instead and the device stays, with the state
 * file, for the next daemon; its I/O waits up to the device's timeout.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "dblock.h"

/* How long stop waits for a thread the module should have woken. */
#define JOIN_TIMEOUT_S 10

static const struct blkserv_option dblock_options[] = {
	{ "name", BLKSERV_OPT_STRING, NULL,
	  "kernel device name: /dev/NAME and /dev/NAME-ctl, 1..31 characters (default: the device's name)", 0 },
	{ "threads", BLKSERV_OPT_UINT, "4", "server threads, one request in flight each, 1..64", 0 },
	{ "timeout", BLKSERV_OPT_UINT, "30", "seconds before the kernel fails an unanswered request with EIO, 1..1200",
	  0 },
	{ "queue_depth", BLKSERV_OPT_UINT, "128", "requests the kernel queues for the threads, 1..1024 (extension)",
	  0 },
	{ "max_io_size", BLKSERV_OPT_SIZE, "1M", "largest request, 4K..1M in steps of 4K", 0 },
	{ "extensions", BLKSERV_OPT_BOOL, "true",
	  "use the module's FLUSH, FUA, TRIM and WRITE_ZEROES extensions when it has them", 0 },
	BLKSERV_OPTION_END,
};

static int dblock_open(struct blkserv_device *dev, const struct blkserv_config *cfg, void **ret_handle)
{
	struct dblock *d = calloc(1, sizeof(*d));
	int r;

	if (!d)
		return -ENOMEM;
	d->dev = dev;
	d->ctl_fd = -1;
	d->size = blkserv_device_size(dev);
	d->caps = blkserv_device_caps(dev);
	r = dblock_options_parse(dev, cfg, &d->opt);
	if (r >= 0) {
		d->threads = calloc(d->opt.threads, sizeof(*d->threads));
		r = d->threads ? 0 : -ENOMEM;
	}
	if (r >= 0)
		r = dblock_state_path(blkserv_runtime_dir(), blkserv_device_name(dev), &d->state_path);
	if (r >= 0 && sem_init(&d->ready, 0, 0) < 0)
		r = -errno;
	if (r < 0) {
		free(d->state_path);
		free(d->threads);
		free(d);
		return r;
	}
	for (unsigned i = 0; i < d->opt.threads; i++) {
		d->threads[i].d = d;
		d->threads[i].index = i;
		d->threads[i].fd = -1;
	}
	*ret_handle = d;
	return 0;
}

static void dblock_close(void *handle)
{
	struct dblock *d = handle;

	safe_close(d->ctl_fd);
	if (d->leaked)
		return; /* a thread left behind still uses them */
	sem_destroy(&d->ready);
	free(d->state_path);
	free(d->threads);
	free(d);
}

/* ---- threads ------------------------------------------------------------ */

static int prepare_threads(struct dblock *d)
{
	for (unsigned i = 0; i < d->opt.threads; i++) {
		struct dblock_thread *t = &d->threads[i];
		int r = dblock_open_request_node(d, &t->fd);

		if (r >= 0)
			r = dblock_thread_alloc(t);
		if (r < 0)
			return r;
	}
	return 0;
}

static void wait_ready(struct dblock *d)
{
	while (sem_wait(&d->ready) < 0 && errno == EINTR)
		;
}

static int spawn_threads(struct dblock *d)
{
	int r = 0;

	for (unsigned i = 0; i < d->opt.threads; i++) {
		struct dblock_thread *t = &d->threads[i];
		int e = pthread_create(&t->thread, NULL, dblock_thread_main, t);

		if (e) {
			r = blkserv_error_errno(d->dev, e, "cannot start server thread %u: %m", i);
			break;
		}
		t->running = true;
	}
	for (unsigned i = 0; i < d->opt.threads; i++) {
		if (!d->threads[i].running)
			continue;
		wait_ready(d);
	}
	for (unsigned i = 0; i < d->opt.threads && r >= 0; i++)
		if (d->threads[i].running && d->threads[i].setup_result < 0) {
			r = d->threads[i].setup_result;
			(void)blkserv_error_errno(d->dev, r, "server thread %u cannot make its queue: %m", i);
		}
	return r;
}

static void join_threads(struct dblock *d)
{
	struct timespec deadline;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += JOIN_TIMEOUT_S;
	for (unsigned i = 0; i < d->opt.threads; i++) {
		struct dblock_thread *t = &d->threads[i];

		if (!t->running)
			continue;
		if (pthread_timedjoin_np(t->thread, NULL, &deadline) != 0) {
			/* A module with the original's flaw may not wake it:
			 * leave it (and what it uses) behind rather than hang. */
			blkserv_error(d->dev,
				      "server thread %u did not exit within %d s of destroy: "
				      "leaving it behind",
				      i, JOIN_TIMEOUT_S);
			pthread_detach(t->thread);
			t->fd = -1;
			t->op = NULL;
			d->leaked = true;
		}
		t->running = false;
	}
}

static void release_threads(struct dblock *d)
{
	for (unsigned i = 0; i < d->opt.threads; i++) {
		d->threads[i].fd = safe_close(d->threads[i].fd);
		dblock_thread_free(&d->threads[i]);
	}
}

/* ---- start and stop --------------------------------------------------------- */

/* Whatever the page cache holds for /dev/NAME goes to the backend, and a
 * FLUSH with it, while the threads still serve. */
static void flush_kernel_device(struct dblock *d)
{
	char path[64];
	_cleanup_close_ int fd = -1;

	snprintf(path, sizeof(path), "/dev/%s", d->opt.name);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0 && fsync(fd) < 0)
		blkserv_warning(d->dev, "flushing %s before removing it failed: %m", path);
}

static void log_summary(struct dblock *d)
{
	struct dblock_counters sum = {};

	for (unsigned i = 0; i < d->opt.threads; i++) {
		const struct dblock_counters *c = &d->threads[i].counters;

		for (unsigned op = 0; op < BLKSERV_OP__MAX; op++)
			sum.ops[op] += c->ops[op];
		sum.fua += c->fua;
		sum.errors += c->errors;
	}
	blkserv_info(d->dev,
		     "/dev/%s served %llu reads, %llu writes (%llu FUA), %llu flushes, %llu trims, "
		     "%llu write-zeroes; %llu failed",
		     d->opt.name, (unsigned long long)sum.ops[BLKSERV_OP_READ],
		     (unsigned long long)sum.ops[BLKSERV_OP_WRITE], (unsigned long long)sum.fua,
		     (unsigned long long)sum.ops[BLKSERV_OP_FLUSH], (unsigned long long)sum.ops[BLKSERV_OP_TRIM],
		     (unsigned long long)sum.ops[BLKSERV_OP_WRITE_ZEROES], (unsigned long long)sum.errors);
}

static void teardown(struct dblock *d, bool served)
{
	bool had_device = d->created;

	atomic_store(&d->stopping, true);
	if (served)
		flush_kernel_device(d);
	dblock_destroy_device(d);
	join_threads(d);
	if (served)
		log_summary(d);
	release_threads(d);
	if (had_device)
		dblock_remove_state(d);
	d->ctl_fd = safe_close(d->ctl_fd);
}

/* Detach every thread: each answers what it has, then leaves. */
static int detach_threads(struct dblock *d)
{
	for (unsigned i = 0; i < d->opt.threads; i++) {
		int r = d->threads[i].running ? dblock_detach(d, d->threads[i].fd) : 0;

		if (r < 0)
			return r;
	}
	return 0;
}

/* Stop serving, leave the device and its state file for the next daemon;
 * -EINVAL if the module cannot (nothing was changed then).  @served: our
 * threads served it (else a flush would wait for a server). */
static int keep_device(struct dblock *d, bool served)
{
	int r;

	if (!d->created || d->module_abi < 2)
		return -EINVAL;
	atomic_store(&d->stopping, true);
	if (served)
		flush_kernel_device(d);
	r = detach_threads(d);
	if (r < 0) {
		/* The first detach failed, or a later one: then the threads
		 * still serving are woken by the destroy that follows. */
		atomic_store(&d->stopping, false);
		return r;
	}
	join_threads(d);
	if (served)
		log_summary(d);
	/* Closing the -ctl files puts anything left unanswered back on
	 * the queue, for the next daemon. */
	release_threads(d);
	d->ctl_fd = safe_close(d->ctl_fd);
	d->created = false;
	blkserv_notice(d->dev,
		       "left /dev/%s (handle %u) for the next daemon to take over; its I/O waits "
		       "up to the device timeout for it",
		       d->opt.name, d->handle_id);
	return 0;
}

static int dblock_start(void *handle)
{
	struct dblock *d = handle;
	char kernel_name[64];
	bool took_over;
	int r;

	atomic_store(&d->stopping, false);
	r = dblock_control_open(d);
	if (r < 0)
		return r;
	dblock_probe_features(d);
	r = dblock_try_takeover(d);
	took_over = r > 0;
	if (took_over)
		r = dblock_plan_durability(d, d->features);
	else if (r == 0)
		r = dblock_create_device(d);
	if (r >= 0)
		r = dblock_save_state(d);
	if (r >= 0)
		r = prepare_threads(d);
	if (r >= 0)
		r = spawn_threads(d);
	if (r < 0) {
		/* A device taken over holds a user's waiting I/O: leave it
		 * for a daemon that can serve it, as a crash would. */
		if (!took_over || keep_device(d, false) < 0)
			teardown(d, false);
		return r;
	}
	snprintf(kernel_name, sizeof(kernel_name), "/dev/%s", d->opt.name);
	blkserv_device_set_kernel_name(d->dev, kernel_name);
	blkserv_info(d->dev, "serving %s with %u threads", kernel_name, d->opt.threads);
	return 0;
}

static void dblock_stop(void *handle, uint32_t flags)
{
	struct dblock *d = handle;

	if (flags & BLKSERV_STOP_KEEP_DEVICE) {
		if (keep_device(d, true) >= 0)
			return;
		blkserv_notice(d->dev,
			       "the module cannot detach server threads (not blkservd's dblock.ko "
			       "of ABI 2 or later): /dev/%s cannot be kept for the next daemon, removing it",
			       d->opt.name);
	} else {
		blkserv_info(d->dev, "removing /dev/%s", d->opt.name);
	}
	teardown(d, true);
}

static int dblock_check_health(void *handle)
{
	struct dblock *d = handle;

	for (unsigned i = 0; i < d->opt.threads; i++)
		if (atomic_load(&d->threads[i].failed))
			return -EIO;
	return 0;
}

static int dblock_check_idle(void *handle)
{
	struct dblock *d = handle;

	return d->created ? dblock_device_idle(d) : 0;
}

static struct blkserv_frontend dblock_frontend = {
	.name = "dblock",
	.description = "/dev/NAME through the dblock kernel module (original ABI, with extensions)",
	.options = dblock_options,
	.open = dblock_open,
	.start = dblock_start,
	.stop = dblock_stop,
	.close = dblock_close,
	.check_health = dblock_check_health,
	.check_idle = dblock_check_idle,
	.option_checks = dblock_option_checks,
	.validate = dblock_validate,
};

BLKSERV_REGISTER_FRONTEND(dblock_frontend)

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Online scrub of a device (see scrub.h). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "device.h"
#include "io-util.h"
#include "log.h"
#include "scrub.h"

/* ioprio_set(2) has no glibc wrapper. */
#define IOPRIO_CLASS_BE 2
#define IOPRIO_WHO_PROCESS 1
#define IOPRIO_PRIO_VALUE(class, data) (((class) << 13) | (data))

struct device_scrub {
	struct blkserv_scrub sc; /* first: the backend's handle back to us */
	struct blkserv_device *dev;
	pthread_t thread;
	bool joinable;
	_Atomic bool cancel;
	pthread_mutex_t lock; /* the fields below */
	struct scrub_status st;
	uint64_t t0_ns;
};

const char *scrub_state_name(enum scrub_state s)
{
	static const char *const names[] = {
		[SCRUB_NEVER] = "never",     [SCRUB_RUNNING] = "running", [SCRUB_CLEAN] = "clean",
		[SCRUB_CORRUPT] = "corrupt", [SCRUB_FAILED] = "failed",   [SCRUB_CANCELLED] = "cancelled",
	};

	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "unknown";
}

static bool progress(struct blkserv_scrub *sc, uint64_t done, uint64_t total, uint64_t errors)
{
	struct device_scrub *ds = (struct device_scrub *)sc;

	pthread_mutex_lock(&ds->lock);
	ds->st.done_bytes = done;
	ds->st.total_bytes = total > done ? total : done;
	ds->st.errors = errors;
	pthread_mutex_unlock(&ds->lock);
	return !atomic_load(&ds->cancel);
}

/* A scrub yields to the device's own I/O: the lowest best-effort I/O
 * priority and CPU nice value, for this thread only. */
static void lower_priority(void)
{
	(void)syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, IOPRIO_PRIO_VALUE(IOPRIO_CLASS_BE, 7));
	(void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
}

static void *scrub_main(void *arg)
{
	struct device_scrub *ds = arg;
	struct blkserv_device *dev = ds->dev;
	int r;

	lower_priority();
	r = dev->backend->backend.scrub(dev->backend_handle, &ds->sc);
	pthread_mutex_lock(&ds->lock);
	ds->st.state = r == 0            ? SCRUB_CLEAN
		       : r == -EBADMSG   ? SCRUB_CORRUPT
		       : r == -ECANCELED ? SCRUB_CANCELLED
					 : SCRUB_FAILED;
	if (r == -EBADMSG && ds->st.errors == 0)
		ds->st.errors = 1; /* a backend that reported none through progress */
	ds->st.error = r == -EBADMSG ? 0 : r;
	ds->st.duration_ms = (now_ns() - ds->t0_ns) / 1000000;
	pthread_mutex_unlock(&ds->lock);
	if (ds->st.state == SCRUB_FAILED)
		log_errno(dev, BLKSERV_LOG_ERR, r, "scrub failed: %m");
	return NULL;
}

static void join(struct device_scrub *ds)
{
	if (ds->joinable) {
		pthread_join(ds->thread, NULL);
		ds->joinable = false;
	}
}

int device_scrub_start(struct blkserv_device *dev)
{
	struct device_scrub *ds = dev->scrub;
	struct timespec now;
	int r;

	if (!dev->backend->backend.scrub)
		return -EOPNOTSUPP;
	if (!dev->backend_handle)
		return -ENODEV;
	if (!ds) {
		ds = calloc(1, sizeof(*ds));
		if (!ds)
			return -ENOMEM;
		pthread_mutex_init(&ds->lock, NULL);
		ds->dev = dev;
		dev->scrub = ds;
	}
	pthread_mutex_lock(&ds->lock);
	r = ds->st.state == SCRUB_RUNNING ? -EBUSY : 0;
	pthread_mutex_unlock(&ds->lock);
	if (r < 0)
		return r;
	join(ds); /* the previous one, finished */
	clock_gettime(CLOCK_REALTIME, &now);
	ds->sc = (struct blkserv_scrub){ .struct_size = sizeof(ds->sc), .progress = progress, .host_data = ds };
	atomic_store(&ds->cancel, false);
	ds->t0_ns = now_ns();
	ds->st = (struct scrub_status){ .state = SCRUB_RUNNING, .started = (uint64_t)now.tv_sec };
	r = -pthread_create(&ds->thread, NULL, scrub_main, ds);
	if (r < 0) {
		ds->st.state = SCRUB_FAILED;
		ds->st.error = r;
		return r;
	}
	ds->joinable = true;
	log_full(dev, BLKSERV_LOG_INFO, 0, "scrub started");
	return 0;
}

void device_scrub_status(struct blkserv_device *dev, struct scrub_status *ret)
{
	struct device_scrub *ds = dev->scrub;

	if (!ds) {
		*ret = (struct scrub_status){ .state = SCRUB_NEVER };
		return;
	}
	pthread_mutex_lock(&ds->lock);
	*ret = ds->st;
	if (ret->state == SCRUB_RUNNING)
		ret->duration_ms = (now_ns() - ds->t0_ns) / 1000000;
	pthread_mutex_unlock(&ds->lock);
}

void device_scrub_stop(struct blkserv_device *dev)
{
	struct device_scrub *ds = dev->scrub;

	if (!ds)
		return;
	atomic_store(&ds->cancel, true);
	join(ds);
}

void device_scrub_free(struct blkserv_device *dev)
{
	struct device_scrub *ds = dev->scrub;

	if (!ds)
		return;
	device_scrub_stop(dev);
	pthread_mutex_destroy(&ds->lock);
	free(ds);
	dev->scrub = NULL;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A device: one frontend instance wired to one backend instance. */
#ifndef BLKSERVD_DEVICE_H
#define BLKSERVD_DEVICE_H

#include <pthread.h>
#include <stdatomic.h>

#include "config.h"
#include "stats.h"

enum device_state {
	DEVICE_NEW,
	DEVICE_LIVE,
	DEVICE_STOPPED,
};

struct blkserv_device {
	char *name;
	struct device_config *config; /* owned by the device (a copy) */
	struct plugin *frontend;      /* owned: each device holds its own reference */
	struct plugin *backend;
	void *frontend_handle;
	void *backend_handle;
	enum device_state state;

	uint64_t size;
	uint32_t block_size;
	uint64_t caps;         /* BLKSERV_CAP_* as served */
	uint64_t native_caps;  /* what the backend does itself (FUA may be emulated) */
	bool write_through;    /* every write made durable before completion */
	bool data_fresh;       /* the backend's data is new: no kernel device may be resumed */
	struct faults *faults; /* fault injection (a faults section); NULL: none */
	char kernel_name[128];

	/* Queues, for statistics and health; changed only when a queue is
	 * created or freed, never per request. */
	pthread_mutex_t queues_lock;
	struct blkserv_queue *queues;
	/* Held around each queue-thread call of a backend whose thread_model
	 * is BLKSERV_THREAD_MODEL_SERIALIZE (queue.c). */
	pthread_mutex_t backend_lock;
	struct io_stats retired_stats; /* of queues already freed */

	struct device_scrub *scrub;    /* scrub.c; NULL: never scrubbed */
	atomic_bool bad_return_logged; /* queue.c: a backend returned a value no callback may */
};

/* Copy @cfg into a new device (not started), loading its plugins from
 * @plugin_dir.  Logs its errors. */
int device_new(const struct device_config *cfg, const char *plugin_dir, struct blkserv_device **ret);
/* Open the backend, then the frontend, then start it.  On failure the
 * device is left as it was before (nothing half-created). */
int device_start(struct blkserv_device *dev);
/* Open only the backend (tests drive the queues themselves). */
int device_open_backend(struct blkserv_device *dev);
/* Sync (if the backend can) and close; the sync's result. */
int device_close_backend(struct blkserv_device *dev);
/* Stop the frontend (flags: BLKSERV_STOP_*), then sync and close the
 * backend.  -errno if the final sync failed: data may not be durable. */
int device_stop(struct blkserv_device *dev, uint32_t flags);
void device_free(struct blkserv_device *dev);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct blkserv_device *, device_free);

const char *device_name(const struct blkserv_device *dev);
const char *device_frontend_name(const struct blkserv_device *dev);
const char *device_backend_name(const struct blkserv_device *dev);
/* Sum of the statistics of every queue. */
void device_get_stats(struct blkserv_device *dev, struct io_stats *ret);
/* 0 if the frontend reports every queue thread healthy. */
int device_check_health(struct blkserv_device *dev);
/* Human-readable "nbd /dev/nbd0, ramdisk, 1.0 GiB". */
void device_describe(const struct blkserv_device *dev, char *buf, size_t len);
/* "ramdisk 1G" style size with binary units. */
void format_size(uint64_t bytes, char *buf, size_t len);

#endif

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "faults.h"
#include "log.h"
#include "names.h"
#include "plugin-config.h"
#include "queue.h"
#include "scrub.h"

static int load_plugin(struct blkserv_device *dev, const char *dir, enum plugin_kind kind, const char *name,
		       struct plugin **ret)
{
	char *error = NULL;
	int r = plugin_load(dir, kind, name, ret, &error);

	if (r < 0)
		log_full(dev, BLKSERV_LOG_ERR, r, "%s", error ? error : "cannot load plugin");
	free(error);
	return r;
}

static int setup_faults(struct blkserv_device *dev)
{
	char desc[512];
	int r = faults_new(dev, &dev->config->faults, &dev->faults);

	if (r < 0 || !dev->faults)
		return r;
	fault_config_describe(&dev->config->faults, desc, sizeof(desc));
	log_full(dev, BLKSERV_LOG_WARNING, 0, "fault injection is on (for testing only, never in production): %s",
		 desc[0] ? desc : "(nothing set)");
	return 0;
}

int device_new(const struct device_config *cfg, const char *plugin_dir, struct blkserv_device **ret)
{
	_cleanup_(device_freep) struct blkserv_device *dev = calloc(1, sizeof(*dev));
	int r;

	if (!dev)
		return -ENOMEM;
	pthread_mutex_init(&dev->queues_lock, NULL);
	pthread_mutex_init(&dev->backend_lock, NULL);
	dev->config = calloc(1, sizeof(*dev->config));
	dev->name = strdup(cfg->name);
	if (!dev->config || !dev->name)
		return -ENOMEM;
	*dev->config = *cfg;
	dev->config->name = dev->name;
	dev->config->frontend_cfg.values = NULL;
	dev->config->backend_cfg.values = NULL;
	dev->config->frontend_cfg.nvalues = dev->config->backend_cfg.nvalues = 0;
	r = plugin_config_copy(&cfg->frontend_cfg, &dev->config->frontend_cfg);
	if (r >= 0)
		r = plugin_config_copy(&cfg->backend_cfg, &dev->config->backend_cfg);
	if (r < 0)
		return r;
	r = load_plugin(dev, plugin_dir, PLUGIN_FRONTEND, cfg->frontend->name, &dev->frontend);
	if (r >= 0)
		r = load_plugin(dev, plugin_dir, PLUGIN_BACKEND, cfg->backend->name, &dev->backend);
	if (r < 0)
		return r;
	dev->config->frontend_cfg.plugin = dev->frontend;
	dev->config->backend_cfg.plugin = dev->backend;
	dev->config->frontend = dev->frontend;
	dev->config->backend = dev->backend;
	dev->block_size = cfg->block_size;
	r = setup_faults(dev);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(dev);
	return 0;
}

void device_free(struct blkserv_device *dev)
{
	if (!dev)
		return;
	device_scrub_free(dev);
	if (dev->faults) {
		faults_log_summary(dev->faults);
		faults_free(dev->faults);
	}
	if (dev->config) {
		plugin_config_clear(&dev->config->frontend_cfg);
		plugin_config_clear(&dev->config->backend_cfg);
		free(dev->config);
	}
	pthread_mutex_destroy(&dev->queues_lock);
	pthread_mutex_destroy(&dev->backend_lock);
	plugin_free(dev->frontend);
	plugin_free(dev->backend);
	free(dev->name);
	free(dev);
}

/* What the backend honours, from its get_caps or its callbacks. */
static int backend_caps(struct blkserv_device *dev, uint64_t *ret)
{
	const struct blkserv_backend *b = &dev->backend->backend;
	uint64_t caps = 0;
	int r;

	if (b->get_caps) {
		r = b->get_caps(dev->backend_handle, &caps);
		if (r < 0)
			return r;
	} else {
		caps |= b->flush ? BLKSERV_CAP_FLUSH : 0;
		caps |= b->trim ? BLKSERV_CAP_TRIM : 0;
		caps |= b->write_zeroes ? BLKSERV_CAP_WRITE_ZEROES : 0;
	}
	/* A capability without its callback is no capability. */
	if (!b->flush)
		caps &= ~(BLKSERV_CAP_FLUSH | BLKSERV_CAP_FUA);
	if (!b->trim)
		caps &= ~BLKSERV_CAP_TRIM;
	if (!b->write_zeroes)
		caps &= ~BLKSERV_CAP_WRITE_ZEROES;
	if (!b->write)
		caps |= BLKSERV_CAP_READ_ONLY;
	*ret = caps;
	return 0;
}

static uint64_t served_caps(const struct blkserv_device *dev, uint64_t native)
{
	uint64_t caps = native;

	/* FUA is emulated by a write then a flush; a write-through backend
	 * honours it trivially. */
	if (caps & (BLKSERV_CAP_FLUSH | BLKSERV_CAP_WRITE_THROUGH))
		caps |= BLKSERV_CAP_FUA;
	if (dev->config->read_only)
		caps |= BLKSERV_CAP_READ_ONLY;
	if (caps & BLKSERV_CAP_READ_ONLY)
		caps &= ~(BLKSERV_CAP_TRIM | BLKSERV_CAP_WRITE_ZEROES);
	return caps;
}

int device_open_backend(struct blkserv_device *dev)
{
	const struct blkserv_backend *b = &dev->backend->backend;
	uint64_t native;
	int r;

	r = b->open(dev, &dev->config->backend_cfg, dev->config->size, &dev->backend_handle);
	if (r < 0)
		return log_errno(dev, BLKSERV_LOG_ERR, r, "backend '%s' failed to open: %m", dev->backend->name);
	r = b->get_size(dev->backend_handle, &dev->size);
	if (r >= 0 && (dev->size == 0 || dev->size % dev->block_size))
		r = log_errno(dev, BLKSERV_LOG_ERR, EINVAL,
			      "backend size %llu is not a non-zero multiple of block_size %u",
			      (unsigned long long)dev->size, dev->block_size);
	if (r >= 0)
		r = backend_caps(dev, &native);
	if (r < 0) {
		b->close(dev->backend_handle);
		dev->backend_handle = NULL;
		return log_errno(dev, BLKSERV_LOG_ERR, r, "backend '%s' failed: %m", dev->backend->name);
	}
	dev->native_caps = native;
	dev->caps = served_caps(dev, native);
	return 0;
}

int device_close_backend(struct blkserv_device *dev)
{
	const struct blkserv_backend *b = &dev->backend->backend;
	int r = 0;

	if (!dev->backend_handle)
		return 0;
	device_scrub_stop(dev); /* it reads through the backend */
	if (b->sync) {
		r = b->sync(dev->backend_handle);
		if (r < 0)
			log_errno(dev, BLKSERV_LOG_ERR, r,
				  "backend sync at stop failed (%m): writes may not be durable");
	}
	b->close(dev->backend_handle);
	dev->backend_handle = NULL;
	return r;
}

int device_start(struct blkserv_device *dev)
{
	const struct blkserv_frontend *f = &dev->frontend->frontend;
	char desc[256];
	int r;

	r = device_open_backend(dev);
	if (r < 0)
		return r;
	r = f->open(dev, &dev->config->frontend_cfg, &dev->frontend_handle);
	if (r < 0) {
		log_errno(dev, BLKSERV_LOG_ERR, r, "frontend '%s' failed to open: %m", dev->frontend->name);
		goto fail_backend;
	}
	r = f->start(dev->frontend_handle);
	if (r < 0) {
		log_errno(dev, BLKSERV_LOG_ERR, r, "frontend '%s' failed to start: %m", dev->frontend->name);
		f->close(dev->frontend_handle);
		dev->frontend_handle = NULL;
		goto fail_backend;
	}
	dev->state = DEVICE_LIVE;
	names_publish(dev);
	device_describe(dev, desc, sizeof(desc));
	log_full(dev, BLKSERV_LOG_INFO, 0, "serving %s", desc);
	return 0;
fail_backend:
	device_close_backend(dev);
	return r;
}

int device_stop(struct blkserv_device *dev, uint32_t flags)
{
	const struct blkserv_frontend *f = &dev->frontend->frontend;
	const struct blkserv_backend *b = &dev->backend->backend;
	int r;

	if (!(flags & BLKSERV_STOP_KEEP_DEVICE))
		names_withdraw(dev);
	if (dev->frontend_handle) {
		f->stop(dev->frontend_handle, flags);
		f->close(dev->frontend_handle);
		dev->frontend_handle = NULL;
	}
	device_scrub_stop(dev); /* before the backend is preserved or closed */
	if ((flags & BLKSERV_STOP_KEEP_DEVICE) && b->preserve && dev->backend_handle)
		(void)b->preserve(dev->backend_handle);
	r = device_close_backend(dev);
	dev->state = DEVICE_STOPPED;
	log_full(dev, BLKSERV_LOG_INFO, 0,
		 (flags & BLKSERV_STOP_KEEP_DEVICE) ? "stopped, its kernel device kept for the next process"
						    : "stopped");
	return r;
}

const char *device_name(const struct blkserv_device *dev)
{
	return dev->name;
}

const char *device_frontend_name(const struct blkserv_device *dev)
{
	return dev->frontend ? dev->frontend->name : "";
}

const char *device_backend_name(const struct blkserv_device *dev)
{
	return dev->backend ? dev->backend->name : "";
}

void device_get_stats(struct blkserv_device *dev, struct io_stats *ret)
{
	memset(ret, 0, sizeof(*ret));
	pthread_mutex_lock(&dev->queues_lock);
	stats_add(ret, &dev->retired_stats);
	for (struct blkserv_queue *q = dev->queues; q; q = queue_next(q))
		queue_stats_add(q, ret);
	pthread_mutex_unlock(&dev->queues_lock);
}

int device_check_health(struct blkserv_device *dev)
{
	const struct blkserv_frontend *f = &dev->frontend->frontend;

	if (dev->state != DEVICE_LIVE || !f->check_health)
		return 0;
	return f->check_health(dev->frontend_handle);
}

void format_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	unsigned u = 0;
	double v = (double)bytes;

	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

void device_describe(const struct blkserv_device *dev, char *buf, size_t len)
{
	char size[32];

	format_size(dev->size, size, sizeof(size));
	snprintf(buf, len, "%s as %s from %s, %s%s", dev->frontend->name,
		 dev->kernel_name[0] ? dev->kernel_name : "(no kernel device)", dev->backend->name, size,
		 dev->caps & BLKSERV_CAP_READ_ONLY ? ", read-only" : "");
}

/* ---- SDK host functions --------------------------------------------- */

const char *blkserv_device_name(struct blkserv_device *dev)
{
	return dev->name;
}

uint64_t blkserv_device_size(struct blkserv_device *dev)
{
	return dev->size;
}

uint32_t blkserv_device_block_size(struct blkserv_device *dev)
{
	return dev->block_size;
}

uint64_t blkserv_device_caps(struct blkserv_device *dev)
{
	return dev->caps;
}

void blkserv_device_set_kernel_name(struct blkserv_device *dev, const char *name)
{
	snprintf(dev->kernel_name, sizeof(dev->kernel_name), "%s", name ? name : "");
}

void blkserv_device_set_data_fresh(struct blkserv_device *dev)
{
	dev->data_fresh = true;
}

bool blkserv_device_data_fresh(struct blkserv_device *dev)
{
	return dev->data_fresh;
}

int blkserv_device_require_write_through(struct blkserv_device *dev)
{
	if (dev->write_through)
		return 0;
	if (!(dev->native_caps & (BLKSERV_CAP_FLUSH | BLKSERV_CAP_FUA | BLKSERV_CAP_WRITE_THROUGH)) &&
	    !(dev->caps & BLKSERV_CAP_READ_ONLY))
		return log_errno(dev, BLKSERV_LOG_ERR, EOPNOTSUPP,
				 "frontend needs durable writes but backend '%s' can neither flush nor write through",
				 dev->backend->name);
	dev->write_through = true;
	log_full(dev, BLKSERV_LOG_NOTICE, 0,
		 "the kernel side cannot send FLUSH: every write is made durable before it is acknowledged");
	return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The rbd backend's shared state: settings (rbd-settings.c reads and checks
 * them, no cluster needed), the instance (rbd.c connects and opens the
 * image) and the data path (rbd-io.c, librbd's asynchronous API).
 */
#ifndef BLKSERV_BACKEND_RBD_H
#define BLKSERV_BACKEND_RBD_H

#include <rados/librados.h>
#include <rbd/librbd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "blkserv/blkserv-plugin.h"

#define RBD_DEFAULT_CONF "/etc/ceph/ceph.conf"
#define RBD_TIMEOUT_MAX 3600u

/* The backend section, read and checked (strings point into the config). */
struct rbd_settings {
	const char *pool;
	const char *ns; /* "" or NULL: the pool's default namespace */
	const char *image;
	const char *user;    /* client id: "admin" or "client.admin" */
	const char *keyring; /* NULL: what ceph.conf says */
	const char *conf;
	uint64_t size;      /* the device's configured size; 0: the image's */
	uint32_t timeout_s; /* librados/librbd operation timeouts */
	bool create;
	bool exclusive;
	bool read_only;
};

extern const struct blkserv_option rbd_backend_options[];
extern const struct blkserv_option_check rbd_backend_option_checks[];
int rbd_backend_validate(const struct blkserv_config *cfg);

/* rbd-settings.c: read the options and check them; logs what is wrong. */
int rbd_settings_read(struct blkserv_device *dev, const struct blkserv_config *cfg, uint64_t size,
		      struct rbd_settings *ret);
/* "pool/image" or "pool/namespace/image", for messages (malloc'd; NULL: ENOMEM). */
char *rbd_settings_spec(const struct rbd_settings *s);

/* One configured image. */
struct rbd_backend {
	struct blkserv_device *dev;
	char *spec; /* pool[/namespace]/image, for every message */
	rados_t cluster;
	rados_ioctx_t io;
	rbd_image_t image;
	uint64_t size;
	uint64_t features;
	bool read_only;
	bool exclusive;

	/* A failed flush (0: none), shared by every queue: once set, every
	 * later flush fails until the device is restarted. */
	atomic_int flush_error;

	/* Counters for blkservctl stats (relaxed). */
	atomic_ullong io_errors;
	atomic_int last_error;
};

/* Per-request state, in the request's private area (no allocation of ours;
 * librbd allocates its completion). */
struct rbd_request {
	struct blkserv_request *req;
	struct rbd_backend *rb;
};

/* rbd-io.c: the data path (qdata is the instance: one image handle serves
 * every queue, librbd is thread-safe). */
int rbd_io_read(void *qdata, struct blkserv_request *req);
int rbd_io_write(void *qdata, struct blkserv_request *req);
int rbd_io_flush(void *qdata, struct blkserv_request *req);
int rbd_io_trim(void *qdata, struct blkserv_request *req);
int rbd_io_write_zeroes(void *qdata, struct blkserv_request *req);

/* Record a failed flush and log it loudly, once. */
void rbd_set_flush_error(struct rbd_backend *rb, int error, const char *what);

#endif

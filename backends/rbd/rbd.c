/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * rbd: a device stored in a Ceph RBD image, through librbd.
 *
 * This file sets an instance up: it connects to the cluster with bounded
 * timeouts (an unreachable cluster is an error at open, never a hang),
 * opens or creates the image, checks its size against the device's, and
 * takes the image's exclusive lock so no other client writes meanwhile.
 * The data path, librbd's asynchronous API with completions posted back to
 * the owning queue, is in rbd-io.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "rbd.h"
#include "sticky-error.h"

/* ---- connecting ------------------------------------------------------ */

static int connect_error(struct rbd_backend *rb, const struct rbd_settings *s, int r)
{
	char timed_out[128];
	const char *why;

	switch (-r) {
	case ETIMEDOUT:
		snprintf(timed_out, sizeof(timed_out),
			 "no monitor answered within the timeout of %u s (is the cluster up? is mon_host right?)",
			 s->timeout_s);
		why = timed_out;
		break;
	case ENOENT:
		why = "no monitor address (mon_host) in the config, or no keyring for the user";
		break;
	case EACCES:
	case EPERM:
		why = "the monitors refused the user's key";
		break;
	default:
		why = strerror(-r);
	}
	blkserv_error(rb->dev, "rbd %s: cannot connect to the Ceph cluster of %s as user %s: %s", rb->spec, s->conf,
		      s->user, why);
	return r;
}

static int conf_set(struct rbd_backend *rb, const char *option, const char *value)
{
	int r = rados_conf_set(rb->cluster, option, value);

	if (r < 0)
		return blkserv_error_errno(rb->dev, r, "rbd %s: cannot set the Ceph option %s = %s: %m", rb->spec,
					   option, value);
	return r;
}

/* Every cluster operation fails after the timeout instead of waiting for
 * the cluster to come back; librados prints nothing (we log the errors). */
static int set_client_options(struct rbd_backend *rb, const struct rbd_settings *s)
{
	static const char *const timeouts[] = { "client_mount_timeout", "rados_mon_op_timeout",
						"rados_osd_op_timeout" };
	char t[16];
	int r = 0;

	snprintf(t, sizeof(t), "%u", s->timeout_s);
	for (size_t i = 0; i < sizeof(timeouts) / sizeof(timeouts[0]) && r >= 0; i++)
		r = conf_set(rb, timeouts[i], t);
	if (r >= 0 && s->keyring)
		r = conf_set(rb, "keyring", s->keyring);
	/* librbd then copies a write's data at submission: with its cache a
	 * write may complete before the OSDs have it, and the frontend reuses
	 * the buffer as soon as it completes. */
	if (r >= 0)
		r = conf_set(rb, "rbd_disable_zero_copy_writes", "true");
	if (r >= 0)
		r = conf_set(rb, "err_to_stderr", "false");
	if (r >= 0)
		r = conf_set(rb, "log_to_stderr", "false");
	return r;
}

static int create_cluster_handle(struct rbd_backend *rb, const struct rbd_settings *s)
{
	int r;

	if (strncmp(s->user, "client.", 7) == 0)
		r = rados_create2(&rb->cluster, "ceph", s->user, 0);
	else
		r = rados_create(&rb->cluster, s->user);
	if (r < 0) {
		rb->cluster = NULL;
		(void)blkserv_error_errno(rb->dev, r, "rbd %s: cannot create a Ceph client handle: %m", rb->spec);
	}
	return r;
}

static int connect_cluster(struct rbd_backend *rb, const struct rbd_settings *s)
{
	int r = create_cluster_handle(rb, s);

	if (r < 0)
		return r;
	r = rados_conf_read_file(rb->cluster, s->conf);
	if (r < 0)
		return blkserv_error_errno(rb->dev, r, "rbd %s: cannot read the Ceph config %s: %m", rb->spec, s->conf);
	r = set_client_options(rb, s);
	if (r < 0)
		return r;
	r = rados_connect(rb->cluster);
	if (r < 0)
		return connect_error(rb, s, r);
	return 0;
}

static int open_pool(struct rbd_backend *rb, const struct rbd_settings *s)
{
	int r = rados_ioctx_create(rb->cluster, s->pool, &rb->io);

	if (r < 0) {
		rb->io = NULL;
		blkserv_error(rb->dev, "rbd %s: %s", rb->spec, r == -ENOENT ? "the pool does not exist" : strerror(-r));
		return r;
	}
	if (!s->ns[0])
		return 0;
	rados_ioctx_set_namespace(rb->io, s->ns);
	return 0;
}

/* ---- the image -------------------------------------------------------- */

/* Why the image could not be found: a missing namespace looks the same. */
static int missing_image_error(struct rbd_backend *rb, const struct rbd_settings *s)
{
	bool ns_exists = true;

	if (s->ns[0])
		(void)rbd_namespace_exists(rb->io, s->ns, &ns_exists);
	if (!ns_exists)
		blkserv_error(rb->dev, "rbd %s: namespace %s does not exist in pool %s (rbd namespace create)",
			      rb->spec, s->ns, s->pool);
	else if (s->read_only)
		blkserv_error(rb->dev, "rbd %s: the image does not exist", rb->spec);
	else
		blkserv_error(rb->dev,
			      "rbd %s: the image does not exist (create it with rbd create, or set create = true "
			      "and the device's size)",
			      rb->spec);
	return -ENOENT;
}

static int create_image(struct rbd_backend *rb, const struct rbd_settings *s)
{
	rbd_image_options_t opts;
	int r;

	rbd_image_options_create(&opts);
	r = rbd_create4(rb->io, s->image, s->size, opts);
	rbd_image_options_destroy(opts);
	if (r == -EEXIST)
		return 0; /* someone created it meanwhile: open it as it is */
	if (r < 0)
		return blkserv_error_errno(rb->dev, r, "rbd %s: cannot create the image (%" PRIu64 " bytes): %m",
					   rb->spec, s->size);
	blkserv_notice(rb->dev, "rbd %s: created the image, %" PRIu64 " bytes", rb->spec, s->size);
	return 0;
}

static int open_image_once(struct rbd_backend *rb, const struct rbd_settings *s)
{
	if (s->read_only)
		return rbd_open_read_only(rb->io, s->image, &rb->image, NULL);
	return rbd_open(rb->io, s->image, &rb->image, NULL);
}

static int open_image(struct rbd_backend *rb, const struct rbd_settings *s)
{
	int r = open_image_once(rb, s);

	if (r == -ENOENT && s->create && (r = create_image(rb, s)) >= 0)
		r = open_image_once(rb, s);
	if (r == -ENOENT)
		return missing_image_error(rb, s);
	if (r < 0) {
		rb->image = NULL;
		return blkserv_error_errno(rb->dev, r, "rbd %s: cannot open the image: %m", rb->spec);
	}
	return 0;
}

static int check_size(struct rbd_backend *rb, const struct rbd_settings *s)
{
	uint32_t bs = blkserv_device_block_size(rb->dev);
	int r = rbd_get_size(rb->image, &rb->size);

	if (r < 0)
		return blkserv_error_errno(rb->dev, r, "rbd %s: cannot read the image size: %m", rb->spec);
	if (s->size && s->size != rb->size) {
		blkserv_error(rb->dev,
			      "rbd %s: the image is %" PRIu64 " bytes but the device size is %" PRIu64
			      ": remove the device's size to serve the whole image (or rbd resize it)",
			      rb->spec, rb->size, s->size);
		return -EINVAL;
	}
	if (rb->size == 0 || rb->size % bs) {
		blkserv_error(rb->dev,
			      "rbd %s: the image is %" PRIu64 " bytes, not a positive multiple of the "
			      "device's block_size %u",
			      rb->spec, rb->size, bs);
		return -EINVAL;
	}
	return 0;
}

/* Name who holds the lock we could not take. */
static void log_lock_owners(struct rbd_backend *rb)
{
	char *owners[8];
	size_t n = 8;
	rbd_lock_mode_t mode;

	if (rbd_lock_get_owners(rb->image, &mode, owners, &n) < 0 || n == 0)
		return;
	blkserv_error(rb->dev, "rbd %s: the lock is held %s by %s%s", rb->spec,
		      mode == RBD_LOCK_MODE_EXCLUSIVE ? "exclusively" : "shared", owners[0],
		      n > 1 ? " and others" : "");
	rbd_lock_get_owners_cleanup(owners, n);
}

/*
 * With exclusive-lock, librbd passes the lock from client to client on
 * demand, so two writers would take turns and both succeed: a file system
 * on top would be corrupted.  Acquiring it in exclusive mode makes librbd
 * refuse to hand it over for the life of the device.
 */
static int take_exclusive_lock(struct rbd_backend *rb)
{
	int r;

	if (!(rb->features & RBD_FEATURE_EXCLUSIVE_LOCK)) {
		blkserv_error(rb->dev,
			      "rbd %s: the image has no exclusive-lock feature, so nothing stops another client "
			      "from writing: enable it (rbd feature enable %s exclusive-lock) or set exclusive = false",
			      rb->spec, rb->spec);
		return -EINVAL;
	}
	r = rbd_lock_acquire(rb->image, RBD_LOCK_MODE_EXCLUSIVE);
	if (r < 0) {
		blkserv_error(rb->dev, "rbd %s: cannot take the image's exclusive lock: %s", rb->spec,
			      r == -EROFS || r == -EBUSY ? "another client holds it and keeps it" : strerror(-r));
		log_lock_owners(rb);
	}
	return r;
}

/*
 * librados and librbd start their threads (messengers, finishers) while
 * connecting and opening the image, and a thread inherits
 * PR_SET_IO_FLUSHER from the thread that creates it.  Those threads carry
 * this device's I/O: under memory pressure they must not wait on writeback
 * to it.  So the main thread holds the flag during setup only.  Needs
 * CAP_SYS_RESOURCE; without it the host has already warned.
 */
static bool io_flusher_begin(void)
{
	return prctl(PR_GET_IO_FLUSHER, 0, 0, 0, 0) == 0 && prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) == 0;
}

static void io_flusher_end(bool was_set)
{
	if (was_set)
		(void)prctl(PR_SET_IO_FLUSHER, 0, 0, 0, 0);
}

static int setup(struct rbd_backend *rb, const struct rbd_settings *s)
{
	bool io_flusher = io_flusher_begin();
	int r = connect_cluster(rb, s);

	if (r >= 0)
		r = open_pool(rb, s);
	if (r >= 0)
		r = open_image(rb, s);
	if (r >= 0)
		r = check_size(rb, s);
	if (r >= 0 && (r = rbd_get_features(rb->image, &rb->features)) < 0)
		(void)blkserv_error_errno(rb->dev, r, "rbd %s: cannot read the image features: %m", rb->spec);
	if (r >= 0 && rb->exclusive)
		r = take_exclusive_lock(rb);
	io_flusher_end(io_flusher);
	return r;
}

/* ---- the plugin callbacks --------------------------------------------- */

static void rbd_backend_close(void *handle)
{
	struct rbd_backend *rb = handle;

	if (!rb)
		return;
	/* rbd_close flushes librbd's cache and releases the lock; a dead
	 * cluster makes it fail after the timeout, not hang. */
	if (rb->image) {
		int r = rbd_close(rb->image);
		if (r < 0)
			(void)blkserv_warning_errno(rb->dev, r, "rbd %s: closing the image failed: %m", rb->spec);
	}
	if (rb->io)
		rados_ioctx_destroy(rb->io);
	if (rb->cluster)
		rados_shutdown(rb->cluster);
	free(rb->spec);
	free(rb);
}

static int rbd_backend_open(struct blkserv_device *dev, const struct blkserv_config *cfg, uint64_t size,
			    void **ret_handle)
{
	struct rbd_settings s;
	struct rbd_backend *rb;
	int r;

	r = rbd_settings_read(dev, cfg, size, &s);
	if (r < 0)
		return r;
	rb = calloc(1, sizeof(*rb));
	if (!rb || !(rb->spec = rbd_settings_spec(&s))) {
		free(rb);
		return -ENOMEM;
	}
	rb->dev = dev;
	rb->read_only = s.read_only;
	rb->exclusive = s.exclusive && !s.read_only;
	r = setup(rb, &s);
	if (r < 0) {
		rbd_backend_close(rb);
		return r;
	}
	blkserv_info(dev, "serving rbd image %s, %" PRIu64 " bytes, as client %s%s%s", rb->spec, rb->size, s.user,
		     rb->exclusive ? ", exclusive lock held" : "", rb->read_only ? ", read-only" : "");
	*ret_handle = rb;
	return 0;
}

static int rbd_backend_get_size(void *handle, uint64_t *ret_size)
{
	*ret_size = ((struct rbd_backend *)handle)->size;
	return 0;
}

/* librbd may keep writes in its client cache (rbd_cache, on by default)
 * until a flush: FLUSH is real work, and FUA is emulated by the host as a
 * write followed by a flush (librbd has no per-write durability flag). */
static int rbd_backend_get_caps(void *handle, uint64_t *ret_caps)
{
	struct rbd_backend *rb = handle;

	*ret_caps =
		rb->read_only ? BLKSERV_CAP_READ_ONLY : BLKSERV_CAP_FLUSH | BLKSERV_CAP_TRIM | BLKSERV_CAP_WRITE_ZEROES;
	return 0;
}

void rbd_set_flush_error(struct rbd_backend *rb, int error, const char *what)
{
	if (!sticky_error_set(&rb->flush_error, error))
		return;
	error = sticky_error_get(&rb->flush_error);
	(void)blkserv_error_errno(rb->dev, error,
				  "device %s: %s of rbd image %s failed: %m.  Writes since the last successful flush "
				  "may be lost; every later flush of this device fails until the device is restarted",
				  blkserv_device_name(rb->dev), what, rb->spec);
}

/* At a clean stop, after the last queue closed. */
static int rbd_backend_sync(void *handle)
{
	struct rbd_backend *rb = handle;
	int err = atomic_load(&rb->flush_error);
	int r;

	if (rb->read_only)
		return 0;
	if (err < 0)
		return blkserv_error_errno(rb->dev, err, "rbd %s: not flushing at stop: an earlier flush failed (%m)",
					   rb->spec);
	r = rbd_flush(rb->image);
	if (r < 0)
		rbd_set_flush_error(rb, r, "the flush at stop");
	return r < 0 ? r : 0;
}

static int rbd_backend_get_stats(void *handle, char *buf, size_t len)
{
	struct rbd_backend *rb = handle;
	int owner = 0;

	if (rb->exclusive)
		(void)rbd_is_exclusive_lock_owner(rb->image, &owner);
	snprintf(buf, len,
		 "size=%" PRIu64 "\nexclusive_lock_owner=%d\nflush_failed=%d\nio_errors=%llu\nlast_error=%d\n",
		 rb->size, owner, atomic_load(&rb->flush_error) < 0,
		 (unsigned long long)atomic_load_explicit(&rb->io_errors, memory_order_relaxed),
		 atomic_load_explicit(&rb->last_error, memory_order_relaxed));
	return 0;
}

static struct blkserv_backend rbd_backend_plugin = {
	.name = "rbd",
	.description = "device in a Ceph RBD image, asynchronous through librbd",
	.options = rbd_backend_options,
	.request_priv_size = sizeof(struct rbd_request),
	.open = rbd_backend_open,
	.close = rbd_backend_close,
	.get_size = rbd_backend_get_size,
	.get_caps = rbd_backend_get_caps,
	.read = rbd_io_read,
	.write = rbd_io_write,
	.flush = rbd_io_flush,
	.trim = rbd_io_trim,
	.write_zeroes = rbd_io_write_zeroes,
	.sync = rbd_backend_sync,
	.get_stats = rbd_backend_get_stats,
	.option_checks = rbd_backend_option_checks,
	.validate = rbd_backend_validate,
};

BLKSERV_REGISTER_BACKEND(rbd_backend_plugin)

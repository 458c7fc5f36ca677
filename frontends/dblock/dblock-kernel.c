/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The dblock module's control side: /dev/dblockctl (create, destroy, the
 * feature probe) and the per-device nodes.  Every failure the user can fix
 * is explained: no module, a name in use, limits exceeded.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "blockdev.h"
#include "cleanup.h"
#include "io-util.h"
#include "dblock.h"

#define NODE_WAIT_MS 5000
#define NODE_RETRY_MS 50

int dblock_control_open(struct dblock *d)
{
	int fd = open(DBLOCK_CONTROL_PATH, O_RDWR | O_CLOEXEC);
	int r;

	if (fd < 0) {
		r = -errno;
		if (r == -ENOENT || r == -ENXIO || r == -ENODEV)
			blkserv_error(d->dev,
				      "%s not found: the dblock kernel module is not loaded. "
				      "Load it with 'modprobe dblock' (installed by 'dkms install "
				      "dblock/1.0.0', see blkservd-dblock(7)) or 'insmod dblock.ko'",
				      DBLOCK_CONTROL_PATH);
		else if (r == -EACCES || r == -EPERM)
			blkserv_error(d->dev, "no permission to open %s: blkservd must run as root",
				      DBLOCK_CONTROL_PATH);
		else
			blkserv_error(d->dev, "cannot open %s: %m", DBLOCK_CONTROL_PATH);
		return r;
	}
	if (ioctl(fd, DBLOCK_IOCTL_CONTROL_PING, NULL) < 0) {
		r = -errno;
		blkserv_error(d->dev, "%s does not answer the dblock PING (%m): is it a dblock module?",
			      DBLOCK_CONTROL_PATH);
		safe_close(fd);
		return r;
	}
	d->ctl_fd = fd;
	return 0;
}

void dblock_probe_features(struct dblock *d)
{
	struct dblock_features f;

	memset(&f, 0, sizeof(f));
	d->extended = false;
	d->module_features = 0;
	d->module_abi = 0;
	if (ioctl(d->ctl_fd, DBLOCK_IOCTL_CONTROL_GET_FEATURES, &f) < 0) {
		blkserv_notice(d->dev, "the module speaks only the original dblock ABI (feature probe: %m): "
				       "the kernel will send no FLUSH, FUA, TRIM or WRITE_ZEROES");
		return;
	}
	d->module_features = f.features;
	d->module_abi = f.abi_version;
	if (!d->opt.extensions) {
		blkserv_notice(d->dev, "extensions = false: using the original dblock ABI");
		return;
	}
	d->extended = true;
}

static void copy_name(unsigned char *dst, const char *name)
{
	memset(dst, 0, DBLOCK_MAX_NAME_LENGTH + 1);
	memcpy(dst, name, strnlen(name, DBLOCK_MAX_NAME_LENGTH));
}

static int create_original(struct dblock *d)
{
	union dblock_control_operation op;
	struct dblock_create_params *p = &op.create_params;

	memset(&op, 0, sizeof(op)); /* the module reads the whole union */
	copy_name(p->device_name, d->opt.name);
	p->kernel_block_size = DBLOCK_BLOCK_SIZE;
	p->number_of_blocks = d->size / DBLOCK_BLOCK_SIZE;
	p->device_timeout_seconds = d->opt.timeout;
	p->max_segments_per_request = d->opt.max_io_size / DBLOCK_BLOCK_SIZE;
	if (ioctl(d->ctl_fd, DBLOCK_IOCTL_CONTROL_CREATE_DEVICE, &op) < 0)
		return -errno;
	d->handle_id = p->handle_id;
	d->features = 0;
	return 0;
}

static int create_extended(struct dblock *d, uint32_t wanted)
{
	struct dblock_create_ex c;

	memset(&c, 0, sizeof(c));
	copy_name(c.device_name, d->opt.name);
	c.kernel_block_size = DBLOCK_BLOCK_SIZE;
	c.device_timeout_seconds = d->opt.timeout;
	c.number_of_blocks = d->size / DBLOCK_BLOCK_SIZE;
	c.max_segments_per_request = d->opt.max_io_size / DBLOCK_BLOCK_SIZE;
	c.queue_depth = d->opt.queue_depth;
	c.features = wanted;
	if (ioctl(d->ctl_fd, DBLOCK_IOCTL_CONTROL_CREATE_DEVICE_EX, &c) < 0)
		return -errno;
	d->handle_id = c.handle_id;
	d->features = c.features;
	return 0;
}

static int explain_create_error(struct dblock *d, int r)
{
	const char *n = d->opt.name;

	switch (r) {
	case -EEXIST:
	case -EBUSY:
		blkserv_error(d->dev,
			      "the name '%s' is taken: /dev/%s or /dev/%s%s exists (another dblock "
			      "device, one left by a daemon whose state file %s is gone, or another "
			      "driver's disk); choose another frontend option name, or remove the old "
			      "device (rmmod dblock removes every unused dblock device)",
			      n, n, n, DBLOCK_CTL_SUFFIX, d->state_path);
		break;
	case -ERANGE:
		blkserv_error(d->dev,
			      "the module refused the limits of /dev/%s: size %llu bytes (4 MiB..12 "
			      "TiB), timeout %u s (1..1200), queue_depth %u (1..1024)",
			      n, (unsigned long long)d->size, d->opt.timeout, d->opt.queue_depth);
		break;
	case -EINVAL:
		blkserv_error(d->dev,
			      "the module refused to create /dev/%s: at most %u dblock devices may "
			      "exist at once, and the name must be valid",
			      n, DBLOCK_MAX_DEVICES);
		break;
	case -EPERM:
	case -EACCES:
		blkserv_error(d->dev, "creating /dev/%s needs CAP_SYS_ADMIN: run blkservd as root", n);
		break;
	default:
		(void)blkserv_error_errno(d->dev, r, "cannot create /dev/%s: %m", n);
	}
	return r;
}

/* Without a volatile cache the kernel takes every completed write as
 * durable: make it so before the first request. */
int dblock_plan_durability(struct dblock *d, uint32_t wanted)
{
	if (wanted & DBLOCK_FEATURE_FLUSH)
		return 0;
	if (d->extended)
		blkserv_info(d->dev, "backend has no FLUSH: no write cache is advertised");
	else
		blkserv_info(d->dev, "the original ABI cannot send FLUSH: asking the backend for write-through");
	return blkserv_device_require_write_through(d->dev);
}

int dblock_create_device(struct dblock *d)
{
	uint32_t wanted = d->extended ? dblock_wanted_features(d->caps) & d->module_features : 0;
	char features[96];
	int r;

	r = dblock_plan_durability(d, wanted);
	if (r < 0)
		return r;
	if (!d->extended && (d->caps & BLKSERV_CAP_READ_ONLY))
		blkserv_notice(d->dev,
			       "the original ABI cannot make /dev/%s read-only: writes to it will "
			       "fail with EIO",
			       d->opt.name);
	r = d->extended ? create_extended(d, wanted) : create_original(d);
	if (r < 0)
		return explain_create_error(d, r);
	d->created = true;
	dblock_features_string(d->features, features, sizeof(features));
	blkserv_info(d->dev, "created /dev/%s (handle %u, %s ABI, features: %s, timeout %u s)", d->opt.name,
		     d->handle_id, d->extended ? "extended" : "original", features, d->opt.timeout);
	return 0;
}

void dblock_destroy_device(struct dblock *d)
{
	union dblock_control_operation op;

	if (!d->created)
		return;
	memset(&op, 0, sizeof(op));
	op.destroy_params_by_id.handle_id = d->handle_id;
	op.destroy_params_by_id.force = 1; /* stopping wins over users */
	if (ioctl(d->ctl_fd, DBLOCK_IOCTL_CONTROL_DESTROY_DEVICE_BY_ID, &op) < 0 && errno != ENOENT)
		blkserv_error(d->dev, "cannot destroy /dev/%s (handle %u): %m", d->opt.name, d->handle_id);
	d->created = false;
}

int dblock_open_request_node(struct dblock *d, int *ret_fd)
{
	char path[64];
	int fd = -1;

	/* devtmpfs has the node when create returns; udev may take a moment. */
	snprintf(path, sizeof(path), "/dev/%s%s", d->opt.name, DBLOCK_CTL_SUFFIX);
	for (unsigned waited = 0; waited <= NODE_WAIT_MS; waited += NODE_RETRY_MS) {
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd >= 0 || errno != ENOENT)
			break;
		sleep_ms(NODE_RETRY_MS);
	}
	if (fd < 0) {
		int r = -errno;
		blkserv_error(d->dev, "cannot open %s: %m", path);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

int dblock_device_idle(struct dblock *d)
{
	char path[96], buf[32];
	_cleanup_close_ int fd = -1;
	ssize_t n;

	snprintf(path, sizeof(path), "/sys/block/%s/dblock/openers", d->opt.name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, buf, sizeof(buf) - 1);
		return n > 0 && buf[0] != '0' ? -EBUSY : 0;
	}
	/* The original module has no openers count: what every frontend asks
	 * (mounted, held exclusively or open by another process). */
	snprintf(path, sizeof(path), "/dev/%s", d->opt.name);
	return blockdev_in_use(path) > 0 ? -EBUSY : 0;
}

int dblock_detach(struct dblock *d, int fd)
{
	if (d->module_abi < 2)
		return -EINVAL;
	return ioctl(fd, DBLOCK_IOCTL_DEVICE_DETACH) < 0 ? -errno : 0;
}

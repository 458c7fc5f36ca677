/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Stable names: RUNTIME_DIR/names/KERNEL (e.g. names/nbd3) holds the device
 * name; the udev rule 60-blkservd.rules turns it into /dev/blkserv/NAME.
 * The kernel device appears before we know which one we got, so after
 * writing the file we ask udev to look at the device again ("change").
 * Under systemd that needs /sys/devices/virtual/block writable
 * (ReadWritePaths= in blkservd.service, as ProtectKernelTunables= makes
 * /sys read-only); without it the link depends on udev's timing, so a
 * failed request is logged.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "device.h"
#include "io-util.h"
#include "log.h"
#include "names.h"

/* "/dev/nbd3" → "nbd3"; NULL when the device is not a kernel block device. */
static const char *kernel_basename(const struct blkserv_device *dev)
{
	if (strncmp(dev->kernel_name, "/dev/", 5) != 0 || strchr(dev->kernel_name + 5, '/'))
		return NULL;
	return dev->kernel_name + 5;
}

/* Ask udev to apply its rules to /dev/@base again.  0 or -errno. */
static int trigger_change(const char *base)
{
	char path[256];
	_cleanup_close_ int fd = -1;

	snprintf(path, sizeof(path), "/sys/class/block/%s/uevent", base);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	return write_full(fd, "change", 6);
}

void names_publish(const struct blkserv_device *dev)
{
	const char *base = kernel_basename(dev);
	char dir[4096], path[4096 + 64];
	_cleanup_close_ int fd = -1;
	int r;

	if (!base)
		return;
	snprintf(dir, sizeof(dir), "%s/names", blkserv_runtime_dir());
	(void)mkdir(dir, 0755);
	snprintf(path, sizeof(path), "%s/%s", dir, base);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	r = fd < 0 ? -errno : write_full(fd, dev->name, strlen(dev->name));
	if (r < 0) {
		log_full((struct blkserv_device *)dev, BLKSERV_LOG_WARNING, -r,
			 "cannot record the name for /dev/blkserv/%s in %s: %m", dev->name, path);
		return;
	}
	r = trigger_change(base);
	if (r < 0)
		log_full((struct blkserv_device *)dev, BLKSERV_LOG_WARNING, -r,
			 "cannot ask udev to add /dev/blkserv/%s (writing /sys/class/block/%s/uevent: %m); "
			 "it appears only if udev handles /dev/%s after this",
			 dev->name, base, base);
}

void names_withdraw(const struct blkserv_device *dev)
{
	const char *base = kernel_basename(dev);
	char path[4096 + 64];

	if (!base)
		return;
	/* No "change" event: udev would probe the device (blkid reads it)
	 * while the frontend removes it, and the read fails with an I/O error
	 * in the kernel log.  The removal's own event (remove; for nbd the
	 * change of its size to 0) drops /dev/blkserv/NAME, as the name is
	 * gone by then. */
	snprintf(path, sizeof(path), "%s/names/%s", blkserv_runtime_dir(), base);
	(void)unlink(path);
}

void names_reset(void)
{
	char dir[4096], path[4096 + 256];
	_cleanup_(closedirp) DIR *d = NULL;
	struct dirent *e;

	/* Links of a daemon that died point at devices that are no longer
	 * served (or are served again and will be published again). */
	snprintf(dir, sizeof(dir), "%s/names", blkserv_runtime_dir());
	d = opendir(dir);
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (unlink(path) == 0)
			trigger_change(e->d_name);
	}
}

// SPDX-License-Identifier: GPL-2.0-only
/*
 * dblock.ko: /sys/block/NAME/dblock/, what a device was created with and
 * what it has done (for operators, the daemon's idle check and the tests).
 */
#include <linux/blkdev.h>
#include <linux/device.h>
#include <linux/sysfs.h>

#include "dblock.h"

static struct dblock_dev *dev_of(struct device *d)
{
	return dev_to_disk(d)->private_data;
}

static ssize_t handle_id_show(struct device *d, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", dev_of(d)->handle_id);
}

static ssize_t timeout_seconds_show(struct device *d, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", dev_of(d)->timeout_seconds);
}

static ssize_t queue_depth_show(struct device *d, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", dev_of(d)->queue_depth);
}

/* Server threads waiting in DEVICE_OPERATION right now. */
static ssize_t servers_show(struct device *d, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%d\n", atomic_read(&dev_of(d)->waiters));
}

/* Openers of /dev/NAME (the daemon's reload checks that it is unused). */
static ssize_t openers_show(struct device *d, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", disk_openers(dev_to_disk(d)));
}

static ssize_t features_show(struct device *d, struct device_attribute *attr, char *buf)
{
	static const char *const names[] = { "flush", "fua", "discard", "write_zeroes", "read_only" };
	u32 features = dev_of(d)->features;
	ssize_t len = 0;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(names); i++)
		if (features & (1u << i))
			len += sysfs_emit_at(buf, len, "%s%s", len ? " " : "", names[i]);
	len += sysfs_emit_at(buf, len, "%s\n", len ? "" : "none");
	return len;
}

/* Requests handed to servers by kind, and how many failed. */
static ssize_t stats_show(struct device *d, struct device_attribute *attr, char *buf)
{
	struct dblock_dev *dev = dev_of(d);
	struct dblock_stats s;

	spin_lock_irq(&dev->lock);
	s = dev->stats;
	spin_unlock_irq(&dev->lock);
	return sysfs_emit(buf,
			  "read %llu\nwrite %llu\nflush %llu\ndiscard %llu\nwrite_zeroes %llu\nfua %llu\n"
			  "timeouts %llu\nerrors %llu\nrequeued %llu\n",
			  s.read, s.write, s.flush, s.discard, s.write_zeroes, s.fua, s.timeouts, s.errors,
			  s.requeued);
}

static DEVICE_ATTR_RO(handle_id);
static DEVICE_ATTR_RO(timeout_seconds);
static DEVICE_ATTR_RO(queue_depth);
static DEVICE_ATTR_RO(servers);
static DEVICE_ATTR_RO(openers);
static DEVICE_ATTR_RO(features);
static DEVICE_ATTR_RO(stats);

static struct attribute *dblock_attrs[] = {
	&dev_attr_handle_id.attr,
	&dev_attr_timeout_seconds.attr,
	&dev_attr_queue_depth.attr,
	&dev_attr_servers.attr,
	&dev_attr_openers.attr,
	&dev_attr_features.attr,
	&dev_attr_stats.attr,
	NULL,
};

static const struct attribute_group dblock_attr_group = {
	.name = "dblock",
	.attrs = dblock_attrs,
};

const struct attribute_group *dblock_disk_groups[] = {
	&dblock_attr_group,
	NULL,
};

// SPDX-License-Identifier: GPL-2.0-only
/*
 * dblock.ko: creating and destroying devices.  Every function here runs
 * under dblock_ctl_mutex, which serialises creates, destroys and look-ups
 * by id or name; the data path never takes it.
 *
 * A device lives as long as its reference count: one for the device list,
 * one per open /dev/NAME-ctl file.  Destroy takes it off the list, fails its
 * I/O, wakes its servers and removes the disk; the memory goes with the last
 * open -ctl file.
 */
#include <linux/ctype.h>
#include <linux/fs.h>
#include <linux/module.h>
#include <linux/namei.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "dblock.h"

static LIST_HEAD(dblock_devices);
static unsigned int dblock_ndevices;
static u32 dblock_next_handle_id = 1;

const struct blk_mq_ops dblock_mq_ops = {
	.queue_rq = dblock_queue_rq,
	.timeout = dblock_timeout,
};

static const struct block_device_operations dblock_bdev_ops = {
	.owner = THIS_MODULE,
};

/* ---- look-up and references ---------------------------------------- */

struct dblock_dev *dblock_find_by_id(u32 handle_id)
{
	struct dblock_dev *dev;

	lockdep_assert_held(&dblock_ctl_mutex);
	list_for_each_entry(dev, &dblock_devices, node)
		if (dev->handle_id == handle_id)
			return dev;
	return NULL;
}

struct dblock_dev *dblock_find_by_name(const char *name)
{
	struct dblock_dev *dev;

	lockdep_assert_held(&dblock_ctl_mutex);
	list_for_each_entry(dev, &dblock_devices, node)
		if (strcmp(dev->name, name) == 0)
			return dev;
	return NULL;
}

void dblock_get(struct dblock_dev *dev)
{
	kref_get(&dev->ref);
}

static void dblock_free(struct dblock_dev *dev)
{
	/* del_gendisk already detached the queue from the tag set. */
	if (dev->disk)
		put_disk(dev->disk);
	if (dev->tag_set_allocated)
		blk_mq_free_tag_set(&dev->tag_set);
	kfree(dev->cmds);
	kfree(dev);
}

static void dblock_release(struct kref *ref)
{
	dblock_free(container_of(ref, struct dblock_dev, ref));
}

void dblock_put(struct dblock_dev *dev)
{
	kref_put(&dev->ref, dblock_release);
}

/* ---- validation (the original's rules and error codes) ---------------- */

/* The name becomes /dev/NAME, /dev/NAME-ctl and /sys/block/NAME. */
static bool name_is_valid(const char *name)
{
	const char *c;

	if (!name[0] || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return false;
	for (c = name; *c; c++)
		if (*c == '/' || !isgraph(*c))
			return false;
	return true;
}

static bool path_exists(const char *prefix, const char *name, const char *suffix)
{
	char buf[64];
	struct path path;

	snprintf(buf, sizeof(buf), "%s%s%s", prefix, name, suffix);
	if (kern_path(buf, 0, &path))
		return false;
	path_put(&path);
	return true;
}

/* Another driver's disk or misc device of that name, or a stale node: the
 * original's "/dev/NAME exists" check, done before sysfs would complain. */
static bool name_is_taken(const char *name)
{
	return path_exists("/sys/block/", name, "") ||
	       path_exists("/sys/class/misc/", name, DBLOCK_CTL_SUFFIX) ||
	       path_exists("/dev/", name, "") || path_exists("/dev/", name, DBLOCK_CTL_SUFFIX);
}

static int validate(const struct dblock_create_args *a)
{
	if (a->block_size != DBLOCK_BLOCK_SIZE)
		return -EINVAL;
	if (a->blocks < DBLOCK_MIN_BLOCKS || a->blocks > DBLOCK_MAX_BLOCKS)
		return -ERANGE;
	if (a->timeout_seconds < DBLOCK_MIN_TIMEOUT_SECONDS ||
	    a->timeout_seconds > DBLOCK_MAX_TIMEOUT_SECONDS)
		return -ERANGE;
	if (a->queue_depth < 1 || a->queue_depth > DBLOCK_MAX_QUEUE_DEPTH)
		return -ERANGE;
	if (!name_is_valid(a->name))
		return -EINVAL;
	if (dblock_ndevices >= DBLOCK_MAX_DEVICES)
		return -EINVAL; /* sic: the original's code for "too many" */
	if (dblock_find_by_name(a->name) || name_is_taken(a->name))
		return -EEXIST;
	return 0;
}

static u32 new_handle_id(void)
{
	u32 id;

	do {
		id = dblock_next_handle_id++;
	} while (id == 0 || dblock_find_by_id(id));
	return id;
}

/* ---- create ----------------------------------------------------------- */

static struct dblock_dev *dblock_alloc(const struct dblock_create_args *a)
{
	struct dblock_dev *dev = kzalloc(sizeof(*dev), GFP_KERNEL);

	if (!dev)
		return NULL;
	dev->cmds = kcalloc(a->queue_depth, sizeof(*dev->cmds), GFP_KERNEL);
	if (!dev->cmds) {
		kfree(dev);
		return NULL;
	}
	kref_init(&dev->ref);
	INIT_LIST_HEAD(&dev->node);
	INIT_LIST_HEAD(&dev->pending);
	spin_lock_init(&dev->lock);
	init_waitqueue_head(&dev->wq);
	atomic_set(&dev->waiters, 0);
	strscpy(dev->name, a->name, sizeof(dev->name));
	snprintf(dev->ctl_name, sizeof(dev->ctl_name), "%s%s", a->name, DBLOCK_CTL_SUFFIX);
	dev->size = a->blocks * DBLOCK_BLOCK_SIZE;
	dev->timeout_seconds = a->timeout_seconds;
	dev->max_segments = a->max_segments;
	if (!dev->max_segments || dev->max_segments > DBLOCK_MAX_SEGMENTS)
		dev->max_segments = DBLOCK_MAX_SEGMENTS;
	dev->queue_depth = a->queue_depth;
	dev->features = a->features;
	return dev;
}

static int alloc_tag_set(struct dblock_dev *dev)
{
	struct blk_mq_tag_set *set = &dev->tag_set;
	int r;

	set->ops = &dblock_mq_ops;
	set->nr_hw_queues = 1; /* any server thread takes any request */
	set->queue_depth = dev->queue_depth;
	set->numa_node = NUMA_NO_NODE;
	set->cmd_size = sizeof(struct dblock_cmd);
	set->flags = BLK_MQ_F_SHOULD_MERGE | BLK_MQ_F_NO_SCHED_BY_DEFAULT;
	set->timeout = dev->timeout_seconds * HZ;
	set->driver_data = dev;
	r = blk_mq_alloc_tag_set(set);
	if (!r)
		dev->tag_set_allocated = true;
	return r;
}

static void set_limits(struct dblock_dev *dev, struct queue_limits *lim)
{
	/* A request's data fits the 1 MiB area after the op; the metadata
	 * describes it in 4 KiB blocks, at most max_segments of them. */
	lim->logical_block_size = DBLOCK_BLOCK_SIZE;
	lim->physical_block_size = DBLOCK_BLOCK_SIZE;
	lim->io_min = DBLOCK_BLOCK_SIZE;
	lim->max_hw_sectors = dev->max_segments * (DBLOCK_BLOCK_SIZE >> SECTOR_SHIFT);
	lim->max_segments = DBLOCK_MAX_SEGMENTS;
	lim->max_segment_size = UINT_MAX;
	lim->features = BLK_FEAT_IO_STAT;
	if (dev->features & DBLOCK_FEATURE_FLUSH)
		lim->features |= BLK_FEAT_WRITE_CACHE;
	if (dev->features & DBLOCK_FEATURE_FUA)
		lim->features |= BLK_FEAT_FUA;
	if (dev->features & DBLOCK_FEATURE_DISCARD) {
		lim->max_hw_discard_sectors = SZ_1G >> SECTOR_SHIFT;
		lim->discard_granularity = DBLOCK_BLOCK_SIZE;
		lim->max_discard_segments = 1;
	}
	if (dev->features & DBLOCK_FEATURE_WRITE_ZEROES)
		lim->max_write_zeroes_sectors = SZ_1G >> SECTOR_SHIFT;
}

static int alloc_disk(struct dblock_dev *dev)
{
	struct queue_limits lim = {};
	struct gendisk *disk;

	set_limits(dev, &lim);
	disk = blk_mq_alloc_disk(&dev->tag_set, &lim, dev);
	if (IS_ERR(disk))
		return PTR_ERR(disk);
	dev->disk = disk;
	disk->fops = &dblock_bdev_ops;
	disk->private_data = dev;
	/* major 0, minors 0: add_disk allocates a dynamic dev_t. */
	strscpy(disk->disk_name, dev->name, DISK_NAME_LEN);
	set_capacity(disk, dev->size >> SECTOR_SHIFT);
	if (dev->features & DBLOCK_FEATURE_READ_ONLY)
		set_disk_ro(disk, true);
	return 0;
}

static int register_ctl(struct dblock_dev *dev)
{
	int r;

	dev->ctl.minor = MISC_DYNAMIC_MINOR;
	dev->ctl.name = dev->ctl_name;
	dev->ctl.fops = &dblock_ctl_fops;
	dev->ctl.mode = 0600;
	r = misc_register(&dev->ctl);
	if (r)
		return r == -EBUSY ? -EEXIST : r;
	dev->ctl_registered = true;
	return 0;
}

static int add_the_disk(struct dblock_dev *dev)
{
	int r;

	/* No partition scan now: its reads would wait for a server that
	 * cannot attach before this ioctl returns.  partprobe works later. */
	set_bit(GD_SUPPRESS_PART_SCAN, &dev->disk->state);
	r = device_add_disk(NULL, dev->disk, dblock_disk_groups);
	clear_bit(GD_SUPPRESS_PART_SCAN, &dev->disk->state);
	if (r)
		return r;
	dev->disk_added = true;
	return 0;
}

/* Undo a create that failed half-way (nothing was served yet). */
static void dblock_unwind(struct dblock_dev *dev)
{
	if (dev->disk_added)
		del_gendisk(dev->disk);
	if (dev->ctl_registered)
		misc_deregister(&dev->ctl);
	dblock_put(dev);
}

int dblock_create(const struct dblock_create_args *args, u32 *ret_handle_id)
{
	struct dblock_dev *dev;
	int r;

	lockdep_assert_held(&dblock_ctl_mutex);
	r = validate(args);
	if (r)
		return r;
	dev = dblock_alloc(args);
	if (!dev)
		return -ENOMEM;
	dev->handle_id = new_handle_id();
	r = alloc_tag_set(dev);
	if (!r)
		r = alloc_disk(dev);
	if (!r)
		r = register_ctl(dev);
	if (!r)
		r = add_the_disk(dev);
	if (r) {
		pr_warn("dblock: cannot create %s: %d\n", args->name, r);
		dblock_unwind(dev);
		return r;
	}
	list_add_tail(&dev->node, &dblock_devices);
	dblock_ndevices++;
	*ret_handle_id = dev->handle_id;
	pr_info("dblock: created /dev/%s (handle %u, %llu bytes, timeout %u s, features 0x%x)\n",
		dev->name, dev->handle_id, dev->size, dev->timeout_seconds, dev->features);
	return 0;
}

/* ---- destroy ---------------------------------------------------------- */

int dblock_destroy(struct dblock_dev *dev, bool force)
{
	lockdep_assert_held(&dblock_ctl_mutex);
	if (!force && disk_openers(dev->disk) > 0)
		return -EBUSY;
	list_del_init(&dev->node);
	dblock_ndevices--;
	/* Fail pending I/O and wake every server thread of this device
	 * before del_gendisk, which waits for requests in flight. */
	dblock_kill(dev);
	misc_deregister(&dev->ctl);
	dev->ctl_registered = false;
	del_gendisk(dev->disk);
	pr_info("dblock: destroyed /dev/%s (handle %u%s)\n", dev->name, dev->handle_id,
		force ? ", forced" : "");
	dblock_put(dev);
	return 0;
}

int dblock_destroy_all(bool force)
{
	struct dblock_dev *dev, *next;
	int r = 0, err;

	lockdep_assert_held(&dblock_ctl_mutex);
	list_for_each_entry_safe(dev, next, &dblock_devices, node) {
		err = dblock_destroy(dev, force);
		if (err)
			r = err;
	}
	return r;
}

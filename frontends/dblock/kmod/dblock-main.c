// SPDX-License-Identifier: GPL-2.0-only
/*
 * dblock.ko: the control device /dev/dblockctl and the module's life.
 *
 * The control ioctls keep the original dblock ABI: raw ioctl numbers, a
 * 64-byte union read whole from userspace, the call's -errno also written
 * to the params' error field, and the same validation and error codes.
 * Two extended ioctls (_IOR/_IOWR encoded, so they cannot collide with the
 * raw numbers) report features and create devices that use them.
 */
#include <linux/capability.h>
#include <linux/fs.h>
#include <linux/module.h>
#include <linux/uaccess.h>

#include "dblock.h"

#define DBLOCK_MODULE_VERSION "1.0.0"

DEFINE_MUTEX(dblock_ctl_mutex);

unsigned int dblock_default_queue_depth = DBLOCK_DEFAULT_QUEUE_DEPTH;
module_param_named(queue_depth, dblock_default_queue_depth, uint, 0644);
MODULE_PARM_DESC(queue_depth, "requests in flight per device created with the original ioctl (1..1024, default 128)");

static void copy_name(char *dst, const unsigned char *src)
{
	memcpy(dst, src, DBLOCK_MAX_NAME_LENGTH);
	dst[DBLOCK_MAX_NAME_LENGTH] = '\0';
}

/* ---- create --------------------------------------------------------- */

static int create_locked(const struct dblock_create_args *args, u32 *ret_handle_id)
{
	int r;

	mutex_lock(&dblock_ctl_mutex);
	r = dblock_create(args, ret_handle_id);
	mutex_unlock(&dblock_ctl_mutex);
	return r;
}

/* The caller could not be told about a device it created: undo it. */
static void destroy_created(u32 handle_id)
{
	struct dblock_dev *dev;

	mutex_lock(&dblock_ctl_mutex);
	dev = dblock_find_by_id(handle_id);
	if (dev)
		dblock_destroy(dev, true);
	mutex_unlock(&dblock_ctl_mutex);
}

static int ioctl_create(void __user *uarg)
{
	union dblock_control_operation op;
	struct dblock_create_params *p = &op.create_params;
	struct dblock_create_args args = {};
	u32 handle_id = 0;
	int r;

	if (copy_from_user(&op, uarg, sizeof(op)))
		return -EFAULT;
	copy_name(args.name, p->device_name);
	args.block_size = p->kernel_block_size;
	args.blocks = p->number_of_blocks;
	args.timeout_seconds = p->device_timeout_seconds;
	args.max_segments = p->max_segments_per_request;
	args.queue_depth = READ_ONCE(dblock_default_queue_depth);
	r = create_locked(&args, &handle_id);
	if (!r)
		p->handle_id = handle_id;
	p->error = r;
	if (copy_to_user(uarg, p, sizeof(*p))) {
		if (!r)
			destroy_created(handle_id);
		return -EFAULT;
	}
	return r;
}

static int ioctl_create_ex(void __user *uarg)
{
	struct dblock_create_ex p;
	struct dblock_create_args args = {};
	u32 handle_id = 0;
	int r = 0;

	if (copy_from_user(&p, uarg, sizeof(p)))
		return -EFAULT;
	if (memchr_inv(p.reserved, 0, sizeof(p.reserved)))
		r = -EINVAL;
	copy_name(args.name, p.device_name);
	args.block_size = p.kernel_block_size;
	args.blocks = p.number_of_blocks;
	args.timeout_seconds = p.device_timeout_seconds;
	args.max_segments = p.max_segments_per_request;
	args.queue_depth = p.queue_depth ? p.queue_depth : READ_ONCE(dblock_default_queue_depth);
	/* Grant what we know; FUA only makes sense with a write cache. */
	args.features = p.features & DBLOCK_FEATURE__ALL;
	if (!(args.features & DBLOCK_FEATURE_FLUSH))
		args.features &= ~DBLOCK_FEATURE_FUA;
	if (!r)
		r = create_locked(&args, &handle_id);
	p.handle_id = r ? 0 : handle_id;
	p.features = r ? 0 : args.features;
	p.error = r;
	if (copy_to_user(uarg, &p, sizeof(p))) {
		if (!r)
			destroy_created(handle_id);
		return -EFAULT;
	}
	return r;
}

static int ioctl_get_features(void __user *uarg)
{
	struct dblock_features f = {
		.abi_version = DBLOCK_ABI_VERSION,
		.features = DBLOCK_FEATURE__ALL,
		.max_queue_depth = DBLOCK_MAX_QUEUE_DEPTH,
	};

	return copy_to_user(uarg, &f, sizeof(f)) ? -EFAULT : 0;
}

/* ---- destroy and look-up -------------------------------------------- */

static int destroy_by_id(u32 handle_id, bool force)
{
	struct dblock_dev *dev;
	int r = -ENOENT;

	mutex_lock(&dblock_ctl_mutex);
	dev = dblock_find_by_id(handle_id);
	if (dev)
		r = dblock_destroy(dev, force);
	mutex_unlock(&dblock_ctl_mutex);
	return r;
}

static int ioctl_destroy_by_id(void __user *uarg)
{
	union dblock_control_operation op;
	struct dblock_destroy_by_id_params *p = &op.destroy_params_by_id;
	int r;

	if (copy_from_user(&op, uarg, sizeof(op)))
		return -EFAULT;
	r = destroy_by_id(p->handle_id, p->force != 0);
	p->error = r;
	if (copy_to_user(uarg, p, sizeof(*p)))
		return -EFAULT;
	return r;
}

/* The handle of device @name: 0 if none (handle ids are never 0). */
static int handle_of(const char *name, u32 *ret_handle_id)
{
	struct dblock_dev *dev;

	if (!name[0])
		return -EINVAL;
	mutex_lock(&dblock_ctl_mutex);
	dev = dblock_find_by_name(name);
	*ret_handle_id = dev ? dev->handle_id : 0;
	mutex_unlock(&dblock_ctl_mutex);
	return *ret_handle_id ? 0 : -ENOENT;
}

static int ioctl_destroy_by_name(void __user *uarg)
{
	union dblock_control_operation op;
	struct dblock_destroy_by_name_params *p = &op.destroy_params_by_name;
	char name[DBLOCK_MAX_NAME_LENGTH + 1];
	u32 handle_id;
	int r;

	if (copy_from_user(&op, uarg, sizeof(op)))
		return -EFAULT;
	copy_name(name, p->device_name);
	r = handle_of(name, &handle_id);
	if (!r)
		r = destroy_by_id(handle_id, p->force != 0);
	p->error = r;
	if (copy_to_user(uarg, p, sizeof(*p)))
		return -EFAULT;
	return r;
}

static int ioctl_destroy_all(void __user *uarg)
{
	union dblock_control_operation op;
	int r;

	if (copy_from_user(&op, uarg, sizeof(op)))
		return -EFAULT;
	mutex_lock(&dblock_ctl_mutex);
	r = dblock_destroy_all(op.destroy_params_all.force != 0);
	mutex_unlock(&dblock_ctl_mutex);
	return r;
}

static int ioctl_get_handle_id_by_name(void __user *uarg)
{
	union dblock_control_operation op;
	struct dblock_get_handle_id_by_name_params *p = &op.get_handle_id_params_by_name;
	char name[DBLOCK_MAX_NAME_LENGTH + 1];
	u32 handle_id;
	int r;

	if (copy_from_user(&op, uarg, sizeof(op)))
		return -EFAULT;
	copy_name(name, p->device_name);
	r = handle_of(name, &handle_id);
	if (!r)
		p->handle_id = handle_id;
	p->error = r;
	if (copy_to_user(uarg, p, sizeof(*p)))
		return -EFAULT;
	return r;
}

/* ---- the control device ---------------------------------------------- */

static bool control_needs_admin(unsigned int cmd)
{
	return cmd != DBLOCK_IOCTL_CONTROL_PING && cmd != DBLOCK_IOCTL_CONTROL_STATUS &&
	       cmd != DBLOCK_IOCTL_CONTROL_GET_FEATURES;
}

static long control_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	void __user *uarg = (void __user *)arg;

	if (control_needs_admin(cmd) && !capable(CAP_SYS_ADMIN))
		return -EPERM;
	switch (cmd) {
	case DBLOCK_IOCTL_CONTROL_PING:
		return 0;
	case DBLOCK_IOCTL_CONTROL_STATUS:
		return -ENODATA;
	case DBLOCK_IOCTL_CONTROL_CREATE_DEVICE:
		return ioctl_create(uarg);
	case DBLOCK_IOCTL_CONTROL_DESTROY_DEVICE_BY_ID:
		return ioctl_destroy_by_id(uarg);
	case DBLOCK_IOCTL_CONTROL_DESTROY_DEVICE_BY_NAME:
		return ioctl_destroy_by_name(uarg);
	case DBLOCK_IOCTL_CONTROL_DESTROY_ALL_DEVICES:
		return ioctl_destroy_all(uarg);
	case DBLOCK_IOCTL_CONTROL_GET_HANDLE_ID_BY_NAME:
		return ioctl_get_handle_id_by_name(uarg);
	case DBLOCK_IOCTL_CONTROL_GET_FEATURES:
		return ioctl_get_features(uarg);
	case DBLOCK_IOCTL_CONTROL_CREATE_DEVICE_EX:
		return ioctl_create_ex(uarg);
	}
	return -EINVAL; /* as the original: not ENOTTY */
}

static const struct file_operations control_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = control_ioctl,
};

static struct miscdevice control_device = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "dblockctl",
	.fops = &control_fops,
	.mode = 0600,
};

static void check_abi_sizes(void)
{
	BUILD_BUG_ON(sizeof(struct dblock_operation) != DBLOCK_OPERATION_SIZE);
	BUILD_BUG_ON(offsetof(struct dblock_operation, header.size) != 16);
	BUILD_BUG_ON(offsetof(struct dblock_operation, metadata) != 48);
	BUILD_BUG_ON(offsetof(struct dblock_operation, error) != 4144);
	BUILD_BUG_ON(sizeof(union dblock_control_operation) != DBLOCK_CONTROL_OPERATION_SIZE);
	BUILD_BUG_ON(offsetof(struct dblock_create_params, number_of_blocks) != 40);
	BUILD_BUG_ON(offsetof(struct dblock_create_params, handle_id) != 56);
	BUILD_BUG_ON(sizeof(struct dblock_create_ex) != DBLOCK_CREATE_EX_SIZE);
	BUILD_BUG_ON(DBLOCK_MAX_QUEUE_DEPTH > (1u << DBLOCK_TAG_BITS));
}

static int __init dblock_init(void)
{
	int r;

	check_abi_sizes();
	if (dblock_default_queue_depth < 1 || dblock_default_queue_depth > DBLOCK_MAX_QUEUE_DEPTH) {
		pr_err("dblock: queue_depth=%u is outside 1..%u\n", dblock_default_queue_depth,
		       DBLOCK_MAX_QUEUE_DEPTH);
		return -EINVAL;
	}
	r = misc_register(&control_device);
	if (r) {
		pr_err("dblock: cannot register /dev/dblockctl: %d\n", r);
		return r;
	}
	pr_info("dblock: version %s loaded, ABI compatible with dblock, extensions 0x%x\n",
		DBLOCK_MODULE_VERSION, DBLOCK_FEATURE__ALL);
	return 0;
}

static void __exit dblock_exit(void)
{
	misc_deregister(&control_device);
	mutex_lock(&dblock_ctl_mutex);
	dblock_destroy_all(true);
	mutex_unlock(&dblock_ctl_mutex);
	pr_info("dblock: unloaded\n");
}

module_init(dblock_init);
module_exit(dblock_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("block devices served from userspace, dblock ABI compatible (blkservd)");
MODULE_AUTHOR("the blkservd authors");
MODULE_VERSION(DBLOCK_MODULE_VERSION);

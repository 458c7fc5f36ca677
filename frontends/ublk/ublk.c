/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ublk: serve the device as /dev/ublkbN through the kernel's ublk_drv.
 *
 * start: open /dev/ublk-control, probe GET_FEATURES, then either recover
 * the kernel device a crashed daemon left behind (found through the state
 * file under the runtime directory) or ADD_DEV + SET_PARAMS a new one; start
 * one thread per queue, each submitting FETCH_REQ for every tag; finally
 * START_DEV (or END_USER_RECOVERY) from this, the main thread, because the
 * driver only answers it once every tag of every queue has its FETCH.
 *
 * stop: STOP_DEV makes the driver abort every outstanding command; the
 * queue threads exit; the rings, mappings and the char device are closed,
 * and only then DEL_DEV, which waits until no reference is left.  With
 * BLKSERV_STOP_KEEP_DEVICE the device is left to the next daemon instead.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blockdev.h"
#include "cleanup.h"
#include "io-util.h"
#include "ublk.h"

/* Commands that wait in the kernel (START_DEV, END_USER_RECOVERY, STOP_DEV,
 * DEL_DEV) get this long before we give up on them. */
#define CTRL_WAIT_MS 30000
/* How long START_USER_RECOVERY is retried while the dead daemon's
 * references to the device are still being released. */
#define RECOVERY_WAIT_MS 30000
#define RETRY_SLEEP_MS 100
/* DEL_DEV of an idle device: the kernel frees it at once, unless someone
 * (udev, blkid) still has it open for a moment. */
#define DEL_WAIT_MS 3000
/* Commands that return at once (DEL_DEV_ASYNC). */
#define CTRL_QUICK_MS 5000
/* DEL_DEV of a device in use, on a kernel without DEL_DEV_ASYNC. */
#define OLD_DEL_WAIT_MS 500

static const struct blkserv_option ublk_options[] = {
	{ "queues", BLKSERV_OPT_UINT, NULL, "queues, one thread each, 1..64 (default: one per CPU, at most 16)", 0 },
	{ "depth", BLKSERV_OPT_UINT, "128", "requests in flight per queue, 1..4096", 0 },
	{ "max_io_size", BLKSERV_OPT_SIZE, "512K", "largest request, 4K..32M; each tag has a buffer this big", 0 },
	{ "id", BLKSERV_OPT_UINT, NULL, "device number N of /dev/ublkbN (default: the kernel picks)", 0 },
	{ "recovery", BLKSERV_OPT_BOOL, "true", "keep the device through a daemon crash and recover it on restart", 0 },
	BLKSERV_OPTION_END,
};

/* ---- open / close -------------------------------------------------- */

static int ublk_open(struct blkserv_device *dev, const struct blkserv_config *cfg, void **ret_handle)
{
	struct bs_ublk_params params;
	struct ublk *u;
	int r;

	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->dev = dev;
	u->cdev_fd = -1;
	u->ctrl.fd = -1;
	u->size = blkserv_device_size(dev);
	u->block_size = blkserv_device_block_size(dev);
	u->caps = blkserv_device_caps(dev);
	r = ublk_options_parse(dev, cfg, &u->opt);
	if (r >= 0 && ublk_build_params(u->size, u->block_size, u->caps, u->opt.max_io_size, &params) < 0) {
		blkserv_error(dev,
			      "cannot serve %llu bytes with block size %u (block size 512..page size, "
			      "a power of two; max_io_size at least one block)",
			      (unsigned long long)u->size, u->block_size);
		r = -EINVAL;
	}
	if (r >= 0)
		r = ublk_state_path(blkserv_runtime_dir(), blkserv_device_name(dev), &u->state_path);
	if (r >= 0 && sem_init(&u->ready, 0, 0) < 0)
		r = -errno;
	if (r < 0) {
		free(u->state_path);
		free(u);
		return r;
	}
	*ret_handle = u;
	return 0;
}

static void ublk_close(void *handle)
{
	struct ublk *u = handle;

	ublk_ctrl_close(&u->ctrl);
	sem_destroy(&u->ready);
	free(u->queues);
	free(u->state_path);
	free(u);
}

/* ---- state file ----------------------------------------------------- */

static int save_state(struct ublk *u)
{
	struct ublk_state s = {
		.dev_id = u->info.dev_id,
		.queues = u->info.nr_hw_queues,
		.depth = u->info.queue_depth,
		.max_io_size = u->info.max_io_buf_bytes,
		.size = u->size,
		.block_size = u->block_size,
		.pid = (int32_t)getpid(),
	};
	int r = ublk_state_write(u->state_path, &s);

	if (r < 0)
		return blkserv_error_errno(u->dev, r,
					   "cannot write the state file %s: %m (the runtime directory must be "
					   "writable: a restarted daemon finds its devices there)",
					   u->state_path);
	return r;
}

static void remove_state(struct ublk *u)
{
	if (unlink(u->state_path) < 0 && errno != ENOENT)
		blkserv_warning(u->dev, "cannot remove %s: %m", u->state_path);
}

/* ---- kernel device -------------------------------------------------- */

static int open_cdev(struct ublk *u)
{
	char path[64];

	snprintf(path, sizeof(path), "/dev/ublkc%u", u->info.dev_id);
	/* udev may still be creating the node, or have it open briefly. */
	for (int i = 0; i < 50; i++) {
		u->cdev_fd = open(path, O_RDWR | O_CLOEXEC);
		if (u->cdev_fd >= 0)
			return 0;
		if (errno != ENOENT && errno != EBUSY)
			break;
		sleep_ms(RETRY_SLEEP_MS);
	}
	blkserv_error(u->dev, "cannot open %s: %m", path);
	return -errno;
}

static int alloc_queues(struct ublk *u)
{
	free(u->queues);
	u->nr_queues = u->info.nr_hw_queues;
	u->opt.queues = u->nr_queues;
	u->opt.depth = u->info.queue_depth;
	u->opt.max_io_size = u->info.max_io_buf_bytes;
	u->queues = calloc(u->nr_queues, sizeof(*u->queues));
	return u->queues ? 0 : -ENOMEM;
}

/* Queue threads up, then @cmd_op (START_DEV or END_USER_RECOVERY) with our pid. */
static int serve_and_go_live(struct ublk *u, uint32_t cmd_op, const char *what)
{
	int r;

	r = alloc_queues(u);
	if (r >= 0)
		r = open_cdev(u);
	if (r >= 0)
		r = ublk_queues_start(u);
	if (r < 0)
		return r;
	r = ublk_ctrl_simple(&u->ctrl, cmd_op, u->info.dev_id, (uint64_t)getpid(), CTRL_WAIT_MS);
	if (r < 0)
		return blkserv_error_errno(u->dev, r, "%s of device %u failed: %m", what, u->info.dev_id);
	u->live = true;
	snprintf(u->bdev_path, sizeof(u->bdev_path), "/dev/ublkb%u", u->info.dev_id);
	blkserv_device_set_kernel_name(u->dev, u->bdev_path);
	return 0;
}

static void release_queues(struct ublk *u)
{
	ublk_queues_stop(u);
	if (u->live && u->queues)
		ublk_queues_log_counts(u);
	u->cdev_fd = safe_close(u->cdev_fd);
}

/* Is /dev/ublkb@dev_id mounted, or open anywhere (md, dm, a program)? */
static bool bdev_in_use(uint32_t dev_id)
{
	char path[64];

	snprintf(path, sizeof(path), "/dev/ublkb%u", dev_id);
	return blockdev_in_use(path) > 0;
}

/*
 * Delete the kernel device; every reference of ours must be gone (P-U8).
 * DEL_DEV waits until the kernel frees the device, and a mounted file
 * system holds it until it is unmounted: for a device in use that is
 * forever, so it is deleted without waiting (DEL_DEV_ASYNC), and an idle
 * one gets DEL_WAIT_MS.  @in_use: what the caller found before STOP_DEV.
 */
static void delete_device(struct ublk *u, uint32_t dev_id, bool in_use)
{
	int r = -ETIME;

	if (!in_use)
		r = ublk_ctrl_simple(&u->ctrl, UBLK_U_CMD_DEL_DEV, dev_id, 0, DEL_WAIT_MS);
	if (r == -ETIME) {
		if (!in_use)
			blkserv_warning(u->dev,
					"device %u is still referenced %d s after DEL_DEV: leaving "
					"the kernel to free it when its last user lets go",
					dev_id, DEL_WAIT_MS / 1000);
		r = ublk_ctrl_simple(&u->ctrl, UBLK_U_CMD_DEL_DEV_ASYNC, dev_id, 0, CTRL_QUICK_MS);
		if (r == -EOPNOTSUPP || r == -EINVAL) {
			/* A kernel before DEL_DEV_ASYNC (6.9): DEL_DEV removes
			 * the device first, then waits; stop waiting soon. */
			r = ublk_ctrl_simple(&u->ctrl, UBLK_U_CMD_DEL_DEV, dev_id, 0, OLD_DEL_WAIT_MS);
			if (r == -ETIME)
				r = 0;
		}
	}
	if (r < 0 && r != -ENODEV)
		(void)blkserv_error_errno(u->dev, r, "cannot delete device %u: %m", dev_id);
}

/* STOP_DEV (a no-op on a device that is not live), then DEL_DEV. */
static void stop_and_delete(struct ublk *u, uint32_t dev_id)
{
	bool in_use = bdev_in_use(dev_id);
	int r;

	if (in_use)
		blkserv_warning(u->dev,
				"/dev/ublkb%u is in use (mounted or open): deleting device %u "
				"anyway; its users get I/O errors and the kernel frees it when the last "
				"one lets go",
				dev_id, dev_id);
	r = ublk_ctrl_simple(&u->ctrl, UBLK_U_CMD_STOP_DEV, dev_id, 0, CTRL_WAIT_MS);
	if (r < 0 && r != -ENODEV)
		(void)blkserv_warning_errno(u->dev, r, "STOP_DEV of device %u: %m", dev_id);
	delete_device(u, dev_id, in_use);
}

/* ---- a new device --------------------------------------------------- */

static int add_device(struct ublk *u)
{
	char flags[256];
	uint64_t wanted = ublk_wanted_flags(&u->opt);
	int r;

	u->info = (struct bs_ublk_dev_info){
		.nr_hw_queues = (uint16_t)u->opt.queues,
		.queue_depth = (uint16_t)u->opt.depth,
		.max_io_buf_bytes = u->opt.max_io_size,
		.dev_id = u->opt.dev_id,
		.ublksrv_pid = (int32_t)getpid(),
		.flags = wanted,
		.ublksrv_flags = UBLK_BLKSERV_MARK,
	};
	r = ublk_ctrl_add_dev(&u->ctrl, &u->info);
	if (r == -EEXIST)
		return blkserv_error_errno(u->dev, r, "ADD_DEV: device id %u is taken (option 'id')", u->opt.dev_id);
	if (r < 0)
		return blkserv_error_errno(u->dev, r, "ADD_DEV failed: %m%s",
					   r == -EPERM ? " (needs CAP_SYS_ADMIN)" : "");
	u->have_dev = true;
	ublk_flags_string(u->info.flags, flags, sizeof(flags));
	blkserv_info(u->dev, "added device %u: %u queue(s) of depth %u, max I/O %u bytes, flags %s", u->info.dev_id,
		     u->info.nr_hw_queues, u->info.queue_depth, u->info.max_io_buf_bytes, flags);
	if ((u->info.flags & wanted) != wanted) {
		ublk_flags_string(wanted & ~u->info.flags, flags, sizeof(flags));
		return blkserv_error_errno(u->dev, -EOPNOTSUPP, "the kernel lacks feature(s) %s%s", flags,
					   u->opt.recovery ? " (set recovery = false to run without)" : "");
	}
	if (u->info.nr_hw_queues < u->opt.queues)
		blkserv_notice(u->dev, "the kernel limits device %u to %u queue(s) (one per CPU)", u->info.dev_id,
			       u->info.nr_hw_queues);
	return 0;
}

static int set_params(struct ublk *u)
{
	struct bs_ublk_params p;
	int r = ublk_build_params(u->size, u->block_size, u->caps, u->info.max_io_buf_bytes, &p);

	if (r >= 0)
		r = ublk_ctrl_set_params(&u->ctrl, u->info.dev_id, &p);
	if (r < 0)
		return blkserv_error_errno(u->dev, r, "SET_PARAMS of device %u failed: %m", u->info.dev_id);
	return r;
}

/* Undo a failed fresh start: nothing is left behind. */
static void undo_fresh_start(struct ublk *u)
{
	uint32_t dev_id = u->info.dev_id;

	release_queues(u);
	if (u->have_dev)
		stop_and_delete(u, dev_id);
	u->have_dev = u->live = false;
	remove_state(u);
}

static int fresh_start(struct ublk *u)
{
	int r;

	r = add_device(u);
	if (r >= 0)
		r = set_params(u);
	if (r >= 0)
		r = save_state(u);
	if (r >= 0)
		r = serve_and_go_live(u, UBLK_U_CMD_START_DEV, "START_DEV");
	if (r < 0)
		undo_fresh_start(u);
	return r;
}

/* ---- recovery ------------------------------------------------------- */

static bool pid_alive(pid_t pid)
{
	return pid > 0 && pid != getpid() && (kill(pid, 0) == 0 || errno == EPERM);
}

/*
 * A device whose daemon died stays LIVE until the kernel has quiesced it, in
 * a work item that holds the device's mutex for as long as the block layer
 * takes (seen: more than 20 s under load).  GET_PARAMS and
 * START_USER_RECOVERY take that mutex and would wait for it in the kernel,
 * unkillable (a hung task); GET_DEV_INFO does not, so ask it until the
 * device is no longer LIVE.  After RECOVERY_WAIT_MS give up with an error
 * rather than send one of those: a quiesce that takes that long waits for a
 * request that never ends, and the command would hang this daemon with it.
 */
static int wait_while_quiescing(struct ublk *u, uint32_t dev_id, struct bs_ublk_dev_info *info)
{
	int r;

	for (int waited = 0; info->state == UBLK_S_DEV_LIVE && !pid_alive(info->ublksrv_pid);
	     waited += RETRY_SLEEP_MS) {
		if (waited >= RECOVERY_WAIT_MS) {
			blkserv_error(u->dev,
				      "device %u is still LIVE %d s after its daemon (pid %d) "
				      "ended: the kernel cannot quiesce it (a request of the old daemon "
				      "never ended; see the kernel log); not recovering it, since the "
				      "recovery commands would wait for it forever",
				      dev_id, RECOVERY_WAIT_MS / 1000, info->ublksrv_pid);
			return -ETIMEDOUT;
		}
		if (waited == 0)
			blkserv_info(u->dev,
				     "device %u: waiting for the kernel to quiesce it (its daemon, "
				     "pid %d, is gone)",
				     dev_id, info->ublksrv_pid);
		sleep_ms(RETRY_SLEEP_MS);
		r = ublk_ctrl_get_dev_info(&u->ctrl, dev_id, info);
		if (r < 0)
			return r;
	}
	return 0;
}

/* The device a previous daemon recorded; *ret_fits: its geometry is ours. */
static int check_old_device(struct ublk *u, const struct ublk_state *st, struct bs_ublk_dev_info *info, bool *ret_fits)
{
	struct bs_ublk_params p;
	int r;

	r = ublk_ctrl_get_dev_info(&u->ctrl, st->dev_id, info);
	if (r < 0)
		return r;
	if (info->ublksrv_flags != UBLK_BLKSERV_MARK)
		return -ENODEV; /* the id was reused by someone else */
	r = wait_while_quiescing(u, st->dev_id, info);
	if (r < 0)
		return r;
	r = ublk_ctrl_get_params(&u->ctrl, st->dev_id, &p);
	if (r < 0)
		return r;
	*ret_fits = p.basic.dev_sectors == u->size >> 9 && (1u << p.basic.logical_bs_shift) == u->block_size;
	if (!*ret_fits && u->opt.recovery && info->state != UBLK_S_DEV_DEAD)
		blkserv_error(u->dev,
			      "device %u of the previous daemon has %llu bytes with block size %u, "
			      "the config says %llu with %u: it cannot be recovered with another geometry; "
			      "restore the config, or set recovery = false once to delete it",
			      st->dev_id, (unsigned long long)p.basic.dev_sectors << 9, 1u << p.basic.logical_bs_shift,
			      (unsigned long long)u->size, u->block_size);
	return 0;
}

static int start_user_recovery(struct ublk *u)
{
	bool logged = false;
	int r;

	for (int waited = 0;; waited += RETRY_SLEEP_MS) {
		r = ublk_ctrl_simple(&u->ctrl, UBLK_U_CMD_START_USER_RECOVERY, u->info.dev_id, 0, CTRL_WAIT_MS);
		if (r != -EBUSY || waited >= RECOVERY_WAIT_MS)
			break;
		if (!logged)
			blkserv_info(u->dev, "device %u: waiting for the old daemon's references to go",
				     u->info.dev_id);
		logged = true;
		sleep_ms(RETRY_SLEEP_MS);
	}
	if (r < 0)
		return blkserv_error_errno(u->dev, r, "START_USER_RECOVERY of device %u failed: %m", u->info.dev_id);
	return r;
}

static int recover(struct ublk *u, const struct bs_ublk_dev_info *info)
{
	int r;

	u->info = *info;
	if (info->nr_hw_queues != u->opt.queues || info->queue_depth != u->opt.depth ||
	    info->max_io_buf_bytes != u->opt.max_io_size)
		blkserv_notice(u->dev,
			       "recovering device %u with its own %u queue(s) of depth %u and "
			       "max I/O %u bytes (the config's values apply to a new device)",
			       info->dev_id, info->nr_hw_queues, info->queue_depth, info->max_io_buf_bytes);
	r = start_user_recovery(u);
	if (r >= 0)
		r = save_state(u);
	if (r >= 0)
		r = serve_and_go_live(u, UBLK_U_CMD_END_USER_RECOVERY, "END_USER_RECOVERY");
	if (r < 0) {
		/* Leave the device quiesced: its queued I/O waits for a daemon
		 * that can recover it. */
		release_queues(u);
		u->live = false;
		return r;
	}
	u->have_dev = true;
	blkserv_notice(u->dev, "recovered %s from the previous daemon", u->bdev_path);
	return 1;
}

/* What to do with the device of @st: 1 recovered, 0 start fresh, <0 fail. */
static int adopt_old_device(struct ublk *u, const struct ublk_state *st)
{
	struct bs_ublk_dev_info info;
	bool fits = false;
	int r = check_old_device(u, st, &info, &fits);

	if (r == -ENODEV) {
		blkserv_info(u->dev, "device %u of the state file is gone: starting afresh", st->dev_id);
		remove_state(u);
		return 0;
	}
	if (r == -ETIMEDOUT)
		return r; /* logged by wait_while_quiescing */
	if (r < 0)
		return blkserv_error_errno(u->dev, r, "cannot query device %u of the state file %s: %m", st->dev_id,
					   u->state_path);
	if (info.state == UBLK_S_DEV_LIVE && pid_alive(info.ublksrv_pid))
		return blkserv_error_errno(u->dev, -EBUSY, "device %u is served by a running process (pid %d)",
					   info.dev_id, info.ublksrv_pid);
	if (info.state != UBLK_S_DEV_DEAD && blkserv_device_data_fresh(u->dev)) {
		/* Resuming would serve other data under a file system that
		 * caches the old one: corruption.  A new device is safe. */
		blkserv_error(u->dev,
			      "the backend's data is new (the previous daemon's was not handed "
			      "over): device %u of the previous daemon (pid %d) must not be resumed with it. "
			      "Deleting it and starting a new device; whatever had it mounted or open gets "
			      "I/O errors and must be unmounted",
			      info.dev_id, st->pid);
		stop_and_delete(u, info.dev_id);
		remove_state(u);
		return 0;
	}
	if (info.state == UBLK_S_DEV_DEAD || !u->opt.recovery || !(info.flags & UBLK_F_USER_RECOVERY)) {
		blkserv_notice(u->dev, "device %u of the previous daemon is %s%s: deleting it", info.dev_id,
			       ublk_state_name(info.state), u->opt.recovery ? "" : " and recovery is off");
		stop_and_delete(u, info.dev_id);
		remove_state(u);
		return 0;
	}
	if (!fits)
		return -EEXIST; /* logged by check_old_device */
	blkserv_notice(u->dev, "device %u of the previous daemon (pid %d) is %s: recovering it", info.dev_id, st->pid,
		       ublk_state_name(info.state));
	return recover(u, &info);
}

static int try_recover(struct ublk *u)
{
	struct ublk_state st;
	int r = ublk_state_read(u->state_path, &st);

	if (r == -ENOENT)
		return 0;
	if (r < 0) {
		(void)blkserv_warning_errno(u->dev, r, "state file %s is unreadable (%m): ignoring it", u->state_path);
		remove_state(u);
		return 0;
	}
	return adopt_old_device(u, &st);
}

/* ---- start / stop --------------------------------------------------- */

static int probe_features(struct ublk *u)
{
	char flags[256];
	int r = ublk_ctrl_get_features(&u->ctrl, &u->features);

	if (r == -EOPNOTSUPP || r == -EINVAL)
		return blkserv_error_errno(u->dev, -EOPNOTSUPP,
					   "the kernel does not know GET_FEATURES or "
					   "ioctl-encoded commands: the ublk frontend needs Linux 6.5 or later");
	if (r < 0)
		return blkserv_error_errno(u->dev, r, "GET_FEATURES failed: %m%s",
					   r == -EPERM ? " (needs CAP_SYS_ADMIN)" : "");
	ublk_flags_string(u->features, flags, sizeof(flags));
	blkserv_info(u->dev, "ublk_drv features: %s", flags);
	if (u->opt.recovery && !(u->features & UBLK_F_USER_RECOVERY_REISSUE))
		return blkserv_error_errno(u->dev, -EOPNOTSUPP,
					   "the kernel lacks USER_RECOVERY_REISSUE: set recovery = false");
	return 0;
}

static int ublk_start(void *handle)
{
	struct ublk *u = handle;
	int r;

	r = ublk_ctrl_open(u->dev, &u->ctrl);
	if (r >= 0)
		r = probe_features(u);
	if (r >= 0)
		r = try_recover(u);
	if (r == 0)
		r = fresh_start(u);
	if (r < 0) {
		ublk_ctrl_close(&u->ctrl);
		return r;
	}
	return 0;
}

static void ublk_stop(void *handle, uint32_t flags)
{
	struct ublk *u = handle;
	uint32_t dev_id = u->info.dev_id;

	if (!u->have_dev) {
		release_queues(u);
		return;
	}
	if ((flags & BLKSERV_STOP_KEEP_DEVICE) && u->opt.recovery) {
		/* Closing our rings makes the driver quiesce the device; its
		 * I/O waits for the next daemon's END_USER_RECOVERY.  Nothing
		 * here waits for the kernel. */
		release_queues(u);
		blkserv_notice(u->dev, "left %s for the next daemon to recover (device %u, state file %s)",
			       u->bdev_path, dev_id, u->state_path);
	} else {
		bool in_use = bdev_in_use(dev_id);
		int r;

		if (flags & BLKSERV_STOP_KEEP_DEVICE)
			blkserv_notice(u->dev,
				       "recovery = false: %s cannot be kept for the next daemon: "
				       "removing it",
				       u->bdev_path);
		if (in_use)
			blkserv_warning(u->dev,
					"%s is in use (mounted or open): removing it anyway; its "
					"users get I/O errors, and the kernel frees device %u when the last "
					"one lets go",
					u->bdev_path, dev_id);
		else
			blkserv_info(u->dev, "removing %s (device %u)", u->bdev_path, dev_id);
		/* STOP_DEV removes the disk, writing back what a mounted
		 * file system has cached while our threads still serve. */
		r = ublk_ctrl_simple(&u->ctrl, UBLK_U_CMD_STOP_DEV, dev_id, 0, CTRL_WAIT_MS);
		if (r < 0 && r != -ENODEV)
			(void)blkserv_warning_errno(u->dev, r, "STOP_DEV of device %u: %m", dev_id);
		/* The driver aborted every command: the threads leave. */
		release_queues(u);
		delete_device(u, dev_id, in_use);
		remove_state(u);
	}
	u->have_dev = u->live = false;
	ublk_ctrl_close(&u->ctrl);
}

/* ---- health --------------------------------------------------------- */

static int ublk_check_health(void *handle)
{
	struct ublk *u = handle;

	return u->live ? ublk_queues_health(u) : 0;
}

static int ublk_check_idle(void *handle)
{
	struct ublk *u = handle;

	if (!u->live)
		return 0;
	return bdev_in_use(u->info.dev_id) ? -EBUSY : 0;
}

static struct blkserv_frontend ublk_frontend = {
	.name = "ublk",
	.description = "Linux ublk (io_uring) block device /dev/ublkbN, with crash recovery",
	.options = ublk_options,
	.open = ublk_open,
	.start = ublk_start,
	.stop = ublk_stop,
	.close = ublk_close,
	.check_health = ublk_check_health,
	.check_idle = ublk_check_idle,
	.option_checks = ublk_option_checks,
	.validate = ublk_validate,
};

BLKSERV_REGISTER_FRONTEND(ublk_frontend)

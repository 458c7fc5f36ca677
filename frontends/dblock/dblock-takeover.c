/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Taking over the kernel device a previous daemon left: after a crash
 * (its -ctl files were closed, the module put their unanswered requests
 * back on the queue) or a stop that kept the device (its threads detached).
 * The I/O waiting there is served by our threads if they come within the
 * device's timeout; a mounted file system sees no error.
 *
 * The state file says which device the previous daemon made; before
 * serving it we check that it is still that device (handle id), that it is
 * what the config describes (size, block size, features), that no one
 * serves it, and that the backend still has the data the device showed
 * (blkserv_device_data_fresh): else resuming would serve other data under
 * a file system that caches the old, so the old device is removed instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cleanup.h"
#include "dblock.h"
#include "parse.h"

static bool pid_alive(pid_t pid)
{
	return pid > 0 && pid != getpid() && (kill(pid, 0) == 0 || errno == EPERM);
}

/* /sys/block/NAME/@attr as a number. */
static int read_sysfs(const char *name, const char *attr, uint64_t *ret)
{
	char path[128];

	snprintf(path, sizeof(path), "/sys/block/%s/%s", name, attr);
	return parse_uint_file(path, ret);
}

/* "flush fua discard" (sysfs dblock/features) as DBLOCK_FEATURE_* bits. */
static int read_features(const char *name, uint32_t *ret)
{
	static const char *const names[] = { "flush", "fua", "discard", "write_zeroes", "read_only" };
	char path[128], buf[128];
	_cleanup_close_ int fd = -1;
	ssize_t n;

	snprintf(path, sizeof(path), "/sys/block/%s/dblock/features", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno; /* not our module: the original has no sysfs */
	n = read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	*ret = 0;
	for (char *save = NULL, *w = strtok_r(buf, " \n", &save); w; w = strtok_r(NULL, " \n", &save))
		for (unsigned i = 0; i < ELEMENTSOF(names); i++)
			if (strcmp(w, names[i]) == 0)
				*ret |= 1u << i;
	return 0;
}

int dblock_handle_by_name(struct dblock *d, const char *name, uint32_t *ret)
{
	union dblock_control_operation op;
	struct dblock_get_handle_id_by_name_params *p = &op.get_handle_id_params_by_name;

	memset(&op, 0, sizeof(op));
	memcpy(p->device_name, name, strnlen(name, DBLOCK_MAX_NAME_LENGTH));
	if (ioctl(d->ctl_fd, DBLOCK_IOCTL_CONTROL_GET_HANDLE_ID_BY_NAME, &op) < 0)
		return -errno;
	*ret = p->handle_id;
	return 0;
}

int dblock_save_state(struct dblock *d)
{
	struct dblock_state s = {
		.handle_id = d->handle_id,
		.size = d->size,
		.block_size = DBLOCK_BLOCK_SIZE,
		.features = d->features,
		.pid = (int32_t)getpid(),
	};
	int r;

	snprintf(s.name, sizeof(s.name), "%s", d->opt.name);
	r = dblock_state_write(d->state_path, &s);
	if (r < 0)
		return blkserv_error_errno(d->dev, r,
					   "cannot write the state file %s: %m (the runtime directory must be "
					   "writable: the next daemon finds /dev/%s there)",
					   d->state_path, d->opt.name);
	return r;
}

void dblock_remove_state(struct dblock *d)
{
	if (unlink(d->state_path) < 0 && errno != ENOENT)
		blkserv_warning(d->dev, "cannot remove %s: %m", d->state_path);
}

/* The device of @st is ours and fits the config: 0; else why not, logged. */
static int check_fits(struct dblock *d, const struct dblock_state *st, uint32_t *ret_features)
{
	const char *n = st->name;
	uint64_t sectors = 0, lbs = 0, servers = 0;
	uint32_t features = 0, wanted;
	int r;

	r = read_sysfs(n, "size", &sectors);
	if (r >= 0)
		r = read_sysfs(n, "queue/logical_block_size", &lbs);
	if (r < 0)
		return blkserv_error_errno(d->dev, r, "cannot read /sys/block/%s: %m", n);
	if (sectors * 512 != d->size || lbs != DBLOCK_BLOCK_SIZE) {
		blkserv_error(d->dev,
			      "/dev/%s of the previous daemon has %llu bytes with block size %llu, "
			      "the config says %llu with %u: it cannot be taken over with another geometry; "
			      "restore the config, or remove the device (rmmod dblock removes every unused "
			      "dblock device)",
			      n, (unsigned long long)sectors * 512, (unsigned long long)lbs,
			      (unsigned long long)d->size, DBLOCK_BLOCK_SIZE);
		return -EEXIST;
	}
	if (read_sysfs(n, "dblock/servers", &servers) >= 0 && servers > 0) {
		blkserv_error(d->dev, "/dev/%s has %llu server thread(s) waiting: another program serves it", n,
			      (unsigned long long)servers);
		return -EBUSY;
	}
	/* The original module has no features (and no sysfs): it has none. */
	if (read_features(n, &features) < 0)
		features = 0;
	wanted = d->extended ? dblock_wanted_features(d->caps) & d->module_features : 0;
	if (features != wanted) {
		char have[96], want[96];

		dblock_features_string(features, have, sizeof(have));
		dblock_features_string(wanted, want, sizeof(want));
		blkserv_error(d->dev,
			      "/dev/%s of the previous daemon has the features '%s', this backend "
			      "and config need '%s': it cannot be taken over; restore the config, or remove "
			      "the device",
			      n, have, want);
		return -EEXIST;
	}
	*ret_features = features;
	return 0;
}

/* The backend's data is new: the old device must go, loudly. */
static void remove_stale(struct dblock *d, const struct dblock_state *st)
{
	blkserv_error(d->dev,
		      "the backend's data is new (the previous daemon's was not handed over): "
		      "/dev/%s of the previous daemon (pid %d) must not be resumed with it. Removing it and "
		      "creating a new one; whatever had it mounted or open gets I/O errors and must be "
		      "unmounted",
		      st->name, st->pid);
	d->handle_id = st->handle_id;
	d->created = true;
	dblock_destroy_device(d);
	dblock_remove_state(d);
}

/* Where the state file leads: 1 taken over, 0 create a new device, <0 fail. */
static int adopt(struct dblock *d, const struct dblock_state *st)
{
	uint32_t handle = 0, features = 0;
	uint64_t timeout = 0;
	int r;

	if (strcmp(st->name, d->opt.name) != 0) {
		blkserv_warning(d->dev,
				"the state file %s names /dev/%s, the config now /dev/%s: leaving "
				"/dev/%s alone (remove it yourself if it is no longer used)",
				d->state_path, st->name, d->opt.name, st->name);
		dblock_remove_state(d);
		return 0;
	}
	r = dblock_handle_by_name(d, st->name, &handle);
	if (r == -ENOENT || (r >= 0 && handle != st->handle_id)) {
		blkserv_info(d->dev, "/dev/%s of the state file is gone%s: creating it afresh", st->name,
			     r >= 0 ? " (the name belongs to a newer device now)" : "");
		dblock_remove_state(d);
		return 0;
	}
	if (r < 0)
		return blkserv_error_errno(d->dev, r, "cannot look up /dev/%s: %m", st->name);
	if (pid_alive(st->pid)) {
		blkserv_error(d->dev, "/dev/%s is served by a running process (pid %d)", st->name, st->pid);
		return -EBUSY;
	}
	if (blkserv_device_data_fresh(d->dev)) {
		remove_stale(d, st);
		return 0;
	}
	r = check_fits(d, st, &features);
	if (r < 0)
		return r;
	d->handle_id = handle;
	d->features = features;
	d->created = true;
	if (read_sysfs(st->name, "dblock/timeout_seconds", &timeout) >= 0 && timeout != d->opt.timeout)
		blkserv_notice(d->dev,
			       "/dev/%s keeps its timeout of %llu s (the config's %u s applies to a "
			       "new device)",
			       st->name, (unsigned long long)timeout, d->opt.timeout);
	return 1;
}

int dblock_try_takeover(struct dblock *d)
{
	struct dblock_state st;
	int r = dblock_state_read(d->state_path, &st);

	if (r == -ENOENT)
		return 0;
	if (r < 0) {
		(void)blkserv_warning_errno(d->dev, r, "state file %s is unreadable (%m): ignoring it", d->state_path);
		dblock_remove_state(d);
		return 0;
	}
	r = adopt(d, &st);
	if (r > 0)
		blkserv_notice(d->dev, "taking over /dev/%s (handle %u) from the previous daemon (pid %d)", st.name,
			       d->handle_id, st.pid);
	return r;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * file: a device stored in a regular file or on a block device.
 *
 * This file sets an instance up: it checks the path, creates a sparse file
 * when needed, never shrinks one, takes a lock so nobody else serves the same
 * file, and works out what the path honours (punch hole, discard, the O_DIRECT
 * alignment).  The data path, asynchronous through each queue's io_uring,
 * is in file-io.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cleanup.h"
#include "file.h"
#include "macro.h"
#include "parse.h"
#include "sticky-error.h"

#ifndef FILE_BACKEND_NAME
#define FILE_BACKEND_NAME "file"
#endif

static const struct blkserv_option file_options[] = {
	{ "path", BLKSERV_OPT_PATH, NULL, "regular file or block device holding the data (created sparse when missing)",
	  BLKSERV_OPTION_REQUIRED },
	{ "direct", BLKSERV_OPT_BOOL, "false", "bypass the page cache (O_DIRECT)", 0 },
	{ "read_only", BLKSERV_OPT_BOOL, "false", "open the path read-only and serve a read-only device", 0 },
	{ "grow", BLKSERV_OPT_BOOL, "false",
	  "extend (sparsely) an existing file smaller than the device size instead of failing", 0 },
	BLKSERV_OPTION_END,
};

struct file_settings {
	const char *path;
	uint64_t size; /* the device's; 0: take the file's */
	bool direct;
	bool read_only;
	bool grow;
};

/* ---- errors that name the path ------------------------------------- */

static int path_type_error(struct file_backend *fb, mode_t mode)
{
	const char *what = S_ISDIR(mode)    ? "a directory"
			   : S_ISCHR(mode)  ? "a character device"
			   : S_ISFIFO(mode) ? "a FIFO"
			   : S_ISSOCK(mode) ? "a socket"
					    : "not a regular file";

	blkserv_error(fb->dev, "%s is %s: the file backend serves regular files and block devices", fb->path, what);
	return S_ISDIR(mode) ? -EISDIR : -EINVAL;
}

static int parent_error(struct file_backend *fb, int err)
{
	_cleanup_free_ char *copy = strdup(fb->path);
	const char *dir = copy ? dirname(copy) : "its directory";
	struct stat st;

	if (err == ENOENT && stat(dir, &st) < 0 && errno == ENOENT) {
		blkserv_error(fb->dev, "directory %s does not exist (path = %s)", dir, fb->path);
		return -ENOENT;
	}
	if (err == ENOTDIR) {
		blkserv_error(fb->dev, "a component of %s is not a directory", fb->path);
		return -ENOTDIR;
	}
	return 0;
}

static int open_error(struct file_backend *fb, int err, const char *how)
{
	int r = parent_error(fb, err);

	if (r < 0)
		return r;
	switch (err) {
	case EACCES:
	case EPERM:
		blkserv_error(fb->dev, "permission denied: cannot %s %s%s", how, fb->path,
			      strcmp(how, "access") == 0 ? ""
			      : fb->read_only            ? " for reading"
							 : " for reading and writing");
		break;
	case EROFS:
		blkserv_error(fb->dev, "%s is on a read-only file system: cannot %s it (set read_only = true?)",
			      fb->path, how);
		break;
	case EBUSY:
		blkserv_error(fb->dev, "%s is in use (mounted, or held exclusively by another device or process)",
			      fb->path);
		break;
	case EINVAL:
		if (fb->direct) {
			blkserv_error(fb->dev, "%s does not support O_DIRECT (direct = true): cannot %s it", fb->path,
				      how);
			break;
		}
		_fallthrough_;
	default:
		(void)blkserv_error_errno(fb->dev, err, "cannot %s %s: %m", how, fb->path);
	}
	return -err;
}

/* ---- creating, opening, locking -------------------------------------- */

/* fsync the directory so the new file's name survives a power cut. */
static void sync_parent(struct file_backend *fb)
{
	_cleanup_free_ char *copy = strdup(fb->path);
	_cleanup_close_ int dfd = -1;

	if (!copy)
		return;
	dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) < 0)
		blkserv_warning(fb->dev, "cannot fsync the directory of %s: %m", fb->path);
}

static int create_file(struct file_backend *fb, uint64_t size)
{
	_cleanup_close_ int fd = open(fb->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	if (fd < 0 && errno == EEXIST)
		return 0; /* someone created it meanwhile: open it as it is */
	if (fd < 0)
		return open_error(fb, errno, "create");
	if (ftruncate(fd, (off_t)size) < 0 || fsync(fd) < 0) {
		int err = errno;
		(void)blkserv_error_errno(fb->dev, err, "cannot size the new file %s to %llu bytes: %m", fb->path,
					  (unsigned long long)size);
		(void)unlink(fb->path);
		return -err;
	}
	sync_parent(fb);
	blkserv_notice(fb->dev, "created %s, %llu bytes (sparse)", fb->path, (unsigned long long)size);
	return 0;
}

static int open_flags(const struct file_backend *fb, bool direct)
{
	return (fb->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | (direct ? O_DIRECT : 0);
}

/* A path that must exist and be a regular file or block device (it may be
 * a symlink to one, like /dev/disk/by-id/...). */
static int check_path(struct file_backend *fb, const struct file_settings *s, bool *ret_missing)
{
	struct stat st;

	*ret_missing = false;
	if (stat(fb->path, &st) == 0)
		return S_ISREG(st.st_mode) || S_ISBLK(st.st_mode) ? 0 : path_type_error(fb, st.st_mode);
	if (errno != ENOENT)
		return open_error(fb, errno, "access");
	if (parent_error(fb, ENOENT) < 0)
		return -ENOENT;
	if (s->read_only || s->size == 0) {
		blkserv_error(fb->dev, "%s does not exist%s", fb->path,
			      s->read_only ? " (read_only = true: nothing to create)"
					   : "; set the device's size option to create it");
		return -ENOENT;
	}
	*ret_missing = true;
	return 0;
}

/* Nobody else (another device, another daemon) may serve the same file.
 * flock locks belong to the open file description, so two devices of one
 * daemon conflict too. */
static int lock_path(struct file_backend *fb)
{
	if (flock(fb->fd, (fb->read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) == 0)
		return 0;
	if (errno == EWOULDBLOCK) {
		blkserv_error(fb->dev, "%s is in use: another blkservd device or process holds a lock on it", fb->path);
		return -EBUSY;
	}
	blkserv_error(fb->dev, "cannot lock %s: %m", fb->path);
	return -errno;
}

static int open_path(struct file_backend *fb, struct stat *ret_st)
{
	int flags = open_flags(fb, fb->direct);
	struct stat st;

	if (stat(fb->path, &st) == 0 && S_ISBLK(st.st_mode) && !fb->read_only)
		flags |= O_EXCL; /* the kernel's own claim: fails if mounted or in use */
	fb->fd = open(fb->path, flags);
	if (fb->fd < 0)
		return open_error(fb, errno, "open");
	if (fstat(fb->fd, ret_st) < 0)
		return -errno;
	if (!S_ISREG(ret_st->st_mode) && !S_ISBLK(ret_st->st_mode))
		return path_type_error(fb, ret_st->st_mode);
	fb->st_dev = ret_st->st_dev;
	fb->st_ino = ret_st->st_ino;
	fb->is_blockdev = S_ISBLK(ret_st->st_mode);
	fb->rdev = ret_st->st_rdev;
	return lock_path(fb);
}

int file_reopen(struct file_backend *fb, bool direct, int *ret_fd)
{
	_cleanup_close_ int fd = open(fb->path, open_flags(fb, direct));
	struct stat st;

	if (fd < 0)
		return open_error(fb, errno, "reopen");
	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_dev != fb->st_dev || st.st_ino != fb->st_ino) {
		blkserv_error(fb->dev, "%s was replaced by another file while the device was being served", fb->path);
		return -ESTALE;
	}
	*ret_fd = TAKE_FD(fd);
	return 0;
}

/* ---- size ------------------------------------------------------------ */

static int check_multiple(struct file_backend *fb, uint64_t size)
{
	uint32_t bs = blkserv_device_block_size(fb->dev);

	if (size == 0) {
		blkserv_error(fb->dev, "%s is empty; set the device's size option to give it a size", fb->path);
		return -EINVAL;
	}
	if (size % bs) {
		blkserv_error(fb->dev, "%s is %llu bytes, not a multiple of the device's block_size %u", fb->path,
			      (unsigned long long)size, bs);
		return -EINVAL;
	}
	return 0;
}

static int grow_file(struct file_backend *fb, uint64_t from, uint64_t to)
{
	if (ftruncate(fb->fd, (off_t)to) < 0 || fdatasync(fb->fd) < 0) {
		blkserv_error(fb->dev, "cannot extend %s from %llu to %llu bytes: %m", fb->path,
			      (unsigned long long)from, (unsigned long long)to);
		return -errno;
	}
	blkserv_notice(fb->dev, "extended %s from %llu to %llu bytes (grow = true)", fb->path, (unsigned long long)from,
		       (unsigned long long)to);
	return 0;
}

static int regular_file_size(struct file_backend *fb, const struct file_settings *s, uint64_t have)
{
	if (s->size == 0 || have == s->size) {
		fb->size = have;
		return check_multiple(fb, have);
	}
	if (have > s->size) {
		blkserv_error(fb->dev,
			      "%s is %llu bytes, larger than the device size %llu: the file backend neither shrinks "
			      "a file nor serves a part of one (remove the device's size to serve the whole file)",
			      fb->path, (unsigned long long)have, (unsigned long long)s->size);
		return -EFBIG;
	}
	if (!s->grow || s->read_only) {
		blkserv_error(fb->dev,
			      "%s is %llu bytes, smaller than the device size %llu (set grow = true in the "
			      "backend section to extend it sparsely, or fix the size)",
			      fb->path, (unsigned long long)have, (unsigned long long)s->size);
		return -EINVAL;
	}
	fb->size = s->size;
	return grow_file(fb, have, s->size);
}

static int blockdev_size(struct file_backend *fb, const struct file_settings *s)
{
	uint64_t bytes;
	int lbs;

	if (ioctl(fb->fd, BLKGETSIZE64, &bytes) < 0 || ioctl(fb->fd, BLKSSZGET, &lbs) < 0) {
		blkserv_error(fb->dev, "cannot read the size of block device %s: %m", fb->path);
		return -errno;
	}
	fb->bdev_logical_block = lbs > 0 ? (uint32_t)lbs : 512;
	if (s->size && s->size != bytes) {
		blkserv_error(fb->dev,
			      "block device %s is %llu bytes but the device size is %llu: remove size to use the "
			      "whole block device",
			      fb->path, (unsigned long long)bytes, (unsigned long long)s->size);
		return -EINVAL;
	}
	fb->size = bytes;
	return check_multiple(fb, bytes);
}

/* ---- what the path honours ------------------------------------------ */

/* A queue attribute of a block device or, for a partition, of its disk. */
static int read_queue_attr(dev_t rdev, const char *attr, uint64_t *ret)
{
	for (int parent = 0; parent < 2; parent++) {
		char p[256];

		snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/%squeue/%s", major(rdev), minor(rdev), parent ? "../" : "",
			 attr);
		if (parse_uint_file(p, ret) == 0)
			return 0;
	}
	return -ENOENT;
}

static void probe_blockdev(struct file_backend *fb)
{
	uint64_t v = 0;

	fb->can_discard = read_queue_attr(fb->rdev, "discard_max_bytes", &v) == 0 && v > 0;
	fb->rotational = read_queue_attr(fb->rdev, "rotational", &v) == 0 && v == 1;
	fb->dio_offset_align = fb->dio_mem_align = fb->bdev_logical_block;
}

/*
 * Punching a hole past the end of the file with KEEP_SIZE changes nothing
 * and fails with EOPNOTSUPP where the file system cannot punch.  ZERO_RANGE
 * has no such harmless probe (past the end it would allocate), so it is
 * tried at first use and given up on EOPNOTSUPP.
 */
static void probe_regular(struct file_backend *fb)
{
	struct statx stx;
	int r;

	r = fallocate(fb->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)fb->size, 4096);
	fb->can_punch = r == 0;
	fb->no_punch_zero = !fb->can_punch;
	if (r < 0 && errno != EOPNOTSUPP)
		blkserv_info(fb->dev, "punching holes in %s fails (%m): no TRIM", fb->path);
	/* Without the kernel's answer, 4096 is safe for every common device. */
	fb->dio_offset_align = fb->dio_mem_align = 4096;
	if (statx(fb->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 && (stx.stx_mask & STATX_DIOALIGN) &&
	    stx.stx_dio_offset_align) {
		fb->dio_offset_align = stx.stx_dio_offset_align;
		fb->dio_mem_align = stx.stx_dio_mem_align ? stx.stx_dio_mem_align : stx.stx_dio_offset_align;
	}
}

static void warn_alignment(struct file_backend *fb)
{
	uint32_t bs = blkserv_device_block_size(fb->dev);

	if (fb->direct && bs < fb->dio_offset_align)
		blkserv_warning(fb->dev,
				"block_size %u is smaller than the O_DIRECT alignment %u of %s: requests not aligned "
				"to %u go through the page cache",
				bs, fb->dio_offset_align, fb->path, fb->dio_offset_align);
}

/* ---- the plugin callbacks -------------------------------------------- */

/* What check_path would refuse at open, without creating or opening. */
static int file_validate(const struct blkserv_config *cfg)
{
	const char *path = NULL;
	bool read_only = false;
	struct stat st;

	(void)blkserv_config_get_string(cfg, "path", &path);
	(void)blkserv_config_get_bool(cfg, "read_only", &read_only);
	if (!path)
		return 0; /* required: the daemon reports it */
	if (stat(path, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return blkserv_config_error(cfg, "path",
						    "%s is a directory: the file backend serves a "
						    "regular file or a block device",
						    path);
		if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
			return blkserv_config_error(cfg, "path", "%s is neither a regular file nor a block device",
						    path);
	} else if (errno == ENOENT && (read_only || blkserv_config_device_size(cfg) == 0)) {
		return blkserv_config_error(cfg, "path", "%s does not exist%s", path,
					    read_only ? " (read_only = true: nothing to create)"
						      : "; set the device's size option to create it");
	}
	/* Readers share a file (a shared lock at open); a writer has it
	 * alone, so a writer and a reader of one file is a config error. */
	if (read_only)
		return blkserv_config_claim_shared(cfg, "path", "backing file", path);
	return blkserv_config_claim(cfg, "path", "backing file", path);
}

static int read_settings(struct blkserv_device *dev, const struct blkserv_config *cfg, uint64_t size,
			 struct file_settings *s)
{
	*s = (struct file_settings){ .size = size };
	if (blkserv_config_get_string(cfg, "path", &s->path) < 0 || !s->path || s->path[0] != '/') {
		blkserv_error(dev,
			      "the file backend needs an absolute path option (like path = \"/var/lib/disk.img\")");
		return -EINVAL;
	}
	(void)blkserv_config_get_bool(cfg, "direct", &s->direct);
	(void)blkserv_config_get_bool(cfg, "read_only", &s->read_only);
	(void)blkserv_config_get_bool(cfg, "grow", &s->grow);
	if (size > (uint64_t)INT64_MAX) {
		blkserv_error(dev, "device size %llu is too large for a file", (unsigned long long)size);
		return -EFBIG;
	}
	return 0;
}

static int setup(struct file_backend *fb, const struct file_settings *s)
{
	struct stat st;
	bool missing;
	int r;

	r = check_path(fb, s, &missing);
	if (r >= 0 && missing)
		r = create_file(fb, s->size);
	if (r >= 0)
		r = open_path(fb, &st);
	if (r < 0)
		return r;
	if (fb->is_blockdev) {
		r = blockdev_size(fb, s);
		if (r >= 0)
			probe_blockdev(fb);
	} else {
		r = regular_file_size(fb, s, (uint64_t)st.st_size);
		if (r >= 0 && !fb->read_only)
			probe_regular(fb);
	}
	if (r >= 0)
		warn_alignment(fb);
	return r;
}

static void file_close(void *handle)
{
	struct file_backend *fb = handle;

	if (!fb)
		return;
	safe_close(fb->fd);
	if (fb->zeroes)
		munmap((void *)fb->zeroes, FILE_ZERO_CHUNK);
	free(fb->path);
	free(fb);
}

static int file_open(struct blkserv_device *dev, const struct blkserv_config *cfg, uint64_t size, void **ret_handle)
{
	struct file_settings s;
	struct file_backend *fb;
	void *zeroes;
	int r;

	r = read_settings(dev, cfg, size, &s);
	if (r < 0)
		return r;
	fb = calloc(1, sizeof(*fb));
	if (!fb || !(fb->path = strdup(s.path))) {
		free(fb);
		return -ENOMEM;
	}
	fb->dev = dev;
	fb->fd = -1;
	fb->direct = s.direct;
	fb->read_only = s.read_only;
	/* Untouched anonymous memory reads as zeros and costs no RAM. */
	zeroes = mmap(NULL, FILE_ZERO_CHUNK, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	fb->zeroes = zeroes == MAP_FAILED ? NULL : zeroes;
	r = fb->zeroes ? setup(fb, &s) : -ENOMEM;
	if (r < 0) {
		file_close(fb);
		return r;
	}
	blkserv_info(dev, "serving %s %s, %llu bytes%s%s", fb->is_blockdev ? "block device" : "file", fb->path,
		     (unsigned long long)fb->size, fb->direct ? ", O_DIRECT" : "", fb->read_only ? ", read-only" : "");
	*ret_handle = fb;
	return 0;
}

static int file_get_size(void *handle, uint64_t *ret_size)
{
	*ret_size = ((struct file_backend *)handle)->size;
	return 0;
}

static int file_get_caps(void *handle, uint64_t *ret_caps)
{
	struct file_backend *fb = handle;
	uint64_t caps = fb->rotational ? BLKSERV_CAP_ROTATIONAL : 0;

	if (fb->read_only) {
		*ret_caps = caps | BLKSERV_CAP_READ_ONLY;
		return 0;
	}
	/* FUA is native (RWF_DSYNC); WRITE_ZEROES always works because writing
	 * zeros is the last fallback. */
	caps |= BLKSERV_CAP_FLUSH | BLKSERV_CAP_FUA | BLKSERV_CAP_WRITE_ZEROES;
	if (fb->is_blockdev ? fb->can_discard : fb->can_punch)
		caps |= BLKSERV_CAP_TRIM;
	*ret_caps = caps;
	return 0;
}

void file_set_sync_error(struct file_backend *fb, int error, const char *what)
{
	if (!sticky_error_set(&fb->sync_error, error))
		return;
	error = sticky_error_get(&fb->sync_error);
	(void)blkserv_error_errno(fb->dev, error,
				  "device %s: %s of %s failed: %m.  Writes since the last successful flush may be "
				  "lost; every later flush and FUA write of this device fails until the device is "
				  "restarted",
				  blkserv_device_name(fb->dev), what, fb->path);
}

/* At a clean stop, after the last queue closed. */
static int file_sync(void *handle)
{
	struct file_backend *fb = handle;
	int err = atomic_load(&fb->sync_error);

	if (fb->read_only)
		return 0;
	if (err < 0)
		return blkserv_error_errno(fb->dev, err,
					   "device %s: not syncing %s at stop: an earlier fdatasync "
					   "failed (%m)",
					   blkserv_device_name(fb->dev), fb->path);
	if (fdatasync(fb->fd) < 0) {
		err = -errno;
		file_set_sync_error(fb, err, "fdatasync at stop");
		return err;
	}
	return 0;
}

static int file_get_stats(void *handle, char *buf, size_t len)
{
	struct file_backend *fb = handle;

	snprintf(buf, len,
		 "size=%llu\nflush_failed=%d\nshort_io_resubmits=%llu\nbounced=%llu\n"
		 "buffered_unaligned=%llu\nzero_writes=%llu\n",
		 (unsigned long long)fb->size, atomic_load(&fb->sync_error) < 0,
		 (unsigned long long)atomic_load_explicit(&fb->short_io_resubmits, memory_order_relaxed),
		 (unsigned long long)atomic_load_explicit(&fb->bounced, memory_order_relaxed),
		 (unsigned long long)atomic_load_explicit(&fb->buffered_unaligned, memory_order_relaxed),
		 (unsigned long long)atomic_load_explicit(&fb->zero_writes, memory_order_relaxed));
	return 0;
}

static struct blkserv_backend file_backend_plugin = {
	.name = FILE_BACKEND_NAME,
	.description = "device in a regular file or on a block device, asynchronous through io_uring",
	.options = file_options,
	.request_priv_size = sizeof(struct file_request),
	.open = file_open,
	.close = file_close,
	.get_size = file_get_size,
	.get_caps = file_get_caps,
	.queue_open = file_queue_open,
	.queue_close = file_queue_close,
	.read = file_read,
	.write = file_write,
	.flush = file_flush,
	.trim = file_trim,
	.write_zeroes = file_write_zeroes,
	.sync = file_sync,
	.get_stats = file_get_stats,
	.validate = file_validate,
};

BLKSERV_REGISTER_BACKEND(file_backend_plugin)

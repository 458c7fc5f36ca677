/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blockdev.h"
#include "cleanup.h"

static bool fd_dir_has(int dir_fd, dev_t rdev)
{
	_cleanup_(closedirp) DIR *fds = fdopendir(dir_fd);
	struct dirent *fe;

	if (!fds) {
		close(dir_fd);
		return false;
	}
	while ((fe = readdir(fds))) {
		struct stat st;
		if (fe->d_name[0] != '.' && fstatat(dirfd(fds), fe->d_name, &st, 0) == 0 && S_ISBLK(st.st_mode) &&
		    st.st_rdev == rdev)
			return true;
	}
	return false;
}

bool blockdev_open_anywhere(const char *proc_root, dev_t rdev)
{
	_cleanup_(closedirp) DIR *proc = opendir(proc_root);
	char self[24];
	struct dirent *de;

	/* Our own descriptors do not make a user: the nbd frontend holds
	 * /dev/nbdN open itself when it configures it through ioctls. */
	snprintf(self, sizeof(self), "%d", (int)getpid());
	while (proc && (de = readdir(proc))) {
		char path[sizeof(de->d_name) + 8];
		int fd;

		if (de->d_name[0] < '1' || de->d_name[0] > '9' || strcmp(de->d_name, self) == 0)
			continue;
		snprintf(path, sizeof(path), "%s/fd", de->d_name);
		fd = openat(dirfd(proc), path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0 && fd_dir_has(fd, rdev))
			return true;
	}
	return false;
}

int blockdev_in_use(const char *path)
{
	struct stat st;
	int fd;

	if (stat(path, &st) < 0)
		return -errno;
	if (!S_ISBLK(st.st_mode))
		return -ENOTBLK;
	/* Mounted, swapped on, or held by md/dm: an exclusive open fails. */
	fd = open(path, O_RDONLY | O_EXCL | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return errno == EBUSY ? 1 : -errno;
	close(fd);
	return blockdev_open_anywhere("/proc", st.st_rdev) ? 1 : 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Is a block device in use?  One answer for every frontend's stop, reload
 * and takeover decisions. */
#ifndef BLKSERV_BLOCKDEV_H
#define BLKSERV_BLOCKDEV_H

#include <stdbool.h>
#include <sys/types.h>

/* Some process under @proc_root ("/proc") but this one has a descriptor on
 * the block device @rdev (a file system on it shows as an exclusive holder
 * instead: see blockdev_in_use). */
bool blockdev_open_anywhere(const char *proc_root, dev_t rdev);
/* 1 if the block device at @path is mounted, held exclusively (swap, md,
 * dm) or open by another process; 0 if not; -errno if it cannot be told.
 * Every kernel frontend's answer to "may this device go away". */
int blockdev_in_use(const char *path);

#endif

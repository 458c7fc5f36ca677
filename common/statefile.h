/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Small "key=value" state files (a frontend's record of its kernel device
 * in the runtime directory, for the next daemon). */
#ifndef BLKSERV_STATEFILE_H
#define BLKSERV_STATEFILE_H

/* Replace @path with @text atomically: written to PATH.tmp, fsync'ed,
 * renamed over @path.  0 or -errno (nothing is left behind on failure). */
int statefile_write(const char *path, const char *text);

/* Call @set for each "key=value" line of @path; lines starting with '#'
 * and blank lines are skipped.  -errno if @path cannot be opened,
 * -EINVAL for a line without '=' or longer than 511 bytes, or the first
 * negative value @set returns. */
int statefile_read(const char *path, int (*set)(void *userdata, const char *key, const char *value), void *userdata);

#endif

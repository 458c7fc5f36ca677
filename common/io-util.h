/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Whole reads and writes on fds that may return short (sockets, pipes). */
#ifndef BLKSERV_IO_UTIL_H
#define BLKSERV_IO_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Write all @len bytes; retries on EINTR and short writes.  0 or -errno. */
int write_full(int fd, const void *buf, size_t len);
/* Read exactly @len bytes.  0, -EPIPE at end of file (even mid-way), or -errno. */
int read_full(int fd, void *buf, size_t len);
/* Monotonic clock in nanoseconds. */
uint64_t now_ns(void);

#endif

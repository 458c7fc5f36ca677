/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Whole reads and writes on fds that may return short (sockets, pipes),
 * positional ones on files, and time. */
#ifndef BLKSERV_IO_UTIL_H
#define BLKSERV_IO_UTIL_H

#include <linux/time_types.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>

/* Write all @len bytes; retries on EINTR and short writes.  0 or -errno. */
int write_full(int fd, const void *buf, size_t len);
/* Read exactly @len bytes.  0, -EPIPE at end of file (even mid-way), or -errno. */
int read_full(int fd, void *buf, size_t len);
/* Positional: all of @len bytes at @off, or all of @iov's (which is
 * consumed: its entries are advanced past what was done).  Retries on EINTR
 * and short transfers; 0, -EIO at end of file or a write of nothing, or
 * -errno. */
int pread_full(int fd, void *buf, size_t len, uint64_t off);
int pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
int preadv_full(int fd, struct iovec *iov, int n, uint64_t off);
int pwritev_full(int fd, struct iovec *iov, int n, uint64_t off);
/* Monotonic clock in nanoseconds. */
uint64_t now_ns(void);
/* @ms milliseconds as a timespec (nanosleep, ppoll) and as the kernel's
 * (io_uring timeouts). */
struct timespec timespec_from_ms(uint64_t ms);
struct __kernel_timespec kernel_timespec_from_ms(uint64_t ms);
/* Sleep @ms milliseconds, through signals. */
void sleep_ms(unsigned ms);

#endif

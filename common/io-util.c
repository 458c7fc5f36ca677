/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

#include "io-util.h"

int write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int read_full(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len > 0) {
		ssize_t n = read(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Advance @iov past @done bytes; the number of entries left. */
static int iov_advance(struct iovec **iov, int n, size_t done)
{
	while (n > 0 && done >= (*iov)->iov_len) {
		done -= (*iov)->iov_len;
		(*iov)++;
		n--;
	}
	if (n > 0) {
		(*iov)->iov_base = (char *)(*iov)->iov_base + done;
		(*iov)->iov_len -= done;
	}
	return n;
}

static int p_full(int fd, struct iovec *iov, int n, uint64_t off, bool write)
{
	while (n > 0) {
		ssize_t r = write ? pwritev(fd, iov, n, (off_t)off) : preadv(fd, iov, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0) {
			/* A zero-length entry transfers nothing: skip it. */
			if (iov->iov_len == 0) {
				iov++;
				n--;
				continue;
			}
			return -EIO;
		}
		off += (uint64_t)r;
		n = iov_advance(&iov, n, (size_t)r);
	}
	return 0;
}

int preadv_full(int fd, struct iovec *iov, int n, uint64_t off)
{
	return p_full(fd, iov, n, off, false);
}

int pwritev_full(int fd, struct iovec *iov, int n, uint64_t off)
{
	return p_full(fd, iov, n, off, true);
}

int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	struct iovec iov = { buf, len };

	return preadv_full(fd, &iov, 1, off);
}

int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	struct iovec iov = { (void *)buf, len };

	return pwritev_full(fd, &iov, 1, off);
}

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct timespec timespec_from_ms(uint64_t ms)
{
	return (struct timespec){ .tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000 };
}

struct __kernel_timespec kernel_timespec_from_ms(uint64_t ms)
{
	struct timespec ts = timespec_from_ms(ms);

	return (struct __kernel_timespec){ .tv_sec = ts.tv_sec, .tv_nsec = ts.tv_nsec };
}

void sleep_ms(unsigned ms)
{
	struct timespec ts = timespec_from_ms(ms);

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

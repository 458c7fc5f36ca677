/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Scope-based cleanup, after systemd's _cleanup_ helpers. */
#ifndef BLKSERV_CLEANUP_H
#define BLKSERV_CLEANUP_H

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void freep(void *p)
{
	free(*(void **)p);
}
#define _cleanup_free_ _cleanup_(freep)

/* Close an fd, keeping errno as it was. */
static inline int safe_close(int fd)
{
	if (fd >= 0) {
		int saved = errno;
		(void)close(fd);
		errno = saved;
	}
	return -1;
}
static inline void closep(int *fd)
{
	safe_close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

static inline void fclosep(FILE **f)
{
	if (*f)
		(void)fclose(*f);
}
#define _cleanup_fclose_ _cleanup_(fclosep)

static inline void closedirp(DIR **d)
{
	if (*d)
		(void)closedir(*d);
}

/* func##p(&ptr): func(ptr) unless ptr is NULL, for _cleanup_(func##p) on
 * a pointer to an object that func frees (systemd's macro of that name). */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                                                                        \
	static inline void func##p(type *p)                                                                            \
	{                                                                                                              \
		if (*p)                                                                                                \
			func(*p);                                                                                      \
	}

/* Hand a pointer or fd out of a cleanup scope. */
#define TAKE_PTR(p)                                                                                                    \
	({                                                                                                             \
		__typeof__(p) _taken_ = (p);                                                                           \
		(p) = NULL;                                                                                            \
		_taken_;                                                                                               \
	})
#define TAKE_FD(fd)                                                                                                    \
	({                                                                                                             \
		int _taken_fd_ = (fd);                                                                                 \
		(fd) = -1;                                                                                             \
		_taken_fd_;                                                                                            \
	})

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

#endif

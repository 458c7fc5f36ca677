/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The sticky flush failure of a backend with a volatile cache (file, rbd):
 * once a flush fails, writes since the last good one may be lost, and a
 * later flush that succeeds must not report them durable; so the first
 * error stays, and every later flush (and FUA write) fails with it until
 * the device restarts.
 */
#ifndef BLKSERV_STICKY_ERROR_H
#define BLKSERV_STICKY_ERROR_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>

/* Record @error (a negative errno; anything else counts as -EIO) unless an
 * error is recorded already.  true if this call recorded it: the caller
 * logs it then, once. */
static inline bool sticky_error_set(atomic_int *e, int error)
{
	int expected = 0;

	if (error >= 0)
		error = -EIO;
	return atomic_compare_exchange_strong(e, &expected, error);
}

/* 0, or the error recorded. */
static inline int sticky_error_get(atomic_int *e)
{
	return atomic_load(e);
}

#endif

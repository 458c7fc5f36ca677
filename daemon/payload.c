/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * payload.c: the daemon-wide budget of request payload memory
 * (request_memory in blkservd.conf).  Frontends that serve untrusted
 * peers (the NBD export) charge every payload buffer they hold against it
 * and stop reading a peer whose next request does not fit, so no number of
 * clients can grow the daemon past it.  Lock-free: a charge is one
 * compare-and-swap loop on the connection thread that allocates.
 */
#include <stdatomic.h>

#include "blkserv/blkserv-plugin.h"
#include "payload.h"

static _Atomic uint64_t payload_limit = PAYLOAD_MEMORY_DEFAULT;
static _Atomic uint64_t payload_used;
static _Atomic uint64_t payload_refusals;

void payload_set_limit(uint64_t bytes)
{
	atomic_store(&payload_limit, bytes);
}

uint64_t payload_limit_get(void)
{
	return atomic_load(&payload_limit);
}

bool blkserv_payload_charge(uint64_t bytes, bool force)
{
	uint64_t used = atomic_load(&payload_used);
	uint64_t limit = atomic_load(&payload_limit);

	do {
		if (!force && (used > limit || bytes > limit - used)) {
			atomic_fetch_add(&payload_refusals, 1);
			return false;
		}
	} while (!atomic_compare_exchange_weak(&payload_used, &used, used + bytes));
	return true;
}

void blkserv_payload_release(uint64_t bytes)
{
	atomic_fetch_sub(&payload_used, bytes);
}

uint64_t blkserv_payload_pressure(void)
{
	return atomic_load(&payload_refusals);
}

uint64_t blkserv_payload_used(void)
{
	return atomic_load(&payload_used);
}

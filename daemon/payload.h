/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef BLKSERVD_PAYLOAD_H
#define BLKSERVD_PAYLOAD_H

#include <stdint.h>

/* request_memory's default: 256 MiB, eight 32 MiB requests, or 256 1 MiB
 * requests in flight across every export (see blkservd.conf(5)). */
#define PAYLOAD_MEMORY_DEFAULT (256ull << 20)

/* Set at start and on reload; charges already made stay. */
void payload_set_limit(uint64_t bytes);
uint64_t payload_limit_get(void);

#endif

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected 0x82F63B78): the
 * checksum of every log record.  Chainable: crc32c(crc32c(0, a), b) equals
 * crc32c(0, a || b).  Uses the SSE4.2 crc32 instruction when the CPU has
 * it, a slicing-by-8 table otherwise; both give the same result.
 */
#ifndef BLKSERV_LOG_CRC32C_H
#define BLKSERV_LOG_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* The two implementations, for tests. */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);
uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len);
bool crc32c_hw_available(void);

#endif

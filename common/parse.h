/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Parsing of config values; never logs, returns 0 or -errno. */
#ifndef BLKSERV_PARSE_H
#define BLKSERV_PARSE_H

#include <stdbool.h>
#include <stdint.h>

/* "4096", "4K", "1M", "1G", "1T" (binary multiples, K/k, optional "iB"/"B"). */
int parse_size(const char *s, uint64_t *ret);
/* true/false, yes/no, on/off, 1/0 (case-insensitive). */
int parse_bool(const char *s, bool *ret);
/* Decimal or 0x hexadecimal, no sign, fits uint64_t. */
int parse_uint(const char *s, uint64_t *ret);

#endif

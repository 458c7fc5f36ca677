/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Numbers and flags from text (config values, files, the kernel, the
 * environment, the command line): the one place a string becomes a
 * number.  Never logs; returns 0 or -errno and leaves *ret untouched on
 * error.  Empty strings, junk, signs, blanks and overflow are refused. */
#ifndef BLKSERV_PARSE_H
#define BLKSERV_PARSE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* "4096", "4K", "1M", "1G", "1T" (binary multiples, K/k, optional "iB"/"B"). */
int parse_size(const char *s, uint64_t *ret);
/* true/false, yes/no, on/off, 1/0 (case-insensitive). */
int parse_bool(const char *s, bool *ret);
/* Decimal or 0x hexadecimal, no sign, fits uint64_t. */
int parse_uint(const char *s, uint64_t *ret);
/* Decimal only ("010" is ten), no sign, fits uint64_t. */
int parse_uint_dec(const char *s, uint64_t *ret);
/* Decimal with an optional '-', fits int64_t. */
int parse_int_dec(const char *s, int64_t *ret);
/* A process id: decimal, 1..INT32_MAX (never 0, which kill() takes as the
 * caller's process group). */
int parse_pid(const char *s, pid_t *ret);
/* The decimal number a small file holds (a sysfs attribute), one trailing
 * newline allowed; -errno from open or read, -EINVAL for anything else. */
int parse_uint_file(const char *path, uint64_t *ret);

#endif

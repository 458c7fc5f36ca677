/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon's logging: the journal (with structured fields) under systemd,
 * stderr otherwise.  Only the daemon's edges log; helpers return -errno. */
#ifndef BLKSERVD_LOG_H
#define BLKSERVD_LOG_H

#include <stdarg.h>
#include <stdbool.h>

#include "blkserv/blkserv-plugin.h"

enum log_target {
	LOG_TARGET_AUTO, /* the journal if stderr is connected to it */
	LOG_TARGET_STDERR,
	LOG_TARGET_JOURNAL,
};

void log_setup(enum log_target target);
void log_set_max_level(int level);
int log_get_max_level(void);
/* "err", "warning", "notice", "info", "debug" → syslog level, or -EINVAL. */
int log_level_from_string(const char *s);

void log_fullv(struct blkserv_device *dev, int level, int error, const char *fmt, va_list ap) BLKSERV_PRINTF(4, 0);
void log_full(struct blkserv_device *dev, int level, int error, const char *fmt, ...) BLKSERV_PRINTF(4, 5);

/* Log and return -abs(error), systemd style: return log_error_errno(r, "...").
 * The SDK's blkserv_log_errno(), which plugins use too. */
#define log_errno blkserv_log_errno

/* Keep the error messages this thread logs from now on (besides logging
 * them), and hand them over joined by "; " (malloc'd, NULL if none): what
 * a control client is told about a device that failed to start. */
void log_capture_begin(void);
char *log_capture_end(void);

#define log_error(...) log_full(NULL, BLKSERV_LOG_ERR, 0, __VA_ARGS__)
#define log_warning(...) log_full(NULL, BLKSERV_LOG_WARNING, 0, __VA_ARGS__)
#define log_notice(...) log_full(NULL, BLKSERV_LOG_NOTICE, 0, __VA_ARGS__)
#define log_info(...) log_full(NULL, BLKSERV_LOG_INFO, 0, __VA_ARGS__)
#define log_debug(...) log_full(NULL, BLKSERV_LOG_DEBUG, 0, __VA_ARGS__)
#define log_error_errno(e, ...) log_errno(NULL, BLKSERV_LOG_ERR, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_errno(NULL, BLKSERV_LOG_WARNING, (e), __VA_ARGS__)

#endif

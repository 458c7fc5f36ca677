/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>
#include <systemd/sd-journal.h>

#include "device.h"
#include "log.h"
#include "parse.h"

static enum log_target log_target = LOG_TARGET_STDERR;
static int log_max_level = BLKSERV_LOG_INFO;

/* systemd sets JOURNAL_STREAM=dev:ino when stderr goes to the journal. */
static bool stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	const char *colon = e ? strchr(e, ':') : NULL;
	char devtext[32];
	uint64_t dev, ino;
	struct stat st;

	if (!colon || (size_t)(colon - e) >= sizeof(devtext))
		return false;
	memcpy(devtext, e, (size_t)(colon - e));
	devtext[colon - e] = '\0';
	if (parse_uint_dec(devtext, &dev) < 0 || parse_uint_dec(colon + 1, &ino) < 0)
		return false;
	if (fstat(STDERR_FILENO, &st) < 0)
		return false;
	return st.st_dev == dev && st.st_ino == ino;
}

void log_setup(enum log_target target)
{
	if (target == LOG_TARGET_AUTO)
		target = stderr_is_journal() ? LOG_TARGET_JOURNAL : LOG_TARGET_STDERR;
	log_target = target;
}

void log_set_max_level(int level)
{
	log_max_level = level;
}

int log_get_max_level(void)
{
	return log_max_level;
}

int log_level_from_string(const char *s)
{
	static const struct {
		const char *name;
		int level;
	} table[] = {
		{ "err", LOG_ERR },       { "error", LOG_ERR }, { "warning", LOG_WARNING },
		{ "notice", LOG_NOTICE }, { "info", LOG_INFO }, { "debug", LOG_DEBUG },
	};

	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (strcasecmp(s, table[i].name) == 0)
			return table[i].level;
	return -EINVAL;
}

static void log_to_journal(struct blkserv_device *dev, int level, const char *msg)
{
	if (dev)
		(void)sd_journal_send("MESSAGE=%s: %s", device_name(dev), msg, "PRIORITY=%d", level,
				      "SYSLOG_IDENTIFIER=blkservd", "BLKSERV_DEVICE=%s", device_name(dev),
				      "BLKSERV_FRONTEND=%s", device_frontend_name(dev), "BLKSERV_BACKEND=%s",
				      device_backend_name(dev), NULL);
	else
		(void)sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", level, "SYSLOG_IDENTIFIER=blkservd", NULL);
}

/* Error messages this thread logs between log_capture_begin and _end. */
#define LOG_CAPTURE_MAX 1024
static _Thread_local char *capture;

void log_capture_begin(void)
{
	free(capture);
	capture = calloc(1, LOG_CAPTURE_MAX);
}

char *log_capture_end(void)
{
	char *text = capture;

	capture = NULL;
	if (text && !text[0]) {
		free(text);
		return NULL;
	}
	return text;
}

static void capture_message(int level, const char *msg)
{
	size_t len;

	if (!capture || level > BLKSERV_LOG_ERR)
		return;
	len = strlen(capture);
	snprintf(capture + len, LOG_CAPTURE_MAX - len, "%s%s", len ? "; " : "", msg);
}

/*
 * The plugin whose code @caller (a return address) lies in, named by its
 * shared object (blkserv-frontend-NAME.so or blkserv-backend-NAME.so) into
 * @buf, or NULL for the daemon itself (and for a plugin linked into a test
 * program).  The host prefixes a plugin's messages with its name this way,
 * from whichever thread it logs, so no message has to name its plugin.
 */
static const char *plugin_of_caller(const void *caller, char *buf, size_t len)
{
	static const char *const prefixes[] = { "blkserv-frontend-", "blkserv-backend-" };
	const char *base, *name;
	Dl_info info;
	size_t n;

	if (!dladdr(caller, &info) || !info.dli_fname)
		return NULL;
	base = strrchr(info.dli_fname, '/');
	base = base ? base + 1 : info.dli_fname;
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		if (strncmp(base, prefixes[i], strlen(prefixes[i])) != 0)
			continue;
		name = base + strlen(prefixes[i]);
		n = strcspn(name, ".");
		if (n == 0 || n >= len)
			return NULL;
		memcpy(buf, name, n);
		buf[n] = '\0';
		return buf;
	}
	return NULL;
}

/* "@plugin: " unless the message already starts so (a plugin built before
 * the host prefixed its messages). */
static size_t plugin_prefix(char *msg, size_t size, const char *plugin, const char *fmt)
{
	size_t n;

	if (!plugin)
		return 0;
	n = strlen(plugin);
	if (strncmp(fmt, plugin, n) == 0 && fmt[n] == ':')
		return 0;
	return (size_t)snprintf(msg, size, "%s: ", plugin);
}

BLKSERV_PRINTF(5, 0)
static void log_emit(struct blkserv_device *dev, const char *plugin, int level, int error, const char *fmt, va_list ap)
{
	int saved_errno = errno;
	char msg[2048];
	size_t n;

	if (level > log_max_level)
		return; /* never an error (the lowest max level is "err"): none escapes capture */
	n = plugin_prefix(msg, sizeof(msg), plugin, fmt);
	/* %m means the error passed in, or errno. */
	errno = error ? abs(error) : saved_errno;
	vsnprintf(msg + n, sizeof(msg) - n, fmt, ap);
	capture_message(level, msg);

	if (log_target == LOG_TARGET_JOURNAL)
		log_to_journal(dev, level, msg);
	else if (dev)
		fprintf(stderr, "blkservd: %s: %s\n", device_name(dev), msg);
	else
		fprintf(stderr, "blkservd: %s\n", msg);
	errno = saved_errno;
}

void log_fullv(struct blkserv_device *dev, int level, int error, const char *fmt, va_list ap)
{
	log_emit(dev, NULL, level, error, fmt, ap);
}

void log_full(struct blkserv_device *dev, int level, int error, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_fullv(dev, level, error, fmt, ap);
	va_end(ap);
}

/* Host functions for plugins (blkserv_log_errno is the daemon's log_errno
 * too: called from the daemon, it adds no prefix). */
#define CALLER_PLUGIN(buf) plugin_of_caller(__builtin_return_address(0), (buf), sizeof(buf))

void blkserv_logv(struct blkserv_device *dev, int level, const char *fmt, va_list ap)
{
	char name[64];

	if (level <= log_max_level) /* no dladdr for a message not logged */
		log_emit(dev, CALLER_PLUGIN(name), level, 0, fmt, ap);
}

void blkserv_log(struct blkserv_device *dev, int level, const char *fmt, ...)
{
	char name[64];
	va_list ap;

	if (level > log_max_level)
		return;
	va_start(ap, fmt);
	log_emit(dev, CALLER_PLUGIN(name), level, 0, fmt, ap);
	va_end(ap);
}

int blkserv_log_errno(struct blkserv_device *dev, int level, int error, const char *fmt, ...)
{
	char name[64];
	va_list ap;

	if (level > log_max_level)
		return -abs(error);
	va_start(ap, fmt);
	log_emit(dev, CALLER_PLUGIN(name), level, error, fmt, ap);
	va_end(ap);
	return -abs(error);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Requests (one line): "list", "status NAME", "stats NAME", "reload",
 * "scrub NAME" (start one), "scrub-status NAME".
 * Answers: "ok" or "error MESSAGE" on the first line, then one record per
 * line, fields separated by tabs as key=value (values never contain tabs or
 * newlines).  blkservctl turns them into tables or JSON.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup.h"
#include "control.h"
#include "device.h"
#include "log.h"
#include "scrub.h"

int control_listen(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = -1;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	(void)unlink(path);
	/* Only the owner (root) may connect: the socket can stop devices. */
	mode_t old = umask(0177);
	int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0 || listen(fd, 16) < 0)
		return -errno;
	return TAKE_FD(fd);
}

static bool peer_allowed(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return false;
	return cred.uid == 0 || cred.uid == geteuid();
}

static const char *state_name(enum device_state s)
{
	return s == DEVICE_LIVE ? "live" : s == DEVICE_STOPPED ? "stopped" : "starting";
}

static void put_device(FILE *out, struct blkserv_device *dev)
{
	fprintf(out, "name=%s\tfrontend=%s\tbackend=%s\tkernel=%s\tsize=%llu\tblock_size=%u\tstate=%s\tread_only=%s\n",
		device_name(dev), device_frontend_name(dev), device_backend_name(dev),
		dev->kernel_name[0] ? dev->kernel_name : "-", (unsigned long long)dev->size,
		dev->block_size, state_name(dev->state),
		dev->caps & BLKSERV_CAP_READ_ONLY ? "yes" : "no");
}

static void put_caps(FILE *out, struct blkserv_device *dev)
{
	static const struct {
		uint64_t cap;
		const char *name;
	} caps[] = {
		{ BLKSERV_CAP_FLUSH, "flush" }, { BLKSERV_CAP_FUA, "fua" },
		{ BLKSERV_CAP_TRIM, "trim" },   { BLKSERV_CAP_WRITE_ZEROES, "write_zeroes" },
		{ BLKSERV_CAP_ROTATIONAL, "rotational" }, { BLKSERV_CAP_READ_ONLY, "read_only" },
	};
	const char *sep = "";

	fprintf(out, "capabilities=");
	for (size_t i = 0; i < ELEMENTSOF(caps); i++)
		if (dev->caps & caps[i].cap) {
			fprintf(out, "%s%s", sep, caps[i].name);
			sep = ",";
		}
	fprintf(out, "%s\twrite_through=%s\n", sep[0] ? "" : "none", dev->write_through ? "yes" : "no");
}

static void put_stats(FILE *out, struct blkserv_device *dev)
{
	const struct blkserv_backend *b = &dev->backend->backend;
	struct io_stats s;
	char extra[2048] = "";

	device_get_stats(dev, &s);
	fprintf(out, "inflight=%llu\n", (unsigned long long)s.inflight);
	fprintf(out, "reads_mapped=%llu\n", (unsigned long long)s.reads_mapped);
	for (unsigned op = 0; op < BLKSERV_OP__MAX; op++) {
		const struct op_stats *o = &s.op[op];
		uint64_t ok = o->ops - o->errors;
		fprintf(out, "op=%s\tops=%llu\tbytes=%llu\terrors=%llu\tmean_us=%.1f\tp50_us=%.1f\tp99_us=%.1f\tp999_us=%.1f\n",
			op_name(op), (unsigned long long)o->ops, (unsigned long long)o->bytes,
			(unsigned long long)o->errors, ok ? (double)o->latency_ns_sum / (double)ok / 1e3 : 0.0,
			(double)stats_percentile(o, 50) / 1e3, (double)stats_percentile(o, 99) / 1e3,
			(double)stats_percentile(o, 99.9) / 1e3);
	}
	if (b->get_stats && dev->backend_handle && b->get_stats(dev->backend_handle, extra, sizeof(extra)) >= 0) {
		/* The backend's "key=value\n" lines, prefixed. */
		for (char *line = strtok(extra, "\n"); line; line = strtok(NULL, "\n"))
			if (strchr(line, '=') && !strchr(line, '\t'))
				fprintf(out, "backend.%s\n", line);
	}
}

static struct blkserv_device *find(const struct control_ops *ops, const char *name)
{
	for (size_t i = 0; i < ops->count(ops->userdata); i++) {
		struct blkserv_device *dev = ops->device_at(ops->userdata, i);
		if (strcmp(device_name(dev), name) == 0)
			return dev;
	}
	return NULL;
}

/* "scrub NAME" starts a scrub, "scrub-status NAME" only reports; both
 * answer with the scrub's state (scrub.h). */
static void answer_scrub(FILE *out, struct blkserv_device *dev, const char *name, bool start)
{
	struct scrub_status st;
	int r = 0;

	if (!dev) {
		fprintf(out, "error no device named '%s'\n", name ? name : "");
		return;
	}
	if (start)
		r = device_scrub_start(dev);
	if (r == -EOPNOTSUPP) {
		fprintf(out, "error backend %s cannot scrub\n", device_backend_name(dev));
		return;
	}
	if (r < 0) {
		fprintf(out, "error cannot scrub %s: %s\n", name,
			r == -EBUSY ? "a scrub is already running" : r == -ENODEV ? "the device is not running"
										: strerror(-r));
		return;
	}
	device_scrub_status(dev, &st);
	fprintf(out, "ok\nname=%s\tstate=%s\tdone_bytes=%llu\ttotal_bytes=%llu\terrors=%llu\tstarted=%llu\t"
		"duration_ms=%llu\terror=%s\n", name, scrub_state_name(st.state),
		(unsigned long long)st.done_bytes, (unsigned long long)st.total_bytes, (unsigned long long)st.errors,
		(unsigned long long)st.started, (unsigned long long)st.duration_ms,
		st.error ? strerror(-st.error) : "-");
}

static void answer(FILE *out, const struct control_ops *ops, char *line)
{
	char *arg = strchr(line, ' ');
	struct blkserv_device *dev = NULL;

	if (arg)
		*arg++ = '\0';
	if (strcmp(line, "list") == 0) {
		fprintf(out, "ok\n");
		for (size_t i = 0; i < ops->count(ops->userdata); i++)
			put_device(out, ops->device_at(ops->userdata, i));
		return;
	}
	if (strcmp(line, "reload") == 0) {
		char *error = NULL;
		int r = ops->reload(ops->userdata, &error);
		if (r < 0)
			fprintf(out, "error %s\n", error ? error : strerror(-r));
		else
			fprintf(out, "ok\n");
		free(error);
		return;
	}
	if (strcmp(line, "scrub") == 0 || strcmp(line, "scrub-status") == 0) {
		answer_scrub(out, arg ? find(ops, arg) : NULL, arg, strcmp(line, "scrub") == 0);
		return;
	}
	if ((strcmp(line, "status") == 0 || strcmp(line, "stats") == 0) && arg)
		dev = find(ops, arg);
	if (!dev) {
		fprintf(out, arg ? "error no device named '%s'\n" : "error unknown request '%s'\n", arg ? arg : line);
		return;
	}
	fprintf(out, "ok\n");
	if (strcmp(line, "status") == 0) {
		put_device(out, dev);
		put_caps(out, dev);
	} else {
		put_stats(out, dev);
	}
}

void control_serve(int listen_fd, const struct control_ops *ops)
{
	_cleanup_close_ int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	struct timeval tv = { .tv_sec = 2 };
	char line[256];
	FILE *out;
	ssize_t n;

	if (fd < 0)
		return;
	/* The main loop serves this: a silent client must not stall it. */
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (!peer_allowed(fd))
		return;
	n = recv(fd, line, sizeof(line) - 1, 0);
	if (n <= 0)
		return;
	line[n] = '\0';
	line[strcspn(line, "\r\n")] = '\0';
	out = fdopen(dup(fd), "w");
	if (!out)
		return;
	answer(out, ops, line);
	fclose(out);
}

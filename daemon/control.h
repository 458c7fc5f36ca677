/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The control socket: RUNTIME_DIR/control.sock, root-only, one JSON request
 * line per connection, answered with one JSON object (control.c). */
#ifndef BLKSERVD_CONTROL_H
#define BLKSERVD_CONTROL_H

#include <stddef.h>

/* The longest request line, its '\n' included. */
#define CONTROL_MAX_REQUEST 4096

struct blkserv_device;
struct json_object;

/* What the control socket asks of the daemon. */
struct control_ops {
	void *userdata;
	size_t (*count)(void *userdata);
	struct blkserv_device *(*device_at)(void *userdata, size_t i);
	/* 0, or -errno with a message in *ret_error (malloc'd).  Devices that
	 * failed to start or were kept as they were go into @answer with
	 * control_report_failed() and control_report_warning(). */
	int (*reload)(void *userdata, struct json_object *answer, char **ret_error);
	/* 0 if @binary (NULL: the daemon's own path) accepted the config and
	 * the daemon will execute it once the answer is sent; else -errno
	 * with a message in *ret_error. */
	int (*upgrade)(void *userdata, const char *binary, char **ret_error);
};

/* Listen on @path (replacing a stale socket); returns the fd or -errno. */
int control_listen(const char *path);
/* Serve one connection waiting on @listen_fd. */
void control_serve(int listen_fd, const struct control_ops *ops);

/* Tell the client that @device failed (its "failed" list) or that the
 * command did not do all it should to it (its "warnings").  @answer may
 * be NULL (no client: a reload by SIGHUP), then nothing is done. */
void control_report_failed(struct json_object *answer, const char *device, const char *error);
void control_report_warning(struct json_object *answer, const char *device, const char *warning);

#endif

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The control socket: RUNTIME_DIR/control.sock, root-only, one request
 * line per connection, answered with tab-separated key=value records. */
#ifndef BLKSERVD_CONTROL_H
#define BLKSERVD_CONTROL_H

#include <stddef.h>

struct blkserv_device;

/* What the control socket asks of the daemon. */
struct control_ops {
	void *userdata;
	size_t (*count)(void *userdata);
	struct blkserv_device *(*device_at)(void *userdata, size_t i);
	/* 0, or -errno with a message in *ret_error (malloc'd). */
	int (*reload)(void *userdata, char **ret_error);
	/* 0 if @binary (NULL: the daemon's own path) accepted the config and
	 * the daemon will execute it once the answer is sent; else -errno
	 * with a message in *ret_error. */
	int (*upgrade)(void *userdata, const char *binary, char **ret_error);
};

/* Listen on @path (replacing a stale socket); returns the fd or -errno. */
int control_listen(const char *path);
/* Serve one connection waiting on @listen_fd. */
void control_serve(int listen_fd, const struct control_ops *ops);

#endif

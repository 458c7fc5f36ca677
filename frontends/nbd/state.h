/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * state.h: the kernel nbd frontend's state file, RUNTIME_DIR/nbd-NAME.state.
 * It records which /dev/nbdN a daemon connected for a config device and how
 * it left it, so the next daemon takes the same device over instead of
 * connecting another one.
 */
#ifndef BLKSERV_NBD_STATE_H
#define BLKSERV_NBD_STATE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum nbd_handover {
	NBD_HANDOVER_NONE,  /* being served (a daemon that dies leaves this) */
	NBD_HANDOVER_CLEAN, /* drained at a request boundary, server ends in the fd store */
	NBD_HANDOVER_DEAD,  /* server ends shut down: the next daemon reconnects */
};

struct nbd_state {
	uint32_t index;       /* /dev/nbdINDEX */
	uint32_t connections; /* sockets the kernel device has */
	uint64_t size;        /* bytes */
	uint32_t block_size;
	uint32_t flags;   /* transmission flags given to the kernel */
	uint64_t timeout; /* seconds, as given to the kernel */
	uint64_t dead_conn_timeout;
	char backend[128]; /* the kernel's backend identifier: the device name */
	enum nbd_handover handover;
	pid_t pid; /* the daemon that wrote it */
};

/* RUNTIME_DIR/nbd-NAME.state into *ret (malloc'd). */
int nbd_state_path(const char *runtime_dir, const char *name, char **ret);
/* 0, -ENOENT (no file), -EINVAL (does not parse: a key missing, a bad
 * value) or another -errno. */
int nbd_state_read(const char *path, struct nbd_state *ret);
/* Atomically (a temporary file, fsync, rename): 0 or -errno. */
int nbd_state_write(const char *path, const struct nbd_state *s);
const char *nbd_handover_name(enum nbd_handover h);

#endif

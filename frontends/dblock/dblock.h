/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The dblock frontend's internals (see dblock.c). */
#ifndef BLKSERV_FRONTEND_DBLOCK_H
#define BLKSERV_FRONTEND_DBLOCK_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "blkserv/blkserv-plugin.h"
#include "kmod/dblock-abi.h"

#define DBLOCK_MAX_THREADS 64
/* Kernel-side request queue of devices made with the extended create. */
#define DBLOCK_MAX_QUEUE_DEPTH 1024

struct dblock_options {
	char name[DBLOCK_MAX_NAME_LENGTH + 1]; /* /dev/NAME */
	uint32_t threads;
	uint32_t timeout; /* seconds */
	uint32_t queue_depth;
	uint32_t max_io_size; /* bytes, a multiple of 4096, at most 1 MiB */
	bool extensions;
};

/* What one thread has served (read after it exited). */
struct dblock_counters {
	uint64_t ops[BLKSERV_OP__MAX];
	uint64_t fua;
	uint64_t errors;
};

struct dblock;

struct dblock_thread {
	struct dblock *d;
	unsigned index;
	pthread_t thread;
	bool running;            /* pthread_create succeeded, not joined yet */
	int fd;                  /* /dev/NAME-ctl */
	struct blkserv_queue *q; /* made and freed on the thread */
	struct blkserv_request *req;
	struct dblock_operation *op; /* + DBLOCK_MAX_DATA_BYTES of data */
	bool req_done;
	int req_result;
	bool process_warned;
	int setup_result;
	_Atomic bool exited;
	_Atomic bool failed; /* stopped serving before the device went away */
	struct dblock_counters counters;
};

struct dblock {
	struct blkserv_device *dev;
	struct dblock_options opt;
	uint64_t size;
	uint64_t caps;
	int ctl_fd;    /* /dev/dblockctl */
	bool extended; /* the module has our extensions and we use them */
	uint32_t module_features;
	uint32_t module_abi; /* DBLOCK_ABI_VERSION of the module; 0: the original */
	uint32_t features;   /* granted to the device */
	uint32_t handle_id;
	bool created;     /* a kernel device exists that we serve (made or taken over) */
	char *state_path; /* RUNTIME_DIR/dblock-NAME.state */
	bool leaked;      /* a thread did not exit: keep what it uses */
	_Atomic bool stopping;
	struct dblock_thread *threads;
	sem_t ready;
};

/* dblock-options.c */
int dblock_options_parse(struct blkserv_device *dev, const struct blkserv_config *cfg, struct dblock_options *o);
/* The plugin's option_checks and validate (see struct blkserv_frontend). */
extern const struct blkserv_option_check dblock_option_checks[];
int dblock_validate(const struct blkserv_config *cfg);
/* The extensions a device wants for a backend with @caps. */
uint32_t dblock_wanted_features(uint64_t caps);
/* "flush fua discard" for logs; "none" when 0. */
void dblock_features_string(uint32_t features, char *buf, size_t len);

/* dblock-kernel.c: the module's control device. */
int dblock_control_open(struct dblock *d);
/* Fill d->extended and d->module_features. */
void dblock_probe_features(struct dblock *d);
int dblock_create_device(struct dblock *d);
void dblock_destroy_device(struct dblock *d);
int dblock_open_request_node(struct dblock *d, int *ret_fd);
/* 0 if no one has /dev/NAME open, -EBUSY if someone has. */
int dblock_device_idle(struct dblock *d);

/* Ask the server thread on @fd to leave without destroying the device
 * (ABI 2): 0, or -errno (-EINVAL: the module cannot). */
int dblock_detach(struct dblock *d, int fd);
/* Without a write cache every completed write must be durable. */
int dblock_plan_durability(struct dblock *d, uint32_t features);

/* dblock-state.c: the takeover state file. */
struct dblock_state {
	char name[DBLOCK_MAX_NAME_LENGTH + 1]; /* the kernel device */
	uint32_t handle_id;
	uint64_t size;
	uint32_t block_size;
	uint32_t features; /* DBLOCK_FEATURE_* granted */
	int32_t pid;       /* of the daemon that serves it */
};
int dblock_state_path(const char *runtime_dir, const char *name, char **ret);
/* -ENOENT: no file; -EINVAL: it does not parse or lacks a key. */
int dblock_state_read(const char *path, struct dblock_state *ret);
int dblock_state_write(const char *path, const struct dblock_state *s);

/* dblock-takeover.c */
int dblock_handle_by_name(struct dblock *d, const char *name, uint32_t *ret);
/* The previous daemon's device, if any: 1 taken over (d->handle_id,
 * d->features, d->created set), 0 none (create one), <0 failed, logged. */
int dblock_try_takeover(struct dblock *d);
int dblock_save_state(struct dblock *d);
void dblock_remove_state(struct dblock *d);

/* dblock-serve.c: the server threads. */
#define DBLOCK_SERVE_EXIT 1
/* Serve the kernel request in t->op and leave the answer in it.  Returns
 * 0 (answer ready, or nothing to answer), DBLOCK_SERVE_EXIT (the device is
 * gone) or -EPROTO (a request we do not understand; t->op asks for the
 * next one instead). */
int dblock_serve_op(struct dblock_thread *t);
/* Allocate the op buffer (the queue is made by the thread itself). */
int dblock_thread_alloc(struct dblock_thread *t);
void dblock_thread_free(struct dblock_thread *t);
void *dblock_thread_main(void *arg);

#endif

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The ublk frontend's internals, shared by its files:
 *   ublk.c        the plugin: options, start (fresh or recovery), stop
 *   ublk-ctrl.c   control commands on /dev/ublk-control (an SQE128 io_uring)
 *   ublk-queue.c  one thread per queue serving FETCH/COMMIT_AND_FETCH
 *   ublk-params.c option ranges and SET_PARAMS contents (pure, unit-tested)
 *   ublk-state.c  the recovery state file under the runtime directory
 */
#ifndef BLKSERV_UBLK_H
#define BLKSERV_UBLK_H

#include <liburing.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "blkserv/blkserv-plugin.h"
#include "ublk-uapi.h"

#define UBLK_CONTROL_PATH "/dev/ublk-control"
/* Marks a device as created by blkservd in dev_info.ublksrv_flags, which the
 * driver keeps for us: recovery never adopts someone else's device. */
#define UBLK_BLKSERV_MARK 0x626c6b7376ULL /* "blksv" */

#define UBLK_DEFAULT_DEPTH 128
#define UBLK_DEFAULT_MAX_IO (512u << 10)
#define UBLK_DEFAULT_MAX_QUEUES 16
#define UBLK_MAX_QUEUES 64

/* ---- options and parameters (ublk-params.c) ------------------------ */

struct ublk_options {
	uint32_t queues;
	uint32_t depth;
	uint32_t max_io_size;
	uint32_t dev_id; /* UBLK_DEV_ID_AUTO: the kernel picks */
	bool recovery;
};

/* Read and range-check the options; logs what is wrong, naming the option. */
int ublk_options_parse(struct blkserv_device *dev, const struct blkserv_config *cfg, struct ublk_options *ret);
/* The plugin's option_checks and validate (see struct blkserv_frontend). */
extern const struct blkserv_option_check ublk_option_checks[];
int ublk_validate(const struct blkserv_config *cfg);
/* The feature flags ADD_DEV asks for. */
uint64_t ublk_wanted_flags(const struct ublk_options *o);
/* SET_PARAMS contents for a device of @size bytes, @block_size, @caps. */
int ublk_build_params(uint64_t size, uint32_t block_size, uint64_t caps, uint32_t max_io_size,
		      struct bs_ublk_params *ret);
/* "USER_RECOVERY|REISSUE|..." for logs. */
void ublk_flags_string(uint64_t flags, char *buf, size_t len);
const char *ublk_state_name(uint16_t state);

/* ---- control (ublk-ctrl.c) ----------------------------------------- */

struct ublk_ctrl {
	int fd; /* /dev/ublk-control */
	struct io_uring ring;
	bool ring_ok;
};

/* Open /dev/ublk-control; a missing node or driver says `modprobe ublk_drv`. */
int ublk_ctrl_open(struct blkserv_device *dev, struct ublk_ctrl *c);
void ublk_ctrl_close(struct ublk_ctrl *c);
/* One command, waited for (@timeout_ms < 0: no limit).  Returns the CQE result. */
int ublk_ctrl_cmd(struct ublk_ctrl *c, uint32_t cmd_op, const struct bs_ublk_ctrl_cmd *cmd, int timeout_ms);
int ublk_ctrl_get_features(struct ublk_ctrl *c, uint64_t *ret);
int ublk_ctrl_add_dev(struct ublk_ctrl *c, struct bs_ublk_dev_info *info);
int ublk_ctrl_get_dev_info(struct ublk_ctrl *c, uint32_t dev_id, struct bs_ublk_dev_info *ret);
int ublk_ctrl_set_params(struct ublk_ctrl *c, uint32_t dev_id, struct bs_ublk_params *p);
int ublk_ctrl_get_params(struct ublk_ctrl *c, uint32_t dev_id, struct bs_ublk_params *ret);
/* A simple command with data[0] = @data (START_DEV, STOP_DEV, DEL_DEV, ...). */
int ublk_ctrl_simple(struct ublk_ctrl *c, uint32_t cmd_op, uint32_t dev_id, uint64_t data, int timeout_ms);

/* ---- recovery state (ublk-state.c) --------------------------------- */

struct ublk_state {
	uint32_t dev_id;
	uint32_t queues;
	uint32_t depth;
	uint32_t max_io_size;
	uint64_t size;
	uint32_t block_size;
	int32_t pid;
};

/* RUNTIME_DIR/ublk-NAME.state */
int ublk_state_path(const char *runtime_dir, const char *name, char **ret);
/* 0, -ENOENT (no file) or -EINVAL (unreadable: the caller logs and removes it). */
int ublk_state_read(const char *path, struct ublk_state *ret);
/* Atomically (write to a temporary file, fsync, rename). */
int ublk_state_write(const char *path, const struct ublk_state *s);

/* ---- queues (ublk-queue.c) ----------------------------------------- */

struct ublk;

struct ublk_queue {
	struct ublk *u;
	uint16_t q_id;
	pthread_t thread;
	bool thread_started;

	/* Written by the queue thread, read by the main thread. */
	_Atomic int setup_result; /* 1 while setting up, then 0 or -errno */
	_Atomic bool running;     /* loop entered and not yet left */
	_Atomic bool failed;      /* a command was rejected: the queue cannot serve */
	_Atomic uint64_t loop_ns; /* last pass of the loop (health) */
	_Atomic bool stalled;     /* a request has been with the backend too long */
	_Atomic bool stop;        /* main → thread: finish in-flight work, then exit */

	/* Owned by the queue thread. */
	struct blkserv_queue *q;
	const struct bs_ublk_io_desc *descs;
	size_t descs_len;
	char *bufs;
	size_t bufs_len;
	struct ublk_tag *tags;
	uint32_t nr_aborted;
	uint32_t *pending; /* tags whose COMMIT found no SQE yet */
	uint32_t nr_pending;
	uint64_t nr_served; /* read by the main thread after the join */
	uint64_t scan_ns;   /* last look for stalled requests */
};

/* The frontend instance. */
struct ublk {
	struct blkserv_device *dev;
	struct ublk_options opt;
	char *state_path;

	struct ublk_ctrl ctrl;
	uint64_t features;            /* GET_FEATURES, 0 if the kernel predates it */
	struct bs_ublk_dev_info info; /* as the kernel negotiated it */
	bool have_dev;                /* a kernel device exists that we own */
	bool live;                    /* START_DEV or END_USER_RECOVERY succeeded */
	int cdev_fd;                  /* /dev/ublkcN */
	char bdev_path[64];
	uint64_t size;
	uint32_t block_size;
	uint64_t caps;

	uint32_t nr_queues;
	struct ublk_queue *queues;
	sem_t ready; /* posted by each queue thread when its setup is over */
};

/* Start every queue thread and wait until each has its FETCHes submitted. */
int ublk_queues_start(struct ublk *u);
/* Ask every thread to stop, join them.  Queue rings and mappings are gone after. */
void ublk_queues_stop(struct ublk *u);
/* Log how many requests each queue served (after ublk_queues_stop). */
void ublk_queues_log_counts(struct ublk *u);
/* 0 if every queue thread is alive and looping. */
int ublk_queues_health(struct ublk *u);

#endif

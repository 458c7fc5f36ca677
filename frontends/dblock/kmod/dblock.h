/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * dblock.ko internals: a block device per "create", served from userspace
 * through blocking ioctls on /dev/NAME-ctl (see dblock-abi.h).
 *
 * Data path.  blk-mq queue_rq puts a request on the device's pending list
 * and wakes one server thread.  A thread in DEVICE_OPERATION takes it, copies
 * it out (DISPATCHING), and it waits for the answer (DISPATCHED).  The answer
 * names its operation_id, which encodes the request's tag: the thread
 * copies the read data in (RESPONDING) and ends the request.  dev->lock
 * protects every state change; whoever moves a request to DONE ends it, after
 * dropping the lock.  Requests owned by a thread (DISPATCHING, RESPONDING)
 * are only ever ended by that thread, so the timeout handler and destroy skip
 * them: the owner finishes without sleeping on anything but user memory.
 */
#ifndef DBLOCK_H
#define DBLOCK_H

#include <linux/blk-mq.h>
#include <linux/blkdev.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/miscdevice.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/wait.h>

#include "dblock-abi.h"

#define DBLOCK_DEFAULT_QUEUE_DEPTH 128
#define DBLOCK_MAX_QUEUE_DEPTH 1024
/* operation_id = sequence << DBLOCK_TAG_BITS | tag: unique among requests in
 * flight, and a late answer to a reused tag does not match. */
#define DBLOCK_TAG_BITS 10
#define DBLOCK_TAG_MASK ((1u << DBLOCK_TAG_BITS) - 1)

enum dblock_cmd_state {
	DBLOCK_CMD_IDLE,
	DBLOCK_CMD_QUEUED,      /* on dev->pending */
	DBLOCK_CMD_DISPATCHING, /* a thread copies it out */
	DBLOCK_CMD_DISPATCHED,  /* userspace has it */
	DBLOCK_CMD_RESPONDING,  /* a thread copies the answer in */
	DBLOCK_CMD_DONE,        /* being ended */
};

/* blk-mq's per-request driver data. */
struct dblock_cmd {
	struct list_head node;  /* dev->pending, or a local list while failing */
	struct file *owner;     /* the -ctl file it was dispatched through */
	u32 op_id;
	enum dblock_cmd_state state;
};

struct dblock_stats {
	u64 read, write, flush, discard, write_zeroes, fua;
	u64 timeouts, errors, requeued;
};

struct dblock_dev {
	struct kref ref;          /* the device list, each open -ctl file */
	struct list_head node;    /* dblock_devices, under dblock_ctl_mutex */
	u32 handle_id;
	char name[DBLOCK_MAX_NAME_LENGTH + 1];
	char ctl_name[DBLOCK_MAX_NAME_LENGTH + sizeof(DBLOCK_CTL_SUFFIX)];
	u64 size;
	u32 timeout_seconds;
	u32 max_segments;
	u32 queue_depth;
	u32 features;             /* DBLOCK_FEATURE_* granted */

	struct miscdevice ctl;
	bool ctl_registered;
	struct blk_mq_tag_set tag_set;
	bool tag_set_allocated;
	struct gendisk *disk;
	bool disk_added;

	spinlock_t lock;
	bool dead;                /* destroyed: no more requests, servers exit */
	u32 seq;
	struct list_head pending;
	struct dblock_cmd **cmds; /* [tag]: requests in flight */
	struct dblock_stats stats;
	wait_queue_head_t wq;     /* server threads waiting for a request */
	atomic_t waiters;
};

/* An open /dev/NAME-ctl file (its private_data). */
struct dblock_server {
	struct dblock_dev *dev;
	bool detached;            /* DEVICE_DETACH: serve no more through this file */
};

/* What a device is created with (both create ioctls). */
struct dblock_create_args {
	char name[DBLOCK_MAX_NAME_LENGTH + 1];
	u32 block_size;
	u64 blocks;
	u32 timeout_seconds;
	u32 max_segments;
	u32 queue_depth;
	u32 features;
};

extern struct mutex dblock_ctl_mutex;
extern unsigned int dblock_default_queue_depth;

/* dblock-dev.c: devices (callers hold dblock_ctl_mutex). */
int dblock_create(const struct dblock_create_args *args, u32 *ret_handle_id);
int dblock_destroy(struct dblock_dev *dev, bool force);
int dblock_destroy_all(bool force);
struct dblock_dev *dblock_find_by_id(u32 handle_id);
struct dblock_dev *dblock_find_by_name(const char *name);
void dblock_put(struct dblock_dev *dev);
void dblock_get(struct dblock_dev *dev);
extern const struct blk_mq_ops dblock_mq_ops;

/* dblock-io.c: the server side. */
extern const struct file_operations dblock_ctl_fops;
blk_status_t dblock_queue_rq(struct blk_mq_hw_ctx *hctx, const struct blk_mq_queue_data *bd);
enum blk_eh_timer_return dblock_timeout(struct request *rq);
/* Mark @dev dead, fail every request not owned by a thread, wake every server. */
void dblock_kill(struct dblock_dev *dev);

/* dblock-sysfs.c */
extern const struct attribute_group *dblock_disk_groups[];

#endif /* DBLOCK_H */

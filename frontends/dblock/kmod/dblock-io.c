// SPDX-License-Identifier: GPL-2.0-only
/*
 * dblock.ko: the data path.  blk-mq hands requests to queue_rq, which queues
 * them for the server threads; a server thread's DEVICE_OPERATION ioctl
 * answers the request it had (if any), then takes the next one and copies it
 * out.  See dblock.h for the request states.
 */
#include <linux/blk-mq.h>
#include <linux/fs.h>
#include <linux/highmem.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/uio.h>

#include "dblock.h"

/* The part of struct dblock_operation before the metadata. */
struct op_head {
	__u32 handle_id;
	__u32 reserved;
	struct dblock_header header;
	union dblock_packet packet;
};
static_assert(sizeof(struct op_head) == offsetof(struct dblock_operation, metadata));

/* take_request(): the device is gone; the file was detached. */
#define DBLOCK_GONE 1
#define DBLOCK_DETACHED 2

static inline struct dblock_cmd *cmd_of(struct request *rq)
{
	return blk_mq_rq_to_pdu(rq);
}

static inline struct request *rq_of(struct dblock_cmd *cmd)
{
	return blk_mq_rq_from_pdu(cmd);
}

/* Under dev->lock: @cmd leaves flight; the caller ends it after unlocking. */
static void retire(struct dblock_dev *dev, struct dblock_cmd *cmd)
{
	dev->cmds[rq_of(cmd)->tag] = NULL;
	cmd->state = DBLOCK_CMD_DONE;
	cmd->owner = NULL;
}

/* ---- blk-mq ------------------------------------------------------------ */

static bool op_is_served(const struct dblock_dev *dev, const struct request *rq)
{
	switch (req_op(rq)) {
	case REQ_OP_READ:
	case REQ_OP_WRITE:
		return true;
	case REQ_OP_FLUSH:
		return dev->features & DBLOCK_FEATURE_FLUSH;
	case REQ_OP_DISCARD:
		return dev->features & DBLOCK_FEATURE_DISCARD;
	case REQ_OP_WRITE_ZEROES:
		return dev->features & DBLOCK_FEATURE_WRITE_ZEROES;
	default:
		return false;
	}
}

static void count_request(struct dblock_stats *s, const struct request *rq)
{
	switch (req_op(rq)) {
	case REQ_OP_READ:
		s->read++;
		break;
	case REQ_OP_WRITE:
		s->write++;
		if (rq->cmd_flags & REQ_FUA)
			s->fua++;
		break;
	case REQ_OP_FLUSH:
		s->flush++;
		break;
	case REQ_OP_DISCARD:
		s->discard++;
		break;
	default:
		s->write_zeroes++;
		break;
	}
}

/* Under dev->lock: a nonzero id unique among requests in flight. */
static u32 new_op_id(struct dblock_dev *dev, unsigned int tag)
{
	u32 id;

	do
		id = (++dev->seq << DBLOCK_TAG_BITS) | tag;
	while (id == 0);
	return id;
}

blk_status_t dblock_queue_rq(struct blk_mq_hw_ctx *hctx, const struct blk_mq_queue_data *bd)
{
	struct request *rq = bd->rq;
	struct dblock_dev *dev = hctx->queue->queuedata;
	struct dblock_cmd *cmd = cmd_of(rq);
	unsigned long flags;

	if (!op_is_served(dev, rq))
		return BLK_STS_NOTSUPP;
	blk_mq_start_request(rq);
	spin_lock_irqsave(&dev->lock, flags);
	if (dev->dead) {
		spin_unlock_irqrestore(&dev->lock, flags);
		return BLK_STS_IOERR;
	}
	cmd->op_id = new_op_id(dev, rq->tag);
	cmd->owner = NULL;
	cmd->state = DBLOCK_CMD_QUEUED;
	dev->cmds[rq->tag] = cmd;
	list_add_tail(&cmd->node, &dev->pending);
	count_request(&dev->stats, rq);
	spin_unlock_irqrestore(&dev->lock, flags);
	wake_up(&dev->wq); /* one server thread */
	return BLK_STS_OK;
}

enum blk_eh_timer_return dblock_timeout(struct request *rq)
{
	struct dblock_dev *dev = rq->q->queuedata;
	struct dblock_cmd *cmd = cmd_of(rq);
	enum dblock_cmd_state state;
	unsigned long flags;

	spin_lock_irqsave(&dev->lock, flags);
	state = cmd->state;
	if (state == DBLOCK_CMD_QUEUED)
		list_del_init(&cmd->node);
	if (state == DBLOCK_CMD_QUEUED || state == DBLOCK_CMD_DISPATCHED) {
		retire(dev, cmd);
		dev->stats.timeouts++;
	}
	spin_unlock_irqrestore(&dev->lock, flags);

	switch (state) {
	case DBLOCK_CMD_DISPATCHING:
	case DBLOCK_CMD_RESPONDING:
		/* A server thread is copying it right now and will end it. */
		return BLK_EH_RESET_TIMER;
	case DBLOCK_CMD_QUEUED:
	case DBLOCK_CMD_DISPATCHED:
		pr_warn_ratelimited("dblock: %s: request %u %s within %u s: failing it with EIO\n",
				    dev->name, cmd->op_id,
				    state == DBLOCK_CMD_QUEUED ? "was not taken by a server" : "was not answered",
				    dev->timeout_seconds);
		blk_mq_end_request(rq, BLK_STS_IOERR);
		return BLK_EH_DONE;
	default:
		return BLK_EH_DONE; /* being ended by someone else */
	}
}

void dblock_kill(struct dblock_dev *dev)
{
	struct dblock_cmd *cmd, *next;
	LIST_HEAD(failed);
	u32 tag;

	spin_lock_irq(&dev->lock);
	dev->dead = true;
	for (tag = 0; tag < dev->queue_depth; tag++) {
		cmd = dev->cmds[tag];
		if (!cmd)
			continue;
		if (cmd->state == DBLOCK_CMD_QUEUED)
			list_del_init(&cmd->node);
		else if (cmd->state != DBLOCK_CMD_DISPATCHED)
			continue; /* its owner ends it */
		retire(dev, cmd);
		list_add_tail(&cmd->node, &failed);
	}
	spin_unlock_irq(&dev->lock);

	list_for_each_entry_safe(cmd, next, &failed, node) {
		list_del_init(&cmd->node);
		blk_mq_end_request(rq_of(cmd), BLK_STS_IOERR);
	}
	wake_up_all(&dev->wq); /* every server thread of this device */
}

/* ---- copying to and from the server's buffer ---------------------------- */

static int copy_write_data(struct request *rq, void __user *data)
{
	struct req_iterator it;
	struct iov_iter iter;
	struct bio_vec bv;
	int r;

	r = import_ubuf(ITER_DEST, data, blk_rq_bytes(rq), &iter);
	if (r)
		return r;
	rq_for_each_segment(bv, rq, it)
		if (copy_page_to_iter(bv.bv_page, bv.bv_offset, bv.bv_len, &iter) != bv.bv_len)
			return -EFAULT;
	return 0;
}

static int copy_read_data(struct request *rq, const void __user *data)
{
	struct req_iterator it;
	struct iov_iter iter;
	struct bio_vec bv;
	int r;

	r = import_ubuf(ITER_SOURCE, (void __user *)data, blk_rq_bytes(rq), &iter);
	if (r)
		return r;
	rq_for_each_segment(bv, rq, it) {
		if (copy_page_from_iter(bv.bv_page, bv.bv_offset, bv.bv_len, &iter) != bv.bv_len)
			return -EFAULT;
		flush_dcache_page(bv.bv_page);
	}
	return 0;
}

/* READ and WRITE: one entry per 4 KiB block, as the original's page-sized
 * bio segments; other requests: one entry for the whole range. */
static int put_metadata(struct dblock_segment __user *md, u64 start, u64 len, bool per_block)
{
	struct dblock_segment batch[16];
	unsigned int n = 0;

	if (!per_block) {
		batch[0].start = start;
		batch[0].length = len;
		return copy_to_user(md, batch, sizeof(batch[0])) ? -EFAULT : 0;
	}
	while (len) {
		batch[n].start = start;
		batch[n].length = min_t(u64, len, DBLOCK_BLOCK_SIZE);
		start += batch[n].length;
		len -= batch[n].length;
		if (++n == ARRAY_SIZE(batch) || !len) {
			if (copy_to_user(md, batch, n * sizeof(batch[0])))
				return -EFAULT;
			md += n;
			n = 0;
		}
	}
	return 0;
}

static u32 request_code(const struct request *rq)
{
	switch (req_op(rq)) {
	case REQ_OP_READ:
		return DBLOCK_OP_KERNEL_READ_REQUEST;
	case REQ_OP_WRITE:
		return DBLOCK_OP_KERNEL_WRITE_REQUEST;
	case REQ_OP_FLUSH:
		return DBLOCK_OP_KERNEL_FLUSH_REQUEST;
	case REQ_OP_DISCARD:
		return DBLOCK_OP_KERNEL_DISCARD_REQUEST;
	default:
		return DBLOCK_OP_KERNEL_WRITE_ZEROES_REQUEST;
	}
}

static u32 response_code(const struct request *rq)
{
	switch (req_op(rq)) {
	case REQ_OP_READ:
		return DBLOCK_OP_READ_RESPONSE;
	case REQ_OP_WRITE:
		return DBLOCK_OP_WRITE_RESPONSE;
	case REQ_OP_FLUSH:
		return DBLOCK_OP_FLUSH_RESPONSE;
	case REQ_OP_DISCARD:
		return DBLOCK_OP_DISCARD_RESPONSE;
	default:
		return DBLOCK_OP_WRITE_ZEROES_RESPONSE;
	}
}

static u32 request_flags(const struct dblock_dev *dev, const struct request *rq)
{
	u32 flags = 0;

	if (req_op(rq) == REQ_OP_WRITE && (rq->cmd_flags & REQ_FUA) && (dev->features & DBLOCK_FEATURE_FUA))
		flags |= DBLOCK_REQ_FUA;
	if (req_op(rq) == REQ_OP_WRITE_ZEROES && (rq->cmd_flags & REQ_NOUNMAP))
		flags |= DBLOCK_REQ_NOUNMAP;
	return flags;
}

static int put_request(struct dblock_dev *dev, struct dblock_cmd *cmd, struct dblock_operation __user *uop)
{
	struct request *rq = rq_of(cmd);
	u64 start = (u64)blk_rq_pos(rq) << SECTOR_SHIFT;
	u64 len = blk_rq_bytes(rq);
	bool data = req_op(rq) == REQ_OP_READ || req_op(rq) == REQ_OP_WRITE;
	struct op_head head = {};
	u32 nseg = 1;

	if (data)
		nseg = DIV_ROUND_UP(len, DBLOCK_BLOCK_SIZE);
	else if (req_op(rq) == REQ_OP_FLUSH)
		nseg = 0;
	head.handle_id = dev->handle_id;
	head.header.operation = request_code(rq);
	head.header.flags = request_flags(dev, rq);
	head.header.size = req_op(rq) == REQ_OP_WRITE ? len : 0;
	head.packet.request.total_length_of_all_bio_segments = len;
	head.packet.request.number_of_segments = nseg;
	if (copy_to_user(uop, &head, sizeof(head)))
		return -EFAULT;
	if (nseg && put_metadata(uop->metadata, start, len, data))
		return -EFAULT;
	if (put_user(0, &uop->error) || put_user(cmd->op_id, &uop->operation_id))
		return -EFAULT;
	if (req_op(rq) == REQ_OP_WRITE)
		return copy_write_data(rq, uop->data);
	return 0;
}

/* A reply with no request: 8086 (destroyed) or 40 (a signal). */
static int put_notice(struct dblock_dev *dev, struct dblock_operation __user *uop, u32 code, int signal)
{
	struct op_head head = {};

	head.handle_id = dev->handle_id;
	head.header.operation = code;
	head.header.signal_number = signal;
	if (copy_to_user(uop, &head, sizeof(head)) || put_user(0, &uop->error) ||
	    put_user(0, &uop->operation_id))
		return -EFAULT;
	return 0;
}

/* The first signal that interrupted us; left pending for delivery. */
static int pending_signal(void)
{
	sigset_t pending;
	int sig, found = 0;

	spin_lock_irq(&current->sighand->siglock);
	sigorsets(&pending, &current->pending.signal, &current->signal->shared_pending.signal);
	for (sig = 1; sig < _NSIG && !found; sig++)
		if (sigismember(&pending, sig) && !sigismember(&current->blocked, sig))
			found = sig;
	spin_unlock_irq(&current->sighand->siglock);
	return found;
}

/* ---- the server's ioctl ---------------------------------------------------- */

static blk_status_t answer_status(s32 error)
{
	if (!error)
		return BLK_STS_OK;
	if (error < 0 && error > -MAX_ERRNO)
		return errno_to_blk_status(error);
	return BLK_STS_IOERR; /* the original: any nonzero error is EIO */
}

/* The request @op_id names, now RESPONDING and ours; NULL if none waits. */
static struct dblock_cmd *claim_answered(struct dblock_dev *dev, u32 op_id)
{
	u32 tag = op_id & DBLOCK_TAG_MASK;
	struct dblock_cmd *cmd = NULL;

	spin_lock_irq(&dev->lock);
	if (tag < dev->queue_depth)
		cmd = dev->cmds[tag];
	if (cmd && cmd->op_id == op_id && cmd->state == DBLOCK_CMD_DISPATCHED)
		cmd->state = DBLOCK_CMD_RESPONDING;
	else
		cmd = NULL;
	spin_unlock_irq(&dev->lock);
	return cmd;
}

static void finish(struct dblock_dev *dev, struct dblock_cmd *cmd, blk_status_t status)
{
	spin_lock_irq(&dev->lock);
	retire(dev, cmd);
	if (status)
		dev->stats.errors++;
	spin_unlock_irq(&dev->lock);
	blk_mq_end_request(rq_of(cmd), status);
}

static int answer(struct dblock_dev *dev, struct dblock_operation __user *uop, u32 code, s32 error, u32 op_id)
{
	struct dblock_cmd *cmd = claim_answered(dev, op_id);
	blk_status_t status = answer_status(error);
	struct request *rq;
	int r = 0;

	if (!cmd) {
		/* Timed out or failed meanwhile, or a bogus id: as the
		 * original, log it and go on to wait for work. */
		pr_info_ratelimited("dblock: %s: answer to operation_id %u, which is not waiting: ignored\n",
				    dev->name, op_id);
		return 0;
	}
	rq = rq_of(cmd);
	if (code != response_code(rq)) {
		pr_warn_ratelimited("dblock: %s: answer %u to a request that wants %u: failing it\n",
				    dev->name, code, response_code(rq));
		status = BLK_STS_IOERR;
	}
	if (status == BLK_STS_OK && req_op(rq) == REQ_OP_READ)
		r = copy_read_data(rq, uop->data);
	finish(dev, cmd, r ? BLK_STS_IOERR : status);
	return r;
}

static int take_request(struct dblock_dev *dev, struct file *file, struct dblock_cmd **ret)
{
	struct dblock_server *srv = file->private_data;
	int r;

	atomic_inc(&dev->waiters);
	do {
		if (wait_event_interruptible_exclusive(dev->wq, READ_ONCE(dev->dead) || READ_ONCE(srv->detached) ||
								 !list_empty_careful(&dev->pending))) {
			r = -EINTR;
			break;
		}
		spin_lock_irq(&dev->lock);
		r = -EAGAIN;
		if (dev->dead) {
			r = DBLOCK_GONE;
		} else if (READ_ONCE(srv->detached)) {
			r = DBLOCK_DETACHED;
		} else if (!list_empty(&dev->pending)) {
			*ret = list_first_entry(&dev->pending, struct dblock_cmd, node);
			list_del_init(&(*ret)->node);
			(*ret)->state = DBLOCK_CMD_DISPATCHING;
			(*ret)->owner = file;
			r = 0;
		}
		spin_unlock_irq(&dev->lock);
	} while (r == -EAGAIN);
	atomic_dec(&dev->waiters);
	/* We may have taken the wake-up meant for a pending request: pass it on. */
	if ((r == -EINTR || r == DBLOCK_DETACHED) && !list_empty_careful(&dev->pending))
		wake_up(&dev->wq);
	return r;
}

/* After copying @cmd out (@r: how that went): it waits for its answer now,
 * unless the copy failed or the device died meanwhile. */
static int dispatched(struct dblock_dev *dev, struct dblock_cmd *cmd, int r,
		      struct dblock_operation __user *uop)
{
	bool fail;

	spin_lock_irq(&dev->lock);
	fail = r || dev->dead;
	if (fail) {
		retire(dev, cmd);
		dev->stats.errors++;
	} else {
		cmd->state = DBLOCK_CMD_DISPATCHED;
	}
	spin_unlock_irq(&dev->lock);
	if (!fail)
		return 0;
	blk_mq_end_request(rq_of(cmd), BLK_STS_IOERR);
	return r ? r : put_notice(dev, uop, DBLOCK_OP_KERNEL_USERSPACE_EXIT, 0);
}

static long wait_and_dispatch(struct dblock_dev *dev, struct file *file, struct dblock_operation __user *uop)
{
	struct dblock_cmd *cmd;
	int r;

	r = take_request(dev, file, &cmd);
	if (r == -EINTR) {
		r = put_notice(dev, uop, DBLOCK_OP_KERNEL_BLOCK_FOR_REQUEST, pending_signal());
		return r ? r : -EINTR;
	}
	if (r == DBLOCK_GONE)
		return put_notice(dev, uop, DBLOCK_OP_KERNEL_USERSPACE_EXIT, 0);
	if (r == DBLOCK_DETACHED)
		return put_notice(dev, uop, DBLOCK_OP_KERNEL_DETACHED, 0);
	r = put_request(dev, cmd, uop);
	return dispatched(dev, cmd, r, uop);
}

static long serve(struct dblock_dev *dev, struct file *file, struct dblock_operation __user *uop,
		  const struct op_head *head, s32 error, u32 op_id)
{
	u32 code = head->header.operation;
	int r;

	switch (code) {
	case DBLOCK_OP_BLOCK_FOR_REQUEST:
	case DBLOCK_OP_KERNEL_BLOCK_FOR_REQUEST: /* what an EINTR left in the buffer */
		break;
	case DBLOCK_OP_READ_RESPONSE:
	case DBLOCK_OP_WRITE_RESPONSE:
	case DBLOCK_OP_FLUSH_RESPONSE:
	case DBLOCK_OP_DISCARD_RESPONSE:
	case DBLOCK_OP_WRITE_ZEROES_RESPONSE:
		r = answer(dev, uop, code, error, op_id);
		if (r)
			return r;
		break;
	default:
		return -EINVAL;
	}
	return wait_and_dispatch(dev, file, uop);
}

/* The device a call is for: the file's, or (the original allowed it) any
 * live device named by handle_id.  A destroyed device is ENOENT. */
static struct dblock_dev *get_target(struct dblock_dev *own, u32 handle_id)
{
	struct dblock_dev *dev = NULL;

	if (handle_id == own->handle_id) {
		if (READ_ONCE(own->dead))
			return NULL;
		dblock_get(own);
		return own;
	}
	mutex_lock(&dblock_ctl_mutex);
	dev = dblock_find_by_id(handle_id);
	if (dev)
		dblock_get(dev);
	mutex_unlock(&dblock_ctl_mutex);
	return dev;
}

static long device_operation(struct file *file, struct dblock_operation __user *uop)
{
	struct dblock_dev *dev;
	struct op_head head;
	s32 error;
	u32 op_id;
	long r;

	if (copy_from_user(&head, uop, sizeof(head)) || get_user(error, &uop->error) ||
	    get_user(op_id, &uop->operation_id))
		return -EFAULT;
	dev = get_target(((struct dblock_server *)file->private_data)->dev, head.handle_id);
	if (!dev)
		return -ENOENT;
	r = serve(dev, file, uop, &head, error, op_id);
	dblock_put(dev);
	return r;
}

/* This file serves no more; its threads leave, the device stays. */
static long detach(struct file *file)
{
	struct dblock_server *srv = file->private_data;

	WRITE_ONCE(srv->detached, true);
	/* Every waiter rechecks; only this file's ones leave. */
	wake_up_all(&srv->dev->wq);
	return 0;
}

static long ctl_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	switch (cmd) {
	case DBLOCK_IOCTL_DEVICE_PING:
		return 0;
	case DBLOCK_IOCTL_DEVICE_STATUS:
		return -ENODATA;
	case DBLOCK_IOCTL_DEVICE_OPERATION:
		return device_operation(file, (struct dblock_operation __user *)arg);
	case DBLOCK_IOCTL_DEVICE_DETACH:
		return detach(file);
	}
	return -EINVAL;
}

static int ctl_open(struct inode *inode, struct file *file)
{
	/* misc_open() put our miscdevice here and holds misc_mtx, which
	 * destroy's misc_deregister() also takes: the device is alive. */
	struct miscdevice *misc = file->private_data;
	struct dblock_dev *dev = container_of(misc, struct dblock_dev, ctl);
	struct dblock_server *srv = kzalloc(sizeof(*srv), GFP_KERNEL);

	if (!srv)
		return -ENOMEM;
	dblock_get(dev);
	srv->dev = dev;
	file->private_data = srv;
	return nonseekable_open(inode, file);
}

/* The server closing @file died or stopped: its unanswered requests wait
 * for another server (a restarted daemon) until their timeout. */
static void requeue_owned(struct dblock_dev *dev, struct file *file)
{
	struct dblock_cmd *cmd;
	LIST_HEAD(back);
	u32 tag, n = 0;

	spin_lock_irq(&dev->lock);
	for (tag = 0; tag < dev->queue_depth; tag++) {
		cmd = dev->cmds[tag];
		if (!cmd || cmd->state != DBLOCK_CMD_DISPATCHED || cmd->owner != file)
			continue;
		cmd->state = DBLOCK_CMD_QUEUED;
		cmd->owner = NULL;
		list_add_tail(&cmd->node, &back);
		n++;
	}
	list_splice(&back, &dev->pending);
	dev->stats.requeued += n;
	spin_unlock_irq(&dev->lock);
	if (n) {
		pr_info_ratelimited("dblock: %s: a server closed /dev/%s with %u request(s) unanswered: queued again\n",
				    dev->name, dev->ctl_name, n);
		wake_up_all(&dev->wq);
	}
}

static int ctl_release(struct inode *inode, struct file *file)
{
	struct dblock_server *srv = file->private_data;

	requeue_owned(srv->dev, file);
	dblock_put(srv->dev);
	kfree(srv);
	return 0;
}

const struct file_operations dblock_ctl_fops = {
	.owner = THIS_MODULE,
	.open = ctl_open,
	.release = ctl_release,
	.unlocked_ioctl = ctl_ioctl,
	.llseek = noop_llseek,
};

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Control commands: IORING_OP_URING_CMD on /dev/ublk-control through an
 * io_uring of our own with 128-byte SQEs (the driver rejects other rings).
 * liburing 2.3 has no helper for uring_cmd, so the SQE is filled by hand:
 * opcode, fd, cmd_op (the ioctl-encoded UBLK_U_CMD_*) and the 32-byte
 * control command in sqe->cmd.  One command at a time, waited for.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "io-util.h"
#include "ublk.h"

#define CTRL_RING_ENTRIES 4

static void log_open_error(struct blkserv_device *dev, int err)
{
	switch (err) {
	case ENOENT:
	case ENODEV:
	case ENXIO:
		blkserv_error(dev,
			      "no %s: the ublk_drv kernel module is not loaded "
			      "(run `modprobe ublk_drv`; ublk needs Linux 6.5+ with CONFIG_BLK_DEV_UBLK)",
			      UBLK_CONTROL_PATH);
		break;
	case EACCES:
	case EPERM:
		blkserv_error(dev,
			      "cannot open %s: permission denied (ublk devices need root, "
			      "CAP_SYS_ADMIN)",
			      UBLK_CONTROL_PATH);
		break;
	default:
		(void)blkserv_error_errno(dev, err, "cannot open %s: %m", UBLK_CONTROL_PATH);
	}
}

int ublk_ctrl_open(struct blkserv_device *dev, struct ublk_ctrl *c)
{
	int r;

	c->ring_ok = false;
	c->fd = open(UBLK_CONTROL_PATH, O_RDWR | O_CLOEXEC);
	if (c->fd < 0) {
		r = -errno;
		log_open_error(dev, -r);
		return r;
	}
	r = io_uring_queue_init(CTRL_RING_ENTRIES, &c->ring, IORING_SETUP_SQE128);
	if (r < 0) {
		(void)blkserv_error_errno(dev, r, "cannot create an io_uring with 128-byte SQEs for %s: %m%s",
					  UBLK_CONTROL_PATH,
					  r == -EINVAL ? " (the kernel is too old: ublk needs Linux 6.0+)" : "");
		c->fd = safe_close(c->fd);
		return r;
	}
	c->ring_ok = true;
	return 0;
}

void ublk_ctrl_close(struct ublk_ctrl *c)
{
	if (c->ring_ok)
		io_uring_queue_exit(&c->ring);
	c->ring_ok = false;
	c->fd = safe_close(c->fd);
}

static int wait_result(struct ublk_ctrl *c, int timeout_ms)
{
	struct __kernel_timespec ts = kernel_timespec_from_ms(timeout_ms >= 0 ? (uint64_t)timeout_ms : 0);
	struct io_uring_cqe *cqe;
	int r;

	do
		r = timeout_ms < 0 ? io_uring_wait_cqe(&c->ring, &cqe) : io_uring_wait_cqe_timeout(&c->ring, &cqe, &ts);
	while (r == -EINTR);
	if (r < 0)
		return r;
	r = cqe->res;
	io_uring_cqe_seen(&c->ring, cqe);
	return r;
}

/* A command that did not finish in time is still in the kernel: tear the
 * ring down (which cancels it) and make a fresh one for later commands. */
static void reset_ring(struct ublk_ctrl *c)
{
	io_uring_queue_exit(&c->ring);
	c->ring_ok = io_uring_queue_init(CTRL_RING_ENTRIES, &c->ring, IORING_SETUP_SQE128) >= 0;
}

int ublk_ctrl_cmd(struct ublk_ctrl *c, uint32_t cmd_op, const struct bs_ublk_ctrl_cmd *cmd, int timeout_ms)
{
	struct io_uring_sqe *sqe;
	int r;

	if (!c->ring_ok)
		return -EIO;
	sqe = io_uring_get_sqe(&c->ring);
	if (!sqe)
		return -EBUSY;
	memset(sqe, 0, 128);
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = c->fd;
	sqe->cmd_op = cmd_op;
	memcpy(sqe->cmd, cmd, sizeof(*cmd));
	io_uring_sqe_set_data64(sqe, cmd_op);
	r = io_uring_submit(&c->ring);
	if (r < 0)
		return r;
	r = wait_result(c, timeout_ms);
	if (r == -ETIME)
		reset_ring(c);
	return r;
}

/* Commands with a buffer are quick and never time out: the kernel must not
 * write into a buffer we gave up on. */
static int buffer_cmd(struct ublk_ctrl *c, uint32_t cmd_op, uint32_t dev_id, void *buf, size_t len)
{
	struct bs_ublk_ctrl_cmd cmd = {
		.dev_id = dev_id,
		.queue_id = UBLK_QUEUE_ID_NONE,
		.len = (uint16_t)len,
		.addr = (uint64_t)(uintptr_t)buf,
	};

	return ublk_ctrl_cmd(c, cmd_op, &cmd, -1);
}

int ublk_ctrl_get_features(struct ublk_ctrl *c, uint64_t *ret)
{
	uint64_t features = 0;
	int r = buffer_cmd(c, UBLK_U_CMD_GET_FEATURES, 0, &features, UBLK_FEATURES_LEN);

	if (r >= 0)
		*ret = features;
	return r < 0 ? r : 0;
}

int ublk_ctrl_add_dev(struct ublk_ctrl *c, struct bs_ublk_dev_info *info)
{
	int r = buffer_cmd(c, UBLK_U_CMD_ADD_DEV, info->dev_id, info, sizeof(*info));

	return r < 0 ? r : 0;
}

int ublk_ctrl_get_dev_info(struct ublk_ctrl *c, uint32_t dev_id, struct bs_ublk_dev_info *ret)
{
	int r;

	memset(ret, 0, sizeof(*ret));
	r = buffer_cmd(c, UBLK_U_CMD_GET_DEV_INFO, dev_id, ret, sizeof(*ret));
	return r < 0 ? r : 0;
}

int ublk_ctrl_set_params(struct ublk_ctrl *c, uint32_t dev_id, struct bs_ublk_params *p)
{
	int r;

	p->len = sizeof(*p);
	r = buffer_cmd(c, UBLK_U_CMD_SET_PARAMS, dev_id, p, sizeof(*p));
	return r < 0 ? r : 0;
}

int ublk_ctrl_get_params(struct ublk_ctrl *c, uint32_t dev_id, struct bs_ublk_params *ret)
{
	int r;

	memset(ret, 0, sizeof(*ret));
	ret->len = sizeof(*ret);
	r = buffer_cmd(c, UBLK_U_CMD_GET_PARAMS, dev_id, ret, sizeof(*ret));
	return r < 0 ? r : 0;
}

int ublk_ctrl_simple(struct ublk_ctrl *c, uint32_t cmd_op, uint32_t dev_id, uint64_t data, int timeout_ms)
{
	struct bs_ublk_ctrl_cmd cmd = {
		.dev_id = dev_id,
		.queue_id = UBLK_QUEUE_ID_NONE,
		.data = { data },
	};
	int r = ublk_ctrl_cmd(c, cmd_op, &cmd, timeout_ms);

	return r < 0 ? r : 0;
}

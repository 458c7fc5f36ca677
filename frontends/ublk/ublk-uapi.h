/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * ublk-uapi.h: the ublk_drv user ABI as Linux 6.12 has it, written for
 * blkservd from the kernel's documented layouts (include/uapi/linux/
 * ublk_cmd.h).  Debian 12's <linux/ublk_cmd.h> is the 6.1 version: it lacks
 * the ioctl-encoded commands, GET_FEATURES, DEL_DEV_ASYNC, several feature
 * flags and parameter types, and its control command has data[2].  So this
 * header never includes it; constants are guarded with #ifndef so that a
 * newer header included elsewhere does not clash, and the structs carry a
 * project prefix.  The layouts are kernel ABI: static assertions below pin
 * every size and every command encoding.
 */
#ifndef BLKSERV_UBLK_UAPI_H
#define BLKSERV_UBLK_UAPI_H

#include <errno.h>
#include <linux/ioctl.h>
#include <linux/types.h>

/* ---- control commands (on /dev/ublk-control, SQE128 ring) ---------- */

struct bs_ublk_ctrl_cmd {
	__u32 dev_id;       /* ADD_DEV: UBLK_DEV_ID_AUTO = allocate */
	__u16 queue_id;     /* 0xffff when not queue specific */
	__u16 len;          /* bytes at addr */
	__u64 addr;         /* user buffer (in or out) */
	__u64 data[1];      /* inline argument: pid, ... */
	__u16 dev_path_len; /* unprivileged devices and GET_DEV_INFO2 only */
	__u16 pad;
	__u32 reserved;
};

#define UBLK_DEV_ID_AUTO ((__u32)-1)
#define UBLK_QUEUE_ID_NONE ((__u16)-1)

#ifndef UBLK_U_CMD_GET_QUEUE_AFFINITY
#define UBLK_U_CMD_GET_QUEUE_AFFINITY _IOR('u', 0x01, struct bs_ublk_ctrl_cmd)
#endif
#ifndef UBLK_U_CMD_GET_DEV_INFO
#define UBLK_U_CMD_GET_DEV_INFO _IOR('u', 0x02, struct bs_ublk_ctrl_cmd)
#endif
#ifndef UBLK_U_CMD_ADD_DEV
#define UBLK_U_CMD_ADD_DEV _IOWR('u', 0x04, struct bs_ublk_ctrl_cmd)
#endif
#ifndef UBLK_U_CMD_DEL_DEV
#define UBLK_U_CMD_DEL_DEV _IOWR('u', 0x05, struct bs_ublk_ctrl_cmd)
#endif
#ifndef UBLK_U_CMD_START_DEV
#define UBLK_U_CMD_START_DEV _IOWR('u', 0x06, struct bs_ublk_ctrl_cmd)
#endif
#ifndef UBLK_U_CMD_STOP_DEV
#define UBLK_U_CMD_STOP_DEV _IOWR('u', 0x07, struct bs_ublk_ctrl_cmd)
#endif
#ifndef UBLK_U_CMD_SET_PARAMS
#define UBLK_U_CMD_SET_PARAMS _IOWR('u', 0x08, struct bs_ublk_ctrl_cmd)
#endif
#ifndef UBLK_U_CMD_GET_PARAMS
#define UBLK_U_CMD_GET_PARAMS _IOR('u', 0x09, struct bs_ublk_ctrl_cmd)
#endif
#ifndef UBLK_U_CMD_START_USER_RECOVERY
#define UBLK_U_CMD_START_USER_RECOVERY _IOWR('u', 0x10, struct bs_ublk_ctrl_cmd)
#endif
#ifndef UBLK_U_CMD_END_USER_RECOVERY
#define UBLK_U_CMD_END_USER_RECOVERY _IOWR('u', 0x11, struct bs_ublk_ctrl_cmd)
#endif
#ifndef UBLK_U_CMD_GET_FEATURES
#define UBLK_U_CMD_GET_FEATURES _IOR('u', 0x13, struct bs_ublk_ctrl_cmd)
#endif
#ifndef UBLK_U_CMD_DEL_DEV_ASYNC
#define UBLK_U_CMD_DEL_DEV_ASYNC _IOR('u', 0x14, struct bs_ublk_ctrl_cmd)
#endif

#define UBLK_FEATURES_LEN 8

/* ---- feature flags (ublksrv_ctrl_dev_info.flags) ------------------- */

#ifndef UBLK_F_SUPPORT_ZERO_COPY
#define UBLK_F_SUPPORT_ZERO_COPY (1ULL << 0)
#endif
#ifndef UBLK_F_URING_CMD_COMP_IN_TASK
#define UBLK_F_URING_CMD_COMP_IN_TASK (1ULL << 1)
#endif
#ifndef UBLK_F_NEED_GET_DATA
#define UBLK_F_NEED_GET_DATA (1ULL << 2)
#endif
#ifndef UBLK_F_USER_RECOVERY
#define UBLK_F_USER_RECOVERY (1ULL << 3)
#endif
#ifndef UBLK_F_USER_RECOVERY_REISSUE
#define UBLK_F_USER_RECOVERY_REISSUE (1ULL << 4)
#endif
#ifndef UBLK_F_UNPRIVILEGED_DEV
#define UBLK_F_UNPRIVILEGED_DEV (1ULL << 5)
#endif
#ifndef UBLK_F_CMD_IOCTL_ENCODE
#define UBLK_F_CMD_IOCTL_ENCODE (1ULL << 6)
#endif
#ifndef UBLK_F_USER_COPY
#define UBLK_F_USER_COPY (1ULL << 7)
#endif
#ifndef UBLK_F_ZONED
#define UBLK_F_ZONED (1ULL << 8)
#endif
#ifndef UBLK_F_USER_RECOVERY_FAIL_IO
#define UBLK_F_USER_RECOVERY_FAIL_IO (1ULL << 9)
#endif

/* ---- device info ---------------------------------------------------- */

#ifndef UBLK_S_DEV_DEAD
#define UBLK_S_DEV_DEAD 0
#endif
#ifndef UBLK_S_DEV_LIVE
#define UBLK_S_DEV_LIVE 1
#endif
#ifndef UBLK_S_DEV_QUIESCED
#define UBLK_S_DEV_QUIESCED 2
#endif

struct bs_ublk_dev_info {
	__u16 nr_hw_queues;
	__u16 queue_depth;
	__u16 state; /* UBLK_S_DEV_* */
	__u16 pad0;
	__u32 max_io_buf_bytes;
	__u32 dev_id;
	__s32 ublksrv_pid;
	__u32 pad1;
	__u64 flags;         /* UBLK_F_*: requested in, negotiated out */
	__u64 ublksrv_flags; /* opaque to the driver: ours to mark the device */
	__u32 owner_uid;
	__u32 owner_gid;
	__u64 reserved1;
	__u64 reserved2;
};

/* ---- parameters ----------------------------------------------------- */

#ifndef UBLK_ATTR_READ_ONLY
#define UBLK_ATTR_READ_ONLY (1 << 0)
#endif
#ifndef UBLK_ATTR_ROTATIONAL
#define UBLK_ATTR_ROTATIONAL (1 << 1)
#endif
#ifndef UBLK_ATTR_VOLATILE_CACHE
#define UBLK_ATTR_VOLATILE_CACHE (1 << 2)
#endif
#ifndef UBLK_ATTR_FUA
#define UBLK_ATTR_FUA (1 << 3)
#endif

#ifndef UBLK_PARAM_TYPE_BASIC
#define UBLK_PARAM_TYPE_BASIC (1 << 0)
#endif
#ifndef UBLK_PARAM_TYPE_DISCARD
#define UBLK_PARAM_TYPE_DISCARD (1 << 1)
#endif
#ifndef UBLK_PARAM_TYPE_DEVT
#define UBLK_PARAM_TYPE_DEVT (1 << 2)
#endif

struct bs_ublk_param_basic {
	__u32 attrs;
	__u8 logical_bs_shift;
	__u8 physical_bs_shift;
	__u8 io_opt_shift;
	__u8 io_min_shift;
	__u32 max_sectors;
	__u32 chunk_sectors;
	__u64 dev_sectors;
	__u64 virt_boundary_mask;
};

struct bs_ublk_param_discard {
	__u32 discard_alignment;
	__u32 discard_granularity;
	__u32 max_discard_sectors;
	__u32 max_write_zeroes_sectors;
	__u16 max_discard_segments;
	__u16 reserved0;
};

struct bs_ublk_param_devt {
	__u32 char_major;
	__u32 char_minor;
	__u32 disk_major;
	__u32 disk_minor;
};

struct bs_ublk_param_zoned {
	__u32 max_open_zones;
	__u32 max_active_zones;
	__u32 max_zone_append_sectors;
	__u8 reserved[20];
};

struct bs_ublk_params {
	__u32 len;   /* sizeof(struct bs_ublk_params), for SET and GET */
	__u32 types; /* UBLK_PARAM_TYPE_* */
	struct bs_ublk_param_basic basic;
	struct bs_ublk_param_discard discard;
	struct bs_ublk_param_devt devt;
	struct bs_ublk_param_zoned zoned;
};

/* ---- I/O (on /dev/ublkcN, 64-byte SQEs) ------------------------------ */

struct bs_ublk_io_desc {
	__u32 op_flags; /* op in bits 0-7, UBLK_IO_F_* in place above */
	__u32 nr_sectors;
	__u64 start_sector;
	__u64 addr;
};

struct bs_ublk_io_cmd {
	__u16 q_id;
	__u16 tag;
	__s32 result; /* COMMIT: bytes done or -errno */
	__u64 addr;   /* the tag's buffer */
};

#ifndef UBLK_U_IO_FETCH_REQ
#define UBLK_U_IO_FETCH_REQ _IOWR('u', 0x20, struct bs_ublk_io_cmd)
#endif
#ifndef UBLK_U_IO_COMMIT_AND_FETCH_REQ
#define UBLK_U_IO_COMMIT_AND_FETCH_REQ _IOWR('u', 0x21, struct bs_ublk_io_cmd)
#endif

#ifndef UBLK_IO_RES_OK
#define UBLK_IO_RES_OK 0
#endif
#ifndef UBLK_IO_RES_NEED_GET_DATA
#define UBLK_IO_RES_NEED_GET_DATA 1
#endif
#ifndef UBLK_IO_RES_ABORT
#define UBLK_IO_RES_ABORT (-ENODEV)
#endif

#ifndef UBLK_IO_OP_READ
#define UBLK_IO_OP_READ 0
#endif
#ifndef UBLK_IO_OP_WRITE
#define UBLK_IO_OP_WRITE 1
#endif
#ifndef UBLK_IO_OP_FLUSH
#define UBLK_IO_OP_FLUSH 2
#endif
#ifndef UBLK_IO_OP_DISCARD
#define UBLK_IO_OP_DISCARD 3
#endif
#ifndef UBLK_IO_OP_WRITE_SAME
#define UBLK_IO_OP_WRITE_SAME 4
#endif
#ifndef UBLK_IO_OP_WRITE_ZEROES
#define UBLK_IO_OP_WRITE_ZEROES 5
#endif

/* Flags as they sit in op_flags (test op_flags & UBLK_IO_F_*). */
#ifndef UBLK_IO_F_FUA
#define UBLK_IO_F_FUA (1U << 13)
#endif
#ifndef UBLK_IO_F_NOUNMAP
#define UBLK_IO_F_NOUNMAP (1U << 15)
#endif

#ifndef UBLKSRV_CMD_BUF_OFFSET
#define UBLKSRV_CMD_BUF_OFFSET 0
#endif
#ifndef UBLK_MAX_QUEUE_DEPTH
#define UBLK_MAX_QUEUE_DEPTH 4096
#endif
#ifndef UBLK_MAX_NR_QUEUES
#define UBLK_MAX_NR_QUEUES 4096
#endif
/* A request's data is at most 32 MiB (UBLK_IO_BUF_BITS). */
#define UBLK_MAX_IO_BUF_BYTES (32u << 20)

/* ---- the ABI, pinned ----------------------------------------------- */

_Static_assert(sizeof(struct bs_ublk_ctrl_cmd) == 32, "ublksrv_ctrl_cmd is 32 bytes");
_Static_assert(sizeof(struct bs_ublk_dev_info) == 64, "ublksrv_ctrl_dev_info is 64 bytes");
_Static_assert(sizeof(struct bs_ublk_io_desc) == 24, "ublksrv_io_desc is 24 bytes");
_Static_assert(sizeof(struct bs_ublk_io_cmd) == 16, "ublksrv_io_cmd is 16 bytes");
_Static_assert(sizeof(struct bs_ublk_param_basic) == 32, "ublk_param_basic is 32 bytes");
_Static_assert(sizeof(struct bs_ublk_param_discard) == 20, "ublk_param_discard is 20 bytes");
_Static_assert(sizeof(struct bs_ublk_params) == 112, "ublk_params is 112 bytes in 6.12");
_Static_assert(__builtin_offsetof(struct bs_ublk_params, discard) == 40, "discard at 40");
_Static_assert(__builtin_offsetof(struct bs_ublk_params, devt) == 60, "devt at 60");
_Static_assert(__builtin_offsetof(struct bs_ublk_params, zoned) == 76, "zoned at 76");
_Static_assert(UBLK_U_CMD_GET_DEV_INFO == 0x80207502, "GET_DEV_INFO encoding");
_Static_assert(UBLK_U_CMD_ADD_DEV == 0xc0207504, "ADD_DEV encoding");
_Static_assert(UBLK_U_CMD_START_USER_RECOVERY == 0xc0207510, "START_USER_RECOVERY encoding");
_Static_assert(UBLK_U_CMD_GET_FEATURES == 0x80207513, "GET_FEATURES encoding");
_Static_assert(UBLK_U_CMD_DEL_DEV_ASYNC == 0x80207514, "DEL_DEV_ASYNC encoding");
_Static_assert(UBLK_U_IO_FETCH_REQ == 0xc0107520, "FETCH_REQ encoding");
_Static_assert(UBLK_U_IO_COMMIT_AND_FETCH_REQ == 0xc0107521, "COMMIT_AND_FETCH_REQ encoding");

/* Descriptor area of queue @q_id: the stride is for the maximum depth. */
static inline __u64 ublk_desc_area_offset(__u16 q_id, long page_size)
{
	__u64 stride = ((__u64)UBLK_MAX_QUEUE_DEPTH * sizeof(struct bs_ublk_io_desc) + (__u64)page_size - 1) &
		       ~((__u64)page_size - 1);

	return UBLKSRV_CMD_BUF_OFFSET + (__u64)q_id * stride;
}

#endif

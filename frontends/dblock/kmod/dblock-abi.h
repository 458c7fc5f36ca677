/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dblock-abi.h: the userspace ABI of the dblock kernel module (dblock.ko),
 * shared by the module and by programs that serve dblock devices.
 *
 * ORIGINAL ABI.  Binary compatible with the original dblock module
 * (datto/kmod-dblock, dblockshare.h): the same raw ioctl numbers (not _IO()
 * encoded), structs with the same layout (the padding the compiler put in
 * the original structs is spelled out here as reserved fields), operation
 * codes and limits.  A program written for the original works unchanged:
 *
 *   1. open /dev/dblockctl; ioctl(fd, DBLOCK_IOCTL_CONTROL_CREATE_DEVICE,
 *      &union dblock_control_operation) creates /dev/NAME and /dev/NAME-ctl
 *      and returns the handle_id.  The kernel reads the whole 64-byte union.
 *   2. open /dev/NAME-ctl; fill a buffer of sizeof(struct dblock_operation)
 *      + DBLOCK_MAX_DATA_BYTES with handle_id and header.operation =
 *      DBLOCK_OP_BLOCK_FOR_REQUEST, then ioctl(fd, DBLOCK_IOCTL_DEVICE_OPERATION,
 *      buf) blocks until a request arrives and returns it in the same buffer.
 *   3. Serve it and answer with a *_RESPONSE code, the same handle_id and
 *      operation_id, error (0 or nonzero) and, for a read, the data in
 *      data[].  The same call delivers the answer and blocks for the next
 *      request.  Several threads may serve one device at once.
 *   4. DBLOCK_OP_KERNEL_USERSPACE_EXIT (8086): the device was destroyed; stop.
 *      Any later call with that handle_id fails with ENOENT.
 *
 * Behaviour of this module where the original was flawed:
 *  - blk-mq: up to queue_depth requests in flight, each matched by its
 *    operation_id; a stale or unknown operation_id is logged and ignored.
 *  - A signal to a thread blocked in DEVICE_OPERATION makes the call fail
 *    with EINTR after writing a DBLOCK_OP_KERNEL_BLOCK_FOR_REQUEST (40) op
 *    with header.signal_number set; the signal is *not* consumed (the
 *    original dequeued it), so it is delivered as usual.  An answer given in
 *    that call was already processed.  Calling again with operation 30 (or
 *    40) blocks again.
 *  - Destroy fails every pending request with EIO and wakes every thread
 *    waiting on that device with 8086, however many there are.
 *  - A request not answered within device_timeout_seconds fails with EIO.
 *  - When a /dev/NAME-ctl file is closed (the server died), the requests
 *    taken through it and not answered go back to the queue, so another
 *    server (a restarted daemon) can serve them within the timeout.
 *  - Module unload destroys every device (forced).
 *  - A new server may open /dev/NAME-ctl of a device whose server died (or
 *    detached) and serve it, with the handle_id GET_HANDLE_ID_BY_NAME gives:
 *    the requests the old one left unanswered are served by the new one if
 *    it comes within device_timeout_seconds of their start.
 *
 * EXTENSIONS (not in the original; a program that does not use them never
 * sees them).  DBLOCK_IOCTL_CONTROL_GET_FEATURES tells what the module
 * supports; an original module answers it with EINVAL.
 * DBLOCK_IOCTL_CONTROL_CREATE_DEVICE_EX creates a device with a larger
 * struct that also asks for features: FLUSH (a volatile write cache: the
 * kernel sends FLUSH requests), FUA (writes may carry DBLOCK_REQ_FUA),
 * DISCARD and WRITE_ZEROES requests, and READ_ONLY.  The module grants what
 * it supports and writes the granted set back.  Extended requests use new
 * operation codes and a flags word in what was padding of the header.
 *
 * ABI version 2 adds DBLOCK_IOCTL_DEVICE_DETACH on /dev/NAME-ctl: that file
 * stops serving, the device stays.  A thread blocked (or next calling) in
 * DEVICE_OPERATION on it returns DBLOCK_OP_KERNEL_DETACHED (8087) instead of
 * a request; an answer given in that call is processed first.  This lets a
 * server stop without destroying the device, for the next one to take over.
 */
#ifndef DBLOCK_ABI_H
#define DBLOCK_ABI_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define DBLOCK_CONTROL_PATH "/dev/dblockctl"
/* The per-device request node is /dev/NAME + this suffix. */
#define DBLOCK_CTL_SUFFIX "-ctl"

/* ---- limits (original) ---------------------------------------------- */

#define DBLOCK_BLOCK_SIZE 4096u           /* kernel_block_size must be exactly this */
#define DBLOCK_MAX_NAME_LENGTH 31u        /* + NUL in a 32-byte field */
#define DBLOCK_MIN_BLOCKS 1024ull         /* 4 MiB */
#define DBLOCK_MAX_BLOCKS 3221225472ull   /* 12 TiB */
#define DBLOCK_MIN_TIMEOUT_SECONDS 1u
#define DBLOCK_MAX_TIMEOUT_SECONDS 1200u
#define DBLOCK_MAX_DEVICES 50u
#define DBLOCK_MAX_SEGMENTS 256u          /* metadata entries per request */
#define DBLOCK_MAX_DATA_BYTES (DBLOCK_MAX_SEGMENTS * 4096u) /* 1 MiB after the op */

/* ---- ioctls (original: raw numbers) ---------------------------------- */

/* On /dev/dblockctl, argument: union dblock_control_operation. */
#define DBLOCK_IOCTL_CONTROL_PING 12
#define DBLOCK_IOCTL_CONTROL_STATUS 20 /* always fails with ENODATA */
#define DBLOCK_IOCTL_CONTROL_CREATE_DEVICE 21
#define DBLOCK_IOCTL_CONTROL_DESTROY_DEVICE_BY_ID 22
#define DBLOCK_IOCTL_CONTROL_DESTROY_DEVICE_BY_NAME 23
#define DBLOCK_IOCTL_CONTROL_DESTROY_ALL_DEVICES 25
#define DBLOCK_IOCTL_CONTROL_GET_HANDLE_ID_BY_NAME 26

/* On /dev/NAME-ctl. */
#define DBLOCK_IOCTL_DEVICE_PING 53
#define DBLOCK_IOCTL_DEVICE_STATUS 55 /* always fails with ENODATA */
#define DBLOCK_IOCTL_DEVICE_OPERATION 58 /* argument: struct dblock_operation + data */

/* ---- header.operation codes ------------------------------------------ */

/* userspace -> kernel */
#define DBLOCK_OP_BLOCK_FOR_REQUEST 30 /* original: NO_RESPONSE_BLOCK_FOR_REQUEST */
#define DBLOCK_OP_READ_RESPONSE 31
#define DBLOCK_OP_WRITE_RESPONSE 37
#define DBLOCK_OP_STATUS 39 /* defined by the original, never handled */
/* kernel -> userspace */
#define DBLOCK_OP_KERNEL_BLOCK_FOR_REQUEST 40 /* nothing to do (a signal) */
#define DBLOCK_OP_KERNEL_READ_REQUEST 41
#define DBLOCK_OP_KERNEL_WRITE_REQUEST 42
#define DBLOCK_OP_KERNEL_USERSPACE_EXIT 8086 /* the device was destroyed */
#define DBLOCK_OP_KERNEL_DETACHED 8087 /* extension: this file was detached; the device stays */

/* Extensions (only on devices created with the features). */
#define DBLOCK_OP_FLUSH_RESPONSE 34
#define DBLOCK_OP_WRITE_ZEROES_RESPONSE 35
#define DBLOCK_OP_DISCARD_RESPONSE 38 /* the number zosbd2 uses */
#define DBLOCK_OP_KERNEL_DISCARD_REQUEST 43 /* the number zosbd2 uses */
#define DBLOCK_OP_KERNEL_FLUSH_REQUEST 44
#define DBLOCK_OP_KERNEL_WRITE_ZEROES_REQUEST 45

/* header.flags (extension; 0 in the original, where this was padding). */
#define DBLOCK_REQ_FUA (1u << 0)     /* WRITE: durable when answered */
#define DBLOCK_REQ_NOUNMAP (1u << 1) /* WRITE_ZEROES: keep the range allocated */

/* ---- the request/response struct (original layout, 4152 bytes) ---------- */

struct dblock_header {
	__u32 operation;     /* DBLOCK_OP_* */
	__u32 flags;         /* extension: DBLOCK_REQ_*; padding in the original */
	__u64 size;          /* WRITE request: bytes of data; else 0 */
	__u32 signal_number; /* KERNEL_BLOCK_FOR_REQUEST: the pending signal */
	__u32 reserved;
};

union dblock_packet {
	/* READ, WRITE (and DISCARD, WRITE_ZEROES, FLUSH) requests. */
	struct {
		__u64 total_length_of_all_bio_segments;
		__u32 number_of_segments; /* metadata entries */
		__u32 reserved;
	} request;
	/* Responses: bytes read, written (or discarded, zeroed). */
	struct {
		__u64 total_length;
		__u64 reserved;
	} response;
};

/* A byte range of the device.  The entries of a request are contiguous. */
struct dblock_segment {
	__u64 start;
	__u64 length;
};

struct dblock_operation {
	__u32 handle_id;
	__u32 reserved;
	struct dblock_header header;      /* offset 8 */
	union dblock_packet packet;       /* offset 32 */
	struct dblock_segment metadata[DBLOCK_MAX_SEGMENTS]; /* offset 48 */
	__s32 error;                      /* offset 4144: 0, or a -errno / nonzero = failed */
	__u32 operation_id;               /* offset 4148 */
	unsigned char data[];             /* offset 4152: the segments' data, concatenated */
};

/* ---- control arguments (original layout, a 64-byte union) --------------- */

struct dblock_create_params {
	unsigned char device_name[DBLOCK_MAX_NAME_LENGTH + 1];
	__u32 kernel_block_size;        /* must be 4096 */
	__u32 reserved;
	__u64 number_of_blocks;         /* DBLOCK_MIN_BLOCKS..DBLOCK_MAX_BLOCKS */
	__u32 device_timeout_seconds;   /* per request, 1..1200 */
	__u32 max_segments_per_request; /* 0: 256; more than 256: 256 */
	__u32 handle_id;                /* out */
	__s32 error;                    /* out: the ioctl's -errno, or 0 */
};

struct dblock_destroy_by_id_params {
	__u32 handle_id;
	__s32 error; /* out */
	__u32 force; /* nonzero: destroy even while /dev/NAME is open */
};

struct dblock_destroy_by_name_params {
	unsigned char device_name[DBLOCK_MAX_NAME_LENGTH + 1];
	__s32 error; /* out */
	__u32 force;
};

struct dblock_destroy_all_params {
	__u32 force;
};

struct dblock_get_handle_id_by_name_params {
	unsigned char device_name[DBLOCK_MAX_NAME_LENGTH + 1];
	__u32 handle_id; /* out */
	__s32 error;     /* out */
};

union dblock_control_operation {
	struct dblock_create_params create_params;
	struct dblock_destroy_by_id_params destroy_params_by_id;
	struct dblock_destroy_by_name_params destroy_params_by_name;
	struct dblock_destroy_all_params destroy_params_all;
	struct dblock_get_handle_id_by_name_params get_handle_id_params_by_name;
};

/* ---- extensions ---------------------------------------------------------- */

/* 1: features, CREATE_DEVICE_EX; 2: DEVICE_DETACH. */
#define DBLOCK_ABI_VERSION 2

#define DBLOCK_FEATURE_FLUSH (1u << 0)        /* volatile write cache: FLUSH requests */
#define DBLOCK_FEATURE_FUA (1u << 1)          /* DBLOCK_REQ_FUA on writes (needs FLUSH) */
#define DBLOCK_FEATURE_DISCARD (1u << 2)      /* DISCARD requests */
#define DBLOCK_FEATURE_WRITE_ZEROES (1u << 3) /* WRITE_ZEROES requests */
#define DBLOCK_FEATURE_READ_ONLY (1u << 4)    /* /dev/NAME is read-only */
#define DBLOCK_FEATURE__ALL 0x1fu

struct dblock_features {
	__u32 abi_version;     /* DBLOCK_ABI_VERSION */
	__u32 features;        /* DBLOCK_FEATURE_* this module can grant */
	__u32 max_queue_depth; /* largest dblock_create_ex.queue_depth */
	__u32 reserved[5];
};

struct dblock_create_ex {
	unsigned char device_name[DBLOCK_MAX_NAME_LENGTH + 1];
	__u32 kernel_block_size;        /* must be 4096 */
	__u32 device_timeout_seconds;   /* 1..1200 */
	__u64 number_of_blocks;         /* DBLOCK_MIN_BLOCKS..DBLOCK_MAX_BLOCKS */
	__u32 max_segments_per_request; /* 0: 256; more than 256: 256 */
	__u32 queue_depth;              /* requests in flight; 0: the module's default */
	__u32 features;                 /* in: wanted DBLOCK_FEATURE_*; out: granted */
	__u32 handle_id;                /* out */
	__s32 error;                    /* out */
	__u32 reserved[7];              /* must be zero */
};

#define DBLOCK_IOCTL_MAGIC 0xdb
/* On /dev/dblockctl. */
#define DBLOCK_IOCTL_CONTROL_GET_FEATURES _IOR(DBLOCK_IOCTL_MAGIC, 0x01, struct dblock_features)
#define DBLOCK_IOCTL_CONTROL_CREATE_DEVICE_EX _IOWR(DBLOCK_IOCTL_MAGIC, 0x02, struct dblock_create_ex)
/* On /dev/NAME-ctl (abi_version >= 2), no argument. */
#define DBLOCK_IOCTL_DEVICE_DETACH _IO(DBLOCK_IOCTL_MAGIC, 0x10)

/* Sizes every implementation must agree on (x86_64 / LP64). */
#define DBLOCK_OPERATION_SIZE 4152
#define DBLOCK_CONTROL_OPERATION_SIZE 64
#define DBLOCK_CREATE_EX_SIZE 96

#endif /* DBLOCK_ABI_H */

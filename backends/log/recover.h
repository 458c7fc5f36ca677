/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Opening a log directory: read every segment header, load the newest
 * checkpoint, replay the records after it and decide what to do with a bad
 * record (see blkservd-log(7), RECOVERY):
 *
 *  - in the last segment, with no later record proving it was flushed: a
 *    torn tail; cut there (truncate, or remove the segment if nothing but
 *    its header would be left);
 *  - anywhere else (a sealed segment, or before the last durable point):
 *    corruption; refuse with the segment and offset, unless cut_corruption
 *    (recover_truncate) says to cut the log there.
 */
#ifndef BLKSERV_LOG_RECOVER_H
#define BLKSERV_LOG_RECOVER_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

struct recover_opts {
	bool read_only;      /* the offline tool: change nothing, only report */
	bool cut_corruption; /* recover_truncate */
	bool verify_all;     /* also verify the records of segments before the checkpoint */
};

struct recover_result {
	uint64_t replayed_records;
	uint64_t replayed_bytes;
	uint64_t verified_records; /* by verify_all */
	uint64_t verified_bytes;
	uint64_t start_seg; /* first segment replayed */
	bool from_checkpoint;
	uint64_t ckpt_bytes; /* size of the checkpoint record loaded */
	bool torn_tail;      /* a torn tail was (or would be) cut */
	uint64_t torn_seg, torn_off, torn_bytes;
	bool cut_corruption; /* corruption was cut (recover_truncate) */
	uint64_t duration_ns;
};

/*
 * Build @s from the directory s->dirfd (s->dir names it in messages).  An
 * empty directory gives an empty store.  s->device_size and block_size are
 * taken from the segment headers when there are segments.  0, -EBADMSG when
 * the log is damaged (the message says where), or -errno.
 */
int log_recover(struct log_store *s, const struct recover_opts *o, struct recover_result *res);

/* Read and check the record at @pos of @seg (header, fields, crc), without
 * sequence expectations.  0 or -EBADMSG with *why; -errno on I/O errors.
 * The payload is left in *buf (grown as needed, *cap its size). */
int log_read_record(const struct log_store *s, const struct log_segment *seg, uint64_t pos, struct log_rec *rec,
		    unsigned char **buf, size_t *cap, const char **why);

#endif

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The in-memory state of a log, shared by the backend and the offline tool:
 * the segment table, the index and the accounting of live bytes.  Not
 * thread-safe by itself; the backend wraps it in its locks.
 */
#ifndef BLKSERV_LOG_STORE_H
#define BLKSERV_LOG_STORE_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "extent-map.h"
#include "format.h"

struct log_segment {
	uint64_t id;
	int fd;
	uint64_t size;      /* bytes of valid content (header + whole records) */
	uint64_t first_seq; /* from its header */
	uint32_t flags;     /* LOG_SEG_F_* from its header */
	uint64_t live;      /* payload bytes the index points at */
	/* Its WRITE records, by file offset: a read finds the record (and so
	 * the checksum) its bytes belong to.  Complete when recs_known: for a
	 * segment written or replayed by this process at once, for an older
	 * one when first needed (verify.c scans its headers). */
	struct log_rec_ent *recs;
	size_t nrecs, recs_cap;
	_Atomic bool recs_known;
	bool bad; /* holds a corrupt live record: compaction keeps it */
};

/* A WRITE record: header at @pos, @len payload bytes.  LOG_RECENT_BADHDR
 * in len: the header there did not decode when the segment was scanned;
 * len is then the distance to the next valid record. */
struct log_rec_ent {
	uint64_t pos;
	uint64_t len;
};
#define LOG_RECENT_BADHDR (1ull << 63)

/* Where messages go: the backend's blkserv_log, the tool's stderr.
 * Levels are syslog priorities (3 error, 4 warning, 5 notice, 6 info). */
typedef void (*log_msg_fn)(void *ctx, int level, const char *fmt, va_list ap);

struct log_store {
	int dirfd;
	char *dir;
	uint8_t uuid[16];
	uint64_t device_size;
	uint32_t block_size;

	struct log_segment *segs; /* sorted by id */
	size_t nsegs, cap;
	struct extent_map map;

	uint64_t next_seq;    /* seq of the next record */
	uint64_t live_bytes;  /* sum of segs[].live */
	uint64_t total_bytes; /* sum of segs[].size */
	uint64_t ckpt_seg;    /* segment whose checkpoint the state came from (0: none) */

	log_msg_fn msg;
	void *msg_ctx;
};

void store_init(struct log_store *s);
/* Close every segment and free everything (not the directory fd). */
void store_free(struct log_store *s);
void store_msg(struct log_store *s, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

struct log_segment *store_seg(struct log_store *s, uint64_t id);
struct log_segment *store_last_seg(struct log_store *s);
/* Append a segment (ids must grow).  0 or -ENOMEM. */
int store_add_seg(struct log_store *s, const struct log_segment *seg);
/* Forget segment @id (closes its fd). */
void store_remove_seg(struct log_store *s, uint64_t id);

/* Room for one more record in @seg's list.  0 or -ENOMEM. */
int store_rec_reserve(struct log_segment *seg);
/* Add a record (after store_rec_reserve; positions must grow). */
void store_rec_push(struct log_segment *seg, uint64_t pos, uint64_t len);
/* The record whose payload holds file offset @foff, NULL if none. */
const struct log_rec_ent *store_rec_find(const struct log_segment *seg, uint64_t foff);

/* Index updates, with accounting.  emap_reserve() first. */
void store_map_data(struct log_store *s, uint64_t off, uint64_t len, uint64_t seg, uint64_t foff);
void store_map_zero(struct log_store *s, uint64_t off, uint64_t len, uint64_t seg);
/* Apply a verified record found at file offset @pos of segment @seg. */
int store_apply(struct log_store *s, const struct log_rec *r, uint64_t seg, uint64_t pos);

/* Serialize the index as a checkpoint payload (malloc'd). */
int store_ckpt_encode(struct log_store *s, unsigned char **ret, uint64_t *ret_len, uint64_t *ret_count);
/* Replace the index by a checkpoint payload.  Extents that point into a
 * missing segment or past its end: -EBADMSG with a message, or, with
 * @drop_missing, dropped (read as zeros) with a loud message. */
int store_ckpt_load(struct log_store *s, const unsigned char *p, uint64_t count, uint64_t ckpt_seg, bool drop_missing);

#endif

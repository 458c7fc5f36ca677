/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The on-disk format of the log backend (little-endian throughout).
 *
 * A log is a directory of segment files "seg-<16 hex digits>.log", named by
 * a segment id that only grows.  Each segment starts with a 4 KiB header,
 * followed by records packed back to back:
 *
 *   segment header (4096 bytes)
 *     0  magic "BLKSLOG1"        8  version u32     12 flags u32
 *     16 log uuid [16]           32 segment id u64  40 first seq u64
 *     48 device size u64         56 block size u32  60 reserved u32
 *     64 created (realtime ns)   ... zero ...       4092 crc32c of [0,4092)
 *
 *   record header (64 bytes), then payload_len bytes of payload
 *     0  magic u32 "BLRC"        4  version u16     6  type u16
 *     8  seq u64                 16 device offset   24 device length
 *     32 payload_len u64         40 segment id u64  48 synced_seq u64
 *     56 hdr_crc u32: crc32c of [0,56)
 *     60 crc u32: crc32c of the payload, continued over [0,60)
 *
 * Sequence numbers increase by one from record to record across the whole
 * log.  synced_seq is the highest seq known durable (its fdatasync had
 * completed) when the record was appended: recovery uses it to tell a torn
 * tail from damage to data a flush already promised.
 *
 * A checkpoint is always the first record of a segment whose header has
 * LOG_SEG_F_CHECKPOINT; its payload is a 64-byte head (extent count) and
 * the whole index as 32-byte extents {offset, length, segment, file offset
 * or UINT64_MAX for zeros}.
 */
#ifndef BLKSERV_LOG_FORMAT_H
#define BLKSERV_LOG_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOG_SEG_MAGIC "BLKSLOG1"
#define LOG_REC_MAGIC 0x43524c42u /* "BLRC" as little-endian bytes */
#define LOG_FORMAT_VERSION 1
#define LOG_SEG_HEADER_SIZE 4096u
#define LOG_REC_HEADER_SIZE 64u
#define LOG_CKPT_HEAD_SIZE 64u
#define LOG_CKPT_EXTENT_SIZE 32u
#define LOG_SEG_NAME_LEN 25 /* "seg-" + 16 hex + ".log" + NUL */

/* Header flags. */
#define LOG_SEG_F_CHECKPOINT (1u << 0) /* the first record is a checkpoint */

enum log_rec_type {
	LOG_REC_WRITE = 1,      /* payload = the data of [offset, offset+length) */
	LOG_REC_TRIM = 2,       /* [offset, offset+length) reads as zeros; no payload */
	LOG_REC_ZERO = 3,       /* the same, from WRITE_ZEROES */
	LOG_REC_CHECKPOINT = 4, /* payload = the whole index */
	LOG_REC_SYNC = 5,       /* no payload: written after a flush, records synced_seq */
	LOG_REC__MAX
};

struct log_seg_header {
	uint32_t version;
	uint32_t flags;
	uint8_t uuid[16];
	uint64_t id;
	uint64_t first_seq;
	uint64_t device_size;
	uint32_t block_size;
	uint64_t created_ns;
};

struct log_rec {
	uint16_t type;
	uint64_t seq;
	uint64_t offset;
	uint64_t length;
	uint64_t payload_len;
	uint64_t segment;
	uint64_t synced_seq;
};

/* A checkpoint extent.  foff: where the payload byte for `off` lives in
 * segment `seg`, or LOG_FOFF_ZERO when the range reads as zeros. */
#define LOG_FOFF_ZERO UINT64_MAX

const char *log_rec_type_name(unsigned type);
void log_seg_name(uint64_t id, char buf[LOG_SEG_NAME_LEN]);
/* 0 and the id if @name is a segment file name; -EINVAL otherwise. */
int log_seg_parse_name(const char *name, uint64_t *ret_id);

void log_seg_header_encode(const struct log_seg_header *h, unsigned char buf[LOG_SEG_HEADER_SIZE]);
/* 0, or -EBADMSG with *why set. */
int log_seg_header_decode(const unsigned char buf[LOG_SEG_HEADER_SIZE], struct log_seg_header *h, const char **why);

/* Encode @r; @payload_crc is crc32c(0, payload, payload_len). */
void log_rec_encode(const struct log_rec *r, uint32_t payload_crc, unsigned char buf[LOG_REC_HEADER_SIZE]);
/* Decode and check magic, version, header crc and type: 0 or -EBADMSG. */
int log_rec_decode(const unsigned char buf[LOG_REC_HEADER_SIZE], struct log_rec *r, const char **why);
/* Check the payload's crc against the header: 0 or -EBADMSG. */
int log_rec_check_crc(const unsigned char buf[LOG_REC_HEADER_SIZE], uint32_t payload_crc);
/* Semantic checks against the device size: 0 or -EBADMSG with *why. */
int log_rec_check_fields(const struct log_rec *r, uint64_t device_size, const char **why);

void log_put16(unsigned char *p, uint16_t v);
void log_put32(unsigned char *p, uint32_t v);
void log_put64(unsigned char *p, uint64_t v);
uint16_t log_get16(const unsigned char *p);
uint32_t log_get32(const unsigned char *p);
uint64_t log_get64(const unsigned char *p);

#endif

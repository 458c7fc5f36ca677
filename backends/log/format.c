/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Encoding and checking of segment headers and records (see format.h). */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "crc32c.h"
#include "format.h"

void log_put16(unsigned char *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, 2);
}

void log_put32(unsigned char *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

void log_put64(unsigned char *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

uint16_t log_get16(const unsigned char *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return le16toh(v);
}

uint32_t log_get32(const unsigned char *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return le32toh(v);
}

uint64_t log_get64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return le64toh(v);
}

const char *log_rec_type_name(unsigned type)
{
	static const char *const names[LOG_REC__MAX] = {
		[LOG_REC_WRITE] = "write",           [LOG_REC_TRIM] = "trim", [LOG_REC_ZERO] = "zero",
		[LOG_REC_CHECKPOINT] = "checkpoint", [LOG_REC_SYNC] = "sync",
	};

	return type < LOG_REC__MAX && names[type] ? names[type] : "unknown";
}

void log_seg_name(uint64_t id, char buf[LOG_SEG_NAME_LEN])
{
	snprintf(buf, LOG_SEG_NAME_LEN, "seg-%016" PRIx64 ".log", id);
}

int log_seg_parse_name(const char *name, uint64_t *ret_id)
{
	uint64_t id = 0;

	if (strlen(name) != LOG_SEG_NAME_LEN - 1 || strncmp(name, "seg-", 4) != 0 || strcmp(name + 20, ".log") != 0)
		return -EINVAL;
	for (int i = 4; i < 20; i++) {
		char c = name[i];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else
			return -EINVAL;
		id = (id << 4) | d;
	}
	if (id == 0)
		return -EINVAL;
	*ret_id = id;
	return 0;
}

void log_seg_header_encode(const struct log_seg_header *h, unsigned char buf[LOG_SEG_HEADER_SIZE])
{
	memset(buf, 0, LOG_SEG_HEADER_SIZE);
	memcpy(buf, LOG_SEG_MAGIC, 8);
	log_put32(buf + 8, h->version);
	log_put32(buf + 12, h->flags);
	memcpy(buf + 16, h->uuid, 16);
	log_put64(buf + 32, h->id);
	log_put64(buf + 40, h->first_seq);
	log_put64(buf + 48, h->device_size);
	log_put32(buf + 56, h->block_size);
	log_put64(buf + 64, h->created_ns);
	log_put32(buf + LOG_SEG_HEADER_SIZE - 4, crc32c(0, buf, LOG_SEG_HEADER_SIZE - 4));
}

int log_seg_header_decode(const unsigned char buf[LOG_SEG_HEADER_SIZE], struct log_seg_header *h, const char **why)
{
	if (memcmp(buf, LOG_SEG_MAGIC, 8) != 0) {
		*why = "bad segment magic";
		return -EBADMSG;
	}
	if (log_get32(buf + LOG_SEG_HEADER_SIZE - 4) != crc32c(0, buf, LOG_SEG_HEADER_SIZE - 4)) {
		*why = "segment header checksum mismatch";
		return -EBADMSG;
	}
	h->version = log_get32(buf + 8);
	if (h->version != LOG_FORMAT_VERSION) {
		*why = "unsupported segment format version";
		return -EBADMSG;
	}
	h->flags = log_get32(buf + 12);
	memcpy(h->uuid, buf + 16, 16);
	h->id = log_get64(buf + 32);
	h->first_seq = log_get64(buf + 40);
	h->device_size = log_get64(buf + 48);
	h->block_size = log_get32(buf + 56);
	h->created_ns = log_get64(buf + 64);
	return 0;
}

void log_rec_encode(const struct log_rec *r, uint32_t payload_crc, unsigned char buf[LOG_REC_HEADER_SIZE])
{
	log_put32(buf, LOG_REC_MAGIC);
	log_put16(buf + 4, LOG_FORMAT_VERSION);
	log_put16(buf + 6, r->type);
	log_put64(buf + 8, r->seq);
	log_put64(buf + 16, r->offset);
	log_put64(buf + 24, r->length);
	log_put64(buf + 32, r->payload_len);
	log_put64(buf + 40, r->segment);
	log_put64(buf + 48, r->synced_seq);
	log_put32(buf + 56, crc32c(0, buf, 56));
	log_put32(buf + 60, crc32c(payload_crc, buf, 60));
}

int log_rec_decode(const unsigned char buf[LOG_REC_HEADER_SIZE], struct log_rec *r, const char **why)
{
	if (log_get32(buf) != LOG_REC_MAGIC) {
		*why = "bad record magic";
		return -EBADMSG;
	}
	if (log_get32(buf + 56) != crc32c(0, buf, 56)) {
		*why = "record header checksum mismatch";
		return -EBADMSG;
	}
	if (log_get16(buf + 4) != LOG_FORMAT_VERSION) {
		*why = "unsupported record format version";
		return -EBADMSG;
	}
	r->type = log_get16(buf + 6);
	r->seq = log_get64(buf + 8);
	r->offset = log_get64(buf + 16);
	r->length = log_get64(buf + 24);
	r->payload_len = log_get64(buf + 32);
	r->segment = log_get64(buf + 40);
	r->synced_seq = log_get64(buf + 48);
	if (r->type == 0 || r->type >= LOG_REC__MAX) {
		*why = "unknown record type";
		return -EBADMSG;
	}
	return 0;
}

int log_rec_check_crc(const unsigned char buf[LOG_REC_HEADER_SIZE], uint32_t payload_crc)
{
	return log_get32(buf + 60) == crc32c(payload_crc, buf, 60) ? 0 : -EBADMSG;
}

static bool range_ok(const struct log_rec *r, uint64_t device_size)
{
	return r->length > 0 && r->offset <= device_size && r->length <= device_size - r->offset;
}

int log_rec_check_fields(const struct log_rec *r, uint64_t device_size, const char **why)
{
	switch (r->type) {
	case LOG_REC_WRITE:
		if (!range_ok(r, device_size) || r->payload_len != r->length)
			goto bad_range;
		return 0;
	case LOG_REC_TRIM:
	case LOG_REC_ZERO:
		if (!range_ok(r, device_size) || r->payload_len != 0)
			goto bad_range;
		return 0;
	case LOG_REC_CHECKPOINT:
		if (r->offset != 0 || r->length > (UINT64_MAX - LOG_CKPT_HEAD_SIZE) / LOG_CKPT_EXTENT_SIZE ||
		    r->payload_len != LOG_CKPT_HEAD_SIZE + r->length * LOG_CKPT_EXTENT_SIZE)
			goto bad_range;
		return 0;
	case LOG_REC_SYNC:
		if (r->offset != 0 || r->length != 0 || r->payload_len != 0)
			goto bad_range;
		return 0;
	}
	*why = "unknown record type";
	return -EBADMSG;
bad_range:
	*why = "record fields out of range";
	return -EBADMSG;
}

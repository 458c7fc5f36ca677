/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The in-memory state of a log: segments, index, accounting. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"

void store_init(struct log_store *s)
{
	memset(s, 0, sizeof(*s));
	s->dirfd = -1;
	s->next_seq = 1;
	emap_init(&s->map);
}

void store_free(struct log_store *s)
{
	for (size_t i = 0; i < s->nsegs; i++) {
		if (s->segs[i].fd >= 0)
			close(s->segs[i].fd);
		free(s->segs[i].recs);
	}
	free(s->segs);
	free(s->dir);
	emap_free(&s->map);
	s->segs = NULL;
	s->dir = NULL;
	s->nsegs = s->cap = 0;
}

void store_msg(struct log_store *s, int level, const char *fmt, ...)
{
	va_list ap;

	if (!s->msg)
		return;
	va_start(ap, fmt);
	s->msg(s->msg_ctx, level, fmt, ap);
	va_end(ap);
}

struct log_segment *store_seg(struct log_store *s, uint64_t id)
{
	size_t lo = 0, hi = s->nsegs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->segs[mid].id == id)
			return &s->segs[mid];
		if (s->segs[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

struct log_segment *store_last_seg(struct log_store *s)
{
	return s->nsegs ? &s->segs[s->nsegs - 1] : NULL;
}

int store_add_seg(struct log_store *s, const struct log_segment *seg)
{
	if (s->nsegs == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct log_segment *n = realloc(s->segs, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		s->segs = n;
		s->cap = cap;
	}
	s->segs[s->nsegs++] = *seg;
	s->total_bytes += seg->size;
	return 0;
}

void store_remove_seg(struct log_store *s, uint64_t id)
{
	struct log_segment *seg = store_seg(s, id);
	size_t i;

	if (!seg)
		return;
	i = (size_t)(seg - s->segs);
	if (seg->fd >= 0)
		close(seg->fd);
	free(seg->recs);
	s->total_bytes -= seg->size;
	s->live_bytes -= seg->live;
	memmove(&s->segs[i], &s->segs[i + 1], (s->nsegs - i - 1) * sizeof(*s->segs));
	s->nsegs--;
}

int store_rec_reserve(struct log_segment *seg)
{
	struct log_rec_ent *n;
	size_t cap;

	if (seg->nrecs < seg->recs_cap)
		return 0;
	cap = seg->recs_cap ? seg->recs_cap * 2 : 64;
	n = realloc(seg->recs, cap * sizeof(*n));
	if (!n)
		return -ENOMEM;
	seg->recs = n;
	seg->recs_cap = cap;
	return 0;
}

void store_rec_push(struct log_segment *seg, uint64_t pos, uint64_t len)
{
	seg->recs[seg->nrecs++] = (struct log_rec_ent){ pos, len };
}

const struct log_rec_ent *store_rec_find(const struct log_segment *seg, uint64_t foff)
{
	size_t lo = 0, hi = seg->nrecs;
	const struct log_rec_ent *e;

	/* The last record whose payload starts at or before @foff. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (seg->recs[mid].pos + LOG_REC_HEADER_SIZE <= foff)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return NULL;
	e = &seg->recs[lo - 1];
	return foff - (e->pos + LOG_REC_HEADER_SIZE) < (e->len & ~LOG_RECENT_BADHDR) ? e : NULL;
}

/* An older extent lost @piece: it no longer counts as live. */
static void piece_dead(void *ctx, const struct extent *piece)
{
	struct log_store *s = ctx;
	struct log_segment *seg = store_seg(s, piece->seg);

	if (!seg)
		return;
	if (piece->foff != EXTENT_ZERO) {
		seg->live -= piece->len;
		s->live_bytes -= piece->len;
	}
}

static void map_set(struct log_store *s, const struct extent *e)
{
	struct log_segment *seg = store_seg(s, e->seg);

	emap_set(&s->map, e, piece_dead, s);
	if (seg && e->foff != EXTENT_ZERO) {
		seg->live += e->len;
		s->live_bytes += e->len;
	}
}

void store_map_data(struct log_store *s, uint64_t off, uint64_t len, uint64_t seg, uint64_t foff)
{
	struct extent e = { .off = off, .len = len, .seg = seg, .foff = foff };

	map_set(s, &e);
}

void store_map_zero(struct log_store *s, uint64_t off, uint64_t len, uint64_t seg)
{
	struct extent e = { .off = off, .len = len, .seg = seg, .foff = EXTENT_ZERO };

	map_set(s, &e);
}

int store_apply(struct log_store *s, const struct log_rec *r, uint64_t seg, uint64_t pos)
{
	int ret;

	switch (r->type) {
	case LOG_REC_WRITE:
	case LOG_REC_TRIM:
	case LOG_REC_ZERO:
		ret = emap_reserve(&s->map);
		if (ret >= 0 && r->type == LOG_REC_WRITE && store_seg(s, seg))
			ret = store_rec_reserve(store_seg(s, seg));
		if (ret < 0)
			return ret;
		if (r->type == LOG_REC_WRITE) {
			if (store_seg(s, seg))
				store_rec_push(store_seg(s, seg), pos, r->payload_len);
			store_map_data(s, r->offset, r->length, seg, pos + LOG_REC_HEADER_SIZE);
		} else
			store_map_zero(s, r->offset, r->length, seg);
		return 0;
	default: /* checkpoints and sync markers change nothing */
		return 0;
	}
}

int store_ckpt_encode(struct log_store *s, unsigned char **ret, uint64_t *ret_len, uint64_t *ret_count)
{
	uint64_t count = emap_count(&s->map);
	uint64_t len = LOG_CKPT_HEAD_SIZE + count * LOG_CKPT_EXTENT_SIZE;
	unsigned char *buf = calloc(1, len), *p;
	struct emap_iter it;
	const struct extent *e;

	if (!buf)
		return -ENOMEM;
	log_put64(buf, count);
	p = buf + LOG_CKPT_HEAD_SIZE;
	emap_seek(&s->map, 0, &it);
	for (; (e = emap_get(&s->map, &it)); emap_next(&s->map, &it)) {
		log_put64(p, e->off);
		log_put64(p + 8, e->len);
		log_put64(p + 16, e->seg);
		log_put64(p + 24, e->foff);
		p += LOG_CKPT_EXTENT_SIZE;
	}
	*ret = buf;
	*ret_len = len;
	*ret_count = count;
	return 0;
}

/* Is @e a well-formed extent of a checkpoint written into segment @ckpt_seg? */
static bool ckpt_extent_ok(struct log_store *s, const struct extent *e, uint64_t prev_end, uint64_t ckpt_seg)
{
	return e->len > 0 && e->off >= prev_end && e->off <= s->device_size && e->len <= s->device_size - e->off &&
	       e->seg < ckpt_seg;
}

/* Does @e point at bytes that exist? */
static const char *ckpt_extent_missing(struct log_store *s, const struct extent *e)
{
	const struct log_segment *seg = store_seg(s, e->seg);

	if (!seg)
		return "its segment is missing";
	if (e->foff != EXTENT_ZERO &&
	    (e->foff < LOG_SEG_HEADER_SIZE || e->foff > seg->size || e->len > seg->size - e->foff))
		return "it points past the end of its segment";
	return NULL;
}

int store_ckpt_load(struct log_store *s, const unsigned char *p, uint64_t count, uint64_t ckpt_seg, bool drop_missing)
{
	uint64_t prev_end = 0, dropped = 0;

	if (log_get64(p) != count) {
		store_msg(s, 3,
			  "checkpoint in segment %" PRIu64 ": it lists %" PRIu64 " extents but its record "
			  "header says %" PRIu64,
			  ckpt_seg, log_get64(p), count);
		return -EBADMSG;
	}
	p += LOG_CKPT_HEAD_SIZE;
	for (uint64_t i = 0; i < count; i++, p += LOG_CKPT_EXTENT_SIZE) {
		struct extent e = { log_get64(p), log_get64(p + 8), log_get64(p + 16), log_get64(p + 24) };
		const char *why;
		int r;

		if (!ckpt_extent_ok(s, &e, prev_end, ckpt_seg)) {
			store_msg(s, 3,
				  "checkpoint in segment %" PRIu64 ": extent %" PRIu64 " (device offset %" PRIu64
				  ") is out of order or out of range",
				  ckpt_seg, i, e.off);
			return -EBADMSG;
		}
		prev_end = e.off + e.len;
		why = ckpt_extent_missing(s, &e);
		if (why && !drop_missing) {
			store_msg(s, 3,
				  "checkpoint in segment %" PRIu64 ": extent at device offset %" PRIu64
				  " is in segment %" PRIu64 ", but %s",
				  ckpt_seg, e.off, e.seg, why);
			return -EBADMSG;
		}
		if (why) {
			dropped += e.len;
			continue;
		}
		r = emap_reserve(&s->map);
		if (r < 0)
			return r;
		map_set(s, &e);
	}
	if (dropped)
		store_msg(s, 3,
			  "checkpoint in segment %" PRIu64 ": %" PRIu64 " bytes of data were in missing "
			  "segments and now read as zeros (recover_truncate)",
			  ckpt_seg, dropped);
	s->ckpt_seg = ckpt_seg;
	return 0;
}

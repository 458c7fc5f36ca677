/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The index as a two-level sorted array (see extent-map.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "extent-map.h"

static uint64_t ext_end(const struct extent *e)
{
	return e->off + e->len;
}

/* Drop the first @n bytes of @e. */
static void cut_front(struct extent *e, uint64_t n)
{
	e->off += n;
	e->len -= n;
	if (e->foff != EXTENT_ZERO)
		e->foff += n;
}

void emap_init(struct extent_map *m)
{
	memset(m, 0, sizeof(*m));
}

void emap_free(struct extent_map *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->c[i]);
	for (unsigned i = 0; i < m->nspare; i++)
		free(m->spare[i]);
	free(m->c);
	emap_init(m);
}

int emap_reserve(struct extent_map *m)
{
	/* One emap_set() inserts at most two extents: two chunk splits. */
	if (m->cap < m->n + 2) {
		size_t cap = m->cap ? m->cap * 2 : 16;
		struct emap_chunk **c = realloc(m->c, cap * sizeof(*c));
		if (!c)
			return -ENOMEM;
		m->c = c;
		m->cap = cap;
	}
	while (m->nspare < 2) {
		struct emap_chunk *c = malloc(sizeof(*c));
		if (!c)
			return -ENOMEM;
		m->spare[m->nspare++] = c;
	}
	return 0;
}

static struct emap_chunk *take_spare(struct extent_map *m)
{
	struct emap_chunk *c = m->spare[--m->nspare];

	c->n = 0;
	return c;
}

static void put_chunk(struct extent_map *m, struct emap_chunk *c)
{
	if (m->nspare < 2)
		m->spare[m->nspare++] = c;
	else
		free(c);
}

static void insert_chunk(struct extent_map *m, size_t at, struct emap_chunk *c)
{
	memmove(&m->c[at + 1], &m->c[at], (m->n - at) * sizeof(*m->c));
	m->c[at] = c;
	m->n++;
}

static void remove_chunk(struct extent_map *m, size_t at)
{
	put_chunk(m, m->c[at]);
	memmove(&m->c[at], &m->c[at + 1], (m->n - at - 1) * sizeof(*m->c));
	m->n--;
}

void emap_seek(const struct extent_map *m, uint64_t off, struct emap_iter *it)
{
	size_t lo = 0, hi = m->n;

	/* First chunk whose last extent ends after @off. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct emap_chunk *c = m->c[mid];
		if (ext_end(&c->e[c->n - 1]) > off)
			hi = mid;
		else
			lo = mid + 1;
	}
	it->chunk = lo;
	it->pos = 0;
	if (lo == m->n)
		return;
	const struct emap_chunk *c = m->c[lo];
	uint32_t l = 0, h = c->n;
	while (l < h) {
		uint32_t mid = l + (h - l) / 2;
		if (ext_end(&c->e[mid]) > off)
			h = mid;
		else
			l = mid + 1;
	}
	it->pos = l;
}

const struct extent *emap_get(const struct extent_map *m, const struct emap_iter *it)
{
	if (it->chunk >= m->n)
		return NULL;
	return &m->c[it->chunk]->e[it->pos];
}

static struct extent *get_mut(struct extent_map *m, const struct emap_iter *it)
{
	return (struct extent *)emap_get(m, it);
}

void emap_next(const struct extent_map *m, struct emap_iter *it)
{
	if (it->chunk >= m->n)
		return;
	if (++it->pos >= m->c[it->chunk]->n) {
		it->chunk++;
		it->pos = 0;
	}
}

/* Split a full chunk in two; keep @it on the same extent slot. */
static void split_chunk(struct extent_map *m, struct emap_iter *it)
{
	struct emap_chunk *c = m->c[it->chunk], *nc = take_spare(m);
	uint32_t keep = c->n / 2;

	nc->n = c->n - keep;
	memcpy(nc->e, &c->e[keep], nc->n * sizeof(c->e[0]));
	c->n = keep;
	insert_chunk(m, it->chunk + 1, nc);
	if (it->pos > keep) {
		it->chunk++;
		it->pos -= keep;
	}
}

/* Insert @e before the extent at @it (at the end if @it is past it); @it
 * then points at the new extent. */
static void insert_at(struct extent_map *m, struct emap_iter *it, const struct extent *e)
{
	struct emap_chunk *c;

	if (m->n == 0) {
		insert_chunk(m, 0, take_spare(m));
		it->chunk = 0;
		it->pos = 0;
	} else if (it->chunk >= m->n) {
		it->chunk = m->n - 1;
		it->pos = m->c[it->chunk]->n;
	}
	if (m->c[it->chunk]->n == EMAP_CHUNK)
		split_chunk(m, it);
	c = m->c[it->chunk];
	memmove(&c->e[it->pos + 1], &c->e[it->pos], (c->n - it->pos) * sizeof(c->e[0]));
	c->e[it->pos] = *e;
	c->n++;
	m->count++;
}

/* Remove the extent at @it; @it then points at the one after it. */
static void remove_at(struct extent_map *m, struct emap_iter *it)
{
	struct emap_chunk *c = m->c[it->chunk];

	memmove(&c->e[it->pos], &c->e[it->pos + 1], (c->n - it->pos - 1) * sizeof(c->e[0]));
	c->n--;
	m->count--;
	if (c->n == 0) {
		remove_chunk(m, it->chunk);
		it->pos = 0;
	} else if (it->pos >= c->n) {
		it->chunk++;
		it->pos = 0;
	}
}

/* The new range lies strictly inside @old (which starts before it and ends
 * after it): keep @old's head, insert the new extent and @old's tail. */
static void split_around(struct extent_map *m, struct emap_iter *it, struct extent *old, const struct extent *e,
			 emap_dead_fn dead, void *ctx)
{
	struct extent mid = *old, tail = *old;

	cut_front(&mid, e->off - old->off);
	mid.len = e->len;
	cut_front(&tail, ext_end(e) - old->off);
	dead(ctx, &mid);
	old->len = e->off - old->off;
	emap_next(m, it);
	insert_at(m, it, e);
	emap_next(m, it);
	insert_at(m, it, &tail);
}

void emap_set(struct extent_map *m, const struct extent *e, emap_dead_fn dead, void *ctx)
{
	uint64_t start = e->off, end = ext_end(e);
	struct emap_iter it;
	struct extent *x;

	emap_seek(m, start, &it);
	x = get_mut(m, &it);
	if (x && x->off < start) {
		if (ext_end(x) > end) {
			split_around(m, &it, x, e, dead, ctx);
			return;
		}
		struct extent tail = *x;
		cut_front(&tail, start - x->off);
		dead(ctx, &tail);
		x->len = start - x->off;
		emap_next(m, &it);
		x = get_mut(m, &it);
	}
	while (x && ext_end(x) <= end) {
		dead(ctx, x);
		remove_at(m, &it);
		x = get_mut(m, &it);
	}
	if (x && x->off < end) {
		struct extent head = *x;
		head.len = end - x->off;
		dead(ctx, &head);
		cut_front(x, end - x->off);
	}
	insert_at(m, &it, e);
}

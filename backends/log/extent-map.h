/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The index: non-overlapping device ranges, sorted by offset, each mapped to
 * where its bytes live (a segment and a file offset) or to zeros.  Ranges
 * not in the map were never written and read as zeros.
 *
 * A two-level sorted array: a sorted vector of chunks of up to EMAP_CHUNK
 * extents each.  Lookups are two binary searches; an insert moves at most
 * one chunk's worth of extents.  It is a B-tree of height two, which is
 * plenty: a million extents are 8 K chunks.  32 bytes per extent.
 *
 * emap_set() never allocates: emap_reserve() first makes room for what one
 * emap_set() can need, so an index update after a record is already in the
 * log cannot fail half-way.
 */
#ifndef BLKSERV_LOG_EXTENT_MAP_H
#define BLKSERV_LOG_EXTENT_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EMAP_CHUNK 128
#define EXTENT_ZERO UINT64_MAX /* foff of a range that reads as zeros */

struct extent {
	uint64_t off;  /* device offset */
	uint64_t len;  /* bytes, > 0 */
	uint64_t seg;  /* segment holding the record this came from */
	uint64_t foff; /* file offset of the byte at `off`, or EXTENT_ZERO */
};

struct emap_chunk {
	uint32_t n;
	struct extent e[EMAP_CHUNK];
};

struct extent_map {
	struct emap_chunk **c;
	size_t n, cap;
	struct emap_chunk *spare[2];
	unsigned nspare;
	uint64_t count;
};

struct emap_iter {
	size_t chunk;
	uint32_t pos;
};

/* Called for each piece of an older extent that emap_set() replaces. */
typedef void (*emap_dead_fn)(void *ctx, const struct extent *piece);

void emap_init(struct extent_map *m);
void emap_free(struct extent_map *m);
/* Make sure the next emap_set() needs no allocation.  0 or -ENOMEM. */
int emap_reserve(struct extent_map *m);
/* Map @e's range to @e (after emap_reserve()). */
void emap_set(struct extent_map *m, const struct extent *e, emap_dead_fn dead, void *ctx);

/* Position @it at the first extent that ends after @off. */
void emap_seek(const struct extent_map *m, uint64_t off, struct emap_iter *it);
/* The extent at @it, NULL past the end. */
const struct extent *emap_get(const struct extent_map *m, const struct emap_iter *it);
void emap_next(const struct extent_map *m, struct emap_iter *it);
static inline uint64_t emap_count(const struct extent_map *m)
{
	return m->count;
}

#endif

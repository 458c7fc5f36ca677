/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdatomic.h>

#include "stats.h"

static unsigned latency_bucket(uint64_t ns)
{
	unsigned log2, sub;

	if (ns < 4)
		return (unsigned)ns;
	log2 = 63 - (unsigned)__builtin_clzll(ns);
	sub = (unsigned)(ns >> (log2 - 2)) & 3; /* the two bits below the top one */
	return log2 * 4 + sub < LATENCY_BUCKETS ? log2 * 4 + sub : LATENCY_BUCKETS - 1;
}

uint64_t stats_bucket_upper_ns(unsigned b)
{
	unsigned log2 = b / 4, sub = b % 4;

	if (b < 4)
		return b + 1;
	if (b < 8)
		return 4; /* never used: latency_bucket puts 4 ns and more at 8 and up */
	if (b >= LATENCY_BUCKETS - 1)
		return UINT64_MAX; /* the last one holds everything longer */
	return ((uint64_t)(4 + sub + 1)) << (log2 - 2);
}

/* Only the owning queue thread writes; relaxed atomics keep readers sane. */
#define BUMP(field, v) atomic_store_explicit((_Atomic uint64_t *)&(field), (field) + (v), memory_order_relaxed)

void stats_record(struct op_stats *s, uint64_t bytes, int result, uint64_t latency_ns)
{
	BUMP(s->ops, 1);
	if (result < 0) {
		BUMP(s->errors, 1);
		return;
	}
	BUMP(s->bytes, bytes);
	BUMP(s->latency_ns_sum, latency_ns);
	BUMP(s->latency[latency_bucket(latency_ns)], 1);
}

void stats_count_mapped_read(struct io_stats *s)
{
	BUMP(s->reads_mapped, 1);
}

#define LOAD(field) atomic_load_explicit((_Atomic uint64_t *)&(field), memory_order_relaxed)

void stats_add(struct io_stats *sum, const struct io_stats *s)
{
	for (unsigned op = 0; op < BLKSERV_OP__MAX; op++) {
		struct op_stats *d = &sum->op[op];
		const struct op_stats *o = &s->op[op];
		d->ops += LOAD(o->ops);
		d->bytes += LOAD(o->bytes);
		d->errors += LOAD(o->errors);
		d->latency_ns_sum += LOAD(o->latency_ns_sum);
		for (unsigned b = 0; b < LATENCY_BUCKETS; b++)
			d->latency[b] += LOAD(o->latency[b]);
	}
	sum->inflight += LOAD(s->inflight);
	sum->reads_mapped += LOAD(s->reads_mapped);
}

uint64_t stats_percentile(const struct op_stats *s, double percent)
{
	uint64_t total = 0, seen = 0;

	for (unsigned b = 0; b < LATENCY_BUCKETS; b++)
		total += s->latency[b];
	if (total == 0)
		return 0;
	for (unsigned b = 0; b < LATENCY_BUCKETS; b++) {
		seen += s->latency[b];
		if ((double)seen * 100.0 >= percent * (double)total)
			return stats_bucket_upper_ns(b);
	}
	return stats_bucket_upper_ns(LATENCY_BUCKETS - 1);
}

const char *op_name(unsigned op)
{
	static const char *const names[] = { "read", "write", "flush", "trim", "write_zeroes" };

	return op < BLKSERV_OP__MAX ? names[op] : "?";
}

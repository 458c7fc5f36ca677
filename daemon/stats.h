/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Per-queue I/O counters.  Each queue writes only its own (no shared lock
 * on the data path); readers sum them with relaxed loads. */
#ifndef BLKSERVD_STATS_H
#define BLKSERVD_STATS_H

#include <stdint.h>

#include "blkserv/blkserv-plugin.h"

/* Latency histogram: 4 buckets per power of two of nanoseconds. */
#define LATENCY_BUCKETS 256

struct op_stats {
	uint64_t ops;
	uint64_t bytes;
	uint64_t errors;
	uint64_t latency_ns_sum;
	uint64_t latency[LATENCY_BUCKETS];
};

struct io_stats {
	struct op_stats op[BLKSERV_OP__MAX];
	uint64_t inflight;
	/* Reads answered with a file range the frontend sent without a copy. */
	uint64_t reads_mapped;
};

void stats_record(struct op_stats *s, uint64_t bytes, int result, uint64_t latency_ns);
void stats_count_mapped_read(struct io_stats *s);
void stats_add(struct io_stats *sum, const struct io_stats *s);
/* Latency in ns below which @percent of the recorded operations fell. */
uint64_t stats_percentile(const struct op_stats *s, double percent);
const char *op_name(unsigned op);
/* The largest latency in ns histogram bucket @b holds. */
uint64_t stats_bucket_upper_ns(unsigned b);

#endif

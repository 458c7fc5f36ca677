/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Queue internals the rest of the daemon needs (the SDK has the rest). */
#ifndef BLKSERVD_QUEUE_H
#define BLKSERVD_QUEUE_H

#include "stats.h"

struct blkserv_device;

/* The checks of blkserv_submit(): 0 or the -errno the request fails with. */
int request_validate(const struct blkserv_device *dev, const struct blkserv_request *req);
void queue_stats_add(struct blkserv_queue *q, struct io_stats *sum);
struct blkserv_queue *queue_next(struct blkserv_queue *q);
uint64_t queue_heartbeat_ns(struct blkserv_queue *q);

#endif

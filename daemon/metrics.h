/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Prometheus endpoint of the metrics section (blkservd-metrics(7)):
 * GET /metrics over HTTP (libmicrohttpd), served from the daemon's main
 * loop, so it reads the devices the loop owns without a lock of its own. */
#ifndef BLKSERVD_METRICS_H
#define BLKSERVD_METRICS_H

#include <stddef.h>

#include "config.h"
#include "device.h"

/* What the exposition is made of: the daemon's devices. */
struct metrics_source {
	void *userdata;
	size_t (*count)(void *userdata);
	struct blkserv_device *(*device_at)(void *userdata, size_t i);
};

struct metrics;

/* Listen as @cfg says (tcp or unix) and answer from @src.  Logs its errors. */
int metrics_start(const struct metrics_config *cfg, const struct metrics_source *src, struct metrics **ret);
void metrics_stop(struct metrics *m);
/* For the main loop: poll this fd for POLLIN, wait at most timeout_ms
 * (-1: no limit), then call metrics_run. */
int metrics_fd(const struct metrics *m);
int metrics_timeout_ms(const struct metrics *m);
void metrics_run(struct metrics *m);

/* The exposition text (malloc'd) and its length; NULL when out of memory. */
char *metrics_render(const struct metrics_source *src, size_t *ret_len);
/* Two metrics sections that listen alike (a reload keeps the endpoint). */
bool metrics_config_equal(const struct metrics_config *a, const struct metrics_config *b);

#endif

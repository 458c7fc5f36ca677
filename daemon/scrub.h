/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Online scrub of a device (blkservctl scrub): a thread of its own calls
 * the backend's scrub callback while the queues go on serving, and keeps
 * its progress and result for the control socket.
 */
#ifndef BLKSERVD_SCRUB_H
#define BLKSERVD_SCRUB_H

#include <stdbool.h>
#include <stdint.h>

struct blkserv_device;

enum scrub_state {
	SCRUB_NEVER, /* no scrub since the device started */
	SCRUB_RUNNING,
	SCRUB_CLEAN,     /* the last scrub verified everything */
	SCRUB_CORRUPT,   /* it found corruption (errors > 0) */
	SCRUB_FAILED,    /* it could not complete (error says why) */
	SCRUB_CANCELLED, /* the device stopped, or the scrub was cancelled */
};

struct scrub_status {
	enum scrub_state state;
	uint64_t done_bytes, total_bytes, errors;
	int error;            /* -errno of a failed scrub */
	uint64_t started;     /* realtime seconds (0: never) */
	uint64_t duration_ms; /* so far, or of the last scrub */
};

const char *scrub_state_name(enum scrub_state s);
/* Start a scrub of @dev.  0; -EOPNOTSUPP (the backend cannot scrub),
 * -ENODEV (the backend is not open), -EBUSY (one is running), -errno. */
int device_scrub_start(struct blkserv_device *dev);
void device_scrub_status(struct blkserv_device *dev, struct scrub_status *ret);
/* Cancel a running scrub and wait for it (before the backend closes). */
void device_scrub_stop(struct blkserv_device *dev);
/* Free the scrub state (device_free; after device_scrub_stop). */
void device_scrub_free(struct blkserv_device *dev);

#endif

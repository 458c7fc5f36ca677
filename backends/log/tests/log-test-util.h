/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the log backend's test programs share: opening a log device, a
 * model of what it must read back, the log's record layout and damage. */
#ifndef BLKSERV_LOG_TEST_UTIL_H
#define BLKSERV_LOG_TEST_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "test-helpers.h"

#define DEV_SIZE (256u << 10)
#define SECTOR 512u

#define COMPACT_OPTS "segment_size = 64K\ncompact_threshold = 30\ncheckpoint_interval = 512K\n"

/* Where each record of a log lies (read_layout). */
struct rec_pos {
	uint64_t seg, pos, end, seq;
};

struct layout {
	struct rec_pos r[4096];
	int n;
	uint64_t segs[256], seg_size[256], seg_first_seq[256];
	int nsegs;
};

/* A log device and what it must read back. */
struct dev_model {
	struct blkserv_device *dev;
	struct blkserv_queue *q;
	unsigned char *m; /* what the device must read back */
	unsigned char *buf;
	uint64_t size;
	uint32_t id;
};

char *config_text(const char *dir, const char *extra, uint64_t size);
int try_open(const char *dir, const char *extra, uint64_t size, struct blkserv_device **ret, char *errbuf,
	     size_t errlen);
struct blkserv_device *open_log(const char *dir, const char *extra);
uint64_t stat_value(struct blkserv_device *dev, const char *key);
unsigned char pattern(uint32_t id, uint32_t off);
void read_layout(const char *dir, struct layout *l);
void seg_path(const char *dir, uint64_t id, char *buf, size_t len);
void flip_bit(const char *dir, uint64_t id, uint64_t pos, int bit);
char *fresh_dir(const char *name);
int dm_write(struct dev_model *d, uint64_t off, uint32_t len, uint32_t flags);
void dm_zero(struct dev_model *d, uint32_t op, uint64_t off, uint32_t len);
void dm_verify(struct dev_model *d, const char *what);
uint32_t dm_crc(struct dev_model *d);
void dm_open(struct dev_model *d, const char *dir, const char *extra, uint64_t size);
void dm_close(struct dev_model *d, bool clean);
void dm_free(struct dev_model *d);

#endif

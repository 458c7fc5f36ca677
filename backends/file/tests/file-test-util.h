/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the file backend's test programs share: configs, opening with the
 * log captured, files and their allocation, manual requests, and the
 * fixture (an 8 MiB file on /tmp or /dev/shm). */
#ifndef BLKSERV_FILE_TEST_UTIL_H
#define BLKSERV_FILE_TEST_UTIL_H

#include <stdbool.h>
#include <stdint.h>

#include "test-helpers.h"

#define KiB 1024u
#define MiB (1024u * 1024u)
#define BUFSZ (4 * MiB)

/* Capture what is logged (to stderr) between capture_start and capture_end. */
struct capture {
	int saved;
	int fd;
};

/* A request we drive by hand, to act between its CQEs. */
struct manual_io {
	bool done;
	int result;
};

/* An 8 MiB file on /tmp (or /dev/shm) served as device "f" (setup). */
struct fixture {
	char *dir;
	char *path;
	struct blkserv_device *dev;
	struct blkserv_queue *q;
	char *a, *b;
};

char *config(const char *backend, const char *path, const char *size, const char *opts, bool two);
struct capture capture_start(void);
void capture_end(struct capture c, char *log, size_t loglen);
int try_open(const char *text, const char *name, struct blkserv_device **ret, char *log, size_t loglen);
void expect_open_error(const char *text, int err, const char *path, const char *what);
struct blkserv_device *open_ok(const char *text, const char *name);
void fill(char *buf, size_t len, unsigned seed);
bool all_zero(const char *buf, size_t len);
void write_file(const char *path, uint64_t size, unsigned seed);
uint64_t file_size(const char *path);
uint64_t allocated(const char *path);
unsigned long long stat_of(struct blkserv_device *dev, const char *key);
void manual_done(struct blkserv_request *req, int result);
void submit_manual(struct blkserv_queue *q, struct manual_io *m, uint32_t op, uint64_t offset, uint64_t length,
		   void *buf);
void process_once(struct blkserv_queue *q);
int wait_manual(struct blkserv_queue *q, struct manual_io *m);
struct fixture *fixture_new(const char *base, const char *opts);
void fixture_close_device(struct fixture *f);
int setup(void **state);
int setup_direct(void **state);
int setup_tmpfs(void **state);
int teardown(void **state);
void check_file_matches(struct fixture *f, uint64_t off, size_t len);

#endif

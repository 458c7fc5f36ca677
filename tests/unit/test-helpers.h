/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers for unit tests: configs from strings, backends without a
 * frontend, synchronous requests on a queue the test thread owns. */
#ifndef BLKSERV_TEST_HELPERS_H
#define BLKSERV_TEST_HELPERS_H

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"
#include "device.h"

/* A private plugin directory holding the build's plugins (BLKSERV_TEST_PLUGIN_DIR)
 * and the test frontend "testfe" (tests/unit/fixtures). */
const char *test_plugin_dir(void);
/* Where the fixture plugins were built (BLKSERV_TEST_FIXTURE_DIR). */
const char *test_fixture_dir(void);
/* A fresh private directory under /tmp for this test (removed at exit). */
const char *test_tmpdir(void);
/* asprintf that aborts when out of memory (malloc'd: free it). */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Write @text to a new file in test_tmpdir(); returns its path (malloc'd: free it). */
char *test_write_file(const char *name, const char *text);
/* Parse @text as a config whose plugin_dir is the build's. */
int test_load_config(const char *text, struct config **ret, char **ret_error);
/* Open only the backend of device @name from config @text; fails the test on error. */
struct blkserv_device *test_open_backend(const char *text, const char *name);
void test_close_device(struct blkserv_device *dev);
/* Submit one request on @q and process the ring until it completes; returns its result. */
int test_io(struct blkserv_queue *q, uint32_t op, uint32_t flags, uint64_t offset, uint64_t length, void *buf);

#endif

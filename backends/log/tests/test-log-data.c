/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The log backend through the host's request path: reads and writes against
 * a model, refusals, compaction (and its race with writes), the space
 * limit, a failed sync, many threads. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pthread.h>
#include <stdatomic.h>

#include "cleanup.h"
#include "crc32c.h"
#include "format.h"
#include "test-helpers.h"
#include "log-test-util.h"

static void test_basic(void **state)
{
	_cleanup_free_ char *dir = fresh_dir("basic");
	struct dev_model d = { 0 };
	char stats[4096];

	dm_open(&d, dir, "", DEV_SIZE);
	dm_verify(&d, "a new log reads as zeros");
	assert_int_equal(dm_write(&d, 8192, 4096, 0), 0);
	assert_int_equal(dm_write(&d, 10240, 8192, BLKSERV_REQ_FUA), 0);
	assert_int_equal(dm_write(&d, DEV_SIZE - 512, 512, 0), 0);
	dm_zero(&d, BLKSERV_OP_TRIM, 9216, 2048);
	dm_zero(&d, BLKSERV_OP_WRITE_ZEROES, 16384, 1024);
	assert_int_equal(test_io(d.q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), 0);
	dm_verify(&d, "after writes, trims, zeroes");
	/* Past the end: the host refuses before the backend sees it. */
	assert_int_equal(test_io(d.q, BLKSERV_OP_WRITE, 0, DEV_SIZE, 512, d.buf), -ENOSPC);
	assert_int_equal(d.dev->backend->backend.get_stats(d.dev->backend_handle, stats, sizeof(stats)), 0);
	for (const char *k = "live_bytes=\0garbage_bytes=\0segments=\0client_write_bytes=\0disk_write_bytes=\0"
			     "write_amplification=\0";
	     *k; k += strlen(k) + 1)
		if (!strstr(stats, k))
			fail_msg("no %s in stats:\n%s", k, stats);
	assert_int_equal(stat_value(d.dev, "client_write_bytes"), 4096 + 8192 + 512);
	dm_close(&d, true);
	dm_open(&d, dir, "", DEV_SIZE);
	dm_verify(&d, "after a clean restart");
	assert_int_equal(stat_value(d.dev, "recovery_replayed_bytes"), 0); /* from the checkpoint */
	dm_close(&d, false);
	dm_open(&d, dir, "", 0); /* the size comes from the log */
	dm_verify(&d, "after a crash");
	dm_close(&d, true);
	dm_free(&d);
}

static void test_refusals(void **state)
{
	_cleanup_free_ char *dir = fresh_dir("refuse");
	struct blkserv_device *a = NULL, *b = NULL;
	char err[8192];

	assert_int_equal(try_open(dir, "", DEV_SIZE, &a, err, sizeof(err)), 0);
	/* Two devices never share a log. */
	assert_int_equal(try_open(dir, "", DEV_SIZE, &b, err, sizeof(err)), -EBUSY);
	assert_non_null(strstr(err, "in use"));
	test_close_device(a);
	/* The log remembers its size. */
	assert_int_equal(try_open(dir, "", DEV_SIZE * 2, &b, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "holds a device of"));
	/* A new log needs a size. */
	_cleanup_free_ char *empty = fresh_dir("refuse-empty");
	assert_int_equal(try_open(empty, "", 0, &b, err, sizeof(err)), -EINVAL);
	/* Out of range: the config itself is refused, naming the line. */
	_cleanup_free_ char *text = config_text(empty, "segment_size = 4K", DEV_SIZE);
	struct config *c = NULL;
	_cleanup_free_ char *error = NULL;
	assert_true(test_load_config(text, &c, &error) < 0);
	assert_non_null(error);
	if (!strstr(error, "test.conf:") || !strstr(error, "option 'segment_size' of backend 'log' expects a size "
							   "from 64K to 1T, not '4K'"))
		fail_msg("unexpected config error: %s", error);
}

static void overwrite_randomly(struct dev_model *d, int n, uint32_t max_blocks)
{
	for (int i = 0; i < n; i++) {
		uint64_t off = (uint64_t)(rand() % (int)(d->size / 4096)) * 4096;
		uint32_t len = 4096 * (1 + (uint32_t)rand() % max_blocks);
		if (off + len > d->size)
			len = (uint32_t)(d->size - off);
		if (i % 40 == 7)
			dm_zero(d, i % 80 == 7 ? BLKSERV_OP_TRIM : BLKSERV_OP_WRITE_ZEROES, off,
				len * 4 > d->size - off ? (uint32_t)(d->size - off) : len * 4);
		else
			assert_int_equal(dm_write(d, off, len, 0), 0);
	}
}

/* Poll until compaction brought garbage down, or give up after 20 s. */
static void wait_for_compaction(struct dev_model *d, uint64_t min_rounds)
{
	for (int i = 0; i < 400; i++) {
		if (stat_value(d->dev, "compactions") >= min_rounds &&
		    stat_value(d->dev, "garbage_bytes") * 100 <= 60 * stat_value(d->dev, "log_bytes"))
			return;
		usleep(50000);
	}
	fail_msg("compaction did not run: compactions=%" PRIu64 " garbage=%" PRIu64 " log=%" PRIu64,
		 stat_value(d->dev, "compactions"), stat_value(d->dev, "garbage_bytes"),
		 stat_value(d->dev, "log_bytes"));
}

/* Compaction keeps every byte: the device's checksum before and after,
 * with writes going on during it, and after restarts. */
static void test_compaction(void **state)
{
	_cleanup_free_ char *dir = fresh_dir("compact");
	struct dev_model d = { 0 };
	uint64_t size = 1 << 20, before_bytes;
	uint32_t crc;

	srand(5);
	dm_open(&d, dir, COMPACT_OPTS "compaction = false\n", size);
	for (uint64_t off = 0; off < size; off += 65536)
		assert_int_equal(dm_write(&d, off, 65536, 0), 0);
	overwrite_randomly(&d, 700, 4);
	crc = dm_crc(&d);
	assert_int_equal(crc, crc32c(0, d.m, size));
	before_bytes = stat_value(d.dev, "log_bytes");
	dm_close(&d, true);

	dm_open(&d, dir, COMPACT_OPTS, size);
	wait_for_compaction(&d, 1);
	assert_int_equal(dm_crc(&d), crc);
	assert_true(stat_value(d.dev, "log_bytes") < before_bytes);
	assert_true(stat_value(d.dev, "deleted_segments") > 0);
	/* Writes while compaction runs: the index must keep the newest. */
	overwrite_randomly(&d, 600, 2);
	wait_for_compaction(&d, 2);
	dm_verify(&d, "after compaction with concurrent writes");
	dm_close(&d, false);
	dm_open(&d, dir, COMPACT_OPTS, size);
	dm_verify(&d, "after compaction and a crash");
	dm_close(&d, true);
	dm_open(&d, dir, COMPACT_OPTS "compaction = false\n", size);
	dm_verify(&d, "after compaction and a clean restart");
	dm_close(&d, true);
	dm_free(&d);
}

/* Client writes racing with compaction's copies of the same blocks: a
 * copy must never bring back data a client overwrote meanwhile. */
static void test_compaction_race(void **state)
{
	_cleanup_free_ char *dir = fresh_dir("race");
	struct dev_model d = { 0 };

	srand(21);
	dm_open(&d, dir, "segment_size = 64K\ncompact_threshold = 5\n", DEV_SIZE);
	for (int i = 0; i < 1500; i++)
		assert_int_equal(dm_write(&d, (uint64_t)(rand() % 24) * 4096, 4096 * (1 + (uint32_t)(rand() % 2)), 0),
				 0);
	dm_verify(&d, "writes racing with compaction");
	/* Compaction runs in the background: wait for it rather than assume
	 * it already ran (it had not, once, on a loaded machine). */
	wait_for_compaction(&d, 1);
	dm_verify(&d, "writes racing with compaction, once it ran");
	dm_close(&d, false);
	dm_open(&d, dir, "segment_size = 64K\ncompact_threshold = 5\n", DEV_SIZE);
	dm_verify(&d, "writes racing with compaction, after a crash");
	dm_close(&d, true);
	dm_free(&d);
}

/* A failed fdatasync is permanent: that flush and every later one fail,
 * writes too, reads go on; it is logged once. */
static void test_sync_failure(void **state)
{
	_cleanup_free_ char *dir = fresh_dir("fsync-fail");
	struct dev_model d = { 0 };
	char err[8192];

	/* A new log syncs nothing at open: the first flush is call 1. */
	setenv("BLKSERV_LOG_FAULT_FSYNC", "1", 1);
	dm_open(&d, dir, "", DEV_SIZE);
	unsetenv("BLKSERV_LOG_FAULT_FSYNC");
	assert_int_equal(dm_write(&d, 0, 4096, 0), 0);
	assert_int_equal(test_io(d.q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), -EIO);
	assert_int_equal(test_io(d.q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), -EIO);
	assert_int_equal(dm_write(&d, 4096, 4096, 0), -EIO);
	assert_int_equal(dm_write(&d, 8192, 4096, BLKSERV_REQ_FUA), -EIO);
	assert_int_equal(stat_value(d.dev, "sync_failed"), 1);
	dm_verify(&d, "reads after a failed sync");
	dm_close(&d, true);
	/* The next start recovers as after a crash. */
	struct blkserv_device *dev = NULL;
	assert_int_equal(try_open(dir, "", DEV_SIZE, &dev, err, sizeof(err)), 0);
	test_close_device(dev);
	dm_free(&d);
}

/* max_size: a clean ENOSPC without compaction, never corruption; with
 * compaction, overwrites go on for ever in bounded space. */
static void test_space_limit(void **state)
{
	_cleanup_free_ char *dir = fresh_dir("full"), *dir2 = fresh_dir("full2");
	struct dev_model d = { 0 }, e = { 0 };
	uint64_t off = 0;
	int r = 0;

	dm_open(&d, dir, "segment_size = 64K\nmax_size = 256K\ncompaction = false\n", 1 << 20);
	for (; off < d.size && (r = dm_write(&d, off, 4096, 0)) == 0; off += 4096)
		;
	assert_int_equal(r, -ENOSPC);
	assert_true(off >= 64 << 10 && off < 256 << 10);
	dm_verify(&d, "a full log");
	dm_close(&d, false);
	dm_open(&d, dir, "segment_size = 64K\nmax_size = 256K\ncompaction = false\n", 1 << 20);
	dm_verify(&d, "a full log after a crash");
	assert_int_equal(dm_write(&d, 0, 4096, 0), -ENOSPC);
	dm_close(&d, true);
	dm_free(&d);

	dm_open(&e, dir2, "segment_size = 64K\nmax_size = 512K\ncompact_threshold = 20\n", 1 << 20);
	srand(9);
	for (int i = 0; i < 1500; i++)
		assert_int_equal(dm_write(&e, (uint64_t)(rand() % 16) * 4096, 4096, 0), 0);
	assert_true(stat_value(e.dev, "log_bytes") <= 512 << 10);
	dm_verify(&e, "overwrites in bounded space");
	dm_close(&e, true);
	dm_free(&e);
}

/* Queues on several threads at once, with compaction running. */
struct worker {
	struct blkserv_device *dev;
	unsigned char *m;
	uint64_t base;
	unsigned seed;
};

#define REGION (128u << 10)

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct blkserv_queue *q;
	unsigned char *buf = malloc(16384);
	unsigned seed = w->seed;

	if (blkserv_queue_new(w->dev, 2, 0, &q) < 0)
		abort();
	for (int i = 0; i < 400; i++) {
		uint64_t off = w->base + (uint64_t)(rand_r(&seed) % (REGION / 4096)) * 4096;
		uint32_t len = 4096 * (1 + (uint32_t)rand_r(&seed) % 4), id = w->seed * 1000 + (uint32_t)i;
		if (off + len > w->base + REGION)
			len = (uint32_t)(w->base + REGION - off);
		for (uint32_t k = 0; k < len; k++)
			buf[k] = pattern(id, (uint32_t)(off + k));
		if (test_io(q, BLKSERV_OP_WRITE, i % 17 ? 0 : BLKSERV_REQ_FUA, off, len, buf) != 0)
			abort();
		memcpy(w->m + off, buf, len);
		if (i % 23 == 0 && test_io(q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL) != 0)
			abort();
	}
	blkserv_queue_free(q);
	free(buf);
	return NULL;
}

static void test_threads(void **state)
{
	_cleanup_free_ char *dir = fresh_dir("threads");
	struct dev_model d = { 0 };
	struct worker w[3];
	pthread_t t[3];

	dm_open(&d, dir, COMPACT_OPTS, 3 * REGION);
	for (int i = 0; i < 3; i++) {
		w[i] = (struct worker){ d.dev, d.m, (uint64_t)i * REGION, (unsigned)i + 1 };
		assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	dm_verify(&d, "writes from three threads");
	dm_close(&d, false);
	dm_open(&d, dir, COMPACT_OPTS, 3 * REGION);
	dm_verify(&d, "writes from three threads, after a crash");
	dm_close(&d, true);
	dm_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),       cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_compaction),  cmocka_unit_test(test_compaction_race),
		cmocka_unit_test(test_space_limit), cmocka_unit_test(test_sync_failure),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

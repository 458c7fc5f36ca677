/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The file backend's I/O through the host's request path: flush, FUA,
 * trim and write zeroes, O_DIRECT with unaligned requests, short reads and
 * writes made for real (a file truncated behind its back, RLIMIT_FSIZE),
 * several queues, the sticky flush failure (blkserv-backend-file-fault.so)
 * and a loop device when running as root.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "plugin.h"
#include "test-helpers.h"
#include "file-test-util.h"

/* ---- flush, FUA, trim, write zeroes ----------------------------------------- */

static void test_caps(void **state)
{
	struct fixture *f = *state;
	uint64_t caps = f->dev->native_caps;

	/* /tmp punches holes (ext4, xfs, tmpfs, btrfs all do). */
	assert_true(caps & BLKSERV_CAP_FLUSH);
	assert_true(caps & BLKSERV_CAP_FUA); /* native: RWF_DSYNC */
	assert_true(caps & BLKSERV_CAP_WRITE_ZEROES);
	assert_true(caps & BLKSERV_CAP_TRIM);
	assert_false(caps & (BLKSERV_CAP_READ_ONLY | BLKSERV_CAP_WRITE_THROUGH));
}

static void test_flush_and_fua(void **state)
{
	struct fixture *f = *state;

	fill(f->a, MiB, 5);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, 0, MiB, f->a), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, BLKSERV_REQ_FUA, MiB, MiB, f->a), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE_ZEROES, BLKSERV_REQ_FUA, 0, 4096, NULL), 0);
	check_file_matches(f, MiB, MiB);
	assert_int_equal(f->dev->backend->backend.sync(f->dev->backend_handle), 0);
}

static void test_trim(void **state)
{
	struct fixture *f = *state;
	uint64_t before;

	fill(f->a, 4 * MiB, 2);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, 0, 4 * MiB, f->a), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), 0);
	before = allocated(f->path);
	assert_int_equal(test_io(f->q, BLKSERV_OP_TRIM, 0, MiB, 2 * MiB, NULL), 0);
	assert_true(allocated(f->path) <= before - 2 * MiB);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 0, 4 * MiB, f->b), 0);
	assert_memory_equal(f->b, f->a, MiB);
	assert_true(all_zero(f->b + MiB, 2 * MiB));
	assert_memory_equal(f->b + 3 * MiB, f->a + 3 * MiB, MiB);
	/* Unaligned edges are fine too; FUA adds an fdatasync. */
	assert_int_equal(test_io(f->q, BLKSERV_OP_TRIM, BLKSERV_REQ_FUA, 100, 5000, NULL), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 100, 5000, f->b), 0);
	assert_true(all_zero(f->b, 5000));
}

static void test_write_zeroes(void **state)
{
	struct fixture *f = *state;
	uint64_t before;

	fill(f->a, 4 * MiB, 4);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, 0, 4 * MiB, f->a), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), 0);
	before = allocated(f->path);

	/* May unmap: punched. */
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE_ZEROES, 0, 0, MiB, NULL), 0);
	assert_true(allocated(f->path) <= before - MiB);
	before = allocated(f->path);

	/* NO_HOLE: zeroed, still allocated. */
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE_ZEROES, BLKSERV_REQ_NO_HOLE, MiB, MiB, NULL), 0);
	assert_true(allocated(f->path) >= before);

	/* Unaligned and FUA. */
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE_ZEROES, BLKSERV_REQ_NO_HOLE | BLKSERV_REQ_FUA, 3 * MiB + 7,
				 1000, NULL),
			 0);

	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 0, 4 * MiB, f->b), 0);
	assert_true(all_zero(f->b, 2 * MiB));
	assert_memory_equal(f->b + 2 * MiB, f->a + 2 * MiB, MiB + 7);
	assert_true(all_zero(f->b + 3 * MiB + 7, 1000));
	assert_memory_equal(f->b + 3 * MiB + 1007, f->a + 3 * MiB + 1007, MiB - 1007);
	check_file_matches(f, 0, 4 * MiB);
}

/* tmpfs punches holes but has no FALLOC_FL_ZERO_RANGE: NO_HOLE writes zeros. */
static void test_tmpfs_zero_fallback(void **state)
{
	struct fixture *f = *state;

	if (!f)
		skip();
	fill(f->a, 4 * MiB, 6);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, 0, 4 * MiB, f->a), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE_ZEROES, BLKSERV_REQ_NO_HOLE, 4096, 3 * MiB, NULL), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE_ZEROES, 0, 3 * MiB + 4096, 4096, NULL), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 0, 4 * MiB, f->b), 0);
	assert_memory_equal(f->b, f->a, 4096);
	assert_true(all_zero(f->b + 4096, 3 * MiB + 4096));
	assert_memory_equal(f->b + 3 * MiB + 8192, f->a + 3 * MiB + 8192, MiB - 8192);
	fprintf(stderr, "tmpfs: zero_writes=%llu\n", stat_of(f->dev, "zero_writes"));
	check_file_matches(f, 0, 4 * MiB);
}

/* ---- O_DIRECT ------------------------------------------------------------------ */

static void test_direct(void **state)
{
	struct fixture *f = *state;

	/* Aligned: straight through. */
	fill(f->a, MiB, 11);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, 0, MiB, f->a), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 0, MiB, f->b), 0);
	assert_memory_equal(f->a, f->b, MiB);
	assert_int_equal(stat_of(f->dev, "bounced"), 0);

	/* Aligned range, misaligned buffers: bounced. */
	fill(f->a + 1, MiB, 12);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, MiB, MiB, f->a + 1), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, MiB, MiB, f->b + 3), 0);
	assert_memory_equal(f->a + 1, f->b + 3, MiB);
	assert_int_equal(stat_of(f->dev, "bounced"), 2);

	/* Misaligned ranges: through the page cache, coherent with O_DIRECT. */
	fill(f->a, 5000, 13);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, 4096 + 100, 5000, f->a), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 0, 3 * 4096, f->b), 0); /* O_DIRECT */
	assert_memory_equal(f->b + 4096 + 100, f->a, 5000);
	fill(f->a, 8192, 14);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, 8192, 8192, f->a), 0); /* O_DIRECT */
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 8192 + 1, 1000, f->b), 0);
	assert_memory_equal(f->b, f->a + 1, 1000);
	assert_true(stat_of(f->dev, "buffered_unaligned") >= 2);
	assert_int_equal(test_io(f->q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), 0);
	check_file_matches(f, 0, 4 * MiB);
}

/* ---- short reads and writes ----------------------------------------------------- */

static void truncate_behind(const char *path, uint64_t size)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

/* A read crossing the end of a file truncated behind our back is short; the
 * rest is asked for again: it succeeds once the data is back, and fails with
 * EIO (never zeros, never success) while it is not. */
static void test_short_read(void **state)
{
	struct fixture *f = *state;
	struct manual_io m;
	int fd;

	fill(f->a, 256 * KiB, 21);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, 0, 256 * KiB, f->a), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), 0);

	truncate_behind(f->path, 64 * KiB);
	submit_manual(f->q, &m, BLKSERV_OP_READ, 0, 256 * KiB, f->b);
	process_once(f->q); /* the short read arrived; the rest is queued */
	assert_false(m.done);
	fd = open(f->path, O_WRONLY | O_CLOEXEC);
	assert_int_equal(pwrite(fd, f->a + 64 * KiB, 192 * KiB, 64 * KiB), (ssize_t)(192 * KiB));
	close(fd);
	assert_int_equal(wait_manual(f->q, &m), 0);
	assert_memory_equal(f->a, f->b, 256 * KiB);
	assert_true(stat_of(f->dev, "short_io_resubmits") >= 1);

	truncate_behind(f->path, 64 * KiB);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 0, 256 * KiB, f->b), -EIO);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 128 * KiB, 4096, f->b), -EIO);
	truncate_behind(f->path, 8 * MiB);
}

/* RLIMIT_FSIZE cuts a write crossing the limit short: the rest is written
 * once the limit is lifted, or the write fails (EFBIG) while it is not. */
static void test_short_write(void **state)
{
	struct fixture *f = *state;
	struct rlimit old, lim;
	struct manual_io m;

	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 2 * MiB + 64 * KiB;
	fill(f->a, 256 * KiB, 22);

	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	submit_manual(f->q, &m, BLKSERV_OP_WRITE, 2 * MiB, 256 * KiB, f->a);
	process_once(f->q); /* 64 KiB written; the rest is queued */
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	assert_false(m.done);
	assert_int_equal(wait_manual(f->q, &m), 0);
	check_file_matches(f, 2 * MiB, 256 * KiB);
	assert_memory_equal(f->b, f->a, 256 * KiB);
	assert_true(stat_of(f->dev, "short_io_resubmits") >= 1);

	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, 2 * MiB, 256 * KiB, f->a), -EFBIG);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_DFL);
}

/* ---- several queues ----------------------------------------------------------- */

static void test_two_queues(void **state)
{
	struct fixture *f = *state;
	struct blkserv_queue *q2;

	assert_int_equal(blkserv_queue_new(f->dev, 4, 0, &q2), 0);
	fill(f->a, MiB, 31);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, MiB, MiB, f->a), 0);
	assert_int_equal(test_io(q2, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), 0);
	assert_int_equal(test_io(q2, BLKSERV_OP_READ, 0, MiB, MiB, f->b), 0);
	assert_memory_equal(f->a, f->b, MiB);
	blkserv_queue_free(q2);
}

/* ---- the sticky flush failure ------------------------------------------------ */

/* Put the test-only build (its 2nd fdatasync reports EIO) beside the others. */
static void install_fault_plugin(void)
{
	const char *src = getenv("BLKSERV_FILE_FAULT_DIR");
	char *cmd;

	if (!src)
		fail_msg("BLKSERV_FILE_FAULT_DIR is not set (run through meson test)");
	cmd = xasprintf("cp '%s/blkserv-backend-file-fault.so' '%s/' && chmod 0755 '%s/blkserv-backend-file-fault.so'",
			src, test_plugin_dir(), test_plugin_dir());
	assert_int_equal(system(cmd), 0);
	free(cmd);
}

static void test_sticky_flush_failure(void **state)
{
	char *path = xasprintf("%s/fault.img", test_tmpdir());
	char *text = config("file-fault", path, "size = 4M", "", false);
	struct blkserv_device *dev;
	struct blkserv_queue *q, *q2;
	char *buf = malloc(MiB);
	struct capture cap;
	char log[4096];

	install_fault_plugin();
	setenv("BLKSERV_FILE_FAULT_FSYNC", "2", 1);
	dev = open_ok(text, "f");
	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);
	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q2), 0);
	fill(buf, MiB, 41);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, 0, 0, MiB, buf), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, 0, MiB, MiB, buf), 0);

	/* The failure, logged loudly with the device name. */
	cap = capture_start();
	assert_int_equal(test_io(q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), -EIO);
	capture_end(cap, log, sizeof(log));
	assert_non_null(strstr(log, "device f:"));
	assert_non_null(strstr(log, "fdatasync"));
	assert_non_null(strstr(log, "until the device is restarted"));

	/* Sticky: the real fdatasync would now succeed; we never say so. */
	assert_int_equal(test_io(q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), -EIO);
	assert_int_equal(test_io(q2, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), -EIO);
	assert_int_equal(test_io(q2, BLKSERV_OP_WRITE, BLKSERV_REQ_FUA, 0, 4096, buf), -EIO);
	assert_int_equal(test_io(q2, BLKSERV_OP_WRITE_ZEROES, BLKSERV_REQ_FUA, 0, 4096, NULL), -EIO);
	/* Plain reads and writes go on. */
	assert_int_equal(test_io(q2, BLKSERV_OP_WRITE, 0, 2 * MiB, 4096, buf), 0);
	assert_int_equal(test_io(q2, BLKSERV_OP_READ, 0, 0, MiB, buf), 0);
	assert_int_equal(stat_of(dev, "flush_failed"), 1);
	/* And the sync at a clean stop reports it too. */
	assert_int_equal(dev->backend->backend.sync(dev->backend_handle), -EIO);
	blkserv_queue_free(q);
	blkserv_queue_free(q2);
	test_close_device(dev);
	unsetenv("BLKSERV_FILE_FAULT_FSYNC");
	unlink(path);
	free(path);
	free(text);
	free(buf);
}

/* ---- block devices (a loop device; root only) --------------------------------- */

static char loopdev[64];
static char *loopfile;

static int setup_loop(void **state)
{
	char cmd[512];
	FILE *p;

	*state = NULL;
	if (geteuid() != 0)
		return 0;
	loopfile = xasprintf("%s/loop-backing.img", test_tmpdir());
	write_file(loopfile, 0, 0);
	truncate_behind(loopfile, 16 * MiB);
	snprintf(cmd, sizeof(cmd), "losetup -f --show '%s' 2>/dev/null", loopfile);
	p = popen(cmd, "r");
	if (!p || !fgets(loopdev, sizeof(loopdev), p))
		loopdev[0] = 0;
	if (p)
		pclose(p);
	loopdev[strcspn(loopdev, "\n")] = 0;
	if (loopdev[0])
		*state = loopdev;
	return 0;
}

static int teardown_loop(void **state)
{
	char cmd[128];

	if (loopdev[0]) {
		snprintf(cmd, sizeof(cmd), "losetup -d '%s'", loopdev);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot detach %s\n", loopdev);
	}
	free(loopfile);
	return 0;
}

static void test_blockdev(void **state)
{
	const char *dev_path = *state;
	char *text, *wrong, *direct;
	struct blkserv_device *dev;
	struct blkserv_queue *q;
	char *a = NULL, *b = NULL;

	if (!dev_path)
		skip(); /* needs root and a loop device */
	text = config("file", dev_path, "", "", false);
	wrong = config("file", dev_path, "size = 8M", "", false);
	direct = config("file", dev_path, "", "direct = true", false);
	assert_int_equal(posix_memalign((void **)&a, 4096, MiB), 0);
	assert_int_equal(posix_memalign((void **)&b, 4096, MiB), 0);

	expect_open_error(wrong, -EINVAL, dev_path, "remove size");
	dev = open_ok(text, "f");
	assert_int_equal(blkserv_device_size(dev), 16 * MiB);
	expect_open_error(text, -EBUSY, dev_path, "in use"); /* O_EXCL (and the lock) */
	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);
	fill(a, MiB, 51);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, BLKSERV_REQ_FUA, 0, MiB, a), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 0, MiB, b), 0);
	assert_memory_equal(a, b, MiB);
	/* WRITE_ZEROES (BLKZEROOUT semantics), aligned and not. */
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE_ZEROES, 0, 4096, 8192, NULL), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE_ZEROES, BLKSERV_REQ_NO_HOLE, 65536 + 3, 1000, NULL), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 0, MiB, b), 0);
	assert_memory_equal(a, b, 4096);
	assert_true(all_zero(b + 4096, 8192));
	assert_memory_equal(a + 12288, b + 12288, 65536 + 3 - 12288);
	assert_true(all_zero(b + 65536 + 3, 1000));
	/* TRIM (BLKDISCARD) where the loop device supports it. */
	if (blkserv_device_caps(dev) & BLKSERV_CAP_TRIM)
		assert_int_equal(test_io(q, BLKSERV_OP_TRIM, 0, MiB, MiB, NULL), 0);
	blkserv_queue_free(q);
	test_close_device(dev);

	dev = open_ok(direct, "f");
	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 0, 4096, b), 0);
	assert_memory_equal(a, b, 4096);
	/* Misaligned range and buffer: through the page cache. */
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 65536 + 1, 2000, b + 1), 0);
	assert_memory_equal(b + 1, a + 65536 + 1, 2);
	assert_true(all_zero(b + 3, 1000));
	assert_memory_equal(b + 1003, a + 65536 + 1003, 998);
	blkserv_queue_free(q);
	test_close_device(dev);
	free(a);
	free(b);
	free(text);
	free(wrong);
	free(direct);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_caps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flush_and_fua, setup, teardown),
		cmocka_unit_test_setup_teardown(test_trim, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_zeroes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tmpfs_zero_fallback, setup_tmpfs, teardown),
		cmocka_unit_test_setup_teardown(test_direct, setup_direct, teardown),
		cmocka_unit_test_setup_teardown(test_short_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_short_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_queues, setup, teardown),
		cmocka_unit_test(test_sticky_flush_failure),
		cmocka_unit_test_setup_teardown(test_blockdev, setup_loop, teardown_loop),
	};

	log_setup(LOG_TARGET_STDERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}

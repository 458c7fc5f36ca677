/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The file backend opening files: creating, sizing, every open error
 * (missing, not a file, permission), locking and read-only.
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

/* ---- creating and sizing -------------------------------------------------- */

static void test_create_sparse(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(file_size(f->path), 8 * MiB);
	assert_true(allocated(f->path) < 256 * KiB);
	assert_int_equal(blkserv_device_size(f->dev), 8 * MiB);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 0, MiB, f->b), 0);
	assert_true(all_zero(f->b, MiB));
}

static void test_roundtrip(void **state)
{
	struct fixture *f = *state;
	static const struct {
		uint64_t off, len;
	} io[] = {
		{ 0, 512 },    { 4096, 4096 },     { 3 * MiB - 512, MiB }, { 8 * MiB - 4 * MiB, 4 * MiB },
		{ 100, 1000 }, { 8 * MiB - 3, 3 },
	};

	for (size_t i = 0; i < ELEMENTSOF(io); i++) {
		fill(f->a, io[i].len, (unsigned)i + 1);
		assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, io[i].off, io[i].len, f->a), 0);
		assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, io[i].off, io[i].len, f->b), 0);
		assert_memory_equal(f->a, f->b, io[i].len);
	}
	check_file_matches(f, 0, 4 * MiB);
	check_file_matches(f, 4 * MiB, 4 * MiB);
	/* Out of range never reaches the backend. */
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 8 * MiB - 512, 1024, f->b), -EINVAL);
}

static void test_size_from_file(void **state)
{
	char *path = xasprintf("%s/existing.img", test_tmpdir());
	char *text = config("file", path, "", "", false);
	struct blkserv_device *dev;
	struct blkserv_queue *q;
	char *buf = malloc(MiB), *want = malloc(MiB);

	write_file(path, 2 * MiB, 7);
	dev = open_ok(text, "f");
	assert_int_equal(blkserv_device_size(dev), 2 * MiB);
	assert_int_equal(blkserv_queue_new(dev, 2, 0, &q), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 0, MiB, buf), 0);
	fill(want, MiB, 7);
	assert_memory_equal(buf, want, MiB);
	blkserv_queue_free(q);
	test_close_device(dev);
	free(buf);
	free(want);
	free(text);
	unlink(path);
	free(path);
}

static void test_smaller_needs_grow(void **state)
{
	char *path = xasprintf("%s/small.img", test_tmpdir());
	char *text = config("file", path, "size = 2M", "", false);
	char *grow = config("file", path, "size = 2M", "grow = true", false);
	struct blkserv_device *dev;

	write_file(path, MiB, 3);
	expect_open_error(text, -EINVAL, path, "grow = true");
	assert_int_equal(file_size(path), MiB);
	dev = open_ok(grow, "f");
	assert_int_equal(blkserv_device_size(dev), 2 * MiB);
	assert_int_equal(file_size(path), 2 * MiB);
	test_close_device(dev);
	unlink(path);
	free(path);
	free(text);
	free(grow);
}

static void test_larger_refused(void **state)
{
	char *path = xasprintf("%s/large.img", test_tmpdir());
	char *text = config("file", path, "size = 2M", "grow = true", false);

	write_file(path, 4 * MiB, 3);
	expect_open_error(text, -EFBIG, path, "larger than the device size");
	assert_int_equal(file_size(path), 4 * MiB); /* never shrunk */
	unlink(path);
	free(path);
	free(text);
}

static void test_not_multiple_of_block_size(void **state)
{
	char *path = xasprintf("%s/odd.img", test_tmpdir());
	char *text = config("file", path, "", "", false);
	char *empty = config("file", path, "", "", false);

	write_file(path, 1000, 1);
	expect_open_error(text, -EINVAL, path, "not a multiple of the device's block_size 512");
	write_file(path, 0, 1);
	expect_open_error(empty, -EINVAL, path, "is empty");
	unlink(path);
	free(path);
	free(text);
	free(empty);
}

static void test_missing_directory(void **state)
{
	char *path = xasprintf("%s/no/such/dir/disk.img", test_tmpdir());
	char *dir = xasprintf("%s/no/such/dir", test_tmpdir());
	char *text = config("file", path, "size = 1M", "", false);

	expect_open_error(text, -ENOENT, dir, "does not exist");
	free(path);
	free(dir);
	free(text);
}

/* The config is refused (the validate step, as --check-config does) with
 * a message naming the file, the option and @what. */
static void expect_config_error(const char *text, const char *what)
{
	struct config *c = NULL;
	char *error = NULL;

	if (test_load_config(text, &c, &error) == 0)
		fail_msg("the config was accepted:\n%s", text);
	if (!error || !strstr(error, "test.conf:") || !strstr(error, what))
		fail_msg("the config error should say '%s', it says: %s", what, error);
	free(error);
}

static void test_missing_file_without_size(void **state)
{
	char *path = xasprintf("%s/absent.img", test_tmpdir());
	char *text = config("file", path, "", "", false);
	char *ro = config("file", path, "size = 1M", "read_only = true", false);

	expect_config_error(text, "option 'path': ");
	expect_config_error(text, "does not exist; set the device's size option");
	expect_config_error(ro, "does not exist (read_only = true");
	assert_int_equal(access(path, F_OK), -1);
	free(path);
	free(text);
	free(ro);
}

static void test_not_a_file(void **state)
{
	char *dir = xasprintf("%s/adir", test_tmpdir());
	char *text = config("file", dir, "size = 1M", "", false);
	char *chr = config("file", "/dev/null", "size = 1M", "", false);

	assert_int_equal(mkdir(dir, 0700), 0);
	expect_config_error(text, "option 'path': ");
	expect_config_error(text, "is a directory");
	expect_config_error(chr, "/dev/null is neither a regular file nor a block device");
	rmdir(dir);
	free(dir);
	free(text);
	free(chr);
}

/* The open as another user, in a child; its log comes back through a pipe. */
static int open_as_nobody(struct blkserv_device *dev, char *log, size_t loglen)
{
	int pfd[2], rfd[2], status, r = -EPROTO;
	ssize_t n, got = 0;
	pid_t pid;

	assert_int_equal(pipe(pfd), 0);
	assert_int_equal(pipe(rfd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(pfd[1], 2);
		r = -EPERM;
		if (setgid(65534) == 0 && setuid(65534) == 0)
			r = device_open_backend(dev);
		fflush(stderr);
		if (write(rfd[1], &r, sizeof(r)) != sizeof(r))
			_exit(1);
		/* Killed, not exited: the parent's memory this copy holds is not
		 * the child's leak (valgrind checks leaks at any exit). */
		raise(SIGKILL);
	}
	close(pfd[1]);
	close(rfd[1]);
	while (got < (ssize_t)loglen - 1 && (n = read(pfd[0], log + got, loglen - 1 - (size_t)got)) > 0)
		got += n;
	log[got] = 0;
	close(pfd[0]);
	assert_int_equal(read(rfd[0], &r, sizeof(r)), sizeof(r));
	close(rfd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	return r;
}

/* Root ignores file modes, so as root the open runs in a child as nobody. */
static void test_permission_denied(void **state)
{
	char *path = xasprintf("%s/locked.img", test_tmpdir());
	char *text = config("file", path, "size = 1M", "", false);
	struct blkserv_device *dev = NULL;
	struct config *c = NULL;
	char log[4096];

	write_file(path, MiB, 1);
	assert_int_equal(chmod(path, 0400), 0);
	if (geteuid() != 0) {
		expect_open_error(text, -EACCES, path, "permission denied");
		goto out;
	}
	assert_int_equal(test_load_config(text, &c, NULL), 0);
	assert_int_equal(device_new(config_find_device(c, "f"), test_plugin_dir(), &dev), 0);
	config_free(c);
	assert_int_equal(chmod(test_tmpdir(), 0711), 0);
	assert_int_equal(open_as_nobody(dev, log, sizeof(log)), -EACCES);
	assert_int_equal(chmod(test_tmpdir(), 0700), 0);
	fprintf(stderr, "%s", log);
	assert_non_null(strstr(log, path));
	assert_non_null(strstr(log, "permission denied"));
	device_free(dev);
out:
	unlink(path);
	free(path);
	free(text);
}

/* ---- locking ---------------------------------------------------------------- */

static void test_lock(void **state)
{
	char *path = xasprintf("%s/shared.img", test_tmpdir());
	char *text = config("file", path, "size = 1M", "", false);
	char *both = config("file", path, "size = 1M", "", true);
	struct blkserv_device *a, *b;
	char log[4096];
	int fd;

	/* Two writers of one file in one config: refused before any open. */
	expect_config_error(both, "device 'g': backend 'file' option 'path': the backing file");
	expect_config_error(both, "is already used by device 'f'");
	/* The lock still guards what the config cannot see (one device
	 * opened twice here, as by a reload racing a stop). */
	a = open_ok(text, "f");
	expect_open_error(text, -EBUSY, path, "in use");
	test_close_device(a);
	b = open_ok(text, "f");
	test_close_device(b);

	/* Another process's lock (any open file description) counts too. */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_int_equal(flock(fd, LOCK_SH), 0);
	assert_int_equal(try_open(text, "f", &a, log, sizeof(log)), -EBUSY);
	close(fd);
	unlink(path);
	free(path);
	free(text);
	free(both);
}

static void test_read_only(void **state)
{
	char *path = xasprintf("%s/ro.img", test_tmpdir());
	char *ro = config("file", path, "", "read_only = true", true);
	char *rw = config("file", path, "", "", false);
	struct blkserv_device *a, *b;
	struct blkserv_queue *q;
	char *buf = malloc(MiB);

	write_file(path, MiB, 9);
	a = open_ok(ro, "f");
	b = open_ok(ro, "g"); /* readers share */
	assert_true(blkserv_device_caps(a) & BLKSERV_CAP_READ_ONLY);
	assert_false(blkserv_device_caps(a) & (BLKSERV_CAP_TRIM | BLKSERV_CAP_WRITE_ZEROES));
	expect_open_error(rw, -EBUSY, path, "in use");
	assert_int_equal(blkserv_queue_new(a, 2, 0, &q), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 0, MiB, buf), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, 0, 0, 4096, buf), -EPERM);
	blkserv_queue_free(q);
	test_close_device(a);
	test_close_device(b);
	free(buf);
	unlink(path);
	free(path);
	free(ro);
	free(rw);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_sparse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
		cmocka_unit_test(test_size_from_file),
		cmocka_unit_test(test_smaller_needs_grow),
		cmocka_unit_test(test_larger_refused),
		cmocka_unit_test(test_not_multiple_of_block_size),
		cmocka_unit_test(test_missing_directory),
		cmocka_unit_test(test_missing_file_without_size),
		cmocka_unit_test(test_not_a_file),
		cmocka_unit_test(test_permission_denied),
		cmocka_unit_test(test_lock),
		cmocka_unit_test(test_read_only),
	};

	log_setup(LOG_TARGET_STDERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}

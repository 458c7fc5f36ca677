/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The shared helpers of common/: positional whole reads and writes (with
 * iovecs that span entries and short transfers), container_of, the
 * milliseconds to timespec conversions, and the sticky flush error. */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-helpers.h"
#include "io-util.h"
#include "macro.h"
#include "sticky-error.h"

static int temp_file(void)
{
	char path[] = "/tmp/test-io-util-XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	unlink(path);
	return fd;
}

static void test_pread_pwrite_full(void **state)
{
	int fd = temp_file();
	char in[10000], out[10000];

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (char)(i * 7);
	assert_int_equal(pwrite_full(fd, in, sizeof(in), 4096), 0);
	assert_int_equal(pread_full(fd, out, sizeof(out), 4096), 0);
	assert_memory_equal(in, out, sizeof(in));
	/* Past the end: the file is shorter than asked. */
	assert_int_equal(pread_full(fd, out, 100, 4096 + sizeof(in) - 50), -EIO);
	assert_int_equal(pread_full(fd, out, 1, 1 << 30), -EIO);
	assert_int_equal(pread_full(fd, out, 0, 1 << 30), 0);
	assert_int_equal(pread_full(-1, out, 1, 0), -EBADF);
	assert_int_equal(pwrite_full(-1, in, 1, 0), -EBADF);
	close(fd);
}

static void test_iov_full(void **state)
{
	int fd = temp_file();
	char a[3] = "abc", b[1] = { 0 }, c[5000], ra[3], rc[5000], all[3 + 5000];
	struct iovec w[] = { { a, 3 }, { b, 0 }, { c, sizeof(c) } };
	struct iovec r[] = { { ra, 3 }, { NULL, 0 }, { rc, sizeof(rc) } };

	memset(c, 'x', sizeof(c));
	assert_int_equal(pwritev_full(fd, w, 3, 10), 0);
	assert_int_equal(preadv_full(fd, r, 3, 10), 0);
	assert_memory_equal(ra, a, 3);
	assert_memory_equal(rc, c, sizeof(c));
	assert_int_equal(pread_full(fd, all, sizeof(all), 10), 0);
	assert_memory_equal(all, "abc", 3);
	/* A short read at the end of the file is an error, not a hang. */
	struct iovec r2[] = { { ra, 3 }, { rc, sizeof(rc) } };
	assert_int_equal(preadv_full(fd, r2, 2, 12), -EIO);
	close(fd);
}

/* A socket delivers what it has: read_full and write_full go on until done. */
static void test_stream_full(void **state)
{
	static char in[200000], out[200000];
	int sv[2], status;
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	memset(in, 0x5a, sizeof(in));
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		_exit(write_full(sv[1], in, sizeof(in)) == 0 ? 0 : 1);
	}
	close(sv[1]);
	assert_int_equal(read_full(sv[0], out, sizeof(out)), 0);
	assert_memory_equal(in, out, sizeof(in));
	assert_int_equal(read_full(sv[0], out, 1), -EPIPE);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(sv[0]);
}

struct outer {
	int a;
	char pad[13];
	long member;
};

static void test_container_of(void **state)
{
	struct outer o;

	assert_ptr_equal(container_of(&o.member, struct outer, member), &o);
	assert_ptr_equal(container_of(&o.a, struct outer, a), &o);
}

static void test_timespec_from_ms(void **state)
{
	struct timespec ts = timespec_from_ms(1234);
	struct __kernel_timespec kts = kernel_timespec_from_ms(5001);

	assert_int_equal(ts.tv_sec, 1);
	assert_int_equal(ts.tv_nsec, 234000000);
	assert_int_equal(kts.tv_sec, 5);
	assert_int_equal(kts.tv_nsec, 1000000);
	ts = timespec_from_ms(999);
	assert_int_equal(ts.tv_sec, 0);
	assert_int_equal(ts.tv_nsec, 999000000);
	ts = timespec_from_ms(0);
	assert_int_equal(ts.tv_sec, 0);
	assert_int_equal(ts.tv_nsec, 0);
	uint64_t t0 = now_ns();
	sleep_ms(20);
	assert_true(now_ns() - t0 >= 20000000ull);
}

static void test_sticky_error(void **state)
{
	atomic_int e = 0;

	assert_int_equal(sticky_error_get(&e), 0);
	assert_true(sticky_error_set(&e, -ENOSPC)); /* the first one is recorded */
	assert_false(sticky_error_set(&e, -EIO));   /* and stays */
	assert_int_equal(sticky_error_get(&e), -ENOSPC);
	e = 0;
	assert_true(sticky_error_set(&e, 5)); /* not an errno: EIO */
	assert_int_equal(sticky_error_get(&e), -EIO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pread_pwrite_full), cmocka_unit_test(test_iov_full),
		cmocka_unit_test(test_stream_full),       cmocka_unit_test(test_container_of),
		cmocka_unit_test(test_timespec_from_ms),  cmocka_unit_test(test_sticky_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

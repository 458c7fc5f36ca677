/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The SDK's logging: blkserv_log_errno() returns the negative errno it
 * was given whatever its sign, %m names that error, and errno survives. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "test-helpers.h"
#include "log.h"

static char *logged(int level, int error, const char *what, int *ret)
{
	log_capture_begin();
	*ret = blkserv_log_errno(NULL, level, error, "cannot open %s: %m", what);
	return log_capture_end();
}

static void test_log_errno_returns_negative(void **state)
{
	int r;
	char *msg;

	errno = EAGAIN;
	msg = logged(BLKSERV_LOG_ERR, -ENOENT, "x.img", &r);
	assert_int_equal(r, -ENOENT);
	assert_int_equal(errno, EAGAIN); /* preserved */
	assert_non_null(msg);
	assert_string_equal(msg, "cannot open x.img: No such file or directory");
	free(msg);

	msg = logged(BLKSERV_LOG_ERR, EACCES, "y.img", &r); /* a positive errno too */
	assert_int_equal(r, -EACCES);
	assert_string_equal(msg, "cannot open y.img: Permission denied");
	free(msg);
}

static void test_error_errno_macros(void **state)
{
	int r;
	char *msg;

	log_capture_begin();
	r = blkserv_error_errno(NULL, -EIO, "flush: %m");
	msg = log_capture_end();
	assert_int_equal(r, -EIO);
	assert_string_equal(msg, "flush: Input/output error");
	free(msg);

	/* A warning returns the error too but is not an error message: the
	 * capture (what a control client is told) keeps errors only. */
	log_capture_begin();
	r = blkserv_warning_errno(NULL, -ENOSPC, "compaction: %m");
	msg = log_capture_end();
	assert_int_equal(r, -ENOSPC);
	assert_null(msg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_log_errno_returns_negative),
		cmocka_unit_test(test_error_errno_macros),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

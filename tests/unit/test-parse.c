/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Size, bool and integer parsing of config values, and of numbers read
 * from files, the kernel and the environment: empty, junk, signs, blanks
 * and overflow are refused, and *ret is left alone then. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "test-helpers.h"
#include "parse.h"

static void test_size_suffixes(void **state)
{
	static const struct {
		const char *s;
		uint64_t v;
	} ok[] = {
		{ "0", 0 },
		{ "512", 512 },
		{ "4K", 4096 },
		{ "4k", 4096 },
		{ "1M", 1 << 20 },
		{ "1G", 1ull << 30 },
		{ "1T", 1ull << 40 },
		{ "2KiB", 2048 },
		{ "3MB", 3 << 20 },
		{ "16384", 16384 },
		{ "1P", 1ull << 50 },
		{ "1B", 1 },
		{ "16383P", 16383ull << 50 },
	};
	uint64_t v;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(parse_size(ok[i].s, &v), 0);
		assert_int_equal(v, ok[i].v);
	}
}

static void test_size_rejects(void **state)
{
	static const char *const bad[] = { "",       "K",           "-1",   " 1",  "1X",
					   "1KX",    "1.5G",        "0x10", "1 G", "18446744073709551616",
					   "16384P", "99999999999T" };
	uint64_t v = 42;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_true(parse_size(bad[i], &v) < 0);
		assert_int_equal(v, 42); /* untouched on error */
	}
}

static void test_uint(void **state)
{
	uint64_t v;

	assert_int_equal(parse_uint("18446744073709551615", &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(parse_uint("0x1f", &v), 0);
	assert_int_equal(v, 31);
	assert_true(parse_uint("18446744073709551616", &v) < 0);
	assert_true(parse_uint("-1", &v) < 0);
	assert_true(parse_uint("12a", &v) < 0);
	assert_true(parse_uint("", &v) < 0);
}

static void test_bool(void **state)
{
	bool b;

	assert_int_equal(parse_bool("yes", &b), 0);
	assert_true(b);
	assert_int_equal(parse_bool("OFF", &b), 0);
	assert_false(b);
	assert_int_equal(parse_bool("1", &b), 0);
	assert_true(b);
	assert_true(parse_bool("maybe", &b) < 0);
	assert_true(parse_bool("", &b) < 0);
}

static void test_uint_dec(void **state)
{
	static const char *const bad[] = { "",
					   " 1",
					   "1 ",
					   "+1",
					   "-1",
					   "0x10",
					   "12a",
					   "1\n",
					   "1.0",
					   "18446744073709551616",
					   "99999999999999999999999" };
	uint64_t v = 42;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_true(parse_uint_dec(bad[i], &v) < 0);
		assert_int_equal(v, 42);
	}
	assert_true(parse_uint_dec(NULL, &v) < 0);
	assert_int_equal(parse_uint_dec("010", &v), 0);
	assert_int_equal(v, 10); /* not octal */
	assert_int_equal(parse_uint_dec("18446744073709551615", &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(parse_uint_dec("18446744073709551616", &v), -ERANGE);
}

static void test_int_dec(void **state)
{
	static const char *const bad[] = {
		"", "-", "--1", "+1", " -1", "-0x1", "1x", "9223372036854775808", "-9223372036854775809"
	};
	int64_t v = 42;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_true(parse_int_dec(bad[i], &v) < 0);
		assert_int_equal(v, 42);
	}
	assert_int_equal(parse_int_dec("-3", &v), 0);
	assert_int_equal(v, -3);
	assert_int_equal(parse_int_dec("9223372036854775807", &v), 0);
	assert_true(v == INT64_MAX);
	assert_int_equal(parse_int_dec("-9223372036854775808", &v), 0);
	assert_true(v == INT64_MIN);
}

static void test_pid(void **state)
{
	static const char *const bad[] = { "", "0", "-1", "junk", "12 ", "2147483648", "99999999999999999999" };
	pid_t pid = 42;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_true(parse_pid(bad[i], &pid) < 0);
		assert_int_equal(pid, 42); /* an empty pid file is never pid 0 */
	}
	assert_int_equal(parse_pid("2147483647", &pid), 0);
	assert_int_equal(pid, 2147483647);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void test_uint_file(void **state)
{
	static const char *const bad[] = { "",
					   "\n",
					   "junk\n",
					   "12\n\n",
					   " 12\n",
					   "-1\n",
					   "18446744073709551616\n",
					   "123456789012345678901234567890123\n" };
	char dir[] = "/tmp/test-parse-XXXXXX";
	char path[64];
	uint64_t v = 42;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/attr", dir);
	assert_int_equal(parse_uint_file(path, &v), -ENOENT);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_file(path, bad[i]);
		assert_true(parse_uint_file(path, &v) < 0);
		assert_int_equal(v, 42);
	}
	write_file(path, "8192\n");
	assert_int_equal(parse_uint_file(path, &v), 0);
	assert_int_equal(v, 8192);
	write_file(path, "0");
	assert_int_equal(parse_uint_file(path, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(parse_uint_file(dir, &v), -EISDIR);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size_suffixes), cmocka_unit_test(test_size_rejects),
		cmocka_unit_test(test_uint),          cmocka_unit_test(test_bool),
		cmocka_unit_test(test_uint_dec),      cmocka_unit_test(test_int_dec),
		cmocka_unit_test(test_pid),           cmocka_unit_test(test_uint_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

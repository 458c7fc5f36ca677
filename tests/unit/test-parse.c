/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Size, bool and integer parsing of config values. */
#include "test-helpers.h"
#include "parse.h"

static void test_size_suffixes(void **state)
{
	static const struct {
		const char *s;
		uint64_t v;
	} ok[] = {
		{ "0", 0 },          { "512", 512 },        { "4K", 4096 },           { "4k", 4096 },
		{ "1M", 1 << 20 },   { "1G", 1ull << 30 },  { "1T", 1ull << 40 },     { "2KiB", 2048 },
		{ "3MB", 3 << 20 },  { "16384", 16384 },    { "1P", 1ull << 50 },     { "1B", 1 },
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
	static const char *const bad[] = { "", "K", "-1", " 1", "1X", "1KX", "1.5G", "0x10", "1 G",
					   "18446744073709551616", "16384P", "99999999999T" };
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size_suffixes),
		cmocka_unit_test(test_size_rejects),
		cmocka_unit_test(test_uint),
		cmocka_unit_test(test_bool),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The key=value state files of the frontends: atomic write, strict read. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test-helpers.h"
#include "statefile.h"

struct seen {
	char keys[8][32], values[8][64];
	int n;
};

static int record(void *userdata, const char *key, const char *value)
{
	struct seen *s = userdata;

	if (s->n == 8)
		return -E2BIG;
	snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", key);
	snprintf(s->values[s->n++], sizeof(s->values[0]), "%s", value);
	return strcmp(key, "fail") == 0 ? -EBADMSG : 0;
}

static char dir[] = "/tmp/blkserv-statefile.XXXXXX";

static void path_of(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

static void test_round_trip(void **state)
{
	char path[256], tmp[300];
	struct seen s = { 0 };

	path_of(path, sizeof(path), "a.state");
	assert_int_equal(statefile_write(path, "# comment\n\nindex=3\nbackend=ram0=x\nempty=\n"), 0);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	assert_int_equal(access(tmp, F_OK), -1); /* renamed, nothing left */
	assert_int_equal(statefile_read(path, record, &s), 0);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.keys[0], "index");
	assert_string_equal(s.values[0], "3");
	assert_string_equal(s.keys[1], "backend");
	assert_string_equal(s.values[1], "ram0=x"); /* only the first '=' splits */
	assert_string_equal(s.values[2], "");
	/* A second write replaces the whole file. */
	assert_int_equal(statefile_write(path, "index=4\n"), 0);
	memset(&s, 0, sizeof(s));
	assert_int_equal(statefile_read(path, record, &s), 0);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.values[0], "4");
}

static void test_bad_files(void **state)
{
	char path[256], line[700];
	struct seen s = { 0 };

	path_of(path, sizeof(path), "missing.state");
	assert_int_equal(statefile_read(path, record, &s), -ENOENT);
	path_of(path, sizeof(path), "b.state");
	assert_int_equal(statefile_write(path, "index=1\nno equals sign\n"), 0);
	assert_int_equal(statefile_read(path, record, &s), -EINVAL);
	memset(line, 'x', sizeof(line) - 2);
	line[0] = 'k';
	line[1] = '=';
	line[sizeof(line) - 2] = '\n';
	line[sizeof(line) - 1] = '\0';
	assert_int_equal(statefile_write(path, line), 0);
	assert_int_equal(statefile_read(path, record, &s), -EINVAL);
	assert_int_equal(statefile_write(path, "a=1\nfail=1\nb=2\n"), 0);
	memset(&s, 0, sizeof(s));
	assert_int_equal(statefile_read(path, record, &s), -EBADMSG);
	assert_int_equal(s.n, 2); /* stops at the first error */
	path_of(path, sizeof(path), "no-such-dir/c.state");
	assert_int_equal(statefile_write(path, "a=1\n"), -ENOENT);
}

static int setup(void **state)
{
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_bad_files),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

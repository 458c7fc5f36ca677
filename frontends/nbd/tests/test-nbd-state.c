/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The kernel nbd frontend's state file: a round trip, and files a crash, an
 * older or newer daemon or a hand edit could leave (a key missing, a bad
 * number, an empty or zero pid, an unknown handover, unknown keys) are
 * either read exactly or refused, never guessed at.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "state.h"
#include "test-helpers.h"

static const char *full = "index=3\nconnections=2\nsize=268435456\nblock_size=4096\nflags=1389\ntimeout=30\n"
			  "dead_conn_timeout=120\nbackend=f0\nhandover=clean\npid=42\n";

static char *tmp_path(void)
{
	char *p;

	assert_true(asprintf(&p, "%s/nbd-state-test-%d.state", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
			     (int)getpid()) > 0);
	return p;
}

static int read_text(const char *text, struct nbd_state *st)
{
	char *p = tmp_path();
	FILE *f = fopen(p, "w");
	int r;

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	r = nbd_state_read(p, st);
	unlink(p);
	free(p);
	return r;
}

static void test_round_trip(void **state)
{
	struct nbd_state in = {
		.index = 7, .connections = 3, .size = 1ull << 40, .block_size = 512, .flags = 0x15d,
		.timeout = 15, .dead_conn_timeout = 0, .handover = NBD_HANDOVER_DEAD, .pid = 12345,
	}, out;
	char *p = tmp_path(), *tmp;

	strcpy(in.backend, "dev-1.x_y");
	assert_int_equal(nbd_state_write(p, &in), 0);
	assert_int_equal(nbd_state_read(p, &out), 0);
	assert_memory_equal(&in, &out, sizeof(in));
	/* Nothing of the temporary file is left. */
	assert_true(asprintf(&tmp, "%s.tmp", p) > 0);
	assert_int_equal(access(tmp, F_OK), -1);
	unlink(p);
	free(tmp);
	free(p);
}

static void test_full_and_unknown_keys(void **state)
{
	struct nbd_state st;
	char *text;

	assert_int_equal(read_text(full, &st), 0);
	assert_int_equal(st.index, 3);
	assert_int_equal(st.connections, 2);
	assert_true(st.size == 268435456);
	assert_int_equal(st.flags, 1389);
	assert_string_equal(st.backend, "f0");
	assert_int_equal(st.handover, NBD_HANDOVER_CLEAN);
	assert_int_equal(st.pid, 42);
	/* A newer daemon's keys and comments are skipped. */
	assert_true(asprintf(&text, "# comment\n%sfuture_key=whatever\n\n", full) > 0);
	assert_int_equal(read_text(text, &st), 0);
	free(text);
}

static void test_refused(void **state)
{
	static const char *const bad[] = {
		"index=x\n", "index=-1\n", "index=4294967296\n", "connections=0\n", "block_size=\n", "pid=\n",
		"pid=0\n",   "pid=abc\n",  "handover=maybe\n",   "noequals\n",      "size=1M\n",
	};
	static const char *const keys[] = { "index=", "connections=", "size=",    "block_size=",
					    "flags=", "backend=",     "handover=" };
	struct nbd_state st;

	assert_int_equal(nbd_state_read("/nonexistent/nbd-x.state", &st), -ENOENT);
	assert_int_equal(read_text("", &st), -EINVAL);
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *text;

		assert_true(asprintf(&text, "%s%s", full, bad[i]) > 0);
		assert_int_equal(read_text(text, &st), -EINVAL);
		free(text);
	}
	/* Every key but the timeouts and the pid is needed. */
	for (unsigned i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char *text = strdup(full), *line = strstr(text, keys[i]), *end = strchr(line, '\n');

		memmove(line, end + 1, strlen(end + 1) + 1);
		assert_int_equal(read_text(text, &st), -EINVAL);
		free(text);
	}
}

static void test_bad_backend_not_written(void **state)
{
	struct nbd_state in = { .connections = 1, .block_size = 512, .pid = 1 };
	char *p = tmp_path();

	strcpy(in.backend, "a\nhandover=clean");
	assert_int_equal(nbd_state_write(p, &in), -EINVAL);
	assert_int_equal(access(p, F_OK), -1);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_full_and_unknown_keys),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_bad_backend_not_written),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The config loader: valid configs, and invalid ones whose message must
 * name the line and say what is wrong. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test-helpers.h"

#define DEVICE_OK "  frontend \"testfe\" { socket = \"/run/x.sock\" }\n  backend \"ramdisk\" { }\n"

static void test_valid_full(void **state)
{
	struct config *c = NULL;
	char *error = NULL;
	const char *text = "log_level = debug\n"
			   "runtime_dir = \"/run/blkservd-test\"\n"
			   "lock_memory = false\n"
			   "request_memory = 1G\n"
			   "device \"ram0\" {\n"
			   "  size = 64M\n"
			   "  block_size = 4096\n"
			   "  read_only = yes\n"
			   "  frontend \"testfe\" {\n"
			   "    socket = \"/run/ram0.sock\"\n"
			   "    label = \"hello world\"\n"
			   "    count = 0x10\n"
			   "    enabled = on\n"
			   "    limit = 2G\n"
			   "  }\n"
			   "  backend \"ramdisk\" { }\n"
			   "}\n"
			   "device \"ram1\" {\n"
			   "  size = 1M\n" DEVICE_OK "}\n";
	const char *s;
	uint64_t u;
	bool b;

	if (test_load_config(text, &c, &error) < 0)
		fail_msg("valid config rejected: %s", error);
	assert_int_equal(c->ndevices, 2);
	assert_string_equal(c->runtime_dir, "/run/blkservd-test");
	assert_int_equal(c->log_level, 7);
	assert_false(c->lock_memory);
	assert_true(c->request_memory == 1ull << 30);
	const struct device_config *d = config_find_device(c, "ram0");
	assert_non_null(d);
	assert_true(d->size == 64ull << 20);
	assert_int_equal(d->block_size, 4096);
	assert_true(d->read_only);
	assert_string_equal(d->frontend->name, "testfe");
	assert_string_equal(d->backend->name, "ramdisk");
	assert_int_equal(blkserv_config_get_string(&d->frontend_cfg, "label", &s), 0);
	assert_string_equal(s, "hello world");
	assert_int_equal(blkserv_config_get_uint(&d->frontend_cfg, "count", &u), 0);
	assert_int_equal(u, 16);
	assert_int_equal(blkserv_config_get_uint(&d->frontend_cfg, "limit", &u), 0);
	assert_true(u == 2ull << 30);
	assert_int_equal(blkserv_config_get_bool(&d->frontend_cfg, "enabled", &b), 0);
	assert_true(b);
	assert_true(blkserv_config_is_set(&d->frontend_cfg, "label"));
	assert_false(blkserv_config_is_set(&d->frontend_cfg, "fail_start"));
	/* Defaults of options not written. */
	d = config_find_device(c, "ram1");
	assert_int_equal(d->block_size, 512);
	assert_false(d->read_only);
	assert_int_equal(blkserv_config_get_uint(&d->frontend_cfg, "count", &u), 0);
	assert_int_equal(u, 1);
	assert_int_equal(blkserv_config_get_string(&d->frontend_cfg, "label", &s), 0);
	assert_string_equal(s, "none");
	/* Asking for an undeclared option or the wrong type is an error. */
	assert_int_equal(blkserv_config_get_string(&d->frontend_cfg, "nope", &s), -EINVAL);
	assert_int_equal(blkserv_config_get_bool(&d->frontend_cfg, "label", &b), -EINVAL);
	config_free(c);
}

static void test_empty_config(void **state)
{
	struct config *c = NULL;
	char *error = NULL;

	assert_int_equal(test_load_config("# nothing\n", &c, &error), 0);
	assert_int_equal(c->ndevices, 0);
	assert_true(c->request_memory == 256ull << 20); /* the default */
	config_free(c);
}

/* The shipped config must validate (with the build's plugins). */
static void test_shipped_config(void **state)
{
	char path[1024];
	struct config *c = NULL;
	char *error = NULL;

	snprintf(path, sizeof(path), "%s/conf/blkservd.conf", getenv("BLKSERV_TEST_SRCDIR"));
	if (config_load(path, test_plugin_dir(), &c, &error) < 0) {
		/* The shipped config names plugins that may not be built here. */
		if (error && strstr(error, "does not exist")) {
			free(error);
			skip();
		}
		fail_msg("shipped config rejected: %s", error);
	}
	config_free(c);
}

struct bad_config {
	const char *text;
	int line;
	const char *message;
};

static const struct bad_config bad_configs[] = {
	{ "bogus = 1\n", 1, "no such option 'bogus'" },
	{ "log_level = info\nrequest_memory = 16M\n", 2, "'request_memory' expects a size of at least 32M" },
	{ "request_memory = lots\n", 1, "'request_memory' expects a size of at least 32M" },
	{ "device \"a\" {\n  size = 1M\n  colour = red\n" DEVICE_OK "}\n", 3, "no such option 'colour'" },
	{ "device \"a\" {\n  size = 1M\n  frontend \"testfe\" {\n    socket = \"/x\"\n    nope = 1\n  }\n"
	  "  backend \"ramdisk\" { }\n}\n",
	  5, "frontend 'testfe' has no option 'nope'" },
	{ "device \"a\" {\n  size = 12Q\n" DEVICE_OK "}\n", 2, "expects a size" },
	{ "device \"a\" {\n  size = 0\n" DEVICE_OK "}\n", 2, "expects a size" },
	{ "device \"a\" {\n  size = 1M\n  block_size = 1000\n" DEVICE_OK "}\n", 3, "block_size" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "}\ndevice \"a\" {\n  size = 1M\n" DEVICE_OK "}\n", 6,
	  "duplicate title 'a'" },
	{ "device \"a\" {\n  size = 1M\n  backend \"ramdisk\" { }\n}\n", 1, "has no frontend section" },
	{ "device \"a\" {\n  size = 1M\n  frontend \"nosuch\" { }\n  backend \"ramdisk\" { }\n}\n", 3,
	  "no frontend plugin 'nosuch'" },
	{ "device \"a\" {\n  size = 1M\n  frontend \"testfe\" { }\n  backend \"ramdisk\" { }\n}\n", 3,
	  "needs option 'socket'" },
	{ "device \"a\" {\n  size = 1M\n  frontend \"testfe\" {\n    socket = \"/x\"\n    count = abc\n  }\n"
	  "  backend \"ramdisk\" { }\n}\n",
	  5, "expects a non-negative integer, not 'abc'" },
	{ "device \"a\" {\n  size = 1M\n  frontend \"testfe\" {\n    socket = \"/x\"\n    enabled = maybe\n  }\n"
	  "  backend \"ramdisk\" { }\n}\n",
	  5, "expects a boolean" },
	{ "device \"a\" {\n  size = 1M\n  frontend \"testfe\" {\n    socket = \"relative/x\"\n  }\n"
	  "  backend \"ramdisk\" { }\n}\n",
	  4, "expects an absolute path" },
	{ "device \"bad name!\" {\n  size = 1M\n" DEVICE_OK "}\n", 1, "invalid device name 'bad name!'" },
	{ "device \"a\" {\n  size = 1000\n" DEVICE_OK "}\n", 1, "not a multiple of block_size" },
	{ "log_level = loud\n", 1, "log_level" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  backend \"asyncmem\" { }\n}\n", 5, "2 backend sections" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  backend \"ramdisk\" { }\n}\n", 5, "duplicate title 'ramdisk'" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "\n", 1, "never closed" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "}\n}\n", 6, "unexpected closing brace" },
	{ "# a comment with { brace\ndevice \"a{\" {\n  size = 1M\n" DEVICE_OK "\n", 2, "never closed" },
	{ "runtime_dir = \"run/relative\"\n", 1, "absolute path" },
	{ "device \"a\" {\n  size = 1M\n  frontend \"testfe\" { socket = \"/x\" }\n  backend \"nosuch\" { }\n}\n", 4,
	  "no backend plugin 'nosuch'" },
	{ "device \"a\" {\n  size = 1M\n  read_only = perhaps\n" DEVICE_OK "}\n", 3, "read_only" },
	{ "\n\ndevice \"a\" {\n  size = \"1M\n" DEVICE_OK "}\n", 5, "option 'size' expects a size" },
	{ "device \"a\" {\n  size = 1M\n  frontend \"Bad Name\" { }\n  backend \"ramdisk\" { }\n}\n", 3,
	  "invalid frontend name 'Bad Name'" },
	{ "device \"a\" {\n  size = 1M\n  frontend \"testfe\" { socket = \"/x\" }\n  frontend \"testfe\" { socket = \"/y\" }\n"
	  "  backend \"ramdisk\" { }\n}\n",
	  4, "duplicate title 'testfe'" },
	{ "device \"a\" {\n  frontend \"testfe\" { socket = \"/x\" }\n  backend \"ramdisk\" {\n    size = 1M\n  }\n}\n", 4,
	  "backend 'ramdisk' has no option 'size'" },
	{ "device \"\" {\n  size = 1M\n" DEVICE_OK "}\n", 1, "invalid device name ''" },
	{ "device \"this-name-is-far-too-long-for-a-device-name\" {\n  size = 1M\n" DEVICE_OK "}\n", 1,
	  "invalid device name" },
	/* The faults section (fault injection). */
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults {\n    colour = red\n  }\n}\n", 6,
	  "the faults section has no option 'colour'" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults {\n    read_error_every = 0\n  }\n}\n", 6,
	  "option 'read_error_every' of faults expects a positive integer, not '0'" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults {\n    write_error_every = often\n  }\n}\n", 6,
	  "option 'write_error_every' of faults expects a positive integer, not 'often'" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults {\n    delay_ms = 60001\n  }\n}\n", 6,
	  "option 'delay_ms' of faults expects a number of milliseconds from 1 to 60000, not '60001'" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults {\n    delay_ms = 0\n  }\n}\n", 6,
	  "option 'delay_ms' of faults expects a number of milliseconds" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults {\n    write_error_length = 0\n  }\n}\n", 6,
	  "option 'write_error_length' of faults expects a size in bytes above 0 (like 512, 4K, 1M), not '0'" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults {\n    read_error_offset = 12Q\n  }\n}\n", 6,
	  "option 'read_error_offset' of faults expects a size in bytes (like 0, 512, 4K, 1M), not '12Q'" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults {\n    flush_error_after = -1\n  }\n}\n", 6,
	  "option 'flush_error_after' of faults expects a non-negative integer, not '-1'" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults {\n    enospc_after = 99999999999999999999\n  }\n}\n", 6,
	  "option 'enospc_after' of faults expects a size in bytes" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults {\n    trigger = \"fail-now\"\n  }\n}\n", 6,
	  "option 'trigger' of faults expects an absolute path (at most 255 characters), not 'fail-now'" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults {\n    delay_every = 2\n  }\n}\n", 6,
	  "device 'a': faults: delay_every needs delay_ms" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults { }\n  faults { }\n}\n", 6,
	  "device 'a' has 2 faults sections; it may have one" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults \"x\" { }\n}\n", 5,
	  "missing opening brace for section 'faults'" },
	{ "faults {\n  read_error_every = 1\n}\n", 1, "no such option 'faults'" },
};

static void test_invalid_configs(void **state)
{
	for (size_t i = 0; i < sizeof(bad_configs) / sizeof(bad_configs[0]); i++) {
		const struct bad_config *b = &bad_configs[i];
		struct config *c = NULL;
		char *error = NULL, where[32];

		if (test_load_config(b->text, &c, &error) == 0)
			fail_msg("invalid config #%zu was accepted:\n%s", i, b->text);
		assert_non_null(error);
		snprintf(where, sizeof(where), "test.conf:%d: ", b->line);
		if (!strstr(error, where) || !strstr(error, b->message))
			fail_msg("config #%zu: expected '%s...%s', got '%s'", i, where, b->message, error);
		free(error);
	}
}

static void test_missing_file(void **state)
{
	struct config *c = NULL;
	char *error = NULL;

	assert_true(config_load("/nonexistent/blkservd.conf", test_plugin_dir(), &c, &error) < 0);
	assert_non_null(strstr(error, "/nonexistent/blkservd.conf"));
	free(error);
}

static void test_device_config_equal(void **state)
{
	struct config *a = NULL, *b = NULL;
	char *error = NULL;
	const char *t1 = "device \"a\" {\n  size = 1M\n" DEVICE_OK "}\n";
	const char *t2 = "device \"a\" {\n  size = 2M\n" DEVICE_OK "}\n";

	assert_int_equal(test_load_config(t1, &a, &error), 0);
	assert_int_equal(test_load_config(t1, &b, &error), 0);
	assert_true(device_config_equal(&a->devices[0], &b->devices[0]));
	config_free(b);
	assert_int_equal(test_load_config(t2, &b, &error), 0);
	assert_false(device_config_equal(&a->devices[0], &b->devices[0]));
	config_free(a);
	config_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_full),
		cmocka_unit_test(test_empty_config),
		cmocka_unit_test(test_shipped_config),
		cmocka_unit_test(test_invalid_configs),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_device_config_equal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of the ublk frontend that need no kernel module: option
 * ranges, SET_PARAMS contents for each capability set, the recovery state
 * file, and the clear error when ublk_drv is missing.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "test-helpers.h"
#include "ublk.h"

#define CAPS_ALL (BLKSERV_CAP_FLUSH | BLKSERV_CAP_FUA | BLKSERV_CAP_TRIM | BLKSERV_CAP_WRITE_ZEROES)

static const char *config_with(const char *frontend_opts)
{
	static char text[1024];

	snprintf(text, sizeof(text),
		 "runtime_dir = \"%s\"\n"
		 "device \"u0\" {\n"
		 "  size = 64M\n  block_size = 4096\n"
		 "  frontend \"ublk\" { %s }\n"
		 "  backend \"ramdisk\" { }\n"
		 "}\n",
		 test_tmpdir(), frontend_opts);
	return text;
}

/* The config was refused (as by --check-config) with this message. */
#define REFUSED 1
static char refused[1024];

static int parse_options(const char *frontend_opts, struct ublk_options *o)
{
	struct config *c = NULL;
	char *error = NULL;

	if (test_load_config(config_with(frontend_opts), &c, &error) < 0) {
		snprintf(refused, sizeof(refused), "%s", error ? error : "");
		free(error);
		return REFUSED;
	}
	config_free(c);
	struct blkserv_device *dev = test_open_backend(config_with(frontend_opts), "u0");
	int r = ublk_options_parse(dev, &dev->config->frontend_cfg, o);

	test_close_device(dev);
	return r;
}

/* The config is refused with a message naming its line and saying @what. */
static void expect_refused(const char *frontend_opts, const char *what)
{
	struct ublk_options o;

	assert_int_equal(parse_options(frontend_opts, &o), REFUSED);
	if (!strstr(refused, "test.conf:") || !strstr(refused, what))
		fail_msg("the config error should say '%s', it says: %s", what, refused);
}

/* ---- options ------------------------------------------------------- */

static void test_option_defaults(void **state)
{
	struct ublk_options o;
	uint32_t cpus = (uint32_t)get_nprocs();

	assert_int_equal(parse_options("", &o), 0);
	assert_int_equal(o.queues, cpus > 16 ? 16 : cpus);
	assert_int_equal(o.depth, 128);
	assert_int_equal(o.max_io_size, 512 * 1024);
	assert_int_equal(o.dev_id, UBLK_DEV_ID_AUTO);
	assert_true(o.recovery);
	assert_int_equal(ublk_wanted_flags(&o),
			 UBLK_F_CMD_IOCTL_ENCODE | UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE);
}

static void test_option_values(void **state)
{
	struct ublk_options o;

	assert_int_equal(parse_options("queues = 4 depth = 4096 max_io_size = 1M id = 7 recovery = false", &o), 0);
	assert_int_equal(o.queues, 4);
	assert_int_equal(o.depth, 4096);
	assert_int_equal(o.max_io_size, 1 << 20);
	assert_int_equal(o.dev_id, 7);
	assert_false(o.recovery);
	assert_int_equal(ublk_wanted_flags(&o), UBLK_F_CMD_IOCTL_ENCODE);
}

static void test_option_ranges(void **state)
{
	struct ublk_options o;

	expect_refused("queues = 0", "option 'queues' of frontend 'ublk' expects a number from 1 to 64, not '0'");
	expect_refused("queues = 65", "option 'queues'");
	expect_refused("depth = 0", "option 'depth' of frontend 'ublk' expects a number from 1 to 4096");
	expect_refused("depth = 4097", "option 'depth'");
	expect_refused("max_io_size = 64M", "option 'max_io_size' of frontend 'ublk' expects a size from 4K to 32M");
	expect_refused("max_io_size = 512", "option 'max_io_size'");
	expect_refused("max_io_size = 6K",
		       "frontend 'ublk' option 'max_io_size': 6144 must be a multiple of the page size");
	expect_refused("id = 1048576", "option 'id' of frontend 'ublk' expects a number from 0 to 1048575");
	assert_int_equal(parse_options("id = 1048575", &o), 0);
}

/* ---- SET_PARAMS ------------------------------------------------------ */

static void test_params_full_caps(void **state)
{
	struct bs_ublk_params p;

	assert_int_equal(ublk_build_params(1ull << 30, 4096, CAPS_ALL, 1 << 20, &p), 0);
	assert_int_equal(p.len, sizeof(p));
	assert_int_equal(p.types, UBLK_PARAM_TYPE_BASIC | UBLK_PARAM_TYPE_DISCARD);
	assert_int_equal(p.basic.logical_bs_shift, 12);
	assert_int_equal(p.basic.physical_bs_shift, 12);
	assert_int_equal(p.basic.max_sectors, (1 << 20) >> 9);
	assert_int_equal(p.basic.dev_sectors, (1ull << 30) >> 9);
	assert_int_equal(p.basic.attrs, UBLK_ATTR_VOLATILE_CACHE | UBLK_ATTR_FUA);
	assert_int_equal(p.discard.discard_granularity, 4096);
	assert_int_equal(p.discard.max_discard_segments, 1);
	assert_true(p.discard.max_discard_sectors > 0);
	assert_true(p.discard.max_write_zeroes_sectors > 0);
}

static void test_params_no_cache(void **state)
{
	struct bs_ublk_params p;

	/* No flush: no volatile cache, so the kernel sends neither FLUSH nor FUA. */
	assert_int_equal(ublk_build_params(1 << 20, 512, BLKSERV_CAP_WRITE_THROUGH | BLKSERV_CAP_ROTATIONAL, 4096, &p),
			 0);
	assert_int_equal(p.types, UBLK_PARAM_TYPE_BASIC);
	assert_int_equal(p.basic.logical_bs_shift, 9);
	assert_int_equal(p.basic.attrs, UBLK_ATTR_ROTATIONAL);
	/* Flush without FUA: a volatile cache, FUA left to the kernel's flush. */
	assert_int_equal(ublk_build_params(1 << 20, 512, BLKSERV_CAP_FLUSH, 4096, &p), 0);
	assert_int_equal(p.basic.attrs, UBLK_ATTR_VOLATILE_CACHE);
}

static void test_params_zeroes_only(void **state)
{
	struct bs_ublk_params p;

	assert_int_equal(ublk_build_params(1 << 20, 4096, BLKSERV_CAP_WRITE_ZEROES, 4096, &p), 0);
	assert_int_equal(p.types, UBLK_PARAM_TYPE_BASIC | UBLK_PARAM_TYPE_DISCARD);
	assert_int_equal(p.discard.max_discard_sectors, 0);
	assert_true(p.discard.max_write_zeroes_sectors > 0);
	assert_int_equal(p.discard.discard_granularity, 4096);
}

static void test_params_read_only(void **state)
{
	struct bs_ublk_params p;

	assert_int_equal(ublk_build_params(1 << 20, 4096, CAPS_ALL | BLKSERV_CAP_READ_ONLY, 4096, &p), 0);
	assert_true(p.basic.attrs & UBLK_ATTR_READ_ONLY);
	assert_int_equal(p.types, UBLK_PARAM_TYPE_BASIC);
}

static void test_params_invalid(void **state)
{
	struct bs_ublk_params p;

	assert_int_equal(ublk_build_params(1 << 20, 3000, 0, 4096, &p), -EINVAL);
	assert_int_equal(ublk_build_params(1 << 20, 256, 0, 4096, &p), -EINVAL);
	assert_int_equal(ublk_build_params(1 << 20, 65536, 0, 1 << 20, &p), -EINVAL);
	assert_int_equal(ublk_build_params(0, 512, 0, 4096, &p), -EINVAL);
	assert_int_equal(ublk_build_params(1000, 512, 0, 4096, &p), -EINVAL);
	assert_int_equal(ublk_build_params(1 << 20, 4096, 0, 2048, &p), -EINVAL);
}

static void test_flags_string(void **state)
{
	char buf[256];

	ublk_flags_string(UBLK_F_USER_RECOVERY | UBLK_F_CMD_IOCTL_ENCODE | (1ull << 40), buf, sizeof(buf));
	assert_string_equal(buf, "USER_RECOVERY|CMD_IOCTL_ENCODE|bit40");
	ublk_flags_string(0, buf, sizeof(buf));
	assert_string_equal(buf, "none");
	assert_string_equal(ublk_state_name(UBLK_S_DEV_QUIESCED), "QUIESCED");
}

/* ---- state file ----------------------------------------------------- */

static void test_state_roundtrip(void **state)
{
	struct ublk_state s = { 3, 2, 128, 524288, 1ull << 40, 4096, 4242 }, t;
	char *path;

	assert_int_equal(ublk_state_path(test_tmpdir(), "disk0", &path), 0);
	assert_true(strstr(path, "/ublk-disk0.state") != NULL);
	assert_int_equal(ublk_state_read(path, &t), -ENOENT);
	assert_int_equal(ublk_state_write(path, &s), 0);
	assert_int_equal(ublk_state_read(path, &t), 0);
	assert_memory_equal(&s, &t, sizeof(s));
	/* Rewriting replaces it whole. */
	s.pid = 7;
	assert_int_equal(ublk_state_write(path, &s), 0);
	assert_int_equal(ublk_state_read(path, &t), 0);
	assert_int_equal(t.pid, 7);
	unlink(path);
	free(path);
}

static void test_state_bad_files(void **state)
{
	struct ublk_state t;
	char *path;

	path = test_write_file("garbage.state", "this is not a state file\n");
	assert_int_equal(ublk_state_read(path, &t), -EINVAL);
	free(path);
	path = test_write_file("partial.state", "dev_id=1\nqueues=2\n");
	assert_int_equal(ublk_state_read(path, &t), -EINVAL);
	free(path);
	path = test_write_file("overflow.state",
			       "dev_id=99999999999\nqueues=1\ndepth=1\nmax_io_size=4096\nsize=4096\nblock_size=512\n");
	assert_int_equal(ublk_state_read(path, &t), -EINVAL);
	free(path);
	path = test_write_file("future.state", "# comment\nnew_key=1\ndev_id=1\nqueues=1\ndepth=8\n"
					       "max_io_size=4096\nsize=4096\nblock_size=512\n");
	assert_int_equal(ublk_state_read(path, &t), 0);
	assert_int_equal(t.depth, 8);
	free(path);
}

/* ---- start without the driver --------------------------------------- */

static void test_start_without_driver(void **state)
{
	struct blkserv_device *dev;
	struct config *c = NULL;
	char *error = NULL, *log_path, text[4096];
	int saved, fd, r;
	ssize_t n;

	if (access(UBLK_CONTROL_PATH, F_OK) == 0)
		skip(); /* ublk_drv is loaded here: the VM scenarios cover it */
	assert_int_equal(test_load_config(config_with(""), &c, &error), 0);
	assert_int_equal(device_new(config_find_device(c, "u0"), test_plugin_dir(), &dev), 0);
	log_path = test_write_file("start.log", "");
	fd = open(log_path, O_WRONLY | O_APPEND);
	saved = dup(2);
	dup2(fd, 2);
	r = device_start(dev);
	dup2(saved, 2);
	close(saved);
	close(fd);
	assert_int_equal(r, -ENOENT);
	fd = open(log_path, O_RDONLY);
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	assert_true(n > 0);
	text[n] = '\0';
	assert_non_null(strstr(text, "modprobe ublk_drv"));
	device_free(dev);
	config_free(c);
	free(log_path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_option_defaults),  cmocka_unit_test(test_option_values),
		cmocka_unit_test(test_option_ranges),    cmocka_unit_test(test_params_full_caps),
		cmocka_unit_test(test_params_no_cache),  cmocka_unit_test(test_params_zeroes_only),
		cmocka_unit_test(test_params_read_only), cmocka_unit_test(test_params_invalid),
		cmocka_unit_test(test_flags_string),     cmocka_unit_test(test_state_roundtrip),
		cmocka_unit_test(test_state_bad_files),  cmocka_unit_test(test_start_without_driver),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The plugin loader refuses unsafe or mismatched plugins, naming the file. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test-helpers.h"
#include "plugin.h"

/* A fresh plugin directory holding fixture @fixture as blkserv-backend-@as.so. */
static char *dir_with(const char *fixture, const char *as, mode_t mode)
{
	static unsigned n;
	char *dir, cmd[2048];

	assert_true(asprintf(&dir, "%s/loader-%u", test_tmpdir(), n++) > 0);
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(cmd, sizeof(cmd),
		 "cp '%s/blkserv-backend-%s.so' '%s/blkserv-backend-%s.so' && chmod %o '%s/blkserv-backend-%s.so'",
		 test_fixture_dir(), fixture, dir, as, (unsigned)mode, dir, as);
	assert_int_equal(system(cmd), 0);
	return dir;
}

/* Load and expect failure @err with every @needle in the message. */
static void expect_refused(const char *dir, const char *name, int err, const char *needle1, const char *needle2)
{
	struct plugin *p = NULL;
	char *error = NULL;
	int r = plugin_load(dir, PLUGIN_BACKEND, name, &p, &error);

	if (r >= 0)
		fail_msg("plugin %s/%s was accepted", dir, name);
	assert_int_equal(r, err);
	assert_non_null(error);
	if (!strstr(error, needle1) || (needle2 && !strstr(error, needle2)))
		fail_msg("message '%s' lacks '%s' / '%s'", error, needle1, needle2 ? needle2 : "");
	free(error);
}

static void test_good_plugin(void **state)
{
	char *dir = dir_with("good", "good", 0755);
	struct plugin *p = NULL;
	char *error = NULL;

	if (plugin_load(dir, PLUGIN_BACKEND, "good", &p, &error) < 0)
		fail_msg("good plugin refused: %s", error);
	assert_string_equal(p->name, "good");
	assert_string_equal(plugin_description(p), "minimal");
	assert_non_null(p->backend.read);
	assert_null(p->backend.write);
	assert_int_equal(p->backend.abi_version, BLKSERV_ABI_VERSION);
	plugin_free(p);
	free(dir);
}

static void test_wrong_abi_version(void **state)
{
	char *dir = dir_with("badabi", "badabi", 0755);

	expect_refused(dir, "badabi", -EPROTO, "blkserv-backend-badabi.so", "ABI version 99");
	free(dir);
	/* Below the oldest version this host loads: refused too, with the range. */
	dir = dir_with("zeroabi", "zeroabi", 0755);
	expect_refused(dir, "zeroabi", -EPROTO, "blkserv-backend-zeroabi.so",
		       "ABI version 0; this blkservd supports versions 1 to");
	free(dir);
}

/* A thread model the host cannot honour is refused, never run as PARALLEL. */
static void test_unknown_thread_model(void **state)
{
	char *dir = dir_with("badthreads", "badthreads", 0755);

	expect_refused(dir, "badthreads", -EINVAL, "blkserv-backend-badthreads.so", "unknown thread_model 7");
	free(dir);
}

static void test_missing_callbacks(void **state)
{
	char *dir = dir_with("missing", "missing", 0755);

	expect_refused(dir, "missing", -EINVAL, "blkserv-backend-missing.so", ".get_size, .read");
	free(dir);
}

static void test_wrong_name(void **state)
{
	char *dir = dir_with("wrongname", "wrongname", 0755);

	expect_refused(dir, "wrongname", -EINVAL, "registers the name 'other'", "blkserv-backend-wrongname.so");
	free(dir);
}

static void test_no_symbol(void **state)
{
	char *dir = dir_with("nosym", "nosym", 0755);

	expect_refused(dir, "nosym", -ENOEXEC, "does not export blkserv_backend_init", "blkserv-backend-nosym.so");
	free(dir);
}

static void test_bad_option_type(void **state)
{
	char *dir = dir_with("badopt", "badopt", 0755);

	expect_refused(dir, "badopt", -EINVAL, "unknown type", "blkserv-backend-badopt.so");
	free(dir);
}

static void test_bad_option_check(void **state)
{
	char *dir = dir_with("badcheck", "badcheck", 0755);

	expect_refused(dir, "badcheck", -EINVAL, "the check of option 'x' does not fit its type string",
		       "blkserv-backend-badcheck.so");
	free(dir);
}

/* A plugin built before option_checks and validate existed loads, and the
 * fields past its struct_size read as NULL. */
static void test_old_abi_plugin(void **state)
{
	char *dir = dir_with("oldabi", "oldabi", 0755);
	struct plugin *p = NULL;
	char *error = NULL;

	if (plugin_load(dir, PLUGIN_BACKEND, "oldabi", &p, &error) < 0)
		fail_msg("old plugin refused: %s", error);
	assert_true(p->struct_size == offsetof(struct blkserv_backend, option_checks));
	assert_null(plugin_option_checks(p));
	assert_null(plugin_validate_fn(p));
	assert_non_null(plugin_find_option(p, "n"));
	plugin_free(p);
	free(dir);
}

static void test_world_writable_file(void **state)
{
	char *dir = dir_with("good", "good", 0666);

	expect_refused(dir, "good", -EPERM, "writable by group or others", "blkserv-backend-good.so");
	free(dir);
}

static void test_group_writable_dir(void **state)
{
	char *dir = dir_with("good", "good", 0755);

	assert_int_equal(chmod(dir, 0775), 0);
	expect_refused(dir, "good", -EPERM, "plugin directory", "writable by group or others");
	free(dir);
}

static void test_foreign_owner(void **state)
{
	char *dir = dir_with("good", "good", 0755), path[1024];

	if (geteuid() != 0)
		skip(); /* only root can give a file away */
	snprintf(path, sizeof(path), "%s/blkserv-backend-good.so", dir);
	assert_int_equal(chown(path, 65534, 65534), 0);
	expect_refused(dir, "good", -EPERM, "owned by uid 65534", "blkserv-backend-good.so");
	free(dir);
}

static void test_not_elf(void **state)
{
	char *dir = dir_with("good", "good", 0755), path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/blkserv-backend-text.so", dir);
	f = fopen(path, "w");
	fputs("#!/bin/sh\necho not a plugin\n", f);
	fclose(f);
	assert_int_equal(chmod(path, 0755), 0);
	expect_refused(dir, "text", -ENOEXEC, "not an ELF shared object", "blkserv-backend-text.so");
	free(dir);
}

static void test_truncated(void **state)
{
	char *dir = dir_with("good", "good", 0755), path[1024];

	snprintf(path, sizeof(path), "%s/blkserv-backend-good.so", dir);
	assert_int_equal(truncate(path, 300), 0);
	expect_refused(dir, "good", -ENOEXEC, "cannot load plugin", "blkserv-backend-good.so");
	free(dir);
}

static void test_empty_file(void **state)
{
	char *dir = dir_with("good", "good", 0755), path[1024];

	snprintf(path, sizeof(path), "%s/blkserv-backend-empty.so", dir);
	fclose(fopen(path, "w"));
	assert_int_equal(chmod(path, 0755), 0);
	expect_refused(dir, "empty", -ENOEXEC, "not an ELF shared object", "blkserv-backend-empty.so");
	free(dir);
}

static void test_directory(void **state)
{
	char *dir = dir_with("good", "good", 0755), path[1024];

	snprintf(path, sizeof(path), "%s/blkserv-backend-dir.so", dir);
	assert_int_equal(mkdir(path, 0755), 0);
	expect_refused(dir, "dir", -EINVAL, "not a regular file", "blkserv-backend-dir.so");
	free(dir);
}

/* An ELF program, not a shared object. */
static void test_executable(void **state)
{
	char *dir = dir_with("good", "good", 0755), cmd[2048];

	snprintf(cmd, sizeof(cmd),
		 "cp /bin/true '%s/blkserv-backend-prog.so' && chmod 0755 '%s/blkserv-backend-prog.so'", dir, dir);
	assert_int_equal(system(cmd), 0);
	expect_refused(dir, "prog", -ENOEXEC, "cannot load plugin", "blkserv-backend-prog.so");
	free(dir);
}

/* A shared object for another machine (e_machine patched to AArch64). */
static void test_foreign_machine(void **state)
{
	char *dir = dir_with("good", "good", 0755), path[1024];
	const unsigned char aarch64[2] = { 0xb7, 0x00 };
	int fd;

	snprintf(path, sizeof(path), "%s/blkserv-backend-good.so", dir);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, aarch64, sizeof(aarch64), 18), 2);
	close(fd);
	expect_refused(dir, "good", -ENOEXEC, "cannot load plugin", "blkserv-backend-good.so");
	free(dir);
}

static void test_symlink(void **state)
{
	char *dir = dir_with("good", "good", 0755), link[1024];

	snprintf(link, sizeof(link), "%s/blkserv-backend-link.so", dir);
	assert_int_equal(symlink("blkserv-backend-good.so", link), 0);
	expect_refused(dir, "link", -ELOOP, "cannot open plugin", "blkserv-backend-link.so");
	free(dir);
}

static void test_missing_and_bad_names(void **state)
{
	char *dir = dir_with("good", "good", 0755);

	expect_refused(dir, "absent", -ENOENT, "no backend plugin 'absent'",
		       "blkserv-backend-absent.so does not exist");
	expect_refused(dir, "../good", -EINVAL, "invalid backend name '../good'", NULL);
	expect_refused("/nonexistent-dir", "good", -ENOENT, "plugin directory /nonexistent-dir", NULL);
	free(dir);
}

static void test_build_plugins_load(void **state)
{
	struct plugin *p = NULL;
	char *error = NULL;

	if (plugin_load(test_plugin_dir(), PLUGIN_BACKEND, "ramdisk", &p, &error) < 0)
		fail_msg("ramdisk refused: %s", error);
	assert_non_null(p->backend.write);
	plugin_free(p);
	if (plugin_load(test_plugin_dir(), PLUGIN_FRONTEND, "testfe", &p, &error) < 0)
		fail_msg("testfe refused: %s", error);
	assert_non_null(plugin_find_option(p, "socket"));
	plugin_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_plugin),
		cmocka_unit_test(test_wrong_abi_version),
		cmocka_unit_test(test_unknown_thread_model),
		cmocka_unit_test(test_missing_callbacks),
		cmocka_unit_test(test_wrong_name),
		cmocka_unit_test(test_no_symbol),
		cmocka_unit_test(test_bad_option_type),
		cmocka_unit_test(test_world_writable_file),
		cmocka_unit_test(test_group_writable_dir),
		cmocka_unit_test(test_foreign_owner),
		cmocka_unit_test(test_not_elf),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_empty_file),
		cmocka_unit_test(test_directory),
		cmocka_unit_test(test_executable),
		cmocka_unit_test(test_foreign_machine),
		cmocka_unit_test(test_symlink),
		cmocka_unit_test(test_missing_and_bad_names),
		cmocka_unit_test(test_build_plugins_load),
		cmocka_unit_test(test_bad_option_check),
		cmocka_unit_test(test_old_abi_plugin),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

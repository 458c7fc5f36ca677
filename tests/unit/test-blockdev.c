/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* "Is this block device in use": the /proc scan on a fake /proc tree and
 * the answers for paths that are not block devices. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test-helpers.h"
#include "blockdev.h"

/* Any block device node in /dev, to point fake descriptors at. */
static bool find_block_node(char *buf, size_t len, dev_t *ret_rdev)
{
	DIR *d = opendir("/dev");
	struct dirent *e;
	bool found = false;

	while (d && !found && (e = readdir(d))) {
		struct stat st;
		snprintf(buf, len, "/dev/%s", e->d_name);
		found = stat(buf, &st) == 0 && S_ISBLK(st.st_mode);
		if (found)
			*ret_rdev = st.st_rdev;
	}
	if (d)
		closedir(d);
	return found;
}

static void test_open_anywhere(void **state)
{
	char root[] = "/tmp/blkserv-proc.XXXXXX", path[512], node[300];
	dev_t rdev = 0;

	if (!find_block_node(node, sizeof(node), &rdev))
		skip();
	assert_non_null(mkdtemp(root));
	/* A process with the device open, one without, and entries that
	 * are not processes. */
	assert_int_equal(mkdir(strcat(strcpy(path, root), "/9999991"), 0755), 0);
	assert_int_equal(mkdir(strcat(strcpy(path, root), "/9999991/fd"), 0755), 0);
	assert_int_equal(mkdir(strcat(strcpy(path, root), "/9999992"), 0755), 0);
	assert_int_equal(mkdir(strcat(strcpy(path, root), "/9999992/fd"), 0755), 0);
	assert_int_equal(mkdir(strcat(strcpy(path, root), "/self"), 0755), 0);
	snprintf(path, sizeof(path), "%s/9999992/fd/0", root);
	assert_int_equal(symlink("/dev/null", path), 0);
	assert_false(blockdev_open_anywhere(root, rdev));
	snprintf(path, sizeof(path), "%s/9999991/fd/7", root);
	assert_int_equal(symlink(node, path), 0);
	assert_true(blockdev_open_anywhere(root, rdev));
	assert_false(blockdev_open_anywhere(root, rdev + 1));
	assert_false(blockdev_open_anywhere("/nonexistent-proc", rdev));
	/* Our own descriptors are not a user. */
	snprintf(path, sizeof(path), "%s/%d", root, (int)getpid());
	assert_int_equal(mkdir(path, 0755), 0);
	strcat(path, "/fd");
	assert_int_equal(mkdir(path, 0755), 0);
	strcat(path, "/3");
	assert_int_equal(symlink(node, path), 0);
	snprintf(path, sizeof(path), "%s/9999991/fd/7", root);
	assert_int_equal(unlink(path), 0);
	assert_false(blockdev_open_anywhere(root, rdev));
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	assert_int_equal(system(cmd), 0);
}

static void test_in_use_refuses_non_devices(void **state)
{
	char file[] = "/tmp/blkserv-notblk.XXXXXX";
	int fd = mkstemp(file);

	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(blockdev_in_use(file), -ENOTBLK);
	assert_int_equal(blockdev_in_use("/dev/null"), -ENOTBLK);
	unlink(file);
	assert_int_equal(blockdev_in_use(file), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_anywhere),
		cmocka_unit_test(test_in_use_refuses_non_devices),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

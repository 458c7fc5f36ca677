/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test-helpers.h"

static const char *env_dir(const char *name)
{
	const char *d = getenv(name);

	if (!d) {
		fprintf(stderr, "%s is not set (run the tests through meson test)\n", name);
		exit(1);
	}
	return d;
}

/* Copy @src (a directory of plugins, or one file) into @dst, mode 0755. */
static void copy_plugins(const char *src, const char *dst)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "cp %s/*.so '%s'/ 2>/dev/null; chmod 0755 '%s'/*.so", src, dst, dst);
	if (system(cmd) != 0)
		fprintf(stderr, "warning: '%s' failed\n", cmd);
}

/* The fixtures that test programs load as if installed (test_plugin_dir). */
static const char *const working_fixtures[] = {
	"blkserv-frontend-testfe.so", "blkserv-backend-asyncmem.so", "blkserv-backend-badret.so",
	"blkserv-backend-serial.so",  "blkserv-backend-overlap.so",
};

const char *test_plugin_dir(void)
{
	static char dir[128];
	const char *fixtures;
	char cmd[1024];

	/* The build's plugins plus the working fixtures, in a private directory. */
	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "%s/plugins", test_tmpdir());
		assert_int_equal(mkdir(dir, 0755), 0);
		copy_plugins(env_dir("BLKSERV_TEST_PLUGIN_DIR"), dir);
		fixtures = env_dir("BLKSERV_TEST_FIXTURE_DIR");
		for (size_t i = 0; i < sizeof(working_fixtures) / sizeof(working_fixtures[0]); i++) {
			snprintf(cmd, sizeof(cmd), "cp '%s/%s' '%s'/ && chmod 0755 '%s/%s'", fixtures,
				 working_fixtures[i], dir, dir, working_fixtures[i]);
			assert_int_equal(system(cmd), 0);
		}
	}
	return dir;
}

const char *test_fixture_dir(void)
{
	return env_dir("BLKSERV_TEST_FIXTURE_DIR");
}

static char tmpdir[64];

static void remove_tmpdir(void)
{
	char cmd[128];

	if (tmpdir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", tmpdir);
	}
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	return s;
}

const char *test_tmpdir(void)
{
	if (!tmpdir[0]) {
		snprintf(tmpdir, sizeof(tmpdir), "/tmp/blkserv-test-XXXXXX");
		if (!mkdtemp(tmpdir)) {
			perror("mkdtemp");
			exit(1);
		}
		atexit(remove_tmpdir);
	}
	return tmpdir;
}

char *test_write_file(const char *name, const char *text)
{
	char *path;
	FILE *f;

	if (asprintf(&path, "%s/%s", test_tmpdir(), name) < 0)
		exit(1);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

int test_load_config(const char *text, struct config **ret, char **ret_error)
{
	char *path = test_write_file("test.conf", text);
	int r = config_load(path, test_plugin_dir(), ret, ret_error);

	free(path);
	return r;
}

struct blkserv_device *test_open_backend(const char *text, const char *name)
{
	struct config *c = NULL;
	char *error = NULL;
	struct blkserv_device *dev = NULL;
	const struct device_config *dc;
	int r;

	r = test_load_config(text, &c, &error);
	if (r < 0)
		fail_msg("config: %s", error ? error : strerror(-r));
	dc = config_find_device(c, name);
	assert_non_null(dc);
	assert_int_equal(device_new(dc, test_plugin_dir(), &dev), 0);
	r = device_open_backend(dev);
	assert_int_equal(r, 0);
	config_free(c);
	return dev;
}

void test_close_device(struct blkserv_device *dev)
{
	(void)device_close_backend(dev);
	device_free(dev);
}

struct sync_io {
	bool done;
	int result;
};

static void sync_done(struct blkserv_request *req, int result)
{
	struct sync_io *s = req->frontend_data;

	s->done = true;
	s->result = result;
}

int test_io(struct blkserv_queue *q, uint32_t op, uint32_t flags, uint64_t offset, uint64_t length, void *buf)
{
	struct blkserv_request *req = blkserv_queue_request(q, 0);
	struct sync_io s = {};

	req->op = op;
	req->flags = flags;
	req->offset = offset;
	req->length = length;
	req->buf = buf;
	req->done = sync_done;
	req->frontend_data = &s;
	blkserv_submit(req);
	while (!s.done) {
		int r = blkserv_queue_process(q, 1, 10000);
		if (r < 0 && r != -EINTR)
			fail_msg("queue processing failed: %s", strerror(-r));
	}
	return s.result;
}

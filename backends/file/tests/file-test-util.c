/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "plugin.h"
#include "test-helpers.h"
#include "file-test-util.h"

/* ---- helpers ------------------------------------------------------------ */

/* A config with device "f" (and "g" when @two) on @path.  @size: a size
 * line like "size = 4M" or "". */
char *config(const char *backend, const char *path, const char *size, const char *opts, bool two)
{
#define DEVICE_FMT                                                                                                     \
	"device \"%s\" {\n  %s\n  frontend \"testfe\" { socket = \"/x\" }\n"                                           \
	"  backend \"%s\" {\n    path = \"%s\"\n    %s\n  }\n}\n"
	char *f = xasprintf(DEVICE_FMT, "f", size, backend, path, opts);
	char *g = two ? xasprintf(DEVICE_FMT, "g", size, backend, path, opts) : strdup("");
	char *text = xasprintf("%s%s", f, g);

	free(f);
	free(g);
	return text;
}

struct capture capture_start(void)
{
	char *logpath = xasprintf("%s/captured.log", test_tmpdir());
	struct capture c;

	fflush(stderr);
	c.saved = dup(2);
	c.fd = open(logpath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(c.saved >= 0 && c.fd >= 0);
	dup2(c.fd, 2);
	free(logpath);
	return c;
}

void capture_end(struct capture c, char *log, size_t loglen)
{
	ssize_t n;

	fflush(stderr);
	dup2(c.saved, 2);
	close(c.saved);
	n = pread(c.fd, log, loglen - 1, 0);
	log[n > 0 ? n : 0] = 0;
	close(c.fd);
	fprintf(stderr, "%s", log); /* still shown in the test log */
}

/* Open the backend of device @name; return its error and what it logged. */
int try_open(const char *text, const char *name, struct blkserv_device **ret, char *log, size_t loglen)
{
	struct blkserv_device *dev = NULL;
	struct config *c = NULL;
	char *error = NULL;
	struct capture cap;
	int r;

	r = test_load_config(text, &c, &error);
	if (r < 0)
		fail_msg("config: %s", error ? error : strerror(-r));
	assert_int_equal(device_new(config_find_device(c, name), test_plugin_dir(), &dev), 0);
	config_free(c);
	cap = capture_start();
	r = device_open_backend(dev);
	capture_end(cap, log, loglen);
	if (r < 0) {
		device_free(dev);
		dev = NULL;
	}
	*ret = dev;
	return r;
}

/* Expect opening to fail with @err, logging @what and the path. */
void expect_open_error(const char *text, int err, const char *path, const char *what)
{
	struct blkserv_device *dev;
	char log[4096];

	assert_int_equal(try_open(text, "f", &dev, log, sizeof(log)), err);
	if (!strstr(log, path) || !strstr(log, what))
		fail_msg("the error log should name %s and say '%s', it says: %s", path, what, log);
}

struct blkserv_device *open_ok(const char *text, const char *name)
{
	struct blkserv_device *dev;
	char log[4096];
	int r = try_open(text, name, &dev, log, sizeof(log));

	if (r < 0)
		fail_msg("open failed (%s): %s", strerror(-r), log);
	return dev;
}

void fill(char *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)(seed * 131 + i * 7 + (i >> 9) + 1);
}

bool all_zero(const char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i])
			return false;
	return true;
}

void write_file(const char *path, uint64_t size, unsigned seed)
{
	char *buf = malloc(size ? size : 1);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	fill(buf, size, seed);
	assert_int_equal(pwrite(fd, buf, size, 0), (ssize_t)size);
	close(fd);
	free(buf);
}

uint64_t file_size(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

uint64_t allocated(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

/* The backend's counter @key from get_stats. */
unsigned long long stat_of(struct blkserv_device *dev, const char *key)
{
	char buf[1024], pat[64];
	const char *p;

	assert_int_equal(dev->backend->backend.get_stats(dev->backend_handle, buf, sizeof(buf)), 0);
	snprintf(pat, sizeof(pat), "%s=", key);
	p = strstr(buf, pat);
	assert_non_null(p);
	return strtoull(p + strlen(pat), NULL, 10);
}

void manual_done(struct blkserv_request *req, int result)
{
	struct manual_io *m = req->frontend_data;

	m->done = true;
	m->result = result;
}

void submit_manual(struct blkserv_queue *q, struct manual_io *m, uint32_t op, uint64_t offset, uint64_t length,
		   void *buf)
{
	struct blkserv_request *req = blkserv_queue_request(q, 1);

	*m = (struct manual_io){};
	req->op = op;
	req->flags = 0;
	req->offset = offset;
	req->length = length;
	req->buf = buf;
	req->done = manual_done;
	req->frontend_data = m;
	blkserv_submit(req);
}

void process_once(struct blkserv_queue *q)
{
	int r = blkserv_queue_process(q, 1, 10000);

	assert_true(r > 0);
}

int wait_manual(struct blkserv_queue *q, struct manual_io *m)
{
	while (!m->done)
		process_once(q);
	return m->result;
}

/* ---- fixture: an 8 MiB file on /tmp (or /dev/shm) ------------------------- */

struct fixture *fixture_new(const char *base, const char *opts)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char *text;

	f->dir = xasprintf("%s/file-XXXXXX", base);
	assert_non_null(mkdtemp(f->dir));
	f->path = xasprintf("%s/disk.img", f->dir);
	text = config("file", f->path, "size = 8M", opts, false);
	f->dev = open_ok(text, "f");
	free(text);
	assert_int_equal(blkserv_queue_new(f->dev, 4, 0, &f->q), 0);
	assert_int_equal(posix_memalign((void **)&f->a, 4096, BUFSZ + 4096), 0);
	assert_int_equal(posix_memalign((void **)&f->b, 4096, BUFSZ + 4096), 0);
	return f;
}

void fixture_close_device(struct fixture *f)
{
	if (f->q)
		blkserv_queue_free(f->q);
	if (f->dev)
		test_close_device(f->dev);
	f->q = NULL;
	f->dev = NULL;
}

int setup(void **state)
{
	*state = fixture_new(test_tmpdir(), "");
	return 0;
}

int setup_direct(void **state)
{
	*state = fixture_new(test_tmpdir(), "direct = true");
	return 0;
}

int setup_tmpfs(void **state)
{
	if (access("/dev/shm", W_OK) < 0) {
		*state = NULL;
		return 0;
	}
	*state = fixture_new("/dev/shm", "");
	return 0;
}

int teardown(void **state)
{
	struct fixture *f = *state;
	char *cmd;

	if (!f)
		return 0;
	fixture_close_device(f);
	cmd = xasprintf("rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", f->dir);
	free(cmd);
	free(f->a);
	free(f->b);
	free(f->path);
	free(f->dir);
	free(f);
	return 0;
}

/* Read @len at @off through the backend and compare with the file itself. */
void check_file_matches(struct fixture *f, uint64_t off, size_t len)
{
	int fd = open(f->path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, off, len, f->b), 0);
	assert_int_equal(pread(fd, f->a, len, (off_t)off), (ssize_t)len);
	assert_memory_equal(f->a, f->b, len);
	close(fd);
}

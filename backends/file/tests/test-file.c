/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The file backend through the host's request path, on temporary files in
 * /tmp (and /dev/shm for tmpfs): every operation, every open error, short
 * reads and writes made for real (a file truncated behind the backend's back,
 * RLIMIT_FSIZE), O_DIRECT with unaligned requests, locking, and the sticky
 * flush failure (through the test-only build blkserv-backend-file-fault.so).
 * Block devices are tested on a loop device when running as root.
 */
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

#define KiB 1024u
#define MiB (1024u * 1024u)
#define BUFSZ (4 * MiB)

/* ---- helpers ------------------------------------------------------------ */

static char *xasprintf(const char *fmt, ...) BLKSERV_PRINTF(1, 2);
static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	return s;
}

/* A config with device "f" (and "g" when @two) on @path.  @size: a size
 * line like "size = 4M" or "". */
static char *config(const char *backend, const char *path, const char *size, const char *opts, bool two)
{
#define DEVICE_FMT                                                                     \
	"device \"%s\" {\n  %s\n  frontend \"testfe\" { socket = \"/x\" }\n" \
	"  backend \"%s\" {\n    path = \"%s\"\n    %s\n  }\n}\n"
	char *f = xasprintf(DEVICE_FMT, "f", size, backend, path, opts);
	char *g = two ? xasprintf(DEVICE_FMT, "g", size, backend, path, opts) : strdup("");
	char *text = xasprintf("%s%s", f, g);

	free(f);
	free(g);
	return text;
}

/* Capture what is logged (to stderr) between capture_start and capture_end. */
struct capture {
	int saved;
	int fd;
};

static struct capture capture_start(void)
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

static void capture_end(struct capture c, char *log, size_t loglen)
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
static int try_open(const char *text, const char *name, struct blkserv_device **ret, char *log, size_t loglen)
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
static void expect_open_error(const char *text, int err, const char *path, const char *what)
{
	struct blkserv_device *dev;
	char log[4096];

	assert_int_equal(try_open(text, "f", &dev, log, sizeof(log)), err);
	if (!strstr(log, path) || !strstr(log, what))
		fail_msg("the error log should name %s and say '%s', it says: %s", path, what, log);
}

static struct blkserv_device *open_ok(const char *text, const char *name)
{
	struct blkserv_device *dev;
	char log[4096];
	int r = try_open(text, name, &dev, log, sizeof(log));

	if (r < 0)
		fail_msg("open failed (%s): %s", strerror(-r), log);
	return dev;
}

static void fill(char *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)(seed * 131 + i * 7 + (i >> 9) + 1);
}

static bool all_zero(const char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i])
			return false;
	return true;
}

static void write_file(const char *path, uint64_t size, unsigned seed)
{
	char *buf = malloc(size ? size : 1);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	fill(buf, size, seed);
	assert_int_equal(pwrite(fd, buf, size, 0), (ssize_t)size);
	close(fd);
	free(buf);
}

static uint64_t file_size(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

static uint64_t allocated(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

/* The backend's counter @key from get_stats. */
static unsigned long long stat_of(struct blkserv_device *dev, const char *key)
{
	char buf[1024], pat[64];
	const char *p;

	assert_int_equal(dev->backend->backend.get_stats(dev->backend_handle, buf, sizeof(buf)), 0);
	snprintf(pat, sizeof(pat), "%s=", key);
	p = strstr(buf, pat);
	assert_non_null(p);
	return strtoull(p + strlen(pat), NULL, 10);
}

/* A request we drive by hand, to act between its CQEs. */
struct manual_io {
	bool done;
	int result;
};

static void manual_done(struct blkserv_request *req, int result)
{
	struct manual_io *m = req->frontend_data;

	m->done = true;
	m->result = result;
}

static void submit_manual(struct blkserv_queue *q, struct manual_io *m, uint32_t op, uint64_t offset,
			  uint64_t length, void *buf)
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

static void process_once(struct blkserv_queue *q)
{
	int r = blkserv_queue_process(q, 1, 10000);

	assert_true(r > 0);
}

static int wait_manual(struct blkserv_queue *q, struct manual_io *m)
{
	while (!m->done)
		process_once(q);
	return m->result;
}

/* ---- fixture: an 8 MiB file on /tmp (or /dev/shm) ------------------------- */

struct fixture {
	char *dir;
	char *path;
	struct blkserv_device *dev;
	struct blkserv_queue *q;
	char *a, *b;
};

static struct fixture *fixture_new(const char *base, const char *opts)
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

static void fixture_close_device(struct fixture *f)
{
	if (f->q)
		blkserv_queue_free(f->q);
	if (f->dev)
		test_close_device(f->dev);
	f->q = NULL;
	f->dev = NULL;
}

static int setup(void **state)
{
	*state = fixture_new(test_tmpdir(), "");
	return 0;
}

static int setup_direct(void **state)
{
	*state = fixture_new(test_tmpdir(), "direct = true");
	return 0;
}

static int setup_tmpfs(void **state)
{
	if (access("/dev/shm", W_OK) < 0) {
		*state = NULL;
		return 0;
	}
	*state = fixture_new("/dev/shm", "");
	return 0;
}

static int teardown(void **state)
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
static void check_file_matches(struct fixture *f, uint64_t off, size_t len)
{
	int fd = open(f->path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, off, len, f->b), 0);
	assert_int_equal(pread(fd, f->a, len, (off_t)off), (ssize_t)len);
	assert_memory_equal(f->a, f->b, len);
	close(fd);
}

/* ---- creating and sizing -------------------------------------------------- */

static void test_create_sparse(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(file_size(f->path), 8 * MiB);
	assert_true(allocated(f->path) < 256 * KiB);
	assert_int_equal(blkserv_device_size(f->dev), 8 * MiB);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 0, MiB, f->b), 0);
	assert_true(all_zero(f->b, MiB));
}

static void test_roundtrip(void **state)
{
	struct fixture *f = *state;
	static const struct { uint64_t off, len; } io[] = {
		{ 0, 512 }, { 4096, 4096 }, { 3 * MiB - 512, MiB }, { 8 * MiB - 4 * MiB, 4 * MiB },
		{ 100, 1000 }, { 8 * MiB - 3, 3 },
	};

	for (size_t i = 0; i < ELEMENTSOF(io); i++) {
		fill(f->a, io[i].len, (unsigned)i + 1);
		assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, io[i].off, io[i].len, f->a), 0);
		assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, io[i].off, io[i].len, f->b), 0);
		assert_memory_equal(f->a, f->b, io[i].len);
	}
	check_file_matches(f, 0, 4 * MiB);
	check_file_matches(f, 4 * MiB, 4 * MiB);
	/* Out of range never reaches the backend. */
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 8 * MiB - 512, 1024, f->b), -EINVAL);
}

static void test_size_from_file(void **state)
{
	char *path = xasprintf("%s/existing.img", test_tmpdir());
	char *text = config("file", path, "", "", false);
	struct blkserv_device *dev;
	struct blkserv_queue *q;
	char *buf = malloc(MiB), *want = malloc(MiB);

	write_file(path, 2 * MiB, 7);
	dev = open_ok(text, "f");
	assert_int_equal(blkserv_device_size(dev), 2 * MiB);
	assert_int_equal(blkserv_queue_new(dev, 2, 0, &q), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 0, MiB, buf), 0);
	fill(want, MiB, 7);
	assert_memory_equal(buf, want, MiB);
	blkserv_queue_free(q);
	test_close_device(dev);
	free(buf);
	free(want);
	free(text);
	unlink(path);
	free(path);
}

static void test_smaller_needs_grow(void **state)
{
	char *path = xasprintf("%s/small.img", test_tmpdir());
	char *text = config("file", path, "size = 2M", "", false);
	char *grow = config("file", path, "size = 2M", "grow = true", false);
	struct blkserv_device *dev;

	write_file(path, MiB, 3);
	expect_open_error(text, -EINVAL, path, "grow = true");
	assert_int_equal(file_size(path), MiB);
	dev = open_ok(grow, "f");
	assert_int_equal(blkserv_device_size(dev), 2 * MiB);
	assert_int_equal(file_size(path), 2 * MiB);
	test_close_device(dev);
	unlink(path);
	free(path);
	free(text);
	free(grow);
}

static void test_larger_refused(void **state)
{
	char *path = xasprintf("%s/large.img", test_tmpdir());
	char *text = config("file", path, "size = 2M", "grow = true", false);

	write_file(path, 4 * MiB, 3);
	expect_open_error(text, -EFBIG, path, "larger than the device size");
	assert_int_equal(file_size(path), 4 * MiB); /* never shrunk */
	unlink(path);
	free(path);
	free(text);
}

static void test_not_multiple_of_block_size(void **state)
{
	char *path = xasprintf("%s/odd.img", test_tmpdir());
	char *text = config("file", path, "", "", false);
	char *empty = config("file", path, "", "", false);

	write_file(path, 1000, 1);
	expect_open_error(text, -EINVAL, path, "not a multiple of the device's block_size 512");
	write_file(path, 0, 1);
	expect_open_error(empty, -EINVAL, path, "is empty");
	unlink(path);
	free(path);
	free(text);
	free(empty);
}

static void test_missing_directory(void **state)
{
	char *path = xasprintf("%s/no/such/dir/disk.img", test_tmpdir());
	char *dir = xasprintf("%s/no/such/dir", test_tmpdir());
	char *text = config("file", path, "size = 1M", "", false);

	expect_open_error(text, -ENOENT, dir, "does not exist");
	free(path);
	free(dir);
	free(text);
}

/* The config is refused (the validate step, as --check-config does) with
 * a message naming the file, the option and @what. */
static void expect_config_error(const char *text, const char *what)
{
	struct config *c = NULL;
	char *error = NULL;

	if (test_load_config(text, &c, &error) == 0)
		fail_msg("the config was accepted:\n%s", text);
	if (!error || !strstr(error, "test.conf:") || !strstr(error, what))
		fail_msg("the config error should say '%s', it says: %s", what, error);
	free(error);
}

static void test_missing_file_without_size(void **state)
{
	char *path = xasprintf("%s/absent.img", test_tmpdir());
	char *text = config("file", path, "", "", false);
	char *ro = config("file", path, "size = 1M", "read_only = true", false);

	expect_config_error(text, "option 'path': ");
	expect_config_error(text, "does not exist; set the device's size option");
	expect_config_error(ro, "does not exist (read_only = true");
	assert_int_equal(access(path, F_OK), -1);
	free(path);
	free(text);
	free(ro);
}

static void test_not_a_file(void **state)
{
	char *dir = xasprintf("%s/adir", test_tmpdir());
	char *text = config("file", dir, "size = 1M", "", false);
	char *chr = config("file", "/dev/null", "size = 1M", "", false);

	assert_int_equal(mkdir(dir, 0700), 0);
	expect_config_error(text, "option 'path': ");
	expect_config_error(text, "is a directory");
	expect_config_error(chr, "/dev/null is neither a regular file nor a block device");
	rmdir(dir);
	free(dir);
	free(text);
	free(chr);
}

/* The open as another user, in a child; its log comes back through a pipe. */
static int open_as_nobody(struct blkserv_device *dev, char *log, size_t loglen)
{
	int pfd[2], rfd[2], status, r = -EPROTO;
	ssize_t n, got = 0;
	pid_t pid;

	assert_int_equal(pipe(pfd), 0);
	assert_int_equal(pipe(rfd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(pfd[1], 2);
		r = -EPERM;
		if (setgid(65534) == 0 && setuid(65534) == 0)
			r = device_open_backend(dev);
		fflush(stderr);
		if (write(rfd[1], &r, sizeof(r)) != sizeof(r))
			_exit(1);
		/* Killed, not exited: the parent's memory this copy holds is not
		 * the child's leak (valgrind checks leaks at any exit). */
		raise(SIGKILL);
	}
	close(pfd[1]);
	close(rfd[1]);
	while (got < (ssize_t)loglen - 1 && (n = read(pfd[0], log + got, loglen - 1 - (size_t)got)) > 0)
		got += n;
	log[got] = 0;
	close(pfd[0]);
	assert_int_equal(read(rfd[0], &r, sizeof(r)), sizeof(r));
	close(rfd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	return r;
}

/* Root ignores file modes, so as root the open runs in a child as nobody. */
static void test_permission_denied(void **state)
{
	char *path = xasprintf("%s/locked.img", test_tmpdir());
	char *text = config("file", path, "size = 1M", "", false);
	struct blkserv_device *dev = NULL;
	struct config *c = NULL;
	char log[4096];

	write_file(path, MiB, 1);
	assert_int_equal(chmod(path, 0400), 0);
	if (geteuid() != 0) {
		expect_open_error(text, -EACCES, path, "permission denied");
		goto out;
	}
	assert_int_equal(test_load_config(text, &c, NULL), 0);
	assert_int_equal(device_new(config_find_device(c, "f"), test_plugin_dir(), &dev), 0);
	config_free(c);
	assert_int_equal(chmod(test_tmpdir(), 0711), 0);
	assert_int_equal(open_as_nobody(dev, log, sizeof(log)), -EACCES);
	assert_int_equal(chmod(test_tmpdir(), 0700), 0);
	fprintf(stderr, "%s", log);
	assert_non_null(strstr(log, path));
	assert_non_null(strstr(log, "permission denied"));
	device_free(dev);
out:
	unlink(path);
	free(path);
	free(text);
}

/* ---- locking ---------------------------------------------------------------- */

static void test_lock(void **state)
{
	char *path = xasprintf("%s/shared.img", test_tmpdir());
	char *text = config("file", path, "size = 1M", "", false);
	char *both = config("file", path, "size = 1M", "", true);
	struct blkserv_device *a, *b;
	char log[4096];
	int fd;

	/* Two writers of one file in one config: refused before any open. */
	expect_config_error(both, "device 'g': backend 'file' option 'path': the backing file");
	expect_config_error(both, "is already used by device 'f'");
	/* The lock still guards what the config cannot see (one device
	 * opened twice here, as by a reload racing a stop). */
	a = open_ok(text, "f");
	expect_open_error(text, -EBUSY, path, "in use");
	test_close_device(a);
	b = open_ok(text, "f");
	test_close_device(b);

	/* Another process's lock (any open file description) counts too. */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_int_equal(flock(fd, LOCK_SH), 0);
	assert_int_equal(try_open(text, "f", &a, log, sizeof(log)), -EBUSY);
	close(fd);
	unlink(path);
	free(path);
	free(text);
	free(both);
}

static void test_read_only(void **state)
{
	char *path = xasprintf("%s/ro.img", test_tmpdir());
	char *ro = config("file", path, "", "read_only = true", true);
	char *rw = config("file", path, "", "", false);
	struct blkserv_device *a, *b;
	struct blkserv_queue *q;
	char *buf = malloc(MiB);

	write_file(path, MiB, 9);
	a = open_ok(ro, "f");
	b = open_ok(ro, "g"); /* readers share */
	assert_true(blkserv_device_caps(a) & BLKSERV_CAP_READ_ONLY);
	assert_false(blkserv_device_caps(a) & (BLKSERV_CAP_TRIM | BLKSERV_CAP_WRITE_ZEROES));
	expect_open_error(rw, -EBUSY, path, "in use");
	assert_int_equal(blkserv_queue_new(a, 2, 0, &q), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 0, MiB, buf), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, 0, 0, 4096, buf), -EPERM);
	blkserv_queue_free(q);
	test_close_device(a);
	test_close_device(b);
	free(buf);
	unlink(path);
	free(path);
	free(ro);
	free(rw);
}

/* ---- flush, FUA, trim, write zeroes ----------------------------------------- */

static void test_caps(void **state)
{
	struct fixture *f = *state;
	uint64_t caps = f->dev->native_caps;

	/* /tmp punches holes (ext4, xfs, tmpfs, btrfs all do). */
	assert_true(caps & BLKSERV_CAP_FLUSH);
	assert_true(caps & BLKSERV_CAP_FUA); /* native: RWF_DSYNC */
	assert_true(caps & BLKSERV_CAP_WRITE_ZEROES);
	assert_true(caps & BLKSERV_CAP_TRIM);
	assert_false(caps & (BLKSERV_CAP_READ_ONLY | BLKSERV_CAP_WRITE_THROUGH));
}

static void test_flush_and_fua(void **state)
{
	struct fixture *f = *state;

	fill(f->a, MiB, 5);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, 0, MiB, f->a), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, BLKSERV_REQ_FUA, MiB, MiB, f->a), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE_ZEROES, BLKSERV_REQ_FUA, 0, 4096, NULL), 0);
	check_file_matches(f, MiB, MiB);
	assert_int_equal(f->dev->backend->backend.sync(f->dev->backend_handle), 0);
}

static void test_trim(void **state)
{
	struct fixture *f = *state;
	uint64_t before;

	fill(f->a, 4 * MiB, 2);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, 0, 4 * MiB, f->a), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), 0);
	before = allocated(f->path);
	assert_int_equal(test_io(f->q, BLKSERV_OP_TRIM, 0, MiB, 2 * MiB, NULL), 0);
	assert_true(allocated(f->path) <= before - 2 * MiB);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 0, 4 * MiB, f->b), 0);
	assert_memory_equal(f->b, f->a, MiB);
	assert_true(all_zero(f->b + MiB, 2 * MiB));
	assert_memory_equal(f->b + 3 * MiB, f->a + 3 * MiB, MiB);
	/* Unaligned edges are fine too; FUA adds an fdatasync. */
	assert_int_equal(test_io(f->q, BLKSERV_OP_TRIM, BLKSERV_REQ_FUA, 100, 5000, NULL), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 100, 5000, f->b), 0);
	assert_true(all_zero(f->b, 5000));
}

static void test_write_zeroes(void **state)
{
	struct fixture *f = *state;
	uint64_t before;

	fill(f->a, 4 * MiB, 4);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, 0, 4 * MiB, f->a), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), 0);
	before = allocated(f->path);

	/* May unmap: punched. */
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE_ZEROES, 0, 0, MiB, NULL), 0);
	assert_true(allocated(f->path) <= before - MiB);
	before = allocated(f->path);

	/* NO_HOLE: zeroed, still allocated. */
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE_ZEROES, BLKSERV_REQ_NO_HOLE, MiB, MiB, NULL), 0);
	assert_true(allocated(f->path) >= before);

	/* Unaligned and FUA. */
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE_ZEROES, BLKSERV_REQ_NO_HOLE | BLKSERV_REQ_FUA,
				 3 * MiB + 7, 1000, NULL),
			 0);

	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 0, 4 * MiB, f->b), 0);
	assert_true(all_zero(f->b, 2 * MiB));
	assert_memory_equal(f->b + 2 * MiB, f->a + 2 * MiB, MiB + 7);
	assert_true(all_zero(f->b + 3 * MiB + 7, 1000));
	assert_memory_equal(f->b + 3 * MiB + 1007, f->a + 3 * MiB + 1007, MiB - 1007);
	check_file_matches(f, 0, 4 * MiB);
}

/* tmpfs punches holes but has no FALLOC_FL_ZERO_RANGE: NO_HOLE writes zeros. */
static void test_tmpfs_zero_fallback(void **state)
{
	struct fixture *f = *state;

	if (!f)
		skip();
	fill(f->a, 4 * MiB, 6);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, 0, 4 * MiB, f->a), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE_ZEROES, BLKSERV_REQ_NO_HOLE, 4096, 3 * MiB, NULL), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE_ZEROES, 0, 3 * MiB + 4096, 4096, NULL), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 0, 4 * MiB, f->b), 0);
	assert_memory_equal(f->b, f->a, 4096);
	assert_true(all_zero(f->b + 4096, 3 * MiB + 4096));
	assert_memory_equal(f->b + 3 * MiB + 8192, f->a + 3 * MiB + 8192, MiB - 8192);
	fprintf(stderr, "tmpfs: zero_writes=%llu\n", stat_of(f->dev, "zero_writes"));
	check_file_matches(f, 0, 4 * MiB);
}

/* ---- O_DIRECT ------------------------------------------------------------------ */

static void test_direct(void **state)
{
	struct fixture *f = *state;

	/* Aligned: straight through. */
	fill(f->a, MiB, 11);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, 0, MiB, f->a), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 0, MiB, f->b), 0);
	assert_memory_equal(f->a, f->b, MiB);
	assert_int_equal(stat_of(f->dev, "bounced"), 0);

	/* Aligned range, misaligned buffers: bounced. */
	fill(f->a + 1, MiB, 12);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, MiB, MiB, f->a + 1), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, MiB, MiB, f->b + 3), 0);
	assert_memory_equal(f->a + 1, f->b + 3, MiB);
	assert_int_equal(stat_of(f->dev, "bounced"), 2);

	/* Misaligned ranges: through the page cache, coherent with O_DIRECT. */
	fill(f->a, 5000, 13);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, 4096 + 100, 5000, f->a), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 0, 3 * 4096, f->b), 0); /* O_DIRECT */
	assert_memory_equal(f->b + 4096 + 100, f->a, 5000);
	fill(f->a, 8192, 14);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, 8192, 8192, f->a), 0); /* O_DIRECT */
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 8192 + 1, 1000, f->b), 0);
	assert_memory_equal(f->b, f->a + 1, 1000);
	assert_true(stat_of(f->dev, "buffered_unaligned") >= 2);
	assert_int_equal(test_io(f->q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), 0);
	check_file_matches(f, 0, 4 * MiB);
}

/* ---- short reads and writes ----------------------------------------------------- */

static void truncate_behind(const char *path, uint64_t size)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

/* A read crossing the end of a file truncated behind our back is short; the
 * rest is asked for again: it succeeds once the data is back, and fails with
 * EIO (never zeros, never success) while it is not. */
static void test_short_read(void **state)
{
	struct fixture *f = *state;
	struct manual_io m;
	int fd;

	fill(f->a, 256 * KiB, 21);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, 0, 256 * KiB, f->a), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), 0);

	truncate_behind(f->path, 64 * KiB);
	submit_manual(f->q, &m, BLKSERV_OP_READ, 0, 256 * KiB, f->b);
	process_once(f->q); /* the short read arrived; the rest is queued */
	assert_false(m.done);
	fd = open(f->path, O_WRONLY | O_CLOEXEC);
	assert_int_equal(pwrite(fd, f->a + 64 * KiB, 192 * KiB, 64 * KiB), (ssize_t)(192 * KiB));
	close(fd);
	assert_int_equal(wait_manual(f->q, &m), 0);
	assert_memory_equal(f->a, f->b, 256 * KiB);
	assert_true(stat_of(f->dev, "short_io_resubmits") >= 1);

	truncate_behind(f->path, 64 * KiB);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 0, 256 * KiB, f->b), -EIO);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 128 * KiB, 4096, f->b), -EIO);
	truncate_behind(f->path, 8 * MiB);
}

/* RLIMIT_FSIZE cuts a write crossing the limit short: the rest is written
 * once the limit is lifted, or the write fails (EFBIG) while it is not. */
static void test_short_write(void **state)
{
	struct fixture *f = *state;
	struct rlimit old, lim;
	struct manual_io m;

	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 2 * MiB + 64 * KiB;
	fill(f->a, 256 * KiB, 22);

	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	submit_manual(f->q, &m, BLKSERV_OP_WRITE, 2 * MiB, 256 * KiB, f->a);
	process_once(f->q); /* 64 KiB written; the rest is queued */
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	assert_false(m.done);
	assert_int_equal(wait_manual(f->q, &m), 0);
	check_file_matches(f, 2 * MiB, 256 * KiB);
	assert_memory_equal(f->b, f->a, 256 * KiB);
	assert_true(stat_of(f->dev, "short_io_resubmits") >= 1);

	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, 2 * MiB, 256 * KiB, f->a), -EFBIG);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_DFL);
}

/* ---- several queues ----------------------------------------------------------- */

static void test_two_queues(void **state)
{
	struct fixture *f = *state;
	struct blkserv_queue *q2;

	assert_int_equal(blkserv_queue_new(f->dev, 4, 0, &q2), 0);
	fill(f->a, MiB, 31);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, MiB, MiB, f->a), 0);
	assert_int_equal(test_io(q2, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), 0);
	assert_int_equal(test_io(q2, BLKSERV_OP_READ, 0, MiB, MiB, f->b), 0);
	assert_memory_equal(f->a, f->b, MiB);
	blkserv_queue_free(q2);
}

/* ---- the sticky flush failure ------------------------------------------------ */

/* Put the test-only build (its 2nd fdatasync reports EIO) beside the others. */
static void install_fault_plugin(void)
{
	const char *src = getenv("BLKSERV_FILE_FAULT_DIR");
	char *cmd;

	if (!src)
		fail_msg("BLKSERV_FILE_FAULT_DIR is not set (run through meson test)");
	cmd = xasprintf("cp '%s/blkserv-backend-file-fault.so' '%s/' && chmod 0755 '%s/blkserv-backend-file-fault.so'",
			src, test_plugin_dir(), test_plugin_dir());
	assert_int_equal(system(cmd), 0);
	free(cmd);
}

static void test_sticky_flush_failure(void **state)
{
	char *path = xasprintf("%s/fault.img", test_tmpdir());
	char *text = config("file-fault", path, "size = 4M", "", false);
	struct blkserv_device *dev;
	struct blkserv_queue *q, *q2;
	char *buf = malloc(MiB);
	struct capture cap;
	char log[4096];

	install_fault_plugin();
	setenv("BLKSERV_FILE_FAULT_FSYNC", "2", 1);
	dev = open_ok(text, "f");
	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);
	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q2), 0);
	fill(buf, MiB, 41);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, 0, 0, MiB, buf), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, 0, MiB, MiB, buf), 0);

	/* The failure, logged loudly with the device name. */
	cap = capture_start();
	assert_int_equal(test_io(q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), -EIO);
	capture_end(cap, log, sizeof(log));
	assert_non_null(strstr(log, "device f:"));
	assert_non_null(strstr(log, "fdatasync"));
	assert_non_null(strstr(log, "until the device is restarted"));

	/* Sticky: the real fdatasync would now succeed; we never say so. */
	assert_int_equal(test_io(q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), -EIO);
	assert_int_equal(test_io(q2, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), -EIO);
	assert_int_equal(test_io(q2, BLKSERV_OP_WRITE, BLKSERV_REQ_FUA, 0, 4096, buf), -EIO);
	assert_int_equal(test_io(q2, BLKSERV_OP_WRITE_ZEROES, BLKSERV_REQ_FUA, 0, 4096, NULL), -EIO);
	/* Plain reads and writes go on. */
	assert_int_equal(test_io(q2, BLKSERV_OP_WRITE, 0, 2 * MiB, 4096, buf), 0);
	assert_int_equal(test_io(q2, BLKSERV_OP_READ, 0, 0, MiB, buf), 0);
	assert_int_equal(stat_of(dev, "flush_failed"), 1);
	/* And the sync at a clean stop reports it too. */
	assert_int_equal(dev->backend->backend.sync(dev->backend_handle), -EIO);
	blkserv_queue_free(q);
	blkserv_queue_free(q2);
	test_close_device(dev);
	unsetenv("BLKSERV_FILE_FAULT_FSYNC");
	unlink(path);
	free(path);
	free(text);
	free(buf);
}

/* ---- block devices (a loop device; root only) --------------------------------- */

static char loopdev[64];
static char *loopfile;

static int setup_loop(void **state)
{
	char cmd[512];
	FILE *p;

	*state = NULL;
	if (geteuid() != 0)
		return 0;
	loopfile = xasprintf("%s/loop-backing.img", test_tmpdir());
	write_file(loopfile, 0, 0);
	truncate_behind(loopfile, 16 * MiB);
	snprintf(cmd, sizeof(cmd), "losetup -f --show '%s' 2>/dev/null", loopfile);
	p = popen(cmd, "r");
	if (!p || !fgets(loopdev, sizeof(loopdev), p))
		loopdev[0] = 0;
	if (p)
		pclose(p);
	loopdev[strcspn(loopdev, "\n")] = 0;
	if (loopdev[0])
		*state = loopdev;
	return 0;
}

static int teardown_loop(void **state)
{
	char cmd[128];

	if (loopdev[0]) {
		snprintf(cmd, sizeof(cmd), "losetup -d '%s'", loopdev);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot detach %s\n", loopdev);
	}
	free(loopfile);
	return 0;
}

static void test_blockdev(void **state)
{
	const char *dev_path = *state;
	char *text, *wrong, *direct;
	struct blkserv_device *dev;
	struct blkserv_queue *q;
	char *a = NULL, *b = NULL;

	if (!dev_path)
		skip(); /* needs root and a loop device */
	text = config("file", dev_path, "", "", false);
	wrong = config("file", dev_path, "size = 8M", "", false);
	direct = config("file", dev_path, "", "direct = true", false);
	assert_int_equal(posix_memalign((void **)&a, 4096, MiB), 0);
	assert_int_equal(posix_memalign((void **)&b, 4096, MiB), 0);

	expect_open_error(wrong, -EINVAL, dev_path, "remove size");
	dev = open_ok(text, "f");
	assert_int_equal(blkserv_device_size(dev), 16 * MiB);
	expect_open_error(text, -EBUSY, dev_path, "in use"); /* O_EXCL (and the lock) */
	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);
	fill(a, MiB, 51);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, BLKSERV_REQ_FUA, 0, MiB, a), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 0, MiB, b), 0);
	assert_memory_equal(a, b, MiB);
	/* WRITE_ZEROES (BLKZEROOUT semantics), aligned and not. */
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE_ZEROES, 0, 4096, 8192, NULL), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE_ZEROES, BLKSERV_REQ_NO_HOLE, 65536 + 3, 1000, NULL), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 0, MiB, b), 0);
	assert_memory_equal(a, b, 4096);
	assert_true(all_zero(b + 4096, 8192));
	assert_memory_equal(a + 12288, b + 12288, 65536 + 3 - 12288);
	assert_true(all_zero(b + 65536 + 3, 1000));
	/* TRIM (BLKDISCARD) where the loop device supports it. */
	if (blkserv_device_caps(dev) & BLKSERV_CAP_TRIM)
		assert_int_equal(test_io(q, BLKSERV_OP_TRIM, 0, MiB, MiB, NULL), 0);
	blkserv_queue_free(q);
	test_close_device(dev);

	dev = open_ok(direct, "f");
	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 0, 4096, b), 0);
	assert_memory_equal(a, b, 4096);
	/* Misaligned range and buffer: through the page cache. */
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 65536 + 1, 2000, b + 1), 0);
	assert_memory_equal(b + 1, a + 65536 + 1, 2);
	assert_true(all_zero(b + 3, 1000));
	assert_memory_equal(b + 1003, a + 65536 + 1003, 998);
	blkserv_queue_free(q);
	test_close_device(dev);
	free(a);
	free(b);
	free(text);
	free(wrong);
	free(direct);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_sparse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
		cmocka_unit_test(test_size_from_file),
		cmocka_unit_test(test_smaller_needs_grow),
		cmocka_unit_test(test_larger_refused),
		cmocka_unit_test(test_not_multiple_of_block_size),
		cmocka_unit_test(test_missing_directory),
		cmocka_unit_test(test_missing_file_without_size),
		cmocka_unit_test(test_not_a_file),
		cmocka_unit_test(test_permission_denied),
		cmocka_unit_test(test_lock),
		cmocka_unit_test(test_read_only),
		cmocka_unit_test_setup_teardown(test_caps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flush_and_fua, setup, teardown),
		cmocka_unit_test_setup_teardown(test_trim, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_zeroes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tmpfs_zero_fallback, setup_tmpfs, teardown),
		cmocka_unit_test_setup_teardown(test_direct, setup_direct, teardown),
		cmocka_unit_test_setup_teardown(test_short_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_short_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_queues, setup, teardown),
		cmocka_unit_test(test_sticky_flush_failure),
		cmocka_unit_test_setup_teardown(test_blockdev, setup_loop, teardown_loop),
	};

	log_setup(LOG_TARGET_STDERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The rbd backend through the host's request path.
 *
 * Without a cluster (the unit suite): every option check, each with an
 * error naming what is wrong, and an unreachable cluster (a monitor
 * address that accepts connections but never answers) failing at open
 * with an error naming pool/image, after the configured timeout instead
 * of hanging.
 *
 * With BLKSERV_RBD_TEST_CONF set to a running cluster's ceph.conf (the host
 * test host-rbd.sh starts one): open, create, the size checks, every
 * operation on a queue (completions come back from librbd's threads
 * through blkserv_request_complete_remote), the exclusive lock refusing a
 * second opener.  Skipped otherwise.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "plugin.h"
#include "test-helpers.h"

#define MiB (1024u * 1024u)

/* ---- helpers ------------------------------------------------------------ */

/* A device "r" whose backend section holds @opts; @size like "size = 8M" or "". */
static char *config(const char *size, const char *opts)
{
	return xasprintf("device \"r\" {\n  %s\n  frontend \"testfe\" { socket = \"/x\" }\n"
			 "  backend \"rbd\" {\n    %s\n  }\n}\n",
			 size, opts);
}

/* Capture what is logged (to stderr) while opening. */
static int try_open(const char *text, struct blkserv_device **ret, char *log, size_t loglen)
{
	char *logpath = xasprintf("%s/captured.log", test_tmpdir());
	struct blkserv_device *dev = NULL;
	struct config *c = NULL;
	char *error = NULL;
	int saved, fd, r;
	ssize_t n;

	r = test_load_config(text, &c, &error);
	if (r < 0)
		fail_msg("config: %s", error ? error : strerror(-r));
	assert_int_equal(device_new(config_find_device(c, "r"), test_plugin_dir(), &dev), 0);
	config_free(c);
	fflush(stderr);
	saved = dup(2);
	fd = open(logpath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(saved >= 0 && fd >= 0);
	dup2(fd, 2);
	r = device_open_backend(dev);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	n = pread(fd, log, loglen - 1, 0);
	log[n > 0 ? n : 0] = 0;
	close(fd);
	free(logpath);
	fprintf(stderr, "%s", log); /* still shown in the test log */
	if (r < 0) {
		device_free(dev);
		dev = NULL;
	}
	*ret = dev;
	return r;
}

/* Opening fails with @err and the log says each of @what (NULL-terminated). */
static void expect_error(const char *size, const char *opts, int err, const char *const *what)
{
	char *text = config(size, opts);
	struct blkserv_device *dev;
	char log[4096];

	assert_int_equal(try_open(text, &dev, log, sizeof(log)), err);
	for (; *what; what++)
		if (!strstr(log, *what))
			fail_msg("the error should say '%s', it says: %s", *what, log);
	free(text);
}

#define EXPECT_ERROR(size, opts, err, ...)                                                                             \
	expect_error((size), (opts), (err), (const char *const[]){ __VA_ARGS__, NULL })

/* The config is refused (the validate step, as --check-config does) with
 * a message that says each of @what (NULL-terminated). */
static void expect_config_error(const char *size, const char *opts, const char *const *what)
{
	char *text = config(size, opts);
	struct config *c = NULL;
	char *error = NULL;

	if (test_load_config(text, &c, &error) == 0)
		fail_msg("the config was accepted:\n%s", text);
	for (; *what; what++)
		if (!error || !strstr(error, *what))
			fail_msg("the config error should say '%s', it says: %s", *what, error);
	free(error);
	free(text);
}

#define EXPECT_CONFIG_ERROR(size, opts, ...)                                                                           \
	expect_config_error((size), (opts), (const char *const[]){ __VA_ARGS__, NULL })

/* A ceph.conf in the test's directory; returns its path (malloc'd). */
static char *write_ceph_conf(const char *name, const char *text)
{
	return test_write_file(name, text);
}

static char *empty_conf_path;

/* A ceph.conf without monitors: the option checks fail before it matters. */
static const char *empty_conf(void)
{
	if (!empty_conf_path)
		empty_conf_path = write_ceph_conf("empty.conf", "[global]\n");
	return empty_conf_path;
}

/* ---- option checks (no cluster) ---------------------------------------- */

static void test_required_options(void **state)
{
	char *text = config("", "image = \"a\"");
	struct config *c = NULL;
	char *error = NULL;

	assert_true(test_load_config(text, &c, &error) < 0);
	assert_non_null(error);
	if (!strstr(error, "pool"))
		fail_msg("the config error should name the pool option: %s", error);
	free(error);
	free(text);
}

/* Names Ceph refuses: reported by the validate step (--check-config too),
 * with file, line and option, before any connection. */
static void test_bad_names(void **state)
{
	static const struct {
		const char *opts, *option, *what;
	} bad[] = {
		{ "pool = \"a/b\" image = \"i\"", "option 'pool'", "\"a/b\" contains '/'" },
		{ "pool = \"\" image = \"i\"", "option 'pool'", "pool must not be empty" },
		{ "pool = \"p\" image = \"i@snap\"", "option 'image'", "\"i@snap\" contains '@'" },
		{ "pool = \"p\" image = \"a/b\"", "option 'image'", "contains '/'" },
		{ "pool = \"p\" image = \"\"", "option 'image'", "image must not be empty" },
		{ "pool = \"p\" image = \"i\" namespace = \"x/y\"", "option 'namespace'", "contains '/'" },
		{ "pool = \"p\" image = \"a\tb\"", "option 'image'", "a control character" },
		{ "pool = \"p\" image = \"i\" user = \"a b\"", "option 'user'", "contains ' '" },
		{ "pool = \"p\" image = \"i\" user = \"\"", "option 'user'", "user must not be empty" },
	};
	char *o;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		o = xasprintf("%s conf = \"%s\"", bad[i].opts, empty_conf());
		EXPECT_CONFIG_ERROR("", o, "test.conf:", bad[i].option, bad[i].what);
		free(o);
	}
	/* Too long: 256 bytes; 255 is accepted (up to the cluster). */
	char name[257];
	memset(name, 'x', 256);
	name[256] = '\0';
	o = xasprintf("pool = \"p\" image = \"%s\" conf = \"%s\"", name, empty_conf());
	EXPECT_CONFIG_ERROR("", o, "option 'image'", "256 bytes long, more than 255");
	free(o);
	o = xasprintf("pool = \"%s\" image = \"i\" conf = \"%s\"", name, empty_conf());
	EXPECT_CONFIG_ERROR("", o, "option 'pool'", "more than 255");
	free(o);
}

static void test_bad_user(void **state)
{
	char *o = xasprintf("pool = \"p\" image = \"i\" user = \"osd.0\" conf = \"%s\"", empty_conf());

	EXPECT_CONFIG_ERROR("", o, "option 'user'", "osd.0", "not a client name");
	free(o);
	o = xasprintf("pool = \"p\" image = \"i\" user = \"client.\" conf = \"%s\"", empty_conf());
	EXPECT_CONFIG_ERROR("", o, "option 'user'", "client.", "not a client name");
	free(o);
}

static void test_bad_timeout(void **state)
{
	char *o = xasprintf("pool = \"p\" image = \"i\" timeout = 0 conf = \"%s\"", empty_conf());

	EXPECT_CONFIG_ERROR("", o, "test.conf:", "option 'timeout'", "from 1 to 3600, not '0'");
	free(o);
	o = xasprintf("pool = \"p\" image = \"i\" timeout = 3601 conf = \"%s\"", empty_conf());
	EXPECT_CONFIG_ERROR("", o, "option 'timeout'", "not '3601'");
	free(o);
}

/* Files named by options: checked by the validate step too (when set:
 * the default ceph.conf is looked for at open). */
static void test_missing_files(void **state)
{
	char *o;

	EXPECT_CONFIG_ERROR("", "pool = \"p\" image = \"i\" conf = \"/nonexistent/ceph.conf\"",
			    "test.conf:", "option 'conf'", "/nonexistent/ceph.conf: No such file or directory");
	o = xasprintf("pool = \"p\" image = \"i\" conf = \"%s\" keyring = \"/nonexistent/kr\"", empty_conf());
	EXPECT_CONFIG_ERROR("", o, "option 'keyring'", "/nonexistent/kr: No such file or directory");
	free(o);
	o = xasprintf("pool = \"p\" image = \"i\" conf = \"%s\"", test_tmpdir());
	EXPECT_CONFIG_ERROR("", o, "option 'conf'", "is not a regular file");
	free(o);
}

static void test_create_needs_size(void **state)
{
	char *o = xasprintf("pool = \"p\" image = \"i\" create = true conf = \"%s\"", empty_conf());

	EXPECT_CONFIG_ERROR("", o, "option 'create'", "create = true", "size");
	free(o);
	o = xasprintf("pool = \"p\" image = \"i\" create = true read_only = true conf = \"%s\"", empty_conf());
	EXPECT_CONFIG_ERROR("size = 8M", o, "option 'create'", "read_only");
	free(o);
}

/* No monitor address at all: an error at once, naming pool/image. */
static void test_no_monitors(void **state)
{
	char *o = xasprintf("pool = \"p\" image = \"img\" timeout = 2 conf = \"%s\"", empty_conf());

	EXPECT_ERROR("", o, -ENOENT, "p/img", "cannot connect", "mon_host");
	free(o);
}

/* A "monitor" that accepts TCP connections and never says a word: the
 * connection must fail after the timeout (1 s here), not hang. */
static void test_unreachable_cluster(void **state)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t salen = sizeof(sa);
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char *conf_text, *conf, *o;

	assert_true(s >= 0);
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s, 16), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &salen), 0);
	conf_text =
		xasprintf("[global]\nmon_host = v2:127.0.0.1:%u\nauth_client_required = none\n", ntohs(sa.sin_port));
	conf = write_ceph_conf("silent.conf", conf_text);
	o = xasprintf("pool = \"pool1\" namespace = \"ns\" image = \"img\" timeout = 1 conf = \"%s\"", conf);
	EXPECT_ERROR("", o, -ETIMEDOUT, "pool1/ns/img", "cannot connect", "timeout");
	close(s);
	free(o);
	free(conf);
	free(conf_text);
}

/* ---- with a cluster (BLKSERV_RBD_TEST_CONF) ------------------------------ */

static const char *cluster_conf(void)
{
	const char *c = getenv("BLKSERV_RBD_TEST_CONF");

	return c && c[0] ? c : NULL;
}

static const char *cluster_pool(void)
{
	const char *p = getenv("BLKSERV_RBD_TEST_POOL");

	return p && p[0] ? p : "rbd";
}

/* First in a test: skip() longjmps past _cleanup_ handlers. */
#define NEED_CLUSTER()                                                                                                 \
	do {                                                                                                           \
		if (!cluster_conf()) {                                                                                 \
			fprintf(stderr, "no cluster (BLKSERV_RBD_TEST_CONF unset)\n");                                 \
			skip();                                                                                        \
		}                                                                                                      \
	} while (0)

/* A fresh image name for each test. */
static char *image_name(const char *what)
{
	return xasprintf("unit-%s-%d", what, (int)getpid());
}

static struct blkserv_device *open_rbd(const char *size, const char *image, const char *extra)
{
	char *o = xasprintf("pool = \"%s\" image = \"%s\" conf = \"%s\" timeout = 20 %s", cluster_pool(), image,
			    cluster_conf(), extra);
	char *text = config(size, o);
	struct blkserv_device *dev;
	char log[4096];
	int r = try_open(text, &dev, log, sizeof(log));

	if (r < 0)
		fail_msg("open failed (%s): %s", strerror(-r), log);
	free(text);
	free(o);
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

static void test_cluster_missing_image(void **state)
{
	NEED_CLUSTER();
	_cleanup_free_ char *img = image_name("missing");
	_cleanup_free_ char *o = NULL;

	o = xasprintf("pool = \"%s\" image = \"%s\" conf = \"%s\"", cluster_pool(), img, cluster_conf());
	EXPECT_ERROR("", o, -ENOENT, img, "does not exist", "create = true");
	free(o);
	o = xasprintf("pool = \"no-such-pool\" image = \"%s\" conf = \"%s\"", img, cluster_conf());
	EXPECT_ERROR("", o, -ENOENT, "no-such-pool/", "pool does not exist");
	free(o);
	o = xasprintf("pool = \"%s\" namespace = \"nons\" image = \"%s\" conf = \"%s\"", cluster_pool(), img,
		      cluster_conf());
	EXPECT_ERROR("", o, -ENOENT, "namespace nons does not exist");
}

static void test_cluster_create_and_size(void **state)
{
	NEED_CLUSTER();
	_cleanup_free_ char *img = image_name("size");
	_cleanup_free_ char *o = NULL;
	struct blkserv_device *dev;

	dev = open_rbd("size = 8M", img, "create = true");
	assert_int_equal(blkserv_device_size(dev), 8 * MiB);
	test_close_device(dev);
	/* Reopened without a size: the image's. */
	dev = open_rbd("", img, "");
	assert_int_equal(blkserv_device_size(dev), 8 * MiB);
	test_close_device(dev);
	/* A different configured size is an error, not a resize. */
	o = xasprintf("pool = \"%s\" image = \"%s\" conf = \"%s\"", cluster_pool(), img, cluster_conf());
	EXPECT_ERROR("size = 16M", o, -EINVAL, img, "8388608 bytes", "16777216");
}

static void test_cluster_io(void **state)
{
	NEED_CLUSTER();
	_cleanup_free_ char *img = image_name("io");
	_cleanup_free_ char *a = malloc(4 * MiB), *b = malloc(4 * MiB);
	struct blkserv_device *dev;
	struct blkserv_queue *q;
	uint64_t caps;

	dev = open_rbd("size = 16M", img, "create = true");
	caps = blkserv_device_caps(dev);
	assert_true(caps & BLKSERV_CAP_FLUSH);
	assert_true(caps & BLKSERV_CAP_TRIM);
	assert_true(caps & BLKSERV_CAP_WRITE_ZEROES);
	assert_true(caps & BLKSERV_CAP_FUA); /* emulated by the host: write + flush */
	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);

	/* A fresh image reads as zeros. */
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 0, MiB, b), 0);
	assert_true(all_zero(b, MiB));
	/* Writes across object boundaries (4 MiB objects), FUA, flush. */
	fill(a, 4 * MiB, 1);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, 0, 2 * MiB, 4 * MiB, a), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, BLKSERV_REQ_FUA, 12 * MiB, 4096, a), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 2 * MiB, 4 * MiB, b), 0);
	assert_memory_equal(a, b, 4 * MiB);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 12 * MiB, 4096, b), 0);
	assert_memory_equal(a, b, 4096);

	/* Write zeroes (also keeping the range allocated) reads back as zeros;
	 * the bytes around it are intact. */
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE_ZEROES, 0, 3 * MiB, MiB, NULL), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE_ZEROES, BLKSERV_REQ_NO_HOLE | BLKSERV_REQ_FUA, 5 * MiB, 4096,
				 NULL),
			 0);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 2 * MiB, 4 * MiB, b), 0);
	assert_memory_equal(a, b, MiB);
	assert_true(all_zero(b + MiB, MiB));
	assert_memory_equal(a + 2 * MiB, b + 2 * MiB, MiB);
	assert_true(all_zero(b + 3 * MiB, 4096));
	assert_memory_equal(a + 3 * MiB + 4096, b + 3 * MiB + 4096, MiB - 4096);

	/* Trim a whole object: allowed to read back as anything, and does not
	 * fail. */
	assert_int_equal(test_io(q, BLKSERV_OP_TRIM, 0, 8 * MiB, 4 * MiB, NULL), 0);
	blkserv_queue_free(q);
	test_close_device(dev);
}

/* Many requests in flight at once on one queue: every completion comes
 * back from librbd's threads to the owner, each exactly once. */
struct par {
	int done;
	int failed;
};

static void par_done(struct blkserv_request *req, int result)
{
	struct par *p = req->frontend_data;

	p->done++;
	if (result < 0)
		p->failed++;
}

static void submit_all(struct blkserv_queue *q, int n, uint32_t op, char *bufs, size_t len, struct par *p)
{
	*p = (struct par){};
	for (int i = 0; i < n; i++) {
		struct blkserv_request *req = blkserv_queue_request(q, (uint32_t)i);
		req->op = op;
		req->flags = 0;
		req->offset = (uint64_t)i * len * 3;
		req->length = len;
		req->buf = bufs + (size_t)i * len;
		req->done = par_done;
		req->frontend_data = p;
		blkserv_submit(req);
	}
	while (p->done < n)
		assert_true(blkserv_queue_process(q, 1, 30000) > 0);
	assert_int_equal(p->done, n);
	assert_int_equal(p->failed, 0);
}

static void test_cluster_parallel(void **state)
{
	NEED_CLUSTER();
	_cleanup_free_ char *img = image_name("par");
	enum { N = 32, LEN = 64 * 1024 };
	_cleanup_free_ char *bufs = malloc((size_t)N * LEN), *check = malloc((size_t)N * LEN);
	struct blkserv_device *dev;
	struct blkserv_queue *q;
	struct par p;

	dev = open_rbd("size = 8M", img, "create = true");
	assert_int_equal(blkserv_queue_new(dev, N, 0, &q), 0);
	for (int i = 0; i < N; i++)
		fill(bufs + (size_t)i * LEN, LEN, (unsigned)i + 7);
	submit_all(q, N, BLKSERV_OP_WRITE, bufs, LEN, &p);
	submit_all(q, N, BLKSERV_OP_READ, check, LEN, &p);
	assert_memory_equal(bufs, check, (size_t)N * LEN);
	assert_int_equal(blkserv_queue_inflight(q), 0);
	blkserv_queue_free(q);
	test_close_device(dev);
}

/* With exclusive = true (the default), a second opener is refused at open. */
static void test_cluster_exclusive(void **state)
{
	NEED_CLUSTER();
	_cleanup_free_ char *img = image_name("excl");
	_cleanup_free_ char *o = NULL;
	struct blkserv_device *dev, *dev2;

	dev = open_rbd("size = 8M", img, "create = true");
	o = xasprintf("pool = \"%s\" image = \"%s\" conf = \"%s\" timeout = 20", cluster_pool(), img, cluster_conf());
	EXPECT_ERROR("", o, -EROFS, img, "exclusive lock");
	/* Read-only openers take no lock. */
	dev2 = open_rbd("", img, "read_only = true");
	assert_true(blkserv_device_caps(dev2) & BLKSERV_CAP_READ_ONLY);
	test_close_device(dev2);
	test_close_device(dev);
	/* Released at close: the next opener gets it. */
	dev = open_rbd("", img, "");
	test_close_device(dev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_required_options),
		cmocka_unit_test(test_bad_names),
		cmocka_unit_test(test_bad_user),
		cmocka_unit_test(test_bad_timeout),
		cmocka_unit_test(test_missing_files),
		cmocka_unit_test(test_create_needs_size),
		cmocka_unit_test(test_no_monitors),
		cmocka_unit_test(test_unreachable_cluster),
		cmocka_unit_test(test_cluster_missing_image),
		cmocka_unit_test(test_cluster_create_and_size),
		cmocka_unit_test(test_cluster_io),
		cmocka_unit_test(test_cluster_parallel),
		cmocka_unit_test(test_cluster_exclusive),
	};

	int r;

	log_setup(LOG_TARGET_STDERR);
	r = cmocka_run_group_tests(tests, NULL, NULL);
	free(empty_conf_path);
	return r;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of the dblock frontend that need no kernel module: the ABI
 * layout, options and their limits, which extensions a backend wants, the
 * translation of every kernel request into backend requests and answers
 * (with a synchronous and an asynchronous backend), and the clear error
 * when the module is not loaded.  The VM scenarios serve real devices.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "test-helpers.h"
#include "dblock.h"

static const char *config_with(const char *size, const char *frontend_opts, const char *backend)
{
	static char text[1024];

	snprintf(text, sizeof(text),
		 "runtime_dir = \"%s\"\n"
		 "device \"d0\" {\n"
		 "  size = %s\n  block_size = 4096\n"
		 "  frontend \"dblock\" { %s }\n"
		 "  backend \"%s\" { }\n"
		 "}\n",
		 test_tmpdir(), size, frontend_opts, backend);
	return text;
}

/* The config was refused (as by --check-config) with this message. */
#define REFUSED 1
static char refused[1024];

static int parse_options(const char *size, const char *frontend_opts, struct dblock_options *o)
{
	struct config *c = NULL;
	char *error = NULL;

	if (test_load_config(config_with(size, frontend_opts, "ramdisk"), &c, &error) < 0) {
		snprintf(refused, sizeof(refused), "%s", error ? error : "");
		free(error);
		return REFUSED;
	}
	config_free(c);
	struct blkserv_device *dev = test_open_backend(config_with(size, frontend_opts, "ramdisk"), "d0");
	int r = dblock_options_parse(dev, &dev->config->frontend_cfg, o);

	test_close_device(dev);
	return r;
}

/* ---- the ABI ------------------------------------------------------------- */

static void test_abi_layout(void **state)
{
	/* The original's offsets (x86_64), which old programs rely on. */
	assert_int_equal(sizeof(struct dblock_operation), DBLOCK_OPERATION_SIZE);
	assert_int_equal(offsetof(struct dblock_operation, header.operation), 8);
	assert_int_equal(offsetof(struct dblock_operation, header.size), 16);
	assert_int_equal(offsetof(struct dblock_operation, header.signal_number), 24);
	assert_int_equal(offsetof(struct dblock_operation, packet), 32);
	assert_int_equal(offsetof(struct dblock_operation, metadata), 48);
	assert_int_equal(offsetof(struct dblock_operation, error), 4144);
	assert_int_equal(offsetof(struct dblock_operation, operation_id), 4148);
	assert_int_equal(offsetof(struct dblock_operation, data), 4152);
	assert_int_equal(sizeof(union dblock_control_operation), DBLOCK_CONTROL_OPERATION_SIZE);
	assert_int_equal(offsetof(struct dblock_create_params, kernel_block_size), 32);
	assert_int_equal(offsetof(struct dblock_create_params, number_of_blocks), 40);
	assert_int_equal(offsetof(struct dblock_create_params, device_timeout_seconds), 48);
	assert_int_equal(offsetof(struct dblock_create_params, max_segments_per_request), 52);
	assert_int_equal(offsetof(struct dblock_create_params, handle_id), 56);
	assert_int_equal(offsetof(struct dblock_create_params, error), 60);
	assert_int_equal(offsetof(struct dblock_destroy_by_name_params, force), 36);
	assert_int_equal(sizeof(struct dblock_create_ex), DBLOCK_CREATE_EX_SIZE);
	/* The extension's flags live in what was padding. */
	assert_int_equal(offsetof(struct dblock_operation, header.flags), 12);
	/* Raw numbers for the original; encoded ones for ours, never equal. */
	assert_int_equal(DBLOCK_IOCTL_DEVICE_OPERATION, 58);
	assert_true(DBLOCK_IOCTL_CONTROL_CREATE_DEVICE_EX > 0xffff);
}

/* ---- options ------------------------------------------------------------- */

static void test_option_defaults(void **state)
{
	struct dblock_options o;

	assert_int_equal(parse_options("64M", "", &o), 0);
	assert_string_equal(o.name, "d0");
	assert_int_equal(o.threads, 4);
	assert_int_equal(o.timeout, 30);
	assert_int_equal(o.queue_depth, 128);
	assert_int_equal(o.max_io_size, 1 << 20);
	assert_true(o.extensions);
}

static void test_option_values(void **state)
{
	struct dblock_options o;

	assert_int_equal(parse_options("4M",
				       "name = \"vol-1\" threads = 64 timeout = 1200 queue_depth = 1024 "
				       "max_io_size = 4K extensions = false",
				       &o),
			 0);
	assert_string_equal(o.name, "vol-1");
	assert_int_equal(o.threads, 64);
	assert_int_equal(o.timeout, 1200);
	assert_int_equal(o.queue_depth, 1024);
	assert_int_equal(o.max_io_size, 4096);
	assert_false(o.extensions);
	assert_int_equal(parse_options("12T", "name = \"abcdefghijklmnopqrstuvwxyz01234\"", &o), 0);
	assert_int_equal(strlen(o.name), 31);
}

/* The config is refused with a message naming its line and saying @what. */
static void expect_refused(const char *size, const char *frontend_opts, const char *what)
{
	struct dblock_options o;

	assert_int_equal(parse_options(size, frontend_opts, &o), REFUSED);
	if (!strstr(refused, "test.conf:") || !strstr(refused, what))
		fail_msg("the config error should say '%s', it says: %s", what, refused);
}

static void test_option_ranges(void **state)
{
	expect_refused("64M", "threads = 0",
		       "option 'threads' of frontend 'dblock' expects a number from 1 to 64, not '0'");
	expect_refused("64M", "threads = 65", "option 'threads'");
	expect_refused("64M", "timeout = 0", "option 'timeout' of frontend 'dblock' expects a number from 1 to 1200");
	expect_refused("64M", "timeout = 1201", "option 'timeout'");
	expect_refused("64M", "queue_depth = 0",
		       "option 'queue_depth' of frontend 'dblock' expects a number from 1 to 1024");
	expect_refused("64M", "queue_depth = 1025", "option 'queue_depth'");
	expect_refused("64M", "max_io_size = 2M",
		       "option 'max_io_size' of frontend 'dblock' expects a size from 4K to 1M");
	expect_refused("64M", "max_io_size = 6K", "option 'max_io_size': 6144 is not a multiple of 4K");
	expect_refused("64M", "name = \"a/b\"", "option 'name': name 'a/b' cannot name a dblock device");
	expect_refused("64M", "name = \"a b\"", "cannot name a dblock device");
	expect_refused("64M", "name = \"\"", "cannot name a dblock device");
	expect_refused("64M", "name = \"abcdefghijklmnopqrstuvwxyz012345\"", "cannot name a dblock device");
	/* The module's device limits: 4 MiB..12 TiB. */
	expect_refused("2M", "", "outside the module's limits");
	expect_refused("13T", "", "outside the module's limits");
}

static void test_option_block_size(void **state)
{
	static const char text[] = "device \"d0\" {\n  size = 64M\n  block_size = 512\n"
				   "  frontend \"dblock\" { }\n  backend \"ramdisk\" { }\n}\n";
	struct config *c = NULL;
	char *error = NULL;

	assert_true(test_load_config(text, &c, &error) < 0);
	if (!error || !strstr(error, "test.conf:4: device 'd0': frontend 'dblock': block_size = 512"))
		fail_msg("unexpected config error: %s", error);
	free(error);
}

/* ---- extensions ------------------------------------------------------------ */

static void test_wanted_features(void **state)
{
	uint64_t all = BLKSERV_CAP_FLUSH | BLKSERV_CAP_FUA | BLKSERV_CAP_TRIM | BLKSERV_CAP_WRITE_ZEROES;

	assert_int_equal(dblock_wanted_features(all), DBLOCK_FEATURE_FLUSH | DBLOCK_FEATURE_FUA |
							      DBLOCK_FEATURE_DISCARD | DBLOCK_FEATURE_WRITE_ZEROES);
	/* No FLUSH: no write cache, so no FUA either (write-through instead). */
	assert_int_equal(dblock_wanted_features(BLKSERV_CAP_WRITE_THROUGH | BLKSERV_CAP_FUA), 0);
	assert_int_equal(dblock_wanted_features(BLKSERV_CAP_FLUSH), DBLOCK_FEATURE_FLUSH);
	assert_int_equal(dblock_wanted_features(BLKSERV_CAP_READ_ONLY), DBLOCK_FEATURE_READ_ONLY);
	assert_int_equal(dblock_wanted_features(BLKSERV_CAP_TRIM), DBLOCK_FEATURE_DISCARD);
}

static void test_features_string(void **state)
{
	char buf[96];

	dblock_features_string(0, buf, sizeof(buf));
	assert_string_equal(buf, "none");
	dblock_features_string(DBLOCK_FEATURE__ALL, buf, sizeof(buf));
	assert_string_equal(buf, "flush fua discard write_zeroes read_only");
	dblock_features_string(DBLOCK_FEATURE_DISCARD, buf, sizeof(buf));
	assert_string_equal(buf, "discard");
}

/* ---- serving requests ------------------------------------------------------- */

struct serve_fixture {
	struct blkserv_device *dev;
	struct dblock d;
	struct dblock_thread t;
};

static struct serve_fixture *serve_setup(const char *size, const char *backend)
{
	struct serve_fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->dev = test_open_backend(config_with(size, "", backend), "d0");
	f->d.dev = f->dev;
	f->d.handle_id = 7;
	f->t.d = &f->d;
	assert_int_equal(blkserv_queue_new(f->dev, 1, 0, &f->t.q), 0);
	f->t.req = blkserv_queue_request(f->t.q, 0);
	assert_int_equal(dblock_thread_alloc(&f->t), 0);
	return f;
}

static void serve_teardown(struct serve_fixture *f)
{
	dblock_thread_free(&f->t);
	blkserv_queue_free(f->t.q);
	test_close_device(f->dev);
	free(f);
}

/* Fill the op as the module does: per-4K metadata for READ and WRITE. */
static void kernel_request(struct dblock_thread *t, uint32_t code, uint64_t start, uint64_t len, uint32_t flags)
{
	struct dblock_operation *o = t->op;
	bool data = code == DBLOCK_OP_KERNEL_READ_REQUEST || code == DBLOCK_OP_KERNEL_WRITE_REQUEST;
	uint32_t n = 0;

	memset(o, 0, sizeof(*o));
	o->handle_id = 7;
	o->operation_id = 0x1234;
	o->header.operation = code;
	o->header.flags = flags;
	o->header.size = code == DBLOCK_OP_KERNEL_WRITE_REQUEST ? len : 0;
	o->packet.request.total_length_of_all_bio_segments = len;
	if (data) {
		for (uint64_t off = 0; off < len; off += 4096, n++)
			o->metadata[n] = (struct dblock_segment){ start + off, len - off < 4096 ? len - off : 4096 };
	} else if (code != DBLOCK_OP_KERNEL_FLUSH_REQUEST) {
		o->metadata[n++] = (struct dblock_segment){ start, len };
	}
	o->packet.request.number_of_segments = n;
}

static void expect_answer(struct dblock_thread *t, uint32_t code, int error, uint64_t len)
{
	assert_int_equal(dblock_serve_op(t), 0);
	assert_int_equal(t->op->header.operation, code);
	assert_int_equal(t->op->error, error);
	assert_int_equal(t->op->handle_id, 7);
	assert_int_equal(t->op->operation_id, 0x1234);
	assert_int_equal(t->op->packet.response.total_length, error ? 0 : len);
	assert_int_equal(t->op->header.flags, 0);
}

static void fill_pattern(unsigned char *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (unsigned char)(i * 31 + seed + i / 4096);
}

static void write_then_read(struct dblock_thread *t, uint64_t start, uint64_t len, unsigned seed)
{
	unsigned char *want = malloc(len);

	assert_non_null(want);
	fill_pattern(want, len, seed);
	kernel_request(t, DBLOCK_OP_KERNEL_WRITE_REQUEST, start, len, 0);
	memcpy(t->op->data, want, len);
	expect_answer(t, DBLOCK_OP_WRITE_RESPONSE, 0, len);
	kernel_request(t, DBLOCK_OP_KERNEL_READ_REQUEST, start, len, 0);
	memset(t->op->data, 0xee, len);
	expect_answer(t, DBLOCK_OP_READ_RESPONSE, 0, len);
	assert_memory_equal(t->op->data, want, len);
	free(want);
}

static bool reads_zero(struct dblock_thread *t, uint64_t start, uint64_t len)
{
	kernel_request(t, DBLOCK_OP_KERNEL_READ_REQUEST, start, len, 0);
	memset(t->op->data, 0xee, len);
	expect_answer(t, DBLOCK_OP_READ_RESPONSE, 0, len);
	for (uint64_t i = 0; i < len; i++)
		if (t->op->data[i])
			return false;
	return true;
}

static void test_serve_read_write(void **state)
{
	struct serve_fixture *f = serve_setup("64M", "ramdisk");

	write_then_read(&f->t, 1 << 20, 64 << 10, 1);
	write_then_read(&f->t, 0, 4096, 2);
	write_then_read(&f->t, (64 << 20) - DBLOCK_MAX_DATA_BYTES, DBLOCK_MAX_DATA_BYTES, 3);
	assert_int_equal(f->t.counters.ops[BLKSERV_OP_WRITE], 3);
	assert_int_equal(f->t.counters.ops[BLKSERV_OP_READ], 3);
	assert_int_equal(f->t.counters.errors, 0);
	serve_teardown(f);
}

static void test_serve_split_segments(void **state)
{
	struct serve_fixture *f = serve_setup("64M", "ramdisk");
	struct dblock_operation *o = f->t.op;
	unsigned char want[8192];

	/* Two segments that are not contiguous: each is served where it says. */
	fill_pattern(want, sizeof(want), 9);
	kernel_request(&f->t, DBLOCK_OP_KERNEL_WRITE_REQUEST, 8 << 20, 8192, 0);
	o->metadata[1].start = 16 << 20;
	memcpy(o->data, want, sizeof(want));
	expect_answer(&f->t, DBLOCK_OP_WRITE_RESPONSE, 0, 8192);
	kernel_request(&f->t, DBLOCK_OP_KERNEL_READ_REQUEST, 16 << 20, 4096, 0);
	expect_answer(&f->t, DBLOCK_OP_READ_RESPONSE, 0, 4096);
	assert_memory_equal(o->data, want + 4096, 4096);
	assert_true(reads_zero(&f->t, (8 << 20) + 4096, 4096));
	serve_teardown(f);
}

static void test_serve_extensions(void **state)
{
	struct serve_fixture *f = serve_setup("64M", "ramdisk");

	write_then_read(&f->t, 2 << 20, 256 << 10, 4);
	kernel_request(&f->t, DBLOCK_OP_KERNEL_FLUSH_REQUEST, 0, 0, 0);
	expect_answer(&f->t, DBLOCK_OP_FLUSH_RESPONSE, 0, 0);
	kernel_request(&f->t, DBLOCK_OP_KERNEL_DISCARD_REQUEST, 2 << 20, 64 << 10, 0);
	expect_answer(&f->t, DBLOCK_OP_DISCARD_RESPONSE, 0, 64 << 10);
	assert_true(reads_zero(&f->t, 2 << 20, 64 << 10));
	kernel_request(&f->t, DBLOCK_OP_KERNEL_WRITE_ZEROES_REQUEST, (2 << 20) + (64 << 10), 64 << 10,
		       DBLOCK_REQ_NOUNMAP);
	expect_answer(&f->t, DBLOCK_OP_WRITE_ZEROES_RESPONSE, 0, 64 << 10);
	assert_true(reads_zero(&f->t, (2 << 20) + (64 << 10), 64 << 10));
	assert_false(reads_zero(&f->t, (2 << 20) + (128 << 10), 4096));
	kernel_request(&f->t, DBLOCK_OP_KERNEL_WRITE_REQUEST, 0, 4096, DBLOCK_REQ_FUA);
	expect_answer(&f->t, DBLOCK_OP_WRITE_RESPONSE, 0, 4096);
	assert_int_equal(f->t.counters.fua, 1);
	assert_int_equal(f->t.counters.ops[BLKSERV_OP_FLUSH], 1);
	assert_int_equal(f->t.counters.ops[BLKSERV_OP_TRIM], 1);
	assert_int_equal(f->t.counters.ops[BLKSERV_OP_WRITE_ZEROES], 1);
	serve_teardown(f);
}

static void test_serve_bad_requests(void **state)
{
	struct serve_fixture *f = serve_setup("64M", "ramdisk");
	struct dblock_operation *o = f->t.op;

	/* Past the end: the host refuses it; the kernel gets the error. */
	kernel_request(&f->t, DBLOCK_OP_KERNEL_READ_REQUEST, 64 << 20, 4096, 0);
	expect_answer(&f->t, DBLOCK_OP_READ_RESPONSE, -EINVAL, 0);
	kernel_request(&f->t, DBLOCK_OP_KERNEL_WRITE_REQUEST, (64 << 20) - 4096, 8192, 0);
	expect_answer(&f->t, DBLOCK_OP_WRITE_RESPONSE, -ENOSPC, 0);
	/* Segments that do not add up to the total. */
	kernel_request(&f->t, DBLOCK_OP_KERNEL_READ_REQUEST, 0, 8192, 0);
	o->packet.request.total_length_of_all_bio_segments = 4096;
	expect_answer(&f->t, DBLOCK_OP_READ_RESPONSE, -EINVAL, 0);
	kernel_request(&f->t, DBLOCK_OP_KERNEL_READ_REQUEST, 0, 4096, 0);
	o->packet.request.number_of_segments = 0;
	expect_answer(&f->t, DBLOCK_OP_READ_RESPONSE, -EINVAL, 0);
	kernel_request(&f->t, DBLOCK_OP_KERNEL_READ_REQUEST, 0, 4096, 0);
	o->packet.request.number_of_segments = DBLOCK_MAX_SEGMENTS + 1;
	expect_answer(&f->t, DBLOCK_OP_READ_RESPONSE, -EINVAL, 0);
	kernel_request(&f->t, DBLOCK_OP_KERNEL_DISCARD_REQUEST, 0, 4096, 0);
	o->packet.request.number_of_segments = 2;
	expect_answer(&f->t, DBLOCK_OP_DISCARD_RESPONSE, -EINVAL, 0);
	assert_int_equal(f->t.counters.errors, 6);
	serve_teardown(f);
}

static void test_serve_notices(void **state)
{
	struct serve_fixture *f = serve_setup("64M", "ramdisk");
	struct dblock_operation *o = f->t.op;

	kernel_request(&f->t, DBLOCK_OP_KERNEL_USERSPACE_EXIT, 0, 0, 0);
	assert_int_equal(dblock_serve_op(&f->t), DBLOCK_SERVE_EXIT);
	/* DETACH (ABI 2): the thread leaves as at destroy, the device stays. */
	kernel_request(&f->t, DBLOCK_OP_KERNEL_DETACHED, 0, 0, 0);
	assert_int_equal(dblock_serve_op(&f->t), DBLOCK_SERVE_EXIT);
	kernel_request(&f->t, DBLOCK_OP_KERNEL_BLOCK_FOR_REQUEST, 0, 0, 0);
	o->header.signal_number = 10;
	assert_int_equal(dblock_serve_op(&f->t), 0);
	assert_int_equal(o->header.operation, DBLOCK_OP_BLOCK_FOR_REQUEST);
	kernel_request(&f->t, 99, 0, 4096, 0);
	assert_int_equal(dblock_serve_op(&f->t), -EPROTO);
	assert_int_equal(o->header.operation, DBLOCK_OP_BLOCK_FOR_REQUEST);
	serve_teardown(f);
}

/* ---- the takeover state file ------------------------------------------------ */

static char *state_file(const char *text)
{
	char *path = NULL;
	FILE *f;

	assert_int_equal(dblock_state_path(test_tmpdir(), "d0", &path), 0);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static void test_state_roundtrip(void **state)
{
	struct dblock_state s = { .handle_id = 7, .size = 64 << 20, .block_size = 4096, .features = 0x1f, .pid = 42 };
	struct dblock_state r;
	char *path = NULL;

	snprintf(s.name, sizeof(s.name), "db0");
	assert_int_equal(dblock_state_path(test_tmpdir(), "d0", &path), 0);
	assert_non_null(strstr(path, "/dblock-d0.state"));
	assert_int_equal(dblock_state_write(path, &s), 0);
	memset(&r, 0, sizeof(r));
	assert_int_equal(dblock_state_read(path, &r), 0);
	assert_string_equal(r.name, "db0");
	assert_int_equal(r.handle_id, 7);
	assert_int_equal(r.size, 64 << 20);
	assert_int_equal(r.block_size, 4096);
	assert_int_equal(r.features, 0x1f);
	assert_int_equal(r.pid, 42);
	unlink(path);
	assert_int_equal(dblock_state_read(path, &r), -ENOENT);
	free(path);
}

/* A file that does not name the device fully is refused, never guessed. */
static void test_state_bad_files(void **state)
{
	static const char *const bad[] = {
		"name=db0\nhandle_id=7\nsize=4096\nblock_size=4096\n",             /* no features */
		"name=db0\nhandle_id=0\nsize=4096\nblock_size=4096\nfeatures=0\n", /* handle 0 */
		"name=db0\nhandle_id=x\nsize=4096\nblock_size=4096\nfeatures=0\n", /* not a number */
		"name=db0\nhandle_id=7\nsize=4096\nblock_size=4096\nfeatures=4294967296\n",
		"name=\nhandle_id=7\nsize=4096\nblock_size=4096\nfeatures=0\n", /* empty name */
		"name=0123456789abcdef0123456789abcdef\nhandle_id=7\nsize=1\nblock_size=4096\nfeatures=0\n",
		"garbage\n",
	};
	struct dblock_state r;

	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		char *path = state_file(bad[i]);

		assert_int_equal(dblock_state_read(path, &r), -EINVAL);
		unlink(path);
		free(path);
	}
	/* Comments, unknown keys (a newer daemon's) and no pid are fine. */
	char *path = state_file("# c\nname=db0\nhandle_id=3\nsize=8192\nblock_size=4096\nfeatures=1\nnew_key=1\n");
	assert_int_equal(dblock_state_read(path, &r), 0);
	assert_int_equal(r.handle_id, 3);
	assert_int_equal(r.pid, 0);
	unlink(path);
	free(path);
}

/* A backend that completes from another thread: the thread waits on its queue. */
static void test_serve_async_backend(void **state)
{
	struct serve_fixture *f = serve_setup("4M", "asyncmem");

	write_then_read(&f->t, 0, 64 << 10, 5);
	write_then_read(&f->t, (1 << 20) - 4096, 4096, 6);
	kernel_request(&f->t, DBLOCK_OP_KERNEL_FLUSH_REQUEST, 0, 0, 0);
	expect_answer(&f->t, DBLOCK_OP_FLUSH_RESPONSE, 0, 0);
	/* asyncmem has no TRIM: the host refuses it. */
	kernel_request(&f->t, DBLOCK_OP_KERNEL_DISCARD_REQUEST, 0, 4096, 0);
	expect_answer(&f->t, DBLOCK_OP_DISCARD_RESPONSE, -EOPNOTSUPP, 0);
	serve_teardown(f);
}

/* ---- start without the module ------------------------------------------------ */

static void test_start_without_module(void **state)
{
	struct blkserv_device *dev;
	struct config *c = NULL;
	char *error = NULL, *log_path, text[4096];
	int saved, fd, r;
	ssize_t n;

	if (access(DBLOCK_CONTROL_PATH, F_OK) == 0)
		skip(); /* the module is loaded here: the VM scenarios cover it */
	assert_int_equal(test_load_config(config_with("64M", "", "ramdisk"), &c, &error), 0);
	assert_int_equal(device_new(config_find_device(c, "d0"), test_plugin_dir(), &dev), 0);
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
	assert_non_null(strstr(text, "modprobe dblock"));
	assert_non_null(strstr(text, "insmod"));
	device_free(dev);
	config_free(c);
	free(log_path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_abi_layout),           cmocka_unit_test(test_option_defaults),
		cmocka_unit_test(test_option_values),        cmocka_unit_test(test_option_ranges),
		cmocka_unit_test(test_option_block_size),    cmocka_unit_test(test_wanted_features),
		cmocka_unit_test(test_features_string),      cmocka_unit_test(test_serve_read_write),
		cmocka_unit_test(test_serve_split_segments), cmocka_unit_test(test_serve_extensions),
		cmocka_unit_test(test_serve_bad_requests),   cmocka_unit_test(test_serve_notices),
		cmocka_unit_test(test_serve_async_backend),  cmocka_unit_test(test_state_roundtrip),
		cmocka_unit_test(test_state_bad_files),      cmocka_unit_test(test_start_without_module),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

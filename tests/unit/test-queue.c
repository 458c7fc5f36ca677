/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The host's data path with an asynchronous backend that completes from
 * other threads: remote completions, many requests in flight, FUA emulated
 * by a flush, write-through devices; and device start/stop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test-helpers.h"
#include "log.h"

#define ASYNC_CONFIG                                                                                                   \
	"device \"am\" {\n  frontend \"testfe\" { socket = \"/x\" }\n"                                                 \
	"  backend \"asyncmem\" { }\n}\n"

static unsigned stat_value(struct blkserv_device *dev, const char *key)
{
	char stats[256];
	const char *p;

	assert_int_equal(dev->backend->backend.get_stats(dev->backend_handle, stats, sizeof(stats)), 0);
	p = strstr(stats, key);
	assert_non_null(p);
	return (unsigned)strtoul(p + strlen(key) + 1, NULL, 10);
}

static void test_remote_completion(void **state)
{
	struct blkserv_device *dev = test_open_backend(ASYNC_CONFIG, "am");
	struct blkserv_queue *q;
	char in[4096], out[4096];

	assert_int_equal(blkserv_queue_new(dev, 8, 0, &q), 0);
	memset(in, 0x3c, sizeof(in));
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, 0, 8192, sizeof(in), in), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 8192, sizeof(out), out), 0);
	assert_memory_equal(in, out, sizeof(in));
	assert_int_equal(blkserv_queue_inflight(q), 0);
	blkserv_queue_free(q);
	test_close_device(dev);
}

struct many {
	int done;
	int failed;
};

static void many_done(struct blkserv_request *req, int result)
{
	struct many *m = req->frontend_data;

	m->done++;
	if (result < 0)
		m->failed++;
}

static void test_many_in_flight(void **state)
{
	struct blkserv_device *dev = test_open_backend(ASYNC_CONFIG, "am");
	struct blkserv_queue *q;
	static char bufs[16][4096], check[4096];
	struct many m = {};

	assert_int_equal(blkserv_queue_new(dev, 16, 0, &q), 0);
	for (uint32_t tag = 0; tag < 16; tag++) {
		struct blkserv_request *req = blkserv_queue_request(q, tag);
		memset(bufs[tag], (int)tag + 1, 4096);
		*req = (struct blkserv_request){ .op = BLKSERV_OP_WRITE,
						 .offset = tag * 4096ull,
						 .length = 4096,
						 .buf = bufs[tag],
						 .done = many_done,
						 .frontend_data = &m,
						 .queue = q,
						 .tag = tag };
		blkserv_submit(req);
	}
	assert_int_equal(blkserv_queue_request(q, 16) == NULL, 1);
	while (m.done < 16)
		assert_true(blkserv_queue_process(q, 1, 5000) >= 0);
	assert_int_equal(m.failed, 0);
	for (uint32_t tag = 0; tag < 16; tag++) {
		assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, tag * 4096ull, 4096, check), 0);
		assert_memory_equal(check, bufs[tag], 4096);
	}
	blkserv_queue_free(q);
	test_close_device(dev);
}

static void test_fua_emulated_by_flush(void **state)
{
	struct blkserv_device *dev = test_open_backend(ASYNC_CONFIG, "am");
	struct blkserv_queue *q;
	char buf[512] = { 1 };

	/* No native FUA, but a flush: FUA is served as write + flush. */
	assert_true(blkserv_device_caps(dev) & BLKSERV_CAP_FUA);
	assert_false(dev->native_caps & BLKSERV_CAP_FUA);
	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, 0, 0, sizeof(buf), buf), 0);
	assert_int_equal(stat_value(dev, "flushes"), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, BLKSERV_REQ_FUA, 0, sizeof(buf), buf), 0);
	assert_int_equal(stat_value(dev, "writes"), 2);
	assert_int_equal(stat_value(dev, "flushes"), 1);
	/* Write-through: every write is followed by a flush. */
	assert_int_equal(blkserv_device_require_write_through(dev), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, 0, 0, sizeof(buf), buf), 0);
	assert_int_equal(stat_value(dev, "flushes"), 2);
	/* Not supported by this backend: trim and write-zeroes never reach it. */
	assert_int_equal(test_io(q, BLKSERV_OP_TRIM, 0, 0, 512, NULL), -EOPNOTSUPP);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE_ZEROES, 0, 0, 512, NULL), -EOPNOTSUPP);
	blkserv_queue_free(q);
	test_close_device(dev);
}

/* An op number the host does not know is refused before the backend:
 * never served as a read or a write. */
static void test_unknown_op_refused(void **state)
{
	static const uint32_t ops[] = { BLKSERV_OP__MAX, 99, UINT32_MAX };
	struct blkserv_device *dev = test_open_backend(ASYNC_CONFIG, "am");
	struct blkserv_queue *q;
	char buf[512] = { 7 };

	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		assert_int_equal(test_io(q, ops[i], 0, 0, sizeof(buf), buf), -EINVAL);
	assert_int_equal(stat_value(dev, "writes"), 0);
	assert_int_equal(blkserv_queue_inflight(q), 0);
	blkserv_queue_free(q);
	test_close_device(dev);
}

/* A backend returning a value no callback may (7: not 0, -errno or
 * BLKSERV_ASYNC) fails the request with EIO, every time, and the bug is
 * logged once for the device, not once per request. */
static void test_bad_return_is_eio(void **state)
{
	struct blkserv_device *dev;
	struct blkserv_queue *q;
	char buf[512] = { 1 }, *logged;

	/* The host prefixes a plugin's own messages with its name. */
	log_capture_begin();
	dev = test_open_backend(
		"device \"br\" {\n  frontend \"testfe\" { socket = \"/x\" }\n  backend \"badret\" { }\n}\n", "br");
	logged = log_capture_end();
	assert_non_null(logged);
	assert_string_equal(logged, "badret: opened (a fixture's error message)");
	free(logged);
	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);
	log_capture_begin();
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, 0, 0, sizeof(buf), buf), -EIO);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, 0, 512, sizeof(buf), buf), -EIO);
	logged = log_capture_end();
	assert_non_null(logged);
	assert_non_null(strstr(logged, "backend badret: write returned 7"));
	assert_null(strstr(logged, "; ")); /* one message for both requests */
	free(logged);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 0, sizeof(buf), buf), 0); /* a valid 0 still is */
	assert_int_equal(blkserv_queue_inflight(q), 0);
	blkserv_queue_free(q);
	test_close_device(dev);
}

/* Two queues, each on its own thread as a frontend runs them, read at the
 * same time; the backend counts how many of its reads overlapped. */
static void *reader_main(void *arg)
{
	struct blkserv_device *dev = arg;
	struct blkserv_queue *q;
	char buf[512];

	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);
	for (int i = 0; i < 25; i++)
		assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 0, sizeof(buf), buf), 0);
	blkserv_queue_free(q);
	return NULL;
}

static unsigned max_inside_with(const char *backend)
{
	char text[256];
	struct blkserv_device *dev;
	pthread_t t[2];
	unsigned n;

	snprintf(text, sizeof(text),
		 "device \"t\" {\n  frontend \"testfe\" { socket = \"/x\" }\n  backend \"%s\" { }\n}\n", backend);
	dev = test_open_backend(text, "t");
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, reader_main, dev), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	n = stat_value(dev, "max_inside");
	test_close_device(dev);
	return n;
}

static void test_thread_model(void **state)
{
	/* The default lets two queues' threads in at once (this is what makes
	 * the next check able to fail)... */
	assert_int_equal(max_inside_with("overlap"), 2);
	/* ...SERIALIZE never does. */
	assert_int_equal(max_inside_with("serial"), 1);
}

static void test_device_start_stop(void **state)
{
	struct config *c = NULL;
	struct blkserv_device *dev;
	char *error = NULL, *logged;
	const char *text =
		"device \"ok\" {\n  size = 1M\n  frontend \"testfe\" { socket = \"/x\" }\n"
		"  backend \"ramdisk\" { }\n}\n"
		"device \"bad\" {\n  size = 1M\n  frontend \"testfe\" { socket = \"/x\"\n fail_start = true }\n"
		"  backend \"ramdisk\" { }\n}\n";

	if (test_load_config(text, &c, &error) < 0)
		fail_msg("config: %s", error);
	/* testfe's start writes and reads back through the backend. */
	assert_int_equal(device_new(config_find_device(c, "ok"), test_plugin_dir(), &dev), 0);
	assert_int_equal(device_start(dev), 0);
	assert_int_equal(dev->state, DEVICE_LIVE);
	assert_string_equal(dev->kernel_name, "testfe");
	assert_int_equal(device_stop(dev, 0), 0);
	assert_null(dev->backend_handle);
	device_free(dev);
	/* A failing start leaves nothing open. */
	assert_int_equal(device_new(config_find_device(c, "bad"), test_plugin_dir(), &dev), 0);
	log_capture_begin();
	assert_int_equal(device_start(dev), -EIO);
	logged = log_capture_end();
	/* testfe names itself, as plugins did before the host did: not twice. */
	assert_non_null(logged);
	assert_non_null(strstr(logged, "testfe: failing start as configured"));
	assert_null(strstr(logged, "testfe: testfe:"));
	free(logged);
	assert_null(dev->backend_handle);
	assert_null(dev->frontend_handle);
	device_free(dev);
	config_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_remote_completion),     cmocka_unit_test(test_many_in_flight),
		cmocka_unit_test(test_fua_emulated_by_flush), cmocka_unit_test(test_unknown_op_refused),
		cmocka_unit_test(test_bad_return_is_eio),     cmocka_unit_test(test_thread_model),
		cmocka_unit_test(test_device_start_stop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

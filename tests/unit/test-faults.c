/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fault injection (a device's faults section): every kind of fault fires
 * where and when configured, data outside the faults is intact, a failed
 * flush stays failed, a delay does not hold up the queue, each kind is
 * logged once with the device name. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "faults.h"
#include "log.h"
#include "test-helpers.h"

#define KiB 1024u
#define MiB (1024u * 1024u)

/* A 4 MiB ramdisk (or @backend) device "f0" with @faults in its faults section. */
static struct blkserv_device *open_faulty(const char *backend, const char *faults)
{
	char text[2048];

	snprintf(text, sizeof(text),
		 "device \"f0\" {\n  size = 4M\n  block_size = 512\n"
		 "  frontend \"testfe\" { socket = \"/x\" }\n  backend \"%s\" { }\n"
		 "  faults {\n%s\n  }\n}\n",
		 backend, faults);
	return test_open_backend(text, "f0");
}

static void fill(char *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)((i * 31 + seed * 7 + 1) & 0xff);
}

/* Write a pattern over the whole device (before faults that hit writes). */
static void write_pattern(struct blkserv_queue *q, uint64_t size)
{
	static char buf[64 * KiB];

	for (uint64_t off = 0; off < size; off += sizeof(buf)) {
		fill(buf, sizeof(buf), (unsigned)(off / sizeof(buf)));
		assert_int_equal(test_io(q, BLKSERV_OP_WRITE, 0, off, sizeof(buf), buf), 0);
	}
}

/* The pattern of write_pattern() is at [off, off + len). */
static void expect_pattern(struct blkserv_queue *q, uint64_t off, uint64_t len)
{
	static char got[64 * KiB], want[64 * KiB];

	assert_true(len <= sizeof(got) && off % sizeof(want) + len <= sizeof(want));
	fill(want, sizeof(want), (unsigned)(off / sizeof(want)));
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, off, len, got), 0);
	assert_memory_equal(got, want + off % sizeof(want), len);
}

static void test_no_section_no_faults(void **state)
{
	struct blkserv_device *dev = test_open_backend(
		"device \"f0\" {\n  size = 1M\n  frontend \"testfe\" { socket = \"/x\" }\n  backend \"ramdisk\" { }\n}\n",
		"f0");

	assert_null(dev->faults);
	assert_false(dev->config->faults.enabled);
	test_close_device(dev);
}

static void test_read_every(void **state)
{
	struct blkserv_device *dev = open_faulty("ramdisk", "read_error_every = 3");
	struct blkserv_queue *q;
	char buf[4096];

	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);
	write_pattern(q, 4 * MiB);
	for (int i = 1; i <= 9; i++) {
		int r = test_io(q, BLKSERV_OP_READ, 0, 0, sizeof(buf), buf);
		assert_int_equal(r, i % 3 == 0 ? -EIO : 0);
	}
	expect_pattern(q, 0, 4096); /* the 10th read */
	assert_int_equal(faults_injected(dev->faults, FAULT_READ_EVERY), 3);
	blkserv_queue_free(q);
	test_close_device(dev);
}

static void test_read_range(void **state)
{
	struct blkserv_device *dev = open_faulty("ramdisk", "read_error_offset = 1M\nread_error_length = 4K");
	struct blkserv_queue *q;
	char buf[8192];

	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);
	write_pattern(q, 4 * MiB);
	/* Touching the range fails, from either side. */
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 1 * MiB, 512, buf), -EIO);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 1 * MiB - 512, 1024, buf), -EIO);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 1 * MiB + 4 * KiB - 512, 8192, buf), -EIO);
	/* Right next to it, everything reads back intact. */
	expect_pattern(q, 1 * MiB - 8 * KiB, 8 * KiB);
	expect_pattern(q, 1 * MiB + 4 * KiB, 8 * KiB);
	expect_pattern(q, 0, 4096);
	expect_pattern(q, 4 * MiB - 4096, 4096);
	assert_int_equal(faults_injected(dev->faults, FAULT_READ_RANGE), 3);
	/* Writes are not affected. */
	fill(buf, 4096, 99);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, 0, 1 * MiB, 4096, buf), 0);
	blkserv_queue_free(q);
	test_close_device(dev);
}

/* A read offered for sendfile (BLKSERV_REQ_MAP_OK) on a device with
 * faults is never answered with the ramdisk's file: the fault reaches the
 * client, and a good read comes back in the buffer. */
static void test_read_range_not_mapped(void **state)
{
	struct blkserv_device *dev = open_faulty("ramdisk", "read_error_offset = 1M\nread_error_length = 4K");
	struct blkserv_queue *q;
	const struct blkserv_request *req;
	static char buf[64 * KiB], want[64 * KiB];

	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);
	req = blkserv_queue_request(q, 0);
	write_pattern(q, 4 * MiB);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, BLKSERV_REQ_MAP_OK, 1 * MiB - 32 * KiB, sizeof(buf), buf), -EIO);
	assert_int_equal(req->map_fd, -1);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, BLKSERV_REQ_MAP_OK, 2 * MiB, sizeof(buf), buf), 0);
	assert_int_equal(req->map_fd, -1);
	fill(want, sizeof(want), (unsigned)(2 * MiB / sizeof(want)));
	assert_memory_equal(buf, want, sizeof(buf));
	blkserv_queue_free(q);
	test_close_device(dev);
}

static void test_read_range_to_the_end(void **state)
{
	struct blkserv_device *dev = open_faulty("ramdisk", "read_error_offset = 3M");
	struct blkserv_queue *q;
	char buf[4096];

	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);
	write_pattern(q, 4 * MiB);
	expect_pattern(q, 3 * MiB - 4096, 4096);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 3 * MiB, 4096, buf), -EIO);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 4 * MiB - 512, 512, buf), -EIO);
	blkserv_queue_free(q);
	test_close_device(dev);
}

static void test_write_range(void **state)
{
	struct blkserv_device *dev = open_faulty("ramdisk", "write_error_offset = 2M\nwrite_error_length = 64K");
	struct blkserv_queue *q;
	char buf[4096];

	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);
	/* The pattern goes everywhere but the range (64 KiB pieces). */
	write_pattern(q, 2 * MiB);
	fill(buf, sizeof(buf), 5);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, 0, 2 * MiB, 4096, buf), -EIO);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, 0, 2 * MiB + 60 * KiB, 8192, buf), -EIO);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE_ZEROES, 0, 2 * MiB - 512, 1024, NULL), -EIO);
	/* The failed writes left the range as it was: never written, zeros. */
	memset(buf, 0x55, sizeof(buf));
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 2 * MiB, 4096, buf), 0);
	for (size_t i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0);
	expect_pattern(q, 2 * MiB - 4096, 4096);
	/* Right after the range, writes work. */
	fill(buf, sizeof(buf), 6);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, 0, 2 * MiB + 64 * KiB, 4096, buf), 0);
	assert_int_equal(faults_injected(dev->faults, FAULT_WRITE_RANGE), 3);
	blkserv_queue_free(q);
	test_close_device(dev);
}

static void test_write_every_and_after(void **state)
{
	struct blkserv_device *dev = open_faulty("ramdisk", "write_error_every = 4\nwrite_error_after = 10");
	struct blkserv_queue *q;
	char buf[4096];

	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);
	fill(buf, sizeof(buf), 1);
	for (int i = 1; i <= 14; i++) {
		int r = test_io(q, BLKSERV_OP_WRITE, 0, (uint64_t)i * 4096, sizeof(buf), buf);
		assert_int_equal(r, i > 10 || i % 4 == 0 ? -EIO : 0);
	}
	assert_int_equal(faults_injected(dev->faults, FAULT_WRITE_EVERY), 2);
	assert_int_equal(faults_injected(dev->faults, FAULT_WRITE_AFTER), 4);
	/* Reads still work. */
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 4096, sizeof(buf), buf), 0);
	blkserv_queue_free(q);
	test_close_device(dev);
}

static void test_enospc(void **state)
{
	struct blkserv_device *dev = open_faulty("ramdisk", "enospc_after = 10K");
	struct blkserv_queue *q;
	char buf[4096];

	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);
	fill(buf, sizeof(buf), 2);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, 0, 0, 4096, buf), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE_ZEROES, 0, 8192, 4096, NULL), 0);
	/* 8 KiB written: 4 KiB more would pass 10 KiB; 2 KiB fits exactly. */
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, 0, 16384, 4096, buf), -ENOSPC);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, 0, 16384, 2048, buf), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, 0, 20480, 512, buf), -ENOSPC);
	assert_int_equal(faults_injected(dev->faults, FAULT_ENOSPC), 2);
	/* What was written reads back. */
	memset(buf, 0, sizeof(buf));
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 0, 4096, buf), 0);
	char want[4096];
	fill(want, sizeof(want), 2);
	assert_memory_equal(buf, want, sizeof(want));
	blkserv_queue_free(q);
	test_close_device(dev);
}

/* A failed flush stays failed: flushes and FUA writes fail from then on;
 * plain writes and reads go on (the data is still served). */
static void check_sticky_flush(const char *backend, bool emulated_fua)
{
	struct blkserv_device *dev = open_faulty(backend, "flush_error_after = 2");
	struct blkserv_queue *q;
	char buf[4096], got[4096];

	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);
	fill(buf, sizeof(buf), 3);
	assert_int_equal(test_io(q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), 0);
	/* Emulated FUA is a write, then the 2nd flush. */
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, BLKSERV_REQ_FUA, 0, 4096, buf), 0);
	if (!emulated_fua)
		assert_int_equal(test_io(q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(test_io(q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), -EIO);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, BLKSERV_REQ_FUA, 4096, 4096, buf), -EIO);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, 0, 8192, 4096, buf), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 8192, 4096, got), 0);
	assert_memory_equal(buf, got, sizeof(buf));
	assert_true(atomic_load(&dev->faults->flush_failed));
	blkserv_queue_free(q);
	test_close_device(dev);
}

static void test_sticky_flush_native_fua(void **state)
{
	check_sticky_flush("ramdisk", false);
}

static void test_sticky_flush_emulated_fua(void **state)
{
	check_sticky_flush("asyncmem", true);
}

struct probe {
	bool done;
	int result;
};

static void probe_done(struct blkserv_request *req, int result)
{
	struct probe *p = req->frontend_data;

	p->done = true;
	p->result = result;
}

static void submit(struct blkserv_queue *q, uint32_t tag, uint32_t op, uint64_t off, void *buf, struct probe *p)
{
	struct blkserv_request *req = blkserv_queue_request(q, tag);

	*p = (struct probe){ 0 };
	req->op = op;
	req->flags = 0;
	req->offset = off;
	req->length = 4096;
	req->buf = buf;
	req->done = probe_done;
	req->frontend_data = p;
	blkserv_submit(req);
}

/* A delayed request waits on the ring: the queue serves others meanwhile. */
static void test_delay_does_not_block_queue(void **state)
{
	struct blkserv_device *dev = open_faulty("ramdisk", "delay_ms = 300\ndelay_every = 2");
	struct blkserv_queue *q;
	static char a[4096], b[4096], c[4096];
	struct probe pa, pb, pc;

	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);
	fill(a, sizeof(a), 7);
	submit(q, 0, BLKSERV_OP_WRITE, 0, a, &pa); /* 1st request: not delayed */
	assert_true(pa.done);
	submit(q, 1, BLKSERV_OP_WRITE, 4096, a, &pb); /* 2nd: waits 300 ms */
	submit(q, 2, BLKSERV_OP_READ, 0, c, &pc);     /* 3rd: served at once */
	assert_true(pc.done);
	assert_int_equal(pc.result, 0);
	assert_false(pb.done);
	assert_int_equal(blkserv_queue_inflight(q), 1);
	while (!pb.done)
		assert_true(blkserv_queue_process(q, 1, 10000) >= 0);
	assert_int_equal(pb.result, 0);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 4096, sizeof(b), b), 0); /* 4th: delayed, then read */
	assert_memory_equal(a, b, sizeof(a));
	assert_int_equal(faults_injected(dev->faults, FAULT_DELAY), 2);
	assert_int_equal(faults_injected_total(dev->faults), 0);
	blkserv_queue_free(q);
	test_close_device(dev);
}

/* Delays with a backend that completes on other threads, and an error
 * after the delay: the request waits, then fails. */
static void test_delay_async_backend(void **state)
{
	struct blkserv_device *dev = open_faulty("asyncmem", "delay_ms = 5\nread_error_every = 2");
	struct blkserv_queue *q;
	char in[4096], out[4096];

	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);
	fill(in, sizeof(in), 9);
	assert_int_equal(test_io(q, BLKSERV_OP_WRITE, BLKSERV_REQ_FUA, 4096, sizeof(in), in), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 4096, sizeof(out), out), 0);
	assert_memory_equal(in, out, sizeof(in));
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 4096, sizeof(out), out), -EIO);
	assert_int_equal(faults_injected(dev->faults, FAULT_DELAY), 3);
	assert_int_equal(blkserv_queue_inflight(q), 0);
	blkserv_queue_free(q);
	test_close_device(dev);
}

static void test_trigger(void **state)
{
	char trigger[256], faults[512];
	struct blkserv_device *dev;
	struct blkserv_queue *q;
	char buf[4096];
	int fd;

	snprintf(trigger, sizeof(trigger), "%s/fail-now", test_tmpdir());
	snprintf(faults, sizeof(faults), "read_error_every = 1\nflush_error_after = 0\ntrigger = \"%s\"", trigger);
	dev = open_faulty("ramdisk", faults);
	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 0, sizeof(buf), buf), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), 0);
	fd = open(trigger, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 0, sizeof(buf), buf), -EIO);
	assert_int_equal(test_io(q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), -EIO);
	assert_int_equal(unlink(trigger), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 0, sizeof(buf), buf), 0);
	/* The failed flush stays failed without the trigger. */
	assert_int_equal(test_io(q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), -EIO);
	blkserv_queue_free(q);
	test_close_device(dev);
}

/* Count the lines of @path containing @needle. */
static int count_lines(const char *path, const char *needle)
{
	FILE *f = fopen(path, "r");
	char line[4096];
	int n = 0;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

/* Each kind of fault is logged once, with the device name, however often
 * it fires; the summary at the end counts them all. */
static void test_logged_once(void **state)
{
	char *path = test_write_file("stderr.log", "");
	struct blkserv_device *dev;
	struct blkserv_queue *q;
	int saved = dup(2), fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	char buf[4096] = { 0 };

	assert_true(saved >= 0 && fd >= 0);
	log_setup(LOG_TARGET_STDERR);
	fflush(stderr);
	assert_int_equal(dup2(fd, 2), 2);
	dev = open_faulty("ramdisk", "read_error_every = 1\nwrite_error_every = 2\nflush_error_after = 0");
	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);
	for (int i = 0; i < 20; i++) {
		assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 0, sizeof(buf), buf), -EIO);
		(void)test_io(q, BLKSERV_OP_WRITE, 0, 0, sizeof(buf), buf);
		assert_int_equal(test_io(q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), -EIO);
	}
	blkserv_queue_free(q);
	test_close_device(dev);
	fflush(stderr);
	assert_int_equal(dup2(saved, 2), 2);
	close(saved);
	close(fd);
	assert_int_equal(count_lines(path, "blkservd: f0: fault injection is on (for testing only"), 1);
	assert_int_equal(
		count_lines(
			path,
			"blkservd: f0: fault injection: read of 4096 bytes at offset 0 fails with EIO (read_error_every)"),
		1);
	assert_int_equal(
		count_lines(
			path,
			"blkservd: f0: fault injection: write of 4096 bytes at offset 0 fails with EIO (write_error_every)"),
		1);
	assert_int_equal(
		count_lines(
			path,
			"blkservd: f0: fault injection: flush of 0 bytes at offset 0 fails with EIO (flush_error_after)"),
		1);
	assert_int_equal(count_lines(path, "fault injection: "), 4);
	assert_int_equal(
		count_lines(
			path,
			"blkservd: f0: fault injection: 50 errors injected (20 read_error_every, 10 write_error_every, 20 flush_error_after), 0 requests delayed"),
		1);
	free(path);
}

static void test_config_values(void **state)
{
	struct config *c = NULL;
	char *error = NULL;
	const char *text = "device \"f0\" {\n  size = 4M\n  frontend \"testfe\" { socket = \"/x\" }\n"
			   "  backend \"ramdisk\" { }\n  faults {\n    read_error_every = 10\n"
			   "    write_error_offset = 1M\n    write_error_length = 4K\n    flush_error_after = 0\n"
			   "    enospc_after = 64M\n    delay_ms = 50\n    trigger = \"/run/x\"\n  }\n}\n"
			   "device \"f1\" {\n  size = 4M\n  frontend \"testfe\" { socket = \"/x\" }\n"
			   "  backend \"ramdisk\" { }\n  faults { }\n}\n";
	const struct fault_config *fc;

	if (test_load_config(text, &c, &error) < 0)
		fail_msg("rejected: %s", error);
	fc = &config_find_device(c, "f0")->faults;
	assert_true(fc->enabled);
	assert_int_equal(fc->read_error_every, 10);
	assert_int_equal(fc->write_error_offset, 1 * MiB);
	assert_int_equal(fc->write_error_length, 4 * KiB);
	assert_int_equal(fc->flush_error_after, 0);
	assert_int_equal(fc->enospc_after, 64 * MiB);
	assert_int_equal(fc->delay_ms, 50);
	assert_true(fc->delay_every == FAULT_OFF);
	assert_true(fc->write_error_every == FAULT_OFF);
	assert_string_equal(fc->trigger, "/run/x");
	fc = &config_find_device(c, "f1")->faults;
	assert_true(fc->enabled);
	assert_true(fc->read_error_every == FAULT_OFF);
	/* A changed faults section is a changed device (a reload restarts it). */
	assert_false(device_config_equal(config_find_device(c, "f0"), config_find_device(c, "f1")));
	config_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_section_no_faults),
		cmocka_unit_test(test_read_every),
		cmocka_unit_test(test_read_range),
		cmocka_unit_test(test_read_range_not_mapped),
		cmocka_unit_test(test_read_range_to_the_end),
		cmocka_unit_test(test_write_range),
		cmocka_unit_test(test_write_every_and_after),
		cmocka_unit_test(test_enospc),
		cmocka_unit_test(test_sticky_flush_native_fua),
		cmocka_unit_test(test_sticky_flush_emulated_fua),
		cmocka_unit_test(test_delay_does_not_block_queue),
		cmocka_unit_test(test_delay_async_backend),
		cmocka_unit_test(test_trigger),
		cmocka_unit_test(test_logged_once),
		cmocka_unit_test(test_config_values),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

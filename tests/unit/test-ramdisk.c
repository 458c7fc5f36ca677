/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The ramdisk backend through the host's request path: data, sparseness,
 * trim, write-zeroes, and the range checks at and past the end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test-helpers.h"

#define SIZE_1G (1ull << 30)
#define CONFIG(size, ro)                                                                                               \
	"device \"rd\" {\n  size = " size "\n  read_only = " ro "\n"                                                   \
	"  frontend \"testfe\" { socket = \"/x\" }\n  backend \"ramdisk\" { }\n}\n"

struct fixture {
	struct blkserv_device *dev;
	struct blkserv_queue *q;
	char *a, *b;
};

static int setup_dev(void **state, const char *text)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->dev = test_open_backend(text, "rd");
	assert_int_equal(blkserv_queue_new(f->dev, 4, 0, &f->q), 0);
	f->a = calloc(1, 1 << 20); /* written before it is filled, by some tests */
	f->b = calloc(1, 1 << 20);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_dev(state, CONFIG("1G", "false"));
}

static int setup_ro(void **state)
{
	return setup_dev(state, CONFIG("1M", "true"));
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	blkserv_queue_free(f->q);
	test_close_device(f->dev);
	free(f->a);
	free(f->b);
	free(f);
	return 0;
}

static void fill(char *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)(seed * 131 + i * 7 + (i >> 9));
}

static bool all_zero(const char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i])
			return false;
	return true;
}

static uint64_t allocated_bytes(struct blkserv_device *dev)
{
	char stats[256];
	const char *p;

	assert_int_equal(dev->backend->backend.get_stats(dev->backend_handle, stats, sizeof(stats)), 0);
	p = strstr(stats, "allocated_bytes=");
	assert_non_null(p);
	return strtoull(p + strlen("allocated_bytes="), NULL, 10);
}

static void test_write_read_back(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(blkserv_device_size(f->dev), SIZE_1G);
	fill(f->a, 1 << 20, 1);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, 4096, 1 << 20, f->a), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 4096, 1 << 20, f->b), 0);
	assert_memory_equal(f->a, f->b, 1 << 20);
	/* Unaligned, small, overlapping: the last write wins. */
	fill(f->a, 777, 2);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, BLKSERV_REQ_FUA, 4096 + 1001, 777, f->a), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 4096 + 1001, 777, f->b), 0);
	assert_memory_equal(f->a, f->b, 777);
	assert_int_equal(test_io(f->q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), 0);
}

static void test_unwritten_reads_zero_and_sparse(void **state)
{
	struct fixture *f = *state;

	memset(f->b, 0xff, 65536);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, SIZE_1G - 65536, 65536, f->b), 0);
	assert_true(all_zero(f->b, 65536));
	fill(f->a, 4096, 3);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, 512ull << 20, 4096, f->a), 0);
	/* 1 GiB device, 4 KiB written: memory is used only where written. */
	assert_true(allocated_bytes(f->dev) <= 64 * 1024);
}

static void test_trim_frees_and_zeroes(void **state)
{
	struct fixture *f = *state;
	uint64_t before;

	fill(f->a, 1 << 20, 4);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, 8 << 20, 1 << 20, f->a), 0);
	before = allocated_bytes(f->dev);
	assert_true(before >= 1 << 20);
	assert_int_equal(test_io(f->q, BLKSERV_OP_TRIM, 0, 8 << 20, 1 << 20, NULL), 0);
	assert_true(allocated_bytes(f->dev) <= before - (1 << 20));
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 8 << 20, 1 << 20, f->b), 0);
	assert_true(all_zero(f->b, 1 << 20));
}

static void test_write_zeroes(void **state)
{
	struct fixture *f = *state;

	fill(f->a, 65536, 5);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, 0, 65536, f->a), 0);
	/* Zero the middle, with and without NO_HOLE; the edges stay. */
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE_ZEROES, 0, 4096, 8192, NULL), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE_ZEROES, BLKSERV_REQ_NO_HOLE, 16384, 4096, NULL), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 0, 65536, f->b), 0);
	assert_memory_equal(f->b, f->a, 4096);
	assert_true(all_zero(f->b + 4096, 8192));
	assert_memory_equal(f->b + 12288, f->a + 12288, 4096);
	assert_true(all_zero(f->b + 16384, 4096));
	assert_memory_equal(f->b + 20480, f->a + 20480, 65536 - 20480);
}

static void test_range_checks(void **state)
{
	struct fixture *f = *state;
	const uint64_t end = SIZE_1G;

	/* The last block is fine. */
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, end - 4096, 4096, f->a), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, end - 4096, 4096, f->b), 0);
	/* One byte past the end: reads and trims EINVAL, writes ENOSPC. */
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, end - 4095, 4096, f->b), -EINVAL);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, end - 4095, 4096, f->a), -ENOSPC);
	assert_int_equal(test_io(f->q, BLKSERV_OP_TRIM, 0, end - 4095, 4096, NULL), -EINVAL);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE_ZEROES, 0, end, 512, NULL), -ENOSPC);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, end, 1, f->b), -EINVAL);
	/* Offsets near 2^64 must not wrap around. */
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, UINT64_MAX - 4095, 4096, f->b), -EINVAL);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, UINT64_MAX - 511, 4096, f->a), -ENOSPC);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 4096, UINT64_MAX, f->b), -EINVAL);
	assert_int_equal(test_io(f->q, BLKSERV_OP_TRIM, 0, 1, UINT64_MAX, NULL), -EINVAL);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE_ZEROES, 0, UINT64_MAX, UINT64_MAX, NULL), -ENOSPC);
	/* Zero length, oversize, unknown op and flags. */
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 0, 0, f->b), -EINVAL);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 0, BLKSERV_MAX_IO_BYTES + 512ull, f->b), -EINVAL);
	assert_int_equal(test_io(f->q, 99, 0, 0, 512, f->b), -EINVAL);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 1u << 7, 0, 512, f->a), -EINVAL);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, BLKSERV_REQ_NO_HOLE, 0, 512, f->a), -EINVAL);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, BLKSERV_REQ_FUA, 0, 512, f->b), -EINVAL);
	/* Nothing past the end was written: the last block still reads back. */
	fill(f->a, 4096, 9);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, end - 4096, 4096, f->a), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, end - 4096, 4096, f->b), 0);
	assert_memory_equal(f->a, f->b, 4096);
}

static void test_read_only(void **state)
{
	struct fixture *f = *state;
	uint64_t caps = blkserv_device_caps(f->dev);

	assert_true(caps & BLKSERV_CAP_READ_ONLY);
	assert_false(caps & BLKSERV_CAP_TRIM);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, 0, 512, f->a), -EPERM);
	assert_int_equal(test_io(f->q, BLKSERV_OP_TRIM, 0, 0, 512, NULL), -EPERM);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE_ZEROES, 0, 0, 512, NULL), -EPERM);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 0, 512, f->b), 0);
	assert_true(all_zero(f->b, 512));
}

static void test_stats_count(void **state)
{
	struct fixture *f = *state;
	struct io_stats s;

	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, 0, 4096, f->a), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, 0, 4096, f->b), 0);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, SIZE_1G, 4096, f->b), -EINVAL);
	device_get_stats(f->dev, &s);
	assert_int_equal(s.op[BLKSERV_OP_WRITE].ops, 1);
	assert_int_equal(s.op[BLKSERV_OP_WRITE].bytes, 4096);
	assert_int_equal(s.op[BLKSERV_OP_READ].ops, 2);
	assert_int_equal(s.op[BLKSERV_OP_READ].errors, 1);
	assert_int_equal(s.inflight, 0);
	assert_true(stats_percentile(&s.op[BLKSERV_OP_READ], 99) > 0);
}

/* A READ that may be answered with a file range (BLKSERV_REQ_MAP_OK): the
 * ramdisk names its memfd and the offset, the buffer stays untouched, and
 * the range holds the bytes; without the flag the buffer is filled. */
static void test_read_map(void **state)
{
	struct fixture *f = *state;
	const struct blkserv_request *req = blkserv_queue_request(f->q, 0);
	const uint64_t off = 8u << 20;
	struct io_stats s;

	fill(f->a, 1 << 20, 11);
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, 0, off, 1 << 20, f->a), 0);
	assert_int_equal(req->map_fd, -1);
	memset(f->b, 0xee, 1 << 20);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, BLKSERV_REQ_MAP_OK, off + 4096, 65536, f->b), 0);
	assert_true(req->map_fd >= 0);
	assert_int_equal(req->map_offset, off + 4096);
	for (size_t i = 0; i < 65536; i++)
		assert_int_equal((unsigned char)f->b[i], 0xee);
	assert_int_equal(pread(req->map_fd, f->b, 65536, (off_t)req->map_offset), 65536);
	assert_memory_equal(f->b, f->a + 4096, 65536);
	/* Without the flag: into the buffer, no file range. */
	memset(f->b, 0xee, 65536);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, 0, off + 4096, 65536, f->b), 0);
	assert_int_equal(req->map_fd, -1);
	assert_memory_equal(f->b, f->a + 4096, 65536);
	/* The flag is for reads only, and a bad range is refused first. */
	assert_int_equal(test_io(f->q, BLKSERV_OP_WRITE, BLKSERV_REQ_MAP_OK, 0, 4096, f->a), -EINVAL);
	assert_int_equal(test_io(f->q, BLKSERV_OP_TRIM, BLKSERV_REQ_MAP_OK, 0, 4096, NULL), -EINVAL);
	assert_int_equal(test_io(f->q, BLKSERV_OP_READ, BLKSERV_REQ_MAP_OK, SIZE_1G - 4095, 4096, f->b), -EINVAL);
	assert_int_equal(req->map_fd, -1);
	/* Counted as a read, and as one answered with a file range. */
	device_get_stats(f->dev, &s);
	assert_int_equal(s.op[BLKSERV_OP_READ].ops, 3);
	assert_int_equal(s.op[BLKSERV_OP_READ].bytes, 2 * 65536);
	assert_int_equal(s.reads_mapped, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_write_read_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unwritten_reads_zero_and_sparse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_trim_frees_and_zeroes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_zeroes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_range_checks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only, setup_ro, teardown),
		cmocka_unit_test_setup_teardown(test_stats_count, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_map, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

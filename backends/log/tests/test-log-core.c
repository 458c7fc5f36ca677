/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The log backend's building blocks: crc32c against known vectors (both
 * implementations), the index against a byte-by-byte model, and the record
 * format's detection of every single-bit error in a header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <errno.h>

#include "crc32c.h"
#include "extent-map.h"
#include "format.h"

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);

static void check_vectors(crc_fn f)
{
	unsigned char buf[32];

	/* RFC 3720 (iSCSI) appendix B.4 and the usual check value. */
	assert_int_equal(f(0, "123456789", 9), 0xE3069283u);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(f(0, buf, 32), 0x8A9136AAu);
	memset(buf, 0xff, sizeof(buf));
	assert_int_equal(f(0, buf, 32), 0x62A8AB43u);
	for (int i = 0; i < 32; i++)
		buf[i] = (unsigned char)i;
	assert_int_equal(f(0, buf, 32), 0x46DD794Eu);
	for (int i = 0; i < 32; i++)
		buf[i] = (unsigned char)(31 - i);
	assert_int_equal(f(0, buf, 32), 0x113FDB5Cu);
	assert_int_equal(f(0, NULL, 0), 0);
}

static void test_crc_vectors(void **state)
{
	check_vectors(crc32c_sw);
	check_vectors(crc32c);
	if (crc32c_hw_available())
		check_vectors(crc32c_hw);
}

/* Every length and alignment, and chaining, agree across implementations. */
static void test_crc_agree(void **state)
{
	unsigned char buf[4096 + 16];

	srand(1);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)rand();
	for (size_t len = 0; len < 300; len++)
		for (size_t align = 0; align < 8; align++) {
			uint32_t a = crc32c_sw(0, buf + align, len);
			assert_int_equal(a, crc32c(0, buf + align, len));
			if (crc32c_hw_available())
				assert_int_equal(a, crc32c_hw(0, buf + align, len));
			size_t cut = len / 3;
			assert_int_equal(a, crc32c(crc32c(0, buf + align, cut), buf + align + cut, len - cut));
		}
	assert_int_equal(crc32c_sw(0, buf, 4096), crc32c(0, buf, 4096));
	/* Long buffers take the hardware path's three interleaved streams
	 * (blocks of 8 KiB and 256 bytes, then single words). */
	size_t big_len = 3 * 8192 * 3 + 3 * 256 * 2 + 77;
	unsigned char *big = malloc(big_len + 8);
	for (size_t i = 0; i < big_len + 8; i++)
		big[i] = (unsigned char)rand();
	for (size_t len = 700; len <= big_len; len = len * 3 / 2 + 13)
		for (size_t align = 0; align < 8; align += 3) {
			uint32_t a = crc32c_sw(0x12345678, big + align, len);
			assert_int_equal(a, crc32c(0x12345678, big + align, len));
			if (crc32c_hw_available())
				assert_int_equal(a, crc32c_hw(0x12345678, big + align, len));
		}
	free(big);
}

/* ---- the index against a model ------------------------------------- */

#define SPACE 4096
#define NSEG 6

struct model {
	uint64_t seg[SPACE]; /* 0: never written */
	uint64_t foff[SPACE];
	int64_t live[NSEG]; /* what dead callbacks left */
};

static void on_dead(void *ctx, const struct extent *p)
{
	struct model *m = ctx;

	if (p->foff != EXTENT_ZERO)
		m->live[p->seg] -= (int64_t)p->len;
}

static void model_set(struct model *m, const struct extent *e)
{
	for (uint64_t i = 0; i < e->len; i++) {
		m->seg[e->off + i] = e->seg;
		m->foff[e->off + i] = e->foff == EXTENT_ZERO ? EXTENT_ZERO : e->foff + i;
	}
	if (e->foff != EXTENT_ZERO)
		m->live[e->seg] += (int64_t)e->len;
}

static void check_map(const struct extent_map *map, const struct model *m)
{
	uint64_t covered[SPACE] = { 0 }, prev_end = 0, count = 0;
	int64_t live[NSEG] = { 0 };
	struct emap_iter it;
	const struct extent *e;

	emap_seek(map, 0, &it);
	for (; (e = emap_get(map, &it)); emap_next(map, &it), count++) {
		assert_true(e->len > 0);
		assert_true(e->off >= prev_end);
		prev_end = e->off + e->len;
		assert_true(prev_end <= SPACE);
		for (uint64_t i = 0; i < e->len; i++) {
			covered[e->off + i] = 1;
			assert_int_equal(m->seg[e->off + i], e->seg);
			assert_int_equal(m->foff[e->off + i], e->foff == EXTENT_ZERO ? EXTENT_ZERO : e->foff + i);
		}
		if (e->foff != EXTENT_ZERO)
			live[e->seg] += (int64_t)e->len;
	}
	assert_int_equal(count, emap_count(map));
	for (int i = 0; i < SPACE; i++)
		assert_int_equal(covered[i], m->seg[i] != 0);
	for (int s = 0; s < NSEG; s++)
		assert_int_equal(live[s], m->live[s]);
}

static void check_seek(const struct extent_map *map, uint64_t off)
{
	struct emap_iter it, lin;
	const struct extent *a, *b;

	emap_seek(map, off, &it);
	emap_seek(map, 0, &lin);
	while ((b = emap_get(map, &lin)) && b->off + b->len <= off)
		emap_next(map, &lin);
	a = emap_get(map, &it);
	assert_ptr_equal(a, b);
}

static void test_emap_model(void **state)
{
	struct model *m = calloc(1, sizeof(*m));
	struct extent_map map;

	emap_init(&map);
	srand(2);
	for (int op = 0; op < 6000; op++) {
		struct extent e;
		e.off = (uint64_t)(rand() % SPACE);
		uint64_t maxlen = SPACE - e.off;
		e.len = 1 + (uint64_t)(rand() % (op % 50 == 0 ? (int)maxlen : (int)(maxlen < 64 ? maxlen : 64)));
		e.seg = 1 + (uint64_t)(rand() % (NSEG - 1));
		e.foff = rand() % 4 == 0 ? EXTENT_ZERO : 4096 + (uint64_t)(rand() % 100000);
		assert_int_equal(emap_reserve(&map), 0);
		emap_set(&map, &e, on_dead, m);
		model_set(m, &e);
		if (op % 20 == 0 || op > 5900)
			check_map(&map, m);
		check_seek(&map, (uint64_t)(rand() % (SPACE + 10)));
	}
	check_map(&map, m);
	emap_free(&map);
	free(m);
}

/* Many small extents: chunk splits and removals across chunk boundaries. */
static void test_emap_many(void **state)
{
	struct model *m = calloc(1, sizeof(*m));
	struct extent_map map;

	emap_init(&map);
	for (uint64_t i = 0; i < SPACE; i += 2) {
		struct extent e = { i, 1, 1 + i % 5, 8192 + i * 7 };
		assert_int_equal(emap_reserve(&map), 0);
		emap_set(&map, &e, on_dead, m);
		model_set(m, &e);
	}
	check_map(&map, m);
	assert_true(map.n > 8);
	/* One extent over everything removes every chunk but one. */
	struct extent all = { 1, SPACE - 2, 3, EXTENT_ZERO };
	assert_int_equal(emap_reserve(&map), 0);
	emap_set(&map, &all, on_dead, m);
	model_set(m, &all);
	check_map(&map, m);
	assert_int_equal(emap_count(&map), 2); /* [0], [1, SPACE-1) ; the last odd byte is unmapped */
	emap_free(&map);
	free(m);
}

/* ---- format -------------------------------------------------------- */

static void test_record_bits(void **state)
{
	struct log_rec r = { .type = LOG_REC_WRITE,
			     .seq = 77,
			     .offset = 4096,
			     .length = 512,
			     .payload_len = 512,
			     .segment = 3,
			     .synced_seq = 70 },
		       d;
	unsigned char payload[512], hdr[LOG_REC_HEADER_SIZE];
	const char *why = NULL;
	uint32_t pcrc;

	memset(payload, 0xa5, sizeof(payload));
	pcrc = crc32c(0, payload, sizeof(payload));
	log_rec_encode(&r, pcrc, hdr);
	assert_int_equal(log_rec_decode(hdr, &d, &why), 0);
	assert_int_equal(log_rec_check_crc(hdr, pcrc), 0);
	assert_int_equal(log_rec_check_fields(&d, 1 << 20, &why), 0);
	assert_int_equal(d.seq, 77);
	assert_int_equal(d.synced_seq, 70);
	for (unsigned bit = 0; bit < LOG_REC_HEADER_SIZE * 8; bit++) {
		hdr[bit / 8] ^= (unsigned char)(1u << (bit % 8));
		assert_true(log_rec_decode(hdr, &d, &why) < 0 || log_rec_check_crc(hdr, pcrc) < 0);
		hdr[bit / 8] ^= (unsigned char)(1u << (bit % 8));
	}
	payload[100] ^= 1;
	assert_int_equal(log_rec_check_crc(hdr, crc32c(0, payload, sizeof(payload))), -EBADMSG);
	/* Ranges past the device are rejected. */
	assert_int_equal(log_rec_check_fields(&d, 4096, &why), -EBADMSG);
}

static void test_segment_names(void **state)
{
	char name[LOG_SEG_NAME_LEN];
	uint64_t id;

	log_seg_name(0x1234abcd, name);
	assert_string_equal(name, "seg-000000001234abcd.log");
	assert_int_equal(log_seg_parse_name(name, &id), 0);
	assert_int_equal(id, 0x1234abcd);
	assert_int_equal(log_seg_parse_name("seg-000000001234ABCD.log", &id), -EINVAL);
	assert_int_equal(log_seg_parse_name("seg-0000000000000000.log", &id), -EINVAL);
	assert_int_equal(log_seg_parse_name("seg-1.log", &id), -EINVAL);
	assert_int_equal(log_seg_parse_name("seg-000000001234abcd.log.tmp", &id), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc_vectors), cmocka_unit_test(test_crc_agree),
		cmocka_unit_test(test_emap_model),  cmocka_unit_test(test_emap_many),
		cmocka_unit_test(test_record_bits), cmocka_unit_test(test_segment_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

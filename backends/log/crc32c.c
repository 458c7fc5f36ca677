/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * CRC-32C, table-driven (slicing-by-8) with an SSE4.2 fast path.  The
 * tables are built once on first use; the instruction path needs no table.
 */
#include <pthread.h>
#include <string.h>

#include "crc32c.h"

#define POLY 0x82F63B78u /* reflected Castagnoli polynomial */

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void build_tables(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (POLY & (0u - (c & 1)));
		table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
}

uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	pthread_once(&table_once, build_tables);
	crc = ~crc;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	while (len >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		uint32_t lo = (uint32_t)v ^ crc, hi = (uint32_t)(v >> 32);
		crc = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^
		      table[4][lo >> 24] ^ table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^
		      table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
		p += 8;
		len -= 8;
	}
#endif
	while (len--)
		crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
	return ~crc;
}

#if defined(__x86_64__)
#include <nmmintrin.h>

/*
 * The crc32 instruction takes 3 cycles but can start one every cycle: three
 * independent streams over adjacent blocks run about three times as fast
 * as one.  Their CRCs are then combined: a CRC register is linear, so the
 * register after A||B is the register after A "shifted" over |B| zero bytes
 * xor the register B gives from zero.  The shift is a 32x32 matrix over
 * GF(2), applied with four 256-entry tables per block size (after Mark
 * Adler's crc32c.c).
 */
#define LONG_BLOCK 8192
#define SHORT_BLOCK 256

static uint32_t shift_long[4][256], shift_short[4][256];
static pthread_once_t shift_once = PTHREAD_ONCE_INIT;

static uint32_t gf2_times(const uint32_t *mat, uint32_t vec)
{
	uint32_t sum = 0;

	for (; vec; vec >>= 1, mat++)
		if (vec & 1)
			sum ^= *mat;
	return sum;
}

static void gf2_square(uint32_t *square, const uint32_t *mat)
{
	for (int n = 0; n < 32; n++)
		square[n] = gf2_times(mat, mat[n]);
}

/* The operator that feeds @len zero bytes (a power of two) to a register. */
static void zeros_op(uint32_t *even, size_t len)
{
	uint32_t odd[32], row = 1;

	odd[0] = POLY; /* one zero bit */
	for (int n = 1; n < 32; n++, row <<= 1)
		odd[n] = row;
	gf2_square(even, odd); /* two bits */
	gf2_square(odd, even); /* four bits */
	/* Each square doubles: the first gives one byte in even. */
	for (;;) {
		gf2_square(even, odd);
		len >>= 1;
		if (!len)
			return;
		gf2_square(odd, even);
		len >>= 1;
		if (!len)
			break;
	}
	memcpy(even, odd, sizeof(odd));
}

static void shift_table(uint32_t t[4][256], size_t len)
{
	uint32_t op[32];

	zeros_op(op, len);
	for (uint32_t n = 0; n < 256; n++)
		for (int k = 0; k < 4; k++)
			t[k][n] = gf2_times(op, n << (8 * k));
}

static void build_shift_tables(void)
{
	shift_table(shift_long, LONG_BLOCK);
	shift_table(shift_short, SHORT_BLOCK);
}

static inline uint32_t shift(uint32_t t[4][256], uint32_t crc)
{
	return t[0][crc & 0xff] ^ t[1][(crc >> 8) & 0xff] ^ t[2][(crc >> 16) & 0xff] ^ t[3][crc >> 24];
}

static inline uint64_t load64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

/* Three streams of @block bytes each, as long as 3 blocks remain. */
__attribute__((target("sse4.2"))) static uint64_t crc_3way(uint64_t c0, const unsigned char **pp, size_t *plen,
							   size_t block, uint32_t t[4][256])
{
	const unsigned char *p = *pp;
	size_t len = *plen;

	while (len >= 3 * block) {
		uint64_t c1 = 0, c2 = 0;
		for (const unsigned char *end = p + block; p < end; p += 8) {
			c0 = _mm_crc32_u64(c0, load64(p));
			c1 = _mm_crc32_u64(c1, load64(p + block));
			c2 = _mm_crc32_u64(c2, load64(p + 2 * block));
		}
		c0 = shift(t, (uint32_t)c0) ^ (uint32_t)c1;
		c0 = shift(t, (uint32_t)c0) ^ (uint32_t)c2;
		p += 2 * block;
		len -= 3 * block;
	}
	*pp = p;
	*plen = len;
	return c0;
}

__attribute__((target("sse4.2"))) uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint64_t c = ~crc;

	if (len >= 3 * SHORT_BLOCK) {
		pthread_once(&shift_once, build_shift_tables);
		c = crc_3way(c, &p, &len, LONG_BLOCK, shift_long);
		c = crc_3way(c, &p, &len, SHORT_BLOCK, shift_short);
	}
	while (len >= 8) {
		c = _mm_crc32_u64(c, load64(p));
		p += 8;
		len -= 8;
	}
	uint32_t c32 = (uint32_t)c;
	while (len--)
		c32 = _mm_crc32_u8(c32, *p++);
	return ~c32;
}

bool crc32c_hw_available(void)
{
	return __builtin_cpu_supports("sse4.2");
}
#else
uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	return crc32c_sw(crc, buf, len);
}

bool crc32c_hw_available(void)
{
	return false;
}
#endif

static uint32_t (*crc32c_impl)(uint32_t, const void *, size_t);
static pthread_once_t impl_once = PTHREAD_ONCE_INIT;

static void pick_impl(void)
{
	crc32c_impl = crc32c_hw_available() ? crc32c_hw : crc32c_sw;
}

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&impl_once, pick_impl);
	return crc32c_impl(crc, buf, len);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A tiny NBD client for the unit tests: what the kernel sends on its end
 * of the socketpair, byte for byte, and what it expects back. */
#ifndef BLKSERV_NBD_TEST_CLIENT_H
#define BLKSERV_NBD_TEST_CLIENT_H

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "io-util.h"
#include "nbd-proto.h"
#include "test-helpers.h"

static inline void encode_request(uint8_t *h, uint16_t flags, uint16_t type, uint64_t cookie, uint64_t offset,
				  uint32_t length)
{
	put_be32(h, NBD_REQUEST_MAGIC);
	put_be16(h + 4, flags);
	put_be16(h + 6, type);
	memcpy(h + 8, &cookie, 8); /* opaque: any byte order round-trips */
	put_be64(h + 16, offset);
	put_be32(h + 24, length);
}

static inline void send_request(int fd, uint16_t flags, uint16_t type, uint64_t cookie, uint64_t offset,
				uint32_t length, const void *payload)
{
	uint8_t h[NBD_REQUEST_SIZE];

	encode_request(h, flags, type, cookie, offset, length);
	assert_int_equal(write_full(fd, h, sizeof(h)), 0);
	if (payload)
		assert_int_equal(write_full(fd, payload, length), 0);
}

/* A simple reply: returns its error, checks magic, gives the cookie. */
static inline uint32_t recv_simple(int fd, uint64_t *ret_cookie)
{
	uint8_t h[NBD_SIMPLE_REPLY_SIZE];

	assert_int_equal(read_full(fd, h, sizeof(h)), 0);
	assert_int_equal(get_be32(h), NBD_SIMPLE_REPLY_MAGIC);
	memcpy(ret_cookie, h + 8, 8);
	return get_be32(h + 4);
}

/* The reply to @cookie must be next and carry @error. */
static inline void expect_reply(int fd, uint64_t cookie, uint32_t error)
{
	uint64_t got;

	assert_int_equal(recv_simple(fd, &got), error);
	assert_true(got == cookie);
}

/* True if @fd reaches end of file within @ms (nothing else arrives). */
static inline bool peer_closed(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	ssize_t n;

	if (poll(&p, 1, ms) <= 0)
		return false;
	/* A server that closes with bytes it never read (the requests after a
	 * DISC) makes the kernel send a reset instead of an end of stream. */
	n = read(fd, &c, 1);
	return n == 0 || (n < 0 && errno == ECONNRESET);
}

#endif

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The fixed-newstyle handshake against a scripted client: greeting, every
 * supported option, unknown options (ERR_UNSUP and the negotiation goes
 * on), malformed ones (closed), and the handover to the transmission phase.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "handshake.h"
#include "nbd-test-client.h"

#define EXPORT_SIZE (64ull << 20)
#define TX (NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_CAN_MULTI_CONN)

struct fixture {
	struct nbd_export e;
	int fd, sfd;
	pthread_t server;
	bool running;
	unsigned timeout;
	int result;
	struct nbd_negotiated neg;
};

static void *server_main(void *arg)
{
	struct fixture *f = arg;

	f->result = nbd_handshake(f->sfd, &f->e, "test client", f->timeout, &f->neg);
	if (f->result < 0)
		shutdown(f->sfd, SHUT_RDWR); /* as the export does */
	return NULL;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	int sv[2];

	f->e = (struct nbd_export){
		.name = "disk0",
		.description = "a test disk",
		.size = EXPORT_SIZE,
		.tx_flags = TX,
		.min_block = 512,
		.pref_block = 4096,
		.max_block = 32u << 20,
	};
	f->timeout = 10;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	f->fd = sv[0];
	f->sfd = sv[1];
	*state = f;
	return 0;
}

static void start(struct fixture *f)
{
	assert_int_equal(pthread_create(&f->server, NULL, server_main, f), 0);
	f->running = true;
}

static int finish(struct fixture *f)
{
	if (f->running)
		pthread_join(f->server, NULL);
	f->running = false;
	return f->result;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	shutdown(f->fd, SHUT_RDWR);
	finish(f);
	close(f->fd);
	close(f->sfd);
	free(f);
	return 0;
}

/* ---- the client's side ---------------------------------------------------- */

static void greet(struct fixture *f, uint32_t client_flags)
{
	uint8_t buf[18];

	assert_int_equal(read_full(f->fd, buf, sizeof(buf)), 0);
	assert_true(get_be64(buf) == NBD_INIT_MAGIC);
	assert_true(get_be64(buf + 8) == NBD_OPTS_MAGIC);
	assert_int_equal(get_be16(buf + 16), NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	put_be32(buf, client_flags);
	assert_int_equal(write_full(f->fd, buf, 4), 0);
}

static void send_opt(struct fixture *f, uint32_t opt, const void *data, uint32_t len)
{
	uint8_t h[16];

	put_be64(h, NBD_OPTS_MAGIC);
	put_be32(h + 8, opt);
	put_be32(h + 12, len);
	assert_int_equal(write_full(f->fd, h, sizeof(h)), 0);
	if (len)
		assert_int_equal(write_full(f->fd, data, len), 0);
}

/* One option reply to @opt; returns its type, data into @buf (NUL-ended). */
static uint32_t recv_reply(struct fixture *f, uint32_t opt, uint8_t *buf, uint32_t *ret_len)
{
	uint8_t h[20];
	uint32_t len;

	assert_int_equal(read_full(f->fd, h, sizeof(h)), 0);
	assert_true(get_be64(h) == NBD_REP_MAGIC);
	assert_int_equal(get_be32(h + 8), opt);
	len = get_be32(h + 16);
	assert_true(len < 8192);
	if (len)
		assert_int_equal(read_full(f->fd, buf, len), 0);
	buf[len] = 0;
	if (ret_len)
		*ret_len = len;
	return get_be32(h + 12);
}

/* INFO or GO data: name, then the requested info types. */
static uint32_t info_request(uint8_t *buf, const char *name, const uint16_t *reqs, uint16_t n)
{
	uint32_t len = (uint32_t)strlen(name);

	put_be32(buf, len);
	memcpy(buf + 4, name, len);
	put_be16(buf + 4 + len, n);
	for (uint16_t i = 0; i < n; i++)
		put_be16(buf + 6 + len + 2 * i, reqs[i]);
	return 6 + len + 2u * n;
}

/* Replies to INFO/GO up to the ACK; checks the export info. */
static void expect_info(struct fixture *f, uint32_t opt, uint16_t want_flags, bool want_name)
{
	uint8_t buf[8192];
	bool export = false, block = false, name = false;
	uint32_t len, type;

	while ((type = recv_reply(f, opt, buf, &len)) == NBD_REP_INFO) {
		switch (get_be16(buf)) {
		case NBD_INFO_EXPORT:
			assert_int_equal(len, 12);
			assert_true(get_be64(buf + 2) == EXPORT_SIZE);
			assert_int_equal(get_be16(buf + 10), want_flags);
			export = true;
			break;
		case NBD_INFO_BLOCK_SIZE:
			assert_int_equal(len, 14);
			assert_int_equal(get_be32(buf + 2), 512);
			assert_int_equal(get_be32(buf + 6), 4096);
			assert_int_equal(get_be32(buf + 10), 32u << 20);
			block = true;
			break;
		case NBD_INFO_NAME:
			assert_string_equal((char *)buf + 2, "disk0");
			name = true;
			break;
		}
	}
	assert_int_equal(type, NBD_REP_ACK);
	assert_int_equal(len, 0);
	assert_true(export && block);
	assert_int_equal(name, want_name);
}

/* ---- tests ----------------------------------------------------------------- */

static void test_go(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[256];
	uint16_t reqs[] = { NBD_INFO_NAME, NBD_INFO_BLOCK_SIZE };

	start(f);
	greet(f, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	send_opt(f, NBD_OPT_GO, buf, info_request(buf, "disk0", reqs, 2));
	expect_info(f, NBD_OPT_GO, TX, true);
	assert_int_equal(finish(f), 0);
	assert_false(f->neg.structured);
	assert_int_equal(f->neg.tx_flags, TX);
}

static void test_structured_then_go_default_export(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[256];

	start(f);
	greet(f, NBD_FLAG_C_FIXED_NEWSTYLE);
	send_opt(f, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	assert_int_equal(recv_reply(f, NBD_OPT_STRUCTURED_REPLY, buf, NULL), NBD_REP_ACK);
	send_opt(f, NBD_OPT_GO, buf, info_request(buf, "", NULL, 0));
	expect_info(f, NBD_OPT_GO, TX | NBD_FLAG_SEND_DF, false);
	assert_int_equal(finish(f), 0);
	assert_true(f->neg.structured);
	assert_int_equal(f->neg.tx_flags, TX | NBD_FLAG_SEND_DF);
}

static void test_info_list_unsupported_then_go(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[8192];
	uint32_t len;

	start(f);
	greet(f, NBD_FLAG_C_FIXED_NEWSTYLE);
	send_opt(f, NBD_OPT_INFO, buf, info_request(buf, "disk0", NULL, 0));
	expect_info(f, NBD_OPT_INFO, TX, false);
	send_opt(f, NBD_OPT_LIST, NULL, 0);
	assert_int_equal(recv_reply(f, NBD_OPT_LIST, buf, &len), NBD_REP_SERVER);
	assert_int_equal(len, 4 + 5);
	assert_int_equal(get_be32(buf), 5);
	assert_memory_equal(buf + 4, "disk0", 5);
	assert_int_equal(recv_reply(f, NBD_OPT_LIST, buf, NULL), NBD_REP_ACK);
	/* Unknown and unsupported options: ERR_UNSUP, and the talk goes on. */
	send_opt(f, NBD_OPT_STARTTLS, NULL, 0);
	assert_int_equal(recv_reply(f, NBD_OPT_STARTTLS, buf, NULL), NBD_REP_ERR_UNSUP);
	send_opt(f, 4242, "junk", 4);
	assert_int_equal(recv_reply(f, 4242, buf, NULL), NBD_REP_ERR_UNSUP);
	send_opt(f, NBD_OPT_SET_META_CONTEXT, "\0\0\0\0", 4);
	assert_int_equal(recv_reply(f, NBD_OPT_SET_META_CONTEXT, buf, NULL), NBD_REP_ERR_UNSUP);
	/* Invalid ones: ERR_INVALID, and the talk goes on. */
	send_opt(f, NBD_OPT_LIST, "x", 1);
	assert_int_equal(recv_reply(f, NBD_OPT_LIST, buf, NULL), NBD_REP_ERR_INVALID);
	send_opt(f, NBD_OPT_STRUCTURED_REPLY, "x", 1);
	assert_int_equal(recv_reply(f, NBD_OPT_STRUCTURED_REPLY, buf, NULL), NBD_REP_ERR_INVALID);
	send_opt(f, NBD_OPT_INFO,
		 "\0\0\0\x09"
		 "disk0\0\0",
		 11); /* name length too long */
	assert_int_equal(recv_reply(f, NBD_OPT_INFO, buf, NULL), NBD_REP_ERR_INVALID);
	send_opt(f, NBD_OPT_GO, "\0\0", 2);
	assert_int_equal(recv_reply(f, NBD_OPT_GO, buf, NULL), NBD_REP_ERR_INVALID);
	send_opt(f, NBD_OPT_GO, buf, info_request(buf, "nosuch", NULL, 0));
	assert_int_equal(recv_reply(f, NBD_OPT_GO, buf, NULL), NBD_REP_ERR_UNKNOWN);
	send_opt(f, NBD_OPT_GO, buf, info_request(buf, "disk0", NULL, 0));
	expect_info(f, NBD_OPT_GO, TX, false);
	assert_int_equal(finish(f), 0);
}

static void test_export_name(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[10 + 124];

	start(f);
	greet(f, NBD_FLAG_C_FIXED_NEWSTYLE);
	send_opt(f, NBD_OPT_EXPORT_NAME, "disk0", 5);
	assert_int_equal(read_full(f->fd, buf, sizeof(buf)), 0);
	assert_true(get_be64(buf) == EXPORT_SIZE);
	assert_int_equal(get_be16(buf + 8), TX);
	for (size_t i = 10; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0);
	assert_int_equal(finish(f), 0);
}

static void test_export_name_no_zeroes(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[10];

	start(f);
	greet(f, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	send_opt(f, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	assert_int_equal(recv_reply(f, NBD_OPT_STRUCTURED_REPLY, buf, NULL), NBD_REP_ACK);
	send_opt(f, NBD_OPT_EXPORT_NAME, "", 0);
	assert_int_equal(read_full(f->fd, buf, sizeof(buf)), 0);
	assert_int_equal(finish(f), 0);
	/* The 10 bytes and nothing more: the transmission phase starts. */
	assert_true(peer_closed(f->fd, 0) == false);
	assert_false(f->neg.structured); /* EXPORT_NAME cannot confirm it */
}

static void test_export_name_unknown_hangs_up(void **state)
{
	struct fixture *f = *state;

	start(f);
	greet(f, NBD_FLAG_C_FIXED_NEWSTYLE);
	send_opt(f, NBD_OPT_EXPORT_NAME, "other", 5);
	assert_int_equal(finish(f), -ECONNABORTED);
	assert_true(peer_closed(f->fd, 1000));
}

static void test_abort(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[16];

	start(f);
	greet(f, NBD_FLAG_C_FIXED_NEWSTYLE);
	send_opt(f, NBD_OPT_ABORT, NULL, 0);
	assert_int_equal(recv_reply(f, NBD_OPT_ABORT, buf, NULL), NBD_REP_ACK);
	assert_int_equal(finish(f), -ECONNABORTED);
}

static void test_unknown_client_flags(void **state)
{
	struct fixture *f = *state;

	start(f);
	greet(f, NBD_FLAG_C_FIXED_NEWSTYLE | (1u << 7));
	assert_int_equal(finish(f), -EPROTO);
	assert_true(peer_closed(f->fd, 1000));
}

static void test_bad_option_magic(void **state)
{
	struct fixture *f = *state;
	uint8_t h[16] = "IHAVEOPU";

	start(f);
	greet(f, NBD_FLAG_C_FIXED_NEWSTYLE);
	put_be32(h + 8, NBD_OPT_LIST);
	assert_int_equal(write_full(f->fd, h, sizeof(h)), 0);
	assert_int_equal(finish(f), -EPROTO);
}

static void test_option_too_long(void **state)
{
	struct fixture *f = *state;
	uint8_t h[16];

	start(f);
	greet(f, NBD_FLAG_C_FIXED_NEWSTYLE);
	put_be64(h, NBD_OPTS_MAGIC);
	put_be32(h + 8, NBD_OPT_GO);
	put_be32(h + 12, 1u << 30);
	assert_int_equal(write_full(f->fd, h, sizeof(h)), 0);
	assert_int_equal(finish(f), -EPROTO);
}

static void test_eof_mid_option(void **state)
{
	struct fixture *f = *state;
	uint8_t h[16];

	start(f);
	greet(f, NBD_FLAG_C_FIXED_NEWSTYLE);
	put_be64(h, NBD_OPTS_MAGIC);
	put_be32(h + 8, NBD_OPT_GO);
	put_be32(h + 12, 100);
	assert_int_equal(write_full(f->fd, h, sizeof(h)), 0);
	shutdown(f->fd, SHUT_WR);
	assert_int_equal(finish(f), -ECONNABORTED);
}

static void test_silent_client_times_out(void **state)
{
	struct fixture *f = *state;

	f->timeout = 1;
	start(f);
	greet(f, NBD_FLAG_C_FIXED_NEWSTYLE);
	assert_int_equal(finish(f), -ETIMEDOUT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_go, setup, teardown),
		cmocka_unit_test_setup_teardown(test_structured_then_go_default_export, setup, teardown),
		cmocka_unit_test_setup_teardown(test_info_list_unsupported_then_go, setup, teardown),
		cmocka_unit_test_setup_teardown(test_export_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_export_name_no_zeroes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_export_name_unknown_hangs_up, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_client_flags, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_option_magic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_option_too_long, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eof_mid_option, setup, teardown),
		cmocka_unit_test_setup_teardown(test_silent_client_times_out, setup, teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}

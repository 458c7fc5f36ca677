/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * TLS of the network export without a network: the option checks of
 * nbd_tls_new(), and the handshake against a scripted client on a
 * socketpair: with TLS required every option but STARTTLS and ABORT is
 * refused (NBD_REP_ERR_TLS_REQD, EXPORT_NAME hangs up), STARTTLS with the
 * right pre-shared key leads to GO inside TLS, a wrong key is refused.
 */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "handshake.h"
#include "nbd-test-client.h"
#include "tls.h"

#define EXPORT_SIZE (64ull << 20)
#define TX (NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH)
#define KEY_HEX "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define WRONG_HEX "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"

/* ---- option checks -------------------------------------------------------- */

static int try_options(const struct nbd_tls_options *o, enum nbd_tls_mode *ret_mode)
{
	struct nbd_tls *t = NULL;
	int r = nbd_tls_new(NULL, o, &t);

	if (ret_mode)
		*ret_mode = nbd_tls_mode(t);
	if (r < 0)
		assert_null(t);
	nbd_tls_free(t);
	return r;
}

static void test_options(void **state)
{
	char *good = test_write_file("good.psk", "alice:" KEY_HEX "\n\nbob:abcd\n");
	char *odd = test_write_file("odd.psk", "alice:abc\n");
	char *nohex = test_write_file("nohex.psk", "alice:zz\n");
	char *nouser = test_write_file("nouser.psk", ":abcd\n");
	char *empty = test_write_file("empty.psk", "\n");
	char *notcert = test_write_file("notcert.pem", "not a certificate\n");
	enum nbd_tls_mode mode;

	(void)state;
	assert_int_equal(try_options(&(struct nbd_tls_options){ .mode = "off" }, &mode), 0);
	assert_int_equal(mode, NBD_TLS_OFF);
	assert_int_equal(try_options(&(struct nbd_tls_options){ 0 }, &mode), 0);
	assert_int_equal(mode, NBD_TLS_OFF);
	assert_int_equal(try_options(&(struct nbd_tls_options){ .mode = "yes", .psk_file = good }, NULL), -EINVAL);
	/* Credentials: none, half, missing files, bad files. */
	assert_int_equal(try_options(&(struct nbd_tls_options){ .mode = "require" }, NULL), -EINVAL);
	assert_int_equal(try_options(&(struct nbd_tls_options){ .mode = "allow", .certificate = notcert }, NULL),
			 -EINVAL);
	assert_int_equal(try_options(&(struct nbd_tls_options){ .mode = "require",
								.certificate = "/nonexistent/c.pem",
								.key = "/nonexistent/k.pem" },
				     NULL),
			 -EINVAL);
	assert_int_equal(try_options(&(struct nbd_tls_options){ .mode = "require",
								.certificate = notcert,
								.key = notcert },
				     NULL),
			 -EINVAL);
	assert_int_equal(try_options(&(struct nbd_tls_options){ .mode = "require", .psk_file = good, .ca = notcert },
				     NULL),
			 -EINVAL);
	assert_int_equal(try_options(&(struct nbd_tls_options){ .mode = "require", .psk_file = "/nonexistent" }, NULL),
			 -EINVAL);
	assert_int_equal(try_options(&(struct nbd_tls_options){ .mode = "require", .psk_file = odd }, NULL), -EINVAL);
	assert_int_equal(try_options(&(struct nbd_tls_options){ .mode = "require", .psk_file = nohex }, NULL), -EINVAL);
	assert_int_equal(try_options(&(struct nbd_tls_options){ .mode = "require", .psk_file = nouser }, NULL),
			 -EINVAL);
	assert_int_equal(try_options(&(struct nbd_tls_options){ .mode = "require", .psk_file = empty }, NULL), -EINVAL);
	assert_int_equal(try_options(&(struct nbd_tls_options){ .mode = "require",
								.psk_file = good,
								.priority = "NORMAL:+NO-SUCH-THING" },
				     NULL),
			 -EINVAL);
	/* And the good ones. */
	assert_int_equal(try_options(&(struct nbd_tls_options){ .mode = "require", .psk_file = good }, &mode), 0);
	assert_int_equal(mode, NBD_TLS_REQUIRE);
	assert_int_equal(try_options(&(struct nbd_tls_options){ .mode = "allow",
								.psk_file = good,
								.priority = "NORMAL" },
				     &mode),
			 0);
	assert_int_equal(mode, NBD_TLS_ALLOW);
	free(good), free(odd), free(nohex), free(nouser), free(empty), free(notcert);
}

/* ---- the handshake --------------------------------------------------------- */

struct fixture {
	struct nbd_export e;
	int fd, sfd;
	pthread_t server;
	bool joined;
	int result;
	struct nbd_negotiated neg;
	gnutls_session_t client;
	gnutls_psk_client_credentials_t psk;
};

static void *server_main(void *arg)
{
	struct fixture *f = arg;

	f->result = nbd_handshake(f->sfd, &f->e, "test client", 10, &f->neg);
	if (f->result < 0)
		shutdown(f->sfd, SHUT_RDWR); /* as the export does */
	return NULL;
}

static int setup_mode(void **state, const char *mode)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char *psk = test_write_file("server.psk", "alice:" KEY_HEX "\n");
	struct nbd_tls_options o = { .mode = mode, .psk_file = psk };
	int sv[2];

	f->e = (struct nbd_export){
		.name = "disk0",
		.size = EXPORT_SIZE,
		.tx_flags = TX,
		.min_block = 512,
		.pref_block = 4096,
		.max_block = 32u << 20,
	};
	assert_int_equal(nbd_tls_new(NULL, &o, &f->e.tls), 0);
	free(psk);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	f->fd = sv[0];
	f->sfd = sv[1];
	assert_int_equal(pthread_create(&f->server, NULL, server_main, f), 0);
	*state = f;
	return 0;
}

static int setup_require(void **state)
{
	return setup_mode(state, "require");
}

static int setup_allow(void **state)
{
	return setup_mode(state, "allow");
}

static int finish(struct fixture *f)
{
	if (!f->joined)
		pthread_join(f->server, NULL);
	f->joined = true;
	return f->result;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	shutdown(f->fd, SHUT_RDWR);
	finish(f);
	if (f->neg.tls)
		nbd_tls_session_end(f->neg.tls);
	if (f->client)
		gnutls_deinit(f->client);
	if (f->psk)
		gnutls_psk_free_client_credentials(f->psk);
	nbd_tls_free(f->e.tls);
	close(f->fd);
	close(f->sfd);
	free(f);
	return 0;
}

/* Client I/O: in the clear, or through the client's TLS session. */
static void cl_write(struct fixture *f, const void *buf, size_t len)
{
	if (!f->client) {
		assert_int_equal(write_full(f->fd, buf, len), 0);
		return;
	}
	assert_true(gnutls_record_send(f->client, buf, len) == (ssize_t)len);
}

static void cl_read(struct fixture *f, void *buf, size_t len)
{
	char *p = buf;

	if (!f->client) {
		assert_int_equal(read_full(f->fd, buf, len), 0);
		return;
	}
	while (len > 0) {
		ssize_t n = gnutls_record_recv(f->client, p, len);

		assert_true(n > 0);
		p += n;
		len -= (size_t)n;
	}
}

static void greet(struct fixture *f)
{
	uint8_t buf[18];

	cl_read(f, buf, sizeof(buf));
	assert_true(get_be64(buf) == NBD_INIT_MAGIC);
	put_be32(buf, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	cl_write(f, buf, 4);
}

static void send_opt(struct fixture *f, uint32_t opt, const void *data, uint32_t len)
{
	uint8_t h[16];

	put_be64(h, NBD_OPTS_MAGIC);
	put_be32(h + 8, opt);
	put_be32(h + 12, len);
	cl_write(f, h, sizeof(h));
	if (len)
		cl_write(f, data, len);
}

static uint32_t recv_reply(struct fixture *f, uint32_t opt)
{
	uint8_t h[20], buf[512];
	uint32_t len;

	cl_read(f, h, sizeof(h));
	assert_true(get_be64(h) == NBD_REP_MAGIC);
	assert_int_equal(get_be32(h + 8), opt);
	len = get_be32(h + 16);
	assert_true(len <= sizeof(buf));
	if (len)
		cl_read(f, buf, len);
	return get_be32(h + 12);
}

static uint32_t go_request(uint8_t *buf)
{
	put_be32(buf, 5);
	memcpy(buf + 4, "disk0", 5);
	put_be16(buf + 9, 0);
	return 11;
}

/* GO to the end: INFO replies, then ACK. */
static void expect_go(struct fixture *f)
{
	uint8_t buf[64];
	uint32_t type;

	send_opt(f, NBD_OPT_GO, buf, go_request(buf));
	while ((type = recv_reply(f, NBD_OPT_GO)) == NBD_REP_INFO)
		;
	assert_int_equal(type, NBD_REP_ACK);
}

/* A GnuTLS client with the PSK @hex for "alice" on the fixture's socket. */
static int client_tls(struct fixture *f, const char *hex)
{
	gnutls_datum_t key = { (unsigned char *)hex, (unsigned)strlen(hex) };
	int r;

	assert_int_equal(gnutls_psk_allocate_client_credentials(&f->psk), 0);
	assert_int_equal(gnutls_psk_set_client_credentials(f->psk, "alice", &key, GNUTLS_PSK_KEY_HEX), 0);
	assert_int_equal(gnutls_init(&f->client, GNUTLS_CLIENT), 0);
	assert_int_equal(gnutls_priority_set_direct(f->client, "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK", NULL), 0);
	assert_int_equal(gnutls_credentials_set(f->client, GNUTLS_CRD_PSK, f->psk), 0);
	gnutls_transport_set_int(f->client, f->fd);
	do
		r = gnutls_handshake(f->client);
	while (r == GNUTLS_E_INTERRUPTED || r == GNUTLS_E_AGAIN);
	return r;
}

static void test_require_refuses_options_before_tls(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[64];

	greet(f);
	send_opt(f, NBD_OPT_LIST, NULL, 0);
	assert_int_equal(recv_reply(f, NBD_OPT_LIST), NBD_REP_ERR_TLS_REQD);
	send_opt(f, NBD_OPT_INFO, buf, go_request(buf));
	assert_int_equal(recv_reply(f, NBD_OPT_INFO), NBD_REP_ERR_TLS_REQD);
	send_opt(f, NBD_OPT_GO, buf, go_request(buf));
	assert_int_equal(recv_reply(f, NBD_OPT_GO), NBD_REP_ERR_TLS_REQD);
	send_opt(f, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	assert_int_equal(recv_reply(f, NBD_OPT_STRUCTURED_REPLY), NBD_REP_ERR_TLS_REQD);
	send_opt(f, 4242, "junk", 4);
	assert_int_equal(recv_reply(f, 4242), NBD_REP_ERR_TLS_REQD);
	send_opt(f, NBD_OPT_STARTTLS, "x", 1);
	assert_int_equal(recv_reply(f, NBD_OPT_STARTTLS), NBD_REP_ERR_INVALID);
	send_opt(f, NBD_OPT_ABORT, NULL, 0);
	assert_int_equal(recv_reply(f, NBD_OPT_ABORT), NBD_REP_ACK);
	assert_int_equal(finish(f), -ECONNABORTED);
	assert_null(f->neg.tls);
}

static void test_require_export_name_hangs_up(void **state)
{
	struct fixture *f = *state;

	greet(f);
	send_opt(f, NBD_OPT_EXPORT_NAME, "disk0", 5);
	assert_int_equal(finish(f), -ECONNABORTED);
	/* Not even the size went out. */
	assert_true(peer_closed(f->fd, 1000));
}

static void test_starttls_psk_then_go(void **state)
{
	struct fixture *f = *state;

	greet(f);
	send_opt(f, NBD_OPT_STRUCTURED_REPLY, NULL, 0); /* refused: forgotten */
	assert_int_equal(recv_reply(f, NBD_OPT_STRUCTURED_REPLY), NBD_REP_ERR_TLS_REQD);
	send_opt(f, NBD_OPT_STARTTLS, NULL, 0);
	assert_int_equal(recv_reply(f, NBD_OPT_STARTTLS), NBD_REP_ACK);
	assert_int_equal(client_tls(f, KEY_HEX), 0);
	send_opt(f, NBD_OPT_STARTTLS, NULL, 0);
	assert_int_equal(recv_reply(f, NBD_OPT_STARTTLS), NBD_REP_ERR_INVALID);
	send_opt(f, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	assert_int_equal(recv_reply(f, NBD_OPT_STRUCTURED_REPLY), NBD_REP_ACK);
	expect_go(f);
	assert_int_equal(finish(f), 0);
	assert_non_null(f->neg.tls);
	assert_true(f->neg.structured);
}

static void test_starttls_wrong_key_refused(void **state)
{
	struct fixture *f = *state;

	greet(f);
	send_opt(f, NBD_OPT_STARTTLS, NULL, 0);
	assert_int_equal(recv_reply(f, NBD_OPT_STARTTLS), NBD_REP_ACK);
	assert_true(client_tls(f, WRONG_HEX) < 0);
	assert_int_equal(finish(f), -ECONNABORTED);
	assert_null(f->neg.tls);
}

static void test_allow_plain_go(void **state)
{
	struct fixture *f = *state;

	greet(f);
	expect_go(f);
	assert_int_equal(finish(f), 0);
	assert_null(f->neg.tls);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_options),
		cmocka_unit_test_setup_teardown(test_require_refuses_options_before_tls, setup_require, teardown),
		cmocka_unit_test_setup_teardown(test_require_export_name_hangs_up, setup_require, teardown),
		cmocka_unit_test_setup_teardown(test_starttls_psk_then_go, setup_require, teardown),
		cmocka_unit_test_setup_teardown(test_starttls_wrong_key_refused, setup_require, teardown),
		cmocka_unit_test_setup_teardown(test_allow_plain_go, setup_allow, teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}

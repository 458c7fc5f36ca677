/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The NBD engine against a fake kernel client on a socketpair: every
 * command and flag, cookies echoed, refused requests (bad magic, oversize,
 * out of range, misaligned, not advertised, read-only) with the stream kept
 * in step, requests split across many writes, deep pipelines, structured
 * replies, DISC with requests in flight, an asynchronous backend, and the
 * payload budgets against a client that does not read its replies, and the
 * drain of a planned handover (stop at a request boundary, the rest of the
 * stream left unread for the next server).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "nbd-test-client.h"
#include "payload.h"
#include "protocol.h"

#define DEV_SIZE (16u << 20)
#define CONFIG                                                                                                         \
	"device \"nbdt\" {\n  size = 16M\n  block_size = 512\n"                                                        \
	"  frontend \"nbd-export\" { unix = \"/nonexistent/x.sock\" }\n"                                               \
	"  backend \"ramdisk\" { }\n}\n"

struct fixture {
	struct blkserv_device *dev;
	struct nbd_conn_config cfg;
	int fd;  /* the client's end */
	int sfd; /* the server's end */
	pthread_t server;
	bool running;
	int result;
	int efd; /* the drain eventfd */
	char *a, *b;
};

static void *server_main(void *arg)
{
	struct fixture *f = arg;

	f->result = nbd_conn_serve(&f->cfg, f->sfd);
	return NULL;
}

static void start_server(struct fixture *f)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	f->fd = sv[0];
	f->sfd = sv[1];
	assert_int_equal(pthread_create(&f->server, NULL, server_main, f), 0);
	f->running = true;
}

/* Wait for the server to return, then close its end as a frontend would. */
static int join_server(struct fixture *f)
{
	if (f->running) {
		pthread_join(f->server, NULL);
		f->running = false;
		close(f->sfd);
	}
	return f->result;
}

static int setup_with(void **state, struct blkserv_device *dev)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->dev = dev;
	f->efd = eventfd(0, EFD_CLOEXEC);
	assert_true(f->efd >= 0);
	f->cfg = (struct nbd_conn_config){
		.dev = f->dev,
		.tx_flags = nbd_tx_flags(f->dev, false),
		.min_block = 512,
		.peer = "test client",
		.drainable = true,
		.drain_fd = f->efd,
	};
	f->a = malloc(BLKSERV_MAX_IO_BYTES + 4096);
	f->b = malloc(BLKSERV_MAX_IO_BYTES + 4096);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_with(state, test_open_backend(CONFIG, "nbdt"));
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->running) {
		shutdown(f->fd, SHUT_RDWR);
		join_server(f);
	}
	if (f->fd >= 0)
		close(f->fd);
	test_close_device(f->dev);
	close(f->efd);
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

/* DISC, then the server finishes and returns 0, and the stream ends. */
static void disconnect(struct fixture *f)
{
	send_request(f->fd, 0, NBD_CMD_DISC, 0, 0, 0, NULL);
	assert_int_equal(join_server(f), NBD_SERVE_DISC);
	assert_true(peer_closed(f->fd, 1000));
}

static void do_write(struct fixture *f, uint16_t flags, uint64_t off, uint32_t len, const void *data, uint32_t error)
{
	uint64_t cookie = ((uint64_t)rand() << 32) | (uint64_t)rand();

	send_request(f->fd, flags, NBD_CMD_WRITE, cookie, off, len, data);
	expect_reply(f->fd, cookie, error);
}

static void do_read(struct fixture *f, uint64_t off, uint32_t len, void *data, uint32_t error)
{
	uint64_t cookie = ((uint64_t)rand() << 32) | (uint64_t)rand();

	send_request(f->fd, 0, NBD_CMD_READ, cookie, off, len, NULL);
	expect_reply(f->fd, cookie, error);
	if (error == 0)
		assert_int_equal(read_full(f->fd, data, len), 0);
}

static void do_cmd(struct fixture *f, uint16_t flags, uint16_t type, uint64_t off, uint32_t len, uint32_t error)
{
	uint64_t cookie = 0x0102030405060708ull ^ type;

	send_request(f->fd, flags, type, cookie, off, len, NULL);
	expect_reply(f->fd, cookie, error);
}

/* ---- data ------------------------------------------------------------ */

static void test_write_read(void **state)
{
	struct fixture *f = *state;

	start_server(f);
	fill(f->a, 1 << 20, 1);
	do_write(f, 0, 4096, 1 << 20, f->a, 0);
	do_read(f, 4096, 1 << 20, f->b, 0);
	assert_memory_equal(f->a, f->b, 1 << 20);
	/* The first and the last sector. */
	fill(f->a, 512, 2);
	do_write(f, 0, 0, 512, f->a, 0);
	do_write(f, NBD_CMD_FLAG_FUA, DEV_SIZE - 512, 512, f->a, 0);
	do_read(f, DEV_SIZE - 512, 512, f->b, 0);
	assert_memory_equal(f->a, f->b, 512);
	disconnect(f);
}

static void test_max_size_io(void **state)
{
	struct fixture *f = *state;

	f->cfg.dev = f->dev;
	start_server(f);
	/* 16 MiB is the whole device; 32 MiB would not fit, so use 16. */
	fill(f->a, DEV_SIZE, 3);
	do_write(f, 0, 0, DEV_SIZE, f->a, 0);
	do_read(f, 0, DEV_SIZE, f->b, 0);
	assert_memory_equal(f->a, f->b, DEV_SIZE);
	disconnect(f);
}

static void test_flush_trim_zeroes(void **state)
{
	struct fixture *f = *state;
	uint16_t tx = f->cfg.tx_flags;

	assert_true(tx & NBD_FLAG_SEND_FLUSH);
	assert_true(tx & NBD_FLAG_SEND_TRIM);
	assert_true(tx & NBD_FLAG_SEND_WRITE_ZEROES);
	start_server(f);
	fill(f->a, 65536, 4);
	do_write(f, 0, 0, 65536, f->a, 0);
	do_cmd(f, 0, NBD_CMD_FLUSH, 0, 0, 0);
	do_cmd(f, NBD_CMD_FLAG_FUA, NBD_CMD_FLUSH, 0, 0, 0); /* FUA is valid on any command */
	do_cmd(f, 0, NBD_CMD_TRIM, 0, 4096, 0);
	do_cmd(f, NBD_CMD_FLAG_FUA, NBD_CMD_TRIM, 4096, 4096, 0);
	do_cmd(f, 0, NBD_CMD_WRITE_ZEROES, 8192, 8192, 0);
	do_cmd(f, NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FUA, NBD_CMD_WRITE_ZEROES, 16384, 4096, 0);
	do_read(f, 8192, 12288, f->b, 0);
	memset(f->a, 0, 12288);
	assert_memory_equal(f->a, f->b, 12288);
	/* Beyond 32 MiB is fine for commands without payload, within the device. */
	do_cmd(f, 0, NBD_CMD_WRITE_ZEROES, 0, DEV_SIZE, 0);
	do_cmd(f, NBD_CMD_FLAG_FUA, NBD_CMD_READ, 0, 0, NBD_EINVAL); /* zero length */
	disconnect(f);
}

static void test_fua_read_is_accepted(void **state)
{
	struct fixture *f = *state;
	uint64_t cookie = 77;

	start_server(f);
	send_request(f->fd, NBD_CMD_FLAG_FUA, NBD_CMD_READ, cookie, 0, 512, NULL);
	expect_reply(f->fd, cookie, 0);
	assert_int_equal(read_full(f->fd, f->b, 512), 0);
	disconnect(f);
}

/* ---- refused requests --------------------------------------------------- */

static void test_unknown_commands_and_flags(void **state)
{
	struct fixture *f = *state;

	start_server(f);
	do_cmd(f, 0, NBD_CMD_CACHE, 0, 512, NBD_EINVAL);
	do_cmd(f, 0, NBD_CMD_BLOCK_STATUS, 0, 512, NBD_EINVAL);
	do_cmd(f, 0, 99, 0, 512, NBD_EINVAL);
	do_cmd(f, 1u << 9, NBD_CMD_READ, 0, 512, NBD_EINVAL);              /* unknown flag */
	do_cmd(f, NBD_CMD_FLAG_NO_HOLE, NBD_CMD_TRIM, 0, 512, NBD_EINVAL); /* flag of another command */
	do_cmd(f, NBD_CMD_FLAG_DF, NBD_CMD_READ, 0, 512, NBD_EINVAL);      /* DF not advertised */
	do_cmd(f, NBD_CMD_FLAG_FAST_ZERO, NBD_CMD_WRITE_ZEROES, 0, 512, NBD_EINVAL);
	/* A refused WRITE's payload is drained: the next request parses. */
	fill(f->a, 4096, 5);
	do_write(f, 1u << 12, 0, 4096, f->a, NBD_EINVAL);
	do_read(f, 0, 512, f->b, 0);
	disconnect(f);
}

/* Every command number the engine does not implement, with and without
 * flags, is refused with EINVAL and leaves the data as it was: none is
 * taken for a write, a trim or a write of zeroes. */
static void test_unknown_command_changes_nothing(void **state)
{
	static const uint16_t cmds[] = { NBD_CMD_CACHE, NBD_CMD_BLOCK_STATUS, 8, 9, 99, 0x7fff, 0xffff };
	struct fixture *f = *state;

	start_server(f);
	fill(f->a, 8192, 11);
	do_write(f, 0, 0, 8192, f->a, 0);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		do_cmd(f, 0, cmds[i], 0, 8192, NBD_EINVAL);
		do_cmd(f, NBD_CMD_FLAG_FUA, cmds[i], 0, 4096, NBD_EINVAL);
		do_cmd(f, NBD_CMD_FLAG_NO_HOLE, cmds[i], 4096, 4096, NBD_EINVAL);
	}
	do_read(f, 0, 8192, f->b, 0);
	assert_memory_equal(f->a, f->b, 8192);
	disconnect(f);
}

static void test_not_advertised(void **state)
{
	struct fixture *f = *state;

	f->cfg.tx_flags = NBD_FLAG_HAS_FLAGS;
	start_server(f);
	do_cmd(f, 0, NBD_CMD_FLUSH, 0, 0, NBD_EINVAL);
	do_cmd(f, 0, NBD_CMD_TRIM, 0, 512, NBD_EINVAL);
	do_cmd(f, 0, NBD_CMD_WRITE_ZEROES, 0, 512, NBD_EINVAL);
	fill(f->a, 512, 6);
	do_write(f, NBD_CMD_FLAG_FUA, 0, 512, f->a, NBD_EINVAL);
	do_write(f, 0, 0, 512, f->a, 0);
	disconnect(f);
}

static void test_out_of_range(void **state)
{
	struct fixture *f = *state;

	start_server(f);
	fill(f->a, 8192, 7);
	do_read(f, DEV_SIZE, 512, f->b, NBD_EINVAL);
	do_read(f, DEV_SIZE - 512, 1024, f->b, NBD_EINVAL);
	do_read(f, UINT64_MAX - 511, 512, f->b, NBD_EINVAL); /* offset + length overflows */
	do_write(f, 0, DEV_SIZE - 4096, 8192, f->a, NBD_ENOSPC);
	do_write(f, 0, DEV_SIZE, 512, f->a, NBD_ENOSPC);
	do_write(f, 0, UINT64_MAX - 511, 512, f->a, NBD_ENOSPC);
	do_cmd(f, 0, NBD_CMD_TRIM, DEV_SIZE - 512, 1024, NBD_EINVAL);
	do_cmd(f, 0, NBD_CMD_WRITE_ZEROES, DEV_SIZE - 512, 1024, NBD_ENOSPC);
	/* Still in step. */
	do_write(f, 0, DEV_SIZE - 512, 512, f->a, 0);
	do_read(f, DEV_SIZE - 512, 512, f->b, 0);
	assert_memory_equal(f->a, f->b, 512);
	disconnect(f);
}

static void test_misaligned(void **state)
{
	struct fixture *f = *state;

	start_server(f);
	fill(f->a, 1024, 8);
	do_read(f, 1, 512, f->b, NBD_EINVAL);
	do_read(f, 0, 100, f->b, NBD_EINVAL);
	do_write(f, 0, 256, 512, f->a, NBD_EINVAL);
	do_cmd(f, 0, NBD_CMD_TRIM, 0, 100, NBD_EINVAL);
	do_write(f, 0, 512, 512, f->a, 0);
	disconnect(f);
}

static void test_oversize(void **state)
{
	struct fixture *f = *state;
	uint32_t big = BLKSERV_MAX_IO_BYTES + 4096;

	start_server(f);
	fill(f->a, big, 9);
	/* Over 32 MiB: refused with the whole payload drained. */
	do_write(f, 0, 0, big, f->a, NBD_EINVAL);
	do_read(f, 0, big, f->b, NBD_EINVAL);
	do_write(f, 0, 0, 4096, f->a, 0);
	do_read(f, 0, 4096, f->b, 0);
	assert_memory_equal(f->a, f->b, 4096);
	disconnect(f);
}

static void test_read_only(void **state)
{
	struct fixture *f = *state;

	f->cfg.tx_flags = nbd_tx_flags(f->dev, true);
	assert_true(f->cfg.tx_flags & NBD_FLAG_READ_ONLY);
	assert_false(f->cfg.tx_flags & (NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES));
	start_server(f);
	fill(f->a, 4096, 10);
	do_write(f, 0, 0, 4096, f->a, NBD_EPERM);
	do_cmd(f, 0, NBD_CMD_FLUSH, 0, 0, 0);
	do_read(f, 0, 4096, f->b, 0);
	disconnect(f);
}

static void test_bad_magic_closes(void **state)
{
	struct fixture *f = *state;
	uint8_t h[NBD_REQUEST_SIZE];

	start_server(f);
	do_read(f, 0, 512, f->b, 0);
	encode_request(h, 0, NBD_CMD_READ, 1, 0, 512);
	put_be32(h, 0x25609514); /* nbd-server's logging magic: not a request */
	assert_int_equal(write_full(f->fd, h, sizeof(h)), 0);
	assert_int_equal(join_server(f), -EPROTO);
	assert_true(peer_closed(f->fd, 1000));
}

/* ---- stream handling ----------------------------------------------------- */

/* Requests arrive a few bytes at a time, split anywhere. */
static void test_partial_writes(void **state)
{
	struct fixture *f = *state;
	size_t total = 3 * NBD_REQUEST_SIZE + 4096;
	uint8_t *stream = malloc(total);
	uint64_t cookie;

	start_server(f);
	fill(f->a, 4096, 11);
	encode_request(stream, 0, NBD_CMD_WRITE, 1, 8192, 4096);
	memcpy(stream + NBD_REQUEST_SIZE, f->a, 4096);
	encode_request(stream + NBD_REQUEST_SIZE + 4096, 0, NBD_CMD_FLUSH, 2, 0, 0);
	encode_request(stream + 2 * NBD_REQUEST_SIZE + 4096, 0, NBD_CMD_READ, 3, 8192, 4096);
	for (size_t off = 0; off < total;) {
		size_t n = 1 + (size_t)rand() % 700;
		if (n > total - off)
			n = total - off;
		assert_int_equal(write_full(f->fd, stream + off, n), 0);
		off += n;
		if (rand() % 4 == 0)
			usleep(200);
	}
	for (uint64_t want = 1; want <= 3; want++) {
		assert_int_equal(recv_simple(f->fd, &cookie), 0);
		assert_true(cookie == want);
	}
	assert_int_equal(read_full(f->fd, f->b, 4096), 0);
	assert_memory_equal(f->a, f->b, 4096);
	free(stream);
	disconnect(f);
}

static void on_sigusr1(int sig)
{
}

/* Replies cut short: signals interrupt the server's sendmsg() while the
 * client reads slowly, so writes return partial counts; every byte must
 * still arrive once and in order. */
static void test_partial_replies(void **state)
{
	struct fixture *f = *state;
	struct sigaction sa = { .sa_handler = on_sigusr1 }; /* no SA_RESTART */
	uint64_t cookie = 42, got;
	size_t len = 8u << 20, done = 0;

	sigaction(SIGUSR1, &sa, NULL);
	start_server(f);
	fill(f->a, len, 14);
	do_write(f, 0, 0, (uint32_t)len, f->a, 0);
	send_request(f->fd, 0, NBD_CMD_READ, cookie, 0, (uint32_t)len, NULL);
	assert_int_equal(recv_simple(f->fd, &got), 0);
	assert_true(got == cookie);
	while (done < len) {
		size_t n = len - done < 65536 ? len - done : 65536;

		pthread_kill(f->server, SIGUSR1);
		usleep(100);
		assert_int_equal(read_full(f->fd, f->b + done, n), 0);
		done += n;
	}
	assert_memory_equal(f->a, f->b, len);
	disconnect(f);
	signal(SIGUSR1, SIG_DFL);
}

/* More requests than the queue has tags, all sent before any reply is read. */
static void test_deep_pipeline(void **state)
{
	struct fixture *f = *state;
	enum { N = 400 };
	uint8_t seen[N] = { 0 };
	uint64_t cookie;

	start_server(f);
	for (unsigned i = 0; i < N; i++) {
		fill(f->a, 512, 100 + i);
		send_request(f->fd, 0, NBD_CMD_WRITE, 1000 + i, (uint64_t)i * 512, 512, f->a);
	}
	for (unsigned i = 0; i < N; i++) {
		assert_int_equal(recv_simple(f->fd, &cookie), 0);
		assert_true(cookie >= 1000 && cookie < 1000 + N);
		assert_int_equal(seen[cookie - 1000]++, 0);
	}
	for (unsigned i = 0; i < N; i++) {
		do_read(f, (uint64_t)i * 512, 512, f->b, 0);
		fill(f->a, 512, 100 + i);
		assert_memory_equal(f->a, f->b, 512);
	}
	disconnect(f);
}

/* DISC with writes still in flight: they are all answered, then the end. */
static void test_disc_finishes_inflight(void **state)
{
	struct fixture *f = *state;
	uint64_t cookie;

	start_server(f);
	fill(f->a, 65536, 12);
	for (unsigned i = 0; i < 16; i++)
		send_request(f->fd, 0, NBD_CMD_WRITE, 500 + i, (uint64_t)i * 65536, 65536, f->a);
	send_request(f->fd, 0, NBD_CMD_DISC, 0, 0, 0, NULL);
	/* Anything after DISC is not read. */
	send_request(f->fd, 0, NBD_CMD_READ, 999, 0, 512, NULL);
	for (unsigned i = 0; i < 16; i++) {
		assert_int_equal(recv_simple(f->fd, &cookie), 0);
		assert_true(cookie >= 500 && cookie < 516);
	}
	assert_int_equal(join_server(f), NBD_SERVE_DISC);
	assert_true(peer_closed(f->fd, 1000));
}

/* The client hangs up mid-payload: the server ends cleanly. */
static void test_eof_mid_request(void **state)
{
	struct fixture *f = *state;
	uint8_t h[NBD_REQUEST_SIZE];

	start_server(f);
	encode_request(h, 0, NBD_CMD_WRITE, 1, 0, 4096);
	assert_int_equal(write_full(f->fd, h, sizeof(h)), 0);
	assert_int_equal(write_full(f->fd, f->a, 100), 0);
	shutdown(f->fd, SHUT_WR);
	assert_int_equal(join_server(f), 0);
}

/* A frontend stops a connection by shutting its socket down. */
static void test_shutdown_stops(void **state)
{
	struct fixture *f = *state;

	start_server(f);
	do_read(f, 0, 512, f->b, 0);
	shutdown(f->sfd, SHUT_RDWR);
	assert_int_equal(join_server(f), 0);
}

static void test_structured_read(void **state)
{
	struct fixture *f = *state;
	uint8_t h[NBD_STRUCTURED_REPLY_SIZE + 8];
	uint64_t cookie = 0x1122334455667788ull;

	f->cfg.structured = true;
	f->cfg.tx_flags |= NBD_FLAG_SEND_DF;
	start_server(f);
	fill(f->a, 4096, 13);
	do_write(f, 0, 4096, 4096, f->a, 0); /* non-READ replies stay simple */
	send_request(f->fd, NBD_CMD_FLAG_DF, NBD_CMD_READ, cookie, 4096, 4096, NULL);
	assert_int_equal(read_full(f->fd, h, sizeof(h)), 0);
	assert_int_equal(get_be32(h), NBD_STRUCTURED_REPLY_MAGIC);
	assert_int_equal(get_be16(h + 4), NBD_REPLY_FLAG_DONE);
	assert_int_equal(get_be16(h + 6), NBD_REPLY_TYPE_OFFSET_DATA);
	assert_memory_equal(h + 8, &cookie, 8);
	assert_int_equal(get_be32(h + 16), 8 + 4096);
	assert_int_equal(get_be64(h + 20), 4096);
	assert_int_equal(read_full(f->fd, f->b, 4096), 0);
	assert_memory_equal(f->a, f->b, 4096);
	/* A failed read: one error chunk, no data. */
	send_request(f->fd, 0, NBD_CMD_READ, cookie, DEV_SIZE, 512, NULL);
	assert_int_equal(read_full(f->fd, h, NBD_STRUCTURED_REPLY_SIZE + 6), 0);
	assert_int_equal(get_be32(h), NBD_STRUCTURED_REPLY_MAGIC);
	assert_int_equal(get_be16(h + 4), NBD_REPLY_FLAG_DONE);
	assert_int_equal(get_be16(h + 6), NBD_REPLY_TYPE_ERROR);
	assert_int_equal(get_be32(h + 16), 6);
	assert_int_equal(get_be32(h + 20), NBD_EINVAL);
	assert_int_equal(get_be16(h + 24), 0);
	disconnect(f);
}

/* ---- reads sent from the backend's file (sendfile) ------------------------ */

static uint64_t reads_mapped(struct blkserv_device *dev)
{
	struct io_stats st;

	device_get_stats(dev, &st);
	return st.reads_mapped;
}

/* Big reads go out from the ramdisk's memfd with sendfile, small ones from
 * the buffer; mixed in one pipeline, every reply keeps its place in the
 * stream and carries the right bytes, written or hole. */
static void test_mapped_reads(void **state)
{
	struct fixture *f = *state;
	static const struct {
		uint64_t off;
		uint32_t len;
		bool mapped;
	} reads[] = {
		{ 0, 4096, false },
		{ 0, 1u << 20, true },
		{ 4096, 64u << 10, true },          /* the smallest mapped size */
		{ 8192, (64u << 10) - 512, false }, /* just below it */
		{ 512, 4096, false },
		{ (8u << 20) - 4096, 1u << 20, true },     /* written, then a hole */
		{ DEV_SIZE - (2u << 20), 2u << 20, true }, /* a hole up to the end */
	};
	enum { N = sizeof(reads) / sizeof(reads[0]) };
	uint64_t expect_mapped = 0;

	start_server(f);
	fill(f->a, 8u << 20, 21);
	do_write(f, 0, 0, 8u << 20, f->a, 0);
	memset(f->a + (8u << 20), 0, DEV_SIZE - (8u << 20));
	/* One at a time. */
	for (unsigned i = 0; i < N; i++) {
		memset(f->b, 0xee, reads[i].len);
		do_read(f, reads[i].off, reads[i].len, f->b, 0);
		assert_memory_equal(f->b, f->a + reads[i].off, reads[i].len);
		expect_mapped += reads[i].mapped;
	}
	assert_int_equal(reads_mapped(f->dev), expect_mapped);
	/* All at once: the replies come in the order the reads were sent,
	 * since the ramdisk answers each at once. */
	for (unsigned i = 0; i < N; i++)
		send_request(f->fd, 0, NBD_CMD_READ, 1000 + i, reads[i].off, reads[i].len, NULL);
	for (unsigned i = 0; i < N; i++) {
		expect_reply(f->fd, 1000 + i, 0);
		memset(f->b, 0xee, reads[i].len);
		assert_int_equal(read_full(f->fd, f->b, reads[i].len), 0);
		assert_memory_equal(f->b, f->a + reads[i].off, reads[i].len);
		expect_mapped += reads[i].mapped;
	}
	assert_int_equal(reads_mapped(f->dev), expect_mapped);
	disconnect(f);
}

/* A structured reply's OFFSET_DATA chunk header, then the file's bytes. */
static void test_mapped_structured_read(void **state)
{
	struct fixture *f = *state;
	uint8_t h[NBD_STRUCTURED_REPLY_SIZE + 8];
	uint64_t cookie = 0x5566778899aabbccull;
	const uint32_t len = 1u << 20;

	f->cfg.structured = true;
	start_server(f);
	fill(f->a, len, 22);
	do_write(f, 0, 3u << 20, len, f->a, 0);
	send_request(f->fd, 0, NBD_CMD_READ, cookie, 3u << 20, len, NULL);
	assert_int_equal(read_full(f->fd, h, sizeof(h)), 0);
	assert_int_equal(get_be32(h), NBD_STRUCTURED_REPLY_MAGIC);
	assert_int_equal(get_be16(h + 6), NBD_REPLY_TYPE_OFFSET_DATA);
	assert_memory_equal(h + 8, &cookie, 8);
	assert_int_equal(get_be32(h + 16), 8 + len);
	assert_int_equal(get_be64(h + 20), 3u << 20);
	assert_int_equal(read_full(f->fd, f->b, len), 0);
	assert_memory_equal(f->a, f->b, len);
	assert_int_equal(reads_mapped(f->dev), 1);
	disconnect(f);
}

/* The client goes away while a big read is being sent: the connection
 * ends with the error, nothing else happens. */
static void test_mapped_read_client_gone(void **state)
{
	struct fixture *f = *state;

	start_server(f);
	for (unsigned i = 0; i < 16; i++)
		send_request(f->fd, 0, NBD_CMD_READ, i, 0, 8u << 20, NULL);
	/* Read a little so the server is surely sending, then hang up. */
	assert_int_equal(read_full(f->fd, f->b, 4096), 0);
	close(f->fd);
	f->fd = -1;
	assert_int_not_equal(join_server(f), 0);
	assert_true(reads_mapped(f->dev) >= 1);
}

/* ---- flags and errors ----------------------------------------------------- */

static void test_wire_errors(void **state)
{
	assert_int_equal(nbd_wire_error(0), 0);
	assert_int_equal(nbd_wire_error(-EPERM), NBD_EPERM);
	assert_int_equal(nbd_wire_error(-EROFS), NBD_EPERM);
	assert_int_equal(nbd_wire_error(-EIO), NBD_EIO);
	assert_int_equal(nbd_wire_error(-ENOMEM), NBD_ENOMEM);
	assert_int_equal(nbd_wire_error(-EINVAL), NBD_EINVAL);
	assert_int_equal(nbd_wire_error(-EOPNOTSUPP), NBD_EINVAL);
	assert_int_equal(nbd_wire_error(-ENOSPC), NBD_ENOSPC);
	assert_int_equal(nbd_wire_error(-EDQUOT), NBD_ENOSPC);
	assert_int_equal(nbd_wire_error(-EFBIG), NBD_ENOSPC);
	assert_int_equal(nbd_wire_error(-EOVERFLOW), NBD_EOVERFLOW);
	assert_int_equal(nbd_wire_error(-ESHUTDOWN), NBD_ESHUTDOWN);
	assert_int_equal(nbd_wire_error(-ENODATA), NBD_EIO);
	assert_int_equal(nbd_wire_error(-EBADF), NBD_EIO);
}

static void test_tx_flags(void **state)
{
	struct fixture *f = *state;
	uint16_t tx = nbd_tx_flags(f->dev, false);

	/* The ramdisk: flush, FUA, trim, zeroes; not rotational. */
	assert_int_equal(tx, NBD_FLAG_HAS_FLAGS | NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
				     NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES);
}

/* ---- an asynchronous backend --------------------------------------------- */

#define ASYNC_DEV_SIZE (1u << 20) /* the asyncmem fixture's */
#define ASYNC_CONFIG                                                                                                   \
	"device \"am\" {\n  block_size = 512\n"                                                                        \
	"  frontend \"testfe\" { socket = \"/x\" }\n  backend \"asyncmem\" { }\n}\n"

static int setup_async(void **state)
{
	const char *fixtures = getenv("BLKSERV_TEST_FIXTURE_DIR");
	char *path = test_write_file("async.conf", ASYNC_CONFIG);
	const struct device_config *dc;
	struct blkserv_device *dev;
	struct config *c = NULL;
	char *error = NULL;

	if (!fixtures)
		fail_msg("BLKSERV_TEST_FIXTURE_DIR is not set");
	if (config_load(path, fixtures, &c, &error) < 0)
		fail_msg("config: %s", error);
	dc = config_find_device(c, "am");
	assert_int_equal(device_new(dc, fixtures, &dev), 0);
	assert_int_equal(device_open_backend(dev), 0);
	config_free(c);
	free(path);
	return setup_with(state, dev);
}

/* Completions come from other threads, in any order. */
static void test_async_backend(void **state)
{
	struct fixture *f = *state;
	enum { N = 300, SZ = 2048 };
	uint8_t seen[N] = { 0 };
	uint64_t cookie;

	start_server(f);
	for (unsigned i = 0; i < N; i++) {
		fill(f->a, SZ, 300 + i);
		send_request(f->fd, i % 3 ? 0 : NBD_CMD_FLAG_FUA, NBD_CMD_WRITE, i, (uint64_t)i * SZ, SZ, f->a);
	}
	for (unsigned i = 0; i < N; i++) {
		assert_int_equal(recv_simple(f->fd, &cookie), 0);
		assert_true(cookie < N);
		assert_int_equal(seen[cookie]++, 0);
	}
	do_cmd(f, 0, NBD_CMD_FLUSH, 0, 0, 0);
	for (unsigned i = 0; i < N; i += 7) {
		do_read(f, (uint64_t)i * SZ, SZ, f->b, 0);
		fill(f->a, SZ, 300 + i);
		assert_memory_equal(f->a, f->b, SZ);
	}
	/* A big read offered for sendfile: this backend names no file, so
	 * the host reads it into the buffer as usual. */
	fill(f->a, 256u << 10, 399);
	do_write(f, 0, 768u << 10, 256u << 10, f->a, 0);
	do_read(f, 768u << 10, 256u << 10, f->b, 0);
	assert_memory_equal(f->a, f->b, 256u << 10);
	assert_int_equal(reads_mapped(f->dev), 0);
	disconnect(f);
}

/* ---- payload budgets ------------------------------------------------------ */

/* Write @n blocks of @len known bytes, then send @n reads of them without
 * reading a reply: after a while the daemon-wide charge must be at most
 * @bound (and something was admitted); then every reply comes, with the
 * right data, and everything charged is given back at the end.  The
 * backend completes from another thread (a synchronous one would block
 * in the first reply's send before reading the next request). */
static void slow_reader(struct fixture *f, unsigned n, uint32_t len, uint64_t bound)
{
	uint8_t seen[64] = { 0 };
	uint64_t cookie, used;

	assert_true(n <= sizeof(seen) && (uint64_t)n * len <= ASYNC_DEV_SIZE);
	start_server(f);
	for (unsigned i = 0; i < n; i++) {
		fill(f->a, len, 700 + i);
		do_write(f, 0, (uint64_t)i * len, len, f->a, 0);
	}
	for (unsigned i = 0; i < n; i++)
		send_request(f->fd, 0, NBD_CMD_READ, i, (uint64_t)i * len, len, NULL);
	/* Until the first is admitted (slow under valgrind), then a while
	 * for the server to take all it would. */
	for (unsigned ms = 0; blkserv_payload_used() < len && ms < 10000; ms += 10)
		usleep(10 * 1000);
	usleep(300 * 1000);
	used = blkserv_payload_used();
	assert_true(used >= len);
	assert_true(used <= bound);
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(recv_simple(f->fd, &cookie), 0);
		assert_true(cookie < n);
		assert_int_equal(seen[cookie]++, 0);
		assert_int_equal(read_full(f->fd, f->b, len), 0);
		fill(f->a, len, 700 + (unsigned)cookie);
		assert_memory_equal(f->a, f->b, len);
	}
	disconnect(f);
	assert_int_equal(blkserv_payload_used(), 0);
}

/* client_memory: 256 KiB per connection, whatever the client sends. */
static void test_budget_per_connection(void **state)
{
	struct fixture *f = *state;

	f->cfg.memory_budget = 256u << 10;
	f->cfg.shared_budget = true;
	slow_reader(f, 15, 64u << 10, 256u << 10);
}

/* request_memory: 128 KiB daemon-wide caps a connection allowed more; a
 * request bigger than the whole budget is still served (the connection
 * holds nothing else), so no budget deadlocks. */
static void test_budget_daemon_wide(void **state)
{
	struct fixture *f = *state;

	payload_set_limit(128u << 10);
	f->cfg.memory_budget = 64u << 20;
	f->cfg.shared_budget = true;
	slow_reader(f, 15, 64u << 10, 128u << 10);
	start_server(f);
	fill(f->a, 512u << 10, 800);
	do_write(f, 0, 0, 512u << 10, f->a, 0);
	do_read(f, 0, 512u << 10, f->b, 0);
	assert_memory_equal(f->a, f->b, 512u << 10);
	disconnect(f);
	assert_int_equal(blkserv_payload_used(), 0);
	payload_set_limit(PAYLOAD_MEMORY_DEFAULT);
}

/* ---- drain ------------------------------------------------------------ */

static void request_drain(struct fixture *f)
{
	assert_int_equal(eventfd_write(f->efd, 1), 0);
}

/* The server returned DRAINED and its end is still open, not shut down. */
static void join_drained(struct fixture *f)
{
	pthread_join(f->server, NULL);
	f->running = false;
	assert_int_equal(f->result, NBD_SERVE_DRAINED);
	assert_false(peer_closed(f->fd, 0));
}

/* The bytes left in the server's end: exactly @len of them, into @buf. */
static void expect_unread(struct fixture *f, void *buf, size_t len)
{
	char extra[NBD_REQUEST_SIZE * 4];
	ssize_t n = recv(f->sfd, extra, sizeof(extra), MSG_DONTWAIT);

	assert_int_equal(n, (ssize_t)len);
	memcpy(buf, extra, len);
}

/* A drain at idle ends at once; the stream goes on with a new server. */
static void test_drain_idle_resumes(void **state)
{
	struct fixture *f = *state;

	start_server(f);
	fill(f->a, 4096, 40);
	do_write(f, 0, 8192, 4096, f->a, 0);
	request_drain(f);
	join_drained(f);
	/* The next process: same socket, same stream. */
	assert_int_equal(eventfd_read(f->efd, &(eventfd_t){ 0 }), 0);
	assert_int_equal(pthread_create(&f->server, NULL, server_main, f), 0);
	f->running = true;
	do_read(f, 8192, 4096, f->b, 0);
	assert_memory_equal(f->a, f->b, 4096);
	disconnect(f);
}

/*
 * The drain comes while a WRITE's header is half received: the server
 * reads exactly the rest of that header and its payload, answers it, and
 * leaves the READ that follows in the socket, byte for byte.
 */
static void test_drain_mid_request(void **state)
{
	struct fixture *f = *state;
	uint8_t h[NBD_REQUEST_SIZE], next[NBD_REQUEST_SIZE], left[NBD_REQUEST_SIZE];
	uint64_t cookie = 0x1122334455667788ull;

	start_server(f);
	fill(f->a, 8192, 41);
	encode_request(h, 0, NBD_CMD_WRITE, 77, 65536, 8192);
	encode_request(next, 0, NBD_CMD_READ, cookie, 65536, 8192);
	assert_int_equal(write_full(f->fd, h, 10), 0);
	/* Let the server take the 10 bytes and wait for more. */
	usleep(200 * 1000);
	request_drain(f);
	usleep(300 * 1000);
	assert_int_equal(write_full(f->fd, h + 10, sizeof(h) - 10), 0);
	assert_int_equal(write_full(f->fd, f->a, 8192), 0);
	assert_int_equal(write_full(f->fd, next, sizeof(next)), 0);
	expect_reply(f->fd, 77, 0);
	join_drained(f);
	expect_unread(f, left, sizeof(left));
	assert_memory_equal(left, next, sizeof(next));
	/* The write landed: a new server reads it back. */
	close(f->sfd);
	close(f->fd);
	assert_int_equal(eventfd_read(f->efd, &(eventfd_t){ 0 }), 0);
	start_server(f);
	do_read(f, 65536, 8192, f->b, 0);
	assert_memory_equal(f->a, f->b, 8192);
	disconnect(f);
}

/* A deep pipeline when the drain comes: every request the server took is
 * answered, those it did not take stay whole in the socket. */
static void test_drain_answers_inflight(void **state)
{
	struct fixture *f = *state;
	enum { N = 200 };
	uint8_t seen[N] = { 0 };
	uint8_t h[NBD_REQUEST_SIZE];
	unsigned answered = 0;
	uint64_t cookie;

	start_server(f);
	fill(f->a, 4096, 42);
	for (unsigned i = 0; i < N; i++)
		send_request(f->fd, 0, NBD_CMD_WRITE, i, (uint64_t)i * 4096, 4096, f->a);
	request_drain(f);
	pthread_join(f->server, NULL);
	f->running = false;
	assert_int_equal(f->result, NBD_SERVE_DRAINED);
	/* Replies to what the server read, each once. */
	while (poll(&(struct pollfd){ .fd = f->fd, .events = POLLIN }, 1, 0) > 0) {
		assert_int_equal(recv_simple(f->fd, &cookie), 0);
		assert_true(cookie < N);
		assert_int_equal(seen[cookie]++, 0);
		answered++;
	}
	/* The rest are whole requests at a header boundary, in order. */
	for (unsigned i = answered; i < N; i++) {
		uint8_t got[NBD_REQUEST_SIZE];

		assert_int_equal(read_full(f->sfd, got, sizeof(got)), 0);
		encode_request(h, 0, NBD_CMD_WRITE, i, (uint64_t)i * 4096, 4096);
		assert_memory_equal(got, h, sizeof(h));
		assert_int_equal(read_full(f->sfd, f->b, 4096), 0);
		assert_memory_equal(f->a, f->b, 4096);
		assert_int_equal(seen[i], 0);
	}
	for (unsigned i = 0; i < answered; i++)
		assert_int_equal(seen[i], 1);
	assert_int_equal(recv(f->sfd, h, 1, MSG_DONTWAIT), -1);
	close(f->sfd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_write_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_size_io, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flush_trim_zeroes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fua_read_is_accepted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_commands_and_flags, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_command_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_advertised, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_misaligned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oversize, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_magic_closes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partial_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partial_replies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deep_pipeline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disc_finishes_inflight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eof_mid_request, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown_stops, setup, teardown),
		cmocka_unit_test_setup_teardown(test_structured_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mapped_reads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mapped_structured_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mapped_read_client_gone, setup, teardown),
		cmocka_unit_test(test_wire_errors),
		cmocka_unit_test_setup_teardown(test_tx_flags, setup, teardown),
		cmocka_unit_test_setup_teardown(test_async_backend, setup_async, teardown),
		cmocka_unit_test_setup_teardown(test_budget_per_connection, setup_async, teardown),
		cmocka_unit_test_setup_teardown(test_budget_daemon_wide, setup_async, teardown),
		cmocka_unit_test_setup_teardown(test_drain_idle_resumes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drain_mid_request, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drain_answers_inflight, setup, teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	srand((unsigned)time(NULL));
	return cmocka_run_group_tests(tests, NULL, NULL);
}

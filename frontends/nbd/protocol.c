/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * protocol.c: the NBD transmission phase.
 *
 * One connection is served by one thread that owns one queue.  The only
 * blocking point is blkserv_queue_process(): the socket is read with RECVs
 * on the queue's ring, whose completions arrive next to the backend's.  We
 * parse every whole request that arrived and submit it; a big WRITE payload
 * is received straight into its tag's buffer when it is not already in the
 * receive buffer.
 * Replies are gathered and written with one sendmsg() per batch, from this
 * thread only, so they are never interleaved; a tag becomes free again only
 * once its reply (and the read data in its buffer) went out.  With every tag
 * busy we stop reading: the client's requests wait in the socket.
 * The same when the next request's payload buffer would take the
 * connection over its memory budget (cfg->memory_budget), or the daemon
 * over request_memory (cfg->shared_budget): a client that does not read
 * its replies is slowed down to what its replies free, never allowed to
 * grow the daemon.  A connection that holds no request is always let on
 * with the next one (up to 32 MiB), so no budget can deadlock it.
 * A big read whose bytes the backend keeps in a file (the ramdisk's memfd)
 * is sent with sendfile() after its header: the kernel hands the file's
 * pages to the socket, and the only copy left is the client's.
 *
 * A drain (a planned handover of the kernel's socket to the next daemon,
 * cfg->drain_fd) stops reading at a request boundary: what is already in
 * the receive buffer is served, the request it ends in the middle of is
 * completed by receives of exactly its missing bytes, and nothing beyond
 * it is read, so the next process finds the stream at a request header.
 *
 * A secured stream (TLS, cfg->stream_recv) cannot be read by the ring:
 * there the ring only polls the socket, and the records are drained
 * without blocking through the stream, whose buffered bytes are always
 * used up before the next poll; replies go through stream_sendv.
 */
#include <assert.h>
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "macro.h"
#include "nbd-proto.h"
#include "protocol.h"

#define RBUF_SIZE (128u << 10)
#define REPLY_BATCH 32
/* Tag buffers up to this size stay allocated for the next request... */
#define KEEP_BUF_MAX (1u << 20)
/* ...bigger ones only while the connection holds less than this. */
#define CACHE_BUDGET (64u << 20)
#define TICK_MS 1000
/* Send buffer per socket: a few 1 MiB replies. */
#define SOCKET_BUFFER (4 << 20)
/* Payloads at least this big are received straight into their buffer. */
#define DIRECT_RECV_MIN (32u << 10)
/* After such a payload, the next header is read with at most this many
 * bytes, so little of the next big payload goes through the receive
 * buffer (one copy more). */
#define SMALL_RECV (4u << 10)
#define REPLY_HDR_MAX 32
/* Reads at least this big may be sent straight from the backend's file
 * (sendfile): no copy into our buffer and out of it again.  Smaller ones
 * are cheaper copied and batched with other replies in one sendmsg(). */
#define MAP_READ_MIN (64u << 10)

enum rx_state {
	RX_HEADER,  /* waiting for a 28-byte request header */
	RX_PAYLOAD, /* receiving a WRITE payload into its tag's buffer */
	RX_DRAIN,   /* discarding the payload of a refused WRITE */
};

struct nbd_slot {
	uint64_t cookie; /* the client's bytes, echoed unchanged */
	uint64_t offset;
	uint32_t length;
	uint16_t cmd;
	int error; /* a refused WRITE: its payload is drained, then this is replied */
	char *buf;
	size_t cap;
	uint8_t hdr[REPLY_HDR_MAX];
};

struct nbd_conn {
	const struct nbd_conn_config *cfg;
	struct blkserv_device *dev;
	struct blkserv_queue *q;
	int fd;
	uint32_t depth;
	struct nbd_slot *slots;
	uint32_t *free_tags;
	uint32_t nfree;
	size_t cached_bytes; /* every tag buffer, busy or idle */
	uint64_t budget;     /* cfg->memory_budget */
	uint64_t precharged; /* daemon-wide charge of the buffer being admitted */
	uint64_t pressure_seen;
	bool budget_logged;

	char *rbuf;
	size_t rstart, rend;
	enum rx_state rx;
	uint32_t rx_tag;
	uint64_t rx_done, rx_left; /* payload bytes received and still to come */

	bool recv_armed;  /* a RECV is on the ring */
	bool recv_direct; /* ...into the payload's buffer, not the receive buffer */
	bool big_writes;  /* the last WRITE had a big payload: read headers in small bites */
	bool cancel_sent;
	bool rx_open;    /* false after DISC, end of file, a protocol error or a dead socket */
	bool draining;   /* drain_fd fired: stop reading at the next request boundary */
	bool recv_exact; /* the armed RECV asks for no byte beyond the current request */
	bool tx_dead;    /* replies cannot be sent any more */
	bool ring_warned;
	int result;
	struct blkserv_event recv_event;
	struct blkserv_event cancel_event;
	struct blkserv_event drain_event;

	struct iovec iov[2 * REPLY_BATCH];
	unsigned niov;
	uint32_t batch[REPLY_BATCH];
	unsigned nbatch;
};

static void submit(struct nbd_conn *c, uint32_t tag);
static void queue_reply(struct nbd_conn *c, uint32_t tag, int result);

/* ---- sockets ---------------------------------------------------------- */

void nbd_socket_tune(int fd)
{
	int size = SOCKET_BUFFER;

	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) < 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
}

/* ---- flags and errors ------------------------------------------------ */

uint16_t nbd_tx_flags(struct blkserv_device *dev, bool read_only)
{
	uint64_t caps = blkserv_device_caps(dev);
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_CAN_MULTI_CONN;

	if (caps & BLKSERV_CAP_FLUSH)
		f |= NBD_FLAG_SEND_FLUSH;
	if (caps & BLKSERV_CAP_FUA)
		f |= NBD_FLAG_SEND_FUA;
	if (caps & BLKSERV_CAP_ROTATIONAL)
		f |= NBD_FLAG_ROTATIONAL;
	if (read_only || (caps & BLKSERV_CAP_READ_ONLY))
		return f | NBD_FLAG_READ_ONLY;
	if (caps & BLKSERV_CAP_TRIM)
		f |= NBD_FLAG_SEND_TRIM;
	if (caps & BLKSERV_CAP_WRITE_ZEROES)
		f |= NBD_FLAG_SEND_WRITE_ZEROES;
	return f;
}

uint32_t nbd_wire_error(int err)
{
	switch (err < 0 ? -err : err) {
	case 0:
		return 0;
	case EPERM:
	case EROFS:
		return NBD_EPERM;
	case ENOMEM:
		return NBD_ENOMEM;
	case EINVAL:
	case EOPNOTSUPP: /* a command or flag that was not advertised */
		return NBD_EINVAL;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return NBD_ENOSPC;
	case EOVERFLOW:
		return NBD_EOVERFLOW;
	case ESHUTDOWN:
		return NBD_ESHUTDOWN;
	default:
		return NBD_EIO;
	}
}

/* The command flags valid for @cmd on this connection, or -1 if the
 * command itself is not (unknown or not advertised). */
static int allowed_flags(uint16_t tx, uint16_t cmd)
{
	int fua = (tx & NBD_FLAG_SEND_FUA) ? (int)NBD_CMD_FLAG_FUA : 0;

	switch (cmd) {
	case NBD_CMD_READ:
		return fua | ((tx & NBD_FLAG_SEND_DF) ? (int)NBD_CMD_FLAG_DF : 0);
	case NBD_CMD_WRITE:
		return fua;
	case NBD_CMD_FLUSH:
		return (tx & NBD_FLAG_SEND_FLUSH) ? fua : -1;
	case NBD_CMD_TRIM:
		return (tx & NBD_FLAG_SEND_TRIM) ? fua : -1;
	case NBD_CMD_WRITE_ZEROES:
		return (tx & NBD_FLAG_SEND_WRITE_ZEROES) ? fua | (int)NBD_CMD_FLAG_NO_HOLE : -1;
	default:
		return -1;
	}
}

static bool is_write_cmd(uint16_t cmd)
{
	return cmd == NBD_CMD_WRITE || cmd == NBD_CMD_TRIM || cmd == NBD_CMD_WRITE_ZEROES;
}

/* The checks only the NBD layer can make; the host checks range and caps. */
static int check_request(const struct nbd_conn *c, uint16_t cmd, uint16_t flags, uint64_t offset, uint32_t length)
{
	uint16_t tx = c->cfg->tx_flags;
	int allowed = allowed_flags(tx, cmd);

	if (allowed < 0 || (flags & ~allowed))
		return -EINVAL;
	if (is_write_cmd(cmd) && (tx & NBD_FLAG_READ_ONLY))
		return -EPERM;
	if (cmd == NBD_CMD_FLUSH)
		return 0;
	if ((cmd == NBD_CMD_READ || cmd == NBD_CMD_WRITE) && length > BLKSERV_MAX_IO_BYTES)
		return -EINVAL;
	if ((offset | length) & (c->cfg->min_block - 1))
		return -EINVAL;
	return 0;
}

/* ---- tags and their buffers ----------------------------------------- */

static uint32_t take_tag(struct nbd_conn *c)
{
	assert(c->nfree > 0); /* parse_step() waits for a free tag */
	return c->free_tags[--c->nfree];
}

static void drop_buffer(struct nbd_conn *c, struct nbd_slot *s)
{
	c->cached_bytes -= s->cap;
	if (c->cfg->shared_budget && s->cap)
		blkserv_payload_release(s->cap);
	free(s->buf);
	s->buf = NULL;
	s->cap = 0;
}

static void release_tag(struct nbd_conn *c, uint32_t tag)
{
	struct nbd_slot *s = &c->slots[tag];

	/* Keep the memory of big requests bounded, not their speed. */
	assert(tag < c->depth && c->nfree < c->depth);
	if (s->cap > KEEP_BUF_MAX && c->cached_bytes > CACHE_BUDGET)
		drop_buffer(c, s);
	c->free_tags[c->nfree++] = tag;
}

/* Only after admit(), which charged the daemon-wide budget for it. */
static int ensure_buffer(struct nbd_conn *c, struct nbd_slot *s)
{
	char *p;

	if (s->cap >= s->length)
		return 0;
	/* No realloc: the old contents do not matter. */
	p = malloc(s->length);
	if (!p)
		return -ENOMEM;
	drop_buffer(c, s);
	if (c->cfg->shared_budget && c->precharged != s->length)
		(void)blkserv_payload_charge(s->length, true); /* not admitted: cannot happen */
	c->precharged = 0;
	c->cached_bytes += s->length;
	s->buf = p;
	s->cap = s->length;
	return 0;
}

/* Free the buffers of idle tags, but @keep's, until the connection holds
 * at most @target bytes besides @keep's: cached buffers are a speed-up,
 * never a reason to make a request wait. */
static void trim_cache(struct nbd_conn *c, uint32_t keep, uint64_t target)
{
	uint64_t kept = keep < c->depth ? c->slots[keep].cap : 0;

	for (uint32_t i = 0; i < c->nfree && c->cached_bytes - kept > target; i++) {
		struct nbd_slot *s = &c->slots[c->free_tags[i]];

		if (c->free_tags[i] != keep && s->buf)
			drop_buffer(c, s);
	}
}

static void over_budget(struct nbd_conn *c, const char *which)
{
	if (c->budget_logged)
		return;
	blkserv_debug(c->dev, "%s: over %s: its requests wait until replies free memory", c->cfg->peer, which);
	c->budget_logged = true;
}

/*
 * May the request whose header @h is next be taken now?  Only a READ or
 * WRITE whose tag needs a bigger buffer can be refused: when that buffer
 * would take the connection over its budget, or the daemon over its
 * (which is then charged for it).  A connection holding no request is
 * always let on, whatever it would take.
 */
static bool admit(struct nbd_conn *c, const uint8_t *h)
{
	uint16_t cmd = get_be16(h + 6);
	uint32_t len = get_be32(h + 24);
	uint32_t tag = c->free_tags[c->nfree - 1];
	uint64_t cap = c->slots[tag].cap;
	bool holds = c->nfree < c->depth;

	if ((cmd != NBD_CMD_READ && cmd != NBD_CMD_WRITE) || len > BLKSERV_MAX_IO_BYTES || len <= cap)
		return true;
	if (c->cached_bytes - cap + len > c->budget)
		trim_cache(c, tag, c->budget > len ? c->budget - len : 0);
	if (holds && c->cached_bytes - cap + len > c->budget) {
		over_budget(c, "its memory budget");
		return false;
	}
	if (!c->cfg->shared_budget)
		return true;
	if (!blkserv_payload_charge(len, false)) {
		trim_cache(c, tag, 0); /* what we cache is charged too */
		if (!blkserv_payload_charge(len, !holds)) {
			over_budget(c, "the daemon-wide request_memory");
			return false;
		}
	}
	c->precharged = len;
	return true;
}

/* Another connection waits for the daemon-wide budget: give back what
 * our idle tags cache. */
static void relieve_pressure(struct nbd_conn *c)
{
	uint64_t p = blkserv_payload_pressure();

	if (p == c->pressure_seen)
		return;
	c->pressure_seen = p;
	trim_cache(c, UINT32_MAX, 0);
}

/* ---- replies ------------------------------------------------------------ */

static void stop_receiving(struct nbd_conn *c, int result)
{
	c->rx_open = false;
	if (c->result == 0)
		c->result = result;
}

static void send_failed(struct nbd_conn *c, int err)
{
	if (err != -EPIPE && err != -ECONNRESET)
		(void)blkserv_warning_errno(c->dev, err, "%s: cannot send replies: %m", c->cfg->peer);
	c->tx_dead = true;
	stop_receiving(c, err);
}

static void consume_iov(struct msghdr *m, size_t n)
{
	while (n > 0 && m->msg_iovlen > 0) {
		struct iovec *v = m->msg_iov;
		size_t k = n < v->iov_len ? n : v->iov_len;

		v->iov_base = (char *)v->iov_base + k;
		v->iov_len -= k;
		n -= k;
		if (v->iov_len == 0) {
			m->msg_iov++;
			m->msg_iovlen--;
		}
	}
}

static void flush_stream(struct nbd_conn *c)
{
	int r = c->niov ? c->cfg->stream_sendv(c->cfg->stream, c->iov, c->niov) : 0;

	if (r < 0)
		send_failed(c, r);
}

/* Write every gathered reply whole (stream sockets may take part of it). */
static void flush_replies(struct nbd_conn *c)
{
	struct msghdr m = { .msg_iov = c->iov, .msg_iovlen = c->niov };

	if (c->cfg->stream_sendv && !c->tx_dead) {
		flush_stream(c);
		m.msg_iovlen = 0;
	}
	while (m.msg_iovlen > 0 && !c->tx_dead) {
		ssize_t n = sendmsg(c->fd, &m, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			send_failed(c, -errno);
			break;
		}
		consume_iov(&m, (size_t)n);
	}
	for (unsigned i = 0; i < c->nbatch; i++)
		release_tag(c, c->batch[i]);
	c->nbatch = c->niov = 0;
}

static size_t encode_simple(struct nbd_slot *s, uint32_t error)
{
	put_be32(s->hdr, NBD_SIMPLE_REPLY_MAGIC);
	put_be32(s->hdr + 4, error);
	memcpy(s->hdr + 8, &s->cookie, 8);
	return NBD_SIMPLE_REPLY_SIZE;
}

/* A READ once structured replies are on: one chunk, data or error, DONE. */
static size_t encode_structured_read(struct nbd_slot *s, uint32_t error)
{
	uint8_t *h = s->hdr;

	put_be32(h, NBD_STRUCTURED_REPLY_MAGIC);
	put_be16(h + 4, NBD_REPLY_FLAG_DONE);
	memcpy(h + 8, &s->cookie, 8);
	if (error) {
		put_be16(h + 6, NBD_REPLY_TYPE_ERROR);
		put_be32(h + 16, 6);
		put_be32(h + 20, error);
		put_be16(h + 24, 0); /* no message */
		return NBD_STRUCTURED_REPLY_SIZE + 6;
	}
	put_be16(h + 6, NBD_REPLY_TYPE_OFFSET_DATA);
	put_be32(h + 16, 8 + s->length);
	put_be64(h + 20, s->offset);
	return NBD_STRUCTURED_REPLY_SIZE + 8;
}

/* Everything gathered so far and @tag's reply header go out, then the
 * read's bytes from the backend's file.  A failure after the header has
 * promised the bytes breaks the stream: the connection ends. */
static void send_mapped_reply(struct nbd_conn *c, uint32_t tag, size_t hdr_len, int fd, uint64_t offset)
{
	struct nbd_slot *s = &c->slots[tag];
	off_t pos = (off_t)offset;
	size_t left = s->length;

	c->iov[c->niov++] = (struct iovec){ s->hdr, hdr_len };
	flush_replies(c);
	while (left > 0 && !c->tx_dead) {
		ssize_t n = sendfile(c->fd, fd, &pos, left);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			send_failed(c, n < 0 ? -errno : -EIO);
			/* The header promised bytes that will not come: end
			 * the stream now, so the client does not wait. */
			shutdown(c->fd, SHUT_RDWR);
			break;
		}
		left -= (size_t)n;
	}
	release_tag(c, tag);
}

static void queue_reply(struct nbd_conn *c, uint32_t tag, int result)
{
	struct nbd_slot *s = &c->slots[tag];
	uint32_t error = nbd_wire_error(result);
	bool data = s->cmd == NBD_CMD_READ && error == 0;
	const struct blkserv_request *req = data ? blkserv_queue_request(c->q, tag) : NULL;
	size_t len;

	if (c->tx_dead) {
		release_tag(c, tag);
		return;
	}
	if (s->cmd == NBD_CMD_READ && c->cfg->structured)
		len = encode_structured_read(s, error);
	else
		len = encode_simple(s, error);
	if (data && req->map_fd >= 0) {
		send_mapped_reply(c, tag, len, req->map_fd, req->map_offset);
		return;
	}
	c->iov[c->niov++] = (struct iovec){ s->hdr, len };
	if (data)
		c->iov[c->niov++] = (struct iovec){ s->buf, s->length };
	c->batch[c->nbatch++] = tag;
	if (c->nbatch == REPLY_BATCH)
		flush_replies(c);
}

static void on_done(struct blkserv_request *req, int result)
{
	queue_reply(req->frontend_data, req->tag, result);
}

/* ---- requests ------------------------------------------------------------ */

/* The host operation of NBD command @cmd, or -EINVAL for a command with
 * none.  check_request() refuses those first; this is the second line, so
 * that no unknown value ever becomes a data-changing operation. */
static int op_of(uint16_t cmd)
{
	switch (cmd) {
	case NBD_CMD_READ:
		return BLKSERV_OP_READ;
	case NBD_CMD_WRITE:
		return BLKSERV_OP_WRITE;
	case NBD_CMD_FLUSH:
		return BLKSERV_OP_FLUSH;
	case NBD_CMD_TRIM:
		return BLKSERV_OP_TRIM;
	case NBD_CMD_WRITE_ZEROES:
		return BLKSERV_OP_WRITE_ZEROES;
	default:
		return -EINVAL;
	}
}

static uint32_t req_flags_of(uint16_t cmd, uint16_t flags)
{
	uint32_t f = 0;

	/* FUA is accepted on every command but means something only where
	 * data is written. */
	if ((flags & NBD_CMD_FLAG_FUA) && is_write_cmd(cmd))
		f |= BLKSERV_REQ_FUA;
	if (flags & NBD_CMD_FLAG_NO_HOLE)
		f |= BLKSERV_REQ_NO_HOLE;
	return f;
}

static void submit(struct nbd_conn *c, uint32_t tag)
{
	struct nbd_slot *s = &c->slots[tag];
	struct blkserv_request *req = blkserv_queue_request(c->q, tag);
	bool data = s->cmd == NBD_CMD_READ || s->cmd == NBD_CMD_WRITE;
	int op = op_of(s->cmd);

	if (op < 0) {
		queue_reply(c, tag, op);
		return;
	}
	req->op = (uint32_t)op;
	req->offset = s->cmd == NBD_CMD_FLUSH ? 0 : s->offset;
	req->length = s->cmd == NBD_CMD_FLUSH ? 0 : s->length;
	req->buf = data ? s->buf : NULL;
	req->done = on_done;
	req->frontend_data = c;
	blkserv_submit(req);
}

static void protocol_error(struct nbd_conn *c, const char *what, uint32_t value)
{
	blkserv_error(c->dev, "%s: %s 0x%08x: closing the connection", c->cfg->peer, what, value);
	stop_receiving(c, -EPROTO);
}

static void payload_done(struct nbd_conn *c)
{
	struct nbd_slot *s = &c->slots[c->rx_tag];

	c->rx = RX_HEADER;
	if (s->error)
		queue_reply(c, c->rx_tag, s->error);
	else
		submit(c, c->rx_tag);
}

/* A WRITE header: receive its payload, or drain it when refused, so the
 * stream stays in step either way. */
static void start_write(struct nbd_conn *c, uint32_t tag, int error)
{
	struct nbd_slot *s = &c->slots[tag];

	if (error == 0)
		error = ensure_buffer(c, s);
	s->error = error;
	c->rx_tag = tag;
	c->rx_done = 0;
	c->rx_left = s->length;
	c->rx = error ? RX_DRAIN : RX_PAYLOAD;
	c->big_writes = s->length >= DIRECT_RECV_MIN;
}

static void handle_header(struct nbd_conn *c, const uint8_t *h)
{
	uint32_t magic = get_be32(h);
	uint16_t flags = get_be16(h + 4);
	uint16_t cmd = get_be16(h + 6);
	struct blkserv_request *req;
	struct nbd_slot *s;
	uint32_t tag;
	int r;

	if (magic != NBD_REQUEST_MAGIC) {
		protocol_error(c, "bad request magic", magic);
		return;
	}
	if (cmd == NBD_CMD_DISC) {
		/* Finish what is in flight, then close. */
		stop_receiving(c, NBD_SERVE_DISC);
		return;
	}
	tag = take_tag(c);
	s = &c->slots[tag];
	memcpy(&s->cookie, h + 8, 8);
	s->offset = get_be64(h + 16);
	s->length = get_be32(h + 24);
	s->cmd = cmd;
	r = check_request(c, cmd, flags, s->offset, s->length);
	req = blkserv_queue_request(c->q, tag);
	req->flags = req_flags_of(cmd, flags);
	/* Not through a secured stream: its records are encrypted here. */
	if (cmd == NBD_CMD_READ && s->length >= MAP_READ_MIN && !c->cfg->stream_sendv)
		req->flags |= BLKSERV_REQ_MAP_OK;
	if (cmd == NBD_CMD_WRITE) {
		start_write(c, tag, r);
		return;
	}
	if (r == 0 && cmd == NBD_CMD_READ)
		r = ensure_buffer(c, s);
	if (r < 0)
		queue_reply(c, tag, r);
	else
		submit(c, tag);
}

/* ---- receiving ----------------------------------------------------------- */

/* Use what the receive buffer holds; false if nothing in it can be used
 * now (incomplete, or no free tag for the next request). */
static bool parse_step(struct nbd_conn *c)
{
	size_t avail = c->rend - c->rstart;
	size_t n;

	if (c->rx != RX_HEADER && c->rx_left == 0) {
		payload_done(c);
		return true;
	}
	if (c->rx == RX_HEADER) {
		if (avail < NBD_REQUEST_SIZE)
			return false;
		if (c->nfree == 0 && c->nbatch > 0)
			flush_replies(c); /* tags wait in the reply batch */
		if (c->nfree == 0)
			return false;
		if (!admit(c, (const uint8_t *)c->rbuf + c->rstart)) {
			if (c->nbatch == 0)
				return false; /* wait for a completion */
			flush_replies(c);     /* replies in the batch hold buffers */
			if (!admit(c, (const uint8_t *)c->rbuf + c->rstart))
				return false;
		}
		c->rstart += NBD_REQUEST_SIZE;
		handle_header(c, (const uint8_t *)c->rbuf + c->rstart - NBD_REQUEST_SIZE);
		if (c->precharged) { /* refused: it took no buffer */
			blkserv_payload_release(c->precharged);
			c->precharged = 0;
		}
		return true;
	}
	if (avail == 0)
		return false;
	n = avail < c->rx_left ? avail : (size_t)c->rx_left;
	if (c->rx == RX_PAYLOAD)
		memcpy(c->slots[c->rx_tag].buf + c->rx_done, c->rbuf + c->rstart, n);
	c->rstart += n;
	c->rx_done += n;
	c->rx_left -= n;
	return true;
}

static void parse(struct nbd_conn *c)
{
	while (c->rx_open && parse_step(c))
		;
}

/* More bytes are needed to go on (and, for a header, a tag to put it in). */
static bool needs_data(const struct nbd_conn *c)
{
	size_t avail = c->rend - c->rstart;

	if (!c->rx_open || c->recv_armed)
		return false;
	if (c->rx == RX_HEADER)
		/* Draining, only the rest of a header already begun. */
		return avail < NBD_REQUEST_SIZE && c->nfree > 0 && (!c->draining || avail > 0);
	return avail == 0 && c->rx_left > 0;
}

/* Draining, and the stream stands at a request header nobody read. */
static bool drained(const struct nbd_conn *c)
{
	return c->draining && c->rx_open && !c->recv_armed && c->rx == RX_HEADER && c->rend == c->rstart;
}

static void end_of_stream(struct nbd_conn *c, int err)
{
	bool mid_request = c->rx != RX_HEADER || c->rend > c->rstart;

	if (mid_request)
		blkserv_warning(c->dev, "%s: connection closed in the middle of a request", c->cfg->peer);
	else if (err && err != -ECONNRESET)
		(void)blkserv_warning_errno(c->dev, err, "%s: cannot receive: %m", c->cfg->peer);
	stop_receiving(c, err == -ECONNRESET ? 0 : err);
}

static void on_recv(struct blkserv_event *ev, int32_t res, uint32_t cqe_flags)
{
	struct nbd_conn *c = container_of(ev, struct nbd_conn, recv_event);

	c->recv_armed = false;
	if (res == -EINTR || res == -EAGAIN || (res == -ECANCELED && (!c->rx_open || c->draining)))
		return; /* armed again, or not needed any more */
	if (res <= 0) {
		end_of_stream(c, res);
		return;
	}
	if (c->recv_direct) {
		c->rx_done += (uint64_t)res;
		c->rx_left -= (uint64_t)res;
	} else {
		c->rend += (size_t)res;
	}
}

/* The socket of a secured stream is readable (or hung up): the next
 * stream read says which. */
static void on_poll(struct blkserv_event *ev, int32_t res, uint32_t cqe_flags)
{
	struct nbd_conn *c = container_of(ev, struct nbd_conn, recv_event);

	c->recv_armed = false;
	if (res == -EINTR || res == -EAGAIN || (res == -ECANCELED && !c->rx_open))
		return;
	if (res < 0)
		end_of_stream(c, res);
}

static void make_room(struct nbd_conn *c)
{
	size_t avail = c->rend - c->rstart;

	if (avail == 0) {
		c->rstart = c->rend = 0;
	} else if (RBUF_SIZE - c->rend < NBD_REQUEST_SIZE) {
		memmove(c->rbuf, c->rbuf + c->rstart, avail);
		c->rstart = 0;
		c->rend = avail;
	}
}

/* Draining: no more than the request being received still needs. */
static size_t exact_room(const struct nbd_conn *c, size_t room)
{
	uint64_t need = c->rx == RX_HEADER ? NBD_REQUEST_SIZE - (c->rend - c->rstart) : c->rx_left;

	return need < room ? (size_t)need : room;
}

/*
 * One receive on the ring.  A big payload goes straight into its tag's
 * buffer, whole (MSG_WAITALL: the ring gathers the pieces without waking
 * us); anything else into the receive buffer, as much as has arrived.
 */
static bool arm_recv(struct nbd_conn *c)
{
	struct io_uring_sqe *sqe = blkserv_queue_get_sqe(c->q);

	if (!sqe)
		return false;
	c->recv_direct = c->rx == RX_PAYLOAD && c->rx_left >= DIRECT_RECV_MIN;
	c->recv_exact = c->draining;
	c->cancel_sent = false;
	if (c->cfg->stream_recv) {
		io_uring_prep_poll_add(sqe, c->fd, POLLIN);
	} else if (c->recv_direct) {
		io_uring_prep_recv(sqe, c->fd, c->slots[c->rx_tag].buf + c->rx_done, c->rx_left, MSG_WAITALL);
	} else {
		size_t room;

		make_room(c);
		room = RBUF_SIZE - c->rend;
		if (c->big_writes && c->rx == RX_HEADER && room > SMALL_RECV)
			room = SMALL_RECV;
		if (c->draining)
			room = exact_room(c, room);
		io_uring_prep_recv(sqe, c->fd, c->rbuf + c->rend, room, 0);
	}
	blkserv_sqe_set_event(sqe, &c->recv_event);
	c->recv_armed = true;
	return true;
}

/* One read from a secured stream, into the same places a RECV would
 * fill; false when it has nothing now (wait for the socket). */
static bool stream_receive(struct nbd_conn *c)
{
	bool direct = c->rx == RX_PAYLOAD && c->rx_left >= DIRECT_RECV_MIN;
	char *buf;
	size_t room;
	ssize_t n;

	if (direct) {
		buf = c->slots[c->rx_tag].buf + c->rx_done;
		room = c->rx_left;
	} else {
		make_room(c);
		buf = c->rbuf + c->rend;
		room = RBUF_SIZE - c->rend;
	}
	n = c->cfg->stream_recv(c->cfg->stream, buf, room);
	if (n == -EAGAIN)
		return false;
	if (n <= 0) {
		end_of_stream(c, (int)n);
		return true;
	}
	if (direct) {
		c->rx_done += (uint64_t)n;
		c->rx_left -= (uint64_t)n;
	} else {
		c->rend += (size_t)n;
	}
	return true;
}

/* ---- the loop -------------------------------------------------------------- */

static void on_cancelled(struct blkserv_event *ev, int32_t res, uint32_t cqe_flags)
{
}

/* The receive must end before its buffers go away. */
static void cancel_recv(struct nbd_conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->cancel_sent)
		return;
	sqe = blkserv_queue_get_sqe(c->q);
	if (!sqe)
		return;
	io_uring_prep_cancel(sqe, &c->recv_event, 0);
	blkserv_sqe_set_event(sqe, &c->cancel_event);
	c->cancel_sent = true;
}

static void wait_for_events(struct nbd_conn *c)
{
	unsigned min_events = 1;
	int timeout = TICK_MS;
	int r;

	if (needs_data(c)) {
		/* A stream may hold decrypted bytes the socket no longer shows:
		 * use them, and only collect what completed meanwhile. */
		if (c->cfg->stream_recv && stream_receive(c))
			min_events = 0;
		else if (!arm_recv(c))
			timeout = 1; /* ring full: retry soon */
	}
	/* A receive armed before the drain may take bytes past the boundary:
	 * cancel it (what it already took is used, the rest stays unread). */
	if (c->recv_armed && (!c->rx_open || (c->draining && !c->recv_exact)))
		cancel_recv(c);
	r = blkserv_queue_process(c->q, min_events, timeout);
	if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY && !c->ring_warned) {
		(void)blkserv_warning_errno(c->dev, r, "%s: queue processing failed: %m", c->cfg->peer);
		c->ring_warned = true;
	}
	blkserv_queue_heartbeat(c->q);
}

static void on_drain(struct blkserv_event *ev, int32_t res, uint32_t cqe_flags)
{
	struct nbd_conn *c = container_of(ev, struct nbd_conn, drain_event);

	if (res > 0)
		c->draining = true;
}

/* Watch the drain eventfd on the ring.  The poll stays armed until the
 * ring is torn down: it has no buffer that could go away under it. */
static void arm_drain(struct nbd_conn *c)
{
	struct io_uring_sqe *sqe;

	if (!c->cfg->drainable || c->cfg->stream_recv || c->cfg->drain_fd < 0)
		return;
	sqe = blkserv_queue_get_sqe(c->q);
	if (!sqe)
		return; /* a fresh ring: cannot happen */
	io_uring_prep_poll_add(sqe, c->cfg->drain_fd, POLLIN);
	blkserv_sqe_set_event(sqe, &c->drain_event);
}

static void serve_loop(struct nbd_conn *c)
{
	arm_drain(c);
	for (;;) {
		parse(c);
		flush_replies(c);
		if (c->cfg->shared_budget)
			relieve_pressure(c);
		if (drained(c))
			stop_receiving(c, NBD_SERVE_DRAINED);
		if (!c->rx_open && !c->recv_armed && blkserv_queue_inflight(c->q) == 0 && c->nbatch == 0)
			return;
		wait_for_events(c);
	}
}

/* ---- setup ------------------------------------------------------------------ */

static void conn_free(struct nbd_conn *c)
{
	if (c->slots)
		for (uint32_t i = 0; i < c->depth; i++)
			drop_buffer(c, &c->slots[i]);
	free(c->slots);
	free(c->free_tags);
	free(c->rbuf);
}

static int conn_init(struct nbd_conn *c, const struct nbd_conn_config *cfg, int fd)
{
	*c = (struct nbd_conn){
		.cfg = cfg,
		.dev = cfg->dev,
		.fd = fd,
		.depth = NBD_KERNEL_QUEUE_DEPTH,
		.budget = cfg->memory_budget ? cfg->memory_budget : NBD_CONN_MEMORY_DEFAULT,
		.pressure_seen = blkserv_payload_pressure(),
		.rx_open = true,
		.recv_event.fn = cfg->stream_recv ? on_poll : on_recv,
		.cancel_event.fn = on_cancelled,
		.drain_event.fn = on_drain,
	};
	c->slots = calloc(c->depth, sizeof(*c->slots));
	c->free_tags = calloc(c->depth, sizeof(*c->free_tags));
	c->rbuf = malloc(RBUF_SIZE);
	if (!c->slots || !c->free_tags || !c->rbuf)
		return -ENOMEM;
	/* Hand out low tags first: their buffers are the warm ones. */
	for (uint32_t i = 0; i < c->depth; i++)
		c->free_tags[c->nfree++] = c->depth - 1 - i;
	return 0;
}

int nbd_conn_serve(const struct nbd_conn_config *cfg, int fd)
{
	struct nbd_conn c;
	int r;

	r = conn_init(&c, cfg, fd);
	if (r >= 0)
		r = blkserv_queue_new(cfg->dev, c.depth, 0, &c.q);
	if (cfg->ready)
		cfg->ready(cfg->opaque, r);
	if (r < 0) {
		(void)blkserv_error_errno(cfg->dev, r, "%s: cannot create a queue: %m", cfg->peer);
		conn_free(&c);
		return r;
	}
	serve_loop(&c);
	blkserv_queue_free(c.q);
	conn_free(&c);
	return c.result;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * handshake.c: the fixed-newstyle negotiation (proto.md "Handshake").
 *
 * Supported options: EXPORT_NAME, ABORT, LIST, INFO, GO,
 * STRUCTURED_REPLY and, when the export has TLS, STARTTLS; every other
 * option gets NBD_REP_ERR_UNSUP and the negotiation goes on.  With TLS
 * required, every option but STARTTLS and ABORT is refused with
 * NBD_REP_ERR_TLS_REQD (EXPORT_NAME, which cannot be refused, hangs up)
 * until the TLS handshake is done, so nothing about the export, let alone
 * its data, reaches a client in the clear.  A client that breaks a MUST (bad magic, unknown
 * client flags, an oversized option) is disconnected; nothing it sends can
 * affect another client.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "cleanup.h"
#include "handshake.h"
#include "nbd-proto.h"

/* Larger options are not a client we want to talk to. */
#define OPT_MAX_LEN (NBD_MAX_STRING + 4096)

struct hs {
	int fd;
	const struct nbd_export *e;
	const char *peer;
	bool no_zeroes;
	bool structured;
	struct nbd_tls_session *tls; /* after STARTTLS */
	uint8_t *data;               /* the current option's data */
	uint32_t opt;
	uint32_t len;
};

/* ---- blocking socket I/O ---------------------------------------------- */

static int recv_all(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len > 0) {
		ssize_t n = recv(fd, p, len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno; /* EWOULDBLOCK is EAGAIN */
		if (n == 0)
			return -ECONNABORTED;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EPIPE || errno == ECONNRESET ? -ECONNABORTED : -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void set_timeout(int fd, unsigned seconds)
{
	struct timeval tv = { .tv_sec = seconds };

	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Through TLS once it is on. */
static int hs_recv(struct hs *h, void *buf, size_t len)
{
	return h->tls ? nbd_tls_recv_all(h->tls, buf, len) : recv_all(h->fd, buf, len);
}

static int hs_send(struct hs *h, const void *buf, size_t len)
{
	return h->tls ? nbd_tls_send_all(h->tls, buf, len) : send_all(h->fd, buf, len);
}

/* ---- option replies --------------------------------------------------- */

static int reply(struct hs *h, uint32_t type, const void *data, uint32_t len)
{
	uint8_t hdr[20];
	int r;

	put_be64(hdr, NBD_REP_MAGIC);
	put_be32(hdr + 8, h->opt);
	put_be32(hdr + 12, type);
	put_be32(hdr + 16, len);
	r = hs_send(h, hdr, sizeof(hdr));
	if (r >= 0 && len > 0)
		r = hs_send(h, data, len);
	return r;
}

static int reply_error(struct hs *h, uint32_t type, const char *msg)
{
	return reply(h, type, msg, (uint32_t)strlen(msg));
}

static int protocol_error(struct hs *h, const char *what)
{
	blkserv_warning(h->e->dev, "%s: %s: closing the connection", h->peer, what);
	return -EPROTO;
}

static bool name_matches(const struct nbd_export *e, const uint8_t *name, uint32_t len)
{
	/* The empty name is the default export, which is this device. */
	return len == 0 || (len == strlen(e->name) && memcmp(name, e->name, len) == 0);
}

static uint16_t tx_flags(const struct hs *h)
{
	/* One chunk per read, always: DF is honoured for free. */
	return h->e->tx_flags | (h->structured ? NBD_FLAG_SEND_DF : 0);
}

/* ---- the options ------------------------------------------------------ */

static int opt_export_name(struct hs *h)
{
	uint8_t buf[10 + 124] = { 0 };

	if (!name_matches(h->e, h->data, h->len)) {
		/* No way to say no to EXPORT_NAME but hanging up. */
		blkserv_info(h->e->dev, "%s: asked for unknown export '%.*s'", h->peer,
			     (int)(h->len > 64 ? 64 : h->len), (const char *)h->data);
		return -ECONNABORTED;
	}
	h->structured = false; /* EXPORT_NAME has no way to confirm it */
	put_be64(buf, h->e->size);
	put_be16(buf + 8, tx_flags(h));
	return hs_send(h, buf, h->no_zeroes ? 10 : sizeof(buf));
}

static int opt_list(struct hs *h)
{
	size_t n = strlen(h->e->name);
	_cleanup_free_ uint8_t *buf = NULL;
	int r;

	if (h->len != 0)
		return reply_error(h, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
	buf = malloc(4 + n);
	if (!buf)
		return -ENOMEM;
	put_be32(buf, (uint32_t)n);
	memcpy(buf + 4, h->e->name, n);
	r = reply(h, NBD_REP_SERVER, buf, (uint32_t)(4 + n));
	return r < 0 ? r : reply(h, NBD_REP_ACK, NULL, 0);
}

static int opt_structured_reply(struct hs *h)
{
	if (h->len != 0)
		return reply_error(h, NBD_REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data");
	h->structured = true;
	return reply(h, NBD_REP_ACK, NULL, 0);
}

static int send_info_string(struct hs *h, uint16_t type, const char *s)
{
	size_t n = strlen(s);
	_cleanup_free_ uint8_t *buf = malloc(2 + n);

	if (!buf)
		return -ENOMEM;
	put_be16(buf, type);
	memcpy(buf + 2, s, n);
	return reply(h, NBD_REP_INFO, buf, (uint32_t)(2 + n));
}

static int send_info_export(struct hs *h)
{
	uint8_t buf[12];

	put_be16(buf, NBD_INFO_EXPORT);
	put_be64(buf + 2, h->e->size);
	put_be16(buf + 10, tx_flags(h));
	return reply(h, NBD_REP_INFO, buf, sizeof(buf));
}

static int send_info_block_size(struct hs *h)
{
	uint8_t buf[14];

	put_be16(buf, NBD_INFO_BLOCK_SIZE);
	put_be32(buf + 2, h->e->min_block);
	put_be32(buf + 6, h->e->pref_block);
	put_be32(buf + 10, h->e->max_block);
	return reply(h, NBD_REP_INFO, buf, sizeof(buf));
}

/* The information items the client asked for, beyond the ones always sent. */
static int send_requested_info(struct hs *h, const uint8_t *reqs, uint16_t nreqs)
{
	int r = 0;

	for (uint16_t i = 0; i < nreqs && r >= 0; i++) {
		uint16_t type = get_be16(reqs + 2 * i);

		if (type == NBD_INFO_NAME)
			r = send_info_string(h, NBD_INFO_NAME, h->e->name);
		else if (type == NBD_INFO_DESCRIPTION && h->e->description)
			r = send_info_string(h, NBD_INFO_DESCRIPTION, h->e->description);
	}
	return r;
}

/* INFO and GO: 0 (and *ret_go) or -errno; errors replied are 0. */
static int opt_info_go(struct hs *h, bool *ret_go)
{
	uint32_t namelen;
	uint16_t nreqs;
	int r;

	if (h->len < 6)
		return reply_error(h, NBD_REP_ERR_INVALID, "option data too short");
	namelen = get_be32(h->data);
	if (namelen > h->len - 6)
		return reply_error(h, NBD_REP_ERR_INVALID, "export name longer than the option");
	nreqs = get_be16(h->data + 4 + namelen);
	if (h->len != 6 + namelen + 2u * nreqs)
		return reply_error(h, NBD_REP_ERR_INVALID, "option length does not match its contents");
	if (!name_matches(h->e, h->data + 4, namelen))
		return reply_error(h, NBD_REP_ERR_UNKNOWN, "no such export");
	r = send_info_export(h);
	if (r >= 0)
		r = send_info_block_size(h);
	if (r >= 0)
		r = send_requested_info(h, h->data + 6 + namelen, nreqs);
	if (r >= 0)
		r = reply(h, NBD_REP_ACK, NULL, 0);
	*ret_go = r >= 0 && h->opt == NBD_OPT_GO;
	return r;
}

/* ACK in the clear, then the TLS handshake; what was negotiated before
 * is forgotten (proto.md: "all prior negotiation state discarded"). */
static int opt_starttls(struct hs *h)
{
	int r;

	if (!h->e->tls)
		return reply_error(h, NBD_REP_ERR_UNSUP, "TLS is not configured on this export");
	if (h->tls)
		return reply_error(h, NBD_REP_ERR_INVALID, "TLS is already on");
	if (h->len != 0)
		return reply_error(h, NBD_REP_ERR_INVALID, "NBD_OPT_STARTTLS takes no data");
	r = reply(h, NBD_REP_ACK, NULL, 0);
	if (r < 0)
		return r;
	r = nbd_tls_accept(h->e->tls, h->fd, h->peer, &h->tls);
	if (r < 0)
		return r;
	h->structured = false;
	return 0;
}

/* TLS required and not on yet: only STARTTLS and ABORT are for us.
 * 1: handled here (refused), 0: go on with the option. */
static int refuse_before_tls(struct hs *h, int *ret)
{
	if (h->tls || nbd_tls_mode(h->e->tls) != NBD_TLS_REQUIRE)
		return 0;
	if (h->opt == NBD_OPT_STARTTLS || h->opt == NBD_OPT_ABORT)
		return 0;
	if (h->opt == NBD_OPT_EXPORT_NAME) {
		blkserv_info(h->e->dev, "%s: NBD_OPT_EXPORT_NAME without TLS, which is required: closing", h->peer);
		*ret = -ECONNABORTED;
		return 1;
	}
	*ret = reply_error(h, NBD_REP_ERR_TLS_REQD, "this export requires TLS: use NBD_OPT_STARTTLS");
	return 1;
}

/* One option: <0 ends the handshake in failure, 1 enters transmission. */
static int handle_option(struct hs *h)
{
	bool go = false;
	int r;

	if (refuse_before_tls(h, &r))
		return r;
	switch (h->opt) {
	case NBD_OPT_EXPORT_NAME:
		r = opt_export_name(h);
		return r < 0 ? r : 1;
	case NBD_OPT_ABORT:
		(void)reply(h, NBD_REP_ACK, NULL, 0);
		return -ECONNABORTED;
	case NBD_OPT_LIST:
		return opt_list(h);
	case NBD_OPT_STRUCTURED_REPLY:
		return opt_structured_reply(h);
	case NBD_OPT_STARTTLS:
		return opt_starttls(h);
	case NBD_OPT_INFO:
	case NBD_OPT_GO:
		r = opt_info_go(h, &go);
		return r < 0 ? r : go;
	default:
		return reply_error(h, NBD_REP_ERR_UNSUP, "option not supported by blkservd");
	}
}

static int read_option(struct hs *h)
{
	uint8_t hdr[16];
	int r = hs_recv(h, hdr, sizeof(hdr));

	if (r < 0)
		return r;
	if (get_be64(hdr) != NBD_OPTS_MAGIC)
		return protocol_error(h, "bad option magic");
	h->opt = get_be32(hdr + 8);
	h->len = get_be32(hdr + 12);
	if (h->len > OPT_MAX_LEN)
		return protocol_error(h, "option data too long");
	return h->len ? hs_recv(h, h->data, h->len) : 0;
}

static int greet(struct hs *h)
{
	uint8_t buf[18];
	uint32_t client_flags;
	int r;

	put_be64(buf, NBD_INIT_MAGIC);
	put_be64(buf + 8, NBD_OPTS_MAGIC);
	put_be16(buf + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	r = send_all(h->fd, buf, sizeof(buf));
	if (r >= 0)
		r = recv_all(h->fd, buf, 4);
	if (r < 0)
		return r;
	client_flags = get_be32(buf);
	if (client_flags & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES))
		return protocol_error(h, "unknown client flags");
	h->no_zeroes = client_flags & NBD_FLAG_C_NO_ZEROES;
	return 0;
}

int nbd_handshake(int fd, const struct nbd_export *e, const char *peer, unsigned timeout_s, struct nbd_negotiated *ret)
{
	_cleanup_free_ uint8_t *data = malloc(OPT_MAX_LEN);
	struct hs h = { .fd = fd, .e = e, .peer = peer, .data = data };
	int r;

	if (!data)
		return -ENOMEM;
	set_timeout(fd, timeout_s);
	r = greet(&h);
	while (r == 0) {
		r = read_option(&h);
		if (r >= 0)
			r = handle_option(&h);
	}
	set_timeout(fd, 0);
	if (r < 0) {
		nbd_tls_session_end(h.tls);
		return r;
	}
	ret->structured = h.structured;
	ret->tx_flags = tx_flags(&h);
	ret->tls = h.tls;
	return 0;
}

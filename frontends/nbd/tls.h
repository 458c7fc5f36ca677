/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tls.h: TLS for the network export (NBD_OPT_STARTTLS) with GnuTLS. */
#ifndef BLKSERV_NBD_TLS_H
#define BLKSERV_NBD_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "blkserv/blkserv-plugin.h"

enum nbd_tls_mode {
	NBD_TLS_OFF,     /* STARTTLS is answered with ERR_UNSUP */
	NBD_TLS_ALLOW,   /* clients choose */
	NBD_TLS_REQUIRE, /* nothing but STARTTLS and ABORT before TLS */
};

/* The export's TLS options, as configured (strings owned by the caller). */
struct nbd_tls_options {
	const char *mode;        /* "require", "allow", "off" */
	const char *certificate; /* X.509 certificate chain (PEM) */
	const char *key;         /* its private key (PEM) */
	const char *ca;          /* CA to verify client certificates with: set => required */
	const char *psk_file;    /* "username:hexkey" lines (psktool) */
	const char *priority;    /* a GnuTLS priority string */
};

#define NBD_TLS_DEFAULT_PRIORITY "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
/* Added to the priority string when a PSK file is configured. */
#define NBD_TLS_PSK_PRIORITY ":+ECDHE-PSK:+DHE-PSK:+PSK"

/* The server credentials, shared by every client of an export. */
struct nbd_tls;

/*
 * Check @o and load the credentials it names.  *ret is NULL with mode
 * "off".  -EINVAL (with a logged error naming the option or the file) for
 * a bad mode, missing credentials, an unreadable or malformed file or a bad
 * priority string; -ENOMEM.
 */
int nbd_tls_new(struct blkserv_device *dev, const struct nbd_tls_options *o, struct nbd_tls **ret);
/*
 * The same checks and loads without keeping anything, for the validate
 * step: 0, or -EINVAL with the option at fault (NULL: the section) in
 * *ret_option and what is wrong in @msg; -ENOMEM.
 */
int nbd_tls_check(const struct nbd_tls_options *o, const char **ret_option, char *msg, size_t len);
void nbd_tls_free(struct nbd_tls *t);
enum nbd_tls_mode nbd_tls_mode(const struct nbd_tls *t); /* NULL: off */

/* One client's TLS session. */
struct nbd_tls_session;

/*
 * The server side of a TLS handshake on the connected blocking socket @fd
 * (its SO_RCVTIMEO bounds each wait).  0 and *ret, or -ECONNABORTED (the
 * client failed it or left; logged), -ETIMEDOUT, -ENOMEM.
 */
int nbd_tls_accept(struct nbd_tls *t, int fd, const char *peer, struct nbd_tls_session **ret);

/* Blocking I/O for the handshake: 0 or -ECONNABORTED/-ETIMEDOUT/-errno. */
int nbd_tls_recv_all(struct nbd_tls_session *s, void *buf, size_t len);
int nbd_tls_send_all(struct nbd_tls_session *s, const void *buf, size_t len);

/* For the transmission phase: reads never block (-EAGAIN), writes do.
 * recv: bytes, 0 at end of stream, -EAGAIN, -ECONNRESET (closed without
 * close_notify), -EPROTO (a TLS error; logged).  sendv: 0 or -errno. */
void nbd_tls_set_nonblocking_reads(struct nbd_tls_session *s);
ssize_t nbd_tls_recv(void *session, void *buf, size_t len);
int nbd_tls_sendv(void *session, const struct iovec *iov, unsigned n);

/* Say goodbye (close_notify, waiting at most a few seconds) and free. */
void nbd_tls_session_end(struct nbd_tls_session *s);

#endif

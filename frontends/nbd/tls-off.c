/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tls.h for a build without GnuTLS (meson -Dtls=disabled, or no gnutls):
 * tls = "off", the default, works as in any build (STARTTLS is answered
 * with ERR_UNSUP); "allow" or "require" is a config error naming the
 * option, so --check-config reports it before anything starts.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "tls.h"

static int refuse(const struct nbd_tls_options *o, const char **ret_option, char *msg, size_t len)
{
	if (!o->mode || strcmp(o->mode, "off") == 0)
		return 0;
	*ret_option = "tls";
	snprintf(msg, len, "'%s' needs TLS, and this blkservd was built without it (no GnuTLS)", o->mode);
	return -EINVAL;
}

int nbd_tls_check(const struct nbd_tls_options *o, const char **ret_option, char *msg, size_t len)
{
	return refuse(o, ret_option, msg, len);
}

int nbd_tls_new(struct blkserv_device *dev, const struct nbd_tls_options *o, struct nbd_tls **ret)
{
	const char *option = NULL;
	char msg[256];
	int r = refuse(o, &option, msg, sizeof(msg));

	*ret = NULL;
	if (r < 0)
		blkserv_error(dev, "option '%s': %s", option, msg);
	return r;
}

void nbd_tls_free(struct nbd_tls *t)
{
}

enum nbd_tls_mode nbd_tls_mode(const struct nbd_tls *t)
{
	return NBD_TLS_OFF;
}

/* Never called: with TLS off the handshake never starts a session. */
int nbd_tls_accept(struct nbd_tls *t, int fd, const char *peer, struct nbd_tls_session **ret)
{
	return -EOPNOTSUPP;
}

int nbd_tls_recv_all(struct nbd_tls_session *s, void *buf, size_t len)
{
	return -EOPNOTSUPP;
}

int nbd_tls_send_all(struct nbd_tls_session *s, const void *buf, size_t len)
{
	return -EOPNOTSUPP;
}

void nbd_tls_set_nonblocking_reads(struct nbd_tls_session *s)
{
}

ssize_t nbd_tls_recv(void *session, void *buf, size_t len)
{
	return -EOPNOTSUPP;
}

int nbd_tls_sendv(void *session, const struct iovec *iov, unsigned n)
{
	return -EOPNOTSUPP;
}

void nbd_tls_session_end(struct nbd_tls_session *s)
{
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* handshake.h: fixed-newstyle NBD negotiation for the network export. */
#ifndef BLKSERV_NBD_HANDSHAKE_H
#define BLKSERV_NBD_HANDSHAKE_H

#include <stdbool.h>
#include <stdint.h>

#include "blkserv/blkserv-plugin.h"
#include "tls.h"

/* What the export offers. */
struct nbd_export {
	struct blkserv_device *dev; /* for logs */
	const char *name;           /* the device name; "" (the default export) matches too */
	const char *description;
	uint64_t size;
	uint16_t tx_flags; /* SEND_DF is added when structured replies are negotiated */
	uint32_t min_block, pref_block, max_block;
	struct nbd_tls *tls; /* NULL: TLS off (STARTTLS is unsupported) */
};

/* What the client chose. */
struct nbd_negotiated {
	bool structured;
	uint16_t tx_flags;
	/* The client's TLS session (NULL: plain): the caller ends it with
	 * nbd_tls_session_end(). */
	struct nbd_tls_session *tls;
};

/*
 * Run the handshake on the connected socket @fd of client @peer (a name for
 * logs), with blocking I/O; gives up
 * after @timeout_s seconds of client silence).  0: the client entered the
 * transmission phase (OPT_GO or OPT_EXPORT_NAME).  -ECONNABORTED: the
 * client left (OPT_ABORT, end of file, an unknown export with
 * OPT_EXPORT_NAME, OPT_EXPORT_NAME before TLS when TLS is required, a
 * failed TLS handshake).  -EPROTO: the client broke the protocol (logged).
 * -ETIMEDOUT, or the -errno of the socket.
 */
int nbd_handshake(int fd, const struct nbd_export *e, const char *peer, unsigned timeout_s, struct nbd_negotiated *ret);

#endif

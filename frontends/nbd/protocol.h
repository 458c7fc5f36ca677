/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * protocol.h: the NBD transmission-phase engine shared by the kernel NBD
 * frontend (a socketpair per connection) and the network export (a client
 * socket after the handshake).  One connection = one thread = one queue.
 */
#ifndef BLKSERV_NBD_PROTOCOL_H
#define BLKSERV_NBD_PROTOCOL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "blkserv/blkserv-plugin.h"

struct nbd_conn_config {
	struct blkserv_device *dev;
	/* The transmission flags the client was given: they decide which
	 * commands and command flags are valid on this connection. */
	uint16_t tx_flags;
	/* Structured replies were negotiated (never on the kernel socketpair). */
	bool structured;
	/* Offsets and lengths must be multiples of this (a power of two). */
	uint32_t min_block;
	/* For log lines: "connection 2 of /dev/nbd0", "client unix:3". */
	const char *peer;
	/* Called on the connection thread once its queue exists (0) or could
	 * not be made (-errno), before the first request is read.  May be NULL. */
	void (*ready)(void *opaque, int result);
	void *opaque;
	/* A secured stream (TLS) on the socket, or NULL for plain I/O.
	 * stream_recv never blocks: bytes read, 0 at end of stream, -EAGAIN
	 * when nothing is buffered or has arrived, -ECONNRESET, or -errno (the
	 * engine then waits for the socket on its ring and calls it again).
	 * stream_sendv writes the whole vector, blocking: 0 or -errno. */
	ssize_t (*stream_recv)(void *stream, void *buf, size_t len);
	int (*stream_sendv)(void *stream, const struct iovec *iov, unsigned n);
	void *stream;
	/* The payload bytes (buffers of requests in flight, and cached ones)
	 * the connection may hold; 0: NBD_CONN_MEMORY_DEFAULT.  A request that
	 * does not fit waits in the socket (we stop reading) until replies
	 * free enough; a connection that holds no request is always let on
	 * with the next one, so this never deadlocks. */
	uint64_t memory_budget;
	/* Also charge them against the daemon-wide budget
	 * (blkserv_payload_charge): for peers that are not trusted. */
	bool shared_budget;
	/* A planned handover (kernel frontend, plain sockets only): when
	 * drain_fd (an eventfd) becomes readable, the connection stops
	 * reading at a request boundary: it finishes receiving the request
	 * it is in the middle of, reading exactly its bytes, answers every
	 * request in flight, and returns NBD_SERVE_DRAINED with the next
	 * request's bytes still unread in the socket, so another process can
	 * go on serving the same stream. */
	bool drainable;
	int drain_fd;
};

/* The kernel's own bound is 128 tags x max_sectors_kb (1280 KiB by
 * default: 160 MiB); this caps what raising max_sectors_kb (up to 32 MiB)
 * could make of it. */
#define NBD_CONN_MEMORY_DEFAULT (256ull << 20)

/* nbd_conn_serve(): drained at a request boundary (see drain_fd). */
#define NBD_SERVE_DRAINED 1
/* nbd_conn_serve(): the client sent DISC. */
#define NBD_SERVE_DISC 2

/* The transmission flags a device warrants: HAS_FLAGS plus exactly what
 * blkserv_device_caps() promises, and CAN_MULTI_CONN (every queue of a
 * device sees the same data).  @read_only adds READ_ONLY and drops the
 * write-only commands. */
uint16_t nbd_tx_flags(struct blkserv_device *dev, bool read_only);

/* Give @fd a send buffer that takes a few big replies (or requests) at
 * once, so a writer rarely waits for the reader: SO_SNDBUFFORCE when
 * permitted (root), else what SO_SNDBUF allows. */
void nbd_socket_tune(int fd);

/* A -errno as the NBD error value of a reply (proto.md "Error values"). */
uint32_t nbd_wire_error(int err);

/*
 * Serve the transmission phase on the connected stream socket @fd on the
 * calling thread until the client sends DISC, the socket reaches end of
 * file or is shut down (another thread's shutdown(2) is how a frontend
 * stops a connection), or the client breaks the protocol.  Requests in
 * flight are always finished before it returns.  Does not close @fd.
 * Returns 0 at a clean end (end of file), NBD_SERVE_DISC after DISC,
 * NBD_SERVE_DRAINED after a drain, -EPROTO after a protocol violation, or
 * the -errno of what failed (queue creation, the socket).
 */
int nbd_conn_serve(const struct nbd_conn_config *cfg, int fd);

#endif

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz the NBD server side of frontends/nbd: the fixed-newstyle handshake
 * (handshake.c) and the transmission-phase request decoder (protocol.c),
 * with whatever bytes a client sends.  The server must never crash, hang,
 * leak or misbehave under UBSan, and must finish the connection.
 *
 * Input: one mode byte, then the client's bytes, sent on a socketpair
 * while the replies are read and thrown away, then the client's end is
 * shut down for writing (a client that leaves, maybe mid-request).
 *   mode 0x01  no handshake: straight to transmission, as on the kernel's
 *              socketpair (no structured replies)
 *   mode 0x02  a read-only export
 *   mode 0x04  no alignment (min_block 1 instead of 512)
 * The device is a 1 MiB ramdisk, opened once (BLKSERV_TEST_PLUGIN_DIR).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "device.h"
#include "handshake.h"
#include "log.h"
#include "protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum {
	M_NO_HANDSHAKE = 0x01,
	M_READ_ONLY = 0x02,
	M_UNALIGNED = 0x04,
};

static struct blkserv_device *dev;

static struct blkserv_device *open_device(void)
{
	const char *plugins = getenv("BLKSERV_TEST_PLUGIN_DIR");
	char path[64];
	struct config *c = NULL;
	struct blkserv_device *d = NULL;
	char *error = NULL;
	FILE *f;

	snprintf(path, sizeof(path), "/dev/shm/fuzz-nbd-%d.conf", (int)getpid());
	f = fopen(path, "w");
	if (!f || !plugins)
		abort();
	fputs("device \"fuzz\" {\n  size = 1M\n  block_size = 512\n"
	      "  frontend \"nbd-export\" { unix = \"/nonexistent/x.sock\" }\n"
	      "  backend \"ramdisk\" { }\n}\n",
	      f);
	fclose(f);
	if (config_load(path, plugins, &c, &error) < 0 || device_new(&c->devices[0], plugins, &d) < 0 ||
	    device_open_backend(d) < 0) {
		fprintf(stderr, "cannot open the fuzz device: %s\n", error ? error : "see above");
		abort();
	}
	unlink(path);
	config_free(c);
	return d;
}

struct client {
	int fd;
	const uint8_t *data;
	size_t size;
};

/* Send everything, reading (and dropping) replies all along so neither side
 * can block the other; then leave and read until the server closes. */
static void run_client(struct client *cl)
{
	size_t sent = 0;
	char sink[65536];

	fcntl(cl->fd, F_SETFL, O_NONBLOCK);
	if (cl->size == 0)
		shutdown(cl->fd, SHUT_WR);
	for (;;) {
		struct pollfd p = { cl->fd, POLLIN | (sent < cl->size ? POLLOUT : 0), 0 };
		if (poll(&p, 1, -1) < 0 && errno != EINTR)
			break;
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = recv(cl->fd, sink, sizeof(sink), 0);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				break;
		}
		if (sent < cl->size && (p.revents & POLLOUT)) {
			ssize_t n = send(cl->fd, cl->data + sent, cl->size - sent, MSG_NOSIGNAL);
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				sent = cl->size; /* the server is gone: stop sending */
			else if (n > 0)
				sent += (size_t)n;
			if (sent == cl->size)
				shutdown(cl->fd, SHUT_WR);
		}
	}
}

/* One client thread for the whole run (a thread per input would cost more
 * than most inputs): it takes an input when `go` is posted, and posts
 * `done` when the server has closed. */
static struct client current;
static sem_t go, done;

static void *client_main(void *arg)
{
	for (;;) {
		while (sem_wait(&go) < 0)
			;
		run_client(&current);
		sem_post(&done);
	}
	return arg;
}

static int serve(int fd, unsigned mode)
{
	struct nbd_conn_config cfg = {
		.dev = dev,
		.tx_flags = nbd_tx_flags(dev, mode & M_READ_ONLY),
		.min_block = mode & M_UNALIGNED ? 1 : 512,
		.peer = "fuzz client",
	};
	struct nbd_export e = {
		.dev = dev,
		.name = "fuzz",
		.description = "a fuzzed export",
		.size = blkserv_device_size(dev),
		.tx_flags = cfg.tx_flags,
		.min_block = cfg.min_block,
		.pref_block = 4096,
		.max_block = BLKSERV_MAX_IO_BYTES,
	};
	struct nbd_negotiated neg;
	int r;

	if (!(mode & M_NO_HANDSHAKE)) {
		r = nbd_handshake(fd, &e, "fuzz client", 5, &neg);
		if (r < 0)
			return r;
		cfg.tx_flags = neg.tx_flags;
		cfg.structured = neg.structured;
	}
	return nbd_conn_serve(&cfg, fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static pthread_t client;
	int sv[2];

	if (size < 1)
		return 0;
	if (!dev) {
		/* Bad input is logged, by design: quiet, unless asked. */
		log_set_max_level(getenv("BLKSERV_FUZZ_VERBOSE") ? BLKSERV_LOG_DEBUG : 0);
		signal(SIGPIPE, SIG_IGN);
		dev = open_device();
		if (sem_init(&go, 0, 0) < 0 || sem_init(&done, 0, 0) < 0 ||
		    pthread_create(&client, NULL, client_main, NULL) != 0)
			abort();
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	current = (struct client){ .fd = sv[0], .data = data + 1, .size = size - 1 };
	sem_post(&go);
	(void)serve(sv[1], data[0]);
	shutdown(sv[1], SHUT_RDWR); /* as the frontends do: the client sees the end */
	while (sem_wait(&done) < 0)
		;
	close(sv[0]);
	close(sv[1]);
	return 0;
}

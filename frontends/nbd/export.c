/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nbd-export: the device as an NBD export on a Unix socket and/or a TCP
 * address, for any NBD client (nbd-client, qemu, nbdinfo, nbdcopy, fio's
 * nbd engine), no kernel module needed.
 *
 * A listener thread accepts clients; each client gets its own thread,
 * which runs the fixed-newstyle handshake (handshake.c) and then serves the
 * transmission phase on its own queue (protocol.c).  The export name is the
 * device name (the empty name works too).  Stopping shuts every client
 * socket down: each thread finishes what is in flight and ends.
 * With tls = allow or require, clients may (must) switch to TLS with
 * NBD_OPT_STARTTLS (tls.c); the transmission phase then runs through the
 * TLS session.
 * Clients still in their handshake have their own allowance
 * (max_handshakes) beside max_clients: when it is full, the oldest pending
 * handshake is dropped to make room, so connections that never finish
 * their handshake cannot lock out clients that do.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup.h"
#include "netaddr.h"
#include "handshake.h"
#include "nbd-proto.h"
#include "parse.h"
#include "protocol.h"
#include "tls.h"

#define MAX_LISTEN 8
#define LISTEN_BACKLOG 64
#define REAP_INTERVAL_MS 1000

struct client {
	struct nbd_exp *x;
	pthread_t thread;
	int fd;
	char peer[160];
	bool handshaking; /* counted in nhandshaking (under the lock) */
	bool evicted;     /* dropped to make room for a newer handshake */
	_Atomic bool finished;
	struct client *next;
};

struct nbd_exp {
	struct blkserv_device *dev;
	char *unix_path;
	char *tcp;
	bool read_only;
	uint64_t max_clients;
	uint64_t max_handshakes;
	uint64_t handshake_timeout;
	uint64_t client_memory;
	struct nbd_tls *tls;
	struct nbd_export info;
	char description[256];

	int listen_fds[MAX_LISTEN];
	bool listen_is_unix[MAX_LISTEN];
	unsigned nlisten;
	bool unix_bound;
	int stop_pipe[2];
	pthread_t listener;
	bool listener_started;
	_Atomic bool listener_failed;

	/* The client list: changed on connect and disconnect only. */
	pthread_mutex_t lock;
	struct client *clients;
	unsigned nclients;     /* every client thread */
	unsigned nhandshaking; /* ...in its handshake, not evicted */
	unsigned nserving;     /* ...in the transmission phase */
	uint64_t next_id;
};

static const struct blkserv_option export_options[] = {
	{ "unix", BLKSERV_OPT_PATH, NULL, "listen on this Unix socket path", 0 },
	{ "tcp", BLKSERV_OPT_STRING, NULL, "listen on ADDRESS:PORT (\"[::1]:10809\", \":10809\" for every address)",
	  0 },
	{ "read_only", BLKSERV_OPT_BOOL, "false", "export read-only (writes fail with EPERM)", 0 },
	{ "max_clients", BLKSERV_OPT_UINT, "16", "clients in the transmission phase at once; more are turned away", 0 },
	{ "max_handshakes", BLKSERV_OPT_UINT, "16",
	  "connections in their handshake at once; a new one drops the oldest", 0 },
	{ "client_memory", BLKSERV_OPT_SIZE, "64M",
	  "request payloads one client may hold in memory (at least 32M); beyond, it waits", 0 },
	{ "handshake_timeout", BLKSERV_OPT_UINT, "30",
	  "seconds a client may take per handshake step before it is dropped", 0 },
	{ "tls", BLKSERV_OPT_STRING, "off", "require, allow or off: TLS (NBD_OPT_STARTTLS) must, may or cannot be used",
	  0 },
	{ "tls_certificate", BLKSERV_OPT_PATH, NULL, "X.509 server certificate chain (PEM)", 0 },
	{ "tls_key", BLKSERV_OPT_PATH, NULL, "private key of tls_certificate (PEM)", 0 },
	{ "tls_ca", BLKSERV_OPT_PATH, NULL, "CA certificates (PEM): clients must present a certificate they signed",
	  0 },
	{ "tls_psk_file", BLKSERV_OPT_PATH, NULL, "pre-shared keys, USERNAME:HEXKEY per line (psktool)", 0 },
	{ "tls_priority", BLKSERV_OPT_STRING, NBD_TLS_DEFAULT_PRIORITY,
	  "GnuTLS priority string (PSK key exchanges are added when tls_psk_file is set)", 0 },
	BLKSERV_OPTION_END,
};

static const char *const tls_modes[] = { "off", "allow", "require", NULL };

static const struct blkserv_option_check export_checks[] = {
	{ "max_clients", 1, 1024, NULL },
	{ "max_handshakes", 1, 1024, NULL },
	{ "client_memory", BLKSERV_MAX_IO_BYTES, 1ull << 40, NULL },
	{ "tls", 0, 0, tls_modes },
	BLKSERV_OPTION_CHECK_END,
};

/* ---- addresses ------------------------------------------------------------ */

static int tcp_listen_one(struct nbd_exp *x, const struct addrinfo *ai)
{
	_cleanup_close_ int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
	int one = 1;

	if (fd < 0)
		return -errno;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ai->ai_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0)
		return -errno;
	x->listen_is_unix[x->nlisten] = false;
	x->listen_fds[x->nlisten++] = TAKE_FD(fd);
	return 0;
}

static int tcp_listen(struct nbd_exp *x)
{
	_cleanup_free_ char *host = NULL, *port = NULL;
	struct addrinfo hints = { .ai_flags = AI_PASSIVE, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	int r, bound = 0, last = -EADDRNOTAVAIL;

	r = split_host_port(x->tcp, &host, &port);
	if (r < 0)
		return r;
	r = getaddrinfo(host, port, &hints, &res);
	if (r != 0) {
		blkserv_error(x->dev, "cannot resolve tcp address '%s': %s", x->tcp, gai_strerror(r));
		return -EADDRNOTAVAIL;
	}
	for (struct addrinfo *ai = res; ai && x->nlisten < MAX_LISTEN; ai = ai->ai_next) {
		r = tcp_listen_one(x, ai);
		if (r < 0)
			last = r;
		else
			bound++;
	}
	freeaddrinfo(res);
	if (bound == 0)
		(void)blkserv_error_errno(x->dev, last, "cannot listen on tcp %s: %m", x->tcp);
	return bound ? 0 : last;
}

/* A socket file left by a daemon that died may be replaced; a live one not. */
static int clear_stale_socket(struct nbd_exp *x, const struct sockaddr_un *sa)
{
	_cleanup_close_ int fd = -1;
	struct stat st;

	if (lstat(sa->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		blkserv_error(x->dev, "%s exists and is not a socket", sa->sun_path);
		return -EEXIST;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0) {
		blkserv_error(x->dev, "%s is in use by another server", sa->sun_path);
		return -EADDRINUSE;
	}
	return unlink(sa->sun_path) < 0 ? -errno : 0;
}

static int unix_listen(struct nbd_exp *x)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = -1;
	int r;

	if (strlen(x->unix_path) >= sizeof(sa.sun_path)) {
		blkserv_error(x->dev, "unix socket path '%s' is longer than %zu bytes", x->unix_path,
			      sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, x->unix_path);
	r = clear_stale_socket(x, &sa);
	if (r < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		blkserv_error(x->dev, "cannot bind %s: %m", x->unix_path);
		return r;
	}
	x->unix_bound = true;
	if (listen(fd, LISTEN_BACKLOG) < 0)
		return -errno;
	x->listen_is_unix[x->nlisten] = true;
	x->listen_fds[x->nlisten++] = TAKE_FD(fd);
	return 0;
}

static void close_listeners(struct nbd_exp *x)
{
	for (unsigned i = 0; i < x->nlisten; i++)
		safe_close(x->listen_fds[i]);
	x->nlisten = 0;
	if (x->unix_bound)
		(void)unlink(x->unix_path);
	x->unix_bound = false;
}

/* ---- clients ---------------------------------------------------------------- */

/* The handshake ended (@r): the client leaves the handshake allowance and,
 * when it succeeded, takes a place among the served clients if one is free
 * (another client may have finished its handshake first). */
static int end_handshake(struct client *cl, int r)
{
	struct nbd_exp *x = cl->x;

	pthread_mutex_lock(&x->lock);
	if (!cl->evicted)
		x->nhandshaking--;
	cl->handshaking = false;
	if (r == 0 && cl->evicted)
		r = -ECONNABORTED;
	else if (r == 0 && x->nserving >= x->max_clients)
		r = -EUSERS;
	else if (r == 0)
		x->nserving++;
	pthread_mutex_unlock(&x->lock);
	if (r == -EUSERS)
		blkserv_warning(x->dev, "%llu clients already: turning %s away after its handshake",
				(unsigned long long)x->max_clients, cl->peer);
	return r;
}

static void *client_main(void *arg)
{
	struct client *cl = arg;
	struct nbd_exp *x = cl->x;
	struct nbd_negotiated neg = { 0 };
	int r = nbd_handshake(cl->fd, &x->info, cl->peer, (unsigned)x->handshake_timeout, &neg);
	bool serving;

	r = end_handshake(cl, r);
	serving = r == 0;
	if (r == 0) {
		struct nbd_conn_config cfg = {
			.dev = x->dev,
			.tx_flags = neg.tx_flags,
			.structured = neg.structured,
			.min_block = x->info.min_block,
			.peer = cl->peer,
			.memory_budget = x->client_memory,
			.shared_budget = true,
		};
		if (neg.tls) {
			nbd_tls_set_nonblocking_reads(neg.tls);
			cfg.stream_recv = nbd_tls_recv;
			cfg.stream_sendv = nbd_tls_sendv;
			cfg.stream = neg.tls;
		}
		blkserv_debug(x->dev, "%s: transmission phase (flags 0x%04x%s%s)", cl->peer, neg.tx_flags,
			      neg.structured ? ", structured replies" : "", neg.tls ? ", TLS" : "");
		r = nbd_conn_serve(&cfg, cl->fd);
		nbd_tls_session_end(neg.tls);
	} else if (r == -ETIMEDOUT) {
		blkserv_info(x->dev, "%s: handshake timed out", cl->peer);
	}
	if (serving) {
		pthread_mutex_lock(&x->lock);
		x->nserving--;
		pthread_mutex_unlock(&x->lock);
	}
	blkserv_debug(x->dev, "%s: disconnected (%s)", cl->peer, r < 0 ? strerror(-r) : "clean");
	/* The peer sees the end now; the fd is closed when the thread is reaped,
	 * so a concurrent stop never shuts down a reused descriptor. */
	(void)shutdown(cl->fd, SHUT_RDWR);
	atomic_store(&cl->finished, true);
	return NULL;
}

static void client_free(struct client *cl)
{
	pthread_join(cl->thread, NULL);
	safe_close(cl->fd);
	free(cl);
}

static void reap_clients(struct nbd_exp *x)
{
	struct client *done = NULL;

	pthread_mutex_lock(&x->lock);
	for (struct client **p = &x->clients; *p;) {
		struct client *cl = *p;

		if (atomic_load(&cl->finished)) {
			*p = cl->next;
			cl->next = done;
			done = cl;
			x->nclients--;
		} else {
			p = &cl->next;
		}
	}
	pthread_mutex_unlock(&x->lock);
	while (done) {
		struct client *next = done->next;
		client_free(done);
		done = next;
	}
}

static void describe_peer(struct client *cl, bool is_unix, const struct sockaddr_storage *sa, uint64_t id)
{
	char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "?";

	if (is_unix) {
		snprintf(cl->peer, sizeof(cl->peer), "unix client %llu", (unsigned long long)id);
		return;
	}
	(void)getnameinfo((const struct sockaddr *)sa, sizeof(*sa), host, sizeof(host), port, sizeof(port),
			  NI_NUMERICHOST | NI_NUMERICSERV);
	snprintf(cl->peer, sizeof(cl->peer), "tcp client %llu (%s:%s)", (unsigned long long)id, host, port);
}

/* Under the lock.  The list is newest first: the oldest handshake is the
 * last one in it.  Its thread sees the socket shut down and ends. */
static void evict_oldest_handshake(struct nbd_exp *x)
{
	struct client *oldest = NULL;

	for (struct client *cl = x->clients; cl; cl = cl->next)
		if (cl->handshaking && !cl->evicted)
			oldest = cl;
	if (!oldest)
		return;
	oldest->evicted = true;
	x->nhandshaking--;
	(void)shutdown(oldest->fd, SHUT_RDWR);
	blkserv_info(x->dev, "%llu handshakes pending: dropping the oldest, %s, for a new client",
		     (unsigned long long)x->max_handshakes, oldest->peer);
}

static int add_client(struct nbd_exp *x, int fd, bool is_unix, const struct sockaddr_storage *sa)
{
	struct client *cl = calloc(1, sizeof(*cl));
	int one = 1, r;

	if (!cl)
		return -ENOMEM;
	if (!is_unix)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	nbd_socket_tune(fd);
	cl->x = x;
	cl->fd = fd;
	cl->handshaking = true;
	pthread_mutex_lock(&x->lock);
	describe_peer(cl, is_unix, sa, ++x->next_id);
	if (x->nhandshaking >= x->max_handshakes)
		evict_oldest_handshake(x);
	r = -pthread_create(&cl->thread, NULL, client_main, cl);
	if (r == 0) {
		cl->next = x->clients;
		x->clients = cl;
		x->nclients++;
		x->nhandshaking++;
	}
	pthread_mutex_unlock(&x->lock);
	if (r < 0)
		free(cl);
	return r;
}

static void accept_client(struct nbd_exp *x, unsigned i)
{
	struct sockaddr_storage sa;
	socklen_t len = sizeof(sa);
	int fd = accept4(x->listen_fds[i], (struct sockaddr *)&sa, &len, SOCK_CLOEXEC);
	bool full;
	int r;

	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
			blkserv_warning(x->dev, "accept failed: %m");
			usleep(100 * 1000); /* e.g. out of fds: do not spin */
		}
		return;
	}
	pthread_mutex_lock(&x->lock);
	full = x->nserving >= x->max_clients;
	pthread_mutex_unlock(&x->lock);
	if (full) {
		blkserv_warning(x->dev, "%llu clients already: turning a new one away",
				(unsigned long long)x->max_clients);
		close(fd);
		return;
	}
	r = add_client(x, fd, x->listen_is_unix[i], &sa);
	if (r < 0) {
		(void)blkserv_warning_errno(x->dev, r, "cannot serve a new client: %m");
		close(fd);
	}
}

/* ---- the listener ----------------------------------------------------------- */

static void *listener_main(void *arg)
{
	struct nbd_exp *x = arg;
	struct pollfd pfd[MAX_LISTEN + 1];

	for (unsigned i = 0; i < x->nlisten; i++)
		pfd[i] = (struct pollfd){ .fd = x->listen_fds[i], .events = POLLIN };
	pfd[x->nlisten] = (struct pollfd){ .fd = x->stop_pipe[0], .events = POLLIN };
	for (;;) {
		int n = poll(pfd, x->nlisten + 1, REAP_INTERVAL_MS);

		if (n < 0 && errno != EINTR) {
			blkserv_error(x->dev, "the listener failed: %m");
			atomic_store(&x->listener_failed, true);
			return NULL;
		}
		if (pfd[x->nlisten].revents)
			return NULL;
		reap_clients(x);
		for (unsigned i = 0; n > 0 && i < x->nlisten; i++)
			if (pfd[i].revents & POLLIN)
				accept_client(x, i);
	}
}

static void set_kernel_name(struct nbd_exp *x)
{
	char name[256] = "";
	size_t len = 0;

	if (x->unix_path)
		len += (size_t)snprintf(name, sizeof(name), "unix:%s", x->unix_path);
	if (x->tcp && len < sizeof(name))
		snprintf(name + len, sizeof(name) - len, "%stcp:%s", len ? " " : "", x->tcp);
	blkserv_device_set_kernel_name(x->dev, name);
}

static int export_start(void *handle)
{
	struct nbd_exp *x = handle;
	int r = 0;

	atomic_store(&x->listener_failed, false);
	if (x->unix_path)
		r = unix_listen(x);
	if (r >= 0 && x->tcp)
		r = tcp_listen(x);
	if (r >= 0 && pipe2(x->stop_pipe, O_CLOEXEC) < 0)
		r = -errno;
	if (r >= 0) {
		r = -pthread_create(&x->listener, NULL, listener_main, x);
		if (r < 0)
			(void)blkserv_error_errno(x->dev, r, "cannot start the listener thread: %m%s",
						  r == -EAGAIN ? " (out of memory, or of locked memory: RLIMIT_MEMLOCK)"
							       : "");
	}
	if (r < 0) {
		close_listeners(x);
		x->stop_pipe[0] = safe_close(x->stop_pipe[0]);
		x->stop_pipe[1] = safe_close(x->stop_pipe[1]);
		return r;
	}
	x->listener_started = true;
	set_kernel_name(x);
	blkserv_notice(x->dev, "NBD export '%s' listening on%s%s%s%s%s%s", x->info.name, x->unix_path ? " unix:" : "",
		       x->unix_path ? x->unix_path : "", x->tcp ? " tcp:" : "", x->tcp ? x->tcp : "",
		       x->read_only ? " (read-only)" : "",
		       nbd_tls_mode(x->tls) == NBD_TLS_REQUIRE ? " (TLS required)"
		       : nbd_tls_mode(x->tls) == NBD_TLS_ALLOW ? " (TLS allowed)"
							       : "");
	return 0;
}

static void export_stop(void *handle, uint32_t flags)
{
	struct nbd_exp *x = handle;

	if (!x->listener_started)
		return;
	(void)!write(x->stop_pipe[1], "x", 1);
	pthread_join(x->listener, NULL);
	x->listener_started = false;
	close_listeners(x);
	x->stop_pipe[0] = safe_close(x->stop_pipe[0]);
	x->stop_pipe[1] = safe_close(x->stop_pipe[1]);
	/* Every client sees end of file, finishes its requests and ends. */
	pthread_mutex_lock(&x->lock);
	for (struct client *cl = x->clients; cl; cl = cl->next)
		(void)shutdown(cl->fd, SHUT_RDWR);
	pthread_mutex_unlock(&x->lock);
	while (x->clients) {
		struct client *cl = x->clients;
		x->clients = cl->next;
		client_free(cl);
	}
	x->nclients = x->nhandshaking = x->nserving = 0;
}

/* ---- open and close ------------------------------------------------------------- */

static const char *opt_string(const struct blkserv_config *cfg, const char *name)
{
	const char *s;

	return blkserv_config_get_string(cfg, name, &s) == 0 ? s : NULL;
}

/* The tls_* options as written (NULL: not set, no default). */
static struct nbd_tls_options tls_options_of(const struct blkserv_config *cfg)
{
	return (struct nbd_tls_options){
		.mode = opt_string(cfg, "tls"),
		.certificate = opt_string(cfg, "tls_certificate"),
		.key = opt_string(cfg, "tls_key"),
		.ca = opt_string(cfg, "tls_ca"),
		.psk_file = opt_string(cfg, "tls_psk_file"),
		.priority = opt_string(cfg, "tls_priority"),
	};
}

static int read_tls_options(struct nbd_exp *x, const struct blkserv_config *cfg)
{
	struct nbd_tls_options o = tls_options_of(cfg);

	return nbd_tls_new(x->dev, &o, &x->tls);
}

static int read_options(struct nbd_exp *x, const struct blkserv_config *cfg)
{
	const char *s;
	char *host = NULL, *port = NULL;

	if (blkserv_config_get_string(cfg, "unix", &s) == 0 && !(x->unix_path = strdup(s)))
		return -ENOMEM;
	if (blkserv_config_get_string(cfg, "tcp", &s) == 0 && !(x->tcp = strdup(s)))
		return -ENOMEM;
	(void)blkserv_config_get_bool(cfg, "read_only", &x->read_only);
	(void)blkserv_config_get_uint(cfg, "max_clients", &x->max_clients);
	(void)blkserv_config_get_uint(cfg, "max_handshakes", &x->max_handshakes);
	(void)blkserv_config_get_uint(cfg, "handshake_timeout", &x->handshake_timeout);
	(void)blkserv_config_get_uint(cfg, "client_memory", &x->client_memory);
	if (!x->unix_path && !x->tcp) {
		blkserv_error(x->dev, "the nbd-export frontend needs 'unix' (a socket path) or 'tcp' (ADDRESS:PORT)");
		return -EINVAL;
	}
	if (x->tcp && (split_host_port(x->tcp, &host, &port) < 0 || parse_port(port, &(unsigned){ 0 }) < 0)) {
		blkserv_error(x->dev,
			      "option 'tcp' expects ADDRESS:PORT, [IPV6]:PORT or :PORT "
			      "(port 1 to 65535), not '%s'",
			      x->tcp);
		free(host);
		free(port);
		return -EINVAL;
	}
	free(host);
	free(port);
	if (x->client_memory < BLKSERV_MAX_IO_BYTES) {
		/* One request of the biggest size is always let on anyway. */
		blkserv_error(x->dev,
			      "option 'client_memory' must be at least 32M (one request of "
			      "the biggest size), not %llu bytes",
			      (unsigned long long)x->client_memory);
		return -EINVAL;
	}
	if (x->max_clients == 0) {
		blkserv_error(x->dev, "option 'max_clients' must be at least 1");
		return -EINVAL;
	}
	if (x->max_handshakes == 0) {
		blkserv_error(x->dev, "option 'max_handshakes' must be at least 1");
		return -EINVAL;
	}
	return read_tls_options(x, cfg);
}

/* The address a tcp option listens on, as a claim: a wildcard host is '*'
 * (every address), "*.*.*.*" (every IPv4 one) or "[*]" (every IPv6 one,
 * IPV6_V6ONLY), so it conflicts with the specific addresses it covers. */
static int claim_tcp(const struct blkserv_config *cfg, const char *host, unsigned port)
{
	char key[300];

	tcp_claim_key(host, port, key, sizeof(key));
	return blkserv_config_claim(cfg, "tcp", "TCP address", key);
}

static int validate_tcp(const struct blkserv_config *cfg, const char *tcp)
{
	_cleanup_free_ char *host = NULL, *port = NULL;
	unsigned n;
	int r;

	r = split_host_port(tcp, &host, &port);
	if (r == -ENOMEM)
		return r;
	if (r < 0)
		return blkserv_config_error(cfg, "tcp", "expects ADDRESS:PORT, [IPV6]:PORT or :PORT, not '%s'", tcp);
	if (parse_port(port, &n) < 0)
		return blkserv_config_error(cfg, "tcp", "the port of '%s' must be a number from 1 to 65535", tcp);
	return claim_tcp(cfg, host, n);
}

/* What open would load: files that exist and are readable regular files,
 * a certificate that loads with its key, a CA file with a certificate in
 * it, a PSK file in psktool's format, a priority string GnuTLS parses.
 * Nothing is kept (open loads them again); with tls = off nothing is
 * loaded at open either, so nothing is checked. */
static int validate_tls_files(const struct blkserv_config *cfg)
{
	struct nbd_tls_options o = tls_options_of(cfg);
	const char *option = NULL;
	char msg[1024];
	int r = nbd_tls_check(&o, &option, msg, sizeof(msg));

	if (r == -EINVAL)
		return blkserv_config_error(cfg, option, "%s", msg);
	return r;
}

static int validate_tls(const struct blkserv_config *cfg)
{
	const char *mode = opt_string(cfg, "tls");
	bool cert = blkserv_config_is_set(cfg, "tls_certificate"), key = blkserv_config_is_set(cfg, "tls_key");
	bool psk = blkserv_config_is_set(cfg, "tls_psk_file");

	if (cert != key)
		return blkserv_config_error(cfg, cert ? "tls_certificate" : "tls_key",
					    "'tls_certificate' and 'tls_key' go together: set both or neither");
	if (blkserv_config_is_set(cfg, "tls_ca") && !cert)
		return blkserv_config_error(cfg, "tls_ca", "'tls_ca' needs 'tls_certificate' and 'tls_key'");
	if (mode && strcmp(mode, "off") != 0 && !cert && !psk)
		return blkserv_config_error(cfg, "tls",
					    "tls = %s needs 'tls_certificate' and 'tls_key', "
					    "or 'tls_psk_file'",
					    mode);
	return validate_tls_files(cfg);
}

/* Everything read_options and start refuse, without opening or binding. */
static int export_validate(const struct blkserv_config *cfg)
{
	const char *unix_path = opt_string(cfg, "unix"), *tcp = opt_string(cfg, "tcp");
	int r;

	if (!unix_path && !tcp)
		return blkserv_config_error(cfg, NULL,
					    "the nbd-export frontend needs 'unix' (a socket path) or "
					    "'tcp' (ADDRESS:PORT)");
	if (unix_path && strlen(unix_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return blkserv_config_error(cfg, "unix", "the socket path is longer than %zu bytes",
					    sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
	r = tcp ? validate_tcp(cfg, tcp) : 0;
	if (r >= 0 && unix_path)
		r = blkserv_config_claim(cfg, "unix", "unix socket", unix_path);
	return r < 0 ? r : validate_tls(cfg);
}

static void fill_info(struct nbd_exp *x)
{
	struct blkserv_device *dev = x->dev;
	uint32_t bs = blkserv_device_block_size(dev);

	snprintf(x->description, sizeof(x->description), "blkservd device %s", blkserv_device_name(dev));
	x->info = (struct nbd_export){
		.dev = dev,
		.name = blkserv_device_name(dev),
		.description = x->description,
		.size = blkserv_device_size(dev),
		.tx_flags = nbd_tx_flags(dev, x->read_only),
		.min_block = bs,
		.pref_block = bs > 4096 ? bs : 4096,
		.max_block = BLKSERV_MAX_IO_BYTES,
		.tls = x->tls,
	};
}

static void export_close(void *handle)
{
	struct nbd_exp *x = handle;

	pthread_mutex_destroy(&x->lock);
	nbd_tls_free(x->tls);
	free(x->unix_path);
	free(x->tcp);
	free(x);
}

static int export_open(struct blkserv_device *dev, const struct blkserv_config *cfg, void **ret_handle)
{
	struct nbd_exp *x = calloc(1, sizeof(*x));
	int r;

	if (!x)
		return -ENOMEM;
	x->dev = dev;
	x->max_clients = 16;
	x->max_handshakes = 16;
	x->handshake_timeout = 30;
	x->client_memory = 64u << 20;
	x->stop_pipe[0] = x->stop_pipe[1] = -1;
	pthread_mutex_init(&x->lock, NULL);
	r = read_options(x, cfg);
	if (r < 0) {
		export_close(x);
		return r;
	}
	fill_info(x);
	*ret_handle = x;
	return 0;
}

/* ---- health ------------------------------------------------------------------- */

static int export_check_health(void *handle)
{
	struct nbd_exp *x = handle;

	return atomic_load(&x->listener_failed) ? -EIO : 0;
}

static int export_check_idle(void *handle)
{
	struct nbd_exp *x = handle;
	unsigned n;

	pthread_mutex_lock(&x->lock);
	n = x->nclients;
	pthread_mutex_unlock(&x->lock);
	return n ? -EBUSY : 0;
}

static struct blkserv_frontend export_frontend = {
	.name = "nbd-export",
	.description = "NBD network export on a Unix socket and/or TCP (fixed newstyle), no kernel module",
	.options = export_options,
	.open = export_open,
	.start = export_start,
	.stop = export_stop,
	.close = export_close,
	.check_health = export_check_health,
	.check_idle = export_check_idle,
	.option_checks = export_checks,
	.validate = export_validate,
};

BLKSERV_REGISTER_FRONTEND(export_frontend)

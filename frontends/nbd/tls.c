/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tls.c: the export's TLS with GnuTLS: X.509 (optionally verifying client
 * certificates against a CA) and pre-shared keys in psktool's file format.
 *
 * The handshake phase uses the socket blocking, bounded by SO_RCVTIMEO.
 * The transmission phase reads without blocking (the engine waits for the
 * socket on its ring, then drains the records) and writes blocking, like
 * the plain engine's sendmsg().
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "cleanup.h"
#include "tls.h"

#define BYE_TIMEOUT_S 5
/* Below this, writes are gathered into one record (reply headers). */
#define CORK_MAX 16384

struct nbd_tls {
	struct blkserv_device *dev;
	enum nbd_tls_mode mode;
	bool verify_peer;
	gnutls_certificate_credentials_t x509;
	gnutls_psk_server_credentials_t psk;
	gnutls_priority_t priority;
};

struct nbd_tls_session {
	struct nbd_tls *t;
	gnutls_session_t gs;
	int fd;
	const char *peer;
};

/* ---- options ---------------------------------------------------------- */

/* What is wrong with the options: the same text for the validate step
 * (blkserv_config_error names file, line and option) and for open (logged). */
struct tls_err {
	const char *option; /* NULL: the section as a whole */
	char msg[768];
};

static int BLKSERV_PRINTF(3, 4) tls_fail(struct tls_err *e, const char *option, const char *fmt, ...)
{
	va_list ap;

	e->option = option;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int parse_mode(struct tls_err *e, const char *s, enum nbd_tls_mode *ret)
{
	if (!s || strcmp(s, "off") == 0)
		*ret = NBD_TLS_OFF;
	else if (strcmp(s, "allow") == 0)
		*ret = NBD_TLS_ALLOW;
	else if (strcmp(s, "require") == 0)
		*ret = NBD_TLS_REQUIRE;
	else
		return tls_fail(e, "tls", "must be require, allow or off, not '%s'", s);
	return 0;
}

/* An existing, readable regular file (open() alone accepts a directory,
 * which GnuTLS then reports as a parse error). */
static int check_readable(struct tls_err *e, const char *option, const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;

	if (fd < 0)
		return tls_fail(e, option, "cannot read %s: %m", path);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return tls_fail(e, option, "%s is not a regular file", path);
	return 0;
}

static bool valid_psk_line(const char *line, size_t len)
{
	const char *colon = memchr(line, ':', len);
	size_t hexlen;

	if (!colon || colon == line)
		return false;
	hexlen = len - (size_t)(colon + 1 - line);
	if (hexlen == 0 || hexlen % 2)
		return false;
	for (const char *p = colon + 1; p < line + len; p++)
		if (!isxdigit((unsigned char)*p))
			return false;
	return true;
}

/* The format gnutls_psk_set_server_credentials_file() reads: one
 * "username:hexkey" per line; blank lines are allowed. */
static int check_psk_file(struct tls_err *e, const char *path)
{
	_cleanup_fclose_ FILE *f = NULL;
	char line[1024];
	unsigned lineno = 0, keys = 0;
	int r = check_readable(e, "tls_psk_file", path);

	if (r < 0)
		return r;
	f = fopen(path, "re");
	if (!f)
		return tls_fail(e, "tls_psk_file", "cannot read %s: %m", path);
	while (fgets(line, sizeof(line), f)) {
		size_t len = strcspn(line, "\r\n");

		lineno++;
		if (len == 0)
			continue;
		if (!valid_psk_line(line, len))
			return tls_fail(e, "tls_psk_file", "%s:%u: expected USERNAME:HEXKEY (as psktool writes)", path,
					lineno);
		keys++;
	}
	if (keys == 0)
		return tls_fail(e, "tls_psk_file", "%s: no USERNAME:HEXKEY line: no pre-shared key", path);
	return 0;
}

/* ---- credentials ------------------------------------------------------- */

static int load_x509(struct nbd_tls *t, const struct nbd_tls_options *o, struct tls_err *e)
{
	int r;

	if (check_readable(e, "tls_certificate", o->certificate) < 0 || check_readable(e, "tls_key", o->key) < 0 ||
	    (o->ca && check_readable(e, "tls_ca", o->ca) < 0))
		return -EINVAL;
	if (gnutls_certificate_allocate_credentials(&t->x509) < 0)
		return -ENOMEM;
	r = gnutls_certificate_set_x509_key_file(t->x509, o->certificate, o->key, GNUTLS_X509_FMT_PEM);
	if (r < 0)
		return tls_fail(e, "tls_certificate", "cannot load the certificate %s with the key %s: %s",
				o->certificate, o->key, gnutls_strerror(r));
	if (o->ca) {
		r = gnutls_certificate_set_x509_trust_file(t->x509, o->ca, GNUTLS_X509_FMT_PEM);
		if (r <= 0)
			return tls_fail(e, "tls_ca", "no CA certificate in %s%s%s", o->ca, r < 0 ? ": " : "",
					r < 0 ? gnutls_strerror(r) : "");
		t->verify_peer = true;
	}
	return 0;
}

static int load_psk(struct nbd_tls *t, const char *path, struct tls_err *e)
{
	int r = check_psk_file(e, path);

	if (r < 0)
		return r;
	if (gnutls_psk_allocate_server_credentials(&t->psk) < 0)
		return -ENOMEM;
	/* GnuTLS reads the file at each handshake: keys can change live. */
	r = gnutls_psk_set_server_credentials_file(t->psk, path);
	if (r < 0)
		return tls_fail(e, "tls_psk_file", "cannot use the PSK file %s: %s", path, gnutls_strerror(r));
	return 0;
}

static int load_priority(struct nbd_tls *t, const char *priority, bool psk, struct tls_err *e)
{
	_cleanup_free_ char *s = NULL;
	const char *err = NULL;
	int r;

	if (asprintf(&s, "%s%s", priority, psk ? NBD_TLS_PSK_PRIORITY : "") < 0)
		return -ENOMEM;
	r = gnutls_priority_init(&t->priority, s, &err);
	if (r < 0) {
		t->priority = NULL;
		return tls_fail(e, "tls_priority", "'%s' is not valid near '%s': %s", s, err ? err : "?",
				gnutls_strerror(r));
	}
	return 0;
}

static int check_credentials(const struct nbd_tls_options *o, struct tls_err *e)
{
	if (!o->certificate != !o->key)
		return tls_fail(e, o->certificate ? "tls_certificate" : "tls_key",
				"'tls_certificate' and 'tls_key' go together: set both or neither");
	if (!o->certificate && !o->psk_file)
		return tls_fail(e, "tls", "tls = %s needs 'tls_certificate' and 'tls_key', or 'tls_psk_file'", o->mode);
	if (o->ca && !o->certificate)
		return tls_fail(e, "tls_ca", "'tls_ca' needs 'tls_certificate' and 'tls_key'");
	return 0;
}

/* Everything nbd_tls_new checks and loads; *ret NULL with mode "off". */
static int tls_build(const struct nbd_tls_options *o, struct nbd_tls **ret, struct tls_err *e)
{
	struct nbd_tls *t;
	enum nbd_tls_mode mode;
	int r = parse_mode(e, o->mode, &mode);

	*ret = NULL;
	if (r < 0 || mode == NBD_TLS_OFF)
		return r;
	r = check_credentials(o, e);
	if (r < 0)
		return r;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->mode = mode;
	if (o->certificate)
		r = load_x509(t, o, e);
	if (r >= 0 && o->psk_file)
		r = load_psk(t, o->psk_file, e);
	if (r >= 0)
		r = load_priority(t, o->priority ? o->priority : NBD_TLS_DEFAULT_PRIORITY, o->psk_file != NULL, e);
	if (r < 0) {
		nbd_tls_free(t);
		return r;
	}
	*ret = t;
	return 0;
}

int nbd_tls_new(struct blkserv_device *dev, const struct nbd_tls_options *o, struct nbd_tls **ret)
{
	struct tls_err e = { 0 };
	int r = tls_build(o, ret, &e);

	if (r == -EINVAL) {
		if (e.option)
			blkserv_error(dev, "option '%s': %s", e.option, e.msg);
		else
			blkserv_error(dev, "%s", e.msg);
	}
	if (*ret)
		(*ret)->dev = dev;
	return r;
}

int nbd_tls_check(const struct nbd_tls_options *o, const char **ret_option, char *msg, size_t len)
{
	struct tls_err e = { 0 };
	struct nbd_tls *t = NULL;
	int r = tls_build(o, &t, &e);

	/* Loaded only to see that it loads: open loads it again. */
	nbd_tls_free(t);
	if (r == -EINVAL) {
		*ret_option = e.option;
		snprintf(msg, len, "%s", e.msg);
	}
	return r;
}

void nbd_tls_free(struct nbd_tls *t)
{
	if (!t)
		return;
	if (t->x509)
		gnutls_certificate_free_credentials(t->x509);
	if (t->psk)
		gnutls_psk_free_server_credentials(t->psk);
	if (t->priority)
		gnutls_priority_deinit(t->priority);
	free(t);
}

enum nbd_tls_mode nbd_tls_mode(const struct nbd_tls *t)
{
	return t ? t->mode : NBD_TLS_OFF;
}

/* ---- sessions ---------------------------------------------------------- */

static int session_setup(struct nbd_tls_session *s)
{
	struct nbd_tls *t = s->t;

	if (gnutls_init(&s->gs, GNUTLS_SERVER) < 0)
		return -ENOMEM;
	if (gnutls_priority_set(s->gs, t->priority) < 0)
		return -ENOMEM;
	if (t->x509 && gnutls_credentials_set(s->gs, GNUTLS_CRD_CERTIFICATE, t->x509) < 0)
		return -ENOMEM;
	if (t->psk && gnutls_credentials_set(s->gs, GNUTLS_CRD_PSK, t->psk) < 0)
		return -ENOMEM;
	if (t->verify_peer) {
		gnutls_certificate_server_set_request(s->gs, GNUTLS_CERT_REQUIRE);
		gnutls_session_set_verify_cert(s->gs, NULL, 0);
	}
	gnutls_transport_set_int(s->gs, s->fd);
	return 0;
}

static void session_free(struct nbd_tls_session *s)
{
	if (s->gs)
		gnutls_deinit(s->gs);
	free(s);
}

static void log_session(struct nbd_tls_session *s)
{
	char *desc = gnutls_session_get_desc(s->gs);

	blkserv_debug(s->t->dev, "%s: TLS session %s", s->peer, desc ? desc : "");
	gnutls_free(desc);
}

int nbd_tls_accept(struct nbd_tls *t, int fd, const char *peer, struct nbd_tls_session **ret)
{
	struct nbd_tls_session *s = calloc(1, sizeof(*s));
	int r;

	if (!s)
		return -ENOMEM;
	*s = (struct nbd_tls_session){ .t = t, .fd = fd, .peer = peer };
	r = session_setup(s);
	if (r < 0) {
		session_free(s);
		return r;
	}
	do
		r = gnutls_handshake(s->gs);
	while (r == GNUTLS_E_INTERRUPTED);
	if (r < 0) {
		blkserv_warning(t->dev, "%s: TLS handshake failed: %s", peer,
				r == GNUTLS_E_AGAIN ? "timed out" : gnutls_strerror(r));
		session_free(s);
		return r == GNUTLS_E_AGAIN ? -ETIMEDOUT : -ECONNABORTED;
	}
	log_session(s);
	*ret = s;
	return 0;
}

static int io_error(struct nbd_tls_session *s, ssize_t r)
{
	if (r == GNUTLS_E_AGAIN)
		return -ETIMEDOUT; /* SO_RCVTIMEO expired */
	if (r == GNUTLS_E_PREMATURE_TERMINATION || r == GNUTLS_E_PUSH_ERROR || r == GNUTLS_E_PULL_ERROR)
		return -ECONNABORTED;
	blkserv_warning(s->t->dev, "%s: TLS error: %s", s->peer, gnutls_strerror((int)r));
	return -ECONNABORTED;
}

int nbd_tls_recv_all(struct nbd_tls_session *s, void *buf, size_t len)
{
	char *p = buf;

	while (len > 0) {
		ssize_t n = gnutls_record_recv(s->gs, p, len);

		if (n == GNUTLS_E_INTERRUPTED)
			continue;
		if (n == 0)
			return -ECONNABORTED;
		if (n < 0)
			return io_error(s, n);
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int nbd_tls_send_all(struct nbd_tls_session *s, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = gnutls_record_send(s->gs, p, len);

		if (n == GNUTLS_E_INTERRUPTED || n == GNUTLS_E_AGAIN)
			continue;
		if (n < 0)
			return io_error(s, n);
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ---- the transmission phase ------------------------------------------- */

static ssize_t pull_nonblocking(gnutls_transport_ptr_t ptr, void *buf, size_t len)
{
	return recv((int)(intptr_t)ptr, buf, len, MSG_DONTWAIT);
}

static ssize_t push_blocking(gnutls_transport_ptr_t ptr, const void *buf, size_t len)
{
	ssize_t n;

	do
		n = send((int)(intptr_t)ptr, buf, len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n;
}

void nbd_tls_set_nonblocking_reads(struct nbd_tls_session *s)
{
	gnutls_transport_set_pull_function(s->gs, pull_nonblocking);
	gnutls_transport_set_push_function(s->gs, push_blocking);
}

ssize_t nbd_tls_recv(void *session, void *buf, size_t len)
{
	struct nbd_tls_session *s = session;
	ssize_t n;

	do
		n = gnutls_record_recv(s->gs, buf, len);
	while (n == GNUTLS_E_INTERRUPTED);
	if (n >= 0)
		return n;
	if (n == GNUTLS_E_AGAIN)
		return -EAGAIN;
	if (n == GNUTLS_E_PREMATURE_TERMINATION || n == GNUTLS_E_PULL_ERROR)
		return -ECONNRESET;
	blkserv_warning(s->t->dev, "%s: TLS error: %s", s->peer, gnutls_strerror((int)n));
	return -EPROTO;
}

static int send_one(struct nbd_tls_session *s, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = gnutls_record_send(s->gs, p, len);

		if (n == GNUTLS_E_INTERRUPTED || n == GNUTLS_E_AGAIN)
			continue;
		if (n < 0)
			return n == GNUTLS_E_PUSH_ERROR ? -EPIPE : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int uncork(struct nbd_tls_session *s)
{
	int r;

	do
		r = gnutls_record_uncork(s->gs, GNUTLS_RECORD_WAIT);
	while (r == GNUTLS_E_INTERRUPTED || r == GNUTLS_E_AGAIN);
	return r < 0 ? (r == GNUTLS_E_PUSH_ERROR ? -EPIPE : -EIO) : 0;
}

/* Small pieces (headers) share a record; big ones (read data) are sent as
 * they are, not copied into the cork buffer first. */
int nbd_tls_sendv(void *session, const struct iovec *iov, unsigned n)
{
	struct nbd_tls_session *s = session;
	bool corked = false;
	int r = 0;

	for (unsigned i = 0; i < n && r == 0; i++) {
		bool small = iov[i].iov_len < CORK_MAX;

		if (small && !corked)
			gnutls_record_cork(s->gs);
		else if (!small && corked)
			r = uncork(s);
		corked = small;
		if (r == 0)
			r = send_one(s, iov[i].iov_base, iov[i].iov_len);
	}
	if (corked) {
		int u = uncork(s);
		r = r ? r : u;
	}
	return r;
}

void nbd_tls_session_end(struct nbd_tls_session *s)
{
	struct timeval tv = { .tv_sec = BYE_TIMEOUT_S };

	if (!s)
		return;
	/* A peer that reads nothing must not hold the thread. */
	(void)setsockopt(s->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	(void)gnutls_bye(s->gs, GNUTLS_SHUT_WR);
	session_free(s);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * GET /metrics in the Prometheus text format (version 0.0.4), made from the
 * counters `blkservctl stats` shows.  libmicrohttpd parses HTTP; it runs in
 * the main loop (MHD_USE_EPOLL, no thread of its own): the loop polls its
 * epoll fd and calls MHD_run, so a scrape reads the device list the loop
 * owns, and the per-queue counters with relaxed loads (never a lock the I/O
 * path takes).  Bounded: max_connections at once, 16 KiB per request
 * (headers included: more is refused by libmicrohttpd), 10 s per
 * connection; any path but /metrics is 404, any method but GET and HEAD 405.
 */
#include <dirent.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "build-config.h"
#include "cleanup.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"
#include "parse.h"
#include "payload.h"
#include "stats.h"
#include "upgrade.h"

#define REQUEST_MEMORY_LIMIT (16u * 1024)
#define CONNECTION_TIMEOUT_S 10u
#define LISTEN_BACKLOG 16
#define RUN_INTERVAL_MS 500

struct metrics {
	struct MHD_Daemon *mhd;
	struct metrics_source src;
	int listen_fd;
	char *unix_path; /* removed at stop */
};

/* ---- the exposition --------------------------------------------------- */

/* Histogram bounds in seconds: 10 µs to 10 s, 1-2.5-5 steps. */
static const double duration_buckets[] = {
	0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
	0.025,   0.05,     0.1,     0.25,   0.5,     1,      2.5,   5,      10,
};

/* A label value as the text format escapes it: \\, \" and \n. */
static void put_escaped(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fputc('\\', f);
		if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

/* device, frontend, backend and kernel_device: every per-device series
 * carries all four, so it joins node_exporter's node_disk_* by device name. */
static void put_device_labels(FILE *f, const struct blkserv_device *dev)
{
	/* node_exporter's device label: "ublkb0" for /dev/ublkb0; none for an
	 * export, which has no kernel device. */
	const char *kernel = strncmp(dev->kernel_name, "/dev/", 5) == 0 ? dev->kernel_name + 5 : "";

	fputs("device=\"", f);
	put_escaped(f, device_name(dev));
	fputs("\",frontend=\"", f);
	put_escaped(f, device_frontend_name(dev));
	fputs("\",backend=\"", f);
	put_escaped(f, device_backend_name(dev));
	fputs("\",kernel_device=\"", f);
	put_escaped(f, kernel);
	fputc('"', f);
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample of @name for @dev, with "op" when @op is set, then @extra
 * labels ("le=\"0.5\"") if any. */
static void sample(FILE *f, const char *name, const struct blkserv_device *dev, const char *op, const char *extra,
		   const char *fmt, ...) BLKSERV_PRINTF(6, 7);
static void sample(FILE *f, const char *name, const struct blkserv_device *dev, const char *op, const char *extra,
		   const char *fmt, ...)
{
	va_list ap;

	fprintf(f, "%s{", name);
	put_device_labels(f, dev);
	if (op)
		fprintf(f, ",op=\"%s\"", op);
	if (extra)
		fprintf(f, ",%s", extra);
	fputs("} ", f);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
}

struct device_snapshot {
	struct blkserv_device *dev;
	struct io_stats stats;
};

/* A counter family by operation: @field is a uint64_t of struct op_stats. */
static void per_op_counter(FILE *f, const char *name, const char *help, const struct device_snapshot *d, size_t n,
			   size_t field)
{
	family(f, name, "counter", help);
	for (size_t i = 0; i < n; i++)
		for (unsigned op = 0; op < BLKSERV_OP__MAX; op++) {
			const char *o = (const char *)&d[i].stats.op[op];
			sample(f, name, d[i].dev, op_name(op), NULL, "%llu",
			       (unsigned long long)*(const uint64_t *)(o + field));
		}
}

static void put_counters(FILE *f, const struct device_snapshot *d, size_t n)
{
	per_op_counter(f, "blkservd_requests_total", "Requests completed, by operation.", d, n,
		       offsetof(struct op_stats, ops));
	per_op_counter(f, "blkservd_request_bytes_total", "Bytes of the requests that succeeded, by operation.", d, n,
		       offsetof(struct op_stats, bytes));
	per_op_counter(f, "blkservd_request_errors_total", "Requests that failed, by operation.", d, n,
		       offsetof(struct op_stats, errors));
	family(f, "blkservd_requests_in_flight", "gauge", "Requests the backend holds now.");
	for (size_t i = 0; i < n; i++)
		sample(f, "blkservd_requests_in_flight", d[i].dev, NULL, NULL, "%llu",
		       (unsigned long long)d[i].stats.inflight);
	family(f, "blkservd_mapped_reads_total", "counter", "Reads answered from a file range without a copy.");
	for (size_t i = 0; i < n; i++)
		sample(f, "blkservd_mapped_reads_total", d[i].dev, NULL, NULL, "%llu",
		       (unsigned long long)d[i].stats.reads_mapped);
}

static void put_histogram(FILE *f, const struct blkserv_device *dev, unsigned op, const struct op_stats *o)
{
	uint64_t count = 0;
	char le[48];

	for (unsigned i = 0; i < LATENCY_BUCKETS; i++)
		count += o->latency[i];
	for (size_t k = 0; k < sizeof(duration_buckets) / sizeof(duration_buckets[0]); k++) {
		uint64_t bound_ns = (uint64_t)(duration_buckets[k] * 1e9), cumulative = 0;
		for (unsigned b = 0; b < LATENCY_BUCKETS; b++)
			if (stats_bucket_upper_ns(b) <= bound_ns + 1)
				cumulative += o->latency[b];
		snprintf(le, sizeof(le), "le=\"%g\"", duration_buckets[k]);
		sample(f, "blkservd_request_duration_seconds_bucket", dev, op_name(op), le, "%llu",
		       (unsigned long long)cumulative);
	}
	sample(f, "blkservd_request_duration_seconds_bucket", dev, op_name(op), "le=\"+Inf\"", "%llu",
	       (unsigned long long)count);
	sample(f, "blkservd_request_duration_seconds_sum", dev, op_name(op), NULL, "%.9f",
	       (double)o->latency_ns_sum / 1e9);
	sample(f, "blkservd_request_duration_seconds_count", dev, op_name(op), NULL, "%llu", (unsigned long long)count);
}

static void put_device_facts(FILE *f, const struct device_snapshot *d, size_t n)
{
	family(f, "blkservd_device_info", "gauge", "A configured device; always 1.");
	for (size_t i = 0; i < n; i++)
		sample(f, "blkservd_device_info", d[i].dev, NULL, NULL, "1");
	family(f, "blkservd_device_up", "gauge", "1 while the device is served, 0 while it starts or stops.");
	for (size_t i = 0; i < n; i++)
		sample(f, "blkservd_device_up", d[i].dev, NULL, NULL, "%d", d[i].dev->state == DEVICE_LIVE);
	family(f, "blkservd_device_size_bytes", "gauge", "The device's size.");
	for (size_t i = 0; i < n; i++)
		sample(f, "blkservd_device_size_bytes", d[i].dev, NULL, NULL, "%llu",
		       (unsigned long long)d[i].dev->size);
}

/* The backend's own counters (blkservctl stats), each whole number under
 * its key: blkservd_backend_stat{...,name="checksum_errors"}. */
static void put_backend_stats(FILE *f, const struct device_snapshot *d, size_t n)
{
	family(f, "blkservd_backend_stat", "gauge",
	       "A counter or value the backend reports (blkservd-NAME(7)), under its name.");
	for (size_t i = 0; i < n; i++) {
		const struct blkserv_backend *b = &d[i].dev->backend->backend;
		char text[2048] = "", *save = NULL, label[300];

		if (!b->get_stats || !d[i].dev->backend_handle ||
		    b->get_stats(d[i].dev->backend_handle, text, sizeof(text)) < 0)
			continue;
		text[sizeof(text) - 1] = '\0';
		for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
			char *eq = strchr(line, '=');
			int64_t v;
			if (!eq || eq == line ||
			    strspn(line, "abcdefghijklmnopqrstuvwxyz0123456789_") != (size_t)(eq - line))
				continue;
			*eq = '\0';
			if (parse_int_dec(eq + 1, &v) < 0)
				continue; /* not a whole number: not a metric */
			snprintf(label, sizeof(label), "name=\"%s\"", line);
			sample(f, "blkservd_backend_stat", d[i].dev, NULL, label, "%lld", (long long)v);
		}
	}
}

/* The boot time in seconds since the epoch (/proc/stat btime). */
static unsigned long long boot_time(void)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/stat", "re");
	unsigned long long t = 0;
	char line[256];

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "btime %llu", &t) == 1)
			break;
	return t;
}

/* process_* as Prometheus client libraries name them, from /proc/self. */
static void put_process(FILE *f)
{
	_cleanup_fclose_ FILE *stat = fopen("/proc/self/stat", "re");
	char line[1024], *p = NULL;
	unsigned long long utime = 0, stime = 0, start = 0, vsize = 0, rss = 0;
	long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	struct rlimit rl;
	size_t fds = 0;
	DIR *dir;

	if (stat && fgets(line, sizeof(line), stat))
		p = strrchr(line, ')'); /* the command name may hold spaces */
	if (!p || sscanf(p + 2,
			 "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d %llu %llu %llu",
			 &utime, &stime, &start, &vsize, &rss) != 5)
		return;
	family(f, "process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.");
	fprintf(f, "process_cpu_seconds_total %.2f\n", (double)(utime + stime) / (double)ticks);
	family(f, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
	fprintf(f, "process_resident_memory_bytes %llu\n", rss * (unsigned long long)page);
	family(f, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
	fprintf(f, "process_virtual_memory_bytes %llu\n", vsize);
	dir = opendir("/proc/self/fd");
	for (struct dirent *e; dir && (e = readdir(dir));)
		fds += e->d_name[0] != '.';
	if (dir)
		closedir(dir);
	family(f, "process_open_fds", "gauge", "Number of open file descriptors.");
	fprintf(f, "process_open_fds %zu\n", fds ? fds - 1 : 0); /* less opendir's own */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		family(f, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
		fprintf(f, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
	}
	family(f, "process_start_time_seconds", "gauge", "Start time of the process since the epoch, in seconds.");
	fprintf(f, "process_start_time_seconds %.2f\n", (double)boot_time() + (double)start / (double)ticks);
}

static void put_daemon(FILE *f)
{
	family(f, "blkservd_build_info", "gauge", "The running blkservd's version; always 1.");
	fprintf(f, "blkservd_build_info{version=\"");
	put_escaped(f, BLKSERV_VERSION);
	fprintf(f, "\"} 1\n");
	family(f, "blkservd_upgrades_total", "counter", "In-place upgrades (blkservctl upgrade) of this process.");
	fprintf(f, "blkservd_upgrades_total %u\n", upgrade_generation());
	family(f, "blkservd_request_memory_bytes", "gauge", "Request payload memory held now (request_memory).");
	fprintf(f, "blkservd_request_memory_bytes %llu\n", (unsigned long long)blkserv_payload_used());
	family(f, "blkservd_request_memory_limit_bytes", "gauge", "The request_memory budget.");
	fprintf(f, "blkservd_request_memory_limit_bytes %llu\n", (unsigned long long)payload_limit_get());
}

char *metrics_render(const struct metrics_source *src, size_t *ret_len)
{
	size_t n = src->count(src->userdata), len = 0;
	_cleanup_free_ struct device_snapshot *d = calloc(n ? n : 1, sizeof(*d));
	char *text = NULL;
	FILE *f;

	if (!d)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		d[i].dev = src->device_at(src->userdata, i);
		device_get_stats(d[i].dev, &d[i].stats);
	}
	f = open_memstream(&text, &len);
	if (!f)
		return NULL;
	put_daemon(f);
	put_device_facts(f, d, n);
	put_counters(f, d, n);
	family(f, "blkservd_request_duration_seconds", "histogram",
	       "Time from submission to completion of the requests that succeeded, by operation.");
	for (size_t i = 0; i < n; i++)
		for (unsigned op = 0; op < BLKSERV_OP__MAX; op++)
			put_histogram(f, d[i].dev, op, &d[i].stats.op[op]);
	put_backend_stats(f, d, n);
	put_process(f);
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	*ret_len = len;
	return text;
}

/* ---- HTTP ------------------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *text)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	(void)MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		(void)MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static bool no_content(const char *length)
{
	return !length || strcmp(length, "0") == 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size, void **state)
{
	struct metrics *m = cls;
	struct MHD_Response *r;
	enum MHD_Result ret;
	size_t len = 0;
	char *text;

	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET /metrics\n");
	/* The first call comes before any body is read: a body is announced. */
	if (*upload_data_size > 0 ||
	    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING) ||
	    !no_content(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH)))
		return reply(conn, MHD_HTTP_BAD_REQUEST, "a GET has no body\n");
	if (strcmp(url, "/metrics") != 0)
		return reply(conn, MHD_HTTP_NOT_FOUND, "only /metrics is here\n");
	text = metrics_render(&m->src, &len);
	if (!text)
		return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
	r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(text);
		return MHD_NO;
	}
	(void)MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
	ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

BLKSERV_PRINTF(2, 0) static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	log_debug("metrics: %s", msg);
}

/* A socket a daemon that died left may be replaced; a live one, or a file
 * that is not a socket, not (-EADDRINUSE, -EEXIST). */
static int clear_stale_socket(const struct sockaddr_un *sa)
{
	_cleanup_close_ int probe = -1;
	struct stat st;

	if (lstat(sa->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe >= 0 && connect(probe, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
		return -EADDRINUSE;
	return unlink(sa->sun_path) < 0 ? -errno : 0;
}

static int listen_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int r;

	if (fd < 0)
		return -errno;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	r = clear_stale_socket(&sa);
	if (r < 0)
		return r;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, LISTEN_BACKLOG) < 0)
		return -errno;
	return TAKE_FD(fd);
}

/* ":PORT": every address, IPv6 and IPv4, on one socket (libmicrohttpd takes
 * one); -EAFNOSUPPORT without IPv6. */
static int listen_any(const char *port)
{
	struct sockaddr_in6 sa = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT };
	_cleanup_close_ int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int zero = 0, one = 1;
	unsigned n;

	if (fd < 0)
		return errno == EAFNOSUPPORT ? -EAFNOSUPPORT : -errno;
	if (parse_port(port, &n) < 0)
		return -EINVAL;
	sa.sin6_port = htons((uint16_t)n);
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, LISTEN_BACKLOG) < 0)
		return -errno;
	return TAKE_FD(fd);
}

static int listen_tcp(const char *address)
{
	_cleanup_free_ char *host = NULL, *port = NULL;
	struct addrinfo hints = { .ai_flags = AI_PASSIVE, .ai_socktype = SOCK_STREAM }, *res = NULL;
	int r = split_host_port(address, &host, &port), fd = -EADDRNOTAVAIL, one = 1;

	if (r < 0)
		return r;
	if (!host) {
		fd = listen_any(port);
		if (fd != -EAFNOSUPPORT)
			return fd;
	}
	if (getaddrinfo(host, port, &hints, &res) != 0)
		return -EADDRNOTAVAIL;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
		if (fd < 0) {
			fd = -errno;
			continue;
		}
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, LISTEN_BACKLOG) == 0)
			break;
		r = -errno;
		close(fd);
		fd = r;
	}
	freeaddrinfo(res);
	return fd;
}

int metrics_start(const struct metrics_config *cfg, const struct metrics_source *src, struct metrics **ret)
{
	_cleanup_free_ struct metrics *m = calloc(1, sizeof(*m));
	const char *where = cfg->unix_path ? cfg->unix_path : cfg->tcp;

	if (!m)
		return -ENOMEM;
	m->src = *src;
	m->listen_fd = cfg->unix_path ? listen_unix(cfg->unix_path) : listen_tcp(cfg->tcp);
	if (m->listen_fd < 0)
		return log_error_errno(m->listen_fd, "metrics: cannot listen on %s: %m", where);
	m->mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, m,
				  MHD_OPTION_LISTEN_SOCKET, m->listen_fd, MHD_OPTION_CONNECTION_LIMIT,
				  (unsigned)cfg->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, CONNECTION_TIMEOUT_S,
				  MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)REQUEST_MEMORY_LIMIT,
				  MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
	if (!m->mhd) {
		close(m->listen_fd);
		log_error("metrics: cannot start the HTTP server on %s", where);
		return -EIO;
	}
	if (cfg->unix_path)
		m->unix_path = strdup(cfg->unix_path);
	log_info("metrics: serving GET /metrics on %s%s", cfg->unix_path ? "unix:" : "http://", where);
	*ret = TAKE_PTR(m);
	return 0;
}

void metrics_stop(struct metrics *m)
{
	if (!m)
		return;
	MHD_stop_daemon(m->mhd);
	safe_close(m->listen_fd);
	if (m->unix_path)
		(void)unlink(m->unix_path);
	free(m->unix_path);
	free(m);
}

int metrics_fd(const struct metrics *m)
{
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_EPOLL_FD);

	return info ? info->epoll_fd : -1;
}

int metrics_timeout_ms(const struct metrics *m)
{
	MHD_UNSIGNED_LONG_LONG ms;

	/* At most RUN_INTERVAL_MS: libmicrohttpd stops accepting at
	 * max_connections and, in this external epoll mode, takes the queued
	 * connections again only from a later MHD_run, which no event on its
	 * epoll fd is sure to cause (seen: a flood of connections left the
	 * endpoint deaf for good). */
	if (MHD_get_timeout(m->mhd, &ms) != MHD_YES || ms > RUN_INTERVAL_MS)
		return RUN_INTERVAL_MS;
	return (int)ms;
}

void metrics_run(struct metrics *m)
{
	(void)MHD_run(m->mhd);
}

bool metrics_config_equal(const struct metrics_config *a, const struct metrics_config *b)
{
	return a->enabled == b->enabled && a->max_connections == b->max_connections && !a->tcp == !b->tcp &&
	       (!a->tcp || strcmp(a->tcp, b->tcp) == 0) && !a->unix_path == !b->unix_path &&
	       (!a->unix_path || strcmp(a->unix_path, b->unix_path) == 0);
}

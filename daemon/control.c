/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control protocol (blkservctl(8) documents it for users).
 *
 * One request per connection: a JSON object on one line of at most
 * CONTROL_MAX_REQUEST bytes, sent within CONTROL_TIMEOUT_MS, e.g.
 *	{"command":"stats","device":"ram0"}
 * "command" (a string) is required; "device" (a string) names the device of
 * the commands that take one and is refused by the others.  Members a
 * command does not use are ignored, so a later client may add options.
 * The answer is one JSON object on one line, then the daemon closes:
 *	{"ok":true, ...the command's members...}
 *	{"ok":false,"error":"no device named 'ram9'"}
 * Any answer may carry "warnings":[{"device":NAME,"warning":TEXT}]: what the
 * command did not do although it succeeded (reload: a device kept as it was
 * because it is open), and "failed":[{"device":NAME,"error":TEXT}] (reload:
 * the devices that did not start; the answer is then ok:false).
 *
 * Types: counts and sizes are JSON integers (unsigned 64-bit), latencies in
 * microseconds are numbers with one decimal, yes/no are booleans, a missing
 * value is null, the rest are strings (invalid UTF-8 bytes become '?').  A
 * backend's counters (get_stats' "key=value" lines) are integers only when
 * the value is a plain decimal integer that fits 64 bits ("0", "-3",
 * "4096"); anything else ("0x1F", "nan", "007", "1e5") stays a string:
 * nothing is guessed from the look of a text.
 *
 * Commands and their members:
 *	list          "devices": [DEVICE...]
 *	status NAME   "device": DEVICE plus "capabilities": [...], "write_through"
 *	stats NAME    "stats": {"inflight", "reads_mapped", "ops": {OP: {...}}, "backend": {...}}
 *	reload        nothing more, or "failed" / "warnings"
 *	version       "version", "pid", "generation" (how many times this PID
 *	              executed a binary in place), "upgrade" ("none", "done",
 *	              "undone"), "upgrade_error" (why undone, or null)
 *	scrub NAME    start a scrub (blkservctl scrub); "scrub": SCRUB
 *	scrub-status NAME  "scrub": SCRUB, the running or the last scrub
 *	upgrade       optional "binary" (a string): answered once the binary
 *	              accepted the config, just before the daemon executes it;
 *	              the client then waits for "generation" to change
 * where DEVICE is {"name", "frontend", "backend", "kernel", "size",
 * "block_size", "state", "read_only"} and SCRUB is {"state", "done_bytes",
 * "total_bytes", "errors", "started" (seconds since the epoch),
 * "duration_ms", "error" (null or why it could not finish)}.  Adding a command is a function and
 * a line in commands[].
 */
#include <errno.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "control.h"
#include "device.h"
#include "io-util.h"
#include "log.h"
#include "parse.h"
#include "scrub.h"
#include "upgrade.h"
#include "build-config.h"

/* The main loop serves a connection: a slow or silent client must not
 * stall it for long, nor make it read without bound. */
#define CONTROL_TIMEOUT_MS 2000
#define CONTROL_MAX_DEPTH 8

int control_listen(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = -1;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	(void)unlink(path);
	/* Only the owner (root) may connect: the socket can stop devices. */
	mode_t old = umask(0177);
	int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0 || listen(fd, 16) < 0)
		return -errno;
	return TAKE_FD(fd);
}

static bool peer_allowed(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return false;
	return cred.uid == 0 || cred.uid == geteuid();
}

/* ---- building answers ---------------------------------------------- */

/* Length of the valid UTF-8 sequence at @p, 0 if it is not one. */
static size_t utf8_len(const unsigned char *p)
{
	unsigned char c = p[0];
	size_t n;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
	else
		return 0;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

/* A JSON string of @s: JSON is UTF-8, so any byte that is not valid UTF-8
 * (a path or a backend's text may hold anything) becomes '?'. */
static struct json_object *string_new(const char *s)
{
	_cleanup_free_ char *copy = NULL;
	size_t len = strlen(s), i = 0;

	while (i < len) {
		size_t n = utf8_len((const unsigned char *)s + i);
		if (n == 0) {
			if (!copy && !(copy = strdup(s)))
				return NULL;
			copy[i] = '?';
			n = 1;
		}
		i += n;
	}
	return json_object_new_string(copy ? copy : s);
}

/* Add @value to the object @o; drops it if @o could not be allocated. */
static void put(struct json_object *o, const char *key, struct json_object *value)
{
	if (!o || json_object_object_add(o, key, value) < 0)
		json_object_put(value);
}

static void append(struct json_object *array, struct json_object *value)
{
	if (!array || json_object_array_add(array, value) < 0)
		json_object_put(value);
}

/* One decimal, as blkservctl shows them: a number, never "nan". */
static struct json_object *microseconds_new(uint64_t ns_sum, uint64_t count)
{
	char text[32];
	double us = count ? (double)ns_sum / (double)count / 1e3 : 0.0;

	snprintf(text, sizeof(text), "%.1f", us);
	return json_object_new_double_s(us, text);
}

/* A backend counter: an integer only if @s is a plain decimal integer
 * that fits (no sign but a leading '-', no leading zero), else a string. */
static struct json_object *typed_value(const char *s)
{
	const char *digits = s[0] == '-' ? s + 1 : s;
	size_t n = strlen(digits);
	int64_t i;
	uint64_t u;

	if (n == 0 || n > 20 || strspn(digits, "0123456789") != n || (digits[0] == '0' && (n > 1 || s[0] == '-')))
		return string_new(s);
	if (s[0] == '-')
		return parse_int_dec(s, &i) == 0 ? json_object_new_int64(i) : string_new(s);
	return parse_uint_dec(s, &u) == 0 ? json_object_new_uint64(u) : string_new(s);
}

static const char *state_name(enum device_state s)
{
	return s == DEVICE_LIVE ? "live" : s == DEVICE_STOPPED ? "stopped" : "starting";
}

static struct json_object *device_object(struct blkserv_device *dev)
{
	struct json_object *o = json_object_new_object();

	put(o, "name", string_new(device_name(dev)));
	put(o, "frontend", string_new(device_frontend_name(dev)));
	put(o, "backend", string_new(device_backend_name(dev)));
	put(o, "kernel", dev->kernel_name[0] ? string_new(dev->kernel_name) : NULL);
	put(o, "size", json_object_new_uint64(dev->size));
	put(o, "block_size", json_object_new_uint64(dev->block_size));
	put(o, "state", json_object_new_string(state_name(dev->state)));
	put(o, "read_only", json_object_new_boolean(!!(dev->caps & BLKSERV_CAP_READ_ONLY)));
	return o;
}

static struct json_object *caps_array(struct blkserv_device *dev)
{
	static const struct {
		uint64_t cap;
		const char *name;
	} caps[] = {
		{ BLKSERV_CAP_FLUSH, "flush" },
		{ BLKSERV_CAP_FUA, "fua" },
		{ BLKSERV_CAP_TRIM, "trim" },
		{ BLKSERV_CAP_WRITE_ZEROES, "write_zeroes" },
		{ BLKSERV_CAP_ROTATIONAL, "rotational" },
		{ BLKSERV_CAP_READ_ONLY, "read_only" },
	};
	struct json_object *a = json_object_new_array();

	for (size_t i = 0; i < ELEMENTSOF(caps); i++)
		if (dev->caps & caps[i].cap)
			append(a, json_object_new_string(caps[i].name));
	return a;
}

static struct json_object *op_object(const struct op_stats *o)
{
	struct json_object *j = json_object_new_object();
	uint64_t ok = o->ops - o->errors;

	put(j, "ops", json_object_new_uint64(o->ops));
	put(j, "bytes", json_object_new_uint64(o->bytes));
	put(j, "errors", json_object_new_uint64(o->errors));
	put(j, "mean_us", microseconds_new(o->latency_ns_sum, ok));
	put(j, "p50_us", microseconds_new(stats_percentile(o, 50), 1));
	put(j, "p99_us", microseconds_new(stats_percentile(o, 99), 1));
	put(j, "p999_us", microseconds_new(stats_percentile(o, 99.9), 1));
	return j;
}

/* The backend's "key=value\n" lines, each typed by typed_value(). */
static struct json_object *backend_object(struct blkserv_device *dev)
{
	const struct blkserv_backend *b = &dev->backend->backend;
	struct json_object *j = json_object_new_object();
	char extra[2048] = "";
	char *save = NULL;

	if (!b->get_stats || !dev->backend_handle || b->get_stats(dev->backend_handle, extra, sizeof(extra)) < 0)
		return j;
	extra[sizeof(extra) - 1] = '\0';
	for (char *line = strtok_r(extra, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '=');
		if (!eq || eq == line)
			continue;
		*eq = '\0';
		/* The key too must be UTF-8 (json-c copies it). */
		struct json_object *key = string_new(line);
		if (key)
			put(j, json_object_get_string(key), typed_value(eq + 1));
		json_object_put(key);
	}
	return j;
}

static struct json_object *stats_object(struct blkserv_device *dev)
{
	struct json_object *j = json_object_new_object(), *ops = json_object_new_object();
	struct io_stats s;

	device_get_stats(dev, &s);
	put(j, "inflight", json_object_new_uint64(s.inflight));
	put(j, "reads_mapped", json_object_new_uint64(s.reads_mapped));
	for (unsigned op = 0; op < BLKSERV_OP__MAX; op++)
		put(ops, op_name(op), op_object(&s.op[op]));
	put(j, "ops", ops);
	put(j, "backend", backend_object(dev));
	return j;
}

/* Add {"device": @device, @key: @text} to the array @member of @answer. */
static void report(struct json_object *answer, const char *member, const char *device, const char *key,
		   const char *text)
{
	struct json_object *array = NULL, *entry;

	if (!answer)
		return;
	if (!json_object_object_get_ex(answer, member, &array)) {
		array = json_object_new_array();
		put(answer, member, array);
		if (!json_object_object_get_ex(answer, member, &array))
			return;
	}
	entry = json_object_new_object();
	put(entry, "device", string_new(device));
	put(entry, key, string_new(text));
	append(array, entry);
}

void control_report_failed(struct json_object *answer, const char *device, const char *error)
{
	report(answer, "failed", device, "error", error);
}

void control_report_warning(struct json_object *answer, const char *device, const char *warning)
{
	report(answer, "warnings", device, "warning", warning);
}

/* ---- commands ------------------------------------------------------ */

struct control_request {
	const struct control_ops *ops;
	struct json_object *request; /* what the client sent */
	struct blkserv_device *dev;  /* its "device", for a command that takes one */
	struct json_object *answer;  /* "ok" is set; the command adds its members */
	char *error;                 /* malloc'd: why it failed (run returned < 0) */
};

static int cmd_list(struct control_request *req)
{
	struct json_object *devices = json_object_new_array();

	for (size_t i = 0; i < req->ops->count(req->ops->userdata); i++)
		append(devices, device_object(req->ops->device_at(req->ops->userdata, i)));
	put(req->answer, "devices", devices);
	return 0;
}

static int cmd_status(struct control_request *req)
{
	struct json_object *o = device_object(req->dev);

	put(o, "capabilities", caps_array(req->dev));
	put(o, "write_through", json_object_new_boolean(req->dev->write_through));
	put(req->answer, "device", o);
	return 0;
}

static int cmd_stats(struct control_request *req)
{
	put(req->answer, "stats", stats_object(req->dev));
	return 0;
}

static int cmd_reload(struct control_request *req)
{
	return req->ops->reload(req->ops->userdata, req->answer, &req->error);
}

static const char *c_string(struct json_object *o);
static int fail(struct control_request *req, const char *fmt, ...) BLKSERV_PRINTF(2, 3);

static int cmd_version(struct control_request *req)
{
	const char *failure = upgrade_failure();
	unsigned gen = upgrade_generation();

	put(req->answer, "version", json_object_new_string(BLKSERV_VERSION));
	put(req->answer, "pid", json_object_new_int64(getpid()));
	put(req->answer, "generation", json_object_new_uint64(gen));
	put(req->answer, "upgrade", json_object_new_string(!gen ? "none" : failure ? "undone" : "done"));
	put(req->answer, "upgrade_error", failure ? string_new(failure) : NULL);
	return 0;
}

static int cmd_upgrade(struct control_request *req)
{
	struct json_object *binary = NULL;
	const char *path = NULL;

	if (json_object_object_get_ex(req->request, "binary", &binary)) {
		if (!json_object_is_type(binary, json_type_string) || !(path = c_string(binary)) || !*path)
			return fail(req, "\"binary\" must be a non-empty string");
	}
	return req->ops->upgrade(req->ops->userdata, path, &req->error);
}

/* The scrub's state (scrub.h), after starting one if @start. */
static int scrub_command(struct control_request *req, bool start)
{
	struct blkserv_device *dev = req->dev;
	struct scrub_status st;
	struct json_object *o;
	int r = start ? device_scrub_start(dev) : 0;

	if (r == -EOPNOTSUPP)
		return fail(req, "backend %s cannot scrub", device_backend_name(dev));
	if (r < 0)
		return fail(req, "cannot scrub %s: %s", device_name(dev),
			    r == -EBUSY    ? "a scrub is already running"
			    : r == -ENODEV ? "the device is not running"
					   : strerror(-r));
	device_scrub_status(dev, &st);
	o = json_object_new_object();
	put(o, "state", json_object_new_string(scrub_state_name(st.state)));
	put(o, "done_bytes", json_object_new_uint64(st.done_bytes));
	put(o, "total_bytes", json_object_new_uint64(st.total_bytes));
	put(o, "errors", json_object_new_uint64(st.errors));
	put(o, "started", json_object_new_uint64(st.started));
	put(o, "duration_ms", json_object_new_uint64(st.duration_ms));
	put(o, "error", st.error ? json_object_new_string(strerror(-st.error)) : NULL);
	put(req->answer, "scrub", o);
	return 0;
}

static int cmd_scrub(struct control_request *req)
{
	return scrub_command(req, true);
}

static int cmd_scrub_status(struct control_request *req)
{
	return scrub_command(req, false);
}

static const struct control_command {
	const char *name;
	bool takes_device; /* "device" is required (and refused when false) */
	int (*run)(struct control_request *req);
} commands[] = {
	{ "list", false, cmd_list },       { "status", true, cmd_status },
	{ "stats", true, cmd_stats },      { "reload", false, cmd_reload },
	{ "scrub", true, cmd_scrub },      { "scrub-status", true, cmd_scrub_status },
	{ "version", false, cmd_version }, { "upgrade", false, cmd_upgrade },
};

static struct blkserv_device *find(const struct control_ops *ops, const char *name)
{
	for (size_t i = 0; i < ops->count(ops->userdata); i++) {
		struct blkserv_device *dev = ops->device_at(ops->userdata, i);
		if (strcmp(device_name(dev), name) == 0)
			return dev;
	}
	return NULL;
}

static int fail(struct control_request *req, const char *fmt, ...)
{
	va_list ap;

	free(req->error);
	va_start(ap, fmt);
	if (vasprintf(&req->error, fmt, ap) < 0)
		req->error = NULL;
	va_end(ap);
	return -EINVAL;
}

/* The C string of the JSON string @o, or NULL if it holds a NUL
 * ("list\u0000x" must not be taken for "list"). */
static const char *c_string(struct json_object *o)
{
	const char *s = json_object_get_string(o);

	return strlen(s) == (size_t)json_object_get_string_len(o) ? s : NULL;
}

/* Look up the command and its device, then run it. */
static int dispatch(struct control_request *req)
{
	struct json_object *command, *device = NULL;
	const struct control_command *c = NULL;

	const char *name;

	if (!json_object_object_get_ex(req->request, "command", &command) ||
	    !json_object_is_type(command, json_type_string))
		return fail(req, "the request has no \"command\" string");
	name = c_string(command);
	for (size_t i = 0; i < ELEMENTSOF(commands) && name && !c; i++)
		if (strcmp(commands[i].name, name) == 0)
			c = &commands[i];
	if (!c)
		return fail(req, "unknown command '%.64s'", json_object_get_string(command));
	if (json_object_object_get_ex(req->request, "device", &device) != c->takes_device)
		return fail(req,
			    c->takes_device ? "command '%s' needs a \"device\"" : "command '%s' takes no \"device\"",
			    c->name);
	if (device) {
		if (!json_object_is_type(device, json_type_string))
			return fail(req, "\"device\" must be a string");
		name = c_string(device);
		req->dev = name ? find(req->ops, name) : NULL;
		if (!req->dev)
			return fail(req, "no device named '%.64s'", json_object_get_string(device));
	}
	return c->run(req);
}

/* ---- the connection ------------------------------------------------ */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Read one request line (without its '\n') into @buf within the deadline:
 * its length, -EMSGSIZE if no line end came in @size bytes, -ETIMEDOUT,
 * -ENODATA if the client sent nothing, or -errno.  The end of the stream
 * also ends the line. */
static ssize_t read_request(int fd, char *buf, size_t size)
{
	int64_t deadline = now_ms() + CONTROL_TIMEOUT_MS;
	size_t len = 0;

	for (;;) {
		char *nl = memchr(buf, '\n', len);
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - now_ms();
		ssize_t n;

		if (nl)
			return nl - buf;
		if (len == size)
			return -EMSGSIZE;
		if (left <= 0)
			return -ETIMEDOUT;
		n = poll(&p, 1, (int)left);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n <= 0)
			continue;
		n = recv(fd, buf + len, size - len, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return len > 0 ? (ssize_t)len : -ENODATA;
		len += (size_t)n;
	}
}

/* The request object in @line, or NULL with the reason in req->error. */
static struct json_object *parse_request(struct control_request *req, const char *line, size_t len)
{
	struct json_tokener *tok = json_tokener_new_ex(CONTROL_MAX_DEPTH);
	struct json_object *o;
	enum json_tokener_error e;
	size_t end;

	if (!tok) {
		fail(req, "out of memory");
		return NULL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, line, (int)len);
	e = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (memchr(line, '\0', len))
		fail(req, "the request holds a NUL byte");
	else if (e == json_tokener_continue)
		fail(req, "the request is not complete JSON (one object on one line)");
	else if (e != json_tokener_success)
		fail(req, "the request is not valid JSON: %s at byte %zu", json_tokener_error_desc(e), end);
	else if (!json_object_is_type(o, json_type_object))
		fail(req, "the request is not a JSON object");
	else if (strspn(line + end, " \t\r") != len - end)
		fail(req, "the request has more than one JSON value");
	else
		return o;
	json_object_put(o);
	return NULL;
}

/* Answer the request that @n (from read_request) says came in @line. */
static void answer(int fd, const struct control_ops *ops, char *line, ssize_t n)
{
	struct control_request req = { .ops = ops, .answer = json_object_new_object() };
	const char *text = NULL;
	int r;

	put(req.answer, "ok", json_object_new_boolean(true));
	if (n == -EMSGSIZE)
		r = fail(&req, "the request is longer than %d bytes", CONTROL_MAX_REQUEST);
	else if (n < 0)
		r = fail(&req, "cannot read the request: %s", strerror((int)-n));
	else
		r = (req.request = parse_request(&req, line, (size_t)n)) ? dispatch(&req) : -EINVAL;
	if (r < 0) {
		put(req.answer, "ok", json_object_new_boolean(false));
		put(req.answer, "error", string_new(req.error ? req.error : strerror(-r)));
	}
	if (req.answer)
		text = json_object_to_json_string_ext(req.answer,
						      JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!text)
		text = "{\"ok\":false,\"error\":\"out of memory\"}";
	if (write_full(fd, text, strlen(text)) == 0)
		(void)write_full(fd, "\n", 1);
	json_object_put(req.answer);
	json_object_put(req.request);
	free(req.error);
}

void control_serve(int listen_fd, const struct control_ops *ops)
{
	_cleanup_close_ int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	struct timeval tv = { .tv_sec = CONTROL_TIMEOUT_MS / 1000 };
	char line[CONTROL_MAX_REQUEST];
	ssize_t n;

	if (fd < 0)
		return;
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (!peer_allowed(fd))
		return;
	n = read_request(fd, line, sizeof(line));
	if (n == -ENODATA || n == -ETIMEDOUT)
		return; /* nobody to answer */
	answer(fd, ops, line, n);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* blkservctl: ask a running blkservd about its devices.  The daemon answers
 * in typed JSON (control.c describes the protocol); --json prints that
 * answer as it came, the plain output is formatted from it. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "build-config.h"
#include "cleanup.h"
#include "io-util.h"

/* An answer larger than this is not one the daemon would send. */
#define MAX_ANSWER (64u << 20)

/* Exit statuses (blkservctl(8)). */
#define EXIT_DONE 0
#define EXIT_ERROR 1
#define EXIT_USAGE 2
#define EXIT_WARNINGS 3

static const char *arg_socket = BLKSERV_RUNTIME_DIR "/control.sock";
static bool arg_json;
static bool arg_scrub_status, arg_no_wait;

static void print_list(struct json_object *answer);
static void print_status(struct json_object *answer);
static void print_stats(struct json_object *answer);

static const struct command {
	const char *name;
	bool takes_device;
	const char *help;
	/* The plain output of a successful answer; NULL: every member
	 * but "ok" and "warnings" as KEY VALUE lines. */
	void (*print)(struct json_object *answer);
} commands[] = {
	{ "list", false, "every device: frontend, backend, kernel device, size, state", print_list },
	{ "status", true, "one device, with its capabilities", print_status },
	{ "stats", true, "I/O counters and latency percentiles per operation", print_stats },
	{ "reload", false, "reload the config (like systemctl reload blkservd)", NULL },
	{ "version", false, "the daemon's version, PID and upgrade generation", NULL },
};

static void help(void)
{
	printf("Usage: blkservctl [--json] [--socket PATH] COMMAND\n"
	       "Ask a running blkservd about its devices.\n\nCommands:\n");
	for (size_t i = 0; i < ELEMENTSOF(commands); i++) {
		char synopsis[64];
		snprintf(synopsis, sizeof(synopsis), "%s%s", commands[i].name, commands[i].takes_device ? " NAME" : "");
		printf("  %-14s %s\n", synopsis, commands[i].help);
	}
	printf("  scrub NAME     verify everything the device's backend stores, while it serves;\n"
	       "                 waits and shows progress (exit 3: corruption found)\n"
	       "    --no-wait    start the scrub and return\n"
	       "    --status     show the state of the running or last scrub\n");
	printf("  upgrade [BINARY] re-execute the daemon in place (default: its own path),\n"
	       "                 keeping its PID and every device; waits for the result\n");
	printf("\nOptions:\n"
	       "  --json         print the daemon's JSON answer, for scripts\n"
	       "  --socket PATH  control socket (default %s)\n",
	       BLKSERV_RUNTIME_DIR "/control.sock");
}

static void usage_error(void)
{
	fprintf(stderr, "blkservctl: usage: blkservctl [--json]");
	for (size_t i = 0; i < ELEMENTSOF(commands); i++)
		fprintf(stderr, "%s %s%s", i ? " |" : "", commands[i].name, commands[i].takes_device ? " NAME" : "");
	fprintf(stderr, " | scrub NAME [--no-wait | --status] | upgrade [BINARY]\n");
}

/* Send @request and read the whole answer into a malloc'd string. */
static int ask(const char *request, char **ret)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, cap = 0;
	int r;

	if (fd < 0 || strlen(arg_socket) >= sizeof(sa.sun_path))
		return -EINVAL;
	strcpy(sa.sun_path, arg_socket);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	r = write_full(fd, request, strlen(request));
	if (r < 0)
		return r;
	shutdown(fd, SHUT_WR);
	for (;;) {
		if (len + 1 >= cap) {
			char *p = cap < MAX_ANSWER ? realloc(buf, cap = cap ? cap * 2 : 4096) : NULL;
			if (!p)
				return cap < MAX_ANSWER ? -ENOMEM : -EMSGSIZE;
			buf = p;
		}
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*ret = TAKE_PTR(buf);
	return 0;
}

/* The answer in @text: one JSON object with a boolean "ok", or NULL. */
static struct json_object *parse_answer(const char *text)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o, *ok;
	size_t len = strlen(text), end;

	if (!tok)
		return NULL;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, text, (int)len);
	end = json_tokener_get_parse_end(tok);
	if (json_tokener_get_error(tok) != json_tokener_success || strspn(text + end, " \t\r\n") != len - end ||
	    !json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, "ok", &ok) ||
	    !json_object_is_type(ok, json_type_boolean)) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

static struct json_object *member(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	return json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

/* @v as plain text: strings as they are, yes/no, "-" for null or missing,
 * arrays joined with ',' ("none" if empty), latencies with one decimal. */
static const char *text(struct json_object *v, char *buf, size_t len)
{
	size_t used = 0;

	switch (json_object_get_type(v)) {
	case json_type_null:
		return "-";
	case json_type_boolean:
		return json_object_get_boolean(v) ? "yes" : "no";
	case json_type_double:
		snprintf(buf, len, "%.1f", json_object_get_double(v));
		return buf;
	case json_type_int: /* exactly as sent: int64 or uint64 */
		return json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
	case json_type_string:
		return json_object_get_string(v);
	case json_type_array:
		buf[0] = '\0';
		for (size_t i = 0; i < json_object_array_length(v) && used < len; i++) {
			char item[64];
			used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? "," : "",
						 text(json_object_array_get_idx(v, i), item, sizeof(item)));
		}
		return buf[0] ? buf : "none";
	default:
		return json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	}
}

static const char *field(struct json_object *o, const char *key, char *buf, size_t len)
{
	return text(member(o, key), buf, len);
}

static void print_list(struct json_object *answer)
{
	struct json_object *devices = member(answer, "devices");
	char b[6][256];

	printf("%-16s %-11s %-9s %-16s %14s %s\n", "NAME", "FRONTEND", "BACKEND", "DEVICE", "SIZE", "STATE");
	for (size_t i = 0; json_object_is_type(devices, json_type_array) && i < json_object_array_length(devices);
	     i++) {
		struct json_object *d = json_object_array_get_idx(devices, i);
		printf("%-16s %-11s %-9s %-16s %14s %s\n", field(d, "name", b[0], 256), field(d, "frontend", b[1], 256),
		       field(d, "backend", b[2], 256), field(d, "kernel", b[3], 256), field(d, "size", b[4], 256),
		       field(d, "state", b[5], 256));
	}
}

/* Every member of @o but "ok" and "warnings", as "PREFIXKEY VALUE" lines
 * (@colon: "PREFIXKEY: VALUE"). */
static void print_members(struct json_object *o, const char *prefix, bool colon)
{
	char buf[1024];

	if (!json_object_is_type(o, json_type_object))
		return;
	json_object_object_foreach(o, key, value)
	{
		if (strcmp(key, "ok") == 0 || strcmp(key, "warnings") == 0)
			continue;
		if (colon)
			printf("%s%s: %s\n", prefix, key, text(value, buf, sizeof(buf)));
		else
			printf("%s%-14s %s\n", prefix, key, text(value, buf, sizeof(buf)));
	}
}

static void print_status(struct json_object *answer)
{
	print_members(member(answer, "device"), "", false);
}

static void print_stats(struct json_object *answer)
{
	struct json_object *stats = member(answer, "stats"), *ops = member(stats, "ops");
	char b[8][64];

	printf("%-13s %12s %14s %8s %10s %10s %10s %10s\n", "OP", "OPS", "BYTES", "ERRORS", "MEAN_US", "P50_US",
	       "P99_US", "P99.9_US");
	if (json_object_is_type(ops, json_type_object)) {
		json_object_object_foreach(ops, op, o)
			printf("%-13s %12s %14s %8s %10s %10s %10s %10s\n", op, field(o, "ops", b[0], 64),
			       field(o, "bytes", b[1], 64), field(o, "errors", b[2], 64), field(o, "mean_us", b[3], 64),
			       field(o, "p50_us", b[4], 64), field(o, "p99_us", b[5], 64),
			       field(o, "p999_us", b[6], 64));
	}
	printf("inflight: %s\n", field(stats, "inflight", b[0], 64));
	printf("reads_mapped: %s\n", field(stats, "reads_mapped", b[0], 64));
	print_members(member(stats, "backend"), "backend.", true);
}

/* "warnings" and "failed" entries, {"device": NAME, KEY: TEXT}, on stderr. */
static size_t print_reports(struct json_object *answer, const char *name, const char *key, const char *prefix)
{
	struct json_object *list = member(answer, name);
	size_t n = json_object_is_type(list, json_type_array) ? json_object_array_length(list) : 0;
	char b[2][1024];

	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(list, i);
		fprintf(stderr, "blkservctl: %s%s: %s\n", prefix, field(e, "device", b[0], sizeof(b[0])),
			field(e, key, b[1], sizeof(b[1])));
	}
	return n;
}

/* Send {"command": @command, @key: @value} (@key NULL: none); the parsed
 * answer, and the raw one in *ret_reply; NULL (said on stderr unless
 * @quiet) if the daemon cannot be reached or answers nonsense. */
static struct json_object *call(const char *command, const char *key, const char *value, bool quiet, char **ret_reply)
{
	_cleanup_free_ char *request_line = NULL, *reply = NULL;
	struct json_object *request = json_object_new_object(), *answer;
	const char *line;
	int r;

	if (!request)
		return NULL;
	json_object_object_add(request, "command", json_object_new_string(command));
	if (key)
		json_object_object_add(request, key, json_object_new_string(value));
	line = json_object_to_json_string_ext(request, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	r = line ? asprintf(&request_line, "%s\n", line) : -1;
	json_object_put(request);
	if (r < 0)
		return NULL;
	r = ask(request_line, &reply);
	if (r < 0) {
		if (!quiet)
			fprintf(stderr, "blkservctl: cannot reach blkservd at %s: %s\n", arg_socket, strerror(-r));
		return NULL;
	}
	answer = parse_answer(reply);
	if (!answer && !quiet)
		fprintf(stderr, "blkservctl: blkservd at %s sent an invalid answer: %.200s\n", arg_socket, reply);
	if (answer && ret_reply)
		*ret_reply = TAKE_PTR(reply);
	return answer;
}

static int run(const struct command *c, const char *name)
{
	_cleanup_free_ char *reply = NULL;
	struct json_object *answer;
	size_t warnings;

	answer = call(c->name, name ? "device" : NULL, name, false, &reply);
	if (!answer)
		return EXIT_ERROR;
	if (arg_json)
		printf("%s%s", reply, reply[0] && reply[strlen(reply) - 1] == '\n' ? "" : "\n");
	warnings = print_reports(answer, "warnings", "warning", "warning: ");
	if (!json_object_get_boolean(member(answer, "ok"))) {
		char b[1024];
		fprintf(stderr, "blkservctl: %s%s\n", field(answer, "error", b, sizeof(b)),
			member(answer, "failed") ? ":" : "");
		print_reports(answer, "failed", "error", "  ");
		json_object_put(answer);
		return EXIT_ERROR;
	}
	if (!arg_json && c->print)
		c->print(answer);
	else if (!arg_json)
		print_members(answer, "", false);
	json_object_put(answer);
	return warnings ? EXIT_WARNINGS : EXIT_DONE;
}

/* "generation" of a version answer, or -1 (quietly: while the daemon
 * executes the new binary its socket is briefly gone). */
static int64_t generation(struct json_object **ret_answer)
{
	struct json_object *a = call("version", NULL, NULL, true, NULL);
	struct json_object *g = member(a, "generation");
	int64_t v = json_object_is_type(g, json_type_int) ? json_object_get_int64(g) : -1;

	if (ret_answer)
		*ret_answer = a;
	else
		json_object_put(a);
	return v;
}

static uint64_t uint_member(struct json_object *o, const char *key)
{
	struct json_object *v = member(o, key);

	return json_object_is_type(v, json_type_int) ? json_object_get_uint64(v) : 0;
}

static void print_scrub(const char *name, struct json_object *sc, bool progress_line)
{
	char sbuf[32], ebuf[256];
	const char *state = field(sc, "state", sbuf, sizeof(sbuf)), *error = field(sc, "error", ebuf, sizeof(ebuf));
	double done = (double)uint_member(sc, "done_bytes"), total = (double)uint_member(sc, "total_bytes");
	double secs = (double)uint_member(sc, "duration_ms") / 1e3;
	unsigned long long errors = (unsigned long long)uint_member(sc, "errors");

	if (progress_line) {
		fprintf(stderr, "\rscrub of %s: %5.1f%% (%.0f of %.0f MiB), %llu error(s), %.0f s ", name,
			total > 0 ? 100.0 * done / total : 0.0, done / 1048576, total / 1048576, errors, secs);
		return;
	}
	printf("scrub of %s: %s", name, state);
	if (strcmp(state, "running") == 0)
		printf(", %.1f%% (%.0f of %.0f bytes), %llu error(s) so far, %.1f s\n",
		       total > 0 ? 100.0 * done / total : 0.0, done, total, errors, secs);
	else if (strcmp(state, "never") == 0)
		printf(" (no scrub since the device started)\n");
	else
		printf(", %.0f bytes verified, %llu error(s), %.1f s%s%s%s\n", done, errors, secs,
		       strcmp(error, "-") ? " (" : "", strcmp(error, "-") ? error : "", strcmp(error, "-") ? ")" : "");
	if (strcmp(state, "corrupt") == 0)
		printf("the journal of blkservd names the segment and offset of each corrupt record\n");
}

/* scrub NAME: start (or with --status only look), then unless --no-wait
 * poll until it ends.  Exit 0 clean, 3 corruption found, 1 otherwise. */
static int run_scrub(const char *name)
{
	bool tty = isatty(STDERR_FILENO) && !arg_json;

	for (bool first = true;; first = false) {
		_cleanup_free_ char *reply = NULL;
		struct json_object *answer =
			call(first && !arg_scrub_status ? "scrub" : "scrub-status", "device", name, false, &reply);
		char b[1024], sbuf[32];
		const char *state, *error;

		if (!answer)
			return EXIT_ERROR;
		if (!json_object_get_boolean(member(answer, "ok"))) {
			error = field(answer, "error", b, sizeof(b));
			if (!strstr(error, "a scrub is already running")) {
				fprintf(stderr, "blkservctl: %s\n", error);
				json_object_put(answer);
				return EXIT_ERROR;
			}
			json_object_put(answer);
			fprintf(stderr, "blkservctl: a scrub of %s is already running%s\n", name,
				arg_no_wait ? "" : "; waiting for it");
			if (arg_no_wait)
				return EXIT_ERROR;
			continue;
		}
		struct json_object *sc = member(answer, "scrub");
		state = field(sc, "state", sbuf, sizeof(sbuf));
		if (strcmp(state, "running") != 0 || arg_no_wait || arg_scrub_status) {
			if (tty && !first)
				fputc('\n', stderr);
			if (arg_json)
				printf("%s\n", json_object_to_json_string_ext(sc, JSON_C_TO_STRING_PLAIN));
			else
				print_scrub(name, sc, false);
			int status = arg_scrub_status || (arg_no_wait && strcmp(state, "running") == 0) ? EXIT_DONE
				     : strcmp(state, "clean") == 0                                      ? EXIT_DONE
				     : strcmp(state, "corrupt") == 0                                    ? 3
													: EXIT_ERROR;
			json_object_put(answer);
			return status;
		}
		if (tty)
			print_scrub(name, sc, true);
		json_object_put(answer);
		usleep(200000);
	}
}

#define UPGRADE_WAIT_MS 120000

/* blkservctl upgrade [BINARY]: ask, then wait for a new image of the
 * daemon (the same PID, the next generation) to answer. */
static int upgrade(const char *binary)
{
	_cleanup_free_ char *reply = NULL;
	struct json_object *answer, *now = NULL;
	int64_t before = generation(NULL), after = -1;
	char b[1024];

	if (before < 0) {
		fprintf(stderr, "blkservctl: cannot reach blkservd at %s\n", arg_socket);
		return EXIT_ERROR;
	}
	answer = call("upgrade", binary ? "binary" : NULL, binary, false, &reply);
	if (!answer)
		return EXIT_ERROR;
	if (!json_object_get_boolean(member(answer, "ok"))) {
		fprintf(stderr, "blkservctl: upgrade refused: %s\n", field(answer, "error", b, sizeof(b)));
		json_object_put(answer);
		return EXIT_ERROR;
	}
	json_object_put(answer);
	for (int waited = 0; waited < UPGRADE_WAIT_MS && after <= before; waited += 100) {
		usleep(100 * 1000);
		json_object_put(now);
		after = generation(&now);
	}
	if (after <= before) {
		json_object_put(now);
		fprintf(stderr, "blkservctl: the daemon did not come back within %d s (see journalctl -u blkservd)\n",
			UPGRADE_WAIT_MS / 1000);
		return EXIT_ERROR;
	}
	if (arg_json)
		printf("%s\n", json_object_to_json_string_ext(now, JSON_C_TO_STRING_PLAIN));
	if (strcmp(field(now, "upgrade", b, sizeof(b)), "done") != 0) {
		fprintf(stderr, "blkservctl: upgrade undone, the previous binary serves the devices again: %s\n",
			field(now, "upgrade_error", b, sizeof(b)));
		json_object_put(now);
		return EXIT_ERROR;
	}
	if (!arg_json)
		printf("upgraded in place: blkservd %s serves every device\n", field(now, "version", b, sizeof(b)));
	json_object_put(now);
	return EXIT_DONE;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "json", no_argument, NULL, 'j' },   { "socket", required_argument, NULL, 's' },
		{ "status", no_argument, NULL, 'S' }, { "no-wait", no_argument, NULL, 'W' },
		{ "help", no_argument, NULL, 'h' },   {},
	};
	const struct command *c = NULL;
	int opt;

	while ((opt = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
		if (opt == 'j')
			arg_json = true;
		else if (opt == 's')
			arg_socket = optarg;
		else if (opt == 'S')
			arg_scrub_status = true;
		else if (opt == 'W')
			arg_no_wait = true;
		else if (opt == 'h') {
			help();
			return EXIT_DONE;
		} else
			return EXIT_USAGE;
	}
	if (optind >= argc) {
		help();
		return EXIT_USAGE;
	}
	if ((arg_scrub_status || arg_no_wait) && (strcmp(argv[optind], "scrub") != 0 || argc - optind != 2)) {
		usage_error();
		return EXIT_USAGE;
	}
	if (strcmp(argv[optind], "scrub") == 0 && argc - optind == 2)
		return run_scrub(argv[optind + 1]);
	if (strcmp(argv[optind], "upgrade") == 0 && argc - optind <= 2)
		return upgrade(argc - optind == 2 ? argv[optind + 1] : NULL);
	for (size_t i = 0; i < ELEMENTSOF(commands) && !c; i++)
		if (strcmp(commands[i].name, argv[optind]) == 0)
			c = &commands[i];
	if (!c || argc - optind != 1 + c->takes_device) {
		usage_error();
		return EXIT_USAGE;
	}
	return run(c, c->takes_device ? argv[optind + 1] : NULL);
}

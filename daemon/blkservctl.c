/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* blkservctl: ask a running blkservd about its devices. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
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

#define MAX_FIELDS 16
#define MAX_RECORDS 1024

struct field {
	char *key;
	char *value;
};

struct record {
	struct field fields[MAX_FIELDS];
	int nfields;
};

static const char *arg_socket = BLKSERV_RUNTIME_DIR "/control.sock";
static bool arg_json;
static bool arg_scrub_status, arg_no_wait;

static void help(void)
{
	printf("Usage: blkservctl [--json] [--socket PATH] COMMAND\n"
	       "Ask a running blkservd about its devices.\n\n"
	       "Commands:\n"
	       "  list           every device: frontend, backend, kernel device, size, state\n"
	       "  status NAME    one device, with its capabilities\n"
	       "  stats NAME     I/O counters and latency percentiles per operation\n"
	       "  reload         reload the config (like systemctl reload blkservd)\n"
	       "  scrub NAME     verify everything the device's backend stores, while it serves;\n"
	       "                 waits and shows progress (exit 3: corruption found)\n"
	       "    --no-wait    start the scrub and return\n"
	       "    --status     show the state of the running or last scrub\n\n"
	       "Options:\n"
	       "  --json         print JSON for scripts\n"
	       "  --socket PATH  control socket (default %s)\n",
	       BLKSERV_RUNTIME_DIR "/control.sock");
}

/* Send @request and read the whole answer into a malloc'd string. */
static int ask(const char *request, char **ret)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	size_t len = 0, cap = 4096;
	char *buf;
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
	buf = malloc(cap);
	for (;;) {
		if (!buf)
			return -ENOMEM;
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len + 1 == cap)
			buf = realloc(buf, cap *= 2);
	}
	buf[len] = '\0';
	*ret = buf;
	return 0;
}

/* Split "k=v\tk=v" lines (after the status line) into records, in place. */
static int parse_records(char *text, struct record *recs, int max)
{
	int n = 0;

	for (char *line = strtok(text, "\n"); line && n < max; line = strtok(NULL, "\n")) {
		struct record *r = &recs[n++];
		r->nfields = 0;
		for (char *f = line; f && r->nfields < MAX_FIELDS;) {
			char *next = strchr(f, '\t'), *eq;
			if (next)
				*next++ = '\0';
			eq = strchr(f, '=');
			if (eq) {
				*eq = '\0';
				r->fields[r->nfields++] = (struct field){ f, eq + 1 };
			}
			f = next;
		}
	}
	return n;
}

static const char *get(const struct record *r, const char *key)
{
	for (int i = 0; i < r->nfields; i++)
		if (strcmp(r->fields[i].key, key) == 0)
			return r->fields[i].value;
	return NULL;
}

static bool is_number(const char *s)
{
	char *end;

	if (!*s || isspace((unsigned char)*s))
		return false;
	(void)strtod(s, &end);
	return *end == '\0';
}

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", (unsigned char)*s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void json_value(const char *s)
{
	if (is_number(s))
		fputs(s, stdout);
	else if (strcmp(s, "yes") == 0 || strcmp(s, "no") == 0)
		fputs(s[0] == 'y' ? "true" : "false", stdout);
	else
		json_string(s);
}

/* Fields of @r (minus @skip) as "key": value pairs, no braces. */
static void json_fields(const struct record *r, const char *skip, bool *first)
{
	for (int i = 0; i < r->nfields; i++) {
		if (skip && strcmp(r->fields[i].key, skip) == 0)
			continue;
		printf("%s", *first ? "" : ", ");
		*first = false;
		json_string(r->fields[i].key);
		printf(": ");
		json_value(r->fields[i].value);
	}
}

static void print_list(struct record *recs, int n)
{
	if (arg_json) {
		printf("[");
		for (int i = 0; i < n; i++) {
			bool first = true;
			printf("%s{", i ? ", " : "");
			json_fields(&recs[i], NULL, &first);
			printf("}");
		}
		printf("]\n");
		return;
	}
	printf("%-16s %-11s %-9s %-16s %14s %s\n", "NAME", "FRONTEND", "BACKEND", "DEVICE", "SIZE", "STATE");
	for (int i = 0; i < n; i++)
		printf("%-16s %-11s %-9s %-16s %14s %s\n", get(&recs[i], "name"), get(&recs[i], "frontend"),
		       get(&recs[i], "backend"), get(&recs[i], "kernel"), get(&recs[i], "size"),
		       get(&recs[i], "state"));
}

static void print_status(struct record *recs, int n)
{
	bool first = true;

	if (arg_json) {
		printf("{");
		for (int i = 0; i < n; i++)
			json_fields(&recs[i], NULL, &first);
		printf("}\n");
		return;
	}
	for (int i = 0; i < n; i++)
		for (int f = 0; f < recs[i].nfields; f++)
			printf("%-14s %s\n", recs[i].fields[f].key, recs[i].fields[f].value);
}

/* The value of the one-field line KEY=VALUE among @recs, or "0". */
static const char *get_counter(struct record *recs, int n, const char *key)
{
	for (int i = 0; i < n; i++)
		if (recs[i].nfields == 1 && get(&recs[i], key))
			return get(&recs[i], key);
	return "0";
}

static void print_stats_json(struct record *recs, int n)
{
	bool first_op = true, first_backend = true;

	printf("{\"inflight\": %s, \"reads_mapped\": %s, \"ops\": {", get_counter(recs, n, "inflight"),
	       get_counter(recs, n, "reads_mapped"));
	for (int i = 0; i < n; i++) {
		const char *op = get(&recs[i], "op");
		bool first = true;
		if (!op)
			continue;
		printf("%s\"%s\": {", first_op ? "" : ", ", op);
		first_op = false;
		json_fields(&recs[i], "op", &first);
		printf("}");
	}
	printf("}, \"backend\": {");
	for (int i = 0; i < n; i++)
		if (recs[i].nfields == 1 && strncmp(recs[i].fields[0].key, "backend.", 8) == 0) {
			printf("%s", first_backend ? "" : ", ");
			first_backend = false;
			json_string(recs[i].fields[0].key + 8);
			printf(": ");
			json_value(recs[i].fields[0].value);
		}
	printf("}}\n");
}

static void print_stats(struct record *recs, int n)
{
	if (arg_json) {
		print_stats_json(recs, n);
		return;
	}
	printf("%-13s %12s %14s %8s %10s %10s %10s %10s\n", "OP", "OPS", "BYTES", "ERRORS", "MEAN_US",
	       "P50_US", "P99_US", "P99.9_US");
	for (int i = 0; i < n; i++) {
		const struct record *r = &recs[i];
		if (get(r, "op"))
			printf("%-13s %12s %14s %8s %10s %10s %10s %10s\n", get(r, "op"), get(r, "ops"),
			       get(r, "bytes"), get(r, "errors"), get(r, "mean_us"), get(r, "p50_us"),
			       get(r, "p99_us"), get(r, "p999_us"));
	}
	for (int i = 0; i < n; i++)
		for (int f = 0; f < recs[i].nfields; f++)
			if (strcmp(recs[i].fields[f].key, "inflight") == 0 ||
			    strcmp(recs[i].fields[f].key, "reads_mapped") == 0 ||
			    strncmp(recs[i].fields[f].key, "backend.", 8) == 0)
				printf("%s: %s\n", recs[i].fields[f].key, recs[i].fields[f].value);
}

static void print_scrub(const struct record *r, bool progress_line)
{
	const char *state = get(r, "state"), *error = get(r, "error");
	double done = strtod(get(r, "done_bytes") ?: "0", NULL), total = strtod(get(r, "total_bytes") ?: "0", NULL);
	double secs = strtod(get(r, "duration_ms") ?: "0", NULL) / 1e3;

	if (arg_json && !progress_line) {
		bool first = true;
		printf("{");
		json_fields(r, NULL, &first);
		printf("}\n");
		return;
	}
	if (progress_line) {
		fprintf(stderr, "\rscrub of %s: %5.1f%% (%.0f of %.0f MiB), %s error(s), %.0f s ", get(r, "name"),
			total > 0 ? 100.0 * done / total : 0.0, done / 1048576, total / 1048576, get(r, "errors"), secs);
		return;
	}
	printf("scrub of %s: %s", get(r, "name"), state);
	if (strcmp(state, "running") == 0)
		printf(", %.1f%% (%.0f of %.0f bytes), %s error(s) so far, %.1f s\n",
		       total > 0 ? 100.0 * done / total : 0.0, done, total, get(r, "errors"), secs);
	else if (strcmp(state, "never") == 0)
		printf(" (no scrub since the device started)\n");
	else
		printf(", %.0f bytes verified, %s error(s), %.1f s%s%s%s\n", done, get(r, "errors"), secs,
		       error && strcmp(error, "-") ? " (" : "", error && strcmp(error, "-") ? error : "",
		       error && strcmp(error, "-") ? ")" : "");
	if (strcmp(state, "corrupt") == 0)
		printf("the journal of blkservd names the segment and offset of each corrupt record\n");
}

/* Ask once for the scrub record of @name: 0, or 1 with the error printed. */
static int ask_scrub(const char *command, const char *name, char **answer, struct record *rec)
{
	char request[256];
	int r;

	snprintf(request, sizeof(request), "%s %s\n", command, name);
	r = ask(request, answer);
	if (r < 0) {
		fprintf(stderr, "blkservctl: cannot reach blkservd at %s: %s\n", arg_socket, strerror(-r));
		return 1;
	}
	if (strncmp(*answer, "ok\n", 3) != 0) {
		if (strstr(*answer, "a scrub is already running"))
			return 2; /* the caller waits for that one */
		fprintf(stderr, "blkservctl: %s", strncmp(*answer, "error ", 6) == 0 ? *answer + 6 : *answer);
		return 1;
	}
	if (parse_records(*answer + 3, rec, 1) != 1 || !get(rec, "state") || !get(rec, "name")) {
		fprintf(stderr, "blkservctl: unexpected answer from blkservd\n");
		return 1;
	}
	return 0;
}

/* scrub NAME: start, then (unless --no-wait) poll until it ends.  Exit 0
 * clean, 3 corruption found, 1 anything else. */
static int run_scrub(const char *name)
{
	struct record rec;
	bool tty = isatty(STDERR_FILENO) && !arg_json;
	int r;

	for (bool first = true;; first = false) {
		_cleanup_free_ char *answer = NULL;
		r = ask_scrub(first && !arg_scrub_status ? "scrub" : "scrub-status", name, &answer, &rec);
		if (r == 2) {
			fprintf(stderr, "blkservctl: a scrub of %s is already running%s\n", name,
				arg_no_wait ? "" : "; waiting for it");
			if (arg_no_wait)
				return 1;
			continue;
		}
		if (r)
			return r;
		const char *state = get(&rec, "state");
		if (strcmp(state, "running") != 0 || arg_no_wait || arg_scrub_status) {
			if (tty && !first)
				fputc('\n', stderr);
			print_scrub(&rec, false);
			if (arg_scrub_status || (arg_no_wait && strcmp(state, "running") == 0))
				return 0;
			return strcmp(state, "clean") == 0 ? 0 : strcmp(state, "corrupt") == 0 ? 3 : 1;
		}
		if (tty)
			print_scrub(&rec, true);
		usleep(200000);
	}
}

static int run(const char *command, const char *name)
{
	static struct record recs[MAX_RECORDS];
	_cleanup_free_ char *answer = NULL;
	char request[256];
	int r, n;

	snprintf(request, sizeof(request), "%s%s%s\n", command, name ? " " : "", name ? name : "");
	r = ask(request, &answer);
	if (r < 0) {
		fprintf(stderr, "blkservctl: cannot reach blkservd at %s: %s\n", arg_socket, strerror(-r));
		return 1;
	}
	if (strncmp(answer, "ok\n", 3) != 0) {
		fprintf(stderr, "blkservctl: %s", strncmp(answer, "error ", 6) == 0 ? answer + 6 : answer);
		return 1;
	}
	n = parse_records(answer + 3, recs, MAX_RECORDS);
	if (strcmp(command, "list") == 0)
		print_list(recs, n);
	else if (strcmp(command, "status") == 0)
		print_status(recs, n);
	else if (strcmp(command, "stats") == 0)
		print_stats(recs, n);
	else if (arg_json)
		printf("{\"result\": \"ok\"}\n");
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "socket", required_argument, NULL, 's' },
		{ "status", no_argument, NULL, 'S' },
		{ "no-wait", no_argument, NULL, 'W' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	int c;

	while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
		if (c == 'j')
			arg_json = true;
		else if (c == 's')
			arg_socket = optarg;
		else if (c == 'S')
			arg_scrub_status = true;
		else if (c == 'W')
			arg_no_wait = true;
		else if (c == 'h') {
			help();
			return 0;
		} else
			return 2;
	}
	if (optind >= argc) {
		help();
		return 2;
	}
	const char *cmd = argv[optind], *name = optind + 1 < argc ? argv[optind + 1] : NULL;
	bool scrub = strcmp(cmd, "scrub") == 0;
	bool needs_name = strcmp(cmd, "status") == 0 || strcmp(cmd, "stats") == 0 || scrub;
	bool known = needs_name || strcmp(cmd, "list") == 0 || strcmp(cmd, "reload") == 0;
	if (!known || needs_name != (name != NULL) || optind + 1 + (name != NULL) < argc ||
	    ((arg_scrub_status || arg_no_wait) && !scrub)) {
		fprintf(stderr, "blkservctl: usage: blkservctl [--json] list | status NAME | stats NAME | reload | "
			"scrub NAME [--no-wait | --status]\n");
		return 2;
	}
	return scrub ? run_scrub(name) : run(cmd, name);
}

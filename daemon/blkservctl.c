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

static void help(void)
{
	printf("Usage: blkservctl [--json] [--socket PATH] COMMAND\n"
	       "Ask a running blkservd about its devices.\n\n"
	       "Commands:\n"
	       "  list           every device: frontend, backend, kernel device, size, state\n"
	       "  status NAME    one device, with its capabilities\n"
	       "  stats NAME     I/O counters and latency percentiles per operation\n"
	       "  reload         reload the config (like systemctl reload blkservd)\n"
	       "  upgrade [BINARY]  re-execute the daemon (default: its own path) in place,\n"
	       "                 keeping its PID and every device; waits for the result\n\n"
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

static void print_version(struct record *recs, int n)
{
	bool first = true;

	if (n < 1)
		return;
	if (arg_json) {
		printf("{");
		json_fields(&recs[0], NULL, &first);
		printf("}\n");
		return;
	}
	for (int f = 0; f < recs[0].nfields; f++)
		printf("%s: %s\n", recs[0].fields[f].key, recs[0].fields[f].value);
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
	else if (strcmp(command, "version") == 0)
		print_version(recs, n);
	else if (arg_json)
		printf("{\"result\": \"ok\"}\n");
	return 0;
}

/* The value of @key in the first record of a "version" answer. */
static bool version_field(const char *key, char *buf, size_t len)
{
	static struct record recs[MAX_RECORDS];
	_cleanup_free_ char *answer = NULL;

	if (ask("version\n", &answer) < 0 || strncmp(answer, "ok\n", 3) != 0 ||
	    parse_records(answer + 3, recs, MAX_RECORDS) < 1)
		return false;
	for (int f = 0; f < recs[0].nfields; f++)
		if (strcmp(recs[0].fields[f].key, key) == 0) {
			snprintf(buf, len, "%s", recs[0].fields[f].value);
			return true;
		}
	return false;
}

#define UPGRADE_WAIT_MS 120000

/* Ask for the upgrade, then wait for a new image of the daemon to answer:
 * its generation counts the executions of the same PID. */
static int upgrade(const char *binary)
{
	_cleanup_free_ char *answer = NULL;
	char before[32], now[32], result[32], error[512] = "", request[4200];
	int r;

	if (!version_field("generation", before, sizeof(before))) {
		fprintf(stderr, "blkservctl: cannot reach blkservd at %s\n", arg_socket);
		return 1;
	}
	snprintf(request, sizeof(request), "upgrade%s%s\n", binary ? " " : "", binary ? binary : "");
	r = ask(request, &answer);
	if (r < 0 || strncmp(answer, "ok\n", 3) != 0) {
		fprintf(stderr, "blkservctl: upgrade refused: %s", r < 0 ? strerror(-r) :
			strncmp(answer, "error ", 6) == 0 ? answer + 6 : answer);
		return 1;
	}
	for (int waited = 0; waited < UPGRADE_WAIT_MS; waited += 100) {
		usleep(100 * 1000);
		if (version_field("generation", now, sizeof(now)) && strcmp(now, before) != 0)
			break;
	}
	if (!version_field("upgrade", result, sizeof(result)) || strcmp(now, before) == 0) {
		fprintf(stderr, "blkservctl: the daemon did not come back within %d s (see journalctl -u blkservd)\n",
			UPGRADE_WAIT_MS / 1000);
		return 1;
	}
	if (strcmp(result, "done") != 0) {
		(void)version_field("upgrade_error", error, sizeof(error));
		fprintf(stderr, "blkservctl: upgrade undone, the previous binary serves the devices again: %s\n", error);
		return 1;
	}
	(void)version_field("version", now, sizeof(now));
	if (arg_json)
		printf("{\"result\": \"ok\", \"version\": \"%s\"}\n", now);
	else
		printf("upgraded in place: blkservd %s serves every device\n", now);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	int c;

	while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
		if (c == 'j')
			arg_json = true;
		else if (c == 's')
			arg_socket = optarg;
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
	if (strcmp(cmd, "upgrade") == 0 && optind + 2 >= argc)
		return upgrade(name);
	bool needs_name = strcmp(cmd, "status") == 0 || strcmp(cmd, "stats") == 0;
	bool known = needs_name || strcmp(cmd, "list") == 0 || strcmp(cmd, "reload") == 0 ||
		     strcmp(cmd, "version") == 0;
	if (!known || needs_name != (name != NULL) || optind + 1 + (name != NULL) < argc) {
		fprintf(stderr, "blkservctl: usage: blkservctl [--json] list | status NAME | stats NAME | reload | "
				"version | upgrade [BINARY]\n");
		return 2;
	}
	return run(cmd, name);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * state.c: RUNTIME_DIR/nbd-NAME.state, "key=value" lines, written
 * atomically.  A file that does not parse is reported, never guessed at:
 * the caller then treats the device as unknown.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "parse.h"
#include "statefile.h"
#include "state.h"

enum {
	SEEN_INDEX = 1u << 0,
	SEEN_CONNECTIONS = 1u << 1,
	SEEN_SIZE = 1u << 2,
	SEEN_BLOCK_SIZE = 1u << 3,
	SEEN_FLAGS = 1u << 4,
	SEEN_BACKEND = 1u << 5,
	SEEN_HANDOVER = 1u << 6,
	SEEN_REQUIRED = (1u << 7) - 1,
};

int nbd_state_path(const char *runtime_dir, const char *name, char **ret)
{
	if (asprintf(ret, "%s/nbd-%s.state", runtime_dir, name) < 0)
		return -ENOMEM;
	return 0;
}

const char *nbd_handover_name(enum nbd_handover h)
{
	switch (h) {
	case NBD_HANDOVER_CLEAN:
		return "clean";
	case NBD_HANDOVER_DEAD:
		return "dead";
	default:
		return "none";
	}
}

static int parse_handover(const char *v, enum nbd_handover *ret)
{
	for (enum nbd_handover h = NBD_HANDOVER_NONE; h <= NBD_HANDOVER_DEAD; h++)
		if (strcmp(v, nbd_handover_name(h)) == 0) {
			*ret = h;
			return 0;
		}
	return -EINVAL;
}

static int parse_u32(const char *v, uint32_t *ret)
{
	uint64_t n;

	if (parse_uint(v, &n) < 0 || n > UINT32_MAX)
		return -EINVAL;
	*ret = (uint32_t)n;
	return 0;
}

struct state_parse {
	struct nbd_state s;
	unsigned seen;
};

/* One key; unknown keys are ignored (a newer daemon's). */
static int set_key(void *userdata, const char *key, const char *v)
{
	struct state_parse *p = userdata;
	struct nbd_state *s = &p->s;
	unsigned *seen = &p->seen;
	uint32_t pid;

	if (strcmp(key, "index") == 0) {
		*seen |= SEEN_INDEX;
		return parse_u32(v, &s->index);
	}
	if (strcmp(key, "connections") == 0) {
		*seen |= SEEN_CONNECTIONS;
		return parse_u32(v, &s->connections);
	}
	if (strcmp(key, "size") == 0) {
		*seen |= SEEN_SIZE;
		return parse_uint(v, &s->size);
	}
	if (strcmp(key, "block_size") == 0) {
		*seen |= SEEN_BLOCK_SIZE;
		return parse_u32(v, &s->block_size);
	}
	if (strcmp(key, "flags") == 0) {
		*seen |= SEEN_FLAGS;
		return parse_u32(v, &s->flags);
	}
	if (strcmp(key, "timeout") == 0)
		return parse_uint(v, &s->timeout);
	if (strcmp(key, "dead_conn_timeout") == 0)
		return parse_uint(v, &s->dead_conn_timeout);
	if (strcmp(key, "backend") == 0) {
		*seen |= SEEN_BACKEND;
		if (strlen(v) >= sizeof(s->backend))
			return -EINVAL;
		strcpy(s->backend, v);
		return 0;
	}
	if (strcmp(key, "handover") == 0) {
		*seen |= SEEN_HANDOVER;
		return parse_handover(v, &s->handover);
	}
	if (strcmp(key, "pid") == 0) {
		if (parse_u32(v, &pid) < 0 || pid == 0 || pid > INT32_MAX)
			return -EINVAL;
		s->pid = (pid_t)pid;
	}
	return 0;
}

int nbd_state_read(const char *path, struct nbd_state *ret)
{
	struct state_parse p = { 0 };
	int r = statefile_read(path, set_key, &p);

	if (r < 0)
		return r;
	if ((p.seen & SEEN_REQUIRED) != SEEN_REQUIRED || p.s.connections == 0 || p.s.block_size == 0 ||
	    p.s.backend[0] == '\0')
		return -EINVAL;
	*ret = p.s;
	return 0;
}

int nbd_state_write(const char *path, const struct nbd_state *s)
{
	_cleanup_free_ char *text = NULL;

	if (strchr(s->backend, '\n') || strlen(s->backend) >= sizeof(s->backend))
		return -EINVAL;
	if (asprintf(&text,
		     "# blkservd nbd frontend: the kernel device of this config device, for the\n"
		     "# next daemon to take over.  Do not edit.\n"
		     "index=%u\nconnections=%u\nsize=%llu\nblock_size=%u\nflags=%u\ntimeout=%llu\n"
		     "dead_conn_timeout=%llu\nbackend=%s\nhandover=%s\npid=%d\n",
		     s->index, s->connections, (unsigned long long)s->size, s->block_size, s->flags,
		     (unsigned long long)s->timeout, (unsigned long long)s->dead_conn_timeout, s->backend,
		     nbd_handover_name(s->handover), (int)s->pid) < 0)
		return -ENOMEM;
	return statefile_write(path, text);
}

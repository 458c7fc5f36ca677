/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The recovery state file: RUNTIME_DIR/ublk-NAME.state, "key=value" lines.
 * It records which kernel device a daemon created for a config device, so a
 * daemon restarted after a crash finds the device again and recovers it.
 * Written atomically; a file that does not parse is reported, never guessed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "parse.h"
#include "statefile.h"
#include "ublk.h"

int ublk_state_path(const char *runtime_dir, const char *name, char **ret)
{
	if (asprintf(ret, "%s/ublk-%s.state", runtime_dir, name) < 0)
		return -ENOMEM;
	return 0;
}

/* The keys of the file and where they go; every one but pid is required. */
static const struct state_key {
	const char *name;
	size_t offset;
	size_t size; /* 4 or 8 bytes */
} state_keys[] = {
	{ "dev_id", offsetof(struct ublk_state, dev_id), 4 },
	{ "queues", offsetof(struct ublk_state, queues), 4 },
	{ "depth", offsetof(struct ublk_state, depth), 4 },
	{ "max_io_size", offsetof(struct ublk_state, max_io_size), 4 },
	{ "size", offsetof(struct ublk_state, size), 8 },
	{ "block_size", offsetof(struct ublk_state, block_size), 4 },
	{ "pid", offsetof(struct ublk_state, pid), 4 },
};
#define STATE_REQUIRED_KEYS 0x3fu

struct state_parse {
	struct ublk_state s;
	unsigned seen;
};

/* Store @value of @key; unknown keys are ignored (newer daemons). */
static int state_set(void *userdata, const char *key, const char *value)
{
	struct state_parse *p = userdata;

	for (unsigned i = 0; i < ELEMENTSOF(state_keys); i++) {
		const struct state_key *k = &state_keys[i];
		uint64_t v;

		if (strcmp(key, k->name) != 0)
			continue;
		if (parse_uint(value, &v) < 0 || (k->size == 4 && v > UINT32_MAX))
			return -EINVAL;
		if (k->size == 4) {
			uint32_t v32 = (uint32_t)v;
			memcpy((char *)&p->s + k->offset, &v32, sizeof(v32));
		} else {
			memcpy((char *)&p->s + k->offset, &v, sizeof(v));
		}
		p->seen |= 1u << i;
		return 0;
	}
	return 0;
}

int ublk_state_read(const char *path, struct ublk_state *ret)
{
	struct state_parse p = {};
	int r = statefile_read(path, state_set, &p);

	if (r < 0)
		return r;
	/* Every key but pid is needed to recognise the device. */
	if ((p.seen & STATE_REQUIRED_KEYS) != STATE_REQUIRED_KEYS || p.s.queues == 0 || p.s.depth == 0)
		return -EINVAL;
	*ret = p.s;
	return 0;
}

int ublk_state_write(const char *path, const struct ublk_state *s)
{
	_cleanup_free_ char *text = NULL;

	if (asprintf(&text,
		     "# blkservd ublk frontend: the kernel device of this config device, for\n"
		     "# recovery after a daemon crash.  Do not edit.\n"
		     "dev_id=%u\nqueues=%u\ndepth=%u\nmax_io_size=%u\nsize=%llu\nblock_size=%u\npid=%d\n",
		     s->dev_id, s->queues, s->depth, s->max_io_size, (unsigned long long)s->size, s->block_size,
		     (int)s->pid) < 0)
		return -ENOMEM;
	return statefile_write(path, text);
}

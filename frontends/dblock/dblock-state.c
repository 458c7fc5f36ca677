/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The takeover state file: RUNTIME_DIR/dblock-NAME.state (NAME: the config
 * device), "key=value" lines.  It records which kernel device a daemon
 * created, so the next daemon (after a crash, or a stop that kept the
 * device) takes that device over instead of failing on its taken name.
 * Written atomically; a file that does not parse is reported, never guessed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "dblock.h"
#include "parse.h"
#include "statefile.h"

int dblock_state_path(const char *runtime_dir, const char *name, char **ret)
{
	return asprintf(ret, "%s/dblock-%s.state", runtime_dir, name) < 0 ? -ENOMEM : 0;
}

enum { KEY_NAME, KEY_HANDLE, KEY_SIZE, KEY_BLOCK_SIZE, KEY_FEATURES, KEY_PID, KEY__MAX };
static const char *const state_keys[KEY__MAX] = { "name", "handle_id", "size", "block_size", "features", "pid" };
/* Every key but pid is needed to recognise the device. */
#define STATE_REQUIRED ((1u << KEY__MAX) - 1 - (1u << KEY_PID))

static int set_number(struct dblock_state *s, int key, const char *value)
{
	uint64_t v;

	if (parse_uint(value, &v) < 0 || (key != KEY_SIZE && v > UINT32_MAX))
		return -EINVAL;
	switch (key) {
	case KEY_HANDLE:
		s->handle_id = (uint32_t)v;
		break;
	case KEY_SIZE:
		s->size = v;
		break;
	case KEY_BLOCK_SIZE:
		s->block_size = (uint32_t)v;
		break;
	case KEY_FEATURES:
		s->features = (uint32_t)v;
		break;
	default:
		s->pid = (int32_t)v;
	}
	return 0;
}

struct state_parse {
	struct dblock_state s;
	unsigned seen;
};

/* Unknown keys are ignored (a newer daemon's). */
static int set_key(void *userdata, const char *key, const char *value)
{
	struct state_parse *p = userdata;

	for (int k = 0; k < KEY__MAX; k++) {
		if (strcmp(key, state_keys[k]) != 0)
			continue;
		p->seen |= 1u << k;
		if (k != KEY_NAME)
			return set_number(&p->s, k, value);
		if (!value[0] || strlen(value) > DBLOCK_MAX_NAME_LENGTH)
			return -EINVAL;
		snprintf(p->s.name, sizeof(p->s.name), "%s", value);
		return 0;
	}
	return 0;
}

int dblock_state_read(const char *path, struct dblock_state *ret)
{
	struct state_parse p = {};
	int r = statefile_read(path, set_key, &p);

	if (r < 0)
		return r;
	if ((p.seen & STATE_REQUIRED) != STATE_REQUIRED || p.s.handle_id == 0)
		return -EINVAL;
	*ret = p.s;
	return 0;
}

int dblock_state_write(const char *path, const struct dblock_state *s)
{
	_cleanup_free_ char *text = NULL;

	if (asprintf(&text,
		     "# blkservd dblock frontend: the kernel device of this config device, for\n"
		     "# the next daemon to take over.  Do not edit.\n"
		     "name=%s\nhandle_id=%u\nsize=%llu\nblock_size=%u\nfeatures=%u\npid=%d\n",
		     s->name, s->handle_id, (unsigned long long)s->size, s->block_size, s->features, (int)s->pid) < 0)
		return -ENOMEM;
	return statefile_write(path, text);
}

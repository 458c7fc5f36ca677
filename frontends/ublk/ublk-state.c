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

/* Store @value of @key into @s; unknown keys are ignored (newer daemons). */
static int state_set(struct ublk_state *s, const char *key, const char *value, unsigned *seen)
{
	for (unsigned i = 0; i < ELEMENTSOF(state_keys); i++) {
		const struct state_key *k = &state_keys[i];
		uint64_t v;

		if (strcmp(key, k->name) != 0)
			continue;
		if (parse_uint(value, &v) < 0 || (k->size == 4 && v > UINT32_MAX))
			return -EINVAL;
		if (k->size == 4) {
			uint32_t v32 = (uint32_t)v;
			memcpy((char *)s + k->offset, &v32, sizeof(v32));
		} else {
			memcpy((char *)s + k->offset, &v, sizeof(v));
		}
		*seen |= 1u << i;
		return 0;
	}
	return 0;
}

static int parse_line(char *line, struct ublk_state *s, unsigned *seen)
{
	char *eq;

	line[strcspn(line, "\n")] = '\0';
	if (line[0] == '#' || line[0] == '\0')
		return 0;
	eq = strchr(line, '=');
	if (!eq)
		return -EINVAL;
	*eq = '\0';
	return state_set(s, line, eq + 1, seen);
}

int ublk_state_read(const char *path, struct ublk_state *ret)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	struct ublk_state s = {};
	unsigned seen = 0;
	char line[256];

	if (!f)
		return errno == ENOENT ? -ENOENT : -errno;
	while (fgets(line, sizeof(line), f)) {
		if (parse_line(line, &s, &seen) < 0)
			return -EINVAL;
	}
	/* Every key but pid is needed to recognise the device. */
	if ((seen & STATE_REQUIRED_KEYS) != STATE_REQUIRED_KEYS || s.queues == 0 || s.depth == 0)
		return -EINVAL;
	*ret = s;
	return 0;
}

static int write_state_file(int fd, const struct ublk_state *s)
{
	_cleanup_free_ char *text = NULL;
	int len;

	len = asprintf(&text,
		       "# blkservd ublk frontend: the kernel device of this config device, for\n"
		       "# recovery after a daemon crash.  Do not edit.\n"
		       "dev_id=%u\nqueues=%u\ndepth=%u\nmax_io_size=%u\nsize=%llu\nblock_size=%u\npid=%d\n",
		       s->dev_id, s->queues, s->depth, s->max_io_size, (unsigned long long)s->size,
		       s->block_size, (int)s->pid);
	if (len < 0)
		return -ENOMEM;
	if (write(fd, text, (size_t)len) != len)
		return errno ? -errno : -EIO;
	if (fsync(fd) < 0)
		return -errno;
	return 0;
}

int ublk_state_write(const char *path, const struct ublk_state *s)
{
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int fd = -1;
	int r;

	if (asprintf(&tmp, "%s.tmp", path) < 0)
		return -ENOMEM;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	errno = 0;
	r = write_state_file(fd, s);
	if (r >= 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		(void)unlink(tmp);
	return r;
}

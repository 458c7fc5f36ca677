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

/* Unknown keys are ignored (a newer daemon's). */
static int parse_line(char *line, struct dblock_state *s, unsigned *seen)
{
	char *eq;

	line[strcspn(line, "\n")] = '\0';
	if (line[0] == '#' || line[0] == '\0')
		return 0;
	eq = strchr(line, '=');
	if (!eq)
		return -EINVAL;
	*eq++ = '\0';
	for (int k = 0; k < KEY__MAX; k++) {
		if (strcmp(line, state_keys[k]) != 0)
			continue;
		*seen |= 1u << k;
		if (k != KEY_NAME)
			return set_number(s, k, eq);
		if (!eq[0] || strlen(eq) > DBLOCK_MAX_NAME_LENGTH)
			return -EINVAL;
		snprintf(s->name, sizeof(s->name), "%s", eq);
		return 0;
	}
	return 0;
}

int dblock_state_read(const char *path, struct dblock_state *ret)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	struct dblock_state s = {};
	unsigned seen = 0;
	char line[256];

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (parse_line(line, &s, &seen) < 0)
			return -EINVAL;
	if ((seen & STATE_REQUIRED) != STATE_REQUIRED || s.handle_id == 0)
		return -EINVAL;
	*ret = s;
	return 0;
}

static int write_all(int fd, const struct dblock_state *s)
{
	_cleanup_free_ char *text = NULL;
	int len = asprintf(&text,
			   "# blkservd dblock frontend: the kernel device of this config device, for\n"
			   "# the next daemon to take over.  Do not edit.\n"
			   "name=%s\nhandle_id=%u\nsize=%llu\nblock_size=%u\nfeatures=%u\npid=%d\n",
			   s->name, s->handle_id, (unsigned long long)s->size, s->block_size, s->features,
			   (int)s->pid);

	if (len < 0)
		return -ENOMEM;
	if (write(fd, text, (size_t)len) != len)
		return errno ? -errno : -EIO;
	return fsync(fd) < 0 ? -errno : 0;
}

int dblock_state_write(const char *path, const struct dblock_state *s)
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
	r = write_all(fd, s);
	if (r >= 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		(void)unlink(tmp);
	return r;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config-claims.h"

/* @path without "//", "/./" and a trailing '/' (".." is left alone). */
static char *normalize_path_lexically(const char *path)
{
	char *out = malloc(strlen(path) + 2), *o = out;

	if (!out)
		return NULL;
	for (const char *p = path; *p;) {
		size_t n;
		while (*p == '/')
			p++;
		n = strcspn(p, "/");
		if (n == 0 || (n == 1 && p[0] == '.')) {
			p += n;
			continue;
		}
		*o++ = '/';
		memcpy(o, p, n);
		o += n;
		p += n;
	}
	if (o == out)
		*o++ = '/';
	*o = '\0';
	return out;
}

/* A path claim's key: symlinks resolved as far as the path exists (a
 * socket or file to be created: its directory), so two spellings of one
 * path are one key. */
static char *normalize_key(const char *key)
{
	char resolved[PATH_MAX], *lexical, *slash, *joined;

	if (key[0] != '/')
		return strdup(key);
	if (realpath(key, resolved))
		return strdup(resolved);
	lexical = normalize_path_lexically(key);
	if (!lexical)
		return NULL;
	slash = strrchr(lexical, '/');
	if (slash == lexical || !slash)
		return lexical;
	*slash = '\0';
	if (!realpath(lexical, resolved) ||
	    asprintf(&joined, "%s/%s", strcmp(resolved, "/") ? resolved : "", slash + 1) < 0) {
		*slash = '/';
		return lexical;
	}
	free(lexical);
	return joined;
}

/* What a path claim names, whatever the spelling: a symlink, "..", a hard
 * link or a bind mount of one file gives the same st_dev and st_ino; a
 * block device is its device number (two nodes of one disk are one disk). */
static void claim_identity(struct claim *c, const char *key)
{
	struct stat st;

	if (key[0] != '/' || stat(key, &st) < 0)
		return;
	c->have_id = true;
	if (S_ISBLK(st.st_mode)) {
		c->id_dev = 0; /* st_ino of a block device node is the node's, not the disk's */
		c->id_ino = (ino_t)st.st_rdev;
	} else {
		c->id_dev = st.st_dev;
		c->id_ino = st.st_ino;
	}
}

int claim_set_key(struct claim *c, const char *key)
{
	c->key = normalize_key(key);
	if (!c->key)
		return -ENOMEM;
	claim_identity(c, key);
	return 0;
}

/* '*' matches any text; everything else itself. */
static bool key_glob(const char *pat, const char *s)
{
	if (*pat == '*')
		return key_glob(pat + 1, s) || (*s && key_glob(pat, s + 1));
	if (!*pat)
		return !*s;
	return *pat == *s && key_glob(pat + 1, s + 1);
}

static bool keys_conflict(const char *a, const char *b)
{
	return strcmp(a, b) == 0 || (strchr(a, '*') && key_glob(a, b)) || (strchr(b, '*') && key_glob(b, a));
}

bool claims_conflict(const struct claim *a, const struct claim *b)
{
	if (strcmp(a->resource, b->resource) != 0 || (a->shared && b->shared))
		return false;
	if (a->have_id && b->have_id)
		return a->id_dev == b->id_dev && a->id_ino == b->id_ino;
	return keys_conflict(a->key, b->key);
}

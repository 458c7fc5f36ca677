/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "plugin.h"
#include "plugin-info.h"

/* "blkserv-backend-ramdisk.so" → kind and "ramdisk". */
static bool split_file_name(const char *file, enum plugin_kind *ret_kind, char *name, size_t len)
{
	static const struct {
		const char *prefix;
		enum plugin_kind kind;
	} kinds[] = { { "blkserv-backend-", PLUGIN_BACKEND }, { "blkserv-frontend-", PLUGIN_FRONTEND } };
	size_t flen = strlen(file);

	if (flen < 4 || strcmp(file + flen - 3, ".so") != 0)
		return false;
	for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
		size_t plen = strlen(kinds[i].prefix);
		if (strncmp(file, kinds[i].prefix, plen) != 0 || flen - plen - 3 >= len)
			continue;
		snprintf(name, len, "%.*s", (int)(flen - plen - 3), file + plen);
		*ret_kind = kinds[i].kind;
		return true;
	}
	return false;
}

static int compare_names(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

int list_plugins(const char *dir)
{
	struct dirent **entries;
	int n, failed = 0;

	n = scandir(dir, &entries, NULL, compare_names);
	if (n < 0) {
		fprintf(stderr, "blkservd: cannot read plugin directory %s: %m\n", dir);
		return -errno;
	}
	printf("%-9s %-12s %s\n", "KIND", "NAME", "DESCRIPTION");
	for (int i = 0; i < n; i++) {
		enum plugin_kind kind;
		char name[128];
		struct plugin *p;
		_cleanup_free_ char *error = NULL;

		if (split_file_name(entries[i]->d_name, &kind, name, sizeof(name))) {
			if (plugin_load(dir, kind, name, &p, &error) < 0) {
				fprintf(stderr, "blkservd: %s\n", error ? error : "cannot load plugin");
				failed++;
			} else {
				printf("%-9s %-12s %s\n", plugin_kind_name(kind), name, plugin_description(p));
				plugin_free(p);
			}
		}
		free(entries[i]);
	}
	free(entries);
	return failed ? -EINVAL : 0;
}

/* " (1..16)" or " (one of auto, netlink, ioctl)": what the daemon accepts. */
static void print_check(const struct blkserv_option *o, const struct blkserv_option_check *c)
{
	char allowed[512];

	option_check_describe(o, c, allowed, sizeof(allowed));
	if (allowed[0])
		printf(c->choices ? " (one of %s)" : " (%s)", allowed);
}

static void print_options(const struct plugin *p)
{
	const struct blkserv_option *o = plugin_options(p);

	printf("%s %s: %s\n", plugin_kind_name(p->kind), p->name, plugin_description(p));
	printf("  file: %s\n", p->path);
	if (!o || !o->name) {
		printf("  (no options)\n");
		return;
	}
	printf("  options (in the device's %s \"%s\" { ... } section):\n", plugin_kind_name(p->kind), p->name);
	for (; o->name; o++) {
		printf("    %-20s %-7s", o->name, option_type_name(o->type));
		if (o->default_value)
			printf(" default %s", o->default_value);
		else if (o->flags & BLKSERV_OPTION_REQUIRED)
			printf(" required");
		print_check(o, plugin_find_option_check(p, o->name));
		printf("\n        %s\n", o->help ? o->help : "");
	}
}

int help_plugin(const char *dir, const char *name)
{
	static const enum plugin_kind kinds[] = { PLUGIN_FRONTEND, PLUGIN_BACKEND };
	_cleanup_free_ char *error = NULL;
	int found = 0, r = -ENOENT;

	for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
		struct plugin *p;
		r = plugin_load(dir, kinds[i], name, &p, &error);
		if (r == -ENOENT)
			continue;
		if (r < 0) {
			fprintf(stderr, "blkservd: %s\n", error ? error : strerror(-r));
			return r;
		}
		if (found++)
			printf("\n");
		print_options(p);
		plugin_free(p);
	}
	if (!found) {
		fprintf(stderr, "blkservd: no plugin named '%s' in %s (see blkservd --list-plugins)\n", name, dir);
		return -ENOENT;
	}
	return 0;
}

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

static void print_has(const char *callback, bool has)
{
	printf("has_%s=%d\n", callback, has ? 1 : 0);
}

static void dump_backend(const struct blkserv_backend *b)
{
	print_has("open", b->open);
	print_has("close", b->close);
	print_has("get_size", b->get_size);
	print_has("get_caps", b->get_caps);
	print_has("queue_open", b->queue_open);
	print_has("queue_close", b->queue_close);
	print_has("read", b->read);
	print_has("write", b->write);
	print_has("flush", b->flush);
	print_has("trim", b->trim);
	print_has("write_zeroes", b->write_zeroes);
	print_has("sync", b->sync);
	print_has("get_stats", b->get_stats);
	print_has("preserve", b->preserve);
	print_has("read_map", b->read_map);
	print_has("option_checks", b->option_checks);
	print_has("validate", b->validate);
	print_has("scrub", b->scrub);
	printf("request_priv_size=%u\n", b->request_priv_size);
	printf("thread_model=%s\n", b->thread_model == BLKSERV_THREAD_MODEL_SERIALIZE ? "serialize" : "parallel");
}

static void dump_frontend(const struct blkserv_frontend *f)
{
	print_has("open", f->open);
	print_has("start", f->start);
	print_has("stop", f->stop);
	print_has("close", f->close);
	print_has("check_health", f->check_health);
	print_has("check_idle", f->check_idle);
	print_has("option_checks", f->option_checks);
	print_has("validate", f->validate);
}

/* key=value lines, like nbdkit --dump-plugin: what a packager or a plugin
 * author checks (the ABI it was built for, the callbacks it has). */
static void dump_one(const struct plugin *p)
{
	bool backend = p->kind == PLUGIN_BACKEND;
	const struct blkserv_option *o = plugin_options(p);

	printf("kind=%s\n", plugin_kind_name(p->kind));
	printf("name=%s\n", p->name);
	printf("path=%s\n", p->path);
	printf("description=%s\n", plugin_description(p));
	printf("abi_version=%u\n", backend ? p->backend.abi_version : p->frontend.abi_version);
	printf("host_abi_versions=%u-%u\n", BLKSERV_ABI_VERSION_MIN, BLKSERV_ABI_VERSION);
	printf("struct_size=%llu\n", (unsigned long long)p->struct_size);
	printf("host_struct_size=%zu\n", backend ? sizeof(p->backend) : sizeof(p->frontend));
	if (backend)
		dump_backend(&p->backend);
	else
		dump_frontend(&p->frontend);
	for (; o && o->name; o++)
		printf("option=%s\n", o->name);
}

/* Load the frontend and the backend called @name (either may not exist)
 * and hand each to @show. */
static int for_each_kind(const char *dir, const char *name, void (*show)(const struct plugin *p))
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
		show(p);
		plugin_free(p);
	}
	if (!found) {
		fprintf(stderr, "blkservd: no plugin named '%s' in %s (see blkservd --list-plugins)\n", name, dir);
		return -ENOENT;
	}
	return 0;
}

int help_plugin(const char *dir, const char *name)
{
	return for_each_kind(dir, name, print_options);
}

int dump_plugin(const char *dir, const char *name)
{
	return for_each_kind(dir, name, dump_one);
}

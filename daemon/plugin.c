/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Loading plugins safely.  A plugin runs with the daemon's privileges, so it
 * is only loaded from the plugin directory, only if the directory and the
 * file are owned by root (or the daemon's own user) and writable by nobody
 * else, with RTLD_NOW so a missing symbol fails here and not mid-I/O, and
 * RTLD_LOCAL so plugins cannot see each other.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "plugin.h"

static int set_error(char **ret_error, int r, const char *fmt, ...) BLKSERV_PRINTF(3, 4);
static int set_error(char **ret_error, int r, const char *fmt, ...)
{
	va_list ap;

	if (ret_error) {
		free(*ret_error);
		*ret_error = NULL;
		va_start(ap, fmt);
		if (vasprintf(ret_error, fmt, ap) < 0)
			*ret_error = NULL;
		va_end(ap);
	}
	return r;
}

const char *plugin_kind_name(enum plugin_kind kind)
{
	return kind == PLUGIN_BACKEND ? "backend" : "frontend";
}

static bool name_is_valid(const char *name)
{
	if (!name || !name[0] || strlen(name) > 64)
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
			return false;
	return true;
}

/* Owned by root or by us, and nobody else may write it. */
static int check_owner_and_mode(const struct stat *st, const char *what, const char *path, char **ret_error)
{
	if (st->st_uid != 0 && st->st_uid != geteuid())
		return set_error(ret_error, -EPERM, "%s %s is owned by uid %u, not by root: refusing to load it", what,
				 path, (unsigned)st->st_uid);
	if (st->st_mode & (S_IWGRP | S_IWOTH))
		return set_error(ret_error, -EPERM,
				 "%s %s is writable by group or others (mode %04o): refusing to load it", what, path,
				 (unsigned)(st->st_mode & 07777));
	return 0;
}

static int check_dir(const char *dir, char **ret_error)
{
	struct stat st;

	if (stat(dir, &st) < 0)
		return set_error(ret_error, -errno, "plugin directory %s: %m", dir);
	if (!S_ISDIR(st.st_mode))
		return set_error(ret_error, -ENOTDIR, "plugin directory %s is not a directory", dir);
	return check_owner_and_mode(&st, "plugin directory", dir, ret_error);
}

/* Open the file without following links and check what we opened. */
static int open_checked(const char *path, char **ret_error)
{
	_cleanup_close_ int fd = -1;
	unsigned char magic[4];
	struct stat st;
	ssize_t n;
	int r;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return set_error(ret_error, -errno, "cannot open plugin %s: %m", path);
	if (fstat(fd, &st) < 0)
		return set_error(ret_error, -errno, "cannot stat plugin %s: %m", path);
	if (!S_ISREG(st.st_mode))
		return set_error(ret_error, -EINVAL, "plugin %s is not a regular file", path);
	r = check_owner_and_mode(&st, "plugin", path, ret_error);
	if (r < 0)
		return r;
	n = pread(fd, magic, sizeof(magic), 0);
	if (n != (ssize_t)sizeof(magic) || memcmp(magic, "\177ELF", 4) != 0)
		return set_error(ret_error, -ENOEXEC, "plugin %s is not an ELF shared object", path);
	return TAKE_FD(fd);
}

static const char *backend_missing(const struct blkserv_backend *b, unsigned i)
{
	const struct {
		const char *name;
		bool present;
	} required[] = {
		{ "open", b->open },
		{ "close", b->close },
		{ "get_size", b->get_size },
		{ "read", b->read },
	};
	return i < ELEMENTSOF(required) && !required[i].present ? required[i].name : NULL;
}

static const char *frontend_missing(const struct blkserv_frontend *f, unsigned i)
{
	const struct {
		const char *name;
		bool present;
	} required[] = {
		{ "open", f->open },
		{ "start", f->start },
		{ "stop", f->stop },
		{ "close", f->close },
	};
	return i < ELEMENTSOF(required) && !required[i].present ? required[i].name : NULL;
}

/* One message naming every missing required callback. */
static int check_callbacks(struct plugin *p, char **ret_error)
{
	char list[256] = "";
	unsigned nmissing = 0;

	for (unsigned i = 0; i < 4; i++) {
		const char *m =
			p->kind == PLUGIN_BACKEND ? backend_missing(&p->backend, i) : frontend_missing(&p->frontend, i);
		if (!m)
			continue;
		size_t len = strlen(list);
		snprintf(list + len, sizeof(list) - len, "%s.%s", nmissing ? ", " : "", m);
		nmissing++;
	}
	if (nmissing == 0)
		return 0;
	return set_error(ret_error, -EINVAL, "plugin %s: %s '%s' lacks the required callback%s %s", p->path,
			 plugin_kind_name(p->kind), p->name, nmissing > 1 ? "s" : "", list);
}

/* A range only for numbers, choices only for strings, and not both. */
static int check_option_checks(struct plugin *p, char **ret_error)
{
	for (const struct blkserv_option_check *c = plugin_option_checks(p); c && c->name; c++) {
		const struct blkserv_option *o = plugin_find_option(p, c->name);
		bool number = o && (o->type == BLKSERV_OPT_UINT || o->type == BLKSERV_OPT_SIZE);

		if (!o)
			return set_error(ret_error, -EINVAL, "plugin %s checks the undeclared option '%s'", p->path,
					 c->name);
		if ((c->max && (!number || c->min > c->max)) || (c->choices && o->type != BLKSERV_OPT_STRING) ||
		    (c->choices && !c->choices[0]))
			return set_error(ret_error, -EINVAL,
					 "plugin %s: the check of option '%s' does not fit its type %s", p->path,
					 c->name, option_type_name(o->type));
	}
	return 0;
}

static int check_options(struct plugin *p, char **ret_error)
{
	const struct blkserv_option *o = plugin_options(p);

	for (; o && o->name; o++) {
		if (!name_is_valid(o->name))
			return set_error(ret_error, -EINVAL, "plugin %s declares an option with an invalid name '%s'",
					 p->path, o->name);
		if (o->type < BLKSERV_OPT_STRING || o->type > BLKSERV_OPT_PATH)
			return set_error(ret_error, -EINVAL, "plugin %s: option '%s' has unknown type %d", p->path,
					 o->name, (int)o->type);
	}
	if (p->kind == PLUGIN_BACKEND && p->backend.thread_model > BLKSERV_THREAD_MODEL_SERIALIZE)
		return set_error(ret_error, -EINVAL, "plugin %s declares an unknown thread_model %u", p->path,
				 p->backend.thread_model);
	return check_option_checks(p, ret_error);
}

/* Check the registration struct and keep a zero-filled copy of it. */
static int adopt_struct(struct plugin *p, const void *init, char **ret_error)
{
	/* Both structs begin with struct_size, abi_version, reserved, name. */
	const struct blkserv_backend *head = init;
	size_t ours = p->kind == PLUGIN_BACKEND ? sizeof(p->backend) : sizeof(p->frontend);
	size_t min = offsetof(struct blkserv_backend, name) + sizeof(head->name);

	if (!init)
		return set_error(ret_error, -EINVAL, "plugin %s: registration function returned NULL", p->path);
	if (head->abi_version < BLKSERV_ABI_VERSION_MIN || head->abi_version > BLKSERV_ABI_VERSION)
		return set_error(ret_error, -EPROTO,
				 "plugin %s was built for plugin ABI version %u; this blkservd supports versions "
				 "%u to %u",
				 p->path, head->abi_version, BLKSERV_ABI_VERSION_MIN, BLKSERV_ABI_VERSION);
	if (head->struct_size < min)
		return set_error(ret_error, -EPROTO, "plugin %s: struct_size %llu is too small", p->path,
				 (unsigned long long)head->struct_size);
	p->struct_size = head->struct_size;
	memcpy(p->kind == PLUGIN_BACKEND ? (void *)&p->backend : (void *)&p->frontend, init,
	       head->struct_size < ours ? head->struct_size : ours);
	if (!head->name || strcmp(head->name, p->name) != 0)
		return set_error(ret_error, -EINVAL, "plugin %s registers the name '%s', expected '%s'", p->path,
				 head->name ? head->name : "(null)", p->name);
	return 0;
}

static int open_library(struct plugin *p, char **ret_error)
{
	const void *(*init)(void);
	const char *symbol = p->kind == PLUGIN_BACKEND ? BLKSERV_BACKEND_INIT_SYMBOL : BLKSERV_FRONTEND_INIT_SYMBOL;

	/* By path, not /proc/self/fd/N: the dynamic loader matches already
	 * loaded objects by name, and fd numbers are reused.  The checks
	 * above make the path trustworthy: only root (or we) can change the
	 * directory or the file. */
	p->dl = dlopen(p->path, RTLD_NOW | RTLD_LOCAL);
	if (!p->dl)
		return set_error(ret_error, -ENOEXEC, "cannot load plugin %s: %s", p->path, dlerror());
	*(void **)&init = dlsym(p->dl, symbol);
	if (!init)
		return set_error(ret_error, -ENOEXEC, "plugin %s does not export %s(): not a blkservd %s plugin",
				 p->path, symbol, plugin_kind_name(p->kind));
	return adopt_struct(p, init(), ret_error);
}

int plugin_load(const char *dir, enum plugin_kind kind, const char *name, struct plugin **ret, char **ret_error)
{
	_cleanup_close_ int fd = -1;
	struct plugin *p;
	int r;

	if (!name_is_valid(name))
		return set_error(ret_error, -EINVAL, "invalid %s name '%s' (use a-z, 0-9, '-', '_')",
				 plugin_kind_name(kind), name ? name : "");
	r = check_dir(dir, ret_error);
	if (r < 0)
		return r;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->kind = kind;
	p->name = strdup(name);
	if (!p->name || asprintf(&p->path, "%s/blkserv-%s-%s.so", dir, plugin_kind_name(kind), name) < 0) {
		plugin_free(p);
		return -ENOMEM;
	}
	if (access(p->path, F_OK) < 0 && errno == ENOENT) {
		r = set_error(ret_error, -ENOENT, "no %s plugin '%s': %s does not exist", plugin_kind_name(kind), name,
			      p->path);
		plugin_free(p);
		return r;
	}
	fd = open_checked(p->path, ret_error);
	r = fd < 0 ? fd : open_library(p, ret_error);
	if (r >= 0)
		r = check_callbacks(p, ret_error);
	if (r >= 0)
		r = check_options(p, ret_error);
	if (r < 0) {
		plugin_free(p);
		return r;
	}
	*ret = p;
	return 0;
}

void plugin_free(struct plugin *p)
{
	if (!p)
		return;
	if (p->dl)
		dlclose(p->dl);
	free(p->name);
	free(p->path);
	free(p);
}

const char *plugin_description(const struct plugin *p)
{
	const char *d = p->kind == PLUGIN_BACKEND ? p->backend.description : p->frontend.description;
	return d ? d : "";
}

const struct blkserv_option *plugin_options(const struct plugin *p)
{
	return p->kind == PLUGIN_BACKEND ? p->backend.options : p->frontend.options;
}

const struct blkserv_option_check *plugin_option_checks(const struct plugin *p)
{
	return p->kind == PLUGIN_BACKEND ? p->backend.option_checks : p->frontend.option_checks;
}

const struct blkserv_option_check *plugin_find_option_check(const struct plugin *p, const char *name)
{
	for (const struct blkserv_option_check *c = plugin_option_checks(p); c && c->name; c++)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

int (*plugin_validate_fn(const struct plugin *p))(const struct blkserv_config *cfg)
{
	return p->kind == PLUGIN_BACKEND ? p->backend.validate : p->frontend.validate;
}

const struct blkserv_option *plugin_find_option(const struct plugin *p, const char *name)
{
	for (const struct blkserv_option *o = plugin_options(p); o && o->name; o++)
		if (strcmp(o->name, name) == 0)
			return o;
	return NULL;
}

/* "64K", "1T": a size as the user would write it. */
static void format_size(uint64_t v, char *buf, size_t len);

void option_format_value(const struct blkserv_option *o, uint64_t v, char *buf, size_t len)
{
	if (o->type == BLKSERV_OPT_SIZE)
		format_size(v, buf, len);
	else
		snprintf(buf, len, "%llu", (unsigned long long)v);
}

static void format_size(uint64_t v, char *buf, size_t len)
{
	static const char suffix[] = "KMGTPE";
	int i = -1;

	while (v && v % 1024 == 0 && i < 5) {
		v /= 1024;
		i++;
	}
	if (i < 0)
		snprintf(buf, len, "%llu", (unsigned long long)v);
	else
		snprintf(buf, len, "%llu%c", (unsigned long long)v, suffix[i]);
}

/* The text "from MIN to MAX" / "one of a, b, c" of a check, for messages and --help-plugin. */
void option_check_describe(const struct blkserv_option *o, const struct blkserv_option_check *c, char *buf, size_t len)
{
	char lo[32], hi[32];

	buf[0] = '\0';
	if (c && c->choices) {
		size_t n = 0;
		for (const char *const *v = c->choices; *v && n < len; v++)
			n += (size_t)snprintf(buf + n, len - n, "%s%s", v == c->choices ? "" : ", ", *v);
	} else if (c && c->max) {
		option_format_value(o, c->min, lo, sizeof(lo));
		option_format_value(o, c->max, hi, sizeof(hi));
		snprintf(buf, len, "%s..%s", lo, hi);
	}
}

const char *option_type_name(enum blkserv_option_type type)
{
	switch (type) {
	case BLKSERV_OPT_STRING:
		return "string";
	case BLKSERV_OPT_BOOL:
		return "bool";
	case BLKSERV_OPT_UINT:
		return "uint";
	case BLKSERV_OPT_SIZE:
		return "size";
	case BLKSERV_OPT_PATH:
		return "path";
	}
	return "?";
}

struct plugin *plugin_set_find(const struct plugin_set *set, enum plugin_kind kind, const char *name)
{
	for (struct plugin *p = set->list; p; p = p->next)
		if (p->kind == kind && strcmp(p->name, name) == 0)
			return p;
	return NULL;
}

int plugin_set_get(struct plugin_set *set, enum plugin_kind kind, const char *name, struct plugin **ret,
		   char **ret_error)
{
	struct plugin *p = plugin_set_find(set, kind, name);
	int r;

	if (!p) {
		r = plugin_load(set->dir, kind, name, &p, ret_error);
		if (r < 0)
			return r;
		p->next = set->list;
		set->list = p;
	}
	if (ret)
		*ret = p;
	return 0;
}

void plugin_set_clear(struct plugin_set *set)
{
	while (set->list) {
		struct plugin *p = set->list;
		set->list = p->next;
		plugin_free(p);
	}
	free(set->dir);
	set->dir = NULL;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The plugin loader.  It never logs: errors come back as -errno plus a
 * message in *ret_error (malloc'd) that names the file and the problem. */
#ifndef BLKSERVD_PLUGIN_H
#define BLKSERVD_PLUGIN_H

#include "blkserv/blkserv-plugin.h"

/* The oldest plugin ABI this host loads (BLKSERV_ABI_VERSION the newest).
 * A version's structs only ever grow: a plugin built for an older version
 * gets zeroes for the fields it lacks (see adopt_struct). */
#define BLKSERV_ABI_VERSION_MIN 1

enum plugin_kind {
	PLUGIN_BACKEND,
	PLUGIN_FRONTEND,
};

struct plugin {
	enum plugin_kind kind;
	char *name;
	char *path;
	void *dl;
	uint64_t struct_size; /* as the plugin declared it */
	/* Zero-filled copies: fields the plugin's ABI lacks read as NULL. */
	struct blkserv_backend backend;
	struct blkserv_frontend frontend;
	struct plugin *next;
};

const char *plugin_kind_name(enum plugin_kind kind);

/* Load DIR/blkserv-KIND-NAME.so after the safety checks (see plugin.c). */
int plugin_load(const char *dir, enum plugin_kind kind, const char *name, struct plugin **ret, char **ret_error);
void plugin_free(struct plugin *p);

const char *plugin_description(const struct plugin *p);
const struct blkserv_option *plugin_options(const struct plugin *p);
const struct blkserv_option *plugin_find_option(const struct plugin *p, const char *name);
/* The plugin's option_checks (NULL: none, or a plugin older than them). */
const struct blkserv_option_check *plugin_option_checks(const struct plugin *p);
const struct blkserv_option_check *plugin_find_option_check(const struct plugin *p, const char *name);
/* The plugin's validate callback (NULL: none). */
int (*plugin_validate_fn(const struct plugin *p))(const struct blkserv_config *cfg);
const char *option_type_name(enum blkserv_option_type type);
/* @v as written in a config: "64K" for a size, "16" for a number. */
void option_format_value(const struct blkserv_option *o, uint64_t v, char *buf, size_t len);
/* "64K..1T" or "off, allow, require": what @c allows of @o ("" when @c is NULL). */
void option_check_describe(const struct blkserv_option *o, const struct blkserv_option_check *c, char *buf, size_t len);

/* A set of loaded plugins, each loaded once. */
struct plugin_set {
	char *dir;
	struct plugin *list;
};
int plugin_set_get(struct plugin_set *set, enum plugin_kind kind, const char *name, struct plugin **ret,
		   char **ret_error);
struct plugin *plugin_set_find(const struct plugin_set *set, enum plugin_kind kind, const char *name);
void plugin_set_clear(struct plugin_set *set);

#endif

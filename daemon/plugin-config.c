/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A plugin section's values (struct blkserv_config): copying, comparing
 * and freeing them, and the SDK's getters plugins read them with. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "parse.h"
#include "plugin-config.h"

int plugin_config_copy(const struct blkserv_config *src, struct blkserv_config *dst)
{
	dst->plugin = src->plugin;
	dst->nvalues = 0;
	dst->values = calloc(src->nvalues ? src->nvalues : 1, sizeof(*dst->values));
	if (!dst->values)
		return -ENOMEM;
	for (size_t i = 0; i < src->nvalues; i++) {
		dst->values[i].name = strdup(src->values[i].name);
		dst->values[i].value = strdup(src->values[i].value);
		dst->values[i].line = src->values[i].line;
		dst->nvalues++;
		if (!dst->values[i].name || !dst->values[i].value)
			return -ENOMEM;
	}
	return 0;
}

void plugin_config_clear(struct blkserv_config *cfg)
{
	for (size_t i = 0; i < cfg->nvalues; i++) {
		free(cfg->values[i].name);
		free(cfg->values[i].value);
	}
	free(cfg->values);
}

bool plugin_config_equal(const struct blkserv_config *a, const struct blkserv_config *b)
{
	if (strcmp(a->plugin->name, b->plugin->name) != 0 || a->nvalues != b->nvalues)
		return false;
	for (size_t i = 0; i < a->nvalues; i++)
		if (strcmp(a->values[i].name, b->values[i].name) != 0 ||
		    strcmp(a->values[i].value, b->values[i].value) != 0)
			return false;
	return true;
}

const char *blkserv_config_device_name(const struct blkserv_config *cfg)
{
	return cfg->device ? cfg->device->name : "";
}

uint64_t blkserv_config_device_size(const struct blkserv_config *cfg)
{
	return cfg->device ? cfg->device->size : 0;
}

uint32_t blkserv_config_device_block_size(const struct blkserv_config *cfg)
{
	return cfg->device ? cfg->device->block_size : 0;
}

/* ---- the SDK's option getters ------------------------------------ */

static const char *option_string(const struct blkserv_config *cfg, const char *name, enum blkserv_option_type type,
				 int *ret_error)
{
	const struct blkserv_option *decl = plugin_find_option(cfg->plugin, name);

	*ret_error = 0;
	if (!decl || (decl->type != type && !(type == BLKSERV_OPT_STRING && decl->type == BLKSERV_OPT_PATH) &&
		      !(type == BLKSERV_OPT_UINT && decl->type == BLKSERV_OPT_SIZE))) {
		*ret_error = -EINVAL;
		return NULL;
	}
	for (size_t i = 0; i < cfg->nvalues; i++)
		if (strcmp(cfg->values[i].name, name) == 0)
			return cfg->values[i].value;
	if (!decl->default_value)
		*ret_error = -ENOENT;
	return decl->default_value;
}

bool blkserv_config_is_set(const struct blkserv_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->nvalues; i++)
		if (strcmp(cfg->values[i].name, name) == 0)
			return true;
	return false;
}

int blkserv_config_get_string(const struct blkserv_config *cfg, const char *name, const char **ret)
{
	int r;
	const char *s = option_string(cfg, name, BLKSERV_OPT_STRING, &r);

	if (r < 0)
		return r;
	*ret = s;
	return 0;
}

int blkserv_config_get_bool(const struct blkserv_config *cfg, const char *name, bool *ret)
{
	int r;
	const char *s = option_string(cfg, name, BLKSERV_OPT_BOOL, &r);

	return r < 0 ? r : parse_bool(s, ret);
}

int blkserv_config_get_uint(const struct blkserv_config *cfg, const char *name, uint64_t *ret)
{
	const struct blkserv_option *decl = plugin_find_option(cfg->plugin, name);
	int r;
	const char *s = option_string(cfg, name, BLKSERV_OPT_UINT, &r);

	if (r < 0)
		return r;
	return decl->type == BLKSERV_OPT_SIZE ? parse_size(s, ret) : parse_uint(s, ret);
}

int blkserv_parse_size(const char *s, uint64_t *ret)
{
	return parse_size(s, ret);
}

int blkserv_parse_bool(const char *s, bool *ret)
{
	return parse_bool(s, ret);
}

int blkserv_parse_uint(const char *s, uint64_t *ret)
{
	return parse_uint(s, ret);
}

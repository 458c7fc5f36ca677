/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef BLKSERVD_PLUGIN_CONFIG_H
#define BLKSERVD_PLUGIN_CONFIG_H

#include <stdbool.h>

#include "config.h"

/* A deep copy of @src into @dst; on -ENOMEM @dst holds what was copied
 * (plugin_config_clear frees it). */
int plugin_config_copy(const struct blkserv_config *src, struct blkserv_config *dst);
void plugin_config_clear(struct blkserv_config *cfg);
/* The same plugin with the same options, in the same order. */
bool plugin_config_equal(const struct blkserv_config *a, const struct blkserv_config *b);

#endif

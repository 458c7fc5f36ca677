/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* /etc/blkservd.conf: parsed with libconfuse, validated against the
 * options the plugins declare.  Never logs: errors come back in *ret_error
 * as "FILE:LINE: what is wrong". */
#ifndef BLKSERVD_CONFIG_H
#define BLKSERVD_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "cleanup.h"
#include "faults.h"
#include "plugin.h"

/* One option value written in a plugin section. */
struct option_value {
	char *name;
	char *value;
	int line;
};

/* What a plugin instance sees (struct blkserv_config of the SDK). */
struct device_config;

struct blkserv_config {
	const struct plugin *plugin;
	struct option_value *values;
	size_t nvalues;
	const struct device_config *device; /* the device the section belongs to */
	int line;                           /* of the section */
};

struct device_config {
	char *name;
	int line;
	struct plugin *frontend;
	struct plugin *backend;
	uint64_t size; /* 0: not configured */
	uint32_t block_size;
	bool read_only;
	struct blkserv_config frontend_cfg;
	struct blkserv_config backend_cfg;
	struct fault_config faults; /* enabled: the device has a faults section */
};

/* The metrics section (metrics.c serves it). */
#define METRICS_DEFAULT_TCP "127.0.0.1:9540"
struct metrics_config {
	bool enabled;    /* the config has a metrics section */
	char *tcp;       /* ADDRESS:PORT to listen on, or NULL */
	char *unix_path; /* a Unix socket path instead, or NULL */
	unsigned max_connections;
	int line; /* of the section */
};

struct config {
	char *file;
	char *plugin_dir;
	char *runtime_dir;
	int log_level;
	bool lock_memory;
	uint64_t request_memory; /* daemon-wide payload budget (payload.c) */
	struct device_config *devices;
	size_t ndevices;
	struct plugin_set plugins; /* owns the plugins the devices use */
	struct metrics_config metrics;
};

/* Parse @file.  @plugin_dir_override (NULL: none) replaces plugin_dir. */
int config_load(const char *file, const char *plugin_dir_override, struct config **ret, char **ret_error);
void config_free(struct config *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct config *, config_free);
/* The plugin_dir a config file sets, read loosely (NULL if none). */
int config_peek_plugin_dir(const char *file, char **ret);

const struct device_config *config_find_device(const struct config *c, const char *name);
/* Two device configs describe the same device (a reload keeps it running). */
bool device_config_equal(const struct device_config *a, const struct device_config *b);

#endif

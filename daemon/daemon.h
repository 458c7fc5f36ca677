/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef BLKSERVD_DAEMON_H
#define BLKSERVD_DAEMON_H

#include "config.h"

/* Run the daemon until SIGTERM/SIGINT.  @log_level < 0: from the config. */
int daemon_run(const char *config_file, const char *plugin_dir_override, int log_level);

/* The runtime directory in use (for blkserv_runtime_dir()). */
void daemon_set_runtime_dir(const char *dir);

#endif

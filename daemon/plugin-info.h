/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef BLKSERVD_PLUGIN_INFO_H
#define BLKSERVD_PLUGIN_INFO_H

/* blkservd --list-plugins: every plugin in @dir, with a line each. */
int list_plugins(const char *dir);
/* blkservd --help-plugin NAME: the options of the frontend and/or backend NAME. */
int help_plugin(const char *dir, const char *name);
/* blkservd --dump-plugin NAME: its ABI facts and callbacks, key=value lines. */
int dump_plugin(const char *dir, const char *name);

#endif

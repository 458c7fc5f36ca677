/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdlib.h>
#include <string.h>

#include "build-config.h"
#include "daemon.h"

static char *runtime_dir;

void daemon_set_runtime_dir(const char *dir)
{
	free(runtime_dir);
	runtime_dir = dir ? strdup(dir) : NULL;
}

const char *blkserv_runtime_dir(void)
{
	return runtime_dir ? runtime_dir : BLKSERV_RUNTIME_DIR;
}

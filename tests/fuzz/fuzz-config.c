/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz the config loader: any bytes must give a config or an error that
 * names the file, never a crash, a hang or a leak. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

static const char *plugin_dir(void)
{
	const char *d = getenv("BLKSERV_TEST_PLUGIN_DIR");

	return d ? d : "/nonexistent";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *c = NULL;
	char *error = NULL;
	int fd;

	if (!path[0])
		snprintf(path, sizeof(path), "/tmp/fuzz-config-%d.conf", (int)getpid());
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);
	if (config_load(path, plugin_dir(), &c, &error) == 0) {
		config_free(c);
	} else if (!error || !strstr(error, path)) {
		fprintf(stderr, "error does not name the file: %s\n", error ? error : "(null)");
		abort();
	}
	free(error);
	return 0;
}

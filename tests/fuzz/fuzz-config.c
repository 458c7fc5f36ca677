/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz the config loader: any bytes must give a config or an error that
 * names the file, never a crash, a hang or a leak.
 *
 * The loader runs whole: both parse passes and the plugin loader with all
 * its checks.  For speed the file lives on tmpfs and every plugin is kept
 * mapped by one dlopen() of our own, so the loader's dlopen()/dlclose() per
 * input only count references instead of mapping and relocating each time.
 * Plugins: the build's (BLKSERV_TEST_PLUGIN_DIR) plus the test fixtures
 * (BLKSERV_TEST_FIXTURE_DIR: the "testfe" frontend the corpus uses).
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64], conf_path[96], plugin_dir[96];

static void copy_file(const char *from, const char *to)
{
	int in = open(from, O_RDONLY | O_CLOEXEC);
	int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	char buf[65536];
	ssize_t n;

	if (in < 0 || out < 0)
		abort();
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			abort();
	close(in);
	close(out);
}

/* Copy the plugins of @src (only the fixtures named in @only, if given). */
static void add_plugins(const char *src, const char *const *only)
{
	DIR *d = src ? opendir(src) : NULL;
	struct dirent *de;
	char from[1024], to[1024];

	if (!d)
		return;
	while ((de = readdir(d))) {
		bool wanted = strstr(de->d_name, ".so") != NULL && !only;
		for (const char *const *o = only; o && *o; o++)
			wanted |= strcmp(de->d_name, *o) == 0;
		if (!wanted)
			continue;
		snprintf(from, sizeof(from), "%s/%s", src, de->d_name);
		snprintf(to, sizeof(to), "%s/%s", plugin_dir, de->d_name);
		copy_file(from, to);
		/* Keep it mapped for the whole run (never closed). */
		(void)dlopen(to, RTLD_NOW | RTLD_LOCAL);
	}
	closedir(d);
}

static void remove_dir(void)
{
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

static void setup(void)
{
	static const char *const fixtures[] = { "blkserv-frontend-testfe.so", "blkserv-backend-asyncmem.so", NULL };

	snprintf(dir, sizeof(dir), "/dev/shm/fuzz-config-%d", (int)getpid());
	snprintf(conf_path, sizeof(conf_path), "%s/fuzz.conf", dir);
	snprintf(plugin_dir, sizeof(plugin_dir), "%s/plugins", dir);
	if (mkdir(dir, 0755) < 0 || mkdir(plugin_dir, 0755) < 0)
		abort();
	atexit(remove_dir);
	add_plugins(getenv("BLKSERV_TEST_PLUGIN_DIR"), NULL);
	add_plugins(getenv("BLKSERV_TEST_FIXTURE_DIR"), fixtures);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *c = NULL;
	char *error = NULL;
	int fd;

	if (!dir[0])
		setup();
	fd = open(conf_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);
	if (config_load(conf_path, plugin_dir, &c, &error) == 0) {
		if (getenv("BLKSERV_FUZZ_VERBOSE"))
			fprintf(stderr, "valid: %zu device(s)\n", c->ndevices);
		config_free(c);
	} else if (!error || !strstr(error, conf_path)) {
		fprintf(stderr, "error does not name the file: %s\n", error ? error : "(null)");
		abort();
	}
	if (error && getenv("BLKSERV_FUZZ_VERBOSE"))
		fprintf(stderr, "%s\n", error);
	free(error);
	return 0;
}

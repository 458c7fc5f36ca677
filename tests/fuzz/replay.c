/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Without libFuzzer (gcc builds): run a fuzz target over every file named
 * on the command line, or every file in a directory named there, so the
 * corpus and past crashes are regression tests. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t buf[1 << 20];

static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	size_t n;

	if (!f) {
		perror(path);
		return -1;
	}
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	LLVMFuzzerTestOneInput(buf, n);
	return 1;
}

/* Every regular file of @dir, in name order so a run is repeatable. */
static int replay_dir(const char *dir)
{
	struct dirent **names;
	int n = scandir(dir, &names, NULL, alphasort), done = 0;

	if (n < 0) {
		perror(dir);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		char path[4096];
		if (names[i]->d_name[0] != '.') {
			snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
			if (done >= 0) {
				int r = replay_file(path);
				done = r < 0 ? r : done + r;
			}
		}
		free(names[i]);
	}
	free(names);
	return done;
}

int main(int argc, char **argv)
{
	int total = 0;

	for (int i = 1; i < argc; i++) {
		DIR *d = opendir(argv[i]);
		int r;

		if (d) {
			closedir(d);
			r = replay_dir(argv[i]);
		} else {
			r = replay_file(argv[i]);
		}
		if (r < 0)
			return 1;
		total += r;
	}
	printf("replayed %d inputs\n", total);
	return total > 0 ? 0 : 1; /* an empty corpus is a mistake, not a pass */
}

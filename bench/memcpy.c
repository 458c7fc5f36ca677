// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * bench/memcpy.c: single-core memcpy bandwidth, the yardstick for "ramdisk
 * bandwidth per core".  Copies CHUNK-byte pieces from a 256 MiB source to a
 * 256 MiB destination (both larger than any cache here, like a ramdisk
 * serving a device) for about a second of CPU time (the machine may be
 * shared: CPU time, not wall time, like the daemon's CPU per request);
 * prints MiB per CPU-second.
 *
 *   memcpy [CHUNK-BYTES]   default 1 MiB
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AREA (256UL << 20)

static double cpu_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One pass over the areas; returns the bytes copied. */
static size_t copy_pass(char *dst, const char *src, size_t chunk)
{
	size_t off;

	for (off = 0; off + chunk <= AREA; off += chunk)
		memcpy(dst + off, src + off, chunk);
	/* Keep the compiler from dropping the copies. */
	__asm__ volatile("" : : "r"(dst) : "memory");
	return off;
}

int main(int argc, char **argv)
{
	size_t chunk = argc > 1 ? strtoul(argv[1], NULL, 0) : 1UL << 20;
	char *src = malloc(AREA), *dst = malloc(AREA);
	double t0, elapsed;
	size_t bytes = 0;

	if (!src || !dst || chunk == 0 || chunk > AREA) {
		fprintf(stderr, "memcpy: bad chunk size or out of memory\n");
		return 1;
	}
	/* Touch every page first: page faults are not memcpy. */
	memset(src, 1, AREA);
	memset(dst, 2, AREA);
	t0 = cpu_seconds();
	do
		bytes += copy_pass(dst, src, chunk);
	while ((elapsed = cpu_seconds() - t0) < 1.0);
	printf("%.0f\n", bytes / elapsed / (1 << 20));
	return 0;
}

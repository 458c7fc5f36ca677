/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * log-bench: drive one device's backend straight through the daemon core's
 * queue API (no frontend), for bench/log.sh.  Not installed.
 *
 *   log-bench CONFIG DEVICE open                 open (recover), print seconds
 *   log-bench CONFIG DEVICE write seq|rand BS TOTAL [QD] [FLUSH_EVERY]
 *       write TOTAL bytes in BS blocks (rand: uniform over the device),
 *       QD requests in flight, a flush every FLUSH_EVERY writes and one at
 *       the end; prints "seconds MiB/s IOPS" and then the backend's stats
 *   log-bench CONFIG DEVICE read seq|rand BS TOTAL [QD]
 *       read TOTAL bytes in BS blocks (of what an earlier write left);
 *       prints "seconds MiB/s IOPS"
 *   ... crash: with BLKSERV_BENCH_CRASH=1 the process ends without the
 *       backend's clean stop (no final checkpoint), like kill -9.
 *   ... settle: with BLKSERV_BENCH_SETTLE=1 the stats are printed once
 *       background compaction has been idle for a second.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "device.h"
#include "io-util.h"
#include "parse.h"

struct bench {
	struct blkserv_queue *q;
	uint64_t size, inflight;
	int errors;
};

static void done(struct blkserv_request *req, int result)
{
	struct bench *b = req->frontend_data;

	b->inflight--;
	if (result < 0 && b->errors++ == 0)
		fprintf(stderr, "log-bench: request failed: %s\n", strerror(-result));
}

static struct blkserv_device *open_device(const char *file, const char *name)
{
	struct config *c = NULL;
	struct blkserv_device *dev = NULL;
	const struct device_config *dc;
	char *error = NULL;
	int r = config_load(file, NULL, &c, &error);

	if (r < 0) {
		fprintf(stderr, "log-bench: %s\n", error ? error : strerror(-r));
		exit(2);
	}
	dc = config_find_device(c, name);
	if (!dc || device_new(dc, c->plugin_dir, &dev) < 0 || device_open_backend(dev) < 0) {
		fprintf(stderr, "log-bench: cannot open device %s\n", name);
		exit(2);
	}
	config_free(c);
	return dev;
}

static void submit(struct bench *b, uint32_t tag, uint32_t op, uint64_t off, uint64_t len, void *buf)
{
	struct blkserv_request *req = blkserv_queue_request(b->q, tag);

	req->op = op;
	req->flags = 0;
	req->offset = off;
	req->length = len;
	req->buf = buf;
	req->done = done;
	req->frontend_data = b;
	b->inflight++;
	blkserv_submit(req);
}

static void drain(struct bench *b, uint64_t upto)
{
	while (b->inflight > upto)
		blkserv_queue_process(b->q, 1, -1);
}

static uint64_t next_offset(const char *mode, uint64_t i, uint64_t bs, uint64_t size)
{
	if (strcmp(mode, "seq") == 0)
		return (i * bs) % size;
	return ((uint64_t)random() * 65536u + (uint64_t)random()) % (size / bs) * bs;
}

/* PATTERN BS TOTAL [QD] [FLUSH_EVERY] (argv[0] is the pattern); false
 * for a number that is not one, QD outside 1..64 or BS 0. */
static bool parse_args(char **argv, int argc, uint64_t *ret_bs, uint64_t *ret_total, uint32_t *ret_qd,
		       uint64_t *ret_flush_every)
{
	uint64_t qd = 1;

	*ret_flush_every = 0;
	if (parse_uint(argv[1], ret_bs) < 0 || parse_uint(argv[2], ret_total) < 0 ||
	    (argc > 3 && parse_uint(argv[3], &qd) < 0) || (argc > 4 && parse_uint(argv[4], ret_flush_every) < 0))
		return false;
	if (*ret_bs == 0 || qd == 0 || qd > 64)
		return false;
	*ret_qd = (uint32_t)qd;
	return true;
}

static int run_write(struct blkserv_device *dev, char **argv, int argc)
{
	uint64_t bs, total, flush_every, n, t0;
	uint32_t qd;
	struct bench b = { .size = blkserv_device_size(dev) };
	char *buf;

	if (!parse_args(argv, argc, &bs, &total, &qd, &flush_every))
		return 2;
	n = total / bs;
	buf = aligned_alloc(4096, bs * qd);
	if (!buf || blkserv_queue_new(dev, qd, 0, &b.q) < 0)
		return 2;
	for (uint64_t i = 0; i < bs * qd; i++)
		buf[i] = (char)random();
	srandom(42);
	t0 = now_ns();
	for (uint64_t i = 0; i < n; i++) {
		uint32_t tag = (uint32_t)(i % qd);
		drain(&b, qd - 1);
		submit(&b, tag, BLKSERV_OP_WRITE, next_offset(argv[0], i, bs, b.size), bs, buf + (uint64_t)tag * bs);
		if (flush_every && (i + 1) % flush_every == 0) {
			drain(&b, 0);
			submit(&b, 0, BLKSERV_OP_FLUSH, 0, 0, NULL);
			drain(&b, 0); /* tag 0 is busy until it completes */
		}
	}
	drain(&b, 0);
	submit(&b, 0, BLKSERV_OP_FLUSH, 0, 0, NULL);
	drain(&b, 0);
	double s = (double)(now_ns() - t0) / 1e9;
	printf("%.3f %.1f %.0f\n", s, (double)(n * bs) / s / 1048576.0, (double)n / s);
	blkserv_queue_free(b.q);
	free(buf);
	return b.errors ? 1 : 0;
}

static int run_read(struct blkserv_device *dev, char **argv, int argc)
{
	uint64_t bs, total, unused, n, t0;
	uint32_t qd;
	struct bench b = { .size = blkserv_device_size(dev) };
	char *buf;

	if (!parse_args(argv, argc > 4 ? 4 : argc, &bs, &total, &qd, &unused) || bs > b.size)
		return 2;
	n = total / bs;
	buf = aligned_alloc(4096, bs * qd);
	if (!buf || blkserv_queue_new(dev, qd, 0, &b.q) < 0)
		return 2;
	srandom(43);
	t0 = now_ns();
	for (uint64_t i = 0; i < n; i++) {
		uint32_t tag = (uint32_t)(i % qd);
		drain(&b, qd - 1);
		submit(&b, tag, BLKSERV_OP_READ, next_offset(argv[0], i, bs, b.size), bs, buf + (uint64_t)tag * bs);
	}
	drain(&b, 0);
	double s = (double)(now_ns() - t0) / 1e9;
	printf("%.3f %.1f %.0f\n", s, (double)(n * bs) / s / 1048576.0, (double)n / s);
	blkserv_queue_free(b.q);
	free(buf);
	return b.errors ? 1 : 0;
}

static uint64_t stat_value(struct blkserv_device *dev, const char *key)
{
	const struct blkserv_backend *be = &dev->backend->backend;
	char buf[4096], pat[64];
	uint64_t v = 0;
	char *p;

	snprintf(pat, sizeof(pat), "\n%s=", key);
	if (!be->get_stats || be->get_stats(dev->backend_handle, buf, sizeof(buf)) < 0 || !(p = strstr(buf, pat)))
		return 0;
	p += strlen(pat);
	p[strcspn(p, "\n")] = '\0';
	(void)parse_uint_dec(p, &v);
	return v;
}

/* Wait until background compaction has caught up (no round for 1 s). */
static void settle(struct blkserv_device *dev)
{
	uint64_t last = stat_value(dev, "compactions");

	for (int quiet = 0; quiet < 4;) {
		usleep(250000);
		uint64_t now = stat_value(dev, "compactions");
		quiet = now == last ? quiet + 1 : 0;
		last = now;
	}
}

static void print_stats(struct blkserv_device *dev)
{
	const struct blkserv_backend *be = &dev->backend->backend;
	char buf[4096];

	if (be->get_stats && be->get_stats(dev->backend_handle, buf, sizeof(buf)) == 0)
		fputs(buf, stdout);
}

int main(int argc, char **argv)
{
	struct blkserv_device *dev;
	uint64_t t0;
	int r = 0;

	if (argc < 4) {
		fprintf(stderr, "usage: log-bench CONFIG DEVICE open|write|read ...\n");
		return 2;
	}
	t0 = now_ns();
	dev = open_device(argv[1], argv[2]);
	if (strcmp(argv[3], "open") == 0)
		printf("%.4f\n", (double)(now_ns() - t0) / 1e9);
	else if (strcmp(argv[3], "write") == 0 && argc >= 7)
		r = run_write(dev, argv + 4, argc - 4);
	else if (strcmp(argv[3], "read") == 0 && argc >= 7)
		r = run_read(dev, argv + 4, argc - 4);
	else
		r = 2;
	if (getenv("BLKSERV_BENCH_SETTLE"))
		settle(dev);
	print_stats(dev);
	fflush(stdout);
	if (getenv("BLKSERV_BENCH_CRASH"))
		_exit(r);
	device_close_backend(dev);
	device_free(dev);
	return r;
}

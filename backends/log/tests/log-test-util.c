/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pthread.h>
#include <stdatomic.h>

#include "cleanup.h"
#include "crc32c.h"
#include "format.h"
#include "test-helpers.h"
#include "log-test-util.h"

/* ---- opening ------------------------------------------------------- */

char *config_text(const char *dir, const char *extra, uint64_t size)
{
	char *text, sz[64] = "";

	if (size)
		snprintf(sz, sizeof(sz), "  size = %" PRIu64 "\n", size);
	if (asprintf(&text,
		     "device \"lg\" {\n%s  block_size = 512\n"
		     "  frontend \"testfe\" { socket = \"/x\" }\n"
		     "  backend \"log\" {\n    dir = \"%s\"\n%s\n  }\n}\n",
		     sz, dir, extra ? extra : "") < 0)
		abort();
	return text;
}

/* Open; on failure return -errno with what was logged in @errbuf. */
int try_open(const char *dir, const char *extra, uint64_t size, struct blkserv_device **ret, char *errbuf,
	     size_t errlen)
{
	char *text = config_text(dir, extra, size), *error = NULL;
	char errpath[256];
	struct config *c = NULL;
	struct blkserv_device *dev = NULL;
	int r, saved, fd;

	r = test_load_config(text, &c, &error);
	free(text);
	if (r < 0)
		fail_msg("config: %s", error ? error : strerror(-r));
	assert_int_equal(device_new(config_find_device(c, "lg"), test_plugin_dir(), &dev), 0);
	config_free(c);
	/* Catch what the backend logs (stderr outside systemd). */
	snprintf(errpath, sizeof(errpath), "%s/stderr.txt", test_tmpdir());
	fflush(stderr);
	saved = dup(2);
	fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 2);
	close(fd);
	r = device_open_backend(dev);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	if (errbuf) {
		FILE *f = fopen(errpath, "r");
		size_t n = f ? fread(errbuf, 1, errlen - 1, f) : 0;
		errbuf[n] = '\0';
		if (f)
			fclose(f);
	}
	if (r < 0) {
		device_free(dev);
		return r;
	}
	*ret = dev;
	return 0;
}

struct blkserv_device *open_log(const char *dir, const char *extra)
{
	struct blkserv_device *dev = NULL;
	char err[8192];
	int r = try_open(dir, extra, DEV_SIZE, &dev, err, sizeof(err));

	if (r < 0)
		fail_msg("opening the log in %s failed: %s\n%s", dir, strerror(-r), err);
	return dev;
}

uint64_t stat_value(struct blkserv_device *dev, const char *key)
{
	char buf[4096], pat[64];
	const char *p;

	assert_int_equal(dev->backend->backend.get_stats(dev->backend_handle, buf, sizeof(buf)), 0);
	snprintf(pat, sizeof(pat), "\n%s=", key);
	p = strncmp(buf, pat + 1, strlen(pat + 1)) == 0 ? buf + strlen(pat + 1) : strstr(buf, pat);
	if (!p)
		fail_msg("no %s in stats:\n%s", key, buf);
	if (p != buf + strlen(pat + 1))
		p += strlen(pat);
	return strtoull(p, NULL, 10);
}

unsigned char pattern(uint32_t id, uint32_t off)
{
	uint32_t x = id * 2654435761u ^ off * 40503u;

	return (unsigned char)(x ^ (x >> 13) ^ (x >> 24));
}

/* ---- the log's records --------------------------------------------- */

static uint64_t file_size(const char *dir, uint64_t id)
{
	char path[512], name[LOG_SEG_NAME_LEN];
	struct stat st;

	log_seg_name(id, name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Walk the records of an undamaged log with the format's decoder. */
void read_layout(const char *dir, struct layout *l)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	uint64_t id;

	memset(l, 0, sizeof(*l));
	assert_non_null(d);
	while ((de = readdir(d)))
		if (log_seg_parse_name(de->d_name, &id) == 0)
			l->segs[l->nsegs++] = id;
	closedir(d);
	qsort(l->segs, (size_t)l->nsegs, sizeof(uint64_t), cmp_u64);
	for (int s = 0; s < l->nsegs; s++) {
		char path[512], name[LOG_SEG_NAME_LEN];
		unsigned char hdr[LOG_SEG_HEADER_SIZE];
		log_seg_name(l->segs[s], name);
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		int fd = open(path, O_RDONLY);
		assert_true(fd >= 0);
		l->seg_size[s] = file_size(dir, l->segs[s]);
		assert_int_equal(pread(fd, hdr, sizeof(hdr), 0), sizeof(hdr));
		l->seg_first_seq[s] = log_get64(hdr + 40);
		for (uint64_t pos = LOG_SEG_HEADER_SIZE; pos < l->seg_size[s];) {
			unsigned char rh[LOG_REC_HEADER_SIZE];
			struct log_rec rec;
			const char *why;
			assert_int_equal(pread(fd, rh, sizeof(rh), (off_t)pos), sizeof(rh));
			assert_int_equal(log_rec_decode(rh, &rec, &why), 0);
			l->r[l->n++] = (struct rec_pos){ l->segs[s], pos, pos + LOG_REC_HEADER_SIZE + rec.payload_len,
							 rec.seq };
			pos += LOG_REC_HEADER_SIZE + rec.payload_len;
			assert_true(l->n < 4096);
		}
		close(fd);
	}
}

void seg_path(const char *dir, uint64_t id, char *buf, size_t len)
{
	char name[LOG_SEG_NAME_LEN];

	log_seg_name(id, name);
	snprintf(buf, len, "%s/%s", dir, name);
}

void flip_bit(const char *dir, uint64_t id, uint64_t pos, int bit)
{
	char path[512];
	unsigned char c;
	int fd;

	seg_path(dir, id, path, sizeof(path));
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &c, 1, (off_t)pos), 1);
	c ^= (unsigned char)(1u << bit);
	assert_int_equal(pwrite(fd, &c, 1, (off_t)pos), 1);
	close(fd);
}

/* ---- the data path, compaction, space ------------------------------ */

char *fresh_dir(const char *name)
{
	char *dir;

	if (asprintf(&dir, "%s/%s", test_tmpdir(), name) < 0)
		abort();
	return dir;
}

int dm_write(struct dev_model *d, uint64_t off, uint32_t len, uint32_t flags)
{
	int r;

	d->id++;
	for (uint32_t i = 0; i < len; i++)
		d->buf[i] = pattern(d->id, (uint32_t)(off + i));
	r = test_io(d->q, BLKSERV_OP_WRITE, flags, off, len, d->buf);
	if (r == 0)
		memcpy(d->m + off, d->buf, len);
	return r;
}

void dm_zero(struct dev_model *d, uint32_t op, uint64_t off, uint32_t len)
{
	assert_int_equal(test_io(d->q, op, 0, off, len, NULL), 0);
	memset(d->m + off, 0, len);
}

void dm_verify(struct dev_model *d, const char *what)
{
	unsigned char *got = malloc(d->size);

	for (uint64_t off = 0; off < d->size; off += 1 << 20) {
		uint64_t n = d->size - off < (1 << 20) ? d->size - off : (1 << 20);
		assert_int_equal(test_io(d->q, BLKSERV_OP_READ, 0, off, n, got + off), 0);
	}
	for (uint64_t i = 0; i < d->size; i++)
		if (got[i] != d->m[i])
			fail_msg("%s: byte %" PRIu64 " is %02x, expected %02x", what, i, got[i], d->m[i]);
	free(got);
}

uint32_t dm_crc(struct dev_model *d)
{
	unsigned char *got = malloc(d->size);
	uint32_t c;

	assert_int_equal(test_io(d->q, BLKSERV_OP_READ, 0, 0, d->size, got), 0);
	c = crc32c(0, got, d->size);
	free(got);
	return c;
}

void dm_open(struct dev_model *d, const char *dir, const char *extra, uint64_t size)
{
	struct blkserv_device *dev = NULL;
	char err[8192];
	int r = try_open(dir, extra, size, &dev, err, sizeof(err));

	if (r < 0)
		fail_msg("open %s: %s\n%s", dir, strerror(-r), err);
	d->dev = dev;
	d->size = size;
	if (!d->m) {
		d->m = calloc(1, size);
		d->buf = malloc(1 << 20);
	}
	assert_int_equal(blkserv_queue_new(dev, 4, 0, &d->q), 0);
}

void dm_close(struct dev_model *d, bool clean)
{
	blkserv_queue_free(d->q);
	if (!clean)
		d->dev->backend->backend.sync = NULL;
	test_close_device(d->dev);
}

void dm_free(struct dev_model *d)
{
	free(d->m);
	free(d->buf);
}
/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The log backend's checksums: a corrupt record fails only its reads,
 * scrub finds and names it, compaction keeps it; records split at
 * max_record_size. */
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

/* ---- verification: reads, scrub, compaction ------------------------ */

static int capture_fd = -1;

/* Send what the backend logs (stderr outside systemd) to a file. */
static void capture_begin(void)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/captured.txt", test_tmpdir());
	fflush(stderr);
	capture_fd = dup(2);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	dup2(fd, 2);
	close(fd);
}

/* What was logged since capture_begin (malloc'd). */
static char *capture_end(void)
{
	char path[256], *text = calloc(1, 65536);
	FILE *f;

	fflush(stderr);
	dup2(capture_fd, 2);
	close(capture_fd);
	snprintf(path, sizeof(path), "%s/captured.txt", test_tmpdir());
	f = fopen(path, "r");
	assert_non_null(f);
	if (fread(text, 1, 65535, f) == 0)
		text[0] = '\0';
	fclose(f);
	return text;
}

static int count_of(const char *text, const char *needle)
{
	int n = 0;

	for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* The newest WRITE record of device offset @off in the log: its segment
 * and the file offset of its header. */
static void find_write(const char *dir, uint64_t off, uint64_t *ret_seg, uint64_t *ret_pos)
{
	_cleanup_free_ struct layout *l = calloc(1, sizeof(*l));
	bool found = false;

	read_layout(dir, l);
	for (int i = 0; i < l->n; i++) {
		char path[512];
		unsigned char rh[LOG_REC_HEADER_SIZE];
		struct log_rec rec;
		const char *why;
		seg_path(dir, l->r[i].seg, path, sizeof(path));
		int fd = open(path, O_RDONLY);
		assert_true(fd >= 0);
		assert_int_equal(pread(fd, rh, sizeof(rh), (off_t)l->r[i].pos), sizeof(rh));
		close(fd);
		assert_int_equal(log_rec_decode(rh, &rec, &why), 0);
		if (rec.type == LOG_REC_WRITE && rec.offset == off) {
			*ret_seg = l->r[i].seg;
			*ret_pos = l->r[i].pos;
			found = true;
		}
	}
	assert_true(found);
}

/* The message of a corrupt record names its segment file and offset. */
static void expect_named(const char *text, uint64_t seg, uint64_t pos, int times, const char *what)
{
	char name[LOG_SEG_NAME_LEN], want[160];

	log_seg_name(seg, name);
	snprintf(want, sizeof(want), "%s: corrupt record at offset %" PRIu64 " (segment %" PRIu64 ")", name, pos, seg);
	if (count_of(text, want) != times)
		fail_msg("%s: expected %d message(s) \"%s\", got:\n%s", what, times, want, text);
}

#define BLOCKS 16

/* Blocks 0..BLOCKS-1 of 4 KiB, each its own record, then a clean stop
 * (with its checkpoint): the next start replays nothing and reads the
 * data segment it did not verify. */
static void write_blocks_and_stop(struct dev_model *d, const char *dir, const char *opts)
{
	dm_open(d, dir, opts, DEV_SIZE);
	for (uint64_t b = 0; b < BLOCKS; b++)
		assert_int_equal(dm_write(d, b * 4096, 4096, 0), 0);
	assert_int_equal(test_io(d->q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), 0);
	dm_close(d, true);
}

static void expect_eio(struct dev_model *d, uint64_t off, uint64_t len, const unsigned char *bad_bytes)
{
	unsigned char *got = malloc(len);

	memset(got, 0x5a, len);
	assert_int_equal(test_io(d->q, BLKSERV_OP_READ, 0, off, len, got), -EIO);
	/* Not one byte of the failed read is what the disk holds. */
	if (bad_bytes && memcmp(got, bad_bytes, 4096) == 0)
		fail_msg("the corrupt bytes were handed out");
	for (uint64_t i = 0; i < len; i++)
		if (got[i] != 0 && got[i] != 0x5a)
			fail_msg("byte %" PRIu64 " of a failed read is %02x", i, got[i]);
	free(got);
}

/* Reads of everything but [skip, skip+4096) return the model's bytes. */
static void dm_verify_except(struct dev_model *d, uint64_t skip, const char *what)
{
	unsigned char *got = malloc(4096);

	for (uint64_t off = 0; off < d->size; off += 4096) {
		if (off == skip)
			continue;
		assert_int_equal(test_io(d->q, BLKSERV_OP_READ, 0, off, 4096, got), 0);
		if (memcmp(got, d->m + off, 4096) != 0)
			fail_msg("%s: block at %" PRIu64 " differs", what, off);
	}
	free(got);
}

/* The user's report: stopped cleanly, one byte of an acknowledged,
 * flushed write changed on disk, started again: the read must fail with
 * EIO, the stats count it, the log names segment and offset, once. */
static void test_corrupt_data_read(void **state)
{
	_cleanup_free_ char *dir = fresh_dir("bad-data");
	struct dev_model d = { 0 };
	unsigned char disk[4096];
	uint64_t seg, pos;
	char path[512];

	write_blocks_and_stop(&d, dir, "");
	find_write(dir, 5 * 4096, &seg, &pos);
	flip_bit(dir, seg, pos + LOG_REC_HEADER_SIZE + 1000, 3);
	seg_path(dir, seg, path, sizeof(path));
	int fd = open(path, O_RDONLY);
	assert_int_equal(pread(fd, disk, sizeof(disk), (off_t)(pos + LOG_REC_HEADER_SIZE)), 4096);
	close(fd);

	dm_open(&d, dir, "", DEV_SIZE);
	assert_int_equal(stat_value(d.dev, "recovery_replayed_bytes"), 0); /* nothing replayed: not seen at start */
	capture_begin();
	expect_eio(&d, 5 * 4096, 4096, disk);
	expect_eio(&d, 5 * 4096 + 512, 512, NULL); /* a part of the record */
	expect_eio(&d, 3 * 4096, 4 * 4096, NULL);  /* intact blocks around it: the whole read fails */
	_cleanup_free_ char *text = capture_end();
	expect_named(text, seg, pos, 1, "three reads of one corrupt record");
	assert_non_null(strstr(text, "record checksum mismatch"));
	assert_int_equal(stat_value(d.dev, "checksum_errors"), 1);
	assert_int_equal(stat_value(d.dev, "checksum_failed_reads"), 3);
	dm_verify_except(&d, 5 * 4096, "intact blocks of a log with one corrupt record");
	/* Written again, the block reads back: the corrupt record is garbage. */
	assert_int_equal(dm_write(&d, 5 * 4096, 4096, 0), 0);
	dm_verify(&d, "after the corrupt block was written again");
	dm_close(&d, true);
	dm_free(&d);
}

/* A flipped byte in a record header: that record's reads fail, the
 * records after it in the same segment still read (the scan resyncs). */
static void test_corrupt_header_read(void **state)
{
	_cleanup_free_ char *dir = fresh_dir("bad-header");
	struct dev_model d = { 0 };
	uint64_t seg, pos, seg2, pos2;

	write_blocks_and_stop(&d, dir, "");
	find_write(dir, 7 * 4096, &seg, &pos);
	find_write(dir, 8 * 4096, &seg2, &pos2);
	assert_true(seg == seg2 && pos2 > pos);
	flip_bit(dir, seg, pos + 17, 5); /* the device offset field */

	dm_open(&d, dir, "", DEV_SIZE);
	capture_begin();
	expect_eio(&d, 7 * 4096, 4096, NULL);
	_cleanup_free_ char *text = capture_end();
	expect_named(text, seg, pos, 1, "a corrupt record header");
	assert_non_null(strstr(text, "record header checksum mismatch"));
	assert_int_equal(stat_value(d.dev, "checksum_errors"), 1);
	dm_verify_except(&d, 7 * 4096, "records around a corrupt header");
	dm_close(&d, true);
	dm_free(&d);
}

/* Damage while the daemon runs, to a record it wrote itself. */
static void test_corrupt_while_running(void **state)
{
	_cleanup_free_ char *dir = fresh_dir("bad-live");
	struct dev_model d = { 0 };
	uint64_t seg, pos;

	dm_open(&d, dir, "", DEV_SIZE);
	for (uint64_t b = 0; b < 4; b++)
		assert_int_equal(dm_write(&d, b * 4096, 4096, 0), 0);
	find_write(dir, 2 * 4096, &seg, &pos);
	flip_bit(dir, seg, pos + LOG_REC_HEADER_SIZE + 4095, 0);
	capture_begin();
	expect_eio(&d, 2 * 4096, 4096, NULL);
	_cleanup_free_ char *text = capture_end();
	expect_named(text, seg, pos, 1, "damage to a record of this run");
	dm_verify_except(&d, 2 * 4096, "the other records of this run");
	dm_close(&d, true);
	dm_free(&d);
}

struct scrub_probe {
	struct blkserv_scrub sc;
	uint64_t calls, last_done, last_total, last_errors;
	uint64_t stop_after; /* 0: never cancel */
	bool backwards;
};

static bool probe_progress(struct blkserv_scrub *sc, uint64_t done, uint64_t total, uint64_t errors)
{
	struct scrub_probe *p = (struct scrub_probe *)sc;

	if (done < p->last_done || done > total)
		p->backwards = true;
	p->calls++;
	p->last_done = done;
	p->last_total = total;
	p->last_errors = errors;
	return !p->stop_after || p->calls < p->stop_after;
}

static int run_scrub(struct blkserv_device *dev, struct scrub_probe *p)
{
	p->sc = (struct blkserv_scrub){ .struct_size = sizeof(p->sc), .progress = probe_progress };
	assert_non_null(dev->backend->backend.scrub);
	return dev->backend->backend.scrub(dev->backend_handle, &p->sc);
}

static bool stat_is(struct blkserv_device *dev, const char *line)
{
	char buf[4096];

	assert_int_equal(dev->backend->backend.get_stats(dev->backend_handle, buf, sizeof(buf)), 0);
	return strstr(buf, line) != NULL;
}

/* Scrub: clean on an intact log; exactly the corrupt records otherwise
 * (live ones as errors, overwritten ones as garbage); reads and the
 * stats agree. */
static void test_scrub(void **state)
{
	_cleanup_free_ char *dir = fresh_dir("scrub");
	struct dev_model d = { 0 };
	struct scrub_probe p = { 0 };
	uint64_t s1, p1, s2, p2, s3, p3;

	write_blocks_and_stop(&d, dir, "");
	dm_open(&d, dir, "", DEV_SIZE);
	assert_true(stat_is(d.dev, "scrub_last_result=none\n"));
	capture_begin();
	assert_int_equal(run_scrub(d.dev, &p), 0);
	_cleanup_free_ char *clean = capture_end();
	assert_true(stat_is(d.dev, "scrub_last_result=clean\n"));
	assert_int_equal(stat_value(d.dev, "scrub_errors"), 0);
	assert_true(stat_value(d.dev, "scrub_records") >= BLOCKS + 1); /* + checkpoint */
	assert_int_equal(stat_value(d.dev, "scrub_bytes"), stat_value(d.dev, "log_bytes"));
	assert_false(p.backwards);
	assert_true(p.calls >= 1 && p.last_done == p.last_total && p.last_errors == 0);
	assert_non_null(strstr(clean, "clean"));
	/* Block 9 written again: its first record becomes garbage. */
	assert_int_equal(dm_write(&d, 9 * 4096, 4096, 0), 0);
	dm_close(&d, true);

	find_write(dir, 2 * 4096, &s1, &p1);
	find_write(dir, 11 * 4096, &s2, &p2);
	{ /* the garbage record of block 9: the first one */
		_cleanup_free_ struct layout *l = calloc(1, sizeof(*l));
		read_layout(dir, l);
		s3 = l->segs[0];
		p3 = LOG_SEG_HEADER_SIZE + 9 * (LOG_REC_HEADER_SIZE + 4096);
	}
	flip_bit(dir, s1, p1 + LOG_REC_HEADER_SIZE + 7, 1);
	flip_bit(dir, s2, p2 + 30, 2); /* a header */
	flip_bit(dir, s3, p3 + LOG_REC_HEADER_SIZE + 100, 4);

	dm_open(&d, dir, "", DEV_SIZE);
	memset(&p, 0, sizeof(p));
	capture_begin();
	assert_int_equal(run_scrub(d.dev, &p), -EBADMSG);
	_cleanup_free_ char *text = capture_end();
	assert_true(stat_is(d.dev, "scrub_last_result=corrupt\n"));
	assert_int_equal(stat_value(d.dev, "scrub_errors"), 2);
	assert_int_equal(stat_value(d.dev, "scrub_garbage_errors"), 1);
	assert_int_equal(stat_value(d.dev, "checksum_errors"), 2);
	assert_int_equal(p.last_errors, 2);
	expect_named(text, s1, p1, 2, "scrub: a corrupt payload (scrub's line and the first report)");
	expect_named(text, s2, p2, 2, "scrub: a corrupt header");
	expect_named(text, s3, p3, 1, "scrub: corrupt garbage");
	assert_non_null(strstr(text, "2 corrupt record(s) with live data"));
	/* Reads agree, and count nothing new: scrub already did. */
	expect_eio(&d, 2 * 4096, 4096, NULL);
	expect_eio(&d, 11 * 4096, 4096, NULL);
	assert_int_equal(stat_value(d.dev, "checksum_errors"), 2);
	for (uint64_t b = 0; b < BLOCKS; b++)
		if (b != 2 && b != 11) {
			unsigned char got[4096];
			assert_int_equal(test_io(d.q, BLKSERV_OP_READ, 0, b * 4096, 4096, got), 0);
			assert_memory_equal(got, d.m + b * 4096, 4096);
		}
	/* Cancelled at the first progress report. */
	memset(&p, 0, sizeof(p));
	p.stop_after = 1;
	assert_int_equal(run_scrub(d.dev, &p), -ECANCELED);
	assert_true(stat_is(d.dev, "scrub_last_result=cancelled\n"));
	dm_close(&d, true);
	dm_free(&d);
}

struct scrub_writer {
	struct dev_model *d;
	_Atomic bool stop;
	int writes;
};

static void *scrub_writer_main(void *arg)
{
	struct scrub_writer *w = arg;
	struct blkserv_queue *q;
	unsigned char *buf = malloc(8192);
	unsigned seed = 3;

	if (blkserv_queue_new(w->d->dev, 2, 0, &q) < 0)
		abort();
	while (!atomic_load(&w->stop) || w->writes < 200) {
		uint64_t off = (uint64_t)(rand_r(&seed) % (DEV_SIZE / 8192)) * 8192;
		for (uint32_t k = 0; k < 8192; k++)
			buf[k] = pattern((uint32_t)w->writes + 5000, (uint32_t)(off + k));
		if (test_io(q, BLKSERV_OP_WRITE, w->writes % 13 ? 0 : BLKSERV_REQ_FUA, off, 8192, buf) != 0)
			abort();
		memcpy(w->d->m + off, buf, 8192);
		w->writes++;
	}
	blkserv_queue_free(q);
	free(buf);
	return NULL;
}

/* Scrub while writes (and compaction) go on: clean, the data intact. */
static void test_scrub_with_writes(void **state)
{
	_cleanup_free_ char *dir = fresh_dir("scrub-busy");
	struct dev_model d = { 0 };
	struct scrub_writer w = { .d = &d };
	struct scrub_probe p = { 0 };
	pthread_t t;

	dm_open(&d, dir, COMPACT_OPTS, DEV_SIZE);
	for (uint64_t off = 0; off < DEV_SIZE; off += 65536)
		assert_int_equal(dm_write(&d, off, 65536, 0), 0);
	assert_int_equal(pthread_create(&t, NULL, scrub_writer_main, &w), 0);
	for (int i = 0; i < 5; i++) {
		memset(&p, 0, sizeof(p));
		assert_int_equal(run_scrub(d.dev, &p), 0);
		assert_false(p.backwards);
	}
	atomic_store(&w.stop, true);
	pthread_join(t, NULL);
	assert_int_equal(stat_value(d.dev, "checksum_errors"), 0);
	assert_true(stat_is(d.dev, "scrub_last_result=clean\n"));
	dm_verify(&d, "writes during scrubs");
	dm_close(&d, false);
	dm_open(&d, dir, COMPACT_OPTS, DEV_SIZE);
	dm_verify(&d, "writes during scrubs, after a crash");
	dm_close(&d, true);
	dm_free(&d);
}

/* Compaction must not launder a corrupt record into a freshly checksummed
 * copy: the bad block keeps failing, its segment stays, the rest is
 * compacted and intact, also after restarts. */
static void test_compaction_keeps_corruption(void **state)
{
	_cleanup_free_ char *dir = fresh_dir("bad-compact");
	struct dev_model d = { 0 };
	uint64_t size = 1 << 20, seg, pos, bad = 3 * 4096;
	char path[512];
	struct stat st;

	srand(31);
	dm_open(&d, dir, COMPACT_OPTS "compaction = false\n", size);
	for (uint64_t off = 0; off < size; off += 4096)
		assert_int_equal(dm_write(&d, off, 4096, 0), 0);
	/* Garbage everywhere but in block 3's record. */
	for (int i = 0; i < 600; i++) {
		uint64_t off = (uint64_t)(rand() % (int)(size / 4096)) * 4096;
		if (off != bad)
			assert_int_equal(dm_write(&d, off, 4096, 0), 0);
	}
	dm_close(&d, true);
	find_write(dir, bad, &seg, &pos);
	flip_bit(dir, seg, pos + LOG_REC_HEADER_SIZE + 2048, 6);

	/* Compaction down to 5 % garbage: it must get to segment 1. */
	dm_open(&d, dir, "segment_size = 64K\ncompact_threshold = 5\ncheckpoint_interval = 512K\n", size);
	capture_begin();
	for (int i = 0;
	     i < 600 && (stat_value(d.dev, "deleted_segments") == 0 || stat_value(d.dev, "checksum_errors") == 0); i++)
		usleep(50000);
	_cleanup_free_ char *text = capture_end();
	assert_true(stat_value(d.dev, "deleted_segments") > 0);
	expect_named(text, seg, pos, 1, "compaction finding a corrupt record");
	assert_non_null(strstr(text, "compaction keeps segment"));
	assert_int_equal(stat_value(d.dev, "checksum_errors"), 1);
	expect_eio(&d, bad, 4096, NULL);
	seg_path(dir, seg, path, sizeof(path));
	assert_int_equal(stat(path, &st), 0); /* still there */
	dm_verify_except(&d, bad, "compaction around a corrupt record");
	dm_close(&d, true);
	/* After a restart (from the checkpoint compaction wrote): still EIO. */
	dm_open(&d, dir, COMPACT_OPTS "compaction = false\n", size);
	expect_eio(&d, bad, 4096, NULL);
	dm_verify_except(&d, bad, "compaction around a corrupt record, after a restart");
	dm_close(&d, true);
	dm_free(&d);
}

/* max_record_size splits a large write into records: each reads and
 * fails on its own, the data is whole, and it survives a restart. */
static void test_max_record_size(void **state)
{
	_cleanup_free_ char *dir = fresh_dir("split");
	struct dev_model d = { 0 };
	uint64_t seg, pos;

	/* Out of range: the config is refused (--check-config too), naming
	 * the line and the option. */
	for (const char *bad = "max_record_size = 6000\0max_record_size = 2K\0segment_size = 64K\n"
			       "max_record_size = 32K\0";
	     *bad; bad += strlen(bad) + 1) {
		_cleanup_free_ char *text = config_text(dir, bad, DEV_SIZE), *error = NULL;
		struct config *c = NULL;
		assert_true(test_load_config(text, &c, &error) < 0);
		if (!error || !strstr(error, "test.conf:") || !strstr(error, "option 'max_record_size'"))
			fail_msg("%s: unexpected config error: %s", bad, error ? error : "(none)");
	}
	dm_open(&d, dir, "max_record_size = 16K", DEV_SIZE);
	assert_int_equal(dm_write(&d, 0, 65536, BLKSERV_REQ_FUA), 0); /* 4 records */
	assert_int_equal(dm_write(&d, 65536 + 512, 20000, 0), 0);     /* 16K + the rest */
	assert_int_equal(stat_value(d.dev, "extents"), 6);
	assert_int_equal(stat_value(d.dev, "client_write_bytes"), 65536 + 20000);
	dm_verify(&d, "split writes");
	dm_close(&d, true);
	find_write(dir, 32768, &seg, &pos); /* the third record of the first write */
	flip_bit(dir, seg, pos + LOG_REC_HEADER_SIZE + 5, 0);
	dm_open(&d, dir, "max_record_size = 16K", DEV_SIZE);
	expect_eio(&d, 32768, 4096, NULL);
	expect_eio(&d, 0, 65536, NULL);
	unsigned char got[16384];
	for (uint64_t off = 0; off < 65536; off += 16384) {
		if (off == 32768)
			continue;
		assert_int_equal(test_io(d.q, BLKSERV_OP_READ, 0, off, 16384, got), 0);
		assert_memory_equal(got, d.m + off, 16384);
	}
	assert_int_equal(stat_value(d.dev, "checksum_errors"), 1);
	dm_close(&d, true);
	dm_free(&d);
}

#define BIG_SIZE (4u << 20)

/* Writes [off, off+1M) in one request. */
static void write_mib(struct dev_model *d, uint64_t off)
{
	assert_int_equal(dm_write(d, off, 1 << 20, 0), 0);
}

/* The default max_record_size splits a 1 MiB write into 64 KiB records:
 * one changed byte fails only the reads of its record, a read of another
 * record of the same write still succeeds, and scrub finds it. */
static void test_default_split(void **state)
{
	_cleanup_free_ char *dir = fresh_dir("default-split");
	struct dev_model d = { 0 };
	struct scrub_probe p = { 0 };
	unsigned char got[4096];
	uint64_t seg, pos;

	dm_open(&d, dir, "", BIG_SIZE);
	write_mib(&d, 1 << 20);
	assert_int_equal(stat_value(d.dev, "extents"), 16);
	assert_int_equal(test_io(d.q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), 0);
	dm_close(&d, true);

	find_write(dir, (1 << 20) + 3 * 65536, &seg, &pos); /* the fourth record */
	flip_bit(dir, seg, pos + LOG_REC_HEADER_SIZE + 65536 - 1, 2);
	dm_open(&d, dir, "", BIG_SIZE);
	capture_begin();
	expect_eio(&d, (1 << 20) + 3 * 65536 + 61440, 4096, NULL); /* its last block */
	expect_eio(&d, 1 << 20, 1 << 20, NULL);                    /* the whole write */
	_cleanup_free_ char *text = capture_end();
	expect_named(text, seg, pos, 1, "a corrupt record of a split write");
	/* The other records of the same write read back. */
	for (uint64_t off = 1 << 20; off < 2 << 20; off += 65536) {
		if (off == (1 << 20) + 3 * 65536)
			continue;
		assert_int_equal(test_io(d.q, BLKSERV_OP_READ, 0, off + 4096, 4096, got), 0);
		assert_memory_equal(got, d.m + off + 4096, 4096);
	}
	assert_int_equal(test_io(d.q, BLKSERV_OP_READ, 0, (1 << 20) + 2 * 65536, 65536, d.buf), 0);
	assert_memory_equal(d.buf, d.m + (1 << 20) + 2 * 65536, 65536);
	assert_int_equal(stat_value(d.dev, "checksum_errors"), 1);
	assert_int_equal(stat_value(d.dev, "checksum_failed_reads"), 2);
	capture_begin();
	assert_int_equal(run_scrub(d.dev, &p), -EBADMSG);
	_cleanup_free_ char *scrubbed = capture_end();
	assert_true(stat_is(d.dev, "scrub_last_result=corrupt\n"));
	assert_int_equal(stat_value(d.dev, "scrub_errors"), 1);
	if (!strstr(scrubbed, "1 corrupt record(s) with live data"))
		fail_msg("scrub did not report the corrupt record:\n%s", scrubbed);
	dm_close(&d, true);
	dm_free(&d);
}

/* A log written with the old default (one record per write) reads back
 * whole under the new default, after a clean stop (checkpoint) and after
 * a crash (replay); new writes are split, old records are left as they
 * are until compaction copies them (then split too). */
static void test_old_default_log(void **state)
{
	_cleanup_free_ char *dir = fresh_dir("old-default");
	struct dev_model d = { 0 };
	const char *compact = "segment_size = 4M\ncompact_threshold = 5\n";

	dm_open(&d, dir, "max_record_size = 0", BIG_SIZE);
	for (uint64_t off = 0; off < BIG_SIZE; off += 1 << 20)
		write_mib(&d, off);
	assert_int_equal(dm_write(&d, 12288, 8192, 0), 0);
	assert_int_equal(stat_value(d.dev, "extents"), 6);
	dm_close(&d, true);
	dm_open(&d, dir, "", BIG_SIZE);
	dm_verify(&d, "an old-default log after a clean stop, opened with the new default");
	assert_int_equal(stat_value(d.dev, "extents"), 6);
	write_mib(&d, 2 << 20); /* new data: 16 records */
	assert_int_equal(stat_value(d.dev, "extents"), 6 - 1 + 16);
	dm_close(&d, false);
	dm_open(&d, dir, "max_record_size = 0", BIG_SIZE); /* and back */
	dm_verify(&d, "a mixed log after a crash, opened with max_record_size = 0");
	dm_close(&d, true);
	/* Compaction copies the old 1 MiB records as 64 KiB ones. */
	dm_open(&d, dir, compact, BIG_SIZE);
	for (int i = 0; i < 3; i++)
		write_mib(&d, 2 << 20); /* garbage, so the old segment is compacted */
	for (int i = 0; i < 100 && stat_value(d.dev, "compactions") == 0; i++)
		usleep(50 * 1000);
	assert_true(stat_value(d.dev, "compactions") > 0);
	dm_verify(&d, "after compaction of the old records");
	dm_close(&d, true);
	dm_open(&d, dir, "", BIG_SIZE);
	dm_verify(&d, "after compaction and a restart");
	dm_close(&d, true);
	dm_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_corrupt_data_read),     cmocka_unit_test(test_corrupt_header_read),
		cmocka_unit_test(test_corrupt_while_running), cmocka_unit_test(test_scrub),
		cmocka_unit_test(test_scrub_with_writes),     cmocka_unit_test(test_compaction_keeps_corruption),
		cmocka_unit_test(test_max_record_size),       cmocka_unit_test(test_default_split),
		cmocka_unit_test(test_old_default_log),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

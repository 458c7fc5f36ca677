/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The log backend through the host's request path.
 *
 * Crash simulation: a workload of writes, FUA writes, trims, zeroes,
 * flushes and one clean restart runs against the backend while a model
 * records, for every operation, the sequence number its record got.  Then
 * copies of the log directory are damaged the ways a crash or bad media
 * damages them (cut at every record boundary and at random byte offsets,
 * bits flipped, garbage appended) and opened again.  A log replays a prefix
 * of its records, so the recovered device must equal the model after
 * exactly the operations whose records survived, and that prefix must
 * include every operation covered by the last completed flush (or FUA)
 * before the damage point.  Damage before a durable point must refuse to
 * open, naming segment and offset.
 */
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

/* ---- the workload and its model ------------------------------------ */

enum op_kind { OP_WRITE, OP_WRITE_FUA, OP_TRIM, OP_ZERO, OP_FLUSH, OP_RESTART };

struct op {
	enum op_kind kind;
	uint32_t off, len, id;
	uint64_t seq; /* the sequence number of its data record */
	bool durable; /* a flush point: everything before it is durable */
};

#define MAX_OPS 400

struct workload {
	struct op ops[MAX_OPS];
	int n;
	char dir[256];
	uint64_t final_seq; /* next_seq at the end */
};

static bool has_record(const struct op *o)
{
	return o->kind == OP_WRITE || o->kind == OP_WRITE_FUA || o->kind == OP_TRIM || o->kind == OP_ZERO;
}

static void model_apply(unsigned char *m, const struct op *o)
{
	if (o->kind == OP_WRITE || o->kind == OP_WRITE_FUA)
		for (uint32_t i = 0; i < o->len; i++)
			m[o->off + i] = pattern(o->id, o->off + i);
	else if (o->kind == OP_TRIM || o->kind == OP_ZERO)
		memset(m + o->off, 0, o->len);
}

/* The device after every operation whose record has a seq below @next_seq. */
static void model_upto(const struct workload *w, uint64_t next_seq, unsigned char *m)
{
	memset(m, 0, DEV_SIZE);
	for (int i = 0; i < w->n; i++)
		if (has_record(&w->ops[i]) && w->ops[i].seq < next_seq)
			model_apply(m, &w->ops[i]);
}

static int run_op(struct blkserv_device *dev, struct blkserv_queue *q, struct op *o, unsigned char *buf)
{
	o->seq = stat_value(dev, "next_seq");
	switch (o->kind) {
	case OP_WRITE:
	case OP_WRITE_FUA:
		for (uint32_t i = 0; i < o->len; i++)
			buf[i] = pattern(o->id, o->off + i);
		return test_io(q, BLKSERV_OP_WRITE, o->kind == OP_WRITE_FUA ? BLKSERV_REQ_FUA : 0, o->off, o->len, buf);
	case OP_TRIM:
		return test_io(q, BLKSERV_OP_TRIM, 0, o->off, o->len, NULL);
	case OP_ZERO:
		return test_io(q, BLKSERV_OP_WRITE_ZEROES, 0, o->off, o->len, NULL);
	case OP_FLUSH:
		return test_io(q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL);
	case OP_RESTART: /* run_workload() does it */
		return 0;
	}
	return -EINVAL;
}

static struct op random_op(int i, int n)
{
	struct op o = { .id = (uint32_t)i + 1 };
	int k = rand() % 100;

	o.off = (uint32_t)(rand() % (DEV_SIZE / SECTOR)) * SECTOR;
	o.len = (uint32_t)(1 + rand() % 16) * SECTOR;
	if (o.off + o.len > DEV_SIZE)
		o.len = DEV_SIZE - o.off;
	o.kind = k < 70 ? OP_WRITE : k < 75 ? OP_WRITE_FUA : k < 82 ? OP_TRIM : k < 88 ? OP_ZERO : OP_FLUSH;
	if (o.kind == OP_TRIM || o.kind == OP_ZERO)
		o.len *= 4, o.len = o.off + o.len > DEV_SIZE ? DEV_SIZE - o.off : o.len;
	if (i == n * 2 / 5)
		o.kind = OP_RESTART;
	if (i == n - 7)
		o.kind = OP_FLUSH;
	if (i >= n - 6 && (o.kind == OP_FLUSH || o.kind == OP_WRITE_FUA))
		o.kind = OP_WRITE; /* an unflushed tail */
	return o;
}

#define CRASH_OPTS "    segment_size = 64K\n    compaction = false\n    checkpoint_interval = 0\n"

static void run_workload(struct workload *w, int n, unsigned seed)
{
	struct blkserv_device *dev;
	struct blkserv_queue *q;
	unsigned char *buf = malloc(DEV_SIZE);

	snprintf(w->dir, sizeof(w->dir), "%s/wl-%u", test_tmpdir(), seed);
	dev = open_log(w->dir, CRASH_OPTS);
	assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);
	srand(seed);
	w->n = n;
	for (int i = 0; i < n; i++) {
		struct op *o = &w->ops[i];
		*o = random_op(i, n);
		if (o->kind == OP_RESTART) {
			o->seq = stat_value(dev, "next_seq");
			blkserv_queue_free(q);
			test_close_device(dev);
			dev = open_log(w->dir, CRASH_OPTS);
			assert_int_equal(blkserv_queue_new(dev, 4, 0, &q), 0);
		} else {
			assert_int_equal(run_op(dev, q, o, buf), 0);
		}
		o->durable = o->kind == OP_FLUSH || o->kind == OP_WRITE_FUA || o->kind == OP_RESTART;
	}
	w->final_seq = stat_value(dev, "next_seq");
	/* Leave the log as a crash would: no clean stop (no checkpoint). */
	dev->backend->backend.sync = NULL;
	blkserv_queue_free(q);
	test_close_device(dev);
	free(buf);
}

/* ---- damaging copies ----------------------------------------------- */

/* Empty (or create) the directory @dir. */
static void empty_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (!d) {
		assert_int_equal(mkdir(dir, 0700), 0);
		return;
	}
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			assert_int_equal(unlinkat(dirfd(d), de->d_name, 0), 0);
	closedir(d);
}

static void copy_log(const char *src, const char *dst, const struct layout *l)
{
	static char buf[1 << 16];

	empty_dir(dst);
	for (int s = 0; s < l->nsegs; s++) {
		char a[512], b[512];
		seg_path(src, l->segs[s], a, sizeof(a));
		seg_path(dst, l->segs[s], b, sizeof(b));
		int in = open(a, O_RDONLY), out = open(b, O_WRONLY | O_CREAT, 0600);
		ssize_t n;
		assert_true(in >= 0 && out >= 0);
		while ((n = read(in, buf, sizeof(buf))) > 0)
			assert_int_equal(write(out, buf, (size_t)n), n);
		close(in);
		close(out);
	}
}

/* A crash while segment @id was the open one, after @pos bytes reached it. */
static void cut_log(const char *dir, const struct layout *l, uint64_t id, uint64_t pos)
{
	char path[512];

	for (int s = 0; s < l->nsegs; s++) {
		seg_path(dir, l->segs[s], path, sizeof(path));
		if (l->segs[s] > id)
			assert_int_equal(unlink(path), 0);
		else if (l->segs[s] == id)
			assert_int_equal(truncate(path, (off_t)pos), 0);
	}
}

static void append_bytes(const char *dir, uint64_t id, const void *p, size_t len)
{
	char path[512];
	int fd;

	seg_path(dir, id, path, sizeof(path));
	fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, p, len), (ssize_t)len);
	close(fd);
}

/* ---- checking a recovery ------------------------------------------- */

/* The seq of the first record not wholly before (@id, @pos). */
static uint64_t first_lost_seq(const struct workload *w, const struct layout *l, uint64_t id, uint64_t pos)
{
	for (int i = 0; i < l->n; i++)
		if (l->r[i].seg > id || (l->r[i].seg == id && l->r[i].end > pos))
			return l->r[i].seq;
	return w->final_seq;
}

static void verify_device(struct blkserv_device *dev, const struct workload *w, uint64_t next_seq, const char *what)
{
	unsigned char *want = malloc(DEV_SIZE), *got = malloc(DEV_SIZE);
	struct blkserv_queue *q;

	model_upto(w, next_seq, want);
	assert_int_equal(blkserv_queue_new(dev, 2, 0, &q), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 0, DEV_SIZE, got), 0);
	blkserv_queue_free(q);
	for (uint32_t i = 0; i < DEV_SIZE; i++)
		if (want[i] != got[i])
			fail_msg("%s: byte %u is %02x, expected %02x (recovered next_seq %" PRIu64 ")", what, i, got[i],
				 want[i], next_seq);
	free(want);
	free(got);
}

/* Open the damaged copy; it must come back with exactly @expect_seq. */
static void expect_recovery(const struct workload *w, const char *dir, uint64_t expect_seq, const char *what)
{
	struct blkserv_device *dev = open_log(dir, CRASH_OPTS);
	uint64_t got = stat_value(dev, "next_seq");

	/* Recovery appends nothing before the first request. */
	if (got != expect_seq)
		fail_msg("%s: recovered up to seq %" PRIu64 ", expected %" PRIu64, what, got, expect_seq);
	verify_device(dev, w, got, what);
	dev->backend->backend.sync = NULL; /* reopenable as the same crash state */
	test_close_device(dev);
}

static void expect_refusal(const char *dir, const char *extra, uint64_t id, uint64_t pos, const char *what)
{
	struct blkserv_device *dev = NULL;
	char err[8192], want_seg[64], want_off[64];
	int r = try_open(dir, extra, DEV_SIZE, &dev, err, sizeof(err));

	if (r >= 0)
		fail_msg("%s: the damaged log opened", what);
	assert_int_equal(r, -EBADMSG);
	log_seg_name(id, want_seg);
	snprintf(want_off, sizeof(want_off), "offset %" PRIu64, pos);
	if (!strstr(err, want_seg) || !strstr(err, want_off))
		fail_msg("%s: the message does not name %s and %s:\n%s", what, want_seg, want_off, err);
}

/* ---- the crash tests ----------------------------------------------- */

static struct workload *shared_wl;
static struct layout *shared_layout;

static int setup_workload(void **state)
{
	if (!shared_wl) {
		shared_wl = calloc(1, sizeof(*shared_wl));
		shared_layout = calloc(1, sizeof(*shared_layout));
		run_workload(shared_wl, 200, 7);
		read_layout(shared_wl->dir, shared_layout);
	}
	return 0;
}

/* Cut at every record boundary: exactly the records before it survive. */
static void test_cut_every_record(void **state)
{
	const struct workload *w = shared_wl;
	const struct layout *l = shared_layout;
	char dir[512], what[128];

	snprintf(dir, sizeof(dir), "%s/cut", test_tmpdir());
	assert_true(l->nsegs >= 5);
	for (int i = 0; i <= l->n; i++) {
		uint64_t id = i < l->n ? l->r[i].seg : l->r[l->n - 1].seg;
		uint64_t pos = i < l->n ? l->r[i].pos : l->r[l->n - 1].end;
		uint64_t expect = i < l->n ? l->r[i].seq : w->final_seq;
		snprintf(what, sizeof(what), "cut at segment %" PRIu64 " offset %" PRIu64, id, pos);
		copy_log(w->dir, dir, l);
		cut_log(dir, l, id, pos);
		expect_recovery(w, dir, expect, what);
	}
}

/* Cut at random byte offsets, headers included: the torn record and all
 * after it are gone, everything before it is there. */
static void test_cut_random(void **state)
{
	const struct workload *w = shared_wl;
	const struct layout *l = shared_layout;
	char dir[512], what[128];

	snprintf(dir, sizeof(dir), "%s/cutr", test_tmpdir());
	srand(11);
	for (int k = 0; k < 80; k++) {
		int s = rand() % l->nsegs;
		uint64_t id = l->segs[s], pos = (uint64_t)rand() % (l->seg_size[s] + 1), expect;
		if (k % 10 == 0)
			pos = (uint64_t)rand() % LOG_SEG_HEADER_SIZE; /* a torn segment header */
		expect = pos < LOG_SEG_HEADER_SIZE ? l->seg_first_seq[s] : first_lost_seq(w, l, id, pos);
		/* A segment whose header is torn is dropped with its checkpoint. */
		snprintf(what, sizeof(what), "cut at segment %" PRIu64 " offset %" PRIu64, id, pos);
		copy_log(w->dir, dir, l);
		cut_log(dir, l, id, pos);
		expect_recovery(w, dir, expect, what);
	}
}

/* The newest record a completed flush, FUA write or clean stop made
 * durable (a flush's sync marker comes after its fdatasync: not durable). */
static uint64_t durable_seq(const struct workload *w)
{
	uint64_t dseq = 0;

	for (int i = 0; i < w->n; i++) {
		const struct op *o = &w->ops[i];
		if (o->kind == OP_FLUSH)
			dseq = o->seq - 1;
		else if (o->durable)
			dseq = o->seq; /* the FUA write itself, or the checkpoint of a clean stop */
	}
	return dseq;
}

/* The seq of the checkpoint the clean restart wrote. */
static uint64_t checkpoint_seq(const struct workload *w)
{
	for (int i = 0; i < w->n; i++)
		if (w->ops[i].kind == OP_RESTART)
			return w->ops[i].seq;
	return 0;
}

/* Where the durable part of the last segment ends. */
static uint64_t durable_end(const struct workload *w, const struct layout *l)
{
	uint64_t last = l->segs[l->nsegs - 1], end = LOG_SEG_HEADER_SIZE, dseq = durable_seq(w);

	for (int i = 0; i < l->n; i++)
		if (l->r[i].seg == last && l->r[i].seq <= dseq)
			end = l->r[i].end;
	return end;
}

/* Bits flipped after the last durable point: a torn tail, cut there. */
static void test_flip_tail(void **state)
{
	const struct workload *w = shared_wl;
	const struct layout *l = shared_layout;
	uint64_t last = l->segs[l->nsegs - 1], size = l->seg_size[l->nsegs - 1], d = durable_end(w, l);
	char dir[512], what[128];

	snprintf(dir, sizeof(dir), "%s/flip", test_tmpdir());
	assert_true(d < size);
	srand(13);
	for (int k = 0; k < 40; k++) {
		uint64_t pos = d + (uint64_t)rand() % (size - d);
		snprintf(what, sizeof(what), "bit flipped at segment %" PRIu64 " offset %" PRIu64, last, pos);
		copy_log(w->dir, dir, l);
		flip_bit(dir, last, pos, rand() % 8);
		expect_recovery(w, dir, first_lost_seq(w, l, last, pos), what);
	}
}

/* Garbage after the last record (preallocated zeros, noise, an old record
 * again): cut, nothing lost. */
static void test_garbage_tail(void **state)
{
	const struct workload *w = shared_wl;
	const struct layout *l = shared_layout;
	uint64_t last = l->segs[l->nsegs - 1];
	unsigned char junk[8192];
	char dir[512], src[512];

	snprintf(dir, sizeof(dir), "%s/junk", test_tmpdir());
	for (int kind = 0; kind < 4; kind++) {
		copy_log(w->dir, dir, l);
		if (kind == 0)
			memset(junk, 0, sizeof(junk));
		for (size_t i = 0; kind == 1 && i < sizeof(junk); i++)
			junk[i] = (unsigned char)rand();
		if (kind >= 2) { /* a whole valid record of this segment, again */
			seg_path(w->dir, last, src, sizeof(src));
			int fd = open(src, O_RDONLY);
			const struct rec_pos *r = NULL;
			for (int i = 0; i < l->n; i++)
				if (l->r[i].seg == last && l->r[i].end - l->r[i].pos <= sizeof(junk))
					r = &l->r[i];
			assert_non_null(r);
			assert_true(pread(fd, junk, r->end - r->pos, (off_t)r->pos) > 0);
			close(fd);
			append_bytes(dir, last, junk, r->end - r->pos);
			if (kind == 3)
				append_bytes(dir, last, junk, 17);
		} else {
			append_bytes(dir, last, junk, sizeof(junk));
		}
		expect_recovery(w, dir, w->final_seq, "garbage appended");
	}
}

static void expect_recovery_with(const struct workload *w, const char *dir, const char *extra, uint64_t expect_seq,
				 const char *what)
{
	struct blkserv_device *dev = open_log(dir, extra);
	uint64_t got = stat_value(dev, "next_seq");

	if (got != expect_seq)
		fail_msg("%s: recovered up to seq %" PRIu64 ", expected %" PRIu64, what, got, expect_seq);
	verify_device(dev, w, got, what);
	test_close_device(dev);
}

/* Damage to records a flush already made durable, after the checkpoint
 * (in the open segment or a sealed one): refuse, naming the segment and
 * offset; recover_truncate cuts the log there instead. */
static void test_flip_durable(void **state)
{
	const struct workload *w = shared_wl;
	const struct layout *l = shared_layout;
	uint64_t dseq = durable_seq(w), cseq = checkpoint_seq(w);
	char dir[512], what[128];
	int tried = 0;

	snprintf(dir, sizeof(dir), "%s/dur", test_tmpdir());
	srand(17);
	for (int i = l->n - 1; i >= 0 && tried < 8; i--) {
		const struct rec_pos *r = &l->r[i];
		if (r->seq <= cseq || r->seq > dseq || rand() % 3)
			continue;
		tried++;
		uint64_t pos = r->pos + (uint64_t)rand() % (r->end - r->pos);
		snprintf(what, sizeof(what),
			 "bit flipped in durable seq %" PRIu64 " (segment %" PRIu64 " offset %" PRIu64 ")", r->seq,
			 r->seg, pos);
		copy_log(w->dir, dir, l);
		flip_bit(dir, r->seg, pos, rand() % 8);
		expect_refusal(dir, CRASH_OPTS, r->seg, r->pos, what);
		expect_recovery_with(w, dir, CRASH_OPTS "    recover_truncate = true\n", r->seq, what);
	}
	assert_true(tried >= 4);
}

/* A bad header of the open segment after a flush covered it: refused too. */
static void test_flip_last_header(void **state)
{
	const struct workload *w = shared_wl;
	const struct layout *l = shared_layout;
	uint64_t last = l->segs[l->nsegs - 1];
	char dir[512];

	if (durable_end(w, l) == LOG_SEG_HEADER_SIZE)
		skip(); /* the workload's last segment holds no flushed record */
	snprintf(dir, sizeof(dir), "%s/hdr", test_tmpdir());
	copy_log(w->dir, dir, l);
	flip_bit(dir, last, 44, 1);
	expect_refusal(dir, CRASH_OPTS, last, 0, "bad header of a flushed open segment");
}

/* Damage before the checkpoint: the start does not read it (recovery time
 * must not grow with the log's age); verify_on_start and blkserv-log do. */
static void test_flip_before_checkpoint(void **state)
{
	const struct workload *w = shared_wl;
	const struct layout *l = shared_layout;
	const struct rec_pos *r = &l->r[3];
	char dir[512], cmd[1024], out[256], want[128];
	FILE *f;

	assert_true(r->seq < checkpoint_seq(w));
	snprintf(dir, sizeof(dir), "%s/old", test_tmpdir());
	copy_log(w->dir, dir, l);
	flip_bit(dir, r->seg, r->pos + 20, 0);
	expect_refusal(dir, CRASH_OPTS "    verify_on_start = true\n", r->seg, r->pos, "damage before the checkpoint");
	snprintf(out, sizeof(out), "%s/verify.txt", test_tmpdir());
	snprintf(cmd, sizeof(cmd), "'%s' verify '%s' >'%s' 2>&1", getenv("BLKSERV_LOG_TOOL"), dir, out);
	int status = system(cmd);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);
	f = fopen(out, "r");
	char text[4096] = "";
	assert_true(fread(text, 1, sizeof(text) - 1, f) > 0);
	fclose(f);
	snprintf(want, sizeof(want), "offset %" PRIu64, r->pos);
	if (!strstr(text, want))
		fail_msg("blkserv-log verify did not name %s:\n%s", want, text);
	/* The undamaged log verifies. */
	snprintf(cmd, sizeof(cmd), "'%s' verify '%s' >'%s' 2>&1", getenv("BLKSERV_LOG_TOOL"), w->dir, out);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_cut_every_record, setup_workload),
		cmocka_unit_test_setup(test_cut_random, setup_workload),
		cmocka_unit_test_setup(test_flip_tail, setup_workload),
		cmocka_unit_test_setup(test_garbage_tail, setup_workload),
		cmocka_unit_test_setup(test_flip_durable, setup_workload),
		cmocka_unit_test_setup(test_flip_last_header, setup_workload),
		cmocka_unit_test_setup(test_flip_before_checkpoint, setup_workload),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

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

#define DEV_SIZE (256u << 10)
#define SECTOR 512u

/* ---- opening ------------------------------------------------------- */

static char *config_text(const char *dir, const char *extra, uint64_t size)
{
	char *text, sz[64] = "";

	if (size)
		snprintf(sz, sizeof(sz), "  size = %" PRIu64 "\n", size);
	if (asprintf(&text, "device \"lg\" {\n%s  block_size = 512\n"
			    "  frontend \"testfe\" { socket = \"/x\" }\n"
			    "  backend \"log\" {\n    dir = \"%s\"\n%s\n  }\n}\n", sz, dir, extra ? extra : "") < 0)
		abort();
	return text;
}

/* Open; on failure return -errno with what was logged in @errbuf. */
static int try_open(const char *dir, const char *extra, uint64_t size, struct blkserv_device **ret, char *errbuf,
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

static struct blkserv_device *open_log(const char *dir, const char *extra)
{
	struct blkserv_device *dev = NULL;
	char err[8192];
	int r = try_open(dir, extra, DEV_SIZE, &dev, err, sizeof(err));

	if (r < 0)
		fail_msg("opening the log in %s failed: %s\n%s", dir, strerror(-r), err);
	return dev;
}

static uint64_t stat_value(struct blkserv_device *dev, const char *key)
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

/* ---- the workload and its model ------------------------------------ */

enum op_kind { OP_WRITE, OP_WRITE_FUA, OP_TRIM, OP_ZERO, OP_FLUSH, OP_RESTART };

struct op {
	enum op_kind kind;
	uint32_t off, len, id;
	uint64_t seq;       /* the sequence number of its data record */
	bool durable;       /* a flush point: everything before it is durable */
};

#define MAX_OPS 400

struct workload {
	struct op ops[MAX_OPS];
	int n;
	char dir[256];
	uint64_t final_seq; /* next_seq at the end */
};

static unsigned char pattern(uint32_t id, uint32_t off)
{
	uint32_t x = id * 2654435761u ^ off * 40503u;

	return (unsigned char)(x ^ (x >> 13) ^ (x >> 24));
}

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

/* ---- the log's records --------------------------------------------- */

struct rec_pos {
	uint64_t seg, pos, end, seq;
};

struct layout {
	struct rec_pos r[4096];
	int n;
	uint64_t segs[256], seg_size[256], seg_first_seq[256];
	int nsegs;
};

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
static void read_layout(const char *dir, struct layout *l)
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
			l->r[l->n++] = (struct rec_pos){ l->segs[s], pos, pos + LOG_REC_HEADER_SIZE + rec.payload_len, rec.seq };
			pos += LOG_REC_HEADER_SIZE + rec.payload_len;
			assert_true(l->n < 4096);
		}
		close(fd);
	}
}

/* ---- damaging copies ----------------------------------------------- */

static void seg_path(const char *dir, uint64_t id, char *buf, size_t len)
{
	char name[LOG_SEG_NAME_LEN];

	log_seg_name(id, name);
	snprintf(buf, len, "%s/%s", dir, name);
}

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

static void flip_bit(const char *dir, uint64_t id, uint64_t pos, int bit)
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

static void verify_device(struct blkserv_device *dev, const struct workload *w, uint64_t next_seq,
			  const char *what)
{
	unsigned char *want = malloc(DEV_SIZE), *got = malloc(DEV_SIZE);
	struct blkserv_queue *q;

	model_upto(w, next_seq, want);
	assert_int_equal(blkserv_queue_new(dev, 2, 0, &q), 0);
	assert_int_equal(test_io(q, BLKSERV_OP_READ, 0, 0, DEV_SIZE, got), 0);
	blkserv_queue_free(q);
	for (uint32_t i = 0; i < DEV_SIZE; i++)
		if (want[i] != got[i])
			fail_msg("%s: byte %u is %02x, expected %02x (recovered next_seq %" PRIu64 ")", what, i,
				 got[i], want[i], next_seq);
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
		snprintf(what, sizeof(what), "bit flipped in durable seq %" PRIu64 " (segment %" PRIu64 " offset %"
			 PRIu64 ")", r->seq, r->seg, pos);
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


/* ---- the data path, compaction, space ------------------------------ */

struct dev_model {
	struct blkserv_device *dev;
	struct blkserv_queue *q;
	unsigned char *m;   /* what the device must read back */
	unsigned char *buf;
	uint64_t size;
	uint32_t id;
};

static char *fresh_dir(const char *name)
{
	char *dir;

	if (asprintf(&dir, "%s/%s", test_tmpdir(), name) < 0)
		abort();
	return dir;
}

static int dm_write(struct dev_model *d, uint64_t off, uint32_t len, uint32_t flags)
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

static void dm_zero(struct dev_model *d, uint32_t op, uint64_t off, uint32_t len)
{
	assert_int_equal(test_io(d->q, op, 0, off, len, NULL), 0);
	memset(d->m + off, 0, len);
}

static void dm_verify(struct dev_model *d, const char *what)
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

static uint32_t dm_crc(struct dev_model *d)
{
	unsigned char *got = malloc(d->size);
	uint32_t c;

	assert_int_equal(test_io(d->q, BLKSERV_OP_READ, 0, 0, d->size, got), 0);
	c = crc32c(0, got, d->size);
	free(got);
	return c;
}

static void dm_open(struct dev_model *d, const char *dir, const char *extra, uint64_t size)
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

static void dm_close(struct dev_model *d, bool clean)
{
	blkserv_queue_free(d->q);
	if (!clean)
		d->dev->backend->backend.sync = NULL;
	test_close_device(d->dev);
}

static void dm_free(struct dev_model *d)
{
	free(d->m);
	free(d->buf);
}

static void test_basic(void **state)
{
	_cleanup_free_ char *dir = fresh_dir("basic");
	struct dev_model d = { 0 };
	char stats[4096];

	dm_open(&d, dir, "", DEV_SIZE);
	dm_verify(&d, "a new log reads as zeros");
	assert_int_equal(dm_write(&d, 8192, 4096, 0), 0);
	assert_int_equal(dm_write(&d, 10240, 8192, BLKSERV_REQ_FUA), 0);
	assert_int_equal(dm_write(&d, DEV_SIZE - 512, 512, 0), 0);
	dm_zero(&d, BLKSERV_OP_TRIM, 9216, 2048);
	dm_zero(&d, BLKSERV_OP_WRITE_ZEROES, 16384, 1024);
	assert_int_equal(test_io(d.q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), 0);
	dm_verify(&d, "after writes, trims, zeroes");
	/* Past the end: the host refuses before the backend sees it. */
	assert_int_equal(test_io(d.q, BLKSERV_OP_WRITE, 0, DEV_SIZE, 512, d.buf), -ENOSPC);
	assert_int_equal(d.dev->backend->backend.get_stats(d.dev->backend_handle, stats, sizeof(stats)), 0);
	for (const char *k = "live_bytes=\0garbage_bytes=\0segments=\0client_write_bytes=\0disk_write_bytes=\0"
			     "write_amplification=\0"; *k; k += strlen(k) + 1)
		if (!strstr(stats, k))
			fail_msg("no %s in stats:\n%s", k, stats);
	assert_int_equal(stat_value(d.dev, "client_write_bytes"), 4096 + 8192 + 512);
	dm_close(&d, true);
	dm_open(&d, dir, "", DEV_SIZE);
	dm_verify(&d, "after a clean restart");
	assert_int_equal(stat_value(d.dev, "recovery_replayed_bytes"), 0); /* from the checkpoint */
	dm_close(&d, false);
	dm_open(&d, dir, "", 0); /* the size comes from the log */
	dm_verify(&d, "after a crash");
	dm_close(&d, true);
	dm_free(&d);
}

static void test_refusals(void **state)
{
	_cleanup_free_ char *dir = fresh_dir("refuse");
	struct blkserv_device *a = NULL, *b = NULL;
	char err[8192];

	assert_int_equal(try_open(dir, "", DEV_SIZE, &a, err, sizeof(err)), 0);
	/* Two devices never share a log. */
	assert_int_equal(try_open(dir, "", DEV_SIZE, &b, err, sizeof(err)), -EBUSY);
	assert_non_null(strstr(err, "in use"));
	test_close_device(a);
	/* The log remembers its size. */
	assert_int_equal(try_open(dir, "", DEV_SIZE * 2, &b, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "holds a device of"));
	/* A new log needs a size. */
	_cleanup_free_ char *empty = fresh_dir("refuse-empty");
	assert_int_equal(try_open(empty, "", 0, &b, err, sizeof(err)), -EINVAL);
	/* Out of range: the config itself is refused, naming the line. */
	_cleanup_free_ char *text = config_text(empty, "segment_size = 4K", DEV_SIZE);
	struct config *c = NULL;
	_cleanup_free_ char *error = NULL;
	assert_true(test_load_config(text, &c, &error) < 0);
	assert_non_null(error);
	if (!strstr(error, "test.conf:") || !strstr(error, "option 'segment_size' of backend 'log' expects a size "
							     "from 64K to 1T, not '4K'"))
		fail_msg("unexpected config error: %s", error);
}

static void overwrite_randomly(struct dev_model *d, int n, uint32_t max_blocks)
{
	for (int i = 0; i < n; i++) {
		uint64_t off = (uint64_t)(rand() % (int)(d->size / 4096)) * 4096;
		uint32_t len = 4096 * (1 + (uint32_t)rand() % max_blocks);
		if (off + len > d->size)
			len = (uint32_t)(d->size - off);
		if (i % 40 == 7)
			dm_zero(d, i % 80 == 7 ? BLKSERV_OP_TRIM : BLKSERV_OP_WRITE_ZEROES, off, len * 4 > d->size - off ?
				(uint32_t)(d->size - off) : len * 4);
		else
			assert_int_equal(dm_write(d, off, len, 0), 0);
	}
}

/* Poll until compaction brought garbage down, or give up after 20 s. */
static void wait_for_compaction(struct dev_model *d, uint64_t min_rounds)
{
	for (int i = 0; i < 400; i++) {
		if (stat_value(d->dev, "compactions") >= min_rounds &&
		    stat_value(d->dev, "garbage_bytes") * 100 <= 60 * stat_value(d->dev, "log_bytes"))
			return;
		usleep(50000);
	}
	fail_msg("compaction did not run: compactions=%" PRIu64 " garbage=%" PRIu64 " log=%" PRIu64,
		 stat_value(d->dev, "compactions"), stat_value(d->dev, "garbage_bytes"),
		 stat_value(d->dev, "log_bytes"));
}

#define COMPACT_OPTS "segment_size = 64K\ncompact_threshold = 30\ncheckpoint_interval = 512K\n"

/* Compaction keeps every byte: the device's checksum before and after,
 * with writes going on during it, and after restarts. */
static void test_compaction(void **state)
{
	_cleanup_free_ char *dir = fresh_dir("compact");
	struct dev_model d = { 0 };
	uint64_t size = 1 << 20, before_bytes;
	uint32_t crc;

	srand(5);
	dm_open(&d, dir, COMPACT_OPTS "compaction = false\n", size);
	for (uint64_t off = 0; off < size; off += 65536)
		assert_int_equal(dm_write(&d, off, 65536, 0), 0);
	overwrite_randomly(&d, 700, 4);
	crc = dm_crc(&d);
	assert_int_equal(crc, crc32c(0, d.m, size));
	before_bytes = stat_value(d.dev, "log_bytes");
	dm_close(&d, true);

	dm_open(&d, dir, COMPACT_OPTS, size);
	wait_for_compaction(&d, 1);
	assert_int_equal(dm_crc(&d), crc);
	assert_true(stat_value(d.dev, "log_bytes") < before_bytes);
	assert_true(stat_value(d.dev, "deleted_segments") > 0);
	/* Writes while compaction runs: the index must keep the newest. */
	overwrite_randomly(&d, 600, 2);
	wait_for_compaction(&d, 2);
	dm_verify(&d, "after compaction with concurrent writes");
	dm_close(&d, false);
	dm_open(&d, dir, COMPACT_OPTS, size);
	dm_verify(&d, "after compaction and a crash");
	dm_close(&d, true);
	dm_open(&d, dir, COMPACT_OPTS "compaction = false\n", size);
	dm_verify(&d, "after compaction and a clean restart");
	dm_close(&d, true);
	dm_free(&d);
}

/* Client writes racing with compaction's copies of the same blocks: a
 * copy must never bring back data a client overwrote meanwhile. */
static void test_compaction_race(void **state)
{
	_cleanup_free_ char *dir = fresh_dir("race");
	struct dev_model d = { 0 };

	srand(21);
	dm_open(&d, dir, "segment_size = 64K\ncompact_threshold = 5\n", DEV_SIZE);
	for (int i = 0; i < 1500; i++)
		assert_int_equal(dm_write(&d, (uint64_t)(rand() % 24) * 4096, 4096 * (1 + (uint32_t)(rand() % 2)), 0), 0);
	dm_verify(&d, "writes racing with compaction");
	/* Compaction runs in the background: wait for it rather than assume
	 * it already ran (it had not, once, on a loaded machine). */
	wait_for_compaction(&d, 1);
	dm_verify(&d, "writes racing with compaction, once it ran");
	dm_close(&d, false);
	dm_open(&d, dir, "segment_size = 64K\ncompact_threshold = 5\n", DEV_SIZE);
	dm_verify(&d, "writes racing with compaction, after a crash");
	dm_close(&d, true);
	dm_free(&d);
}

/* A failed fdatasync is permanent: that flush and every later one fail,
 * writes too, reads go on; it is logged once. */
static void test_sync_failure(void **state)
{
	_cleanup_free_ char *dir = fresh_dir("fsync-fail");
	struct dev_model d = { 0 };
	char err[8192];

	/* A new log syncs nothing at open: the first flush is call 1. */
	setenv("BLKSERV_LOG_FAULT_FSYNC", "1", 1);
	dm_open(&d, dir, "", DEV_SIZE);
	unsetenv("BLKSERV_LOG_FAULT_FSYNC");
	assert_int_equal(dm_write(&d, 0, 4096, 0), 0);
	assert_int_equal(test_io(d.q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), -EIO);
	assert_int_equal(test_io(d.q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL), -EIO);
	assert_int_equal(dm_write(&d, 4096, 4096, 0), -EIO);
	assert_int_equal(dm_write(&d, 8192, 4096, BLKSERV_REQ_FUA), -EIO);
	assert_int_equal(stat_value(d.dev, "sync_failed"), 1);
	dm_verify(&d, "reads after a failed sync");
	dm_close(&d, true);
	/* The next start recovers as after a crash. */
	struct blkserv_device *dev = NULL;
	assert_int_equal(try_open(dir, "", DEV_SIZE, &dev, err, sizeof(err)), 0);
	test_close_device(dev);
	dm_free(&d);
}

/* max_size: a clean ENOSPC without compaction, never corruption; with
 * compaction, overwrites go on for ever in bounded space. */
static void test_space_limit(void **state)
{
	_cleanup_free_ char *dir = fresh_dir("full"), *dir2 = fresh_dir("full2");
	struct dev_model d = { 0 }, e = { 0 };
	uint64_t off = 0;
	int r = 0;

	dm_open(&d, dir, "segment_size = 64K\nmax_size = 256K\ncompaction = false\n", 1 << 20);
	for (; off < d.size && (r = dm_write(&d, off, 4096, 0)) == 0; off += 4096)
		;
	assert_int_equal(r, -ENOSPC);
	assert_true(off >= 64 << 10 && off < 256 << 10);
	dm_verify(&d, "a full log");
	dm_close(&d, false);
	dm_open(&d, dir, "segment_size = 64K\nmax_size = 256K\ncompaction = false\n", 1 << 20);
	dm_verify(&d, "a full log after a crash");
	assert_int_equal(dm_write(&d, 0, 4096, 0), -ENOSPC);
	dm_close(&d, true);
	dm_free(&d);

	dm_open(&e, dir2, "segment_size = 64K\nmax_size = 512K\ncompact_threshold = 20\n", 1 << 20);
	srand(9);
	for (int i = 0; i < 1500; i++)
		assert_int_equal(dm_write(&e, (uint64_t)(rand() % 16) * 4096, 4096, 0), 0);
	assert_true(stat_value(e.dev, "log_bytes") <= 512 << 10);
	dm_verify(&e, "overwrites in bounded space");
	dm_close(&e, true);
	dm_free(&e);
}

/* Queues on several threads at once, with compaction running. */
struct worker {
	struct blkserv_device *dev;
	unsigned char *m;
	uint64_t base;
	unsigned seed;
};

#define REGION (128u << 10)

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct blkserv_queue *q;
	unsigned char *buf = malloc(16384);
	unsigned seed = w->seed;

	if (blkserv_queue_new(w->dev, 2, 0, &q) < 0)
		abort();
	for (int i = 0; i < 400; i++) {
		uint64_t off = w->base + (uint64_t)(rand_r(&seed) % (REGION / 4096)) * 4096;
		uint32_t len = 4096 * (1 + (uint32_t)rand_r(&seed) % 4), id = w->seed * 1000 + (uint32_t)i;
		if (off + len > w->base + REGION)
			len = (uint32_t)(w->base + REGION - off);
		for (uint32_t k = 0; k < len; k++)
			buf[k] = pattern(id, (uint32_t)(off + k));
		if (test_io(q, BLKSERV_OP_WRITE, i % 17 ? 0 : BLKSERV_REQ_FUA, off, len, buf) != 0)
			abort();
		memcpy(w->m + off, buf, len);
		if (i % 23 == 0 && test_io(q, BLKSERV_OP_FLUSH, 0, 0, 0, NULL) != 0)
			abort();
	}
	blkserv_queue_free(q);
	free(buf);
	return NULL;
}

static void test_threads(void **state)
{
	_cleanup_free_ char *dir = fresh_dir("threads");
	struct dev_model d = { 0 };
	struct worker w[3];
	pthread_t t[3];

	dm_open(&d, dir, COMPACT_OPTS, 3 * REGION);
	for (int i = 0; i < 3; i++) {
		w[i] = (struct worker){ d.dev, d.m, (uint64_t)i * REGION, (unsigned)i + 1 };
		assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	dm_verify(&d, "writes from three threads");
	dm_close(&d, false);
	dm_open(&d, dir, COMPACT_OPTS, 3 * REGION);
	dm_verify(&d, "writes from three threads, after a crash");
	dm_close(&d, true);
	dm_free(&d);
}


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
	expect_eio(&d, 5 * 4096 + 512, 512, NULL);     /* a part of the record */
	expect_eio(&d, 3 * 4096, 4 * 4096, NULL);      /* intact blocks around it: the whole read fails */
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
	{	/* the garbage record of block 9: the first one */
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
	for (int i = 0; i < 600 && (stat_value(d.dev, "deleted_segments") == 0 ||
				    stat_value(d.dev, "checksum_errors") == 0); i++)
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
			       "max_record_size = 32K\0"; *bad; bad += strlen(bad) + 1) {
		_cleanup_free_ char *text = config_text(dir, bad, DEV_SIZE), *error = NULL;
		struct config *c = NULL;
		assert_true(test_load_config(text, &c, &error) < 0);
		if (!error || !strstr(error, "test.conf:") || !strstr(error, "option 'max_record_size'"))
			fail_msg("%s: unexpected config error: %s", bad, error ? error : "(none)");
	}
	dm_open(&d, dir, "max_record_size = 16K", DEV_SIZE);
	assert_int_equal(dm_write(&d, 0, 65536, BLKSERV_REQ_FUA), 0);      /* 4 records */
	assert_int_equal(dm_write(&d, 65536 + 512, 20000, 0), 0);          /* 16K + the rest */
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
	expect_eio(&d, (1 << 20) + 3 * 65536 + 61440, 4096, NULL);  /* its last block */
	expect_eio(&d, 1 << 20, 1 << 20, NULL);                     /* the whole write */
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
	write_mib(&d, 2 << 20);                  /* new data: 16 records */
	assert_int_equal(stat_value(d.dev, "extents"), 6 - 1 + 16);
	dm_close(&d, false);
	dm_open(&d, dir, "max_record_size = 0", BIG_SIZE); /* and back */
	dm_verify(&d, "a mixed log after a crash, opened with max_record_size = 0");
	dm_close(&d, true);
	/* Compaction copies the old 1 MiB records as 64 KiB ones. */
	dm_open(&d, dir, compact, BIG_SIZE);
	for (int i = 0; i < 3; i++)
		write_mib(&d, 2 << 20);          /* garbage, so the old segment is compacted */
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
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_compaction),
		cmocka_unit_test(test_compaction_race),
		cmocka_unit_test(test_space_limit),
		cmocka_unit_test(test_sync_failure),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_corrupt_data_read),
		cmocka_unit_test(test_corrupt_header_read),
		cmocka_unit_test(test_corrupt_while_running),
		cmocka_unit_test(test_scrub),
		cmocka_unit_test(test_scrub_with_writes),
		cmocka_unit_test(test_compaction_keeps_corruption),
		cmocka_unit_test(test_max_record_size),
		cmocka_unit_test(test_default_split),
		cmocka_unit_test(test_old_default_log),
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

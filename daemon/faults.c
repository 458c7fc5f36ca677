/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fault injection (see faults.h and blkservd.conf(5), FAULT INJECTION). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "faults.h"
#include "log.h"
#include "parse.h"

const struct blkserv_option fault_options[] = {
	{ "read_error_every", BLKSERV_OPT_UINT, NULL, "every Nth read fails with EIO", 0 },
	{ "read_error_offset", BLKSERV_OPT_SIZE, NULL, "reads touching [offset, offset + length) fail with EIO", 0 },
	{ "read_error_length", BLKSERV_OPT_SIZE, NULL, "length of the read error range (default: to the end)", 0 },
	{ "write_error_every", BLKSERV_OPT_UINT, NULL, "every Nth write fails with EIO", 0 },
	{ "write_error_offset", BLKSERV_OPT_SIZE, NULL, "writes touching [offset, offset + length) fail with EIO", 0 },
	{ "write_error_length", BLKSERV_OPT_SIZE, NULL, "length of the write error range (default: to the end)", 0 },
	{ "write_error_after", BLKSERV_OPT_UINT, NULL, "the first N writes succeed, every later one fails with EIO",
	  0 },
	{ "flush_error_after", BLKSERV_OPT_UINT, NULL,
	  "the first N flushes succeed; the next one and every later one fail with EIO (sticky)", 0 },
	{ "enospc_after", BLKSERV_OPT_SIZE, NULL, "writes fail with ENOSPC once this many bytes were written", 0 },
	{ "delay_ms", BLKSERV_OPT_UINT, NULL, "requests wait this long before the backend sees them", 0 },
	{ "delay_every", BLKSERV_OPT_UINT, "1", "only every Nth request waits delay_ms", 0 },
	{ "trigger", BLKSERV_OPT_PATH, NULL, "faults act only while this file exists", 0 },
	BLKSERV_OPTION_END
};

/* How each option is checked and where it is stored. */
enum value_rule {
	RULE_POSITIVE, /* integer >= 1 */
	RULE_COUNT,    /* integer >= 0 */
	RULE_OFFSET,   /* size >= 0 */
	RULE_LENGTH,   /* size >= 1 */
	RULE_DELAY,    /* 1..FAULT_MAX_DELAY_MS */
};

struct option_rule {
	const char *name;
	enum value_rule rule;
	size_t field; /* offsetof(struct fault_config, ...) */
};

#define RULE(name, rule)                                                                                               \
	{                                                                                                              \
#name, rule, offsetof(struct fault_config, name)                                                       \
	}
static const struct option_rule rules[] = {
	RULE(read_error_every, RULE_POSITIVE), RULE(read_error_offset, RULE_OFFSET),
	RULE(read_error_length, RULE_LENGTH),  RULE(write_error_every, RULE_POSITIVE),
	RULE(write_error_offset, RULE_OFFSET), RULE(write_error_length, RULE_LENGTH),
	RULE(write_error_after, RULE_COUNT),   RULE(flush_error_after, RULE_COUNT),
	RULE(enospc_after, RULE_OFFSET),       RULE(delay_ms, RULE_DELAY),
	RULE(delay_every, RULE_POSITIVE),
};

static const char *const rule_expectation[] = {
	[RULE_POSITIVE] = "a positive integer",
	[RULE_COUNT] = "a non-negative integer",
	[RULE_OFFSET] = "a size in bytes (like 0, 512, 4K, 1M)",
	[RULE_LENGTH] = "a size in bytes above 0 (like 512, 4K, 1M)",
	[RULE_DELAY] = "a number of milliseconds from 1 to 60000",
};

void fault_config_init(struct fault_config *fc)
{
	memset(fc, 0, sizeof(*fc));
	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
		*(uint64_t *)((char *)fc + rules[i].field) = FAULT_OFF;
}

static int parse_rule(enum value_rule rule, const char *value, uint64_t *ret)
{
	bool is_size = rule == RULE_OFFSET || rule == RULE_LENGTH;
	int r = is_size ? parse_size(value, ret) : parse_uint(value, ret);

	if (r < 0)
		return r;
	if ((rule == RULE_POSITIVE || rule == RULE_LENGTH || rule == RULE_DELAY) && *ret == 0)
		return -EINVAL;
	if (rule == RULE_DELAY && *ret > FAULT_MAX_DELAY_MS)
		return -EINVAL;
	/* FAULT_OFF marks an option not written; no real value reaches it. */
	return *ret == FAULT_OFF ? -EINVAL : 0;
}

int fault_config_set(struct fault_config *fc, const char *name, const char *value, const char **ret_expected)
{
	if (strcmp(name, "trigger") == 0) {
		*ret_expected = "an absolute path (at most 255 characters)";
		if (value[0] != '/' || strlen(value) >= sizeof(fc->trigger))
			return -EINVAL;
		strcpy(fc->trigger, value);
		return 0;
	}
	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
		if (strcmp(name, rules[i].name) != 0)
			continue;
		*ret_expected = rule_expectation[rules[i].rule];
		return parse_rule(rules[i].rule, value, (uint64_t *)((char *)fc + rules[i].field));
	}
	*ret_expected = "an option of the faults section";
	return -ENOENT;
}

int fault_config_check(const struct fault_config *fc, const char **ret_error, const char **ret_option)
{
	if (fc->delay_every != FAULT_OFF && fc->delay_ms == FAULT_OFF) {
		*ret_error = "delay_every needs delay_ms";
		*ret_option = "delay_every";
		return -EINVAL;
	}
	return 0;
}

bool fault_config_equal(const struct fault_config *a, const struct fault_config *b)
{
	if (a->enabled != b->enabled || strcmp(a->trigger, b->trigger) != 0)
		return false;
	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
		if (*(const uint64_t *)((const char *)a + rules[i].field) !=
		    *(const uint64_t *)((const char *)b + rules[i].field))
			return false;
	return true;
}

void fault_config_describe(const struct fault_config *fc, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]) && n < len; i++) {
		uint64_t v = *(const uint64_t *)((const char *)fc + rules[i].field);
		if (v != FAULT_OFF)
			n += (size_t)snprintf(buf + n, len - n, "%s%s=%llu", n ? " " : "", rules[i].name,
					      (unsigned long long)v);
	}
	if (fc->trigger[0] && n < len)
		snprintf(buf + n, len - n, "%strigger=%s", n ? " " : "", fc->trigger);
}

/* ---- the data path ------------------------------------------------- */

int faults_new(struct blkserv_device *dev, const struct fault_config *fc, struct faults **ret)
{
	struct faults *f;

	*ret = NULL;
	if (!fc->enabled)
		return 0;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->dev = dev;
	f->cfg = *fc;
	*ret = f;
	return 0;
}

void faults_free(struct faults *f)
{
	free(f);
}

static const char *const kind_names[FAULT__MAX] = {
	[FAULT_READ_EVERY] = "read_error_every",
	[FAULT_READ_RANGE] = "read_error_offset/length",
	[FAULT_WRITE_EVERY] = "write_error_every",
	[FAULT_WRITE_RANGE] = "write_error_offset/length",
	[FAULT_WRITE_AFTER] = "write_error_after",
	[FAULT_ENOSPC] = "enospc_after",
	[FAULT_FLUSH] = "flush_error_after",
	[FAULT_FUA_AFTER_FLUSH] = "FUA after a failed flush",
	[FAULT_DELAY] = "delay_ms",
};

static const char *op_name(uint32_t op)
{
	static const char *const names[BLKSERV_OP__MAX] = { "read", "write", "flush", "trim", "write-zeroes" };

	return op < BLKSERV_OP__MAX ? names[op] : "request";
}

/* Count a fault and log the first of its kind. */
static int inject(struct faults *f, enum fault_kind kind, const struct blkserv_request *req, int err)
{
	uint32_t bit = 1u << kind;

	atomic_fetch_add_explicit(&f->injected[kind], 1, memory_order_relaxed);
	if (atomic_fetch_or(&f->logged, bit) & bit)
		return err;
	if (err == 0)
		log_full(f->dev, BLKSERV_LOG_WARNING, 0,
			 "fault injection: delaying %s requests by %llu ms (delay_ms); not logged again",
			 op_name(req->op), (unsigned long long)f->cfg.delay_ms);
	else
		log_full(f->dev, BLKSERV_LOG_WARNING, 0,
			 "fault injection: %s of %llu bytes at offset %llu fails with %s (%s); "
			 "later faults of this kind are counted, not logged",
			 op_name(req->op), (unsigned long long)req->length, (unsigned long long)req->offset,
			 err == -ENOSPC ? "ENOSPC" : "EIO", kind_names[kind]);
	return err;
}

/* Faults act only while the trigger file exists (if one is set). */
static bool active(const struct faults *f)
{
	return !f->cfg.trigger[0] || access(f->cfg.trigger, F_OK) == 0;
}

/* Does the request touch [offset, offset + length)?  No overflow anywhere. */
static bool touches(const struct blkserv_request *req, uint64_t offset, uint64_t length)
{
	if (offset == FAULT_OFF && length == FAULT_OFF)
		return false;
	if (offset == FAULT_OFF)
		offset = 0;
	if (req->offset < offset)
		return offset - req->offset < req->length;
	return req->offset - offset < length; /* length FAULT_OFF: to the end */
}

/* The Nth, 2Nth, ... event of a counter. */
static bool nth(uint64_t count, uint64_t every)
{
	return every != FAULT_OFF && count % every == 0;
}

static int check_read(struct faults *f, const struct blkserv_request *req)
{
	uint64_t n = atomic_fetch_add(&f->reads, 1) + 1;

	if (touches(req, f->cfg.read_error_offset, f->cfg.read_error_length))
		return inject(f, FAULT_READ_RANGE, req, -EIO);
	if (nth(n, f->cfg.read_error_every))
		return inject(f, FAULT_READ_EVERY, req, -EIO);
	return 0;
}

static int check_write(struct faults *f, const struct blkserv_request *req)
{
	uint64_t n = atomic_fetch_add(&f->writes, 1) + 1;
	uint64_t limit = f->cfg.enospc_after;

	if (f->cfg.write_error_after != FAULT_OFF && n > f->cfg.write_error_after)
		return inject(f, FAULT_WRITE_AFTER, req, -EIO);
	if (touches(req, f->cfg.write_error_offset, f->cfg.write_error_length))
		return inject(f, FAULT_WRITE_RANGE, req, -EIO);
	if (nth(n, f->cfg.write_error_every))
		return inject(f, FAULT_WRITE_EVERY, req, -EIO);
	if (limit != FAULT_OFF) {
		/* Room is taken before the write runs, so queues racing for the
		 * last bytes cannot both get them. */
		uint64_t before = atomic_fetch_add(&f->written_bytes, req->length);
		if (before >= limit || req->length > limit - before) {
			atomic_fetch_sub(&f->written_bytes, req->length);
			return inject(f, FAULT_ENOSPC, req, -ENOSPC);
		}
	}
	return 0;
}

static int check_flush(struct faults *f, const struct blkserv_request *req)
{
	uint64_t n = atomic_fetch_add(&f->flushes, 1) + 1;

	if (f->cfg.flush_error_after == FAULT_OFF || n <= f->cfg.flush_error_after)
		return 0;
	atomic_store(&f->flush_failed, true);
	return inject(f, FAULT_FLUSH, req, -EIO);
}

int faults_check(struct faults *f, const struct blkserv_request *req)
{
	bool writes = req->op == BLKSERV_OP_WRITE || req->op == BLKSERV_OP_WRITE_ZEROES;

	/* A failed flush stays failed, trigger or not: durability that was
	 * lost once cannot be promised again (see fsyncgate). */
	if (atomic_load_explicit(&f->flush_failed, memory_order_relaxed)) {
		if (req->op == BLKSERV_OP_FLUSH)
			return inject(f, FAULT_FLUSH, req, -EIO);
		if (writes && (req->flags & BLKSERV_REQ_FUA))
			return inject(f, FAULT_FUA_AFTER_FLUSH, req, -EIO);
	}
	if (!active(f))
		return 0;
	switch (req->op) {
	case BLKSERV_OP_READ:
		return check_read(f, req);
	case BLKSERV_OP_WRITE:
	case BLKSERV_OP_WRITE_ZEROES:
		return check_write(f, req);
	case BLKSERV_OP_FLUSH:
		return check_flush(f, req);
	default:
		return 0;
	}
}

uint32_t faults_delay_ms(struct faults *f, const struct blkserv_request *req)
{
	uint64_t every = f->cfg.delay_every == FAULT_OFF ? 1 : f->cfg.delay_every;

	if (f->cfg.delay_ms == FAULT_OFF || !active(f))
		return 0;
	if (!nth(atomic_fetch_add(&f->requests, 1) + 1, every))
		return 0;
	inject(f, FAULT_DELAY, req, 0);
	return (uint32_t)f->cfg.delay_ms;
}

uint64_t faults_injected(struct faults *f, enum fault_kind kind)
{
	return atomic_load(&f->injected[kind]);
}

uint64_t faults_injected_total(struct faults *f)
{
	uint64_t n = 0;

	for (int k = 0; k < FAULT__MAX; k++)
		if (k != FAULT_DELAY)
			n += faults_injected(f, (enum fault_kind)k);
	return n;
}

void faults_log_summary(struct faults *f)
{
	char buf[512];
	size_t n = 0;

	buf[0] = '\0';
	for (int k = 0; k < FAULT__MAX && n < sizeof(buf); k++) {
		uint64_t v = faults_injected(f, (enum fault_kind)k);
		if (v && k != FAULT_DELAY)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%llu %s", n ? ", " : "",
					      (unsigned long long)v, kind_names[k]);
	}
	log_full(f->dev, BLKSERV_LOG_NOTICE, 0, "fault injection: %llu errors injected%s%s%s, %llu requests delayed",
		 (unsigned long long)faults_injected_total(f), n ? " (" : "", buf, n ? ")" : "",
		 (unsigned long long)faults_injected(f, FAULT_DELAY));
}

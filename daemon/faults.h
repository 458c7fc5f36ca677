/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fault injection: a device's optional `faults { ... }` section makes
 * requests fail or wait on purpose, in front of any backend, so tests can
 * watch the kernel, the file system and the daemon react (blkservd.conf(5),
 * FAULT INJECTION).  For testing only.
 *
 * The queue asks faults_check() before each backend call and
 * faults_delay_ms() when a request arrives; a device without a faults
 * section has no struct faults and pays one predictable branch.  Counters
 * are shared by the device's queues (atomics: tests only, never contended
 * in production).
 */
#ifndef BLKSERVD_FAULTS_H
#define BLKSERVD_FAULTS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blkserv/blkserv-plugin.h"

#define FAULT_OFF UINT64_MAX /* an option not written */
#define FAULT_MAX_DELAY_MS 60000
#define FAULT_TRIGGER_MAX 256

/* A device's faults section as written (FAULT_OFF: not written). */
struct fault_config {
	bool enabled; /* the device has a faults section */
	uint64_t read_error_every;
	uint64_t read_error_offset, read_error_length;
	uint64_t write_error_every;
	uint64_t write_error_offset, write_error_length;
	uint64_t write_error_after;
	uint64_t flush_error_after;
	uint64_t enospc_after;
	uint64_t delay_ms;
	uint64_t delay_every;
	char trigger[FAULT_TRIGGER_MAX]; /* "": always active */
};

/* The options of the section, for the config schema and the man page. */
extern const struct blkserv_option fault_options[];

/* Every option off (an empty section behaves like none). */
void fault_config_init(struct fault_config *fc);
/* Set option @name from its config text: 0, -ENOENT (no such option), or
 * -EINVAL with *ret_expected saying what the value must be. */
int fault_config_set(struct fault_config *fc, const char *name, const char *value, const char **ret_expected);
/* Checks across options: 0, or -EINVAL with *ret_error and the option to
 * blame in *ret_option. */
int fault_config_check(const struct fault_config *fc, const char **ret_error, const char **ret_option);
bool fault_config_equal(const struct fault_config *a, const struct fault_config *b);
/* "read_error_every=10 delay_ms=50" (the options written). */
void fault_config_describe(const struct fault_config *fc, char *buf, size_t len);

enum fault_kind {
	FAULT_READ_EVERY,
	FAULT_READ_RANGE,
	FAULT_WRITE_EVERY,
	FAULT_WRITE_RANGE,
	FAULT_WRITE_AFTER,
	FAULT_ENOSPC,
	FAULT_FLUSH,
	FAULT_FUA_AFTER_FLUSH,
	FAULT_DELAY,
	FAULT__MAX
};

struct faults {
	struct blkserv_device *dev; /* for the log */
	struct fault_config cfg;
	_Atomic uint64_t reads, writes, flushes, requests;
	_Atomic uint64_t written_bytes;
	_Atomic bool flush_failed; /* sticky: until the daemon restarts */
	_Atomic uint32_t logged;   /* bit per enum fault_kind: logged once */
	_Atomic uint64_t injected[FAULT__MAX];
};

/* NULL (and nothing to free) when @fc is not enabled. */
int faults_new(struct blkserv_device *dev, const struct fault_config *fc, struct faults **ret);
void faults_free(struct faults *f);
/* Owning queue thread: 0 to let @req reach the backend, or the -errno it
 * fails with (logged once per kind with the device name). */
int faults_check(struct faults *f, const struct blkserv_request *req);
/* Owning queue thread, when @req arrives: milliseconds it must wait first. */
uint32_t faults_delay_ms(struct faults *f, const struct blkserv_request *req);
uint64_t faults_injected(struct faults *f, enum fault_kind kind);
uint64_t faults_injected_total(struct faults *f);
/* Log what was injected (at device stop). */
void faults_log_summary(struct faults *f);

#endif

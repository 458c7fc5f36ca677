/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * blkserv-plugin.h: the plugin SDK of blkservd.
 *
 * blkservd wires a *frontend* (how a block device reaches the kernel or a
 * client: nbd, ublk, dblock, an NBD export) to a *backend* (where the bytes
 * live: ramdisk, file, log, ...).  Both kinds are shared objects loaded with
 * dlopen(RTLD_NOW|RTLD_LOCAL) from the plugin directory.  A plugin file is
 * named blkserv-backend-NAME.so or blkserv-frontend-NAME.so and exports one
 * symbol, made by BLKSERV_REGISTER_BACKEND() or BLKSERV_REGISTER_FRONTEND().
 *
 * ABI rules (see blkserv-plugin(3)):
 *  - Every plugin struct starts with struct_size, abi_version and name.  New
 *    fields are only ever appended; the host copies min(sizeof, struct_size)
 *    into a zeroed struct, so old plugins keep working.
 *  - Callbacks return 0 or a negative errno; outputs go through ret_*
 *    parameters.  Plugins never print: they log through blkserv_log().
 *  - Sizes and offsets are uint64_t.
 *  - The host checks the range and flags of every request before a backend
 *    sees it: 0 < length, offset <= size and length <= size - offset.
 *
 * Threads.  A device is one frontend instance + one backend instance served
 * by one or more *queues*.  A queue is owned by exactly one thread, which
 * runs the queue's io_uring.  Every request of a queue is submitted and
 * completed on the owning thread.  A backend that finishes a request on
 * another thread (a library callback) calls blkserv_request_complete_remote(),
 * which posts the completion back to the owner.  Nothing on the data path
 * takes a lock shared between queues.
 */
#ifndef BLKSERV_PLUGIN_H
#define BLKSERV_PLUGIN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BLKSERV_ABI_VERSION 1

#define BLKSERV_PUBLIC __attribute__((visibility("default")))
#define BLKSERV_PRINTF(a, b) __attribute__((format(printf, a, b)))

struct io_uring_sqe; /* <linux/io_uring.h>: kernel UAPI, a stable layout */

/* Opaque host objects. */
struct blkserv_device; /* one configured device */
struct blkserv_queue;  /* one queue: an owning thread and its io_uring */
struct blkserv_scrub;  /* a scrub in progress (defined below, with the scrub callback) */
struct blkserv_config; /* one plugin's validated options */

/* ------------------------------------------------------------------ */
/* Logging (host functions).                                           */
/* ------------------------------------------------------------------ */

/* Syslog priorities. */
enum blkserv_log_level {
	BLKSERV_LOG_ERR = 3,
	BLKSERV_LOG_WARNING = 4,
	BLKSERV_LOG_NOTICE = 5,
	BLKSERV_LOG_INFO = 6,
	BLKSERV_LOG_DEBUG = 7,
};

/*
 * Log a message about @dev (NULL: not about one device).  printf format; %m
 * is supported; errno is preserved.  Under systemd the journal entry carries
 * BLKSERV_DEVICE=, BLKSERV_FRONTEND= and BLKSERV_BACKEND=.  Any thread.
 */
void blkserv_log(struct blkserv_device *dev, int level, const char *fmt, ...) BLKSERV_PRINTF(3, 4);
void blkserv_logv(struct blkserv_device *dev, int level, const char *fmt, va_list ap) BLKSERV_PRINTF(3, 0);

#define blkserv_error(dev, ...) blkserv_log((dev), BLKSERV_LOG_ERR, __VA_ARGS__)
#define blkserv_warning(dev, ...) blkserv_log((dev), BLKSERV_LOG_WARNING, __VA_ARGS__)
#define blkserv_notice(dev, ...) blkserv_log((dev), BLKSERV_LOG_NOTICE, __VA_ARGS__)
#define blkserv_info(dev, ...) blkserv_log((dev), BLKSERV_LOG_INFO, __VA_ARGS__)
#define blkserv_debug(dev, ...) blkserv_log((dev), BLKSERV_LOG_DEBUG, __VA_ARGS__)

/*
 * Log like blkserv_log() with %m meaning @error (a negative or positive
 * errno), and return -abs(@error), so a failure is logged and passed up in
 * one statement, like systemd's log_error_errno():
 *
 *	if (r < 0)
 *		return blkserv_error_errno(dev, r, "cannot open %s: %m", path);
 *
 * errno is preserved.  Any thread.  A host older than this header lacks it:
 * the plugin then fails to load with an undefined symbol, never misbehaves.
 */
int blkserv_log_errno(struct blkserv_device *dev, int level, int error, const char *fmt, ...) BLKSERV_PRINTF(4, 5);

#define blkserv_error_errno(dev, error, ...) blkserv_log_errno((dev), BLKSERV_LOG_ERR, (error), __VA_ARGS__)
#define blkserv_warning_errno(dev, error, ...) blkserv_log_errno((dev), BLKSERV_LOG_WARNING, (error), __VA_ARGS__)

/* ------------------------------------------------------------------ */
/* Options.                                                            */
/* ------------------------------------------------------------------ */

/*
 * A plugin declares its options; the daemon turns them into the config
 * schema, validates values against their type before the plugin sees them,
 * and prints them in `blkservd --help-plugin NAME`.  Plugins never link a
 * config library.
 */
enum blkserv_option_type {
	BLKSERV_OPT_STRING = 1,
	BLKSERV_OPT_BOOL, /* true/false, yes/no, on/off, 1/0 */
	BLKSERV_OPT_UINT, /* decimal or 0x hex, fits uint64_t */
	BLKSERV_OPT_SIZE, /* bytes with optional suffix: 512, 4K, 1M, 1G, 1T */
	BLKSERV_OPT_PATH, /* an absolute path */
};

#define BLKSERV_OPTION_REQUIRED (1u << 0)

struct blkserv_option {
	const char *name;
	enum blkserv_option_type type;
	const char *default_value; /* in config syntax; NULL: no default */
	const char *help;          /* one line */
	uint32_t flags;            /* BLKSERV_OPTION_* */
};
/* An option array ends with an entry whose name is NULL. */
#define BLKSERV_OPTION_END                                                                                             \
	{                                                                                                              \
		NULL, 0, NULL, NULL, 0                                                                                 \
	}

/*
 * The allowed values of declared options (the plugin's option_checks
 * array).  The daemon checks them while parsing, so the error names the
 * file, the line and the option, and prints them in --help-plugin.  A
 * separate array, not new fields of struct blkserv_option, so option
 * tables built against older headers keep their layout.
 */
struct blkserv_option_check {
	const char *name;           /* a declared option of the same plugin */
	uint64_t min, max;          /* UINT, SIZE: min..max inclusive (used when max != 0) */
	const char *const *choices; /* STRING: NULL-terminated list of the allowed values */
};
/* An option_checks array ends with an entry whose name is NULL. */
#define BLKSERV_OPTION_CHECK_END                                                                                       \
	{                                                                                                              \
		NULL, 0, 0, NULL                                                                                       \
	}

/*
 * Read a validated option of the plugin's own section.  An option not given
 * in the config reads as its declared default; ret_* are untouched and
 * -ENOENT is returned when there is neither.  -EINVAL: not declared with that
 * type.  Main thread, during open.
 */
int blkserv_config_get_string(const struct blkserv_config *cfg, const char *name, const char **ret);
int blkserv_config_get_bool(const struct blkserv_config *cfg, const char *name, bool *ret);
int blkserv_config_get_uint(const struct blkserv_config *cfg, const char *name, uint64_t *ret);
/* True when the option was written in the config file. */
bool blkserv_config_is_set(const struct blkserv_config *cfg, const char *name);

/* The device a plugin section belongs to, for validate: its name, its
 * configured size (0: not configured) and its block size. */
const char *blkserv_config_device_name(const struct blkserv_config *cfg);
uint64_t blkserv_config_device_size(const struct blkserv_config *cfg);
uint32_t blkserv_config_device_block_size(const struct blkserv_config *cfg);

/*
 * From validate only.  Report what is wrong with @option (NULL: the section
 * as a whole): the host prefixes the file, the line of the option (of the
 * section when the option is not written), the device and the plugin.
 * Returns -EINVAL, for `return blkserv_config_error(...)`.
 */
int blkserv_config_error(const struct blkserv_config *cfg, const char *option, const char *fmt, ...)
	BLKSERV_PRINTF(3, 4);
/*
 * From validate only.  Claim a resource only one device may use: @resource
 * names its kind ("unix socket", "TCP address", "backing file"), @key the
 * resource itself.  When two devices claim the same kind and key, the
 * config is refused, naming both.  A key that starts with '/' is a path,
 * compared after resolving symlinks of what exists and removing "//", "/./"
 * and trailing slashes; a '*' in a key matches any text ("*:10809", a
 * wildcard listener, conflicts with "127.0.0.1:10809").  Returns 0 or
 * -ENOMEM.
 */
int blkserv_config_claim(const struct blkserv_config *cfg, const char *option, const char *resource, const char *key);
/*
 * The same for a resource several devices may use together as long as none
 * claims it exclusively (readers of one file: a writer conflicts with them,
 * they do not with each other).  A path key that exists is compared by
 * identity (st_dev and st_ino; a block device by its device number), so a
 * symlink, ".." or a hard link to it is the same resource, for both kinds
 * of claim.
 */
int blkserv_config_claim_shared(const struct blkserv_config *cfg, const char *option, const char *resource,
				const char *key);

/* Parsers the host uses, exported so plugins parse the same way. */
int blkserv_parse_size(const char *s, uint64_t *ret);
int blkserv_parse_bool(const char *s, bool *ret);
int blkserv_parse_uint(const char *s, uint64_t *ret);

/* ------------------------------------------------------------------ */
/* Capabilities.                                                       */
/* ------------------------------------------------------------------ */

/*
 * What a backend instance honours.  A frontend advertises to the kernel or
 * client exactly these, so a capability is a promise: FLUSH means a completed
 * flush makes every write completed before it durable; FUA means a FUA write
 * is durable when it completes; WRITE_ZEROES means the range reads back as
 * zeros; TRIM may leave any data but never another device's.
 */
#define BLKSERV_CAP_FLUSH (1ull << 0)
#define BLKSERV_CAP_FUA (1ull << 1)
#define BLKSERV_CAP_TRIM (1ull << 2)
#define BLKSERV_CAP_WRITE_ZEROES (1ull << 3)
#define BLKSERV_CAP_ROTATIONAL (1ull << 4)
#define BLKSERV_CAP_READ_ONLY (1ull << 5)
/* Writes are durable when they complete (no volatile cache). */
#define BLKSERV_CAP_WRITE_THROUGH (1ull << 6)

/* ------------------------------------------------------------------ */
/* Requests.                                                           */
/* ------------------------------------------------------------------ */

enum blkserv_op {
	BLKSERV_OP_READ = 0,
	BLKSERV_OP_WRITE = 1,
	BLKSERV_OP_FLUSH = 2,
	BLKSERV_OP_TRIM = 3,
	BLKSERV_OP_WRITE_ZEROES = 4,
	BLKSERV_OP__MAX
};

#define BLKSERV_REQ_FUA (1u << 0)     /* WRITE, WRITE_ZEROES: durable on completion */
#define BLKSERV_REQ_NO_HOLE (1u << 1) /* WRITE_ZEROES: keep the range allocated */
/* READ: the frontend can send the data straight from a file (sendfile or
 * splice into its socket), so the host may answer with a file range
 * instead of filling buf: see map_fd below and the backend's read_map. */
#define BLKSERV_REQ_MAP_OK (1u << 2)
#define BLKSERV_REQ__ALL (BLKSERV_REQ_FUA | BLKSERV_REQ_NO_HOLE | BLKSERV_REQ_MAP_OK)

/* Largest READ/WRITE payload any frontend may pass: 32 MiB (NBD, ublk, dblock all fit). */
#define BLKSERV_MAX_IO_BYTES (32u << 20)

/*
 * One request.  The host allocates a fixed array of them per queue
 * (blkserv_queue_new()), each followed by the backend's private area of
 * request_priv_size bytes: no allocation per request.  The frontend fills
 * op..buf, done and frontend_data, then calls blkserv_submit().
 */
struct blkserv_request {
	uint32_t op;     /* enum blkserv_op */
	uint32_t flags;  /* BLKSERV_REQ_* */
	uint64_t offset; /* bytes */
	uint64_t length; /* bytes; 0 for FLUSH */
	void *buf;       /* READ: filled; WRITE: data; else NULL.  Owned by the frontend. */

	/* Completion: called exactly once on the owning queue's thread with 0
	 * or -errno, possibly before blkserv_submit() returns. */
	void (*done)(struct blkserv_request *req, int result);
	void *frontend_data;

	/* Set by the host; read-only for plugins. */
	struct blkserv_queue *queue;
	uint32_t tag; /* index in the queue's request array */
	uint32_t reserved32;
	uint64_t start_ns;   /* for latency statistics */
	uint64_t host_state; /* host bookkeeping */

	/* Set by the host when a READ with BLKSERV_REQ_MAP_OK completes with
	 * 0: map_fd >= 0 means buf was not touched and the data are the
	 * length bytes at map_offset of map_fd (the backend's file, valid
	 * while the device is open; the frontend must not close it).
	 * map_fd is -1 when the data are in buf. */
	int32_t map_fd;
	uint32_t reserved_map;
	uint64_t map_offset;
};

/* The backend's private area of @req (request_priv_size bytes, zeroed at queue creation). */
void *blkserv_request_priv(struct blkserv_request *req);

/*
 * Frontend → host: validate and start @req.  Out-of-range → -EINVAL (a write
 * past the end → -ENOSPC), an op or flag the backend does not honour →
 * -EOPNOTSUPP, a write to a read-only device → -EPERM, a length over
 * BLKSERV_MAX_IO_BYTES for READ/WRITE → -EINVAL; in every case the backend
 * never sees it and req->done runs with the error.  Owning queue thread.
 */
void blkserv_submit(struct blkserv_request *req);

/* Backend → host: @req finished with 0 or -errno.  Owning queue thread only. */
void blkserv_request_complete(struct blkserv_request *req, int result);

/* Backend → host: the same, from any other thread (posted to the owner). */
void blkserv_request_complete_remote(struct blkserv_request *req, int result);

/* Return value of a backend data callback that will complete later. */
#define BLKSERV_ASYNC 1

/* ------------------------------------------------------------------ */
/* Queues and their io_uring.                                          */
/* ------------------------------------------------------------------ */

/*
 * Events on a queue's ring.  Whoever submits an SQE on a queue's ring points
 * its user_data at a struct blkserv_event (blkserv_sqe_set_event()); when the
 * CQE arrives, the queue thread calls ev->fn with the CQE's res and flags.
 * Frontends (ublk's URING_CMDs, a socket poll) and backends (the file
 * backend's reads and writes) share the ring this way.
 */
struct blkserv_event {
	void (*fn)(struct blkserv_event *ev, int32_t res, uint32_t cqe_flags);
};

/*
 * Create a queue for @dev on the calling thread, which becomes its owner:
 * an io_uring of at least 2*@depth entries, @depth requests, and the
 * backend's queue_open().  Sets PR_SET_IO_FLUSHER on the thread (logged once
 * when not permitted).  @ring_flags: extra IORING_SETUP_* flags (0 usually).
 */
int blkserv_queue_new(struct blkserv_device *dev, uint32_t depth, uint32_t ring_flags, struct blkserv_queue **ret);
/* Close the backend's queue state and free the queue.  Owning thread; no
 * request in flight (blkserv_queue_inflight() == 0). */
void blkserv_queue_free(struct blkserv_queue *q);

struct blkserv_request *blkserv_queue_request(struct blkserv_queue *q, uint32_t tag);
uint32_t blkserv_queue_depth(struct blkserv_queue *q);
uint32_t blkserv_queue_inflight(struct blkserv_queue *q);
struct blkserv_device *blkserv_queue_device(struct blkserv_queue *q);
/* The backend's per-queue state made by queue_open (NULL if none). */
void *blkserv_queue_backend_data(struct blkserv_queue *q);
/* The io_uring file descriptor (for registering files, or MSG_RING). */
int blkserv_queue_ring_fd(struct blkserv_queue *q);

/* A free SQE on @q's ring, zeroed; submits pending SQEs if the ring is full.
 * NULL only if the ring is still full (the caller then completes with
 * -EAGAIN or retries after processing).  Owning thread. */
struct io_uring_sqe *blkserv_queue_get_sqe(struct blkserv_queue *q);
void blkserv_sqe_set_event(struct io_uring_sqe *sqe, struct blkserv_event *ev);

/*
 * Submit pending SQEs, wait until at least @min_events CQEs or remote
 * completions arrived (0: do not wait), and dispatch them.  @timeout_ms < 0:
 * no limit.  Returns the number dispatched or -errno (-EINTR, -ETIME).
 * Frontends with their own loop (NBD connections, dblock threads) call this;
 * ublk calls it as its main loop.  Owning thread.
 */
int blkserv_queue_process(struct blkserv_queue *q, unsigned min_events, int timeout_ms);

/* Register @fd as fixed file slot 0 of the queue's ring (ublk's /dev/ublkcN). */
int blkserv_queue_register_fd(struct blkserv_queue *q, int fd);

/* Record that the queue thread is alive (the watchdog counts this). */
void blkserv_queue_heartbeat(struct blkserv_queue *q);

/* ------------------------------------------------------------------ */
/* Devices (host functions for both kinds).                            */
/* ------------------------------------------------------------------ */

const char *blkserv_device_name(struct blkserv_device *dev);
uint64_t blkserv_device_size(struct blkserv_device *dev);
uint32_t blkserv_device_block_size(struct blkserv_device *dev);
/* Backend capabilities, already masked by the device's read_only option. */
uint64_t blkserv_device_caps(struct blkserv_device *dev);
/*
 * Backend, from open: the data of this instance is new (a ramdisk whose
 * memfd was not handed back by the previous daemon), so whatever a kernel
 * device left by that daemon holds in its page cache or file system no
 * longer matches.  A frontend must then not resume such a device
 * (blkserv_device_data_fresh): it removes it and starts a new one.
 * Backends whose data lives in a file, log or cluster never call it.
 */
void blkserv_device_set_data_fresh(struct blkserv_device *dev);
bool blkserv_device_data_fresh(struct blkserv_device *dev);
/* Frontend: the kernel device or address the device is served as, for
 * status and logs ("/dev/nbd3", "unix:/run/blkservd/a.sock"). */
void blkserv_device_set_kernel_name(struct blkserv_device *dev, const char *name);
/*
 * Frontend: the kernel side cannot send FLUSH, so every write must be
 * durable when acknowledged.  The host then turns each WRITE and
 * WRITE_ZEROES into a FUA one (emulated by a following flush where the
 * backend has FLUSH but not FUA) and logs it.  Call before the first request.
 */
int blkserv_device_require_write_through(struct blkserv_device *dev);

/* The daemon's runtime directory (/run/blkservd by default): a frontend keeps
 * its recovery state there, in files named after the device. */
const char *blkserv_runtime_dir(void);

/*
 * File descriptors that survive a daemon restart (systemd's fd store when
 * running under systemd, FDSTORE=1; otherwise nothing survives).  @key is
 * per device and plugin ("memfd").  _store dups @fd; _take returns an fd the
 * previous daemon stored (the caller owns it) or -ENOENT.  Main thread.
 */
int blkserv_fd_store(struct blkserv_device *dev, const char *key, int fd);
int blkserv_fd_take(struct blkserv_device *dev, const char *key);
void blkserv_fd_forget(struct blkserv_device *dev, const char *key);

/*
 * The daemon-wide budget of request payload memory (request_memory in
 * blkservd.conf), shared by the frontends that serve untrusted peers.
 * _charge reserves @bytes before a payload buffer is allocated: false when
 * they do not fit (the caller waits, e.g. stops reading its peer), unless
 * @force (the caller holds nothing, and must be let on).  _release gives
 * back what a freed buffer was charged.  _pressure counts refused charges:
 * a holder of idle cached buffers frees them when it changes.  Any thread.
 */
bool blkserv_payload_charge(uint64_t bytes, bool force);
void blkserv_payload_release(uint64_t bytes);
uint64_t blkserv_payload_pressure(void);
/* The bytes charged now (for tests and counters). */
uint64_t blkserv_payload_used(void);

/* ------------------------------------------------------------------ */
/* Backends.                                                           */
/* ------------------------------------------------------------------ */

/*
 * Data callbacks: read, write, flush, trim, write_zeroes.  Called on the
 * owning queue's thread with a request the host has already validated.
 * Return 0 or -errno when the request finished during the call, or
 * BLKSERV_ASYNC when the backend will call blkserv_request_complete() (or
 * _remote) later.  @qdata is what queue_open made (the instance handle when
 * there is no queue_open).  A backend must tolerate the same write applied
 * twice: after a restart the kernel may resend it.
 */
typedef int (*blkserv_data_fn)(void *qdata, struct blkserv_request *req);

struct blkserv_backend {
	uint64_t struct_size; /* set by BLKSERV_REGISTER_BACKEND */
	uint32_t abi_version; /* set by BLKSERV_REGISTER_BACKEND */
	uint32_t reserved0;
	const char *name;
	const char *description;              /* one line, for --list-plugins */
	const struct blkserv_option *options; /* NULL or BLKSERV_OPTION_END-terminated */
	uint32_t request_priv_size;           /* bytes of per-request state */
	uint32_t reserved1;

	/* Required.  Main thread.  Create an instance for @dev from @cfg.
	 * @size is the device's configured size (0: not configured; the
	 * backend then decides, e.g. from its file).  Logs its own error
	 * and returns -errno. */
	int (*open)(struct blkserv_device *dev, const struct blkserv_config *cfg, uint64_t size, void **ret_handle);
	/* Required.  Main thread.  Every queue is closed; release everything. */
	void (*close)(void *handle);
	/* Required.  Main thread, after open.  Device size in bytes. */
	int (*get_size)(void *handle, uint64_t *ret_size);
	/* Optional.  Main thread, after open.  BLKSERV_CAP_* this instance
	 * honours.  Default: FLUSH/TRIM/WRITE_ZEROES for each callback present
	 * (and FUA if flush is present, emulated by a write then a flush). */
	int (*get_caps)(void *handle, uint64_t *ret_caps);

	/* Optional.  The owning queue thread, from blkserv_queue_new().
	 * Per-queue state (submit on blkserv_queue_get_sqe(q)). */
	int (*queue_open)(void *handle, struct blkserv_queue *q, void **ret_qdata);
	/* Optional.  The owning queue thread, no request in flight. */
	void (*queue_close)(void *qdata);

	blkserv_data_fn read;         /* Required. */
	blkserv_data_fn write;        /* Required unless the instance is read-only. */
	blkserv_data_fn flush;        /* Optional. */
	blkserv_data_fn trim;         /* Optional. */
	blkserv_data_fn write_zeroes; /* Optional. */

	/* Optional.  Main thread.  Make everything written so far durable;
	 * called at a clean stop after the last queue closed.  */
	int (*sync)(void *handle);
	/* Optional.  Any thread.  Fill @buf with "key=value\n" lines of
	 * backend counters (blkservctl stats). */
	int (*get_stats)(void *handle, char *buf, size_t len);
	/* Optional.  Main thread.  Keep state for a daemon restart (e.g. put a
	 * memfd in the fd store) instead of releasing it at close. */
	int (*preserve)(void *handle);
	/* Optional.  The owning queue thread.  When a READ's bytes lie
	 * unchanged in a file (a ramdisk's memfd), name it: *ret_fd (owned by
	 * the backend, open until close) and *ret_offset, so a frontend that
	 * asked with BLKSERV_REQ_MAP_OK sends them without a copy.  Return 0,
	 * or -EOPNOTSUPP to have the request served by read.  The host calls
	 * it only for a validated READ with BLKSERV_REQ_MAP_OK and never on a
	 * device with fault injection. */
	int (*read_map)(void *qdata, const struct blkserv_request *req, int *ret_fd, uint64_t *ret_offset);
	/* Optional.  Ranges and choices of options, BLKSERV_OPTION_CHECK_END-terminated. */
	const struct blkserv_option_check *option_checks;
	/* Optional.  Main thread, at --check-config, start and reload, before
	 * anything is opened.  Check the combination of @cfg's options (and
	 * the device's size, blkserv_config_device_*) without opening,
	 * creating or locking anything; report each problem with
	 * blkserv_config_error() and claim exclusive resources with
	 * blkserv_config_claim().  Ranges and choices of option_checks are
	 * already checked.  0 or -errno. */
	int (*validate)(const struct blkserv_config *cfg);
	/* Optional.  A thread of the host's own (neither the main thread nor
	 * a queue thread), while the queues go on serving I/O: read and verify
	 * everything the instance stores (blkservctl scrub).  Report progress
	 * through sc->progress() at least every few MiB; when it returns
	 * false, stop and return -ECANCELED.  Log each bad item with where it
	 * is, and a summary.  Return 0 when everything verified, -EBADMSG when
	 * corruption was found (counted in the errors passed to progress), or
	 * another -errno when the scrub could not be completed.  Never blocks
	 * the queues for long (chunks, or reads of its own). */
	int (*scrub)(void *handle, struct blkserv_scrub *sc);
	/* Which of the queue-thread callbacks (queue_open, queue_close, the
	 * data callbacks, read_map) may run at the same time on different
	 * queues' threads: BLKSERV_THREAD_MODEL_*.  0 (a plugin older than
	 * the field): PARALLEL. */
	uint32_t thread_model;
	/* New fields go here, at the end. */
};

/* Backend thread models (struct blkserv_backend.thread_model). */
enum blkserv_thread_model {
	/* Each queue's callbacks run on its own thread, the queues' in
	 * parallel: the backend keeps per-queue state apart and locks what
	 * its queues share.  Every in-tree backend. */
	BLKSERV_THREAD_MODEL_PARALLEL = 0,
	/* The host runs at most one of those callbacks at a time for the
	 * device (a lock around each call), whatever the frontend's queues
	 * and threads: for a backend over a library that is not thread-safe.
	 * Asynchronous completions are the backend's own business. */
	BLKSERV_THREAD_MODEL_SERIALIZE = 1,
};

/* The host's side of a scrub (see the scrub callback). */
struct blkserv_scrub {
	uint64_t struct_size; /* sizeof, set by the host */
	/* @done_bytes of @total_bytes (an estimate; may grow) are verified,
	 * @errors bad items found so far.  false: stop now (the device is
	 * stopping or the scrub was cancelled). */
	bool (*progress)(struct blkserv_scrub *sc, uint64_t done_bytes, uint64_t total_bytes, uint64_t errors);
	void *host_data;
};

/* ------------------------------------------------------------------ */
/* Frontends.                                                          */
/* ------------------------------------------------------------------ */

/* Flags for frontend stop. */
#define BLKSERV_STOP_KEEP_DEVICE (1u << 0) /* daemon restart: leave the kernel device for recovery */

struct blkserv_frontend {
	uint64_t struct_size; /* set by BLKSERV_REGISTER_FRONTEND */
	uint32_t abi_version; /* set by BLKSERV_REGISTER_FRONTEND */
	uint32_t reserved0;
	const char *name;
	const char *description;
	const struct blkserv_option *options;

	/* Required.  Main thread.  Validate @cfg against the device
	 * (blkserv_device_size/caps are valid) and allocate; no kernel object
	 * is created yet. */
	int (*open)(struct blkserv_device *dev, const struct blkserv_config *cfg, void **ret_handle);
	/* Required.  Main thread.  Create the kernel device (or listening
	 * socket), start the queue threads and return when the device is live.
	 * On failure nothing is left behind. */
	int (*start)(void *handle);
	/* Required.  Main thread.  Stop serving: every queue thread has exited
	 * and no request is in flight when it returns.  Without
	 * BLKSERV_STOP_KEEP_DEVICE the kernel device is removed. */
	void (*stop)(void *handle, uint32_t flags);
	/* Required.  Main thread.  Free what open allocated. */
	void (*close)(void *handle);
	/* Optional.  Any thread.  0 if every queue thread is alive and making
	 * progress or idle; -errno otherwise (the watchdog stops being fed). */
	int (*check_health)(void *handle);
	/* Optional.  Main thread.  0 if the kernel device is not open by anyone
	 * (a reload may remove it), -EBUSY if it is. */
	int (*check_idle)(void *handle);
	/* Optional.  As in struct blkserv_backend. */
	const struct blkserv_option_check *option_checks;
	/* Optional.  As in struct blkserv_backend. */
	int (*validate)(const struct blkserv_config *cfg);
	/* New fields go here, at the end. */
};

#define BLKSERV_BACKEND_INIT_SYMBOL "blkserv_backend_init"
#define BLKSERV_FRONTEND_INIT_SYMBOL "blkserv_frontend_init"

#define BLKSERV_REGISTER_BACKEND(plugin)                                                                               \
	BLKSERV_PUBLIC const struct blkserv_backend *blkserv_backend_init(void);                                       \
	BLKSERV_PUBLIC const struct blkserv_backend *blkserv_backend_init(void)                                        \
	{                                                                                                              \
		(plugin).struct_size = sizeof(plugin);                                                                 \
		(plugin).abi_version = BLKSERV_ABI_VERSION;                                                            \
		return &(plugin);                                                                                      \
	}

#define BLKSERV_REGISTER_FRONTEND(plugin)                                                                              \
	BLKSERV_PUBLIC const struct blkserv_frontend *blkserv_frontend_init(void);                                     \
	BLKSERV_PUBLIC const struct blkserv_frontend *blkserv_frontend_init(void)                                      \
	{                                                                                                              \
		(plugin).struct_size = sizeof(plugin);                                                                 \
		(plugin).abi_version = BLKSERV_ABI_VERSION;                                                            \
		return &(plugin);                                                                                      \
	}

#ifdef __cplusplus
}
#endif

#endif /* BLKSERV_PLUGIN_H */

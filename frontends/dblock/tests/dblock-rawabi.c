/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dblock-rawabi: a program written for the *original* dblock module, used in
 * the VM to prove that our module is binary compatible.  It deliberately
 * does not include dblock-abi.h: the structs below are declared as the
 * original dblockshare.h declares them (natural padding, raw ioctl numbers).
 *
 *   dblock-rawabi sizes                      struct sizes of the original ABI
 *   dblock-rawabi limits                     create/destroy validation and error codes
 *   dblock-rawabi create NAME BLOCKS TIMEOUT create, print the handle, exit
 *   dblock-rawabi destroy NAME [force]       destroy by name
 *   dblock-rawabi serve NAME BLOCKS THREADS  create and serve from memory until destroyed
 *   dblock-rawabi signal NAME                a signal interrupts a blocked server (EINTR, op 40),
 *                                            and is delivered, not swallowed
 *   dblock-rawabi wake NAME THREADS          destroy wakes every blocked server (8086), then ENOENT
 *   dblock-rawabi reattach NAME              a server that dies with a read unanswered: a new
 *                                            server (the -ctl node opened again) gets the read
 *                                            and it completes; then the DETACH extension (ABI 2)
 *                                            makes a blocked server leave and the device stays
 * Exit status 0 when every check passed.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

/* ---- the original ABI, as dblockshare.h has it ----------------------------- */

typedef uint32_t u32;
typedef uint64_t u64;
typedef int32_t s32;

#define MAX_DEVICE_NAME_LENGTH 31
#define MAX_BIO_SEGMENTS_PER_REQUEST 256
#define MAX_BIO_SEGMENTS_BUFFER_SIZE_PER_REQUEST (MAX_BIO_SEGMENTS_PER_REQUEST * 4096)

#define IOCTL_CONTROL_PING 12
#define IOCTL_CONTROL_STATUS 20
#define IOCTL_CONTROL_CREATE_DEVICE 21
#define IOCTL_CONTROL_DESTROY_DEVICE_BY_ID 22
#define IOCTL_CONTROL_DESTROY_DEVICE_BY_NAME 23
#define IOCTL_CONTROL_DESTROY_ALL_DEVICES 25
#define IOCTL_CONTROL_GET_HANDLE_ID_BY_NAME 26
#define IOCTL_DEVICE_PING 53
#define IOCTL_DEVICE_STATUS 55
#define IOCTL_DEVICE_OPERATION 58

#define DEVICE_OPERATION_NO_RESPONSE_BLOCK_FOR_REQUEST 30
#define DEVICE_OPERATION_READ_RESPONSE 31
#define DEVICE_OPERATION_WRITE_RESPONSE 37
#define DEVICE_OPERATION_KERNEL_BLOCK_FOR_REQUEST 40
#define DEVICE_OPERATION_KERNEL_READ_REQUEST 41
#define DEVICE_OPERATION_KERNEL_WRITE_REQUEST 42
#define DEVICE_OPERATION_KERNEL_USERSPACE_EXIT 8086

typedef struct {
	unsigned char device_name[MAX_DEVICE_NAME_LENGTH + 1];
	u32 kernel_block_size;
	u64 number_of_blocks;
	u32 device_timeout_seconds;
	u32 max_segments_per_request;
	u32 handle_id;
	s32 error;
} control_block_device_create_params;

typedef struct {
	u32 handle_id;
	s32 error;
	u32 force;
} control_block_device_destroy_by_id_params;

typedef struct {
	unsigned char device_name[MAX_DEVICE_NAME_LENGTH + 1];
	s32 error;
	u32 force;
} control_block_device_destroy_by_name_params;

typedef struct {
	u32 force;
} control_block_device_destroy_all_params;

typedef struct {
	unsigned char device_name[MAX_DEVICE_NAME_LENGTH + 1];
	u32 handle_id;
	s32 error;
} control_block_device_get_handle_id_by_name_params;

typedef union {
	control_block_device_create_params create_params;
	control_block_device_destroy_by_id_params destroy_params_by_id;
	control_block_device_destroy_by_name_params destroy_params_by_name;
	control_block_device_destroy_all_params destroy_params_all;
	control_block_device_get_handle_id_by_name_params get_handle_id_params_by_name;
} control_operation;

typedef struct {
	u64 total_length_of_all_bio_segments;
	u32 number_of_segments;
} request_param_t;

typedef struct {
	u64 response_total_length;
} response_param_t;

typedef union {
	request_param_t read_request;
	response_param_t read_response;
	request_param_t write_request;
	response_param_t write_response;
} dblock_packet;

typedef struct {
	u32 operation;
	u64 size;
	u32 signal_number;
} dblock_header;

typedef struct {
	u64 start;
	u64 length;
} dblock_bio_segment_metadata;

typedef struct {
	u32 handle_id;
	dblock_header header;
	dblock_packet packet;
	dblock_bio_segment_metadata metadata[MAX_BIO_SEGMENTS_PER_REQUEST];
	s32 error;
	u32 operation_id;
	unsigned char userspacedatabuffer[];
} dblock_operation;

/* ---- helpers ------------------------------------------------------------- */

static int failures;

#define CHECK(cond, ...)                                                                                               \
	do {                                                                                                           \
		if (cond) {                                                                                            \
			printf("ok: " __VA_ARGS__);                                                                    \
		} else {                                                                                               \
			printf("FAIL: " __VA_ARGS__);                                                                  \
			failures++;                                                                                    \
		}                                                                                                      \
		printf("\n");                                                                                          \
	} while (0)

_Noreturn static void die(const char *what)
{
	perror(what);
	exit(2);
}

static int open_control(void)
{
	int fd = open("/dev/dblockctl", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		die("/dev/dblockctl");
	return fd;
}

static void set_name(unsigned char *dst, const char *name)
{
	memset(dst, 0, MAX_DEVICE_NAME_LENGTH + 1);
	strncpy((char *)dst, name, MAX_DEVICE_NAME_LENGTH);
}

/* Create @name; returns the ioctl's -errno (and checks params.error agrees). */
static int create(int ctl, const char *name, u32 bs, u64 blocks, u32 timeout, u32 *ret_handle)
{
	control_operation op;
	int r;

	memset(&op, 0, sizeof(op));
	set_name(op.create_params.device_name, name);
	op.create_params.kernel_block_size = bs;
	op.create_params.number_of_blocks = blocks;
	op.create_params.device_timeout_seconds = timeout;
	op.create_params.max_segments_per_request = 0;
	r = ioctl(ctl, IOCTL_CONTROL_CREATE_DEVICE, &op) < 0 ? -errno : 0;
	if (op.create_params.error != r)
		printf("FAIL: create %s: ioctl says %d, params.error says %d\n", name, r, op.create_params.error),
			failures++;
	if (ret_handle)
		*ret_handle = op.create_params.handle_id;
	return r;
}

static int destroy_by_name(int ctl, const char *name, u32 force)
{
	control_operation op;

	memset(&op, 0, sizeof(op));
	set_name(op.destroy_params_by_name.device_name, name);
	op.destroy_params_by_name.force = force;
	return ioctl(ctl, IOCTL_CONTROL_DESTROY_DEVICE_BY_NAME, &op) < 0 ? -errno : 0;
}

static int destroy_by_id(int ctl, u32 handle, u32 force)
{
	control_operation op;

	memset(&op, 0, sizeof(op));
	op.destroy_params_by_id.handle_id = handle;
	op.destroy_params_by_id.force = force;
	return ioctl(ctl, IOCTL_CONTROL_DESTROY_DEVICE_BY_ID, &op) < 0 ? -errno : 0;
}

static int handle_by_name(int ctl, const char *name, u32 *ret)
{
	control_operation op;

	memset(&op, 0, sizeof(op));
	set_name(op.get_handle_id_params_by_name.device_name, name);
	if (ioctl(ctl, IOCTL_CONTROL_GET_HANDLE_ID_BY_NAME, &op) < 0)
		return -errno;
	*ret = op.get_handle_id_params_by_name.handle_id;
	return 0;
}

static int open_request_node(const char *name)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/dev/%s-ctl", name);
	for (int i = 0; i < 100; i++) {
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd >= 0 || errno != ENOENT)
			break;
		usleep(50000);
	}
	if (fd < 0)
		die(path);
	return fd;
}

static dblock_operation *alloc_op(void)
{
	dblock_operation *op = aligned_alloc(4096, sizeof(*op) + MAX_BIO_SEGMENTS_BUFFER_SIZE_PER_REQUEST + 4096);

	if (!op)
		die("malloc");
	memset(op, 0, sizeof(*op));
	return op;
}

/* ---- sizes and limits ------------------------------------------------------ */

static int cmd_sizes(void)
{
	CHECK(sizeof(dblock_operation) == 4152, "sizeof(dblock_operation) = %zu", sizeof(dblock_operation));
	CHECK(sizeof(control_operation) == 64, "sizeof(control_operation) = %zu", sizeof(control_operation));
	CHECK(offsetof(dblock_operation, error) == 4144, "offsetof(error) = %zu", offsetof(dblock_operation, error));
	return failures ? 1 : 0;
}

static void check_create_fails(int ctl, const char *what, const char *name, u32 bs, u64 blocks, u32 timeout, int want)
{
	int r = create(ctl, name, bs, blocks, timeout, NULL);

	CHECK(r == want, "create with %s fails with %s (got %s)", what, strerror(-want), strerror(-r));
	if (r == 0)
		destroy_by_name(ctl, name, 1);
}

static void check_many_devices(int ctl)
{
	char name[32];
	int made = 0, r = 0;

	/* 50 at most (a test VM has none of ours yet). */
	for (; made < 50; made++) {
		snprintf(name, sizeof(name), "lim%d", made);
		r = create(ctl, name, 4096, 1024, 30, NULL);
		if (r < 0)
			break;
	}
	CHECK(made == 50, "50 devices can be created (made %d, last error %s)", made, strerror(-r));
	r = create(ctl, "lim50", 4096, 1024, 30, NULL);
	CHECK(r == -EINVAL, "the 51st device fails with EINVAL (got %s)", strerror(-r));
	control_operation op;
	memset(&op, 0, sizeof(op));
	op.destroy_params_all.force = 1;
	r = ioctl(ctl, IOCTL_CONTROL_DESTROY_ALL_DEVICES, &op) < 0 ? -errno : 0;
	CHECK(r == 0, "destroy all devices (got %s)", strerror(-r));
	CHECK(access("/dev/lim0", F_OK) < 0, "/dev/lim0 is gone");
}

static void check_requests_on_bad_handle(const char *name, u32 handle)
{
	dblock_operation *op = alloc_op();
	int fd = open_request_node(name);
	int r;

	CHECK(ioctl(fd, IOCTL_DEVICE_PING, op) == 0, "device ping");
	r = ioctl(fd, IOCTL_DEVICE_STATUS, op) < 0 ? errno : 0;
	CHECK(r == ENODATA, "device status fails with ENODATA (got %s)", strerror(r));
	op->handle_id = handle + 1000;
	op->header.operation = DEVICE_OPERATION_NO_RESPONSE_BLOCK_FOR_REQUEST;
	r = ioctl(fd, IOCTL_DEVICE_OPERATION, op) < 0 ? errno : 0;
	CHECK(r == ENOENT, "operation with an unknown handle_id fails with ENOENT (got %s)", strerror(r));
	op->handle_id = handle;
	op->header.operation = 12345;
	r = ioctl(fd, IOCTL_DEVICE_OPERATION, op) < 0 ? errno : 0;
	CHECK(r == EINVAL, "an unknown operation code fails with EINVAL (got %s)", strerror(r));
	close(fd);
	free(op);
}

static int cmd_limits(void)
{
	int ctl = open_control();
	u32 handle = 0, h2 = 0;
	int r;

	CHECK(ioctl(ctl, IOCTL_CONTROL_PING, NULL) == 0, "control ping");
	r = ioctl(ctl, IOCTL_CONTROL_STATUS, NULL) < 0 ? errno : 0;
	CHECK(r == ENODATA, "control status fails with ENODATA (got %s)", strerror(r));
	r = ioctl(ctl, 99, NULL) < 0 ? errno : 0;
	CHECK(r == EINVAL, "an unknown control ioctl fails with EINVAL (got %s)", strerror(r));
	check_create_fails(ctl, "block size 512", "limA", 512, 1024, 30, -EINVAL);
	check_create_fails(ctl, "block size 8192", "limA", 8192, 1024, 30, -EINVAL);
	check_create_fails(ctl, "1023 blocks", "limA", 4096, 1023, 30, -ERANGE);
	check_create_fails(ctl, "3221225473 blocks", "limA", 4096, 3221225473ull, 30, -ERANGE);
	check_create_fails(ctl, "timeout 0", "limA", 4096, 1024, 0, -ERANGE);
	check_create_fails(ctl, "timeout 1201", "limA", 4096, 1024, 1201, -ERANGE);
	check_create_fails(ctl, "an empty name", "", 4096, 1024, 30, -EINVAL);
	r = create(ctl, "limA", 4096, 1024, 1200, &handle);
	CHECK(r == 0 && handle != 0, "create limA (12 TiB limits accepted at the edges) -> handle %u", handle);
	CHECK(access("/dev/limA", F_OK) == 0 && access("/dev/limA-ctl", F_OK) == 0,
	      "/dev/limA and /dev/limA-ctl exist");
	check_create_fails(ctl, "a name in use", "limA", 4096, 1024, 30, -EEXIST);
	r = handle_by_name(ctl, "limA", &h2);
	CHECK(r == 0 && h2 == handle, "get_handle_id_by_name limA -> %u", h2);
	r = handle_by_name(ctl, "nosuch", &h2);
	CHECK(r == -ENOENT, "get_handle_id_by_name of an unknown name fails with ENOENT (got %s)", strerror(-r));
	check_requests_on_bad_handle("limA", handle);
	r = destroy_by_id(ctl, handle + 1000, 0);
	CHECK(r == -ENOENT, "destroy an unknown handle fails with ENOENT (got %s)", strerror(-r));
	r = destroy_by_id(ctl, handle, 0);
	CHECK(r == 0, "destroy limA by id (got %s)", strerror(-r));
	r = destroy_by_name(ctl, "limA", 0);
	CHECK(r == -ENOENT, "destroy it again by name fails with ENOENT (got %s)", strerror(-r));
	check_many_devices(ctl);
	close(ctl);
	return failures ? 1 : 0;
}

static int cmd_create(const char *name, u64 blocks, u32 timeout)
{
	int ctl = open_control();
	u32 handle = 0;
	int r = create(ctl, name, 4096, blocks, timeout, &handle);

	if (r < 0) {
		fprintf(stderr, "create %s: %s\n", name, strerror(-r));
		return 1;
	}
	printf("%u\n", handle);
	return 0;
}

static int cmd_destroy(const char *name, u32 force)
{
	int ctl = open_control();
	int r = destroy_by_name(ctl, name, force);

	if (r < 0) {
		fprintf(stderr, "destroy %s: %s\n", name, strerror(-r));
		return 1;
	}
	return 0;
}

/* ---- serving, the original way --------------------------------------------- */

struct server {
	const char *name;
	u32 handle;
	unsigned char *disk;
	u64 size;
	int ended; /* 8086 or ENOENT */
	pthread_t thread;
};

/* Serve one request in @op in place; returns 0, or -1 on a protocol error. */
static int serve_one(struct server *s, dblock_operation *op)
{
	u32 n = op->packet.read_request.number_of_segments;
	u64 start = op->metadata[0].start, len = 0;

	for (u32 i = 0; i < n; i++) {
		if (op->metadata[i].start != start + len)
			return -1; /* segments must be contiguous */
		len += op->metadata[i].length;
	}
	if (n == 0 || len != op->packet.read_request.total_length_of_all_bio_segments || start + len > s->size)
		return -1;
	op->error = 0;
	if (op->header.operation == DEVICE_OPERATION_KERNEL_READ_REQUEST) {
		memcpy(op->userspacedatabuffer, s->disk + start, len);
		op->packet.read_response.response_total_length = len;
		op->header.operation = DEVICE_OPERATION_READ_RESPONSE;
	} else {
		memcpy(s->disk + start, op->userspacedatabuffer, len);
		op->packet.write_response.response_total_length = len;
		op->header.operation = DEVICE_OPERATION_WRITE_RESPONSE;
	}
	return 0;
}

static void *server_thread(void *arg)
{
	struct server *s = arg;
	dblock_operation *op = alloc_op();
	int fd = open_request_node(s->name);

	op->header.operation = DEVICE_OPERATION_NO_RESPONSE_BLOCK_FOR_REQUEST;
	for (;;) {
		op->handle_id = s->handle;
		if (ioctl(fd, IOCTL_DEVICE_OPERATION, op) < 0) {
			if (errno == EINTR) {
				op->header.operation = DEVICE_OPERATION_NO_RESPONSE_BLOCK_FOR_REQUEST;
				continue;
			}
			s->ended = errno == ENOENT;
			if (errno != ENOENT)
				perror("DEVICE_OPERATION");
			break;
		}
		if (op->header.operation == DEVICE_OPERATION_KERNEL_USERSPACE_EXIT) {
			s->ended = 1;
			break;
		}
		if (op->header.operation == DEVICE_OPERATION_KERNEL_BLOCK_FOR_REQUEST) {
			op->header.operation = DEVICE_OPERATION_NO_RESPONSE_BLOCK_FOR_REQUEST;
			continue;
		}
		if (serve_one(s, op) < 0) {
			fprintf(stderr, "bad request: op %u, %u segments\n", op->header.operation,
				op->packet.read_request.number_of_segments);
			op->error = -EIO;
			op->header.operation = op->header.operation == DEVICE_OPERATION_KERNEL_READ_REQUEST
						       ? DEVICE_OPERATION_READ_RESPONSE
						       : DEVICE_OPERATION_WRITE_RESPONSE;
		}
	}
	close(fd);
	free(op);
	return NULL;
}

static int cmd_serve(const char *name, u64 blocks, int nthreads)
{
	int ctl = open_control();
	struct server *s = calloc((size_t)nthreads, sizeof(*s));
	unsigned char *disk = calloc(blocks, 4096);
	u32 handle;
	int r, ended = 0;

	if (!s || !disk)
		die("calloc");
	r = create(ctl, name, 4096, blocks, 10, &handle);
	if (r < 0) {
		fprintf(stderr, "create %s: %s\n", name, strerror(-r));
		return 1;
	}
	for (int i = 0; i < nthreads; i++) {
		s[i] = (struct server){ .name = name, .handle = handle, .disk = disk, .size = blocks * 4096 };
		pthread_create(&s[i].thread, NULL, server_thread, &s[i]);
	}
	printf("serving /dev/%s (handle %u) with %d threads\n", name, handle, nthreads);
	fflush(stdout);
	for (int i = 0; i < nthreads; i++) {
		pthread_join(s[i].thread, NULL);
		ended += s[i].ended;
	}
	printf("%d of %d server threads ended cleanly\n", ended, nthreads);
	return ended == nthreads ? 0 : 1;
}

/* ---- signals and destroy ----------------------------------------------------- */

static volatile sig_atomic_t usr1_delivered;

static void on_usr1(int sig)
{
	usr1_delivered++;
}

struct blocked {
	const char *name;
	u32 handle;
	int rc, err;
	u32 operation, signal_number;
	pthread_t thread;
};

static void *block_once(void *arg)
{
	struct blocked *b = arg;
	dblock_operation *op = alloc_op();
	int fd = open_request_node(b->name);

	op->handle_id = b->handle;
	op->header.operation = DEVICE_OPERATION_NO_RESPONSE_BLOCK_FOR_REQUEST;
	b->rc = ioctl(fd, IOCTL_DEVICE_OPERATION, op);
	b->err = errno;
	b->operation = op->header.operation;
	b->signal_number = op->header.signal_number;
	if (b->rc == 0 && b->operation == DEVICE_OPERATION_KERNEL_USERSPACE_EXIT) {
		op->handle_id = b->handle;
		op->header.operation = DEVICE_OPERATION_NO_RESPONSE_BLOCK_FOR_REQUEST;
		if (ioctl(fd, IOCTL_DEVICE_OPERATION, op) < 0)
			b->err = errno; /* after 8086: ENOENT */
	}
	close(fd);
	free(op);
	return NULL;
}

static u32 handle_or_die(const char *name)
{
	int ctl = open_control();
	u32 handle = 0;

	if (handle_by_name(ctl, name, &handle) < 0)
		die(name);
	close(ctl);
	return handle;
}

static int servers_waiting(const char *name)
{
	char path[96];
	FILE *f;
	int n = -1;

	snprintf(path, sizeof(path), "/sys/block/%s/dblock/servers", name);
	f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%d", &n) != 1)
			n = -1;
		fclose(f);
	}
	return n;
}

/* Wait (5 s at most) until @n server threads are blocked in the kernel
 * waiting for a request; the number seen. */
static int wait_servers(const char *name, int n)
{
	int waiting = -1;

	for (int i = 0; i < 100 && (waiting = servers_waiting(name)) < n; i++)
		usleep(50000);
	return waiting;
}

static int cmd_signal(const char *name)
{
	struct blocked b = { .name = name, .handle = handle_or_die(name) };
	struct sigaction sa = { .sa_handler = on_usr1 };
	int waiting;

	sigaction(SIGUSR1, &sa, NULL);
	pthread_create(&b.thread, NULL, block_once, &b);
	waiting = wait_servers(name, 1);
	CHECK(waiting == 1, "the thread is blocked for a request before the signal (sysfs says %d)", waiting);
	pthread_kill(b.thread, SIGUSR1);
	pthread_join(b.thread, NULL);
	CHECK(b.rc < 0 && b.err == EINTR, "a blocked DEVICE_OPERATION fails with EINTR (rc %d, %s)", b.rc,
	      strerror(b.err));
	CHECK(b.operation == DEVICE_OPERATION_KERNEL_BLOCK_FOR_REQUEST, "the op says 40 (got %u)", b.operation);
	CHECK(b.signal_number == SIGUSR1, "signal_number is SIGUSR1 (got %u)", b.signal_number);
	CHECK(usr1_delivered == 1, "the signal was delivered to the handler, not swallowed (%d)", (int)usr1_delivered);
	return failures ? 1 : 0;
}

static int cmd_wake(const char *name, int nthreads)
{
	struct blocked *b = calloc((size_t)nthreads, sizeof(*b));
	u32 handle = handle_or_die(name);
	int ctl = open_control(), waiting = 0, r;
	struct timespec t0, t1;

	for (int i = 0; i < nthreads; i++) {
		b[i] = (struct blocked){ .name = name, .handle = handle };
		pthread_create(&b[i].thread, NULL, block_once, &b[i]);
	}
	waiting = wait_servers(name, nthreads);
	CHECK(waiting == nthreads, "%d server threads are blocked (sysfs says %d)", nthreads, waiting);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = destroy_by_id(ctl, handle, 0);
	CHECK(r == 0, "destroy while they are blocked (got %s)", strerror(-r));
	for (int i = 0; i < nthreads; i++)
		pthread_join(b[i].thread, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	for (int i = 0; i < nthreads; i++) {
		CHECK(b[i].rc == 0 && b[i].operation == DEVICE_OPERATION_KERNEL_USERSPACE_EXIT,
		      "thread %d woke with 8086 (rc %d, op %u)", i, b[i].rc, b[i].operation);
		CHECK(b[i].err == ENOENT, "thread %d: the next call fails with ENOENT (%s)", i, strerror(b[i].err));
	}
	printf("all %d threads returned %.3f s after destroy\n", nthreads,
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	return failures ? 1 : 0;
}

/* ---- a new server takes over (reattach) ------------------------------------ */

/* Our module's extension (dblock-abi.h), declared here as a program that
 * knows it would: DETACH on /dev/NAME-ctl, answered by op 8087. */
#define EXT_IOCTL_DEVICE_DETACH _IO(0xdb, 0x10)
#define EXT_OPERATION_KERNEL_DETACHED 8087
#define REATTACH_BLOCK 5

struct reader {
	const char *name;
	int rc;
	unsigned char *buf;
	pthread_t thread;
};

/* One O_DIRECT read of block REATTACH_BLOCK of /dev/NAME. */
static void *read_block(void *arg)
{
	struct reader *rd = arg;
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/dev/%s", rd->name);
	fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	rd->rc = fd < 0 ? -errno : 0;
	if (fd >= 0 && pread(fd, rd->buf, 4096, REATTACH_BLOCK * 4096) != 4096)
		rd->rc = -errno ? -errno : -EIO;
	if (fd >= 0)
		close(fd);
	return NULL;
}

/* Block for the next request on @fd (answering what @op holds). */
static int next_request(int fd, u32 handle, dblock_operation *op)
{
	op->handle_id = handle;
	for (;;) {
		if (ioctl(fd, IOCTL_DEVICE_OPERATION, op) == 0)
			return 0;
		if (errno != EINTR)
			return -errno;
		op->header.operation = DEVICE_OPERATION_NO_RESPONSE_BLOCK_FOR_REQUEST;
	}
}

static bool is_read_of_block(const dblock_operation *op)
{
	return op->header.operation == DEVICE_OPERATION_KERNEL_READ_REQUEST &&
	       op->metadata[0].start == REATTACH_BLOCK * 4096;
}

/* The old server: take the read and die (close the -ctl file) without answering. */
static void check_dead_server(const char *name, u32 handle)
{
	dblock_operation *op = alloc_op();
	int fd = open_request_node(name), r;

	op->header.operation = DEVICE_OPERATION_NO_RESPONSE_BLOCK_FOR_REQUEST;
	r = next_request(fd, handle, op);
	CHECK(r == 0 && is_read_of_block(op), "the first server gets the read (rc %d, op %u)", r, op->header.operation);
	close(fd);
	free(op);
}

/* A new server: open -ctl again, serve the requeued read from a pattern,
 * then answer what follows until DETACH makes it leave. */
struct new_server {
	const char *name;
	u32 handle;
	int fd;
	int got_read, detached, rc;
	pthread_t thread;
};

static void *serve_until_detached(void *arg)
{
	struct new_server *ns = arg;
	dblock_operation *op = alloc_op();

	op->header.operation = DEVICE_OPERATION_NO_RESPONSE_BLOCK_FOR_REQUEST;
	for (;;) {
		ns->rc = next_request(ns->fd, ns->handle, op);
		if (ns->rc < 0)
			break;
		if (op->header.operation == EXT_OPERATION_KERNEL_DETACHED) {
			ns->detached = 1;
			break;
		}
		if (op->header.operation != DEVICE_OPERATION_KERNEL_READ_REQUEST &&
		    op->header.operation != DEVICE_OPERATION_KERNEL_WRITE_REQUEST) {
			op->header.operation = DEVICE_OPERATION_NO_RESPONSE_BLOCK_FOR_REQUEST;
			continue;
		}
		ns->got_read += is_read_of_block(op);
		memset(op->userspacedatabuffer, 0xa5, op->packet.read_request.total_length_of_all_bio_segments);
		op->packet.read_response.response_total_length =
			op->packet.read_request.total_length_of_all_bio_segments;
		op->error = 0;
		op->header.operation = op->header.operation == DEVICE_OPERATION_KERNEL_READ_REQUEST
					       ? DEVICE_OPERATION_READ_RESPONSE
					       : DEVICE_OPERATION_WRITE_RESPONSE;
	}
	free(op);
	return NULL;
}

static bool all_bytes(const unsigned char *b, size_t n, unsigned char v)
{
	for (size_t i = 0; i < n; i++)
		if (b[i] != v)
			return false;
	return true;
}

static int cmd_reattach(const char *name)
{
	struct reader rd = { .name = name, .buf = aligned_alloc(4096, 4096) };
	struct new_server ns = { .name = name, .handle = handle_or_die(name) };
	u32 handle = ns.handle, again = 0;
	int ctl = open_control(), waiting = 0;

	pthread_create(&rd.thread, NULL, read_block, &rd);
	check_dead_server(name, handle);
	CHECK(handle_by_name(ctl, name, &again) == 0 && again == handle, "the device and its handle stay (%u)", again);
	ns.fd = open_request_node(name);
	pthread_create(&ns.thread, NULL, serve_until_detached, &ns);
	pthread_join(rd.thread, NULL);
	CHECK(rd.rc == 0, "the read completes through the new server (%s)", strerror(-rd.rc));
	CHECK(rd.rc == 0 && all_bytes(rd.buf, 4096, 0xa5), "it returns the new server's data");
	waiting = wait_servers(name, 1);
	CHECK(waiting == 1, "the new server is blocked for the next request (sysfs says %d)", waiting);
	CHECK(ns.got_read >= 1, "the new server got the read the dead one held (%d)", ns.got_read);
	CHECK(ioctl(ns.fd, EXT_IOCTL_DEVICE_DETACH) == 0, "DETACH (extension) on its -ctl file (%s)", strerror(errno));
	pthread_join(ns.thread, NULL);
	CHECK(ns.detached && ns.rc == 0, "the blocked server returns op 8087 (rc %d)", ns.rc);
	close(ns.fd);
	CHECK(handle_by_name(ctl, name, &again) == 0 && again == handle, "the device stays after DETACH");
	close(ctl);
	free(rd.buf);
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(cmd, "sizes") == 0)
		return cmd_sizes();
	if (strcmp(cmd, "limits") == 0)
		return cmd_limits();
	if (strcmp(cmd, "create") == 0 && argc == 5)
		return cmd_create(argv[2], strtoull(argv[3], NULL, 0), (u32)strtoul(argv[4], NULL, 0));
	if (strcmp(cmd, "destroy") == 0 && argc >= 3)
		return cmd_destroy(argv[2], argc > 3 && strcmp(argv[3], "force") == 0);
	if (strcmp(cmd, "serve") == 0 && argc == 5)
		return cmd_serve(argv[2], strtoull(argv[3], NULL, 0), atoi(argv[4]));
	if (strcmp(cmd, "signal") == 0 && argc == 3)
		return cmd_signal(argv[2]);
	if (strcmp(cmd, "wake") == 0 && argc == 4)
		return cmd_wake(argv[2], atoi(argv[3]));
	if (strcmp(cmd, "reattach") == 0 && argc == 3)
		return cmd_reattach(argv[2]);
	fprintf(stderr, "usage: see the comment at the top of dblock-rawabi.c\n");
	return 2;
}

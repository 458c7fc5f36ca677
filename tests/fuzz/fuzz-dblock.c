/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz the dblock frontend's request decoding (frontends/dblock,
 * dblock_serve_op): whatever the kernel module hands over in a struct
 * dblock_operation, the server must answer it sanely or refuse it, never
 * crash, overrun the data area, hang or leak.
 *
 * Input: up to 4 operations, each the bytes of a struct dblock_operation
 * (4152 bytes; a shorter last piece is zero-padded) with no data.  A write
 * writes whatever the data area holds; a read fills it.  The device is a
 * 4 MiB ramdisk (the smallest dblock device), opened once (BLKSERV_TEST_PLUGIN_DIR).
 *
 * Checked after each operation: an answered request keeps its handle_id
 * and operation_id, reports no more bytes than it asked for, and a failed
 * one reports none.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "dblock.h"
#include "device.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_OPS 4

static struct blkserv_device *dev;
static struct dblock d;
static struct dblock_thread t;

static void setup(void)
{
	const char *plugins = getenv("BLKSERV_TEST_PLUGIN_DIR");
	struct config *c = NULL;
	char path[64], *error = NULL;
	FILE *f;

	log_set_max_level(getenv("BLKSERV_FUZZ_VERBOSE") ? BLKSERV_LOG_DEBUG : BLKSERV_LOG_ERR);
	snprintf(path, sizeof(path), "/dev/shm/fuzz-dblock-%d.conf", (int)getpid());
	f = fopen(path, "w");
	if (!f || !plugins)
		abort();
	fputs("device \"d0\" {\n  size = 4M\n  block_size = 4096\n"
	      "  frontend \"dblock\" { }\n  backend \"ramdisk\" { }\n}\n",
	      f);
	fclose(f);
	if (config_load(path, plugins, &c, &error) < 0 || device_new(&c->devices[0], plugins, &dev) < 0 ||
	    device_open_backend(dev) < 0) {
		fprintf(stderr, "cannot open the fuzz device: %s\n", error ? error : "see above");
		abort();
	}
	unlink(path);
	config_free(c);
	d.dev = dev;
	d.handle_id = 7;
	t.d = &d;
	if (blkserv_queue_new(dev, 1, 0, &t.q) < 0 || dblock_thread_alloc(&t) < 0)
		abort();
	t.req = blkserv_queue_request(t.q, 0);
}

static bool is_response(uint32_t code)
{
	switch (code) {
	case DBLOCK_OP_READ_RESPONSE:
	case DBLOCK_OP_WRITE_RESPONSE:
	case DBLOCK_OP_FLUSH_RESPONSE:
	case DBLOCK_OP_DISCARD_RESPONSE:
	case DBLOCK_OP_WRITE_ZEROES_RESPONSE:
		return true;
	}
	return false;
}

static void serve_one(const uint8_t *p, size_t n)
{
	struct dblock_operation *o = t.op;
	uint32_t handle, op_id;
	uint64_t asked;
	int r;

	memset(o, 0, sizeof(*o));
	memcpy(o, p, n);
	handle = o->handle_id;
	op_id = o->operation_id;
	asked = o->packet.request.total_length_of_all_bio_segments;
	r = dblock_serve_op(&t);
	if (r != 0 && r != DBLOCK_SERVE_EXIT && r != -EPROTO)
		abort();
	if (r != 0 || !is_response(o->header.operation))
		return;
	if (o->handle_id != handle || o->operation_id != op_id || o->error > 0 ||
	    o->packet.response.total_length > asked || (o->error < 0 && o->packet.response.total_length)) {
		fprintf(stderr, "bad answer: op %u error %d length %llu of %llu\n", o->header.operation, o->error,
			(unsigned long long)o->packet.response.total_length, (unsigned long long)asked);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const size_t op_size = sizeof(struct dblock_operation);

	if (!dev)
		setup();
	for (size_t i = 0, at = 0; i < MAX_OPS && at < size; i++, at += op_size)
		serve_one(data + at, size - at < op_size ? size - at : op_size);
	if (blkserv_queue_inflight(t.q) != 0)
		abort();
	return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The config loader: valid configs, and invalid ones whose message must
 * name the line and say what is wrong. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build-config.h"
#include "test-helpers.h"

#define DEVICE_OK "  frontend \"testfe\" { socket = \"/run/x.sock\" }\n  backend \"ramdisk\" { }\n"

/* A device of six lines: its frontend on the 4th, its backend on the 5th. */
#define DEV(name, fe, be)                                                                                              \
	"device \"" name "\" {\n  size = 64M\n  block_size = 4096\n  frontend " fe "\n  backend " be "\n}\n"
#define RAM "\"ramdisk\" { }"
#define TESTFE "\"testfe\" { socket = \"/run/x.sock\" }"
#define NBDX(opts) "\"nbd-export\" { " opts " }"
#define FILEB(path) "\"file\" { path = \"" path "\" }"
#define LOGB(dir) "\"log\" { dir = \"" dir "\" }"
#define LOGB2(dir, opts) "\"log\" { dir = \"" dir "\"  " opts " }"
#define LONG_NAME "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz"

static void test_valid_full(void **state)
{
	struct config *c = NULL;
	char *error = NULL;
	const char *text = "log_level = debug\n"
			   "runtime_dir = \"/run/blkservd-test\"\n"
			   "lock_memory = false\n"
			   "request_memory = 1G\n"
			   "device \"ram0\" {\n"
			   "  size = 64M\n"
			   "  block_size = 4096\n"
			   "  read_only = yes\n"
			   "  frontend \"testfe\" {\n"
			   "    socket = \"/run/ram0.sock\"\n"
			   "    label = \"hello world\"\n"
			   "    count = 0x10\n"
			   "    enabled = on\n"
			   "    limit = 2G\n"
			   "  }\n"
			   "  backend \"ramdisk\" { }\n"
			   "}\n"
			   "device \"ram1\" {\n"
			   "  size = 1M\n" DEVICE_OK "}\n";
	const char *s;
	uint64_t u;
	bool b;

	if (test_load_config(text, &c, &error) < 0)
		fail_msg("valid config rejected: %s", error);
	assert_int_equal(c->ndevices, 2);
	assert_string_equal(c->runtime_dir, "/run/blkservd-test");
	assert_int_equal(c->log_level, 7);
	assert_false(c->lock_memory);
	assert_true(c->request_memory == 1ull << 30);
	const struct device_config *d = config_find_device(c, "ram0");
	assert_non_null(d);
	assert_true(d->size == 64ull << 20);
	assert_int_equal(d->block_size, 4096);
	assert_true(d->read_only);
	assert_string_equal(d->frontend->name, "testfe");
	assert_string_equal(d->backend->name, "ramdisk");
	assert_int_equal(blkserv_config_get_string(&d->frontend_cfg, "label", &s), 0);
	assert_string_equal(s, "hello world");
	assert_int_equal(blkserv_config_get_uint(&d->frontend_cfg, "count", &u), 0);
	assert_int_equal(u, 16);
	assert_int_equal(blkserv_config_get_uint(&d->frontend_cfg, "limit", &u), 0);
	assert_true(u == 2ull << 30);
	assert_int_equal(blkserv_config_get_bool(&d->frontend_cfg, "enabled", &b), 0);
	assert_true(b);
	assert_true(blkserv_config_is_set(&d->frontend_cfg, "label"));
	assert_false(blkserv_config_is_set(&d->frontend_cfg, "fail_start"));
	/* Defaults of options not written. */
	d = config_find_device(c, "ram1");
	assert_int_equal(d->block_size, 512);
	assert_false(d->read_only);
	assert_int_equal(blkserv_config_get_uint(&d->frontend_cfg, "count", &u), 0);
	assert_int_equal(u, 1);
	assert_int_equal(blkserv_config_get_string(&d->frontend_cfg, "label", &s), 0);
	assert_string_equal(s, "none");
	/* Asking for an undeclared option or the wrong type is an error. */
	assert_int_equal(blkserv_config_get_string(&d->frontend_cfg, "nope", &s), -EINVAL);
	assert_int_equal(blkserv_config_get_bool(&d->frontend_cfg, "label", &b), -EINVAL);
	config_free(c);
}

static void test_empty_config(void **state)
{
	struct config *c = NULL;
	char *error = NULL;

	assert_int_equal(test_load_config("# nothing\n", &c, &error), 0);
	assert_int_equal(c->ndevices, 0);
	assert_true(c->request_memory == 256ull << 20); /* the default */
	config_free(c);
	/* An empty file is an empty config (libconfuse reads a buffer now). */
	assert_int_equal(test_load_config("", &c, &error), 0);
	assert_int_equal(c->ndevices, 0);
	config_free(c);
}

/* The shipped config must validate (with the build's plugins). */
static void test_shipped_config(void **state)
{
	char path[1024];
	struct config *c = NULL;
	char *error = NULL;

	snprintf(path, sizeof(path), "%s/conf/blkservd.conf", getenv("BLKSERV_TEST_SRCDIR"));
	if (config_load(path, test_plugin_dir(), &c, &error) < 0) {
		/* The shipped config names plugins that may not be built here. */
		if (error && strstr(error, "does not exist")) {
			free(error);
			skip();
		}
		fail_msg("shipped config rejected: %s", error);
	}
	config_free(c);
}

struct bad_config {
	const char *text;
	int line;
	const char *message;
};

static const struct bad_config bad_configs[] = {
	{ "bogus = 1\n", 1, "no such option 'bogus'" },
	{ "log_level = info\nrequest_memory = 16M\n", 2, "'request_memory' expects a size of at least 32M" },
	{ "request_memory = lots\n", 1, "'request_memory' expects a size of at least 32M" },
	{ "device \"a\" {\n  size = 1M\n  colour = red\n" DEVICE_OK "}\n", 3, "no such option 'colour'" },
	{ "device \"a\" {\n  size = 1M\n  frontend \"testfe\" {\n    socket = \"/x\"\n    nope = 1\n  }\n"
	  "  backend \"ramdisk\" { }\n}\n",
	  5, "frontend 'testfe' has no option 'nope'" },
	{ "device \"a\" {\n  size = 12Q\n" DEVICE_OK "}\n", 2, "expects a size" },
	{ "device \"a\" {\n  size = 0\n" DEVICE_OK "}\n", 2, "expects a size" },
	{ "device \"a\" {\n  size = 1M\n  block_size = 1000\n" DEVICE_OK "}\n", 3, "block_size" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "}\ndevice \"a\" {\n  size = 1M\n" DEVICE_OK "}\n", 6,
	  "duplicate title 'a'" },
	{ "device \"a\" {\n  size = 1M\n  backend \"ramdisk\" { }\n}\n", 1, "has no frontend section" },
	{ "device \"a\" {\n  size = 1M\n  frontend \"nosuch\" { }\n  backend \"ramdisk\" { }\n}\n", 3,
	  "no frontend plugin 'nosuch'" },
	{ "device \"a\" {\n  size = 1M\n  frontend \"testfe\" { }\n  backend \"ramdisk\" { }\n}\n", 3,
	  "needs option 'socket'" },
	{ "device \"a\" {\n  size = 1M\n  frontend \"testfe\" {\n    socket = \"/x\"\n    count = abc\n  }\n"
	  "  backend \"ramdisk\" { }\n}\n",
	  5, "expects a non-negative integer, not 'abc'" },
	{ "device \"a\" {\n  size = 1M\n  frontend \"testfe\" {\n    socket = \"/x\"\n    enabled = maybe\n  }\n"
	  "  backend \"ramdisk\" { }\n}\n",
	  5, "expects a boolean" },
	{ "device \"a\" {\n  size = 1M\n  frontend \"testfe\" {\n    socket = \"relative/x\"\n  }\n"
	  "  backend \"ramdisk\" { }\n}\n",
	  4, "expects an absolute path" },
	{ "device \"bad name!\" {\n  size = 1M\n" DEVICE_OK "}\n", 1, "invalid device name 'bad name!'" },
	{ "device \"a\" {\n  size = 1000\n" DEVICE_OK "}\n", 1, "not a multiple of block_size" },
	{ "log_level = loud\n", 1, "log_level" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  backend \"asyncmem\" { }\n}\n", 5, "2 backend sections" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  backend \"ramdisk\" { }\n}\n", 5, "duplicate title 'ramdisk'" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "\n", 1, "never closed" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "}\n}\n", 6, "unexpected closing brace" },
	{ "# a comment with { brace\ndevice \"a{\" {\n  size = 1M\n" DEVICE_OK "\n", 2, "never closed" },
	{ "runtime_dir = \"run/relative\"\n", 1, "absolute path" },
	{ "device \"a\" {\n  size = 1M\n  frontend \"testfe\" { socket = \"/x\" }\n  backend \"nosuch\" { }\n}\n", 4,
	  "no backend plugin 'nosuch'" },
	{ "device \"a\" {\n  size = 1M\n  read_only = perhaps\n" DEVICE_OK "}\n", 3, "read_only" },
	{ "\n\ndevice \"a\" {\n  size = \"1M\n" DEVICE_OK "}\n", 5, "option 'size' expects a size" },
	{ "device \"a\" {\n  size = 1M\n  frontend \"Bad Name\" { }\n  backend \"ramdisk\" { }\n}\n", 3,
	  "invalid frontend name 'Bad Name'" },
	{ "device \"a\" {\n  size = 1M\n  frontend \"testfe\" { socket = \"/x\" }\n  frontend \"testfe\" { socket = \"/y\" }\n"
	  "  backend \"ramdisk\" { }\n}\n",
	  4, "duplicate title 'testfe'" },
	{ "device \"a\" {\n  frontend \"testfe\" { socket = \"/x\" }\n  backend \"ramdisk\" {\n    size = 1M\n  }\n}\n",
	  4, "backend 'ramdisk' has no option 'size'" },
	{ "device \"\" {\n  size = 1M\n" DEVICE_OK "}\n", 1, "invalid device name ''" },
	{ "device \"this-name-is-far-too-long-for-a-device-name\" {\n  size = 1M\n" DEVICE_OK "}\n", 1,
	  "invalid device name" },
	/* The faults section (fault injection). */
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults {\n    colour = red\n  }\n}\n", 6,
	  "the faults section has no option 'colour'" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults {\n    read_error_every = 0\n  }\n}\n", 6,
	  "option 'read_error_every' of faults expects a positive integer, not '0'" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults {\n    write_error_every = often\n  }\n}\n", 6,
	  "option 'write_error_every' of faults expects a positive integer, not 'often'" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults {\n    delay_ms = 60001\n  }\n}\n", 6,
	  "option 'delay_ms' of faults expects a number of milliseconds from 1 to 60000, not '60001'" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults {\n    delay_ms = 0\n  }\n}\n", 6,
	  "option 'delay_ms' of faults expects a number of milliseconds" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults {\n    write_error_length = 0\n  }\n}\n", 6,
	  "option 'write_error_length' of faults expects a size in bytes above 0 (like 512, 4K, 1M), not '0'" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults {\n    read_error_offset = 12Q\n  }\n}\n", 6,
	  "option 'read_error_offset' of faults expects a size in bytes (like 0, 512, 4K, 1M), not '12Q'" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults {\n    flush_error_after = -1\n  }\n}\n", 6,
	  "option 'flush_error_after' of faults expects a non-negative integer, not '-1'" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults {\n    enospc_after = 99999999999999999999\n  }\n}\n", 6,
	  "option 'enospc_after' of faults expects a size in bytes" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults {\n    trigger = \"fail-now\"\n  }\n}\n", 6,
	  "option 'trigger' of faults expects an absolute path (at most 255 characters), not 'fail-now'" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults {\n    delay_every = 2\n  }\n}\n", 6,
	  "device 'a': faults: delay_every needs delay_ms" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults { }\n  faults { }\n}\n", 6,
	  "device 'a' has 2 faults sections; it may have one" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults \"x\" { }\n}\n", 5,
	  "missing opening brace for section 'faults'" },
	{ "faults {\n  read_error_every = 1\n}\n", 1, "no such option 'faults'" },

	/* The same option twice in one section: the last value would win silently. */
	{ "device \"a\" {\n  size = 1M\n  size = 2M\n" DEVICE_OK "}\n", 3,
	  "option 'size' is set twice (first on line 2): set it once" },
	{ "device \"a\" {\n  size = 1M\n  block_size = 512\n  block_size = 4096\n" DEVICE_OK "}\n", 4,
	  "option 'block_size' is set twice (first on line 3)" },
	{ "device \"a\" {\n  read_only = yes\n  size = 1M\n  read_only = no\n" DEVICE_OK "}\n", 4,
	  "option 'read_only' is set twice (first on line 2)" },
	{ "log_level = info\n# comment\nlog_level = debug\n", 3, "option 'log_level' is set twice (first on line 1)" },
	{ "lock_memory = false\nlock_memory = true\n", 2, "option 'lock_memory' is set twice" },
	{ "runtime_dir = \"/run/a\"\nruntime_dir = \"/run/b\"\n", 2, "option 'runtime_dir' is set twice" },
	{ "device \"a\" {\n  size = 1M\n  frontend \"testfe\" {\n    socket = \"/x\"\n    count = 1\n    count = 2\n  }\n"
	  "  backend \"ramdisk\" { }\n}\n",
	  6, "option 'count' is set twice (first on line 5)" },
	{ "device \"a\" {\n  size = 1M\n  frontend \"testfe\" { socket = \"/x\" socket = \"/x\" }\n"
	  "  backend \"ramdisk\" { }\n}\n",
	  3, "option 'socket' is set twice" },
	{ "device \"a\" {\n  size = 1M\n" DEVICE_OK "  faults {\n    delay_ms = 5\n    delay_ms = 6\n  }\n}\n", 7,
	  "option 'delay_ms' is set twice (first on line 6)" },
	{ "device \"a\" {\n  size = 4M\n  frontend \"testfe\" { socket = \"/x\" }\n"
	  "  backend \"log\" {\n    dir = \"/nonexistent/l\"\n    dir = \"/nonexistent/m\"\n  }\n}\n",
	  6, "option 'dir' is set twice (first on line 5)" },

	/* The metrics section: one, tcp or unix, a port 1..65535, max_connections
	 * 1..1024, each option once, an address no device uses. */
	{ "metrics { }\nmetrics { }\n", 2, "2 metrics sections: there may be one" },
	/* libconfuse gives a section the line where it ends. */
	{ "metrics {\n  tcp = \"127.0.0.1:9540\"\n  unix = \"/run/m.sock\"\n}\n", 4,
	  "metrics: set 'tcp' or 'unix', not both" },
	{ "metrics {\n  tcp = \"127.0.0.1:65536\"\n}\n", 2,
	  "option 'tcp': the port of '127.0.0.1:65536' must be a number from 1 to 65535" },
	{ "metrics {\n  tcp = \"9540\"\n}\n", 2, "option 'tcp' expects ADDRESS:PORT, [IPV6]:PORT or :PORT" },
	{ "metrics {\n  unix = \"m.sock\"\n}\n", 2, "option 'unix' expects an absolute path" },
	{ "metrics {\n  max_connections = 0\n}\n", 2, "option 'max_connections' expects a number from 1 to 1024" },
	{ "metrics {\n  max_connections = 1025\n}\n", 2, "expects a number from 1 to 1024, not 1025" },
	{ "metrics {\n  tcp = \":9540\"\n  tcp = \":9541\"\n}\n", 3, "option 'tcp' is set twice (first on line 2)" },
	{ "metrics {\n  bogus = 1\n}\n", 2, "bogus" },
	{ "metrics { }\n" DEV("a", NBDX("tcp = \"127.0.0.1:9540\""), RAM), 5,
	  "the TCP address 127.0.0.1:9540 is already used by the metrics section (line 1): the metrics endpoint "
	  "cannot share it with a device" },
	{ "metrics { unix = \"/run/x.sock\" }\n" DEV("a", NBDX("unix = \"/run/x.sock\""), RAM), 5,
	  "the unix socket /run/x.sock is already used by the metrics section" },

	/* nbd-export: unix or tcp, a TCP port 1..65535, the tls choices and pairs. */
	{ DEV("a", NBDX("tcp = \"127.0.0.1:65536\""), RAM), 4,
	  "device 'a': frontend 'nbd-export' option 'tcp': the port of '127.0.0.1:65536' must be a number from 1 to 65535" },
	{ DEV("a", NBDX("tcp = \":75536\""), RAM), 4, "the port of ':75536' must be a number from 1 to 65535" },
	{ DEV("a", NBDX("tcp = \":0\""), RAM), 4, "the port of ':0' must be a number from 1 to 65535" },
	{ DEV("a", NBDX("tcp = \"localhost:nbd\""), RAM), 4, "the port of 'localhost:nbd' must be a number" },
	{ DEV("a", NBDX("tcp = \"localhost:-1\""), RAM), 4, "the port of 'localhost:-1' must be a number" },
	{ DEV("a", NBDX("tcp = \"10809\""), RAM), 4,
	  "option 'tcp': expects ADDRESS:PORT, [IPV6]:PORT or :PORT, not '10809'" },
	{ DEV("a", NBDX("tcp = \"::1:10809\""), RAM), 4, "option 'tcp': expects ADDRESS:PORT" },
	{ DEV("a", NBDX("tcp = \"127.0.0.1:\""), RAM), 4, "option 'tcp': expects ADDRESS:PORT" },
	{ DEV("a", NBDX("read_only = true"), RAM), 4,
	  "device 'a': frontend 'nbd-export': the nbd-export frontend needs 'unix' (a socket path) or 'tcp'" },
	{ DEV("a", NBDX("unix = \"/run/x.sock\"  tls = \"maybe\""), RAM), 4,
	  "option 'tls' of frontend 'nbd-export' expects one of off, allow, require, not 'maybe'" },
	{ DEV("a", NBDX("unix = \"/run/x.sock\"  tls = \"REQUIRE\""), RAM), 4, "expects one of off, allow, require" },
	{ DEV("a", NBDX("unix = \"/run/x.sock\"  tls = require"), RAM), 4,
	  "option 'tls': tls = require needs 'tls_certificate' and 'tls_key', or 'tls_psk_file'" },
	{ DEV("a", NBDX("unix = \"/run/x.sock\"  tls = allow  tls_certificate = \"/c.pem\""), RAM), 4,
	  "option 'tls_certificate': 'tls_certificate' and 'tls_key' go together" },
	{ DEV("a", NBDX("unix = \"/run/x.sock\"  tls_key = \"/k.pem\""), RAM), 4,
	  "option 'tls_key': 'tls_certificate' and 'tls_key' go together" },
	{ DEV("a", NBDX("unix = \"/run/x.sock\"  tls = allow  tls_psk_file = \"/p\"  tls_ca = \"/ca.pem\""), RAM), 4,
	  "option 'tls_ca': 'tls_ca' needs 'tls_certificate' and 'tls_key'" },
	{ DEV("a", NBDX("unix = \"/run/x.sock\"  max_clients = 0"), RAM), 4,
	  "option 'max_clients' of frontend 'nbd-export' expects a number from 1 to 1024, not '0'" },
	{ DEV("a", NBDX("unix = \"/run/" LONG_NAME LONG_NAME ".sock\""), RAM), 4,
	  "option 'unix': the socket path is longer than 107 bytes" },

	/* Two devices on one socket, address, file, directory or kernel name. */
	{ DEV("a", NBDX("unix = \"/run/x.sock\""), RAM) DEV("b", NBDX("unix = \"/run/x.sock\""), RAM), 10,
	  "device 'b': frontend 'nbd-export' option 'unix': the unix socket /run/x.sock is already used by device 'a' "
	  "(line 4): two devices cannot share it" },
	{ DEV("a", NBDX("unix = \"/run/x.sock\""), RAM) DEV("b", NBDX("unix = \"/run//./x.sock\""), RAM), 10,
	  "the unix socket /run/x.sock is already used by device 'a'" },
	{ DEV("a", NBDX("tcp = \"127.0.0.1:10809\""), RAM) DEV("b", NBDX("tcp = \"127.0.0.1:10809\""), RAM), 10,
	  "device 'b': frontend 'nbd-export' option 'tcp': the TCP address 127.0.0.1:10809 is already used by device 'a'" },
	{ DEV("a", NBDX("tcp = \":10809\""), RAM) DEV("b", NBDX("tcp = \"127.0.0.1:10809\""), RAM), 10,
	  "the TCP address 127.0.0.1:10809 is already used by device 'a' (line 4)" },
	{ DEV("a", NBDX("tcp = \"[::1]:10809\""), RAM) DEV("b", NBDX("tcp = \":10809\""), RAM), 10,
	  "the TCP address *:10809 is already used by device 'a'" },
	{ DEV("a", NBDX("tcp = \"0.0.0.0:10809\""), RAM) DEV("b", NBDX("tcp = \"10.1.2.3:10809\""), RAM), 10,
	  "the TCP address 10.1.2.3:10809 is already used by device 'a'" },
	{ DEV("a", NBDX("tcp = \"[::]:10809\""), RAM) DEV("b", NBDX("tcp = \"[fe80::1]:10809\""), RAM), 10,
	  "the TCP address [fe80::1]:10809 is already used by device 'a'" },
	{ DEV("a", NBDX("unix = \"/run/a.sock\"  tcp = \"[::1]:10809\""), RAM)
		  DEV("b", NBDX("unix = \"/run/b.sock\"  tcp = \"[::1]:10809\""), RAM),
	  10, "the TCP address [::1]:10809 is already used by device 'a'" },
	{ DEV("a", TESTFE, FILEB("/nonexistent/d.img")) DEV("b", TESTFE, FILEB("/nonexistent//d.img")), 11,
	  "device 'b': backend 'file' option 'path': the backing file /nonexistent/d.img is already used by device 'a' "
	  "(line 5)" },
	{ DEV("a", TESTFE, LOGB("/nonexistent/log")) DEV("b", TESTFE, LOGB("/nonexistent/log/")), 11,
	  "device 'b': backend 'log' option 'dir': the log directory /nonexistent/log is already used by device 'a'" },
	{ DEV("a", "\"ublk\" { id = 3 }", RAM) DEV("b", "\"ublk\" { id = 3 }", RAM), 10,
	  "device 'b': frontend 'ublk' option 'id': the ublk id 3 is already used by device 'a'" },
	{ DEV("a", "\"nbd\" { index = 2 }", RAM) DEV("b", "\"nbd\" { index = 0x2 }", RAM), 10,
	  "device 'b': frontend 'nbd' option 'index': the NBD device /dev/nbd2 is already used by device 'a'" },
	{ DEV("a", "\"dblock\" { name = \"vol\" }", RAM) DEV("b", "\"dblock\" { name = \"vol\" }", RAM), 10,
	  "device 'b': frontend 'dblock' option 'name': the dblock name vol is already used by device 'a'" },
	{ DEV("vol", "\"dblock\" { }", RAM) DEV("b", "\"dblock\" { name = \"vol\" }", RAM), 10,
	  "the dblock name vol is already used by device 'vol' (line 4)" },

	/* Ranges and choices of the plugins' options (each range's ends: test_option_ranges). */
	{ DEV("a", TESTFE, LOGB2("/nonexistent/l", "segment_size = 32K")), 5,
	  "option 'segment_size' of backend 'log' expects a size from 64K to 1T, not '32K'" },
	{ DEV("a", TESTFE, LOGB2("/nonexistent/l", "segment_size = 2T")), 5,
	  "expects a size from 64K to 1T, not '2T'" },
	{ DEV("a", TESTFE, LOGB2("/nonexistent/l", "compact_threshold = 0")), 5,
	  "option 'compact_threshold' of backend 'log' expects a number from 1 to 99, not '0'" },
	{ DEV("a", TESTFE, LOGB2("/nonexistent/l", "compact_threshold = 100")), 5, "from 1 to 99, not '100'" },
	{ DEV("a", TESTFE, LOGB2("/nonexistent/l", "max_size = 100M")), 5,
	  "backend 'log' option 'max_size': 104857600 is too small: it must be 0 (no limit) or at least 4 x segment_size "
	  "(268435456)" },
	{ DEV("a", TESTFE, LOGB2("/nonexistent/l", "segment_size = 1M  max_size = 3M")), 5, "option 'max_size'" },
	{ DEV("a", TESTFE, LOGB2("/nonexistent/l", "max_record_size = 6000")), 5,
	  "backend 'log' option 'max_record_size': 6000 is out of range: 0, or a multiple of 4K from 4K to a quarter "
	  "of segment_size (16777216)" },
	{ DEV("a", TESTFE, LOGB2("/nonexistent/l", "segment_size = 64K  max_record_size = 32K")), 5,
	  "option 'max_record_size': 32768 is out of range" },
	{ DEV("a", "\"nbd\" { connections = 17 }", RAM), 4,
	  "option 'connections' of frontend 'nbd' expects a number from 1 to 16, not '17'" },
	{ DEV("a", "\"nbd\" { connections = 0 }", RAM), 4, "expects a number from 1 to 16, not '0'" },
	{ DEV("a", "\"nbd\" { index = 2147483648 }", RAM), 4,
	  "option 'index' of frontend 'nbd' expects a number from 0" },
	{ DEV("a", "\"nbd\" { control = \"sometimes\" }", RAM), 4,
	  "option 'control' of frontend 'nbd' expects one of auto, netlink, ioctl, not 'sometimes'" },
	{ DEV("a", "\"ublk\" { queues = 65 }", RAM), 4,
	  "option 'queues' of frontend 'ublk' expects a number from 1 to 64" },
	{ DEV("a", "\"ublk\" { max_io_size = 6K }", RAM), 4,
	  "frontend 'ublk' option 'max_io_size': 6144 must be a multiple of the page size" },
	{ DEV("a", "\"dblock\" { threads = 0 }", RAM), 4,
	  "option 'threads' of frontend 'dblock' expects a number from 1 to 64" },
	{ DEV("a", "\"dblock\" { max_io_size = 10K }", RAM), 4, "option 'max_io_size': 10240 is not a multiple of 4K" },
	{ DEV("a", "\"dblock\" { name = \"a/b\" }", RAM), 4, "option 'name': name 'a/b' cannot name a dblock device" },
	{ "device \"a\" {\n  size = 64M\n  frontend \"dblock\" { }\n  backend \"ramdisk\" { }\n}\n", 3,
	  "device 'a': frontend 'dblock': block_size = 512, but dblock devices have 4096-byte blocks" },
	{ "device \"a\" {\n  size = 1M\n  block_size = 4096\n  frontend \"dblock\" { }\n  backend \"ramdisk\" { }\n}\n",
	  4, "the device size 1048576 bytes is outside the module's limits" },

	/* rbd names, checked without the cluster (Ceph's rules: blkservd-rbd(7)). */
	{ DEV("a", TESTFE, "\"rbd\" { pool = \"p\" image = \"vm@snap\" }"), 5,
	  "device 'a': backend 'rbd' option 'image': image \"vm@snap\" contains '@', which Ceph does not allow there" },
	{ DEV("a", TESTFE, "\"rbd\" { pool = \"p\" image = \"a/b\" }"), 5,
	  "option 'image': image \"a/b\" contains '/'" },
	{ DEV("a", TESTFE, "\"rbd\" { pool = \"\" image = \"i\" }"), 5, "option 'pool': pool must not be empty" },
	{ DEV("a", TESTFE, "\"rbd\" { pool = \"p/q\" image = \"i\" }"), 5, "option 'pool': pool \"p/q\" contains '/'" },
	{ DEV("a", TESTFE, "\"rbd\" { pool = \"p\" image = \"\" }"), 5, "option 'image': image must not be empty" },
	{ DEV("a", TESTFE, "\"rbd\" { pool = \"p\" namespace = \"a/b\" image = \"i\" }"), 5, "option 'namespace'" },
	{ DEV("a", TESTFE, "\"rbd\" { pool = \"p\" image = \"i\" user = \"osd.0\" }"), 5,
	  "option 'user': user \"osd.0\" is not a client name" },
	{ DEV("a", TESTFE, "\"rbd\" { pool = \"p\" image = \"i\" user = \"\" }"), 5,
	  "option 'user': user must not be empty" },
	{ DEV("a", TESTFE,
	      "\"rbd\" { pool = \"p\" image = \"" LONG_NAME LONG_NAME LONG_NAME LONG_NAME LONG_NAME "\" }"),
	  5, "option 'image': image is 260 bytes long, more than 255" },
	{ DEV("a", TESTFE, "\"rbd\" { pool = \"p\" image = \"i\" keyring = \"/nonexistent/k\" }"), 5,
	  "option 'keyring': /nonexistent/k: No such file or directory" },
	{ DEV("a", TESTFE, "\"rbd\" { pool = \"p\" image = \"i\" conf = \"/tmp\" }"), 5,
	  "option 'conf': /tmp is not a regular file" },

	/* What the backends would refuse at open, said before anything opens. */
	{ "device \"a\" {\n  frontend \"testfe\" { socket = \"/x\" }\n  backend \"ramdisk\" { }\n}\n", 3,
	  "device 'a': backend 'ramdisk': the ramdisk backend needs the device's size option (like size = 1G)" },
	{ DEV("a", TESTFE, FILEB("/tmp")), 5,
	  "device 'a': backend 'file' option 'path': /tmp is a directory: the file backend serves a regular file or a "
	  "block device" },
	{ DEV("a", TESTFE, FILEB("/dev/null")), 5, "/dev/null is neither a regular file nor a block device" },
	{ "device \"a\" {\n  frontend \"testfe\" { socket = \"/x\" }\n  backend \"file\" { path = \"/nonexistent/f.img\" }\n}\n",
	  3, "option 'path': /nonexistent/f.img does not exist; set the device's size option to create it" },
	{ DEV("a", TESTFE, LOGB("/dev/null")), 5,
	  "backend 'log' option 'dir': /dev/null exists and is not a directory" },

	/* Comments do not shift the line numbers (libconfuse counts them twice). */
	{ "# one\n# two\nbogus = 1\n", 3, "no such option 'bogus'" },
	{ "// one\n/* two\n   three */\nbogus = 1\n", 4, "no such option 'bogus'" },
	{ "log_level = info # why\n\nlog_level = debug // again\n", 3,
	  "option 'log_level' is set twice (first on line 1)" },
	{ "device \"a\" {\n  # the size\n  size = 1M\n  frontend \"testfe\" {\n    # where\n    socket = \"/x\"\n"
	  "    # how many\n    count = abc\n  }\n  backend \"ramdisk\" { }\n}\n",
	  8, "expects a non-negative integer, not 'abc'" },
	{ "# a device\ndevice \"a\" {\n  size = 1M\n  frontend \"nosuch\" { }\n  backend \"ramdisk\" { }\n}\n", 4,
	  "no frontend plugin 'nosuch'" },

	/* Lexical errors: where the string or comment left open starts. */
	{ "log_level = info\nruntime_dir = \"/run/x\n\n\n", 2,
	  "this string is never closed (missing '\"' before the end of the file)" },
	{ "log_level = info\n\nruntime_dir = '/run/x\n\n", 3, "this string is never closed (missing \"'\"" },
	{ "log_level = info\n/* a comment\nruntime_dir = \"/run/x\"\n", 2, "this comment is never closed" },
	{ "device \"a\" {\n  size = 1M\n  frontend \"testfe\" { socket = '/x{' }\n  backend \"ramdisk\" { }\n", 1,
	  "this '{' is never closed" },
	{ "device \"a\" {\n  size = 1M\n  frontend \"testfe\" { socket = '/x}' label = 'it\\'s {' }\n"
	  "  backend \"ramdisk\" { }\n}\n}\n",
	  6, "unexpected closing brace" },
};

static void test_invalid_configs(void **state)
{
	for (size_t i = 0; i < sizeof(bad_configs) / sizeof(bad_configs[0]); i++) {
		const struct bad_config *b = &bad_configs[i];
		struct config *c = NULL;
		char *error = NULL, where[32];

		if (test_load_config(b->text, &c, &error) == 0)
			fail_msg("invalid config #%zu was accepted:\n%s", i, b->text);
		assert_non_null(error);
		snprintf(where, sizeof(where), "test.conf:%d: ", b->line);
		if (!strstr(error, where) || !strstr(error, b->message))
			fail_msg("config #%zu: expected '%s...%s', got '%s'", i, where, b->message, error);
		free(error);
	}
}

/* Every range and choice a plugin declares: both ends are accepted, one
 * past them is refused with file, line and option. */
struct plugin_base {
	const char *name;
	enum plugin_kind kind;
	const char *required; /* what the section needs besides the option tested */
};

static char nbd_export_required[2048];

static const struct plugin_base plugin_bases[] = {
	{ "nbd", PLUGIN_FRONTEND, "" },
	{ "nbd-export", PLUGIN_FRONTEND, nbd_export_required }, /* with a real PSK file: main() */
	{ "ublk", PLUGIN_FRONTEND, "" },
	{ "dblock", PLUGIN_FRONTEND, "" },
	{ "log", PLUGIN_BACKEND, "dir = \"/nonexistent/log\"" },
	{ "file", PLUGIN_BACKEND, "path = \"/nonexistent/f.img\"" },
	{ "rbd", PLUGIN_BACKEND, "pool = \"p\" image = \"i\"" },
	{ "ramdisk", PLUGIN_BACKEND, "" },
};

/* The plugin's section opens on line 4 and @option is on line 5. */
static int load_with_option(const struct plugin_base *b, const char *option, const char *value, char **ret_error)
{
	char text[2048];
	struct config *c = NULL;
	bool fe = b->kind == PLUGIN_FRONTEND;
	int r;

	snprintf(text, sizeof(text),
		 "device \"a\" {\n  size = 64M\n  block_size = 4096\n  %s \"%s\" { %s\n    %s = \"%s\" }\n  %s\n}\n",
		 fe ? "frontend" : "backend", b->name, b->required, option, value,
		 fe ? "backend \"ramdisk\" { }" : "frontend \"testfe\" { socket = \"/run/x.sock\" }");
	*ret_error = NULL;
	r = test_load_config(text, &c, ret_error);
	config_free(c);
	return r;
}

static void expect_option_value(const struct plugin_base *b, const char *option, const char *value, bool ok,
				const char *message)
{
	char *error = NULL;
	int r = load_with_option(b, option, value, &error);

	if (ok && r < 0)
		fail_msg("%s option %s = %s refused: %s", b->name, option, value, error);
	if (!ok && r == 0)
		fail_msg("%s option %s = %s accepted", b->name, option, value);
	if (!ok && (!strstr(error, "test.conf:5: ") || !strstr(error, message)))
		fail_msg("%s option %s = %s: expected 'test.conf:5: ...%s', got '%s'", b->name, option, value, message,
			 error);
	free(error);
}

static unsigned check_plugin_ranges(const struct plugin_base *b, struct plugin *p)
{
	unsigned refused = 0;

	for (const struct blkserv_option_check *c = plugin_option_checks(p); c && c->name; c++) {
		const struct blkserv_option *o = plugin_find_option(p, c->name);
		char value[64], message[256];

		assert_non_null(o);
		if (c->choices) {
			for (const char *const *v = c->choices; *v; v++) {
				/* A build without GnuTLS takes only tls = off. */
				bool no_tls =
					!BLKSERV_HAVE_TLS && strcmp(c->name, "tls") == 0 && strcmp(*v, "off") != 0;
				expect_option_value(b, c->name, *v, !no_tls, "was built without it");
			}
			snprintf(message, sizeof(message), "option '%s' of %s '%s' expects one of %s", c->name,
				 plugin_kind_name(b->kind), b->name, c->choices[0]);
			expect_option_value(b, c->name, "maybe", false, message);
			expect_option_value(b, c->name, "", false, message);
			refused += 2;
			continue;
		}
		assert_true(c->max > 0);
		snprintf(message, sizeof(message), "option '%s' of %s '%s' expects %s from ", c->name,
			 plugin_kind_name(b->kind), b->name, o->type == BLKSERV_OPT_SIZE ? "a size" : "a number");
		snprintf(value, sizeof(value), "%llu", (unsigned long long)c->min);
		expect_option_value(b, c->name, value, true, NULL);
		snprintf(value, sizeof(value), "%llu", (unsigned long long)c->max);
		expect_option_value(b, c->name, value, true, NULL);
		snprintf(value, sizeof(value), "%llu", (unsigned long long)c->max + 1);
		expect_option_value(b, c->name, value, false, message);
		refused++;
		if (c->min > 0) {
			snprintf(value, sizeof(value), "%llu", (unsigned long long)c->min - 1);
			expect_option_value(b, c->name, value, false, message);
			refused++;
		}
	}
	return refused;
}

static void test_option_ranges(void **state)
{
	unsigned refused = 0, plugins = 0;

	for (size_t i = 0; i < sizeof(plugin_bases) / sizeof(plugin_bases[0]); i++) {
		const struct plugin_base *b = &plugin_bases[i];
		struct plugin *p = NULL;
		char *error = NULL;

		if (plugin_load(test_plugin_dir(), b->kind, b->name, &p, &error) < 0) {
			/* A plugin this build lacks (librbd, libnl missing). */
			assert_non_null(strstr(error, "does not exist"));
			free(error);
			continue;
		}
		plugins++;
		refused += check_plugin_ranges(b, p);
		plugin_free(p);
	}
	print_message("%u out-of-range configs refused, over %u plugins\n", refused, plugins);
	assert_true(plugins > 0);
}

/* A config path that is not a regular file gets a plain message. */
static void test_not_a_regular_file(void **state)
{
	struct config *c = NULL;
	char *error = NULL, *path;

	assert_true(config_load(test_tmpdir(), test_plugin_dir(), &c, &error) < 0);
	if (!strstr(error, test_tmpdir()) || !strstr(error, "is a directory, not a config file"))
		fail_msg("unexpected error: %s", error);
	free(error);
	assert_true(config_load("/dev/null", test_plugin_dir(), &c, &error) < 0);
	assert_non_null(strstr(error, "/dev/null: is not a regular file"));
	free(error);
	path = test_write_file("nul.conf", "log_level = info\n");
	FILE *f = fopen(path, "a");
	assert_non_null(f);
	fputs("\nbogus", f);
	fputc(0, f);
	fclose(f);
	assert_true(config_load(path, test_plugin_dir(), &c, &error) < 0);
	assert_non_null(strstr(error, "nul.conf:3: a NUL byte"));
	free(error);
	free(path);
}

/* What the new checks must not refuse. */
static void test_valid_edge_cases(void **state)
{
	static const char *const texts[] = {
		/* A brace or a comment sign inside quotes is text. */
		"device \"a\" {\n  size = 1M\n  frontend \"testfe\" { socket = '/x{' label = 'it\\'s } # not // a /* comment' }\n"
		"  backend \"ramdisk\" { }\n}\n",
		/* The same option in two sections is no duplicate. */
		"device \"a\" {\n  size = 1M\n" DEVICE_OK "}\ndevice \"b\" {\n  size = 1M\n" DEVICE_OK "}\n",
		/* Different sockets, addresses, ids, names. */
		DEV("a", NBDX("unix = \"/run/a.sock\"  tcp = \"127.0.0.1:10809\""),
		    RAM) DEV("b", NBDX("unix = \"/run/b.sock\"  tcp = \"127.0.0.2:10809\""),
			     RAM) DEV("c", NBDX("tcp = \"127.0.0.1:10810\""), RAM)
			DEV("d", NBDX("tcp = \"0.0.0.0:1\""), RAM) DEV("e", NBDX("tcp = \"[::]:1\""), RAM)
				DEV("f", NBDX("tcp = \"[::1]:65535\"  tls = off  tls_psk_file = \"/nonexistent/p\""),
				    RAM),
		/* A path with "//" inside an unquoted value is one value. */
		"runtime_dir = /run//blkservd-test\n",
		/* The smallest segment_size: max_record_size's default fits itself to it. */
		DEV("a", TESTFE, LOGB2("/nonexistent/l", "segment_size = 64K"))
			DEV("b", TESTFE, LOGB2("/nonexistent/m", "max_record_size = 0"))
				DEV("c", TESTFE, LOGB2("/nonexistent/n", "segment_size = 64K  max_record_size = 16K")),
	};
	char *image = test_write_file("shared.img", "0123456789abcdef"), *readers;
	struct config *c = NULL;
	char *error = NULL;

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		if (test_load_config(texts[i], &c, &error) < 0)
			fail_msg("valid config #%zu refused: %s\n%s", i, error, texts[i]);
		config_free(c);
	}
	assert_int_equal(test_load_config(texts[3], &c, &error), 0);
	assert_string_equal(c->runtime_dir, "/run//blkservd-test");
	config_free(c);
	/* Readers share a file (a shared lock, a shared claim). */
	assert_true(asprintf(&readers,
			     DEV("a", TESTFE, "\"file\" { path = \"%s\" read_only = true }")
				     DEV("b", TESTFE, "\"file\" { path = \"%s\" read_only = true }"),
			     image, image) > 0);
	if (test_load_config(readers, &c, &error) < 0)
		fail_msg("two readers refused: %s", error);
	config_free(c);
	free(readers);
	free(image);
}

static void test_missing_file(void **state)
{
	struct config *c = NULL;
	char *error = NULL;

	assert_true(config_load("/nonexistent/blkservd.conf", test_plugin_dir(), &c, &error) < 0);
	assert_non_null(strstr(error, "/nonexistent/blkservd.conf"));
	free(error);
}

static void test_device_config_equal(void **state)
{
	struct config *a = NULL, *b = NULL;
	char *error = NULL;
	const char *t1 = "device \"a\" {\n  size = 1M\n" DEVICE_OK "}\n";
	const char *t2 = "device \"a\" {\n  size = 2M\n" DEVICE_OK "}\n";

	assert_int_equal(test_load_config(t1, &a, &error), 0);
	assert_int_equal(test_load_config(t1, &b, &error), 0);
	assert_true(device_config_equal(&a->devices[0], &b->devices[0]));
	config_free(b);
	assert_int_equal(test_load_config(t2, &b, &error), 0);
	assert_false(device_config_equal(&a->devices[0], &b->devices[0]));
	config_free(a);
	config_free(b);
}

/* Two file devices on @pa and @pb (read-only when @ro_a/@ro_b): NULL when
 * the config loads, else its error (malloc'd). */
static char *load_two_files(const char *pa, bool ro_a, const char *pb, bool ro_b)
{
	char text[4096], *error = NULL;
	struct config *c = NULL;

	snprintf(text, sizeof(text),
		 DEV("a", TESTFE, "\"file\" { path = \"%s\" read_only = %s }")
			 DEV("b", TESTFE, "\"file\" { path = \"%s\" read_only = %s }"),
		 pa, ro_a ? "true" : "false", pb, ro_b ? "true" : "false");
	if (test_load_config(text, &c, &error) == 0) {
		config_free(c);
		return NULL;
	}
	assert_non_null(error);
	return error;
}

static void expect_refused(char *error, const char *message, const char *what)
{
	if (!error)
		fail_msg("%s: accepted", what);
	if (!strstr(error, "test.conf:11: device 'b': backend 'file' option 'path': ") || !strstr(error, message))
		fail_msg("%s: expected 'test.conf:11: ...%s', got '%s'", what, message, error);
	free(error);
}

/* Claims compare what a path is, not how it is spelled: a symlink, ".."
 * or a hard link to a file one device writes is refused at config time
 * (not only by the file lock at open); readers may share a file. */
static void test_claims_by_identity(void **state)
{
	char dir[512], file[600], sym[600], hard[600], dotdot[600], other[600], logdir[600], loglink[600];
	char text[4096], *error = NULL;
	struct config *c = NULL;

	snprintf(dir, sizeof(dir), "%s/claims", test_tmpdir());
	snprintf(file, sizeof(file), "%s/disk.img", dir);
	snprintf(sym, sizeof(sym), "%s/sym.img", dir);
	snprintf(hard, sizeof(hard), "%s/hard.img", dir);
	snprintf(dotdot, sizeof(dotdot), "%s/sub/../disk.img", dir);
	snprintf(other, sizeof(other), "%s/other.img", dir);
	snprintf(logdir, sizeof(logdir), "%s/log", dir);
	snprintf(loglink, sizeof(loglink), "%s/log-sym", dir);
	snprintf(text, sizeof(text), "%s/sub", dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(mkdir(text, 0700), 0);
	assert_int_equal(mkdir(logdir, 0700), 0);
	for (const char *f = file; f; f = f == file ? other : NULL) {
		FILE *fp = fopen(f, "w");
		assert_non_null(fp);
		fclose(fp);
		assert_int_equal(truncate(f, 1 << 20), 0);
	}
	assert_int_equal(symlink(file, sym), 0);
	assert_int_equal(link(file, hard), 0);
	assert_int_equal(symlink(logdir, loglink), 0);

	/* Two writers, any spelling. */
	expect_refused(load_two_files(file, false, sym, false), "is already used by device 'a' (line 5", "a symlink");
	expect_refused(load_two_files(file, false, dotdot, false), "the backing file", "a path with ..");
	expect_refused(load_two_files(file, false, hard, false), "the backing file", "a hard link");
	/* A writer and a reader: the reader would fail at open (the writer's
	 * lock), or worse read what the writer is changing. */
	expect_refused(load_two_files(file, true, file, false), "is also used read-only by device 'a'", "ro, then rw");
	expect_refused(load_two_files(file, false, hard, true),
		       "a device that writes it cannot share it with another device", "rw, then ro of a hard link");
	expect_refused(load_two_files(sym, true, hard, false), "also used read-only", "ro symlink, rw hard link");
	/* Readers share a file; other files are other files. */
	assert_null(load_two_files(file, true, file, true));
	assert_null(load_two_files(sym, true, hard, true));
	assert_null(load_two_files(file, false, other, false));
	assert_null(load_two_files(file, true, other, false));
	/* A log directory through a symlink is the same directory. */
	snprintf(text, sizeof(text),
		 DEV("a", TESTFE, "\"log\" { dir = \"%s\" }") DEV("b", TESTFE, "\"log\" { dir = \"%s/\" }"), logdir,
		 loglink);
	assert_true(test_load_config(text, &c, &error) < 0);
	if (!error || !strstr(error, "test.conf:11: device 'b': backend 'log' option 'dir': the log directory") ||
	    !strstr(error, "is already used by device 'a'"))
		fail_msg("a log directory through a symlink: %s", error ? error : "accepted");
	free(error);
}

/* The test-only TLS files of tests/unit/fixtures/tls. */
static char tls_dir[1000];

static void tls_path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", tls_dir, name);
}

/* An nbd-export with @opts (one line: the option's line is 4): NULL when
 * it loads, else the error (malloc'd). */
static char *load_export(const char *opts)
{
	char text[4096], *error = NULL;
	struct config *c = NULL;

	snprintf(text, sizeof(text), DEV("a", "\"nbd-export\" { unix = \"/run/t.sock\"  %s }", RAM), opts);
	if (test_load_config(text, &c, &error) == 0) {
		config_free(c);
		return NULL;
	}
	assert_non_null(error);
	return error;
}

/* The export's TLS files are checked by the validate step, as open would
 * load them: with file, line and option, before anything listens. */
static void test_tls_files(void **state)
{
	char cert[1200], key[1200], other[1200], psk[1200], opts[4096];
	char *bad_psk = test_write_file("bad.psk", "alice:abc\n"); /* malloc'd */
	static const struct {
		const char *fmt, *message; /* %1$s cert, %2$s key, %3$s other key, %4$s psk, %5$s bad psk, %6$s dir */
	} bad[] = {
		{ "tls = require tls_certificate = \"/nonexistent/c.pem\" tls_key = \"%2$s\"",
		  "option 'tls_certificate': cannot read /nonexistent/c.pem: No such file or directory" },
		{ "tls = require tls_certificate = \"%1$s\" tls_key = \"/nonexistent/k.pem\"",
		  "option 'tls_key': cannot read /nonexistent/k.pem" },
		{ "tls = allow tls_certificate = \"%6$s\" tls_key = \"%2$s\"", "/tls is not a regular file" },
		{ "tls = require tls_certificate = \"%1$s\" tls_key = \"%3$s\"",
		  "option 'tls_certificate': cannot load the certificate" },
		{ "tls = require tls_certificate = \"%1$s\" tls_key = \"%2$s\" tls_ca = \"%4$s\"",
		  "option 'tls_ca': no CA certificate in" },
		{ "tls = require tls_certificate = \"%1$s\" tls_key = \"%2$s\" tls_ca = \"%6$s\"",
		  "is not a regular file" },
		{ "tls = require tls_psk_file = \"%5$s\"", "bad.psk:1: expected USERNAME:HEXKEY" },
		{ "tls = require tls_psk_file = \"/nonexistent/p\"",
		  "option 'tls_psk_file': cannot read /nonexistent/p" },
		{ "tls = require tls_psk_file = \"%6$s\"", "/tls is not a regular file" },
		{ "tls = require tls_psk_file = \"%4$s\" tls_priority = \"NORMAL:+NO-SUCH-THING\"",
		  "option 'tls_priority': 'NORMAL:+NO-SUCH-THING:+ECDHE-PSK:+DHE-PSK:+PSK' is not valid near" },
		{ "tls = allow tls_certificate = \"%1$s\" tls_key = \"%2$s\" tls_priority = \"NONE\"",
		  "option 'tls_priority': " },
	};

	tls_path(cert, sizeof(cert), "server.pem");
	tls_path(key, sizeof(key), "server-key.pem");
	tls_path(other, sizeof(other), "other-key.pem");
	tls_path(psk, sizeof(psk), "test.psk");
	if (!BLKSERV_HAVE_TLS) {
		/* Built without GnuTLS: allow and require are refused, whatever the
		 * files; off works. */
		snprintf(opts, sizeof(opts), "tls = require tls_psk_file = \"%s\"", psk);
		char *error = load_export(opts);
		assert_non_null(error);
		assert_non_null(
			strstr(error, "option 'tls': 'require' needs TLS, and this blkservd was built without it"));
		free(error);
		assert_null(load_export("tls = off"));
		free(bad_psk);
		return;
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
		snprintf(opts, sizeof(opts), bad[i].fmt, cert, key, other, psk, bad_psk, tls_dir);
#pragma GCC diagnostic pop
		char *error = load_export(opts);
		if (!error)
			fail_msg("TLS config #%zu was accepted: %s", i, opts);
		if (!strstr(error, "test.conf:4: device 'a': frontend 'nbd-export' ") || !strstr(error, bad[i].message))
			fail_msg("TLS config #%zu: expected 'test.conf:4: ...%s', got '%s'", i, bad[i].message, error);
		free(error);
	}
	/* What loads. */
	snprintf(opts, sizeof(opts), "tls = require tls_certificate = \"%s\" tls_key = \"%s\" tls_ca = \"%s\"", cert,
		 key, cert);
	assert_null(load_export(opts));
	snprintf(opts, sizeof(opts), "tls = allow tls_psk_file = \"%s\" tls_priority = \"NORMAL\"", psk);
	assert_null(load_export(opts));
	snprintf(opts, sizeof(opts), "tls = require tls_psk_file = \"%s\" tls_certificate = \"%s\" tls_key = \"%s\"",
		 psk, cert, key);
	assert_null(load_export(opts));
	/* tls = off loads nothing at open, so nothing is checked. */
	assert_null(load_export("tls = off tls_psk_file = \"/nonexistent/p\" tls_priority = \"BOGUS\""));
	free(bad_psk);
}

int main(void)
{
	char psk[1200];

	snprintf(tls_dir, sizeof(tls_dir), "%s/tests/unit/fixtures/tls",
		 getenv("BLKSERV_TEST_SRCDIR") ? getenv("BLKSERV_TEST_SRCDIR") : ".");
	tls_path(psk, sizeof(psk), "test.psk");
	snprintf(nbd_export_required, sizeof(nbd_export_required), "unix = \"/run/t.sock\" tls_psk_file = \"%s\"", psk);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_full),          cmocka_unit_test(test_empty_config),
		cmocka_unit_test(test_shipped_config),      cmocka_unit_test(test_invalid_configs),
		cmocka_unit_test(test_missing_file),        cmocka_unit_test(test_option_ranges),
		cmocka_unit_test(test_not_a_regular_file),  cmocka_unit_test(test_valid_edge_cases),
		cmocka_unit_test(test_device_config_equal), cmocka_unit_test(test_claims_by_identity),
		cmocka_unit_test(test_tls_files),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

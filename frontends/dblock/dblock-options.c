/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The dblock frontend's options and what they mean for the kernel device. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cleanup.h"
#include "dblock.h"

static int get_uint_in(struct blkserv_device *dev, const struct blkserv_config *cfg, const char *name, uint64_t min,
		       uint64_t max, uint32_t *ret)
{
	uint64_t v;
	int r = blkserv_config_get_uint(cfg, name, &v);

	if (r < 0)
		return r;
	if (v < min || v > max) {
		blkserv_error(dev, "%s = %llu is out of range %llu..%llu", name, (unsigned long long)v,
			      (unsigned long long)min, (unsigned long long)max);
		return -ERANGE;
	}
	*ret = (uint32_t)v;
	return 0;
}

/* The kernel makes /dev/NAME, /dev/NAME-ctl and /sys/block/NAME of it. */
static bool kernel_name_is_valid(const char *name)
{
	if (!name[0] || strlen(name) > DBLOCK_MAX_NAME_LENGTH || !strcmp(name, ".") || !strcmp(name, ".."))
		return false;
	for (const char *c = name; *c; c++)
		if (*c == '/' || *c <= ' ' || *c > '~')
			return false;
	return true;
}

static int parse_name(struct blkserv_device *dev, const struct blkserv_config *cfg, struct dblock_options *o)
{
	const char *name = NULL;
	bool set = blkserv_config_get_string(cfg, "name", &name) == 0;

	if (!set)
		name = blkserv_device_name(dev);
	if (!kernel_name_is_valid(name)) {
		blkserv_error(dev,
			      "%s '%s' cannot name a dblock device: it needs 1..%u printable "
			      "characters without '/' or spaces%s",
			      set ? "name" : "the device name", name, DBLOCK_MAX_NAME_LENGTH,
			      set ? "" : " (set the frontend option name)");
		return -EINVAL;
	}
	snprintf(o->name, sizeof(o->name), "%s", name);
	return 0;
}

static int parse_max_io_size(struct blkserv_device *dev, const struct blkserv_config *cfg, struct dblock_options *o)
{
	uint64_t v;
	int r = blkserv_config_get_uint(cfg, "max_io_size", &v);

	if (r < 0)
		return r;
	if (v < DBLOCK_BLOCK_SIZE || v > DBLOCK_MAX_DATA_BYTES || v % DBLOCK_BLOCK_SIZE) {
		blkserv_error(dev, "max_io_size = %llu must be a multiple of 4K in 4K..1M", (unsigned long long)v);
		return -ERANGE;
	}
	o->max_io_size = (uint32_t)v;
	return 0;
}

/* The device itself must fit the module's limits. */
static int check_device(struct blkserv_device *dev)
{
	uint64_t size = blkserv_device_size(dev);
	uint32_t bs = blkserv_device_block_size(dev);

	if (bs != DBLOCK_BLOCK_SIZE) {
		blkserv_error(dev,
			      "block_size = %u, but dblock devices have 4096-byte blocks "
			      "(set block_size = 4096)",
			      bs);
		return -EINVAL;
	}
	if (size % DBLOCK_BLOCK_SIZE || size / DBLOCK_BLOCK_SIZE < DBLOCK_MIN_BLOCKS ||
	    size / DBLOCK_BLOCK_SIZE > DBLOCK_MAX_BLOCKS) {
		blkserv_error(dev,
			      "the device size %llu bytes is outside the module's limits "
			      "(4 MiB..12 TiB, in 4 KiB blocks)",
			      (unsigned long long)size);
		return -ERANGE;
	}
	return 0;
}

int dblock_options_parse(struct blkserv_device *dev, const struct blkserv_config *cfg, struct dblock_options *o)
{
	int r;

	memset(o, 0, sizeof(*o));
	r = check_device(dev);
	if (r >= 0)
		r = parse_name(dev, cfg, o);
	if (r >= 0)
		r = get_uint_in(dev, cfg, "threads", 1, DBLOCK_MAX_THREADS, &o->threads);
	if (r >= 0)
		r = get_uint_in(dev, cfg, "timeout", DBLOCK_MIN_TIMEOUT_SECONDS, DBLOCK_MAX_TIMEOUT_SECONDS,
				&o->timeout);
	if (r >= 0)
		r = get_uint_in(dev, cfg, "queue_depth", 1, DBLOCK_MAX_QUEUE_DEPTH, &o->queue_depth);
	if (r >= 0)
		r = parse_max_io_size(dev, cfg, o);
	if (r >= 0)
		r = blkserv_config_get_bool(cfg, "extensions", &o->extensions);
	return r;
}

uint32_t dblock_wanted_features(uint64_t caps)
{
	uint32_t f = 0;

	/* A volatile cache only where the backend honours FLUSH; otherwise
	 * the kernel must believe every write durable, and it will be. */
	if (caps & BLKSERV_CAP_FLUSH) {
		f |= DBLOCK_FEATURE_FLUSH;
		if (caps & BLKSERV_CAP_FUA)
			f |= DBLOCK_FEATURE_FUA;
	}
	if (caps & BLKSERV_CAP_TRIM)
		f |= DBLOCK_FEATURE_DISCARD;
	if (caps & BLKSERV_CAP_WRITE_ZEROES)
		f |= DBLOCK_FEATURE_WRITE_ZEROES;
	if (caps & BLKSERV_CAP_READ_ONLY)
		f |= DBLOCK_FEATURE_READ_ONLY;
	return f;
}

void dblock_features_string(uint32_t features, char *buf, size_t len)
{
	static const char *const names[] = { "flush", "fua", "discard", "write_zeroes", "read_only" };
	size_t used = 0;

	buf[0] = '\0';
	for (unsigned i = 0; i < ELEMENTSOF(names) && used < len; i++)
		if (features & (1u << i))
			used += (size_t)snprintf(buf + used, len - used, "%s%s", used ? " " : "", names[i]);
	if (!used)
		snprintf(buf, len, "none");
}

const struct blkserv_option_check dblock_option_checks[] = {
	{ "threads", 1, DBLOCK_MAX_THREADS, NULL },
	{ "timeout", DBLOCK_MIN_TIMEOUT_SECONDS, DBLOCK_MAX_TIMEOUT_SECONDS, NULL },
	{ "queue_depth", 1, DBLOCK_MAX_QUEUE_DEPTH, NULL },
	{ "max_io_size", DBLOCK_BLOCK_SIZE, DBLOCK_MAX_DATA_BYTES, NULL },
	BLKSERV_OPTION_CHECK_END,
};

/* What dblock_options_parse refuses at open, and the kernel name, which
 * two devices cannot share. */
int dblock_validate(const struct blkserv_config *cfg)
{
	uint64_t size = blkserv_config_device_size(cfg), max_io = DBLOCK_MAX_DATA_BYTES;
	const char *name = NULL;
	bool set = blkserv_config_get_string(cfg, "name", &name) == 0;

	if (!set)
		name = blkserv_config_device_name(cfg);
	if (!kernel_name_is_valid(name))
		return blkserv_config_error(cfg, set ? "name" : NULL,
					    "%s '%s' cannot name a dblock device: it needs 1..%u printable characters "
					    "without '/' or spaces%s",
					    set ? "name" : "the device name", name, DBLOCK_MAX_NAME_LENGTH,
					    set ? "" : " (set the frontend option name)");
	(void)blkserv_config_get_uint(cfg, "max_io_size", &max_io);
	if (max_io % DBLOCK_BLOCK_SIZE)
		return blkserv_config_error(cfg, "max_io_size", "%llu is not a multiple of 4K",
					    (unsigned long long)max_io);
	if (blkserv_config_device_block_size(cfg) != DBLOCK_BLOCK_SIZE)
		return blkserv_config_error(cfg, NULL,
					    "block_size = %u, but dblock devices have 4096-byte blocks "
					    "(set block_size = 4096)",
					    blkserv_config_device_block_size(cfg));
	if (size && (size % DBLOCK_BLOCK_SIZE || size / DBLOCK_BLOCK_SIZE < DBLOCK_MIN_BLOCKS ||
		     size / DBLOCK_BLOCK_SIZE > DBLOCK_MAX_BLOCKS))
		return blkserv_config_error(cfg, NULL,
					    "the device size %llu bytes is outside the module's limits "
					    "(4 MiB..12 TiB, in 4 KiB blocks)",
					    (unsigned long long)size);
	return blkserv_config_claim(cfg, set ? "name" : NULL, "dblock name", name);
}

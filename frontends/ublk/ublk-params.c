/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Options and SET_PARAMS contents: pure functions of the configuration and
 * the backend's capabilities, so they are unit-tested without a kernel.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "ublk.h"

/* Discard and write-zeroes requests are cut at 1 GiB so that one request
 * never holds a queue slot for long. */
#define UBLK_MAX_DISCARD_SECTORS ((1u << 30) >> 9)

static int get_uint(struct blkserv_device *dev, const struct blkserv_config *cfg, const char *name, uint64_t min,
		    uint64_t max, uint64_t *ret)
{
	int r = blkserv_config_get_uint(cfg, name, ret);

	if (r < 0)
		return blkserv_error_errno(dev, r, "cannot read option '%s': %m", name);
	if (*ret < min || *ret > max) {
		blkserv_error(dev, "option '%s' = %llu is out of range: it must be %llu..%llu", name,
			      (unsigned long long)*ret, (unsigned long long)min, (unsigned long long)max);
		return -ERANGE;
	}
	return 0;
}

static uint32_t default_queues(void)
{
	int cpus = get_nprocs();

	if (cpus < 1)
		return 1;
	return cpus > UBLK_DEFAULT_MAX_QUEUES ? UBLK_DEFAULT_MAX_QUEUES : (uint32_t)cpus;
}

static int parse_queues(struct blkserv_device *dev, const struct blkserv_config *cfg, uint32_t *ret)
{
	uint64_t v;
	int r;

	if (!blkserv_config_is_set(cfg, "queues")) {
		*ret = default_queues();
		return 0;
	}
	r = get_uint(dev, cfg, "queues", 1, UBLK_MAX_QUEUES, &v);
	if (r >= 0)
		*ret = (uint32_t)v;
	return r;
}

static int parse_max_io(struct blkserv_device *dev, const struct blkserv_config *cfg, uint32_t *ret)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	uint32_t bs = blkserv_device_block_size(dev);
	uint64_t v;
	int r;

	r = get_uint(dev, cfg, "max_io_size", page, UBLK_MAX_IO_BUF_BYTES, &v);
	if (r < 0)
		return r;
	if (v % page || (bs && v % bs)) {
		blkserv_error(dev,
			      "option 'max_io_size' = %llu must be a multiple of the page size (%llu) "
			      "and of the block size (%u)",
			      (unsigned long long)v, (unsigned long long)page, bs);
		return -EINVAL;
	}
	*ret = (uint32_t)v;
	return 0;
}

static int parse_id(struct blkserv_device *dev, const struct blkserv_config *cfg, uint32_t *ret)
{
	uint64_t v;
	int r;

	*ret = UBLK_DEV_ID_AUTO;
	if (!blkserv_config_is_set(cfg, "id"))
		return 0;
	/* Minors are 20 bits; the char and block devices share the id. */
	r = get_uint(dev, cfg, "id", 0, (1u << 20) - 1, &v);
	if (r >= 0)
		*ret = (uint32_t)v;
	return r;
}

int ublk_options_parse(struct blkserv_device *dev, const struct blkserv_config *cfg, struct ublk_options *ret)
{
	struct ublk_options o = {};
	uint64_t v;
	int r;

	r = parse_queues(dev, cfg, &o.queues);
	if (r < 0)
		return r;
	r = get_uint(dev, cfg, "depth", 1, UBLK_MAX_QUEUE_DEPTH, &v);
	if (r < 0)
		return r;
	o.depth = (uint32_t)v;
	r = parse_max_io(dev, cfg, &o.max_io_size);
	if (r < 0)
		return r;
	r = parse_id(dev, cfg, &o.dev_id);
	if (r < 0)
		return r;
	r = blkserv_config_get_bool(cfg, "recovery", &o.recovery);
	if (r < 0)
		return blkserv_error_errno(dev, r, "cannot read option 'recovery': %m");
	*ret = o;
	return 0;
}

const struct blkserv_option_check ublk_option_checks[] = {
	{ "queues", 1, UBLK_MAX_QUEUES, NULL },
	{ "depth", 1, UBLK_MAX_QUEUE_DEPTH, NULL },
	{ "max_io_size", 4096, UBLK_MAX_IO_BUF_BYTES, NULL },
	{ "id", 0, (1u << 20) - 1, NULL }, /* minors are 20 bits */
	BLKSERV_OPTION_CHECK_END,
};

/* What ublk_options_parse refuses at open, and the device number, which
 * two devices cannot share. */
int ublk_validate(const struct blkserv_config *cfg)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), max_io = 512 << 10, id;
	uint32_t bs = blkserv_config_device_block_size(cfg);
	char key[32];

	(void)blkserv_config_get_uint(cfg, "max_io_size", &max_io);
	if (max_io < page || max_io % page || (bs && max_io % bs))
		return blkserv_config_error(cfg, "max_io_size",
					    "%llu must be a multiple of the page size (%llu) "
					    "and of the block size (%u)",
					    (unsigned long long)max_io, (unsigned long long)page, bs);
	if (blkserv_config_get_uint(cfg, "id", &id) < 0)
		return 0;
	snprintf(key, sizeof(key), "%llu", (unsigned long long)id);
	return blkserv_config_claim(cfg, "id", "ublk id", key);
}

uint64_t ublk_wanted_flags(const struct ublk_options *o)
{
	uint64_t flags = UBLK_F_CMD_IOCTL_ENCODE;

	/* REISSUE: requests the dead daemon held are sent again to the new
	 * one instead of failing with EIO, so a mounted file system never
	 * sees an error; a write may then be applied twice, which the SDK
	 * requires backends to tolerate. */
	if (o->recovery)
		flags |= UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE;
	return flags;
}

static int shift_of(uint32_t v)
{
	if (v == 0 || (v & (v - 1)))
		return -1;
	return __builtin_ctz(v);
}

static void set_discard(uint32_t block_size, uint64_t caps, struct bs_ublk_params *p)
{
	if (!(caps & (BLKSERV_CAP_TRIM | BLKSERV_CAP_WRITE_ZEROES)))
		return;
	p->types |= UBLK_PARAM_TYPE_DISCARD;
	/* The driver wants a granularity even for write-zeroes alone. */
	p->discard.discard_granularity = block_size;
	if (caps & BLKSERV_CAP_TRIM) {
		p->discard.max_discard_sectors = UBLK_MAX_DISCARD_SECTORS;
		p->discard.max_discard_segments = 1;
	}
	if (caps & BLKSERV_CAP_WRITE_ZEROES)
		p->discard.max_write_zeroes_sectors = UBLK_MAX_DISCARD_SECTORS;
}

int ublk_build_params(uint64_t size, uint32_t block_size, uint64_t caps, uint32_t max_io_size,
		      struct bs_ublk_params *ret)
{
	long page = sysconf(_SC_PAGESIZE);
	int bs_shift = shift_of(block_size);
	struct bs_ublk_params p = {};

	if (bs_shift < 9 || (1L << bs_shift) > page || size == 0 || size % block_size || max_io_size < block_size)
		return -EINVAL;
	p.len = sizeof(p);
	p.types = UBLK_PARAM_TYPE_BASIC;
	p.basic.logical_bs_shift = (uint8_t)bs_shift;
	p.basic.physical_bs_shift = (uint8_t)bs_shift;
	p.basic.io_min_shift = (uint8_t)bs_shift;
	p.basic.io_opt_shift = (uint8_t)bs_shift;
	p.basic.max_sectors = max_io_size >> 9;
	p.basic.dev_sectors = size >> 9;
	if (caps & BLKSERV_CAP_READ_ONLY)
		p.basic.attrs |= UBLK_ATTR_READ_ONLY;
	if (caps & BLKSERV_CAP_ROTATIONAL)
		p.basic.attrs |= UBLK_ATTR_ROTATIONAL;
	/* Without a volatile cache the kernel sends no FLUSH and treats a
	 * completed write as durable: only a backend that flushes gets one. */
	if (caps & BLKSERV_CAP_FLUSH) {
		p.basic.attrs |= UBLK_ATTR_VOLATILE_CACHE;
		if (caps & BLKSERV_CAP_FUA)
			p.basic.attrs |= UBLK_ATTR_FUA;
	}
	if (!(caps & BLKSERV_CAP_READ_ONLY))
		set_discard(block_size, caps, &p);
	*ret = p;
	return 0;
}

void ublk_flags_string(uint64_t flags, char *buf, size_t len)
{
	static const char *const names[] = {
		"ZERO_COPY",        "URING_CMD_COMP_IN_TASK", "NEED_GET_DATA", "USER_RECOVERY", "USER_RECOVERY_REISSUE",
		"UNPRIVILEGED_DEV", "CMD_IOCTL_ENCODE",       "USER_COPY",     "ZONED",         "USER_RECOVERY_FAIL_IO",
		"UPDATE_SIZE",      "AUTO_BUF_REG",           "QUIESCE",       "PER_IO_DAEMON", "BUF_REG_OFF_DAEMON",
	};
	size_t n = 0;

	buf[0] = '\0';
	for (unsigned bit = 0; bit < 64 && n < len; bit++) {
		if (!(flags & (1ULL << bit)))
			continue;
		if (bit < sizeof(names) / sizeof(names[0]))
			n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? "|" : "", names[bit]);
		else
			n += (size_t)snprintf(buf + n, len - n, "%sbit%u", n ? "|" : "", bit);
	}
	if (n == 0)
		snprintf(buf, len, "none");
}

const char *ublk_state_name(uint16_t state)
{
	switch (state) {
	case UBLK_S_DEV_DEAD:
		return "DEAD";
	case UBLK_S_DEV_LIVE:
		return "LIVE";
	case UBLK_S_DEV_QUIESCED:
		return "QUIESCED";
	}
	return "UNKNOWN";
}

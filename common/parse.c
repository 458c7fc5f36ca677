/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "parse.h"

static int parse_unsigned(const char *s, int base, uint64_t *ret)
{
	char *end;
	unsigned long long v;

	/* strtoull accepts leading blanks and a minus sign: refuse both. */
	if (!s || !isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, base);
	if (errno == ERANGE)
		return -ERANGE;
	if (errno || end == s || *end != '\0')
		return -EINVAL;
	*ret = v;
	return 0;
}

int parse_uint(const char *s, uint64_t *ret)
{
	return parse_unsigned(s, 0, ret);
}

int parse_uint_dec(const char *s, uint64_t *ret)
{
	return parse_unsigned(s, 10, ret);
}

int parse_int_dec(const char *s, int64_t *ret)
{
	bool neg = s && s[0] == '-';
	uint64_t v;
	int r = parse_unsigned(neg ? s + 1 : s, 10, &v);

	if (r < 0)
		return r;
	if (v > (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX))
		return -ERANGE;
	*ret = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

int parse_pid(const char *s, pid_t *ret)
{
	uint64_t v;
	int r = parse_uint_dec(s, &v);

	if (r < 0)
		return r;
	if (v == 0 || v > INT32_MAX)
		return -ERANGE;
	*ret = (pid_t)v;
	return 0;
}

int parse_uint_file(const char *path, uint64_t *ret)
{
	char buf[32];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf));
	if (n < 0)
		n = -errno;
	(void)close(fd);
	if (n < 0)
		return (int)n;
	if (n == (ssize_t)sizeof(buf)) /* no number is that long */
		return -EINVAL;
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	buf[n] = '\0';
	return parse_uint_dec(buf, ret);
}

static int suffix_shift(const char *suffix, unsigned *ret_shift)
{
	static const struct {
		char letter;
		unsigned shift;
	} table[] = { { 'K', 10 }, { 'M', 20 }, { 'G', 30 }, { 'T', 40 }, { 'P', 50 } };

	if (suffix[0] == '\0') {
		*ret_shift = 0;
		return 0;
	}
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		if (toupper((unsigned char)suffix[0]) != table[i].letter)
			continue;
		/* Accept "K", "KB", "KiB". */
		if (suffix[1] == '\0' || strcasecmp(suffix + 1, "B") == 0 || strcasecmp(suffix + 1, "iB") == 0) {
			*ret_shift = table[i].shift;
			return 0;
		}
	}
	if (strcasecmp(suffix, "B") == 0) {
		*ret_shift = 0;
		return 0;
	}
	return -EINVAL;
}

int parse_size(const char *s, uint64_t *ret)
{
	char *end;
	unsigned long long v;
	unsigned shift;
	int r;

	if (!s || !isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (errno || end == s)
		return -EINVAL;
	r = suffix_shift(end, &shift);
	if (r < 0)
		return r;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*ret = (uint64_t)v << shift;
	return 0;
}

int parse_bool(const char *s, bool *ret)
{
	static const char *const yes[] = { "1", "yes", "true", "on" };
	static const char *const no[] = { "0", "no", "false", "off" };

	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*ret = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*ret = false;
			return 0;
		}
	}
	return -EINVAL;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "netaddr.h"
#include "parse.h"

/* "HOST:PORT", "[V6]:PORT" or ":PORT" into host (NULL: any) and port. */
int split_host_port(const char *s, char **ret_host, char **ret_port)
{
	const char *colon = strrchr(s, ':');
	_cleanup_free_ char *host = NULL;
	size_t hlen;

	if (!colon || colon[1] == '\0')
		return -EINVAL;
	hlen = (size_t)(colon - s);
	if (hlen >= 2 && s[0] == '[' && s[hlen - 1] == ']')
		host = strndup(s + 1, hlen - 2);
	else if (hlen > 0 && !memchr(s, ':', hlen))
		host = strndup(s, hlen);
	else if (hlen > 0)
		return -EINVAL; /* an IPv6 address needs brackets */
	if (hlen > 0 && !host)
		return -ENOMEM;
	*ret_port = strdup(colon + 1);
	if (!*ret_port)
		return -ENOMEM;
	*ret_host = TAKE_PTR(host);
	return 0;
}

/* A TCP port is 1..65535 in decimal: getaddrinfo would take 75536 as 10000. */
int parse_port(const char *s, unsigned *ret)
{
	uint64_t v;

	if (s[0] < '0' || s[0] > '9')
		return -EINVAL;
	if (parse_uint_dec(s, &v) < 0 || v < 1 || v > 65535)
		return -ERANGE;
	*ret = (unsigned)v;
	return 0;
}

void tcp_claim_key(const char *host, unsigned port, char *buf, size_t len)
{
	if (!host || !host[0])
		snprintf(buf, len, "*:%u", port);
	else if (strcmp(host, "0.0.0.0") == 0)
		snprintf(buf, len, "*.*.*.*:%u", port);
	else if (strcmp(host, "::") == 0)
		snprintf(buf, len, "[*]:%u", port);
	else
		snprintf(buf, len, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* TCP addresses as a config writes them: "HOST:PORT", "[IPV6]:PORT" or
 * ":PORT" (every address). */
#ifndef BLKSERV_NETADDR_H
#define BLKSERV_NETADDR_H

#include <stddef.h>

/* Split @s into *ret_host (NULL for ":PORT") and *ret_port (malloc'd).
 * -EINVAL if it is not one of the forms above. */
int split_host_port(const char *s, char **ret_host, char **ret_port);
/* A TCP port, 1..65535 in decimal (getaddrinfo would take 75536 as 10000):
 * -EINVAL if not a number, -ERANGE if out of range. */
int parse_port(const char *s, unsigned *ret);

/* The key of a TCP address claim (config conflicts): "HOST:PORT",
 * "[V6]:PORT", or a glob for a wildcard host ("*:PORT" for every address,
 * "*.*.*.*:PORT" for 0.0.0.0, "[*]:PORT" for ::). */
void tcp_claim_key(const char *host, unsigned port, char *buf, size_t len);

#endif

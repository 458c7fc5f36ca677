/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* netlink.h: the kernel's "nbd" generic netlink family, through libnl-genl-3. */
#ifndef BLKSERV_NBD_NETLINK_H
#define BLKSERV_NBD_NETLINK_H

#include <stdbool.h>
#include <stdint.h>

struct nbd_nl_connect {
	bool have_index; /* false: the kernel picks (or creates) a free device */
	uint32_t index;
	uint64_t size;
	uint64_t block_size;
	uint64_t timeout;           /* seconds */
	uint64_t dead_conn_timeout; /* seconds */
	uint64_t server_flags;
	const char *backend_id;
	const int *fds; /* the kernel's ends of the connections */
	unsigned nfds;
};

/* 1 if the "nbd" family exists (resolving it may load the module), 0 if
 * not, -errno if generic netlink itself is unusable. */
int nbd_nl_family_present(void);
/* NBD_CMD_CONNECT: 0 and the device index, or the kernel's -errno. */
int nbd_nl_connect(const struct nbd_nl_connect *a, uint32_t *ret_index);
/* NBD_CMD_RECONFIGURE of /dev/nbd@a->index (identified by a->backend_id):
 * its timeouts, and each of a->fds in place of a socket the kernel marked
 * dead.  The kernel drops fds it has no dead socket for and still returns
 * 0: the caller checks which it took.  0 or the kernel's -errno. */
int nbd_nl_reconfigure(const struct nbd_nl_connect *a);
/* NBD_CMD_DISCONNECT of /dev/nbd@index: 0 or -errno. */
int nbd_nl_disconnect(uint32_t index);

#endif

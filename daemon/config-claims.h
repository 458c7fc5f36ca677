/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Resources the devices' plugins claim at config time (sockets, files,
 * kernel names), and when two claims are one resource (config-claims.c). */
#ifndef BLKSERVD_CONFIG_CLAIMS_H
#define BLKSERVD_CONFIG_CLAIMS_H

#include <stdbool.h>
#include <sys/types.h>

/* A resource a device's plugin claims (blkserv_config_claim). */
struct claim {
	char *resource;
	char *key;
	char *where;       /* "device 'a': frontend 'x' option 'y'" */
	const char *owner; /* the device that claims it; NULL: the metrics section */
	int line;
	bool shared;  /* blkserv_config_claim_shared: only exclusive claims conflict with it */
	bool have_id; /* a path that exists: its identity, so hard links conflict too */
	dev_t id_dev;
	ino_t id_ino;
};

/* Fill @c's key (@key normalized: symlinks resolved as far as the path
 * exists) and, for a path that exists, its identity.  -ENOMEM. */
int claim_set_key(struct claim *c, const char *key);
/* @a and @b name the same resource and at least one is exclusive. */
bool claims_conflict(const struct claim *a, const struct claim *b);

#endif

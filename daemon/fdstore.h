/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* systemd's fd store: file descriptors that outlive a daemon restart. */
#ifndef BLKSERVD_FDSTORE_H
#define BLKSERVD_FDSTORE_H

/* Adopt the fds systemd passed us (LISTEN_FDS/LISTEN_FDNAMES). */
void fdstore_init(void);
/* Close and drop from the store every inherited fd no device took. */
void fdstore_release_unclaimed(void);

#endif

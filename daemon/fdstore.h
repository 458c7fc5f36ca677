/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* File descriptors that outlive the process: systemd's fd store, and our
 * own copies carried across an in-place upgrade (exec). */
#ifndef BLKSERVD_FDSTORE_H
#define BLKSERVD_FDSTORE_H

#include <stdbool.h>

/* Adopt the fds a previous image of this process (an upgrade) or systemd
 * (LISTEN_FDS/LISTEN_FDNAMES) passed us. */
void fdstore_init(void);
/* Close and drop from the store every inherited fd no device took. */
void fdstore_release_unclaimed(void);
/* An upgrade is under way: what is stored from now on goes across the
 * exec, so blkserv_fd_store succeeds also without systemd. */
void fdstore_set_exec_pending(bool pending);
/* Make every fd stored so far available to blkserv_fd_take again: the
 * devices of this same process start again (an exec that failed). */
void fdstore_reinherit(void);
/* Before exec: everything stored or unclaimed is left open across it and
 * named in the environment for the next image's fdstore_init.  Returns
 * the number of fds or -errno. */
int fdstore_prepare_exec(void);
/* The exec failed: close-on-exec again, environment cleaned. */
void fdstore_exec_failed(void);

#endif

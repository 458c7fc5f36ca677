/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What systemd is doing with our unit. */
#ifndef BLKSERVD_SYSTEMD_JOB_H
#define BLKSERVD_SYSTEMD_JOB_H

#include <stdbool.h>

/* True when the stop under way is part of a restart of our unit
 * (systemctl restart, a package upgrade): the devices are to be kept for
 * the next process.  False outside systemd or when it cannot be told. */
bool systemd_restart_pending(void);

#endif

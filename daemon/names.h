/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef BLKSERVD_NAMES_H
#define BLKSERVD_NAMES_H

struct blkserv_device;

/* Record that the device's kernel device carries its name (for udev). */
void names_publish(const struct blkserv_device *dev);
/* Forget it, just before the frontend removes the kernel device. */
void names_withdraw(const struct blkserv_device *dev);
/* Drop every name a previous daemon left (at start, before devices). */
void names_reset(void);

#endif

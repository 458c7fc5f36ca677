/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Small macros shared by the daemon and plugins. */
#ifndef BLKSERV_MACRO_H
#define BLKSERV_MACRO_H

#include <stddef.h>

/* The struct of type @type whose member @member @ptr points to. */
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* An intended fall-through to the next case label; gcc accepts a comment
 * for -Wimplicit-fallthrough, clang only the attribute. */
#define _fallthrough_ __attribute__((__fallthrough__))

#endif

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* In-place upgrade: re-execute the daemon, keeping its PID and devices. */
#ifndef BLKSERVD_UPGRADE_H
#define BLKSERVD_UPGRADE_H

#include <stdbool.h>

/* From main: remember argv and the binary we run from; adopt what a
 * previous image of this process left in the environment. */
void upgrade_init(char **argv);
/* The path this process was executed from (the file there now is the
 * one an upgrade executes by default). */
const char *upgrade_default_binary(void);
/* How many times this PID has executed itself (0: first image). */
unsigned upgrade_generation(void);
/* Why the upgrade into this image was undone (NULL: it was not). */
const char *upgrade_failure(void);
/* This image was executed by an upgrade and can still go back. */
bool upgrade_in_progress(void);
/* Every device started: no way back needed any more. */
void upgrade_done(void);
/* For the tests of the way back: in an image started by an upgrade,
 * -ENOTRECOVERABLE for the device named by the environment variable
 * BLKSERV_TEST_UPGRADE_FAIL_DEVICE, as if its start had failed. */
int upgrade_test_failure(const char *device);

/* Run @binary --check-config on @config; -errno with *ret_error set if it
 * refuses it or cannot run. */
int upgrade_preflight(const char *binary, const char *config, const char *plugin_dir, char **ret_error);
/* Execute @binary with our argv and every stored fd; returns -errno only
 * if the exec failed (then nothing has changed). */
int upgrade_exec(const char *binary);
/* In an image started by an upgrade that cannot start its devices:
 * execute the previous binary again, telling it @reason.  Returns -errno
 * if impossible. */
int upgrade_fall_back(const char *reason);

#endif

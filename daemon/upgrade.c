/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * In-place upgrade: the daemon re-executes a binary (by default the one it
 * was started from, as it is on disk now) keeping its PID, so systemd sees
 * no restart, and hands every device over through fds left open across the
 * exec (fdstore.c).  Before: the new binary must pass --check-config on the
 * running config.  After: if the new image cannot start every device, it
 * hands them back to the old binary, which it can still execute through a
 * descriptor opened on it before the exec (BLKSERV_FALLBACK_FD), even when
 * a package upgrade has replaced the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "fdstore.h"
#include "log.h"
#include "parse.h"
#include "upgrade.h"

#define FALLBACK_ENV "BLKSERV_FALLBACK_FD"
#define GENERATION_ENV "BLKSERV_GENERATION"
#define FAILED_ENV "BLKSERV_UPGRADE_FAILED"
#define PREFLIGHT_TIMEOUT_MS 30000

static char **saved_argv;
static char self_path[PATH_MAX];
static unsigned generation;
static int fallback_fd = -1;
static char *failure; /* why the last upgrade was undone, from FAILED_ENV */

static unsigned env_uint(const char *name)
{
	const char *v = getenv(name);
	uint64_t n = 0;

	if (v && (parse_uint(v, &n) < 0 || n > UINT32_MAX))
		n = 0;
	return (unsigned)n;
}

void upgrade_init(char **argv)
{
	ssize_t n = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
	const char *deleted = " (deleted)";
	const char *fd = getenv(FALLBACK_ENV);
	uint64_t v;

	saved_argv = argv;
	if (n < 0)
		n = 0;
	self_path[n] = '\0';
	/* A package upgrade replaced the file we run from: its new version
	 * is at the same path. */
	if ((size_t)n > strlen(deleted) && strcmp(self_path + n - strlen(deleted), deleted) == 0)
		self_path[n - strlen(deleted)] = '\0';
	generation = env_uint(GENERATION_ENV);
	if (fd && parse_uint(fd, &v) == 0 && v >= 3 && v <= INT32_MAX && fcntl((int)v, F_SETFD, FD_CLOEXEC) == 0)
		fallback_fd = (int)v;
	if (getenv(FAILED_ENV))
		failure = strdup(getenv(FAILED_ENV));
	(void)unsetenv(FALLBACK_ENV);
	(void)unsetenv(FAILED_ENV);
}

const char *upgrade_default_binary(void)
{
	return self_path;
}

unsigned upgrade_generation(void)
{
	return generation;
}

const char *upgrade_failure(void)
{
	return failure;
}

bool upgrade_in_progress(void)
{
	return fallback_fd >= 0;
}

void upgrade_done(void)
{
	fallback_fd = safe_close(fallback_fd);
}

int upgrade_test_failure(const char *device)
{
	const char *name = getenv("BLKSERV_TEST_UPGRADE_FAIL_DEVICE");

	if (!upgrade_in_progress() || !name || strcmp(name, device) != 0)
		return 0;
	log_error("%s: failing its start as BLKSERV_TEST_UPGRADE_FAIL_DEVICE asks", device);
	return -ENOTRECOVERABLE;
}

/* ---- before the exec ------------------------------------------------ */

static int wait_child(pid_t pid, int out_fd, char *msg, size_t len)
{
	struct timespec start, now;
	size_t used = 0;
	int status;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		struct pollfd p = { .fd = out_fd, .events = POLLIN };
		clock_gettime(CLOCK_MONOTONIC, &now);
		long ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
		if (ms >= PREFLIGHT_TIMEOUT_MS) {
			(void)kill(pid, SIGKILL);
			(void)waitpid(pid, &status, 0);
			snprintf(msg, len, "it did not finish --check-config within %d s", PREFLIGHT_TIMEOUT_MS / 1000);
			return -ETIMEDOUT;
		}
		if (poll(&p, 1, (int)(PREFLIGHT_TIMEOUT_MS - ms)) <= 0)
			continue;
		ssize_t n = read(out_fd, msg + used, len - 1 - used);
		if (n <= 0)
			break;
		used += (size_t)n;
		if (used == len - 1)
			break;
	}
	msg[used] = '\0';
	msg[strcspn(msg, "\n")] = '\0';
	if (waitpid(pid, &status, 0) < 0)
		return -errno;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (!msg[0])
		snprintf(msg, len, "--check-config %s %d", WIFEXITED(status) ? "exited with" : "was killed by signal",
			 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	return -EINVAL;
}

int upgrade_preflight(const char *binary, const char *config, const char *plugin_dir, char **ret_error)
{
	char msg[1024] = "";
	/* execve's argv is char *const[]; the strings are not written. */
	char *args[8] = { (char *)binary, (char *)"--check-config", (char *)"-c", (char *)config, NULL };
	posix_spawn_file_actions_t fa;
	int pipefd[2], r;
	pid_t pid;

	if (access(binary, X_OK) < 0) {
		r = -errno;
		(void)asprintf(ret_error, "cannot execute %s: %s", binary, strerror(-r));
		return r;
	}
	if (plugin_dir) {
		args[4] = (char *)"--plugin-dir";
		args[5] = (char *)plugin_dir;
	}
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDERR_FILENO);
	r = -posix_spawn(&pid, binary, &fa, NULL, args, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(pipefd[1]);
	if (r == 0)
		r = wait_child(pid, pipefd[0], msg, sizeof(msg));
	else
		snprintf(msg, sizeof(msg), "%s", strerror(-r));
	close(pipefd[0]);
	if (r < 0 && ret_error)
		(void)asprintf(ret_error, "%s refuses the running config: %s", binary, msg);
	return r;
}

/* ---- the exec ------------------------------------------------------- */

static int exec_image(int binary_fd, const char *binary)
{
	char gen[16];
	int n = fdstore_prepare_exec();

	if (n < 0)
		return n;
	snprintf(gen, sizeof(gen), "%u", generation + 1);
	(void)setenv(GENERATION_ENV, gen, 1);
	log_info("executing %s with %d fd%s of the devices", binary, n, n == 1 ? "" : "s");
	if (binary_fd >= 0)
		syscall(SYS_execveat, binary_fd, "", saved_argv, environ, AT_EMPTY_PATH);
	else
		execv(binary, saved_argv);
	int r = -errno;
	fdstore_exec_failed();
	(void)unsetenv(GENERATION_ENV);
	return r;
}

int upgrade_exec(const char *binary)
{
	/* Ourselves as we are now, whatever later happens to the file. */
	int self = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	char fd[16];
	int r;

	if (self < 0)
		return -errno;
	snprintf(fd, sizeof(fd), "%d", self);
	(void)fcntl(self, F_SETFD, 0);
	(void)setenv(FALLBACK_ENV, fd, 1);
	(void)unsetenv(FAILED_ENV);
	r = exec_image(-1, binary);
	(void)unsetenv(FALLBACK_ENV);
	close(self);
	return r;
}

int upgrade_fall_back(const char *reason)
{
	int fd = fallback_fd;
	int r;

	if (fd < 0)
		return -ENOENT;
	fallback_fd = -1;
	/* Close-on-exec is fine for execveat of an ELF file, and the
	 * previous binary must not inherit a descriptor of itself. */
	(void)setenv(FAILED_ENV, reason, 1);
	r = exec_image(fd, "the previous binary");
	(void)unsetenv(FAILED_ENV);
	close(fd);
	return r;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * File descriptors that outlive the daemon process.  Entries are named
 * "DEVICE/KEY".  They travel two ways, and the next process reads both the
 * same way (LISTEN_FDS/LISTEN_FDNAMES, sd_listen_fds_with_names):
 *
 *  - systemd's fd store: under systemd (NOTIFY_SOCKET set and the unit has
 *    FileDescriptorStoreMax=) a stored fd is handed to the next daemon after
 *    a crash or a restart;
 *  - an in-place upgrade: the daemon keeps its own copy of every stored fd
 *    and, when it re-executes itself, passes them on as systemd would.
 *
 * Frontends store from their stop, which the daemon may run for several
 * devices at once, so the registry has a lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "cleanup.h"
#include "device.h"
#include "fdstore.h"
#include "log.h"
#include "parse.h"

#define HANDOVER_ENV "BLKSERV_HANDOVER_FDS"

struct fd_entry {
	char *name;
	int fd;
	struct fd_entry *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct fd_entry *inherited; /* passed to us, not yet taken */
static struct fd_entry *stored;    /* our copies of what we stored */
static bool exec_pending;          /* an upgrade will carry them across exec */

static void entry_free(struct fd_entry *e)
{
	safe_close(e->fd);
	free(e->name);
	free(e);
}

static int entry_push(struct fd_entry **list, const char *name, int fd)
{
	struct fd_entry *e = calloc(1, sizeof(*e));

	if (!e || !(e->name = strdup(name))) {
		free(e);
		return -ENOMEM;
	}
	e->fd = fd;
	e->next = *list;
	*list = e;
	return 0;
}

/* Unlink and return the entry named @name, or NULL. */
static struct fd_entry *entry_pop(struct fd_entry **list, const char *name)
{
	for (struct fd_entry **p = list; *p; p = &(*p)->next) {
		struct fd_entry *e = *p;
		if (strcmp(e->name, name) == 0) {
			*p = e->next;
			return e;
		}
	}
	return NULL;
}

/* The fds a previous image of this process left us in HANDOVER_ENV. */
static void adopt_handover(void)
{
	const char *list = getenv(HANDOVER_ENV);
	_cleanup_free_ char *copy = list ? strdup(list) : NULL;
	char *save = NULL;

	for (char *line = copy ? strtok_r(copy, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
		char *colon = strchr(line, ':');
		uint64_t fd;

		if (!colon || (*colon = '\0', parse_uint(line, &fd) < 0) || fd < 3 || fd > INT32_MAX ||
		    fcntl((int)fd, F_SETFD, FD_CLOEXEC) < 0) {
			log_warning("ignoring a bad entry '%s' in %s", line, HANDOVER_ENV);
			continue;
		}
		if (entry_push(&inherited, colon + 1, (int)fd) < 0)
			safe_close((int)fd);
		else
			log_debug("took over fd %d from the previous binary: %s", (int)fd, colon + 1);
	}
	(void)unsetenv(HANDOVER_ENV);
}

void fdstore_init(void)
{
	char **names = NULL;
	int n;

	adopt_handover();
	n = sd_listen_fds_with_names(1, &names);

	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;

		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
		if (entry_push(&inherited, names[i], fd) < 0)
			safe_close(fd);
		else
			log_debug("inherited fd %d: %s", fd, names[i]);
		free(names[i]);
	}
	free(names);
}

static int entry_name(struct blkserv_device *dev, const char *key, char *buf, size_t len)
{
	if (strpbrk(key, ":\n") || strpbrk(device_name(dev), ":\n") ||
	    snprintf(buf, len, "%s/%s", device_name(dev), key) >= (int)len)
		return -EINVAL;
	return 0;
}

static int notify_store(const char *state, int *fds, unsigned nfds)
{
	if (!getenv("NOTIFY_SOCKET"))
		return -EOPNOTSUPP;
	return sd_pid_notify_with_fds(0, 0, state, fds, nfds);
}

static int keep_copy(const char *name, int fd)
{
	int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	int r;

	if (copy < 0)
		return -errno;
	pthread_mutex_lock(&lock);
	struct fd_entry *old = entry_pop(&stored, name);
	r = entry_push(&stored, name, copy);
	pthread_mutex_unlock(&lock);
	if (old)
		entry_free(old);
	if (r < 0)
		safe_close(copy);
	return r;
}

int blkserv_fd_store(struct blkserv_device *dev, const char *key, int fd)
{
	char name[256], state[300];
	int r, sent;

	r = entry_name(dev, key, name, sizeof(name));
	if (r < 0)
		return r;
	r = keep_copy(name, fd);
	if (r < 0)
		return r;
	snprintf(state, sizeof(state), "FDSTORE=1\nFDNAME=%s", name);
	sent = notify_store(state, &fd, 1);
	if (sent < 0 && sent != -EOPNOTSUPP)
		return sent;
	/* Without systemd the fd survives only an in-place upgrade. */
	return sent > 0 || exec_pending ? 0 : -EOPNOTSUPP;
}

int blkserv_fd_take(struct blkserv_device *dev, const char *key)
{
	char name[256];
	struct fd_entry *e;
	int fd;

	if (entry_name(dev, key, name, sizeof(name)) < 0)
		return -EINVAL;
	pthread_mutex_lock(&lock);
	e = entry_pop(&inherited, name);
	pthread_mutex_unlock(&lock);
	if (!e)
		return -ENOENT;
	fd = e->fd;
	free(e->name);
	free(e);
	return fd;
}

void blkserv_fd_forget(struct blkserv_device *dev, const char *key)
{
	char name[256], state[300];
	struct fd_entry *e;

	if (entry_name(dev, key, name, sizeof(name)) < 0)
		return;
	pthread_mutex_lock(&lock);
	e = entry_pop(&stored, name);
	pthread_mutex_unlock(&lock);
	if (e)
		entry_free(e);
	snprintf(state, sizeof(state), "FDSTOREREMOVE=1\nFDNAME=%s", name);
	(void)notify_store(state, NULL, 0);
}

void fdstore_release_unclaimed(void)
{
	pthread_mutex_lock(&lock);
	while (inherited) {
		struct fd_entry *e = inherited;
		char state[300];

		inherited = e->next;
		log_info("dropping stored fd %s: no configured device claims it", e->name);
		snprintf(state, sizeof(state), "FDSTOREREMOVE=1\nFDNAME=%s", e->name);
		(void)notify_store(state, NULL, 0);
		entry_free(e);
	}
	pthread_mutex_unlock(&lock);
}

void fdstore_set_exec_pending(bool pending)
{
	exec_pending = pending;
}

void fdstore_reinherit(void)
{
	pthread_mutex_lock(&lock);
	while (stored) {
		struct fd_entry *e = stored;

		stored = e->next;
		e->next = inherited;
		inherited = e;
	}
	pthread_mutex_unlock(&lock);
}

int fdstore_prepare_exec(void)
{
	_cleanup_free_ char *list = NULL;
	size_t len = 0;
	int n = 0;

	/* Everything we stored and everything still unclaimed goes along,
	 * left where it is: if the exec fails, nothing has moved. */
	fdstore_reinherit();
	pthread_mutex_lock(&lock);
	for (struct fd_entry *e = inherited; e; e = e->next)
		len += strlen(e->name) + 16;
	list = calloc(1, len + 1);
	for (struct fd_entry *e = inherited; list && e; e = e->next, n++) {
		size_t used = strlen(list);
		snprintf(list + used, len + 1 - used, "%s%d:%s", n ? "\n" : "", e->fd, e->name);
		(void)fcntl(e->fd, F_SETFD, 0);
	}
	pthread_mutex_unlock(&lock);
	if (!list)
		return -ENOMEM;
	if (setenv(HANDOVER_ENV, list, 1) < 0)
		return -errno;
	return n;
}

void fdstore_exec_failed(void)
{
	pthread_mutex_lock(&lock);
	for (struct fd_entry *e = inherited; e; e = e->next)
		(void)fcntl(e->fd, F_SETFD, FD_CLOEXEC);
	pthread_mutex_unlock(&lock);
	(void)unsetenv(HANDOVER_ENV);
}

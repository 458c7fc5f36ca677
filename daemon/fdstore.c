/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Entries are named "DEVICE/KEY".  Under systemd (NOTIFY_SOCKET set and the
 * unit has FileDescriptorStoreMax=) a stored fd is handed back to the next
 * daemon after a crash or restart; without systemd nothing is stored.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "cleanup.h"
#include "device.h"
#include "fdstore.h"
#include "log.h"

struct inherited_fd {
	char *name;
	int fd;
	struct inherited_fd *next;
};

static struct inherited_fd *inherited;

void fdstore_init(void)
{
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names);

	for (int i = 0; i < n; i++) {
		struct inherited_fd *e = calloc(1, sizeof(*e));
		if (!e) {
			free(names[i]);
			continue;
		}
		e->name = names[i];
		e->fd = SD_LISTEN_FDS_START + i;
		e->next = inherited;
		inherited = e;
		log_debug("inherited fd %d from the fd store: %s", e->fd, e->name);
	}
	free(names);
}

static int entry_name(struct blkserv_device *dev, const char *key, char *buf, size_t len)
{
	if (strchr(key, ':') || snprintf(buf, len, "%s/%s", device_name(dev), key) >= (int)len)
		return -EINVAL;
	return 0;
}

static int notify_store(const char *state, int *fds, unsigned nfds)
{
	if (!getenv("NOTIFY_SOCKET"))
		return -EOPNOTSUPP;
	return sd_pid_notify_with_fds(0, 0, state, fds, nfds);
}

int blkserv_fd_store(struct blkserv_device *dev, const char *key, int fd)
{
	char name[256], state[300];
	int r;

	r = entry_name(dev, key, name, sizeof(name));
	if (r < 0)
		return r;
	snprintf(state, sizeof(state), "FDSTORE=1\nFDNAME=%s", name);
	r = notify_store(state, &fd, 1);
	if (r == 0)
		return -EOPNOTSUPP; /* no systemd listening */
	return r < 0 ? r : 0;
}

int blkserv_fd_take(struct blkserv_device *dev, const char *key)
{
	char name[256];

	if (entry_name(dev, key, name, sizeof(name)) < 0)
		return -EINVAL;
	for (struct inherited_fd **p = &inherited; *p; p = &(*p)->next) {
		struct inherited_fd *e = *p;
		if (strcmp(e->name, name) != 0)
			continue;
		int fd = e->fd;
		*p = e->next;
		free(e->name);
		free(e);
		return fd;
	}
	return -ENOENT;
}

void blkserv_fd_forget(struct blkserv_device *dev, const char *key)
{
	char name[256], state[300];

	if (entry_name(dev, key, name, sizeof(name)) < 0)
		return;
	snprintf(state, sizeof(state), "FDSTOREREMOVE=1\nFDNAME=%s", name);
	(void)notify_store(state, NULL, 0);
}

void fdstore_release_unclaimed(void)
{
	while (inherited) {
		struct inherited_fd *e = inherited;
		char state[300];

		inherited = e->next;
		log_info("dropping stored fd %s: no configured device claims it", e->name);
		snprintf(state, sizeof(state), "FDSTOREREMOVE=1\nFDNAME=%s", e->name);
		(void)notify_store(state, NULL, 0);
		safe_close(e->fd);
		free(e->name);
		free(e);
	}
}

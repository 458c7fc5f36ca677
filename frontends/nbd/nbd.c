/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nbd: the device as /dev/nbdN through the kernel's NBD driver.
 *
 * No network: each connection is a socketpair, one end handed to the
 * kernel, the other served by a thread of ours running the NBD engine
 * (protocol.c) on its own queue.  The kernel gets the sockets, size, block
 * size, timeouts and the flags the backend honours through NBD_CMD_CONNECT
 * (generic netlink), or through the old ioctls when the netlink family is
 * missing.  Stopping sends NBD_CMD_DISCONNECT (or NBD_DISCONNECT), which
 * makes the kernel send DISC on every socket; the threads finish what is in
 * flight and end, and /dev/nbdN is left unconfigured (size 0).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "nbd-proto.h"
#include "netlink.h"
#include "protocol.h"

#define MAX_CONNECTIONS 16
/* How long a connect to a fixed index waits for a device that is free but
 * held open by another process (see connect_netlink). */
#define BUSY_WAIT_MS 5000
#define BUSY_RETRY_MS 100

enum control {
	CONTROL_AUTO,
	CONTROL_NETLINK,
	CONTROL_IOCTL,
};

struct kconn {
	struct nbd_kdev *k;
	unsigned idx;
	int fd;  /* ours */
	int kfd; /* the kernel's, closed once the kernel holds it */
	pthread_t thread;
	bool started;
	_Atomic bool exited;
	char peer[64];
	struct nbd_conn_config cfg;
};

struct nbd_kdev {
	struct blkserv_device *dev;
	unsigned connections;
	bool have_index;
	uint32_t index;
	uint64_t timeout;
	uint64_t dead_conn_timeout;
	enum control control;
	uint16_t tx_flags;
	struct kconn conns[MAX_CONNECTIONS];

	/* Start-up: threads (and the ioctl thread) report here. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned nready;
	int ready_error;

	bool connected;
	bool via_ioctl;
	uint32_t dev_index;
	char devpath[32];
	_Atomic bool stopping;

	/* The ioctl path: a thread blocks in NBD_DO_IT for the device's life. */
	int nbd_fd;
	pthread_t doit_thread;
	bool doit_started;
	bool ioctl_setup_done;
	int ioctl_setup_error;
	_Atomic bool doit_exited;
};

static const struct blkserv_option nbd_options[] = {
	{ "connections", BLKSERV_OPT_UINT, "1",
	  "socket connections (kernel hardware queues), 1-16, each served by its own thread", 0 },
	{ "index", BLKSERV_OPT_UINT, NULL, "use /dev/nbdINDEX (default: the kernel picks a free device)", 0 },
	{ "timeout", BLKSERV_OPT_UINT, "30",
	  "seconds before the kernel gives up on a request (0: warn and wait forever)", 0 },
	{ "dead_conn_timeout", BLKSERV_OPT_UINT, "0",
	  "seconds the kernel holds I/O when every connection is dead before failing it", 0 },
	{ "control", BLKSERV_OPT_STRING, "auto",
	  "how to configure the kernel: auto (netlink, else ioctl), netlink or ioctl", 0 },
	BLKSERV_OPTION_END,
};

static const char *const control_modes[] = { "auto", "netlink", "ioctl", NULL };

static const struct blkserv_option_check nbd_checks[] = {
	{ "connections", 1, MAX_CONNECTIONS, NULL },
	{ "index", 0, INT32_MAX, NULL },
	{ "control", 0, 0, control_modes },
	BLKSERV_OPTION_CHECK_END,
};

/* ---- options ----------------------------------------------------------- */

/* Two devices cannot be one /dev/nbdN. */
static int nbd_validate(const struct blkserv_config *cfg)
{
	char key[32];
	uint64_t index;

	if (blkserv_config_get_uint(cfg, "index", &index) < 0)
		return 0;
	snprintf(key, sizeof(key), "/dev/nbd%llu", (unsigned long long)index);
	return blkserv_config_claim(cfg, "index", "NBD device", key);
}

static int parse_control(struct nbd_kdev *k, const char *s)
{
	if (strcmp(s, "auto") == 0)
		k->control = CONTROL_AUTO;
	else if (strcmp(s, "netlink") == 0)
		k->control = CONTROL_NETLINK;
	else if (strcmp(s, "ioctl") == 0)
		k->control = CONTROL_IOCTL;
	else {
		blkserv_error(k->dev, "nbd option 'control' expects auto, netlink or ioctl, not '%s'", s);
		return -EINVAL;
	}
	return 0;
}

static int read_options(struct nbd_kdev *k, const struct blkserv_config *cfg)
{
	const char *control = "auto";
	uint64_t n = 1;

	(void)blkserv_config_get_uint(cfg, "connections", &n);
	if (n < 1 || n > MAX_CONNECTIONS) {
		blkserv_error(k->dev, "nbd option 'connections' must be 1 to %d, not %llu", MAX_CONNECTIONS,
			      (unsigned long long)n);
		return -EINVAL;
	}
	k->connections = (unsigned)n;
	if (blkserv_config_get_uint(cfg, "index", &n) == 0) {
		if (n > INT32_MAX) {
			blkserv_error(k->dev, "nbd option 'index' %llu is out of range", (unsigned long long)n);
			return -EINVAL;
		}
		k->have_index = true;
		k->index = (uint32_t)n;
	}
	(void)blkserv_config_get_uint(cfg, "timeout", &k->timeout);
	(void)blkserv_config_get_uint(cfg, "dead_conn_timeout", &k->dead_conn_timeout);
	(void)blkserv_config_get_string(cfg, "control", &control);
	return parse_control(k, control);
}

static int nbd_open(struct blkserv_device *dev, const struct blkserv_config *cfg, void **ret_handle)
{
	struct nbd_kdev *k = calloc(1, sizeof(*k));
	int r;

	if (!k)
		return -ENOMEM;
	k->dev = dev;
	k->timeout = 30;
	k->nbd_fd = -1;
	r = read_options(k, cfg);
	if (r < 0) {
		free(k);
		return r;
	}
	pthread_mutex_init(&k->lock, NULL);
	pthread_cond_init(&k->cond, NULL);
	k->tx_flags = nbd_tx_flags(dev, false);
	for (unsigned i = 0; i < MAX_CONNECTIONS; i++)
		k->conns[i].fd = k->conns[i].kfd = -1;
	*ret_handle = k;
	return 0;
}

static void nbd_close(void *handle)
{
	struct nbd_kdev *k = handle;

	pthread_mutex_destroy(&k->lock);
	pthread_cond_destroy(&k->cond);
	free(k);
}

/* ---- connection threads ------------------------------------------------ */

static void conn_ready(void *opaque, int result)
{
	struct kconn *kc = opaque;
	struct nbd_kdev *k = kc->k;

	pthread_mutex_lock(&k->lock);
	k->nready++;
	if (result < 0 && k->ready_error == 0)
		k->ready_error = result;
	pthread_cond_broadcast(&k->cond);
	pthread_mutex_unlock(&k->lock);
}

static void *conn_main(void *arg)
{
	struct kconn *kc = arg;
	struct nbd_kdev *k = kc->k;
	int r = nbd_conn_serve(&kc->cfg, kc->fd);

	if (!atomic_load(&k->stopping))
		blkserv_error(k->dev, "%s ended while the device is live (%s): its I/O will fail",
			      kc->peer, r < 0 ? strerror(-r) : "closed by the kernel");
	atomic_store(&kc->exited, true);
	return NULL;
}

static int make_socketpairs(struct nbd_kdev *k)
{
	for (unsigned i = 0; i < k->connections; i++) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
			int r = -errno;
			blkserv_error(k->dev, "cannot create a socketpair: %m");
			return r;
		}
		/* Both directions carry up to 32 MiB payloads. */
		nbd_socket_tune(sv[0]);
		nbd_socket_tune(sv[1]);
		k->conns[i].kfd = sv[0];
		k->conns[i].fd = sv[1];
	}
	return 0;
}

static int start_threads(struct nbd_kdev *k)
{
	for (unsigned i = 0; i < k->connections; i++) {
		struct kconn *kc = &k->conns[i];
		int r;

		kc->k = k;
		kc->idx = i;
		atomic_store(&kc->exited, false);
		snprintf(kc->peer, sizeof(kc->peer), "nbd connection %u", i);
		kc->cfg = (struct nbd_conn_config){
			.dev = k->dev,
			.tx_flags = k->tx_flags,
			.min_block = blkserv_device_block_size(k->dev),
			.peer = kc->peer,
			.ready = conn_ready,
			.opaque = kc,
		};
		r = -pthread_create(&kc->thread, NULL, conn_main, kc);
		if (r < 0) {
			blkserv_error(k->dev, "cannot start a connection thread: %s%s", strerror(-r),
				      r == -EAGAIN ? " (out of memory, or of locked memory: RLIMIT_MEMLOCK)" : "");
			return r;
		}
		kc->started = true;
	}
	return 0;
}

static int wait_threads_ready(struct nbd_kdev *k)
{
	unsigned started = 0;

	for (unsigned i = 0; i < k->connections; i++)
		started += k->conns[i].started;
	pthread_mutex_lock(&k->lock);
	while (k->nready < started)
		pthread_cond_wait(&k->cond, &k->lock);
	pthread_mutex_unlock(&k->lock);
	return k->ready_error;
}

/* Make every connection thread end: they see end of file. */
static void shutdown_connections(struct nbd_kdev *k)
{
	for (unsigned i = 0; i < k->connections; i++)
		if (k->conns[i].fd >= 0)
			(void)shutdown(k->conns[i].fd, SHUT_RDWR);
}

static void join_threads(struct nbd_kdev *k)
{
	for (unsigned i = 0; i < k->connections; i++) {
		struct kconn *kc = &k->conns[i];

		if (kc->started)
			pthread_join(kc->thread, NULL);
		kc->started = false;
	}
}

static void close_kernel_ends(struct nbd_kdev *k)
{
	for (unsigned i = 0; i < k->connections; i++)
		k->conns[i].kfd = safe_close(k->conns[i].kfd);
}

static void close_sockets(struct nbd_kdev *k)
{
	close_kernel_ends(k);
	for (unsigned i = 0; i < k->connections; i++)
		k->conns[i].fd = safe_close(k->conns[i].fd);
}

/* ---- sysfs ------------------------------------------------------------- */

/* /sys/block/nbdN, or its attribute @attr ("" for the directory). */
static bool sysfs_exists(unsigned n, const char *attr)
{
	char path[64];

	snprintf(path, sizeof(path), "/sys/block/nbd%u/%s", n, attr);
	return access(path, F_OK) == 0;
}

static uint64_t sysfs_size(unsigned n)
{
	char path[64];
	unsigned long long size = 0;
	_cleanup_fclose_ FILE *f = NULL;

	snprintf(path, sizeof(path), "/sys/block/nbd%u/size", n);
	f = fopen(path, "re");
	if (!f || fscanf(f, "%llu", &size) != 1)
		return UINT64_MAX; /* unreadable: not ours to take */
	return size;
}

/* Nobody serves /dev/nbd@n: no server pid and size 0. */
static bool device_looks_free(unsigned n)
{
	return !sysfs_exists(n, "pid") && sysfs_size(n) == 0;
}

/* ---- netlink ----------------------------------------------------------- */

static const char *nodev_hint =
	"the nbd kernel module is not loaded (no 'nbd' generic netlink family, no /dev/nbd0): "
	"run 'modprobe nbd' (and add nbd to /etc/modules-load.d/ to load it at boot)";

static void log_connect_error(struct nbd_kdev *k, int r)
{
	if (r == -EPERM || r == -EACCES)
		blkserv_error(k->dev, "no permission to configure NBD devices: blkservd needs CAP_SYS_ADMIN "
				      "(run it as root)");
	else if (r == -EBUSY && k->have_index)
		blkserv_error(k->dev, "/dev/nbd%u is already in use: pick another 'index' or leave it out "
				      "to get a free device", k->index);
	else if (r == -EINVAL && k->have_index)
		blkserv_error(k->dev, "the kernel refused /dev/nbd%u (index out of range or the device is "
				      "going away): %s", k->index, strerror(-r));
	else if (r == -ENOENT)
		blkserv_error(k->dev, "%s", nodev_hint);
	else
		blkserv_error(k->dev, "NBD_CMD_CONNECT failed: %s", strerror(-r));
}

static int connect_netlink(struct nbd_kdev *k)
{
	int fds[MAX_CONNECTIONS];
	struct nbd_nl_connect a = {
		.have_index = k->have_index,
		.index = k->index,
		.size = blkserv_device_size(k->dev),
		.block_size = blkserv_device_block_size(k->dev),
		.timeout = k->timeout,
		.dead_conn_timeout = k->dead_conn_timeout,
		.server_flags = k->tx_flags,
		.backend_id = blkserv_device_name(k->dev),
		.fds = fds,
		.nfds = k->connections,
	};
	int r;

	for (unsigned i = 0; i < k->connections; i++)
		fds[i] = k->conns[i].kfd;
	/* The kernel gives whoever opens an unconfigured device a config of
	 * its own, and refuses a connect with EBUSY while it is open: udev's
	 * blkid probing after a uevent does that for a moment.  A device that
	 * nobody serves is waited for, a while, before calling it taken. */
	for (unsigned waited_ms = 0;; waited_ms += BUSY_RETRY_MS) {
		r = nbd_nl_connect(&a, &k->dev_index);
		if (r != -EBUSY || !k->have_index || waited_ms >= BUSY_WAIT_MS || !device_looks_free(k->index)) {
			if (waited_ms && r >= 0)
				blkserv_notice(k->dev, "waited %u ms for /dev/nbd%u: another process had it open",
					       waited_ms, k->index);
			break;
		}
		usleep(BUSY_RETRY_MS * 1000);
	}
	if (r < 0)
		log_connect_error(k, r);
	return r;
}

/* ---- ioctls -------------------------------------------------------------- */

/* The first device nobody serves. */
static int find_free_device(struct nbd_kdev *k, uint32_t *ret)
{
	for (unsigned n = 0; sysfs_exists(n, ""); n++)
		if (device_looks_free(n)) {
			*ret = n;
			return 0;
		}
	blkserv_error(k->dev, "no free /dev/nbdN: load the module with more devices "
			      "('modprobe nbd nbds_max=32') or stop what uses them");
	return -EBUSY;
}

static int ioctl_setup(struct nbd_kdev *k)
{
	uint32_t bs = blkserv_device_block_size(k->dev);
	int fd = k->nbd_fd;

	/* Block size first: SET_SIZE_BLOCKS counts in the current one. */
	if (ioctl(fd, NBD_IOCTL_SET_BLKSIZE, (unsigned long)bs) < 0 ||
	    ioctl(fd, NBD_IOCTL_SET_SIZE_BLOCKS, (unsigned long)(blkserv_device_size(k->dev) / bs)) < 0 ||
	    ioctl(fd, NBD_IOCTL_SET_FLAGS, (unsigned long)k->tx_flags) < 0 ||
	    ioctl(fd, NBD_IOCTL_SET_TIMEOUT, (unsigned long)k->timeout) < 0)
		return -errno;
	for (unsigned i = 0; i < k->connections; i++)
		if (ioctl(fd, NBD_IOCTL_SET_SOCK, (unsigned long)k->conns[i].kfd) < 0)
			return -errno;
	return 0;
}

static void report_ioctl_setup(struct nbd_kdev *k, int r)
{
	pthread_mutex_lock(&k->lock);
	k->ioctl_setup_done = true;
	k->ioctl_setup_error = r;
	pthread_cond_broadcast(&k->cond);
	pthread_mutex_unlock(&k->lock);
}

/* SET_SOCK and DO_IT from one task: this thread, for the device's life. */
static void *doit_main(void *arg)
{
	struct nbd_kdev *k = arg;
	int r = ioctl_setup(k);

	report_ioctl_setup(k, r);
	if (r >= 0) {
		r = ioctl(k->nbd_fd, NBD_IOCTL_DO_IT) < 0 ? -errno : 0;
		if (!atomic_load(&k->stopping))
			blkserv_error(k->dev, "NBD_DO_IT on %s returned while the device is live: %s",
				      k->devpath, r < 0 ? strerror(-r) : "disconnected");
		(void)ioctl(k->nbd_fd, NBD_IOCTL_CLEAR_QUE);
	}
	(void)ioctl(k->nbd_fd, NBD_IOCTL_CLEAR_SOCK);
	atomic_store(&k->doit_exited, true);
	return NULL;
}

static int open_ioctl_device(struct nbd_kdev *k)
{
	int r = 0;

	if (k->have_index)
		k->dev_index = k->index;
	else
		r = find_free_device(k, &k->dev_index);
	if (r < 0)
		return r;
	snprintf(k->devpath, sizeof(k->devpath), "/dev/nbd%u", k->dev_index);
	k->nbd_fd = open(k->devpath, O_RDWR | O_CLOEXEC);
	if (k->nbd_fd < 0) {
		r = -errno;
		blkserv_error(k->dev, "cannot open %s: %m%s", k->devpath,
			      r == -ENOENT ? " (is the nbd module loaded? run 'modprobe nbd')" : "");
	}
	return r;
}

static int connect_ioctl(struct nbd_kdev *k)
{
	int r = open_ioctl_device(k);

	if (r < 0)
		return r;
	r = -pthread_create(&k->doit_thread, NULL, doit_main, k);
	if (r < 0) {
		blkserv_error(k->dev, "cannot start the NBD_DO_IT thread: %s", strerror(-r));
		k->nbd_fd = safe_close(k->nbd_fd);
		return r;
	}
	k->doit_started = true;
	pthread_mutex_lock(&k->lock);
	while (!k->ioctl_setup_done)
		pthread_cond_wait(&k->cond, &k->lock);
	r = k->ioctl_setup_error;
	pthread_mutex_unlock(&k->lock);
	if (r < 0) {
		if (r == -EBUSY)
			blkserv_error(k->dev, "%s is already in use (configured by another process)", k->devpath);
		else
			log_connect_error(k, r);
	}
	return r;
}

static void stop_ioctl_thread(struct nbd_kdev *k)
{
	if (!k->doit_started)
		return;
	/* DO_IT returns once the kernel's receive threads see end of file. */
	shutdown_connections(k);
	pthread_join(k->doit_thread, NULL);
	k->doit_started = false;
	k->nbd_fd = safe_close(k->nbd_fd);
}

static int nbd_check_idle(void *handle);

/* ---- start and stop ------------------------------------------------------ */

static int choose_control(struct nbd_kdev *k)
{
	int present;

	if (k->control == CONTROL_IOCTL) {
		k->via_ioctl = true;
		return 0;
	}
	present = nbd_nl_family_present();
	if (present > 0) {
		k->via_ioctl = false;
		return 0;
	}
	if (k->control == CONTROL_AUTO && access("/dev/nbd0", F_OK) == 0) {
		blkserv_notice(k->dev, "the kernel has no 'nbd' netlink family: configuring with ioctls");
		k->via_ioctl = true;
		return 0;
	}
	if (present < 0)
		blkserv_error(k->dev, "generic netlink is unusable (%s); %s", strerror(-present), nodev_hint);
	else
		blkserv_error(k->dev, "%s", nodev_hint);
	return -ENODEV;
}

/* /sys/block/nbdN/ATTR's first line into @buf; false if unreadable. */
static bool sysfs_read(unsigned n, const char *attr, char *buf, size_t len)
{
	char path[64];
	_cleanup_fclose_ FILE *f = NULL;

	snprintf(path, sizeof(path), "/sys/block/nbd%u/%s", n, attr);
	f = fopen(path, "re");
	if (!f || !fgets(buf, (int)len, f))
		return false;
	buf[strcspn(buf, "\n")] = '\0';
	return true;
}

/*
 * A netlink-bound device stays configured when its server dies.  One whose
 * BACKEND_IDENTIFIER is our device name and whose connecting process is
 * gone was left by a daemon that was killed: disconnect it, so the kernel
 * fails its I/O instead of waiting forever and it does not linger.  A live
 * process's device is left alone (another daemon serving the same name).
 */
static void disconnect_stale_devices(struct nbd_kdev *k)
{
	_cleanup_(closedirp) DIR *d = opendir("/sys/block");
	struct dirent *e;

	while (d && (e = readdir(d))) {
		char backend[256], pid[32];
		unsigned n;

		if (sscanf(e->d_name, "nbd%u", &n) != 1 || !sysfs_read(n, "backend", backend, sizeof(backend)) ||
		    strcmp(backend, blkserv_device_name(k->dev)) != 0 || !sysfs_read(n, "pid", pid, sizeof(pid)))
			continue;
		if (kill((pid_t)atoi(pid), 0) == 0 || errno != ESRCH) {
			blkserv_warning(k->dev, "/dev/nbd%u is served as '%s' by live process %s: leaving it", n,
					backend, pid);
			continue;
		}
		int r = nbd_nl_disconnect(n);
		if (r < 0)
			blkserv_warning(k->dev, "cannot disconnect /dev/nbd%u left by a dead daemon (pid %s): %s", n,
					pid, strerror(-r));
		else
			blkserv_notice(k->dev, "disconnected /dev/nbd%u, left by a daemon that died (pid %s)", n, pid);
	}
}

static void reset_state(struct nbd_kdev *k)
{
	atomic_store(&k->stopping, false);
	atomic_store(&k->doit_exited, false);
	k->nready = 0;
	k->ready_error = 0;
	k->ioctl_setup_done = false;
	k->ioctl_setup_error = 0;
	k->connected = false;
}

static void abort_start(struct nbd_kdev *k)
{
	atomic_store(&k->stopping, true);
	shutdown_connections(k);
	stop_ioctl_thread(k);
	join_threads(k);
	close_sockets(k);
}

static int nbd_start(void *handle)
{
	struct nbd_kdev *k = handle;
	int r;

	reset_state(k);
	r = choose_control(k);
	if (r >= 0 && !k->via_ioctl)
		disconnect_stale_devices(k);
	if (r >= 0)
		r = make_socketpairs(k);
	if (r >= 0)
		r = start_threads(k);
	if (r >= 0)
		r = wait_threads_ready(k);
	if (r >= 0)
		r = k->via_ioctl ? connect_ioctl(k) : connect_netlink(k);
	if (r < 0) {
		abort_start(k);
		return r;
	}
	/* The kernel holds its own references now. */
	close_kernel_ends(k);
	k->connected = true;
	snprintf(k->devpath, sizeof(k->devpath), "/dev/nbd%u", k->dev_index);
	blkserv_device_set_kernel_name(k->dev, k->devpath);
	blkserv_notice(k->dev, "connected %s (%s, %u connection%s, flags 0x%04x)", k->devpath,
		       k->via_ioctl ? "ioctl" : "netlink", k->connections, k->connections > 1 ? "s" : "",
		       k->tx_flags);
	return 0;
}

static void disconnect(struct nbd_kdev *k)
{
	int r;

	if (k->via_ioctl)
		r = ioctl(k->nbd_fd, NBD_IOCTL_DISCONNECT) < 0 ? -errno : 0;
	else
		r = nbd_nl_disconnect(k->dev_index);
	if (r < 0) {
		blkserv_error(k->dev, "cannot disconnect %s: %s; closing its connections", k->devpath,
			      strerror(-r));
		shutdown_connections(k);
	}
}

static void nbd_stop(void *handle, uint32_t flags)
{
	struct nbd_kdev *k = handle;

	if (!k->connected)
		return;
	if (flags & BLKSERV_STOP_KEEP_DEVICE)
		blkserv_notice(k->dev, "the nbd frontend cannot hand %s to the next daemon: disconnecting it",
			       k->devpath);
	if (nbd_check_idle(k) == -EBUSY)
		blkserv_warning(k->dev, "%s is still in use (mounted?): I/O it sends from now on fails",
				k->devpath);
	atomic_store(&k->stopping, true);
	/* The kernel sends DISC on every connection; the threads finish what
	 * is in flight and end. */
	disconnect(k);
	join_threads(k);
	stop_ioctl_thread(k);
	close_sockets(k);
	k->connected = false;
	blkserv_notice(k->dev, "disconnected %s", k->devpath);
}

/* ---- health ----------------------------------------------------------------- */

static int nbd_check_health(void *handle)
{
	struct nbd_kdev *k = handle;

	if (!k->connected || atomic_load(&k->stopping))
		return 0;
	for (unsigned i = 0; i < k->connections; i++)
		if (atomic_load(&k->conns[i].exited))
			return -EPIPE;
	if (k->via_ioctl && atomic_load(&k->doit_exited))
		return -EPIPE;
	return 0;
}

static int nbd_check_idle(void *handle)
{
	struct nbd_kdev *k = handle;
	int fd;

	if (!k->connected)
		return 0;
	/* A mounted file system or another exclusive user holds it. */
	fd = open(k->devpath, O_RDONLY | O_EXCL | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return errno == EBUSY ? -EBUSY : 0;
	close(fd);
	return 0;
}

static struct blkserv_frontend nbd_frontend = {
	.name         = "nbd",
	.description  = "kernel NBD device /dev/nbdN over socketpairs (netlink, ioctl fallback)",
	.options      = nbd_options,
	.open         = nbd_open,
	.start        = nbd_start,
	.stop         = nbd_stop,
	.close        = nbd_close,
	.check_health = nbd_check_health,
	.check_idle   = nbd_check_idle,
	.option_checks = nbd_checks,
	.validate     = nbd_validate,
};

BLKSERV_REGISTER_FRONTEND(nbd_frontend)

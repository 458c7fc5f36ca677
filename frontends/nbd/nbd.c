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
 *
 * The device outlives the daemon.  A netlink-connected device is recorded
 * in RUNTIME_DIR/nbd-NAME.state (state.c); the next daemon finds it there
 * and takes it over.  A stop that keeps the device (restart, upgrade)
 * drains each connection at a request boundary and puts our socket ends in
 * the fd store: the next daemon serves the same streams and the kernel never
 * sees a dead connection.  Without the fd store, or after a crash, the old
 * sockets die (the kernel holds I/O for up to dead_conn_timeout) and the
 * next daemon hands fresh socketpairs to the same /dev/nbdN with
 * NBD_CMD_RECONFIGURE; the kernel resends what was never answered once its
 * request timeout fires.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blockdev.h"
#include "cleanup.h"
#include "nbd-proto.h"
#include "netlink.h"
#include "parse.h"
#include "protocol.h"
#include "state.h"

#define MAX_CONNECTIONS 16
/* How long a connect to a fixed index waits for a device that is free but
 * held open by another process (see connect_netlink). */
#define BUSY_WAIT_MS 5000
#define BUSY_RETRY_MS 100
/* How long a stop that keeps the device waits for a connection to drain
 * (finish the request it is receiving, answer what is in flight). */
#define DRAIN_WAIT_MS 10000
/* How long a takeover waits for the kernel to take new sockets (it takes
 * one only in place of a socket it has marked dead). */
#define RECONNECT_WAIT_MS 10000
#define RECONNECT_RETRY_MS 50

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
	int drain_fd; /* eventfd: a stop that keeps the device drains the connection */
	int result;   /* of nbd_conn_serve */
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
	char *state_path;

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
	{ "dead_conn_timeout", BLKSERV_OPT_UINT, "120",
	  "seconds the kernel holds I/O while every connection is dead (daemon restart or crash) "
	  "before failing it",
	  0 },
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
		blkserv_error(k->dev, "option 'control' expects auto, netlink or ioctl, not '%s'", s);
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
		blkserv_error(k->dev, "option 'connections' must be 1 to %d, not %llu", MAX_CONNECTIONS,
			      (unsigned long long)n);
		return -EINVAL;
	}
	k->connections = (unsigned)n;
	if (blkserv_config_get_uint(cfg, "index", &n) == 0) {
		if (n > INT32_MAX) {
			blkserv_error(k->dev, "option 'index' %llu is out of range", (unsigned long long)n);
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
	k->dead_conn_timeout = 120;
	k->nbd_fd = -1;
	r = read_options(k, cfg);
	if (r >= 0)
		r = nbd_state_path(blkserv_runtime_dir(), blkserv_device_name(dev), &k->state_path);
	if (r < 0) {
		free(k);
		return r;
	}
	pthread_mutex_init(&k->lock, NULL);
	pthread_cond_init(&k->cond, NULL);
	k->tx_flags = nbd_tx_flags(dev, false);
	for (unsigned i = 0; i < MAX_CONNECTIONS; i++)
		k->conns[i].fd = k->conns[i].kfd = k->conns[i].drain_fd = -1;
	*ret_handle = k;
	return 0;
}

static void nbd_close(void *handle)
{
	struct nbd_kdev *k = handle;

	for (unsigned i = 0; i < MAX_CONNECTIONS; i++)
		k->conns[i].drain_fd = safe_close(k->conns[i].drain_fd);
	free(k->state_path);
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

static int reconnect_conn(struct kconn *kc);

/*
 * Serve the connection; when it ends while the device is live (the kernel
 * declared it dead: a request outlived the timeout), give the kernel a new
 * one, as the next daemon would, and serve on.  Only once the old one
 * finished every request it had: the kernel resends those, and a resent
 * write must not be overtaken by its first copy.
 */
static void *conn_main(void *arg)
{
	struct kconn *kc = arg;
	struct nbd_kdev *k = kc->k;

	for (;;) {
		int r = nbd_conn_serve(&kc->cfg, kc->fd);

		kc->result = r;
		if (atomic_load(&k->stopping) || r == NBD_SERVE_DRAINED)
			break;
		if (k->via_ioctl || r == NBD_SERVE_DISC) {
			blkserv_error(k->dev, "%s ended while the device is live (%s): its I/O will fail", kc->peer,
				      r == NBD_SERVE_DISC ? "the kernel disconnected it"
				      : r < 0             ? strerror(-r)
							  : "closed by the kernel");
			break;
		}
		blkserv_warning(k->dev, "%s of %s ended while the device is live (%s): reconnecting it", kc->peer,
				k->devpath,
				r == 0 || r == -EPIPE ? "the kernel closed it: a request outlived its timeout?"
						      : strerror(-r));
		r = reconnect_conn(kc);
		if (r < 0) {
			if (!atomic_load(&k->stopping))
				(void)blkserv_error_errno(k->dev, r,
							  "cannot reconnect %s of %s: %m; its I/O will fail once the "
							  "kernel stops holding it",
							  kc->peer, k->devpath);
			break;
		}
		kc->cfg.ready = NULL; /* start-up is long over */
	}
	atomic_store(&kc->exited, true);
	return NULL;
}

static int make_pair(struct nbd_kdev *k, unsigned i);

static int make_socketpairs(struct nbd_kdev *k)
{
	for (unsigned i = 0; i < k->connections; i++) {
		int r = make_pair(k, i);

		if (r < 0)
			return r;
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
		kc->result = 0;
		if (kc->drain_fd < 0)
			kc->drain_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		else
			(void)eventfd_read(kc->drain_fd, &(eventfd_t){ 0 }); /* a past drain's */
		snprintf(kc->peer, sizeof(kc->peer), "nbd connection %u", i);
		kc->cfg = (struct nbd_conn_config){
			.dev = k->dev,
			.tx_flags = k->tx_flags,
			.min_block = blkserv_device_block_size(k->dev),
			.peer = kc->peer,
			.ready = conn_ready,
			.opaque = kc,
			.drainable = kc->drain_fd >= 0,
			.drain_fd = kc->drain_fd,
		};
		r = -pthread_create(&kc->thread, NULL, conn_main, kc);
		if (r < 0)
			return blkserv_error_errno(k->dev, r, "cannot start a connection thread: %m%s",
						   r == -EAGAIN ? " (out of memory, or of locked memory: "
								  "RLIMIT_MEMLOCK)"
								: "");
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
	/* Under the lock: a reconnecting thread swaps its fd. */
	pthread_mutex_lock(&k->lock);
	for (unsigned i = 0; i < k->connections; i++)
		if (k->conns[i].fd >= 0)
			(void)shutdown(k->conns[i].fd, SHUT_RDWR);
	pthread_mutex_unlock(&k->lock);
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
	uint64_t size;

	snprintf(path, sizeof(path), "/sys/block/nbd%u/size", n);
	if (parse_uint_file(path, &size) < 0)
		return UINT64_MAX; /* unreadable: not ours to take */
	return size;
}

/* Nobody serves /dev/nbd@n: no server pid and size 0. */
static bool device_looks_free(unsigned n)
{
	return !sysfs_exists(n, "pid") && sysfs_size(n) == 0;
}

/* ---- netlink ----------------------------------------------------------- */

static const char *nodev_hint = "the nbd kernel module is not loaded (no 'nbd' generic netlink family, no /dev/nbd0): "
				"run 'modprobe nbd' (and add nbd to /etc/modules-load.d/ to load it at boot)";

static void log_connect_error(struct nbd_kdev *k, int r)
{
	if (r == -EPERM || r == -EACCES)
		blkserv_error(k->dev, "no permission to configure NBD devices: blkservd needs CAP_SYS_ADMIN "
				      "(run it as root)");
	else if (r == -EBUSY && k->have_index)
		blkserv_error(k->dev,
			      "/dev/nbd%u is already in use: pick another 'index' or leave it out "
			      "to get a free device",
			      k->index);
	else if (r == -EINVAL && k->have_index)
		(void)blkserv_error_errno(k->dev, r,
					  "the kernel refused /dev/nbd%u (index out of range or the device "
					  "is going away): %m",
					  k->index);
	else if (r == -ENOENT)
		blkserv_error(k->dev, "%s", nodev_hint);
	else
		(void)blkserv_error_errno(k->dev, r, "NBD_CMD_CONNECT failed: %m");
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
			blkserv_error(k->dev, "NBD_DO_IT on %s returned while the device is live: %s", k->devpath,
				      r < 0 ? strerror(-r) : "disconnected");
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
		(void)blkserv_error_errno(k->dev, r, "cannot start the NBD_DO_IT thread: %m");
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
static void abort_start(struct nbd_kdev *k);

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
		(void)blkserv_error_errno(k->dev, present, "generic netlink is unusable (%m); %s", nodev_hint);
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

/* @pid is another process running a program of our name: a daemon that
 * serves the device.  A pid reused by something else does not count. */
static bool other_daemon_alive(pid_t pid)
{
	char path[64], comm[64], ours[64];
	_cleanup_fclose_ FILE *f = NULL;
	_cleanup_fclose_ FILE *self = NULL;

	if (pid <= 0 || pid == getpid() || (kill(pid, 0) < 0 && errno != EPERM))
		return false;
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	f = fopen(path, "re");
	self = fopen("/proc/self/comm", "re");
	if (!f || !self || !fgets(comm, sizeof(comm), f) || !fgets(ours, sizeof(ours), self))
		return true; /* cannot tell: assume it serves */
	return strcmp(comm, ours) == 0;
}

/*
 * A device connected as our device name that no state file describes (its
 * state file was lost, or an older daemon left it) and whose connecting
 * process is gone: disconnect it, so the kernel fails its I/O instead of
 * holding it and it does not linger.  A live daemon's device is left alone.
 */
static void disconnect_stale_devices(struct nbd_kdev *k)
{
	_cleanup_(closedirp) DIR *d = opendir("/sys/block");
	struct dirent *e;

	while (d && (e = readdir(d))) {
		char backend[256], pidtext[32];
		uint64_t index;
		unsigned n;
		pid_t pid;
		int r;

		if (strncmp(e->d_name, "nbd", 3) != 0 || parse_uint_dec(e->d_name + 3, &index) < 0 || index > UINT_MAX)
			continue;
		n = (unsigned)index;
		if (!sysfs_read(n, "backend", backend, sizeof(backend)) ||
		    strcmp(backend, blkserv_device_name(k->dev)) != 0 ||
		    !sysfs_read(n, "pid", pidtext, sizeof(pidtext)))
			continue;
		/* An empty or bad file must not become pid 0, which kill()
		 * takes as our process group. */
		if (parse_pid(pidtext, &pid) < 0) {
			blkserv_warning(k->dev,
					"/dev/nbd%u is connected as '%s' with server pid '%s', which is not a "
					"pid: leaving it",
					n, backend, pidtext);
			continue;
		}
		if (other_daemon_alive(pid)) {
			blkserv_warning(k->dev, "/dev/nbd%u is served as '%s' by live process %d: leaving it", n,
					backend, (int)pid);
			continue;
		}
		r = nbd_nl_disconnect(n);
		if (r < 0)
			(void)blkserv_warning_errno(k->dev, r,
						    "cannot disconnect /dev/nbd%u left by a dead daemon "
						    "(pid %d): %m",
						    n, (int)pid);
		else
			blkserv_notice(k->dev,
				       "disconnected /dev/nbd%u, left by a daemon that died (pid %d) without "
				       "a state file in %s",
				       n, (int)pid, blkserv_runtime_dir());
	}
}

/* ---- the state file ----------------------------------------------------- */

static int save_state(struct nbd_kdev *k, enum nbd_handover h)
{
	struct nbd_state s = {
		.index = k->dev_index,
		.connections = k->connections,
		.size = blkserv_device_size(k->dev),
		.block_size = blkserv_device_block_size(k->dev),
		.flags = k->tx_flags,
		.timeout = k->timeout,
		.dead_conn_timeout = k->dead_conn_timeout,
		.handover = h,
		.pid = getpid(),
	};
	int r;

	snprintf(s.backend, sizeof(s.backend), "%s", blkserv_device_name(k->dev));
	r = nbd_state_write(k->state_path, &s);
	if (r < 0)
		return blkserv_error_errno(k->dev, r,
					   "cannot write the state file %s: %m; the next daemon will not "
					   "find %s (the runtime directory must be writable)",
					   k->state_path, k->devpath);
	return r;
}

static void remove_state(struct nbd_kdev *k)
{
	if (unlink(k->state_path) < 0 && errno != ENOENT)
		blkserv_warning(k->dev, "cannot remove %s: %m", k->state_path);
}

/* ---- taking a device over ----------------------------------------------- */

static void conn_key(unsigned i, char *buf, size_t len)
{
	snprintf(buf, len, "nbd-conn-%u", i);
}

/* The server ends the previous daemon stored, in fds[] (-1 where none):
 * how many there are. */
static unsigned take_stored(struct nbd_kdev *k, unsigned n, int *fds)
{
	unsigned got = 0;

	for (unsigned i = 0; i < n; i++) {
		char key[32];
		int type = 0;
		socklen_t len = sizeof(type);

		conn_key(i, key, sizeof(key));
		fds[i] = blkserv_fd_take(k->dev, key);
		if (fds[i] < 0) {
			fds[i] = -1;
			continue;
		}
		if (getsockopt(fds[i], SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM) {
			blkserv_warning(k->dev, "the stored fd %s is not a stream socket: ignoring it", key);
			fds[i] = safe_close(fds[i]);
			continue;
		}
		got++;
	}
	return got;
}

static void forget_stored(struct nbd_kdev *k, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		char key[32];

		conn_key(i, key, sizeof(key));
		blkserv_fd_forget(k->dev, key);
	}
}

/* The kernel's end of @fd is closed or shut down (it marked the socket
 * dead, or never took it). */
static bool peer_gone(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLRDHUP };

	return poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL));
}

/* Shut stored server ends down (the kernel then marks their sockets dead
 * and resends their requests on new ones) and close them. */
static void drop_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (fds[i] >= 0) {
			(void)shutdown(fds[i], SHUT_RDWR);
			fds[i] = safe_close(fds[i]);
		}
}

/* Why the device of @st cannot be taken over with this config, or NULL. */
static const char *takeover_conflict(struct nbd_kdev *k, const struct nbd_state *st, char *buf, size_t len)
{
	uint64_t size = blkserv_device_size(k->dev);
	uint32_t bs = blkserv_device_block_size(k->dev);

	if (blkserv_device_data_fresh(k->dev))
		return "the backend's data did not survive the previous daemon (it is new), so what the "
		       "device's page cache and file system hold no longer matches it";
	if (st->size != size || st->block_size != bs)
		snprintf(buf, len, "it has %llu bytes with block size %u, the config says %llu with %u",
			 (unsigned long long)st->size, st->block_size, (unsigned long long)size, bs);
	else if (st->flags != k->tx_flags)
		snprintf(buf, len, "it was given transmission flags 0x%04x, the backend now warrants 0x%04x", st->flags,
			 k->tx_flags);
	else if (k->have_index && k->index != st->index)
		snprintf(buf, len, "the config now asks for /dev/nbd%u", k->index);
	else if (st->connections > MAX_CONNECTIONS)
		snprintf(buf, len, "its state file says %u connections, more than %d", st->connections,
			 MAX_CONNECTIONS);
	else
		return NULL;
	return buf;
}

static int make_pair(struct nbd_kdev *k, unsigned i)
{
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
	return 0;
}

static struct nbd_nl_connect reconfigure_args(struct nbd_kdev *k, const int *fds, unsigned nfds)
{
	return (struct nbd_nl_connect){
		.have_index = true,
		.index = k->dev_index,
		.timeout = k->timeout,
		.dead_conn_timeout = k->dead_conn_timeout,
		.backend_id = blkserv_device_name(k->dev),
		.fds = fds,
		.nfds = nfds,
	};
}

/* One RECONFIGURE with a fresh socketpair for each connection not done;
 * those the kernel took are marked done.  Our copy of the kernel's end is
 * closed: one the kernel did not take has no holder left, and our end
 * shows the hang-up at once. */
static int reconnect_round(struct nbd_kdev *k, bool *done, unsigned *left)
{
	int fds[MAX_CONNECTIONS];
	unsigned which[MAX_CONNECTIONS], n = 0;
	struct nbd_nl_connect a;
	int r = 0;

	for (unsigned i = 0; i < k->connections && r >= 0; i++)
		if (!done[i]) {
			r = make_pair(k, i);
			fds[n] = k->conns[i].kfd;
			which[n++] = i;
		}
	a = reconfigure_args(k, fds, n);
	if (r >= 0)
		r = nbd_nl_reconfigure(&a);
	if (r < 0 && r != -ENOMEM)
		(void)blkserv_error_errno(k->dev, r, "NBD_CMD_RECONFIGURE of %s failed: %m", k->devpath);
	for (unsigned j = 0; j < n; j++) {
		struct kconn *kc = &k->conns[which[j]];

		kc->kfd = safe_close(kc->kfd);
		if (r < 0 || peer_gone(kc->fd)) {
			kc->fd = safe_close(kc->fd);
			continue;
		}
		done[which[j]] = true;
		(*left)--;
	}
	return r;
}

/*
 * New sockets for every connection.  The kernel takes a new socket only in
 * place of one it has marked dead, and says nothing about those it drops:
 * retry until it took them all.  A socket an old daemon's end was just shut
 * down on is marked dead by the kernel's receive work, a moment later.
 */
static int reconnect_all(struct nbd_kdev *k)
{
	bool done[MAX_CONNECTIONS] = { false };
	unsigned left = k->connections;

	for (unsigned waited_ms = 0;; waited_ms += RECONNECT_RETRY_MS) {
		int r = reconnect_round(k, done, &left);

		if (r < 0)
			return r;
		if (left == 0)
			return 0;
		if (waited_ms >= RECONNECT_WAIT_MS) {
			blkserv_error(k->dev,
				      "the kernel took %u of %u new connections of %s in %d s: the others "
				      "are not dead (is another process serving them?)",
				      k->connections - left, k->connections, k->devpath, RECONNECT_WAIT_MS / 1000);
			return -EBUSY;
		}
		if (waited_ms == 0)
			blkserv_info(k->dev, "waiting for the kernel to mark the old connections of %s dead",
				     k->devpath);
		usleep(RECONNECT_RETRY_MS * 1000);
	}
}

/*
 * A connection thread's new socket in place of its dead one.  A stop that
 * began meanwhile wins: a socket the kernel took after its disconnect is
 * shut down again, so the kernel lets go of the device.
 */
static int reconnect_conn(struct kconn *kc)
{
	struct nbd_kdev *k = kc->k;

	/* Ours may have ended first (a protocol error): let the kernel see it. */
	(void)shutdown(kc->fd, SHUT_RDWR);
	for (unsigned waited_ms = 0; !atomic_load(&k->stopping); waited_ms += RECONNECT_RETRY_MS) {
		struct nbd_nl_connect a;
		int sv[2], r, old;

		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
			return -errno;
		nbd_socket_tune(sv[0]);
		nbd_socket_tune(sv[1]);
		a = reconfigure_args(k, &sv[0], 1);
		r = nbd_nl_reconfigure(&a);
		safe_close(sv[0]);
		if (r >= 0 && !peer_gone(sv[1])) {
			pthread_mutex_lock(&k->lock);
			old = kc->fd;
			kc->fd = sv[1];
			safe_close(old);
			if (atomic_load(&k->stopping))
				(void)shutdown(kc->fd, SHUT_RDWR);
			pthread_mutex_unlock(&k->lock);
			blkserv_notice(k->dev, "reconnected %s of %s", kc->peer, k->devpath);
			return 0;
		}
		safe_close(sv[1]);
		if (r < 0)
			return r;
		if (waited_ms >= RECONNECT_WAIT_MS)
			return -EBUSY;
		usleep(RECONNECT_RETRY_MS * 1000);
	}
	return -ESHUTDOWN;
}

/* The stored server ends serve on as they are: nothing in the kernel
 * changes.  Timeouts changed in the config are applied without sockets. */
static int resume_clean(struct nbd_kdev *k, const struct nbd_state *st, const int *fds)
{
	int r;

	for (unsigned i = 0; i < k->connections; i++)
		k->conns[i].fd = fds[i];
	r = start_threads(k);
	if (r >= 0)
		r = wait_threads_ready(k);
	if (r >= 0 && (st->timeout != k->timeout || st->dead_conn_timeout != k->dead_conn_timeout)) {
		struct nbd_nl_connect a = reconfigure_args(k, NULL, 0);
		int rr = nbd_nl_reconfigure(&a);

		if (rr < 0)
			(void)blkserv_warning_errno(k->dev, rr,
						    "cannot apply the new timeouts to %s: %m (it keeps "
						    "%llu s and %llu s)",
						    k->devpath, (unsigned long long)st->timeout,
						    (unsigned long long)st->dead_conn_timeout);
	}
	return r;
}

static void went_live(struct nbd_kdev *k)
{
	/* The kernel holds its own references now. */
	close_kernel_ends(k);
	k->connected = true;
	snprintf(k->devpath, sizeof(k->devpath), "/dev/nbd%u", k->dev_index);
	blkserv_device_set_kernel_name(k->dev, k->devpath);
}

static const char *handover_why(const struct nbd_state *st, unsigned stored, unsigned n)
{
	if (st->handover == NBD_HANDOVER_NONE)
		return "the previous daemon ended while serving it";
	if (st->handover == NBD_HANDOVER_DEAD)
		return "the previous daemon closed its connections";
	if (stored < n)
		return "its connections are not in the fd store";
	return "a connection died in the meantime";
}

static int take_over(struct nbd_kdev *k, const struct nbd_state *st)
{
	int fds[MAX_CONNECTIONS];
	unsigned stored;
	bool clean;
	int r;

	if (st->connections != k->connections)
		blkserv_notice(k->dev,
			       "taking /dev/nbd%u over with its %u connection(s); the config's %u apply "
			       "to a new device",
			       st->index, st->connections, k->connections);
	k->connections = st->connections;
	k->dev_index = st->index;
	snprintf(k->devpath, sizeof(k->devpath), "/dev/nbd%u", k->dev_index);
	stored = take_stored(k, k->connections, fds);
	clean = st->handover == NBD_HANDOVER_CLEAN && stored == k->connections;
	for (unsigned i = 0; clean && i < k->connections; i++)
		clean = !peer_gone(fds[i]);
	if (clean) {
		r = resume_clean(k, st, fds);
	} else {
		blkserv_notice(k->dev, "taking %s over from the previous daemon (pid %d) with new connections: %s",
			       k->devpath, (int)st->pid, handover_why(st, stored, k->connections));
		drop_fds(fds, k->connections);
		r = reconnect_all(k);
		if (r >= 0)
			r = start_threads(k);
		if (r >= 0)
			r = wait_threads_ready(k);
	}
	/* A crash from now on must hang the sockets up at once. */
	forget_stored(k, k->connections);
	if (r < 0) {
		abort_start(k);
		return r;
	}
	went_live(k);
	if (clean)
		blkserv_notice(k->dev,
			       "resumed %s from the previous daemon (pid %d): clean handover, %u "
			       "connection(s) served on",
			       k->devpath, (int)st->pid, k->connections);
	else
		blkserv_notice(k->dev,
			       "reconnected %s: the kernel resends what the previous daemon never "
			       "answered when its %llu s request timeout fires",
			       k->devpath, (unsigned long long)k->timeout);
	(void)save_state(k, NBD_HANDOVER_NONE);
	return 1;
}

/* What the state file says: 1 the device was taken over, 0 there is none
 * to take (connect a new one), or -errno. */
static int adopt_old_device(struct nbd_kdev *k)
{
	struct nbd_state st;
	char why_buf[256], backend[256];
	const char *why;
	int r = nbd_state_read(k->state_path, &st);

	if (r < 0) {
		if (r != -ENOENT)
			(void)blkserv_warning_errno(k->dev, r, "the state file %s is unreadable (%m): ignoring it",
						    k->state_path);
		if (r != -ENOENT)
			remove_state(k);
		disconnect_stale_devices(k);
		return 0;
	}
	if (strcmp(st.backend, blkserv_device_name(k->dev)) != 0 ||
	    !sysfs_read(st.index, "backend", backend, sizeof(backend)) || strcmp(backend, st.backend) != 0 ||
	    !sysfs_exists(st.index, "pid")) {
		blkserv_info(k->dev,
			     "/dev/nbd%u of the state file is no longer connected as '%s': connecting a "
			     "new device",
			     st.index, blkserv_device_name(k->dev));
		remove_state(k);
		disconnect_stale_devices(k);
		return 0;
	}
	if (other_daemon_alive(st.pid)) {
		blkserv_error(k->dev, "/dev/nbd%u is served by a running daemon (pid %d)", st.index, (int)st.pid);
		return -EBUSY;
	}
	why = takeover_conflict(k, &st, why_buf, sizeof(why_buf));
	if (why) {
		int fds[MAX_CONNECTIONS];
		unsigned n = st.connections > MAX_CONNECTIONS ? MAX_CONNECTIONS : st.connections;

		blkserv_error(k->dev,
			      "cannot take /dev/nbd%u of the previous daemon over: %s; disconnecting it "
			      "(a file system still mounted on it gets I/O errors) and connecting a new device",
			      st.index, why);
		(void)take_stored(k, n, fds);
		drop_fds(fds, n);
		forget_stored(k, n);
		r = nbd_nl_disconnect(st.index);
		if (r < 0)
			(void)blkserv_warning_errno(k->dev, r, "cannot disconnect /dev/nbd%u: %m", st.index);
		remove_state(k);
		return 0;
	}
	return take_over(k, &st);
}

/* ---- start and stop ------------------------------------------------------ */

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
	if (r >= 0 && !k->via_ioctl) {
		r = adopt_old_device(k);
		if (r != 0)
			return r < 0 ? r : 0;
	}
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
	went_live(k);
	blkserv_notice(k->dev, "connected %s (%s, %u connection%s, flags 0x%04x)", k->devpath,
		       k->via_ioctl ? "ioctl" : "netlink", k->connections, k->connections > 1 ? "s" : "", k->tx_flags);
	if (!k->via_ioctl)
		(void)save_state(k, NBD_HANDOVER_NONE);
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
		(void)blkserv_error_errno(k->dev, r, "cannot disconnect %s: %m; closing its connections", k->devpath);
		shutdown_connections(k);
	}
}

static bool all_exited(struct nbd_kdev *k)
{
	for (unsigned i = 0; i < k->connections; i++)
		if (k->conns[i].started && !atomic_load(&k->conns[i].exited))
			return false;
	return true;
}

/* Every connection stops at a request boundary and answers what is in
 * flight; true if all did (their streams can be served on). */
static bool drain_connections(struct nbd_kdev *k)
{
	bool drained = true;

	for (unsigned i = 0; i < k->connections; i++)
		if (k->conns[i].started)
			(void)eventfd_write(k->conns[i].drain_fd, 1);
	for (unsigned waited_ms = 0; !all_exited(k) && waited_ms < DRAIN_WAIT_MS; waited_ms += 10)
		usleep(10 * 1000);
	if (!all_exited(k)) {
		blkserv_warning(k->dev, "%s: a connection did not drain in %d s: closing the connections", k->devpath,
				DRAIN_WAIT_MS / 1000);
		shutdown_connections(k);
	}
	join_threads(k);
	for (unsigned i = 0; i < k->connections; i++)
		drained = drained && k->conns[i].result == NBD_SERVE_DRAINED;
	return drained;
}

/* Our socket ends into the fd store, for the next daemon: 0 or -errno
 * (then none is left there). */
static int store_connections(struct nbd_kdev *k)
{
	for (unsigned i = 0; i < k->connections; i++) {
		char key[32];
		int r;

		conn_key(i, key, sizeof(key));
		r = blkserv_fd_store(k->dev, key, k->conns[i].fd);
		if (r < 0) {
			forget_stored(k, i);
			return r;
		}
	}
	return 0;
}

/*
 * Stop serving but leave /dev/nbdN configured for the next daemon.  With
 * an fd store the drained streams go on in the next process as if nothing
 * happened.  Without one our ends are shut down: the kernel marks the
 * sockets dead, holds new I/O for up to dead_conn_timeout, and resends what
 * it sent after the drain once its request timeout fires.
 */
static void keep_device(struct nbd_kdev *k)
{
	bool drained;
	int r = 0;

	atomic_store(&k->stopping, true);
	drained = drain_connections(k);
	if (drained)
		r = store_connections(k);
	if (!drained || r < 0)
		shutdown_connections(k);
	(void)save_state(k, drained && r >= 0 ? NBD_HANDOVER_CLEAN : NBD_HANDOVER_DEAD);
	close_sockets(k);
	k->connected = false;
	if (drained && r >= 0)
		blkserv_notice(k->dev, "kept %s for the next daemon: %u connection(s) drained and in the fd store",
			       k->devpath, k->connections);
	else
		blkserv_notice(k->dev,
			       "kept %s for the next daemon: its connections are closed (%s%s); the kernel "
			       "holds its I/O for up to %llu s (dead_conn_timeout) until the next daemon "
			       "reconnects it",
			       k->devpath, drained ? "no fd store: " : "a connection did not drain",
			       drained ? strerror(-r) : "", (unsigned long long)k->dead_conn_timeout);
}

static void nbd_stop(void *handle, uint32_t flags)
{
	struct nbd_kdev *k = handle;

	if (!k->connected)
		return;
	if ((flags & BLKSERV_STOP_KEEP_DEVICE) && !k->via_ioctl) {
		keep_device(k);
		return;
	}
	if (flags & BLKSERV_STOP_KEEP_DEVICE)
		blkserv_notice(k->dev,
			       "an nbd device configured with ioctls cannot be handed to the next daemon: "
			       "disconnecting %s",
			       k->devpath);
	if (nbd_check_idle(k) == -EBUSY)
		blkserv_warning(k->dev, "%s is still in use (mounted?): I/O it sends from now on fails", k->devpath);
	atomic_store(&k->stopping, true);
	/* The kernel sends DISC on every connection; the threads finish what
	 * is in flight and end. */
	disconnect(k);
	join_threads(k);
	stop_ioctl_thread(k);
	close_sockets(k);
	k->connected = false;
	if (!k->via_ioctl)
		remove_state(k);
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

	if (!k->connected)
		return 0;
	/* Mounted, held exclusively or open by another process. */
	return blockdev_in_use(k->devpath) > 0 ? -EBUSY : 0;
}

static struct blkserv_frontend nbd_frontend = {
	.name = "nbd",
	.description = "kernel NBD device /dev/nbdN over socketpairs (netlink, ioctl fallback)",
	.options = nbd_options,
	.open = nbd_open,
	.start = nbd_start,
	.stop = nbd_stop,
	.close = nbd_close,
	.check_health = nbd_check_health,
	.check_idle = nbd_check_idle,
	.option_checks = nbd_checks,
	.validate = nbd_validate,
};

BLKSERV_REGISTER_FRONTEND(nbd_frontend)

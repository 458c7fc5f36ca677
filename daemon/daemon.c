/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The daemon's life: load the config, start every device (all or nothing),
 * tell systemd, then wait for signals: SIGTERM/SIGINT stop, SIGHUP reloads
 * the config, SIGUSR2 (or `blkservctl upgrade`) re-executes the binary.
 * The watchdog is fed only while every device reports its I/O threads
 * healthy.
 *
 * A device belongs to the host, not to this process: at a restart of the
 * unit, at an upgrade, and at a plain stop for a device that is in use,
 * each frontend leaves its kernel device to the next process
 * (BLKSERV_STOP_KEEP_DEVICE); only idle devices are removed at a stop.
 */
#include <errno.h>
#include <pthread.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "build-config.h"
#include "cleanup.h"
#include "control.h"
#include "daemon.h"
#include "device.h"
#include "fdstore.h"
#include "log.h"
#include "metrics.h"
#include "names.h"
#include "systemd-job.h"
#include "upgrade.h"
#include "payload.h"

struct daemon {
	const char *config_file;
	const char *plugin_dir_override;
	int log_level_override;
	struct config *config;
	struct blkserv_device **devices;
	size_t ndevices;
	int signal_fd;
	int watchdog_fd;
	int control_fd;
	bool watchdog_failing;
	char *upgrade_binary;    /* set: leave the loop and execute it */
	struct metrics *metrics; /* the metrics section's endpoint; NULL: none */
};

static void start_metrics(struct daemon *d);
static void stop_metrics(struct daemon *d);

/* ---- devices ------------------------------------------------------- */

static int add_device(struct daemon *d, const struct device_config *cfg)
{
	struct blkserv_device *dev, **devices;
	int r;

	devices = realloc(d->devices, (d->ndevices + 1) * sizeof(*devices));
	if (!devices)
		return log_error_errno(ENOMEM, "out of memory");
	d->devices = devices;
	r = device_new(cfg, d->config->plugin_dir, &dev);
	if (r < 0)
		return r;
	r = upgrade_test_failure(cfg->name);
	if (r >= 0)
		r = device_start(dev);
	if (r < 0) {
		device_free(dev);
		return r;
	}
	d->devices[d->ndevices++] = dev;
	return 0;
}

static int remove_device_at(struct daemon *d, size_t i, uint32_t flags)
{
	int r = device_stop(d->devices[i], flags);

	device_free(d->devices[i]);
	memmove(&d->devices[i], &d->devices[i + 1], (d->ndevices - i - 1) * sizeof(d->devices[0]));
	d->ndevices--;
	return r;
}

enum stop_mode {
	STOP_PLAIN,   /* systemctl stop, Ctrl-C: remove what nobody uses */
	STOP_RESTART, /* the unit restarts: keep every device */
	STOP_UPGRADE, /* this process executes a new binary: keep every device */
	STOP_FAILED,  /* another device failed to start: undo the start */
};

/* Whether the device's data lives only in this process (a ramdisk) and so
 * cannot outlive a stop: systemd drops its fd store when the unit stops. */
static bool data_is_volatile(const struct blkserv_device *dev)
{
	return dev->backend->backend.preserve != NULL;
}

/* What a stop does with @dev, said in the journal when it is not the
 * plain removal of an idle device.  Main thread (check_idle). */
static uint32_t stop_flags(struct blkserv_device *dev, enum stop_mode mode)
{
	const struct blkserv_frontend *f = &dev->frontend->frontend;
	const char *kname = dev->kernel_name[0] ? dev->kernel_name : "the device";

	if (mode == STOP_RESTART || mode == STOP_UPGRADE)
		return BLKSERV_STOP_KEEP_DEVICE;
	/* STOP_FAILED as STOP_PLAIN: a device just taken over may be mounted. */
	if (!f->check_idle || f->check_idle(dev->frontend_handle) >= 0)
		return 0;
	if (data_is_volatile(dev)) {
		log_full(dev, BLKSERV_LOG_WARNING, 0,
			 "%s is in use (mounted?) but its %s data does not outlive the daemon: removing it; "
			 "its users get I/O errors from now on",
			 kname, device_backend_name(dev));
		return 0;
	}
	log_full(dev, BLKSERV_LOG_WARNING, 0,
		 "%s is in use (mounted?): not removing it; everything acknowledged is on the backend, "
		 "and its I/O waits for the next blkservd to take it over (see blkservd(8), STOP)",
		 kname);
	return BLKSERV_STOP_KEEP_DEVICE;
}

struct stopper {
	struct blkserv_device *dev;
	uint32_t flags;
	int result;
	pthread_t thread;
	bool started;
};

static void *stopper_main(void *arg)
{
	struct stopper *s = arg;

	s->result = device_stop(s->dev, s->flags);
	return NULL;
}

/* Stop every device, all at once: one slow device (a backend flushing, a
 * kernel driver waiting) must not hold up the others.  -EIO if any could
 * not make its data durable. */
static int stop_all_devices(struct daemon *d, enum stop_mode mode)
{
	_cleanup_free_ struct stopper *s = calloc(d->ndevices, sizeof(*s));
	int r = 0;

	if (!s && d->ndevices)
		return log_error_errno(ENOMEM, "out of memory");
	for (size_t i = 0; i < d->ndevices; i++) {
		s[i].dev = d->devices[i];
		s[i].flags = stop_flags(d->devices[i], mode);
	}
	for (size_t i = 0; i < d->ndevices; i++)
		s[i].started = pthread_create(&s[i].thread, NULL, stopper_main, &s[i]) == 0;
	for (size_t i = 0; i < d->ndevices; i++) {
		if (s[i].started)
			pthread_join(s[i].thread, NULL);
		else
			stopper_main(&s[i]); /* no thread to be had: in turn */
		if (s[i].result < 0)
			r = -EIO;
		device_free(s[i].dev);
	}
	d->ndevices = 0;
	return r;
}

/* All or nothing; *ret_failed names the device that failed. */
static int start_all_devices(struct daemon *d, const char **ret_failed)
{
	for (size_t i = 0; i < d->config->ndevices; i++) {
		int r = add_device(d, &d->config->devices[i]);
		*ret_failed = d->config->devices[i].name;
		if (r < 0) {
			log_error("device '%s' failed to start; stopping the %zu already started",
				  d->config->devices[i].name, d->ndevices);
			/* After an upgrade the previous binary takes them back. */
			fdstore_set_exec_pending(upgrade_in_progress());
			(void)stop_all_devices(d, upgrade_in_progress() ? STOP_UPGRADE : STOP_FAILED);
			return r;
		}
	}
	return 0;
}

static ssize_t find_device(struct daemon *d, const char *name)
{
	for (size_t i = 0; i < d->ndevices; i++)
		if (strcmp(device_name(d->devices[i]), name) == 0)
			return (ssize_t)i;
	return -1;
}

/* ---- systemd ------------------------------------------------------- */

static void notify_status(struct daemon *d, const char *prefix)
{
	char status[4096];
	size_t len;

	len = (size_t)snprintf(status, sizeof(status), "%sSTATUS=Serving %zu device%s", prefix, d->ndevices,
			       d->ndevices == 1 ? "" : "s");
	for (size_t i = 0; i < d->ndevices && len < sizeof(status); i++) {
		struct blkserv_device *dev = d->devices[i];
		len += (size_t)snprintf(status + len, sizeof(status) - len, "%s %s (%s %s, %s)", i ? "," : ":",
					device_name(dev), device_frontend_name(dev),
					dev->kernel_name[0] ? dev->kernel_name : "-", device_backend_name(dev));
	}
	(void)sd_notify(0, status);
}

static int setup_watchdog(struct daemon *d)
{
	uint64_t usec;
	struct itimerspec its = {};

	d->watchdog_fd = -1;
	if (sd_watchdog_enabled(0, &usec) <= 0)
		return 0;
	d->watchdog_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	if (d->watchdog_fd < 0)
		return log_error_errno(errno, "cannot create the watchdog timer: %m");
	usec /= 2;
	its.it_interval.tv_sec = (time_t)(usec / 1000000);
	its.it_interval.tv_nsec = (long)(usec % 1000000) * 1000;
	its.it_value = its.it_interval;
	if (timerfd_settime(d->watchdog_fd, 0, &its, NULL) < 0)
		return log_error_errno(errno, "cannot arm the watchdog timer: %m");
	log_info("watchdog enabled: fed every %llu ms while every device is healthy",
		 (unsigned long long)(usec / 1000));
	return 0;
}

static void feed_watchdog(struct daemon *d)
{
	uint64_t ticks;

	(void)read(d->watchdog_fd, &ticks, sizeof(ticks));
	for (size_t i = 0; i < d->ndevices; i++) {
		int r = device_check_health(d->devices[i]);
		if (r < 0) {
			if (!d->watchdog_failing)
				log_full(d->devices[i], BLKSERV_LOG_ERR, r,
					 "I/O threads unhealthy (%m): no longer feeding the watchdog");
			d->watchdog_failing = true;
			return;
		}
	}
	d->watchdog_failing = false;
	(void)sd_notify(0, "WATCHDOG=1");
}

/* ---- reload -------------------------------------------------------- */

/* Devices gone from the new config are removed, unless open (then
 * @answer's client is warned). */
static void reload_remove(struct daemon *d, struct config *next, struct json_object *answer)
{
	for (size_t i = d->ndevices; i-- > 0;) {
		struct blkserv_device *dev = d->devices[i];
		const struct device_config *n = config_find_device(next, device_name(dev));
		const struct blkserv_frontend *f = &dev->frontend->frontend;

		if (n && device_config_equal(n, dev->config))
			continue;
		if (f->check_idle && f->check_idle(dev->frontend_handle) < 0) {
			char msg[128];
			snprintf(msg, sizeof(msg), "is open: not %s it on reload; close it and reload again",
				 n ? "restarting" : "removing");
			log_full(dev, BLKSERV_LOG_ERR, 0, "%s", msg);
			control_report_warning(answer, device_name(dev), msg);
			continue;
		}
		log_full(dev, BLKSERV_LOG_INFO, 0, "%s on reload", n ? "restarting (config changed)" : "removing");
		(void)remove_device_at(d, i, 0);
	}
}

/* Start the devices of the new config that do not run (added, or removed
 * for a restart); each that fails is logged and told to @answer's client.
 * Returns how many failed. */
static size_t reload_add(struct daemon *d, struct json_object *answer)
{
	size_t failed = 0;

	for (size_t i = 0; i < d->config->ndevices; i++) {
		const struct device_config *cfg = &d->config->devices[i];
		_cleanup_free_ char *why = NULL;
		int r;

		if (find_device(d, cfg->name) >= 0)
			continue;
		log_capture_begin();
		r = add_device(d, cfg);
		why = log_capture_end();
		if (r >= 0)
			continue;
		failed++;
		log_error("device '%s' failed to start on reload; the others keep running", cfg->name);
		control_report_failed(answer, cfg->name, why ? why : strerror(-r));
	}
	return failed;
}

static int reload(struct daemon *d, struct json_object *answer, char **ret_error)
{
	_cleanup_free_ char *error = NULL;
	struct config *next, *prev;
	size_t failed;
	int r;

	(void)sd_notify(0, "RELOADING=1");
	log_info("reloading %s", d->config_file);
	r = config_load(d->config_file, d->plugin_dir_override, &next, &error);
	if (r < 0) {
		log_error("reload failed, keeping the running config: %s", error ? error : strerror(-r));
		notify_status(d, "READY=1\n");
		if (ret_error)
			*ret_error = TAKE_PTR(error);
		return r;
	}
	payload_set_limit(next->request_memory);
	reload_remove(d, next, answer);
	prev = d->config;
	d->config = next;
	if (!metrics_config_equal(&prev->metrics, &next->metrics))
		stop_metrics(d);
	start_metrics(d); /* also after a failed listen: a reload tries again */
	failed = reload_add(d, answer);
	config_free(prev);
	notify_status(d, "READY=1\n");
	if (failed == 0)
		return 0;
	if (ret_error && asprintf(ret_error, "%zu device%s of the new config failed to start (the others run)", failed,
				  failed == 1 ? "" : "s") < 0)
		*ret_error = NULL;
	return -EIO;
}

static size_t control_count(void *userdata)
{
	return ((struct daemon *)userdata)->ndevices;
}

static struct blkserv_device *control_device_at(void *userdata, size_t i)
{
	return ((struct daemon *)userdata)->devices[i];
}

static int control_reload(void *userdata, struct json_object *answer, char **ret_error)
{
	return reload(userdata, answer, ret_error);
}

/* blkservctl upgrade [BINARY]: refuse a binary that refuses the config;
 * otherwise leave the main loop to execute it. */
static int request_upgrade(struct daemon *d, const char *binary, char **ret_error)
{
	char *path;
	int r;

	if (!binary || !*binary)
		binary = upgrade_default_binary();
	r = upgrade_preflight(binary, d->config_file, d->plugin_dir_override, ret_error);
	if (r < 0) {
		log_error("not upgrading: %s", ret_error && *ret_error ? *ret_error : strerror(-r));
		return r;
	}
	path = strdup(binary);
	if (!path)
		return -ENOMEM;
	free(d->upgrade_binary);
	d->upgrade_binary = path;
	log_notice("upgrading in place to %s", path);
	return 0;
}

static int control_upgrade(void *userdata, const char *binary, char **ret_error)
{
	return request_upgrade(userdata, binary, ret_error);
}

static void setup_control(struct daemon *d)
{
	_cleanup_free_ char *path = NULL;

	if (asprintf(&path, "%s/control.sock", d->config->runtime_dir) < 0)
		return;
	d->control_fd = control_listen(path);
	if (d->control_fd < 0)
		log_warning_errno(d->control_fd, "cannot listen on %s (%m): blkservctl will not work", path);
}

/* ---- the main loop ------------------------------------------------- */

static int setup_signals(struct daemon *d)
{
	sigset_t mask;

	/* Blocked here, before any thread exists, so every thread inherits it. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGUSR2);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
		return log_error_errno(errno, "cannot block signals: %m");
	signal(SIGPIPE, SIG_IGN); /* a client hanging up is an error return, not death */
	d->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (d->signal_fd < 0)
		return log_error_errno(errno, "cannot create a signalfd: %m");
	return 0;
}

/* The metrics endpoint, if the config has one.  A failure is logged and
 * leaves the devices served: they matter more than their metrics. */
static void start_metrics(struct daemon *d)
{
	const struct metrics_source src = {
		.userdata = d,
		.count = control_count,
		.device_at = control_device_at,
	};

	if (d->config->metrics.enabled && !d->metrics)
		(void)metrics_start(&d->config->metrics, &src, &d->metrics);
}

static void stop_metrics(struct daemon *d)
{
	metrics_stop(d->metrics);
	d->metrics = NULL;
}

static int event_loop(struct daemon *d)
{
	const struct control_ops ops = {
		.userdata = d,
		.count = control_count,
		.device_at = control_device_at,
		.reload = control_reload,
		.upgrade = control_upgrade,
	};

	while (!d->upgrade_binary) {
		struct pollfd fds[4] = {
			{ .fd = d->signal_fd, .events = POLLIN },
			{ .fd = d->control_fd, .events = POLLIN },
			{ .fd = d->watchdog_fd, .events = POLLIN },
			{ .fd = d->metrics ? metrics_fd(d->metrics) : -1, .events = POLLIN },
		};
		struct signalfd_siginfo si;

		if (poll(fds, 4, d->metrics ? metrics_timeout_ms(d->metrics) : -1) < 0) {
			if (errno == EINTR)
				continue;
			return log_error_errno(errno, "poll failed: %m");
		}
		if (d->metrics)
			metrics_run(d->metrics); /* its connections, and their timeouts */
		if (fds[2].revents & POLLIN)
			feed_watchdog(d);
		if (fds[1].revents & POLLIN)
			control_serve(d->control_fd, &ops);
		if (!(fds[0].revents & POLLIN))
			continue;
		if (read(d->signal_fd, &si, sizeof(si)) != sizeof(si))
			continue;
		if (si.ssi_signo == SIGHUP) {
			(void)reload(d, NULL, NULL);
			continue;
		}
		if (si.ssi_signo == SIGUSR2) {
			(void)request_upgrade(d, NULL, NULL);
			continue;
		}
		log_info("received %s, stopping", strsignal((int)si.ssi_signo));
		return 0;
	}
	return 0;
}

static void lock_memory(const struct config *c)
{
#if defined(__SANITIZE_ADDRESS__)
	/* ASan reserves terabytes of shadow memory; locking it cannot work. */
	log_notice("built with AddressSanitizer: not locking memory");
#else
	struct rlimit rl;

	if (!c->lock_memory)
		return;
	/* Without CAP_IPC_LOCK, MCL_FUTURE would make every later allocation
	 * (thread stacks, queue rings) fail once RLIMIT_MEMLOCK is used up. */
	if (geteuid() != 0 && getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
		log_warning("not locking memory: RLIMIT_MEMLOCK is %llu bytes (raise it, e.g. "
			    "LimitMEMLOCK=infinity, or set lock_memory = false)",
			    (unsigned long long)rl.rlim_cur);
		return;
	}
	/* A daemon that serves a block device must not wait for its own
	 * pages to be paged in through that device. */
	if (mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) < 0)
		log_warning_errno(errno, "cannot lock memory (%m; needs CAP_IPC_LOCK or a higher "
					 "RLIMIT_MEMLOCK): memory pressure may stall devices");
#endif
}

static int prepare(struct daemon *d)
{
	_cleanup_free_ char *error = NULL;
	int r;

	r = config_load(d->config_file, d->plugin_dir_override, &d->config, &error);
	if (r < 0) {
		log_error("%s", error ? error : strerror(-r));
		return r;
	}
	log_set_max_level(d->log_level_override >= 0 ? d->log_level_override : d->config->log_level);
	daemon_set_runtime_dir(d->config->runtime_dir);
	if (mkdir(d->config->runtime_dir, 0755) < 0 && errno != EEXIST)
		log_warning_errno(errno, "cannot create runtime directory %s: %m", d->config->runtime_dir);
	lock_memory(d->config);
	payload_set_limit(d->config->request_memory);
	setup_control(d);
	r = setup_signals(d);
	if (r >= 0)
		r = setup_watchdog(d);
	return r;
}

static void close_control(struct daemon *d)
{
	char path[4096];

	if (d->control_fd < 0)
		return;
	snprintf(path, sizeof(path), "%s/control.sock", d->config->runtime_dir);
	(void)unlink(path);
	d->control_fd = safe_close(d->control_fd);
}

/* Start every device of the config, from the fds and state a previous
 * process (or this one, before a failed exec) left. */
static int start_devices(struct daemon *d)
{
	const char *failed = "";
	int r;

	names_reset();
	r = start_all_devices(d, &failed);
	if (r < 0 && upgrade_in_progress()) {
		char reason[256];
		snprintf(reason, sizeof(reason), "the new binary could not start device '%s' (%s)", failed,
			 strerror(-r));
		log_error("%s: handing the devices back to the previous binary", reason);
		r = upgrade_fall_back(reason);
		log_error_errno(r, "cannot execute the previous binary again: %m");
	}
	upgrade_done();
	fdstore_release_unclaimed();
	return r;
}

/* Hand every device to d->upgrade_binary; back here only if the exec
 * failed, with the devices started again. */
static int upgrade(struct daemon *d)
{
	_cleanup_free_ char *binary = TAKE_PTR(d->upgrade_binary);
	int r;

	(void)sd_notifyf(0, "RELOADING=1\nSTATUS=Upgrading: handing %zu devices to %s", d->ndevices, binary);
	fdstore_set_exec_pending(true);
	if (stop_all_devices(d, STOP_UPGRADE) < 0)
		log_warning("a device could not make its data durable before the upgrade");
	close_control(d);
	stop_metrics(d); /* the new image listens again */
	/* The new image feeds the watchdog only once it serves again. */
	if (d->watchdog_fd >= 0)
		(void)sd_notify(0, "WATCHDOG=1");
	r = upgrade_exec(binary);
	log_error_errno(r, "cannot execute %s (%m): taking the devices back", binary);
	fdstore_set_exec_pending(false);
	fdstore_reinherit();
	setup_control(d);
	r = start_devices(d);
	if (r >= 0) {
		start_metrics(d);
		notify_status(d, "READY=1\n");
	}
	return r;
}

static enum stop_mode final_stop_mode(void)
{
	if (systemd_restart_pending()) {
		log_notice("systemd is restarting the unit: keeping every device for the next process");
		return STOP_RESTART;
	}
	return STOP_PLAIN;
}

int daemon_run(const char *config_file, const char *plugin_dir_override, int log_level)
{
	struct daemon d = {
		.config_file = config_file,
		.plugin_dir_override = plugin_dir_override,
		.log_level_override = log_level,
		.signal_fd = -1,
		.watchdog_fd = -1,
		.control_fd = -1,
	};
	int r;

	r = prepare(&d);
	if (r >= 0) {
		fdstore_init();
		r = start_devices(&d);
	}
	if (r >= 0) {
		start_metrics(&d);
		notify_status(&d, "READY=1\n");
		log_info("ready: %zu device%s%s", d.ndevices, d.ndevices == 1 ? "" : "s",
			 upgrade_generation()
				 ? (upgrade_failure() ? " (the upgrade was undone)" : " (upgraded in place)")
				 : "");
		do
			r = event_loop(&d);
		while (r >= 0 && d.upgrade_binary && upgrade(&d) >= 0);
		(void)sd_notify(0, "STOPPING=1\nSTATUS=Stopping devices");
		if (stop_all_devices(&d, final_stop_mode()) < 0 && r >= 0)
			r = log_error_errno(EIO,
					    "a device could not make its data durable at stop: exiting with failure");
	} else {
		(void)sd_notifyf(0, "STATUS=Failed to start: %s\nERRNO=%d", strerror(-r), -r);
	}
	close_control(&d);
	stop_metrics(&d);
	free(d.devices);
	free(d.upgrade_binary);
	config_free(d.config);
	safe_close(d.signal_fd);
	safe_close(d.watchdog_fd);
	daemon_set_runtime_dir(NULL);
	return r;
}

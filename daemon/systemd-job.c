/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Is this SIGTERM a restart?  systemd sends the same signal for
 * `systemctl stop` and `systemctl restart` (and a package upgrade's
 * `deb-systemd-invoke restart`); only the job it is running tells them
 * apart.  We ask the service manager, over its private socket (root only,
 * no D-Bus daemon needed) or else the system bus, for the job queued on our
 * own unit: "restart", "try-restart" or "reload-or-restart" mean the next
 * process will take the devices over.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include "log.h"
#include "systemd-job.h"

#define SYSTEMD_DEST "org.freedesktop.systemd1"

static void bus_unrefp(sd_bus **bus)
{
	if (*bus)
		sd_bus_flush_close_unref(*bus);
}

static int open_manager_bus(sd_bus **ret)
{
	sd_bus *bus = NULL;
	int r;

	/* PID 1's own socket answers even while dbus-daemon is stopping. */
	r = sd_bus_new(&bus);
	if (r >= 0)
		r = sd_bus_set_address(bus, "unix:path=/run/systemd/private");
	if (r >= 0)
		r = sd_bus_start(bus);
	if (r >= 0) {
		*ret = bus;
		return 0;
	}
	if (bus)
		sd_bus_unref(bus);
	return sd_bus_open_system(ret);
}

static int own_unit_path(sd_bus *bus, char **ret_path)
{
	sd_bus_message *reply = NULL;
	sd_bus_error error = SD_BUS_ERROR_NULL;
	const char *path;
	int r;

	r = sd_bus_call_method(bus, SYSTEMD_DEST, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager",
			       "GetUnitByPID", &error, &reply, "u", (uint32_t)getpid());
	if (r >= 0)
		r = sd_bus_message_read(reply, "o", &path);
	if (r >= 0)
		*ret_path = strdup(path);
	if (r >= 0 && !*ret_path)
		r = -ENOMEM;
	sd_bus_error_free(&error);
	sd_bus_message_unref(reply);
	return r;
}

/* The type of the job queued on @unit_path into *ret_type ("" if none). */
static int job_type(sd_bus *bus, const char *unit_path, char **ret_type)
{
	sd_bus_message *reply = NULL;
	sd_bus_error error = SD_BUS_ERROR_NULL;
	const char *job_path = NULL;
	uint32_t job_id = 0;
	int r;

	r = sd_bus_get_property(bus, SYSTEMD_DEST, unit_path, "org.freedesktop.systemd1.Unit", "Job", &error, &reply,
				"(uo)");
	if (r >= 0)
		r = sd_bus_message_read(reply, "(uo)", &job_id, &job_path);
	if (r >= 0 && job_id == 0) {
		*ret_type = strdup("");
	} else if (r >= 0) {
		sd_bus_error_free(&error);
		r = sd_bus_get_property_string(bus, SYSTEMD_DEST, job_path, "org.freedesktop.systemd1.Job", "JobType",
					       &error, ret_type);
	}
	if (r >= 0 && !*ret_type)
		r = -ENOMEM;
	sd_bus_error_free(&error);
	sd_bus_message_unref(reply);
	return r;
}

bool systemd_restart_pending(void)
{
	__attribute__((cleanup(bus_unrefp))) sd_bus *bus = NULL;
	char *unit = NULL, *type = NULL;
	bool restart;
	int r;

	if (!getenv("NOTIFY_SOCKET"))
		return false; /* not a systemd service */
	r = open_manager_bus(&bus);
	if (r >= 0)
		r = own_unit_path(bus, &unit);
	if (r >= 0)
		r = job_type(bus, unit, &type);
	if (r < 0) {
		log_warning_errno(r, "cannot ask systemd whether this stop is a restart (%m): treating it as a stop");
		free(unit);
		return false;
	}
	restart = strcmp(type, "restart") == 0 || strcmp(type, "try-restart") == 0 ||
		  strcmp(type, "reload-or-restart") == 0;
	log_debug("systemd job on %s: '%s'", unit, type);
	free(unit);
	free(type);
	return restart;
}

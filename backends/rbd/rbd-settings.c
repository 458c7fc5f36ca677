/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The rbd backend's options, read and checked before any connection to the
 * cluster: a mistyped name or a missing file gets an error that names the
 * option, not a timeout from a cluster that was never asked.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rbd.h"

const struct blkserv_option rbd_backend_options[] = {
	{ "pool", BLKSERV_OPT_STRING, NULL, "Ceph pool holding the image", BLKSERV_OPTION_REQUIRED },
	{ "image", BLKSERV_OPT_STRING, NULL, "RBD image name", BLKSERV_OPTION_REQUIRED },
	{ "namespace", BLKSERV_OPT_STRING, "", "RBD namespace inside the pool (empty: the default one)", 0 },
	{ "user", BLKSERV_OPT_STRING, "admin", "Ceph client id to connect as (admin or client.admin)", 0 },
	{ "keyring", BLKSERV_OPT_PATH, NULL, "keyring file with the user's key (default: what ceph.conf says)",
	  0 },
	{ "conf", BLKSERV_OPT_PATH, RBD_DEFAULT_CONF, "ceph.conf naming the monitors", 0 },
	{ "create", BLKSERV_OPT_BOOL, "false", "create the image with the device's size when it does not exist",
	  0 },
	{ "timeout", BLKSERV_OPT_UINT, "30",
	  "seconds before a cluster operation fails (connect, monitor and OSD ops), 1-3600", 0 },
	{ "exclusive", BLKSERV_OPT_BOOL, "true",
	  "hold the image's exclusive lock for the whole run: other clients cannot write", 0 },
	{ "read_only", BLKSERV_OPT_BOOL, "false", "open the image read-only and serve a read-only device", 0 },
	BLKSERV_OPTION_END,
};

/* A pool, namespace or image name: what Ceph accepts and what our "pool/image"
 * messages can show without ambiguity. */
static int check_name(struct blkserv_device *dev, const char *option, const char *value, bool may_be_empty,
		      const char *forbidden)
{
	if (!value || (!value[0] && !may_be_empty)) {
		blkserv_error(dev, "rbd backend: option %s must not be empty", option);
		return -EINVAL;
	}
	for (const char *p = value; *p; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			blkserv_error(dev, "rbd backend: option %s contains a control character", option);
			return -EINVAL;
		}
		if (strchr(forbidden, *p)) {
			blkserv_error(dev, "rbd backend: %s \"%s\" contains '%c', which Ceph does not allow there",
				      option, value, *p);
			return -EINVAL;
		}
	}
	return 0;
}

/* "admin" or "client.admin"; other entity types (osd.0, mon.a) are not clients. */
static int check_user(struct blkserv_device *dev, const char *user)
{
	const char *dot = user ? strchr(user, '.') : NULL;
	int r = check_name(dev, "user", user, false, " /");

	if (r < 0)
		return r;
	if (dot && (strncmp(user, "client.", 7) != 0 || !user[7])) {
		blkserv_error(dev,
			      "rbd backend: user \"%s\" is not a client name: give the client id (\"admin\") or "
			      "\"client.ID\"",
			      user);
		return -EINVAL;
	}
	return 0;
}

static int check_readable_file(struct blkserv_device *dev, const char *option, const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		int err = errno;
		blkserv_error(dev, "rbd backend: %s %s: %s", option, path, strerror(err));
		return -err;
	}
	if (!S_ISREG(st.st_mode)) {
		blkserv_error(dev, "rbd backend: %s %s is not a regular file", option, path);
		return -EINVAL;
	}
	if (access(path, R_OK) < 0) {
		int err = errno;
		blkserv_error(dev, "rbd backend: %s %s cannot be read: %s", option, path, strerror(err));
		return -err;
	}
	return 0;
}

static int check_timeout(struct blkserv_device *dev, uint64_t t)
{
	if (t == 0 || t > RBD_TIMEOUT_MAX) {
		blkserv_error(dev, "rbd backend: timeout = %llu is out of range 1-%u seconds%s", (unsigned long long)t,
			      RBD_TIMEOUT_MAX, t == 0 ? " (0 would let an unreachable cluster hang the device)" : "");
		return -ERANGE;
	}
	return 0;
}

static int check_create(struct blkserv_device *dev, const struct rbd_settings *s)
{
	if (!s->create)
		return 0;
	if (s->read_only) {
		blkserv_error(dev, "rbd backend: create = true and read_only = true exclude each other");
		return -EINVAL;
	}
	if (s->size == 0) {
		blkserv_error(dev, "rbd backend: create = true needs the device's size option (the new image's size)");
		return -EINVAL;
	}
	return 0;
}

static void read_strings(const struct blkserv_config *cfg, struct rbd_settings *s)
{
	(void)blkserv_config_get_string(cfg, "pool", &s->pool);
	(void)blkserv_config_get_string(cfg, "image", &s->image);
	(void)blkserv_config_get_string(cfg, "namespace", &s->ns);
	(void)blkserv_config_get_string(cfg, "user", &s->user);
	(void)blkserv_config_get_string(cfg, "keyring", &s->keyring);
	(void)blkserv_config_get_string(cfg, "conf", &s->conf);
}

int rbd_settings_read(struct blkserv_device *dev, const struct blkserv_config *cfg, uint64_t size,
		      struct rbd_settings *ret)
{
	struct rbd_settings s = { .size = size, .conf = RBD_DEFAULT_CONF, .user = "admin", .ns = "" };
	uint64_t timeout = 30;
	int r;

	read_strings(cfg, &s);
	(void)blkserv_config_get_bool(cfg, "create", &s.create);
	(void)blkserv_config_get_bool(cfg, "exclusive", &s.exclusive);
	(void)blkserv_config_get_bool(cfg, "read_only", &s.read_only);
	(void)blkserv_config_get_uint(cfg, "timeout", &timeout);

	r = check_name(dev, "pool", s.pool, false, "/");
	if (r >= 0)
		r = check_name(dev, "namespace", s.ns, true, "/");
	if (r >= 0)
		r = check_name(dev, "image", s.image, false, "/@");
	if (r >= 0)
		r = check_user(dev, s.user);
	if (r >= 0)
		r = check_timeout(dev, timeout);
	if (r >= 0)
		r = check_create(dev, &s);
	if (r >= 0)
		r = check_readable_file(dev, "conf", s.conf);
	if (r >= 0 && s.keyring)
		r = check_readable_file(dev, "keyring", s.keyring);
	if (r < 0)
		return r;
	s.timeout_s = (uint32_t)timeout;
	*ret = s;
	return 0;
}

char *rbd_settings_spec(const struct rbd_settings *s)
{
	char *spec;
	int r;

	if (s->ns && s->ns[0])
		r = asprintf(&spec, "%s/%s/%s", s->pool, s->ns, s->image);
	else
		r = asprintf(&spec, "%s/%s", s->pool, s->image);
	return r < 0 ? NULL : spec;
}

const struct blkserv_option_check rbd_backend_option_checks[] = {
	{ "timeout", 1, RBD_TIMEOUT_MAX, NULL },
	BLKSERV_OPTION_CHECK_END,
};

/* The combinations rbd_settings_read refuses, and the image, which two
 * writing devices cannot share (exclusive lock or not, two writers
 * corrupt it).  Names and files are checked when the device opens. */
int rbd_backend_validate(const struct blkserv_config *cfg)
{
	const char *pool = NULL, *ns = "", *image = NULL;
	bool create = false, read_only = false;
	char key[1024];

	(void)blkserv_config_get_bool(cfg, "create", &create);
	(void)blkserv_config_get_bool(cfg, "read_only", &read_only);
	if (create && read_only)
		return blkserv_config_error(cfg, "create", "create = true and read_only = true exclude each other");
	if (create && blkserv_config_device_size(cfg) == 0)
		return blkserv_config_error(cfg, "create", "create = true needs the device's size option "
					    "(the new image's size)");
	(void)blkserv_config_get_string(cfg, "pool", &pool);
	(void)blkserv_config_get_string(cfg, "namespace", &ns);
	(void)blkserv_config_get_string(cfg, "image", &image);
	if (read_only || !pool || !image)
		return 0;
	snprintf(key, sizeof(key), "%s/%s%s%s", pool, ns, ns[0] ? "/" : "", image);
	return blkserv_config_claim(cfg, "image", "RBD image", key);
}

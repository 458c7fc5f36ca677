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
	{ "keyring", BLKSERV_OPT_PATH, NULL, "keyring file with the user's key (default: what ceph.conf says)", 0 },
	{ "conf", BLKSERV_OPT_PATH, RBD_DEFAULT_CONF, "ceph.conf naming the monitors", 0 },
	{ "create", BLKSERV_OPT_BOOL, "false", "create the image with the device's size when it does not exist", 0 },
	{ "timeout", BLKSERV_OPT_UINT, "30",
	  "seconds before a cluster operation fails (connect, monitor and OSD ops), 1-3600", 0 },
	{ "exclusive", BLKSERV_OPT_BOOL, "true",
	  "hold the image's exclusive lock for the whole run: other clients cannot write", 0 },
	{ "read_only", BLKSERV_OPT_BOOL, "false", "open the image read-only and serve a read-only device", 0 },
	BLKSERV_OPTION_END,
};

/* Longer names are refused: Ceph keeps an image's name in object names
 * ("rbd_id.NAME") and omap keys, and the kernel's rbd client and old image
 * formats limit names to less than this; 255 is also what file systems
 * allow for one path component, so a name fits wherever it is shown. */
#define RBD_NAME_MAX 255

/* A pool, namespace or image name: what Ceph accepts and what our
 * "pool/image" messages can show without ambiguity.  NULL, or what is
 * wrong (in @buf), for validate and open alike. */
static const char *name_problem(const char *option, const char *value, bool may_be_empty, const char *forbidden,
				char *buf, size_t len)
{
	if (!value || (!value[0] && !may_be_empty)) {
		snprintf(buf, len, "%s must not be empty", option);
		return buf;
	}
	if (strlen(value) > RBD_NAME_MAX) {
		snprintf(buf, len, "%s is %zu bytes long, more than %d", option, strlen(value), RBD_NAME_MAX);
		return buf;
	}
	for (const char *p = value; *p; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			snprintf(buf, len, "%s contains a control character", option);
			return buf;
		}
		if (strchr(forbidden, *p)) {
			snprintf(buf, len, "%s \"%s\" contains '%c', which Ceph does not allow there", option, value,
				 *p);
			return buf;
		}
	}
	return NULL;
}

/* "admin" or "client.admin"; other entity types (osd.0, mon.a) are not clients. */
static const char *user_problem(const char *user, char *buf, size_t len)
{
	const char *dot = user ? strchr(user, '.') : NULL;
	const char *why = name_problem("user", user, false, " /", buf, len);

	if (why)
		return why;
	if (dot && (strncmp(user, "client.", 7) != 0 || !user[7])) {
		snprintf(buf, len, "user \"%s\" is not a client name: give the client id (\"admin\") or \"client.ID\"",
			 user);
		return buf;
	}
	return NULL;
}

/* The names' rules, in the order the options are documented: NULL, or
 * the option at fault (*ret_option) and what is wrong with it. */
static const char *names_problem(const char *pool, const char *ns, const char *image, const char *user,
				 const char **ret_option, char *buf, size_t len)
{
	const char *why;

	if ((why = name_problem("pool", pool, false, "/", buf, len)))
		*ret_option = "pool";
	else if ((why = name_problem("namespace", ns, true, "/", buf, len)))
		*ret_option = "namespace";
	else if ((why = name_problem("image", image, false, "/@", buf, len)))
		*ret_option = "image";
	else if ((why = user_problem(user, buf, len)))
		*ret_option = "user";
	return why;
}

static int check_readable_file(struct blkserv_device *dev, const char *option, const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return blkserv_error_errno(dev, errno, "%s %s: %m", option, path);
	if (!S_ISREG(st.st_mode)) {
		blkserv_error(dev, "%s %s is not a regular file", option, path);
		return -EINVAL;
	}
	if (access(path, R_OK) < 0)
		return blkserv_error_errno(dev, errno, "%s %s cannot be read: %m", option, path);
	return 0;
}

static int check_timeout(struct blkserv_device *dev, uint64_t t)
{
	if (t == 0 || t > RBD_TIMEOUT_MAX) {
		blkserv_error(dev, "timeout = %llu is out of range 1-%u seconds%s", (unsigned long long)t,
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
		blkserv_error(dev, "create = true and read_only = true exclude each other");
		return -EINVAL;
	}
	if (s->size == 0) {
		blkserv_error(dev, "create = true needs the device's size option (the new image's size)");
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

	char buf[512];
	const char *option, *why = names_problem(s.pool, s.ns, s.image, s.user, &option, buf, sizeof(buf));

	if (why) {
		blkserv_error(dev, "%s", why);
		return -EINVAL;
	}
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

/* A file option, when set: an existing, readable regular file. */
static int validate_file(const struct blkserv_config *cfg, const char *option)
{
	const char *path = NULL;
	struct stat st;

	if (blkserv_config_get_string(cfg, option, &path) < 0 || !path)
		return 0;
	if (stat(path, &st) < 0)
		return blkserv_config_error(cfg, option, "%s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return blkserv_config_error(cfg, option, "%s is not a regular file", path);
	if (access(path, R_OK) < 0)
		return blkserv_config_error(cfg, option, "%s cannot be read: %s", path, strerror(errno));
	return 0;
}

/* Everything rbd_settings_read refuses without the cluster: the
 * combinations, the names, the files; and the image, which two writing
 * devices cannot share (exclusive lock or not, two writers corrupt it). */
int rbd_backend_validate(const struct blkserv_config *cfg)
{
	const char *pool = NULL, *ns = "", *image = NULL, *user = "admin", *option, *why;
	bool create = false, read_only = false;
	char key[1024], buf[512];
	int r;

	(void)blkserv_config_get_bool(cfg, "create", &create);
	(void)blkserv_config_get_bool(cfg, "read_only", &read_only);
	if (create && read_only)
		return blkserv_config_error(cfg, "create", "create = true and read_only = true exclude each other");
	if (create && blkserv_config_device_size(cfg) == 0)
		return blkserv_config_error(cfg, "create",
					    "create = true needs the device's size option "
					    "(the new image's size)");
	(void)blkserv_config_get_string(cfg, "pool", &pool);
	(void)blkserv_config_get_string(cfg, "namespace", &ns);
	(void)blkserv_config_get_string(cfg, "image", &image);
	(void)blkserv_config_get_string(cfg, "user", &user);
	if (!pool || !image)
		return 0; /* required: the daemon reports it */
	why = names_problem(pool, ns, image, user, &option, buf, sizeof(buf));
	if (why)
		return blkserv_config_error(cfg, option, "%s", why);
	r = validate_file(cfg, "keyring");
	if (r >= 0 && blkserv_config_is_set(cfg, "conf"))
		r = validate_file(cfg, "conf"); /* the default one is looked for at open */
	if (r < 0 || read_only)
		return r;
	snprintf(key, sizeof(key), "%s/%s%s%s", pool, ns, ns[0] ? "/" : "", image);
	return blkserv_config_claim(cfg, "image", "RBD image", key);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* blkservd: serve block devices from user space. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build-config.h"
#include "cleanup.h"
#include "daemon.h"
#include "log.h"
#include "plugin-info.h"
#include "upgrade.h"

static const char *arg_config = BLKSERV_CONFIG_FILE;
static const char *arg_plugin_dir;
static const char *arg_help_plugin;
static int arg_log_level = -1;
static enum { ACTION_RUN, ACTION_CHECK, ACTION_LIST, ACTION_HELP_PLUGIN, ACTION_DUMP_PLUGIN } arg_action = ACTION_RUN;

static void help(void)
{
	printf("Usage: blkservd [OPTIONS]\n"
	       "Serve block devices from user space, as /etc/blkservd.conf says.\n\n"
	       "  -c, --config FILE        config file (default %s)\n"
	       "      --check-config       validate the config and its plugins, then exit\n"
	       "      --list-plugins       list the frontend and backend plugins\n"
	       "      --help-plugin NAME   show a plugin's options\n"
	       "      --dump-plugin NAME   show a plugin's ABI version and callbacks (key=value)\n"
	       "      --plugin-dir DIR     load plugins from DIR (overrides plugin_dir)\n"
	       "      --log-level LEVEL    err, warning, notice, info or debug\n"
	       "  -h, --help               this help\n"
	       "      --version            print the version\n",
	       BLKSERV_CONFIG_FILE);
}

enum { ARG_CHECK = 0x100, ARG_LIST, ARG_HELP_PLUGIN, ARG_DUMP_PLUGIN, ARG_PLUGIN_DIR, ARG_LOG_LEVEL, ARG_VERSION };

/* One action per command line: "--check-config --list-plugins" or two
 * --help-plugin would otherwise do only the last one, silently. */
static int set_action(int option, const char *plugin)
{
	static const struct {
		int option;
		int action;
		const char *name;
	} actions[] = {
		{ ARG_CHECK, ACTION_CHECK, "--check-config" },
		{ ARG_LIST, ACTION_LIST, "--list-plugins" },
		{ ARG_HELP_PLUGIN, ACTION_HELP_PLUGIN, "--help-plugin" },
		{ ARG_DUMP_PLUGIN, ACTION_DUMP_PLUGIN, "--dump-plugin" },
	};
	static const char *given;

	for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++) {
		if (actions[i].option != option)
			continue;
		if (given == actions[i].name) {
			log_error("%s is given twice (one action at a time)", given);
			return -EINVAL;
		}
		if (given) {
			log_error("%s and %s cannot be given together (one action at a time)", given, actions[i].name);
			return -EINVAL;
		}
		given = actions[i].name;
		arg_action = actions[i].action;
		arg_help_plugin = plugin;
		return 0;
	}
	return -EINVAL;
}

static int parse_argv(int argc, char **argv)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, ARG_CHECK },
		{ "list-plugins", no_argument, NULL, ARG_LIST },
		{ "help-plugin", required_argument, NULL, ARG_HELP_PLUGIN },
		{ "dump-plugin", required_argument, NULL, ARG_DUMP_PLUGIN },
		{ "plugin-dir", required_argument, NULL, ARG_PLUGIN_DIR },
		{ "log-level", required_argument, NULL, ARG_LOG_LEVEL },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, ARG_VERSION },
		{},
	};
	int c;

	while ((c = getopt_long(argc, argv, "c:h", options, NULL)) >= 0) {
		switch (c) {
		case 'c':
			arg_config = optarg;
			break;
		case ARG_CHECK:
		case ARG_LIST:
		case ARG_HELP_PLUGIN:
		case ARG_DUMP_PLUGIN:
			if (set_action(c, optarg) < 0)
				return -EINVAL;
			break;
		case ARG_PLUGIN_DIR:
			arg_plugin_dir = optarg;
			break;
		case ARG_LOG_LEVEL:
			arg_log_level = log_level_from_string(optarg);
			if (arg_log_level < 0) {
				log_error("invalid --log-level '%s': use err, warning, notice, info or debug", optarg);
				return -EINVAL;
			}
			break;
		case 'h':
			help();
			return 0;
		case ARG_VERSION:
			printf("blkservd %s\n", BLKSERV_VERSION);
			return 0;
		default:
			return -EINVAL;
		}
	}
	if (optind < argc) {
		log_error("unexpected argument '%s' (see blkservd --help)", argv[optind]);
		return -EINVAL;
	}
	return 1;
}

static int check_config(void)
{
	_cleanup_free_ char *error = NULL;
	struct config *c;
	int r;

	r = config_load(arg_config, arg_plugin_dir, &c, &error);
	if (r < 0) {
		fprintf(stderr, "%s\n", error ? error : strerror(-r));
		return r;
	}
	printf("%s: valid, %zu device%s\n", arg_config, c->ndevices, c->ndevices == 1 ? "" : "s");
	config_free(c);
	return 0;
}

/* The plugin directory for --list-plugins and --help-plugin. */
static char *plugin_dir(void)
{
	char *dir = NULL;

	if (arg_plugin_dir)
		return strdup(arg_plugin_dir);
	if (config_peek_plugin_dir(arg_config, &dir) >= 0 && dir)
		return dir;
	return strdup(BLKSERV_PLUGIN_DIR);
}

int main(int argc, char **argv)
{
	_cleanup_free_ char *dir = NULL;
	int r;

	log_setup(LOG_TARGET_AUTO);
	upgrade_init(argv);
	r = parse_argv(argc, argv);
	if (r <= 0)
		return r < 0 ? 2 : 0;
	if (arg_log_level >= 0)
		log_set_max_level(arg_log_level);

	switch (arg_action) {
	case ACTION_CHECK:
		r = check_config();
		break;
	case ACTION_LIST:
		dir = plugin_dir();
		r = list_plugins(dir);
		break;
	case ACTION_HELP_PLUGIN:
		dir = plugin_dir();
		r = help_plugin(dir, arg_help_plugin);
		break;
	case ACTION_DUMP_PLUGIN:
		dir = plugin_dir();
		r = dump_plugin(dir, arg_help_plugin);
		break;
	case ACTION_RUN:
		r = daemon_run(arg_config, arg_plugin_dir, arg_log_level);
		break;
	}
	return r < 0 ? 1 : 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The config file is read twice.  Pass 1 reads it loosely (plugin sections
 * as free-form key = value) to learn the plugin directory and which plugins
 * the devices name; those plugins are loaded.  Pass 2 reads it strictly with
 * a schema made from the options the plugins declare, so every unknown or
 * malformed option is reported by libconfuse with its line.
 */
#include <confuse.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "config-claims.h"
#include "config-lexical.h"
#include "plugin-config.h"
#include "build-config.h"
#include "cleanup.h"
#include "log.h"
#include "netaddr.h"
#include "parse.h"

#define MAX_DEVICE_NAME 32

/* An option already given in a section (libconfuse keeps the last value). */
struct seen_option {
	const cfg_opt_t *opt;
	int line;
};

/* The error of the parse in progress (the first one counts). */
struct parse_ctx {
	struct config *config;
	char *error;
	struct seen_option *seen;
	size_t nseen;
	struct claim *claims;
	size_t nclaims;
	char *text; /* the file, comments blanked (read_config_text) */
	struct lexical_scan scan;
};
static struct parse_ctx *current_ctx;

static void add_error(struct parse_ctx *ctx, const char *file, int line, const char *fmt, va_list ap)
	BLKSERV_PRINTF(4, 0);
static void add_error(struct parse_ctx *ctx, const char *file, int line, const char *fmt, va_list ap)
{
	char msg[1024];

	if (ctx->error)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (line > 0) {
		if (asprintf(&ctx->error, "%s:%d: %s", file, line, msg) < 0)
			ctx->error = NULL;
	} else if (asprintf(&ctx->error, "%s: %s", file, msg) < 0)
		ctx->error = NULL;
}

static void add_error_fmt(struct parse_ctx *ctx, const char *file, int line, const char *fmt, ...) BLKSERV_PRINTF(4, 5);
static void add_error_fmt(struct parse_ctx *ctx, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	add_error(ctx, file, line, fmt, ap);
	va_end(ap);
}

/* libconfuse's message formats are not literals, but they are its own. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static void errfunc(cfg_t *cfg, const char *fmt, va_list ap)
{
	const char *file = current_ctx->config->file; /* cfg_parse_buf names it "[buf]" */
	const char *name = cfg_name(cfg);
	char msg[1024], option[256];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* In a plugin section, say whose option it is not. */
	if (name && (strcmp(name, "frontend") == 0 || strcmp(name, "backend") == 0) && cfg_title(cfg) &&
	    sscanf(msg, "no such option '%255[^']'", option) == 1)
		add_error_fmt(current_ctx, file, cfg->line,
			      "%s '%s' has no option '%s' (see: blkservd --help-plugin %s)", name, cfg_title(cfg),
			      option, cfg_title(cfg));
	else if (name && strcmp(name, "faults") == 0 && sscanf(msg, "no such option '%255[^']'", option) == 1)
		add_error_fmt(current_ctx, file, cfg->line,
			      "the faults section has no option '%s' (see blkservd.conf(5), FAULT INJECTION)", option);
	else
		add_error_fmt(current_ctx, file, cfg->line, "%s", msg);
}
#pragma GCC diagnostic pop

static void silent_errfunc(cfg_t *cfg, const char *fmt, va_list ap)
{
}

static int fail(struct parse_ctx *ctx, int line, const char *fmt, ...) BLKSERV_PRINTF(3, 4);
static int fail(struct parse_ctx *ctx, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	add_error(ctx, ctx->config->file, line, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* ---- values ------------------------------------------------------ */

/*
 * The same option twice in one section: libconfuse silently keeps the last
 * value, so the user may not get what they read.  Called for every value
 * set from the file; @opt is the section instance's own option.
 */
static int check_duplicate(cfg_t *sec, cfg_opt_t *opt)
{
	struct parse_ctx *ctx = current_ctx;
	struct seen_option *seen;

	for (size_t i = 0; i < ctx->nseen; i++)
		if (ctx->seen[i].opt == opt) {
			cfg_error(sec, "option '%s' is set twice (first on line %d): set it once", opt->name,
				  ctx->seen[i].line);
			return -1;
		}
	seen = realloc(ctx->seen, (ctx->nseen + 1) * sizeof(*seen));
	if (!seen)
		return -1;
	ctx->seen = seen;
	ctx->seen[ctx->nseen++] = (struct seen_option){ .opt = opt, .line = sec->line };
	return 0;
}

static int validate_once(cfg_t *cfg, cfg_opt_t *opt)
{
	return check_duplicate(cfg, opt);
}

/* The declared range or choices of a plugin option (type already checked). */
static int check_limits(cfg_t *sec, const struct plugin *p, const struct blkserv_option *o, const char *value)
{
	const struct blkserv_option_check *c = plugin_find_option_check(p, o->name);
	char allowed[512], lo[32], hi[32];
	uint64_t v;

	if (!c)
		return 0;
	if (c->choices) {
		option_check_describe(o, c, allowed, sizeof(allowed));
		for (const char *const *ch = c->choices; *ch; ch++)
			if (strcmp(*ch, value) == 0)
				return 0;
		cfg_error(sec, "option '%s' of %s '%s' expects one of %s, not '%s'", o->name, cfg_name(sec), p->name,
			  allowed, value);
		return -1;
	}
	if (!c->max)
		return 0;
	if (o->type == BLKSERV_OPT_SIZE ? parse_size(value, &v) : parse_uint(value, &v))
		return 0; /* the type check reports it */
	if (v >= c->min && v <= c->max)
		return 0;
	option_format_value(o, c->min, lo, sizeof(lo));
	option_format_value(o, c->max, hi, sizeof(hi));
	cfg_error(sec, "option '%s' of %s '%s' expects %s from %s to %s, not '%s'", o->name, cfg_name(sec), p->name,
		  o->type == BLKSERV_OPT_SIZE ? "a size" : "a number", lo, hi, value);
	return -1;
}

static const char *type_expectation(enum blkserv_option_type type)
{
	switch (type) {
	case BLKSERV_OPT_BOOL:
		return "a boolean (true/false, yes/no, on/off)";
	case BLKSERV_OPT_UINT:
		return "a non-negative integer";
	case BLKSERV_OPT_SIZE:
		return "a size in bytes (like 512, 4K, 64M, 1G, 1T)";
	case BLKSERV_OPT_PATH:
		return "an absolute path";
	default:
		return "a string";
	}
}

static int check_value(enum blkserv_option_type type, const char *value)
{
	uint64_t u;
	bool b;

	switch (type) {
	case BLKSERV_OPT_BOOL:
		return parse_bool(value, &b);
	case BLKSERV_OPT_UINT:
		return parse_uint(value, &u);
	case BLKSERV_OPT_SIZE:
		return parse_size(value, &u);
	case BLKSERV_OPT_PATH:
		return value[0] == '/' ? 0 : -EINVAL;
	default:
		return 0;
	}
}

static void option_value_free(void *p)
{
	struct option_value *v = p;

	if (!v)
		return;
	free(v->name);
	free(v->value);
	free(v);
}

static struct plugin *section_plugin(cfg_t *sec)
{
	enum plugin_kind kind = strcmp(cfg_name(sec), "backend") == 0 ? PLUGIN_BACKEND : PLUGIN_FRONTEND;

	return plugin_set_find(&current_ctx->config->plugins, kind, cfg_title(sec));
}

/* Keep an option's text and line for the plugin (or the fault injection). */
static int store_option_value(cfg_t *sec, const char *name, const char *value, void *result)
{
	struct option_value *v = calloc(1, sizeof(*v));

	if (!v || !(v->name = strdup(name)) || !(v->value = strdup(value))) {
		option_value_free(v);
		return -1;
	}
	v->line = sec->line;
	*(struct option_value **)result = v;
	return 0;
}

/* libconfuse parse callback for every option of a plugin section. */
static int parse_plugin_option(cfg_t *sec, cfg_opt_t *opt, const char *value, void *result)
{
	struct plugin *p = section_plugin(sec);
	const struct blkserv_option *decl;

	if (!p) {
		cfg_error(sec, "unknown %s '%s'", cfg_name(sec), cfg_title(sec));
		return -1;
	}
	decl = plugin_find_option(p, opt->name);
	if (!decl) {
		cfg_error(sec, "%s '%s' has no option '%s' (see: blkservd --help-plugin %s)", cfg_name(sec), p->name,
			  opt->name, p->name);
		return -1;
	}
	if (check_value(decl->type, value) < 0) {
		cfg_error(sec, "option '%s' of %s '%s' expects %s, not '%s'", opt->name, cfg_name(sec), p->name,
			  type_expectation(decl->type), value);
		return -1;
	}
	if (check_limits(sec, p, decl, value) < 0 || check_duplicate(sec, opt) < 0)
		return -1;
	return store_option_value(sec, opt->name, value, result);
}

/* libconfuse parse callback for every option of a faults section. */
static int parse_fault_option(cfg_t *sec, cfg_opt_t *opt, const char *value, void *result)
{
	struct fault_config scratch;
	const char *expected;

	fault_config_init(&scratch);
	if (fault_config_set(&scratch, opt->name, value, &expected) < 0) {
		cfg_error(sec, "option '%s' of faults expects %s, not '%s'", opt->name, expected, value);
		return -1;
	}
	if (check_duplicate(sec, opt) < 0)
		return -1;
	return store_option_value(sec, opt->name, value, result);
}

/* Checks of the core options, while parsing so the line is right. */
static int validate_size(cfg_t *cfg, cfg_opt_t *opt)
{
	uint64_t v;
	const char *s = cfg_opt_getnstr(opt, cfg_opt_size(opt) - 1);

	if (parse_size(s, &v) < 0 || v == 0) {
		cfg_error(cfg, "option '%s' expects a size in bytes (like 512, 4K, 64M, 1G, 1T), not '%s'", opt->name,
			  s);
		return -1;
	}
	return check_duplicate(cfg, opt);
}

static int validate_block_size(cfg_t *cfg, cfg_opt_t *opt)
{
	uint64_t v;
	const char *s = cfg_opt_getnstr(opt, cfg_opt_size(opt) - 1);

	if (parse_size(s, &v) < 0 || v < 512 || v > 4096 || (v & (v - 1))) {
		cfg_error(cfg, "option 'block_size' expects 512, 1024, 2048 or 4096, not '%s'", s);
		return -1;
	}
	return check_duplicate(cfg, opt);
}

/* At least one request of the biggest size, which every connection may
 * always hold (a smaller figure could not be kept anyway). */
static int validate_request_memory(cfg_t *cfg, cfg_opt_t *opt)
{
	uint64_t v;
	const char *s = cfg_opt_getnstr(opt, cfg_opt_size(opt) - 1);

	if (parse_size(s, &v) < 0 || v < BLKSERV_MAX_IO_BYTES) {
		cfg_error(cfg,
			  "option 'request_memory' expects a size of at least 32M (one request of the "
			  "biggest size), not '%s'",
			  s);
		return -1;
	}
	return 0;
}

static int validate_log_level(cfg_t *cfg, cfg_opt_t *opt)
{
	const char *s = cfg_opt_getnstr(opt, 0);

	if (log_level_from_string(s) < 0) {
		cfg_error(cfg, "option 'log_level' expects err, warning, notice, info or debug, not '%s'", s);
		return -1;
	}
	return check_duplicate(cfg, opt);
}

static int validate_abs_path(cfg_t *cfg, cfg_opt_t *opt)
{
	const char *s = cfg_opt_getnstr(opt, 0);

	if (!s || s[0] != '/') {
		cfg_error(cfg, "option '%s' expects an absolute path, not '%s'", opt->name, s ? s : "");
		return -1;
	}
	return check_duplicate(cfg, opt);
}

/* ADDRESS:PORT, [IPV6]:PORT or :PORT with a port 1..65535. */
static int validate_tcp_address(cfg_t *cfg, cfg_opt_t *opt)
{
	const char *s = cfg_opt_getnstr(opt, 0);
	_cleanup_free_ char *host = NULL, *port = NULL;
	unsigned n;

	if (!s || split_host_port(s, &host, &port) < 0) {
		cfg_error(cfg, "option '%s' expects ADDRESS:PORT, [IPV6]:PORT or :PORT, not '%s'", opt->name,
			  s ? s : "");
		return -1;
	}
	if (parse_port(port, &n) < 0) {
		cfg_error(cfg, "option '%s': the port of '%s' must be a number from 1 to 65535", opt->name, s);
		return -1;
	}
	return check_duplicate(cfg, opt);
}

static int validate_max_connections(cfg_t *cfg, cfg_opt_t *opt)
{
	long v = cfg_opt_getnint(opt, 0);

	if (v < 1 || v > 1024) {
		cfg_error(cfg, "option 'max_connections' expects a number from 1 to 1024, not %ld", v);
		return -1;
	}
	return check_duplicate(cfg, opt);
}

/* ---- schema -------------------------------------------------------- */

/* The union of the option names of every loaded plugin of @kind. */
static cfg_opt_t *plugin_section_opts(const struct plugin_set *set, enum plugin_kind kind)
{
	size_t n = 0, i = 0;
	cfg_opt_t *opts;

	for (struct plugin *p = set->list; p; p = p->next)
		for (const struct blkserv_option *o = plugin_options(p); p->kind == kind && o && o->name; o++)
			n++;
	opts = calloc(n + 1, sizeof(*opts));
	if (!opts)
		return NULL;
	for (struct plugin *p = set->list; p; p = p->next) {
		for (const struct blkserv_option *o = plugin_options(p); p->kind == kind && o && o->name; o++) {
			bool dup = false;
			for (size_t j = 0; j < i; j++)
				dup |= strcmp(opts[j].name, o->name) == 0;
			if (dup)
				continue;
			cfg_opt_t opt =
				CFG_PTR_CB(o->name, NULL, CFGF_NODEFAULT, parse_plugin_option, option_value_free);
			opts[i++] = opt;
		}
	}
	cfg_opt_t end = CFG_END();
	opts[i] = end;
	return opts;
}

/* The options of a device's faults section. */
static cfg_opt_t *fault_section_opts(void)
{
	size_t n = 0;
	cfg_opt_t *opts;

	while (fault_options[n].name)
		n++;
	opts = calloc(n + 1, sizeof(*opts));
	if (!opts)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		cfg_opt_t opt =
			CFG_PTR_CB(fault_options[i].name, NULL, CFGF_NODEFAULT, parse_fault_option, option_value_free);
		opts[i] = opt;
	}
	cfg_opt_t end = CFG_END();
	opts[n] = end;
	return opts;
}

/* Pass 1: plugin sections are free-form, errors are left for pass 2. */
static cfg_t *parse_loose(const char *text)
{
	static cfg_opt_t plugin_opts[] = { CFG_END() };
	cfg_opt_t device_opts[] = {
		CFG_STR("size", NULL, CFGF_NODEFAULT),
		CFG_STR("block_size", NULL, CFGF_NODEFAULT),
		CFG_STR("read_only", NULL, CFGF_NODEFAULT),
		CFG_SEC("frontend", plugin_opts, CFGF_TITLE | CFGF_MULTI | CFGF_KEYSTRVAL),
		CFG_SEC("backend", plugin_opts, CFGF_TITLE | CFGF_MULTI | CFGF_KEYSTRVAL),
		CFG_SEC("faults", plugin_opts, CFGF_MULTI | CFGF_KEYSTRVAL),
		CFG_END(),
	};
	cfg_opt_t opts[] = {
		CFG_STR("plugin_dir", NULL, CFGF_NODEFAULT),
		CFG_STR("runtime_dir", NULL, CFGF_NODEFAULT),
		CFG_STR("log_level", NULL, CFGF_NODEFAULT),
		CFG_STR("lock_memory", NULL, CFGF_NODEFAULT),
		CFG_STR("request_memory", NULL, CFGF_NODEFAULT),
		CFG_SEC("metrics", plugin_opts, CFGF_MULTI | CFGF_KEYSTRVAL),
		CFG_SEC("device", device_opts, CFGF_TITLE | CFGF_MULTI),
		CFG_END(),
	};
	cfg_t *cfg = cfg_init(opts, CFGF_NONE);

	if (!cfg)
		return NULL;
	cfg_set_error_function(cfg, silent_errfunc);
	(void)cfg_parse_buf(cfg, text);
	return cfg;
}

static int load_section_plugin(struct parse_ctx *ctx, cfg_t *dev, const char *kind_name, enum plugin_kind kind)
{
	for (unsigned i = 0; i < cfg_size(dev, kind_name); i++) {
		cfg_t *sec = cfg_getnsec(dev, kind_name, i);
		_cleanup_free_ char *error = NULL;
		int r = plugin_set_get(&ctx->config->plugins, kind, cfg_title(sec), NULL, &error);
		if (r < 0)
			return fail(ctx, sec->line, "device '%s': %s", cfg_title(dev), error ? error : strerror(-r));
	}
	return 0;
}

/* Pass 1 and the plugin loading it allows. */
static int load_plugins(struct parse_ctx *ctx, const char *plugin_dir_override)
{
	cfg_t *cfg = parse_loose(ctx->text);
	const char *dir = plugin_dir_override;
	int r = 0;

	if (!cfg)
		return -ENOMEM;
	if (!dir && cfg_size(cfg, "plugin_dir") > 0)
		dir = cfg_getstr(cfg, "plugin_dir");
	ctx->config->plugins.dir = strdup(dir ? dir : BLKSERV_PLUGIN_DIR);
	if (!ctx->config->plugins.dir)
		r = -ENOMEM;
	for (unsigned i = 0; r >= 0 && i < cfg_size(cfg, "device"); i++) {
		cfg_t *dev = cfg_getnsec(cfg, "device", i);
		r = load_section_plugin(ctx, dev, "frontend", PLUGIN_FRONTEND);
		if (r >= 0)
			r = load_section_plugin(ctx, dev, "backend", PLUGIN_BACKEND);
	}
	cfg_free(cfg);
	return r;
}

/* ---- the plugins' validate step ----------------------------------- */

/* The line of @option in @cfg's section, or of the section. */
static int option_line(const struct blkserv_config *cfg, const char *option)
{
	for (size_t i = 0; option && i < cfg->nvalues; i++)
		if (strcmp(cfg->values[i].name, option) == 0)
			return cfg->values[i].line;
	return cfg->line;
}

/* "device 'a': backend 'log' option 'dir'" */
static char *section_where(const struct blkserv_config *cfg, const char *option)
{
	char *s;

	if (asprintf(&s, "device '%s': %s '%s'%s%s%s", cfg->device->name, plugin_kind_name(cfg->plugin->kind),
		     cfg->plugin->name, option ? " option '" : "", option ? option : "", option ? "'" : "") < 0)
		return NULL;
	return s;
}

int blkserv_config_error(const struct blkserv_config *cfg, const char *option, const char *fmt, ...)
{
	_cleanup_free_ char *where = NULL;
	char msg[1024];
	va_list ap;

	if (!current_ctx || !cfg->device)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	where = section_where(cfg, option);
	add_error_fmt(current_ctx, current_ctx->config->file, option_line(cfg, option), "%s: %s", where ? where : "",
		      msg);
	return -EINVAL;
}

/* Keep @c (its resource, key and where still to fill from @resource, @key
 * and @where, which it takes) among the parse's claims. */
static int push_claim(struct parse_ctx *ctx, struct claim c, const char *resource, const char *key, char *where)
{
	struct claim *claims;

	c.resource = strdup(resource);
	c.where = where;
	claims = realloc(ctx->claims, (ctx->nclaims + 1) * sizeof(*claims));
	if (!c.resource || claim_set_key(&c, key) < 0 || !c.where || !claims) {
		free(c.resource);
		free(c.key);
		free(c.where);
		if (claims)
			ctx->claims = claims;
		return -ENOMEM;
	}
	ctx->claims = claims;
	ctx->claims[ctx->nclaims++] = c;
	return 0;
}

static int add_claim(const struct blkserv_config *cfg, const char *option, const char *resource, const char *key,
		     bool shared)
{
	struct parse_ctx *ctx = current_ctx;
	struct claim c = { .shared = shared };

	if (!ctx || !cfg->device)
		return 0;
	c.owner = cfg->device->name;
	c.line = option_line(cfg, option);
	return push_claim(ctx, c, resource, key, section_where(cfg, option));
}

int blkserv_config_claim(const struct blkserv_config *cfg, const char *option, const char *resource, const char *key)
{
	return add_claim(cfg, option, resource, key, false);
}

int blkserv_config_claim_shared(const struct blkserv_config *cfg, const char *option, const char *resource,
				const char *key)
{
	return add_claim(cfg, option, resource, key, true);
}

/* "device 'a'", or the metrics section (a claim without a device). */
#define OWNER(c) (c)->owner ? "device '" : "the metrics section", (c)->owner ? (c)->owner : "", (c)->owner ? "'" : ""

/* Two devices must not share a socket, an address, a file, a kernel name;
 * shared claims (readers of one file) may share it with each other only. */
static int check_conflicts(struct parse_ctx *ctx)
{
	for (size_t j = 1; j < ctx->nclaims; j++) {
		const struct claim *b = &ctx->claims[j];
		for (size_t i = 0; i < j; i++) {
			const struct claim *a = &ctx->claims[i];
			if (!claims_conflict(a, b))
				continue;
			if (a->shared || b->shared)
				return fail(ctx, b->line,
					    "%s: the %s %s is also used %sby %s%s%s (line %d, as %s): "
					    "a device that writes it cannot share it with another device",
					    b->where, b->resource, b->key, a->shared ? "read-only " : "", OWNER(a),
					    a->line, a->key);
			/* Another spelling of the same file: say which. */
			bool alias = a->key[0] == '/' && strcmp(a->key, b->key) != 0;
			return fail(ctx, b->line, "%s: the %s %s is already used by %s%s%s (line %d%s%s): %s", b->where,
				    b->resource, b->key, OWNER(a), a->line, alias ? ", as " : "", alias ? a->key : "",
				    a->owner && b->owner ? "two devices cannot share it"
							 : "the metrics endpoint cannot share it with a device");
		}
	}
	return 0;
}

static void parse_ctx_clear(struct parse_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nclaims; i++) {
		free(ctx->claims[i].resource);
		free(ctx->claims[i].key);
		free(ctx->claims[i].where);
	}
	free(ctx->claims);
	free(ctx->seen);
	free(ctx->text);
}

/* The plugin's validate callback, which reports through blkserv_config_error(). */
static int validate_section(struct parse_ctx *ctx, const struct blkserv_config *cfg)
{
	int (*validate)(const struct blkserv_config *) = plugin_validate_fn(cfg->plugin);
	int r;

	if (!validate)
		return 0;
	r = validate(cfg);
	if (ctx->error)
		return r < 0 ? r : -EINVAL;
	if (r < 0)
		return fail(ctx, cfg->line, "device '%s': %s '%s' refuses its options: %s", cfg->device->name,
			    plugin_kind_name(cfg->plugin->kind), cfg->plugin->name, strerror(-r));
	return 0;
}

/* ---- pass 2 -------------------------------------------------------- */

static bool device_name_is_valid(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > MAX_DEVICE_NAME || name[0] == '.' || name[0] == '-')
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		      *p == '_' || *p == '.'))
			return false;
	return true;
}

/* Collect a plugin section's values and check required options. */
static int read_plugin_section(struct parse_ctx *ctx, cfg_t *dev, const char *kind_name, enum plugin_kind kind,
			       struct plugin **ret_plugin, struct blkserv_config *ret_cfg)
{
	unsigned n = cfg_size(dev, kind_name);
	cfg_t *sec;
	struct plugin *p;

	if (n == 0)
		return fail(ctx, dev->line, "device '%s' has no %s section (like: %s \"NAME\" { ... })", cfg_title(dev),
			    kind_name, kind_name);
	if (n > 1)
		return fail(ctx, cfg_getnsec(dev, kind_name, 1)->line,
			    "device '%s' has %u %s sections; it needs exactly one", cfg_title(dev), n, kind_name);
	sec = cfg_getnsec(dev, kind_name, 0);
	p = plugin_set_find(&ctx->config->plugins, kind, cfg_title(sec));
	if (!p)
		return fail(ctx, sec->line, "device '%s': unknown %s '%s'", cfg_title(dev), kind_name, cfg_title(sec));

	const struct blkserv_option *opts = plugin_options(p);
	size_t nopts = 0;
	for (const struct blkserv_option *o = opts; o && o->name; o++)
		nopts++;
	ret_cfg->plugin = p;
	ret_cfg->line = sec->line;
	ret_cfg->values = calloc(nopts ? nopts : 1, sizeof(*ret_cfg->values));
	if (!ret_cfg->values)
		return -ENOMEM;
	for (const struct blkserv_option *o = opts; o && o->name; o++) {
		if (cfg_size(sec, o->name) == 0) {
			if ((o->flags & BLKSERV_OPTION_REQUIRED) && !o->default_value)
				return fail(ctx, sec->line, "device '%s': %s '%s' needs option '%s' (%s)",
					    cfg_title(dev), kind_name, p->name, o->name, o->help ? o->help : "");
			continue;
		}
		const struct option_value *v = cfg_getptr(sec, o->name);
		struct option_value *copy = &ret_cfg->values[ret_cfg->nvalues];
		copy->name = strdup(v->name);
		copy->value = strdup(v->value);
		copy->line = v->line;
		if (!copy->name || !copy->value)
			return -ENOMEM;
		ret_cfg->nvalues++;
	}
	*ret_plugin = p;
	return 0;
}

/* The line where `device "NAME"` opens (libconfuse only knows where a
 * section closes); @fallback if it cannot be found. */
static int device_line(const char *file, const char *name, int fallback)
{
	_cleanup_fclose_ FILE *f = fopen(file, "re");
	char line[4096], quoted[80];
	int n = 0;

	if (!f)
		return fallback;
	snprintf(quoted, sizeof(quoted), "\"%s\"", name);
	while (fgets(line, sizeof(line), f)) {
		const char *p = line + strspn(line, " \t");
		n++;
		if (strncmp(p, "device", 6) != 0 || !strchr(" \t", p[6]))
			continue;
		p += 6 + strspn(p + 6, " \t");
		if (strncmp(p, quoted, strlen(quoted)) == 0)
			return n;
	}
	return fallback;
}

/* The optional faults section (fault injection, for tests). */
static int read_faults(struct parse_ctx *ctx, cfg_t *dev, struct device_config *d)
{
	unsigned n = cfg_size(dev, "faults");
	const char *expected, *error, *option;
	cfg_t *sec;

	fault_config_init(&d->faults);
	if (n == 0)
		return 0;
	if (n > 1)
		return fail(ctx, cfg_getnsec(dev, "faults", 1)->line,
			    "device '%s' has %u faults sections; it may have one", cfg_title(dev), n);
	sec = cfg_getnsec(dev, "faults", 0);
	d->faults.enabled = true;
	for (const struct blkserv_option *o = fault_options; o->name; o++) {
		if (cfg_size(sec, o->name) == 0)
			continue;
		const struct option_value *v = cfg_getptr(sec, o->name);
		(void)fault_config_set(&d->faults, o->name, v->value, &expected); /* checked while parsing */
	}
	if (fault_config_check(&d->faults, &error, &option) < 0)
		return fail(ctx, ((const struct option_value *)cfg_getptr(sec, option))->line,
			    "device '%s': faults: %s", cfg_title(dev), error);
	return 0;
}

/* The metrics section: at most one; tcp or unix (tcp on loopback when
 * neither); its address is claimed like a device's. */
static int read_metrics(struct parse_ctx *ctx, cfg_t *cfg)
{
	struct metrics_config *m = &ctx->config->metrics;
	struct claim c = { .line = 0 };
	_cleanup_free_ char *host = NULL, *port = NULL;
	unsigned n = cfg_size(cfg, "metrics"), portnum;
	char key[300], *where;
	cfg_t *sec;

	if (n == 0)
		return 0;
	if (n > 1)
		return fail(ctx, cfg_getnsec(cfg, "metrics", 1)->line, "%u metrics sections: there may be one", n);
	sec = cfg_getnsec(cfg, "metrics", 0);
	m->enabled = true;
	m->line = c.line = sec->line;
	m->max_connections = (unsigned)cfg_getint(sec, "max_connections");
	if (cfg_size(sec, "tcp") && cfg_size(sec, "unix"))
		return fail(ctx, sec->line, "metrics: set 'tcp' or 'unix', not both");
	if (cfg_size(sec, "unix")) {
		struct stat st;
		if (lstat(cfg_getstr(sec, "unix"), &st) == 0 && !S_ISSOCK(st.st_mode))
			return fail(ctx, sec->line, "metrics: 'unix' names %s, which exists and is not a socket",
				    cfg_getstr(sec, "unix"));
		m->unix_path = strdup(cfg_getstr(sec, "unix"));
		where = strdup("metrics option 'unix'");
		if (!m->unix_path || !where)
			return -ENOMEM;
		return push_claim(ctx, c, "unix socket", m->unix_path, where);
	}
	m->tcp = strdup(cfg_size(sec, "tcp") ? cfg_getstr(sec, "tcp") : METRICS_DEFAULT_TCP);
	if (!m->tcp || split_host_port(m->tcp, &host, &port) < 0 || parse_port(port, &portnum) < 0)
		return -ENOMEM; /* the address was checked while parsing */
	tcp_claim_key(host, portnum, key, sizeof(key));
	where = strdup("metrics option 'tcp'");
	return where ? push_claim(ctx, c, "TCP address", key, where) : -ENOMEM;
}

static int read_device(struct parse_ctx *ctx, cfg_t *dev, struct device_config *d)
{
	uint64_t bs;
	int r;

	d->line = device_line(ctx->config->file, cfg_title(dev), dev->line);
	dev->line = d->line;
	d->name = strdup(cfg_title(dev));
	if (!d->name)
		return -ENOMEM;
	if (!device_name_is_valid(d->name))
		return fail(ctx, dev->line,
			    "invalid device name '%s' (1-%d characters of A-Z a-z 0-9 . _ -, not starting with . or -)",
			    d->name, MAX_DEVICE_NAME);
	if (cfg_size(dev, "size") > 0)
		(void)parse_size(cfg_getstr(dev, "size"), &d->size);
	(void)parse_size(cfg_getstr(dev, "block_size"), &bs);
	d->block_size = (uint32_t)bs;
	d->read_only = cfg_getbool(dev, "read_only");
	if (d->size % d->block_size)
		return fail(ctx, dev->line, "device '%s': size %llu is not a multiple of block_size %u", d->name,
			    (unsigned long long)d->size, d->block_size);
	d->frontend_cfg.device = d;
	d->backend_cfg.device = d;
	r = read_plugin_section(ctx, dev, "frontend", PLUGIN_FRONTEND, &d->frontend, &d->frontend_cfg);
	if (r >= 0)
		r = read_plugin_section(ctx, dev, "backend", PLUGIN_BACKEND, &d->backend, &d->backend_cfg);
	if (r >= 0)
		r = validate_section(ctx, &d->frontend_cfg);
	if (r >= 0)
		r = validate_section(ctx, &d->backend_cfg);
	if (r >= 0)
		r = read_faults(ctx, dev, d);
	return r;
}

/* The file's text with comments blanked (see above); a NUL byte is refused
 * (libconfuse would stop reading there).  @ctx NULL: no error message. */
static int read_config_text(struct parse_ctx *ctx, const char *file, char **ret, struct lexical_scan *scan)
{
	_cleanup_fclose_ FILE *f = fopen(file, "re");
	_cleanup_free_ char *text = NULL;
	size_t len = 0, size = 0, n;
	const char *nul;

	if (!f)
		return ctx ? fail(ctx, 0, "cannot read the config file: %m") : -errno;
	do {
		if (size - len < 4096) {
			char *bigger = realloc(text, size + 65536);
			if (!bigger)
				return -ENOMEM;
			text = bigger;
			size += 65536;
		}
		n = fread(text + len, 1, size - len - 1, f);
		len += n;
	} while (n > 0);
	if (ferror(f))
		return ctx ? fail(ctx, 0, "cannot read the config file: %m") : -EIO;
	text[len] = '\0';
	nul = memchr(text, '\0', len);
	if (nul)
		return ctx ? fail(ctx, count_newlines(text, nul) + 1, "a NUL byte: this is not a text file") : -EINVAL;
	scan_lexically(text, scan);
	*ret = TAKE_PTR(text);
	return 0;
}

/* What libconfuse accepted but must not be (see struct lexical_scan). */
static int check_lexical(struct parse_ctx *ctx, const struct lexical_scan *s)
{
	if (s->extra_brace_line)
		return fail(ctx, s->extra_brace_line, "'}' without a matching '{'");
	if (s->open_comment_line)
		return fail(ctx, s->open_comment_line,
			    "this comment is never closed (missing '*/' before the end of the file)");
	if (s->open_brace_line)
		return fail(ctx, s->open_brace_line,
			    "this '{' is never closed (missing '}' before the end of the file)");
	return 0;
}

/* libconfuse names the end of the file for a string left open: name where it starts. */
static void improve_lexer_error(struct parse_ctx *ctx, const struct lexical_scan *s)
{
	if (!ctx->error || !s->open_string_line ||
	    (!strstr(ctx->error, "premature end of file") && !strstr(ctx->error, "unterminated string")))
		return;
	free(ctx->error);
	ctx->error = NULL;
	fail(ctx, s->open_string_line, "this string is never closed (missing %s before the end of the file)",
	     s->open_quote == '"' ? "'\"'" : "\"'\"");
}

static int parse_strict(struct parse_ctx *ctx)
{
	struct config *c = ctx->config;
	_cleanup_free_ cfg_opt_t *fe_opts = plugin_section_opts(&c->plugins, PLUGIN_FRONTEND);
	_cleanup_free_ cfg_opt_t *be_opts = plugin_section_opts(&c->plugins, PLUGIN_BACKEND);
	_cleanup_free_ cfg_opt_t *fault_opts = fault_section_opts();
	int r;

	if (!fe_opts || !be_opts || !fault_opts)
		return -ENOMEM;
	cfg_opt_t device_opts[] = {
		CFG_STR("size", NULL, CFGF_NODEFAULT),
		CFG_STR("block_size", "512", CFGF_NONE),
		CFG_BOOL("read_only", cfg_false, CFGF_NONE),
		CFG_SEC("frontend", fe_opts, CFGF_TITLE | CFGF_MULTI | CFGF_NO_TITLE_DUPES),
		CFG_SEC("backend", be_opts, CFGF_TITLE | CFGF_MULTI | CFGF_NO_TITLE_DUPES),
		CFG_SEC("faults", fault_opts, CFGF_MULTI),
		CFG_END(),
	};
	cfg_opt_t metrics_opts[] = {
		CFG_STR("tcp", NULL, CFGF_NODEFAULT),
		CFG_STR("unix", NULL, CFGF_NODEFAULT),
		CFG_INT("max_connections", 16, CFGF_NONE),
		CFG_END(),
	};
	cfg_opt_t opts[] = {
		CFG_STR("plugin_dir", BLKSERV_PLUGIN_DIR, CFGF_NONE),
		CFG_STR("runtime_dir", BLKSERV_RUNTIME_DIR, CFGF_NONE),
		CFG_STR("log_level", "info", CFGF_NONE),
		CFG_BOOL("lock_memory", cfg_true, CFGF_NONE),
		CFG_STR("request_memory", "256M", CFGF_NONE),
		CFG_SEC("metrics", metrics_opts, CFGF_MULTI),
		CFG_SEC("device", device_opts, CFGF_TITLE | CFGF_MULTI | CFGF_NO_TITLE_DUPES),
		CFG_END(),
	};
	cfg_t *cfg = cfg_init(opts, CFGF_NONE);
	if (!cfg)
		return -ENOMEM;
	cfg_set_error_function(cfg, errfunc);
	cfg_set_validate_func(cfg, "device|size", validate_size);
	cfg_set_validate_func(cfg, "device|block_size", validate_block_size);
	cfg_set_validate_func(cfg, "log_level", validate_log_level);
	cfg_set_validate_func(cfg, "request_memory", validate_request_memory);
	cfg_set_validate_func(cfg, "plugin_dir", validate_abs_path);
	cfg_set_validate_func(cfg, "runtime_dir", validate_abs_path);
	cfg_set_validate_func(cfg, "lock_memory", validate_once);
	cfg_set_validate_func(cfg, "device|read_only", validate_once);
	cfg_set_validate_func(cfg, "metrics|tcp", validate_tcp_address);
	cfg_set_validate_func(cfg, "metrics|unix", validate_abs_path);
	cfg_set_validate_func(cfg, "metrics|max_connections", validate_max_connections);

	r = cfg_parse_buf(cfg, ctx->text);
	if (r == CFG_PARSE_ERROR)
		improve_lexer_error(ctx, &ctx->scan);
	if (r == CFG_SUCCESS && check_lexical(ctx, &ctx->scan) < 0)
		r = CFG_PARSE_ERROR;
	if (r == CFG_FILE_ERROR)
		r = fail(ctx, 0, "cannot read the config file: %m");
	else if (r != CFG_SUCCESS)
		r = fail(ctx, 0, "invalid config"); /* errfunc has the detail */
	if (r == 0) {
		c->runtime_dir = strdup(cfg_getstr(cfg, "runtime_dir"));
		c->plugin_dir = strdup(c->plugins.dir);
		c->log_level = log_level_from_string(cfg_getstr(cfg, "log_level"));
		c->lock_memory = cfg_getbool(cfg, "lock_memory");
		(void)parse_size(cfg_getstr(cfg, "request_memory"), &c->request_memory);
		c->ndevices = cfg_size(cfg, "device");
		c->devices = calloc(c->ndevices ? c->ndevices : 1, sizeof(*c->devices));
		if (!c->runtime_dir || !c->plugin_dir || !c->devices)
			r = -ENOMEM;
	}
	if (r == 0)
		r = read_metrics(ctx, cfg);
	for (size_t i = 0; r == 0 && i < c->ndevices; i++)
		r = read_device(ctx, cfg_getnsec(cfg, "device", (unsigned)i), &c->devices[i]);
	if (r == 0)
		r = check_conflicts(ctx);
	cfg_free(cfg);
	return r;
}

/* libconfuse's lexer cannot read a directory ("input in flex scanner
 * failed"), and the file is read twice, so it must be a regular file. */
static int check_config_file(struct parse_ctx *ctx)
{
	struct stat st;

	if (stat(ctx->config->file, &st) < 0)
		return fail(ctx, 0, "cannot read the config file: %m");
	if (S_ISDIR(st.st_mode))
		return fail(ctx, 0, "is a directory, not a config file");
	if (!S_ISREG(st.st_mode))
		return fail(ctx, 0, "is not a regular file (the config is read twice, so it must be one)");
	return 0;
}

int config_load(const char *file, const char *plugin_dir_override, struct config **ret, char **ret_error)
{
	struct parse_ctx ctx = {};
	_cleanup_(config_freep) struct config *c = calloc(1, sizeof(*c));
	int r;

	if (!c || !(c->file = strdup(file)))
		return -ENOMEM;
	ctx.config = c;
	current_ctx = &ctx;
	r = check_config_file(&ctx);
	if (r >= 0)
		r = read_config_text(&ctx, file, &ctx.text, &ctx.scan);
	if (r >= 0)
		r = load_plugins(&ctx, plugin_dir_override);
	if (r >= 0)
		r = parse_strict(&ctx);
	current_ctx = NULL;
	parse_ctx_clear(&ctx);
	if (r < 0) {
		if (ret_error)
			*ret_error = ctx.error ? TAKE_PTR(ctx.error) : strdup(strerror(-r));
		free(ctx.error);
		return r;
	}
	*ret = TAKE_PTR(c);
	return 0;
}

void config_free(struct config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->ndevices; i++) {
		free(c->devices[i].name);
		plugin_config_clear(&c->devices[i].frontend_cfg);
		plugin_config_clear(&c->devices[i].backend_cfg);
	}
	free(c->devices);
	free(c->file);
	free(c->plugin_dir);
	free(c->runtime_dir);
	free(c->metrics.tcp);
	free(c->metrics.unix_path);
	plugin_set_clear(&c->plugins);
	free(c);
}

const struct device_config *config_find_device(const struct config *c, const char *name)
{
	for (size_t i = 0; i < c->ndevices; i++)
		if (strcmp(c->devices[i].name, name) == 0)
			return &c->devices[i];
	return NULL;
}

bool device_config_equal(const struct device_config *a, const struct device_config *b)
{
	return strcmp(a->name, b->name) == 0 && a->size == b->size && a->block_size == b->block_size &&
	       a->read_only == b->read_only && plugin_config_equal(&a->frontend_cfg, &b->frontend_cfg) &&
	       plugin_config_equal(&a->backend_cfg, &b->backend_cfg) && fault_config_equal(&a->faults, &b->faults);
}

int config_peek_plugin_dir(const char *file, char **ret)
{
	_cleanup_free_ char *text = NULL;
	struct lexical_scan scan;
	cfg_t *cfg;
	int r;

	*ret = NULL;
	r = read_config_text(NULL, file, &text, &scan);
	if (r < 0)
		return r;
	cfg = parse_loose(text);
	if (!cfg)
		return -ENOMEM;
	if (cfg_size(cfg, "plugin_dir") > 0 && cfg_getstr(cfg, "plugin_dir"))
		*ret = strdup(cfg_getstr(cfg, "plugin_dir"));
	cfg_free(cfg);
	return 0;
}

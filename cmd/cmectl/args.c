/* cmectl's command line: global options (anywhere on the line), a command's own flags
 * ("--flag VALUE" or "--flag=VALUE") and its positional NAME. */
#include "cmectl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The global options, as flags that write into a struct ctl. */
static void global_flags(struct ctl *c, struct flag out[6])
{
	out[0] = (struct flag){ "--etcd", NULL, FL_STR, NULL, &c->endpoints };
	out[1] = (struct flag){ "--tls-dir", NULL, FL_STR, NULL, &c->tls_dir };
	out[2] = (struct flag){ "--prefix", NULL, FL_STR, NULL, &c->prefix };
	out[3] = (struct flag){ "--output", "-o", FL_STR, NULL, &c->output };
	out[4] = (struct flag){ "--timeout", NULL, FL_STR, NULL, &c->timeout };
	out[5] = (struct flag){ NULL, NULL, FL_BOOL, NULL, NULL };
}

void ctl_args_defaults(struct ctl *c)
{
	const char *s;

	c->endpoints = (s = getenv("CME_ETCD")) && *s ? s : CTL_DEFAULT_ETCD;
	c->tls_dir = (s = getenv("CME_TLS_DIR")) && *s ? s : NULL;
	c->prefix = (s = getenv("CME_PREFIX")) && *s ? s : CTL_DEFAULT_PREFIX;
	c->output = "table";
	c->timeout = NULL;
	c->timeout_s = CTL_DEFAULT_TIMEOUT;
}

static const struct flag *find_flag(const struct flag *flags, const char *arg, size_t len)
{
	for (const struct flag *f = flags; f && f->name; f++) {
		if (strlen(f->name) == len && !strncmp(f->name, arg, len))
			return f;
		if (f->alias && strlen(f->alias) == len && !strncmp(f->alias, arg, len))
			return f;
	}
	return NULL;
}

/* Apply the flag at argv[*i] (from flags, then globals). Returns 1 when it was one, 0 when
 * it is not a known flag, -1 after a usage error. */
static int take_flag(const char *cmd, const struct flag *flags, const struct flag *globals,
		     int argc, char **argv, int *i)
{
	const char *arg = argv[*i], *eq = strchr(arg, '=');
	size_t len = eq && arg[1] == '-' ? (size_t)(eq - arg) : strlen(arg);
	const struct flag *f = find_flag(flags, arg, len);

	if (!f)
		f = find_flag(globals, arg, len);
	if (!f)
		return 0;
	if (f->kind == FL_BOOL) {
		if (arg[len])
			return ctl_usage("%s: %.*s takes no value", cmd, (int)len, arg), -1;
		*f->on = true;
		return 1;
	}
	if (arg[len]) {
		*f->str = arg + len + 1;
	} else if (*i + 1 < argc) {
		*f->str = argv[++*i];
	} else {
		return ctl_usage("%s: %s needs a value", cmd, f->name), -1;
	}
	return 1;
}

int ctl_args_globals(struct ctl *c, int argc, char **argv)
{
	struct flag globals[6];
	int i;

	global_flags(c, globals);
	for (i = 0; i < argc && argv[i][0] == '-'; i++) {
		int rc = take_flag("cmectl", NULL, globals, argc, argv, &i);

		if (rc < 0)
			return -1;
		if (rc == 0)
			return ctl_usage("unknown option %s", argv[i]), -1;
	}
	return i;
}

static int check_tls(struct ctl *c)
{
	static const char *const files[] = { "ca.crt", "tls.crt", "tls.key" };
	char *dst[] = { c->ca, c->cert, c->key };

	if (!c->tls_dir) {
		c->ca[0] = c->cert[0] = c->key[0] = 0;
		return CTL_OK;
	}
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		int n = snprintf(dst[i], PATH_MAX, "%s/%s", c->tls_dir, files[i]);

		if (n < 0 || n >= PATH_MAX)
			return ctl_usage("--tls-dir %s: path too long", c->tls_dir);
		if (access(dst[i], R_OK) < 0)
			return ctl_usage("--tls-dir %s: %s: %s", c->tls_dir, dst[i],
					 strerror(errno));
	}
	return CTL_OK;
}

/* Validate the global options once every argument is in. */
static int check_globals(struct ctl *c)
{
	uint64_t t;

	if (!strcmp(c->output, "json"))
		c->json = true;
	else if (!strcmp(c->output, "table"))
		c->json = false;
	else
		return ctl_usage("-o %s: use table or json", c->output);
	if (c->timeout) {
		if (parse_uint(c->timeout, 1, 7 * 86400, &t))
			return ctl_usage("--timeout %s: expected seconds from 1 to 604800",
					 c->timeout);
		c->timeout_s = (unsigned)t;
	}
	if (!c->prefix[0] || c->prefix[0] != '/' || c->prefix[strlen(c->prefix) - 1] == '/')
		return ctl_usage("--prefix %s: must start with / and not end with /", c->prefix);
	if (strlen(c->prefix) > 128)
		return ctl_usage("--prefix: longer than 128 characters");
	if (!c->endpoints[0])
		return ctl_usage("--etcd: no endpoint given");
	return check_tls(c);
}

int ctl_args_parse(struct ctl *c, const char *cmd, int argc, char **argv, const struct flag *flags,
		   const char *pos_name, const char **pos)
{
	return ctl_args_parse_n(c, cmd, argc, argv, flags, &pos_name, pos, pos_name ? 1 : 0);
}

int ctl_args_parse_n(struct ctl *c, const char *cmd, int argc, char **argv,
		     const struct flag *flags, const char *const *pos_names, const char **pos,
		     int n)
{
	struct flag globals[6];
	int npos = 0;

	global_flags(c, globals);
	for (int i = 0; i < argc; i++) {
		int rc = argv[i][0] == '-' && argv[i][1]
				 ? take_flag(cmd, flags, globals, argc, argv, &i)
				 : 0;

		if (rc < 0)
			return CTL_USAGE;
		if (rc > 0)
			continue;
		if (argv[i][0] == '-' && argv[i][1])
			return ctl_usage("%s: unknown option %s", cmd, argv[i]);
		if (npos == n)
			return ctl_usage("%s: unexpected argument '%s'", cmd, argv[i]);
		pos[npos++] = argv[i];
	}
	if (npos < n)
		return ctl_usage("%s: missing %s", cmd, pos_names[npos]);
	return check_globals(c);
}

int ctl_args_uint(const char *cmd, const char *flag, const char *s, uint64_t min, uint64_t max,
		  uint64_t *out)
{
	if (parse_uint(s, min, max, out))
		return ctl_usage("%s: %s %s: expected a whole number from %llu to %llu", cmd, flag,
				 s, (unsigned long long)min, (unsigned long long)max);
	return CTL_OK;
}

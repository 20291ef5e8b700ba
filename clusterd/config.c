/* cme-clusterd's configuration file: "key = value" lines, '#' starts a comment. Unknown
 * keys are errors (a typo must not silently keep a default). */
#include "clusterd.h"
#include "net.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct ckey {
	const char *name;
	int (*set)(struct cd_config *c, const char *key, const char *val);
};

static int set_str(char *dst, size_t len, const char *val)
{
	if (strlen(val) >= len)
		return -ENAMETOOLONG;
	strcpy(dst, val);
	return 0;
}

#define STR_KEY(field)                                                                             \
	static int set_##field(struct cd_config *c, const char *k, const char *v)                  \
	{                                                                                          \
		(void)k;                                                                           \
		return set_str(c->field, sizeof(c->field), v);                                     \
	}
STR_KEY(etcd)
STR_KEY(etcd_ca)
STR_KEY(etcd_cert)
STR_KEY(etcd_key)
STR_KEY(prefix)
STR_KEY(address)
STR_KEY(tls_dir)
STR_KEY(state_dir)
STR_KEY(vmm)
STR_KEY(peer)
STR_KEY(jail_user)
STR_KEY(operator_keys)
STR_KEY(backup_key)

/* "NAME:/folder,NAME:/folder": names as VM names, folders absolute. */
static int set_backup_stores(struct cd_config *c, const char *k, const char *v)
{
	char name[CL_NAME_MAX];

	(void)k;
	for (const char *p = v; *p; p += strcspn(p, ","), p += *p == ',') {
		size_t n = strcspn(p, ":");

		if (n == 0 || n >= sizeof(name) || p[n] != ':' || p[n + 1] != '/')
			return -EINVAL;
		snprintf(name, sizeof(name), "%.*s", (int)n, p);
		if (!cl_name_ok(name))
			return -EINVAL;
	}
	return *v ? set_str(c->backup_stores, sizeof(c->backup_stores), v) : -EINVAL;
}

int cd_config_store(const struct cd_config *c, const char *name, char *out, size_t len)
{
	for (const char *p = c->backup_stores; *p; p += strcspn(p, ","), p += *p == ',') {
		size_t n = strcspn(p, ":"), end = strcspn(p, ",");

		if (name[0] && (strlen(name) != n || strncmp(p, name, n)))
			continue;
		if (end - n - 1 >= len)
			return -ENAMETOOLONG;
		snprintf(out, len, "%.*s", (int)(end - n - 1), p + n + 1);
		return 0;
	}
	return -ENOENT;
}

/* Folders, absolute, ':'-separated. */
static int set_image_dirs(struct cd_config *c, const char *k, const char *v)
{
	(void)k;
	for (const char *p = v; *p; p += strcspn(p, ":"), p += *p == ':')
		if (*p != '/')
			return -EINVAL; /* empty, or not absolute */
	return *v ? set_str(c->image_dirs, sizeof(c->image_dirs), v) : -EINVAL;
}

static int set_node(struct cd_config *c, const char *k, const char *v)
{
	(void)k;
	return cl_name_ok(v) ? set_str(c->node, sizeof(c->node), v) : -EINVAL;
}

static int set_uint(struct cd_config *c, const char *k, const char *v)
{
	uint64_t n;
	int rc = parse_uint(v, 1, 1000000, &n);

	if (rc)
		return rc;
	if (!strcmp(k, "lease_ttl"))
		c->lease_ttl_s = (unsigned)n;
	else if (!strcmp(k, "cpus"))
		c->cpus = (uint32_t)n;
	else if (!strcmp(k, "max_migrations"))
		c->max_migrations = (unsigned)n;
	else if (!strcmp(k, "max_migrations_per_node"))
		c->max_migrations_per_node = (unsigned)n;
	else if (!strcmp(k, "progress_interval_ms"))
		c->progress_interval_ms = (unsigned)n;
	else if (!strcmp(k, "etcd_timeout_ms"))
		c->etcd_timeout_ms = (unsigned)n;
	else if (!strcmp(k, "fence_margin_ms"))
		c->fence_margin_ms = (unsigned)n;
	else if (!strcmp(k, "ha_tier_timeout"))
		c->ha_tier_timeout_s = (unsigned)n;
	else
		c->prepare_timeout_s = (unsigned)n;
	return 0;
}

static int set_drift(struct cd_config *c, const char *k, const char *v)
{
	uint64_t n;
	int rc = parse_uint(v, 0, 100000, &n);

	(void)k;
	c->clock_drift_ppm = (unsigned)n;
	return rc;
}

/* on/off switches. */
static int set_bool(struct cd_config *c, const char *k, const char *v)
{
	bool on = !strcmp(v, "on") || !strcmp(v, "true") || !strcmp(v, "yes");

	if (!on && strcmp(v, "off") && strcmp(v, "false") && strcmp(v, "no"))
		return -EINVAL;
	if (!strcmp(k, "fence"))
		c->fence = on;
	else if (!strcmp(k, "jail"))
		c->jail = on;
	else if (!strcmp(k, "jail_root"))
		c->jail_root = on;
	else if (!strcmp(k, "ride_through"))
		c->ride_through = on;
	else
		c->admission_control = on;
	return 0;
}

static int set_mem(struct cd_config *c, const char *k, const char *v)
{
	uint64_t b;
	int rc = parse_size(v, &b);

	(void)k;
	if (!rc && b < (64ULL << 20))
		rc = -ERANGE;
	c->mem_mb = b >> 20;
	return rc;
}

static const struct ckey keys[] = {
	{ "node", set_node },
	{ "etcd", set_etcd },
	{ "etcd_ca", set_etcd_ca },
	{ "etcd_cert", set_etcd_cert },
	{ "etcd_key", set_etcd_key },
	{ "prefix", set_prefix },
	{ "address", set_address },
	{ "tls_dir", set_tls_dir },
	{ "state_dir", set_state_dir },
	{ "vmm", set_vmm },
	{ "image_dirs", set_image_dirs },
	{ "lease_ttl", set_uint },
	{ "cpus", set_uint },
	{ "mem", set_mem },
	{ "max_migrations", set_uint },
	{ "max_migrations_per_node", set_uint },
	{ "progress_interval_ms", set_uint },
	{ "etcd_timeout_ms", set_uint },
	{ "prepare_timeout", set_uint },
	{ "fence", set_bool },
	{ "jail", set_bool },
	{ "jail_root", set_bool },
	{ "jail_user", set_jail_user },
	{ "operator_keys", set_operator_keys },
	{ "fence_margin_ms", set_uint },
	{ "clock_drift_ppm", set_drift },
	{ "ha_tier_timeout", set_uint },
	{ "admission_control", set_bool },
	{ "ride_through", set_bool },
	{ "peer", set_peer },
	{ "backup_stores", set_backup_stores },
	{ "backup_key", set_backup_key },
};

/* cme-vmm beside this program's binary, else from PATH. */
static void default_vmm(struct cd_config *c)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	strcpy(c->vmm, "cme-vmm");
	if (n <= 0)
		return;
	self[n] = 0;
	slash = strrchr(self, '/');
	if (slash && (size_t)(slash - self) + sizeof("/cme-vmm") <= sizeof(c->vmm)) {
		strcpy(slash, "/cme-vmm");
		if (access(self, X_OK) == 0)
			strcpy(c->vmm, self);
	}
}

static void defaults(struct cd_config *c)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	uint64_t mem = host_mem_bytes() >> 20;

	memset(c, 0, sizeof(*c));
	strcpy(c->etcd, "http://127.0.0.1:2379");
	strcpy(c->prefix, "/cme");
	strcpy(c->address, "127.0.0.1");
	strcpy(c->state_dir, "/var/lib/cme");
	default_vmm(c);
	c->lease_ttl_s = 5;
	c->cpus = ncpu > 0 ? (uint32_t)ncpu : 1;
	c->mem_mb = mem > 2048 ? mem - 1024 : mem / 2; /* leave the host room to work */
	c->max_migrations = 2;
	c->max_migrations_per_node = 1;
	c->progress_interval_ms = 500;
	c->etcd_timeout_ms = 5000;
	c->prepare_timeout_s = 30;
	c->fence = true;
	c->jail = true;
	c->jail_root = true;
	c->ride_through = true;
	c->fence_margin_ms = 1000;
	c->clock_drift_ppm = 1000;
	c->ha_tier_timeout_s = 60;
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = 0;
	return s;
}

static int config_line(struct cd_config *c, char *line, const char **why)
{
	char *hash = strchr(line, '#'), *eq, *k, *v;

	if (hash)
		*hash = 0;
	line = trim(line);
	if (!*line)
		return 0;
	eq = strchr(line, '=');
	if (!eq) {
		*why = "expected key = value";
		return -EINVAL;
	}
	*eq = 0;
	k = trim(line);
	v = trim(eq + 1);
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		if (strcmp(keys[i].name, k))
			continue;
		*why = "bad value";
		return keys[i].set(c, k, v);
	}
	*why = "unknown key";
	return -EINVAL;
}

static int config_check(const struct cd_config *c, const char **why)
{
	static __thread char fence_why[160];
	const struct ha_fence_cfg fc = { .ttl_ms = c->lease_ttl_s * 1000ull,
					 .margin_ms = c->fence_margin_ms,
					 .drift_ppm = c->clock_drift_ppm };
	char host[128];
	uint16_t port;

	if (!c->node[0])
		*why = "node = NAME is required";
	else if (!c->tls_dir[0])
		*why = "tls_dir = DIR is required (this node's certificate folder)";
	else if (c->prefix[0] != '/' || c->prefix[strlen(c->prefix) - 1] == '/')
		*why = "prefix must start with / and not end with /";
	else if (c->lease_ttl_s < 2 || c->lease_ttl_s > 60)
		*why = "lease_ttl must be 2..60 seconds";
	else if (c->peer[0] && net_parse_hostport(c->peer, host, sizeof(host), &port))
		*why = "peer must be HOST:PORT (the peer channel's address)";
	else if (c->fence && ha_fence_check(&fc, fence_why, sizeof(fence_why)))
		*why = fence_why;
	else
		return 0;
	return -EINVAL;
}

int cd_config_load(const char *path, struct cd_config *c, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char line[2048];
	const char *why = NULL;
	unsigned lineno = 0;
	int rc = 0;

	defaults(c);
	if (!f) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		return rc;
	}
	while (!rc && fgets(line, sizeof(line), f)) {
		lineno++;
		rc = config_line(c, line, &why);
	}
	fclose(f);
	if (rc) {
		snprintf(err, errlen, "%s:%u: %s", path, lineno, why);
		return rc;
	}
	if (!c->image_dirs[0]) /* VMs' files come from STATE_DIR/images unless told */
		snprintf(c->image_dirs, sizeof(c->image_dirs), "%.500s/images", c->state_dir);
	rc = config_check(c, &why);
	if (rc)
		snprintf(err, errlen, "%s: %s", path, why);
	return rc;
}

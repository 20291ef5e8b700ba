/* Cluster records <-> JSON, table-driven: each record is a list of fields with a type, an
 * offset and a size, so encoding and the untrusted-input checks of decoding are written
 * once. */
#include "cluster.h"

#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

enum ftype { F_STR, F_NAME, F_ID, F_U32, F_U64, F_INT, F_BOOL, F_DBL, F_JSON };

struct field {
	const char *name;
	enum ftype type;
	size_t off, size;
	bool required;
};

#define FLD(st, f, t, req)                                                                         \
	{                                                                                          \
#f, t, offsetof(struct st, f), sizeof(((struct st *)0)->f), req                    \
	}

static const struct field node_f[] = {
	FLD(cl_node, name, F_NAME, true),
	FLD(cl_node, addr, F_STR, true),
	FLD(cl_node, cpus, F_U32, true),
	FLD(cl_node, mem_mb, F_U64, true),
	FLD(cl_node, vms, F_U32, false),
	FLD(cl_node, started_ms, F_U64, false),
	FLD(cl_node, version, F_STR, false),
	FLD(cl_node, cpu_features, F_STR, false),
	FLD(cl_node, mem_encryption, F_STR, false),
	FLD(cl_node, members, F_STR, false),
	{ 0 },
};

static const struct field admin_f[] = {
	FLD(cl_admin, state, F_STR, true),
	FLD(cl_admin, since_ms, F_U64, false),
	FLD(cl_admin, postcopy_after, F_U32, false),
	{ 0 },
};

static const struct field member_f[] = {
	FLD(cl_member, name, F_NAME, true),
	FLD(cl_member, peer, F_STR, true),
	FLD(cl_member, joined_ms, F_U64, false),
	FLD(cl_member, ride, F_BOOL, false),
	{ 0 },
};

static const struct field spec_f[] = {
	FLD(cl_spec, name, F_NAME, true),
	FLD(cl_spec, vcpus, F_U32, true),
	FLD(cl_spec, mem_mb, F_U64, true),
	FLD(cl_spec, image, F_STR, false),
	FLD(cl_spec, kernel, F_STR, false),
	FLD(cl_spec, initrd, F_STR, false),
	FLD(cl_spec, cmdline, F_STR, false),
	FLD(cl_spec, restart, F_STR, false),
	FLD(cl_spec, group, F_STR, false),
	FLD(cl_spec, disk, F_STR, false),
	FLD(cl_spec, balloon, F_BOOL, false),
	FLD(cl_spec, balloon_mb, F_U64, false),
	FLD(cl_spec, priority, F_INT, false),
	FLD(cl_spec, running, F_BOOL, false),
	FLD(cl_spec, created_ms, F_U64, false),
	FLD(cl_spec, pin_vcpus, F_STR, false),
	FLD(cl_spec, cgroup, F_STR, false),
	FLD(cl_spec, hugepages, F_BOOL, false),
	FLD(cl_spec, ksm, F_BOOL, false),
	FLD(cl_spec, cpu_template, F_STR, false),
	FLD(cl_spec, boot_sig, F_STR, false),
	FLD(cl_spec, confidential, F_BOOL, false),
	{ 0 },
};

static const struct field owner_f[] = {
	FLD(cl_owner, node, F_NAME, true),
	FLD(cl_owner, epoch, F_U64, true),
	{ 0 },
};

static const struct field status_f[] = {
	FLD(cl_status, node, F_STR, false),
	FLD(cl_status, state, F_STR, true),
	FLD(cl_status, pid, F_INT, false),
	FLD(cl_status, epoch, F_U64, false),
	FLD(cl_status, restarts, F_U32, false),
	FLD(cl_status, error, F_STR, false),
	FLD(cl_status, since_ms, F_U64, false),
	FLD(cl_status, console, F_STR, false),
	FLD(cl_status, balloon, F_BOOL, false),
	FLD(cl_status, balloon_target_mb, F_U64, false),
	FLD(cl_status, balloon_actual_mb, F_U64, false),
	{ 0 },
};

static const struct field mig_f[] = {
	FLD(cl_migration, id, F_ID, true),
	FLD(cl_migration, vm, F_NAME, true),
	FLD(cl_migration, source, F_NAME, true),
	FLD(cl_migration, target, F_NAME, true),
	FLD(cl_migration, phase, F_STR, true),
	FLD(cl_migration, by, F_STR, false),
	FLD(cl_migration, dest_addr, F_STR, false),
	FLD(cl_migration, error, F_STR, false),
	FLD(cl_migration, requested_ms, F_U64, false),
	FLD(cl_migration, updated_ms, F_U64, false),
	FLD(cl_migration, round, F_U32, false),
	FLD(cl_migration, throttle_pct, F_U32, false),
	FLD(cl_migration, pages_left, F_U64, false),
	FLD(cl_migration, bytes_sent, F_U64, false),
	FLD(cl_migration, expected_downtime_ms, F_U64, false),
	FLD(cl_migration, rate_mbps, F_DBL, false),
	FLD(cl_migration, vmm_phase, F_STR, false),
	FLD(cl_migration, stats, F_JSON, false),
	FLD(cl_migration, cluster_ms, F_U64, false),
	FLD(cl_migration, postcopy_after, F_U32, false),
	FLD(cl_migration, max_bandwidth, F_U64, false),
	FLD(cl_migration, downtime_ms, F_U64, false),
	{ 0 },
};

static const struct field trust_f[] = {
	FLD(cl_trust, keys, F_STR, true),    FLD(cl_trust, seq, F_U64, true),
	FLD(cl_trust, signer, F_STR, true),  FLD(cl_trust, sig, F_STR, true),
	FLD(cl_trust, set_ms, F_U64, false), { 0 },
};

static const struct field backup_f[] = {
	FLD(cl_backup, id, F_ID, true),
	FLD(cl_backup, phase, F_STR, true),
	FLD(cl_backup, by, F_STR, false),
	FLD(cl_backup, store, F_STR, false),
	FLD(cl_backup, node, F_STR, false),
	FLD(cl_backup, backup, F_STR, false),
	FLD(cl_backup, error, F_STR, false),
	FLD(cl_backup, requested_ms, F_U64, false),
	FLD(cl_backup, updated_ms, F_U64, false),
	FLD(cl_backup, stats, F_JSON, false),
	FLD(cl_backup, keep, F_U32, false),
	FLD(cl_backup, max_age_ms, F_U64, false),
	{ 0 },
};

static const struct field schedule_f[] = {
	FLD(cl_schedule, every_ms, F_U64, true),    FLD(cl_schedule, keep, F_U32, false),
	FLD(cl_schedule, store, F_STR, false),	    FLD(cl_schedule, set_ms, F_U64, false),
	FLD(cl_schedule, max_age_ms, F_U64, false), { 0 },
};

static const struct field restore_f[] = {
	FLD(cl_restore, id, F_ID, true),
	FLD(cl_restore, phase, F_STR, true),
	FLD(cl_restore, from, F_STR, true),
	FLD(cl_restore, store, F_STR, false),
	FLD(cl_restore, node, F_STR, false),
	FLD(cl_restore, error, F_STR, false),
	FLD(cl_restore, requested_ms, F_U64, false),
	FLD(cl_restore, updated_ms, F_U64, false),
	{ 0 },
};

static const struct field event_f[] = {
	FLD(cl_event, ts_ms, F_U64, true), FLD(cl_event, node, F_STR, false),
	FLD(cl_event, vm, F_STR, false),   FLD(cl_event, kind, F_STR, true),
	FLD(cl_event, msg, F_STR, false),  { 0 },
};

bool cl_name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n >= CL_NAME_MAX ||
	    !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789._-", s[i]))
			return false;
	return true;
}

char *cl_key(char *buf, size_t len, const char *prefix, const char *part, const char *name,
	     const char *leaf)
{
	int n = snprintf(buf, len, "%s/%s%s%s%s%s", prefix, part, name ? "/" : "", name ? name : "",
			 leaf ? "/" : "", leaf ? leaf : "");

	return n < 0 || (size_t)n >= len ? NULL : buf;
}

/* ---- encoding ----------------------------------------------------------------------- */

static json_t *field_value(const struct field *f, const char *p)
{
	switch (f->type) {
	case F_STR:
	case F_NAME:
	case F_ID: return json_string(p);
	case F_U32: return json_integer(*(const uint32_t *)p);
	case F_U64: return json_integer((json_int_t) * (const uint64_t *)p);
	case F_INT: return json_integer(*(const int *)p);
	case F_BOOL: return json_boolean(*(const bool *)p);
	case F_DBL: return json_real(*(const double *)p);
	case F_JSON: return p[0] ? json_loads(p, 0, NULL) : json_null();
	}
	return NULL;
}

static char *encode(const struct field *fields, const void *rec)
{
	json_t *o = json_object();
	char *s = NULL;

	if (!o)
		return NULL;
	for (const struct field *f = fields; f->name; f++) {
		json_t *v = field_value(f, (const char *)rec + f->off);

		if (!v || json_object_set_new(o, f->name, v))
			goto out;
	}
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
out:
	json_decref(o);
	return s;
}

char *cl_node_json(const struct cl_node *n)
{
	return encode(node_f, n);
}
char *cl_admin_json(const struct cl_admin *a)
{
	return encode(admin_f, a);
}
char *cl_member_json(const struct cl_member *m)
{
	return encode(member_f, m);
}
char *cl_spec_json(const struct cl_spec *s)
{
	return encode(spec_f, s);
}
char *cl_owner_json(const struct cl_owner *o)
{
	return encode(owner_f, o);
}
char *cl_status_json(const struct cl_status *s)
{
	return encode(status_f, s);
}
char *cl_migration_json(const struct cl_migration *m)
{
	return encode(mig_f, m);
}
char *cl_event_json(const struct cl_event *e)
{
	return encode(event_f, e);
}

char *cl_trust_json(const struct cl_trust *t)
{
	return encode(trust_f, t);
}

char *cl_backup_json(const struct cl_backup *b)
{
	return encode(backup_f, b);
}

char *cl_schedule_json(const struct cl_schedule *s)
{
	return encode(schedule_f, s);
}

char *cl_restore_json(const struct cl_restore *r)
{
	return encode(restore_f, r);
}

bool cl_backup_active(const struct cl_backup *b)
{
	return !strcmp(b->phase, "requested") || !strcmp(b->phase, "running");
}

/* ---- decoding ----------------------------------------------------------------------- */

static int bad(struct etcd_err *err, const char *field, const char *why)
{
	if (err)
		snprintf(err->msg, sizeof(err->msg), "field \"%s\" %s", field, why);
	return -EINVAL;
}

static int decode_str(const struct field *f, json_t *v, char *p, struct etcd_err *err)
{
	const char *s = json_string_value(v);

	if (!s)
		return bad(err, f->name, "is not a string");
	if (strlen(s) >= f->size)
		return bad(err, f->name, "is too long");
	if (f->type == F_NAME && !cl_name_ok(s))
		return bad(err, f->name, "is not a valid name");
	/* An id ends up in file contents and logs: letters, digits, - and _ only. */
	if (f->type == F_ID &&
	    (!*s || strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			      "0123456789-_") != strlen(s)))
		return bad(err, f->name, "is not a valid id (letters, digits, - and _)");
	strcpy(p, s);
	return 0;
}

static int decode_int(const struct field *f, json_t *v, char *p, struct etcd_err *err)
{
	json_int_t i = json_integer_value(v);

	if (!json_is_integer(v))
		return bad(err, f->name, "is not an integer");
	if (f->type == F_INT) {
		if (i < -1000000000 || i > 1000000000)
			return bad(err, f->name, "is out of range");
		*(int *)p = (int)i;
		return 0;
	}
	if (i < 0 || (f->type == F_U32 && i > UINT32_MAX))
		return bad(err, f->name, "is out of range");
	if (f->type == F_U32)
		*(uint32_t *)p = (uint32_t)i;
	else
		*(uint64_t *)p = (uint64_t)i;
	return 0;
}

static int decode_field(const struct field *f, json_t *v, char *p, struct etcd_err *err)
{
	char *s;

	switch (f->type) {
	case F_STR:
	case F_NAME:
	case F_ID: return decode_str(f, v, p, err);
	case F_U32:
	case F_U64:
	case F_INT: return decode_int(f, v, p, err);
	case F_BOOL:
		if (!json_is_boolean(v))
			return bad(err, f->name, "is not true or false");
		*(bool *)p = json_is_true(v);
		return 0;
	case F_DBL:
		if (!json_is_number(v))
			return bad(err, f->name, "is not a number");
		*(double *)p = json_number_value(v);
		return 0;
	case F_JSON:
		if (json_is_null(v))
			return 0;
		s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (!s || strlen(s) >= f->size) {
			free(s);
			return bad(err, f->name, "is too long");
		}
		strcpy(p, s);
		free(s);
		return 0;
	}
	return -EINVAL;
}

static int decode(const struct field *fields, const char *txt, size_t len, void *rec,
		  size_t recsize, struct etcd_err *err)
{
	json_t *o = json_loadb(txt, len, 0, NULL);
	int rc = 0;

	memset(rec, 0, recsize);
	if (!json_is_object(o)) {
		json_decref(o);
		if (err)
			snprintf(err->msg, sizeof(err->msg), "not a JSON object");
		return -EINVAL;
	}
	for (const struct field *f = fields; f->name && !rc; f++) {
		json_t *v = json_object_get(o, f->name);

		if (!v)
			rc = f->required ? bad(err, f->name, "is missing") : 0;
		else
			rc = decode_field(f, v, (char *)rec + f->off, err);
	}
	json_decref(o);
	return rc;
}

#define DECODER(fn, st, tbl)                                                                       \
	int fn(const char *txt, size_t len, struct st *r, struct etcd_err *err)                    \
	{                                                                                          \
		return decode(tbl, txt, len, r, sizeof(*r), err);                                  \
	}

DECODER(cl_node_parse, cl_node, node_f)
DECODER(cl_admin_parse, cl_admin, admin_f)
DECODER(cl_member_parse, cl_member, member_f)
DECODER(cl_owner_parse, cl_owner, owner_f)
DECODER(cl_status_parse, cl_status, status_f)
DECODER(cl_migration_parse, cl_migration, mig_f)
DECODER(cl_event_parse, cl_event, event_f)
DECODER(cl_trust_parse, cl_trust, trust_f)
DECODER(cl_backup_parse, cl_backup, backup_f)
DECODER(cl_schedule_parse, cl_schedule, schedule_f)
DECODER(cl_restore_parse, cl_restore, restore_f)

int cl_spec_parse(const char *txt, size_t len, struct cl_spec *s, struct etcd_err *err)
{
	int rc = decode(spec_f, txt, len, s, sizeof(*s), err);

	return rc ? rc : cl_spec_check(s, err);
}

/* ---- checks ------------------------------------------------------------------------- */

static int spec_bad(struct etcd_err *err, const char *why)
{
	if (err)
		snprintf(err->msg, sizeof(err->msg), "%s", why);
	return -EINVAL;
}

int cl_spec_check(const struct cl_spec *s, struct etcd_err *err)
{
	if (!cl_name_ok(s->name))
		return spec_bad(err, "VM name must be 1-63 of a-z 0-9 . _ - (starting with a "
				     "letter or digit)");
	if (s->vcpus < 1 || s->vcpus > 64)
		return spec_bad(err, "vcpus must be 1..64");
	if (s->mem_mb < 16 || s->mem_mb > 1024 * 1024)
		return spec_bad(err, "memory must be 16 MiB..1 TiB");
	if (!s->image[0] == !s->kernel[0])
		return spec_bad(err, "give exactly one of an image or a kernel");
	if (s->initrd[0] && !s->kernel[0])
		return spec_bad(err, "an initrd needs a kernel");
	if (s->restart[0] && strcmp(s->restart, "always") && strcmp(s->restart, "on-failure") &&
	    strcmp(s->restart, "never"))
		return spec_bad(err, "restart policy must be always, on-failure or never");
	if (s->group[0] && !cl_name_ok(s->group))
		return spec_bad(err, "anti-affinity group must be a valid name");
	/* The rest is checked by the VMM; here only what could not be one flag's value. */
	if (strspn(s->pin_vcpus, "0123456789,") != strlen(s->pin_vcpus))
		return spec_bad(err, "pin_vcpus must be host CPU numbers, comma-separated");
	if (s->cgroup[0] == '/' || strstr(s->cgroup, "..") ||
	    strspn(s->cgroup,
		   "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/,=") !=
		    strlen(s->cgroup))
		return spec_bad(err, "cgroup must be a relative PATH[,cpu=CPUS][,mem=SIZE]");
	if (cpu_template_level(s->cpu_template) < 0)
		return spec_bad(err, "cpu_template must be one of " CPU_TEMPLATE_NAMES);
	if (s->confidential && (s->kernel[0] || s->disk[0] || s->balloon || s->ksm ||
				cpu_template_level(s->cpu_template) > 0))
		return spec_bad(err, "a confidential VM boots a flat image on the host CPU "
				     "template, with no disk, balloon or KSM (AMD SEV: README "
				     "\"Confidential VMs\")");
	return 0;
}

bool cl_node_knows_confidential(const struct cl_node *n)
{
	return strverscmp(n->version, CL_VERSION_CONFIDENTIAL) >= 0;
}

bool cl_node_offers_sev(const struct cl_node *n)
{
	return list_has(n->mem_encryption, "sev");
}

const char *cl_spec_cpu_need(const struct cl_spec *s, char *buf, size_t len)
{
	int level = cpu_template_level(s->cpu_template);

	if (len && (level <= 0 || cpu_template_features(level, buf, len)))
		buf[0] = 0;
	return buf;
}

bool cl_migration_pending(const struct cl_migration *m)
{
	return cl_migration_active(m) || !strcmp(m->phase, "postcopy-broken") ||
	       !strcmp(m->phase, "taken-back");
}

bool cl_migration_active(const struct cl_migration *m)
{
	static const char *const active[] = { "requested", "ready", "streaming", "committed",
					      "postcopy" };

	for (size_t i = 0; i < ARRAY_SIZE(active); i++)
		if (!strcmp(m->phase, active[i]))
			return true;
	return false;
}

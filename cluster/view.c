/* One consistent read of the whole cluster: every record under the prefix, read in pages
 * at one revision, sorted into nodes and VMs. Malformed records are skipped and logged. */
#include "cluster.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUB	  "view"
#define PAGE_KEYS 500

struct cl_node_view *cl_view_node(const struct cl_view *v, const char *name)
{
	for (size_t i = 0; i < v->nnodes; i++)
		if (!strcmp(v->nodes[i].name, name))
			return &v->nodes[i];
	return NULL;
}

bool cl_view_node_alive(const struct cl_view *v, const char *name)
{
	const struct cl_node_view *nv = cl_view_node(v, name);

	return nv && nv->alive;
}

struct cl_vm_view *cl_view_vm(const struct cl_view *v, const char *name)
{
	for (size_t i = 0; i < v->nvms; i++)
		if (!strcmp(v->vms[i].name, name))
			return &v->vms[i];
	return NULL;
}

static void *grow(void *arr, size_t n, size_t size)
{
	/* Grow by doubling at powers of two; n is the current count. */
	if (n && (n & (n - 1)))
		return arr;
	return realloc(arr, (n ? 2 * n : 8) * size);
}

size_t cl_view_members(const struct cl_view *v)
{
	size_t n = 0;

	for (size_t i = 0; i < v->nnodes; i++)
		n += v->nodes[i].member;
	return n;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void cl_members_hash(const char *const *names, size_t n, char out[CL_MEMBERS_HASH])
{
	const char **sorted = calloc(n ? n : 1, sizeof(*sorted));
	unsigned char h[(CL_MEMBERS_HASH - 1) / 2];
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, sizeof(h));
	if (sorted) { /* no memory: a hash no list has, so nothing counts as settled */
		memcpy(sorted, names, n * sizeof(*sorted));
		qsort(sorted, n, sizeof(*sorted), name_cmp);
		for (size_t i = 0; i < n; i++) /* with its NUL: "ab","c" is not "a","bc" */
			crypto_generichash_update(&st, (const unsigned char *)sorted[i],
						  strlen(sorted[i]) + 1);
	}
	crypto_generichash_final(&st, h, sizeof(h));
	sodium_bin2hex(out, CL_MEMBERS_HASH, h, sizeof(h));
	if (!sorted)
		out[0] = '-';
	free(sorted);
}

void cl_view_members_hash(const struct cl_view *v, char out[CL_MEMBERS_HASH])
{
	const char **names = calloc(v->nnodes ? v->nnodes : 1, sizeof(*names));
	size_t n = 0;

	for (size_t i = 0; names && i < v->nnodes; i++)
		if (v->nodes[i].member)
			names[n++] = v->nodes[i].name;
	cl_members_hash(names, n, out);
	if (!names)
		out[0] = '-';
	free(names);
}

/* A VM's owner record, or an active migration's, names node: it may run guests there. */
static bool named_by_vms(const struct cl_view *v, const char *node)
{
	for (size_t i = 0; i < v->nvms; i++) {
		const struct cl_vm_view *vv = &v->vms[i];

		if ((vv->has_owner && !strcmp(vv->owner.node, node)) ||
		    (vv->has_mig &&
		     (!strcmp(vv->mig.source, node) || !strcmp(vv->mig.target, node))))
			return true;
	}
	return false;
}

bool cl_view_membership_settled(const struct cl_view *v, const char *except, char *why, size_t len)
{
	char cur[CL_MEMBERS_HASH];

	cl_view_members_hash(v, cur);
	for (size_t i = 0; i < v->nnodes; i++) {
		const struct cl_node_view *nv = &v->nodes[i];

		/* A member that is down and runs nothing (no owner or migration record names
		 * it) has no guest to ride for: the list it last read does not matter, and a
		 * dead one must not block its own replacement. */
		if (!nv->member || (except && !strcmp(nv->name, except)) ||
		    (!nv->alive && !named_by_vms(v, nv->name)))
			continue;
		if (!nv->alive)
			snprintf(why, len,
				 "member %s is down with VMs of its own, and may still count "
				 "majorities over the member list it last read (bring it back, or "
				 "forget it once its VMs have moved)",
				 nv->name);
		else if (!nv->node.members[0])
			snprintf(why, len,
				 "member %s (version %s) does not say which member list it counts "
				 "over: upgrade it",
				 nv->name, nv->node.version[0] ? nv->node.version : "unknown");
		else if (strcmp(nv->node.members, cur))
			snprintf(why, len, "member %s has not taken the last change of members yet",
				 nv->name);
		else
			continue;
		return false;
	}
	return true;
}

int cl_membership_change(struct etcd *e, const char *prefix, const struct cl_view *v,
			 const char *change, const char *node, const struct etcd_cmp *cmp,
			 size_t ncmp, const struct etcd_op *ops, size_t nops, struct etcd_err *err)
{
	char key[256];
	json_t *o = json_pack("{s:s,s:s,s:I}", "change", change, "node", node, "ms",
			      (json_int_t)wall_ms());
	char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
	struct etcd_cmp c[4] = { { .key = cl_key(key, sizeof(key), prefix, "membership", NULL,
						 NULL),
				   .target = ETCD_CMP_MOD,
				   .num = v->membership_rev } };
	struct etcd_op op[4];
	struct etcd_txn t = { c, ncmp + 1, op, nops + 1, NULL, 0 };
	struct etcd_txn_resp r = { 0 };
	int rc = -ENOMEM;

	json_decref(o);
	if (ncmp > 3 || nops > 3 || !c[0].key) {
		free(txt);
		snprintf(err->msg, sizeof(err->msg), "a member list change of too many parts");
		return -EINVAL;
	}
	memcpy(c + 1, cmp, ncmp * sizeof(*cmp));
	memcpy(op, ops, nops * sizeof(*ops));
	op[nops] = (struct etcd_op){
		.type = ETCD_OP_PUT, .key = key, .val = txt, .vlen = txt ? strlen(txt) : 0
	};
	if (txt)
		rc = etcd_txn(e, &t, &r, err);
	else
		snprintf(err->msg, sizeof(err->msg), "out of memory");
	if (!rc && !r.succeeded)
		rc = -EAGAIN;
	etcd_txn_resp_free(&r);
	free(txt);
	return rc;
}

static struct cl_node_view *node_get(struct cl_view *v, const char *name)
{
	struct cl_node_view *nv = cl_view_node(v, name), *arr;

	if (nv)
		return nv;
	arr = grow(v->nodes, v->nnodes, sizeof(*arr));
	if (!arr)
		return NULL;
	v->nodes = arr;
	nv = &v->nodes[v->nnodes++];
	memset(nv, 0, sizeof(*nv));
	memcpy(nv->name, name, strnlen(name, CL_NAME_MAX - 1));
	strcpy(nv->admin.state, "schedulable");
	return nv;
}

static struct cl_vm_view *vm_get(struct cl_view *v, const char *name)
{
	struct cl_vm_view *vv = cl_view_vm(v, name), *arr;

	if (vv)
		return vv;
	arr = grow(v->vms, v->nvms, sizeof(*arr));
	if (!arr)
		return NULL;
	v->vms = arr;
	vv = &v->vms[v->nvms++];
	memset(vv, 0, sizeof(*vv));
	memcpy(vv->name, name, strnlen(name, CL_NAME_MAX - 1));
	return vv;
}

static int skip(struct cl_view *v, const char *key, const char *why)
{
	v->bad++;
	log_warn(SUB, "skipping record %s: %s", key, why);
	return 0;
}

static int add_vm_record(struct cl_view *v, const struct etcd_kv *kv, const char *name,
			 const char *leaf)
{
	struct cl_vm_view *vv = vm_get(v, name);
	const char *txt = (const char *)kv->val;
	struct etcd_err err = { "" };
	int rc = 0;

	if (!vv)
		return -ENOMEM;
	if (!strcmp(leaf, "spec")) {
		rc = cl_spec_parse(txt, kv->vlen, &vv->spec, &err);
		vv->has_spec = !rc && !strcmp(vv->spec.name, name);
		vv->spec_rev = kv->mod_rev;
	} else if (!strcmp(leaf, "owner")) {
		rc = cl_owner_parse(txt, kv->vlen, &vv->owner, &err);
		vv->has_owner = !rc;
		vv->owner.mod_rev = kv->mod_rev;
	} else if (!strcmp(leaf, "status")) {
		rc = cl_status_parse(txt, kv->vlen, &vv->status, &err);
		vv->has_status = !rc;
		vv->status_rev = kv->mod_rev;
	} else if (!strcmp(leaf, "backup")) {
		rc = cl_backup_parse(txt, kv->vlen, &vv->backup, &err);
		vv->has_backup = !rc;
		vv->backup.mod_rev = kv->mod_rev;
	} else if (!strcmp(leaf, "restore")) {
		rc = cl_restore_parse(txt, kv->vlen, &vv->restore, &err);
		vv->has_restore = !rc;
		vv->restore.mod_rev = kv->mod_rev;
	} else if (!strcmp(leaf, "schedule")) {
		rc = cl_schedule_parse(txt, kv->vlen, &vv->schedule, &err);
		vv->has_schedule = !rc;
	} else {
		return skip(v, kv->key, "unknown record");
	}
	if (rc || (!strcmp(leaf, "spec") && !vv->has_spec)) {
		/* Present but unreadable is not absent: absent would stop the VM. */
		vv->bad |= !strcmp(leaf, "spec") || !strcmp(leaf, "owner");
		return skip(v, kv->key, rc ? err.msg : "spec names another VM");
	}
	return 0;
}

static int leader_parse(struct cl_view *v, const struct etcd_kv *kv)
{
	json_t *o = json_loadb((const char *)kv->val, kv->vlen, 0, NULL);
	const char *node = json_string_value(json_object_get(o, "node"));

	if (node && cl_name_ok(node))
		memcpy(v->leader, node, strlen(node) + 1);
	json_decref(o);
	return node ? 0 : skip(v, kv->key, "leader record without a node");
}

/* nodes/<name>, admin/<name> or members/<name>. */
static int add_node_record(struct cl_view *v, const struct etcd_kv *kv, const char *part,
			   const char *name)
{
	struct cl_node_view *nv = node_get(v, name);
	struct etcd_err err = { "" };
	const char *txt = (const char *)kv->val;

	if (!nv)
		return -ENOMEM;
	if (part[0] == 'n' && !cl_node_parse(txt, kv->vlen, &nv->node, &err))
		nv->alive = !strcmp(nv->node.name, name);
	else if (part[0] == 'm' && !cl_member_parse(txt, kv->vlen, &nv->mem, &err))
		nv->member = !strcmp(nv->mem.name, name);
	else if (part[0] == 'a' && !cl_admin_parse(txt, kv->vlen, &nv->admin, &err))
		return 0;
	return err.msg[0] ? skip(v, kv->key, err.msg) : 0;
}

static int add_record(struct cl_view *v, const struct etcd_kv *kv, size_t plen)
{
	char part[32], name[CL_NAME_MAX + 1], leaf[32];
	const char *rest = kv->key + plen;
	struct etcd_err err = { "" };
	struct cl_vm_view *vv;
	int n, used = -1;

	leaf[0] = 0;
	if (!strcmp(rest, "/leader"))
		return leader_parse(v, kv);
	if (!strcmp(rest, "/membership")) { /* only its revision: changes compare it */
		v->membership_rev = kv->mod_rev;
		return 0;
	}
	if (!strcmp(rest, "/trust")) {
		v->has_trust = !cl_trust_parse((const char *)kv->val, kv->vlen, &v->trust, &err);
		v->trust.mod_rev = kv->mod_rev;
		return v->has_trust ? 0 : skip(v, kv->key, err.msg);
	}
	/* The whole key must be consumed: "vms/x/owner/extra" is not vms/x/owner. */
	n = sscanf(rest, "/%31[^/]/%64[^/]%n/%31[^/]%n", part, name, &used, leaf, &used);
	if (n < 2 || used < 0 || rest[used] != 0)
		return skip(v, kv->key, "unknown key");
	if (!strcmp(part, "events"))
		return 0;
	if (!cl_name_ok(name))
		return skip(v, kv->key, "bad name in key");
	if (!strcmp(part, "vms") && n == 3)
		return add_vm_record(v, kv, name, leaf);
	if ((!strcmp(part, "nodes") || !strcmp(part, "admin") || !strcmp(part, "members")) &&
	    n == 2)
		return add_node_record(v, kv, part, name);
	if (!strcmp(part, "migrations") && n == 2) {
		vv = vm_get(v, name);
		if (!vv)
			return -ENOMEM;
		vv->has_mig =
			!cl_migration_parse((const char *)kv->val, kv->vlen, &vv->mig, &err) &&
			!strcmp(vv->mig.vm, name);
		vv->mig.mod_rev = kv->mod_rev;
		vv->bad |= !vv->has_mig;
		return vv->has_mig ? 0
				   : skip(v, kv->key, err.msg[0] ? err.msg : "names another VM");
	}
	return skip(v, kv->key, "unknown key");
}

/* The smallest key above key (etcd keys are bytes; ours never hold 0x00, so key + 0x01). */
static void key_after(char *buf, size_t len, const char *key)
{
	snprintf(buf, len, "%s\x01", key);
}

/* Read one part of the tree (in pages) at v->rev; the first read fixes v->rev. */
static int read_part(struct etcd *e, const char *prefix, const char *part, struct cl_view *v,
		     struct etcd_err *err)
{
	char key[256], end[256], from[300];
	size_t plen = strlen(prefix);
	bool more = true;
	int rc = 0;

	if (!cl_key(key, sizeof(key), prefix, part, NULL, NULL))
		return -ENAMETOOLONG;
	snprintf(end, sizeof(end), "%s", key);
	end[strlen(end) - 1]++; /* [key, end) is everything under the prefix */
	snprintf(from, sizeof(from), "%s", key);
	while (more && !rc) {
		struct etcd_kvs kvs = { 0 };
		struct etcd_range_req req = {
			.key = from, .range_end = end, .revision = v->rev, .limit = PAGE_KEYS
		};

		rc = etcd_range(e, &req, &kvs, err);
		if (rc)
			return rc;
		if (!v->rev)
			v->rev = kvs.header_rev;
		for (size_t i = 0; i < kvs.n && !rc; i++)
			rc = add_record(v, &kvs.kv[i], plen);
		more = kvs.more && kvs.n;
		if (more)
			key_after(from, sizeof(from), kvs.kv[kvs.n - 1].key);
		etcd_kvs_free(&kvs);
	}
	return rc;
}

int cl_view_read(struct etcd *e, const char *prefix, struct cl_view *v, struct etcd_err *err)
{
	static const char *const parts[] = { "leader", "trust",	   "membership", "nodes/",
					     "admin/", "members/", "vms/",	 "migrations/" };
	int rc = 0;

	memset(v, 0, sizeof(*v));
	for (size_t i = 0; i < ARRAY_SIZE(parts) && !rc; i++)
		rc = read_part(e, prefix, parts[i], v, err);
	if (rc)
		cl_view_free(v);
	return rc;
}

void cl_view_free(struct cl_view *v)
{
	free(v->nodes);
	free(v->vms);
	memset(v, 0, sizeof(*v));
}

bool cl_vm_owner_idle(const struct cl_vm_view *m)
{
	return m->has_owner && m->has_status &&
	       (!strcmp(m->status.state, "stopped") || !strcmp(m->status.state, "failed")) &&
	       !strcmp(m->status.node, m->owner.node) && m->status.epoch == m->owner.epoch;
}

/* Its status says running where and at the epoch its owner record says. */
static bool runs_on_owner(const struct cl_vm_view *m)
{
	return m->has_owner && m->has_status && !strcmp(m->status.state, "running") &&
	       !strcmp(m->status.node, m->owner.node) && m->status.epoch == m->owner.epoch;
}

#define NEED_MAX 1024 /* one template's feature list */

/* What m needs of a node's CPU (ha_vm's cpu_need): its template's, or on "host" while it
 * runs, what its owner offers. */
static const char *vm_cpu_need(const struct cl_view *v, const struct cl_vm_view *m,
			       const struct cl_ha *h)
{
	const struct cl_node_view *owner;
	int level = m->has_spec ? cpu_template_level(m->spec.cpu_template) : 0;

	if (level > 0)
		return h->need + (size_t)level * NEED_MAX;
	if (level < 0 || !runs_on_owner(m))
		return NULL;
	owner = cl_view_node(v, m->owner.node);
	return owner && owner->alive && owner->node.cpu_features[0] ? owner->node.cpu_features
								    : NULL;
}

int cl_view_ha(const struct cl_view *v, struct cl_ha *h)
{
	memset(h, 0, sizeof(*h));
	h->nodes = calloc(v->nnodes + 1, sizeof(*h->nodes));
	h->vms = calloc(v->nvms + 1, sizeof(*h->vms));
	h->need = calloc(CPU_TEMPLATE_MAX_LEVEL + 1, NEED_MAX);
	if (!h->nodes || !h->vms || !h->need) {
		cl_ha_free(h);
		return -ENOMEM;
	}
	for (int l = 1; l <= CPU_TEMPLATE_MAX_LEVEL; l++)
		if (cpu_template_features(l, h->need + (size_t)l * NEED_MAX, NEED_MAX))
			h->need[(size_t)l * NEED_MAX] = 0;
	for (size_t i = 0; i < v->nnodes; i++) {
		const struct cl_node_view *n = &v->nodes[i];

		h->nodes[i] = (struct ha_node){ .name = n->name,
						.alive = n->alive,
						.cpus = n->alive ? n->node.cpus : 0,
						.mem_mb = n->alive ? n->node.mem_mb : 0,
						.cpu_features = n->alive && n->node.cpu_features[0]
									? n->node.cpu_features
									: NULL,
						.sev = n->alive && cl_node_offers_sev(&n->node) };
		if (!ha_admin_parse(n->admin.state, &h->nodes[i].admin))
			h->nodes[i].admin = HA_MAINTENANCE; /* unknown: schedule nothing there */
	}
	for (size_t i = 0; i < v->nvms; i++) {
		const struct cl_vm_view *m = &v->vms[i];

		h->vms[i] = (struct ha_vm){
			.name = m->name,
			.vcpus = m->spec.vcpus,
			.mem_mb = m->spec.mem_mb,
			.group = m->spec.group,
			.priority = m->spec.priority,
			.owner = m->has_owner ? m->owner.node : NULL,
			.target =
				m->has_mig && cl_migration_pending(&m->mig) ? m->mig.target : NULL,
			.wanted = m->has_spec && m->spec.running,
			.restart = m->has_spec && strcmp(m->spec.restart, "never") != 0,
			.running = runs_on_owner(m),
			.cpu_need = vm_cpu_need(v, m, h),
			.confidential = m->has_spec && m->spec.confidential,
		};
	}
	h->c = (struct ha_cluster){ h->nodes, v->nnodes, h->vms, v->nvms };
	return 0;
}

void cl_ha_free(struct cl_ha *h)
{
	free(h->nodes);
	free(h->vms);
	free(h->need);
	memset(h, 0, sizeof(*h));
}

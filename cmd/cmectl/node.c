/* cmectl node ls | show | drain | maintenance | undrain | forget. */
#include "cmectl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* What node i uses and how many VMs it owns. */
struct node_use {
	uint32_t cpus;
	uint64_t mem_mb;
	unsigned vms;
};

static struct node_use node_use(const struct cl_view *v, const struct cl_ha *h, size_t i)
{
	struct node_use u = { 0 };

	ha_node_usage(&h->c, i, &u.cpus, &u.mem_mb);
	for (size_t k = 0; k < v->nvms; k++)
		if (v->vms[k].has_owner && !strcmp(v->vms[k].owner.node, v->nodes[i].name))
			u.vms++;
	return u;
}

/* The object `node ls -o json` prints for node i (node show adds "owned"). */
static json_t *node_obj(const struct cl_view *v, const struct cl_ha *h, size_t i)
{
	const struct cl_node_view *nv = &v->nodes[i];
	struct node_use u = node_use(v, h, i);
	char tmpl[128];
	json_t *o;

	o = json_pack("{s:s, s:s, s:b, s:s, s:I, s:s, s:i, s:I, s:i, s:I, s:i, s:s, s:I}", "name",
		      nv->name, "state", nv->alive ? "up" : "down", "leader",
		      !strcmp(v->leader, nv->name), "admin", nv->admin.state, "admin_since_ms",
		      (json_int_t)nv->admin.since_ms, "addr", nv->node.addr, "cpus",
		      (int)nv->node.cpus, "mem_mb", (json_int_t)nv->node.mem_mb, "cpus_used",
		      (int)u.cpus, "mem_used_mb", (json_int_t)u.mem_mb, "vms", (int)u.vms,
		      "version", nv->node.version, "started_ms", (json_int_t)nv->node.started_ms);
	json_object_set_new(
		o, "cpu_templates",
		jsonl_names(cpu_templates_offered(nv->node.cpu_features, ",", tmpl, sizeof(tmpl))));
	json_object_set_new(o, "cpu_features", jsonl_names(nv->node.cpu_features));
	json_object_set_new(o, "mem_encryption", jsonl_names(nv->node.mem_encryption));
	return o;
}

/* "cpu:" and "features:" lines, the features wrapped under each other. */
static void show_cpu(const struct cl_node_view *nv)
{
	char tmpl[128];
	size_t col = 10;

	if (!nv->node.cpu_features[0]) {
		printf("cpu:      %s\n", nv->alive ? "no CPU features published (an older "
						     "cme-clusterd, or cme-vmm cpu-features failed)"
						   : "-");
		return;
	}
	printf("cpu:      templates %s\n",
	       cpu_templates_offered(nv->node.cpu_features, ", ", tmpl, sizeof(tmpl)));
	printf("features:");
	for (const char *p = nv->node.cpu_features; *p;) {
		int k = (int)strcspn(p, ",");

		if (col + (size_t)k + 1 > 96) {
			printf("\n         ");
			col = 9;
		}
		printf(" %.*s", k, p);
		col += (size_t)k + 1;
		p += k + (p[k] == ',');
	}
	printf("\n");
}

static void node_row(struct table *t, const struct cl_view *v, const struct cl_ha *h, size_t i)
{
	const struct cl_node_view *nv = &v->nodes[i];
	struct node_use u = node_use(v, h, i);

	ctl_table_cell(t, "%s%s", nv->name, strcmp(v->leader, nv->name) ? "" : " (leader)");
	ctl_table_cell(t, "%s", nv->alive ? "up" : "down");
	ctl_table_cell(t, "%s", nv->admin.state);
	ctl_table_cell(t, "%s", ctl_out_dash(nv->node.addr));
	ctl_table_cell(t, "%" PRIu32 "/%" PRIu32, u.cpus, nv->node.cpus);
	ctl_table_cell(t, "%" PRIu64 "/%" PRIu64, u.mem_mb, nv->node.mem_mb);
	ctl_table_cell(t, "%u", u.vms);
}

int ctl_cmd_node_ls(struct ctl *c, int argc, char **argv)
{
	static const char *const hdr[] = { "NAME",  "STATE",	   "ADMIN", "ADDRESS",
					   "VCPUS", "MEMORY(MiB)", "VMS" };
	struct cl_view v;
	struct cl_ha h;
	int rc = ctl_args_parse(c, "node ls", argc, argv, NULL, NULL, NULL);

	if (rc || (rc = ctl_view(c, &v)))
		return rc;
	rc = ctl_view_ha(&v, &h);
	if (rc)
		goto out_view;
	if (c->json) {
		json_t *arr = json_array();

		for (size_t i = 0; i < v.nnodes; i++)
			json_array_append_new(arr, node_obj(&v, &h, i));
		ctl_out_json(arr);
	} else {
		struct table *t = ctl_table_new(ARRAY_SIZE(hdr), hdr);

		for (size_t i = 0; i < v.nnodes; i++)
			node_row(t, &v, &h, i);
		ctl_table_print(t, stdout);
	}
	cl_ha_free(&h);
out_view:
	cl_view_free(&v);
	return rc;
}

/* ---- node show ---------------------------------------------------------------------- */

static json_t *owned_vms(const struct cl_view *v, const char *node)
{
	json_t *arr = json_array();

	for (size_t k = 0; k < v->nvms; k++) {
		const struct cl_vm_view *vv = &v->vms[k];
		const char *st = ctl_vm_state(vv);

		if (!vv->has_owner || strcmp(vv->owner.node, node))
			continue;
		json_array_append_new(arr, json_pack("{s:s, s:o, s:I}", "name", vv->name, "state",
						     st ? json_string(st) : json_null(), "epoch",
						     (json_int_t)vv->owner.epoch));
	}
	return arr;
}

static void show_text(const struct cl_view *v, const struct cl_ha *h, size_t i)
{
	static const char *const hdr[] = { "VM", "STATE", "EPOCH" };
	const struct cl_node_view *nv = &v->nodes[i];
	struct node_use u = node_use(v, h, i);
	struct table *t = ctl_table_new(ARRAY_SIZE(hdr), hdr);
	char tb[32];

	printf("node:     %s (%s%s)\n", nv->name, nv->alive ? "up" : "down",
	       strcmp(v->leader, nv->name) ? "" : ", leader");
	if (nv->admin.since_ms)
		printf("admin:    %s since %s\n", nv->admin.state,
		       ctl_out_time(nv->admin.since_ms, tb));
	else
		printf("admin:    %s\n", nv->admin.state);
	printf("address:  %s\n", ctl_out_dash(nv->node.addr));
	printf("vCPUs:    %" PRIu32 " used of %" PRIu32 "\n", u.cpus, nv->node.cpus);
	printf("memory:   %" PRIu64 " MiB used of %" PRIu64 " MiB\n", u.mem_mb, nv->node.mem_mb);
	printf("version:  %s\n", ctl_out_dash(nv->node.version));
	printf("started:  %s\n", ctl_out_time(nv->node.started_ms, tb));
	show_cpu(nv);
	printf("encrypt:  %s\n", nv->node.mem_encryption[0]
					 ? nv->node.mem_encryption
					 : "none (confidential VMs are not placed here)");
	printf("VMs:      %u\n", u.vms);
	for (size_t k = 0; k < v->nvms; k++) {
		const struct cl_vm_view *vv = &v->vms[k];

		if (!vv->has_owner || strcmp(vv->owner.node, nv->name))
			continue;
		ctl_table_cell(t, "%s", vv->name);
		ctl_table_cell(t, "%s", ctl_out_dash(ctl_vm_state(vv)));
		ctl_table_cell(t, "%" PRIu64, vv->owner.epoch);
	}
	if (u.vms)
		ctl_table_print(t, stdout);
	else
		ctl_table_free(t);
}

int ctl_cmd_node_show(struct ctl *c, int argc, char **argv)
{
	const char *name = NULL;
	struct cl_view v;
	struct cl_ha h;
	json_t *o;
	long i;
	int rc = ctl_args_parse(c, "node show", argc, argv, NULL, "NAME", &name);

	if (rc || (rc = ctl_view(c, &v)))
		return rc;
	i = ctl_node_index(&v, name);
	if (i < 0) {
		rc = ctl_fail("unknown node %s (no nodes/ or admin/ record)", name);
		goto out_view;
	}
	rc = ctl_view_ha(&v, &h);
	if (rc)
		goto out_view;
	if (c->json) {
		o = node_obj(&v, &h, (size_t)i);
		json_object_set_new(o, "owned", owned_vms(&v, name));
		ctl_out_json(o);
	} else {
		show_text(&v, &h, (size_t)i);
	}
	cl_ha_free(&h);
out_view:
	cl_view_free(&v);
	return rc;
}

/* ---- admin state -------------------------------------------------------------------- */

/* Put admin/<node> = state (with the drain's post-copy rounds) unless it is already so;
 * event. Unknown nodes are refused. */
static int set_admin(struct ctl *c, const char *node, const char *state, unsigned postcopy_after)
{
	struct cl_admin a = { .since_ms = wall_ms(), .postcopy_after = postcopy_after };
	struct etcd_err err = { "" };
	char key[CTL_KEY_MAX], *val = NULL;
	struct cl_view v;
	long i;
	int rc = ctl_view(c, &v);

	if (rc)
		return rc;
	i = ctl_node_index(&v, node);
	if (i < 0) {
		rc = ctl_fail("unknown node %s (no nodes/ or admin/ record)", node);
		goto out;
	}
	if (!strcmp(v.nodes[i].admin.state, state) &&
	    v.nodes[i].admin.postcopy_after == postcopy_after)
		goto out; /* keep since_ms: it says when this state began */
	if (!strcmp(v.nodes[i].admin.state, state))
		a.since_ms = v.nodes[i].admin.since_ms;
	snprintf(a.state, sizeof(a.state), "%s", state);
	val = cl_admin_json(&a);
	if (!val) {
		rc = ctl_fail("out of memory");
		goto out;
	}
	if (etcd_put(c->etcd, ctl_key(c, key, "admin", node, NULL), val, strlen(val), 0, NULL,
		     &err)) {
		rc = ctl_fail("setting node %s %s: %s", node, state, err.msg);
		goto out;
	}
	ctl_event(c, NULL, state, "node %s set %s by cmectl", node, state);
out:
	free(val);
	cl_view_free(&v);
	return rc;
}

static int admin_cmd(struct ctl *c, const char *cmd, const char *state, int argc, char **argv)
{
	const char *name = NULL, *after = NULL;
	bool no_wait = false, postcopy = false;
	const struct flag flags[] = { { "--no-wait", NULL, FL_BOOL, &no_wait, NULL },
				      { "--postcopy", NULL, FL_BOOL, &postcopy, NULL },
				      { "--postcopy-after", NULL, FL_STR, NULL, &after },
				      { 0 } };
	uint64_t n = 0;
	int rc = ctl_args_parse(c, cmd, argc, argv, strcmp(state, "schedulable") ? flags : NULL,
				"NAME", &name);

	if (!rc && after && ctl_args_uint(cmd, "--postcopy-after", after, 1, 1000, &n))
		rc = CTL_USAGE;
	if (rc || (rc = set_admin(c, name, state, (unsigned)(n ? n : postcopy ? 1 : 0))))
		return rc;
	if (!strcmp(state, "schedulable") || no_wait) {
		if (c->json)
			ctl_out_json(json_pack("{s:s, s:s}", "node", name, "admin", state));
		else
			printf("node %s is %s%s\n", name, strcmp(state, "maintenance") ? "" : "in ",
			       state);
		return CTL_OK;
	}
	return ctl_drain_wait(c, name, state);
}

int ctl_cmd_node_drain(struct ctl *c, int argc, char **argv)
{
	return admin_cmd(c, "node drain", "draining", argc, argv);
}

int ctl_cmd_node_maintenance(struct ctl *c, int argc, char **argv)
{
	return admin_cmd(c, "node maintenance", "maintenance", argc, argv);
}

int ctl_cmd_node_undrain(struct ctl *c, int argc, char **argv)
{
	return admin_cmd(c, "node undrain", "schedulable", argc, argv);
}

/* ---- forget ------------------------------------------------------------------------- */

/* Why name may not be forgotten now ("" when it may): up, or still owning VMs. */
static void forget_refusal(const struct cl_view *v, long i, char *why, size_t len)
{
	const char *name = v->nodes[i].name;
	size_t owned = 0;
	char settled[200];
	bool rides = false;

	why[0] = 0;
	for (size_t k = 0; k < v->nnodes; k++)
		rides |= v->nodes[k].member && v->nodes[k].mem.ride;
	for (size_t k = 0; k < v->nvms; k++)
		owned += v->vms[k].has_owner && !strcmp(v->vms[k].owner.node, name);
	if (v->nodes[i].alive)
		snprintf(why, len, "node %s is up: stop its cme-clusterd first", name);
	else if (owned)
		snprintf(why, len,
			 "node %s still owns %zu VM(s): they are restarted elsewhere (or deleted) "
			 "first",
			 name, owned);
	else if (v->nodes[i].member &&
		 !cl_view_membership_settled(v, name, settled, sizeof(settled)))
		snprintf(why, len, "the member list may not change now: %s", settled);
	else if (v->nodes[i].member && cl_view_members(v) == 3 && rides)
		/* Two would be no majority to ride on, and a leader then no longer asks
		 * anyone: a member of three still riding on its old list could run twice. */
		snprintf(
			why, len,
			"forgetting node %s would leave 2 members, too few to ride through an etcd "
			"outage safely: join a new node first",
			name);
}

/* members/<name> and admin/<name> go as one change of the member list, made only while
 * the node is still down: one that came back meanwhile may already count itself a member. */
static int forget(struct ctl *c, const struct cl_view *v, const char *name, struct etcd_err *err)
{
	char mkey[CTL_KEY_MAX], akey[CTL_KEY_MAX], nkey[CTL_KEY_MAX];
	struct etcd_cmp down = { .key = ctl_key(c, nkey, "nodes", name, NULL),
				 .target = ETCD_CMP_VERSION,
				 .num = 0 };
	struct etcd_op ops[2] = {
		{ .type = ETCD_OP_DELETE, .key = ctl_key(c, mkey, "members", name, NULL) },
		{ .type = ETCD_OP_DELETE, .key = ctl_key(c, akey, "admin", name, NULL) },
	};
	int rc = cl_membership_change(c->etcd, c->prefix, v, "forget", name, &down, 1, ops, 2, err);

	if (rc == -EAGAIN)
		snprintf(err->msg, sizeof(err->msg),
			 "the member list changed meanwhile, or node %s came back: look again "
			 "(cmectl node list) and retry",
			 name);
	return rc;
}

/* Remove a node that is gone for good: its members/ and admin/ records. The majority of
 * HA's ride-through is counted over the members, so a dead one must not count for ever. */
int ctl_cmd_node_forget(struct ctl *c, int argc, char **argv)
{
	const char *name = NULL;
	struct etcd_err err = { "" };
	char why[256];
	struct cl_view v;
	long i;
	int rc = ctl_args_parse(c, "node forget", argc, argv, NULL, "NAME", &name);

	if (rc || (rc = ctl_view(c, &v)))
		return rc;
	i = ctl_node_index(&v, name);
	if (i < 0) {
		rc = ctl_fail("unknown node %s (no nodes/, admin/ or members/ record)", name);
		goto out;
	}
	forget_refusal(&v, i, why, sizeof(why));
	if (why[0]) {
		rc = ctl_fail("%s", why);
		goto out;
	}
	if (forget(c, &v, name, &err)) {
		rc = ctl_fail("forgetting node %s: %s", name, err.msg);
		goto out;
	}
	ctl_event(c, NULL, "node-forgotten", "node %s forgotten by cmectl", name);
	if (c->json)
		ctl_out_json(json_pack("{s:s, s:b}", "node", name, "forgotten", 1));
	else
		printf("node %s forgotten\n", name);
out:
	cl_view_free(&v);
	return rc;
}

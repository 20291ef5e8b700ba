/* cmectl status: one screen about the whole cluster — each etcd endpoint, the leader,
 * nodes, VMs that are not where they should be, and migrations in flight. */
#include "cmectl.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define PROBE_TIMEOUT_MS 2000

/* Probe one endpoint with a range on the prefix: its revision, or why it failed. */
static json_t *probe(const struct ctl *c, const char *url)
{
	struct etcd_cfg cfg = { .endpoints = url, .timeout_ms = PROBE_TIMEOUT_MS };
	struct etcd_range_req req = { .key = c->prefix, .limit = 1 };
	struct etcd_err err = { "" };
	struct etcd_kvs kvs = { 0 };
	struct etcd *e = NULL;
	int64_t rev = 0;
	int rc;

	if (c->tls_dir) {
		cfg.ca = c->ca;
		cfg.cert = c->cert;
		cfg.key = c->key;
	}
	rc = etcd_open(&cfg, &e, &err);
	if (!rc)
		rc = etcd_range(e, &req, &kvs, &err);
	if (!rc)
		rev = kvs.header_rev;
	etcd_kvs_free(&kvs);
	etcd_close(e);
	return json_pack("{s:s, s:b, s:I, s:s}", "url", url, "reachable", !rc, "revision",
			 (json_int_t)rev, "error", rc ? err.msg : "");
}

static json_t *probe_all(const struct ctl *c)
{
	char *list = strdup(c->endpoints), *save = NULL;
	json_t *arr = json_array();

	for (char *t = list ? strtok_r(list, ", ", &save) : NULL; t;
	     t = strtok_r(NULL, ", ", &save))
		json_array_append_new(arr, probe(c, t));
	free(list);
	return arr;
}

static json_t *names(const struct cl_view *v, const char *admin, bool down)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < v->nnodes; i++) {
		const struct cl_node_view *n = &v->nodes[i];

		if (down ? !n->alive : n->alive && !strcmp(n->admin.state, admin))
			json_array_append_new(arr, json_string(n->name));
	}
	return arr;
}

static json_t *nodes_obj(const struct cl_view *v)
{
	size_t up = 0;

	for (size_t i = 0; i < v->nnodes; i++)
		up += v->nodes[i].alive;
	return json_pack("{s:I, s:I, s:o, s:o, s:o}", "total", (json_int_t)v->nnodes, "up",
			 (json_int_t)up, "draining", names(v, "draining", false), "maintenance",
			 names(v, "maintenance", false), "down", names(v, NULL, true));
}

static json_t *vms_obj(const struct cl_view *v)
{
	json_t *bad = json_array();
	size_t total = 0, running = 0;

	for (size_t i = 0; i < v->nvms; i++) {
		const struct cl_vm_view *vv = &v->vms[i];
		const char *st = vv->has_status ? vv->status.state : "";

		total += vv->has_spec;
		running += vv->has_spec && !strcmp(st, "running");
		if (strcmp(st, "pending") && strcmp(st, "failed") && strcmp(st, "fenced"))
			continue;
		json_array_append_new(bad, json_pack("{s:s, s:s, s:s, s:s}", "name", vv->name,
						     "state", st, "node", vv->status.node, "error",
						     vv->status.error));
	}
	return json_pack("{s:I, s:I, s:o}", "total", (json_int_t)total, "running",
			 (json_int_t)running, "problems", bad);
}

static json_t *migs_arr(const struct cl_view *v)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < v->nvms; i++)
		if (v->vms[i].has_mig && cl_migration_pending(&v->vms[i].mig))
			json_array_append_new(arr, ctl_out_rec(cl_migration_json(&v->vms[i].mig)));
	return arr;
}

/* ---- the text screen ---------------------------------------------------------------- */

static void print_list(const char *label, json_t *arr, bool *first)
{
	size_t i;
	json_t *s;

	if (!json_array_size(arr))
		return;
	printf("; %s: ", label);
	json_array_foreach(arr, i, s) printf("%s%s", i ? ", " : "", json_string_value(s));
	*first = false;
}

static void text_endpoints(json_t *eps)
{
	size_t i;
	json_t *e;

	json_array_foreach(eps, i, e)
	{
		const char *url = json_string_value(json_object_get(e, "url"));

		printf("%-12s%s  ", i ? "" : "etcd:", url);
		if (json_is_true(json_object_get(e, "reachable")))
			printf("reachable (revision %" JSON_INTEGER_FORMAT ")\n",
			       json_integer_value(json_object_get(e, "revision")));
		else
			printf("%s\n", json_string_value(json_object_get(e, "error")));
	}
}

static void text_rest(json_t *o)
{
	json_t *nodes = json_object_get(o, "nodes"), *vms = json_object_get(o, "vms");
	json_t *leader = json_object_get(o, "leader"), *x;
	bool first = true;
	size_t i;

	printf("%-12s%s\n", "leader:", json_is_string(leader) ? json_string_value(leader) : "none");
	printf("%-12s%" JSON_INTEGER_FORMAT " up of %" JSON_INTEGER_FORMAT,
	       "nodes:", json_integer_value(json_object_get(nodes, "up")),
	       json_integer_value(json_object_get(nodes, "total")));
	print_list("draining", json_object_get(nodes, "draining"), &first);
	print_list("in maintenance", json_object_get(nodes, "maintenance"), &first);
	print_list("down", json_object_get(nodes, "down"), &first);
	printf("\n%-12s%" JSON_INTEGER_FORMAT " running of %" JSON_INTEGER_FORMAT "\n",
	       "vms:", json_integer_value(json_object_get(vms, "running")),
	       json_integer_value(json_object_get(vms, "total")));
	json_array_foreach(json_object_get(vms, "problems"), i, x)
		printf("%-12s%s %s%s%s: %s\n", "", json_string_value(json_object_get(x, "name")),
		       json_string_value(json_object_get(x, "state")),
		       *json_string_value(json_object_get(x, "node")) ? " on " : "",
		       json_string_value(json_object_get(x, "node")),
		       ctl_out_dash(json_string_value(json_object_get(x, "error"))));
	printf("%-12s%zu in flight\n",
	       "migrations:", json_array_size(json_object_get(o, "migrations")));
}

static void text_migs(const struct cl_view *v)
{
	char line[256];

	for (size_t i = 0; i < v->nvms; i++) {
		const struct cl_migration *m = &v->vms[i].mig;

		if (!v->vms[i].has_mig || !cl_migration_pending(m))
			continue;
		ctl_mig_progress(m, line, sizeof(line));
		printf("%-12s%s %s → %s: %s\n", "", m->vm, m->source, m->target, line);
	}
}

int ctl_cmd_status(struct ctl *c, int argc, char **argv)
{
	struct cl_view v;
	json_t *o, *eps;
	int rc = ctl_args_parse(c, "status", argc, argv, NULL, NULL, NULL);

	if (rc)
		return rc;
	eps = probe_all(c);
	if (!c->json)
		text_endpoints(eps);
	if ((rc = ctl_view(c, &v))) {
		if (c->json)
			ctl_out_json(json_pack("{s:o}", "endpoints", eps));
		else
			json_decref(eps);
		return rc;
	}
	o = json_pack("{s:o, s:I, s:o, s:o, s:o, s:o}", "endpoints", eps, "revision",
		      (json_int_t)v.rev, "leader",
		      v.leader[0] ? json_string(v.leader) : json_null(), "nodes", nodes_obj(&v),
		      "vms", vms_obj(&v), "migrations", migs_arr(&v));
	if (c->json) {
		ctl_out_json(o);
	} else {
		text_rest(o);
		text_migs(&v);
		json_decref(o);
	}
	cl_view_free(&v);
	return CTL_OK;
}

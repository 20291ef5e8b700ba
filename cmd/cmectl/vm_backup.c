/* cmectl vm backup NAME and cmectl backup schedule NAME: backups the cluster takes — the
 * node that owns the VM runs them through its VMM into a store of its configuration
 * (clusterd/backup.c) and reports in vms/<vm>/backup and the event log. */
#include "cmectl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* The VM's backup record as it stands (*has: whether there is one). */
static int read_backup(struct ctl *c, const char *vm, struct cl_backup *b, bool *has)
{
	struct etcd_err err = { "" };
	struct etcd_kv *kv = NULL;
	char key[CTL_KEY_MAX];

	memset(b, 0, sizeof(*b));
	*has = false;
	if (etcd_get(c->etcd, ctl_key(c, key, "vms", vm, "backup"), &kv, &err))
		return ctl_fail("reading the backup record of %s: %s", vm, err.msg);
	if (kv && cl_backup_parse((const char *)kv->val, kv->vlen, b, &err)) {
		etcd_kv_free(kv);
		return ctl_fail("the backup record of %s is malformed: %s", vm, err.msg);
	}
	if (kv) {
		b->mod_rev = kv->mod_rev;
		*has = true;
	}
	etcd_kv_free(kv);
	return CTL_OK;
}

static void summary(const struct cl_backup *b)
{
	json_t *st = json_loads(b->stats, 0, NULL);

	printf("backup %s done on %s: %.1f MiB new, %lld chunks already stored, pause %lld ms, "
	       "%lld ms in all\n",
	       b->backup[0] ? b->backup : "?", b->node,
	       (double)json_integer_value(json_object_get(st, "new_bytes")) / (1 << 20),
	       json_integer_value(json_object_get(st, "reused_chunks")),
	       json_integer_value(json_object_get(st, "pause_ms")),
	       json_integer_value(json_object_get(st, "total_ms")));
	json_decref(st);
}

/* Poll the record until request id ends, or the timeout. */
static int wait_backup(struct ctl *c, const char *vm, const char *id)
{
	uint64_t end = now_ns() + (uint64_t)c->timeout_s * 1000000000ull;
	struct cl_backup b;
	bool has;
	int rc;

	for (;;) {
		if ((rc = read_backup(c, vm, &b, &has)))
			return rc;
		if (!has || strcmp(b.id, id))
			return ctl_fail("vm %s: the backup record was replaced while waiting", vm);
		if (!strcmp(b.phase, "done")) {
			if (c->json)
				ctl_out_json(ctl_out_rec(cl_backup_json(&b)));
			else
				summary(&b);
			return CTL_OK;
		}
		if (!strcmp(b.phase, "failed"))
			return ctl_fail("vm %s: backup failed%s%s: %s", vm, b.node[0] ? " on " : "",
					b.node, b.error);
		if (now_ns() > end)
			return ctl_fail("vm %s: the backup is still %s after %u s (it goes on; "
					"cmectl vm show %s follows it)",
					vm, b.phase, c->timeout_s, vm);
		sleep_ms(200);
	}
}

/* CTL_OK when vm has a spec (a backup or schedule of no VM would wait for ever). */
static int vm_known(struct ctl *c, const char *vm)
{
	struct cl_vm_view *vv;
	struct cl_view v;
	int rc = ctl_view(c, &v);

	if (rc)
		return rc;
	vv = cl_view_vm(&v, vm);
	rc = vv && vv->has_spec ? CTL_OK : ctl_fail("unknown vm %s", vm);
	cl_view_free(&v);
	return rc;
}

int ctl_cmd_vm_backup(struct ctl *c, int argc, char **argv)
{
	const char *name = NULL, *store = "";
	bool no_wait = false, swapped = false, has;
	const struct flag flags[] = { { "--store", NULL, FL_STR, NULL, &store },
				      { "--no-wait", NULL, FL_BOOL, &no_wait, NULL },
				      { 0 } };
	struct cl_backup old, b = { 0 };
	struct etcd_err err = { "" };
	char key[CTL_KEY_MAX], *json;
	uint8_t r[8];
	int64_t rev;
	int rc = ctl_args_parse(c, "vm backup", argc, argv, flags, "NAME", &name);

	if (!rc && store[0] && !cl_name_ok(store))
		rc = ctl_usage("vm backup: --store %s: a store's name from the nodes' config",
			       store);
	if (rc || (rc = vm_known(c, name)) || (rc = read_backup(c, name, &old, &has)))
		return rc;
	if (has && cl_backup_active(&old))
		return ctl_fail("vm %s: a backup is %s already (on %s)", name, old.phase,
				old.node[0] ? old.node : "its owner");
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		return ctl_fail("no random bytes for a request id: %s", strerror(errno));
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(b.id + 2 * i, 3, "%02x", r[i]);
	snprintf(b.phase, sizeof(b.phase), "requested");
	snprintf(b.by, sizeof(b.by), "cmectl");
	snprintf(b.store, sizeof(b.store), "%s", store);
	b.requested_ms = b.updated_ms = wall_ms();
	json = cl_backup_json(&b);
	if (!json)
		return ctl_fail("out of memory");
	rc = ctl_put_if_mod(c->etcd, ctl_key(c, key, "vms", name, "backup"), has ? old.mod_rev : 0,
			    json, &swapped, &rev, &err);
	free(json);
	if (rc)
		return ctl_fail("vm %s: asking for a backup: %s", name, err.msg);
	if (!swapped)
		return ctl_fail("vm %s: another backup was asked for at the same time", name);
	if (no_wait) {
		printf("vm %s: backup %s requested\n", name, b.id);
		return CTL_OK;
	}
	return wait_backup(c, name, b.id);
}

/* ---- vm restore --------------------------------------------------------------------- */

/* --to: the stopped VM's owner record moves to node (epoch + 1, compare-and-swap). */
static int restore_place(struct ctl *c, const struct cl_view *v, const struct cl_vm_view *vv,
			 const char *node)
{
	struct cl_owner o = { .epoch = vv->has_owner ? vv->owner.epoch + 1 : 1 };
	struct etcd_err err = { "" };
	char key[CTL_KEY_MAX], *json;
	bool swapped = false;
	int64_t rev;
	int rc;

	if (!cl_view_node_alive(v, node))
		return ctl_fail("vm restore: node %s is not up", node);
	snprintf(o.node, sizeof(o.node), "%s", node);
	json = cl_owner_json(&o);
	if (!json)
		return ctl_fail("out of memory");
	rc = ctl_put_if_mod(c->etcd, ctl_key(c, key, "vms", vv->name, "owner"),
			    vv->has_owner ? vv->owner.mod_rev : 0, json, &swapped, &rev, &err);
	free(json);
	if (rc)
		return ctl_fail("vm restore: moving %s to %s: %s", vv->name, node, err.msg);
	return swapped ? CTL_OK : ctl_fail("vm %s changed meanwhile; try again", vv->name);
}

/* The restore record, written unless one was made since the read. */
static int restore_request(struct ctl *c, const struct cl_vm_view *vv, const char *from,
			   const char *store, struct cl_restore *r)
{
	struct etcd_err err = { "" };
	char key[CTL_KEY_MAX], *json;
	bool swapped = false;
	uint8_t rnd[8];
	int64_t rev;
	int rc;

	memset(r, 0, sizeof(*r));
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return ctl_fail("no random bytes for a request id: %s", strerror(errno));
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(r->id + 2 * i, 3, "%02x", rnd[i]);
	snprintf(r->phase, sizeof(r->phase), "requested");
	snprintf(r->from, sizeof(r->from), "%s", from);
	snprintf(r->store, sizeof(r->store), "%s", store);
	r->requested_ms = r->updated_ms = wall_ms();
	json = cl_restore_json(r);
	if (!json)
		return ctl_fail("out of memory");
	rc = ctl_put_if_mod(c->etcd, ctl_key(c, key, "vms", vv->name, "restore"),
			    vv->has_restore ? vv->restore.mod_rev : 0, json, &swapped, &rev, &err);
	free(json);
	if (rc)
		return ctl_fail("vm restore: %s", err.msg);
	return swapped ? CTL_OK
		       : ctl_fail("vm %s: another restore was asked for meanwhile", vv->name);
}

/* Until the restore record ends; a failed one stops the VM again (it was stopped). */
static int wait_restore(struct ctl *c, const char *vm, const char *id)
{
	uint64_t end = now_ns() + (uint64_t)c->timeout_s * 1000000000ull;
	struct etcd_err err = { "" };
	char key[CTL_KEY_MAX];

	for (;;) {
		struct etcd_kv *kv = NULL;
		struct cl_restore r = { 0 };
		int64_t rev;

		if (etcd_get(c->etcd, ctl_key(c, key, "vms", vm, "restore"), &kv, &err))
			return ctl_fail("reading the restore record of %s: %s", vm, err.msg);
		if (!kv || cl_restore_parse((const char *)kv->val, kv->vlen, &r, &err) ||
		    strcmp(r.id, id)) {
			etcd_kv_free(kv);
			return ctl_fail("vm %s: the restore record was replaced while waiting", vm);
		}
		etcd_kv_free(kv);
		if (!strcmp(r.phase, "done")) {
			printf("vm %s runs on %s, restored from backup %s\n", vm, r.node, r.from);
			return CTL_OK;
		}
		if (!strcmp(r.phase, "failed")) {
			if (ctl_vm_set_running(c, vm, false, &rev))
				fprintf(stderr, "cmectl: vm %s: could not stop it again\n", vm);
			return ctl_fail(
				"vm %s: restore from %s failed on %s: %s (the VM is stopped "
				"again)",
				vm, r.from, r.node, r.error);
		}
		if (now_ns() > end)
			return ctl_fail("vm %s: the restore is still %s after %u s", vm, r.phase,
					c->timeout_s);
		sleep_ms(200);
	}
}

int ctl_cmd_vm_restore(struct ctl *c, int argc, char **argv)
{
	const char *name = NULL, *from = NULL, *store = "", *to = NULL;
	bool no_wait = false;
	const struct flag flags[] = { { "--from", NULL, FL_STR, NULL, &from },
				      { "--store", NULL, FL_STR, NULL, &store },
				      { "--to", NULL, FL_STR, NULL, &to },
				      { "--no-wait", NULL, FL_BOOL, &no_wait, NULL },
				      { 0 } };
	struct cl_restore r;
	struct cl_vm_view *vv;
	struct cl_view v;
	int64_t rev;
	int rc = ctl_args_parse(c, "vm restore", argc, argv, flags, "NAME", &name);

	if (!rc && (!from || !from[0] || strlen(from) >= sizeof(r.from)))
		rc = ctl_usage("vm restore: --from VM[/ID] names the backup");
	if (!rc && store[0] && !cl_name_ok(store))
		rc = ctl_usage("vm restore: --store %s: a store's name from the nodes' config",
			       store);
	if (rc || (rc = ctl_view(c, &v)))
		return rc;
	vv = cl_view_vm(&v, name);
	if (!vv || !vv->has_spec)
		rc = ctl_fail("unknown vm %s (create it first: its image, memory and vCPUs)", name);
	else if (vv->spec.running || (vv->has_status && (!strcmp(vv->status.state, "running") ||
							 !strcmp(vv->status.state, "starting") ||
							 !strcmp(vv->status.state, "migrating"))))
		rc = ctl_fail("vm %s is not stopped: stop it first (cmectl vm stop %s); a restore "
			      "replaces what it runs",
			      name, name);
	else if (vv->has_restore &&
		 (!strcmp(vv->restore.phase, "requested") || !strcmp(vv->restore.phase, "running")))
		rc = ctl_fail("vm %s: a restore is %s already", name, vv->restore.phase);
	if (!rc && to)
		rc = restore_place(c, &v, vv, to);
	if (!rc)
		rc = restore_request(c, vv, from, store, &r);
	cl_view_free(&v);
	if (!rc)
		rc = ctl_vm_set_running(c, name, true, &rev);
	if (rc || no_wait) {
		if (!rc)
			printf("vm %s: restore from %s requested\n", name, from);
		return rc;
	}
	return wait_restore(c, name, r.id);
}

/* cmectl backup schedule NAME --every D --keep N [--store S] | --off */
int ctl_cmd_backup_schedule(struct ctl *c, int argc, char **argv)
{
	const char *name = NULL, *every = NULL, *keep_s = NULL, *store = "", *age = NULL;
	bool off = false;
	const struct flag flags[] = { { "--every", NULL, FL_STR, NULL, &every },
				      { "--keep", NULL, FL_STR, NULL, &keep_s },
				      { "--max-age", NULL, FL_STR, NULL, &age },
				      { "--store", NULL, FL_STR, NULL, &store },
				      { "--off", NULL, FL_BOOL, &off, NULL },
				      { 0 } };
	struct cl_schedule s = { .set_ms = wall_ms() };
	struct etcd_err err = { "" };
	char key[CTL_KEY_MAX], *json;
	uint64_t keep = 0;
	int rc = ctl_args_parse(c, "backup schedule", argc, argv, flags, "NAME", &name);

	if (!rc && !off && (!every || parse_duration_ms(every, &s.every_ms) || s.every_ms < 1000))
		rc = ctl_usage("backup schedule: --every DURATION (at least 1s: 30s, 15m, 6h, 1d) "
			       "or --off");
	if (!rc && keep_s)
		rc = ctl_args_uint("backup schedule", "--keep", keep_s, 1, 100000, &keep);
	if (!rc && age && (parse_duration_ms(age, &s.max_age_ms) || !s.max_age_ms))
		rc = ctl_usage("backup schedule: --max-age %s: a duration such as 30d", age);
	if (!rc && store[0] && !cl_name_ok(store))
		rc = ctl_usage("backup schedule: --store %s: a store's name from the nodes' config",
			       store);
	if (rc || (rc = vm_known(c, name)))
		return rc;
	ctl_key(c, key, "vms", name, "schedule");
	if (off) {
		if (etcd_delete(c->etcd, key, false, NULL, &err))
			return ctl_fail("vm %s: removing its schedule: %s", name, err.msg);
		printf("vm %s: no scheduled backups\n", name);
		return CTL_OK;
	}
	s.keep = (uint32_t)keep;
	snprintf(s.store, sizeof(s.store), "%s", store);
	json = cl_schedule_json(&s);
	if (!json)
		return ctl_fail("out of memory");
	rc = etcd_put(c->etcd, key, json, strlen(json), 0, NULL, &err);
	free(json);
	if (rc)
		return ctl_fail("vm %s: writing its schedule: %s", name, err.msg);
	printf("vm %s: a backup every %s%s%s%s%s, into store %s, by the node that runs it\n", name,
	       every, keep ? ", keeping the newest " : "", keep ? keep_s : "",
	       age ? ", none older than " : "", age ? age : "",
	       store[0] ? store : "(the nodes' first)");
	return CTL_OK;
}

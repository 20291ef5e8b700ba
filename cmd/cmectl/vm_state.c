/* cmectl vm start | stop | balloon | delete: change the desired state by compare-and-swap
 * on the spec's mod_revision, then (start, stop, delete) wait for the VM's status to
 * follow. */
#include "cmectl.h"

#include <stdlib.h>
#include <string.h>

#define CAS_TRIES 3

/* A failed status for the owner's epoch: nodes do not retry it until the spec changes. */
static bool failed_here(const struct cl_vm_view *vv)
{
	return vv->has_status && vv->has_owner && !strcmp(vv->status.state, "failed") &&
	       vv->status.epoch == vv->owner.epoch;
}

/* How a command changes a spec: change vv->spec and return CTL_OK to write it, SAME when
 * it already says so (nothing written), or CTL_FAIL with the line printed. */
#define SAME (-1)
typedef int (*spec_change_fn)(const char *vm, struct cl_vm_view *vv, const void *arg);

/* Change the spec of vm by CAS on its revision, retried when someone else changed it
 * meanwhile. *rev gets the revision of the write, 0 when the spec already said so. */
static int change_spec(struct ctl *c, const char *vm, const char *what, spec_change_fn fn,
		       const void *arg, int64_t *rev)
{
	struct etcd_err err = { "" };
	char key[CTL_KEY_MAX];
	int rc = CTL_FAIL;

	for (int t = 0; t < CAS_TRIES; t++) {
		struct cl_vm_view *vv;
		struct cl_view v;
		bool swapped = false;
		char *val;

		if (ctl_view(c, &v))
			return CTL_FAIL;
		*rev = 0;
		vv = cl_view_vm(&v, vm);
		rc = !vv || !vv->has_spec ? ctl_fail("unknown vm %s", vm) : fn(vm, vv, arg);
		if (rc) {
			cl_view_free(&v);
			return rc == SAME ? CTL_OK : rc;
		}
		val = cl_spec_json(&vv->spec);
		rc = !val ? ctl_fail("out of memory")
		     : etcd_cas_mod(c->etcd, ctl_key(c, key, "vms", vm, "spec"), vv->spec_rev, val,
				    strlen(val), 0, &swapped, rev, &err)
			     ? ctl_fail("%s vm %s: %s", what, vm, err.msg)
			     : CTL_OK;
		free(val);
		cl_view_free(&v);
		if (rc || swapped)
			return rc;
	}
	return ctl_fail("vm %s keeps being changed concurrently; try again", vm);
}

/* spec.running = *arg; a failed VM asked to run again is told how to retry it. */
static int change_running(const char *vm, struct cl_vm_view *vv, const void *arg)
{
	bool run = *(const bool *)arg;

	if (vv->spec.running != run) {
		vv->spec.running = run;
		return CTL_OK;
	}
	if (run && failed_here(vv))
		return ctl_fail("vm %s failed on %s: %s; it is not restarted by itself: run "
				"cmectl vm stop %s, then vm start %s",
				vm, vv->status.node, vv->status.error, vm, vm);
	return SAME;
}

/* Set spec.running = run. *rev as change_spec's (0: a failed status is already the
 * answer). */
int ctl_vm_set_running(struct ctl *c, const char *vm, bool run, int64_t *rev)
{
	return change_spec(c, vm, run ? "starting" : "stopping", change_running, &run, rev);
}

static int start_stop(struct ctl *c, const char *cmd, bool run, int argc, char **argv)
{
	const char *name = NULL;
	bool no_wait = false;
	const struct flag flags[] = { { "--no-wait", NULL, FL_BOOL, &no_wait, NULL }, { 0 } };
	enum vm_want want = run ? WANT_RUNNING : WANT_STOPPED;
	struct cl_status st = { 0 };
	int64_t rev = 0;
	int rc = ctl_args_parse(c, cmd, argc, argv, flags, "NAME", &name);

	if (rc || (rc = ctl_vm_set_running(c, name, run, &rev)))
		return rc;
	if (rev)
		ctl_event(c, name, run ? "start" : "stop", "vm %s %s requested by cmectl", name,
			  run ? "start" : "stop");
	if (no_wait) {
		if (c->json)
			ctl_out_json(json_pack("{s:s, s:s, s:n}", "vm", name, "result", "requested",
					       "status"));
		else
			printf("vm %s: %s requested\n", name, run ? "start" : "stop");
		return CTL_OK;
	}
	rc = ctl_wait_vm(c, name, want, rev, &st);
	if (!rc)
		ctl_wait_vm_report(c, name, want, &st);
	return rc;
}

int ctl_cmd_vm_start(struct ctl *c, int argc, char **argv)
{
	return start_stop(c, "vm start", true, argc, argv);
}

int ctl_cmd_vm_stop(struct ctl *c, int argc, char **argv)
{
	return start_stop(c, "vm stop", false, argc, argv);
}

/* ---- vm balloon --------------------------------------------------------------------- */

/* spec.balloon_mb = *arg, for a VM created with a balloon, at most its memory. */
static int change_balloon(const char *vm, struct cl_vm_view *vv, const void *arg)
{
	uint64_t mb = *(const uint64_t *)arg;

	if (!vv->spec.balloon)
		return ctl_fail("vm %s has no balloon (create it with cmectl vm create --balloon)",
				vm);
	if (mb > vv->spec.mem_mb)
		return ctl_fail("vm %s: balloon target %llu MiB is more than its %llu MiB", vm,
				(unsigned long long)mb, (unsigned long long)vv->spec.mem_mb);
	if (vv->spec.balloon_mb == mb)
		return SAME;
	vv->spec.balloon_mb = mb;
	return CTL_OK;
}

/* The target goes into the spec; the node that owns the VM gives it to its VMM (and again
 * to every new VMM of the VM: after a restart, a migration, a restart of the daemon). */
int ctl_cmd_vm_balloon(struct ctl *c, int argc, char **argv)
{
	static const char *const names[] = { "NAME", "MB" };
	const char *pos[2] = { NULL, NULL };
	uint64_t mb;
	int64_t rev = 0;
	int rc = ctl_args_parse_n(c, "vm balloon", argc, argv, NULL, names, pos, 2);

	if (rc || (rc = ctl_args_uint("vm balloon", "MB", pos[1], 0, UINT32_MAX, &mb)) ||
	    (rc = change_spec(c, pos[0], "ballooning", change_balloon, &mb, &rev)))
		return rc;
	if (rev)
		ctl_event(c, pos[0], "balloon", "vm %s balloon target %llu MiB set by cmectl",
			  pos[0], (unsigned long long)mb);
	if (c->json)
		ctl_out_json(json_pack("{s:s, s:I, s:s}", "vm", pos[0], "target_mb", (json_int_t)mb,
				       "result", rev ? "requested" : "unchanged"));
	else
		printf("vm %s: balloon target %llu MiB %s; cmectl vm show %s follows its actual\n",
		       pos[0], (unsigned long long)mb, rev ? "requested" : "unchanged", pos[0]);
	return CTL_OK;
}

/* ---- vm delete ---------------------------------------------------------------------- */

/* One txn: if the spec is still what we read, delete spec, owner and migration record.
 * The status record stays: the node that ran the VM deletes it once its VMM stopped. */
static int delete_records(struct ctl *c, const struct cl_vm_view *vv, bool *deleted)
{
	char kspec[CTL_KEY_MAX], kowner[CTL_KEY_MAX], kmig[CTL_KEY_MAX];
	struct etcd_cmp cmp = { .key = ctl_key(c, kspec, "vms", vv->name, "spec"),
				.target = ETCD_CMP_MOD,
				.result = ETCD_CMP_EQUAL,
				.num = vv->spec_rev };
	struct etcd_op ops[] = {
		{ .type = ETCD_OP_DELETE, .key = kspec },
		{ .type = ETCD_OP_DELETE, .key = ctl_key(c, kowner, "vms", vv->name, "owner") },
		{ .type = ETCD_OP_DELETE, .key = ctl_key(c, kmig, "migrations", vv->name, NULL) },
	};
	struct etcd_txn t = { &cmp, 1, ops, ARRAY_SIZE(ops), NULL, 0 };
	struct etcd_txn_resp r;
	struct etcd_err err = { "" };

	if (etcd_txn(c->etcd, &t, &r, &err))
		return ctl_fail("deleting vm %s: %s", vv->name, err.msg);
	*deleted = r.succeeded;
	etcd_txn_resp_free(&r);
	return CTL_OK;
}

/* Checks, then the delete txn (retried when the spec changed meanwhile). */
static int delete_vm(struct ctl *c, const char *vm)
{
	bool deleted = false;
	int rc = CTL_OK;

	for (int t = 0; t < CAS_TRIES && !rc && !deleted; t++) {
		struct cl_view v;
		struct cl_vm_view *vv;

		if (ctl_view(c, &v))
			return CTL_FAIL;
		vv = cl_view_vm(&v, vm);
		if (!vv || !ctl_vm_exists(vv))
			rc = ctl_fail("unknown vm %s", vm);
		else if (!vv->has_spec)
			deleted = true; /* deleted before: wait for its VMM again */
		else if (vv->has_mig && cl_migration_pending(&vv->mig))
			rc = ctl_fail("migration of %s is running (phase %s to %s); wait for it",
				      vm, vv->mig.phase, vv->mig.target);
		else
			rc = delete_records(c, vv, &deleted);
		cl_view_free(&v);
	}
	if (!rc && !deleted)
		rc = ctl_fail("vm %s keeps being changed concurrently; try again", vm);
	return rc;
}

int ctl_cmd_vm_delete(struct ctl *c, int argc, char **argv)
{
	const char *name = NULL;
	bool no_wait = false;
	const struct flag flags[] = { { "--no-wait", NULL, FL_BOOL, &no_wait, NULL }, { 0 } };
	struct cl_status st = { 0 };
	int rc = ctl_args_parse(c, "vm delete", argc, argv, flags, "NAME", &name);

	if (rc || (rc = delete_vm(c, name)))
		return rc;
	ctl_event(c, name, "deleted", "vm %s deleted by cmectl", name);
	if (no_wait) {
		if (c->json)
			ctl_out_json(json_pack("{s:s, s:s, s:n}", "vm", name, "result", "deleted",
					       "status"));
		else
			printf("vm %s deleted; its VMM stops in the background\n", name);
		return CTL_OK;
	}
	rc = ctl_wait_vm(c, name, WANT_GONE, 0, &st);
	if (!rc)
		ctl_wait_vm_report(c, name, WANT_GONE, &st);
	return rc;
}

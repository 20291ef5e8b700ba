/* cmectl vm start | stop | delete: change the desired state by compare-and-swap on the
 * spec's mod_revision, then wait for the VM's status to follow. */
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

/* Set spec.running = run (CAS on the spec's revision, retried when someone else changed
 * the spec meanwhile). *rev gets the revision of the write, 0 when the spec already said
 * so (then a failed status is already the answer). */
static int set_running(struct ctl *c, const char *vm, bool run, int64_t *rev)
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
		if (!vv || !vv->has_spec) {
			cl_view_free(&v);
			return ctl_fail("unknown vm %s", vm);
		}
		if (vv->spec.running == run) {
			rc = run && failed_here(vv)
				     ? ctl_fail("vm %s failed on %s: %s; it is not "
						"restarted by itself: run cmectl "
						"vm stop %s, then vm start %s",
						vm, vv->status.node, vv->status.error, vm, vm)
				     : CTL_OK;
			cl_view_free(&v);
			return rc;
		}
		vv->spec.running = run;
		val = cl_spec_json(&vv->spec);
		rc = !val ? ctl_fail("out of memory")
		     : etcd_cas_mod(c->etcd, ctl_key(c, key, "vms", vm, "spec"), vv->spec_rev, val,
				    strlen(val), 0, &swapped, rev, &err)
			     ? ctl_fail("%s vm %s: %s", run ? "starting" : "stopping", vm, err.msg)
			     : CTL_OK;
		free(val);
		cl_view_free(&v);
		if (rc || swapped)
			return rc;
	}
	return ctl_fail("vm %s keeps being changed concurrently; try again", vm);
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

	if (rc || (rc = set_running(c, name, run, &rev)))
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
		else if (vv->has_mig && cl_migration_active(&vv->mig))
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

/* VMs started from a backup: cmectl vm restore asks (vms/<vm>/restore), the node that owns
 * the VM starts its VMM with `cme-vmm restore --store` instead of booting it, and says how
 * that went — the VM runs (done, event vm-restored) or its VMM ended first (failed, with
 * the VMM's reason). */
#include "cd_priv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUB "restore"

static int restore_cas(struct cd *cd, const char *vm, struct cl_restore *r)
{
	struct etcd_err err = { "" };
	char key[256];
	int rc;

	r->updated_ms = wall_ms();
	cd_key(cd, key, sizeof(key), "vms", vm, "restore");
	rc = cd_cas_json(cd, key, &r->mod_rev, cl_restore_json(r), &err);
	if (rc < 0)
		log_warn(SUB, "vm=%s restore=%s: update to %s: %s", vm, r->id, r->phase, err.msg);
	return rc;
}

static void restore_fail(struct cd *cd, const char *vm, struct cl_restore *r, const char *why)
{
	snprintf(r->phase, sizeof(r->phase), "failed");
	snprintf(r->node, sizeof(r->node), "%s", cd->cfg->node);
	snprintf(r->error, sizeof(r->error), "%s", why);
	if (restore_cas(cd, vm, r) == 1)
		cd_event(cd, vm, "restore-failed", "restoring %s from %s on %s failed: %s", vm,
			 r->from, cd->cfg->node, why);
}

bool cd_restore_start(struct cd *cd, const struct cl_vm_view *vv, struct lvm *l,
		      struct cl_status *s)
{
	struct cl_restore r = vv->restore;
	char dir[CL_PATH_MAX];

	if (!vv->has_restore || strcmp(r.phase, "requested"))
		return false;
	if (cd_config_store(cd->cfg, r.store, dir, sizeof(dir)))
		snprintf(s->error, sizeof(s->error), "node %s has no backup store %s%s%s",
			 cd->cfg->node, r.store[0] ? "\"" : "", r.store[0] ? r.store : "at all",
			 r.store[0] ? "\"" : "");
	else if (!cd->cfg->backup_key[0])
		snprintf(s->error, sizeof(s->error), "node %s has no backup_key", cd->cfg->node);
	else {
		/* Known before the start: meta.json keeps it for a restarted daemon. */
		snprintf(l->restore_id, sizeof(l->restore_id), "%s", r.id);
		if (!cd_lvm_start_restore(cd, l, &vv->spec, vv->owner.epoch, dir, r.from, s->error,
					  sizeof(s->error))) {
			snprintf(r.phase, sizeof(r.phase), "running");
			snprintf(r.node, sizeof(r.node), "%s", cd->cfg->node);
			if (restore_cas(cd, vv->name, &r) == 1)
				log_info(SUB, "vm=%s restoring from %s in %s", vv->name, r.from,
					 dir);
			return true;
		}
		l->restore_id[0] = 0;
	}
	snprintf(s->state, sizeof(s->state), "failed");
	restore_fail(cd, vv->name, &r, s->error);
	return true;
}

bool cd_restore_ended(struct cd *cd, const struct cl_vm_view *vv, struct lvm *l)
{
	struct cl_restore r = vv->restore;
	char why[512];

	if (!vv->has_restore || strcmp(r.phase, "running") || strcmp(r.id, l->restore_id))
		return false;
	cd_lvm_exit_why(l, why, sizeof(why));
	if (!why[0])
		snprintf(why, sizeof(why),
			 "its VMM ended (status %d) before the guest ran; see %.300s", l->exit_code,
			 l->dir);
	restore_fail(cd, vv->name, &r, why);
	l->restore_id[0] = 0;
	return true;
}

void cd_restore_running(struct cd *cd, const struct cl_vm_view *vv, struct lvm *l)
{
	struct cl_restore r = vv->restore;

	if (!vv->has_restore || strcmp(r.phase, "running") || strcmp(r.id, l->restore_id))
		return;
	snprintf(r.phase, sizeof(r.phase), "done");
	if (restore_cas(cd, vv->name, &r) == 1)
		cd_event(cd, vv->name, "vm-restored", "%s runs again on %s, from backup %s",
			 vv->name, cd->cfg->node, r.from);
}

void cd_restore_orphaned(struct cd *cd, const struct cl_view *v, const struct cl_vm_view *vv,
			 const struct lvm *l)
{
	struct cl_restore r = vv->restore;
	char why[200];

	if (!vv->has_restore || strcmp(r.phase, "running"))
		return;
	if (!strcmp(r.node, cd->cfg->node) && (!l || strcmp(l->restore_id, r.id)))
		snprintf(why, sizeof(why),
			 "no VMM of this restore runs on %s any more (its daemon restarted, or the "
			 "VM was started otherwise meanwhile)",
			 cd->cfg->node);
	else if (cd->leader && !cl_view_node_alive(v, r.node))
		snprintf(why, sizeof(why), "node %s was lost during the restore", r.node);
	else
		return;
	restore_fail(cd, vv->name, &r, why);
}

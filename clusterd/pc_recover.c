/* A post-copy that broke after the switch. The owner record names the target (the commit
 * moved it), the guest ran there, and now its memory is split: the target's VMM ended
 * (status 74) or its node is lost, and the source holds the guest paused with its whole
 * state as of the switch. The one consistent copy is the source's, so the cluster takes
 * the VM back there:
 *   target: its VMM's status 74 restarts nothing while the source node is up (status
 *           "postcopy-broken"); with the source node lost too, the memory is gone and the
 *           VM restarts per its policy (the record fails with that reason);
 *   source: once the target's status says its VMM ended, moves the owner record back to
 *           itself (epoch + 1) and the migration record to "taken-back" in one
 *           transaction that compares both, then resumes its copy — or, for a VM with a
 *           writable disk the target may have written since the switch, stops the copy
 *           and starts the VM afresh (its memory would not match its disk);
 *   leader: a lost target is handled like any lost node, except that its VM goes back to
 *           the source (after fencing) rather than to where placement would put it.
 * At most one of these can move the owner record (each compares its mod_revision), and no
 * copy runs unless the record names its node. */
#include "cd_priv.h"

#include <stdio.h>
#include <string.h>

#define SUB "migration"

static bool in_postcopy(const struct cl_migration *m)
{
	return !strcmp(m->phase, "postcopy") || !strcmp(m->phase, "postcopy-broken");
}

bool cd_pc_source_holds(const struct cl_view *v, const struct cl_vm_view *vv)
{
	return vv->has_mig && !vv->bad && in_postcopy(&vv->mig) && vv->has_owner &&
	       !strcmp(vv->owner.node, vv->mig.target) && cl_view_node_alive(v, vv->mig.source);
}

/* The target's VMM is known to have ended: its status, at the owner's epoch, says so. */
static bool target_ended(const struct cl_vm_view *vv)
{
	const struct cl_status *st = &vv->status;

	return vv->has_status && !strcmp(st->node, vv->mig.target) &&
	       st->epoch == vv->owner.epoch &&
	       (!strcmp(st->state, "postcopy-broken") || !strcmp(st->state, "failed") ||
		!strcmp(st->state, "stopped"));
}

static bool disk_writable(const struct cl_spec *s)
{
	return s->disk[0] && !strstr(s->disk, ",ro");
}

static void record_end(struct cd *cd, const struct cl_vm_view *vv, const char *how)
{
	struct cl_migration m = vv->mig;

	snprintf(m.phase, sizeof(m.phase), "failed");
	snprintf(m.error, sizeof(m.error), "post-copy broke after the switch to %s (%.90s); %s",
		 m.target, vv->mig.error[0] ? vv->mig.error : "the target's VMM ended", how);
	m.cluster_ms = cd_ms_between(wall_ms(), m.requested_ms);
	if (cd_mig_cas(cd, &m) == 1)
		cd_event(cd, vv->name, "migrate-recovered", "%s", m.error);
}

/* The owner record names us again: run our copy from the switch, or afresh. */
static void take_back(struct cd *cd, const struct cl_vm_view *vv, struct lvm *l)
{
	json_t *force;
	char how[400];
	int rc = -1;

	if (l && cd_lvm_alive(l) && !disk_writable(&vv->spec)) {
		force = json_pack("{s:b}", "force", 1);
		rc = cd_lvm_request(l, "resume", force, NULL);
		json_decref(force);
		if (rc) {
			log_warn(SUB, "vm=%s: the paused source copy did not resume (%d)", vv->name,
				 rc);
			return; /* next round again */
		}
		l->epoch = vv->owner.epoch;
		cd_lvm_save_meta(l);
		snprintf(how, sizeof(how),
			 "the guest resumed on %s from its state at the switch (what it did on %s "
			 "since is lost)",
			 cd->cfg->node, vv->mig.target);
	} else {
		if (l) {
			cd_lvm_stop(l, 2000);
			cd_lvm_remove(cd, l);
		}
		snprintf(how, sizeof(how), "the guest starts afresh on %s: %s", cd->cfg->node,
			 l ? "its disk may hold writes made on the target since the switch, which "
			     "its memory at the switch does not know"
			   : "its copy here was gone");
	}
	record_end(cd, vv, how);
}

void cd_pc_recover(struct cd *cd, const struct cl_vm_view *vv)
{
	struct lvm *l = cd_lvm_find(cd, vv->name);
	uint64_t epoch = vv->owner.epoch;

	if (l && l->src)
		return;				    /* the worker still reports */
	if (!strcmp(vv->mig.phase, "taken-back")) { /* our move, or the leader's */
		if (cd_owned_here(cd, vv))
			take_back(cd, vv, l);
		return;
	}
	if (strcmp(vv->owner.node, vv->mig.target)) {
		if (l) {
			cd_lvm_stop(l, 2000);
			cd_lvm_remove(cd, l);
		}
		record_end(cd, vv,
			   "the VM was started elsewhere meanwhile; the source copy was "
			   "stopped");
		return;
	}
	if (!target_ended(vv))
		return; /* its VMM may still run there: wait (a lost target: the leader) */
	if (cd_owner_take_back(cd, vv, NULL) == 1) {
		cd_event(cd, vv->name, "migrate-take-back",
			 "post-copy to %s broke and its VMM ended: owner of %s moved back to %s "
			 "(epoch %llu)",
			 vv->mig.target, vv->name, cd->cfg->node, (unsigned long long)epoch + 1);
		cd->fast_tick = true; /* the next round's read names us: take_back */
	}
}

bool cd_pc_target_waits(struct cd *cd, const struct cl_view *v, const struct cl_vm_view *vv)
{
	if (cd_pc_source_holds(v, vv))
		return true;
	if (!vv->has_mig || vv->bad || !in_postcopy(&vv->mig) ||
	    strcmp(vv->mig.target, cd->cfg->node))
		return false;
	/* The source node is lost with the pages it held. Fail the record first and restart
	 * only on a later read that shows it failed: a source that was only late and took
	 * the VM back meanwhile changed the record, so this fails and nothing restarts. */
	cd_mig_fail(cd, vv,
		    "post-copy broke and the source node %s is lost with the pages it held: the "
		    "guest's memory is gone; it restarts on %s per its policy",
		    vv->mig.source, cd->cfg->node);
	return true;
}

int cd_pc_lost_target(struct cd *cd, const struct cl_view *v, const struct cl_vm_view *vv,
		      char *why, size_t len)
{
	if (!cd_pc_source_holds(v, vv) || cl_view_node_alive(v, vv->owner.node))
		return 0;
	if (!cd_quorum_fenced(cd, v, vv->owner.node, why, len))
		return 1; /* held until fenced */
	if (cd_owner_take_back(cd, vv, vv->owner.node) == 1)
		cd_event(cd, vv->name, "vm-ha-restart",
			 "node %s lost during post-copy: vm %s goes back to %s, which holds it "
			 "as of the switch (epoch %llu)",
			 vv->owner.node, vv->name, vv->mig.source,
			 (unsigned long long)vv->owner.epoch + 1);
	return 2;
}

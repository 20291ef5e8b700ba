/* The main loop's side of migrations: each tick, from the consistent read, the target
 * prepares and takes over, the source starts (or resumes) its worker, and stale records
 * are failed with a reason. See migration.c for the protocol. */
#include "cd_priv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define SUB		"migration"
#define COMMITTED_QUIET 10000 /* ms a committed record may wait for the source's "done" */
#define PORT_WAIT_MS	10000 /* an incoming VMM must listen within this */

static bool is_me(struct cd *cd, const char *node)
{
	return !strcmp(node, cd->cfg->node);
}

static bool postcopy_phase(const struct cl_migration *m)
{
	return !strcmp(m->phase, "postcopy") || !strcmp(m->phase, "postcopy-broken") ||
	       !strcmp(m->phase, "taken-back");
}

bool cd_migration_owns(struct cd *cd, const struct cl_view *v, const struct lvm *l)
{
	const struct cl_vm_view *vv = cl_view_vm(v, l->name);

	if (l->src)
		return true;
	if (vv && vv->has_mig && !vv->bad && postcopy_phase(&vv->mig) &&
	    is_me(cd, vv->mig.source) && l->role == LVM_RUN)
		return true; /* the guest's pages, or its state as of the switch, are here */
	if (l->role != LVM_INCOMING || !vv || !vv->has_mig || strcmp(vv->mig.id, l->mig_id) ||
	    !is_me(cd, vv->mig.target))
		return false;
	return cl_migration_active(&vv->mig) || cd_owned_here(cd, vv);
}

/* ---- target ------------------------------------------------------------------------- */

static void dest_prepare(struct cd *cd, const struct cl_vm_view *vv, struct lvm *l)
{
	char why[256] = "";

	if (l && (l->src || (l->role == LVM_RUN && cd_lvm_alive(l)))) {
		cd_mig_fail(cd, vv, "vm %s already runs on target %s", vv->name, cd->cfg->node);
		return;
	}
	if (l) {
		cd_lvm_stop(l, 0);
		cd_lvm_remove(cd, l);
	}
	if (!vv->has_spec) {
		cd_mig_fail(cd, vv, "vm %s has no spec any more", vv->name);
		return;
	}
	l = cd_lvm_add(cd, vv->name);
	if (!l || cd_lvm_start_incoming(cd, l, &vv->spec, vv->owner.epoch + 1, vv->mig.id,
					vv->mig.source, why, sizeof(why))) {
		if (l)
			cd_lvm_remove(cd, l);
		cd_mig_fail(cd, vv, "%s", why[0] ? why : "cannot prepare the target");
		return;
	}
	cd->fast_tick = true; /* its port comes in a moment: dest_listening */
}

/* The incoming VMM started for a "requested" migration: once it listens, say "ready" with
 * its address. Polled each round (50 ms apart meanwhile), so the main loop never waits. */
static void dest_listening(struct cd *cd, const struct cl_vm_view *vv, struct lvm *l)
{
	struct cl_migration m = vv->mig;
	uint16_t port = 0;
	int rc = cd_lvm_incoming_port(l, &port);

	if (rc == -EAGAIN && cd_seen_ms(cd, m.id, "listening") < PORT_WAIT_MS) {
		cd->fast_tick = true;
		return;
	}
	if (rc) {
		cd_mig_fail(cd, vv, "incoming VMM on %s: %s (see %s/vmm.log)", cd->cfg->node,
			    rc == -ECHILD ? "exited" : "did not listen in time", l->dir);
		cd_lvm_stop(l, 0);
		cd_lvm_remove(cd, l);
		return;
	}
	snprintf(m.dest_addr, sizeof(m.dest_addr), "%s:%u", cd->cfg->address, port);
	snprintf(m.phase, sizeof(m.phase), "ready");
	if (cd_mig_cas(cd, &m) != 1) {
		cd_lvm_stop(l, 0);
		cd_lvm_remove(cd, l);
		return;
	}
	log_info(SUB, "vm=%s mig=%s: target listening on %s", vv->name, m.id, m.dest_addr);
}

/* The phases a migration's commit writes (with the owner move) and those after it. */
static bool commit_phase(const struct cl_migration *m)
{
	return !strcmp(m->phase, "committed") || !strcmp(m->phase, "done") || postcopy_phase(m);
}

/* The owner record names us: run the guest (idempotent) and take it over as ours. */
static void dest_take_over(struct cd *cd, const struct cl_vm_view *vv, struct lvm *l)
{
	json_t *r = NULL;
	const char *state;

	if (!cd_lvm_alive(l)) {
		l->role = LVM_RUN; /* lost after the commit: reconcile restarts it per policy */
		return;
	}
	if (cd_lvm_request(l, "incoming-commit", NULL, NULL) == -EREMOTEIO) {
		log_debug(SUB, "vm=%s: incoming-commit refused", vv->name);
		if (!commit_phase(&vv->mig)) {
			/* Owned here by a restart (its source was lost before any commit), and
			 * what arrived here is not the whole guest: it never runs. The VM
			 * starts afresh here instead (reconcile, next round). */
			cd_event(cd, vv->name, "migrate-incomplete",
				 "vm %s is owned by %s again without a commit of migration %s, "
				 "whose incoming copy here is incomplete: stopped; the VM starts "
				 "afresh",
				 vv->name, cd->cfg->node, vv->mig.id);
			cd_lvm_stop(l, 0);
			cd_lvm_remove(cd, l);
			return;
		}
	}
	if (cd_lvm_request(l, "status", NULL, &r) == 0) {
		state = json_string_value(json_object_get(r, "state"));
		if (state && strcmp(state, "incoming")) {
			struct cl_status st = { .pid = (int)l->pid, .epoch = vv->owner.epoch };

			l->role = LVM_RUN;
			l->epoch = vv->owner.epoch;
			l->running_seen = true;
			cd_lvm_save_meta(l);
			/* Say so at once: the source writes "done" only once it reads this. */
			snprintf(st.node, sizeof(st.node), "%s", cd->cfg->node);
			snprintf(st.state, sizeof(st.state), "running");
			cd_lvm_console_path(l, st.console, sizeof(st.console));
			cd_status_ensure(cd, vv, &st);
			cd_event(cd, vv->name, "vm-running", "vm %s runs on %s (epoch %llu)",
				 vv->name, cd->cfg->node, (unsigned long long)vv->owner.epoch);
		}
	}
	json_decref(r);
}

/* Write "done" for a committed migration whose source never did. */
static void mig_done_late(struct cd *cd, const struct cl_vm_view *vv, const char *why)
{
	struct cl_migration m = vv->mig;

	snprintf(m.phase, sizeof(m.phase), "done");
	snprintf(m.error, sizeof(m.error), "%s", why);
	m.cluster_ms = cd_ms_between(wall_ms(), m.requested_ms);
	if (cd_mig_cas(cd, &m) != 1)
		log_debug(SUB, "vm=%s: done already written", vv->name);
}

/* The source's node is gone (its lease expired) while nothing was committed: its daemon
 * will never commit; fail the record so the incoming VMM goes. (A source VMM that still
 * runs waits paused for a decision; its daemon, back, resumes it — the owner never moved.) */
static bool source_gone(struct cd *cd, const struct cl_view *v, const struct cl_migration *m)
{
	if (cl_view_node_alive(v, m->source) ||
	    (strcmp(m->phase, "ready") && strcmp(m->phase, "streaming")))
		return false;
	return cd_seen_ms(cd, m->id, "source-gone") > cd->cfg->lease_ttl_s * 1000ULL;
}

static void dest_step(struct cd *cd, const struct cl_view *v, const struct cl_vm_view *vv)
{
	struct lvm *l = cd_lvm_find(cd, vv->name);
	const struct cl_migration *m = &vv->mig;
	bool ours = l && !strcmp(l->mig_id, m->id), mine = ours && l->role == LVM_INCOMING;

	if (!strcmp(m->phase, "requested")) {
		if (!mine)
			dest_prepare(cd, vv, l);
		else
			dest_listening(cd, vv, l);
	} else if (mine && cd_owned_here(cd, vv)) {
		dest_take_over(cd, vv, l);
	} else if (ours && cd_owned_here(cd, vv) && !strcmp(m->phase, "committed") &&
		   cd_seen_ms(cd, m->id, "committed") > COMMITTED_QUIET) {
		/* The source died after its commit and never wrote "done". */
		mig_done_late(cd, vv, "the source reported no statistics");
	} else if (mine && !cl_migration_active(m)) {
		cd_lvm_stop(l, 0); /* failed: the guest never ran here */
		cd_lvm_remove(cd, l);
	} else if (mine && source_gone(cd, v, m)) {
		cd_mig_fail(cd, vv, "the source node %s is gone", m->source);
	} else if (mine && !cd_lvm_alive(l)) {
		cd_mig_fail(cd, vv, "the incoming VMM on %s exited (status %d; see %s/vmm.log)",
			    cd->cfg->node, l->exit_code, l->dir);
		cd_lvm_remove(cd, l);
	}
}

/* ---- source ------------------------------------------------------------------------- */

/* Our VMM's own migration phase ("" when it does not answer). */
static void vmm_mig_phase(const struct lvm *l, char *buf, size_t len)
{
	json_t *r = NULL;
	const char *ph;

	buf[0] = 0;
	if (cd_lvm_request(l, "migrate-status", NULL, &r) == 0 &&
	    (ph = json_string_value(json_object_get(r, "phase"))))
		snprintf(buf, len, "%s", ph);
	json_decref(r);
}

/* Post-copy's source VMM ended: the pages it held are gone with it. */
static void postcopy_source_lost(struct cd *cd, const struct cl_vm_view *vv)
{
	struct cl_migration m = vv->mig;

	snprintf(m.phase, sizeof(m.phase), "postcopy-broken");
	snprintf(m.error, sizeof(m.error), "the source VMM on %s ended during post-copy",
		 cd->cfg->node);
	if (cd_mig_cas(cd, &m) == 1)
		cd_event(cd, vv->name, "migrate-postcopy-broken", "%s → %s: %s", m.source, m.target,
			 m.error);
}

static void src_step(struct cd *cd, const struct cl_vm_view *vv)
{
	struct lvm *l = cd_lvm_find(cd, vv->name);
	const struct cl_migration *m = &vv->mig;
	char phase[32];
	bool running;

	if (l && l->src)
		return; /* the worker owns l's fields */
	running = l && l->role == LVM_RUN && cd_lvm_alive(l);
	if (!strcmp(m->phase, "requested") || !strcmp(m->phase, "ready")) {
		if (!cd_owned_here(cd, vv) || !running)
			cd_mig_fail(cd, vv, "vm %s is not running on %s", vv->name, cd->cfg->node);
		else if (!strcmp(m->phase, "ready"))
			cd_src_launch(cd, l, vv, false);
		else if (cd_seen_ms(cd, m->id, m->phase) > cd->cfg->prepare_timeout_s * 1000ULL)
			cd_mig_fail(cd, vv, "target %s did not prepare within %u s", m->target,
				    cd->cfg->prepare_timeout_s);
	} else if (!strcmp(m->phase, "streaming")) {
		if (running && cd_owned_here(cd, vv))
			cd_src_launch(cd, l, vv, true); /* we restarted mid-migration */
		else if (cd_owned_here(cd, vv))
			cd_mig_fail(cd, vv, "the source VMM on %s ended", cd->cfg->node);
	} else if (!strcmp(m->phase, "postcopy")) {
		if (running)
			cd_src_launch(cd, l, vv, true); /* we restarted mid-post-copy */
		else
			postcopy_source_lost(cd, vv);
	} else if (!strcmp(m->phase, "postcopy-broken") || !strcmp(m->phase, "taken-back")) {
		cd_pc_recover(cd, vv);
	} else if (!strcmp(m->phase, "committed") && running && !cd_owned_here(cd, vv) &&
		   (vmm_mig_phase(l, phase, sizeof(phase)), !strncmp(phase, "postcopy", 8))) {
		/* We restarted after the commit, in post-copy (or after it broke): the worker
		 * follows the VMM from here. */
		cd_src_launch(cd, l, vv, true);
	} else if (!strcmp(m->phase, "committed") && l && !cd_owned_here(cd, vv)) {
		/* We died between the commit and telling our VMM: it must never resume. */
		cd_lvm_stop(l, 2000);
		cd_lvm_remove(cd, l);
		mig_done_late(cd, vv, "the source daemon restarted after the commit");
		cd_event(cd, vv->name, "migrate-resolved",
			 "source copy on %s stopped: the owner record says %s", cd->cfg->node,
			 vv->owner.node);
	} else if (!strcmp(m->phase, "committed") && !l && !cd_owned_here(cd, vv) &&
		   cd_seen_ms(cd, m->id, "committed") > COMMITTED_QUIET) {
		/* Our worker ended without writing "done" (etcd failed it then) and our copy is
		 * gone: say it, or a target lost later would hold the VM's restart for ever. */
		mig_done_late(cd, vv, "the source could not report its statistics");
	}
}

/* A re-adopted VMM may wait paused for a commit decision nobody will take any more (its
 * migration record failed or went while this daemon was away). The owner record decides:
 * still ours, unchanged → abort (resume); anything else → stop it. */
static void adopted_check(struct cd *cd, const struct cl_view *v, struct lvm *l)
{
	const struct cl_vm_view *vv = cl_view_vm(v, l->name);
	json_t *r = NULL, *args;
	const char *ph;

	l->check_mig = false;
	if (l->src || (vv && vv->has_mig && cl_migration_active(&vv->mig) && !vv->bad))
		return; /* a live migration record: the steps below handle it */
	if (cd_lvm_request(l, "migrate-status", NULL, &r) == 0 &&
	    (ph = json_string_value(json_object_get(r, "phase"))) &&
	    !strcmp(ph, "awaiting-commit")) {
		if (vv && cd_owned_here(cd, vv) && vv->owner.epoch == l->epoch) {
			args = json_pack("{s:s,s:s}", "decision", "abort", "reason",
					 "the migration was abandoned while this daemon was away");
			if (cd_lvm_request(l, "migrate-commit", args, NULL))
				l->check_mig = true; /* try again next round */
			json_decref(args);
		} else {
			cd_lvm_stop(l, 2000);
		}
	}
	json_decref(r);
}

void cd_migrations(struct cd *cd, const struct cl_view *v)
{
	for (size_t i = 0; i < cd->nvms; i++)
		if (cd->vms[i]->check_mig)
			adopted_check(cd, v, cd->vms[i]);
	for (size_t i = 0; i < v->nvms; i++) {
		const struct cl_vm_view *vv = &v->vms[i];

		if (!vv->has_mig || vv->bad)
			continue;
		if (is_me(cd, vv->mig.target))
			dest_step(cd, v, vv);
		else if (is_me(cd, vv->mig.source))
			src_step(cd, vv);
	}
}

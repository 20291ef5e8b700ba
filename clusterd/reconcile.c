/* Reconcile: a VM owned here (and wanted running) has a running cme-vmm; a VM not owned
 * here has none. A VMM that dies is restarted per the VM's restart policy with a backoff;
 * a "failed" status at the current epoch is the memory that stops restarts, even across
 * restarts of the daemon. */
#include "cd_priv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define SUB	       "reconcile"
#define EXIT_POWEROFF  0
#define EXIT_RESET     73
#define EXIT_SANDBOX   75 /* cme-vmm --jail: a forbidden system call */
#define RESTART_MAX_MS 30000
#define FENCE_WHY                                                                                  \
	"this node could not renew its lease in time (etcd unreachable, or the daemon stalled)"

static void status_fill(struct cd *cd, const struct lvm *l, const char *state, struct cl_status *s)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->node, sizeof(s->node), "%s", cd->cfg->node);
	snprintf(s->state, sizeof(s->state), "%s", state);
	if (l) {
		s->pid = l->exited ? 0 : (int)l->pid;
		s->epoch = l->epoch;
		cd_lvm_console_path(l, s->console, sizeof(s->console));
	}
}

/* Delete the status record if it is ours, unless it changed since the read. */
static void status_drop(struct cd *cd, const struct cl_vm_view *vv)
{
	char key[256];

	if (!vv->has_status || strcmp(vv->status.node, cd->cfg->node))
		return;
	cd_key(cd, key, sizeof(key), "vms", vv->name, "status");
	if (cd_delete_if(cd, key, vv->status_rev) < 0)
		log_warn(SUB, "vm=%s: cannot remove its status", vv->name);
}

static void stop_vm(struct cd *cd, struct lvm *l, const char *why)
{
	bool was = cd_lvm_alive(l);

	cd_lvm_stop(l, 3000);
	if (was)
		cd_event(cd, l->name, "vm-stopped", "VMM on %s stopped: %s", cd->cfg->node, why);
}

/* How a VMM ended, for events and the status: "status N", "a signal (or unknown)", or
 * the call its sandbox named. */
static void exit_detail(const struct lvm *l, int code, char *buf, size_t len)
{
	char why[200];

	cd_lvm_exit_why(l, why, sizeof(why));
	if (code == EXIT_SANDBOX)
		snprintf(buf, len, "status %d, ended by its sandbox: %.200s", code,
			 why[0] ? why : "a forbidden system call");
	else if (code < 0)
		snprintf(buf, len, "a signal, or unknown");
	else if (why[0])
		snprintf(buf, len, "status %d: %.200s", code, why);
	else
		snprintf(buf, len, "status %d", code);
}

/* The VMM ended by itself: restart it, or record why not. Returns true to restart now. */
static bool handle_exit(struct cd *cd, const struct cl_view *v, const struct cl_vm_view *vv,
			struct lvm *l, uint32_t *restarts)
{
	const char *policy = vv->spec.restart[0] ? vv->spec.restart : "on-failure";
	int code = l->exit_code;
	bool clean = code == EXIT_POWEROFF, reset = code == EXIT_RESET;
	bool again =
		!strcmp(policy, "always") || reset || (!strcmp(policy, "on-failure") && !clean);
	struct cl_status s;
	uint64_t backoff = 1000ULL << (*restarts < 5 ? *restarts : 5);
	char how[300];

	if (l->start_err[0]) /* no VMM ran: its start failed, for this reason */
		snprintf(how, sizeof(how), "it did not start: %.250s", l->start_err);
	else
		exit_detail(l, code, how, sizeof(how));
	if (cd_pc_target_waits(cd, v, vv)) {
		status_fill(cd, l, "postcopy-broken", &s);
		s.restarts = *restarts;
		snprintf(s.error, sizeof(s.error),
			 "VMM ended during post-copy (%s): %s holds the guest as of the switch and "
			 "takes it back",
			 how, vv->mig.source);
		cd_status_ensure(cd, vv, &s);
		return false;
	}
	if (again && now_ns() / 1000000 <
			     l->started_ms + (backoff < RESTART_MAX_MS ? backoff : RESTART_MAX_MS))
		return false; /* wait out the backoff; the status says so already */
	if (again) {
		cd_event(cd, vv->name, "vm-restart", "VMM exited (%s); restarting (policy %s)", how,
			 policy);
		(*restarts)++;
		return true;
	}
	status_fill(cd, l, clean ? "stopped" : "failed", &s);
	s.restarts = *restarts;
	snprintf(s.error, sizeof(s.error), "%s",
		 clean ? "the guest powered off" : "the VMM failed; see vmm.log");
	if (!clean)
		snprintf(s.error, sizeof(s.error), "VMM exited with %s (see %.180s/vmm.log)", how,
			 l->dir);
	if (l->start_err[0])
		snprintf(s.error, sizeof(s.error), "%s", l->start_err);
	cd_status_ensure(cd, vv, &s);
	return false;
}

/* The guest was paused at its fencing deadline. It may run again here only if nobody can
 * have started it elsewhere meanwhile: its owner record still names this node at the
 * epoch this VMM runs, and a claim on that record (compare-and-swap) succeeds — a restart
 * the leader decided on an older read then fails. Otherwise the copy is stopped. */
static void handle_fenced(struct cd *cd, const struct cl_vm_view *vv, struct lvm *l,
			  uint64_t fenced_at_ns, uint32_t restarts)
{
	uint64_t deadline = cd_fence_deadline(cd, NULL), now = boottime_ns();
	uint64_t ms = now > fenced_at_ns ? (now - fenced_at_ns) / 1000000 : 0;
	json_t *args;
	struct cl_status s;
	int rc;

	if (l->epoch != vv->owner.epoch) {
		stop_vm(cd, l, "fenced, and the VM has been started elsewhere since");
		cd_lvm_remove(cd, l);
		return;
	}
	status_fill(cd, l, "fenced", &s);
	s.restarts = restarts;
	snprintf(s.error, sizeof(s.error), "paused at its fencing deadline: %s", FENCE_WHY);
	if (!vv->has_status || strcmp(vv->status.state, "fenced"))
		cd_event(cd, vv->name, "vm-fenced", "guest paused on %s %llu ms ago: %s",
			 cd->cfg->node, (unsigned long long)ms, FENCE_WHY);
	cd_status_ensure(cd, vv, &s);
	if (deadline <= now || cd_owner_cas(cd, vv, vv->owner.node, vv->owner.epoch) != 1)
		return; /* no lease to run under yet, or the record moved: look again */
	args = json_pack("{s:I}", "deadline_ns", (json_int_t)deadline);
	rc = cd_lvm_request(l, "fence-deadline", args, NULL);
	json_decref(args);
	if (!rc)
		rc = cd_lvm_request(l, "resume", NULL, NULL);
	if (rc) {
		log_warn(SUB, "vm=%s: cannot resume the fenced guest: %s", vv->name,
			 strerror(rc < 0 ? -rc : rc));
		return;
	}
	cd_fence_note(cd, vv->name, false, 0);
	cd_event(cd, vv->name, "vm-unfenced",
		 "guest resumed on %s after %llu ms paused: the lease holds again and the VM is "
		 "still owned here (epoch %llu)",
		 cd->cfg->node, (unsigned long long)ms, (unsigned long long)vv->owner.epoch);
}

/* A VM with a balloon: give its VMM the spec's target when it has not had it (a new VMM —
 * started, restarted, arrived by migration or adopted — gets it again), and note the
 * VMM's target and actual in the status. A target the VMM refuses is not sent again. */
static void balloon_sync(struct cd *cd, const struct cl_vm_view *vv, struct lvm *l,
			 struct cl_status *s)
{
	json_t *args, *r = NULL, *b;
	int rc;

	if (!vv->spec.balloon)
		return;
	if (l->balloon_mb != (int64_t)vv->spec.balloon_mb) {
		args = json_pack("{s:I}", "target_mb", (json_int_t)vv->spec.balloon_mb);
		rc = cd_lvm_request(l, "balloon", args, &r);
		json_decref(args);
		if (rc == -EREMOTEIO)
			log_warn(SUB, "vm=%s: balloon target %llu MiB refused: %s", vv->name,
				 (unsigned long long)vv->spec.balloon_mb,
				 json_string_value(json_object_get(r, "error")));
		if (!rc)
			cd_event(cd, vv->name, "vm-balloon", "balloon target %llu MiB given on %s",
				 (unsigned long long)vv->spec.balloon_mb, cd->cfg->node);
		if (!rc || rc == -EREMOTEIO)
			l->balloon_mb = (int64_t)vv->spec.balloon_mb;
		json_decref(r);
		r = NULL;
	}
	if (cd_lvm_request(l, "status", NULL, &r) == 0 &&
	    json_is_object(b = json_object_get(r, "balloon"))) {
		s->balloon = true;
		s->balloon_target_mb =
			(uint64_t)json_integer_value(json_object_get(b, "target_mb"));
		s->balloon_actual_mb =
			(uint64_t)json_integer_value(json_object_get(b, "actual_mb"));
	}
	json_decref(r);
}

/* A failed status at the owner's epoch on this node: do not try again by itself. */
static bool failed_here(struct cd *cd, const struct cl_vm_view *vv)
{
	return vv->has_status && !strcmp(vv->status.state, "failed") &&
	       !strcmp(vv->status.node, cd->cfg->node) && vv->status.epoch == vv->owner.epoch;
}

/* The owner record names this node at another epoch than the one this VMM was started
 * for: the VM was owned elsewhere meanwhile (it ran there, its disk moved on), and this
 * copy's memory is older than that. It is never carried on under the new epoch: stopped,
 * and the next round starts the VM afresh. (Moves that keep a copy here — a migration's
 * take-over, a post-copy taken back — set the VMM's epoch themselves.) */
static void stale_copy(struct cd *cd, const struct cl_vm_view *vv, struct lvm *l)
{
	cd_event(cd, vv->name, "vm-stale-copy",
		 "a copy of vm %s started for epoch %llu still ran on %s, and the VM is owned "
		 "here again at epoch %llu: the old copy is stopped, the VM starts afresh",
		 vv->name, (unsigned long long)l->epoch, cd->cfg->node,
		 (unsigned long long)vv->owner.epoch);
	stop_vm(cd, l, "a copy from an older ownership of the VM");
	cd_lvm_remove(cd, l);
}

static void ensure_running(struct cd *cd, const struct cl_view *v, const struct cl_vm_view *vv,
			   struct lvm *l)
{
	uint32_t restarts = vv->has_status ? vv->status.restarts : 0;
	struct cl_status s;
	uint64_t fenced_at;

	if (l && !cd_lvm_alive(l)) {
		if (cd_restore_ended(cd, vv, l))
			return; /* said now; its exit is handled next round */
		if (!handle_exit(cd, v, vv, l, &restarts))
			return;
	} else if (l && cd_fence_fenced(cd, vv->name, &fenced_at)) {
		handle_fenced(cd, vv, l, fenced_at, restarts);
		return;
	} else if (l && l->epoch && l->epoch != vv->owner.epoch) {
		stale_copy(cd, vv, l);
		return;
	} else if (l) {
		if (!l->running_seen && cd_lvm_request(l, "status", NULL, NULL) == 0)
			l->running_seen = true;
		if (l->running_seen)
			cd_restore_running(cd, vv, l);
		l->epoch = vv->owner.epoch; /* 0: adopted from a meta.json without one */
		status_fill(cd, l, l->running_seen ? "running" : "starting", &s);
		s.restarts = restarts;
		if (l->running_seen)
			balloon_sync(cd, vv, l, &s);
		cd_status_ensure(cd, vv, &s);
		return;
	} else if (failed_here(cd, vv)) {
		return;
	} else if (!l && cd_pc_target_waits(cd, v, vv)) {
		/* Our copy from a post-copy switch ended while no daemon watched (so none was
		 * adopted): the source holds the guest as of the switch and takes it back. No
		 * fresh boot here meanwhile, and a status that says the copy here ended. */
		status_fill(cd, NULL, "postcopy-broken", &s);
		s.epoch = vv->owner.epoch;
		s.restarts = restarts;
		snprintf(s.error, sizeof(s.error),
			 "the VMM here ended during post-copy while its daemon was away: %s",
			 cd_pc_source_holds(v, vv)
				 ? "the source holds the guest as of the switch and takes it back"
				 : "the source is lost too; the VM restarts per its policy");
		cd_status_ensure(cd, vv, &s);
		return;
	}
	/* Claim the record first: a reassignment decided on an older read then fails. */
	if (cd_owner_cas(cd, vv, vv->owner.node, vv->owner.epoch) != 1)
		return;
	if (!l && !(l = cd_lvm_add(cd, vv->name)))
		return;
	status_fill(cd, l, "starting", &s);
	s.restarts = restarts;
	l->start_err[0] = 0;
	l->restore_id[0] = 0;
	if (cd_restore_start(cd, vv, l, &s)) {
		if (!strcmp(s.state, "failed"))
			snprintf(l->start_err, sizeof(l->start_err), "%s", s.error);
	} else if (cd_lvm_start_run(cd, l, &vv->spec, vv->owner.epoch, s.error, sizeof(s.error))) {
		snprintf(s.state, sizeof(s.state), "failed");
		snprintf(l->start_err, sizeof(l->start_err), "%s", s.error);
	}
	s.pid = (int)l->pid;
	cd_status_ensure(cd, vv, &s);
}

static void reconcile_vm(struct cd *cd, const struct cl_view *v, const struct cl_vm_view *vv)
{
	struct lvm *l = cd_lvm_find(cd, vv->name);
	struct cl_status s;

	if (l && (l->src || cd_migration_owns(cd, v, l)))
		return; /* a migration drives it */
	if (vv->bad)
		return; /* an unreadable record is not an absent one: change nothing */
	cd_restore_orphaned(cd, v, vv, l);
	if (!cd_owned_here(cd, vv) || !vv->has_spec) {
		if (l) {
			stop_vm(cd, l, vv->has_spec ? "owned by another node" : "VM deleted");
			cd_lvm_remove(cd, l);
		}
		status_drop(cd, vv);
		return;
	}
	if (!vv->spec.running) {
		if (l) {
			stop_vm(cd, l, "stopped by the operator");
			status_fill(cd, l, "stopped", &s);
			cd_lvm_remove(cd, l);
		} else {
			status_fill(cd, NULL, "stopped", &s);
			s.epoch = vv->owner.epoch;
		}
		cd_status_ensure(cd, vv, &s);
		return;
	}
	ensure_running(cd, v, vv, l);
}

void cd_reconcile(struct cd *cd, const struct cl_view *v)
{
	for (size_t i = 0; i < v->nvms; i++)
		reconcile_vm(cd, v, &v->vms[i]);
	/* VMMs whose VM has no record at all any more. */
	for (size_t i = 0; i < cd->nvms;) {
		struct lvm *l = cd->vms[i];

		if (cl_view_vm(v, l->name) || l->src) {
			i++;
			continue;
		}
		stop_vm(cd, l, "VM deleted");
		cd_lvm_remove(cd, l);
	}
}

/* The leader's restart of the VMs of lost nodes. A node is lost when its lease expired in
 * etcd (its nodes/ record is gone): by then its guests were paused at their fencing
 * deadlines, which fall before the earliest moment the lease could expire. Each VM moves
 * by one compare-and-swap on its owner record (epoch + 1), so two leaders, or a leader and
 * a node that comes back and claims its VM, can never both win. Decisions are level-
 * triggered from the round's read: a new leader finishes what an old one began. */
#include "cd_priv.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUB	     "ha"
#define MAX_RESTARTS 64

static bool in_list(char (*list)[CL_NAME_MAX], size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(list[i], name))
			return true;
	return false;
}

/* Say "node-lost" once for name (until it is alive again). */
static void say_lost(struct cd *cd, const struct cl_ha *h, const char *name)
{
	char(*more)[CL_NAME_MAX];
	size_t ha = 0, other = 0;

	if (in_list(cd->lost_said, cd->nlost_said, name))
		return;
	more = realloc(cd->lost_said, (cd->nlost_said + 1) * sizeof(*more));
	if (!more)
		return;
	cd->lost_said = more;
	snprintf(more[cd->nlost_said++], CL_NAME_MAX, "%s", name);
	for (size_t k = 0; k < h->c.nvms; k++) {
		if (!h->vms[k].wanted || !h->vms[k].owner || strcmp(h->vms[k].owner, name))
			continue;
		h->vms[k].restart ? ha++ : other++;
	}
	cd_event(cd, NULL, "node-lost",
		 "node %s lost (its lease expired): %zu VM(s) to restart elsewhere, %zu with "
		 "restart policy never",
		 name, ha, other);
}

/* "node-lost" for each node this leader saw alive last round and not now, and for each
 * dead node that still owns wanted VMs (a new leader learns of its predecessor's host
 * that way); forgotten once the node is alive again. */
static void note_lost_nodes(struct cd *cd, const struct cl_view *v, const struct cl_ha *h)
{
	char(*alive)[CL_NAME_MAX] = calloc(v->nnodes + 1, sizeof(*alive));
	size_t nalive = 0;

	for (size_t i = 0; i < cd->nalive_prev; i++)
		if (!cl_view_node_alive(v, cd->alive_prev[i]))
			say_lost(cd, h, cd->alive_prev[i]);
	for (size_t k = 0; k < h->c.nvms; k++)
		if (h->vms[k].wanted && h->vms[k].owner && !cl_view_node_alive(v, h->vms[k].owner))
			say_lost(cd, h, h->vms[k].owner);
	for (size_t i = 0; i < cd->nlost_said;) /* back: say it again if it is lost again */
		if (cl_view_node_alive(v, cd->lost_said[i]))
			memcpy(cd->lost_said[i], cd->lost_said[--cd->nlost_said], CL_NAME_MAX);
		else
			i++;
	if (!alive)
		return; /* out of memory: keep the old list */
	for (size_t i = 0; i < v->nnodes; i++)
		if (v->nodes[i].alive)
			snprintf(alive[nalive++], CL_NAME_MAX, "%s", v->nodes[i].name);
	free(cd->alive_prev);
	cd->alive_prev = alive;
	cd->nalive_prev = nalive;
}

/* A migration whose source node died before the commit will never finish: fail it, so
 * that its VM is restarted (after the commit, the target owns the guest and finishes; in
 * post-copy, pc_recover.c). A committed one whose target died too, a post-copy whose two
 * nodes both died, or one its source took back (a broken post-copy) before it died, has
 * nobody left to finish it: its record would hold the VM's restart back for ever. */
static void fail_orphaned_migrations(struct cd *cd, const struct cl_view *v)
{
	for (size_t i = 0; i < v->nvms; i++) {
		const struct cl_vm_view *vv = &v->vms[i];
		bool committed;

		if (vv->has_mig && !vv->bad && !strcmp(vv->mig.phase, "taken-back") &&
		    !cl_view_node_alive(v, vv->mig.source)) {
			cd_mig_fail(cd, vv, "the source node %s was lost after taking the VM back",
				    vv->mig.source);
			continue;
		}
		if (vv->has_mig && !vv->bad &&
		    (!strcmp(vv->mig.phase, "postcopy") ||
		     !strcmp(vv->mig.phase, "postcopy-broken")) &&
		    !cl_view_node_alive(v, vv->mig.source) &&
		    !cl_view_node_alive(v, vv->mig.target)) {
			/* The guest's memory was split between the two: gone with them. Its
			 * restart still waits for its owner's fencing. */
			cd_mig_fail(
				cd, vv,
				"the source node %s and the target node %s were both lost during "
				"post-copy: the VM starts afresh",
				vv->mig.source, vv->mig.target);
			continue;
		}
		if (!vv->has_mig || !cl_migration_active(&vv->mig) ||
		    !strcmp(vv->mig.phase, "postcopy") || cl_view_node_alive(v, vv->mig.source))
			continue;
		committed = !strcmp(vv->mig.phase, "committed");
		if (committed && !cl_view_node_alive(v, vv->mig.target))
			cd_mig_fail(
				cd, vv,
				"the source node %s and the target node %s were both lost after "
				"the commit",
				vv->mig.source, vv->mig.target);
		else if (!committed)
			cd_mig_fail(cd, vv, "the source node %s was lost", vv->mig.source);
	} /* the next round's read shows it failed, and its VM is restarted then */
}

/* The tier waiting on w's blocker has waited longer than ha_tier_timeout. The wait is
 * timed from when this leader first saw it, per blocker and epoch. */
static bool tier_timed_out(struct cd *cd, const struct cl_view *v, const struct ha_restart_wait *w)
{
	const struct cl_vm_view *b = &v->vms[w->blocker];
	char key[64];

	snprintf(key, sizeof(key), "tier%d/%.30s/%llu", w->priority, b->name,
		 (unsigned long long)b->owner.epoch);
	return cd_seen_ms(cd, key, "wait") >= cd->cfg->ha_tier_timeout_s * 1000ull;
}

static void restart_one(struct cd *cd, const struct cl_view *v, struct cl_ha *h,
			const struct ha_move *m)
{
	const struct cl_vm_view *vv = &v->vms[m->vm];
	const char *to = v->nodes[m->node].name;
	uint64_t epoch = vv->owner.epoch + 1;

	if (cd_owner_take(cd, vv, to, epoch, vv->owner.node) != 1)
		return; /* changed since the read: the next round decides again */
	h->vms[m->vm].owner = to;
	h->vms[m->vm].running = false;
	cd_event(cd, vv->name, "vm-ha-restart",
		 "node %s lost: vm %s restarts on %s (priority %d, epoch %llu)", vv->owner.node,
		 vv->name, to, vv->spec.priority, (unsigned long long)epoch);
}

static bool planned(const struct ha_move *m, size_t n, size_t vm)
{
	for (size_t i = 0; i < n; i++)
		if (m[i].vm == vm)
			return true;
	return false;
}

/* Why each VM of a lost node that was not restarted this round waits. */
static void report_waiting(struct cd *cd, const struct cl_view *v, const struct cl_ha *h,
			   const struct ha_move *m, size_t n, const struct ha_restart_wait *w)
{
	char why[512];

	for (size_t i = 0; i < v->nvms; i++) {
		const struct ha_vm *vm = &h->vms[i];

		if (!vm->wanted || !vm->owner || vm->target || cl_view_node_alive(v, vm->owner) ||
		    planned(m, n, i) || v->vms[i].bad)
			continue;
		if (!vm->restart)
			snprintf(why, sizeof(why),
				 "node %s is down and the restart policy is never: it stays there "
				 "until the node returns",
				 vm->owner);
		else if (w->waiting && vm->priority <= w->priority)
			snprintf(why, sizeof(why),
				 "node %s is down; waiting for vm %s (priority %d) to run before "
				 "priority %d starts (at most %u s)",
				 vm->owner, h->vms[w->blocker].name, h->vms[w->blocker].priority,
				 vm->priority, cd->cfg->ha_tier_timeout_s);
		else if (ha_place(&h->c, vm, NULL, why, sizeof(why)) >= 0)
			continue; /* room appeared since the plan: the next round takes it */
		cd_pending(cd, &v->vms[i], why);
	}
}

/* A VM of a lost node that may not move yet: its node is not known to be fenced. */
struct held {
	size_t vm;
	char why[256];
};

/* Take out of this round's plan the VMs of lost nodes that may still run guests (quorum.c:
 * a majority of members has not released them yet); each node is asked about once. */
static size_t hold_unfenced(struct cd *cd, const struct cl_view *v, struct cl_ha *h,
			    struct held *held, size_t max)
{
	char asked[CD_MAX_MEMBERS][CL_NAME_MAX], why[CD_MAX_MEMBERS][256];
	bool fenced[CD_MAX_MEMBERS];
	size_t nasked = 0, n = 0;

	for (size_t i = 0; i < h->c.nvms && n < max; i++) {
		struct ha_vm *vm = &h->vms[i];
		size_t k;

		if (!vm->wanted || !vm->owner || vm->target || !vm->restart ||
		    cl_view_node_alive(v, vm->owner))
			continue;
		for (k = 0; k < nasked && strcmp(asked[k], vm->owner); k++)
			;
		if (k == nasked && nasked < ARRAY_SIZE(asked)) {
			snprintf(asked[nasked], CL_NAME_MAX, "%s", vm->owner);
			why[nasked][0] = 0;
			fenced[nasked] = cd_quorum_fenced(cd, v, vm->owner, why[nasked],
							  sizeof(why[nasked]));
			nasked++;
		}
		if (k < nasked && fenced[k])
			continue;
		held[n].vm = i; /* the reason given for its own node */
		snprintf(held[n].why, sizeof(held[n].why), "%s",
			 k < nasked && why[k][0] ? why[k] : "node is down; waiting for fencing");
		vm->wanted = false;
		n++;
	}
	return n;
}

/* Take out of the plan the VMs whose post-copy broke with their target's node: the source
 * holds them as of the switch and gets them back once that node is fenced (pc_recover.c). */
static size_t hold_postcopy(struct cd *cd, const struct cl_view *v, struct cl_ha *h,
			    struct held *held, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < h->c.nvms && n < max; i++) {
		int r;

		if (!h->vms[i].wanted || !h->vms[i].owner || cl_view_node_alive(v, h->vms[i].owner))
			continue;
		r = cd_pc_lost_target(cd, v, &v->vms[i], held[n].why, sizeof(held[n].why));
		if (r == 1) {
			held[n++].vm = i;
			h->vms[i].wanted = false;
		} else if (r == 2) {
			h->vms[i].owner = v->vms[i].mig.source;
			h->vms[i].running = false;
		}
	}
	return n;
}

void cd_restart_lost(struct cd *cd, const struct cl_view *v, struct cl_ha *h)
{
	struct ha_move m[MAX_RESTARTS];
	struct held held[MAX_RESTARTS];
	struct ha_restart_wait w;
	size_t n, nheld;

	note_lost_nodes(cd, v, h);
	fail_orphaned_migrations(cd, v);
	nheld = hold_postcopy(cd, v, h, held, MAX_RESTARTS);
	nheld += hold_unfenced(cd, v, h, held + nheld, MAX_RESTARTS - nheld);
	n = ha_restart_plan(&h->c, INT_MAX, m, MAX_RESTARTS, &w);
	if (w.waiting && tier_timed_out(cd, v, &w))
		n = ha_restart_plan(&h->c, w.priority, m, MAX_RESTARTS, &w);
	for (size_t i = 0; i < n; i++)
		restart_one(cd, v, h, &m[i]);
	report_waiting(cd, v, h, m, n, &w);
	for (size_t i = 0; i < nheld; i++) {
		h->vms[held[i].vm].wanted = true;
		cd_pending(cd, &v->vms[held[i].vm], held[i].why);
	}
}

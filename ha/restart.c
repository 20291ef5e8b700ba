/* ha: which VMs of dead nodes the leader restarts next, tier by tier, and whether the
 * cluster keeps room to do so after any one node's loss (admission control). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>

#include "ha_priv.h"

static bool node_down(const struct ha_view *v, const char *name)
{
	size_t n = ha_node_index(v->c, name);

	return n == SIZE_MAX || !v->c->nodes[n].alive || ha_same(name, v->failed);
}

/* c->vms[i] waits for a restart: HA, wanted, not migrating, its owner down. */
static bool is_orphan(const struct ha_view *v, size_t i)
{
	const struct ha_vm *vm = &v->c->vms[i];

	return vm->wanted && vm->restart && vm->owner && !vm->target && node_down(v, vm->owner);
}

static bool planned(const struct ha_view *v, size_t i)
{
	for (size_t k = 0; k < v->nplanned; k++)
		if (v->planned[k].vm == i)
			return true;
	return false;
}

/* The orphan that follows prev in priority order (SIZE_MAX: the first), or SIZE_MAX. */
static size_t next_orphan(const struct ha_view *v, size_t prev)
{
	size_t best = SIZE_MAX;

	for (size_t i = 0; i < v->c->nvms; i++) {
		if (!is_orphan(v, i) || (prev != SIZE_MAX && !ha_before(v->c->vms, prev, i)))
			continue;
		if (best == SIZE_MAX || ha_before(v->c->vms, i, best))
			best = i;
	}
	return best;
}

/* An HA VM of a priority above prio that starts but does not run yet, or was planned in
 * this call: the index of the first, or SIZE_MAX. */
static size_t starting_above(const struct ha_view *v, int prio)
{
	for (size_t i = 0; i < v->c->nvms; i++) {
		const struct ha_vm *vm = &v->c->vms[i];

		if (vm->priority <= prio || !vm->wanted || !vm->restart || !vm->owner)
			continue;
		if (planned(v, i) || (!vm->running && !node_down(v, vm->owner)))
			return i;
	}
	return SIZE_MAX;
}

size_t ha_restart_plan(const struct ha_cluster *c, int force_priority, struct ha_move *moves,
		       size_t cap, struct ha_restart_wait *wait)
{
	struct ha_view v = { .c = c, .planned = moves };
	size_t i = SIZE_MAX, blocker;
	int to;

	if (wait)
		*wait = (struct ha_restart_wait){ .waiting = false };
	while (v.nplanned < cap && (i = next_orphan(&v, i)) != SIZE_MAX) {
		int prio = c->vms[i].priority;

		if (prio < force_priority && (blocker = starting_above(&v, prio)) != SIZE_MAX) {
			if (wait)
				*wait = (struct ha_restart_wait){ true, prio, blocker };
			break;
		}
		to = ha_place_in(&v, &c->vms[i], NULL, NULL, 0);
		if (to >= 0)
			moves[v.nplanned++] = (struct ha_move){ .vm = i, .node = (size_t)to };
	}
	return v.nplanned;
}

/* Can every orphan find a place if c->nodes[f] failed? 0 or -ENOSPC with the reason. */
static int absorb(const struct ha_cluster *c, size_t f, struct ha_move *scratch, char *why,
		  size_t whylen)
{
	struct ha_view v = { .c = c, .planned = scratch, .failed = c->nodes[f].name };
	char reason[400];
	size_t i = SIZE_MAX;
	int to;

	while ((i = next_orphan(&v, i)) != SIZE_MAX) {
		to = ha_place_in(&v, &c->vms[i], NULL, reason, sizeof(reason));
		if (to < 0) {
			if (why && whylen)
				snprintf(why, whylen,
					 "admission control keeps room for the loss of any one "
					 "node: if %s failed, %s",
					 c->nodes[f].name, reason);
			return -ENOSPC;
		}
		scratch[v.nplanned++] = (struct ha_move){ .vm = i, .node = (size_t)to };
	}
	return 0;
}

int ha_admit(const struct ha_cluster *c, struct ha_move *scratch, size_t cap, char *why,
	     size_t whylen)
{
	if (why && whylen)
		why[0] = '\0';
	if (cap < c->nvms)
		return -E2BIG;
	for (size_t f = 0; f < c->nnodes; f++)
		if (c->nodes[f].alive && absorb(c, f, scratch, why, whylen))
			return -ENOSPC;
	return 0;
}

/* ha: which live migrations a drain starts next. */
#include <stdint.h>
#include <string.h>

#include "ha_priv.h"

/* c->vms[i] runs, is not migrating, and its alive owner is being emptied. */
static bool is_candidate(const struct ha_cluster *c, size_t i)
{
	const struct ha_vm *vm = &c->vms[i];
	size_t n;

	if (!vm->wanted || vm->target || vm->confidential)
		return false;
	n = ha_node_index(c, vm->owner);
	if (n == SIZE_MAX || !c->nodes[n].alive)
		return false;
	return c->nodes[n].admin == HA_DRAINING || c->nodes[n].admin == HA_MAINTENANCE;
}

/* The candidate that follows prev in drain order (SIZE_MAX: the first), or SIZE_MAX. A scan
 * per step instead of a sort keeps the planner free of allocation. */
static size_t next_candidate(const struct ha_cluster *c, size_t prev)
{
	size_t best = SIZE_MAX;

	for (size_t i = 0; i < c->nvms; i++) {
		if (!is_candidate(c, i) || (prev != SIZE_MAX && !ha_before(c->vms, prev, i)))
			continue;
		if (best == SIZE_MAX || ha_before(c->vms, i, best))
			best = i;
	}
	return best;
}

/* Migrations in flight or planned: all (from NULL), or those leaving the node named from. */
static size_t in_flight(const struct ha_view *v, const char *from)
{
	size_t n = 0;

	for (size_t i = 0; i < v->c->nvms; i++)
		if (v->c->vms[i].target && (!from || ha_same(v->c->vms[i].owner, from)))
			n++;
	for (size_t i = 0; i < v->nplanned; i++)
		if (!from || ha_same(v->c->vms[v->planned[i].vm].owner, from))
			n++;
	return n;
}

size_t ha_drain_plan(const struct ha_cluster *c, unsigned max_cluster, unsigned max_per_node,
		     struct ha_move *moves, size_t cap)
{
	struct ha_view v = { .c = c, .planned = moves };
	size_t i = SIZE_MAX;
	int to;

	while (v.nplanned < cap && in_flight(&v, NULL) < max_cluster &&
	       (i = next_candidate(c, i)) != SIZE_MAX) {
		if (in_flight(&v, c->vms[i].owner) >= max_per_node)
			continue;
		to = ha_place_in(&v, &c->vms[i], c->vms[i].owner, NULL, 0);
		if (to >= 0)
			moves[v.nplanned++] = (struct ha_move){ .vm = i, .node = (size_t)to };
	}
	return v.nplanned;
}

/* ha internals shared by placement and drain planning. */
#ifndef CME_HA_PRIV_H
#define CME_HA_PRIV_H

#include "ha.h"

/* The cluster plus moves planned but not yet started, which count as migrations in flight
 * (the VM uses capacity, and holds its group's slot, on the move's node too). */
struct ha_view {
	const struct ha_cluster *c;
	const struct ha_move *planned;
	size_t nplanned;
	const char *failed; /* a node to treat as down (admission control's what-if), or NULL */
};

/* Both non-NULL and equal. */
bool ha_same(const char *a, const char *b);
/* a and b are the same VM: one pointer, or one name. */
bool ha_same_vm(const struct ha_vm *a, const struct ha_vm *b);
/* True when c->vms[vm] is wanted and owned by, migrating to or planned onto c->nodes[node]. */
bool ha_vm_on(const struct ha_view *v, size_t vm, size_t node);
/* Usage of c->nodes[node] (see ha_node_usage), leaving out skip and any VM of its name. */
void ha_usage_in(const struct ha_view *v, size_t node, const struct ha_vm *skip, uint32_t *cpus,
		 uint64_t *mem_mb);
/* Index in c->nodes of the node named name, or SIZE_MAX. */
size_t ha_node_index(const struct ha_cluster *c, const char *name);
/* Higher priority first, then name; the index settles duplicate names. */
bool ha_before(const struct ha_vm *vms, size_t a, size_t b);
/* ha_place over a view. */
int ha_place_in(const struct ha_view *v, const struct ha_vm *vm, const char *exclude, char *why,
		size_t whylen);

#endif

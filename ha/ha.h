/* ha — the cluster's placement decisions over plain structs: where a VM should run, which
 * migrations a drain starts next, what a node has in use. No etcd, no KVM, no allocation:
 * clusterd fills a struct ha_cluster from its records and acts on the answers.
 *
 * Usage rule, shared by every function here: a wanted VM uses its vcpus and mem_mb on its
 * owner node and, while a migration is in flight, also on its target node (both copies
 * exist during a migration). A VM that is not wanted uses nothing. */
#ifndef CME_HA_H
#define CME_HA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the operator allows on a node (etcd admin/<node>). */
enum ha_admin { HA_SCHEDULABLE, HA_DRAINING, HA_MAINTENANCE };

/* Node and VM names are non-NULL; names match by strcmp. */
struct ha_node {
	const char *name;
	bool alive; /* holds its lease (its nodes/<name> record exists) */
	enum ha_admin admin;
	uint32_t cpus;	 /* vCPUs it offers */
	uint64_t mem_mb; /* MiB of guest memory it offers */
};

struct ha_vm {
	const char *name;
	uint32_t vcpus;
	uint64_t mem_mb;
	const char *group;  /* anti-affinity group, NULL or "" for none */
	int priority;	    /* higher first */
	const char *owner;  /* node it is assigned to, NULL if none */
	const char *target; /* destination of a migration in flight, NULL if none */
	bool wanted;	    /* its spec wants it running (only wanted VMs use capacity) */
};

/* The cluster as the leader sees it; the caller owns both arrays. */
struct ha_cluster {
	const struct ha_node *nodes;
	size_t nnodes;
	const struct ha_vm *vms;
	size_t nvms;
};

/* One migration to start: c->vms[vm] goes to c->nodes[node]. */
struct ha_move {
	size_t vm;
	size_t node;
};

/* "schedulable", "draining" or "maintenance" to *out; false (and *out untouched) for
 * anything else, NULL included. */
bool ha_admin_parse(const char *s, enum ha_admin *out);
/* The name ha_admin_parse accepts for a; "unknown" for a value outside the enum. */
const char *ha_admin_name(enum ha_admin a);

/* vCPUs and MiB in use on c->nodes[node] by the usage rule (a VM whose owner and target
 * are both this node counts once). Sums saturate instead of wrapping. node < c->nnodes. */
void ha_node_usage(const struct ha_cluster *c, size_t node, uint32_t *cpus_used,
		   uint64_t *mem_used_mb);

/* The index in c->nodes where vm should run, or -1. vm need not be one of c->vms; a VM of
 * c->vms with vm's name (or vm itself) never counts against a node, so a VM can be
 * re-placed where it already runs. A node is eligible when it is alive, HA_SCHEDULABLE,
 * not named exclude (NULL: none; the node a migration leaves), has at least vm's vCPUs and
 * MiB free (offered minus used by other VMs) and holds no other wanted VM of vm's
 * non-empty group as owner or migration target. The choice is the eligible node with the
 * most MiB free after placement, then most vCPUs free, then the smallest name. On -1,
 * why (if not NULL) gets one line naming every node and why it could not take vm, e.g.
 * "no node can take vm web1 (2 vCPUs, 1024 MiB): node-a has 512 MiB/3 vCPUs free; node-b
 * is draining; node-c is down"; truncated to whylen. On success why is set to "". */
int ha_place(const struct ha_cluster *c, const struct ha_vm *vm, const char *exclude, char *why,
	     size_t whylen);

/* The live migrations the leader should start now to empty every alive node that is
 * HA_DRAINING or HA_MAINTENANCE, written to moves (at most cap), returns how many.
 * Candidates are the wanted VMs owned by such a node with no migration in flight, taken
 * highest priority first, then by name. A candidate is planned when fewer than max_cluster
 * migrations are in flight cluster-wide and fewer than max_per_node leave its owner (both
 * counting those already in flight and those planned before it) and ha_place, excluding its
 * owner, finds a node; each planned move counts as a migration in flight for the
 * candidates after it, so it reserves its target's capacity and anti-affinity slot.
 * Left out, for the caller to handle: a candidate with nowhere to go (ha_place says why);
 * VMs that are not wanted (nothing runs: the caller just reassigns them); VMs of a node
 * that is down (nothing to migrate from: that is a restart). */
size_t ha_drain_plan(const struct ha_cluster *c, unsigned max_cluster, unsigned max_per_node,
		     struct ha_move *moves, size_t cap);

#endif

/* ha — the cluster's placement decisions over plain structs: where a VM should run, which
 * migrations a drain starts next, what a node has in use, and until when a node may run
 * guests (fencing). No etcd, no KVM, no allocation (common's CPU feature lists only):
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
	/* Its CPU features (what its KVM offers guests), comma-separated names of common's
	 * table; NULL when it publishes none (a node of an older version). */
	const char *cpu_features;
	bool sev; /* it offers AMD SEV for confidential guests */
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
	bool restart;	    /* its policy restarts it elsewhere when its host dies */
	bool running;	    /* it runs on its owner (status running at the owner's epoch) */
	/* The CPU features a node must offer to run it, comma-separated: its CPU template's,
	 * or, for "host", those of the node it runs on (a live migration must not take any
	 * away). NULL or "": none. */
	const char *cpu_need;
	/* Its memory is encrypted by its node's processor (AMD SEV): it runs only where sev
	 * is offered and never moves live (a drain leaves it to the operator). */
	bool confidential;
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

/* The features of vm->cpu_need that node n does not offer, ", "-separated into out (may be
 * NULL; cut short at len). Returns how many; a node that publishes no features offers
 * none of them. */
unsigned ha_cpu_lacks(const struct ha_node *n, const struct ha_vm *vm, char *out, size_t len);

/* The index in c->nodes where vm should run, or -1. vm need not be one of c->vms; a VM of
 * c->vms with vm's name (or vm itself) never counts against a node, so a VM can be
 * re-placed where it already runs. A node is eligible when it is alive, HA_SCHEDULABLE,
 * not named exclude (NULL: none; the node a migration leaves), offers every CPU feature vm
 * needs (ha_cpu_lacks) and AMD SEV if vm is confidential, has at least vm's vCPUs and MiB free (offered minus used by other
 * VMs) and holds no other wanted VM of vm's non-empty group as owner or migration target. The choice is the eligible node with the
 * most MiB free after placement, then most vCPUs free, then the smallest name. On -1,
 * why (if not NULL) gets one line naming every node and why it could not take vm, e.g.
 * "no node can take vm web1 (2 vCPUs, 1024 MiB): node-a has 512 MiB/3 vCPUs free; node-b
 * is draining; node-c is down; node-d lacks CPU features avx2, bmi2; node-e offers no AMD
 * SEV (confidential VMs)"; truncated to whylen. On success why is set to "". */
int ha_place(const struct ha_cluster *c, const struct ha_vm *vm, const char *exclude, char *why,
	     size_t whylen);

/* The live migrations the leader should start now to empty every alive node that is
 * HA_DRAINING or HA_MAINTENANCE, written to moves (at most cap), returns how many.
 * Candidates are the wanted VMs owned by such a node with no migration in flight and not
 * confidential (those cannot move live: the caller says so), taken
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

/* ---- restart after host loss ----------------------------------------------------------- */

/* Why ha_restart_plan held a tier back. */
struct ha_restart_wait {
	bool waiting;	/* a tier is held back */
	int priority;	/* its priority */
	size_t blocker; /* index in c->vms of a higher-priority VM that does not run yet */
};

/* The restarts the leader should make now, written to moves (at most cap), returns how
 * many. Candidates are the wanted VMs with restart set, no migration in flight, whose
 * owner node is down (not alive, or not among c->nodes), taken highest priority first,
 * then by name; each is placed by ha_place (its dead owner holds nothing) and a planned
 * restart reserves its node's capacity and anti-affinity slot for the ones after it.
 * VMs of equal priority form a tier. A tier waits while a VM of a higher priority with
 * restart set is wanted but not running on a live owner (it is starting), or was planned
 * in this call — unless its priority is at least force_priority (INT_MAX: none forced;
 * the caller forces a tier whose wait outlasted its tier timeout). A waiting tier and
 * every tier below it plan nothing, and *wait (may be NULL) says which tier waits and on
 * which VM. Left out, for the caller to report: candidates with nowhere to go (ha_place
 * says why). */
size_t ha_restart_plan(const struct ha_cluster *c, int force_priority, struct ha_move *moves,
		       size_t cap, struct ha_restart_wait *wait);

/* Admission control: does the cluster as given (a VM being admitted included, its owner
 * set to the node it is about to get) keep room to restart its HA VMs after any one node
 * fails? For each alive node it simulates that node's loss: every wanted VM with restart
 * set, no migration in flight and a down owner (that node's, and any already orphaned)
 * must find a place, highest priority first, on the nodes left. scratch has room for
 * c->nvms moves. 0, or -ENOSPC with one line in why (may be NULL) naming the node whose
 * loss could not be absorbed and why the VM found no place; -E2BIG when cap < c->nvms. */
int ha_admit(const struct ha_cluster *c, struct ha_move *scratch, size_t cap, char *why,
	     size_t whylen);

/* ---- fencing: lease-bound execution ------------------------------------------------------
 *
 * A node may run guests only while etcd cannot yet have let its lease expire, so nobody can
 * have restarted them elsewhere. All times are nanoseconds of this host's CLOCK_BOOTTIME,
 * which keeps counting while the host is suspended or frozen: a host that comes back after
 * its lease expired finds its deadline already passed.
 *
 * Why the window below is safe. Let rho = drift_ppm / 1e6 bound how far any clock (this
 * host's, etcd's) runs from real time. etcd received the keepalive after it was sent, and
 * expires the lease no sooner than TTL of its own clock later (a leader change only makes
 * it later), so no sooner than TTL / (1 + rho) of real time after the send. This host waits
 * window = TTL * (1 - rho) / (1 + rho) - margin of its own clock, at most
 * window / (1 - rho) <= TTL / (1 + rho) - margin of real time. So the guests are stopped
 * at least margin before the earliest moment anyone could restart them; margin must cover
 * the time a VMM takes to park its vCPUs once its deadline passes. */
struct ha_fence_cfg {
	uint64_t ttl_ms;    /* the lease TTL etcd granted */
	uint64_t margin_ms; /* stop this long before the earliest possible expiry */
	uint32_t drift_ppm; /* the most any clock runs from real time, parts per million */
};

/* 0 when cfg leaves a window of at least 100 ms, drift_ppm is at most 100000 (10%) and the
 * TTL at most one day; otherwise -EINVAL with one line in why (may be NULL). */
int ha_fence_check(const struct ha_fence_cfg *cfg, char *why, size_t whylen);
/* The window after a keepalive's send time (see above), in ns; 0 when cfg leaves none. */
uint64_t ha_fence_window_ns(const struct ha_fence_cfg *cfg);
/* The deadline a keepalive sent at sent_ns and acknowledged by etcd gives: sent_ns plus
 * the window. Use the send time, never the time the answer came. */
uint64_t ha_fence_deadline(const struct ha_fence_cfg *cfg, uint64_t sent_ns);
/* During an etcd outage: the cluster has nodes nodes (this one included); confirmed[i] is
 * the local send time of a request that peer i answered saying it cannot reach etcd
 * either (one entry per peer, any order; 0: no answer). Once a majority of nodes (this
 * one and at least nodes / 2 peers) has confirmed at or after time t, nobody can restart
 * this node's guests before t plus the window: the deadline is that for the latest such
 * t, or 0 when no majority ever confirmed. Never later than the newest confirmation plus
 * the window. */
uint64_t ha_fence_quorum_deadline(const struct ha_fence_cfg *cfg, unsigned nodes,
				  const uint64_t *confirmed, size_t npeers);

#endif

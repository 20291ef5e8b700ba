/* cluster — CME's records in etcd, the whole cluster as one consistent read, and the event
 * log: what cme-clusterd and cmectl share.
 *
 * The records of DESIGN.md "The cluster", under a prefix (default "/cme"), JSON values an
 * operator can read with etcdctl. Every record read from etcd is untrusted: decoding checks
 * types, ranges and names and fails with -EINVAL and a reason. Names of nodes, VMs and
 * groups: 1..63 of [a-z0-9._-], starting with a letter or digit (they become keys and file
 * names). Functions that can fail return 0 or -errno with a reason in err (etcd.h's
 * conventions). */
#ifndef CME_CLUSTER_H
#define CME_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "etcd.h"
#include "ha.h"

#define CL_NAME_MAX 64
#define CL_PATH_MAX 512
#define CL_CPU_MAX  2048 /* a node's CPU features: comma-separated names */

/* True when s is a valid node/VM/group name. */
bool cl_name_ok(const char *s);

#define CL_MEMBERS_HASH 33 /* 16 bytes of BLAKE2b in hex, and its NUL */

/* nodes/<node>: written by the node, bound to its lease. */
struct cl_node {
	char name[CL_NAME_MAX];
	char addr[128];	     /* host other nodes reach for migrations */
	uint32_t cpus;	     /* vCPUs offered */
	uint64_t mem_mb;     /* MiB of guest memory offered */
	uint32_t vms;	     /* VMMs running here */
	uint64_t started_ms; /* when this clusterd started (wall clock) */
	char version[32];
	/* What its KVM offers guests (`cme-vmm cpu-features`): comma-separated feature names
	 * of common's table; "" when it could not tell (or an older node). */
	char cpu_features[CL_CPU_MAX];
	/* The guest memory encryption its KVM offers (`cme-vmm cpu-features`): "sev", "sev-es",
	 * "sev-snp", "tdx", comma-separated; "" for none. */
	char mem_encryption[64];
	/* The member list it counts HA majorities over (cl_members_hash of its names); ""
	 * from a node older than 0.7. A change of the list waits until every member shows the
	 * current one (cl_view_membership_settled). */
	char members[CL_MEMBERS_HASH];
};

/* members/<node>: written by the node each time it registers; survives its lease, so a
 * down node still counts. The nodes a majority is counted over (HA's ride-through of an
 * etcd outage, README "High availability"), and where each one's peer channel listens.
 * `cmectl node forget` removes a node for good. */
struct cl_member {
	char name[CL_NAME_MAX];
	char peer[160]; /* host:port of its peer channel (mutual TLS, node certificates) */
	uint64_t joined_ms;
	/* It rides through etcd outages (ride_through and fence on): a leader then gathers
	 * releases before restarting its VMs, whatever the leader's own configuration. */
	bool ride;
};

/* admin/<node>: "schedulable" | "draining" | "maintenance"; survives the node's lease. */
struct cl_admin {
	char state[16];
	uint64_t since_ms;
	unsigned postcopy_after; /* draining: the migrations switch to post-copy after N rounds */
};

/* vms/<vm>/spec: written by cmectl. */
struct cl_spec {
	char name[CL_NAME_MAX];
	uint32_t vcpus;
	uint64_t mem_mb;
	char image[CL_PATH_MAX];  /* flat image, or */
	char kernel[CL_PATH_MAX]; /* Linux kernel (+ initrd) */
	char initrd[CL_PATH_MAX];
	char cmdline[1024];
	char restart[16];	 /* "always" | "on-failure" | "never" */
	char group[CL_NAME_MAX]; /* anti-affinity group, "" for none */
	char disk[CL_PATH_MAX];	 /* "PATH[,ro][,direct]": one virtio-blk disk, "" for none */
	/* Resource control (cme-vmm's flags of the same names, README "Resource control"). */
	char pin_vcpus[128];	  /* "CPU,CPU,...": host CPU of vCPU i, "" for none */
	char cgroup[CL_PATH_MAX]; /* "PATH[,cpu=CPUS][,mem=SIZE]", "" for none */
	bool hugepages, ksm;
	bool balloon;	       /* a virtio memory balloon */
	uint64_t balloon_mb;   /* its desired target (cmectl vm balloon); the owner applies it */
	char cpu_template[16]; /* cme-vmm's --cpu-template; "" is "host" */
	char boot_sig[200];    /* "PUBKEY SIG" (cmectl image sign): a node with operator_keys
				* boots only what a key of the cluster's trust record signed */
	/* cme-vmm's --confidential (AMD SEV, README "Confidential VMs"): placed only on nodes
	 * that offer SEV, never moved live; a flat image without disk, balloon or KSM. */
	bool confidential;
	int priority;
	bool running; /* desired state */
	uint64_t created_ms;
};

/* vms/<vm>/owner: the one place that says where a VM may run. Changed only by
 * compare-and-swap on mod_rev (kept here from the read, not part of the JSON). */
struct cl_owner {
	char node[CL_NAME_MAX];
	uint64_t epoch;
	int64_t mod_rev;
};

/* vms/<vm>/status: written by the node that runs (or tried to run) the VM, bound to its
 * lease; the leader writes "pending" with the reason when it cannot place the VM. */
struct cl_status {
	char node[CL_NAME_MAX];
	char state[16]; /* starting running stopped migrating failed pending postcopy-broken */
	int pid;
	uint64_t epoch;
	uint32_t restarts;
	char error[512];
	uint64_t since_ms;
	char console[CL_PATH_MAX]; /* console log file on node */
	bool balloon;		   /* the VMM has a balloon: its target and actual, last seen */
	uint64_t balloon_target_mb, balloon_actual_mb;
};

/* migrations/<vm>: requested by cmectl or the leader, then advanced by the nodes.
 * Phases: requested → ready (target listens at dest_addr) → streaming → committed → done,
 * or failed from any phase before committed. */
struct cl_migration {
	char id[40];
	char vm[CL_NAME_MAX];
	char source[CL_NAME_MAX];
	char target[CL_NAME_MAX];
	char phase[16]; /* requested ready streaming committed postcopy | done failed
			 * postcopy-broken */
	char by[16];	/* "cmectl" | "drain" */
	char dest_addr[160];
	char error[256];
	uint64_t requested_ms, updated_ms;
	/* progress while streaming */
	unsigned round, throttle_pct;
	uint64_t pages_left, bytes_sent, expected_downtime_ms;
	double rate_mbps;
	char vmm_phase[24];
	/* when done: the source VMM's statistics (JSON object text) and the cluster's view */
	char stats[1024];
	uint64_t cluster_ms; /* request to done, as the source clusterd saw it */
	/* what the requester asked for (0: the VMM's defaults): switch to post-copy after
	 * this many rounds, the bandwidth limit in bytes/s, the downtime limit */
	unsigned postcopy_after;
	uint64_t max_bandwidth, downtime_ms;
	int64_t mod_rev; /* from the read, not part of the JSON */
};

/* vms/<vm>/backup: the VM's last backup asked of the cluster (cmectl vm backup, or its
 * schedule), run by the node that owns the VM into a store of its configuration. Phases:
 * requested → running → done | failed. */
struct cl_backup {
	char id[40];		 /* the request's */
	char phase[16];		 /* requested running done failed */
	char by[16];		 /* "cmectl" | "schedule" */
	char store[CL_NAME_MAX]; /* a store the node's config names; "" its first */
	char node[CL_NAME_MAX];	 /* the node that ran it */
	char backup[128];	 /* the backup's ID in the store (VM/ID), once it has one */
	char error[256];
	uint64_t requested_ms, updated_ms;
	char stats[768];     /* done: the VMM's statistics (JSON object text) */
	uint32_t keep;	     /* after it, prune the VM's backups to this many (0: none) */
	uint64_t max_age_ms; /* and those older than this (0: none) */
	int64_t mod_rev;     /* from the read, not part of the JSON */
};

/* vms/<vm>/restore: start the VM from a backup (cmectl vm restore) instead of booting it,
 * on its owner the next time it starts there. Phases: requested → running (the VMM was
 * started from it) → done (it runs) | failed. */
struct cl_restore {
	char id[40];
	char phase[16];
	char from[128];		 /* the backup: "VM/ID", or "VM" for its newest */
	char store[CL_NAME_MAX]; /* a store the node's config names; "" its first */
	char node[CL_NAME_MAX];
	char error[256];
	uint64_t requested_ms, updated_ms;
	int64_t mod_rev; /* from the read, not part of the JSON */
};

/* vms/<vm>/schedule: back the VM up every every_ms into store, keeping the newest keep
 * backups and none older than max_age_ms (0: no such limit). */
struct cl_schedule {
	uint64_t every_ms;
	uint32_t keep;
	uint64_t max_age_ms;
	char store[CL_NAME_MAX];
	uint64_t set_ms;
};

/* trust: the boot keys the cluster trusts, as an operator signed them (cmectl trust set).
 * Nodes with operator_keys run only boots those keys signed, and take a record only when
 * its signature is by one of their operator keys and its seq is not below the last. */
#define CL_TRUST_MAX_KEYS 16
struct cl_trust {
	char keys[CL_TRUST_MAX_KEYS * 65]; /* Ed25519 public keys, 64 hex digits, ',' between */
	uint64_t seq;			   /* raised by every change */
	char signer[65];		   /* the operator's public key */
	char sig[129];			   /* its signature (bootsig.c, trust_sign) */
	uint64_t set_ms;
	int64_t mod_rev; /* from the read, not part of the JSON */
};

/* events/<ts>-<node>-<seq>: what happened, kept for a day. */
struct cl_event {
	uint64_t ts_ms;
	char node[CL_NAME_MAX];
	char vm[CL_NAME_MAX];
	char kind[24];
	char msg[256];
};

/* Build "<prefix>/<part>[/<name>[/<leaf>]]" into buf (NULL name/leaf are left out).
 * Returns buf, or NULL when it does not fit. */
char *cl_key(char *buf, size_t len, const char *prefix, const char *part, const char *name,
	     const char *leaf);

/* Encode a record as a malloc'd JSON string (NULL: out of memory). */
char *cl_node_json(const struct cl_node *n);
char *cl_admin_json(const struct cl_admin *a);
char *cl_member_json(const struct cl_member *m);
char *cl_spec_json(const struct cl_spec *s);
char *cl_owner_json(const struct cl_owner *o);
char *cl_status_json(const struct cl_status *s);
char *cl_migration_json(const struct cl_migration *m);
char *cl_event_json(const struct cl_event *e);
char *cl_trust_json(const struct cl_trust *t);
char *cl_backup_json(const struct cl_backup *b);
char *cl_schedule_json(const struct cl_schedule *s);
char *cl_restore_json(const struct cl_restore *r);

/* Decode JSON text (len bytes) into a zeroed record; 0 or -EINVAL with a reason in err. */
int cl_node_parse(const char *txt, size_t len, struct cl_node *n, struct etcd_err *err) CME_WUR;
int cl_admin_parse(const char *txt, size_t len, struct cl_admin *a, struct etcd_err *err) CME_WUR;
int cl_member_parse(const char *txt, size_t len, struct cl_member *m, struct etcd_err *err) CME_WUR;
int cl_spec_parse(const char *txt, size_t len, struct cl_spec *s, struct etcd_err *err) CME_WUR;
int cl_owner_parse(const char *txt, size_t len, struct cl_owner *o, struct etcd_err *err) CME_WUR;
int cl_status_parse(const char *txt, size_t len, struct cl_status *s, struct etcd_err *err) CME_WUR;
int cl_migration_parse(const char *txt, size_t len, struct cl_migration *m,
		       struct etcd_err *err) CME_WUR;
int cl_event_parse(const char *txt, size_t len, struct cl_event *e, struct etcd_err *err) CME_WUR;
int cl_trust_parse(const char *txt, size_t len, struct cl_trust *t, struct etcd_err *err) CME_WUR;
int cl_backup_parse(const char *txt, size_t len, struct cl_backup *b, struct etcd_err *err) CME_WUR;
int cl_schedule_parse(const char *txt, size_t len, struct cl_schedule *s,
		      struct etcd_err *err) CME_WUR;
int cl_restore_parse(const char *txt, size_t len, struct cl_restore *r,
		     struct etcd_err *err) CME_WUR;
/* A backup in phase requested or running. */
bool cl_backup_active(const struct cl_backup *b);

/* A spec's checks beyond types: sizes in range, exactly one of image/kernel, restart policy
 * known, names valid, CPU template known. 0 or -EINVAL with the reason. */
int cl_spec_check(const struct cl_spec *s, struct etcd_err *err) CME_WUR;
/* Whether a node offers what a confidential VM needs (AMD SEV in its mem_encryption). */
bool cl_node_offers_sev(const struct cl_node *n);
/* The version cme-clusterd publishes in its node record; the first that knows confidential
 * VMs is CL_VERSION_CONFIDENTIAL (an older node would place and start one unencrypted);
 * 0.7 the first that publishes its member list's hash and changes members one at a time. */
#define CL_VERSION		"0.7"
#define CL_VERSION_CONFIDENTIAL "0.6"
/* Whether the node's cme-clusterd knows the spec's confidential key. */
bool cl_node_knows_confidential(const struct cl_node *n);
/* Why a drain leaves a confidential VM where it is (the leader's event, cmectl's drain). */
#define CL_CONFIDENTIAL_STAYS                                                                      \
	"it is confidential (AMD SEV): its memory cannot move live; stop it (cmectl vm "           \
	"stop), and it is handed to another node, then start it"
/* The CPU features any node that starts a VM of spec s must offer (its CPU template's;
 * "" for "host"), comma-separated into buf of len bytes. Returns buf. */
const char *cl_spec_cpu_need(const struct cl_spec *s, char *buf, size_t len);

/* True for the phases in which a migration still runs (requested ready streaming committed
 * postcopy). "postcopy-broken" is not one: the guest is paused on the source, and the
 * source's daemon takes it back (clusterd/pc_recover.c). */
bool cl_migration_active(const struct cl_migration *m);
/* Active, or a post-copy broken after the switch that its source has not resolved yet
 * ("postcopy-broken", "taken-back"): no new migration, drain or stop may touch the VM. */
bool cl_migration_pending(const struct cl_migration *m);

/* ---- the whole cluster as one consistent read --------------------------------------- */

struct cl_node_view {
	char name[CL_NAME_MAX];
	bool alive;	       /* nodes/<name> exists (its lease holds) */
	struct cl_node node;   /* valid when alive */
	struct cl_admin admin; /* state "schedulable" when there is no admin record */
	bool member;	       /* members/<name> exists */
	struct cl_member mem;  /* valid when member */
};

struct cl_vm_view {
	char name[CL_NAME_MAX];
	bool has_spec, has_owner, has_status, has_mig, has_backup, has_schedule, has_restore;
	struct cl_spec spec;
	struct cl_owner owner;
	struct cl_status status;
	struct cl_migration mig;
	struct cl_backup backup;
	struct cl_schedule schedule;
	struct cl_restore restore;
	bool bad; /* a spec, owner or migration record is present but unreadable: leave the VM
		   * exactly as it is until an operator fixes it (never treat it as absent) */
	int64_t spec_rev;   /* spec's mod_revision */
	int64_t status_rev; /* status's mod_revision */
};

struct cl_view {
	int64_t rev; /* the store revision this view reflects */
	char leader[CL_NAME_MAX];
	struct cl_trust trust; /* when has_trust */
	bool has_trust;
	struct cl_node_view *nodes;
	size_t nnodes;
	struct cl_vm_view *vms;
	size_t nvms;
	size_t bad;		/* records skipped as malformed (each logged once per read) */
	int64_t membership_rev; /* mod_revision of <prefix>/membership; 0: none yet */
};

/* Read every record under prefix in one linearizable range (paged) into *v (caller frees
 * with cl_view_free). Malformed records are skipped and counted, never fatal. */
int cl_view_read(struct etcd *e, const char *prefix, struct cl_view *v,
		 struct etcd_err *err) CME_WUR;
void cl_view_free(struct cl_view *v);
struct cl_node_view *cl_view_node(const struct cl_view *v, const char *name);
/* The node has a nodes/ record in the view (its lease holds). */
bool cl_view_node_alive(const struct cl_view *v, const char *name);
/* How many nodes are members (members/ records). */
size_t cl_view_members(const struct cl_view *v);
/* The identity of a member list: a hash of its names, in any order, as hex. */
void cl_members_hash(const char *const *names, size_t n, char out[CL_MEMBERS_HASH]);
/* The view's member list's hash. */
void cl_view_members_hash(const struct cl_view *v, char out[CL_MEMBERS_HASH]);
/* Whether the member list may change now (a node joins, or `except` is forgotten): every
 * member but except is up and counts over the current list — a member that is down and
 * that no owner or migration record names runs nothing, and does not count here. Then
 * every member's list is the current one or, after the change, the one before it, and a
 * majority of the one and a majority of the other always share a member — what HA's
 * fencing rests on. False with the reason in why. */
bool cl_view_membership_settled(const struct cl_view *v, const char *except, char *why, size_t len);
/* One change of the member list, made only while <prefix>/membership is as v read it and
 * every cmp holds: ops (members/<node> and what goes with it) and the rewrite of the
 * membership record in one transaction, so changes go one at a time. change says what it
 * is ("join", "peer", "forget"). 0 done; -EAGAIN when another change came first or a cmp
 * failed; -errno with the reason in err. At most 3 cmp and 3 ops. */
int cl_membership_change(struct etcd *e, const char *prefix, const struct cl_view *v,
			 const char *change, const char *node, const struct etcd_cmp *cmp,
			 size_t ncmp, const struct etcd_op *ops, size_t nops,
			 struct etcd_err *err) CME_WUR;
struct cl_vm_view *cl_view_vm(const struct cl_view *v, const char *name);
/* Its owner node itself says nothing of it runs there: a status "stopped" or "failed"
 * written by that node at the owner's epoch. A desired state of stopped is not enough —
 * the owner may still be shutting the guest down. */
bool cl_vm_owner_idle(const struct cl_vm_view *m);

/* The view as ha's plain structs (names point into v, which must outlive it): a VM is
 * wanted when its spec says running, its owner is its owner record's node, its target the
 * target of an active migration; restart is set unless its policy is "never", running
 * when its status says running on its owner at the owner's epoch. A node's CPU features
 * are its record's (NULL when it is down or published none); a VM needs its CPU
 * template's features, or, on "host" while it runs, those of its owner. Returns 0 or
 * -ENOMEM; free with cl_ha_free. */
struct cl_ha {
	struct ha_cluster c;
	struct ha_node *nodes;
	struct ha_vm *vms;
	char *need; /* what each CPU template needs: CPU_TEMPLATE_MAX_LEVEL + 1 lists */
};
int cl_view_ha(const struct cl_view *v, struct cl_ha *out) CME_WUR;
void cl_ha_free(struct cl_ha *h);

/* Append an event (best effort: failures are logged, not returned). lease 0: a lease of
 * a day is granted for it. */
void cl_event_post(struct etcd *e, const char *prefix, int64_t lease, const char *node,
		   const char *vm, const char *kind, const char *fmt, ...) CME_PRINTF(7, 8);

#endif

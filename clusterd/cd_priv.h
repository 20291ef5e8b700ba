/* cme-clusterd's private structures: the daemon, its local VMMs, migration workers. One
 * main thread owns the VMM table and every decision; a keepalive thread holds the lease, a
 * watch thread wakes the main thread on any change, and a worker thread drives each
 * outgoing migration (the only blocking job). */
#ifndef CME_CD_PRIV_H
#define CME_CD_PRIV_H

#include "cluster.h"
#include "clusterd.h"
#include "etcd.h"

#include <jansson.h>
#include <pthread.h>
#include <string.h>
#include <sys/types.h>

enum lvm_role { LVM_RUN, LVM_INCOMING };

#define CD_MAX_MEMBERS 64 /* nodes the peer channel and the ride-through handle */

struct src_mig;
struct cd_peer;
struct cd_quorum;

/* What the fence thread last heard from one VMM (fence.c writes, reconcile reads). */
struct cd_fenced {
	char name[CL_NAME_MAX];
	bool fenced;	       /* its guest is paused for good: the deadline passed */
	uint64_t fenced_at_ns; /* CLOCK_BOOTTIME */
};

/* Fencing: the deadline this node's guests may run until, and what its VMMs report. */
struct cd_fence {
	pthread_mutex_t mu;
	pthread_cond_t cond; /* signalled on every renewal (CLOCK_MONOTONIC) */
	struct ha_fence_cfg cfg;
	int64_t lease;	       /* the lease the deadline comes from */
	int64_t registered;    /* the lease nodes/<me> was last written under */
	uint64_t deadline_ns;  /* CLOCK_BOOTTIME; 0: none yet */
	uint64_t renewed_ns;   /* send time of the last acknowledged renewal (BOOTTIME) */
	uint64_t quorum_ns;    /* from a majority's confirmations while etcd is out (quorum.c) */
	struct cd_fenced *vms; /* under mu */
	size_t nvms;
};

/* One cme-vmm this node started (or re-adopted after a restart). */
struct lvm {
	char name[CL_NAME_MAX];
	char dir[CL_PATH_MAX]; /* <state_dir>/vms/<name>: vmm.log meta.json (the daemon's) */
	/* dir/vm, the VMM's own (its jail): api.sock console.log exit.json; dir itself for a
	 * VMM an older daemon started */
	char vdir[CL_PATH_MAX + 8];
	pid_t pid;
	bool child; /* ours to waitpid; an adopted VMM is watched with kill(pid, 0) */
	enum lvm_role role;
	uint64_t epoch;
	char mig_id[40]; /* incoming: the migration it receives */
	bool exited;
	int exit_code;		  /* -1: killed by a signal, or adopted and left no exit.json */
	bool running_seen;	  /* its API answered "running" */
	bool check_mig;		  /* adopted: see whether it waits for a migration decision */
	uint64_t started_ms;	  /* monotonic (now_ns() / 1e6) */
	int64_t balloon_mb;	  /* the balloon target this VMM was given, -1: none yet */
	struct src_mig *src;	  /* outgoing migration worker, while one runs */
	char start_err[512];	  /* why the last start failed before a VMM ran ("": it ran) */
	char restore_id[40];	  /* the restore record this VMM was started from ("": booted) */
	char cgroup[CL_PATH_MAX]; /* its --cgroup ("": none): the folders go when it ends */
};

struct cd {
	const struct cd_config *cfg;
	const atomic_bool *stop;
	struct etcd *etcd;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	bool wake;		   /* under mu */
	bool fast_tick;		   /* main thread: look again in 50 ms (a target is starting) */
	atomic_llong lease;	   /* this node's lease */
	atomic_bool registered;	   /* nodes/<me> written under the current lease */
	atomic_ullong lease_ok_ms; /* send time of the last successful keepalive */
	atomic_ullong tick_ns;	   /* when the main loop last finished a round */
	atomic_bool etcd_down;	   /* the last keepalive got no answer from etcd */
	atomic_ullong etcd_ok_ns;  /* send time of the last keepalive etcd answered (BOOTTIME) */
	atomic_ullong ka_sent_ns;  /* send time of the keepalive in flight, 0: none */
	atomic_bool ka_now;	   /* renew at once (a peer asks whether etcd answers) */
	struct cd_peer *peer;	   /* peer.c */
	struct cd_quorum *quorum;  /* quorum.c */
	int64_t events_lease;
	uint64_t events_lease_ms;
	struct lvm **vms; /* main thread only */
	size_t nvms;
	bool leader;
	uint32_t published_vms;
	char published_members[CL_MEMBERS_HASH]; /* the member list our nodes/ record names */
	int64_t node_rev;			 /* mod_revision of our last write of nodes/<me> */
	uint64_t dup_note_ms;			 /* last "name held by another daemon" log line */
	uint64_t last_view_err_ms;
	struct {
		char key[64];
		uint64_t first_ns, last_ns;
	} seen[64];	       /* when this daemon first saw a migration in a phase (monotonic) */
	pthread_mutex_t ev_mu; /* the events lease, shared with migration workers */
	uint64_t notes[16]; /* hashes of the leader's recent "cannot move" notes: say each once */
	unsigned next_note;
	struct cd_fence fence;
	int lock_fd;			 /* flock on <state_dir>/lock while the daemon runs */
	char (*alive_prev)[CL_NAME_MAX]; /* leader: nodes alive at the last round (node-lost) */
	size_t nalive_prev;
	char (*lost_said)[CL_NAME_MAX]; /* leader: lost nodes it announced (until they return) */
	size_t nlost_said;
	char cpu_features[CL_CPU_MAX]; /* what this host's KVM offers ("": unknown), hostcpu.c */
	char mem_encryption[64];       /* its guest memory encryption ("sev,..."; "": none) */
	uint64_t trust_seq;	       /* the trust record this node took last (trust.c) */
	int64_t trust_refused_rev;     /* the last record it refused (said once) */
};

/* ---- state.c: what every file of the daemon shares ---- */
/* Wake the main loop now (any thread). */
void cd_wake(struct cd *cd);
/* The current lease, or 0 while none is held. */
int64_t cd_lease(struct cd *cd);
/* Milliseconds since this daemon first saw migration id in phase (0 the first time).
 * Local and monotonic: timeouts must not depend on other hosts' clocks. */
uint64_t cd_seen_ms(struct cd *cd, const char *id, const char *phase);
/* later - earlier for wall-clock ms of different hosts, 0 when skew makes it negative. */
static inline uint64_t cd_ms_between(uint64_t later, uint64_t earlier)
{
	return later > earlier ? later - earlier : 0;
}

/* etcd answered a keepalive sent at sent_ns (CLOCK_BOOTTIME), or did not (keepalive thread). */
void cd_etcd_answered(struct cd *cd, bool answered, uint64_t sent_ns);
/* etcd does not answer this node: the last keepalive failed, the one in flight has waited
 * over half a second (into a dead link it would wait etcd_timeout_ms to fail), or none was
 * answered for a renewal period and a second. */
bool cd_etcd_silent(struct cd *cd);
/* Ask the keepalive thread to renew now (so that cd_etcd_silent is fresh soon). */
void cd_etcd_probe(struct cd *cd);

/* Fencing state (state.c). Set up and torn down with the daemon. */
void cd_fence_init(struct cd *cd);
void cd_fence_fini(struct cd *cd);
/* etcd acknowledged a grant or keepalive of lease sent at sent_ns (CLOCK_BOOTTIME, taken
 * before the request went out): the deadline moves to sent_ns + the fencing window. */
void cd_fence_renewed(struct cd *cd, int64_t lease, uint64_t sent_ns);
/* nodes/<me> was written under lease: from now on its renewals may extend deadlines. */
void cd_fence_registered(struct cd *cd, int64_t lease);
/* The current deadline and the lease it comes from. 0 while there is none: fencing off,
 * no renewal yet, or the node is not registered under the renewed lease — a lease that
 * holds no node record protects nothing (the leader restarts the VMs of a node whose
 * record is gone), so its renewals must not keep guests running. */
uint64_t cd_fence_deadline(struct cd *cd, int64_t *lease);
/* A majority of members confirmed, while etcd did not answer, that nobody can restart this
 * node's VMs before deadline_ns (quorum.c): the deadline may move there, for lease only. */
void cd_fence_quorum(struct cd *cd, int64_t lease, uint64_t deadline_ns);
/* Record what l's VMM said about its fence (fence.c). */
void cd_fence_note(struct cd *cd, const char *name, bool fenced, uint64_t fenced_at_ns);
/* True when the VMM of name was fenced at the last report (*at_ns: when). */
bool cd_fence_fenced(struct cd *cd, const char *name, uint64_t *at_ns);
/* Forget name (its VMM is gone). */
void cd_fence_forget(struct cd *cd, const char *name);

/* ---- store.c: the etcd writes reconcile, migrations and the leader share ---- */
/* Post an event from this node. */
void cd_event(struct cd *cd, const char *vm, const char *kind, const char *fmt, ...)
	CME_PRINTF(4, 5);
/* A key under the prefix ("part/name/leaf"); aborts nothing: returns "" if too long. */
const char *cd_key(struct cd *cd, char *buf, size_t len, const char *part, const char *name,
		   const char *leaf);
/* Put a record encoded by enc (any cl_*_json) under key, with lease. 0 or -errno. */
int cd_put_json(struct cd *cd, const char *key, char *json, int64_t lease) CME_WUR;
/* Set vv's owner record to {node, epoch} unless it changed since the read (its mod_rev).
 * Also the claim a node makes before it starts or resumes a VM it owns (the same node and
 * epoch): a reassignment decided on an older read then fails, and so does the claim when
 * a reassignment came first. Returns 1 swapped, 0 lost the race, -errno. */
int cd_owner_cas(struct cd *cd, const struct cl_vm_view *vv, const char *node,
		 uint64_t epoch) CME_WUR;
/* The leader's move of a VM off a lost node: like cd_owner_cas, and only while nodes/<lost>
 * is still absent — a node that registered again since the read keeps its VM (its guests
 * may run on a fresh lease). Returns 1 moved, 0 lost the race, -errno. */
int cd_owner_take(struct cd *cd, const struct cl_vm_view *vv, const char *node, uint64_t epoch,
		  const char *lost) CME_WUR;
/* A post-copy that broke after the switch: vv's owner → {its migration's source, epoch
 * + 1} and the migration record → "taken-back", in one transaction that compares both
 * records (and, with lost, that nodes/<lost> is still absent): nothing the target or the
 * leader decided on since can be overtaken. 1 moved, 0 lost the race, -errno. */
int cd_owner_take_back(struct cd *cd, const struct cl_vm_view *vv, const char *lost) CME_WUR;
/* Put json (freed here; NULL: -ENOMEM) under key if its mod_revision is still *mod_rev
 * (0: only if absent); *mod_rev becomes the new one. 1 swapped, 0 lost the race, -errno
 * with the reason in err. */
int cd_cas_json(struct cd *cd, const char *key, int64_t *mod_rev, char *json,
		struct etcd_err *err) CME_WUR;
/* Compare-and-swap a migration record (m->mod_rev is the expected revision and is
 * updated on success). Returns 1 swapped, 0 lost the race, -errno. */
int cd_mig_cas(struct cd *cd, struct cl_migration *m) CME_WUR;
/* Delete key only if its mod_revision is still mod_rev (one txn). Returns 1 deleted,
 * 0 it had changed, -errno (reason logged). */
int cd_delete_if(struct cd *cd, const char *key, int64_t mod_rev) CME_WUR;
/* True when vv's owner record names this node. */
static inline bool cd_owned_here(const struct cd *cd, const struct cl_vm_view *vv)
{
	return vv->has_owner && !strcmp(vv->owner.node, cd->cfg->node);
}
/* Set vms/<vm>/status to want unless the view already says the same. */
void cd_status_ensure(struct cd *cd, const struct cl_vm_view *vv, const struct cl_status *want);

/* The leader cannot run vv now: status "pending" with the reason (and an event once). */
void cd_pending(struct cd *cd, const struct cl_vm_view *vv, const char *why);

/* ---- peer.c: the peer channel between daemons (mutual TLS, node certificates) ---- */
/* Answers one request from the node whose certificate names from (a JSON object; NULL: no
 * answer). Runs on the peer thread: must not block. */
typedef json_t *(*cd_peer_handler)(struct cd *cd, const char *from, json_t *req);
/* Listen on cfg->peer (default address:7410) and answer requests with handler. 0 or -errno
 * with the reason in err. */
int cd_peer_start(struct cd *cd, cd_peer_handler handler, char *err, size_t errlen) CME_WUR;
void cd_peer_stop(struct cd *cd);
/* "host:port" the peer channel listens on ("" before cd_peer_start). */
const char *cd_peer_addr(const struct cd *cd);
/* Send req to the n members at once; replies[i] gets each answer (caller decrefs) or NULL
 * when that member could not be reached or did not answer within about 2 * ms. */
void cd_peer_ask(struct cd *cd, const struct cl_member *to, size_t n, json_t *req, json_t **replies,
		 unsigned ms);

/* ---- quorum.c: riding out an etcd outage; the leader's releases of lost nodes ---- */
/* Load the cached members, start the peer channel and the ride-through thread. */
int cd_quorum_start(struct cd *cd, char *err, size_t errlen) CME_WUR;
void cd_quorum_stop(struct cd *cd);
/* Each round's view (read started at read_ns, CLOCK_BOOTTIME): the members, this node's
 * members/ record, released nodes that registered again. Main thread. */
void cd_quorum_view(struct cd *cd, const struct cl_view *v, uint64_t read_ns);
/* The hash of the member list this node counts majorities over (cl_members_hash). */
void cd_quorum_members_hash(struct cd *cd, char out[CL_MEMBERS_HASH]);
/* Leader: true once node (lost: its lease expired) can run no guest any more — a majority
 * of members released it and their promises to it ran out (at once when ride-through is
 * off or the cluster has fewer than three members). Otherwise why says what it waits for.
 * May ask the peers (at most about a second). */
bool cd_quorum_fenced(struct cd *cd, const struct cl_view *v, const char *node, char *why,
		      size_t len);

/* ---- hostcpu.c ---- */
/* Ask `cme-vmm cpu-features` what this host's KVM offers, into cd->cpu_features ("" and a
 * logged reason when it cannot tell). Once, at start, before any thread. */
void cd_host_cpu(struct cd *cd);

/* ---- vmm.c: local VMM processes ---- */
struct lvm *cd_lvm_find(struct cd *cd, const char *name);
/* Create a table entry (no process yet). NULL on ENOMEM or a path too long. */
struct lvm *cd_lvm_add(struct cd *cd, const char *name);
/* Remove from the table and free (the process must be gone or disowned). */
void cd_lvm_remove(struct cd *cd, struct lvm *l);
/* Start `cme-vmm run` for spec; epoch is recorded. 0 or -errno with the reason in why. */
int cd_lvm_start_run(struct cd *cd, struct lvm *l, const struct cl_spec *spec, uint64_t epoch,
		     char *why, size_t whylen) CME_WUR;
/* Start `cme-vmm restore --store store ref` for spec instead (its key: config backup_key).
 * 0 or -errno with the reason in why. */
int cd_lvm_start_restore(struct cd *cd, struct lvm *l, const struct cl_spec *spec, uint64_t epoch,
			 const char *store, const char *ref, char *why, size_t whylen) CME_WUR;
/* images.c: the real path of a VM's file (what: "image", "kernel", "initrd", "disk") into
 * out, if it lies inside the node's image_dirs and is a regular file (or, with device, a
 * block device). 0, or -errno with the reason in why. */
int cd_image_path(const struct cd_config *c, const char *what, const char *path, bool device,
		  char *out, size_t len, char *why, size_t whylen) CME_WUR;

/* Start `cme-vmm incoming --commit external` for migration id, with the spec's disk under
 * epoch (the owner epoch the commit gives the VM here); it returns at once (the port comes
 * later: cd_lvm_incoming_port). 0 or -errno with the reason in why. */
int cd_lvm_start_incoming(struct cd *cd, struct lvm *l, const struct cl_spec *spec, uint64_t epoch,
			  const char *mig_id, const char *source, char *why, size_t whylen) CME_WUR;
/* One quick look at an incoming VMM's port: 0 with *port, -EAGAIN while it does not listen
 * yet, -ECHILD when it exited. Never waits: the main loop looks again next round. */
int cd_lvm_incoming_port(struct lvm *l, uint16_t *port) CME_WUR;
/* Refresh l->exited / exit_code. Returns true while the process lives. */
bool cd_lvm_alive(struct lvm *l);
/* One control request; *reply (may be NULL) gets the reply object (caller decrefs).
 * Returns 0 when the VMM answered "ok":true, -EREMOTEIO when it refused (reply kept),
 * -errno when it could not be reached. */
int cd_lvm_request(const struct lvm *l, const char *cmd, json_t *args, json_t **reply) CME_WUR;
/* Stop the VMM: "stop", then SIGKILL after grace_ms. Waits until it is gone. */
void cd_lvm_stop(struct lvm *l, unsigned grace_ms);
/* Record role/epoch/migration in meta.json so a restarted daemon can re-adopt. */
void cd_lvm_save_meta(const struct lvm *l);
/* Re-adopt every VMM still running from a previous life of the daemon. */
void cd_lvm_adopt_all(struct cd *cd);
/* The console log file of a VM on this node. */
void cd_lvm_console_path(const struct lvm *l, char *buf, size_t len);
/* Why a VMM ended, as its exit file says: "forbidden system call X in a Y thread" when its
 * sandbox ended it, or the reason it failed to set up ("boot refused: ..."); "" when none. */
void cd_lvm_exit_why(const struct lvm *l, char *buf, size_t len);

/* ---- fence.c: the thread that pushes deadlines to this node's VMMs ---- */
void *cd_fence_main(void *arg);
/* Wake the fence thread (to stop, or to push at once). */
void cd_fence_wake(struct cd *cd);

/* ---- restore.c: VMs started from a backup (cmectl vm restore) ---- */
/* vv asks to be restored: start l's VMM from the backup instead of booting it (status in
 * *s). False when there is no restore to do. Main thread, in reconcile's start. */
bool cd_restore_start(struct cd *cd, const struct cl_vm_view *vv, struct lvm *l,
		      struct cl_status *s);
/* l's VMM, started from a backup, ended before it ran: the restore record fails with its
 * reason (true: said now; reconcile looks again next round). */
bool cd_restore_ended(struct cd *cd, const struct cl_vm_view *vv, struct lvm *l);
/* l's VMM, started from a backup, runs: the record is done. */
void cd_restore_running(struct cd *cd, const struct cl_vm_view *vv, struct lvm *l);
/* A restore record left "running" that nobody will end: on its node, no VMM of it runs
 * any more (the daemon restarted and the VMM is gone, or the VM was started otherwise);
 * for the leader, its node is lost. Failed with the reason, so the VM may be restored
 * again. */
void cd_restore_orphaned(struct cd *cd, const struct cl_view *v, const struct cl_vm_view *vv,
			 const struct lvm *l);

/* ---- reconcile.c ---- */
/* Make this node's VMMs match the view: owned VMs run, others do not. */
void cd_reconcile(struct cd *cd, const struct cl_view *v);

/* ---- migration.c (source worker) and mig_steps.c (the main loop's part) ---- */
/* Mark vv's migration failed with the reason (compare-and-swap on the read). */
void cd_mig_fail(struct cd *cd, const struct cl_vm_view *vv, const char *fmt, ...) CME_PRINTF(3, 4);
/* Start the source worker for vv's migration of l (adopt: after a restart, poll). */
void cd_src_launch(struct cd *cd, struct lvm *l, const struct cl_vm_view *vv, bool adopt);
/* Advance every migration this node is source or target of. */
void cd_migrations(struct cd *cd, const struct cl_view *v);
/* Join finished workers; returns true while any worker runs. */
bool cd_migrations_reap(struct cd *cd, bool wait_all);
/* True when l's VM is part of an active migration this node takes part in, so reconcile
 * must leave it alone. */
bool cd_migration_owns(struct cd *cd, const struct cl_view *v, const struct lvm *l);

/* ---- trust.c: signed boot in the cluster ---- */
/* This node runs only signed boots (config operator_keys). */
bool cd_trust_required(const struct cd *cd);
/* STATE_DIR/trust.keys into buf: 0, or -ENOENT while this node has taken no record yet. */
int cd_trust_file(const struct cd *cd, char *buf, size_t len);
/* The seq taken last, from STATE_DIR (at start). */
void cd_trust_load(struct cd *cd);
/* Take the view's trust record when an operator key of this node signed it and its seq is
 * above the last; say a refusal once. Main thread. */
void cd_trust_sync(struct cd *cd, const struct cl_view *v);

/* ---- backup.c: backups of the VMs this node owns ---- */
/* Run the backups vms/<vm>/backup asks of this node, start the schedules that are due,
 * and prune after scheduled ones. Main thread. */
void cd_backups(struct cd *cd, const struct cl_view *v);
/* Wait for a prune still running (daemon exit). */
void cd_backups_stop(struct cd *cd);

/* ---- pc_recover.c: a post-copy that broke after the switch ---- */
/* The VM's post-copy runs or broke, the owner record names its target, and the source
 * node (which holds the guest as of the switch) is up. */
bool cd_pc_source_holds(const struct cl_view *v, const struct cl_vm_view *vv);
/* Source, record "postcopy-broken": take the VM back once the target's VMM ended; record
 * "taken-back" (by us or the leader): run it here again and end the record. */
void cd_pc_recover(struct cd *cd, const struct cl_vm_view *vv);
/* Target, its VMM ended during post-copy: true while the source holds the guest (restart
 * nothing); with the source node lost too, fails the record and returns false. */
bool cd_pc_target_waits(struct cd *cd, const struct cl_view *v, const struct cl_vm_view *vv);
/* Leader, vv's owner node lost: 0 not a post-copy matter; 1 held until the node is fenced
 * (why says so); 2 given back to the source. */
int cd_pc_lost_target(struct cd *cd, const struct cl_view *v, const struct cl_vm_view *vv,
		      char *why, size_t len);

/* ---- restart.c (the leader's): VMs of nodes whose lease expired ---- */
/* Restart them on the surviving nodes, tier by tier (ha_restart_plan); h is updated for
 * the leader's later steps of this round. */
void cd_restart_lost(struct cd *cd, const struct cl_view *v, struct cl_ha *h);

/* ---- leader.c ---- */
void cd_leader(struct cd *cd, const struct cl_view *v);

#endif

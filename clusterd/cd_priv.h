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

struct src_mig;

/* One cme-vmm this node started (or re-adopted after a restart). */
struct lvm {
	char name[CL_NAME_MAX];
	char dir[CL_PATH_MAX]; /* <state_dir>/vms/<name>: api.sock console.log vmm.log meta.json */
	pid_t pid;
	bool child; /* ours to waitpid; an adopted VMM is watched with kill(pid, 0) */
	enum lvm_role role;
	uint64_t epoch;
	char mig_id[40]; /* incoming: the migration it receives */
	bool exited;
	int exit_code;	     /* -1: unknown (adopted, or killed by a signal) */
	bool running_seen;   /* its API answered "running" */
	bool check_mig;	     /* adopted: see whether it waits for a migration decision */
	uint64_t started_ms; /* monotonic (now_ns() / 1e6) */
	struct src_mig *src; /* outgoing migration worker, while one runs */
};

struct cd {
	const struct cd_config *cfg;
	const atomic_bool *stop;
	struct etcd *etcd;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	bool wake;		   /* under mu */
	atomic_llong lease;	   /* this node's lease */
	atomic_bool registered;	   /* nodes/<me> written under the current lease */
	atomic_ullong lease_ok_ms; /* send time of the last successful keepalive */
	atomic_ullong tick_ns;	   /* when the main loop last finished a round */
	int64_t events_lease;
	uint64_t events_lease_ms;
	struct lvm **vms; /* main thread only */
	size_t nvms;
	bool leader;
	uint32_t published_vms;
	int64_t node_rev;     /* mod_revision of our last write of nodes/<me> */
	uint64_t dup_note_ms; /* last "name held by another daemon" log line */
	uint64_t last_view_err_ms;
	struct {
		char key[64];
		uint64_t first_ns, last_ns;
	} seen[64];	       /* when this daemon first saw a migration in a phase (monotonic) */
	pthread_mutex_t ev_mu; /* the events lease, shared with migration workers */
	uint64_t notes[16]; /* hashes of the leader's recent "cannot move" notes: say each once */
	unsigned next_note;
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

/* ---- store.c: the etcd writes reconcile, migrations and the leader share ---- */
/* Post an event from this node. */
void cd_event(struct cd *cd, const char *vm, const char *kind, const char *fmt, ...)
	CME_PRINTF(4, 5);
/* A key under the prefix ("part/name/leaf"); aborts nothing: returns "" if too long. */
const char *cd_key(struct cd *cd, char *buf, size_t len, const char *part, const char *name,
		   const char *leaf);
/* Put a record encoded by enc (any cl_*_json) under key, with lease. 0 or -errno. */
int cd_put_json(struct cd *cd, const char *key, char *json, int64_t lease) CME_WUR;
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

/* ---- vmm.c: local VMM processes ---- */
struct lvm *cd_lvm_find(struct cd *cd, const char *name);
/* Create a table entry (no process yet). NULL on ENOMEM or a path too long. */
struct lvm *cd_lvm_add(struct cd *cd, const char *name);
/* Remove from the table and free (the process must be gone or disowned). */
void cd_lvm_remove(struct cd *cd, struct lvm *l);
/* Start `cme-vmm run` for spec; epoch is recorded. 0 or -errno (reason logged). */
int cd_lvm_start_run(struct cd *cd, struct lvm *l, const struct cl_spec *spec,
		     uint64_t epoch) CME_WUR;
/* Start `cme-vmm incoming --commit external` for migration id; *port gets its port. */
int cd_lvm_start_incoming(struct cd *cd, struct lvm *l, const struct cl_spec *spec,
			  const char *mig_id, uint16_t *port, char *why, size_t whylen) CME_WUR;
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

/* ---- leader.c ---- */
void cd_leader(struct cd *cd, const struct cl_view *v);

#endif

/* clusterd — the etcd v3 client of CME: the gRPC gateway's JSON over HTTP (libcurl), with
 * endpoint failover, a timeout on every call, TLS client certificates and a watch that
 * resumes after disconnects. See /work/shared/ETCD.md for the gateway's traps.
 *
 * Conventions for every function below: returns 0 or -errno and, when err is not NULL,
 * fills err->msg with a one-line reason. Output parameters hold results only on success.
 * Keys are NUL-terminated strings; values are bytes. A struct etcd may be used by several
 * threads at once (each call borrows its own HTTP handle).
 *
 * Errors common to every call:
 *   -EHOSTUNREACH  no endpoint could be connected ("etcd unreachable: <ep>: <why>; ...")
 *   -ETIMEDOUT     the call ran out of cfg.timeout_ms, or etcd reported a deadline or a
 *                  request timeout. For a WRITE (put, delete, txn, lease calls, compact)
 *                  the outcome is UNKNOWN: it may have been applied. Make writes
 *                  compare-and-swap or idempotent and re-read before deciding.
 *   -ECONNRESET    the connection broke after the request was sent (outcome unknown too)
 *   -EAGAIN        etcd has no leader (or is otherwise unavailable); retry later
 *   -EACCES        permission denied;  -EPERM  authentication token refused
 *   -EINVAL        etcd refused the request as malformed (e.g. an empty key)
 *   -ENOSPC        etcd's database is full
 *   -EPROTO        the reply was not what the gateway sends
 *   -EMSGSIZE      a reply over 64 MiB (read a large range in pages with limit)
 *   -EIO           any other error etcd reported
 *   -ENOMEM        out of memory */
#ifndef CME_CLUSTERD_H
#define CME_CLUSTERD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "ha.h"

struct etcd;

struct etcd_err {
	char msg[256];
};

struct etcd_cfg {
	const char *endpoints;	     /* comma-separated http(s)://host:port, at least one */
	const char *ca, *cert, *key; /* optional PEM files for https endpoints */
	int timeout_ms;		     /* budget of each call, all endpoints included; 0: 5000 */
};

/* Prepare a client (no connection is made yet). cfg's strings are copied. Returns 0 with
 * *out set (release with etcd_close), or -EINVAL for a bad endpoint list. */
int etcd_open(const struct etcd_cfg *cfg, struct etcd **out, struct etcd_err *err) CME_WUR;
/* Release the client. No call may be running on it. NULL is a no-op. */
void etcd_close(struct etcd *e);

/* ---- keys and values ---------------------------------------------------------------- */

/* One key as etcd stores it. val is followed by a NUL byte not counted in vlen, so JSON
 * values can be read as strings. Revisions and lease are 0 when absent. */
struct etcd_kv {
	char *key;
	uint8_t *val;
	size_t vlen;
	int64_t create_rev, mod_rev, version, lease;
};

/* A range's result: kv[0..n) sorted by key; more when limit cut it short. */
struct etcd_kvs {
	struct etcd_kv *kv;
	size_t n;
	int64_t header_rev; /* the store's revision the read saw */
	bool more;
};

/* What to read: one key (range_end NULL, prefix false), every key with key as prefix
 * (prefix true; key "" means all keys), or [key, range_end). revision 0 reads the
 * latest; limit 0 means no limit. */
struct etcd_range_req {
	const char *key;
	const char *range_end;
	bool prefix;
	int64_t revision;
	int64_t limit;
};

/* Free one heap kv from etcd_get/etcd_create (NULL is a no-op). */
void etcd_kv_free(struct etcd_kv *kv);
/* Free the contents of kvs (the struct itself belongs to the caller) and zero it. */
void etcd_kvs_free(struct etcd_kvs *kvs);

/* Put key = val[0..vlen), attached to lease (0: none; an unknown lease gives -ENOENT).
 * *rev (may be NULL) receives the revision of the write. */
int etcd_put(struct etcd *e, const char *key, const void *val, size_t vlen, int64_t lease,
	     int64_t *rev, struct etcd_err *err) CME_WUR;
/* Read one key (linearizable). Returns 0 with *out a heap kv the caller frees with
 * etcd_kv_free, or 0 with *out NULL when the key does not exist. */
int etcd_get(struct etcd *e, const char *key, struct etcd_kv **out, struct etcd_err *err) CME_WUR;
/* Read a range (linearizable). Returns 0 with *out filled (caller calls etcd_kvs_free);
 * -ESTALE when req->revision was compacted, -ERANGE when it is in the future. */
int etcd_range(struct etcd *e, const struct etcd_range_req *req, struct etcd_kvs *out,
	       struct etcd_err *err) CME_WUR;
/* Delete key, or every key under the prefix key when prefix. *deleted (may be NULL)
 * receives how many keys went. */
int etcd_delete(struct etcd *e, const char *key, bool prefix, int64_t *deleted,
		struct etcd_err *err) CME_WUR;
/* Compact the history up to revision (physical: wait until it is removed from disk).
 * -ESTALE when revision is already compacted, -ERANGE when it is in the future. */
int etcd_compact(struct etcd *e, int64_t revision, bool physical, struct etcd_err *err) CME_WUR;

/* ---- transactions ------------------------------------------------------------------- */

enum etcd_cmp_target { ETCD_CMP_VALUE, ETCD_CMP_VERSION, ETCD_CMP_CREATE, ETCD_CMP_MOD };
enum etcd_cmp_result { ETCD_CMP_EQUAL, ETCD_CMP_NOT_EQUAL, ETCD_CMP_GREATER, ETCD_CMP_LESS };

/* "key's target <result> operand": VALUE compares val[0..vlen) (false when the key is
 * absent); VERSION, CREATE (create_revision) and MOD (mod_revision) compare num, and an
 * absent key has them all 0 (so CREATE == 0 means "absent"). */
struct etcd_cmp {
	const char *key;
	enum etcd_cmp_target target;
	enum etcd_cmp_result result;
	int64_t num;
	const void *val;
	size_t vlen;
};

enum etcd_op_type { ETCD_OP_PUT, ETCD_OP_DELETE, ETCD_OP_RANGE };

/* One operation: PUT key = val with lease; DELETE or RANGE key (or its prefix). */
struct etcd_op {
	enum etcd_op_type type;
	const char *key;
	const void *val;
	size_t vlen;
	int64_t lease;
	bool prefix;
};

/* If every cmp holds, run success[], otherwise failure[]. */
struct etcd_txn {
	const struct etcd_cmp *cmp;
	size_t ncmp;
	const struct etcd_op *success;
	size_t nsuccess;
	const struct etcd_op *failure;
	size_t nfailure;
};

/* The response of one executed op: kvs for RANGE, deleted for DELETE, nothing for PUT. */
struct etcd_op_resp {
	enum etcd_op_type type;
	struct etcd_kvs kvs;
	int64_t deleted;
};

/* succeeded tells which branch ran; resp[i] answers that branch's op i; header_rev is the
 * revision after the txn (the revision of its writes, if any). */
struct etcd_txn_resp {
	bool succeeded;
	int64_t header_rev;
	struct etcd_op_resp *resp;
	size_t n;
};

/* Run a transaction. Returns 0 with *out filled (caller calls etcd_txn_resp_free). A txn
 * that times out has an unknown outcome (see above). */
int etcd_txn(struct etcd *e, const struct etcd_txn *t, struct etcd_txn_resp *out,
	     struct etcd_err *err) CME_WUR;
/* Free the contents of r and zero it. */
void etcd_txn_resp_free(struct etcd_txn_resp *r);

/* Create key = val with lease only if the key does not exist. *created tells whether
 * this call created it. *kv (may be NULL) receives the key as it now stands — ours when
 * created (its create_rev is a fencing token), the existing one otherwise — as a heap
 * kv for etcd_kv_free. */
int etcd_create(struct etcd *e, const char *key, const void *val, size_t vlen, int64_t lease,
		bool *created, struct etcd_kv **kv, struct etcd_err *err) CME_WUR;
/* Put key = val with lease only if the key's mod_revision still equals mod_rev (0: only
 * if absent). *swapped tells whether it did; *new_rev (may be NULL) receives the key's
 * new mod_revision when swapped. */
int etcd_cas_mod(struct etcd *e, const char *key, int64_t mod_rev, const void *val, size_t vlen,
		 int64_t lease, bool *swapped, int64_t *new_rev, struct etcd_err *err) CME_WUR;

/* ---- leases ------------------------------------------------------------------------- */

/* Grant a lease of ttl_s seconds (etcd raises anything below 2 s to 2 s). *id receives
 * its ID (a full int64, above 2^53), *granted_ttl (may be NULL) the TTL etcd chose. */
int etcd_lease_grant(struct etcd *e, int64_t ttl_s, int64_t *id, int64_t *granted_ttl,
		     struct etcd_err *err) CME_WUR;
/* The same with an ID the caller chooses (> 0); -EEXIST when that lease exists. */
int etcd_lease_grant_id(struct etcd *e, int64_t id, int64_t ttl_s, int64_t *granted_ttl,
			struct etcd_err *err) CME_WUR;
/* Renew a lease once; *ttl_left (may be NULL) receives its TTL again. -ENOENT when the
 * lease has expired or never existed. Call it every TTL/3. A timeout says nothing about
 * whether the renewal happened: fence on the send time of the last success only. */
int etcd_lease_keepalive(struct etcd *e, int64_t id, int64_t *ttl_left,
			 struct etcd_err *err) CME_WUR;
/* Revoke a lease: its keys are deleted at once. -ENOENT when it does not exist. */
int etcd_lease_revoke(struct etcd *e, int64_t id, struct etcd_err *err) CME_WUR;
/* A lease's remaining *ttl and *granted TTL in seconds (either may be NULL); -ENOENT when
 * it has expired or never existed. */
int etcd_lease_ttl(struct etcd *e, int64_t id, int64_t *ttl, int64_t *granted,
		   struct etcd_err *err) CME_WUR;

/* ---- watch -------------------------------------------------------------------------- */

/* PUT/DELETE: one change (kv; prev_kv when etcd still had it, else NULL; rev = the
 * change's mod revision). A DELETE's kv carries only key and mod_rev.
 * RESET: history from the watch's position was compacted (rev = compact revision): forget
 * every key seen so far; the current contents follow as PUT events with resync set, then
 * a PROGRESS event.
 * PROGRESS: every change up to rev has been delivered (kv NULL). */
enum etcd_event_type { ETCD_EV_PUT, ETCD_EV_DELETE, ETCD_EV_RESET, ETCD_EV_PROGRESS };

struct etcd_event {
	enum etcd_event_type type;
	const struct etcd_kv *kv;
	const struct etcd_kv *prev_kv;
	int64_t rev;
	bool resync;
};

/* Called in etcd_watch's thread; ev and what it points to live only during the call.
 * Return 0 to go on; anything else ends etcd_watch, which returns it. */
typedef int (*etcd_watch_cb)(void *opaque, const struct etcd_event *ev);

/* Watch key (or the prefix key) from start_rev (0: from now on) in the calling thread,
 * delivering every change exactly once, in revision order. After a disconnect it
 * reconnects (backoff up to 2 s, next endpoint each time) and resumes from the last
 * revision seen + 1; when that revision was compacted it resyncs (RESET above). Returns
 * 0 within ~200 ms of *stop becoming true (a resync read under way finishes first), the
 * callback's nonzero return, or -errno for what retrying cannot fix (-EACCES, -EPERM,
 * -EINVAL, -ENOMEM). */
int etcd_watch(struct etcd *e, const char *key, bool prefix, int64_t start_rev, etcd_watch_cb cb,
	       void *opaque, const atomic_bool *stop, struct etcd_err *err) CME_WUR;

/* ==== cluster records ==================================================================
 * The records of DESIGN.md "The cluster", under a prefix (default "/cme"), JSON values an
 * operator can read with etcdctl. Every record read from etcd is untrusted: decoding checks
 * types, ranges and names and fails with -EINVAL and a reason. Names of nodes, VMs and
 * groups: 1..63 of [a-z0-9._-], starting with a letter or digit (they become keys and file
 * names). */

#define CL_NAME_MAX 64
#define CL_PATH_MAX 512

/* True when s is a valid node/VM/group name. */
bool cl_name_ok(const char *s);

/* nodes/<node>: written by the node, bound to its lease. */
struct cl_node {
	char name[CL_NAME_MAX];
	char addr[128];	     /* host other nodes reach for migrations */
	uint32_t cpus;	     /* vCPUs offered */
	uint64_t mem_mb;     /* MiB of guest memory offered */
	uint32_t vms;	     /* VMMs running here */
	uint64_t started_ms; /* when this clusterd started (wall clock) */
	char version[32];
};

/* admin/<node>: "schedulable" | "draining" | "maintenance"; survives the node's lease. */
struct cl_admin {
	char state[16];
	uint64_t since_ms;
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
	char state[16]; /* starting running stopped migrating failed pending */
	int pid;
	uint64_t epoch;
	uint32_t restarts;
	char error[512];
	uint64_t since_ms;
	char console[CL_PATH_MAX]; /* console log file on node */
};

/* migrations/<vm>: requested by cmectl or the leader, then advanced by the nodes.
 * Phases: requested → ready (target listens at dest_addr) → streaming → committed → done,
 * or failed from any phase before committed. */
struct cl_migration {
	char id[40];
	char vm[CL_NAME_MAX];
	char source[CL_NAME_MAX];
	char target[CL_NAME_MAX];
	char phase[16];
	char by[16]; /* "cmectl" | "drain" */
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
	int64_t mod_rev;     /* from the read, not part of the JSON */
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
char *cl_spec_json(const struct cl_spec *s);
char *cl_owner_json(const struct cl_owner *o);
char *cl_status_json(const struct cl_status *s);
char *cl_migration_json(const struct cl_migration *m);
char *cl_event_json(const struct cl_event *e);

/* Decode JSON text (len bytes) into a zeroed record; 0 or -EINVAL with a reason in err. */
int cl_node_parse(const char *txt, size_t len, struct cl_node *n, struct etcd_err *err) CME_WUR;
int cl_admin_parse(const char *txt, size_t len, struct cl_admin *a, struct etcd_err *err) CME_WUR;
int cl_spec_parse(const char *txt, size_t len, struct cl_spec *s, struct etcd_err *err) CME_WUR;
int cl_owner_parse(const char *txt, size_t len, struct cl_owner *o, struct etcd_err *err) CME_WUR;
int cl_status_parse(const char *txt, size_t len, struct cl_status *s, struct etcd_err *err) CME_WUR;
int cl_migration_parse(const char *txt, size_t len, struct cl_migration *m,
		       struct etcd_err *err) CME_WUR;
int cl_event_parse(const char *txt, size_t len, struct cl_event *e, struct etcd_err *err) CME_WUR;

/* A spec's checks beyond types: sizes in range, exactly one of image/kernel, restart policy
 * known, names valid. 0 or -EINVAL with the reason. */
int cl_spec_check(const struct cl_spec *s, struct etcd_err *err) CME_WUR;

/* True for the phases in which a migration still runs (requested ready streaming committed). */
bool cl_migration_active(const struct cl_migration *m);

/* ---- the whole cluster as one consistent read --------------------------------------- */

struct cl_node_view {
	char name[CL_NAME_MAX];
	bool alive;	       /* nodes/<name> exists (its lease holds) */
	struct cl_node node;   /* valid when alive */
	struct cl_admin admin; /* state "schedulable" when there is no admin record */
};

struct cl_vm_view {
	char name[CL_NAME_MAX];
	bool has_spec, has_owner, has_status, has_mig;
	struct cl_spec spec;
	struct cl_owner owner;
	struct cl_status status;
	struct cl_migration mig;
	bool bad; /* a spec, owner or migration record is present but unreadable: leave the VM
		   * exactly as it is until an operator fixes it (never treat it as absent) */
	int64_t spec_rev;   /* spec's mod_revision */
	int64_t status_rev; /* status's mod_revision */
};

struct cl_view {
	int64_t rev; /* the store revision this view reflects */
	char leader[CL_NAME_MAX];
	struct cl_node_view *nodes;
	size_t nnodes;
	struct cl_vm_view *vms;
	size_t nvms;
	size_t bad; /* records skipped as malformed (each logged once per read) */
};

/* Read every record under prefix in one linearizable range (paged) into *v (caller frees
 * with cl_view_free). Malformed records are skipped and counted, never fatal. */
int cl_view_read(struct etcd *e, const char *prefix, struct cl_view *v,
		 struct etcd_err *err) CME_WUR;
void cl_view_free(struct cl_view *v);
struct cl_node_view *cl_view_node(const struct cl_view *v, const char *name);
struct cl_vm_view *cl_view_vm(const struct cl_view *v, const char *name);

/* The view as ha's plain structs (names point into v, which must outlive it): a VM is
 * wanted when its spec says running, its owner is its owner record's node, its target the
 * target of an active migration. Returns 0 or -ENOMEM; free with cl_ha_free. */
struct cl_ha {
	struct ha_cluster c;
	struct ha_node *nodes;
	struct ha_vm *vms;
};
int cl_view_ha(const struct cl_view *v, struct cl_ha *out) CME_WUR;
void cl_ha_free(struct cl_ha *h);

/* Append an event (best effort: failures are logged, not returned). lease 0: a lease of
 * a day is granted for it. */
void cl_event_post(struct etcd *e, const char *prefix, int64_t lease, const char *node,
		   const char *vm, const char *kind, const char *fmt, ...) CME_PRINTF(7, 8);

/* ==== the cluster daemon (cme-clusterd) ================================================= */

/* The daemon's configuration file: one "key = value" per line, '#' comments. Keys and
 * defaults are in README ("cme-clusterd configuration"). */
struct cd_config {
	char node[CL_NAME_MAX];
	char etcd[1024];
	char etcd_ca[CL_PATH_MAX], etcd_cert[CL_PATH_MAX], etcd_key[CL_PATH_MAX];
	char prefix[128];
	char address[128];	   /* host this node's VMMs listen on for migrations */
	char tls_dir[CL_PATH_MAX]; /* this node's ca.crt, tls.crt, tls.key */
	char state_dir[CL_PATH_MAX];
	char vmm[CL_PATH_MAX]; /* the cme-vmm binary */
	unsigned lease_ttl_s;
	uint32_t cpus;
	uint64_t mem_mb;
	unsigned max_migrations, max_migrations_per_node;
	unsigned progress_interval_ms;
	unsigned etcd_timeout_ms;
	unsigned prepare_timeout_s; /* how long a target may take to listen */
};

/* Fill defaults, then read path. 0, or -errno with "path:line: reason" in err. */
int cd_config_load(const char *path, struct cd_config *c, char *err, size_t errlen) CME_WUR;

/* Run the daemon until *stop becomes true: register, elect, reconcile, orchestrate. VMMs
 * keep running when it returns (a restarted daemon re-adopts them). Returns 0, or -errno
 * when it could not start (state dir unusable, bad etcd settings) with the reason in err. */
int cd_run(const struct cd_config *c, const atomic_bool *stop, char *err, size_t errlen) CME_WUR;

#endif

/* etcd — the etcd v3 client of CME: the gRPC gateway's JSON over HTTP (libcurl), with
 * endpoint failover, a timeout on every call, TLS client certificates and a watch that
 * resumes after disconnects. The gateway's traps (int64s as strings, zero values omitted,
 * a watch that stays silent without quorum) are handled inside; callers see the contracts
 * below.
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
#ifndef CME_ETCD_H
#define CME_ETCD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

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
	char *key; /* NUL-terminated; klen counts its bytes (a key may hold NULs) */
	size_t klen;
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

#endif

/* The etcd client's internals: the HTTP plumbing (etcd.c), JSON and base64 helpers
 * (etcd_json.c), shared by the KV, txn, lease and watch files. */
#ifndef CME_ETCD_PRIV_H
#define CME_ETCD_PRIV_H

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>

#include "etcd.h"

#define ETCD_POOL_MAX	 4
#define ETCD_REPLY_MAX	 (64u << 20) /* largest reply or watch line accepted */
#define ETCD_DEFAULT_TMO 5000

struct etcd {
	char **ep; /* endpoints, without trailing '/' */
	size_t nep;
	char *ca, *cert, *key;
	int timeout_ms;
	atomic_uint cur; /* endpoint that answered last: calls start there */
	pthread_mutex_t lock;
	CURL *pool[ETCD_POOL_MAX]; /* idle handles, keeping their connections */
	size_t npool;
	size_t watch_line_max; /* a watch response's largest; 0: ETCD_REPLY_MAX (tests lower it) */
};

/* A growing byte buffer that refuses to exceed max bytes. */
struct etcd_buf {
	char *p;
	size_t len, cap, max;
};

/* Append n bytes (keeping a NUL after them). Returns 0, -EMSGSIZE or -ENOMEM. */
int etcd_buf_add(struct etcd_buf *b, const void *p, size_t n);
void etcd_buf_free(struct etcd_buf *b);

/* Printf the reason into err (NULL: ignored) and return rc. */
int etcd_fail(struct etcd_err *err, int rc, const char *fmt, ...) CME_PRINTF(3, 4);

/* POST body (not consumed) to path on the first endpoint that connects, within the
 * timeout. Returns 0 with *reply the parsed JSON object of a 200 (caller decrefs), or
 * -errno with err set from the transport or from etcd's error body. */
int etcd_call(struct etcd *e, const char *path, const json_t *body, json_t **reply,
	      struct etcd_err *err);
/* Map an etcd error (gRPC code, message) to -errno and a reason in err. */
int etcd_map_error(int code, const char *msg, struct etcd_err *err);
/* Set the options every handle needs (TLS files, keepalive, no signals). */
void etcd_curl_common(struct etcd *e, CURL *h);

/* The watch's stream reader alone (etcd_watch.c), for the fuzz target and unit tests: the
 * bytes of one connection started at start_rev (0: "from now"), handed over chunk bytes
 * at a time as libcurl would, events to cb. Returns the state it ended in (0: still
 * running, then 1 stop, 2 the callback's stop, 3 fatal, 4 lost, 5 compacted, 6 a
 * response over the line limit) and the position a reconnect would resume from in
 * *next_rev. */
int etcd_watch_read(const char *data, size_t len, size_t chunk, int64_t start_rev, etcd_watch_cb cb,
		    void *opaque, int64_t *next_rev);

/* ---- JSON and base64 (etcd_json.c) -------------------------------------------------- */

/* A JSON string holding base64 of p[0..n), or NULL on ENOMEM. */
json_t *etcd_json_b64(const void *p, size_t n);
/* A JSON string holding v in decimal (the gateway's int64 form). */
json_t *etcd_json_i64(int64_t v);
/* Decode base64 string s into a heap buffer with a NUL after its *n bytes. NULL s or ""
 * gives an empty buffer. Returns 0, -EPROTO or -ENOMEM. */
int etcd_json_unb64(const char *s, uint8_t **out, size_t *n);
/* Read int64 field k of o (a decimal string or an integer; missing: 0). 0 or -EPROTO. */
int etcd_json_i64_get(const json_t *o, const char *k, int64_t *out);
/* o.header.revision, 0 when missing or bad. */
int64_t etcd_json_header_rev(const json_t *o);
/* Parse one mvccpb.KeyValue into kv (owning its buffers). 0, -EPROTO or -ENOMEM. */
int etcd_json_kv(const json_t *j, struct etcd_kv *kv);
/* Parse a RangeResponse into out. 0, -EPROTO or -ENOMEM. */
int etcd_json_kvs(const json_t *j, struct etcd_kvs *out);
/* Free kv's buffers (not kv itself). */
void etcd_json_kv_clear(struct etcd_kv *kv);

/* The end of key's prefix range: key with its last byte below 0xff incremented and the
 * rest cut (all 0xff or "": "\0", length 1). Heap, NUL-terminated; length in *n. */
char *etcd_json_prefix_end(const char *key, size_t klen, size_t *n);
/* Set "key" and "range_end" of o: one key, key's prefix, or [key, end). 0 or -ENOMEM. */
int etcd_json_set_range(json_t *o, const char *key, bool prefix, const char *end);
/* Like etcd_json_set_range with explicit byte strings (end may be NULL). */
int etcd_json_set_range_b(json_t *o, const char *key, size_t klen, const char *end, size_t elen);

#endif

/* Keys and values: put, get, range, delete, compact. */
#include "etcd_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int oom(struct etcd_err *err)
{
	return etcd_fail(err, -ENOMEM, "etcd: out of memory");
}

int etcd_put(struct etcd *e, const char *key, const void *val, size_t vlen, int64_t lease,
	     int64_t *rev, struct etcd_err *err)
{
	json_t *body = json_object(), *reply = NULL;
	int rc;

	if (!body || etcd_json_set_range(body, key, false, NULL) ||
	    json_object_set_new(body, "value", etcd_json_b64(val, vlen)) ||
	    json_object_set_new(body, "lease", etcd_json_i64(lease))) {
		json_decref(body);
		return oom(err);
	}
	rc = etcd_call(e, "/v3/kv/put", body, &reply, err);
	json_decref(body);
	if (rc)
		return rc;
	if (rev)
		*rev = etcd_json_header_rev(reply);
	json_decref(reply);
	return 0;
}

/* Build a RangeRequest body. */
static json_t *range_body(const struct etcd_range_req *req)
{
	json_t *body = json_object();

	if (!body ||
	    etcd_json_set_range(body, req->key, req->prefix, req->prefix ? NULL : req->range_end) ||
	    (req->revision &&
	     json_object_set_new(body, "revision", etcd_json_i64(req->revision))) ||
	    (req->limit && json_object_set_new(body, "limit", etcd_json_i64(req->limit)))) {
		json_decref(body);
		return NULL;
	}
	return body;
}

int etcd_range(struct etcd *e, const struct etcd_range_req *req, struct etcd_kvs *out,
	       struct etcd_err *err)
{
	json_t *body = range_body(req), *reply = NULL;
	int rc;

	if (!body)
		return oom(err);
	rc = etcd_call(e, "/v3/kv/range", body, &reply, err);
	json_decref(body);
	if (rc == -ESTALE)
		return etcd_fail(err, rc, "revision %lld was compacted", (long long)req->revision);
	if (rc)
		return rc;
	rc = etcd_json_kvs(reply, out);
	json_decref(reply);
	if (rc)
		return etcd_fail(err, rc, "etcd: bad range reply for %s", req->key);
	return 0;
}

int etcd_get(struct etcd *e, const char *key, struct etcd_kv **out, struct etcd_err *err)
{
	struct etcd_range_req req = { .key = key };
	struct etcd_kvs kvs;
	int rc;

	rc = etcd_range(e, &req, &kvs, err);
	if (rc)
		return rc;
	*out = NULL;
	if (kvs.n) {
		/* Hand over the first element's buffers; kvs.kv is then freed empty. */
		if (!(*out = malloc(sizeof(**out)))) {
			etcd_kvs_free(&kvs);
			return oom(err);
		}
		**out = kvs.kv[0];
		memset(&kvs.kv[0], 0, sizeof(kvs.kv[0]));
	}
	etcd_kvs_free(&kvs);
	return 0;
}

int etcd_delete(struct etcd *e, const char *key, bool prefix, int64_t *deleted,
		struct etcd_err *err)
{
	json_t *body = json_object(), *reply = NULL;
	int64_t n;
	int rc;

	if (!body || etcd_json_set_range(body, key, prefix, NULL)) {
		json_decref(body);
		return oom(err);
	}
	rc = etcd_call(e, "/v3/kv/deleterange", body, &reply, err);
	json_decref(body);
	if (rc)
		return rc;
	rc = etcd_json_i64_get(reply, "deleted", &n);
	json_decref(reply);
	if (rc)
		return etcd_fail(err, rc, "etcd: bad delete reply for %s", key);
	if (deleted)
		*deleted = n;
	return 0;
}

int etcd_compact(struct etcd *e, int64_t revision, bool physical, struct etcd_err *err)
{
	json_t *body =
		json_pack("{s:o,s:b}", "revision", etcd_json_i64(revision), "physical", physical);
	json_t *reply = NULL;
	int rc;

	if (!body)
		return oom(err);
	rc = etcd_call(e, "/v3/kv/compaction", body, &reply, err);
	json_decref(body);
	json_decref(reply);
	if (rc == -ESTALE)
		return etcd_fail(err, rc, "revision %lld is already compacted",
				 (long long)revision);
	return rc;
}

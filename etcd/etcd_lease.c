/* Leases: grant, keepalive (one unary POST of the streaming call), revoke, time-to-live.
 * IDs are full int64 values carried as decimal strings. */
#include "etcd_priv.h"

#include <errno.h>

/* POST {"ID":id} plus ttl when > 0 to path; *reply as etcd_call. */
static int lease_call(struct etcd *e, const char *path, int64_t id, int64_t ttl, json_t **reply,
		      struct etcd_err *err)
{
	json_t *body = json_object();
	int rc;

	if (!body || (id && json_object_set_new(body, "ID", etcd_json_i64(id))) ||
	    (ttl > 0 && json_object_set_new(body, "TTL", etcd_json_i64(ttl)))) {
		json_decref(body);
		return etcd_fail(err, -ENOMEM, "etcd: out of memory");
	}
	rc = etcd_call(e, path, body, reply, err);
	json_decref(body);
	return rc;
}

static int grant(struct etcd *e, int64_t want_id, int64_t ttl_s, int64_t *id, int64_t *granted,
		 struct etcd_err *err)
{
	json_t *reply = NULL;
	int64_t got_id, ttl;
	int rc;

	if (ttl_s <= 0)
		return etcd_fail(err, -EINVAL, "etcd lease: TTL %lld s", (long long)ttl_s);
	rc = lease_call(e, "/v3/lease/grant", want_id, ttl_s, &reply, err);
	if (rc)
		return rc;
	rc = etcd_json_i64_get(reply, "ID", &got_id) | etcd_json_i64_get(reply, "TTL", &ttl);
	json_decref(reply);
	if (rc || !got_id || (want_id && got_id != want_id))
		return etcd_fail(err, -EPROTO, "etcd lease grant: bad reply");
	if (id)
		*id = got_id;
	if (granted)
		*granted = ttl;
	return 0;
}

int etcd_lease_grant(struct etcd *e, int64_t ttl_s, int64_t *id, int64_t *granted_ttl,
		     struct etcd_err *err)
{
	return grant(e, 0, ttl_s, id, granted_ttl, err);
}

int etcd_lease_grant_id(struct etcd *e, int64_t id, int64_t ttl_s, int64_t *granted_ttl,
			struct etcd_err *err)
{
	if (id <= 0)
		return etcd_fail(err, -EINVAL, "etcd lease: ID %lld", (long long)id);
	return grant(e, id, ttl_s, NULL, granted_ttl, err);
}

/* A streaming call's error line: {"error":{"grpc_code":N,"message":...}}. */
static int stream_error(const json_t *reply, struct etcd_err *err)
{
	const json_t *er = json_object_get(reply, "error");
	const char *msg = json_string_value(json_object_get(er, "message"));

	return etcd_map_error((int)json_integer_value(json_object_get(er, "grpc_code")),
			      msg ? msg : "", err);
}

int etcd_lease_keepalive(struct etcd *e, int64_t id, int64_t *ttl_left, struct etcd_err *err)
{
	json_t *reply = NULL, *res;
	int64_t ttl;
	int rc;

	rc = lease_call(e, "/v3/lease/keepalive", id, 0, &reply, err);
	if (rc)
		return rc;
	res = json_object_get(reply, "result");
	if (!res && json_object_get(reply, "error"))
		rc = stream_error(reply, err);
	else if (!res) /* neither: not "expired", which would give a live lease up */
		rc = etcd_fail(err, -EPROTO, "etcd lease keepalive: a reply without a result");
	else if (etcd_json_i64_get(res, "TTL", &ttl))
		rc = etcd_fail(err, -EPROTO, "etcd lease keepalive: bad reply");
	else if (ttl <= 0) /* zero values are omitted: no TTL means no lease */
		rc = etcd_fail(err, -ENOENT, "etcd lease %lld expired", (long long)id);
	json_decref(reply);
	if (!rc && ttl_left)
		*ttl_left = ttl;
	return rc;
}

int etcd_lease_revoke(struct etcd *e, int64_t id, struct etcd_err *err)
{
	json_t *reply = NULL;
	int rc;

	rc = lease_call(e, "/v3/lease/revoke", id, 0, &reply, err);
	json_decref(reply);
	if (rc == -ENOENT)
		return etcd_fail(err, rc, "etcd lease %lld not found", (long long)id);
	return rc;
}

int etcd_lease_ttl(struct etcd *e, int64_t id, int64_t *ttl, int64_t *granted, struct etcd_err *err)
{
	json_t *reply = NULL;
	int64_t left, g;
	int rc;

	rc = lease_call(e, "/v3/lease/timetolive", id, 0, &reply, err);
	if (rc)
		return rc;
	rc = etcd_json_i64_get(reply, "TTL", &left) | etcd_json_i64_get(reply, "grantedTTL", &g);
	json_decref(reply);
	if (rc)
		return etcd_fail(err, -EPROTO, "etcd lease timetolive: bad reply");
	if (left < 0) /* etcd answers TTL -1 for a lease it does not have */
		return etcd_fail(err, -ENOENT, "etcd lease %lld expired", (long long)id);
	if (ttl)
		*ttl = left;
	if (granted)
		*granted = g;
	return 0;
}

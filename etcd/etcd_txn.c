/* Transactions, and the two every clusterd record relies on: create-if-absent and
 * compare-and-swap on mod_revision. */
#include "etcd_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const target_name[] = { "VALUE", "VERSION", "CREATE", "MOD" };
static const char *const target_field[] = { "value", "version", "create_revision", "mod_revision" };
static const char *const result_name[] = { "EQUAL", "NOT_EQUAL", "GREATER", "LESS" };

static json_t *cmp_json(const struct etcd_cmp *c)
{
	json_t *o = json_object(), *operand;

	if (!o || (unsigned)c->target > ETCD_CMP_MOD || (unsigned)c->result > ETCD_CMP_LESS)
		goto fail;
	operand = c->target == ETCD_CMP_VALUE ? etcd_json_b64(c->val, c->vlen)
					      : etcd_json_i64(c->num);
	/* First: set_new takes the operand even when it fails, so none is left behind. */
	if (json_object_set_new(o, target_field[c->target], operand) ||
	    etcd_json_set_range(o, c->key, false, NULL) ||
	    json_object_set_new(o, "target", json_string(target_name[c->target])) ||
	    json_object_set_new(o, "result", json_string(result_name[c->result])))
		goto fail;
	return o;
fail:
	json_decref(o);
	return NULL;
}

static json_t *op_json(const struct etcd_op *op)
{
	static const char *const name[] = { "request_put", "request_delete_range",
					    "request_range" };
	json_t *req = json_object(), *o = NULL;

	if (!req || (unsigned)op->type > ETCD_OP_RANGE)
		goto fail;
	if (op->type == ETCD_OP_PUT) {
		if (etcd_json_set_range(req, op->key, false, NULL) ||
		    json_object_set_new(req, "value", etcd_json_b64(op->val, op->vlen)) ||
		    json_object_set_new(req, "lease", etcd_json_i64(op->lease)))
			goto fail;
	} else if (etcd_json_set_range(req, op->key, op->prefix, NULL)) {
		goto fail;
	}
	o = json_object();
	if (!o)
		goto fail;
	if (json_object_set_new(o, name[op->type], req)) /* it took req */
		goto fail_o;
	return o;
fail:
	json_decref(req);
fail_o:
	json_decref(o);
	return NULL;
}

static bool add_cmps(json_t *arr, const struct etcd_cmp *c, size_t n)
{
	for (size_t i = 0; arr && i < n; i++)
		if (json_array_append_new(arr, cmp_json(&c[i])))
			return false;
	return arr != NULL;
}

static bool add_ops(json_t *arr, const struct etcd_op *op, size_t n)
{
	for (size_t i = 0; arr && i < n; i++)
		if (json_array_append_new(arr, op_json(&op[i])))
			return false;
	return arr != NULL;
}

static json_t *txn_body(const struct etcd_txn *t)
{
	json_t *cmp = json_array(), *suc = json_array(), *fail = json_array();
	bool ok = add_cmps(cmp, t->cmp, t->ncmp) && add_ops(suc, t->success, t->nsuccess) &&
		  add_ops(fail, t->failure, t->nfailure);

	if (!ok) {
		json_decref(cmp);
		json_decref(suc);
		json_decref(fail);
		return NULL;
	}
	return json_pack("{s:o,s:o,s:o}", "compare", cmp, "success", suc, "failure", fail);
}

/* Fill r from the reply of op (the request's op at the same position). */
static int op_resp(const json_t *j, const struct etcd_op *op, struct etcd_op_resp *r)
{
	r->type = op->type;
	if (op->type == ETCD_OP_RANGE)
		return etcd_json_kvs(json_object_get(j, "response_range"), &r->kvs);
	if (op->type == ETCD_OP_DELETE)
		return etcd_json_i64_get(json_object_get(j, "response_delete_range"), "deleted",
					 &r->deleted);
	return 0;
}

static int txn_parse(const json_t *reply, const struct etcd_txn *t, struct etcd_txn_resp *out)
{
	const json_t *arr = json_object_get(reply, "responses");
	const struct etcd_op *ops;
	size_t n;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	out->succeeded = json_is_true(json_object_get(reply, "succeeded"));
	out->header_rev = etcd_json_header_rev(reply);
	ops = out->succeeded ? t->success : t->failure;
	n = out->succeeded ? t->nsuccess : t->nfailure;
	if (json_array_size(arr) != n)
		return -EPROTO;
	if (n && !(out->resp = calloc(n, sizeof(*out->resp))))
		return -ENOMEM;
	for (; out->n < n && !rc; out->n++)
		rc = op_resp(json_array_get(arr, out->n), &ops[out->n], &out->resp[out->n]);
	if (rc)
		etcd_txn_resp_free(out);
	return rc;
}

int etcd_txn(struct etcd *e, const struct etcd_txn *t, struct etcd_txn_resp *out,
	     struct etcd_err *err)
{
	json_t *body = txn_body(t), *reply = NULL;
	int rc;

	if (!body)
		return etcd_fail(err, -EINVAL, "etcd txn: bad compare or op, or out of memory");
	rc = etcd_call(e, "/v3/kv/txn", body, &reply, err);
	json_decref(body);
	if (rc)
		return rc;
	rc = txn_parse(reply, t, out);
	json_decref(reply);
	if (rc)
		return etcd_fail(err, rc, "etcd: bad txn reply");
	return 0;
}

void etcd_txn_resp_free(struct etcd_txn_resp *r)
{
	for (size_t i = 0; i < r->n; i++)
		etcd_kvs_free(&r->resp[i].kvs);
	free(r->resp);
	memset(r, 0, sizeof(*r));
}

/* A heap copy of the kv we just wrote (for etcd_create's caller). */
static struct etcd_kv *kv_written(const char *key, const void *val, size_t vlen, int64_t lease,
				  int64_t rev)
{
	struct etcd_kv *kv = calloc(1, sizeof(*kv));

	if (!kv || !(kv->key = strdup(key)) || !(kv->val = malloc(vlen + 1))) {
		etcd_kv_free(kv);
		return NULL;
	}
	if (vlen)
		memcpy(kv->val, val, vlen);
	kv->val[vlen] = 0;
	kv->vlen = vlen;
	kv->klen = strlen(key);
	kv->create_rev = kv->mod_rev = rev;
	kv->version = 1;
	kv->lease = lease;
	return kv;
}

/* Move the first kv of a txn's range response out into a heap kv (NULL if none). */
static int kv_take(struct etcd_txn_resp *r, struct etcd_kv **out)
{
	struct etcd_kvs *kvs = r->n ? &r->resp[0].kvs : NULL;

	*out = NULL;
	if (!kvs || !kvs->n)
		return 0;
	if (!(*out = malloc(sizeof(**out))))
		return -ENOMEM;
	**out = kvs->kv[0];
	memset(&kvs->kv[0], 0, sizeof(kvs->kv[0]));
	return 0;
}

int etcd_create(struct etcd *e, const char *key, const void *val, size_t vlen, int64_t lease,
		bool *created, struct etcd_kv **kv, struct etcd_err *err)
{
	struct etcd_cmp cmp = { .key = key, .target = ETCD_CMP_CREATE, .result = ETCD_CMP_EQUAL };
	struct etcd_op put = {
		.type = ETCD_OP_PUT, .key = key, .val = val, .vlen = vlen, .lease = lease
	};
	struct etcd_op get = { .type = ETCD_OP_RANGE, .key = key };
	struct etcd_txn t = { &cmp, 1, &put, 1, &get, 1 };
	struct etcd_txn_resp r;
	struct etcd_kv *out = NULL;
	int rc;

	rc = etcd_txn(e, &t, &r, err);
	if (rc)
		return rc;
	if (kv && r.succeeded && !(out = kv_written(key, val, vlen, lease, r.header_rev)))
		rc = -ENOMEM;
	else if (kv && !r.succeeded)
		rc = kv_take(&r, &out);
	if (!rc) {
		*created = r.succeeded;
		if (kv)
			*kv = out;
	}
	etcd_txn_resp_free(&r);
	return rc ? etcd_fail(err, rc, "etcd: out of memory") : 0;
}

int etcd_cas_mod(struct etcd *e, const char *key, int64_t mod_rev, const void *val, size_t vlen,
		 int64_t lease, bool *swapped, int64_t *new_rev, struct etcd_err *err)
{
	struct etcd_cmp cmp = {
		.key = key, .target = ETCD_CMP_MOD, .result = ETCD_CMP_EQUAL, .num = mod_rev
	};
	struct etcd_op put = {
		.type = ETCD_OP_PUT, .key = key, .val = val, .vlen = vlen, .lease = lease
	};
	struct etcd_txn t = { &cmp, 1, &put, 1, NULL, 0 };
	struct etcd_txn_resp r;
	int rc;

	rc = etcd_txn(e, &t, &r, err);
	if (rc)
		return rc;
	*swapped = r.succeeded;
	if (new_rev && r.succeeded)
		*new_rev = r.header_rev;
	etcd_txn_resp_free(&r);
	return 0;
}

/* The gateway's JSON: base64 keys and values, int64 as decimal strings, omitted zero
 * values, key-value records and range boundaries. Everything read here came from etcd
 * and is checked before use. */
#include "etcd_priv.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *etcd_json_b64(const void *p, size_t n)
{
	size_t len = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
	char *s = malloc(len);
	json_t *j;

	if (!s)
		return NULL;
	sodium_bin2base64(s, len, p, n, sodium_base64_VARIANT_ORIGINAL);
	j = json_string(s);
	free(s);
	return j;
}

json_t *etcd_json_i64(int64_t v)
{
	char s[24];

	snprintf(s, sizeof(s), "%lld", (long long)v);
	return json_string(s);
}

int etcd_json_unb64(const char *s, uint8_t **out, size_t *n)
{
	size_t slen = s ? strlen(s) : 0, len = 0;
	uint8_t *buf = malloc(slen / 4 * 3 + 3);

	if (!buf)
		return -ENOMEM;
	if (slen && sodium_base642bin(buf, slen / 4 * 3 + 2, s, slen, NULL, &len, NULL,
				      sodium_base64_VARIANT_ORIGINAL)) {
		free(buf);
		return -EPROTO;
	}
	buf[len] = 0;
	*out = buf;
	*n = len;
	return 0;
}

int etcd_json_i64_get(const json_t *o, const char *k, int64_t *out)
{
	const json_t *v = json_object_get(o, k);
	const char *s;
	char *end;
	long long x;

	*out = 0;
	if (!v)
		return 0;
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return 0;
	}
	if (!json_is_string(v))
		return -EPROTO;
	s = json_string_value(v);
	errno = 0;
	x = strtoll(s, &end, 10);
	if (errno || end == s || *end)
		return -EPROTO;
	*out = x;
	return 0;
}

int64_t etcd_json_header_rev(const json_t *o)
{
	int64_t rev;

	return etcd_json_i64_get(json_object_get(o, "header"), "revision", &rev) ? 0 : rev;
}

void etcd_json_kv_clear(struct etcd_kv *kv)
{
	free(kv->key);
	free(kv->val);
	memset(kv, 0, sizeof(*kv));
}

int etcd_json_kv(const json_t *j, struct etcd_kv *kv)
{
	int rc;

	memset(kv, 0, sizeof(*kv));
	if (!json_is_object(j))
		return -EPROTO;
	rc = etcd_json_unb64(json_string_value(json_object_get(j, "key")), (uint8_t **)&kv->key,
			     &kv->klen);
	if (!rc)
		rc = etcd_json_unb64(json_string_value(json_object_get(j, "value")), &kv->val,
				     &kv->vlen);
	if (!rc && (etcd_json_i64_get(j, "create_revision", &kv->create_rev) |
		    etcd_json_i64_get(j, "mod_revision", &kv->mod_rev) |
		    etcd_json_i64_get(j, "version", &kv->version) |
		    etcd_json_i64_get(j, "lease", &kv->lease)))
		rc = -EPROTO;
	if (rc)
		etcd_json_kv_clear(kv);
	return rc;
}

int etcd_json_kvs(const json_t *j, struct etcd_kvs *out)
{
	const json_t *arr = json_object_get(j, "kvs");
	size_t n = json_array_size(arr);
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if (arr && !json_is_array(arr))
		return -EPROTO;
	out->header_rev = etcd_json_header_rev(j);
	out->more = json_is_true(json_object_get(j, "more"));
	if (n && !(out->kv = calloc(n, sizeof(*out->kv))))
		return -ENOMEM;
	for (; out->n < n && !rc; out->n++)
		rc = etcd_json_kv(json_array_get(arr, out->n), &out->kv[out->n]);
	if (rc)
		etcd_kvs_free(out);
	return rc;
}

void etcd_kv_free(struct etcd_kv *kv)
{
	if (!kv)
		return;
	etcd_json_kv_clear(kv);
	free(kv);
}

void etcd_kvs_free(struct etcd_kvs *kvs)
{
	for (size_t i = 0; i < kvs->n; i++)
		etcd_json_kv_clear(&kvs->kv[i]);
	free(kvs->kv);
	memset(kvs, 0, sizeof(*kvs));
}

char *etcd_json_prefix_end(const char *key, size_t klen, size_t *n)
{
	char *end = malloc(klen + 1);
	size_t i = klen;

	if (!end)
		return NULL;
	memcpy(end, key, klen);
	while (i > 0 && (uint8_t)end[i - 1] == 0xff)
		i--;
	if (i == 0) { /* no upper bound: "\0" means "to the end of the keyspace" */
		end[0] = 0;
		*n = 1;
		return end;
	}
	end[i - 1] = (char)((uint8_t)end[i - 1] + 1);
	end[i] = 0;
	*n = i;
	return end;
}

int etcd_json_set_range_b(json_t *o, const char *key, size_t klen, const char *end, size_t elen)
{
	if (json_object_set_new(o, "key", etcd_json_b64(key, klen)))
		return -ENOMEM;
	if (end && json_object_set_new(o, "range_end", etcd_json_b64(end, elen)))
		return -ENOMEM;
	return 0;
}

int etcd_json_set_range(json_t *o, const char *key, bool prefix, const char *end)
{
	size_t klen = strlen(key), elen;
	char *pend;
	int rc;

	if (!prefix)
		return etcd_json_set_range_b(o, key, klen, end, end ? strlen(end) : 0);
	pend = etcd_json_prefix_end(key, klen, &elen);
	if (!pend)
		return -ENOMEM;
	/* etcd spells "every key" as ["\0", "\0"); an empty key would be refused. */
	rc = klen ? etcd_json_set_range_b(o, key, klen, pend, elen)
		  : etcd_json_set_range_b(o, "", 1, pend, 1);
	free(pend);
	return rc;
}

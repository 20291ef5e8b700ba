/* cmectl trust set|show: the boot keys the cluster trusts, in PREFIX/trust, signed with an
 * operator's secret key (common.h trust_sign). Nodes configured with operator_keys take a
 * record only when one of their operator keys signed it and its seq went up: an etcd
 * writer without that key changes nothing. */
#include "cmectl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The public keys of a --trust style file (one a line, '#' comments) as "A,B,...". */
static int read_keys(const char *path, char *out, size_t len)
{
	FILE *f = fopen(path, "r");
	char line[512];
	size_t off = 0;
	int n = 0;

	if (!f)
		return ctl_usage("trust set: --keys %s: %s", path, strerror(errno));
	out[0] = 0;
	while (fgets(line, sizeof(line), f)) {
		char *p = line + strspn(line, " \t");

		p[strcspn(p, "#\r\n \t")] = 0;
		if (!*p)
			continue;
		if (strlen(p) != 64 || strspn(p, "0123456789abcdefABCDEF") != 64 ||
		    n == CL_TRUST_MAX_KEYS || off + 66 > len) {
			fclose(f);
			return ctl_usage("trust set: --keys %s: %s", path,
					 n == CL_TRUST_MAX_KEYS
						 ? "more than 16 keys"
						 : "a line is not a public key (64 hex digits)");
		}
		off += (size_t)snprintf(out + off, len - off, "%s%s", n ? "," : "", p);
		n++;
	}
	fclose(f);
	return n ? CTL_OK : ctl_usage("trust set: --keys %s holds no public key", path);
}

/* The record as it stands (has: whether there is one). */
static int read_trust(struct ctl *c, struct cl_trust *t, bool *has)
{
	struct etcd_err err = { "" };
	struct etcd_kv *kv = NULL;
	char key[CTL_KEY_MAX];
	int rc;

	memset(t, 0, sizeof(*t));
	*has = false;
	if ((rc = ctl_connect(c)))
		return rc;
	rc = etcd_get(c->etcd, ctl_key(c, key, "trust", NULL, NULL), &kv, &err);
	if (rc)
		return ctl_fail("reading the trust record: %s", err.msg);
	if (kv && cl_trust_parse((const char *)kv->val, kv->vlen, t, &err)) {
		etcd_kv_free(kv);
		return ctl_fail("the trust record is malformed: %s", err.msg);
	}
	if (kv) {
		t->mod_rev = kv->mod_rev;
		*has = true;
	}
	etcd_kv_free(kv);
	return CTL_OK;
}

int ctl_cmd_trust_set(struct ctl *c, int argc, char **argv)
{
	const char *sk = NULL, *keys = NULL;
	const struct flag flags[] = { { "--operator-key", NULL, FL_STR, NULL, &sk },
				      { "--keys", NULL, FL_STR, NULL, &keys },
				      { 0 } };
	struct etcd_err err = { "" };
	char key[CTL_KEY_MAX], why[300], *val;
	struct cl_trust old, t = { .set_ms = wall_ms() };
	bool has, swapped = false;
	int64_t rev;
	int rc = ctl_args_parse(c, "trust set", argc, argv, flags, NULL, NULL);

	if (!rc && (!sk || !keys))
		rc = ctl_usage("trust set: --operator-key SECRET and --keys FILE are required");
	if (rc || (rc = read_keys(keys, t.keys, sizeof(t.keys))) ||
	    (rc = read_trust(c, &old, &has)))
		return rc;
	if (has && old.seq >= UINT64_MAX / 2)
		return ctl_fail("the trust record's seq %" PRIu64 " cannot be right (forged?); "
				"delete PREFIX/trust only after checking every node's trust.seq",
				old.seq);
	t.seq = has ? old.seq + 1 : 1;
	if (trust_sign(sk, c->prefix, t.seq, t.keys, t.signer, t.sig, why, sizeof(why)))
		return ctl_fail("trust set: --operator-key %s", why);
	if (!(val = cl_trust_json(&t)))
		return ctl_fail("out of memory");
	rc = ctl_put_if_mod(c->etcd, ctl_key(c, key, "trust", NULL, NULL), has ? old.mod_rev : 0,
			    val, &swapped, &rev, &err);
	free(val);
	if (rc)
		return ctl_fail("writing the trust record: %s", err.msg);
	if (!swapped)
		return ctl_fail("the trust record changed meanwhile: run trust set again");
	ctl_event(c, NULL, "trust-set",
		  "trusted boot keys set (seq %" PRIu64 ") by operator %.16s...", t.seq, t.signer);
	if (c->json)
		ctl_out_json(ctl_out_rec(cl_trust_json(&t)));
	else
		printf("trust seq %" PRIu64 ": %zu key(s), signed by operator %.16s...\n", t.seq,
		       (strlen(t.keys) + 1) / 65, t.signer);
	return CTL_OK;
}

int ctl_cmd_trust_show(struct ctl *c, int argc, char **argv)
{
	struct cl_trust t;
	bool has;
	int rc = ctl_args_parse(c, "trust show", argc, argv, NULL, NULL, NULL);

	if (rc || (rc = read_trust(c, &t, &has)))
		return rc;
	if (c->json) {
		ctl_out_json(has ? ctl_out_rec(cl_trust_json(&t)) : json_null());
		return CTL_OK;
	}
	if (!has) {
		printf("no trusted boot keys (cmectl trust set)\n");
		return CTL_OK;
	}
	printf("seq:     %" PRIu64 "\nsigner:  %s (operator)\nkeys:\n", t.seq, t.signer);
	for (char *k = t.keys; *k; k += 64 + (k[64] == ','))
		printf("  %.64s\n", k);
	return CTL_OK;
}

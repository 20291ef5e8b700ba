/* Signed boot in the cluster. A node configured with operator_keys (a file of operator
 * public keys) runs only boots a key of the cluster's trust record signed. That record
 * (PREFIX/trust, written by cmectl trust set) counts only when one of this node's operator
 * keys signed it, and only if its seq is not below the last this node took: an etcd writer
 * without an operator's secret key can neither add a key nor bring back an old set. The
 * keys taken are kept in STATE_DIR/trust.keys (a --trust file for the VMMs) and the seq in
 * STATE_DIR/trust.seq, so that a restart goes on from them. */
#include "cd_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SUB "trust"

static void path_of(const struct cd *cd, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", cd->cfg->state_dir, name);
}

bool cd_trust_required(const struct cd *cd)
{
	return cd->cfg->operator_keys[0] != 0;
}

int cd_trust_file(const struct cd *cd, char *buf, size_t len)
{
	struct stat st;

	path_of(cd, "trust.keys", buf, len);
	return stat(buf, &st) ? -ENOENT : 0;
}

void cd_trust_load(struct cd *cd)
{
	char path[CL_PATH_MAX + 16];
	unsigned long long seq = 0;
	FILE *f;

	path_of(cd, "trust.seq", path, sizeof(path));
	f = fopen(path, "r");
	if (f && fscanf(f, "%llu", &seq) != 1)
		seq = 0;
	if (f)
		fclose(f);
	cd->trust_seq = seq;
}

/* The keys ("A,B,...") as a --trust file, then the seq: a crash between them takes the
 * record again next time. */
static int keep(struct cd *cd, const struct cl_trust *t)
{
	char path[CL_PATH_MAX + 16], seq[24], *lines = strdup(t->keys);
	int rc;

	if (!lines)
		return -ENOMEM;
	for (char *p = lines; *p; p++)
		if (*p == ',')
			*p = '\n';
	path_of(cd, "trust.keys", path, sizeof(path));
	rc = write_file_atomic(path, lines, strlen(lines));
	if (!rc && chmod(path, 0644)) /* public keys, read by VMMs that are not root */
		rc = -errno;
	free(lines);
	snprintf(seq, sizeof(seq), "%llu\n", (unsigned long long)t->seq);
	path_of(cd, "trust.seq", path, sizeof(path));
	return rc ? rc : write_file_atomic(path, seq, strlen(seq));
}

/* Say a refusal once per record revision. */
static void refuse(struct cd *cd, const struct cl_trust *t, const char *why)
{
	if (cd->trust_refused_rev == t->mod_rev)
		return;
	cd->trust_refused_rev = t->mod_rev;
	log_err(SUB, "trust record (seq %llu) refused: %s; the trusted keys stay as they were",
		(unsigned long long)t->seq, why);
	cd_event(cd, NULL, "trust-refused", "node %s refused the trust record (seq %llu): %s",
		 cd->cfg->node, (unsigned long long)t->seq, why);
}

void cd_trust_sync(struct cd *cd, const struct cl_view *v)
{
	const struct cl_trust *t = &v->trust;
	char why[400];

	if (!cd_trust_required(cd) || !v->has_trust || t->seq == cd->trust_seq)
		return;
	if (t->seq < cd->trust_seq) {
		snprintf(why, sizeof(why),
			 "its seq is below %llu, the last this node took (an old "
			 "set brought back?)",
			 (unsigned long long)cd->trust_seq);
		refuse(cd, t, why);
		return;
	}
	if (trust_verify(cd->cfg->operator_keys, cd->cfg->prefix, t->seq, t->keys, t->signer,
			 t->sig, why, sizeof(why))) {
		refuse(cd, t, why);
		return;
	}
	if (keep(cd, t)) {
		log_err(SUB, "cannot keep the trusted keys in %s: %s", cd->cfg->state_dir,
			strerror(errno));
		return;
	}
	cd->trust_seq = t->seq;
	log_info(SUB, "trusted boot keys now those of seq %llu (signed by operator %.16s...)",
		 (unsigned long long)t->seq, t->signer);
	cd_event(cd, NULL, "trust-updated",
		 "node %s trusts the boot keys of seq %llu, signed by operator %.16s...",
		 cd->cfg->node, (unsigned long long)t->seq, t->signer);
}

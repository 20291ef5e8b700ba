/* The daemon's etcd writes that reconcile, migrations and the leader share: record keys,
 * plain and compare-and-swap writes, guarded deletes, status records and events. Below
 * every file that decides; calls nothing above it. */
#include "cd_priv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUB	      "clusterd"
#define EVENTS_TTL_S  86400
#define EVENTS_ROTATE (3600 * 1000ULL)

const char *cd_key(struct cd *cd, char *buf, size_t len, const char *part, const char *name,
		   const char *leaf)
{
	if (!cl_key(buf, len, cd->cfg->prefix, part, name, leaf))
		buf[0] = 0;
	return buf;
}

int cd_put_json(struct cd *cd, const char *key, char *json, int64_t lease)
{
	struct etcd_err err = { "" };
	int rc;

	if (!json || !key[0]) {
		free(json);
		return -ENOMEM;
	}
	rc = etcd_put(cd->etcd, key, json, strlen(json), lease, NULL, &err);
	if (rc)
		log_warn(SUB, "put %s: %s", key, err.msg);
	free(json);
	return rc;
}

int cd_delete_if(struct cd *cd, const char *key, int64_t mod_rev)
{
	struct etcd_cmp cmp = { .key = key, .target = ETCD_CMP_MOD, .num = mod_rev };
	struct etcd_op op = { .type = ETCD_OP_DELETE, .key = key };
	struct etcd_txn t = { &cmp, 1, &op, 1, NULL, 0 };
	struct etcd_txn_resp r = { 0 };
	struct etcd_err err = { "" };
	int rc = etcd_txn(cd->etcd, &t, &r, &err);

	if (rc)
		log_warn(SUB, "delete %s: %s", key, err.msg);
	else
		rc = r.succeeded ? 1 : 0;
	etcd_txn_resp_free(&r);
	return rc;
}

/* owner = {node, epoch} if the owner record still has the mod_revision read and, with
 * lost, nodes/<lost> is still absent: one transaction. 1 written, 0 lost the race. */
/* owner → {node, epoch} if it is still as read; with lost, only while nodes/<lost> is
 * absent; with mig, only while the migration record is as read too, which becomes *mig
 * in the same transaction. 1 swapped, 0 lost the race, -errno. */
static int owner_write(struct cd *cd, const struct cl_vm_view *vv, const char *node, uint64_t epoch,
		       const char *lost, const struct cl_migration *mig)
{
	struct cl_owner o = { .epoch = epoch };
	struct etcd_err err = { "" };
	struct etcd_txn_resp r = { 0 };
	char key[256], nkey[256], mkey[256], *json, *mjson = NULL;
	struct etcd_cmp cmp[3] = {
		{ .key = key, .target = ETCD_CMP_MOD, .num = vv->owner.mod_rev }
	};
	struct etcd_op op[2] = { { .type = ETCD_OP_PUT, .key = key } };
	struct etcd_txn t = { cmp, 1, op, 1, NULL, 0 };
	int rc;

	snprintf(o.node, sizeof(o.node), "%s", node);
	json = cl_owner_json(&o);
	if (mig && !(mjson = cl_migration_json(mig)))
		json = (free(json), NULL);
	if (!json)
		return -ENOMEM;
	cd_key(cd, key, sizeof(key), "vms", vv->name, "owner");
	if (lost)
		cmp[t.ncmp++] = (struct etcd_cmp){ .key = cd_key(cd, nkey, sizeof(nkey), "nodes",
								 lost, NULL),
						   .target = ETCD_CMP_CREATE,
						   .num = 0 };
	if (mig) {
		cd_key(cd, mkey, sizeof(mkey), "migrations", vv->name, NULL);
		cmp[t.ncmp++] = (struct etcd_cmp){ .key = mkey,
						   .target = ETCD_CMP_MOD,
						   .num = vv->mig.mod_rev };
		op[t.nsuccess++] = (struct etcd_op){
			.type = ETCD_OP_PUT, .key = mkey, .val = mjson, .vlen = strlen(mjson)
		};
	}
	op[0].val = json;
	op[0].vlen = strlen(json);
	rc = etcd_txn(cd->etcd, &t, &r, &err);
	free(json);
	free(mjson);
	if (rc)
		log_warn(SUB, "vm=%s: owner → %s (epoch %llu): %s", vv->name, node,
			 (unsigned long long)epoch, err.msg);
	else
		rc = r.succeeded ? 1 : 0;
	etcd_txn_resp_free(&r);
	return rc;
}

int cd_owner_cas(struct cd *cd, const struct cl_vm_view *vv, const char *node, uint64_t epoch)
{
	return owner_write(cd, vv, node, epoch, NULL, NULL);
}

int cd_owner_take(struct cd *cd, const struct cl_vm_view *vv, const char *node, uint64_t epoch,
		  const char *lost)
{
	return owner_write(cd, vv, node, epoch, lost, NULL);
}

int cd_owner_take_back(struct cd *cd, const struct cl_vm_view *vv, const char *lost)
{
	struct cl_migration m = vv->mig;

	snprintf(m.phase, sizeof(m.phase), "taken-back");
	m.updated_ms = wall_ms();
	return owner_write(cd, vv, vv->mig.source, vv->owner.epoch + 1, lost, &m);
}

int cd_cas_json(struct cd *cd, const char *key, int64_t *mod_rev, char *json, struct etcd_err *err)
{
	bool swapped = false;
	int64_t rev = 0;
	int rc;

	if (!json)
		return -ENOMEM;
	rc = etcd_cas_mod(cd->etcd, key, *mod_rev, json, strlen(json), 0, &swapped, &rev, err);
	free(json);
	if (rc)
		return rc;
	if (swapped)
		*mod_rev = rev;
	return swapped ? 1 : 0;
}

int cd_mig_cas(struct cd *cd, struct cl_migration *m)
{
	struct etcd_err err = { "" };
	char key[256];
	int rc;

	m->updated_ms = wall_ms();
	cd_key(cd, key, sizeof(key), "migrations", m->vm, NULL);
	rc = cd_cas_json(cd, key, &m->mod_rev, cl_migration_json(m), &err);
	if (rc < 0)
		log_warn(SUB, "vm=%s mig=%s: update to %s: %s", m->vm, m->id, m->phase, err.msg);
	return rc;
}

void cd_event(struct cd *cd, const char *vm, const char *kind, const char *fmt, ...)
{
	struct etcd_err err = { "" };
	char msg[256];
	int64_t lease;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* One lease of a day for many events, replaced every hour. */
	pthread_mutex_lock(&cd->ev_mu);
	if (!cd->events_lease || now_ns() / 1000000 - cd->events_lease_ms > EVENTS_ROTATE) {
		if (etcd_lease_grant(cd->etcd, EVENTS_TTL_S, &cd->events_lease, NULL, &err) == 0)
			cd->events_lease_ms = now_ns() / 1000000;
		else
			cd->events_lease = 0;
	}
	lease = cd->events_lease;
	pthread_mutex_unlock(&cd->ev_mu);
	cl_event_post(cd->etcd, cd->cfg->prefix, lease, cd->cfg->node, vm, kind, "%s", msg);
}

void cd_pending(struct cd *cd, const struct cl_vm_view *vv, const char *why)
{
	struct cl_status s = { 0 };

	snprintf(s.state, sizeof(s.state), "pending");
	snprintf(s.error, sizeof(s.error), "%s", why);
	if (vv->has_status && !strcmp(vv->status.state, "pending") &&
	    !strcmp(vv->status.error, why))
		return;
	cd_status_ensure(cd, vv, &s);
	cd_event(cd, vv->name, "vm-pending", "%s", why);
}

static bool status_same(const struct cl_status *a, const struct cl_status *b)
{
	return !strcmp(a->node, b->node) && !strcmp(a->state, b->state) && a->pid == b->pid &&
	       a->epoch == b->epoch && a->restarts == b->restarts && !strcmp(a->error, b->error) &&
	       !strcmp(a->console, b->console) && a->balloon == b->balloon &&
	       a->balloon_target_mb == b->balloon_target_mb &&
	       a->balloon_actual_mb == b->balloon_actual_mb;
}

void cd_status_ensure(struct cd *cd, const struct cl_vm_view *vv, const struct cl_status *want)
{
	struct cl_status s = *want;
	char key[256];

	if (vv && vv->has_status && status_same(&vv->status, want))
		return;
	if (!s.since_ms)
		s.since_ms = vv && vv->has_status && !strcmp(vv->status.state, want->state)
				     ? vv->status.since_ms
				     : wall_ms();
	cd_key(cd, key, sizeof(key), "vms", vv ? vv->name : "", "status");
	if (cd_put_json(cd, key, cl_status_json(&s), cd_lease(cd)) == 0)
		log_info(SUB, "vm=%s: status %s%s%s", vv ? vv->name : "?", s.state,
			 s.error[0] ? ": " : "", s.error);
}

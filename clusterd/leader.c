/* The leader: one clusterd holds the lease-bound `leader` key (create-if-absent). It
 * places VMs that have no owner, drains nodes marked draining (a bounded number of live
 * migrations at a time, capacity respected), hands stopped VMs of a draining node to
 * another node, and cleans up owner records of deleted VMs whose node is gone. */
#include "cd_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#define SUB		"leader"
#define MAX_MOVES	64
#define RETRY_FAILED_MS 30000 /* a drain retries a failed migration after this */

static bool elect(struct cd *cd, const struct cl_view *v)
{
	struct etcd_err err = { "" };
	char key[256], val[128];
	bool created = false;
	int64_t lease = cd_lease(cd);

	if (v->leader[0]) {
		bool me = !strcmp(v->leader, cd->cfg->node);

		if (cd->leader && !me)
			log_warn(SUB, "node=%s: no longer the leader (%s is)", cd->cfg->node,
				 v->leader);
		cd->leader = me;
		return me;
	}
	if (!lease)
		return false;
	snprintf(val, sizeof(val), "{\"node\":\"%s\",\"since_ms\":%llu}", cd->cfg->node,
		 (unsigned long long)wall_ms());
	cd_key(cd, key, sizeof(key), "leader", NULL, NULL);
	if (etcd_create(cd->etcd, key, val, strlen(val), lease, &created, NULL, &err))
		log_warn(SUB, "election: %s", err.msg);
	if (created)
		cd_event(cd, NULL, "leader", "%s is the leader", cd->cfg->node);
	cd->leader = created;
	return created;
}

/* Create-if-absent owner {node, epoch}. */
static int owner_create(struct cd *cd, const char *vm, const char *node, uint64_t epoch)
{
	struct cl_owner o = { .epoch = epoch };
	struct etcd_err err = { "" };
	char key[256], *j;
	bool created = false;
	int rc;

	snprintf(o.node, sizeof(o.node), "%s", node);
	j = cl_owner_json(&o);
	if (!j)
		return -ENOMEM;
	cd_key(cd, key, sizeof(key), "vms", vm, "owner");
	rc = etcd_create(cd->etcd, key, j, strlen(j), 0, &created, NULL, &err);
	free(j);
	if (rc)
		log_warn(SUB, "vm=%s: cannot assign an owner: %s", vm, err.msg);
	return rc ? rc : created ? 0 : -EEXIST;
}

/* Admission control (when on): an HA VM is placed only if the cluster keeps room to
 * restart every HA VM after the loss of any one node, this one on node included. */
static bool admitted(struct cd *cd, struct cl_ha *h, size_t vm, const char *node, char *why,
		     size_t whylen)
{
	struct ha_move *scratch;
	int rc;

	if (!cd->cfg->admission_control || !h->vms[vm].restart)
		return true;
	scratch = calloc(h->c.nvms + 1, sizeof(*scratch));
	if (!scratch) {
		snprintf(why, whylen, "admission control: out of memory");
		return false;
	}
	h->vms[vm].owner = node;
	rc = ha_admit(&h->c, scratch, h->c.nvms + 1, why, whylen);
	h->vms[vm].owner = NULL;
	free(scratch);
	return rc == 0;
}

static void place_unowned(struct cd *cd, const struct cl_view *v, struct cl_ha *h)
{
	char why[512];

	for (size_t i = 0; i < v->nvms; i++) {
		const struct cl_vm_view *vv = &v->vms[i];
		int n;

		if (!vv->has_spec || !vv->spec.running || vv->has_owner || vv->bad)
			continue;
		n = ha_place(&h->c, &h->vms[i], NULL, why, sizeof(why));
		if (n >= 0 && !admitted(cd, h, i, v->nodes[n].name, why, sizeof(why)))
			n = -1;
		if (n < 0) {
			cd_pending(cd, vv, why);
			continue;
		}
		if (owner_create(cd, vv->name, v->nodes[n].name, 1) == 0) {
			/* Count it at once, or the next VM of this round sees the same room. */
			h->vms[i].owner = v->nodes[n].name;
			cd_event(cd, vv->name, "vm-placed", "vm %s placed on %s", vv->name,
				 v->nodes[n].name);
		}
	}
}

/* An owner record whose VM was deleted and whose node is gone: nobody else removes it. */
static void drop_orphans(struct cd *cd, const struct cl_view *v)
{
	for (size_t i = 0; i < v->nvms; i++) {
		const struct cl_vm_view *vv = &v->vms[i];
		const struct cl_node_view *nv;
		char key[256];

		if (vv->has_spec || !vv->has_owner || vv->bad)
			continue;
		nv = cl_view_node(v, vv->owner.node);
		if (nv && nv->alive)
			continue;
		cd_key(cd, key, sizeof(key), "vms", vv->name, "owner");
		if (cd_delete_if(cd, key, vv->owner.mod_rev) == 1)
			log_info(SUB, "vm=%s: removed the owner record of a deleted VM", vv->name);
	}
}

static void new_id(char *buf, size_t len)
{
	unsigned char b[8];

	randombytes_buf(b, sizeof(b));
	for (size_t i = 0; i < sizeof(b) && 2 * i + 2 < len; i++)
		snprintf(buf + 2 * i, 3, "%02x", b[i]);
}

/* Ask for one live migration (the record must not have changed since the read), with
 * post-copy when the drain asked for it (cmectl node drain --postcopy). */
static void request_move(struct cd *cd, const struct cl_view *v, const struct cl_vm_view *vv,
			 const char *target)
{
	const struct cl_node_view *from = cl_view_node(v, vv->owner.node);
	struct cl_migration m = { .requested_ms = wall_ms(),
				  .mod_rev = vv->has_mig ? vv->mig.mod_rev : 0,
				  .postcopy_after = from ? from->admin.postcopy_after : 0 };

	new_id(m.id, sizeof(m.id));
	snprintf(m.vm, sizeof(m.vm), "%s", vv->name);
	snprintf(m.source, sizeof(m.source), "%s", vv->owner.node);
	snprintf(m.target, sizeof(m.target), "%s", target);
	snprintf(m.phase, sizeof(m.phase), "requested");
	snprintf(m.by, sizeof(m.by), "drain");
	if (cd_mig_cas(cd, &m) == 1)
		cd_event(cd, vv->name, "drain-move", "draining %s: vm %s → %s (migration %s)",
			 m.source, vv->name, target, m.id);
}

/* Nothing runs for vv: stopped by the operator, or failed where it is owned (its
 * restart policy gave up) — such a VM moves off a draining node by a change of owner. */
static bool runs_nothing(const struct cl_vm_view *vv)
{
	if (!vv->spec.running)
		return true;
	return vv->has_status && !strcmp(vv->status.state, "failed") &&
	       !strcmp(vv->status.node, vv->owner.node) && vv->status.epoch == vv->owner.epoch;
}

/* VMs of a draining node that run nothing just change owner (epoch + 1) — once the owner
 * itself has said so: a VM just stopped by the operator may still be shutting down there,
 * and its next start on the new owner would run it twice. */
static void reassign_stopped(struct cd *cd, const struct cl_view *v, const struct cl_ha *h)
{
	for (size_t i = 0; i < v->nvms; i++) {
		const struct cl_vm_view *vv = &v->vms[i];
		const struct cl_node_view *nv;
		int n;

		if (!vv->has_spec || !vv->has_owner || vv->bad || !runs_nothing(vv) ||
		    !cl_vm_owner_idle(vv) || (vv->has_mig && cl_migration_pending(&vv->mig)))
			continue;
		nv = cl_view_node(v, vv->owner.node);
		if (!nv || !strcmp(nv->admin.state, "schedulable"))
			continue;
		n = ha_place(&h->c, &h->vms[i], vv->owner.node, NULL, 0);
		if (n >= 0 && cd_owner_cas(cd, vv, v->nodes[n].name, vv->owner.epoch + 1) == 1)
			cd_event(cd, vv->name, "drain-move", "stopped vm %s reassigned %s → %s",
				 vv->name, nv->name, v->nodes[n].name);
	}
}

static bool failed_recently(struct cd *cd, const struct cl_vm_view *vv)
{
	return vv->has_mig && !strcmp(vv->mig.phase, "failed") &&
	       cd_seen_ms(cd, vv->mig.id, "failed") < RETRY_FAILED_MS;
}

/* Say once (per distinct reason) why a VM of a draining node cannot move. */
static void note_blocked(struct cd *cd, const struct cl_vm_view *vv, const char *why)
{
	uint64_t hsh = 1469598103934665603ULL;

	for (const char *p = vv->name; *p; p++)
		hsh = (hsh ^ (unsigned char)*p) * 1099511628211ULL;
	for (const char *p = why; *p; p++)
		hsh = (hsh ^ (unsigned char)*p) * 1099511628211ULL;
	for (size_t i = 0; i < ARRAY_SIZE(cd->notes); i++)
		if (cd->notes[i] == hsh)
			return;
	cd->notes[cd->next_note++ % ARRAY_SIZE(cd->notes)] = hsh;
	cd_event(cd, vv->name, "drain-blocked", "cannot move vm %s off %s: %s", vv->name,
		 vv->owner.node, why);
}

/* Draining VMs the plan could not place: tell the operator why. */
static void report_blocked(struct cd *cd, const struct cl_view *v, const struct cl_ha *h,
			   const struct ha_move *moves, size_t n)
{
	char why[512];

	for (size_t i = 0; i < v->nvms; i++) {
		const struct cl_vm_view *vv = &v->vms[i];
		const struct cl_node_view *nv;
		bool planned = false;

		if (!h->vms[i].wanted || !vv->has_owner || h->vms[i].target)
			continue;
		nv = cl_view_node(v, vv->owner.node);
		if (!nv || !nv->alive || !strcmp(nv->admin.state, "schedulable"))
			continue;
		for (size_t k = 0; k < n; k++)
			planned |= moves[k].vm == i;
		if (h->vms[i].confidential)
			note_blocked(cd, vv, CL_CONFIDENTIAL_STAYS);
		else if (!planned &&
			 ha_place(&h->c, &h->vms[i], vv->owner.node, why, sizeof(why)) < 0)
			note_blocked(cd, vv, why);
	}
}

static void drain(struct cd *cd, const struct cl_view *v, const struct cl_ha *h)
{
	struct ha_move moves[MAX_MOVES];
	size_t n = ha_drain_plan(&h->c, cd->cfg->max_migrations, cd->cfg->max_migrations_per_node,
				 moves, MAX_MOVES);

	for (size_t i = 0; i < n; i++) {
		const struct cl_vm_view *vv = &v->vms[moves[i].vm];

		if (!failed_recently(cd, vv))
			request_move(cd, v, vv, v->nodes[moves[i].node].name);
	}
	report_blocked(cd, v, h, moves, n);
	reassign_stopped(cd, v, h);
}

void cd_leader(struct cd *cd, const struct cl_view *v)
{
	struct cl_ha h;

	if (!elect(cd, v) || cl_view_ha(v, &h))
		return;
	/* A failed VM runs nothing: the drain plan must not try to live-migrate it. */
	for (size_t i = 0; i < v->nvms; i++)
		if (v->vms[i].has_spec && v->vms[i].has_owner && runs_nothing(&v->vms[i]))
			h.vms[i].wanted = false;
	cd_restart_lost(cd, v, &h);
	place_unowned(cd, v, &h);
	drain(cd, v, &h);
	drop_orphans(cd, v);
	cl_ha_free(&h);
}

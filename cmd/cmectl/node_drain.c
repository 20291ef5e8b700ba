/* Waiting for a drain: poll the cluster until the node owns no VM, and say what happened
 * to each VM as it leaves (its migration's downtime) or why it cannot (a failed
 * migration's error, or a new error in its status). */
#include "cmectl.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define DRAIN_POLL_MS 500
/* How long a VM that left may wait for its migration's "done" (and statistics); the
 * target's clusterd itself writes "done" after 10 s without word from the source. */
#define DONE_GRACE_NS (15 * 1000000000ull)

struct drain_vm {
	char name[CL_NAME_MAX];
	bool done, said_place;
	uint64_t left_ns; /* when it was first seen gone from the node */
	char said[512];	  /* last problem reported, so each is said once */
	char first_status_err[sizeof(((struct cl_status *)0)->error)];
};

struct drain {
	struct ctl *c;
	const char *node;
	int64_t start_rev; /* migrations failed after this are news */
	struct drain_vm *vms;
	size_t n;
	json_t *moved, *problems; /* -o json */
};

static bool owned_by(const struct cl_vm_view *vv, const char *node)
{
	return vv && vv->has_owner && !strcmp(vv->owner.node, node);
}

/* Add the VMs the node owns now to the list (the list only grows). */
static int track(struct drain *d, const struct cl_view *v)
{
	for (size_t i = 0; i < v->nvms; i++) {
		const struct cl_vm_view *vv = &v->vms[i];
		struct drain_vm *arr;
		size_t k;

		if (!owned_by(vv, d->node))
			continue;
		for (k = 0; k < d->n && strcmp(d->vms[k].name, vv->name); k++)
			;
		if (k < d->n)
			continue;
		arr = realloc(d->vms, (d->n + 1) * sizeof(*arr));
		if (!arr)
			return ctl_fail("out of memory");
		d->vms = arr;
		memset(&arr[d->n], 0, sizeof(*arr));
		snprintf(arr[d->n].name, CL_NAME_MAX, "%s", vv->name);
		if (vv->has_status)
			snprintf(arr[d->n].first_status_err, sizeof(arr->first_status_err), "%s",
				 vv->status.error);
		d->n++;
	}
	return CTL_OK;
}

static uint64_t stats_u64(const char *stats, const char *field)
{
	json_t *o = json_loads(stats, 0, NULL);
	json_int_t n = json_integer_value(json_object_get(o, field));

	json_decref(o);
	return n > 0 ? (uint64_t)n : 0;
}

/* The VM left: say where to, with its migration's downtime when it migrated. */
static void say_left(struct drain *d, struct drain_vm *dv, const struct cl_vm_view *vv)
{
	bool migrated = vv && vv->has_mig && !strcmp(vv->mig.source, d->node) &&
			vv->mig.mod_rev > d->start_rev &&
			(!strcmp(vv->mig.phase, "done") || !strcmp(vv->mig.phase, "committed"));
	bool stats = migrated && !strcmp(vv->mig.phase, "done") && vv->mig.stats[0];
	const char *to = vv && vv->has_owner ? vv->owner.node : NULL;
	uint64_t down = stats ? stats_u64(vv->mig.stats, "downtime_ms") : 0;
	char how[64];

	dv->done = true;
	if (stats)
		snprintf(how, sizeof(how), "downtime %" PRIu64 " ms", down);
	else if (migrated)
		snprintf(how, sizeof(how), "migrated; no statistics reported");
	else
		snprintf(how, sizeof(how), "%s", !vv || !vv->has_spec ? "deleted" : "reassigned");
	if (d->c->json) {
		json_array_append_new(
			d->moved, json_pack("{s:s, s:o, s:b, s:o}", "vm", dv->name, "to",
					    to ? json_string(to) : json_null(), "migrated",
					    migrated, "downtime_ms",
					    stats ? json_integer((json_int_t)down) : json_null()));
		return;
	}
	if (to)
		printf("%s → %s (%s)\n", dv->name, to, how);
	else
		printf("%s: %s\n", dv->name, how);
	fflush(stdout);
}

/* Why ha finds no other node for VM i, once per VM (the leader plans with the same
 * function and writes nothing when it finds none); NULL when it finds one. */
static const char *no_place(struct drain_vm *dv, const struct cl_vm_view *vv, const struct cl_ha *h,
			    size_t i, char *why, size_t len)
{
	if (dv->said_place || (vv->has_mig && cl_migration_active(&vv->mig)))
		return NULL;
	if (h->vms[i].confidential) /* the leader never moves it live */
		snprintf(why, len, "%s", CL_CONFIDENTIAL_STAYS);
	else if (ha_place(&h->c, &h->vms[i], vv->owner.node, why, len) >= 0)
		return NULL;
	dv->said_place = true;
	return why;
}

/* Still on the node: report a new reason it cannot move, once. */
static void say_stuck(struct drain *d, struct drain_vm *dv, const struct cl_vm_view *vv,
		      const struct cl_ha *h, size_t i)
{
	const char *why = NULL;
	char place[512];

	if (vv->has_mig && !strcmp(vv->mig.phase, "failed") && vv->mig.mod_rev > d->start_rev)
		why = vv->mig.error[0] ? vv->mig.error : "migration failed";
	else if (vv->has_status && vv->status.error[0] &&
		 strcmp(vv->status.error, dv->first_status_err))
		why = vv->status.error;
	else
		why = no_place(dv, vv, h, i, place, sizeof(place));
	if (!why || !strcmp(why, dv->said))
		return;
	snprintf(dv->said, sizeof(dv->said), "%s", why);
	if (d->c->json)
		json_array_append_new(d->problems,
				      json_pack("{s:s, s:s}", "vm", dv->name, "error", why));
	else
		printf("%s: cannot move: %s\n", dv->name, why);
	fflush(stdout);
}

/* One look at the cluster: report, and count the VMs the node still owns (*owned) and
 * those gone whose migration has not said "done" yet (*waiting; none when force). */
static int drain_step(struct drain *d, bool force, size_t *owned, size_t *waiting)
{
	struct cl_view v;
	struct cl_ha h;
	int rc = ctl_view(d->c, &v);

	if (rc)
		return rc;
	if ((rc = ctl_view_ha(&v, &h))) {
		cl_view_free(&v);
		return rc;
	}
	if (!d->start_rev)
		d->start_rev = v.rev;
	rc = track(d, &v);
	*owned = *waiting = 0;
	for (size_t k = 0; k < d->n && !rc; k++) {
		struct drain_vm *dv = &d->vms[k];
		long i = ctl_vm_index(&v, dv->name);
		const struct cl_vm_view *vv = i >= 0 ? &v.vms[i] : NULL;

		if (dv->done)
			continue;
		if (owned_by(vv, d->node)) {
			say_stuck(d, dv, vv, &h, (size_t)i);
			(*owned)++;
			continue;
		}
		if (!dv->left_ns)
			dv->left_ns = now_ns();
		/* A migration past its commit still owes its statistics: wait a little. */
		if (!force && vv && vv->has_mig && cl_migration_active(&vv->mig) &&
		    now_ns() - dv->left_ns < DONE_GRACE_NS)
			(*waiting)++;
		else
			say_left(d, dv, vv);
	}
	cl_ha_free(&h);
	cl_view_free(&v);
	return rc;
}

static void left_names(const struct drain *d, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = 0;
	for (size_t k = 0; k < d->n && off + 1 < len; k++) {
		int n;

		if (d->vms[k].done)
			continue;
		n = snprintf(buf + off, len - off, "%s%s", off ? ", " : "", d->vms[k].name);
		off = n < 0 ? len : off + (size_t)n;
	}
}

static void drain_json(const struct drain *d, const char *state, bool drained)
{
	json_t *left = json_array();

	for (size_t k = 0; k < d->n; k++)
		if (!d->vms[k].done)
			json_array_append_new(left, json_string(d->vms[k].name));
	ctl_out_json(json_pack("{s:s, s:s, s:b, s:O, s:O, s:o}", "node", d->node, "admin", state,
			       "drained", drained, "moved", d->moved, "problems", d->problems,
			       "remaining", left));
}

int ctl_drain_wait(struct ctl *c, const char *node, const char *state)
{
	struct drain d = { .c = c, .node = node, .moved = json_array(), .problems = json_array() };
	uint64_t deadline = now_ns() + (uint64_t)c->timeout_s * 1000000000ull;
	size_t owned = 0, waiting = 0;
	char names[512];
	int rc;

	if (!c->json)
		printf("node %s is %s%s; waiting for its VMs to leave\n", node,
		       strcmp(state, "maintenance") ? "" : "in ", state);
	for (;;) {
		bool last = now_ns() >= deadline;

		rc = drain_step(&d, last, &owned, &waiting);
		if (rc || last || (!owned && !waiting))
			break;
		sleep_ms(DRAIN_POLL_MS);
	}
	if (c->json && !rc)
		drain_json(&d, state, !owned);
	if (!rc && owned) {
		left_names(&d, names, sizeof(names));
		rc = ctl_fail("node %s still owns %zu VM%s after %u s (%s); the drain goes on in "
			      "the background",
			      node, owned, owned == 1 ? "" : "s", c->timeout_s, names);
	} else if (!rc && !c->json) {
		printf("node %s drained\n", node);
	}
	json_decref(d.moved);
	json_decref(d.problems);
	free(d.vms);
	return rc;
}

/* The daemon's state that its files share: the lease it holds, the main loop's wake-up, and
 * when a migration phase was first seen here. Below every other file of clusterd. */
#include "cd_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cd_wake(struct cd *cd)
{
	pthread_mutex_lock(&cd->mu);
	cd->wake = true;
	pthread_cond_signal(&cd->cond);
	pthread_mutex_unlock(&cd->mu);
}

int64_t cd_lease(struct cd *cd)
{
	return atomic_load(&cd->lease);
}

uint64_t cd_seen_ms(struct cd *cd, const char *id, const char *phase)
{
	uint64_t now = now_ns();
	size_t oldest = 0;
	char key[64];

	snprintf(key, sizeof(key), "%s/%s", id, phase);
	for (size_t i = 0; i < ARRAY_SIZE(cd->seen); i++) {
		if (!strcmp(cd->seen[i].key, key)) {
			cd->seen[i].last_ns = now;
			return (now - cd->seen[i].first_ns) / 1000000;
		}
		if (cd->seen[i].last_ns < cd->seen[oldest].last_ns)
			oldest = i;
	}
	snprintf(cd->seen[oldest].key, sizeof(cd->seen[oldest].key), "%s", key);
	cd->seen[oldest].first_ns = cd->seen[oldest].last_ns = now;
	return 0;
}

void cd_etcd_answered(struct cd *cd, bool answered, uint64_t sent_ns)
{
	atomic_store(&cd->etcd_down, !answered);
	if (answered && sent_ns > atomic_load(&cd->etcd_ok_ns))
		atomic_store(&cd->etcd_ok_ns, sent_ns);
}

#define INFLIGHT_SILENT_NS 500000000ull

bool cd_etcd_silent(struct cd *cd)
{
	uint64_t period_ns = cd->cfg->lease_ttl_s * 1000000000ull / 3;
	uint64_t ok = atomic_load(&cd->etcd_ok_ns), sent = atomic_load(&cd->ka_sent_ns);
	uint64_t now = boottime_ns();

	return atomic_load(&cd->etcd_down) || (sent && now > sent + INFLIGHT_SILENT_NS) ||
	       now > ok + period_ns + 1000000000ull;
}

void cd_etcd_probe(struct cd *cd)
{
	atomic_store(&cd->ka_now, true);
}

/* ---- fencing ---------------------------------------------------------------------------- */

void cd_fence_init(struct cd *cd)
{
	struct cd_fence *f = &cd->fence;
	pthread_condattr_t ca;

	pthread_mutex_init(&f->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&f->cond, &ca);
	pthread_condattr_destroy(&ca);
	f->cfg = (struct ha_fence_cfg){ .ttl_ms = cd->cfg->lease_ttl_s * 1000ull,
					.margin_ms = cd->cfg->fence_margin_ms,
					.drift_ppm = cd->cfg->clock_drift_ppm };
}

void cd_fence_fini(struct cd *cd)
{
	free(cd->fence.vms);
	cd->fence.vms = NULL;
	cd->fence.nvms = 0;
	pthread_cond_destroy(&cd->fence.cond);
	pthread_mutex_destroy(&cd->fence.mu);
}

void cd_fence_renewed(struct cd *cd, int64_t lease, uint64_t sent_ns)
{
	struct cd_fence *f = &cd->fence;

	pthread_mutex_lock(&f->mu);
	/* A renewal answered late must not move the deadline back. */
	if (lease != f->lease || sent_ns > f->renewed_ns) {
		if (lease != f->lease)
			f->quorum_ns = 0;
		f->lease = lease;
		f->renewed_ns = sent_ns;
		f->deadline_ns = cd->cfg->fence ? ha_fence_deadline(&f->cfg, sent_ns) : 0;
	}
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->mu);
}

void cd_fence_registered(struct cd *cd, int64_t lease)
{
	pthread_mutex_lock(&cd->fence.mu);
	cd->fence.registered = lease;
	pthread_cond_broadcast(&cd->fence.cond);
	pthread_mutex_unlock(&cd->fence.mu);
}

uint64_t cd_fence_deadline(struct cd *cd, int64_t *lease)
{
	uint64_t d;

	pthread_mutex_lock(&cd->fence.mu);
	d = cd->fence.lease == cd->fence.registered ? cd->fence.deadline_ns : 0;
	if (d && cd->fence.quorum_ns > d)
		d = cd->fence.quorum_ns;
	if (lease)
		*lease = cd->fence.lease;
	pthread_mutex_unlock(&cd->fence.mu);
	return d;
}

void cd_fence_quorum(struct cd *cd, int64_t lease, uint64_t deadline_ns)
{
	struct cd_fence *f = &cd->fence;

	pthread_mutex_lock(&f->mu);
	if (cd->cfg->fence && lease == f->lease && deadline_ns > f->quorum_ns)
		f->quorum_ns = deadline_ns;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->mu);
}

static struct cd_fenced *fenced_find(struct cd_fence *f, const char *name)
{
	for (size_t i = 0; i < f->nvms; i++)
		if (!strcmp(f->vms[i].name, name))
			return &f->vms[i];
	return NULL;
}

void cd_fence_note(struct cd *cd, const char *name, bool fenced, uint64_t fenced_at_ns)
{
	struct cd_fence *f = &cd->fence;
	struct cd_fenced *e;

	pthread_mutex_lock(&f->mu);
	e = fenced_find(f, name);
	if (!e) {
		struct cd_fenced *n = realloc(f->vms, (f->nvms + 1) * sizeof(*n));

		if (n) {
			f->vms = n;
			e = &n[f->nvms++];
			memset(e, 0, sizeof(*e));
			snprintf(e->name, sizeof(e->name), "%s", name);
		}
	}
	if (e) {
		e->fenced = fenced;
		e->fenced_at_ns = fenced_at_ns;
	}
	pthread_mutex_unlock(&f->mu);
}

bool cd_fence_fenced(struct cd *cd, const char *name, uint64_t *at_ns)
{
	struct cd_fenced *e;
	bool fenced;

	pthread_mutex_lock(&cd->fence.mu);
	e = fenced_find(&cd->fence, name);
	fenced = e && e->fenced;
	if (at_ns)
		*at_ns = e ? e->fenced_at_ns : 0;
	pthread_mutex_unlock(&cd->fence.mu);
	return fenced;
}

void cd_fence_forget(struct cd *cd, const char *name)
{
	struct cd_fence *f = &cd->fence;
	struct cd_fenced *e;

	pthread_mutex_lock(&f->mu);
	e = fenced_find(f, name);
	if (e)
		*e = f->vms[--f->nvms];
	pthread_mutex_unlock(&f->mu);
}

/* cme-clusterd's life: open etcd, hold a lease, register the node, re-adopt VMMs, then loop:
 * wait for a change (the watch) or a second, read the whole cluster in one consistent read,
 * and act — reconcile, migrations, leader duties. Decisions are level-triggered from that
 * read, so a missed or repeated event can never leave the node wrong for long. */
#include "cd_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

#define SUB	     "clusterd"
#define TICK_MS	     1000
#define FAST_TICK_MS 50	   /* while a target's VMM is starting */
#define STUCK_MIN_MS 30000 /* the main loop may block this long before the lease goes */

/* ---- lease and registration ------------------------------------------------------------ */

/* <state_dir>/lease: the lease a restarted daemon takes over, so that its node record —
 * and the guests its deadlines keep running — survive a restart of the daemon. */
static void lease_path(struct cd *cd, char *buf, size_t len)
{
	snprintf(buf, len, "%s/lease", cd->cfg->state_dir);
}

static void lease_save(struct cd *cd, int64_t id)
{
	char path[CL_PATH_MAX + 8], txt[32];

	lease_path(cd, path, sizeof(path));
	snprintf(txt, sizeof(txt), "%llx\n", (unsigned long long)id);
	if (write_file_atomic(path, txt, strlen(txt)))
		log_warn(SUB, "cannot save the lease in %s", path);
}

static void lease_hold(struct cd *cd, int64_t id, uint64_t sent_ns, const char *how)
{
	atomic_store(&cd->registered, false); /* before the deadline can move (state.c) */
	atomic_store(&cd->lease, id);
	atomic_store(&cd->lease_ok_ms, wall_ms());
	cd_etcd_answered(cd, true, sent_ns);
	cd_fence_renewed(cd, id, sent_ns);
	log_info(SUB, "node=%s: %s lease %llx (TTL %u s)", cd->cfg->node, how,
		 (unsigned long long)id, cd->cfg->lease_ttl_s);
}

static int lease_new(struct cd *cd)
{
	struct etcd_err err = { "" };
	int64_t id;
	uint64_t t0 = boottime_ns();
	int rc = etcd_lease_grant(cd->etcd, cd->cfg->lease_ttl_s, &id, NULL, &err);

	if (rc) {
		log_warn(SUB, "lease: %s", err.msg);
		return rc;
	}
	lease_hold(cd, id, t0, "holding");
	lease_save(cd, id);
	return 0;
}

/* Take over the lease of this daemon's previous life if it still holds with our TTL. */
static void lease_adopt(struct cd *cd)
{
	struct etcd_err err = { "" };
	char path[CL_PATH_MAX + 8], txt[32] = "";
	unsigned long long id = 0;
	int64_t granted = 0;
	uint64_t t0 = boottime_ns();
	FILE *f;

	lease_path(cd, path, sizeof(path));
	f = fopen(path, "r");
	if (!f)
		return;
	if (!fgets(txt, sizeof(txt), f) || sscanf(txt, "%llx", &id) != 1 || !id) {
		fclose(f);
		return;
	}
	fclose(f);
	if (etcd_lease_keepalive(cd->etcd, (int64_t)id, NULL, &err) ||
	    etcd_lease_ttl(cd->etcd, (int64_t)id, NULL, &granted, &err) ||
	    granted != (int64_t)cd->cfg->lease_ttl_s)
		return; /* gone, unreachable or another TTL: a new one */
	lease_hold(cd, (int64_t)id, t0, "took over its previous");
}

/* A main loop that stopped going round (blocked on a VMM or a system call) must not keep
 * the node — and perhaps the leadership — alive through the keepalive thread alone. */
static bool main_loop_stuck(struct cd *cd)
{
	uint64_t limit = cd->cfg->lease_ttl_s * 3000ULL;
	uint64_t since = (now_ns() - atomic_load(&cd->tick_ns)) / 1000000;

	if (limit < STUCK_MIN_MS)
		limit = STUCK_MIN_MS;
	if (since <= limit)
		return false;
	log_err(SUB, "node=%s: the main loop has not run for %llu ms; letting the lease expire",
		cd->cfg->node, (unsigned long long)since);
	return true;
}

static void *keepalive_main(void *arg)
{
	struct cd *cd = arg;
	unsigned period = cd->cfg->lease_ttl_s * 1000 / 3;

	lease_adopt(cd);
	while (!atomic_load(cd->stop)) {
		struct etcd_err err = { "" };
		uint64_t t0 = wall_ms(), sent = boottime_ns();
		int64_t id = cd_lease(cd);
		int rc;

		if (main_loop_stuck(cd)) { /* let the lease go: others must see us gone */
			sleep_ms(500);
			continue;
		}
		atomic_store(&cd->ka_sent_ns, sent);
		rc = id ? etcd_lease_keepalive(cd->etcd, id, NULL, &err) : -ENOENT;
		atomic_store(&cd->ka_sent_ns, 0);

		if (id) /* ENOENT: etcd answered that the lease is gone */
			cd_etcd_answered(cd, rc == 0 || rc == -ENOENT, sent);
		if (rc == 0) {
			atomic_store(&cd->lease_ok_ms, t0);
			cd_fence_renewed(cd, id, sent);
		} else if (rc == -ENOENT) {
			if (id)
				log_warn(SUB, "lease %llx is gone; registering again",
					 (unsigned long long)id);
			if (lease_new(cd) == 0)
				cd_wake(cd);
		} else
			log_warn(SUB, "keepalive: %s", err.msg);
		/* A peer asking for a confirmation wants to know now whether etcd answers. */
		for (unsigned t = 0; t < (rc ? 500 : period) && !atomic_load(cd->stop) &&
				     !atomic_exchange(&cd->ka_now, false);
		     t += 20)
			sleep_ms(20);
	}
	return NULL;
}

static int watch_cb(void *opaque, const struct etcd_event *ev)
{
	(void)ev;
	cd_wake(opaque);
	return 0;
}

static void *watch_main(void *arg)
{
	struct cd *cd = arg;

	while (!atomic_load(cd->stop)) {
		struct etcd_err err = { "" };
		int rc = etcd_watch(cd->etcd, cd->cfg->prefix, true, 0, watch_cb, cd, cd->stop,
				    &err);

		if (rc && !atomic_load(cd->stop)) {
			log_warn(SUB, "watch: %s; retrying", err.msg);
			sleep_ms(1000);
		}
	}
	return NULL;
}

/* Write nodes/<me>: created only if absent (or already under our lease), then updated
 * by compare-and-swap on our own last write. A node name held by another live lease —
 * a copied config, or our previous life whose lease has not expired yet — is not ours:
 * running that node's VMs from two daemons would run them twice. */
static int node_write(struct cd *cd, const char *key, const char *json)
{
	struct etcd_err err = { "" };
	struct etcd_kv *kv = NULL;
	int64_t lease = cd_lease(cd), rev = 0;
	bool ok = false;
	int rc;

	if (atomic_load(&cd->registered))
		rc = etcd_cas_mod(cd->etcd, key, cd->node_rev, json, strlen(json), lease, &ok, &rev,
				  &err);
	else
		rc = etcd_create(cd->etcd, key, json, strlen(json), lease, &ok, &kv, &err);
	if (!rc && !ok && kv && kv->lease == lease) /* ours: an earlier reply was lost */
		rc = etcd_cas_mod(cd->etcd, key, kv->mod_rev, json, strlen(json), lease, &ok, &rev,
				  &err);
	else if (kv && ok)
		rev = kv->mod_rev;
	if (!rc && !ok && (!kv || kv->lease != lease) &&
	    now_ns() / 1000000 - cd->dup_note_ms > 10000) {
		log_err(SUB,
			"node=%s: the name is held by another live daemon (lease %llx); "
			"waiting for it to expire before running anything",
			cd->cfg->node, (unsigned long long)(kv ? kv->lease : 0));
		cd->dup_note_ms = now_ns() / 1000000;
	}
	etcd_kv_free(kv);
	if (rc)
		log_warn(SUB, "register: %s", err.msg);
	if (!rc && ok) {
		cd->node_rev = rev;
		cd_fence_registered(cd, lease);
	}
	return rc ? rc : ok ? 0 : -EEXIST;
}

/* Register (or refresh) this node. Returns false while the node is not ours to run. */
static bool register_node(struct cd *cd, const struct cl_view *v)
{
	struct cl_node n = { .cpus = cd->cfg->cpus, .mem_mb = cd->cfg->mem_mb };
	struct cl_node_view *nv = cl_view_node(v, cd->cfg->node);
	uint32_t running = 0;
	char key[256], *json;
	int rc;

	for (size_t i = 0; i < cd->nvms; i++) /* a worker's VMM counts; its fields are its own */
		running += cd->vms[i]->src || !cd->vms[i]->exited;
	if (!nv || !nv->alive)
		atomic_store(&cd->registered, false); /* gone (expired): create it again */
	cd_quorum_members_hash(cd, n.members);
	if (atomic_load(&cd->registered) && running == cd->published_vms &&
	    !strcmp(n.members, cd->published_members))
		return true;
	snprintf(n.name, sizeof(n.name), "%s", cd->cfg->node);
	snprintf(n.addr, sizeof(n.addr), "%s", cd->cfg->address);
	snprintf(n.version, sizeof(n.version), "%s", CL_VERSION);
	snprintf(n.cpu_features, sizeof(n.cpu_features), "%s", cd->cpu_features);
	snprintf(n.mem_encryption, sizeof(n.mem_encryption), "%s", cd->mem_encryption);
	n.vms = running;
	n.started_ms = nv && nv->alive ? nv->node.started_ms : wall_ms();
	cd_key(cd, key, sizeof(key), "nodes", cd->cfg->node, NULL);
	json = cl_node_json(&n);
	rc = json ? node_write(cd, key, json) : -ENOMEM;
	free(json);
	if (rc == -EEXIST)
		atomic_store(&cd->registered, false);
	if (rc)
		return atomic_load(&cd->registered);
	if (!atomic_exchange(&cd->registered, true))
		cd_event(cd, NULL, "node-up", "node %s registered (%u vCPUs, %llu MiB)", n.name,
			 n.cpus, (unsigned long long)n.mem_mb);
	cd->published_vms = running;
	memcpy(cd->published_members, n.members, sizeof(n.members));
	return true;
}

/* ---- the main loop --------------------------------------------------------------------- */

static void tick(struct cd *cd)
{
	struct cl_view v;
	struct etcd_err err = { "" };
	uint64_t read_ns = boottime_ns();

	cd_migrations_reap(cd, false);
	if (!cd_lease(cd))
		return; /* the keepalive thread gets one */
	if (cl_view_read(cd->etcd, cd->cfg->prefix, &v, &err)) {
		if (wall_ms() - cd->last_view_err_ms > 10000) {
			log_warn(SUB, "cannot read the cluster (VMs keep running): %s", err.msg);
			cd->last_view_err_ms = wall_ms();
		}
		return;
	}
	if (!register_node(cd, &v)) {
		cl_view_free(&v);
		return; /* not (yet) ours to run: change nothing */
	}
	cd_quorum_view(cd, &v, read_ns);
	cd_trust_sync(cd, &v);
	cd_reconcile(cd, &v);
	cd_migrations(cd, &v);
	cd_backups(cd, &v);
	cd_leader(cd, &v);
	cl_view_free(&v);
}

static void wait_wake(struct cd *cd, unsigned ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&cd->mu);
	while (!cd->wake && !atomic_load(cd->stop))
		if (pthread_cond_timedwait(&cd->cond, &cd->mu, &ts))
			break;
	cd->wake = false;
	pthread_mutex_unlock(&cd->mu);
}

/* One daemon per state folder: two would share its lease file and both run its VMs. */
static int lock_state_dir(struct cd *cd, char *err, size_t errlen)
{
	char path[CL_PATH_MAX + 8];
	int rc;

	snprintf(path, sizeof(path), "%s/lock", cd->cfg->state_dir);
	cd->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (cd->lock_fd < 0 || flock(cd->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		rc = -errno;
		snprintf(err, errlen, "state dir %s: %s", cd->cfg->state_dir,
			 rc == -EWOULDBLOCK ? "in use by another cme-clusterd" : strerror(-rc));
		return rc;
	}
	return 0;
}

static int prepare(struct cd *cd, char *err, size_t errlen)
{
	struct etcd_cfg ec = { .endpoints = cd->cfg->etcd,
			       .timeout_ms = (int)cd->cfg->etcd_timeout_ms };
	struct etcd_err e = { "" };
	char dir[CL_PATH_MAX + 8];
	int rc;

	ec.ca = cd->cfg->etcd_ca[0] ? cd->cfg->etcd_ca : NULL;
	ec.cert = cd->cfg->etcd_cert[0] ? cd->cfg->etcd_cert : NULL;
	ec.key = cd->cfg->etcd_key[0] ? cd->cfg->etcd_key : NULL;
	snprintf(dir, sizeof(dir), "%s/vms", cd->cfg->state_dir);
	if ((mkdir(cd->cfg->state_dir, 0750) && errno != EEXIST) ||
	    (mkdir(dir, 0750) && errno != EEXIST)) {
		rc = -errno;
		snprintf(err, errlen, "state dir %s: %s", dir, strerror(errno));
		return rc;
	}
	rc = lock_state_dir(cd, err, errlen);
	if (rc)
		return rc;
	rc = etcd_open(&ec, &cd->etcd, &e);
	if (rc)
		snprintf(err, errlen, "etcd: %s", e.msg);
	return rc;
}

int cd_run(const struct cd_config *c, const atomic_bool *stop, char *err, size_t errlen)
{
	struct cd cd = { .cfg = c, .stop = stop, .lock_fd = -1 };
	pthread_t ka, watch, fence;
	int rc;

	pthread_condattr_t ca;

	pthread_mutex_init(&cd.mu, NULL);
	pthread_mutex_init(&cd.ev_mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* a clock step must not stall us */
	pthread_cond_init(&cd.cond, &ca);
	pthread_condattr_destroy(&ca);
	cd_fence_init(&cd);
	rc = prepare(&cd, err, errlen);
	if (rc)
		goto out;
	cd_host_cpu(&cd);
	rc = cd_quorum_start(&cd, err, errlen);
	if (rc)
		goto out;
	cd_trust_load(&cd);
	cd_lvm_adopt_all(&cd);
	log_info(SUB, "node=%s: %zu VMM(s) re-adopted; etcd %s", c->node, cd.nvms, c->etcd);
	if (pthread_create(&ka, NULL, keepalive_main, &cd)) {
		rc = -EAGAIN;
		goto out;
	}
	if (pthread_create(&fence, NULL, cd_fence_main, &cd)) {
		rc = -EAGAIN;
		goto out_ka;
	}
	if (pthread_create(&watch, NULL, watch_main, &cd)) {
		rc = -EAGAIN;
		goto out_fence;
	}
	atomic_store(&cd.tick_ns, now_ns());
	while (!atomic_load(stop)) {
		cd.fast_tick = false;
		tick(&cd);
		atomic_store(&cd.tick_ns, now_ns());
		wait_wake(&cd, cd.fast_tick ? FAST_TICK_MS : TICK_MS);
	}
	cd_migrations_reap(&cd, true);
	cd_backups_stop(&cd);
	pthread_join(watch, NULL);
out_fence:
	cd_fence_wake(&cd);
	pthread_join(fence, NULL);
out_ka:
	cd_wake(&cd);
	pthread_join(ka, NULL);
out:
	cd_quorum_stop(&cd);
	log_info(SUB, "node=%s: exiting; %zu VMM(s) left running", c->node, cd.nvms);
	while (cd.nvms)
		cd_lvm_remove(&cd, cd.vms[0]);
	free(cd.vms);
	free(cd.alive_prev);
	free(cd.lost_said);
	etcd_close(cd.etcd);
	if (cd.lock_fd >= 0)
		close(cd.lock_fd);
	cd_fence_fini(&cd);
	pthread_cond_destroy(&cd.cond);
	pthread_mutex_destroy(&cd.ev_mu);
	pthread_mutex_destroy(&cd.mu);
	return rc;
}

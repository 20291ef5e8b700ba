/* Live migration in the cluster, as DESIGN.md says. The record migrations/<vm> moves
 * requested → ready → streaming → committed → done (or failed):
 *   target: on "requested" starts `cme-vmm incoming --commit external`, publishes its
 *           address and says "ready"; once the owner record names it, tells its VMM to
 *           run the guest (if the source's COMMIT has not already done so);
 *   source: on "ready" a worker thread makes its VMM stream with an external commit; when
 *           the VMM holds the guest paused awaiting the decision, one etcd transaction
 *           moves the owner record (compare mod_revision → {target, epoch + 1}) and marks
 *           the record "committed"; then it tells its VMM to commit, or to abort and
 *           resume when the transaction lost. An unknown outcome is retried with the same
 *           compare (only one attempt can win) and decided by reading the owner record. */
#include "cd_priv.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SUB		"migration"
#define COMMITTED_QUIET 10000 /* ms a committed record may wait for the source's "done" */

/* COMMITTED: the owner record names the target; FAILED: it still names us, unchanged, so
 * the guest may resume here; FENCED: it moved anywhere else — the source copy must stop,
 * never resume; STOPPED: the daemon is stopping, the next life decides; PC_BROKEN: post-copy
 * broke after the commit — the VMM keeps the guest paused as of the switch, and
 * pc_recover.c takes it back. */
enum outcome { OUT_NONE, OUT_COMMITTED, OUT_FAILED, OUT_FENCED, OUT_STOPPED, OUT_PC_BROKEN };

struct src_mig {
	struct cd *cd;
	struct lvm *l;
	pthread_t thread;
	atomic_bool finished;
	bool adopt;
	struct cl_migration m; /* our copy; m.mod_rev follows our writes */
	struct cl_owner owner; /* the owner record we compare against (node == us) */
	enum outcome out;
	bool decided;
	bool cancelled; /* the record changed under us: never commit */
	bool pc_said;	/* the record says "postcopy" */
	uint64_t last_write_ms;
	char error[256];
	char stats[1024];
};

void cd_mig_fail(struct cd *cd, const struct cl_vm_view *vv, const char *fmt, ...)
{
	struct cl_migration m = vv->mig;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(m.error, sizeof(m.error), fmt, ap);
	va_end(ap);
	snprintf(m.phase, sizeof(m.phase), "failed");
	if (cd_mig_cas(cd, &m) == 1)
		cd_event(cd, m.vm, "migrate-failed", "migration %s %s → %s failed: %s", m.id,
			 m.source, m.target, m.error);
}

/* ---- source worker ----------------------------------------------------------------- */

/* Re-read our record; returns 0 with *m fresh, -ENOENT when it is gone or not ours. */
static int mig_reload(struct cd *cd, struct cl_migration *m)
{
	struct etcd_kv *kv = NULL;
	struct etcd_err err = { "" };
	struct cl_migration cur;
	char key[256];
	int rc = etcd_get(cd->etcd, cd_key(cd, key, sizeof(key), "migrations", m->vm, NULL), &kv,
			  &err);

	if (rc)
		return rc;
	if (!kv || cl_migration_parse((const char *)kv->val, kv->vlen, &cur, &err) ||
	    strcmp(cur.id, m->id)) {
		etcd_kv_free(kv);
		return -ENOENT;
	}
	cur.mod_rev = kv->mod_rev;
	*m = cur;
	etcd_kv_free(kv);
	return 0;
}

/* "done" means the guest runs on the target: wait (briefly) until the target's status
 * says so, so that whoever reads "done" finds a consistent cluster. */
static void src_wait_target_running(struct src_mig *s)
{
	char key[256];

	cd_key(s->cd, key, sizeof(key), "vms", s->m.vm, "status");
	for (int i = 0; i < 100 && !atomic_load(s->cd->stop); i++, sleep_ms(50)) {
		struct etcd_kv *kv = NULL;
		struct etcd_err err;
		struct cl_status st;
		bool there = etcd_get(s->cd->etcd, key, &kv, &err) == 0 && kv &&
			     !cl_status_parse((const char *)kv->val, kv->vlen, &st, &err) &&
			     !strcmp(st.node, s->m.target) && !strcmp(st.state, "running");

		etcd_kv_free(kv);
		if (there)
			return;
	}
	log_warn(SUB, "vm=%s: the target %s has not reported the guest running yet", s->m.vm,
		 s->m.target);
}

/* Write the final phase, re-reading on a lost race (the target may have written too). */
static void src_finish(struct src_mig *s, const char *phase)
{
	struct cl_migration m = s->m;

	for (int i = 0; i < 5; i++) {
		snprintf(m.phase, sizeof(m.phase), "%s", phase);
		snprintf(m.error, sizeof(m.error), "%s", s->error);
		snprintf(m.stats, sizeof(m.stats), "%s", s->stats);
		m.cluster_ms = cd_ms_between(wall_ms(), m.requested_ms);
		if (cd_mig_cas(s->cd, &m) == 1 || mig_reload(s->cd, &m) == -ENOENT)
			break;
	}
	s->m = m;
}

static void progress_from(struct cl_migration *m, json_t *ev)
{
	const char *ph = json_string_value(json_object_get(ev, "phase"));

	snprintf(m->vmm_phase, sizeof(m->vmm_phase), "%s", ph ? ph : "");
	m->round = (unsigned)json_integer_value(json_object_get(ev, "round"));
	m->pages_left = (uint64_t)json_integer_value(json_object_get(ev, "pages_left"));
	m->bytes_sent = (uint64_t)json_integer_value(json_object_get(ev, "bytes_sent"));
	m->rate_mbps = json_number_value(json_object_get(ev, "rate_mbps"));
	m->throttle_pct = (unsigned)json_integer_value(json_object_get(ev, "throttle_pct"));
	m->expected_downtime_ms =
		(uint64_t)json_integer_value(json_object_get(ev, "expected_downtime_ms"));
}

/* Progress to etcd at a bounded rate; a record changed by someone else (the target
 * failed, an operator removed it) cancels the migration while that is still possible. */
static void src_progress(struct src_mig *s, json_t *ev)
{
	int rc;

	progress_from(&s->m, ev);
	if (now_ns() / 1000000 - s->last_write_ms < s->cd->cfg->progress_interval_ms || s->decided)
		return;
	s->last_write_ms = now_ns() / 1000000;
	rc = cd_mig_cas(s->cd, &s->m);
	if (rc != 0)
		return;
	if (mig_reload(s->cd, &s->m) == -ENOENT || strcmp(s->m.phase, "streaming")) {
		log_warn(SUB, "vm=%s mig=%s: record changed under us (%s); cancelling", s->m.vm,
			 s->m.id, s->m.phase);
		s->cancelled = true;
		if (cd_lvm_request(s->l, "migrate-cancel", NULL, NULL))
			log_warn(SUB, "vm=%s: cancel refused", s->m.vm);
	}
}

static bool txn_unknown(int rc)
{
	return rc != -EINVAL && rc != -EACCES && rc != -EPERM && rc != -ENOMEM;
}

/* The commit: owner {us, epoch} → {target, epoch + 1} and the record → committed, in one
 * transaction. Retried while its outcome is unknown: every attempt compares the same
 * revisions, so at most one can apply. */
static enum outcome src_commit_txn(struct src_mig *s)
{
	struct cd *cd = s->cd;
	struct cl_owner no = { .epoch = s->owner.epoch + 1 };
	struct cl_migration m = s->m;
	char okey[256], mkey[256], *oj, *mj;
	struct etcd_cmp cmp[2];
	struct etcd_op ops[2];
	struct etcd_txn t = { cmp, 2, ops, 2, NULL, 0 };
	struct etcd_txn_resp r = { 0 };
	struct etcd_err err = { "" };
	enum outcome out = OUT_FAILED;
	int rc;

	snprintf(no.node, sizeof(no.node), "%s", m.target);
	snprintf(m.phase, sizeof(m.phase), "committed");
	m.updated_ms = wall_ms();
	oj = cl_owner_json(&no);
	mj = cl_migration_json(&m);
	cd_key(cd, okey, sizeof(okey), "vms", m.vm, "owner");
	cd_key(cd, mkey, sizeof(mkey), "migrations", m.vm, NULL);
	cmp[0] = (struct etcd_cmp){ .key = okey, .target = ETCD_CMP_MOD, .num = s->owner.mod_rev };
	cmp[1] = (struct etcd_cmp){ .key = mkey, .target = ETCD_CMP_MOD, .num = s->m.mod_rev };
	ops[0] = (struct etcd_op){
		.type = ETCD_OP_PUT, .key = okey, .val = oj, .vlen = oj ? strlen(oj) : 0
	};
	ops[1] = (struct etcd_op){
		.type = ETCD_OP_PUT, .key = mkey, .val = mj, .vlen = mj ? strlen(mj) : 0
	};
	while (oj && mj && (rc = etcd_txn(cd->etcd, &t, &r, &err)) && txn_unknown(rc)) {
		log_warn(SUB, "vm=%s mig=%s: commit outcome unknown (%s); retrying", m.vm, m.id,
			 err.msg);
		if (atomic_load(cd->stop)) {
			out = OUT_STOPPED; /* stays paused; our next life decides */
			goto done;
		}
		sleep_ms(500);
	}
	if (oj && mj && !rc && r.succeeded) {
		out = OUT_COMMITTED;
		m.mod_rev = r.header_rev;
		s->m = m;
	}
done:
	etcd_txn_resp_free(&r);
	free(oj);
	free(mj);
	return out;
}

static enum outcome owner_outcome(const struct src_mig *s, const struct etcd_kv *kv)
{
	struct etcd_err err;
	struct cl_owner o;

	if (!kv || cl_owner_parse((const char *)kv->val, kv->vlen, &o, &err))
		return OUT_FENCED;
	if (!strcmp(o.node, s->m.target) && o.epoch == s->owner.epoch + 1)
		return OUT_COMMITTED;
	if (!strcmp(o.node, s->owner.node) && o.epoch == s->owner.epoch &&
	    kv->mod_rev == s->owner.mod_rev)
		return OUT_FAILED;
	return OUT_FENCED;
}

/* After a failed compare: did an earlier attempt of ours win, is the record unchanged (we
 * may resume), or did it move elsewhere (we must not)? Read until we know. */
static enum outcome src_owner_says(struct src_mig *s)
{
	struct cd *cd = s->cd;

	while (!atomic_load(cd->stop)) {
		struct etcd_kv *kv = NULL;
		struct etcd_err err = { "" };
		char key[256];
		int rc = etcd_get(cd->etcd, cd_key(cd, key, sizeof(key), "vms", s->m.vm, "owner"),
				  &kv, &err);

		if (!rc) {
			enum outcome out = owner_outcome(s, kv);

			etcd_kv_free(kv);
			return out;
		}
		log_warn(SUB, "vm=%s: cannot read the owner record: %s", s->m.vm, err.msg);
		sleep_ms(500);
	}
	return OUT_STOPPED;
}

static void fault_point(const char *name)
{
	const char *f = getenv("CME_CLUSTERD_FAULT");

	if (f && !strcmp(f, name)) {
		log_err(SUB, "fault injection: %s: exiting now", name);
		_exit(99);
	}
}

/* Hand the decision to the VMM, again until it takes it: a decision not delivered would
 * leave the guest paused for ever. FENCED stops the VMM instead (it must never resume). */
static void src_deliver(struct src_mig *s)
{
	json_t *args = s->out == OUT_COMMITTED
			       ? json_pack("{s:s}", "decision", "commit")
			       : json_pack("{s:s,s:s}", "decision", "abort", "reason", s->error);

	while (s->out != OUT_FENCED && cd_lvm_alive(s->l) && !atomic_load(s->cd->stop)) {
		json_t *r = NULL;
		int rc = cd_lvm_request(s->l, "migrate-commit", args, &r);
		const char *e = json_string_value(json_object_get(r, "error"));
		bool done = rc == 0 || (e && strstr(e, "already decided"));

		json_decref(r);
		if (done)
			break;
		log_warn(SUB, "vm=%s: the VMM did not take the decision (%s); again", s->m.vm,
			 e ? e : strerror(-rc));
		sleep_ms(500);
	}
	json_decref(args);
	if (s->out == OUT_FENCED) {
		log_err(SUB,
			"vm=%s: the owner record moved elsewhere during the migration; "
			"stopping the paused source copy",
			s->m.vm);
		cd_lvm_stop(s->l, 2000);
	}
}

static void src_decide(struct src_mig *s)
{
	enum outcome out;

	s->decided = true;
	out = s->cancelled ? OUT_FAILED : src_commit_txn(s);
	if (out == OUT_FAILED)
		out = src_owner_says(s);
	s->out = out;
	if (out == OUT_STOPPED)
		return;
	if (out == OUT_COMMITTED) {
		fault_point("exit-after-commit");
		cd_event(s->cd, s->m.vm, "migrate-committed",
			 "owner of %s moved %s → %s (epoch %llu)", s->m.vm, s->m.source,
			 s->m.target, (unsigned long long)s->owner.epoch + 1);
	} else {
		snprintf(s->error, sizeof(s->error), "%s",
			 out == OUT_FENCED ? "the owner record moved elsewhere during the "
					     "migration; the source copy was stopped"
					   : "the migration record or the owner record changed "
					     "during the migration");
	}
	src_deliver(s);
}

/* Committed, and the guest runs on the target while its last pages follow: say so once
 * (after a restart, the VMM's status tells; the commit was decided before). */
static void src_postcopy(struct src_mig *s)
{
	struct cl_migration m = s->m;

	if (s->pc_said)
		return;
	s->decided = true;
	s->out = s->out == OUT_NONE ? OUT_COMMITTED : s->out;
	for (int i = 0; i < 5 && !s->pc_said; i++) {
		snprintf(m.phase, sizeof(m.phase), "postcopy");
		if (cd_mig_cas(s->cd, &m) == 1 || mig_reload(s->cd, &m) == -ENOENT)
			s->pc_said = true;
	}
	s->m = m;
	if (s->pc_said)
		cd_event(s->cd, s->m.vm, "migrate-postcopy",
			 "%s runs on %s; the pages it left behind follow from %s", s->m.vm,
			 s->m.target, s->m.source);
}

/* One progress or final event from the VMM. Returns true when the migration ended. */
static bool src_event(struct src_mig *s, json_t *ev)
{
	const char *phase = json_string_value(json_object_get(ev, "phase"));
	const char *err = json_string_value(json_object_get(ev, "error"));
	char *st, *cut;

	if (!phase)
		return false;
	if (!strcmp(phase, "awaiting-commit") && !s->decided) {
		src_decide(s);
		return s->out == OUT_STOPPED;
	}
	if (!strcmp(phase, "postcopy")) {
		src_postcopy(s);
		return false;
	}
	if (!strcmp(phase, "postcopy-broken")) {
		s->out = OUT_PC_BROKEN;
		/* the cause; the VMM's advice to an operator (" — ...") is the cluster's job */
		snprintf(s->error, sizeof(s->error), "%s", err ? err : "post-copy broke");
		if ((cut = strstr(s->error, " — ")))
			*cut = 0;
		return true;
	}
	if (!strcmp(phase, "done") || !strcmp(phase, "in-doubt") || !strcmp(phase, "failed")) {
		if (!s->decided) /* cannot end otherwise in external mode; be safe anyway */
			s->out = strcmp(phase, "failed") ? OUT_COMMITTED : OUT_FAILED;
		if (err && !s->error[0])
			snprintf(s->error, sizeof(s->error), "%s", err);
		st = json_object_get(ev, "stats")
			     ? json_dumps(json_object_get(ev, "stats"), JSON_COMPACT)
			     : NULL;
		if (st && strlen(st) < sizeof(s->stats))
			strcpy(s->stats, st);
		free(st);
		return true;
	}
	src_progress(s, ev);
	return false;
}

/* Follow the VMM's progress lines on the connection that started the migration. */
static void src_follow(struct src_mig *s, int fd)
{
	struct linebuf lb;
	bool end = false;

	linebuf_init(&lb, 1 << 20);
	while (!end && !atomic_load(s->cd->stop)) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char *line;
		ssize_t n;

		if (poll(&p, 1, 500) <= 0)
			continue;
		n = linebuf_fill(&lb, fd);
		if (n == 0 || (n < 0 && n != -EAGAIN && n != -EINTR)) {
			snprintf(s->error, sizeof(s->error), "lost contact with the source VMM");
			break;
		}
		while (!end && (line = linebuf_take(&lb))) {
			json_t *ev = json_loads(line, 0, NULL);

			end = ev && src_event(s, ev);
			json_decref(ev);
			free(line);
		}
	}
	linebuf_free(&lb);
}

/* After a restart of the daemon: poll the VMM's migration instead of following it. */
static void src_poll(struct src_mig *s)
{
	bool end = false;

	while (!end && !atomic_load(s->cd->stop)) {
		json_t *r = NULL;
		int rc = cd_lvm_request(s->l, "migrate-status", NULL, &r);

		if (rc == 0 || rc == -EREMOTEIO)
			end = src_event(s, r) || rc;
		else if (!cd_lvm_alive(s->l)) {
			s->out = s->decided ? s->out : OUT_FAILED;
			snprintf(s->error, sizeof(s->error), "the source VMM ended");
			end = true;
		}
		json_decref(r);
		if (!end)
			sleep_ms(200);
	}
}

/* Start the VMM's migration with an external commit and follow it on that connection. */
static int src_start(struct src_mig *s)
{
	struct cd *cd = s->cd;
	char api[CL_PATH_MAX + 32];
	json_t *req = json_pack("{s:s,s:s,s:s,s:s,s:s,s:b}", "cmd", "migrate", "to", s->m.dest_addr,
				"tls_dir", cd->cfg->tls_dir, "peer_name", s->m.target, "commit",
				"external", "follow", 1);
	json_t *reply = NULL;
	int fd, rc;

	if (s->m.postcopy_after)
		json_object_set_new(req, "postcopy_after", json_integer(s->m.postcopy_after));
	if (s->m.max_bandwidth)
		json_object_set_new(req, "max_bandwidth",
				    json_integer((json_int_t)s->m.max_bandwidth));
	if (s->m.downtime_ms)
		json_object_set_new(req, "downtime_ms", json_integer((json_int_t)s->m.downtime_ms));
	snprintf(api, sizeof(api), "%s/api.sock", s->l->vdir);
	fd = unix_connect(api);
	if (fd >= 0) { /* the first reply is due at once; the follow loop polls */
		struct timeval tv = { .tv_sec = 10 };

		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	rc = fd < 0 ? fd : jsonl_send(fd, req);
	if (!rc)
		rc = jsonl_recv(fd, 1 << 20, &reply);
	if (!rc && !json_is_true(json_object_get(reply, "ok"))) {
		snprintf(s->error, sizeof(s->error), "source VMM refused: %s",
			 json_string_value(json_object_get(reply, "error")) ?: "?");
		rc = -EREMOTEIO;
	} else if (rc) {
		snprintf(s->error, sizeof(s->error), "source VMM unreachable: %s", strerror(-rc));
	}
	if (!rc)
		src_follow(s, fd);
	if (fd >= 0)
		close(fd);
	json_decref(req);
	json_decref(reply);
	return rc;
}

static void src_status(struct src_mig *s, const char *state)
{
	struct cl_status st = { .pid = (int)s->l->pid, .epoch = s->owner.epoch };
	struct cl_vm_view vv = { 0 };

	snprintf(vv.name, sizeof(vv.name), "%s", s->m.vm);
	snprintf(st.node, sizeof(st.node), "%s", s->cd->cfg->node);
	snprintf(st.state, sizeof(st.state), "%s", state);
	cd_lvm_console_path(s->l, st.console, sizeof(st.console));
	cd_status_ensure(s->cd, &vv, &st);
}

/* "migrated" with the figures an operator looks at first. */
static void src_event_done(struct src_mig *s)
{
	json_t *st = json_loads(s->stats, 0, NULL);

	cd_event(s->cd, s->m.vm, "migrated",
		 "%s → %s: downtime %lld ms, VMM total %lld ms, request to done %llu ms%s%s",
		 s->m.source, s->m.target, json_integer_value(json_object_get(st, "downtime_ms")),
		 json_integer_value(json_object_get(st, "total_ms")),
		 (unsigned long long)s->m.cluster_ms, s->error[0] ? "; " : "", s->error);
	json_decref(st);
}

/* We lost track of the VMM's migration without deciding (the follow connection broke):
 * the VMM may still reach awaiting-commit, where only a decision ends the pause. Cancel
 * it if it still can be, or decide abort (after the owner check) if it waits. */
static void src_settle(struct src_mig *s)
{
	s->cancelled = true;
	for (int i = 0; i < 300 && cd_lvm_alive(s->l) && !atomic_load(s->cd->stop); i++) {
		json_t *r = NULL;
		const char *ph;

		if (cd_lvm_request(s->l, "migrate-status", NULL, &r) == 0) {
			ph = json_string_value(json_object_get(r, "phase"));
			if (ph && !strcmp(ph, "awaiting-commit")) {
				src_decide(s); /* cancelled: no txn, the owner record decides */
				json_decref(r);
				return;
			}
			if (ph && (!strcmp(ph, "failed") || !strcmp(ph, "done") ||
				   !strcmp(ph, "in-doubt"))) {
				json_decref(r);
				return;
			}
			if (cd_lvm_request(s->l, "migrate-cancel", NULL, NULL))
				log_debug(SUB, "vm=%s: cancel not taken yet", s->m.vm);
		}
		json_decref(r);
		sleep_ms(200);
	}
}

static void *src_main(void *arg)
{
	struct src_mig *s = arg;

	if (s->adopt) {
		src_poll(s);
	} else {
		snprintf(s->m.phase, sizeof(s->m.phase), "streaming");
		if (cd_mig_cas(s->cd, &s->m) != 1)
			snprintf(s->error, sizeof(s->error), "the migration record changed");
		else {
			src_status(s, "migrating");
			if (src_start(s))
				s->out = OUT_FAILED;
		}
	}
	if (s->out == OUT_NONE)
		s->out = atomic_load(s->cd->stop) ? OUT_STOPPED : OUT_FAILED;
	if (s->out == OUT_FAILED && !s->decided)
		src_settle(s);
	if (s->out == OUT_COMMITTED)
		src_wait_target_running(s);
	if (s->out != OUT_STOPPED)
		src_finish(s, s->out == OUT_COMMITTED	? "done"
			      : s->out == OUT_PC_BROKEN ? "postcopy-broken"
							: "failed");
	if (s->out == OUT_COMMITTED)
		src_event_done(s);
	else if (s->out == OUT_PC_BROKEN)
		cd_event(s->cd, s->m.vm, "migrate-postcopy-broken",
			 "%s → %s broke after the switch: %s; the guest waits paused on %s as of "
			 "the switch until %s's VMM is known to be gone",
			 s->m.source, s->m.target, s->error, s->m.source, s->m.target);
	else if (s->out == OUT_FAILED)
		cd_event(s->cd, s->m.vm, "migrate-failed", "%s → %s failed: %s; runs on %s",
			 s->m.source, s->m.target, s->error, s->m.source);
	else if (s->out == OUT_FENCED)
		cd_event(s->cd, s->m.vm, "migrate-fenced", "%s → %s: %s", s->m.source, s->m.target,
			 s->error);
	atomic_store(&s->finished, true);
	cd_wake(s->cd);
	return NULL;
}

void cd_src_launch(struct cd *cd, struct lvm *l, const struct cl_vm_view *vv, bool adopt)
{
	struct src_mig *s = calloc(1, sizeof(*s));

	if (!s)
		return;
	*s = (struct src_mig){ .cd = cd, .l = l, .adopt = adopt, .m = vv->mig, .owner = vv->owner };
	l->src = s;
	if (pthread_create(&s->thread, NULL, src_main, s)) {
		l->src = NULL;
		free(s);
		cd_mig_fail(cd, vv, "cannot start a migration thread on %s", cd->cfg->node);
		return;
	}
	log_info(SUB, "vm=%s mig=%s: %s → %s (%s)", vv->name, vv->mig.id, vv->mig.source,
		 vv->mig.target, adopt ? "resuming after a restart" : "streaming");
}

bool cd_migrations_reap(struct cd *cd, bool wait_all)
{
	bool busy = false;

	for (size_t i = 0; i < cd->nvms;) {
		struct lvm *l = cd->vms[i];
		struct src_mig *s = l->src;

		if (!s || (!wait_all && !atomic_load(&s->finished))) {
			busy |= s != NULL;
			i++;
			continue;
		}
		pthread_join(s->thread, NULL);
		l->src = NULL;
		if (s->out == OUT_COMMITTED || s->out == OUT_FENCED) {
			cd_lvm_stop(l, 2000); /* gone already, or in doubt: never resume here */
			cd_lvm_remove(cd, l);
		} else {
			i++;
		}
		free(s);
	}
	return busy;
}

/* The switchover of the source: pause, last pages, state and digest, then (external mode)
 * the cluster's decision, then the commit handshake. Before COMMIT is sent every failure
 * leaves the guest to be resumed here; after it, only an ACK proves where it runs. */
#include "mig_priv.h"
#include "proto.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SUB		 "mig"
#define REPLY_TIMEOUT_MS 60000
#define ACK_TIMEOUT_MS	 30000
#define REPORT_NS	 250000000L /* a follower's progress line while awaiting the decision */

/* ---- switchover and commit -------------------------------------------------------------- */

static int mig_expect(struct migration *m, uint32_t want, uint8_t **payload, uint32_t *len,
		      const char *what)
{
	uint32_t type;
	char reason[256];
	int err = mig_rec_recv(m->ctl, &type, payload, len);

	if (err)
		return err;
	if (type == want)
		return 0;
	if (type == REC_ABORT) {
		mig_rec_abort_reason(*payload, *len, reason, sizeof(reason));
		free(*payload);
		*payload = NULL;
		return mig_fail(m, MIG_FAILED, -ECONNABORTED, "destination aborted while %s: %s",
				what, reason);
	}
	free(*payload);
	*payload = NULL;
	return -EPROTO;
}

/* The source's digest runs while the last pages travel: once the vCPUs are parked guest
 * memory no longer changes, so hashing and sending need not wait for each other. With the
 * change tracker only the chunks written since its last pass are left to hash. */
struct digest_task {
	struct vm *vm;
	struct mig_wtrack *wtrack;
	unsigned threads;
	pthread_t thread;
	bool started;
	int err;
	uint64_t ms;
	struct mig_wtrack_stats st;
	uint8_t sum[MIG_DIGEST_BYTES];
};

static void *digest_task_run(void *arg)
{
	struct digest_task *t = arg;
	uint64_t t0 = now_ns();

	t->err = t->wtrack ? mig_wtrack_digest(t->wtrack, t->threads, t->sum, &t->st) : -ENOENT;
	if (t->err) {
		if (t->wtrack)
			log_warn(SUB, "the write tracker failed (%s): hashing all of guest RAM",
				 strerror(-t->err));
		t->err = mig_ram_digest(t->vm, t->threads, t->sum);
	}
	t->ms = (now_ns() - t0) / 1000000;
	return NULL;
}

/* The paused guest's vCPUs leave their cores free, and by the switchover the last pages
 * are few (that is when it begins): the digest takes every core, at most four. */
unsigned mig_digest_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > 4 ? 4 : (unsigned)n;
}

static void digest_task_start(struct digest_task *t, struct migration *m)
{
	t->vm = m->vm;
	t->wtrack = m->wtrack;
	t->threads = mig_digest_threads();
	t->started = pthread_create(&t->thread, NULL, digest_task_run, t) == 0;
	if (!t->started)
		digest_task_run(t);
}

static int digest_task_join(struct digest_task *t)
{
	if (t->started)
		pthread_join(t->thread, NULL);
	t->started = false;
	return t->err;
}

/* Fault injection for tests (CME_FAULT_STALL_SWITCHOVER=1): the source stalls before its
 * switchover record, as if stopped, until the destination gives up on it (closes the
 * control channel) or 120 s pass. */
static void mig_fault_stall(struct migration *m)
{
	const char *f = getenv("CME_FAULT_STALL_SWITCHOVER");
	struct pollfd pf = { net_tls_fd(m->ctl), POLLIN, 0 };

	if (!f || strcmp(f, "1"))
		return;
	log_warn(SUB, "fault injection: stalling before the switchover");
	if (poll(&pf, 1, 120000) < 0)
		log_debug(SUB, "poll: %s", strerror(errno));
}

static int mig_send_state(struct migration *m, struct digest_task *dt)
{
	Cme__MigSwitchover sw = CME__MIG_SWITCHOVER__INIT;
	uint8_t *state = NULL, *stale = NULL;
	size_t state_len, stale_len = 0;
	uint64_t t0 = now_ns();
	int err = vm_state_save(m->vm, &state, &state_len);

	if (!err && m->postcopy)
		err = mig_pc_stale_bitmap(m, &stale, &stale_len);
	if (!err && m->fault_omit >= 0 && (size_t)m->fault_omit / 8 < stale_len)
		stale[m->fault_omit / 8] &= (uint8_t) ~(1u << (m->fault_omit % 8));

	m->prog.stats.state_ms = (now_ns() - t0) / 1000000;
	t0 = now_ns();
	if (digest_task_join(dt) && !err)
		err = -EIO;
	/* digest_ms: the part of the digest the guest waited for beyond the last pages. */
	m->prog.stats.digest_ms = (now_ns() - t0) / 1000000;
	m->prog.stats.digest_chunks = dt->st.final_chunks;
	log_info(SUB,
		 "digest: %llu of %llu chunks hashed in the pause (%llu ms), %llu in %llu "
		 "background passes",
		 (unsigned long long)dt->st.final_chunks, (unsigned long long)dt->st.chunks,
		 (unsigned long long)dt->ms, (unsigned long long)dt->st.background_chunks,
		 (unsigned long long)dt->st.passes);
	sw.state = (ProtobufCBinaryData){ state_len, state };
	sw.digest = (ProtobufCBinaryData){ sizeof(dt->sum), dt->sum };
	sw.postcopy = m->postcopy;
	sw.stale = (ProtobufCBinaryData){ stale_len, stale };
	mig_fault_stall(m);
	if (!err)
		err = mig_rec_send_msg(m->ctl, REC_SWITCHOVER, &sw.base);
	m->prog.stats.sent_us = (now_ns() - m->t_pause) / 1000;
	m->prog.stats.sent_ms = m->prog.stats.sent_us / 1000;
	free(state);
	free(stale);
	return err;
}

/* READY means the destination holds everything and its digest matched ours. */
static int mig_wait_ready(struct migration *m)
{
	uint8_t *payload = NULL;
	uint32_t len;
	int err;

	if (net_tls_set_timeout(m->ctl, REPLY_TIMEOUT_MS) < 0)
		log_debug(SUB, "cannot set a reply timeout");
	err = mig_expect(m, REC_READY, &payload, &len, "checking the digest and loading state");
	Cme__MigReady *r = err ? NULL : PB_UNPACK(cme__mig_ready__unpack, len, payload);

	/* The last pages still in flight when the state went: theirs, not the commit's. */
	m->prog.stats.drain_us = r ? r->drain_us : 0;
	if (r)
		cme__mig_ready__free_unpacked(r, NULL);
	free(payload);
	return err;
}

/* ---- the external decision ----------------------------------------------------------- */

static const char *mig_vm_name(struct migration *m)
{
	struct vm_info info;

	vm_get_info(m->vm, &info);
	return info.name; /* the VM's configuration string: it outlives the VM */
}

int mig_decide(struct migration *m, bool commit, const char *reason)
{
	int rc = 0;

	pthread_mutex_lock(&m->lock);
	if (m->decision != MIG_DECIDE_NONE) {
		rc = -EALREADY;
	} else if (m->prog.phase != MIG_AWAIT_COMMIT) {
		rc = -EAGAIN;
	} else {
		m->decision = commit ? MIG_DECIDE_COMMIT : MIG_DECIDE_ABORT;
		snprintf(m->decision_reason, sizeof(m->decision_reason), "%s",
			 reason && *reason ? reason : "commit refused by the cluster");
		pthread_cond_broadcast(&m->cond);
	}
	pthread_mutex_unlock(&m->lock);
	return rc;
}

/* The channel is not read while the cluster decides (the decision, not the destination,
 * ends this phase); a peer that hung up or spoke is only worth a log line. */
static void mig_watch_channel(struct migration *m, bool *lost)
{
	struct pollfd p = { net_tls_fd(m->ctl), POLLIN, 0 };

	if (*lost || poll(&p, 1, 0) <= 0)
		return;
	*lost = true;
	log_warn(SUB,
		 "vm=%s the channel to %s %s while the commit is decided: the guest stays "
		 "paused until the decision",
		 mig_vm_name(m), m->p.to,
		 p.revents & (POLLHUP | POLLERR) ? "broke" : "has news (an abort?)");
}

static enum mig_decision mig_wait_decision(struct migration *m)
{
	enum mig_decision d;
	struct timespec until;
	bool lost = false;

	pthread_mutex_lock(&m->lock);
	while ((d = m->decision) == MIG_DECIDE_NONE) {
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += REPORT_NS;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&m->cond, &m->lock, &until);
		if (m->decision != MIG_DECIDE_NONE)
			continue;
		pthread_mutex_unlock(&m->lock);
		mig_watch_channel(m, &lost);
		mig_report(m);
		pthread_mutex_lock(&m->lock);
	}
	pthread_mutex_unlock(&m->lock);
	return d;
}

/* External mode: wait, paused and without a time limit, for mig_decide(). Returns 0 for a
 * commit; anything else fails the migration (an abort resumes the guest here). */
static int mig_await_decision(struct migration *m)
{
	uint64_t t0 = now_ns();
	enum mig_decision d;

	pthread_mutex_lock(&m->lock);
	/* A cancel that came during the switchover still wins: nobody decided yet. */
	if (!atomic_load(&m->cancel))
		m->prog.phase = MIG_AWAIT_COMMIT;
	pthread_mutex_unlock(&m->lock);
	if (atomic_load(&m->cancel))
		return mig_fail(m, MIG_FAILED, -ECANCELED, "cancelled by the operator");
	log_info(SUB,
		 "vm=%s destination %s is ready: awaiting the commit decision, the guest "
		 "stays paused",
		 mig_vm_name(m), m->p.to);
	mig_report(m);
	d = mig_wait_decision(m);
	pthread_mutex_lock(&m->lock);
	m->prog.stats.decision_ms = (now_ns() - t0) / 1000000;
	pthread_mutex_unlock(&m->lock);
	if (d == MIG_DECIDE_COMMIT) {
		log_info(SUB, "vm=%s commit decided: committing to %s", mig_vm_name(m), m->p.to);
		return 0;
	}
	if (d == MIG_DECIDE_ABORT)
		return mig_fail(m, MIG_FAILED, -ECANCELED, "%s", m->decision_reason);
	m->leave_dest = true;
	return mig_fail(m, MIG_FAILED, -ESHUTDOWN,
			"the VM ended while the commit was being decided");
}

/* After COMMIT is sent the outcome is the destination's: only an ACK proves it runs, and
 * anything else — silence, a broken channel, even an ABORT — leaves it in doubt. */
static int mig_commit(struct migration *m)
{
	Cme__MigCommit c = CME__MIG_COMMIT__INIT;
	uint8_t *payload = NULL;
	uint32_t type = 0, len = 0;
	Cme__MigAck *ack;
	int err;

	mig_set_phase(m, MIG_COMMIT);
	if (net_tls_set_timeout(m->ctl, ACK_TIMEOUT_MS) < 0)
		log_debug(SUB, "cannot set the commit timeout");
	err = mig_rec_send_msg(m->ctl, REC_COMMIT, &c.base);
	if (!err)
		err = mig_rec_recv(m->ctl, &type, &payload, &len);
	if (!err && type != REC_ACK)
		err = -EPROTO;
	if (err) {
		free(payload);
		return mig_fail(m, MIG_IN_DOUBT, err,
				"commit sent but not acknowledged (%s): the guest may run on %s; "
				"it stays paused here",
				err == -EPROTO ? "unexpected answer" : strerror(-err), m->p.to);
	}
	m->t_ack = now_ns();
	ack = PB_UNPACK(cme__mig_ack__unpack, len, payload);
	m->prog.stats.resume_ms = ack ? ack->resume_ms : 0;
	if (ack)
		cme__mig_ack__free_unpacked(ack, NULL);
	free(payload);
	return 0;
}

/* The destination locks the images once it has the device state: let them go first. */
static int mig_release_disks(struct migration *m)
{
	char why[300];
	int err;

	m->handed_over = true; /* even a partial release is taken back on failure */
	err = vm_devices_handoff(m->vm, VM_HANDOFF_RELEASE, 0, why, sizeof(why));
	return err ? mig_fail(m, MIG_FAILED, err, "%s", why) : 0;
}

/* Fault injection for tests (CME_FAULT_PC_OMIT_EARLY=1): the switch's map of stale pages
 * leaves out the first page dropped before it, as a broken or hostile source would; the
 * destination must refuse before the guest runs there (the page would never come). */
static void mig_fault_omit(struct migration *m, const uint8_t *map, size_t len)
{
	const char *f = getenv("CME_FAULT_PC_OMIT_EARLY");

	m->fault_omit = -1;
	if (!f || strcmp(f, "1"))
		return;
	for (size_t i = 0; i < len && m->fault_omit < 0; i++)
		if (map[i])
			m->fault_omit = (int64_t)(i * 8 + (unsigned)__builtin_ctz(map[i]));
	log_warn(SUB, "fault injection: the switch will leave out page %lld of the dropped ones",
		 (long long)m->fault_omit);
}

/* Post-copy, before the pause: the destination drops the pages stale so far while the
 * guest still runs here (it first waits for every page channel to end the rounds sent), so
 * that the pause only has those dirtied since to drop. A failure here fails the migration
 * with the guest running. */
static int mig_pc_drop_early(struct migration *m)
{
	Cme__MigPostcopyDrop d = CME__MIG_POSTCOPY_DROP__INIT;
	Cme__MigPostcopyDropped *r = NULL;
	uint8_t *stale = NULL, *payload = NULL;
	size_t stale_len = 0;
	uint32_t len = 0;
	uint64_t t0 = now_ns();
	int err;

	if (!m->postcopy || !m->pc_drop)
		return 0;
	err = mig_pc_stale_bitmap(m, &stale, &stale_len);
	mig_fault_omit(m, stale, stale_len);
	d.round = m->prog.round;
	d.stale = (ProtobufCBinaryData){ stale_len, stale };
	if (!err)
		err = mig_rec_send_msg(m->ctl, REC_PC_DROP, &d.base);
	free(stale);
	if (!err && net_tls_set_timeout(m->ctl, REPLY_TIMEOUT_MS) < 0)
		log_debug(SUB, "cannot set a reply timeout");
	if (!err)
		err = mig_expect(m, REC_PC_DROPPED, &payload, &len, "dropping stale pages");
	r = err ? NULL : PB_UNPACK(cme__mig_postcopy_dropped__unpack, len, payload);
	free(payload);
	if (!err && !r)
		err = -EPROTO;
	if (err && !m->prog.error[0] && atomic_load(&m->cancel))
		return mig_fail(m, MIG_FAILED, -ECANCELED, "cancelled by the operator");
	if (err)
		return m->prog.error[0] ? err
					: mig_fail(m, MIG_FAILED, err,
						   "%s did not drop the stale pages before the "
						   "switch: %s",
						   m->p.to, strerror(-err));
	pthread_mutex_lock(&m->lock);
	m->prog.stats.postcopy_early = r->pages;
	m->prog.stats.postcopy_early_ms = (now_ns() - t0) / 1000000;
	pthread_mutex_unlock(&m->lock);
	log_info(SUB, "post-copy: %s dropped %llu stale pages before the pause (%llu ms)", m->p.to,
		 (unsigned long long)r->pages, (unsigned long long)m->prog.stats.postcopy_early_ms);
	cme__mig_postcopy_dropped__free_unpacked(r, NULL);
	return 0;
}

int mig_switchover(struct migration *m)
{
	struct mig_stats *st = &m->prog.stats;
	struct digest_task dt = { 0 };
	uint64_t t0;
	int err = mig_pc_drop_early(m);

	if (err)
		return err;
	mig_throttle_stop(m);
	mig_set_phase(m, MIG_SWITCHOVER);
	m->t_pause = t0 = now_ns();
	err = vm_pause(m->vm);
	st->pause_ms = (now_ns() - t0) / 1000000;
	if (err)
		return mig_fail(m, MIG_FAILED, err, "the VM ended during migration");
	t0 = now_ns();
	digest_task_start(&dt, m);
	mig_fetch_dirty(m);
	/* Post-copy leaves the last pages behind: the round only ends pre-copy everywhere. */
	m->skip_pages = m->postcopy;
	err = mig_run_round(m, m->prog.round, true);
	m->skip_pages = false;
	st->last_pages_ms = (now_ns() - t0) / 1000000;
	if (!err)
		err = mig_release_disks(m);
	if (!err)
		err = mig_send_state(m, &dt);
	digest_task_join(&dt);
	if (err && !m->prog.error[0])
		mig_fail(m, MIG_FAILED, err, "switchover failed: %s", strerror(-err));
	t0 = now_ns();
	if (!err)
		err = mig_wait_ready(m);
	if (err && !m->prog.error[0])
		mig_fail(m, MIG_FAILED, err, "destination did not confirm: %s", strerror(-err));
	st->commit_ms = (now_ns() - t0) / 1000000;
	st->commit_ms -= st->drain_us / 1000 < st->commit_ms ? st->drain_us / 1000 : st->commit_ms;
	st->last_pages_ms += st->drain_us / 1000;
	if (!err && m->p.commit == MIG_COMMIT_EXTERNAL)
		err = mig_await_decision(m);
	t0 = now_ns();
	if (!err)
		err = mig_commit(m);
	st->commit_ms += (now_ns() - t0) / 1000000;
	return !err && m->postcopy ? mig_postcopy_run(m) : err;
}

/* The source side of a live migration: connect, pre-copy rounds until the rest fits the
 * downtime limit (throttling the guest if it dirties faster than the link), switch over,
 * and commit. Every way out before commit resumes the guest here. */
#include "mig_priv.h"
#include "proto.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define SUB		   "mig"
#define CONNECT_TIMEOUT_MS 10000
#define CHANNEL_TIMEOUT_MS 10000 /* no progress on a page channel this long: the link is gone */
#define RECLAIM_MS	   10000 /* a failed destination lets go of the disks as it exits */

void mig_params_defaults(struct mig_params *p)
{
	memset(p, 0, sizeof(*p));
	p->downtime_ms = 300;
	p->channels = 2;
	p->timeout_ms = 600000;
	p->auto_converge = true;
	p->max_rounds = 30;
}

/* ---- setup ------------------------------------------------------------------------------ */

/* The guest's CPU (template and CPUID) in the HELLO's config, so the destination refuses a
 * guest it cannot run before any page is sent. NULL when out of memory (the destination
 * then checks the CPUID only when it loads the state). */
static Cme__VmConfig *hello_config(struct migration *m)
{
	Cme__VmConfig *cfg = NULL;
	uint8_t *buf;
	size_t len;

	if (vm_cpu_save(m->vm, &buf, &len))
		return NULL;
	cfg = PB_UNPACK(cme__vm_config__unpack, len, buf);
	free(buf);
	return cfg;
}

static int mig_hello(struct migration *m)
{
	Cme__MigHello h = CME__MIG_HELLO__INIT;
	Cme__VmConfig bare = CME__VM_CONFIG__INIT, *cfg = hello_config(m);
	struct vm_info info;
	uint8_t *payload;
	uint32_t type, len;
	int err;

	if (!cfg)
		cfg = &bare;
	vm_get_info(m->vm, &info);
	cfg->mem_bytes = info.mem_bytes;
	cfg->nr_vcpus = info.nr_vcpus;
	cfg->tsc_khz = info.tsc_khz;
	h.version = MIG_PROTOCOL_VERSION;
	h.config = cfg;
	h.session = (ProtobufCBinaryData){ sizeof(m->session), m->session };
	h.channels = m->nch;
	h.vm_name = (char *)info.name;
	h.postcopy = m->p.postcopy_after > 0;
	err = mig_rec_send_msg(m->ctl, REC_HELLO, &h.base);
	if (cfg != &bare)
		cme__vm_config__free_unpacked(cfg, NULL);
	if (!err)
		err = mig_rec_recv(m->ctl, &type, &payload, &len);
	if (err)
		return mig_fail(m, MIG_FAILED, err, "handshake with %s failed: %s", m->p.to,
				strerror(-err));
	Cme__MigWelcome *w =
		type == REC_WELCOME ? PB_UNPACK(cme__mig_welcome__unpack, len, payload) : NULL;

	free(payload);
	if (!w)
		return mig_fail(m, MIG_FAILED, -EPROTO, "destination %s answered nonsense",
				m->p.to);
	if (!w->ok)
		err = mig_fail(m, MIG_FAILED, -EPERM, "destination refused: %s", w->reason);
	m->pc_drop = w->postcopy_drop;
	cme__mig_welcome__free_unpacked(w, NULL);
	return err;
}

static int mig_connect_one(struct migration *m, struct tls_conn **out)
{
	char err[256];
	int rc = net_tls_connect(m->ctx, m->host, m->port, m->peer_name, CONNECT_TIMEOUT_MS, out,
				 err, sizeof(err));

	if (rc)
		return mig_fail(m, MIG_FAILED, rc, "cannot reach %s: %s", m->p.to, err);
	return 0;
}

/* Post-copy's own channel (index nch): the destination's requests and their pages, so
 * that a faulting vCPU never waits behind a page channel's queue. */
static int mig_connect_urgent(struct migration *m)
{
	Cme__MigChannelHello h = CME__MIG_CHANNEL_HELLO__INIT;
	int err = mig_connect_one(m, &m->urgent);

	h.session = (ProtobufCBinaryData){ sizeof(m->session), m->session };
	h.index = m->nch;
	if (!err && net_tls_set_timeout(m->urgent, CHANNEL_TIMEOUT_MS) < 0)
		log_debug(SUB, "cannot set the urgent channel's timeout");
	if (!err)
		err = mig_rec_send_msg(m->urgent, REC_CHANNEL_HELLO, &h.base);
	return err;
}

static int mig_connect(struct migration *m)
{
	int err = mig_connect_one(m, &m->ctl);

	if (!err)
		err = mig_hello(m);
	for (unsigned i = 0; !err && i < m->nch; i++) {
		Cme__MigChannelHello h = CME__MIG_CHANNEL_HELLO__INIT;

		m->ch[i] = (struct mig_channel){ .m = m, .index = i };
		err = mig_connect_one(m, &m->ch[i].conn);
		h.session = (ProtobufCBinaryData){ sizeof(m->session), m->session };
		h.index = i;
		/* A destination that stops reading (stopped, cut off) fails the write in time. */
		if (!err && net_tls_set_timeout(m->ch[i].conn, CHANNEL_TIMEOUT_MS) < 0)
			log_debug(SUB, "cannot set a channel timeout");
		if (!err)
			mig_fit_buffers(m->ch[i].conn);
		if (!err)
			err = mig_rec_send_msg(m->ch[i].conn, REC_CHANNEL_HELLO, &h.base);
	}
	if (!err && m->p.postcopy_after)
		err = mig_connect_urgent(m);
	if (!err)
		err = mig_channels_start(m);
	if (err && !m->prog.error[0])
		mig_fail(m, MIG_FAILED, err, "opening page channels: %s", strerror(-err));
	return err;
}

/* ---- rounds ----------------------------------------------------------------------------- */

static uint64_t mig_bytes(struct migration *m)
{
	uint64_t b = 0;

	for (unsigned i = 0; i < m->nch; i++)
		b += m->ch[i].bytes;
	return b;
}

/* What the pause would take if it began now: the last pages at the last round's rate,
 * the digest's last pass on both sides (the source's runs beside the last pages, the
 * destination's after them: counted once each, as the same chunks), and two round trips
 * (SWITCHOVER to READY, COMMIT to ACK). Called with the lock held, after the rate. */
static uint64_t mig_expect_pause(struct migration *m, uint64_t dirty, uint64_t digest)
{
	uint64_t pages;

	if (m->prog.rate_mbps <= 0 || digest == UINT64_MAX)
		return UINT64_MAX;
	/* The link's own round trip (TCP's estimate: the handshake's took the destination's
	 * VM setup too), at least a millisecond. */
	m->rtt_ms = (net_tls_rtt_us(m->ctl) + 999) / 1000;
	m->rtt_ms = m->rtt_ms ? m->rtt_ms : 1;
	pages = (uint64_t)((double)dirty * VM_PAGE_SIZE * 8 / 1e3 / m->prog.rate_mbps);
	return (pages > digest ? pages : digest) + digest + 2 * m->rtt_ms;
}

/* Account a finished round: bandwidth, and what the guest dirtied meanwhile. */
static void mig_round_done(struct migration *m, unsigned round, uint64_t t0, uint64_t bytes0,
			   uint64_t dirty)
{
	uint64_t ns = now_ns() - t0, bytes = mig_bytes(m) - bytes0;
	double secs = ns ? (double)ns / 1e9 : 1e-9;
	uint64_t digest = m->wtrack ? mig_wtrack_estimate_ms(m->wtrack, mig_digest_threads()) : 0;

	pthread_mutex_lock(&m->lock);
	m->prog.round = round + 1;
	m->prog.rate_mbps = (double)bytes * 8 / 1e6 / secs;
	m->prog.bytes_sent = mig_bytes(m);
	m->prog.pages_left = dirty;
	m->prog.stats.rounds = round + 1;
	m->prog.stats.dirty_rate_mbps = (double)dirty * VM_PAGE_SIZE / (1 << 20) / secs;
	m->prog.expected_downtime_ms = mig_expect_pause(m, dirty, digest);
	pthread_mutex_unlock(&m->lock);
	log_info(SUB, "round=%u sent %.1f MiB in %.0f ms (%.0f Mbit/s), %llu pages dirty", round,
		 (double)bytes / (1 << 20), secs * 1e3, m->prog.rate_mbps,
		 (unsigned long long)dirty);
}

/* Auto-converge: when a round left at least 90% of the previous one's dirty pages, park
 * the vCPUs a larger share of the time (20% steps, at most 90%). */
static void mig_converge(struct migration *m, uint64_t dirty, uint64_t prev)
{
	unsigned pct = atomic_load(&m->throttle_pct);

	if (!m->p.auto_converge || !m->was_running || !prev || dirty * 10 < prev * 9)
		return;
	pct = pct ? pct + 20 : 20;
	pct = pct > 90 ? 90 : pct;
	atomic_store(&m->throttle_pct, pct);
	pthread_mutex_lock(&m->lock);
	m->prog.throttle_pct = m->prog.stats.throttle_pct = pct;
	pthread_mutex_unlock(&m->lock);
	log_info(SUB, "not converging (%llu dirty pages after %llu): throttling vCPUs %u%%",
		 (unsigned long long)dirty, (unsigned long long)prev, pct);
}

static int mig_check_limits(struct migration *m, unsigned round)
{
	if (atomic_load(&m->cancel))
		return mig_fail(m, MIG_FAILED, -ECANCELED, "cancelled by the operator");
	if (now_ns() - m->t_start > m->p.timeout_ms * 1000000ull)
		return mig_fail(m, MIG_FAILED, -ETIMEDOUT,
				"timed out after %llu s (--timeout): cancelled",
				(unsigned long long)(m->p.timeout_ms / 1000));
	if (round >= m->p.max_rounds)
		return mig_fail(m, MIG_FAILED, -EAGAIN,
				"did not converge in %u rounds: the guest dirties %.0f MiB/s, the "
				"link carries %.0f Mbit/s",
				round, m->prog.stats.dirty_rate_mbps, m->prog.rate_mbps);
	return 0;
}

/* Fault injection for tests (CME_FAULT_UNTRACKED_WRITE=1): after round 0 the VMM writes
 * a byte into the last page of RAM (which the test guest never uses) without marking it
 * dirty — the bug of a device writing guest memory behind KVM's dirty log. The page never
 * travels; the digest, kept by a tracker of its own, must fail the migration. */
static void mig_fault_untracked(struct migration *m)
{
	struct vm_slot s;
	uint8_t *p;

	vm_get_slot(m->vm, vm_nr_slots(m->vm) - 1, &s);
	p = s.hva + s.size - VM_PAGE_SIZE;
	p[123] ^= 0x5a;
	log_warn(SUB, "fault injection: wrote the page at 0x%llx behind the dirty log",
		 (unsigned long long)(s.gpa + s.size - VM_PAGE_SIZE));
}

/* Whether to pause now: what is left fits the limit, and another round would not shrink
 * it much — while a round at least halves the best pause seen so far, one more follows as
 * long as the pause would still take over a quarter of the limit (and rounds are left), so
 * the pause is as short as pre-copy can cheaply make it, not merely short enough. *best:
 * the shortest expected pause of the rounds before (UINT64_MAX at first). */
static bool mig_fits(struct migration *m, unsigned round, uint64_t *best)
{
	uint64_t want = m->prog.expected_downtime_ms, before = *best;

	*best = want < before ? want : before;
	if (want > m->p.downtime_ms)
		return false;
	return round + 2 >= m->p.max_rounds || want * 4 <= m->p.downtime_ms ||
	       (before != UINT64_MAX && want * 2 > before);
}

/* Rounds while the guest runs, until what is left fits the downtime limit. */
static int mig_precopy(struct migration *m)
{
	uint64_t prev = 0, dirty = 0, best = UINT64_MAX;
	int err = 0;

	mig_set_phase(m, MIG_PRECOPY);
	for (unsigned round = 0; !err; round++) {
		uint64_t t0 = now_ns(), b0 = mig_bytes(m);

		err = mig_run_round(m, round, false);
		/* A cancel breaks the channels: whatever error they saw, it was the cancel. */
		if (err)
			return mig_fail(
				m, MIG_FAILED, err, "%s",
				err == -ECANCELED || atomic_load(&m->cancel)
					? "cancelled by the operator"
					: "sending pages failed: the destination went away");
		if (round == 0 && m->fault_untracked)
			mig_fault_untracked(m);
		dirty = mig_fetch_dirty(m);
		mig_round_done(m, round, t0, b0, dirty);
		if (m->wtrack)
			mig_wtrack_kick(m->wtrack); /* the digest follows the guest's writes */
		mig_report(m);
		if (mig_fits(m, round, &best))
			return 0;
		if (m->p.postcopy_after && round + 1 >= m->p.postcopy_after) {
			log_info(SUB,
				 "switching to post-copy after %u rounds: %llu ms expected, %llu "
				 "allowed",
				 round + 1, (unsigned long long)m->prog.expected_downtime_ms,
				 (unsigned long long)m->p.downtime_ms);
			m->postcopy = true;
			return 0;
		}
		err = mig_check_limits(m, round + 1);
		if (!err && round >= 1)
			mig_converge(m, dirty, prev);
		prev = dirty;
	}
	return err;
}

/* ---- the migration thread ---------------------------------------------------------------- */

/* The source's own change tracker for the digest; without one the pause hashes all RAM. */
static void mig_wtrack_open(struct migration *m)
{
	char why[200];

	if (mig_wtrack_new(m->vm, &m->wtrack, why, sizeof(why)) < 0) {
		m->wtrack = NULL;
		log_warn(SUB, "%s: the switchover hashes all of guest RAM", why);
	}
}

/* Detach the connections under the lock (mig_cancel may be looking at them), then close. */
static void mig_close_conns(struct migration *m)
{
	struct tls_conn *conns[MIG_MAX_CHANNELS + 2] = { 0 };

	pthread_mutex_lock(&m->lock);
	for (unsigned i = 0; i < m->nch; i++) {
		conns[i] = m->ch[i].conn;
		m->ch[i].conn = NULL;
	}
	conns[m->nch] = m->ctl;
	conns[m->nch + 1] = m->urgent;
	m->ctl = m->urgent = NULL;
	pthread_mutex_unlock(&m->lock);
	for (unsigned i = 0; i <= m->nch + 1; i++)
		net_tls_close(conns[i]);
}

static void mig_final_stats(struct migration *m)
{
	struct mig_stats *st = &m->prog.stats;
	uint64_t now = now_ns();

	st->total_ms = (now - m->t_start) / 1000000;
	/* The guest's pause ends when the destination confirms it runs the guest. */
	st->downtime_ms = m->t_pause ? ((m->t_ack ? m->t_ack : now) - m->t_pause) / 1000000 : 0;
	st->bytes = mig_bytes(m);
	for (unsigned i = 0; i < m->nch; i++) {
		st->pages += m->ch[i].pages;
		st->zero_pages += m->ch[i].zero_pages;
	}
	st->throughput_mbps = st->total_ms ? (double)st->bytes * 8 / 1e3 / (double)st->total_ms : 0;
	m->prog.bytes_sent = st->bytes;
}

/* A failed migration gives the guest back, unless its fencing deadline passed meanwhile:
 * then it stays paused (the cluster may be restarting it elsewhere); or unless a disk it
 * handed over cannot be locked again (the destination still holds it). */
static void resume_after_failure(struct migration *m)
{
	char why[300];
	int rc = m->handed_over ? vm_devices_handoff(m->vm, VM_HANDOFF_RECLAIM, RECLAIM_MS, why,
						     sizeof(why))
				: 0;

	if (rc) {
		log_err(SUB, "the guest stays paused: %s", why);
		return;
	}
	m->handed_over = false;
	rc = m->was_running ? vm_resume(m->vm) : 0;

	if (rc == -EPERM)
		log_warn(SUB, "the guest stays paused: its fencing deadline passed");
	else if (rc < 0)
		log_err(SUB, "cannot resume the guest after a failed migration");
}

/* Every way out: stop helpers, leave the guest where the outcome says it runs, and only
 * then publish how it ended. */
static void mig_finish(struct migration *m, int err)
{
	enum mig_phase end;

	if (err && !m->prog.error[0])
		mig_fail(m, MIG_FAILED, err, "migration failed: %s", strerror(-err));
	end = err ? m->end_phase : MIG_DONE;

	mig_throttle_stop(m);
	if (end == MIG_FAILED && !m->leave_dest)
		mig_rec_send_abort(m->ctl, m->prog.error);
	if (err)
		atomic_store(&m->cancel, true); /* wakes channels blocked on a dead peer */
	mig_channels_stop(m);
	mig_close_conns(m);
	mig_wtrack_free(m->wtrack);
	m->wtrack = NULL;
	if (vm_dirty_log_stop(m->vm) < 0)
		log_debug(SUB, "dirty logging was already off");
	if (end == MIG_DONE) {
		vm_end_migrated(m->vm, "migrated");
	} else if (end == MIG_FAILED && m->leave_dest) {
		log_warn(SUB,
			 "migration to %s ended: %s; the destination waits for the "
			 "cluster's decision",
			 m->p.to, m->prog.error);
	} else if (end == MIG_FAILED) {
		log_warn(SUB, "migration to %s failed: %s; the guest runs here", m->p.to,
			 m->prog.error);
		resume_after_failure(m);
	} else {
		log_err(SUB, "migration to %s %s: %s", m->p.to,
			end == MIG_IN_DOUBT ? "in doubt" : "broken", m->prog.error);
	}
	pthread_mutex_lock(&m->lock);
	mig_final_stats(m);
	m->prog.phase = end;
	atomic_store(&m->finished, true);
	pthread_mutex_unlock(&m->lock);
	if (end == MIG_DONE)
		log_info(SUB, "vm migrated to %s: downtime %llu ms, total %llu ms", m->p.to,
			 (unsigned long long)m->prog.stats.downtime_ms,
			 (unsigned long long)m->prog.stats.total_ms);
}

static void *mig_thread(void *arg)
{
	struct migration *m = arg;
	int err = mig_connect(m);

	m->prog.stats.setup_ms = (now_ns() - m->t_start) / 1000000;
	if (!err) {
		if (vm_dirty_log_start(m->vm) == -EALREADY)
			log_info(SUB, "dirty logging was on: the migration takes it over");
		mig_wtrack_open(m);
		if (m->was_running && m->p.auto_converge)
			mig_throttle_start(m);
		err = mig_precopy(m);
	}
	if (!err)
		err = mig_switchover(m);
	mig_finish(m, err);
	/* The VMM joins this thread before it exits, so the follower gets this last line. */
	mig_report(m);
	pthread_mutex_lock(&m->lock);
	if (m->follow_fd >= 0)
		close(m->follow_fd);
	m->follow_fd = -1;
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

static int mig_prepare(struct migration *m, const struct mig_params *p, char *err, size_t errlen)
{
	char msg[256];
	struct vm_info info;

	if (!p->to || net_parse_hostport(p->to, m->host, sizeof(m->host), &m->port) < 0 || !m->port)
		return snprintf(err, errlen, "destination \"%s\" is not HOST:PORT",
				p->to ? p->to : ""),
		       -EINVAL;
	if (!p->tls_dir)
		return snprintf(err, errlen, "a TLS directory is required"), -EINVAL;
	if (p->channels < 1 || p->channels > MIG_MAX_CHANNELS || p->downtime_ms < 1 ||
	    p->max_rounds < 1 || p->timeout_ms < 1000)
		return snprintf(err, errlen,
				"channels must be 1..%d, downtime and rounds >= 1, "
				"timeout >= 1 s",
				MIG_MAX_CHANNELS),
		       -EINVAL;
	if (net_tls_ctx_new(p->tls_dir, false, &m->ctx, msg, sizeof(msg)) < 0)
		return snprintf(err, errlen, "%s", msg), -EINVAL;
	vm_get_info(m->vm, &info);
	if (info.state != VM_RUNNING && info.state != VM_PAUSED)
		return snprintf(err, errlen, "the VM is not running"), -ESRCH;

	m->was_running = info.state == VM_RUNNING;
	m->p = *p;
	m->nch = p->channels;
	snprintf(m->tls_dir, sizeof(m->tls_dir), "%s", p->tls_dir);
	snprintf(m->peer_name, sizeof(m->peer_name), "%s", p->peer_name ? p->peer_name : m->host);
	m->p.tls_dir = m->tls_dir;
	m->p.peer_name = m->peer_name;
	m->p.to = NULL; /* re-pointed below at our own copy */
	return 0;
}

static int mig_alloc_bitmaps(struct migration *m)
{
	for (unsigned i = 0; i < vm_nr_slots(m->vm); i++) {
		struct vm_slot s;

		vm_get_slot(m->vm, i, &s);
		m->bitmap[i] = calloc(s.size / VM_PAGE_SIZE / 64, sizeof(uint64_t));
		if (!m->bitmap[i])
			return -ENOMEM;
		if (!m->p.postcopy_after)
			continue;
		m->served[i] = calloc(s.size / VM_PAGE_SIZE / 64, sizeof(uint64_t));
		if (!m->served[i])
			return -ENOMEM;
	}
	return 0;
}

int mig_start(struct vm *vm, const struct mig_params *p, struct migration **out, char *err,
	      size_t errlen)
{
	struct migration *m = calloc(1, sizeof(*m));
	int rc;

	if (!m)
		return -ENOMEM;
	m->vm = vm;
	m->follow_fd = -1;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	rc = mig_prepare(m, p, err, errlen);
	if (!rc && mig_alloc_bitmaps(m))
		rc = -ENOMEM;
	m->p.to = strdup(p->to ? p->to : "");
	if (!m->p.to && !rc)
		rc = -ENOMEM;
	randombytes_buf(m->session, sizeof(m->session));
	m->fault_untracked = getenv("CME_FAULT_UNTRACKED_WRITE") &&
			     !strcmp(getenv("CME_FAULT_UNTRACKED_WRITE"), "1");
	m->fault_omit = -1;
	m->fault_outside = getenv("CME_FAULT_PAGE_OUTSIDE_RAM") &&
			   !strcmp(getenv("CME_FAULT_PAGE_OUTSIDE_RAM"), "1");
	m->t_start = now_ns();
	if (!rc && pthread_create(&m->thread, NULL, mig_thread, m))
		rc = -EAGAIN;
	if (rc) {
		if (!err[0])
			snprintf(err, errlen, "%s", strerror(-rc));
		atomic_store(&m->finished, true);
		mig_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

int mig_cancel(struct migration *m)
{
	int rc = 0;

	pthread_mutex_lock(&m->lock);
	if (m->prog.phase == MIG_AWAIT_COMMIT || m->prog.phase == MIG_POSTCOPY ||
	    m->decision != MIG_DECIDE_NONE) {
		rc = -EBUSY; /* the cluster may have committed already: only it decides */
	} else {
		atomic_store(&m->cancel, true);
		/* Before commit, breaking the page channels ends the round at once. */
		if (m->prog.phase == MIG_PRECOPY)
			for (unsigned i = 0; i < m->nch; i++)
				if (m->ch[i].conn)
					net_tls_shutdown(m->ch[i].conn);
	}
	pthread_mutex_unlock(&m->lock);
	return rc;
}

void mig_follow(struct migration *m, int fd)
{
	struct timeval tv = { .tv_sec = 2 };

	/* Lines go out whole: blocking writes, but never stuck on a client that stopped
	 * reading for more than 2 s. */
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		log_debug(SUB, "follower socket options not set");
	pthread_mutex_lock(&m->lock);
	if (m->follow_fd >= 0)
		close(m->follow_fd);
	m->follow_fd = fd;
	pthread_mutex_unlock(&m->lock);
	mig_report(m);
}

bool mig_finished(struct migration *m)
{
	return atomic_load(&m->finished);
}

void mig_free(struct migration *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	if (m->decision == MIG_DECIDE_NONE && !atomic_load(&m->finished))
		m->decision = MIG_DECIDE_QUIT; /* an undecided commit waits no more */
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	if (m->thread)
		pthread_join(m->thread, NULL);
	if (m->follow_fd >= 0)
		close(m->follow_fd);
	net_tls_ctx_free(m->ctx);
	for (unsigned i = 0; i < MIG_SLOTS; i++) {
		free(m->bitmap[i]);
		free((void *)m->served[i]);
	}
	free((char *)m->p.to);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->cond);
	free(m);
}

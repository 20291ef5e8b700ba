/* The destination's thread and its decisions: receive (dest.c), say READY, wait for the
 * commit — the source's COMMIT, or in the external mode also mig_dest_commit() — start the
 * guest exactly once, and hand the VM to the caller. In the external mode nothing but a
 * decision ends the wait after READY: a broken channel to the source only means that the
 * control socket must decide. */
#include "dest_priv.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define SUB		  "incoming"
#define COMMIT_TIMEOUT_MS 30000 /* direct mode: READY sent, no COMMIT this long */
#define LINGER_MS	  10000 /* after mig_dest_commit, answer a late COMMIT this long */
#define START_WAIT_S	  30	/* mig_dest_commit waits this long for the vCPUs to start */

static void in_wake(struct mig_dest *c)
{
	uint64_t one = 1;

	if (write(c->wake_fd, &one, sizeof(one)) < 0)
		log_debug(SUB, "wake counter full");
}

/* ---- the commit point ------------------------------------------------------------------- */

/* The one place the guest is promised to this host: after it, abort is refused. Returns 0,
 * or -ECANCELED when an abort (or mig_dest_free) came first. */
static int in_claim_commit(struct mig_dest *c)
{
	bool stop;

	pthread_mutex_lock(&c->lock);
	stop = c->abort_asked || c->quit;
	c->committing = !stop;
	pthread_mutex_unlock(&c->lock);
	return stop ? mig_in_fail(c, -ECANCELED, "stopped before the commit") : 0;
}

/* A decision from the control socket: 1 commit, -ECANCELED abort, 0 none yet. */
static int in_decision(struct mig_dest *c)
{
	int d = 0;

	pthread_mutex_lock(&c->lock);
	if (c->abort_asked || c->quit)
		d = -ECANCELED;
	else if (c->commit_asked)
		d = 1;
	c->committing = d == 1;
	pthread_mutex_unlock(&c->lock);
	return d < 0 ? mig_in_fail(c, d, "stopped before the commit") : d;
}

static void in_source_lost(struct mig_dest *c, const char *why)
{
	pthread_mutex_lock(&c->lock);
	c->source_lost = true;
	pthread_mutex_unlock(&c->lock);
	log_warn(SUB,
		 "vm=%s the channel to the source is lost after READY (%s): waiting for the "
		 "decision on the control socket (incoming-commit or incoming-abort)",
		 c->in.name, why);
}

/* A record from the source while waiting: 1 COMMIT, 0 the channel is lost, or -errno
 * (the source aborted). */
static int in_read_commit(struct mig_dest *c)
{
	uint8_t *payload = NULL;
	uint32_t type = 0, len = 0;
	char reason[256];
	int rc = mig_rec_recv(c->ctl, &type, &payload, &len);

	if (!rc && type == REC_ABORT)
		mig_rec_abort_reason(payload, len, reason, sizeof(reason));
	free(payload);
	if (!rc && type == REC_COMMIT)
		return 1;
	if (!rc && type == REC_ABORT)
		return mig_in_fail(c, -ECONNABORTED, "the source aborted: %s", reason);
	in_source_lost(c, rc ? strerror(-rc) : "unexpected record");
	return 0;
}

/* External mode: COMMIT from the source or mig_dest_commit(), whichever comes first; an
 * ABORT from either side ends it. Never gives up on its own. */
static int in_await_commit(struct mig_dest *c, bool *by_source)
{
	bool lost = c->source_lost;

	if (!lost && net_tls_set_timeout(c->ctl, IN_CHANNEL_TIMEOUT) < 0)
		log_debug(SUB, "cannot set the commit timeout");
	log_info(SUB, "vm=%s ready: waiting for the commit (the source's or incoming-commit)",
		 c->in.name);
	for (;;) {
		struct pollfd p[2] = { { c->wake_fd, POLLIN, 0 },
				       { lost ? -1 : net_tls_fd(c->ctl), POLLIN, 0 } };
		int rc = in_decision(c);

		if (rc)
			return rc < 0 ? rc : 0;
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return mig_in_fail(c, -errno, "poll: %s", strerror(errno));
		if (p[0].revents)
			mig_in_drain_wake(c);
		if (!lost && p[1].revents) {
			rc = in_read_commit(c);
			if (rc < 0)
				return rc;
			*by_source = rc == 1;
			if (rc == 1)
				return in_claim_commit(c);
			lost = true;
		}
	}
}

static int in_ready_commit(struct mig_dest *c, bool *by_source)
{
	uint8_t *payload = NULL;
	uint32_t len;
	int rc;

	/* READY is promised before it is sent: a cluster that saw the source awaiting the
	 * commit must find this side ready too. */
	mig_in_set_phase(c, MIG_IN_READY);
	rc = mig_in_send_ready(c);
	if (c->in.commit == MIG_COMMIT_EXTERNAL) {
		if (rc)
			in_source_lost(c, strerror(-rc));
		return in_await_commit(c, by_source);
	}
	if (rc)
		return mig_in_fail(c, rc, "the source went away before commit");
	if (net_tls_set_timeout(c->ctl, COMMIT_TIMEOUT_MS) < 0)
		log_debug(SUB, "cannot set the commit timeout");
	rc = mig_in_expect(c, REC_COMMIT, &payload, &len, "waiting for commit");
	free(payload);
	*by_source = true;
	return rc ? rc : in_claim_commit(c);
}

/* ---- running the guest ------------------------------------------------------------------ */

/* All vCPU threads were started parked at the switchover and are released together: a
 * failure to start one left the guest not having run at all. */
static int in_start_guest(struct mig_dest *c)
{
	uint64_t t0 = now_ns();
	int rc = 0;

	pthread_mutex_lock(&c->lock); /* the deadline before the guest's first instruction */
	if (c->fence_ns)
		rc = vm_fence_set(c->vm, c->fence_ns);
	c->fence_given = true;
	pthread_mutex_unlock(&c->lock);
	if (rc)
		return mig_in_fail(c, rc, "committed, but the fencing deadline could not be set");
	rc = vm_resume(c->vm); /* its threads wait parked since the switchover */
	c->st.resume_ms = (now_ns() - t0) / 1000000;
	if (rc)
		return mig_in_fail(c, rc, "committed, but the vCPUs did not start");
	c->st.total_ms = (now_ns() - c->t0) / 1000000;
	mig_in_count(c);
	return 0;
}

static void in_send_ack(struct mig_dest *c)
{
	Cme__MigAck ack = CME__MIG_ACK__INIT;

	ack.resume_ms = c->st.resume_ms;
	if (mig_rec_send_msg(c->ctl, REC_ACK, &ack.base) < 0)
		log_warn(SUB, "vm=%s could not acknowledge the commit; the guest runs here anyway",
			 c->in.name);
}

/* Started by mig_dest_commit: the source, told by the cluster, may send its COMMIT any
 * moment now; answer it so that it ends "migrated" rather than in doubt. */
static void in_linger(struct mig_dest *c)
{
	uint64_t end = now_ns() + LINGER_MS * 1000000ull;
	uint8_t *payload = NULL;
	uint32_t type = 0, len = 0;

	while (!c->source_lost && !mig_in_stopping(c) && now_ns() < end) {
		struct pollfd p[2] = { { c->wake_fd, POLLIN, 0 },
				       { net_tls_fd(c->ctl), POLLIN, 0 } };
		int n = poll(p, 2, (int)((end - now_ns()) / 1000000ull) + 1);

		if (n > 0 && p[0].revents)
			mig_in_drain_wake(c);
		if (n <= 0 || !p[1].revents)
			continue;
		if (mig_rec_recv(c->ctl, &type, &payload, &len) == 0 && type == REC_COMMIT)
			in_send_ack(c);
		else if (type == REC_ABORT) /* the cluster contradicts itself: say so loudly */
			log_err(SUB, "vm=%s the source aborted after the guest started here",
				c->in.name);
		free(payload);
		return;
	}
}

static void in_end(struct mig_dest *c, int rc, bool by_source)
{
	if (!rc) {
		log_info(SUB, "vm=%s committed by %s: the guest runs here", c->in.name,
			 by_source ? "the source" : "incoming-commit");
		mig_in_set_phase(c, MIG_IN_RUNNING); /* the VM is the caller's from here */
		if (by_source)
			in_send_ack(c);
		else
			in_linger(c);
		if (c->pc && mig_pc_run(c) == 0)
			log_info(SUB, "vm=%s every page is here", c->in.name);
		mig_in_cleanup(c);
		return;
	}
	pthread_mutex_lock(&c->lock);
	if (c->abort_asked)
		snprintf(c->err, sizeof(c->err), "aborted before the guest ran here: %s",
			 c->abort_reason);
	pthread_mutex_unlock(&c->lock);
	c->rc = rc;
	if (c->ctl)
		mig_rec_send_abort(c->ctl, c->err);
	mig_in_cleanup(c);
	c->st.total_ms = c->t0 ? (now_ns() - c->t0) / 1000000 : 0;
	mig_in_count(c);
	vm_destroy(c->vm); /* never ran */
	c->vm = NULL;
	mig_in_set_phase(c, MIG_IN_FAILED);
}

static void *in_thread(void *arg)
{
	struct mig_dest *c = arg;
	bool by_source = false;
	int rc = mig_in_receive(c);

	if (!rc)
		rc = in_ready_commit(c, &by_source);
	if (!rc)
		rc = in_start_guest(c);
	in_end(c, rc, by_source);
	return NULL;
}

/* ---- the caller's side ------------------------------------------------------------------ */

int mig_dest_start(const struct mig_incoming *in, struct mig_dest **out, char *err, size_t errlen)
{
	struct mig_dest *d = calloc(1, sizeof(*d));
	int rc;

	if (!d)
		return snprintf(err, errlen, "out of memory"), -ENOMEM;
	d->in = *in;
	d->fence_ns = in->fence_ns;
	d->listen_fd = -1;
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->cond, NULL);
	d->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	d->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	rc = d->wake_fd < 0 || d->event_fd < 0
		     ? mig_in_fail(d, -errno, "eventfd: %s", strerror(errno))
		     : mig_in_listen(d);
	if (!rc && pthread_create(&d->thread, NULL, in_thread, d))
		rc = mig_in_fail(d, -EAGAIN, "cannot start the receiving thread");
	d->started = !rc;
	if (rc) {
		snprintf(err, errlen, "%s", d->err);
		mig_dest_free(d);
		return rc;
	}
	*out = d;
	return 0;
}

int mig_dest_set_fence(struct mig_dest *d, uint64_t deadline_ns)
{
	int rc = 0;

	pthread_mutex_lock(&d->lock);
	d->fence_ns = deadline_ns;
	if (d->fence_given)
		rc = vm_fence_set(d->vm, deadline_ns);
	pthread_mutex_unlock(&d->lock);
	return rc;
}

int mig_dest_event_fd(const struct mig_dest *d)
{
	return d->event_fd;
}

void mig_dest_get_status(struct mig_dest *d, struct mig_in_status *out)
{
	pthread_mutex_lock(&d->lock);
	out->phase = d->phase;
	out->commit = d->in.commit;
	out->port = d->port;
	out->source_lost = d->source_lost;
	snprintf(out->error, sizeof(out->error), "%s", d->phase == MIG_IN_FAILED ? d->err : "");
	pthread_mutex_unlock(&d->lock);
}

/* Why mig_dest_commit cannot go ahead (lock held): -errno with err, 1 when the guest runs
 * already, 0 to commit. */
static int dest_commit_check(struct mig_dest *d, char *err, size_t errlen)
{
	switch (d->phase) {
	case MIG_IN_LISTENING:
		return snprintf(err, errlen, "nothing received yet: no source has connected"),
		       -EAGAIN;
	case MIG_IN_RECEIVING:
		return snprintf(err, errlen, "the state is not complete yet (still receiving)"),
		       -EAGAIN;
	case MIG_IN_RUNNING: return 1;
	case MIG_IN_FAILED:
		return snprintf(err, errlen, "the migration failed: %s", d->err), -ECANCELED;
	default: break;
	}
	if (d->in.commit != MIG_COMMIT_EXTERNAL)
		return snprintf(err, errlen,
				"this migration commits directly (--commit direct): only the "
				"source's COMMIT starts the guest"),
		       -EPERM;
	if (d->abort_asked)
		return snprintf(err, errlen, "the migration is being aborted"), -ECANCELED;
	return 0;
}

int mig_dest_commit(struct mig_dest *d, char *err, size_t errlen)
{
	struct timespec until;
	int rc;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += START_WAIT_S;
	pthread_mutex_lock(&d->lock);
	rc = dest_commit_check(d, err, errlen);
	if (!rc) {
		d->commit_asked = true;
		in_wake(d);
	}
	while (!rc && d->phase != MIG_IN_RUNNING && d->phase != MIG_IN_FAILED)
		if (pthread_cond_timedwait(&d->cond, &d->lock, &until) == ETIMEDOUT)
			rc = -ETIMEDOUT;
	if (rc == -ETIMEDOUT)
		snprintf(err, errlen, "the guest has not started yet");
	else if (rc == 0 && d->phase == MIG_IN_FAILED)
		rc = -EIO;
	if (rc == -EIO)
		snprintf(err, errlen, "%s", d->err);
	pthread_mutex_unlock(&d->lock);
	return rc > 0 ? 0 : rc;
}

int mig_dest_abort(struct mig_dest *d, const char *reason, char *err, size_t errlen)
{
	int rc = 0;

	pthread_mutex_lock(&d->lock);
	if (d->phase == MIG_IN_RUNNING || d->committing) {
		rc = -EALREADY;
		snprintf(err, errlen, "the guest %s here: too late to abort",
			 d->phase == MIG_IN_RUNNING ? "runs" : "is starting");
	} else if (d->phase != MIG_IN_FAILED && !d->abort_asked) {
		d->abort_asked = true;
		snprintf(d->abort_reason, sizeof(d->abort_reason), "%s", reason);
		log_warn(SUB, "vm=%s abort asked (%s) in phase %s: the guest will not run here",
			 d->in.name, reason, mig_in_phase_name(d->phase));
		/* Wakes a thread blocked on the source (the external mode's wait after READY
		 * listens to the wake counter instead). */
		if (d->phase != MIG_IN_READY || d->in.commit != MIG_COMMIT_EXTERNAL)
			net_tls_shutdown(d->ctl);
		in_wake(d);
	}
	pthread_mutex_unlock(&d->lock);
	return rc;
}

int mig_dest_take(struct mig_dest *d, struct vm **out, struct mig_stats *st, char *err,
		  size_t errlen)
{
	int rc = 0;

	pthread_mutex_lock(&d->lock);
	while (d->phase != MIG_IN_RUNNING && d->phase != MIG_IN_FAILED)
		pthread_cond_wait(&d->cond, &d->lock);
	*st = d->st;
	if (d->phase == MIG_IN_RUNNING) {
		*out = d->vm;
		d->taken = true;
	} else {
		snprintf(err, errlen, "%s", d->err);
		rc = d->rc ? d->rc : -EIO;
	}
	pthread_mutex_unlock(&d->lock);
	return rc;
}

void mig_dest_free(struct mig_dest *d)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->lock);
	d->quit = true;
	if (d->wake_fd >= 0)
		in_wake(d);
	pthread_mutex_unlock(&d->lock);
	if (d->started)
		pthread_join(d->thread, NULL);
	mig_in_cleanup(d);
	if (!d->taken)
		vm_destroy(d->vm);
	net_tls_ctx_free(d->ctx);
	if (d->wake_fd >= 0)
		close(d->wake_fd);
	if (d->event_fd >= 0)
		close(d->event_fd);
	pthread_mutex_destroy(&d->lock);
	pthread_cond_destroy(&d->cond);
	free(d);
}

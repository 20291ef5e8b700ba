/* Live migration with the commit decided outside the VMMs ("commit":"external"), as
 * cme-clusterd decides it with one etcd transaction: the source waits paused in
 * awaiting-commit for migrate-commit; the destination, served on its control socket from
 * the start, runs the guest on the source's COMMIT or on incoming-commit, and on nothing
 * else. Real KVM, real TLS on loopback, small guests. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "guestrun.h"
#include "kvmtests.h"
#include "migrun.h"

#define MIG_TIMEOUT_MS 60000
#define SRC	       "127.0.0.1"
#define DST	       "127.0.0.2"

static const char *const nodes[] = { SRC, DST, NULL };
static const char *const external[] = { "--commit", "external", NULL };

struct pair {
	struct vmm_proc src, dst;
	char pki[600], tls[2][700], to[64];
	int port;
};

/* Certificates, a source guest of 256 MiB running, and an external-commit destination. */
static void pair_start(struct pair *p)
{
	CU_ASSERT_EQUAL_FATAL(mig_certs(p->pki, sizeof(p->pki), nodes), 0);
	net_tls_dir(p->tls[0], sizeof(p->tls[0]), p->pki, SRC);
	net_tls_dir(p->tls[1], sizeof(p->tls[1]), p->pki, DST);
	guest_boot(&p->src, "256M", "2", "wss_mb=32 dirty_rate=4");
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&p->src, 3, 20000));
	p->port = mig_incoming(&p->dst, DST, p->tls[1], external);
	CU_ASSERT_FATAL(p->port > 0);
	snprintf(p->to, sizeof(p->to), "%s:%d", DST, p->port);
}

/* ---- requests ------------------------------------------------------------------------ */

static const char *str(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

/* A request that must succeed; returns the reply (caller decrefs). */
static json_t *req_ok(struct vmm_proc *p, const char *cmd, const char *args)
{
	json_t *r = vmm_request(p, cmd, args);

	CU_ASSERT_TRUE(r && json_is_true(json_object_get(r, "ok")));
	if (!r || !json_is_true(json_object_get(r, "ok")))
		printf("\n    %s %s: %s", cmd, args ? args : "", r ? str(r, "error") : "no reply");
	return r;
}

/* A request that must be refused with a one-line error containing want. */
static void req_refused(struct vmm_proc *p, const char *cmd, const char *args, const char *want)
{
	json_t *r = vmm_request(p, cmd, args);
	const char *e = str(r, "error");

	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	CU_ASSERT_TRUE(json_is_false(json_object_get(r, "ok")));
	CU_ASSERT_PTR_NOT_NULL(strstr(e, want));
	CU_ASSERT_PTR_NULL(strchr(e, '\n'));
	if (!strstr(e, want))
		printf("\n    %s %s: expected an error with \"%s\", got \"%s\"", cmd,
		       args ? args : "", want, e);
	json_decref(r);
}

/* The destination's status while the migration arrives: state incoming, phase, port. */
static void expect_incoming(struct pair *p, const char *phase)
{
	json_t *r = req_ok(&p->dst, "status", NULL);

	CU_ASSERT_STRING_EQUAL(str(r, "state"), "incoming");
	CU_ASSERT_STRING_EQUAL(str(r, "phase"), phase);
	CU_ASSERT_STRING_EQUAL(str(r, "commit"), "external");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(r, "port")), p->port);
	json_decref(r);
}

/* Poll the destination's status until phase (true) or timeout_ms (false). */
static bool wait_dst_phase(struct pair *p, const char *phase, int timeout_ms)
{
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000ull;

	do {
		json_t *st = vmm_request(&p->dst, "status", NULL);
		bool there = !strcmp(str(st, "phase"), phase);

		json_decref(st);
		if (there) {
			expect_incoming(p, phase);
			return true;
		}
		sleep_ms(20);
	} while (now_ns() < end);
	return false;
}

/* Start an external-commit migration through the control socket and wait until the source
 * awaits the decision. */
static void start_until_awaiting(struct pair *p, const char *extra)
{
	char args[256];

	snprintf(args, sizeof(args), "\"commit\":\"external\"%s%s", extra ? "," : "",
		 extra ? extra : "");
	CU_ASSERT_FATAL(mig_ctl_start(&p->src, p->to, p->tls[0], args));
	CU_ASSERT_FATAL(mig_ctl_wait_phase(&p->src, "awaiting-commit", MIG_TIMEOUT_MS));
}

/* The guest is paused: not one heartbeat on the source for ms. */
static void expect_paused(struct vmm_proc *src, int ms)
{
	int before = vmm_heartbeats(src, NULL, 0);

	sleep_ms((unsigned)ms);
	CU_ASSERT_EQUAL(vmm_heartbeats(src, NULL, 0), before);
}

/* The guest went on in dst: its first heartbeat there follows the source's last one. */
static void expect_continued(struct pair *p)
{
	struct vmm_proc *both[] = { &p->src, &p->dst };
	struct hb_chain c;
	json_t *r;

	CU_ASSERT(vmm_wait_heartbeats(&p->dst, 3, 20000));
	mig_check_consoles(both, 2, &c);
	CU_ASSERT(c.n[0] >= 3);
	CU_ASSERT(c.n[1] >= 3);
	CU_ASSERT_EQUAL(c.first[1].seq, c.last[0].seq + 1);
	r = req_ok(&p->dst, "status", NULL);
	CU_ASSERT_STRING_EQUAL(str(r, "state"), "running");
	json_decref(r);
	printf("\n    last HB on the source: seq=%lu; first on the destination: seq=%lu",
	       c.last[0].seq, c.first[1].seq);
}

/* The destination ran the guest: incoming-commit stays an ok, incoming-abort is refused. */
static void expect_decided_here(struct pair *p)
{
	json_t *r = req_ok(&p->dst, "incoming-commit", NULL);

	CU_ASSERT_STRING_EQUAL(str(r, "state"), "running");
	json_decref(r);
	req_refused(&p->dst, "incoming-abort", NULL, "the guest runs here already");
}

/* The destination ended on its own without running the guest; its log says why. */
static void expect_dst_gave_up(struct vmm_proc *dst, const char *why)
{
	char *e;

	CU_ASSERT_EQUAL(vmm_wait(dst, 15000), 0);
	CU_ASSERT_EQUAL(dst->status, 1);
	e = test_read_file(dst->errlog);
	CU_ASSERT_PTR_NOT_NULL(strstr(e, why));
	if (!strstr(e, why))
		printf("\n    destination's stderr lacks \"%s\":\n%s\n", why, e);
	free(e);
	mig_expect_no_guest(dst);
}

/* ---- the CLI in a thread --------------------------------------------------------------- */

struct cli_job {
	struct pair *p;
	struct mig_run r;
	pthread_t thread;
};

static void *cli_thread(void *arg)
{
	struct cli_job *j = arg;

	mig_cli(&j->r, &j->p->src, DST, j->p->port, j->p->tls[0], external, MIG_TIMEOUT_MS);
	return NULL;
}

/* The final statistics hold together: the pause is made of its phases, the decision too. */
static void expect_stats(const json_t *f, long long min_decision)
{
	static const char *const phases[] = { "pause_ms",  "last_pages_ms", "state_ms",
					      "digest_ms", "commit_ms",	    "decision_ms" };
	long long down = mig_stat(f, NULL, "downtime_ms"), parts = 0;

	for (size_t i = 0; i < sizeof(phases) / sizeof(phases[0]); i++) {
		CU_ASSERT(mig_stat(f, "downtime", phases[i]) >= 0);
		parts += mig_stat(f, "downtime", phases[i]);
	}
	CU_ASSERT(mig_stat(f, "downtime", "decision_ms") >= min_decision);
	CU_ASSERT(down >= mig_stat(f, "downtime", "decision_ms"));
	CU_ASSERT(down <= mig_stat(f, NULL, "total_ms"));
	CU_ASSERT(parts <= down + 1);
	CU_ASSERT(down <= parts + 50 + parts / 10);
	printf("\n    downtime %lld ms: decision %lld, the rest %lld", down,
	       mig_stat(f, "downtime", "decision_ms"),
	       parts - mig_stat(f, "downtime", "decision_ms"));
}

/* ---- tests ----------------------------------------------------------------------------- */

/* The decision is commit: the guest continues on the destination, the source exits as
 * migrated; meanwhile the source showed awaiting-commit with its guest paused, and the
 * destination showed ready without running it. */
static void test_commit(void)
{
	struct cli_job job = { 0 };
	struct pair p;

	if (!guest_available())
		return;
	pair_start(&p);
	expect_incoming(&p, "listening");
	req_refused(&p.dst, "incoming-commit", NULL, "nothing received yet");
	job.p = &p;
	CU_ASSERT_EQUAL_FATAL(pthread_create(&job.thread, NULL, cli_thread, &job), 0);
	CU_ASSERT(mig_ctl_wait_phase(&p.src, "awaiting-commit", MIG_TIMEOUT_MS));
	expect_incoming(&p, "ready");
	expect_paused(&p.src, 1000);
	CU_ASSERT(mig_ctl_wait_phase(&p.src, "awaiting-commit", 0)); /* still: no timeout */
	mig_expect_no_guest(&p.dst);
	json_decref(req_ok(&p.src, "migrate-commit", "{\"decision\":\"commit\"}"));
	pthread_join(job.thread, NULL);
	CU_ASSERT_EQUAL(job.r.status, 0);
	CU_ASSERT_STRING_EQUAL(str(job.r.fin, "phase"), "done");
	if (job.r.status != 0)
		printf("\n    cme-vmm migrate (%d):\n%s\n", job.r.status, job.r.out);
	if (job.r.fin)
		expect_stats(job.r.fin, 1000);
	mig_run_free(&job.r);
	mig_expect_source_migrated(&p.src);
	expect_continued(&p);
	expect_decided_here(&p);
	vmm_kill(&p.dst);
}

/* The decision is abort: the source resumes its guest, and the destination, told ABORT,
 * ends without having run it. */
static void test_abort(void)
{
	struct pair p;
	json_t *st;

	if (!guest_available())
		return;
	pair_start(&p);
	/* A capped link keeps the destination receiving long enough to be asked (round 0
	 * alone is a second or more). */
	CU_ASSERT_FATAL(mig_ctl_start(&p.src, p.to, p.tls[0],
				      "\"commit\":\"external\",\"max_bandwidth\":\"8M\""));
	CU_ASSERT_FATAL(wait_dst_phase(&p, "receiving", 10000));
	req_refused(&p.dst, "incoming-commit", NULL, "not complete yet");
	CU_ASSERT_FATAL(mig_ctl_wait_phase(&p.src, "awaiting-commit", MIG_TIMEOUT_MS));
	json_decref(req_ok(&p.src, "migrate-commit",
			   "{\"decision\":\"abort\",\"reason\":\"owner record changed\"}"));
	st = mig_ctl_wait_end(&p.src, 15000);
	CU_ASSERT_STRING_EQUAL(str(st, "phase"), "failed");
	CU_ASSERT_STRING_EQUAL(mig_error(st), "owner record changed");
	json_decref(st);
	mig_expect_source_runs(&p.src);
	req_refused(&p.src, "migrate-commit", "{\"decision\":\"commit\"}",
		    "no migration is awaiting commit");
	expect_dst_gave_up(&p.dst, "the source aborted: owner record changed");
	vmm_kill(&p.src);
}

/* The cluster committed, then the source's clusterd died before telling its VMM: the
 * destination's own incoming-commit runs the guest, with the source VMM killed (or left
 * paused: it never resumes by itself). */
static void test_dest_commits_alone(void)
{
	struct pair p;
	json_t *r;

	if (!guest_available())
		return;
	pair_start(&p);
	start_until_awaiting(&p, NULL);
	vmm_kill(&p.src);
	CU_ASSERT_EQUAL(p.src.status, 128 + SIGKILL);
	/* The destination sees the channel break (when it does is up to the machine), and
	 * waits on. */
	CU_ASSERT(vmm_wait_status(&p.dst, "source_connected", "false", MIG_TIMEOUT_MS));
	expect_incoming(&p, "ready");
	mig_expect_no_guest(&p.dst);
	r = req_ok(&p.dst, "incoming-commit", NULL);
	CU_ASSERT_STRING_EQUAL(str(r, "state"), "running");
	json_decref(r);
	expect_continued(&p);
	expect_decided_here(&p);
	vmm_kill(&p.dst);
}

/* Both sides are told the commit, the destination first: the guest starts there once, and
 * the source's COMMIT that follows is still acknowledged (the source ends migrated, not in
 * doubt). */
static void test_both_commit(void)
{
	struct pair p;
	json_t *r;

	if (!guest_available())
		return;
	pair_start(&p);
	start_until_awaiting(&p, NULL);
	r = req_ok(&p.dst, "incoming-commit", NULL);
	CU_ASSERT_STRING_EQUAL(str(r, "state"), "running");
	json_decref(r);
	CU_ASSERT(vmm_wait_heartbeats(&p.dst, 2, 20000));
	json_decref(req_ok(&p.src, "migrate-commit", "{\"decision\":\"commit\"}"));
	mig_expect_source_migrated(&p.src);
	expect_continued(&p);
	expect_decided_here(&p);
	vmm_kill(&p.dst);
}

/* The destination dies while the source awaits the decision: the source neither resumes
 * nor fails; an abort decision then resumes it. */
static void test_channel_broken_then_abort(void)
{
	struct pair p;
	json_t *st;

	if (!guest_available())
		return;
	pair_start(&p);
	start_until_awaiting(&p, NULL);
	vmm_kill(&p.dst);
	expect_paused(&p.src, 1000);
	CU_ASSERT(mig_ctl_wait_phase(&p.src, "awaiting-commit", 0));
	json_decref(req_ok(&p.src, "migrate-commit", "{\"decision\":\"abort\"}"));
	st = mig_ctl_wait_end(&p.src, 15000);
	CU_ASSERT_STRING_EQUAL(str(st, "phase"), "failed");
	CU_ASSERT_STRING_EQUAL(mig_error(st), "commit refused by the cluster");
	json_decref(st);
	mig_expect_source_runs(&p.src);
	mig_expect_no_guest(&p.dst);
	vmm_kill(&p.src);
}

/* The destination dies while the source awaits the decision, and the decision is commit:
 * nothing acknowledges it, so the source is in doubt and stays paused. */
static void test_channel_broken_then_commit(void)
{
	struct pair p;
	json_t *st;

	if (!guest_available())
		return;
	pair_start(&p);
	start_until_awaiting(&p, NULL);
	vmm_kill(&p.dst);
	json_decref(req_ok(&p.src, "migrate-commit", "{\"decision\":\"commit\"}"));
	st = mig_ctl_wait_end(&p.src, 40000);
	CU_ASSERT_STRING_EQUAL(str(st, "phase"), "in-doubt");
	json_decref(st);
	expect_paused(&p.src, 500);
	req_refused(&p.src, "resume", NULL, "migration in doubt");
	vmm_kill(&p.src);
}

/* stop on the source while the cluster decides ends the VMM without resuming the guest
 * and without telling the destination, which waits on until its own decision: here
 * incoming-abort, after which it exits without having run the guest. */
static void test_stop_while_awaiting(void)
{
	struct pair p;

	if (!guest_available())
		return;
	pair_start(&p);
	start_until_awaiting(&p, NULL);
	json_decref(req_ok(&p.src, "stop", NULL));
	CU_ASSERT_EQUAL(vmm_wait(&p.src, 10000), 0);
	CU_ASSERT_EQUAL(p.src.status, 0);
	sleep_ms(300);
	CU_ASSERT_EQUAL(vmm_wait(&p.dst, 0), -ETIMEDOUT); /* still waiting */
	expect_incoming(&p, "ready");
	json_decref(req_ok(&p.dst, "incoming-abort", "{\"reason\":\"owner stays on the source\"}"));
	expect_dst_gave_up(&p.dst, "aborted before the guest ran here: owner stays on the source");
}

/* Requests that make no sense now get a one-line error and change nothing. */
static void test_refusals(void)
{
	struct pair p;

	if (!guest_available())
		return;
	pair_start(&p);
	req_refused(&p.src, "migrate-commit", "{\"decision\":\"commit\"}",
		    "no migration is awaiting commit");
	req_refused(&p.src, "migrate-commit", "{\"decision\":\"maybe\"}",
		    "\"decision\": \"commit\" or \"abort\"");
	req_refused(&p.src, "migrate-commit", NULL, "\"decision\": \"commit\" or \"abort\"");
	req_refused(&p.src, "migrate-commit", "{\"decision\":\"abort\",\"reason\":7}",
		    "\"reason\" must be a string");
	req_refused(&p.src, "migrate", "{\"to\":\"127.0.0.2:1\",\"tls_dir\":\"/x\",\"commit\":1}",
		    "commit must be \"direct\" or \"external\"");
	req_refused(&p.src, "incoming-commit", NULL, "did not arrive by migration");
	req_refused(&p.dst, "pause", NULL, "no guest runs here yet");
	req_refused(&p.dst, "migrate-commit", "{\"decision\":\"commit\"}",
		    "no guest runs here yet");
	req_refused(&p.dst, "incoming-commit", NULL, "nothing received yet");
	start_until_awaiting(&p, NULL);
	req_refused(&p.src, "migrate-cancel", NULL, "the cluster is deciding the commit");
	req_refused(&p.src, "resume", NULL, "the cluster is deciding the commit");
	json_decref(req_ok(&p.src, "migrate-commit", "{\"decision\":\"abort\"}"));
	req_refused(&p.src, "migrate-commit", "{\"decision\":\"commit\"}", "");
	json_decref(mig_ctl_wait_end(&p.src, 15000));
	mig_expect_source_runs(&p.src);
	expect_dst_gave_up(&p.dst, "the source aborted: commit refused by the cluster");
	vmm_kill(&p.src);

	/* A destination nobody connected to gives up when told, without a guest. */
	CU_ASSERT_FATAL(mig_incoming(&p.dst, DST, p.tls[1], external) > 0);
	json_decref(req_ok(&p.dst, "incoming-abort", NULL));
	expect_dst_gave_up(&p.dst, "aborted before the guest ran here");
}

void suite_migrate_ext(void)
{
	static const struct test_case cases[] = {
		{ "external commit: commit decided, the guest continues on the destination",
		  test_commit },
		{ "external commit: abort decided, the source resumes", test_abort },
		{ "source gone after the cluster committed: incoming-commit runs the guest",
		  test_dest_commits_alone },
		{ "incoming-commit first, then the source's COMMIT: one start, both agree",
		  test_both_commit },
		{ "channel broken while awaiting, then abort: the source resumes",
		  test_channel_broken_then_abort },
		{ "channel broken while awaiting, then commit: in doubt, paused",
		  test_channel_broken_then_commit },
		{ "stop while awaiting: no resume; the destination waits for incoming-abort",
		  test_stop_while_awaiting },
		{ "refusals: migrate-commit, incoming-commit, migrate-cancel", test_refusals },
		{ NULL, NULL },
	};
	test_add_suite("migrate-ext", cases);
}

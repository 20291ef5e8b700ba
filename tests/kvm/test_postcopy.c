/* Post-copy on real KVM between cme-vmm processes: the guest starts on the destination
 * before its memory is all there and fetches what it touches through userfaultfd; it goes
 * on with no corruption and the digest, finished page by page, matches. And the one case
 * post-copy cannot recover from — the link, the destination or the source lost after the
 * switch — is reported as such: the source keeps the guest paused with its state as of the
 * switch (a forced resume runs it from there), the destination stops at once. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "guestrun.h"
#include "kvmtests.h"
#include "migrun.h"

#define MIG_TIMEOUT_MS 120000
#define MiB	       (1ull << 20)
#define SRC	       "127.0.0.1"
#define DST	       "127.0.0.2"
/* Slow enough that post-copy lasts seconds: the guest rewrites its working set while
 * round 0 crawls, so most of it is left behind at the switch. */
#define SLOW "\"max_bandwidth\":\"30M\",\"postcopy\":true,\"downtime_ms\":1"

static const char *const nodes[] = { SRC, DST, NULL };

static void make_certs(char *pki, size_t len, char tls[2][700])
{
	CU_ASSERT_EQUAL_FATAL(mig_certs(pki, len, nodes), 0);
	net_tls_dir(tls[0], sizeof(tls[0]), pki, SRC);
	net_tls_dir(tls[1], sizeof(tls[1]), pki, DST);
}

static long long postcopy_stat(const json_t *fin, const char *key)
{
	json_t *pc = json_object_get(json_object_get(json_object_get(fin, "stats"), "downtime"),
				     "postcopy");
	json_t *v = json_object_get(pc, key);

	return json_is_integer(v) ? json_integer_value(v) : -1;
}

static bool log_has(const struct vmm_proc *p, const char *needle)
{
	char *log = test_read_file(p->errlog);
	bool has = log && strstr(log, needle);

	if (!has)
		printf("\n    no \"%s\" in %s:\n%s", needle, p->errlog, log ? log : "");
	free(log);
	return has;
}

/* The dirtying guest switches after round 0; it runs on at once, faults bring pages. */
static void test_postcopy_live(void)
{
	struct vmm_proc src, dst;
	struct vmm_proc *procs[] = { &src, &dst };
	/* A limit no pause can meet (two round trips alone take more): post-copy for sure. */
	const char *extra[] = { "--postcopy", "--downtime-ms", "1", NULL };
	char pki[600], tls[2][700];
	struct hb_chain c;
	struct mig_run r;
	int port;

	if (!guest_available())
		return;
	make_certs(pki, sizeof(pki), tls);
	guest_boot(&src, "1G", "2", "wss_mb=256");
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&src, 6, 30000));
	mig_wait_pages(&src, 2 * 256 * MiB / 4096);
	port = mig_incoming(&dst, DST, tls[1], NULL);
	CU_ASSERT_FATAL(port > 0);
	mig_cli(&r, &src, DST, port, tls[0], extra, MIG_TIMEOUT_MS);
	CU_ASSERT_EQUAL(r.status, 0);
	if (r.status)
		printf("\n    %s", r.out);
	printf("\n    post-copy: %lld pages followed the guest (%lld on request, %lld dropped "
	       "before the pause) in %lld ms; downtime %lld ms",
	       postcopy_stat(r.fin, "pages"), postcopy_stat(r.fin, "requested"),
	       postcopy_stat(r.fin, "dropped_early"), postcopy_stat(r.fin, "ms"),
	       mig_stat(r.fin, NULL, "downtime_ms"));
	CU_ASSERT(postcopy_stat(r.fin, "pages") > 0);
	/* The pages stale at the choice were dropped while the guest still ran here. */
	CU_ASSERT(log_has(&dst, "stale pages dropped before the switch"));
	CU_ASSERT(postcopy_stat(r.fin, "dropped_early") <= postcopy_stat(r.fin, "pages"));
	mig_expect_source_migrated(&src);
	CU_ASSERT(vmm_wait_heartbeats(&dst, 5, 30000));
	CU_ASSERT(mig_check_consoles(procs, 2, &c) > 0);
	CU_ASSERT(log_has(&dst, "post-copy done"));
	CU_ASSERT(log_has(&dst, "digest matches"));
	mig_run_free(&r);
	vmm_kill(&dst);
}

/* A source whose switch leaves out a page it had the destination drop before the pause
 * (fault injection): the destination refuses before the guest runs there — that page would
 * never come — and the source runs on. */
static void test_postcopy_omitted_page(void)
{
	struct vmm_proc src, dst;
	const char *extra[] = { "--postcopy", "--downtime-ms", "1", NULL };
	char pki[600], tls[2][700];
	struct mig_run r;
	int port;

	if (!guest_available())
		return;
	make_certs(pki, sizeof(pki), tls);
	setenv("CME_FAULT_PC_OMIT_EARLY", "1", 1);
	guest_boot(&src, "256M", "2", "wss_mb=64");
	unsetenv("CME_FAULT_PC_OMIT_EARLY");
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&src, 4, 20000));
	mig_wait_pages(&src, 2 * 64 * MiB / 4096);
	port = mig_incoming(&dst, DST, tls[1], NULL);
	CU_ASSERT_FATAL(port > 0);
	mig_cli(&r, &src, DST, port, tls[0], extra, MIG_TIMEOUT_MS);
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(mig_error(r.fin), "leaves out pages dropped before"));
	if (!strstr(mig_error(r.fin), "leaves out pages dropped before"))
		printf("\n    error: %s\n", mig_error(r.fin));
	CU_ASSERT_EQUAL(vmm_wait(&dst, 15000), 0);
	CU_ASSERT_NOT_EQUAL(dst.status, 0);
	mig_expect_no_guest(&dst);
	mig_expect_source_runs(&src);
	mig_run_free(&r);
	vmm_kill(&src);
}

/* What the source must show after post-copy broke: paused, a plain resume refused with
 * the reason, a forced one running the guest from the switch. */
static void expect_source_kept(struct vmm_proc *src, json_t *st)
{
	const char *ph = json_string_value(json_object_get(st, "phase"));
	json_t *r = vmm_request(src, "status", NULL);
	const char *state = json_string_value(json_object_get(r, "state"));
	int n;

	CU_ASSERT_STRING_EQUAL(ph ? ph : "", "postcopy-broken");
	CU_ASSERT_PTR_NOT_NULL(strstr(mig_error(st), "post-copy broke after the switch"));
	printf("\n    %s", mig_error(st));
	CU_ASSERT_STRING_EQUAL(state ? state : "(no reply)", "paused");
	json_decref(r);
	r = vmm_request(src, "resume", NULL);
	CU_ASSERT_PTR_NOT_NULL(
		strstr(json_string_value(json_object_get(r, "error")) ?: "", "post-copy broke"));
	json_decref(r);
	n = vmm_heartbeats(src, NULL, 0);
	r = vmm_request(src, "resume", "{\"force\":true}");
	CU_ASSERT(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	CU_ASSERT(vmm_wait_heartbeats(src, n + 3, 20000));
	guest_check_console(src);
}

/* The source holds its push for 3 s after the switch: the phase postcopy lasts that long
 * at least, however few pages a guest starved by a busy host left behind. */
static void boot_busy(struct vmm_proc *src)
{
	setenv("CME_FAULT_POSTCOPY_HOLD_MS", "3000", 1);
	guest_boot(src, "512M", "2", "wss_mb=128");
	unsetenv("CME_FAULT_POSTCOPY_HOLD_MS");
	CU_ASSERT_FATAL(vmm_wait_heartbeats(src, 6, 30000));
	mig_wait_pages(src, 2 * 128 * MiB / 4096);
}

/* kill -9 of the destination in post-copy: the source keeps the guest. */
static void test_postcopy_destination_killed(void)
{
	struct vmm_proc src, dst;
	char pki[600], tls[2][700], to[64];
	json_t *st;

	if (!guest_available())
		return;
	make_certs(pki, sizeof(pki), tls);
	boot_busy(&src);
	snprintf(to, sizeof(to), "%s:%d", DST, mig_incoming(&dst, DST, tls[1], NULL));
	CU_ASSERT_FATAL(mig_ctl_start(&src, to, tls[0], SLOW));
	CU_ASSERT_FATAL(mig_ctl_wait_phase(&src, "postcopy", 90000));
	vmm_kill(&dst);
	st = mig_ctl_wait_end(&src, 40000);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	expect_source_kept(&src, st);
	json_decref(st);
	vmm_kill(&src);
}

/* kill -9 of the source in post-copy: the destination stops at once (status 74) and says
 * why; its guest, without the pages only the source had, runs no further. */
static void test_postcopy_source_killed(void)
{
	struct vmm_proc src, dst;
	char pki[600], tls[2][700], to[64];

	if (!guest_available())
		return;
	make_certs(pki, sizeof(pki), tls);
	boot_busy(&src);
	snprintf(to, sizeof(to), "%s:%d", DST, mig_incoming(&dst, DST, tls[1], NULL));
	CU_ASSERT_FATAL(mig_ctl_start(&src, to, tls[0], SLOW));
	CU_ASSERT_FATAL(mig_ctl_wait_phase(&src, "postcopy", 90000));
	vmm_kill(&src);
	CU_ASSERT_EQUAL(vmm_wait(&dst, 40000), 0);
	CU_ASSERT_EQUAL(dst.status, 74);
	CU_ASSERT(log_has(&dst, "post-copy broke with"));
	vmm_kill(&dst);
}

/* The link cut in post-copy (a network namespace): the source's push times out and the
 * source keeps the guest. */
static void test_postcopy_link_cut(void)
{
	struct vmm_proc src, dst = { .pid = -1, .status = -1 };
	char tls_src[700], to[64];
	struct netns ns;
	json_t *st = NULL;
	int rc;

	if (!guest_available())
		return;
	boot_busy(&src);
	rc = mig_netns_dest(&ns, &dst, SRC, tls_src, to);
	if (!rc) {
		vmm_kill(&src);
		return;
	}
	/* From here on the namespace must be removed: no fatal assertion until then. */
	if (rc < 0 || !mig_ctl_start(&src, to, tls_src, SLOW))
		goto out;
	CU_ASSERT(mig_ctl_wait_phase(&src, "postcopy", 90000));
	CU_ASSERT_EQUAL(netns_cut(&ns), 0);
	st = mig_ctl_wait_end(&src, 60000);
	CU_ASSERT_PTR_NOT_NULL(st);
	if (st)
		expect_source_kept(&src, st);
out:
	json_decref(st);
	vmm_kill(&dst); /* not one of the harness's processes */
	netns_remove(&ns);
	vmm_kill(&src);
}

void suite_postcopy(void)
{
	static const struct test_case cases[] = {
		{ "post-copy of the dirtying guest: it runs on at once, no corruption",
		  test_postcopy_live },
		{ "destination killed in post-copy: the source keeps the guest paused",
		  test_postcopy_destination_killed },
		{ "source killed in post-copy: the destination stops at once",
		  test_postcopy_source_killed },
		{ "link cut in post-copy: reported, the source keeps the guest paused",
		  test_postcopy_link_cut },
		{ "a switch that leaves out a page dropped before is refused, the source runs on",
		  test_postcopy_omitted_page },
		{ NULL, NULL },
	};
	test_add_suite("postcopy", cases);
}

/* virtio-balloon with the test guest's own driver (tests/guest/selfcheck/vballoon.c): the
 * guest touches a pool, then follows the target set on the control socket. Inflating gives
 * the pool back to the host (the VMM's resident memory falls by about that), deflating
 * takes it back (the pages read as zeros, and resident memory rises again), free-page
 * reporting releases what the guest reports, all while the working set's checks run on
 * another vCPU. A bad target is refused, a PFN outside RAM breaks the queue but not the
 * VMM, and the balloon survives a snapshot and restore and a live migration. Resident memory is polled until it
 * holds or a generous deadline passes: the machine is shared and the kernel is lazy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "guestrun.h"
#include "kvmtests.h"
#include "migrun.h"

#define MIB	  (1ll << 20)
#define POOL_MB	  256
#define GUEST_MEM "512M"

static void boot_balloon(struct vmm_proc *p, const char *cmdline, const char *ready)
{
	const char *args[] = { "--mem",	    GUEST_MEM,	  "--vcpus",   "2",
			       "--image",   test_guest(), "--cmdline", cmdline,
			       "--balloon", "--name",	  "balloon",   NULL };

	CU_ASSERT_EQUAL_FATAL(vmm_start(p, args), 0);
	if (!vmm_console_wait(p, ready, 60000)) {
		char *e = test_read_file(p->errlog);

		printf("\n    no \"%s\"; stderr:\n%s\n", ready, e);
		free(e);
		vmm_kill(p);
		CU_FAIL_FATAL("the guest's balloon did not start");
	}
}

/* A number of status's balloon object (-1 when there is none). */
static long long balloon_field(struct vmm_proc *p, const char *name)
{
	json_t *st = vmm_request(p, "status", NULL);
	json_t *v = json_object_get(json_object_get(st, "balloon"), name);
	long long n = json_is_integer(v) ? json_integer_value(v) : -1;

	json_decref(st);
	return n;
}

static long long rss(struct vmm_proc *p)
{
	json_t *st = vmm_request(p, "status", NULL);
	json_t *v = json_object_get(json_object_get(st, "resources"), "rss_bytes");
	long long n = json_is_integer(v) ? json_integer_value(v) : -1;

	json_decref(st);
	return n;
}

/* Poll until the balloon's field equals want. */
static bool wait_balloon(struct vmm_proc *p, const char *name, long long want, int timeout_ms)
{
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000;

	while (balloon_field(p, name) != want) {
		if (now_ns() > end)
			return false;
		usleep(50000);
	}
	return true;
}

/* Poll until resident memory is at most (below) or at least (!below) bound; the last
 * reading in *last. */
static bool wait_rss(struct vmm_proc *p, bool below, long long bound, long long *last,
		     int timeout_ms)
{
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000;

	for (;;) {
		*last = rss(p);
		if (*last >= 0 && (below ? *last <= bound : *last >= bound))
			return true;
		if (now_ns() > end)
			return false;
		usleep(100000);
	}
}

static void set_target(struct vmm_proc *p, int mb)
{
	char args[48];
	json_t *r;

	snprintf(args, sizeof(args), "{\"target_mb\":%d}", mb);
	r = vmm_request(p, "balloon", args);
	CU_ASSERT_TRUE_FATAL(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
}

/* Heartbeats still come (the working set's vCPU runs on). */
static void assert_heartbeats_go_on(struct vmm_proc *p)
{
	int n = vmm_heartbeats(p, NULL, 0);

	CU_ASSERT(vmm_wait_heartbeats(p, n + 3, 30000));
}

/* Inflate the whole pool: resident memory falls by at least 80% of it; deflate: every page
 * comes back as zeros, and resident memory rises by as much again. */
static void test_inflate_deflate(void)
{
	const long long pool = POOL_MB * MIB, want = pool * 8 / 10;
	long long full, low, high;
	struct vmm_proc p;

	if (!guest_available())
		return;
	boot_balloon(&p, "wss_mb=8 vcpus=1 balloon_mb=256", "BALLOON target=0 actual=0");
	full = rss(&p); /* the pool is touched before the guest's first BALLOON line */
	CU_ASSERT_FATAL(full > pool);
	set_target(&p, POOL_MB);
	CU_ASSERT_FATAL(wait_balloon(&p, "actual_mb", POOL_MB, 60000));
	CU_ASSERT(vmm_console_wait(&p, "BALLOON target=65536 actual=65536", 30000));
	CU_ASSERT_EQUAL(balloon_field(&p, "inflated_pages"), POOL_MB * 256);
	CU_ASSERT(balloon_field(&p, "released_bytes") >= pool);
	CU_ASSERT(wait_rss(&p, true, full - want, &low, 30000));
	printf("\n    rss %lld MiB, inflated %lld MiB", full / MIB, low / MIB);
	assert_heartbeats_go_on(&p);

	set_target(&p, 0);
	CU_ASSERT(wait_balloon(&p, "actual_mb", 0, 60000));
	/* Released pages read as zeros when the guest takes them back. */
	CU_ASSERT(vmm_console_wait(&p, "BALLOON target=0 actual=0 zeroed=65536", 60000));
	CU_ASSERT_EQUAL(balloon_field(&p, "deflated_pages"), POOL_MB * 256);
	CU_ASSERT(wait_rss(&p, false, low + want, &high, 30000));
	printf(", deflated %lld MiB ", high / MIB);
	assert_heartbeats_go_on(&p);
	vmm_kill(&p);
	CU_ASSERT(guest_check_console(&p) > 0); /* no CORRUPT, heartbeats without a gap */
}

/* Free-page reporting: the guest reports the top half of its pool; the device counts and
 * releases it (the pages read as zeros), and resident memory rises by about that much once
 * the guest writes them again (at the next target). */
static void test_free_page_reporting(void)
{
	const long long half = POOL_MB / 2 * MIB;
	long long low, high;
	struct vmm_proc p;

	if (!guest_available())
		return;
	boot_balloon(&p, "wss_mb=8 vcpus=1 balloon_mb=256 balloon_report=1",
		     "BALLOON report pages=32768 zeros=32768");
	CU_ASSERT_EQUAL(balloon_field(&p, "reported_pages"), 32768);
	CU_ASSERT(balloon_field(&p, "released_bytes") >= half);
	CU_ASSERT_EQUAL(balloon_field(&p, "inflated_pages"), 0);
	low = rss(&p);
	set_target(&p, 0); /* the guest reuses what it reported */
	CU_ASSERT(vmm_console_wait(&p, "BALLOON reused pages=32768 zeros=32768", 60000));
	CU_ASSERT(wait_rss(&p, false, low + half * 8 / 10, &high, 30000));
	printf("\n    rss after the report %lld MiB, after reuse %lld MiB ", low / MIB, high / MIB);
	assert_heartbeats_go_on(&p);
	vmm_kill(&p);
	CU_ASSERT(guest_check_console(&p) > 0);
}

static void expect_error(struct vmm_proc *p, const char *args, const char *needle)
{
	json_t *r = vmm_request(p, "balloon", args);
	const char *e = json_string_value(json_object_get(r, "error"));

	CU_ASSERT_FALSE(json_is_true(json_object_get(r, "ok")));
	CU_ASSERT_PTR_NOT_NULL(strstr(e ? e : "", needle));
	if (!e || !strstr(e, needle))
		printf("\n    %s: %s", args ? args : "(no args)", e ? e : "(no error)");
	json_decref(r);
}

/* Bad targets get one line and change nothing; a VM without a balloon says so; --balloon
 * with --hugepages, and a ninth virtio device, are refused before anything starts. */
static void test_bad_target(void)
{
	const char *plain[] = { "--mem",     "64M",	 "--image", test_guest(),
				"--cmdline", "wss_mb=8", NULL };
	const char *huge[] = { "--image", test_guest(), "--balloon", "--hugepages", NULL };
	struct vmm_proc p, q;
	char *out;

	if (!guest_available())
		return;
	boot_balloon(&p, "wss_mb=8 vcpus=1 balloon_mb=16", "BALLOON target=0 actual=0");
	expect_error(&p, "{\"target_mb\":513}", "more than the VM's 512 MiB");
	expect_error(&p, "{\"target_mb\":-1}", "a whole number of MiB from 0 to 512");
	expect_error(&p, "{\"target_mb\":\"8\"}", "a whole number of MiB");
	expect_error(&p, NULL, "needs \"target_mb\"");
	CU_ASSERT_EQUAL(balloon_field(&p, "target_mb"), 0);
	assert_heartbeats_go_on(&p);
	vmm_kill(&p);

	CU_ASSERT_EQUAL_FATAL(vmm_start(&q, plain), 0);
	CU_ASSERT_FATAL(vmm_console_wait(&q, "READY", 30000));
	expect_error(&q, "{\"target_mb\":8}", "this VM has no balloon device");
	vmm_kill(&q);

	CU_ASSERT_EQUAL_FATAL(vmm_start(&q, huge), 0);
	CU_ASSERT_EQUAL(vmm_wait(&q, 30000), 0);
	CU_ASSERT_EQUAL(q.status, 2);
	out = test_read_file(q.errlog);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "--balloon and --hugepages exclude each other"));
	free(out);
}

/* A PFN in the MMIO hole: the inflate queue is broken (DEVICE_NEEDS_RESET), the host
 * touched nothing, the VMM and the guest's workload run on. */
static void test_pfn_outside_ram(void)
{
	struct vmm_proc p;
	char *err;
	json_t *r;

	if (!guest_available())
		return;
	boot_balloon(&p, "wss_mb=8 vcpus=1 balloon_bad=1", "BALLOON needs-reset status=0x4f");
	CU_ASSERT_EQUAL(balloon_field(&p, "inflated_pages"), 0);
	CU_ASSERT_EQUAL(balloon_field(&p, "released_bytes"), 0);
	assert_heartbeats_go_on(&p);
	r = vmm_request(&p, "status", NULL);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "state")), "running");
	json_decref(r);
	vmm_kill(&p);
	err = test_read_file(p.errlog);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "PFN 0xd0000 is outside guest RAM"));
	free(err);
}

/* Snapshot a ballooned VM and restore it: target and actual come back, the guest goes on
 * and deflates when asked; a restore without --balloon is refused. */
static void test_snapshot_restore(void)
{
	char snap[600], args[700];
	struct vmm_proc p, q;
	json_t *r;

	if (!guest_available())
		return;
	boot_balloon(&p, "wss_mb=8 vcpus=1 balloon_mb=64", "BALLOON target=0 actual=0");
	set_target(&p, 48);
	CU_ASSERT_FATAL(wait_balloon(&p, "actual_mb", 48, 60000));
	snprintf(snap, sizeof(snap), "%s/snap", test_tmpdir());
	snprintf(args, sizeof(args), "{\"path\":\"%s\",\"stop\":true}", snap);
	r = vmm_request(&p, "snapshot", args);
	CU_ASSERT_TRUE_FATAL(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	CU_ASSERT_EQUAL_FATAL(vmm_wait(&p, 30000), 0);
	{
		const char *bare[] = { snap, NULL };
		const char *with[] = { snap, "--balloon", NULL };

		CU_ASSERT_EQUAL_FATAL(vmm_start_verb(&q, "restore", bare), 0);
		CU_ASSERT_EQUAL(vmm_wait(&q, 30000), 0);
		CU_ASSERT_EQUAL(q.status,
				1); /* state has a device "virtio-balloon" this VM lacks */
		CU_ASSERT_EQUAL_FATAL(vmm_start_verb(&q, "restore", with), 0);
	}
	CU_ASSERT(wait_balloon(&q, "target_mb", 48, 10000));
	CU_ASSERT_EQUAL(balloon_field(&q, "actual_mb"), 48);
	CU_ASSERT_EQUAL(balloon_field(&q, "inflated_pages"), 48 * 256);
	assert_heartbeats_go_on(&q);
	set_target(&q, 0);
	CU_ASSERT(wait_balloon(&q, "actual_mb", 0, 60000));
	CU_ASSERT(vmm_console_wait(&q, "BALLOON target=0 actual=0 zeroed=12288", 60000));
	vmm_kill(&q);
	CU_ASSERT(guest_check_console(&q) > 0);
}

/* Live migration carries the balloon: half the pool inflated before, the rest inflated
 * while pages are being sent (those pages turn to zeros behind KVM's dirty log: the digest
 * proves they were sent again). The destination keeps target and actual, does not back the
 * inflated pages, and its guest finds every page it takes back zeroed; the heartbeats run
 * on without a gap. A destination without --balloon fails the migration. */
static void test_migrate(void)
{
	static const char *const nodes[] = { "127.0.0.1", "127.0.0.2", NULL };
	const char *with[] = { "--balloon", NULL };
	struct vmm_proc p, q, bare, *both[2] = { &p, &q };
	char pki[600], tls[2][700], to[64];
	struct hb_chain chain;
	long long low;
	json_t *r;
	int port;

	if (!guest_available())
		return;
	CU_ASSERT_EQUAL_FATAL(mig_certs(pki, sizeof(pki), nodes), 0);
	net_tls_dir(tls[0], sizeof(tls[0]), pki, nodes[0]);
	net_tls_dir(tls[1], sizeof(tls[1]), pki, nodes[1]);
	/* 64 MiB to send, dirtied at 8 MiB/s, while the balloon inflates (the pool the
	 * guest touched is zeros, which cost the migration next to nothing). */
	boot_balloon(&p, "wss_mb=64 dirty_rate=8 vcpus=1 balloon_mb=256",
		     "BALLOON target=0 actual=0");
	set_target(&p, 128);
	CU_ASSERT_FATAL(wait_balloon(&p, "actual_mb", 128, 60000));

	port = mig_incoming(&bare, "127.0.0.2", tls[1], NULL); /* no --balloon: refused */
	CU_ASSERT_FATAL(port > 0);
	snprintf(to, sizeof(to), "127.0.0.2:%d", port);
	CU_ASSERT_FATAL(mig_ctl_start(&p, to, tls[0], ""));
	r = mig_ctl_wait_end(&p, 120000);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "phase")) ?: "", "failed");
	CU_ASSERT_PTR_NOT_NULL(
		strstr(json_string_value(json_object_get(r, "error")) ?: "", "virtio-balloon"));
	json_decref(r);
	assert_heartbeats_go_on(&p);
	vmm_kill(&bare);

	port = mig_incoming(&q, "127.0.0.2", tls[1], with);
	CU_ASSERT_FATAL(port > 0);
	snprintf(to, sizeof(to), "127.0.0.2:%d", port);
	CU_ASSERT_FATAL(mig_ctl_start(&p, to, tls[0], "\"max_bandwidth\":\"40M\""));
	if (mig_ctl_wait_bytes(&p, 8 * MIB, 60000))
		set_target(&p, 256); /* inflated while pages go */
	else
		CU_FAIL("the migration ended before 8 MiB were sent");
	mig_expect_source_migrated(&p);
	CU_ASSERT(wait_balloon(&q, "target_mb", 256, 30000));
	CU_ASSERT(wait_balloon(&q, "actual_mb", 256, 60000));
	/* The destination holds the working set and the image, not the balloon. */
	CU_ASSERT(wait_rss(&q, true, 160 * MIB, &low, 30000));
	printf("\n    destination rss %lld MiB with 256 MiB ballooned", low / MIB);
	set_target(&q, 0);
	CU_ASSERT(wait_balloon(&q, "actual_mb", 0, 60000));
	CU_ASSERT(vmm_console_wait(&q, "zeroed=65536", 60000));
	assert_heartbeats_go_on(&q);
	vmm_kill(&q);
	CU_ASSERT(mig_check_consoles(both, 2, &chain) > 0);
}

void suite_balloon(void)
{
	static const struct test_case cases[] = {
		{ "virtio-balloon: inflate releases the pool, deflate gives it back",
		  test_inflate_deflate },
		{ "virtio-balloon: free-page reporting releases the reported range",
		  test_free_page_reporting },
		{ "virtio-balloon: a bad target is refused, the VM untouched", test_bad_target },
		{ "virtio-balloon: a PFN outside RAM needs a reset; the VMM runs on",
		  test_pfn_outside_ram },
		{ "virtio-balloon: snapshot and restore keep target and actual",
		  test_snapshot_restore },
		{ "virtio-balloon: live migration keeps the balloon; inflated mid-way, sent as "
		  "zeros",
		  test_migrate },
		{ NULL, NULL },
	};

	test_add_suite("balloon", cases);
}

/* The self-checking test guest on real KVM: heartbeats, timer ticks, ring-3 speed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guestrun.h"
#include "kvmtests.h"

static void boot_and_watch(const char *vcpus, const char *cmdline)
{
	struct heartbeat first;
	struct vmm_proc p;
	int n;

	if (!guest_available())
		return;
	guest_boot(&p, "256M", vcpus, cmdline);
	CU_ASSERT_TRUE(vmm_wait_heartbeats(&p, 6, 30000));
	n = guest_check_console(&p);
	CU_ASSERT(n >= 6);
	CU_ASSERT_EQUAL(vmm_heartbeats(&p, &first, 1) > 0 ? first.seq : 0, 1);
	vmm_kill(&p);
}

static void test_boot_1vcpu(void)
{
	boot_and_watch("1", "wss_mb=32");
}

static void test_boot_2vcpu(void)
{
	boot_and_watch("2", "wss_mb=64");
}

/* The ring-3 workload rewrites its working set generation after generation, checking
 * every stamp: wait (on the guest's own count, however slow the machine) until it wrote
 * the whole set three times; the count and the guest's clock only go forward. How FAST
 * it writes is a benchmark (make bench: guest_dirty_rate), not a test. */
static void test_rewrites_working_set(void)
{
	const uint64_t wss_pages = 64 * 256;
	struct heartbeat hb[64], at;
	struct vmm_proc p;
	int n;

	if (!guest_available())
		return;
	guest_boot(&p, "512M", "1", "wss_mb=64");
	CU_ASSERT_FATAL(vmm_wait_pages(&p, 3 * wss_pages, 120000, &at));
	n = vmm_heartbeats(&p, hb, 64);
	for (int i = 1; i < n && i < 64; i++) {
		CU_ASSERT(hb[i].seq == hb[i - 1].seq + 1);
		CU_ASSERT(hb[i].pages >= hb[i - 1].pages);
		CU_ASSERT(hb[i].ms > hb[i - 1].ms);
	}
	CU_ASSERT(guest_check_console(&p) >= 1);
	vmm_kill(&p);
}

/* exit_after=N: the guest ends itself with status 0 after N heartbeats. */
static void test_clean_exit(void)
{
	struct vmm_proc p;

	if (!guest_available())
		return;
	guest_boot(&p, "128M", "2", "wss_mb=16 exit_after=5");
	CU_ASSERT_EQUAL(vmm_wait(&p, 30000), 0);
	CU_ASSERT_EQUAL(p.status, 0);
	CU_ASSERT_EQUAL(guest_check_console(&p), 5);
	vmm_kill(&p);
}

/* dirty_rate=N paces the writers by the guest's clock: over any stretch of guest time a
 * token bucket lets them write at most N MiB/s plus BURST_MS (10 ms) of credit each, so
 * however the host schedules the guest, the rate its heartbeats show stays at or below N
 * (a margin for the bucket's credit). That it gets near N is for make bench. */
static void test_paced_rate(void)
{
	struct heartbeat hb[16];
	struct vmm_proc p;
	double mib_s, secs;

	if (!guest_available())
		return;
	guest_boot(&p, "256M", "2", "wss_mb=64 dirty_rate=100");
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&p, 12, 60000));
	CU_ASSERT_FATAL(vmm_heartbeats(&p, hb, 16) >= 12);
	vmm_kill(&p);
	secs = (double)(hb[11].ms - hb[1].ms) / 1000.0;
	CU_ASSERT_FATAL(secs > 0);
	mib_s = (double)(hb[11].pages - hb[1].pages) * 4096.0 / (1 << 20) / secs;
	printf("\n    paced dirty rate: %.0f MiB/s over %.2f s of guest time (target 100)\n", mib_s,
	       secs);
	CU_ASSERT(hb[11].pages > hb[1].pages);
	CU_ASSERT(mib_s <= 100.0 * (1.0 + 0.03 / secs) * 1.05);
}

void suite_guest(void)
{
	static const struct test_case cases[] = {
		{ "test guest, 1 vCPU: heartbeats, rising ticks", test_boot_1vcpu },
		{ "test guest, 2 vCPUs: heartbeats, rising ticks", test_boot_2vcpu },
		{ "workload rewrites its working set, stamps checked", test_rewrites_working_set },
		{ "guest exits cleanly with exit_after", test_clean_exit },
		{ "dirty_rate paces the workload", test_paced_rate },
		{ NULL, NULL },
	};
	test_add_suite("guest", cases);
}

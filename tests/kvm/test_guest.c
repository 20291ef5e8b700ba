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

/* Pages written per heartbeat period (100 ms of guest TSC time) give the dirty rate: the
 * workload must run natively in ring 3, hundreds of MiB/s at the very least. */
static void test_dirty_rate(void)
{
	struct heartbeat hb[16];
	struct vmm_proc p;
	double mib_s;
	int n;

	if (!guest_available())
		return;
	guest_boot(&p, "512M", "1", "wss_mb=64");
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&p, 14, 30000));
	n = vmm_heartbeats(&p, hb, 16);
	vmm_kill(&p);
	CU_ASSERT_FATAL(n >= 14);
	/* Skip the first heartbeats: the first touch of each page is slow (the host maps it),
	 * then measure over 8 periods. */
	mib_s = (double)(hb[13].pages - hb[5].pages) * 4096.0 / (1 << 20) / 0.8;
	printf("\n    guest dirty rate: %.0f MiB/s\n", mib_s);
	CU_ASSERT(mib_s >= 300.0);
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

/* dirty_rate=N paces the writers: well below the unpaced rate, near the target. */
static void test_paced_rate(void)
{
	struct heartbeat hb[16];
	struct vmm_proc p;
	double mib_s;

	if (!guest_available())
		return;
	guest_boot(&p, "256M", "2", "wss_mb=64 dirty_rate=100");
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&p, 12, 30000));
	CU_ASSERT_FATAL(vmm_heartbeats(&p, hb, 16) >= 12);
	vmm_kill(&p);
	mib_s = (double)(hb[11].pages - hb[1].pages) * 4096.0 / (1 << 20) / 1.0;
	printf("\n    paced dirty rate: %.0f MiB/s (target 100)\n", mib_s);
	CU_ASSERT(mib_s > 50.0 && mib_s < 150.0);
}

void suite_guest(void)
{
	static const struct test_case cases[] = {
		{ "test guest, 1 vCPU: heartbeats, rising ticks", test_boot_1vcpu },
		{ "test guest, 2 vCPUs: heartbeats, rising ticks", test_boot_2vcpu },
		{ "workload dirties memory at native speed", test_dirty_rate },
		{ "guest exits cleanly with exit_after", test_clean_exit },
		{ "dirty_rate paces the workload", test_paced_rate },
		{ NULL, NULL },
	};
	test_add_suite("guest", cases);
}

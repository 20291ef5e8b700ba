/* The test guest's ring-3 workload: how fast it dirties memory as fast as it can (ring 3
 * runs natively under KVM, hundreds of MiB/s at the very least; a guest emulated in ring
 * 0 would crawl), and how close dirty_rate=100 paces it. Measured from its own
 * heartbeats: pages written against the guest's clock. Formerly timed tests. */
#include <stdio.h>

#include "bench.h"
#include "common.h"
#include "harness.h"

#define GUEST_RUNS 3

/* MiB/s over heartbeats 5..13 (the first touch of each page is slow: the host maps it);
 * 0 when the guest did not get that far. */
static double guest_rate(const char *vcpus, const char *cmdline)
{
	const char *args[] = { "--mem",	     "512M",	  "--vcpus", vcpus, "--image",
			       test_guest(), "--cmdline", cmdline,   NULL };
	struct heartbeat hb[16];
	struct vmm_proc p;
	double rate = 0;

	if (vmm_start(&p, args) < 0)
		return 0;
	if (vmm_wait_heartbeats(&p, 14, 60000) && vmm_heartbeats(&p, hb, 16) >= 14 &&
	    hb[13].ms > hb[5].ms)
		rate = (double)(hb[13].pages - hb[5].pages) * 4096.0 / (1 << 20) /
		       ((double)(hb[13].ms - hb[5].ms) / 1000.0);
	vmm_kill(&p);
	return rate;
}

void bench_guest_rates(void)
{
	double free_run[GUEST_RUNS], paced[GUEST_RUNS];
	const char *const keys[] = { "dirty_mib_s", "paced_mib_s", NULL };
	double *const vals[] = { free_run, paced };

	for (int i = 0; i < GUEST_RUNS; i++) {
		free_run[i] = guest_rate("1", "wss_mb=64");
		paced[i] = guest_rate("2", "wss_mb=64 dirty_rate=100");
	}
	bench_emit_many("guest_dirty_rate", GUEST_RUNS, keys, vals);
}

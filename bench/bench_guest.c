/* The test guest's ring-3 workload: how fast it dirties memory as fast as it can (ring 3
 * runs natively under KVM, hundreds of MiB/s at the very least; a guest emulated in ring
 * 0 would crawl), and how close dirty_rate=100 paces it. Measured from its own
 * heartbeats: pages written against the guest's clock. Formerly timed tests. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* ---- virtio-blk: the guest's 4 KiB sequential I/O against the host's own ---------------- */

#define DISK_BENCH_MB 32
#define BLOCK	      4096

/* The host's 4 KiB sequential writes (then fdatasync) and reads of DISK_BENCH_MB MiB on a
 * file in dir, through the page cache as the VMM does: MiB/s into *w and *r. */
static void host_disk(const char *path, double *w, double *r)
{
	static char buf[BLOCK];
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	uint64_t t0, blocks = DISK_BENCH_MB * 256;
	bool ok = fd >= 0;

	*w = *r = 0;
	memset(buf, 0x5a, sizeof(buf));
	t0 = now_ns();
	for (uint64_t b = 0; ok && b < blocks; b++)
		ok = pwrite(fd, buf, BLOCK, (off_t)(b * BLOCK)) == BLOCK;
	ok = ok && fdatasync(fd) == 0;
	if (ok)
		*w = DISK_BENCH_MB / ((double)(now_ns() - t0) / 1e9);
	t0 = now_ns();
	for (uint64_t b = 0; ok && b < blocks; b++)
		ok = pread(fd, buf, BLOCK, (off_t)(b * BLOCK)) == BLOCK;
	if (ok)
		*r = DISK_BENCH_MB / ((double)(now_ns() - t0) / 1e9);
	if (fd >= 0)
		close(fd);
}

/* The test guest's pass 1 (disk_bench=1): MiB/s of its writes (with the flush) and reads. */
static void guest_disk(const char *path, double *w, double *r)
{
	char cmdline[96];
	const char *args[] = { "--mem", "128M",	  "--image", test_guest(), "--cmdline",
			       cmdline, "--disk", path,	     NULL };
	unsigned long blocks = 0, wt = 0, rt = 0, khz = 0;
	struct vmm_proc p;
	char *c, *hit;
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	*w = *r = 0;
	if (fd < 0 || ftruncate(fd, (DISK_BENCH_MB + 1) << 20) < 0) {
		if (fd >= 0)
			close(fd);
		return;
	}
	close(fd);
	snprintf(cmdline, sizeof(cmdline), "wss_mb=8 vcpus=0 disk_mb=%d disk_bench=1",
		 DISK_BENCH_MB);
	if (vmm_start(&p, args) < 0)
		return;
	if (vmm_console_wait(&p, "DISKBENCH", 120000)) {
		c = test_read_file(p.console);
		hit = strstr(c, "DISKBENCH");
		if (hit &&
		    sscanf(hit, "DISKBENCH blocks=%lu write_tsc=%lu read_tsc=%lu tsc_khz=%lu",
			   &blocks, &wt, &rt, &khz) == 4 &&
		    wt && rt && khz) {
			*w = blocks * 4096.0 / (1 << 20) / ((double)wt / khz / 1000.0);
			*r = blocks * 4096.0 / (1 << 20) / ((double)rt / khz / 1000.0);
		}
		free(c);
	}
	vmm_kill(&p);
}

void bench_virtio_blk(void)
{
	double gw[GUEST_RUNS], gr[GUEST_RUNS], hw[GUEST_RUNS], hr[GUEST_RUNS];
	const char *const keys[] = { "guest_write_mib_s", "host_write_mib_s", "guest_read_mib_s",
				     "host_read_mib_s", NULL };
	double *const vals[] = { gw, hw, gr, hr };
	char path[600];

	snprintf(path, sizeof(path), "%s/bench.img", test_tmpdir());
	for (int i = 0; i < GUEST_RUNS; i++) {
		guest_disk(path, &gw[i], &gr[i]);
		host_disk(path, &hw[i], &hr[i]);
	}
	bench_emit_many("virtio_blk_4k_seq", GUEST_RUNS, keys, vals);
	printf("{\"bench\":\"virtio_blk_4k_seq_fraction\",\"write\":%.3f,\"read\":%.3f,"
	       "\"note\":\"guest over host, medians; the test guest polls one 4 KiB request at "
	       "a time\"}\n",
	       bench_median(hw, GUEST_RUNS) > 0
		       ? bench_median(gw, GUEST_RUNS) / bench_median(hw, GUEST_RUNS)
		       : 0,
	       bench_median(hr, GUEST_RUNS) > 0
		       ? bench_median(gr, GUEST_RUNS) / bench_median(hr, GUEST_RUNS)
		       : 0);
	fflush(stdout);
}

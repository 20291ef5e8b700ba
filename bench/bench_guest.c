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

/* ---- the sandbox's cost ---------------------------------------------------------------- */

/* One exit round trip (ring-3 outb to the UART, 100,000 of them) in a cme-vmm process,
 * jailed or not, in µs by the guest's TSC; 0 when the run failed. */
static double vmm_exit_us(bool jail)
{
	const char *args[] = { "--mem",	     "64M",	  "--image",
			       test_guest(), "--cmdline", "mode=ioloop iters=100000",
			       NULL };
	unsigned long khz;
	struct vmm_proc p;
	char *con, *err, *t;
	double us = 0;
	int rc;

	if (!jail)
		setenv("CME_TEST_NO_JAIL", "1", 1);
	rc = vmm_start(&p, args);
	unsetenv("CME_TEST_NO_JAIL");
	if (rc < 0)
		return 0;
	if (vmm_wait(&p, 120000) < 0) {
		vmm_kill(&p);
		return 0;
	}
	con = test_read_file(p.console);
	err = test_read_file(p.errlog);
	t = strstr(err, ", TSC ");
	if (t && sscanf(t, ", TSC %lu kHz", &khz) == 1)
		us = bench_ioloop_us(con, khz);
	free(con);
	free(err);
	return us;
}

void bench_sandbox(void)
{
	double jailed[GUEST_RUNS], free_run[GUEST_RUNS];
	const char *const keys[] = { "jailed_us", "unjailed_us", NULL };
	double *const vals[] = { jailed, free_run };

	for (int i = 0; i < GUEST_RUNS; i++) {
		jailed[i] = vmm_exit_us(true);
		free_run[i] = vmm_exit_us(false);
	}
	bench_emit_many("sandbox_exit_roundtrip", GUEST_RUNS, keys, vals);
}

/* ---- virtio-blk: the guest's I/O against the host's own ---------------------------------- */

/* One pattern: MiB moved, request size in KiB, requests in flight (the guest's; the host's
 * loop has one), in order or shuffled. */
struct disk_pattern {
	const char *name;
	unsigned mb, bs_kb, qd;
	bool rand;
};

/* The place of request i of units, as the test guest's disk_rand=1 visits them. */
static uint64_t pattern_unit(const struct disk_pattern *pt, uint64_t i, uint64_t units)
{
	return pt->rand ? (i * 1000003ULL + 7) % units : i;
}

/* The host's own loop over the pattern on a file in the same place, through the page cache
 * as the VMM does, cycling through as many buffers as the guest has requests in flight
 * (the same memory to touch): writes then fdatasync, then reads; MiB/s into *w and *r. */
static void host_disk(const char *path, const struct disk_pattern *pt, double *w, double *r)
{
	size_t bs = (size_t)pt->bs_kb << 10;
	uint64_t units = ((uint64_t)pt->mb << 20) / bs, t0;
	char *bufs = malloc(bs * pt->qd), *buf;
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	bool ok = fd >= 0 && bufs && ftruncate(fd, (off_t)pt->mb << 20) == 0;

	*w = *r = 0;
	if (bufs)
		memset(bufs, 0x5a, bs * pt->qd);
	t0 = now_ns();
	for (uint64_t i = 0; ok && i < units; i++) {
		buf = bufs + (i % pt->qd) * bs;
		ok = pwrite(fd, buf, bs, (off_t)(pattern_unit(pt, i, units) * bs)) == (ssize_t)bs;
	}
	ok = ok && fdatasync(fd) == 0;
	if (ok)
		*w = pt->mb / ((double)(now_ns() - t0) / 1e9);
	t0 = now_ns();
	for (uint64_t i = 0; ok && i < units; i++) {
		buf = bufs + (i % pt->qd) * bs;
		ok = pread(fd, buf, bs, (off_t)(pattern_unit(pt, i, units) * bs)) == (ssize_t)bs;
	}
	if (ok)
		*r = pt->mb / ((double)(now_ns() - t0) / 1e9);
	if (fd >= 0)
		close(fd);
	free(bufs);
}

/* The test guest's pass 1 of the pattern (disk_bench=1): MiB/s of its writes (with the
 * flush) and reads. */
static void guest_disk(const char *path, const struct disk_pattern *pt, double *w, double *r)
{
	char cmdline[160];
	const char *args[] = { "--mem", "256M",	  "--image", test_guest(), "--cmdline",
			       cmdline, "--disk", path,	     NULL };
	unsigned long blocks = 0, wt = 0, rt = 0, khz = 0;
	struct vmm_proc p;
	char *c, *hit;
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	*w = *r = 0;
	if (fd < 0 || ftruncate(fd, ((off_t)pt->mb + 1) << 20) < 0) {
		if (fd >= 0)
			close(fd);
		return;
	}
	close(fd);
	snprintf(cmdline, sizeof(cmdline),
		 "wss_mb=8 vcpus=0 disk_mb=%u disk_bench=1 disk_bs=%u disk_qd=%u disk_rand=%d",
		 pt->mb, pt->bs_kb, pt->qd, pt->rand);
	if (vmm_start(&p, args) < 0)
		return;
	if (vmm_console_wait(&p, "DISKBENCH", 300000)) {
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
	} else {
		c = test_read_file(p.errlog);
		fprintf(stderr, "guest disk bench (%s): no DISKBENCH line; stderr: %s\n", pt->name,
			c);
		free(c);
	}
	vmm_kill(&p);
}

static double ratio(double *a, double *b)
{
	return bench_median(b, GUEST_RUNS) > 0
		       ? bench_median(a, GUEST_RUNS) / bench_median(b, GUEST_RUNS)
		       : 0;
}

static void bench_disk_pattern(const char *path, const struct disk_pattern *pt)
{
	double gw[GUEST_RUNS], gr[GUEST_RUNS], hw[GUEST_RUNS], hr[GUEST_RUNS];
	const char *const keys[] = { "guest_write_mib_s", "host_write_mib_s", "guest_read_mib_s",
				     "host_read_mib_s", NULL };
	double *const vals[] = { gw, hw, gr, hr };
	double iops = 1024.0 / pt->bs_kb; /* requests per MiB */

	for (int i = 0; i < GUEST_RUNS; i++) {
		guest_disk(path, pt, &gw[i], &gr[i]);
		host_disk(path, pt, &hw[i], &hr[i]);
	}
	bench_emit_many(pt->name, GUEST_RUNS, keys, vals);
	printf("{\"bench\":\"%s_fraction\",\"write\":%.3f,\"read\":%.3f,"
	       "\"guest_write_iops\":%.0f,\"guest_read_iops\":%.0f,\"host_write_iops\":%.0f,"
	       "\"host_read_iops\":%.0f,\"bs_kib\":%u,\"guest_qd\":%u,\"random\":%s,"
	       "\"note\":\"guest over host, medians; the test guest polls its queue, the "
	       "host's loop is synchronous\"}\n",
	       pt->name, ratio(gw, hw), ratio(gr, hr), bench_median(gw, GUEST_RUNS) * iops,
	       bench_median(gr, GUEST_RUNS) * iops, bench_median(hw, GUEST_RUNS) * iops,
	       bench_median(hr, GUEST_RUNS) * iops, pt->bs_kb, pt->qd, pt->rand ? "true" : "false");
	fflush(stdout);
}

void bench_virtio_blk(void)
{
	static const struct disk_pattern patterns[] = {
		{ "virtio_blk_4k_seq", 32, 4, 1, false },      /* one request at a time */
		{ "virtio_blk_1m_seq", 1024, 1024, 4, false }, /* large sequential I/O */
		{ "virtio_blk_4k_rand", 64, 4, 32, true },     /* IOPS */
	};
	char path[600];

	snprintf(path, sizeof(path), "%s/bench.img", test_tmpdir());
	for (size_t i = 0; i < ARRAY_SIZE(patterns); i++)
		bench_disk_pattern(path, &patterns[i]);
}

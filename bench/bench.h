/* Shared by the benchmark files of cme-bench. */
#ifndef CME_BENCH_H
#define CME_BENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One JSON line for benchmark name with several metrics: for each keys[i], the median and
 * the runs of vals[i][0..n). keys is NULL-terminated. */
void bench_emit_many(const char *name, int n, const char *const *keys, double *const *vals);

/* One exit round trip in µs from the test guest's "IOLOOP iters=N tsc=T" console line
 * (mode=ioloop) and the guest's TSC rate; 0 when the line is missing. */
double bench_ioloop_us(const char *console, unsigned long tsc_khz);

/* The largest gap between heartbeat lines arriving on two consoles (source, then
 * destination), polled every 2 ms by a thread of its own. */
struct hb_watch {
	const char *files[2];
	atomic_bool stop;
	uint64_t last_ns, max_gap_ns;
	size_t seen[2];
	pthread_t thread;
};

/* HB lines in a console file; with last_pages, the pages= count of the last one. */
size_t bench_count_hb(const char *path, unsigned long *last_pages);
/* Start watching src and dst (heartbeats already on src are not a gap). 0 or -errno. */
int bench_hb_watch_start(struct hb_watch *w, const char *src, const char *dst);
/* Stop the watcher; returns the largest gap in ms. */
double bench_hb_watch_stop(struct hb_watch *w);

/* Medians of one migration benchmark, to compare CME with QEMU in the same run. */
struct mig_medians {
	double total_ms, downtime_ms, gap_ms;
};

/* The downtime limit both VMMs get in the comparison. */
#define MIG_BENCH_DOWNTIME_MS 50

/* A migration workload, run the same way by CME and by QEMU: the test guest with one vCPU
 * (the guest's multiboot entry under QEMU starts no other), memory, its command line, and
 * how many page writes it must have done before the migration starts. */
struct mig_workload {
	const char *name, *mem, *cmdline;
	unsigned long wait_pages;
};

/* One VMM's medians over its runs of a workload (n: the runs that succeeded). */
struct mig_result {
	int n;
	double total_ms, downtime_ms, gap_ms, mbps;
};

/* bench_migrate.c: migrations of the test guest, idle and dirtying (needs
 * CME_BENCH_CERTS: a mkcerts.sh directory with 127.0.0.1 and 127.0.0.2); *out gets the
 * medians of the dirtying one (zero when skipped). */
void bench_migrate(struct mig_medians *out);
/* Migration of a guest doing disk I/O against the same guest without (migration_1g_disk,
 * migration_1g_no_disk; CME_BENCH_ONLY=migrate-disk runs them alone). */
void bench_migrate_disk(void);

/* bench_cluster.c: three cme-clusterd on etcd: cmectl vm create to the first heartbeat,
 * and cmectl vm migrate of the same dirtying guest as bench_migrate, with the cluster's
 * overhead against bare (its medians; zero: not measured). */
void bench_cluster(const struct mig_medians *bare);

/* bench_guest.c: the test guest's dirty rate, unpaced (1 vCPU, 64 MiB working set) and
 * paced at dirty_rate=100 (2 vCPUs), from its heartbeats. */
void bench_guest_rates(void);
/* bench_guest.c: what the sandbox costs a guest exit, the same guest in a cme-vmm with
 * --jail and without (sandbox_exit_roundtrip; CME_BENCH_ONLY=sandbox runs it alone). */
void bench_sandbox(void);
/* bench_guest.c: virtio-blk, the test guest's 4 KiB sequential writes and reads against
 * the host's own on the same file system (needs KVM). */
void bench_virtio_blk(void);

/* bench_net.c: virtio-net, the test guest's bulk send of 1514-byte frames against the
 * host's own writes of the same frames into the same tap (needs KVM, root, /dev/net/tun). */
void bench_virtio_net(void);

/* bench_ha.c: how many lightweight lease holders (simulated nodes without VMs) one etcd
 * watches over with every lost one detected within TTL + 1 s (needs no KVM). */
void bench_ha_detection(void);
/* bench_ha.c: failover of a guest whose host is killed (kill -9 of its daemon and VMMs):
 * to the owner record's move (detection) and to the first heartbeat on the new host, at
 * lease TTLs of 2, 3, 5 and 10 s (5 runs each; needs KVM). */
void bench_ha_failover(void);

/* The median of v[0..n) (v is reordered); 0 when n is 0. */
double bench_median(double *v, int n);

/* bench_qemu.c: QEMU's live migration of the workload (3 runs, TLS, auto-converge on,
 * downtime-limit MIG_BENCH_DOWNTIME_MS): medians into out. Returns 0, or -1 with why (not
 * installed, no run succeeded). */
int bench_qemu_run(const char *certs, const struct mig_workload *wl, struct mig_result *out,
		   char *err, size_t errlen);

struct vmm_proc;
/* Like vmm_console_wait(), but polling every 2 ms: for times of tens to hundreds of ms,
 * where the harness's 20 ms poll would be a visible error. */
bool bench_console_wait_fine(struct vmm_proc *p, const char *needle, int timeout_ms);

/* bench_backup.c: live, incremental backups of a dirtying guest and restores. */
void bench_backup(void);

#endif

/* Shared by the benchmark files of cme-bench. */
#ifndef CME_BENCH_H
#define CME_BENCH_H

/* One JSON line for benchmark name with several metrics: for each keys[i], the median and
 * the runs of vals[i][0..n). keys is NULL-terminated. */
void bench_emit_many(const char *name, int n, const char *const *keys, double *const *vals);

/* bench_migrate.c: migrations of the test guest, idle and dirtying (needs
 * CME_BENCH_CERTS: a mkcerts.sh directory with 127.0.0.1 and 127.0.0.2). */
void bench_migrate(void);

/* Medians of one migration benchmark, to compare CME with QEMU in the same run. */
struct mig_medians {
	double total_ms, downtime_ms, gap_ms;
};

/* The median of v[0..n) (v is reordered); 0 when n is 0. */
double bench_median(double *v, int n);

/* bench_qemu.c: QEMU's live migration of the same test guest (1 GiB, 256 MiB dirtied,
 * TLS), and the ratio CME/QEMU against cme (NULL: no ratio). */
void bench_qemu_migrate(const char *certs, const struct mig_medians *cme);

#endif

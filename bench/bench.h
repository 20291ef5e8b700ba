/* Shared by the benchmark files of cme-bench. */
#ifndef CME_BENCH_H
#define CME_BENCH_H

/* One JSON line for benchmark name with several metrics: for each keys[i], the median and
 * the runs of vals[i][0..n). keys is NULL-terminated. */
void bench_emit_many(const char *name, int n, const char *const *keys, double *const *vals);

/* bench_migrate.c: migrations of the test guest, idle and dirtying (needs
 * CME_BENCH_CERTS: a mkcerts.sh directory with 127.0.0.1 and 127.0.0.2). */
void bench_migrate(void);

#endif

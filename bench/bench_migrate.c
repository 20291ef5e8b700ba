/* Migration benchmarks: a 1 GiB test guest idle, and dirtying 256 MiB continuously, moved
 * over mutual TLS on loopback. Besides the VMM's own statistics, the pause as the guest's
 * observer sees it: the largest gap between heartbeat lines arriving on the consoles (the
 * guest prints one every 100 ms, so gap - 100 ms is the visible stall). */
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "common.h"
#include "harness.h"

#define MIG_RUNS 3
#define THR_RUNS 5 /* the throughput pairs: the noisiest figure */

size_t bench_count_hb(const char *path, unsigned long *last_pages)
{
	char *c = test_read_file(path), *p = c;
	size_t n = 0;

	while (p && (p = strstr(p, "HB seq="))) {
		char *q = strstr(p, "pages=");

		if (last_pages && q)
			*last_pages = strtoul(q + 6, NULL, 10);
		n++;
		p++;
	}
	free(c);
	return n;
}

/* Poll both consoles every 2 ms; note when each new heartbeat line shows up. */
static void *watch_thread(void *arg)
{
	struct hb_watch *w = arg;

	while (!atomic_load(&w->stop)) {
		for (int i = 0; i < 2; i++) {
			size_t n = bench_count_hb(w->files[i], NULL);
			uint64_t now = now_ns();

			if (n > w->seen[i]) {
				if (w->last_ns && now - w->last_ns > w->max_gap_ns)
					w->max_gap_ns = now - w->last_ns;
				w->last_ns = now;
				w->seen[i] = n;
			}
		}
		usleep(2000);
	}
	return NULL;
}

int bench_hb_watch_start(struct hb_watch *w, const char *src, const char *dst)
{
	memset(w, 0, sizeof(*w));
	w->files[0] = src;
	w->files[1] = dst;
	w->seen[0] = bench_count_hb(src, NULL);
	return -pthread_create(&w->thread, NULL, watch_thread, w);
}

double bench_hb_watch_stop(struct hb_watch *w)
{
	atomic_store(&w->stop, true);
	pthread_join(w->thread, NULL);
	return (double)w->max_gap_ns / 1e6;
}

static uint16_t incoming_port(const char *errlog)
{
	for (int i = 0; i < 500; i++) {
		char *e = test_read_file(errlog), *l = strstr(e, "waiting for a migration on ");
		unsigned port = 0;

		if (l && (l = strrchr(l, ':')) && sscanf(l + 1, "%u", &port) == 1) {
			free(e);
			return (uint16_t)port;
		}
		free(e);
		usleep(10000);
	}
	return 0;
}

/* One migration of a guest booted with mem, vcpus and cmdline (with disk: the guest's
 * disk on both sides), once it has written wait_pages pages and 40 heartbeats, with
 * `cme-vmm migrate` given extra (NULL-terminated, may be NULL); returns the final JSON
 * object (caller decrefs) or NULL. */
struct mig_run_cfg {
	const char *mem, *vcpus, *cmdline, *disk;
	unsigned long wait_pages;
	const char *const *extra;
};

static bool wait_written(struct vmm_proc *p, unsigned long pages)
{
	for (int i = 0; i < 1200; i++) {
		unsigned long got = 0;

		if (bench_count_hb(p->console, &got) >= 40 && got >= pages)
			return true;
		usleep(100000);
	}
	return false;
}

static json_t *migrate_once(const char *certs, const struct mig_run_cfg *rc, double *gap_ms)
{
	char tls_src[600], tls_dst[600], to[64], port_s[16];
	struct vmm_proc src, dst;
	struct hb_watch w;
	bool watching = false;
	json_t *res = NULL;
	char *out = NULL;
	const char *sargs[] = { "--mem",   rc->mem,	 "--vcpus",   rc->vcpus,
				"--image", test_guest(), "--cmdline", rc->cmdline,
				"--disk",  rc->disk,	 NULL };

	snprintf(tls_src, sizeof(tls_src), "%s/127.0.0.1", certs);
	snprintf(tls_dst, sizeof(tls_dst), "%s/127.0.0.2", certs);
	const char *dargs[] = { "--listen", "127.0.0.2:0", "--tls-dir", tls_dst,
				"--disk",   rc->disk,	   NULL };

	if (!rc->disk) /* no --disk: the argument lists end there */
		sargs[8] = dargs[4] = NULL;

	if (vmm_start(&src, sargs) < 0 || !wait_written(&src, rc->wait_pages) ||
	    vmm_start_verb(&dst, "incoming", dargs) < 0)
		goto out;
	snprintf(port_s, sizeof(port_s), "%u", incoming_port(dst.errlog));
	snprintf(to, sizeof(to), "127.0.0.2:%s", port_s);
	char dt[16];
	const char *argv[16] = {
		test_bin("cme-vmm"), "migrate", "--api",	 src.api, "--to", to,
		"--tls-dir",	     tls_src,	"--downtime-ms", dt,	  NULL
	};
	int k = 10;

	snprintf(dt, sizeof(dt), "%d", MIG_BENCH_DOWNTIME_MS);
	for (int i = 0; rc->extra && rc->extra[i] && k < 15; i++)
		argv[k++] = rc->extra[i];
	argv[k] = NULL;
	watching = bench_hb_watch_start(&w, src.console, dst.console) == 0;
	if (test_run(argv, &out, 300000) == 0) {
		vmm_wait_heartbeats(&dst, 3, 10000);
		size_t len = strlen(out);
		char *last;

		while (len && out[len - 1] == '\n')
			out[--len] = 0;
		last = strrchr(out, '\n'); /* the statistics are the last line */
		res = json_loads(last ? last + 1 : out, 0, NULL);
	}
	if (watching)
		*gap_ms = bench_hb_watch_stop(&w);
out:
	free(out);
	vmm_kill(&src);
	vmm_kill(&dst);
	return res;
}

static double stat_of(json_t *r, const char *key)
{
	json_t *v = json_object_get(json_object_get(r, "stats"), key);

	return json_is_number(v) ? json_number_value(v) : -1;
}

/* A phase of the pause ("downtime" object), or of post-copy's ("postcopy" in it). */
static double phase_of(json_t *r, const char *sub, const char *key)
{
	json_t *d = json_object_get(json_object_get(r, "stats"), "downtime");
	json_t *v = json_object_get(sub ? json_object_get(d, sub) : d, key);

	return json_is_number(v) ? json_number_value(v) : 0;
}

static void bench_migration(const char *certs, const char *name, const char *cmdline,
			    const char *disk, struct mig_medians *med)
{
	double total[MIG_RUNS], down[MIG_RUNS], gap[MIG_RUNS], thr[MIG_RUNS], rounds[MIG_RUNS];
	int n = 0;

	for (int i = 0; i < MIG_RUNS; i++) {
		double g = 0;
		struct mig_run_cfg rc = { "1G", "2", cmdline, disk, 0, NULL };
		json_t *r = migrate_once(certs, &rc, &g);

		if (!r)
			continue;
		total[n] = stat_of(r, "total_ms");
		down[n] = stat_of(r, "downtime_ms");
		thr[n] = stat_of(r, "throughput_mbps");
		rounds[n] = stat_of(r, "rounds");
		gap[n++] = g;
		json_decref(r);
	}
	if (!n) {
		printf("{\"bench\":\"%s\",\"error\":\"no migration succeeded\"}\n", name);
		return;
	}
	bench_emit_many(name, n,
			(const char *[]){ "total_ms", "downtime_ms", "heartbeat_gap_ms",
					  "throughput_mbps", "rounds", NULL },
			(double *[]){ total, down, gap, thr, rounds });
	if (med)
		*med = (struct mig_medians){ bench_median(total, n), bench_median(down, n),
					     bench_median(gap, n) };
}

/* The cost of a disk: the guest with one vCPU dirtying 16 MiB and the other idle, then
 * with the other (vCPU 0) in its disk loop (write, flush, read back 4 MiB) on a
 * virtio-blk image that the migration hands over. */
void bench_migrate_disk(void)
{
	const char *certs = getenv("CME_BENCH_CERTS");
	char img[600];
	int fd;

	if (!certs) {
		printf("{\"bench\":\"migration_1g_disk\",\"skipped\":\"CME_BENCH_CERTS not "
		       "set\"}\n");
		return;
	}
	snprintf(img, sizeof(img), "%s/bench-disk.img", getenv("TMPDIR") ?: "/tmp");
	fd = open(img, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || ftruncate(fd, 8 << 20) < 0) {
		printf("{\"bench\":\"migration_1g_disk\",\"error\":\"cannot create %s\"}\n", img);
		if (fd >= 0)
			close(fd);
		return;
	}
	close(fd);
	bench_migration(certs, "migration_1g_no_disk", "wss_mb=16 vcpus=1", NULL, NULL);
	bench_migration(certs, "migration_1g_disk", "wss_mb=16 disk_mb=4", img, NULL);
	unlink(img);
}

/* ---- CME against QEMU, like for like -------------------------------------------------- */

#define PHASES 12
static const char *const phase_keys[PHASES] = { "pause_ms",  "last_pages_ms", "drain_ms",
						"state_ms",  "digest_ms",     "commit_ms",
						"resume_ms", "sent_ms",	      "pages",
						"requested", "dropped_early", "drop_early_ms" };
#define PHASE_SENT 7
#define PHASE_PC   8 /* from here: post-copy's */

/* CME's medians over MIG_RUNS runs, phases included (pages/requested: post-copy's). */
static void cme_runs(const char *certs, const struct mig_workload *wl, bool postcopy,
		     struct mig_result *res, double phase[PHASES])
{
	double total[MIG_RUNS], down[MIG_RUNS], gap[MIG_RUNS], thr[MIG_RUNS];
	double ph[PHASES][MIG_RUNS];
	const char *pc[] = { "--postcopy", NULL };
	struct mig_run_cfg rc = { wl->mem,	  "1",
				  wl->cmdline,	  NULL,
				  wl->wait_pages, postcopy ? pc : NULL };
	int n = 0;

	memset(phase, 0, PHASES * sizeof(phase[0]));
	for (int i = 0; i < MIG_RUNS; i++) {
		double g = 0;
		json_t *r = migrate_once(certs, &rc, &g);

		if (!r || stat_of(r, "total_ms") < 0) {
			json_decref(r);
			continue;
		}
		total[n] = stat_of(r, "total_ms");
		down[n] = stat_of(r, "downtime_ms");
		thr[n] = stat_of(r, "throughput_mbps");
		gap[n] = g;
		for (int k = 0; k < PHASES; k++)
			ph[k][n] = phase_of(r, k < PHASE_PC ? NULL : "postcopy", phase_keys[k]);
		/* QEMU's downtime is whole milliseconds; this one need not be. */
		if (phase_of(r, NULL, "sent_us") > 0)
			ph[PHASE_SENT][n] = phase_of(r, NULL, "sent_us") / 1000;
		n++;
		json_decref(r);
	}
	*res = (struct mig_result){ .n = n };
	if (!n)
		return;
	res->total_ms = bench_median(total, n);
	res->downtime_ms = bench_median(down, n);
	res->gap_ms = bench_median(gap, n);
	res->mbps = bench_median(thr, n);
	for (int k = 0; k < PHASES; k++)
		phase[k] = bench_median(ph[k], n);
}

static json_t *result_json(const struct mig_result *r)
{
	return json_pack("{s:i,s:f,s:f,s:f,s:f}", "runs", r->n, "total_ms", r->total_ms,
			 "downtime_ms", r->downtime_ms, "heartbeat_gap_ms", r->gap_ms,
			 "throughput_mbps", r->mbps);
}

static double ratio(double a, double b)
{
	return b > 0 ? a / b : 0;
}

/* One line: CME's medians with the pause by phase, QEMU's, the ratios and the targets. */
static void emit_compare(const struct mig_workload *wl, bool postcopy, const struct mig_result *c,
			 const double phase[PHASES], const struct mig_result *q, const char *qerr)
{
	json_t *o = json_pack("{s:s,s:s,s:b,s:i,s:i}", "bench", "migration_vs_qemu", "workload",
			      wl->name, "postcopy", postcopy, "downtime_limit_ms",
			      MIG_BENCH_DOWNTIME_MS, "vcpus", 1);
	json_t *cme = result_json(c), *ph = json_object();
	char *s;

	for (int k = 0; k < PHASES; k++)
		json_object_set_new(ph, phase_keys[k], json_real(phase[k]));
	json_object_set_new(cme, postcopy ? "pause_and_postcopy" : "pause", ph);
	json_object_set_new(o, "cme", cme);
	if (q->n) {
		json_object_set_new(o, "qemu", result_json(q));
		json_object_set_new(o, "ratios",
				    json_pack("{s:f,s:f,s:f,s:f}", "total",
					      ratio(c->total_ms, q->total_ms), "downtime",
					      ratio(c->downtime_ms, q->downtime_ms),
					      "downtime_as_qemu_counts",
					      ratio(phase[PHASE_SENT], q->downtime_ms),
					      "heartbeat_gap", ratio(c->gap_ms, q->gap_ms)));
	} else {
		json_object_set_new(o, "qemu", json_pack("{s:s}", "skipped", qerr));
	}
	json_object_set_new(o, "targets",
			    json_pack("{s:b,s:b,s:b,s:b,s:b}", "downtime_le_50ms",
				      c->n && c->downtime_ms <= 50, "downtime_le_half_qemu",
				      q->n && c->n && c->downtime_ms <= 0.5 * q->downtime_ms,
				      "downtime_as_qemu_counts_le_half_qemu",
				      q->n && c->n && phase[PHASE_SENT] <= 0.5 * q->downtime_ms,
				      "gap_le_2_heartbeats", c->n && c->gap_ms <= 200,
				      "total_le_half_qemu",
				      q->n && c->n && c->total_ms <= 0.5 * q->total_ms));
	if (postcopy)
		json_object_set_new(o, "qemu_mode", json_string("precopy (auto-converge)"));
	s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
	printf("%s\n", s);
	fflush(stdout);
	free(s);
	json_decref(o);
}

/* The raw TLS loopback figure of this run (tlsbench's median), MiB/s; 0 if unknown. */
static double raw_tls_mib_s(const char *certs)
{
	char path[600], *out = NULL;
	double v = 0;

	snprintf(path, sizeof(path), "%s/bench/tlsbench", getenv("CME_BUILD") ?: "build");
	const char *argv[] = { path, certs, NULL };

	if (test_run(argv, &out, 120000) == 0) {
		json_t *j = json_loads(out, JSON_DISABLE_EOF_CHECK, NULL);

		v = json_number_value(json_object_get(j, "median"));
		json_decref(j);
	}
	free(out);
	return v;
}

/* The transport alone: a guest whose 900 MiB were written once, then idle, against raw
 * TLS on the same loopback. This host's speed wanders by a third from minute to minute, so
 * each migration is paired with a raw TLS figure taken just before it, and the ratio is
 * the median of the pairs' ratios. */
static void bench_throughput(const char *certs)
{
	const struct mig_workload wl = { "1g_filled_idle", "1G", "wss_mb=900 passes=1",
					 900ul * 256 };
	struct mig_run_cfg rc = { wl.mem, "1", wl.cmdline, NULL, wl.wait_pages, NULL };
	double raw[THR_RUNS], cme[THR_RUNS], ratio[THR_RUNS];
	int n = 0;

	for (int i = 0; i < THR_RUNS; i++) {
		double g = 0, r = raw_tls_mib_s(certs);
		json_t *res = r > 0 ? migrate_once(certs, &rc, &g) : NULL;

		if (res && stat_of(res, "throughput_mbps") > 0) {
			raw[n] = r;
			cme[n] = stat_of(res, "throughput_mbps") / 8 * 1e6 / (1 << 20);
			ratio[n] = cme[n] / r;
			n++;
		}
		json_decref(res);
	}
	printf("{\"bench\":\"migration_throughput\",\"workload\":\"%s\",\"runs\":%d,"
	       "\"cme_mib_s\":%.1f,\"raw_tls_mib_s\":%.1f,\"ratio\":%.3f,\"ratio_runs\":[",
	       wl.name, n, n ? bench_median(cme, n) : 0, n ? bench_median(raw, n) : 0,
	       n ? bench_median(ratio, n) : 0);
	for (int i = 0; i < n; i++)
		printf("%s%.3f", i ? "," : "", ratio[i]);
	printf("],\"target\":0.7,\"note\":\"bytes on the wire over the whole migration "
	       "(setup to commit) against one raw TLS 1.3 stream measured just before each "
	       "run\"}\n");
	fflush(stdout);
}

void bench_migrate(struct mig_medians *out)
{
	static const struct mig_workload wls[] = {
		{ "1g_idle", "1G", "wss_mb=16 vcpus=0", 0 },
		{ "1g_dirty_256m", "1G", "wss_mb=256", 2ul * 65536 },
		{ "4g_dirty_1g_at_200mib_s", "4G", "wss_mb=1024 dirty_rate=200", 262144 },
	};
	const char *certs = getenv("CME_BENCH_CERTS");

	memset(out, 0, sizeof(*out));
	if (!certs) {
		printf("{\"bench\":\"migration\",\"skipped\":\"CME_BENCH_CERTS not set\"}\n");
		return;
	}
	/* While developing: one workload (CME_BENCH_WORKLOAD=NAME, "throughput" for the
	 * transport alone), one mode (CME_BENCH_POSTCOPY=0|1). make bench runs them all. */
	const char *only = getenv("CME_BENCH_WORKLOAD"), *pc_only = getenv("CME_BENCH_POSTCOPY");

	if (!only || !strcmp(only, "throughput"))
		bench_throughput(certs);
	for (size_t i = 0; i < sizeof(wls) / sizeof(wls[0]); i++) {
		struct mig_result q, c;
		double phase[PHASES];
		char qerr[1024] = "";

		if (only && strcmp(only, wls[i].name))
			continue;
		if (bench_qemu_run(certs, &wls[i], &q, qerr, sizeof(qerr)) < 0)
			q.n = 0;
		for (int pc = 0; pc < 2; pc++) {
			if (pc_only && atoi(pc_only) != pc)
				continue;
			cme_runs(certs, &wls[i], pc, &c, phase);
			emit_compare(&wls[i], pc, &c, phase, &q, qerr);
			if (i == 1 && !pc)
				*out = (struct mig_medians){ c.total_ms, c.downtime_ms, c.gap_ms };
		}
	}
	bench_migrate_disk();
}

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

/* One migration (with disk: the guest's disk on both sides); returns the final JSON object
 * (caller decrefs) or NULL. */
static json_t *migrate_once(const char *certs, const char *cmdline, const char *disk,
			    double *gap_ms)
{
	char tls_src[600], tls_dst[600], to[64], port_s[16];
	struct vmm_proc src, dst;
	struct hb_watch w;
	bool watching = false;
	json_t *res = NULL;
	char *out = NULL;
	const char *sargs[] = { "--mem",     "1G",    "--vcpus", "2",  "--image", test_guest(),
				"--cmdline", cmdline, "--disk",	 disk, NULL };

	snprintf(tls_src, sizeof(tls_src), "%s/127.0.0.1", certs);
	snprintf(tls_dst, sizeof(tls_dst), "%s/127.0.0.2", certs);
	const char *dargs[] = { "--listen", "127.0.0.2:0", "--tls-dir", tls_dst,
				"--disk",   disk,	   NULL };

	if (!disk) /* no --disk: the argument lists end there */
		sargs[8] = dargs[4] = NULL;

	if (vmm_start(&src, sargs) < 0 || !vmm_wait_heartbeats(&src, 40, 60000) ||
	    vmm_start_verb(&dst, "incoming", dargs) < 0)
		goto out;
	snprintf(port_s, sizeof(port_s), "%u", incoming_port(dst.errlog));
	snprintf(to, sizeof(to), "127.0.0.2:%s", port_s);
	const char *argv[] = { test_bin("cme-vmm"), "migrate", "--api", src.api, "--to", to,
			       "--tls-dir",	    tls_src,   NULL };

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

static void bench_migration(const char *certs, const char *name, const char *cmdline,
			    const char *disk, struct mig_medians *med)
{
	double total[MIG_RUNS], down[MIG_RUNS], gap[MIG_RUNS], thr[MIG_RUNS], rounds[MIG_RUNS];
	int n = 0;

	for (int i = 0; i < MIG_RUNS; i++) {
		double g = 0;
		json_t *r = migrate_once(certs, cmdline, disk, &g);

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

void bench_migrate(struct mig_medians *out)
{
	const char *certs = getenv("CME_BENCH_CERTS");

	if (!certs) {
		printf("{\"bench\":\"migration\",\"skipped\":\"CME_BENCH_CERTS not set\"}\n");
		return;
	}
	struct mig_medians cme = { 0 };

	bench_migration(certs, "migration_1g_idle", "wss_mb=16 vcpus=0", NULL, NULL);
	bench_migration(certs, "migration_1g_dirty_256m", "wss_mb=256", NULL, &cme);
	bench_migrate_disk();
	bench_qemu_migrate(certs, cme.total_ms > 0 ? &cme : NULL);
	*out = cme;
}

/* The cluster's own costs: `cmectl vm create` to the guest's first heartbeat, and
 * `cmectl vm migrate` of the same dirtying guest as the bare VMM benchmark, so the
 * cluster's overhead (placement, preparing the target, etcd round trips, the owner
 * transaction) reads in milliseconds against the bare migration of the same run. */
#include "bench.h"
#include "e2e_cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RUNS	3
#define NODE_MB 3072

static double ms_since(uint64_t t0)
{
	return (double)(now_ns() - t0) / 1e6;
}

/* Poll (2 ms) until vm's console on its owner node shows a heartbeat; ms or -1. */
static double until_first_hb(struct cluster *c, const char *vm, uint64_t t0)
{
	char key[128], con[700];

	snprintf(key, sizeof(key), "vms/%s/owner", vm);
	while (ms_since(t0) < 30000) {
		json_t *o = cluster_get(c, key);
		int i = o ? cluster_node_index(c,
					       json_string_value(json_object_get(o, "node")) ?: "")
			  : -1;

		json_decref(o);
		if (i >= 0) {
			cluster_console(c, i, vm, con, sizeof(con));
			if (bench_count_hb(con, NULL) > 0)
				return ms_since(t0);
		}
		sleep_ms(2);
	}
	return -1;
}

static void bench_create(struct cluster *c)
{
	double first[RUNS];
	int n = 0;

	for (int i = 0; i < RUNS; i++) {
		char vm[16], *out = NULL, *err = NULL;
		uint64_t t0 = now_ns();
		int rc;

		snprintf(vm, sizeof(vm), "c%d", i);
		rc = cmectl(c, &out, &err, "vm", "create", vm, "--mem", "256M", "--vcpus", "1",
			    "--image", test_guest(), "--cmdline", "wss_mb=16", "--no-wait", NULL);
		if (!rc && (first[n] = until_first_hb(c, vm, t0)) > 0)
			n++;
		free(out);
		free(err);
		if (cmectl(c, NULL, NULL, "vm", "delete", vm, NULL))
			printf("{\"bench\":\"cluster_create\",\"warning\":\"delete failed\"}\n");
	}
	if (!n) {
		printf("{\"bench\":\"cluster_create_to_first_heartbeat\",\"error\":\"no run\"}\n");
		return;
	}
	bench_emit_many("cluster_create_to_first_heartbeat", n, (const char *[]){ "ms", NULL },
			(double *[]){ first });
}

/* One `cmectl vm migrate` (target chosen by the cluster); fills the figures. */
static int migrate_once(struct cluster *c, double *wall, double *cluster, double *total,
			double *down, double *gap)
{
	char *out = NULL, key[] = "vms/m1/owner", src_con[700], dst_con[700];
	json_t *o = cluster_get(c, key), *r;
	int src =
		o ? cluster_node_index(c, json_string_value(json_object_get(o, "node")) ?: "") : -1;
	int dst = (src + 1) % c->n, rc;
	struct hb_watch w = { 0 };
	uint64_t t0;

	json_decref(o);
	if (src < 0)
		return -1;
	cluster_console(c, src, "m1", src_con, sizeof(src_con));
	cluster_console(c, dst, "m1", dst_con, sizeof(dst_con));
	unlink(dst_con);
	if (bench_hb_watch_start(&w, src_con, dst_con))
		return -1;
	t0 = now_ns();
	rc = cmectl(c, &out, NULL, "vm", "migrate", "m1", "--to", c->node[dst].name, "-o", "json",
		    NULL);
	*wall = ms_since(t0);
	sleep_ms(300); /* a heartbeat or three on the destination closes the gap */
	*gap = bench_hb_watch_stop(&w);
	r = rc ? NULL : json_loads(out, 0, NULL);
	free(out);
	if (!r)
		return -1;
	*cluster = json_number_value(json_object_get(r, "cluster_ms"));
	*total = json_number_value(json_object_get(json_object_get(r, "stats"), "total_ms"));
	*down = json_number_value(json_object_get(json_object_get(r, "stats"), "downtime_ms"));
	json_decref(r);
	return 0;
}

static void bench_cluster_migrate(struct cluster *c, const struct mig_medians *bare)
{
	double wall[RUNS], cl[RUNS], total[RUNS], down[RUNS], gap[RUNS], over[RUNS];
	int n = 0;

	if (cmectl(c, NULL, NULL, "vm", "create", "m1", "--mem", "1G", "--vcpus", "2", "--image",
		   test_guest(), "--cmdline", "wss_mb=256", NULL)) {
		printf("{\"bench\":\"cluster_migration_1g_dirty_256m\",\"error\":\"create\"}\n");
		return;
	}
	sleep_ms(2000); /* the working set is touched once */
	for (int i = 0; i < RUNS; i++)
		if (!migrate_once(c, &wall[n], &cl[n], &total[n], &down[n], &gap[n])) {
			over[n] = wall[n] - total[n];
			n++;
		}
	if (!n) {
		printf("{\"bench\":\"cluster_migration_1g_dirty_256m\",\"error\":\"no run\"}\n");
		return;
	}
	bench_emit_many("cluster_migration_1g_dirty_256m", n,
			(const char *[]){ "cmectl_wall_ms", "cluster_ms", "vmm_total_ms",
					  "downtime_ms", "heartbeat_gap_ms", "overhead_ms", NULL },
			(double *[]){ wall, cl, total, down, gap, over });
	if (bare && bare->total_ms > 0)
		printf("{\"bench\":\"cluster_vs_bare_migration\",\"bare_total_ms\":%.1f,"
		       "\"cluster_wall_ms\":%.1f,\"overhead_ms\":%.1f,\"bare_downtime_ms\":%.1f,"
		       "\"cluster_downtime_ms\":%.1f}\n",
		       bare->total_ms, bench_median(wall, n),
		       bench_median(wall, n) - bare->total_ms, bare->downtime_ms,
		       bench_median(down, n));
}

void bench_cluster(const struct mig_medians *bare)
{
	struct cluster c;

	if (cluster_start(&c, 3, NODE_MB)) {
		printf("{\"bench\":\"cluster\",\"error\":\"the cluster did not start\"}\n");
		cluster_teardown();
		return;
	}
	bench_create(&c);
	bench_cluster_migrate(&c, bare);
	cluster_teardown();
}

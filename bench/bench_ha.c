/* How many nodes one etcd can watch over: N lightweight lease holders (no VMs) in this
 * process renew their leases every TTL/3 from a few threads, as cme-clusterd's keepalive
 * thread does; a watcher on their keys stands in for the leader. Some holders then stop
 * renewing (their host "dies"): detection is the time from that moment to the DELETE of
 * the holder's key. A scale passes when every victim is detected within TTL + 1 s and no
 * healthy holder lost its lease; the scales grow until one fails or 1,000 nodes. */
#include "bench.h"
#include "common.h"
#include "e2e_cluster.h"
#include "etcd.h"
#include "etcd_proc.h"
#include "harness.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TTL_S	   3
#define RENEWERS   4
#define VICTIMS	   5
#define PREFIX	   "/bench/nodes/"
#define MAX_HOLDER 1000

struct holder {
	int64_t lease;
	atomic_bool dead;      /* stopped renewing (a victim) */
	atomic_ullong dead_ns; /* when (monotonic) */
	atomic_ullong gone_ns; /* when the watcher saw its key deleted */
};

struct scale {
	const char *url;
	struct holder h[MAX_HOLDER];
	int n;
	atomic_bool stop;
	atomic_uint lost; /* keepalives that found a healthy lease gone */
	atomic_ullong worst_round_ns;
};

struct renewer {
	struct scale *s;
	int first, step;
};

static struct etcd *client(const char *url)
{
	struct etcd_cfg cfg = { .endpoints = url, .timeout_ms = 5000 };
	struct etcd_err err = { "" };
	struct etcd *e = NULL;

	if (etcd_open(&cfg, &e, &err))
		fprintf(stderr, "bench ha: etcd: %s\n", err.msg);
	return e;
}

static void *renew_main(void *arg)
{
	struct renewer *r = arg;
	struct scale *s = r->s;
	struct etcd *e = client(s->url);

	while (e && !atomic_load(&s->stop)) {
		uint64_t t0 = now_ns(), took;

		for (int i = r->first; i < s->n && !atomic_load(&s->stop); i += r->step) {
			struct etcd_err err = { "" };

			if (atomic_load(&s->h[i].dead))
				continue;
			if (etcd_lease_keepalive(e, s->h[i].lease, NULL, &err) == -ENOENT)
				atomic_fetch_add(&s->lost, 1);
		}
		took = now_ns() - t0;
		if (took > atomic_load(&s->worst_round_ns))
			atomic_store(&s->worst_round_ns, took);
		if (took < TTL_S * 1000000000ull / 3)
			sleep_ms((unsigned)((TTL_S * 1000000000ull / 3 - took) / 1000000));
	}
	etcd_close(e);
	return NULL;
}

static int watch_cb(void *opaque, const struct etcd_event *ev)
{
	struct scale *s = opaque;
	int i;

	if (ev->type != ETCD_EV_DELETE || !ev->kv || sscanf(ev->kv->key, PREFIX "%d", &i) != 1 ||
	    i < 0 || i >= s->n)
		return 0;
	if (!atomic_load(&s->h[i].gone_ns))
		atomic_store(&s->h[i].gone_ns, now_ns());
	return 0;
}

static void *watch_main(void *arg)
{
	struct scale *s = arg;
	struct etcd *e = client(s->url);
	struct etcd_err err = { "" };

	if (e && etcd_watch(e, PREFIX, true, 0, watch_cb, s, &s->stop, &err))
		fprintf(stderr, "bench ha: watch: %s\n", err.msg);
	etcd_close(e);
	return NULL;
}

/* Grant and register n holders. 0 or -1. */
static int populate(struct scale *s, struct etcd *e)
{
	for (int i = 0; i < s->n; i++) {
		struct etcd_err err = { "" };
		char key[64], val[64];

		snprintf(key, sizeof(key), PREFIX "%d", i);
		snprintf(val, sizeof(val), "{\"name\":\"sim-%d\"}", i);
		if (etcd_lease_grant(e, TTL_S, &s->h[i].lease, NULL, &err) ||
		    etcd_put(e, key, val, strlen(val), s->h[i].lease, NULL, &err)) {
			fprintf(stderr, "bench ha: holder %d: %s\n", i, err.msg);
			return -1;
		}
	}
	return 0;
}

/* Kill VICTIMS holders spread over the range and wait for their deletes. Writes each
 * victim's detection (ms) to det; returns how many were detected. */
static int kill_and_detect(struct scale *s, double *det)
{
	int found = 0;

	for (int v = 0; v < VICTIMS; v++) {
		struct holder *h = &s->h[(v * s->n) / VICTIMS];

		atomic_store(&h->dead_ns, now_ns());
		atomic_store(&h->dead, true);
	}
	for (int t = 0; t < (TTL_S + 10) * 1000 && found < VICTIMS; t += 10) {
		sleep_ms(10);
		found = 0;
		for (int v = 0; v < VICTIMS; v++)
			found += atomic_load(&s->h[(v * s->n) / VICTIMS].gone_ns) != 0;
	}
	for (int v = 0; v < VICTIMS; v++) {
		struct holder *h = &s->h[(v * s->n) / VICTIMS];
		uint64_t gone = atomic_load(&h->gone_ns);

		uint64_t dead = atomic_load(&h->dead_ns);

		/* Gone before it stopped renewing: a false expiry, not a detection. */
		det[v] = gone > dead ? (double)(gone - dead) / 1e6 : -1;
	}
	return found;
}

/* One scale; returns true when it passed. */
static bool run_scale(const char *url, int n)
{
	struct scale *s = calloc(1, sizeof(*s));
	struct renewer r[RENEWERS];
	pthread_t rt[RENEWERS], wt;
	struct etcd *e = client(url);
	double det[VICTIMS], worst = 0, round_ms;
	unsigned false_expiries = 0;
	int found = 0;
	bool pass;

	if (!s || !e || (s->url = url, s->n = n, populate(s, e))) {
		free(s);
		etcd_close(e);
		return false;
	}
	pthread_create(&wt, NULL, watch_main, s);
	for (int i = 0; i < RENEWERS; i++) {
		r[i] = (struct renewer){ s, i, RENEWERS };
		pthread_create(&rt[i], NULL, renew_main, &r[i]);
	}
	sleep_ms(TTL_S * 1000); /* a steady state first */
	found = kill_and_detect(s, det);
	for (int i = 0; i < n; i++)
		false_expiries += !atomic_load(&s->h[i].dead) && atomic_load(&s->h[i].gone_ns);
	atomic_store(&s->stop, true);
	for (int i = 0; i < RENEWERS; i++)
		pthread_join(rt[i], NULL);
	pthread_join(wt, NULL);
	for (int i = 0; i < n; i++) {
		struct etcd_err err = { "" };

		if (etcd_lease_revoke(e, s->h[i].lease, &err) && err.msg[0] == 0)
			break;
	}
	for (int v = 0; v < VICTIMS; v++)
		worst = det[v] > worst ? det[v] : worst;
	round_ms = (double)atomic_load(&s->worst_round_ns) / 1e6;
	pass = found == VICTIMS && worst <= (TTL_S + 1) * 1000.0 && !false_expiries &&
	       !atomic_load(&s->lost);
	printf("{\"bench\":\"ha_detection\",\"nodes\":%d,\"ttl_s\":%d,\"victims\":%d,"
	       "\"detected\":%d,\"detect_ms\":{\"median\":%.0f,\"worst\":%.0f},"
	       "\"false_expiries\":%u,\"renew_round_worst_ms\":%.0f,\"pass\":%s}\n",
	       n, TTL_S, VICTIMS, found, bench_median(det, VICTIMS), worst,
	       false_expiries + atomic_load(&s->lost), round_ms, pass ? "true" : "false");
	fflush(stdout);
	etcd_close(e);
	free(s);
	return pass;
}

void bench_ha_detection(void)
{
	static const int scales[] = { 10, 100, 250, 500, 1000 };
	struct etcd_proc etcd = { 0 };
	int largest = 0;

	if (etcd_proc_start(&etcd)) {
		printf("{\"bench\":\"ha_detection\",\"skipped\":\"etcd did not start\"}\n");
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(scales); i++) {
		if (!run_scale(etcd.url, scales[i]))
			break;
		largest = scales[i];
	}
	printf("{\"bench\":\"ha_detection_capacity\",\"ttl_s\":%d,\"nodes_detected_within_ttl_"
	       "plus_1s\":%d,\"tried_up_to\":%d}\n",
	       TTL_S, largest, scales[ARRAY_SIZE(scales) - 1]);
	fflush(stdout);
	etcd_proc_kill(&etcd);
}

/* ---- failover with real guests (needs KVM) ------------------------------------------ */

#define FAILOVER_RUNS 5
#define NODE_MB	      1536

static int owner_epoch(struct cluster *c, const char *vm, long long *epoch)
{
	return cluster_owner(c, vm, epoch);
}

static bool beats_on(struct cluster *c, int node, const char *vm)
{
	char con[700];

	cluster_console(c, node, vm, con, sizeof(con));
	return bench_count_hb(con, NULL) > 0;
}

/* One failover: vm runs; its host is killed (daemon and VMMs, kill -9); detection = until
 * the owner record moves, failover = until the first heartbeat on the new host. The lost
 * node is started again afterwards. Returns false when something did not happen. */
static bool one_failover(struct cluster *c, const char *vm, double *detect_ms, double *fail_ms)
{
	char *out = NULL, *err = NULL;
	long long epoch = 0;
	int from = -1, to = -1, rc;
	uint64_t t0;

	rc = cmectl(c, &out, &err, "vm", "create", vm, "--mem", "256M", "--vcpus", "1", "--image",
		    test_guest(), "--cmdline", "wss_mb=16", NULL);
	if (rc)
		fprintf(stderr, "ha_failover %s: %s", vm, err ? err : "");
	free(out);
	free(err);
	for (int t = 0; !rc && t < 30000 && (from = owner_epoch(c, vm, NULL)) < 0; t += 10)
		sleep_ms(10);
	if (rc || from < 0) {
		fprintf(stderr, "ha_failover %s: not created or never placed (cmectl %d)\n", vm,
			rc);
		return false;
	}
	for (int t = 0; t < 30000 && !beats_on(c, from, vm); t += 10)
		sleep_ms(10);
	t0 = now_ns();
	cluster_node_kill(c, from);
	cluster_node_kill_vmms(c, from);
	*detect_ms = *fail_ms = -1;
	while (now_ns() - t0 < 60000000000ull) {
		to = owner_epoch(c, vm, &epoch);
		if (*detect_ms < 0 && to >= 0 && to != from && epoch == 2)
			*detect_ms = (double)(now_ns() - t0) / 1e6;
		if (*detect_ms >= 0 && beats_on(c, to, vm)) {
			*fail_ms = (double)(now_ns() - t0) / 1e6;
			break;
		}
		sleep_ms(5);
	}
	cluster_node_start(c, from, NULL);
	/* Gone before the next run: two vCPUs per node hold few guests. */
	out = err = NULL;
	if (cmectl(c, &out, &err, "vm", "delete", vm, NULL))
		fprintf(stderr, "ha_failover %s: delete: %s", vm, err ? err : "");
	free(out);
	free(err);
	if (*fail_ms < 0)
		fprintf(stderr, "ha_failover %s: %s within 60 s (owner %d, epoch %lld)\n", vm,
			*detect_ms < 0 ? "not restarted" : "no heartbeat after the restart", to,
			epoch);
	return *fail_ms >= 0;
}

static void failover_at(unsigned ttl_s)
{
	struct cluster c;
	char extra[64], vm[16];
	double detect[FAILOVER_RUNS], fail[FAILOVER_RUNS], worst = 0;
	int n = 0;

	snprintf(extra, sizeof(extra), "lease_ttl = %u\n", ttl_s);
	if (cluster_start_conf(&c, 3, NODE_MB, extra)) {
		printf("{\"bench\":\"ha_failover\",\"ttl_s\":%u,\"skipped\":\"cluster did not "
		       "start\"}\n",
		       ttl_s);
		cluster_teardown();
		return;
	}
	for (int i = 0; i < FAILOVER_RUNS; i++) {
		snprintf(vm, sizeof(vm), "f%d", i);
		if (one_failover(&c, vm, &detect[n], &fail[n])) {
			worst = fail[n] > worst ? fail[n] : worst;
			n++;
		}
	}
	cluster_teardown();
	printf("{\"bench\":\"ha_failover\",\"ttl_s\":%u,\"runs\":%d,\"detect_ms\":{\"median\":%."
	       "0f},\"failover_ms\":{\"median\":%.0f,\"worst\":%.0f},\"target_ms\":%u}\n",
	       ttl_s, n, bench_median(detect, n), bench_median(fail, n), worst,
	       ttl_s * 1000 + 2000);
	fflush(stdout);
}

void bench_ha_failover(void)
{
	static const unsigned ttls[] = { 2, 3, 5, 10 };
	const char *only = getenv("CME_BENCH_HA_TTL"); /* one TTL, while developing */

	for (size_t i = 0; i < ARRAY_SIZE(ttls); i++)
		if (!only || (unsigned)atoi(only) == ttls[i])
			failover_at(ttls[i]);
}

/* The HA soak (make soak; skipped by make test): three cme-clusterd, two self-checking
 * guests, and for up to 5 minutes (at least 20 rounds) a fault at a random moment on the
 * host of a random guest — host loss (kill -9 of the daemon and its VMMs), a hung daemon
 * (SIGSTOP), a frozen host (SIGSTOP of everything), an etcd restart, a partition (node c
 * lives in a network namespace whose link is cut) — each waited out
 * until the guest beats again, then the host restored. A checker thread polls every
 * console of every VM every 20 ms: two consoles of one VM growing in the same poll are two
 * copies running at once (a violation). The guests' own page checks find lost pages. */
#include "e2e_cluster.h"
#include "e2e.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NODE_MEM_MB 1536
#define WAIT_MS	    60000
#define MIN_ROUNDS  20
#define MAX_SOAK_MS (5 * 60 * 1000)
#define NVMS	    2

static struct cluster C;
static const char *const vms[NVMS] = { "s1", "s2" };

struct checker {
	atomic_bool stop;
	atomic_uint violations;
	int last[NVMS][CL_MAX_NODES];
	pthread_t thread;
};

static int beats(int node, const char *vm)
{
	char con[700];

	cluster_console(&C, node, vm, con, sizeof(con));
	return cluster_heartbeats(con, NULL, 0);
}

static void *check_main(void *arg)
{
	struct checker *k = arg;

	while (!atomic_load(&k->stop)) {
		for (int v = 0; v < NVMS; v++) {
			int growing = 0;

			for (int n = 0; n < C.n; n++) {
				int b = beats(n, vms[v]);

				growing += b > k->last[v][n] && k->last[v][n] >= 0;
				k->last[v][n] = b; /* a shorter file: a new life, a new baseline */
			}
			if (growing > 1) {
				atomic_fetch_add(&k->violations, 1);
				printf("\n    VIOLATION: %s beats on %d nodes at once\n", vms[v],
				       growing);
			}
		}
		sleep_ms(20);
	}
	return NULL;
}

/* The node whose console of vm grows (the running copy), waiting up to WAIT_MS; -1. */
static int running_on(const char *vm)
{
	for (int t = 0; t < WAIT_MS; t += 200) {
		int before[CL_MAX_NODES];

		for (int n = 0; n < C.n; n++)
			before[n] = beats(n, vm);
		sleep_ms(200);
		for (int n = 0; n < C.n; n++)
			if (beats(n, vm) > before[n])
				return n;
	}
	return -1;
}

static int corrupt_total(void)
{
	int bad = 0;

	for (int v = 0; v < NVMS; v++)
		for (int n = 0; n < C.n; n++) {
			char con[700];

			cluster_console(&C, n, vms[v], con, sizeof(con));
			bad += cluster_console_corrupt(con);
		}
	return bad;
}

static bool all_registered(void)
{
	for (int t = 0; t < WAIT_MS; t += 100, sleep_ms(100)) {
		int up = 0;

		for (int n = 0; n < C.n; n++) {
			char key[64];
			json_t *j;

			snprintf(key, sizeof(key), "nodes/%s", C.node[n].name);
			j = cluster_get(&C, key);
			up += j != NULL;
			json_decref(j);
		}
		if (up == C.n)
			return true;
	}
	return false;
}

enum fault { HOST_LOSS, HUNG_DAEMON, FROZEN_HOST, ETCD_RESTART, PARTITION, NFAULTS };
static const char *const fault_names[] = { "host-loss", "hung-daemon", "frozen-host",
					   "etcd-restart", "partition" };

/* Inject f on node (the host of vm), wait until vm beats again, restore. */
static bool round_once(enum fault f, int node, const char *vm)
{
	bool ok;

	sleep_ms((unsigned)(rand() % 1500)); /* a random moment of the guest's work */
	switch (f) {
	case HOST_LOSS:
		cluster_node_kill(&C, node);
		cluster_node_kill_vmms(&C, node);
		break;
	case HUNG_DAEMON: kill(C.node[node].pid, SIGSTOP); break;
	case FROZEN_HOST: cluster_node_signal_all(&C, node, SIGSTOP); break;
	case PARTITION:
		if (netns_cut(&C.ns))
			return false;
		break;
	default: etcd_proc_kill(&C.etcd); break;
	}
	if (f == ETCD_RESTART) {
		sleep_ms(2000 + (unsigned)(rand() % 3000));
		ok = etcd_proc_restart(&C.etcd) == 0;
	} else {
		long long epoch0 = 0, epoch = 0;
		int to = cluster_owner(&C, vm, &epoch0);

		(void)to;
		for (int t = 0; t < WAIT_MS; t += 100, sleep_ms(100))
			if ((to = cluster_owner(&C, vm, &epoch)) >= 0 && epoch > epoch0)
				break;
		ok = epoch > epoch0;
		if (f == HOST_LOSS)
			ok = cluster_node_start(&C, node, NULL) == 0 && ok;
		else if (f == HUNG_DAEMON)
			kill(C.node[node].pid, SIGCONT);
		else if (f == PARTITION)
			ok = netns_restore(&C.ns) == 0 && ok;
		else
			cluster_node_signal_all(&C, node, SIGCONT);
	}
	return ok && running_on(vm) >= 0 && all_registered();
}

static void test_soak(void)
{
	struct checker k = { 0 };
	unsigned faults[NFAULTS] = { 0 }, rounds = 0, failed = 0;
	uint64_t t0;
	char why[256];

	if (!getenv("CME_SOAK")) {
		test_skip("the soak runs with make soak (CME_SOAK=1)");
		return;
	}
	if (!test_have_kvm(why, sizeof(why))) {
		test_skip("%s", why);
		return;
	}
	/* Node c in a network namespace, for the partition fault; without root, no partition. */
	if (cluster_start_netns(&C, 3, NODE_MEM_MB, NULL, 2, why, sizeof(why)) == -EPERM) {
		printf("\n    no partition faults: %s\n", why);
		CU_ASSERT_FATAL(cluster_start(&C, 3, NODE_MEM_MB) == 0);
	}
	CU_ASSERT_FATAL(C.n == 3 && all_registered());
	for (int v = 0; v < NVMS; v++) {
		char *out = NULL, *err = NULL;
		int rc = cmectl(&C, &out, &err, "vm", "create", vms[v], "--mem", "256M", "--vcpus",
				"1", "--image", test_guest(), "--cmdline", "wss_mb=32", NULL);

		CU_ASSERT_EQUAL_FATAL(rc, 0);
		free(out);
		free(err);
	}
	for (int v = 0; v < NVMS; v++)
		for (int n = 0; n < C.n; n++)
			k.last[v][n] = beats(n, vms[v]);
	pthread_create(&k.thread, NULL, check_main, &k);
	srand((unsigned)now_ns());
	t0 = now_ns();
	while (rounds < MIN_ROUNDS || (now_ns() - t0) / 1000000 < MAX_SOAK_MS / 2) {
		const char *vm = vms[rand() % NVMS];
		enum fault f = (enum fault)(rand() % NFAULTS);
		int node = running_on(vm);

		if ((now_ns() - t0) / 1000000 > MAX_SOAK_MS || node < 0)
			break;
		if (f == PARTITION && node != C.ns_node) /* only node c can be cut off */
			f = node == 0 ? FROZEN_HOST : HOST_LOSS;
		faults[f]++;
		rounds++;
		if (!round_once(f, node, vm)) {
			failed++;
			printf("\n    round %u (%s on %s): the guest did not come back\n", rounds,
			       fault_names[f], C.node[node].name);
			break;
		}
	}
	atomic_store(&k.stop, true);
	pthread_join(k.thread, NULL);
	printf("\n    soak: %u rounds in %llu s; faults: host-loss %u, hung-daemon %u, "
	       "frozen-host %u, etcd-restart %u, partition %u; HA restarts seen %s; violations %u; "
	       "lost pages %d\n",
	       rounds, (unsigned long long)((now_ns() - t0) / 1000000000ull), faults[0], faults[1],
	       faults[2], faults[3], faults[4],
	       cluster_has_event(&C, "vm-ha-restart", NULL) ? "yes" : "no",
	       atomic_load(&k.violations), corrupt_total());
	CU_ASSERT_EQUAL(failed, 0);
	CU_ASSERT(rounds >= MIN_ROUNDS);
	CU_ASSERT_EQUAL(atomic_load(&k.violations), 0);
	CU_ASSERT_EQUAL(corrupt_total(), 0);
}

void suite_soak(void)
{
	static const struct test_case cases[] = {
		{ "HA soak: random faults, never two copies, no lost pages", test_soak },
		{ NULL, NULL },
	};
	test_add_suite("soak", cases);
}

/* End-to-end: backups in the cluster. The node that runs a VM takes its backup live into
 * the store of its configuration (cmectl vm backup), the guest beating on in the same VMM;
 * a schedule fires by itself and prune keeps the newest N; the store then restores the
 * guest in a VMM of its own, which continues from the backup point undamaged. */
#include "cluster_vm.h"
#include "e2e.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char store[700], key[700];

/* A key and an empty store, as an operator makes them, and the daemons' lines for them. */
static void make_store(char *conf, size_t len)
{
	const char *dir = test_tmpdir();
	char *out = NULL;

	snprintf(store, sizeof(store), "%s/store", dir);
	snprintf(key, sizeof(key), "%s/backup.key", dir);
	const char *keygen[] = { test_bin("cmectl"), "backup", "keygen", key, NULL };
	const char *init[] = {
		test_bin("cmectl"), "backup", "init", "--store", store, "--key", key, NULL
	};

	CU_ASSERT_EQUAL_FATAL(test_run(keygen, &out, 10000), 0);
	free(out);
	CU_ASSERT_EQUAL_FATAL(test_run(init, &out, 10000), 0);
	free(out);
	snprintf(conf, len, "backup_stores = main:%s\nbackup_key = %s\n", store, key);
}

/* How many backups of vm the store lists. */
static size_t listed(const char *vm)
{
	const char *argv[] = { test_bin("cmectl"),
			       "-o",
			       "json",
			       "backup",
			       "ls",
			       "--store",
			       store,
			       "--key",
			       key,
			       "--vm",
			       vm,
			       NULL };
	char *out = NULL;
	json_t *j;
	size_t n;

	CU_ASSERT_EQUAL(test_run(argv, &out, 60000), 0);
	j = json_loads(out ?: "", 0, NULL);
	n = json_array_size(j);
	json_decref(j);
	free(out);
	return n;
}

/* Until the backup record of vm is no longer requested or running. */
static bool backup_settled(const char *vm)
{
	for (int i = 0; i < WAIT_MS / 100; i++) {
		json_t *b = cluster_get(&C, "vms/vm1/backup");
		const char *ph = json_string_value(json_object_get(b, "phase")) ?: "";
		bool active = !strcmp(ph, "requested") || !strcmp(ph, "running");

		json_decref(b);
		if (!active)
			return true;
		sleep_ms(100);
	}
	(void)vm;
	return false;
}

/* Backed up on demand and by a schedule; restored on the other node. */
static void test_cluster_backup(void)
{
	char conf[1600], con[1024], *out = NULL, *err = NULL;
	uint64_t seq;
	pid_t pid;
	int node, rc;

	REQUIRE_KVM();
	make_store(conf, sizeof(conf));
	CU_ASSERT_FATAL(cluster_start_conf(&C, 2, NODE_MEM_MB, conf) == 0);
	create_vm("vm1", "256M", "wss_mb=32 dirty_rate=16");
	node = owner_of("vm1", NULL);
	CU_ASSERT_FATAL(node >= 0);
	CU_ASSERT_TRUE(wait_heartbeats(node, "vm1", 5));
	pid = cluster_vmm_pid(&C, node, "vm1");

	/* On demand: the owner's VMM takes it while the guest runs on. */
	rc = cmectl(&C, &out, &err, "vm", "backup", "vm1", NULL);
	CU_ASSERT_PTR_NOT_NULL(strstr(out ?: "", "done on node-"));
	cluster_expect_ok("vm backup", rc, out, err);
	CU_ASSERT_TRUE(cluster_has_event(&C, "backup-done", "vm1"));
	CU_ASSERT_EQUAL(listed("vm1"), 1);
	CU_ASSERT_EQUAL(cluster_vmm_pid(&C, node, "vm1"), pid);
	CU_ASSERT_TRUE(wait_heartbeats(node, "vm1", last_seq(node, "vm1", &seq, NULL) + 3));
	/* No such VM; a store the nodes do not have: refused, with the reason. */
	rc = cmectl(&C, &out, &err, "vm", "backup", "nosuchvm", NULL);
	CU_ASSERT_EQUAL(rc, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err ?: "", "unknown vm nosuchvm"));
	free(out);
	free(err);
	rc = cmectl(&C, &out, &err, "vm", "backup", "vm1", "--store", "nosuch", NULL);
	CU_ASSERT_EQUAL(rc, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err ?: "", "has no backup store \"nosuch\""));
	free(out);
	free(err);

	/* A schedule fires by itself, and prune keeps the newest two. */
	rc = cmectl(&C, &out, &err, "backup", "schedule", "vm1", "--every", "1s", "--keep", "2",
		    NULL);
	cluster_expect_ok("backup schedule", rc, out, err);
	for (int i = 0; i < WAIT_MS / 100 && !cluster_has_event(&C, "backup-pruned", "vm1"); i++)
		sleep_ms(100);
	CU_ASSERT_TRUE(cluster_has_event(&C, "backup-pruned", "vm1"));
	rc = cmectl(&C, &out, &err, "backup", "schedule", "vm1", "--off", NULL);
	cluster_expect_ok("backup schedule --off", rc, out, err);
	CU_ASSERT_TRUE(backup_settled("vm1"));
	CU_ASSERT_EQUAL(listed("vm1"), 2);
	CU_ASSERT_EQUAL(cluster_vmm_pid(&C, node, "vm1"), pid); /* the same VMM throughout */
	CU_ASSERT_EQUAL(copies("vm1"), 1);
	cluster_console(&C, node, "vm1", con, sizeof(con));
	CU_ASSERT_FALSE(cluster_console_corrupt(con));

	/* Stopped, then restored from its newest backup on the other node: the guest goes on
	 * from inside what it did before, its own checks passing. */
	last_seq(node, "vm1", &seq, NULL);
	rc = cmectl(&C, &out, &err, "vm", "stop", "vm1", NULL);
	cluster_expect_ok("vm stop", rc, out, err);
	rc = cmectl(&C, &out, &err, "vm", "restore", "vm1", "--from", "vm1", "--to",
		    C.node[1 - node].name, NULL);
	CU_ASSERT_PTR_NOT_NULL(strstr(out ?: "", "restored from backup vm1"));
	cluster_expect_ok("vm restore", rc, out, err);
	CU_ASSERT_EQUAL(owner_of("vm1", NULL), 1 - node);
	CU_ASSERT_TRUE(wait_heartbeats(1 - node, "vm1", 3));
	CU_ASSERT_TRUE(cluster_has_event(&C, "vm-restored", "vm1"));
	rc = cmectl(&C, &out, &err, "vm", "show", "vm1", NULL);
	CU_ASSERT_PTR_NOT_NULL(strstr(out ?: "", "restore:   done from vm1"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out ?: "", "backup:    done vm1/"));
	cluster_expect_ok("vm show", rc, out, err);
	uint64_t first = 0, now = 0;

	last_seq(1 - node, "vm1", &now, &first);
	CU_ASSERT(first > 1);	     /* not a fresh boot */
	CU_ASSERT(first <= seq + 1); /* from a backup taken before the stop */
	cluster_console(&C, 1 - node, "vm1", con, sizeof(con));
	CU_ASSERT_FALSE(cluster_console_corrupt(con));
	CU_ASSERT_EQUAL(copies("vm1"), 1);
	/* A backup that is not there: refused by the node, and the VM is stopped again. */
	rc = cmectl(&C, &out, &err, "vm", "stop", "vm1", NULL);
	cluster_expect_ok("vm stop", rc, out, err);
	rc = cmectl(&C, &out, &err, "vm", "restore", "vm1", "--from", "vm1/nosuch", NULL);
	CU_ASSERT_EQUAL(rc, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err ?: "", "no backup vm1/nosuch"));
	free(out);
	free(err);
	json_t *spec = cluster_get(&C, "vms/vm1/spec");

	CU_ASSERT_TRUE(json_is_false(json_object_get(spec, "running")));
	json_decref(spec);
}

/* Site A backs vm1 up and syncs its store to the DR site's; site A is lost; site B (its
 * own etcd, its own CA) restores vm1 from the DR store, and the guest goes on from the
 * backup point. */
static void test_disaster_recovery(void)
{
	char conf[1600], dr[700], con[1024], *out = NULL, *err = NULL;
	uint64_t seq, first = 0, now = 0;
	int node, rc;

	REQUIRE_KVM();
	make_store(conf, sizeof(conf));
	CU_ASSERT_FATAL(cluster_start_conf(&C, 1, NODE_MEM_MB, conf) == 0);
	create_vm("vm1", "256M", "wss_mb=32 dirty_rate=16");
	CU_ASSERT_TRUE(wait_heartbeats(0, "vm1", 5));
	rc = cmectl(&C, &out, &err, "vm", "backup", "vm1", NULL);
	cluster_expect_ok("vm backup", rc, out, err);
	last_seq(0, "vm1", &seq, NULL);
	snprintf(dr, sizeof(dr), "%s/dr-store", test_tmpdir());
	const char *sync[] = { test_bin("cmectl"),
			       "backup",
			       "sync",
			       "--store",
			       store,
			       "--key",
			       key,
			       "--to",
			       dr,
			       NULL };
	rc = test_run(sync, &out, 120000);
	CU_ASSERT_EQUAL(rc, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out ?: "", "1 backups copied"));
	free(out);
	out = NULL;
	cluster_teardown(); /* site A is gone: its etcd, its nodes, its VMMs */

	snprintf(conf, sizeof(conf), "backup_stores = dr:%s\nbackup_key = %s\n", dr, key);
	CU_ASSERT_FATAL(cluster_start_conf(&C, 2, NODE_MEM_MB, conf) == 0);
	rc = cmectl(&C, &out, &err, "vm", "create", "vm1", "--mem", "256M", "--vcpus", "1",
		    "--image", test_guest(), "--cmdline", "wss_mb=32 dirty_rate=16", "--stopped",
		    NULL);
	cluster_expect_ok("vm create --stopped", rc, out, err);
	rc = cmectl(&C, &out, &err, "vm", "restore", "vm1", "--from", "vm1", "--store", "dr", NULL);
	cluster_expect_ok("vm restore (site B)", rc, out, err);
	node = owner_of("vm1", NULL);
	CU_ASSERT_FATAL(node >= 0);
	CU_ASSERT_TRUE(wait_heartbeats(node, "vm1", 3));
	last_seq(node, "vm1", &now, &first);
	CU_ASSERT(first > 1);
	CU_ASSERT(first <= seq + 1);
	cluster_console(&C, node, "vm1", con, sizeof(con));
	CU_ASSERT_FALSE(cluster_console_corrupt(con));
	CU_ASSERT_EQUAL(copies("vm1"), 1);
}

/* A restore record left "running" that no VMM carries (its daemon restarted before the
 * restored guest ran, and that VMM is gone): the node it names fails it with the reason,
 * and the VM may be restored again. Once it stayed "running" for ever. The record is
 * written by hand: no store or KVM needed. */
static void test_restore_orphaned(void)
{
	char rec[300], rkey[64], *out = NULL, *err = NULL;
	json_t *r;
	int node = -1, rc;

	CU_ASSERT_FATAL(cluster_start(&C, 2, NODE_MEM_MB) == 0);
	rc = cmectl(&C, &out, &err, "vm", "create", "vm1", "--mem", "128M", "--vcpus", "1",
		    "--image", test_guest(), "--no-wait", NULL);
	cluster_expect_ok("vm create", rc, out, err);
	for (int t = 0; t < 30000 && (node = owner_of("vm1", NULL)) < 0; t += 100)
		sleep_ms(100);
	CU_ASSERT_FATAL(node >= 0);
	snprintf(rec, sizeof(rec),
		 "{\"id\":\"0011223344556677\",\"phase\":\"running\",\"from\":\"vm1\","
		 "\"node\":\"%s\"}",
		 C.node[node].name);
	snprintf(rkey, sizeof(rkey), "vms/vm1/restore");
	CU_ASSERT_EQUAL_FATAL(cluster_put(&C, rkey, rec), 0);
	CU_ASSERT_TRUE(cluster_wait_field(&C, rkey, "phase", "failed", 30000));
	r = cluster_get(&C, rkey);
	CU_ASSERT_PTR_NOT_NULL(strstr(json_string_value(json_object_get(r, "error")) ?: "",
				      "no VMM of this restore"));
	json_decref(r);
}

void suite_backup_cluster(void)
{
	static const struct test_case cases[] = {
		{ "cluster backups: on demand live, a schedule that prunes to N, restore elsewhere",
		  test_cluster_backup },
		{ "disaster recovery: a second cluster restores from a synced store",
		  test_disaster_recovery },
		{ "a restore left running with no VMM of it: failed, restorable again",
		  test_restore_orphaned },
		{ NULL, NULL },
	};

	test_on_teardown(cluster_teardown);
	test_add_suite("backup", cases);
}

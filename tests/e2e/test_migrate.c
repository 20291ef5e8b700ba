/* End-to-end: live migration in the cluster — pre-copy of a dirtying guest, a VM with a
 * disk, post-copy and its broken case, the source daemon dying after the commit. */
#include "cluster_vm.h"
#include "e2e.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

/* A cluster of n nodes running vm1 (mem, cmdline) that beats: its node and owner epoch,
 * and the next node as the target. The caller checked for KVM (REQUIRE_KVM). */
static void start_vm1(int n, const char *mem, const char *cmdline, int *src, long long *e0,
		      int *dst)
{
	CU_ASSERT_FATAL(cluster_start(&C, n, NODE_MEM_MB) == 0);
	create_vm("vm1", mem, cmdline);
	*src = owner_of("vm1", e0);
	CU_ASSERT_FATAL(*src >= 0);
	CU_ASSERT_TRUE(wait_heartbeats(*src, "vm1", 5));
	*dst = (*src + 1) % C.n;
}

static void test_migrate_dirtying(void)
{
	char *out = NULL, *err = NULL;
	long long e0, e1;
	int src, dst, rc;

	REQUIRE_KVM();
	start_vm1(3, "512M", "wss_mb=128 dirty_rate=64", &src, &e0, &dst);
	rc = cmectl(&C, &out, &err, "vm", "migrate", "vm1", "--to", C.node[dst].name, NULL);
	cluster_expect_ok("vm migrate", rc, out, err);
	CU_ASSERT_EQUAL(owner_of("vm1", &e1), dst);
	CU_ASSERT_EQUAL(e1, e0 + 1);
	CU_ASSERT_TRUE(cluster_wait_field(&C, "migrations/vm1", "phase", "done", WAIT_MS));
	CU_ASSERT_TRUE(wait_running("vm1"));
	assert_continued("vm1", src, dst);
	CU_ASSERT_TRUE(gone_from(src, "vm1"));
	CU_ASSERT_EQUAL(settled_copies("vm1"), 1);

	/* At once again, the target chosen by the cluster: "done" meant running there. */
	rc = cmectl(&C, &out, &err, "vm", "migrate", "vm1", NULL);
	cluster_expect_ok("vm migrate (again)", rc, out, err);
	CU_ASSERT_NOT_EQUAL(owner_of("vm1", &e1), dst);
	CU_ASSERT_EQUAL(e1, e0 + 2);
	CU_ASSERT_TRUE(wait_running("vm1"));
	CU_ASSERT_EQUAL(settled_copies("vm1"), 1);
	dst = owner_of("vm1", NULL);

	/* A migration to the node it runs on, or to an unknown node, is refused. */
	rc = cmectl(&C, &out, &err, "vm", "migrate", "vm1", "--to", C.node[dst].name, NULL);
	CU_ASSERT_EQUAL(rc, 1);
	free(out);
	free(err);
	rc = cmectl(&C, &out, &err, "vm", "migrate", "vm1", "--to", "node-z", NULL);
	CU_ASSERT_EQUAL(rc, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "node-z"));
	free(out);
	free(err);
}

static void test_source_dies_after_commit(void)
{
	char *out = NULL, *err = NULL;
	uint64_t before, after, seq;
	long long e0, e1;
	int src, dst, rc;
	pid_t spid;

	START_CLUSTER(3);
	create_vm("vm1", "256M", "wss_mb=64 dirty_rate=32");
	src = owner_of("vm1", &e0);
	CU_ASSERT_FATAL(src >= 0);
	CU_ASSERT_TRUE(wait_heartbeats(src, "vm1", 3));
	spid = cluster_vmm_pid(&C, src, "vm1");
	/* The source daemon restarts (re-adopting its VMM) with a fault armed: it exits
	 * right after the owner transaction, before telling its VMM. */
	cluster_node_kill(&C, src);
	CU_ASSERT_FATAL(cluster_node_start(&C, src, "CME_CLUSTERD_FAULT=exit-after-commit") == 0);
	sleep_ms(1500);
	dst = (src + 1) % C.n;
	rc = cmectl(&C, &out, &err, "vm", "migrate", "vm1", "--to", C.node[dst].name, "--no-wait",
		    NULL);
	cluster_expect_ok("vm migrate --no-wait", rc, out, err);
	CU_ASSERT_EQUAL(cluster_node_wait(&C, src, WAIT_MS), 99);
	CU_ASSERT_EQUAL(owner_of("vm1", &e1), dst);
	CU_ASSERT_EQUAL(e1, e0 + 1);
	/* The destination runs the guest on the owner record alone. */
	CU_ASSERT_TRUE(wait_running("vm1"));
	assert_continued("vm1", src, dst);
	/* The source copy never resumes. */
	last_seq(src, "vm1", &before, NULL);
	sleep_ms(1500);
	last_seq(src, "vm1", &after, NULL);
	CU_ASSERT_EQUAL(before, after);
	/* Its daemon comes back, reads the owner record and ends the source copy. */
	CU_ASSERT_FATAL(cluster_node_start(&C, src, NULL) == 0);
	for (int t = 0; t < WAIT_MS && cluster_vmm_pid(&C, src, "vm1") == spid; t += 100)
		sleep_ms(100);
	CU_ASSERT_TRUE(gone_from(src, "vm1"));
	last_seq(src, "vm1", &seq, NULL);
	CU_ASSERT_EQUAL(seq, before);
	CU_ASSERT_EQUAL(settled_copies("vm1"), 1);
	CU_ASSERT_TRUE(cluster_wait_field(&C, "migrations/vm1", "phase", "done", WAIT_MS));
}

/* A VM with a disk migrates with it: the target's VMM locks the image once the source let
 * it go, the guest's disk loop and heartbeats go on there undamaged, and the target's
 * epoch is recorded on the image. */
static void test_migrate_disk(void)
{
	char img[600], con[700], want[64], epoch[8] = "", *out = NULL, *err = NULL, *text;
	unsigned long pass = 0;
	long long e0, e1;
	int src, dst, rc;

	START_CLUSTER(2);
	if (!cluster_disk_image(img, sizeof(img)))
		return;
	rc = cmectl(&C, &out, &err, "vm", "create", "vm1", "--mem", "256M", "--vcpus", "2",
		    "--image", test_guest(), "--cmdline", "wss_mb=8 disk_mb=4", "--disk", img,
		    NULL);
	cluster_expect_ok("vm create --disk", rc, out, err);
	src = owner_of("vm1", &e0);
	CU_ASSERT_FATAL(src >= 0);
	cluster_console(&C, src, "vm1", con, sizeof(con));
	CU_ASSERT_FATAL(test_wait_file_has(con, "DISK pass=1 blocks=1024 flushed", WAIT_MS));
	dst = (src + 1) % C.n;
	rc = cmectl(&C, &out, &err, "vm", "migrate", "vm1", "--to", C.node[dst].name, NULL);
	cluster_expect_ok("vm migrate", rc, out, err);
	CU_ASSERT_EQUAL(owner_of("vm1", &e1), dst);
	CU_ASSERT_EQUAL(e1, e0 + 1);
	CU_ASSERT_TRUE(wait_running("vm1"));
	CU_ASSERT_TRUE(gone_from(src, "vm1"));
	text = test_read_file(con);
	for (char *at = text; (at = strstr(at, "DISK pass=")); at += 10)
		pass = strtoul(at + 10, NULL, 10);
	free(text);
	cluster_console(&C, dst, "vm1", con, sizeof(con));
	snprintf(want, sizeof(want), "DISK pass=%lu blocks=1024 flushed", pass + 2);
	CU_ASSERT(test_wait_file_has(con, want, 2 * WAIT_MS));
	CU_ASSERT(getxattr(img, "user.cme.epoch", epoch, sizeof(epoch) - 1) > 0);
	CU_ASSERT_EQUAL(strtoll(epoch, NULL, 10), e1);
	assert_continued("vm1", src, dst);
}

/* The post-copy statistics of the finished migration of vm (-1 when there are none). */
static long long postcopy_pages(const char *vm)
{
	char key[128];
	json_t *m, *pc;
	long long n = -1;

	snprintf(key, sizeof(key), "migrations/%s", vm);
	m = cluster_get(&C, key);
	pc = json_object_get(json_object_get(json_object_get(m, "stats"), "downtime"), "postcopy");
	if (json_is_object(pc))
		n = json_integer_value(json_object_get(pc, "pages"));
	json_decref(m);
	return n;
}

/* cmectl vm migrate --postcopy of a guest that dirties memory faster than a 1 ms pause
 * allows: the guest runs on the target at once, its pages follow, nothing is damaged. */
static void test_migrate_postcopy(void)
{
	char *out = NULL, *err = NULL;
	long long e0, e1;
	int src, dst, rc;

	REQUIRE_KVM();
	start_vm1(2, "256M", "wss_mb=128 dirty_rate=64", &src, &e0, &dst);
	/* Bad tuning is refused before anything is written. */
	rc = cmectl(&C, &out, &err, "vm", "migrate", "vm1", "--postcopy-after", "0", NULL);
	CU_ASSERT_EQUAL(rc, 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(err ?: "", "--postcopy-after"));
	free(out);
	free(err);
	CU_ASSERT_PTR_NULL(cluster_get(&C, "migrations/vm1"));
	rc = cmectl(&C, &out, &err, "vm", "migrate", "vm1", "--to", C.node[dst].name, "--postcopy",
		    "--downtime-ms", "1", NULL);
	CU_ASSERT_PTR_NOT_NULL(strstr(out ?: "", "post-copy"));
	cluster_expect_ok("vm migrate --postcopy", rc, out, err);
	CU_ASSERT_EQUAL(owner_of("vm1", &e1), dst);
	CU_ASSERT_EQUAL(e1, e0 + 1);
	CU_ASSERT_TRUE(cluster_wait_field(&C, "migrations/vm1", "phase", "done", WAIT_MS));
	CU_ASSERT(postcopy_pages("vm1") > 0);
	CU_ASSERT_TRUE(wait_running("vm1"));
	assert_continued("vm1", src, dst);
	CU_ASSERT_TRUE(gone_from(src, "vm1"));
	CU_ASSERT_EQUAL(settled_copies("vm1"), 1);
	CU_ASSERT_TRUE(cluster_has_event(&C, "migrate-postcopy", "vm1"));
}

/* The target's VMM killed in post-copy: the guest's memory is split between the nodes.
 * The source keeps it paused as of the switch; the target restarts nothing; once the
 * target's status says its VMM ended, the source takes the owner record back and resumes
 * the same VMM from the switch — one copy, no damage. */
static void test_postcopy_target_killed(void)
{
	char *out = NULL, *err = NULL, con[700];
	uint64_t before, after;
	long long e0, e1;
	pid_t spid, dpid = 0;
	int src, dst, rc;
	json_t *m;

	REQUIRE_KVM();
	/* The source's push waits 3 s after the switch (CME_FAULT_POSTCOPY_HOLD_MS, through
	 * the daemons to their VMMs): the phase postcopy lasts that long at least, however
	 * little a guest starved by a busy host left behind. */
	setenv("CME_FAULT_POSTCOPY_HOLD_MS", "3000", 1);
	start_vm1(2, "256M", "wss_mb=192 dirty_rate=64", &src, &e0, &dst);
	unsetenv("CME_FAULT_POSTCOPY_HOLD_MS");
	spid = cluster_vmm_pid(&C, src, "vm1");
	rc = cmectl(&C, &out, &err, "vm", "migrate", "vm1", "--to", C.node[dst].name, "--postcopy",
		    "--downtime-ms", "1", "--max-bandwidth", "16M", "--no-wait", NULL);
	cluster_expect_ok("vm migrate --postcopy --no-wait", rc, out, err);
	CU_ASSERT_FATAL(cluster_wait_field(&C, "migrations/vm1", "phase", "postcopy", 3 * WAIT_MS));
	for (int t = 0; t < WAIT_MS && (dpid = cluster_vmm_pid(&C, dst, "vm1")) <= 0; t += 100)
		sleep_ms(100);
	CU_ASSERT_FATAL(dpid > 0);
	last_seq(src, "vm1", &before, NULL);
	kill(dpid, SIGKILL);
	/* The source says what broke; the target's status says it waits for the source. */
	CU_ASSERT_TRUE(cluster_wait_field(&C, "migrations/vm1", "phase", "failed", 2 * WAIT_MS));
	m = cluster_get(&C, "migrations/vm1");
	CU_ASSERT_PTR_NOT_NULL(
		strstr(json_string_value(json_object_get(m, "error")) ?: "", "resumed on"));
	json_decref(m);
	CU_ASSERT_TRUE(cluster_has_event(&C, "migrate-postcopy-broken", "vm1"));
	CU_ASSERT_TRUE(cluster_has_event(&C, "migrate-take-back", "vm1"));
	CU_ASSERT_EQUAL(owner_of("vm1", &e1), src);
	CU_ASSERT_EQUAL(e1, e0 + 2);
	CU_ASSERT_TRUE(wait_running("vm1"));
	/* The same VMM runs on, from the switch: its beats go on past those before it. */
	CU_ASSERT_EQUAL(cluster_vmm_pid(&C, src, "vm1"), spid);
	CU_ASSERT_TRUE(wait_heartbeats(src, "vm1", last_seq(src, "vm1", &after, NULL) + 3));
	last_seq(src, "vm1", &after, NULL);
	CU_ASSERT(after > before);
	cluster_console(&C, src, "vm1", con, sizeof(con));
	CU_ASSERT_FALSE(cluster_console_corrupt(con));
	CU_ASSERT_EQUAL(settled_copies("vm1"), 1);
	CU_ASSERT_EQUAL(cluster_vmm_pid(&C, dst, "vm1"), 0);
	rc = cmectl(&C, &out, &err, "vm", "show", "vm1", NULL);
	CU_ASSERT_PTR_NOT_NULL(strstr(out ?: "", "post-copy broke after the switch"));
	cluster_expect_ok("vm show", rc, out, err);
}

void suite_migrate(void)
{
	static const struct test_case cases[] = {
		{ "cmectl vm migrate while the guest dirties memory", test_migrate_dirtying },
		{ "cmectl vm migrate --postcopy: runs on the target at once, pages follow",
		  test_migrate_postcopy },
		{ "post-copy: the target's VMM killed, the source takes the guest back",
		  test_postcopy_target_killed },
		{ "cmectl vm migrate of a VM with a disk: the image moves with it",
		  test_migrate_disk },
		{ "source daemon dies after the owner txn", test_source_dies_after_commit },
		{ NULL, NULL },
	};

	test_on_teardown(cluster_teardown);
	test_add_suite("migrate", cases);
}

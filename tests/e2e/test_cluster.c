/* End-to-end: three cme-clusterd on real etcd and real KVM, driven through cmectl. */
#include "cluster_vm.h"
#include "e2e.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

/* ---- tests ------------------------------------------------------------------------- */

/* The daemon started vm1's VMM in its sandbox: every thread filtered. A VMM that makes a
 * forbidden call (the test hook) ends alone, and the status and `cmectl vm show` name
 * the call; vm1 on the same cluster beats on. */
static void expect_sandboxed(pid_t pid, int node)
{
	char *out = NULL, *err = NULL, key[] = "vms/probe/status";
	int total, n = test_filtered_threads(pid, &total), pnode, rc;
	json_t *st;

	if (TEST_SANITIZED)
		return; /* its programs load no filters */
	CU_ASSERT(total >= 3);
	CU_ASSERT_EQUAL(n, total);
	rc = cmectl(&C, &out, &err, "vm", "create", "probe", "--mem", "64M", "--vcpus", "1",
		    "--image", test_guest(), "--cmdline", "wss_mb=8", "--restart", "never", NULL);
	cluster_expect_ok("vm create", rc, out, err);
	pnode = owner_of("probe", NULL);
	CU_ASSERT_FATAL(pnode >= 0);
	CU_ASSERT_TRUE(wait_running("probe"));
	json_decref(cluster_vmm_request(&C, pnode, "probe", "sandbox-probe"));
	CU_ASSERT_TRUE(cluster_wait_field(&C, key, "state", "failed", WAIT_MS));
	st = cluster_get(&C, key);
	CU_ASSERT_PTR_NOT_NULL(strstr(json_string_value(json_object_get(st, "error")) ?: "",
				      "ended by its sandbox: forbidden system call getppid in a "
				      "control thread"));
	json_decref(st);
	rc = cmectl(&C, &out, &err, "vm", "show", "probe", NULL);
	CU_ASSERT_EQUAL(rc, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out ?: "", "forbidden system call getppid"));
	free(out);
	free(err);
	rc = cmectl(&C, &out, &err, "vm", "delete", "probe", NULL);
	cluster_expect_ok("vm delete", rc, out, err);
	uint64_t seq;

	CU_ASSERT_TRUE(wait_heartbeats(node, "vm1", last_seq(node, "vm1", &seq, NULL) + 2));
}

static void test_create_delete(void)
{
	char *out = NULL, *err = NULL;
	int node, rc;
	pid_t pid;

	/* The VMMs the daemons start take the test hook sandbox-probe. */
	setenv("CME_TEST_SANDBOX_PROBE", "1", 1);
	START_CLUSTER(3);
	unsetenv("CME_TEST_SANDBOX_PROBE");
	create_vm("vm1", "256M", "wss_mb=32");
	node = owner_of("vm1", NULL);
	CU_ASSERT_FATAL(node >= 0);
	CU_ASSERT_TRUE(wait_running("vm1"));
	CU_ASSERT_TRUE(wait_heartbeats(node, "vm1", 3));
	pid = cluster_vmm_pid(&C, node, "vm1");
	CU_ASSERT_TRUE(pid > 0);
	CU_ASSERT_EQUAL(settled_copies("vm1"), 1);
	expect_sandboxed(pid, node);

	/* More than any node has: refused with the free amounts, nothing written. */
	rc = cmectl(&C, &out, &err, "vm", "create", "big", "--mem", "4G", "--vcpus", "1", "--image",
		    test_guest(), NULL);
	CU_ASSERT_EQUAL(rc, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "capacity"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "node-b"));
	CU_ASSERT_PTR_NULL(cluster_get(&C, "vms/big/spec"));
	free(out);
	free(err);
	/* Unknown VM: one line naming it. */
	rc = cmectl(&C, &out, &err, "vm", "delete", "nosuch", NULL);
	CU_ASSERT_EQUAL(rc, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "nosuch"));
	free(out);
	free(err);

	/* Files outside the node's image_dirs (here a link out of them) are refused by the
	 * node: the VM fails with the reason, no VMM ever opens them. */
	char link[600];
	json_t *st;

	snprintf(link, sizeof(link), "%s/passwd.img", test_tmpdir());
	CU_ASSERT_FATAL(symlink("/etc/passwd", link) == 0);
	const char *bad[] = { "/etc/passwd", link };

	for (int i = 0; i < 2; i++) {
		char name[32];

		snprintf(name, sizeof(name), "leak%d", i);
		rc = cmectl(&C, &out, &err, "vm", "create", name, "--mem", "64M", "--vcpus", "1",
			    "--image", bad[i], "--no-wait", NULL);
		cluster_expect_ok("vm create", rc, out, err);
		snprintf(name, sizeof(name), "vms/leak%d/status", i);
		CU_ASSERT_TRUE(cluster_wait_field(&C, name, "state", "failed", WAIT_MS));
		st = cluster_get(&C, name);
		CU_ASSERT_PTR_NOT_NULL(strstr(json_string_value(json_object_get(st, "error")) ?: "",
					      "is outside this node's image_dirs"));
		json_decref(st);
		snprintf(name, sizeof(name), "leak%d", i);
		for (int k = 0; k < C.n; k++)
			CU_ASSERT_EQUAL(cluster_vmm_pid(&C, k, name), 0);
		rc = cmectl(&C, &out, &err, "vm", "delete", name, NULL);
		cluster_expect_ok("vm delete", rc, out, err);
	}

	rc = cmectl(&C, &out, &err, "vm", "delete", "vm1", NULL);
	cluster_expect_ok("vm delete", rc, out, err);
	for (int t = 0; t < WAIT_MS && kill(pid, 0) == 0; t += 100)
		sleep_ms(100);
	CU_ASSERT_EQUAL(cluster_vmm_pid(&C, node, "vm1"), 0);
	CU_ASSERT_PTR_NULL(cluster_get(&C, "vms/vm1/spec"));
	CU_ASSERT_PTR_NULL(cluster_get(&C, "vms/vm1/owner"));
}

static void test_drain_two(void)
{
	char *out = NULL, *err = NULL;
	int a, b, rc;

	START_CLUSTER(3);
	create_vm("vm1", "256M", "wss_mb=32");
	create_vm("vm2", "256M", "wss_mb=32");
	a = owner_of("vm1", NULL);
	b = owner_of("vm2", NULL);
	CU_ASSERT_FATAL(a >= 0 && b >= 0);
	if (a != b) { /* bring both onto one node */
		rc = cmectl(&C, &out, &err, "vm", "migrate", "vm2", "--to", C.node[a].name, NULL);
		cluster_expect_ok("vm migrate", rc, out, err);
	}
	CU_ASSERT_FATAL(owner_of("vm2", NULL) == a);
	rc = cmectl(&C, &out, &err, "node", "drain", C.node[a].name, "--postcopy", NULL);
	cluster_expect_ok("node drain --postcopy", rc, out, err);
	for (int k = 0; k < 2; k++) {
		const char *vm = k ? "vm2" : "vm1";
		int now = owner_of(vm, NULL);
		char key[64];
		json_t *m;

		/* The drain's migrations carry its post-copy setting to the source VMM. */
		snprintf(key, sizeof(key), "migrations/%s", vm);
		m = cluster_get(&C, key);
		CU_ASSERT_EQUAL(json_integer_value(json_object_get(m, "postcopy_after")), 1);
		json_decref(m);

		CU_ASSERT_TRUE(now >= 0 && now != a);
		CU_ASSERT_TRUE(wait_running(vm));
		if (now >= 0 && now != a)
			CU_ASSERT_TRUE(wait_heartbeats(now, vm, 3));
		CU_ASSERT_EQUAL(cluster_vmm_pid(&C, a, vm), 0);
		CU_ASSERT_EQUAL(copies(vm), 1);
	}
	/* The drained node takes nothing new; undrain makes it schedulable again. */
	rc = cmectl(&C, &out, &err, "vm", "migrate", "vm1", "--to", C.node[a].name, NULL);
	CU_ASSERT_EQUAL(rc, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "draining"));
	free(out);
	free(err);
	rc = cmectl(&C, &out, &err, "node", "undrain", C.node[a].name, NULL);
	cluster_expect_ok("node undrain", rc, out, err);
	CU_ASSERT_TRUE(cluster_wait_field(&C, "admin/node-a", "state", "schedulable", 1000) ||
		       a != 0);
}

static void test_etcd_restart(void)
{
	pid_t pid;
	int node;

	START_CLUSTER(3);
	node = small_vm_running(&pid);
	CU_ASSERT_FATAL(node >= 0);
	etcd_proc_kill(&C.etcd);
	sleep_ms(3000);
	CU_ASSERT_FATAL(etcd_proc_restart(&C.etcd) == 0);
	sleep_ms(4000);
	/* Nothing was stopped or duplicated... */
	CU_ASSERT_EQUAL(cluster_vmm_pid(&C, node, "vm1"), pid);
	CU_ASSERT_EQUAL(settled_copies("vm1"), 1);
	CU_ASSERT_EQUAL(owner_of("vm1", NULL), node);
	CU_ASSERT_TRUE(wait_running("vm1"));
	/* ...and the daemons watch again: a new VM is placed and started. */
	create_vm("vm2", "256M", "wss_mb=32");
	CU_ASSERT_TRUE(wait_running("vm2"));
	for (int i = 0; i < C.n; i++) {
		char key[64];
		json_t *j;

		snprintf(key, sizeof(key), "nodes/%s", C.node[i].name);
		j = cluster_get(&C, key);
		CU_ASSERT_PTR_NOT_NULL(j);
		json_decref(j);
	}
	CU_ASSERT_EQUAL(cluster_vmm_pid(&C, node, "vm1"), pid);
}

static void test_daemon_restart_readopts(void)
{
	uint64_t s0, s1;
	json_t *st;
	pid_t pid;
	int node;

	START_CLUSTER(2);
	node = small_vm_running(&pid);
	CU_ASSERT_FATAL(node >= 0);
	cluster_node_kill(&C, node);
	last_seq(node, "vm1", &s0, NULL);
	CU_ASSERT_FATAL(cluster_node_start(&C, node, NULL) == 0);
	sleep_ms(3000);
	last_seq(node, "vm1", &s1, NULL);
	CU_ASSERT_EQUAL(cluster_vmm_pid(&C, node, "vm1"), pid); /* the same process */
	CU_ASSERT_TRUE(s1 > s0);				/* that kept running */
	CU_ASSERT_EQUAL(settled_copies("vm1"), 1);
	CU_ASSERT_TRUE(wait_running("vm1"));
	st = cluster_get(&C, "vms/vm1/status");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(st, "restarts")), 0);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(st, "pid")), pid);
	json_decref(st);
	/* A VMM that dies is restarted by its policy (on-failure). */
	kill(pid, SIGKILL);
	for (int t = 0; t < WAIT_MS; t += 100, sleep_ms(100)) {
		pid_t now = cluster_vmm_pid(&C, node, "vm1");

		if (now > 0 && now != pid)
			break;
	}
	CU_ASSERT_TRUE(cluster_vmm_pid(&C, node, "vm1") > 0);
	CU_ASSERT_NOT_EQUAL(cluster_vmm_pid(&C, node, "vm1"), pid);
	CU_ASSERT_TRUE(wait_running("vm1"));
	CU_ASSERT_TRUE(wait_heartbeats(node, "vm1", 2));
	st = cluster_get(&C, "vms/vm1/status");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(st, "restarts")), 1);
	json_decref(st);
}

/* The balloon's actual (MiB) as vm's VMM on node reports it, -1 when it does not answer. */
static long long vmm_balloon_actual(int node, const char *vm)
{
	json_t *st = cluster_vmm_status(&C, node, vm);
	json_t *a = json_object_get(json_object_get(st, "balloon"), "actual_mb");
	long long mb = json_is_integer(a) ? json_integer_value(a) : -1;

	json_decref(st);
	return mb;
}

/* Poll until the status record says the balloon holds mb, as the node last saw it. */
static bool wait_status_balloon(const char *vm, long long mb)
{
	char key[128];

	snprintf(key, sizeof(key), "vms/%s/status", vm);
	for (int t = 0; t < 2 * WAIT_MS; t += 200, sleep_ms(200)) {
		json_t *st = cluster_get(&C, key);
		bool there = json_integer_value(json_object_get(st, "balloon_actual_mb")) == mb &&
			     json_integer_value(json_object_get(st, "balloon_target_mb")) == mb;

		json_decref(st);
		if (there)
			return true;
	}
	return false;
}

static bool wait_vmm_balloon(int node, const char *vm, long long mb)
{
	for (int t = 0; t < 2 * WAIT_MS; t += 200, sleep_ms(200))
		if (vmm_balloon_actual(node, vm) == mb)
			return true;
	return false;
}

/* cmectl vm balloon: the desired target goes into the spec, the owning node gives it to
 * the VMM, the guest inflates, and vm show and the status record follow; bad targets are
 * refused with one line; a VMM started again (kill -9, restart policy) gets the target
 * again. */
static void test_balloon(void)
{
	char *out = NULL, *err = NULL;
	pid_t pid;
	int node, rc;

	START_CLUSTER(2);
	rc = cmectl(&C, &out, &err, "vm", "create", "vmb", "--mem", "512M", "--vcpus", "2",
		    "--image", test_guest(), "--cmdline", "wss_mb=16 vcpus=1 balloon_mb=128",
		    "--balloon", NULL);
	cluster_expect_ok("vm create --balloon", rc, out, err);
	node = owner_of("vmb", NULL);
	CU_ASSERT_FATAL(node >= 0);
	CU_ASSERT_FATAL(wait_running("vmb"));
	CU_ASSERT_TRUE(wait_heartbeats(node, "vmb", 2));

	rc = cmectl(&C, &out, &err, "vm", "balloon", "vmb", "96", NULL);
	cluster_expect_ok("vm balloon", rc, out, err);
	CU_ASSERT_TRUE(wait_status_balloon("vmb", 96));
	CU_ASSERT_EQUAL(vmm_balloon_actual(node, "vmb"), 96);
	rc = cmectl(&C, &out, &err, "vm", "show", "vmb", NULL);
	CU_ASSERT_EQUAL(rc, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out ? out : "", "balloon:   target 96 MiB, actual 96 MiB"));
	free(out);
	free(err);

	rc = cmectl(&C, &out, &err, "vm", "balloon", "vmb", "600", NULL);
	CU_ASSERT_EQUAL(rc, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err ? err : "", "more than its 512 MiB"));
	free(out);
	free(err);
	rc = cmectl(&C, &out, &err, "vm", "balloon", "vmb", "lots", NULL);
	CU_ASSERT_EQUAL(rc, 2);
	free(out);
	free(err);
	rc = cmectl(&C, &out, &err, "vm", "balloon", "nosuch", "8", NULL);
	CU_ASSERT_EQUAL(rc, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err ? err : "", "unknown vm nosuch"));
	free(out);
	free(err);

	/* A new VMM of the VM (restarted by its policy) gets the target again. */
	pid = cluster_vmm_pid(&C, node, "vmb");
	kill(pid, SIGKILL);
	for (int t = 0; t < WAIT_MS; t += 100, sleep_ms(100)) {
		pid_t now = cluster_vmm_pid(&C, node, "vmb");

		if (now > 0 && now != pid)
			break;
	}
	CU_ASSERT_NOT_EQUAL(cluster_vmm_pid(&C, node, "vmb"), pid);
	CU_ASSERT_TRUE(wait_vmm_balloon(node, "vmb", 96));
	CU_ASSERT_TRUE(cluster_has_event(&C, "vm-balloon", "vmb"));
}

/* Records an operator (or a bug) wrote wrong change nothing: an unreadable spec is not a
 * deleted VM, and a key below the owner record is not the owner record. */
static void test_malformed_records(void)
{
	uint64_t s0, s1;
	json_t *spec;
	char *good;
	pid_t pid;
	int node;

	START_CLUSTER(2);
	node = small_vm_running(&pid);
	CU_ASSERT_FATAL(node >= 0);
	spec = cluster_get(&C, "vms/vm1/spec");
	good = json_dumps(spec, JSON_COMPACT);
	json_decref(spec);
	CU_ASSERT_EQUAL(cluster_put(&C, "vms/vm1/spec", "{\"name\":\"vm1\",\"vcpus\":\"two\"}"), 0);
	CU_ASSERT_EQUAL(cluster_put(&C, "vms/vm1/owner/note", "{\"node\":\"node-b\",\"epoch\":9}"),
			0);
	CU_ASSERT_EQUAL(cluster_put(&C, "vms/vm1/owner", "not json"), 0);
	last_seq(node, "vm1", &s0, NULL);
	sleep_ms(3000);
	last_seq(node, "vm1", &s1, NULL);
	CU_ASSERT_EQUAL(cluster_vmm_pid(&C, node, "vm1"), pid); /* not stopped, not moved */
	CU_ASSERT_TRUE(s1 > s0);
	CU_ASSERT_EQUAL(settled_copies("vm1"), 1);
	/* Fixed by the operator: business as usual, still the same guest. */
	CU_ASSERT_EQUAL(cluster_put(&C, "vms/vm1/spec", good), 0);
	{
		char own[64];

		snprintf(own, sizeof(own), "{\"node\":\"%s\",\"epoch\":1}", C.node[node].name);
		CU_ASSERT_EQUAL(cluster_put(&C, "vms/vm1/owner", own), 0);
	}
	sleep_ms(1500);
	CU_ASSERT_EQUAL(cluster_vmm_pid(&C, node, "vm1"), pid);
	CU_ASSERT_TRUE(wait_running("vm1"));
	free(good);
}

/* A second daemon started with a node's name (a copied configuration) runs nothing while
 * the first one holds that name's lease. */
static void test_duplicate_node_name(void)
{
	char path[700];
	pid_t pid;
	int node;

	START_CLUSTER(2);
	node = small_vm_running(&pid);
	CU_ASSERT_FATAL(node >= 0);
	CU_ASSERT_FATAL(cluster_twin_start(&C, node) == 0);
	/* Wait until the twin has said why it runs nothing (however slow the machine)... */
	snprintf(path, sizeof(path), "%s/twin.log", C.dir);
	CU_ASSERT_TRUE(test_wait_file_has(path, "held by another live daemon", WAIT_MS));
	/* ...then give it the time of a few of its loops to do harm: it does none. */
	sleep_ms(2000);
	snprintf(path, sizeof(path), "%s/vms/vm1", C.twin_state);
	CU_ASSERT_NOT_EQUAL(access(path, F_OK), 0); /* it never even prepared the VM */
	CU_ASSERT_EQUAL(cluster_vmm_pid(&C, node, "vm1"), pid);
	CU_ASSERT_EQUAL(settled_copies("vm1"), 1);
}

/* cmectl vm create's resource flags reach the VMM: its status shows the pinning, KSM and
 * the cgroup with its limit, `vm show` lists them, and a bad value is refused before
 * anything is written. */
static void test_create_resources(void)
{
	char cg[96], *out = NULL, *err = NULL, *dir, *v2;
	bool writable;
	json_t *st, *res;
	int node, rc;

	REQUIRE_KVM();
	v2 = test_read_file("/sys/fs/cgroup/cgroup.controllers");
	writable = access("/sys/fs/cgroup/cpu", W_OK) == 0 || strstr(v2, "cpu");
	free(v2);
	if (!writable) {
		test_skip("no writable cgroup hierarchy with the cpu controller here");
		return;
	}
	START_CLUSTER(1);
	snprintf(cg, sizeof(cg), "cme-e2e-%d/vm1,cpu=1.5", (int)getpid());
	rc = cmectl(&C, &out, &err, "vm", "create", "vm1", "--mem", "128M", "--vcpus", "1",
		    "--image", test_guest(), "--cmdline", "wss_mb=8", "--pin-vcpus", "0", "--ksm",
		    "--cgroup", cg, NULL);
	cluster_expect_ok("vm create (resources)", rc, out, err);
	node = owner_of("vm1", NULL);
	CU_ASSERT_FATAL(node >= 0);
	CU_ASSERT_TRUE(wait_heartbeats(node, "vm1", 2));
	st = cluster_vmm_status(&C, node, "vm1");
	res = json_object_get(st, "resources");
	CU_ASSERT_TRUE(json_is_true(json_object_get(res, "ksm")));
	CU_ASSERT_EQUAL(json_integer_value(json_array_get(json_object_get(res, "pinned_cpus"), 0)),
			0);

	CU_ASSERT_DOUBLE_EQUAL(
		json_real_value(json_object_get(json_object_get(res, "cgroup"), "cpu_limit")), 1.5,
		1e-9);
	dir = strdup(json_string_value(json_object_get(json_object_get(res, "cgroup"), "dir"))
			     ?: "");
	json_decref(st);
	rc = cmectl(&C, &out, &err, "vm", "show", "vm1", NULL);
	CU_ASSERT_EQUAL(rc, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out ?: "", "pin-vcpus 0, cgroup cme-e2e-"));
	free(out);
	free(err);
	rc = cmectl(&C, &out, &err, "vm", "create", "vm2", "--mem", "128M", "--vcpus", "1",
		    "--image", test_guest(), "--cgroup", "/sys/fs/cgroup/x", NULL);
	CU_ASSERT_EQUAL(rc, 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(err ?: "", "cgroup must be a relative PATH"));
	CU_ASSERT_PTR_NULL(cluster_get(&C, "vms/vm2/spec"));
	free(out);
	free(err);
	/* Stopped by the cluster, the VMM leaves its group and removes it. */
	rc = cmectl(&C, &out, &err, "vm", "delete", "vm1", NULL);
	cluster_expect_ok("vm delete", rc, out, err);
	for (int t = 0; t < WAIT_MS && cluster_vmm_pid(&C, node, "vm1") > 0; t += 100)
		sleep_ms(100);
	CU_ASSERT(dir[0] && access(dir, F_OK) != 0);
	free(dir);
}

/* node-c's VMM as a host whose KVM lacks sse2 would have it: cme-clusterd asks it what
 * the host offers and hears every feature but sse2; every other command is the real
 * cme-vmm's. A test-only stand-in for a host of another CPU generation. */
static void narrow_vmm(char *path, size_t len)
{
	FILE *f;

	snprintf(path, len, "%s/cme-vmm-no-sse2", test_tmpdir());
	f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fprintf(f,
		"#!/bin/sh\n"
		"if [ \"$1\" = cpu-features ]; then\n"
		"\tout=$('%s' cpu-features) || exit 1\n"
		"\tprintf '%%s\\n' \"$out\" | sed 's/\"sse2\",//'\n"
		"\texit 0\n"
		"fi\n"
		"exec '%s' \"$@\"\n",
		test_bin("cme-vmm"), test_bin("cme-vmm"));
	CU_ASSERT_EQUAL_FATAL(fclose(f), 0);
	CU_ASSERT_EQUAL_FATAL(chmod(path, 0755), 0);
}

/* Wait until nodes/<node> offers mem_mb (0: any) and publishes CPU features; those into
 * buf ("" when that did not happen in time). */
static void node_features(const char *node, uint64_t mem_mb, char *buf, size_t len)
{
	char key[64];

	snprintf(key, sizeof(key), "nodes/%s", node);
	buf[0] = 0;
	for (int t = 0; t < WAIT_MS; t += 100, sleep_ms(100)) {
		json_t *r = cluster_get(&C, key);
		const char *f = json_string_value(json_object_get(r, "cpu_features"));
		json_int_t mem = json_integer_value(json_object_get(r, "mem_mb"));

		snprintf(buf, len, "%s", f && (!mem_mb || mem == (json_int_t)mem_mb) ? f : "");
		json_decref(r);
		if (buf[0])
			return;
	}
}

/* `node show -o json`: cpu_templates is exactly tmpl, cpu_features the record's list. */
static void expect_json_cpu(const char *out, const char *tmpl, const char *features)
{
	json_t *o = json_loads(out, 0, NULL), *t = json_object_get(o, "cpu_templates"),
	       *f = json_object_get(o, "cpu_features"), *v;
	char list[CL_CPU_MAX_TEST] = "";
	size_t i, off = 0;

	CU_ASSERT_EQUAL(json_array_size(t), 1);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_array_get(t, 0)), tmpl);
	json_array_foreach(f, i, v) off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s",
							    i ? "," : "", json_string_value(v));
	CU_ASSERT_STRING_EQUAL(list, features);
	json_decref(o);
}

/* Every node publishes its CPU features and `cmectl node show` lists them; a VM on
 * x86-64-v1 is placed, drained and migrated only onto nodes whose CPU has all of it, even
 * when the node that lacks sse2 has the most room; a VM on "host" may start there. */
static void test_cpu_templates(void)
{
	char fa[CL_CPU_MAX_TEST], fc[CL_CPU_MAX_TEST];
	char *out = NULL, *err = NULL;
	int rc, a;

	START_CLUSTER(3);
	narrow_vmm(C.node[2].vmm, sizeof(C.node[2].vmm));
	C.node[2].mem_mb = 3 * NODE_MEM_MB; /* the most room: placement would pick it */
	CU_ASSERT_EQUAL_FATAL(cluster_node_reconfigure(&C, 2), 0);
	node_features("node-a", 0, fa, sizeof(fa));
	CU_ASSERT_PTR_NOT_NULL(strstr(fa, ",sse2,"));
	node_features("node-c", C.node[2].mem_mb, fc, sizeof(fc));
	CU_ASSERT_FATAL(fc[0] && !strstr(fc, ",sse2,"));

	rc = cmectl(&C, &out, &err, "node", "show", "node-a", NULL);
	CU_ASSERT_EQUAL(rc, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "cpu:      templates host, x86-64-v1"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "features: fpu "));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, " sse2 "));
	printf("\n%s", out);
	free(out);
	free(err);
	rc = cmectl(&C, &out, &err, "-o", "json", "node", "show", "node-c", NULL);
	CU_ASSERT_EQUAL(rc, 0);
	expect_json_cpu(out, "host", fc);
	free(out);
	free(err);

	/* Created: not on node-c, which has the most room but no sse2. */
	rc = cmectl(&C, &out, &err, "vm", "create", "v1", "--mem", "256M", "--vcpus", "1",
		    "--image", test_guest(), "--cmdline", "wss_mb=32", "--cpu-template",
		    "x86-64-v1", NULL);
	cluster_expect_ok("vm create --cpu-template", rc, out, err);
	a = owner_of("v1", NULL);
	CU_ASSERT_FATAL(a == 0 || a == 1);
	CU_ASSERT_TRUE(wait_running("v1"));
	CU_ASSERT_TRUE(wait_heartbeats(a, "v1", 3));
	{
		json_t *st = cluster_vmm_status(&C, a, "v1");

		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(st, "cpu_template")),
				       "x86-64-v1");
		json_decref(st);
	}
	/* An explicit target without sse2 is refused, naming it. */
	rc = cmectl(&C, &out, &err, "vm", "migrate", "v1", "--to", "node-c", NULL);
	CU_ASSERT_EQUAL(rc, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "target node-c lacks CPU features sse2 that vm v1 sees "
					   "(cpu template x86-64-v1)"));
	free(out);
	free(err);
	/* Drained: to the other capable node, not to node-c. */
	rc = cmectl(&C, &out, &err, "node", "drain", C.node[a].name, NULL);
	cluster_expect_ok("node drain", rc, out, err);
	CU_ASSERT_EQUAL(owner_of("v1", NULL), 1 - a);
	CU_ASSERT_TRUE(wait_running("v1"));
	assert_continued("v1", a, 1 - a);
	rc = cmectl(&C, &out, &err, "node", "undrain", C.node[a].name, NULL);
	cluster_expect_ok("node undrain", rc, out, err);

	/* A VM on "host" needs nothing of a node to start: node-c's room wins. */
	create_vm("h1", "256M", "wss_mb=32");
	CU_ASSERT_EQUAL(owner_of("h1", NULL), 2);
	CU_ASSERT_TRUE(wait_running("h1"));
}

/* deploy/localcluster.sh, the cluster of `make demo` and of README's first steps: its node
 * takes the test guest from the build's guest folder (its image_dirs), runs it jailed, and
 * `down` ends everything `up` started. No fatal assert between up and down. */
static void test_localcluster(void)
{
	const char *build = getenv("CME_BUILD") ?: "build";
	char dir[700], bin[600], images[600], url_file[760], *url, *out;
	const char *up[] = { "/bin/sh", "deploy/localcluster.sh", "up", dir, "1", NULL };
	const char *down[] = { "/bin/sh", "deploy/localcluster.sh", "down", dir, NULL };
	int rc;

	REQUIRE_KVM();
	snprintf(dir, sizeof(dir), "%s/lc", test_tmpdir());
	snprintf(bin, sizeof(bin), "%s/bin", build);
	snprintf(images, sizeof(images), "%s/guest", build);
	setenv("CME_BIN", bin, 1);
	setenv("CME_IMAGES", images, 1);
	rc = test_run(up, &out, 120000);
	unsetenv("CME_BIN");
	unsetenv("CME_IMAGES");
	if (rc)
		printf("\n    localcluster.sh up: %d: %s", rc, out);
	CU_ASSERT_EQUAL(rc, 0);
	free(out);
	snprintf(url_file, sizeof(url_file), "%s/etcd.url", dir);
	url = test_read_file(url_file);
	url[strcspn(url, "\n")] = 0;
	const char *create[] = { test_bin("cmectl"), "--etcd",	 url,	    "vm",
				 "create",	     "lc1",	 "--mem",   "64M",
				 "--vcpus",	     "1",	 "--image", test_guest(),
				 "--cmdline",	     "wss_mb=8", NULL };

	rc = rc ? rc : test_run(create, &out, 120000);
	if (rc == 0) {
		CU_ASSERT_PTR_NOT_NULL(strstr(out, "vm lc1 running on node-a"));
		free(out);
	} else if (rc > 0) {
		printf("\n    cmectl vm create: %d: %s", rc, out);
		free(out);
	}
	CU_ASSERT_EQUAL(rc, 0);
	free(url);
	CU_ASSERT_EQUAL(test_run(down, &out, 120000), 0);
	free(out);
}

void suite_cluster(void)
{
	static const struct test_case cases[] = {
		{ "create, capacity refusal, delete", test_create_delete },
		{ "vm create --pin-vcpus --ksm --cgroup: the VMM runs with them",
		  test_create_resources },
		{ "drain a node with two VMs", test_drain_two },
		{ "CPU templates: node features, placement, drain and migrate skip a node that "
		  "lacks one",
		  test_cpu_templates },
		{ "etcd restart: nothing stopped or duplicated", test_etcd_restart },
		{ "daemon restart re-adopts; a dead VMM is restarted",
		  test_daemon_restart_readopts },
		{ "malformed records change nothing", test_malformed_records },
		{ "a second daemon with the same node name runs nothing",
		  test_duplicate_node_name },
		{ "cmectl vm balloon: the owning node applies the target, again after a restart",
		  test_balloon },
		{ "deploy/localcluster.sh (make demo's cluster) runs the test guest",
		  test_localcluster },
		{ NULL, NULL },
	};

	test_on_teardown(cluster_teardown);
	test_add_suite("cluster", cases);
}

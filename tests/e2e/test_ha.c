/* End-to-end HA: three cme-clusterd on real etcd; a node's host is lost (kill -9 of its
 * daemon and VMMs), the leader restarts its VMs elsewhere in priority tiers, a restarted
 * daemon keeps its lease, a lost node rejoins empty. These tests assert the cluster's
 * records and events, so they run without KVM too (a VMM that cannot start only fails to
 * reach "running"); what needs a running guest is asserted only where /dev/kvm works. */
#include "e2e_cluster.h"
#include "e2e.h"
#include "ha_e2e.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

/* A VM with a restart policy and priority; image NULL: the self-checking test guest. */
void create(const char *name, const char *restart, const char *prio, const char *image)
{
	char *out = NULL, *err = NULL;
	int rc = cmectl(&C, &out, &err, "vm", "create", name, "--mem", "256M", "--vcpus", "1",
			"--image", image ? image : test_guest(), "--cmdline", "wss_mb=16",
			"--restart", restart, "--priority", prio, "--no-wait", NULL);

	cluster_expect_ok("vm create", rc, out, err);
}

/* The test guest in anti-affinity group g: never placed beside another VM of g. */
static void create_in_group(const char *name, const char *g)
{
	char *out = NULL, *err = NULL;
	int rc = cmectl(&C, &out, &err, "vm", "create", name, "--mem", "256M", "--vcpus", "1",
			"--image", test_guest(), "--cmdline", "wss_mb=16", "--restart",
			"on-failure", "--group", g, "--no-wait", NULL);

	cluster_expect_ok("vm create", rc, out, err);
}

/* An image no VMM can start (empty): the VM never reaches "running", with or without KVM. */
static const char *broken_image(void)
{
	static char path[600];
	FILE *f;

	snprintf(path, sizeof(path), "%s/empty.img", C.dir);
	f = fopen(path, "w");
	if (f)
		fclose(f);
	return path;
}

void admin(const char *verb, int node)
{
	char *out = NULL, *err = NULL;
	int rc = cmectl(&C, &out, &err, "node", verb, C.node[node].name, NULL);

	cluster_expect_ok(verb, rc, out, err);
}

/* Wait until vm has an owner; its node index, -1 if none came. */
int wait_owner(const char *vm)
{
	int i = -1;

	for (int t = 0; t < WAIT_MS && (i = cluster_owner(&C, vm, NULL)) < 0; t += 100)
		sleep_ms(100);
	return i;
}

/* Wait until vm's owner is a node other than from, at the given epoch. */
int wait_moved(const char *vm, int from, long long epoch)
{
	long long e = 0;
	int i = -1;

	for (int t = 0; t < 2 * WAIT_MS; t += 100, sleep_ms(100)) {
		i = cluster_owner(&C, vm, &e);
		if (i >= 0 && i != from && e == epoch)
			return i;
	}
	printf("\n  %s: owner %d epoch %lld (wanted a node other than %d, epoch %lld)\n", vm, i, e,
	       from, epoch);
	return -1;
}

bool wait_status_has(const char *vm, const char *state, const char *text, int ms)
{
	char key[128];

	snprintf(key, sizeof(key), "vms/%s/status", vm);
	for (int t = 0; t < ms; t += 100, sleep_ms(100)) {
		json_t *s = cluster_get(&C, key);
		const char *st = json_string_value(json_object_get(s, "state"));
		const char *er = json_string_value(json_object_get(s, "error"));
		bool hit = st && !strcmp(st, state) && (!text || (er && strstr(er, text)));

		json_decref(s);
		if (hit)
			return true;
	}
	return false;
}

/* Put every listed VM on node `on` (the others are drained meanwhile). */
void create_on(int on, const char *const *names, const char *const *prios,
	       const char *const *images, size_t n)
{
	for (int i = 0; i < C.n; i++)
		if (i != on)
			admin("drain", i);
	for (size_t k = 0; k < n; k++) {
		create(names[k], "on-failure", prios[k], images[k]);
		CU_ASSERT_EQUAL(wait_owner(names[k]), on);
	}
	for (int i = 0; i < C.n; i++)
		if (i != on)
			admin("undrain", i);
}

/* The host of node i dies: its daemon and every VMM it started, kill -9. */
void kill_host(int i)
{
	cluster_node_kill(&C, i);
	cluster_node_kill_vmms(&C, i);
}

/* Heartbeat lines on node's console of vm so far. */
static int beats(int node, const char *vm)
{
	char con[700];

	cluster_console(&C, node, vm, con, sizeof(con));
	return cluster_heartbeats(con, NULL, 0);
}

static bool wait_beats(int node, const char *vm, int n)
{
	for (int t = 0; t < 2 * WAIT_MS; t += 100, sleep_ms(100))
		if (beats(node, vm) >= n)
			return true;
	return false;
}

static bool corrupt(int node, const char *vm)
{
	char con[700];

	cluster_console(&C, node, vm, con, sizeof(con));
	return cluster_console_corrupt(con);
}

/* The state vm's VMM on node reports ("running", "fenced", ...) into buf; "" if none. */
static const char *vmm_state(int node, const char *vm, char *buf, size_t len)
{
	json_t *r = cluster_vmm_status(&C, node, vm);

	snprintf(buf, len, "%s", json_string_value(json_object_get(r, "state")) ?: "");
	json_decref(r);
	return buf;
}

/* A guest that runs and beats on its owner; the owner's index or -1. */
static int guest_running(const char *vm)
{
	int node;

	create(vm, "on-failure", "0", NULL);
	node = wait_owner(vm);
	return node >= 0 && wait_beats(node, vm, 2) ? node : -1;
}

/* `cmectl node forget`: refused for a node that is up, and for the lost one of three. */
static void forget_node(int lost, int up)
{
	char *out = NULL, *err = NULL, key[64];
	json_t *m;
	int rc = cmectl(&C, &out, &err, "node", "forget", C.node[up].name, NULL);

	cluster_expect_said(rc, 1, "is up: stop its cme-clusterd first", out, err);
	snprintf(key, sizeof(key), "members/%s", C.node[lost].name);
	m = cluster_get(&C, key);
	CU_ASSERT_PTR_NOT_NULL(m); /* a member while it was up */
	json_decref(m);
	/* Two members would be no majority to ride on: a third joins first (suite ha_quorum
	 * forgets a fourth). */
	rc = cmectl(&C, &out, &err, "node", "forget", C.node[lost].name, NULL);
	cluster_expect_said(rc, 1, "would leave 2 members", out, err);
	m = cluster_get(&C, key);
	CU_ASSERT_PTR_NOT_NULL(m);
	json_decref(m);
}

static void test_host_loss(void)
{
	char key[64];
	int from, to;

	START(3, NULL);
	create("vm1", "on-failure", "0", NULL);
	from = wait_owner("vm1");
	CU_ASSERT_FATAL(from >= 0);
	kill_host(from);
	to = wait_moved("vm1", from, 2);
	CU_ASSERT_TRUE(to >= 0);
	CU_ASSERT_TRUE(cluster_has_event(&C, "node-lost", NULL));
	CU_ASSERT_TRUE(cluster_has_event(&C, "vm-ha-restart", "vm1"));
	snprintf(key, sizeof(key), "nodes/%s", C.node[from].name);
	CU_ASSERT_PTR_NULL(cluster_get(&C, key)); /* restarted only once its lease was gone */
	if (to >= 0)
		forget_node(from, to);
}

/* With a guest: kill -9 of its host; it beats again on the new owner, uncorrupted. */
static void test_host_loss_guest(void)
{
	uint64_t t0;
	int from, to;

	REQUIRE_KVM();
	START(3, NULL);
	from = guest_running("vm1");
	CU_ASSERT_FATAL(from >= 0);
	t0 = now_ns();
	kill_host(from);
	to = wait_moved("vm1", from, 2);
	CU_ASSERT_FATAL(to >= 0);
	CU_ASSERT_TRUE(wait_beats(to, "vm1", 2));
	printf("\n    kill -9 to the first heartbeat on %s: %llu ms\n", C.node[to].name,
	       (unsigned long long)((now_ns() - t0) / 1000000));
	CU_ASSERT_FALSE(corrupt(to, "vm1"));
}

/* A VM with a disk on a frozen host (daemon and VMMs SIGSTOPped, so the old VMM still
 * holds the image's lock): HA restarts it elsewhere at epoch 2, whose VMM takes the image
 * over (the epoch on the image says 2); thawed, the old copy is stopped, and the new
 * copy's own read-back finds nothing of the old one's. */
static void test_frozen_host_disk(void)
{
	char img[600], con[700], *out = NULL, *err = NULL, epoch[8] = "";
	int from, to, rc;

	REQUIRE_KVM();
	START(3, NULL);
	if (!cluster_disk_image(img, sizeof(img)))
		return;
	rc = cmectl(&C, &out, &err, "vm", "create", "vm1", "--mem", "256M", "--vcpus", "1",
		    "--image", test_guest(), "--cmdline", "wss_mb=8 vcpus=0 disk_mb=4", "--disk",
		    img, "--no-wait", NULL);
	cluster_expect_ok("vm create --disk", rc, out, err);
	from = wait_owner("vm1");
	CU_ASSERT_FATAL(from >= 0);
	cluster_console(&C, from, "vm1", con, sizeof(con));
	CU_ASSERT_FATAL(test_wait_file_has(con, "DISK pass=1 blocks=1024 flushed", WAIT_MS));
	cluster_node_signal_all(&C, from, SIGSTOP);
	to = wait_moved("vm1", from, 2);
	CU_ASSERT_FATAL(to >= 0);
	cluster_console(&C, to, "vm1", con, sizeof(con));
	CU_ASSERT(test_wait_file_has(con, "DISK pass=1 blocks=1024 flushed", 2 * WAIT_MS));
	CU_ASSERT(getxattr(img, "user.cme.epoch", epoch, sizeof(epoch) - 1) > 0);
	CU_ASSERT_STRING_EQUAL(epoch, "2");
	cluster_node_signal_all(&C, from, SIGCONT);
	for (int t = 0; t < WAIT_MS && cluster_vmm_pid(&C, from, "vm1") > 0; t += 100)
		sleep_ms(100);
	CU_ASSERT_EQUAL(cluster_vmm_pid(&C, from, "vm1"), 0); /* stopped, never resumed */
	CU_ASSERT(test_wait_file_has(con, "DISK pass=3 blocks=1024 flushed", 2 * WAIT_MS));
	CU_ASSERT_FALSE(corrupt(to, "vm1"));
}

/* The daemon hangs (SIGSTOP) while its VMM runs: the guest is fenced by its deadline —
 * before the owner record moves — and never beats again; the VM runs elsewhere; the
 * daemon, thawed, stops its old copy. */
static void test_hung_daemon_fences(void)
{
	char st[32];
	bool moved_first = false, fenced = false;
	long long epoch = 0;
	int from, to = -1, at_fence = 0;

	REQUIRE_KVM();
	START(3, NULL);
	from = guest_running("vm1");
	CU_ASSERT_FATAL(from >= 0);
	CU_ASSERT_EQUAL_FATAL(kill(C.node[from].pid, SIGSTOP), 0);
	for (int t = 0; t < 2 * WAIT_MS && !fenced; t += 50, sleep_ms(50)) {
		/* The record read first: if it has moved, the copy must already be fenced. */
		to = cluster_owner(&C, "vm1", &epoch);
		fenced = !strcmp(vmm_state(from, "vm1", st, sizeof(st)), "fenced");
		moved_first |= epoch == 2 && !fenced;
	}
	CU_ASSERT_FATAL(fenced);
	CU_ASSERT_FALSE(moved_first);
	at_fence = beats(from, "vm1");
	to = wait_moved("vm1", from, 2);
	CU_ASSERT_TRUE(to >= 0);
	CU_ASSERT_TRUE(to >= 0 && wait_beats(to, "vm1", 2));
	CU_ASSERT_EQUAL(beats(from, "vm1"), at_fence);
	CU_ASSERT_EQUAL(kill(C.node[from].pid, SIGCONT), 0);
	for (int t = 0; t < WAIT_MS && cluster_vmm_pid(&C, from, "vm1") > 0; t += 100)
		sleep_ms(100);
	CU_ASSERT_EQUAL(cluster_vmm_pid(&C, from, "vm1"), 0); /* stopped, never resumed */
	CU_ASSERT_EQUAL(beats(from, "vm1"), at_fence);
	CU_ASSERT_FALSE(corrupt(to >= 0 ? to : from, "vm1"));
}

/* A guest that powers off under a VMM that a restarted daemon adopted is "stopped" (its
 * exit status read from the VMM's exit file), not a failure to restart (policy
 * on-failure). */
static void test_adopted_poweroff_is_not_a_crash(void)
{
	char *out = NULL, *err = NULL;
	json_t *s;
	int node, rc;

	REQUIRE_KVM();
	START(3, NULL);
	rc = cmectl(&C, &out, &err, "vm", "create", "short", "--mem", "256M", "--vcpus", "1",
		    "--image", test_guest(), "--cmdline", "wss_mb=16 exit_after=100", "--no-wait",
		    NULL);
	cluster_expect_ok("vm create", rc, out, err);
	node = wait_owner("short");
	CU_ASSERT_FATAL(node >= 0 && wait_beats(node, "short", 2));
	cluster_node_kill(&C, node);
	CU_ASSERT_FATAL(cluster_node_start(&C, node, NULL) == 0);
	CU_ASSERT_TRUE(wait_status_has("short", "stopped", "powered off", 2 * WAIT_MS));
	s = cluster_get(&C, "vms/short/status");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(s, "restarts")), 0);
	json_decref(s);
}

static void test_leader_host_loss(void)
{
	static const char *const names[] = { "vm1" }, *const prios[] = { "0" };
	static const char *const images[] = { NULL };
	int leader, to, next = -1;

	START(3, NULL);
	leader = cluster_leader(&C);
	CU_ASSERT_FATAL(leader >= 0);
	create_on(leader, names, prios, images, 1);
	kill_host(leader);
	to = wait_moved("vm1", leader, 2);
	CU_ASSERT_TRUE(to >= 0);
	next = cluster_leader(&C);
	CU_ASSERT_TRUE(next >= 0 && next != leader);
}

/* The higher tier never runs here (its image is broken), so the lower one waits for the
 * tier timeout, saying so; then it is restarted too. */
static void test_priority_tiers(void)
{
	static const char *const names[] = { "hi", "lo" }, *const prios[] = { "10", "0" };
	const char *images[] = { broken_image(), NULL };
	int from = 0;

	START(3, "ha_tier_timeout = 5\n");
	from = cluster_leader(&C) == 0 ? 1 : 0; /* keep the leader alive: one timer */
	create_on(from, names, prios, images, 2);
	kill_host(from);
	CU_ASSERT_TRUE(wait_moved("hi", from, 2) >= 0);
	CU_ASSERT_TRUE(wait_status_has("lo", "pending", "waiting for vm hi", WAIT_MS));
	CU_ASSERT_EQUAL(cluster_owner(&C, "lo", NULL), from);
	CU_ASSERT_TRUE(wait_moved("lo", from, 2) >= 0);
}

static void test_policy_never_stays(void)
{
	static const char *const names[] = { "keep" }, *const prios[] = { "0" };
	static const char *const images[] = { NULL };
	long long epoch = 0;
	int from;

	START(3, NULL);
	from = cluster_leader(&C) == 0 ? 1 : 0;
	create_on(from, names, prios, images, 0);
	for (int i = 0; i < C.n; i++)
		if (i != from)
			admin("drain", i);
	create("keep", "never", "0", NULL);
	CU_ASSERT_EQUAL(wait_owner("keep"), from);
	for (int i = 0; i < C.n; i++)
		if (i != from)
			admin("undrain", i);
	kill_host(from);
	CU_ASSERT_TRUE(wait_status_has("keep", "pending", "restart policy is never", 2 * WAIT_MS));
	CU_ASSERT_EQUAL(cluster_owner(&C, "keep", &epoch), from);
	CU_ASSERT_EQUAL(epoch, 1);
}

/* With admission control, an HA VM that would leave no room to restart the HA VMs after
 * one node's loss stays pending with the reason; a VM with restart never is not held. */
static void test_admission_control(void)
{
	START(2, "admission_control = on\n");
	create("a", "on-failure", "0", NULL);
	CU_ASSERT_TRUE(wait_owner("a") >= 0);
	/* Two nodes of 1536 MiB: a (256) and b (256) fit anywhere; c at 1280 does not. */
	create("b", "on-failure", "0", NULL);
	CU_ASSERT_TRUE(wait_owner("b") >= 0);
	{
		char *out = NULL, *err = NULL;
		int rc = cmectl(&C, &out, &err, "vm", "create", "big", "--mem", "1280M", "--vcpus",
				"1", "--image", test_guest(), "--no-wait", NULL);

		cluster_expect_ok("vm create big", rc, out, err);
	}
	CU_ASSERT_TRUE(wait_status_has("big", "pending", "admission control", WAIT_MS));
	CU_ASSERT_EQUAL(cluster_owner(&C, "big", NULL), -1);
}

/* A confidential VM (AMD SEV) in a cluster whose nodes offer none (every host here):
 * `vm create` refuses it naming each node; one created stopped and then started stays
 * pending with the reason, owned by no node; `vm show` and `node show` say what it needs
 * and what the nodes offer; a spec it cannot have is refused by name, and so is any while
 * an older node is up. On an SEV host the nodes offer it: skipped there (the KVM test runs
 * a confidential guest). */
static void test_confidential_unplaced(void)
{
	char *out = NULL, *err = NULL, *sev = test_read_file("/sys/module/kvm_amd/parameters/sev");
	bool offered = sev[0] == 'Y' || sev[0] == '1';
	int rc;

	free(sev);
	if (offered) {
		test_skip("this host offers AMD SEV: its nodes would place the VM");
		return;
	}
	START(2, NULL);
	rc = cmectl(&C, &out, &err, "vm", "create", "c1", "--mem", "256M", "--vcpus", "1",
		    "--image", test_guest(), "--confidential", "--no-wait", NULL);
	cluster_expect_said(rc, 1,
			    "node-a offers no AMD SEV (confidential VMs); "
			    "node-b offers no AMD SEV",
			    out, err);
	rc = cmectl(&C, &out, &err, "vm", "create", "c2", "--mem", "256M", "--vcpus", "1",
		    "--image", test_guest(), "--confidential", "--stopped", NULL);
	cluster_expect_ok("vm create --confidential --stopped", rc, out, err);
	rc = cmectl(&C, &out, &err, "vm", "start", "c2", "--no-wait", NULL);
	cluster_expect_ok("vm start", rc, out, err);
	CU_ASSERT_TRUE(wait_status_has("c2", "pending", "offers no AMD SEV", WAIT_MS));
	CU_ASSERT_EQUAL(cluster_owner(&C, "c2", NULL), -1);
	rc = cmectl(&C, &out, &err, "vm", "show", "c2", NULL);
	CU_ASSERT_EQUAL(rc, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out ?: "", "memory:    confidential, encrypted by AMD SEV"));
	free(out);
	free(err);
	rc = cmectl(&C, &out, &err, "node", "show", "node-a", NULL);
	CU_ASSERT_EQUAL(rc, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out ?: "", "encrypt:  none"));
	free(out);
	free(err);
	rc = cmectl(&C, &out, &err, "vm", "create", "c3", "--mem", "256M", "--vcpus", "1",
		    "--image", test_guest(), "--confidential", "--disk", test_guest(), NULL);
	cluster_expect_said(rc, 2, "a confidential VM boots a flat image", out, err);
	/* A node of an older cme-clusterd (its record as that version writes it) would start
	 * the VM unencrypted: no confidential VM is created while one is up. */
	CU_ASSERT_EQUAL_FATAL(cluster_put(&C, "nodes/node-old",
					  "{\"name\":\"node-old\",\"addr\":\"127.0.1.9\","
					  "\"cpus\":4,\"mem_mb\":1024,\"version\":\"0.5\"}"),
			      0);
	rc = cmectl(&C, &out, &err, "vm", "create", "c4", "--mem", "256M", "--vcpus", "1",
		    "--image", test_guest(), "--confidential", "--stopped", NULL);
	cluster_expect_said(rc, 1,
			    "node node-old runs cme-clusterd 0.5, which "
			    "does not know confidential VMs",
			    out, err);
}

/* A VM stopped by the operator on a draining node moves by a change of owner, once its
 * owner has said itself that it runs nothing there (its status "stopped" at its epoch):
 * the drain ends with the VM owned by the other node at epoch 2 and the event that says so.
 * (Without KVM its VMM never ran; with KVM it ran and was stopped.) */
static void test_drain_stopped_vm(void)
{
	char *out = NULL, *err = NULL;
	long long epoch = 0;
	int from, rc;

	START(2, NULL);
	create("s1", "on-failure", "0", NULL);
	from = wait_owner("s1");
	CU_ASSERT_FATAL(from >= 0);
	rc = cmectl(&C, &out, &err, "vm", "stop", "s1", NULL);
	cluster_expect_ok("vm stop", rc, out, err);
	CU_ASSERT_TRUE(wait_status_has("s1", "stopped", NULL, WAIT_MS));
	admin("drain", from);
	CU_ASSERT_EQUAL(wait_moved("s1", from, 2), 1 - from);
	CU_ASSERT_EQUAL(cluster_owner(&C, "s1", &epoch), 1 - from);
	CU_ASSERT_EQUAL(epoch, 2);
	CU_ASSERT_TRUE(cluster_has_event(&C, "drain-move", "s1"));
}

/* vm's migration record (source and target nodes, phase) and its owner record (owner
 * node, epoch), written as the cluster's own steps leave them. */
static void put_migration(const char *vm, int src, int dst, const char *phase, int owner, int epoch)
{
	char key[128], own[128], mig[512];

	snprintf(mig, sizeof(mig),
		 "{\"id\":\"00c0ffee00c0ffee\",\"vm\":\"%s\",\"source\":\"%s\",\"target\":"
		 "\"%s\",\"phase\":\"%s\"}",
		 vm, C.node[src].name, C.node[dst].name, phase);
	snprintf(own, sizeof(own), "{\"node\":\"%s\",\"epoch\":%d}", C.node[owner].name, epoch);
	snprintf(key, sizeof(key), "migrations/%s", vm);
	CU_ASSERT_EQUAL_FATAL(cluster_put(&C, key, mig), 0);
	snprintf(key, sizeof(key), "vms/%s/owner", vm);
	CU_ASSERT_EQUAL_FATAL(cluster_put(&C, key, own), 0);
}

/* vm's migration record says failed, for a reason containing why. */
static void expect_mig_failed(const char *vm, const char *why)
{
	char key[128];
	json_t *m;

	snprintf(key, sizeof(key), "migrations/%s", vm);
	m = cluster_get(&C, key);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(m, "phase")) ?: "", "failed");
	CU_ASSERT_PTR_NOT_NULL(strstr(json_string_value(json_object_get(m, "error")) ?: "", why));
	json_decref(m);
}

/* A migration committed (the owner record names its target) whose source and target are
 * then both lost: nobody is left to finish it, and its record once held the VM's restart
 * back for ever. The leader fails it, naming both, and restarts the VM on the node left.
 * The records are written as the commit leaves them (ride-through off: two of three
 * nodes lost leave no majority to confirm their fencing; the lease's expiry does). */
static void both_lost(const char *phase, const char *why)
{
	int src, dst;

	START(3, "ride_through = off\n");
	create("vm1", "on-failure", "0", NULL);
	src = wait_owner("vm1");
	CU_ASSERT_FATAL(src >= 0);
	dst = (src + 1) % 3;
	put_migration("vm1", src, dst, phase, dst, 2);
	kill_host(src);
	kill_host(dst);
	CU_ASSERT_EQUAL(wait_moved("vm1", dst, 3), (src + 2) % 3);
	expect_mig_failed("vm1", why);
	CU_ASSERT_TRUE(cluster_has_event(&C, "vm-ha-restart", "vm1"));
}

static void test_committed_both_lost(void)
{
	both_lost("committed", "were both lost after the commit");
}

/* A broken post-copy taken back by its source (owner record and migration record as the
 * take-back leaves them), whose source host is then lost: only the source ever ends a
 * taken-back record, so it once held the VM's restart back for ever. The leader fails it
 * and restarts the VM elsewhere, past the epoch of the take-back. */
static void test_taken_back_source_lost(void)
{
	int src;

	START(3, "ride_through = off\n");
	create("vm1", "on-failure", "0", NULL);
	src = wait_owner("vm1");
	CU_ASSERT_FATAL(src >= 0);
	kill_host(src); /* its lease runs on a while: the records land before anyone acts */
	put_migration("vm1", src, (src + 1) % 3, "taken-back", src, 3);
	CU_ASSERT_TRUE(wait_moved("vm1", src, 4) >= 0);
	expect_mig_failed("vm1", "was lost after taking the VM back");
}

/* kill -9 of a daemon alone, restarted at once: it takes over its lease, so its node never
 * looks lost and nothing moves. */
static void test_daemon_restart_keeps_lease(void)
{
	json_t *before, *after;
	char key[64];
	int node;

	START(3, NULL);
	create("vm1", "on-failure", "0", NULL);
	node = wait_owner("vm1");
	CU_ASSERT_FATAL(node >= 0);
	snprintf(key, sizeof(key), "nodes/%s", C.node[node].name);
	CU_ASSERT_TRUE(cluster_wait_field(&C, key, "name", C.node[node].name, WAIT_MS));
	before = cluster_get(&C, key);
	cluster_node_kill(&C, node);
	CU_ASSERT_FATAL(cluster_node_start(&C, node, NULL) == 0);
	CU_ASSERT_TRUE(
		test_wait_file_has(C.node[node].log, "took over its previous lease", WAIT_MS));
	after = cluster_get(&C, key);
	CU_ASSERT_PTR_NOT_NULL(before);
	CU_ASSERT_PTR_NOT_NULL(after);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(before, "started_ms")),
			json_integer_value(json_object_get(after, "started_ms")));
	json_decref(before);
	json_decref(after);
	CU_ASSERT_EQUAL(cluster_owner(&C, "vm1", NULL), node);
	CU_ASSERT_FALSE(cluster_has_event(&C, "node-lost", NULL));
}

/* A node declared lost comes back: its VMs are owned elsewhere now and stay there; with
 * KVM, its old copy is stopped and only one copy runs. */
static void test_lost_node_rejoins_empty(void)
{
	char key[64], why[256];
	long long epoch = 0;
	int from, to;

	int frozen_beats;
	bool kvm = test_have_kvm(why, sizeof(why));

	START(3, NULL);
	from = kvm ? guest_running("vm1")
		   : (create("vm1", "on-failure", "0", NULL), wait_owner("vm1"));
	CU_ASSERT_FATAL(from >= 0);
	cluster_node_signal_all(&C, from, SIGSTOP); /* frozen: its VMMs live on, paused */
	frozen_beats = beats(from, "vm1");
	char con[700], *at_freeze;

	cluster_console(&C, from, "vm1", con, sizeof(con));
	at_freeze = test_read_file(con);
	to = wait_moved("vm1", from, 2);
	CU_ASSERT_TRUE(to >= 0);
	if (kvm && to >= 0)
		CU_ASSERT_TRUE(wait_beats(to, "vm1", 2)); /* runs elsewhere while frozen here */
	cluster_node_signal_all(&C, from, SIGCONT);
	snprintf(key, sizeof(key), "nodes/%s", C.node[from].name);
	CU_ASSERT_TRUE(cluster_wait_field(&C, key, "name", C.node[from].name, WAIT_MS));
	CU_ASSERT_EQUAL(cluster_owner(&C, "vm1", &epoch), to);
	CU_ASSERT_EQUAL(epoch, 2);
	if (!kvm)
		return;
	for (int t = 0; t < WAIT_MS && cluster_vmm_pid(&C, from, "vm1") > 0; t += 100)
		sleep_ms(100);
	CU_ASSERT_EQUAL(cluster_vmm_pid(&C, from, "vm1"), 0);
	/* Thawed past its deadline, the old copy ran not one more instruction: its console
	 * may only finish the line whose last byte the guest had sent as it froze (the VMM
	 * was stopped while handling that exit), nothing after. */
	char *now = test_read_file(con);
	size_t n0 = strlen(at_freeze);
	const char *tail = now + (strncmp(now, at_freeze, n0) ? 0 : n0);
	const char *nl = strchr(tail, '\n');

	CU_ASSERT_EQUAL(strncmp(now, at_freeze, n0), 0);
	CU_ASSERT(!nl || nl[1] == 0);
	CU_ASSERT(beats(from, "vm1") <= frozen_beats + 1);
	if (nl && nl[1])
		printf("\n    the frozen copy printed after its thaw: %s\n", tail);
	free(now);
	free(at_freeze);
}

/* Every daemon has run longer than its peer channel's start hold (lease TTL 3 s + margin
 * 1 s): a daemon that just started neither confirms nor releases. */
void wait_daemons_settled(void)
{
	uint64_t latest = 0;
	char key[64];

	for (int i = 0; i < C.n; i++) {
		json_t *n;

		snprintf(key, sizeof(key), "nodes/%s", C.node[i].name);
		n = cluster_get(&C, key);
		if ((uint64_t)json_integer_value(json_object_get(n, "started_ms")) > latest)
			latest = (uint64_t)json_integer_value(json_object_get(n, "started_ms"));
		json_decref(n);
	}
	while (wall_ms() < latest + 4500)
		sleep_ms(100);
}

/* Watch vm on node for ms: true when its VMM said anything but "running" meanwhile (a
 * VMM too busy to answer within 2 s says nothing; the heartbeats tell the rest). */
static bool left_running(int node, const char *vm, int ms)
{
	char st[32];
	bool left = false;

	for (uint64_t end = now_ns() + ms * 1000000ull; now_ns() < end; sleep_ms(200)) {
		const char *s = vmm_state(node, vm, st, sizeof(st));

		left |= s[0] && strcmp(s, "running") != 0;
	}
	return left;
}

/* The owner record names the node again, at a later epoch than its running copy was
 * started for (the VM was owned elsewhere meanwhile; here the record is written by hand):
 * the old copy is stopped, never carried on under the new epoch, and the VM starts afresh
 * there under that epoch. */
static void test_stale_copy_not_adopted(void)
{
	long long epoch = 0;
	char own[128];
	pid_t old, now = 0, pid = 0;
	bool ok = false;
	json_t *st;
	int node;

	REQUIRE_KVM();
	START(3, NULL);
	node = guest_running("vm1");
	CU_ASSERT_FATAL(node >= 0);
	old = cluster_vmm_pid(&C, node, "vm1");
	CU_ASSERT_FATAL(old > 0);
	CU_ASSERT_EQUAL_FATAL(cluster_owner(&C, "vm1", &epoch), node);
	snprintf(own, sizeof(own), "{\"node\":\"%s\",\"epoch\":%lld}", C.node[node].name,
		 epoch + 2);
	CU_ASSERT_EQUAL_FATAL(cluster_put(&C, "vms/vm1/owner", own), 0);
	for (int t = 0; t < WAIT_MS && !cluster_has_event(&C, "vm-stale-copy", "vm1"); t += 200)
		sleep_ms(200);
	CU_ASSERT_TRUE(cluster_has_event(&C, "vm-stale-copy", "vm1"));
	for (int t = 0; t < WAIT_MS; t += 200) {
		now = cluster_vmm_pid(&C, node, "vm1");
		if (now > 0 && now != old)
			break;
		sleep_ms(200);
	}
	CU_ASSERT(now > 0 && now != old);
	CU_ASSERT(kill(old, 0) < 0); /* the old copy is gone (reaped by its daemon) */
	/* Its status: running, under the new epoch, by the new copy. */
	for (int t = 0; t < WAIT_MS; t += 200, sleep_ms(200)) {
		st = cluster_get(&C, "vms/vm1/status");
		ok = json_integer_value(json_object_get(st, "epoch")) == epoch + 2 &&
		     !strcmp(json_string_value(json_object_get(st, "state")) ?: "", "running");
		pid = (pid_t)json_integer_value(json_object_get(st, "pid"));
		json_decref(st);
		if (ok)
			break;
	}
	CU_ASSERT_TRUE(ok);
	CU_ASSERT_EQUAL(pid, now);
}

/* The owner record moves to the target of a migration that never committed (as a
 * restart does once its source is lost; here written by hand) while the incoming copy
 * there holds nothing whole: that copy never runs, and the VM starts afresh on the target
 * under the new epoch (before, the target asked the copy to commit, in vain, for ever). */
static void test_restart_onto_incomplete_target(void)
{
	char mig[512], own[128];
	long long epoch = 0;
	bool ok = false;
	json_t *st;
	int from, to;

	REQUIRE_KVM();
	START(3, NULL);
	from = guest_running("vm1");
	CU_ASSERT_FATAL(from >= 0);
	to = (from + 1) % 3;
	CU_ASSERT_EQUAL_FATAL(cluster_owner(&C, "vm1", &epoch), from);
	snprintf(mig, sizeof(mig),
		 "{\"id\":\"00c0ffee00c0ffef\",\"vm\":\"vm1\",\"source\":\"node-x\","
		 "\"target\":\"%s\",\"phase\":\"requested\"}",
		 C.node[to].name);
	CU_ASSERT_EQUAL_FATAL(cluster_put(&C, "migrations/vm1", mig), 0);
	CU_ASSERT_FATAL(cluster_wait_field(&C, "migrations/vm1", "phase", "ready", WAIT_MS));
	snprintf(own, sizeof(own), "{\"node\":\"%s\",\"epoch\":%lld}", C.node[to].name, epoch + 1);
	CU_ASSERT_EQUAL_FATAL(cluster_put(&C, "vms/vm1/owner", own), 0);
	for (int t = 0; t < WAIT_MS && !cluster_has_event(&C, "migrate-incomplete", "vm1");
	     t += 200)
		sleep_ms(200);
	CU_ASSERT_TRUE(cluster_has_event(&C, "migrate-incomplete", "vm1"));
	for (int t = 0; t < WAIT_MS && !ok; t += 200, sleep_ms(200)) {
		st = cluster_get(&C, "vms/vm1/status");
		ok = json_integer_value(json_object_get(st, "epoch")) == epoch + 1 &&
		     !strcmp(json_string_value(json_object_get(st, "state")) ?: "", "running") &&
		     !strcmp(json_string_value(json_object_get(st, "node")) ?: "", C.node[to].name);
		json_decref(st);
	}
	CU_ASSERT_TRUE(ok);
	CU_ASSERT_TRUE(wait_beats(to, "vm1", 2));
}

/* A post-copy whose source and target are both lost: nobody is left to end its record,
 * which held the VM's restart for ever. The leader fails it; the VM restarts on the third
 * node. */
static void test_postcopy_both_lost(void)
{
	both_lost("postcopy", "were both lost during post-copy");
}

/* Committed, the source alive but without its copy or worker any more (its "done" failed
 * to be written), and then the target lost: the source writes "done" late, and the VM
 * restarts (its record held the restart for ever). */
static void test_committed_target_lost_source_idle(void)
{
	int own, src;

	START(3, "ride_through = off\n");
	create("vm1", "on-failure", "0", NULL);
	own = wait_owner("vm1");
	CU_ASSERT_FATAL(own >= 0);
	src = (own + 1) % 3;
	put_migration("vm1", src, own, "committed", own, 2);
	kill_host(own);
	CU_ASSERT_TRUE(wait_moved("vm1", own, 3) >= 0);
}

/* The target of a post-copy lost its VMM while its daemon was down (so nothing was
 * adopted): back, the daemon once booted the VM afresh there while the source still held
 * the guest as of the switch, and the record stayed broken for ever. It says its copy
 * ended instead, which lets the source take the guest back. */
static void test_postcopy_target_gone_while_away(void)
{
	char meta[700];
	long long epoch = 0;
	int dst, src;

	START(3, NULL);
	create("vm1", "on-failure", "0", NULL);
	dst = wait_owner("vm1");
	CU_ASSERT_FATAL(dst >= 0);
	CU_ASSERT_EQUAL_FATAL(cluster_owner(&C, "vm1", &epoch), dst);
	src = (dst + 1) % 3;
	kill_host(dst);
	snprintf(meta, sizeof(meta), "%s/vms/vm1/meta.json", C.node[dst].state);
	unlink(meta);
	put_migration("vm1", src, dst, "postcopy", dst, (int)epoch + 1);
	CU_ASSERT_FATAL(cluster_node_start(&C, dst, NULL) == 0);
	CU_ASSERT_TRUE(test_wait_file_has(C.node[dst].log,
					  "status postcopy-broken: the VMM here ended during "
					  "post-copy while its daemon was away",
					  WAIT_MS));
}

/* etcd stops for everyone for twice the lease TTL: the three daemons confirm each other
 * over the peer channel and every guest runs on (without that, its deadline would pause
 * it after about 2 s); when etcd is back, nothing was lost, moved or fenced. */
static void test_etcd_outage_rides_through(void)
{
	long long epoch = 0, after = 0;
	int node, at_stop;

	REQUIRE_KVM();
	START(3, NULL);
	node = guest_running("vm1");
	CU_ASSERT_FATAL(node >= 0);
	cluster_owner(&C, "vm1", &epoch);
	wait_daemons_settled();
	etcd_proc_stop(&C.etcd);
	at_stop = beats(node, "vm1");
	CU_ASSERT_FALSE(left_running(node, "vm1", 7000)); /* 2 x TTL, and one more second */
	CU_ASSERT_TRUE(beats(node, "vm1") >= at_stop + 3);
	CU_ASSERT_FATAL(etcd_proc_restart(&C.etcd) == 0);
	/* Leases are renewed on etcd's return: watch two TTLs for anything moving. */
	CU_ASSERT_FALSE(left_running(node, "vm1", 6000));
	CU_ASSERT_EQUAL(cluster_owner(&C, "vm1", &after), node);
	CU_ASSERT_EQUAL(after, epoch);
	CU_ASSERT_FALSE(cluster_has_event(&C, "node-lost", NULL));
	CU_ASSERT_FALSE(cluster_has_event(&C, "vm-fenced", NULL));
	CU_ASSERT_FALSE(corrupt(node, "vm1"));
}

/* Node c (its daemon and VMMs in a network namespace) loses its link — during an etcd
 * outage, or with etcd up: it reaches neither etcd nor a majority, so its guest is fenced
 * by the deadline, while the others' guests run on; once its lease is gone (after etcd
 * returned), the leader gathers the releases of the two others and restarts the VM
 * elsewhere; the old copy never beats again; the link back, node c rejoins empty. */
static void partition(bool etcd_outage)
{
	char why[256], st[32], key[64];
	bool fenced = false;
	int rc, at_fence, at_cut, to, other;

	REQUIRE_KVM();
	rc = cluster_start_netns(&C, 3, NODE_MEM_MB, NULL, 2, why, sizeof(why));
	if (rc == -EPERM) {
		test_skip(why);
		return;
	}
	CU_ASSERT_FATAL(rc == 0);
	admin("drain", 0);
	admin("drain", 1);
	create_in_group("vm1", "g");
	CU_ASSERT_FATAL(wait_owner("vm1") == 2);
	admin("undrain", 0);
	admin("undrain", 1);
	create_in_group("vm2", "g"); /* so never on node c, beside vm1 */
	other = wait_owner("vm2");
	CU_ASSERT_FATAL(other >= 0 && other != 2);
	CU_ASSERT_FATAL(wait_beats(2, "vm1", 2) && wait_beats(other, "vm2", 2));
	wait_daemons_settled();
	if (etcd_outage)
		etcd_proc_stop(&C.etcd);
	CU_ASSERT_FATAL(netns_cut(&C.ns) == 0);
	for (int t = 0; t < WAIT_MS && !fenced; t += 100, sleep_ms(100))
		fenced = !strcmp(vmm_state(2, "vm1", st, sizeof(st)), "fenced");
	CU_ASSERT_FATAL(fenced);
	at_fence = beats(2, "vm1");
	at_cut = beats(other, "vm2");
	CU_ASSERT_FALSE(left_running(other, "vm2", etcd_outage ? 6000 : 1000));
	CU_ASSERT_TRUE(wait_beats(other, "vm2", at_cut + 2)); /* it runs on */
	if (etcd_outage)
		CU_ASSERT_FATAL(etcd_proc_restart(&C.etcd) == 0);
	to = wait_moved("vm1", 2, 2);
	CU_ASSERT_TRUE(to >= 0 && wait_beats(to, "vm1", 2));
	CU_ASSERT_TRUE(cluster_has_event(&C, "vm-ha-restart", "vm1"));
	CU_ASSERT_EQUAL(beats(2, "vm1"), at_fence);
	CU_ASSERT_FATAL(netns_restore(&C.ns) == 0);
	snprintf(key, sizeof(key), "nodes/%s", C.node[2].name);
	CU_ASSERT_TRUE(cluster_wait_field(&C, key, "name", C.node[2].name, WAIT_MS));
	for (int t = 0; t < WAIT_MS && cluster_vmm_pid(&C, 2, "vm1") > 0; t += 100)
		sleep_ms(100);
	CU_ASSERT_EQUAL(cluster_vmm_pid(&C, 2, "vm1"), 0); /* stopped, never resumed */
	CU_ASSERT_EQUAL(beats(2, "vm1"), at_fence);
	CU_ASSERT_FALSE(corrupt(to >= 0 ? to : 0, "vm1"));
}

static void test_partition(void)
{
	partition(false);
}

static void test_partition_during_outage(void)
{
	partition(true);
}

void suite_ha(void)
{
	static const struct test_case cases[] = {
		{ "host loss: its VMs restart elsewhere", test_host_loss },
		{ "host loss with a guest: it beats again elsewhere", test_host_loss_guest },
		{ "a hung daemon: its guest is fenced before the VM moves",
		  test_hung_daemon_fences },
		{ "a frozen host's VM with a disk: the restarted copy takes the image over",
		  test_frozen_host_disk },
		{ "etcd down for 2 x TTL: no guest stops, nothing moves",
		  test_etcd_outage_rides_through },
		{ "partition (network namespace): fenced, restarted elsewhere, rejoins empty",
		  test_partition },
		{ "partition during an etcd outage: still fenced, restarted once etcd is back",
		  test_partition_during_outage },
		{ "an adopted VMM's guest powers off: stopped, not restarted",
		  test_adopted_poweroff_is_not_a_crash },
		{ "the leader's host is lost: a new leader restarts its VMs",
		  test_leader_host_loss },
		{ "restart tiers: a lower priority waits for the tier timeout",
		  test_priority_tiers },
		{ "restart policy never: the VM stays, pending with the reason",
		  test_policy_never_stays },
		{ "admission control keeps room for one node's loss", test_admission_control },
		{ "a confidential VM where no node offers AMD SEV: refused, pending, named",
		  test_confidential_unplaced },
		{ "a stopped VM leaves a draining node once its owner says it stopped",
		  test_drain_stopped_vm },
		{ "a committed migration whose source and target are lost: the VM restarts",
		  test_committed_both_lost },
		{ "a post-copy taken back, its source then lost: the VM restarts",
		  test_taken_back_source_lost },
		{ "a restarted daemon keeps its lease: nothing moves",
		  test_daemon_restart_keeps_lease },
		{ "a lost node rejoins empty", test_lost_node_rejoins_empty },
		{ "a copy from an older ownership is stopped, not adopted",
		  test_stale_copy_not_adopted },
		{ "restarted onto a migration's target whose copy is incomplete: afresh",
		  test_restart_onto_incomplete_target },
		{ "a post-copy whose two nodes are lost: failed, the VM restarts",
		  test_postcopy_both_lost },
		{ "a post-copy target whose VMM ended while its daemon was away: no fresh boot",
		  test_postcopy_target_gone_while_away },
		{ "committed, the source idle, the target lost: done late, the VM restarts",
		  test_committed_target_lost_source_idle },
		{ NULL, NULL },
	};
	test_add_suite("ha", cases);
}

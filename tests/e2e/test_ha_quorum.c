/* End-to-end HA, the members and the leader's releases: members change one at a time;
 * only members vote; a leader gathers for a host that rides whatever its own setting;
 * releases from an earlier loss of a host are asked again. Records and pending reasons
 * only: no KVM needed. */
#include "e2e.h"
#include "e2e_cluster.h"
#include "ha_e2e.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Wait until record key is gone (a lease expired). */
static bool wait_absent(const char *key)
{
	json_t *j;

	for (int t = 0; (j = cluster_get(&C, key)); t += 100) {
		json_decref(j);
		if (t > WAIT_MS)
			return false;
		sleep_ms(100);
	}
	return true;
}

/* Releases gathered for one loss of a node do not stand for its next: leader a moved
 * vm1 off lost c, then froze; meanwhile c came back (a never saw it) and took vm2, then
 * was lost again while b, which could confirm it, was frozen. Back as leader, a once moved
 * vm2 at once on the old releases; it asks again, and only a answers. */
static void test_release_not_reused(void)
{
	static const char *const n1[] = { "vm1" }, *const p1[] = { "0" }, *const i1[] = { NULL };
	static const char lead_a[] = "{\"node\":\"node-a\",\"since_ms\":1}";

	START(3, NULL);
	wait_daemons_settled();
	create_on(2, n1, p1, i1, 1);
	CU_ASSERT_FATAL(cluster_put(&C, "leader", lead_a) == 0);
	kill_host(2);
	CU_ASSERT_FATAL(wait_moved("vm1", 2, 2) >= 0); /* a and b released c */
	CU_ASSERT_EQUAL_FATAL(kill(C.node[0].pid, SIGSTOP), 0);
	CU_ASSERT_FATAL(wait_absent("nodes/node-a"));
	CU_ASSERT_FATAL(cluster_put(&C, "leader", "{\"node\":\"node-b\",\"since_ms\":1}") == 0);
	CU_ASSERT_FATAL(cluster_node_start(&C, 2, NULL) == 0);
	CU_ASSERT_TRUE(cluster_wait_field(&C, "nodes/node-c", "name", "node-c", WAIT_MS));
	/* vm2 onto c: b in maintenance (a record written by hand: vm1 there cannot move) */
	CU_ASSERT_FATAL(cluster_put(&C, "admin/node-b", "{\"state\":\"maintenance\"}") == 0);
	create("vm2", "on-failure", "0", NULL);
	CU_ASSERT_EQUAL_FATAL(wait_owner("vm2"), 2);
	CU_ASSERT_EQUAL_FATAL(kill(C.node[1].pid, SIGSTOP), 0);
	kill_host(2);
	CU_ASSERT_FATAL(wait_absent("nodes/node-c") && wait_absent("nodes/node-b"));
	CU_ASSERT_FATAL(cluster_put(&C, "leader", lead_a) == 0);
	CU_ASSERT_EQUAL_FATAL(kill(C.node[0].pid, SIGCONT), 0);
	CU_ASSERT_TRUE(wait_status_has("vm2", "pending", "1 of 3 members confirm", 2 * WAIT_MS));
	CU_ASSERT_EQUAL(cluster_owner(&C, "vm2", NULL), 2);
	kill(C.node[1].pid, SIGCONT);
}

/* A leader that is not a member yet (it started while members were down) has no vote in
 * a lost node's release: counting itself, it once moved a VM whose host still rode on
 * another member's confirmation. Here the only other member left is frozen: no vote at
 * all. */
static void test_nonmember_leader_no_vote(void)
{
	CU_ASSERT_FATAL(cluster_start_held(&C, 4, 1, NODE_MEM_MB, NULL) == 0);
	wait_daemons_settled();
	admin("drain", 0);
	admin("drain", 1);
	create("vm1", "on-failure", "0", NULL);
	CU_ASSERT_EQUAL_FATAL(wait_owner("vm1"), 2);
	kill_host(1);
	kill_host(2);
	CU_ASSERT_FATAL(wait_absent("nodes/node-b") && wait_absent("nodes/node-c"));
	CU_ASSERT_EQUAL_FATAL(kill(C.node[0].pid, SIGSTOP), 0);
	CU_ASSERT_FATAL(cluster_node_start(&C, 3, NULL) == 0); /* leader once a's lease ends */
	CU_ASSERT_TRUE(test_wait_file_has(C.node[3].log, "not joining the members yet", WAIT_MS));
	CU_ASSERT_TRUE(wait_status_has("vm1", "pending", "0 of 3 members confirm", 2 * WAIT_MS));
	CU_ASSERT_EQUAL(cluster_owner(&C, "vm1", NULL), 2);
	kill(C.node[0].pid, SIGCONT);
}

/* The lost node rode through outages; the leader's own ride_through is off. It still
 * gathers releases before moving the VM (it once moved it on the lease alone). */
static void test_ride_off_leader_gathers(void)
{
	static const char *const names[] = { "vm1" }, *const prios[] = { "0" };
	static const char *const images[] = { NULL };

	START(3, NULL);
	wait_daemons_settled();
	create_on(2, names, prios, images, 1);
	snprintf(C.extra_conf, sizeof(C.extra_conf), "ride_through = off\n");
	CU_ASSERT_FATAL(cluster_node_reconfigure(&C, 0) == 0);
	CU_ASSERT_TRUE(test_wait_file_has(C.node[0].log, "took over its previous lease", WAIT_MS));
	kill_host(1);
	kill_host(2);
	CU_ASSERT_TRUE(wait_status_has("vm1", "pending", "1 of 3 members confirm", 2 * WAIT_MS));
	CU_ASSERT_EQUAL(cluster_owner(&C, "vm1", NULL), 2);
}

/* Every node up names one member list in its record, not `before` (nor none). */
static bool same_members(const char *before)
{
	char first[64] = "", key[64];
	bool same = true;

	for (int i = 0; i < C.n && same; i++) {
		json_t *j;
		const char *m;

		snprintf(key, sizeof(key), "nodes/%s", C.node[i].name);
		if (!(j = cluster_get(&C, key)))
			continue; /* down */
		m = json_string_value(json_object_get(j, "members"));
		same = m && m[0] && strcmp(m, before) && (!first[0] || !strcmp(m, first));
		if (same && !first[0])
			snprintf(first, sizeof(first), "%s", m);
		json_decref(j);
	}
	return same;
}

/* HA's majorities are counted over the members; a node and the leader may count over
 * different lists only if those differ by one change, or two majorities could miss each
 * other. So members change one at a time, and only while every member is up and counts
 * over the current list: a node started while a member is down stays out until it is
 * back, and a member is not forgotten while another is down. */
static void test_members_change_one_at_a_time(void)
{
	char *out = NULL, *err = NULL, three[64];
	bool same = false;
	json_t *j;
	int rc;

	CU_ASSERT_FATAL(cluster_start_held(&C, 4, 1, NODE_MEM_MB, NULL) == 0);
	/* c runs a VM (restart never: it stays c's), so c down blocks changes. */
	admin("drain", 0);
	admin("drain", 1);
	create("keep", "never", "0", NULL);
	CU_ASSERT_EQUAL_FATAL(wait_owner("keep"), 2);
	admin("undrain", 0);
	admin("undrain", 1);
	cluster_node_kill(&C, 2);
	CU_ASSERT_FATAL(wait_absent("nodes/node-c"));
	CU_ASSERT_FATAL(cluster_node_start(&C, 3, NULL) == 0);
	CU_ASSERT_TRUE(test_wait_file_has(
		C.node[3].log, "not joining the members yet: member node-c is down", WAIT_MS));
	CU_ASSERT_TRUE(cluster_wait_field(&C, "nodes/node-d", "name", "node-d", WAIT_MS));
	j = cluster_get(&C, "members/node-d");
	CU_ASSERT_PTR_NULL(j); /* registered, runs VMs, but does not count */
	json_decref(j);
	j = cluster_get(&C, "nodes/node-a"); /* the list of three it counts over */
	snprintf(three, sizeof(three), "%s",
		 json_string_value(json_object_get(j, "members")) ?: "");
	json_decref(j);
	CU_ASSERT_EQUAL(strlen(three), 32);

	/* b, which runs nothing, may go down: no forget while c (with its VM) is down. */
	cluster_node_kill(&C, 1);
	CU_ASSERT_FATAL(wait_absent("nodes/node-b"));
	rc = cmectl(&C, &out, &err, "node", "forget", "node-b", NULL);
	cluster_expect_said(rc, 1,
			    "the member list may not change now: member "
			    "node-c is down",
			    out, err);
	j = cluster_get(&C, "members/node-b");
	CU_ASSERT_PTR_NOT_NULL(j);
	json_decref(j);

	/* c back: node-d joins (b, down with nothing, does not hold it up)... */
	CU_ASSERT_FATAL(cluster_node_start(&C, 2, NULL) == 0);
	CU_ASSERT_TRUE(cluster_wait_field(&C, "members/node-d", "name", "node-d", WAIT_MS));
	/* ... and b, gone for good, may be forgotten now: four members leave three. */
	for (int t = 0; t < WAIT_MS; t += 200, sleep_ms(200)) {
		out = err = NULL;
		rc = cmectl(&C, &out, &err, "node", "forget", "node-b", NULL);
		free(out);
		free(err);
		if (!rc)
			break;
	}
	CU_ASSERT_EQUAL(rc, 0);
	j = cluster_get(&C, "members/node-b");
	CU_ASSERT_PTR_NULL(j);
	json_decref(j);
	/* Every node up comes to count over the same new list. */
	for (int t = 0; t < WAIT_MS && !same; t += 200, sleep_ms(200))
		same = same_members(three);
	CU_ASSERT_TRUE(same);
}

void suite_ha_quorum(void)
{
	static const struct test_case cases[] = {
		{ "members change one at a time, with every member up",
		  test_members_change_one_at_a_time },
		{ "releases gathered for one loss of a node do not stand for the next",
		  test_release_not_reused },
		{ "a leader that is not a member yet has no vote in a release",
		  test_nonmember_leader_no_vote },
		{ "a leader with ride_through off still gathers releases for a rider",
		  test_ride_off_leader_gathers },
		{ NULL, NULL },
	};

	test_add_suite("ha_quorum", cases);
}

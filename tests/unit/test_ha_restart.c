/* ha/restart.c: which VMs of dead nodes are restarted, in priority tiers, with capacity
 * and anti-affinity respected, and admission control's room for one node's loss. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "ha.h"
#include "harness.h"
#include "unit.h"

#define NODE(n, c, m)                                                                              \
	{                                                                                          \
		.name = (n), .alive = true, .admin = HA_SCHEDULABLE, .cpus = (c), .mem_mb = (m)    \
	}
/* An HA VM (restart set) owned by own. */
#define HAVM(n, m, own, prio)                                                                      \
	{                                                                                          \
		.name = (n), .vcpus = 1, .mem_mb = (m), .owner = (own), .priority = (prio),        \
		.wanted = true, .restart = true                                                    \
	}
#define CLUSTER(ns, vs)                                                                            \
	{                                                                                          \
		.nodes = (ns), .nnodes = ARRAY_SIZE(ns), .vms = (vs), .nvms = ARRAY_SIZE(vs)       \
	}

static void test_restart_candidates(void)
{
	struct ha_node nodes[] = { NODE("a", 16, 16384), NODE("b", 16, 8192),
				   NODE("c", 16, 16384) };
	struct ha_vm vms[] = { HAVM("x", 1024, "a", 0),	   HAVM("never", 1024, "a", 0),
			       HAVM("off", 1024, "a", 0),  HAVM("moving", 1024, "a", 0),
			       HAVM("fine", 1024, "b", 0), HAVM("lost", 1024, "gone", 0) };
	const struct ha_cluster c = CLUSTER(nodes, vms);
	struct ha_restart_wait w = { .waiting = true };
	struct ha_move m[8];
	size_t n;

	nodes[0].alive = false;
	vms[1].restart = false; /* policy never */
	vms[2].wanted = false;	/* stopped by the operator */
	vms[3].target = "c";	/* a migration in flight: not ours to restart */
	vms[4].running = true;	/* its node lives */
	n = ha_restart_plan(&c, INT_MAX, m, ARRAY_SIZE(m), &w);
	/* Both go to c (most memory free), the second seeing the first's reservation. */
	CU_ASSERT_STRING_EQUAL(moves_str(&c, m, n), "lost>c x>c");
	CU_ASSERT_FALSE(w.waiting);
	n = ha_restart_plan(&c, INT_MAX, m, 1, NULL); /* cap */
	CU_ASSERT_STRING_EQUAL(moves_str(&c, m, n), "lost>c");
	nodes[0].alive = true; /* nothing is dead: nothing to do (except the unknown node) */
	n = ha_restart_plan(&c, INT_MAX, m, ARRAY_SIZE(m), NULL);
	CU_ASSERT_STRING_EQUAL(moves_str(&c, m, n), "lost>c");
}

static void test_restart_tiers(void)
{
	struct ha_node nodes[] = { NODE("a", 16, 16384), NODE("b", 16, 16384) };
	struct ha_vm vms[] = { HAVM("lo", 1024, "a", 0), HAVM("hi", 1024, "a", 10),
			       HAVM("hi2", 1024, "a", 10), HAVM("mid", 1024, "a", 5) };
	const struct ha_cluster c = CLUSTER(nodes, vms);
	struct ha_restart_wait w;
	struct ha_move m[8];
	size_t n;

	nodes[0].alive = false;
	n = ha_restart_plan(&c, INT_MAX, m, ARRAY_SIZE(m), &w);
	CU_ASSERT_STRING_EQUAL(moves_str(&c, m, n), "hi>b hi2>b"); /* one tier at a time */
	CU_ASSERT_TRUE(w.waiting);
	CU_ASSERT_EQUAL(w.priority, 5);
	CU_ASSERT_EQUAL(w.blocker, 1);
	vms[1].owner = vms[2].owner = "b"; /* restarted, not running yet */
	n = ha_restart_plan(&c, INT_MAX, m, ARRAY_SIZE(m), &w);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_TRUE(w.waiting && w.priority == 5 && w.blocker == 1);
	/* The tier timeout passed: mid goes, and lo waits for it. */
	n = ha_restart_plan(&c, 5, m, ARRAY_SIZE(m), &w);
	CU_ASSERT_STRING_EQUAL(moves_str(&c, m, n), "mid>b");
	CU_ASSERT_TRUE(w.waiting && w.priority == 0 && w.blocker == 1); /* hi still starts */
	vms[3].owner = "b";
	vms[1].running = vms[2].running = vms[3].running = true; /* the tiers above run */
	n = ha_restart_plan(&c, INT_MAX, m, ARRAY_SIZE(m), &w);
	CU_ASSERT_STRING_EQUAL(moves_str(&c, m, n), "lo>b");
	CU_ASSERT_FALSE(w.waiting);
	/* A starting VM without restart set holds nobody back. */
	vms[1].restart = false;
	vms[1].running = false;
	n = ha_restart_plan(&c, INT_MAX, m, ARRAY_SIZE(m), &w);
	CU_ASSERT_STRING_EQUAL(moves_str(&c, m, n), "lo>b");
}

/* With room for only some, the highest priorities get it; one that finds no place does not
 * hold back the tiers below it. */
static void test_restart_capacity(void)
{
	struct ha_node nodes[] = { NODE("a", 16, 16384), NODE("b", 16, 2048) };
	struct ha_vm vms[] = { HAVM("hi", 1024, "a", 5), HAVM("mid", 2048, "a", 3),
			       HAVM("lo", 1024, "a", 1) };
	const struct ha_cluster c = CLUSTER(nodes, vms);
	struct ha_restart_wait w;
	struct ha_move m[8];
	size_t n;

	nodes[0].alive = false;
	n = ha_restart_plan(&c, INT_MAX, m, ARRAY_SIZE(m), &w);
	CU_ASSERT_STRING_EQUAL(moves_str(&c, m, n), "hi>b");
	vms[0].owner = "b";
	vms[0].running = true;
	n = ha_restart_plan(&c, INT_MAX, m, ARRAY_SIZE(m), &w);
	CU_ASSERT_STRING_EQUAL(moves_str(&c, m, n), "lo>b"); /* mid (2048) no longer fits */
	CU_ASSERT_FALSE(w.waiting);
}

static void test_restart_anti_affinity(void)
{
	struct ha_node nodes[] = { NODE("a", 16, 16384), NODE("b", 16, 16384),
				   NODE("c", 16, 4096) };
	struct ha_vm vms[] = { HAVM("w1", 1024, "a", 0), HAVM("w2", 1024, "a", 0),
			       HAVM("w3", 1024, "a", 0) };
	const struct ha_cluster c = CLUSTER(nodes, vms);
	struct ha_move m[8];
	size_t n;

	nodes[0].alive = false;
	for (size_t i = 0; i < ARRAY_SIZE(vms); i++)
		vms[i].group = "web";
	n = ha_restart_plan(&c, INT_MAX, m, ARRAY_SIZE(m), NULL);
	CU_ASSERT_STRING_EQUAL(moves_str(&c, m, n), "w1>b w2>c"); /* w3: no third node */
}

static void test_admit(void)
{
	struct ha_node nodes[] = { NODE("a", 4, 4096), NODE("b", 4, 4096), NODE("c", 4, 4096) };
	struct ha_vm vms[] = { HAVM("x", 3072, "a", 0), HAVM("y", 2048, "b", 0),
			       HAVM("z", 2048, "c", 0) };
	const struct ha_cluster c = CLUSTER(nodes, vms);
	struct ha_move scratch[3];
	char why[512] = "stale";

	/* a's loss: x (3072) fits nowhere, b and c have 2048 free each. */
	CU_ASSERT_EQUAL(ha_admit(&c, scratch, ARRAY_SIZE(scratch), why, sizeof(why)), -ENOSPC);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "if a failed, no node can take vm x"));
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "b has 2048 MiB/3 vCPUs free"));
	vms[0].restart = false; /* not HA: its loss needs no room */
	CU_ASSERT_EQUAL(ha_admit(&c, scratch, ARRAY_SIZE(scratch), why, sizeof(why)), 0);
	CU_ASSERT_STRING_EQUAL(why, "");
	/* b's loss: y must fit on a or c; once x grows it does not. */
	vms[2].restart = false;
	vms[2].mem_mb = 3072;
	vms[0].mem_mb = 2048;
	CU_ASSERT_EQUAL(ha_admit(&c, scratch, ARRAY_SIZE(scratch), why, sizeof(why)), 0);
	vms[0].mem_mb = 3072;
	CU_ASSERT_EQUAL(ha_admit(&c, scratch, ARRAY_SIZE(scratch), why, sizeof(why)), -ENOSPC);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "if b failed, no node can take vm y"));
	nodes[1].alive = false; /* b already down: y is an orphan in every what-if */
	CU_ASSERT_EQUAL(ha_admit(&c, scratch, ARRAY_SIZE(scratch), why, sizeof(why)), -ENOSPC);
	CU_ASSERT_EQUAL(ha_admit(&c, scratch, 2, why, sizeof(why)), -E2BIG);
}

void suite_ha_restart(void)
{
	static const struct test_case cases[] = {
		{ "restart: which VMs, where", test_restart_candidates },
		{ "restart: priority tiers and their timeout", test_restart_tiers },
		{ "restart: the highest priorities get the room", test_restart_capacity },
		{ "restart: anti-affinity and reservations", test_restart_anti_affinity },
		{ "admission control: room for one node's loss", test_admit },
		{ NULL, NULL },
	};
	test_add_suite("ha-restart", cases);
}

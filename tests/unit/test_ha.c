/* ha/: placement, its reason line, usage accounting and drain planning, over plain structs. */
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
#define VM(n, c, m, own)                                                                           \
	{                                                                                          \
		.name = (n), .vcpus = (c), .mem_mb = (m), .owner = (own), .wanted = true           \
	}
#define CLUSTER(ns, vs)                                                                            \
	{                                                                                          \
		.nodes = (ns), .nnodes = ARRAY_SIZE(ns), .vms = (vs), .nvms = ARRAY_SIZE(vs)       \
	}

static const struct ha_vm web1 = { .name = "web1", .vcpus = 2, .mem_mb = 1024, .group = "web" };

static void test_admin_names(void)
{
	enum ha_admin a = HA_SCHEDULABLE;

	CU_ASSERT_TRUE(ha_admin_parse("draining", &a));
	CU_ASSERT_EQUAL(a, HA_DRAINING);
	CU_ASSERT_TRUE(ha_admin_parse("maintenance", &a));
	CU_ASSERT_EQUAL(a, HA_MAINTENANCE);
	CU_ASSERT_TRUE(ha_admin_parse("schedulable", &a));
	CU_ASSERT_EQUAL(a, HA_SCHEDULABLE);
	a = HA_DRAINING;
	CU_ASSERT_FALSE(ha_admin_parse("Draining", &a));
	CU_ASSERT_FALSE(ha_admin_parse("", &a));
	CU_ASSERT_FALSE(ha_admin_parse(NULL, &a));
	CU_ASSERT_EQUAL(a, HA_DRAINING); /* untouched on failure */
	CU_ASSERT_STRING_EQUAL(ha_admin_name(HA_SCHEDULABLE), "schedulable");
	CU_ASSERT_STRING_EQUAL(ha_admin_name(HA_DRAINING), "draining");
	CU_ASSERT_STRING_EQUAL(ha_admin_name(HA_MAINTENANCE), "maintenance");
	CU_ASSERT_STRING_EQUAL(ha_admin_name((enum ha_admin)7), "unknown");
}

static void test_usage_counts_migration_on_both_nodes(void)
{
	const struct ha_node nodes[] = { NODE("a", 16, 16384), NODE("b", 16, 16384),
					 NODE("c", 16, 16384) };
	struct ha_vm vms[] = { VM("m", 2, 2048, "a"), VM("s", 1, 512, "a"), VM("off", 4, 4096, "a"),
			       VM("same", 1, 256, "c") };
	const struct ha_cluster c = CLUSTER(nodes, vms);
	uint32_t cpus;
	uint64_t mem;

	vms[0].target = "b"; /* in flight: both copies exist */
	vms[2].wanted = false;
	vms[3].target = "c"; /* owner and target the same node: one copy */
	ha_node_usage(&c, 0, &cpus, &mem);
	CU_ASSERT_EQUAL(cpus, 3);
	CU_ASSERT_EQUAL(mem, 2560);
	ha_node_usage(&c, 1, &cpus, &mem);
	CU_ASSERT_EQUAL(cpus, 2);
	CU_ASSERT_EQUAL(mem, 2048);
	ha_node_usage(&c, 2, &cpus, &mem);
	CU_ASSERT_EQUAL(cpus, 1);
	CU_ASSERT_EQUAL(mem, 256);
}

static void test_place_most_free_memory(void)
{
	const struct ha_node nodes[] = { NODE("a", 8, 4096), NODE("b", 8, 8192),
					 NODE("c", 8, 6144) };
	struct ha_vm vms[] = { VM("x", 1, 4096, NULL) };
	const struct ha_cluster c = CLUSTER(nodes, vms);
	char why[256] = "stale";

	CU_ASSERT_EQUAL(ha_place(&c, &web1, NULL, why, sizeof(why)), 1);
	CU_ASSERT_STRING_EQUAL(why, ""); /* cleared on success */
	vms[0].owner = "b";		 /* b: 4096 free, c: 6144 */
	CU_ASSERT_EQUAL(ha_place(&c, &web1, NULL, NULL, 0), 2);
}

static void test_place_ties(void)
{
	const struct ha_node nodes[] = { NODE("d", 8, 4096), NODE("c", 16, 4096),
					 NODE("b", 16, 4096) };
	const struct ha_cluster c = { .nodes = nodes, .nnodes = ARRAY_SIZE(nodes) };

	/* Same memory: c and b have more vCPUs than d; same vCPUs: b's name is smaller. */
	CU_ASSERT_EQUAL(ha_place(&c, &web1, NULL, NULL, 0), 2);
}

static void test_place_capacity_and_reason(void)
{
	const struct ha_node nodes[] = { NODE("node-a", 4, 2048), NODE("node-b", 1, 8192),
					 NODE("node-c", 2, 1024) };
	struct ha_vm vms[] = { VM("x", 1, 1536, "node-a"), VM("y", 1, 1, "node-c") };
	const struct ha_cluster c = CLUSTER(nodes, vms);
	char why[256];

	CU_ASSERT_EQUAL(ha_place(&c, &web1, NULL, why, sizeof(why)), -1);
	CU_ASSERT_STRING_EQUAL(why, "no node can take vm web1 (2 vCPUs, 1024 MiB): node-a has "
				    "512 MiB/3 vCPUs free; node-b has 8192 MiB/1 vCPUs free; "
				    "node-c has 1023 MiB/1 vCPUs free");
	vms[1].wanted = false; /* node-c now has exactly what web1 needs */
	CU_ASSERT_EQUAL(ha_place(&c, &web1, NULL, why, sizeof(why)), 2);
}

static void test_place_reasons_for_every_node(void)
{
	struct ha_node nodes[] = { NODE("node-a", 8, 512), NODE("node-b", 8, 8192),
				   NODE("node-c", 8, 8192), NODE("node-d", 8, 8192),
				   NODE("node-e", 8, 8192) };
	struct ha_vm vms[] = { VM("web2", 1, 512, "node-d") };
	const struct ha_cluster c = CLUSTER(nodes, vms);
	char why[512], small[10];

	vms[0].group = "web";
	nodes[1].admin = HA_DRAINING;
	nodes[2].alive = false;
	nodes[4].admin = HA_MAINTENANCE;
	CU_ASSERT_EQUAL(ha_place(&c, &web1, NULL, why, sizeof(why)), -1);
	CU_ASSERT_STRING_EQUAL(why, "no node can take vm web1 (2 vCPUs, 1024 MiB): node-a has "
				    "512 MiB/8 vCPUs free; node-b is draining; node-c is down; "
				    "node-d already runs web2 of anti-affinity group \"web\"; "
				    "node-e is in maintenance");
	CU_ASSERT_EQUAL(ha_place(&c, &web1, NULL, small, sizeof(small)), -1);
	CU_ASSERT_STRING_EQUAL(small, "no node c"); /* truncated, terminated */
	CU_ASSERT_EQUAL(ha_place(&c, &web1, NULL, NULL, 0), -1);
}

static void test_place_no_nodes(void)
{
	const struct ha_cluster c = { 0 };
	char why[128];

	CU_ASSERT_EQUAL(ha_place(&c, &web1, NULL, why, sizeof(why)), -1);
	CU_ASSERT_STRING_EQUAL(why, "no node can take vm web1 (2 vCPUs, 1024 MiB): the cluster "
				    "has no nodes");
}

static void test_place_exclude(void)
{
	const struct ha_node nodes[] = { NODE("a", 8, 8192), NODE("b", 8, 2048) };
	const struct ha_cluster c = { .nodes = nodes, .nnodes = ARRAY_SIZE(nodes) };
	const struct ha_cluster one = { .nodes = nodes, .nnodes = 1 };
	char why[128];

	CU_ASSERT_EQUAL(ha_place(&c, &web1, "a", NULL, 0), 1);
	CU_ASSERT_EQUAL(ha_place(&one, &web1, "a", why, sizeof(why)), -1);
	CU_ASSERT_STRING_EQUAL(why, "no node can take vm web1 (2 vCPUs, 1024 MiB): a is the node "
				    "it leaves");
}

static void test_place_anti_affinity(void)
{
	const struct ha_node nodes[] = { NODE("a", 8, 8192), NODE("b", 8, 4096),
					 NODE("c", 8, 2048) };
	struct ha_vm vms[] = { VM("web2", 1, 512, "a"), VM("web3", 1, 512, "c"),
			       VM("db1", 1, 512, "b") };
	const struct ha_cluster c = CLUSTER(nodes, vms);
	char why[256];

	vms[0].group = vms[1].group = "web";
	CU_ASSERT_EQUAL(ha_place(&c, &web1, NULL, NULL, 0), 1);
	vms[1].target = "b"; /* web3 migrating c -> b holds b too */
	CU_ASSERT_EQUAL(ha_place(&c, &web1, NULL, why, sizeof(why)), -1);
	CU_ASSERT_STRING_EQUAL(why, "no node can take vm web1 (2 vCPUs, 1024 MiB): a already runs "
				    "web2 of anti-affinity group \"web\"; b already runs web3 of "
				    "anti-affinity group \"web\"; c already runs web3 of "
				    "anti-affinity group \"web\"");
	vms[0].wanted = false; /* a stopped member takes no slot */
	CU_ASSERT_EQUAL(ha_place(&c, &web1, NULL, NULL, 0), 0);
}

static void test_place_empty_group_is_none(void)
{
	const struct ha_node nodes[] = { NODE("a", 8, 8192), NODE("b", 8, 2048) };
	struct ha_vm vms[] = { VM("x", 1, 512, "a"), VM("y", 1, 512, NULL) };
	const struct ha_cluster c = CLUSTER(nodes, vms);

	vms[0].group = vms[1].group = "";
	CU_ASSERT_EQUAL(ha_place(&c, &vms[1], NULL, NULL, 0), 0);
}

static void test_place_vm_not_counted_against_itself(void)
{
	const struct ha_node nodes[] = { NODE("a", 2, 1024) };
	struct ha_vm vms[] = { VM("web1", 2, 1024, "a") };
	const struct ha_cluster c = CLUSTER(nodes, vms);
	struct ha_vm copy = vms[0];

	vms[0].group = copy.group = "web";
	CU_ASSERT_EQUAL(ha_place(&c, &vms[0], NULL, NULL, 0), 0);
	CU_ASSERT_EQUAL(ha_place(&c, &copy, NULL, NULL, 0), 0); /* same name, other pointer */
	copy.name = "web9";					/* another VM: a is full */
	CU_ASSERT_EQUAL(ha_place(&c, &copy, NULL, NULL, 0), -1);
}

const char *moves_str(const struct ha_cluster *c, const struct ha_move *m, size_t n)
{
	static char buf[256];
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && off < sizeof(buf); i++)
		off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%s>%s", i ? " " : "",
					c->vms[m[i].vm].name, c->nodes[m[i].node].name);
	return buf;
}

static void test_drain_limits(void)
{
	struct ha_node nodes[] = { NODE("src", 16, 16384), NODE("t1", 16, 16384),
				   NODE("t2", 16, 16384), NODE("src2", 16, 16384) };
	struct ha_vm vms[] = { VM("a", 1, 1024, "src"), VM("b", 1, 1024, "src"),
			       VM("c", 1, 1024, "src"), VM("d", 1, 1024, "src"),
			       VM("e", 1, 1024, "src2") };
	const struct ha_cluster c = CLUSTER(nodes, vms);
	struct ha_move m[8];
	size_t n;

	nodes[0].admin = HA_DRAINING;
	nodes[3].admin = HA_MAINTENANCE;
	vms[3].priority = 5;
	n = ha_drain_plan(&c, 8, 2, m, ARRAY_SIZE(m));
	CU_ASSERT_STRING_EQUAL(moves_str(&c, m, n), "d>t1 a>t2 e>t1");
	n = ha_drain_plan(&c, 2, 8, m, ARRAY_SIZE(m));
	CU_ASSERT_STRING_EQUAL(moves_str(&c, m, n), "d>t1 a>t2");
	n = ha_drain_plan(&c, 8, 8, m, 1);
	CU_ASSERT_STRING_EQUAL(moves_str(&c, m, n), "d>t1");
	CU_ASSERT_EQUAL(ha_drain_plan(&c, 0, 8, m, ARRAY_SIZE(m)), 0);
	CU_ASSERT_EQUAL(ha_drain_plan(&c, 8, 0, m, ARRAY_SIZE(m)), 0);
}

static void test_drain_counts_migrations_in_flight(void)
{
	struct ha_node nodes[] = { NODE("src", 16, 16384), NODE("t1", 16, 16384),
				   NODE("t2", 16, 16384) };
	struct ha_vm vms[] = { VM("a", 1, 1024, "src"), VM("b", 1, 1024, "src"),
			       VM("c", 1, 1024, "src"), VM("x", 1, 1024, "t1") };
	const struct ha_cluster c = CLUSTER(nodes, vms);
	struct ha_move m[8];
	size_t n;

	nodes[0].admin = HA_DRAINING;
	vms[3].target = "t2"; /* elsewhere in the cluster: counts cluster-wide only */
	n = ha_drain_plan(&c, 2, 8, m, ARRAY_SIZE(m));
	CU_ASSERT_STRING_EQUAL(moves_str(&c, m, n), "a>t1");
	vms[0].target = "t2"; /* a leaves src already: not planned again, counts for src */
	n = ha_drain_plan(&c, 8, 2, m, ARRAY_SIZE(m));
	CU_ASSERT_STRING_EQUAL(moves_str(&c, m, n), "b>t1");
	n = ha_drain_plan(&c, 3, 8, m, ARRAY_SIZE(m));
	CU_ASSERT_STRING_EQUAL(moves_str(&c, m, n), "b>t1");
}

static void test_drain_reserves_capacity(void)
{
	struct ha_node nodes[] = { NODE("src", 16, 32768), NODE("t1", 16, 6144),
				   NODE("t2", 16, 5000) };
	struct ha_vm vms[] = { VM("v1", 1, 4096, "src"), VM("v2", 1, 4096, "src"),
			       VM("v3", 1, 4096, "src"), VM("v4", 1, 512, "src") };
	const struct ha_cluster c = CLUSTER(nodes, vms);
	struct ha_move m[8];
	size_t n;

	nodes[0].admin = HA_DRAINING;
	vms[0].priority = 3;
	vms[1].priority = 2;
	vms[2].priority = 1;
	/* v1 and v2 each fit once on t1; v3 fits nowhere after them and is left out. */
	n = ha_drain_plan(&c, 8, 8, m, ARRAY_SIZE(m));
	CU_ASSERT_STRING_EQUAL(moves_str(&c, m, n), "v1>t1 v2>t2 v4>t1");
}

static void test_drain_reserves_group_slot(void)
{
	struct ha_node nodes[] = { NODE("src", 16, 16384), NODE("big", 16, 16384),
				   NODE("small", 16, 4096) };
	struct ha_vm vms[] = { VM("web1", 1, 1024, "src"), VM("web2", 1, 1024, "src"),
			       VM("web3", 1, 1024, "src") };
	const struct ha_cluster c = CLUSTER(nodes, vms);
	struct ha_move m[8];
	size_t n;

	nodes[0].admin = HA_MAINTENANCE;
	vms[0].group = vms[1].group = vms[2].group = "web";
	n = ha_drain_plan(&c, 8, 8, m, ARRAY_SIZE(m));
	CU_ASSERT_STRING_EQUAL(moves_str(&c, m, n), "web1>big web2>small");
}

static void test_drain_order_and_what_it_leaves(void)
{
	struct ha_node nodes[] = { NODE("src", 16, 16384), NODE("dead", 16, 16384),
				   NODE("t", 16, 16384) };
	struct ha_vm vms[] = { VM("b", 1, 1024, "src"),	  VM("a", 1, 1024, "src"),
			       VM("z", 1, 1024, "src"),	  VM("low", 1, 1024, "src"),
			       VM("off", 1, 1024, "src"), VM("lost", 1, 1024, "dead"),
			       VM("stay", 1, 1024, "t"),  VM("free", 1, 1024, NULL) };
	const struct ha_cluster c = CLUSTER(nodes, vms);
	struct ha_move m[8];
	size_t n;

	nodes[0].admin = HA_DRAINING;
	nodes[1].admin = HA_DRAINING;
	nodes[1].alive = false;
	vms[2].priority = 10;
	vms[3].priority = -1;
	vms[4].wanted = false; /* stopped: the caller reassigns it */
	n = ha_drain_plan(&c, 8, 8, m, ARRAY_SIZE(m));
	CU_ASSERT_STRING_EQUAL(moves_str(&c, m, n), "z>t a>t b>t low>t");
	CU_ASSERT_EQUAL(m[0].vm, 2);
	CU_ASSERT_EQUAL(m[0].node, 2);
}

/* ---- CPU features ------------------------------------------------------------------ */

#define V2_HOST "fpu,sse2,cx16,popcnt,sse3,sse4_2"
#define V3_HOST V2_HOST ",avx,avx2,bmi2"

static void test_cpu_lacks(void)
{
	const struct ha_node big = { .name = "big", .cpu_features = V3_HOST },
			     old = { .name = "old" };
	struct ha_vm vm = { .name = "v", .cpu_need = "avx2,bmi2,sse3" };
	char out[64];

	CU_ASSERT_EQUAL(ha_cpu_lacks(&big, &vm, out, sizeof(out)), 0);
	CU_ASSERT_STRING_EQUAL(out, "");
	vm.cpu_need = "avx2,avx512f,bmi2,amx_tile";
	CU_ASSERT_EQUAL(ha_cpu_lacks(&big, &vm, out, sizeof(out)), 2);
	CU_ASSERT_STRING_EQUAL(out, "avx512f, amx_tile");
	/* A node that publishes nothing offers nothing; a VM that needs nothing fits it. */
	CU_ASSERT_EQUAL(ha_cpu_lacks(&old, &vm, NULL, 0), 4);
	vm.cpu_need = NULL;
	CU_ASSERT_EQUAL(ha_cpu_lacks(&old, &vm, out, sizeof(out)), 0);
	vm.cpu_need = "";
	CU_ASSERT_EQUAL(ha_cpu_lacks(&old, &vm, out, sizeof(out)), 0);
}

/* Placement skips nodes whose CPU lacks what the VM needs, and says so; among the rest the
 * usual rule (most free memory) decides. */
static void test_place_cpu_features(void)
{
	struct ha_node nodes[] = { NODE("a", 8, 16384), NODE("b", 8, 4096), NODE("c", 8, 8192) };
	struct ha_vm vms[] = { VM("x", 1, 512, "b") };
	const struct ha_cluster c = CLUSTER(nodes, vms);
	struct ha_vm v3 = { .name = "v3", .vcpus = 1, .mem_mb = 1024, .cpu_need = "avx2,bmi2" };
	char why[512];

	nodes[0].cpu_features = V2_HOST; /* the most memory, but no AVX2 */
	nodes[1].cpu_features = V3_HOST;
	nodes[2].cpu_features = NULL; /* publishes nothing */
	CU_ASSERT_EQUAL(ha_place(&c, &v3, NULL, why, sizeof(why)), 1);
	CU_ASSERT_STRING_EQUAL(why, "");
	nodes[1].cpu_features = V2_HOST ",avx2";
	CU_ASSERT_EQUAL(ha_place(&c, &v3, NULL, why, sizeof(why)), -1);
	CU_ASSERT_STRING_EQUAL(why,
			       "no node can take vm v3 (1 vCPUs, 1024 MiB): a lacks CPU "
			       "features avx2, bmi2; b lacks CPU features bmi2; c publishes no "
			       "CPU features (an older cme-clusterd)");
	/* A VM that needs nothing goes where the memory is, features or none. */
	v3.cpu_need = NULL;
	CU_ASSERT_EQUAL(ha_place(&c, &v3, NULL, why, sizeof(why)), 0);
}

/* A drain moves a VM only to a node whose CPU offers what the VM sees: a VM on "host"
 * needs its own node's features; one that fits nowhere stays, for the caller to report. */
static void test_drain_cpu_features(void)
{
	struct ha_node nodes[] = { NODE("src", 16, 16384), NODE("small", 16, 8192),
				   NODE("wide", 16, 4096) };
	struct ha_vm vms[] = { VM("hostcpu", 1, 1024, "src"), VM("v2", 1, 1024, "src"),
			       VM("none", 1, 1024, "src") };
	const struct ha_cluster c = CLUSTER(nodes, vms);
	struct ha_move m[8];
	size_t n;

	nodes[0].admin = HA_DRAINING;
	nodes[0].cpu_features = V3_HOST;
	nodes[1].cpu_features = V2_HOST;
	nodes[2].cpu_features = V3_HOST ",avx512f";
	vms[0].cpu_need = nodes[0].cpu_features; /* on "host": what src offers */
	vms[1].cpu_need = "cx16,popcnt,sse3,sse4_2";
	n = ha_drain_plan(&c, 8, 8, m, ARRAY_SIZE(m));
	CU_ASSERT_STRING_EQUAL(moves_str(&c, m, n), "hostcpu>wide none>small v2>small");
	nodes[2].cpu_features = V2_HOST; /* now no node offers avx2 and bmi2 */
	n = ha_drain_plan(&c, 8, 8, m, ARRAY_SIZE(m));
	CU_ASSERT_STRING_EQUAL(moves_str(&c, m, n), "none>small v2>small");
}

/* A confidential VM goes only where a node offers AMD SEV, and says so where none does;
 * a drain never plans to move it live (the leader tells the operator to stop it), while
 * the VMs beside it move as usual. */
static void test_confidential(void)
{
	struct ha_node nodes[] = { NODE("a", 8, 16384), NODE("b", 8, 4096), NODE("c", 8, 8192) };
	struct ha_vm vms[] = { VM("sealed", 1, 512, "a"), VM("plain", 1, 512, "a") };
	const struct ha_cluster c = CLUSTER(nodes, vms);
	struct ha_vm vm = { .name = "s", .vcpus = 1, .mem_mb = 1024, .confidential = true };
	struct ha_move m[8];
	char why[512];
	size_t n;

	nodes[1].sev = true; /* the least memory, but the only SEV */
	CU_ASSERT_EQUAL(ha_place(&c, &vm, NULL, why, sizeof(why)), 1);
	CU_ASSERT_STRING_EQUAL(why, "");
	nodes[1].sev = false;
	CU_ASSERT_EQUAL(ha_place(&c, &vm, NULL, why, sizeof(why)), -1);
	CU_ASSERT_STRING_EQUAL(why, "no node can take vm s (1 vCPUs, 1024 MiB): a offers no AMD "
				    "SEV (confidential VMs); b offers no AMD SEV (confidential "
				    "VMs); c offers no AMD SEV (confidential VMs)");
	vm.confidential = false; /* any node takes a VM that is not */
	CU_ASSERT_EQUAL(ha_place(&c, &vm, NULL, why, sizeof(why)), 0);

	nodes[0].admin = HA_DRAINING;
	nodes[1].sev = nodes[2].sev = true;
	vms[0].confidential = true;
	n = ha_drain_plan(&c, 8, 8, m, ARRAY_SIZE(m));
	CU_ASSERT_STRING_EQUAL(moves_str(&c, m, n), "plain>c");
}

void suite_ha(void)
{
	static const struct test_case cases[] = {
		{ "admin states parse and name", test_admin_names },
		{ "usage counts a migration on both nodes",
		  test_usage_counts_migration_on_both_nodes },
		{ "place picks the most free memory", test_place_most_free_memory },
		{ "place ties: vCPUs, then name", test_place_ties },
		{ "place respects capacity and names free amounts",
		  test_place_capacity_and_reason },
		{ "place names every node's reason", test_place_reasons_for_every_node },
		{ "place with no nodes", test_place_no_nodes },
		{ "place honours exclude", test_place_exclude },
		{ "place honours anti-affinity", test_place_anti_affinity },
		{ "an empty group is no group", test_place_empty_group_is_none },
		{ "a VM does not count against itself", test_place_vm_not_counted_against_itself },
		{ "drain respects cluster, per-node and cap limits", test_drain_limits },
		{ "drain counts migrations in flight", test_drain_counts_migrations_in_flight },
		{ "drain reserves capacity on its targets", test_drain_reserves_capacity },
		{ "drain reserves anti-affinity slots", test_drain_reserves_group_slot },
		{ "drain order, and what it leaves alone", test_drain_order_and_what_it_leaves },
		{ "what a node's CPU lacks of a VM's needs", test_cpu_lacks },
		{ "place skips nodes whose CPU lacks a needed feature", test_place_cpu_features },
		{ "drain moves a VM only where its CPU features are", test_drain_cpu_features },
		{ "a confidential VM: placed only where SEV is, never drained live",
		  test_confidential },
		{ NULL, NULL },
	};
	test_add_suite("ha", cases);
}

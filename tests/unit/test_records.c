/* Cluster records and the daemon's configuration: pure parsing, no etcd. */
#include "cluster.h"
#include "clusterd.h"
#include "harness.h"
#include "unit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_names(void)
{
	CU_ASSERT_TRUE(cl_name_ok("node-a"));
	CU_ASSERT_TRUE(cl_name_ok("web1.prod_2"));
	CU_ASSERT_TRUE(cl_name_ok("0abc"));
	CU_ASSERT_FALSE(cl_name_ok(""));
	CU_ASSERT_FALSE(cl_name_ok(NULL));
	CU_ASSERT_FALSE(cl_name_ok("-a"));
	CU_ASSERT_FALSE(cl_name_ok(".hidden"));
	CU_ASSERT_FALSE(cl_name_ok("Web1"));
	CU_ASSERT_FALSE(cl_name_ok("a/b"));
	CU_ASSERT_FALSE(cl_name_ok("a b"));
	CU_ASSERT_TRUE(cl_name_ok(
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")); /* 63 */
	CU_ASSERT_FALSE(
		cl_name_ok("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
}

static void test_keys(void)
{
	char buf[64], tiny[8];

	CU_ASSERT_STRING_EQUAL(cl_key(buf, sizeof(buf), "/cme", "vms", "web1", "owner"),
			       "/cme/vms/web1/owner");
	CU_ASSERT_STRING_EQUAL(cl_key(buf, sizeof(buf), "/cme", "nodes", "a", NULL),
			       "/cme/nodes/a");
	CU_ASSERT_STRING_EQUAL(cl_key(buf, sizeof(buf), "/x", "leader", NULL, NULL), "/x/leader");
	CU_ASSERT_PTR_NULL(cl_key(tiny, sizeof(tiny), "/cme", "vms", "web1", "owner"));
}

static struct cl_spec sample_spec(void)
{
	struct cl_spec s = { .vcpus = 2,
			     .mem_mb = 512,
			     .priority = -3,
			     .running = true,
			     .balloon = true,
			     .balloon_mb = 384,
			     .created_ms = 1795478477034ULL };

	strcpy(s.name, "web1");
	strcpy(s.image, "/srv/img/selfcheck.bin");
	strcpy(s.cmdline, "wss_mb=128 \"quoted\" \\ back");
	strcpy(s.restart, "always");
	strcpy(s.group, "web");
	strcpy(s.cpu_template, "x86-64-v2");
	return s;
}

static void test_spec_roundtrip(void)
{
	struct cl_spec s = sample_spec(), back;
	struct etcd_err err = { "" };
	char *j = cl_spec_json(&s);

	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	CU_ASSERT_EQUAL(cl_spec_parse(j, strlen(j), &back, &err), 0);
	CU_ASSERT_EQUAL(memcmp(&s, &back, sizeof(s)), 0);
	free(j);
}

static void expect_spec_refused(const char *json, const char *why)
{
	struct cl_spec s;
	struct etcd_err err = { "" };

	CU_ASSERT_EQUAL(cl_spec_parse(json, strlen(json), &s, &err), -EINVAL);
	if (!strstr(err.msg, why))
		printf("\n  %s: got \"%s\", wanted \"%s\"\n", json, err.msg, why);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, why));
}

static void test_spec_refusals(void)
{
	expect_spec_refused("[1]", "not a JSON object");
	expect_spec_refused("{\"name\":\"a\",\"vcpus\":1}", "\"mem_mb\" is missing");
	expect_spec_refused("{\"name\":\"a\",\"vcpus\":\"1\",\"mem_mb\":64}",
			    "\"vcpus\" is not an integer");
	expect_spec_refused("{\"name\":\"a\",\"vcpus\":-1,\"mem_mb\":64}",
			    "\"vcpus\" is out of range");
	expect_spec_refused("{\"name\":\"A\",\"vcpus\":1,\"mem_mb\":64}",
			    "\"name\" is not a valid name");
	expect_spec_refused("{\"name\":\"a\",\"vcpus\":0,\"mem_mb\":64,\"image\":\"/x\"}",
			    "vcpus must be");
	expect_spec_refused("{\"name\":\"a\",\"vcpus\":1,\"mem_mb\":64}",
			    "exactly one of an image");
	expect_spec_refused(
		"{\"name\":\"a\",\"vcpus\":1,\"mem_mb\":64,\"image\":\"/x\",\"kernel\":\"/k\"}",
		"exactly one of an image");
	expect_spec_refused(
		"{\"name\":\"a\",\"vcpus\":1,\"mem_mb\":64,\"image\":\"/x\",\"restart\":\"maybe\"}",
		"restart policy");
	expect_spec_refused(
		"{\"name\":\"a\",\"vcpus\":1,\"mem_mb\":64,\"image\":\"/x\",\"running\":1}",
		"\"running\" is not true or false");
	expect_spec_refused(
		"{\"name\":\"a\",\"vcpus\":1,\"mem_mb\":64,\"image\":\"/x\",\"initrd\":\"/i\"}",
		"an initrd needs a kernel");
	expect_spec_refused("{\"name\":\"a\",\"vcpus\":1,\"mem_mb\":64,\"image\":\"/x\","
			    "\"cpu_template\":\"x86-64-v9\"}",
			    "cpu_template must be one of host, x86-64-v1");
}

/* A confidential spec: kept through JSON; what it cannot have refused by name; a node
 * offers it only with "sev" in its list (not sev-es alone, not tdx). */
static void test_spec_confidential(void)
{
	static const char *const bad[] = {
		"\"kernel\":\"/k\"",
		"\"image\":\"/x\",\"disk\":\"/d.img\"",
		"\"image\":\"/x\",\"balloon\":true",
		"\"image\":\"/x\",\"ksm\":true",
		"\"image\":\"/x\",\"cpu_template\":\"x86-64-v2\"",
	};
	struct cl_spec s = sample_spec(), back;
	struct etcd_err err = { "" };
	struct cl_node n = { 0 };
	char json[256], *j;

	s.confidential = true;
	s.balloon = false;
	s.balloon_mb = 0;
	s.cpu_template[0] = 0;
	j = cl_spec_json(&s);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	CU_ASSERT_PTR_NOT_NULL(strstr(j, "\"confidential\":true"));
	CU_ASSERT_EQUAL(cl_spec_parse(j, strlen(j), &back, &err), 0);
	CU_ASSERT_TRUE(back.confidential);
	free(j);
	strcpy(s.cpu_template, "host"); /* the host template is the one it runs */
	CU_ASSERT_EQUAL(cl_spec_check(&s, &err), 0);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		snprintf(json, sizeof(json),
			 "{\"name\":\"a\",\"vcpus\":1,\"mem_mb\":64,\"confidential\":true,%s}",
			 bad[i]);
		expect_spec_refused(json, "a confidential VM boots a flat image");
	}
	strcpy(n.mem_encryption, "sev,sev-es");
	CU_ASSERT_TRUE(cl_node_offers_sev(&n));
	strcpy(n.mem_encryption, "sev-es,sev");
	CU_ASSERT_TRUE(cl_node_offers_sev(&n));
	strcpy(n.mem_encryption, "sev-es");
	CU_ASSERT_FALSE(cl_node_offers_sev(&n));
	strcpy(n.mem_encryption, "tdx");
	CU_ASSERT_FALSE(cl_node_offers_sev(&n));
	n.mem_encryption[0] = 0;
	CU_ASSERT_FALSE(cl_node_offers_sev(&n));
	/* Which nodes know the key at all (an older one would run the VM in clear). */
	strcpy(n.version, "0.5");
	CU_ASSERT_FALSE(cl_node_knows_confidential(&n));
	n.version[0] = 0;
	CU_ASSERT_FALSE(cl_node_knows_confidential(&n));
	strcpy(n.version, CL_VERSION);
	CU_ASSERT_TRUE(cl_node_knows_confidential(&n));
	strcpy(n.version, "0.10");
	CU_ASSERT_TRUE(cl_node_knows_confidential(&n));
	strcpy(n.version, "1.0");
	CU_ASSERT_TRUE(cl_node_knows_confidential(&n));
}

/* A spec's CPU template, and what it needs of a node; a spec written before templates
 * existed is "host" and needs nothing. */
static void test_spec_cpu(void)
{
	const char *old = "{\"name\":\"a\",\"vcpus\":1,\"mem_mb\":64,\"image\":\"/x\"}";
	struct cl_spec s = sample_spec();
	struct etcd_err err = { "" };
	char need[1024];

	CU_ASSERT_PTR_NOT_NULL(strstr(cl_spec_cpu_need(&s, need, sizeof(need)), "popcnt"));
	CU_ASSERT_EQUAL(cpu_list_lacks(need, "fpu,sse2,cx16,sse4_2,lahf_lm", NULL, 0), 0);
	CU_ASSERT_EQUAL(cpu_list_lacks(need, "avx", NULL, 0), 1);
	CU_ASSERT_EQUAL_FATAL(cl_spec_parse(old, strlen(old), &s, &err), 0);
	CU_ASSERT_STRING_EQUAL(s.cpu_template, "");
	CU_ASSERT_STRING_EQUAL(cl_spec_cpu_need(&s, need, sizeof(need)), "");
	strcpy(s.cpu_template, "host");
	CU_ASSERT_STRING_EQUAL(cl_spec_cpu_need(&s, need, sizeof(need)), "");
	strcpy(s.cpu_template, "x86-64-v4"); /* the longest list fits the view's room */
	CU_ASSERT(strlen(cl_spec_cpu_need(&s, need, sizeof(need))) > 100);
	CU_ASSERT(strlen(need) < 1024);
}

/* Node records carry their CPU features; an older node's record has none. */
static void test_node_cpu(void)
{
	struct cl_node n = { .cpus = 4, .mem_mb = 8192 }, back;
	const char *old = "{\"name\":\"a\",\"addr\":\"10.0.0.1\",\"cpus\":4,\"mem_mb\":64}";
	struct etcd_err err = { "" };
	char *j;

	strcpy(n.name, "node-a");
	strcpy(n.addr, "10.0.0.11");
	strcpy(n.cpu_features, "fpu,sse2,cx16,avx2");
	j = cl_node_json(&n);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	CU_ASSERT_PTR_NOT_NULL(strstr(j, "\"cpu_features\":\"fpu,sse2,cx16,avx2\""));
	CU_ASSERT_EQUAL(cl_node_parse(j, strlen(j), &back, &err), 0);
	CU_ASSERT_EQUAL(memcmp(&n, &back, sizeof(n)), 0);
	free(j);
	CU_ASSERT_EQUAL(cl_node_parse(old, strlen(old), &back, &err), 0);
	CU_ASSERT_STRING_EQUAL(back.cpu_features, "");
	CU_ASSERT_STRING_EQUAL(back.mem_encryption, "");
	strcpy(n.mem_encryption, "sev,sev-es");
	j = cl_node_json(&n);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	CU_ASSERT_EQUAL(cl_node_parse(j, strlen(j), &back, &err), 0);
	CU_ASSERT_STRING_EQUAL(back.mem_encryption, "sev,sev-es");
	free(j);
}

/* The view as ha sees it: a node's features and SEV from its record (none when down or
 * unpublished); a VM on a template needs the template's; on "host" while it runs, its
 * node's; otherwise nothing; a confidential spec makes a confidential VM. */
static void test_view_cpu(void)
{
	struct cl_node_view nodes[3] = { 0 };
	struct cl_vm_view vms[4] = { 0 };
	struct cl_view v = { .nodes = nodes, .nnodes = 3, .vms = vms, .nvms = 4 };
	const char *names[4] = { "tmpl", "hostrun", "hoststop", "hostdown" };
	struct cl_ha h;

	for (int i = 0; i < 3; i++) {
		snprintf(nodes[i].name, CL_NAME_MAX, "n%d", i);
		nodes[i].alive = i < 2;
		strcpy(nodes[i].admin.state, "schedulable");
		snprintf(nodes[i].node.cpu_features, CL_CPU_MAX, "%s", i ? "" : "fpu,avx2");
		strcpy(nodes[i].node.mem_encryption, i == 1 ? "sev-es" : "sev,sev-es");
	}
	for (int i = 0; i < 4; i++) {
		struct cl_vm_view *m = &vms[i];

		strcpy(m->name, names[i]);
		m->has_spec = m->has_owner = m->has_status = true;
		m->spec = sample_spec();
		strcpy(m->spec.cpu_template, i ? "" : "x86-64-v3");
		strcpy(m->owner.node, i == 3 ? "n2" : "n0");
		m->owner.epoch = m->status.epoch = 1;
		strcpy(m->status.node, m->owner.node);
		strcpy(m->status.state, i == 2 ? "stopped" : "running");
		m->spec.confidential = i == 1;
	}
	CU_ASSERT_EQUAL_FATAL(cl_view_ha(&v, &h), 0);
	/* SEV where the record says so, and only while the node is up. */
	CU_ASSERT_TRUE(h.nodes[0].sev);
	CU_ASSERT_FALSE(h.nodes[1].sev);
	CU_ASSERT_FALSE(h.nodes[2].sev);
	CU_ASSERT_TRUE(h.vms[1].confidential);
	CU_ASSERT_FALSE(h.vms[0].confidential);
	CU_ASSERT_STRING_EQUAL(h.nodes[0].cpu_features, "fpu,avx2");
	CU_ASSERT_PTR_NULL(h.nodes[1].cpu_features); /* published none */
	CU_ASSERT_PTR_NULL(h.nodes[2].cpu_features); /* down */
	CU_ASSERT_PTR_NOT_NULL_FATAL(h.vms[0].cpu_need);
	CU_ASSERT(strstr(h.vms[0].cpu_need, "avx2") && strstr(h.vms[0].cpu_need, "movbe"));
	CU_ASSERT_STRING_EQUAL(h.vms[1].cpu_need, "fpu,avx2");
	CU_ASSERT_PTR_NULL(h.vms[2].cpu_need);
	CU_ASSERT_PTR_NULL(h.vms[3].cpu_need);
	cl_ha_free(&h);
}

/* Whether the owner itself said nothing runs: its own status, stopped or failed, at the
 * owner's epoch — not another node's, not an older epoch's, not a desired state alone. */
static void test_owner_idle(void)
{
	struct cl_vm_view m = { .has_owner = true, .has_status = true };

	strcpy(m.owner.node, "a");
	m.owner.epoch = 3;
	strcpy(m.status.node, "a");
	m.status.epoch = 3;
	strcpy(m.status.state, "stopped");
	CU_ASSERT_TRUE(cl_vm_owner_idle(&m));
	strcpy(m.status.state, "failed");
	CU_ASSERT_TRUE(cl_vm_owner_idle(&m));
	strcpy(m.status.state, "running");
	CU_ASSERT_FALSE(cl_vm_owner_idle(&m));
	strcpy(m.status.state, "stopped");
	m.status.epoch = 2; /* the owner's stop of an earlier epoch */
	CU_ASSERT_FALSE(cl_vm_owner_idle(&m));
	m.status.epoch = 3;
	strcpy(m.status.node, "b"); /* another node's word */
	CU_ASSERT_FALSE(cl_vm_owner_idle(&m));
	strcpy(m.status.node, "a");
	m.has_status = false;
	CU_ASSERT_FALSE(cl_vm_owner_idle(&m));
}

static void test_too_long(void)
{
	char json[2048], big[1100];
	struct cl_owner o;
	struct etcd_err err = { "" };

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	snprintf(json, sizeof(json), "{\"node\":\"a\",\"epoch\":1,\"x\":\"%s\"}", big);
	CU_ASSERT_EQUAL(cl_owner_parse(json, strlen(json), &o, &err), 0); /* unknown: ignored */
	snprintf(json, sizeof(json),
		 "{\"name\":\"a\",\"vcpus\":1,\"mem_mb\":64,\"image\":\"/x\","
		 "\"cmdline\":\"%s\"}",
		 big);
	expect_spec_refused(json, "\"cmdline\" is too long");
	CU_ASSERT_EQUAL(cl_owner_parse("{\"node\":\"a\",\"epoch\":", 20, &o, &err), -EINVAL);
}

static void test_migration_roundtrip(void)
{
	struct cl_migration m = { .requested_ms = 5,
				  .round = 3,
				  .bytes_sent = 1ULL << 40,
				  .rate_mbps = 1234.5,
				  .cluster_ms = 77,
				  .postcopy_after = 2,
				  .max_bandwidth = 16 << 20,
				  .downtime_ms = 40 },
			    back;
	struct etcd_err err = { "" };
	char *j;

	strcpy(m.id, "0123456789abcdef");
	strcpy(m.vm, "web1");
	strcpy(m.source, "node-a");
	strcpy(m.target, "node-b");
	strcpy(m.phase, "done");
	strcpy(m.stats, "{\"total_ms\":530,\"downtime\":{\"pause_ms\":0}}");
	j = cl_migration_json(&m);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	/* The statistics travel as a JSON object, not as a string. */
	CU_ASSERT_PTR_NOT_NULL(strstr(j, "\"stats\":{\"total_ms\":530"));
	CU_ASSERT_EQUAL(cl_migration_parse(j, strlen(j), &back, &err), 0);
	CU_ASSERT_STRING_EQUAL(back.stats, m.stats);
	CU_ASSERT_EQUAL(back.bytes_sent, m.bytes_sent);
	CU_ASSERT_DOUBLE_EQUAL(back.rate_mbps, 1234.5, 1e-9);
	CU_ASSERT_EQUAL(back.postcopy_after, 2);
	CU_ASSERT_EQUAL(back.max_bandwidth, 16 << 20);
	CU_ASSERT_EQUAL(back.downtime_ms, 40);
	CU_ASSERT_TRUE(cl_migration_active(&(struct cl_migration){ .phase = "committed" }));
	CU_ASSERT_TRUE(cl_migration_active(&(struct cl_migration){ .phase = "postcopy" }));
	CU_ASSERT_FALSE(cl_migration_active(&(struct cl_migration){ .phase = "postcopy-broken" }));
	CU_ASSERT_FALSE(cl_migration_active(&back));
	free(j);
	/* An id is written into files (the VMM folder's meta.json): no quotes, no slashes. */
	strcpy(m.id, "x\",\"pid\":1,\"y");
	j = cl_migration_json(&m);
	CU_ASSERT_EQUAL(cl_migration_parse(j, strlen(j), &back, &err), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "\"id\" is not a valid id"));
	free(j);
}

/* ---- configuration ------------------------------------------------------------------ */

static int load(const char *text, struct cd_config *c, char *err, size_t len)
{
	char path[600];
	FILE *f;

	snprintf(path, sizeof(path), "%s/clusterd.conf", test_tmpdir());
	f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs(text, f);
	fclose(f);
	return cd_config_load(path, c, err, len);
}

/* members/<node>: the record a majority is counted over. */
static void test_member_roundtrip(void)
{
	struct cl_member m = { .joined_ms = 1795478477034ULL }, back;
	struct etcd_err err = { "" };
	char *json;

	strcpy(m.name, "node-a");
	strcpy(m.peer, "[fd00::1]:7410");
	json = cl_member_json(&m);
	CU_ASSERT_PTR_NOT_NULL_FATAL(json);
	CU_ASSERT_EQUAL(cl_member_parse(json, strlen(json), &back, &err), 0);
	CU_ASSERT_STRING_EQUAL(back.name, "node-a");
	CU_ASSERT_STRING_EQUAL(back.peer, "[fd00::1]:7410");
	CU_ASSERT_EQUAL(back.joined_ms, m.joined_ms);
	free(json);
	CU_ASSERT_EQUAL(cl_member_parse("{\"name\":\"node-a\"}", 17, &back, &err), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "peer"));
	CU_ASSERT_EQUAL(cl_member_parse("{\"name\":\"A B\",\"peer\":\"x:1\"}", 27, &back, &err),
			-EINVAL);
}

/* The member list's identity ignores order and tells lists apart; a change may be made
 * only while every member (but the one forgotten) is up and shows the current list, or is
 * down with no VM of its own. */
static void test_membership_settled(void)
{
	const char *abc[] = { "a", "b", "c" }, *cab[] = { "c", "a", "b" }, *ab[] = { "a", "b" };
	const char *split[] = { "ab", "c" }, *joined[] = { "a", "bc" };
	struct cl_node_view nodes[4] = { 0 };
	struct cl_view v = { .nodes = nodes, .nnodes = 4 };
	struct cl_vm_view vm = { .name = "vm1", .has_owner = true, .owner = { .node = "b" } };
	char h1[CL_MEMBERS_HASH], h2[CL_MEMBERS_HASH], why[256] = "";

	cl_members_hash(abc, 3, h1);
	cl_members_hash(cab, 3, h2);
	CU_ASSERT_STRING_EQUAL(h1, h2);
	CU_ASSERT_EQUAL(strlen(h1), CL_MEMBERS_HASH - 1);
	cl_members_hash(ab, 2, h2);
	CU_ASSERT_STRING_NOT_EQUAL(h1, h2);
	cl_members_hash(split, 2, h1);
	cl_members_hash(joined, 2, h2);
	CU_ASSERT_STRING_NOT_EQUAL(h1, h2);

	for (int i = 0; i < 4; i++) { /* a, b, c members; d up, not a member */
		snprintf(nodes[i].name, CL_NAME_MAX, "%c", 'a' + i);
		nodes[i].alive = true;
		nodes[i].member = i < 3;
	}
	cl_view_members_hash(&v, h1);
	cl_members_hash(abc, 3, h2);
	CU_ASSERT_STRING_EQUAL(h1, h2);
	for (int i = 0; i < 4; i++)
		strcpy(nodes[i].node.members, h1);
	CU_ASSERT_TRUE(cl_view_membership_settled(&v, NULL, why, sizeof(why)));
	nodes[3].node.members[0] = 0; /* not a member: what it counts over does not matter */
	CU_ASSERT_TRUE(cl_view_membership_settled(&v, NULL, why, sizeof(why)));

	nodes[1].alive = false; /* b down, running nothing: it has no guest to ride for */
	CU_ASSERT_TRUE(cl_view_membership_settled(&v, NULL, why, sizeof(why)));
	v.vms = &vm; /* b owns a VM: it may ride on the list it last read */
	v.nvms = 1;
	CU_ASSERT_FALSE(cl_view_membership_settled(&v, NULL, why, sizeof(why)));
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "member b is down with VMs of its own"));
	CU_ASSERT_TRUE(cl_view_membership_settled(&v, "b", why, sizeof(why))); /* forget b */
	CU_ASSERT_FALSE(cl_view_membership_settled(&v, "c", why, sizeof(why)));
	vm.has_owner = false; /* named by a migration instead */
	vm.has_mig = true;
	strcpy(vm.mig.target, "b");
	CU_ASSERT_FALSE(cl_view_membership_settled(&v, NULL, why, sizeof(why)));
	v.nvms = 0;

	nodes[1].alive = true;
	cl_members_hash(ab, 2, nodes[2].node.members); /* c has not read the last join */
	CU_ASSERT_FALSE(cl_view_membership_settled(&v, NULL, why, sizeof(why)));
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "member c has not taken the last change"));

	nodes[2].node.members[0] = 0; /* an older daemon */
	strcpy(nodes[2].node.version, "0.6");
	CU_ASSERT_FALSE(cl_view_membership_settled(&v, NULL, why, sizeof(why)));
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "member c (version 0.6) does not say"));
}

static void test_config(void)
{
	struct cd_config c;
	char err[512];

	CU_ASSERT_EQUAL(load("# a node\nnode = node-a  # trailing comment\n"
			     "tls_dir=/etc/cme/tls/node-a\n\netcd = "
			     "http://10.0.0.1:2379,http://10.0.0.2:2379\n"
			     "mem = 8G\ncpus = 6\nlease_ttl = 4\n",
			     &c, err, sizeof(err)),
			0);
	CU_ASSERT_STRING_EQUAL(c.node, "node-a");
	CU_ASSERT_STRING_EQUAL(c.etcd, "http://10.0.0.1:2379,http://10.0.0.2:2379");
	CU_ASSERT_EQUAL(c.mem_mb, 8192);
	CU_ASSERT_EQUAL(c.cpus, 6);
	CU_ASSERT_EQUAL(c.lease_ttl_s, 4);
	CU_ASSERT_STRING_EQUAL(c.prefix, "/cme"); /* defaults */
	CU_ASSERT_EQUAL(c.max_migrations, 2);

	CU_ASSERT_EQUAL(load("node = a\ntls_dir = /t\nlease = 5\n", &c, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, ":3: unknown key"));
	CU_ASSERT_NOT_EQUAL(load("node = a\ntls_dir = /t\nmem = lots\n", &c, err, sizeof(err)), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, ":3: bad value"));
	CU_ASSERT_NOT_EQUAL(load("node = Bad Name\n", &c, err, sizeof(err)), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, ":1: bad value"));
	CU_ASSERT_NOT_EQUAL(load("node = a\nno equals sign\n", &c, err, sizeof(err)), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, ":2: expected key = value"));
	CU_ASSERT_NOT_EQUAL(load("tls_dir = /t\n", &c, err, sizeof(err)), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "node = NAME is required"));
	CU_ASSERT_NOT_EQUAL(load("node = a\ntls_dir = /t\nlease_ttl = 1\n", &c, err, sizeof(err)),
			    0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "lease_ttl must be 2..60"));
	CU_ASSERT_NOT_EQUAL(load("node = a\ntls_dir = /t\nprefix = /cme/\n", &c, err, sizeof(err)),
			    0);
	CU_ASSERT_TRUE(c.ride_through); /* on by default, with fencing */
	CU_ASSERT_STRING_EQUAL(c.peer, "");
	CU_ASSERT_EQUAL(load("node = a\ntls_dir = /t\npeer = 10.0.0.1:7411\nride_through = off\n",
			     &c, err, sizeof(err)),
			0);
	CU_ASSERT_STRING_EQUAL(c.peer, "10.0.0.1:7411");
	CU_ASSERT_FALSE(c.ride_through);
	CU_ASSERT_NOT_EQUAL(load("node = a\ntls_dir = /t\npeer = 10.0.0.1\n", &c, err, sizeof(err)),
			    0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "peer must be HOST:PORT"));
	CU_ASSERT_NOT_EQUAL(
		load("node = a\ntls_dir = /t\nride_through = maybe\n", &c, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(cd_config_load("/nonexistent/clusterd.conf", &c, err, sizeof(err)),
			-ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "No such file"));
}

/* Backup, schedule and restore records round-trip; a bad phase type or a missing id is
 * refused; the daemon's backup_stores are named folders, the first the default. */
static void test_backup_records(void)
{
	struct cl_backup b = { .keep = 3, .max_age_ms = 86400000, .requested_ms = 7 }, b2;
	struct cl_schedule sc = { .every_ms = 3600000, .keep = 5, .max_age_ms = 60000 }, sc2;
	struct cl_restore r = { .requested_ms = 9 }, r2;
	struct etcd_err err = { "" };
	struct cd_config c;
	char dir[600], msg[512];
	char *j;

	strcpy(b.id, "00ff00ff");
	strcpy(b.phase, "done");
	strcpy(b.backup, "web1/20261207T100000.000Z");
	strcpy(b.stats, "{\"pause_ms\":12}");
	j = cl_backup_json(&b);
	CU_ASSERT_EQUAL(cl_backup_parse(j, strlen(j), &b2, &err), 0);
	free(j);
	CU_ASSERT_STRING_EQUAL(b2.backup, b.backup);
	CU_ASSERT_EQUAL(b2.keep, 3);
	CU_ASSERT_EQUAL(b2.max_age_ms, 86400000);
	CU_ASSERT_PTR_NOT_NULL(strstr(b2.stats, "pause_ms"));
	CU_ASSERT_FALSE(cl_backup_active(&b2));
	strcpy(b2.phase, "running");
	CU_ASSERT_TRUE(cl_backup_active(&b2));
	CU_ASSERT_NOT_EQUAL(cl_backup_parse("{\"phase\":\"done\"}", 16, &b2, &err), 0);
	j = cl_schedule_json(&sc);
	CU_ASSERT_EQUAL(cl_schedule_parse(j, strlen(j), &sc2, &err), 0);
	free(j);
	CU_ASSERT_EQUAL(sc2.every_ms, 3600000);
	CU_ASSERT_EQUAL(sc2.keep, 5);
	CU_ASSERT_EQUAL(sc2.max_age_ms, 60000);
	CU_ASSERT_NOT_EQUAL(cl_schedule_parse("{\"every_ms\":\"1h\"}", 17, &sc2, &err), 0);
	strcpy(r.id, "0a0b");
	strcpy(r.phase, "requested");
	strcpy(r.from, "web1/20261207T100000.000Z");
	j = cl_restore_json(&r);
	CU_ASSERT_EQUAL(cl_restore_parse(j, strlen(j), &r2, &err), 0);
	free(j);
	CU_ASSERT_STRING_EQUAL(r2.from, r.from);

	CU_ASSERT_EQUAL(load("node = a\ntls_dir = /t\nbackup_stores = main:/srv/b,dr:/mnt/dr\n"
			     "backup_key = /etc/cme/backup.key\n",
			     &c, msg, sizeof(msg)),
			0);
	CU_ASSERT_EQUAL(cd_config_store(&c, "", dir, sizeof(dir)), 0);
	CU_ASSERT_STRING_EQUAL(dir, "/srv/b");
	CU_ASSERT_EQUAL(cd_config_store(&c, "dr", dir, sizeof(dir)), 0);
	CU_ASSERT_STRING_EQUAL(dir, "/mnt/dr");
	CU_ASSERT_EQUAL(cd_config_store(&c, "d", dir, sizeof(dir)), -ENOENT);
	CU_ASSERT_NOT_EQUAL(
		load("node = a\ntls_dir = /t\nbackup_stores = /srv/b\n", &c, msg, sizeof(msg)), 0);
	CU_ASSERT_NOT_EQUAL(
		load("node = a\ntls_dir = /t\nbackup_stores = m:rel\n", &c, msg, sizeof(msg)), 0);
}

void suite_records(void)
{
	static const struct test_case cases[] = {
		{ "names", test_names },
		{ "keys", test_keys },
		{ "spec round trip", test_spec_roundtrip },
		{ "spec refusals", test_spec_refusals },
		{ "spec CPU template and what it needs", test_spec_cpu },
		{ "a VM's owner says itself that nothing runs", test_owner_idle },
		{ "spec confidential: kept, what it excludes, where it runs",
		  test_spec_confidential },
		{ "node record CPU features", test_node_cpu },
		{ "the view's CPU features and needs", test_view_cpu },
		{ "too long and truncated", test_too_long },
		{ "migration round trip", test_migration_roundtrip },
		{ "member round trip", test_member_roundtrip },
		{ "member list changes: identity, settled", test_membership_settled },
		{ "daemon configuration", test_config },
		{ "backup, schedule and restore records; backup_stores", test_backup_records },
		{ NULL, NULL },
	};

	test_add_suite("records", cases);
}

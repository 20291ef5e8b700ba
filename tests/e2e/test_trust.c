/* End-to-end: signed boot in the cluster. Nodes configured with operator_keys run only
 * boots a key of the cluster's trust record signed, and take that record only when an
 * operator key signed it: a VM without a signature, one whose signature does not match
 * its boot, and a record an etcd writer forged change nothing; a signed VM runs, migrates
 * (the destination checks the arriving guest against the signature) and keeps running. */
#include "cluster_vm.h"
#include "e2e.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct keys {
	char op_sk[700], op_pk[700], boot_sk[700], boot_pk[700], good[700], bad[700];
};

/* cmectl without a cluster (image commands: files only). */
static int ctl_files(const char *const *args)
{
	const char *argv[16] = { test_bin("cmectl") };
	char *out = NULL;
	int n = 1, rc;

	for (; *args && n < 15; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	rc = test_run(argv, &out, 60000);
	if (rc)
		printf("\n    cmectl %s: %d: %s", argv[1], rc, out ? out : "");
	free(out);
	return rc;
}

/* An operator key pair, a boot key pair, the test guest signed for "wss_mb=8" (good) and
 * for "wss_mb=9" (bad: another command line). */
static void make_keys(struct keys *k)
{
	const char *d = test_tmpdir();

	snprintf(k->op_sk, sizeof(k->op_sk), "%s/op.sk", d);
	snprintf(k->op_pk, sizeof(k->op_pk), "%s/op.pk", d);
	snprintf(k->boot_sk, sizeof(k->boot_sk), "%s/boot.sk", d);
	snprintf(k->boot_pk, sizeof(k->boot_pk), "%s/boot.pk", d);
	snprintf(k->good, sizeof(k->good), "%s/good.sig", d);
	snprintf(k->bad, sizeof(k->bad), "%s/bad.sig", d);
	const char *kg1[] = { "image", "keygen", k->op_sk, k->op_pk, NULL };
	const char *kg2[] = { "image", "keygen", k->boot_sk, k->boot_pk, NULL };
	const char *s1[] = { "image",	  "sign",     "--key", k->boot_sk, "--image", test_guest(),
			     "--cmdline", "wss_mb=8", "--out", k->good,	   NULL };
	const char *s2[] = { "image",	  "sign",     "--key", k->boot_sk, "--image", test_guest(),
			     "--cmdline", "wss_mb=9", "--out", k->bad,	   NULL };

	CU_ASSERT_FATAL(ctl_files(kg1) == 0 && ctl_files(kg2) == 0);
	CU_ASSERT_FATAL(ctl_files(s1) == 0 && ctl_files(s2) == 0);
}

static bool wait_event(const char *kind, const char *vm)
{
	for (int t = 0; t < WAIT_MS; t += 200, sleep_ms(200))
		if (cluster_has_event(&C, kind, vm))
			return true;
	return false;
}

/* Some event's text holds text (within WAIT_MS). */
static bool events_say(const char *text)
{
	for (int t = 0; t < WAIT_MS; t += 200, sleep_ms(200)) {
		char *ev = NULL;
		bool found = cmectl(&C, &ev, NULL, "events", "-n", "1000", NULL) == 0 && ev &&
			     strstr(ev, text);

		free(ev);
		if (found)
			return true;
	}
	return false;
}

/* vm's status ends "failed" with text in its error. */
static void expect_failed(const char *vm, const char *text)
{
	char key[128];
	json_t *st;

	snprintf(key, sizeof(key), "vms/%s/status", vm);
	CU_ASSERT_TRUE(cluster_wait_field(&C, key, "state", "failed", WAIT_MS));
	st = cluster_get(&C, key);
	CU_ASSERT_PTR_NOT_NULL(strstr(json_string_value(json_object_get(st, "error")) ?: "", text));
	if (!strstr(json_string_value(json_object_get(st, "error")) ?: "", text))
		printf("\n    %s: status error %s, not %s", vm,
		       json_string_value(json_object_get(st, "error")), text);
	json_decref(st);
}

static void create(const char *vm, const char *sig, bool wait)
{
	char *out = NULL, *err = NULL;
	int rc = cmectl(&C, &out, &err, "vm", "create", vm, "--mem", "64M", "--vcpus", "1",
			"--image", test_guest(), "--cmdline", "wss_mb=8", "--restart", "never",
			sig ? "--boot-sig" : "--no-wait", sig ? sig : NULL,
			sig && !wait ? "--no-wait" : NULL, NULL);

	cluster_expect_ok("vm create", rc, out, err);
}

static void trust_set(const char *sk, const char *keys)
{
	char *out = NULL, *err = NULL;
	int rc = cmectl(&C, &out, &err, "trust", "set", "--operator-key", sk, "--keys", keys, NULL);

	cluster_expect_ok("trust set", rc, out, err);
}

static void test_signed_boot(void)
{
	char conf[800], *out = NULL, *err = NULL, forged[1200];
	uint64_t seq;
	struct keys k;
	json_t *t;
	int node, rc;

	REQUIRE_KVM();
	make_keys(&k);
	snprintf(conf, sizeof(conf), "operator_keys = %s\n", k.op_pk);
	CU_ASSERT_FATAL(cluster_start_conf(&C, 2, NODE_MEM_MB, conf) == 0);

	/* No trust record yet: nothing boots, and says why. */
	create("early", k.good, false);
	expect_failed("early", "holds no trusted keys yet");
	/* A record signed by a key that is no operator's: refused, by name. */
	trust_set(k.boot_sk, k.boot_pk);
	CU_ASSERT_TRUE(events_say("not an operator key of this node"));
	/* The operator's: taken. */
	trust_set(k.op_sk, k.boot_pk);
	CU_ASSERT_TRUE(wait_event("trust-updated", NULL));
	rc = cmectl(&C, &out, &err, "trust", "show", NULL);
	CU_ASSERT_PTR_NOT_NULL(strstr(out ?: "", "seq:     2"));
	cluster_expect_ok("trust show", rc, out, err);

	/* Unsigned, and signed for another command line: refused before the guest runs. */
	create("unsigned", NULL, false);
	expect_failed("unsigned", "has no boot signature");
	create("mismatch", k.bad, false);
	expect_failed("mismatch", "boot refused: the measurement");
	/* Signed: it runs. */
	create("s1", k.good, true);
	node = owner_of("s1", NULL);
	CU_ASSERT_FATAL(node >= 0);
	CU_ASSERT_TRUE(wait_heartbeats(node, "s1", 3));

	/* An etcd writer raises seq and swaps the keys, keeping the old signature: refused,
	 * and the signed VM runs on. */
	t = cluster_get(&C, "trust");
	CU_ASSERT_FATAL(t != NULL);
	snprintf(forged, sizeof(forged),
		 "{\"keys\":\"%064d\",\"seq\":9,\"signer\":\"%s\",\"sig\":\"%s\"}", 7,
		 json_string_value(json_object_get(t, "signer")),
		 json_string_value(json_object_get(t, "sig")));
	json_decref(t);
	CU_ASSERT_EQUAL(cluster_put(&C, "trust", forged), 0);
	CU_ASSERT_TRUE(events_say("signature does not match"));
	CU_ASSERT_TRUE(wait_heartbeats(node, "s1", last_seq(node, "s1", &seq, NULL) + 2));
	/* Migrated: the destination checks the arriving guest against its signature. */
	rc = cmectl(&C, &out, &err, "vm", "migrate", "s1", "--to", C.node[1 - node].name, NULL);
	cluster_expect_ok("vm migrate", rc, out, err);
	CU_ASSERT_TRUE(wait_running("s1"));
	assert_continued("s1", node, 1 - node);
}

void suite_trust(void)
{
	static const struct test_case cases[] = {
		{ "signed boot: operator-signed trust record, refusals, a signed VM migrates",
		  test_signed_boot },
		{ NULL, NULL },
	};

	test_on_teardown(cluster_teardown);
	test_add_suite("trust", cases);
}

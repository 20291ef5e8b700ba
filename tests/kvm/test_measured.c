/* Measured and signed boot: a boot signed by a trusted key runs and its measurement is
 * what `cme-vmm measure` computes from the files; a changed command line or image, or a
 * key not trusted, is refused before the first guest instruction; the measurement travels
 * in snapshots and migrations, and restore or incoming --measurement refuses another. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "guestrun.h"
#include "kvmtests.h"
#include "migrun.h"

#define SRC "127.0.0.1"
#define DST "127.0.0.2"

static char dir[600], sk[700], pk[700], trust[700], sig[700], other_sk[700], other_pk[700],
	other_sig[700];

static void run_ok(const char *const *argv, char **out)
{
	int rc = test_run(argv, out, 20000);

	CU_ASSERT_EQUAL_FATAL(rc, 0);
}

/* Keys, a trust file of the first key and signatures of the test guest with wss_mb=8. */
static void make_keys(void)
{
	const char *vmm = test_bin("cme-vmm");
	char *out;

	snprintf(dir, sizeof(dir), "%s", test_tmpdir());
	snprintf(sk, sizeof(sk), "%s/sk", dir);
	snprintf(pk, sizeof(pk), "%s/pk", dir);
	snprintf(trust, sizeof(trust), "%s/trust", dir);
	snprintf(sig, sizeof(sig), "%s/boot.sig", dir);
	snprintf(other_sk, sizeof(other_sk), "%s/sk2", dir);
	snprintf(other_pk, sizeof(other_pk), "%s/pk2", dir);
	snprintf(other_sig, sizeof(other_sig), "%s/boot2.sig", dir);
	const char *k1[] = { vmm, "signkey", sk, pk, NULL };
	const char *k2[] = { vmm, "signkey", other_sk, other_pk, NULL };
	const char *s1[] = { vmm,	  "sign",     "--key", sk,  "--image", test_guest(),
			     "--cmdline", "wss_mb=8", "--out", sig, NULL };
	const char *s2[] = { vmm,	  "sign",     "--key", other_sk,  "--image", test_guest(),
			     "--cmdline", "wss_mb=8", "--out", other_sig, NULL };

	run_ok(k1, &out);
	free(out);
	run_ok(k2, &out);
	free(out);
	char cmd[2200];

	snprintf(cmd, sizeof(cmd), "(echo '# trusted'; cat '%s') > '%s'", pk, trust);
	CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
	run_ok(s1, &out);
	free(out);
	run_ok(s2, &out);
	free(out);
}

/* What `cme-vmm measure` says of the test guest with cmdline. */
static void measure(const char *cmdline, char hex[65])
{
	const char *argv[] = { test_bin("cme-vmm"), "measure", "--image", test_guest(),
			       "--cmdline",	    cmdline,   NULL };
	char *out;

	run_ok(argv, &out);
	snprintf(hex, 65, "%s", out);
	free(out);
	CU_ASSERT_EQUAL(strlen(hex), 64);
}

/* A run that must be refused: status 1, why in its output, and not one guest
 * instruction (the test guest prints READY first thing). */
static void expect_boot_refused(const char *image, const char *cmdline, const char *sigfile,
				const char *why)
{
	const char *argv[] = { test_bin("cme-vmm"),
			       "run",
			       "--image",
			       image,
			       "--cmdline",
			       cmdline,
			       "--trust",
			       trust,
			       "--boot-sig",
			       sigfile,
			       "--mem",
			       "64M",
			       NULL };
	char *out;

	CU_ASSERT_EQUAL(test_run(argv, &out, 20000), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, why));
	CU_ASSERT_PTR_NULL(strstr(out, "READY"));
	if (!strstr(out, why))
		printf("\n    expected \"%s\", got: %s", why, out);
	free(out);
}

static const char *status_measurement(struct vmm_proc *p, char buf[65])
{
	json_t *r = vmm_request(p, "status", NULL);

	snprintf(buf, 65, "%s", json_string_value(json_object_get(r, "measurement")) ?: "");
	json_decref(r);
	return buf;
}

/* cmectl image verify of the test guest with cmdline against the trust file. */
static int cmectl_verify(const char *cmdline, char **out)
{
	const char *argv[] = {
		test_bin("cmectl"), "image",	  "verify",    "--trust", trust, "--sig", sig,
		"--image",	    test_guest(), "--cmdline", cmdline,	  NULL
	};

	return test_run(argv, out, 20000);
}

/* A migration of src to a destination started with extra fails with why in its error: the
 * destination never runs the guest, the source runs on. */
static void expect_refused_migration(struct vmm_proc *src, const char *tls_src, const char *tls_dst,
				     const char *const *extra, const char *why)
{
	struct vmm_proc dst;
	struct mig_run run;
	int port = mig_incoming(&dst, DST, tls_dst, extra);

	CU_ASSERT_FATAL(port > 0);
	mig_cli(&run, src, DST, port, tls_src, NULL, 120000);
	CU_ASSERT_EQUAL(run.status, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(mig_error(run.fin), why));
	mig_run_free(&run);
	mig_expect_no_guest(&dst);
	mig_expect_source_runs(src);
}

static void test_signed_boot(void)
{
	char m[65], got[65], image[700], snap[700],
		bad[] = "0000000000000000000000000000000000"
			"000000000000000000000000000000";
	struct vmm_proc p, q;

	if (!guest_available())
		return;
	make_keys();
	measure("wss_mb=8", m);
	/* cmectl checks a signature as the VMM will. */
	char *out;

	CU_ASSERT_EQUAL(cmectl_verify("wss_mb=8", &out), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, m)); /* the same measurement */
	free(out);
	CU_ASSERT_EQUAL(cmectl_verify("wss_mb=9", &out), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "boot refused"));
	free(out);
	/* Changed command line, changed image, a key not trusted: refused. */
	expect_boot_refused(test_guest(), "wss_mb=9", sig, "boot refused: the measurement");
	snprintf(image, sizeof(image), "%s/tampered.bin", dir);
	{
		char cmd[1600];
		int fd;
		unsigned char b;

		snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", test_guest(), image);
		CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
		fd = open(image, O_RDWR);
		CU_ASSERT_FATAL(fd >= 0);
		CU_ASSERT_EQUAL(pread(fd, &b, 1, 4000), 1);
		b ^= 0x80;
		CU_ASSERT_EQUAL(pwrite(fd, &b, 1, 4000), 1);
		close(fd);
	}
	expect_boot_refused(image, "wss_mb=8", sig, "boot refused: the measurement");
	expect_boot_refused(test_guest(), "wss_mb=8", other_sig, "does not hold");

	/* The signed boot runs, its measurement is the files'. */
	const char *args[] = { "--mem",	   "64M",     "--image", test_guest(), "--cmdline",
			       "wss_mb=8", "--trust", trust,	 "--boot-sig", sig,
			       "--name",   "signed",  NULL };

	CU_ASSERT_EQUAL_FATAL(vmm_start(&p, args), 0);
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&p, 2, 20000));
	CU_ASSERT_STRING_EQUAL(status_measurement(&p, got), m);

	/* Across a snapshot (encrypted: a plain one's state could be rewritten, measurement
	 * and all): restore --key --measurement M runs, another is refused, and so is
	 * --measurement without --key. */
	char key[700];
	const char *kg[] = { test_bin("cme-vmm"), "keygen", key, NULL };

	snprintf(key, sizeof(key), "%s/snap.key", dir);
	run_ok(kg, &out);
	free(out);
	snprintf(snap, sizeof(snap), "%s/m.snap", dir);
	char req[1600];
	json_t *r;

	snprintf(req, sizeof(req), "{\"path\":\"%s\",\"key_file\":\"%s\",\"stop\":true}", snap,
		 key);
	r = vmm_request(&p, "snapshot", req);
	CU_ASSERT_TRUE(r && json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	CU_ASSERT_EQUAL(vmm_wait(&p, 20000), 0);
	{
		const char *wrong_m[] = { test_bin("cme-vmm"), "restore", snap, "--key", key,
					  "--measurement",     bad,	  NULL };
		const char *no_key[] = { test_bin("cme-vmm"), "restore", snap,
					 "--measurement",     m,	 NULL };

		CU_ASSERT_EQUAL(test_run(wrong_m, &out, 20000), 1);
		CU_ASSERT_PTR_NOT_NULL(strstr(out, "is not the expected"));
		free(out);
		CU_ASSERT_EQUAL(test_run(no_key, &out, 20000), 2);
		CU_ASSERT_PTR_NOT_NULL(strstr(out, "--measurement on restore needs --key"));
		free(out);
	}
	const char *rargs[] = { snap, "--key", key, "--measurement", m, NULL };

	CU_ASSERT_EQUAL_FATAL(vmm_start_verb(&q, "restore", rargs), 0);
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&q, 2, 20000));
	CU_ASSERT_STRING_EQUAL(status_measurement(&q, got), m);

	/* Across a migration: a destination expecting another measurement refuses the guest
	 * (the source runs on), one expecting M takes it. */
	char pki[600], tls_src[700], tls_dst[700];
	const char *nodes[] = { SRC, DST, NULL };
	const char *wrong[] = { "--measurement", bad, NULL },
		   *right[] = { "--measurement", m, "--trust", trust, "--boot-sig", sig, NULL },
		   *untrusted[] = { "--trust", trust, "--boot-sig", other_sig, NULL };
	struct vmm_proc d2;
	struct mig_run run;
	int port;

	CU_ASSERT_EQUAL_FATAL(mig_certs(pki, sizeof(pki), nodes), 0);
	net_tls_dir(tls_src, sizeof(tls_src), pki, SRC);
	net_tls_dir(tls_dst, sizeof(tls_dst), pki, DST);
	expect_refused_migration(&q, tls_src, tls_dst, wrong, "is not the expected");
	/* A destination that runs only signed boots checks the arriving guest against its
	 * signature: one by a key it does not trust is refused, the source runs on. */
	expect_refused_migration(&q, tls_src, tls_dst, untrusted,
				 "the arriving guest's boot refused");
	port = mig_incoming(&d2, DST, tls_dst, right);
	CU_ASSERT_FATAL(port > 0);
	mig_cli(&run, &q, DST, port, tls_src, NULL, 120000);
	CU_ASSERT_EQUAL(run.status, 0);
	mig_run_free(&run);
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&d2, 2, 20000));
	CU_ASSERT_STRING_EQUAL(status_measurement(&d2, got), m);
	vmm_kill(&d2);
}

void suite_measured(void)
{
	static const struct test_case cases[] = {
		{ "signed boot: tampered command line, image or key refused before the guest runs; "
		  "the measurement holds across snapshot and migration",
		  test_signed_boot },
		{ NULL, NULL },
	};
	test_add_suite("measured", cases);
}

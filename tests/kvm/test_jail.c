/* --jail-root and --jail-user: the VMM in a mount namespace of its own, its root a fresh
 * tmpfs with its folder as /vm. From the VMM's side (the test looks through
 * /proc/PID/root) only /vm, its devices and what its command line named are there; it
 * runs as nobody without capabilities; a snapshot lands in its folder, one asked outside
 * is refused with the reason and the guest runs on; two such VMMs migrate the guest (the
 * certificates preloaded from --tls-dir before the VMM gave up root, userfaultfd through
 * /dev/userfaultfd). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "guestrun.h"
#include "kvmtests.h"
#include "migrun.h"

#define SRC "127.0.0.1"
#define DST "127.0.0.2"

#define REQUIRE_ROOT()                                                                             \
	do {                                                                                       \
		if (geteuid() != 0) {                                                              \
			test_skip("a mount namespace of the VMM's own needs root");                \
			return;                                                                    \
		}                                                                                  \
	} while (0)

static bool jail_usable(void)
{
	if (getenv("CME_TEST_NO_JAIL")) {
		test_skip("CME_TEST_NO_JAIL: no --jail, so no --jail-root");
		return false;
	}
	return guest_available();
}

/* What the VMM sees at path (from its root): 0, or -errno. */
static int seen(pid_t pid, const char *path)
{
	char p[PATH_MAX + 64];

	snprintf(p, sizeof(p), "/proc/%d/root%s", (int)pid, path);
	return access(p, F_OK) ? -errno : 0;
}

/* Runs as nobody (65534), no capability left. */
static void expect_unprivileged(pid_t pid)
{
	char path[64], *st;
	const char *uid, *cap;
	int u[4] = { -1, -1, -1, -1 };
	unsigned long long eff = ~0ull;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	st = test_read_file(path);
	uid = st ? strstr(st, "Uid:") : NULL;
	cap = st ? strstr(st, "CapEff:") : NULL;
	CU_ASSERT(uid && sscanf(uid, "Uid: %d %d %d %d", &u[0], &u[1], &u[2], &u[3]) == 4);
	for (int i = 0; i < 4; i++)
		CU_ASSERT_EQUAL(u[i], 65534);
	CU_ASSERT(cap && sscanf(cap, "CapEff: %llx", &eff) == 1);
	CU_ASSERT_EQUAL(eff, 0);
	free(st);
}

/* In a mountinfo text: the mount at "/" shows dir of its file system (fields 4 and 5). */
static bool root_is(const char *mountinfo, const char *dir)
{
	char root[700], point[700];

	for (const char *l = mountinfo; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
		if (sscanf(l, "%*s %*s %*s %699s %699s", root, point) == 2 && !strcmp(point, "/"))
			return !strcmp(root, dir);
	return false;
}

/* PID 1 of a PID namespace of its own: "NSpid: <host PID> 1". */
static void expect_pid1(pid_t pid)
{
	char path[64], want[64], *st;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	snprintf(want, sizeof(want), "NSpid:\t%d\t1\n", (int)pid);
	st = test_read_file(path);
	CU_ASSERT_PTR_NOT_NULL(st && strstr(st, want));
	free(st);
}

/* Started by hand (not its namespace's PID 1 already, as the harness and cme-clusterd
 * start it), a jailed VMM makes a PID namespace of its own and runs as its PID 1, while
 * the process started stays outside as a relay that ends as the VMM did. Without KVM the
 * VMM stops at the missing /dev/kvm, and the relay's status is that refusal's. */
static void test_hand_run_pidns(void)
{
	char cmd[3 * PATH_MAX + 300], why[256], *out = NULL;
	const char *argv[] = { "/bin/sh", "-c", cmd, NULL }; /* no --jail-root the harness sees */
	bool kvm = test_have_kvm(why, sizeof(why));
	const char *dir = test_tmpdir();
	int rc;

	REQUIRE_ROOT();
	if (getenv("CME_TEST_NO_JAIL")) {
		test_skip("CME_TEST_NO_JAIL: no --jail, so no --jail-root");
		return;
	}
	snprintf(cmd, sizeof(cmd),
		 "exec %s run --jail --jail-root %s --image %s --mem 64M --cmdline "
		 "'wss_mb=8 exit_after=2' --console file:%s/console --api %s/api.sock --name "
		 "relay",
		 test_bin("cme-vmm"), dir, test_guest(), dir, dir);
	rc = test_run(argv, &out, 60000);
	CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "is PID 1 of a PID namespace of its own"));
	if (kvm) {
		CU_ASSERT_EQUAL(rc, 0); /* the guest ended itself: so did the VMM and its relay */
	} else {
		CU_ASSERT_EQUAL(rc, 1);
		CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "/dev/kvm"));
	}
	if (rc != (kvm ? 0 : 1))
		printf("\n    %s", out ? out : "");
	free(out);
}

/* The folder the harness gave p (its console's). */
static void vmm_dir(const struct vmm_proc *p, char *dir, size_t len)
{
	snprintf(dir, len, "%s", p->console);
	*strrchr(dir, '/') = 0;
}

static void test_jail_root(void)
{
	const char *args[] = { "--mem",	      "64M",	  "--image",	 test_guest(),
			       "--cmdline",   "wss_mb=8", "--jail-root", VMM_OWN_DIR,
			       "--jail-user", "nobody",	  NULL };
	char dir[600], out[700], req[800], snap[700], *mounts, path[64], image[PATH_MAX];
	struct heartbeat hb;
	struct vmm_proc p;
	json_t *r;
	int n = 0;

	REQUIRE_ROOT();
	if (!jail_usable())
		return;
	CU_ASSERT_EQUAL_FATAL(vmm_start(&p, args), 0);
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&p, 2, 30000));
	vmm_dir(&p, dir, sizeof(dir));
	/* Its root is its folder; the host's files are not there, what it was given is. */
	CU_ASSERT_EQUAL(seen(p.pid, "/etc/passwd"), -ENOENT);
	CU_ASSERT_EQUAL(seen(p.pid, "/usr"), -ENOENT);
	/* at the path it was given (made absolute, links not resolved) */
	if (test_guest()[0] == '/')
		snprintf(image, sizeof(image), "%s", test_guest());
	else
		CU_ASSERT_FATAL(getcwd(image, sizeof(image) - 700) != NULL &&
				strcat(strcat(image, "/"), test_guest()));
	CU_ASSERT_EQUAL(seen(p.pid, image), 0);
	CU_ASSERT_EQUAL(seen(p.pid, "/dev/kvm"), 0);
	CU_ASSERT_EQUAL(seen(p.pid, "/dev/null"), -ENOENT);
	CU_ASSERT_EQUAL(seen(p.pid, "/vm/api.sock"), 0);
	CU_ASSERT_EQUAL(seen(p.pid, "/api.sock"), -ENOENT);
	expect_unprivileged(p.pid);
	expect_pid1(p.pid);
	snprintf(path, sizeof(path), "/proc/%d/mountinfo", (int)p.pid);
	mounts = test_read_file(path);
	CU_ASSERT_TRUE(root_is(mounts, "/"));
	CU_ASSERT_PTR_NOT_NULL(strstr(mounts, " / ro,"));
	for (char *l = mounts; (l = strchr(l, '\n')); l++)
		n++;
	CU_ASSERT(n > 0 && n <= 6); /* root, image, /vm, /dev, meminfo, self */
	if (n > 6)
		printf("\n    the jailed VMM's mounts:\n%s", mounts);
	free(mounts);
	/* status still reads its own /proc entry */
	r = vmm_request(&p, "status", NULL);
	CU_ASSERT(json_integer_value(
			  json_object_get(json_object_get(r, "resources"), "rss_bytes")) > 0);
	json_decref(r);
	/* A snapshot inside the jail lands in the folder; one outside is refused. */
	r = vmm_request(&p, "snapshot", "{\"path\":\"/vm/in.snap\"}");
	CU_ASSERT_TRUE(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	snprintf(snap, sizeof(snap), "%s/in.snap", dir);
	struct stat st;

	CU_ASSERT(stat(snap, &st) == 0 && st.st_size > 0);
	snprintf(out, sizeof(out), "%s/out.snap", test_tmpdir());
	snprintf(req, sizeof(req), "{\"path\":\"%s\"}", out);
	r = vmm_request(&p, "snapshot", req);
	CU_ASSERT_PTR_NOT_NULL(strstr(json_string_value(json_object_get(r, "error")) ?: "",
				      "this VMM is jailed in"));
	json_decref(r);
	CU_ASSERT(access(out, F_OK) != 0);
	CU_ASSERT_FATAL(vmm_last_heartbeat(&p, &hb));
	CU_ASSERT(vmm_wait_heartbeats(&p, (int)hb.seq + 2, 30000));
	CU_ASSERT(guest_check_console(&p) > 2);
	json_decref(vmm_request(&p, "stop", NULL));
	CU_ASSERT_EQUAL(vmm_wait(&p, 20000), 0);
	CU_ASSERT_EQUAL(p.status, 0);
}

/* A VMM started with args ends before any guest instruction, its log saying why. */
static void expect_refused(const char *const *args, const char *why)
{
	struct vmm_proc p;
	char *e;

	CU_ASSERT_EQUAL_FATAL(vmm_start(&p, args), 0);
	CU_ASSERT_EQUAL(vmm_wait(&p, 20000), 0);
	CU_ASSERT_NOT_EQUAL(p.status, 0);
	e = test_read_file(p.errlog);
	CU_ASSERT_PTR_NOT_NULL(strstr(e, why));
	CU_ASSERT_PTR_NULL(strstr(e, "running:"));
	free(e);
}

/* A bad jail is refused before any guest instruction, by name. */
static void test_jail_root_refused(void)
{
	const char *args[] = { "--mem",	    "64M",	"--image",     test_guest(),
			       "--cmdline", "wss_mb=8", "--jail-root", "/nonexistent/x",
			       NULL };
	char con[700];
	const char *outside[] = { "--mem",     "64M",	   "--image",	  test_guest(),
				  "--cmdline", "wss_mb=8", "--jail-root", VMM_OWN_DIR,
				  "--console", con,	   NULL };

	REQUIRE_ROOT();
	if (!jail_usable())
		return;
	expect_refused(args, "--jail-root /nonexistent/x");
	/* A console file outside the folder would open its whole folder to the VMM. */
	snprintf(con, sizeof(con), "file:%s/console.log", test_tmpdir());
	expect_refused(outside, "must be inside the jail's folder");
}

static void test_jail_root_migrate(void)
{
	static const char *const names[] = { SRC, DST, NULL };
	char pki[600], tls[2][700], to[64], req[128];
	const char *src_args[] = { "--mem",	  "256M",	 "--image",
				   test_guest(),  "--cmdline",	 "wss_mb=32 dirty_rate=4",
				   "--jail-root", VMM_OWN_DIR,	 "--tls-dir",
				   tls[0],	  "--jail-user", "nobody",
				   NULL };
	const char *dst_extra[] = { "--jail-root", VMM_OWN_DIR, "--jail-user", "nobody", NULL };
	struct vmm_proc src, dst, *both[] = { &src, &dst };
	struct hb_chain c;
	char *log;
	json_t *r;
	int port;

	REQUIRE_ROOT();
	if (!jail_usable())
		return;
	CU_ASSERT_EQUAL_FATAL(mig_certs(pki, sizeof(pki), names), 0);
	net_tls_dir(tls[0], sizeof(tls[0]), pki, SRC);
	net_tls_dir(tls[1], sizeof(tls[1]), pki, DST);
	CU_ASSERT_EQUAL_FATAL(vmm_start(&src, src_args), 0);
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&src, 3, 30000));
	port = mig_incoming(&dst, DST, tls[1], dst_extra);
	CU_ASSERT_FATAL(port > 0);
	CU_ASSERT_EQUAL(seen(dst.pid, "/etc/passwd"), -ENOENT);
	expect_unprivileged(dst.pid);
	/* No "tls_dir" in the request: the source's --tls-dir, bound into its jail. */
	snprintf(to, sizeof(to), "%s:%d", DST, port);
	snprintf(req, sizeof(req), "{\"to\":\"%s\"}", to);
	r = vmm_request(&src, "migrate", req);
	CU_ASSERT_TRUE_FATAL(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	CU_ASSERT(vmm_wait(&src, 90000) == 0);
	mig_expect_source_migrated(&src);
	log = test_read_file(src.errlog);
	CU_ASSERT_PTR_NULL(strstr(log, "no write tracking")); /* userfaultfd as nobody */
	free(log);
	CU_ASSERT(vmm_wait_heartbeats(&dst, 3, 30000));
	mig_check_consoles(both, 2, &c);
	CU_ASSERT_EQUAL(c.first[1].seq, c.last[0].seq + 1);
	json_decref(vmm_request(&dst, "stop", NULL));
	CU_ASSERT_EQUAL(vmm_wait(&dst, 20000), 0);
}

void suite_jail(void)
{
	static const struct test_case cases[] = {
		{ "--jail-root --jail-user: the VMM sees its folder and what it was given, "
		  "as nobody",
		  test_jail_root },
		{ "--jail-root on a folder that is not there, a console outside it: refused",
		  test_jail_root_refused },
		{ "jailed as nobody on both ends: a live migration, certificates from --tls-dir",
		  test_jail_root_migrate },
		{ "started by hand: PID 1 of its own PID namespace behind a relay",
		  test_hand_run_pidns },
		{ NULL, NULL },
	};

	test_add_suite("jail", cases);
}

/* The VMM sandbox (--jail; the harness starts every VMM of the tests with it): every
 * thread of a running VMM is under a seccomp filter with no_new_privs, no core dumps, an
 * IPC namespace of its own, no inherited descriptor; the guest runs on, and a forbidden system call (the test hook sandbox-probe) ends that VMM alone, with
 * the call named in its log and its exit file. Without --jail the same call is harmless,
 * so the test would see a sandbox that is not there. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "guestrun.h"
#include "kvmtests.h"

/* The rest of the jail: no core dumps, at most 4096 open files, no message queues, an IPC
 * namespace of its own, no descriptor the parent left open (leaked: an fd the test opened
 * without O_CLOEXEC). */
static void expect_confined(pid_t pid, int leaked)
{
	char path[128], ns[64] = "", mine[64] = "", fd[64] = "";
	char *limits, *core, soft[32] = "", hard[32] = "";
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/limits", (int)pid);
	limits = test_read_file(path);
	core = strstr(limits, "Max core file size");
	CU_ASSERT_FATAL(core != NULL);
	CU_ASSERT_EQUAL(sscanf(core, "Max core file size %31s %31s", soft, hard), 2);
	CU_ASSERT_STRING_EQUAL(soft, "0");
	CU_ASSERT_STRING_EQUAL(hard, "0");
	/* open files at most 4096 (never raised), no POSIX message queues */
	core = strstr(limits, "Max open files");
	CU_ASSERT_FATAL(core != NULL);
	CU_ASSERT_EQUAL(sscanf(core, "Max open files %31s %31s", soft, hard), 2);
	CU_ASSERT(atol(hard) > 0 && atol(hard) <= 4096);
	core = strstr(limits, "Max msgqueue size");
	CU_ASSERT_FATAL(core != NULL);
	CU_ASSERT_EQUAL(sscanf(core, "Max msgqueue size %31s %31s", soft, hard), 2);
	CU_ASSERT_STRING_EQUAL(hard, "0");
	free(limits);
	snprintf(path, sizeof(path), "/proc/%d/ns/ipc", (int)pid);
	n = readlink(path, ns, sizeof(ns) - 1);
	CU_ASSERT(n > 0 && readlink("/proc/self/ns/ipc", mine, sizeof(mine) - 1) > 0);
	CU_ASSERT_STRING_NOT_EQUAL(ns, mine);
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, leaked);
	n = readlink(path, fd, sizeof(fd) - 1);
	CU_ASSERT(n < 0 || !strstr(fd, "leaked"));
}

static void start_probed(struct vmm_proc *p, const char *name, const char *exit_file)
{
	const char *args[] = { "--mem",	      "64M",	  "--image", test_guest(),
			       "--cmdline",   "wss_mb=8", "--name",  name,
			       "--exit-file", exit_file,  NULL };

	setenv("CME_TEST_SANDBOX_PROBE", "1", 1);
	CU_ASSERT_EQUAL_FATAL(vmm_start(p, args), 0);
	unsetenv("CME_TEST_SANDBOX_PROBE");
	CU_ASSERT_FATAL(vmm_wait_heartbeats(p, 2, 30000));
}

static void test_jailed(void)
{
	char ex1[700], ex2[700], *log, *ex;
	struct vmm_proc a, b;
	int total, n;

	REQUIRE_SECCOMP();
	if (!guest_available())
		return;
	snprintf(ex1, sizeof(ex1), "%s/exit.json", test_tmpdir());
	snprintf(ex2, sizeof(ex2), "%s/exit.json", test_tmpdir());
	char leak[700];
	int fd;

	snprintf(leak, sizeof(leak), "%s/leaked", test_tmpdir());
	fd = open(leak, O_WRONLY | O_CREAT, 0600); /* no O_CLOEXEC: the VMM inherits it */
	CU_ASSERT_FATAL(fd >= 0);
	start_probed(&a, "jailed-a", ex1);
	close(fd);
	start_probed(&b, "jailed-b", ex2);
	expect_confined(a.pid, fd);
	json_t *st = vmm_request(&a, "status", NULL);

	CU_ASSERT_TRUE(json_is_true(json_object_get(st, "sandboxed")));
	json_decref(st);
	/* Every thread filtered: control, console, vCPU (at least those three). */
	n = test_filtered_threads(a.pid, &total);
	CU_ASSERT(total >= 3);
	CU_ASSERT_EQUAL(n, total);
	if (n != total)
		printf("\n    %d of %d threads filtered", n, total);
	/* The forbidden call ends a, named; b runs on. */
	json_decref(vmm_request(&a, "sandbox-probe", NULL));
	CU_ASSERT_EQUAL_FATAL(vmm_wait(&a, 20000), 0);
	CU_ASSERT_EQUAL(a.status, 75);
	log = test_read_file(a.errlog);
	CU_ASSERT_PTR_NOT_NULL(strstr(log, "forbidden system call getppid ("));
	CU_ASSERT_PTR_NOT_NULL(strstr(log, "in a control thread"));
	free(log);
	ex = test_read_file(ex1);
	CU_ASSERT_PTR_NOT_NULL(
		strstr(ex, "{\"status\":75,\"syscall\":\"getppid\",\"thread\":\"control\"}"));
	free(ex);
	struct heartbeat hb;

	CU_ASSERT_FATAL(vmm_last_heartbeat(&b, &hb));
	CU_ASSERT(vmm_wait_heartbeats(&b, (int)hb.seq + 2, 30000));
	CU_ASSERT_EQUAL(vmm_wait(&b, 0), -ETIMEDOUT);
	/* A vCPU thread's list: the same call from vCPU 0 ends b, named as the vCPU's. */
	json_decref(vmm_request(&b, "sandbox-probe", "{\"thread\":\"vcpu\"}"));
	CU_ASSERT_EQUAL_FATAL(vmm_wait(&b, 20000), 0);
	CU_ASSERT_EQUAL(b.status, 75);
	log = test_read_file(b.errlog);
	CU_ASSERT_PTR_NOT_NULL(strstr(log, "forbidden system call getppid (110) in a vcpu thread"));
	free(log);
}

/* Without --jail: no filter, and the probe's call simply returns. */
static void test_unjailed(void)
{
	char ex[700];
	struct vmm_proc p;
	json_t *r;
	int total;

	if (!guest_available())
		return;
	snprintf(ex, sizeof(ex), "%s/exit.json", test_tmpdir());
	setenv("CME_TEST_NO_JAIL", "1", 1);
	start_probed(&p, "free", ex);
	unsetenv("CME_TEST_NO_JAIL");
	CU_ASSERT_EQUAL(test_filtered_threads(p.pid, &total), 0);
	r = vmm_request(&p, "status", NULL);
	CU_ASSERT_TRUE(json_is_false(json_object_get(r, "sandboxed")));
	json_decref(r);
	r = vmm_request(&p, "sandbox-probe", NULL);
	CU_ASSERT_TRUE(json_is_true(json_object_get(r, "ok")));
	CU_ASSERT_TRUE(json_is_false(json_object_get(r, "sandboxed")));
	json_decref(r);
	r = vmm_request(&p, "sandbox-probe", "{\"thread\":\"vcpu\"}");
	CU_ASSERT_TRUE(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	CU_ASSERT_TRUE(vmm_wait_heartbeats(&p, 4, 30000)); /* vCPU 0 went on */
	CU_ASSERT_EQUAL(vmm_wait(&p, 0), -ETIMEDOUT);
	vmm_kill(&p);
}

void suite_sandbox(void)
{
	static const struct test_case cases[] = {
		{ "--jail: every thread filtered with no_new_privs; a forbidden call ends that VMM "
		  "alone, named",
		  test_jailed },
		{ "without --jail there is no filter (the probe's call returns)", test_unjailed },
		{ NULL, NULL },
	};
	test_add_suite("sandbox", cases);
}

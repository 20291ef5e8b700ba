/* Resource control: --pin-vcpus pins each vCPU thread (seen in its affinity), --ksm marks
 * guest RAM mergeable (seen in the mapping's VmFlags), --hugepages is refused with the
 * counts when the host has too few, --cgroup puts the VMM in a group with CPU and memory
 * limits, and status shows all of it. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "guestrun.h"
#include "kvmtests.h"

/* The Cpus_allowed_list of p's thread called comm ("" when there is none). */
static void thread_cpus(pid_t pid, const char *comm, char *out, size_t len)
{
	char path[400], *txt, *hit, cpus[64];
	struct dirent *e;
	DIR *d;

	out[0] = 0;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	while (d && (e = readdir(d))) {
		char name[64] = "";
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%d/task/%s/comm", (int)pid, e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (!fgets(name, sizeof(name), f))
			name[0] = 0;
		fclose(f);
		name[strcspn(name, "\n")] = 0;
		if (strcmp(name, comm))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/status", (int)pid, e->d_name);
		txt = test_read_file(path);
		hit = strstr(txt, "Cpus_allowed_list:");
		if (hit && sscanf(hit, "Cpus_allowed_list: %63s", cpus) == 1)
			snprintf(out, len, "%s", cpus);
		free(txt);
	}
	if (d)
		closedir(d);
}

/* True when the VmFlags line at `at` (up to its line end) has the two-letter flag. */
static bool line_has_flag(const char *at, const char *flag)
{
	size_t n = strcspn(at, "\n");

	for (size_t i = 0; i + 3 <= n; i++)
		if (at[i] == ' ' && !memcmp(at + i + 1, flag, 2) &&
		    (at[i + 3] == ' ' || at[i + 3] == '\n'))
			return true;
	return false;
}

/* True when some mapping of pid (of size_kb, or any when 0) has flag in its VmFlags
 * ("mg": MADV_MERGEABLE, "dd": MADV_DONTDUMP). */
static bool has_vmflag(pid_t pid, unsigned long size_kb, const char *flag)
{
	char path[64], *txt, *at;
	bool hit = false;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	txt = test_read_file(path);
	for (at = txt; !hit && (at = strstr(at, "\nSize:")); at++) {
		char *flags = strstr(at, "VmFlags:");
		if (!flags)
			break;
		if (size_kb && strtoul(at + 7, NULL, 10) != size_kb)
			continue;
		hit = line_has_flag(flags + 8, flag);
	}
	free(txt);
	return hit;
}

static bool has_mergeable(pid_t pid)
{
	return has_vmflag(pid, 0, "mg");
}

static void test_pin_and_ksm(void)
{
	const char *args[] = { "--mem",	      "64M",	    "--vcpus",	 "2",
			       "--image",     test_guest(), "--cmdline", "wss_mb=8",
			       "--pin-vcpus", "1,0",	    "--ksm",	 NULL };
	const char *plain[] = { "--mem",     "64M",	 "--image", test_guest(),
				"--cmdline", "wss_mb=8", NULL };
	struct vmm_proc p, q;
	char c0[64], c1[64];
	json_t *r, *res;

	if (!guest_available())
		return;
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2) {
		test_skip("needs 2 CPUs to see pinning");
		return;
	}
	CU_ASSERT_EQUAL_FATAL(vmm_start(&p, args), 0);
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&p, 2, 30000));
	thread_cpus(p.pid, "vcpu0", c0, sizeof(c0));
	thread_cpus(p.pid, "vcpu1", c1, sizeof(c1));
	CU_ASSERT_STRING_EQUAL(c0, "1");
	CU_ASSERT_STRING_EQUAL(c1, "0");
	CU_ASSERT_TRUE(has_mergeable(p.pid));
	r = vmm_request(&p, "status", NULL);
	res = json_object_get(r, "resources");
	CU_ASSERT_TRUE(json_is_true(json_object_get(res, "ksm")));
	CU_ASSERT_FALSE(json_is_true(json_object_get(res, "hugepages")));
	CU_ASSERT_EQUAL(json_array_size(json_object_get(res, "pinned_cpus")), 2);
	CU_ASSERT_EQUAL(json_integer_value(json_array_get(json_object_get(res, "pinned_cpus"), 0)),
			1);
	CU_ASSERT(json_integer_value(json_object_get(res, "rss_bytes")) > 0);
	json_decref(r);
	CU_ASSERT(guest_check_console(&p) >= 2);
	vmm_kill(&p);
	/* Without --ksm nothing is mergeable: sharing guest pages is the operator's choice. */
	CU_ASSERT_EQUAL_FATAL(vmm_start(&q, plain), 0);
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&q, 1, 30000));
	CU_ASSERT_FALSE(has_mergeable(q.pid));
	/* Guest RAM is never in a core dump of the VMM. */
	CU_ASSERT_TRUE(has_vmflag(q.pid, 64 << 10, "dd"));
	vmm_kill(&q);
}

/* A number from a sysfs or procfs file (-1 when it cannot be read). */
static long long read_num(const char *path)
{
	char *t = test_read_file(path), *hit = strstr(t, "ksm_merging_pages ");
	long long n = *t ? strtoll(hit ? hit + 18 : t, NULL, 10) : -1;

	free(t);
	return n;
}

static bool write_str(const char *path, const char *val)
{
	FILE *f = fopen(path, "w");
	bool ok = f && fputs(val, f) >= 0;

	if (f && fclose(f))
		ok = false;
	return ok;
}

/* Two VMs with the same guest and --ksm: the kernel's KSM merges their identical pages —
 * the guest's balloon pool (16 MiB it stamps the same way in both and leaves alone) is
 * 4096 of them — and each VMM's /proc/PID/ksm_stat counts them. KSM is turned on for the test (root) and
 * set back to what it was. */
static void test_ksm_shares(void)
{
	const char *args[] = {
		"--mem",     "128M",	   "--vcpus",	"2",
		"--image",   test_guest(), "--cmdline", "wss_mb=8 vcpus=0 balloon_mb=16",
		"--balloon", "--ksm",	   NULL
	};
	char run0[8] = "", scan0[16] = "", path[64], *t;
	struct vmm_proc p, q;
	long long merged = 0;

	if (!guest_available())
		return;
	t = test_read_file("/sys/kernel/mm/ksm/run");
	snprintf(run0, sizeof(run0), "%.*s", (int)strcspn(t, "\n"), t);
	free(t);
	t = test_read_file("/sys/kernel/mm/ksm/pages_to_scan");
	snprintf(scan0, sizeof(scan0), "%.*s", (int)strcspn(t, "\n"), t);
	free(t);
	if (!run0[0] || !write_str("/sys/kernel/mm/ksm/pages_to_scan", "5000") ||
	    !write_str("/sys/kernel/mm/ksm/run", "1")) {
		test_skip("KSM cannot be turned on here (/sys/kernel/mm/ksm: not root, or no KSM)");
		return;
	}
	CU_ASSERT_EQUAL_FATAL(vmm_start(&p, args), 0);
	CU_ASSERT_EQUAL_FATAL(vmm_start(&q, args), 0);
	CU_ASSERT(vmm_console_wait(&p, "BALLOON ready", 60000) &&
		  vmm_console_wait(&q, "BALLOON ready", 60000)); /* the pool is stamped */
	snprintf(path, sizeof(path), "/proc/%d/ksm_stat", (int)q.pid);
	for (uint64_t end = now_ns() + 60000 * 1000000ull; merged < 2048 && now_ns() < end;
	     sleep_ms(200))
		merged = read_num(path);
	printf(" (%lld pages merged)", merged);
	CU_ASSERT(merged >= 2048); /* at least half the pool */
	vmm_kill(&p);
	vmm_kill(&q);
	write_str("/sys/kernel/mm/ksm/run", run0);
	write_str("/sys/kernel/mm/ksm/pages_to_scan", scan0);
}

/* Each refusal is one line naming the problem, status 1 or 2, nothing left running. */
static void test_refusals(void)
{
	static const struct {
		const char *flag, *val, *msg;
		int status;
	} bad[] = {
		{ "--pin-vcpus", "0,x", "--pin-vcpus 0,x: expected host CPU numbers", 2 },
		{ "--pin-vcpus", "1000", "--pin-vcpus: CPU 1000 is not one this host lets", 1 },
		{ "--pin-vcpus", "0,0", "--pin-vcpus names more CPUs than --vcpus", 2 },
		{ "--cgroup", "../x", "--cgroup ../x: expected a relative PATH", 2 },
		{ "--cgroup", "x,cpu=lots", "--cgroup: cpu=lots: CPUS is a number of cores", 2 },
		{ "--cgroup", "x,mem=1K", "--cgroup: mem=1K: SIZE is bytes with units", 2 },
	};
	char *out;

	if (!guest_available())
		return;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		const char *argv[] = {
			test_bin("cme-vmm"), "run",	  "--mem",    "64M", "--image",
			test_guest(),	     bad[i].flag, bad[i].val, NULL
		};

		CU_ASSERT_EQUAL(test_run(argv, &out, 30000), bad[i].status);
		CU_ASSERT_PTR_NOT_NULL(strstr(out, bad[i].msg));
		if (!strstr(out, bad[i].msg))
			printf("\n    expected \"%s\", got: %s", bad[i].msg, out);
		free(out);
	}
}

/* --hugepages with none free: refused with the counts. (With enough free it runs; a host
 * with vm.nr_hugepages set shows that.) */
static void test_hugepages(void)
{
	const char *argv[] = {
		test_bin("cme-vmm"), "run",	   "--mem",	"64M",
		"--image",	     test_guest(), "--cmdline", "wss_mb=8 exit_after=2",
		"--hugepages",	     NULL
	};
	char *meminfo = test_read_file("/proc/meminfo"), *hit = strstr(meminfo, "HugePages_Free:");
	long free_pages = hit ? strtol(hit + 15, NULL, 10) : 0;
	char *out;
	int rc;

	free(meminfo);
	if (!guest_available())
		return;
	rc = test_run(argv, &out, 60000);
	if (free_pages >= 32) {
		CU_ASSERT_EQUAL(rc, 0); /* the guest ran on hugepages and exited */
	} else {
		CU_ASSERT_EQUAL(rc, 1);
		CU_ASSERT_PTR_NOT_NULL(
			strstr(out, "--hugepages: 64 MiB need 32 free 2 MiB hugepages"));
	}
	free(out);
}

/* --cgroup: the VMM runs in its own group with the limits set (seen in /proc/PID/cgroup and
 * the group's files), status shows them, the CPU limit throttles a guest that spins, and
 * a VMM that stops removes the group it created. */
static void test_cgroup(void)
{
	char path[64], arg[128], *mine, *dir;
	const char *args[] = { "--mem",	   "64M",      "--image", test_guest(), "--cmdline",
			       "wss_mb=8", "--cgroup", arg,	  NULL };
	long long throttled = 0;
	struct vmm_proc p;
	json_t *r, *cg;

	if (!guest_available())
		return;
	if (geteuid() != 0) {
		test_skip("--cgroup needs root to create control groups");
		return;
	}
	snprintf(path, sizeof(path), "cme-test-%d/vm1", (int)getpid());
	snprintf(arg, sizeof(arg), "%s,cpu=0.2,mem=512M", path);
	CU_ASSERT_EQUAL_FATAL(vmm_start(&p, args), 0);
	if (!vmm_wait_heartbeats(&p, 2, 30000)) {
		char *e = test_read_file(p.errlog);

		if (strstr(e, "no cgroup hierarchy here offers"))
			test_skip("this host mounts no cgroup hierarchy with cpu and memory");
		else if (strstr(e, "Read-only file system"))
			test_skip("this host's cgroup hierarchies are read-only");
		else
			CU_FAIL("the guest did not run in its cgroup");
		printf("\n    %s", e);
		free(e);
		return;
	}
	snprintf(arg, sizeof(arg), "/proc/%d/cgroup", (int)p.pid);
	mine = test_read_file(arg);
	CU_ASSERT_PTR_NOT_NULL(strstr(mine, path));
	free(mine);
	for (uint64_t end = now_ns() + 30000 * 1000000ull; !throttled && now_ns() < end;
	     sleep_ms(100)) {
		r = vmm_request(&p, "status", NULL);
		cg = json_object_get(json_object_get(r, "resources"), "cgroup");
		throttled = json_integer_value(json_object_get(cg, "cpu_throttled"));
		json_decref(r);
	}
	CU_ASSERT(throttled > 0); /* the guest spins: the 20% quota holds it back */
	r = vmm_request(&p, "status", NULL);
	cg = json_object_get(json_object_get(r, "resources"), "cgroup");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(cg, "path")) ?: "", path);
	CU_ASSERT_DOUBLE_EQUAL(json_real_value(json_object_get(cg, "cpu_limit")), 0.2, 1e-9);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(cg, "mem_limit_bytes")), 512 << 20);
	CU_ASSERT(json_integer_value(json_object_get(cg, "mem_used_bytes")) > 0);
	dir = strdup(json_string_value(json_object_get(cg, "dir")) ?: "/nonexistent");
	json_decref(r);
	CU_ASSERT_EQUAL(access(dir, F_OK), 0);
	json_decref(vmm_request(&p, "stop", NULL));
	CU_ASSERT_EQUAL(vmm_wait(&p, 30000), 0);
	CU_ASSERT_NOT_EQUAL(access(dir, F_OK), 0); /* removed, with cme-test-PID above it */
	*strrchr(dir, '/') = 0;
	CU_ASSERT_NOT_EQUAL(access(dir, F_OK), 0);
	free(dir);
}

void suite_resources(void)
{
	static const struct test_case cases[] = {
		{ "--pin-vcpus and --ksm: affinity, mergeable RAM, status", test_pin_and_ksm },
		{ "--ksm: two VMs with the same guest share pages (ksm_stat)", test_ksm_shares },
		{ "--pin-vcpus refusals", test_refusals },
		{ "--hugepages: runs on them, or refused with the counts", test_hugepages },
		{ "--cgroup: limits set, shown, throttling; the group removed at exit",
		  test_cgroup },
		{ NULL, NULL },
	};

	test_add_suite("resources", cases);
}

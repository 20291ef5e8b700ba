/* cme-vmm's command line: bad input gets one line naming the problem, a non-zero exit,
 * and leaves nothing behind; guest exit codes and faults reach the exit status. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"
#include "kvmtests.h"

static unsigned count_lines(const char *s)
{
	unsigned n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* Run cme-vmm with args; assert the exit status, one stderr line containing msg. */
static void expect_failure(const char *const *args, int want_status, const char *msg)
{
	const char *argv[24];
	char *out = NULL;
	int n = 0, st;

	argv[n++] = test_bin("cme-vmm");
	while (*args)
		argv[n++] = *args++;
	argv[n] = NULL;
	st = test_run(argv, &out, 20000);
	CU_ASSERT_EQUAL(st, want_status);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, msg));
	CU_ASSERT_EQUAL(count_lines(out), 1);
	if (st != want_status || !strstr(out, msg) || count_lines(out) != 1)
		printf("\n    status %d, output: %s", st, out);
	free(out);
}

static const char *write_image(const char *name, const void *bytes, size_t len)
{
	static char path[600];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", test_tmpdir(), name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(write(fd, bytes, len), (ssize_t)len);
	close(fd);
	return path;
}

/* Whether the host lets KVM launch AMD SEV guests (kvm_amd's sev parameter). */
static bool host_offers_sev(void)
{
	char *v = test_read_file("/sys/module/kvm_amd/parameters/sev");
	bool on = v[0] == 'Y' || v[0] == 'y' || v[0] == '1';

	free(v);
	return on;
}

/* --confidential runs nothing in clear: refused by name where the host offers no memory
 * encryption (here: no VMM is started, so no KVM is needed). */
static void test_confidential_refused(void)
{
	const char *img = write_image("c.bin", "\xeb\xfe", 2);
	const char *argv[] = { test_bin("cme-vmm"), "run", "--image", img, "--confidential", NULL };
	char *out;

	if (host_offers_sev()) {
		test_skip("this host offers AMD SEV: the launch test covers --confidential");
		return;
	}
	CU_ASSERT_EQUAL(test_run(argv, &out, 20000), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "--confidential: this host offers"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "in clear"));
	free(out);
}

/* A confidential guest on an AMD SEV host: a ring-0 image that writes "SEV" to the UART
 * and spins runs from memory the PSP encrypted and measured; status shows the launch;
 * a snapshot is refused by name and the guest runs on; virtio devices are refused at
 * start. Skipped where the host has no SEV (every machine here: the sequence is unit-
 * tested against a stand-in of the ioctl, tests/unit/test_sev.c). */
static void test_confidential_sev(void)
{
	static const unsigned char code[] = {
		0x66, 0xba, 0xf8, 0x03, /* mov dx, 0x3f8 */
		0xb0, 'S',  0xee,	/* mov al, 'S'; out dx, al */
		0xb0, 'E',  0xee, 0xb0, 'V', 0xee, 0xb0, '\n', 0xee, 0xeb, 0xfe, /* jmp $ */
	};
	REQUIRE_KVM();
	if (!host_offers_sev()) {
		test_skip("needs an AMD SEV host (kvm_amd's sev parameter on); none here");
		return;
	}
	const char *img = write_image("sev.bin", code, sizeof(code));
	const char *args[] = { "--image", img, "--mem", "16M", "--confidential", NULL };
	struct vmm_proc p;
	json_t *r, *c;

	CU_ASSERT_FATAL(vmm_start(&p, args) == 0);
	CU_ASSERT_FATAL(vmm_console_wait(&p, "SEV\n", 60000));
	r = vmm_request(&p, "status", NULL);
	c = json_object_get(r, "confidential");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(c, "technology")) ?: "", "sev");
	CU_ASSERT_TRUE(json_is_true(json_object_get(c, "launched")));
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(c, "policy")), 0x0b);
	CU_ASSERT(strlen(json_string_value(json_object_get(c, "launch_measurement")) ?: "") >= 96);
	json_decref(r);
	r = vmm_request(&p, "snapshot", "{\"path\":\"/tmp/cme-sev-never.snap\"}");
	CU_ASSERT_TRUE(json_is_false(json_object_get(r, "ok")));
	CU_ASSERT_PTR_NOT_NULL(
		strstr(json_string_value(json_object_get(r, "error")) ?: "", "encrypted"));
	json_decref(r);
	CU_ASSERT_TRUE(vmm_wait_status(&p, "state", "\"running\"", 10000));
	vmm_kill(&p);

	const char *disk[] = { "run", "--image", img, "--confidential", "--disk", img, NULL };

	expect_failure(disk, 1, "virtio devices");
}

static void test_usage_errors(void)
{
	const char *img = write_image("g.bin", "\xeb\xfe", 2);
	const char *a1[] = { "run", "--image", img, "--frobnicate", NULL };
	const char *a2[] = { "run", "--image", img, "--mem", "12X", NULL };
	const char *a3[] = { "run", "--image", img, "--vcpus", "99", NULL };
	const char *a4[] = { "launch", NULL };
	const char *a5[] = { "run", "--mem", "64M", NULL };

	expect_failure(a1, 2, "unknown option --frobnicate");
	expect_failure(a2, 2, "--mem 12X: not a size");
	expect_failure(a3, 2, "--vcpus 99");
	expect_failure(a4, 2, "unknown command \"launch\"");
	expect_failure(a5, 2, "--image FILE or --kernel FILE is required");
}

static void test_setup_errors(void)
{
	REQUIRE_KVM();
	const char *img = write_image("g.bin", "\xeb\xfe", 2);
	char missing[600], api[600];
	const char *a2[] = { "run", "--image", img, "--mem", "64G", NULL };

	snprintf(missing, sizeof(missing), "%s/nonexistent.bin", test_tmpdir());
	snprintf(api, sizeof(api), "%s/api.sock", test_tmpdir());
	const char *a1[] = { "run", "--image", missing, "--api", api, NULL };

	expect_failure(a1, 1, "nonexistent.bin: No such file or directory");
	CU_ASSERT_EQUAL(access(api, F_OK), -1); /* nothing left behind */
	if (host_mem_bytes() < (64ull << 30))
		expect_failure(a2, 1, "exceeds this host's memory");
}

/* Run cme-vmm in a child that first hides or locks /dev/kvm; returns its status. */
static int run_without_kvm(bool hide, const char *vmm, const char *img, char **out)
{
	char log[600];
	pid_t pid;
	int st;

	snprintf(log, sizeof(log), "%s/out", test_tmpdir());
	pid = fork();
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		dup2(fd, 1);
		dup2(fd, 2);
		if (hide) {
			/* A private mount namespace with an empty /dev: KVM is absent. */
			if (unshare(CLONE_NEWNS) < 0 ||
			    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
			    mount("tmpfs", "/dev", "tmpfs", 0, NULL) < 0)
				_exit(99);
		} else if (setgid(65534) < 0 || setuid(65534) < 0) {
			_exit(99); /* nobody: /dev/kvm is root's */
		}
		execl(vmm, "cme-vmm", "run", "--image", img, "--mem", "64M", (char *)NULL);
		_exit(98);
	}
	waitpid(pid, &st, 0);
	*out = test_read_file(log);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_no_kvm(void)
{
	char *out, vmm[600], cmd[1400];
	const char *img;
	int st;
	struct stat sb;

	if (geteuid() != 0) {
		test_skip("needs root to hide /dev/kvm in a mount namespace");
		return;
	}
	img = write_image("g.bin", "\xeb\xfe", 2);
	/* User nobody must reach the binary whatever the checkout's directory modes are: run
	 * a copy from the tests' own world-readable directory. */
	snprintf(vmm, sizeof(vmm), "%s/cme-vmm", test_tmpdir());
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && chmod 755 '%s'", test_bin("cme-vmm"), vmm, vmm);
	CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
	st = run_without_kvm(true, vmm, img, &out);
	CU_ASSERT_EQUAL(st, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "cannot open /dev/kvm: No such file or directory"));
	CU_ASSERT_EQUAL(count_lines(out), 1);
	free(out);
	if (stat("/dev/kvm", &sb) < 0 || (sb.st_mode & 0006)) {
		test_skip("/dev/kvm is missing or open to everyone: cannot test a denied open");
		return;
	}
	st = run_without_kvm(false, vmm, img, &out);
	CU_ASSERT_EQUAL(st, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "cannot open /dev/kvm: Permission denied"));
	free(out);
}

static int guest_exit(const char *name, unsigned char code_byte, char **out)
{
	/* mov $0x501,%dx; mov $N,%al; out %al,%dx; jmp . */
	unsigned char code[] = { 0x66, 0xba, 0x01, 0x05, 0xb0, code_byte, 0xee, 0xeb, 0xfe };
	const char *img = write_image(name, code, sizeof(code));
	const char *argv[] = { test_bin("cme-vmm"), "run", "--image", img, "--mem", "16M", NULL };

	return test_run(argv, out, 20000);
}

/* 0 and 3-63 are the status; any other code (here 73, the VMM's "reset: restart me", and
 * 2, its usage error) is 64, so that no guest can speak for the VMM. */
static void test_guest_exit_code(void)
{
	REQUIRE_KVM();
	char *out;

	CU_ASSERT_EQUAL(guest_exit("exit7.bin", 7, &out), 7);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "guest exit code 7"));
	free(out);
	CU_ASSERT_EQUAL(guest_exit("exit73.bin", 73, &out), 64);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "guest exit code 73"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "outside 3-63"));
	free(out);
	CU_ASSERT_EQUAL(guest_exit("exit2.bin", 2, &out), 64);
	free(out);
	CU_ASSERT_EQUAL(guest_exit("exit0.bin", 0, &out), 0);
	free(out);
}

/* int3 with the ABI's empty IDT: a triple fault on hardware, an emulation failure on
 * PVM. Either way the VMM stops with its own status and the vCPU's registers — or, where
 * the CPU resets the vCPU at a shutdown (AMD), says that they are lost. */
static void test_guest_fault(void)
{
	REQUIRE_KVM();
	const char *img = write_image("int3.bin", "\xcc", 1);
	const char *argv[] = { test_bin("cme-vmm"), "run", "--image", img, "--mem", "16M", NULL };
	char *out;
	int st = test_run(argv, &out, 20000);

	CU_ASSERT_TRUE(st == 71 || st == 72);
	if (!strstr(out, "registers at the fault are lost")) {
		CU_ASSERT_PTR_NOT_NULL(strstr(out, "rip=0x100000"));
		CU_ASSERT_PTR_NOT_NULL(strstr(out, "cr3=0x1000"));
	}
	free(out);
}

/* A guest resets or powers off the machine: the VMM ends cleanly and says which. */
static void expect_power(const char *name, const unsigned char *code, size_t len, int status,
			 const char *msg)
{
	const char *img = write_image(name, code, len);
	const char *argv[] = { test_bin("cme-vmm"), "run", "--image", img, "--mem", "16M", NULL };
	char *out;

	CU_ASSERT_EQUAL(test_run(argv, &out, 20000), status);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, msg));
	free(out);
}

static void test_reboot_poweroff(void)
{
	REQUIRE_KVM();
	/* mov $0xfe,%al; out %al,$0x64; jmp . */
	static const unsigned char kbd[] = { 0xb0, 0xfe, 0xe6, 0x64, 0xeb, 0xfe };
	/* mov $6,%al; mov $0xcf9,%dx; out %al,%dx; jmp . */
	static const unsigned char cf9[] = { 0xb0, 0x06, 0x66, 0xba, 0xf9, 0x0c, 0xee, 0xeb, 0xfe };
	/* mov $0x34,%al (SLP_EN | S5 << 2); mov $0x600,%dx; out %al,%dx; jmp . */
	static const unsigned char s5[] = { 0xb0, 0x34, 0x66, 0xba, 0x00, 0x06, 0xee, 0xeb, 0xfe };

	expect_power("kbd.bin", kbd, sizeof(kbd), 73, "guest rebooted (i8042 reset)");
	expect_power("cf9.bin", cf9, sizeof(cf9), 73, "guest rebooted (reset register)");
	expect_power("s5.bin", s5, sizeof(s5), 0, "guest powered off");
}

static long file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* One counter of /proc/PID/io ("wchar", "syscw"), -1 when unreadable. */
static long long proc_io(pid_t pid, const char *key)
{
	char path[64], *t, *at;
	long long v = -1;

	snprintf(path, sizeof(path), "/proc/%d/io", (int)pid);
	t = test_read_file(path);
	at = strstr(t, key);
	if (at && at[strlen(key)] == ':')
		v = atoll(at + strlen(key) + 1);
	free(t);
	return v;
}

/* A guest that writes to its UART as fast as it can: the console file is capped (past
 * --console-max it becomes FILE.1 and FILE starts again) and written in blocks, not one
 * write(2) per byte; the guest runs on. */
static void flood(const unsigned char *code, size_t len, bool lines)
{
	const char *img = write_image("flood.bin", code, len);
	char con[600], old[610], arg[620];
	struct vmm_proc p;
	int i;

	snprintf(con, sizeof(con), "%s/flood.console", test_tmpdir());
	snprintf(old, sizeof(old), "%s.1", con);
	snprintf(arg, sizeof(arg), "file:%s", con);
	const char *args[] = { "--image",	img,   "--mem", "16M", "--console", arg,
			       "--console-max", "64K", NULL };

	CU_ASSERT_FATAL(vmm_start(&p, args) == 0);
	/* Two rotations: FILE.1 appears, then FILE.1 is replaced by a newer FILE. */
	for (i = 0; i < 6000 && file_size(old) < 0; i++)
		sleep_ms(10);
	CU_ASSERT_FATAL(file_size(old) >= 64 << 10);
	struct stat first, now;

	CU_ASSERT_FATAL(stat(old, &first) == 0);
	for (i = 0; i < 6000; i++) {
		if (stat(old, &now) == 0 && now.st_ino != first.st_ino)
			break;
		sleep_ms(10);
	}
	CU_ASSERT(i < 6000);
	/* Neither file is past the cap by more than one 4 KiB block. */
	CU_ASSERT(file_size(old) >= 64 << 10 && file_size(old) <= (64 << 10) + 4096);
	/* A rotation renames FILE, then creates it again: it may be missing for a moment. */
	for (i = 0; i < 1000 && file_size(con) < 0; i++)
		sleep_ms(10);
	CU_ASSERT(file_size(con) >= 0 && file_size(con) <= (64 << 10) + 4096);
	long long wchar = proc_io(p.pid, "wchar"), syscw = proc_io(p.pid, "syscw");

	CU_ASSERT(wchar >= 128 << 10 && syscw > 0);
	if (syscw > 0 && !lines) /* the old code: one write(2) per byte */
		CU_ASSERT(wchar / syscw >= 64);
	CU_ASSERT_EQUAL(vmm_wait(&p, 0), -ETIMEDOUT); /* the guest runs on */
	vmm_kill(&p);
}

static void test_console_cap(void)
{
	REQUIRE_KVM();
	/* mov $0x3f8,%dx; mov $'A',%al; 1: out %al,%dx; jmp 1b */
	static const unsigned char code[] = {
		0x66, 0xba, 0xf8, 0x03, 0xb0, 0x41, 0xee, 0xeb, 0xfd
	};

	flood(code, sizeof(code), false);
}

/* The same with a line end after every byte: each line is written by the vCPU's own
 * thread, so the cap is reached there; the rotation (rename, open) is the console
 * flusher's, whose sandbox list has them — a jailed VMM (the harness jails them all) must
 * not end when its guest's console fills up. */
static void test_console_cap_lines(void)
{
	REQUIRE_KVM();
	/* mov $0x3f8,%dx; 1: mov $'A',%al; out %al,%dx; mov $'\n',%al; out %al,%dx; jmp 1b */
	static const unsigned char code[] = { 0x66, 0xba, 0xf8, 0x03, 0xb0, 0x41,
					      0xee, 0xb0, 0x0a, 0xee, 0xeb, 0xf8 };

	flood(code, sizeof(code), true);
}

void suite_cli(void)
{
	static const struct test_case cases[] = {
		{ "usage errors: one line, status 2", test_usage_errors },
		{ "--confidential is refused where the guest would run in clear",
		  test_confidential_refused },
		{ "--confidential on an AMD SEV host: launched, measured, never copied out",
		  test_confidential_sev },
		{ "setup errors: missing image, too much memory; nothing left", test_setup_errors },
		{ "/dev/kvm absent or not accessible", test_no_kvm },
		{ "guest exit code on port 0x501: 0 and 3-63 the status, others 64",
		  test_guest_exit_code },
		{ "guest fault ends the VMM with registers", test_guest_fault },
		{ "guest reboot and poweroff end the VMM with their status", test_reboot_poweroff },
		{ "a guest flooding its console with lines: rotated in a jailed VMM, which runs on",
		  test_console_cap_lines },
		{ "a flooding guest: console file capped and rotated, written in blocks",
		  test_console_cap },
		{ NULL, NULL },
	};
	test_add_suite("cli", cases);
}

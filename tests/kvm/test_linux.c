/* Linux guests. Everywhere with KVM: Debian's kernel (ELF vmlinux) through our 64-bit boot
 * path prints its banner, our exact command line, our e820 map and our ACPI tables on the
 * early console, and bad kernels are refused. With hardware virtualization only: the
 * Linux guest kit boots to READY, heartbeats, survives snapshot/restore, takes console
 * input, powers off cleanly, and its virtio-blk driver reads and writes a disk. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "guestrun.h"
#include "kvmtests.h"
#include "netns.h"

#define EARLY_TIMEOUT_MS 120000

static const char *kit(const char *name)
{
	static char path[4][512];
	static unsigned n;
	const char *b = getenv("CME_BUILD");
	char *p = path[n++ % 4];

	snprintf(p, 512, "%s/guest/linux/%s", b ? b : "build", name);
	return p;
}

static bool kit_available(void)
{
	char why[256];

	if (!test_have_kvm(why, sizeof(why))) {
		test_skip("%s", why);
		return false;
	}
	if (access(kit("vmlinux"), R_OK) < 0 || access(kit("initrd.cpio.gz"), R_OK) < 0) {
		CU_FAIL("Linux guest kit not built (make guests)");
		return false;
	}
	return true;
}

/* The e820 lines the kernel printed, as "start-end type" strings joined by ';'. */
static void e820_seen(const char *console, char *out, size_t len)
{
	const char *l = console;

	out[0] = 0;
	while ((l = strstr(l, "BIOS-e820: [mem "))) {
		unsigned long long a, b;
		char type[32];

		if (sscanf(l, "BIOS-e820: [mem %llx-%llx] %31s", &a, &b, type) == 3)
			snprintf(out + strlen(out), len - strlen(out), "%llx-%llx %s;", a, b, type);
		l++;
	}
}

static void test_early_console(void)
{
	static const char cmdline[] = "earlyprintk=serial,ttyS0 console=ttyS0 cme.token=e2e-4711";
	const char *args[] = { "--mem",	       "512M",	    "--vcpus", "2", "--kernel",
			       kit("vmlinux"), "--cmdline", cmdline,   NULL };
	struct vmm_proc p;
	char e820[512], *c;

	if (!kit_available())
		return;
	CU_ASSERT_EQUAL_FATAL(vmm_start(&p, args), 0);
	CU_ASSERT(vmm_console_wait(&p, "smpboot: Allowing 2 CPUs", EARLY_TIMEOUT_MS));
	vmm_kill(&p);
	c = test_read_file(p.console);
	CU_ASSERT_PTR_NOT_NULL(strstr(c, "Linux version 6."));
	/* The exact line: the serial console ends lines with CR LF. */
	CU_ASSERT_PTR_NOT_NULL(strstr(c, "Command line: earlyprintk=serial,ttyS0 console=ttyS0 "
					 "cme.token=e2e-4711\r\n"));
	e820_seen(c, e820, sizeof(e820));
	/* Every entry of the map we built, and nothing else. */
	CU_ASSERT_STRING_EQUAL(e820, "0-9fbff usable;e0000-fffff reserved;100000-1fffffff usable;");
	CU_ASSERT_PTR_NOT_NULL(strstr(c, "ACPI: RSDP 0x00000000000E0000"));
	CU_ASSERT_PTR_NOT_NULL(strstr(c, "ACPI: FACP 0x00000000000E0100"));
	CU_ASSERT_PTR_NOT_NULL(strstr(c, "ACPI: DSDT 0x00000000000E0300"));
	CU_ASSERT_PTR_NOT_NULL(strstr(c, "ACPI: APIC 0x00000000000E0400"));
	CU_ASSERT_PTR_NOT_NULL(strstr(c, "address 0xfec00000, GSI 0-23"));
	CU_ASSERT_PTR_NULL(strstr(c, "ACPI BIOS Error"));
	if (!strstr(c, "smpboot: Allowing 2 CPUs"))
		printf("\n    console:\n%s\n", c);
	free(c);
}

/* --disk: the kernel's command line announces each virtio-mmio device. */
static void test_disk_on_cmdline(void)
{
	char img[600];
	const char *args[] = { "--mem",	    "256M",
			       "--kernel",  kit("vmlinux"),
			       "--cmdline", "console=ttyS0 earlyprintk=serial,ttyS0",
			       "--disk",    img,
			       "--disk",    NULL,
			       NULL };
	char img2[600];
	struct vmm_proc p;
	FILE *f;

	if (!kit_available())
		return;
	snprintf(img, sizeof(img), "%s/a.img", test_tmpdir());
	snprintf(img2, sizeof(img2), "%s/b.img", test_tmpdir());
	f = fopen(img, "w");
	CU_ASSERT_FATAL(f && fclose(f) == 0);
	f = fopen(img2, "w");
	CU_ASSERT_FATAL(f && fclose(f) == 0);
	args[9] = img2;
	CU_ASSERT_EQUAL_FATAL(vmm_start(&p, args), 0);
	CU_ASSERT(vmm_console_wait(&p,
				   "Command line: console=ttyS0 earlyprintk=serial,ttyS0 "
				   "virtio_mmio.device=4K@0xd0000000:5 "
				   "virtio_mmio.device=4K@0xd0001000:6\r\n",
				   EARLY_TIMEOUT_MS));
	vmm_kill(&p);
}

static void expect_refused(const char *kernel, const char *cmdline, const char *msg)
{
	const char *argv[] = { test_bin("cme-vmm"), "run",   "--mem", "256M", "--kernel", kernel,
			       "--cmdline",	    cmdline, NULL };
	char *out;

	CU_ASSERT_EQUAL(test_run(argv, &out, 20000), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, msg));
	if (!strstr(out, msg))
		printf("\n    expected \"%s\", got: %s", msg, out);
	free(out);
}

static void test_bad_kernels(void)
{
	char junk[600], cut[600], cmd[1400], *longline;
	int fd;

	if (!kit_available())
		return;
	snprintf(junk, sizeof(junk), "%s/junk", test_tmpdir());
	snprintf(cut, sizeof(cut), "%s/cut-vmlinux", test_tmpdir());
	fd = open(junk, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CU_ASSERT_EQUAL(
		write(fd, "this is not a kernel, just some text of enough length.........", 62),
		62);
	close(fd);
	snprintf(cmd, sizeof(cmd), "head -c 100000 '%s' > '%s'", kit("vmlinux"), cut);
	CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
	expect_refused(junk, "", "not a Linux bzImage");
	expect_refused(cut, "", "ELF segment lies outside the file");
	longline = malloc(5000);
	memset(longline, 'x', 4999);
	longline[4999] = 0;
	expect_refused(kit("vmlinux"), longline, "command line is 4999 bytes");
	free(longline);
}

/* ---- hardware virtualization only ---------------------------------------------------- */

static bool hw_available(void)
{
	char why[256];

	if (!kit_available())
		return false;
	if (!test_have_hw_virt(why, sizeof(why))) {
		test_skip("%s", why);
		return false;
	}
	return true;
}

/* Boot the kit with extra on the kernel command line and dev (NULL: none) on the VMM's:
 * "--disk", "--net" or "--balloon" with its value (NULL for --balloon). */
static int boot_kit_dev(struct vmm_proc *p, struct console_client *cc, const char *kernel,
			const char *extra, const char *dev, const char *val)
{
	char sock[600], cmdline[256];
	const char *dir = test_tmpdir();

	snprintf(sock, sizeof(sock), "%s/console.sock", dir);
	snprintf(cmdline, sizeof(cmdline), "console=ttyS0 quiet wss_mb=64 %s", extra);
	char con[700];

	snprintf(con, sizeof(con), "socket:%s", sock);
	const char *args[] = { "--mem",	    "1G",    "--vcpus",	  "2",
			       "--kernel",  kernel,  "--initrd",  kit("initrd.cpio.gz"),
			       "--cmdline", cmdline, "--console", con,
			       dev,	    val,     NULL };
	if (vmm_start(p, args) < 0)
		return -1;
	return console_client_open(cc, sock, 10000);
}

static int boot_kit(struct vmm_proc *p, struct console_client *cc, const char *kernel,
		    const char *extra)
{
	return boot_kit_dev(p, cc, kernel, extra, NULL, NULL);
}

/* Linux's own virtio-blk driver (the kernel package's module, loaded by the kit's /init
 * with the virtio-mmio device the VMM put on the command line) reads what the host wrote
 * into the image and writes what the host then finds there. */
static void test_kit_disk(void)
{
	static const char marker[] = "host-marker-7";
	struct console_client cc;
	struct vmm_proc p;
	char img[600], head[16] = "";
	int fd;

	if (!hw_available())
		return;
	snprintf(img, sizeof(img), "%s/linux-disk.img", test_tmpdir());
	fd = open(img, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	CU_ASSERT_FATAL(fd >= 0 && ftruncate(fd, 8 << 20) == 0);
	CU_ASSERT_FATAL(pwrite(fd, marker, strlen(marker), 8 * 512) == (ssize_t)strlen(marker));
	close(fd);
	CU_ASSERT_EQUAL_FATAL(boot_kit_dev(&p, &cc, kit("vmlinux"), "", "--disk", img), 0);
	CU_ASSERT_FATAL(console_client_wait(&cc, "READY", 120000));
	/* The typed lines never contain what the test waits for: the shell computes it. */
	CU_ASSERT_EQUAL(console_client_send(&cc, "dd if=/dev/vda bs=512 skip=8 count=1 "
						 "2>/dev/null | head -c 11 | tr a-z A-Z; echo\n"),
			0);
	CU_ASSERT(console_client_wait(&cc, "HOST-MARKER", 20000));
	CU_ASSERT_EQUAL(console_client_send(&cc, "echo cme-disk-$((6*7)) | dd of=/dev/vda "
						 "conv=fsync 2>/dev/null && echo w-$((6*7))\n"),
			0);
	CU_ASSERT(console_client_wait(&cc, "w-42", 20000));
	fd = open(img, O_RDONLY | O_CLOEXEC);
	CU_ASSERT(fd >= 0 && pread(fd, head, 11, 0) == 11);
	if (fd >= 0)
		close(fd);
	CU_ASSERT_STRING_EQUAL(head, "cme-disk-42");
	CU_ASSERT_PTR_NULL(strstr(cc.buf ? cc.buf : "", "CORRUPT"));
	console_client_close(&cc);
	vmm_kill(&p);
}

static void test_kit_boots(void)
{
	struct console_client cc;
	struct vmm_proc p;

	if (!hw_available())
		return;
	CU_ASSERT_EQUAL_FATAL(boot_kit(&p, &cc, kit("vmlinux"), ""), 0);
	CU_ASSERT(console_client_wait(&cc, "READY", 120000));
	CU_ASSERT(console_client_wait(&cc, "HB seq=5 ", 30000));
	/* Typed input reaches the guest's shell through the UART and IRQ 4. */
	CU_ASSERT_EQUAL(console_client_send(&cc, "echo cme-$((6*7))-ok\n"), 0);
	CU_ASSERT(console_client_wait(&cc, "cme-42-ok", 20000));
	CU_ASSERT_PTR_NULL(strstr(cc.buf ? cc.buf : "", "CORRUPT"));
	CU_ASSERT_EQUAL(console_client_send(&cc, "poweroff -f\n"), 0);
	CU_ASSERT_EQUAL(vmm_wait(&p, 60000), 0);
	CU_ASSERT_EQUAL(p.status, 0); /* poweroff is a clean end */
	console_client_close(&cc);
	vmm_kill(&p);
}

static void test_kit_bzimage(void)
{
	struct console_client cc;
	struct vmm_proc p;

	if (!hw_available())
		return;
	CU_ASSERT_EQUAL_FATAL(boot_kit(&p, &cc, kit("vmlinuz"), "exit_after=3"), 0);
	CU_ASSERT(console_client_wait(&cc, "HB seq=3 ", 120000));
	CU_ASSERT_EQUAL(vmm_wait(&p, 60000), 0); /* init powers off after exit_after */
	CU_ASSERT_EQUAL(p.status, 0);
	console_client_close(&cc);
	vmm_kill(&p);
}

/* Linux's virtio-balloon driver follows the target set on the control socket: the
 * balloon's actual size reaches it, the VMM's resident memory falls, the workload runs on
 * unharmed. */
static void test_kit_balloon(void)
{
	struct console_client cc;
	struct vmm_proc p;
	json_t *r, *b;
	long long actual = -1;

	if (!hw_available())
		return;
	CU_ASSERT_EQUAL_FATAL(boot_kit_dev(&p, &cc, kit("vmlinux"), "", "--balloon", NULL), 0);
	CU_ASSERT_FATAL(console_client_wait(&cc, "HB seq=3 ", 120000));
	r = vmm_request(&p, "balloon", "{\"target_mb\":256}");
	CU_ASSERT(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	for (uint64_t end = now_ns() + 60000 * 1000000ull; actual != 256 && now_ns() < end;
	     sleep_ms(200)) {
		r = vmm_request(&p, "status", NULL);
		b = json_object_get(r, "balloon");
		actual = json_integer_value(json_object_get(b, "actual_mb"));
		json_decref(r);
	}
	CU_ASSERT_EQUAL(actual, 256);
	CU_ASSERT(console_client_wait(&cc, "HB seq=8 ", 30000));
	CU_ASSERT_PTR_NULL(strstr(cc.buf ? cc.buf : "", "CORRUPT"));
	console_client_close(&cc);
	vmm_kill(&p);
}

/* Linux's virtio-net driver binds the device (on a tap in a namespace of the test's own)
 * and shows the MAC the VMM gave it. */
static void test_kit_net(void)
{
	struct console_client cc;
	struct vmm_proc p;
	struct netns ns;
	char why[256];
	int saved, rc;

	if (!hw_available())
		return;
	if (netns_make(&ns, why, sizeof(why)) < 0) {
		test_skip("%s", why);
		return;
	}
	if (netns_add_tap(&ns, "cmekit0", why, sizeof(why)) < 0) {
		netns_remove(&ns);
		test_skip("%s", why);
		return;
	}
	saved = netns_enter(&ns);
	rc = saved < 0 ? -1
		       : boot_kit_dev(&p, &cc, kit("vmlinux"), "", "--net",
				      "tap=cmekit0,mac=02:00:5e:10:00:2a");
	if (saved >= 0)
		netns_leave(saved);
	CU_ASSERT_EQUAL(rc, 0);
	if (!rc && console_client_wait(&cc, "READY", 120000)) {
		/* The typed line never holds what is awaited: the shell maps each digit. */
		CU_ASSERT_EQUAL(console_client_send(&cc, "tr 0123456789abcdef 9876543210zyxwvu "
							 "</sys/class/net/eth0/address\n"),
				0);
		CU_ASSERT(console_client_wait(&cc, "97:99:4v:89:99:7z", 20000)); /* its MAC */
	}
	if (!rc)
		console_client_close(&cc);
	vmm_kill_all(); /* before the namespace goes: the VMM holds its tap */
	netns_remove(&ns);
}

static void test_kit_snapshot(void)
{
	struct console_client cc;
	struct vmm_proc p;
	char snap[600], args[700], sock[600], con[700];
	json_t *r;

	if (!hw_available())
		return;
	CU_ASSERT_EQUAL_FATAL(boot_kit(&p, &cc, kit("vmlinux"), ""), 0);
	CU_ASSERT_FATAL(console_client_wait(&cc, "HB seq=3 ", 120000));
	snprintf(snap, sizeof(snap), "%s/linux.snap", test_tmpdir());
	snprintf(args, sizeof(args), "{\"path\":\"%s\",\"stop\":true}", snap);
	r = vmm_request(&p, "snapshot", args);
	CU_ASSERT_TRUE(r && json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	CU_ASSERT_EQUAL(vmm_wait(&p, 30000), 0);
	console_client_close(&cc);
	snprintf(sock, sizeof(sock), "%s/console2.sock", test_tmpdir());
	snprintf(con, sizeof(con), "socket:%s", sock);
	const char *rargs[] = { snap, "--console", con, NULL };

	CU_ASSERT_EQUAL_FATAL(vmm_start_verb(&p, "restore", rargs), 0);
	CU_ASSERT_EQUAL_FATAL(console_client_open(&cc, sock, 10000), 0);
	CU_ASSERT(console_client_wait(&cc, "HB seq=", 30000));
	CU_ASSERT_EQUAL(console_client_send(&cc, "echo restored-$((6*7))\n"), 0);
	CU_ASSERT(console_client_wait(&cc, "restored-42", 20000));
	CU_ASSERT_PTR_NULL(strstr(cc.buf ? cc.buf : "", "CORRUPT"));
	console_client_close(&cc);
	vmm_kill(&p);
}

void suite_linux(void)
{
	static const struct test_case cases[] = {
		{ "Debian vmlinux: banner, command line, e820, ACPI on the early console",
		  test_early_console },
		{ "--disk: virtio_mmio.device= on the kernel's command line",
		  test_disk_on_cmdline },
		{ "bad kernels and command lines are refused", test_bad_kernels },
		{ "Linux kit boots to READY, takes console input, powers off", test_kit_boots },
		{ "Linux kit from the bzImage", test_kit_bzimage },
		{ "Linux kit survives snapshot/restore with console input", test_kit_snapshot },
		{ "Linux kit: the kernel's virtio-blk driver reads and writes the image",
		  test_kit_disk },
		{ "Linux kit: the kernel's virtio-balloon driver follows the target",
		  test_kit_balloon },
		{ "Linux kit: the kernel's virtio-net driver binds, with the VMM's MAC",
		  test_kit_net },
		{ NULL, NULL },
	};
	test_add_suite("linux", cases);
}

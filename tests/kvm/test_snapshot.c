/* Snapshot and restore on real KVM: the guest continues in a new process as if nothing
 * happened (heartbeat sequence, ticks, page stamps, SSE checksum), a save of a restored VM
 * equals the original save, and bad files are refused before anything runs. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "guestrun.h"
#include "kvmtests.h"
#include "vmstate.pb-c.h"

#define MAX_HB 4096

static struct heartbeat last_hb(struct vmm_proc *p)
{
	static struct heartbeat hb[MAX_HB];
	int n = vmm_heartbeats(p, hb, MAX_HB);

	return n > 0 ? hb[(n < MAX_HB ? n : MAX_HB) - 1] : (struct heartbeat){ 0 };
}

static struct heartbeat first_hb(struct vmm_proc *p)
{
	struct heartbeat hb;

	return vmm_heartbeats(p, &hb, 1) > 0 ? hb : (struct heartbeat){ 0 };
}

/* snapshot {"stop":true}: the VMM writes the file and exits 0. */
static bool snapshot_and_stop(struct vmm_proc *p, const char *path)
{
	char args[700];
	json_t *r;
	bool ok;

	snprintf(args, sizeof(args), "{\"path\":\"%s\",\"stop\":true}", path);
	r = vmm_request(p, "snapshot", args);
	ok = r && json_is_true(json_object_get(r, "ok"));
	CU_ASSERT_TRUE(ok);
	if (r && !ok)
		printf("\n    snapshot failed: %s\n",
		       json_string_value(json_object_get(r, "error")));
	if (ok) {
		CU_ASSERT(json_integer_value(json_object_get(r, "pages")) > 0);
		CU_ASSERT(json_integer_value(json_object_get(r, "zero_pages")) > 0);
	}
	json_decref(r);
	CU_ASSERT_EQUAL(vmm_wait(p, 20000), 0);
	CU_ASSERT_EQUAL(p->status, 0);
	return ok;
}

static int restore(struct vmm_proc *p, const char *path, bool paused)
{
	const char *args[] = { path, "--name", "restored", paused ? "--paused" : NULL, NULL };

	return vmm_start_verb(p, "restore", args);
}

/* Three cycles: run, snapshot+stop, restore in a new process; the guest's own checks and
 * its heartbeat sequence must run on without a break. */
static void test_snapshot_restore_cycles(void)
{
	struct vmm_proc p;
	char path[600], why[256];
	bool hw_virt = test_have_hw_virt(why, sizeof(why));

	if (!guest_available())
		return;
	snprintf(path, sizeof(path), "%s/vm.snap", test_tmpdir());
	guest_boot(&p, "512M", "2", "wss_mb=128");
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&p, 5, 20000));
	for (int cycle = 0; cycle < 3; cycle++) {
		struct heartbeat before, after;
		int n;

		guest_check_console(&p);
		if (!snapshot_and_stop(&p, path))
			return;
		before = last_hb(&p);
		if (cycle == 0)
			sleep_ms(4000); /* time on disk */
		CU_ASSERT_EQUAL_FATAL(restore(&p, path, false), 0);
		CU_ASSERT_FATAL(vmm_wait_heartbeats(&p, 5, 20000));
		after = first_hb(&p);
		n = vmm_heartbeats(&p, NULL, 0);
		/* The first heartbeat after restore is the next one: no restart, no gap. */
		CU_ASSERT_EQUAL(after.seq, before.seq + 1);
		CU_ASSERT(after.ticks >= before.ticks);
		/* Guest time never goes back. Under VT-x/AMD-V the restored TSC also leaves out
		 * the 4 s the first snapshot spent on disk (what remains is one heartbeat period
		 * and the guest touching its pages again). On PVM hosts guest ring 3 reads the
		 * host's TSC directly (measured), so there the time on disk shows. */
		CU_ASSERT(after.ms > before.ms);
		if (cycle == 0 && hw_virt)
			CU_ASSERT(after.ms - before.ms < 3500);
		CU_ASSERT(after.pages >= before.pages);
		CU_ASSERT(last_hb(&p).ticks > after.ticks);
		CU_ASSERT(n >= 5);
		if (after.ms <= before.ms)
			printf("\n    cycle %d: guest ms %lu then %lu\n", cycle, before.ms,
			       after.ms);
		if (after.seq != before.seq + 1)
			printf("\n    cycle %d: last seq before %lu, first after %lu\n", cycle,
			       before.seq, after.seq);
	}
	guest_check_console(&p);
	vmm_kill(&p);
}

/* The packed VmState inside a snapshot file (header field state_len at byte 32). */
static Cme__VmState *read_state(const char *path)
{
	uint64_t len = 0;
	uint8_t *buf;
	Cme__VmState *st = NULL;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return NULL;
	if (pread(fd, &len, 8, 32) == 8 && len > 0 && len < (64u << 20)) {
		buf = malloc(len);
		if (pread(fd, buf, len, 64) == (ssize_t)len)
			st = cme__vm_state__unpack(NULL, len, buf);
		free(buf);
	}
	close(fd);
	return st;
}

static uint64_t *msr_slot(Cme__VmState *st, unsigned vcpu, uint32_t index)
{
	for (size_t i = 0; i < st->config->n_msr_index; i++)
		if (st->config->msr_index[i] == index)
			return &st->vcpus[vcpu]->msr_value[i];
	return NULL;
}

/* Time moves on while a restored VM sits paused: the TSC, kvmclock, the PIT's load time
 * and the LAPIC timer's current count. Check the clocks did not go back, then blank these
 * so the rest compares exactly. */
static void normalize_time(Cme__VmState *a, Cme__VmState *b)
{
	CU_ASSERT(b->clock->clock >= a->clock->clock);
	a->clock->clock = b->clock->clock = 0;
	/* Clocks KVM keeps going from host time: the TSC, and where KVM lists them, Hyper-V's
	 * VP runtime and reference time counter. */
	static const unsigned clocks[] = { 0x10, 0x40000010, 0x40000020 };

	for (size_t v = 0; v < a->n_vcpus; v++) {
		for (size_t k = 0; k < ARRAY_SIZE(clocks); k++) {
			uint64_t *ta = msr_slot(a, (unsigned)v, clocks[k]);
			uint64_t *tb = msr_slot(b, (unsigned)v, clocks[k]);

			CU_ASSERT_FATAL(k > 0 || (ta && tb)); /* the TSC is always there */
			if (!ta || !tb)
				continue;
			CU_ASSERT(*tb >= *ta);
			*ta = *tb = 0;
		}
		memset(a->vcpus[v]->lapic.data + 0x390, 0, 4); /* timer current count */
		memset(b->vcpus[v]->lapic.data + 0x390, 0, 4);
		for (size_t i = 0; i < a->config->n_msr_index; i++)
			if (a->vcpus[v]->msr_value[i] != b->vcpus[v]->msr_value[i])
				printf("\n    vcpu %zu MSR 0x%x: 0x%lx then 0x%lx\n", v,
				       a->config->msr_index[i], a->vcpus[v]->msr_value[i],
				       b->vcpus[v]->msr_value[i]);
	}
	for (int ch = 0; ch < 3; ch++) {
		size_t off = (size_t)ch * 24 + 16; /* kvm_pit_channel_state.count_load_time */

		memset(a->pit.data + off, 0, 8);
		memset(b->pit.data + off, 0, 8);
	}
}

static void test_save_restore_save_equal(void)
{
	struct vmm_proc p;
	char s1[600], s2[600], args[700];
	Cme__VmState *a, *b;
	json_t *r;

	if (!guest_available())
		return;
	snprintf(s1, sizeof(s1), "%s/one.snap", test_tmpdir());
	snprintf(s2, sizeof(s2), "%s/two.snap", test_tmpdir());
	guest_boot(&p, "256M", "2", "wss_mb=32");
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&p, 3, 20000));
	if (!snapshot_and_stop(&p, s1))
		return;
	CU_ASSERT_EQUAL_FATAL(restore(&p, s1, true), 0);
	snprintf(args, sizeof(args), "{\"path\":\"%s\"}", s2);
	for (int i = 0; i < 100 && access(p.api, F_OK) < 0; i++)
		sleep_ms(50);
	r = vmm_request(&p, "snapshot", args);
	CU_ASSERT_TRUE(r && json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	vmm_kill(&p);
	a = read_state(s1);
	b = read_state(s2);
	CU_ASSERT_FATAL(a && b);
	CU_ASSERT_EQUAL(vmm_heartbeats(&p, NULL, 0), 0); /* paused: it never ran */
	normalize_time(a, b);
	size_t la = cme__vm_state__get_packed_size(a), lb = cme__vm_state__get_packed_size(b);
	uint8_t *pa = malloc(la), *pb = malloc(lb);

	cme__vm_state__pack(a, pa);
	cme__vm_state__pack(b, pb);
	CU_ASSERT_EQUAL(la, lb);
	CU_ASSERT(la == lb && memcmp(pa, pb, la) == 0);
	free(pa);
	free(pb);
	cme__vm_state__free_unpacked(a, NULL);
	cme__vm_state__free_unpacked(b, NULL);
}

/* A snapshot written by the VMM of commit 04d3a37 (before the device model and the
 * sections of several devices): today's VMM restores it and the guest goes on — its
 * heartbeats continue from seq 19, its own checks pass. Made with
 *   cme-vmm run --mem 8M --image selfcheck.bin --cmdline wss_mb=1 (at 04d3a37), then
 *   ctl snapshot {"stop":true} after 19 heartbeats; gzip -9. */
static void test_old_snapshot(void)
{
	const char *src = "tests/data/snapshot-04d3a37.snap.gz";
	char snap[600], cmd[1400];
	const char *sh[] = { "/bin/sh", "-c", cmd, NULL };
	const char *args[] = { snap, "--name", "old", NULL };
	struct heartbeat hb[4];
	struct vmm_proc p;
	char *out;

	if (!guest_available())
		return;
	snprintf(snap, sizeof(snap), "%s/old.snap", test_tmpdir());
	snprintf(cmd, sizeof(cmd), "gzip -dc '%s' > '%s'", src, snap);
	CU_ASSERT_EQUAL_FATAL(test_run(sh, &out, 30000), 0);
	free(out);
	CU_ASSERT_EQUAL_FATAL(vmm_start_verb(&p, "restore", args), 0);
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&p, 3, 30000));
	CU_ASSERT(vmm_heartbeats(&p, hb, 4) >= 3);
	CU_ASSERT_EQUAL(hb[0].seq, 20);
	CU_ASSERT(guest_check_console(&p) >= 3);
	/* Written before CPU templates: its CPUID is KVM's as it was, the template "host". */
	CU_ASSERT(vmm_wait_status(&p, "cpu_template", "\"host\"", 10000));
	vmm_kill(&p);
}

/* cme-vmm VERB snap [flag value] fails with msg (status 1). */
static void expect_verb_refused(const char *verb, const char *snap, const char *flag,
				const char *value, const char *msg)
{
	const char *argv[] = { test_bin("cme-vmm"), verb, snap, flag, value, NULL };
	char *out;

	CU_ASSERT_EQUAL(test_run(argv, &out, 30000), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, msg));
	if (!strstr(out, msg))
		printf("\n    %s: expected \"%s\", got: %s", verb, msg, out);
	free(out);
}

/* restore snap [flag value] fails with msg (status 1); so does verify-snapshot, which has
 * no --mem to mismatch. */
static void expect_refused_with(const char *snap, const char *flag, const char *value,
				const char *msg)
{
	expect_verb_refused("restore", snap, flag, value, msg);
	if (!flag || !strcmp(flag, "--key"))
		expect_verb_refused("verify-snapshot", snap, flag, value, msg);
}

/* verify-snapshot of a good snapshot [with its key]: status 0 and its JSON line has want. */
static void expect_verified(const char *snap, const char *key, const char *want)
{
	const char *argv[] = {
		test_bin("cme-vmm"), "verify-snapshot", snap, key ? "--key" : NULL, key, NULL
	};
	char *out;

	CU_ASSERT_EQUAL(test_run(argv, &out, 30000), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "{\"ok\":true,\"mem_bytes\":268435456,\"vcpus\":1,"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, want));
	free(out);
}

static void expect_refused(const char *snap, const char *mem, const char *msg)
{
	expect_refused_with(snap, mem ? "--mem" : NULL, mem, msg);
}

static void copy_file(const char *from, const char *to, off_t truncate_at, off_t flip_at)
{
	char cmd[1400];
	int fd;

	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, to);
	CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
	if (truncate_at >= 0)
		CU_ASSERT_EQUAL(truncate(to, truncate_at), 0);
	if (flip_at >= 0) {
		unsigned char b;

		fd = open(to, O_RDWR);
		CU_ASSERT_EQUAL(pread(fd, &b, 1, flip_at), 1);
		b ^= 0x01;
		CU_ASSERT_EQUAL(pwrite(fd, &b, 1, flip_at), 1);
		close(fd);
	}
}

static void test_refusals(void)
{
	struct vmm_proc p;
	struct stat sb;
	char good[600], bad[600];

	if (!guest_available())
		return;
	snprintf(good, sizeof(good), "%s/good.snap", test_tmpdir());
	snprintf(bad, sizeof(bad), "%s/bad.snap", test_tmpdir());
	guest_boot(&p, "256M", "1", "wss_mb=16");
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&p, 2, 20000));
	if (!snapshot_and_stop(&p, good))
		return;
	CU_ASSERT_EQUAL_FATAL(stat(good, &sb), 0);
	expect_verified(good, NULL, "\"encrypted\":false");
	copy_file(good, bad, sb.st_size / 2, -1);
	expect_refused(bad, NULL, "snapshot is truncated at byte");
	copy_file(good, bad, sb.st_size - 1, -1);
	expect_refused(bad, NULL, "snapshot is truncated at byte");
	copy_file(good, bad, -1, sb.st_size / 2);
	expect_refused(bad, NULL, "checksum mismatch");
	copy_file(good, bad, -1, 100); /* inside the VM state */
	expect_refused(bad, NULL, "checksum mismatch");
	copy_file(good, bad, -1, 0);
	expect_refused(bad, NULL, "not a CME snapshot");
	expect_refused(good, "512M", "snapshot is for 256 MiB and 1 vCPUs, not 512 MiB");
	expect_refused("/nonexistent.snap", NULL, "No such file or directory");
}

/* restore with --key KEY (NULL: none) fails with msg. */
static void expect_key_refused(const char *snap, const char *key, const char *msg)
{
	expect_refused_with(snap, key ? "--key" : NULL, key, msg);
}

/* Whether the file holds the bytes of needle anywhere. */
static bool file_has(const char *path, const char *needle)
{
	FILE *f = fopen(path, "rb");
	size_t n = strlen(needle), len = 0, cap = 1 << 20;
	char *buf = malloc(cap);
	bool hit = false;

	while (f && buf) {
		size_t got = fread(buf + len, 1, cap - len, f);

		len += got;
		if (memmem(buf, len, needle, n)) {
			hit = true;
			break;
		}
		if (got == 0)
			break;
		if (len >= n) { /* keep the tail a needle could start in */
			memmove(buf, buf + len - (n - 1), n - 1);
			len = n - 1;
		}
	}
	if (f)
		fclose(f);
	free(buf);
	return hit;
}

static void keygen(const char *path)
{
	const char *argv[] = { test_bin("cme-vmm"), "keygen", path, NULL };
	struct stat sb;
	char *out;

	CU_ASSERT_EQUAL_FATAL(test_run(argv, &out, 10000), 0);
	free(out);
	CU_ASSERT_FATAL(stat(path, &sb) == 0);
	CU_ASSERT_EQUAL(sb.st_mode & 0777, 0600);
}

/* snapshot {"key_file"}: nothing of guest memory in clear; restored with the key the guest
 * runs on; no key, another key, a key file others may read, a flipped byte, a cut file and
 * a plain snapshot given a key are refused. */
static void test_encrypted(void)
{
	char key[600], other[600], loose[600], enc[600], bad[600], plain[600], args[2000];
	struct heartbeat before, after;
	struct vmm_proc p;
	struct stat sb;
	json_t *r;

	if (!guest_available())
		return;
	snprintf(key, sizeof(key), "%s/snap.key", test_tmpdir());
	snprintf(other, sizeof(other), "%s/other.key", test_tmpdir());
	snprintf(loose, sizeof(loose), "%s/loose.key", test_tmpdir());
	snprintf(enc, sizeof(enc), "%s/enc.snap", test_tmpdir());
	snprintf(bad, sizeof(bad), "%s/bad.snap", test_tmpdir());
	snprintf(plain, sizeof(plain), "%s/plain.snap", test_tmpdir());
	keygen(key);
	keygen(other);
	keygen(loose);
	CU_ASSERT_FATAL(chmod(loose, 0644) == 0);
	CU_ASSERT_FATAL(file_has(test_guest(), "CORRUPT")); /* in guest RAM, so in a snapshot */

	guest_boot(&p, "256M", "1", "wss_mb=16");
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&p, 3, 20000));
	snprintf(args, sizeof(args), "{\"path\":\"%s\",\"key_file\":\"%s\"}", enc, loose);
	r = vmm_request(&p, "snapshot", args);
	CU_ASSERT_PTR_NOT_NULL(
		strstr(json_string_value(json_object_get(r, "error")) ?: "", "chmod 600"));
	json_decref(r);
	snprintf(args, sizeof(args), "{\"path\":\"%s\",\"key_file\":\"%s\",\"stop\":true}", enc,
		 key);
	r = vmm_request(&p, "snapshot", args);
	CU_ASSERT_TRUE_FATAL(r && json_is_true(json_object_get(r, "encrypted")));
	json_decref(r);
	CU_ASSERT_EQUAL(vmm_wait(&p, 20000), 0);
	before = last_hb(&p);
	CU_ASSERT_FALSE(file_has(enc, "CORRUPT"));

	expect_verified(enc, key, "\"encrypted\":true");
	expect_key_refused(enc, NULL, "the snapshot is encrypted: give its key");
	expect_key_refused(enc, other, "wrong key");
	expect_key_refused(enc, loose, "chmod 600");
	CU_ASSERT_EQUAL_FATAL(stat(enc, &sb), 0);
	copy_file(enc, bad, -1, sb.st_size / 2);
	expect_key_refused(bad, key, "does not decrypt");
	copy_file(enc, bad, -1, 80); /* the first message's ciphertext */
	expect_key_refused(bad, key, "does not decrypt");
	copy_file(enc, bad, sb.st_size - 10, -1);
	expect_key_refused(bad, key, "truncated");

	const char *rargs[] = { enc, "--key", key, "--name", "restored", NULL };

	CU_ASSERT_EQUAL_FATAL(vmm_start_verb(&p, "restore", rargs), 0);
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&p, 3, 20000));
	after = first_hb(&p);
	CU_ASSERT_EQUAL(after.seq, before.seq + 1);
	CU_ASSERT(guest_check_console(&p) >= 3);
	CU_ASSERT_TRUE(snapshot_and_stop(&p, plain));
	expect_key_refused(plain, key, "the snapshot is not encrypted, but a key was given");
}

/* A snapshot without stop: the guest pauses briefly and runs on. */
static void test_snapshot_keeps_running(void)
{
	struct vmm_proc p;
	char path[600], args[700];
	json_t *r;
	int n;

	if (!guest_available())
		return;
	snprintf(path, sizeof(path), "%s/live.snap", test_tmpdir());
	snprintf(args, sizeof(args), "{\"path\":\"%s\",\"stop\":false}", path);
	guest_boot(&p, "256M", "2", "wss_mb=32");
	CU_ASSERT_FATAL(vmm_wait_heartbeats(&p, 2, 20000));
	r = vmm_request(&p, "snapshot", args);
	CU_ASSERT_TRUE(r && json_is_true(json_object_get(r, "ok")));
	CU_ASSERT_TRUE(r && json_is_false(json_object_get(r, "stopped")));
	json_decref(r);
	n = vmm_heartbeats(&p, NULL, 0);
	CU_ASSERT(vmm_wait_heartbeats(&p, n + 3, 20000));
	r = vmm_request(&p, "snapshot", "{\"path\":\"/nonexistent/dir/x.snap\"}");
	CU_ASSERT_TRUE(r && json_is_false(json_object_get(r, "ok")));
	json_decref(r);
	r = vmm_request(&p, "status", NULL);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "state")), "running");
	json_decref(r);
	guest_check_console(&p);
	vmm_kill(&p);
}

/* Console input reaches the guest through the UART and IOAPIC (echo=1: the guest's IRQ 4
 * handler collects lines and prints them), before and after a restore. */
static void test_console_input_survives_restore(void)
{
	struct console_client cc;
	struct vmm_proc p;
	char sock[600], con[700], snap[600], args[700];

	if (!guest_available())
		return;
	snprintf(sock, sizeof(sock), "%s/con.sock", test_tmpdir());
	snprintf(con, sizeof(con), "socket:%s", sock);
	snprintf(snap, sizeof(snap), "%s/echo.snap", test_tmpdir());
	const char *boot[] = { "--mem",	    "256M",	  "--vcpus",   "2",
			       "--image",   test_guest(), "--cmdline", "wss_mb=16 echo=1",
			       "--console", con,	  NULL };

	CU_ASSERT_EQUAL_FATAL(vmm_start(&p, boot), 0);
	CU_ASSERT_EQUAL_FATAL(console_client_open(&cc, sock, 10000), 0);
	CU_ASSERT_FATAL(console_client_wait(&cc, "HB seq=2 ", 20000));
	CU_ASSERT_EQUAL(console_client_send(&cc, "hello from the host\n"), 0);
	CU_ASSERT(console_client_wait(&cc, "RX irqs=1 line=hello from the host", 10000));
	console_client_close(&cc);
	snprintf(args, sizeof(args), "{\"path\":\"%s\",\"stop\":true}", snap);
	json_decref(vmm_request(&p, "snapshot", args));
	CU_ASSERT_EQUAL(vmm_wait(&p, 20000), 0);
	const char *rargs[] = { snap, "--console", con, NULL };

	CU_ASSERT_EQUAL_FATAL(vmm_start_verb(&p, "restore", rargs), 0);
	CU_ASSERT_EQUAL_FATAL(console_client_open(&cc, sock, 10000), 0);
	CU_ASSERT(console_client_wait(&cc, "HB seq=", 20000));
	CU_ASSERT_EQUAL(console_client_send(&cc, "typed after restore\n"), 0);
	/* The interrupt count continues from the saved guest: this is the second line. */
	CU_ASSERT(console_client_wait(&cc, "RX irqs=2 line=typed after restore", 10000));
	CU_ASSERT_PTR_NULL(strstr(cc.buf ? cc.buf : "", "CORRUPT"));
	if (!strstr(cc.buf ? cc.buf : "", "line=typed after restore"))
		printf("\n    console:\n%s\n", cc.buf ? cc.buf : "");
	console_client_close(&cc);
	json_decref(vmm_request(&p, "stop", NULL));
	CU_ASSERT_EQUAL(vmm_wait(&p, 10000), 0);
	CU_ASSERT_EQUAL(p.status, 0);
	CU_ASSERT_EQUAL(access(sock, F_OK), -1); /* the console socket is removed on exit */
}

void suite_snapshot(void)
{
	static const struct test_case cases[] = {
		{ "snapshot, kill, restore: the guest runs on (3 cycles)",
		  test_snapshot_restore_cycles },
		{ "save, restore paused, save: the same state", test_save_restore_save_equal },
		{ "truncated, corrupt and mismatched snapshots are refused", test_refusals },
		{ "encrypted snapshots: round trip; no key, wrong key, loose key file, tampering "
		  "refused",
		  test_encrypted },
		{ "snapshot without stop: the guest keeps running", test_snapshot_keeps_running },
		{ "a snapshot of the VMM before the device model restores", test_old_snapshot },
		{ "console input reaches the guest, also after a restore",
		  test_console_input_survives_restore },
		{ NULL, NULL },
	};
	test_add_suite("snapshot", cases);
}

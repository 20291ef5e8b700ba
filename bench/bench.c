/* make bench: VMM benchmarks, one JSON line each. Never pass/fail on time. */
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"
#include "bench.h"
#include "hypervisor.h"

#define RUNS 5

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void emit(const char *name, const char *unit, double *v, int n, json_t *extra)
{
	json_t *o = extra ? extra : json_object(), *runs = json_array();
	char *s;

	for (int i = 0; i < n; i++)
		json_array_append_new(runs, json_real(v[i]));
	qsort(v, (size_t)n, sizeof(double), cmp_double);
	json_object_set_new(o, "bench", json_string(name));
	json_object_set_new(o, "unit", json_string(unit));
	json_object_set_new(o, "median", json_real(n ? v[n / 2] : 0));
	json_object_set_new(o, "runs", runs);
	s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
	printf("%s\n", s);
	fflush(stdout);
	free(s);
	json_decref(o);
}

double bench_median(double *v, int n)
{
	if (n <= 0)
		return 0;
	qsort(v, (size_t)n, sizeof(double), cmp_double);
	return v[n / 2];
}

void bench_emit_many(const char *name, int n, const char *const *keys, double *const *vals)
{
	json_t *o = json_pack("{s:s,s:i}", "bench", name, "n", n);
	char *s;

	for (int k = 0; keys[k]; k++) {
		json_t *runs = json_array();
		double sorted[64];

		for (int i = 0; i < n && i < 64; i++) {
			json_array_append_new(runs, json_real(vals[k][i]));
			sorted[i] = vals[k][i];
		}
		qsort(sorted, (size_t)n, sizeof(double), cmp_double);
		json_object_set_new(o, keys[k],
				    json_pack("{s:f,s:o}", "median", sorted[n / 2], "runs", runs));
	}
	s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
	printf("%s\n", s);
	fflush(stdout);
	free(s);
	json_decref(o);
}

/* Process start to READY and to the first heartbeat, as an operator sees it. */
static void bench_boot(void)
{
	double ready[RUNS], hb[RUNS];
	const char *args[] = { "--mem",	     "1G",	  "--vcpus",   "2", "--image",
			       test_guest(), "--cmdline", "wss_mb=64", NULL };

	for (int i = 0; i < RUNS; i++) {
		struct vmm_proc p;
		uint64_t t0 = now_ns();

		if (vmm_start(&p, args) < 0)
			return;
		vmm_console_wait(&p, "READY", 30000);
		ready[i] = (double)(now_ns() - t0) / 1e6;
		vmm_console_wait(&p, "HB seq=1 ", 30000);
		hb[i] = (double)(now_ns() - t0) / 1e6;
		vmm_kill(&p);
	}
	emit("vm_start_to_ready", "ms", ready, RUNS, NULL);
	emit("vm_start_to_first_heartbeat", "ms", hb, RUNS,
	     json_pack("{s:s}", "note",
		       "the first heartbeat is due 100 ms of guest time "
		       "after READY"));
}

/* Linux: VMM start to the guest kit's READY, where a stock kernel can boot. */
static void bench_linux_boot(void)
{
	char why[256], sock[600], con[700];
	double ms[RUNS];
	int n = 0;

	if (!test_have_hw_virt(why, sizeof(why))) {
		printf("{\"bench\":\"linux_boot_to_ready\",\"skipped\":\"%s\"}\n", why);
		return;
	}
	for (int i = 0; i < RUNS; i++) {
		struct console_client cc;
		struct vmm_proc p;
		uint64_t t0 = now_ns();

		snprintf(sock, sizeof(sock), "%s/con.sock", test_tmpdir());
		snprintf(con, sizeof(con), "socket:%s", sock);
		const char *args[] = { "--mem",	    "1G",
				       "--vcpus",   "2",
				       "--kernel",  "build/guest/linux/vmlinux",
				       "--initrd",  "build/guest/linux/initrd.cpio.gz",
				       "--cmdline", "console=ttyS0 quiet wss_mb=64",
				       "--console", con,
				       NULL };

		if (vmm_start(&p, args) == 0 && console_client_open(&cc, sock, 10000) == 0) {
			if (console_client_wait(&cc, "READY", 120000))
				ms[n++] = (double)(now_ns() - t0) / 1e6;
			console_client_close(&cc);
		}
		vmm_kill(&p);
	}
	emit("linux_boot_to_ready", "ms", ms, n, NULL);
}

static struct vm *boot(const char *console, uint64_t mem, const char *cmdline)
{
	struct vm_config cfg = { .name = "bench",
				 .mem_bytes = mem,
				 .nr_vcpus = 2,
				 .console = { CONSOLE_FILE, console } };
	struct vm *vm;

	if (vm_create(&cfg, &vm) < 0)
		return NULL;
	if (vm_load_flat(vm, test_guest(), cmdline) < 0 || vm_start(vm, false) < 0) {
		vm_destroy(vm);
		return NULL;
	}
	return vm;
}

/* The guest's ring 3 does N port writes to an emulated register; the TSC says how long
 * each exit to the VMM and back took. */
double bench_ioloop_us(const char *console, unsigned long tsc_khz)
{
	const char *l = strstr(console, "IOLOOP");
	unsigned long iters, tsc;

	if (!l || !tsc_khz || sscanf(l, "IOLOOP iters=%lu tsc=%lu", &iters, &tsc) != 2 || !iters)
		return 0;
	return (double)tsc / (double)tsc_khz * 1000.0 / (double)iters;
}

static void bench_exit_cost(void)
{
	double us[RUNS];
	int n = 0;

	for (int i = 0; i < RUNS; i++) {
		char console[600];
		struct vm_info info;
		struct vm *vm;
		char *c;
		double one;

		snprintf(console, sizeof(console), "%s/console", test_tmpdir());
		vm = boot(console, 64ull << 20, "mode=ioloop iters=100000");
		if (!vm)
			return;
		vm_get_info(vm, &info);
		for (int t = 0; t < 600 && !vm_get_end(vm, &(struct vm_end){ 0 }); t++)
			sleep_ms(50);
		vm_destroy(vm);
		c = test_read_file(console);
		one = bench_ioloop_us(c, info.tsc_khz);
		if (one > 0)
			us[n++] = one;
		free(c);
	}
	emit("exit_roundtrip", "us", us, n, json_pack("{s:s}", "exit", "ring-3 outb to UART"));
}

/* KVM_GET_DIRTY_LOG (get and clear) over all of a 1 GiB guest, all pages dirty. */
static void bench_dirty_log(void)
{
	double ms[RUNS];
	char console[600];
	uint64_t *bm, n, pages = 0;
	struct vm_slot s;
	struct vm *vm;

	snprintf(console, sizeof(console), "%s/console", test_tmpdir());
	/* 256 MiB rewritten continuously; wait out the slow first touch of every page (a PVM
	 * host maps each one through its emulator) so each interval sees all of them dirty. */
	vm = boot(console, 1ull << 30, "wss_mb=256");
	if (!vm)
		return;
	sleep_ms(5000);
	if (vm_dirty_log_start(vm) < 0) {
		vm_destroy(vm);
		return;
	}
	vm_get_slot(vm, 0, &s);
	bm = calloc(s.size / 4096 / 64, 8);
	for (int i = 0; i < RUNS; i++) {
		uint64_t t0;

		sleep_ms(200);
		t0 = now_ns();
		if (vm_dirty_log_fetch(vm, 0, bm, &n) < 0)
			break;
		ms[i] = (double)(now_ns() - t0) / 1e6 * (double)(1ull << 30) / (double)s.size;
		pages = n;
	}
	free(bm);
	vm_destroy(vm);
	emit("dirty_log_get_and_clear", "ms_per_GiB", ms, RUNS,
	     json_pack("{s:I}", "dirty_pages_last", (json_int_t)pages));
}

/* ---- snapshot and restore ------------------------------------------------------------ */

#define SNAP_RUNS 3
#define HB_MAX	  1024

/* What one snapshot request reported, and how long the client waited for it. */
struct snap_run {
	double ms, mib_s, roundtrip_ms;
	json_int_t bytes, pages, zero_pages, state_bytes;
};

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), cmp_double);
	return n ? v[n / 2] : 0;
}

static void emit_error(const char *name, const char *fmt, ...) CME_PRINTF(2, 3);
static void emit_error(const char *name, const char *fmt, ...)
{
	char why[512];
	va_list ap;
	json_t *o;
	char *s;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	o = json_pack("{s:s,s:s}", "bench", name, "error", why);
	s = json_dumps(o, JSON_COMPACT);
	printf("%s\n", s);
	fflush(stdout);
	free(s);
	json_decref(o);
}

/* wss_pages from the guest's READY line, 0 if it has none. */
static unsigned long ready_wss_pages(struct vmm_proc *p)
{
	char *c = test_read_file(p->console), *l = strstr(c, "READY ");
	unsigned long base, pages = 0;

	if (!l || sscanf(l, "READY wss_base=0x%lx wss_pages=%lu", &base, &pages) != 2)
		pages = 0;
	free(c);
	return pages;
}

static uint64_t last_hb_pages(struct vmm_proc *p)
{
	static struct heartbeat hb[HB_MAX];
	int n = vmm_heartbeats(p, hb, HB_MAX);

	return n > 0 ? hb[(n < HB_MAX ? n : HB_MAX) - 1].pages : 0;
}

/* The guest's first touch of a page is slow on PVM hosts (~30k pages/s per vCPU): wait
 * until every page of the working set has been written (pages > 2 x wss), so that each
 * snapshot stores the whole working set rather than a set still growing. */
static bool wait_wss_touched(struct vmm_proc *p, int timeout_ms)
{
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000;
	unsigned long wss;

	if (!vmm_console_wait(p, "READY", timeout_ms) || !(wss = ready_wss_pages(p)))
		return false;
	while (last_hb_pages(p) <= 2 * (uint64_t)wss) {
		if (now_ns() > end)
			return false;
		sleep_ms(100);
	}
	return true;
}

static json_int_t jint(json_t *r, const char *key)
{
	return json_integer_value(json_object_get(r, key));
}

/* One `snapshot {"path":P,"stop":false}` on the control socket. Returns 0 or -1 with the
 * reason in err. */
static int snapshot_once(struct vmm_proc *p, const char *path, struct snap_run *run, char *err,
			 size_t errlen)
{
	char args[700];
	uint64_t t0 = now_ns();
	json_t *r;

	snprintf(args, sizeof(args), "{\"path\":\"%s\",\"stop\":false}", path);
	r = vmm_request(p, "snapshot", args);
	run->roundtrip_ms = (double)(now_ns() - t0) / 1e6;
	if (!r || !json_is_true(json_object_get(r, "ok"))) {
		const char *why = r ? json_string_value(json_object_get(r, "error")) : NULL;

		snprintf(err, errlen, "%s", why ? why : "no reply from the control socket");
		json_decref(r);
		return -1;
	}
	run->ms = (double)jint(r, "ms");
	run->bytes = jint(r, "bytes");
	run->pages = jint(r, "pages");
	run->zero_pages = jint(r, "zero_pages");
	run->state_bytes = jint(r, "state_bytes");
	run->mib_s = run->ms > 0 ? (double)run->bytes / (1 << 20) * 1000.0 / run->ms : 0;
	json_decref(r);
	return 0;
}

static void emit_snapshot_write(const char *name, const char *vm, struct snap_run *runs, int n)
{
	double ms[SNAP_RUNS], mib_s[SNAP_RUNS], rt[SNAP_RUNS];
	const struct snap_run *last = &runs[n - 1];

	for (int i = 0; i < n; i++) {
		ms[i] = runs[i].ms;
		mib_s[i] = runs[i].mib_s;
		rt[i] = runs[i].roundtrip_ms;
	}
	emit(name, "ms", ms, n,
	     json_pack("{s:f,s:f,s:I,s:I,s:I,s:I,s:s,s:s}", "mib_s", median(mib_s, n),
		       "roundtrip_ms", median(rt, n), "bytes", last->bytes, "pages", last->pages,
		       "zero_pages", last->zero_pages, "state_bytes", last->state_bytes, "vm", vm,
		       "note",
		       "ms and mib_s: the VMM's write of the file, fdatasync included; "
		       "roundtrip_ms: the control request, pause and resume included"));
}

/* Median of SNAP_RUNS live snapshots of p to path; the last one is left at path. Returns
 * the file's size, or 0 on failure (reported). */
static json_int_t bench_snapshot_write(struct vmm_proc *p, const char *path, const char *name,
				       const char *vm)
{
	struct snap_run runs[SNAP_RUNS];
	char err[512];

	for (int i = 0; i < SNAP_RUNS; i++) {
		unlink(path); /* each run writes a new file, as a first snapshot does */
		if (snapshot_once(p, path, &runs[i], err, sizeof(err)) < 0) {
			emit_error(name, "snapshot failed: %s", err);
			return 0;
		}
		sleep_ms(300);
	}
	emit_snapshot_write(name, vm, runs, SNAP_RUNS);
	return runs[SNAP_RUNS - 1].bytes;
}

/* The load time the restoring VMM logs: "restored from F: N pages, M MiB in T ms". */
static bool restore_load_ms(struct vmm_proc *p, double *ms)
{
	char *log = test_read_file(p->errlog), *l = strstr(log, "restored from ");
	unsigned long v;
	bool ok;

	l = l ? strstr(l, " MiB in ") : NULL;
	ok = l && sscanf(l, " MiB in %lu ms", &v) == 1;
	if (ok)
		*ms = (double)v;
	free(log);
	return ok;
}

/* Like vmm_console_wait(), but polling every 2 ms: the times measured here are a few
 * hundred ms, where the harness's 20 ms poll would be a visible error. */
bool bench_console_wait_fine(struct vmm_proc *p, const char *needle, int timeout_ms)
{
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000;
	bool found;

	do {
		char *c = test_read_file(p->console);

		found = strstr(c, needle) != NULL;
		free(c);
		if (!found)
			sleep_ms(2);
	} while (!found && now_ns() < end);
	return found;
}

/* `cme-vmm restore` of path in a new process: process start to the first heartbeat on its
 * new console, and the load time the VMM reports. Returns 0 or -1 (reported). */
static int restore_once(const char *path, double *to_hb_ms, double *load_ms)
{
	const char *args[] = { path, "--name", "bench-restore", NULL };
	struct vmm_proc p;
	uint64_t t0 = now_ns();
	int rc = -1;

	if (vmm_start_verb(&p, "restore", args) < 0) {
		emit_error("snapshot_restore", "cannot start cme-vmm restore");
		return -1;
	}
	if (!bench_console_wait_fine(&p, "HB seq=", 30000)) {
		emit_error("snapshot_restore", "no heartbeat within 30 s, see %s", p.errlog);
		goto out;
	}
	*to_hb_ms = (double)(now_ns() - t0) / 1e6;
	if (!restore_load_ms(&p, load_ms)) {
		emit_error("snapshot_restore", "no \"restored from\" line in %s", p.errlog);
		goto out;
	}
	rc = 0;
out:
	vmm_kill(&p);
	return rc;
}

/* Restores of path in new processes, its file still in the page cache from the write, as
 * on the host that took the snapshot. Two lines: to the first heartbeat, and the load. */
static void bench_snapshot_restore(const char *path, json_int_t bytes)
{
	double hb[SNAP_RUNS], load[SNAP_RUNS], mib_s[SNAP_RUNS];
	double mib_s_median, load_median;

	for (int i = 0; i < SNAP_RUNS; i++) {
		if (restore_once(path, &hb[i], &load[i]) < 0)
			return;
		mib_s[i] = load[i] > 0 ? (double)bytes / (1 << 20) * 1000.0 / load[i] : 0;
	}
	mib_s_median = median(mib_s, SNAP_RUNS);
	emit("snapshot_restore_load", "ms", load, SNAP_RUNS,
	     json_pack("{s:f,s:I,s:s}", "mib_s", mib_s_median, "bytes", bytes, "note",
		       "vm_snapshot_restore() as the VMM logs it: VM creation, reading and "
		       "hashing the file, state; mib_s: file bytes / load ms"));
	load_median = load[SNAP_RUNS / 2]; /* emit() sorted it */
	emit("snapshot_restore", "ms", hb, SNAP_RUNS,
	     json_pack("{s:f,s:f,s:I,s:s}", "load_ms", load_median, "mib_s", mib_s_median, "bytes",
		       bytes, "note",
		       "cme-vmm restore process start to the first HB line on its new console; "
		       "the file is in the page cache, as right after the snapshot"));
}

/* The same with a disk attached and busy: vCPU 0 in its disk loop (write, flush, read back
 * 16 MiB), vCPU 1 writing the 256 MiB; a snapshot waits for the request in progress and
 * flushes nothing more (the image is not in the snapshot). */
static void bench_snapshot_disk(const char *path)
{
	char img[600];
	const char *args[] = { "--mem",	  "1G",		"--vcpus",   "2",
			       "--image", test_guest(), "--cmdline", "wss_mb=256 disk_mb=16",
			       "--disk",  img,		NULL };
	struct vmm_proc p;
	int fd;

	snprintf(img, sizeof(img), "%s/bench-snap.img", test_tmpdir());
	fd = open(img, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || ftruncate(fd, 32 << 20) < 0 || vmm_start(&p, args) < 0) {
		emit_error("snapshot_write_disk", "cannot start cme-vmm with a disk");
		if (fd >= 0)
			close(fd);
		return;
	}
	close(fd);
	if (wait_wss_touched(&p, 60000))
		bench_snapshot_write(&p, path, "snapshot_write_disk",
				     "1 GiB, 2 vCPUs, wss_mb=256 on vCPU 1, disk loop on vCPU 0");
	else
		emit_error("snapshot_write_disk", "the working set was not written in 60 s");
	vmm_kill(&p);
	unlink(path);
	unlink(img);
}

/* A 1 GiB, 2-vCPU guest with 256 MiB written: live snapshots of it, then restores of the
 * last snapshot in new processes. */
static void bench_snapshot(void)
{
	const char *args[] = { "--mem",	     "1G",	  "--vcpus",	"2", "--image",
			       test_guest(), "--cmdline", "wss_mb=256", NULL };
	struct vmm_proc p;
	char path[600];
	json_int_t bytes;

	snprintf(path, sizeof(path), "%s/bench.snap", test_tmpdir());
	if (vmm_start(&p, args) < 0) {
		emit_error("snapshot_write", "cannot start cme-vmm");
		return;
	}
	if (!wait_wss_touched(&p, 30000)) {
		emit_error("snapshot_write", "the working set was not written in 30 s, see %s",
			   p.console);
		vmm_kill(&p);
		return;
	}
	bytes = bench_snapshot_write(&p, path, "snapshot_write",
				     "1 GiB, 2 vCPUs, wss_mb=256, running (stop:false)");
	vmm_kill(&p); /* the restores below must not share the host's CPUs with it */
	if (bytes)
		bench_snapshot_restore(path, bytes);
	unlink(path);
	bench_snapshot_disk(path);
}

/* A VMM or QEMU that drops a connection mid-request fails that run, not the benchmark. A
 * handler, not SIG_IGN: exec resets it, so the programs started get the default. */
static void on_sigpipe(int sig)
{
	(void)sig;
}

int main(void)
{
	char why[256];

	signal(SIGPIPE, on_sigpipe);
	log_init("cme-bench", LOG_WARN);
	if (getenv("CME_BENCH_ONLY") && !strncmp(getenv("CME_BENCH_ONLY"), "ha", 2)) {
		if (strcmp(getenv("CME_BENCH_ONLY"), "ha-failover"))
			bench_ha_detection(); /* developers: the HA figures alone */
		if (test_have_kvm(why, sizeof(why)))
			bench_ha_failover();
		test_remove_tmp();
		return 0;
	}
	if (getenv("CME_BENCH_ONLY") && !strcmp(getenv("CME_BENCH_ONLY"), "disk")) {
		if (test_have_kvm(why, sizeof(why)))
			bench_virtio_blk(); /* developers: the disk figures alone */
		test_remove_tmp();
		return 0;
	}
	if (getenv("CME_BENCH_ONLY") && !strcmp(getenv("CME_BENCH_ONLY"), "migrate-disk")) {
		if (test_have_kvm(why, sizeof(why))) {
			char snap[600];

			snprintf(snap, sizeof(snap), "%s/bench.snap", test_tmpdir());
			bench_migrate_disk(); /* developers: the cost of a disk alone */
			bench_snapshot_disk(snap);
		}
		test_remove_tmp();
		return 0;
	}
	if (getenv("CME_BENCH_ONLY") && !strcmp(getenv("CME_BENCH_ONLY"), "migrate")) {
		struct mig_medians m = { 0 };

		if (test_have_kvm(why, sizeof(why)))
			bench_migrate(&m); /* developers: the migrations and QEMU's alone */
		test_remove_tmp();
		return 0;
	}
	if (getenv("CME_BENCH_ONLY") && !strcmp(getenv("CME_BENCH_ONLY"), "sandbox")) {
		if (test_have_kvm(why, sizeof(why)))
			bench_sandbox(); /* developers: the sandbox's cost alone */
		test_remove_tmp();
		return 0;
	}
	if (getenv("CME_BENCH_ONLY") && !strcmp(getenv("CME_BENCH_ONLY"), "backup")) {
		if (test_have_kvm(why, sizeof(why)))
			bench_backup(); /* developers: the backup figures alone */
		test_remove_tmp();
		return 0;
	}
	if (getenv("CME_BENCH_ONLY") && !strcmp(getenv("CME_BENCH_ONLY"), "net")) {
		if (test_have_kvm(why, sizeof(why)))
			bench_virtio_net(); /* developers: the network figures alone */
		test_remove_tmp();
		return 0;
	}
	bench_ha_detection(); /* etcd only: runs without KVM too */
	if (!test_have_kvm(why, sizeof(why))) {
		printf("{\"bench\":\"all\",\"skipped\":\"%s\"}\n", why);
		return 0;
	}
	if (getenv("CME_BENCH_ONLY") && !strcmp(getenv("CME_BENCH_ONLY"), "cluster")) {
		bench_cluster(NULL); /* developers: the cluster's figures alone */
		test_remove_tmp();
		return 0;
	}
	bench_boot();
	bench_linux_boot();
	bench_exit_cost();
	bench_sandbox();
	bench_guest_rates();
	bench_virtio_blk();
	bench_virtio_net();
	bench_dirty_log();
	bench_snapshot();
	bench_backup();
	{
		struct mig_medians bare = { 0 };

		bench_migrate(&bare);
		bench_cluster(&bare);
	}
	bench_ha_failover();
	test_remove_tmp();
	return 0;
}

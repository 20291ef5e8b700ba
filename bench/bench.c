/* make bench: VMM benchmarks, one JSON line each. Never pass/fail on time. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"
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

static struct vm *boot(const char *console, uint64_t mem, const char *cmdline)
{
	struct vm_config cfg = { "bench", mem, 2, { CONSOLE_FILE, console } };
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
static void bench_exit_cost(void)
{
	double us[RUNS];
	int n = 0;

	for (int i = 0; i < RUNS; i++) {
		char console[600];
		struct vm_info info;
		unsigned long iters, tsc;
		struct vm *vm;
		char *c, *l;

		snprintf(console, sizeof(console), "%s/console", test_tmpdir());
		vm = boot(console, 64ull << 20, "mode=ioloop iters=100000");
		if (!vm)
			return;
		vm_get_info(vm, &info);
		for (int t = 0; t < 600 && !vm_get_end(vm, &(struct vm_end){ 0 }); t++)
			sleep_ms(50);
		vm_destroy(vm);
		c = test_read_file(console);
		l = strstr(c, "IOLOOP");
		if (l && sscanf(l, "IOLOOP iters=%lu tsc=%lu", &iters, &tsc) == 2 && iters)
			us[n++] = (double)tsc / (double)info.tsc_khz * 1000.0 / (double)iters;
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
	vm = boot(console, 1ull << 30, "wss_mb=900");
	if (!vm || vm_dirty_log_start(vm) < 0)
		return;
	vm_get_slot(vm, 0, &s);
	bm = calloc(s.size / 4096 / 64, 8);
	sleep_ms(500);
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

int main(void)
{
	char why[256];

	log_init("cme-bench", LOG_WARN);
	if (!test_have_kvm(why, sizeof(why))) {
		printf("{\"bench\":\"all\",\"skipped\":\"%s\"}\n", why);
		return 0;
	}
	bench_boot();
	bench_exit_cost();
	bench_dirty_log();
	return 0;
}

/* Dirty-page logging, in-process through the hypervisor library: the log reports exactly
 * the pages the guest writes (stride=3: every third page of its working set) and none of
 * those it never touches. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guestrun.h"
#include "hypervisor.h"
#include "kvmtests.h"

#define WSS_MB 16

/* Wait for "READY wss_base=0x... wss_pages=N" in the console file. */
static bool read_ready(const char *console, uint64_t *base, uint64_t *pages)
{
	for (int i = 0; i < 1500; i++) {
		char *c = test_read_file(console), *r = strstr(c, "READY");
		bool ok = r && strchr(r, '\n') &&
			  sscanf(r, "READY wss_base=%lx wss_pages=%lu", base, pages) == 2;

		free(c);
		if (ok)
			return true;
		sleep_ms(20);
	}
	return false;
}

static struct vm *boot_in_process(const char *console)
{
	struct vm_config cfg = { .name = "dirty",
				 .mem_bytes = 128ull << 20,
				 .nr_vcpus = 2,
				 .console = { CONSOLE_FILE, console } };
	struct vm *vm = NULL;

	CU_ASSERT_EQUAL_FATAL(vm_create(&cfg, &vm), 0);
	if (vm_load_flat(vm, test_guest(), "wss_mb=16 stride=3 vcpus=1") || vm_start(vm, false)) {
		vm_destroy(vm);
		CU_FAIL_FATAL("cannot boot the test guest in-process");
	}
	return vm;
}

/* Count pages of the working set that are dirty/clean against the stride pattern. */
static void check_pattern(const uint64_t *bm, uint64_t base, uint64_t pages)
{
	uint64_t wrong_dirty = 0, missing = 0, first = base / VM_PAGE_SIZE;

	for (uint64_t i = 0; i < pages; i++) {
		uint64_t pfn = first + i;
		bool dirty = bm[pfn / 64] >> (pfn % 64) & 1;

		if (i % 3 == 0 && !dirty)
			missing++;
		if (i % 3 != 0 && dirty)
			wrong_dirty++;
	}
	CU_ASSERT_EQUAL(missing, 0);
	CU_ASSERT_EQUAL(wrong_dirty, 0);
	if (missing || wrong_dirty)
		printf("\n    %lu written pages not reported, %lu untouched pages reported\n",
		       missing, wrong_dirty);
}

static void test_dirty_log_exact(void)
{
	char console[600];
	uint64_t base, pages, n, *bm;
	struct vm_slot slot;
	struct vm *vm;

	if (!guest_available())
		return;
	snprintf(console, sizeof(console), "%s/console", test_tmpdir());
	vm = boot_in_process(console);
	CU_ASSERT_FATAL(read_ready(console, &base, &pages));
	CU_ASSERT_EQUAL(pages, WSS_MB * 256);
	vm_get_slot(vm, 0, &slot);
	bm = calloc(slot.size / VM_PAGE_SIZE / 64, sizeof(uint64_t));
	CU_ASSERT_EQUAL(vm_dirty_log_fetch(vm, 0, bm, &n), -EINVAL); /* logging is off */
	CU_ASSERT_EQUAL(vm_dirty_log_start(vm), 0);
	CU_ASSERT_EQUAL(vm_dirty_log_start(vm), -EALREADY);
	sleep_ms(300);
	CU_ASSERT_EQUAL(vm_dirty_log_fetch(vm, 0, bm, &n), 0); /* first interval: clear */
	memset(bm, 0, slot.size / VM_PAGE_SIZE / 8);
	sleep_ms(300);
	CU_ASSERT_EQUAL(vm_dirty_log_fetch(vm, 0, bm, &n), 0);
	CU_ASSERT(n >= pages / 3);
	check_pattern(bm, base, pages);
	CU_ASSERT_EQUAL(vm_dirty_log_stop(vm), 0);
	CU_ASSERT_EQUAL(vm_dirty_log_stop(vm), -EINVAL);
	free(bm);
	vm_request_stop(vm);
	vm_destroy(vm);
	CU_ASSERT_PTR_NULL(strstr(test_read_file(console), "CORRUPT"));
}

/* Through the control socket: counts, and errors when misused. */
static void test_dirty_log_api(void)
{
	struct vmm_proc p;
	json_t *r;

	if (!guest_available())
		return;
	guest_boot(&p, "256M", "1", "wss_mb=32");
	r = vmm_request(&p, "dirty-log", "{\"op\":\"start\"}");
	CU_ASSERT_TRUE(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	sleep_ms(300);
	r = vmm_request(&p, "dirty-log", "{\"op\":\"fetch\"}");
	/* The whole 32 MiB working set is rewritten many times in 300 ms. */
	CU_ASSERT(json_integer_value(json_object_get(r, "dirty_pages")) >= 32 * 256);
	CU_ASSERT(json_integer_value(json_object_get(r, "interval_ms")) >= 250);
	json_decref(r);
	r = vmm_request(&p, "dirty-log", "{\"op\":\"start\"}");
	CU_ASSERT_TRUE(json_is_false(json_object_get(r, "ok")));
	json_decref(r);
	r = vmm_request(&p, "dirty-log", "{\"op\":\"stop\"}");
	CU_ASSERT_TRUE(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	guest_check_console(&p);
	vmm_kill(&p);
}

void suite_dirty(void)
{
	static const struct test_case cases[] = {
		{ "dirty log reports exactly the pages written", test_dirty_log_exact },
		{ "dirty-log over the control socket", test_dirty_log_api },
		{ NULL, NULL },
	};
	test_add_suite("dirty", cases);
}

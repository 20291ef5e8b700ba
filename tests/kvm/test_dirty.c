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

/* Pages of the working set the guest writes (every third) that bm does not report, and
 * pages it never touches that bm reports. */
static void count_pattern(const uint64_t *bm, uint64_t base, uint64_t pages, uint64_t *missing,
			  uint64_t *wrong_dirty)
{
	uint64_t first = base / VM_PAGE_SIZE;

	*missing = *wrong_dirty = 0;
	for (uint64_t i = 0; i < pages; i++) {
		uint64_t pfn = first + i;
		bool dirty = bm[pfn / 64] >> (pfn % 64) & 1;

		*missing += i % 3 == 0 && !dirty;
		*wrong_dirty += i % 3 != 0 && dirty;
	}
}

/* Fetch the log again and again, gathering what it reports into acc, until every written
 * page was reported (or a generous deadline): the test follows the guest's progress
 * rather than assuming how much it writes in a given time. No fetch may report a page the
 * guest never writes. Returns the pages still missing. */
static uint64_t gather_dirty(struct vm *vm, uint64_t *bm, uint64_t *acc, uint64_t words,
			     uint64_t base, uint64_t pages)
{
	uint64_t end = (now_ns() / 1000000) + 60000, missing, wrong, n;

	do {
		sleep_ms(20); /* a poll interval, not an assumption about speed */
		memset(bm, 0, words * sizeof(uint64_t));
		CU_ASSERT_EQUAL_FATAL(vm_dirty_log_fetch(vm, 0, bm, &n), 0);
		count_pattern(bm, base, pages, &missing, &wrong);
		CU_ASSERT_EQUAL(wrong, 0);
		if (wrong)
			printf("\n    %lu untouched pages reported\n", wrong);
		for (uint64_t w = 0; w < words; w++)
			acc[w] |= bm[w];
		count_pattern(acc, base, pages, &missing, &wrong);
	} while (missing && (now_ns() / 1000000) < end);
	return missing;
}

static void test_dirty_log_exact(void)
{
	char console[600];
	uint64_t base, pages, n, *bm, *acc, words, missing;
	struct vm_slot slot;
	struct vm *vm;

	if (!guest_available())
		return;
	snprintf(console, sizeof(console), "%s/console", test_tmpdir());
	vm = boot_in_process(console);
	CU_ASSERT_FATAL(read_ready(console, &base, &pages));
	CU_ASSERT_EQUAL(pages, WSS_MB * 256);
	vm_get_slot(vm, 0, &slot);
	words = slot.size / VM_PAGE_SIZE / 64;
	bm = calloc(words, sizeof(uint64_t));
	acc = calloc(words, sizeof(uint64_t));
	CU_ASSERT_EQUAL(vm_dirty_log_fetch(vm, 0, bm, &n), -EINVAL); /* logging is off */
	CU_ASSERT_EQUAL(vm_dirty_log_start(vm), 0);
	CU_ASSERT_EQUAL(vm_dirty_log_start(vm), -EALREADY);
	/* The first fetch clears whatever the log holds from before it began. */
	CU_ASSERT_EQUAL(vm_dirty_log_fetch(vm, 0, bm, &n), 0);
	missing = gather_dirty(vm, bm, acc, words, base, pages);
	CU_ASSERT_EQUAL(missing, 0);
	if (missing)
		printf("\n    %lu written pages never reported in 60 s\n", missing);
	CU_ASSERT_EQUAL(vm_dirty_log_stop(vm), 0);
	CU_ASSERT_EQUAL(vm_dirty_log_stop(vm), -EINVAL);
	free(bm);
	free(acc);
	vm_request_stop(vm);
	vm_destroy(vm);
	char *con = test_read_file(console);

	CU_ASSERT_PTR_NULL(strstr(con, "CORRUPT"));
	free(con);
}

/* A heartbeat whose page count was taken after the moment the caller saw n whole lines:
 * line n + 1 began only after line n ended, which was after that moment. */
static bool heartbeat_after(struct vmm_proc *p, int n, struct heartbeat *hb)
{
	return vmm_wait_heartbeats(p, n + 2, 60000) && vmm_last_heartbeat(p, hb);
}

/* Through the control socket: once the guest (one writer) has written its whole working
 * set after logging began, a fetch reports every page of it; errors when misused. */
static void test_dirty_log_api(void)
{
	const uint64_t wss_pages = 32 * 256;
	struct heartbeat hb0, hb;
	struct vmm_proc p;
	uint64_t t0, t1;
	json_t *r;

	if (!guest_available())
		return;
	guest_boot(&p, "256M", "1", "wss_mb=32");
	r = vmm_request(&p, "dirty-log", "{\"op\":\"start\"}");
	t0 = (now_ns() / 1000000);
	CU_ASSERT_TRUE(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	CU_ASSERT_FATAL(heartbeat_after(&p, vmm_heartbeats(&p, NULL, 0), &hb0));
	CU_ASSERT_FATAL(vmm_wait_pages(&p, hb0.pages + wss_pages + 1, 60000, &hb));
	t1 = (now_ns() / 1000000);
	r = vmm_request(&p, "dirty-log", "{\"op\":\"fetch\"}");
	CU_ASSERT(json_integer_value(json_object_get(r, "dirty_pages")) >= (json_int_t)wss_pages);
	/* The VMM's interval began before its reply to start and ends after this request
	 * was sent: at least what this side saw between the two (ms rounding aside). */
	CU_ASSERT(json_integer_value(json_object_get(r, "interval_ms")) + 1 >=
		  (json_int_t)(t1 - t0));
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

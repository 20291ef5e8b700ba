/* Run control and fencing without KVM: a VM with its run state but no vCPU threads (so a
 * pause completes at once) goes through the real pause/resume and the real fencing timer
 * thread: a deadline that passed fences (paused, resume refused), a later one lets resume
 * through, the timer fences by itself at its deadline, and clearing keeps a fence. */
#include <errno.h>

#include "harness.h"
#include "unit.h"
#include "unit_vm.h"

#define MS 1000000ull

/* Running, with no vCPU threads: nothing to park, so a pause completes at once. */
static struct vm *runnable_vm(void)
{
	struct vm *vm = unit_vm_new();

	vm->state = VM_RUNNING;
	vm->start_ns = now_ns();
	return vm;
}

static enum vm_state state_of(struct vm *vm, bool *fenced)
{
	struct vm_info info;

	vm_get_info(vm, &info);
	if (fenced)
		*fenced = info.fenced;
	return info.state;
}

static void test_pause_resume(void)
{
	struct vm *vm = runnable_vm();
	bool fenced = true;

	CU_ASSERT_EQUAL(vm_pause(vm), 0);
	CU_ASSERT_EQUAL(state_of(vm, &fenced), VM_PAUSED);
	CU_ASSERT_FALSE(fenced);
	CU_ASSERT_EQUAL(vm_pause(vm), 0); /* idempotent */
	CU_ASSERT_EQUAL(vm_resume(vm), 0);
	CU_ASSERT_EQUAL(state_of(vm, NULL), VM_RUNNING);
	CU_ASSERT_EQUAL(vm->pause_gen, 1);
	vm_request_stop(vm);
	CU_ASSERT_EQUAL(vm_pause(vm), -ESRCH);
	CU_ASSERT_EQUAL(vm_resume(vm), -ESRCH);
	CU_ASSERT_EQUAL(vm_fence_set(vm, 1), -ESRCH);
	unit_vm_free(vm);
}

static void test_fence_passed(void)
{
	struct vm *vm = runnable_vm();
	struct vm_fence f;
	bool fenced = false;
	uint64_t t0 = boottime_ns();

	/* A deadline already passed fences before the call returns. */
	CU_ASSERT_EQUAL(vm_fence_set(vm, t0 - 1), 0);
	CU_ASSERT_EQUAL(state_of(vm, &fenced), VM_PAUSED);
	CU_ASSERT_TRUE(fenced);
	vm_fence_get(vm, &f);
	CU_ASSERT_EQUAL(f.deadline_ns, t0 - 1);
	CU_ASSERT_TRUE(f.fenced);
	CU_ASSERT(f.fenced_at_ns >= t0);
	CU_ASSERT_EQUAL(vm_resume(vm), -EPERM);
	CU_ASSERT_EQUAL(vm_pause(vm), 0); /* stays paused */
	/* A later deadline alone does not resume; resume then does, and unfences. */
	CU_ASSERT_EQUAL(vm_fence_set(vm, boottime_ns() + 60000 * MS), 0);
	CU_ASSERT_EQUAL(state_of(vm, &fenced), VM_PAUSED);
	CU_ASSERT_TRUE(fenced);
	CU_ASSERT_EQUAL(vm_resume(vm), 0);
	CU_ASSERT_EQUAL(state_of(vm, &fenced), VM_RUNNING);
	CU_ASSERT_FALSE(fenced);
	unit_vm_free(vm);
}

/* The timer thread fences at the deadline with nobody calling in. */
static void test_fence_timer(void)
{
	struct vm *vm = runnable_vm();
	uint64_t deadline = boottime_ns() + 200 * MS, end = now_ns() + 30000 * MS;
	struct vm_fence f;
	bool fenced = false;

	CU_ASSERT_EQUAL(vm_fence_set(vm, deadline), 0);
	CU_ASSERT_EQUAL(state_of(vm, &fenced), VM_RUNNING);
	CU_ASSERT_FALSE(fenced);
	while (state_of(vm, &fenced) != VM_PAUSED && now_ns() < end)
		sleep_ms(10);
	CU_ASSERT_TRUE(fenced);
	vm_fence_get(vm, &f);
	CU_ASSERT(f.fenced_at_ns >= deadline);
	/* Cleared: no deadline any more, but the fence stays until resumed. */
	CU_ASSERT_EQUAL(vm_fence_set(vm, 0), 0);
	CU_ASSERT_EQUAL(state_of(vm, &fenced), VM_PAUSED);
	CU_ASSERT_TRUE(fenced);
	CU_ASSERT_EQUAL(vm_resume(vm), 0);
	CU_ASSERT_EQUAL(state_of(vm, NULL), VM_RUNNING);
	unit_vm_free(vm);
}

/* Extended before it passes, over and over, for more than twice the first deadline (a
 * timer that ignored extensions would fence; a machine would have to stall this test for
 * 1.9 s at once to fence a correct one): never fenced. */
static void test_fence_extended(void)
{
	struct vm *vm = runnable_vm();
	bool fenced = false;

	for (int i = 0; i < 50; i++) {
		CU_ASSERT_EQUAL(vm_fence_set(vm, boottime_ns() + 2000 * MS), 0);
		sleep_ms(100);
	}
	CU_ASSERT_EQUAL(state_of(vm, &fenced), VM_RUNNING);
	CU_ASSERT_FALSE(fenced);
	unit_vm_free(vm);
}

void suite_runctl(void)
{
	static const struct test_case cases[] = {
		{ "pause, resume and an ended VM", test_pause_resume },
		{ "a passed deadline fences; resume only after a later one", test_fence_passed },
		{ "the fencing timer fences at its deadline; clearing keeps the fence",
		  test_fence_timer },
		{ "a deadline extended before it passes never fences", test_fence_extended },
		{ NULL, NULL },
	};
	test_add_suite("runctl", cases);
}

/* Run control and fencing without KVM: a VM with its run state but no vCPU threads (so a
 * pause completes at once) goes through the real pause/resume and the real fencing timer
 * thread: a deadline that passed fences (paused, resume refused), a later one lets resume
 * through, the timer fences by itself at its deadline, and clearing keeps a fence. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "harness.h"
#include "unit.h"
#include "vm_priv.h"

#define MS 1000000ull

static struct vm *runnable_vm(void)
{
	struct vm *vm = calloc(1, sizeof(*vm));

	CU_ASSERT_PTR_NOT_NULL_FATAL(vm);
	vm->cfg.name = "unit";
	vm->cfg.nr_vcpus = 0; /* nothing to park: a pause completes at once */
	vm->kvm_fd = vm->vm_fd = -1;
	vm->fence_timer_fd = vm->fence_wake_fd = -1;
	vm->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	pthread_mutex_init(&vm->dev_lock, NULL);
	pthread_mutex_init(&vm->run_lock, NULL);
	pthread_cond_init(&vm->run_cond, NULL);
	vm->state = VM_RUNNING;
	vm->start_ns = now_ns();
	return vm;
}

static void runnable_vm_free(struct vm *vm)
{
	vm_request_stop(vm);
	vm_fence_destroy(vm);
	close(vm->event_fd);
	pthread_mutex_destroy(&vm->dev_lock);
	pthread_mutex_destroy(&vm->run_lock);
	pthread_cond_destroy(&vm->run_cond);
	free(vm);
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
	runnable_vm_free(vm);
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
	runnable_vm_free(vm);
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
	runnable_vm_free(vm);
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
	runnable_vm_free(vm);
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

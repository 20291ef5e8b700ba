/* Fencing: the VMM's own timer at the deadline cme-clusterd gives (CLOCK_BOOTTIME). The
 * check before every entry into the guest, and each vCPU's own timer (a kick straight to
 * its thread), are in vcpu.c; pausing and resuming, and what "fenced" means for them, in
 * run.c. This timer's thread wakes at the deadline and settles the whole VM into the
 * fenced state (all vCPUs parked, the state paused and fenced). */
#include "vm_priv.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define SUB "fence"

static void *fence_thread(void *arg)
{
	struct vm *vm = arg;
	struct pollfd p[2] = { { .fd = vm->fence_timer_fd, .events = POLLIN },
			       { .fd = vm->fence_wake_fd, .events = POLLIN } };
	uint64_t n;

	pthread_setname_np(pthread_self(), "fence");
	sandbox_enter(SANDBOX_DEVICE);
	for (;;) {
		if (poll(p, 2, -1) < 0 && errno != EINTR) {
			/* Left: every vCPU's own timer and its check before each entry. */
			log_err(SUB, "vm=%s fencing timer thread: poll: %s", vm->cfg.name,
				strerror(errno));
			break;
		}
		if (p[1].revents)
			break; /* vm_fence_destroy */
		if (!(p[0].revents & POLLIN) || read(vm->fence_timer_fd, &n, sizeof(n)) < 0)
			continue;
		pthread_mutex_lock(&vm->run_lock);
		if (vm->state != VM_ENDED)
			vm_fence_settle_locked(vm);
		pthread_mutex_unlock(&vm->run_lock);
	}
	return NULL;
}

/* The timer and its thread, made on the first deadline (run_lock held). */
static int fence_start(struct vm *vm)
{
	int err;

	vm->fence_timer_fd = timerfd_create(CLOCK_BOOTTIME, TFD_CLOEXEC | TFD_NONBLOCK);
	vm->fence_wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->fence_timer_fd < 0 || vm->fence_wake_fd < 0) {
		err = -errno;
		goto fail;
	}
	err = -pthread_create(&vm->fence_thread, NULL, fence_thread, vm);
	if (err)
		goto fail;
	vm->fence_thread_started = true;
	return 0;
fail:
	log_err(SUB, "vm=%s cannot set up the fencing timer: %s", vm->cfg.name, strerror(-err));
	vm_fence_destroy(vm);
	return err;
}

int vm_fence_set(struct vm *vm, uint64_t deadline_ns)
{
	struct itimerspec its = vm_fence_itimer(deadline_ns);
	int err = 0;

	pthread_mutex_lock(&vm->run_lock);
	if (vm->state == VM_ENDED)
		err = -ESRCH;
	else if (!vm->fence_thread_started)
		err = fence_start(vm);
	if (!err) {
		vm_fence_settle_locked(vm); /* a deadline that passed stays a fence */
		/* The deadline first, then the timers: when one fires, it must find the
		 * deadline it was armed for. A zero it_value disarms a timer. */
		atomic_store(&vm->fence_ns, deadline_ns);
		if (timerfd_settime(vm->fence_timer_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
			err = -errno;
		for (unsigned i = 0; i < vm->cfg.nr_vcpus; i++)
			vcpu_fence_timer_arm(&vm->vcpus[i], deadline_ns);
		if (vm->state != VM_ENDED)
			vm_fence_settle_locked(vm); /* already passed: fenced before the reply */
	}
	pthread_mutex_unlock(&vm->run_lock);
	return err;
}

void vm_fence_get(struct vm *vm, struct vm_fence *f)
{
	pthread_mutex_lock(&vm->run_lock);
	f->deadline_ns = atomic_load(&vm->fence_ns);
	f->fenced = vm->fenced;
	f->fenced_at_ns = vm->fenced_at_ns;
	f->passed = vm_fence_passed(vm);
	pthread_mutex_unlock(&vm->run_lock);
}

void vm_fence_destroy(struct vm *vm)
{
	uint64_t one = 1;

	if (vm->fence_thread_started) {
		if (write(vm->fence_wake_fd, &one, sizeof(one)) < 0)
			log_warn(SUB, "vm=%s fence wake: %s", vm->cfg.name, strerror(errno));
		pthread_join(vm->fence_thread, NULL);
		vm->fence_thread_started = false;
	}
	if (vm->fence_timer_fd >= 0)
		close(vm->fence_timer_fd);
	if (vm->fence_wake_fd >= 0)
		close(vm->fence_wake_fd);
	vm->fence_timer_fd = vm->fence_wake_fd = -1;
}

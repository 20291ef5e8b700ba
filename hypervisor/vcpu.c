/* vCPUs: creation with CPUID and TSC frequency, and the per-vCPU thread that runs KVM_RUN,
 * handles exits and parks when the VM is paused. */
#include "state_priv.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define SUB "vcpu"

/* The kvm_run of the vCPU this thread runs. The kick handler sets its immediate_exit, so a
 * kick that lands between the run-control check and KVM_RUN (a thread preempted, or the
 * whole VMM frozen, right there) still keeps the thread out of the guest: KVM returns
 * EINTR at once and the loop checks again. (KVM's documented use of immediate_exit.) */
static __thread struct kvm_run *vcpu_self_run;

static void vcpu_kick_handler(int sig)
{
	(void)sig;
	if (vcpu_self_run)
		vcpu_self_run->immediate_exit = 1;
}

static void vcpu_install_kick_handler_once(void)
{
	struct sigaction sa = { .sa_handler = vcpu_kick_handler };

	sigemptyset(&sa.sa_mask);
	sigaction(VCPU_KICK_SIGNAL, &sa, NULL); /* no SA_RESTART: KVM_RUN must return */
}

static void vcpu_install_kick_handler(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, vcpu_install_kick_handler_once);
}

/* Read the TSC frequency KVM gives this vCPU (the guest's, also in its boot info). */
static int vcpu_init_tsc(struct vcpu *vcpu)
{
	int khz = ioctl(vcpu->fd, KVM_GET_TSC_KHZ, 0);

	if (khz <= 0) {
		log_err(SUB, "vcpu=%u KVM_GET_TSC_KHZ: %s", vcpu->id, strerror(errno));
		return -ENOTSUP;
	}
	vcpu->vm->tsc_khz = (uint64_t)khz;
	return 0;
}

int vcpu_create(struct vm *vm, unsigned id)
{
	struct vcpu *vcpu = &vm->vcpus[id];
	int sz, err;

	vcpu->vm = vm;
	vcpu->id = id;
	vcpu->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (vcpu->fd < 0) {
		vcpu->fd = -1;
		log_err(SUB, "vcpu=%u KVM_CREATE_VCPU: %s", id, strerror(errno));
		return -errno;
	}
	sz = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (sz <= 0)
		return -EIO;
	vcpu->run = mmap(NULL, (size_t)sz, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
	if (vcpu->run == MAP_FAILED) {
		vcpu->run = NULL;
		return -errno;
	}
	vcpu->run_size = (size_t)sz;
	err = vcpu_apply_cpuid(vcpu, vm->cpuid);
	if (!err && id == 0)
		err = vcpu_init_tsc(vcpu);
	return err;
}

void vcpu_destroy(struct vcpu *vcpu)
{
	if (vcpu->thread_started) {
		pthread_join(vcpu->thread, NULL);
		vcpu->thread_started = false;
	}
	if (vcpu->fence_timer_made)
		timer_delete(vcpu->fence_timer);
	vcpu->fence_timer_made = false;
	if (vcpu->run)
		munmap(vcpu->run, vcpu->run_size);
	vcpu->run = NULL;
	if (vcpu->vm && vcpu->fd >= 0)
		close(vcpu->fd);
	vcpu->fd = -1;
}

/* The vCPU thread's own timer at the fencing deadline, signalling this thread alone:
 * timers that expire while the VMM is frozen leave the signal pending, and each thread
 * takes it (setting immediate_exit) before it runs a line of its own code again. Without
 * the timer the fence thread's kick and the check before each entry still hold. */
static void vcpu_fence_timer_init(struct vcpu *vcpu)
{
	struct sigevent sev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = VCPU_KICK_SIGNAL };
	timer_t t;

	sev._sigev_un._tid = gettid();
	if (timer_create(CLOCK_BOOTTIME, &sev, &t) < 0) {
		log_warn(SUB, "vcpu=%u no fencing timer of its own: %s", vcpu->id, strerror(errno));
		return;
	}
	pthread_mutex_lock(&vcpu->vm->run_lock);
	vcpu->fence_timer = t;
	vcpu->fence_timer_made = true;
	vcpu_fence_timer_arm(vcpu, atomic_load(&vcpu->vm->fence_ns));
	pthread_mutex_unlock(&vcpu->vm->run_lock);
}

/* Park until resumed or stopped. Called with run_lock held. Before parking, KVM_RUN is
 * entered once with immediate_exit set so a pending I/O read completes and the
 * registers are consistent for anyone who inspects the paused vCPU. */
static void vcpu_park(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;

	pthread_mutex_unlock(&vm->run_lock);
	vcpu->run->immediate_exit = 1;
	if (ioctl(vcpu->fd, KVM_RUN, 0) == 0 || errno != EINTR)
		log_debug(SUB, "vcpu=%u flush run before park returned early", vcpu->id);
	pthread_mutex_lock(&vm->run_lock);
	vm->parked++;
	pthread_cond_broadcast(&vm->run_cond);
	while (atomic_load(&vm->pause_req) && !atomic_load(&vm->stop_req))
		pthread_cond_wait(&vm->run_cond, &vm->run_lock);
	vm->parked--;
	if (vcpu->id == 0 && atomic_exchange(&vm->sandbox_probe, false))
		sandbox_probe(); /* the test hook: under --jail the VMM ends here */
}

/* --pin-vcpus: this thread on its host CPU (checked at start: vm_pin_check). */
static void vcpu_pin(struct vcpu *vcpu)
{
	const struct vm_config *c = &vcpu->vm->cfg;
	cpu_set_t set;

	if (vcpu->id >= c->nr_pin)
		return;
	CPU_ZERO(&set);
	CPU_SET(c->pin[vcpu->id], &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0)
		log_warn(SUB, "vcpu=%u cannot pin to CPU %d: %s", vcpu->id, c->pin[vcpu->id],
			 strerror(errno));
}

/* Returns false when the thread must end. */
static bool vcpu_check_run_control(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	bool keep = true, fence;

	vcpu->run->immediate_exit = 0;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	/* Before every entry into the guest, not only when the fencing timers fire: a host
	 * frozen past the deadline and thawed must not run one more guest instruction. */
	fence = vm_fence_passed(vm);
	if (!fence && !atomic_load(&vm->pause_req) && !atomic_load(&vm->stop_req))
		return true;
	pthread_mutex_lock(&vm->run_lock);
	/* Again under the lock: the deadline may have moved since (it changes only under
	 * run_lock), and a resume must not be undone by a stale look. */
	if (fence && vm_fence_passed(vm)) {
		atomic_store(&vm->fence_hit, true);
		atomic_store(&vm->pause_req, true);
	}
	if (atomic_load(&vm->pause_req) && !atomic_load(&vm->stop_req))
		vcpu_park(vcpu);
	keep = !atomic_load(&vm->stop_req);
	pthread_mutex_unlock(&vm->run_lock);
	return keep;
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *vcpu = arg;
	char name[16];

	snprintf(name, sizeof(name), "vcpu%u", vcpu->id);
	pthread_setname_np(pthread_self(), name);
	vcpu_pin(vcpu);
	vcpu_self_run = vcpu->run;
	vcpu_fence_timer_init(vcpu);
	sandbox_enter(SANDBOX_VCPU);
	while (vcpu_check_run_control(vcpu)) {
		uint64_t t0 = now_ns();
		int ret = ioctl(vcpu->fd, KVM_RUN, 0);
		int saved = errno;

		vcpu->stats.run_ns += now_ns() - t0;
		vcpu->stats.exits++;
		if (ret < 0 && (saved == EINTR || saved == EAGAIN)) {
			vcpu->stats.intr_exits++;
			continue;
		}
		if (ret < 0) {
			vm_set_end(vcpu->vm, VM_END_HOST_ERROR, 0, "vcpu=%u KVM_RUN failed: %s",
				   vcpu->id, strerror(saved));
			break;
		}
		if (!vcpu_handle_exit(vcpu))
			break;
	}
	pthread_mutex_lock(&vcpu->vm->run_lock); /* no timer signal after the thread */
	vcpu_fence_timer_arm(vcpu, 0);
	pthread_mutex_unlock(&vcpu->vm->run_lock);
	return NULL;
}

void vcpu_fence_timer_arm(struct vcpu *vcpu, uint64_t deadline_ns)
{
	struct itimerspec its = vm_fence_itimer(deadline_ns);

	if (vcpu->fence_timer_made && timer_settime(vcpu->fence_timer, TIMER_ABSTIME, &its, NULL))
		log_warn(SUB, "vcpu=%u fencing timer: %s", vcpu->id, strerror(errno));
}

int vcpu_start(struct vcpu *vcpu)
{
	sigset_t set;
	int err;

	vcpu_install_kick_handler();
	/* The kick signal must be deliverable in vCPU threads. */
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	err = pthread_create(&vcpu->thread, NULL, vcpu_thread, vcpu);
	if (err) {
		log_err(SUB, "vcpu=%u cannot start thread: %s", vcpu->id, strerror(err));
		return -err;
	}
	vcpu->thread_started = true;
	return 0;
}

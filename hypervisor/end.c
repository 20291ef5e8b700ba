/* How a VM ends: the first reason recorded wins, every vCPU is kicked out of KVM_RUN and
 * the control thread is woken. Below the vCPU threads, the devices and run control, which
 * all may end the VM. */
#include "vm_priv.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define SUB "vm"

void vcpu_kick(struct vcpu *vcpu)
{
	if (!vcpu->run)
		return; /* never created (setup failed part-way) */
	/* immediate_exit covers the window before the thread enters KVM_RUN; the signal
	 * covers a thread already inside it. */
	__atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (vcpu->thread_started)
		pthread_kill(vcpu->thread, VCPU_KICK_SIGNAL);
}

void vm_kick_all(struct vm *vm)
{
	for (unsigned i = 0; i < vm->cfg.nr_vcpus; i++)
		vcpu_kick(&vm->vcpus[i]);
}

/* Record the end once, stop all vCPU threads and wake the control thread. */
static void vm_end_locked(struct vm *vm, enum vm_end_reason reason, int code, const char *detail)
{
	uint64_t one = 1;

	if (vm->end.reason != VM_END_NONE)
		return;
	vm->end.reason = reason;
	vm->end.code = code;
	snprintf(vm->end.detail, sizeof(vm->end.detail), "%s", detail);
	vm->state = VM_ENDED;
	atomic_store(&vm->stop_req, true);
	pthread_cond_broadcast(&vm->run_cond);
	vm_kick_all(vm);
	if (write(vm->event_fd, &one, sizeof(one)) < 0)
		log_warn(SUB, "vm=%s eventfd write: %s", vm->cfg.name, strerror(errno));
}

void vm_set_end(struct vm *vm, enum vm_end_reason reason, int code, const char *fmt, ...)
{
	char detail[sizeof(vm->end.detail)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&vm->run_lock);
	vm_end_locked(vm, reason, code, detail);
	pthread_mutex_unlock(&vm->run_lock);
}

void vm_end_migrated(struct vm *vm, const char *detail)
{
	vm_set_end(vm, VM_END_MIGRATED, 0, "%s", detail);
}

void vm_request_stop(struct vm *vm)
{
	vm_set_end(vm, VM_END_STOPPED, 0, "stopped on request");
}

int vm_event_fd(const struct vm *vm)
{
	return vm->event_fd;
}

bool vm_get_end(struct vm *vm, struct vm_end *end)
{
	bool ended;

	pthread_mutex_lock(&vm->run_lock);
	ended = vm->end.reason != VM_END_NONE;
	if (ended)
		*end = vm->end;
	pthread_mutex_unlock(&vm->run_lock);
	return ended;
}

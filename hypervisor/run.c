/* Run control for the whole VM: start, pause, resume, stop, and how it ended. One
 * mechanism serves the API, snapshots, migration and fencing. */
#include "dev_priv.h"
#include "vm_priv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SUB "vm"

/* Paused start: the threads park before their first guest instruction. */
static void vm_wait_parked(struct vm *vm)
{
	pthread_mutex_lock(&vm->run_lock);
	while (vm->parked < vm->cfg.nr_vcpus && !atomic_load(&vm->stop_req))
		pthread_cond_wait(&vm->run_cond, &vm->run_lock);
	pthread_mutex_unlock(&vm->run_lock);
}

int vm_start(struct vm *vm, bool paused)
{
	int err = 0;

	if (vm->state != VM_CREATED)
		return -EINVAL;
	err = vm_confidential_launch(vm); /* a confidential guest's memory sealed first */
	if (err)
		return err;
	vm->start_ns = now_ns();
	vm->state = paused ? VM_PAUSED : VM_RUNNING;
	if (paused) {
		vm->pause_start_ns = vm->start_ns;
		atomic_store(&vm->pause_req, true);
	}
	dev_pause_all(vm, paused); /* running: devices take what a restored guest had posted */
	for (unsigned i = 0; !err && i < vm->cfg.nr_vcpus; i++)
		err = vcpu_start(&vm->vcpus[i]);
	if (err)
		vm_set_end(vm, VM_END_HOST_ERROR, 0, "cannot start vCPU threads");
	else if (paused)
		vm_wait_parked(vm);
	if (!err) { /* a deadline that passed before the start: fenced from the first entry */
		pthread_mutex_lock(&vm->run_lock);
		if (vm->state != VM_ENDED)
			vm_fence_settle_locked(vm);
		pthread_mutex_unlock(&vm->run_lock);
	}
	return err;
}

static unsigned vm_live_vcpus(struct vm *vm)
{
	unsigned n = 0;

	for (unsigned i = 0; i < vm->cfg.nr_vcpus; i++)
		n += vm->vcpus[i].thread_started;
	return n;
}

bool vm_pause_locked(struct vm *vm)
{
	unsigned gen = vm->pause_gen;

	atomic_store(&vm->pause_req, true);
	vm_kick_all(vm);
	/* Several threads may pause at once (the API, the fencing timer, a migration): the
	 * first to see every vCPU parked makes the state paused; a resume after that ends
	 * every other wait, unpaused, instead of leaving it to mistake vCPUs on their way
	 * back into the guest for parked ones, or to wait for ever. */
	while (vm->state == VM_RUNNING && gen == vm->pause_gen && vm->parked < vm_live_vcpus(vm) &&
	       !atomic_load(&vm->stop_req))
		pthread_cond_wait(&vm->run_cond, &vm->run_lock);
	if (atomic_load(&vm->stop_req) || gen != vm->pause_gen)
		return false;
	if (vm->state == VM_RUNNING) {
		vm->state = VM_PAUSED;
		vm->pause_start_ns = now_ns();
		dev_pause_all(vm, true); /* device threads too: no more guest RAM writes */
	}
	return vm->state == VM_PAUSED;
}

void vm_fence_settle_locked(struct vm *vm)
{
	if (!vm_fence_passed(vm) && !atomic_load(&vm->fence_hit))
		return;
	/* vCPUs that parked for the deadline left the state running: pause it properly. */
	if (vm->state == VM_RUNNING && !vm_pause_locked(vm))
		return; /* ended, or resumed meanwhile: then the deadline had moved */
	if (vm->state == VM_PAUSED && !vm->fenced) {
		vm->fenced = true;
		vm->fenced_at_ns = boottime_ns();
		log_warn(SUB, "vm=%s fenced: its deadline passed; the guest is paused",
			 vm->cfg.name);
	}
	atomic_store(&vm->fence_hit, false);
}

int vm_sandbox_probe_vcpu(struct vm *vm)
{
	int rc = vm_pause(vm);

	if (rc)
		return rc;
	atomic_store(&vm->sandbox_probe, true);
	return vm_resume(vm);
}

int vm_pause(struct vm *vm)
{
	int err = 0;

	pthread_mutex_lock(&vm->run_lock);
	if (vm->state != VM_ENDED)
		vm_fence_settle_locked(vm);
	if (vm->state == VM_ENDED)
		err = -ESRCH;
	else if (vm->state == VM_RUNNING && !vm_pause_locked(vm) && vm->state == VM_ENDED)
		err = -ESRCH; /* (a resume that came first just wins) */
	pthread_mutex_unlock(&vm->run_lock);
	return err;
}

int vm_resume(struct vm *vm)
{
	int err = 0;

	pthread_mutex_lock(&vm->run_lock);
	if (vm->state != VM_ENDED)
		vm_fence_settle_locked(vm);
	if (vm->state == VM_ENDED) {
		err = -ESRCH;
	} else if (vm_fence_passed(vm)) {
		err = -EPERM; /* the guest may run elsewhere by now */
	} else if (vm->state == VM_PAUSED) {
		vm->pause_gen++;
		atomic_store(&vm->pause_req, false);
		vm->paused_ns += now_ns() - vm->pause_start_ns;
		vm->state = VM_RUNNING;
		dev_pause_all(vm, false);
		vm->fenced = false;
		atomic_store(&vm->fence_hit, false); /* the deadline has not passed: stale */
		pthread_cond_broadcast(&vm->run_cond);
	}
	pthread_mutex_unlock(&vm->run_lock);
	return err;
}

void vm_get_info(struct vm *vm, struct vm_info *info)
{
	uint64_t now = now_ns();

	pthread_mutex_lock(&vm->run_lock);
	info->name = vm->cfg.name;
	info->state = vm->state;
	info->fenced = vm->fenced;
	info->mem_bytes = vm->cfg.mem_bytes;
	info->nr_vcpus = vm->cfg.nr_vcpus;
	info->tsc_khz = vm->tsc_khz;
	info->uptime_ns = vm->start_ns ? now - vm->start_ns : 0;
	info->paused_ns = vm->paused_ns;
	info->nr_disks = vm->cfg.nr_disks;
	info->balloon = vm->cfg.balloon;
	info->nr_nets = vm->cfg.nr_nets;
	info->hugepages = vm->cfg.hugepages;
	info->ksm = vm->cfg.ksm;
	info->nr_pin = vm->cfg.nr_pin;
	memcpy(info->pin, vm->cfg.pin, sizeof(info->pin));
	info->cpu_template = vm->cpu_template;
	if (vm->state == VM_PAUSED)
		info->paused_ns += now - vm->pause_start_ns;
	pthread_mutex_unlock(&vm->run_lock);
}

void vm_get_vcpu_stats(struct vm *vm, unsigned idx, struct vm_vcpu_stats *st)
{
	struct vcpu *vcpu = &vm->vcpus[idx];
	clockid_t cid;
	struct timespec ts;

	/* Counters are written by the vCPU thread alone; a slightly stale copy is fine. */
	memcpy(st, &vcpu->stats, sizeof(*st));
	/* A vCPU that never exits to userspace (timer interrupts are handled in the kernel)
	 * still spends CPU time: the thread's CPU clock counts guest and host time alike. */
	st->cpu_ns = 0;
	if (vcpu->thread_started && !pthread_getcpuclockid(vcpu->thread, &cid) &&
	    !clock_gettime(cid, &ts))
		st->cpu_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

const char *vm_state_name(enum vm_state st)
{
	static const char *const names[] = { "created", "running", "paused", "ended" };

	return st <= VM_ENDED ? names[st] : "unknown";
}

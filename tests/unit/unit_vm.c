/* A struct vm without KVM for unit tests and the handlers' fuzz target (see unit_vm.h).
 * No CUnit here: the fuzz target links it without. */
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "unit_vm.h"

struct vm *unit_vm_new(void)
{
	struct vm *vm = calloc(1, sizeof(*vm));

	if (!vm)
		abort(); /* no memory in a test: nothing to test */
	vm->cfg.name = "unit";
	vm->kvm_fd = vm->vm_fd = -1;
	vm->fence_timer_fd = vm->fence_wake_fd = -1;
	vm->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	pthread_mutex_init(&vm->dev_lock, NULL);
	pthread_mutex_init(&vm->run_lock, NULL);
	pthread_cond_init(&vm->run_cond, NULL);
	return vm;
}

int unit_vm_add_ram(struct vm *vm, uint64_t gpa, uint64_t size)
{
	void *p;

	if (vm->nr_slots == VM_MAX_SLOTS)
		return -1;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	vm->slots[vm->nr_slots++] = (struct vm_slot){ .gpa = gpa, .size = size, .hva = p };
	return 0;
}

void unit_vm_free(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_slots; i++)
		munmap(vm->slots[i].hva, vm->slots[i].size);
	vm_request_stop(vm);
	vm_fence_destroy(vm);
	vm_devices_destroy(vm);
	close(vm->event_fd);
	pthread_mutex_destroy(&vm->dev_lock);
	pthread_mutex_destroy(&vm->run_lock);
	pthread_cond_destroy(&vm->run_cond);
	free(vm);
}

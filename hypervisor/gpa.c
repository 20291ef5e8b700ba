/* Guest-physical addresses to host pointers, for the loaders and the devices: below
 * every file that reaches into guest RAM. */
#include "vm_priv.h"

void *vm_gpa_to_hva(struct vm *vm, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < vm->nr_slots; i++) {
		struct vm_slot *s = &vm->slots[i];

		if (range_within(gpa, len, s->gpa, s->size))
			return s->hva + (gpa - s->gpa);
	}
	return NULL;
}

void *vm_gpa_hva(struct vm *vm, uint64_t gpa, uint64_t len)
{
	return vm_gpa_to_hva(vm, gpa, len);
}

/* Guest-physical addresses to host pointers, for the loaders and the devices: below
 * every file that reaches into guest RAM. */
#include "vm_priv.h"

#include <errno.h>
#include <sys/mman.h>

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

/* Guest RAM is private anonymous memory (map_ram): MADV_DONTNEED drops its pages at once,
 * and the next touch faults in a zero page. Hugepage RAM is refused: its pages are 2 MiB,
 * reserved at the mapping, and a 4 KiB balloon page cannot give any of one back. */
int vm_ram_release(struct vm *vm, uint64_t gpa, uint64_t len)
{
	uint8_t *hva = vm_gpa_to_hva(vm, gpa, len);

	if (vm->cfg.hugepages)
		return -ENOTSUP;
	if (!hva || gpa % VM_PAGE_SIZE || len % VM_PAGE_SIZE)
		return -EINVAL;
	return madvise(hva, len, MADV_DONTNEED) < 0 ? -errno : 0;
}

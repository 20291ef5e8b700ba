/* Guest-physical addresses to host pointers, for the loaders and the devices, and the
 * pages the devices wrote: below every file that reaches into guest RAM. */
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

void vm_mark_dirty(struct vm *vm, uint64_t gpa, uint64_t len)
{
	if (!len || !atomic_load(&vm->dirty_logging))
		return;
	for (unsigned i = 0; i < vm->nr_slots; i++) {
		struct vm_slot *s = &vm->slots[i];
		uint64_t from, to;

		if (gpa >= s->gpa + s->size || gpa + len <= s->gpa)
			continue;
		from = ((gpa > s->gpa ? gpa : s->gpa) - s->gpa) / VM_PAGE_SIZE;
		to = ((gpa + len < s->gpa + s->size ? gpa + len : s->gpa + s->size) - s->gpa - 1) /
		     VM_PAGE_SIZE;
		for (uint64_t p = from; p <= to; p++)
			atomic_fetch_or(&vm->vmm_dirty[i][p / 64], 1ull << (p % 64));
	}
}

void vm_vmm_dirty_merge(struct vm *vm, unsigned idx, uint64_t *bitmap)
{
	uint64_t words = vm->slots[idx].size / VM_PAGE_SIZE / 64;

	for (uint64_t w = 0; w < words; w++)
		bitmap[w] |= atomic_load_explicit(&vm->vmm_dirty[idx][w], memory_order_relaxed);
}

void vm_vmm_dirty_clear(struct vm *vm, unsigned idx, uint64_t first, uint64_t npages,
			const uint64_t *bits)
{
	for (uint64_t w = 0; w < (npages + 63) / 64; w++)
		if (bits[w])
			atomic_fetch_and(&vm->vmm_dirty[idx][first / 64 + w], ~bits[w]);
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
	if (madvise(hva, len, MADV_DONTNEED) < 0)
		return -errno;
	vm_mark_dirty(vm, gpa, len); /* now zeros, behind KVM's dirty log: send them again */
	pthread_mutex_lock(&vm->release_lock);
	if (vm->release_fn)
		vm->release_fn(vm->release_arg, gpa, len);
	pthread_mutex_unlock(&vm->release_lock);
	return 0;
}

void vm_set_release_watch(struct vm *vm, vm_release_fn fn, void *arg)
{
	pthread_mutex_lock(&vm->release_lock);
	vm->release_fn = fn;
	vm->release_arg = arg;
	pthread_mutex_unlock(&vm->release_lock);
}

/* A struct vm without KVM, for unit tests of the hypervisor's pure parts (devices, run
 * control, fencing): its locks, eventfd and fencing descriptors set up, no vCPUs (so a
 * pause completes at once), state VM_CREATED. */
#ifndef CME_UNIT_VM_H
#define CME_UNIT_VM_H

#include "dev_priv.h"

struct vm *unit_vm_new(void);
/* Guest RAM for it: size bytes (anonymous memory) at gpa, as a slot. 0, or -1. */
int unit_vm_add_ram(struct vm *vm, uint64_t gpa, uint64_t size);
/* End it, stop its fencing thread, release its devices and free it. */
void unit_vm_free(struct vm *vm);

#endif

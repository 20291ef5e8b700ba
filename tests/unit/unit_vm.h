/* A struct vm without KVM, for unit tests of the hypervisor's pure parts (devices, run
 * control, fencing): its locks, eventfd and fencing descriptors set up, no vCPUs (so a
 * pause completes at once), state VM_CREATED. */
#ifndef CME_UNIT_VM_H
#define CME_UNIT_VM_H

#include "dev_priv.h"

struct vm *unit_vm_new(void);
/* End it, stop its fencing thread, release its devices and free it. */
void unit_vm_free(struct vm *vm);

#endif

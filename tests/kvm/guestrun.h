/* Shared by KVM tests that boot the self-checking guest. */
#ifndef CME_GUESTRUN_H
#define CME_GUESTRUN_H

#include "harness.h"

/* Boot the test guest: mem, vCPUs and its command line. Fails the test (fatally) when it
 * does not print READY within 30 s. */
void guest_boot(struct vmm_proc *p, const char *mem, const char *vcpus, const char *cmdline);
/* Assert: no CORRUPT/FAULT/ERROR on the console, heartbeats numbered without a gap,
 * ticks never falling and rising overall. Returns the number of heartbeats. */
int guest_check_console(struct vmm_proc *p);
/* Skip (and return false) when KVM is missing; fail when the guest image is. */
bool guest_available(void);

#endif

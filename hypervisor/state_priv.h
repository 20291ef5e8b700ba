/* Private to hypervisor/: VM state capture and restore helpers shared by state*.c. */
#ifndef CME_STATE_PRIV_H
#define CME_STATE_PRIV_H

#include "arena_priv.h"
#include "vm_priv.h"
#include "vmstate.pb-c.h"

#define VM_STATE_VERSION      1
#define MSR_IA32_TSC	      0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0

/* state_vcpu.c: one vCPU's registers to and from its message. */
int vcpu_state_save(struct vcpu *vcpu, struct arena *a, Cme__Vcpu **out) CME_WUR;
int vcpu_state_load(struct vcpu *vcpu, const Cme__Vcpu *m, const Cme__VmConfig *cfg, char *err,
		    size_t errlen) CME_WUR;

/* state_cpuid.c: CPUID into the config, compared and applied on restore. */
int cpuid_state_save(struct vm *vm, struct arena *a, Cme__VmConfig *cfg) CME_WUR;
int cpuid_state_load(struct vm *vm, const Cme__VmConfig *cfg, char *err, size_t errlen) CME_WUR;

#endif

/* Private to hypervisor/: VM state capture and restore helpers shared by state*.c. */
#ifndef CME_STATE_PRIV_H
#define CME_STATE_PRIV_H

#include "vm_priv.h"
#include "vmstate.pb-c.h"

#define VM_STATE_VERSION      1
#define MSR_IA32_TSC	      0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0

/* Every allocation of a message being built, released together after packing. */
struct arena {
	void **ptrs;
	size_t n, cap;
};

void *arena_alloc(struct arena *a, size_t size);
void *arena_dup(struct arena *a, const void *src, size_t size);
void arena_free(struct arena *a);

/* state_vcpu.c: one vCPU's registers to and from its message. */
int vcpu_state_save(struct vcpu *vcpu, struct arena *a, Cme__Vcpu **out) CME_WUR;
int vcpu_state_load(struct vcpu *vcpu, const Cme__Vcpu *m, const Cme__VmConfig *cfg, char *err,
		    size_t errlen) CME_WUR;

/* state_cpuid.c: CPUID into the config, compared and applied on restore. */
int cpuid_state_save(struct vm *vm, struct arena *a, Cme__VmConfig *cfg) CME_WUR;
int cpuid_state_load(struct vm *vm, const Cme__VmConfig *cfg, char *err, size_t errlen) CME_WUR;

/* uart state (devices.c): save and restore through one field-by-field function. */
int uart_state_save(struct uart *u, struct arena *a, Cme__DeviceState **out) CME_WUR;
int uart_state_load(struct uart *u, const Cme__DeviceState *d, char *err, size_t errlen) CME_WUR;

#endif

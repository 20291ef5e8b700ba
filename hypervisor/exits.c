/* KVM exit handling: port I/O to the devices, MMIO, and the ways a guest can end. */
#include "dev_priv.h"

#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#define SUB "exit"

void vcpu_describe_regs(struct vcpu *vcpu, char *buf, size_t len)
{
	struct kvm_regs r;
	struct kvm_sregs s;

	if (ioctl(vcpu->fd, KVM_GET_REGS, &r) < 0 || ioctl(vcpu->fd, KVM_GET_SREGS, &s) < 0) {
		snprintf(buf, len, "registers unavailable");
		return;
	}
	snprintf(buf, len,
		 "rip=0x%llx rsp=0x%llx rflags=0x%llx rax=0x%llx rdi=0x%llx cs=0x%x cpl=%u "
		 "cr0=0x%llx cr2=0x%llx cr3=0x%llx cr4=0x%llx efer=0x%llx",
		 r.rip, r.rsp, r.rflags, r.rax, r.rdi, s.cs.selector, s.cs.dpl, s.cr0, s.cr2, s.cr3,
		 s.cr4, s.efer);
}

/* One access of size bytes to port; data is the kvm_run buffer (in/out). Returns false
 * when the vCPU must stop (the access ended the VM). */
static bool vcpu_port_io(struct vcpu *vcpu, uint16_t port, bool out, uint8_t *data, unsigned size)
{
	struct dev_access a = {
		.addr = port, .size = size, .write = out, .data = data, .vcpu = vcpu->id
	};

	/* No device here: reads float high, writes are dropped, as on a PC bus. */
	if (!dev_dispatch(vcpu->vm, DEV_PIO, &a) && !out)
		memset(data, 0xff, size);
	return !a.stop;
}

static bool vcpu_handle_io(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool out = run->io.direction == KVM_EXIT_IO_OUT;

	vcpu->stats.io_exits++;
	for (uint32_t i = 0; i < run->io.count; i++) {
		if (!vcpu_port_io(vcpu, run->io.port, out, data, run->io.size))
			return false;
		data += run->io.size;
	}
	return true;
}

static bool vcpu_handle_mmio(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	struct dev_access a = { .addr = run->mmio.phys_addr,
				.size = run->mmio.len <= sizeof(run->mmio.data) ? run->mmio.len : 8,
				.write = run->mmio.is_write,
				.data = run->mmio.data,
				.vcpu = vcpu->id };

	vcpu->stats.mmio_exits++;
	if (dev_dispatch(vcpu->vm, DEV_MMIO, &a))
		return !a.stop;
	/* Unclaimed: reads return all-ones, writes are dropped. */
	if (!run->mmio.is_write)
		memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
	log_debug(SUB, "vcpu=%u unclaimed mmio %s 0x%llx", vcpu->id,
		  run->mmio.is_write ? "write" : "read", run->mmio.phys_addr);
	return true;
}

static bool vcpu_fault(struct vcpu *vcpu, enum vm_end_reason reason, const char *what)
{
	char regs[384];

	vcpu_describe_regs(vcpu, regs, sizeof(regs));
	vm_set_end(vcpu->vm, reason, 0, "vcpu=%u %s: %s", vcpu->id, what, regs);
	return false;
}

static bool vcpu_internal_error(struct vcpu *vcpu)
{
	char what[96];

	snprintf(what, sizeof(what), "KVM internal error (suberror %u)",
		 vcpu->run->internal.suberror);
	return vcpu_fault(vcpu, VM_END_INTERNAL, what);
}

/* KVM on AMD hosts reinitializes the vCPU at a shutdown (its state is undefined after
 * one): the registers then read as the reset vector's, not the fault's. Say so rather
 * than print them as if they were the guest's. */
static bool vcpu_shutdown(struct vcpu *vcpu)
{
	struct kvm_regs r;

	if (ioctl(vcpu->fd, KVM_GET_REGS, &r) == 0 && r.rip == 0xfff0)
		return vcpu_fault(
			vcpu, VM_END_TRIPLE_FAULT,
			"triple fault (shutdown; the registers at the fault are lost: this "
			"host's CPU resets the vCPU at a shutdown)");
	return vcpu_fault(vcpu, VM_END_TRIPLE_FAULT, "triple fault (shutdown)");
}

bool vcpu_handle_exit(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	char what[96];

	switch (run->exit_reason) {
	case KVM_EXIT_IO: return vcpu_handle_io(vcpu);
	case KVM_EXIT_MMIO: return vcpu_handle_mmio(vcpu);
	case KVM_EXIT_HLT: vcpu->stats.hlt_exits++; return true;
	case KVM_EXIT_INTR: vcpu->stats.intr_exits++; return true;
	case KVM_EXIT_SHUTDOWN: return vcpu_shutdown(vcpu);
	case KVM_EXIT_INTERNAL_ERROR: return vcpu_internal_error(vcpu);
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(what, sizeof(what), "VM entry failed (reason 0x%llx)",
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		return vcpu_fault(vcpu, VM_END_INTERNAL, what);
	default:
		vcpu->stats.other_exits++;
		snprintf(what, sizeof(what), "unexpected exit reason %u", run->exit_reason);
		return vcpu_fault(vcpu, VM_END_INTERNAL, what);
	}
}

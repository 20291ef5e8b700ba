/* The ports through which a guest ends: the flat image ABI's exit port, the PC reset
 * control register (also the ACPI reset register of our FADT), the keyboard controller's
 * reset pulse, and the ACPI sleep registers (poweroff). None has state of its own (the
 * first end a guest asks for is recorded by the VM, vm_set_end, and wins), so they run
 * without the device lock. */
#include "dev_priv.h"

#include <string.h>

static void exit_io(struct vm_device *d, struct dev_access *a)
{
	if (!a->write) {
		memset(a->data, 0xff, a->size); /* nothing to read: floats high */
		return;
	}
	vm_set_end(d->vm, VM_END_GUEST_EXIT, a->data[0], "guest exit code %u (vcpu=%u)", a->data[0],
		   a->vcpu);
	a->stop = true;
}

const struct dev_ops dev_exit_ops = { .name = "exit", .lockless = true, .io = exit_io };

/* After a write to a port that may end the VM: this vCPU stops once the VM has ended,
 * by this access or another. */
static void power_stop_check(struct vm_device *d, struct dev_access *a)
{
	a->stop = atomic_load(&d->vm->stop_req);
}

/* 0xcf9: bit 2 of a write resets the CPU. */
static void reset_io(struct vm_device *d, struct dev_access *a)
{
	if (!a->write)
		a->data[0] = 0;
	else if (a->data[0] & 0x04)
		vm_set_end(d->vm, VM_END_REBOOT, 0, "guest rebooted (reset register)");
	power_stop_check(d, a);
}

const struct dev_ops dev_reset_ops = { .name = "reset", .lockless = true, .io = reset_io };

/* The i8042 at 0x60 (data) and 0x64 (status/command): idle with no data, so a guest that
 * polls it before pulsing the reset line (command 0xfe) gets through. */
static void i8042_io(struct vm_device *d, struct dev_access *a)
{
	if (!a->write)
		a->data[0] = 0;
	else if (a->addr == VM_I8042_PORT && a->data[0] == 0xfe)
		vm_set_end(d->vm, VM_END_REBOOT, 0, "guest rebooted (i8042 reset)");
	power_stop_check(d, a);
}

const struct dev_ops dev_i8042_ops = { .name = "i8042", .lockless = true, .io = i8042_io };

/* PM1 control (sleep control) at offset 0, status at 1: SLP_EN (bit 5) with SLP_TYP
 * (bits 2-4) 5, the \_S5 state of our DSDT, powers off. */
static void acpi_pm_io(struct vm_device *d, struct dev_access *a)
{
	if (!a->write)
		a->data[0] = 0;
	else if (a->off == 0 && (a->data[0] & 0x20) && ((a->data[0] >> 2) & 7) == 5)
		vm_set_end(d->vm, VM_END_POWEROFF, 0, "guest powered off");
	power_stop_check(d, a);
}

const struct dev_ops dev_acpi_pm_ops = { .name = "acpi-pm", .lockless = true, .io = acpi_pm_io };

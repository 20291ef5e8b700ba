/* Device registration: the devices of a VM and how they reach the console and irqchip. */
#include "vm_priv.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#define SUB "dev"

static void uart_tx_to_console(void *opaque, uint8_t byte)
{
	struct vm *vm = opaque;

	console_write(vm->console, &byte, 1);
}

/* The UART's interrupt line drives IRQ 4 of the in-kernel PIC/IOAPIC. */
static void uart_irq_to_irqchip(void *opaque, bool level)
{
	struct vm *vm = opaque;
	struct kvm_irq_level irq = { .irq = UART_COM1_IRQ, .level = level };

	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0)
		log_warn(SUB, "vm=%s KVM_IRQ_LINE %u: %s", vm->cfg.name, irq.irq, strerror(errno));
}

int vm_setup_devices(struct vm *vm)
{
	uart_init(&vm->uart, uart_tx_to_console, uart_irq_to_irqchip, vm);
	return 0;
}

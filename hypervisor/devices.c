/* Device registration: the devices of a VM and how they reach the console and irqchip. */
#include "state_priv.h"

#include <errno.h>
#include <string.h>
#include <stdio.h>
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

void vm_uart_refill(struct vm *vm)
{
	unsigned n = uart_rx_room(&vm->uart);

	if (n > vm->con_in_len)
		n = (unsigned)vm->con_in_len;
	if (!n)
		return;
	uart_receive(&vm->uart, vm->con_in, n);
	memmove(vm->con_in, vm->con_in + n, vm->con_in_len - n);
	vm->con_in_len -= n;
}

/* Typed bytes wait in a 4 KiB buffer and enter the 16-byte FIFO as the guest reads;
 * beyond that they are dropped, as a real line would overrun. */
void vm_console_input(void *opaque, const uint8_t *buf, size_t len)
{
	struct vm *vm = opaque;
	size_t room;

	pthread_mutex_lock(&vm->dev_lock);
	room = sizeof(vm->con_in) - vm->con_in_len;
	if (len > room)
		len = room;
	memcpy(vm->con_in + vm->con_in_len, buf, len);
	vm->con_in_len += len;
	vm_uart_refill(vm);
	pthread_mutex_unlock(&vm->dev_lock);
}

int vm_setup_devices(struct vm *vm)
{
	uart_init(&vm->uart, uart_tx_to_console, uart_irq_to_irqchip, vm);
	return 0;
}

/* ---- device state ---------------------------------------------------------------------- */

#define UART_STATE_VERSION 1

/* One function moves the UART's registers in either direction, field by field, so save
 * and restore cannot drift apart. */
static void uart_xfer(struct uart *u, Cme__UartState *m, bool save)
{
#define XFER(f)                                                                                    \
	do {                                                                                       \
		if (save)                                                                          \
			m->f = u->f;                                                               \
		else                                                                               \
			u->f = (uint8_t)m->f;                                                      \
	} while (0)
	XFER(ier);
	XFER(lcr);
	XFER(mcr);
	XFER(lsr);
	XFER(msr);
	XFER(scr);
	XFER(dll);
	XFER(dlm);
	XFER(fcr);
#undef XFER
	if (save) {
		m->thr_irq_pending = u->thr_irq_pending;
		m->irq_level = u->irq_level;
	} else {
		u->thr_irq_pending = m->thr_irq_pending;
		u->irq_level = m->irq_level;
	}
}

int uart_state_save(struct uart *u, struct arena *a, Cme__DeviceState **out)
{
	Cme__UartState m = CME__UART_STATE__INIT;
	Cme__DeviceState *d = arena_alloc(a, sizeof(*d));
	uint8_t rx[UART_RX_FIFO];

	uart_xfer(u, &m, true);
	for (unsigned i = 0; i < u->rx_len; i++)
		rx[i] = u->rx[(u->rx_head + i) % UART_RX_FIFO];
	m.rx.data = rx;
	m.rx.len = u->rx_len;
	cme__device_state__init(d);
	d->name = "uart";
	d->version = UART_STATE_VERSION;
	d->state.len = cme__uart_state__get_packed_size(&m);
	d->state.data = arena_alloc(a, d->state.len);
	cme__uart_state__pack(&m, d->state.data);
	*out = d;
	return 0;
}

int uart_state_load(struct uart *u, const Cme__DeviceState *d, char *err, size_t errlen)
{
	Cme__UartState *m;

	if (d->version == 0 || d->version > UART_STATE_VERSION) {
		snprintf(err, errlen, "uart state version %u unknown", d->version);
		return -EINVAL;
	}
	m = cme__uart_state__unpack(NULL, d->state.len, d->state.data);
	if (!m || m->rx.len > UART_RX_FIFO) {
		snprintf(err, errlen, "uart state malformed");
		if (m)
			cme__uart_state__free_unpacked(m, NULL);
		return -EINVAL;
	}
	uart_xfer(u, m, false);
	if (m->rx.len) /* an empty FIFO travels as NULL data */
		memcpy(u->rx, m->rx.data, m->rx.len);
	u->rx_head = 0;
	u->rx_len = (unsigned)m->rx.len;
	cme__uart_state__free_unpacked(m, NULL);
	return 0;
}

/* The UART device: the 16550A model of uart.c at COM1, its output to the console, its
 * interrupt on IRQ 4 of the in-kernel PIC/IOAPIC, console input, and its state. */
#include "dev_priv.h"
#include "proto.h"
#include "uart_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define SUB "uart"

struct uart_dev {
	struct uart uart;
	uint8_t con_in[4096]; /* console input waiting for room in the FIFO */
	size_t con_in_len;
};

static void uart_tx_to_console(void *opaque, uint8_t byte)
{
	struct vm_device *d = opaque;

	console_write(d->vm->console, &byte, 1);
}

static void uart_irq_to_irqchip(void *opaque, bool level)
{
	struct vm_device *d = opaque;
	struct kvm_irq_level irq = { .irq = UART_COM1_IRQ, .level = level };

	if (ioctl(d->vm->vm_fd, KVM_IRQ_LINE, &irq) < 0)
		log_warn(SUB, "vm=%s KVM_IRQ_LINE %u: %s", d->vm->cfg.name, irq.irq,
			 strerror(errno));
}

/* Move waiting console input into the FIFO, as far as it has room (dev_lock held). */
static void uart_refill(struct uart_dev *u)
{
	unsigned n = uart_rx_room(&u->uart);

	if (n > u->con_in_len)
		n = (unsigned)u->con_in_len;
	if (!n)
		return;
	uart_receive(&u->uart, u->con_in, n);
	memmove(u->con_in, u->con_in + n, u->con_in_len - n);
	u->con_in_len -= n;
}

/* Typed bytes wait in a 4 KiB buffer and enter the 16-byte FIFO as the guest reads;
 * beyond that they are dropped, as a real line would overrun. */
void dev_uart_input(void *opaque, const uint8_t *buf, size_t len)
{
	struct vm_device *d = opaque;
	struct uart_dev *u = d->priv;
	size_t room;

	pthread_mutex_lock(&d->vm->dev_lock);
	room = sizeof(u->con_in) - u->con_in_len;
	if (len > room)
		len = room;
	memcpy(u->con_in + u->con_in_len, buf, len);
	u->con_in_len += len;
	uart_refill(u);
	pthread_mutex_unlock(&d->vm->dev_lock);
}

static int uart_dev_create(struct vm_device *d)
{
	d->priv = calloc(1, sizeof(struct uart_dev));
	return d->priv ? 0 : -ENOMEM;
}

static void uart_dev_destroy(struct vm_device *d)
{
	free(d->priv);
	d->priv = NULL;
}

static void uart_dev_reset(struct vm_device *d)
{
	struct uart_dev *u = d->priv;

	uart_init(&u->uart, uart_tx_to_console, uart_irq_to_irqchip, d);
	u->con_in_len = 0;
}

/* Registers by their offset from the base port; only the first byte of a wider access
 * counts, as on the ISA bus. */
static void uart_dev_io(struct vm_device *d, struct dev_access *a)
{
	struct uart_dev *u = d->priv;

	if (a->write)
		uart_write(&u->uart, (unsigned)a->off, a->data[0]);
	else
		a->data[0] = uart_read(&u->uart, (unsigned)a->off);
	uart_refill(u);
}

/* The registers, field by field in both directions; the receive FIFO travels oldest
 * byte first (rx: room for it on save). */
static int uart_xfer(struct vm_device *d, struct uart *u, Cme__UartState *m, struct dev_xfer *x,
		     uint8_t *rx)
{
	if (!x->save && m->rx.len > UART_RX_FIFO) /* checked first: nothing applied then */
		return dev_state_fail(x, "receive FIFO of %zu bytes", m->rx.len);
	DEV_CMP(x, d->range[0].base, m->port);
	DEV_CMP(x, (uint64_t)UART_COM1_IRQ, m->irq);
	DEV_XFER(x, u->ier, m->ier);
	DEV_XFER(x, u->lcr, m->lcr);
	DEV_XFER(x, u->mcr, m->mcr);
	DEV_XFER(x, u->lsr, m->lsr);
	DEV_XFER(x, u->msr, m->msr);
	DEV_XFER(x, u->scr, m->scr);
	DEV_XFER(x, u->dll, m->dll);
	DEV_XFER(x, u->dlm, m->dlm);
	DEV_XFER(x, u->fcr, m->fcr);
	DEV_XFER(x, u->thr_irq_pending, m->thr_irq_pending);
	DEV_XFER(x, u->irq_level, m->irq_level);
	if (x->save) {
		for (unsigned i = 0; i < u->rx_len; i++)
			rx[i] = u->rx[(u->rx_head + i) % UART_RX_FIFO];
		m->rx.data = rx;
		m->rx.len = u->rx_len;
		return 0;
	}
	if (m->rx.len) /* an empty FIFO travels as NULL data */
		memcpy(u->rx, m->rx.data, m->rx.len);
	u->rx_head = 0;
	u->rx_len = (unsigned)m->rx.len;
	return 0;
}

static int uart_dev_state(struct vm_device *d, struct dev_xfer *x)
{
	struct uart_dev *u = d->priv;
	Cme__UartState saved = CME__UART_STATE__INIT, *m = &saved;
	uint8_t rx[UART_RX_FIFO];
	int err;

	if (!x->save) {
		m = PB_UNPACK(cme__uart_state__unpack, x->bytes.len, x->bytes.data);
		if (!m)
			return dev_state_fail(x, "malformed");
	}
	err = uart_xfer(d, &u->uart, m, x, rx);
	if (x->save && !err)
		err = dev_state_pack(x, &m->base);
	if (!x->save)
		cme__uart_state__free_unpacked(m, NULL);
	return err;
}

const struct dev_ops dev_uart_ops = {
	.name = "uart",
	.state_version = 1,
	.create = uart_dev_create,
	.destroy = uart_dev_destroy,
	.reset = uart_dev_reset,
	.io = uart_dev_io,
	.state = uart_dev_state,
};

/* 8250/16550A UART register model. The guest sees a transmitter that is always empty
 * (bytes leave at once), a 16-byte receive FIFO, and the usual interrupt sources. */
#include "uart_priv.h"

#include <string.h>

/* Recompute the interrupt line: it rises only with OUT2 set, as on a PC. */
static void uart_update_irq(struct uart *u)
{
	bool pending = ((u->ier & UART_IER_RDI) && (u->lsr & UART_LSR_DR)) ||
		       ((u->ier & UART_IER_THRI) && u->thr_irq_pending);
	bool level = pending && (u->mcr & UART_MCR_OUT2);

	if (level != u->irq_level) {
		u->irq_level = level;
		if (u->irq)
			u->irq(u->opaque, level);
	}
}

void uart_init(struct uart *u, void (*tx)(void *, uint8_t), void (*irq)(void *, bool), void *opaque)
{
	memset(u, 0, sizeof(*u));
	u->lsr = UART_LSR_THRE | UART_LSR_TEMT;
	u->msr = 0xb0; /* DCD, DSR, CTS: a cable is attached */
	u->dll = 12;   /* 9600 baud */
	u->tx = tx;
	u->irq = irq;
	u->opaque = opaque;
}

static uint8_t uart_rx_pop(struct uart *u)
{
	uint8_t b;

	if (!u->rx_len)
		return 0;
	b = u->rx[u->rx_head];
	u->rx_head = (u->rx_head + 1) % UART_RX_FIFO;
	if (--u->rx_len == 0)
		u->lsr &= (uint8_t)~UART_LSR_DR;
	return b;
}

static uint8_t uart_read_iir(struct uart *u)
{
	uint8_t fifo = (u->fcr & 1) ? 0xc0 : 0;

	if ((u->ier & UART_IER_RDI) && (u->lsr & UART_LSR_DR))
		return fifo | UART_IIR_RDI;
	if ((u->ier & UART_IER_THRI) && u->thr_irq_pending) {
		/* Reading IIR while THRE is the source clears it (8250 behaviour). */
		u->thr_irq_pending = false;
		uart_update_irq(u);
		return fifo | UART_IIR_THRI;
	}
	return fifo | UART_IIR_NO_INT;
}

uint8_t uart_read(struct uart *u, unsigned off)
{
	uint8_t v = 0;
	bool dlab = u->lcr & UART_LCR_DLAB;

	switch (off & 7) {
	case UART_RBR_THR: v = dlab ? u->dll : uart_rx_pop(u); break;
	case UART_IER: v = dlab ? u->dlm : u->ier; break;
	case UART_IIR_FCR: v = uart_read_iir(u); break;
	case UART_LCR: v = u->lcr; break;
	case UART_MCR: v = u->mcr; break;
	case UART_LSR:
		v = u->lsr;
		u->lsr &= (uint8_t)~UART_LSR_OE; /* overrun is clear-on-read */
		break;
	case UART_MSR: v = u->msr; break;
	case UART_SCR: v = u->scr; break;
	}
	uart_update_irq(u);
	return v;
}

static void uart_transmit(struct uart *u, uint8_t val)
{
	if (u->mcr & UART_MCR_LOOP)
		uart_receive(u, &val, 1);
	else if (u->tx)
		u->tx(u->opaque, val);
	u->thr_irq_pending = true; /* the byte left at once: THR is empty again */
}

void uart_write(struct uart *u, unsigned off, uint8_t val)
{
	bool dlab = u->lcr & UART_LCR_DLAB;

	switch (off & 7) {
	case UART_RBR_THR:
		if (dlab)
			u->dll = val;
		else
			uart_transmit(u, val);
		break;
	case UART_IER:
		if (dlab) {
			u->dlm = val;
		} else {
			/* Enabling THRI with an empty THR raises the interrupt at once. */
			if ((val & UART_IER_THRI) && !(u->ier & UART_IER_THRI))
				u->thr_irq_pending = true;
			u->ier = val & 0x0f;
		}
		break;
	case UART_IIR_FCR:
		u->fcr = val & 0xc9;
		if (val & 0x02) { /* clear the receive FIFO */
			u->rx_len = 0;
			u->lsr &= (uint8_t)~UART_LSR_DR;
		}
		break;
	case UART_LCR: u->lcr = val; break;
	case UART_MCR: u->mcr = val & 0x1f; break;
	case UART_LSR: break; /* read-only */
	case UART_MSR: break;
	case UART_SCR: u->scr = val; break;
	}
	uart_update_irq(u);
}

unsigned uart_rx_room(const struct uart *u)
{
	return UART_RX_FIFO - u->rx_len;
}

unsigned uart_receive(struct uart *u, const uint8_t *buf, unsigned len)
{
	unsigned i;

	for (i = 0; i < len; i++) {
		if (u->rx_len == UART_RX_FIFO) {
			u->lsr |= UART_LSR_OE;
			break;
		}
		u->rx[(u->rx_head + u->rx_len) % UART_RX_FIFO] = buf[i];
		u->rx_len++;
		u->lsr |= UART_LSR_DR;
	}
	uart_update_irq(u);
	return i;
}

/* The 8250/16550A UART register model: pure logic, no KVM, unit-tested on its own.
 * The VMM wires its output and interrupt line to a console and the irqchip. */
#ifndef CME_UART_PRIV_H
#define CME_UART_PRIV_H

#include <stdbool.h>
#include <stdint.h>

#define UART_COM1_BASE 0x3f8
#define UART_COM1_IRQ  4
#define UART_RX_FIFO   16

/* Register offsets from the base port. */
enum {
	UART_RBR_THR = 0, /* DLL when DLAB */
	UART_IER = 1,	  /* DLM when DLAB */
	UART_IIR_FCR = 2,
	UART_LCR = 3,
	UART_MCR = 4,
	UART_LSR = 5,
	UART_MSR = 6,
	UART_SCR = 7,
};

#define UART_LCR_DLAB	0x80
#define UART_LSR_DR	0x01
#define UART_LSR_OE	0x02
#define UART_LSR_THRE	0x20
#define UART_LSR_TEMT	0x40
#define UART_IER_RDI	0x01
#define UART_IER_THRI	0x02
#define UART_IIR_NO_INT 0x01
#define UART_IIR_THRI	0x02
#define UART_IIR_RDI	0x04
#define UART_MCR_LOOP	0x10
#define UART_MCR_OUT2	0x08

struct uart {
	uint8_t ier, lcr, mcr, lsr, msr, scr, dll, dlm, fcr;
	bool thr_irq_pending; /* THRE interrupt armed until IIR is read or THR written */
	uint8_t rx[UART_RX_FIFO];
	unsigned rx_head, rx_len;
	/* Callbacks: a byte the guest transmitted; the interrupt line level changed. */
	void (*tx)(void *opaque, uint8_t byte);
	void (*irq)(void *opaque, bool level);
	void *opaque;
	bool irq_level;
};

/* Reset to power-on state with the given callbacks (either may be NULL). */
void uart_init(struct uart *u, void (*tx)(void *, uint8_t), void (*irq)(void *, bool),
	       void *opaque);
/* Guest read of register off (0..7). */
uint8_t uart_read(struct uart *u, unsigned off);
/* Guest write of register off (0..7). */
void uart_write(struct uart *u, unsigned off, uint8_t val);
/* Host input: queue bytes for the guest. Returns how many fitted in the FIFO. */
unsigned uart_receive(struct uart *u, const uint8_t *buf, unsigned len);
/* Room left in the receive FIFO. */
unsigned uart_rx_room(const struct uart *u);

#endif

/* The 8250 UART register model. */
#include <string.h>

#include "harness.h"
#include "uart_priv.h"
#include "unit.h"

struct sink {
	char out[64];
	unsigned n;
	bool level;
	unsigned edges;
};

static void sink_tx(void *o, uint8_t b)
{
	struct sink *s = o;

	if (s->n < sizeof(s->out) - 1)
		s->out[s->n++] = (char)b;
}

static void sink_irq(void *o, bool level)
{
	struct sink *s = o;

	s->level = level;
	s->edges++;
}

static void test_transmit_and_lsr(void)
{
	struct sink s = { 0 };
	struct uart u;

	uart_init(&u, sink_tx, sink_irq, &s);
	CU_ASSERT_EQUAL(uart_read(&u, UART_LSR) & (UART_LSR_THRE | UART_LSR_TEMT),
			UART_LSR_THRE | UART_LSR_TEMT);
	for (const char *p = "HB\n"; *p; p++)
		uart_write(&u, UART_RBR_THR, (uint8_t)*p);
	CU_ASSERT_STRING_EQUAL(s.out, "HB\n");
	CU_ASSERT_EQUAL(uart_read(&u, UART_IIR_FCR) & 0x0f, UART_IIR_NO_INT);
}

static void test_divisor_latch(void)
{
	struct sink s = { 0 };
	struct uart u;

	uart_init(&u, sink_tx, NULL, &s);
	uart_write(&u, UART_LCR, UART_LCR_DLAB | 3);
	uart_write(&u, UART_RBR_THR, 1); /* DLL, not a transmitted byte */
	uart_write(&u, UART_IER, 0);	 /* DLM */
	CU_ASSERT_EQUAL(uart_read(&u, UART_RBR_THR), 1);
	CU_ASSERT_EQUAL(s.n, 0);
	uart_write(&u, UART_LCR, 3);
	CU_ASSERT_EQUAL(uart_read(&u, UART_LCR), 3);
	uart_write(&u, UART_SCR, 0x5a);
	CU_ASSERT_EQUAL(uart_read(&u, UART_SCR), 0x5a);
}

static void test_receive_fifo_and_irq(void)
{
	struct sink s = { 0 };
	struct uart u;
	uint8_t many[20];

	uart_init(&u, sink_tx, sink_irq, &s);
	uart_write(&u, UART_MCR, UART_MCR_OUT2);
	uart_write(&u, UART_IER, UART_IER_RDI);
	CU_ASSERT_FALSE(s.level);
	CU_ASSERT_EQUAL(uart_receive(&u, (const uint8_t *)"ab", 2), 2);
	CU_ASSERT_TRUE(s.level);
	CU_ASSERT_EQUAL(uart_read(&u, UART_IIR_FCR) & 0x0f, UART_IIR_RDI);
	CU_ASSERT_EQUAL(uart_read(&u, UART_LSR) & UART_LSR_DR, UART_LSR_DR);
	CU_ASSERT_EQUAL(uart_read(&u, UART_RBR_THR), 'a');
	CU_ASSERT_EQUAL(uart_read(&u, UART_RBR_THR), 'b');
	CU_ASSERT_EQUAL(uart_read(&u, UART_LSR) & UART_LSR_DR, 0);
	CU_ASSERT_FALSE(s.level);
	memset(many, 'x', sizeof(many));
	CU_ASSERT_EQUAL(uart_receive(&u, many, sizeof(many)), UART_RX_FIFO);
	CU_ASSERT_EQUAL(uart_read(&u, UART_LSR) & UART_LSR_OE, UART_LSR_OE);
	CU_ASSERT_EQUAL(uart_read(&u, UART_LSR) & UART_LSR_OE, 0); /* clear on read */
}

static void test_thre_irq(void)
{
	struct sink s = { 0 };
	struct uart u;

	uart_init(&u, sink_tx, sink_irq, &s);
	uart_write(&u, UART_MCR, UART_MCR_OUT2);
	uart_write(&u, UART_IER, UART_IER_THRI);
	CU_ASSERT_TRUE(s.level); /* empty THR interrupts as soon as it is enabled */
	CU_ASSERT_EQUAL(uart_read(&u, UART_IIR_FCR) & 0x0f, UART_IIR_THRI);
	CU_ASSERT_FALSE(s.level); /* reading IIR acknowledged it */
	uart_write(&u, UART_RBR_THR, 'z');
	CU_ASSERT_TRUE(s.level);
	/* Without OUT2 the line stays low, as on a PC. */
	uart_write(&u, UART_MCR, 0);
	CU_ASSERT_FALSE(s.level);
}

static void test_loopback(void)
{
	struct sink s = { 0 };
	struct uart u;

	uart_init(&u, sink_tx, NULL, &s);
	uart_write(&u, UART_MCR, UART_MCR_LOOP);
	uart_write(&u, UART_RBR_THR, 'q');
	CU_ASSERT_EQUAL(s.n, 0);
	CU_ASSERT_EQUAL(uart_read(&u, UART_RBR_THR), 'q');
}

void suite_uart(void)
{
	static const struct test_case cases[] = {
		{ "transmit reaches the console, LSR reports empty", test_transmit_and_lsr },
		{ "divisor latch and scratch registers", test_divisor_latch },
		{ "receive FIFO, data-ready interrupt, overrun", test_receive_fifo_and_irq },
		{ "THRE interrupt and OUT2 gating", test_thre_irq },
		{ "loopback mode", test_loopback },
		{ NULL, NULL },
	};
	test_add_suite("uart", cases);
}

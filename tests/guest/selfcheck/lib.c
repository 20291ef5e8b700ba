/* lib.c — console output, exit and the few routines a compiler expects. Works in ring 0
 * and ring 3 alike: the TSS I/O bitmap opens the UART and the exit port to ring 3. */
#include "selfcheck.h"

#define LINE_MAX     256
#define URGENT_SPINS 200000 /* ~1 s of emulated ring-0 spinning on PVM */

struct line {
	char c[LINE_MAX];
	size_t n;
};

static volatile u32 con_lock; /* 1 while a vCPU is printing */

void guest_exit(u8 status)
{
	outb(PORT_EXIT, status);
	for (;;) /* the VMM stops us; HLT would fault in ring 3 */
		cpu_relax();
}

static void put_c(struct line *l, char c)
{
	if (l->n < LINE_MAX)
		l->c[l->n++] = c;
}

static void put_str(struct line *l, const char *s)
{
	while (*s)
		put_c(l, *s++);
}

static void put_num(struct line *l, u64 v, unsigned base)
{
	char digits[24];
	int i = 0;

	do {
		digits[i++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (i)
		put_c(l, digits[--i]);
}

static void format(struct line *l, const char *fmt, va_list ap)
{
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			put_c(l, *fmt);
			continue;
		}
		bool wide = fmt[1] == 'l';
		fmt += wide ? 2 : 1;
		if (*fmt == 's')
			put_str(l, va_arg(ap, const char *));
		else if (*fmt == 'c')
			put_c(l, (char)va_arg(ap, int));
		else if (*fmt == 'u' || *fmt == 'x')
			put_num(l, wide ? va_arg(ap, u64) : va_arg(ap, unsigned),
				*fmt == 'u' ? 10 : 16);
		else if (!*fmt)
			break;
	}
}

/* Writes the line under the console lock, so lines of different vCPUs never interleave.
 * THR is written without polling LSR: the VMM's UART never refuses a byte, and every
 * port access is a VM exit. */
static void emit(const struct line *l, u64 max_spins)
{
	u64 spins = 0;
	bool locked;

	while (!(locked = !__atomic_exchange_n(&con_lock, 1, __ATOMIC_ACQUIRE)) &&
	       spins++ < max_spins)
		cpu_relax();
	for (size_t i = 0; i < l->n; i++)
		outb(PORT_UART, (u8)l->c[i]);
	if (locked)
		__atomic_store_n(&con_lock, 0, __ATOMIC_RELEASE);
}

void con_printf(const char *fmt, ...)
{
	struct line l; /* not zeroed: a 256-byte memset is slow in emulated ring 0 */
	va_list ap;

	l.n = 0;
	va_start(ap, fmt);
	format(&l, fmt, ap);
	va_end(ap);
	emit(&l, ~0UL);
}

void con_printf_urgent(const char *fmt, ...)
{
	struct line l; /* not zeroed: a 256-byte memset is slow in emulated ring 0 */
	va_list ap;

	l.n = 0;
	va_start(ap, fmt);
	format(&l, fmt, ap);
	va_end(ap);
	emit(&l, URGENT_SPINS);
}

void *memset(void *d, int c, size_t n)
{
	u8 *p = d;

	while (n--)
		*p++ = (u8)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	u8 *p = d;
	const u8 *q = s;

	while (n--)
		*p++ = *q++;
	return d;
}

/* ring0.c — what must run in ring 0, kept minimal because PVM emulates guest ring-0 code
 * (~0.3 M loop iterations/s): vCPU 0 parses the command line, builds the shared IDT and
 * calibrates the LAPIC timer; then every vCPU loads the IDT, starts its timer and drops to
 * ring 3. */
#include "selfcheck.h"

#define CALIB_MS       2
#define TIMER_PERIODIC (1u << 17)
#define LVT_MASKED     (1u << 16)
#define TDCR_DIV1      0xb
#define SVR_ENABLE     0x100
#define LSR_DR	       0x01 /* receive data ready */
#define IER_RDI	       0x01 /* interrupt on received data */
#define MCR_IRQ_ON     0x0b /* DTR|RTS|OUT2: OUT2 gates the interrupt line, as on a PC */

struct idt_gate {
	u16 off0;
	u16 sel;
	u8 ist;
	u8 type; /* present, DPL, 64-bit interrupt gate (IF cleared on entry) */
	u16 off1;
	u32 off2;
	u32 zero;
};

/* What fault_common leaves on the stack. */
struct fault_frame {
	u64 vec, err, rip, cs, rflags, rsp, ss;
};

/* Called by the stubs in entry.S. */
__attribute__((noreturn)) void fault_report(const struct fault_frame *f);
void uart_rx_irq(void);
void virtio_irq(void);
void net_irq(void);

static struct idt_gate idt[256] __attribute__((aligned(16)));
static u8 user_stacks[MAX_CPUS][USER_STACK_SIZE] __attribute__((aligned(USER_STACK_SIZE)));
static volatile u32 timer_count; /* LAPIC timer initial count for TIMER_HZ */
static volatile u32 released;	 /* set by vCPU 0 once cfg, IDT and timer_count are ready */
u8 apic_to_cpu[256];
struct rx_ring rx_ring;

static inline u32 lapic_read(u32 reg)
{
	return *(volatile u32 *)(LAPIC_BASE + (u64)reg);
}

static inline void lapic_write(u32 reg, u32 v)
{
	*(volatile u32 *)(LAPIC_BASE + (u64)reg) = v;
}

static void idt_set(unsigned vec, const void *handler, unsigned dpl)
{
	u64 a = (u64)handler;

	idt[vec] = (struct idt_gate){ .off0 = (u16)a,
				      .sel = KERNEL_CS,
				      .type = 0x8e | dpl << 5,
				      .off1 = (u16)(a >> 16),
				      .off2 = (u32)(a >> 32) };
}

static void idt_build(void)
{
	for (unsigned v = 0; v < 32; v++)
		idt_set(v, fault_stubs + 16 * v, 0);
	idt_set(TIMER_VECTOR, timer_stub, 0);
	idt_set(IDLE_VECTOR, idle_stub, 3);
	idt_set(IDLE_VECTOR_INT80, idle_stub, 3);
	idt_set(SPURIOUS_VECTOR, spurious_stub, 0);
	if (cfg.echo)
		idt_set(UART_VECTOR, uart_stub, 0);
	if (cfg.disk_mb || cfg.disk_bad)
		idt_set(VIRTIO_VECTOR, virtio_stub, 0);
	if (cfg.net)
		idt_set(NET_VECTOR, net_stub, 0);
}

static void idt_load(void)
{
	struct __attribute__((packed)) {
		u16 limit;
		u64 base;
	} d = { sizeof(idt) - 1, (u64)idt };

	__asm__ volatile("lidt %0" : : "m"(d));
}

/* The legacy PIC is never used: mask it so a stray IRQ cannot arrive at an unprogrammed
 * vector base (which would land on an exception vector). */
static void pic_mask(void)
{
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
}

/* Software-enables this vCPU's LAPIC and records its ID for the interrupt stubs. */
static void lapic_enable(u32 cpu)
{
	apic_to_cpu[lapic_read(LAPIC_ID) >> 24] = (u8)cpu;
	lapic_write(LAPIC_SVR, SVR_ENABLE | SPURIOUS_VECTOR);
	lapic_write(LAPIC_LVT_LINT0, LVT_MASKED);
}

/* Counts LAPIC timer ticks over CALIB_MS of TSC time and scales them to one TIMER_HZ
 * period. The TSC is read around the MMIO accesses so their (emulated) cost is counted. */
static u32 lapic_calibrate(u64 tsc_khz)
{
	lapic_write(LAPIC_TDCR, TDCR_DIV1);
	lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | TIMER_VECTOR);
	u64 t0 = rdtsc();
	lapic_write(LAPIC_TICR, 0xffffffff);
	while (rdtsc() - t0 < tsc_khz * CALIB_MS)
		cpu_relax();
	u64 counted = 0xffffffffUL - lapic_read(LAPIC_TCCR);
	u64 t1 = rdtsc();
	lapic_write(LAPIC_TICR, 0);
	u64 count = counted * (tsc_khz * 1000 / TIMER_HZ) / (t1 - t0);
	if (count < 1000) /* a broken timer: keep interrupts rare but alive */
		count = 1000;
	return count > 0xffffffffUL ? 0xffffffff : (u32)count;
}

static void timer_start(void)
{
	lapic_write(LAPIC_TDCR, TDCR_DIV1);
	lapic_write(LAPIC_LVT_TIMER, TIMER_PERIODIC | TIMER_VECTOR);
	lapic_write(LAPIC_TICR, timer_count);
}

static void ioapic_write(u32 reg, u32 v)
{
	*(volatile u32 *)(IOAPIC_BASE + IOAPIC_INDEX) = reg;
	*(volatile u32 *)(IOAPIC_BASE + IOAPIC_DATA) = v;
}

/* echo=1: IOAPIC pin UART_IRQ to vector UART_VECTOR on this vCPU (fixed, physical, edge,
 * active high), then the UART's receive interrupt. Runs after lapic_enable, as a
 * software-disabled LAPIC drops what it is sent, and programs the IOAPIC before the UART
 * can raise its line, so no edge is lost; IF = 0 holds the interrupt until ring 3. */
static void uart_irq_enable(void)
{
	u32 reg = IOAPIC_REDIR0 + 2 * UART_IRQ;

	ioapic_write(reg + 1, lapic_read(LAPIC_ID) & 0xff000000); /* destination: bits 24..31 */
	ioapic_write(reg, UART_VECTOR);				  /* unmasked, the rest 0 */
	outb(PORT_UART_IER, IER_RDI);
	outb(PORT_UART_MCR, MCR_IRQ_ON);
}

/* disk_mb/disk_bad: IOAPIC pin VIRTIO_IRQ to vector VIRTIO_VECTOR on this vCPU (fixed,
 * physical, edge, active high), as for the UART; net_frames/net_bad: the net device's pin
 * to NET_VECTOR on the net vCPU. */
static void virtio_irq_enable(u32 pin, u32 vector)
{
	u32 reg = IOAPIC_REDIR0 + 2 * pin;

	ioapic_write(reg + 1, lapic_read(LAPIC_ID) & 0xff000000);
	ioapic_write(reg, vector);
}

volatile u64 virtio_irqs, net_irqs;

/* Acknowledge what a virtio device's interrupt status says (used buffers, configuration
 * change) and count it. */
static void virtio_ack(u64 base, volatile u64 *count)
{
	vmmio_wr(base, VMMIO_ISR_ACK, vmmio_rd(base, VMMIO_ISR));
	(*count)++;
	lapic_write(LAPIC_EOI, 0);
}

/* Vector VIRTIO_VECTOR, called by virtio_stub: device 0 (the disk). */
void virtio_irq(void)
{
	virtio_ack(cfg.virtio_base, &virtio_irqs);
}

/* Vector NET_VECTOR, called by net_stub: the net device. */
void net_irq(void)
{
	virtio_ack(cfg.net_base, &net_irqs);
}

/* Vector UART_VECTOR, called by uart_stub: moves every received byte into rx_ring. The
 * line is edge-triggered, so the FIFO must be emptied or no new edge would come; reading
 * RBR lets the VMM refill it, so one interrupt may drain all the waiting input. */
void uart_rx_irq(void)
{
	u32 head = rx_ring.head;

	while (inb(PORT_UART_LSR) & LSR_DR)
		rx_ring.buf[head++ % RX_RING_SIZE] = inb(PORT_UART);
	__atomic_store_n(&rx_ring.head, head, __ATOMIC_RELEASE);
	rx_ring.irqs++;
	lapic_write(LAPIC_EOI, 0);
}

/* cpuid=1: the feature leaves as this vCPU sees them. Under VT-x/AMD-V every CPUID exits to
 * KVM, which answers from the vCPU's table (the VMM's CPU template); a PVM host whose CPU
 * cannot trap CPUID lets the instruction run natively, and the guest reads the host's. */
static void print_cpuid(void)
{
	static const u32 leaves[][2] = { { 1, 0 },	   { 7, 0 },   { 7, 1 },
					 { 0xd, 0 },	   { 0xd, 1 }, { 0x80000001, 0 },
					 { 0x80000008, 0 } };

	for (unsigned i = 0; i < sizeof(leaves) / sizeof(leaves[0]); i++) {
		u32 a = leaves[i][0], b, c = leaves[i][1], d;

		__asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
		con_printf("CPUID leaf=0x%x sub=%u eax=0x%x ebx=0x%x ecx=0x%x edx=0x%x\n",
			   leaves[i][0], leaves[i][1], a, b, c, d);
	}
}

static void boot_vcpu0(const struct boot_info *bi)
{
	config_init(bi);
	if (cfg.cpuid)
		print_cpuid();
	pic_mask();
	idt_build();
	lapic_enable(0);
	if (cfg.echo)
		uart_irq_enable();
	if (cfg.disk_mb || cfg.disk_bad)
		virtio_irq_enable(VIRTIO_IRQ, VIRTIO_VECTOR);
	timer_count = lapic_calibrate(cfg.tsc_khz);
	__atomic_store_n(&released, 1, __ATOMIC_RELEASE);
}

void ring0_main(const struct boot_info *bi)
{
	u32 cpu = bi->vcpu_id;

	if (bi->magic != BOOT_MAGIC || cpu >= MAX_CPUS) {
		con_printf_urgent("ERROR bad boot info magic=0x%lx vcpu=%u\n", bi->magic, cpu);
		guest_exit(EXIT_BADARG);
	}
	if (cpu == 0)
		boot_vcpu0(bi);
	while (!__atomic_load_n(&released, __ATOMIC_ACQUIRE))
		cpu_relax();
	idt_load();
	if (cpu != 0)
		lapic_enable(cpu);
	if (cfg.net && cpu == cfg.net_cpu)
		virtio_irq_enable(cfg.net_pin, NET_VECTOR);
	timer_start();
	/* RSP at a function's entry is 8 below a 16-byte boundary, as after a call. */
	enter_user((u64)user_main, (u64)user_stacks[cpu + 1] - 8, cpu);
}

static u32 current_cpu(void)
{
	return apic_to_cpu[lapic_read(LAPIC_ID) >> 24];
}

void fault_report(const struct fault_frame *f)
{
	con_printf_urgent("FAULT vec=%lu err=0x%lx rip=0x%lx cpu=%u\n", f->vec, f->err, f->rip,
			  current_cpu());
	guest_exit(EXIT_FAULT);
}

/* workload.c — the ring-3 side, which runs at native speed on PVM: every writer vCPU stamps
 * the pages of its partition generation after generation, checking each old stamp first,
 * with a running checksum in xmm0/xmm1 that only survives if the VMM keeps FPU state; vCPU
 * 0 also prints READY and the heartbeats. */
#include "selfcheck.h"

#define STAMP_KEY	0x5ca1ab1e5ca1ab1eUL
#define PAGES_PER_MIB	(MIB / PAGE_SIZE)
#define FALLBACK_VISITS (1UL << 16) /* clock reads even if the timer stops: ~1 ms at best */
#define BURST_MS	10	    /* the most idle time a paced writer may make up for */
#define RX_TEXT_MAX	200	    /* characters of an RX line printed */

struct pcpu pcpu[MAX_CPUS];

struct writer {
	u32 cpu;
	u64 first, end; /* partition: pages first, first + stride, ... below end */
	u64 written;	/* page writes so far, mirrored in pcpu[cpu].pages */
	u64 budget;	/* page writes before the clock must be read again */
	u64 seen_ticks; /* pcpu[cpu].ticks at the last clock read */
	u64 rate;	/* paced: pages/s; 0 = as fast as possible */
	u64 last, paid; /* paced: TSC and page writes at the last clock read */
	long credit;	/* paced: earned minus spent, in pages * TSC Hz */
};

static volatile u32 in_user; /* vCPUs that reached ring 3 */
static struct {
	u64 seq, next;
} hb; /* vCPU 0 only */
static struct {
	u32 tail; /* rx_ring bytes looked at */
	u32 len;
	bool lost; /* the ring overran: drop the rest of this line */
	char text[RX_TEXT_MAX + 1];
} rx; /* vCPU 0 only */

/* The checksum lives in xmm0 and the generation in xmm1. Nothing else in the guest uses
 * vector registers (everything is built with -mno-sse), so only the VMM can lose them. */
static inline void acc_start(void)
{
	__asm__ volatile("pxor %%xmm0, %%xmm0" : :);
}

static inline void acc_set_gen(u64 gen)
{
	__asm__ volatile("movq %0, %%xmm1" : : "r"(gen));
}

static inline void acc_update(u64 add, u64 sub)
{
	__asm__ volatile("movq %0, %%xmm2\n\tpaddq %%xmm2, %%xmm0\n\t"
			 "movq %1, %%xmm2\n\tpsubq %%xmm2, %%xmm0"
			 :
			 : "r"(add), "r"(sub));
}

static inline u64 acc_read(void)
{
	u64 v;

	__asm__ volatile("movq %%xmm0, %0" : "=r"(v));
	return v;
}

static inline u64 gen_read(void)
{
	u64 v;

	__asm__ volatile("movq %%xmm1, %0" : "=r"(v));
	return v;
}

/* Working-set page idx; RAM offsets from 3 GiB on live above the 3-4 GiB hole. */
static inline volatile u64 *page_at(u64 idx)
{
	u64 a = cfg.wss_base + idx * PAGE_SIZE;

	return (volatile u64 *)(a >= HOLE_START ? a + GIB : a);
}

/* Generation 0 is a page never written: still all zero. */
static inline bool stamp_ok(u64 idx, u64 gen, u64 w0, u64 w1, u64 w511)
{
	if (gen == 0)
		return (w0 | w1 | w511) == 0;
	return w0 == idx && w1 == gen && w511 == (idx ^ gen ^ STAMP_KEY);
}

/* A cheap mix of a stamp's first two words; 0 for a zero page, so the sum starts at 0. */
static inline u64 stamp_hash(u64 w0, u64 w1)
{
	return (w0 * 0x9e3779b97f4a7c15UL + w1) * 0xff51afd7ed558ccdUL;
}

static __attribute__((noreturn)) void corrupt_page(u64 idx, u64 expected, u64 found)
{
	con_printf("CORRUPT page=%lu expected=%lu found=%lu\n", idx, expected, found);
	guest_exit(EXIT_CORRUPT);
}

static inline void page_write(u64 idx, u64 gen)
{
	volatile u64 *p = page_at(idx);
	u64 w0 = p[0], w1 = p[1], w511 = p[511];

	if (!stamp_ok(idx, gen - 1, w0, w1, w511))
		corrupt_page(idx, gen - 1, w1);
	p[0] = idx;
	p[1] = gen;
	p[511] = idx ^ gen ^ STAMP_KEY;
	acc_update(stamp_hash(idx, gen), stamp_hash(w0, w1));
}

static void totals(u64 *pages, u64 *ticks)
{
	*pages = *ticks = 0;
	for (u32 i = 0; i < cfg.nr_vcpus; i++) {
		*pages += pcpu[i].pages;
		*ticks += pcpu[i].ticks;
	}
}

static void rx_line_end(void)
{
	if (rx.len && !rx.lost) {
		rx.text[rx.len] = 0;
		con_printf("RX irqs=%lu line=%s\n", rx_ring.irqs, rx.text);
	}
	rx.len = 0;
	rx.lost = false;
}

/* echo=1, vCPU 0: prints each complete line the UART interrupt has put in rx_ring,
 * keeping printable ASCII only. A line with bytes the ring overwrote before they were
 * looked at is dropped. */
static void rx_poll(void)
{
	u32 head = __atomic_load_n(&rx_ring.head, __ATOMIC_ACQUIRE);

	if (head - rx.tail > RX_RING_SIZE) {
		rx.tail = head - RX_RING_SIZE;
		rx.lost = true;
	}
	for (; rx.tail != head; rx.tail++) {
		char c = (char)rx_ring.buf[rx.tail % RX_RING_SIZE];

		if (c == '\n' || c == '\r')
			rx_line_end();
		else if (c >= ' ' && c <= '~' && rx.len < RX_TEXT_MAX)
			rx.text[rx.len++] = c;
	}
}

/* vCPU 0: echo input lines (echo=1), and print a heartbeat when one is due. After a long
 * stall (a paused or migrating VM) the next heartbeat is due a full period later, rather
 * than a burst of overdue ones. */
void hb_poll(u64 now)
{
	u64 pages, ticks;

	if (cfg.echo)
		rx_poll();
	if (now < hb.next)
		return;
	hb.next = now - hb.next < cfg.hb_tsc ? hb.next + cfg.hb_tsc : now + cfg.hb_tsc;
	hb.seq++;
	totals(&pages, &ticks);
	/* ms: the guest's TSC in milliseconds, so a host sees guest time never goes back. */
	con_printf("HB seq=%lu pages=%lu ticks=%lu ms=%lu\n", hb.seq, pages, ticks,
		   now / cfg.tsc_khz);
	if (cfg.exit_after && hb.seq >= cfg.exit_after)
		guest_exit(EXIT_OK);
}

/* Token bucket: credit earns rate pages/s, each write spends one page; at most BURST_MS
 * (or one page) of credit is kept, so a writer does not race to make up for time the VM
 * was stopped. */
static void pace(struct writer *w, u64 now, u64 hz)
{
	u64 max_dt = cfg.tsc_khz * BURST_MS;
	u64 dt = now - w->last < max_dt ? now - w->last : max_dt;
	long cap = (long)(max_dt * w->rate > hz ? max_dt * w->rate : hz);

	w->credit += (long)(dt * w->rate);
	if (w->credit > cap)
		w->credit = cap;
	w->credit -= (long)((w->written - w->paid) * hz);
	w->paid = w->written;
	w->last = now;
}

/* Reads the clock: heartbeat, then pacing, sleeping until a tick while there is no
 * credit for a page. Leaves in budget how many pages may be written before the next read. */
static void writer_poll(struct writer *w)
{
	u64 hz = cfg.tsc_khz * 1000;

	for (;;) {
		u64 now = rdtsc();

		w->seen_ticks = pcpu[w->cpu].ticks;
		if (w->cpu == 0)
			hb_poll(now);
		if (!w->rate) {
			w->budget = FALLBACK_VISITS;
			return;
		}
		pace(w, now, hz);
		if (w->credit >= (long)hz) {
			w->budget = (u64)w->credit / hz;
			return;
		}
		idle();
	}
}

/* RDTSC may be a VM exit, so the clock is read once per timer tick (a compare in memory
 * tells when one came), when a paced writer's budget runs out, or every FALLBACK_VISITS
 * pages in case the timer stops. */
static inline void writer_tick_check(struct writer *w)
{
	if (pcpu[w->cpu].ticks != w->seen_ticks)
		writer_poll(w);
}

static void writer_init(struct writer *w, u32 cpu)
{
	u64 start = cpu * cfg.wss_pages / cfg.writers;
	u64 stride = cfg.stride;

	*w = (struct writer){ .cpu = cpu, .end = (cpu + 1) * cfg.wss_pages / cfg.writers };
	w->first = (start + stride - 1) / stride * stride;
	w->rate = cfg.dirty_rate * PAGES_PER_MIB / cfg.writers;
	w->last = rdtsc();
	writer_poll(w);
}

/* After a pass: every stamp must be at gen, and the registers must agree with memory. */
static void verify_pass(struct writer *w, u64 gen)
{
	u64 sum = 0;

	for (u64 idx = w->first; idx < w->end; idx += cfg.stride) {
		volatile u64 *p = page_at(idx);
		u64 w0 = p[0], w1 = p[1], w511 = p[511];

		if (!stamp_ok(idx, gen, w0, w1, w511))
			corrupt_page(idx, gen, w1);
		sum += stamp_hash(w0, w1);
		writer_tick_check(w);
	}
	u64 acc = acc_read(), reg_gen = gen_read();
	if (acc != sum || reg_gen != gen) {
		con_printf("CORRUPT fpu acc=0x%lx mem=0x%lx gen=%lu expected=%lu cpu=%u\n", acc,
			   sum, reg_gen, gen, w->cpu);
		guest_exit(EXIT_CORRUPT);
	}
}

/* Returns only if the partition holds no page to touch, or after passes= passes (the
 * memory stays written: an idle guest with its working set filled). */
static void writer_run(u32 cpu)
{
	struct writer w;

	writer_init(&w, cpu);
	if (w.first >= w.end)
		return;
	acc_start();
	for (u64 gen = 1; !cfg.passes || gen <= cfg.passes; gen++) {
		acc_set_gen(gen);
		for (u64 idx = w.first; idx < w.end; idx += cfg.stride) {
			page_write(idx, gen);
			pcpu[cpu].pages = ++w.written;
			if (--w.budget == 0)
				writer_poll(&w);
			else
				writer_tick_check(&w);
		}
		verify_pass(&w, gen);
	}
}

/* mode=ioloop: the cost of a port-I/O exit, seen from ring 3. */
static __attribute__((noreturn)) void ioloop(void)
{
	u64 t0 = rdtsc();

	for (u64 i = 0; i < cfg.iters; i++)
		outb(PORT_UART_SCRATCH, (u8)i);
	u64 t = rdtsc() - t0;
	con_printf("IOLOOP iters=%lu tsc=%lu\n", cfg.iters, t);
	guest_exit(EXIT_OK);
}

/* ---- disk_mb=N / disk_bad=1: vCPU 0 drives disk 0 (vblk.c) ------------------------------ */

#define DISK_BLOCK 4096UL

static u64 disk_buf[DISK_BLOCK / 8] __attribute__((aligned(4096)));

static void disk_stamp(u64 block, u64 gen)
{
	disk_buf[0] = block;
	disk_buf[1] = gen;
	disk_buf[511] = block ^ gen ^ STAMP_KEY;
}

static __attribute__((noreturn)) void disk_idle(void)
{
	for (;;) {
		idle();
		hb_poll(rdtsc());
	}
}

static void disk_must(u8 st, const char *what, u64 block)
{
	if (st) {
		con_printf("ERROR disk %s block=%lu status=%u\n", what, block, st);
		guest_exit(EXIT_BADARG);
	}
}

/* disk_bad=1: the queue points outside RAM; the device must say it needs a reset. */
static __attribute__((noreturn)) void disk_broken(void)
{
	u32 st;

	while (!((st = vblk_status()) & 64))
		hb_poll(rdtsc());
	con_printf("DISK needs-reset status=0x%x\n", st);
	disk_idle();
}

/* A read-only disk: a write must fail, a read must work. */
static __attribute__((noreturn)) void disk_ro(void)
{
	u8 w, r;

	disk_stamp(0, 1);
	w = vblk_rw(true, 0, disk_buf, DISK_BLOCK);
	r = vblk_rw(false, 0, disk_buf, DISK_BLOCK);
	con_printf("DISK ro write=%u read=%u\n", w, r);
	disk_idle();
}

/* disk_discard=1, after pass 1: discard the first half of the blocks, which must then read
 * as zeros, and stamp them again (so pass 1's read-back still holds). */
static void disk_discard_half(u64 blocks)
{
	u64 half = blocks / 2, zero = 1;
	u8 st = vblk_discard(0, (u32)(half * (DISK_BLOCK / 512)));

	for (u64 b = 0; st == 0 && b < half; b++) {
		disk_must(vblk_rw(false, b * 8, disk_buf, DISK_BLOCK), "read", b);
		for (u64 i = 0; i < DISK_BLOCK / 8; i++)
			zero &= disk_buf[i] == 0;
		disk_stamp(b, 1);
		disk_must(vblk_rw(true, b * 8, disk_buf, DISK_BLOCK), "write", b);
	}
	con_printf("DISK discard blocks=%lu status=%u zeros=%lu\n", half, st, zero);
}

/* The place (in requests of disk_bs) the i-th request of a pass goes to: in order, or with
 * disk_rand=1 shuffled — i * a large prime modulo the count is a permutation, the count
 * being smaller than the prime. */
static u64 disk_unit(u64 i, u64 units)
{
	return cfg.disk_rand ? (i * 1000003ULL + 7) % units : i;
}

/* Requests [first, first + n) of pass gen, disk_qd at a time in the buffers after the
 * working set: stamp and write every 4 KiB block, or read it back and check it (not in the
 * timed pass 1 of disk_bench=1: the benchmark times the device, and every later pass
 * checks). */
static void disk_batch(bool write, u64 first, u32 n, u64 units, u64 gen)
{
	u64 bs = cfg.disk_bs * 1024, per = bs / DISK_BLOCK, sector[VBLK_MAX_BATCH];
	u8 *buf[VBLK_MAX_BATCH];

	for (u32 r = 0; r < n; r++) {
		u64 unit = disk_unit(first + r, units);

		buf[r] = (u8 *)(cfg.disk_io_base + r * bs);
		sector[r] = unit * (bs / 512);
		for (u64 k = 0; write && k < per; k++) {
			u64 *w = (u64 *)(buf[r] + k * DISK_BLOCK), b = unit * per + k;

			w[0] = b;
			w[1] = gen;
			w[511] = b ^ gen ^ STAMP_KEY;
		}
	}
	disk_must(vblk_rw_many(write, sector, buf, (u32)bs, n), write ? "write" : "read", first);
	for (u32 r = 0; !write && !(cfg.disk_bench && gen == 1) && r < n; r++)
		for (u64 k = 0; k < per; k++) {
			const u64 *w = (const u64 *)(buf[r] + k * DISK_BLOCK);
			u64 b = disk_unit(first + r, units) * per + k;

			if (w[0] != b || w[1] != gen || w[511] != (b ^ gen ^ STAMP_KEY)) {
				con_printf("CORRUPT disk block=%lu expected=%lu found=%lu\n", b,
					   gen, w[1]);
				guest_exit(EXIT_CORRUPT);
			}
		}
}

/* One pass's writes (then the flush) or reads; its TSC time. */
static u64 disk_pass(bool write, u64 units, u64 gen)
{
	u64 t0 = rdtsc();

	for (u64 i = 0; i < units; i += cfg.disk_qd) {
		u32 n = (u32)(units - i < cfg.disk_qd ? units - i : cfg.disk_qd);

		disk_batch(write, i, n, units, gen);
		hb_poll(rdtsc());
	}
	if (write)
		disk_must(vblk_flush(), "flush", 0);
	return rdtsc() - t0;
}

/* Pass after pass: stamp every block with the generation, flush, read every block back. */
static __attribute__((noreturn)) void disk_run(void)
{
	u64 sectors, blocks = cfg.disk_mb * MIB / DISK_BLOCK,
		     units = cfg.disk_mb * MIB / (cfg.disk_bs * 1024);
	bool ro;

	if (vblk_init(cfg.virtio_base, cfg.disk_bad, &ro, &sectors))
		guest_exit(EXIT_BADARG);
	if (cfg.disk_bad)
		disk_broken();
	if (ro)
		disk_ro();
	if (blocks > sectors / (DISK_BLOCK / 512)) {
		con_printf("ERROR disk: disk_mb=%lu is more than the disk's %lu sectors\n",
			   cfg.disk_mb, sectors);
		guest_exit(EXIT_BADARG);
	}
	vblk_quiet(cfg.disk_bench); /* a polling benchmark takes no interrupts */
	for (u64 gen = 1;; gen++) {
		u64 tw = disk_pass(true, units, gen), tr;

		con_printf("DISK pass=%lu blocks=%lu flushed irqs=%lu\n", gen, blocks, virtio_irqs);
		if (gen == 1 && cfg.disk_discard)
			disk_discard_half(blocks);
		tr = disk_pass(false, units, gen);
		if (gen == 1 && cfg.disk_bench)
			con_printf("DISKBENCH blocks=%lu write_tsc=%lu read_tsc=%lu tsc_khz=%lu "
				   "bs=%lu qd=%lu rand=%lu\n",
				   blocks, tw, tr, cfg.tsc_khz, cfg.disk_bs, cfg.disk_qd,
				   cfg.disk_rand);
	}
}

/* vCPU 0, once every vCPU runs in ring 3. */
static void report_start(void)
{
	while (__atomic_load_n(&in_user, __ATOMIC_ACQUIRE) < cfg.nr_vcpus)
		cpu_relax();
	if (cfg.mode == MODE_IOLOOP)
		ioloop();
	con_printf("READY wss_base=0x%lx wss_pages=%lu vcpus=%u writers=%u\n", cfg.wss_base,
		   cfg.wss_pages, cfg.nr_vcpus, cfg.writers);
	hb.next = rdtsc() + cfg.hb_tsc;
}

void user_main(u64 cpu)
{
	__atomic_fetch_add(&in_user, 1, __ATOMIC_RELEASE);
	if (cpu == 0)
		report_start();
	if (cfg.net && cpu == cfg.net_cpu)
		net_run((u32)cpu); /* the net vCPU drives the network device instead */
	if (cpu == 0 && (cfg.disk_mb || cfg.disk_bad))
		disk_run(); /* vCPU 0 drives the disk instead of writing pages */
	if ((cfg.balloon_mb || cfg.balloon_bad) && cpu == cfg.balloon_cpu)
		balloon_run(); /* a vCPU of its own: the writers and heartbeats go on */
	if (cfg.mode == MODE_WRITE && cpu < cfg.writers)
		writer_run((u32)cpu);
	for (;;) {
		idle();
		if (cpu == 0)
			hb_poll(rdtsc());
	}
}

/* balloon.c — balloon_mb / balloon_report / balloon_bad: the last vCPU drives the
 * virtio-balloon (vballoon.c) while the others run the workload. It first touches a pool
 * of balloon_mb MiB after the working set, so the host holds it, then follows the host's
 * target: inflating gives pool pages to the balloon (never touched again while there),
 * deflating takes them back, checks them (zero, or their old stamp) and stamps them again. */
#include "selfcheck.h"

#define POOL_KEY 0xba110075ba110075UL
#define BATCH	 256	   /* PFNs per request */
#define RANGE	 (2 * MIB) /* a reported free range: 2^9 pages, as Linux reports */

static u32 pfn[BATCH];
static struct {
	u64 pages;	   /* in the pool */
	u64 actual;	   /* pool pages 0..actual-1 are in the balloon */
	u64 zeroed;	   /* pages that read as zeros when taken back */
	u64 report_from;   /* balloon_report: pages report_from.. were reported free */
	bool report_reuse; /* ... and are stamped again at the next target */
} pool;

/* Pool page i; RAM offsets from 3 GiB on live above the 3-4 GiB hole. */
static u64 pool_phys(u64 i)
{
	u64 a = cfg.pool_base + i * PAGE_SIZE;

	return a >= HOLE_START ? a + GIB : a;
}

static __attribute__((noreturn)) void needs_reset(void)
{
	con_printf("BALLOON needs-reset status=0x%x\n", vballoon_status());
	for (;;)
		idle();
}

static void stamp(u64 i, u64 gen)
{
	volatile u64 *p = (volatile u64 *)pool_phys(i);

	p[0] = i;
	p[1] = gen;
	p[511] = i ^ gen ^ POOL_KEY;
}

/* A page back from the host: all zero (released) or its last stamp (kept); then the next
 * stamp, which must read back. */
static void restamp(u64 i)
{
	volatile u64 *p = (volatile u64 *)pool_phys(i);
	u64 w0 = p[0], w1 = p[1], w511 = p[511];
	bool zero = (w0 | w1 | w511) == 0;

	if (!zero && (w0 != i || w511 != (i ^ w1 ^ POOL_KEY))) {
		con_printf("CORRUPT balloon page=%lu found=%lx/%lx/%lx\n", i, w0, w1, w511);
		guest_exit(EXIT_CORRUPT);
	}
	pool.zeroed += zero;
	stamp(i, w1 + 1);
	if (p[1] != w1 + 1) {
		con_printf("CORRUPT balloon page=%lu does not keep a write\n", i);
		guest_exit(EXIT_CORRUPT);
	}
}

/* Pool pages [from, from + n) to or from the balloon, one request. */
static void give(bool inflate, u64 from, u32 n)
{
	for (u32 k = 0; k < n; k++)
		pfn[k] = (u32)(pool_phys(from + k) >> 12);
	if (vballoon_give(inflate, pfn, n))
		needs_reset();
}

static void inflate_to(u64 want)
{
	while (pool.actual < want) {
		u32 n = want - pool.actual < BATCH ? (u32)(want - pool.actual) : BATCH;

		give(true, pool.actual, n);
		pool.actual += n;
		vballoon_set_actual((u32)pool.actual);
	}
}

static void deflate_to(u64 want)
{
	while (pool.actual > want) {
		u32 n = pool.actual - want < BATCH ? (u32)(pool.actual - want) : BATCH;

		pool.actual -= n;
		give(false, pool.actual, n);
		vballoon_set_actual((u32)pool.actual);
		for (u32 k = 0; k < n; k++)
			restamp(pool.actual + k);
	}
}

/* balloon_report=1: the pool's top half, in 2 MiB ranges; each page must read as zeros or
 * as it was. The range stays untouched (free) until the next target, so the host's memory
 * shows it released. */
static void report_top_half(void)
{
	u64 from = pool.pages / 2 / (RANGE / PAGE_SIZE) * (RANGE / PAGE_SIZE), zeros = 0;

	for (u64 i = from; i < pool.pages; i += RANGE / PAGE_SIZE)
		if (vballoon_report(pool_phys(i), RANGE))
			needs_reset();
	for (u64 i = from; i < pool.pages; i++) {
		volatile u64 *p = (volatile u64 *)pool_phys(i);
		u64 w0 = p[0], w1 = p[1], w511 = p[511];

		if ((w0 | w1 | w511) == 0) {
			zeros++;
		} else if (w0 != i || w1 != 1 || w511 != (i ^ 1 ^ POOL_KEY)) {
			con_printf("CORRUPT balloon reported page=%lu\n", i);
			guest_exit(EXIT_CORRUPT);
		}
	}
	pool.report_from = from;
	pool.report_reuse = true;
	con_printf("BALLOON report pages=%lu zeros=%lu\n", pool.pages - from, zeros);
}

static void reuse_reported(void)
{
	u64 zeroed = pool.zeroed;

	for (u64 i = pool.report_from; i < pool.pages; i++)
		restamp(i);
	con_printf("BALLOON reused pages=%lu zeros=%lu\n", pool.pages - pool.report_from,
		   pool.zeroed - zeroed);
	pool.zeroed = zeroed;
	pool.report_reuse = false;
}

/* balloon_bad=1: a PFN in the MMIO hole (the first virtio device's page). */
static __attribute__((noreturn)) void bad_pfn(void)
{
	pfn[0] = (u32)(cfg.virtio_base >> 12);
	if (vballoon_give(true, pfn, 1) == 0)
		con_printf("ERROR balloon: a PFN outside RAM was taken\n");
	needs_reset();
}

void balloon_run(void)
{
	bool reporting = false;
	u32 gen, last = 0;

	if (vballoon_init(cfg.balloon_report, &reporting))
		guest_exit(EXIT_BADARG);
	if (cfg.balloon_bad)
		bad_pfn();
	pool.pages = cfg.balloon_mb * (MIB / PAGE_SIZE);
	for (u64 i = 0; i < pool.pages; i++)
		stamp(i, 1);
	con_printf("BALLOON ready pool_pages=%lu reporting=%u\n", pool.pages, (u32)reporting);
	if (cfg.balloon_report && reporting)
		report_top_half();
	for (bool first = true;; first = false) {
		u64 target = vballoon_target(&gen);

		if (!first && gen == last) {
			idle();
			continue;
		}
		last = gen;
		if (pool.report_reuse && !first)
			reuse_reported();
		target = target < pool.pages ? target : pool.pages;
		inflate_to(target);
		deflate_to(target);
		con_printf("BALLOON target=%lu actual=%lu zeroed=%lu\n", target, pool.actual,
			   pool.zeroed);
	}
}

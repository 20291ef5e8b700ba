/* vblk.c — a polled virtio-blk driver for ring 3 (virtio 1.x over MMIO, one queue of 8,
 * one request at a time). The MMIO window is identity-mapped and user-accessible, like
 * the rest of the address space, and the rings live in .bss (virtual = physical). */
#include "selfcheck.h"

#define QN 8

#define R_MAGIC		 0x000
#define R_VERSION	 0x004
#define R_DEVICE_ID	 0x008
#define R_DEV_FEATURES	 0x010
#define R_DEV_FEAT_SEL	 0x014
#define R_DRV_FEATURES	 0x020
#define R_DRV_FEAT_SEL	 0x024
#define R_QUEUE_SEL	 0x030
#define R_QUEUE_NUM_MAX	 0x034
#define R_QUEUE_NUM	 0x038
#define R_QUEUE_READY	 0x044
#define R_QUEUE_NOTIFY	 0x050
#define R_STATUS	 0x070
#define R_QUEUE_DESC_LO	 0x080
#define R_QUEUE_DESC_HI	 0x084
#define R_QUEUE_AVAIL_LO 0x090
#define R_QUEUE_AVAIL_HI 0x094
#define R_QUEUE_USED_LO	 0x0a0
#define R_QUEUE_USED_HI	 0x0a4
#define R_CONFIG	 0x100

#define S_ACK	      1
#define S_DRIVER      2
#define S_DRIVER_OK   4
#define S_FEATURES_OK 8
#define S_NEEDS_RESET 64

#define F_RO	     (1u << 5)
#define F_DISCARD    (1u << 13)
#define D_NEXT	     1
#define D_WRITE	     2
#define BAD_QUEUE_AT (1UL << 46) /* far beyond any RAM */

struct desc {
	u64 addr;
	u32 len;
	u16 flags, next;
};

static struct desc ring_desc[QN] __attribute__((aligned(16)));
static volatile struct {
	u16 flags, idx, ring[QN], used_event;
} ring_avail __attribute__((aligned(2)));
static volatile struct {
	u16 flags, idx;
	struct {
		u32 id, len;
	} ring[QN];
	u16 avail_event;
} ring_used __attribute__((aligned(4)));
static struct {
	u32 type, reserved;
	u64 sector;
} req;
static volatile u8 req_status;
static struct {
	u64 sector;
	u32 num, flags;
} discard_range;
static volatile u32 *regs;
static u16 qnum, next_avail, seen_used;

static u32 rd(u32 off)
{
	return regs[off / 4];
}

static void wr(u32 off, u32 v)
{
	regs[off / 4] = v;
}

static void put_addr(u32 lo, u64 addr)
{
	wr(lo, (u32)addr);
	wr(lo + 4, (u32)(addr >> 32));
}

static int fail(const char *why, u64 v)
{
	con_printf("ERROR disk: %s (0x%lx)\n", why, v);
	return -1;
}

static int setup_queue(bool bad_queue)
{
	u32 max;

	wr(R_QUEUE_SEL, 0);
	max = rd(R_QUEUE_NUM_MAX);
	if (max < QN)
		return fail("queue 0 is too small", max);
	qnum = QN;
	wr(R_QUEUE_NUM, qnum);
	put_addr(R_QUEUE_DESC_LO, bad_queue ? BAD_QUEUE_AT : (u64)ring_desc);
	put_addr(R_QUEUE_AVAIL_LO, (u64)&ring_avail);
	put_addr(R_QUEUE_USED_LO, (u64)&ring_used);
	wr(R_QUEUE_READY, 1);
	return 0;
}

int vblk_init(u64 base, bool bad_queue, bool *ro, u64 *sectors)
{
	u32 feat_lo, feat_hi;

	regs = (volatile u32 *)base;
	if (rd(R_MAGIC) != 0x74726976 || rd(R_VERSION) != 2 || rd(R_DEVICE_ID) != 2)
		return fail("no virtio-blk (version 2) at the first virtio address", base);
	wr(R_STATUS, 0);
	wr(R_STATUS, S_ACK);
	wr(R_STATUS, S_ACK | S_DRIVER);
	wr(R_DEV_FEAT_SEL, 0);
	feat_lo = rd(R_DEV_FEATURES);
	wr(R_DEV_FEAT_SEL, 1);
	feat_hi = rd(R_DEV_FEATURES);
	if (!(feat_hi & 1))
		return fail("the device does not offer VIRTIO_F_VERSION_1", feat_hi);
	wr(R_DRV_FEAT_SEL, 0);
	wr(R_DRV_FEATURES, feat_lo & (F_RO | F_DISCARD));
	wr(R_DRV_FEAT_SEL, 1);
	wr(R_DRV_FEATURES, 1);
	wr(R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
	if (!(rd(R_STATUS) & S_FEATURES_OK))
		return fail("the device refused our features", rd(R_STATUS));
	if (setup_queue(bad_queue))
		return -1;
	wr(R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
	*ro = feat_lo & F_RO;
	*sectors = rd(R_CONFIG) | (u64)rd(R_CONFIG + 4) << 32;
	return 0;
}

u32 vblk_status(void)
{
	return rd(R_STATUS);
}

/* Post the chain at descriptor 0 and wait for the device to use it. */
static u8 submit(void)
{
	u16 slot = next_avail % qnum;

	ring_avail.ring[slot] = 0;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	ring_avail.idx = ++next_avail;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	wr(R_QUEUE_NOTIFY, 0);
	while (ring_used.idx == seen_used) {
		if (rd(R_STATUS) & S_NEEDS_RESET)
			return 0xff;
		cpu_relax();
	}
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	seen_used++;
	return req_status;
}

u8 vblk_rw(bool write, u64 sector, void *buf, u32 len)
{
	req = (__typeof__(req)){ .type = write ? 1 : 0, .sector = sector };
	req_status = 0xee;
	ring_desc[0] = (struct desc){ (u64)&req, sizeof(req), D_NEXT, 1 };
	ring_desc[1] = (struct desc){ (u64)buf, len, (u16)(D_NEXT | (write ? 0 : D_WRITE)), 2 };
	ring_desc[2] = (struct desc){ (u64)&req_status, 1, D_WRITE, 0 };
	return submit();
}

u8 vblk_discard(u64 sector, u32 sectors)
{
	req = (__typeof__(req)){ .type = 11 };
	discard_range.sector = sector;
	discard_range.num = sectors;
	discard_range.flags = 0;
	req_status = 0xee;
	ring_desc[0] = (struct desc){ (u64)&req, sizeof(req), D_NEXT, 1 };
	ring_desc[1] = (struct desc){ (u64)&discard_range, sizeof(discard_range), D_NEXT, 2 };
	ring_desc[2] = (struct desc){ (u64)&req_status, 1, D_WRITE, 0 };
	return submit();
}

u8 vblk_flush(void)
{
	req = (__typeof__(req)){ .type = 4 };
	req_status = 0xee;
	ring_desc[0] = (struct desc){ (u64)&req, sizeof(req), D_NEXT, 1 };
	ring_desc[1] = (struct desc){ (u64)&req_status, 1, D_WRITE, 0 };
	return submit();
}

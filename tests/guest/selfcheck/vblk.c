/* vblk.c — a polled virtio-blk driver for ring 3 (virtio 1.x over MMIO through vmmio.c,
 * one queue of 8, one request at a time). The rings live in .bss (virtual = physical). */
#include "selfcheck.h"

#define QN 8

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
static u64 base;
static u16 next_avail, seen_used;

int vblk_init(u64 at, bool bad_queue, bool *ro, u64 *sectors)
{
	u32 feat;

	base = at;
	if (vmmio_start(base, VIRTIO_ID_BLOCK, F_RO | F_DISCARD, &feat, "disk") ||
	    vmmio_queue(base, 0, QN, bad_queue ? BAD_QUEUE_AT : (u64)ring_desc, (u64)&ring_avail,
			(u64)&ring_used, "disk"))
		return -1;
	vmmio_driver_ok(base);
	*ro = feat & F_RO;
	*sectors = vmmio_rd(base, VMMIO_CONFIG) | (u64)vmmio_rd(base, VMMIO_CONFIG + 4) << 32;
	return 0;
}

u32 vblk_status(void)
{
	return vmmio_rd(base, VMMIO_STATUS);
}

/* Post the chain at descriptor 0 and wait for the device to use it. */
static u8 submit(void)
{
	u16 slot = next_avail % QN;

	ring_avail.ring[slot] = 0;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	ring_avail.idx = ++next_avail;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	vmmio_wr(base, VMMIO_NOTIFY, 0);
	while (ring_used.idx == seen_used) {
		if (vmmio_rd(base, VMMIO_STATUS) & VMMIO_NEEDS_RESET)
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

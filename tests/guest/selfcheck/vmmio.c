/* vmmio.c — the virtio-mmio side the ring-3 drivers share (vblk.c, vballoon.c): register
 * access, the status and feature handshake, queue setup and a polled submit of one chain
 * at a time. The MMIO windows are identity-mapped and user-accessible, like the rest of the
 * address space, and the rings live in .bss (virtual = physical). */
#include "selfcheck.h"

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
#define R_QUEUE_DESC_LO	 0x080
#define R_QUEUE_AVAIL_LO 0x090
#define R_QUEUE_USED_LO	 0x0a0

#define R_STATUS 0x070

#define S_ACK	      1
#define S_DRIVER      2
#define S_DRIVER_OK   4
#define S_FEATURES_OK 8

u32 vmmio_rd(volatile u32 *regs, u32 off)
{
	return regs[off / 4];
}

void vmmio_wr(volatile u32 *regs, u32 off, u32 v)
{
	regs[off / 4] = v;
}

static void put_addr(volatile u32 *regs, u32 lo, u64 addr)
{
	vmmio_wr(regs, lo, (u32)addr);
	vmmio_wr(regs, lo + 4, (u32)(addr >> 32));
}

static int fail(const char *name, const char *why, u64 v)
{
	con_printf("ERROR %s: %s (0x%lx)\n", name, why, v);
	return -1;
}

volatile u32 *vmmio_find(u32 device_id)
{
	for (u32 i = 0; i < cfg.virtio_count; i++) {
		volatile u32 *regs = (volatile u32 *)(cfg.virtio_base + i * 4096UL);

		if (vmmio_rd(regs, R_MAGIC) == 0x74726976 && vmmio_rd(regs, R_VERSION) == 2 &&
		    vmmio_rd(regs, R_DEVICE_ID) == device_id)
			return regs;
	}
	return 0;
}

int vmmio_start(volatile u32 *regs, u32 device_id, u32 want, u32 *got, const char *name)
{
	u32 feat_lo, feat_hi;

	if (vmmio_rd(regs, R_MAGIC) != 0x74726976 || vmmio_rd(regs, R_VERSION) != 2 ||
	    vmmio_rd(regs, R_DEVICE_ID) != device_id)
		return fail(name, "no such virtio device (version 2) there", (u64)regs);
	vmmio_wr(regs, R_STATUS, 0);
	vmmio_wr(regs, R_STATUS, S_ACK);
	vmmio_wr(regs, R_STATUS, S_ACK | S_DRIVER);
	vmmio_wr(regs, R_DEV_FEAT_SEL, 0);
	feat_lo = vmmio_rd(regs, R_DEV_FEATURES);
	vmmio_wr(regs, R_DEV_FEAT_SEL, 1);
	feat_hi = vmmio_rd(regs, R_DEV_FEATURES);
	if (!(feat_hi & 1))
		return fail(name, "the device does not offer VIRTIO_F_VERSION_1", feat_hi);
	*got = feat_lo & want;
	vmmio_wr(regs, R_DRV_FEAT_SEL, 0);
	vmmio_wr(regs, R_DRV_FEATURES, *got);
	vmmio_wr(regs, R_DRV_FEAT_SEL, 1);
	vmmio_wr(regs, R_DRV_FEATURES, 1);
	vmmio_wr(regs, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
	if (!(vmmio_rd(regs, R_STATUS) & S_FEATURES_OK))
		return fail(name, "the device refused our features", vmmio_rd(regs, R_STATUS));
	return 0;
}

int vmmio_queue(volatile u32 *regs, struct vq *q, u32 index, u64 desc_at, const char *name)
{
	u32 max;

	vmmio_wr(regs, R_QUEUE_SEL, index);
	max = vmmio_rd(regs, R_QUEUE_NUM_MAX);
	if (max < VQ_SIZE)
		return fail(name, "a queue is too small", max);
	q->regs = regs;
	q->index = index;
	q->next_avail = q->seen_used = 0;
	vmmio_wr(regs, R_QUEUE_NUM, VQ_SIZE);
	put_addr(regs, R_QUEUE_DESC_LO, desc_at ? desc_at : (u64)q->desc);
	put_addr(regs, R_QUEUE_AVAIL_LO, (u64)&q->avail);
	put_addr(regs, R_QUEUE_USED_LO, (u64)&q->used);
	vmmio_wr(regs, R_QUEUE_READY, 1);
	return 0;
}

void vmmio_driver_ok(volatile u32 *regs)
{
	vmmio_wr(regs, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
}

int vq_submit(struct vq *q)
{
	u16 slot = q->next_avail % VQ_SIZE;

	q->avail.ring[slot] = 0;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	q->avail.idx = ++q->next_avail;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	vmmio_wr(q->regs, R_QUEUE_NOTIFY, q->index);
	while (q->used.idx == q->seen_used) {
		if (vmmio_rd(q->regs, R_STATUS) & VIRTIO_S_NEEDS_RESET)
			return -1;
		cpu_relax();
	}
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	q->seen_used++;
	return 0;
}

/* vmmio.c — what the ring-3 virtio drivers (vblk.c, vnet.c, vballoon.c) share: the
 * virtio-mmio registers (version 2), finding a device, feature negotiation, queue setup,
 * and for the simplest drivers a small queue (struct vq) submitted one chain at a time.
 * The MMIO window is identity-mapped and user-accessible like the rest of the address
 * space, and the rings live in .bss (virtual = physical). */
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
#define R_QUEUE_DESC_LO	 0x080
#define R_QUEUE_AVAIL_LO 0x090
#define R_QUEUE_USED_LO	 0x0a0
#define R_STATUS	 VMMIO_STATUS

#define S_ACK	      1
#define S_DRIVER      2
#define S_DRIVER_OK   4
#define S_FEATURES_OK 8

#define MAGIC	  0x74726976 /* "virt" */
#define SLOT_SIZE 0x1000

u32 vmmio_rd(u64 base, u32 off)
{
	return ((volatile u32 *)base)[off / 4];
}

void vmmio_wr(u64 base, u32 off, u32 v)
{
	((volatile u32 *)base)[off / 4] = v;
}

int vmmio_find(u64 virtio_base, u32 count, u32 id)
{
	for (u32 i = 0; virtio_base && i < count; i++) {
		u64 base = virtio_base + (u64)i * SLOT_SIZE;

		if (vmmio_rd(base, R_MAGIC) == MAGIC && vmmio_rd(base, R_DEVICE_ID) == id)
			return (int)i;
	}
	return -1;
}

static int fail(const char *who, const char *why, u64 v)
{
	con_printf("ERROR %s: %s (0x%lx)\n", who, why, v);
	return -1;
}

int vmmio_start(u64 base, u32 id, u32 want_lo, u32 *got_lo, const char *who)
{
	u32 lo;

	if (vmmio_rd(base, R_MAGIC) != MAGIC || vmmio_rd(base, R_VERSION) != 2 ||
	    vmmio_rd(base, R_DEVICE_ID) != id)
		return fail(who, "no virtio device (version 2) of that type there", base);
	vmmio_wr(base, R_STATUS, 0);
	vmmio_wr(base, R_STATUS, S_ACK);
	vmmio_wr(base, R_STATUS, S_ACK | S_DRIVER);
	vmmio_wr(base, R_DEV_FEAT_SEL, 0);
	lo = vmmio_rd(base, R_DEV_FEATURES);
	vmmio_wr(base, R_DEV_FEAT_SEL, 1);
	if (!(vmmio_rd(base, R_DEV_FEATURES) & 1))
		return fail(who, "the device does not offer VIRTIO_F_VERSION_1", base);
	vmmio_wr(base, R_DRV_FEAT_SEL, 0);
	vmmio_wr(base, R_DRV_FEATURES, lo & want_lo);
	vmmio_wr(base, R_DRV_FEAT_SEL, 1);
	vmmio_wr(base, R_DRV_FEATURES, 1);
	vmmio_wr(base, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
	if (!(vmmio_rd(base, R_STATUS) & S_FEATURES_OK))
		return fail(who, "the device refused our features", vmmio_rd(base, R_STATUS));
	*got_lo = lo & want_lo;
	return 0;
}

static void put_addr(u64 base, u32 lo, u64 addr)
{
	vmmio_wr(base, lo, (u32)addr);
	vmmio_wr(base, lo + 4, (u32)(addr >> 32));
}

int vmmio_queue(u64 base, u32 q, u32 num, u64 desc, u64 avail, u64 used, const char *who)
{
	u32 max;

	vmmio_wr(base, R_QUEUE_SEL, q);
	max = vmmio_rd(base, R_QUEUE_NUM_MAX);
	if (max < num)
		return fail(who, "a queue is too small", max);
	vmmio_wr(base, R_QUEUE_NUM, num);
	put_addr(base, R_QUEUE_DESC_LO, desc);
	put_addr(base, R_QUEUE_AVAIL_LO, avail);
	put_addr(base, R_QUEUE_USED_LO, used);
	vmmio_wr(base, R_QUEUE_READY, 1);
	return 0;
}

void vmmio_driver_ok(u64 base)
{
	vmmio_wr(base, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
}

u64 vmmio_find_base(u32 id)
{
	int i = vmmio_find(cfg.virtio_base, cfg.virtio_count, id);

	return i < 0 ? 0 : cfg.virtio_base + (u64)i * SLOT_SIZE;
}

int vq_setup(u64 base, struct vq *q, u32 index, u64 desc_at, const char *who)
{
	q->base = base;
	q->index = index;
	q->next_avail = q->seen_used = 0;
	return vmmio_queue(base, index, VQ_SIZE, desc_at ? desc_at : (u64)q->desc, (u64)&q->avail,
			   (u64)&q->used, who);
}

void vq_post(struct vq *q, u16 head)
{
	q->avail.ring[q->next_avail % VQ_SIZE] = head;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	q->avail.idx = ++q->next_avail;
}

int vq_kick_wait(struct vq *q, u16 n)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST); /* the index out before reading the flag */
	if (!(q->used.flags & 1))		 /* VIRTQ_USED_F_NO_NOTIFY: the device is polling */
		vmmio_wr(q->base, VMMIO_NOTIFY, q->index);
	/* The status register is a VM exit to read, and the read waits for the device's lock
	 * (and holds up the device meanwhile): look at it only every 10 ms of waiting, while the
	 * used ring is what is polled. */
	for (u64 next = rdtsc() + cfg.tsc_khz * 10; (u16)(q->used.idx - q->seen_used) < n;) {
		if (rdtsc() >= next) {
			if (vmmio_rd(q->base, VMMIO_STATUS) & VMMIO_NEEDS_RESET)
				return -1;
			next = rdtsc() + cfg.tsc_khz * 10;
		}
		cpu_relax();
	}
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	q->seen_used = (u16)(q->seen_used + n);
	return 0;
}

int vq_submit(struct vq *q)
{
	vq_post(q, 0);
	return vq_kick_wait(q, 1);
}

/* vblk.c — a polled virtio-blk driver for ring 3 (virtio 1.x over MMIO through vmmio.c):
 * one queue of VQ_SIZE descriptors, one request at a time or up to VBLK_MAX_BATCH
 * together (three descriptors each: header, data, status). */
#include "selfcheck.h"

#define F_RO	     (1u << 5)
#define F_DISCARD    (1u << 13)
#define BAD_QUEUE_AT (1UL << 46) /* far beyond any RAM */

static struct vq vq;
static struct {
	u32 type, reserved;
	u64 sector;
} req, reqs[VBLK_MAX_BATCH];
static volatile u8 req_status, statuses[VBLK_MAX_BATCH];
static struct {
	u64 sector;
	u32 num, flags;
} discard_range;
static u64 base;

int vblk_init(u64 at, bool bad_queue, bool *ro, u64 *sectors)
{
	u32 feat;

	base = at;
	if (vmmio_start(base, VIRTIO_ID_BLOCK, F_RO | F_DISCARD, &feat, "disk") ||
	    vq_setup(base, &vq, 0, bad_queue ? BAD_QUEUE_AT : 0, "disk"))
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

static u8 submit(void)
{
	return vq_submit(&vq) ? 0xff : req_status;
}

u8 vblk_rw(bool write, u64 sector, void *buf, u32 len)
{
	req = (__typeof__(req)){ .type = write ? 1 : 0, .sector = sector };
	req_status = 0xee;
	vq.desc[0] = (struct vring_desc){ (u64)&req, sizeof(req), VRING_D_NEXT, 1 };
	vq.desc[1] = (struct vring_desc){ (u64)buf, len,
					  (u16)(VRING_D_NEXT | (write ? 0 : VRING_D_WRITE)), 2 };
	vq.desc[2] = (struct vring_desc){ (u64)&req_status, 1, VRING_D_WRITE, 0 };
	return submit();
}

u8 vblk_discard(u64 sector, u32 sectors)
{
	req = (__typeof__(req)){ .type = 11 };
	discard_range.sector = sector;
	discard_range.num = sectors;
	discard_range.flags = 0;
	req_status = 0xee;
	vq.desc[0] = (struct vring_desc){ (u64)&req, sizeof(req), VRING_D_NEXT, 1 };
	vq.desc[1] =
		(struct vring_desc){ (u64)&discard_range, sizeof(discard_range), VRING_D_NEXT, 2 };
	vq.desc[2] = (struct vring_desc){ (u64)&req_status, 1, VRING_D_WRITE, 0 };
	return submit();
}

u8 vblk_flush(void)
{
	req = (__typeof__(req)){ .type = 4 };
	req_status = 0xee;
	vq.desc[0] = (struct vring_desc){ (u64)&req, sizeof(req), VRING_D_NEXT, 1 };
	vq.desc[1] = (struct vring_desc){ (u64)&req_status, 1, VRING_D_WRITE, 0 };
	return submit();
}

u8 vblk_rw_many(bool write, const u64 *sector, u8 *const *buf, u32 len, u32 n)
{
	u8 st = 0;

	for (u32 i = 0; i < n; i++) {
		reqs[i] = (__typeof__(reqs[i])){ .type = write ? 1 : 0, .sector = sector[i] };
		statuses[i] = 0xee;
		vq.desc[3 * i] = (struct vring_desc){ (u64)&reqs[i], sizeof(reqs[i]), VRING_D_NEXT,
						      (u16)(3 * i + 1) };
		vq.desc[3 * i + 1] =
			(struct vring_desc){ (u64)buf[i], len,
					     (u16)(VRING_D_NEXT | (write ? 0 : VRING_D_WRITE)),
					     (u16)(3 * i + 2) };
		vq.desc[3 * i + 2] = (struct vring_desc){ (u64)&statuses[i], 1, VRING_D_WRITE, 0 };
		vq_post(&vq, (u16)(3 * i));
	}
	if (vq_kick_wait(&vq, (u16)n))
		return 0xff;
	for (u32 i = 0; i < n && !st; i++)
		st = statuses[i];
	return st;
}

void vblk_quiet(bool quiet)
{
	vq.avail.flags = quiet ? 1 : 0; /* VIRTQ_AVAIL_F_NO_INTERRUPT (no event index here) */
}

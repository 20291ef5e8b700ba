/* vblk.c — a polled virtio-blk driver for ring 3 (virtio 1.x over MMIO through vmmio.c,
 * one queue of VQ_SIZE, one request at a time). */
#include "selfcheck.h"

#define F_RO	     (1u << 5)
#define F_DISCARD    (1u << 13)
#define BAD_QUEUE_AT (1UL << 46) /* far beyond any RAM */

static struct vq vq;
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

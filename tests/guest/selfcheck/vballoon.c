/* vballoon.c — a polled virtio-balloon driver for ring 3 (virtio 1.x over MMIO, vmmio.c):
 * the inflate and deflate queues, and the free-page reporting queue when the device offers
 * it. The device is found by scanning the virtio slots for device ID 5. */
#include "selfcheck.h"

#define ID_BALLOON	 5
#define F_PAGE_REPORTING (1u << 5)
#define Q_INFLATE	 0
#define Q_DEFLATE	 1
#define Q_REPORT	 2 /* the next queue: no statistics or free-page-hint queue */

static struct vq vq[3];
static u64 base;

int vballoon_init(bool want_report, bool *reporting)
{
	u32 feat;

	base = vmmio_find_base(ID_BALLOON);
	if (!base) {
		con_printf("ERROR balloon: no virtio-balloon among %u virtio devices\n",
			   cfg.virtio_count);
		return -1;
	}
	if (vmmio_start(base, ID_BALLOON, want_report ? F_PAGE_REPORTING : 0, &feat, "balloon"))
		return -1;
	*reporting = feat & F_PAGE_REPORTING;
	for (u32 q = 0; q < (*reporting ? 3u : 2u); q++)
		if (vq_setup(base, &vq[q], q, 0, "balloon"))
			return -1;
	vmmio_driver_ok(base);
	return 0;
}

u32 vballoon_status(void)
{
	return vmmio_rd(base, VMMIO_STATUS);
}

u32 vballoon_target(u32 *gen)
{
	u32 before, target;

	do {
		before = vmmio_rd(base, VMMIO_CONFIG_GEN);
		target = vmmio_rd(base, VMMIO_CONFIG); /* num_pages */
		*gen = vmmio_rd(base, VMMIO_CONFIG_GEN);
	} while (*gen != before);
	return target;
}

void vballoon_set_actual(u32 pages)
{
	vmmio_wr(base, VMMIO_CONFIG + 4, pages);
}

int vballoon_give(bool inflate, const u32 *pfn, u32 n)
{
	struct vq *q = &vq[inflate ? Q_INFLATE : Q_DEFLATE];

	q->desc[0] = (struct vring_desc){ (u64)pfn, n * 4, 0, 0 };
	return vq_submit(q);
}

int vballoon_report(u64 gpa, u64 len)
{
	vq[Q_REPORT].desc[0] = (struct vring_desc){ gpa, (u32)len, VRING_D_WRITE, 0 };
	return vq_submit(&vq[Q_REPORT]);
}

/* vnet.c — a polled virtio-net driver for ring 3 (virtio 1.x over MMIO through vmmio.c):
 * the receive queue (0) and the transmit queue (1) have QN descriptors each and SLOTS
 * buffers of BUF bytes in .bss (virtual = physical). Every receive buffer is two
 * descriptors, split inside the frame, and every other transmit buffer is too, so the
 * device's chain walking and header handling are exercised. Event index both ways: the
 * device is notified only when it asked to be, and interrupts only for received frames.
 * Buffers come back in the order they went (the device completes in order; checked). */
#include "selfcheck.h"

#define QN	     256
#define SLOTS	     (QN / 2) /* buffers per queue: up to two descriptors each */
#define BUF	     1536     /* the header and a 1514-byte frame: the image stays below 2 MiB */
#define HDR	     12	      /* virtio_net_hdr_v1, num_buffers included */
#define RX_SPLIT     268      /* the first receive descriptor: the header and 256 frame bytes */
#define F_MAC	     (1u << 5)
#define BAD_QUEUE_AT (1UL << 46) /* far beyond any RAM */

struct netq {
	struct vring_desc desc[QN] __attribute__((aligned(16)));
	volatile struct {
		u16 flags, idx, ring[QN], used_event;
	} avail __attribute__((aligned(2)));
	volatile struct {
		u16 flags, idx;
		struct {
			u32 id, len;
		} ring[QN];
		u16 avail_event;
	} used __attribute__((aligned(4)));
	u16 next_avail; /* buffers made available so far */
	u16 seen_used;	/* used entries taken back so far */
	u16 told;	/* next_avail when the device was last considered for a notification */
};

static struct netq rxq, txq;
static u8 rx_buf[SLOTS][BUF] __attribute__((aligned(64)));
static u8 tx_buf[SLOTS][BUF] __attribute__((aligned(64)));
static u64 base;

/* Publish one more available buffer (head). */
static void make_available(struct netq *q, u16 head)
{
	q->avail.ring[q->next_avail % QN] = head;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	q->avail.idx = ++q->next_avail;
}

/* Notify the device if it asked for it: its avail_event lies among the buffers made
 * available since we last looked. Once per batch of buffers, as drivers do. */
static void kick(struct netq *q, u32 qi)
{
	u16 now = q->next_avail;

	__atomic_thread_fence(__ATOMIC_SEQ_CST); /* the index before reading the device's wish */
	if ((u16)(now - q->used.avail_event - 1) < (u16)(now - q->told))
		vmmio_wr(base, VMMIO_NOTIFY, qi);
	q->told = now;
}

static void rx_post(u32 slot)
{
	rxq.desc[2 * slot] =
		(struct vring_desc){ (u64)rx_buf[slot], RX_SPLIT, VRING_D_NEXT | VRING_D_WRITE,
				     (u16)(2 * slot + 1) };
	rxq.desc[2 * slot + 1] = (struct vring_desc){ (u64)rx_buf[slot] + RX_SPLIT, BUF - RX_SPLIT,
						      VRING_D_WRITE, 0 };
	make_available(&rxq, (u16)(2 * slot));
}

int vnet_init(u64 at, bool bad_queue, u8 *mac)
{
	u32 feat;

	base = at;
	if (vmmio_start(base, VIRTIO_ID_NET, F_MAC | VRING_F_EVENT_IDX, &feat, "net"))
		return -1;
	if (!(feat & F_MAC) || !(feat & VRING_F_EVENT_IDX)) {
		con_printf("ERROR net: the device offers no MAC or no event index (0x%x)\n", feat);
		return -1;
	}
	if (vmmio_queue(base, 0, QN, bad_queue ? BAD_QUEUE_AT : (u64)rxq.desc, (u64)&rxq.avail,
			(u64)&rxq.used, "net") ||
	    vmmio_queue(base, 1, QN, (u64)txq.desc, (u64)&txq.avail, (u64)&txq.used, "net"))
		return -1;
	for (u32 i = 0; i < MAC_LEN; i++)
		mac[i] = ((volatile u8 *)base)[VMMIO_CONFIG + i];
	txq.avail.used_event = 0xffff; /* no interrupt for sent frames (moved on as they go) */
	vmmio_driver_ok(base);
	for (u32 i = 0; i < SLOTS && !bad_queue; i++)
		rx_post(i);
	kick(&rxq, 0);
	return 0;
}

u32 vnet_status(void)
{
	return vmmio_rd(base, VMMIO_STATUS);
}

/* Take back what the device has sent; complain when it completes out of order. */
static void tx_reclaim(void)
{
	u16 want;

	while (txq.used.idx != txq.seen_used) {
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		want = (u16)(2 * (txq.seen_used % SLOTS));
		if (txq.used.ring[txq.seen_used % QN].id != want) {
			con_printf("ERROR net: transmit buffer %u completed before %u\n",
				   txq.used.ring[txq.seen_used % QN].id, want);
			guest_exit(EXIT_BADARG);
		}
		txq.seen_used++;
	}
	txq.avail.used_event = (u16)(txq.seen_used - 1); /* behind: no interrupt */
}

u8 *vnet_tx_slot(void)
{
	tx_reclaim();
	if ((u16)(txq.next_avail - txq.seen_used) == SLOTS)
		return NULL;
	return tx_buf[txq.next_avail % SLOTS] + HDR;
}

void vnet_tx_post(u32 len)
{
	u32 slot = txq.next_avail % SLOTS;
	u8 *b = tx_buf[slot];

	memset(b, 0, HDR);	  /* no offloads: flags, gso_type and the rest 0 */
	if (txq.next_avail & 1) { /* header and frame in one descriptor */
		txq.desc[2 * slot] = (struct vring_desc){ (u64)b, HDR + len, 0, 0 };
	} else {
		txq.desc[2 * slot] =
			(struct vring_desc){ (u64)b, HDR, VRING_D_NEXT, (u16)(2 * slot + 1) };
		txq.desc[2 * slot + 1] = (struct vring_desc){ (u64)b + HDR, len, 0, 0 };
	}
	make_available(&txq, (u16)(2 * slot));
}

bool vnet_tx_idle(void)
{
	tx_reclaim();
	return txq.seen_used == txq.next_avail;
}

const u8 *vnet_rx_next(u32 *len)
{
	u16 at = rxq.seen_used;
	u32 id, got, slot;

	if (rxq.used.idx == at)
		return NULL;
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	id = rxq.used.ring[at % QN].id;
	got = rxq.used.ring[at % QN].len;
	slot = id / 2;
	if (id % 2 || slot >= SLOTS || got < HDR || got > BUF || rx_buf[slot][10] != 1 ||
	    slot != at % SLOTS) {
		con_printf("ERROR net: bad receive completion id=%u len=%u num_buffers=%u\n", id,
			   got, slot < SLOTS ? rx_buf[slot][10] : 0);
		guest_exit(EXIT_BADARG);
	}
	*len = got - HDR;
	return rx_buf[slot] + HDR;
}

void vnet_rx_release(void)
{
	u32 slot = rxq.seen_used % SLOTS;

	rxq.seen_used++;
	rxq.avail.used_event = rxq.seen_used; /* interrupt for the next frame */
	rx_post(slot);
}

void vnet_kick(void)
{
	kick(&rxq, 0);
	kick(&txq, 1);
}

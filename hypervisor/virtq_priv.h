/* Private to hypervisor/: virtio 1.x split virtqueues, the device side.
 *
 * The guest owns the three rings (descriptor table, available ring, used ring) in its RAM;
 * every value read from them is untrusted. A chain is refused — and the queue marked
 * broken, which the transport turns into DEVICE_NEEDS_RESET — when a ring or a buffer is
 * not wholly inside guest RAM, a descriptor index is out of range, a chain is longer than
 * the queue (a loop), an indirect table is malformed, or a device-readable descriptor
 * follows a device-writable one. Nothing outside guest RAM is ever read or written.
 *
 * Guest RAM is reached through struct virtq_mem, so this file runs on a plain buffer in
 * the unit tests; every write into guest RAM (used ring, the device's data) is reported to
 * mem->dirty, so live migration sends those pages again (KVM's dirty log sees only the
 * guest's own writes).
 *
 * Event index (VIRTIO_F_EVENT_IDX) is supported both ways: the device publishes
 * avail_event and notifies the guest only when used_event says so.
 *
 * Ordering: the available index is read before the entries it covers (acquire); the used
 * entries are written before the used index (release). One thread handles a queue at a
 * time (the device's I/O thread). */
#ifndef CME_VIRTQ_PRIV_H
#define CME_VIRTQ_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common.h"

#define VIRTQ_MAX_SIZE 32768
#define VIRTQ_MAX_SEGS 64 /* buffers in one chain (direct or indirect) */

#define VIRTQ_DESC_F_NEXT	   1
#define VIRTQ_DESC_F_WRITE	   2
#define VIRTQ_DESC_F_INDIRECT	   4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY	   1

/* Guest RAM as the queue sees it. */
struct virtq_mem {
	/* Host pointer for [gpa, gpa + len) when it lies wholly in RAM, else NULL. */
	void *(*map)(void *opaque, uint64_t gpa, uint64_t len);
	/* The device wrote [gpa, gpa + len) (may be NULL). */
	void (*dirty)(void *opaque, uint64_t gpa, uint64_t len);
	void *opaque;
};

struct virtq {
	uint16_t num;		    /* size: a power of two, 1..VIRTQ_MAX_SIZE */
	uint64_t desc, avail, used; /* guest-physical addresses of the rings */
	bool event_idx;		    /* VIRTIO_F_EVENT_IDX negotiated */
	bool ready;
	bool broken;	     /* a malformed ring or chain was seen: no more processing */
	uint16_t last_avail; /* the next available entry to take */
	uint16_t used_idx;   /* the used index as last published */
	uint16_t signalled;  /* the used index at the last interrupt */
	bool signal_valid;   /* signalled means something (false after a reset) */
};

/* One buffer of a chain, mapped. */
struct virtq_seg {
	uint8_t *p;
	uint64_t gpa;
	uint32_t len;
	bool write; /* device-writable */
};

/* A chain taken from the available ring: readable buffers first, then writable ones. */
struct virtq_chain {
	uint16_t head;
	unsigned nseg, nread; /* segs[0..nread) readable, segs[nread..nseg) writable */
	uint64_t read_len, write_len;
	struct virtq_seg seg[VIRTQ_MAX_SEGS];
};

/* Back to the reset state (no rings, not ready, not broken). */
void virtq_reset(struct virtq *q);
/* Check the rings' addresses and size before the queue goes ready: sizes a power of two,
 * rings aligned (16, 2, 4) and wholly in RAM. 0 or -EINVAL with the reason. */
int virtq_validate(const struct virtq *q, const struct virtq_mem *m, char *why, size_t len);
/* Take the next available chain. Returns 1 with *c filled, 0 when none is available,
 * -EINVAL when the ring or the chain is malformed (q->broken is set, why says what). */
int virtq_pop(struct virtq *q, const struct virtq_mem *m, struct virtq_chain *c, char *why,
	      size_t whylen);
/* Give back the chain virtq_pop just took, unused: the next virtq_pop takes it again (a
 * device that finds it cannot use the chain yet: no frame to receive, a rate limit). */
void virtq_unpop(struct virtq *q);
/* Return chain head with len bytes written into its writable buffers. 0 or -EINVAL. */
int virtq_push(struct virtq *q, const struct virtq_mem *m, uint16_t head, uint32_t len);
/* After pushes: true when the guest asked to be interrupted (used_event or the ring's
 * NO_INTERRUPT flag); remembers what was signalled. */
bool virtq_need_irq(struct virtq *q, const struct virtq_mem *m);
/* Tell the guest up to where it need not notify: avail_event = last_avail (event index),
 * then check again; true when more chains came meanwhile (process them before sleeping). */
bool virtq_arm_notify(struct virtq *q, const struct virtq_mem *m);
/* The device polls the queue (true) or will sleep until notified (false): without event
 * index, the used ring's NO_NOTIFY flag tells the driver it need not notify meanwhile
 * (with event index, avail_event already says when to). Look at virtq_pending after
 * clearing it: a chain made available just before is not notified. */
void virtq_polling(struct virtq *q, const struct virtq_mem *m, bool polling);
/* The driver has made chains available that the device has not taken yet. */
bool virtq_pending(const struct virtq *q, const struct virtq_mem *m);

/* The chain's readable (writable false) or writable buffers from byte off on, at most len
 * bytes of them, as iovecs into iov (room for VIRTQ_MAX_SEGS). Returns their count. Writes
 * through them are the caller's to report (virtq_written). */
unsigned virtq_iov(const struct virtq_chain *c, bool writable, uint64_t off, uint64_t len,
		   struct iovec *iov);
/* Copy between a chain's buffers and a flat buffer: from the readable buffers starting at
 * byte off, or into the writable ones (marking them dirty). Return the bytes copied. */
size_t virtq_read(const struct virtq_chain *c, uint64_t off, void *dst, size_t len);
size_t virtq_write(const struct virtq_chain *c, const struct virtq_mem *m, uint64_t off,
		   const void *src, size_t len);
/* The device wrote len bytes into the writable buffers from off itself (readv): mark
 * them dirty. Returns the bytes marked. */
size_t virtq_written(const struct virtq_chain *c, const struct virtq_mem *m, uint64_t off,
		     size_t len);

#endif

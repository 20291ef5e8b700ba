/* Split virtqueues, the device side (virtio 1.x, section 2.7). What is checked and why is
 * in virtq_priv.h. x86 only: the rings are little-endian, as the host. */
#include "virtq_priv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define DESC_SIZE 16
#define USED_ELEM 8

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

static size_t avail_bytes(uint16_t num)
{
	return 6 + 2 * (size_t)num; /* flags, idx, ring[num], used_event */
}

static size_t used_bytes(uint16_t num)
{
	return 6 + USED_ELEM * (size_t)num; /* flags, idx, ring[num], avail_event */
}

static uint16_t ld16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static void st16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, sizeof(v));
}

static void dirty(const struct virtq_mem *m, uint64_t gpa, uint64_t len)
{
	if (m->dirty && len)
		m->dirty(m->opaque, gpa, len);
}

static int broken(struct virtq *q, char *why, size_t len, const char *fmt, unsigned a)
{
	q->broken = true;
	if (why && len)
		snprintf(why, len, fmt, a);
	return -EINVAL;
}

void virtq_reset(struct virtq *q)
{
	memset(q, 0, sizeof(*q));
}

int virtq_validate(const struct virtq *q, const struct virtq_mem *m, char *why, size_t len)
{
	const char *bad = NULL;

	if (!q->num || q->num > VIRTQ_MAX_SIZE || (q->num & (q->num - 1)))
		bad = "queue size is not a power of two up to 32768";
	else if ((q->desc & 15) || (q->avail & 1) || (q->used & 3))
		bad = "a ring is misaligned (descriptors 16, available 2, used 4 bytes)";
	else if (!m->map(m->opaque, q->desc, (uint64_t)DESC_SIZE * q->num))
		bad = "the descriptor table is outside guest RAM";
	else if (!m->map(m->opaque, q->avail, avail_bytes(q->num)))
		bad = "the available ring is outside guest RAM";
	else if (!m->map(m->opaque, q->used, used_bytes(q->num)))
		bad = "the used ring is outside guest RAM";
	if (bad && why && len)
		snprintf(why, len, "%s", bad);
	return bad ? -EINVAL : 0;
}

/* One descriptor, copied once: the guest may change the table while we look. */
static struct desc desc_at(const uint8_t *table, unsigned i)
{
	struct desc d;

	memcpy(&d.addr, table + (size_t)i * DESC_SIZE, 8);
	memcpy(&d.len, table + (size_t)i * DESC_SIZE + 8, 4);
	d.flags = ld16(table + (size_t)i * DESC_SIZE + 12);
	d.next = ld16(table + (size_t)i * DESC_SIZE + 14);
	return d;
}

static int add_seg(struct virtq *q, const struct virtq_mem *m, struct virtq_chain *c,
		   const struct desc *d, char *why, size_t len)
{
	struct virtq_seg *s;
	bool write = d->flags & VIRTQ_DESC_F_WRITE;

	if (c->nseg == VIRTQ_MAX_SEGS)
		return broken(q, why, len, "a chain has more than %u buffers", VIRTQ_MAX_SEGS);
	if (!write && c->nseg > c->nread)
		return broken(q, why, len, "descriptor %u: readable after writable", c->nseg);
	s = &c->seg[c->nseg];
	s->p = m->map(m->opaque, d->addr, d->len);
	if (!s->p)
		return broken(q, why, len, "descriptor %u: buffer outside guest RAM", c->nseg);
	s->gpa = d->addr;
	s->len = d->len;
	s->write = write;
	c->nseg++;
	if (write)
		c->write_len += d->len;
	else {
		c->nread++;
		c->read_len += d->len;
	}
	return 0;
}

/* The table an indirect descriptor points at, or NULL (q broken). */
static const uint8_t *indirect_table(struct virtq *q, const struct virtq_mem *m,
				     const struct desc *d, unsigned *n, char *why, size_t len)
{
	const uint8_t *t;

	if (d->flags & VIRTQ_DESC_F_NEXT) {
		broken(q, why, len, "an indirect descriptor with NEXT set (%u)", d->flags);
		return NULL;
	}
	if (!d->len || d->len % DESC_SIZE || d->len / DESC_SIZE > VIRTQ_MAX_SIZE) {
		broken(q, why, len, "an indirect table of %u bytes", d->len);
		return NULL;
	}
	t = m->map(m->opaque, d->addr, d->len);
	if (!t)
		broken(q, why, len, "an indirect table outside guest RAM (%u bytes)", d->len);
	*n = d->len / DESC_SIZE;
	return t;
}

/* Walk the chain from head (the descriptor table has q->num entries). */
static int walk(struct virtq *q, const struct virtq_mem *m, uint16_t head, struct virtq_chain *c,
		char *why, size_t len)
{
	const uint8_t *table = m->map(m->opaque, q->desc, (uint64_t)DESC_SIZE * q->num);
	unsigned n = q->num, i = head, steps = 0;
	bool indirect = false;

	if (!table)
		return broken(q, why, len, "the descriptor table left guest RAM (%u)", q->num);
	for (;;) {
		struct desc d;

		if (i >= n)
			return broken(q, why, len, "descriptor index %u out of range", i);
		if (steps++ >= n)
			return broken(q, why, len, "a descriptor chain loops (over %u steps)", n);
		d = desc_at(table, i);
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if (indirect)
				return broken(q, why, len,
					      "an indirect descriptor in an indirect "
					      "table (%u)",
					      i);
			table = indirect_table(q, m, &d, &n, why, len);
			if (!table)
				return -EINVAL;
			indirect = true;
			i = steps = 0;
			continue;
		}
		if (add_seg(q, m, c, &d, why, len))
			return -EINVAL;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		i = d.next;
	}
}

int virtq_pop(struct virtq *q, const struct virtq_mem *m, struct virtq_chain *c, char *why,
	      size_t whylen)
{
	uint8_t *avail;
	uint16_t idx, head;

	if (q->broken)
		return -EINVAL;
	if (!q->ready)
		return 0;
	avail = m->map(m->opaque, q->avail, avail_bytes(q->num));
	if (!avail)
		return broken(q, why, whylen, "the available ring left guest RAM (%u)", q->num);
	idx = __atomic_load_n((uint16_t *)(avail + 2), __ATOMIC_ACQUIRE);
	if ((uint16_t)(idx - q->last_avail) > q->num)
		return broken(q, why, whylen, "the available index ran %u entries ahead",
			      (uint16_t)(idx - q->last_avail));
	if (idx == q->last_avail)
		return 0;
	head = ld16(avail + 4 + 2 * (size_t)(q->last_avail % q->num));
	memset(c, 0, offsetof(struct virtq_chain, seg));
	c->head = head;
	if (walk(q, m, head, c, why, whylen))
		return -EINVAL;
	q->last_avail++;
	return 1;
}

void virtq_unpop(struct virtq *q)
{
	q->last_avail--;
}

int virtq_push(struct virtq *q, const struct virtq_mem *m, uint16_t head, uint32_t len)
{
	uint8_t *used = m->map(m->opaque, q->used, used_bytes(q->num));
	size_t slot = q->used_idx % q->num;
	uint32_t id = head;

	if (!used || q->broken)
		return -EINVAL;
	memcpy(used + 4 + USED_ELEM * slot, &id, 4);
	memcpy(used + 8 + USED_ELEM * slot, &len, 4);
	q->used_idx++;
	__atomic_store_n((uint16_t *)(used + 2), q->used_idx, __ATOMIC_RELEASE);
	dirty(m, q->used + 4 + USED_ELEM * slot, USED_ELEM);
	dirty(m, q->used + 2, 2);
	return 0;
}

bool virtq_need_irq(struct virtq *q, const struct virtq_mem *m)
{
	const uint8_t *avail = m->map(m->opaque, q->avail, avail_bytes(q->num));
	uint16_t old = q->signalled, now = q->used_idx, event;
	bool need;

	if (!avail)
		return false;
	__atomic_thread_fence(__ATOMIC_SEQ_CST); /* the used index before the guest's wish */
	if (!q->event_idx) {
		need = !(ld16(avail) & VIRTQ_AVAIL_F_NO_INTERRUPT);
	} else {
		event = ld16(avail + 4 + 2 * (size_t)q->num);
		/* vring_need_event: did the index step over used_event since the last one? */
		need = !q->signal_valid || (uint16_t)(now - event - 1) < (uint16_t)(now - old);
	}
	if (now == old && q->signal_valid)
		need = false; /* nothing new */
	q->signalled = now;
	q->signal_valid = true;
	return need;
}

bool virtq_arm_notify(struct virtq *q, const struct virtq_mem *m)
{
	uint8_t *used = m->map(m->opaque, q->used, used_bytes(q->num));
	const uint8_t *avail = m->map(m->opaque, q->avail, avail_bytes(q->num));

	if (!used || !avail || q->broken)
		return false;
	if (q->event_idx) {
		st16(used + 4 + USED_ELEM * (size_t)q->num, q->last_avail);
		dirty(m, q->used + 4 + USED_ELEM * (uint64_t)q->num, 2);
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST); /* publish, then look again */
	return __atomic_load_n((const uint16_t *)(avail + 2), __ATOMIC_ACQUIRE) != q->last_avail;
}

void virtq_polling(struct virtq *q, const struct virtq_mem *m, bool polling)
{
	uint8_t *used = q->ready && !q->broken && !q->event_idx
				? m->map(m->opaque, q->used, used_bytes(q->num))
				: NULL;

	if (!used)
		return;
	st16(used, polling ? VIRTQ_USED_F_NO_NOTIFY : 0);
	dirty(m, q->used, 2);
	__atomic_thread_fence(__ATOMIC_SEQ_CST); /* the flag out before we look at avail */
}

bool virtq_pending(const struct virtq *q, const struct virtq_mem *m)
{
	const uint8_t *avail =
		q->ready && !q->broken ? m->map(m->opaque, q->avail, avail_bytes(q->num)) : NULL;

	return avail &&
	       __atomic_load_n((const uint16_t *)(avail + 2), __ATOMIC_ACQUIRE) != q->last_avail;
}

unsigned virtq_iov(const struct virtq_chain *c, bool writable, uint64_t off, uint64_t len,
		   struct iovec *iov)
{
	unsigned from = writable ? c->nread : 0, to = writable ? c->nseg : c->nread, n = 0;

	for (unsigned i = from; i < to && len; i++) {
		const struct virtq_seg *s = &c->seg[i];
		uint64_t take;

		if (off >= s->len) {
			off -= s->len;
			continue;
		}
		take = s->len - off < len ? s->len - off : len;
		iov[n++] = (struct iovec){ s->p + off, take };
		len -= take;
		off = 0;
	}
	return n;
}

/* Copy between buf and the chain's readable (to_chain false) or writable (true) buffers,
 * from byte off of them; writes into guest RAM are reported dirty. */
static size_t chain_copy(const struct virtq_chain *c, const struct virtq_mem *m, bool to_chain,
			 uint64_t off, uint8_t *buf, size_t len)
{
	unsigned from = to_chain ? c->nread : 0, to = to_chain ? c->nseg : c->nread;
	size_t done = 0;

	for (unsigned i = from; i < to && done < len; i++) {
		const struct virtq_seg *s = &c->seg[i];
		size_t n;

		if (off >= s->len) {
			off -= s->len;
			continue;
		}
		n = s->len - off < len - done ? s->len - off : len - done;
		if (to_chain) {
			if (buf)
				memcpy(s->p + off, buf + done, n);
			dirty(m, s->gpa + off, n);
		} else {
			memcpy(buf + done, s->p + off, n);
		}
		done += n;
		off = 0;
	}
	return done;
}

size_t virtq_read(const struct virtq_chain *c, uint64_t off, void *dst, size_t len)
{
	return chain_copy(c, NULL, false, off, dst, len);
}

size_t virtq_write(const struct virtq_chain *c, const struct virtq_mem *m, uint64_t off,
		   const void *src, size_t len)
{
	return chain_copy(c, m, true, off, (uint8_t *)src, len);
}

size_t virtq_written(const struct virtq_chain *c, const struct virtq_mem *m, uint64_t off,
		     size_t len)
{
	return chain_copy(c, m, true, off, NULL, len);
}

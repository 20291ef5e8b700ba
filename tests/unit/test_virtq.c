/* Split virtqueues, the device side, on a plain buffer as guest RAM: chains as a driver
 * builds them, and every malformed ring the device must refuse without touching anything
 * outside RAM. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "unit.h"
#include "virtq_priv.h"

#define RAM   (1u << 20)
#define DESC  0x1000
#define AVAIL 0x2000
#define USED  0x3000
#define QNUM  8

static uint8_t *ram;
static uint64_t dirty_lo, dirty_hi; /* the span the device reported written */

static void *map(void *opaque, uint64_t gpa, uint64_t len)
{
	(void)opaque;
	return gpa <= RAM && len <= RAM - gpa ? ram + gpa : NULL;
}

static void mark(void *opaque, uint64_t gpa, uint64_t len)
{
	(void)opaque;
	if (gpa < dirty_lo)
		dirty_lo = gpa;
	if (gpa + len > dirty_hi)
		dirty_hi = gpa + len;
}

static const struct virtq_mem mem = { map, mark, NULL };

static struct virtq setup(bool event_idx)
{
	struct virtq q;

	if (!ram)
		ram = malloc(RAM);
	memset(ram, 0, RAM);
	dirty_lo = UINT64_MAX;
	dirty_hi = 0;
	virtq_reset(&q);
	q.num = QNUM;
	q.desc = DESC;
	q.avail = AVAIL;
	q.used = USED;
	q.event_idx = event_idx;
	q.ready = true;
	return q;
}

static void put_desc(uint64_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	uint8_t *d = ram + table + 16 * i;

	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

/* The driver makes head available (entry idx of the ring) and moves the index to idx + 1. */
static void offer(uint16_t idx, uint16_t head)
{
	uint16_t next = idx + 1;

	memcpy(ram + AVAIL + 4 + 2 * (idx % QNUM), &head, 2);
	memcpy(ram + AVAIL + 2, &next, 2);
}

static uint16_t ld16(uint64_t gpa)
{
	uint16_t v;

	memcpy(&v, ram + gpa, 2);
	return v;
}

static uint32_t ld32(uint64_t gpa)
{
	uint32_t v;

	memcpy(&v, ram + gpa, 4);
	return v;
}

/* A block request's shape: header (read), data (write), status (write). */
static void test_chain_roundtrip(void)
{
	struct virtq q = setup(false);
	struct virtq_chain c;
	char why[128], hdr[16], data[512];
	uint8_t st = 0;

	CU_ASSERT_EQUAL(virtq_validate(&q, &mem, why, sizeof(why)), 0);
	CU_ASSERT_EQUAL(virtq_pop(&q, &mem, &c, why, sizeof(why)), 0); /* nothing yet */
	memcpy(ram + 0x10000, "HEADER-16-BYTES!", 16);
	put_desc(DESC, 0, 0x10000, 16, VIRTQ_DESC_F_NEXT, 5);
	put_desc(DESC, 5, 0x20000, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	put_desc(DESC, 2, 0x30000, 1, VIRTQ_DESC_F_WRITE, 0);
	offer(0, 0);
	CU_ASSERT_EQUAL_FATAL(virtq_pop(&q, &mem, &c, why, sizeof(why)), 1);
	CU_ASSERT_EQUAL(c.head, 0);
	CU_ASSERT_EQUAL(c.nseg, 3);
	CU_ASSERT_EQUAL(c.nread, 1);
	CU_ASSERT_EQUAL(c.read_len, 16);
	CU_ASSERT_EQUAL(c.write_len, 513);
	CU_ASSERT_EQUAL(virtq_read(&c, 0, hdr, sizeof(hdr)), 16);
	CU_ASSERT_EQUAL(memcmp(hdr, "HEADER-16-BYTES!", 16), 0);
	memset(data, 0xab, sizeof(data));
	CU_ASSERT_EQUAL(virtq_write(&c, &mem, 0, data, sizeof(data)), 512);
	CU_ASSERT_EQUAL(virtq_write(&c, &mem, 512, &st, 1), 1);
	CU_ASSERT_EQUAL(ram[0x20000 + 511], 0xab);
	CU_ASSERT_EQUAL(ram[0x30000], 0);
	CU_ASSERT_EQUAL(virtq_write(&c, &mem, 513, &st, 1), 0); /* past the last buffer */
	dirty_lo = UINT64_MAX; /* bytes the device put there itself (preadv) are marked too */
	dirty_hi = 0;
	CU_ASSERT_EQUAL(virtq_written(&c, &mem, 100, 500), 413);
	CU_ASSERT(dirty_lo == 0x20000 + 100 && dirty_hi == 0x30000 + 1);
	CU_ASSERT_EQUAL(ram[0x20000 + 100], 0xab); /* and left as they were */
	CU_ASSERT_EQUAL(virtq_push(&q, &mem, c.head, 513), 0);
	CU_ASSERT_EQUAL(ld16(USED + 2), 1);			 /* used idx */
	CU_ASSERT_EQUAL(ld32(USED + 4), 0);			 /* id */
	CU_ASSERT_EQUAL(ld32(USED + 8), 513);			 /* len */
	CU_ASSERT(dirty_lo <= 0x20000 && dirty_hi >= USED + 12); /* data and used ring */
	CU_ASSERT_EQUAL(virtq_pop(&q, &mem, &c, why, sizeof(why)), 0);
	CU_ASSERT_FALSE(q.broken);
}

/* The rings wrap: 3 * QNUM requests, one at a time. */
static void test_wraps(void)
{
	struct virtq q = setup(false);
	struct virtq_chain c;
	char why[128];

	for (unsigned i = 0; i < 3 * QNUM; i++) {
		put_desc(DESC, i % QNUM, 0x10000, 8, 0, 0);
		offer((uint16_t)i, (uint16_t)(i % QNUM));
		CU_ASSERT_EQUAL_FATAL(virtq_pop(&q, &mem, &c, why, sizeof(why)), 1);
		CU_ASSERT_EQUAL(c.head, i % QNUM);
		CU_ASSERT_EQUAL(virtq_push(&q, &mem, c.head, 0), 0);
	}
	CU_ASSERT_EQUAL(ld16(USED + 2), 3 * QNUM);
}

static void test_indirect(void)
{
	struct virtq q = setup(false);
	struct virtq_chain c;
	char why[128];

	put_desc(0x40000, 0, 0x10000, 16, VIRTQ_DESC_F_NEXT, 1);
	put_desc(0x40000, 1, 0x20000, 4096, VIRTQ_DESC_F_WRITE, 0);
	put_desc(DESC, 3, 0x40000, 32, VIRTQ_DESC_F_INDIRECT, 0);
	offer(0, 3);
	CU_ASSERT_EQUAL_FATAL(virtq_pop(&q, &mem, &c, why, sizeof(why)), 1);
	CU_ASSERT_EQUAL(c.head, 3);
	CU_ASSERT_EQUAL(c.nseg, 2);
	CU_ASSERT_EQUAL(c.write_len, 4096);
}

/* Build one bad ring with fn, pop: refused, broken, the reason contains what. */
static void refused(void (*fn)(struct virtq *q), const char *what)
{
	struct virtq q = setup(false);
	struct virtq_chain c;
	char why[128] = "";

	fn(&q);
	CU_ASSERT_EQUAL(virtq_pop(&q, &mem, &c, why, sizeof(why)), -EINVAL);
	CU_ASSERT_TRUE(q.broken);
	if (!strstr(why, what))
		printf("\n    expected \"%s\", got \"%s\"\n", what, why);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, what));
	CU_ASSERT_EQUAL(virtq_pop(&q, &mem, &c, why, sizeof(why)), -EINVAL); /* stays broken */
	CU_ASSERT_EQUAL(virtq_push(&q, &mem, 0, 0), -EINVAL);
}

static void bad_loop(struct virtq *q)
{
	(void)q;
	put_desc(DESC, 0, 0x10000, 8, VIRTQ_DESC_F_NEXT, 1);
	put_desc(DESC, 1, 0x10000, 8, VIRTQ_DESC_F_NEXT, 0);
	offer(0, 0);
}

static void bad_index(struct virtq *q)
{
	(void)q;
	put_desc(DESC, 0, 0x10000, 8, VIRTQ_DESC_F_NEXT, QNUM);
	offer(0, 0);
}

static void bad_head(struct virtq *q)
{
	(void)q;
	offer(0, QNUM + 3);
}

static void bad_addr(struct virtq *q)
{
	(void)q;
	put_desc(DESC, 0, RAM - 4, 8, 0, 0); /* straddles the end of RAM */
	offer(0, 0);
}

static void bad_wrap_addr(struct virtq *q)
{
	(void)q;
	put_desc(DESC, 0, UINT64_MAX - 2, 8, 0, 0); /* gpa + len overflows */
	offer(0, 0);
}

static void bad_order(struct virtq *q)
{
	(void)q;
	put_desc(DESC, 0, 0x10000, 8, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	put_desc(DESC, 1, 0x10000, 8, 0, 0);
	offer(0, 0);
}

static void bad_avail_idx(struct virtq *q)
{
	uint16_t idx = QNUM + 1;

	(void)q;
	memcpy(ram + AVAIL + 2, &idx, 2);
}

static void bad_nested_indirect(struct virtq *q)
{
	(void)q;
	put_desc(0x40000, 0, 0x50000, 16, VIRTQ_DESC_F_INDIRECT, 0);
	put_desc(DESC, 0, 0x40000, 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(0, 0);
}

static void bad_indirect_next(struct virtq *q)
{
	(void)q;
	put_desc(DESC, 0, 0x40000, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	offer(0, 0);
}

static void bad_indirect_len(struct virtq *q)
{
	(void)q;
	put_desc(DESC, 0, 0x40000, 24, VIRTQ_DESC_F_INDIRECT, 0);
	offer(0, 0);
}

static void bad_indirect_loop(struct virtq *q)
{
	(void)q;
	put_desc(0x40000, 0, 0x10000, 8, VIRTQ_DESC_F_NEXT, 1);
	put_desc(0x40000, 1, 0x10000, 8, VIRTQ_DESC_F_NEXT, 0);
	put_desc(DESC, 0, 0x40000, 32, VIRTQ_DESC_F_INDIRECT, 0);
	offer(0, 0);
}

static void test_refusals(void)
{
	refused(bad_loop, "loops");
	refused(bad_index, "out of range");
	refused(bad_head, "out of range");
	refused(bad_addr, "outside guest RAM");
	refused(bad_wrap_addr, "outside guest RAM");
	refused(bad_order, "readable after writable");
	refused(bad_avail_idx, "ahead");
	refused(bad_nested_indirect, "indirect descriptor in an indirect");
	refused(bad_indirect_next, "NEXT");
	refused(bad_indirect_len, "indirect table of 24 bytes");
	refused(bad_indirect_loop, "loops");
}

static void test_validate(void)
{
	struct virtq q = setup(false);
	char why[128];

	q.num = 6;
	CU_ASSERT_EQUAL(virtq_validate(&q, &mem, why, sizeof(why)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "power of two"));
	q = setup(false);
	q.desc = DESC + 8;
	CU_ASSERT_EQUAL(virtq_validate(&q, &mem, why, sizeof(why)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "misaligned"));
	q = setup(false);
	q.used = RAM - 16;
	CU_ASSERT_EQUAL(virtq_validate(&q, &mem, why, sizeof(why)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "used ring is outside"));
}

/* Interrupt suppression: the NO_INTERRUPT flag, and the event index both ways. */
static void test_notify(void)
{
	struct virtq q = setup(false);
	uint16_t v;

	put_desc(DESC, 0, 0x10000, 8, 0, 0);
	CU_ASSERT_EQUAL(virtq_push(&q, &mem, 0, 0), 0);
	CU_ASSERT_TRUE(virtq_need_irq(&q, &mem));
	CU_ASSERT_FALSE(virtq_need_irq(&q, &mem)); /* nothing new since */
	v = VIRTQ_AVAIL_F_NO_INTERRUPT;
	memcpy(ram + AVAIL, &v, 2);
	CU_ASSERT_EQUAL(virtq_push(&q, &mem, 0, 0), 0);
	CU_ASSERT_FALSE(virtq_need_irq(&q, &mem));

	q = setup(true);
	v = 2; /* used_event: interrupt once the used index passes 2 */
	memcpy(ram + AVAIL + 4 + 2 * QNUM, &v, 2);
	CU_ASSERT_EQUAL(virtq_push(&q, &mem, 0, 0), 0);
	CU_ASSERT_TRUE(virtq_need_irq(&q, &mem));	/* the first is always signalled */
	CU_ASSERT_EQUAL(virtq_push(&q, &mem, 0, 0), 0); /* used idx 2: not past 2 yet */
	CU_ASSERT_FALSE(virtq_need_irq(&q, &mem));
	CU_ASSERT_EQUAL(virtq_push(&q, &mem, 0, 0), 0); /* 3: steps over used_event */
	CU_ASSERT_TRUE(virtq_need_irq(&q, &mem));
	/* avail_event tells the driver where to notify next; more work shows at once. */
	offer(0, 0);
	CU_ASSERT_TRUE(virtq_arm_notify(&q, &mem));
	CU_ASSERT_EQUAL(ld16(USED + 4 + 8 * QNUM), 0);
}

/* A net frame's shape: a 12-byte header and the frame split over two writable buffers,
 * the split inside the frame. The iovecs skip the header and stop at the length asked
 * for; a chain given back is taken again, whole. */
static void test_iov_unpop(void)
{
	struct virtq q = setup(false);
	struct virtq_chain c;
	struct iovec iov[VIRTQ_MAX_SEGS];
	char why[128];

	put_desc(DESC, 0, 0x10000, 268, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	put_desc(DESC, 1, 0x20000, 1780, VIRTQ_DESC_F_WRITE, 0);
	offer(0, 0);
	CU_ASSERT_EQUAL_FATAL(virtq_pop(&q, &mem, &c, why, sizeof(why)), 1);
	CU_ASSERT_EQUAL(virtq_iov(&c, false, 0, 100, iov), 0); /* nothing readable */
	CU_ASSERT_EQUAL_FATAL(virtq_iov(&c, true, 12, 2048, iov), 2);
	CU_ASSERT_PTR_EQUAL(iov[0].iov_base, ram + 0x10000 + 12);
	CU_ASSERT_EQUAL(iov[0].iov_len, 256);
	CU_ASSERT_PTR_EQUAL(iov[1].iov_base, ram + 0x20000);
	CU_ASSERT_EQUAL(iov[1].iov_len, 1780); /* capped by the buffers, not the length */
	CU_ASSERT_EQUAL_FATAL(virtq_iov(&c, true, 300, 100, iov), 1);
	CU_ASSERT_PTR_EQUAL(iov[0].iov_base, ram + 0x20000 + 32);
	CU_ASSERT_EQUAL(iov[0].iov_len, 100);
	CU_ASSERT_EQUAL(virtq_iov(&c, true, 2048, 10, iov), 0); /* past the end */
	virtq_unpop(&q);
	CU_ASSERT_EQUAL_FATAL(virtq_pop(&q, &mem, &c, why, sizeof(why)), 1);
	CU_ASSERT_EQUAL(c.head, 0);
	CU_ASSERT_EQUAL(c.write_len, 2048);
	CU_ASSERT_EQUAL(virtq_pop(&q, &mem, &c, why, sizeof(why)), 0);
}

void suite_virtq(void)
{
	static const struct test_case cases[] = {
		{ "a chain: read, write, push", test_chain_roundtrip },
		{ "rings wrap", test_wraps },
		{ "indirect descriptors", test_indirect },
		{ "malformed rings and chains are refused", test_refusals },
		{ "queue addresses and size", test_validate },
		{ "interrupt suppression and event index", test_notify },
		{ "iovecs of a chain; a chain given back", test_iov_unpop },
		{ NULL, NULL },
	};

	test_add_suite("virtq", cases);
}

/* A destination's page channel (mig_rx_run) reading a stream from memory (net_mem_conn)
 * into a VM without KVM: pages land where their entries say, zero pages read as zero, the
 * final round end stops it; a page outside guest RAM, an unknown flag, a count that does
 * not match the record's length and a record cut short are refused. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dest_priv.h"
#include "harness.h"
#include "unit.h"
#include "unit_vm.h"

struct stream {
	uint8_t buf[64 << 10];
	size_t len;
};

static void put(struct stream *s, const void *p, size_t n)
{
	CU_ASSERT_FATAL(s->len + n <= sizeof(s->buf));
	memcpy(s->buf + s->len, p, n);
	s->len += n;
}

static void header(struct stream *s, uint32_t type, uint32_t len)
{
	uint32_t h[2] = { type, len };

	put(s, h, sizeof(h));
}

/* A page record: n entries, a data page (filled with fill) for each without the zero flag;
 * extra changes the length the header states. */
static void pages(struct stream *s, const uint64_t *e, uint32_t n, uint8_t fill, int extra)
{
	static uint8_t page[VM_PAGE_SIZE];
	uint32_t head[2] = { n, 0 }, data = 0;

	for (uint32_t i = 0; i < n; i++)
		data += !(e[i] & MIG_PAGE_ZERO);
	header(s, REC_PAGES, 8 + n * 8 + data * VM_PAGE_SIZE + (uint32_t)extra);
	put(s, head, sizeof(head));
	put(s, e, n * 8);
	memset(page, fill, sizeof(page));
	for (uint32_t i = 0; i < data; i++)
		put(s, page, sizeof(page));
}

static void round_end(struct stream *s, bool final)
{
	const uint8_t pb[] = { 0x08, 0x01, 0x10, 0x01 }; /* round 1, final */

	header(s, REC_ROUND_END, final ? 4 : 2);
	put(s, pb, final ? 4 : 2);
}

static int run(struct vm *vm, const struct stream *s, struct rx_channel *ch)
{
	memset(ch, 0, sizeof(*ch));
	ch->conn = net_mem_conn(s->buf, s->len);
	ch->vm = vm;
	CU_ASSERT_FATAL(ch->conn != NULL);
	mig_rx_run(ch);
	net_tls_close(ch->conn);
	return ch->err;
}

static void test_stream(void)
{
	struct vm *vm = unit_vm_new();
	const uint64_t ok[] = { 0x2000, 0x1000 | MIG_PAGE_ZERO, (1ull << 32) + 0x3000 };
	const uint64_t outside[] = { 0x200000 }, flag[] = { 0x2000 | 0x4 };
	struct stream *s = calloc(1, sizeof(*s));
	struct rx_channel ch;
	uint8_t *lo, *hi;

	CU_ASSERT_FATAL(s && unit_vm_add_ram(vm, 0, 1 << 20) == 0 &&
			unit_vm_add_ram(vm, 1ull << 32, 1 << 20) == 0);
	lo = vm_gpa_hva(vm, 0, 1 << 20);
	hi = vm_gpa_hva(vm, 1ull << 32, 1 << 20);
	memset(lo + 0x1000, 0xee, VM_PAGE_SIZE); /* to be zeroed */
	pages(s, ok, 3, 0x5a, 0);
	round_end(s, false);
	round_end(s, true);
	pages(s, outside, 1, 0x11, 0); /* after the final round: never read */
	CU_ASSERT_EQUAL(run(vm, s, &ch), 0);
	CU_ASSERT_EQUAL(ch.pages, 3);
	CU_ASSERT_EQUAL(lo[0x2000], 0x5a);
	CU_ASSERT_EQUAL(lo[0x2fff], 0x5a);
	CU_ASSERT_EQUAL(lo[0x1000], 0);
	CU_ASSERT_EQUAL(hi[0x3000], 0x5a);
	CU_ASSERT_EQUAL(lo[0x4000], 0);
	/* Refused: outside RAM, an unknown flag, a length that does not add up, cut short. */
	s->len = 0;
	pages(s, outside, 1, 0x11, 0);
	CU_ASSERT_EQUAL(run(vm, s, &ch), -ERANGE);
	s->len = 0;
	pages(s, flag, 1, 0x11, 0);
	CU_ASSERT_EQUAL(run(vm, s, &ch), -EPROTO);
	s->len = 0;
	pages(s, ok, 3, 0x22, 8);
	CU_ASSERT_EQUAL(run(vm, s, &ch), -EPROTO);
	CU_ASSERT_EQUAL(lo[0x2000], 0x5a); /* nothing of the refused record was taken */
	s->len = 0;
	pages(s, ok, 3, 0x33, 0);
	s->len -= 100;
	CU_ASSERT_NOT_EQUAL(run(vm, s, &ch), 0);
	free(s);
	unit_vm_free(vm);
}

void suite_stream(void)
{
	static const struct test_case cases[] = {
		{ "a page channel from memory: pages in place, refusals", test_stream },
		{ NULL, NULL },
	};

	test_add_suite("stream", cases);
}

/* Record framing and page batches on a migration connection. Every length and address
 * that comes off the wire is checked before it is used. */
#include "stream_priv.h"
#include "proto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rec_hdr {
	uint32_t type;
	uint32_t len;
};

static int rec_send(struct tls_conn *c, uint32_t type, const void *payload, uint32_t len)
{
	struct rec_hdr h = { type, len };
	int err = net_tls_write_all(c, &h, sizeof(h));

	return err || !len ? err : net_tls_write_all(c, payload, len);
}

/* The longest record of a type: what is read (and decoded) is bounded by what the type
 * can need, not by the largest record of all. */
static uint32_t rec_max(uint32_t type)
{
	switch (type) {
	case REC_PAGES: return 8 + MIG_BATCH_PAGES * (8 + VM_PAGE_SIZE);
	case REC_SWITCHOVER:
	case REC_PC_DROP: return REC_MAX_LEN;
	default: return REC_MAX_CTL;
	}
}

int mig_rec_send_msg(struct tls_conn *c, uint32_t type, const ProtobufCMessage *msg)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = malloc(n ? n : 1);
	int err;

	if (!buf)
		return -ENOMEM;
	protobuf_c_message_pack(msg, buf);
	err = n > rec_max(type) ? -E2BIG : rec_send(c, type, buf, (uint32_t)n);
	free(buf);
	return err;
}

int mig_rec_recv_header(struct tls_conn *c, uint32_t *type, uint32_t *len)
{
	struct rec_hdr h;
	int err = net_tls_read_full(c, &h, sizeof(h));

	if (err)
		return err;
	if (h.type < REC_HELLO || h.type >= REC_TYPES_END || h.len > rec_max(h.type))
		return -EPROTO;
	*type = h.type;
	*len = h.len;
	return 0;
}

int mig_rec_recv(struct tls_conn *c, uint32_t *type, uint8_t **payload, uint32_t *len)
{
	int err = mig_rec_recv_header(c, type, len);

	*payload = NULL;
	if (err || !*len)
		return err;
	*payload = malloc(*len);
	if (!*payload)
		return -ENOMEM;
	err = net_tls_read_full(c, *payload, *len);
	if (err) {
		free(*payload);
		*payload = NULL;
	}
	return err;
}

void mig_rec_abort_reason(const uint8_t *payload, uint32_t len, char *buf, size_t buflen)
{
	Cme__MigAbort *a = PB_UNPACK(cme__mig_abort__unpack, len, payload);

	snprintf(buf, buflen, "%s", a && a->reason[0] ? a->reason : "aborted by the peer");
	if (a)
		cme__mig_abort__free_unpacked(a, NULL);
}

void mig_fit_buffers(struct tls_conn *c)
{
	int sz = net_tls_fit_buffers(c, MIG_LINK_RATE);

	if (sz)
		log_debug("mig", "page channel buffers %d KiB (round trip %u us)", sz >> 10,
			  net_tls_rtt_us(c));
}

void mig_rec_send_abort(struct tls_conn *c, const char *reason)
{
	Cme__MigAbort a = CME__MIG_ABORT__INIT;

	a.reason = (char *)reason;
	if (c && mig_rec_send_msg(c, REC_ABORT, &a.base) < 0)
		log_debug("mig", "could not tell the peer: %s", reason);
}

/* ---- page batches ---------------------------------------------------------------------- */

int mig_batch_init(struct page_batch *b)
{
	memset(b, 0, sizeof(*b));
	b->data = malloc(MIG_BATCH_PAGES * VM_PAGE_SIZE);
	return b->data ? 0 : -ENOMEM;
}

void mig_batch_free(struct page_batch *b)
{
	free(b->data);
	b->data = NULL;
}

int mig_rec_send_raw(struct tls_conn *c, uint32_t type, const void *buf, uint32_t len)
{
	struct rec_hdr h = { type, len };
	int err = net_tls_write_all(c, &h, sizeof(h));

	return err || !len ? err : net_tls_write_all(c, buf, len);
}

void mig_batch_add(struct page_batch *b, uint64_t gpa, const uint8_t *page)
{
	if (mem_is_zero(page, VM_PAGE_SIZE)) {
		b->addr[b->count++] = gpa | MIG_PAGE_ZERO;
		return;
	}
	memcpy(b->data + (size_t)b->data_pages * VM_PAGE_SIZE, page, VM_PAGE_SIZE);
	b->data_pages++;
	b->addr[b->count++] = gpa;
}

bool mig_batch_full(const struct page_batch *b)
{
	return b->count == MIG_BATCH_PAGES;
}

int64_t mig_batch_send(struct tls_conn *c, struct page_batch *b)
{
	uint32_t head[2] = { b->count, 0 };
	uint32_t len = 8 + b->count * 8 + b->data_pages * (uint32_t)VM_PAGE_SIZE;
	struct rec_hdr h = { REC_PAGES, len };
	int err;

	if (!b->count)
		return 0;
	err = net_tls_write_all(c, &h, sizeof(h));
	if (!err)
		err = net_tls_write_all(c, head, sizeof(head));
	if (!err)
		err = net_tls_write_all(c, b->addr, b->count * 8ull);
	if (!err && b->data_pages)
		err = net_tls_write_all(c, b->data, (size_t)b->data_pages * VM_PAGE_SIZE);
	b->count = b->data_pages = 0;
	return err ? err : (int64_t)len + (int64_t)sizeof(h);
}

/* A zero page: leave a page that is already zero alone (reading an untouched page maps
 * the shared zero page; writing would allocate one), and give one that held data back to
 * the host (a page the guest's balloon took while it was being sent) rather than keep a
 * page of zeros. */
static void page_set_zero(struct vm *vm, struct mig_place *pl, uint64_t gpa, uint8_t *hva)
{
	if (pl && mig_place_zero(pl, hva))
		return; /* was missing: the zero page now, nothing allocated */
	if (!mem_is_zero(hva, VM_PAGE_SIZE) && vm_ram_release(vm, gpa, VM_PAGE_SIZE) < 0)
		memset(hva, 0, VM_PAGE_SIZE); /* hugepages: the pool keeps them anyway */
}

/* A page record's head and addresses, checked against its length. Returns the count or
 * -errno. */
static int64_t batch_head(struct tls_conn *c, uint32_t len, uint64_t *addr)
{
	uint32_t head[2], data_pages = 0;
	int err = len >= 8 ? net_tls_read_full(c, head, sizeof(head)) : -EPROTO;

	if (err)
		return err;
	if (head[0] == 0 || head[0] > MIG_BATCH_PAGES || len < 8 + head[0] * 8ull)
		return -EPROTO;
	err = net_tls_read_full(c, addr, head[0] * 8ull);
	for (uint32_t i = 0; !err && i < head[0]; i++)
		data_pages += !(addr[i] & MIG_PAGE_ZERO);
	if (!err && len != 8 + head[0] * 8ull + data_pages * VM_PAGE_SIZE)
		return -EPROTO;
	return err ? err : (int64_t)head[0];
}

/* The page an entry names into *hva: 0, -EPROTO for unknown flags, -ERANGE outside RAM. */
static int entry_hva(struct vm *vm, uint64_t entry, uint8_t **hva)
{
	if (entry & (VM_PAGE_SIZE - 1) & ~MIG_PAGE_ZERO)
		return -EPROTO;
	*hva = vm_gpa_hva(vm, entry & ~(VM_PAGE_SIZE - 1), VM_PAGE_SIZE);
	return *hva ? 0 : -ERANGE;
}

/* How many entries from i on are data pages following each other in guest memory (one
 * slot), at most MIG_RUN_PAGES. */
static uint32_t run_length(struct vm *vm, const uint64_t *addr, int64_t i, int64_t n,
			   const uint8_t *hva)
{
	uint32_t k = 1;

	uint8_t *next;

	while (i + k < n && k < MIG_RUN_PAGES && !(addr[i + k] & MIG_PAGE_ZERO) &&
	       addr[i + k] == addr[i] + k * VM_PAGE_SIZE && !entry_hva(vm, addr[i + k], &next) &&
	       next == hva + (uint64_t)k * VM_PAGE_SIZE)
		k++;
	return k;
}

int64_t mig_batch_recv(struct tls_conn *c, struct vm *vm, struct mig_track *track,
		       struct mig_place *pl, uint32_t len, uint64_t *zero, uint8_t *scratch,
		       uint8_t *run)
{
	uint64_t *addr = (uint64_t *)scratch;
	int64_t n = batch_head(c, len, addr);
	int err = n < 0 ? (int)n : 0;

	for (int64_t i = 0; !err && i < n;) {
		uint64_t gpa = addr[i] & ~(VM_PAGE_SIZE - 1);
		uint8_t *hva = NULL;
		uint32_t k = 1;

		err = entry_hva(vm, addr[i], &hva);
		if (err)
			return err;
		if (addr[i] & MIG_PAGE_ZERO) {
			page_set_zero(vm, pl, gpa, hva);
			(*zero)++;
		} else if (!pl) {
			err = net_tls_read_full(c, hva, VM_PAGE_SIZE);
		} else {
			k = run_length(vm, addr, i, n, hva);
			err = net_tls_read_full(c, run, (size_t)k * VM_PAGE_SIZE);
			if (!err)
				err = mig_place_copy(pl, hva, run, k);
		}
		/* Even a failed read may have written part of a page. */
		for (uint32_t j = 0; j < k; j++)
			mig_track_mark(track, gpa + (uint64_t)j * VM_PAGE_SIZE);
		i += k;
	}
	return err ? err : n;
}

int64_t mig_batch_recv_each(struct tls_conn *c, struct vm *vm, uint32_t len, uint8_t *scratch,
			    uint8_t *page, mig_page_fn fn, void *arg)
{
	uint64_t *addr = (uint64_t *)scratch;
	int64_t n = batch_head(c, len, addr);
	int err = n < 0 ? (int)n : 0;

	for (int64_t i = 0; !err && i < n; i++) {
		bool zero = addr[i] & MIG_PAGE_ZERO;
		uint8_t *hva;

		err = entry_hva(vm, addr[i], &hva);
		if (err)
			return err;
		if (!zero)
			err = net_tls_read_full(c, page, VM_PAGE_SIZE);
		if (!err)
			err = fn(arg, addr[i] & ~(VM_PAGE_SIZE - 1), zero ? NULL : page);
	}
	return err ? err : n;
}

/* The migration stream as a destination's page channel reads it (mig_rx_run, the body of
 * its thread): records framed {u32 type, u32 length}, page records of entries (guest
 * address | flags) and their pages, round ends (protobuf) — here from memory
 * (net_mem_conn) rather than TLS, into a VM without KVM whose RAM is two slots, 1 MiB at
 * 0 and 1 MiB at 4 GiB. The first byte picks the way pages are taken: in place, as in
 * pre-copy, or one at a time through a function, as in post-copy (which must never be
 * handed a page outside RAM or off a page boundary). */
#include "dest_priv.h"
#include "fuzz.h"
#include "unit_vm.h"

#include <stdlib.h>

static struct vm *vm;

static int page_fn(void *arg, uint64_t gpa, const uint8_t *page)
{
	(void)arg;
	(void)page;
	if (gpa & (VM_PAGE_SIZE - 1) || !vm_gpa_hva(vm, gpa, VM_PAGE_SIZE))
		abort();
	return 0;
}

int fuzz_stream(const uint8_t *data, size_t size)
{
	struct rx_channel ch = { 0 };

	if (!size)
		return 0;
	if (!vm) {
		vm = unit_vm_new();
		if (unit_vm_add_ram(vm, 0, 1 << 20) || unit_vm_add_ram(vm, 1ull << 32, 1 << 20))
			abort();
	}
	ch.conn = net_mem_conn(data + 1, size - 1);
	ch.vm = vm;
	if (data[0] & 1)
		ch.page_fn = page_fn;
	if (ch.conn)
		mig_rx_run(&ch);
	net_tls_close(ch.conn);
	return 0;
}

/* The flat ABI's identity page tables. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "unit.h"
#include "vm_priv.h"

static uint64_t get64(const uint8_t *mem, uint64_t gpa)
{
	uint64_t v;

	memcpy(&v, mem + gpa, 8);
	return v;
}

/* Walk the 4-level tables for a virtual address, like the MMU would (2 MiB leaves). */
static uint64_t walk(const uint8_t *mem, uint64_t cr3, uint64_t va, uint64_t *flags)
{
	uint64_t e = get64(mem, cr3 + ((va >> 39) & 511) * 8);
	uint64_t f = e & 7;

	e = get64(mem, (e & ~0xfffull) + ((va >> 30) & 511) * 8);
	f &= e;
	e = get64(mem, (e & ~0xfffull) + ((va >> 21) & 511) * 8);
	f &= e;
	*flags = f | (e & 0x80);
	return (e & ~0x1fffffull) | (va & 0x1fffff);
}

static void test_identity_map(void)
{
	size_t len = 1 << 20;
	uint8_t *mem = calloc(1, len);
	static const uint64_t probes[] = {
		0,	    0x100000,	    0x1234567,	     0xbfffffff,
		0xfee00000, 0x100000000ull, 0x1000000000ull, 0x103fffffffull
	};
	int nr = flat_build_page_tables(mem, len, 0x1000, 65ull << 30, 0);

	CU_ASSERT_EQUAL_FATAL(nr, 65);
	for (size_t i = 0; i < ARRAY_SIZE(probes); i++) {
		uint64_t flags, pa = walk(mem, 0x1000, probes[i], &flags);

		CU_ASSERT_EQUAL(pa, probes[i]);
		CU_ASSERT_EQUAL(flags, 0x87); /* present, writable, user at every level; 2 MiB */
	}
	/* Past the mapped range the PDPT entry is empty. */
	CU_ASSERT_EQUAL(get64(mem, 0x2000 + 65 * 8), 0);
	free(mem);
}

static void test_small_map_and_bounds(void)
{
	size_t len = 1 << 20;
	uint8_t *mem = calloc(1, len);

	CU_ASSERT_EQUAL(flat_build_page_tables(mem, len, 0x1000, 4ull << 30, 0), 4);
	CU_ASSERT_EQUAL(get64(mem, 0x2000 + 4 * 8), 0);
	/* Tables that would not fit in memory are refused, not written past the end. */
	CU_ASSERT_EQUAL(flat_build_page_tables(mem, 0x4000, 0x1000, 4ull << 30, 0), -EINVAL);
	CU_ASSERT_EQUAL(flat_build_page_tables(mem, len, 0x1000, 0, 0), -EINVAL);
	free(mem);
}

/* A confidential guest's tables: the C-bit in every entry that leads to RAM, none in the
 * leaves of the 3-4 GiB hole (the host's devices: shared), the same addresses. */
static void test_encrypted_map(void)
{
	const uint64_t cbit = 1ull << 51, addr_mask = ~0xfffull & ~cbit;
	size_t len = 1 << 20;
	uint8_t *mem = calloc(1, len);
	static const struct {
		uint64_t va;
		bool private;
	} probes[] = {
		{ 0, true },	       { 0x100000, true },	 { 0xbfffffff, true },
		{ 0xc0000000, false }, { 0xd0000000, false },	 { 0xfee00000, false },
		{ 0xffffffff, false }, { 0x100000000ull, true }, { 0x13fffffffull, true },
	};

	CU_ASSERT_EQUAL_FATAL(flat_build_page_tables(mem, len, 0x1000, 5ull << 30, cbit), 5);
	CU_ASSERT_EQUAL(get64(mem, 0x1000) & cbit, cbit); /* PML4 entry */
	for (size_t i = 0; i < ARRAY_SIZE(probes); i++) {
		uint64_t va = probes[i].va;
		uint64_t pdpte = get64(mem, 0x2000 + ((va >> 30) & 511) * 8);
		uint64_t pde = get64(mem, (pdpte & addr_mask) + ((va >> 21) & 511) * 8);

		CU_ASSERT_EQUAL(pdpte & cbit, cbit);
		CU_ASSERT_EQUAL((pde & cbit) != 0, probes[i].private);
		CU_ASSERT_EQUAL(pde & addr_mask & ~0x1fffffull, va & ~0x1fffffull);
		CU_ASSERT_EQUAL(pde & 0xff, 0x87);
	}
	free(mem);
}

void suite_pagetables(void)
{
	static const struct test_case cases[] = {
		{ "identity map of 65 GiB with 2 MiB pages", test_identity_map },
		{ "a confidential guest's map: C-bit on RAM, not on the device hole",
		  test_encrypted_map },
		{ "map size and memory bounds", test_small_map_and_bounds },
		{ NULL, NULL },
	};
	test_add_suite("pagetables", cases);
}

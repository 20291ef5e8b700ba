/* ACPI tables for Linux guests, in the BIOS area at 0xe0000 where the kernel scans for the
 * RSDP: XSDT, a hardware-reduced FADT (sleep control register for poweroff, reset
 * register for reboot), a DSDT with the \_S5 sleep state, and a MADT listing every vCPU's
 * LAPIC and the IOAPIC. Debian's kernel finds CPUs and the IOAPIC only this way. */
#include "vm_priv.h"

#include <string.h>

#define ACPI_BASE	   0xe0000ull
#define ACPI_RSDP	   (ACPI_BASE + 0x000)
#define ACPI_XSDT	   (ACPI_BASE + 0x040)
#define ACPI_FADT	   (ACPI_BASE + 0x100)
#define ACPI_DSDT	   (ACPI_BASE + 0x300)
#define ACPI_MADT	   (ACPI_BASE + 0x400)
#define ACPI_HDR_LEN	   36
#define FADT_LEN	   276
#define FADT_HW_REDUCED	   (1u << 20)
#define FADT_RESET_REG_SUP (1u << 10)
#define MADT_LAPIC_ADDR	   0xfee00000u
#define IOAPIC_ADDR	   0xfec00000u

static uint8_t acpi_sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s = (uint8_t)(s + *p++);
	return s;
}

static void put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

/* The common table header; the checksum is set last by acpi_seal(). */
static void acpi_header(uint8_t *t, const char sig[4], uint32_t len, uint8_t rev)
{
	memcpy(t, sig, 4);
	put32(t + 4, len);
	t[8] = rev;
	memcpy(t + 10, "CME   ", 6);   /* OEM ID */
	memcpy(t + 16, "CMEVMM  ", 8); /* OEM table ID */
	put32(t + 24, 1);	       /* OEM revision */
	memcpy(t + 28, "CME ", 4);     /* creator */
	put32(t + 32, 1);
}

static void acpi_seal(uint8_t *t, uint32_t len)
{
	t[9] = 0;
	t[9] = (uint8_t)(0 - acpi_sum(t, len));
}

/* Generic address structure: an I/O port of 8 bits. */
static void acpi_gas_io(uint8_t *g, uint16_t port)
{
	g[0] = 1; /* system I/O */
	g[1] = 8; /* bit width */
	g[2] = 0;
	g[3] = 1; /* byte access */
	put64(g + 4, port);
}

static void acpi_fadt(uint8_t *t)
{
	acpi_header(t, "FACP", FADT_LEN, 6);
	put32(t + 40, (uint32_t)ACPI_DSDT);
	t[46] = 9;					      /* SCI_INT (unused when reduced) */
	put32(t + 112, FADT_HW_REDUCED | FADT_RESET_REG_SUP); /* flags */
	acpi_gas_io(t + 116, VM_RESET_PORT);		      /* RESET_REG */
	t[128] = VM_RESET_VALUE;
	put16(t + 109, 1 << 2);			 /* IA-PC boot flags: no VGA */
	t[131] = 5;				 /* FADT minor version */
	put64(t + 140, ACPI_DSDT);		 /* X_DSDT */
	acpi_gas_io(t + 244, VM_SLEEP_PORT);	 /* SLEEP_CONTROL_REG */
	acpi_gas_io(t + 256, VM_SLEEP_PORT + 1); /* SLEEP_STATUS_REG */
	memcpy(t + 268, "CMEVMM  ", 8);		 /* hypervisor vendor identity */
	acpi_seal(t, FADT_LEN);
}

/* DSDT: Name (_S5, Package () { 5, 5, 0, 0 }) — the sleep type for poweroff. */
static uint32_t acpi_dsdt(uint8_t *t)
{
	static const uint8_t aml[] = { 0x08, '_',  'S',	 '5',  '_',  0x12, 0x08,
				       0x04, 0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00 };
	uint32_t len = ACPI_HDR_LEN + sizeof(aml);

	acpi_header(t, "DSDT", len, 2);
	memcpy(t + ACPI_HDR_LEN, aml, sizeof(aml));
	acpi_seal(t, len);
	return len;
}

/* MADT: one enabled LAPIC per vCPU, the IOAPIC with GSIs from 0, and the PIT's IRQ 0 on
 * GSI 2 as on every PC. */
static uint32_t acpi_madt(uint8_t *t, unsigned nr_vcpus)
{
	uint32_t off = ACPI_HDR_LEN + 8;

	put32(t + ACPI_HDR_LEN, MADT_LAPIC_ADDR);
	put32(t + ACPI_HDR_LEN + 4, 1); /* PCAT_COMPAT: dual 8259s present */
	for (unsigned i = 0; i < nr_vcpus; i++, off += 8) {
		t[off] = 0; /* processor local APIC */
		t[off + 1] = 8;
		t[off + 2] = (uint8_t)i; /* ACPI processor UID */
		t[off + 3] = (uint8_t)i; /* APIC ID, as in CPUID */
		put32(t + off + 4, 1);	 /* enabled */
	}
	t[off] = 1; /* IOAPIC */
	t[off + 1] = 12;
	t[off + 2] = (uint8_t)nr_vcpus; /* an ID no CPU uses */
	put32(t + off + 4, IOAPIC_ADDR);
	put32(t + off + 8, 0);
	off += 12;
	t[off] = 2; /* interrupt source override: ISA IRQ 0 -> GSI 2 */
	t[off + 1] = 10;
	t[off + 3] = 0;
	put32(t + off + 4, 2);
	put16(t + off + 8, 0);
	off += 10;
	acpi_header(t, "APIC", off, 5);
	acpi_seal(t, off);
	return off;
}

static void acpi_xsdt_rsdp(uint8_t *mem)
{
	uint8_t *x = mem + ACPI_XSDT, *r = mem + ACPI_RSDP;
	uint32_t len = ACPI_HDR_LEN + 2 * 8;

	acpi_header(x, "XSDT", len, 1);
	put64(x + ACPI_HDR_LEN, ACPI_FADT);
	put64(x + ACPI_HDR_LEN + 8, ACPI_MADT);
	acpi_seal(x, len);
	memcpy(r, "RSD PTR ", 8);
	memcpy(r + 9, "CME   ", 6);
	r[15] = 2; /* ACPI 2.0+: use the XSDT */
	put32(r + 20, 36);
	put64(r + 24, ACPI_XSDT);
	r[8] = (uint8_t)(0 - acpi_sum(r, 20));
	r[32] = (uint8_t)(0 - acpi_sum(r, 36));
}

int acpi_build(struct vm *vm)
{
	uint8_t *mem = vm->slots[0].hva;

	if (vm->slots[0].size < ACPI_BASE + 0x1000 || vm->cfg.nr_vcpus > 64)
		return -1;
	memset(mem + ACPI_BASE, 0, 0x1000);
	acpi_fadt(mem + ACPI_FADT);
	acpi_dsdt(mem + ACPI_DSDT);
	acpi_madt(mem + ACPI_MADT, vm->cfg.nr_vcpus);
	acpi_xsdt_rsdp(mem);
	return 0;
}

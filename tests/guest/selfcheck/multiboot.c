/* multiboot.c — the rest of the multiboot path (entry.S's mb_entry32 switches to 64-bit
 * mode with the flat ABI's page tables, GDT and TSS): the boot info the VMM would have
 * given, built from the loader's multiboot info. Nobody tells a multiboot guest its TSC
 * frequency, so it is measured against the PIT. Runs once, in (emulated) ring 0, on the
 * only vCPU; the flat path never comes here. */
#include "selfcheck.h"

#define MBI_MEM	    (1u << 0) /* mem_lower / mem_upper valid */
#define MBI_CMDLINE (1u << 2)

#define PIT_HZ	       1193182
#define PIT_CALIB_MS   20
#define PORT_PIT_CH2   0x42
#define PORT_PIT_MODE  0x43
#define PORT_SPEAKER   0x61	   /* bit 0: channel 2 gate, bit 1: speaker, bit 5: channel 2 OUT */
#define PIT_CH2_MODE0  0xb0	   /* channel 2, low then high byte, mode 0, binary */
#define PIT_MAX_CYCLES (1UL << 36) /* give up waiting (tens of seconds at any real clock) */

struct mb_info {
	u32 flags;
	u32 mem_lower; /* KiB below 1 MiB */
	u32 mem_upper; /* KiB from 1 MiB to the first hole */
	u32 boot_device;
	u32 cmdline;
};

static struct boot_info mb_bi;
static char empty_cmdline[1];

/* PIT channel 2 in mode 0 counts down PIT_CALIB_MS worth of ticks with the speaker off; its
 * OUT (port 0x61 bit 5) goes high at zero. The TSC is read right after loading the count and
 * when OUT is first seen high; each port read is a VM exit, a few microseconds at most. */
static u64 pit_calibrate_tsc_khz(void)
{
	u32 latch = PIT_HZ * PIT_CALIB_MS / 1000;

	outb(PORT_SPEAKER, (u8)((inb(PORT_SPEAKER) & ~0x02) | 0x01));
	outb(PORT_PIT_MODE, PIT_CH2_MODE0);
	outb(PORT_PIT_CH2, (u8)latch);
	outb(PORT_PIT_CH2, (u8)(latch >> 8));
	u64 t0 = rdtsc(), t1;
	do {
		t1 = rdtsc();
		if (t1 - t0 > PIT_MAX_CYCLES)
			return 0;
	} while (!(inb(PORT_SPEAKER) & 0x20));
	outb(PORT_SPEAKER, (u8)(inb(PORT_SPEAKER) & ~0x03));
	/* cycles over latch / PIT_HZ seconds, in kHz */
	return (t1 - t0) * PIT_HZ / latch / 1000;
}

const struct boot_info *mb_setup(u32 magic, u32 mbi_addr)
{
	const struct mb_info *mbi = (const struct mb_info *)(u64)mbi_addr;

	if (magic != MB_LOADER_MAGIC || !(mbi->flags & MBI_MEM)) {
		con_printf_urgent("ERROR multiboot: magic=0x%x flags=0x%x (no memory size)\n",
				  magic, magic == MB_LOADER_MAGIC ? mbi->flags : 0);
		guest_exit(EXIT_BADARG);
	}
	mb_bi.magic = BOOT_MAGIC;
	mb_bi.mem_bytes = (1024 + (u64)mbi->mem_upper) * 1024;
	mb_bi.vcpu_id = 0;
	mb_bi.nr_vcpus = 1;
	mb_bi.cmdline_gpa =
		(mbi->flags & MBI_CMDLINE) && mbi->cmdline ? mbi->cmdline : (u64)empty_cmdline;
	mb_bi.tsc_khz = pit_calibrate_tsc_khz();
	if (mb_bi.tsc_khz == 0) {
		con_printf_urgent("ERROR multiboot: the PIT never counted down\n");
		guest_exit(EXIT_BADARG);
	}
	return &mb_bi;
}

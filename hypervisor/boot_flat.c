/* The flat 64-bit image loader (README, "Flat image ABI"): the image at 1 MiB, identity
 * page tables, a GDT and TSS per vCPU, boot-info blocks, stacks, and long-mode entry state
 * on every vCPU. Everything the VMM writes lives below 1 MiB at fixed addresses. */
#include "sev_priv.h"
#include "uart_priv.h"
#include "vm_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define SUB "boot"

#define BOOT_PML4	     0x1000ull
#define FLAT_PD_MAX	     66 /* 64 GiB of RAM + the 1 GiB hole, rounded to 1 GiB */
#define FLAT_CMDLINE	     0x45000ull
#define FLAT_CMDLINE_MAX     4096
#define FLAT_PERCPU	     0x46000ull /* one page per vCPU: GDT, TSS, boot info */
#define FLAT_PERCPU_GDT	     0x0
#define FLAT_PERCPU_TSS	     0x100
#define FLAT_PERCPU_BOOTINFO 0x800
#define FLAT_STACKS	     0x66000ull
#define FLAT_STACK_SIZE	     0x4000ull
#define FLAT_IMAGE	     0x100000ull

#define BOOT_MAGIC 0x434d45424f4f5431ull /* "CMEBOOT1" */

#define PTE_P  0x1ull
#define PTE_RW 0x2ull
#define PTE_US 0x4ull
#define PTE_PS 0x80ull

#define SEL_KCODE   0x08
#define SEL_KDATA   0x10
#define SEL_TSS	    0x28
#define GDT_ENTRIES 7 /* null, kcode, kdata, ucode, udata, TSS (two slots) */

/* TSS: 104 bytes, then the I/O bitmap up to port 0x501, then the mandatory 0xff byte. */
#define TSS_BASE_SIZE	104
#define TSS_IOMAP_BYTES (VM_EXIT_PORT / 8 + 1)
#define TSS_SIZE	(TSS_BASE_SIZE + TSS_IOMAP_BYTES + 1)

struct boot_info {
	uint64_t magic;
	uint64_t mem_bytes;
	uint32_t vcpu_id;
	uint32_t nr_vcpus;
	uint64_t cmdline_gpa;
	uint64_t tsc_khz;
	uint64_t virtio_base;  /* virtio-mmio device i at virtio_base + i * 4 KiB */
	uint32_t virtio_count; /* how many (the disks, then the nets, then the balloon) */
	uint32_t mem_encrypt;  /* 0, or the C-bit of a confidential guest's page tables */
};

_Static_assert(FLAT_PERCPU + VM_MAX_VCPUS * 0x1000 <= FLAT_STACKS, "per-vCPU pages overlap");
_Static_assert(FLAT_STACKS + VM_MAX_VCPUS * FLAT_STACK_SIZE <= FLAT_IMAGE, "stacks overlap");
_Static_assert(BOOT_PML4 + (2 + FLAT_PD_MAX) * 0x1000 <= FLAT_CMDLINE, "page tables overlap");
_Static_assert(FLAT_PERCPU_TSS + TSS_SIZE <= FLAT_PERCPU_BOOTINFO, "TSS overlaps boot info");

static void put64(uint8_t *mem, uint64_t gpa, uint64_t v)
{
	memcpy(mem + gpa, &v, sizeof(v));
}

int flat_build_page_tables(uint8_t *mem, uint64_t mem_len, uint64_t pml4_gpa, uint64_t map_bytes,
			   uint64_t enc)
{
	uint64_t pdpt = pml4_gpa + 0x1000, pd = pml4_gpa + 0x2000;
	uint64_t nr_pd = (map_bytes + (1ull << 30) - 1) >> 30;
	const uint64_t table = PTE_P | PTE_RW | PTE_US | enc;

	if (nr_pd == 0 || nr_pd > 512 || !range_within(pml4_gpa, (2 + nr_pd) * 0x1000, 0, mem_len))
		return -EINVAL;
	memset(mem + pml4_gpa, 0, (2 + nr_pd) * 0x1000);
	put64(mem, pml4_gpa, pdpt | table);
	for (uint64_t i = 0; i < nr_pd; i++) {
		put64(mem, pdpt + i * 8, (pd + i * 0x1000) | table);
		for (uint64_t j = 0; j < 512; j++) {
			uint64_t addr = (i << 30) | (j << 21);
			/* The hole's devices (LAPIC, IOAPIC, virtio) are the host's: shared. */
			bool hole = addr >= VM_LOW_MEM_END && addr < VM_HIGH_MEM_BASE;

			put64(mem, pd + i * 0x1000 + j * 8,
			      addr | PTE_P | PTE_RW | PTE_US | PTE_PS | (hole ? 0 : enc));
		}
	}
	return (int)nr_pd;
}

/* A 16-byte 64-bit system descriptor (TSS) at gdt + off. */
void gdt_put_tss(uint8_t *gdt, unsigned off, uint64_t base, uint32_t limit)
{
	uint64_t lo = (limit & 0xffffull) | ((base & 0xffffffull) << 16) |
		      (0x8bull << 40) /* present, busy 64-bit TSS */ |
		      ((uint64_t)(limit >> 16 & 0xf) << 48) | ((base >> 24 & 0xffull) << 56);
	uint64_t hi = base >> 32;

	memcpy(gdt + off, &lo, 8);
	memcpy(gdt + off + 8, &hi, 8);
}

static void flat_write_gdt(uint8_t *gdt, uint64_t tss_gpa)
{
	static const uint64_t seg[5] = {
		0,
		0x00af9a000000ffffull, /* 0x08 code, DPL 0, L=1 */
		0x00cf92000000ffffull, /* 0x10 data, DPL 0 */
		0x00affa000000ffffull, /* 0x18 code, DPL 3, L=1 */
		0x00cff2000000ffffull, /* 0x20 data, DPL 3 */
	};

	memcpy(gdt, seg, sizeof(seg));
	gdt_put_tss(gdt, SEL_TSS, tss_gpa, TSS_SIZE - 1);
}

/* RSP0 = the vCPU's stack top; the I/O bitmap opens the UART and the exit port. */
static void flat_write_tss(uint8_t *tss, uint64_t rsp0)
{
	uint16_t iomap = TSS_BASE_SIZE;

	memset(tss, 0, TSS_SIZE);
	memcpy(tss + 4, &rsp0, 8);
	memcpy(tss + 102, &iomap, 2);
	memset(tss + TSS_BASE_SIZE, 0xff, TSS_IOMAP_BYTES + 1);
	tss[TSS_BASE_SIZE + UART_COM1_BASE / 8] = 0x00; /* 0x3f8-0x3ff */
	tss[TSS_BASE_SIZE + VM_EXIT_PORT / 8] &= (uint8_t) ~(1u << (VM_EXIT_PORT % 8));
}

static uint64_t flat_stack_top(unsigned id)
{
	return FLAT_STACKS + (id + 1) * FLAT_STACK_SIZE;
}

static void flat_write_percpu(struct vm *vm, unsigned id, uint64_t cmdline_gpa)
{
	uint8_t *mem = vm->slots[0].hva;
	uint64_t page = FLAT_PERCPU + id * 0x1000ull;
	struct boot_info bi = {
		.magic = BOOT_MAGIC,
		.mem_bytes = vm->cfg.mem_bytes,
		.vcpu_id = id,
		.nr_vcpus = vm->cfg.nr_vcpus,
		.cmdline_gpa = cmdline_gpa,
		.tsc_khz = vm->tsc_khz,
		.virtio_base = vm_virtio_count(&vm->cfg) ? VIRTIO_MMIO_BASE : 0,
		.virtio_count = vm_virtio_count(&vm->cfg),
		.mem_encrypt = vm->sev ? vm->sev->c_bit : 0,
	};

	flat_write_gdt(mem + page + FLAT_PERCPU_GDT, page + FLAT_PERCPU_TSS);
	flat_write_tss(mem + page + FLAT_PERCPU_TSS, flat_stack_top(id));
	memcpy(mem + page + FLAT_PERCPU_BOOTINFO, &bi, sizeof(bi));
}

static struct kvm_segment flat_seg(uint16_t sel, uint8_t type, bool code)
{
	return (struct kvm_segment){
		.base = 0,
		.limit = 0xffffffff,
		.selector = sel,
		.type = type,
		.present = 1,
		.dpl = 0,
		.db = code ? 0 : 1,
		.s = 1,
		.l = code ? 1 : 0,
		.g = 1,
	};
}

int boot_set_long_mode(struct vcpu *vcpu, const struct boot_lm *lm)
{
	struct kvm_sregs s;
	struct kvm_segment data = flat_seg(lm->ds, 3, false);

	if (ioctl(vcpu->fd, KVM_GET_SREGS, &s) < 0)
		return -errno;
	s.cs = flat_seg(lm->cs, 11, true);
	s.ds = s.es = s.ss = s.fs = s.gs = data;
	s.tr = (struct kvm_segment){ .base = lm->tss,
				     .limit = lm->tss_limit,
				     .selector = lm->tr,
				     .type = 11,
				     .present = 1 };
	s.gdt.base = lm->gdt;
	s.gdt.limit = lm->gdt_limit;
	s.idt.base = 0;
	s.idt.limit = 0;
	s.cr0 = 0x1 | 0x2 | 0x10 | 0x20 | 0x10000 | 0x80000000ull; /* PE MP ET NE WP PG */
	s.cr3 = BOOT_PML4;
	s.cr4 = 0x20 | 0x200 | 0x400;	/* PAE OSFXSR OSXMMEXCPT */
	s.efer = 0x100 | 0x400 | 0x800; /* LME LMA NXE */
	return ioctl(vcpu->fd, KVM_SET_SREGS, &s) < 0 ? -errno : 0;
}

static int flat_set_sregs(struct vcpu *vcpu)
{
	uint64_t page = FLAT_PERCPU + vcpu->id * 0x1000ull;
	struct boot_lm lm = {
		.gdt = page + FLAT_PERCPU_GDT,
		.gdt_limit = GDT_ENTRIES * 8 - 1,
		.tss = page + FLAT_PERCPU_TSS,
		.tss_limit = TSS_SIZE - 1,
		.cs = SEL_KCODE,
		.ds = SEL_KDATA,
		.tr = SEL_TSS,
	};

	return boot_set_long_mode(vcpu, &lm);
}

static int flat_set_regs(struct vcpu *vcpu)
{
	struct kvm_regs r = {
		.rip = FLAT_IMAGE,
		.rsp = flat_stack_top(vcpu->id),
		.rdi = FLAT_PERCPU + vcpu->id * 0x1000ull + FLAT_PERCPU_BOOTINFO,
		.rflags = 0x2,
	};
	struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };
	/* With the in-kernel irqchip, every vCPU but the first waits for INIT/SIPI; the
	 * ABI starts them all together, already in long mode. */
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };

	if (ioctl(vcpu->fd, KVM_SET_FPU, &fpu) < 0 || ioctl(vcpu->fd, KVM_SET_MP_STATE, &mp) < 0)
		return -errno;
	return ioctl(vcpu->fd, KVM_SET_REGS, &r) < 0 ? -errno : 0;
}

static int flat_read_image(struct vm *vm, const char *image, size_t *size)
{
	struct stat st;
	int fd = open(image, O_RDONLY | O_CLOEXEC), err = 0;

	if (fd < 0) {
		err = -errno;
		log_err(SUB, "image %s: %s", image, strerror(errno));
		return err;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
		log_err(SUB, "image %s: not a non-empty regular file", image);
		err = -EINVAL;
	} else if (!range_within(FLAT_IMAGE, (uint64_t)st.st_size, 0, vm->slots[0].size)) {
		log_err(SUB, "image %s (%lld bytes) does not fit in guest RAM above 1 MiB", image,
			(long long)st.st_size);
		err = -EFBIG;
	} else if (read_full(fd, vm->slots[0].hva + FLAT_IMAGE, (size_t)st.st_size) < 0) {
		log_err(SUB, "image %s: read failed", image);
		err = -EIO;
	}
	*size = (size_t)st.st_size;
	close(fd);
	return err;
}

int boot_page_tables(struct vm *vm)
{
	return flat_build_page_tables(vm->slots[0].hva, vm->slots[0].size, BOOT_PML4,
				      boot_map_bytes(vm), vm->sev ? 1ull << vm->sev->c_bit : 0);
}

uint64_t boot_map_bytes(const struct vm *vm)
{
	uint64_t end = vm->cfg.mem_bytes;

	if (end > VM_LOW_MEM_END)
		end += VM_HIGH_MEM_BASE - VM_LOW_MEM_END;
	return end > VM_HIGH_MEM_BASE ? end : VM_HIGH_MEM_BASE; /* the LAPIC is mapped too */
}

static int flat_write_cmdline(struct vm *vm, const char *cmdline, uint64_t *gpa)
{
	size_t n = cmdline ? strlen(cmdline) : 0;

	*gpa = 0;
	if (n >= FLAT_CMDLINE_MAX) {
		log_err(SUB, "command line is %zu bytes, the limit is %d", n, FLAT_CMDLINE_MAX - 1);
		return -E2BIG;
	}
	if (cmdline) {
		memcpy(vm->slots[0].hva + FLAT_CMDLINE, cmdline, n + 1);
		*gpa = FLAT_CMDLINE;
	}
	return 0;
}

int vm_load_flat(struct vm *vm, const char *image, const char *cmdline)
{
	uint64_t cmdline_gpa;
	size_t size = 0;
	int err = flat_write_cmdline(vm, cmdline, &cmdline_gpa);

	if (!err)
		err = flat_read_image(vm, image, &size);
	if (err)
		return err;
	/* Measured from guest RAM: exactly the bytes the guest will run. */
	measure_extend(vm->measurement, "image", vm->slots[0].hva + FLAT_IMAGE, size);
	measure_extend(vm->measurement, "cmdline", cmdline ? cmdline : "",
		       cmdline ? strlen(cmdline) : 0);
	vm->measured = true;
	vm->loaded_end = FLAT_IMAGE + size; /* everything the VMM wrote lies below */
	err = boot_page_tables(vm);
	if (err < 0)
		return err;
	for (unsigned i = 0; i < vm->cfg.nr_vcpus; i++) {
		flat_write_percpu(vm, i, cmdline_gpa);
		err = flat_set_sregs(&vm->vcpus[i]);
		if (!err)
			err = flat_set_regs(&vm->vcpus[i]);
		if (err) {
			log_err(SUB, "vcpu=%u cannot set entry state: %s", i, strerror(-err));
			return err;
		}
	}
	return 0;
}

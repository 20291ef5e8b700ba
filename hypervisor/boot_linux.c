/* Linux boot by the x86 64-bit boot protocol: a bzImage (protected-mode part at 16 MiB,
 * entered at +0x200) or an uncompressed ELF vmlinux (segments at their physical addresses,
 * entered at its ELF entry, as Firecracker does), the zero page with the setup header,
 * e820 map and command line, the initrd at the top of low memory, and 64-bit entry state
 * on the boot vCPU. The other vCPUs wait for INIT/SIPI from the guest, as on a PC. */
#include "vm_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "linux_priv.h"

#define SUB "linux"

#define LX_CMDLINE     0x45000ull
#define LX_CMDLINE_MAX 4096
#define LX_ZERO_PAGE   0x46000ull
#define LX_GDT	       0x47000ull
#define LX_TSS	       0x47100ull
#define LX_STACK_TOP   0x4f000ull
#define LX_KERNEL_ADDR 0x1000000ull /* 16 MiB, the kernel's preferred address */
#define LX_EBDA	       0x9fc00ull   /* low RAM ends here, as on a PC */
#define LX_HIGH	       0x100000ull

/* boot_params offsets (arch/x86/include/uapi/asm/bootparam.h) */
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE  0x0c4
#define BP_EXT_CMD_LINE_PTR  0x0c8
#define BP_E820_ENTRIES	     0x1e8
#define BP_HDR		     0x1f1
#define BP_E820_TABLE	     0x2d0
#define BP_E820_MAX	     128
#define E820_RAM	     1
#define E820_RESERVED	     2

#define SEL_BOOT_CS  0x10
#define SEL_BOOT_DS  0x18
#define SEL_BOOT_TSS 0x20

struct lx_file {
	uint8_t *data;
	size_t len;
};

struct lx_boot {
	uint64_t entry;
	uint64_t kernel_end;
	uint32_t initrd_max;
	uint32_t cmdline_size;
	uint8_t hdr[0x290 - BP_HDR]; /* setup header for the zero page */
	size_t hdr_len;
};

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

/* The whole file, read once into memory of our own: what is measured is what is loaded,
 * whatever happens to the file meanwhile. */
static int lx_map_file(const char *path, const char *what, struct lx_file *f)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC), err = 0;

	f->data = NULL;
	if (fd < 0) {
		log_err(SUB, "%s %s: %s", what, path, strerror(errno));
		return -errno;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
		log_err(SUB, "%s %s: not a non-empty regular file", what, path);
		err = -EINVAL;
	} else {
		f->len = (size_t)st.st_size;
		f->data = malloc(f->len);
		err = !f->data ? -ENOMEM : read_full(fd, f->data, f->len) ? -EIO : 0;
		if (err)
			log_err(SUB, "%s %s: cannot read it: %s", what, path, strerror(-err));
	}
	close(fd);
	return err;
}

static void lx_unmap(struct lx_file *f)
{
	free(f->data);
	f->data = NULL;
}

/* Copy bytes into guest RAM, checking the range lies in one slot. */
static int lx_copy(struct vm *vm, uint64_t gpa, const void *src, uint64_t len, const char *what)
{
	void *hva = vm_gpa_to_hva(vm, gpa, len);

	if (!hva) {
		log_err(SUB,
			"%s does not fit in guest RAM at 0x%llx (+%llu bytes): give the VM more "
			"memory",
			what, (unsigned long long)gpa, (unsigned long long)len);
		return -EFBIG;
	}
	memcpy(hva, src, len);
	return 0;
}

static int lx_load_elf(struct vm *vm, const struct lx_file *k, struct lx_boot *b)
{
	struct linux_elf e;
	char err[256];
	int rc = linux_parse_elf(k->data, k->len, &e, err, sizeof(err));

	if (rc) {
		log_err(SUB, "kernel: %s", err);
		return rc;
	}
	for (unsigned i = 0; i < e.nr_seg && !rc; i++) {
		const struct linux_segment *s = &e.seg[i];

		/* The tail past filesz is bss: guest RAM is zero already, but check it fits. */
		rc = vm_gpa_to_hva(vm, s->paddr, s->memsz) ? 0 : -EFBIG;
		if (!rc)
			rc = lx_copy(vm, s->paddr, k->data + s->offset, s->filesz,
				     "kernel segment");
		else
			log_err(SUB, "kernel segment at 0x%llx does not fit in guest RAM",
				(unsigned long long)s->paddr);
	}
	b->entry = e.entry;
	b->kernel_end = e.end;
	b->initrd_max = 0x7fffffff;
	b->cmdline_size = 2047;
	/* A vmlinux carries no setup header: make the minimal one the kernel reads. */
	b->hdr_len = 0x202 + 0x6a - BP_HDR;
	put32(b->hdr + (0x202 - BP_HDR), LINUX_HDR_MAGIC);
	b->hdr[0x1fe - BP_HDR] = 0x55;
	b->hdr[0x1ff - BP_HDR] = 0xaa;
	b->hdr[0x206 - BP_HDR] = LINUX_MIN_VERSION & 0xff;
	b->hdr[0x207 - BP_HDR] = LINUX_MIN_VERSION >> 8;
	b->hdr[0x211 - BP_HDR] = LINUX_LOADED_HIGH;
	put32(b->hdr + (0x230 - BP_HDR), 0x1000000); /* kernel_alignment */
	return rc;
}

static int lx_load_bzimage(struct vm *vm, const struct lx_file *k, struct lx_boot *b)
{
	struct linux_setup s;
	char err[256];
	uint64_t size;
	int rc = linux_parse_setup(k->data, k->len, &s, err, sizeof(err));

	if (rc) {
		log_err(SUB, "kernel: %s", err);
		return rc;
	}
	size = k->len - s.pm_offset;
	rc = lx_copy(vm, LX_KERNEL_ADDR, k->data + s.pm_offset, size, "kernel");
	if (rc)
		return rc;
	b->entry = LX_KERNEL_ADDR + 0x200; /* the 64-bit entry, startup_64 */
	b->kernel_end = LX_KERNEL_ADDR + (s.init_size > size ? s.init_size : size);
	b->initrd_max = s.initrd_addr_max;
	b->cmdline_size = s.cmdline_size ? s.cmdline_size : 255;
	b->hdr_len = s.hdr_len;
	memcpy(b->hdr, k->data + BP_HDR, s.hdr_len);
	if (!vm_gpa_to_hva(vm, LX_KERNEL_ADDR, b->kernel_end - LX_KERNEL_ADDR)) {
		log_err(SUB, "kernel needs %llu MiB from 16 MiB: give the VM more memory",
			(unsigned long long)((b->kernel_end - LX_KERNEL_ADDR) >> 20));
		return -EFBIG;
	}
	return 0;
}

/* The initrd goes at the top of low RAM, below the kernel's limit, page aligned. */
static int lx_load_initrd(struct vm *vm, const char *path, const struct lx_boot *b, uint64_t *addr,
			  uint64_t *size)
{
	struct lx_file f;
	uint64_t top = vm->slots[0].size, a;
	int rc = lx_map_file(path, "initrd", &f);

	if (rc)
		return rc;
	measure_extend(vm->measurement, "initrd", f.data, f.len);
	if (top > (uint64_t)b->initrd_max + 1)
		top = (uint64_t)b->initrd_max + 1;
	a = (top - f.len) & ~(VM_PAGE_SIZE - 1);
	if (f.len > top || a < b->kernel_end) {
		log_err(SUB, "initrd %s (%zu bytes) does not fit between the kernel and %llu MiB",
			path, f.len, (unsigned long long)(top >> 20));
		rc = -EFBIG;
	} else {
		rc = lx_copy(vm, a, f.data, f.len, "initrd");
		*addr = a;
		*size = f.len;
	}
	lx_unmap(&f);
	return rc;
}

static void e820_add(uint8_t *zp, uint64_t addr, uint64_t size, uint32_t type)
{
	uint8_t *e = zp + BP_E820_TABLE + zp[BP_E820_ENTRIES] * 20;

	memcpy(e, &addr, 8);
	memcpy(e + 8, &size, 8);
	memcpy(e + 16, &type, 4);
	zp[BP_E820_ENTRIES]++;
}

/* RAM below the EBDA, the BIOS area reserved (ACPI tables live there), RAM from 1 MiB to
 * the hole, and RAM above 4 GiB. */
static void lx_write_e820(struct vm *vm, uint8_t *zp)
{
	e820_add(zp, 0, LX_EBDA, E820_RAM);
	e820_add(zp, 0xe0000, 0x20000, E820_RESERVED);
	e820_add(zp, LX_HIGH, vm->slots[0].size - LX_HIGH, E820_RAM);
	if (vm->nr_slots > 1)
		e820_add(zp, vm->slots[1].gpa, vm->slots[1].size, E820_RAM);
}

static int lx_write_zero_page(struct vm *vm, const struct lx_boot *b, const char *cmdline,
			      uint64_t initrd, uint64_t initrd_size)
{
	uint8_t *zp = vm->slots[0].hva + LX_ZERO_PAGE;
	size_t n = cmdline ? strlen(cmdline) : 0;

	if (n > b->cmdline_size || n >= LX_CMDLINE_MAX) {
		log_err(SUB, "command line is %zu bytes, this kernel takes at most %u", n,
			b->cmdline_size);
		return -E2BIG;
	}
	memset(zp, 0, 4096);
	memcpy(vm->slots[0].hva + LX_CMDLINE, cmdline ? cmdline : "", n + 1);
	memcpy(zp + BP_HDR, b->hdr, b->hdr_len);
	zp[0x210] = 0xff;			 /* type_of_loader: undefined */
	zp[0x211] |= LINUX_CAN_USE_HEAP;	 /* loadflags */
	zp[0x224] = 0x00, zp[0x225] = 0xfe;	 /* heap_end_ptr = 0xfe00 */
	put32(zp + 0x228, (uint32_t)LX_CMDLINE); /* cmd_line_ptr */
	put32(zp + 0x218, (uint32_t)initrd);	 /* ramdisk_image */
	put32(zp + 0x21c, (uint32_t)initrd_size);
	put32(zp + BP_EXT_RAMDISK_IMAGE, (uint32_t)(initrd >> 32));
	put32(zp + BP_EXT_RAMDISK_SIZE, (uint32_t)(initrd_size >> 32));
	put32(zp + BP_EXT_CMD_LINE_PTR, 0);
	lx_write_e820(vm, zp);
	return 0;
}

/* The boot protocol's GDT: __BOOT_CS 0x10, __BOOT_DS 0x18; a TSS so VM entry accepts
 * TR (the kernel loads its own right away). */
static int lx_set_entry(struct vm *vm, const struct lx_boot *b)
{
	static const uint64_t gdt[4] = { 0, 0, 0x00af9a000000ffffull, 0x00cf92000000ffffull };
	uint8_t *mem = vm->slots[0].hva;
	struct boot_lm lm = { .gdt = LX_GDT,
			      .gdt_limit = 6 * 8 - 1,
			      .tss = LX_TSS,
			      .tss_limit = 0x67,
			      .cs = SEL_BOOT_CS,
			      .ds = SEL_BOOT_DS,
			      .tr = SEL_BOOT_TSS };
	struct kvm_regs r = {
		.rip = b->entry, .rsi = LX_ZERO_PAGE, .rsp = LX_STACK_TOP, .rflags = 0x2
	};
	struct vcpu *bsp = &vm->vcpus[0];
	int rc;

	memcpy(mem + LX_GDT, gdt, sizeof(gdt));
	gdt_put_tss(mem + LX_GDT, SEL_BOOT_TSS, LX_TSS, 0x67);
	rc = boot_set_long_mode(bsp, &lm);
	if (!rc && ioctl(bsp->fd, KVM_SET_REGS, &r) < 0)
		rc = -errno;
	return rc;
}

/* What firmware would have set: fast strings, and write-back as the default memory type
 * (without MTRRs enabled a kernel on real hardware runs uncached). */
static int lx_set_msrs(struct vm *vm)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e[2];
	} m = { .h.nmsrs = 2,
		.e = { { .index = 0x1a0, .data = 1 }, { .index = 0x2ff, .data = 0x806 } } };

	for (unsigned i = 0; i < vm->cfg.nr_vcpus; i++)
		if (ioctl(vm->vcpus[i].fd, KVM_SET_MSRS, &m) != 2)
			log_warn(SUB, "vcpu=%u boot MSRs not all accepted", i);
	return 0;
}

/* Hide what this VMM does not save or migrate: the PMU (leaf 0xa) and thermal and power
 * management (leaf 6). A guest must not start using state that a snapshot would lose. */
static int lx_filter_cpuid(struct vm *vm)
{
	int rc = 0;

	for (unsigned i = 0; i < vm->cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &vm->cpuid->entries[i];

		if (e->function == 0xa || e->function == 6)
			e->eax = e->ebx = e->ecx = e->edx = 0;
	}
	for (unsigned i = 0; !rc && i < vm->cfg.nr_vcpus; i++)
		rc = vcpu_apply_cpuid(&vm->vcpus[i], vm->cpuid);
	return rc;
}

/* The command line with one virtio_mmio.device=4K@ADDR:IRQ per virtio device (malloc'd;
 * NULL when out of memory). */
static char *with_devices(const struct vm *vm, const char *cmdline)
{
	unsigned count = vm_virtio_count(&vm->cfg);
	size_t len = (cmdline ? strlen(cmdline) : 0) + 64 * (size_t)count + 1, n;
	char *buf = malloc(len);

	if (!buf)
		return NULL;
	n = (size_t)snprintf(buf, len, "%s", cmdline ? cmdline : "");
	for (unsigned i = 0; i < count; i++)
		n += (size_t)snprintf(buf + n, len - n, "%svirtio_mmio.device=4K@0x%llx:%u",
				      n ? " " : "",
				      (unsigned long long)(VIRTIO_MMIO_BASE + i * VIRTIO_MMIO_SIZE),
				      virtio_irq(i));
	return buf;
}

int vm_load_linux(struct vm *vm, const char *kernel, const char *initrd, const char *cmdline)
{
	struct lx_boot b = { 0 };
	char *full = NULL;
	struct lx_file k;
	uint64_t rd = 0, rd_size = 0;
	int rc;

	if (vm->cfg.confidential) { /* its boot path runs through firmware CME has not */
		log_err(SUB, "--confidential: a Linux kernel under SEV needs firmware (OVMF); "
			     "CME launches confidential guests from flat images only");
		return -ENOTSUP;
	}
	rc = lx_map_file(kernel, "kernel", &k);
	if (rc)
		return rc;
	measure_extend(vm->measurement, "kernel", k.data, k.len);
	rc = linux_is_elf(k.data, k.len) ? lx_load_elf(vm, &k, &b) : lx_load_bzimage(vm, &k, &b);
	lx_unmap(&k);
	if (!rc && initrd)
		rc = lx_load_initrd(vm, initrd, &b, &rd, &rd_size);
	if (!rc && !(full = with_devices(vm, cmdline)))
		rc = -ENOMEM;
	if (!rc)
		rc = lx_write_zero_page(vm, &b, full, rd, rd_size);
	free(full);
	if (!rc)
		rc = boot_page_tables(vm) < 0 ? -EINVAL : 0;
	if (!rc)
		rc = acpi_build(vm) < 0 ? -EFBIG : 0;
	if (!rc)
		rc = lx_filter_cpuid(vm);
	if (!rc)
		rc = lx_set_entry(vm, &b);
	if (!rc)
		rc = lx_set_msrs(vm);
	if (!rc) {
		measure_extend(vm->measurement, "cmdline", cmdline ? cmdline : "",
			       cmdline ? strlen(cmdline) : 0);
		vm->measured = true;
		vm->boot_kind = "linux";
	}
	return rc;
}

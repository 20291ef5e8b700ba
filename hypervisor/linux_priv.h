/* Linux kernel images: the x86 boot protocol's setup header (bzImage) and ELF vmlinux,
 * parsed as pure functions over the file's bytes (unit-tested against the real kernel). */
#ifndef CME_LINUX_PRIV_H
#define CME_LINUX_PRIV_H

#include <stddef.h>
#include <stdint.h>

#define LINUX_HDR_OFFSET    0x1f1
#define LINUX_HDR_MAGIC	    0x53726448 /* "HdrS" */
#define LINUX_MIN_VERSION   0x020c     /* xloadflags: the 64-bit entry exists */
#define LINUX_XLF_KERNEL_64 0x1
#define LINUX_LOADED_HIGH   0x1
#define LINUX_CAN_USE_HEAP  0x80
#define LINUX_MAX_SEGMENTS  8

/* What a loader needs from a bzImage's setup header. */
struct linux_setup {
	unsigned setup_sects; /* 512-byte sectors of real-mode setup after the boot sector */
	uint16_t version;
	uint8_t loadflags;
	uint16_t xloadflags;
	uint32_t initrd_addr_max;
	uint32_t kernel_alignment;
	uint8_t relocatable;
	uint32_t cmdline_size; /* longest command line, without the NUL */
	uint64_t pref_address;
	uint32_t init_size; /* memory the kernel needs from its load address */
	size_t hdr_len;	    /* bytes of setup header to copy into the zero page */
	size_t pm_offset;   /* file offset of the protected-mode kernel */
};

struct linux_segment {
	uint64_t offset, filesz, paddr, memsz;
};

/* An ELF vmlinux: loadable segments at their physical addresses, and the 64-bit entry. */
struct linux_elf {
	struct linux_segment seg[LINUX_MAX_SEGMENTS];
	unsigned nr_seg;
	uint64_t entry;
	uint64_t end; /* highest physical byte + 1 */
};

/* Parse and check a bzImage setup header. Returns 0, or -EINVAL/-ENOTSUP with a reason. */
int linux_parse_setup(const uint8_t *img, size_t len, struct linux_setup *out, char *err,
		      size_t errlen);
/* Parse and check an x86-64 ELF executable. Returns 0 or -EINVAL with a reason. */
int linux_parse_elf(const uint8_t *img, size_t len, struct linux_elf *out, char *err,
		    size_t errlen);
/* True when the bytes start like an ELF file. */
int linux_is_elf(const uint8_t *img, size_t len);

#endif

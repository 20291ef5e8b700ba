/* Pure parsing of Linux kernel images. Every field is checked against the file's size
 * before it is used: a kernel file is input like any other. */
#include "linux_priv.h"

#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common.h"

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static int parse_fail(char *err, size_t errlen, int rc, const char *msg)
{
	snprintf(err, errlen, "%s", msg);
	return rc;
}

int linux_is_elf(const uint8_t *img, size_t len)
{
	return len >= SELFMAG && !memcmp(img, ELFMAG, SELFMAG);
}

static void setup_fields(const uint8_t *img, struct linux_setup *s)
{
	s->setup_sects = img[0x1f1] ? img[0x1f1] : 4;
	s->version = le16(img + 0x206);
	s->loadflags = img[0x211];
	s->initrd_addr_max = le32(img + 0x22c);
	s->kernel_alignment = le32(img + 0x230);
	s->relocatable = img[0x234];
	s->xloadflags = le16(img + 0x236);
	s->cmdline_size = le32(img + 0x238);
	s->pref_address = (uint64_t)le32(img + 0x258) | (uint64_t)le32(img + 0x25c) << 32;
	s->init_size = le32(img + 0x260);
	/* The header runs from 0x1f1 to 0x202 + the byte at 0x201 (the jump's offset). */
	s->hdr_len = 0x202 + img[0x201] - LINUX_HDR_OFFSET;
	s->pm_offset = (size_t)(s->setup_sects + 1) * 512;
}

int linux_parse_setup(const uint8_t *img, size_t len, struct linux_setup *s, char *err,
		      size_t errlen)
{
	memset(s, 0, sizeof(*s));
	if (len < 0x264 || le16(img + 0x1fe) != 0xaa55 || le32(img + 0x202) != LINUX_HDR_MAGIC)
		return parse_fail(err, errlen, -EINVAL,
				  "not a Linux bzImage (no boot sector signature or HdrS)");
	setup_fields(img, s);
	if (s->version < LINUX_MIN_VERSION || !(s->xloadflags & LINUX_XLF_KERNEL_64))
		return parse_fail(
			err, errlen, -ENOTSUP,
			"kernel has no 64-bit entry (boot protocol 2.12 or later needed)");
	if (!(s->loadflags & LINUX_LOADED_HIGH))
		return parse_fail(err, errlen, -ENOTSUP,
				  "kernel is not loadable at 1 MiB or above");
	if (s->pm_offset >= len || s->hdr_len > 0x290 - LINUX_HDR_OFFSET)
		return parse_fail(err, errlen, -EINVAL, "bzImage setup header is corrupt");
	if (s->kernel_alignment == 0 || (s->kernel_alignment & (s->kernel_alignment - 1)))
		return parse_fail(err, errlen, -EINVAL,
				  "bzImage kernel_alignment is not a power of 2");
	return 0;
}

static int elf_check_header(const Elf64_Ehdr *eh, size_t len, char *err, size_t errlen)
{
	uint64_t ph_end;

	if (len < sizeof(*eh) || !linux_is_elf((const uint8_t *)eh, len) ||
	    eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB)
		return parse_fail(err, errlen, -EINVAL, "not a 64-bit little-endian ELF file");
	if (eh->e_machine != EM_X86_64 || eh->e_type != ET_EXEC)
		return parse_fail(err, errlen, -EINVAL, "ELF file is not an x86-64 executable");
	if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum == 0 ||
	    __builtin_mul_overflow((uint64_t)eh->e_phnum, sizeof(Elf64_Phdr), &ph_end) ||
	    !range_within(eh->e_phoff, ph_end, 0, len))
		return parse_fail(err, errlen, -EINVAL, "ELF program headers are corrupt");
	return 0;
}

static int elf_add_segment(struct linux_elf *e, const Elf64_Phdr *ph, size_t len, char *err,
			   size_t errlen)
{
	uint64_t end;

	if (e->nr_seg == LINUX_MAX_SEGMENTS)
		return parse_fail(err, errlen, -EINVAL, "ELF file has too many loadable segments");
	if (ph->p_filesz > ph->p_memsz || !range_within(ph->p_offset, ph->p_filesz, 0, len) ||
	    add_overflows_u64(ph->p_paddr, ph->p_memsz, &end))
		return parse_fail(err, errlen, -EINVAL, "ELF segment lies outside the file");
	e->seg[e->nr_seg++] =
		(struct linux_segment){ ph->p_offset, ph->p_filesz, ph->p_paddr, ph->p_memsz };
	if (end > e->end)
		e->end = end;
	return 0;
}

int linux_parse_elf(const uint8_t *img, size_t len, struct linux_elf *e, char *err, size_t errlen)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)img;
	int rc = elf_check_header(eh, len, err, errlen);

	memset(e, 0, sizeof(*e));
	if (rc)
		return rc;
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *ph = (const Elf64_Phdr *)(img + eh->e_phoff) + i;

		if (ph->p_type == PT_LOAD && ph->p_memsz) {
			rc = elf_add_segment(e, ph, len, err, errlen);
			if (rc)
				return rc;
		}
	}
	if (!e->nr_seg)
		return parse_fail(err, errlen, -EINVAL, "ELF file has nothing to load");
	e->entry = eh->e_entry;
	return 0;
}

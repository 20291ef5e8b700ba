/* The x86 boot protocol parser against Debian's real kernel (the Linux guest kit) and
 * against damaged headers. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "linux_priv.h"
#include "unit.h"

struct file {
	uint8_t *p;
	size_t len;
};

static bool map_kit(const char *name, struct file *f)
{
	char path[512];
	const char *b = getenv("CME_BUILD");
	struct stat st;
	int fd;

	snprintf(path, sizeof(path), "%s/guest/linux/%s", b ? b : "build", name);
	fd = open(path, O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		CU_FAIL("Linux guest kit missing: make guests builds it");
		if (fd >= 0)
			close(fd);
		return false;
	}
	f->len = (size_t)st.st_size;
	f->p = mmap(NULL, f->len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	close(fd);
	return f->p != MAP_FAILED;
}

static void test_real_bzimage(void)
{
	struct linux_setup s;
	struct file f;
	char err[256] = "";

	if (!map_kit("vmlinuz", &f))
		return;
	CU_ASSERT_EQUAL_FATAL(linux_parse_setup(f.p, f.len, &s, err, sizeof(err)), 0);
	CU_ASSERT(s.version >= 0x020f);
	CU_ASSERT(s.loadflags & LINUX_LOADED_HIGH);
	CU_ASSERT(s.xloadflags & LINUX_XLF_KERNEL_64);
	CU_ASSERT(s.relocatable);
	CU_ASSERT(s.kernel_alignment >= 4096 && !(s.kernel_alignment & (s.kernel_alignment - 1)));
	CU_ASSERT_EQUAL(s.initrd_addr_max, 0x7fffffff);
	CU_ASSERT(s.cmdline_size >= 255);
	CU_ASSERT_EQUAL(s.pref_address, 0x1000000);
	CU_ASSERT(s.init_size > f.len - s.pm_offset); /* it decompresses into more */
	CU_ASSERT(s.pm_offset > 512 && s.pm_offset < f.len);
	CU_ASSERT(s.hdr_len > 0x60 && s.hdr_len <= 0x290 - 0x1f1);
	/* Damage: an old protocol, no 64-bit entry, no HdrS, cut short. */
	f.p[0x206] = 0x0b, f.p[0x207] = 0x02;
	CU_ASSERT_EQUAL(linux_parse_setup(f.p, f.len, &s, err, sizeof(err)), -ENOTSUP);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "64-bit entry"));
	f.p[0x206] = 0x0f;
	f.p[0x236] &= (uint8_t)~LINUX_XLF_KERNEL_64;
	CU_ASSERT_EQUAL(linux_parse_setup(f.p, f.len, &s, err, sizeof(err)), -ENOTSUP);
	f.p[0x202] = 'X';
	CU_ASSERT_EQUAL(linux_parse_setup(f.p, f.len, &s, err, sizeof(err)), -EINVAL);
	CU_ASSERT_EQUAL(linux_parse_setup(f.p, 0x200, &s, err, sizeof(err)), -EINVAL);
	munmap(f.p, f.len);
}

static void test_real_vmlinux(void)
{
	struct linux_elf e;
	struct file f;
	char err[256] = "";

	if (!map_kit("vmlinux", &f))
		return;
	CU_ASSERT_TRUE(linux_is_elf(f.p, f.len));
	CU_ASSERT_EQUAL_FATAL(linux_parse_elf(f.p, f.len, &e, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(e.entry, 0x1000000); /* startup_64, physical */
	CU_ASSERT(e.nr_seg >= 2);
	CU_ASSERT_EQUAL(e.seg[0].paddr, 0x1000000);
	CU_ASSERT(e.end > 0x2000000 && e.end < 0x10000000);
	/* Program headers pointing past the end of the file. */
	CU_ASSERT_EQUAL(linux_parse_elf(f.p, 4096, &e, err, sizeof(err)), -EINVAL);
	f.p[4] = 1; /* ELFCLASS32 */
	CU_ASSERT_EQUAL(linux_parse_elf(f.p, f.len, &e, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "64-bit"));
	munmap(f.p, f.len);
}

void suite_linux_parse(void)
{
	static const struct test_case cases[] = {
		{ "boot protocol: Debian's bzImage setup header", test_real_bzimage },
		{ "ELF vmlinux: segments and 64-bit entry", test_real_vmlinux },
		{ NULL, NULL },
	};
	test_add_suite("linux_parse", cases);
}

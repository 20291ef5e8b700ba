/* CPU templates: the CPUID a guest sees, masked down from what KVM offers to a named level
 * (common's feature table), and the comparisons that keep a guest on hosts that offer
 * everything it sees. */
#include "cpu_priv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define SUB "cpu"

#define XCR0_X87_SSE_AVX 0x7u  /* XSAVE components 0-2 */
#define XCR0_AVX512	 0xe0u /* opmask, ZMM_Hi256, Hi16_ZMM */
#define XSAVE_LEGACY	 576u  /* legacy area and header: the least an XSAVE area holds */

/* AMD repeats these CPUID 1 EDX bits (fpu..pse36, mmx, fxsr) in CPUID 0x80000001 EDX: a
 * host that has the feature says so in leaf 1, so the copy is no feature of its own. */
#define AMD_LEAF1_COPIES 0x0183f3ffu

/* The feature words: the registers whose bits are features (common's table names most of
 * them), with the bits that are not features of their own. */
static const struct word {
	uint32_t leaf, subleaf;
	uint8_t reg;
	uint32_t other; /* set at run time (osxsave, hypervisor, ospke), or AMD's copies */
} words[] = {
	{ 1, 0, CPU_ECX, (1u << 27) | (1u << 31) },
	{ 1, 0, CPU_EDX, 0 },
	{ 7, 0, CPU_EBX, 0 },
	{ 7, 0, CPU_ECX, 1u << 4 },
	{ 7, 0, CPU_EDX, 0 },
	{ 7, 1, CPU_EAX, 0 },
	{ 0xd, 1, CPU_EAX, 0 },
	{ 0x80000001, 0, CPU_ECX, 0 },
	{ 0x80000001, 0, CPU_EDX, AMD_LEAF1_COPIES },
	{ 0x80000008, 0, CPU_EBX, 0 },
};

static const char *const reg_names[] = { "eax", "ebx", "ecx", "edx" };

/* A list of names being written into a caller's buffer: those that do not fit are counted
 * and said as " and N more" at the end. */
struct names {
	char *buf;
	size_t len, off;
	const char *sep;
	unsigned n, cut;
};

#define MORE_ROOM 20 /* " and 4294967295 more" */

static void names_add(struct names *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void names_add(struct names *l, const char *fmt, ...)
{
	char one[64];
	va_list ap;
	int k;

	va_start(ap, fmt);
	vsnprintf(one, sizeof(one), fmt, ap);
	va_end(ap);
	l->n++;
	k = snprintf(NULL, 0, "%s%s", l->n > 1 ? l->sep : "", one);
	if (l->cut || l->off + (size_t)k + MORE_ROOM >= l->len) {
		l->cut++;
		return;
	}
	l->off += (size_t)snprintf(l->buf + l->off, l->len - l->off, "%s%s", l->n > 1 ? l->sep : "",
				   one);
}

/* The end of the list; returns how many names it has in all. */
static unsigned names_end(struct names *l)
{
	if (l->cut && l->len > l->off)
		snprintf(l->buf + l->off, l->len - l->off, " and %u more", l->cut);
	return l->n;
}

static void names_start(struct names *l, char *buf, size_t len, const char *sep)
{
	*l = (struct names){ .buf = buf, .len = len, .sep = sep };
	if (len)
		buf[0] = 0;
}

int cpu_supported(int kvm_fd, struct kvm_cpuid2 **out)
{
	for (unsigned n = 128; n <= 4096; n *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

		if (!c)
			return -ENOMEM;
		c->nent = n;
		if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			*out = c;
			return 0;
		}
		free(c);
		if (errno != E2BIG) {
			int err = -errno;

			log_err(SUB, "KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
			return err;
		}
	}
	return -E2BIG;
}

struct kvm_cpuid_entry2 *cpu_find(const struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
	for (unsigned i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn && c->entries[i].index == idx)
			return (struct kvm_cpuid_entry2 *)&c->entries[i];
	return NULL;
}

static uint32_t *reg_of(struct kvm_cpuid_entry2 *e, uint8_t reg)
{
	switch (reg) {
	case CPU_EAX: return &e->eax;
	case CPU_EBX: return &e->ebx;
	case CPU_ECX: return &e->ecx;
	default: return &e->edx;
	}
}

/* The word (leaf, subleaf, reg) of c; 0 when c has no such leaf. */
static uint32_t word_of(const struct kvm_cpuid2 *c, uint32_t leaf, uint32_t subleaf, uint8_t reg)
{
	struct kvm_cpuid_entry2 *e = cpu_find(c, leaf, subleaf);

	return e ? *reg_of(e, reg) : 0;
}

static bool has(const struct kvm_cpuid2 *c, const struct cpu_feature *f)
{
	return word_of(c, f->leaf, f->subleaf, f->reg) >> f->bit & 1;
}

/* The bits of a feature word that template level keeps. */
static uint32_t level_mask(const struct word *w, int level)
{
	size_t n;
	const struct cpu_feature *t = cpu_feature_table(&n);
	uint32_t m = 0;

	for (size_t i = 0; i < n; i++)
		if (t[i].leaf == w->leaf && t[i].subleaf == w->subleaf && t[i].reg == w->reg &&
		    t[i].level && t[i].level <= level)
			m |= 1u << t[i].bit;
	return m;
}

/* The name of bit b of word w: the table's, or where it is. */
static void add_bit(struct names *l, const struct word *w, unsigned b)
{
	size_t n;
	const struct cpu_feature *t = cpu_feature_table(&n);

	for (size_t i = 0; i < n; i++) {
		if (t[i].leaf == w->leaf && t[i].subleaf == w->subleaf && t[i].reg == w->reg &&
		    t[i].bit == b) {
			names_add(l, "%s", t[i].name);
			return;
		}
	}
	names_add(l, "cpuid 0x%x.%u %s bit %u", w->leaf, w->subleaf, reg_names[w->reg], b);
}

unsigned cpu_lacks(const struct kvm_cpuid2 *guest, const struct kvm_cpuid2 *host, char *out,
		   size_t len)
{
	struct names l;

	names_start(&l, out, len, ", ");
	for (size_t i = 0; i < ARRAY_SIZE(words); i++) {
		const struct word *w = &words[i];
		uint32_t lack = word_of(guest, w->leaf, w->subleaf, w->reg) & ~w->other &
				~word_of(host, w->leaf, w->subleaf, w->reg);

		for (unsigned b = 0; b < 32; b++)
			if (lack >> b & 1)
				add_bit(&l, w, b);
	}
	return names_end(&l);
}

int cpu_feature_names(const struct kvm_cpuid2 *c, const char *sep, char *out, size_t len)
{
	size_t n;
	const struct cpu_feature *t = cpu_feature_table(&n);
	struct names l;

	names_start(&l, out, len, sep);
	for (size_t i = 0; i < n; i++)
		if (has(c, &t[i]))
			names_add(&l, "%s", t[i].name);
	return l.cut ? -ENOSPC : (int)names_end(&l);
}

/* XSAVE (leaf 0xd) for a template: without xsave none of it; with it only the components
 * the template's features use, and the area sizes that go with them. */
static void mask_xsave(struct kvm_cpuid2 *c, int level)
{
	uint32_t keep = level >= 4 ? XCR0_X87_SSE_AVX | XCR0_AVX512 : XCR0_X87_SSE_AVX;
	uint32_t size = XSAVE_LEGACY;
	struct kvm_cpuid_entry2 *e0 = cpu_find(c, 0xd, 0);

	if (level < 3 || !e0)
		keep = 0;
	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function != 0xd || e->index < 2)
			continue;
		if (e->index >= 32 || !(keep >> e->index & 1) || !(e0->eax >> e->index & 1))
			e->eax = e->ebx = e->ecx = e->edx = 0;
		else if (e->eax + e->ebx > size)
			size = e->eax + e->ebx;
	}
	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function != 0xd || e->index > 1)
			continue;
		if (!keep) {
			e->eax = e->ebx = e->ecx = e->edx = 0;
		} else if (e->index == 0) {
			e->eax &= keep;
			e->ebx = e->ecx = size;
			e->edx = 0;
		} else {
			e->ebx = e->ecx = e->edx = 0; /* no XSAVES, no supervisor components */
		}
	}
}

/* Leaves a template hides whole: what it does not describe (thermal and power, the PMU,
 * SGX, processor trace, RDT, memory encryption, AMD's extended features). */
static bool hidden_leaf(const struct kvm_cpuid_entry2 *e)
{
	static const uint32_t leaves[] = { 6, 0xa, 0xf, 0x10, 0x12, 0x14, 0x8000001f, 0x80000021 };

	if (e->function == 7 && e->index > 0)
		return true;
	for (size_t i = 0; i < ARRAY_SIZE(leaves); i++)
		if (e->function == leaves[i])
			return true;
	return false;
}

static void mask_to(struct kvm_cpuid2 *c, int level)
{
	struct kvm_cpuid_entry2 *e;

	for (size_t i = 0; i < ARRAY_SIZE(words); i++) {
		e = cpu_find(c, words[i].leaf, words[i].subleaf);
		if (e)
			*reg_of(e, words[i].reg) &= level_mask(&words[i], level);
	}
	e = cpu_find(c, 7, 0);
	if (e)
		e->eax = 0; /* no subleaf beyond 0 */
	for (unsigned i = 0; i < c->nent; i++)
		if (hidden_leaf(&c->entries[i]))
			c->entries[i].eax = c->entries[i].ebx = c->entries[i].ecx =
				c->entries[i].edx = 0;
	mask_xsave(c, level);
}

int cpu_template_apply(struct kvm_cpuid2 *c, int level, char *err, size_t errlen)
{
	size_t n;
	const struct cpu_feature *t = cpu_feature_table(&n);
	char missing[512];
	struct names l;

	if (level < 0 || level > CPU_TEMPLATE_MAX_LEVEL)
		return -EINVAL;
	names_start(&l, missing, sizeof(missing), ", ");
	for (size_t i = 0; i < n; i++)
		if (t[i].level && t[i].level <= level && !has(c, &t[i]))
			names_add(&l, "%s", t[i].name);
	if (names_end(&l)) {
		snprintf(err, errlen, "this host lacks %s", missing);
		return -ENOTSUP;
	}
	if (level)
		mask_to(c, level);
	return 0;
}

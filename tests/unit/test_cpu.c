/* CPU features and templates: common's feature table and name lists, and the hypervisor's
 * masking of a CPUID table down to a template (on tables built here, no KVM). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_priv.h"
#include "harness.h"
#include "unit.h"

/* ---- the feature table ------------------------------------------------------------ */

static void test_table_unique(void)
{
	size_t n;
	const struct cpu_feature *t = cpu_feature_table(&n);

	CU_ASSERT_FATAL(n > 100);
	for (size_t i = 0; i < n; i++) {
		CU_ASSERT(t[i].bit < 32);
		CU_ASSERT(t[i].reg <= CPU_EDX);
		CU_ASSERT(t[i].level <= CPU_TEMPLATE_MAX_LEVEL);
		CU_ASSERT(t[i].name[0] && !strchr(t[i].name, ','));
		for (size_t j = i + 1; j < n; j++) {
			CU_ASSERT(strcmp(t[i].name, t[j].name) != 0);
			CU_ASSERT(t[i].leaf != t[j].leaf || t[i].subleaf != t[j].subleaf ||
				  t[i].reg != t[j].reg || t[i].bit != t[j].bit);
		}
	}
}

static void test_find(void)
{
	const struct cpu_feature *f = cpu_feature_find("avx2");

	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	CU_ASSERT_EQUAL(f->leaf, 7);
	CU_ASSERT_EQUAL(f->subleaf, 0);
	CU_ASSERT_EQUAL(f->reg, CPU_EBX);
	CU_ASSERT_EQUAL(f->bit, 5);
	CU_ASSERT_EQUAL(f->level, 3);
	f = cpu_feature_find("sse3"); /* Linux's "pni" */
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	CU_ASSERT_EQUAL(f->leaf, 1);
	CU_ASSERT_EQUAL(f->reg, CPU_ECX);
	CU_ASSERT_EQUAL(f->bit, 0);
	CU_ASSERT_PTR_NULL(cpu_feature_find("hypervisor")); /* the VMM's own, not a feature */
	CU_ASSERT_PTR_NULL(cpu_feature_find("osxsave"));    /* changes at run time */
	CU_ASSERT_PTR_NULL(cpu_feature_find("nonsense"));
	CU_ASSERT_PTR_NULL(cpu_feature_find(NULL));
}

static void test_template_names(void)
{
	CU_ASSERT_EQUAL(cpu_template_level("host"), 0);
	CU_ASSERT_EQUAL(cpu_template_level(NULL), 0);
	CU_ASSERT_EQUAL(cpu_template_level(""), 0);
	CU_ASSERT_EQUAL(cpu_template_level("x86-64-v1"), 1);
	CU_ASSERT_EQUAL(cpu_template_level("x86-64-v3"), 3);
	CU_ASSERT_EQUAL(cpu_template_level("x86-64-v4"), 4);
	CU_ASSERT_EQUAL(cpu_template_level("x86-64-v5"), -EINVAL);
	CU_ASSERT_EQUAL(cpu_template_level("HOST"), -EINVAL);
	for (int l = 0; l <= CPU_TEMPLATE_MAX_LEVEL; l++)
		CU_ASSERT_EQUAL(cpu_template_level(cpu_template_name(l)), l);
	CU_ASSERT_STRING_EQUAL(cpu_template_name(7), "unknown");
}

/* Is name in the comma-separated list? */
static bool in_list(const char *list, const char *name)
{
	return cpu_list_lacks(list, name, NULL, 0) == 0;
}

static void test_template_features(void)
{
	char b[2048];

	CU_ASSERT_EQUAL(cpu_template_features(0, b, sizeof(b)), 0);
	CU_ASSERT_STRING_EQUAL(b, "");
	CU_ASSERT_EQUAL(cpu_template_features(1, b, sizeof(b)), 0);
	CU_ASSERT(in_list(b, "fpu") && in_list(b, "sse2") && in_list(b, "lm") &&
		  in_list(b, "syscall") && in_list(b, "x2apic"));
	CU_ASSERT(!in_list(b, "sse3") && !in_list(b, "cx16"));
	CU_ASSERT_EQUAL(cpu_template_features(2, b, sizeof(b)), 0);
	CU_ASSERT(in_list(b, "sse3") && in_list(b, "ssse3") && in_list(b, "sse4_1") &&
		  in_list(b, "sse4_2") && in_list(b, "popcnt") && in_list(b, "cx16") &&
		  in_list(b, "lahf_lm") && in_list(b, "fpu"));
	CU_ASSERT(!in_list(b, "avx"));
	CU_ASSERT_EQUAL(cpu_template_features(3, b, sizeof(b)), 0);
	CU_ASSERT(in_list(b, "avx") && in_list(b, "avx2") && in_list(b, "bmi1") &&
		  in_list(b, "bmi2") && in_list(b, "f16c") && in_list(b, "fma") &&
		  in_list(b, "abm") && in_list(b, "movbe") && in_list(b, "xsave") &&
		  in_list(b, "popcnt"));
	CU_ASSERT(!in_list(b, "avx512f") && !in_list(b, "aes") && !in_list(b, "rdtscp"));
	CU_ASSERT_EQUAL(cpu_template_features(4, b, sizeof(b)), 0);
	CU_ASSERT(in_list(b, "avx512f") && in_list(b, "avx512bw") && in_list(b, "avx512cd") &&
		  in_list(b, "avx512dq") && in_list(b, "avx512vl"));
	CU_ASSERT_EQUAL(cpu_template_features(4, b, 20), -ENOSPC);
}

static void test_list_lacks(void)
{
	char out[64];

	CU_ASSERT_EQUAL(cpu_list_lacks("a,bb,c", "bb,d,e", out, sizeof(out)), 2);
	CU_ASSERT_STRING_EQUAL(out, "d, e");
	CU_ASSERT_EQUAL(cpu_list_lacks("a,bb,c", "b", out, sizeof(out)), 1); /* whole names */
	CU_ASSERT_EQUAL(cpu_list_lacks("a,bb,c", "", out, sizeof(out)), 0);
	CU_ASSERT_STRING_EQUAL(out, "");
	CU_ASSERT_EQUAL(cpu_list_lacks(NULL, "x,y", out, sizeof(out)), 2);
	CU_ASSERT_EQUAL(cpu_list_lacks("x,y", NULL, out, sizeof(out)), 0);
	CU_ASSERT_EQUAL(cpu_list_lacks("", "alpha,beta,gamma", out, 8), 3); /* cut, counted */
	CU_ASSERT(strlen(out) < 8);
}

static void test_templates_offered(void)
{
	char v3[2048], b[128];

	CU_ASSERT_EQUAL_FATAL(cpu_template_features(3, v3, sizeof(v3)), 0);
	CU_ASSERT_STRING_EQUAL(cpu_templates_offered(v3, ", ", b, sizeof(b)),
			       "host, x86-64-v1, x86-64-v2, x86-64-v3");
	CU_ASSERT_STRING_EQUAL(cpu_templates_offered("fpu,sse2", ",", b, sizeof(b)), "host");
	CU_ASSERT_STRING_EQUAL(cpu_templates_offered("", ",", b, sizeof(b)), "");
	CU_ASSERT_STRING_EQUAL(cpu_templates_offered(NULL, ",", b, sizeof(b)), "");
	CU_ASSERT_STRING_EQUAL(cpu_templates_offered(v3, ",", b, 12), "host,x86-64");
}

/* ---- templates over CPUID tables ---------------------------------------------------- */

#define NENT 24

/* A host that offers every bit of every feature word, XSAVE components 0-9 (component i
 * of 64 bytes at offset 512 + 64 i), a PMU and processor trace. */
static struct kvm_cpuid2 *rich_host(void)
{
	static const struct {
		uint32_t fn, idx;
	} leaves[] = { { 0, 0 },    { 1, 0 },	       { 6, 0 },	  { 7, 0 },
		       { 7, 1 },    { 0xa, 0 },	       { 0xd, 0 },	  { 0xd, 1 },
		       { 0x14, 0 }, { 0x40000001, 0 }, { 0x80000001, 0 }, { 0x80000008, 0 } };
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + NENT * sizeof(c->entries[0]));

	for (size_t i = 0; i < ARRAY_SIZE(leaves); i++)
		c->entries[c->nent++] = (struct kvm_cpuid_entry2){
			.function = leaves[i].fn,
			.index = leaves[i].idx,
			.eax = 0xffffffff,
			.ebx = 0xffffffff,
			.ecx = 0xffffffff,
			.edx = 0xffffffff,
		};
	cpu_find(c, 0xd, 0)->eax = 0x3ff;
	cpu_find(c, 0xd, 0)->edx = 0;
	for (uint32_t i = 2; i < 10; i++)
		c->entries[c->nent++] = (struct kvm_cpuid_entry2){
			.function = 0xd, .index = i, .eax = 64, .ebx = 512 + 64 * i
		};
	return c;
}

/* The word of a table, 0 when missing. */
static uint32_t reg(const struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx, int r)
{
	struct kvm_cpuid_entry2 *e = cpu_find(c, fn, idx);
	uint32_t v[4] = { 0 };

	if (e) {
		v[0] = e->eax;
		v[1] = e->ebx;
		v[2] = e->ecx;
		v[3] = e->edx;
	}
	return v[r];
}

static bool sees(const struct kvm_cpuid2 *c, const char *name)
{
	const struct cpu_feature *f = cpu_feature_find(name);

	return f && reg(c, f->leaf, f->subleaf, f->reg) >> f->bit & 1;
}

static void test_host_unchanged(void)
{
	struct kvm_cpuid2 *c = rich_host(), *ref = rich_host();
	char err[256] = "";

	CU_ASSERT_EQUAL(cpu_template_apply(c, 0, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(memcmp(c, ref, sizeof(*c) + c->nent * sizeof(c->entries[0])), 0);
	CU_ASSERT_EQUAL(cpu_template_apply(c, 5, err, sizeof(err)), -EINVAL);
	free(c);
	free(ref);
}

static void test_mask_v2(void)
{
	struct kvm_cpuid2 *c = rich_host();
	char err[256] = "";

	CU_ASSERT_EQUAL_FATAL(cpu_template_apply(c, 2, err, sizeof(err)), 0);
	CU_ASSERT(sees(c, "sse3") && sees(c, "popcnt") && sees(c, "cx16") && sees(c, "lahf_lm") &&
		  sees(c, "sse2") && sees(c, "nx") && sees(c, "x2apic"));
	CU_ASSERT(!sees(c, "avx") && !sees(c, "xsave") && !sees(c, "aes") && !sees(c, "vmx") &&
		  !sees(c, "rdtscp") && !sees(c, "pdpe1gb"));
	/* Exactly the template's bits, nothing the table does not name. */
	CU_ASSERT_EQUAL(reg(c, 1, 0, CPU_ECX), (1u << 0) | (1u << 9) | (1u << 13) | (1u << 19) |
						       (1u << 20) | (1u << 21) | (1u << 23) |
						       (1u << 24));
	CU_ASSERT_EQUAL(reg(c, 7, 0, CPU_EAX), 0);
	CU_ASSERT_EQUAL(reg(c, 7, 0, CPU_EBX) | reg(c, 7, 0, CPU_ECX) | reg(c, 7, 0, CPU_EDX), 0);
	CU_ASSERT_EQUAL(reg(c, 7, 1, CPU_EAX), 0);
	CU_ASSERT_EQUAL(reg(c, 0x80000008, 0, CPU_EBX), 0);
	/* No XSAVE at all, no PMU, no processor trace; other leaves as they were. */
	for (uint32_t i = 0; i < 10; i++)
		CU_ASSERT_EQUAL(reg(c, 0xd, i, CPU_EAX) | reg(c, 0xd, i, CPU_EBX) |
					reg(c, 0xd, i, CPU_ECX) | reg(c, 0xd, i, CPU_EDX),
				0);
	CU_ASSERT_EQUAL(reg(c, 0xa, 0, CPU_EAX), 0);
	CU_ASSERT_EQUAL(reg(c, 0x14, 0, CPU_EBX), 0);
	CU_ASSERT_EQUAL(reg(c, 0x40000001, 0, CPU_EAX), 0xffffffff);
	CU_ASSERT_EQUAL(reg(c, 0, 0, CPU_EBX), 0xffffffff);
	free(c);
}

static void test_mask_v3_xsave(void)
{
	struct kvm_cpuid2 *c = rich_host();
	char err[256] = "";

	CU_ASSERT_EQUAL_FATAL(cpu_template_apply(c, 3, err, sizeof(err)), 0);
	CU_ASSERT(sees(c, "avx2") && sees(c, "bmi2") && sees(c, "fma") && sees(c, "abm") &&
		  sees(c, "movbe") && sees(c, "xsave") && sees(c, "avx"));
	CU_ASSERT(!sees(c, "avx512f") && !sees(c, "xsaveopt") && !sees(c, "xsaves"));
	/* x87, SSE, AVX only; the area ends after AVX (component 2: 64 bytes at 512 + 128). */
	CU_ASSERT_EQUAL(reg(c, 0xd, 0, CPU_EAX), 0x7);
	CU_ASSERT_EQUAL(reg(c, 0xd, 0, CPU_EDX), 0);
	CU_ASSERT_EQUAL(reg(c, 0xd, 0, CPU_ECX), 512 + 128 + 64);
	CU_ASSERT_EQUAL(reg(c, 0xd, 0, CPU_EBX), 512 + 128 + 64);
	CU_ASSERT_EQUAL(reg(c, 0xd, 1, CPU_EAX) | reg(c, 0xd, 1, CPU_ECX), 0);
	CU_ASSERT_EQUAL(reg(c, 0xd, 2, CPU_EAX), 64);
	CU_ASSERT_EQUAL(reg(c, 0xd, 5, CPU_EAX), 0);
	free(c);
	c = rich_host();
	CU_ASSERT_EQUAL_FATAL(cpu_template_apply(c, 4, err, sizeof(err)), 0);
	CU_ASSERT(sees(c, "avx512f") && sees(c, "avx512vl") && !sees(c, "avx512ifma"));
	CU_ASSERT_EQUAL(reg(c, 0xd, 0, CPU_EAX), 0xe7);
	CU_ASSERT_EQUAL(reg(c, 0xd, 0, CPU_ECX), 512 + 64 * 7 + 64);
	CU_ASSERT_EQUAL(reg(c, 0xd, 7, CPU_EAX), 64);
	CU_ASSERT_EQUAL(reg(c, 0xd, 9, CPU_EAX), 0); /* PKRU: not the template's */
	free(c);
}

static void test_refuse_missing(void)
{
	struct kvm_cpuid2 *c = rich_host(), *ref;
	char err[256] = "";

	cpu_find(c, 1, 0)->ecx &= ~((1u << 0) | (1u << 23)); /* no sse3, no popcnt */
	cpu_find(c, 7, 0)->ebx &= ~(1u << 8);		     /* no bmi2 */
	ref = malloc(sizeof(*c) + c->nent * sizeof(c->entries[0]));
	memcpy(ref, c, sizeof(*c) + c->nent * sizeof(c->entries[0]));
	CU_ASSERT_EQUAL(cpu_template_apply(c, 3, err, sizeof(err)), -ENOTSUP);
	CU_ASSERT_STRING_EQUAL(err, "this host lacks sse3, popcnt, bmi2");
	CU_ASSERT_EQUAL(memcmp(c, ref, sizeof(*c) + c->nent * sizeof(c->entries[0])), 0);
	/* A lower template that needs none of them is fine. */
	CU_ASSERT_EQUAL(cpu_template_apply(c, 1, err, sizeof(err)), 0);
	free(c);
	free(ref);
}

static void test_lacks_named(void)
{
	struct kvm_cpuid2 *guest = rich_host(), *host = rich_host();
	char out[256];

	CU_ASSERT_EQUAL(cpu_lacks(guest, host, out, sizeof(out)), 0);
	CU_ASSERT_STRING_EQUAL(out, "");
	cpu_find(host, 7, 0)->ebx &= ~((1u << 5) | (1u << 8) | (1u << 16)); /* avx2 bmi2 avx512f */
	cpu_find(host, 7, 0)->edx &= ~(1u << 5);			    /* a bit with no name */
	cpu_find(host, 1, 0)->ecx &= ~(1u << 31); /* the hypervisor bit: not a feature */
	CU_ASSERT_EQUAL(cpu_lacks(guest, host, out, sizeof(out)), 4);
	CU_ASSERT_STRING_EQUAL(out, "avx2, bmi2, avx512f, cpuid 0x7.0 edx bit 5");
	CU_ASSERT_EQUAL(cpu_lacks(guest, host, out, 40), 4); /* cut short, still counted */
	CU_ASSERT_STRING_EQUAL(out, "avx2, bmi2, avx512f and 1 more");
	/* AMD's copies of CPUID 1 EDX bits in 0x80000001 EDX are no features of their own. */
	cpu_find(host, 0x80000001, 0)->edx &= ~0x0183f3ffu;
	CU_ASSERT_EQUAL(cpu_lacks(guest, host, out, sizeof(out)), 4);
	/* A host without the leaf at all lacks all of it. */
	cpu_find(host, 7, 1)->function = 0x55;
	CU_ASSERT(cpu_lacks(guest, host, out, sizeof(out)) > 4);
	CU_ASSERT(strstr(out, "avx_vnni") != NULL);
	free(guest);
	free(host);
}

static void test_feature_names(void)
{
	struct kvm_cpuid2 *c = rich_host();
	char out[4096], small[16];
	size_t n;

	cpu_feature_table(&n);
	CU_ASSERT_EQUAL(cpu_feature_names(c, ",", out, sizeof(out)), (int)n);
	CU_ASSERT(in_list(out, "avx512f") && in_list(out, "fpu") && in_list(out, "virt_ssbd"));
	CU_ASSERT_EQUAL(cpu_template_apply(c, 1, out, sizeof(out)), 0);
	CU_ASSERT_EQUAL(cpu_feature_names(c, ",", out, sizeof(out)), 27);
	CU_ASSERT_EQUAL(cpu_feature_names(c, ",", small, sizeof(small)), -ENOSPC);
	free(c);
}

void suite_cpu(void)
{
	static const struct test_case cases[] = {
		{ "feature table: names and bits unique", test_table_unique },
		{ "feature lookup by name", test_find },
		{ "template names and levels", test_template_names },
		{ "each template's features", test_template_features },
		{ "name lists: what one lacks of another", test_list_lacks },
		{ "the templates a host's features can run", test_templates_offered },
		{ "host template leaves CPUID as it is", test_host_unchanged },
		{ "x86-64-v2 masks to its features exactly", test_mask_v2 },
		{ "x86-64-v3/v4 keep only their XSAVE components", test_mask_v3_xsave },
		{ "a template the host cannot offer is refused by name", test_refuse_missing },
		{ "what a host lacks, named", test_lacks_named },
		{ "the names of what a CPUID offers", test_feature_names },
		{ NULL, NULL },
	};

	test_add_suite("cpu", cases);
}

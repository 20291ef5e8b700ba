/* The x86 CPU features CME names and its CPU templates: one table that both planes read, so
 * the VMM that masks a guest's CPUID, the node that publishes what it offers and the
 * placement that compares the two all speak of the same bits by the same names. */
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define F(n, lf, sub, r, b, lvl)                                                                   \
	{                                                                                          \
		.name = n, .leaf = lf, .subleaf = sub, .reg = CPU_##r, .bit = b, .level = lvl      \
	}

/* Levels are the x86-64 psABI's (v2: SSE3..POPCNT, v3: AVX2..MOVBE, v4: AVX-512), and level
 * 1 also holds what every 64-bit guest kernel expects of its platform (APIC, x2APIC, TSC,
 * PAE, NX...). Level 0 features are named for node lists and errors but belong to no
 * template. Names are those of Linux's /proc/cpuinfo, except sse3 (its "pni"). Left out on
 * purpose: bits the CPU or KVM changes at run time (osxsave, ospke) and the hypervisor bit,
 * which the VMM sets itself. */
static const struct cpu_feature table[] = {
	/* CPUID 1 EDX */
	F("fpu", 1, 0, EDX, 0, 1),
	F("vme", 1, 0, EDX, 1, 1),
	F("de", 1, 0, EDX, 2, 1),
	F("pse", 1, 0, EDX, 3, 1),
	F("tsc", 1, 0, EDX, 4, 1),
	F("msr", 1, 0, EDX, 5, 1),
	F("pae", 1, 0, EDX, 6, 1),
	F("mce", 1, 0, EDX, 7, 1),
	F("cx8", 1, 0, EDX, 8, 1),
	F("apic", 1, 0, EDX, 9, 1),
	F("sep", 1, 0, EDX, 11, 1),
	F("mtrr", 1, 0, EDX, 12, 1),
	F("pge", 1, 0, EDX, 13, 1),
	F("mca", 1, 0, EDX, 14, 1),
	F("cmov", 1, 0, EDX, 15, 1),
	F("pat", 1, 0, EDX, 16, 1),
	F("pse36", 1, 0, EDX, 17, 1),
	F("pn", 1, 0, EDX, 18, 0),
	F("clflush", 1, 0, EDX, 19, 1),
	F("ds", 1, 0, EDX, 21, 0),
	F("acpi", 1, 0, EDX, 22, 0),
	F("mmx", 1, 0, EDX, 23, 1),
	F("fxsr", 1, 0, EDX, 24, 1),
	F("sse", 1, 0, EDX, 25, 1),
	F("sse2", 1, 0, EDX, 26, 1),
	F("ss", 1, 0, EDX, 27, 0),
	F("ht", 1, 0, EDX, 28, 0),
	F("tm", 1, 0, EDX, 29, 0),
	F("pbe", 1, 0, EDX, 31, 0),
	/* CPUID 1 ECX */
	F("sse3", 1, 0, ECX, 0, 2),
	F("pclmulqdq", 1, 0, ECX, 1, 0),
	F("dtes64", 1, 0, ECX, 2, 0),
	F("monitor", 1, 0, ECX, 3, 0),
	F("ds_cpl", 1, 0, ECX, 4, 0),
	F("vmx", 1, 0, ECX, 5, 0),
	F("smx", 1, 0, ECX, 6, 0),
	F("est", 1, 0, ECX, 7, 0),
	F("tm2", 1, 0, ECX, 8, 0),
	F("ssse3", 1, 0, ECX, 9, 2),
	F("cid", 1, 0, ECX, 10, 0),
	F("sdbg", 1, 0, ECX, 11, 0),
	F("fma", 1, 0, ECX, 12, 3),
	F("cx16", 1, 0, ECX, 13, 2),
	F("xtpr", 1, 0, ECX, 14, 0),
	F("pdcm", 1, 0, ECX, 15, 0),
	F("pcid", 1, 0, ECX, 17, 0),
	F("dca", 1, 0, ECX, 18, 0),
	F("sse4_1", 1, 0, ECX, 19, 2),
	F("sse4_2", 1, 0, ECX, 20, 2),
	F("x2apic", 1, 0, ECX, 21, 1),
	F("movbe", 1, 0, ECX, 22, 3),
	F("popcnt", 1, 0, ECX, 23, 2),
	F("tsc_deadline_timer", 1, 0, ECX, 24, 1),
	F("aes", 1, 0, ECX, 25, 0),
	F("xsave", 1, 0, ECX, 26, 3),
	F("avx", 1, 0, ECX, 28, 3),
	F("f16c", 1, 0, ECX, 29, 3),
	F("rdrand", 1, 0, ECX, 30, 0),
	/* CPUID 7.0 EBX */
	F("fsgsbase", 7, 0, EBX, 0, 0),
	F("tsc_adjust", 7, 0, EBX, 1, 0),
	F("sgx", 7, 0, EBX, 2, 0),
	F("bmi1", 7, 0, EBX, 3, 3),
	F("hle", 7, 0, EBX, 4, 0),
	F("avx2", 7, 0, EBX, 5, 3),
	F("fdp_excptn_only", 7, 0, EBX, 6, 0),
	F("smep", 7, 0, EBX, 7, 0),
	F("bmi2", 7, 0, EBX, 8, 3),
	F("erms", 7, 0, EBX, 9, 0),
	F("invpcid", 7, 0, EBX, 10, 0),
	F("rtm", 7, 0, EBX, 11, 0),
	F("cqm", 7, 0, EBX, 12, 0),
	F("zero_fcs_fds", 7, 0, EBX, 13, 0),
	F("mpx", 7, 0, EBX, 14, 0),
	F("rdt_a", 7, 0, EBX, 15, 0),
	F("avx512f", 7, 0, EBX, 16, 4),
	F("avx512dq", 7, 0, EBX, 17, 4),
	F("rdseed", 7, 0, EBX, 18, 0),
	F("adx", 7, 0, EBX, 19, 0),
	F("smap", 7, 0, EBX, 20, 0),
	F("avx512ifma", 7, 0, EBX, 21, 0),
	F("clflushopt", 7, 0, EBX, 23, 0),
	F("clwb", 7, 0, EBX, 24, 0),
	F("intel_pt", 7, 0, EBX, 25, 0),
	F("avx512pf", 7, 0, EBX, 26, 0),
	F("avx512er", 7, 0, EBX, 27, 0),
	F("avx512cd", 7, 0, EBX, 28, 4),
	F("sha_ni", 7, 0, EBX, 29, 0),
	F("avx512bw", 7, 0, EBX, 30, 4),
	F("avx512vl", 7, 0, EBX, 31, 4),
	/* CPUID 7.0 ECX */
	F("prefetchwt1", 7, 0, ECX, 0, 0),
	F("avx512vbmi", 7, 0, ECX, 1, 0),
	F("umip", 7, 0, ECX, 2, 0),
	F("pku", 7, 0, ECX, 3, 0),
	F("waitpkg", 7, 0, ECX, 5, 0),
	F("avx512_vbmi2", 7, 0, ECX, 6, 0),
	F("shstk", 7, 0, ECX, 7, 0),
	F("gfni", 7, 0, ECX, 8, 0),
	F("vaes", 7, 0, ECX, 9, 0),
	F("vpclmulqdq", 7, 0, ECX, 10, 0),
	F("avx512_vnni", 7, 0, ECX, 11, 0),
	F("avx512_bitalg", 7, 0, ECX, 12, 0),
	F("tme", 7, 0, ECX, 13, 0),
	F("avx512_vpopcntdq", 7, 0, ECX, 14, 0),
	F("la57", 7, 0, ECX, 16, 0),
	F("rdpid", 7, 0, ECX, 22, 0),
	F("bus_lock_detect", 7, 0, ECX, 24, 0),
	F("cldemote", 7, 0, ECX, 25, 0),
	F("movdiri", 7, 0, ECX, 27, 0),
	F("movdir64b", 7, 0, ECX, 28, 0),
	F("enqcmd", 7, 0, ECX, 29, 0),
	F("sgx_lc", 7, 0, ECX, 30, 0),
	F("pks", 7, 0, ECX, 31, 0),
	/* CPUID 7.0 EDX */
	F("avx512_4vnniw", 7, 0, EDX, 2, 0),
	F("avx512_4fmaps", 7, 0, EDX, 3, 0),
	F("fsrm", 7, 0, EDX, 4, 0),
	F("avx512_vp2intersect", 7, 0, EDX, 8, 0),
	F("srbds_ctrl", 7, 0, EDX, 9, 0),
	F("md_clear", 7, 0, EDX, 10, 0),
	F("serialize", 7, 0, EDX, 14, 0),
	F("tsxldtrk", 7, 0, EDX, 16, 0),
	F("pconfig", 7, 0, EDX, 18, 0),
	F("arch_lbr", 7, 0, EDX, 19, 0),
	F("ibt", 7, 0, EDX, 20, 0),
	F("amx_bf16", 7, 0, EDX, 22, 0),
	F("avx512_fp16", 7, 0, EDX, 23, 0),
	F("amx_tile", 7, 0, EDX, 24, 0),
	F("amx_int8", 7, 0, EDX, 25, 0),
	F("spec_ctrl", 7, 0, EDX, 26, 0),
	F("intel_stibp", 7, 0, EDX, 27, 0),
	F("flush_l1d", 7, 0, EDX, 28, 0),
	F("arch_capabilities", 7, 0, EDX, 29, 0),
	F("core_capabilities", 7, 0, EDX, 30, 0),
	F("spec_ctrl_ssbd", 7, 0, EDX, 31, 0),
	/* CPUID 7.1 EAX */
	F("avx_vnni", 7, 1, EAX, 4, 0),
	F("avx512_bf16", 7, 1, EAX, 5, 0),
	/* CPUID 0xd.1 EAX */
	F("xsaveopt", 0xd, 1, EAX, 0, 0),
	F("xsavec", 0xd, 1, EAX, 1, 0),
	F("xgetbv1", 0xd, 1, EAX, 2, 0),
	F("xsaves", 0xd, 1, EAX, 3, 0),
	/* CPUID 0x80000001 ECX */
	F("lahf_lm", 0x80000001, 0, ECX, 0, 2),
	F("cmp_legacy", 0x80000001, 0, ECX, 1, 0),
	F("svm", 0x80000001, 0, ECX, 2, 0),
	F("extapic", 0x80000001, 0, ECX, 3, 0),
	F("cr8_legacy", 0x80000001, 0, ECX, 4, 0),
	F("abm", 0x80000001, 0, ECX, 5, 3),
	F("sse4a", 0x80000001, 0, ECX, 6, 0),
	F("misalignsse", 0x80000001, 0, ECX, 7, 0),
	F("3dnowprefetch", 0x80000001, 0, ECX, 8, 0),
	F("osvw", 0x80000001, 0, ECX, 9, 0),
	F("ibs", 0x80000001, 0, ECX, 10, 0),
	F("xop", 0x80000001, 0, ECX, 11, 0),
	F("skinit", 0x80000001, 0, ECX, 12, 0),
	F("wdt", 0x80000001, 0, ECX, 13, 0),
	F("lwp", 0x80000001, 0, ECX, 15, 0),
	F("fma4", 0x80000001, 0, ECX, 16, 0),
	F("tce", 0x80000001, 0, ECX, 17, 0),
	F("nodeid_msr", 0x80000001, 0, ECX, 19, 0),
	F("tbm", 0x80000001, 0, ECX, 21, 0),
	F("topoext", 0x80000001, 0, ECX, 22, 0),
	F("perfctr_core", 0x80000001, 0, ECX, 23, 0),
	F("perfctr_nb", 0x80000001, 0, ECX, 24, 0),
	F("bpext", 0x80000001, 0, ECX, 26, 0),
	F("ptsc", 0x80000001, 0, ECX, 27, 0),
	F("perfctr_llc", 0x80000001, 0, ECX, 28, 0),
	F("mwaitx", 0x80000001, 0, ECX, 29, 0),
	/* CPUID 0x80000001 EDX (bits 0-17, 23 and 24 repeat CPUID 1 EDX on AMD: not named) */
	F("syscall", 0x80000001, 0, EDX, 11, 1),
	F("mp", 0x80000001, 0, EDX, 19, 0),
	F("nx", 0x80000001, 0, EDX, 20, 1),
	F("mmxext", 0x80000001, 0, EDX, 22, 0),
	F("fxsr_opt", 0x80000001, 0, EDX, 25, 0),
	F("pdpe1gb", 0x80000001, 0, EDX, 26, 0),
	F("rdtscp", 0x80000001, 0, EDX, 27, 0),
	F("lm", 0x80000001, 0, EDX, 29, 1),
	F("3dnowext", 0x80000001, 0, EDX, 30, 0),
	F("3dnow", 0x80000001, 0, EDX, 31, 0),
	/* CPUID 0x80000008 EBX */
	F("clzero", 0x80000008, 0, EBX, 0, 0),
	F("irperf", 0x80000008, 0, EBX, 1, 0),
	F("xsaveerptr", 0x80000008, 0, EBX, 2, 0),
	F("rdpru", 0x80000008, 0, EBX, 4, 0),
	F("wbnoinvd", 0x80000008, 0, EBX, 9, 0),
	F("amd_ibpb", 0x80000008, 0, EBX, 12, 0),
	F("amd_ibrs", 0x80000008, 0, EBX, 14, 0),
	F("amd_stibp", 0x80000008, 0, EBX, 15, 0),
	F("amd_ibrs_always_on", 0x80000008, 0, EBX, 16, 0),
	F("amd_stibp_always_on", 0x80000008, 0, EBX, 17, 0),
	F("amd_ibrs_preferred", 0x80000008, 0, EBX, 18, 0),
	F("amd_ibrs_same_mode", 0x80000008, 0, EBX, 19, 0),
	F("amd_ppin", 0x80000008, 0, EBX, 23, 0),
	F("amd_ssbd", 0x80000008, 0, EBX, 24, 0),
	F("virt_ssbd", 0x80000008, 0, EBX, 25, 0),
	F("amd_ssb_no", 0x80000008, 0, EBX, 26, 0),
	F("cppc", 0x80000008, 0, EBX, 27, 0),
	F("amd_psfd", 0x80000008, 0, EBX, 28, 0),
	F("btc_no", 0x80000008, 0, EBX, 29, 0),
	F("amd_ibpb_ret", 0x80000008, 0, EBX, 30, 0),
};

static const char *const templates[] = { "host", "x86-64-v1", "x86-64-v2", "x86-64-v3",
					 "x86-64-v4" };

const struct cpu_feature *cpu_feature_table(size_t *n)
{
	*n = ARRAY_SIZE(table);
	return table;
}

const struct cpu_feature *cpu_feature_find(const char *name)
{
	for (size_t i = 0; name && i < ARRAY_SIZE(table); i++)
		if (!strcmp(table[i].name, name))
			return &table[i];
	return NULL;
}

int cpu_template_level(const char *name)
{
	if (!name || !name[0])
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(templates); i++)
		if (!strcmp(templates[i], name))
			return (int)i;
	return -EINVAL;
}

const char *cpu_template_name(int level)
{
	return level >= 0 && level <= CPU_TEMPLATE_MAX_LEVEL ? templates[level] : "unknown";
}

int cpu_template_features(int level, char *buf, size_t len)
{
	size_t off = 0;

	if (!len)
		return -ENOSPC;
	buf[0] = 0;
	for (size_t i = 0; i < ARRAY_SIZE(table); i++) {
		int n;

		if (!table[i].level || table[i].level > level)
			continue;
		n = snprintf(buf + off, len - off, "%s%s", off ? "," : "", table[i].name);
		if (n < 0 || (size_t)n >= len - off)
			return -ENOSPC;
		off += (size_t)n;
	}
	return 0;
}

/* True when the comma-separated list has the name s[0..n). */
static bool list_has_n(const char *list, const char *s, size_t n)
{
	for (const char *p = list; p && *p;) {
		size_t k = strcspn(p, ",");

		if (k == n && !strncmp(p, s, n))
			return true;
		p += k + (p[k] == ',');
	}
	return false;
}

bool list_has(const char *list, const char *name)
{
	return list_has_n(list, name, strlen(name));
}

unsigned cpu_list_lacks(const char *have, const char *need, char *out, size_t len)
{
	size_t off = 0;
	unsigned n = 0;

	if (out && len)
		out[0] = 0;
	for (const char *p = need; p && *p;) {
		size_t k = strcspn(p, ",");

		if (k && !list_has_n(have, p, k)) {
			int w = out && off < len ? snprintf(out + off, len - off, "%s%.*s",
							    n ? ", " : "", (int)k, p)
						 : 0;

			off += w > 0 ? (size_t)w : 0;
			n++;
		}
		p += k + (p[k] == ',');
	}
	return n;
}

const char *cpu_templates_offered(const char *features, const char *sep, char *buf, size_t len)
{
	char need[1024];
	size_t off = 0;

	if (len)
		buf[0] = 0;
	for (int l = 0; features && features[0] && l <= CPU_TEMPLATE_MAX_LEVEL; l++) {
		int n;

		if (cpu_template_features(l, need, sizeof(need)) ||
		    cpu_list_lacks(features, need, NULL, 0) || off >= len)
			continue;
		n = snprintf(buf + off, len - off, "%s%s", off ? sep : "", cpu_template_name(l));
		off += n > 0 ? (size_t)n : 0;
	}
	return buf;
}

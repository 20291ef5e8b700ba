/* Private to hypervisor/: CPU templates over KVM's CPUID tables (cpu_template.c). Pure
 * functions of struct kvm_cpuid2, apart from cpu_supported(), so unit tests can drive them
 * with tables of their own. */
#ifndef CME_CPU_PRIV_H
#define CME_CPU_PRIV_H

#include <linux/kvm.h>
#include <stddef.h>

#include "common.h"

/* KVM_GET_SUPPORTED_CPUID of the /dev/kvm fd kvm_fd. Returns 0 with *out (malloc'd, the
 * caller frees), or -errno (logged). */
int cpu_supported(int kvm_fd, struct kvm_cpuid2 **out) CME_WUR;

/* The entry (fn, idx) of c, or NULL. */
struct kvm_cpuid_entry2 *cpu_find(const struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx);

/* Mask c (KVM's supported CPUID) down to template level (0: "host", c stays as it is):
 * the feature words keep the template's features only, and what the template does not
 * describe (further leaf 7 subleaves, XSAVE components beyond the template's, the PMU,
 * SGX, PT, ...) is hidden. A template only masks down: when c lacks a feature the template
 * needs, c is left as it was and the result is -ENOTSUP with "this host lacks sse3,
 * popcnt" in err. Returns 0 or -ENOTSUP (-EINVAL: no such level). */
int cpu_template_apply(struct kvm_cpuid2 *c, int level, char *err, size_t errlen) CME_WUR;

/* The features guest has that host lacks, by name (a bit the table does not name as
 * "cpuid 0x7.0 edx bit 5"), ", "-separated into out; those that do not fit are counted at
 * the end (" and 12 more"). Bits the CPU or the VMM sets at run time (osxsave, ospke,
 * hypervisor) and AMD's copies of CPUID 1 EDX bits do not count. Returns how many. */
unsigned cpu_lacks(const struct kvm_cpuid2 *guest, const struct kvm_cpuid2 *host, char *out,
		   size_t len);

/* The named features c has, separated by sep, into out. Returns how many, or -ENOSPC when
 * they do not fit in len bytes. */
int cpu_feature_names(const struct kvm_cpuid2 *c, const char *sep, char *out, size_t len) CME_WUR;

#endif

/* CPUID in the VM state: what the guest was shown is saved with the configuration, and on
 * restore the same CPUID is given again — after checking this host offers every feature. */
#include "state_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define SUB "cpuid"

int vcpu_apply_cpuid(struct vcpu *vcpu, const struct kvm_cpuid2 *tmpl)
{
	size_t sz = sizeof(*tmpl) + tmpl->nent * sizeof(tmpl->entries[0]);
	struct kvm_cpuid2 *c = malloc(sz);
	int err = 0;

	if (!c)
		return -ENOMEM;
	memcpy(c, tmpl, sz);
	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function == 1) {
			e->ebx = (e->ebx & 0x00ffffff) | (vcpu->id << 24);
			e->ecx |= 1u << 31; /* hypervisor present */
		} else if (e->function == 0xb || e->function == 0x1f) {
			e->edx = vcpu->id;
		}
	}
	if (ioctl(vcpu->fd, KVM_SET_CPUID2, c) < 0) {
		err = -errno;
		log_err(SUB, "vcpu=%u KVM_SET_CPUID2: %s", vcpu->id, strerror(errno));
	}
	free(c);
	return err;
}

int cpuid_state_save(struct vm *vm, struct arena *a, Cme__VmConfig *cfg)
{
	cfg->n_cpuid = vm->cpuid->nent;
	cfg->cpuid = arena_alloc(a, cfg->n_cpuid * sizeof(Cme__CpuidEntry *));
	if (!cfg->cpuid)
		return -ENOMEM;
	for (unsigned i = 0; i < vm->cpuid->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &vm->cpuid->entries[i];
		Cme__CpuidEntry *m = arena_alloc(a, sizeof(*m));

		if (!m)
			return -ENOMEM;
		cme__cpuid_entry__init(m);
		m->function = e->function;
		m->index = e->index;
		m->flags = e->flags;
		m->eax = e->eax;
		m->ebx = e->ebx;
		m->ecx = e->ecx;
		m->edx = e->edx;
		cfg->cpuid[i] = m;
	}
	return 0;
}

static const struct kvm_cpuid_entry2 *cpuid_find(const struct kvm_cpuid2 *c, uint32_t fn,
						 uint32_t idx)
{
	for (unsigned i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn && c->entries[i].index == idx)
			return &c->entries[i];
	return NULL;
}

/* Feature words: a bit the state has and this host lacks refuses the restore. */
static int cpuid_check_entry(const struct kvm_cpuid2 *host, const Cme__CpuidEntry *m, char *err,
			     size_t errlen)
{
	const struct kvm_cpuid_entry2 *h;
	uint32_t lack[3];

	if (m->function != 1 && m->function != 7 && m->function != 0x80000001)
		return 0;
	h = cpuid_find(host, m->function, m->index);
	lack[0] = m->ecx & ~(h ? h->ecx : 0) & ~(m->function == 1 ? 1u << 31 : 0);
	lack[1] = m->edx & ~(h ? h->edx : 0);
	lack[2] = m->function == 7 ? m->ebx & ~(h ? h->ebx : 0) : 0;
	if (!lack[0] && !lack[1] && !lack[2])
		return 0;
	snprintf(err, errlen,
		 "CPU features missing on this host: CPUID 0x%x.%u ecx 0x%x edx 0x%x ebx 0x%x",
		 m->function, m->index, lack[0], lack[1], lack[2]);
	return -EINVAL;
}

int cpuid_state_load(struct vm *vm, const Cme__VmConfig *cfg, char *err, size_t errlen)
{
	struct kvm_cpuid2 *c;
	int rc = 0;

	if (cfg->n_cpuid == 0 || cfg->n_cpuid > 4096) {
		snprintf(err, errlen, "state has no CPUID");
		return -EINVAL;
	}
	for (size_t i = 0; i < cfg->n_cpuid; i++)
		if (cpuid_check_entry(vm->cpuid, cfg->cpuid[i], err, errlen))
			return -EINVAL;
	c = calloc(1, sizeof(*c) + cfg->n_cpuid * sizeof(c->entries[0]));
	if (!c)
		return -ENOMEM;
	c->nent = (uint32_t)cfg->n_cpuid;
	for (size_t i = 0; i < cfg->n_cpuid; i++) {
		const Cme__CpuidEntry *m = cfg->cpuid[i];

		c->entries[i] = (struct kvm_cpuid_entry2){ .function = m->function,
							   .index = m->index,
							   .flags = m->flags,
							   .eax = m->eax,
							   .ebx = m->ebx,
							   .ecx = m->ecx,
							   .edx = m->edx };
	}
	for (unsigned i = 0; !rc && i < vm->cfg.nr_vcpus; i++)
		rc = vcpu_apply_cpuid(&vm->vcpus[i], c);
	if (rc) {
		snprintf(err, errlen, "this host refused the saved CPUID");
		free(c);
		return -EINVAL;
	}
	free(vm->cpuid);
	vm->cpuid = c;
	return 0;
}

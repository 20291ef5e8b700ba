/* CPUID in the VM state: what the guest was shown (and its CPU template's name) is saved
 * with the configuration, and on restore or arrival the same CPUID is given again — after
 * checking this host offers every feature, and naming those it lacks. */
#include "cpu_priv.h"
#include "proto.h"
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
	cfg->cpu_template = vm->cpu_template;
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

/* The CPUID of a config as KVM's table (malloc'd), or NULL with the reason in err. */
static struct kvm_cpuid2 *cpuid_from_config(const Cme__VmConfig *cfg, char *err, size_t errlen)
{
	struct kvm_cpuid2 *c;

	if (cfg->n_cpuid == 0 || cfg->n_cpuid > 4096) {
		snprintf(err, errlen, "state has no CPUID");
		return NULL;
	}
	c = calloc(1, sizeof(*c) + cfg->n_cpuid * sizeof(c->entries[0]));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
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
	return c;
}

/* The guest's CPUID against what this VM offers (KVM's, masked by the template it was
 * created with): a feature the guest sees and this host lacks refuses it, by name. The
 * list is kept short enough for a migration's error (256 bytes) to hold it whole. */
static int cpuid_check(struct vm *vm, const struct kvm_cpuid2 *guest, char *err, size_t errlen)
{
	char lacks[180];

	if (!cpu_lacks(guest, vm->cpuid, lacks, sizeof(lacks)))
		return 0;
	snprintf(err, errlen, "this host lacks %s that the guest sees", lacks);
	return -ENOTSUP;
}

/* The state's template name; "" (older states) is "host". */
static int template_check(const Cme__VmConfig *cfg, char *err, size_t errlen)
{
	if (cpu_template_level(cfg->cpu_template) >= 0)
		return 0;
	snprintf(err, errlen, "CPU template \"%.32s\" is not one this VMM knows (%s)",
		 cfg->cpu_template, CPU_TEMPLATE_NAMES);
	return -EINVAL;
}

int cpuid_state_load(struct vm *vm, const Cme__VmConfig *cfg, char *err, size_t errlen)
{
	struct kvm_cpuid2 *c;
	int rc = template_check(cfg, err, errlen);

	if (rc)
		return rc;
	c = cpuid_from_config(cfg, err, errlen);
	if (!c)
		return -EINVAL;
	rc = cpuid_check(vm, c, err, errlen);
	for (unsigned i = 0; !rc && i < vm->cfg.nr_vcpus; i++) {
		if (vcpu_apply_cpuid(&vm->vcpus[i], c)) {
			snprintf(err, errlen, "this host refused the saved CPUID");
			rc = -EINVAL;
		}
	}
	if (rc) {
		free(c);
		return -EINVAL;
	}
	free(vm->cpuid);
	vm->cpuid = c;
	snprintf(vm->cpu_template, sizeof(vm->cpu_template), "%s",
		 cpu_template_name(cpu_template_level(cfg->cpu_template)));
	return 0;
}

/* ---- the CPU as a migration's handshake carries it ---------------------------------- */

int vm_cpu_save(struct vm *vm, uint8_t **buf, size_t *len)
{
	struct arena a = { 0 };
	Cme__VmConfig cfg = CME__VM_CONFIG__INIT;
	int err = cpuid_state_save(vm, &a, &cfg);

	if (!err)
		err = arena_pack(&a, &cfg.base, buf, len);
	arena_free(&a);
	return err;
}

int vm_cpu_check(struct vm *vm, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	Cme__VmConfig *cfg = PB_UNPACK(cme__vm_config__unpack, len, buf);
	struct kvm_cpuid2 *c = NULL;
	int rc = cfg ? 0 : -EINVAL;

	if (!cfg)
		snprintf(err, errlen, "the VM's configuration does not parse");
	if (!rc && cfg->n_cpuid == 0)
		goto out; /* an older source sends none: the state's load checks it */
	if (!rc)
		rc = template_check(cfg, err, errlen);
	if (!rc && !(c = cpuid_from_config(cfg, err, errlen)))
		rc = -EINVAL;
	if (!rc)
		rc = cpuid_check(vm, c, err, errlen);
out:
	free(c);
	if (cfg)
		cme__vm_config__free_unpacked(cfg, NULL);
	return rc;
}

int vm_cpu_features(struct vm *vm, char *buf, size_t len)
{
	if (!vm->cpuid) { /* not set up (yet): it shows nothing */
		if (len)
			buf[0] = 0;
		return 0;
	}
	return cpu_feature_names(vm->cpuid, ",", buf, len);
}

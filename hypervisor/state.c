/* The complete VM state as one VmState message: configuration, irqchip, PIT, kvmclock,
 * devices and every vCPU. Captured only while the VM is paused; applied only to a VM
 * created with the same configuration that has not run yet. */
#include "dev_priv.h"
#include "proto.h"
#include "state_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define SUB	     "state"
#define MSR_LIST_MAX 1024

/* KVM's MSR list, keeping those vCPU 0 can actually read back. */
static int vm_probe_msrs(struct vm *vm)
{
	struct kvm_msr_list *l = calloc(1, sizeof(*l) + MSR_LIST_MAX * sizeof(uint32_t));
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} one;

	if (!l)
		return -ENOMEM;
	l->nmsrs = MSR_LIST_MAX;
	vm->msr_index = calloc(MSR_LIST_MAX, sizeof(uint32_t));
	if (!vm->msr_index || ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		free(l);
		return -EIO;
	}
	for (unsigned i = 0; i < l->nmsrs; i++) {
		memset(&one, 0, sizeof(one));
		one.h.nmsrs = 1;
		one.e.index = l->indices[i];
		if (ioctl(vm->vcpus[0].fd, KVM_GET_MSRS, &one) == 1)
			vm->msr_index[vm->nr_msrs++] = l->indices[i];
	}
	free(l);
	return 0;
}

int vm_probe_state_caps(struct vm *vm)
{
	int xsave2 = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);

	vm->has_xsave = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) > 0;
	vm->has_xcrs = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0;
	vm->xsave_size =
		xsave2 > (int)sizeof(struct kvm_xsave) ? (size_t)xsave2 : sizeof(struct kvm_xsave);
	return vm_probe_msrs(vm);
}

static int vm_get(struct vm *vm, unsigned long req, void *arg, const char *what)
{
	if (ioctl(vm->vm_fd, req, arg) < 0) {
		int err = -errno;

		log_err(SUB, "vm=%s %s: %s", vm->cfg.name, what, strerror(errno));
		return err;
	}
	return 0;
}

static int irqchip_save(struct vm *vm, struct arena *a, Cme__VmState *st)
{
	static const unsigned ids[3] = { KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
					 KVM_IRQCHIP_IOAPIC };
	ProtobufCBinaryData *out[3];
	Cme__Irqchip *m = arena_alloc(a, sizeof(*m));

	if (!m)
		return -ENOMEM;
	cme__irqchip__init(m);
	out[0] = &m->pic_master;
	out[1] = &m->pic_slave;
	out[2] = &m->ioapic;
	for (int i = 0; i < 3; i++) {
		struct kvm_irqchip *chip = arena_alloc(a, sizeof(*chip));
		int err;

		if (!chip)
			return -ENOMEM;
		chip->chip_id = ids[i];
		err = vm_get(vm, KVM_GET_IRQCHIP, chip, "KVM_GET_IRQCHIP");
		if (err)
			return err;
		out[i]->data = (uint8_t *)chip;
		out[i]->len = sizeof(*chip);
	}
	st->irqchip = m;
	return 0;
}

static int clock_pit_save(struct vm *vm, struct arena *a, Cme__VmState *st)
{
	struct kvm_pit_state2 *pit = arena_alloc(a, sizeof(*pit));
	struct kvm_clock_data clk = { 0 };
	int err = pit ? vm_get(vm, KVM_GET_PIT2, pit, "KVM_GET_PIT2") : -ENOMEM;

	if (!err)
		err = vm_get(vm, KVM_GET_CLOCK, &clk, "KVM_GET_CLOCK");
	if (err)
		return err;
	st->pit.data = (uint8_t *)pit;
	st->pit.len = sizeof(*pit);
	st->clock = arena_alloc(a, sizeof(Cme__Clock));
	if (!st->clock)
		return -ENOMEM;
	cme__clock__init(st->clock);
	st->clock->clock = clk.clock;
	st->clock->flags = clk.flags;
	return 0;
}

static int config_save(struct vm *vm, struct arena *a, Cme__VmState *st)
{
	Cme__VmConfig *c = arena_alloc(a, sizeof(*c));

	if (!c)
		return -ENOMEM;
	cme__vm_config__init(c);
	c->mem_bytes = vm->cfg.mem_bytes;
	c->nr_vcpus = vm->cfg.nr_vcpus;
	c->tsc_khz = vm->tsc_khz;
	c->n_msr_index = vm->nr_msrs;
	c->msr_index = arena_dup(a, vm->msr_index, vm->nr_msrs * sizeof(uint32_t));
	if (!c->msr_index)
		return -ENOMEM;
	st->config = c;
	return cpuid_state_save(vm, a, c);
}

static int devices_save(struct vm *vm, struct arena *a, Cme__VmState *st)
{
	return dev_state_save_all(vm, a, &st->n_devices, &st->devices);
}

static int vcpus_save(struct vm *vm, struct arena *a, Cme__VmState *st)
{
	int err = 0;

	st->n_vcpus = vm->cfg.nr_vcpus;
	st->vcpus = arena_alloc(a, st->n_vcpus * sizeof(Cme__Vcpu *));
	if (!st->vcpus)
		return -ENOMEM;
	for (unsigned i = 0; !err && i < vm->cfg.nr_vcpus; i++)
		err = vcpu_state_save(&vm->vcpus[i], a, &st->vcpus[i]);
	return err;
}

int vm_state_save(struct vm *vm, uint8_t **buf, size_t *len)
{
	struct arena a = { 0 };
	Cme__VmState st = CME__VM_STATE__INIT;
	int err;

	if (vm->state != VM_PAUSED && vm->state != VM_CREATED)
		return -EBUSY;
	st.version = VM_STATE_VERSION;
	st.boot = (char *)(vm->boot_kind ? vm->boot_kind : "flat");
	if (vm->measured)
		st.measurement = (ProtobufCBinaryData){ MEASURE_BYTES, vm->measurement };
	err = config_save(vm, &a, &st);
	if (!err)
		err = irqchip_save(vm, &a, &st);
	if (!err)
		err = clock_pit_save(vm, &a, &st);
	if (!err)
		err = devices_save(vm, &a, &st);
	if (!err)
		err = vcpus_save(vm, &a, &st);
	if (!err) /* every builder checks its own allocations; arena_pack is the backstop */
		err = arena_pack(&a, &st.base, buf, len);
	arena_free(&a);
	return err;
}

/* ---- restore ---------------------------------------------------------------------------- */

static int state_fail(char *err, size_t errlen, const char *fmt, const char *arg)
{
	snprintf(err, errlen, fmt, arg);
	return -EINVAL;
}

static int config_check(struct vm *vm, const Cme__VmState *st, char *err, size_t errlen)
{
	const Cme__VmConfig *c = st->config;

	if (st->version == 0 || st->version > VM_STATE_VERSION) {
		snprintf(err, errlen, "state version %u is not one this VMM reads (1..%d)",
			 st->version, VM_STATE_VERSION);
		return -EINVAL;
	}
	if (!c)
		return state_fail(err, errlen, "%s", "state has no configuration");
	if (c->mem_bytes != vm->cfg.mem_bytes || c->nr_vcpus != vm->cfg.nr_vcpus ||
	    st->n_vcpus != c->nr_vcpus) {
		snprintf(err, errlen,
			 "state is for %llu MiB and %u vCPUs, this VM has %llu MiB and %u vCPUs",
			 (unsigned long long)(c->mem_bytes >> 20), c->nr_vcpus,
			 (unsigned long long)(vm->cfg.mem_bytes >> 20), vm->cfg.nr_vcpus);
		return -EINVAL;
	}
	return 0;
}

/* A TSC frequency other than ours: scale if KVM can; otherwise the guest's clock
 * calibration is off, which we report but accept (as other VMMs do unless told not to). */
static void tsc_load(struct vm *vm, uint64_t khz)
{
	if (khz == vm->tsc_khz)
		return;
	for (unsigned i = 0; i < vm->cfg.nr_vcpus; i++) {
		if (ioctl(vm->vcpus[i].fd, KVM_SET_TSC_KHZ, (unsigned long)khz) < 0) {
			log_warn(SUB, "vm=%s state TSC %llu kHz, host %llu kHz, cannot scale: %s",
				 vm->cfg.name, (unsigned long long)khz,
				 (unsigned long long)vm->tsc_khz, strerror(errno));
			return;
		}
	}
	vm->tsc_khz = khz;
}

static int vm_set(struct vm *vm, unsigned long req, const void *arg, const char *what, char *err,
		  size_t errlen)
{
	if (ioctl(vm->vm_fd, req, arg) < 0) {
		snprintf(err, errlen, "%s refused: %s", what, strerror(errno));
		return -EINVAL;
	}
	return 0;
}

static int irqchip_pit_load(struct vm *vm, const Cme__VmState *st, char *err, size_t errlen)
{
	static const unsigned ids[3] = { KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
					 KVM_IRQCHIP_IOAPIC };
	const Cme__Irqchip *m = st->irqchip;
	const ProtobufCBinaryData *in[3];

	if (!m || st->pit.len != sizeof(struct kvm_pit_state2))
		return state_fail(err, errlen, "%s", "irqchip or PIT state missing or malformed");
	in[0] = &m->pic_master;
	in[1] = &m->pic_slave;
	in[2] = &m->ioapic;
	for (int i = 0; i < 3; i++) {
		const struct kvm_irqchip *chip = (const void *)in[i]->data;

		if (in[i]->len != sizeof(*chip) || chip->chip_id != ids[i])
			return state_fail(err, errlen, "%s", "irqchip state malformed");
		if (vm_set(vm, KVM_SET_IRQCHIP, chip, "irqchip", err, errlen))
			return -EINVAL;
	}
	return vm_set(vm, KVM_SET_PIT2, st->pit.data, "PIT", err, errlen);
}

static int devices_load(struct vm *vm, const Cme__VmState *st, char *err, size_t errlen)
{
	return dev_state_load_all(vm, st->devices, st->n_devices, err, errlen);
}

static int state_apply(struct vm *vm, const Cme__VmState *st, char *err, size_t errlen)
{
	struct kvm_clock_data clk = { .clock = st->clock ? st->clock->clock : 0 };

	if (config_check(vm, st, err, errlen) || cpuid_state_load(vm, st->config, err, errlen))
		return -EINVAL;
	tsc_load(vm, st->config->tsc_khz);
	if (irqchip_pit_load(vm, st, err, errlen) || devices_load(vm, st, err, errlen))
		return -EINVAL;
	for (unsigned i = 0; i < vm->cfg.nr_vcpus; i++) {
		if (st->vcpus[i]->id != i) {
			snprintf(err, errlen, "vCPU %u of the state is out of order (id %u)", i,
				 st->vcpus[i]->id);
			return -EINVAL;
		}
		if (vcpu_state_load(&vm->vcpus[i], st->vcpus[i], st->config, err, errlen))
			return -EINVAL;
	}
	/* kvmclock last, so guest time continues from the captured value. */
	if (!st->clock)
		return state_fail(err, errlen, "%s", "state has no clock");
	return vm_set(vm, KVM_SET_CLOCK, &clk, "kvmclock", err, errlen);
}

int vm_state_load(struct vm *vm, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	Cme__VmState *st;
	int rc;

	if (vm->state != VM_CREATED)
		return state_fail(err, errlen, "%s", "state can only be loaded before the VM runs");
	st = PB_UNPACK(cme__vm_state__unpack, len, buf);
	if (!st)
		return state_fail(err, errlen, "%s", "VM state does not parse");
	rc = state_apply(vm, st, err, errlen);
	if (!rc)
		vm->boot_kind = !strcmp(st->boot, "linux") ? "linux" : "flat";
	if (!rc && st->measurement.len == MEASURE_BYTES) {
		memcpy(vm->measurement, st->measurement.data, MEASURE_BYTES);
		vm->measured = true;
	}
	cme__vm_state__free_unpacked(st, NULL);
	return rc;
}

int vm_state_peek_config(const uint8_t *buf, size_t len, uint64_t *mem_bytes, unsigned *vcpus)
{
	Cme__VmState *st = PB_UNPACK(cme__vm_state__unpack, len, buf);

	if (!st || !st->config) {
		if (st)
			cme__vm_state__free_unpacked(st, NULL);
		return -EINVAL;
	}
	*mem_bytes = st->config->mem_bytes;
	*vcpus = st->config->nr_vcpus;
	cme__vm_state__free_unpacked(st, NULL);
	return 0;
}

int vm_state_peek_measurement(const uint8_t *buf, size_t len, uint8_t out[MEASURE_BYTES],
			      bool *measured)
{
	Cme__VmState *st = PB_UNPACK(cme__vm_state__unpack, len, buf);

	*measured = false;
	if (!st)
		return -EINVAL;
	if (st->measurement.len == MEASURE_BYTES) {
		memcpy(out, st->measurement.data, MEASURE_BYTES);
		*measured = true;
	}
	cme__vm_state__free_unpacked(st, NULL);
	return 0;
}

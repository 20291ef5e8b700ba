/* One vCPU's complete state: registers, FPU/XSAVE, XCRs, MSRs, LAPIC, mp_state, pending
 * events and debug registers, to and from its protobuf message. */
#include "state_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define SUB "state"

static int vcpu_get(struct vcpu *vcpu, unsigned long req, void *arg, const char *what)
{
	if (ioctl(vcpu->fd, req, arg) < 0) {
		int err = -errno;

		log_err(SUB, "vcpu=%u %s: %s", vcpu->id, what, strerror(errno));
		return err;
	}
	return 0;
}

/* ---- conversion of segments and registers ------------------------------------------ */

static Cme__Segment *seg_save(struct arena *a, const struct kvm_segment *s)
{
	Cme__Segment *m = arena_alloc(a, sizeof(*m));

	if (!m)
		return NULL;
	cme__segment__init(m);
	m->addr = s->base;
	m->limit = s->limit;
	m->selector = s->selector;
	m->type = s->type;
	m->present = s->present;
	m->dpl = s->dpl;
	m->db = s->db;
	m->s = s->s;
	m->l = s->l;
	m->g = s->g;
	m->avl = s->avl;
	m->unusable = s->unusable;
	return m;
}

static void seg_load(struct kvm_segment *s, const Cme__Segment *m)
{
	static const Cme__Segment none = CME__SEGMENT__INIT;

	m = m ? m : &none;
	*s = (struct kvm_segment){
		.base = m->addr,
		.limit = m->limit,
		.selector = (uint16_t)m->selector,
		.type = (uint8_t)m->type,
		.present = (uint8_t)m->present,
		.dpl = (uint8_t)m->dpl,
		.db = (uint8_t)m->db,
		.s = (uint8_t)m->s,
		.l = (uint8_t)m->l,
		.g = (uint8_t)m->g,
		.avl = (uint8_t)m->avl,
		.unusable = (uint8_t)m->unusable,
	};
}

static Cme__DescTable *dt_save(struct arena *a, const struct kvm_dtable *d)
{
	Cme__DescTable *m = arena_alloc(a, sizeof(*m));

	if (!m)
		return NULL;
	cme__desc_table__init(m);
	m->addr = d->base;
	m->limit = d->limit;
	return m;
}

static void dt_load(struct kvm_dtable *d, const Cme__DescTable *m)
{
	d->base = m ? m->addr : 0;
	d->limit = m ? (uint16_t)m->limit : 0;
}

static Cme__Sregs *sregs_save(struct arena *a, const struct kvm_sregs *s)
{
	Cme__Sregs *m = arena_alloc(a, sizeof(*m));

	if (!m)
		return NULL;
	cme__sregs__init(m);
	m->cs = seg_save(a, &s->cs);
	m->ds = seg_save(a, &s->ds);
	m->es = seg_save(a, &s->es);
	m->fs = seg_save(a, &s->fs);
	m->gs = seg_save(a, &s->gs);
	m->ss = seg_save(a, &s->ss);
	m->tr = seg_save(a, &s->tr);
	m->ldt = seg_save(a, &s->ldt);
	m->gdt = dt_save(a, &s->gdt);
	m->idt = dt_save(a, &s->idt);
	m->cr0 = s->cr0;
	m->cr2 = s->cr2;
	m->cr3 = s->cr3;
	m->cr4 = s->cr4;
	m->cr8 = s->cr8;
	m->efer = s->efer;
	m->apic_base = s->apic_base;
	m->n_interrupt_bitmap = ARRAY_SIZE(s->interrupt_bitmap);
	m->interrupt_bitmap = arena_dup(a, s->interrupt_bitmap, sizeof(s->interrupt_bitmap));
	return m;
}

static int sregs_load(struct kvm_sregs *s, const Cme__Sregs *m)
{
	if (!m || m->n_interrupt_bitmap != ARRAY_SIZE(s->interrupt_bitmap))
		return -EINVAL;
	memset(s, 0, sizeof(*s));
	seg_load(&s->cs, m->cs);
	seg_load(&s->ds, m->ds);
	seg_load(&s->es, m->es);
	seg_load(&s->fs, m->fs);
	seg_load(&s->gs, m->gs);
	seg_load(&s->ss, m->ss);
	seg_load(&s->tr, m->tr);
	seg_load(&s->ldt, m->ldt);
	dt_load(&s->gdt, m->gdt);
	dt_load(&s->idt, m->idt);
	s->cr0 = m->cr0;
	s->cr2 = m->cr2;
	s->cr3 = m->cr3;
	s->cr4 = m->cr4;
	s->cr8 = m->cr8;
	s->efer = m->efer;
	s->apic_base = m->apic_base;
	memcpy(s->interrupt_bitmap, m->interrupt_bitmap, sizeof(s->interrupt_bitmap));
	return 0;
}

/* struct kvm_regs is 16 GPRs then rip and rflags: the GPRs travel as a list. */
static Cme__Regs *regs_save(struct arena *a, const struct kvm_regs *r)
{
	Cme__Regs *m = arena_alloc(a, sizeof(*m));

	if (!m)
		return NULL;
	cme__regs__init(m);
	m->n_gpr = 16;
	m->gpr = arena_dup(a, r, 16 * sizeof(uint64_t));
	m->rip = r->rip;
	m->rflags = r->rflags;
	return m;
}

static int regs_load(struct kvm_regs *r, const Cme__Regs *m)
{
	if (!m || m->n_gpr != 16)
		return -EINVAL;
	memcpy(r, m->gpr, 16 * sizeof(uint64_t));
	r->rip = m->rip;
	r->rflags = m->rflags;
	return 0;
}

/* ---- MSRs ---------------------------------------------------------------------------- */

static struct kvm_msrs *msrs_alloc(const struct vm *vm)
{
	struct kvm_msrs *m = calloc(1, sizeof(*m) + vm->nr_msrs * sizeof(m->entries[0]));

	if (!m)
		return NULL;
	m->nmsrs = vm->nr_msrs;
	for (unsigned i = 0; i < vm->nr_msrs; i++)
		m->entries[i].index = vm->msr_index[i];
	return m;
}

static int msrs_save(struct vcpu *vcpu, struct arena *a, Cme__Vcpu *m)
{
	struct kvm_msrs *msrs = msrs_alloc(vcpu->vm);
	int n;

	if (!msrs)
		return -ENOMEM;
	n = ioctl(vcpu->fd, KVM_GET_MSRS, msrs);
	if (n != (int)msrs->nmsrs) {
		log_err(SUB, "vcpu=%u KVM_GET_MSRS read %d of %u", vcpu->id, n, msrs->nmsrs);
		free(msrs);
		return -EIO;
	}
	m->n_msr_value = msrs->nmsrs;
	m->msr_value = arena_alloc(a, msrs->nmsrs * sizeof(uint64_t));
	if (!m->msr_value) {
		free(msrs);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < msrs->nmsrs; i++)
		m->msr_value[i] = msrs->entries[i].data;
	free(msrs);
	return 0;
}

/* Set the saved MSRs (index list from the state's config) whose index is TSC_DEADLINE
 * (deadline) or any other: the TSC deadline only takes once the LAPIC is in TSC-deadline
 * mode, so it goes last. */
static int msrs_load(struct vcpu *vcpu, const Cme__Vcpu *m, const uint32_t *index, bool deadline,
		     char *err, size_t errlen)
{
	struct kvm_msrs *msrs =
		calloc(1, sizeof(*msrs) + m->n_msr_value * sizeof(msrs->entries[0]));
	unsigned n = 0;
	int set;

	if (!msrs)
		return -ENOMEM;
	for (size_t i = 0; i < m->n_msr_value; i++) {
		if ((index[i] == MSR_IA32_TSC_DEADLINE) != deadline)
			continue;
		msrs->entries[n].index = index[i];
		msrs->entries[n++].data = m->msr_value[i];
	}
	msrs->nmsrs = n;
	set = ioctl(vcpu->fd, KVM_SET_MSRS, msrs);
	if (set != (int)n)
		snprintf(err, errlen, "vcpu %u: MSR 0x%x refused by this host", vcpu->id,
			 set >= 0 && set < (int)n ? msrs->entries[set].index : 0);
	free(msrs);
	return set == (int)n ? 0 : -EINVAL;
}

/* ---- the whole vCPU -------------------------------------------------------------------- */

/* Fetch a fixed-size KVM structure into the arena as bytes. */
static int blob_save(struct vcpu *vcpu, struct arena *a, unsigned long req, size_t size,
		     const char *what, ProtobufCBinaryData *out)
{
	void *buf = arena_alloc(a, size);
	int err = buf ? vcpu_get(vcpu, req, buf, what) : -ENOMEM;

	if (!err) {
		out->data = buf;
		out->len = size;
	}
	return err;
}

static int fpu_save(struct vcpu *vcpu, struct arena *a, Cme__Vcpu *m)
{
	struct kvm_xcrs *xcrs;
	int err;

	if (!vcpu->vm->has_xsave)
		return blob_save(vcpu, a, KVM_GET_FPU, sizeof(struct kvm_fpu), "KVM_GET_FPU",
				 &m->fpu);
	/* Areas beyond 4 KiB (AMX) need KVM_GET_XSAVE2 with KVM's own size. */
	err = blob_save(vcpu, a,
			vcpu->vm->xsave_size > sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2
									: KVM_GET_XSAVE,
			vcpu->vm->xsave_size, "KVM_GET_XSAVE", &m->xsave);
	if (err || !vcpu->vm->has_xcrs)
		return err;
	xcrs = arena_alloc(a, sizeof(*xcrs));
	err = xcrs ? vcpu_get(vcpu, KVM_GET_XCRS, xcrs, "KVM_GET_XCRS") : -ENOMEM;
	if (err)
		return err;
	m->n_xcrs = xcrs->nr_xcrs;
	m->xcrs = arena_alloc(a, xcrs->nr_xcrs * sizeof(Cme__Xcr *));
	if (!m->xcrs)
		return -ENOMEM;
	for (unsigned i = 0; i < xcrs->nr_xcrs; i++) {
		m->xcrs[i] = arena_alloc(a, sizeof(Cme__Xcr));
		if (!m->xcrs[i])
			return -ENOMEM;
		cme__xcr__init(m->xcrs[i]);
		m->xcrs[i]->index = xcrs->xcrs[i].xcr;
		m->xcrs[i]->value = xcrs->xcrs[i].value;
	}
	return 0;
}

int vcpu_state_save(struct vcpu *vcpu, struct arena *a, Cme__Vcpu **out)
{
	Cme__Vcpu *m = arena_alloc(a, sizeof(*m));
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_mp_state mp;
	int err;

	if (!m)
		return -ENOMEM;
	cme__vcpu__init(m);
	m->id = vcpu->id;
	err = vcpu_get(vcpu, KVM_GET_REGS, &regs, "KVM_GET_REGS");
	if (!err)
		err = vcpu_get(vcpu, KVM_GET_SREGS, &sregs, "KVM_GET_SREGS");
	if (!err)
		err = vcpu_get(vcpu, KVM_GET_MP_STATE, &mp, "KVM_GET_MP_STATE");
	if (!err)
		err = fpu_save(vcpu, a, m);
	if (!err)
		err = msrs_save(vcpu, a, m);
	if (!err)
		err = blob_save(vcpu, a, KVM_GET_LAPIC, sizeof(struct kvm_lapic_state),
				"KVM_GET_LAPIC", &m->lapic);
	if (!err)
		err = blob_save(vcpu, a, KVM_GET_VCPU_EVENTS, sizeof(struct kvm_vcpu_events),
				"KVM_GET_VCPU_EVENTS", &m->events);
	if (!err)
		err = blob_save(vcpu, a, KVM_GET_DEBUGREGS, sizeof(struct kvm_debugregs),
				"KVM_GET_DEBUGREGS", &m->debugregs);
	if (err)
		return err;
	/* A NULL from these leaves the arena failed: vm_state_save then packs nothing. */
	m->regs = regs_save(a, &regs);
	m->sregs = sregs_save(a, &sregs);
	m->mp_state = mp.mp_state;
	*out = m;
	return 0;
}

/* Check every byte block has KVM's exact size before any of it is applied. */
static int vcpu_state_check(const struct vm *vm, const Cme__Vcpu *m, size_t nr_msrs, char *err,
			    size_t errlen)
{
	bool fpu_ok = vm->has_xsave ? m->xsave.len == vm->xsave_size
				    : m->fpu.len == sizeof(struct kvm_fpu);

	if (!fpu_ok || m->lapic.len != sizeof(struct kvm_lapic_state) ||
	    m->events.len != sizeof(struct kvm_vcpu_events) ||
	    m->debugregs.len != sizeof(struct kvm_debugregs) || m->n_msr_value != nr_msrs ||
	    m->n_xcrs > KVM_MAX_XCRS || !m->regs || !m->sregs) {
		snprintf(err, errlen, "vcpu %u: state block of the wrong size or missing", m->id);
		return -EINVAL;
	}
	return 0;
}

static int vcpu_set(struct vcpu *vcpu, unsigned long req, const void *arg, const char *what,
		    char *err, size_t errlen)
{
	if (ioctl(vcpu->fd, req, arg) < 0) {
		snprintf(err, errlen, "vcpu %u: %s refused: %s", vcpu->id, what, strerror(errno));
		return -EINVAL;
	}
	return 0;
}

static int fpu_load(struct vcpu *vcpu, const Cme__Vcpu *m, char *err, size_t errlen)
{
	struct kvm_xcrs xcrs = { .nr_xcrs = (uint32_t)m->n_xcrs };

	if (!vcpu->vm->has_xsave)
		return vcpu_set(vcpu, KVM_SET_FPU, m->fpu.data, "FPU", err, errlen);
	for (size_t i = 0; i < m->n_xcrs; i++) {
		xcrs.xcrs[i].xcr = m->xcrs[i]->index;
		xcrs.xcrs[i].value = m->xcrs[i]->value;
	}
	if (vcpu_set(vcpu, KVM_SET_XSAVE, m->xsave.data, "XSAVE", err, errlen))
		return -EINVAL;
	if (vcpu->vm->has_xcrs && m->n_xcrs)
		return vcpu_set(vcpu, KVM_SET_XCRS, &xcrs, "XCRS", err, errlen);
	return 0;
}

/* The order follows what KVM needs (and QEMU does): registers, FPU, special registers
 * (which set APIC base), LAPIC, MSRs, events, mp_state, TSC deadline, debug registers. */
int vcpu_state_load(struct vcpu *vcpu, const Cme__Vcpu *m, const Cme__VmConfig *cfg, char *err,
		    size_t errlen)
{
	struct kvm_mp_state mp = { .mp_state = m->mp_state };
	struct kvm_regs regs;
	struct kvm_sregs sregs;

	err[0] = 0;
	if (vcpu_state_check(vcpu->vm, m, cfg->n_msr_index, err, errlen) ||
	    regs_load(&regs, m->regs) || sregs_load(&sregs, m->sregs)) {
		if (!*err)
			snprintf(err, errlen, "vcpu %u: malformed registers", m->id);
		return -EINVAL;
	}
	if (vcpu_set(vcpu, KVM_SET_REGS, &regs, "registers", err, errlen) ||
	    fpu_load(vcpu, m, err, errlen) ||
	    vcpu_set(vcpu, KVM_SET_SREGS, &sregs, "special registers", err, errlen) ||
	    vcpu_set(vcpu, KVM_SET_LAPIC, m->lapic.data, "LAPIC", err, errlen) ||
	    msrs_load(vcpu, m, cfg->msr_index, false, err, errlen) ||
	    vcpu_set(vcpu, KVM_SET_VCPU_EVENTS, m->events.data, "events", err, errlen) ||
	    vcpu_set(vcpu, KVM_SET_MP_STATE, &mp, "mp_state", err, errlen) ||
	    msrs_load(vcpu, m, cfg->msr_index, true, err, errlen) ||
	    vcpu_set(vcpu, KVM_SET_DEBUGREGS, m->debugregs.data, "debug registers", err, errlen))
		return -EINVAL;
	return 0;
}

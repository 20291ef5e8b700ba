/* VM creation and teardown: /dev/kvm, memory slots, in-kernel irqchip and PIT. */
#include "cpu_priv.h"
#include "dev_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define SUB "vm"

static int kvm_open(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	int ver;

	if (fd < 0) {
		int err = -errno;

		log_err(SUB, "cannot open /dev/kvm: %s%s", strerror(errno),
			errno == ENOENT ? " (KVM is not available on this host)" : "");
		return err;
	}
	ver = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (ver != KVM_API_VERSION) {
		log_err(SUB, "/dev/kvm speaks API version %d, need %d", ver, KVM_API_VERSION);
		close(fd);
		return -ENOTSUP;
	}
	return fd;
}

/* Free 2 MiB hugepages on this host (HugePages_Free), or -1 when unknown. */
static long free_hugepages(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[128];
	long n = -1;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "HugePages_Free: %ld", &n) == 1)
			break;
	if (f)
		fclose(f);
	return n;
}

static void *map_ram(struct vm *vm, uint64_t size)
{
	int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
	void *p;

	if (!vm->cfg.hugepages)
		return mmap(NULL, size, PROT_READ | PROT_WRITE, flags, -1, 0);
	/* Reserved at the mapping (no MAP_NORESERVE): too few fails now, not at a fault. */
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1,
		 0);
	if (p == MAP_FAILED)
		log_err(SUB,
			"vm=%s --hugepages: %llu MiB need %llu free 2 MiB hugepages, this host has "
			"%ld (vm.nr_hugepages)",
			vm->cfg.name, (unsigned long long)(size >> 20),
			(unsigned long long)(size >> 21), free_hugepages());
	return p;
}

static int vm_add_slot(struct vm *vm, uint64_t gpa, uint64_t size)
{
	struct vm_slot *s = &vm->slots[vm->nr_slots];
	void *p = map_ram(vm, size);

	if (p == MAP_FAILED) {
		if (!vm->cfg.hugepages)
			log_err(SUB, "vm=%s cannot map %llu MiB of guest RAM: %s", vm->cfg.name,
				(unsigned long long)(size >> 20), strerror(errno));
		return -ENOMEM;
	}
	vm->vmm_dirty[vm->nr_slots] = calloc(size / VM_PAGE_SIZE / 64, sizeof(uint64_t));
	if (!vm->vmm_dirty[vm->nr_slots]) {
		munmap(p, size);
		return -ENOMEM;
	}
	/* A core dump of the VMM must not carry the guest's memory. */
	if (madvise(p, size, MADV_DONTDUMP) < 0)
		log_warn(SUB, "vm=%s madvise(MADV_DONTDUMP): %s", vm->cfg.name, strerror(errno));
	if (vm->cfg.ksm && madvise(p, size, MADV_MERGEABLE) < 0)
		log_warn(SUB, "vm=%s --ksm: madvise: %s (no page sharing)", vm->cfg.name,
			 strerror(errno));
	s->gpa = gpa;
	s->size = size;
	s->hva = p;
	vm->nr_slots++;
	return 0;
}

/* (Re)register slot idx with KVM, with or without dirty logging. */
static int vm_register_slot(struct vm *vm, unsigned idx, bool log_dirty)
{
	struct kvm_userspace_memory_region r = {
		.slot = idx,
		.flags = log_dirty ? KVM_MEM_LOG_DIRTY_PAGES : 0,
		.guest_phys_addr = vm->slots[idx].gpa,
		.memory_size = vm->slots[idx].size,
		.userspace_addr = (uintptr_t)vm->slots[idx].hva,
	};

	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
		int err = -errno;

		log_err(SUB, "vm=%s KVM_SET_USER_MEMORY_REGION slot %u: %s", vm->cfg.name, idx,
			strerror(errno));
		return err;
	}
	return 0;
}

static int vm_setup_memory(struct vm *vm)
{
	uint64_t low = vm->cfg.mem_bytes < VM_LOW_MEM_END ? vm->cfg.mem_bytes : VM_LOW_MEM_END;
	int err = vm_add_slot(vm, 0, low);

	if (!err && vm->cfg.mem_bytes > low)
		err = vm_add_slot(vm, VM_HIGH_MEM_BASE, vm->cfg.mem_bytes - low);
	for (unsigned i = 0; !err && i < vm->nr_slots; i++)
		err = vm_register_slot(vm, i, false);
	return err;
}

static int vm_ioctl_checked(struct vm *vm, unsigned long req, void *arg, const char *what)
{
	if (ioctl(vm->vm_fd, req, arg) < 0) {
		int err = -errno;

		log_err(SUB, "vm=%s %s: %s", vm->cfg.name, what, strerror(errno));
		return err;
	}
	return 0;
}

/* In-kernel PIC + IOAPIC + LAPICs and the PIT, created before any vCPU. */
static int vm_setup_irqchip(struct vm *vm)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	int err;

	/* Intel-only real-mode helpers; other hosts accept or ignore them. */
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000ul) < 0)
		log_debug(SUB, "KVM_SET_TSS_ADDR: %s (ignored)", strerror(errno));
	err = vm_ioctl_checked(vm, KVM_CREATE_IRQCHIP, NULL, "KVM_CREATE_IRQCHIP");
	if (!err)
		err = vm_ioctl_checked(vm, KVM_CREATE_PIT2, &pit, "KVM_CREATE_PIT2");
	return err;
}

/* Mask c (KVM's supported CPUID) to the template called name; a template this host cannot
 * offer is refused with the features it lacks. */
static int template_apply(struct kvm_cpuid2 *c, const char *name)
{
	int level = cpu_template_level(name);
	char why[600];
	int err = cpu_template_apply(c, level, why, sizeof(why));

	if (err == -ENOTSUP)
		log_err(SUB, "--cpu-template %s: %s (KVM does not offer them)",
			cpu_template_name(level), why);
	else if (err)
		log_err(SUB, "unknown CPU template \"%s\" (%s)", name, CPU_TEMPLATE_NAMES);
	return err;
}

/* KVM's supported CPUID masked down to the VM's template: what every vCPU is given. */
static int vm_get_cpuid(struct vm *vm)
{
	int err = cpu_supported(vm->kvm_fd, &vm->cpuid);

	if (!err)
		err = template_apply(vm->cpuid, vm->cfg.cpu_template);
	if (!err)
		snprintf(vm->cpu_template, sizeof(vm->cpu_template), "%s",
			 cpu_template_name(cpu_template_level(vm->cfg.cpu_template)));
	return err;
}

/* This host's supported CPUID, for the host-wide questions below (caller frees). */
static int host_cpuid(struct kvm_cpuid2 **c)
{
	int fd = kvm_open(), rc;

	if (fd < 0)
		return fd;
	rc = cpu_supported(fd, c);
	close(fd);
	return rc;
}

int vm_host_cpu_features(char *buf, size_t len)
{
	struct kvm_cpuid2 *c = NULL;
	int rc = host_cpuid(&c);

	if (!rc)
		rc = cpu_feature_names(c, ",", buf, len);
	free(c);
	return rc;
}

int vm_host_cpu_check(const char *name)
{
	struct kvm_cpuid2 *c = NULL;
	int rc = host_cpuid(&c);

	if (!rc)
		rc = template_apply(c, name);
	free(c);
	return rc;
}

/* Manual-protect mode: KVM_GET_DIRTY_LOG only reads the bitmap, and pages are
 * write-protected again by KVM_CLEAR_DIRTY_LOG, range by range, so a migration clears just
 * before it copies and the guest is never stalled for a whole slot. */
static void vm_enable_manual_protect(struct vm *vm)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
				      .args = { KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE } };
	int have = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);

	vm->manual_protect = have > 0 && ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) == 0;
	if (!vm->manual_protect)
		log_debug(SUB, "vm=%s manual dirty-log protection unavailable", vm->cfg.name);
}

/* Why a confidential guest cannot have what cfg asks besides, or NULL. */
static const char *confidential_refusal(const struct vm_config *cfg)
{
	if (!cfg->confidential)
		return NULL;
	if (cfg->ksm)
		return "KSM cannot share encrypted pages (leave out --ksm)";
	if (vm_virtio_count(cfg))
		return "virtio devices read and write guest memory the processor encrypts (no "
		       "bounce buffers here): no disk, net or balloon";
	if (cpu_template_level(cfg->cpu_template) > 0)
		return "the guest runs the host CPU template (a named one hides the SEV leaf "
		       "0x8000001f, where the guest and KVM find the C-bit)";
	return NULL;
}

static int vm_validate_config(const struct vm_config *cfg)
{
	const char *no = confidential_refusal(cfg);

	if (cfg->nr_pin > cfg->nr_vcpus) {
		log_err(SUB, "--pin-vcpus names %u CPUs for %u vCPUs", cfg->nr_pin, cfg->nr_vcpus);
		return -EINVAL;
	}
	if (cfg->nr_disks > VM_MAX_DISKS || cfg->nr_nets > VM_MAX_NETS ||
	    vm_virtio_count(cfg) > VM_MAX_VIRTIO) {
		log_err(SUB, "%u disks and %u nets: at most %d disks, %d nets, %d in all",
			cfg->nr_disks, cfg->nr_nets, VM_MAX_DISKS, VM_MAX_NETS, VM_MAX_VIRTIO);
		return -EINVAL;
	}
	if (vm_virtio_count(cfg) > VM_MAX_VIRTIO) {
		log_err(SUB, "%u virtio devices (disks and balloon): at most %d",
			vm_virtio_count(cfg), VM_MAX_VIRTIO);
		return -EINVAL;
	}
	if (cfg->balloon && cfg->hugepages) {
		log_err(SUB, "a balloon and hugepages exclude each other (README \"Memory "
			     "balloon\")");
		return -EINVAL;
	}
	if (no) {
		log_err(SUB, "--confidential: %s", no);
		return -EINVAL;
	}
	if (cfg->nr_vcpus < 1 || cfg->nr_vcpus > VM_MAX_VCPUS) {
		log_err(SUB, "vCPU count %u out of range 1..%d", cfg->nr_vcpus, VM_MAX_VCPUS);
		return -EINVAL;
	}
	if (cfg->mem_bytes < (2ull << 20) || cfg->mem_bytes > VM_MAX_MEM ||
	    cfg->mem_bytes % (2ull << 20)) {
		log_err(SUB, "memory size %llu bytes: must be a multiple of 2 MiB in 2M..64G",
			(unsigned long long)cfg->mem_bytes);
		return -EINVAL;
	}
	return 0;
}

static int vm_init_sync(struct vm *vm)
{
	vm->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->event_fd < 0)
		return -errno;
	pthread_mutex_init(&vm->dev_lock, NULL);
	pthread_mutex_init(&vm->run_lock, NULL);
	pthread_mutex_init(&vm->release_lock, NULL);
	pthread_cond_init(&vm->run_cond, NULL);
	return 0;
}

int vm_create(const struct vm_config *cfg, struct vm **out)
{
	struct vm *vm;
	int err = vm_validate_config(cfg);

	if (err)
		return err;
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return -ENOMEM;
	vm->cfg = *cfg;
	vm->kvm_fd = vm->vm_fd = vm->event_fd = -1;
	vm->fence_timer_fd = vm->fence_wake_fd = -1;
	err = vm_init_sync(vm);
	if (err)
		goto fail;
	err = vm->kvm_fd = kvm_open();
	if (err < 0)
		goto fail;
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		err = -errno;
		log_err(SUB, "KVM_CREATE_VM: %s", strerror(errno));
		goto fail;
	}
	err = vm_confidential_begin(vm); /* before any vCPU */
	if (!err)
		err = vm_setup_memory(vm);
	if (!err)
		err = vm_confidential_register(vm);
	if (!err)
		err = vm_setup_irqchip(vm);
	if (!err)
		vm_enable_manual_protect(vm);
	if (!err)
		err = vm_get_cpuid(vm);
	if (!err)
		err = vm_setup_devices(vm);
	if (!err)
		err = console_open(&cfg->console, dev_uart_input, vm->console_dev, &vm->console);
	for (unsigned i = 0; !err && i < cfg->nr_vcpus; i++)
		err = vcpu_create(vm, i);
	if (!err)
		err = vm_probe_state_caps(vm);
	if (err)
		goto fail;
	vm->state = VM_CREATED;
	*out = vm;
	return 0;
fail:
	vm_destroy(vm);
	return err < 0 ? err : -EIO;
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	vm_request_stop(vm);
	vm_fence_destroy(vm); /* its thread kicks vCPUs: before they go */
	for (unsigned i = 0; i < VM_MAX_VCPUS; i++)
		vcpu_destroy(&vm->vcpus[i]);
	console_close(vm->console); /* its thread gives input to the UART device: first */
	vm_devices_destroy(vm);	    /* device threads use guest RAM: before it goes */
	for (unsigned i = 0; i < vm->nr_slots; i++) {
		munmap(vm->slots[i].hva, vm->slots[i].size);
		free(vm->vmm_dirty[i]);
	}
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	vm_confidential_free(vm); /* after the VM: KVM let go of its pinned RAM */
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->event_fd >= 0)
		close(vm->event_fd);
	free(vm->cpuid);
	free(vm->msr_index);
	pthread_mutex_destroy(&vm->dev_lock);
	pthread_mutex_destroy(&vm->run_lock);
	pthread_mutex_destroy(&vm->release_lock);
	pthread_cond_destroy(&vm->run_cond);
	free(vm);
}

unsigned vm_nr_slots(const struct vm *vm)
{
	return vm->nr_slots;
}

void vm_get_slot(const struct vm *vm, unsigned idx, struct vm_slot *slot)
{
	*slot = vm->slots[idx];
}

int vm_dirty_log_start(struct vm *vm)
{
	int err = 0;

	if (vm->dirty_logging)
		return -EALREADY;
	for (unsigned i = 0; !err && i < vm->nr_slots; i++)
		err = vm_register_slot(vm, i, true);
	if (!err) {
		for (unsigned i = 0; i < vm->nr_slots; i++) /* what devices wrote before is sent */
			memset(vm->vmm_dirty[i], 0, vm->slots[i].size / VM_PAGE_SIZE / 8);
		atomic_store(&vm->dirty_logging, true);
	}
	return err;
}

int vm_dirty_log_stop(struct vm *vm)
{
	int err = 0;

	if (!vm->dirty_logging)
		return -EINVAL;
	for (unsigned i = 0; !err && i < vm->nr_slots; i++)
		err = vm_register_slot(vm, i, false);
	if (!err)
		atomic_store(&vm->dirty_logging, false);
	return err;
}

int vm_dirty_log_get(struct vm *vm, unsigned idx, uint64_t *bitmap, uint64_t *count)
{
	struct kvm_dirty_log log = { .slot = idx, .dirty_bitmap = bitmap };

	if (!vm->dirty_logging || idx >= vm->nr_slots)
		return -EINVAL;
	if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
		return -errno;
	vm_vmm_dirty_merge(vm, idx, bitmap);
	*count = bits_count(bitmap, vm->slots[idx].size / VM_PAGE_SIZE / 64, UINT64_MAX);
	return 0;
}

int vm_dirty_log_clear(struct vm *vm, unsigned idx, uint64_t first, uint64_t npages, uint64_t *bits)
{
	struct kvm_clear_dirty_log c = { .slot = idx,
					 .first_page = first,
					 .num_pages = (uint32_t)npages,
					 .dirty_bitmap = bits };

	if (!vm->dirty_logging || idx >= vm->nr_slots || first % 64 || npages > UINT32_MAX ||
	    first + npages > vm->slots[idx].size / VM_PAGE_SIZE)
		return -EINVAL;
	vm_vmm_dirty_clear(vm, idx, first, npages, bits);
	if (!vm->manual_protect)
		return 0; /* KVM_GET_DIRTY_LOG already cleared and protected */
	return ioctl(vm->vm_fd, KVM_CLEAR_DIRTY_LOG, &c) < 0 ? -errno : 0;
}

int vm_dirty_log_fetch(struct vm *vm, unsigned idx, uint64_t *bitmap, uint64_t *count)
{
	uint64_t pages = idx < vm->nr_slots ? vm->slots[idx].size / VM_PAGE_SIZE : 0;
	int err = vm_dirty_log_get(vm, idx, bitmap, count);

	if (!err && *count)
		err = vm_dirty_log_clear(vm, idx, 0, pages, bitmap);
	return err;
}

bool vm_get_measurement(struct vm *vm, uint8_t out[MEASURE_BYTES])
{
	if (vm->measured)
		memcpy(out, vm->measurement, MEASURE_BYTES);
	return vm->measured;
}

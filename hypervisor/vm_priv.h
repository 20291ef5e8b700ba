/* Private to hypervisor/: the VM and vCPU structures and the helpers the files share. */
#ifndef CME_VM_PRIV_H
#define CME_VM_PRIV_H

#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <stdatomic.h>

#include "hypervisor.h"

#define VM_LOW_MEM_END	 (3ull << 30) /* RAM below the 3-4 GiB hole */
#define VM_HIGH_MEM_BASE (4ull << 30)
#define VIRTIO_MMIO_BASE 0xd0000000ull /* in the hole: virtio device i at + i * 4 KiB */
#define VIRTIO_MMIO_SIZE 0x1000

/* The virtio devices of a configuration, in their fixed slot order: the disks, then the
 * nets, then the balloon (last). */
static inline unsigned vm_virtio_count(const struct vm_config *c)
{
	return c->nr_disks + c->nr_nets + (c->balloon ? 1 : 0);
}

/* The IOAPIC pin (edge-triggered, active high: ISA-style) of virtio device i. */
static inline unsigned virtio_irq(unsigned i)
{
	static const unsigned char pins[8] = { 5, 6, 7, 9, 10, 11, 12, 14 };

	return pins[i % 8];
}
#define VM_MAX_SLOTS	 2
#define VM_EXIT_PORT	 0x501
#define VM_RESET_PORT	 0xcf9 /* PC reset control register; also the ACPI reset register */
#define VM_RESET_VALUE	 0x06  /* bit 2: reset the CPU */
#define VM_SLEEP_PORT	 0x600 /* ACPI sleep control register (hardware-reduced FADT) */
#define VM_I8042_PORT	 0x64  /* keyboard controller: 0xfe pulses the reset line */
#define VM_MAX_DEVICES	 16
#define VCPU_KICK_SIGNAL SIGUSR1 /* interrupts KVM_RUN; its handler does nothing */

struct vm_device; /* dev_priv.h */

struct console;

struct vcpu {
	struct vm *vm;
	unsigned id;
	int fd;
	struct kvm_run *run;
	size_t run_size;
	pthread_t thread;
	bool thread_started;
	struct vm_vcpu_stats stats; /* written by the vCPU thread, read racily for status */
	/* Its own timer at the fencing deadline: the kick signal straight to this thread
	 * (made by the thread itself; armed under run_lock). */
	timer_t fence_timer;
	bool fence_timer_made;
};

struct vm {
	struct vm_config cfg;
	int kvm_fd, vm_fd;
	struct vm_slot slots[VM_MAX_SLOTS];
	/* Pages the VMM itself wrote (devices), one bit per page of each slot, while dirty
	 * logging is on: KVM's log sees only the guest's writes (gpa.c). */
	_Atomic uint64_t *vmm_dirty[VM_MAX_SLOTS];
	unsigned nr_slots;
	struct vcpu vcpus[VM_MAX_VCPUS];
	struct kvm_cpuid2 *cpuid; /* the template every vCPU got (APIC IDs patched per vCPU) */
	char cpu_template[16];	  /* its CPU template's name (common's cpu_template_name) */
	uint32_t *msr_index;	  /* MSRs captured per vCPU: KVM's list, readable ones */
	unsigned nr_msrs;
	bool has_xsave, has_xcrs;
	size_t xsave_size;
	uint64_t tsc_khz;
	struct console *console;

	/* Devices (dev_priv.h). Their emulation is serialized by dev_lock (exits from
	 * several vCPUs, console input). */
	pthread_mutex_t dev_lock;
	struct vm_device *devices[VM_MAX_DEVICES];
	unsigned nr_devices;
	struct vm_device *console_dev; /* where console input goes */

	/* Run control: pause/resume/stop, guarded by run_lock. */
	pthread_mutex_t run_lock;
	pthread_cond_t run_cond;
	atomic_bool pause_req;	   /* vCPUs must park */
	atomic_bool stop_req;	   /* vCPUs must exit their threads */
	atomic_bool sandbox_probe; /* vCPU 0 makes a forbidden call when it leaves its park */
	unsigned parked;	   /* vCPUs parked right now */
	unsigned pause_gen; /* bumped by every resume: a pause waiting since before gave up */
	enum vm_state state;
	struct vm_end end;
	int event_fd; /* eventfd: written once when the VM ends */
	uint64_t start_ns, pause_start_ns, paused_ns;

	/* Fencing (fence.c): the deadline on CLOCK_BOOTTIME (0: none), read by every vCPU
	 * before it enters the guest; fenced and fenced_at_ns under run_lock. */
	_Atomic uint64_t fence_ns;
	atomic_bool fence_hit; /* a vCPU saw the deadline passed and parked for it */
	bool fenced;
	uint64_t fenced_at_ns;
	int fence_timer_fd, fence_wake_fd; /* timerfd (CLOCK_BOOTTIME), eventfd: quit */
	pthread_t fence_thread;
	bool fence_thread_started;

	atomic_bool dirty_logging;
	pthread_mutex_t release_lock; /* the release watch, below */
	vm_release_fn release_fn;
	void *release_arg;
	bool manual_protect;		    /* KVM_CLEAR_DIRTY_LOG re-protects; GET only reads */
	const char *boot_kind;		    /* "flat" or "linux": how the guest was first booted */
	uint8_t measurement[MEASURE_BYTES]; /* what was loaded (common.h), kept in the state */
	bool measured;			    /* false: restored from a state without one */
	uint64_t loaded_end; /* guest RAM [0, loaded_end) holds what the loader wrote */
	/* cfg.confidential: the SEV launch (confidential.c, sev_priv.h), else NULL. */
	struct sev_launch *sev;
};

/* end.c (below the vCPU threads, devices and run control, which all may end the VM) */
/* Fatal end of the VM (first caller wins): record why, kick every vCPU and wake the
 * control thread. Thread-safe; takes run_lock. */
void vm_set_end(struct vm *vm, enum vm_end_reason reason, int code, const char *fmt, ...)
	CME_PRINTF(4, 5);
/* Ask a vCPU thread to leave KVM_RUN now (pause or stop). */
void vcpu_kick(struct vcpu *vcpu);
/* vcpu_kick() every vCPU. */
void vm_kick_all(struct vm *vm);

/* A one-shot absolute timer value at ns (0: disarmed), for timerfd_settime and
 * timer_settime with their ABSTIME flags. */
static inline struct itimerspec vm_fence_itimer(uint64_t ns)
{
	return (struct itimerspec){ .it_value = { .tv_sec = (time_t)(ns / 1000000000ull),
						  .tv_nsec = (long)(ns % 1000000000ull) } };
}

/* True once the fencing deadline has passed: the guest must not run. */
static inline bool vm_fence_passed(struct vm *vm)
{
	uint64_t f = atomic_load(&vm->fence_ns);

	return f && boottime_ns() >= f;
}

/* run.c: park every vCPU (run_lock held, state VM_RUNNING); false when the VM ended
 * meanwhile. */
bool vm_pause_locked(struct vm *vm);
/* run.c: once the fencing deadline passed (or a vCPU parked for it), make the whole VM
 * paused and fenced (run_lock held). */
void vm_fence_settle_locked(struct vm *vm);

/* fence.c: stop the fencing timer's thread and close its descriptors. */
void vm_fence_destroy(struct vm *vm);

/* gpa.c */
/* Host pointer for [gpa, gpa + len) inside one slot, or NULL (overflow-safe). */
void *vm_gpa_to_hva(struct vm *vm, uint64_t gpa, uint64_t len);
/* The VMM wrote guest RAM [gpa, gpa + len) (a device's DMA): while dirty logging is on,
 * those pages are reported dirty as if the guest had written them. Call it after the
 * write, so a copy made after the bit is cleared sees the new bytes. Thread-safe. */
void vm_mark_dirty(struct vm *vm, uint64_t gpa, uint64_t len);
/* Merge slot idx's VMM-written pages into a dirty bitmap (words for the whole slot). */
void vm_vmm_dirty_merge(struct vm *vm, unsigned idx, uint64_t *bitmap);
/* Clear the VMM-written bits set in bits (npages from page first, a multiple of 64). */
void vm_vmm_dirty_clear(struct vm *vm, unsigned idx, uint64_t first, uint64_t npages,
			const uint64_t *bits);

/* state.c: probe what state KVM offers (XSAVE, XCRS, readable MSRs); after vCPU 0. */
int vm_probe_state_caps(struct vm *vm) CME_WUR;

/* state_cpuid.c: set a vCPU's CPUID from a template, with its own APIC IDs. */
int vcpu_apply_cpuid(struct vcpu *vcpu, const struct kvm_cpuid2 *tmpl) CME_WUR;

/* vcpu.c */
int vcpu_create(struct vm *vm, unsigned id) CME_WUR;
void vcpu_destroy(struct vcpu *vcpu);
int vcpu_start(struct vcpu *vcpu) CME_WUR;
/* Arm the vCPU's own fencing timer at deadline_ns (0 disarms); run_lock held. */
void vcpu_fence_timer_arm(struct vcpu *vcpu, uint64_t deadline_ns);

/* exits.c: handle one KVM exit; returns false when the vCPU must stop running. */
bool vcpu_handle_exit(struct vcpu *vcpu);
/* A one-line register dump for fault reports. */
void vcpu_describe_regs(struct vcpu *vcpu, char *buf, size_t len);

/* boot_flat.c: long-mode entry shared by the flat and Linux loaders. */
#define BOOT_PML4 0x1000ull /* identity page tables: PML4, PDPT, then the PDs */

struct boot_lm {
	uint64_t gdt, tss;
	uint16_t gdt_limit, cs, ds, tr;
	uint32_t tss_limit;
};

/* Set a vCPU's special registers for 64-bit mode with the identity tables at BOOT_PML4. */
int boot_set_long_mode(struct vcpu *vcpu, const struct boot_lm *lm) CME_WUR;
/* Write a 16-byte busy 64-bit TSS descriptor at gdt + off. */
void gdt_put_tss(uint8_t *gdt, unsigned off, uint64_t base, uint32_t limit);
/* Build the identity page tables at BOOT_PML4 for all RAM and 0-4 GiB. */
int boot_page_tables(struct vm *vm) CME_WUR;
/* Bytes the identity map must cover: all RAM and the LAPIC below 4 GiB. */
uint64_t boot_map_bytes(const struct vm *vm);

/* The page tables builder, exposed for unit tests. Writes an identity map
 * of [0, map_bytes) with 2 MiB pages at pml4_gpa in the guest memory mem (which starts at
 * guest physical 0 and has mem_len bytes). enc (a confidential guest's C-bit, else 0) is
 * set in every entry but the leaves of the 3-4 GiB hole, whose devices are the host's.
 * Returns the number of PD pages or -errno. */
int flat_build_page_tables(uint8_t *mem, uint64_t mem_len, uint64_t pml4_gpa, uint64_t map_bytes,
			   uint64_t enc) CME_WUR;

/* confidential.c: AMD SEV for cfg.confidential, in vm_create's and vm_start's order.
 * Each returns 0 or -errno with a logged reason; all do nothing for other VMs. */
/* After KVM_CREATE_VM, before any vCPU: /dev/sev, INIT and LAUNCH_START. */
int vm_confidential_begin(struct vm *vm) CME_WUR;
/* After the memory slots: each registered (pinned) as memory that holds private pages. */
int vm_confidential_register(struct vm *vm) CME_WUR;
/* Before the first guest instruction: what the loader wrote encrypted in place, then the
 * launch measurement and LAUNCH_FINISH. */
int vm_confidential_launch(struct vm *vm) CME_WUR;
void vm_confidential_free(struct vm *vm);

/* acpi.c: RSDP, XSDT, FADT, DSDT and MADT at 0xe0000 for Linux guests. */
int acpi_build(struct vm *vm) CME_WUR;

/* console.c: output to stdout, a file or socket clients; socket clients' input is handed
 * to input() from the console thread. */
typedef void (*console_input_fn)(void *opaque, const uint8_t *buf, size_t len);
int console_open(const struct console_cfg *cfg, console_input_fn input, void *opaque,
		 struct console **out) CME_WUR;
void console_write(struct console *c, const void *buf, size_t len);
void console_close(struct console *c);

#endif

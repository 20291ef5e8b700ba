/* hypervisor — one VM on Linux KVM: memory, vCPU threads, boot loaders, devices.
 *
 * Lifecycle: vm_create() → vm_load_flat() → vm_start() → (vm_pause()/vm_resume(),
 * dirty logging, ...) → the VM ends (guest exit, fault or vm_request_stop()) and
 * vm_event_fd() becomes readable → vm_destroy(). All functions are called from one
 * control thread; vCPU threads are internal. */
#ifndef CME_HYPERVISOR_H
#define CME_HYPERVISOR_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"

struct vm;

#define VM_MAX_VCPUS 32
#define VM_MAX_MEM   (64ull << 30)
#define VM_PAGE_SIZE 4096ull

enum console_kind { CONSOLE_STDOUT, CONSOLE_FILE, CONSOLE_SOCKET, CONSOLE_NONE };

struct console_cfg {
	enum console_kind kind;
	const char *path;   /* file or socket path; NULL for stdout/none */
	uint64_t max_bytes; /* a file's cap: past it, it becomes PATH.1 (0: no cap) */
};

#define CONSOLE_MAX_DEFAULT (16ull << 20)
#define CONSOLE_MAX_MIN	    (64ull << 10)

/* Parse "stdout", "none", "file:PATH" or "socket:PATH". Returns 0 or -EINVAL.
 * out->path points into s. */
int console_cfg_parse(const char *s, struct console_cfg *out) CME_WUR;

#define VM_MAX_DISKS  8
#define VM_MAX_VIRTIO 8 /* virtio devices of all kinds: one IOAPIC pin each */

/* A virtio-blk disk backed by a raw image file (README "Disks"). */
struct vm_disk {
	const char *path; /* not copied, must outlive the VM */
	bool ro;
	bool direct; /* O_DIRECT: past the host's page cache */
};

#define VM_MAX_NETS 4
#define VM_MAC_LEN  6

/* A rate limit of one direction of a net device (README "Networks"): bytes and frames per
 * second, each 0 for none. */
struct vm_net_limit {
	uint64_t bytes_per_s, frames_per_s;
};

/* A virtio-net device backed by a host tap device (README "Networks"). */
struct vm_net {
	const char *tap; /* the tap's name; not copied, must outlive the VM */
	uint8_t mac[VM_MAC_LEN];
	bool mac_set; /* false: derived from the VM's name and the device's index */
	struct vm_net_limit tx, rx;
};

struct vm_config {
	const char *name;   /* for logs and status; not copied, must outlive the VM */
	uint64_t mem_bytes; /* multiple of 2 MiB, at most VM_MAX_MEM */
	unsigned nr_vcpus;  /* 1..VM_MAX_VCPUS */
	struct console_cfg console;
	struct vm_disk disks[VM_MAX_DISKS];
	unsigned nr_disks;
	struct vm_net nets[VM_MAX_NETS];
	unsigned nr_nets; /* nr_disks + nr_nets + balloon <= VM_MAX_VIRTIO */
	/* Resource control (README "Resource control"). */
	bool hugepages;	       /* back RAM with 2 MiB hugepages (refused if too few) */
	bool ksm;	       /* mark RAM mergeable (KSM page sharing) */
	int pin[VM_MAX_VCPUS]; /* host CPU of vCPU i, for i < nr_pin */
	unsigned nr_pin;
	uint64_t epoch; /* the VM's owner epoch (cme-clusterd's), 0: none; guards the disks */
	/* A live migration's destination: writable images are opened but locked only at
	 * VM_HANDOFF_CLAIM, once the source has let them go. */
	bool incoming;
	bool balloon; /* a virtio memory balloon, the last virtio slot (not with hugepages) */
	/* The CPU template (README "CPU templates"): NULL or "host" for KVM's supported CPUID
	 * as it is, "x86-64-v1".."x86-64-v4" for it masked down to that level. A restored or
	 * arriving guest keeps the template of its state; on a migration's destination this
	 * one bounds what this host offers it. Not copied. */
	const char *cpu_template;
	/* Guest memory encrypted by the processor (README "Confidential VMs"): AMD SEV,
	 * launched from a flat image, without virtio devices or KSM. vm_create fails where
	 * the host cannot; nothing of the guest runs in clear. */
	bool confidential;
};

enum vm_state { VM_CREATED, VM_RUNNING, VM_PAUSED, VM_ENDED };

/* Why a VM ended. The program maps these to exit statuses (see README). */
enum vm_end_reason {
	VM_END_NONE,	   /* still running */
	VM_END_STOPPED,	   /* vm_request_stop() */
	VM_END_GUEST_EXIT, /* the guest wrote its exit code to port 0x501 */
	VM_END_TRIPLE_FAULT,
	VM_END_INTERNAL,   /* KVM internal error, failed entry or emulation failure */
	VM_END_HOST_ERROR, /* a KVM ioctl failed in the VMM */
	VM_END_POWEROFF,   /* the guest powered off (ACPI sleep state S5) */
	VM_END_REBOOT,	   /* the guest asked for a reset (ACPI, 0xcf9 or the i8042) */
	VM_END_MIGRATED,   /* the guest now runs on another host */
};

struct vm_end {
	enum vm_end_reason reason;
	int code;	  /* guest exit code for VM_END_GUEST_EXIT */
	char detail[512]; /* one line: what happened, with vCPU and registers where relevant */
};

struct vm_vcpu_stats {
	uint64_t exits; /* every return from KVM_RUN */
	uint64_t io_exits;
	uint64_t mmio_exits;
	uint64_t hlt_exits;
	uint64_t intr_exits; /* kicked out by a signal (pause, stop) */
	uint64_t other_exits;
	uint64_t run_ns; /* wall time inside KVM_RUN, counted when KVM_RUN returns */
	uint64_t cpu_ns; /* CPU time of the vCPU thread (guest and VMM work) */
};

struct vm_info {
	const char *name;
	enum vm_state state; /* a fenced VM is VM_PAUSED with fenced set */
	bool fenced;
	uint64_t mem_bytes;
	unsigned nr_vcpus;
	uint64_t tsc_khz;
	uint64_t uptime_ns; /* since vm_start() */
	uint64_t paused_ns; /* total time paused */
	unsigned nr_disks;  /* virtio-blk disks */
	unsigned nr_nets;   /* virtio-net devices */
	bool balloon;	    /* a virtio-balloon */
	bool hugepages, ksm;
	unsigned nr_pin; /* vCPUs 0..nr_pin-1 are pinned, to host CPU pin[i] */
	int pin[VM_MAX_VCPUS];
	const char *cpu_template; /* its CPU template's name; valid while the VM lives */
};

/* What a net device has done, for status. */
struct vm_net_stats {
	char tap[16];
	uint8_t mac[VM_MAC_LEN];
	struct vm_net_limit tx_limit, rx_limit;
	uint64_t tx_frames, tx_bytes, rx_frames, rx_bytes; /* Ethernet frames, without header */
	uint64_t tx_dropped, rx_dropped;     /* refused by the tap, or malformed / too large */
	uint64_t tx_throttled, rx_throttled; /* times the rate limit held the queue back */
};

/* Net device idx (< nr_nets) of a created VM into *st. Returns 0 or -ENOENT. */
int vm_get_net_stats(struct vm *vm, unsigned idx, struct vm_net_stats *st) CME_WUR;

/* A confidential VM's launch, for status. */
struct vm_confidential {
	const char *technology;	  /* "sev" */
	uint32_t policy;	  /* the SEV guest policy the firmware enforces */
	unsigned c_bit;		  /* the page-table bit of private memory */
	bool launched;		  /* LAUNCH_FINISH done: the guest may run */
	uint64_t encrypted;	  /* bytes the loader wrote, encrypted by LAUNCH_UPDATE_DATA */
	uint8_t measurement[512]; /* LAUNCH_MEASURE's blob (SEV: 32-byte HMAC, 16-byte nonce) */
	size_t measurement_len;	  /* 0 before the launch */
};

/* True for a confidential VM, with *out filled unless out is NULL. */
bool vm_get_confidential(struct vm *vm, struct vm_confidential *out);

/* Open /dev/kvm and create the VM with its memory, in-kernel irqchip, PIT, vCPUs
 * (CPUID from KVM_GET_SUPPORTED_CPUID) and console. Returns 0 with *out owned by the
 * caller (release with vm_destroy()), or -errno with a logged reason; nothing is left
 * behind on failure. */
int vm_create(const struct vm_config *cfg, struct vm **out) CME_WUR;

/* Load a flat 64-bit image at 1 MiB and prepare every vCPU by the flat image ABI
 * (README, "Flat image ABI"). cmdline may be NULL. Returns 0, -ENOENT (no image),
 * -EFBIG (image does not fit), -E2BIG (command line over 4095 bytes) or -errno. */
int vm_load_flat(struct vm *vm, const char *image, const char *cmdline) CME_WUR;

/* Load a Linux kernel — a bzImage, or an uncompressed ELF vmlinux entered at its 64-bit
 * entry — with an optional initrd and command line, by the x86 64-bit boot protocol
 * (zero page, e820 map). vCPU 0 starts the kernel; the others wait for INIT/SIPI.
 * Returns 0 or -errno with a logged reason (-EFBIG: does not fit; -E2BIG: command line
 * too long; -ENOTSUP: kernel without a 64-bit entry; -EINVAL: not a kernel). */
int vm_load_linux(struct vm *vm, const char *kernel, const char *initrd,
		  const char *cmdline) CME_WUR;

/* Start one thread per vCPU; with paused, every vCPU parks before running any guest code
 * (vm_resume() lets it go). Returns 0 or -errno (nothing started). */
int vm_start(struct vm *vm, bool paused) CME_WUR;

/* Stop all vCPUs out of KVM_RUN and park them; returns when all are parked.
 * Idempotent. Returns 0, or -ESRCH when the VM has ended. */
int vm_pause(struct vm *vm) CME_WUR;
/* Let parked vCPUs run again. Idempotent. Returns 0, -ESRCH when ended, or -EPERM while
 * the fencing deadline has passed (see vm_fence_set). */
int vm_resume(struct vm *vm) CME_WUR;

/* End the VM (reason VM_END_STOPPED) unless it already ended. Thread-safe. */
void vm_request_stop(struct vm *vm);

/* An fd that becomes readable once the VM has ended (level-triggered). */
int vm_event_fd(const struct vm *vm);
/* Copy how the VM ended into *end; returns false while it is still running. */
bool vm_get_end(struct vm *vm, struct vm_end *end);

void vm_get_info(struct vm *vm, struct vm_info *info);
/* Per-vCPU counters; idx < nr_vcpus. */
void vm_get_vcpu_stats(struct vm *vm, unsigned idx, struct vm_vcpu_stats *st);
const char *vm_state_name(enum vm_state st);

/* Stop the vCPU threads (if running) and release everything. NULL is ignored. */
void vm_destroy(struct vm *vm);

/* ---- guest memory and dirty logging -------------------------------------------------- */

struct vm_slot {
	uint64_t gpa;  /* guest physical base */
	uint64_t size; /* bytes, multiple of VM_PAGE_SIZE */
	uint8_t *hva;  /* host mapping */
};

/* Number of memory slots (1 below 3 GiB, 2 above) and a copy of one. */
unsigned vm_nr_slots(const struct vm *vm);
void vm_get_slot(const struct vm *vm, unsigned idx, struct vm_slot *slot);

/* Host pointer for guest memory [gpa, gpa + len) when it lies inside one slot, else NULL
 * (overflow-safe: for addresses that come from a peer or a file). */
void *vm_gpa_hva(struct vm *vm, uint64_t gpa, uint64_t len);

/* Give guest RAM [gpa, gpa + len) (page-aligned, inside one slot) back to the host: its
 * pages read as zeros afterwards, and are backed again when the guest touches them.
 * Thread-safe; while dirty logging is on, the pages are reported dirty. Returns 0, -EINVAL (not page-aligned or not in RAM), -ENOTSUP (hugepages)
 * or -errno of madvise. */
int vm_ram_release(struct vm *vm, uint64_t gpa, uint64_t len) CME_WUR;
/* Someone to tell about every vm_ram_release, after its pages were dropped: a tracker of
 * guest memory that watches the page tables (migrate's source digest) sees a write, but not
 * a page given back. fn(arg, gpa, len) runs on the releasing thread; fn NULL stops it.
 * Returns once no call to the previous watcher is in progress. */
typedef void (*vm_release_fn)(void *arg, uint64_t gpa, uint64_t len);
void vm_set_release_watch(struct vm *vm, vm_release_fn fn, void *arg);

/* Begin dirty-page logging on every slot. Returns 0 or -errno (-EALREADY if on). */
int vm_dirty_log_start(struct vm *vm) CME_WUR;
/* End dirty-page logging. Returns 0 or -errno (-EINVAL if it was off). */
int vm_dirty_log_stop(struct vm *vm) CME_WUR;
/* Get and clear slot idx's dirty bitmap into bitmap (one bit per page, at least
 * slot.size / 4096 / 64 words). Also returns the count of dirty pages in *count.
 * Returns 0, -EINVAL when logging is off, or -errno. */
int vm_dirty_log_fetch(struct vm *vm, unsigned idx, uint64_t *bitmap, uint64_t *count) CME_WUR;
/* Read slot idx's dirty bitmap without clearing it (clear with vm_dirty_log_clear before
 * copying the pages, so writes after the copy are logged again). */
int vm_dirty_log_get(struct vm *vm, unsigned idx, uint64_t *bitmap, uint64_t *count) CME_WUR;
/* Clear the dirty bits set in bits (npages bits, from page first, a multiple of 64) and
 * write-protect those pages again. Thread-safe. Returns 0 or -errno. */
int vm_dirty_log_clear(struct vm *vm, unsigned idx, uint64_t first, uint64_t npages,
		       uint64_t *bits) CME_WUR;

/* ---- devices across a live migration ------------------------------------------------ */

/* A disk image is written by one VMM at a time (its lock). A live migration hands it over
 * while the guest is paused: the source flushes and unlocks (RELEASE) before it sends
 * the device state; the destination locks what it was released (CLAIM) before it says
 * READY, and records its owner epoch on the image when the guest first runs there; a
 * migration that fails gives the images back to the source (RECLAIM) before its guest
 * runs again. */
enum vm_handoff {
	VM_HANDOFF_RELEASE, /* source, VM paused: flush each writable image and unlock it */
	VM_HANDOFF_RECLAIM, /* source, the migration failed: lock them again */
	VM_HANDOFF_CLAIM,   /* destination (cfg.incoming): lock them; never take one over */
};

/* Apply one step to every device. RECLAIM waits up to timeout_ms for a destination that
 * still holds a lock. Returns 0, or -errno with a one-line reason in err (RELEASE: the
 * images already released stay released; call RECLAIM). */
int vm_devices_handoff(struct vm *vm, enum vm_handoff step, int timeout_ms, char *err,
		       size_t errlen) CME_WUR;

/* ---- disks for backups (backup/) ---------------------------------------------------- */

/* Disk idx (its --disk order): its size in bytes and whether it is read-only. -ENOENT. */
int vm_disk_info(struct vm *vm, unsigned idx, uint64_t *bytes, bool *ro) CME_WUR;
/* Record which block-byte blocks (a multiple of 512) of disk idx the guest writes or
 * discards, each once the request has completed, until vm_disk_track_stop. 0, -EALREADY,
 * -ENOENT, -ENOMEM. */
int vm_disk_track_start(struct vm *vm, unsigned idx, uint32_t block) CME_WUR;
/* OR the blocks written since the last fetch into bitmap (words 64-bit words, at least
 * ceil(blocks / 64)) and clear them. Thread-safe. 0, -EINVAL (not tracking), -ENOENT. */
int vm_disk_track_fetch(struct vm *vm, unsigned idx, uint64_t *bitmap, size_t words) CME_WUR;
void vm_disk_track_stop(struct vm *vm, unsigned idx);
/* Read or write len bytes at off (whole sectors) of disk idx's image, from any thread;
 * pwrite with buf NULL makes them zeros (a hole). 0, -EINVAL, -EROFS, -errno. */
int vm_disk_pread(struct vm *vm, unsigned idx, void *buf, size_t len, uint64_t off) CME_WUR;
int vm_disk_pwrite(struct vm *vm, unsigned idx, const void *buf, size_t len, uint64_t off) CME_WUR;

/* ---- the memory balloon (--balloon) ------------------------------------------------- */

/* What the balloon holds and has done, in 4 KiB pages. The counters run from the VM's
 * creation and travel with its state (snapshot, restore). */
struct vm_balloon {
	uint64_t target_pages;	 /* asked of the guest (num_pages) */
	uint64_t actual_pages;	 /* what the guest says its balloon holds (actual) */
	uint64_t inflated_pages; /* given to the balloon (inflateq) */
	uint64_t deflated_pages; /* taken back (deflateq) */
	uint64_t reported_pages; /* reported free (free-page reporting) */
	uint64_t released_bytes; /* of those, given back to the host's memory */
};

/* Ask the guest to hold target_pages in its balloon: the guest sees the new target with a
 * configuration-change interrupt and inflates or deflates towards it. Thread-safe.
 * Returns 0, -ENODEV when the VM has no balloon, -ERANGE above the VM's RAM. */
int vm_balloon_set(struct vm *vm, uint64_t target_pages) CME_WUR;
/* The balloon's state into *b; false (and *b zeroed) when the VM has none. Thread-safe. */
bool vm_balloon_get(struct vm *vm, struct vm_balloon *b);

/* ---- fencing (lease-bound execution) ------------------------------------------------- */

/* From deadline_ns of CLOCK_BOOTTIME on (0: no deadline), the guest runs no instruction: a
 * timer of the VMM's own parks every vCPU at the deadline, and each vCPU checks it before
 * every entry into the guest, so a host frozen past it and thawed never runs the guest
 * again. The VM is then fenced: paused, and vm_resume() refused (-EPERM) while the
 * deadline stays passed. A later deadline extends it, even after fencing; only then may
 * the caller resume (cme-clusterd does so only once it knows its lease and the VM's
 * ownership still hold). A deadline already passed fences at once. Returns 0, or -ESRCH
 * when the VM has ended, or -errno when the timer cannot be set up (nothing changed). */
int vm_fence_set(struct vm *vm, uint64_t deadline_ns) CME_WUR;

struct vm_fence {
	uint64_t deadline_ns;  /* 0: none */
	bool fenced;	       /* the deadline passed and the vCPUs were parked for it */
	uint64_t fenced_at_ns; /* CLOCK_BOOTTIME when that happened */
	bool passed;	       /* the deadline has passed (fenced, or about to be) */
};
void vm_fence_get(struct vm *vm, struct vm_fence *f);

/* The VM has moved to another host: end it here (reason VM_END_MIGRATED). */
void vm_end_migrated(struct vm *vm, const char *detail);

/* ---- state, snapshot and restore ---------------------------------------------------- */

/* Capture the complete state of a paused (or not yet started) VM as a packed VmState
 * message (proto/vmstate.proto). Returns 0 with *buf (malloc'd, caller frees) and *len,
 * -EBUSY while the VM runs, -ENOMEM when memory runs out (nothing is held; the VM is as it
 * was and may resume), or -errno. */
int vm_state_save(struct vm *vm, uint8_t **buf, size_t *len) CME_WUR;
/* Apply a packed VmState to a VM created with the same configuration that has not started.
 * Returns 0, or -EINVAL with a one-line reason in err (the VM must then be destroyed). */
int vm_state_load(struct vm *vm, const uint8_t *buf, size_t len, char *err, size_t errlen) CME_WUR;
/* Memory size and vCPU count of a packed VmState. Returns 0 or -EINVAL. */
/* The boot measurement a saved state carries: 0 with *measured set or not, -EINVAL when
 * the state does not decode. */
int vm_state_peek_measurement(const uint8_t *buf, size_t len, uint8_t out[MEASURE_BYTES],
			      bool *measured);
int vm_state_peek_config(const uint8_t *buf, size_t len, uint64_t *mem_bytes,
			 unsigned *vcpus) CME_WUR;

struct vm_snapshot_stats {
	uint64_t bytes;	     /* file size */
	uint64_t pages;	     /* non-zero pages stored */
	uint64_t zero_pages; /* pages skipped because they are zero */
	uint64_t state_bytes;
	uint64_t ms; /* wall time of the write or the load */
};

/* Write a snapshot of a paused VM to path (a temporary file renamed into place, so a
 * failed write never leaves a partial snapshot). Returns 0, or -errno with a reason. */
#define VM_SNAPSHOT_KEY_BYTES 32
/* key: VM_SNAPSHOT_KEY_BYTES to encrypt it with (libsodium secretstream), or NULL. */
int vm_snapshot_write(struct vm *vm, const char *path, const uint8_t *key,
		      struct vm_snapshot_stats *st, char *err, size_t errlen) CME_WUR;
/* Create a VM (not started) from a snapshot. cfg gives name and console; its mem_bytes and
 * nr_vcpus, when non-zero, must match the file's. The header, every memory record and
 * the checksum are verified before any state is applied; a truncated, corrupt or
 * incompatible file is refused with a reason in err and nothing is left behind.
 * Returns 0 with *out, or -errno. */
/* key: what an encrypted snapshot needs (NULL: it must be a plain one; a plain one is
 * refused when a key is given). */
int vm_snapshot_restore(const char *path, const uint8_t *key, const struct vm_config *cfg,
			struct vm **out, struct vm_snapshot_stats *st, char *err,
			size_t errlen) CME_WUR;

/* What vm_snapshot_verify_fd() read from a snapshot. */
struct vm_snapshot_info {
	uint64_t mem_bytes;
	unsigned vcpus;
	bool encrypted;
	bool measured; /* the state carries a boot measurement */
	uint8_t measurement[MEASURE_BYTES];
	struct vm_snapshot_stats st; /* bytes, pages, state_bytes */
};

/* Read a whole snapshot from fd (at its start) and check it as restore would, without a
 * VM: the header, that the state decodes, every memory record inside the RAM layout, the
 * checksum, nothing after it — and, encrypted, that every part decrypts with key (NULL:
 * the snapshot must be plain). Returns 0, or -errno with the one-line reason in err. */
int vm_snapshot_verify_fd(int fd, const uint8_t *key, struct vm_snapshot_info *info, char *err,
			  size_t errlen) CME_WUR;

/* ---- the seccomp sandbox (sandbox.c; `cme-vmm --jail`) -------------------------------- */

/* Thread kinds, each with its own allow-list (README "The VMM sandbox"). */
enum sandbox_kind {
	SANDBOX_CONTROL,
	SANDBOX_VCPU,
	SANDBOX_DEVICE,
	SANDBOX_CONSOLE,
	SANDBOX_MIGRATION,
	SANDBOX_KINDS
};

struct sandbox_cfg {
	const char *name; /* the VM, for the log */
	int exit_fd; /* an open exit file a violation writes {"status","syscall","thread"} to, or -1 */
	int exit_status; /* the VMM's status after a forbidden call */
};

/* Arm the sandbox before the first thread: no_new_privs and the SIGSYS handler. From then
 * on every sandbox_enter() loads a filter. Returns 0, or -errno with a reason in err. */
int sandbox_arm(const struct sandbox_cfg *cfg, char *err, size_t errlen);
bool sandbox_armed(void);
/* Load the calling thread's allow-list (a no-op unless armed). A thread that cannot be
 * filtered ends the VMM: it must not run unfiltered when asked to run sandboxed. */
void sandbox_enter(enum sandbox_kind kind);
/* Make a system call no list allows (the tests' proof that the filter works): returns
 * only when this thread runs unfiltered. */
long sandbox_probe(void);
/* The same from vCPU 0's thread: pause, ask, resume. Returns 0, or -errno when the VM
 * cannot be paused (it ended). */
int vm_sandbox_probe_vcpu(struct vm *vm);

/* ---- CPU templates (README "CPU templates") ----------------------------------------- */

/* The CPU features this host's KVM offers (KVM_GET_SUPPORTED_CPUID, named by common's
 * table), comma-separated into buf. Returns how many, or -errno with a logged reason
 * (-ENOSPC: buf too short). */
int vm_host_cpu_features(char *buf, size_t len) CME_WUR;
/* Can this host offer the CPU template called name (NULL: "host")? 0, or -ENOTSUP with
 * the features it lacks logged in one line (-EINVAL: no such template; -errno: KVM
 * cannot be asked). */
int vm_host_cpu_check(const char *name) CME_WUR;
/* The VM's boot measurement (common.h: image or kernel, initrd, command line) into out;
 * false when it has none (restored from a state written before measurements). */
bool vm_get_measurement(struct vm *vm, uint8_t out[MEASURE_BYTES]);
/* The guest memory encryption this host's KVM offers ("sev", "sev-es", "sev-snp", "tdx"),
 * comma-separated into buf; returns how many (0: none). */
int vm_host_memory_encryption(char *buf, size_t len);
/* The features vm's guest sees, comma-separated into buf. Returns how many or -ENOSPC. */
int vm_cpu_features(struct vm *vm, char *buf, size_t len) CME_WUR;
/* The guest's CPU as its state records it: a packed VmConfig (proto/vmstate.proto) that
 * holds only the CPU template's name and the CPUID. Returns 0 with *buf (malloc'd, the
 * caller frees) and *len, or -ENOMEM. */
int vm_cpu_save(struct vm *vm, uint8_t **buf, size_t *len) CME_WUR;
/* Can vm (created here, not started: KVM's CPUID masked by its cfg's cpu_template) give
 * the guest that the packed VmConfig describes every feature it sees? 0 when it can, or
 * when the config has no CPUID (older VMMs sent none); -ENOTSUP with "this host lacks
 * avx2, bmi2 that the guest sees" in err; -EINVAL when it does not parse or names an
 * unknown template. */
int vm_cpu_check(struct vm *vm, const uint8_t *buf, size_t len, char *err, size_t errlen) CME_WUR;

#endif

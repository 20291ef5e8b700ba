/* Private to hypervisor/: the device model.
 *
 * A device is a const table of operations (struct dev_ops) and the ranges of port I/O or
 * MMIO space it claims. The devices of a VM are registered, in a visible table, by
 * vm_setup_devices() (devices.c); KVM exits reach them through dev_dispatch(), under the
 * VM's dev_lock, so a device's io() never runs on two vCPUs at once. Lock order: dev_lock,
 * then run_lock (a device may end the VM); never dev_lock while holding run_lock.
 *
 * State: each device with state has ONE function that both saves and restores it, field by
 * field, through the DEV_XFER and DEV_CMP macros below, so save and restore cannot drift
 * apart; on restore it compares what must not change (bhyve's snapshot macros do the
 * same). Each device's state travels as its own versioned section (DeviceState in
 * proto/vmstate.proto: name, version, bytes), so a newer VMM reads an older stream; a
 * device missing from a stream keeps its reset state.
 *
 * Files, top-down: devices.c (the table, dispatch, the state sections) → dev_uart.c,
 * dev_power.c (the devices) → dev_state.c (helpers of the state functions) → arena.c. */
#ifndef CME_DEV_PRIV_H
#define CME_DEV_PRIV_H

#include <protobuf-c/protobuf-c.h>

#include "arena_priv.h"
#include "vm_priv.h"
#include "vmstate.pb-c.h"

#define DEV_MAX_RANGES 2

enum dev_space { DEV_PIO, DEV_MMIO };

/* [base, base + len) of port I/O or guest-physical MMIO space. */
struct dev_range {
	enum dev_space space;
	uint64_t base, len;
};

/* One guest access, as the vCPU made it. */
struct dev_access {
	uint64_t addr; /* port or guest-physical address */
	uint64_t off;  /* from the base of the range it hit (set by dev_dispatch) */
	unsigned size; /* bytes: 1, 2 or 4 (port I/O), up to 8 (MMIO) */
	bool write;
	uint8_t *data; /* the kvm_run buffer: written by the guest, or to fill for a read */
	unsigned vcpu; /* the vCPU's id, for log lines */
	bool stop;     /* set by a device: the VM has ended, this vCPU must not go on */
};

/* How a state function moves its fields: the direction, the bytes of its section, and
 * where a restore puts the reason it refuses. */
struct dev_xfer {
	const char *name; /* the device's, for reasons */
	bool save;
	uint32_t version;    /* restore: the section's version, 1..ops->state_version */
	struct arena *arena; /* save: where the packed bytes go */
	ProtobufCBinaryData bytes;
	char *err;
	size_t errlen;
};

struct vm_device;

struct dev_ops {
	const char *name;	/* in logs and as the name of its state section */
	uint32_t state_version; /* of its state section; 0: the device has no state */
	/* io() touches no state of the device's own: called without dev_lock, so a guest's
	 * exit or poweroff never waits behind another vCPU's console output. */
	bool lockless;
	/* Allocate the device's own data into d->priv (NULL: it needs none). 0 or -errno. */
	int (*create)(struct vm_device *d);
	/* Release what create allocated. */
	void (*destroy)(struct vm_device *d);
	/* Back to power-on state (at creation, before the guest's first instruction). */
	void (*reset)(struct vm_device *d);
	/* A guest access to one of its ranges. Called with dev_lock held (unless lockless).
	 * A read must fill a->data (size bytes); an unhandled register reads as all-ones.
	 * An access that ends the VM (vm_set_end) sets a->stop. */
	void (*io)(struct vm_device *d, struct dev_access *a);
	/* The VM pauses (true) or runs again (false): a device with a thread of its own
	 * finishes what it is doing and then touches guest RAM no more until it runs again
	 * (snapshots, fencing). Called with run_lock held: must not take dev_lock. */
	void (*pause)(struct vm_device *d, bool pause);
	/* Save (x->save) or restore the device's state, one function for both ways.
	 * Restore happens before the guest runs; a malformed or mismatching section fails
	 * with a reason in x->err and -EINVAL. Save fails only for lack of memory (-ENOMEM). */
	int (*state)(struct vm_device *d, struct dev_xfer *x);
	/* A live migration hands what backs the device over (hypervisor.h, enum vm_handoff):
	 * the VM is paused or has not run. 0 or -errno with a reason in why. */
	int (*handoff)(struct vm_device *d, enum vm_handoff step, int timeout_ms, char *why,
		       size_t len);
};

/* What the board gives a device of which a VM may have several (its create finds it in
 * d->priv): its argument (a struct vm_disk, ...; NULL for a device a VM has at most one of),
 * its index among its kind, and for a virtio device its slot in the MMIO window (disks
 * first, then nets, then the balloon). */
struct vm_dev_arg {
	const void *arg;
	unsigned index;
	unsigned slot;
};

struct vm_device {
	const struct dev_ops *ops;
	struct vm *vm;
	void *priv;
	char state_name[32]; /* its state section: ops->name, "NAME.INDEX" for several */
	struct dev_range range[DEV_MAX_RANGES];
	unsigned nr_ranges;
};

/* devices.c */
/* Register the VM's devices (the board table) and reset them; on failure those already
 * registered are released. Returns 0 or -errno. */
int vm_setup_devices(struct vm *vm) CME_WUR;
/* Release every device. */
void vm_devices_destroy(struct vm *vm);
/* Pause (or resume) every device that has a pause hook (run_lock held). */
void dev_pause_all(struct vm *vm, bool pause);
/* Route one guest access to the device claiming it (port I/O: the first port must be in
 * a range; MMIO: the whole access must be). Returns false when no device claims it. */
bool dev_dispatch(struct vm *vm, enum dev_space space, struct dev_access *a);
/* The state section of every device that has state: *out[0..*n), arena-allocated.
 * Returns 0 or -ENOMEM. */
int dev_state_save_all(struct vm *vm, struct arena *a, size_t *n, Cme__DeviceState ***out) CME_WUR;
/* Restore the sections of a state into their devices: a section of a device this VM lacks,
 * or of a version newer than its own, is refused with a reason in err. 0 or -EINVAL. */
int dev_state_load_all(struct vm *vm, Cme__DeviceState *const *secs, size_t n, char *err,
		       size_t errlen) CME_WUR;

/* dev_uart.c, dev_power.c: the devices of the board table. */
extern const struct dev_ops dev_uart_ops;    /* 16550A at COM1, its IRQ 4, the console */
extern const struct dev_ops dev_exit_ops;    /* port 0x501: the flat guest's exit code */
extern const struct dev_ops dev_reset_ops;   /* 0xcf9 reset control, also ACPI's RESET_REG */
extern const struct dev_ops dev_i8042_ops;   /* keyboard controller: only its reset pulse */
extern const struct dev_ops dev_acpi_pm_ops; /* ACPI sleep control/status: poweroff (S5) */
/* Console input for the UART device d (the console thread calls it; opaque is d). */
void dev_uart_input(void *opaque, const uint8_t *buf, size_t len);

/* dev_state.c: helpers of the state functions. */
/* Fail a restore with "NAME state: reason" (printf-style) in x->err. Returns -EINVAL. */
int dev_state_fail(struct dev_xfer *x, const char *fmt, ...) CME_PRINTF(2, 3);
/* Save: pack a message into x->bytes (arena memory). Returns 0 or -ENOMEM. */
int dev_state_pack(struct dev_xfer *x, const ProtobufCMessage *msg) CME_WUR;

/* Move one field between the device (dev) and its message (msg), in x's direction. On
 * restore a value that does not fit the device's field is refused. Use inside a state
 * function returning int, whose struct dev_xfer * is x. */
#define DEV_XFER(x, dev, msg)                                                                      \
	do {                                                                                       \
		if ((x)->save) {                                                                   \
			(msg) = (dev);                                                             \
		} else {                                                                           \
			if ((uint64_t)(msg) != (uint64_t)(__typeof__(dev))(msg))                   \
				return dev_state_fail((x), #msg " = %llu out of range",            \
						      (unsigned long long)(msg));                  \
			(dev) = (__typeof__(dev))(msg);                                            \
		}                                                                                  \
	} while (0)

/* A field that must not change: saved like DEV_XFER; on restore, a value other than the
 * device's (0 means "not recorded", as in streams older than the field) is refused. */
#define DEV_CMP(x, dev, msg)                                                                       \
	do {                                                                                       \
		if ((x)->save)                                                                     \
			(msg) = (dev);                                                             \
		else if ((msg) && (uint64_t)(msg) != (uint64_t)(dev))                              \
			return dev_state_fail((x), #msg " is %llu, this VM has %llu",              \
					      (unsigned long long)(msg),                           \
					      (unsigned long long)(dev));                          \
	} while (0)

#endif

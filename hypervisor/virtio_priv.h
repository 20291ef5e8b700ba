/* Private to hypervisor/: virtio devices over the virtio-mmio transport (virtio 1.x,
 * modern only; section 4.2 of the spec).
 *
 * Why MMIO rather than PCI: no bus to enumerate, so a flat guest (and our ring-3 test
 * drivers) finds a device from the boot info alone, and Linux from one
 * `virtio_mmio.device=4K@ADDR:IRQ` per device on its command line — Firecracker's choice
 * for the same reasons. Device i sits at VIRTIO_MMIO_BASE + i * VIRTIO_MMIO_SIZE, in the
 * hole below 4 GiB, and raises virtio_irq(i) (an IOAPIC pin, edge-triggered; vm_priv.h).
 *
 * Threads: the guest's register accesses come from vCPU threads (dev_lock held); queue
 * notifications arrive through an ioeventfd (KVM signals it without an exit; a write
 * that does exit is turned into the same signal), and a thread of the device's own
 * processes the queues and raises the interrupt through an irqfd — disk and network I/O
 * never run on a vCPU thread. The transport's mutex orders the two: a register access
 * waits for the queue being processed — except a notification, an interrupt status read or
 * acknowledgement and a status read, which a driver does often and which must not hold the
 * device up while the vCPU's exit is handled.
 *
 * A backend may give the thread descriptors of its own to wait on (watches: a tap that
 * has frames, a rate limiter's timerfd); they are waited on only while the device runs
 * (DRIVER_OK, no reset needed, the VM not paused) and the backend has switched them on, so
 * a readable tap with nowhere to put its frames never makes the thread spin.
 *
 * A malformed queue (virtq_priv.h) sets DEVICE_NEEDS_RESET and raises a configuration
 * interrupt; the device does nothing more until the driver resets it. */
#ifndef CME_VIRTIO_PRIV_H
#define CME_VIRTIO_PRIV_H

#include <pthread.h>
#include <stdatomic.h>

#include "dev_priv.h"
#include "virtq_priv.h"

#define VIRTIO_MAX_QUEUES 3 /* the balloon's inflate, deflate and reporting queues */
#define VIRTIO_MAX_WATCH  4

#define VIRTIO_ID_NET	  1
#define VIRTIO_ID_BLOCK	  2
#define VIRTIO_ID_BALLOON 5

#define VIRTIO_STATUS_ACK	  1
#define VIRTIO_STATUS_DRIVER	  2
#define VIRTIO_STATUS_DRIVER_OK	  4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED	  128

#define VIRTIO_F_INDIRECT_DESC (1ull << 28)
#define VIRTIO_F_EVENT_IDX     (1ull << 29)
#define VIRTIO_F_VERSION_1     (1ull << 32)

#define VIRTIO_ISR_USED	  1
#define VIRTIO_ISR_CONFIG 2

struct virtio_dev;

/* What a device type adds to the transport. */
struct virtio_backend {
	const char *name;
	uint32_t device_id;
	unsigned nr_queues; /* at most: queues that exist with every feature negotiated */
	uint16_t queue_max;
	/* After a kick, poll the queue a while before sleeping (virtio_mmio.c, linger): for a
	 * device whose available chains are all work to do at once (a disk's requests), not
	 * one whose chains wait for something else (a network's receive buffers). */
	bool linger;
	/* Open what the device needs (its file, ...): 0 or -errno with a reason in why. */
	int (*open)(struct virtio_dev *v, char *why, size_t len);
	void (*close)(struct virtio_dev *v);
	/* Device-specific feature bits offered (the transport adds its own). */
	uint64_t (*features)(struct virtio_dev *v);
	/* Queues that exist with the features the driver took (NULL: always nr_queues); the
	 * others read QueueNumMax 0 and cannot be set up. Transport mutex held. */
	unsigned (*queues)(struct virtio_dev *v);
	/* Read the configuration space (off from 0x100). */
	void (*config_read)(struct virtio_dev *v, uint64_t off, uint8_t *data, unsigned size);
	/* The driver writes the configuration space (NULL: nothing there is writable). */
	void (*config_write)(struct virtio_dev *v, uint64_t off, const uint8_t *data,
			     unsigned size);
	/* What must be the same after a restore (virtio-blk: the image's sectors). */
	uint64_t (*identity)(struct virtio_dev *v);
	/* Take and complete what queue q holds (the device's thread, transport mutex held).
	 * Returns false when the queue turned out malformed (virtio_queue_broken was called). */
	bool (*process)(struct virtio_dev *v, unsigned q);
	/* Watch w (virtio_watch_add) is ready (the device's thread, mutex held, the device
	 * running). May be NULL for a backend without watches. */
	void (*event)(struct virtio_dev *v, unsigned w);
	/* Save or restore the backend's own part of the device's state (m's backend fields),
	 * in x's direction; restore fails with dev_state_fail. May be NULL: nothing of its own. */
	int (*state)(struct virtio_dev *v, Cme__VirtioState *m, struct dev_xfer *x);
};

/* A descriptor of the backend's that the device's thread waits on while on. */
struct virtio_watch {
	int fd;
	short events; /* POLLIN, POLLOUT */
	bool on;
};

/* The transport's state of one device. */
struct virtio_dev {
	struct vm *vm;
	const struct virtio_backend *be;
	void *be_priv;	    /* the backend's own */
	const void *be_arg; /* what the board gave for it (a struct vm_disk, ...) */
	unsigned index;	    /* its slot in the MMIO window */
	unsigned irq;
	pthread_mutex_t mu;
	uint32_t status, dev_sel, drv_sel, queue_sel;
	uint64_t drv_features;
	atomic_uint isr;
	uint32_t config_gen;
	struct virtq q[VIRTIO_MAX_QUEUES];
	struct virtq_mem mem;
	int irqfd;
	int kick[VIRTIO_MAX_QUEUES]; /* ioeventfds */
	int quit_fd;
	/* The thread's wait set includes backend watches; a pause waits (on waited) until it
	 * does not, so no poll() of the thread's still holds a descriptor the backend is about
	 * to give up (a tap: the kernel keeps a sleeping poll's files). */
	bool watching;
	pthread_cond_t waited;
	struct virtio_watch watch[VIRTIO_MAX_WATCH]; /* the backend's fds (it closes them) */
	unsigned nr_watch;
	bool ioeventfd; /* KVM signals kick[] itself */
	bool paused;	/* the VM is paused: no queue is processed (under mu) */
	pthread_t thread;
	bool thread_started;
	uint64_t requests, irqs; /* counters (status) */
};

/* virtio_mmio.c: the transport. A device type's dev_ops (in its own file) calls these;
 * d->priv holds the board's argument until create, a struct virtio_dev after it. */
int virtio_mmio_create(struct vm_device *d, const struct virtio_backend *be);
void virtio_mmio_destroy(struct vm_device *d);
void virtio_mmio_reset(struct vm_device *d);
void virtio_mmio_io(struct vm_device *d, struct dev_access *a);
/* The VM pauses: wait for the queue being processed, then process none until it runs
 * again (kicks that came meanwhile are taken then). */
void virtio_mmio_pause(struct vm_device *d, bool pause);
/* The transport's registers and queues (VirtioState), and the backend's identity. */
int virtio_mmio_state(struct vm_device *d, struct dev_xfer *x);
/* vm's device of type ops in MMIO slot index (VIRTIO_ANY: the first of that type), or
 * NULL. */
#define VIRTIO_ANY (~0u)
struct virtio_dev *virtio_find(struct vm *vm, const struct dev_ops *ops, unsigned index);
/* Raise the used-buffer interrupt when queue q's driver wants one. */
void virtio_notify(struct virtio_dev *v, unsigned q);
/* True when queue q may be processed: the driver is ready, the queue set up and sound. */
bool virtio_queue_runnable(const struct virtio_dev *v, unsigned q);
/* Have the device's thread process queue q again once it has looked at its other work
 * (a backend that stops a long batch to be fair to its other queues). */
void virtio_kick(struct virtio_dev *v, unsigned q);
/* In the backend's open: have the device's thread also wait for events on fd (off until
 * virtio_watch_set). Returns the watch's number, or -ENOSPC. */
int virtio_watch_add(struct virtio_dev *v, int fd, short events);
/* Switch watch w on or off; from the device's thread only (process, event), so the
 * thread's next wait sees it. */
void virtio_watch_set(struct virtio_dev *v, unsigned w, bool on);
/* Queue q is malformed: DEVICE_NEEDS_RESET, a configuration interrupt, a log line. */
void virtio_queue_broken(struct virtio_dev *v, unsigned q, const char *why);
/* One chain taken from queue q: handle it, and return 0 with the bytes written into its
 * buffers in *written, or -EINVAL with why when it is malformed (the queue breaks). */
typedef int (*virtio_chain_fn)(struct virtio_dev *v, unsigned q, const struct virtq_chain *c,
			       uint32_t *written, char *why, size_t whylen);
/* A backend's process(): every available chain of queue q through fn, each returned to
 * the used ring and counted, the guest notified as it asks; the queue's notifications
 * re-armed until it stays empty. False when the queue turned out malformed. */
bool virtio_process_chains(struct virtio_dev *v, unsigned q, virtio_chain_fn fn);
/* The device changed its configuration space: config_generation moves on and the
 * configuration-change interrupt is raised. Transport mutex held. */
void virtio_config_changed(struct virtio_dev *v);

/* virtio_blk.c: a disk backed by a raw image file. */
extern const struct dev_ops dev_virtio_blk_ops;
/* virtio_balloon.c: the memory balloon, with free-page reporting. */
extern const struct dev_ops dev_virtio_balloon_ops;

/* virtio_net.c: a network device backed by a host tap device. */
extern const struct dev_ops dev_virtio_net_ops;

#endif

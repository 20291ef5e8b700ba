/* selfcheck — the freestanding test guest (DESIGN.md "The test guest"). Ring 0 builds the
 * IDT and the LAPIC timer, then every vCPU drops to ring 3, where the workload runs at
 * native speed on PVM hosts. This header is shared by C and assembly. */
#ifndef SELFCHECK_H
#define SELFCHECK_H

#define MAX_CPUS   32		      /* the flat image ABI's limit */
#define BOOT_MAGIC 0x434d45424f4f5431 /* "CMEBOOT1" */

#define KERNEL_CS 0x08
#define USER_CS	  0x1b
#define USER_DS	  0x23

#define TIMER_VECTOR 0x20
/* Ring 3's "sleep until the next interrupt" call is int3 through a DPL-3 gate: PVM raises
 * #UD for every "int $n" from ring 3 but delivers int3. Vector 0x80 gets the same gate for
 * hosts where "int $0x80" works. */
#define IDLE_VECTOR	  3
#define IDLE_VECTOR_INT80 0x80
#define SPURIOUS_VECTOR	  0xff
/* echo=1: the UART's receive interrupt, IOAPIC pin 4 routed to vCPU 0. */
#define UART_VECTOR 0x24
#define UART_IRQ    4
/* disk_mb/disk_bad: virtio device 0's interrupt, IOAPIC pin 5 routed to vCPU 0. */
#define VIRTIO_VECTOR 0x25
#define VIRTIO_IRQ    5
/* net_frames/net_bench/net_bad: the net device's interrupt (the pin of its slot), routed to
 * the vCPU that drives it. */
#define NET_VECTOR 0x26

#define LAPIC_BASE	0xfee00000
#define LAPIC_ID	0x20
#define LAPIC_EOI	0xb0
#define LAPIC_SVR	0xf0
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_TICR	0x380 /* timer initial count */
#define LAPIC_TCCR	0x390 /* timer current count */
#define LAPIC_TDCR	0x3e0 /* timer divide configuration */

#define IOAPIC_BASE   0xfec00000
#define IOAPIC_INDEX  0x00
#define IOAPIC_DATA   0x10
#define IOAPIC_REDIR0 0x10 /* redirection entry of pin N: registers 0x10 + 2N (low), +1 (high) */

#define PCPU_SIZE  64 /* sizeof(struct pcpu): entry.S indexes the array with it */
#define PCPU_TICKS 0  /* offsetof(struct pcpu, ticks) */

/* virtio-mmio (vmmio.c): device types, the registers the drivers use beyond setup. */
#define VIRTIO_ID_NET	  1
#define VIRTIO_ID_BLOCK	  2
#define VIRTIO_SLOT_SIZE  0x1000
#define VMMIO_NOTIFY	  0x050
#define VMMIO_ISR	  0x060
#define VMMIO_ISR_ACK	  0x064
#define VMMIO_STATUS	  0x070
#define VMMIO_CONFIG_GEN  0x0fc
#define VMMIO_CONFIG	  0x100
#define VMMIO_NEEDS_RESET 64
#define VRING_F_EVENT_IDX (1u << 29)
#define MAC_LEN		  6
#define VRING_D_NEXT	  1
#define VRING_D_WRITE	  2

#define PORT_UART	  0x3f8 /* THR on write, RBR on read */
#define PORT_UART_IER	  0x3f9
#define PORT_UART_MCR	  0x3fc
#define PORT_UART_LSR	  0x3fd
#define PORT_UART_SCRATCH 0x3ff
#define PORT_EXIT	  0x501

/* Multiboot (v1) boot, for QEMU's -kernel (entry.S, multiboot.c): the header's magic and
 * flags (bit 1: memory info wanted, bit 16: the a.out kludge addresses are valid), and where
 * mb_entry32 rebuilds the flat ABI's state for vCPU 0 (the VMM's own addresses). */
#define MB_HEADER_MAGIC 0x1badb002
#define MB_HEADER_FLAGS 0x00010002
#define MB_LOADER_MAGIC 0x2badb002
#define MB_PT_BASE	0x1000	/* PML4; PDPT +0x1000; PDs +0x2000..+0x5fff */
#define MB_CPU_PAGE	0x46000 /* GDT at +0, TSS at +0x100, boot info at +0x800 */
#define MB_TSS		(MB_CPU_PAGE + 0x100)
#define MB_GDTR		(MB_CPU_PAGE + 0xff0)
#define MB_IOBM_BYTES	(0x501 / 8 + 2) /* ports 0..0x50f, then the terminating 0xff */
#define MB_TSS_LIMIT	(0x68 + MB_IOBM_BYTES - 1)
#define MB_STACK_TOP	0x6a000

/* The VMM's exit status, the low 8 bits of what the guest writes to PORT_EXIT. */
#define EXIT_OK	     0
#define EXIT_BADARG  2
#define EXIT_FAULT   3
#define EXIT_CORRUPT 4

#ifndef __ASSEMBLER__

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef unsigned long u64; /* so "%lu" / "%lx" match it */

#define PAGE_SIZE	4096UL
#define MIB		(1UL << 20)
#define GIB		(1UL << 30)
#define HOLE_START	(3 * GIB) /* RAM at or above this offset lives 1 GiB higher */
#define USER_STACK_SIZE 16384
#define TIMER_HZ	250
/* A power of two above what one UART interrupt can drain at once: the VMM's 4 KiB input
 * buffer and the 16-byte FIFO. */
#define RX_RING_SIZE 8192

/* Handed over by the VMM in RDI, one per vCPU (the flat image ABI). */
struct boot_info {
	u64 magic;
	u64 mem_bytes;
	u32 vcpu_id;
	u32 nr_vcpus;
	u64 cmdline_gpa;
	u64 tsc_khz;
	u64 virtio_base;  /* virtio-mmio device i at virtio_base + i * 4 KiB */
	u32 virtio_count; /* 0 on VMMs that have none (and under multiboot) */
	u32 reserved;
};

enum mode { MODE_WRITE, MODE_IOLOOP };

/* The run's parameters: written by vCPU 0 in ring 0 before it releases the other vCPUs,
 * read-only afterwards. */
struct config {
	enum mode mode;
	u32 nr_vcpus;
	u32 writers; /* vCPUs 0..writers-1 write the working set */
	u64 mem_bytes;
	u64 tsc_khz;
	u64 wss_base; /* RAM offset of the first working-set page, 2 MiB aligned */
	u64 wss_pages;
	u64 stride;	  /* only pages whose index % stride == 0 are touched */
	u64 dirty_rate;	  /* MiB/s over all writers, 0 = unpaced */
	u64 hb_tsc;	  /* heartbeat period in TSC cycles */
	u64 exit_after;	  /* heartbeats before exiting, 0 = never */
	u64 iters;	  /* mode=ioloop: port writes */
	u64 passes;	  /* writers stop after this many passes (0: never) */
	bool echo;	  /* echo=1: UART receive interrupts, RX lines */
	bool cpuid;	  /* cpuid=1: print the feature leaves the vCPU sees (CPUID lines) */
	u64 disk_mb;	  /* disk_mb=N: vCPU 0 writes and checks the first N MiB of disk 0 */
	u64 disk_bad;	  /* disk_bad=1: program a queue outside RAM, expect NEEDS_RESET */
	u64 disk_discard; /* disk_discard=1: after pass 1, discard half the blocks, check zeros */
	u64 disk_bench;	  /* disk_bench=1: time pass 1's writes and reads (DISKBENCH line) */
	u64 disk_bs;	  /* disk_bs=KiB: bytes a request moves (4..1024, a power of two) */
	u64 disk_qd;	  /* disk_qd=N: requests posted together (1..VBLK_MAX_BATCH) */
	u64 disk_rand;	  /* disk_rand=1: a pass visits the requests' places in a shuffled order */
	u64 disk_io_base; /* the requests' buffers: after the working set and the pool */
	u64 balloon_mb;	  /* balloon_mb=N: a pool of N MiB the balloon inflates from */
	u64 balloon_report; /* balloon_report=1: report half the pool free once */
	u64 balloon_bad;    /* balloon_bad=1: inflate a PFN in the MMIO hole, expect NEEDS_RESET */
	u64 pool_base;	    /* RAM offset of the pool, after the working set, 2 MiB aligned */
	u32 balloon_cpu;    /* the vCPU that drives the balloon: the last one */
	u64 net_frames; /* net_frames=N: frames the net vCPU sends (and, unless benching, checks back) */
	u64 net_bench; /* net_bench=1: send as fast as it can, NETBENCH line, no checks */
	u64 net_bad;   /* net_bad=1: program the receive queue outside RAM, expect NEEDS_RESET */
	bool net;      /* one of the three: the net vCPU drives the net device */
	u32 net_cpu;   /* the vCPU that does: 1, or 0 on a one-vCPU VM */
	u64 net_base;  /* the first virtio-net device's registers (0: none) */
	u32 net_pin;   /* its IOAPIC pin */
	u64 virtio_base;
	u32 virtio_count;
};

/* A virtqueue descriptor (virtio 1.x split rings). */
struct vring_desc {
	u64 addr;
	u32 len;
	u16 flags, next;
};

/* Per-vCPU counters, one cache line each so vCPUs do not share lines. */
struct pcpu {
	volatile u64 ticks; /* timer interrupts, bumped by the ring-0 timer stub */
	volatile u64 pages; /* page writes, by the ring-3 writer */
	u64 pad[6];
} __attribute__((aligned(PCPU_SIZE)));

/* echo=1: console input. Only the UART interrupt on vCPU 0 writes it; ring 3 on vCPU 0
 * reads it, so a byte is published by advancing head. */
struct rx_ring {
	volatile u64 irqs; /* UART interrupts taken */
	volatile u32 head; /* bytes received so far; the next goes to buf[head % RX_RING_SIZE] */
	u8 buf[RX_RING_SIZE];
};

extern struct config cfg;
extern struct rx_ring rx_ring;
extern struct pcpu pcpu[MAX_CPUS];
extern u8 apic_to_cpu[256]; /* LAPIC ID -> vcpu_id, for the interrupt stubs */
extern char __image_end[];  /* end of .bss, from selfcheck.ld */

/* entry.S */
void timer_stub(void);
void idle_stub(void);
void spurious_stub(void);
void uart_stub(void);
void virtio_stub(void);
void net_stub(void);
extern const u8 fault_stubs[]; /* 32 stubs, 16 bytes apart */
/* Drops to ring 3 at rip with the given stack, IF=1, rdi = arg. */
__attribute__((noreturn)) void enter_user(u64 rip, u64 rsp, u64 arg);

/* ring0.c: the C entry point, called by entry.S on every vCPU with the VMM's boot info. */
__attribute__((noreturn)) void ring0_main(const struct boot_info *bi);

/* multiboot.c: called by entry.S's multiboot path in 64-bit ring 0; builds vCPU 0's boot
 * info from the multiboot info (and a PIT-calibrated TSC frequency). */
const struct boot_info *mb_setup(u32 magic, u32 mbi);

/* config.c: fills cfg from the boot info and command line; prints ERROR and exits with
 * EXIT_BADARG on a bad value. Runs on vCPU 0 only, before the others are released. */
void config_init(const struct boot_info *bi);

/* vmmio.c: the virtio-mmio registers, for the drivers below. */
u32 vmmio_rd(u64 base, u32 off);
void vmmio_wr(u64 base, u32 off, u32 v);
/* The first of count slots from virtio_base holding a device of type id, or -1. */
int vmmio_find(u64 virtio_base, u32 count, u32 id);
/* Reset the device at base (of type id) and negotiate VIRTIO_F_VERSION_1 and those of
 * want_lo it offers (*got_lo). 0, or -1 after printing "ERROR who: why". */
int vmmio_start(u64 base, u32 id, u32 want_lo, u32 *got_lo, const char *who);
/* Set up queue q with num entries at the given rings. 0, or -1 after an ERROR line. */
int vmmio_queue(u64 base, u32 q, u32 num, u64 desc, u64 avail, u64 used, const char *who);
/* The driver is ready: DRIVER_OK. */
void vmmio_driver_ok(u64 base);
/* A queue of VQ_SIZE descriptors for vblk.c and vballoon.c (vnet.c has its own batched
 * ones): one chain at a time (vq_submit), or several posted and waited for together. */
#define VQ_SIZE 128

struct vq {
	struct vring_desc desc[VQ_SIZE] __attribute__((aligned(16)));
	volatile struct {
		u16 flags, idx, ring[VQ_SIZE], used_event;
	} avail __attribute__((aligned(2)));
	volatile struct {
		u16 flags, idx;
		struct {
			u32 id, len;
		} ring[VQ_SIZE];
		u16 avail_event;
	} used __attribute__((aligned(4)));
	u64 base;
	u32 index;
	u16 next_avail, seen_used;
};

/* The registers of the first virtio slot holding a device of type id, or 0. */
u64 vmmio_find_base(u32 id);
/* Set up queue index of the device at base with q's rings (desc_at: another descriptor
 * address, to test a bad one; 0 for q's own). 0, or -1 after an ERROR line. */
int vq_setup(u64 base, struct vq *q, u32 index, u64 desc_at, const char *who);
/* Post the chain at descriptor 0 and wait for the device to use it: 0, or -1 when the
 * device needs a reset. */
int vq_submit(struct vq *q);
/* Make the chain at descriptor head available (no notification yet). */
void vq_post(struct vq *q, u16 head);
/* Notify the device of what was posted, and wait until it has used n more chains: 0, or
 * -1 when the device needs a reset. */
int vq_kick_wait(struct vq *q, u16 n);

/* vblk.c: a polled virtio-blk driver for ring 3 (disk 0 only). */
/* Set up the device at base: 0, or -1 after printing "ERROR disk: why". *ro and *sectors
 * tell what the device offers. bad_queue: give a queue address outside RAM on purpose. */
int vblk_init(u64 base, bool bad_queue, bool *ro, u64 *sectors);
/* Read or write len bytes (a multiple of 512) at sector from/to buf; the status byte
 * (0 ok, 1 I/O error, 2 unsupported), or 0xff when the device needs a reset. */
u8 vblk_rw(bool write, u64 sector, void *buf, u32 len);
/* n (at most VBLK_MAX_BATCH) requests of len bytes each, sector[i] to or from buf[i], posted
 * together with one notification and waited for together: the first non-zero status, 0xff
 * when the device needs a reset. */
#define VBLK_MAX_BATCH 32
u8 vblk_rw_many(bool write, const u64 *sector, u8 *const *buf, u32 len, u32 n);
/* Ask the device for no interrupts (a polling benchmark), or for them again. */
void vblk_quiet(bool quiet);
u8 vblk_flush(void);
/* Discard sectors [sector, sector + sectors): they read as zeros afterwards. */
u8 vblk_discard(u64 sector, u32 sectors);
/* The device's status register. */
u32 vblk_status(void);

/* vballoon.c: a polled virtio-balloon driver for ring 3. */
/* Find and set up the balloon, with free-page reporting when want_report and the device
 * offers it (*reporting). 0, or -1 after printing ERROR. */
int vballoon_init(bool want_report, bool *reporting);
/* The target (num_pages), read consistently; *gen its configuration generation. */
u32 vballoon_target(u32 *gen);
/* Tell the device how many pages the balloon holds (actual). */
void vballoon_set_actual(u32 pages);
/* Give (inflate) or take back (deflate) n pages by PFN; 0, or -1 when the device needs a
 * reset. */
int vballoon_give(bool inflate, const u32 *pfn, u32 n);
/* Report guest range [gpa, gpa + len) free; 0, or -1 when the device needs a reset. */
int vballoon_report(u64 gpa, u64 len);
u32 vballoon_status(void);

/* balloon.c: balloon_mb / balloon_bad, on vCPU cfg.balloon_cpu. */
__attribute__((noreturn)) void balloon_run(void);

/* vnet.c: a polled virtio-net driver for ring 3 (the first net device). */
/* Set up the device at base, post every receive buffer: 0, or -1 after an ERROR line.
 * mac gets the device's MAC. bad_queue: give the receive queue an address outside RAM. */
int vnet_init(u64 base, bool bad_queue, u8 *mac);
/* The frame area (after the header) of the next free transmit buffer, NULL while every
 * buffer is in flight; vnet_tx_post(len) makes what was written there available. */
u8 *vnet_tx_slot(void);
void vnet_tx_post(u32 len);
/* Notify the device of the buffers made available (sent and given back) since the last
 * call, if it asked to be: once per batch. */
void vnet_kick(void);
/* True when the device has completed every frame posted. */
bool vnet_tx_idle(void);
/* The next received frame (*len bytes), NULL when none; vnet_rx_release gives its buffer
 * back to the device once it has been looked at. */
const u8 *vnet_rx_next(u32 *len);
void vnet_rx_release(void);
/* The device's status register. */
u32 vnet_status(void);

/* ring0.c: virtio interrupts taken (disk 0, the net device), counted by the handlers. */
extern volatile u64 virtio_irqs, net_irqs;

/* workload.c: vCPU 0's heartbeat (and echo) when one is due; for other ring-3 loops that
 * run on vCPU 0. */
void hb_poll(u64 now);

/* netload.c: net_frames / net_bench / net_bad, on the net vCPU. */
__attribute__((noreturn)) void net_run(u32 cpu);

/* workload.c: the ring-3 entry point of every vCPU. */
__attribute__((noreturn)) void user_main(u64 cpu);

/* lib.c: usable from ring 0 and ring 3 (the TSS I/O bitmap opens the UART and exit port). */
static inline void outb(u16 port, u8 v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline u8 inb(u16 port)
{
	u8 v;

	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline u64 rdtsc(void)
{
	u32 lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (u64)hi << 32 | lo;
}

static inline void cpu_relax(void)
{
	__asm__ volatile("pause" : : : "memory");
}

/* Ring 3: sleep until the next interrupt (IDLE_VECTOR, above). */
static inline void idle(void)
{
	__asm__ volatile("int3" : : : "memory");
}

/* Ends the VM with this exit status; never returns. */
__attribute__((noreturn)) void guest_exit(u8 status);
/* Prints one line (or part) under the console lock. Formats: %s %u %lu %lx %c. */
__attribute__((format(printf, 1, 2))) void con_printf(const char *fmt, ...);
/* Like con_printf, but gives up waiting for the lock after a while: for the fault path,
 * which may interrupt a holder of the lock on the same vCPU. */
__attribute__((format(printf, 1, 2))) void con_printf_urgent(const char *fmt, ...);
/* Compilers may emit calls to these even in freestanding code. */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);

#endif /* __ASSEMBLER__ */
#endif /* SELFCHECK_H */

/* entry.S — the image's first bytes, and the ring-0 interrupt stubs.
 * The VMM enters every vCPU at the image's first byte (guest physical 0x100000) in 64-bit
 * mode, CPL 0, IF = 0, RSP 16-byte aligned, RDI = this vCPU's boot info. */
#include "selfcheck.h"

	.section .text.entry, "ax"
	.code64
	.globl _start
_start:
	jmp entry64

	/* Bytes 8..47: a multiboot (v1) header with the a.out kludge, so QEMU's -kernel (or
	 * any multiboot loader) boots this same image at mb_entry32; see multiboot.c. The flat
	 * ABI never looks at it: the VMM enters at byte 0 in 64-bit mode. */
	.org 8
mb_header:
	.long MB_HEADER_MAGIC
	.long MB_HEADER_FLAGS
	.long -(MB_HEADER_MAGIC + MB_HEADER_FLAGS)
	.long mb_header			/* header_addr */
	.long 0x100000			/* load_addr: the image's first byte */
	.long 0				/* load_end_addr: the whole file */
	.long __image_end		/* bss_end_addr: the loader zeroes .bss */
	.long mb_entry32		/* entry_addr */
	.fill 8, 1, 0			/* mode_type, width (unused: flags bit 2 is clear) */
	.org 48

entry64:
	cld
	call ring0_main		/* RDI = boot info; the call leaves RSP as the ABI wants */
1:	cli
	hlt
	jmp 1b

	.text

/* Multiboot entry: 32-bit protected mode, paging off, EAX = 0x2BADB002, EBX = the
 * multiboot info. Rebuilds what the VMM sets up for the flat image ABI, for vCPU 0 only and
 * at the same addresses (page tables at 0x1000, GDT/TSS page at 0x46000, stack below
 * 0x6a000), then mb_setup (multiboot.c) builds the boot info and entry64 carries on. This
 * runs in emulated ring 0 on PVM hosts, so it is kept short. */
	.code32
	.globl mb_entry32
mb_entry32:
	cli
	cld
	mov %eax, %esi			/* kept for mb_setup: the loader's magic */
	mov %ebx, %ebp			/* and the multiboot info */

	/* Page tables: PML4 0x1000, PDPT 0x2000, four PDs 0x3000-0x6fff mapping 0-4 GiB with
	 * 2 MiB pages, present+writable+user (+PS in the PDs). */
	mov $MB_PT_BASE, %edi
	xor %eax, %eax
	mov $(6 * 4096 / 4), %ecx
	rep stosl
	movl $(MB_PT_BASE + 0x1000 + 7), MB_PT_BASE
	movl $(MB_PT_BASE + 0x2000 + 7), MB_PT_BASE + 0x1000
	movl $(MB_PT_BASE + 0x3000 + 7), MB_PT_BASE + 0x1008
	movl $(MB_PT_BASE + 0x4000 + 7), MB_PT_BASE + 0x1010
	movl $(MB_PT_BASE + 0x5000 + 7), MB_PT_BASE + 0x1018
	mov $(MB_PT_BASE + 0x2000), %edi
	xor %ecx, %ecx
1:	mov %ecx, %eax
	shl $21, %eax
	or $0x87, %eax
	mov %eax, (%edi,%ecx,8)
	mov %ecx, %eax
	shr $11, %eax
	mov %eax, 4(%edi,%ecx,8)
	inc %ecx
	cmp $2048, %ecx
	jb 1b

	/* The GDT/TSS page: zero it, then the descriptors, the TSS and its I/O bitmap. */
	mov $MB_CPU_PAGE, %edi
	xor %eax, %eax
	mov $(4096 / 4), %ecx
	rep stosl
	mov $MB_CPU_PAGE, %edi
	movl $0x0000ffff, 0x08(%edi)	/* 0x08: 64-bit code, DPL 0 */
	movl $0x00af9a00, 0x0c(%edi)
	movl $0x0000ffff, 0x10(%edi)	/* 0x10: data, DPL 0 */
	movl $0x00cf9200, 0x14(%edi)
	movl $0x0000ffff, 0x18(%edi)	/* 0x18: 64-bit code, DPL 3 */
	movl $0x00affa00, 0x1c(%edi)
	movl $0x0000ffff, 0x20(%edi)	/* 0x20: data, DPL 3 */
	movl $0x00cff200, 0x24(%edi)
	/* 0x28: available 64-bit TSS at MB_CPU_PAGE + 0x100 (below 16 MiB, so base bits 24..63
	 * are zero), limit covering the I/O bitmap and its terminating byte. */
	movl $(((MB_TSS & 0xffff) << 16) | MB_TSS_LIMIT), 0x28(%edi)
	movl $(((MB_TSS >> 16) & 0xff) | 0x8900), 0x2c(%edi)
	movl $MB_STACK_TOP, MB_TSS + 4	/* RSP0 */
	movw $0x68, MB_TSS + 0x66	/* I/O map base */
	mov $(MB_TSS + 0x68), %edi	/* the bitmap: all closed ... */
	mov $0xff, %al
	mov $MB_IOBM_BYTES, %ecx
	rep stosb
	movb $0, MB_TSS + 0x68 + (0x3f8 / 8)		/* ... but 0x3f8-0x3ff */
	andb $~(1 << (0x501 % 8)), MB_TSS + 0x68 + (0x501 / 8)	/* and 0x501 */
	movw $(8 * 7 - 1), MB_GDTR	/* limit: null, 4 segments, the 16-byte TSS */
	movl $MB_CPU_PAGE, MB_GDTR + 2
	lgdt MB_GDTR

	/* Long mode, with the flat ABI's control registers. */
	mov $0x620, %eax		/* PAE | OSFXSR | OSXMMEXCPT */
	mov %eax, %cr4
	mov $MB_PT_BASE, %eax
	mov %eax, %cr3
	mov $0xc0000080, %ecx		/* EFER */
	rdmsr
	or $0x900, %eax			/* LME | NXE */
	wrmsr
	mov $0x80010033, %eax		/* PG | WP | NE | ET | MP | PE */
	mov %eax, %cr0
	ljmp $KERNEL_CS, $mb_entry64

	.code64
mb_entry64:
	mov $0x10, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov %eax, %fs
	mov %eax, %gs
	mov $0x28, %eax
	ltr %ax
	mov $MB_STACK_TOP, %esp
	push $2
	popfq				/* RFLAGS = 0x2, as the ABI has it */
	mov %esi, %edi			/* mb_setup(magic, mbi): returns the boot info */
	mov %ebp, %esi
	xor %ebp, %ebp
	call mb_setup
	mov %rax, %rdi
	jmp entry64			/* RSP is back at the aligned stack top */

/* Exceptions 0..31: one 16-byte stub each, so ring0.c finds stub N at fault_stubs + 16 N.
 * Each pushes a zero error code where the CPU pushes none, then the vector. Bit N of the
 * mask is set for vectors that do have an error code (8, 10-14, 17, 21, 29, 30). */
	.set ERRCODE_VECTORS, 0x60227d00
	.balign 16
	.globl fault_stubs
fault_stubs:
	.set vec, 0
	.rept 32
	.balign 16
	.if ((ERRCODE_VECTORS >> vec) & 1) == 0
	pushq $0
	.endif
	pushq $vec
	jmp fault_common
	.set vec, vec + 1
	.endr

/* The stack now holds vector, error code, RIP, CS, RFLAGS, RSP, SS: struct fault_frame.
 * fault_report never returns (it ends the VM), so no register needs saving. */
fault_common:
	mov %rsp, %rdi
	and $-16, %rsp
	call fault_report
	jmp 1b

/* LAPIC timer: bump this vCPU's tick counter and acknowledge. The vCPU is found by its
 * LAPIC ID, which needs no per-CPU base register that ring 3 or the host could disturb. */
	.globl timer_stub
timer_stub:
	push %rax
	push %rcx
	mov $LAPIC_BASE, %eax
	mov LAPIC_ID(%rax), %ecx
	shr $24, %ecx
	movzbl apic_to_cpu(%rcx), %ecx
	shl $6, %ecx			/* * PCPU_SIZE */
	incq pcpu + PCPU_TICKS(%rcx)	/* only this vCPU writes it: no lock needed */
	movl $0, LAPIC_EOI(%rax)
	pop %rcx
	pop %rax
	iretq

/* An interrupt handled in C: only the registers a C call may clobber need saving, and
 * -mno-sse keeps C off xmm0/xmm1. Nine pushes after the CPU's five-word frame (on a 16-byte
 * aligned RSP) leave RSP 16-byte aligned at the call, as the ABI wants. */
	.macro c_irq_stub name, handler
	.globl \name
\name:
	push %rax
	push %rcx
	push %rdx
	push %rsi
	push %rdi
	push %r8
	push %r9
	push %r10
	push %r11
	call \handler
	pop %r11
	pop %r10
	pop %r9
	pop %r8
	pop %rdi
	pop %rsi
	pop %rdx
	pop %rcx
	pop %rax
	iretq
	.endm

/* UART receive (echo=1, vCPU 0), virtio device 0 (disk_mb/disk_bad, vCPU 0), and the net
 * device (net_frames/net_bad, the net vCPU). */
	c_irq_stub uart_stub, uart_rx_irq
	c_irq_stub virtio_stub, virtio_irq
	c_irq_stub net_stub, net_irq

/* int3 (or int $0x80) from ring 3: sleep until the next interrupt. STI's one-instruction shadow
 * means the interrupt cannot slip in between STI and HLT and leave the vCPU asleep. */
	.globl idle_stub
idle_stub:
	sti
	hlt
	cli
	iretq

	.globl spurious_stub
spurious_stub:
	iretq			/* spurious interrupts take no EOI */

/* enter_user(rip = RDI, rsp = RSI, arg = RDX): an interrupt-return frame into ring 3 with
 * IF = 1, so the timer interrupt reaches the workload, and IOPL = 3. Ring 3's port I/O is
 * allowed twice over: by the TSS I/O bitmap (PVM ignores IOPL) and by IOPL 3 (QEMU's
 * emulated SVM, used to run KVM nested where no KVM exists, refuses the bitmap of a TSS
 * that KVM reports busy). */
	.globl enter_user
enter_user:
	pushq $USER_DS
	pushq %rsi
	pushq $0x3202
	pushq $USER_CS
	pushq %rdi
	mov %rdx, %rdi
	mov $USER_DS, %eax
	mov %eax, %ds
	mov %eax, %es
	iretq

	.section .note.GNU-stack, "", @progbits

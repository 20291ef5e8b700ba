/* entry.S — the image's first bytes, and the ring-0 interrupt stubs.
 * The VMM enters every vCPU at the image's first byte (guest physical 0x100000) in 64-bit
 * mode, CPL 0, IF = 0, RSP 16-byte aligned, RDI = this vCPU's boot info. */
#include "selfcheck.h"

	.section .text.entry, "ax"
	.code64
	.globl _start
_start:
	jmp entry64

	/* Bytes 8..47 are reserved for a multiboot header (which must be 4-byte aligned and
	 * within the first 8 KiB), so QEMU's -kernel can later boot this same image. */
	.org 8
	.fill 40, 1, 0

entry64:
	cld
	call ring0_main		/* RDI = boot info; the call leaves RSP as the ABI wants */
1:	cli
	hlt
	jmp 1b

	.text

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

/* UART receive (echo=1, vCPU 0): uart_rx_irq in C. Only the registers a C call may clobber
 * need saving, and -mno-sse keeps it off xmm0/xmm1. Nine pushes after the CPU's five-word
 * frame (on a 16-byte aligned RSP) leave RSP 16-byte aligned at the call, as the ABI wants. */
	.globl uart_stub
uart_stub:
	push %rax
	push %rcx
	push %rdx
	push %rsi
	push %rdi
	push %r8
	push %r9
	push %r10
	push %r11
	call uart_rx_irq
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
 * IF = 1, so the timer interrupt reaches the workload. */
	.globl enter_user
enter_user:
	pushq $USER_DS
	pushq %rsi
	pushq $0x202
	pushq $USER_CS
	pushq %rdi
	mov %rdx, %rdi
	mov $USER_DS, %eax
	mov %eax, %ds
	mov %eax, %es
	iretq

	.section .note.GNU-stack, "", @progbits

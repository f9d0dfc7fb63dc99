/* Start-up code for the application processors. The boot CPU copies it to a
 * page below 1 MiB, patches the fields at its end and sends INIT-SIPI-SIPI.
 * The AP goes real mode -> protected mode -> long mode on the boot page
 * tables (which map this page 1:1), then jumps to ap_entry in the kernel. */
    .section .rodata.trampoline, "a"
    .balign 16
    .globl trampoline_start
trampoline_start:
    .code16
    cli
    cld
    mov     %cs, %ax
    mov     %ax, %ds
    xor     %ebx, %ebx
    mov     %ax, %bx
    shl     $4, %ebx                       /* ebx = physical base of this page */
    lgdtl   t_gdtr - trampoline_start
    mov     %cr0, %eax
    or      $1, %eax
    mov     %eax, %cr0
    ljmpl   *(t_far32 - trampoline_start)

    .code32
t_pm32:
    mov     $0x10, %ax
    mov     %ax, %ds
    mov     %ax, %es
    mov     %ax, %ss
    mov     %cr4, %eax
    or      $(1 << 5), %eax                /* PAE */
    mov     %eax, %cr4
    mov     (t_cr3 - trampoline_start)(%ebx), %eax
    mov     %eax, %cr3
    mov     $0xc0000080, %ecx
    rdmsr
    or      $((1 << 8) | (1 << 11)), %eax  /* LME, NXE */
    wrmsr
    mov     %cr0, %eax
    or      $((1 << 31) | (1 << 16)), %eax /* PG, WP */
    mov     %eax, %cr0
    ljmpl   *(t_far64 - trampoline_start)(%ebx)

    .code64
t_lm64:
    mov     $0x10, %eax
    mov     %eax, %ds
    mov     %eax, %es
    mov     %eax, %ss
    mov     (t_cpu - trampoline_start)(%rbx), %rdi
    mov     (t_kcr3 - trampoline_start)(%rbx), %rsi
    mov     (t_stack - trampoline_start)(%rbx), %rdx
    mov     (t_entry - trampoline_start)(%rbx), %rax
    jmp     *%rax                          /* ap_start64, in the higher half */

    .balign 8
t_gdt:
    .quad 0
    .quad 0x00cf9b000000ffff               /* 0x08: 32-bit code */
    .quad 0x00cf93000000ffff               /* 0x10: data */
    .quad 0x00af9b000000ffff               /* 0x18: 64-bit code */
    .globl t_gdtr, t_far32, t_far64, t_cr3, t_stack, t_cpu, t_entry, t_kcr3
    .globl t_pm32_off, t_lm64_off, t_gdt_off
t_gdtr:  .short 31
         .long 0                           /* patched: base of t_gdt */
t_far32: .long 0                           /* patched: address of t_pm32 */
         .short 0x08
t_far64: .long 0                           /* patched: address of t_lm64 */
         .short 0x18
    .balign 8
t_cr3:   .quad 0
t_stack: .quad 0
t_cpu:   .quad 0
t_entry: .quad 0
t_kcr3:  .quad 0
    .globl trampoline_end
trampoline_end:

    .set t_pm32_off, t_pm32 - trampoline_start
    .set t_lm64_off, t_lm64 - trampoline_start
    .set t_gdt_off, t_gdt - trampoline_start

/* Kernel side: leave the boot page tables (this code is mapped in both),
 * take the CPU's own stack, continue in C++: ap_entry(Cpu *). */
    .text
    .globl ap_start64
ap_start64:
    mov     %rsi, %cr3
    mov     %rdx, %rsp
    xor     %ebp, %ebp
    call    ap_entry
1:  cli
    hlt
    jmp     1b

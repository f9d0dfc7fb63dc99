/* Multiboot2 header and the 32-bit entry: GRUB hands over in 32-bit protected
 * mode without paging (on BIOS, and on UEFI after it exited boot services).
 * We build boot page tables (0-4 GiB identity and at the direct map, the
 * first GiB at -2 GiB for the kernel), enter long mode and call kmain. */
#include "arch/x86_64/layout.hpp"

#define MB2_MAGIC     0xe85250d6
#define MB2_ARCH_I386 0
#define MB2_BOOTED    0x36d76289

#define PHYS(sym) ((sym) - KERNEL_VMA)

    .section .multiboot2, "a"
    .balign 8
mb2_header:
    .long MB2_MAGIC
    .long MB2_ARCH_I386
    .long mb2_header_end - mb2_header
    .long -(MB2_MAGIC + MB2_ARCH_I386 + (mb2_header_end - mb2_header))
    /* information request: memory map, cmdline, modules, ACPI (optional: GRUB gives what it has) */
    .balign 8
    .short 1, 1            /* type 1, flags: optional */
    .long 4*8 + 8
    .long 1, 3, 6, 14, 15, 17, 8, 21
    /* module alignment: page-align modules */
    .balign 8
    .short 6, 0
    .long 8
    /* end */
    .balign 8
    .short 0, 0
    .long 8
mb2_header_end:

    .section .boot.text, "ax"
    .code32
    .globl _start32
_start32:
    cli
    cld
    mov     %eax, %edi                 /* magic */
    mov     %ebx, %esi                 /* Multiboot2 info, physical */
    mov     $PHYS(boot_stack_top), %esp

    cmp     $MB2_BOOTED, %edi
    jne     .Lbad_magic

    /* Long mode and NX are required. */
    mov     $0x80000000, %eax
    cpuid
    cmp     $0x80000001, %eax
    jb      .Lno_long_mode
    mov     $0x80000001, %eax
    cpuid
    test    $(1 << 29), %edx
    jz      .Lno_long_mode
    test    $(1 << 20), %edx
    jz      .Lno_long_mode

    /* Page directories: 2048 x 2 MiB identity entries covering 0-4 GiB. */
    mov     $PHYS(boot_pd), %ebx
    xor     %ecx, %ecx
1:  mov     %ecx, %eax
    shl     $21, %eax
    or      $0x83, %eax                /* present, writable, 2 MiB */
    mov     %eax, (%ebx, %ecx, 8)
    movl    %ecx, %eax
    shr     $11, %eax                  /* high dword: bits 32+ of ecx<<21 */
    mov     %eax, 4(%ebx, %ecx, 8)
    inc     %ecx
    cmp     $2048, %ecx
    jne     1b

    /* PDPT for the low 4 GiB: four directories. */
    mov     $PHYS(boot_pdpt_low), %ebx
    mov     $PHYS(boot_pd) + 3, %eax
    mov     %eax, 0(%ebx)
    add     $4096, %eax
    mov     %eax, 8(%ebx)
    add     $4096, %eax
    mov     %eax, 16(%ebx)
    add     $4096, %eax
    mov     %eax, 24(%ebx)

    /* PDPT for -2 GiB: slot 510 maps the first GiB (the kernel image). */
    mov     $PHYS(boot_pdpt_high), %ebx
    movl    $PHYS(boot_pd) + 3, 510*8(%ebx)

    mov     $PHYS(boot_pml4), %ebx
    movl    $PHYS(boot_pdpt_low) + 3, 0(%ebx)        /* identity, for the switch */
    movl    $PHYS(boot_pdpt_low) + 3, 256*8(%ebx)    /* direct map of 0-4 GiB */
    movl    $PHYS(boot_pdpt_high) + 3, 511*8(%ebx)   /* kernel */

    mov     %cr4, %eax
    or      $(1 << 5), %eax            /* PAE */
    mov     %eax, %cr4
    mov     %ebx, %cr3

    mov     $0xc0000080, %ecx          /* EFER */
    rdmsr
    or      $((1 << 8) | (1 << 11)), %eax   /* LME, NXE */
    wrmsr

    mov     %cr0, %eax
    or      $((1 << 31) | (1 << 16) | 1), %eax    /* PG, WP, PE */
    mov     %eax, %cr0

    lgdt    boot_gdtr
    ljmp    $SEL_CODE64, $entry64

.Lbad_magic:
    mov     $boot_msg_magic, %ebx
    jmp     .Lfail
.Lno_long_mode:
    mov     $boot_msg_lm, %ebx
.Lfail:
    /* Best effort: print on COM1 and halt. */
    mov     $0x3f8, %dx
2:  movb    (%ebx), %al
    test    %al, %al
    jz      3f
    outb    %al, %dx
    inc     %ebx
    jmp     2b
3:  cli
    hlt
    jmp     3b

    .code64
entry64:
    mov     $SEL_DATA, %eax
    mov     %eax, %ds
    mov     %eax, %es
    mov     %eax, %ss
    xor     %eax, %eax
    mov     %eax, %fs
    mov     %eax, %gs
    movabs  $boot_stack_top, %rsp
    xor     %ebp, %ebp
    /* edi = magic, esi = info (zero-extended by the 32-bit moves above) */
    mov     %edi, %edi
    mov     %esi, %esi
    movabs  $kmain, %rax
    call    *%rax
4:  cli
    hlt
    jmp     4b

    .section .boot.data, "aw"
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00af9b000000ffff           /* 0x08: 64-bit code, DPL0 */
    .quad 0x00cf93000000ffff           /* 0x10: data */
boot_gdt_end:
    .balign 8
    .globl boot_gdtr
boot_gdtr:
    .short boot_gdt_end - boot_gdt - 1
    .quad boot_gdt
boot_msg_magic:
    .asciz "keel: fatal: not started by a Multiboot2 loader\r\n"
boot_msg_lm:
    .asciz "keel: fatal: this CPU has no long mode or no NX\r\n"

    /* Boot page tables live in .bss (GRUB zero-fills it); APs use them too. */
    .section .bss, "aw", @nobits
    .balign 4096
    .globl boot_pml4
boot_pml4:      .skip 4096
boot_pdpt_low:  .skip 4096
boot_pdpt_high: .skip 4096
boot_pd:        .skip 4 * 4096
    .balign 16
boot_stack:     .skip BOOT_STACK_SIZE
    .globl boot_stack_top
boot_stack_top:

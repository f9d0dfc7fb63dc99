/* Multiboot v1 header and 32-bit entry of Keel's test guests.
 *
 * The header uses the ELF path (flags bit 16, the a.out kludge, is clear): the
 * loader loads the ELF32 program header (a single PT_LOAD at 1 MiB, see
 * guest.ld) and jumps to the ELF entry point _start with EAX=0x2BADB002,
 * EBX=the Multiboot information, 32-bit protected mode, paging off.
 * Nothing is assumed about ESP, the GDT or the IDT. */

#define MB_MAGIC      0x1BADB002
#define MB_FLAGS      0x00000003   /* bit 0: page-align modules, bit 1: memory information */
#define STACK_SIZE    16384
#define CODE_SEL      0x08
#define DATA_SEL      0x10

    .section .multiboot, "a"
    .balign 4
    .globl multiboot_header
multiboot_header:
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)

    .text
    .code32
    .globl _start
    .type _start, @function
_start:
    /* Record the entry state before touching anything. */
    movl %eax, entry_eax
    movl %ebx, entry_ebx
    movl $stack_top, %esp
    pushfl
    popl entry_eflags
    movl %cr0, %eax
    movl %eax, entry_cr0
    movl %cr4, %eax
    movl %eax, entry_cr4
    movw %cs, entry_cs
    movw %ds, entry_ds
    movw %ss, entry_ss
    movw %es, entry_es
    cli
    cld

    /* Our own flat GDT: the loader's may be anywhere (or nowhere). */
    lgdt gdt_descriptor
    ljmp $CODE_SEL, $1f
1:  movw $DATA_SEL, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %fs
    movw %ax, %gs
    movw %ax, %ss

    /* Zero .bss (the loader should have, but be sure). The stack lives in .bss;
     * nothing is on it yet. */
    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    subl %edi, %ecx
    xorl %eax, %eax
    rep stosb

    movl $stack_top, %esp
    xorl %ebp, %ebp
    pushl entry_ebx
    pushl entry_eax
    call runtime_start
2:  cli
    hlt
    jmp 2b
    .size _start, . - _start

/* Exception stubs: push a dummy error code where the CPU does not, then the
 * vector, then all general registers; trap_entry(frame) may change the saved EIP. */
.macro ISR_NOERR vec
    .globl isr\vec
isr\vec:
    pushl $0
    pushl $\vec
    jmp isr_common
.endm
.macro ISR_ERR vec
    .globl isr\vec
isr\vec:
    pushl $\vec
    jmp isr_common
.endm

    ISR_NOERR 0
    ISR_NOERR 1
    ISR_NOERR 2
    ISR_NOERR 3
    ISR_NOERR 4
    ISR_NOERR 5
    ISR_NOERR 6
    ISR_NOERR 7
    ISR_ERR   8
    ISR_NOERR 9
    ISR_ERR   10
    ISR_ERR   11
    ISR_ERR   12
    ISR_ERR   13
    ISR_ERR   14
    ISR_NOERR 15
    ISR_NOERR 16
    ISR_ERR   17
    ISR_NOERR 18
    ISR_NOERR 19
    ISR_NOERR 20
    ISR_ERR   21
    ISR_NOERR 22
    ISR_NOERR 23
    ISR_NOERR 24
    ISR_NOERR 25
    ISR_NOERR 26
    ISR_NOERR 27
    ISR_NOERR 28
    ISR_ERR   29
    ISR_ERR   30
    ISR_NOERR 31

isr_common:
    pushal
    cld
    pushl %esp              /* TrapFrame* */
    call trap_entry
    addl $4, %esp
    popal
    addl $8, %esp           /* vector, error code */
    iretl

    .section .rodata
    .balign 4
    .globl isr_table
isr_table:
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .long isr\v
    .endr

    .balign 8
gdt:
    .quad 0
    .quad 0x00cf9b000000ffff    /* 0x08: code, base 0, limit 4 GiB, 32-bit, accessed */
    .quad 0x00cf93000000ffff    /* 0x10: data, base 0, limit 4 GiB, accessed */
    .quad 0x00af9b000000ffff    /* 0x18: 64-bit code (lib/longmode.S) */
gdt_end:
    .balign 4
    .short 0
gdt_descriptor:
    .short gdt_end - gdt - 1
    .long gdt

    .data
    .balign 4
    .globl entry_eax, entry_ebx, entry_eflags, entry_cr0, entry_cr4
    .globl entry_cs, entry_ds, entry_ss, entry_es
entry_eax:    .long 0
entry_ebx:    .long 0
entry_eflags: .long 0
entry_cr0:    .long 0
entry_cr4:    .long 0
entry_cs:     .short 0
entry_ds:     .short 0
entry_ss:     .short 0
entry_es:     .short 0

    .section .bss.stack, "aw", @nobits
    .balign 16
stack_bottom:
    .skip STACK_SIZE
stack_top:

    .section .note.GNU-stack, "", @progbits

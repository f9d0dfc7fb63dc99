/* A short excursion into 64-bit mode, for what only exists there (SWAPGS).
 *
 *     void swapgs_in_long_mode(void);
 *
 * From 32-bit protected mode without paging (every test guest): interrupts
 * off, identity-mapped 2 MiB pages over the first GiB, CR4.PAE, EFER.LME,
 * CR0.PG, a far jump to the 64-bit code segment (GDT 0x18), SWAPGS, and back
 * the same way. GS.base and KERNEL_GS_BASE are exchanged as the CPU does it,
 * without a WRMSR the hypervisor would see. No exception may happen on the
 * way: the IDT is a 32-bit one. */
    .text
    .code32
    .globl swapgs_in_long_mode
    .type swapgs_in_long_mode, @function
swapgs_in_long_mode:
    pushfl
    cli
    pushl %ebx
    pushl %esi
    pushl %edi

    /* PML4[0] -> PDPT[0] -> PD: 512 x 2 MiB, present, writable, large. */
    movl $lm_pd, %edi
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    movl %eax, (%edi,%ecx,8)
    movl $0, 4(%edi,%ecx,8)
    incl %ecx
    cmpl $512, %ecx
    jb 1b
    movl $lm_pd, %eax
    orl $3, %eax
    movl %eax, lm_pdpt
    movl $lm_pdpt, %eax
    orl $3, %eax
    movl %eax, lm_pml4

    movl %cr4, %eax
    orl $0x20, %eax             /* PAE */
    movl %eax, %cr4
    movl $lm_pml4, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx
    rdmsr
    orl $0x100, %eax            /* EFER.LME */
    wrmsr
    movl %cr0, %eax
    orl $0x80000000, %eax       /* PG: IA-32e mode, compatibility submode */
    movl %eax, %cr0
    ljmp $0x18, $2f

    .code64
2:  swapgs
    /* Back to the 32-bit code segment (compatibility mode). */
    pushq $0x08
    leaq 3f(%rip), %rax
    pushq %rax
    lretq

    .code32
3:  movl %cr0, %eax
    andl $0x7fffffff, %eax      /* paging off: leaves IA-32e mode */
    movl %eax, %cr0
    movl $0xc0000080, %ecx
    rdmsr
    andl $~0x100, %eax
    wrmsr
    movl %cr4, %eax
    andl $~0x20, %eax
    movl %eax, %cr4

    popl %edi
    popl %esi
    popl %ebx
    popfl
    ret
    .size swapgs_in_long_mode, . - swapgs_in_long_mode

    .bss
    .balign 4096
lm_pml4: .skip 4096
lm_pdpt: .skip 4096
lm_pd:   .skip 4096

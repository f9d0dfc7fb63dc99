/* void svm_run(u64 vmcb_pa, Gprs *g, u64 host_vmcb_pa)
 * Load the guest's registers, VMLOAD/VMRUN/VMSAVE, store them back, restore
 * the host's VMLOAD state (GS base for %gs per-CPU data, TR, ...). */
    .text
    .globl svm_run
svm_run:
    push    %rbx
    push    %rbp
    push    %r12
    push    %r13
    push    %r14
    push    %r15
    push    %rsi                    /* Gprs * */
    push    %rdx                    /* host VMCB */
    mov     %rdi, %rax
    mov     0x08(%rsi), %rcx
    mov     0x10(%rsi), %rdx
    mov     0x18(%rsi), %rbx
    mov     0x28(%rsi), %rbp
    mov     0x38(%rsi), %rdi
    mov     0x40(%rsi), %r8
    mov     0x48(%rsi), %r9
    mov     0x50(%rsi), %r10
    mov     0x58(%rsi), %r11
    mov     0x60(%rsi), %r12
    mov     0x68(%rsi), %r13
    mov     0x70(%rsi), %r14
    mov     0x78(%rsi), %r15
    mov     0x30(%rsi), %rsi
    vmload  %rax
    vmrun   %rax
    vmsave  %rax                    /* rax is the guest VMCB again (host RAX restored) */
    push    %rsi                    /* guest rsi */
    mov     0x10(%rsp), %rsi        /* Gprs * */
    mov     %rcx, 0x08(%rsi)
    mov     %rdx, 0x10(%rsi)
    mov     %rbx, 0x18(%rsi)
    mov     %rbp, 0x28(%rsi)
    mov     %rdi, 0x38(%rsi)
    mov     %r8, 0x40(%rsi)
    mov     %r9, 0x48(%rsi)
    mov     %r10, 0x50(%rsi)
    mov     %r11, 0x58(%rsi)
    mov     %r12, 0x60(%rsi)
    mov     %r13, 0x68(%rsi)
    mov     %r14, 0x70(%rsi)
    mov     %r15, 0x78(%rsi)
    pop     %rcx
    mov     %rcx, 0x30(%rsi)
    pop     %rax                    /* host VMCB */
    vmload  %rax
    add     $8, %rsp
    pop     %r15
    pop     %r14
    pop     %r13
    pop     %r12
    pop     %rbp
    pop     %rbx
    ret

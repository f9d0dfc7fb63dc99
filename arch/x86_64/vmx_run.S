/* u64 vmx_run(Gprs *g, u64 launched)
 * Enter the guest with VMLAUNCH (first time) or VMRESUME; returns 0 after a
 * VM exit (guest registers stored in *g), 1 if the entry itself failed. */
    .text
    .globl vmx_run
vmx_run:
    push    %rbx
    push    %rbp
    push    %r12
    push    %r13
    push    %r14
    push    %r15
    push    %rdi                    /* Gprs * */
    mov     $0x6c14, %eax           /* HOST_RSP: the exit lands on this very stack */
    vmwrite %rsp, %rax
    test    %rsi, %rsi
    mov     0x00(%rdi), %rax
    mov     0x08(%rdi), %rcx
    mov     0x10(%rdi), %rdx
    mov     0x18(%rdi), %rbx
    mov     0x28(%rdi), %rbp
    mov     0x30(%rdi), %rsi
    mov     0x40(%rdi), %r8
    mov     0x48(%rdi), %r9
    mov     0x50(%rdi), %r10
    mov     0x58(%rdi), %r11
    mov     0x60(%rdi), %r12
    mov     0x68(%rdi), %r13
    mov     0x70(%rdi), %r14
    mov     0x78(%rdi), %r15
    mov     0x38(%rdi), %rdi
    jnz     1f                      /* flags from the test above: movs keep them */
    vmlaunch
    jmp     2f
1:  vmresume
2:  /* the entry failed: nothing of the guest ran */
    pop     %rdi
    pop     %r15
    pop     %r14
    pop     %r13
    pop     %r12
    pop     %rbp
    pop     %rbx
    mov     $1, %eax
    ret

    .globl vmx_exit
vmx_exit:                           /* HOST_RIP */
    push    %rdi
    mov     0x08(%rsp), %rdi        /* Gprs * */
    mov     %rax, 0x00(%rdi)
    mov     %rcx, 0x08(%rdi)
    mov     %rdx, 0x10(%rdi)
    mov     %rbx, 0x18(%rdi)
    mov     %rbp, 0x28(%rdi)
    mov     %rsi, 0x30(%rdi)
    mov     %r8, 0x40(%rdi)
    mov     %r9, 0x48(%rdi)
    mov     %r10, 0x50(%rdi)
    mov     %r11, 0x58(%rdi)
    mov     %r12, 0x60(%rdi)
    mov     %r13, 0x68(%rdi)
    mov     %r14, 0x70(%rdi)
    mov     %r15, 0x78(%rdi)
    pop     %rcx
    mov     %rcx, 0x38(%rdi)
    add     $8, %rsp
    pop     %r15
    pop     %r14
    pop     %r13
    pop     %r12
    pop     %rbp
    pop     %rbx
    xor     %eax, %eax
    ret

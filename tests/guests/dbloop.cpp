// dbloop: a #DB storm (CVE-2015-8104). The guest switches to long mode and
// routes #DB through an IST stack (IST1), so every #DB delivery pushes its
// frame at the same addresses; DR0/DR7 hold a write data breakpoint on the
// slot where the CPU pushes SS (IST1 top - 8). Then EFLAGS.TF raises one #DB
// (single step; ICEBP would do on hardware, but QEMU TCG raises #UD for it in an
// SVM guest): its delivery writes the watched slot, which raises the next #DB
// right after the delivery, whose delivery writes the slot again, and so on. On
// real hardware that does not intercept #DB this loops in microcode forever and
// no interrupt is ever taken; a hypervisor must intercept #DB to keep control
// of its CPU. Should a delivery ever complete, the handler returns with TF set
// again, which starts over: the guest never ends.
//
// cmdline: nowatch (no data breakpoint: a plain flood of single-step #DBs, each
// delivery completing; a control for the storm).
//
// Prints "dbloop: armed dr0=0x... dr7=0x..." (from 32-bit code, before the
// switch) and never returns. Any other exception in long mode prints
// "dbloop: unexpected exception in long mode: vector, frame: ..." and exits
// 0xEE00 | vector.
// Not meant to run bare: nothing would end it.
#include "lib/guest.hpp"

extern "C" const char guest_name[] = "dbloop";

namespace {

constexpr u32 PAGE_P = 1, PAGE_RW = 2, PAGE_PS = 0x80;
constexpr u16 SEL_CODE64 = 0x18;   // and the TSS at 0x20 (ltr in long64_entry)

alignas(4096) u64 pml4[512];
alignas(4096) u64 pdpt[512];
alignas(4096) u64 pd[512];
alignas(16) u64 idt64[256 * 2];
alignas(16) u32 tss64[26];       // 104 bytes
alignas(16) u8 ist1_stack[4096];

alignas(8) u64 gdt64[] = {
    0,
    0x00cf9b000000ffffull,       // 0x08: 32-bit code (the runtime's)
    0x00cf93000000ffffull,       // 0x10: data
    0x00af9b000000ffffull,       // 0x18: 64-bit code
    0, 0,                        // 0x20: 64-bit TSS (16 bytes)
};

struct [[gnu::packed]] Gdtr32 { u16 limit; u32 base; };
struct [[gnu::packed]] Idtr64 { u16 limit; u64 base; };

void set_gate64(u32 v, u32 handler, u32 ist) {
    idt64[v * 2] = u64(handler & 0xffff) | u64(SEL_CODE64) << 16 | u64(ist) << 32 | 0x8eull << 40 |
                   u64(handler >> 16) << 48;
    idt64[v * 2 + 1] = 0;
}

} // namespace

extern "C" {
Gdtr32 dbloop_gdtr;
Idtr64 dbloop_idtr;
u32 dbloop_dr0, dbloop_dr7, dbloop_pml4;
alignas(16) u8 dbloop_stack[4096];
u32 dbloop_stack_top;
extern char long64_entry[], db64_handler[], fault64_stubs[];
}

// 64-bit code. Entered by a far jump to 0x18:long64_entry with paging on (identity).
asm(".pushsection .text\n"
    ".code64\n"
    ".globl long64_entry, db64_handler, fault64_stubs\n"
    "long64_entry:\n"
    "    movw $0x10, %ax\n"
    "    movw %ax, %ds\n"
    "    movw %ax, %es\n"
    "    movw %ax, %ss\n"
    "    movl dbloop_stack_top, %esp\n"
    "    lidt dbloop_idtr\n"
    "    movw $0x20, %ax\n"
    "    ltr %ax\n"
    "    movl dbloop_dr0, %eax\n"
    "    movq %rax, %dr0\n"
    "    movl $0xffff0ff0, %eax\n"
    "    movq %rax, %dr6\n"
    "    movl dbloop_dr7, %eax\n"
    "    movq %rax, %dr7\n"
    "1:  pushfq\n"                     // TF: a single-step #DB after the NOP
    "    orl $0x100, (%rsp)\n"
    "    popfq\n"
    "    nop\n"
    "    jmp 1b\n"
    "db64_handler:\n"                  // reached only if a delivery ever completes
    "    iretq\n"
    "    .balign 16\n"
    "fault64_stubs:\n"
    "    .set fvec, 0\n"
    "    .rept 32\n"
    "    .balign 16\n"
    "    pushq $fvec\n"
    "    jmp fault64\n"
    "    .set fvec, fvec + 1\n"
    "    .endr\n"
    "fault64:\n"
    "    popq %rbx\n"                   // vector; then the frame: [error code,] RIP, CS, ...
    "    movw $0x3f8, %dx\n"
    "    movl $fault64_msg, %esi\n"
    "2:  movb (%rsi), %al\n"
    "    testb %al, %al\n"
    "    jz 3f\n"
    "    outb %al, %dx\n"
    "    incl %esi\n"
    "    jmp 2b\n"
    "3:  movq %rbx, %rdi\n"             // vector, then the two words on top of the frame
    "    call hex64\n"
    "    movq (%rsp), %rdi\n"
    "    call hex64\n"
    "    movq 8(%rsp), %rdi\n"
    "    call hex64\n"
    "    movb $0x0a, %al\n"
    "    outb %al, %dx\n"
    "    movl $0xee00, %eax\n"
    "    orl %ebx, %eax\n"
    "    outl %eax, $0xf4\n"
    "4:  cli\n"
    "    hlt\n"
    "    jmp 4b\n"
    "hex64:\n"                          // " 0x" and RDI in 16 hex digits to port DX
    "    movb $0x20, %al\n"
    "    outb %al, %dx\n"
    "    movb $0x30, %al\n"
    "    outb %al, %dx\n"
    "    movb $0x78, %al\n"
    "    outb %al, %dx\n"
    "    movl $16, %ecx\n"
    "5:  rolq $4, %rdi\n"
    "    movl %edi, %eax\n"
    "    andl $15, %eax\n"
    "    movb hex_digits(%eax), %al\n"
    "    outb %al, %dx\n"
    "    decl %ecx\n"
    "    jnz 5b\n"
    "    ret\n"
    ".code32\n"
    ".popsection\n"
    ".pushsection .rodata\n"
    "fault64_msg: .asciz \"dbloop: unexpected exception in long mode: vector, frame:\"\n"
    "hex_digits: .ascii \"0123456789abcdef\"\n"
    ".popsection\n");

u32 guest_main() {
    // Identity map of the first GiB in 2 MiB pages.
    for (u32 i = 0; i < 512; ++i) pd[i] = u64(i) * 0x200000 | PAGE_P | PAGE_RW | PAGE_PS;
    pdpt[0] = uptr(pd) | PAGE_P | PAGE_RW;
    pml4[0] = uptr(pdpt) | PAGE_P | PAGE_RW;
    dbloop_pml4 = uptr(pml4);

    // TSS: IST1 = the top of ist1_stack (16-byte aligned); no I/O bitmap.
    const u32 ist1_top = uptr(ist1_stack + sizeof(ist1_stack));
    tss64[0x24 / 4] = ist1_top;
    tss64[0x28 / 4] = 0;
    tss64[0x04 / 4] = uptr(dbloop_stack + sizeof(dbloop_stack));   // RSP0 (unused: CPL 0 throughout)
    tss64[0x64 / 4] = u32(sizeof(tss64)) << 16;                     // I/O map base = limit + 1
    const u32 tss = uptr(tss64), limit = sizeof(tss64) - 1;
    gdt64[4] = u64(limit & 0xffff) | u64(tss & 0xffffff) << 16 | 0x89ull << 40 | u64((limit >> 16) & 0xf) << 48 |
               u64(tss >> 24) << 56;
    gdt64[5] = 0;

    for (u32 v = 0; v < 32; ++v) set_gate64(v, uptr(fault64_stubs) + v * 16, 0);
    set_gate64(1, uptr(db64_handler), 1);                            // #DB on IST1
    dbloop_idtr = Idtr64{sizeof(idt64) - 1, uptr(idt64)};
    dbloop_gdtr = Gdtr32{sizeof(gdt64) - 1, uptr(gdt64)};
    dbloop_stack_top = uptr(dbloop_stack + sizeof(dbloop_stack));

    // Delivering #DB through IST1 pushes SS at IST1 top - 8 first: watch it (write, 4 bytes).
    dbloop_dr0 = ist1_top - 8;
    dbloop_dr7 = 0x400 | 1u | 1u << 16 | 3u << 18;
    if (cmdline_flag("nowatch")) dbloop_dr7 = 0x400;   // control: a single-step #DB flood without the storm

    // As Linux's trampoline does: CR4.PAE and CR3 first, then EFER.LME, then CR0.PG.
    printf("dbloop: armed dr0=0x%x dr7=0x%x (IST1 top 0x%x): switching to long mode, single step\n", dbloop_dr0,
           dbloop_dr7, ist1_top);
    asm volatile("lgdt dbloop_gdtr\n\t"
                 "movl %%cr4, %%eax\n\t"
                 "orl $0x20, %%eax\n\t"                 // PAE
                 "movl %%eax, %%cr4\n\t"
                 "movl dbloop_pml4, %%eax\n\t"
                 "movl %%eax, %%cr3\n\t"
                 : : : "eax", "memory");
    const u32 gp_before = gp_record.count;
    wrmsr(0xc0000080, rdmsr(0xc0000080, 0) | 1u << 8);    // EFER.LME
    if (gp_record.count != gp_before) {
        printf("dbloop: FAIL wrmsr EFER.LME raised #GP\n");
        return 1;
    }
    asm volatile("movl %%cr0, %%eax\n\t"
                 "orl $0x80000000, %%eax\n\t"           // PG: long mode active
                 "movl %%eax, %%cr0\n\t"
                 "ljmp $0x18, $long64_entry\n"
                 : : : "eax", "memory");
    __builtin_unreachable();
}

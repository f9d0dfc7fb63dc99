#include "smp.hpp"

extern "C" {
alignas(16) u8 smp_ap_stack[8192];
u32 smp_ap_stack_top;
void (*volatile smp_ap_entry)();
volatile u32 smp_ap_alive;
extern const u8 smp_tramp_start[], smp_tramp_end[], smp_idt_desc[];

// Called by the trampoline on the AP's stack, with the BSP's IDT loaded.
[[noreturn]] void smp_ap_main() {
    smp_ap_alive = 1;
    smp_ap_entry();
    for (;;) asm volatile("cli; hlt");
}
}

// Real mode at 0x8000 (CS=0x0800, IP=0) -> 32-bit flat protected mode -> smp_ap_main.
asm(".pushsection .text\n"
    ".globl smp_tramp_start, smp_tramp_end\n"
    ".code16\n"
    "smp_tramp_start:\n"
    "    cli\n"
    "    cld\n"
    "    movw %cs, %ax\n"
    "    movw %ax, %ds\n"
    "    lgdtl smp_gdt_desc - smp_tramp_start\n"
    "    lidtl smp_idt_desc - smp_tramp_start\n"
    "    movl %cr0, %eax\n"
    "    orl $1, %eax\n"
    "    movl %eax, %cr0\n"
    "    ljmpl $0x08, $(0x8000 + smp_pm32 - smp_tramp_start)\n"
    ".code32\n"
    "smp_pm32:\n"
    "    movw $0x10, %ax\n"
    "    movw %ax, %ds\n"
    "    movw %ax, %es\n"
    "    movw %ax, %fs\n"
    "    movw %ax, %gs\n"
    "    movw %ax, %ss\n"
    "    movl smp_ap_stack_top, %esp\n"
    "    movl $smp_ap_main, %eax\n"
    "    call *%eax\n"
    "1:  hlt\n"
    "    jmp 1b\n"
    "    .balign 8\n"
    "smp_gdt:\n"
    "    .quad 0\n"
    "    .quad 0x00cf9b000000ffff\n"
    "    .quad 0x00cf93000000ffff\n"
    "smp_gdt_desc:\n"
    "    .word smp_gdt_desc - smp_gdt - 1\n"
    "    .long 0x8000 + smp_gdt - smp_tramp_start\n"
    ".globl smp_idt_desc\n"
    "smp_idt_desc:\n"          // filled in by start_ap with the BSP's IDTR
    "    .word 0\n"
    "    .long 0\n"
    "smp_tramp_end:\n"
    ".popsection\n");

namespace smp {

void send_ipi(u32 apic_id, u32 low) {
    lapic_write(ICR_HI, apic_id << 24);
    lapic_write(ICR_LO, low);
    for (u32 i = 0; i < 1000000 && (lapic_read(ICR_LO) & (1u << 12)); ++i) asm volatile("pause");
}

bool start_ap(u32 apic_id, void (*entry)()) {
    constexpr u32 TRAMPOLINE = 0x8000;
    u8* const t = reinterpret_cast<u8*>(TRAMPOLINE);
    memcpy(t, smp_tramp_start, usize(smp_tramp_end - smp_tramp_start));
    // The AP shares the BSP's IDT as it is now (the copy's descriptor at the same offset).
    struct [[gnu::packed]] Idtr { u16 limit; u32 base; };
    asm volatile("sidt %0" : "=m"(*reinterpret_cast<Idtr*>(t + (smp_idt_desc - smp_tramp_start))) : : "memory");
    smp_ap_stack_top = uptr(smp_ap_stack + sizeof(smp_ap_stack));
    smp_ap_entry = entry;
    send_ipi(apic_id, 0x4500);                              // INIT
    for (u32 i = 0; i < 100000; ++i) asm volatile("pause");
    for (u32 sipi = 0; sipi < 2 && !smp_ap_alive; ++sipi) {
        send_ipi(apic_id, 0x4600 | (TRAMPOLINE >> 12));     // start-up at 0x8000
        for (u32 i = 0; i < 2000000 && !smp_ap_alive; ++i) asm volatile("pause");
    }
    for (u32 i = 0; i < 200000000 && !smp_ap_alive; ++i) asm volatile("pause");
    return smp_ap_alive;
}

}  // namespace smp

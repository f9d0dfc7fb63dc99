// uartstorm: two vCPUs write to the same UART (COM1) at full speed. vCPU 0
// starts vCPU 1 through its local APIC (xAPIC MMIO: INIT, then SIPI twice) at
// a real-mode trampoline copied to 0x8000, which goes to 32-bit protected mode
// (flat, the runtime's selectors 0x08/0x10) and calls ap_main on its own stack.
// Then vCPU 0 writes only 'a', vCPU 1 only 'b', each `chars=N` of them
// (default 20000) with a '\n' after every 64 of its own letters and after its
// last one; both flag that they are done, and vCPU 0 prints "uartstorm: done"
// and exits 0. Nothing else is printed during the storm, so the storm's lines
// hold only 'a', 'b' and the line ends: counting them on the console shows
// whether the UART lost or duplicated a character.
//
// cmdline: chars=N, nopoll (write THR without polling LSR.THRE first).
// Exit codes: 0 done; 2 vCPU 1 did not start.
#include "lib/guest.hpp"

extern "C" const char guest_name[] = "uartstorm";

namespace {

constexpr u32 APIC = 0xfee00000, ICR_LO = 0x300, ICR_HI = 0x310;
constexpr u32 TRAMPOLINE = 0x8000;   // SIPI vector 0x08
constexpr u16 COM1 = 0x3f8;

u32 apic_read(u32 reg) {
    u32 v;
    asm volatile("movl (%1), %0" : "=r"(v) : "r"(APIC + reg) : "memory");
    return v;
}
void apic_write(u32 reg, u32 v) { asm volatile("movl %0, (%1)" : : "r"(v), "r"(APIC + reg) : "memory"); }

void send_ipi(u32 apic_id, u32 low) {
    apic_write(ICR_HI, apic_id << 24);
    apic_write(ICR_LO, low);
    for (u32 i = 0; i < 1000000 && (apic_read(ICR_LO) & (1u << 12)); ++i) asm volatile("pause");
}

void delay(u32 loops) {
    for (u32 i = 0; i < loops; ++i) asm volatile("pause");
}

} // namespace

struct [[gnu::packed]] Idtr { u16 limit; u32 base; };

extern "C" {
alignas(16) u8 ap_stack[8192];
u32 ap_stack_top;
Idtr ap_idtr;
volatile u32 ap_alive, ap_go, ap_done;
u32 storm_chars;
bool storm_poll;
extern const u8 ap_tramp_start[], ap_tramp_end[];
}

static void storm(char letter) {
    const u32 n = storm_chars;
    for (u32 i = 1; i <= n; ++i) {
        if (storm_poll) {
            putc(letter);
        } else {
            outb(COM1, u8(letter));
        }
        if (i % 64 == 0 || i == n) {
            if (storm_poll) putc('\n');
            else outb(COM1, '\n');
        }
    }
}

extern "C" [[noreturn]] void ap_main() {
    asm volatile("lidt %0" : : "m"(ap_idtr));
    ap_alive = 1;
    while (!ap_go) asm volatile("pause");
    storm('b');
    ap_done = 1;
    for (;;) asm volatile("sti; hlt");   // nothing is sent to it: waits for the guest's end
}

// Real mode at 0x8000 (CS=0x0800, IP=0) -> 32-bit flat protected mode -> ap_main.
asm(".pushsection .text\n"
    ".globl ap_tramp_start, ap_tramp_end\n"
    ".code16\n"
    "ap_tramp_start:\n"
    "    cli\n"
    "    cld\n"
    "    movw %cs, %ax\n"
    "    movw %ax, %ds\n"
    "    lgdtl ap_gdt_desc - ap_tramp_start\n"
    "    movl %cr0, %eax\n"
    "    orl $1, %eax\n"
    "    movl %eax, %cr0\n"
    "    ljmpl $0x08, $(0x8000 + ap_pm32 - ap_tramp_start)\n"
    ".code32\n"
    "ap_pm32:\n"
    "    movw $0x10, %ax\n"
    "    movw %ax, %ds\n"
    "    movw %ax, %es\n"
    "    movw %ax, %fs\n"
    "    movw %ax, %gs\n"
    "    movw %ax, %ss\n"
    "    movl ap_stack_top, %esp\n"
    "    movl $ap_main, %eax\n"
    "    call *%eax\n"
    "1:  hlt\n"
    "    jmp 1b\n"
    "    .balign 8\n"
    "ap_gdt:\n"
    "    .quad 0\n"
    "    .quad 0x00cf9b000000ffff\n"
    "    .quad 0x00cf93000000ffff\n"
    "ap_gdt_desc:\n"
    "    .word ap_gdt_desc - ap_gdt - 1\n"
    "    .long 0x8000 + ap_gdt - ap_tramp_start\n"
    "ap_tramp_end:\n"
    ".popsection\n");

u32 guest_main() {
    storm_chars = u32(cmdline_u64("chars", 20000));
    storm_poll = !cmdline_flag("nopoll");
    printf("uartstorm: chars=%u %s, starting vCPU 1\n", storm_chars, storm_poll ? "polling LSR" : "THR only");

    memcpy(reinterpret_cast<void*>(TRAMPOLINE), ap_tramp_start, usize(ap_tramp_end - ap_tramp_start));
    asm volatile("sidt %0" : "=m"(ap_idtr));
    ap_stack_top = uptr(ap_stack + sizeof(ap_stack));

    send_ipi(1, 0x4500);                                  // INIT
    delay(100000);
    for (u32 sipi = 0; sipi < 2 && !ap_alive; ++sipi) {
        send_ipi(1, 0x4600 | (TRAMPOLINE >> 12));         // start-up at 0x8000
        for (u32 i = 0; i < 2000000 && !ap_alive; ++i) asm volatile("pause");
    }
    for (u32 i = 0; i < 200000000 && !ap_alive; ++i) asm volatile("pause");
    if (!ap_alive) {
        printf("uartstorm: FAIL vCPU 1 did not start\n");
        return 2;
    }
    printf("uartstorm: vCPU 1 is up: storm of %u 'a' (vCPU 0) and %u 'b' (vCPU 1)\n", storm_chars, storm_chars);
    ap_go = 1;
    storm('a');
    while (!ap_done) asm volatile("pause");
    printf("uartstorm: done\n");
    return 0;
}

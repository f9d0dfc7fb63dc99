// sstep: single-stepping across instructions the hypervisor emulates.
//
// With RFLAGS.TF set, every instruction that completes is followed by a #DB
// (a trap: the saved EIP is the next instruction) with DR6.BS set (SDM vol. 3
// 17.3.1.4). A hypervisor that emulates an instruction (CPUID, IN, OUT, RDMSR,
// a load from device memory) must deliver that trap itself: the CPU never saw
// the instruction retire. The guest steps through
//     nop; cpuid; in; out; rdmsr (MISC_ENABLE); mov from the local APIC's version register; nop
// and checks that exactly one #DB came after each, at the next instruction, with
// DR6.BS. The same guest passes bare under QEMU (TCG single-steps exactly).
//
// Checks: 1 one #DB per instruction, 2 each at the following instruction,
// 3 DR6.BS in each, 4 the instructions' results (CPUID leaf 0 vendor, APIC
// version register not all ones).
#include "lib/guest.hpp"

extern "C" const char guest_name[] = "sstep";

extern "C" char sstep_insn[], sstep_end[];

namespace {

constexpr u32 kMax = 16;
volatile u32 traps;
volatile u32 trap_eip[kMax];
volatile u32 trap_dr6[kMax];

bool on_trap(TrapFrame* f) {
    if (f->vector != 1) return false;
    u32 dr6;
    asm volatile("mov %%db6, %0" : "=r"(dr6));
    asm volatile("mov %0, %%db6" : : "r"(0xffff0ff0u));
    const u32 n = traps;
    if (n < kMax) {
        trap_eip[n] = f->eip;
        trap_dr6[n] = dr6;
    }
    traps = n + 1;
    // Past the last instruction, or a runaway: stop stepping.
    if (f->eip == u32(sstep_end) || n + 1 >= kMax) f->eflags &= ~0x100u;
    return true;
}

}  // namespace

u32 guest_main() {
    Checks c;
    trap_hook = on_trap;
    u32 eax = 0, ebx = 0, ecx = 0, edx = 0, apic_version = 0;
    // Each stepped instruction is 1, 2 or 6 bytes; their addresses come from the table below.
    asm volatile(
        "pushfl\n"
        "orl $0x100, (%%esp)\n"
        "popfl\n"                   // TF: the first trap comes after the instruction that follows
        "sstep_insn:\n"
        "1: nop\n"                  // stepped by the CPU itself (no exit)
        "2: cpuid\n"                // eax = 0
        "3: inb $0x80, %%al\n"
        "4: outb %%al, $0x80\n"
        "5: movl $0x1a0, %%ecx\n"   // (stepped by the CPU too)
        "6: rdmsr\n"
        "7: movl 0xfee00030, %%esi\n"   // local APIC version: device memory
        "8: nop\n"
        "sstep_end:\n"
        "    .pushsection .rodata\n"
        "sstep_table: .long 2b, 3b, 4b, 5b, 6b, 7b, 8b, sstep_end\n"
        "    .popsection\n"
        : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx), "=S"(apic_version)
        : "a"(0)
        : "memory", "cc");
    trap_hook = nullptr;
    extern const u32 sstep_table[] asm("sstep_table");
    constexpr u32 kSteps = 8;

    const u32 n = traps;
    c.check(n == kSteps, "one #DB per instruction", "%u traps for %u instructions", n, kSteps);
    u32 bad_eip = 0, bad_dr6 = 0, first_bad = ~0u;
    for (u32 i = 0; i < n && i < kSteps; i++) {
        if (trap_eip[i] != sstep_table[i]) {
            bad_eip++;
            if (first_bad == ~0u) first_bad = i;
        }
        if (!(trap_dr6[i] & (1u << 14))) bad_dr6++;
    }
    for (u32 i = 0; i < n && i < kMax; i++)
        printf("sstep: trap %u eip=0x%x (want 0x%x) dr6=0x%x\n", i, trap_eip[i], i < kSteps ? sstep_table[i] : 0,
               trap_dr6[i]);
    c.check(bad_eip == 0 && n >= kSteps, "each #DB at the following instruction", "%u wrong, first at step %d", bad_eip,
            first_bad == ~0u ? -1 : i32(first_bad));
    c.check(bad_dr6 == 0 && n > 0, "DR6.BS in each", "%u without BS", bad_dr6);
    c.check(ebx != 0 && apic_version != 0xffffffffu && (apic_version & 0xff) != 0,
            "the stepped instructions did their work", "cpuid.0 ebx=0x%x apic version=0x%x", ebx, apic_version);
    (void)eax, (void)ecx, (void)edx, (void)sstep_insn;
    return c.finish();
}

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
// Then the other debug traps an emulated instruction owes (SDM vol. 3 17.2.4-5,
// 6.8.3): a MOV SS holds its single-step back until after the next instruction
// (one #DB, after CPUID, with BS); data breakpoints (DR7 RW=01 write, RW=11
// read/write) on loads and stores to device memory (the APIC's TPR), and an I/O
// breakpoint (CR4.DE, RW=10) on IN/OUT, each a #DB after the instruction with
// its B bit.
//
// Checks: 1 one #DB per instruction, 2 each at the following instruction,
// 3 DR6.BS in each, 4 the instructions' results (CPUID leaf 0 vendor, APIC
// version register not all ones), 5 MOV SS; CPUID; NOP with TF: one #DB after
// CPUID, with BS, and one after the NOP (no second #DB for CPUID), 6 a write breakpoint on the TPR: one #DB after the store, B0, not on
// the load, 7 a read/write breakpoint: one #DB after the load, B1, 8 an I/O
// breakpoint on port 0x80: one #DB after OUT and one after IN, B2, none for
// port 0x84.
#include "lib/guest.hpp"

extern "C" const char guest_name[] = "sstep";

extern "C" char sstep_insn[], sstep_end[], movss_after[], movss_end[], bp_store_after[], bp_load_after[],
    bp_rw_after[], io_out_after[], io_in_after[];

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
    if (f->eip == u32(sstep_end) || f->eip == u32(movss_end) || n + 1 >= kMax) f->eflags &= ~0x100u;
    return true;
}

void reset_traps() {
    traps = 0;
    for (u32 i = 0; i < kMax; i++) {
        trap_eip[i] = 0;
        trap_dr6[i] = 0;
    }
}

void set_dr7(u32 v) { asm volatile("mov %0, %%db7" : : "r"(v)); }
void set_dr(u32 n, u32 v) {
    if (n == 0) asm volatile("mov %0, %%db0" : : "r"(v));
    if (n == 1) asm volatile("mov %0, %%db1" : : "r"(v));
    if (n == 2) asm volatile("mov %0, %%db2" : : "r"(v));
}
// DR7 for breakpoint n: L bit, RW, LEN (0 = 1 byte, 3 = 4 bytes).
constexpr u32 bp(u32 n, u32 rw, u32 len) { return 1u << (2 * n) | rw << (16 + 4 * n) | len << (18 + 4 * n); }

// Exactly one trap, at `eip`, whose DR6 has `bits` among B0-B3 and BS (and nothing else of them).
bool one_trap(u32 eip, u32 bits) { return traps == 1 && trap_eip[0] == eip && (trap_dr6[0] & 0x400f) == bits; }

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

    // 5: MOV SS; CPUID with TF: the MOV SS's trap waits for CPUID, and comes as one #DB with BS.
    // The stepping stops at movss_end (the handler clears TF there).
    reset_traps();
    trap_hook = on_trap;
    asm volatile(
        "movl %%ss, %%edx\n"
        "pushfl\n"
        "orl $0x100, (%%esp)\n"
        "popfl\n"
        "movl %%edx, %%ss\n"       // its single-step is held for one instruction
        "cpuid\n"
        "movss_after: nop\n"
        "movss_end:\n"
        : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx)
        : "a"(0)
        : "memory", "cc");
    trap_hook = nullptr;
    printf("sstep: mov ss: %u traps, first eip=0x%x (want 0x%x) dr6=0x%x\n", traps, trap_eip[0], u32(movss_after),
           trap_dr6[0]);
    c.check(traps == 2 && trap_eip[0] == u32(movss_after) && (trap_dr6[0] & (1u << 14)) && trap_eip[1] == u32(movss_end),
            "MOV SS; CPUID: the held single-step comes after CPUID, once", "%u traps, first at 0x%x dr6=0x%x", traps,
            trap_eip[0], trap_dr6[0]);

    // 6, 7: data breakpoints on the APIC's TPR (device memory: Keel emulates these MOVs).
    constexpr u32 TPR = 0xfee00080;
    u32 tpr = 0;
    reset_traps();
    trap_hook = on_trap;
    set_dr(0, TPR);
    set_dr7(0x400 | bp(0, 1, 3));   // write, 4 bytes
    asm volatile("movl %1, (%2)\n"
                 "bp_store_after:\n"
                 "movl (%2), %0\n"
                 "bp_load_after:\n"
                 : "=r"(tpr) : "r"(0x10u), "r"(TPR) : "memory");
    set_dr7(0x400);
    const u32 n6 = traps, e6 = trap_eip[0], d6 = trap_dr6[0];
    c.check(one_trap(u32(bp_store_after), 1) && tpr == 0x10, "write breakpoint on the TPR: #DB after the store, B0",
            "%u traps, first at 0x%x (want 0x%x) dr6=0x%x, tpr=0x%x", n6, e6, u32(bp_store_after), d6, tpr);
    reset_traps();
    set_dr(1, TPR);
    set_dr7(0x400 | bp(1, 3, 3));   // read or write, 4 bytes
    asm volatile("movl (%1), %0\n"
                 "bp_rw_after:\n"
                 : "=r"(tpr) : "r"(TPR) : "memory");
    set_dr7(0x400);
    const u32 n7 = traps, e7 = trap_eip[0], d7 = trap_dr6[0];
    c.check(one_trap(u32(bp_rw_after), 2), "read/write breakpoint on the TPR: #DB after the load, B1",
            "%u traps, first at 0x%x (want 0x%x) dr6=0x%x", n7, e7, u32(bp_rw_after), d7);
    asm volatile("movl %0, (%1)" : : "r"(0u), "r"(TPR) : "memory");

    // 8: an I/O breakpoint (CR4.DE) on port 0x80: after OUT and after IN; port 0x84 is not it.
    u32 cr4;
    asm volatile("movl %%cr4, %0" : "=r"(cr4));
    asm volatile("movl %0, %%cr4" : : "r"(cr4 | 1u << 3));
    reset_traps();
    set_dr(2, 0x80);
    set_dr7(0x400 | bp(2, 2, 0));
    asm volatile("outb %%al, $0x84\n"
                 "outb %%al, $0x80\n"
                 "io_out_after:\n"
                 "inb $0x84, %%al\n"
                 "inb $0x80, %%al\n"
                 "io_in_after:\n"
                 : "=a"(eax) : "a"(0) : "memory");
    set_dr7(0x400);
    asm volatile("movl %0, %%cr4" : : "r"(cr4));
    trap_hook = nullptr;
    c.check(traps == 2 && trap_eip[0] == u32(io_out_after) && trap_eip[1] == u32(io_in_after) &&
                (trap_dr6[0] & 0x400f) == 4 && (trap_dr6[1] & 0x400f) == 4,
            "I/O breakpoint on port 0x80: #DB after OUT and after IN, B2", "%u traps at 0x%x 0x%x (want 0x%x 0x%x) dr6 0x%x 0x%x",
            traps, trap_eip[0], trap_eip[1], u32(io_out_after), u32(io_in_after), trap_dr6[0], trap_dr6[1]);
    (void)bp_load_after, (void)movss_end;
    return c.finish();
}

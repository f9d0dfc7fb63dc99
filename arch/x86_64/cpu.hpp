// Per-CPU state (reached through %gs), descriptor tables and the trap frame.
#pragma once

#include "arch/x86_64/layout.hpp"
#include "kernel/lib/types.hpp"

inline constexpr unsigned MAX_CPUS = 64;

struct [[gnu::packed]] Tss {
    u32 reserved0;
    u64 rsp[3];
    u64 reserved1;
    u64 ist[7];
    u64 reserved2;
    u16 reserved3;
    u16 iomap_base;
};
static_assert(sizeof(Tss) == 104);

// Saved by the trap entry (see traps.S): the layout must match the push order there.
struct Frame {
    u64 r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
    u64 vector, error;
    u64 rip, cs, rflags, rsp, ss;
};

struct Cpu {
    Cpu *self;               // %gs:0, so cpu() is one load
    u32 index;               // 0 = the boot CPU
    u32 apic_id;
    alignas(8) u64 gdt[5];   // null, code64, data, TSS (two slots)
    Tss tss;
    u64 stack_top;           // kernel stack (with a guard page below)
    u64 ticks;               // local APIC timer interrupts taken (atomic)
    bool online;             // atomic
    const char *running;     // the guest whose vCPU this CPU runs now, or null (for the watchdog)
    // The watchdog: this CPU watches the next one's ticks (smp.cpp).
    u64 wd_seen;
    u32 wd_quiet;            // seconds without a tick there
    bool wd_reported;
};

inline Cpu *cpu()
{
    Cpu *c;
    asm volatile("mov %%gs:0, %0" : "=r"(c));
    return c;
}

namespace cpu_setup {
// Load the GDT, TSS and IDT on this CPU and point %gs at its Cpu block.
void load(Cpu &c);
// Enable the features Keel relies on (SMEP, SMAP, WP, global pages, PAT) on this CPU.
void enable_features();
// Build the IDT (once, on the boot CPU).
void init_idt();
}

// Called from traps.S for every exception and interrupt.
extern "C" void trap(Frame *f);

// Interrupt vectors Keel uses.
namespace vec {
inline constexpr u8 TIMER = 0x20;
// Allocated to devices' interrupts (irq.hpp): below them the timer, above them room for IPIs.
inline constexpr u8 DEVICE_FIRST = 0x30, DEVICE_LAST = 0xdf;
inline constexpr u8 SPURIOUS = 0xff;
}

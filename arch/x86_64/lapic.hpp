// The local APIC, in x2APIC mode (MSRs) when the CPU has it, else xAPIC (MMIO).
#pragma once

#include "kernel/lib/types.hpp"

namespace lapic {

enum class Reg : u32 {
    id = 0x20, version = 0x30, tpr = 0x80, eoi = 0xb0, svr = 0xf0, esr = 0x280,
    icr_low = 0x300, icr_high = 0x310, lvt_timer = 0x320, lvt_lint0 = 0x350, lvt_lint1 = 0x360,
    lvt_error = 0x370, timer_initial = 0x380, timer_current = 0x390, timer_divide = 0x3e0,
};

// On the boot CPU: choose the mode and map the xAPIC page if needed.
void setup(bool want_x2apic);
// On every CPU: switch this CPU's APIC to the chosen mode and enable it.
void enable();
bool x2apic();
u32 id();
void eoi();

// Send INIT, or a start-up IPI for the trampoline at `page` (< 1 MiB), to one APIC.
bool send_init(u32 apic_id);
bool send_sipi(u32 apic_id, u64 page);

// Measure the timer against the TSC, then run it periodically at `hz` on `vector`.
void calibrate_timer(u64 tsc_hz);
void start_timer(u8 vector, unsigned hz);
u64 timer_hz();   // the timer's input clock after the divider

} // namespace lapic

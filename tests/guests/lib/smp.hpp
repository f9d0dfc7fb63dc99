// A second vCPU for the test guests: the local APIC (xAPIC MMIO) and INIT/SIPI bring-up of an
// application processor into 32-bit flat protected mode, on its own stack, calling `entry`
// with interrupts disabled and the BSP's IDT loaded (apic, uartstorm, exitstorm's ipi=).
#pragma once

#include "guest.hpp"

namespace smp {

constexpr u32 APIC = 0xfee00000;
enum : u32 { ID = 0x20, EOI = 0xb0, SVR = 0xf0, IRR = 0x200, ICR_LO = 0x300, ICR_HI = 0x310 };

inline u32 lapic_read(u32 reg) {
    u32 v;
    asm volatile("movl (%1), %0" : "=r"(v) : "r"(APIC + reg) : "memory");
    return v;
}
inline void lapic_write(u32 reg, u32 v) { asm volatile("movl %0, (%1)" : : "r"(v), "r"(APIC + reg) : "memory"); }

// ICR: destination APIC ID in xAPIC physical mode, then the low word (vector, mode, shorthand).
void send_ipi(u32 apic_id, u32 low);

// INIT, then up to two SIPIs to the APIC `apic_id` (trampoline at 0x8000, which the guest's
// RAM must have); true once the AP runs `entry` (it never returns).
bool start_ap(u32 apic_id, void (*entry)());

}  // namespace smp

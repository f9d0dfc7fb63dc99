// Bringing up the application processors listed by the MADT.
#pragma once

#include "arch/x86_64/cpu.hpp"
#include "kernel/firmware/acpi.hpp"

namespace smp {

// Per-CPU setup common to the boot CPU and the APs (stacks, tables, APIC, timer).
Status setup_cpu(Cpu &c);
// Start every usable CPU of the MADT other than the boot CPU; returns how many are online in all.
unsigned start_aps(const Madt &madt);
unsigned online();
Cpu &boot_cpu();
// The local APIC ID of CPU `index` (0: the boot CPU).
u32 apic_id(unsigned index);
[[noreturn]] void ap_main(Cpu *c);

// What every CPU does once it has nothing else to do: halt until an interrupt,
// and run the work the boot CPU hands out with run_on_aps().
[[noreturn]] void idle();

// Make every application processor (idling) call fn; fn does not return.
void run_on_aps(void (*fn)());

} // namespace smp

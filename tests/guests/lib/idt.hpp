// A test guest's own IDT, for the guests that take interrupts (apic, tick, msi): the
// runtime's exception gates (0-31) copied, every vector from 0x20 up caught and counted as an
// interrupt the guest did not ask for (idt_foreign), then the guest's own gates. An archive
// member: only the guests that use it carry it.
#pragma once

#include "lib/guest.hpp"

// What the catch-all saw: the spurious vector 0xFF (no EOI), and every other vector (EOI to
// the xAPIC at 0xFEE00000), the first of them remembered.
struct IdtForeign {
    u32 count, first, spurious;
};
extern volatile IdtForeign idt_foreign;

// On the boot CPU, interrupts off: build the IDT and load it.
void idt_install();
// On another CPU of the guest: load the same IDT.
void idt_load();
// Vector v (any, the catch-alls included) to isr, an interrupt gate in the flat code segment.
void idt_set(u32 v, void (*isr)());

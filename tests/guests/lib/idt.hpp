// A test guest's own IDT, for the guests that take interrupts (apic, tick, msi): the
// runtime's exception gates (0-31) copied, every vector from 0x20 up caught by
// foreign_handler(vector), which the guest defines (an interrupt it did not ask for: it
// counts them), then the guest's own gates. An archive member: only the guests that use it
// carry it.
#pragma once

#include "lib/guest.hpp"

extern "C" void foreign_handler(u32 vector);   // the guest's

// On the boot CPU, interrupts off: build the IDT and load it.
void idt_install();
// On another CPU of the guest: load the same IDT.
void idt_load();
// Vector v (any, the catch-alls included) to isr, an interrupt gate in the flat code segment.
void idt_set(u32 v, void (*isr)());

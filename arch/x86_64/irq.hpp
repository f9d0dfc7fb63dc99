// Interrupt handlers registered by vector (exceptions are handled in cpu.cpp).
#pragma once

#include "arch/x86_64/cpu.hpp"
#include "kernel/lib/result.hpp"

using IrqHandler = void (*)(Frame &f);
void register_irq(u8 vector, IrqHandler h);

// Vectors for devices' interrupts (MSI/MSI-X routed by the IOMMU's interrupt
// remapping table), allocated at run time from vec::DEVICE_FIRST..DEVICE_LAST.
// trap() calls the handler with its context on whichever CPU the interrupt
// was sent to, with interrupts off, then sends the local APIC its EOI. A
// vector from 32 up that arrives with no handler (freed, or never allocated)
// is counted as stray and acknowledged, never fatal: irq_take_strays says so.
using DeviceIrqHandler = void (*)(void *ctx);
// Err::busy when every device vector is taken.
Result<u8> irq_vector_alloc(DeviceIrqHandler h, void *ctx);
// The handler is gone when this returns: no CPU is still inside it, and none
// calls it again. Free the interrupt's source (its IRTE) first; never call it
// from the vector's own handler.
void irq_vector_free(u8 vector);
// Stray interrupts since the last call, and the last stray vector.
u64 irq_take_strays(u8 &last_vector);

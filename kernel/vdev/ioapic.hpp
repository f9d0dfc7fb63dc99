// A guest's I/O APIC (82093AA-style, version 0x20 with the EOI register), 24
// pins. The guest programs it through IOREGSEL/IOWIN in its MMIO page; device
// models drive the pins with set_irq(); interrupt messages leave through the
// Deliver sink, EOIs of level-triggered vectors come back through eoi().
//
// set_irq() takes the logical state of a pin (true: asserted); the polarity
// bit is stored for the guest but not applied. Level semantics apply to fixed
// and lowest-priority entries only: NMI, INIT, SMI and ExtINT are always edge
// (as the datasheet specifies), so they never set remote IRR.
//
// No hardware, no globals. A default-constructed IoapicModel is at power-up
// state (every entry masked) with no sink: it delivers nothing until connect().
#pragma once

#include "kernel/lib/types.hpp"

class IoapicModel {
public:
    // One interrupt message: dest = entry bits 63:56, logical = destination
    // mode, delivery_mode = bits 10:8 (passed as programmed, reserved ones
    // too), level = level-triggered (remote IRR is set; an EOI must follow).
    // The sink must not call back into this IoapicModel.
    using Deliver = void (*)(void *ctx, u32 dest, bool logical, u8 vector, u8 delivery_mode, bool level);

    static constexpr u64 DEFAULT_BASE = 0xfec00000;
    static constexpr u32 PINS = 24;
    static constexpr u32 VERSION = (PINS - 1) << 16 | 0x20;
    static constexpr u32 REG_SEL = 0x00, REG_WIN = 0x10, REG_EOI = 0x40;   // MMIO offsets

    // redirection entry bits
    static constexpr u64 RTE_LOGICAL = 1u << 11, RTE_STATUS = 1u << 12, RTE_POLARITY = 1u << 13,
                         RTE_REMOTE_IRR = 1u << 14, RTE_LEVEL = 1u << 15, RTE_MASKED = 1u << 16;

    constexpr IoapicModel(Deliver d = nullptr, void *ctx = nullptr) : deliver_(d), ctx_(ctx)
    {
        for (auto &e : rte_) e = RTE_MASKED;
    }

    void connect(Deliver d, void *ctx) { deliver_ = d; ctx_ = ctx; }
    // Power-up registers (every entry masked, ID 0). Pin states are inputs: kept.
    void reset();

    // 32-bit accesses at `offset` of the MMIO page: IOREGSEL (0x00), IOWIN
    // (0x10), EOI (0x40, write-only); anything else reads 0, writes ignored.
    u32  mmio_read(u32 offset);
    void mmio_write(u32 offset, u32 value);

    // Drive pin `pin` (out-of-range pins are ignored). Edge: a rising edge of
    // an unmasked pin delivers once (edges while masked are lost). Level:
    // delivers while asserted, unmasked and remote IRR clear, setting it.
    void set_irq(u32 pin, bool level);
    // A local APIC's EOI broadcast: clears remote IRR of the level entries with
    // this vector and delivers again those still asserted.
    void eoi(u8 vector);

    u64 entry(u32 pin) const { return pin < PINS ? rte_[pin] : 0; }
    bool asserted(u32 pin) const { return pin < PINS && (lines_ >> pin & 1); }

private:
    static bool level_mode(u64 e) { return (e & RTE_LEVEL) && ((e >> 8) & 7) <= 1; }

    u32  read_reg(u32 idx) const;
    void write_reg(u32 idx, u32 v);
    void service(u32 pin);

    Deliver deliver_ = nullptr;
    void *ctx_ = nullptr;
    u64 rte_[PINS] = {};
    u32 lines_ = 0;             // asserted pins
    u8  sel_ = 0, id_ = 0;
};

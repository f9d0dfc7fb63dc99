#include "kernel/vdev/ioapic.hpp"

namespace {
constexpr u64 RTE_LO_RW = 0x1afff;      // vector, delivery mode, dest mode, polarity, trigger, mask
constexpr u64 RTE_HI_RW = 0xff000000;   // destination (bits 63:56)
}

void IoapicModel::reset()
{
    for (auto &e : rte_) e = RTE_MASKED;
    sel_ = id_ = 0;
}

u32 IoapicModel::mmio_read(u32 offset)
{
    switch (offset) {
    case REG_SEL: return sel_;
    case REG_WIN: return read_reg(sel_);
    default: return 0;
    }
}

void IoapicModel::mmio_write(u32 offset, u32 value)
{
    switch (offset) {
    case REG_SEL: sel_ = u8(value); break;
    case REG_WIN: write_reg(sel_, value); break;
    case REG_EOI: eoi(u8(value)); break;
    default: break;
    }
}

u32 IoapicModel::read_reg(u32 idx) const
{
    switch (idx) {
    case 0: case 2: return u32(id_) << 24;     // ID, arbitration ID
    case 1: return VERSION;
    }
    if (idx < 0x10 || idx >= 0x10 + 2 * PINS) return 0;
    const u64 e = rte_[(idx - 0x10) / 2];
    return idx & 1 ? u32(e >> 32) : u32(e);
}

void IoapicModel::write_reg(u32 idx, u32 v)
{
    if (idx == 0) id_ = (v >> 24) & 0xf;
    if (idx < 0x10 || idx >= 0x10 + 2 * PINS) return;           // version, arbitration: read-only

    const u32 pin = (idx - 0x10) / 2;
    u64 &e = rte_[pin];
    if (idx & 1) {
        e = (e & ~(RTE_HI_RW << 32)) | (u64(v) & RTE_HI_RW) << 32;
        return;
    }
    e = (e & ~RTE_LO_RW) | (v & RTE_LO_RW);
    if (!level_mode(e)) e &= ~RTE_REMOTE_IRR;
    else if (lines_ >> pin & 1) service(pin);                   // e.g. unmasking an asserted level pin
}

void IoapicModel::service(u32 pin)
{
    u64 &e = rte_[pin];
    if (e & RTE_MASKED) return;
    const bool level = level_mode(e);
    if (level) {
        if (e & RTE_REMOTE_IRR) return;
        e |= RTE_REMOTE_IRR;
    }
    if (deliver_) deliver_(ctx_, u32(e >> 56), e & RTE_LOGICAL, u8(e), u8((e >> 8) & 7), level);
}

void IoapicModel::set_irq(u32 pin, bool level)
{
    if (pin >= PINS) return;
    const u32 bit = 1u << pin;
    const bool was = lines_ & bit;
    if (!level) {
        lines_ &= ~bit;
        return;
    }
    lines_ |= bit;
    if (level_mode(rte_[pin]) || !was) service(pin);
}

void IoapicModel::eoi(u8 vector)
{
    for (u32 pin = 0; pin < PINS; pin++) {
        u64 &e = rte_[pin];
        if (!(e & RTE_REMOTE_IRR) || u8(e) != vector) continue;
        e &= ~RTE_REMOTE_IRR;
        if (lines_ >> pin & 1) service(pin);
    }
}

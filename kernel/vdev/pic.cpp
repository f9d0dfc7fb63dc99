#include "kernel/vdev/pic.hpp"

PicModel::PicModel()
{
    chip_[0].base = 0x08;
    chip_[0].cascade = 1u << 2;   // the slave on IR2
    chip_[1].base = 0x70;
    chip_[1].cascade = 2;         // its ID on the master
}

void PicModel::command(Chip &c, u8 v)
{
    if (v & 0x10) {               // ICW1: start the initialisation sequence
        c.need_icw4 = v & 0x01;
        c.single = v & 0x02;
        c.level = v & 0x08;
        c.imr = 0;                // as the 8259A: the mask is cleared,
        c.isr = 0;                // IR7 gets priority 7, special mask mode is reset,
        c.special_mask = false;
        c.read_isr = false;       // and status reads return IRR
        c.poll = false;
        c.auto_eoi = false;
        c.step = 2;
        return;
    }
    if (v & 0x08) {               // OCW3
        if (v & 0x04) c.poll = true;
        if (v & 0x02) c.read_isr = v & 0x01;
        if (v & 0x40) c.special_mask = v & 0x20;
        return;
    }
    // OCW2: EOI commands (rotation changes priorities, and nothing is ever in service).
    const u8 cmd = v >> 5;
    if (cmd == 1 || cmd == 5) c.isr &= u8(c.isr - 1);          // non-specific EOI: the highest in service
    else if (cmd == 3 || cmd == 7) c.isr &= u8(~(1u << (v & 7)));   // specific EOI
}

void PicModel::data(Chip &c, u8 v)
{
    switch (c.step) {
    case 2:                       // ICW2: the vector base (low 3 bits are the IR number)
        c.base = v & 0xf8;
        c.step = c.single ? (c.need_icw4 ? 4 : 0) : 3;
        return;
    case 3:                       // ICW3: cascade wiring
        c.cascade = v;
        c.step = c.need_icw4 ? 4 : 0;
        return;
    case 4:                       // ICW4: 8086 mode, auto-EOI
        c.auto_eoi = v & 0x02;
        c.step = 0;
        return;
    default:                      // OCW1: the interrupt mask
        c.imr = v;
        return;
    }
}

bool PicModel::io(u16 port, u8 size, bool in, u32 &value)
{
    if (port == ELCR || port == ELCR + 1) {
        Chip &c = chip_[port - ELCR];
        if (in) value = c.elcr;
        else c.elcr = u8(value) & ELCR_MASK[port - ELCR];
        return true;
    }
    if (port != MASTER && port != MASTER + 1 && port != SLAVE && port != SLAVE + 1) return false;
    Chip &c = chip_[port >= SLAVE];
    const bool data_port = port & 1;
    if (in) {
        if (data_port) value = c.imr;
        else if (c.poll) c.poll = false, value = 0;   // poll: bit 7 clear, no interrupt
        else value = c.read_isr ? c.isr : c.irr;
    } else if (data_port) {
        data(c, u8(value));
    } else {
        command(c, u8(value));
    }
    (void)size;
    return true;
}

// The PC's two 8259A interrupt controllers (master at 0x20-0x21, slave at
// 0xA0-0xA1) and their edge/level control registers (ELCR, 0x4D0-0x4D1), as
// far as a guest probes them: the ICW1-ICW4 initialisation sequence is
// accepted (vector bases, cascade, auto-EOI kept), the IMR reads back what was
// written (OCW1), OCW3 selects IRR or ISR for a read of the command port (and
// a poll command reads "no interrupt"), EOIs (OCW2) are accepted.
//
// Keel delivers nothing through it: every interrupt a guest gets comes from
// its local APICs and the IOAPIC, so IRR and ISR always read 0 whatever the
// masks say. A guest that unmasks the 8259s and waits for IRQ 0 waits forever,
// as on a PC whose PIT is routed through the IOAPIC only. At start both chips
// are initialised as a BIOS leaves them (vector bases 0x08 and 0x70, master
// cascade on IRQ 2) with every line masked.
#pragma once

#include "kernel/vdev/guest_platform.hpp"

class PicModel final : public IoDevice {
public:
    static constexpr u16 MASTER = 0x20, SLAVE = 0xa0, ELCR = 0x4d0;
    // ELCR bits that exist: IRQ 0, 1, 2 (master) and 8, 13 (slave) are edge-only.
    static constexpr u8 ELCR_MASK[2] = {0xf8, 0xde};

    PicModel();
    bool io(u16 port, u8 size, bool in, u32 &value) override;

    // For tests.
    u8 imr(unsigned chip) const { return chip_[chip & 1].imr; }
    u8 vector_base(unsigned chip) const { return chip_[chip & 1].base; }
    bool auto_eoi(unsigned chip) const { return chip_[chip & 1].auto_eoi; }
    u8 elcr(unsigned chip) const { return chip_[chip & 1].elcr; }
    bool initialising(unsigned chip) const { return chip_[chip & 1].step != 0; }

private:
    struct Chip {
        u8 imr = 0xff;
        u8 irr = 0, isr = 0;          // nothing is ever raised: both stay 0
        u8 base = 0;                  // ICW2: vector of IR0
        u8 cascade = 0;               // ICW3
        u8 step = 0;                  // 0: initialised; 2, 3, 4: the ICW expected next
        bool need_icw4 = false, single = false, level = false;
        bool auto_eoi = false;
        bool read_isr = false;        // OCW3 RR/RIS: a command-port read returns ISR (else IRR)
        bool poll = false;            // OCW3 P: the next command-port read is the poll byte
        bool special_mask = false;
        u8 elcr = 0;
    };

    void command(Chip &c, u8 v);
    void data(Chip &c, u8 v);

    Chip chip_[2];
};

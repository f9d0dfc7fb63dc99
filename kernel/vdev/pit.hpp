// The PC's 8254 interval timer and port 0x61, as much as guests use to
// calibrate their TSC: counters that count down at 1.193182 MHz derived from
// the guest TSC (mode 0 OUT for channel 2, latch and lo/hi byte access).
// Channel 0 counts but raises no IRQ 0 (hardware-reduced ACPI: Linux runs no PIT timer).
#pragma once

#include "kernel/vdev/guest_platform.hpp"

class PitModel final : public IoDevice {
public:
    static constexpr u64 PIT_HZ = 1193182;

    // tsc_hz: the guest TSC rate; now() reads the guest TSC.
    PitModel(u64 tsc_hz, u64 (*now)(void *), void *ctx) : tsc_hz_(tsc_hz ? tsc_hz : 1), now_(now), ctx_(ctx) {}
    bool io(u16 port, u8 size, bool in, u32 &value) override;

    // For tests: the state at guest TSC `t`.
    u16 count_at(unsigned ch, u64 t) const;
    bool out_at(unsigned ch, u64 t) const;

private:
    struct Channel {
        u16 reload = 0;
        u8 access = 3;        // 1 lsb, 2 msb, 3 lsb then msb
        u8 mode = 0;
        bool loaded = false;  // a full count was written: counting since `start`
        bool write_hi = false, read_hi = false;
        u8 low = 0;           // the low byte of a count being written
        bool latched = false;
        u16 latch = 0;
        u64 start = 0;
    };

    u64 ticks(const Channel &c, u64 t) const;
    u8 read(Channel &c, u64 t);
    void write(Channel &c, u8 v, u64 t);

    u64 tsc_hz_;
    u64 (*now_)(void *);
    void *ctx_;
    Channel ch_[3];
    u8 port61_ = 0;           // bit 0: gate of channel 2, bit 1: speaker
};

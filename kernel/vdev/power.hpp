// The guest's ACPI power registers (the FADT points at them): the sleep
// control/status registers of a hardware-reduced platform (S5 ends the guest),
// the reset register (the guest reboots), and the ACPI PM timer: a 24-bit
// counter at 3.579545 MHz derived from the guest TSC (FADT TMR_VAL_EXT = 0),
// read as a dword at PM_TMR.
#pragma once

#include "kernel/vdev/guest_platform.hpp"

class PowerModel final : public IoDevice {
public:
    static constexpr u16 SLEEP_CTL = 0x600, SLEEP_STS = 0x601, RESET = 0x602;
    static constexpr u16 PM_TMR = 0x608;          // 4 ports: PM_TMR .. PM_TMR + 3
    static constexpr u8 RESET_VALUE = 0x06, S5_TYP = 5;
    static constexpr u64 PM_TMR_HZ = 3579545;
    static constexpr u32 PM_TMR_MASK = 0xffffff;   // 24 bits

    // tsc_hz: the guest TSC rate; now() reads the guest TSC.
    PowerModel(GuestPlatform &p, u64 tsc_hz, u64 (*now)(void *), void *ctx)
        : p_(p), tsc_hz_(tsc_hz ? tsc_hz : 1), now_(now), ctx_(ctx)
    {
    }
    bool io(u16 port, u8 size, bool in, u32 &value) override;

    // The PM timer at guest TSC t.
    u32 pm_timer_at(u64 t) const;

private:
    GuestPlatform &p_;
    u64 tsc_hz_;
    u64 (*now_)(void *);
    void *ctx_;
};

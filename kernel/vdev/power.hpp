// A hardware-reduced ACPI platform's power registers (the FADT points at them):
// the sleep control/status registers (S5 ends the guest) and the reset register
// (the guest reboots).
#pragma once

#include "kernel/vdev/guest_platform.hpp"

class PowerModel final : public IoDevice {
public:
    static constexpr u16 SLEEP_CTL = 0x600, SLEEP_STS = 0x601, RESET = 0x602;
    static constexpr u8 RESET_VALUE = 0x06, S5_TYP = 5;

    explicit PowerModel(GuestPlatform &p) : p_(p) {}
    bool io(u16 port, u8 size, bool in, u32 &value) override;

private:
    GuestPlatform &p_;
};

// The seam between a portable driver (drivers/nvme, drivers/vtd) and the
// machine: a device's register window and the clock its bounded waits run on.
// In the kernel, arch/x86_64/device_io.hpp (an uncached MMIO mapping, the
// TSC); in the host unit tests, a simulated device and a clock that moves only
// when the driver pauses (tests/unit/drivers/fake_clock.hpp).
#pragma once

#include "kernel/lib/types.hpp"

namespace dev {

class Regs {
public:
    virtual u32 read32(u32 off) = 0;
    virtual void write32(u32 off, u32 v) = 0;
    virtual u64 read64(u32 off) = 0;
    virtual void write64(u32 off, u64 v) = 0;

protected:
    ~Regs() = default;
};

// A monotonic microsecond count, and pause() between two polls of a bounded wait.
class Clock {
public:
    virtual u64 now_us() = 0;
    virtual void pause() = 0;

protected:
    ~Clock() = default;
};

} // namespace dev

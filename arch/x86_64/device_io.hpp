// The kernel's side of kernel/lib/device_io.hpp: a device's registers through
// an uncached MMIO mapping (mm::map_mmio), and the TSC as the drivers' clock.
#pragma once

#include "arch/x86_64/insn.hpp"
#include "arch/x86_64/time.hpp"
#include "kernel/lib/device_io.hpp"

namespace x86 {

class MmioRegs final : public dev::Regs {
public:
    volatile u8 *base = nullptr;
    // 64-bit registers as two dword accesses, low dword first (NVMe 1.4, 3.1
    // allows controllers that take nothing wider); else one qword access.
    bool split64 = false;

    u32 read32(u32 off) override { return *reinterpret_cast<volatile u32 *>(base + off); }
    void write32(u32 off, u32 v) override { *reinterpret_cast<volatile u32 *>(base + off) = v; }
    u64 read64(u32 off) override
    {
        if (split64) return u64(read32(off)) | u64(read32(off + 4)) << 32;
        return *reinterpret_cast<volatile u64 *>(base + off);
    }
    void write64(u32 off, u64 v) override
    {
        if (split64) {
            write32(off, u32(v));
            write32(off + 4, u32(v >> 32));
        } else {
            *reinterpret_cast<volatile u64 *>(base + off) = v;
        }
    }
};

class TscClock final : public dev::Clock {
public:
    u64 now_us() override { return rdtsc() / max<u64>(time::tsc_hz() / 1000000, 1); }
    void pause() override { x86::pause(); }
};

} // namespace x86

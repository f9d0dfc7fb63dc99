#include "arch/x86_64/time.hpp"

#include "arch/x86_64/insn.hpp"
#include "kernel/console.hpp"

namespace time {
namespace {

u64 tsc_hz_;

// Count TSC ticks over 50 ms of PIT channel 2 (mode 0, gate on, speaker off).
// Returns 0 if the PIT never fires (no PIT, or a broken one).
u64 measure_with_pit()
{
    constexpr u32 PIT_HZ = 1193182;
    constexpr u32 count = PIT_HZ / 20;
    x86::outb(0x61, u8((x86::inb(0x61) & ~0x02) | 0x01));
    x86::outb(0x43, 0xb0);                 // channel 2, lo/hi byte, mode 0
    x86::outb(0x42, u8(count));
    x86::outb(0x42, u8(count >> 8));
    u64 t0 = x86::rdtsc();
    for (u64 i = 0; i < 200000000; i++) {
        if (x86::inb(0x61) & 0x20) return (x86::rdtsc() - t0) * 20;
    }
    return 0;
}

u64 from_cpuid()
{
    if (x86::cpuid(0).a >= 0x15) {
        auto l = x86::cpuid(0x15);
        if (l.a && l.b && l.c) return u64(l.c) * l.b / l.a;
    }
    if (x86::cpuid(0).a >= 0x16) {
        auto l = x86::cpuid(0x16);
        if (l.a & 0xffff) return u64(l.a & 0xffff) * 1000000;
    }
    return 0;
}

} // namespace

const char *calibrate_tsc()
{
    u64 cpuid = from_cpuid();
    u64 pit = measure_with_pit();
    // CPUID is exact on hardware; under an emulator it may describe a CPU the TSC does not follow.
    // Trust it only when the PIT agrees within 2 %.
    if (cpuid && (!pit || (cpuid > pit ? cpuid - pit : pit - cpuid) * 50 < pit)) {
        tsc_hz_ = cpuid;
        return "cpuid";
    }
    if (pit) {
        tsc_hz_ = pit;
        return "pit";
    }
    tsc_hz_ = 1000000000;   // last resort: assume 1 GHz, and say so
    log_warn("TSC calibration failed: no usable CPUID leaf and no PIT; assuming 1 GHz");
    return "assumed";
}

u64 tsc_hz() { return tsc_hz_; }

void delay_us(u64 us)
{
    u64 end = x86::rdtsc() + tsc_hz_ / 1000000 * us;
    while (x86::rdtsc() < end) x86::pause();
}

} // namespace time

#include "arch/x86_64/time.hpp"

#include "arch/x86_64/insn.hpp"
#include "kernel/lib/console.hpp"

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

// Count TSC ticks over 50 ms of the ACPI PM timer (3.579545 MHz, 24 or 32 bits). 0 if it does not run.
u64 measure_with_pm_timer(u16 port, bool wide)
{
    if (!port) return 0;
    constexpr u32 PM_HZ = 3579545, ticks = PM_HZ / 20;
    const u32 mask = wide ? 0xffffffff : 0xffffff;
    u32 start = x86::inl(port) & mask;
    u64 t0 = x86::rdtsc();
    for (u64 i = 0; i < 200000000; i++) {
        if (((x86::inl(port) - start) & mask) >= ticks) return (x86::rdtsc() - t0) * 20;
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

const char *calibrate_tsc(u16 pm_timer_port, bool pm_timer_32bit, bool use_pit)
{
    u64 cpuid = from_cpuid();
    const char *timer = "pit";
    u64 pit = use_pit ? measure_with_pit() : 0;
    if (!pit) {
        pit = measure_with_pm_timer(pm_timer_port, pm_timer_32bit);
        timer = "acpi-pm";
    }
    // CPUID is exact on hardware; under an emulator it may describe a CPU the TSC does not follow.
    // Trust it only when the PIT agrees within 2 %.
    if (cpuid && (!pit || (cpuid > pit ? cpuid - pit : pit - cpuid) * 50 < pit)) {
        tsc_hz_ = cpuid;
        return "cpuid";
    }
    if (pit) {
        tsc_hz_ = pit;
        return timer;
    }
    tsc_hz_ = 1000000000;   // last resort: assume 1 GHz, and say so
    log_warn("TSC calibration failed: no usable CPUID leaf, PIT or ACPI PM timer; assuming 1 GHz");
    return "assumed";
}

u64 tsc_hz() { return tsc_hz_; }

void delay_us(u64 us)
{
    u64 end = x86::rdtsc() + tsc_hz_ / 1000000 * us;
    while (x86::rdtsc() < end) x86::pause();
}

} // namespace time

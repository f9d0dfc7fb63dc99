// The TSC's rate, for guests that wait in milliseconds (bounded waits, periods).
//
// tsc_khz() tries, in order:
//   "cpuid-0x40000010"  a hypervisor's timing leaf (Keel's: EAX = TSC kHz), when CPUID.1:ECX
//                       has the hypervisor bit and 0x40000000.EAX reaches 0x40000010;
//   "cpuid-0x15"        the TSC/crystal ratio with the crystal's frequency (ECX != 0);
//   "pit"               measured against PIT channel 2 in mode 0 for ~50 ms (a PC, bare QEMU,
//                       Keel's PIT model: tests/guests/platform.cpp checks channel 2 under Keel).
// 0 when every source fails; the caller decides what to do then (tick.cpp keeps its own copy of
// the PIT measurement, with its own source rules).
#pragma once

#include "lib/guest.hpp"

inline u64 tsc_khz_measured_by_pit(u32 ms = 50)
{
    const u32 count = 1193182u * ms / 1000;       // < 65536 for ms <= 54
    outb(0x61, u8((inb(0x61) & ~0x02) | 0x01));   // gate on, speaker off
    outb(0x43, 0xb0);                             // channel 2, lobyte/hibyte, mode 0
    outb(0x42, u8(count));
    outb(0x42, u8(count >> 8));
    const u64 t0 = rdtsc();
    u32 i = 0;
    for (; i < 200000000 && !(inb(0x61) & 0x20); ++i) {}
    if (i == 200000000) return 0;                 // OUT2 never rose: no PIT
    return (rdtsc() - t0) / ms;
}

inline u64 tsc_khz(const char** source = nullptr)
{
    const char* unused;
    const char** src = source ? source : &unused;
    if (cpuid(1).ecx >> 31 & 1) {
        if (cpuid(0x40000000).eax >= 0x40000010) {
            const u32 khz = cpuid(0x40000010).eax;
            if (khz) {
                *src = "cpuid-0x40000010";
                return khz;
            }
        }
    }
    if (cpuid(0).eax >= 0x15) {
        const CpuidResult t = cpuid(0x15);
        if (t.eax && t.ebx && t.ecx) {
            *src = "cpuid-0x15";
            return u64(t.ecx) * t.ebx / t.eax / 1000;
        }
    }
    *src = "pit";
    return tsc_khz_measured_by_pit();
}

// A deadline `ms` milliseconds from now on a TSC of `khz` kHz.
struct Deadline {
    u64 end;
    Deadline(u64 khz, u64 ms) : end(rdtsc() + khz * ms) {}
    bool passed() const { return rdtsc() >= end; }
};

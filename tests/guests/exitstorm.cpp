// exitstorm: the cost of an exit. Executes CPUID (leaf 0) `count=N` times
// (default 100000), then `in al, 0x80` N times, then a write to the local
// APIC's EOI register (MMIO, nothing in service) N times, each between two RDTSCs, and
// prints the mean TSC cycles per instruction (integer division; the RDTSC pair
// overhead, measured the same way with nothing between, is reported alone and
// not subtracted):
//     exitstorm: rdtsc overhead=<n>
//     exitstorm: cpuid cycles/exit=<n> pio cycles/exit=<n> mmio cycles/exit=<n>
// Exits 0 (1 if count=0).
#include "lib/guest.hpp"

extern "C" const char guest_name[] = "exitstorm";

namespace {

inline u64 tsc_fenced() {
    u32 lo, hi;
    asm volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi) : : "memory");
    return (u64(hi) << 32) | lo;
}

}  // namespace

u32 guest_main() {
    u64 n64 = cmdline_u64("count", 100000);
    if (n64 == 0 || n64 > 0xFFFFFFFFull) {
        printf("exitstorm: FAIL count=%llu must be in 1..2^32-1\n", n64);
        return 1;
    }
    u32 n = u32(n64);

    u64 empty = 0;
    for (u32 i = 0; i < n; ++i) {
        u64 t0 = tsc_fenced();
        u64 t1 = tsc_fenced();
        empty += t1 - t0;
    }

    u64 cpuid_total = 0;
    for (u32 i = 0; i < n; ++i) {
        u32 a = 0, b, c = 0, d;
        u64 t0 = tsc_fenced();
        asm volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d) : : "memory");
        u64 t1 = tsc_fenced();
        cpuid_total += t1 - t0;
    }

    u64 pio_total = 0;
    for (u32 i = 0; i < n; ++i) {
        u8 v;
        u64 t0 = tsc_fenced();
        asm volatile("inb $0x80, %0" : "=a"(v) : : "memory");
        u64 t1 = tsc_fenced();
        pio_total += t1 - t0;
    }

    u64 mmio_total = 0;
    volatile u32* const eoi = reinterpret_cast<volatile u32*>(0xfee000b0);
    for (u32 i = 0; i < n; ++i) {
        u64 t0 = tsc_fenced();
        *eoi = 0;
        u64 t1 = tsc_fenced();
        mmio_total += t1 - t0;
    }

    printf("exitstorm: count=%u rdtsc overhead=%llu\n", n, empty / n);
    printf("exitstorm: cpuid cycles/exit=%llu pio cycles/exit=%llu mmio cycles/exit=%llu\n", cpuid_total / n,
           pio_total / n, mmio_total / n);
    return 0;
}

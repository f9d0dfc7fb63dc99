// spin: a pure compute loop (no exits inside it) with a checksum the host can
// recompute. For `iterations=N` (default 50000000, N < 2^32), all mod 2^32:
//     state = 1, sum = 0
//     repeat N times:  state = state * 1664525 + 1013904223
//                      sum   = sum * 31 + state
//     exit code = (sum & 0xff) | 0x100
// tests/guests/spin_expected.py N prints the same exit code (it jumps the
// recurrence in O(log N)). With `cpuid`, every iteration also executes CPUID
// (leaf 0): a hog whose every step is an exit, all of them handled by the
// hypervisor without its scheduler (same checksum).
// Prints "spin: iterations=N checksum=0x... expected exit code=N" (decimal, as
// Keel prints exit codes).
#include "lib/guest.hpp"

extern "C" const char guest_name[] = "spin";

u32 guest_main() {
    u64 n64 = cmdline_u64("iterations", 50000000);
    if (n64 > 0xFFFFFFFFull) {
        printf("spin: iterations=%llu is too large (N < 2^32); using 4294967295\n", n64);
        n64 = 0xFFFFFFFFull;
    }
    u32 n = u32(n64);
    const bool exits = cmdline_flag("cpuid");
    u32 state = 1, sum = 0;
    u64 t0 = rdtsc();
    for (u32 i = 0; i < n; ++i) {
        state = state * 1664525u + 1013904223u;
        sum = sum * 31u + state;
        asm volatile("" : "+r"(state), "+r"(sum));   // keep the loop a loop
        if (exits) (void)cpuid(0);
    }
    u64 cycles = rdtsc() - t0;
    u32 code = (sum & 0xff) | 0x100;
    printf("spin: iterations=%u tsc-cycles=%llu\n", n, cycles);
    printf("spin: iterations=%u checksum=0x%08x expected exit code=%u\n", n, sum, code);
    return code;
}

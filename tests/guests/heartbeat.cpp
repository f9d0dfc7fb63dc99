// heartbeat: a guest for Keel's watchdog. Writes the heartbeat port (0x6f0,
// kernel/vdev/heartbeat.hpp) `beats=N` times, `spin=K` loop iterations apart
// (no timer needed), then goes silent: it loops forever without a beat, as a
// hung guest would. With beats=0 it beats forever (a busy guest for tests of
// the management console). Prints what it does.
//
// Reads the port first: Keel's heartbeat answers "KEEL" there when the guest
// has a watchdog (without one the port is unclaimed and reads all ones).
#include "lib/guest.hpp"

extern "C" const char guest_name[] = "heartbeat";

static void spin(u64 n)
{
    for (u64 i = 0; i < n; i++) asm volatile("pause");
}

u32 guest_main() {
    const u64 beats = cmdline_u64("beats", 100), k = cmdline_u64("spin", 100000);
    const u32 sig = inl(0x6f0);
    printf("heartbeat: port=0x%x (%s) beats=%llu spin=%llu\n", sig, sig == 0x4c45454b ? "KEEL" : "no watchdog", beats,
           k);
    for (u64 i = 0; beats == 0 || i < beats; i++) {
        outb(0x6f0, 1);
        spin(k);
    }
    printf("heartbeat: %llu beats sent; silent from now on\n", beats);
    for (;;) spin(1000000);
}

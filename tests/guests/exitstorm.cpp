// exitstorm: the cost of an exit. Executes CPUID (leaf 0) `count=N` times
// (default 100000), then `in al, 0x80` N times, then a write to the local
// APIC's EOI register (MMIO, nothing in service) N times, each between two RDTSCs, and
// prints the mean TSC cycles per instruction (integer division; the RDTSC pair
// overhead, measured the same way with nothing between, is reported alone and
// not subtracted):
//     exitstorm: rdtsc overhead=<n>
//     exitstorm: cpuid cycles/exit=<n> pio cycles/exit=<n> mmio cycles/exit=<n>
// With `ipi=K` (a guest of 2 vCPUs), then K IPIs between its vCPUs: vCPU 0 sends a
// fixed IPI to vCPU 1 (whose handler EOIs and answers with an IPI back) and
// waits for the answer in HLT; both ICR writes, both EOIs, both HLTs and the
// deliveries are in each round trip:
//     exitstorm: ipi send cycles/exit=<n> ipi round trip cycles=<n>
// (send: the ICR write alone, an exit that routes the IPI to the other vCPU).
// Exits 0 (1 if count=0, 2 if vCPU 1 does not start, 3 if an answer is lost).
#include "lib/guest.hpp"
#include "lib/smp.hpp"

extern "C" const char guest_name[] = "exitstorm";

namespace {

inline u64 tsc_fenced() {
    u32 lo, hi;
    asm volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi) : : "memory");
    return (u64(hi) << 32) | lo;
}

constexpr u32 V_PING = 0x40, V_PONG = 0x41;
volatile u32 pings, pongs;

struct [[gnu::packed]] Gate { u16 lo, sel; u8 zero, type; u16 hi; };
struct [[gnu::packed]] Idtr { u16 limit; u32 base; };
alignas(8) Gate idt[256];

}  // namespace

// vCPU 1 answers each ping with a pong; vCPU 0 counts the pongs. No delivery-status polling:
// every APIC access is one exit, the same in each round trip.
extern "C" void ping_handler() {
    pings = pings + 1;
    smp::lapic_write(smp::EOI, 0);
    smp::lapic_write(smp::ICR_LO, V_PONG);   // ICR_HI is 0 from reset: vCPU 0
}
extern "C" void pong_handler() {
    pongs = pongs + 1;
    smp::lapic_write(smp::EOI, 0);
}
asm(".globl ping_isr, pong_isr\n"
    "ping_isr:\n    pushal\n    cld\n    call ping_handler\n    popal\n    iret\n"
    "pong_isr:\n    pushal\n    cld\n    call pong_handler\n    popal\n    iret\n");
extern "C" void ping_isr();
extern "C" void pong_isr();

namespace {

[[noreturn]] void answerer() {
    smp::lapic_write(smp::SVR, 0x1ff);
    for (;;) asm volatile("sti; hlt; cli" ::: "memory");
}

// The IPI phase: 0, or the exit code of a failure.
u32 ipi_phase(u32 n) {
    Idtr old;
    asm volatile("sidt %0" : "=m"(old));
    const Gate* src = reinterpret_cast<const Gate*>(old.base);
    for (u32 v = 0; v < 32 && v * sizeof(Gate) < u32(old.limit) + 1; v++) idt[v] = src[v];
    auto gate = [](u32 h) { return Gate{u16(h), 0x08, 0, 0x8e, u16(h >> 16)}; };
    idt[V_PING] = gate(uptr(&ping_isr));
    idt[V_PONG] = gate(uptr(&pong_isr));
    Idtr d{sizeof(idt) - 1, uptr(idt)};
    asm volatile("lidt %0" : : "m"(d));
    smp::lapic_write(smp::SVR, 0x1ff);
    if (!smp::start_ap(1, answerer)) {
        printf("exitstorm: FAIL vCPU 1 did not start\n");
        return 2;
    }
    u64 send_total = 0, trip_total = 0;
    smp::lapic_write(smp::ICR_HI, 1u << 24);   // it stays: each send is one ICR_LO write, one exit
    for (u32 i = 0; i < n; ++i) {
        u64 t0 = tsc_fenced();
        smp::lapic_write(smp::ICR_LO, V_PING);
        u64 t1 = tsc_fenced();
        for (u32 w = 0; w < 1000 && pongs != i + 1; ++w) asm volatile("sti; hlt; cli" ::: "memory");
        u64 t2 = tsc_fenced();
        if (pongs != i + 1) {
            printf("exitstorm: FAIL ping %u: %u pongs\n", i + 1, pongs);
            return 3;
        }
        send_total += t1 - t0;
        trip_total += t2 - t0;
    }
    printf("exitstorm: ipi send cycles/exit=%llu ipi round trip cycles=%llu\n", send_total / n, trip_total / n);
    return 0;
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
    if (const u64 k = cmdline_u64("ipi", 0); k > 0 && k < 0xffffffffull) return ipi_phase(u32(k));
    return 0;
}

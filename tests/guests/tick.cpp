// tick: timer isolation. The local APIC timer (xAPIC MMIO at 0xFEE00000),
// periodic, divide by 1, on this guest's own vector; the guest sits in
// `sti; hlt; cli` for duration_ms (measured by the TSC) and counts its ticks.
// With `busy` it waits with interrupts on in a loop of CPUID instead (exits the
// hypervisor handles without its scheduler: the ticks must come all the same).
// Another guest (tick on another vector, or spin) shares the physical CPU: each
// guest must still get (nearly) all of its own ticks, and nobody else's.
//
// cmdline: vector=0xNN (default 0x40, 0x20..0xfe), period_us=N (default 1000),
// duration_ms=N (default 300); for experiments when no CPUID leaf gives the TSC
// rate: tsc_khz=N (take it from here), pit (measure it with PIT channel 2: bare
// runs only, Keel's PIT model does not support this).
//
// Rates: CPUID 0x40000010 (the hypervisor's timing leaf, when CPUID
// 0x40000000.EAX >= 0x40000010): EAX = TSC kHz, EBX = local APIC timer kHz.
// Without it: the TSC from CPUID 0x15 (ECX * EBX / EAX) and the APIC timer
// measured against the TSC; without 0x15 either, check 1 fails (unless `pit`).
//
// Only this guest's vector has a handler of its own; every other vector 0x20..0xff
// lands in a catch-all that records "foreign vector N" (0xff, the spurious
// vector, is counted apart). Exceptions (0..0x1f) go to the runtime's report.
//
// Checks: 1 TSC rate known, 2 APIC timer rate known, 3 ticks >= 90% of
// duration/period, 4 ticks <= 110% + 2 (the rates are right), 5 no foreign
// vector. Last line "tick: PASS ticks=N expected=M" (or "tick: FAIL ...").
// Exit code 0, or the first failed check.
#include "lib/guest.hpp"
#include "lib/idt.hpp"

extern "C" const char guest_name[] = "tick";

namespace {

constexpr u32 APIC = 0xfee00000;
enum : u32 { EOI = 0xb0, SVR = 0xf0, LVT_TIMER = 0x320, INITIAL = 0x380, CURRENT = 0x390, DIVIDE = 0x3e0 };
constexpr u32 MASKED = 1u << 16, PERIODIC = 1u << 17;

u32 apic_read(u32 reg) {
    u32 v;
    asm volatile("movl (%1), %0" : "=r"(v) : "r"(APIC + reg) : "memory");
    return v;
}
void apic_write(u32 reg, u32 v) { asm volatile("movl %0, (%1)" : : "r"(v), "r"(APIC + reg) : "memory"); }

// TSC kHz from PIT channel 2 (mode 0, ~50 ms): only for bare runs.
u64 pit_tsc_khz() {
    constexpr u32 ms = 50, count = 1193182 * ms / 1000;
    outb(0x61, u8((inb(0x61) & ~0x02) | 0x01));   // gate on, speaker off
    outb(0x43, 0xb0);                             // channel 2, lobyte/hibyte, mode 0
    outb(0x42, u8(count));
    outb(0x42, u8(count >> 8));
    const u64 t0 = rdtsc();
    for (u32 i = 0; i < 100000000 && !(inb(0x61) & 0x20); ++i) {}
    return (rdtsc() - t0) / ms;
}

} // namespace

volatile u32 ticks;

extern "C" void tick_handler() {
    ticks = ticks + 1;
    apic_write(EOI, 0);
}

// The timer's own handler (lib/idt catches the other vectors).
asm(".globl tick_isr\n"
    "tick_isr:\n"
    "    pushal\n"
    "    cld\n"
    "    call tick_handler\n"
    "    popal\n"
    "    iret\n");
extern "C" void tick_isr();

u32 guest_main() {
    const u32 vector = u32(cmdline_u64("vector", 0x40));
    const u32 period_us = u32(cmdline_u64("period_us", 1000));
    const u32 duration_ms = u32(cmdline_u64("duration_ms", 300));
    if (vector < 0x20 || vector > 0xfe || period_us == 0 || duration_ms == 0) {
        printf("tick: FAIL bad cmdline: vector=0x%x period_us=%u duration_ms=%u\n", vector, period_us, duration_ms);
        return 1;
    }
    Checks c;

    // Rates.
    u64 tsc_khz = 0, apic_khz = 0;
    const char* source = "none";
    const CpuidResult hv = cpuid(0x40000000);
    const bool hv_present = (cpuid(1).ecx >> 31) & 1;
    if (hv_present && hv.eax >= 0x40000010 && hv.eax < 0x50000000) {
        const CpuidResult t = cpuid(0x40000010);
        tsc_khz = t.eax;
        apic_khz = t.ebx;
        source = "cpuid 0x40000010";
    }
    if (!tsc_khz && cpuid(0).eax >= 0x15) {
        const CpuidResult t = cpuid(0x15);
        if (t.eax && t.ebx && t.ecx) {
            tsc_khz = u64(t.ecx) * t.ebx / t.eax / 1000;
            source = "cpuid 0x15";
        }
    }
    if (!tsc_khz && cmdline_u64("tsc_khz", 0)) {
        tsc_khz = cmdline_u64("tsc_khz", 0);
        source = "the command line";
    }
    if (!tsc_khz && cmdline_flag("pit")) {
        tsc_khz = pit_tsc_khz();
        source = "pit";
    }
    printf("tick: vector=0x%x period_us=%u duration_ms=%u hypervisor leaves up to 0x%x\n", vector, period_us,
           duration_ms, hv_present ? hv.eax : 0);
    if (!c.check(tsc_khz != 0, "TSC rate known", "%llu kHz from %s", tsc_khz, source))
        return c.finish();

    // Our IDT: the runtime's exception gates, our vector, a catch-all for the others.
    idt_install();
    idt_set(vector, tick_isr);

    // A firmware may have left the 8259 PIC unmasked (bare QEMU: IRQ0 on vector 8): mask it.
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
    apic_write(SVR, 0x100 | 0xff);                  // enabled, spurious vector 0xff
    apic_write(DIVIDE, 0xb);                        // divide by 1
    if (!apic_khz) {
        // Measure the timer against the TSC over ~20 ms, masked.
        apic_write(LVT_TIMER, vector | MASKED);
        apic_write(INITIAL, 0xffffffff);
        const u32 c0 = apic_read(CURRENT);
        const u64 t0 = rdtsc();
        while (rdtsc() - t0 < tsc_khz * 20) {}
        const u32 c1 = apic_read(CURRENT);
        const u64 t1 = rdtsc();
        apic_write(INITIAL, 0);
        if (c1 < c0 && t1 > t0) apic_khz = u64(c0 - c1) * tsc_khz / (t1 - t0);
        printf("tick: APIC timer measured against the TSC: %llu kHz\n", apic_khz);
    }
    if (!c.check(apic_khz != 0, "APIC timer rate known", "%llu kHz", apic_khz))
        return c.finish();

    const u64 initial = apic_khz * period_us / 1000;
    const u32 expected = u32(u64(duration_ms) * 1000 / period_us);
    printf("tick: TSC %llu kHz, APIC timer %llu kHz: initial count %llu, %u ticks expected\n", tsc_khz, apic_khz,
           initial, expected);
    apic_write(LVT_TIMER, vector | PERIODIC);
    apic_write(INITIAL, u32(initial > 0xffffffffull ? 0xffffffffull : initial ? initial : 1));
    const u64 start = rdtsc(), span = tsc_khz * duration_ms;
    u32 wakeups = 0;
    if (cmdline_flag("busy")) {
        asm volatile("sti" ::: "memory");
        while (rdtsc() - start < span) (void)cpuid(0);
        asm volatile("cli" ::: "memory");
    } else {
        while (rdtsc() - start < span) {
            asm volatile("sti; hlt; cli" ::: "memory");
            ++wakeups;
        }
    }
    const u32 got = ticks;
    const u64 elapsed = rdtsc() - start;
    apic_write(INITIAL, 0);
    apic_write(LVT_TIMER, vector | MASKED);
    asm volatile("sti; nop; nop; cli" ::: "memory");   // let a last pending tick in, uncounted

    printf("tick: %u ticks, %u wake-ups in %llu us\n", got, wakeups, elapsed * 1000 / tsc_khz);
    c.check(got * 10 >= expected * 9, "ticks >= 90% of duration/period", "%u of %u", got, expected);
    c.check(got * 10 <= expected * 11 + 20, "ticks <= 110% of duration/period + 2", "%u of %u", got, expected);
    if (idt_foreign.count)
        c.check(false, "no foreign vector", "foreign vector 0x%x (%u foreign interrupts), %u spurious",
                idt_foreign.first, idt_foreign.count, idt_foreign.spurious);
    else
        c.check(true, "no foreign vector", "%u spurious", idt_foreign.spurious);
    if (c.failed == 0) printf("tick: PASS ticks=%u expected=%u\n", got, expected);
    else printf("tick: FAIL ticks=%u expected=%u (%u of %u checks failed, first #%u)\n", got, expected, c.failed,
                c.number, c.first_failed);
    return c.exit_code();
}

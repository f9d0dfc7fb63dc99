// timer: the local APIC timer wakes a halted vCPU. Programs the xAPIC at
// 0xFEE00000 (every access is emulated by Keel), takes `count=N` one-shot
// interrupts (default 5), each after `sti; hlt`, then N periodic ones, and
// checks that time really passed and that every interrupt arrived once.
// Exits 0 on success, else the number of the failed check.
#include "lib/guest.hpp"

extern "C" const char guest_name[] = "timer";

namespace {

constexpr u32 APIC = 0xfee00000, VECTOR = 0x40;
enum : u32 { EOI = 0xb0, SVR = 0xf0, LVT_TIMER = 0x320, INITIAL = 0x380, CURRENT = 0x390, DIVIDE = 0x3e0, ISR = 0x100 };

// Plain MOVs, as drivers use (readl/writel): Keel emulates MOV forms on device pages.
u32 apic_read(u32 reg)
{
    u32 v;
    asm volatile("movl (%1), %0" : "=r"(v) : "r"(APIC + reg) : "memory");
    return v;
}
void apic_write(u32 reg, u32 v) { asm volatile("movl %0, (%1)" : : "r"(v), "r"(APIC + reg) : "memory"); }

struct [[gnu::packed]] Gate { u16 lo, sel; u8 zero, type; u16 hi; };
struct [[gnu::packed]] Idtr { u16 limit; u32 base; };
alignas(8) Gate idt[256];

} // namespace

volatile u32 ticks;
volatile u32 in_service_seen;

extern "C" void timer_handler()
{
    ticks = ticks + 1;
    // The vector is in service while the handler runs.
    if (apic_read(ISR + (VECTOR / 32) * 0x10) & (1u << (VECTOR % 32))) in_service_seen = in_service_seen + 1;
    apic_write(EOI, 0);
}

asm(".globl timer_isr\n"
    "timer_isr:\n"
    "    pushal\n"
    "    cld\n"
    "    call timer_handler\n"
    "    popal\n"
    "    iret\n");
extern "C" void timer_isr();

u32 guest_main()
{
    const u32 n = u32(cmdline_u64("count", 5));
    // Keep the runtime's exception gates, add the timer's.
    Idtr old;
    asm volatile("sidt %0" : "=m"(old));
    const Gate *src = reinterpret_cast<const Gate *>(old.base);
    for (u32 v = 0; v < 256 && v * sizeof(Gate) < u32(old.limit) + 1; v++) idt[v] = src[v];
    const u32 h = u32(reinterpret_cast<uptr>(&timer_isr));
    idt[VECTOR] = Gate{u16(h), 0x08, 0, 0x8e, u16(h >> 16)};
    Idtr d{sizeof(idt) - 1, u32(reinterpret_cast<uptr>(idt))};
    asm volatile("lidt %0" : : "m"(d));

    u32 failed = 0;
    auto check = [&](u32 id, bool ok, const char *what) {
        printf("timer: [%u] %s %s\n", id, ok ? "ok  " : "FAIL", what);
        if (!ok && !failed) failed = id;
    };

    check(1, (apic_read(0x30) & 0xff) >= 0x10, "local APIC version is integrated (>= 0x10)");
    apic_write(SVR, 0x100 | 0xff);
    apic_write(DIVIDE, 0xb);                                   // divide by 1
    apic_write(LVT_TIMER, VECTOR);                             // one-shot
    const u64 start = rdtsc();
    for (u32 i = 0; i < n; i++) {
        apic_write(INITIAL, 1000000);
        asm volatile("sti; hlt; cli" ::: "memory");
    }
    const u64 oneshot = rdtsc() - start;
    check(2, ticks == n, "one-shot: one interrupt per arming, each waking hlt");
    check(3, in_service_seen == n, "the vector is in service in its handler");
    check(4, apic_read(CURRENT) == 0, "current count is 0 after a one-shot expired");

    apic_write(LVT_TIMER, VECTOR | 1u << 17);                  // periodic
    apic_write(INITIAL, 2000000);
    // An interrupt may also arrive right after an IRET re-enables interrupts: count at least n more.
    while (ticks < 2 * n) asm volatile("sti; hlt; cli" ::: "memory");
    apic_write(INITIAL, 0);                                    // stop
    check(5, ticks >= 2 * n, "periodic: interrupts keep coming until stopped");

    apic_write(LVT_TIMER, VECTOR | 1u << 16);                  // masked: no interrupt
    apic_write(INITIAL, 1000);
    // One interrupt already pending from the periodic timer may land as soon as interrupts are on:
    // STI holds them off for one more instruction, so count from after the NOP.
    asm volatile("sti; nop" ::: "memory");
    const u32 before = ticks;
    const u64 t = rdtsc();
    while (rdtsc() - t < 20000000) {}
    asm volatile("cli" ::: "memory");
    check(6, ticks == before, "a masked timer raises nothing");
    printf("timer: %u interrupts, %llu TSC ticks for %u one-shots\n", ticks, oneshot, n);
    check(7, oneshot > 0, "time passed");
    printf("timer: %s\n", failed ? "FAIL" : "PASS");
    return failed;
}

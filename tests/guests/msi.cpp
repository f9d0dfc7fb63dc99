// msi: a guest that owns QEMU's `edu` device (PCI 1234:11e8, PCI passthrough) and takes its
// interrupts by MSI: the guest programs its own MSI capability (under Keel the emulated one,
// which Keel translates onto the host's remapped MSI), and each interrupt edu raises must
// arrive exactly once, and never while the guest has MSI off (or the vector masked).
//
// edu (QEMU hw/misc/edu.c), BAR0 registers: 0x00 identification, 0x04 liveness (reads back
// the complement of what was written), 0x24 interrupt status, 0x60 interrupt raise (status |=
// value; an MSI when MSI is on), 0x64 interrupt acknowledge (status &= ~value).
//
// What it does (interrupts on only while it waits for one; every wait bounded by TSC time):
//   1. Finds edu on bus 0 by 0xCF8/0xCFC (devices 0-31, function 0), its BAR0 (programmed to
//      `bar=` only if it reads 0) and its MSI capability (ID 05h; 64-bit address required);
//      memory space and bus master on (an MSI is a write the device masters).
//   2. Checks edu answers (identification, liveness), installs an IDT with a handler on vector
//      V (0x51) and a catch-all counting any other vector, enables its local APIC.
//   3. MSI: address 0xFEE00000 | APIC ID << 12, data V, one message, enabled.
//   4. `count=` times (default 20): raise (0x60 = 1), wait up to `timeout_ms=` (default 5000)
//      for the handler (it reads the status, acknowledges it, EOIs), then `quiet_ms=` (default
//      50) more: exactly one interrupt each, the status 0 after.
//   5. MSI off (Message Control bit 0 clear): raise; `off_ms=` (default 300) without an
//      interrupt; the status still says 1 (the device did raise); acknowledged by hand.
//   6. MSI on again: raise: exactly one arrives.
//   7. With per-vector masking (Keel's emulated capability has it, bare edu has not): vector 0
//      masked, raise: none arrives, its Pending Bit is set; unmasked: it arrives, once, and the
//      Pending Bit clears.
//   8. Nothing arrived on any other vector.
// Exit code 0 and `msi: PASS (N checks)`, or the first failed check's number.
//
// cmdline: count=N timeout_ms=N quiet_ms=N off_ms=N bar=A (numbers decimal or 0x hex).
#include "lib/guest.hpp"
#include "lib/idt.hpp"
#include "lib/tsc.hpp"

extern "C" const char guest_name[] = "msi";

namespace {

constexpr u32 APIC = 0xfee00000;
enum : u32 { APIC_ID = 0x20, APIC_EOI = 0xb0, APIC_SVR = 0xf0 };
constexpr u32 V = 0x51;
enum : u32 { EDU_ID = 0x00, EDU_LIVE = 0x04, EDU_STATUS = 0x24, EDU_RAISE = 0x60, EDU_ACK = 0x64 };

u32 cfg_addr(u32 dev, u32 off) { return 0x80000000u | dev << 11 | (off & 0xfc); }
u32 cfg_rd32(u32 dev, u32 off) { outl(0xcf8, cfg_addr(dev, off)); return inl(0xcfc); }
void cfg_wr32(u32 dev, u32 off, u32 v) { outl(0xcf8, cfg_addr(dev, off)); outl(0xcfc, v); }
u16 cfg_rd16(u32 dev, u32 off) { outl(0xcf8, cfg_addr(dev, off)); return inw(u16(0xcfc + (off & 2))); }
void cfg_wr16(u32 dev, u32 off, u16 v) { outl(0xcf8, cfg_addr(dev, off)); outw(u16(0xcfc + (off & 2)), v); }

u32 bar;            // edu's BAR0 (paging is off: linear = physical)
u64 tsc_per_ms;

u32 edu_rd(u32 off) { return mmio_rd<u32>(bar + off); }
void edu_wr(u32 off, u32 v) { mmio_wr<u32>(bar + off, v); }


} // namespace

extern "C" {
volatile u32 hits, status_seen;

extern "C" void msi_handler() {
    status_seen = edu_rd(EDU_STATUS);
    edu_wr(EDU_ACK, status_seen);
    hits = hits + 1;
    mmio_wr<u32>(APIC + APIC_EOI, 0);
}
}

asm(".globl msi_isr\n"
    "msi_isr:\n    pushal\n    cld\n    call msi_handler\n    popal\n    iret\n");
extern "C" void msi_isr();

namespace {

// Interrupts on until `hits` passes `want` or `ms` go by; then `settle_ms` more (a duplicate
// would come then). The hits seen.
u32 wait_hits(u32 want, u32 ms, u32 settle_ms) {
    const u64 start = rdtsc();
    asm volatile("sti" ::: "memory");
    while (hits < want && rdtsc() - start < ms * tsc_per_ms) asm volatile("pause");
    const u64 got = rdtsc();
    while (rdtsc() - got < settle_ms * tsc_per_ms) asm volatile("pause");
    asm volatile("cli" ::: "memory");
    return hits;
}

} // namespace

u32 guest_main() {
    Checks c;
    const char* src = "";
    const u64 khz = tsc_khz(&src);
    if (!c.check(khz != 0, "tsc rate", "%u kHz (%s)", u32(khz), khz ? src : "no source")) return c.finish();
    tsc_per_ms = khz;
    const u32 count = u32(cmdline_u64("count", 20));
    const u32 timeout_ms = u32(cmdline_u64("timeout_ms", 5000));
    const u32 quiet_ms = u32(cmdline_u64("quiet_ms", 50));
    const u32 off_ms = u32(cmdline_u64("off_ms", 300));

    u32 dev = 32;
    for (u32 d = 0; d < 32 && dev == 32; d++)
        if (cfg_rd32(d, 0) == (0x11e8u << 16 | 0x1234)) dev = d;
    if (!c.check(dev < 32, "edu (1234:11e8) on bus 0", "device %u", dev)) return c.finish();
    bar = cfg_rd32(dev, 0x10) & ~0xfu;
    if (!bar) {
        bar = u32(cmdline_u64("bar", 0xd0000000));
        cfg_wr32(dev, 0x10, bar);
    }
    u32 msi = 0;
    if (cfg_rd16(dev, 0x06) & 0x10)
        for (u32 at = cfg_rd32(dev, 0x34) & 0xfc, n = 0; at && n < 48 && !msi; at = cfg_rd32(dev, at) >> 8 & 0xfc, n++)
            if ((cfg_rd32(dev, at) & 0xff) == 0x05) msi = at;
    const u16 control = msi ? cfg_rd16(dev, msi + 2) : 0;
    const bool maskable = control & 0x100;
    c.check(msi != 0 && (control & 0x80), "msi capability, 64-bit", "at 0x%x control 0x%04x", msi, control);
    if (c.failed) return c.finish();
    printf("msi: edu at 00:%02x.0 bar0=0x%08x msi at 0x%02x control=0x%04x (%u vector(s)%s)\n", dev, bar, msi,
           control, 1u << (control >> 1 & 7), maskable ? ", maskable" : "");
    cfg_wr16(dev, 0x04, u16(cfg_rd16(dev, 0x04) | 0x6));          // memory space, bus master
    edu_wr(EDU_LIVE, 0x12345678);
    c.check(edu_rd(EDU_ID) >> 16 == 0x0100 && edu_rd(EDU_LIVE) == ~0x12345678u, "edu answers", "id=0x%08x live=0x%08x",
            edu_rd(EDU_ID), edu_rd(EDU_LIVE));

    // The IDT: the runtime's exception gates, vector V, a catch-all for every other vector.
    idt_install();
    idt_set(V, msi_isr);
    outb(0x21, 0xff);                                             // the 8259s masked
    outb(0xa1, 0xff);
    mmio_wr<u32>(APIC + APIC_SVR, 0x1ff);
    const u32 apic_id = mmio_rd<u32>(APIC + APIC_ID) >> 24;

    // One message to this CPU's vector V; MSI on.
    cfg_wr32(dev, msi + 4, APIC | apic_id << 12);
    cfg_wr32(dev, msi + 8, 0);
    cfg_wr16(dev, msi + 0x0c, V);
    if (maskable) cfg_wr32(dev, msi + 0x10, 0);
    cfg_wr16(dev, msi + 2, u16((control & ~0x70) | 1));
    edu_wr(EDU_ACK, edu_rd(EDU_STATUS));

    // Each raise arrives, once.
    u32 first_bad = 0, bad = 0;
    u64 worst = 0;
    for (u32 i = 0; i < count; i++) {
        const u32 before = hits;
        status_seen = 0;
        const u64 t0 = rdtsc();
        edu_wr(EDU_RAISE, 1);
        const u32 got = wait_hits(before + 1, timeout_ms, quiet_ms) - before;
        const u64 took = rdtsc() - t0;
        if (took > worst) worst = took;
        if (got != 1 || status_seen != 1 || edu_rd(EDU_STATUS) != 0) {
            if (!bad) first_bad = i;
            bad++;
            printf("msi: raise %u: %u interrupt(s), status in the handler 0x%x, after 0x%x\n", i, got, status_seen,
                   edu_rd(EDU_STATUS));
        }
    }
    c.check(bad == 0, "each raise arrives exactly once", "%u raises, %u wrong (first %u)", count, bad, first_bad);
    printf("msi: %u raises, %u interrupts, slowest round %u us (with %u ms of quiet)\n", count, hits,
           u32(worst * 1000 / tsc_per_ms), quiet_ms);

    // MSI off: the device raises, nothing arrives.
    cfg_wr16(dev, msi + 2, u16(cfg_rd16(dev, msi + 2) & ~1));
    u32 before = hits;
    edu_wr(EDU_RAISE, 1);
    u32 got = wait_hits(before + 1, off_ms, 0) - before;
    const u32 status = edu_rd(EDU_STATUS);
    c.check(got == 0 && status == 1, "msi off: none arrives", "%u interrupt(s), status 0x%x", got, status);
    edu_wr(EDU_ACK, status);

    // MSI on again: one arrives.
    cfg_wr16(dev, msi + 2, u16(cfg_rd16(dev, msi + 2) | 1));
    before = hits;
    edu_wr(EDU_RAISE, 1);
    got = wait_hits(before + 1, timeout_ms, quiet_ms) - before;
    c.check(got == 1 && edu_rd(EDU_STATUS) == 0, "msi on again: one arrives", "%u interrupt(s)", got);

    if (maskable) {
        cfg_wr32(dev, msi + 0x10, 1);
        before = hits;
        edu_wr(EDU_RAISE, 1);
        got = wait_hits(before + 1, off_ms, 0) - before;
        const u32 pending = cfg_rd32(dev, msi + 0x14);
        c.check(got == 0 && pending == 1, "masked: pending, none arrives", "%u interrupt(s), pending 0x%x", got,
                pending);
        cfg_wr32(dev, msi + 0x10, 0);
        got = wait_hits(before + 1, timeout_ms, quiet_ms) - before;
        c.check(got == 1 && cfg_rd32(dev, msi + 0x14) == 0 && edu_rd(EDU_STATUS) == 0,
                "unmasked: the pending one arrives, once", "%u interrupt(s), pending 0x%x", got,
                cfg_rd32(dev, msi + 0x14));
    }
    c.check(idt_foreign.count == 0, "no other vector", "%u interrupt(s), first on 0x%x", idt_foreign.count,
            idt_foreign.first);

    cfg_wr16(dev, msi + 2, u16(cfg_rd16(dev, msi + 2) & ~1));
    cfg_wr16(dev, 0x04, u16(cfg_rd16(dev, 0x04) & ~0x4));
    printf("msi: interrupts=%u spurious=%u\n", hits, idt_foreign.spurious);
    return c.finish();
}

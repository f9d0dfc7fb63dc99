// platform: the PC platform a guest finds without being told where anything is
// (no boot parameters, only the PC conventions), as any OS probes it. Checked
// guest; the exit code is the number of the first failed check (0: all pass):
//   1 an RSDP ("RSD PTR ") on a 16-byte boundary in 0xE0000-0xFFFFF (ACPI 5.2.5.1)
//   2 its checksum (20 bytes; all 36 from revision 2 on, extended checksum)
//   3 the root table (XSDT from revision 2 when set, else RSDT): signature, checksum
//   4 the FADT ("FACP") listed in it, checksum valid
//   5 the DSDT the FADT points at (X_DSDT when set), checksum valid
//   6 the MADT ("APIC") listed, checksum valid, local APIC address 0xFEE00000
//   7 the MADT lists an IOAPIC at 0xFEC00000 with GSI base 0
//   8 the MADT lists cpus=N (default 1) enabled local APICs
//   9 the MADT says PCAT_COMPAT (the 8259s are present)
//  10 the tables are outside the RAM the memory map reports
//  11 the IOAPIC answers: version register 0x11..0x20 with >= 24 redirection entries
//  12 the 8259s: the IMRs round-trip 0xA5 (master) and 0x5A (slave)
//  13 the 8259s take the ICW1-ICW4 init sequence (IMR 0 after it, as ICW1 clears it),
//     then IMR 0xFF round-trips; ISR (OCW3) reads 0, a poll (OCW3 P) says no interrupt
//  14 PIT channel 2 (gate through port 0x61) counts down in mode 0, OUT2 rises at terminal count
//  15 the ACPI PM timer of the FADT (X_PM_TMR_BLK, else PM_TMR_BLK): present, 24 bits
//     (TMR_VAL_EXT clear, value < 2^24), advances at 3x the PIT's rate (within 5%, over ~48 ms
//     of PIT channel 2, each end read as a PM-PIT-PM triple within 0.84 ms)
//  16 the legacy area 0xA0000-0xFFFFF reads without a fault (every dword)
//
// Under Keel the guest runs with on_bad_access = "stop": an access there that no RAM or
// device claims would stop it, so 16 also shows that the area is backed.
// Bare under QEMU (SeaBIOS, -kernel): the tables are SeaBIOS's (RSDP revision 0, RSDT only,
// FADT revision 1 with a PIIX4 PM timer at 0x608); every check above holds on a PC and there.
// Unlike a PC's BIOS, Keel leaves PIT channel 0 unprogrammed (no 18.2 Hz tick), so only
// channel 2 is checked; Keel's 8259s deliver nothing (interrupts come through the IOAPIC).
#include "lib/guest.hpp"

extern "C" const char guest_name[] = "platform";

namespace {

constexpr u32 IOAPIC = 0xfec00000, LAPIC = 0xfee00000;

u8 sum(const u8 *p, u32 n)
{
    u8 s = 0;
    for (u32 i = 0; i < n; i++) s = u8(s + p[i]);
    return s;
}
u32 rd32(const u8 *p) { return u32(p[0]) | u32(p[1]) << 8 | u32(p[2]) << 16 | u32(p[3]) << 24; }
u64 rd64(const u8 *p) { return u64(rd32(p)) | u64(rd32(p + 4)) << 32; }

// Plain MOVs, as drivers use (Keel emulates MOV forms on device pages).
u32 mmio_read(u32 a)
{
    u32 v;
    asm volatile("movl (%1), %0" : "=r"(v) : "r"(a) : "memory");
    return v;
}
void mmio_write(u32 a, u32 v) { asm volatile("movl %0, (%1)" : : "r"(v), "r"(a) : "memory"); }

// A table at a 32-bit physical address with a sane length and a valid checksum.
const u8 *table(u64 pa, const char *sig)
{
    if (!pa || pa >= 0x100000000ull) return nullptr;
    const u8 *t = reinterpret_cast<const u8 *>(uptr(pa));
    if (sig && memcmp(t, sig, 4) != 0) return nullptr;
    const u32 len = rd32(t + 4);
    if (len < 36 || len > 0x100000 || sum(t, len) != 0) return nullptr;
    return t;
}

struct Root {
    const u8 *t = nullptr;
    u32 entry = 4;            // 4 (RSDT) or 8 (XSDT)
    u32 count() const { return t ? (rd32(t + 4) - 36) / entry : 0; }
    u64 at(u32 i) const { return entry == 8 ? rd64(t + 36 + 8 * i) : rd32(t + 36 + 4 * i); }
};

// The first table with that signature (checksum checked by the caller through table()).
u64 find(const Root &r, const char *sig)
{
    for (u32 i = 0; i < r.count(); i++) {
        const u64 pa = r.at(i);
        if (pa && pa < 0x100000000ull && memcmp(reinterpret_cast<const u8 *>(uptr(pa)), sig, 4) == 0) return pa;
    }
    return 0;
}

bool in_ram(u64 base, u64 len)   // any byte of [base, base+len) in a RAM range of the map
{
    for (u32 i = 0; i < boot.mmap_count; i++) {
        const MemRegion &m = boot.mmap[i];
        if (m.type == 1 && base < m.base + m.length && m.base < base + len) return true;
    }
    return false;
}

u16 pit2_count()
{
    outb(0x43, 0x80);         // latch channel 2
    const u8 lo = inb(0x42);
    return u16(lo | inb(0x42) << 8);
}

void pit2_start()
{
    outb(0x61, u8((inb(0x61) & ~0x02) | 0x01));   // gate on, speaker off
    outb(0x43, 0xb0);                             // channel 2, lobyte/hibyte, mode 0
    outb(0x42, 0xff);
    outb(0x42, 0xff);
}

struct Sample {
    u16 pit;
    u32 pm, pm_raw;
};

// The PIT count and the PM timer at (nearly) the same moment.
bool sample(u16 pm_port, Sample &s)
{
    for (u32 i = 0; i < 200; i++) {
        const u32 a = inl(pm_port);
        const u16 c = pit2_count();
        const u32 b = inl(pm_port);
        const u32 d = (b - a) & 0xffffff;
        if (d <= 3000) {                          // within 0.84 ms
            s = Sample{c, a + d / 2, a | b};
            return true;
        }
    }
    return false;
}

} // namespace

u32 guest_main()
{
    Checks t;

    // 1-2: the RSDP, the PC way.
    const u8 *rsdp = nullptr;
    for (u32 a = 0xe0000; a < 0x100000 && !rsdp; a += 16)
        if (memcmp(reinterpret_cast<const u8 *>(a), "RSD PTR ", 8) == 0) rsdp = reinterpret_cast<const u8 *>(a);
    t.check(rsdp, "RSDP in the BIOS area 0xE0000-0xFFFFF", "at 0x%x", u32(uptr(rsdp)));
    const u8 rev = rsdp ? rsdp[15] : 0;
    const bool rsdp_ok = rsdp && sum(rsdp, 20) == 0 && (rev < 2 || (rd32(rsdp + 20) >= 36 && sum(rsdp, rd32(rsdp + 20)) == 0));
    t.check(rsdp_ok, "RSDP checksums", "revision %u, RSDT 0x%x, XSDT 0x%llx", rev, rsdp ? rd32(rsdp + 16) : 0,
            rsdp && rev >= 2 ? rd64(rsdp + 24) : 0ull);

    // 3: the root table.
    Root root;
    if (rsdp_ok) {
        if (rev >= 2 && rd64(rsdp + 24)) root = Root{table(rd64(rsdp + 24), "XSDT"), 8};
        else root = Root{table(rd32(rsdp + 16), "RSDT"), 4};
    }
    t.check(root.t, root.entry == 8 ? "XSDT valid" : "RSDT valid", "at 0x%x, %u entries", u32(uptr(root.t)), root.count());

    // 4-5: FADT and DSDT.
    const u8 *fadt = table(find(root, "FACP"), "FACP");
    const u32 flen = fadt ? rd32(fadt + 4) : 0;
    t.check(fadt, "FADT listed and valid", "at 0x%x, revision %u, length %u", u32(uptr(fadt)), fadt ? fadt[8] : 0, flen);
    u64 dsdt_pa = fadt ? rd32(fadt + 40) : 0;
    if (fadt && flen >= 148 && rd64(fadt + 140)) dsdt_pa = rd64(fadt + 140);
    const u8 *dsdt = table(dsdt_pa, "DSDT");
    t.check(dsdt, "DSDT reachable from the FADT, valid", "at 0x%llx, length %u", dsdt_pa, dsdt ? rd32(dsdt + 4) : 0);

    // 6-9: MADT.
    const u8 *madt = table(find(root, "APIC"), "APIC");
    t.check(madt && rd32(madt + 36) == LAPIC, "MADT listed and valid, local APICs at 0xFEE00000",
            "at 0x%x, local APIC address 0x%x", u32(uptr(madt)), madt ? rd32(madt + 36) : 0);
    u32 ioapics = 0, ioapic_pc = 0, lapics = 0;
    if (madt) {
        const u32 len = rd32(madt + 4);
        for (u32 off = 44; off + 2 <= len;) {
            const u8 *e = madt + off;
            if (e[1] < 2 || off + e[1] > len) break;
            if (e[0] == 0 && e[1] >= 8 && (rd32(e + 4) & 1)) lapics++;
            if (e[0] == 9 && e[1] >= 16 && (rd32(e + 8) & 1)) lapics++;   // x2APIC
            if (e[0] == 1 && e[1] >= 12) {
                ioapics++;
                if (rd32(e + 4) == IOAPIC && rd32(e + 8) == 0) ioapic_pc++;
            }
            off += e[1];
        }
    }
    t.check(ioapic_pc == 1, "MADT: an IOAPIC at 0xFEC00000, GSI base 0", "%u IOAPICs", ioapics);
    const u32 want_cpus = u32(cmdline_u64("cpus", 1));
    t.check(lapics == want_cpus, "MADT: one enabled local APIC per CPU", "%u, expected %u", lapics, want_cpus);
    t.check(madt && (rd32(madt + 40) & 1), "MADT: PCAT_COMPAT (8259s present)", "flags 0x%x", madt ? rd32(madt + 40) : 0);

    // 10: the tables are not RAM to the guest.
    bool outside = rsdp_ok && root.t && fadt && madt && dsdt;
    if (outside)
        outside = !in_ram(u32(uptr(root.t)), rd32(root.t + 4)) && !in_ram(u32(uptr(fadt)), flen) &&
                  !in_ram(u32(uptr(madt)), rd32(madt + 4)) && !in_ram(u32(uptr(dsdt)), rd32(dsdt + 4));
    t.check(outside, "the tables are outside the map's RAM", "root 0x%x FADT 0x%x MADT 0x%x DSDT 0x%x",
            u32(uptr(root.t)), u32(uptr(fadt)), u32(uptr(madt)), u32(uptr(dsdt)));

    // 11: the IOAPIC.
    mmio_write(IOAPIC, 1);            // IOREGSEL: version
    const u32 ver = mmio_read(IOAPIC + 0x10);
    mmio_write(IOAPIC, 0);            // the ID register reads too
    const u32 id = mmio_read(IOAPIC + 0x10);
    const u32 vnum = ver & 0xff, maxred = (ver >> 16) & 0xff;
    t.check(vnum >= 0x11 && vnum <= 0x20 && maxred >= 23 && maxred != 0xff, "IOAPIC version register",
            "version 0x%x (0x%02x, %u entries), id 0x%x", ver, vnum, maxred + 1, id);

    // 12-13: the 8259 pair.
    outb(0x21, 0xa5);
    outb(0xa1, 0x5a);
    const u8 m1 = inb(0x21), s1 = inb(0xa1);
    t.check(m1 == 0xa5 && s1 == 0x5a, "8259 IMRs round-trip", "master 0x%02x slave 0x%02x", m1, s1);
    outb(0x20, 0x11); outb(0xa0, 0x11);    // ICW1: edge, cascade, ICW4
    outb(0x21, 0x20); outb(0xa1, 0x28);    // ICW2: vectors 0x20, 0x28
    outb(0x21, 0x04); outb(0xa1, 0x02);    // ICW3: slave on IR2, its ID 2
    outb(0x21, 0x01); outb(0xa1, 0x01);    // ICW4: 8086 mode
    const u8 m2 = inb(0x21), s2 = inb(0xa1);
    outb(0x21, 0xff); outb(0xa1, 0xff);    // OCW1: all masked (interrupts stay off anyway)
    const u8 m3 = inb(0x21), s3 = inb(0xa1);
    outb(0x20, 0x0b); outb(0xa0, 0x0b);    // OCW3: read ISR
    const u8 isr_m = inb(0x20), isr_s = inb(0xa0);
    outb(0x20, 0x0a); outb(0xa0, 0x0a);    // back to IRR
    outb(0x20, 0x0c);                      // OCW3: poll
    const u8 poll = inb(0x20);
    t.check(m2 == 0 && s2 == 0 && m3 == 0xff && s3 == 0xff && isr_m == 0 && isr_s == 0 && !(poll & 0x80),
            "8259 init sequence, IMR, ISR, poll", "IMR after init 0x%02x/0x%02x, then 0x%02x/0x%02x, ISR 0x%02x/0x%02x, poll 0x%02x",
            m2, s2, m3, s3, isr_m, isr_s, poll);

    // 14-15: PIT channel 2 in mode 0 from 0xFFFF (54.9 ms to terminal count), timed by the PM timer.
    u16 pm_port = fadt && flen >= 80 ? u16(rd32(fadt + 76)) : 0;
    if (fadt && flen >= 220 && fadt[208] == 1 && rd64(fadt + 212)) pm_port = u16(rd64(fadt + 212));
    const bool ext = fadt && flen >= 116 && (rd32(fadt + 112) & (1u << 8));
    pit2_start();
    const u16 c1 = pit2_count();
    u16 c2 = c1;
    for (u32 i = 0; i < 1000000 && c2 == c1; i++) c2 = pit2_count();
    const bool out_low = !(inb(0x61) & 0x20);
    bool out_high = false;
    for (u32 i = 0; i < 100000000 && !out_high; i++) out_high = inb(0x61) & 0x20;
    t.check(c2 < c1 && out_low && out_high, "PIT channel 2 counts down, OUT2 at terminal count",
            "0x%04x then 0x%04x, OUT2 %s then %s", c1, c2, out_low ? "low" : "high", out_high ? "high" : "low");

    // 3579545 / 1193182 = 3.0000. Both counts are read together (a PM read before and after the
    // PIT's, retried until close), at the start and after ~48 ms: a host that stops the emulator
    // for a while between two instructions does not skew the ratio.
    bool pm_ok = pm_port && !ext, measured = false;
    u32 pit_ticks = 0, pm_ticks = 0, pm_max = 0;
    for (u32 attempt = 0; pm_ok && attempt < 5 && !measured; attempt++) {
        pit2_start();
        Sample s0, s1;
        if (!sample(pm_port, s0)) continue;
        for (u32 i = 0; i < 100000000 && pit2_count() >= 0x2000 && !(inb(0x61) & 0x20); i++) {}
        if (!sample(pm_port, s1) || (inb(0x61) & 0x20)) continue;   // past terminal count: again
        pit_ticks = u32(s0.pit - s1.pit);
        pm_ticks = (s1.pm - s0.pm) & 0xffffff;
        pm_max = s0.pm_raw > s1.pm_raw ? s0.pm_raw : s1.pm_raw;
        measured = true;
    }
    pm_ok = pm_ok && measured && pm_max < (1u << 24) && pm_ticks * 100 >= pit_ticks * 3 * 95 &&
            pm_ticks * 100 <= pit_ticks * 3 * 105;
    t.check(pm_ok, "PM timer: 24 bits, 3x the PIT rate", "port 0x%x%s, %u ticks while the PIT counted %u (expected %u)",
            pm_port, ext ? " (32-bit: TMR_VAL_EXT set)" : "", pm_ticks, pit_ticks, pit_ticks * 3);

    // 16: the legacy area.
    u32 acc = 0;
    for (u32 a = 0xa0000; a < 0x100000; a += 4) acc ^= *reinterpret_cast<const volatile u32 *>(a);
    t.check(true, "legacy area 0xA0000-0xFFFFF read", "xor of its dwords 0x%08x", acc);
    return t.finish();
}

// ACPI table parser on a synthetic but realistic firmware table set
// (RSDP v2 -> XSDT -> FACP, APIC, HPET, MCFG, DMAR; FACP -> DSDT) and on
// corrupted variants of it.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernel/firmware/acpi.hpp"

namespace {

using Bytes = std::vector<u8>;

void put(Bytes &b, size_t off, u64 v, int n)
{
    if (b.size() < off + n) b.resize(off + n);
    for (int i = 0; i < n; i++) b[off + i] = u8(v >> 8 * i);
}
void app(Bytes &b, u64 v, int n) { put(b, b.size(), v, n); }
void app_gas(Bytes &b, u8 space, u8 width, u8 access, u64 addr)
{
    app(b, space, 1); app(b, width, 1); app(b, 0, 1); app(b, access, 1); app(b, addr, 8);
}

u8 sum(const u8 *p, size_t n)
{
    u8 s = 0;
    for (size_t i = 0; i < n; i++) s = u8(s + p[i]);
    return s;
}

// A table: standard header + body, length and checksum filled in.
Bytes table(const char *sig, u8 rev, const Bytes &body)
{
    Bytes t(36, 0);
    memcpy(t.data(), sig, 4);
    put(t, 4, 36 + body.size(), 4);
    t[8] = rev;
    memcpy(t.data() + 10, "KEELOE", 6);
    memcpy(t.data() + 16, "KEELTBL ", 8);
    put(t, 24, 1, 4);
    memcpy(t.data() + 28, "KEEL", 4);
    put(t, 32, 0x20240101, 4);
    t.insert(t.end(), body.begin(), body.end());
    t[9] = u8(-sum(t.data(), t.size()));
    return t;
}

void fix_checksum(u8 *t, size_t len)
{
    t[9] = 0;
    t[9] = u8(-sum(t, len));
}

// Physical memory for the parser. Every map() returns a fresh, exactly
// sized copy and frees the previous one: ASan then catches both reads past
// the requested length and use of a mapping after the next map() call.
class FakeMem : public AcpiMemory {
public:
    struct Region { u64 pa; Bytes bytes; };
    std::vector<Region> regions;
    int maps = 0;

    void add(u64 pa, Bytes b) { regions.push_back({pa, std::move(b)}); }

    u8 *at(u64 pa)
    {
        for (auto &r : regions)
            if (pa >= r.pa && pa - r.pa < r.bytes.size()) return r.bytes.data() + (pa - r.pa);
        return nullptr;
    }

    const u8 *map(PhysAddr pa, usize len) override
    {
        maps++;
        window_.reset();
        EXPECT_FALSE(len == 0 || len - 1 > ~0ull - pa.raw()) << "wrapping range";
        for (auto &r : regions) {
            u64 a = pa.raw();
            if (a < r.pa || a - r.pa > r.bytes.size() || len > r.bytes.size() - (a - r.pa))
                continue;
            window_.reset(new u8[len ? len : 1]);
            memcpy(window_.get(), r.bytes.data() + (a - r.pa), len);
            return window_.get();
        }
        return nullptr;
    }

private:
    std::unique_ptr<u8[]> window_;
};

// Table layout inside one 64 KiB "ACPI reclaim" region, as firmware does it.
constexpr u64 BASE = 0x7ffe0000;
constexpr u64 XSDT = BASE + 0x0000, RSDT = BASE + 0x0100, FACP = BASE + 0x0200,
              APIC = BASE + 0x0400, HPET = BASE + 0x0600, MCFG = BASE + 0x0700,
              DMAR = BASE + 0x0800, DSDT = BASE + 0x1000;
constexpr u64 REGION = 0x2000;
const u64 TABLES[] = {XSDT, RSDT, FACP, APIC, HPET, MCFG, DMAR, DSDT};

Bytes madt_body()
{
    Bytes b;
    app(b, 0xfee00000, 4);
    app(b, 1, 4);                                   // PCAT_COMPAT
    auto lapic = [&](u8 uid, u8 id, u32 flags) { app(b, 0, 1); app(b, 8, 1); app(b, uid, 1); app(b, id, 1); app(b, flags, 4); };
    lapic(0, 0, 1);
    lapic(1, 1, 1);
    lapic(2, 2, 1);
    lapic(3, 3, 0);                                 // disabled
    lapic(4, 4, 2);                                 // online capable (MADT rev 5)
    lapic(5, 0xff, 1);                              // invalid id: ignored
    lapic(6, 1, 1);                                 // duplicate id 1
    // I/O APIC 0 at 0xfec00000, GSI base 0
    app(b, 1, 1); app(b, 12, 1); app(b, 0, 1); app(b, 0, 1); app(b, 0xfec00000, 4); app(b, 0, 4);
    // ISA overrides: IRQ0 -> GSI2, IRQ9 -> GSI9 level/active high
    app(b, 2, 1); app(b, 10, 1); app(b, 0, 1); app(b, 0, 1); app(b, 2, 4); app(b, 0, 2);
    app(b, 2, 1); app(b, 10, 1); app(b, 0, 1); app(b, 9, 1); app(b, 9, 4); app(b, 0xd, 2);
    // NMI source GSI 23
    app(b, 3, 1); app(b, 8, 1); app(b, 5, 2); app(b, 23, 4);
    // LAPIC NMI: all processors, LINT1
    app(b, 4, 1); app(b, 6, 1); app(b, 0xff, 1); app(b, 5, 2); app(b, 1, 1);
    // x2APIC 0x100 (uid 0x100) enabled; x2APIC for id 0 again (duplicate)
    app(b, 9, 1); app(b, 16, 1); app(b, 0, 2); app(b, 0x100, 4); app(b, 1, 4); app(b, 0x100, 4);
    app(b, 9, 1); app(b, 16, 1); app(b, 0, 2); app(b, 0, 4); app(b, 1, 4); app(b, 0, 4);
    // x2APIC NMI uid 0x100 LINT1
    app(b, 10, 1); app(b, 12, 1); app(b, 5, 2); app(b, 0x100, 4); app(b, 1, 1); app(b, 0, 3);
    // unknown type 0x7f, length 4: skipped
    app(b, 0x7f, 1); app(b, 4, 1); app(b, 0, 2);
    return b;
}

Bytes fadt_body(u64 dsdt)
{
    Bytes b(276 - 36, 0);
    auto f = [&](size_t off, u64 v, int n) { put(b, off - 36, v, n); };
    f(36, 0x7fbe0000, 4);               // FIRMWARE_CTRL
    f(40, dsdt, 4);                     // DSDT
    f(46, 9, 2);                        // SCI_INT
    f(48, 0xb2, 4);                     // SMI_CMD
    f(52, 0xf1, 1); f(53, 0xf0, 1);
    f(56, 0x600, 4);                    // PM1a_EVT_BLK
    f(64, 0x604, 4);                    // PM1a_CNT_BLK
    f(76, 0x608, 4);                    // PM_TMR_BLK
    f(88, 4, 1); f(89, 2, 1); f(91, 4, 1);
    f(108, 0x32, 1);                    // CENTURY
    f(109, 0x0003, 2);                  // IAPC_BOOT_ARCH: legacy devices, 8042
    f(112, (1u << 8) | (1u << 10), 4);  // TMR_VAL_EXT, RESET_REG_SUP
    f(116, 1, 1); f(117, 8, 1); f(119, 1, 1); f(120, 0xcf9, 8);   // RESET_REG
    f(128, 6, 1);                       // RESET_VALUE
    f(131, 5, 1);                       // minor version
    f(132, 0, 8);                       // X_FIRMWARE_CTRL: 0, use FIRMWARE_CTRL
    f(140, dsdt, 8);                    // X_DSDT
    // X_PM1a_EVT, X_PM1a_CNT, X_PM_TMR
    f(148, 1, 1); f(149, 32, 1); f(151, 3, 1); f(152, 0x600, 8);
    f(172, 1, 1); f(173, 16, 1); f(175, 2, 1); f(176, 0x604, 8);
    f(208, 1, 1); f(209, 32, 1); f(211, 3, 1); f(212, 0x608, 8);
    return b;
}

Bytes hpet_body()
{
    Bytes b;
    app(b, 0x8086a201, 4);
    app_gas(b, 0, 64, 0, 0xfed00000);
    app(b, 0, 1);
    app(b, 0x80, 2);
    app(b, 0, 1);
    return b;
}

Bytes mcfg_body()
{
    Bytes b(8, 0);
    app(b, 0xb0000000, 8); app(b, 0, 2); app(b, 0, 1); app(b, 0xff, 1); app(b, 0, 4);
    return b;
}

Bytes rsdp(u8 rev, u64 rsdt, u64 xsdt)
{
    Bytes r(rev >= 2 ? 36 : 20, 0);
    memcpy(r.data(), "RSD PTR ", 8);
    memcpy(r.data() + 9, "KEELOE", 6);
    r[15] = rev;
    put(r, 16, rsdt, 4);
    if (rev >= 2) {
        put(r, 20, 36, 4);
        put(r, 24, xsdt, 8);
    }
    r[8] = u8(-sum(r.data(), 20));
    if (rev >= 2) r[32] = u8(-sum(r.data(), 36));
    return r;
}

struct Firmware {
    FakeMem mem;
    Bytes rsdp;
};

void place(Bytes &region, u64 pa, const Bytes &t)
{
    ASSERT_LE(pa - BASE + t.size(), region.size());
    memcpy(region.data() + (pa - BASE), t.data(), t.size());
}

// The standard set. `fadt_len` < 276 builds an older, shorter FADT.
void build(Firmware &fw, u8 rsdp_rev = 2, size_t fadt_len = 276, u8 madt_rev = 5)
{
    Bytes region(REGION, 0);
    const u64 entries[] = {FACP, APIC, HPET, MCFG, DMAR};
    Bytes x, r;
    for (u64 e : entries) { app(x, e, 8); app(r, e, 4); }
    place(region, XSDT, table("XSDT", 1, x));
    place(region, RSDT, table("RSDT", 1, r));
    Bytes fb = fadt_body(DSDT);
    fb.resize(fadt_len - 36);
    place(region, FACP, table("FACP", fadt_len >= 244 ? 6 : 1, fb));
    place(region, APIC, table("APIC", madt_rev, madt_body()));
    place(region, HPET, table("HPET", 1, hpet_body()));
    place(region, MCFG, table("MCFG", 1, mcfg_body()));
    Bytes dmar;
    app(dmar, 38, 1); app(dmar, 1, 1);
    for (int i = 0; i < 10; i++) app(dmar, 0, 1);
    place(region, DMAR, table("DMAR", 1, dmar));
    place(region, DSDT, table("DSDT", 2, Bytes{0x10, 0x05, '_', 'S', 'B', '_'}));
    fw.mem.add(BASE, region);
    fw.rsdp = rsdp(rsdp_rev, RSDT, XSDT);
}

Result<Acpi> parse(Firmware &fw)
{
    // The RSDP, too, as an exactly sized copy.
    std::unique_ptr<u8[]> r(new u8[fw.rsdp.size()]);
    memcpy(r.get(), fw.rsdp.data(), fw.rsdp.size());
    return acpi_parse(fw.mem, r.get(), fw.rsdp.size());
}

u8 *tbl(Firmware &fw, u64 pa) { return fw.mem.at(pa); }
u32 len_of(const u8 *t) { return t[4] | t[5] << 8 | t[6] << 16 | u32(t[7]) << 24; }

} // namespace

TEST(Acpi, FullSet)
{
    Firmware fw;
    build(fw);
    auto r = parse(fw);
    ASSERT_TRUE(r.ok()) << err_name(r.error());
    const Acpi &a = *r;

    EXPECT_EQ(a.revision, 2);
    EXPECT_EQ(memcmp(a.oem_id, "KEELOE", 6), 0);
    EXPECT_TRUE(a.xsdt);
    EXPECT_EQ(a.root.raw(), XSDT);
    EXPECT_EQ(a.bad_count, 0u);
    EXPECT_EQ(a.table_count, 6u);       // 5 from the XSDT + DSDT
    EXPECT_FALSE(a.tables_truncated);

    for (auto [sig, pa] : {std::pair{"FACP", FACP}, {"APIC", APIC}, {"HPET", HPET},
                           {"MCFG", MCFG}, {"DMAR", DMAR}, {"DSDT", DSDT}}) {
        const AcpiTable *t = a.find(sig);
        ASSERT_NE(t, nullptr) << sig;
        EXPECT_EQ(t->pa.raw(), pa) << sig;
        EXPECT_EQ(a.find(sig, 1), nullptr);
    }
    EXPECT_EQ(a.find("SSDT"), nullptr);
    EXPECT_EQ(a.find("DMAR")->length, 48u);

    // MADT
    const Madt &m = a.madt;
    ASSERT_TRUE(m.present);
    EXPECT_EQ(m.err, Err::none);
    EXPECT_EQ(m.lapic_addr, 0xfee00000u);
    EXPECT_TRUE(m.flags & Madt::PCAT_COMPAT);
    ASSERT_EQ(m.cpu_count, 6u);         // 0,1,2,3,4 and x2APIC 0x100
    EXPECT_EQ(m.duplicate_cpus, 2u);    // LAPIC id 1 twice, id 0 again as x2APIC
    EXPECT_EQ(m.usable_cpus, 5u);       // all but the disabled id 3
    EXPECT_EQ(m.cpus[0].apic_id, 0u);
    EXPECT_FALSE(m.cpus[0].x2apic);
    EXPECT_EQ(m.cpus[1].uid, 1u);       // first entry for id 1 kept
    EXPECT_FALSE(m.cpus[3].usable);
    EXPECT_TRUE(m.cpus[4].usable);      // online capable
    EXPECT_EQ(m.cpus[5].apic_id, 0x100u);
    EXPECT_EQ(m.cpus[5].uid, 0x100u);
    EXPECT_TRUE(m.cpus[5].x2apic);
    ASSERT_EQ(m.ioapic_count, 1u);
    EXPECT_EQ(m.ioapics[0].addr, 0xfec00000u);
    EXPECT_EQ(m.ioapics[0].gsi_base, 0u);
    ASSERT_EQ(m.override_count, 2u);
    EXPECT_EQ(m.overrides[0].source, 0);
    EXPECT_EQ(m.overrides[0].gsi, 2u);
    EXPECT_EQ(m.overrides[1].source, 9);
    EXPECT_EQ(m.overrides[1].flags, 0xd);
    ASSERT_EQ(m.nmi_source_count, 1u);
    EXPECT_EQ(m.nmi_sources[0].gsi, 23u);
    ASSERT_EQ(m.lapic_nmi_count, 2u);
    EXPECT_EQ(m.lapic_nmis[0].uid, MadtLapicNmi::ALL);
    EXPECT_EQ(m.lapic_nmis[0].lint, 1);
    EXPECT_EQ(m.lapic_nmis[0].flags, 5);
    EXPECT_EQ(m.lapic_nmis[1].uid, 0x100u);
    EXPECT_FALSE(m.truncated);

    // FADT
    const Fadt &f = a.fadt;
    ASSERT_TRUE(f.present);
    EXPECT_EQ(f.length, 276u);
    EXPECT_EQ(f.sci_int, 9);
    EXPECT_EQ(f.smi_cmd, 0xb2u);
    EXPECT_EQ(f.acpi_enable, 0xf1);
    EXPECT_FALSE(f.hw_reduced());
    EXPECT_TRUE(f.pm_timer_32bit());
    EXPECT_EQ(f.pm_tmr_blk, 0x608u);
    Gas t = f.pm_timer();
    EXPECT_EQ(t.space, Gas::SYSTEM_IO);
    EXPECT_EQ(t.address, 0x608u);
    EXPECT_EQ(t.bit_width, 32);
    EXPECT_TRUE(f.has_reset);
    EXPECT_EQ(f.reset_reg.space, Gas::SYSTEM_IO);
    EXPECT_EQ(f.reset_reg.address, 0xcf9u);
    EXPECT_EQ(f.reset_value, 6);
    EXPECT_EQ(f.pm1a_cnt().address, 0x604u);
    EXPECT_EQ(f.pm1a_cnt().bit_width, 16);
    EXPECT_EQ(f.pm1b_cnt().address, 0u);
    EXPECT_EQ(f.dsdt, DSDT);
    EXPECT_EQ(f.facs, 0x7fbe0000u);
    EXPECT_EQ(f.iapc_boot_arch, Fadt::LEGACY_DEVICES | Fadt::HAS_8042);
    EXPECT_EQ(f.century, 0x32);

    // HPET, MCFG
    ASSERT_TRUE(a.hpet.present);
    EXPECT_EQ(a.hpet.err, Err::none);
    EXPECT_EQ(a.hpet.base.address, 0xfed00000u);
    EXPECT_EQ(a.hpet.base.space, Gas::SYSTEM_MEMORY);
    EXPECT_EQ(a.hpet.block_id, 0x8086a201u);
    EXPECT_EQ(a.hpet.min_tick, 0x80);
    ASSERT_TRUE(a.mcfg.present);
    ASSERT_EQ(a.mcfg.count, 1u);
    EXPECT_EQ(a.mcfg.entries[0].base, 0xb0000000u);
    EXPECT_EQ(a.mcfg.entries[0].end_bus, 0xff);
}

TEST(Acpi, RsdtFallbackRevision0)
{
    Firmware fw;
    build(fw, 0);
    auto r = parse(fw);
    ASSERT_TRUE(r.ok()) << err_name(r.error());
    EXPECT_FALSE(r->xsdt);
    EXPECT_EQ(r->root.raw(), RSDT);
    EXPECT_EQ(r->table_count, 6u);
    EXPECT_TRUE(r->madt.present);
}

TEST(Acpi, Revision2With20ByteCopy)
{
    // GRUB's tag 14 holds only 20 bytes even of a revision-2 RSDP.
    Firmware fw;
    build(fw);
    fw.rsdp.resize(20);
    auto r = parse(fw);
    ASSERT_TRUE(r.ok()) << err_name(r.error());
    EXPECT_FALSE(r->xsdt);
    EXPECT_EQ(r->revision, 2);
}

TEST(Acpi, BadRsdp)
{
    Firmware fw;
    build(fw);
    Bytes good = fw.rsdp;

    fw.rsdp[8] ^= 1;
    EXPECT_EQ(parse(fw).error(), Err::bad_checksum);

    fw.rsdp = good;
    fw.rsdp[32] ^= 1;                               // extended checksum
    EXPECT_EQ(parse(fw).error(), Err::bad_checksum);

    fw.rsdp = good;
    fw.rsdp[28] ^= 1;                               // XSDT address bit, v1 part intact
    EXPECT_EQ(parse(fw).error(), Err::bad_checksum);

    fw.rsdp = good;
    fw.rsdp[0] = 'X';
    EXPECT_EQ(parse(fw).error(), Err::invalid);

    fw.rsdp = good;
    fw.rsdp.resize(19);
    EXPECT_EQ(parse(fw).error(), Err::invalid);

    // Length beyond what the caller can provide.
    fw.rsdp = good;
    fw.rsdp[20] = 40;
    fw.rsdp[32] = u8(fw.rsdp[32] - 4);
    EXPECT_EQ(parse(fw).error(), Err::invalid);
    fw.rsdp[20] = 30;                               // below the v2 size
    fw.rsdp[32] = u8(fw.rsdp[32] + 10);
    EXPECT_EQ(parse(fw).error(), Err::invalid);

    EXPECT_EQ(acpi_parse(fw.mem, nullptr, 36).error(), Err::invalid);
}

TEST(Acpi, NoRoot)
{
    Firmware fw;
    build(fw);
    fw.rsdp = rsdp(2, 0, 0);
    EXPECT_EQ(parse(fw).error(), Err::not_found);
}

TEST(Acpi, XsdtUnmapped)
{
    Firmware fw;
    build(fw);
    fw.rsdp = rsdp(2, RSDT, 0x123456789000);
    auto r = parse(fw);
    ASSERT_TRUE(r.ok());                            // fell back to the RSDT
    EXPECT_FALSE(r->xsdt);
    EXPECT_EQ(r->xsdt_err, Err::range);
    EXPECT_EQ(r->table_count, 6u);

    fw.rsdp = rsdp(2, 0, 0x123456789000);
    EXPECT_EQ(parse(fw).error(), Err::range);

    // XSDT header readable, body not.
    fw.rsdp = rsdp(2, 0, BASE + REGION - 40);
    put(fw.mem.regions[0].bytes, REGION - 40, 0x54445358, 4);   // "XSDT"
    put(fw.mem.regions[0].bytes, REGION - 36, 200, 4);
    EXPECT_EQ(parse(fw).error(), Err::range);
}

TEST(Acpi, BadRootTables)
{
    Firmware fw;
    build(fw);
    u8 *x = tbl(fw, XSDT);
    x[40] ^= 0x10;                                  // XSDT checksum broken
    fw.rsdp = rsdp(2, 0, XSDT);
    EXPECT_EQ(parse(fw).error(), Err::bad_checksum);
    fw.rsdp = rsdp(2, RSDT, XSDT);
    auto r = parse(fw);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->xsdt_err, Err::bad_checksum);
    EXPECT_FALSE(r->xsdt);

    // The RSDP's RSDT pointing at the XSDT: wrong signature.
    fw.rsdp = rsdp(0, XSDT, 0);
    x[40] ^= 0x10;
    EXPECT_EQ(parse(fw).error(), Err::invalid);

    // Root length below a header.
    put(fw.mem.regions[0].bytes, RSDT - BASE + 4, 20, 4);
    fw.rsdp = rsdp(0, RSDT, 0);
    EXPECT_EQ(parse(fw).error(), Err::invalid);
}

TEST(Acpi, TableWithBadChecksumSkipped)
{
    Firmware fw;
    build(fw);
    tbl(fw, HPET)[40] ^= 0xff;
    auto r = parse(fw);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->find("HPET"), nullptr);
    EXPECT_FALSE(r->hpet.present);
    ASSERT_EQ(r->bad_count, 1u);
    EXPECT_EQ(memcmp(r->bad[0].sig, "HPET", 4), 0);
    EXPECT_EQ(r->bad[0].err, Err::bad_checksum);
    EXPECT_EQ(r->bad[0].pa.raw(), HPET);
    EXPECT_NE(r->find("APIC"), nullptr);
    EXPECT_NE(r->find("MCFG"), nullptr);
    EXPECT_NE(r->find("DMAR"), nullptr);
    EXPECT_TRUE(r->madt.present);
    EXPECT_TRUE(r->fadt.present);
}

TEST(Acpi, TableLengthBelowHeaderAndUnmapped)
{
    Firmware fw;
    build(fw);
    put(fw.mem.regions[0].bytes, MCFG - BASE + 4, 20, 4);
    // DMAR running past the end of mapped memory.
    put(fw.mem.regions[0].bytes, DMAR - BASE + 4, 0x100000, 4);
    auto r = parse(fw);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->bad_count, 2u);
    EXPECT_EQ(memcmp(r->bad[0].sig, "MCFG", 4), 0);
    EXPECT_EQ(r->bad[0].err, Err::invalid);
    EXPECT_EQ(memcmp(r->bad[1].sig, "DMAR", 4), 0);
    EXPECT_EQ(r->bad[1].err, Err::range);
    EXPECT_FALSE(r->mcfg.present);
    EXPECT_EQ(r->table_count, 4u);
}

TEST(Acpi, EntryPointingNowhere)
{
    Firmware fw;
    build(fw);
    put(fw.mem.regions[0].bytes, XSDT - BASE + 36 + 8, 0xdead0000, 8);   // APIC entry
    fix_checksum(tbl(fw, XSDT), 36 + 5 * 8);
    auto r = parse(fw);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->bad_count, 1u);
    EXPECT_EQ(r->bad[0].err, Err::range);
    EXPECT_EQ(r->bad[0].sig[0], 0);
    EXPECT_FALSE(r->madt.present);
}

TEST(Acpi, EntryWrappingAddressSpace)
{
    Firmware fw;
    build(fw);
    put(fw.mem.regions[0].bytes, XSDT - BASE + 36 + 16, 0xfffffffffffffff0ull, 8);   // HPET entry
    fix_checksum(tbl(fw, XSDT), 36 + 5 * 8);
    auto r = parse(fw);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->bad_count, 1u);
    EXPECT_EQ(r->bad[0].err, Err::range);
    EXPECT_EQ(r->bad[0].pa.raw(), 0xfffffffffffffff0ull);
}

TEST(Acpi, MadtZeroLengthEntry)
{
    Firmware fw;
    build(fw);
    u8 *m = tbl(fw, APIC);
    // Third entry (offset 44 + 2*8) gets length 0.
    m[44 + 16 + 1] = 0;
    fix_checksum(m, len_of(m));
    auto r = parse(fw);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->madt.present);
    EXPECT_EQ(r->madt.err, Err::invalid);
    EXPECT_EQ(r->madt.cpu_count, 2u);               // entries before it kept
    EXPECT_TRUE(r->fadt.present);                   // others unaffected
}

TEST(Acpi, MadtEntryOverrunsTable)
{
    Firmware fw;
    build(fw);
    u8 *m = tbl(fw, APIC);
    u32 len = len_of(m);
    m[len - 4 + 1] = 8;                             // last entry (length 4) claims 8
    fix_checksum(m, len);
    auto r = parse(fw);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->madt.err, Err::invalid);
    EXPECT_EQ(r->madt.cpu_count, 6u);

    // An entry too short for its type.
    Firmware fw2;
    build(fw2);
    m = tbl(fw2, APIC);
    m[44 + 1] = 4;                                  // first LAPIC entry: length 4 < 8
    fix_checksum(m, len_of(m));
    r = parse(fw2);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->madt.err, Err::invalid);
    EXPECT_EQ(r->madt.cpu_count, 0u);

    // A single dangling byte after the last entry.
    Firmware fw3;
    build(fw3);
    m = tbl(fw3, APIC);
    put(fw3.mem.regions[0].bytes, APIC - BASE + 4, len_of(m) + 1, 4);
    fix_checksum(m, len_of(m));
    r = parse(fw3);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->madt.err, Err::invalid);
}

TEST(Acpi, MadtShortAndOldRevision)
{
    Firmware fw;
    build(fw, 2, 276, 3);                           // MADT revision 3
    auto r = parse(fw);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r->madt.cpus[4].usable);           // bit 1 was reserved then
    EXPECT_EQ(r->madt.usable_cpus, 4u);

    // A MADT of just a header: no room for the local APIC address.
    u8 *m = tbl(fw, APIC);
    put(fw.mem.regions[0].bytes, APIC - BASE + 4, 40, 4);
    fix_checksum(m, 40);
    r = parse(fw);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->madt.present);
    EXPECT_EQ(r->madt.err, Err::invalid);
}

TEST(Acpi, MadtLapicOverride)
{
    Firmware fw;
    build(fw);
    // Replace the trailing unknown entry (4 bytes) and grow the table by 8
    // for a type 5 entry (12 bytes).
    u8 *m = tbl(fw, APIC);
    u32 len = len_of(m);
    Bytes &reg = fw.mem.regions[0].bytes;
    size_t e = APIC - BASE + len - 4;
    put(reg, e, 5, 1); put(reg, e + 1, 12, 1); put(reg, e + 2, 0, 2); put(reg, e + 4, 0xfee0000000ull, 8);
    put(reg, APIC - BASE + 4, len + 8, 4);
    fix_checksum(m, len + 8);
    auto r = parse(fw);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->madt.err, Err::none);
    EXPECT_EQ(r->madt.lapic_addr, 0xfee0000000ull);
}

TEST(Acpi, ManyCpus)
{
    Firmware fw;
    build(fw);
    Bytes b;
    app(b, 0xfee00000, 4);
    app(b, 0, 4);
    for (u32 i = 0; i < 300; i++) {
        app(b, 9, 1); app(b, 16, 1); app(b, 0, 2); app(b, i, 4); app(b, 1, 4); app(b, i, 4);
    }
    Bytes t = table("APIC", 5, b);
    fw.mem.add(0x1000000, t);
    put(fw.mem.regions[0].bytes, XSDT - BASE + 36 + 8, 0x1000000, 8);
    fix_checksum(tbl(fw, XSDT), 36 + 5 * 8);
    auto r = parse(fw);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->madt.cpu_count, Madt::MAX_CPUS);
    EXPECT_EQ(r->madt.usable_cpus, Madt::MAX_CPUS);
    EXPECT_TRUE(r->madt.cpus_truncated);
    EXPECT_EQ(r->madt.err, Err::none);
}

TEST(Acpi, TruncatedFadtRevision1)
{
    Firmware fw;
    build(fw, 2, 116);
    auto r = parse(fw);
    ASSERT_TRUE(r.ok());
    const Fadt &f = r->fadt;
    ASSERT_TRUE(f.present);
    EXPECT_EQ(f.length, 116u);
    EXPECT_EQ(f.revision, 1);
    EXPECT_EQ(f.flags, (1u << 8) | (1u << 10));
    EXPECT_FALSE(f.has_reset);                      // the flag says yes, the table has no room
    EXPECT_EQ(f.reset_reg.address, 0u);
    EXPECT_EQ(f.x_pm_tmr_blk.address, 0u);
    EXPECT_EQ(f.iapc_boot_arch, 0);                 // reserved in ACPI 1.0
    EXPECT_EQ(f.dsdt, DSDT);                        // 32-bit field
    EXPECT_EQ(f.pm_timer().address, 0x608u);        // from the I/O port
    EXPECT_EQ(f.pm_timer().space, Gas::SYSTEM_IO);
    EXPECT_EQ(f.pm1a_cnt().address, 0x604u);
    EXPECT_NE(r->find("DSDT"), nullptr);

    // Very short: ends before the PM timer block.
    Firmware fw2;
    build(fw2, 2, 60);
    r = parse(fw2);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->fadt.present);
    EXPECT_EQ(r->fadt.sci_int, 9);
    EXPECT_EQ(r->fadt.pm_tmr_blk, 0u);
    EXPECT_EQ(r->fadt.pm_timer().address, 0u);
}

TEST(Acpi, FadtHwReducedAndXDsdt)
{
    Firmware fw;
    build(fw);
    u8 *f = tbl(fw, FACP);
    Bytes &reg = fw.mem.regions[0].bytes;
    put(reg, FACP - BASE + 112, 1u << 20, 4);       // HW_REDUCED_ACPI only
    put(reg, FACP - BASE + 40, 0x1234000, 4);       // 32-bit DSDT differs: X_DSDT wins
    fix_checksum(f, 276);
    auto r = parse(fw);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->fadt.hw_reduced());
    EXPECT_EQ(r->fadt.pm_timer().address, 0u);
    EXPECT_FALSE(r->fadt.has_reset);
    EXPECT_EQ(r->fadt.dsdt, DSDT);
}

TEST(Acpi, McfgMalformedEntry)
{
    Firmware fw;
    build(fw);
    u8 *m = tbl(fw, MCFG);
    m[44 + 10] = 0x80;                              // start bus 0x80 > end bus 0x10
    m[44 + 11] = 0x10;
    fix_checksum(m, len_of(m));
    auto r = parse(fw);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->mcfg.present);
    EXPECT_EQ(r->mcfg.err, Err::invalid);
    EXPECT_EQ(r->mcfg.count, 0u);
}

TEST(Acpi, DuplicateRootEntries)
{
    Firmware fw;
    build(fw);
    put(fw.mem.regions[0].bytes, XSDT - BASE + 36 + 8, FACP, 8);   // FACP twice, no APIC
    fix_checksum(tbl(fw, XSDT), 36 + 5 * 8);
    auto r = parse(fw);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->find("FACP", 1), nullptr);
    EXPECT_EQ(r->table_count, 5u);
}

TEST(Acpi, RandomCorruptionNeverCrashes)
{
    Firmware pristine;
    build(pristine);
    const Bytes region = pristine.mem.regions[0].bytes;
    std::mt19937_64 rng(0xac91);
    int ok = 0, madt_err = 0;
    for (int iter = 0; iter < 20000; iter++) {
        Firmware fw;
        fw.mem.add(BASE, region);
        fw.rsdp = pristine.rsdp;
        Bytes &reg = fw.mem.regions[0].bytes;

        // Hit the tables (mostly their headers and MADT entries), sometimes the RSDP.
        int flips = 1 + int(rng() % 8);
        for (int i = 0; i < flips; i++) {
            size_t at;
            if (rng() % 16 == 0) {
                at = rng() % fw.rsdp.size();
                fw.rsdp[at] = u8(rng());
                continue;
            }
            u64 t = TABLES[rng() % std::size(TABLES)] - BASE;
            at = t + (rng() % 2 ? rng() % 48 : rng() % 0x200);
            if (at >= reg.size()) continue;
            switch (rng() % 4) {
            case 0: reg[at] ^= u8(1u << (rng() % 8)); break;
            case 1: reg[at] = u8(rng()); break;
            case 2: reg[at] = 0; break;
            case 3: reg[at] = 0xff; break;
            }
        }
        // Usually re-sign the tables so the corruption reaches the decoders.
        if (rng() % 4) {
            for (u64 t : TABLES) {
                size_t off = t - BASE;
                u32 len = len_of(&reg[off]);
                if (len >= 10 && len <= reg.size() - off) fix_checksum(&reg[off], len);
            }
            if (rng() % 2) {
                fw.rsdp[8] = 0; fw.rsdp[8] = u8(-sum(fw.rsdp.data(), 20));
                fw.rsdp[32] = 0;
                u32 l = len_of(fw.rsdp.data() + 16);
                if (l >= 36 && l <= fw.rsdp.size()) fw.rsdp[32] = u8(-sum(fw.rsdp.data(), l));
            }
        }
        if (rng() % 32 == 0)
            fw.rsdp.resize(rng() % 37);

        std::unique_ptr<u8[]> rs(new u8[fw.rsdp.size()]);
        memcpy(rs.get(), fw.rsdp.data(), fw.rsdp.size());
        auto r = std::make_unique<Acpi>();
        Status s = acpi_parse(fw.mem, rs.get(), fw.rsdp.size(), *r);
        ASSERT_LT(fw.mem.maps, 4096);
        if (!s) continue;
        ok++;
        const Acpi &a = *r;
        ASSERT_LE(a.table_count, Acpi::MAX_TABLES);
        ASSERT_LE(a.madt.cpu_count, Madt::MAX_CPUS);
        ASSERT_LE(a.madt.usable_cpus, a.madt.cpu_count);
        ASSERT_LE(a.madt.ioapic_count, Madt::MAX_IOAPICS);
        ASSERT_LE(a.madt.override_count, Madt::MAX_OVERRIDES);
        ASSERT_LE(a.madt.lapic_nmi_count, Madt::MAX_LAPIC_NMIS);
        ASSERT_LE(a.mcfg.count, Mcfg::MAX);
        for (usize i = 0; i < a.table_count; i++)
            ASSERT_GE(a.tables[i].length, 36u);
        madt_err += a.madt.err != Err::none;
    }
    EXPECT_GT(ok, 1000);
    EXPECT_GT(madt_err, 10);            // the MADT decoder did see damage
}

// A guest's ACPI tables (see guest_acpi.hpp for what they say and why).
//
// Layout of the blob, every table 8-byte aligned:
//   RSDP | XSDT | RSDT | FACP | APIC | DSDT
// Tables are written in that order with zero placeholders for the pointers
// between them; once everything is in place the pointers are patched and
// the checksums computed last.
//
// The DSDT's AML comes from the two-pass emitter of aml.hpp.
#include "kernel/guest/guest_acpi.hpp"
#include "kernel/guest/aml.hpp"

namespace {

using Out = aml::AcpiOut;
using aml::Aml;
using aml::AmlSizes;

constexpr u32 HDR = 36;                     // standard description header
constexpr u64 FOUR_GIB = 0x100000000ull;

u8 sum(const u8 *p, usize n)
{
    u8 s = 0;
    for (usize i = 0; i < n; i++) s = static_cast<u8>(s + p[i]);
    return s;
}

// ---------------------------------------------------------------- tables

// Standard header with length and checksum left zero; returns the table's offset.
usize table_begin(Out &o, const char *sig, u8 revision)
{
    o.align(8);
    const usize start = o.pos();
    o.chars(sig, 4);
    o.le(0, 4);                     // length: table_end
    o.b(revision);
    o.b(0);                         // checksum: finish
    o.chars("KEEL  ", 6);           // OEM ID
    o.chars("KEELVM  ", 8);         // OEM table ID
    o.le(1, 4);                     // OEM revision
    o.chars("KEEL", 4);             // creator ID
    o.le(1, 4);                     // creator revision
    return start;
}

void table_end(Out &o, usize start) { o.patch(start + 4, o.pos() - start, 4); }

// Checksum a finished table in place (its length field is final).
void table_checksum(Out &o, usize start)
{
    u8 *t = o.at(start);
    const u32 len = static_cast<u32>(t[4] | t[5] << 8 | t[6] << 16 | static_cast<u32>(t[7]) << 24);
    t[9] = 0;
    t[9] = static_cast<u8>(-sum(t, len));
}

// Generic Address Structure for a byte-wide I/O register; all zero (absent) for port 0.
void gas_io8(Out &o, u16 port)
{
    if (!port) return o.zeros(12);
    o.b(1);         // system I/O
    o.b(8);         // bit width
    o.b(0);         // bit offset
    o.b(1);         // access size: byte
    o.le(port, 8);
}

// The same for a dword-wide I/O register (the PM timer).
void gas_io32(Out &o, u16 port)
{
    if (!port) return o.zeros(12);
    o.b(1);         // system I/O
    o.b(32);        // bit width
    o.b(0);         // bit offset
    o.b(3);         // access size: dword
    o.le(port, 8);
}

// FADT (ACPI 6.3: revision 6, minor 3, 276 bytes).
enum : u32 {
    F_DSDT = 40, F_FLAGS = 112, F_X_DSDT = 140, FADT_LEN = 276,
};
enum : u32 {
    FF_PWR_BUTTON = 1u << 4,        // no fixed-feature power button
    FF_SLP_BUTTON = 1u << 5,        // no fixed-feature sleep button
    FF_RESET_REG_SUP = 1u << 10,
    FF_APIC_PHYSICAL = 1u << 19,    // FORCE_APIC_PHYSICAL_DESTINATION_MODE
    FF_HW_REDUCED = 1u << 20,
};
enum : u16 { BA_VGA_NOT_PRESENT = 1u << 2, BA_CMOS_RTC_NOT_PRESENT = 1u << 5 };

usize fadt(Out &o, const GuestAcpiConfig &c)
{
    const usize t = table_begin(o, "FACP", 6);
    o.le(0, 4);                     // 36 FIRMWARE_CTRL: no FACS on HW-reduced
    o.le(0, 4);                     // 40 DSDT: patched
    o.b(0);                         // 44 reserved
    o.b(0);                         // 45 preferred PM profile: unspecified
    o.le(0, 2);                     // 46 SCI_INT: none
    o.le(0, 4);                     // 48 SMI_CMD: none (always in ACPI mode)
    o.zeros(4);                     // 52 ACPI_ENABLE, ACPI_DISABLE, S4BIOS_REQ, PSTATE_CNT
    o.zeros(20);                    // 56 PM1a/b EVT, PM1a/b CNT, PM2 CNT blocks
    o.le(c.pm_timer_port, 4);       // 76 PM_TMR_BLK
    o.zeros(8);                     // 80 GPE0, GPE1 blocks
    o.zeros(3);                     // 88 PM1_EVT_LEN, PM1_CNT_LEN, PM2_CNT_LEN
    o.b(c.pm_timer_port ? 4 : 0);   // 91 PM_TMR_LEN
    o.zeros(4);                     // 92 GPE0/1 lengths, GPE1_BASE, CST_CNT
    o.zeros(8);                     // 96 P_LVL2/3_LAT, FLUSH_SIZE/STRIDE
    o.zeros(5);                     // 104 DUTY_OFFSET/WIDTH, DAY/MON_ALRM, CENTURY
    u16 boot_arch = BA_VGA_NOT_PRESENT;     // no LEGACY_DEVICES, no 8042
    if (!c.cmos_rtc) boot_arch |= BA_CMOS_RTC_NOT_PRESENT;
    o.le(boot_arch, 2);             // 109 IAPC_BOOT_ARCH
    o.b(0);                         // 111 reserved
    u32 flags = FF_PWR_BUTTON | FF_SLP_BUTTON | FF_APIC_PHYSICAL | FF_HW_REDUCED;
    if (c.reset_port) flags |= FF_RESET_REG_SUP;
    o.le(flags, 4);                 // 112 flags
    gas_io8(o, c.reset_port);       // 116 RESET_REG
    o.b(c.reset_port ? c.reset_value : 0);  // 128 RESET_VALUE
    o.le(0, 2);                     // 129 ARM_BOOT_ARCH
    o.b(3);                         // 131 FADT minor version
    o.le(0, 8);                     // 132 X_FIRMWARE_CTRL
    o.le(0, 8);                     // 140 X_DSDT: patched
    o.zeros(5 * 12);                // 148 X_PM1a/b EVT, X_PM1a/b CNT, X_PM2 CNT
    gas_io32(o, c.pm_timer_port);   // 208 X_PM_TMR_BLK
    o.zeros(2 * 12);                // 220 X_GPE0/1
    gas_io8(o, c.sleep_ctl_port);   // 244 SLEEP_CONTROL_REG
    gas_io8(o, c.sleep_sts_port);   // 256 SLEEP_STATUS_REG
    o.chars("KEEL\0\0\0\0", 8);     // 268 hypervisor vendor identity
    if (o.ok() && o.pos() - t != FADT_LEN) o.fail(Err::range);
    table_end(o, t);
    return t;
}

// MADT (revision 5, ACPI 6.3).
usize madt(Out &o, const GuestAcpiConfig &c)
{
    const usize t = table_begin(o, "APIC", 5);
    o.le(c.lapic_base, 4);          // local interrupt controller address
    o.le(c.pcat_compat ? 1 : 0, 4); // flags: PCAT_COMPAT (8259s present, to be masked)
    for (u32 i = 0; i < c.vcpus; i++) {
        o.b(0);                     // processor local APIC
        o.b(8);
        o.b(static_cast<u8>(i));    // ACPI processor UID
        o.b(static_cast<u8>(i));    // APIC ID
        o.le(1, 4);                 // enabled
    }
    o.b(1);                         // I/O APIC
    o.b(12);
    o.b(c.ioapic_id);
    o.b(0);
    o.le(c.ioapic_base, 4);
    o.le(c.ioapic_gsi_base, 4);
    o.b(4);                         // local APIC NMI
    o.b(6);
    o.b(0xff);                      // all processors
    o.le(0, 2);                     // MPS INTI flags: conforming
    o.b(1);                         // LINT1
    table_end(o, t);
    return t;
}

// MCFG (PCI Firmware 3.2, 4.1.2): one ECAM allocation, segment 0, bus 0.
usize mcfg(Out &o, const GuestAcpiConfig &c)
{
    const usize t = table_begin(o, "MCFG", 1);
    o.zeros(8);                     // reserved
    o.le(c.pci.ecam_base, 8);
    o.le(0, 2);                     // PCI segment group
    o.b(0);                         // start bus
    o.b(0);                         // end bus
    o.zeros(4);
    table_end(o, t);
    return t;
}

// ---------------------------------------------------------------- DSDT

static_assert(GuestAcpiConfig::MAX_VIRTIO <= 10, "device names VRT0..VRT9");

// The host bridge (PCI Firmware 3.2, 4.1; ACPI 6.5, 6.2.13 _PRT) and the
// motherboard resource that reserves its ECAM window.
void pci_devices(Aml &a, const GuestAcpiConfig &c)
{
    const GuestAcpiConfig::Pci &p = c.pci;
    const Aml::Pkg d = a.device_begin("PCI0");
    a.name("_HID");
    a.eisa_id("PNP0A08");           // PCI Express root bridge
    a.name("_CID");
    a.eisa_id("PNP0A03");           // compatible: PCI root bridge
    a.name("_SEG");
    a.integer(0);
    a.name("_BBN");
    a.integer(0);
    a.name("_UID");
    a.integer(0);
    a.name("_CRS");
    const Aml::BufferMark crs = a.buffer_begin();
    a.rd_word_bus(0, 0);
    a.rd_io16(0xcf8, 0xcf8, 1, 8);  // the configuration ports (Linux drops it from the windows)
    if (p.mmio32_size) a.rd_dword_mem(p.mmio32_base, p.mmio32_base + (p.mmio32_size - 1));
    if (p.mmio64_size) a.rd_qword_mem(p.mmio64_base, p.mmio64_base + (p.mmio64_size - 1));
    a.rd_end();
    a.buffer_end(crs);
    // Package { address (device << 16 | 0xFFFF: any function), pin (0 = INTA), source (0: a GSI), GSI }
    const u32 routed = p.devices > 1 ? p.devices - 1 : 0;
    a.name("_PRT");
    const Aml::Pkg prt = a.package_begin(static_cast<u8>(routed * 4));
    for (u32 dev = 1; dev <= routed; dev++)
        for (u32 pin = 0; pin < 4; pin++) {
            const Aml::Pkg e = a.package_begin(4);
            a.integer(dev << 16 | 0xffff);
            a.integer(pin);
            a.integer(0);
            a.integer(p.intx_gsi_base + (dev + pin) % 4);
            a.package_end(e);
        }
    a.package_end(prt);
    a.block_end(d);

    const Aml::Pkg r = a.device_begin("RES0");
    a.name("_HID");
    a.eisa_id("PNP0C02");           // motherboard resources
    a.name("_UID");
    a.integer(0);
    a.name("_CRS");
    const Aml::BufferMark rcrs = a.buffer_begin();
    a.rd_mem32_fixed(false, static_cast<u32>(p.ecam_base), 1u << 20);
    a.rd_end();
    a.buffer_end(rcrs);
    a.block_end(r);
}

// The DSDT's definition block (everything after the header).
void dsdt_body(Aml &a, const GuestAcpiConfig &c)
{
    const Aml::Pkg sb = a.scope_begin("\\_SB_");
    if (c.com1) {
        const Aml::Pkg d = a.device_begin("COM1");
        a.name("_HID");
        a.eisa_id("PNP0501");
        a.name("_UID");
        a.integer(0);
        a.name("_CRS");
        const Aml::BufferMark crs = a.buffer_begin();
        a.rd_io16(0x3f8, 0x3f8, 1, 8);
        a.rd_interrupt(true, false, false, c.ioapic_gsi_base + 4);
        a.rd_end();
        a.buffer_end(crs);
        a.block_end(d);
    }
    for (u32 i = 0; i < c.nvirtio; i++) {
        const GuestAcpiConfig::MmioDevice &v = c.virtio[i];
        const char name[5] = {'V', 'R', 'T', static_cast<char>('0' + i), 0};
        const Aml::Pkg d = a.device_begin(name);
        a.name("_HID");
        a.string("LNRO0005");
        a.name("_UID");
        a.integer(i);
        a.name("_CCA");             // cache-coherent DMA
        a.integer(1);
        a.name("_CRS");
        const Aml::BufferMark crs = a.buffer_begin();
        a.rd_mem32_fixed(true, static_cast<u32>(v.base), v.size);
        a.rd_interrupt(false, false, false, v.gsi);
        a.rd_end();
        a.buffer_end(crs);
        a.block_end(d);
    }
    if (c.pci.ecam_base) pci_devices(a, c);
    a.block_end(sb);

    a.name("\\_S5_");
    const Aml::Pkg pkg = a.package_begin(4);
    a.integer(c.s5_slp_typ);
    a.integer(0);
    a.integer(0);
    a.integer(0);
    a.package_end(pkg);
}

usize dsdt(Out &o, const GuestAcpiConfig &c)
{
    const usize t = table_begin(o, "DSDT", 2);    // revision 2: 64-bit integers
    AmlSizes sizes{};
    Out counter = Out::counter();
    {
        Aml measure(counter, sizes);
        dsdt_body(measure, c);
    }
    if (!counter.ok()) {
        o.fail(counter.err());
        return t;
    }
    Aml emit(o, sizes);
    dsdt_body(emit, c);
    if (o.ok() && !emit.complete()) o.fail(Err::range);
    table_end(o, t);
    return t;
}

// ---------------------------------------------------------------- checks

bool below_4g(u64 base, u64 size) { return base < FOUR_GIB && size <= FOUR_GIB - base; }

Status validate(const GuestAcpiConfig &c)
{
    if (c.vcpus < 1 || c.vcpus > GuestAcpiConfig::MAX_VCPUS) return Err::invalid;
    if (c.nvirtio > GuestAcpiConfig::MAX_VIRTIO) return Err::invalid;
    if (c.s5_slp_typ > 7) return Err::invalid;
    if (c.base & (PAGE_SIZE - 1) || c.base >= FOUR_GIB) return Err::invalid;
    if (c.lapic_base >= FOUR_GIB || c.ioapic_base >= FOUR_GIB) return Err::invalid;
    // The IOAPIC's GSIs must be representable: base + pins - 1 <= 2^32 - 1.
    if (c.ioapic_pins < 1 || c.ioapic_pins > 240 || c.ioapic_gsi_base > 0xffffffff - (c.ioapic_pins - 1))
        return Err::invalid;
    if (c.com1 && c.ioapic_pins <= 4) return Err::invalid;
    const u64 com1_gsi = u64{c.ioapic_gsi_base} + 4;
    for (u32 i = 0; i < c.nvirtio; i++) {
        const GuestAcpiConfig::MmioDevice &v = c.virtio[i];
        if (!v.size || !below_4g(v.base, v.size)) return Err::invalid;
        if (v.gsi < c.ioapic_gsi_base || v.gsi - c.ioapic_gsi_base >= c.ioapic_pins) return Err::invalid;
        if (c.com1 && v.gsi == com1_gsi) return Err::invalid;
        for (u32 j = 0; j < i; j++) {
            const GuestAcpiConfig::MmioDevice &w = c.virtio[j];
            if (v.base < w.base + w.size && w.base < v.base + v.size) return Err::invalid;
        }
    }
    if (const GuestAcpiConfig::Pci &p = c.pci; p.ecam_base) {
        if (p.ecam_base & 0xfffff || !below_4g(p.ecam_base, 1u << 20)) return Err::invalid;
        if (p.mmio32_size && !below_4g(p.mmio32_base, p.mmio32_size)) return Err::invalid;
        if (p.mmio64_size && (p.mmio64_base < FOUR_GIB || p.mmio64_base + (p.mmio64_size - 1) < p.mmio64_base))
            return Err::invalid;
        if (p.devices > 32) return Err::invalid;
        if (p.intx_gsi_base < c.ioapic_gsi_base || p.intx_gsi_base - c.ioapic_gsi_base + 4 > c.ioapic_pins)
            return Err::invalid;
    }
    return {};
}

} // namespace

Result<GuestAcpiLayout> build_guest_acpi(const GuestAcpiConfig &c, u8 *buf, usize cap)
{
    KEEL_TRY(validate(c));
    if (!buf) return Err::invalid;
    Out o(buf, cap);

    // RSDP (ACPI 2.0+, 36 bytes), pointers and checksums filled in below.
    o.chars("RSD PTR ", 8);
    o.b(0);                         // 8 checksum of the first 20 bytes
    o.chars("KEEL  ", 6);           // 9 OEM ID
    o.b(2);                         // 15 revision
    o.le(0, 4);                     // 16 RSDT address
    o.le(36, 4);                    // 20 length
    o.le(0, 8);                     // 24 XSDT address
    o.b(0);                         // 32 extended checksum
    o.zeros(3);

    const usize xsdt = table_begin(o, "XSDT", 1);
    o.le(0, 8);                     // FACP
    o.le(0, 8);                     // APIC
    const bool pci = c.pci.ecam_base != 0;
    if (pci) o.le(0, 8);            // MCFG
    table_end(o, xsdt);
    const usize rsdt = table_begin(o, "RSDT", 1);
    o.le(0, 4);
    o.le(0, 4);
    if (pci) o.le(0, 4);
    table_end(o, rsdt);
    const usize facp = fadt(o, c);
    const usize apic = madt(o, c);
    const usize mcfg_at = pci ? mcfg(o, c) : 0;
    const usize dsdt_at = dsdt(o, c);
    if (!o.ok()) return o.err();

    const u64 size = o.pos();
    if (size > FOUR_GIB - c.base) return Err::invalid;    // pointers are 32-bit too

    o.patch(16, c.base + rsdt, 4);
    o.patch(24, c.base + xsdt, 8);
    o.patch(xsdt + HDR, c.base + facp, 8);
    o.patch(xsdt + HDR + 8, c.base + apic, 8);
    o.patch(rsdt + HDR, c.base + facp, 4);
    o.patch(rsdt + HDR + 4, c.base + apic, 4);
    if (pci) {
        o.patch(xsdt + HDR + 16, c.base + mcfg_at, 8);
        o.patch(rsdt + HDR + 8, c.base + mcfg_at, 4);
    }
    o.patch(facp + F_DSDT, c.base + dsdt_at, 4);
    o.patch(facp + F_X_DSDT, c.base + dsdt_at, 8);
    if (!o.ok()) return o.err();

    const usize tables[] = {xsdt, rsdt, facp, apic, dsdt_at};
    for (usize t : tables) table_checksum(o, t);
    if (pci) table_checksum(o, mcfg_at);
    u8 *r = o.at(0);
    r[8] = static_cast<u8>(-sum(r, 20));
    r[32] = static_cast<u8>(-sum(r, 36));

    return GuestAcpiLayout{c.base, size};
}

// ACPI static tables: RSDP -> XSDT/RSDT -> every table, validated, plus
// decoded MADT, FADT, HPET and MCFG. No AML: Keel never interprets the DSDT.
//
// Firmware tables are untrusted input. Every table is checksummed and
// length-checked before it is recorded, every field read is bounds-checked
// against the table's length, and a bad table is skipped and reported
// rather than failing the whole parse.
#pragma once

#include "kernel/lib/result.hpp"
#include "kernel/lib/types.hpp"

// Physical memory access, supplied by the caller (the kernel's mappings,
// or fake memory in tests). acpi_parse only dereferences the pointer
// returned by the most recent map() call, so an implementation may reuse a
// single mapping window.
struct AcpiMemory {
    // A pointer to `len` readable bytes at pa, or nullptr if that range is
    // not accessible. Not pure virtual so that the kernel needs no
    // __cxa_pure_virtual.
    virtual const u8 *map(PhysAddr pa, usize len) { return nullptr; }

protected:
    ~AcpiMemory() = default;    // never deleted through the interface
};

// Generic Address Structure.
struct Gas {
    enum : u8 { SYSTEM_MEMORY = 0, SYSTEM_IO = 1, PCI_CONFIG = 2 };
    u8  space;
    u8  bit_width;
    u8  bit_offset;
    u8  access_size;    // 0 undefined, 1 byte, 2 word, 3 dword, 4 qword
    u64 address;        // 0: not present
};

struct AcpiTable {
    char     sig[4];
    u32      length;
    PhysAddr pa;
};

struct AcpiBadTable {
    char     sig[4];    // zeroes if the header itself was unreadable
    Err      err;       // range: unmapped, invalid: bad length, bad_checksum
    PhysAddr pa;
};

struct MadtCpu {
    u32  apic_id;
    u32  uid;           // ACPI processor UID
    u32  flags;         // bit 0 enabled, bit 1 online capable (MADT rev >= 5)
    bool x2apic;        // from a type 9 entry
    bool usable;        // enabled, or may be brought online later
};

struct MadtIoapic {
    u8  id;
    u32 addr;
    u32 gsi_base;
};

struct MadtOverride {   // ISA IRQ `source` is wired to `gsi`
    u8  bus;
    u8  source;
    u16 flags;          // MPS INTI flags: polarity bits 0-1, trigger bits 2-3
    u32 gsi;
};

struct MadtNmiSource {
    u16 flags;
    u32 gsi;
};

struct MadtLapicNmi {
    static constexpr u32 ALL = 0xffffffff;
    u32 uid;            // processor UID, or ALL (type 4's 0xff is widened)
    u16 flags;
    u8  lint;           // LINT0 or LINT1
};

struct Madt {
    static constexpr usize MAX_CPUS = 256, MAX_IOAPICS = 16, MAX_OVERRIDES = 32,
                           MAX_NMI_SOURCES = 16, MAX_LAPIC_NMIS = 256;
    static constexpr u32 PCAT_COMPAT = 1;   // flags: dual 8259s present

    bool present;
    Err  err;           // none, or why parsing stopped early (entries before are kept)
    u8   revision;
    u64  lapic_addr;    // type 5 override applied
    u32  flags;

    MadtCpu cpus[MAX_CPUS];             // deduplicated by APIC id
    usize   cpu_count;
    usize   usable_cpus;                // of those stored
    usize   duplicate_cpus;             // entries dropped as repeated APIC ids
    bool    cpus_truncated;

    MadtIoapic ioapics[MAX_IOAPICS];
    usize      ioapic_count;
    MadtOverride overrides[MAX_OVERRIDES];
    usize        override_count;
    MadtNmiSource nmi_sources[MAX_NMI_SOURCES];
    usize         nmi_source_count;
    MadtLapicNmi lapic_nmis[MAX_LAPIC_NMIS];
    usize        lapic_nmi_count;
    bool         truncated;             // some IOAPIC/override/NMI entry did not fit
};

struct Fadt {
    static constexpr u32 TMR_VAL_EXT = 1u << 8;       // PM timer is 32 bits, not 24
    static constexpr u32 RESET_REG_SUP = 1u << 10;
    static constexpr u32 HW_REDUCED_ACPI = 1u << 20;
    // IAPC_BOOT_ARCH
    static constexpr u16 LEGACY_DEVICES = 1u << 0, HAS_8042 = 1u << 1,
                         VGA_NOT_PRESENT = 1u << 2, MSI_NOT_SUPPORTED = 1u << 3,
                         CMOS_RTC_NOT_PRESENT = 1u << 5;

    // Fields beyond a short (old) table's length read as zero.
    bool present;
    u8   revision;
    u32  length;
    u32  flags;
    u16  iapc_boot_arch;
    u16  sci_int;
    u32  smi_cmd;
    u8   acpi_enable, acpi_disable;
    u8   century;                       // CMOS index of the century, 0 if none

    u32  pm1a_evt_blk, pm1b_evt_blk;    // I/O ports, 0 if absent
    u32  pm1a_cnt_blk, pm1b_cnt_blk;
    u32  pm_tmr_blk;
    u8   pm1_evt_len, pm1_cnt_len, pm_tmr_len;

    bool has_reset;                     // RESET_REG_SUP and the fields exist
    Gas  reset_reg;
    u8   reset_value;

    u64  dsdt;                          // X_DSDT if non-zero, else DSDT
    u64  facs;                          // X_FIRMWARE_CTRL if non-zero, else FIRMWARE_CTRL

    Gas  x_pm1a_evt_blk, x_pm1b_evt_blk, x_pm1a_cnt_blk, x_pm1b_cnt_blk, x_pm_tmr_blk;
    Gas  sleep_control, sleep_status;   // HW-reduced sleep registers

    bool hw_reduced() const { return flags & HW_REDUCED_ACPI; }
    bool pm_timer_32bit() const { return flags & TMR_VAL_EXT; }
    // The PM timer as a GAS (X_ form preferred, else the I/O port);
    // address 0 if there is none (always so on HW-reduced platforms).
    Gas pm_timer() const;
    Gas pm1a_cnt() const;
    Gas pm1b_cnt() const;
};

struct Hpet {
    bool present;
    Err  err;
    Gas  base;
    u32  block_id;          // event timer block ID (PCI vendor, counts)
    u8   number;
    u16  min_tick;
    u8   page_protection;
};

struct McfgEntry {
    u64 base;               // ECAM base for bus 0 of this segment
    u16 segment;
    u8  start_bus, end_bus;
};

struct Mcfg {
    static constexpr usize MAX = 8;
    bool      present;
    Err       err;          // invalid if some entry was malformed (it is skipped)
    McfgEntry entries[MAX];
    usize     count;
    bool      truncated;
};

struct Acpi {
    static constexpr usize MAX_TABLES = 64, MAX_BAD = 16;

    u8       revision;      // RSDP revision
    char     oem_id[6];
    bool     xsdt;          // root is the XSDT (else the RSDT)
    Err      xsdt_err;      // why the XSDT was rejected in favour of the RSDT
    PhysAddr root;

    // Every valid table referenced by the root (and the FADT's DSDT).
    AcpiTable tables[MAX_TABLES];
    usize     table_count;
    bool      tables_truncated;
    // Tables that failed validation; bad_count may exceed MAX_BAD.
    AcpiBadTable bad[MAX_BAD];
    usize        bad_count;

    // Decoded from the first valid table with the signature.
    Madt madt;
    Fadt fadt;
    Hpet hpet;
    Mcfg mcfg;

    // The nth valid table with this signature (4 chars, e.g. "DMAR"), or nullptr.
    const AcpiTable *find(const char *sig, usize nth = 0) const;
};

// Parse from a copy of (or pointer to) the RSDP of rsdp_len readable bytes.
// The XSDT is used if the RSDP has revision >= 2, rsdp_len covers the v2
// fields and the address is non-zero; if the XSDT is unusable and there is
// an RSDT, the RSDT is used instead (xsdt_err says why).
// Errors (nothing usable): Err::invalid (bad RSDP, root table malformed),
// Err::bad_checksum (RSDP or root), Err::range (root unmapped),
// Err::not_found (no root address); after a fallback, the RSDT's error.
// Problems with individual tables are reported in Acpi::bad / per-table err.
// On error, `out` is partially filled and must not be used.
// Acpi is ~9 KiB: in the kernel prefer the out-parameter form with a static
// Acpi over Result<Acpi> (which copies it on the stack).
Status acpi_parse(AcpiMemory &mem, const u8 *rsdp, usize rsdp_len, Acpi &out);
Result<Acpi> acpi_parse(AcpiMemory &mem, const u8 *rsdp, usize rsdp_len);

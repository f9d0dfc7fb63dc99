// The ACPI DMA Remapping table (Intel VT-d 4.1, chapter 8): where the
// remapping hardware units are (DRHD), which devices each one translates
// (device scopes), and the memory the firmware keeps DMA-reachable for some
// devices behind the OS's back (RMRR).
//
// The table is untrusted input (a buggy or hostile firmware): every structure's
// length is checked against its minimum and against the table, every device
// scope against its structure, and an inconsistency fails the whole parse
// with what was wrong and where (a partly understood DMAR cannot be the basis
// of DMA isolation). Structure types Keel does not use (ATSR, RHSA, ANDD,
// SATC, and types defined later) are skipped by their length.
#pragma once

#include "kernel/lib/result.hpp"
#include "kernel/lib/types.hpp"

namespace dmar {

inline constexpr u32 MAX_UNITS = 16;       // DRHDs
inline constexpr u32 MAX_RMRRS = 32;
inline constexpr u32 MAX_SCOPES = 256;     // device scopes of DRHDs and RMRRs together
inline constexpr u32 MAX_PATH = 8;         // (device, function) hops in one scope

enum class ScopeType : u8 {
    endpoint = 1,          // a PCI endpoint
    bridge = 2,            // a PCI sub-hierarchy (everything below the bridge)
    ioapic = 3,
    hpet = 4,
    acpi = 5,              // an ACPI namespace device
};

struct Scope {
    ScopeType type;
    u8 enumeration_id;     // IOAPIC ID, HPET number, ACPI device number
    u8 start_bus;
    u8 n_path;             // 1..MAX_PATH
    struct Hop {
        u8 dev, fn;
    } path[MAX_PATH];
};

struct Unit {              // DRHD
    PhysAddr base;         // register set, 4 KiB aligned
    u16 segment;
    bool include_all;      // every device of the segment not claimed by another unit
    u8 size;               // register set: 2^size pages (0 on tables before VT-d 3.0: one page)
    u32 first_scope, n_scopes;   // into Dmar::scopes
};

struct Rmrr {
    u16 segment;
    PhysAddr base;         // 4 KiB aligned
    u64 limit;             // last byte, base <= limit, limit + 1 4 KiB aligned
    u32 first_scope, n_scopes;
};

struct Dmar {
    u8 host_address_width;     // the table's value + 1: DMA address bits
    bool intr_remap;           // interrupt remapping supported
    bool x2apic_opt_out;       // the firmware asks the OS not to use x2APIC mode
    bool dma_ctrl_opt_in;      // the firmware set up DMA protection before handing over
    Unit units[MAX_UNITS];
    u32 n_units;
    Rmrr rmrrs[MAX_RMRRS];
    u32 n_rmrrs;
    Scope scopes[MAX_SCOPES];
    u32 n_scopes;
    u32 skipped;               // structures of other types
};

struct Report {
    char msg[128];
};

// `t` is the whole table, header included, `len` its length (already
// checksummed by the ACPI walk). Err::invalid with the report saying what and
// at which offset; Err::unsupported when it holds more units, RMRRs or scopes
// than Keel keeps, or a path longer than MAX_PATH.
Status parse(const u8 *t, u32 len, Dmar &out, Report *why);

// The PCI function a scope's path names (8.3.1): from its start bus, each hop
// but the last is a bridge whose secondary bus number comes from
// `secondary(bus, dev, fn)` (the bridge's config register 0x19; a negative
// value: no bridge there). Err::not_found when a hop is not a bridge.
struct Bdf {
    u8 bus, dev, fn;
};
template <class Secondary>
Result<Bdf> resolve(const Scope &s, Secondary secondary)
{
    u8 bus = s.start_bus;
    for (u32 i = 0; i + 1 < s.n_path; i++) {
        const int sec = secondary(bus, s.path[i].dev, s.path[i].fn);
        if (sec < 0 || sec > 255) return Err::not_found;
        bus = u8(sec);
    }
    return Bdf{bus, s.path[s.n_path - 1].dev, s.path[s.n_path - 1].fn};
}

} // namespace dmar

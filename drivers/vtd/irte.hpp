// Intel VT-d interrupt remapping (VT-d 4.1, 5.1 and 9.10), portable: the
// remappable-format interrupt remapping table entry (IRTE) for a remapped
// (not posted) interrupt, the IRTA register value that points the unit at
// the table, and the MSI address/data a device must be given to raise the
// interrupt of entry N. Each entry validates its requester (SVT = 01,
// SQ = 00, the device's exact source-id), so a device can only raise the
// interrupts Keel programmed for it.
#pragma once

#include "drivers/vtd/vtd.hpp"
#include "kernel/lib/result.hpp"
#include "kernel/lib/types.hpp"

namespace vtd {

inline constexpr u32 IRTA = 0xb8;                   // Interrupt Remapping Table Address register (11.4.10.1)
inline constexpr u64 IRTA_EIME = 1ull << 11;         // x2APIC (32-bit) destination IDs
inline constexpr u32 GSTS_IRES = GCMD_IRE, GSTS_IRTPS = GCMD_SIRTP;

// IRTE, remappable format (9.10): low qword.
inline constexpr u64 IRTE_P = 1ull << 0, IRTE_FPD = 1ull << 1, IRTE_DM = 1ull << 2, IRTE_RH = 1ull << 3,
                     IRTE_TM = 1ull << 4;
inline constexpr unsigned IRTE_DLM_SHIFT = 5, IRTE_VECTOR_SHIFT = 16, IRTE_DST_SHIFT = 32,
                          IRTE_XAPIC_DST_SHIFT = 40;
// High qword: SID 15:0, SQ 17:16, SVT 19:18.
inline constexpr u64 IRTE_SVT_SID = 1ull << 18;      // verify the requester against SID and SQ
inline constexpr u32 IRTE_MAX_ENTRIES = 65536;

enum class Delivery : u8 { fixed = 0, lowest = 1, nmi = 4 };

// One remapped interrupt.
struct Remap {
    u8 vector = 0;
    u32 dest = 0;              // APIC ID: 8 bits in xAPIC mode, 32 in x2APIC mode
    bool x2apic = false;       // the table is in x2APIC mode (IRTA.EIME)
    bool logical = false;      // destination mode
    bool redirect = false;     // redirection hint (lowest priority among `dest`)
    bool level = false;        // trigger mode
    Delivery delivery = Delivery::fixed;
    u16 sid = 0;               // the only requester allowed: bus << 8 | devfn
};

// The IRTE, present. Err::invalid for a destination too wide for xAPIC mode,
// or a vector below 16 for fixed and lowest-priority delivery.
Result<Entry> irte(const Remap &r);

// The IRTA register: the table at `table` (4 KiB aligned) with `entries`
// (a power of two, 2..65536: entries = 2^(S+1)), x2APIC mode or not.
// Err::invalid otherwise.
Result<u64> irta(PhysAddr table, u32 entries, bool x2apic);

// The MSI message a device is given to raise entry `handle`'s interrupt
// (5.1.5.2, remappable format): address 0xFEE00000 with handle[14:0] in
// bits 19:5, the remappable-format bit 4, SHV in bit 3, handle[15] in
// bit 2. With `subhandle_valid` the unit adds the data's low 16 bits (a
// multi-message MSI's message number) to the handle; else data is 0.
struct MsiMessage {
    u32 addr_lo = 0, addr_hi = 0, data = 0;
};
inline constexpr u32 MSI_ADDR_BASE = 0xfee00000, MSI_ADDR_REMAPPABLE = 1u << 4, MSI_ADDR_SHV = 1u << 3;
MsiMessage remapped_msi(u16 handle, bool subhandle_valid = false);

} // namespace vtd

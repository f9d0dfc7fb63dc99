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

// Keel's interrupt remapping table: which entries are in use, and each
// entry's writes in the order the unit may read them (the unit reads an
// entry whenever an interrupt names it). A new entry's high half (its
// requester) is written before the low half that makes it present; a
// retarget changes only the low half, in one 64-bit store; a freed entry
// is made not present first. Not locked: the caller serialises, and
// invalidates the unit's interrupt entry cache for the handle after each
// change (Unit::invalidate_interrupt_entry).
class IrteTable {
public:
    static constexpr u32 MAX_ENTRIES = 1024;

    // `table`: `entries` zeroed entries (a power of two, 2..MAX_ENTRIES) that
    // the unit reads; x2APIC destinations or xAPIC ones (8 bits), as IRTA says.
    Status init(Entry *table, u32 entries, bool x2apic);
    u32 entries() const { return n_; }
    bool x2apic() const { return x2_; }
    u32 in_use() const { return used_count_; }

    // A present entry for `r` (its x2apic field is the table's), at the
    // lowest free handle: Err::busy when the table is full, Err::invalid for
    // what irte() refuses.
    Result<u16> alloc(Remap r);
    // The same entry, another destination and vector (Err::not_found: not allocated).
    Status retarget(u16 handle, u32 dest, u8 vector);
    // Not present again, the handle free (Err::not_found: not allocated).
    Status free(u16 handle);
    bool used(u16 handle) const { return handle < n_ && (used_[handle / 64] >> (handle % 64) & 1); }
    const Remap &remap(u16 handle) const { return remaps_[handle]; }

private:
    volatile Entry *t_ = nullptr;
    u32 n_ = 0;
    bool x2_ = false;
    u32 used_count_ = 0;
    u64 used_[MAX_ENTRIES / 64] = {};
    Remap remaps_[MAX_ENTRIES] = {};
};

} // namespace vtd

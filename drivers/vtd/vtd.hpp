// Intel VT-d DMA remapping (VT-d 4.1), portable: one remapping unit's
// registers (chapter 11) and the root and context tables (9.1-9.4, legacy
// mode) it walks, behind small interfaces like drivers/nvme's, so the host
// unit tests drive it against a simulated unit.
//
// Keel's policy is default deny: a device has a present context entry only
// when Keel gave it a domain (its own drives, later a guest's assigned
// device); every other device's DMA fails the root or context lookup and is
// recorded as a fault. Every wait on the unit is bounded.
#pragma once

#include "kernel/lib/device_io.hpp"
#include "kernel/lib/result.hpp"
#include "kernel/lib/types.hpp"

namespace vtd {

// Registers (11.4).
inline constexpr u32 VER = 0x00, CAP = 0x08, ECAP = 0x10, GCMD = 0x18, GSTS = 0x1c, RTADDR = 0x20, CCMD = 0x28,
                     FSTS = 0x34, FECTL = 0x38;
inline constexpr u32 GCMD_TE = 1u << 31, GCMD_SRTP = 1u << 30, GCMD_WBF = 1u << 27, GCMD_QIE = 1u << 26,
                     GCMD_IRE = 1u << 25, GCMD_SIRTP = 1u << 24, GCMD_CFI = 1u << 23;
// GSTS bits that are states (kept when writing GCMD); the others are one-shot commands.
inline constexpr u32 GSTS_STATES = 0x96ffffff;
inline constexpr u64 CCMD_ICC = 1ull << 63, CCMD_GLOBAL = 1ull << 61;
inline constexpr u64 IOTLB_IVT = 1ull << 63, IOTLB_GLOBAL = 1ull << 60, IOTLB_DOMAIN = 2ull << 60,
                     IOTLB_DR = 1ull << 49, IOTLB_DW = 1ull << 48;
inline constexpr u32 FSTS_PFO = 1u << 0, FSTS_PPF = 1u << 1, FSTS_IQE = 1u << 4, FSTS_ICE = 1u << 5, FSTS_ITE = 1u << 6;
inline constexpr u32 IQH = 0x80, IQT = 0x88, IQA = 0x90;
// Queued invalidation descriptors (6.5.2), 128 bits.
inline constexpr u64 QI_CONTEXT = 0x1, QI_IOTLB = 0x2, QI_IEC = 0x4, QI_WAIT = 0x5;
inline constexpr u64 QI_G_GLOBAL = 1ull << 4, QI_G_DOMAIN = 2ull << 4;
inline constexpr u64 QI_IOTLB_DW = 1ull << 6, QI_IOTLB_DR = 1ull << 7;
inline constexpr u64 QI_WAIT_SW = 1ull << 5;
// Interrupt entry cache invalidation (6.5.2.7): G (bit 4) 0 global, 1 index-selective; IM 31:27; IIDX 47:32.
inline constexpr u64 QI_IEC_INDEX = 1ull << 4;
inline constexpr u32 QI_ENTRIES = 256;   // one 4 KiB page of 16-byte descriptors
inline constexpr u32 FECTL_IM = 1u << 31;

struct Caps {
    u64 cap = 0, ecap = 0;
    u32 domains() const { return 1u << (4 + 2 * (cap & 7)); }
    bool rwbf() const { return cap >> 4 & 1; }           // write-buffer flush needed
    bool caching_mode() const { return cap >> 7 & 1; }   // not-present entries may be cached
    u32 sagaw() const { return u32(cap >> 8 & 0x1f); }
    u32 mgaw() const { return u32(cap >> 16 & 0x3f) + 1; }
    u32 fro() const { return u32(cap >> 24 & 0x3ff) * 16; }   // fault recording registers' offset
    u32 nfr() const { return u32(cap >> 40 & 0xff) + 1; }     // and their number
    bool coherent() const { return ecap & 1; }           // the unit snoops its table walks
    bool qi() const { return ecap >> 1 & 1; }
    bool ir() const { return ecap >> 3 & 1; }
    bool eim() const { return ecap >> 4 & 1; }           // x2APIC (32-bit) interrupt destinations
    bool pass_through() const { return ecap >> 6 & 1; }
    u32 iro() const { return u32(ecap >> 8 & 0x3ff) * 16; }   // IOTLB registers' offset
    bool four_level() const { return sagaw() & 4; }      // 48-bit, 4-level second-level tables
    bool three_level() const { return sagaw() & 2; }     // 39-bit, 3-level
};

// The unit's registers and the clock of its bounded waits (kernel/lib/device_io.hpp).
using Regs = dev::Regs;
using Clock = dev::Clock;

// Root and context entries (9.1, 9.3), 128 bits as two u64s.
struct Entry {
    u64 lo = 0, hi = 0;
};
inline constexpr u32 ENTRIES = 256;               // per table page: buses, or device/function
inline Entry root_entry(PhysAddr context_table) { return Entry{(context_table.raw() & ~0xfffull) | 1, 0}; }
// A second-level translated context entry: domain `did`, tables of `levels` (4: 48-bit, 3:
// 39-bit; AW = levels - 2) at `slpt`.
inline Entry context_entry(PhysAddr slpt, u16 did, unsigned levels = 4)
{
    return Entry{(slpt.raw() & ~0xfffull) | 1 /* P, FPD = 0, TT = 00 */, u64(did) << 8 | ((levels - 2) & 7)};
}
inline u8 devfn(u8 dev, u8 fn) { return u8(dev << 3 | fn); }

// One fault record (11.4.14), decoded.
struct Fault {
    u16 sid = 0;              // requester: bus << 8 | devfn
    u64 addr = 0;             // the page of the faulting request
    bool read = false;        // a read (DMA from memory), else a write
    u8 reason = 0;            // fault reason (appendix A)
    // An interrupt request's fault (reasons 0x20-0x2f): `addr` holds its
    // interrupt index in bits 63:48 (11.4.14, FI), `read` means nothing.
    bool interrupt() const { return reason >= 0x20 && reason < 0x30; }
    u16 index() const { return u16(addr >> 48); }
};
// A short phrase for the fault reasons Keel expects ("root entry not present").
const char *reason_text(u8 reason);

// Memory the unit reads or writes for Keel: a page, by host-physical address and pointer.
struct Page {
    PhysAddr pa;
    u8 *va = nullptr;
};

class Unit {
public:
    Unit(Regs &regs, Clock &clock) : regs_(regs), clock_(clock) {}

    // Read the capabilities. Err::unsupported without 4-level or 3-level second-level tables.
    Status probe();
    const Caps &caps() const { return caps_; }
    u32 version() const { return ver_; }

    // Translation on with this root table (9.1): the root pointer set, the
    // context cache and IOTLB invalidated globally, TE set; each step awaited
    // (bounded: Err::timeout, why() says which). With `queue` and `status`
    // (zeroed pages; the unit offers QI) invalidations go through the
    // invalidation queue from then on (6.5.2), each batch followed by a wait
    // descriptor whose status write to `status` Keel polls; without, through
    // the registers (6.5.1). A batch never holds more than a few descriptors,
    // and each is awaited, so the queue never fills.
    Status enable(PhysAddr root_table, Page queue = {}, Page status = {});
    bool queued() const { return q_.va != nullptr; }
    // The interrupt entry cache (QI only): Err::unsupported without the queue or ECAP.IR.
    Status invalidate_interrupt_cache();
    Status disable();
    // Interrupt remapping on (5.1, 10.4.4; needs ECAP.IR and the queue, so
    // after enable() with one): IRTA set to the table at `table` (4 KiB
    // aligned, `entries` a power of two, zeroed: every entry not present) in
    // x2APIC mode (EIME, which needs ECAP.EIM) or xAPIC mode; SIRTP and its
    // IRTPS awaited; the interrupt entry cache invalidated globally;
    // compatibility-format interrupts left blocked (CFI cleared if firmware
    // set it); IRE set and IRES awaited. Each wait bounded (Err::timeout,
    // why() says which); Err::unsupported without IR, the queue or EIM.
    Status enable_interrupt_remapping(PhysAddr table, u32 entries, bool x2apic);
    Status disable_interrupt_remapping();
    bool remapping_interrupts() const { return ir_on_; }
    // After one interrupt remapping table entry changed (index-selective, 6.5.2.7).
    Status invalidate_interrupt_entry(u16 index);
    // After a context entry changed from not present to present (or back).
    Status invalidate_context();
    // After a domain's mappings were removed or changed (a present entry).
    Status invalidate_iotlb(u16 did);
    // When the unit caches not-present entries (caching mode) or needs a write-buffer flush.
    Status flush_write_buffer();

    // Take the next recorded fault (clearing it), or false when none is left.
    // `overflowed` says faults were lost since the last call (PFO).
    bool next_fault(Fault &f, bool &overflowed);

    const char *why() const { return why_; }

private:
    Status command(u32 bit, u32 status_bit, bool on, const char *what);
    Status wait64(u32 off, u64 bit, const char *what);
    // Descriptors then a wait descriptor, and the wait for its status write.
    Status submit(const u64 (*desc)[2], u32 n, const char *what);

    Regs &regs_;
    Clock &clock_;
    Caps caps_;
    u32 ver_ = 0;
    u32 next_fr_ = 0;
    Page q_;                     // the invalidation queue, when on
    Page st_;                    // where wait descriptors write their status
    u32 tail_ = 0;               // next descriptor slot
    u32 seq_ = 0;                // the last wait descriptor's status value
    bool ir_on_ = false;         // interrupt remapping enabled by Keel
    const char *why_ = "";
    static constexpr u64 TIMEOUT_US = 100'000;
    static constexpr u64 MAX_POLLS = 1u << 24;
};

} // namespace vtd

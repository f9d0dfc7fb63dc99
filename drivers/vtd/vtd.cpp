// Intel VT-d DMA remapping: one unit's registers (VT-d 4.1, chapter 10-11).
#include "drivers/vtd/vtd.hpp"

#include "drivers/vtd/irte.hpp"

namespace vtd {

const char *reason_text(u8 r)
{
    switch (r) {
    case 0x01: return "root entry not present";
    case 0x02: return "context entry not present";
    case 0x03: return "invalid context entry";
    case 0x04: return "address beyond the domain's width";
    case 0x05: return "write to a read-only page";
    case 0x06: return "read of a write-only page";
    case 0x07: return "page table entry unreadable";
    case 0x08: return "root table unreadable";
    case 0x09: return "context table unreadable";
    case 0x0a: return "reserved bits in a root entry";
    case 0x0b: return "reserved bits in a context entry";
    case 0x0c: return "reserved bits in a page table entry";
    case 0x0d: return "translation type refused";
    // Interrupt remapping (irte.hpp).
    case 0x20: return "reserved bits in an interrupt request";
    case 0x21: return "interrupt index beyond the table";
    case 0x22: return "interrupt entry not present";
    case 0x23: return "interrupt remapping table unreadable";
    case 0x24: return "reserved bits in an interrupt entry";
    case 0x25: return "compatibility-format interrupt blocked";
    case 0x26: return "interrupt from a device the entry is not for";
    default: return "other";
    }
}

Status Unit::probe()
{
    ver_ = regs_.read32(VER);
    caps_.cap = regs_.read64(CAP);
    caps_.ecap = regs_.read64(ECAP);
    if (caps_.cap == ~0ull || caps_.ecap == ~0ull) {
        why_ = "registers read as all ones";
        return Err::invalid;
    }
    if (!caps_.four_level() && !caps_.three_level()) {
        why_ = "no 4-level (48-bit) or 3-level (39-bit) second-level tables (SAGAW)";
        return Err::unsupported;
    }
    return {};
}

// Global command and status (10.4.4): the state bits kept, one changed, its status awaited.
Status Unit::command(u32 bit, u32 status_bit, bool on, const char *what)
{
    const u32 keep = regs_.read32(GSTS) & GSTS_STATES & ~(GCMD_SRTP | GCMD_WBF | GCMD_SIRTP);
    regs_.write32(GCMD, on ? keep | bit : keep & ~bit);
    const u64 start = clock_.now_us();
    for (u64 polls = 0; polls < MAX_POLLS; polls++) {
        if (bool(regs_.read32(GSTS) & status_bit) == on) return {};
        if (clock_.now_us() - start > TIMEOUT_US) break;
        clock_.pause();
    }
    why_ = what;
    return Err::timeout;
}

Status Unit::wait64(u32 off, u64 bit, const char *what)
{
    const u64 start = clock_.now_us();
    for (u64 polls = 0; polls < MAX_POLLS; polls++) {
        if (!(regs_.read64(off) & bit)) return {};
        if (clock_.now_us() - start > TIMEOUT_US) break;
        clock_.pause();
    }
    why_ = what;
    return Err::timeout;
}

Status Unit::flush_write_buffer()
{
    if (!caps_.rwbf()) return {};
    // WBF is one-shot: set, and its status bit clears when done.
    const u32 keep = regs_.read32(GSTS) & GSTS_STATES & ~(GCMD_SRTP | GCMD_WBF | GCMD_SIRTP);
    regs_.write32(GCMD, keep | GCMD_WBF);
    const u64 start = clock_.now_us();
    for (u64 polls = 0; polls < MAX_POLLS; polls++) {
        if (!(regs_.read32(GSTS) & GCMD_WBF)) return {};
        if (clock_.now_us() - start > TIMEOUT_US) break;
        clock_.pause();
    }
    why_ = "write buffer flush did not complete";
    return Err::timeout;
}

// Queued invalidation (6.5.2): the descriptors at the tail, then a wait
// descriptor whose status write (a sequence number, to Keel's status page)
// says the unit has processed everything before it.
Status Unit::submit(const u64 (*desc)[2], u32 n, const char *what)
{
    auto *slots = reinterpret_cast<volatile u64 *>(q_.va);
    volatile u32 *status = reinterpret_cast<volatile u32 *>(st_.va);
    const u32 value = ++seq_ ? seq_ : ++seq_;
    *status = 0;
    auto put = [&](u64 lo, u64 hi) {
        slots[tail_ * 2] = lo;
        slots[tail_ * 2 + 1] = hi;
        tail_ = (tail_ + 1) % QI_ENTRIES;
    };
    for (u32 i = 0; i < n; i++) put(desc[i][0], desc[i][1]);
    put(QI_WAIT | QI_WAIT_SW | u64(value) << 32, st_.pa.raw());
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    regs_.write64(IQT, u64(tail_) << 4);
    const u64 start = clock_.now_us();
    for (u64 polls = 0; polls < MAX_POLLS; polls++) {
        if (*status == value) return {};
        const u32 fsts = regs_.read32(FSTS);
        if (fsts & (FSTS_IQE | FSTS_ITE | FSTS_ICE)) {
            if (fsts & FSTS_IQE) {
                // The unit stopped at the bad descriptor (IQH) and resumes
                // there once IQE is cleared (6.5.2.10): made a wait without a
                // status write (a no-op), so this batch ends and later ones run.
                const u32 bad = u32(regs_.read64(IQH) >> 4) % QI_ENTRIES;
                slots[bad * 2] = QI_WAIT;
                slots[bad * 2 + 1] = 0;
                __atomic_thread_fence(__ATOMIC_SEQ_CST);
            }
            regs_.write32(FSTS, fsts & (FSTS_IQE | FSTS_ITE | FSTS_ICE));
            why_ = fsts & FSTS_IQE ? "invalidation queue error" : "invalidation time-out";
            return Err::invalid;
        }
        if (clock_.now_us() - start > TIMEOUT_US) break;
        clock_.pause();
    }
    why_ = what;
    return Err::timeout;
}

Status Unit::invalidate_interrupt_cache()
{
    if (!caps_.ir()) {
        why_ = "no interrupt remapping on this unit";   // the descriptor type would be invalid (IQE)
        return Err::unsupported;
    }
    if (!queued()) {
        why_ = "interrupt entry cache invalidation needs the invalidation queue";
        return Err::unsupported;
    }
    const u64 d[1][2] = {{QI_IEC, 0}};   // global
    return submit(d, 1, "interrupt entry cache invalidation did not complete");
}

Status Unit::invalidate_interrupt_entry(u16 index)
{
    if (!caps_.ir() || !queued()) {
        why_ = !caps_.ir() ? "no interrupt remapping on this unit" : "interrupt entry invalidation needs the queue";
        return Err::unsupported;
    }
    const u64 d[1][2] = {{QI_IEC | QI_IEC_INDEX | u64(index) << 32 /* IM = 0: this entry only */, 0}};
    return submit(d, 1, "interrupt entry invalidation did not complete");
}

Status Unit::enable_interrupt_remapping(PhysAddr table, u32 entries, bool x2apic)
{
    if (!caps_.ir() || !queued()) {
        why_ = !caps_.ir() ? "no interrupt remapping on this unit"
                           : "interrupt remapping needs the invalidation queue";
        return Err::unsupported;
    }
    if (x2apic && !caps_.eim()) {
        why_ = "no x2APIC interrupt destinations on this unit (ECAP.EIM)";   // EIME is reserved then
        return Err::unsupported;
    }
    auto v = irta(table, entries, x2apic);
    if (!v) {
        why_ = "interrupt remapping table misaligned or of a bad size";
        return v.error();
    }
    // Firmware may have left remapping on with its own table: off first, so
    // nothing is remapped through a table that is being replaced.
    if (regs_.read32(GSTS) & GSTS_IRES)
        KEEL_TRY(command(GCMD_IRE, GSTS_IRES, false, "interrupt remapping disable not acknowledged"));
    ir_on_ = false;
    regs_.write64(IRTA, *v);
    // SIRTP is one-shot; IRTPS clears when it is written and is set once the pointer is latched.
    const u32 keep = regs_.read32(GSTS) & GSTS_STATES & ~(GCMD_SRTP | GCMD_WBF | GCMD_SIRTP);
    regs_.write32(GCMD, keep | GCMD_SIRTP);
    const u64 start = clock_.now_us();
    bool latched = false;
    for (u64 polls = 0; polls < MAX_POLLS && !latched; polls++) {
        latched = regs_.read32(GSTS) & GSTS_IRTPS;
        if (!latched && clock_.now_us() - start > TIMEOUT_US) break;
        if (!latched) clock_.pause();
    }
    if (!latched) {
        why_ = "interrupt remapping table pointer not latched";
        return Err::timeout;
    }
    // 10.4.4: a new table pointer is followed by a global interrupt entry cache invalidation.
    KEEL_TRY(invalidate_interrupt_cache());
    // Compatibility-format interrupts bypass the table: blocked (CFIS clear) unless firmware allowed them.
    if (regs_.read32(GSTS) & GCMD_CFI)
        KEEL_TRY(command(GCMD_CFI, GCMD_CFI, false, "compatibility-format interrupts not blocked"));
    KEEL_TRY(command(GCMD_IRE, GSTS_IRES, true, "interrupt remapping enable not acknowledged"));
    ir_on_ = true;
    return {};
}

Status Unit::disable_interrupt_remapping()
{
    KEEL_TRY(command(GCMD_IRE, GSTS_IRES, false, "interrupt remapping disable not acknowledged"));
    ir_on_ = false;
    return {};
}

Status Unit::invalidate_context()
{
    KEEL_TRY(flush_write_buffer());
    if (queued()) {
        const u64 d[1][2] = {{QI_CONTEXT | QI_G_GLOBAL, 0}};
        return submit(d, 1, "context cache invalidation did not complete");
    }
    regs_.write64(CCMD, CCMD_ICC | CCMD_GLOBAL);
    return wait64(CCMD, CCMD_ICC, "context cache invalidation did not complete");
}

Status Unit::invalidate_iotlb(u16 did)
{
    KEEL_TRY(flush_write_buffer());
    if (queued()) {
        const u64 d[1][2] = {{QI_IOTLB | QI_G_DOMAIN | QI_IOTLB_DR | QI_IOTLB_DW | u64(did) << 16, 0}};
        return submit(d, 1, "IOTLB invalidation did not complete");
    }
    const u32 reg = caps_.iro() + 8;
    regs_.write64(reg, IOTLB_IVT | IOTLB_DOMAIN | IOTLB_DR | IOTLB_DW | u64(did) << 32);
    return wait64(reg, IOTLB_IVT, "IOTLB invalidation did not complete");
}

Status Unit::enable(PhysAddr root, Page queue, Page status)
{
    // Faults are polled: the fault event interrupt stays masked.
    regs_.write32(FECTL, FECTL_IM);
    regs_.write64(RTADDR, root.raw() & ~0xfffull);   // TTM = 00: legacy root and context tables
    // SRTP is one-shot; RTPS says the pointer was latched.
    const u32 keep = regs_.read32(GSTS) & GSTS_STATES & ~(GCMD_SRTP | GCMD_WBF | GCMD_SIRTP);
    regs_.write32(GCMD, keep | GCMD_SRTP);
    const u64 start = clock_.now_us();
    bool latched = false;
    for (u64 polls = 0; polls < MAX_POLLS && !latched; polls++) {
        latched = regs_.read32(GSTS) & GCMD_SRTP;   // RTPS is bit 30, like SRTP
        if (!latched && clock_.now_us() - start > TIMEOUT_US) break;
        if (!latched) clock_.pause();
    }
    if (!latched) {
        why_ = "root table pointer not latched";
        return Err::timeout;
    }
    if (queue.va && status.va && caps_.qi()) {
        // The queue at its base, one page of 128-bit descriptors (QS = 0, DW = 0), head and tail at 0.
        regs_.write64(IQT, 0);
        regs_.write64(IQA, queue.pa.raw() & ~0xfffull);
        KEEL_TRY(command(GCMD_QIE, GCMD_QIE, true, "queued invalidation enable not acknowledged"));
        q_ = queue;
        st_ = status;
        tail_ = 0;
    }
    KEEL_TRY(invalidate_context());
    if (queued()) {
        const u64 d[1][2] = {{QI_IOTLB | QI_G_GLOBAL | QI_IOTLB_DR | QI_IOTLB_DW, 0}};
        KEEL_TRY(submit(d, 1, "global IOTLB invalidation did not complete"));
    } else {
        regs_.write64(caps_.iro() + 8, IOTLB_IVT | IOTLB_GLOBAL | IOTLB_DR | IOTLB_DW);
        KEEL_TRY(wait64(caps_.iro() + 8, IOTLB_IVT, "global IOTLB invalidation did not complete"));
    }
    return command(GCMD_TE, GCMD_TE, true, "translation enable not acknowledged");
}

Status Unit::disable() { return command(GCMD_TE, GCMD_TE, false, "translation disable not acknowledged"); }

bool Unit::next_fault(Fault &f, bool &overflowed)
{
    const u32 fsts = regs_.read32(FSTS);
    overflowed = fsts & FSTS_PFO;
    if (overflowed) regs_.write32(FSTS, FSTS_PFO);   // write 1 to clear
    const u32 n = caps_.nfr();
    for (u32 k = 0; k < n; k++) {
        const u32 i = (next_fr_ + k) % n;
        const u32 off = caps_.fro() + i * 16;
        const u64 hi = regs_.read64(off + 8);
        if (!(hi >> 63)) continue;
        const u64 lo = regs_.read64(off);
        f.sid = u16(hi);
        f.reason = u8(hi >> 32);
        f.read = hi >> 62 & 1;     // T: 1 read, 0 write (11.4.14; for legacy-mode requests)
        f.addr = lo & ~0xfffull;
        regs_.write32(off + 12, 1u << 31);   // F is write-1-to-clear
        next_fr_ = (i + 1) % n;
        return true;
    }
    if (fsts & FSTS_PPF) regs_.write32(FSTS, FSTS_PPF);
    return false;
}

} // namespace vtd

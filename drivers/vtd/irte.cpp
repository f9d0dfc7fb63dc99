// Intel VT-d interrupt remapping table entries (VT-d 4.1, 9.10) and the MSI
// messages that name them (5.1.5.2).
#include "drivers/vtd/irte.hpp"

namespace vtd {

Result<Entry> irte(const Remap &r)
{
    if (!r.x2apic && r.dest > 0xff) return Err::invalid;
    if (r.delivery != Delivery::nmi && r.vector < 16) return Err::invalid;
    Entry e;
    e.lo = IRTE_P | (r.logical ? IRTE_DM : 0) | (r.redirect ? IRTE_RH : 0) | (r.level ? IRTE_TM : 0) |
           u64(r.delivery) << IRTE_DLM_SHIFT | u64(r.vector) << IRTE_VECTOR_SHIFT;
    // IM (bit 15) = 0: remapped, not posted. xAPIC mode: the 8-bit ID in DST[15:8], bits 47:40.
    e.lo |= r.x2apic ? u64(r.dest) << IRTE_DST_SHIFT : u64(r.dest & 0xff) << IRTE_XAPIC_DST_SHIFT;
    e.hi = IRTE_SVT_SID /* SQ = 00: all 16 bits compared */ | r.sid;
    return e;
}

Result<u64> irta(PhysAddr table, u32 entries, bool x2apic)
{
    if (table.raw() & 0xfff || entries < 2 || entries > IRTE_MAX_ENTRIES || (entries & (entries - 1)))
        return Err::invalid;
    const u32 s = u32(__builtin_ctz(entries)) - 1;   // entries = 2^(S+1)
    return table.raw() | (x2apic ? IRTA_EIME : 0) | s;
}

MsiMessage remapped_msi(u16 handle, bool subhandle_valid)
{
    MsiMessage m;
    m.addr_lo = MSI_ADDR_BASE | u32(handle & 0x7fff) << 5 | MSI_ADDR_REMAPPABLE |
                (subhandle_valid ? MSI_ADDR_SHV : 0) | u32(handle >> 15 & 1) << 2;
    return m;
}

Status IrteTable::init(Entry *table, u32 entries, bool x2apic)
{
    if (!table || entries < 2 || entries > MAX_ENTRIES || (entries & (entries - 1))) return Err::invalid;
    t_ = table;
    n_ = entries;
    x2_ = x2apic;
    used_count_ = 0;
    for (u64 &w : used_) w = 0;
    return {};
}

Result<u16> IrteTable::alloc(Remap r)
{
    r.x2apic = x2_;
    auto e = irte(r);
    if (!e) return e.error();
    for (u32 i = 0; i < n_; i++) {
        if (used(u16(i))) continue;
        used_[i / 64] |= 1ull << (i % 64);
        used_count_++;
        remaps_[i] = r;
        // The requester first; P, in the low half, last.
        t_[i].hi = e->hi;
        __atomic_thread_fence(__ATOMIC_RELEASE);
        t_[i].lo = e->lo;
        return u16(i);
    }
    return Err::busy;
}

Status IrteTable::retarget(u16 handle, u32 dest, u8 vector)
{
    if (!used(handle)) return Err::not_found;
    Remap r = remaps_[handle];
    r.dest = dest;
    r.vector = vector;
    auto e = irte(r);
    if (!e) return e.error();
    remaps_[handle] = r;
    t_[handle].lo = e->lo;   // the high half (requester) is unchanged: one 64-bit store
    return {};
}

Status IrteTable::free(u16 handle)
{
    if (!used(handle)) return Err::not_found;
    t_[handle].lo = 0;       // not present first
    __atomic_thread_fence(__ATOMIC_RELEASE);
    t_[handle].hi = 0;
    used_[handle / 64] &= ~(1ull << (handle % 64));
    used_count_--;
    remaps_[handle] = Remap{};
    return {};
}

} // namespace vtd

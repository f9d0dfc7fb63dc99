#include "kernel/guest/guest_paging.hpp"

namespace {

constexpr u64 P = 1, PS = 1u << 7;
constexpr u64 ADDR = 0x000ffffffffff000ull;

bool load(const GuestMemory &mem, u64 gpa, unsigned size, u64 &out, GuestWalk *walk)
{
    out = 0;
    if (!mem.read(GuestPhys(gpa), &out, size)) return false;
    if (walk && walk->n < 5) walk->at[walk->n] = gpa, walk->entry[walk->n++] = out;
    return true;
}

} // namespace

Result<u64> guest_translate(const GuestMemory &mem, const GuestPagingState &s, u64 linear, GuestWalk *walk)
{
    if (!(s.cr0 & (1ull << 31))) return linear;                 // paging off
    const bool pae = s.cr4 & (1u << 5), lma = s.efer & (1u << 10);
    u64 e;
    if (!pae) {                                                 // 32-bit: two levels, 4 MiB pages with PSE
        const u32 la = u32(linear);
        if (!load(mem, (s.cr3 & 0xfffff000) + (la >> 22) * 4, 4, e, walk)) return Err::range;
        if (!(e & P)) return Err::not_found;
        if ((e & PS) && (s.cr4 & (1u << 4)))
            return (e & 0xffc00000) | ((e >> 13) & 0xff) << 32 | (la & 0x3fffff);
        if (!load(mem, (e & 0xfffff000) + ((la >> 12) & 0x3ff) * 4, 4, e, walk)) return Err::range;
        if (!(e & P)) return Err::not_found;
        return (e & 0xfffff000) | (la & 0xfff);
    }
    const bool la57 = lma && (s.cr4 & (1u << 12));               // 5-level paging
    unsigned level = la57 ? 5 : lma ? 4 : 3;
    u64 table = lma ? s.cr3 & ADDR : s.cr3 & 0xffffffe0;
    if (!lma) linear &= 0xffffffff;
    for (;; level--) {
        const unsigned shift = 12 + 9 * (level - 1);
        const u64 index = (linear >> shift) & (level == 3 && !lma ? 3 : 511);
        if (!load(mem, table + index * 8, 8, e, walk)) return Err::range;
        if (!(e & P)) return Err::not_found;
        if (level == 1 || (level <= 3 && (e & PS) && !(level == 3 && !lma)))
            return (e & ADDR & ~((1ull << shift) - 1)) | (linear & ((1ull << shift) - 1));
        table = e & ADDR;
    }
}

Result<u64> guest_translate_regs(const GuestMemory &mem, u64 cr0, u64 cr3, u64 cr4, u64 efer, u64 linear)
{
    return guest_translate(mem, GuestPagingState{cr0, cr3, cr4, efer}, linear);
}

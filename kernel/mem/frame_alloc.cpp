// Buddy frame allocator, see frame_alloc.hpp.
#include "kernel/mem/frame_alloc.hpp"
#include "kernel/lib/new.hpp"

namespace {

constexpr u64 NONE = ~0ull;
constexpr unsigned NO_ORDER = ~0u;
constexpr u64 HIGH_FRAME = FrameAllocator::HIGH_MEMORY >> PAGE_SHIFT;

constexpr u64 words_for(u64 bits) { return (bits + 63) / 64; }
constexpr u64 mask_upto(unsigned b) { return b == 63 ? ~0ull : (2ull << b) - 1; }
inline unsigned msb(u64 w) { return 63 - __builtin_clzll(w); }    // w != 0

constexpr unsigned levels_for(u64 bits)
{
    unsigned l = 1;
    for (; bits > 64; bits = words_for(bits)) l++;
    return l;
}

// A zone as frame numbers [base, end).
struct Span {
    u64 base, end;
};

// The largest order of a naturally aligned block inside [base, end).
unsigned top_order(const Span &s)
{
    for (unsigned k = FrameAllocator::MAX_ORDER; k; k--)
        if (align_up(s.base, 1ull << k) + (1ull << k) <= s.end)
            return k;
    return 0;
}

// Calls fn(order, frame) for each maximal naturally aligned block tiling
// [b, e), left to right; no two of them are buddies. Stops when fn fails.
template <class F>
bool tile(u64 b, u64 e, F fn)
{
    while (b < e) {
        unsigned k = b ? min<unsigned>(__builtin_ctzll(b), FrameAllocator::MAX_ORDER)
                       : FrameAllocator::MAX_ORDER;
        while ((1ull << k) > e - b)
            k--;
        if (!fn(k, b))
            return false;
        b += 1ull << k;
    }
    return true;
}

bool valid_range(u64 base, u64 size)
{
    return !(base & (PAGE_SIZE - 1)) && !(size & (PAGE_SIZE - 1)) &&
           base < FrameAllocator::MAX_PHYS && size <= FrameAllocator::MAX_PHYS - base;
}

// Sort (selection, no scratch memory: firmware maps are short), validate and
// merge the ranges into at most MAX_ZONES spans.
Status collect(const MemRange *r, usize n, Span *out, usize &count)
{
    usize nonempty = 0, taken = 0;
    for (usize i = 0; i < n; i++) {
        if (!r[i].size)
            continue;
        if (!valid_range(r[i].base.raw(), r[i].size))
            return Err::invalid;
        nonempty++;
    }

    // Each step takes the lowest range starting at or after the end of the
    // previous one; a range that overlaps another is never taken.
    bool too_many = false;
    count = 0;
    for (u64 floor = 0;;) {
        const MemRange *best = nullptr;
        for (usize i = 0; i < n; i++)
            if (r[i].size && r[i].base.raw() >= floor && (!best || r[i].base.raw() < best->base.raw()))
                best = &r[i];
        if (!best)
            break;
        taken++;
        floor = best->base.raw() + best->size;
        u64 b = best->base.raw() >> PAGE_SHIFT, e = floor >> PAGE_SHIFT;
        if (count && out[count - 1].end == b)
            out[count - 1].end = e;
        else if (count == FrameAllocator::MAX_ZONES)
            too_many = true;
        else
            out[count++] = { b, e };
    }
    if (taken != nonempty)
        return Err::invalid;
    return too_many ? Err::range : Status();
}

} // namespace

void FrameAllocator::OrderMap::set(u64 i)
{
    // Propagate up only when a word turns non-empty.
    for (unsigned l = 0; l < nlevels; l++, i >>= 6) {
        u64 &w = lvl[l][i >> 6];
        bool was_empty = !w;
        w |= 1ull << (i & 63);
        if (!was_empty)
            return;
    }
}

void FrameAllocator::OrderMap::clear(u64 i)
{
    for (unsigned l = 0; l < nlevels; l++, i >>= 6) {
        u64 &w = lvl[l][i >> 6];
        w &= ~(1ull << (i & 63));
        if (w)
            return;
    }
}

// Index of the highest set bit at or below i, or NONE.
u64 FrameAllocator::OrderMap::find_last(u64 i) const
{
    unsigned l = 0;
    for (;;) {
        u64 w = lvl[l][i >> 6] & mask_upto(i & 63);
        if (w) {
            i = (i & ~63ull) | msb(w);
            break;
        }
        // Nothing in this word at or below i: look for an earlier non-empty
        // word one level up.
        if (i < 64 || l + 1 == nlevels)
            return NONE;
        i = (i >> 6) - 1;
        l++;
    }
    while (l--)
        i = i << 6 | msb(lvl[l][i]);
    return i;
}

u64 FrameAllocator::metadata_bytes(const MemRange *ranges, usize n)
{
    Span spans[MAX_ZONES];
    usize count;
    if (!collect(ranges, n, spans, count))
        return 0;
    u64 bytes = 0;
    for (usize i = 0; i < count; i++)
        bytes += lay_out(spans[i].base, spans[i].end, top_order(spans[i]), nullptr);
    return bytes;
}

Status FrameAllocator::init(const MemRange *ranges, usize n, void *metadata, u64 metadata_size)
{
    Span spans[MAX_ZONES];
    usize count;
    KEEL_TRY(collect(ranges, n, spans, count));

    u64 need = 0;
    for (usize i = 0; i < count; i++)
        need += lay_out(spans[i].base, spans[i].end, top_order(spans[i]), nullptr);
    if (need && (!metadata || reinterpret_cast<uintptr_t>(metadata) & 7 || metadata_size < need))
        return Err::invalid;

    auto *words = static_cast<u64 *>(metadata);
    for (u64 i = 0; i < need / 8; i++)
        words[i] = 0;

    for (auto &z : zones_)
        z = Zone();
    for (auto &c : nfree_)
        c = 0;
    nzones_ = count;
    total_ = free_ = 0;

    auto *buf = static_cast<u8 *>(metadata);
    for (usize i = 0; i < count; i++) {
        Zone &z = zones_[i];
        z.base = spans[i].base;
        z.end = spans[i].end;
        z.top = top_order(spans[i]);
        z.map = reinterpret_cast<OrderMap *>(buf);
        buf += lay_out(z.base, z.end, z.top, buf);

        // The maximal aligned blocks are the roots of the zone's buddy trees.
        tile(z.base, z.end, [&](unsigned k, u64 f) {
            put(z, k, f >> k);
            return true;
        });
        total_ += z.end - z.base;
    }
    free_ = total_;
    return {};
}

// Lays out one zone's metadata at buf, or only sizes it if buf is null:
// top + 1 OrderMaps, then per order the free bitmap levels and the split bitmap.
u64 FrameAllocator::lay_out(u64 base, u64 end, unsigned top, u8 *buf)
{
    static_assert(levels_for(MAX_PHYS >> PAGE_SHIFT) <= LEVELS);
    u64 off = sizeof(OrderMap) * (top + 1);
    auto words = [&](u64 n) {
        u64 *p = buf ? reinterpret_cast<u64 *>(buf + off) : nullptr;
        off += 8 * n;
        return p;
    };

    for (unsigned k = 0; k <= top; k++) {
        OrderMap m = {};
        m.first = base >> k;
        m.nbits = ((end - 1) >> k) - m.first + 1;
        for (u64 bits = m.nbits;; bits = words_for(bits)) {
            m.lvl[m.nlevels++] = words(words_for(bits));
            if (bits <= 64)
                break;
        }
        m.split = k ? words(words_for(m.nbits)) : nullptr;
        if (buf)
            new (buf + k * sizeof(OrderMap)) OrderMap(m);
    }
    return off;
}

MemRange FrameAllocator::zone(usize i) const
{
    if (i >= nzones_)
        return {};
    return { PhysAddr(zones_[i].base << PAGE_SHIFT), (zones_[i].end - zones_[i].base) << PAGE_SHIFT };
}

FrameAllocator::Zone *FrameAllocator::find_zone(u64 frame)
{
    // Zones are sorted: binary search for the last one starting at or below frame.
    usize lo = 0, hi = nzones_;
    while (lo < hi) {
        usize mid = lo + (hi - lo) / 2;
        if (zones_[mid].base <= frame)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (!lo || frame >= zones_[lo - 1].end)
        return nullptr;
    return &zones_[lo - 1];
}

bool FrameAllocator::is_free(const Zone &z, unsigned k, u64 b) const
{
    return z.map[k].test(b - z.map[k].first);
}

bool FrameAllocator::is_split(const Zone &z, unsigned k, u64 b) const
{
    const OrderMap &m = z.map[k];
    u64 i = b - m.first;
    return k && m.split[i >> 6] >> (i & 63) & 1;
}

// Block b of order k is allocated as a whole: in the zone, neither free nor
// split, and live (a root, or its parent is split).
bool FrameAllocator::is_allocated(const Zone &z, unsigned k, u64 b) const
{
    if (k > z.top || !z.contains(k, b) || is_free(z, k, b) || is_split(z, k, b))
        return false;
    bool root = k == z.top || !z.contains(k + 1, b >> 1);
    return root || is_split(z, k + 1, b >> 1);
}

// Order of the free block containing the order-k block at frame, or NO_ORDER.
// Free blocks are maximal, so if that block is entirely free this finds it.
unsigned FrameAllocator::free_ancestor(const Zone &z, unsigned k, u64 frame) const
{
    for (unsigned j = k; j <= z.top && z.contains(j, frame >> j); j++)
        if (is_free(z, j, frame >> j))
            return j;
    return NO_ORDER;
}

void FrameAllocator::put(Zone &z, unsigned k, u64 b)
{
    OrderMap &m = z.map[k];
    m.set(b - m.first);
    m.nfree++;
    nfree_[k]++;
}

void FrameAllocator::take(Zone &z, unsigned k, u64 b)
{
    OrderMap &m = z.map[k];
    m.clear(b - m.first);
    m.nfree--;
    nfree_[k]--;
}

static void set_bit(u64 *map, u64 i, bool v)
{
    if (v)
        map[i >> 6] |= 1ull << (i & 63);
    else
        map[i >> 6] &= ~(1ull << (i & 63));
}

// Take the free block b of order j and split it down to the order-k block at
// frame, which becomes allocated; the other halves on the way become free.
void FrameAllocator::carve(Zone &z, unsigned j, u64 b, unsigned k, u64 frame)
{
    take(z, j, b);
    for (; j > k; j--) {
        set_bit(z.map[j].split, (frame >> j) - z.map[j].first, true);
        put(z, j - 1, (frame >> (j - 1)) ^ 1);
    }
    free_ -= 1ull << k;
}

// Free the allocated block b of order k, merging with free buddies.
void FrameAllocator::give_back(Zone &z, unsigned k, u64 b)
{
    free_ += 1ull << k;
    for (; k < z.top && z.contains(k + 1, b >> 1) && is_free(z, k, b ^ 1); k++, b >>= 1) {
        take(z, k, b ^ 1);
        set_bit(z.map[k + 1].split, (b >> 1) - z.map[k + 1].first, false);
    }
    put(z, k, b);
}

// Best fit by order, then highest address, among blocks ending at or below
// frame lim and starting at or above frame floor.
Result<PhysAddr> FrameAllocator::search(unsigned order, u64 lim, u64 floor)
{
    for (unsigned j = order; j <= MAX_ORDER; j++) {
        if (!(lim >> j))
            break;                      // not even one block of this size fits
        if (!nfree_[j])
            continue;
        u64 last = (lim >> j) - 1;      // highest block number ending <= lim
        for (usize zi = nzones_; zi--;) {
            Zone &z = zones_[zi];
            if (j > z.top || !z.map[j].nfree || last < z.map[j].first)
                continue;
            const OrderMap &m = z.map[j];
            u64 i = m.find_last(min(last - m.first, m.nbits - 1));
            if (i == NONE)
                continue;
            u64 b = m.first + i;
            if (b << j < floor)
                break;                  // and all lower zones are lower still
            // Keep the top end of the block so that splits leave low memory free.
            u64 frame = ((b + 1) << j) - (1ull << order);
            carve(z, j, b, order, frame);
            return PhysAddr(frame << PAGE_SHIFT);
        }
    }
    return Err::no_memory;
}

Result<PhysAddr> FrameAllocator::alloc(unsigned order, u64 limit)
{
    if (order > MAX_ORDER)
        return Err::invalid;
    u64 lim = min(limit, MAX_PHYS) >> PAGE_SHIFT;
    if (lim > HIGH_FRAME) {
        auto r = search(order, lim, HIGH_FRAME);
        if (r)
            return r;
    }
    return search(order, lim, 0);
}

Status FrameAllocator::free(PhysAddr pa, unsigned order)
{
    if (order > MAX_ORDER || pa.raw() >= MAX_PHYS || !pa.aligned(PAGE_SIZE << order))
        return Err::invalid;
    u64 f = pa.raw() >> PAGE_SHIFT;
    Zone *z = find_zone(f);
    if (!z || !is_allocated(*z, order, f >> order))
        return Err::invalid;
    give_back(*z, order, f >> order);
    return {};
}

// The zone holding all of [base, base + size), which must be page-aligned and non-empty.
Result<FrameAllocator::Zone *> FrameAllocator::range_zone(PhysAddr base, u64 size)
{
    if (!size || !valid_range(base.raw(), size))
        return Err::invalid;
    Zone *z = find_zone(base.raw() >> PAGE_SHIFT);
    if (!z || (base.raw() + size) >> PAGE_SHIFT > z->end)
        return Err::invalid;
    return z;
}

Status FrameAllocator::reserve(PhysAddr base, u64 size)
{
    auto r = range_zone(base, size);
    if (!r)
        return r.error();
    Zone &z = **r;
    u64 b = base.raw() >> PAGE_SHIFT, e = b + (size >> PAGE_SHIFT);

    // Check every piece before touching anything. Carving one piece leaves the
    // rest of its free block free, so the later pieces stay available.
    if (!tile(b, e, [&](unsigned k, u64 f) { return free_ancestor(z, k, f) != NO_ORDER; }))
        return Err::exists;
    tile(b, e, [&](unsigned k, u64 f) {
        unsigned j = free_ancestor(z, k, f);
        carve(z, j, f >> j, k, f);
        return true;
    });
    return {};
}

Status FrameAllocator::release(PhysAddr base, u64 size)
{
    auto r = range_zone(base, size);
    if (!r)
        return r.error();
    Zone &z = **r;
    u64 b = base.raw() >> PAGE_SHIFT, e = b + (size >> PAGE_SHIFT);

    // The pieces are disjoint, so freeing one cannot merge into another.
    if (!tile(b, e, [&](unsigned k, u64 f) { return is_allocated(z, k, f >> k); }))
        return Err::invalid;
    tile(b, e, [&](unsigned k, u64 f) {
        give_back(z, k, f >> k);
        return true;
    });
    return {};
}

bool FrameAllocator::check() const
{
    u64 free_total = 0, per_order[MAX_ORDER + 1] = {};
    for (usize zi = 0; zi < nzones_; zi++) {
        const Zone &z = zones_[zi];
        if (z.base >= z.end || (zi && zones_[zi - 1].end >= z.base))
            return false;                               // sorted, disjoint, not adjacent
        for (unsigned k = 0; k <= z.top; k++) {
            const OrderMap &m = z.map[k];
            u64 nfree = 0;
            for (u64 i = 0; i < m.nbits; i++) {
                u64 b = m.first + i;
                bool fr = m.test(i), sp = is_split(z, k, b);
                if (!fr && !sp)
                    continue;
                if (!z.contains(k, b) || (fr && sp))
                    return false;
                bool root = k == z.top || !z.contains(k + 1, b >> 1);
                if (!root && !is_split(z, k + 1, b >> 1))
                    return false;                       // not live
                if (fr && !root && is_free(z, k, b ^ 1))
                    return false;                       // not coalesced
                nfree += fr;
            }
            if (nfree != m.nfree)
                return false;
            per_order[k] += nfree;
            free_total += nfree << k;

            // Summary bits mirror the words below them; no stray bits past the end.
            u64 bits = m.nbits;
            for (unsigned l = 0; l < m.nlevels; l++) {
                u64 nw = words_for(bits);
                if ((bits & 63) && m.lvl[l][nw - 1] >> (bits & 63))
                    return false;
                for (u64 x = 0; l && x < bits; x++)
                    if ((m.lvl[l][x >> 6] >> (x & 63) & 1) != (m.lvl[l - 1][x] != 0))
                        return false;
                bits = nw;
            }
        }
    }
    for (unsigned k = 0; k <= MAX_ORDER; k++)
        if (per_order[k] != nfree_[k])
            return false;
    return free_total == free_;
}

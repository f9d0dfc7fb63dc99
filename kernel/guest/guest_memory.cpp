// Guest RAM access, bounds-checked against the guest's extents.
#include "kernel/guest/guest_memory.hpp"

namespace {

// [a, a + len) with len > 0 does not wrap past 2^64 - 1.
bool fits(u64 a, u64 len) { return len - 1 <= ~0ull - a; }

} // namespace

Status GuestMemory::add(GuestPhys gpa, u64 size, u8 *host)
{
    u64 a = gpa.raw();
    if (!size || !host || size > ~0ull - a)
        return Err::invalid;
    usize i = 0;
    while (i < n_ && ext_[i].gpa.raw() < a)
        i++;
    // Neighbours: the one before must end at or before a, the one at i must
    // start at or after a + size.
    if (i > 0 && ext_[i - 1].end() > a)
        return Err::exists;
    if (i < n_ && ext_[i].gpa.raw() < a + size)
        return Err::exists;
    if (n_ == MAX_EXTENTS)
        return Err::range;
    for (usize j = n_; j > i; j--)
        ext_[j] = ext_[j - 1];
    ext_[i] = GuestExtent{gpa, size, host};
    n_++;
    return {};
}

usize GuestMemory::find(u64 a) const
{
    const usize h = __atomic_load_n(&hint_, __ATOMIC_RELAXED);
    if (h < n_ && a - ext_[h].gpa.raw() < ext_[h].size)   // (a below the extent wraps to a huge offset)
        return h;
    usize lo = 0, hi = n_;      // first extent starting above a
    while (lo < hi) {
        usize mid = lo + (hi - lo) / 2;
        if (ext_[mid].gpa.raw() <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (!lo)
        return n_;
    const GuestExtent &e = ext_[lo - 1];
    if (a - e.gpa.raw() >= e.size)
        return n_;
    __atomic_store_n(&hint_, lo - 1, __ATOMIC_RELAXED);
    return lo - 1;
}

template <class F>
bool GuestMemory::walk(u64 a, u64 len, F f) const
{
    if (!len)
        return true;
    if (!contains(GuestPhys(a), len))
        return false;
    for (usize i = find(a); len; i++) {
        const GuestExtent &e = ext_[i];
        u64 off = a - e.gpa.raw();
        u64 n = min(len, e.size - off);
        f(e.host + off, n);
        a += n;
        len -= n;
    }
    return true;
}

bool GuestMemory::contains(GuestPhys gpa, u64 len) const
{
    u64 a = gpa.raw();
    if (!len)
        return true;
    if (!fits(a, len))
        return false;
    u64 last = a + len - 1;
    usize i = find(a);
    if (i == n_)
        return false;
    // At most n_ steps: each one moves to the next extent.
    for (;; i++) {
        u64 end = ext_[i].end();
        if (last < end)
            return true;
        if (i + 1 == n_ || ext_[i + 1].gpa.raw() != end)
            return false;
    }
}

Status GuestMemory::read(GuestPhys gpa, void *dst, u64 len) const
{
    if (len && !dst)
        return Err::invalid;
    auto *d = static_cast<u8 *>(dst);
    bool ok = walk(gpa.raw(), len, [&](u8 *h, u64 n) {
        __builtin_memcpy(d, h, n);
        d += n;
    });
    return ok ? Status() : Status(Err::range);
}

Status GuestMemory::write(GuestPhys gpa, const void *src, u64 len)
{
    if (len && !src)
        return Err::invalid;
    auto *s = static_cast<const u8 *>(src);
    bool ok = walk(gpa.raw(), len, [&](u8 *h, u64 n) {
        __builtin_memcpy(h, s, n);
        s += n;
    });
    return ok ? Status() : Status(Err::range);
}

Status GuestMemory::fill(GuestPhys gpa, u8 value, u64 len)
{
    bool ok = walk(gpa.raw(), len, [&](u8 *h, u64 n) { __builtin_memset(h, value, n); });
    return ok ? Status() : Status(Err::range);
}

const u8 *GuestMemory::span_slow(GuestPhys gpa, u64 len) const
{
    u64 a = gpa.raw();
    if (!len || !fits(a, len))
        return nullptr;
    usize i = find(a);
    if (i == n_)
        return nullptr;
    const GuestExtent &e = ext_[i];
    u64 off = a - e.gpa.raw();
    return len <= e.size - off ? e.host + off : nullptr;
}

u64 GuestMemory::ram_bytes() const
{
    u64 sum = 0;    // cannot wrap: the extents are disjoint and end below 2^64
    for (usize i = 0; i < n_; i++)
        sum += ext_[i].size;
    return sum;
}

const GuestExtent &GuestMemory::extent(usize i) const
{
    static constexpr GuestExtent none{};
    return i < n_ ? ext_[i] : none;
}

usize GuestMemory::pc_layout(u64 bytes, u64 lowmem_top, GuestExtent *out)
{
    constexpr u64 LOW_END = 640 * KiB, HIGH = 4 * GiB;
    bytes = align_down(bytes, PAGE_SIZE);
    lowmem_top = min(max(align_down(lowmem_top, PAGE_SIZE), LEGACY_HOLE_END), HIGH);
    usize n = 0;
    if (u64 low = min(bytes, LOW_END))
        out[n++] = GuestExtent{GuestPhys(0), low, nullptr};
    u64 mid_end = min(bytes, lowmem_top);
    if (mid_end > LEGACY_HOLE_END)
        out[n++] = GuestExtent{GuestPhys(LEGACY_HOLE_END), mid_end - LEGACY_HOLE_END, nullptr};
    if (bytes > lowmem_top) {
        u64 high = min(bytes - lowmem_top, align_down(~0ull - HIGH, PAGE_SIZE));
        out[n++] = GuestExtent{GuestPhys(HIGH), high, nullptr};
    }
    return n;
}

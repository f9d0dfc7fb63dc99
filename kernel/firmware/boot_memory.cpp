#include "kernel/firmware/boot_memory.hpp"

namespace {

bool overlaps(u64 a, u64 a_end, u64 b, u64 b_end) { return a < b_end && b < a_end; }

// Subtract [rb, re) from the ranges in out[0..n): split when needed.
void subtract(MemRange *out, usize &n, usize cap, u64 rb, u64 re, bool &truncated)
{
    for (usize i = 0; i < n; i++) {
        u64 b = out[i].base.raw(), e = b + out[i].size;
        if (!overlaps(b, e, rb, re)) continue;
        if (rb <= b && re >= e) {               // fully covered: remove
            for (usize j = i; j + 1 < n; j++) out[j] = out[j + 1];
            n--;
            i--;
        } else if (rb <= b) {                   // cut the front
            out[i] = {PhysAddr(re), e - re};
        } else if (re >= e) {                   // cut the back
            out[i].size = rb - b;
        } else {                                // split in two
            if (n == cap) {
                truncated = true;               // keep the lower piece only: never hand out reserved memory
                out[i].size = rb - b;
                continue;
            }
            for (usize j = n; j > i + 1; j--) out[j] = out[j - 1];
            out[i].size = rb - b;
            out[i + 1] = {PhysAddr(re), e - re};
            n++;
            i++;
        }
    }
}

} // namespace

usize free_ranges(const MemRegion *map, usize n, const MemRange *reserved, usize nres, u64 floor,
                  MemRange *out, usize cap, bool *truncated)
{
    bool trunc = false;
    usize k = 0;
    for (usize i = 0; i < n; i++) {
        if (map[i].type != MemType::usable) continue;
        u64 b = align_up(map[i].base, PAGE_SIZE);
        u64 e = map[i].base + map[i].size < map[i].base ? ~0ull : map[i].base + map[i].size;
        e = align_down(e, PAGE_SIZE);
        b = max(b, align_up(floor, PAGE_SIZE));
        if (b >= e) continue;
        if (k == cap) { trunc = true; break; }
        out[k++] = {PhysAddr(b), e - b};
    }
    for (usize r = 0; r < nres; r++) {
        if (!reserved[r].size) continue;
        u64 rb = align_down(reserved[r].base.raw(), PAGE_SIZE);
        u64 re = reserved[r].base.raw() + reserved[r].size;
        // The end wraps past 2^64, or rounding it up would: reserve up to the top.
        re = re < reserved[r].base.raw() || re > (~0ull & ~(PAGE_SIZE - 1)) ? ~0ull & ~(PAGE_SIZE - 1)
                                                                           : align_up(re, PAGE_SIZE);
        subtract(out, k, cap, rb, re, trunc);
    }
    if (truncated) *truncated = trunc;
    return k;
}

Result<PhysAddr> carve(MemRange *ranges, usize &n, usize cap, u64 size, u64 limit)
{
    size = align_up(size, PAGE_SIZE);
    if (!size) return Err::invalid;
    for (usize i = n; i--;) {
        u64 b = ranges[i].base.raw(), e = min(b + ranges[i].size, align_down(limit, PAGE_SIZE));
        if (e <= b || e - b < size) continue;
        // A piece cut from the middle (the range straddles limit) needs a spare slot.
        if (e < b + ranges[i].size && e - size > b && n == cap) continue;
        bool truncated = false;
        subtract(ranges, n, cap, e - size, e, truncated);
        return PhysAddr(e - size);
    }
    return Err::no_memory;
}

Result<PhysAddr> find_free_page(const MemRegion *map, usize n, const MemRange *reserved, usize nres,
                                u64 lo, u64 hi)
{
    for (u64 p = align_up(lo, PAGE_SIZE); p + PAGE_SIZE <= hi; p += PAGE_SIZE) {
        bool ok = false;
        for (usize i = 0; i < n && !ok; i++)
            ok = map[i].type == MemType::usable && map[i].base <= p && p + PAGE_SIZE - map[i].base <= map[i].size;
        for (usize r = 0; r < nres && ok; r++) {
            u64 rb = reserved[r].base.raw(), re = rb + reserved[r].size;
            ok = !overlaps(p, p + PAGE_SIZE, rb, re < rb ? ~0ull : re);   // an end past 2^64: up to the top
        }
        if (ok) return PhysAddr(p);
    }
    return Err::not_found;
}

// From the firmware memory map to the frame allocator's input: free_ranges,
// carve and find_free_page, on a q35-like map, on edge cases, and against a
// page-granular model on random maps.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "kernel/firmware/boot_memory.hpp"

namespace {

MemRange R(u64 base, u64 size) { return {PhysAddr(base), size}; }
MemRegion M(u64 base, u64 size, MemType t) { return {base, size, t}; }

constexpr MemType U = MemType::usable;
constexpr MemType RS = MemType::reserved;

std::string show(const std::vector<MemRange> &v)
{
    std::string s;
    char buf[64];
    for (auto &r : v) {
        snprintf(buf, sizeof(buf), "[%#llx, %#llx) ", (unsigned long long)r.base.raw(),
                 (unsigned long long)(r.base.raw() + r.size));
        s += buf;
    }
    return s;
}

bool same(const std::vector<MemRange> &a, const std::vector<MemRange> &b)
{
    if (a.size() != b.size()) return false;
    for (usize i = 0; i < a.size(); i++)
        if (a[i].base != b[i].base || a[i].size != b[i].size) return false;
    return true;
}

#define EXPECT_RANGES(actual, ...)                                                    \
    do {                                                                              \
        std::vector<MemRange> expected_ = __VA_ARGS__;                                \
        EXPECT_TRUE(same(actual, expected_)) << "got      " << show(actual) << "\n"   \
                                             << "expected " << show(expected_);       \
    } while (0)

// free_ranges into an output array of exactly cap entries (ASan-checked).
struct Free {
    std::vector<MemRange> ranges;
    bool truncated = true;
};
Free free_of(const std::vector<MemRegion> &map, const std::vector<MemRange> &res, u64 floor, usize cap = 64)
{
    Free f;
    f.ranges.resize(cap);
    usize n = free_ranges(map.data(), map.size(), res.data(), res.size(), floor, f.ranges.data(), cap,
                          &f.truncated);
    EXPECT_LE(n, cap);
    f.ranges.resize(n);
    return f;
}

// A QEMU q35 machine with 2 GiB below and 4 GiB above 4 GiB (SeaBIOS e820).
const std::vector<MemRegion> q35 = {
    M(0x0, 0x9fc00, U),
    M(0x9fc00, 0x400, RS),
    M(0xf0000, 0x10000, RS),
    M(0x100000, 0x7ffe0000 - 0x100000, U),
    M(0x7ffe0000, 0x20000, RS),
    M(0xb0000000, 0x10000000, RS),      // PCIe ECAM
    M(0xfed1c000, 0x4000, RS),
    M(0xfeffc000, 0x4000, RS),
    M(0xfffc0000, 0x40000, RS),
    M(0x100000000, 0x100000000, U),
};

constexpr u64 KERNEL_START = 0x200000, KERNEL_END = 0x226000;

TEST(FreeRanges, Q35NothingReserved)
{
    auto f = free_of(q35, {}, 1 * MiB);
    EXPECT_FALSE(f.truncated);
    EXPECT_RANGES(f.ranges, {R(0x100000, 0x7ffe0000 - 0x100000), R(0x100000000, 0x100000000)});

    // No floor: the first region is cut to whole pages.
    f = free_of(q35, {}, 0);
    EXPECT_RANGES(f.ranges, {R(0, 0x9f000), R(0x100000, 0x7ffe0000 - 0x100000), R(0x100000000, 0x100000000)});
}

TEST(FreeRanges, Q35KernelMbiModules)
{
    std::vector<MemRange> res = {
        R(KERNEL_START, KERNEL_END - KERNEL_START),
        R(0x226a10, 0x4c8),                   // the MBI: unaligned, inside one page
        R(0x400000, 0x12345),                 // a module: unaligned end
        R(0x7ffd0800, 0x20000),               // a module straddling the end of usable RAM
        R(0x100000000 + 0x1234, 0x100),       // a module in high memory
    };
    auto f = free_of(q35, res, 1 * MiB);
    EXPECT_FALSE(f.truncated);
    EXPECT_RANGES(f.ranges, {
        R(0x100000, 0x100000),                         // up to the kernel
        R(0x227000, 0x400000 - 0x227000),              // after the MBI's page
        R(0x413000, 0x7ffd0000 - 0x413000),            // module end rounded up, next module rounded down
        R(0x100000000, 0x1000),
        R(0x100002000, 0x100000000 - 0x2000),
    });
    // The reserved list is not required to be sorted.
    std::reverse(res.begin(), res.end());
    auto g = free_of(q35, res, 1 * MiB);
    EXPECT_TRUE(same(f.ranges, g.ranges)) << show(g.ranges);
}

TEST(FreeRanges, MbiUnalignedInsidePageAndAcrossPages)
{
    std::vector<MemRegion> map = {M(0x100000, 0x100000, U)};
    // Inside one page: that one page goes.
    auto f = free_of(map, {R(0x150ff0, 0x10)}, 0);
    EXPECT_RANGES(f.ranges, {R(0x100000, 0x50000), R(0x151000, 0xaf000)});
    // Crossing a page boundary by one byte: both pages go.
    f = free_of(map, {R(0x150ff0, 0x11)}, 0);
    EXPECT_RANGES(f.ranges, {R(0x100000, 0x50000), R(0x152000, 0xae000)});
    // Empty reserved ranges reserve nothing.
    f = free_of(map, {R(0x150ff0, 0)}, 0);
    EXPECT_RANGES(f.ranges, {R(0x100000, 0x100000)});
}

TEST(FreeRanges, Floor)
{
    std::vector<MemRegion> map = {M(0, 0x9fc00, U), M(0x100000, 0x100000, U)};
    // The floor rounds up to a page and cuts into a region.
    auto f = free_of(map, {}, 0x5001);
    EXPECT_RANGES(f.ranges, {R(0x6000, 0x99000), R(0x100000, 0x100000)});
    // A floor at the end of a region removes it.
    f = free_of(map, {}, 0x9f000);
    EXPECT_RANGES(f.ranges, {R(0x100000, 0x100000)});
    // Above everything: nothing is left.
    f = free_of(map, {}, 0x200000);
    EXPECT_TRUE(f.ranges.empty());
    EXPECT_FALSE(f.truncated);
}

TEST(FreeRanges, ReservedStraddlingAndCoveringRegions)
{
    std::vector<MemRegion> map = {
        M(0x100000, 0x100000, U),       // [1 MiB, 2 MiB)
        M(0x200000, 0x1000, RS),
        M(0x300000, 0x100000, U),       // [3 MiB, 4 MiB)
        M(0x500000, 0x100000, U),       // [5 MiB, 6 MiB)
    };
    // Straddles the start of the first region and the end of the second, covers
    // the middle one (and the gap) entirely.
    auto f = free_of(map, {R(0xff000, 0x2000), R(0x3ff800, 0x100), R(0x1ff000, 0x301000)}, 0);
    EXPECT_RANGES(f.ranges, {R(0x101000, 0xfe000), R(0x500000, 0x100000)});
    // One range covering everything.
    f = free_of(map, {R(0, 0x1000000)}, 0);
    EXPECT_TRUE(f.ranges.empty());
    EXPECT_FALSE(f.truncated);
    // Exactly one whole region.
    f = free_of(map, {R(0x300000, 0x100000)}, 0);
    EXPECT_RANGES(f.ranges, {R(0x100000, 0x100000), R(0x500000, 0x100000)});
    // Overlapping reserved ranges.
    f = free_of(map, {R(0x140000, 0x20000), R(0x150000, 0x20000), R(0x145000, 0x1000)}, 0);
    EXPECT_RANGES(f.ranges, {R(0x100000, 0x40000), R(0x170000, 0x90000), R(0x300000, 0x100000),
                             R(0x500000, 0x100000)});
}

TEST(FreeRanges, OnlyUsableRegionsCount)
{
    std::vector<MemRegion> map = {
        M(0x100000, 0x100000, MemType::acpi_reclaim),
        M(0x200000, 0x100000, MemType::acpi_nvs),
        M(0x300000, 0x100000, MemType::bad),
        M(0x400000, 0x100000, RS),
        M(0x500000, 0x1000, U),
    };
    auto f = free_of(map, {}, 0);
    EXPECT_RANGES(f.ranges, {R(0x500000, 0x1000)});
    f = free_of({}, {}, 0);
    EXPECT_TRUE(f.ranges.empty());
    EXPECT_FALSE(f.truncated);
}

TEST(FreeRanges, MoreSplitsThanCap)
{
    std::vector<MemRegion> map = {M(0x100000, 0x100000, U)};
    std::vector<MemRange> res = {R(0x110000, 0x1000), R(0x130000, 0x1000), R(0x150000, 0x1000),
                                 R(0x170000, 0x1000)};
    auto full = free_of(map, res, 0, 5);
    EXPECT_FALSE(full.truncated);
    EXPECT_EQ(full.ranges.size(), 5u);

    auto f = free_of(map, res, 0, 3);
    EXPECT_TRUE(f.truncated);
    ASSERT_LE(f.ranges.size(), 3u);
    for (auto &r : f.ranges) {
        for (auto &x : res)
            EXPECT_FALSE(r.base.raw() < x.base.raw() + x.size && x.base.raw() < r.base.raw() + r.size)
                << show(f.ranges);
        // Everything handed out is free in the complete answer.
        bool inside = false;
        for (auto &g : full.ranges)
            inside |= g.base <= r.base && r.base.raw() + r.size <= g.base.raw() + g.size;
        EXPECT_TRUE(inside) << show(f.ranges);
    }

    // Cap 1: a single split is already one too many.
    f = free_of(map, {R(0x180000, 0x1000)}, 0, 1);
    EXPECT_TRUE(f.truncated);
    EXPECT_RANGES(f.ranges, {R(0x100000, 0x80000)});
}

TEST(FreeRanges, MoreRegionsThanCap)
{
    std::vector<MemRegion> map;
    for (u64 i = 0; i < 8; i++) map.push_back(M(0x100000 * (i + 1), 0x80000, U));
    auto f = free_of(map, {}, 0, 4);
    EXPECT_TRUE(f.truncated);
    EXPECT_RANGES(f.ranges, {R(0x100000, 0x80000), R(0x200000, 0x80000), R(0x300000, 0x80000),
                             R(0x400000, 0x80000)});
    // Cap 0: nothing written, truncated.
    f = free_of(map, {}, 0, 0);
    EXPECT_TRUE(f.ranges.empty());
    EXPECT_TRUE(f.truncated);
    // The truncated pointer is optional.
    MemRange out[2];
    EXPECT_EQ(free_ranges(map.data(), map.size(), nullptr, 0, 0, out, 2), 2u);
}

TEST(FreeRanges, TopOfAddressSpace)
{
    // A usable region that ends exactly at 2^64 (size wraps the sum to 0).
    std::vector<MemRegion> map = {M(0xffffffff00000000ull, 0x100000000ull, U)};
    auto f = free_of(map, {}, 0);
    ASSERT_EQ(f.ranges.size(), 1u);
    EXPECT_EQ(f.ranges[0].base.raw(), 0xffffffff00000000ull);
    EXPECT_EQ(f.ranges[0].base.raw() + f.ranges[0].size, 0xfffffffffffff000ull);   // no wrap

    // A reserved range that ends exactly at 2^64 removes everything above its start.
    std::vector<MemRegion> low = {M(0x100000, 0x300000, U)};
    f = free_of(low, {R(0x200000, 0ull - 0x200000)}, 0);
    EXPECT_RANGES(f.ranges, {R(0x100000, 0x100000)});
    // One that ends inside the last page (its end rounds up to 2^64).
    f = free_of(low, {R(0x200000, 0ull - 0x200000 - 0x800)}, 0);
    EXPECT_RANGES(f.ranges, {R(0x100000, 0x100000)});
    f = free_of(low, {R(0x200000, 0ull - 0x200000 - 0x1000)}, 0);
    EXPECT_RANGES(f.ranges, {R(0x100000, 0x100000)});
}

// A reserved range whose end lies beyond 2^64 (its size wraps the sum) covers
// everything from its start up, also when the start is not page-aligned.
TEST(FreeRanges, ReservedWrappingPastTopOfAddressSpace)
{
    std::vector<MemRegion> map = {M(0x100000, 0x300000, U)};
    // The wrapped end lies below the start's page.
    auto f = free_of(map, {R(0x200800, ~0ull - 0x2000)}, 0);
    EXPECT_RANGES(f.ranges, {R(0x100000, 0x100000)});
    // The wrapped end lies inside the start's page, past the page's start.
    f = free_of(map, {R(0x200800, ~0ull - 0x3ff)}, 0);
    EXPECT_RANGES(f.ranges, {R(0x100000, 0x100000)});
    f = free_of(map, {R(0x200fff, ~0ull)}, 0);
    EXPECT_RANGES(f.ranges, {R(0x100000, 0x100000)});
}

// ---------------------------------------------------------------------------

struct Carved {
    std::vector<MemRange> arr;   // exactly cap entries
    usize n;
};

Carved ranges_with_cap(const std::vector<MemRange> &r, usize cap)
{
    Carved c{std::vector<MemRange>(cap), r.size()};
    std::copy(r.begin(), r.end(), c.arr.begin());
    return c;
}

std::vector<MemRange> live(const Carved &c) { return {c.arr.begin(), c.arr.begin() + long(c.n)}; }

TEST(Carve, BelowFourGiBFromQ35)
{
    std::vector<MemRange> res = {R(KERNEL_START, KERNEL_END - KERNEL_START), R(0x226a10, 0x4c8)};
    auto f = free_of(q35, res, 1 * MiB);
    ASSERT_EQ(f.ranges.size(), 3u);
    auto c = ranges_with_cap(f.ranges, 8);
    auto r = carve(c.arr.data(), c.n, 8, 0x12345, 4 * GiB);
    ASSERT_TRUE(r.ok()) << err_name(r.error());
    EXPECT_EQ(r->raw(), 0x7ffe0000 - 0x13000);    // page-rounded, from the top of the highest range below 4 GiB
    EXPECT_TRUE(r->aligned(PAGE_SIZE));
    EXPECT_RANGES(live(c), {R(0x100000, 0x100000), R(0x227000, 0x7ffe0000 - 0x13000 - 0x227000),
                            R(0x100000000, 0x100000000)});

    // Again: right below the first piece.
    auto r2 = carve(c.arr.data(), c.n, 8, 0x1000, 4 * GiB);
    ASSERT_TRUE(r2.ok());
    EXPECT_EQ(r2->raw(), r->raw() - 0x1000);

    // Without a limit: from the top of memory.
    auto r3 = carve(c.arr.data(), c.n, 8, 0x200000, ~0ull);
    ASSERT_TRUE(r3.ok());
    EXPECT_EQ(r3->raw(), 0x200000000 - 0x200000);
    EXPECT_RANGES(live(c), {R(0x100000, 0x100000), R(0x227000, 0x7ffe0000 - 0x14000 - 0x227000),
                            R(0x100000000, 0x100000000 - 0x200000)});
}

TEST(Carve, RangeStraddlingLimitIsSplit)
{
    auto c = ranges_with_cap({R(0x100000, 0x100000), R(0xc0000000, 0x80000000)}, 3);
    auto r = carve(c.arr.data(), c.n, 3, 0x10000, 4 * GiB);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->raw(), 0xffff0000u);
    EXPECT_RANGES(live(c), {R(0x100000, 0x100000), R(0xc0000000, 0x3fff0000), R(0x100000000, 0x40000000)});

    // An unaligned limit rounds down.
    c = ranges_with_cap({R(0x100000, 0x100000)}, 2);
    r = carve(c.arr.data(), c.n, 2, 0x1000, 0x180fff);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->raw(), 0x17f000u);
    EXPECT_RANGES(live(c), {R(0x100000, 0x7f000), R(0x180000, 0x80000)});
}

TEST(Carve, StraddlingWithoutRoomToSplit)
{
    // No spare slot: the straddling range cannot be split, a lower one gives.
    auto c = ranges_with_cap({R(0x100000, 0x100000), R(0xc0000000, 0x80000000)}, 2);
    auto r = carve(c.arr.data(), c.n, 2, 0x10000, 4 * GiB);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->raw(), 0x1f0000u);
    EXPECT_RANGES(live(c), {R(0x100000, 0xf0000), R(0xc0000000, 0x80000000)});

    // Nothing lower: no memory, and nothing changes.
    c = ranges_with_cap({R(0xc0000000, 0x80000000)}, 1);
    r = carve(c.arr.data(), c.n, 1, 0x10000, 4 * GiB);
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(r.error(), Err::no_memory);
    EXPECT_RANGES(live(c), {R(0xc0000000, 0x80000000)});

    // But a piece from the very bottom of the straddling range needs no split.
    c = ranges_with_cap({R(0xffff0000, 0x10010000)}, 1);
    r = carve(c.arr.data(), c.n, 1, 0x10000, 4 * GiB);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->raw(), 0xffff0000u);
    EXPECT_RANGES(live(c), {R(0x100000000, 0x10000000)});
}

TEST(Carve, WholeRangeIsRemoved)
{
    auto c = ranges_with_cap({R(0x100000, 0x1000), R(0x200000, 0x2000), R(0x100000000, 0x1000)}, 3);
    auto r = carve(c.arr.data(), c.n, 3, 0x2000, 4 * GiB);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->raw(), 0x200000u);
    EXPECT_RANGES(live(c), {R(0x100000, 0x1000), R(0x100000000, 0x1000)});
    r = carve(c.arr.data(), c.n, 3, 1, 4 * GiB);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->raw(), 0x100000u);
    EXPECT_RANGES(live(c), {R(0x100000000, 0x1000)});
}

TEST(Carve, Failures)
{
    auto c = ranges_with_cap({R(0x100000, 0x10000), R(0x200000, 0x10000), R(0x100000000, 0x100000)}, 4);
    auto before = live(c);
    // Fits in no single range below the limit (though in their sum, and above the limit).
    auto r = carve(c.arr.data(), c.n, 4, 0x11000, 4 * GiB);
    EXPECT_EQ(r.error(), Err::no_memory);
    EXPECT_TRUE(same(live(c), before));
    // The limit is below all memory, or cuts the only range too short.
    EXPECT_EQ(carve(c.arr.data(), c.n, 4, 0x1000, 0x100000).error(), Err::no_memory);
    EXPECT_EQ(carve(c.arr.data(), c.n, 4, 0x1000, 0x100fff).error(), Err::no_memory);
    EXPECT_EQ(carve(c.arr.data(), c.n, 4, 0x1000, 0).error(), Err::no_memory);
    EXPECT_TRUE(same(live(c), before));
    // Nothing at all.
    usize zero = 0;
    EXPECT_EQ(carve(c.arr.data(), zero, 4, 0x1000, ~0ull).error(), Err::no_memory);
    // Size 0, and sizes that round up past 2^64.
    EXPECT_EQ(carve(c.arr.data(), c.n, 4, 0, ~0ull).error(), Err::invalid);
    EXPECT_FALSE(carve(c.arr.data(), c.n, 4, ~0ull, ~0ull).ok());
    EXPECT_FALSE(carve(c.arr.data(), c.n, 4, ~0ull - 0x2000, ~0ull).ok());
    EXPECT_TRUE(same(live(c), before));
}

// ---------------------------------------------------------------------------

TEST(FindFreePage, Q35LowMemory)
{
    auto r = find_free_page(q35.data(), q35.size(), nullptr, 0, 0x1000, 0xa0000);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->raw(), 0x1000u);
    // Page 0 is usable in the map; the caller decides where to start.
    r = find_free_page(q35.data(), q35.size(), nullptr, 0, 0, 0xa0000);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->raw(), 0u);
    // An unaligned lo rounds up.
    r = find_free_page(q35.data(), q35.size(), nullptr, 0, 0x1001, 0xa0000);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->raw(), 0x2000u);
    // The last whole page below 0x9fc00, and nothing after it.
    r = find_free_page(q35.data(), q35.size(), nullptr, 0, 0x9e000, 0xa0000);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->raw(), 0x9e000u);
    r = find_free_page(q35.data(), q35.size(), nullptr, 0, 0x9f000, 0xa0000);
    EXPECT_EQ(r.error(), Err::not_found);
    // The page must end at or below hi.
    r = find_free_page(q35.data(), q35.size(), nullptr, 0, 0x1000, 0x1fff);
    EXPECT_EQ(r.error(), Err::not_found);
    r = find_free_page(q35.data(), q35.size(), nullptr, 0, 0x1000, 0x2000);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->raw(), 0x1000u);
    // Empty and inverted windows.
    EXPECT_EQ(find_free_page(q35.data(), q35.size(), nullptr, 0, 0x5000, 0x5000).error(), Err::not_found);
    EXPECT_EQ(find_free_page(q35.data(), q35.size(), nullptr, 0, 0x6000, 0x5000).error(), Err::not_found);
    // Reserved types never count, and holes neither.
    EXPECT_EQ(find_free_page(q35.data(), q35.size(), nullptr, 0, 0x9f000, 0x100000).error(), Err::not_found);
    r = find_free_page(q35.data(), q35.size(), nullptr, 0, 0x9f000, 0x101000);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->raw(), 0x100000u);
}

TEST(FindFreePage, ReservedRangesAreSkipped)
{
    std::vector<MemRange> res = {R(0x1000, 0x10), R(0x2fff, 2), R(0x4000, 0x3000), R(0x8800, 0x100)};
    // 0x1000 (touched), 0x2000 and 0x3000 (one byte each), 0x4000-0x6fff taken: 0x7000.
    auto r = find_free_page(q35.data(), q35.size(), res.data(), res.size(), 0x1000, 0xa0000);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->raw(), 0x7000u);
    r = find_free_page(q35.data(), q35.size(), res.data(), res.size(), 0x8000, 0xa0000);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->raw(), 0x9000u);
    r = find_free_page(q35.data(), q35.size(), res.data(), res.size(), 0x1000, 0x7000);
    EXPECT_EQ(r.error(), Err::not_found);
    // Everything low reserved.
    std::vector<MemRange> all = {R(0, 0x100000)};
    EXPECT_EQ(find_free_page(q35.data(), q35.size(), all.data(), 1, 0, 0xa0000).error(), Err::not_found);
    // The answer agrees with free_ranges.
    auto f = free_of(q35, res, 0);
    ASSERT_FALSE(f.ranges.empty());
    EXPECT_EQ(f.ranges[0].base.raw(), 0u);
    EXPECT_EQ(f.ranges[1].base.raw(), 0x7000u);
}

TEST(FindFreePage, ReservedToTopOfAddressSpace)
{
    std::vector<MemRegion> map = {M(0, 0xa0000, U)};
    // Ends exactly at 2^64.
    std::vector<MemRange> res = {R(0x3000, 0ull - 0x3000)};
    auto r = find_free_page(map.data(), map.size(), res.data(), res.size(), 0x1000, 0xa0000);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->raw(), 0x1000u);
    EXPECT_EQ(find_free_page(map.data(), map.size(), res.data(), res.size(), 0x3000, 0xa0000).error(),
              Err::not_found);
    // Ends beyond 2^64.
    res = {R(0x3800, ~0ull - 0x1000)};
    EXPECT_EQ(find_free_page(map.data(), map.size(), res.data(), res.size(), 0x3000, 0xa0000).error(),
              Err::not_found);
}

// ---------------------------------------------------------------------------
// Random maps against a page-granular model.

constexpr u64 SPACE = 16 * MiB;                 // the random maps live below this
constexpr u64 PAGES = SPACE / PAGE_SIZE;

struct Case {
    std::vector<MemRegion> map;                 // sorted, disjoint, usable ones page-aligned and never adjacent
    std::vector<MemRange> res;
    u64 floor;
    usize cap;
};

Case random_case(std::mt19937_64 &rng)
{
    auto pick = [&](u64 n) { return n ? rng() % n : 0; };
    Case c;
    static const MemType others[] = {MemType::reserved, MemType::acpi_reclaim, MemType::acpi_nvs, MemType::bad};
    u64 cur = pick(4) ? 0 : pick(64) * 0x400;
    bool prev_usable = false;
    usize nreg = 1 + pick(10);
    for (usize i = 0; i < nreg && cur < SPACE; i++) {
        bool usable = pick(5) < 3;
        u64 gap = pick(3) ? 0 : pick(16) * 0x400;
        if (prev_usable && usable && !gap) gap = 0x400;     // sanitised maps merge adjacent usable regions
        u64 base = cur + gap, size;
        if (usable) {
            base = align_up(base, PAGE_SIZE);
            size = (1 + pick(pick(2) ? 16 : 512)) * PAGE_SIZE;
        } else {
            size = (1 + pick(64)) * 0x400;
        }
        if (base >= SPACE) break;
        size = min(size, SPACE - base);
        if (usable) size = align_down(size, PAGE_SIZE);
        if (!size) break;
        c.map.push_back(M(base, size, usable ? U : others[pick(4)]));
        cur = base + size;
        prev_usable = usable;
    }
    usize nres = pick(10);
    for (usize i = 0; i < nres; i++) {
        u64 base = pick(SPACE + 0x10000), size;
        switch (pick(10)) {
        case 0: size = 0; break;
        case 1: size = pick(2 * MiB); break;
        case 2: size = 0ull - base - pick(2) * pick(0x2000); break;     // to (or just below) 2^64
        case 3: size = ~0ull - pick(0x1800); break;                     // past 2^64
        default: size = 1 + pick(0x6000); break;
        }
        if (pick(3) == 0) base &= ~(PAGE_SIZE - 1);
        c.res.push_back(R(base, size));
    }
    c.floor = pick(3) ? pick(4 * MiB) : 0;
    c.cap = 1 + pick(12);
    return c;
}

// Page i is reserved if any non-empty reserved range touches it (ends saturate at 2^64).
std::vector<bool> reserved_pages(const std::vector<MemRange> &res)
{
    std::vector<bool> r(PAGES, false);
    for (auto &x : res) {
        if (!x.size) continue;
        u64 b = x.base.raw(), e = b + x.size;
        if (e < b) e = ~0ull;
        for (u64 p = b / PAGE_SIZE; p < PAGES && p * PAGE_SIZE < e; p++) r[p] = true;
    }
    return r;
}

std::vector<bool> usable_pages(const std::vector<MemRegion> &map)
{
    std::vector<bool> u(PAGES, false);
    for (auto &m : map)
        if (m.type == U)
            for (u64 p = m.base / PAGE_SIZE; p < (m.base + m.size) / PAGE_SIZE; p++) u[p] = true;
    return u;
}

// Maximal runs of set pages, as ranges.
std::vector<MemRange> runs(const std::vector<bool> &pages)
{
    std::vector<MemRange> out;
    for (u64 p = 0; p < PAGES;) {
        if (!pages[p]) { p++; continue; }
        u64 q = p;
        while (q < PAGES && pages[q]) q++;
        out.push_back(R(p * PAGE_SIZE, (q - p) * PAGE_SIZE));
        p = q;
    }
    return out;
}

// Sorted, page-aligned, non-empty, disjoint, and inside the modelled space.
::testing::AssertionResult well_formed(const std::vector<MemRange> &v)
{
    for (usize i = 0; i < v.size(); i++) {
        u64 b = v[i].base.raw(), e = b + v[i].size;
        if (!v[i].size || !v[i].base.aligned(PAGE_SIZE) || v[i].size % PAGE_SIZE || e < b || e > SPACE)
            return ::testing::AssertionFailure() << "bad range " << i << ": " << show(v);
        if (i && v[i - 1].base.raw() + v[i - 1].size > b)
            return ::testing::AssertionFailure() << "unsorted or overlapping at " << i << ": " << show(v);
    }
    return ::testing::AssertionSuccess();
}

std::vector<bool> pages_of(const std::vector<MemRange> &v)
{
    std::vector<bool> r(PAGES, false);
    for (auto &x : v)
        for (u64 p = x.base.raw() / PAGE_SIZE; p < (x.base.raw() + x.size) / PAGE_SIZE && p < PAGES; p++) r[p] = true;
    return r;
}

std::string describe(const Case &c)
{
    std::string s = "map:";
    char buf[96];
    for (auto &m : c.map) {
        snprintf(buf, sizeof(buf), " [%#llx,%#llx)%s", (unsigned long long)m.base,
                 (unsigned long long)(m.base + m.size), m.type == U ? "U" : "r");
        s += buf;
    }
    s += "\nreserved:";
    for (auto &r : c.res) {
        snprintf(buf, sizeof(buf), " %#llx+%#llx", (unsigned long long)r.base.raw(), (unsigned long long)r.size);
        s += buf;
    }
    snprintf(buf, sizeof(buf), "\nfloor %#llx cap %zu", (unsigned long long)c.floor, c.cap);
    return s + buf;
}

TEST(BootMemoryProperty, RandomMaps)
{
    std::mt19937_64 rng(20240531);
    int truncated_cases = 0, carved = 0;
    for (int iter = 0; iter < 3000; iter++) {
        Case c = random_case(rng);
        SCOPED_TRACE(describe(c));

        auto usable = usable_pages(c.map);
        auto reserved = reserved_pages(c.res);
        std::vector<bool> want(PAGES), want_nofloor(PAGES);
        for (u64 p = 0; p < PAGES; p++) {
            want_nofloor[p] = usable[p] && !reserved[p];
            want[p] = want_nofloor[p] && p * PAGE_SIZE >= c.floor;
        }

        // free_ranges
        auto f = free_of(c.map, c.res, c.floor, c.cap);
        ASSERT_TRUE(well_formed(f.ranges));
        for (auto &r : f.ranges) {
            ASSERT_GE(r.base.raw(), c.floor);
            for (u64 p = r.base.raw() / PAGE_SIZE; p < (r.base.raw() + r.size) / PAGE_SIZE; p++) {
                ASSERT_TRUE(usable[p]) << "page " << p << " is not usable: " << show(f.ranges);
                ASSERT_FALSE(reserved[p]) << "page " << p << " is reserved: " << show(f.ranges);
            }
        }
        auto expect = runs(want);
        if (f.truncated) {
            truncated_cases++;
        } else {
            // Complete: every free page is covered, and usable regions are never
            // adjacent, so the ranges are exactly the maximal free runs.
            ASSERT_TRUE(same(f.ranges, expect)) << "got      " << show(f.ranges) << "\nexpected " << show(expect);
        }
        if (expect.size() > c.cap) ASSERT_TRUE(f.truncated);

        // carve from the result
        {
            u64 size = rng() % 4 ? 1 + rng() % (512 * KiB) : 1 + rng() % (2 * MiB);
            u64 limit = rng() % 5 ? rng() % (SPACE + MiB) : ~0ull;
            auto arr = ranges_with_cap(f.ranges, c.cap);
            auto before = pages_of(f.ranges);
            usize n0 = arr.n;
            auto r = carve(arr.arr.data(), arr.n, c.cap, size, limit);
            auto after = live(arr);
            ASSERT_TRUE(well_formed(after));
            ASSERT_LE(arr.n, c.cap);

            // The model: the highest range that can give the pages below the limit,
            // skipping one that would need a split when there is no spare slot.
            u64 sz = align_up(size, PAGE_SIZE), lim = align_down(limit, PAGE_SIZE);
            bool found = false;
            u64 want_at = 0;
            for (usize i = n0; i-- && !found;) {
                u64 b = f.ranges[i].base.raw(), end = b + f.ranges[i].size, e = std::min(end, lim);
                if (e <= b || e - b < sz) continue;
                if (e < end && e - sz > b && n0 == c.cap) continue;
                found = true;
                want_at = e - sz;
            }
            if (!found) {
                ASSERT_EQ(r.error(), Err::no_memory);
                ASSERT_TRUE(same(after, f.ranges));
            } else {
                ASSERT_TRUE(r.ok()) << err_name(r.error()) << " size " << size << " limit " << limit;
                carved++;
                u64 at = r->raw();
                ASSERT_EQ(at, want_at);
                ASSERT_TRUE(r->aligned(PAGE_SIZE));
                ASSERT_LE(at + sz, limit);
                auto expected = before;
                for (u64 p = at / PAGE_SIZE; p < (at + sz) / PAGE_SIZE; p++) {
                    ASSERT_TRUE(before[p]) << "carved page " << p << " was not free";
                    expected[p] = false;
                }
                ASSERT_TRUE(pages_of(after) == expected) << show(after);
            }
        }

        // find_free_page over the same map, without the floor
        {
            std::vector<MemRange> nonempty;
            for (auto &x : c.res)
                if (x.size) nonempty.push_back(x);
            u64 lo = rng() % SPACE, hi = lo + rng() % (SPACE - lo + 0x3000);
            if (rng() % 4 == 0) { lo = 0; hi = SPACE; }
            auto r = find_free_page(c.map.data(), c.map.size(), nonempty.data(), nonempty.size(), lo, hi);
            u64 first = ~0ull;
            for (u64 p = align_up(lo, PAGE_SIZE) / PAGE_SIZE; p < PAGES && (p + 1) * PAGE_SIZE <= hi; p++)
                if (want_nofloor[p]) { first = p * PAGE_SIZE; break; }
            if (first == ~0ull) ASSERT_EQ(r.error(), Err::not_found) << "lo " << lo << " hi " << hi;
            else {
                ASSERT_TRUE(r.ok()) << "lo " << lo << " hi " << hi;
                ASSERT_EQ(r->raw(), first) << "lo " << lo << " hi " << hi;
            }
        }
    }
    // The generator exercises both outcomes.
    EXPECT_GT(truncated_cases, 50);
    EXPECT_GT(carved, 300);
}

} // namespace

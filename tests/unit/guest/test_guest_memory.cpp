// GuestMemory: extents, bounds checks (also near 2^64), copies across
// adjacent extents, the PC layout, and a randomised model check.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "kernel/guest/guest_memory.hpp"

namespace {

constexpr u64 TOP = ~0ull;

// Host backing with guard bytes on both sides to catch stray writes.
struct Backing {
    static constexpr size_t GUARD = 64;
    std::vector<u8> buf;

    explicit Backing(size_t n, u8 fill = 0) : buf(n + 2 * GUARD, 0xcc)
    {
        std::memset(buf.data() + GUARD, fill, n);
    }
    u8 *data() { return buf.data() + GUARD; }
    bool guards_ok() const
    {
        for (size_t i = 0; i < GUARD; i++)
            if (buf[i] != 0xcc || buf[buf.size() - 1 - i] != 0xcc)
                return false;
        return true;
    }
};

TEST(GuestMemory, AddSortsAndRejectsOverlaps)
{
    Backing a(0x1000), b(0x1000), c(0x2000);
    GuestMemory m;
    ASSERT_TRUE(m.add(GuestPhys(0x3000), 0x1000, a.data()));
    ASSERT_TRUE(m.add(GuestPhys(0x1000), 0x1000, b.data()));
    ASSERT_TRUE(m.add(GuestPhys(0x4000), 0x2000, c.data()));     // adjacent: fine
    ASSERT_EQ(m.extent_count(), 3u);
    EXPECT_EQ(m.extent(0).gpa.raw(), 0x1000u);
    EXPECT_EQ(m.extent(1).gpa.raw(), 0x3000u);
    EXPECT_EQ(m.extent(2).gpa.raw(), 0x4000u);
    EXPECT_EQ(m.ram_bytes(), 0x4000u);

    EXPECT_EQ(m.add(GuestPhys(0x1800), 0x1000, a.data()).error(), Err::exists);   // tail overlaps
    EXPECT_EQ(m.add(GuestPhys(0x0800), 0x1000, a.data()).error(), Err::exists);   // head overlaps
    EXPECT_EQ(m.add(GuestPhys(0x0000), 0x10000, a.data()).error(), Err::exists);  // covers all
    EXPECT_EQ(m.add(GuestPhys(0x4800), 0x100, a.data()).error(), Err::exists);    // inside
    EXPECT_EQ(m.add(GuestPhys(0x9000), 0, a.data()).error(), Err::invalid);
    EXPECT_EQ(m.add(GuestPhys(0x9000), 0x1000, nullptr).error(), Err::invalid);
    EXPECT_EQ(m.add(GuestPhys(TOP - 0xfff), 0x1000, a.data()).error(), Err::invalid);   // ends at 2^64
    EXPECT_EQ(m.add(GuestPhys(TOP), TOP, a.data()).error(), Err::invalid);
    EXPECT_EQ(m.extent_count(), 3u);

    // Out-of-range index: an empty extent, not a stray reference.
    EXPECT_EQ(m.extent(3).size, 0u);
    EXPECT_EQ(m.extent(1000).host, nullptr);
}

TEST(GuestMemory, FullTable)
{
    Backing a(16);
    GuestMemory m;
    for (usize i = 0; i < GuestMemory::MAX_EXTENTS; i++)
        ASSERT_TRUE(m.add(GuestPhys(0x1000 * (GuestMemory::MAX_EXTENTS - i)), 16, a.data()));
    EXPECT_EQ(m.add(GuestPhys(0x100000), 16, a.data()).error(), Err::range);
    for (usize i = 1; i < GuestMemory::MAX_EXTENTS; i++)
        EXPECT_LT(m.extent(i - 1).gpa, m.extent(i).gpa);
    m.clear();
    EXPECT_EQ(m.extent_count(), 0u);
    EXPECT_FALSE(m.contains(GuestPhys(0x1000), 1));
    EXPECT_TRUE(m.add(GuestPhys(0x100000), 16, a.data()));
}

TEST(GuestMemory, ContainsAcrossAdjacentExtentsOnly)
{
    Backing a(0x1000), b(0x1000), c(0x1000);
    GuestMemory m;
    ASSERT_TRUE(m.add(GuestPhys(0x1000), 0x1000, a.data()));
    ASSERT_TRUE(m.add(GuestPhys(0x2000), 0x1000, b.data()));
    ASSERT_TRUE(m.add(GuestPhys(0x4000), 0x1000, c.data()));      // gap at 0x3000

    EXPECT_TRUE(m.contains(GuestPhys(0x1000), 0x2000));
    EXPECT_TRUE(m.contains(GuestPhys(0x1fff), 2));
    EXPECT_TRUE(m.contains(GuestPhys(0x4fff), 1));
    EXPECT_FALSE(m.contains(GuestPhys(0x1000), 0x2001));
    EXPECT_FALSE(m.contains(GuestPhys(0x0fff), 2));
    EXPECT_FALSE(m.contains(GuestPhys(0x2fff), 0x1002));
    EXPECT_FALSE(m.contains(GuestPhys(0x5000), 1));
    EXPECT_FALSE(m.contains(GuestPhys(0), 1));
    EXPECT_TRUE(m.contains(GuestPhys(0x9999), 0));                 // empty range
    EXPECT_FALSE(m.contains(GuestPhys(0x1000), TOP));
    EXPECT_FALSE(m.contains(GuestPhys(0x1800), TOP - 0x10));       // wraps into 0x1000..
}

TEST(GuestMemory, NearTopOfAddressSpace)
{
    Backing a(0x1000);
    GuestMemory m;
    u64 base = TOP - 0x1fff;        // [2^64 - 0x2000, 2^64 - 0x1000)
    ASSERT_TRUE(m.add(GuestPhys(base), 0x1000, a.data()));
    EXPECT_TRUE(m.contains(GuestPhys(base), 0x1000));
    EXPECT_FALSE(m.contains(GuestPhys(base), 0x1001));
    EXPECT_FALSE(m.contains(GuestPhys(TOP), 1));
    EXPECT_FALSE(m.contains(GuestPhys(TOP), 2));                   // wraps to 0
    EXPECT_FALSE(m.contains(GuestPhys(base + 0x800), TOP));
    u8 buf[2] = {1, 2};
    EXPECT_EQ(m.write(GuestPhys(TOP), buf, 2).error(), Err::range);
    EXPECT_EQ(m.write(GuestPhys(base + 0xfff), buf, 2).error(), Err::range);
    EXPECT_TRUE(m.write(GuestPhys(base + 0xffe), buf, 2));
    EXPECT_EQ(a.data()[0xffe], 1);
    EXPECT_EQ(m.span(GuestPhys(TOP - 1), 4), nullptr);
    EXPECT_EQ(m.span(GuestPhys(base), TOP), nullptr);
    EXPECT_EQ(m.span(GuestPhys(base + 0x10), 0x10), a.data() + 0x10);
    EXPECT_TRUE(a.guards_ok());
}

TEST(GuestMemory, ReadWriteFillAcrossExtents)
{
    Backing a(0x100), b(0x100);
    GuestMemory m;
    ASSERT_TRUE(m.add(GuestPhys(0x1000), 0x100, a.data()));
    ASSERT_TRUE(m.add(GuestPhys(0x1100), 0x100, b.data()));

    std::vector<u8> src(0x180);
    for (size_t i = 0; i < src.size(); i++) src[i] = u8(i * 7 + 1);
    ASSERT_TRUE(m.write(GuestPhys(0x1040), src.data(), src.size()));
    EXPECT_EQ(std::memcmp(a.data() + 0x40, src.data(), 0xc0), 0);
    EXPECT_EQ(std::memcmp(b.data(), src.data() + 0xc0, 0xc0), 0);

    std::vector<u8> dst(0x180, 0);
    ASSERT_TRUE(m.read(GuestPhys(0x1040), dst.data(), dst.size()));
    EXPECT_EQ(dst, src);

    ASSERT_TRUE(m.fill(GuestPhys(0x10f0), 0x5a, 0x20));
    for (int i = 0; i < 0x10; i++) {
        EXPECT_EQ(a.data()[0xf0 + i], 0x5a);
        EXPECT_EQ(b.data()[i], 0x5a);
    }
    EXPECT_NE(b.data()[0x10], 0x5a);
    EXPECT_TRUE(a.guards_ok());
    EXPECT_TRUE(b.guards_ok());
}

TEST(GuestMemory, OutOfRangeCopiesNothing)
{
    Backing a(0x100, 0x11);
    GuestMemory m;
    ASSERT_TRUE(m.add(GuestPhys(0x1000), 0x100, a.data()));

    std::vector<u8> src(0x20, 0xee), dst(0x20, 0x77);
    EXPECT_EQ(m.write(GuestPhys(0x10f0), src.data(), 0x20).error(), Err::range);
    EXPECT_EQ(m.fill(GuestPhys(0x0ff0), 0xee, 0x20).error(), Err::range);
    for (int i = 0; i < 0x100; i++)
        ASSERT_EQ(a.data()[i], 0x11) << i;
    EXPECT_EQ(m.read(GuestPhys(0x10f0), dst.data(), 0x20).error(), Err::range);
    EXPECT_EQ(dst, std::vector<u8>(0x20, 0x77));

    EXPECT_EQ(m.write(GuestPhys(0x1000), nullptr, 1).error(), Err::invalid);
    EXPECT_EQ(m.read(GuestPhys(0x1000), nullptr, 1).error(), Err::invalid);
    EXPECT_TRUE(m.write(GuestPhys(0x5000), nullptr, 0));          // empty: nothing to do
    EXPECT_TRUE(a.guards_ok());
}

TEST(GuestMemory, SpanStaysInOneExtent)
{
    Backing a(0x1000), b(0x1000);
    GuestMemory m;
    ASSERT_TRUE(m.add(GuestPhys(0x10000), 0x1000, a.data()));
    ASSERT_TRUE(m.add(GuestPhys(0x11000), 0x1000, b.data()));
    EXPECT_EQ(m.span(GuestPhys(0x10000), 0x1000), a.data());
    EXPECT_EQ(m.span(GuestPhys(0x11ff0), 0x10), b.data() + 0xff0);
    EXPECT_EQ(m.span(GuestPhys(0x10ff0), 0x20), nullptr);          // contained, but in two extents
    EXPECT_TRUE(m.contains(GuestPhys(0x10ff0), 0x20));
    EXPECT_EQ(m.span(GuestPhys(0x12000), 1), nullptr);
    EXPECT_EQ(m.span(GuestPhys(0x10000), 0), nullptr);
    const GuestMemory &c = m;
    EXPECT_EQ(c.span(GuestPhys(0x10004), 4), a.data() + 4);
}

// span()'s inline path tries the extent of the last lookup first: at its edges, and after
// clear() left the hint pointing at an extent that is gone, it must answer as the full lookup.
TEST(GuestMemory, SpanThroughTheLastLookupsExtent)
{
    Backing a(0x1000), b(0x1000);
    GuestMemory m;
    ASSERT_TRUE(m.add(GuestPhys(0x10000), 0x1000, a.data()));
    ASSERT_TRUE(m.add(GuestPhys(0x11000), 0x1000, b.data()));
    ASSERT_EQ(m.span(GuestPhys(0x11000), 1), b.data());            // the hint is now b
    EXPECT_EQ(m.span(GuestPhys(0x11fff), 1), b.data() + 0xfff);
    EXPECT_EQ(m.span(GuestPhys(0x11fff), 2), nullptr);             // one byte past its end
    EXPECT_EQ(m.span(GuestPhys(0x11000), 0x1001), nullptr);
    EXPECT_EQ(m.span(GuestPhys(0x11000), 0), nullptr);
    EXPECT_EQ(m.span(GuestPhys(0x11800), TOP), nullptr);           // a length that wraps
    EXPECT_EQ(m.span(GuestPhys(0x10fff), 1), a.data() + 0xfff);    // below it: a, found by the lookup
    EXPECT_EQ(m.span(GuestPhys(0x10fff), 2), nullptr);
    EXPECT_EQ(m.span(GuestPhys(TOP), 1), nullptr);
    m.clear();
    EXPECT_EQ(m.span(GuestPhys(0x10000), 1), nullptr);             // the hinted extent is gone
    EXPECT_EQ(m.span(GuestPhys(0x11000), 1), nullptr);
    ASSERT_TRUE(m.add(GuestPhys(0x20000), 0x1000, b.data()));
    EXPECT_EQ(m.span(GuestPhys(0x10000), 1), nullptr);
    EXPECT_EQ(m.span(GuestPhys(0x20010), 0x10), b.data() + 0x10);
}

TEST(GuestMemory, PcLayout)
{
    GuestExtent e[3];
    ASSERT_EQ(GuestMemory::pc_layout(64 * MiB, 3 * GiB, e), 2u);
    EXPECT_EQ(e[0].gpa.raw(), 0u);
    EXPECT_EQ(e[0].size, 640 * KiB);
    EXPECT_EQ(e[0].host, nullptr);
    EXPECT_EQ(e[1].gpa.raw(), 1 * MiB);
    EXPECT_EQ(e[1].size, 63 * MiB);

    ASSERT_EQ(GuestMemory::pc_layout(5 * GiB, 3 * GiB, e), 3u);
    EXPECT_EQ(e[1].size, 3 * GiB - 1 * MiB);
    EXPECT_EQ(e[2].gpa.raw(), 4 * GiB);
    EXPECT_EQ(e[2].size, 2 * GiB);

    ASSERT_EQ(GuestMemory::pc_layout(3 * GiB, 3 * GiB, e), 2u);   // exactly lowmem_top: no high part
    ASSERT_EQ(GuestMemory::pc_layout(512 * KiB + 123, 3 * GiB, e), 1u);
    EXPECT_EQ(e[0].size, 512 * KiB);                                // rounded down to pages
    ASSERT_EQ(GuestMemory::pc_layout(800 * KiB, 3 * GiB, e), 1u);  // the rest is under the hole
    EXPECT_EQ(e[0].size, 640 * KiB);
    EXPECT_EQ(GuestMemory::pc_layout(0, 3 * GiB, e), 0u);

    // lowmem_top beyond 4 GiB is clamped; below 1 MiB means "no low RAM above the hole".
    ASSERT_EQ(GuestMemory::pc_layout(6 * GiB, 8 * GiB, e), 3u);
    EXPECT_EQ(e[1].gpa.raw() + e[1].size, 4 * GiB);
    EXPECT_EQ(e[2].size, 2 * GiB);
    ASSERT_EQ(GuestMemory::pc_layout(4 * MiB, 0, e), 2u);
    EXPECT_EQ(e[1].gpa.raw(), 4 * GiB);
    EXPECT_EQ(e[1].size, 3 * MiB);

    // Absurd sizes: the high part still ends below 2^64, and the result is addable.
    ASSERT_EQ(GuestMemory::pc_layout(TOP, 3 * GiB, e), 3u);
    EXPECT_LE(e[2].size, TOP - e[2].gpa.raw());
    Backing b(16);
    GuestMemory m;
    EXPECT_TRUE(m.add(e[2].gpa, e[2].size, b.data()));             // never dereferenced here
    EXPECT_TRUE(m.contains(GuestPhys(TOP - 0x2000), 0x1000));
}

// Random extents over a small address space against a byte-map model.
TEST(GuestMemory, RandomisedAgainstModel)
{
    std::mt19937_64 rng(1234);
    for (int round = 0; round < 200; round++) {
        constexpr u64 SPACE = 0x400;
        std::vector<int> owner(SPACE, -1);
        std::vector<std::vector<u8>> backs;
        backs.reserve(16);
        GuestMemory m;
        for (int k = 0; k < 16; k++) {
            u64 a = rng() % SPACE, n = 1 + rng() % 0x80;
            if (a + n > SPACE) n = SPACE - a;
            backs.emplace_back(n, u8(k));
            bool free = true;
            for (u64 i = a; i < a + n; i++) free &= owner[i] < 0;
            Status s = m.add(GuestPhys(a), n, backs.back().data());
            ASSERT_EQ(s.ok(), free);
            if (!free) {
                ASSERT_EQ(s.error(), Err::exists);
                continue;
            }
            for (u64 i = a; i < a + n; i++) owner[i] = k;
        }
        for (int q = 0; q < 200; q++) {
            u64 a = rng() % (SPACE + 8), n = rng() % 0x100;
            if (rng() % 8 == 0) a = TOP - rng() % 4;
            bool in = true;
            for (u64 i = 0; i < n && in; i++)
                in = a + i >= a && a + i < SPACE && owner[a + i] >= 0;
            ASSERT_EQ(m.contains(GuestPhys(a), n), in) << std::hex << a << "+" << n;
            std::vector<u8> buf(n + 1, 0xab);
            ASSERT_EQ(m.read(GuestPhys(a), buf.data(), n).ok(), in);
            for (u64 i = 0; in && i < n; i++)
                ASSERT_EQ(buf[i], u8(owner[a + i]));
            ASSERT_EQ(buf[n], 0xab);
        }
    }
}

} // namespace

namespace {

// The last-found extent is tried first: whatever the order of lookups, every answer must be
// the one a fresh table gives (holes between, below and above extents, and after add()).
TEST(GuestMemory, LookupHintNeverChangesAnswers)
{
    Backing a(0x1000), b(0x2000), c(0x1000);
    GuestMemory m;
    ASSERT_TRUE(m.add(GuestPhys(0x10000), 0x1000, a.data()).ok());
    ASSERT_TRUE(m.add(GuestPhys(0x20000), 0x2000, b.data()).ok());
    const u64 probes[] = {0x0, 0xffff, 0x10000, 0x10fff, 0x11000, 0x1ffff, 0x20000, 0x21fff, 0x22000, 0x30000,
                          0x30fff, 0x31000, ~0ull - 1};
    auto expect = [&](u64 p, bool with_c) -> const u8 * {
        if (p >= 0x10000 && p < 0x11000) return a.data() + (p - 0x10000);
        if (p >= 0x20000 && p < 0x22000) return b.data() + (p - 0x20000);
        if (with_c && p >= 0x30000 && p < 0x31000) return c.data() + (p - 0x30000);
        return nullptr;
    };
    std::mt19937 rng(9);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 2000; i++) {
            const u64 p = probes[rng() % std::size(probes)];
            EXPECT_EQ(m.span(GuestPhys(p), 1), expect(p, round == 1)) << std::hex << p;
            EXPECT_EQ(m.contains(GuestPhys(p), 1), expect(p, round == 1) != nullptr) << std::hex << p;
        }
        // A new extent (after round 0): the lookups go on with a hint from before it.
        if (round == 0) ASSERT_TRUE(m.add(GuestPhys(0x30000), 0x1000, c.data()).ok());
    }
    Backing d(0x1000);
    ASSERT_TRUE(m.add(GuestPhys(0x0), 0x1000, d.data()).ok());   // inserted first: every index moves
    EXPECT_EQ(m.span(GuestPhys(0x30000), 1), c.data());
    EXPECT_EQ(m.span(GuestPhys(0x10), 1), d.data() + 0x10);
    EXPECT_EQ(m.span(GuestPhys(0x20000), 1), b.data());
    EXPECT_EQ(m.span(GuestPhys(0x1000), 1), nullptr);
    EXPECT_TRUE(a.guards_ok() && b.guards_ok() && c.guards_ok() && d.guards_ok());
}

} // namespace

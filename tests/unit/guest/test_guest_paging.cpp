#include <gtest/gtest.h>

#include <vector>

#include "kernel/guest/guest_paging.hpp"

namespace {

struct Ram {
    std::vector<u8> bytes = std::vector<u8>(16 << 20);
    GuestMemory mem;
    Ram() { EXPECT_TRUE(mem.add(GuestPhys(0), bytes.size(), bytes.data()).ok()); }
    void put(u64 at, u64 v, unsigned size = 8) { memcpy(&bytes[at], &v, size); }
};

TEST(GuestPaging, Off)
{
    Ram r;
    auto t = guest_translate(r.mem, {0x11, 0, 0, 0}, 0x12345);
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(*t, 0x12345u);
}

TEST(GuestPaging, FourLevelWith4KAnd2M)
{
    Ram r;
    const u64 cr3 = 0x1000;
    r.put(0x1000 + 0 * 8, 0x2000 | 1);          // PML4[0]
    r.put(0x2000 + 0 * 8, 0x3000 | 1);          // PDPT[0]
    r.put(0x3000 + 1 * 8, 0x4000 | 1);          // PD[1] -> PT
    r.put(0x4000 + 2 * 8, 0x9000 | 1);          // PT[2] -> 0x9000
    r.put(0x3000 + 2 * 8, 0x600000 | 0x81);     // PD[2]: 2 MiB page at 6 MiB
    GuestPagingState s{0x80000011, cr3, 1u << 5, 1u << 10 | 1u << 8};
    auto a = guest_translate(r.mem, s, 0x202123);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(*a, 0x9123u);
    auto b = guest_translate(r.mem, s, 0x400000 + 0x1234);
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(*b, 0x601234u);
    EXPECT_EQ(guest_translate(r.mem, s, 0x800000).error(), Err::not_found);
}

TEST(GuestPaging, WalkKeepsTheEntriesRead)
{
    Ram r;
    r.put(0x1000 + 0 * 8, 0x2000 | 1);          // PML4[0]
    r.put(0x2000 + 0 * 8, 0x3000 | 1);          // PDPT[0]
    r.put(0x3000 + 1 * 8, 0x4000 | 1);          // PD[1] -> PT
    r.put(0x4000 + 2 * 8, 0x9000 | 0x63);       // PT[2]
    GuestPagingState s{0x80000011, 0x1000, 1u << 5, 1u << 10 | 1u << 8};
    GuestWalk w;
    ASSERT_TRUE(guest_translate(r.mem, s, 0x202123, &w).ok());
    ASSERT_EQ(w.n, 4u);
    EXPECT_EQ(w.entry[0], 0x2001u);
    EXPECT_EQ(w.entry[3], 0x9063u);
    EXPECT_EQ(w.at[0], 0x1000u);
    EXPECT_EQ(w.at[3], 0x4000u + 2 * 8);
    GuestWalk miss;                             // PD[3] not present: the walk ends with it
    EXPECT_EQ(guest_translate(r.mem, s, 0x600000, &miss).error(), Err::not_found);
    ASSERT_EQ(miss.n, 3u);
    EXPECT_EQ(miss.entry[2], 0u);
}

TEST(GuestPaging, Legacy32BitAndPse)
{
    Ram r;
    r.put(0x1000 + 1 * 4, 0x2000 | 1, 4);       // PDE[1] -> PT
    r.put(0x2000 + 3 * 4, 0x7000 | 1, 4);       // PTE[3]
    r.put(0x1000 + 2 * 4, 0x800000 | 0x81, 4);  // PDE[2]: 4 MiB page at 8 MiB
    GuestPagingState s{0x80000011, 0x1000, 1u << 4, 0};
    EXPECT_EQ(*guest_translate(r.mem, s, 0x403456), 0x7456u);
    EXPECT_EQ(*guest_translate(r.mem, s, 0x812345), 0x812345u);
}

TEST(GuestPaging, PaeThreeLevel)
{
    Ram r;
    r.put(0x1000 + 1 * 8, 0x2000 | 1);          // PDPTE[1] (1-2 GiB)
    r.put(0x2000 + 0 * 8, 0x3000 | 1);          // PD[0]
    r.put(0x3000 + 5 * 8, 0xa000 | 1);          // PT[5]
    GuestPagingState s{0x80000011, 0x1000, 1u << 5, 0};
    EXPECT_EQ(*guest_translate(r.mem, s, 0x40005abc), 0xaabcu);
}

TEST(GuestPaging, TablesOutsideRamAreRefused)
{
    Ram r;
    r.put(0x1000, 0x7fff0000 | 1);              // points far outside the 16 MiB of RAM
    GuestPagingState s{0x80000011, 0x1000, 1u << 5, 1u << 10};
    EXPECT_EQ(guest_translate(r.mem, s, 0x1000).error(), Err::range);
    GuestPagingState bad{0x80000011, 0xfffffffff000, 1u << 5, 1u << 10};
    EXPECT_EQ(guest_translate(r.mem, bad, 0).error(), Err::range);
}

} // namespace

namespace {

TEST(GuestPaging, FiveLevel)
{
    Ram r;
    r.put(0x1000 + 1 * 8, 0x2000 | 1);          // PML5[1]: 256 TiB .. 512 TiB
    r.put(0x2000 + 0 * 8, 0x3000 | 1);          // PML4[0]
    r.put(0x3000 + 0 * 8, 0x4000 | 1);          // PDPT[0]
    r.put(0x4000 + 0 * 8, 0x200000 | 0x81);     // PD[0]: 2 MiB page
    GuestPagingState s{0x80000011, 0x1000, 1u << 5 | 1u << 12, 1u << 10};
    auto t = guest_translate(r.mem, s, (1ull << 48) + 0x1234);
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(*t, 0x201234u);
}

} // namespace

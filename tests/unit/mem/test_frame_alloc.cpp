// Buddy frame allocator. The managed "physical" ranges are fake: the allocator
// must never touch them, only its metadata buffer is real memory.
#include "kernel/mem/frame_alloc.hpp"

#include <gtest/gtest.h>

#include <array>
#include <map>
#include <memory>
#include <random>
#include <vector>

namespace {

constexpr unsigned MAX_ORDER = FrameAllocator::MAX_ORDER;

MemRange R(u64 base, u64 size) { return { PhysAddr(base), size }; }

// The allocator plus its metadata, garbage-filled so that init must clear it.
struct Harness {
    std::unique_ptr<FrameAllocator> fa = std::make_unique<FrameAllocator>();
    std::vector<u64> meta;

    Status init(const std::vector<MemRange> &r)
    {
        meta.assign(FrameAllocator::metadata_bytes(r.data(), r.size()) / 8 + 1, 0xa5a5a5a5a5a5a5a5ull);
        return fa->init(r.data(), r.size(), meta.data(), meta.size() * 8);
    }
};

// Everything observable about the allocator's state.
struct Snapshot {
    std::vector<u64> meta;
    u64 free;
    std::array<u64, MAX_ORDER + 1> blocks;

    explicit Snapshot(const Harness &h) : meta(h.meta), free(h.fa->free_frames())
    {
        for (unsigned k = 0; k <= MAX_ORDER; k++)
            blocks[k] = h.fa->free_blocks(k);
    }
    bool operator==(const Snapshot &) const = default;
};

bool inside_some_zone(const FrameAllocator &fa, u64 pa, u64 size)
{
    for (usize i = 0; i < fa.zone_count(); i++) {
        MemRange z = fa.zone(i);
        if (pa >= z.base.raw() && pa + size <= z.base.raw() + z.size)
            return true;
    }
    return false;
}

const std::vector<MemRange> PC_MAP = {
    R(0x0, 0x9f000), R(0x100000, 0x7ffe0000 - 0x100000), R(0x100000000, 0x80000000),
};

} // namespace

TEST(FrameAlloc, ConstantInitialisable)
{
    static constinit FrameAllocator fa;
    EXPECT_EQ(fa.total_frames(), 0u);
    EXPECT_FALSE(fa.alloc(0).ok());
}

TEST(FrameAlloc, InitPcMap)
{
    Harness h;
    ASSERT_TRUE(h.init(PC_MAP));
    const FrameAllocator &fa = *h.fa;
    EXPECT_EQ(fa.zone_count(), 3u);
    u64 total = 0x9f + (0x7ffe0000 - 0x100000) / PAGE_SIZE + 0x80000;
    EXPECT_EQ(fa.total_frames(), total);
    EXPECT_EQ(fa.free_frames(), total);
    EXPECT_EQ(fa.free_blocks(MAX_ORDER), 2u);     // only 4..6 GiB holds whole 1 GiB blocks
    u64 sum = 0;
    for (unsigned k = 0; k <= MAX_ORDER; k++)
        sum += fa.free_blocks(k) << k;
    EXPECT_EQ(sum, total);
    EXPECT_TRUE(fa.check());

    // About 3 bits per frame plus a small fixed cost per zone and order.
    u64 bytes = FrameAllocator::metadata_bytes(PC_MAP.data(), PC_MAP.size());
    EXPECT_LT(bytes, total * 3 / 8 * 105 / 100 + 3 * 19 * 128);
}

TEST(FrameAlloc, InitMergesSortsAndValidates)
{
    Harness h;
    // Unsorted, adjacent pieces and an empty range: one zone.
    ASSERT_TRUE(h.init({ R(0x200000, 0x100000), R(0x0, 0x0), R(0x100000, 0x100000), R(0x300000, 0x1000) }));
    EXPECT_EQ(h.fa->zone_count(), 1u);
    EXPECT_EQ(h.fa->zone(0).base.raw(), 0x100000u);
    EXPECT_EQ(h.fa->zone(0).size, 0x201000u);
    EXPECT_TRUE(h.fa->check());

    Snapshot before(h);
    auto bad = [&](std::vector<MemRange> r, Err e) {
        std::vector<u64> meta(1 << 16);
        EXPECT_EQ(h.fa->init(r.data(), r.size(), meta.data(), meta.size() * 8).error(), e);
        EXPECT_EQ(FrameAllocator::metadata_bytes(r.data(), r.size()), 0u);
    };
    bad({ R(0x1800, 0x1000) }, Err::invalid);                               // unaligned base
    bad({ R(0x1000, 0x1800) }, Err::invalid);                               // unaligned size
    bad({ R(0x1000, 0x3000), R(0x3000, 0x1000) }, Err::invalid);            // overlap
    bad({ R(0x1000, 0x1000), R(0x1000, 0x1000) }, Err::invalid);            // duplicate
    bad({ R(0x0, 0x10000), R(0x4000, 0x1000) }, Err::invalid);              // contained
    bad({ R(0xfffffffffffff000, 0x1000) }, Err::invalid);                   // beyond MAXPHYADDR
    bad({ R(0xffffff000, ~0xfffull) }, Err::invalid);                       // wraps

    std::vector<MemRange> many;
    for (u64 i = 0; i < 65; i++)
        many.push_back(R(i * 0x10000, 0x1000));
    bad(many, Err::range);
    many[64] = R(63 * 0x10000 + 0x1000, 0x1000);                            // adjacent: merges
    std::vector<u64> meta(FrameAllocator::metadata_bytes(many.data(), many.size()) / 8);
    ASSERT_FALSE(meta.empty());
    EXPECT_EQ(h.fa->init(many.data(), many.size(), meta.data(), meta.size() * 8 - 8).error(), Err::invalid);
    EXPECT_EQ(h.fa->init(many.data(), many.size(), reinterpret_cast<u8 *>(meta.data()) + 4,
                         meta.size() * 8 - 8).error(), Err::invalid);
    EXPECT_TRUE(Snapshot(h) == before);                                     // failures changed nothing

    ASSERT_TRUE(h.fa->init(many.data(), many.size(), meta.data(), meta.size() * 8));
    EXPECT_EQ(h.fa->zone_count(), 64u);
    EXPECT_EQ(h.fa->total_frames(), 65u);
    EXPECT_TRUE(h.fa->check());
}

TEST(FrameAlloc, AlignmentAndLimits)
{
    Harness h;
    ASSERT_TRUE(h.init({ R(0x3000, 0x9c000), R(0x100000, 0x7ffe0000 - 0x100000), R(0x100000000, 0x80000000) }));
    FrameAllocator &fa = *h.fa;
    const u64 limits[] = { ~0ull, 4 * GiB, 2 * GiB, 16 * MiB, 1 * MiB };
    std::vector<std::pair<u64, unsigned>> live;
    // Below 1 MiB only the 0x3000..0x9f000 zone qualifies.
    auto low = fa.alloc(0, 1 * MiB);
    ASSERT_TRUE(low);
    EXPECT_GE(low->raw(), 0x3000u);
    EXPECT_LT(low->raw(), 0x9f000u);
    live.push_back({ low->raw(), 0 });

    for (int round = 0; round < 4; round++)
        for (unsigned k = 0; k <= MAX_ORDER; k++)
            for (u64 lim : limits) {
                auto r = fa.alloc(k, lim);
                u64 size = PAGE_SIZE << k;
                if (!r) {
                    EXPECT_EQ(r.error(), Err::no_memory);
                    continue;
                }
                u64 pa = r->raw();
                EXPECT_EQ(pa % size, 0u) << "order " << k;
                EXPECT_LE(pa + size, lim);
                EXPECT_TRUE(inside_some_zone(fa, pa, size));
                live.push_back({ pa, k });
            }
    EXPECT_EQ(fa.alloc(0, 0xfff).error(), Err::no_memory);
    EXPECT_EQ(fa.alloc(MAX_ORDER + 1).error(), Err::invalid);
    EXPECT_TRUE(fa.check());
    for (auto [pa, k] : live)
        ASSERT_TRUE(fa.free(PhysAddr(pa), k));
    EXPECT_EQ(fa.free_frames(), fa.total_frames());
    EXPECT_TRUE(fa.check());
}

TEST(FrameAlloc, HighMemoryFirst)
{
    Harness h;
    ASSERT_TRUE(h.init(PC_MAP));
    FrameAllocator &fa = *h.fa;
    // 2 GiB above 4 GiB hold all of these (1 GiB in all): none may go low.
    for (unsigned k = 0; k < MAX_ORDER; k++) {
        auto r = fa.alloc(k);
        ASSERT_TRUE(r);
        EXPECT_GE(r->raw(), 4 * GiB) << "order " << k;
    }
    // Only one 1 GiB block is left up there; the next small ones still come from above.
    EXPECT_EQ(fa.free_blocks(MAX_ORDER), 1u);
    auto r = fa.alloc(0);
    ASSERT_TRUE(r);
    EXPECT_GE(r->raw(), 4 * GiB);
    EXPECT_TRUE(fa.check());
}

TEST(FrameAlloc, GigabyteBlocks)
{
    Harness h;
    // 1 GiB + 4 KiB .. 21 GiB: the first partial GiB cannot give a 1 GiB block.
    ASSERT_TRUE(h.init({ R(0x40001000, 21 * GiB - 0x40001000) }));
    FrameAllocator &fa = *h.fa;
    EXPECT_EQ(fa.free_blocks(MAX_ORDER), 19u);   // 2..21 GiB
    std::vector<u64> got;
    for (;;) {
        auto r = fa.alloc(MAX_ORDER);
        if (!r) {
            EXPECT_EQ(r.error(), Err::no_memory);
            break;
        }
        EXPECT_EQ(r->raw() % GiB, 0u);
        got.push_back(r->raw());
    }
    EXPECT_EQ(got.size(), 19u);
    EXPECT_EQ(got.front(), 20 * GiB);            // highest first
    EXPECT_EQ(fa.free_frames(), (GiB - 0x1000) / PAGE_SIZE);
    // 2 MiB blocks are still there in the partial GiB.
    auto r = fa.alloc(9);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->raw() % (2 * MiB), 0u);
    ASSERT_TRUE(fa.free(*r, 9));
    for (u64 pa : got)
        ASSERT_TRUE(fa.free(PhysAddr(pa), MAX_ORDER));
    EXPECT_EQ(fa.free_blocks(MAX_ORDER), 19u);
    EXPECT_TRUE(fa.check());
}

TEST(FrameAlloc, Exhaustion)
{
    Harness h;
    const std::vector<MemRange> map = { R(0x5000, 0x7b000), R(0x1230000, 0x345000), R(0x100003000, 0x11000) };
    ASSERT_TRUE(h.init(map));
    FrameAllocator &fa = *h.fa;
    Snapshot initial(h);

    std::vector<u64> got;
    for (;;) {
        auto r = fa.alloc(0);
        if (!r)
            break;
        got.push_back(r->raw());
    }
    EXPECT_EQ(got.size(), fa.total_frames());
    EXPECT_EQ(fa.free_frames(), 0u);
    for (unsigned k = 0; k <= MAX_ORDER; k++) {
        EXPECT_EQ(fa.free_blocks(k), 0u);
        EXPECT_EQ(fa.alloc(k).error(), Err::no_memory);
    }
    EXPECT_TRUE(fa.check());

    // Free in a scrambled order; everything must coalesce back to the start.
    std::mt19937 rng(7);
    std::shuffle(got.begin(), got.end(), rng);
    for (u64 pa : got)
        ASSERT_TRUE(fa.free(PhysAddr(pa), 0));
    EXPECT_TRUE(Snapshot(h) == initial);
    EXPECT_TRUE(fa.check());
}

TEST(FrameAlloc, InvalidFreesChangeNothing)
{
    Harness h;
    ASSERT_TRUE(h.init(PC_MAP));
    FrameAllocator &fa = *h.fa;
    auto a = fa.alloc(3);           // 32 KiB
    auto b = fa.alloc(0);
    auto c = fa.alloc(9, 2 * GiB);  // 2 MiB, low zone
    ASSERT_TRUE(a && b && c);
    Snapshot before(h);

    auto rejected = [&](u64 pa, unsigned k) {
        EXPECT_EQ(fa.free(PhysAddr(pa), k).error(), Err::invalid) << std::hex << pa << " order " << k;
        EXPECT_TRUE(Snapshot(h) == before);
    };
    u64 pa = a->raw();
    rejected(pa, 0);                        // wrong order: smaller, at the head
    rejected(pa + 0x1000, 0);               // inside the block
    rejected(pa, 2);
    rejected(pa & ~0xffffull, 4);           // wrong order: larger
    rejected(pa + 0x800, 3);                // misaligned
    rejected(pa, MAX_ORDER + 1);
    rejected(c->raw() + 0x1000, 0);
    rejected(c->raw(), 8);
    rejected(c->raw(), 10);
    rejected(0x9f000, 0);                   // hole
    rejected(0x7ffe0000, 0);                // just past a zone
    rejected(0x7ffdf000, 1);                // straddles a zone end
    rejected(0x800000000, 0);               // foreign
    rejected(0xfffffffffffff000, 0);
    rejected(0x200000000, MAX_ORDER);       // free memory
    rejected(0x40000, 0);

    ASSERT_TRUE(fa.free(*a, 3));
    ASSERT_TRUE(fa.free(*b, 0));
    ASSERT_TRUE(fa.free(*c, 9));
    Snapshot after(h);
    auto rejected_again = [&](u64 pa, unsigned k) {
        EXPECT_EQ(fa.free(PhysAddr(pa), k).error(), Err::invalid);
        EXPECT_TRUE(Snapshot(h) == after);
    };
    rejected_again(a->raw(), 3);            // double frees
    rejected_again(b->raw(), 0);
    rejected_again(c->raw(), 9);
    EXPECT_EQ(fa.free_frames(), fa.total_frames());
    EXPECT_TRUE(fa.check());
}

TEST(FrameAlloc, ReserveAndRelease)
{
    Harness h;
    ASSERT_TRUE(h.init(PC_MAP));
    FrameAllocator &fa = *h.fa;
    Snapshot initial(h);

    // The AP trampoline page.
    ASSERT_TRUE(fa.reserve(PhysAddr(0x8000), 0x1000));
    EXPECT_EQ(fa.free_frames(), fa.total_frames() - 1);
    EXPECT_EQ(fa.reserve(PhysAddr(0x8000), 0x1000).error(), Err::exists);
    for (int i = 0; i < 0x9e; i++) {
        auto r = fa.alloc(0, 1 * MiB);
        ASSERT_TRUE(r);
        EXPECT_NE(r->raw(), 0x8000u);
    }
    EXPECT_EQ(fa.alloc(0, 1 * MiB).error(), Err::no_memory);
    ASSERT_TRUE(fa.release(PhysAddr(0x8000), 0x1000));
    auto r = fa.alloc(0, 1 * MiB);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->raw(), 0x8000u);

    // An odd range spanning many block sizes, then a partial overlap.
    ASSERT_TRUE(fa.reserve(PhysAddr(0x1233000), 0x3456000));
    Snapshot before(h);
    EXPECT_EQ(fa.reserve(PhysAddr(0x1200000), 0x40000).error(), Err::exists);
    EXPECT_EQ(fa.reserve(PhysAddr(0x9e000), 0x2000).error(), Err::invalid);        // runs into the hole
    EXPECT_EQ(fa.reserve(PhysAddr(0x7ff00000), 0x100000).error(), Err::invalid);   // past the zone end
    EXPECT_EQ(fa.reserve(PhysAddr(0x10000800), 0x1000).error(), Err::invalid);
    EXPECT_EQ(fa.reserve(PhysAddr(0x10000000), 0).error(), Err::invalid);
    EXPECT_EQ(fa.release(PhysAddr(0x1234000), 0x1000).error(), Err::invalid);      // part of a block
    EXPECT_EQ(fa.release(PhysAddr(0x1232000), 0x2000).error(), Err::invalid);      // half free
    EXPECT_EQ(fa.release(PhysAddr(0x10000000), 0x1000).error(), Err::invalid);     // free memory
    EXPECT_TRUE(Snapshot(h) == before);
    EXPECT_TRUE(fa.check());

    // Allocations never land in the reserved range.
    for (int i = 0; i < 2000; i++) {
        auto a = fa.alloc(i % 6, 2 * GiB);
        ASSERT_TRUE(a);
        EXPECT_TRUE(a->raw() + (PAGE_SIZE << (i % 6)) <= 0x1233000 || a->raw() >= 0x1233000 + 0x3456000)
            << std::hex << a->raw() << " order " << i % 6;
    }
    EXPECT_TRUE(fa.check());

    // A whole 1 GiB block, reserved and given back.
    Harness g;
    ASSERT_TRUE(g.init({ R(0x100000000, 0x80000000) }));
    Snapshot gi(g);
    ASSERT_TRUE(g.fa->reserve(PhysAddr(0x140000000), GiB));
    EXPECT_EQ(g.fa->free_blocks(MAX_ORDER), 1u);
    ASSERT_TRUE(g.fa->free(PhysAddr(0x140000000), MAX_ORDER));  // same as releasing it
    EXPECT_TRUE(Snapshot(g) == gi);
    ASSERT_TRUE(g.fa->reserve(PhysAddr(0x17ffff000), 0x1000));
    ASSERT_TRUE(g.fa->release(PhysAddr(0x17ffff000), 0x1000));
    EXPECT_TRUE(Snapshot(g) == gi);
}

// Random alloc/free against a shadow model of the live blocks.
TEST(FrameAlloc, RandomisedAgainstShadow)
{
    Harness h;
    const std::vector<MemRange> map = {
        R(0x0, 0x9f000), R(0x100000, 0x1f00000), R(0x3ff3000, 0x1234000),
        R(0x7ffe0000 - 0x1000000, 0x1000000), R(0x100000000, 0x1000000), R(0x101fff000, 0x3000),
    };
    ASSERT_TRUE(h.init(map));
    FrameAllocator &fa = *h.fa;
    ASSERT_TRUE(fa.check());
    Snapshot initial(h);

    std::mt19937 rng(12345);
    std::map<u64, std::pair<u64, unsigned>> live;  // start -> (end, order)
    u64 allocated = 0;
    const u64 limits[] = { ~0ull, ~0ull, ~0ull, 4 * GiB, 1 * MiB, 0x2000000 };

    auto overlaps = [&](u64 b, u64 e) {
        auto it = live.upper_bound(b);
        if (it != live.end() && it->first < e)
            return true;
        return it != live.begin() && std::prev(it)->second.first > b;
    };

    for (int step = 0; step < 20000; step++) {
        unsigned op = rng() % 100;
        if (op < 55 || live.empty()) {
            unsigned k = rng() % 4 ? rng() % 4 : rng() % 13;
            u64 lim = limits[rng() % 6];
            auto r = fa.alloc(k, lim);
            if (!r) {
                ASSERT_EQ(r.error(), Err::no_memory);
                continue;
            }
            u64 b = r->raw(), e = b + (PAGE_SIZE << k);
            ASSERT_EQ(b % (PAGE_SIZE << k), 0u);
            ASSERT_LE(e, lim);
            ASSERT_TRUE(inside_some_zone(fa, b, e - b));
            ASSERT_FALSE(overlaps(b, e)) << std::hex << b;
            live[b] = { e, k };
            allocated += 1ull << k;
        } else if (op < 95) {
            auto it = live.begin();
            std::advance(it, rng() % live.size());
            ASSERT_TRUE(fa.free(PhysAddr(it->first), it->second.second));
            allocated -= 1ull << it->second.second;
            live.erase(it);
        } else {
            // Something bogus: a wrong order or offset of a live block, or a double free.
            Snapshot before(h);
            auto it = live.begin();
            std::advance(it, rng() % live.size());
            u64 b = it->first;
            unsigned k = it->second.second;
            switch (rng() % 3) {
            case 0: EXPECT_FALSE(fa.free(PhysAddr(b), k + 1 + rng() % 2)); break;
            case 1: if (k) EXPECT_FALSE(fa.free(PhysAddr(b + (PAGE_SIZE << (k - 1))), k - 1)); break;
            case 2:
                ASSERT_TRUE(fa.free(PhysAddr(b), k));
                allocated -= 1ull << k;
                live.erase(it);
                before = Snapshot(h);
                EXPECT_FALSE(fa.free(PhysAddr(b), k));
                break;
            }
            ASSERT_TRUE(Snapshot(h) == before);
        }
        ASSERT_EQ(fa.free_frames() + allocated, fa.total_frames());
        if (step % 500 == 0)
            ASSERT_TRUE(fa.check()) << "step " << step;
    }
    ASSERT_TRUE(fa.check());

    for (auto &[b, v] : live)
        ASSERT_TRUE(fa.free(PhysAddr(b), v.second));
    EXPECT_EQ(fa.free_frames(), fa.total_frames());
    EXPECT_TRUE(Snapshot(h) == initial);    // fully coalesced, bit for bit
    EXPECT_TRUE(fa.check());
}

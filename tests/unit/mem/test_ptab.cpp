// The page-table engine over fake physical memory: entry formats, page-size
// selection, splitting, protection, enumeration, failure atomicity and a
// randomized comparison against a simple model.
#include "kernel/mem/ptab.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <tuple>
#include <vector>

namespace {

constexpr u64 K4 = 4 * KiB, M2 = 2 * MiB, G1 = GiB;

// Physical memory for tables: 4 KiB pages at fake addresses from BASE.
// Counts allocations and frees, poisons freed pages, rejects access to pages
// that are not allocated, and fails once its budget is spent.
class FakeMem {
public:
    static constexpr u64 BASE = 0x1000'0000;

    explicit FakeMem(size_t capacity = 8192) : pages_(capacity), live_(capacity) {}
    virtual ~FakeMem() = default;

    Result<PhysAddr> alloc_table()
    {
        std::lock_guard<std::mutex> g(lock_);
        if (budget_ == 0) return Err::no_memory;
        if (budget_ > 0) budget_--;
        size_t k;
        if (!free_.empty()) {
            k = free_.back();
            free_.pop_back();
        } else {
            if (next_ == pages_.size()) return Err::no_memory;
            k = next_++;
            pages_[k] = std::make_unique<Page>();
        }
        std::memset(pages_[k]->e, 0, sizeof(Page));
        live_[k] = true;
        allocs_++;
        return PhysAddr(BASE + k * PAGE_SIZE);
    }

    void free_table(PhysAddr p)
    {
        std::lock_guard<std::mutex> g(lock_);
        size_t k = page(p);
        live_[k] = false;
        std::memset(pages_[k]->e, 0xa5, sizeof(Page));   // stale readers see garbage
        free_.push_back(k);
        frees_++;
    }

    // Lock-free: a table reaches another thread only through an entry store.
    u64 *table(PhysAddr p) { return pages_[page(p)]->e; }

    void set_budget(long n) { budget_ = n; }   // allocations left; -1 = unlimited
    u64 allocs() const { return allocs_; }
    u64 frees() const { return frees_; }
    u64 live() const { return allocs_ - frees_; }

private:
    struct alignas(4096) Page {
        u64 e[512];
    };

    size_t page(PhysAddr p) const
    {
        u64 k = (p.raw() - BASE) / PAGE_SIZE;
        if (p.raw() < BASE || p.raw() % PAGE_SIZE || k >= next_ || !live_[k]) {
            ADD_FAILURE() << "access to a table that is not allocated: " << std::hex << p.raw();
            std::abort();
        }
        return k;
    }

    std::mutex lock_;
    std::vector<std::unique_ptr<Page>> pages_;
    std::vector<char> live_;
    std::vector<size_t> free_;
    std::atomic<size_t> next_{0};
    long budget_ = -1;
    u64 allocs_ = 0, frees_ = 0;
};

// Also sees every entry store, right after it happens.
class RecordingMem : public FakeMem {
public:
    struct Write {
        PhysAddr table;
        unsigned index;
        u64 value;
    };
    std::vector<Write> log;
    std::function<void(const Write &)> on_write;

    void note_write(PhysAddr t, unsigned i, u64 v)
    {
        log.push_back({t, i, v});
        if (on_write) on_write(log.back());
    }
};

constexpr Attr RW{Perm{.r = true, .w = true}};
constexpr Attr RX{Perm{.r = true, .x = true}};
constexpr Attr RO{Perm{.r = true}};
constexpr Attr RWX{Perm{.r = true, .w = true, .x = true}};

struct Leaf {
    u64 va, pa, size;
    Attr attr;
    bool operator==(const Leaf &) const = default;
};

template <class PT> std::vector<Leaf> leaves(const PT &pt)
{
    std::vector<Leaf> v;
    pt.for_each_leaf([&](u64 va, u64 pa, u64 size, Attr a) { v.push_back({va, pa, size, a}); });
    return v;
}

template <class PT> std::vector<Leaf> ranges(const PT &pt)
{
    std::vector<Leaf> v;
    pt.for_each_range([&](u64 va, u64 pa, u64 size, Attr a) { v.push_back({va, pa, size, a}); });
    return v;
}

using HostPT = PageTable<HostFormat, FakeMem>;
using EptPT = PageTable<EptFormat, FakeMem>;

// ---------------------------------------------------------------- formats

TEST(PtabFormat, HostBits)
{
    using H = HostFormat;
    // 2 MiB, RW, no execute: P RW A D PS NX.
    EXPECT_EQ(H::make_leaf(PhysAddr(0x4020'0000), RW, 2), 0x8000'0000'4020'00e3ull);
    // 4 KiB kernel text: executable, global.
    EXPECT_EQ(H::make_leaf(PhysAddr(0x1000), Attr{Perm{.r = true, .x = true, .global = true}}, 1), 0x1161ull);
    // User bit and write.
    EXPECT_EQ(H::make_leaf(PhysAddr(0x5000), Attr{Perm{.r = true, .w = true, .user = true}}, 1) & 0x7, 0x7ull);
    // WC: PAT index 6 = PAT|PCD; the PAT bit is bit 7 in a PTE and bit 12 in a large leaf.
    Attr wc{RW.perm, CacheType::wc};
    EXPECT_EQ(H::make_leaf(PhysAddr(0x2000), wc, 1) & 0x1098, 0x90ull);
    EXPECT_EQ(H::make_leaf(PhysAddr(0x4000'0000), wc, 3) & 0x1098, 0x1090ull);
    // Tables: P RW US.
    EXPECT_EQ(H::make_table(PhysAddr(0x1234'5000)), 0x1234'5007ull);
    EXPECT_TRUE(H::is_leaf(H::make_leaf(PhysAddr(0), RO, 2), 2));
    EXPECT_FALSE(H::is_leaf(H::make_table(PhysAddr(0x1000)), 2));
    EXPECT_FALSE(H::supports(Attr{Perm{.r = false, .w = true}}));
}

TEST(PtabFormat, HostPatIndexMatchesPatValue)
{
    // Architectural PAT type codes.
    auto code = [](CacheType c) -> u64 {
        switch (c) {
        case CacheType::uc: return 0;
        case CacheType::wc: return 1;
        case CacheType::wt: return 4;
        case CacheType::wp: return 5;
        case CacheType::wb: return 6;
        }
        return 99;
    };
    using H = HostFormat;
    for (CacheType c : {CacheType::wb, CacheType::uc, CacheType::wc, CacheType::wt, CacheType::wp}) {
        for (unsigned level = 1; level <= 3; level++) {
            u64 e = H::make_leaf(PhysAddr(0x4000'0000), Attr{RW.perm, c}, level);
            unsigned idx = (e & H::pat_bit(level) ? 4 : 0) | (e & H::PCD ? 2 : 0) | (e & H::PWT ? 1 : 0);
            EXPECT_EQ((HOST_PAT_VALUE >> (8 * idx)) & 0xff, code(c)) << int(c) << " level " << level;
            EXPECT_EQ(H::leaf_attr(e, level), (Attr{RW.perm, c}));
            EXPECT_EQ(H::leaf_addr(e, level).raw(), 0x4000'0000ull);
        }
    }
    // Splitting a WC 2 MiB leaf moves the PAT bit from 12 to 7.
    u64 big = H::make_leaf(PhysAddr(0x20'0000), Attr{RX.perm, CacheType::wc}, 2);
    EXPECT_EQ(H::demote(big, 2), H::make_leaf(PhysAddr(0x20'0000), Attr{RX.perm, CacheType::wc}, 1));
    u64 huge = H::make_leaf(PhysAddr(0x4000'0000), Attr{RX.perm, CacheType::wp}, 3);
    EXPECT_EQ(H::demote(huge, 3), H::make_leaf(PhysAddr(0x4000'0000), Attr{RX.perm, CacheType::wp}, 2));
}

// A live nested space's device mapping (a passed-through BAR, uncached): unmap() without
// reclaim keeps the tables a walker may still hold until the flush; they serve the next map()
// and go with destroy().
TEST(Ptab, UnmapWithoutReclaimKeepsTables)
{
    FakeMem mem;
    PageTable<NptFormat, FakeMem> npt(mem, 3);
    ASSERT_TRUE(npt.init());
    const Attr uc{RW.perm, CacheType::uc};
    ASSERT_TRUE(npt.map(0xd000'0000, 0xfebf'0000, 2 * K4, uc));
    EXPECT_EQ(npt.lookup(0xd000'1008)->pa, 0xfebf'1008u);
    EXPECT_EQ(npt.lookup(0xd000'1008)->attr, uc);
    EXPECT_EQ(mem.live(), 4u);
    auto f = npt.unmap(0xd000'0000, 2 * K4, false);
    ASSERT_TRUE(f);
    EXPECT_TRUE(*f);
    EXPECT_EQ(npt.lookup(0xd000'0000).error(), Err::not_found);
    EXPECT_EQ(mem.live(), 4u);                                     // nothing freed
    ASSERT_TRUE(npt.map(0xd000'0000, 0xfebf'0000, K4, uc));       // the same tables again
    EXPECT_EQ(mem.live(), 4u);
    npt.destroy();
    EXPECT_EQ(mem.allocs(), mem.frees());

    EptPT ept(mem, 3);
    ASSERT_TRUE(ept.init());
    ASSERT_TRUE(ept.map(0xd000'0000, 0xfebf'0000, K4, uc));
    EXPECT_EQ(ept.lookup(0xd000'0000)->attr, uc);                  // memory type 0 (UC)
    ASSERT_TRUE(ept.unmap(0xd000'0000, K4, false));
    EXPECT_EQ(ept.lookup(0xd000'0000).error(), Err::not_found);
    ept.destroy();
    EXPECT_EQ(mem.allocs(), mem.frees());
}

// table_at: the table a walker starting below the root uses (a VT-d unit with 3-level tables
// walks a 4-level table's first level-3 table), made once, then shared with map().
TEST(Ptab, TableAtMakesTheSubtableMapUses)
{
    FakeMem mem;
    PageTable<DmarFormat, FakeMem> pt(mem, 2);
    ASSERT_TRUE(pt.init());
    auto l3 = pt.table_at(0, 3);
    ASSERT_TRUE(l3);
    EXPECT_EQ(mem.live(), 2u);                                      // root and the level-3 table
    EXPECT_EQ(pt.table_at(0x7f'ffff'f000, 3).value(), *l3);        // all of the first 512 GiB: the same one
    EXPECT_EQ(mem.live(), 2u);
    ASSERT_TRUE(pt.map(0x40'0000'0000, 0x1234'5000, K4, RW));     // 256 GiB: below the same entry
    EXPECT_EQ(mem.live(), 4u);                                      // + level 2 and level 1
    const u64 l3e = mem.table(*l3)[256];                            // 256 GiB / 1 GiB
    ASSERT_TRUE(l3e & 3);
    const u64 l2e = mem.table(PhysAddr(l3e & ~0xfffull))[0];
    const u64 l1e = mem.table(PhysAddr(l2e & ~0xfffull))[0];
    EXPECT_EQ(l1e & ~0xfffull, 0x1234'5000u);
    auto l1 = pt.table_at(0x40'0000'0000, 1);                      // an existing table is returned
    ASSERT_TRUE(l1);
    EXPECT_EQ(l1->raw(), l2e & ~0xfffull);
    EXPECT_EQ(mem.live(), 4u);
    EXPECT_NE(pt.table_at(u64(1) << 39, 3).value(), *l3);          // the next 512 GiB: another
    EXPECT_EQ(pt.table_at(0, 4).error(), Err::invalid);            // the root is root()
    EXPECT_EQ(pt.table_at(0, 0).error(), Err::invalid);
    EXPECT_EQ(pt.table_at(u64(1) << 48, 3).error(), Err::range);
    ASSERT_TRUE(pt.map(0x20'0000, 0x20'0000, 2 * MiB, RW));        // a 2 MiB page
    EXPECT_EQ(pt.table_at(0x20'0000, 1).error(), Err::exists);
    pt.destroy();
    EXPECT_EQ(mem.allocs(), mem.frees());
}

TEST(PtabFormat, NptBits)
{
    using N = NptFormat;
    u64 e = N::make_leaf(PhysAddr(0x20'0000), Attr{Perm{.r = true, .w = true, .global = true}}, 2);
    EXPECT_EQ(e, 0x8000'0000'0020'00e7ull);   // P RW US A D PS NX, no G
    EXPECT_TRUE(N::make_table(PhysAddr(0x1000)) & N::US);
    EXPECT_TRUE(N::make_leaf(PhysAddr(0x1000), RX, 1) & N::US);
    EXPECT_FALSE(N::make_leaf(PhysAddr(0x1000), RX, 1) & N::NX);
    EXPECT_EQ(N::leaf_attr(e, 2), RW);
}

TEST(PtabFormat, EptBits)
{
    using E = EptFormat;
    EXPECT_EQ(E::make_leaf(PhysAddr(0x4020'0000), RWX, 2), 0x4020'00b7ull);   // RWX, WB(6)<<3, large
    EXPECT_EQ(E::make_leaf(PhysAddr(0x5000), Attr{RO.perm, CacheType::uc}, 1), 0x5001ull);
    EXPECT_EQ(E::make_leaf(PhysAddr(0x5000), Attr{RW.perm, CacheType::wc}, 1), 0x500bull);
    EXPECT_EQ(E::make_leaf(PhysAddr(0x5000), Attr{RO.perm, CacheType::wt}, 1) >> 3 & 7, 4ull);
    EXPECT_EQ(E::make_leaf(PhysAddr(0x5000), Attr{RO.perm, CacheType::wp}, 1) >> 3 & 7, 5ull);
    EXPECT_EQ(E::make_table(PhysAddr(0x7000)), 0x7007ull);
    EXPECT_TRUE(E::present(E::X));                  // execute-only is present
    EXPECT_FALSE(E::supports(Attr{Perm{.r = false, .w = true}}));
    EXPECT_FALSE(E::supports(Attr{Perm{.r = false}}));
    EXPECT_TRUE(E::supports(Attr{Perm{.r = false, .x = true}}));
    EXPECT_EQ(E::eptp(PhysAddr(0x9000)), 0x901eull);
    for (CacheType c : {CacheType::wb, CacheType::uc, CacheType::wc, CacheType::wt, CacheType::wp})
        EXPECT_EQ(E::leaf_attr(E::make_leaf(PhysAddr(0), Attr{RX.perm, c}, 3), 3), (Attr{RX.perm, c}));
    EXPECT_EQ(E::demote(0x4000'00b7, 2), 0x4000'0037ull);
}

TEST(PtabFormat, DmarBits)
{
    using D = DmarFormat;
    EXPECT_EQ(D::make_leaf(PhysAddr(0x3000), RW, 1), 0x3003ull);
    EXPECT_EQ(D::make_leaf(PhysAddr(0x20'0000), RO, 2), 0x20'0081ull);
    EXPECT_EQ(D::make_table(PhysAddr(0x7000)), 0x7003ull);
    EXPECT_EQ(D::leaf_attr(0x3003, 1), RW);
    EXPECT_TRUE(D::supports(Attr{Perm{.r = false, .w = true}}));
}

// ------------------------------------------------------------ page sizes

TEST(Ptab, PageSizeFromAlignment)
{
    FakeMem mem;
    HostPT pt(mem, 3);
    ASSERT_TRUE(pt.init());
    // 1 GiB + 2 MiB + 4 KiB, everything 1 GiB aligned: one page of each size.
    ASSERT_TRUE(pt.map(0x40'0000'0000, 0x8000'0000, G1 + M2 + K4, RW));
    auto l = leaves(pt);
    ASSERT_EQ(l.size(), 3u);
    EXPECT_EQ(l[0], (Leaf{0x40'0000'0000, 0x8000'0000, G1, RW}));
    EXPECT_EQ(l[1], (Leaf{0x40'4000'0000, 0xc000'0000, M2, RW}));
    EXPECT_EQ(l[2], (Leaf{0x40'4020'0000, 0xc020'0000, K4, RW}));
    EXPECT_EQ(mem.live(), 4u);   // root, PDPT, PD, PT

    // The physical side only 2 MiB aligned: 2 MiB pages.
    ASSERT_TRUE(pt.map(0x80'0000'0000, 0x20'0000, G1, RX));
    auto r = pt.lookup(0x80'0000'1234);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->pa, 0x20'1234ull);
    EXPECT_EQ(r->level, 2u);
    EXPECT_EQ(r->page_size, M2);
    EXPECT_EQ(r->attr, RX);
    // Virtual side off by 4 KiB: 4 KiB pages.
    ASSERT_TRUE(pt.map(0xc0'0000'1000, 0x4000'0000, 8 * K4, RW));
    EXPECT_EQ(pt.lookup(0xc0'0000'1000)->level, 1u);
    pt.destroy();
    EXPECT_EQ(mem.allocs(), mem.frees());
}

TEST(Ptab, MaxLeafLevelCaps)
{
    for (unsigned cap : {0u, 1u, 2u, 3u, 7u}) {
        FakeMem mem;
        HostPT pt(mem, cap);
        ASSERT_TRUE(pt.init());
        const u64 size = cap < 2 ? 2 * M2 : G1;
        ASSERT_TRUE(pt.map(0x4000'0000, 0x4000'0000, size, RW));
        unsigned want = cap == 0 ? 1 : min(cap, 3u);
        EXPECT_EQ(pt.max_leaf_level(), want);
        EXPECT_EQ(pt.lookup(0x4000'0000)->level, want);
        EXPECT_EQ(leaves(pt).size(), size / HostPT::page_size(want));
        EXPECT_EQ(ranges(pt), (std::vector<Leaf>{{0x4000'0000, 0x4000'0000, size, RW}}));
        pt.destroy();
        EXPECT_EQ(mem.allocs(), mem.frees());
    }
}

TEST(Ptab, LookupAndArgumentChecks)
{
    FakeMem mem;
    EptPT pt(mem, 2);
    EXPECT_EQ(pt.map(0, 0, K4, RW).error(), Err::invalid);   // before init
    ASSERT_TRUE(pt.init());
    EXPECT_EQ(pt.lookup(0x1000).error(), Err::not_found);
    EXPECT_EQ(pt.map(0x1001, 0, K4, RW).error(), Err::invalid);
    EXPECT_EQ(pt.map(0x1000, 0x10, K4, RW).error(), Err::invalid);
    EXPECT_EQ(pt.map(0x1000, 0, 100, RW).error(), Err::invalid);
    EXPECT_EQ(pt.map(1ull << 48, 0, K4, RW).error(), Err::range);
    EXPECT_EQ(pt.map((1ull << 48) - K4, 0, 2 * K4, RW).error(), Err::range);
    EXPECT_EQ(pt.map(0, (1ull << 52) - K4, 2 * K4, RW).error(), Err::range);
    EXPECT_EQ(pt.map(0, 0, K4, Attr{Perm{.r = false, .w = true}}).error(), Err::unsupported);
    EXPECT_EQ(pt.lookup(1ull << 48).error(), Err::range);
    EXPECT_TRUE(pt.map(0x1000, 0, 0, RW));   // empty: nothing to do
    ASSERT_TRUE(pt.map((1ull << 48) - M2, 0x60'0000, M2, RWX));
    auto r = pt.lookup((1ull << 48) - 1);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->pa, 0x60'0000 + M2 - 1);
    EXPECT_EQ(r->level, 2u);
    pt.destroy();
    EXPECT_EQ(mem.allocs(), mem.frees());
}

// ------------------------------------------------------------ splitting

TEST(Ptab, UnmapSplitsGigabytePage)
{
    FakeMem mem;
    HostPT pt(mem, 3);
    ASSERT_TRUE(pt.init());
    const u64 va = 0x4000'0000, pa = 0x1'8000'0000;
    ASSERT_TRUE(pt.map(va, pa, G1, RW));
    auto f = pt.unmap(va + M2 + K4, K4);
    ASSERT_TRUE(f);
    EXPECT_TRUE(*f);
    EXPECT_EQ(mem.live(), 4u);   // root, PDPT, the new PD and PT; no spare left over

    auto at = [&](u64 off) { return pt.lookup(va + off); };
    EXPECT_EQ(at(0)->level, 2u);
    EXPECT_EQ(at(0)->pa, pa);
    EXPECT_EQ(at(M2)->level, 1u);
    EXPECT_EQ(at(M2 + 0x10)->pa, pa + M2 + 0x10);
    EXPECT_EQ(at(M2 + K4).error(), Err::not_found);
    EXPECT_EQ(at(M2 + 2 * K4 + 8)->pa, pa + M2 + 2 * K4 + 8);
    EXPECT_EQ(at(M2 + 2 * K4)->level, 1u);
    EXPECT_EQ(at(2 * M2)->level, 2u);
    EXPECT_EQ(at(G1 - 1)->pa, pa + G1 - 1);
    EXPECT_EQ(at(G1 - 1)->attr, RW);
    EXPECT_EQ(leaves(pt).size(), 511u + 511u);
    EXPECT_EQ(ranges(pt), (std::vector<Leaf>{{va, pa, M2 + K4, RW},
                                             {va + M2 + 2 * K4, pa + M2 + 2 * K4, G1 - M2 - 2 * K4, RW}}));

    // Unmapping the rest frees the tables again.
    f = pt.unmap(va, G1);
    ASSERT_TRUE(f);
    EXPECT_TRUE(*f);
    EXPECT_EQ(mem.live(), 1u);
    EXPECT_TRUE(leaves(pt).empty());
    f = pt.unmap(va, G1);   // nothing there any more
    ASSERT_TRUE(f);
    EXPECT_FALSE(*f);
    pt.destroy();
    EXPECT_EQ(mem.allocs(), mem.frees());
}

// A superpage is replaced by a table that already maps all of it, with one
// store into the parent slot: no moment where part of the range is unmapped.
TEST(Ptab, SplitInstallsPrefilledTableAtomically)
{
    RecordingMem mem;
    PageTable<HostFormat, RecordingMem> pt(mem, 3);
    ASSERT_TRUE(pt.init());
    const u64 va = 0x4000'0000, pa = 0x2'0000'0000;
    Attr wc{RW.perm, CacheType::wc};
    ASSERT_TRUE(pt.map(va, pa, G1, wc));
    // The last stores: the PDPT into the root, the 1 GiB leaf into the PDPT.
    ASSERT_GE(mem.log.size(), 2u);
    EXPECT_EQ(mem.log.end()[-2].table, pt.root());
    EXPECT_EQ(mem.log.end()[-1].value, HostFormat::make_leaf(PhysAddr(pa), wc, 3));
    const PhysAddr pdpt = HostFormat::table_addr(mem.table(pt.root())[0]);

    // Whenever a table goes into a slot, it must already be complete.
    int installs = 0;
    mem.on_write = [&](const RecordingMem::Write &w) {
        if (!HostFormat::present(w.value) || HostFormat::is_leaf(w.value, w.table == pdpt ? 3 : 2)) return;
        u64 base = w.table == pdpt ? pa : pa + M2;       // we cut at va + 2 MiB + 4 KiB
        unsigned level = w.table == pdpt ? 2 : 1;
        const u64 *t = mem.table(HostFormat::table_addr(w.value));
        for (unsigned k = 0; k < 512; k++) {
            u64 e = t[k];
            ASSERT_TRUE(HostFormat::is_leaf(e, level)) << k;
            EXPECT_EQ(HostFormat::leaf_addr(e, level).raw(), base + k * HostPT::page_size(level));
            EXPECT_EQ(HostFormat::leaf_attr(e, level), wc);
        }
        installs++;
    };
    mem.log.clear();
    ASSERT_TRUE(pt.unmap(va + M2 + K4, K4));
    EXPECT_EQ(installs, 2);

    // Once live, each table saw exactly one store: the PDPT the new PD in
    // place of the 1 GiB leaf, the PD the new PT in place of a 2 MiB leaf,
    // the PT the cleared entry. (New tables are filled before they go live.)
    const PhysAddr pd = HostFormat::table_addr(mem.table(pdpt)[1]);
    const PhysAddr pt1 = HostFormat::table_addr(mem.table(pd)[1]);
    auto live_from = [&](PhysAddr t) {
        for (size_t k = 0; k < mem.log.size(); k++)
            if (mem.log[k].value == HostFormat::make_table(t)) return k;
        return mem.log.size();
    };
    size_t pd_live = live_from(pd), pt_live = live_from(pt1);
    ASSERT_LT(pd_live, pt_live);
    ASSERT_LT(pt_live, mem.log.size());
    std::vector<std::tuple<u64, unsigned, u64>> after;
    for (size_t k = 0; k < mem.log.size(); k++) {
        auto &w = mem.log[k];
        if (w.table == pdpt || (w.table == pd && k > pd_live) || (w.table == pt1 && k > pt_live))
            after.emplace_back(w.table.raw(), w.index, w.value);
    }
    EXPECT_EQ(after, (std::vector<std::tuple<u64, unsigned, u64>>{{pdpt.raw(), 1, HostFormat::make_table(pd)},
                                                                   {pd.raw(), 1, HostFormat::make_table(pt1)},
                                                                   {pt1.raw(), 1, 0}}));
    mem.on_write = nullptr;
    pt.destroy();
    EXPECT_EQ(mem.allocs(), mem.frees());
}

// ------------------------------------------------------------ protect

TEST(Ptab, ProtectSplitsAndChanges)
{
    FakeMem mem;
    HostPT pt(mem, 2);
    ASSERT_TRUE(pt.init());
    const u64 va = 0xffff'ffff'8000'0000, pa = 0x20'0000;   // kernel image at -2 GiB
    ASSERT_TRUE(pt.map(va, pa, 2 * M2, RW));
    u64 before = mem.allocs();

    // Text R-X in the first 16 KiB, then read-only data.
    auto f = pt.protect(va, 4 * K4, RX);
    ASSERT_TRUE(f);
    EXPECT_TRUE(*f);
    ASSERT_TRUE(pt.protect(va + 4 * K4, 4 * K4, RO));
    EXPECT_EQ(mem.allocs(), before + 1);   // one PT for the split
    EXPECT_EQ(pt.lookup(va)->attr, RX);
    EXPECT_EQ(pt.lookup(va + 3 * K4)->level, 1u);
    EXPECT_EQ(pt.lookup(va + 5 * K4)->attr, RO);
    EXPECT_EQ(pt.lookup(va + 8 * K4)->attr, RW);
    EXPECT_EQ(pt.lookup(va + M2)->level, 2u);
    EXPECT_EQ(pt.lookup(va + M2)->attr, RW);
    EXPECT_EQ(ranges(pt), (std::vector<Leaf>{{va, pa, 4 * K4, RX},
                                             {va + 4 * K4, pa + 4 * K4, 4 * K4, RO},
                                             {va + 8 * K4, pa + 8 * K4, 2 * M2 - 8 * K4, RW}}));

    // Same attributes again: nothing changes, nothing is split.
    before = mem.allocs();
    f = pt.protect(va, 2 * M2, RW);
    ASSERT_TRUE(f);
    EXPECT_TRUE(*f);
    f = pt.protect(va + M2 + K4, K4, RW);
    ASSERT_TRUE(f);
    EXPECT_FALSE(*f);
    EXPECT_EQ(mem.allocs(), before);
    // Holes are skipped.
    f = pt.protect(va - M2, M2, RX);
    ASSERT_TRUE(f);
    EXPECT_FALSE(*f);
    EXPECT_EQ(pt.protect(va, K4, Attr{Perm{.r = false}}).error(), Err::unsupported);
    pt.destroy();
    EXPECT_EQ(mem.allocs(), mem.frees());
}

// ------------------------------------------------------------ enumeration, canonical addresses

TEST(Ptab, ForEachInOrderAndMerged)
{
    FakeMem mem;
    HostPT pt(mem, 3);
    ASSERT_TRUE(pt.init());
    const u64 hi = 0xffff'8000'0000'0000;
    // Mapped out of order, physically contiguous: one range per attribute run.
    ASSERT_TRUE(pt.map(hi + G1 + M2, 0x4000'0000 + M2, 3 * K4, RW));
    ASSERT_TRUE(pt.map(hi + G1, 0x4000'0000, M2, RW));
    ASSERT_TRUE(pt.map(hi, 0, G1, RW));
    ASSERT_TRUE(pt.map(hi + G1 + M2 + 3 * K4, 0x9000'0000, K4, RW));   // not physically contiguous
    ASSERT_TRUE(pt.map(0x1000, 0x1000, K4, RX));                       // low half comes first
    auto l = leaves(pt);
    ASSERT_EQ(l.size(), 7u);
    for (size_t i = 1; i < l.size(); i++) EXPECT_LT(l[i - 1].va, l[i].va);
    EXPECT_EQ(l[1], (Leaf{hi, 0, G1, RW}));
    EXPECT_EQ(ranges(pt), (std::vector<Leaf>{{0x1000, 0x1000, K4, RX},
                                             {hi, 0, G1 + M2 + 3 * K4, RW},
                                             {hi + G1 + M2 + 3 * K4, 0x9000'0000, K4, RW}}));
    pt.destroy();
}

TEST(Ptab, CanonicalAddresses)
{
    FakeMem mem;
    HostPT pt(mem, 3);
    ASSERT_TRUE(pt.init());
    EXPECT_EQ(pt.map(0x0000'8000'0000'0000, 0, K4, RW).error(), Err::invalid);
    EXPECT_EQ(pt.map(0xffff'7fff'ffff'f000, 0, K4, RW).error(), Err::invalid);
    EXPECT_EQ(pt.map(0x0000'7fff'ffff'f000, 0, 2 * K4, RW).error(), Err::range);   // into the hole
    EXPECT_EQ(pt.lookup(0x1234'0000'0000'0000).error(), Err::invalid);
    EXPECT_EQ(pt.unmap(0x0000'8000'0000'0000, K4).error(), Err::invalid);
    ASSERT_TRUE(pt.map(0x0000'7fff'ffff'f000, 0x5000, K4, RW));   // last low page
    ASSERT_TRUE(pt.map(0xffff'ffff'ffff'f000, 0x6000, K4, RW));   // very last page
    ASSERT_TRUE(pt.map(0xffff'8000'0000'0000, 0x4000'0000, G1, RW));
    EXPECT_EQ(pt.lookup(0xffff'ffff'ffff'ffff)->pa, 0x6fffull);
    EXPECT_EQ(pt.lookup(0xffff'8000'1234'5678)->pa, 0x5234'5678ull);
    EXPECT_EQ(pt.lookup(0xffff'8000'1234'5678)->level, 3u);
    EXPECT_EQ(pt.lookup(0x0000'7fff'ffff'ffff)->pa, 0x5fffull);
    EXPECT_EQ(pt.lookup(0x0000'0000'0000'0000).error(), Err::not_found);
    auto l = leaves(pt);
    ASSERT_EQ(l.size(), 3u);
    EXPECT_EQ(l[0].va, 0x0000'7fff'ffff'f000ull);
    EXPECT_EQ(l[1].va, 0xffff'8000'0000'0000ull);
    EXPECT_EQ(l[2].va, 0xffff'ffff'ffff'f000ull);
    ASSERT_TRUE(pt.unmap(0xffff'ffff'ffff'f000, K4));
    EXPECT_EQ(pt.lookup(0xffff'ffff'ffff'f000).error(), Err::not_found);
    pt.destroy();
    EXPECT_EQ(mem.allocs(), mem.frees());
}

// ------------------------------------------------------------ failures leave the table unchanged

TEST(Ptab, MapOverExisting)
{
    RecordingMem mem;
    PageTable<HostFormat, RecordingMem> pt(mem, 3);
    ASSERT_TRUE(pt.init());
    ASSERT_TRUE(pt.map(0x4020'0000, 0x20'0000, M2, RW));
    u64 allocs = mem.allocs();
    size_t writes = mem.log.size();
    auto before = leaves(pt);
    EXPECT_EQ(pt.map(0x4020'0000 + K4, 0, K4, RW).error(), Err::exists);
    EXPECT_EQ(pt.map(0x4000'0000, 0, G1, RW).error(), Err::exists);
    // Free first part, taken second part: the free part stays unmapped.
    EXPECT_EQ(pt.map(0x4010'0000, 0, M2, RW).error(), Err::exists);
    EXPECT_EQ(pt.lookup(0x4010'0000).error(), Err::not_found);
    EXPECT_EQ(leaves(pt), before);
    EXPECT_EQ(mem.log.size(), writes);
    EXPECT_EQ(mem.allocs(), allocs);
    pt.destroy();
    EXPECT_EQ(mem.allocs(), mem.frees());
}

TEST(Ptab, OutOfMemory)
{
    FakeMem mem;
    HostPT pt(mem, 3);
    ASSERT_TRUE(pt.init());
    // Needs PDPT, PD and PT; only two are left.
    mem.set_budget(2);
    EXPECT_EQ(pt.map(0x4000'0000, 0x4000'0000, M2 + K4, RW).error(), Err::no_memory);
    EXPECT_EQ(mem.live(), 1u);
    EXPECT_TRUE(leaves(pt).empty());
    mem.set_budget(-1);
    ASSERT_TRUE(pt.map(0x4000'0000, 0x4000'0000, G1, RW));

    // A split that cannot get its tables changes nothing.
    mem.set_budget(1);
    EXPECT_EQ(pt.unmap(0x4000'0000 + K4, K4).error(), Err::no_memory);
    EXPECT_EQ(pt.protect(0x4000'0000 + K4, K4, RO).error(), Err::no_memory);
    EXPECT_EQ(pt.lookup(0x4000'1000)->level, 3u);
    EXPECT_EQ(pt.lookup(0x4000'1000)->attr, RW);
    mem.set_budget(2);
    EXPECT_TRUE(pt.unmap(0x4000'0000 + K4, K4));
    EXPECT_EQ(pt.lookup(0x4000'1000).error(), Err::not_found);
    mem.set_budget(-1);
    pt.destroy();
    EXPECT_EQ(mem.allocs(), mem.frees());
}

TEST(Ptab, DestroyFreesEverything)
{
    FakeMem mem;
    {
        PageTable<NptFormat, FakeMem> pt(mem, 2);
        ASSERT_TRUE(pt.init());
        for (u64 i = 0; i < 64; i++)
            ASSERT_TRUE(pt.map(i * 3 * G1 + i * M2 + i * K4, 0x100'0000 + i * M2, M2 + 5 * K4, RW));
        EXPECT_GT(mem.live(), 64u);
        pt.destroy();
        EXPECT_EQ(pt.lookup(0).error(), Err::not_found);
        pt.destroy();   // twice is harmless
    }
    EXPECT_EQ(mem.allocs(), mem.frees());
    EXPECT_EQ(mem.live(), 0u);
}

// ------------------------------------------------------------ concurrent table creation

TEST(Ptab, ConcurrentMapsShareNewTables)
{
    FakeMem mem;
    for (int round = 0; round < 100; round++) {
        HostPT pt(mem, 3);
        ASSERT_TRUE(pt.init());
        // Both threads need the same new PDPT and PD, each its own PT.
        auto work = [&](u64 off) {
            for (u64 i = 0; i < 8; i++) EXPECT_TRUE(pt.map(0x40'4000'0000 + off + i * K4, off + i * K4, K4, RW));
        };
        std::thread a(work, 0), b(work, M2);
        a.join();
        b.join();
        EXPECT_EQ(mem.live(), 5u);
        EXPECT_EQ(ranges(pt).size(), 2u);
        pt.destroy();
        ASSERT_EQ(mem.allocs(), mem.frees());
    }
}

// ------------------------------------------------------------ randomized against a model

// The model: disjoint segments [va, end) -> pa with one Attr each.
struct Seg {
    u64 end, pa;
    Attr attr;
};
using Model = std::map<u64, Seg>;

// Cut the segment containing x (if any) at x.
void cut(Model &m, u64 x)
{
    auto it = m.upper_bound(x);
    if (it == m.begin()) return;
    --it;
    if (it->first < x && x < it->second.end) {
        Seg tail{it->second.end, it->second.pa + (x - it->first), it->second.attr};
        it->second.end = x;
        m.emplace(x, tail);
    }
}

bool overlaps(const Model &m, u64 s, u64 e)
{
    auto it = m.lower_bound(s);
    if (it != m.end() && it->first < e) return true;
    if (it == m.begin()) return false;
    --it;
    return it->second.end > s;
}

std::vector<Leaf> merged(const Model &m)
{
    std::vector<Leaf> v;
    for (auto &[va, s] : m) {
        Leaf *b = v.empty() ? nullptr : &v.back();
        if (b && b->va + b->size == va && b->pa + b->size == s.pa && b->attr == s.attr)
            b->size += s.end - va;
        else
            v.push_back({va, s.pa, s.end - va, s.attr});
    }
    return v;
}

template <class Format> void random_against_model(u64 base, unsigned seed)
{
    FakeMem mem(16384);
    PageTable<Format, FakeMem> pt(mem, 3);
    ASSERT_TRUE(pt.init());
    Model model;
    std::mt19937_64 rng(seed);
    auto pick = [&](u64 n) { return u64(rng() % n); };
    const Attr attrs[] = {RW, RX, RO, RWX, Attr{RW.perm, CacheType::uc}, Attr{RO.perm, CacheType::wc}};
    const u64 window = 4 * G1;

    for (int op = 0; op < 600; op++) {
        const u64 grans[] = {K4, K4, K4, M2, M2, M2, G1, G1};
        u64 gran = grans[pick(std::size(grans))];
        u64 va = base + align_down(pick(window), gran);
        if (pick(4) == 0) va += K4 * pick(4);   // spoil the alignment now and then
        u64 size = gran == K4 ? K4 * (1 + pick(64)) : gran * (1 + pick(2)) + (pick(2) ? K4 * pick(64) : 0);
        if (va + size > base + window) size = base + window - va;
        if (!size) continue;
        Attr attr = attrs[pick(std::size(attrs))];
        u64 s = va, e = va + size;
        unsigned kind = unsigned(pick(20));

        switch (kind < 9 ? 0 : kind < 15 ? 1 : 2) {
        case 0: {   // map
            // Mostly congruent with va so large pages fit; sometimes not
            // (but never a gigabyte of 4 KiB pages: that is just slow).
            u64 pa = align_down(pick(64 * G1), gran) + (va & (gran - 1));
            if (pick(4) == 0) pa = align_down(pick(64 * G1), gran == G1 ? M2 : K4) + (va & (gran == G1 ? M2 - 1 : 0));
            Status st = pt.map(va, pa, size, attr);
            if (overlaps(model, s, e)) {
                ASSERT_EQ(st.error(), Err::exists);
            } else {
                ASSERT_TRUE(st) << err_name(st.error());
                model[s] = Seg{e, pa, attr};
            }
            break;
        }
        case 1: {   // unmap
            bool had = overlaps(model, s, e);
            auto r = pt.unmap(va, size);
            ASSERT_TRUE(r);
            EXPECT_EQ(*r, had);
            cut(model, s);
            cut(model, e);
            model.erase(model.lower_bound(s), model.lower_bound(e));
            break;
        }
        default: {  // protect
            auto r = pt.protect(va, size, attr);
            ASSERT_TRUE(r);
            cut(model, s);
            cut(model, e);
            for (auto it = model.lower_bound(s); it != model.end() && it->first < e; ++it) it->second.attr = attr;
            break;
        }
        }

        if (op % 8 == 0) ASSERT_EQ(ranges(pt), merged(model)) << "after op " << op;
        for (int k = 0; k < 16; k++) {
            u64 x = base + pick(window);
            auto r = pt.lookup(x);
            auto it = model.upper_bound(x);
            if (it != model.begin() && (--it)->second.end > x) {
                ASSERT_TRUE(r);
                EXPECT_EQ(r->pa, it->second.pa + (x - it->first));
                EXPECT_EQ(r->attr, it->second.attr);
            } else {
                EXPECT_EQ(r.error(), Err::not_found);
            }
        }
    }
    ASSERT_EQ(ranges(pt), merged(model));
    // Emptied, only the root remains.
    ASSERT_TRUE(pt.unmap(base, window));
    EXPECT_EQ(mem.live(), 1u);
    pt.destroy();
    EXPECT_EQ(mem.allocs(), mem.frees());
}

TEST(Ptab, RandomHostHighHalf) { random_against_model<HostFormat>(0xffff'ff00'0000'0000, 1); }
TEST(Ptab, RandomEpt) { random_against_model<EptFormat>(0x7f'0000'0000, 2); }

} // namespace

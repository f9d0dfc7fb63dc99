// drivers/nvme/ against the simulated controller of sim_controller.hpp:
// bring-up and its bounded waits, identify parsing, queue wrap-around and a
// full SQ, PRP lists, I/O round trips, optional commands, timeouts, fatal
// status and media errors.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "drivers/nvme/commands.hpp"
#include "drivers/nvme/controller.hpp"
#include "drivers/nvme/identify.hpp"
#include "drivers/nvme/prp.hpp"
#include "tests/unit/drivers/nvme/sim_controller.hpp"

namespace nvme {
namespace {

using sim::FakeClock;
using sim::FakeDma;
using sim::SimController;

// A data buffer in fake DMA memory: `n` pages, the data from `offset` on.
struct Buf {
    FakeDma &dma;
    std::vector<DmaPage> pages;
    std::vector<PhysAddr> pas;
    DataBuffer db;

    Buf(FakeDma &d, u32 offset, u32 length) : dma(d)
    {
        const u64 n = (u64(offset) + length + MEM_PAGE - 1) / MEM_PAGE;
        for (u64 i = 0; i < n; i++) {
            auto p = dma.alloc_page();
            EXPECT_TRUE(p.ok());
            pages.push_back(*p);
            pas.push_back(p->pa);
        }
        db = DataBuffer{pas.data(), u32(pas.size()), offset, length};
    }
    ~Buf()
    {
        for (auto &p : pages) dma.free_page(p);
    }
    u8 &at(u64 i)
    {
        const u64 k = db.offset + i;
        return pages[k / MEM_PAGE].va[k % MEM_PAGE];
    }
    void fill(u32 seed)
    {
        for (u64 i = 0; i < db.length; i++) at(i) = u8(seed * 31 + i * 7 + (i >> 9));
    }
    bool same(Buf &o)
    {
        for (u64 i = 0; i < db.length; i++)
            if (at(i) != o.at(i)) return false;
        return true;
    }
};

struct Nvme : ::testing::Test {
    FakeDma dma{8192};
    FakeClock clock;
    SimController sim{dma};
    Options opt;

    Nvme()
    {
        sim.add_namespace(1, 16384);        // 8 MiB of 512-byte blocks
        sim.add_namespace(2, 256, 12);      // 1 MiB of 4 KiB blocks
    }

    // Enabled, identified, I/O queues made, namespace `nsid` identified.
    void up(Controller &c, NamespaceInfo &ns, u32 nsid = 1)
    {
        ASSERT_TRUE(c.enable().ok()) << c.why();
        ASSERT_TRUE(c.create_io_queues().ok()) << c.why();
        ASSERT_TRUE(c.identify_namespace(nsid, ns).ok()) << c.why();
    }
};

TEST_F(Nvme, BringUp)
{
    Controller c(sim, dma, clock, opt);
    ASSERT_TRUE(c.enable().ok()) << c.why();
    const u32 cc = sim.read32(REG_CC);
    EXPECT_TRUE(cc & CC_EN);
    EXPECT_EQ(cc >> 7 & 0xf, 0u);                   // 4 KiB pages
    EXPECT_EQ(cc >> 16 & 0xf, 6u);                  // 64-byte SQ entries
    EXPECT_EQ(cc >> 20 & 0xf, 4u);                  // 16-byte CQ entries
    EXPECT_EQ(sim.read32(REG_AQA), aqa(32, 32));
    EXPECT_EQ(sim.read64(REG_ASQ), c.admin_queue().sq_base().raw());
    EXPECT_EQ(c.version(), 0x00010400u);

    const ControllerInfo &i = c.info();
    EXPECT_EQ(i.vid, 0x4b4b);
    EXPECT_STREQ(i.serial, "SIM0001");
    EXPECT_STREQ(i.model, "Keel simulated NVMe");
    EXPECT_STREQ(i.firmware, "1.0");
    EXPECT_EQ(i.mdts, 5);
    EXPECT_EQ(i.max_transfer, 128 * KiB);
    EXPECT_TRUE(i.volatile_write_cache);
    EXPECT_TRUE(i.dsm);
    EXPECT_TRUE(i.write_zeroes);
    EXPECT_EQ(i.nn, 2u);

    ASSERT_TRUE(c.create_io_queues().ok()) << c.why();
    EXPECT_TRUE(sim.has_sq(1));
    EXPECT_TRUE(sim.has_cq(1));
    EXPECT_EQ(sim.sq_size(1), 64);
    EXPECT_FALSE(sim.protocol_error);

    ASSERT_TRUE(c.shutdown().ok());
    c.release();
    EXPECT_EQ(dma.outstanding, 0);
}

TEST_F(Nvme, EnableAgainForgetsIoQueues)
{
    Controller c(sim, dma, clock, opt);
    NamespaceInfo ns;
    up(c, ns);
    ASSERT_TRUE(c.enable().ok());                    // the controller forgot its I/O queues ...
    EXPECT_FALSE(c.io_queue().live());               // ... and so does the driver
    EXPECT_FALSE(sim.has_sq(1));
    ASSERT_TRUE(c.create_io_queues().ok()) << c.why();
    Buf b(dma, 0, 512);
    EXPECT_TRUE(c.write(ns, 0, 1, b.db).ok());
    EXPECT_EQ(c.create_io_queues().error(), Err::exists);
    c.release();
}

TEST_F(Nvme, EnableFromEnabledState)
{
    // Firmware left the controller enabled: Keel disables it first.
    Controller a(sim, dma, clock, opt);
    ASSERT_TRUE(a.enable().ok());
    a.release();
    Controller c(sim, dma, clock, opt);
    ASSERT_TRUE(c.enable().ok()) << c.why();
    EXPECT_FALSE(sim.protocol_error);
    c.release();
}

TEST_F(Nvme, NeverReadyIsABoundedWait)
{
    sim.never_ready = true;
    sim.to = 4;                                      // CAP.TO: 2 s
    Controller c(sim, dma, clock, opt);
    const u64 t0 = clock.t;
    Status s = c.enable();
    EXPECT_EQ(s.error(), Err::timeout);
    EXPECT_GE(clock.t - t0, 2'000'000u);
    EXPECT_LT(clock.t - t0, 2'100'000u);
    EXPECT_NE(std::string(c.why()).find("CSTS.RDY not 1 after 2000 ms"), std::string::npos) << c.why();
    c.release();
    EXPECT_EQ(dma.outstanding, 0);
}

TEST_F(Nvme, StuckReadyOnDisableIsABoundedWait)
{
    Controller c(sim, dma, clock, opt);
    ASSERT_TRUE(c.enable().ok());
    sim.stuck_ready = true;
    EXPECT_EQ(c.reset().error(), Err::timeout);
    EXPECT_NE(std::string(c.why()).find("disable"), std::string::npos) << c.why();
    c.release();
}

TEST_F(Nvme, StoppedClockStillEndsTheWait)
{
    sim.never_ready = true;
    clock.step = 0;                                  // time never passes
    opt.max_polls = 1000;
    Controller c(sim, dma, clock, opt);
    EXPECT_EQ(c.enable().error(), Err::timeout);
    EXPECT_LE(clock.pauses, 1001u);
    c.release();
}

TEST_F(Nvme, FatalStatusAtEnable)
{
    sim.fatal = true;                                // the controller starts out broken
    Controller c(sim, dma, clock, opt);
    EXPECT_EQ(c.enable().error(), Err::invalid);
    EXPECT_NE(std::string(c.why()).find("fatal"), std::string::npos) << c.why();
    c.release();
}

TEST_F(Nvme, UnsupportedController)
{
    sim.mpsmin = 1;                                  // 8 KiB minimum pages
    Controller c(sim, dma, clock, opt);
    EXPECT_EQ(c.enable().error(), Err::unsupported);
    c.release();
}

TEST_F(Nvme, BadEntrySizesRefused)
{
    sim.sqes = 0x77;                                 // requires 128-byte SQ entries
    Controller c(sim, dma, clock, opt);
    EXPECT_EQ(c.enable().error(), Err::invalid);
    c.release();
}

TEST_F(Nvme, Namespaces)
{
    sim.add_namespace(3, 64, 9, 8);                  // with 8 bytes of metadata per block
    sim.nn = 4;
    Controller c(sim, dma, clock, opt);
    ASSERT_TRUE(c.enable().ok());
    u32 ids[8];
    auto n = c.active_namespaces(ids, 8);
    ASSERT_TRUE(n.ok());
    ASSERT_EQ(*n, 3u);
    EXPECT_EQ(ids[0], 1u);
    EXPECT_EQ(ids[1], 2u);
    EXPECT_EQ(ids[2], 3u);
    auto n1 = c.active_namespaces(ids, 1);          // more than fit: counted, one copied
    ASSERT_TRUE(n1.ok());
    EXPECT_EQ(*n1, 3u);

    NamespaceInfo ns;
    ASSERT_TRUE(c.identify_namespace(1, ns).ok());
    EXPECT_EQ(ns.blocks, 16384u);
    EXPECT_EQ(ns.block_size, 512u);
    EXPECT_TRUE(ns.usable);
    ASSERT_TRUE(c.identify_namespace(2, ns).ok());
    EXPECT_EQ(ns.blocks, 256u);
    EXPECT_EQ(ns.block_size, 4096u);
    EXPECT_EQ(ns.block_shift, 12);
    ASSERT_TRUE(c.identify_namespace(3, ns).ok());
    EXPECT_EQ(ns.metadata_size, 8);
    EXPECT_FALSE(ns.usable);
    EXPECT_EQ(c.identify_namespace(4, ns).error(), Err::not_found);   // allocated, inactive: zeroes
    EXPECT_EQ(c.identify_namespace(5, ns).error(), Err::invalid);     // beyond NN: the controller says no
    EXPECT_EQ(c.last().outcome, Outcome::failed);
    EXPECT_EQ(c.last().status.sc(), SC_INVALID_NAMESPACE);
    EXPECT_NE(std::string(c.why()).find("invalid namespace or format"), std::string::npos) << c.why();
    EXPECT_EQ(c.identify_namespace(0, ns).error(), Err::invalid);
    c.release();
}

TEST(NvmeIdentify, ControllerFields)
{
    u8 page[4096] = {};
    page[512] = 0x66;
    page[513] = 0x44;
    page[77] = 0;
    ControllerInfo i;
    ASSERT_TRUE(parse_identify_controller(page, 0, i).ok());
    EXPECT_EQ(i.max_transfer, 0u);                   // MDTS 0: no limit
    EXPECT_STREQ(i.serial, "");
    page[77] = 3;
    ASSERT_TRUE(parse_identify_controller(page, u64(2) << 48, i).ok());
    EXPECT_EQ(i.max_transfer, 8u * 16384);           // 2^3 pages of 16 KiB (MPSMIN 2)
    page[77] = 40;
    ASSERT_TRUE(parse_identify_controller(page, 0, i).ok());
    EXPECT_EQ(i.max_transfer, u64(1) << 40);         // capped, no overflow
    page[520] = ONCS_DSM;
    page[525] = 0;
    ASSERT_TRUE(parse_identify_controller(page, 0, i).ok());
    EXPECT_TRUE(i.dsm);
    EXPECT_FALSE(i.write_zeroes);
    EXPECT_FALSE(i.volatile_write_cache);
    std::memcpy(page + 4, "AB\x01 ", 4);              // a control byte in a text field
    ASSERT_TRUE(parse_identify_controller(page, 0, i).ok());
    EXPECT_STREQ(i.serial, "AB?");
    page[513] = 0x55;                                // CQ entries must be 32 bytes
    EXPECT_EQ(parse_identify_controller(page, 0, i).error(), Err::invalid);
}

TEST(NvmeIdentify, NamespaceFields)
{
    u8 page[4096] = {};
    NamespaceInfo ns;
    EXPECT_EQ(parse_identify_namespace(page, 7, ns).error(), Err::not_found);
    page[0] = 0x10;                                  // NSZE 16
    page[25] = 0;                                    // one format
    page[128 + 2] = 12;                              // LBADS 12
    ASSERT_TRUE(parse_identify_namespace(page, 7, ns).ok());
    EXPECT_EQ(ns.nsid, 7u);
    EXPECT_EQ(ns.block_size, 4096u);
    EXPECT_TRUE(ns.usable);
    page[26] = 1;                                    // FLBAS index beyond NLBAF
    EXPECT_EQ(parse_identify_namespace(page, 7, ns).error(), Err::invalid);
    page[26] = 0;
    page[128 + 2] = 8;                               // 256-byte blocks: not a valid size
    EXPECT_EQ(parse_identify_namespace(page, 7, ns).error(), Err::invalid);
    page[128 + 2] = 17;
    EXPECT_EQ(parse_identify_namespace(page, 7, ns).error(), Err::invalid);
    page[128 + 2] = 9;
    std::memset(page, 0xff, 8);                      // NSZE * 512 does not fit 64 bits
    EXPECT_EQ(parse_identify_namespace(page, 7, ns).error(), Err::invalid);
}

TEST(NvmeIdentify, NamespaceList)
{
    u8 page[4096] = {};
    u32 ids[4];
    auto n = parse_namespace_list(page, ids, 4);
    ASSERT_TRUE(n.ok());
    EXPECT_EQ(*n, 0u);
    const u32 good[] = {1, 5, 9};
    std::memcpy(page, good, sizeof good);
    n = parse_namespace_list(page, ids, 4);
    ASSERT_TRUE(n.ok());
    EXPECT_EQ(*n, 3u);
    EXPECT_EQ(ids[2], 9u);
    const u32 bad[] = {5, 5};
    std::memcpy(page, bad, sizeof bad);
    EXPECT_FALSE(parse_namespace_list(page, ids, 4).ok());
    std::memset(page, 0, sizeof page);
    for (u32 i = 0; i < 1024; i++) std::memcpy(page + 4 * i, &(ids[0] = i + 1), 4);   // full page, no terminator
    n = parse_namespace_list(page, ids, 4);
    ASSERT_TRUE(n.ok());
    EXPECT_EQ(*n, 1024u);
}

// --- PRPs ---

struct Prp : ::testing::Test {
    FakeDma dma{64};
    std::vector<PhysAddr> pages;

    // `n` distinct page addresses, not in the arena (never touched by build_prps).
    void make(u64 n)
    {
        pages.clear();
        for (u64 i = 0; i < n; i++) pages.push_back(PhysAddr(0x100000000ull + (i * 7919 % n) * MEM_PAGE));
    }
    DataBuffer buf(u32 offset, u32 length) { return DataBuffer{pages.data(), u32(pages.size()), offset, length}; }
    u64 entry(u64 list_pa, u32 i) { return reinterpret_cast<u64 *>(dma.at(list_pa, MEM_PAGE))[i]; }
};

TEST_F(Prp, OnePage)
{
    make(1);
    OwnedPages o;
    auto p = build_prps(buf(0, 4096), 0, dma, o);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->prp1, pages[0].raw());
    EXPECT_EQ(p->prp2, 0u);
    EXPECT_EQ(o.n, 0u);
    p = build_prps(buf(0x200, 512), 0, dma, o);      // offset, inside one page
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->prp1, pages[0].raw() + 0x200);
    EXPECT_EQ(p->prp2, 0u);
    p = build_prps(buf(0xffc, 4), 0, dma, o);        // the last dword of the page
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->prp2, 0u);
}

TEST_F(Prp, TwoPages)
{
    make(2);
    OwnedPages o;
    auto p = build_prps(buf(0, 8192), 0, dma, o);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->prp1, pages[0].raw());
    EXPECT_EQ(p->prp2, pages[1].raw());
    // An offset buffer of one page's length crosses into the second page.
    p = build_prps(buf(0x800, 4096), 0, dma, o);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->prp1, pages[0].raw() + 0x800);
    EXPECT_EQ(p->prp2, pages[1].raw());
    EXPECT_EQ(o.n, 0u);
    EXPECT_EQ(dma.outstanding, 0);
}

TEST_F(Prp, OffsetBufferNeedsAList)
{
    make(4);
    OwnedPages o;
    auto p = build_prps(buf(0x200, 3 * 4096), 0, dma, o);   // spans 4 pages
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->prp1, pages[0].raw() + 0x200);
    ASSERT_EQ(o.n, 1u);
    EXPECT_EQ(p->prp2, o.page[0].pa.raw());
    EXPECT_EQ(entry(p->prp2, 0), pages[1].raw());
    EXPECT_EQ(entry(p->prp2, 1), pages[2].raw());
    EXPECT_EQ(entry(p->prp2, 2), pages[3].raw());
    EXPECT_EQ(entry(p->prp2, 3), 0u);
    o.release(dma);
    EXPECT_EQ(dma.outstanding, 0);
}

TEST_F(Prp, ListFillsOnePageExactly)
{
    make(1 + PRP_PER_LIST);                          // 512 list entries: one full page, no chain
    OwnedPages o;
    auto p = build_prps(buf(0, u32(pages.size() * MEM_PAGE)), 0, dma, o);
    ASSERT_TRUE(p.ok());
    ASSERT_EQ(o.n, 1u);
    EXPECT_EQ(entry(p->prp2, PRP_PER_LIST - 1), pages.back().raw());
    o.release(dma);
}

TEST_F(Prp, ListsChain)
{
    make(2 + PRP_PER_LIST);                          // 513 entries: 511 + a chain, then 2
    OwnedPages o;
    auto p = build_prps(buf(0, u32(pages.size() * MEM_PAGE)), 0, dma, o);
    ASSERT_TRUE(p.ok());
    ASSERT_EQ(o.n, 2u);
    EXPECT_EQ(p->prp2, o.page[0].pa.raw());
    for (u32 i = 0; i < PRP_PER_LIST - 1; i++) ASSERT_EQ(entry(p->prp2, i), pages[1 + i].raw());
    EXPECT_EQ(entry(p->prp2, PRP_PER_LIST - 1), o.page[1].pa.raw());
    EXPECT_EQ(entry(o.page[1].pa.raw(), 0), pages[PRP_PER_LIST].raw());
    EXPECT_EQ(entry(o.page[1].pa.raw(), 1), pages[PRP_PER_LIST + 1].raw());
    o.release(dma);

    make(1024 + 1);                                  // 4 MiB at an offset: 1024 entries, 3 list pages
    p = build_prps(buf(0x400, u32(4 * MiB)), 0, dma, o);
    ASSERT_TRUE(p.ok());
    ASSERT_EQ(o.n, 3u);
    EXPECT_EQ(entry(o.page[0].pa.raw(), 511), o.page[1].pa.raw());
    EXPECT_EQ(entry(o.page[1].pa.raw(), 511), o.page[2].pa.raw());
    EXPECT_EQ(entry(o.page[2].pa.raw(), 0), pages[1 + 2 * 511].raw());
    EXPECT_EQ(entry(o.page[2].pa.raw(), 1), pages[1024].raw());
    o.release(dma);
    EXPECT_EQ(dma.outstanding, 0);
}

TEST_F(Prp, Refusals)
{
    make(64);
    OwnedPages o;
    EXPECT_EQ(build_prps(buf(0, 0), 0, dma, o).error(), Err::invalid);              // empty
    EXPECT_EQ(build_prps(buf(2, 512), 0, dma, o).error(), Err::invalid);            // offset not a dword
    EXPECT_EQ(build_prps(buf(4096, 512), 0, dma, o).error(), Err::invalid);         // offset past the page
    EXPECT_EQ(build_prps(buf(0, 65 * 4096), 0, dma, o).error(), Err::range);        // more than the pages
    EXPECT_EQ(build_prps(buf(0, 32 * 4096 + 4), 128 * KiB, dma, o).error(), Err::range);   // over MDTS
    EXPECT_TRUE(build_prps(buf(0, 32 * 4096), 128 * KiB, dma, o).ok());             // exactly MDTS
    o.release(dma);
    make(1100);
    EXPECT_EQ(build_prps(buf(0, u32(MAX_TRANSFER + 4096)), 0, dma, o).error(), Err::range);   // over Keel's cap
    make(64);
    pages[3] = pages[3] + 8;                         // a page not page-aligned
    EXPECT_EQ(build_prps(buf(0, 8 * 4096), 0, dma, o).error(), Err::invalid);
    DataBuffer none{nullptr, 0, 0, 512};
    EXPECT_EQ(build_prps(none, 0, dma, o).error(), Err::invalid);
    EXPECT_EQ(dma.outstanding, 0);
    EXPECT_EQ(o.n, 0u);
}

TEST_F(Prp, OutOfMemoryLeavesNothing)
{
    make(1000);                                      // 999 entries: two list pages
    OwnedPages o;
    dma.fail_after_ = 1;                             // the second list page fails
    EXPECT_EQ(build_prps(buf(0, 1000 * 4096), 0, dma, o).error(), Err::no_memory);
    EXPECT_EQ(o.n, 0u);
    EXPECT_EQ(dma.outstanding, 0);
}

// --- I/O ---

TEST_F(Nvme, ReadWriteRoundTrip)
{
    Controller c(sim, dma, clock, opt);
    NamespaceInfo ns;
    up(c, ns);
    struct Case {
        u32 offset, blocks;
        u64 lba;
    } cases[] = {{0, 1, 0}, {0, 8, 100}, {0x200, 8, 7}, {0xa00, 17, 1000}, {0x4, 8, 50}, {0, 256, 16384 - 256}};
    u32 seed = 1;
    for (const Case &k : cases) {
        const u32 len = k.blocks * 512;
        Buf w(dma, k.offset, len), r(dma, k.offset, len);
        w.fill(seed++);
        CmdResult res = c.write(ns, k.lba, k.blocks, w.db);
        ASSERT_TRUE(res.ok()) << outcome_text(res.outcome) << " " << status_text(res.status);
        EXPECT_EQ(std::memcmp(sim.ns[0].data.data() + k.lba * 512, &w.at(0), 1), 0);
        res = c.read(ns, k.lba, k.blocks, r.db);
        ASSERT_TRUE(res.ok()) << outcome_text(res.outcome);
        EXPECT_TRUE(r.same(w)) << "offset " << k.offset << " blocks " << k.blocks;
        for (u64 i = 0; i < len; i++) ASSERT_EQ(sim.ns[0].data[k.lba * 512 + i], w.at(i));
    }
    EXPECT_FALSE(sim.protocol_error);
    const i64 before = dma.outstanding;
    c.release();
    EXPECT_EQ(dma.outstanding, before - 5);          // admin SQ/CQ, I/O SQ/CQ, identify page
    EXPECT_EQ(dma.outstanding, 0);
}

TEST_F(Nvme, ChainedListsThroughTheController)
{
    sim.mdts = 0;                                    // no limit: Keel's 4 MiB cap applies
    Controller c(sim, dma, clock, opt);
    NamespaceInfo ns;
    up(c, ns);
    const u32 len = 600 * 4096;                      // 600 pages: two list pages
    Buf w(dma, 0, len), r(dma, 0, len);
    w.fill(42);
    ASSERT_TRUE(c.write(ns, 16, len / 512, w.db).ok());
    EXPECT_EQ(sim.list_pages_walked, 2u);
    ASSERT_TRUE(c.read(ns, 16, len / 512, r.db).ok());
    EXPECT_TRUE(r.same(w));
    EXPECT_EQ(sim.list_pages_walked, 4u);
    EXPECT_EQ(c.io_queue().in_flight(), 0);
    c.release();
}

TEST_F(Nvme, TransferOverMdtsRefused)
{
    Controller c(sim, dma, clock, opt);              // MDTS 5: 128 KiB
    NamespaceInfo ns;
    up(c, ns);
    const u32 before = sim.commands;
    Buf b(dma, 0, 256 * KiB);
    CmdResult r = c.write(ns, 0, 512, b.db);
    EXPECT_EQ(r.outcome, Outcome::refused);
    EXPECT_EQ(r.why, Err::range);
    EXPECT_EQ(sim.commands, before);                 // nothing reached the controller
    Buf ok(dma, 0, 128 * KiB);
    EXPECT_TRUE(c.write(ns, 0, 256, ok.db).ok());
    c.release();
}

TEST_F(Nvme, BadRequestsRefused)
{
    Controller c(sim, dma, clock, opt);
    NamespaceInfo ns;
    up(c, ns);
    const u32 before = sim.commands;
    Buf b(dma, 0, 4096);
    EXPECT_EQ(c.read(ns, 16384 - 7, 8, b.db).why, Err::range);    // runs past the end
    EXPECT_EQ(c.read(ns, 16384, 8, b.db).why, Err::range);
    EXPECT_EQ(c.read(ns, ~u64(0), 8, b.db).why, Err::range);
    EXPECT_EQ(c.read(ns, 0, 0, b.db).why, Err::range);
    EXPECT_EQ(c.read(ns, 0, 4, b.db).why, Err::invalid);          // 2 KiB of blocks, 4 KiB of buffer
    NamespaceInfo meta = ns;
    meta.usable = false;
    EXPECT_EQ(c.read(meta, 0, 8, b.db).why, Err::unsupported);
    EXPECT_EQ(sim.commands, before);
    c.release();
}

TEST_F(Nvme, BlockSize4K)
{
    Controller c(sim, dma, clock, opt);
    NamespaceInfo ns;
    up(c, ns, 2);
    Buf w(dma, 0, 3 * 4096), r(dma, 0, 3 * 4096);
    w.fill(9);
    ASSERT_TRUE(c.write(ns, 253, 3, w.db).ok());
    ASSERT_TRUE(c.read(ns, 253, 3, r.db).ok());
    EXPECT_TRUE(r.same(w));
    EXPECT_EQ(c.read(ns, 254, 3, r.db).why, Err::range);
    c.release();
}

TEST_F(Nvme, QueueWrapsWithPhaseFlips)
{
    opt.io_sq_entries = 4;
    opt.io_cq_entries = 5;                           // the two rings wrap at different points
    Controller c(sim, dma, clock, opt);
    NamespaceInfo ns;
    up(c, ns);
    QueuePair &q = c.io_queue();
    ASSERT_EQ(q.sq_entries(), 4);
    ASSERT_EQ(q.cq_entries(), 5);
    int flips = 0;
    bool phase = q.cq_phase();
    Buf w(dma, 0, 4096), r(dma, 0, 4096);
    for (u32 i = 0; i < 23; i++) {                   // four laps of the CQ and more
        w.fill(i);
        ASSERT_TRUE(c.write(ns, i, 8, w.db).ok()) << i;
        ASSERT_TRUE(c.read(ns, i, 8, r.db).ok()) << i;
        ASSERT_TRUE(r.same(w)) << i;
        if (q.cq_phase() != phase) {
            flips++;
            phase = q.cq_phase();
        }
        EXPECT_EQ(q.sq_head(), q.sq_tail());
    }
    EXPECT_EQ(flips, 46 / 5);                        // 46 completions on a ring of 5
    EXPECT_EQ(q.cq_head(), 46 % 5);
    EXPECT_EQ(q.sq_tail(), 46 % 4);
    EXPECT_EQ(q.bogus(), 0u);
    EXPECT_FALSE(sim.protocol_error);
    c.release();
}

TEST_F(Nvme, FullSubmissionQueueRefusedNotOverwritten)
{
    opt.io_sq_entries = 8;
    opt.io_cq_entries = 32;
    Controller c(sim, dma, clock, opt);
    NamespaceInfo ns;
    up(c, ns);
    QueuePair &q = c.io_queue();
    sim.hold = true;                                 // the controller takes nothing for now
    std::vector<u16> cids;
    for (u32 i = 0; i < 7; i++) {
        auto cid = q.submit(sim, cmd::flush(1), nullptr, clock.now_us());
        ASSERT_TRUE(cid.ok()) << i;
        cids.push_back(*cid);
    }
    EXPECT_EQ(q.sq_free(), 0);
    std::vector<u8> ring(reinterpret_cast<u8 *>(dma.at(q.sq_base().raw(), 4096)),
                         reinterpret_cast<u8 *>(dma.at(q.sq_base().raw(), 4096)) + 8 * 64);
    auto refused = q.submit(sim, cmd::flush(2), nullptr, clock.now_us());
    EXPECT_EQ(refused.error(), Err::busy);
    EXPECT_EQ(std::memcmp(ring.data(), dma.at(q.sq_base().raw(), 4096), ring.size()), 0);   // untouched
    EXPECT_EQ(sim.sq_pending(1), 7);

    sim.hold = false;
    sim.run();
    EXPECT_EQ(q.reap(sim, dma), 7u);
    EXPECT_EQ(q.sq_free(), 7);
    for (u16 cid : cids) {
        CmdResult r;
        ASSERT_TRUE(q.take(cid, r));
        EXPECT_TRUE(r.ok());
    }
    EXPECT_EQ(sim.flushes, 7u);
    for (const Sqe &e : sim.log)
        if (e.opcode() == NVM_FLUSH) EXPECT_EQ(e.nsid, 1u);   // the refused flush never went out
    EXPECT_EQ(q.in_flight(), 0);
    c.release();
}

TEST_F(Nvme, InFlightLimitedByCompletionQueue)
{
    opt.io_sq_entries = 16;
    opt.io_cq_entries = 4;                           // at most 3 outstanding
    Controller c(sim, dma, clock, opt);
    NamespaceInfo ns;
    up(c, ns);
    QueuePair &q = c.io_queue();
    sim.hold = true;
    for (u32 i = 0; i < 3; i++) ASSERT_TRUE(q.submit(sim, cmd::flush(1), nullptr, 0).ok());
    EXPECT_EQ(q.submit(sim, cmd::flush(1), nullptr, 0).error(), Err::busy);
    sim.hold = false;
    sim.run();
    EXPECT_EQ(q.reap(sim, dma), 3u);
    c.release();
}

TEST(NvmeQueue, SetUp)
{
    FakeDma dma(16);
    SimController sim(dma);
    QueuePair q;
    EXPECT_FALSE(q.live());
    EXPECT_EQ(q.sq_free(), 0);
    EXPECT_EQ(q.submit(sim, cmd::flush(1), nullptr, 0).error(), Err::invalid);
    EXPECT_EQ(q.reap(sim, dma), 0u);
    EXPECT_EQ(q.init(dma, 1, 1, 4, 0).error(), Err::invalid);      // an SQ of one entry
    EXPECT_EQ(q.init(dma, 1, 65, 4, 0).error(), Err::invalid);     // more than a page
    EXPECT_EQ(q.init(dma, 1, 4, 257, 0).error(), Err::invalid);
    EXPECT_EQ(q.init(dma, 1, 4, 4, 16).error(), Err::invalid);     // DSTRD is 4 bits
    EXPECT_EQ(dma.outstanding, 0);
    ASSERT_TRUE(q.init(dma, 3, 64, 256, 1).ok());
    EXPECT_EQ(q.init(dma, 3, 64, 256, 1).error(), Err::exists);
    EXPECT_EQ(q.sq_free(), 63);
    EXPECT_EQ(dma.outstanding, 2);
    q.destroy(dma);
    q.destroy(dma);                                  // twice is harmless
    EXPECT_EQ(dma.outstanding, 0);
    dma.fail_after_ = 1;                             // the CQ's page fails: the SQ's goes back
    EXPECT_EQ(q.init(dma, 1, 4, 4, 0).error(), Err::no_memory);
    EXPECT_EQ(dma.outstanding, 0);
}

TEST_F(Nvme, BogusCompletionsIgnored)
{
    Controller c(sim, dma, clock, opt);
    NamespaceInfo ns;
    up(c, ns);
    QueuePair &q = c.io_queue();
    // Forge a completion for a command id nobody submitted, with an impossible SQ head.
    Cqe *ring = reinterpret_cast<Cqe *>(dma.at(q.cq_base().raw(), 4096));
    ring[q.cq_head()] = Cqe{0, 0, 60, 1, 33, u16(q.cq_phase() ? 1 : 0)};
    const u16 head = q.sq_head();
    EXPECT_EQ(q.reap(sim, dma), 1u);
    EXPECT_EQ(q.bogus(), 2u);                        // unknown command id and SQ head beyond the tail
    EXPECT_EQ(q.sq_head(), head);
    CmdResult r;
    EXPECT_FALSE(q.take(33, r));
    c.release();
}

TEST_F(Nvme, Flush)
{
    Controller c(sim, dma, clock, opt);
    NamespaceInfo ns;
    up(c, ns);
    EXPECT_TRUE(c.flush(ns).ok());
    EXPECT_EQ(sim.flushes, 1u);
    c.release();

    SimController nocache(dma);
    nocache.vwc = false;
    nocache.add_namespace(1, 64);
    Controller d(nocache, dma, clock, opt);
    up(d, ns);
    const u32 before = nocache.commands;
    EXPECT_TRUE(d.flush(ns).ok());                   // nothing to flush
    EXPECT_EQ(nocache.flushes, 0u);
    EXPECT_EQ(nocache.commands, before);
    d.release();
}

TEST_F(Nvme, DeallocateAndWriteZeroes)
{
    Controller c(sim, dma, clock, opt);
    NamespaceInfo ns;
    up(c, ns);
    Buf w(dma, 0, 16 * 512);
    w.fill(5);
    ASSERT_TRUE(c.write(ns, 32, 16, w.db).ok());
    ASSERT_TRUE(c.deallocate(ns, 34, 3).ok());
    ASSERT_EQ(sim.deallocated.size(), 1u);
    EXPECT_EQ(sim.deallocated[0].first, 34u);
    EXPECT_EQ(sim.deallocated[0].second, 3u);
    ASSERT_TRUE(c.write_zeroes(ns, 40, 2).ok());
    Buf r(dma, 0, 16 * 512);
    ASSERT_TRUE(c.read(ns, 32, 16, r.db).ok());
    for (u32 i = 0; i < 16 * 512; i++) {
        const u32 blk = 32 + i / 512;
        const bool zero = (blk >= 34 && blk < 37) || (blk >= 40 && blk < 42);
        ASSERT_EQ(r.at(i), zero ? 0 : w.at(i)) << i;
    }
    EXPECT_EQ(c.deallocate(ns, 16383, 2).why, Err::range);
    const i64 pages = dma.outstanding;
    c.release();
    EXPECT_EQ(dma.outstanding, pages - 5);           // the DSM range page went with its command

    SimController plain(dma);
    plain.oncs = 0;
    plain.add_namespace(1, 64);
    Controller d(plain, dma, clock, opt);
    up(d, ns);
    const u32 before = plain.commands;
    EXPECT_EQ(d.deallocate(ns, 0, 1).why, Err::unsupported);
    EXPECT_EQ(d.write_zeroes(ns, 0, 1).why, Err::unsupported);
    EXPECT_EQ(plain.commands, before);
    d.release();
}

TEST_F(Nvme, TimeoutThenReset)
{
    opt.io_timeout_us = 5'000'000;
    Controller c(sim, dma, clock, opt);
    NamespaceInfo ns;
    up(c, ns);
    Buf w(dma, 0x100, 4096);
    w.fill(3);
    sim.drop = 1;                                    // the controller loses the next command
    const u64 t0 = clock.t;
    CmdResult r = c.write(ns, 0, 8, w.db);
    EXPECT_EQ(r.outcome, Outcome::timed_out);
    EXPECT_GE(clock.t - t0, 5'000'000u);
    EXPECT_LT(clock.t - t0, 5'001'000u);
    EXPECT_TRUE(c.needs_reset());
    EXPECT_NE(std::string(c.why()).find("timed out"), std::string::npos);
    EXPECT_EQ(c.io_queue().in_flight(), 1);          // its slot (and PRP list) kept until reset
    const u32 before = sim.commands;
    EXPECT_EQ(c.read(ns, 0, 8, w.db).outcome, Outcome::fatal);   // refused until reset
    EXPECT_EQ(sim.commands, before);

    ASSERT_TRUE(c.reset().ok()) << c.why();
    EXPECT_FALSE(c.needs_reset());
    EXPECT_EQ(c.io_queue().in_flight(), 0);
    ASSERT_TRUE(c.write(ns, 0, 8, w.db).ok());
    Buf r2(dma, 0x100, 4096);
    ASSERT_TRUE(c.read(ns, 0, 8, r2.db).ok());
    EXPECT_TRUE(r2.same(w));
    c.release();
}

TEST_F(Nvme, AdminTimeout)
{
    opt.admin_timeout_us = 1'000'000;
    Controller c(sim, dma, clock, opt);
    ASSERT_TRUE(c.enable().ok());
    sim.drop = 1;
    NamespaceInfo ns;
    EXPECT_EQ(c.identify_namespace(1, ns).error(), Err::timeout);
    EXPECT_EQ(c.last().outcome, Outcome::timed_out);
    ASSERT_TRUE(c.reset().ok());
    EXPECT_TRUE(c.identify_namespace(1, ns).ok());
    c.release();
    EXPECT_EQ(dma.outstanding, 0);
}

TEST_F(Nvme, LateCompletionOfAbandonedCommand)
{
    Controller c(sim, dma, clock, opt);
    NamespaceInfo ns;
    up(c, ns);
    QueuePair &q = c.io_queue();
    sim.hold = true;
    auto cid = q.submit(sim, cmd::flush(1), nullptr, clock.now_us());
    ASSERT_TRUE(cid.ok());
    EXPECT_FALSE(q.overdue(*cid, clock.now_us() + 999, 1000));
    EXPECT_TRUE(q.overdue(*cid, clock.now_us() + 1000, 1000));
    q.abandon(*cid);
    EXPECT_EQ(q.in_flight(), 1);
    sim.hold = false;
    sim.run();
    EXPECT_EQ(q.reap(sim, dma), 1u);                 // the slot comes back, nobody is told
    EXPECT_EQ(q.in_flight(), 0);
    CmdResult r;
    EXPECT_FALSE(q.take(*cid, r));
    c.release();
}

TEST_F(Nvme, FatalStatusDuringIo)
{
    Controller c(sim, dma, clock, opt);
    NamespaceInfo ns;
    up(c, ns);
    Buf b(dma, 0, 4096);
    sim.fatal = true;
    const u64 t0 = clock.t;
    EXPECT_EQ(c.read(ns, 0, 8, b.db).outcome, Outcome::fatal);
    EXPECT_LT(clock.t - t0, 1000u);                  // seen at once, not after the timeout
    EXPECT_TRUE(c.needs_reset());
    EXPECT_NE(std::string(c.why()).find("fatal"), std::string::npos);
    ASSERT_TRUE(c.reset().ok()) << c.why();          // CC.EN 1 -> 0 clears it
    EXPECT_TRUE(c.read(ns, 0, 8, b.db).ok());
    c.release();
}

TEST_F(Nvme, MediaError)
{
    sim.media_error_lba = 10;
    Controller c(sim, dma, clock, opt);
    NamespaceInfo ns;
    up(c, ns);
    Buf b(dma, 0, 4096);
    CmdResult r = c.read(ns, 8, 8, b.db);
    EXPECT_EQ(r.outcome, Outcome::failed);
    EXPECT_TRUE(r.status.media_error());
    EXPECT_EQ(r.status.sct(), SCT_MEDIA);
    EXPECT_EQ(r.status.sc(), SC_UNRECOVERED_READ_ERROR);
    EXPECT_STREQ(status_text(r.status), "unrecovered read error");
    EXPECT_FALSE(c.needs_reset());                   // a failed command is not a broken controller
    r = c.write(ns, 8, 8, b.db);
    EXPECT_TRUE(r.status.media_error());
    EXPECT_STREQ(status_text(r.status), "write fault");
    EXPECT_TRUE(c.read(ns, 0, 8, b.db).ok());        // the blocks around it are fine
    r = c.read(ns, 0, 8, b.db);
    EXPECT_FALSE(r.status.media_error());
    c.release();
}

TEST(NvmeStatus, Decode)
{
    StatusField s{u16(0x81 | 2 << 8 | 1 << 13 | 1 << 14)};
    EXPECT_EQ(s.sc(), 0x81);
    EXPECT_EQ(s.sct(), 2);
    EXPECT_TRUE(s.more());
    EXPECT_TRUE(s.dnr());
    EXPECT_TRUE(s.media_error());
    EXPECT_FALSE(s.success());
    EXPECT_TRUE(StatusField{}.success());
    EXPECT_FALSE(StatusField::make(SCT_GENERIC, SC_LBA_OUT_OF_RANGE).media_error());
    EXPECT_STREQ(status_text(StatusField::make(SCT_GENERIC, SC_LBA_OUT_OF_RANGE)), "lba out of range");
    EXPECT_STREQ(status_text(StatusField::make(SCT_COMMAND_SPECIFIC, 0x02)), "invalid queue size");
    EXPECT_STREQ(status_text(StatusField::make(SCT_GENERIC, 0x55)), "generic error");
    EXPECT_STREQ(status_text(StatusField::make(SCT_VENDOR, 0x01)), "vendor specific error");
    EXPECT_STREQ(status_text(StatusField::make(5, 0x01)), "reserved status type");
    EXPECT_TRUE(StatusField::make(SCT_GENERIC, 1, true).dnr());
}

TEST(NvmeCommands, Encoding)
{
    auto r = cmd::read(3, 0x123456789ull, 8, Prps{0x1000, 0x2000});
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->opcode(), NVM_READ);
    EXPECT_EQ(r->nsid, 3u);
    EXPECT_EQ(r->cdw10, 0x23456789u);
    EXPECT_EQ(r->cdw11, 0x1u);
    EXPECT_EQ(r->cdw12, 7u);
    EXPECT_EQ(r->prp2, 0x2000u);
    EXPECT_FALSE(cmd::read(1, 0, 0, {}).ok());
    EXPECT_FALSE(cmd::read(1, 0, MAX_BLOCKS_PER_CMD + 1, {}).ok());
    EXPECT_TRUE(cmd::write(1, 0, MAX_BLOCKS_PER_CMD, {}).ok());
    EXPECT_FALSE(cmd::write(1, ~u64(0) - 2, 8, {}).ok());   // wraps
    EXPECT_EQ(cmd::write(1, 0, 1, {}, true)->cdw12 >> 30 & 1, 1u);
    auto z = cmd::write_zeroes(1, 5, 2, true);
    ASSERT_TRUE(z.ok());
    EXPECT_EQ(z->cdw12, 1u | WZ_DEAC);
    EXPECT_FALSE(cmd::dsm_deallocate(1, 0, PhysAddr(0x1000)).ok());
    EXPECT_FALSE(cmd::dsm_deallocate(1, 257, PhysAddr(0x1000)).ok());
    EXPECT_FALSE(cmd::dsm_deallocate(1, 1, PhysAddr(0x1008)).ok());
    auto d = cmd::dsm_deallocate(1, 256, PhysAddr(0x1000));
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d->cdw10, 255u);
    EXPECT_EQ(d->cdw11, DSM_AD);
    Sqe cq = cmd::create_io_cq(1, 64, PhysAddr(0x5000), 3);
    EXPECT_EQ(cq.cdw10, 1u | 63u << 16);
    EXPECT_EQ(cq.cdw11, 1u | 2u | 3u << 16);
    Sqe sq = cmd::create_io_sq(1, 64, PhysAddr(0x6000), 1);
    EXPECT_EQ(sq.cdw11, 1u | 1u << 16);
    EXPECT_EQ(cmd::set_number_of_queues(1, 1).cdw11, 0u);
    EXPECT_EQ(sq_tail_doorbell(1, 0), 0x1008u);
    EXPECT_EQ(cq_head_doorbell(1, 0), 0x100cu);
    EXPECT_EQ(cq_head_doorbell(1, 2), 0x1000u + 3 * 16);
}

TEST_F(Nvme, DoorbellStride)
{
    sim.dstrd = 2;                                   // 16-byte doorbells
    Controller c(sim, dma, clock, opt);
    NamespaceInfo ns;
    up(c, ns);
    Buf b(dma, 0, 512);
    EXPECT_TRUE(c.write(ns, 0, 1, b.db).ok());
    EXPECT_FALSE(sim.protocol_error);
    c.release();
}

TEST_F(Nvme, OutOfDmaMemory)
{
    dma.fail_after_ = 2;                             // the admin rings, then nothing
    Controller c(sim, dma, clock, opt);
    EXPECT_EQ(c.enable().error(), Err::no_memory);
    c.release();
    EXPECT_EQ(dma.outstanding, 0);
}

} // namespace
} // namespace nvme

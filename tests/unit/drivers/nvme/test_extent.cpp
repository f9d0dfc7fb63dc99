// drivers/nvme/extent.cpp against the simulated controller: an Extent is a
// range of a namespace addressed by byte offsets inside it; only its blocks
// change, transfers are cut into commands that fit the bounce pages and MDTS,
// bad offsets are refused before any command, and a timeout resets the
// controller so that the next call works.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "drivers/nvme/controller.hpp"
#include "drivers/nvme/extent.hpp"
#include "tests/unit/drivers/nvme/sim_controller.hpp"

namespace nvme {
namespace {

using sim::FakeClock;
using sim::FakeDma;
using sim::SimController;

constexpr u64 FIRST = 100;      // the extent's first LBA of namespace 1
constexpr u64 BLOCKS = 1000;    // 500 KiB of 512-byte blocks

struct Piece {
    u64 n, pos;
};

struct ExtentTest : ::testing::Test {
    FakeDma dma{8192};
    FakeClock clock;
    SimController sim{dma};
    Options opt;
    Controller *ctrl = nullptr;
    Port *port = nullptr;
    NamespaceInfo ns;
    std::vector<u8> snapshot;

    ExtentTest()
    {
        opt.io_timeout_us = 1'000'000;
        sim.add_namespace(1, 4096);          // 2 MiB of 512-byte blocks
        sim.add_namespace(2, 256, 12);       // 1 MiB of 4 KiB blocks
        for (auto &n : sim.ns)
            for (u64 i = 0; i < n.data.size(); i++) n.data[i] = u8(i * 13 + (i >> 9) + n.nsid);
    }
    ~ExtentTest() override { down(); }

    // Controller enabled with I/O queues, namespace `nsid`, a port with its bounce pages.
    void up(u32 nsid = 1)
    {
        ctrl = new Controller(sim, dma, clock, opt);
        ASSERT_TRUE(ctrl->enable().ok()) << ctrl->why();
        ASSERT_TRUE(ctrl->create_io_queues().ok()) << ctrl->why();
        ASSERT_TRUE(ctrl->identify_namespace(nsid, ns).ok()) << ctrl->why();
        port = new Port(*ctrl, dma);
        ASSERT_TRUE(port->init().ok());
    }
    void down()
    {
        if (port) port->release();
        if (ctrl) ctrl->release();
        delete port;
        delete ctrl;
        port = nullptr;
        ctrl = nullptr;
    }

    std::vector<u8> &medium(u32 nsid = 1) { return sim.ns[nsid - 1].data; }
    void snap(u32 nsid = 1) { snapshot = medium(nsid); }
    // The medium is the snapshot except bytes [from, from + data.size()) which hold `data`.
    ::testing::AssertionResult only_changed(u64 from, const std::vector<u8> &data, u32 nsid = 1)
    {
        const std::vector<u8> &m = medium(nsid);
        for (u64 i = 0; i < m.size(); i++) {
            const bool inside = i >= from && i - from < data.size();
            const u8 want = inside ? data[i - from] : snapshot[i];
            if (m[i] != want)
                return ::testing::AssertionFailure()
                       << "byte " << i << " (block " << (i >> sim.ns[nsid - 1].shift) << ") is " << int(m[i])
                       << ", want " << int(want) << (inside ? " (written)" : " (neighbour)");
        }
        return ::testing::AssertionSuccess();
    }

    static std::vector<u8> pattern(u64 n, u32 seed)
    {
        std::vector<u8> v(n);
        for (u64 i = 0; i < n; i++) v[i] = u8(seed * 31 + i * 7 + (i >> 8));
        return v;
    }

    // Write `src` at `off` / read `len` bytes at `off`, recording the pieces.
    Status put(Extent &e, u64 off, const std::vector<u8> &src, std::vector<Piece> *pieces = nullptr)
    {
        return e.write(off, src.size(), [&](u8 *dst, u64 n, u64 pos) {
            if (pieces) pieces->push_back({n, pos});
            if (pos > src.size() || n > src.size() - pos) return false;
            std::memcpy(dst, src.data() + pos, n);
            return true;
        });
    }
    Status get(Extent &e, u64 off, u64 len, std::vector<u8> &out, std::vector<Piece> *pieces = nullptr)
    {
        out.assign(len, 0xee);
        return e.read(off, len, [&](const u8 *src, u64 n, u64 pos) {
            if (pieces) pieces->push_back({n, pos});
            if (pos > len || n > len - pos) return false;
            std::memcpy(out.data() + pos, src, n);
            return true;
        });
    }

    // The I/O commands logged from index `from` on with opcode `op`.
    std::vector<Sqe> io_commands(u8 op, usize from = 0)
    {
        std::vector<Sqe> v;
        for (usize i = from; i < sim.log.size(); i++)
            if (sim.log[i].opcode() == op && sim.log[i].nsid == ns.nsid) v.push_back(sim.log[i]);
        return v;
    }
    static u64 lba_of(const Sqe &e) { return u64(e.cdw11) << 32 | e.cdw10; }
    static u32 blocks_of(const Sqe &e) { return (e.cdw12 & 0xffff) + 1; }
};

// Pieces cover [0, len) in order, contiguously, none larger than a page.
void expect_pieces(const std::vector<Piece> &p, u64 len)
{
    u64 at = 0;
    for (const Piece &x : p) {
        EXPECT_EQ(x.pos, at);
        EXPECT_GT(x.n, 0u);
        EXPECT_LE(x.n, MEM_PAGE);
        at += x.n;
    }
    EXPECT_EQ(at, len);
}

TEST_F(ExtentTest, RoundTripTouchesOnlyTheRange)
{
    up();
    Extent e(*port, ns, FIRST, BLOCKS);
    ASSERT_TRUE(e.valid());
    EXPECT_EQ(e.bytes(), BLOCKS * 512);
    EXPECT_EQ(e.block_size(), 512u);
    EXPECT_EQ(port->chunk_bytes(), 128 * KiB);
    snap();

    const std::vector<u8> a = pattern(3 * 512, 1);
    std::vector<Piece> pw, pr;
    ASSERT_TRUE(put(e, 2 * 512, a, &pw).ok());
    expect_pieces(pw, a.size());
    EXPECT_TRUE(only_changed((FIRST + 2) * 512, a));
    std::vector<u8> back;
    ASSERT_TRUE(get(e, 2 * 512, a.size(), back, &pr).ok());
    expect_pieces(pr, a.size());
    EXPECT_EQ(back, a);

    // The first and the last block of the extent; the blocks just outside keep their bytes.
    const std::vector<u8> b = pattern(512, 2), c = pattern(512, 3);
    ASSERT_TRUE(put(e, 0, b).ok());
    ASSERT_TRUE(put(e, e.bytes() - 512, c).ok());
    std::vector<u8> want = snapshot;
    std::memcpy(want.data() + (FIRST + 2) * 512, a.data(), a.size());
    std::memcpy(want.data() + FIRST * 512, b.data(), 512);
    std::memcpy(want.data() + (FIRST + BLOCKS - 1) * 512, c.data(), 512);
    EXPECT_EQ(medium(), want);
    ASSERT_TRUE(get(e, e.bytes() - 512, 512, back).ok());
    EXPECT_EQ(back, c);
    // Reads saw the medium, not the bounce pages' last contents.
    ASSERT_TRUE(get(e, 512, 512, back).ok());
    EXPECT_EQ(std::memcmp(back.data(), snapshot.data() + (FIRST + 1) * 512, 512), 0);
    EXPECT_FALSE(sim.protocol_error);
}

TEST_F(ExtentTest, LargeTransferIsSeveralCommands)
{
    up();
    Extent e(*port, ns, FIRST, BLOCKS);
    snap();
    const std::vector<u8> all = pattern(e.bytes(), 4);   // 500 KiB: four commands of at most 128 KiB
    const usize log0 = sim.log.size();
    std::vector<Piece> pw;
    ASSERT_TRUE(put(e, 0, all, &pw).ok());
    expect_pieces(pw, all.size());
    EXPECT_TRUE(only_changed(FIRST * 512, all));
    const std::vector<Sqe> w = io_commands(NVM_WRITE, log0);
    ASSERT_EQ(w.size(), 4u);
    u64 lba = FIRST;
    for (const Sqe &s : w) {
        EXPECT_EQ(lba_of(s), lba);
        EXPECT_LE(u64(blocks_of(s)) * 512, 128 * KiB);
        lba += blocks_of(s);
    }
    EXPECT_EQ(lba, FIRST + BLOCKS);

    const usize log1 = sim.log.size();
    std::vector<u8> back;
    std::vector<Piece> pr;
    ASSERT_TRUE(get(e, 512, e.bytes() - 1024, back, &pr).ok());   // not starting at a chunk boundary
    expect_pieces(pr, e.bytes() - 1024);
    EXPECT_TRUE(std::equal(back.begin(), back.end(), all.begin() + 512));
    EXPECT_EQ(io_commands(NVM_READ, log1).size(), 4u);
    EXPECT_FALSE(sim.protocol_error);
}

TEST_F(ExtentTest, SmallMdtsCutsCommands)
{
    sim.mdts = 1;                                    // 8 KiB per command
    up();
    EXPECT_EQ(ctrl->info().max_transfer, 8 * KiB);
    EXPECT_EQ(port->chunk_bytes(), 8 * KiB);
    const i64 pages = dma.outstanding;
    Extent e(*port, ns, FIRST, BLOCKS);
    snap();
    const std::vector<u8> d = pattern(64 * KiB + 1536, 5);
    const usize log0 = sim.log.size();
    ASSERT_TRUE(put(e, 7 * 512, d).ok());
    EXPECT_TRUE(only_changed((FIRST + 7) * 512, d));
    const std::vector<Sqe> w = io_commands(NVM_WRITE, log0);
    ASSERT_EQ(w.size(), 9u);
    u64 lba = FIRST + 7;
    for (const Sqe &s : w) {
        EXPECT_EQ(lba_of(s), lba);
        EXPECT_LE(blocks_of(s), 16u);
        lba += blocks_of(s);
    }
    std::vector<u8> back;
    ASSERT_TRUE(get(e, 7 * 512, d.size(), back).ok());
    EXPECT_EQ(back, d);
    EXPECT_EQ(dma.outstanding, pages);               // no PRP list page left behind
    EXPECT_FALSE(sim.protocol_error);
}

TEST_F(ExtentTest, BadOffsetsRefusedBeforeAnyCommand)
{
    up();
    Extent e(*port, ns, FIRST, BLOCKS);
    snap();
    const u64 size = e.bytes();
    struct Case {
        u64 off, len;
    } cases[] = {
        {1, 512},                      // unaligned offset
        {0, 100},                      // unaligned length
        {512, 513},
        {size, 512},                   // just past the end
        {size - 512, 1024},            // straddles the end
        {size + 512, 0},               // starts past the end
        {0, size + 512},
        {~u64(0) & ~u64(511), 1024},   // off + len wraps
        {1024, ~u64(0) & ~u64(511)},   // len so large that off + len wraps
        {~u64(0) & ~u64(511), ~u64(0) & ~u64(511)},
    };
    const u32 before = sim.commands;
    for (const Case &c : cases) {
        bool called = false;
        EXPECT_EQ(e.read(c.off, c.len, [&](const u8 *, u64, u64) { return called = true; }).error(), Err::range)
            << c.off << "+" << c.len;
        EXPECT_EQ(e.write(c.off, c.len, [&](u8 *, u64, u64) { return called = true; }).error(), Err::range)
            << c.off << "+" << c.len;
        EXPECT_EQ(e.zero(c.off, c.len).error(), Err::range) << c.off << "+" << c.len;
        EXPECT_FALSE(called);
    }
    EXPECT_EQ(sim.commands, before);
    EXPECT_EQ(medium(), snapshot);
    EXPECT_EQ(port->failures, 0u);

    // Zero bytes at the end: nothing to do, no command.
    EXPECT_TRUE(e.read(size, 0, [](const u8 *, u64, u64) { return false; }).ok());
    EXPECT_EQ(sim.commands, before);

    // An extent that is not inside its namespace is refused whole.
    Extent outside(*port, ns, 4000, 200);
    EXPECT_FALSE(outside.valid());
    EXPECT_EQ(outside.read(0, 512, [](const u8 *, u64, u64) { return true; }).error(), Err::invalid);
    EXPECT_EQ(outside.write(0, 512, [](u8 *, u64, u64) { return true; }).error(), Err::invalid);
    EXPECT_EQ(outside.flush().error(), Err::invalid);
    Extent none;
    EXPECT_FALSE(none.valid());
    EXPECT_EQ(sim.commands, before);
}

TEST_F(ExtentTest, PieceCallbackFailing)
{
    sim.mdts = 1;                                    // 8 KiB per command: 16 blocks
    up();
    Extent e(*port, ns, FIRST, BLOCKS);
    snap();
    const std::vector<u8> d = pattern(24 * KiB, 6);

    // A write whose source fails in the second command's data: the first
    // command's blocks were written, the second command is never issued.
    const usize log0 = sim.log.size();
    Status s = e.write(0, d.size(), [&](u8 *dst, u64 n, u64 pos) {
        if (pos >= 8 * KiB + 4 * KiB) return false;
        std::memcpy(dst, d.data() + pos, n);
        return true;
    });
    EXPECT_EQ(s.error(), Err::invalid);
    ASSERT_EQ(io_commands(NVM_WRITE, log0).size(), 1u);
    EXPECT_TRUE(only_changed(FIRST * 512, std::vector<u8>(d.begin(), d.begin() + 8 * KiB)));

    // A read whose sink fails at the first piece: one command, then the call stops.
    const usize log1 = sim.log.size();
    u32 calls = 0;
    s = e.read(0, d.size(), [&](const u8 *, u64, u64) {
        calls++;
        return false;
    });
    EXPECT_EQ(s.error(), Err::invalid);
    EXPECT_EQ(calls, 1u);
    EXPECT_EQ(io_commands(NVM_READ, log1).size(), 1u);

    // The port is fine afterwards.
    EXPECT_EQ(port->resets, 0u);
    ASSERT_TRUE(put(e, 0, d).ok());
    std::vector<u8> back;
    ASSERT_TRUE(get(e, 0, d.size(), back).ok());
    EXPECT_EQ(back, d);
}

TEST_F(ExtentTest, FlushOnlyWithAVolatileCache)
{
    up();
    Extent e(*port, ns, FIRST, BLOCKS);
    EXPECT_TRUE(e.volatile_cache());
    const usize log0 = sim.log.size();
    ASSERT_TRUE(e.flush().ok());
    EXPECT_EQ(sim.flushes, 1u);
    ASSERT_EQ(io_commands(NVM_FLUSH, log0).size(), 1u);
    down();

    sim.vwc = false;
    up();
    Extent f(*port, ns, FIRST, BLOCKS);
    EXPECT_FALSE(f.volatile_cache());
    const u32 before = sim.commands;
    ASSERT_TRUE(f.flush().ok());                     // nothing to flush
    EXPECT_EQ(sim.commands, before);
    EXPECT_EQ(sim.flushes, 1u);
}

TEST_F(ExtentTest, WriteZeroes)
{
    up();
    Extent e(*port, ns, FIRST, BLOCKS);
    EXPECT_TRUE(e.can_zero());
    snap();
    const usize log0 = sim.log.size();
    ASSERT_TRUE(e.zero(3 * 512, 5 * 512).ok());
    EXPECT_TRUE(only_changed((FIRST + 3) * 512, std::vector<u8>(5 * 512, 0)));
    const std::vector<Sqe> z = io_commands(NVM_WRITE_ZEROES, log0);
    ASSERT_EQ(z.size(), 1u);
    EXPECT_EQ(lba_of(z[0]), FIRST + 3);
    EXPECT_EQ(blocks_of(z[0]), 5u);
    // The whole extent, the blocks just outside untouched.
    snap();
    ASSERT_TRUE(e.zero(0, e.bytes()).ok());
    EXPECT_TRUE(only_changed(FIRST * 512, std::vector<u8>(e.bytes(), 0)));
    ASSERT_TRUE(e.zero(0, 0).ok());
    down();

    sim.oncs = 0;
    up();
    Extent f(*port, ns, FIRST, BLOCKS);
    EXPECT_FALSE(f.can_zero());
    snap();
    const u32 before = sim.commands;
    EXPECT_EQ(f.zero(0, 512).error(), Err::unsupported);
    EXPECT_EQ(sim.commands, before);
    EXPECT_EQ(medium(), snapshot);
}

TEST_F(ExtentTest, WriteZeroesOverManyCommands)
{
    sim.ns.clear();
    sim.add_namespace(1, 70000);                     // more than one command's 65536 blocks
    up();
    Extent e(*port, ns, 1000, 68000);
    std::fill(medium().begin(), medium().end(), 0xab);
    const usize log0 = sim.log.size();
    ASSERT_TRUE(e.zero(512, 67000 * 512).ok());
    const std::vector<Sqe> z = io_commands(NVM_WRITE_ZEROES, log0);
    ASSERT_EQ(z.size(), 2u);
    EXPECT_EQ(lba_of(z[0]), 1001u);
    EXPECT_EQ(blocks_of(z[0]), 65536u);
    EXPECT_EQ(lba_of(z[1]), 1001u + 65536);
    EXPECT_EQ(blocks_of(z[1]), 67000u - 65536);
    const std::vector<u8> &m = medium();
    for (u64 b : {u64(1000), u64(1001), u64(1001 + 65535), u64(1001 + 65536), u64(68000), u64(68001)}) {
        const bool zeroed = b >= 1001 && b < 68001;
        EXPECT_EQ(m[b * 512], zeroed ? 0 : 0xab) << b;
        EXPECT_EQ(m[b * 512 + 511], zeroed ? 0 : 0xab) << b;
    }
}

TEST_F(ExtentTest, TimeoutResetsTheControllerAndTheNextCallWorks)
{
    up();
    Extent e(*port, ns, FIRST, BLOCKS);
    snap();
    const std::vector<u8> d = pattern(4096, 7);
    sim.drop = 1;                                    // the write's command is lost
    const u64 t0 = clock.t;
    EXPECT_EQ(put(e, 0, d).error(), Err::timeout);
    EXPECT_GE(clock.t - t0, opt.io_timeout_us);
    EXPECT_EQ(port->resets, 1u);
    EXPECT_FALSE(ctrl->needs_reset());
    EXPECT_TRUE(sim.has_sq(Controller::IO_QID));     // the queues were made again
    EXPECT_EQ(medium(), snapshot);                   // the lost command wrote nothing

    ASSERT_TRUE(put(e, 0, d).ok());
    EXPECT_TRUE(only_changed(FIRST * 512, d));
    std::vector<u8> back;
    ASSERT_TRUE(get(e, 0, d.size(), back).ok());
    EXPECT_EQ(back, d);

    // A long read (PRP lists), then a lost flush and a lost write zeroes.
    const i64 pages = dma.outstanding;
    sim.drop = 0;
    ASSERT_TRUE(get(e, 0, 256 * KiB, back).ok());
    EXPECT_EQ(dma.outstanding, pages);
    EXPECT_EQ(port->resets, 1u);
    sim.drop = 1;
    EXPECT_EQ(e.flush().error(), Err::timeout);
    EXPECT_EQ(port->resets, 2u);
    EXPECT_TRUE(e.flush().ok());
    sim.drop = 1;
    EXPECT_EQ(e.zero(0, 512).error(), Err::timeout);
    EXPECT_EQ(port->resets, 3u);
    EXPECT_TRUE(e.zero(0, 512).ok());
    EXPECT_EQ(port->media_errors, 0u);
    EXPECT_FALSE(sim.protocol_error);
}

TEST_F(ExtentTest, TimeoutInTheMiddleOfALongRead)
{
    up();
    Extent e(*port, ns, FIRST, BLOCKS);
    // The second of four read commands is lost; the controller comes back for the next call.
    u32 pieces = 0;
    bool armed = false;
    Status s = e.read(0, e.bytes(), [&](const u8 *, u64, u64 pos) {
        pieces++;
        if (!armed && pos + MEM_PAGE >= 128 * KiB) {
            armed = true;
            sim.drop = 1;
        }
        return true;
    });
    EXPECT_EQ(s.error(), Err::timeout);
    EXPECT_EQ(pieces, 128 * KiB / MEM_PAGE);          // the pieces of the first command only
    EXPECT_EQ(port->resets, 1u);
    std::vector<u8> back;
    ASSERT_TRUE(get(e, 0, e.bytes(), back).ok());
    EXPECT_EQ(std::memcmp(back.data(), medium().data() + FIRST * 512, e.bytes()), 0);
}

TEST_F(ExtentTest, FatalStatusResetsToo)
{
    up();
    Extent e(*port, ns, FIRST, BLOCKS);
    sim.fatal = true;
    std::vector<u8> back;
    EXPECT_EQ(get(e, 0, 512, back).error(), Err::timeout);
    EXPECT_EQ(port->resets, 1u);
    ASSERT_TRUE(get(e, 0, 512, back).ok());
}

// A reset that fails (the controller does not come ready) must not leave the
// port dead: a later call tries again, and works once the controller does.
TEST_F(ExtentTest, FailedResetIsRetriedByTheNextCall)
{
    up();
    Extent e(*port, ns, FIRST, BLOCKS);
    sim.drop = 1;
    sim.never_ready = true;
    std::vector<u8> back;
    EXPECT_EQ(get(e, 0, 512, back).error(), Err::timeout);
    EXPECT_EQ(port->resets, 1u);
    // Still not ready: refused as a timeout again (a reset attempted), nothing else.
    EXPECT_EQ(get(e, 0, 512, back).error(), Err::timeout);
    EXPECT_EQ(port->resets, 2u);
    sim.never_ready = false;
    ASSERT_TRUE(get(e, 0, 512, back).ok());
    EXPECT_EQ(port->resets, 3u);
    EXPECT_EQ(std::memcmp(back.data(), medium().data() + FIRST * 512, 512), 0);
    const std::vector<u8> d = pattern(2048, 8);
    ASSERT_TRUE(put(e, 1024, d).ok());
    EXPECT_TRUE(e.flush().ok());
}

// A reset that could not even disable the controller leaves the lost
// command's pages possibly still in its hands: a write must not stage its data
// in the bounce pages (a late DMA of the lost read would overwrite it, and the
// write would then put that on the medium once the reset works).
TEST_F(ExtentTest, NoBounceFillWhileTheControllerMayOwnThePages)
{
    up();
    Extent e(*port, ns, FIRST, BLOCKS);
    snap();
    sim.drop = 1;
    sim.stuck_ready = true;                          // CSTS.RDY never drops: the reset fails
    std::vector<u8> back;
    EXPECT_EQ(get(e, 0, 512, back).error(), Err::timeout);
    EXPECT_TRUE(ctrl->needs_reset());
    bool called = false;
    EXPECT_EQ(e.write(0, 512, [&](u8 *, u64, u64) { return called = true; }).error(), Err::timeout);
    EXPECT_FALSE(called);
    EXPECT_EQ(port->resets, 2u);
    EXPECT_EQ(medium(), snapshot);

    sim.stuck_ready = false;
    const std::vector<u8> d = pattern(1024, 14);
    ASSERT_TRUE(put(e, 512, d).ok());
    EXPECT_EQ(port->resets, 3u);
    EXPECT_TRUE(only_changed((FIRST + 1) * 512, d));
}

TEST_F(ExtentTest, MediaErrorIsInvalidAndCounted)
{
    sim.media_error_lba = FIRST + 9;
    up();
    Extent e(*port, ns, FIRST, BLOCKS);
    snap();
    std::vector<u8> back;
    EXPECT_EQ(get(e, 8 * 512, 2 * 512, back).error(), Err::invalid);
    EXPECT_EQ(port->media_errors, 1u);
    EXPECT_EQ(port->failures, 0u);
    EXPECT_EQ(port->resets, 0u);
    EXPECT_EQ(put(e, 9 * 512, pattern(512, 9)).error(), Err::invalid);
    EXPECT_EQ(port->media_errors, 2u);
    EXPECT_FALSE(ctrl->needs_reset());
    // The blocks around it are fine.
    ASSERT_TRUE(get(e, 0, 9 * 512, back).ok());
    const std::vector<u8> d = pattern(512, 10);
    ASSERT_TRUE(put(e, 10 * 512, d).ok());
    EXPECT_TRUE(only_changed((FIRST + 10) * 512, d));
    EXPECT_EQ(port->media_errors, 2u);
}

TEST_F(ExtentTest, FourKiBBlocks)
{
    sim.mdts = 1;                                    // 8 KiB: two blocks per command
    up(2);
    EXPECT_EQ(ns.block_size, 4096u);
    Extent e(*port, ns, 10, 100);
    ASSERT_TRUE(e.valid());
    EXPECT_EQ(e.bytes(), 100u * 4096);
    EXPECT_EQ(e.block_size(), 4096u);
    snap(2);
    const std::vector<u8> d = pattern(5 * 4096, 11);
    const usize log0 = sim.log.size();
    std::vector<Piece> pw;
    ASSERT_TRUE(put(e, 4096, d, &pw).ok());
    expect_pieces(pw, d.size());
    EXPECT_TRUE(only_changed(11 * 4096, d, 2));
    const std::vector<Sqe> w = io_commands(NVM_WRITE, log0);
    ASSERT_EQ(w.size(), 3u);
    EXPECT_EQ(lba_of(w[0]), 11u);
    EXPECT_EQ(blocks_of(w[0]), 2u);
    EXPECT_EQ(lba_of(w[2]), 15u);
    EXPECT_EQ(blocks_of(w[2]), 1u);
    std::vector<u8> back;
    ASSERT_TRUE(get(e, 4096, d.size(), back).ok());
    EXPECT_EQ(back, d);

    // 512-byte aligned is not enough.
    const u32 before = sim.commands;
    EXPECT_EQ(get(e, 512, 4096, back).error(), Err::range);
    EXPECT_EQ(get(e, 0, 512, back).error(), Err::range);
    EXPECT_EQ(e.zero(4096, 2048).error(), Err::range);
    EXPECT_EQ(sim.commands, before);

    ASSERT_TRUE(e.zero(99 * 4096, 4096).ok());
    std::vector<u8> zeros(4096, 0);
    EXPECT_EQ(std::memcmp(medium(2).data() + 109 * 4096, zeros.data(), 4096), 0);
    EXPECT_NE(medium(2)[110 * 4096], 0);             // the next block is the namespace's, untouched
}

// Blocks larger than a page: pieces stay page-sized, commands whole blocks.
TEST_F(ExtentTest, EightKiBBlocks)
{
    sim.ns.clear();
    sim.add_namespace(1, 512, 13);                   // 4 MiB of 8 KiB blocks
    for (u64 i = 0; i < medium().size(); i++) medium()[i] = u8(i * 5 + (i >> 13));
    sim.mdts = 2;                                    // 16 KiB: two blocks per command
    up();
    EXPECT_EQ(ns.block_size, 8192u);
    Extent e(*port, ns, 7, 100);
    snap();
    const std::vector<u8> d = pattern(5 * 8192, 15);
    const usize log0 = sim.log.size();
    std::vector<Piece> pw, pr;
    ASSERT_TRUE(put(e, 8192, d, &pw).ok());
    expect_pieces(pw, d.size());
    EXPECT_TRUE(only_changed(8 * 8192, d));
    const std::vector<Sqe> w = io_commands(NVM_WRITE, log0);
    ASSERT_EQ(w.size(), 3u);
    EXPECT_EQ(lba_of(w[1]), 10u);
    EXPECT_EQ(blocks_of(w[1]), 2u);
    std::vector<u8> back;
    ASSERT_TRUE(get(e, 8192, d.size(), back, &pr).ok());
    expect_pieces(pr, d.size());
    EXPECT_EQ(back, d);
    EXPECT_EQ(get(e, 4096, 8192, back).error(), Err::range);
    down();

    sim.mdts = 1;                                    // 8 KiB per command: exactly one block
    up();
    Extent f(*port, ns, 7, 100);
    ASSERT_TRUE(get(f, 0, 3 * 8192, back).ok());
    EXPECT_EQ(std::memcmp(back.data(), medium().data() + 7 * 8192, 3 * 8192), 0);
}

TEST_F(ExtentTest, NoDmaPageLeaked)
{
    const i64 start = dma.outstanding;
    up();
    {
        Extent e(*port, ns, FIRST, BLOCKS);
        std::vector<u8> back;
        ASSERT_TRUE(put(e, 0, pattern(e.bytes(), 12)).ok());
        ASSERT_TRUE(get(e, 0, e.bytes(), back).ok());
        sim.drop = 1;
        EXPECT_EQ(get(e, 0, 64 * KiB, back).error(), Err::timeout);   // a PRP list page with the lost command
        ASSERT_TRUE(get(e, 0, 64 * KiB, back).ok());
        ASSERT_TRUE(e.flush().ok());
    }
    down();
    EXPECT_EQ(dma.outstanding, start);

    // Bounce pages that cannot all be had: none kept.
    ctrl = new Controller(sim, dma, clock, opt);
    ASSERT_TRUE(ctrl->enable().ok());
    ASSERT_TRUE(ctrl->create_io_queues().ok());
    const i64 with_queues = dma.outstanding;
    port = new Port(*ctrl, dma);
    dma.fail_after_ = 5;
    EXPECT_EQ(port->init().error(), Err::no_memory);
    dma.fail_after_ = -1;
    EXPECT_EQ(dma.outstanding, with_queues);
    EXPECT_EQ(port->chunk_bytes(), 0u);
    down();
    EXPECT_EQ(dma.outstanding, start);
}

} // namespace
} // namespace nvme

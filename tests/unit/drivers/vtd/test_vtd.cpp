// drivers/vtd/ against the simulated remapping unit of sim_unit.hpp: probe,
// enable by registers and with the invalidation queue, every bounded wait,
// queue errors, write-buffer flushes, fault draining, the root and context
// entry layouts, and DMA translated through tables built by Keel's own
// page-table engine (default deny).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "drivers/vtd/vtd.hpp"
#include "kernel/mem/ptab.hpp"
#include "tests/unit/drivers/vtd/sim_unit.hpp"

namespace vtd {
namespace {

using sim::Arena;
using sim::FakeClock;
using sim::SimUnit;
using DmaTable = PageTable<DmarFormat, Arena>;

constexpr Attr RW{Perm{.r = true, .w = true}};
constexpr Attr RO{Perm{.r = true}};

class VtdTest : public ::testing::Test {
protected:
    Arena mem;
    SimUnit sim{mem};
    FakeClock clock;
    Unit unit{sim, clock};
    Page root = mem.alloc();

    void TearDown() override { EXPECT_FALSE(sim.protocol_error) << sim.protocol_what; }

    // Enable with the queue (when `queued`) after a probe.
    void bring_up(bool queued)
    {
        ASSERT_TRUE(unit.probe().ok()) << unit.why();
        Page q, st;
        if (queued) q = mem.alloc(), st = mem.alloc();
        status = st;
        ASSERT_TRUE(unit.enable(root.pa, q, st).ok()) << unit.why();
        ASSERT_EQ(unit.queued(), queued);
    }
    u32 status_dword() const { return *reinterpret_cast<const u32 *>(status.va); }
    Page status;

    // Register writes to `off`, in order.
    std::vector<u64> writes_to(u32 off) const
    {
        std::vector<u64> v;
        for (auto &w : sim.writes)
            if (w.off == off) v.push_back(w.v);
        return v;
    }
    // Register offsets written, in order.
    std::vector<u32> offsets() const
    {
        std::vector<u32> v;
        for (auto &w : sim.writes) v.push_back(w.off);
        return v;
    }
    // A bounded wait: it ran out of time, ~100 ms of it, not much more.
    void expect_timed_out(Status s, u64 t0, const char *why)
    {
        EXPECT_EQ(s.error(), Err::timeout);
        EXPECT_STREQ(unit.why(), why);
        EXPECT_GE(clock.t - t0, 100'000u);
        EXPECT_LE(clock.t - t0, 101'000u);
    }
};

// ---- probe ----

TEST_F(VtdTest, ProbeReadsTheCapabilities)
{
    sim.nd = 3;
    sim.nfr = 5;
    sim.fro = 0x420;
    sim.iro = 0x310;
    sim.caching_mode = true;
    sim.rwbf = true;
    ASSERT_TRUE(unit.probe().ok());
    const Caps &c = unit.caps();
    EXPECT_EQ(unit.version(), 0x10u);
    EXPECT_EQ(c.domains(), 1024u);
    EXPECT_EQ(c.nfr(), 5u);
    EXPECT_EQ(c.fro(), 0x420u);
    EXPECT_EQ(c.iro(), 0x310u);
    EXPECT_EQ(c.mgaw(), 48u);
    EXPECT_TRUE(c.four_level());
    EXPECT_TRUE(c.qi());
    EXPECT_TRUE(c.ir());
    EXPECT_TRUE(c.caching_mode());
    EXPECT_TRUE(c.rwbf());
    EXPECT_FALSE(c.coherent());
}

TEST_F(VtdTest, ProbeRefusesAllOnes)
{
    sim.all_ones = true;
    EXPECT_EQ(unit.probe().error(), Err::invalid);
    EXPECT_STREQ(unit.why(), "registers read as all ones");
}

TEST_F(VtdTest, ProbeTakesA3LevelUnitAndRefusesOthers)
{
    sim.sagaw = 0x2;   // 39-bit, 3-level only (QEMU's default intel-iommu)
    sim.mgaw = 39;
    ASSERT_TRUE(unit.probe().ok());
    EXPECT_TRUE(unit.caps().three_level());
    EXPECT_FALSE(unit.caps().four_level());
    EXPECT_EQ(unit.caps().mgaw(), 39u);
    sim.sagaw = 0x8;   // 57-bit, 5-level only
    EXPECT_EQ(unit.probe().error(), Err::unsupported);
    EXPECT_STREQ(unit.why(), "no 4-level (48-bit) or 3-level (39-bit) second-level tables (SAGAW)");
}

// ---- enable ----

TEST_F(VtdTest, EnableByRegisters)
{
    sim.qi = false;
    ASSERT_TRUE(unit.probe().ok());
    Page q = mem.alloc(), st = mem.alloc();   // offered, but the unit has no queue
    ASSERT_TRUE(unit.enable(root.pa, q, st).ok()) << unit.why();
    EXPECT_FALSE(unit.queued());
    const u32 iotlb = sim.iro + 8;
    EXPECT_EQ(offsets(), (std::vector<u32>{FECTL, RTADDR, GCMD, CCMD, iotlb, GCMD}));
    EXPECT_EQ(writes_to(FECTL), std::vector<u64>{FECTL_IM});
    EXPECT_EQ(writes_to(RTADDR), std::vector<u64>{root.pa.raw()});   // TTM = 00
    EXPECT_EQ(writes_to(GCMD), (std::vector<u64>{GCMD_SRTP, GCMD_TE}));
    EXPECT_EQ(writes_to(CCMD), std::vector<u64>{CCMD_ICC | CCMD_GLOBAL});
    EXPECT_EQ(writes_to(iotlb), std::vector<u64>{IOTLB_IVT | IOTLB_GLOBAL | IOTLB_DR | IOTLB_DW});
    EXPECT_EQ(sim.root(), root.pa.raw());
    EXPECT_TRUE(sim.translating());
    EXPECT_TRUE(sim.descs.empty());
    EXPECT_EQ(sim.fault_events, 0u);

    // Afterwards, invalidations through the registers too.
    ASSERT_TRUE(unit.invalidate_iotlb(7).ok());
    EXPECT_EQ(writes_to(iotlb).back(), IOTLB_IVT | IOTLB_DOMAIN | IOTLB_DR | IOTLB_DW | u64(7) << 32);
    ASSERT_TRUE(unit.invalidate_context().ok());
    EXPECT_EQ(sim.ccmd_invalidations, 2u);
    EXPECT_EQ(sim.iotlb_invalidations, 2u);
    // The interrupt entry cache has no register interface.
    EXPECT_EQ(unit.invalidate_interrupt_cache().error(), Err::unsupported);
}

TEST_F(VtdTest, EnableWithTheInvalidationQueue)
{
    ASSERT_TRUE(unit.probe().ok());
    Page q = mem.alloc(), st = mem.alloc();
    status = st;
    ASSERT_TRUE(unit.enable(root.pa, q, st).ok()) << unit.why();
    EXPECT_TRUE(unit.queued());
    EXPECT_EQ(offsets(), (std::vector<u32>{FECTL, RTADDR, GCMD, IQT, IQA, GCMD, IQT, IQT, GCMD}));
    EXPECT_EQ(writes_to(IQA), std::vector<u64>{q.pa.raw()});   // QS = 0, DW = 0 (128-bit)
    EXPECT_EQ(writes_to(IQT), (std::vector<u64>{0, 2 << 4, 4 << 4}));
    EXPECT_EQ(writes_to(GCMD), (std::vector<u64>{GCMD_SRTP, GCMD_QIE, GCMD_QIE | GCMD_TE}));
    EXPECT_EQ(sim.ccmd_invalidations, 0u);
    EXPECT_EQ(sim.iotlb_invalidations, 0u);
    ASSERT_EQ(sim.descs.size(), 4u);
    // Context cache, global; a wait with status write 1 to the status page.
    EXPECT_EQ(sim.descs[0].lo, QI_CONTEXT | QI_G_GLOBAL);
    EXPECT_EQ(sim.descs[1].lo, QI_WAIT | QI_WAIT_SW | u64(1) << 32);
    EXPECT_EQ(sim.descs[1].hi, st.pa.raw());
    // IOTLB, global, draining reads and writes; a wait with 2.
    EXPECT_EQ(sim.descs[2].lo, QI_IOTLB | QI_G_GLOBAL | QI_IOTLB_DR | QI_IOTLB_DW);
    EXPECT_EQ(sim.descs[3].lo, QI_WAIT | QI_WAIT_SW | u64(2) << 32);
    EXPECT_EQ(status_dword(), 2u);
    EXPECT_TRUE(sim.translating());

    // Every invalidation through the queue from now on, each with the next sequence number.
    ASSERT_TRUE(unit.invalidate_iotlb(0x1234).ok());
    ASSERT_TRUE(unit.invalidate_context().ok());
    ASSERT_TRUE(unit.invalidate_interrupt_cache().ok());
    ASSERT_EQ(sim.descs.size(), 10u);
    EXPECT_EQ(sim.descs[4].lo, QI_IOTLB | QI_G_DOMAIN | QI_IOTLB_DR | QI_IOTLB_DW | u64(0x1234) << 16);
    EXPECT_EQ(sim.descs[5].lo >> 32, 3u);
    EXPECT_EQ(sim.descs[6].lo, QI_CONTEXT | QI_G_GLOBAL);
    EXPECT_EQ(sim.descs[7].lo >> 32, 4u);
    EXPECT_EQ(sim.descs[8].lo, QI_IEC);   // global
    EXPECT_EQ(sim.descs[9].lo >> 32, 5u);
    EXPECT_EQ(status_dword(), 5u);
    EXPECT_EQ(sim.ccmd_invalidations, 0u);
    EXPECT_EQ(sim.iotlb_invalidations, 0u);
}

TEST_F(VtdTest, TheQueueWrapsAround)
{
    bring_up(true);
    // Two descriptors per invalidation: 300 of them go round the 256 slots twice.
    for (u32 i = 0; i < 300; i++) ASSERT_TRUE(unit.invalidate_iotlb(u16(i)).ok()) << i << ": " << unit.why();
    EXPECT_EQ(sim.descs.size(), 4u + 600u);
    EXPECT_EQ(status_dword(), 302u);
    EXPECT_EQ(sim.iqh(), u64((4 + 600) % QI_ENTRIES) << 4);
}

TEST_F(VtdTest, DisableTurnsTranslationOffAndKeepsTheQueue)
{
    bring_up(true);
    ASSERT_TRUE(unit.disable().ok());
    EXPECT_FALSE(sim.translating());
    EXPECT_EQ(writes_to(GCMD).back(), GCMD_QIE);
    EXPECT_TRUE(sim.gsts() & GCMD_QIE);
}

// ---- bounded waits ----

TEST_F(VtdTest, RootTablePointerNeverLatched)
{
    sim.stuck_srtp = true;
    ASSERT_TRUE(unit.probe().ok());
    const u64 t0 = clock.t;
    expect_timed_out(unit.enable(root.pa), t0, "root table pointer not latched");
    EXPECT_FALSE(sim.translating());
}

TEST_F(VtdTest, QueueEnableNeverAcknowledged)
{
    sim.stuck_qie = true;
    ASSERT_TRUE(unit.probe().ok());
    const u64 t0 = clock.t;
    expect_timed_out(unit.enable(root.pa, mem.alloc(), mem.alloc()), t0,
                     "queued invalidation enable not acknowledged");
    EXPECT_FALSE(unit.queued());
}

TEST_F(VtdTest, ContextInvalidationByRegisterNeverCompletes)
{
    sim.stuck_ccmd = true;
    ASSERT_TRUE(unit.probe().ok());
    const u64 t0 = clock.t;
    expect_timed_out(unit.enable(root.pa), t0, "context cache invalidation did not complete");
    EXPECT_FALSE(sim.translating());
}

TEST_F(VtdTest, GlobalIotlbInvalidationByRegisterNeverCompletes)
{
    sim.stuck_iotlb = true;
    ASSERT_TRUE(unit.probe().ok());
    const u64 t0 = clock.t;
    expect_timed_out(unit.enable(root.pa), t0, "global IOTLB invalidation did not complete");
}

TEST_F(VtdTest, DomainIotlbInvalidationByRegisterNeverCompletes)
{
    bring_up(false);
    sim.stuck_iotlb = true;
    const u64 t0 = clock.t;
    expect_timed_out(unit.invalidate_iotlb(1), t0, "IOTLB invalidation did not complete");
}

TEST_F(VtdTest, TranslationEnableNeverAcknowledged)
{
    sim.stuck_te = true;
    ASSERT_TRUE(unit.probe().ok());
    const u64 t0 = clock.t;
    expect_timed_out(unit.enable(root.pa), t0, "translation enable not acknowledged");
}

TEST_F(VtdTest, TranslationDisableNeverAcknowledged)
{
    bring_up(false);
    sim.stuck_te = true;
    const u64 t0 = clock.t;
    expect_timed_out(unit.disable(), t0, "translation disable not acknowledged");
}

TEST_F(VtdTest, QueueNeverRuns)
{
    sim.stuck_queue = true;
    ASSERT_TRUE(unit.probe().ok());
    const u64 t0 = clock.t;
    expect_timed_out(unit.enable(root.pa, mem.alloc(), mem.alloc()), t0,
                     "context cache invalidation did not complete");
}

TEST_F(VtdTest, EachQueuedInvalidationIsBounded)
{
    bring_up(true);
    sim.stuck_queue = true;
    u64 t0 = clock.t;
    expect_timed_out(unit.invalidate_iotlb(1), t0, "IOTLB invalidation did not complete");
    t0 = clock.t;
    expect_timed_out(unit.invalidate_context(), t0, "context cache invalidation did not complete");
    t0 = clock.t;
    expect_timed_out(unit.invalidate_interrupt_cache(), t0, "interrupt entry cache invalidation did not complete");
}

TEST_F(VtdTest, WriteBufferFlushNeverCompletes)
{
    sim.rwbf = true;
    bring_up(false);
    sim.stuck_wbf = true;
    const u64 t0 = clock.t;
    expect_timed_out(unit.invalidate_context(), t0, "write buffer flush did not complete");
}

// ---- queue errors ----

TEST_F(VtdTest, AnInvalidDescriptorIsReported)
{
    bring_up(true);
    sim.refuse = {QI_IOTLB};
    EXPECT_EQ(unit.invalidate_iotlb(1).error(), Err::invalid);
    EXPECT_STREQ(unit.why(), "invalidation queue error");
}

TEST_F(VtdTest, TheQueueGoesOnAfterAnInvalidDescriptor)
{
    // The unit stops at the bad descriptor (IQH stays on it) and resumes there
    // once IQE is cleared: left in place, it would fail every later batch.
    bring_up(true);
    sim.refuse = {QI_IOTLB};
    EXPECT_EQ(unit.invalidate_iotlb(1).error(), Err::invalid);
    EXPECT_FALSE(sim.read32(FSTS) & FSTS_IQE);
    ASSERT_TRUE(unit.invalidate_context().ok()) << unit.why();
    EXPECT_EQ(sim.descs.back().lo, QI_WAIT | QI_WAIT_SW | u64(4) << 32);
    EXPECT_EQ(status_dword(), 4u);
    sim.refuse.clear();
    ASSERT_TRUE(unit.invalidate_iotlb(1).ok()) << unit.why();
    EXPECT_EQ(status_dword(), 5u);
}

TEST_F(VtdTest, NoInterruptEntryCacheWithoutInterruptRemapping)
{
    // The descriptor type is invalid on a unit without ECAP.IR: refused before the queue.
    sim.ir = false;
    bring_up(true);
    const size_t before = sim.descs.size();
    EXPECT_EQ(unit.invalidate_interrupt_cache().error(), Err::unsupported);
    EXPECT_STREQ(unit.why(), "no interrupt remapping on this unit");
    EXPECT_EQ(sim.descs.size(), before);
    EXPECT_FALSE(sim.read32(FSTS) & FSTS_IQE);
}

// ---- write-buffer flush ----

TEST_F(VtdTest, WriteBufferFlushedOnlyWithRwbf)
{
    bring_up(false);
    ASSERT_TRUE(unit.flush_write_buffer().ok());
    ASSERT_TRUE(unit.invalidate_context().ok());
    ASSERT_TRUE(unit.invalidate_iotlb(1).ok());
    EXPECT_EQ(sim.wbf_flushes, 0u);
    for (u64 v : writes_to(GCMD)) EXPECT_FALSE(v & GCMD_WBF);
}

TEST_F(VtdTest, WriteBufferFlushedBeforeEachInvalidationWithRwbf)
{
    sim.rwbf = true;
    bring_up(true);
    EXPECT_EQ(sim.wbf_flushes, 1u);   // before the first context invalidation
    ASSERT_TRUE(unit.invalidate_context().ok());
    ASSERT_TRUE(unit.invalidate_iotlb(1).ok());
    EXPECT_EQ(sim.wbf_flushes, 3u);
    EXPECT_EQ(writes_to(GCMD).back(), GCMD_QIE | GCMD_TE | GCMD_WBF);   // the states kept
    EXPECT_FALSE(sim.gsts() & GCMD_WBF);
}

// ---- faults ----

TEST_F(VtdTest, FaultsDrainedAndCleared)
{
    bring_up(true);
    ASSERT_TRUE(sim.record_fault(0x0210, 0x917123, false, 1));
    ASSERT_TRUE(sim.record_fault(0x0300, 0xabc000, true, 2));
    ASSERT_TRUE(sim.record_fault(0xfff8, 0x1000, true, 5));
    EXPECT_EQ(sim.fault_events, 0u);   // the fault event interrupt is masked
    Fault f;
    bool over = true;
    ASSERT_TRUE(unit.next_fault(f, over));
    EXPECT_FALSE(over);
    EXPECT_EQ(f.sid, 0x0210);
    EXPECT_EQ(f.addr, 0x917000u);
    EXPECT_FALSE(f.read);
    EXPECT_EQ(f.reason, 1);
    EXPECT_STREQ(reason_text(f.reason), "root entry not present");
    ASSERT_TRUE(unit.next_fault(f, over));
    EXPECT_EQ(f.sid, 0x0300);
    EXPECT_EQ(f.addr, 0xabc000u);
    EXPECT_TRUE(f.read);
    EXPECT_STREQ(reason_text(f.reason), "context entry not present");
    ASSERT_TRUE(unit.next_fault(f, over));
    EXPECT_EQ(f.sid, 0xfff8);
    EXPECT_EQ(f.reason, 5);
    EXPECT_FALSE(unit.next_fault(f, over));
    EXPECT_FALSE(over);
    EXPECT_EQ(sim.pending_faults(), 0u);
    EXPECT_FALSE(sim.read32(FSTS) & FSTS_PPF);
}

TEST_F(VtdTest, FaultsTakenInRoundRobinOrderAndOverflowReportedOnce)
{
    sim.nfr = 4;
    bring_up(false);
    for (u16 i = 0; i < 4; i++) ASSERT_TRUE(sim.record_fault(i, 0x1000 * i, true, 2));
    EXPECT_FALSE(sim.record_fault(4, 0x4000, true, 2));   // full: overflow
    EXPECT_FALSE(sim.record_fault(5, 0x5000, true, 2));   // dropped while PFO is set
    Fault f;
    bool over = false;
    ASSERT_TRUE(unit.next_fault(f, over));
    EXPECT_TRUE(over);
    EXPECT_EQ(f.sid, 0);
    ASSERT_TRUE(unit.next_fault(f, over));
    EXPECT_FALSE(over);   // reported once
    EXPECT_EQ(f.sid, 1);
    // The hardware goes on at records 0 and 1 while 2 and 3 are still pending.
    ASSERT_TRUE(sim.record_fault(6, 0x6000, true, 2));
    ASSERT_TRUE(sim.record_fault(7, 0x7000, true, 2));
    std::vector<u16> order;
    while (unit.next_fault(f, over)) {
        order.push_back(f.sid);
        EXPECT_FALSE(over);
    }
    EXPECT_EQ(order, (std::vector<u16>{2, 3, 6, 7}));
    EXPECT_EQ(sim.pending_faults(), 0u);
    EXPECT_EQ(sim.read32(FSTS) & (FSTS_PFO | FSTS_PPF), 0u);
}

// ---- entry layouts (9.1, 9.3) ----

TEST(VtdEntries, RootEntry)
{
    const Entry e = root_entry(PhysAddr(0x0000'0123'4567'8000ull));
    EXPECT_EQ(e.lo, 0x0000'0123'4567'8001ull);   // P (bit 0), CTP (63:12)
    EXPECT_EQ(e.hi, 0u);                          // legacy mode: the upper half reserved
}

TEST(VtdEntries, ContextEntry)
{
    const Entry e = context_entry(PhysAddr(0x0000'00ab'cdef'0000ull), 0x1234);
    EXPECT_EQ(e.lo & 1, 1u);                      // P
    EXPECT_EQ(e.lo >> 1 & 1, 0u);                 // FPD: faults recorded
    EXPECT_EQ(e.lo >> 2 & 3, 0u);                 // TT = 00: untranslated requests through second level
    EXPECT_EQ(e.lo & 0xff0, 0u);                  // reserved
    EXPECT_EQ(e.lo & ~0xfffull, 0x0000'00ab'cdef'0000ull);   // SLPTPTR
    EXPECT_EQ(e.hi & 7, 2u);                      // AW = 010: 48 bits, 4 levels
    EXPECT_EQ(e.hi >> 7 & 1, 0u);                 // reserved
    EXPECT_EQ(e.hi >> 8 & 0xffff, 0x1234u);       // DID: bits 87:72
    EXPECT_EQ(e.hi >> 24, 0u);                    // reserved
    EXPECT_EQ(context_entry(PhysAddr(0x5000), 0xffff).hi, 0xffff02ull);
    EXPECT_EQ(context_entry(PhysAddr(0x5000), 0xffff, 3).hi, 0xffff01ull);   // AW = 001: 39 bits, 3 levels
    EXPECT_EQ(devfn(3, 2), 0x1a);
    EXPECT_EQ(devfn(31, 7), 0xff);
}

// ---- translation through tables built by Keel's page-table engine ----

class VtdTranslate : public VtdTest {
protected:
    static constexpr u16 DID = 1;
    static constexpr u8 BUS = 2, DEV = 3, FN = 0;
    DmaTable pt{mem, 1};
    Page ctx = mem.alloc();

    void SetUp() override
    {
        ASSERT_TRUE(pt.init().ok());
        mem.ptr<Entry>(root.pa)[BUS] = root_entry(ctx.pa);
        mem.ptr<Entry>(ctx.pa)[devfn(DEV, FN)] = context_entry(pt.root(), DID);
    }
    SimUnit::Xlate dma(u64 iova, bool write, u8 bus = BUS, u8 df = devfn(DEV, FN))
    {
        return sim.dma(bus, df, iova, write);
    }
    void expect_fault(SimUnit::Xlate x, u8 reason)
    {
        EXPECT_FALSE(x.ok);
        EXPECT_EQ(x.reason, reason) << reason_text(x.reason);
    }
};

// A unit that walks 3 levels is given the 4-level domain's first level-3 table (as
// kernel/hv/iommu does): the same mappings below 512 GiB, nothing above.
TEST_F(VtdTest, ThreeLevelUnitWalksTheFirstLevel3Table)
{
    constexpr u16 DID = 3;
    constexpr u8 BUS = 1, DEV = 2;
    sim.sagaw = 0x2;
    sim.mgaw = 39;
    DmaTable pt{mem, 1};
    ASSERT_TRUE(pt.init().ok());
    ASSERT_TRUE(pt.map(0x20'0000, 0x5000'0000, PAGE_SIZE, RW).ok());
    ASSERT_TRUE(pt.map(0x7f'ffff'f000, 0x6000'0000, PAGE_SIZE, RW).ok());   // the last page below 512 GiB
    ASSERT_TRUE(pt.map(0x80'0000'0000, 0x7000'0000, PAGE_SIZE, RW).ok());   // 512 GiB: out of its reach
    Page ctx = mem.alloc();
    mem.ptr<Entry>(root.pa)[BUS] = root_entry(ctx.pa);
    mem.ptr<Entry>(ctx.pa)[devfn(DEV, 0)] = context_entry(*pt.table_at(0, 3), DID, 3);
    bring_up(true);
    auto x = sim.dma(BUS, devfn(DEV, 0), 0x20'0010, true);
    EXPECT_TRUE(x.ok);
    EXPECT_EQ(x.pa, 0x5000'0010u);
    x = sim.dma(BUS, devfn(DEV, 0), 0x7f'ffff'f008, false);
    EXPECT_TRUE(x.ok);
    EXPECT_EQ(x.pa, 0x6000'0008u);
    x = sim.dma(BUS, devfn(DEV, 0), 0x80'0000'0000, false);
    EXPECT_FALSE(x.ok);
    EXPECT_EQ(x.reason, sim::FR_ADDRESS_WIDTH);
    x = sim.dma(BUS, devfn(DEV, 0), 0x30'0000, false);
    EXPECT_FALSE(x.ok);
    EXPECT_EQ(x.reason, sim::FR_READ);
    // The same context entry with AW = 48 bits: the unit does not walk 4 levels.
    mem.ptr<Entry>(ctx.pa)[devfn(DEV, 1)] = context_entry(pt.root(), DID, 4);
    x = sim.dma(BUS, devfn(DEV, 1), 0x20'0010, true);
    EXPECT_FALSE(x.ok);
    EXPECT_EQ(x.reason, sim::FR_INVALID_CONTEXT);
}

TEST_F(VtdTranslate, MappedPagesTranslateAndNothingElse)
{
    ASSERT_TRUE(pt.map(0x20'0000, 0x5000'0000, PAGE_SIZE, RW).ok());
    ASSERT_TRUE(pt.map(0x20'1000, 0x6000'0000, PAGE_SIZE, RO).ok());
    ASSERT_TRUE(pt.map(0x7f'ffff'f000, 0x7000'0000, PAGE_SIZE, RW).ok());
    bring_up(true);

    auto x = dma(0x20'0123, false);
    EXPECT_TRUE(x.ok);
    EXPECT_EQ(x.pa, 0x5000'0123u);
    x = dma(0x20'0ff8, true);
    EXPECT_TRUE(x.ok);
    EXPECT_EQ(x.pa, 0x5000'0ff8u);
    x = dma(0x7f'ffff'f010, true);
    EXPECT_TRUE(x.ok);
    EXPECT_EQ(x.pa, 0x7000'0010u);
    // Read-only: reads only.
    x = dma(0x20'1008, false);
    EXPECT_TRUE(x.ok);
    EXPECT_EQ(x.pa, 0x6000'0008u);
    expect_fault(dma(0x20'1008, true), sim::FR_WRITE);
    // Unmapped neighbours, and far away: denied.
    expect_fault(dma(0x20'2000, false), sim::FR_READ);
    expect_fault(dma(0x1f'f000, true), sim::FR_WRITE);
    expect_fault(dma(0x4000'0000, false), sim::FR_READ);
    expect_fault(dma(0, false), sim::FR_READ);
    // Beyond the domain's 48 bits.
    expect_fault(dma(1ull << 48, false), sim::FR_ADDRESS_WIDTH);
    // Another function of the same device, another device on the bus, another bus.
    expect_fault(dma(0x20'0000, false, BUS, devfn(DEV, 1)), sim::FR_CONTEXT_NOT_PRESENT);
    expect_fault(dma(0x20'0000, true, BUS, devfn(4, 0)), sim::FR_CONTEXT_NOT_PRESENT);
    expect_fault(dma(0x20'0000, true, BUS + 1, devfn(DEV, FN)), sim::FR_ROOT_NOT_PRESENT);
    expect_fault(dma(0x20'0000, true, 0, 0), sim::FR_ROOT_NOT_PRESENT);

    // The faults as Keel drains them.
    std::vector<std::string> seen;
    Fault f;
    bool over = false;
    u32 overflows = 0;
    while (unit.next_fault(f, over)) {
        overflows += over;
        char buf[128];
        std::snprintf(buf, sizeof buf, "%04x %s %lx: %s", f.sid, f.read ? "read" : "write", (unsigned long)f.addr,
                      reason_text(f.reason));
        seen.push_back(buf);
    }
    EXPECT_EQ(seen, (std::vector<std::string>{
                        "0218 write 201000: write to a read-only page",
                        "0218 read 202000: read of a write-only page",
                        "0218 write 1ff000: write to a read-only page",
                        "0218 read 40000000: read of a write-only page",
                        "0218 read 0: read of a write-only page",
                        "0218 read 1000000000000: address beyond the domain's width",
                        "0219 read 200000: context entry not present",
                        "0220 write 200000: context entry not present",
                    }));
    // Eight records: the last two faults (no root entry) overflowed.
    EXPECT_EQ(overflows, 1u);
}

TEST_F(VtdTranslate, NoTranslationBeforeEnable)
{
    // Until TE the unit passes DMA through (Keel enables it before touching any device).
    EXPECT_TRUE(dma(0x1234, true).ok);
    bring_up(false);
    expect_fault(dma(0x1234, true), sim::FR_WRITE);
}

TEST_F(VtdTranslate, SuperpagesWhenTheUnitHasThem)
{
    sim.sllps = 1;   // 2 MiB
    DmaTable big{mem, 2};
    ASSERT_TRUE(big.init().ok());
    ASSERT_TRUE(big.map(0x4000'0000, 0x8000'0000, 2 * MiB, RW).ok());
    mem.ptr<Entry>(ctx.pa)[devfn(DEV, FN)] = context_entry(big.root(), DID);
    bring_up(false);
    auto x = dma(0x401f'f00c, true);
    EXPECT_TRUE(x.ok);
    EXPECT_EQ(x.pa, 0x801f'f00cu);
    expect_fault(dma(0x4020'0000, true), sim::FR_WRITE);
}

// Unmapping takes effect at the domain's IOTLB invalidation, not before.
TEST_F(VtdTranslate, UnmapTakesEffectAtTheDomainsIotlbInvalidation)
{
    for (bool queued : {false, true}) {
        SCOPED_TRACE(queued);
        Arena m2;
        SimUnit s2{m2};
        Unit u2{s2, clock};
        DmaTable t2{m2, 1};
        ASSERT_TRUE(t2.init().ok());
        Page r = m2.alloc(), c = m2.alloc();
        m2.ptr<Entry>(r.pa)[BUS] = root_entry(c.pa);
        m2.ptr<Entry>(c.pa)[devfn(DEV, FN)] = context_entry(t2.root(), DID);
        ASSERT_TRUE(t2.map(0x10'0000, 0x9000'0000, PAGE_SIZE, RW).ok());
        ASSERT_TRUE(u2.probe().ok());
        ASSERT_TRUE(queued ? u2.enable(r.pa, m2.alloc(), m2.alloc()).ok() : u2.enable(r.pa).ok());
        EXPECT_TRUE(s2.dma(BUS, devfn(DEV, FN), 0x10'0000, true).ok);   // now cached
        auto changed = t2.unmap(0x10'0000, PAGE_SIZE);
        ASSERT_TRUE(changed.ok() && *changed);
        EXPECT_TRUE(s2.dma(BUS, devfn(DEV, FN), 0x10'0000, true).ok);   // stale, until...
        ASSERT_TRUE(u2.invalidate_iotlb(DID + 1).ok());                // another domain's: no help
        EXPECT_TRUE(s2.dma(BUS, devfn(DEV, FN), 0x10'0000, true).ok);
        ASSERT_TRUE(u2.invalidate_iotlb(DID).ok());
        EXPECT_FALSE(s2.dma(BUS, devfn(DEV, FN), 0x10'0000, true).ok);
        EXPECT_FALSE(s2.protocol_error) << s2.protocol_what;
    }
}

TEST_F(VtdTranslate, ANewContextEntryTakesEffectAtTheContextInvalidation)
{
    sim.caching_mode = true;   // not-present entries cached too
    bring_up(true);
    ASSERT_TRUE(pt.map(0x10'0000, 0x9000'0000, PAGE_SIZE, RW).ok());
    const u8 other = devfn(5, 0);
    expect_fault(dma(0x10'0000, true, BUS, other), sim::FR_CONTEXT_NOT_PRESENT);
    mem.ptr<Entry>(ctx.pa)[other] = context_entry(pt.root(), DID);
    expect_fault(dma(0x10'0000, true, BUS, other), sim::FR_CONTEXT_NOT_PRESENT);   // cached as not present
    ASSERT_TRUE(unit.invalidate_context().ok());
    // Caching mode: the page was cached as not present for this domain too.
    ASSERT_TRUE(unit.invalidate_iotlb(DID).ok());
    auto x = dma(0x10'0000, true, BUS, other);
    EXPECT_TRUE(x.ok);
    EXPECT_EQ(x.pa, 0x9000'0000u);
}

} // namespace
} // namespace vtd

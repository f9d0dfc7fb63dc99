// drivers/vtd: interrupt remapping turned on (Unit::enable_interrupt_remapping:
// IRTA, SIRTP, the global interrupt entry cache invalidation, CFI, IRE; every
// wait bounded) and Keel's table of entries (IrteTable) with the per-entry
// invalidations Keel makes, against the simulated unit of sim_unit.hpp, whose
// interrupt entry cache makes a missing invalidation show.
#include <gtest/gtest.h>

#include <vector>

#include "drivers/vtd/irte.hpp"
#include "drivers/vtd/vtd.hpp"
#include "tests/unit/drivers/vtd/sim_unit.hpp"

namespace vtd {
namespace {

using sim::Arena;
using sim::FakeClock;
using sim::SimUnit;

class IrTest : public ::testing::Test {
protected:
    Arena mem;
    SimUnit sim{mem};
    FakeClock clock;
    Unit unit{sim, clock};
    Page root = mem.alloc();
    Page table = mem.alloc();
    static constexpr u16 EDU = 0x0008, OTHER = 0x0010;   // 00:01.0, 00:02.0

    void TearDown() override { EXPECT_FALSE(sim.protocol_error) << sim.protocol_what; }

    void bring_up(bool queued = true)
    {
        ASSERT_TRUE(unit.probe().ok()) << unit.why();
        Page q, st;
        if (queued) q = mem.alloc(), st = mem.alloc();
        ASSERT_TRUE(unit.enable(root.pa, q, st).ok()) << unit.why();
    }
    std::vector<u64> gcmd_writes() const
    {
        std::vector<u64> v;
        for (auto &w : sim.writes)
            if (w.off == GCMD) v.push_back(w.v);
        return v;
    }
    void expect_timed_out(Status s, u64 t0, const char *why)
    {
        EXPECT_EQ(s.error(), Err::timeout);
        EXPECT_STREQ(unit.why(), why);
        EXPECT_GE(clock.t - t0, 100'000u);
        EXPECT_LE(clock.t - t0, 101'000u);
    }
};

TEST_F(IrTest, EnableSequence)
{
    bring_up();
    const size_t d0 = sim.descs.size(), w0 = gcmd_writes().size();
    ASSERT_TRUE(unit.enable_interrupt_remapping(table.pa, 256, false).ok()) << unit.why();
    EXPECT_TRUE(unit.remapping_interrupts());
    // IRTA: the table, S = 7 (256 entries), EIME clear; latched by SIRTP.
    EXPECT_EQ(sim.read64(IRTA), table.pa.raw() | 7);
    EXPECT_EQ(sim.irta_latched(), table.pa.raw() | 7);
    // SIRTP (one-shot, translation and the queue kept on), then IRE added to the states.
    const auto g = gcmd_writes();
    ASSERT_EQ(g.size(), w0 + 2);
    EXPECT_EQ(g[w0], GCMD_TE | GCMD_QIE | GCMD_SIRTP);
    EXPECT_EQ(g[w0 + 1], GCMD_TE | GCMD_QIE | GCMD_IRE);   // CFI stays clear
    EXPECT_TRUE(sim.gsts() & GSTS_IRES);
    EXPECT_FALSE(sim.gsts() & GCMD_CFI);
    // The global interrupt entry cache invalidation between the two (the sim checks the order too).
    ASSERT_EQ(sim.descs.size(), d0 + 2);
    EXPECT_EQ(sim.descs[d0].lo, QI_IEC);
    EXPECT_EQ(sim.descs[d0 + 1].lo & 0xf, QI_WAIT);
    EXPECT_EQ(sim.iec_global, 1u);
    EXPECT_TRUE(sim.translating());
}

TEST_F(IrTest, X2apicModeNeedsEim)
{
    sim.eim = false;
    bring_up();
    EXPECT_EQ(unit.enable_interrupt_remapping(table.pa, 256, true).error(), Err::unsupported);
    EXPECT_STREQ(unit.why(), "no x2APIC interrupt destinations on this unit (ECAP.EIM)");
    EXPECT_FALSE(sim.gsts() & GSTS_IRES);
    // xAPIC mode on the same unit is fine.
    ASSERT_TRUE(unit.enable_interrupt_remapping(table.pa, 256, false).ok()) << unit.why();

    SimUnit sim2{mem};
    Unit unit2{sim2, clock};
    ASSERT_TRUE(unit2.probe().ok());
    ASSERT_TRUE(unit2.enable(root.pa, mem.alloc(), mem.alloc()).ok());
    ASSERT_TRUE(unit2.enable_interrupt_remapping(table.pa, 1024, true).ok()) << unit2.why();
    EXPECT_EQ(sim2.irta_latched(), table.pa.raw() | IRTA_EIME | 9);
    EXPECT_FALSE(sim2.protocol_error) << sim2.protocol_what;
}

TEST_F(IrTest, RefusedWithoutIrOrTheQueueOrWithABadTable)
{
    bring_up(false);   // by registers: no way to invalidate the interrupt entry cache
    EXPECT_EQ(unit.enable_interrupt_remapping(table.pa, 256, false).error(), Err::unsupported);
    EXPECT_STREQ(unit.why(), "interrupt remapping needs the invalidation queue");
    EXPECT_TRUE(gcmd_writes().size() == 2u);   // SRTP, TE: nothing more written
    EXPECT_EQ(unit.invalidate_interrupt_entry(3).error(), Err::unsupported);

    SimUnit noir{mem};
    noir.ir = false;
    Unit u{noir, clock};
    ASSERT_TRUE(u.probe().ok());
    ASSERT_TRUE(u.enable(root.pa, mem.alloc(), mem.alloc()).ok());
    EXPECT_EQ(u.enable_interrupt_remapping(table.pa, 256, false).error(), Err::unsupported);
    EXPECT_STREQ(u.why(), "no interrupt remapping on this unit");
    EXPECT_EQ(u.invalidate_interrupt_entry(3).error(), Err::unsupported);

    SimUnit s3{mem};
    Unit u3{s3, clock};
    ASSERT_TRUE(u3.probe().ok());
    ASSERT_TRUE(u3.enable(root.pa, mem.alloc(), mem.alloc()).ok());
    EXPECT_EQ(u3.enable_interrupt_remapping(PhysAddr(table.pa.raw() + 0x800), 256, false).error(), Err::invalid);
    EXPECT_EQ(u3.enable_interrupt_remapping(table.pa, 300, false).error(), Err::invalid);
    EXPECT_FALSE(s3.gsts() & GSTS_IRES);
    EXPECT_FALSE(noir.protocol_error) << noir.protocol_what;
    EXPECT_FALSE(s3.protocol_error) << s3.protocol_what;
}

TEST_F(IrTest, TablePointerNeverLatched)
{
    sim.stuck_sirtp = true;
    bring_up();
    const u64 t0 = clock.t;
    expect_timed_out(unit.enable_interrupt_remapping(table.pa, 256, false), t0,
                     "interrupt remapping table pointer not latched");
    EXPECT_FALSE(unit.remapping_interrupts());
    EXPECT_FALSE(sim.gsts() & GSTS_IRES);
}

TEST_F(IrTest, EnableNeverAcknowledged)
{
    sim.stuck_ire = true;
    bring_up();
    const u64 t0 = clock.t;
    expect_timed_out(unit.enable_interrupt_remapping(table.pa, 256, false), t0,
                     "interrupt remapping enable not acknowledged");
    EXPECT_FALSE(unit.remapping_interrupts());
}

TEST_F(IrTest, DisableNeverAcknowledged)
{
    bring_up();
    ASSERT_TRUE(unit.enable_interrupt_remapping(table.pa, 256, false).ok());
    sim.stuck_ire = true;
    const u64 t0 = clock.t;
    expect_timed_out(unit.disable_interrupt_remapping(), t0, "interrupt remapping disable not acknowledged");
    EXPECT_TRUE(unit.remapping_interrupts());   // not known to be off: still counted as on
    EXPECT_TRUE(sim.gsts() & GSTS_IRES);
}

TEST_F(IrTest, TheGlobalInvalidationNeverCompletes)
{
    bring_up();
    sim.stuck_queue = true;
    const u64 t0 = clock.t;
    expect_timed_out(unit.enable_interrupt_remapping(table.pa, 256, false), t0,
                     "interrupt entry cache invalidation did not complete");
    EXPECT_FALSE(sim.gsts() & GSTS_IRES);   // never enabled on a possibly stale cache
}

TEST_F(IrTest, FirmwaresCompatibilityFormatIsTurnedOff)
{
    sim.firmware_set_cfi();
    bring_up();
    EXPECT_TRUE(sim.gsts() & GCMD_CFI);
    ASSERT_TRUE(unit.enable_interrupt_remapping(table.pa, 256, false).ok()) << unit.why();
    EXPECT_FALSE(sim.gsts() & GCMD_CFI);
    EXPECT_TRUE(sim.gsts() & GSTS_IRES);
    EXPECT_EQ(sim.msi(EDU, 0xfee0'0000, 0x41).reason, sim::FR_IR_COMPAT);
}

TEST_F(IrTest, EntryInvalidationIsIndexSelective)
{
    bring_up();
    ASSERT_TRUE(unit.enable_interrupt_remapping(table.pa, 256, false).ok());
    const size_t d0 = sim.descs.size();
    ASSERT_TRUE(unit.invalidate_interrupt_entry(0x1a5).ok()) << unit.why();
    ASSERT_EQ(sim.descs.size(), d0 + 2);
    EXPECT_EQ(sim.descs[d0].lo, QI_IEC | 1ull << 4 | 0x1a5ull << 32);   // G = 1, IM = 0, IIDX
    EXPECT_EQ(sim.descs[d0].hi, 0u);
    EXPECT_EQ(sim.iec_index, 1u);
}

// ---- Keel's table ----

class IrteTableTest : public IrTest {
protected:
    IrteTable t;
    void SetUp() override
    {
        bring_up();
        ASSERT_TRUE(unit.enable_interrupt_remapping(table.pa, 256, false).ok());
        ASSERT_TRUE(t.init(mem.ptr<Entry>(table.pa), 256, false).ok());
    }
    SimUnit::Interrupt raise(u16 sid, u16 handle) { auto m = remapped_msi(handle); return sim.msi(sid, m.addr_lo, m.data); }
};

TEST_F(IrteTableTest, AllocatedEntriesDeliverToTheirDeviceOnly)
{
    auto a = t.alloc(Remap{.vector = 0x40, .dest = 1, .sid = EDU});
    auto b = t.alloc(Remap{.vector = 0x41, .dest = 0, .sid = OTHER});
    ASSERT_TRUE(a.ok());
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(*a, 0);
    EXPECT_EQ(*b, 1);
    EXPECT_EQ(t.in_use(), 2u);
    ASSERT_TRUE(unit.invalidate_interrupt_entry(*a).ok());
    ASSERT_TRUE(unit.invalidate_interrupt_entry(*b).ok());
    auto i = raise(EDU, *a);
    ASSERT_TRUE(i.ok) << int(i.reason);
    EXPECT_EQ(i.vector, 0x40);
    EXPECT_EQ(i.dest, 1u);
    EXPECT_FALSE(i.level);
    EXPECT_FALSE(i.logical);
    EXPECT_EQ(i.delivery, 0);
    // edu naming the other device's entry: refused, recorded with edu's source-id.
    EXPECT_EQ(raise(EDU, *b).reason, sim::FR_IR_SID);
    Fault f;
    bool over;
    ASSERT_TRUE(unit.next_fault(f, over));
    EXPECT_EQ(f.sid, EDU);
    EXPECT_EQ(f.reason, sim::FR_IR_SID);
    EXPECT_EQ(f.addr, u64(*b) << 48);   // the interrupt index in the fault information
    EXPECT_STREQ(reason_text(f.reason), "interrupt from a device the entry is not for");
}

TEST_F(IrteTableTest, RetargetTakesEffectAtTheEntrysInvalidation)
{
    auto h = t.alloc(Remap{.vector = 0x40, .dest = 1, .sid = EDU});
    ASSERT_TRUE(h.ok());
    ASSERT_TRUE(unit.invalidate_interrupt_entry(*h).ok());
    EXPECT_EQ(raise(EDU, *h).vector, 0x40);   // now cached by the unit
    ASSERT_TRUE(t.retarget(*h, 3, 0x77).ok());
    EXPECT_EQ(t.remap(*h).sid, EDU);
    EXPECT_EQ(raise(EDU, *h).vector, 0x40);   // stale until invalidated: why Keel invalidates
    ASSERT_TRUE(unit.invalidate_interrupt_entry(*h).ok());
    auto i = raise(EDU, *h);
    EXPECT_EQ(i.vector, 0x77);
    EXPECT_EQ(i.dest, 3u);
    EXPECT_EQ(t.retarget(9, 1, 0x40).error(), Err::not_found);
    EXPECT_EQ(t.retarget(*h, 0x100, 0x40).error(), Err::invalid);   // xAPIC: 8-bit destinations
    EXPECT_EQ(t.retarget(*h, 1, 5).error(), Err::invalid);          // reserved vector
}

TEST_F(IrteTableTest, FreeMakesTheEntryNotPresentAndTheHandleReusable)
{
    auto h = t.alloc(Remap{.vector = 0x40, .dest = 1, .sid = EDU});
    ASSERT_TRUE(h.ok());
    ASSERT_TRUE(unit.invalidate_interrupt_entry(*h).ok());
    ASSERT_TRUE(raise(EDU, *h).ok);
    ASSERT_TRUE(t.free(*h).ok());
    EXPECT_EQ(mem.ptr<Entry>(table.pa)[*h].lo, 0u);
    EXPECT_EQ(mem.ptr<Entry>(table.pa)[*h].hi, 0u);
    ASSERT_TRUE(unit.invalidate_interrupt_entry(*h).ok());
    EXPECT_EQ(raise(EDU, *h).reason, sim::FR_IR_NOT_PRESENT);
    EXPECT_EQ(t.free(*h).error(), Err::not_found);
    EXPECT_EQ(t.in_use(), 0u);
    auto again = t.alloc(Remap{.vector = 0x50, .dest = 0, .sid = OTHER});
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, *h);
}

TEST_F(IrteTableTest, FullAndRefused)
{
    IrteTable small;
    Page p = mem.alloc();
    ASSERT_TRUE(small.init(mem.ptr<Entry>(p.pa), 4, false).ok());
    for (int i = 0; i < 4; i++) ASSERT_TRUE(small.alloc(Remap{.vector = u8(0x40 + i), .dest = 0, .sid = EDU}).ok());
    EXPECT_EQ(small.alloc(Remap{.vector = 0x48, .dest = 0, .sid = EDU}).error(), Err::busy);
    ASSERT_TRUE(small.free(2).ok());
    EXPECT_EQ(*small.alloc(Remap{.vector = 0x48, .dest = 0, .sid = EDU}), 2);
    EXPECT_EQ(t.alloc(Remap{.vector = 0x40, .dest = 0x1ff, .sid = EDU}).error(), Err::invalid);
    EXPECT_EQ(t.in_use(), 0u);
    EXPECT_EQ(small.init(mem.ptr<Entry>(p.pa), 3, false).error(), Err::invalid);
    EXPECT_EQ(small.init(mem.ptr<Entry>(p.pa), 2048, false).error(), Err::invalid);
}

TEST_F(IrteTableTest, X2apicTableTakes32BitDestinations)
{
    IrteTable x2;
    Page p = mem.alloc();
    ASSERT_TRUE(x2.init(mem.ptr<Entry>(p.pa), 16, true).ok());
    auto h = x2.alloc(Remap{.vector = 0x40, .dest = 0x1'0002, .sid = EDU});
    ASSERT_TRUE(h.ok());
    EXPECT_TRUE(x2.remap(*h).x2apic);
    EXPECT_EQ(mem.ptr<Entry>(p.pa)[*h].lo >> 32, 0x1'0002u);
}

} // namespace
} // namespace vtd

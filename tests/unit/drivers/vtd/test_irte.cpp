// drivers/vtd/irte: interrupt remapping table entries (VT-d 4.1, 9.10), the
// IRTA register and the remappable-format MSI message (5.1.5.2), each field
// against the spec's layout; and the simulated unit remapping MSIs through a
// table of them, refusing a device that uses another device's entry.
#include <gtest/gtest.h>

#include "drivers/vtd/irte.hpp"
#include "tests/unit/drivers/vtd/sim_unit.hpp"

namespace vtd {
namespace {

using sim::Arena;
using sim::FakeClock;
using sim::SimUnit;

// Low qword: P 0, FPD 1, DM 2, RH 3, TM 4, DLM 7:5, AVAIL 11:8, reserved 14:12,
// IM 15, V 23:16, reserved 31:24, DST 63:32. High: SID 79:64, SQ 81:80, SVT 83:82, reserved 127:84.
TEST(Irte, FixedXapic)
{
    auto e = irte(Remap{.vector = 0x31, .dest = 3, .sid = 0x0210});
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(e->lo, 1ull | 0x31ull << 16 | 3ull << 40);
    EXPECT_EQ(e->hi, 1ull << 18 | 0x0210);   // SVT = 01, SQ = 00, SID
    EXPECT_EQ(e->lo & 1, 1u);                // present
    EXPECT_EQ(e->lo >> 15 & 1, 0u);          // IM = 0: remapped, not posted
    EXPECT_EQ(e->lo >> 5 & 7, 0u);           // fixed
    EXPECT_EQ(e->hi >> 16 & 3, 0u);          // SQ = 00: all 16 bits of the SID compared
    EXPECT_EQ(e->hi >> 18 & 3, 1u);          // SVT = 01
    EXPECT_EQ(e->hi >> 20, 0u);              // reserved
}

TEST(Irte, FlagsAndDeliveryModes)
{
    auto e = irte(Remap{.vector = 0xef, .dest = 0xff, .logical = true, .redirect = true, .level = true,
                        .delivery = Delivery::lowest, .sid = 0xfff8});
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(e->lo & 0x1f, 0x1du);          // P, DM, RH, TM (FPD clear: faults recorded)
    EXPECT_EQ(e->lo >> 5 & 7, 1u);           // lowest priority
    EXPECT_EQ(e->lo >> 16 & 0xff, 0xefu);
    EXPECT_EQ(e->lo >> 32, 0xff00u);         // xAPIC: DST[15:8] = bits 47:40, the rest 0
    EXPECT_EQ(e->lo & 0xff00'7f00ull, 0u);   // AVAIL, reserved
    EXPECT_EQ(u16(e->hi), 0xfff8);

    auto nmi = irte(Remap{.vector = 0, .dest = 1, .delivery = Delivery::nmi});
    ASSERT_TRUE(nmi.ok());                   // the vector is ignored for NMI
    EXPECT_EQ(nmi->lo >> 5 & 7, 4u);
}

TEST(Irte, X2apicDestination)
{
    auto e = irte(Remap{.vector = 0x40, .dest = 0x1234'5678, .x2apic = true, .sid = 0x0100});
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(e->lo >> 32, 0x1234'5678u);    // DST: bits 63:32
    EXPECT_EQ(u32(e->lo), 0x0040'0001u);
}

TEST(Irte, Refused)
{
    EXPECT_EQ(irte(Remap{.vector = 0x40, .dest = 0x100}).error(), Err::invalid);   // too wide for xAPIC
    EXPECT_EQ(irte(Remap{.vector = 15, .dest = 0}).error(), Err::invalid);         // reserved vectors
    EXPECT_EQ(irte(Remap{.vector = 2, .dest = 0, .delivery = Delivery::lowest}).error(), Err::invalid);
}

// IRTA (11.4.10.1): IRTA 63:12, EIME 11, S 3:0 with 2^(S+1) entries.
TEST(Irte, IrtaRegister)
{
    EXPECT_EQ(*irta(PhysAddr(0x1234'5000), 256, false), 0x1234'5007u);
    EXPECT_EQ(*irta(PhysAddr(0x1234'5000), 2, false), 0x1234'5000u);
    EXPECT_EQ(*irta(PhysAddr(0x1234'5000), 65536, true), 0x1234'5000u | 1u << 11 | 15);
    EXPECT_EQ(irta(PhysAddr(0x1234'5000), 1, false).error(), Err::invalid);
    EXPECT_EQ(irta(PhysAddr(0x1234'5000), 384, false).error(), Err::invalid);
    EXPECT_EQ(irta(PhysAddr(0x1234'5000), 131072, false).error(), Err::invalid);
    EXPECT_EQ(irta(PhysAddr(0x1234'5800), 256, false).error(), Err::invalid);
}

// Remappable-format MSI address (5.1.5.2): 0xFEE 31:20, handle[14:0] 19:5, format 4, SHV 3, handle[15] 2.
TEST(Irte, RemappableMsi)
{
    EXPECT_EQ(remapped_msi(0).addr_lo, 0xfee0'0010u);
    EXPECT_EQ(remapped_msi(5).addr_lo, 0xfee0'0010u | 5u << 5);
    EXPECT_EQ(remapped_msi(0x7fff).addr_lo, 0xfeef'fff0u);
    EXPECT_EQ(remapped_msi(0x8001).addr_lo, 0xfee0'0010u | 1u << 5 | 1u << 2);
    EXPECT_EQ(remapped_msi(9, true).addr_lo, 0xfee0'0010u | 9u << 5 | 1u << 3);
    EXPECT_EQ(remapped_msi(9).addr_hi, 0u);
    EXPECT_EQ(remapped_msi(9).data, 0u);
}

// The simulated unit remapping through a table of Keel's entries.
class IrteSim : public ::testing::Test {
protected:
    Arena mem;
    SimUnit sim{mem};
    Page table = mem.alloc();
    FakeClock clock;
    Unit unit{sim, clock};
    static constexpr u16 NIC = 0x0300, OTHER = 0x0308;   // 03:00.0, 03:01.0

    void SetUp() override {}
    void TearDown() override { EXPECT_FALSE(sim.protocol_error) << sim.protocol_what; }

    // Through the driver (test_ir.cpp checks its sequence): DMA remapping with the queue, then IR.
    void turn_on(bool x2apic, u32 entries = 256)
    {
        ASSERT_TRUE(unit.probe().ok());
        ASSERT_TRUE(unit.enable(mem.alloc().pa, mem.alloc(), mem.alloc()).ok()) << unit.why();
        ASSERT_TRUE(unit.enable_interrupt_remapping(table.pa, entries, x2apic).ok()) << unit.why();
    }
    void set(u32 index, const Remap &r) { mem.ptr<Entry>(table.pa)[index] = *irte(r); }
    SimUnit::Interrupt raise(u16 sid, MsiMessage m) { return sim.msi(sid, m.addr_lo, m.data); }
};

TEST_F(IrteSim, TheDevicesOwnEntryDelivers)
{
    turn_on(false);
    set(5, Remap{.vector = 0x41, .dest = 2, .level = true, .sid = NIC});
    auto i = raise(NIC, remapped_msi(5));
    ASSERT_TRUE(i.ok) << int(i.reason);
    EXPECT_EQ(i.vector, 0x41);
    EXPECT_EQ(i.dest, 2u);
    EXPECT_TRUE(i.level);
    EXPECT_FALSE(i.logical);
    EXPECT_EQ(i.delivery, 0);
    EXPECT_EQ(sim.pending_faults(), 0u);
}

TEST_F(IrteSim, AnotherDeviceUsingTheEntryIsRefused)
{
    turn_on(false);
    sim.write32(FECTL, 0);   // unmask (Keel polls; here the fault event is counted)
    set(5, Remap{.vector = 0x41, .dest = 2, .sid = NIC});
    auto i = raise(OTHER, remapped_msi(5));
    EXPECT_FALSE(i.ok);
    EXPECT_EQ(i.reason, sim::FR_IR_SID);
    // Another function of the same device too: SQ = 00 compares every bit.
    EXPECT_EQ(raise(NIC | 1, remapped_msi(5)).reason, sim::FR_IR_SID);
    EXPECT_EQ(sim.pending_faults(), 2u);
    EXPECT_EQ(sim.fault_events, 2u);

    // Keel drains them like DMA faults: the requester, the reason.
    Fault f;
    bool over;
    ASSERT_TRUE(unit.next_fault(f, over));
    EXPECT_EQ(f.sid, OTHER);
    EXPECT_EQ(f.reason, sim::FR_IR_SID);
    EXPECT_STREQ(reason_text(f.reason), "interrupt from a device the entry is not for");
    ASSERT_TRUE(unit.next_fault(f, over));
    EXPECT_EQ(f.sid, NIC | 1);
    EXPECT_FALSE(unit.next_fault(f, over));
}

TEST_F(IrteSim, X2apicModeAndSubhandles)
{
    turn_on(true);
    set(8, Remap{.vector = 0x50, .dest = 0x1'0000, .x2apic = true, .sid = NIC});
    set(9, Remap{.vector = 0x51, .dest = 0x1'0001, .x2apic = true, .sid = NIC});
    MsiMessage m = remapped_msi(8, true);
    m.data = 1;   // the device's second message
    auto i = raise(NIC, m);
    ASSERT_TRUE(i.ok) << int(i.reason);
    EXPECT_EQ(i.vector, 0x51);
    EXPECT_EQ(i.dest, 0x1'0001u);
    EXPECT_EQ(i.index, 9u);
}

TEST_F(IrteSim, DefaultDeny)
{
    turn_on(false, 16);
    set(1, Remap{.vector = 0x41, .dest = 2, .sid = NIC});
    EXPECT_EQ(raise(NIC, remapped_msi(2)).reason, sim::FR_IR_NOT_PRESENT);   // not programmed
    EXPECT_EQ(raise(NIC, remapped_msi(16)).reason, sim::FR_IR_INDEX);        // beyond the table
    EXPECT_EQ(sim.msi(NIC, 0xfee0'0000, 0x41).reason, sim::FR_IR_COMPAT);    // compatibility format
    EXPECT_TRUE(raise(NIC, remapped_msi(1)).ok);
}

} // namespace
} // namespace vtd

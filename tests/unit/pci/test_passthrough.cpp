// A passed-through function (kernel/pci/passthrough.cpp): the configuration
// space the guest sees (the host's IDs and BAR sizes, no INTx, MSI-X with the
// host's layout capped at MAX_MSIX), BAR placement, forwarding of BAR
// accesses, the filter (the host's whole MSI-X table and PBA, accesses leaving
// a BAR) and the Bus Master bit forwarded to the device.
#include <gtest/gtest.h>

#include <vector>

#include "kernel/pci/passthrough.hpp"

namespace {

struct FakePort final : HostPort {
    struct Access {
        u32 bar;
        u64 offset;
        u8 size;
        u64 value;
        bool write;
    };
    std::vector<Access> log;
    std::vector<bool> master;
    u64 bar_read(u32 bar, u64 offset, u8 size) override
    {
        log.push_back({bar, offset, size, 0, false});
        return 0xabcd0000 + offset;
    }
    void bar_write(u32 bar, u64 offset, u8 size, u64 value) override { log.push_back({bar, offset, size, value, true}); }
    void set_bus_master(bool on) override { master.push_back(on); }
};

// QEMU's NVMe as Keel's kernel reads it: BAR0 64-bit 16 KiB with the MSI-X table at 0x2000
// (65 vectors) and the PBA at 0x3000.
HostFunctionInfo nvme_like(u16 vectors = 65)
{
    HostFunctionInfo h;
    h.ids = {0x1b36, 0x0010, 0x010802, 2, 0x1af4, 0x1100};
    h.bars[0] = {PciFunction::BarType::mem64, 0x4000, false};
    h.msix_vectors = vectors;
    h.msix_table_bar = 0;
    h.msix_table_offset = 0x2000;
    h.msix_pba_bar = 0;
    h.msix_pba_offset = 0x3000;
    return h;
}

TEST(Passthrough, ConfigSpaceIsTheHostsIdentityWithOnlyMsix)
{
    FakePort port;
    PassthroughFunction f(nvme_like(), port);
    ASSERT_TRUE(f.ok()) << f.why();
    EXPECT_EQ(f.config_read(0x00, 4), 0x00101b36u);
    EXPECT_EQ(f.config_read(0x08, 4) >> 8, 0x010802u);
    EXPECT_EQ(f.config_read(0x2c, 4), 0x11001af4u);
    EXPECT_EQ(f.config_read(0x3d, 1), 0u);                       // no INTx pin
    EXPECT_EQ(f.vectors(), PciFunction::MAX_MSIX);                // 65 capped
    // The capability list: MSI-X alone, its table size field MAX_MSIX - 1.
    const u32 cap = f.config_read(0x34, 1);
    ASSERT_GE(cap, 0x40u);
    EXPECT_EQ(f.config_read(cap, 1), 0x11u);
    EXPECT_EQ(f.config_read(cap + 1, 1), 0u);
    EXPECT_EQ(f.config_read(cap + 2, 2) & 0x7ff, PciFunction::MAX_MSIX - 1);
    EXPECT_EQ(f.config_read(cap + 4, 4), 0x2000u);                // BIR 0, offset 0x2000
    EXPECT_EQ(f.config_read(cap + 8, 4), 0x3000u);
    // BAR0 sizes as the host's: 16 KiB, 64-bit.
    f.config_write(0x10, 4, ~0u);
    EXPECT_EQ(f.config_read(0x10, 4), 0xffffc004u);
    EXPECT_TRUE(port.log.empty());
}

TEST(Passthrough, BarsPlacedNaturallyAligned)
{
    FakePort port;
    HostFunctionInfo h = nvme_like(0);
    h.bars[2] = {PciFunction::BarType::mem32, 0x100000, false};
    h.bars[4] = {PciFunction::BarType::mem64, 0x10000, true};
    PassthroughFunction f(h, port);
    ASSERT_TRUE(f.ok());
    u64 next = 0xd0000100;
    ASSERT_TRUE(f.place_bars(next, 0xe0000000));
    EXPECT_EQ(f.bar_base(0), 0xd0004000u);
    EXPECT_EQ(f.bar_base(2), 0xd0100000u);
    EXPECT_EQ(f.bar_base(4), 0xd0200000u);
    EXPECT_EQ(f.config_read(0x20, 4) & 0xf, 0xcu);                // 64-bit prefetchable kept
    EXPECT_EQ(next, 0xd0210000u);
    u64 small = 0xdfff0000;
    EXPECT_FALSE(f.place_bars(small, 0xe0000000));                // does not fit
}

TEST(Passthrough, BarAccessesForwardedButTheHostMsixStructuresNever)
{
    FakePort port;
    PassthroughFunction f(nvme_like(), port);
    ASSERT_TRUE(f.ok());
    EXPECT_EQ(f.bar_read(0, 0x1c, 4), 0xabcd001cu);               // CSTS
    f.bar_write(0, 0x1000, 4, 7);                                  // a doorbell
    ASSERT_EQ(port.log.size(), 2u);
    EXPECT_TRUE(port.log[1].write);
    EXPECT_EQ(port.log[1].value, 7u);
    // Entries the guest is not shown (32..64), the tail of the PBA, across the
    // boundary into the table, and outside the BAR: refused, never forwarded.
    const u64 before = port.log.size();
    EXPECT_EQ(f.bar_read(0, 0x2000 + 16 * 40, 4), 0u);
    f.bar_write(0, 0x2000 + 16 * 64 + 12, 4, 0);                  // the last host entry's mask
    f.bar_write(0, 0x3008, 8, ~0ull);
    f.bar_write(0, 0x1ffc, 8, 0);                                   // straddles into the table
    EXPECT_EQ(f.bar_read(0, 0x4000, 4), 0u);
    EXPECT_EQ(f.bar_read(0, 0x3ffc, 8), 0u);
    EXPECT_EQ(f.bar_read(1, 0, 4), 0u);
    EXPECT_EQ(port.log.size(), before);
    EXPECT_EQ(f.refused(), 7u);
    EXPECT_EQ(f.bar_read(0, 0x3ff8, 8), 0xabcd3ff8u);             // past the PBA: the device's
}

TEST(Passthrough, BusMasterFollowsTheGuest)
{
    FakePort port;
    PassthroughFunction f(nvme_like(), port);
    f.config_write(0x04, 2, 0x0002);                               // memory only
    EXPECT_TRUE(port.master.empty());
    f.config_write(0x04, 2, 0x0006);
    f.config_write(0x04, 1, 0x06);                                 // unchanged: nothing sent
    f.config_write(0x04, 2, 0x0002);
    EXPECT_EQ(port.master, (std::vector<bool>{true, false}));
}

TEST(Passthrough, InconsistentHostDescriptionRefused)
{
    FakePort port;
    HostFunctionInfo h = nvme_like();
    h.msix_table_offset = 0x3c00;                                  // 65 entries leave the BAR
    EXPECT_FALSE(PassthroughFunction(h, port).ok());
    h = nvme_like();
    h.msix_pba_bar = 2;                                            // no such BAR
    EXPECT_FALSE(PassthroughFunction(h, port).ok());
    h = nvme_like();
    h.bars[0].size = 0x3000;                                       // not a power of two
    EXPECT_FALSE(PassthroughFunction(h, port).ok());
}

} // namespace

// A passed-through function (kernel/pci/passthrough.cpp): the configuration
// space the guest sees (the host's IDs and BAR sizes, no INTx, MSI-X with the
// host's layout capped at MAX_MSIX; one MSI vector for a host function with
// MSI only), BAR placement, forwarding of BAR
// accesses, the filter (the host's whole MSI-X table and PBA, accesses leaving
// a BAR) and the Bus Master bit forwarded to the device.
#include <gtest/gtest.h>

#include <map>
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

    // The guest's nested tables as far as BARs go: guest page -> (bar, offset in it).
    std::map<u64, std::pair<u32, u64>> pages;
    u32 maps = 0, unmaps = 0;
    bool refuse = false;              // map_bar fails (an overlap in the real tables)
    bool map_bar(u32 bar, const BarMapping &m) override
    {
        if (refuse) return false;
        maps++;
        for (u32 i = 0; i < m.count; i++) {
            const BarMapping::Range &r = m.ranges[i];
            EXPECT_EQ(r.guest % 4096, 0u);
            EXPECT_EQ(r.offset % 4096, 0u);
            EXPECT_EQ(r.size % 4096, 0u);
            EXPECT_EQ(r.guest - r.offset, m.base);
            for (u64 o = 0; o < r.size; o += 4096) {
                EXPECT_FALSE(pages.count(r.guest + o));
                pages[r.guest + o] = {bar, r.offset + o};
            }
        }
        return true;
    }
    void unmap_bar(u32 bar, const BarMapping &m) override
    {
        unmaps++;
        for (u32 i = 0; i < m.count; i++)
            for (u64 o = 0; o < m.ranges[i].size; o += 4096) {
                auto it = pages.find(m.ranges[i].guest + o);
                ASSERT_NE(it, pages.end());
                EXPECT_EQ(it->second.first, bar);
                pages.erase(it);
            }
    }
    // The mapped guest pages, in order.
    std::vector<u64> mapped() const
    {
        std::vector<u64> v;
        for (auto &[gpa, where] : pages) v.push_back(gpa);
        return v;
    }
};

const PassthroughFunction::Window WINDOWS[] = {{0xc0000000, 0xe0000000}, {0x400000000, 0x800000000}};

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

// A version-2 PCI Express capability as a host endpoint has it: FLR offered, a slot bit and
// status bits set that the guest must not see, 2.5 GT/s x1.
HostFunctionInfo with_pcie(HostFunctionInfo h)
{
    u8 c[60] = {};
    c[0] = 0x10, c[1] = 0x70;                     // ID, the host's next pointer
    c[2] = 0x02, c[3] = 0x01;                     // version 2, endpoint, Slot Implemented
    c[4] = 0x01, c[7] = 0x10;                     // DevCap: MPS 256, FLR (bit 28)
    c[8] = 0x30, c[9] = 0x28;                     // DevCtl: MPS 256, MRRS 512, ...
    c[0x0a] = 0x0f;                               // DevSta: errors detected
    c[0x0c] = 0x11;                               // LinkCap: 2.5 GT/s x1
    c[0x12] = 0x11, c[0x13] = 0xc0;               // LinkSta: 2.5 GT/s x1, LBMS, LABS
    c[0x14] = 0xff, c[0x20] = 0xff;               // slot and root fields
    c[0x24] = 0x10;                               // DevCap2
    c[0x2a] = 0x01;                               // DevSta2
    c[0x33] = 0x80;                               // LinkSta2 bit 15 (RW1C)
    c[0x34] = 0xff;                               // Slot 2
    for (int i = 0; i < 60; i++) h.pcie[i] = c[i];
    h.pcie_len = 60;
    return h;
}

TEST(Passthrough, PciExpressCapabilityShownReadOnlyAndFiltered)
{
    FakePort port;
    PassthroughFunction f(with_pcie(nvme_like()), port);
    ASSERT_TRUE(f.ok()) << f.why();
    u32 pcie = 0;
    for (u32 cap = f.config_read(0x34, 1), hops = 0; cap && hops < 8; cap = f.config_read(cap + 1, 1), hops++)
        if (f.config_read(cap, 1) == 0x10) pcie = cap;
    ASSERT_NE(pcie, 0u);
    EXPECT_EQ(f.config_read(pcie + 2, 2), 0x0002u);               // version 2, endpoint; no slot
    EXPECT_EQ(f.config_read(pcie + 4, 4), 0x00000001u);           // MPS 256; FLR not offered
    EXPECT_EQ(f.config_read(pcie + 8, 4), 0x00002830u);           // DevCtl as the host's; DevSta clear
    EXPECT_EQ(f.config_read(pcie + 0x0c, 4), 0x11u);
    EXPECT_EQ(f.config_read(pcie + 0x10, 4), 0x00110000u);        // link x1 2.5 GT/s; LBMS, LABS clear
    for (u32 o = 0x14; o < 0x24; o += 4) EXPECT_EQ(f.config_read(pcie + o, 4), 0u) << o;
    EXPECT_EQ(f.config_read(pcie + 0x24, 4), 0x10u);
    EXPECT_EQ(f.config_read(pcie + 0x28, 4), 0u);
    EXPECT_EQ(f.config_read(pcie + 0x30, 4), 0u);
    EXPECT_EQ(f.config_read(pcie + 0x34, 4), 0u);
    // Read-only: the guest's MPS, FLR and link writes change nothing.
    f.config_write(pcie + 8, 2, 0x8000 | 0x00e0);
    f.config_write(pcie + 0x10, 2, 0x0023);
    EXPECT_EQ(f.config_read(pcie + 8, 2), 0x2830u);
    EXPECT_EQ(f.config_read(pcie + 0x10, 2), 0u);
    EXPECT_TRUE(port.log.empty());
    // Not a PCI Express capability, or too short: not shown.
    HostFunctionInfo bad = with_pcie(nvme_like());
    bad.pcie[0] = 0x05;
    u8 view[HostFunctionInfo::PCIE_MAX];
    EXPECT_EQ(pcie_view(bad.pcie, bad.pcie_len, view), 0u);
    EXPECT_EQ(pcie_view(bad.pcie, 0x20, view), 0u);
    bad.pcie[0] = 0x10;
    bad.pcie[2] = 0x01;                                           // version 1: 36 bytes
    EXPECT_EQ(pcie_view(bad.pcie, bad.pcie_len, view), 0x24u);
}

// QEMU's edu: BAR0 32-bit 1 MiB, MSI (`vectors` messages), no MSI-X.
HostFunctionInfo edu_like(u8 vectors = 1)
{
    HostFunctionInfo h;
    h.ids = {0x1234, 0x11e8, 0x00ff00, 0x10, 0x1af4, 0x1100};
    h.bars[0] = {PciFunction::BarType::mem32, 0x100000, false};
    h.msi_vectors = vectors;
    return h;
}

TEST(Passthrough, MsiOnlyFunctionShownOneMsiVector)
{
    for (u8 host_vectors : {1, 4, 32}) {
        FakePort port;
        PassthroughFunction f(edu_like(host_vectors), port);
        ASSERT_TRUE(f.ok()) << f.why();
        EXPECT_TRUE(f.uses_msi());
        EXPECT_EQ(f.vectors(), 1u);
        EXPECT_EQ(f.config_read(0x3d, 1), 0u);                   // no INTx pin
        const u32 cap = f.config_read(0x34, 1);
        ASSERT_GE(cap, 0x40u);
        EXPECT_EQ(f.config_read(cap, 1), 0x05u);
        EXPECT_EQ(f.config_read(cap + 1, 1), 0u);                // MSI alone
        EXPECT_EQ(f.config_read(cap + 2, 2), 0x0180u);           // 1 vector, 64-bit, maskable, off
        f.config_write(cap + 2, 2, 0x0071);                      // 128 asked: 1 enabled
        EXPECT_EQ(f.msi_enabled_vectors(), 1u);
        EXPECT_TRUE(port.log.empty());                            // configuration space never reaches the host
    }
    // Both MSI-X and MSI: the guest sees MSI-X only.
    HostFunctionInfo both = nvme_like(8);
    both.msi_vectors = 1;
    FakePort port;
    PassthroughFunction f(both, port);
    ASSERT_TRUE(f.ok()) << f.why();
    EXPECT_FALSE(f.uses_msi());
    EXPECT_EQ(f.vectors(), 8u);
    const u32 cap = f.config_read(0x34, 1);
    EXPECT_EQ(f.config_read(cap, 1), 0x11u);
    EXPECT_EQ(f.config_read(cap + 1, 1), 0u);
    // Neither: no vectors, no capability.
    PassthroughFunction none(edu_like(0), port);
    ASSERT_TRUE(none.ok());
    EXPECT_EQ(none.vectors(), 0u);
    EXPECT_EQ(none.config_read(0x34, 1), 0u);
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

// ---- direct mapping (BAR pages in the guest's nested tables)

TEST(PassthroughDirect, NvmeBarMappedButItsMsixTableAndPbaPages)
{
    FakePort port;
    PassthroughFunction f(nvme_like(), port);
    f.set_map_windows(WINDOWS, 2);
    u64 next = 0xd0000000;
    ASSERT_TRUE(f.place_bars(next, 0xe0000000));
    EXPECT_TRUE(port.pages.empty());                               // memory decode is off
    f.config_write(0x04, 2, 0x0006);
    EXPECT_EQ(port.mapped(), (std::vector<u64>{0xd0000000, 0xd0001000}));   // registers and doorbells
    EXPECT_EQ(port.pages[0xd0001000], (std::pair<u32, u64>{0, 0x1000}));
    ASSERT_NE(f.mapped(0), nullptr);
    EXPECT_EQ(f.mapped(0)->count, 1u);
    EXPECT_EQ(f.mapped(1), nullptr);
    // The table's and PBA's pages still trap into the emulated table and the filter.
    EXPECT_EQ(f.bar_read(0, 0x2000, 4), 0u);
    EXPECT_EQ(f.refused(), 1u);
    f.config_write(0x04, 2, 0x0006);                               // unchanged: nothing happens
    EXPECT_EQ(port.maps, 1u);
    EXPECT_EQ(port.unmaps, 0u);
}

TEST(PassthroughDirect, HolesForTheTableAndPbaWhereverTheyAre)
{
    FakePort port;
    BarMapping m;
    // 64 KiB with the table (64 vectors: 1 KiB) at 0x8400 and the PBA at 0xe000: three ranges.
    HostFunctionInfo h = nvme_like(64);
    h.bars[0].size = 0x10000;
    h.msix_table_offset = 0x8400;
    h.msix_pba_offset = 0xe000;
    {
        PassthroughFunction f(h, port);
        f.set_map_windows(WINDOWS, 2);
        ASSERT_TRUE(f.mapping_for(0, 0xd0010000, m));
        ASSERT_EQ(m.count, 3u);
        EXPECT_EQ(m.base, 0xd0010000u);
        EXPECT_EQ(m.ranges[0].offset, 0u);
        EXPECT_EQ(m.ranges[0].size, 0x8000u);
        EXPECT_EQ(m.ranges[1].offset, 0x9000u);
        EXPECT_EQ(m.ranges[1].size, 0x5000u);
        EXPECT_EQ(m.ranges[1].guest, 0xd0019000u);
        EXPECT_EQ(m.ranges[2].offset, 0xf000u);
        EXPECT_EQ(m.ranges[2].size, 0x1000u);
    }
    // The PBA in the last page: no third range.
    h.msix_pba_offset = 0xf000;
    {
        PassthroughFunction f(h, port);
        f.set_map_windows(WINDOWS, 2);
        ASSERT_TRUE(f.mapping_for(0, 0xd0010000, m));
        ASSERT_EQ(m.count, 2u);
        EXPECT_EQ(m.ranges[1].size, 0x6000u);
    }
    // The PBA before the table, both in one page (a table of 65 entries crosses into a second one).
    h.msix_vectors = 65;
    h.msix_table_offset = 0x4c00;
    h.msix_pba_offset = 0x4000;
    {
        PassthroughFunction f(h, port);
        f.set_map_windows(WINDOWS, 2);
        ASSERT_TRUE(f.mapping_for(0, 0xd0010000, m));
        ASSERT_EQ(m.count, 2u);
        EXPECT_EQ(m.ranges[0].offset, 0u);
        EXPECT_EQ(m.ranges[0].size, 0x4000u);
        EXPECT_EQ(m.ranges[1].offset, 0x6000u);                    // 0x4c00 + 65 * 16 ends in page 0x5000
        EXPECT_EQ(m.ranges[1].size, 0xa000u);
    }
    // The PBA in another BAR: each BAR loses only its own structure's page.
    h = nvme_like(16);
    h.bars[2] = {PciFunction::BarType::mem32, 0x2000, false};
    h.msix_pba_bar = 2;
    h.msix_pba_offset = 0x1000;
    {
        PassthroughFunction f(h, port);
        f.set_map_windows(WINDOWS, 2);
        ASSERT_TRUE(f.mapping_for(2, 0xd0020000, m));
        ASSERT_EQ(m.count, 1u);
        EXPECT_EQ(m.ranges[0].size, 0x1000u);
        ASSERT_TRUE(f.mapping_for(0, 0xd0010000, m));
        ASSERT_EQ(m.count, 2u);                                    // around the table's page 0x2000
        EXPECT_EQ(m.ranges[1].offset, 0x3000u);
    }
    // A BAR that is only its MSI-X table: nothing to map.
    h = nvme_like(16);
    h.bars[0].size = 0x1000;
    h.msix_table_offset = 0;
    h.msix_pba_offset = 0x800;
    {
        PassthroughFunction f(h, port);
        f.set_map_windows(WINDOWS, 2);
        EXPECT_FALSE(f.mapping_for(0, 0xd0000000, m));
    }
}

TEST(PassthroughDirect, OnlyInsideTheWindowsAndPageAligned)
{
    FakePort port;
    PassthroughFunction f(nvme_like(), port);
    BarMapping m;
    EXPECT_FALSE(f.mapping_for(0, 0xd0000000, m));                 // no windows: nothing ever
    f.set_map_windows(WINDOWS, 2);
    EXPECT_TRUE(f.mapping_for(0, 0xd0000000, m));
    EXPECT_TRUE(f.mapping_for(0, 0xdfffc000, m));                  // the window's last 16 KiB
    EXPECT_FALSE(f.mapping_for(0, 0xdfffe000, m));                 // leaves it
    EXPECT_FALSE(f.mapping_for(0, 0xe0000000, m));                 // ECAM
    EXPECT_FALSE(f.mapping_for(0, 0xbfffc000, m));                 // RAM
    EXPECT_FALSE(f.mapping_for(0, 0, m));                          // unassigned
    EXPECT_FALSE(f.mapping_for(0, 0xd0000800, m));
    EXPECT_TRUE(f.mapping_for(0, 0x400000000, m));                 // the 64-bit window
    EXPECT_FALSE(f.mapping_for(0, 0x3ffffc000, m));
    EXPECT_FALSE(f.mapping_for(1, 0xd0000000, m));                 // the upper half is no BAR
}

TEST(PassthroughDirect, MovedBarUnmappedThenMappedAtItsNewPlace)
{
    FakePort port;
    PassthroughFunction f(nvme_like(), port);
    f.set_map_windows(WINDOWS, 2);
    u64 next = 0xd0000000;
    ASSERT_TRUE(f.place_bars(next, 0xe0000000));
    f.config_write(0x04, 2, 0x0002);
    ASSERT_EQ(port.mapped(), (std::vector<u64>{0xd0000000, 0xd0001000}));
    // Moved inside the 32-bit window by one write.
    f.config_write(0x10, 4, 0xd0100004);
    EXPECT_EQ(port.mapped(), (std::vector<u64>{0xd0100000, 0xd0101000}));
    EXPECT_EQ(port.unmaps, 1u);
    // Above 4 GiB: the lower half first (0: unassigned, unmapped), then the upper
    // (0x4_00000000: the 64-bit window, mapped there).
    f.config_write(0x10, 4, 0x00000004);
    EXPECT_TRUE(port.pages.empty());
    f.config_write(0x14, 4, 0x4);
    EXPECT_EQ(port.mapped(), (std::vector<u64>{0x400000000, 0x400001000}));
    EXPECT_EQ(f.mapped(0)->base, 0x400000000u);
    // Sizing with decode on: all ones is outside every window; restoring maps it again.
    f.config_write(0x10, 4, ~0u);
    f.config_write(0x14, 4, ~0u);
    EXPECT_TRUE(port.pages.empty());
    f.config_write(0x10, 4, 0xd0000004);
    f.config_write(0x14, 4, 0);
    EXPECT_EQ(port.mapped(), (std::vector<u64>{0xd0000000, 0xd0001000}));
    // A write that leaves the address as it was changes nothing.
    const u32 maps = port.maps;
    f.config_write(0x10, 4, 0xd0000004);
    f.config_write(0x10, 1, 0xff);                                 // read-only low bits only
    EXPECT_EQ(port.maps, maps);
}

TEST(PassthroughDirect, DecodeOffUnmapsAndOnMapsAgain)
{
    FakePort port;
    PassthroughFunction f(nvme_like(), port);
    f.set_map_windows(WINDOWS, 2);
    u64 next = 0xd0000000;
    ASSERT_TRUE(f.place_bars(next, 0xe0000000));
    f.config_write(0x04, 2, 0x0006);
    EXPECT_EQ(port.pages.size(), 2u);
    f.config_write(0x04, 2, 0x0004);                               // memory off, bus master stays
    EXPECT_TRUE(port.pages.empty());
    EXPECT_EQ(f.mapped(0), nullptr);
    f.config_write(0x10, 4, 0xd0200000);                           // moved while off: nothing mapped
    EXPECT_TRUE(port.pages.empty());
    f.config_write(0x04, 2, 0x0006);
    EXPECT_EQ(port.mapped(), (std::vector<u64>{0xd0200000, 0xd0201000}));
    // A refused mapping (an overlap in the real tables) leaves the BAR trapping, and is tried
    // again at the next change.
    f.config_write(0x04, 2, 0x0004);
    port.refuse = true;
    f.config_write(0x04, 2, 0x0006);
    EXPECT_EQ(f.mapped(0), nullptr);
    EXPECT_EQ(f.bar_read(0, 0x1000, 4), 0xabcd1000u);              // forwarded, as before
    port.refuse = false;
    f.config_write(0x04, 2, 0x0004);
    f.config_write(0x04, 2, 0x0006);
    EXPECT_NE(f.mapped(0), nullptr);
}

TEST(PassthroughDirect, SubPageBarsKeepTrapping)
{
    FakePort port;
    HostFunctionInfo h = nvme_like(0);
    h.bars[2] = {PciFunction::BarType::mem32, 0x800, false};
    h.bars[3] = {PciFunction::BarType::mem32, 0x1000, false};
    PassthroughFunction f(h, port);
    ASSERT_TRUE(f.ok());
    f.set_map_windows(WINDOWS, 2);
    u64 next = 0xd0000000;
    ASSERT_TRUE(f.place_bars(next, 0xe0000000));
    f.config_write(0x04, 2, 0x0002);
    EXPECT_EQ(f.mapped(2), nullptr);                               // its page would reach past it
    ASSERT_NE(f.mapped(3), nullptr);                               // exactly one page: mapped
    ASSERT_NE(f.mapped(0), nullptr);                               // no MSI-X: all four pages
    EXPECT_EQ(port.pages.size(), 5u);
    EXPECT_EQ(f.bar_read(2, 0x10, 4), 0xabcd0010u);                // still forwarded
}

} // namespace

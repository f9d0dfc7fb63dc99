// IOMMU groups (kernel/security/iommu_groups) on the topologies that matter:
// QEMU's q35 (everything on bus 0), root ports with and without ACS, a switch,
// a conventional bridge, multi-function devices.
#include <gtest/gtest.h>

#include <vector>

#include "kernel/security/iommu_groups.hpp"

using iommu::Function;
using iommu::Kind;

namespace {

Function ep(u8 bus, u8 dev, u8 fn = 0, u16 acs = 0) { return Function{0, bus, dev, fn, Kind::endpoint, 0, 0, acs}; }
Function port(Kind k, u8 bus, u8 dev, u8 sec, u8 sub, u16 acs, u8 fn = 0)
{
    return Function{0, bus, dev, fn, k, sec, sub, acs};
}

std::vector<u32> groups(const std::vector<Function> &f)
{
    std::vector<u32> g(f.size());
    iommu::compute_groups(f.data(), u32(f.size()), g.data());
    return g;
}

constexpr u16 ISO = iommu::ACS_PORT_ISOLATION;

TEST(IommuGroups, IntegratedEndpointsAreAlone)
{
    // q35: host bridge, NVMe, e1000e, edu on bus 0, single-function: each alone.
    auto g = groups({ep(0, 0), ep(0, 1), ep(0, 2), ep(0, 3)});
    EXPECT_EQ(g, (std::vector<u32>{0, 1, 2, 3}));
}

TEST(IommuGroups, MultiFunctionDevices)
{
    // 00:1f.0/2/3 (ICH9 LPC, SATA, SMBus) without ACS: one group; 00:1f with
    // ACS RR+CR on every function: separate; one function without: all join.
    auto g = groups({ep(0, 0x1f, 0), ep(0, 0x1f, 2), ep(0, 0x1f, 3), ep(0, 2)});
    EXPECT_EQ(g, (std::vector<u32>{0, 0, 0, 3}));
    const u16 mfd = iommu::ACS_MFD_ISOLATION;
    g = groups({ep(0, 0x1f, 0, mfd), ep(0, 0x1f, 2, mfd), ep(0, 0x1f, 3, mfd)});
    EXPECT_EQ(g, (std::vector<u32>{0, 1, 2}));
    g = groups({ep(0, 0x1f, 0, mfd), ep(0, 0x1f, 2, 0), ep(0, 0x1f, 3, mfd)});
    EXPECT_EQ(g[0], g[1]);
    EXPECT_EQ(g[1], g[2]);
}

TEST(IommuGroups, VirtualFunctionsAreNotMultiFunctionPeers)
{
    // QEMU's NVMe PF at 00:05.0 (no ACS) with its VFs at 00:05.1 and 00:05.2: each alone,
    // like Linux; a physical second function of the same slot still joins the PF.
    Function vf1 = ep(0, 5, 1), vf2 = ep(0, 5, 2);
    vf1.virtfn = vf2.virtfn = true;
    EXPECT_EQ(groups({ep(0, 5, 0), vf1, vf2}), (std::vector<u32>{0, 1, 2}));
    EXPECT_EQ(groups({ep(0, 5, 0), vf1, ep(0, 5, 3)}), (std::vector<u32>{0, 1, 0}));
    // Below a port without isolation a VF still shares the port's group.
    Function vf = ep(1, 0, 1);
    vf.virtfn = true;
    auto g = groups({port(Kind::root_port, 0, 1, 1, 1, 0), ep(1, 0, 0), vf});
    EXPECT_EQ(g[1], g[2]);
}

TEST(IommuGroups, RootPorts)
{
    // Two root ports, each with an endpoint; with ACS each endpoint is alone,
    // without ACS the endpoints below one port share (a two-function device there).
    auto g = groups({port(Kind::root_port, 0, 1, 1, 1, ISO), ep(1, 0), port(Kind::root_port, 0, 2, 2, 2, ISO),
                     ep(2, 0)});
    EXPECT_EQ(g, (std::vector<u32>{0, 1, 2, 3}));
    g = groups({port(Kind::root_port, 0, 1, 1, 1, 0), ep(1, 0, 0, iommu::ACS_MFD_ISOLATION),
                ep(1, 0, 1, iommu::ACS_MFD_ISOLATION), port(Kind::root_port, 0, 2, 2, 2, ISO), ep(2, 0)});
    EXPECT_EQ(g[1], g[2]);      // below the port without ACS: together despite their own ACS
    EXPECT_NE(g[0], g[1]);      // the port itself is not in its children's group
    EXPECT_NE(g[4], g[1]);
    // Partial ACS (no upstream forwarding) does not isolate.
    g = groups({port(Kind::root_port, 0, 1, 1, 1, ISO & ~iommu::ACS_UF), ep(1, 0, 0, iommu::ACS_MFD_ISOLATION),
                ep(1, 0, 1, iommu::ACS_MFD_ISOLATION)});
    EXPECT_EQ(g[1], g[2]);
}

TEST(IommuGroups, Switch)
{
    // Root port (ACS) -> switch upstream port on bus 1 -> two downstream ports on bus 2 -> endpoints on 3, 4.
    auto topo = [](u16 down_acs, u16 root_acs) {
        return std::vector<Function>{port(Kind::root_port, 0, 1, 1, 4, root_acs),
                                     port(Kind::upstream_port, 1, 0, 2, 4, 0),
                                     port(Kind::downstream_port, 2, 0, 3, 3, down_acs),
                                     port(Kind::downstream_port, 2, 1, 4, 4, down_acs),
                                     ep(3, 0),
                                     ep(4, 0)};
    };
    auto g = groups(topo(ISO, ISO));
    EXPECT_NE(g[4], g[5]);
    // Downstream ports without ACS: the two endpoints can talk peer to peer.
    g = groups(topo(0, ISO));
    EXPECT_EQ(g[4], g[5]);
    // Isolating downstream ports below a root port without ACS: everything below the root port joins.
    g = groups(topo(ISO, 0));
    EXPECT_EQ(g[4], g[5]);
}

TEST(IommuGroups, ConventionalBridge)
{
    // A PCIe-to-PCI bridge (00:1e.0) with two devices on bus 5: the bridge and both
    // share one group (their requests carry the bridge's ID); a device elsewhere stays alone.
    auto g = groups({port(Kind::pcie_to_pci, 0, 0x1e, 5, 5, 0), ep(5, 1), ep(5, 2), ep(0, 2)});
    EXPECT_EQ(g, (std::vector<u32>{0, 0, 0, 3}));
    // Nested below an isolating root port: still one group with the bridge, not with the root port.
    g = groups({port(Kind::root_port, 0, 1, 1, 2, ISO), port(Kind::pci_bridge, 1, 0, 2, 2, 0), ep(2, 3), ep(2, 4)});
    EXPECT_EQ(g[1], g[2]);
    EXPECT_EQ(g[2], g[3]);
    EXPECT_NE(g[0], g[1]);
}

TEST(IommuGroups, HostileTopologies)
{
    // Bridges whose ranges overlap, point at themselves or are inverted must not loop or crash.
    std::vector<Function> f{port(Kind::pci_bridge, 0, 1, 0, 255, 0), port(Kind::pci_bridge, 0, 2, 0, 255, 0),
                            port(Kind::root_port, 3, 0, 3, 3, 0), port(Kind::root_port, 0, 3, 9, 2, 0), ep(3, 1),
                            ep(9, 0)};
    auto g = groups(f);
    ASSERT_EQ(g.size(), f.size());
    for (u32 v : g) EXPECT_LT(v, f.size());
    // More functions than MAX_FUNCTIONS: only the first MAX_FUNCTIONS are grouped, nothing is written past n.
}

} // namespace

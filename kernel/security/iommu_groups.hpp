// IOMMU groups: the sets of PCI functions the IOMMU cannot isolate from one
// another, because their DMA can reach each other without passing through it
// (peer-to-peer inside a multi-function device or below a switch port that
// does not force it upstream), or because the IOMMU sees their requests under
// one requester ID (everything behind a conventional PCI bridge). A group is
// assigned to one owner whole, or not at all (issue 13).
//
// The rules, from the PCIe base spec (6.12, ACS) and how Linux builds groups:
//  - a function behind a conventional PCI bridge (PCIe-to-PCI, or a bridge
//    that is not PCIe at all) shares the group of that bridge, and so of
//    everything behind it;
//  - below a downstream or root port whose ACS does not enforce Source
//    Validation, P2P Request Redirect, P2P Completion Redirect and Upstream
//    Forwarding, every endpoint shares one group (below a switch's downstream
//    port: every endpoint below the switch, since requests can cross to the
//    sibling ports); the same holds for every port further up the path;
//  - the functions of one multi-function device share a group unless each
//    has ACS with P2P Request and Completion Redirect (or is the only one);
//    an SR-IOV virtual function is never part of that rule (a VF is not a
//    multi-function device's function, though it may sit at a function number
//    of its PF's slot; Linux treats it the same way);
//  - anything else (a root-complex integrated endpoint, an endpoint below
//    isolating ports) is its own group.
// Portable: the caller reads the topology from configuration space.
#pragma once

#include "kernel/lib/types.hpp"

namespace iommu {

enum class Kind : u8 {
    endpoint,           // a PCIe endpoint or RC integrated endpoint (or a non-bridge PCI function)
    root_port,          // PCIe root port
    downstream_port,    // PCIe switch downstream port
    upstream_port,      // PCIe switch upstream port
    pcie_to_pci,        // PCIe-to-PCI(-X) bridge
    pci_bridge,         // a conventional PCI-to-PCI bridge (no PCIe capability)
};

// ACS capability bits as in the ACS Capability and Control registers (7.7.8).
inline constexpr u16 ACS_SV = 1 << 0, ACS_TB = 1 << 1, ACS_RR = 1 << 2, ACS_CR = 1 << 3, ACS_UF = 1 << 4;
inline constexpr u16 ACS_PORT_ISOLATION = ACS_SV | ACS_RR | ACS_CR | ACS_UF;
inline constexpr u16 ACS_MFD_ISOLATION = ACS_RR | ACS_CR;

struct Function {
    u16 segment;
    u8 bus, dev, fn;
    Kind kind;
    u8 secondary, subordinate;   // bridges and ports: the buses below
    u16 acs;                     // ACS controls enabled (0: no ACS capability)
    bool virtfn = false;         // an SR-IOV virtual function
};

inline constexpr u32 MAX_FUNCTIONS = 256;

// group[i] for fns[i]: the index of the group's first member (in fns order),
// so two functions are in one group exactly when their values are equal.
// Err-free: functions whose parent is not in the list are treated as below
// the root complex (their own group unless a rule above joins them).
void compute_groups(const Function *fns, u32 n, u32 *group);

} // namespace iommu

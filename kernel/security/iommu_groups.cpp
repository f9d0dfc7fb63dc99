// IOMMU groups from the PCI topology (see the header for the rules).
#include "kernel/security/iommu_groups.hpp"

namespace iommu {
namespace {

struct Sets {
    u32 parent[MAX_FUNCTIONS];
    u32 find(u32 i)
    {
        while (parent[i] != i) i = parent[i] = parent[parent[i]];
        return i;
    }
    // The smaller index becomes the root, so a group's id is its first member.
    void join(u32 a, u32 b)
    {
        a = find(a);
        b = find(b);
        if (a < b) parent[b] = a;
        else if (b < a) parent[a] = b;
    }
};

bool is_bridge(Kind k) { return k != Kind::endpoint; }

// The bridge or port directly above fns[i]: the one whose bus range holds its
// bus most narrowly (same segment), or none.
i32 parent_of(const Function *fns, u32 n, u32 i)
{
    i32 best = -1;
    for (u32 k = 0; k < n; k++) {
        const Function &b = fns[k];
        if (k == i || !is_bridge(b.kind) || b.segment != fns[i].segment) continue;
        if (fns[i].bus < b.secondary || fns[i].bus > b.subordinate || b.secondary > b.subordinate) continue;
        if (best < 0 || b.secondary >= fns[best].secondary) best = i32(k);
    }
    return best;
}

} // namespace

void compute_groups(const Function *fns, u32 n, u32 *group)
{
    if (n > MAX_FUNCTIONS) n = MAX_FUNCTIONS;
    Sets s;
    for (u32 i = 0; i < n; i++) s.parent[i] = i;
    i32 parent[MAX_FUNCTIONS];
    for (u32 i = 0; i < n; i++) parent[i] = parent_of(fns, n, i);

    for (u32 i = 0; i < n; i++) {
        // Multi-function devices: functions join unless both isolate.
        for (u32 k = i + 1; k < n; k++) {
            const Function &a = fns[i], &b = fns[k];
            if (a.segment != b.segment || a.bus != b.bus || a.dev != b.dev || a.virtfn || b.virtfn) continue;
            const bool ia = (a.acs & ACS_MFD_ISOLATION) == ACS_MFD_ISOLATION;
            const bool ib = (b.acs & ACS_MFD_ISOLATION) == ACS_MFD_ISOLATION;
            if (!ia || !ib) s.join(i, k);
        }
        // Up the path: a conventional bridge joins everything below it to itself; a
        // port without isolation joins its children (and, by the walk, their subtrees).
        for (i32 c = i32(i), p = parent[i], hops = 0; p >= 0 && hops < i32(n); c = p, p = parent[p], hops++) {
            const Function &b = fns[p];
            if (b.kind == Kind::pcie_to_pci || b.kind == Kind::pci_bridge) {
                s.join(u32(c), u32(p));
                s.join(i, u32(p));
            } else if ((b.kind == Kind::root_port || b.kind == Kind::downstream_port) &&
                       (b.acs & ACS_PORT_ISOLATION) != ACS_PORT_ISOLATION) {
                // Every function below this port shares one group; below a switch's
                // downstream port, requests may also go straight to its sibling ports'
                // subtrees, so everything below the switch's upstream port joins.
                u8 lo = b.secondary, hi = b.subordinate;
                if (b.kind == Kind::downstream_port && parent[p] >= 0 && fns[parent[p]].kind == Kind::upstream_port) {
                    lo = fns[parent[p]].secondary;
                    hi = fns[parent[p]].subordinate;
                }
                for (u32 k = 0; k < n; k++)
                    if (k != u32(p) && fns[k].segment == b.segment && fns[k].bus >= lo && fns[k].bus <= hi &&
                        fns[k].kind == Kind::endpoint)
                        s.join(i, k);
            }
        }
    }
    for (u32 i = 0; i < n; i++) group[i] = s.find(i);
}

} // namespace iommu

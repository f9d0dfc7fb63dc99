// SR-IOV virtual functions of Keel's NVMe drives ([keel] sriov, issue 13).
//
// For each configured physical function (one of Keel's NVMe controllers,
// which stays Keel's): its SR-IOV capability (PCIe 9.3.3) is cleared, the VF
// BARs are sized and placed in host address space above everything else
// (firmware does not assign them), NumVFs set and VF Enable + VF MSE turned
// on; then the PF's driver makes each VF's secondary controller usable (NVMe
// virtualization management: flexible queue and interrupt resources assigned,
// online; VF k attached namespace k + 1). From then on the VFs are host PCI
// functions like any other (host_pci_scan lists them), given to guests by
// [[guest.pci]]; passthrough asks sriov_vf_bar for their BARs, which a VF's
// own configuration space does not hold.
#include "arch/x86_64/insn.hpp"
#include "arch/x86_64/time.hpp"
#include "kernel/hv/internal.hpp"
#include "kernel/lib/console.hpp"
#include "kernel/security/iommu_groups.hpp"

namespace hv {
namespace {

constexpr u16 EXT_CAP_SRIOV = 0x0010;
constexpr u32 SRIOV_CTRL = 0x08, SRIOV_TOTAL = 0x0c, SRIOV_NUM = 0x10, SRIOV_BAR0 = 0x24;
constexpr u32 CTRL_VFE = 1u << 0, CTRL_MSE = 1u << 3;
constexpr u16 VF_QUEUES = 2, VF_VECTORS = 1;       // admin + one I/O queue, one interrupt

struct Pf {
    HostFn fn;
    u32 cap;
    u16 vfs;
    u64 bar_base[PciFunction::BARS], bar_size[PciFunction::BARS];   // VF 1's; VF k at + (k-1) * size
    bool bar_wide[PciFunction::BARS];
};
Pf pfs_[KeelConfig::MAX_SRIOV];
u32 npfs_;

u64 align_up(u64 v, u64 a) { return (v + a - 1) & ~(a - 1); }

// The end of what the CPU can address (CPUID 0x80000008 EAX[7:0]).
u64 phys_limit()
{
    const u32 bits = x86::cpuid(0x80000000).a >= 0x80000008 ? x86::cpuid(0x80000008).a & 0xff : 36;
    return 1ull << (bits < 52 ? bits : 52);
}

// Where VF BARs can go: above 4 GiB, above all RAM of the firmware's map and above every BAR
// assigned now (each taken as up to 1 GiB), 1 GiB aligned. (QEMU decodes PCI memory at any
// address nothing else claims. Reserved ranges are not counted: QEMU's AMD machines reserve
// 1012 GiB..1 TiB, at the top of what the CPU can address.)
u64 free_window()
{
    u64 top = 4 * GiB;
    for (usize i = 0; i < boot_->mem_count; i++)
        if (boot_->mem[i].type != MemType::reserved) top = max(top, boot_->mem[i].base + boot_->mem[i].size);
    static HostFn fns[iommu::MAX_FUNCTIONS];
    const u32 n = host_pci_scan(fns, iommu::MAX_FUNCTIONS);
    for (u32 i = 0; i < n; i++) {
        if ((host_pci_read(fns[i], PCI_HEADER) >> 16 & 0x7f) != 0) continue;
        for (u32 b = 0; b < PciFunction::BARS; b++) {
            const u32 lo = host_pci_read(fns[i], PCI_BAR0 + 4 * b);
            if (lo & 1) continue;
            u64 base = lo & ~0xfull;
            if ((lo >> 1 & 3) == 2 && b + 1 < PciFunction::BARS)
                base |= u64(host_pci_read(fns[i], PCI_BAR0 + 4 * ++b)) << 32;
            if (base) top = max(top, base + GiB);
        }
    }
    return align_up(top, GiB);
}

// VF Enable off; the VF BARs sized and placed from `at` on; NumVFs; VF Enable and VF MSE on.
const char *enable_vfs(Pf &p, u64 &at)
{
    const HostFn &f = p.fn;
    host_pci_write(f, p.cap + SRIOV_CTRL, 0);
    time::delay_us(1000);
    const u16 total = u16(host_pci_read(f, p.cap + SRIOV_TOTAL) >> 16);
    if (p.vfs > total) return "more VFs than the function has (TotalVFs)";
    for (u32 b = 0; b < PciFunction::BARS; b++) {
        const u32 reg = p.cap + SRIOV_BAR0 + 4 * b;
        const HostBar hb = host_pci_bar(f, reg, p.cap + SRIOV_BAR0 + 4 * PciFunction::BARS);
        if (hb.cut || hb.io) return "a VF BAR Keel cannot place (an I/O BAR, or 64-bit in the last slot)";
        const bool wide = hb.wide;
        const u32 lo = host_pci_read(f, reg);
        if (!hb.size) {
            if (wide) b++;
            continue;                                      // a VF BAR the device does not have (sizing reads 0)
        }
        const u64 size = hb.size;
        if (!wide) return "a 32-bit VF BAR (Keel places VF BARs above 4 GiB)";
        at = align_up(at, size);
        if (at + size * p.vfs > phys_limit()) return "no room for the VF BARs below the CPU's physical address width";
        p.bar_base[b] = at;
        p.bar_size[b] = size;
        p.bar_wide[b] = wide;
        host_pci_write(f, reg, u32(at) | (lo & 0xf));
        if (wide) host_pci_write(f, reg + 4, u32(at >> 32));
        at += size * p.vfs;
        log_info("sriov %02x:%02x.%u: VF BAR%u: %lu KiB each, at %lx", f.bus, f.dev, f.fn, b, size / KiB,
                 p.bar_base[b]);
        if (wide) b++;
    }
    host_pci_write(f, p.cap + SRIOV_NUM, p.vfs);
    host_pci_write(f, p.cap + SRIOV_CTRL, CTRL_VFE | CTRL_MSE);
    time::delay_us(100'000);                               // PCIe: 100 ms before the VFs are addressed
    return nullptr;
}

} // namespace

void init_sriov(const KeelConfig &cfg)
{
    if (!cfg.sriov_count) return;
    u64 at = free_window();
    static HostFn fns[iommu::MAX_FUNCTIONS];
    const u32 n = host_pci_scan(fns, iommu::MAX_FUNCTIONS);
    for (u32 i = 0; i < cfg.sriov_count; i++) {
        const SriovConfig &s = cfg.sriov[i];
        const PciConfig &a = s.pf;
        const HostFn *pf = nullptr;
        for (u32 k = 0; k < n; k++)
            if (fns[k].segment == a.segment && fns[k].bus == a.bus && fns[k].dev == a.dev && fns[k].fn == a.fn)
                pf = &fns[k];
        const char *why = nullptr;
        Pf &p = pfs_[npfs_];
        p = Pf{};
        if (!pf) why = "no such PCI function on this machine";
        else if (!storage_drives(*pf)) why = "not one of Keel's NVMe drives (only those get SR-IOV from Keel)";
        else if (!(p.cap = host_pci_ext_cap(*pf, EXT_CAP_SRIOV))) why = "it has no SR-IOV capability";
        if (!why) {
            p.fn = *pf;
            p.vfs = s.vfs;
            why = enable_vfs(p, at);
        }
        for (u16 k = 1; !why && k <= s.vfs; k++) why = storage_vf_online(p.fn, k, VF_QUEUES, VF_VECTORS, k + 1u);
        if (why) {
            log_error("keel.toml line %u: sriov %04x:%02x:%02x.%u: %s; no VFs", s.pf.line, a.segment, a.bus, a.dev,
                      a.fn, why);
            if (p.cap) host_pci_write(*pf, p.cap + SRIOV_CTRL, 0);
            continue;
        }
        npfs_++;
        log_info("sriov %04x:%02x:%02x.%u: %u VFs on, each with %u queues, %u interrupt and namespace VF+1",
                 a.segment, a.bus, a.dev, a.fn, s.vfs, VF_QUEUES, VF_VECTORS);
    }
}

bool sriov_pf(const HostFn &f)
{
    for (u32 i = 0; i < npfs_; i++)
        if (pfs_[i].fn.segment == f.segment && pfs_[i].fn.sid() == f.sid()) return true;
    return false;
}

bool sriov_vf_bar(const HostFn &vf, u32 bar, u64 &base, u64 &size, bool &wide)
{
    if (!vf.vf || bar >= PciFunction::BARS) return false;
    for (u32 i = 0; i < npfs_; i++) {
        const Pf &p = pfs_[i];
        if (p.fn.segment != vf.segment || p.fn.sid() != vf.pf_sid || vf.vf > p.vfs || !p.bar_size[bar]) continue;
        size = p.bar_size[bar];
        base = p.bar_base[bar] + (vf.vf - 1) * size;
        wide = p.bar_wide[bar];
        return true;
    }
    return false;
}

} // namespace hv

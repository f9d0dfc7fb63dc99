// Host PCI functions given to guests ([[guest.pci]], issue 13).
//
// At start (claim_passthrough, boot CPU, after the IOMMU and Keel's drives
// are up, before any guest is created) every [[guest.pci]] of every guest is
// checked in file order, and a refusal is logged at its line and keeps that
// guest from starting (the others start): the IOMMU must be on; the function
// must exist, be an endpoint (not a bridge), not be Keel's (its management NIC,
// a drive holding a guest's disk), not be given to anyone else already, not be
// named by a firmware RMRR, and every other endpoint of its IOMMU group must be
// given to the same guest. Its BARs are sized and mapped in Keel's MMIO window,
// its MSI-X layout, MSI capability and PCI Express capability read.
//
// At each start (plug_passthrough, after the NICs): the device is reset (FLR,
// or without it the secondary bus reset of the bridge right above it when
// everything below that bridge is this guest's) and its BARs restored; the guest's DMA domain is built over its RAM (IOVA =
// guest-physical, DID 2 + the guest's index) and the device attached to it;
// its PassthroughFunction (kernel/pci/passthrough) goes on the guest's bus
// after the disks and NICs, BARs at addresses Keel picks in the upper half of
// the guest's 32-bit PCI window. Bus Master follows the guest's Command
// register. BAR pages are mapped straight into the guest's nested tables
// (uncached) while it decodes memory and the BAR sits in one of its PCI
// windows, but for the pages of the host's MSI-X table and PBA, which trap
// (PassthroughFunction decides what; GuestPci::map_bar/unmap_bar do it); what
// traps is forwarded (the MSI-X table and PBA filtered). Its interrupts
// (route_passthrough_irqs, once the vCPUs are placed): each MSI-X vector the
// guest is shown, or the one MSI vector of a function with MSI only, gets a
// Keel vector and an interrupt remapping entry for the device's source-id on
// the CPU of the guest's vCPU 0; the host's table entries or MSI registers get
// the entry's remappable-format message, and the Keel vector's handler raises
// the guest's vector as the guest programmed it (signal_vector).
//
// When the start ends (unplug_passthrough, before the RAM is freed): MSI-X and
// MSI off at the device and their routes freed, Bus Master off, the context
// entry removed (DMA blocked again) and invalidated, the device reset, the
// domain destroyed.
#include "arch/x86_64/irq.hpp"
#include "arch/x86_64/mm.hpp"
#include "arch/x86_64/smp.hpp"
#include "arch/x86_64/time.hpp"
#include "kernel/hv/internal.hpp"
#include "kernel/lib/console.hpp"
#include "kernel/lib/format.hpp"
#include "kernel/security/iommu_groups.hpp"
#include "kernel/lib/new.hpp"

namespace hv {
namespace {

constexpr u16 GUEST_DID_BASE = 2;                    // Keel's own domain is 1
constexpr u64 WINDOW_BASE = PCI_MMIO32_BASE + PCI_MMIO32_SIZE / 2, WINDOW_END = PCI_MMIO32_BASE + PCI_MMIO32_SIZE;
constexpr u64 MAX_BAR_MAP = 256 * MiB;               // larger BARs are refused (Keel maps each whole)
constexpr u8 CAP_MSI = 0x05, CAP_PCIE = 0x10, CAP_MSIX = 0x11;
constexpr u32 DEVCAP_FLR = 1u << 28;
constexpr u32 PCI_BRIDGE_CONTROL = 0x3c, BRIDGE_SBR = 1u << (16 + 6);   // Bridge Control (0x3e) bit 6
constexpr u16 DEVCTL_FLR = 1u << 15, DEVSTA_TRANSACTIONS = 1u << 5;
constexpr u32 MSIX_ENABLE = 1u << 31, MSIX_MASK_ALL = 1u << 30;   // in the capability's first dword
// MSI (PCI 3.0, 6.8.1), in the capability's first dword: Message Control's enable, Multiple
// Message Capable and Enable, 64-bit address, per-vector masking.
constexpr u32 MSI_ENABLE = 1u << 16, MSI_MME = 7u << 20, MSI_64BIT = 1u << 23, MSI_PVM = 1u << 24;

struct Claim {
    HostFn fn;
    u32 guest, line;
};
Claim claims_[KeelConfig::MAX_GUESTS * GuestConfig::MAX_PASSTHROUGH];
u32 nclaims_;

bool same(const HostFn &f, const PciConfig &p)
{
    return f.segment == p.segment && f.bus == p.bus && f.dev == p.dev && f.fn == p.fn;
}

bool is_bridge(const HostFn &f) { return (host_pci_read(f, PCI_HEADER) >> 16 & 0x7f) != 0 || f.class_code >> 16 == 0x06; }

// BARs sized with decoding off (then as they were), mapped uncached; the MSI-X layout and
// the PCI Express capability read. nullptr, or why the function cannot be passed through.
const char *describe(GuestPci &p)
{
    const HostFn &f = p.host;
    HostFunctionInfo &h = p.info;
    h = HostFunctionInfo{};
    const u32 sub = host_pci_read(f, 0x2c);
    h.ids = {u16(f.id), u16(f.id >> 16), f.class_code, u8(host_pci_read(f, PCI_CLASS)), u16(sub), u16(sub >> 16)};
    const u32 cmd = host_pci_read(f, PCI_COMMAND) & 0xffff;
    for (u32 b = 0; b < PciFunction::BARS; b++) p.saved_bars[b] = host_pci_read(f, PCI_BAR0 + 4 * b);
    host_pci_write(f, PCI_COMMAND, cmd & ~(CMD_MEM | CMD_MASTER | 1u));
    const char *why = nullptr;
    for (u32 b = 0; f.vf && b < PciFunction::BARS && !why; b++) {
        // A VF's BARs are its PF's SR-IOV capability's (its own registers read 0).
        GuestPci::Bar &bar = p.bars[b];
        bar = GuestPci::Bar{};
        bool wide = false;
        if (!sriov_vf_bar(f, b, bar.base, bar.size, wide)) continue;
        bar.map = reinterpret_cast<volatile u8 *>(mm::map_mmio(PhysAddr(bar.base), bar.size).raw());
        if (!bar.map) why = "a VF BAR Keel cannot map";
        h.bars[b] = {wide ? PciFunction::BarType::mem64 : PciFunction::BarType::mem32, bar.size, false};
        if (wide) b++;
    }
    for (u32 b = 0; !f.vf && b < PciFunction::BARS && !why; b++) {
        GuestPci::Bar &bar = p.bars[b];
        bar = GuestPci::Bar{};
        const HostBar hb = host_pci_bar(f, PCI_BAR0 + 4 * b, PCI_BAR0 + 4 * PciFunction::BARS);
        if (hb.io) continue;                          // I/O space: not passed through
        if (hb.cut) break;
        const bool wide = hb.wide;
        if (wide) p.bars[b + 1] = GuestPci::Bar{};
        if (!hb.size) {
            if (wide) b++;
            continue;                                 // a BAR the device does not have (sizing reads 0)
        }
        const u64 size = hb.size;
        bar.base = hb.base;
        bar.size = size;
        if (!bar.base) why = "a memory BAR the firmware did not assign";
        else if (size > MAX_BAR_MAP) why = "a BAR larger than 256 MiB";
        else if (size < 16) why = "a BAR smaller than 16 bytes";
        else {
            bar.map = reinterpret_cast<volatile u8 *>(mm::map_mmio(PhysAddr(bar.base), size).raw());
            if (!bar.map) why = "a BAR Keel cannot map";
            h.bars[b] = {wide ? PciFunction::BarType::mem64 : PciFunction::BarType::mem32, size, hb.prefetchable};
        }
        if (wide) b++;
    }
    host_pci_write(f, PCI_COMMAND, cmd);
    if (why) return why;
    if (const u32 m = host_pci_cap(f, CAP_MSIX)) {
        const u32 table = host_pci_read(f, m + 4), pba = host_pci_read(f, m + 8);
        h.msix_vectors = u16((host_pci_read(f, m) >> 16 & 0x7ff) + 1);
        h.msix_table_bar = u8(table & 7);
        h.msix_table_offset = table & ~7u;
        h.msix_pba_bar = u8(pba & 7);
        h.msix_pba_offset = pba & ~7u;
    }
    p.msix = host_pci_cap(f, CAP_MSIX);
    p.msi = host_pci_cap(f, CAP_MSI);
    if (p.msi) {
        const u32 control = host_pci_read(f, p.msi);
        const u32 mmc = control >> 17 & 7;             // 110b and 111b are reserved
        h.msi_vectors = u8(1u << (mmc > 5 ? 5 : mmc));
        p.msi64 = control & MSI_64BIT;
        p.msi_maskable = control & MSI_PVM;
    }
    p.pcie = host_pci_cap(f, CAP_PCIE);
    if (p.pcie) {
        p.saved_devctl = u16(host_pci_read(f, p.pcie + 8));
        p.saved_linkctl = u16(host_pci_read(f, p.pcie + 0x10));
        const u8 len = (host_pci_read(f, p.pcie) >> 16 & 0xf) >= 2 ? 0x3c : 0x24;
        for (u8 i = 0; i < len; i += 4) {
            const u32 d = host_pci_read(f, p.pcie + i);
            for (u8 b = 0; b < 4; b++) h.pcie[i + b] = u8(d >> (8 * b));
        }
        h.pcie_len = len;
    }
    p.flr = p.pcie && (host_pci_read(f, p.pcie + 4) & DEVCAP_FLR);
    return nullptr;
}

// The host's MSI-X table entry n.
volatile u32 *msix_entry(GuestPci &p, u32 n)
{
    return reinterpret_cast<volatile u32 *>(p.bars[p.info.msix_table_bar].map + p.info.msix_table_offset + 16 * n);
}

void device_irq(void *ctx)
{
    GuestPci::Vector &v = *static_cast<GuestPci::Vector *>(ctx);
    __atomic_fetch_add(&v.p->interrupts, 1, __ATOMIC_RELAXED);
    if (PassthroughFunction *fn = __atomic_load_n(&v.p->fn, __ATOMIC_ACQUIRE)) (void)fn->signal_vector(v.n);
}

// The MSI capability's registers: the data follows the address (one dword, or two when 64-bit),
// the Mask Bits follow the data.
u32 msi_data_reg(const GuestPci &p) { return p.msi + (p.msi64 ? 12 : 8); }
u32 msi_mask_reg(const GuestPci &p) { return p.msi + (p.msi64 ? 16 : 12); }

// MSI off at the device, its vector masked if it can be.
void msi_off(GuestPci &p)
{
    if (!p.msi) return;
    host_pci_write(p.host, p.msi, host_pci_read(p.host, p.msi) & ~MSI_ENABLE);
    if (p.msi_maskable) host_pci_write(p.host, msi_mask_reg(p), ~0u);
}

// MSI-X and MSI off at the device, its entries masked, then the routes taken down (the
// handlers are gone when irq_vector_free returns).
void unroute(GuestPci &p)
{
    if (p.msix) host_pci_write(p.host, p.msix, (host_pci_read(p.host, p.msix) | MSIX_MASK_ALL) & ~MSIX_ENABLE);
    msi_off(p);
    for (u32 n = 0; n < PciFunction::MAX_MSIX; n++) {
        GuestPci::Vector &v = p.vectors[n];
        if (!v.host) continue;
        if (p.msix) msix_entry(p, n)[3] = 1;   // (a function shown MSI has no MSI-X)
        iommu_irte_free(v.irte);
        irq_vector_free(v.host);
        v.host = 0;
    }
}

// A function without FLR behind a bridge (a root or switch port, a PCI bridge) is reset by that
// bridge's Secondary Bus Reset, which resets everything below it: allowed only when every
// function there is given to this same guest (anything else, Keel's own devices included, would
// be reset under its owner).
void find_sbr_bridge(const GuestConfig &c, const HostFn &f, const HostFn *fns, u32 n, GuestPci &p)
{
    if (n >= iommu::MAX_FUNCTIONS) return;   // the scan may have left functions out: not all below are known
    for (u32 i = 0; i < n; i++) {
        const HostFn &b = fns[i];
        if (b.segment != f.segment || b.vf || (host_pci_read(b, PCI_HEADER) >> 16 & 0x7f) != 1) continue;
        const u32 buses = host_pci_read(b, PCI_BUSES);
        const u8 sec = u8(buses >> 8), sub = u8(buses >> 16);
        if (sec != f.bus) continue;
        for (u32 j = 0; j < n; j++) {
            const HostFn &o = fns[j];
            if (o.segment != f.segment || o.bus < sec || o.bus > sub) continue;
            bool mine = false;
            for (u32 k = 0; k < c.pci_count; k++) mine |= same(o, c.pci[k]);
            if (!mine) return;   // someone else's (or no one's) below the same bridge
        }
        p.sbr_bridge = b;
        p.sbr = true;
        return;
    }
}

// After a reset: the BARs as Keel found them, PCIe Device and Link Control as the firmware set
// them (a reset takes Max Payload Size back to 128 bytes, and it must match the port's),
// decoding on, INTx and Bus Master off. (The status halves are written 0: their RW1C bits stay.)
void restore(GuestPci &p)
{
    const HostFn &f = p.host;
    for (u32 b = 0; b < PciFunction::BARS; b++) host_pci_write(f, PCI_BAR0 + 4 * b, p.saved_bars[b]);
    if (p.pcie) {
        host_pci_write(f, p.pcie + 8, p.saved_devctl & ~DEVCTL_FLR);
        host_pci_write(f, p.pcie + 0x10, p.saved_linkctl);
    }
    host_pci_write(f, PCI_COMMAND, CMD_MEM | CMD_INTX_OFF);
}

bool same_fn(const HostFn &a, const HostFn &b) { return a.segment == b.segment && a.sid() == b.sid(); }

// After a reset's 100 ms: a function may answer configuration requests with Retry for up to 1 s
// more (PCIe 6.6.1), which ECAM reads return as Vendor ID 0x0001 (or all ones). (A VF's Vendor
// ID always reads all ones; it is ready 100 ms after its FLR: SR-IOV 2.2.2.)
void wait_ready(const HostFn &f)
{
    if (f.vf) return;
    for (u32 i = 0; i < 1000; i++) {
        const u32 vendor = host_pci_read(f, 0) & 0xffff;
        if (vendor != 0xffff && vendor != 0x0001) return;
        time::delay_us(1000);
    }
}

// Resets function k of the guest: Function Level Reset (PCIe 6.6.2: pending transactions drained,
// bounded, FLR, 100 ms), or its bridge's Secondary Bus Reset (PCI-to-PCI Bridge 3.2.5.18: held
// at least 1 ms; then 100 ms, and up to 1 s more while the function answers configuration
// requests with Retry, PCIe 6.6.1), once per bridge (an earlier function of the guest behind the
// same bridge was reset with it). Then restore(); after a bus reset, of every function of the
// guest below that bridge (one reset earlier by FLR was reset again). A bus reset is checked: the
// Interrupt Disable bit set before it must read back clear.
void reset(Guest &g, u32 k)
{
    GuestPci &p = g.pcis[k];
    const HostFn &f = p.host;
    host_pci_write(f, PCI_COMMAND, (host_pci_read(f, PCI_COMMAND) & 0xffff & ~CMD_MASTER) | CMD_INTX_OFF);
    if (p.flr) {
        for (u32 i = 0; i < 100 && (host_pci_read(f, p.pcie + 8) >> 16 & DEVSTA_TRANSACTIONS); i++) time::delay_us(1000);
        const u32 ctl = host_pci_read(f, p.pcie + 8) & 0xffff;
        host_pci_write(f, p.pcie + 8, ctl | DEVCTL_FLR);
        time::delay_us(100'000);
        wait_ready(f);
    } else if (p.sbr) {
        bool done = false;
        for (u32 j = 0; j < k; j++) done |= g.pcis[j].sbr && same_fn(g.pcis[j].sbr_bridge, p.sbr_bridge);
        if (!done) {
            const HostFn &b = p.sbr_bridge;
            const u32 ctl = host_pci_read(b, PCI_BRIDGE_CONTROL);
            host_pci_write(b, PCI_BRIDGE_CONTROL, ctl | BRIDGE_SBR);
            time::delay_us(2000);
            host_pci_write(b, PCI_BRIDGE_CONTROL, ctl & ~BRIDGE_SBR);
            time::delay_us(100'000);
            wait_ready(f);
            const bool reset_seen = !(host_pci_read(f, PCI_COMMAND) & CMD_INTX_OFF);
            if (reset_seen)
                log_info("guest %s: device %04x:%02x:%02x.%u reset (secondary bus reset at %04x:%02x:%02x.%u)", g.name,
                         f.segment, f.bus, f.dev, f.fn, b.segment, b.bus, b.dev, b.fn);
            else
                log_error("guest %s: device %04x:%02x:%02x.%u: the secondary bus reset at %04x:%02x:%02x.%u did not "
                          "reset it", g.name, f.segment, f.bus, f.dev, f.fn, b.segment, b.bus, b.dev, b.fn);
            const u32 buses = host_pci_read(b, PCI_BUSES);
            const u8 sec = u8(buses >> 8), sub = u8(buses >> 16);
            for (u32 j = 0; j < g.npcis; j++) {
                const HostFn &o = g.pcis[j].host;
                if (j != k && o.segment == b.segment && o.bus >= sec && o.bus <= sub) restore(g.pcis[j]);
            }
        }
    }
    restore(p);
}

// Why guest gi's k-th [[guest.pci]] cannot be had, or nullptr (p filled in).
const char *check(const KeelConfig &cfg, u32 gi, u32 k, const HostFn *fns, const u32 *group, u32 n, GuestPci &p,
                  char *buf, usize len)
{
    const GuestConfig &c = cfg.guests[gi];
    const PciConfig &pc = c.pci[k];
    if (!iommu_on()) return "no IOMMU is on: a device is given to a guest only behind DMA remapping";
    u32 at = n;
    for (u32 i = 0; i < n; i++)
        if (same(fns[i], pc)) at = i;
    if (at == n) return "no such PCI function on this machine";
    const HostFn &f = fns[at];
    if (is_bridge(f)) return "a bridge or host bridge: only endpoints are given to guests";
    if (cfg.has_management_nic && same(f, cfg.management_nic)) {
        format(buf, len, "Keel's management NIC ([keel] management_nic, line %u)", cfg.management_nic.line);
        return buf;
    }
    if (storage_owns(f)) return "one of Keel's drives, holding a guest's disk";
    if (sriov_pf(f)) return "the physical function of Keel's SR-IOV VFs ([keel] sriov): it stays Keel's";
    for (u32 i = 0; i < nclaims_; i++)
        if (claims_[i].fn.sid() == f.sid() && claims_[i].fn.segment == f.segment) {
            const StrView other = cfg.guests[claims_[i].guest].name;
            format(buf, len, "already given to guest \"%.*s\" (line %u)", int(other.n), other.p, claims_[i].line);
            return buf;
        }
    if (iommu_rmrr_device(f)) return "the firmware keeps memory DMA-reachable for it (an RMRR)";
    for (u32 i = 0; i < n; i++) {
        if (i == at || group[i] != group[at] || is_bridge(fns[i])) continue;
        bool mine = false;
        for (u32 j = 0; j < c.pci_count; j++) mine |= same(fns[i], c.pci[j]);
        if (!mine) {
            format(buf, len, "its IOMMU group also holds %04x:%02x:%02x.%u, which is not given to this guest (a group "
                   "goes whole to one guest)", fns[i].segment, fns[i].bus, fns[i].dev, fns[i].fn);
            return buf;
        }
    }
    p.host = f;
    if (const char *why = describe(p)) return why;
    if (!p.flr) find_sbr_bridge(c, f, fns, n, p);
    return nullptr;
}

} // namespace

bool passthrough_needed(const KeelConfig &cfg)
{
    for (u32 i = 0; i < cfg.guest_count; i++)
        if (cfg.guests[i].pci_count) return true;
    return false;
}

void claim_passthrough(const KeelConfig &cfg)
{
    if (!passthrough_needed(cfg)) return;
    static HostFn fns[iommu::MAX_FUNCTIONS];
    static u32 group[iommu::MAX_FUNCTIONS];
    const u32 n = iommu_host_groups(fns, group, iommu::MAX_FUNCTIONS);
    for (u32 gi = 0; gi < cfg.guest_count; gi++) {
        const GuestConfig &c = cfg.guests[gi];
        Guest &g = guests_[gi];
        g.npcis = 0;
        g.pci_refused = false;
        const u32 first = nclaims_;
        for (u32 k = 0; k < c.pci_count; k++) {
            const PciConfig &pc = c.pci[k];
            GuestPci &p = g.pcis[k];
            p = GuestPci{};
            p.guest = &g;
            p.index = k;
            char buf[160];
            const char *why = check(cfg, gi, k, fns, group, n, p, buf, sizeof(buf));
            if (!why) {
                PassthroughFunction probe(p.info, p);
                if (!probe.ok()) why = probe.why();
            }
            if (why) {
                log_error("guest %.*s: keel.toml line %u: device %04x:%02x:%02x.%u: %s; not started", int(c.name.n),
                          c.name.p, pc.line, pc.segment, pc.bus, pc.dev, pc.fn, why);
                g.pci_refused = true;
                continue;
            }
            claims_[nclaims_++] = {p.host, gi, pc.line};   // (a second naming in this guest is refused)
        }
        if (g.pci_refused) {
            nclaims_ = first;                              // a refused guest holds nothing
            continue;
        }
        g.npcis = c.pci_count;
        for (u32 k = 0; k < g.npcis; k++) {
            const GuestPci &p = g.pcis[k];
            storage_release(p.host);
            log_info("guest %.*s: device %04x:%02x:%02x.%u (%04x:%04x class %06x) given to it%s", int(c.name.n),
                     c.name.p, p.host.segment, p.host.bus, p.host.dev, p.host.fn, p.host.id & 0xffff, p.host.id >> 16,
                     p.host.class_code, p.flr ? "" : p.sbr ? "; it has no FLR: reset by its bridge's secondary bus reset"
                                                                   : "; it has no FLR and no bridge of its own: not reset between starts");
        }
    }
}

bool plug_passthrough(Guest &g)
{
    if (g.pci_refused) return false;
    if (!g.npcis) return true;
    const GuestConfig &c = *g.cfg;
    const u16 did = u16(GUEST_DID_BASE + (&g - guests_));
    if (Status s = iommu_domain_build(g.dma, did, g); !s) {
        log_error("guest %s: cannot build its DMA domain (%s); not started", g.name, err_name(s.error()));
        return false;
    }
    u64 next = WINDOW_BASE;
    for (u32 k = 0; k < g.npcis; k++) {
        GuestPci &p = g.pcis[k];
        const PciConfig &pc = c.pci[k];
        reset(g, k);
        p.fn = new (p.fn_storage) PassthroughFunction(p.info, p);
        p.bar_maps = 0;
        const PassthroughFunction::Window windows[] = {
            {PCI_MMIO32_BASE, PCI_MMIO32_BASE + PCI_MMIO32_SIZE},
            {pci_mmio64_base(c.memory), pci_mmio64_base(c.memory) + PCI_MMIO64_SIZE}};
        p.fn->set_map_windows(windows, 2);
        char who[48];
        format(who, sizeof(who), "guest %s device %02x:%02x.%u", g.name, pc.bus, pc.dev, pc.fn);
        const u32 slot = 1 + c.disk_count + c.nic_count + k;
        if (!p.fn->ok() || !p.fn->place_bars(next, WINDOW_END) || !iommu_attach(p.host, g.dma, who) ||
            !g.pci->plug(slot, *p.fn)) {
            log_error("guest %s: keel.toml line %u: device %04x:%02x:%02x.%u cannot be plugged at PCI device %u; not "
                      "started", g.name, pc.line, pc.segment, pc.bus, pc.dev, pc.fn, slot);
            return false;   // release() unplugs what was plugged
        }
    }
    // Every function as restore() left it (a later reset of one may not have undone an earlier
    // one's, and a function that did not come back from its reset must not go to the guest).
    for (u32 k = 0; k < g.npcis; k++) {
        const GuestPci &p = g.pcis[k];
        // (A VF's Memory Space bit is its PF's VF MSE, and its BAR registers read 0.)
        bool ok = p.host.vf || (host_pci_read(p.host, PCI_COMMAND) & (CMD_MEM | CMD_MASTER)) == CMD_MEM;
        for (u32 b = 0; b < PciFunction::BARS; b++)
            if (p.bars[b].size) ok &= (host_pci_read(p.host, PCI_BAR0 + 4 * b) & ~0xfu) == (p.saved_bars[b] & ~0xfu);
        if (!ok) {
            const PciConfig &pc = c.pci[k];
            log_error("guest %s: keel.toml line %u: device %04x:%02x:%02x.%u lost its BARs or decoding after its reset; "
                      "not started", g.name, pc.line, pc.segment, pc.bus, pc.dev, pc.fn);
            return false;
        }
    }
    return true;
}

bool route_passthrough_irqs(Guest &g)
{
    const u32 dest = smp::apic_id(g.vcpus[0].cpu);
    for (u32 k = 0; k < g.npcis; k++) {
        GuestPci &p = g.pcis[k];
        const PciConfig &pc = g.cfg->pci[k];
        p.interrupts = 0;
        if (!p.fn || !p.fn->vectors()) continue;
        const bool msi = p.fn->uses_msi();
        if (!iommu_irq_remapping()) {
            log_error("guest %s: keel.toml line %u: device %04x:%02x:%02x.%u: its %s interrupts need interrupt "
                      "remapping, which is not on; not started", g.name, pc.line, pc.segment, pc.bus, pc.dev, pc.fn,
                      msi ? "MSI" : "MSI-X");
            return false;
        }
        // Masked (MSI: off) while the entries are written, then enabled and unmasked: what the
        // device raises is only ever an entry Keel made, for this device's source-id. A function
        // with both shows the guest MSI-X only: its MSI stays off.
        msi_off(p);
        if (!msi) {
            host_pci_write(p.host, p.msix, host_pci_read(p.host, p.msix) | MSIX_MASK_ALL | MSIX_ENABLE);
            for (u32 n = 0; n < p.info.msix_vectors; n++) msix_entry(p, n)[3] = 1;
        }
        for (u16 n = 0; n < p.fn->vectors(); n++) {
            GuestPci::Vector &v = p.vectors[n];
            v.p = &p;
            v.n = n;
            auto host = irq_vector_alloc(device_irq, &v);
            if (!host) {
                log_error("guest %s: keel.toml line %u: no host interrupt vector left for its device; not started",
                          g.name, pc.line);
                return false;   // release() takes down what was routed
            }
            auto irte = iommu_irte_alloc(p.host.sid(), dest, *host);
            if (!irte) {
                irq_vector_free(*host);
                log_error("guest %s: keel.toml line %u: no interrupt remapping entry left for its device (%s); not "
                          "started", g.name, pc.line, err_name(irte.error()));
                return false;
            }
            v.host = *host;
            v.irte = *irte;
            const IommuMsi m = iommu_irte_msi(v.irte);
            if (msi) {
                // One message (Multiple Message Enable 0), SHV clear: the handle alone names the
                // entry. A remappable address's upper half is 0, so a 32-bit capability takes it.
                host_pci_write(p.host, p.msi + 4, m.addr_lo);
                if (p.msi64) host_pci_write(p.host, p.msi + 8, m.addr_hi);
                host_pci_write(p.host, msi_data_reg(p), m.data & 0xffff);
                if (p.msi_maskable) host_pci_write(p.host, msi_mask_reg(p), ~1u);
                continue;
            }
            volatile u32 *e = msix_entry(p, n);
            e[0] = m.addr_lo;
            e[1] = m.addr_hi;
            e[2] = m.data;
            e[3] = 0;
        }
        if (msi) host_pci_write(p.host, p.msi, (host_pci_read(p.host, p.msi) & ~MSI_MME) | MSI_ENABLE);
        else host_pci_write(p.host, p.msix, (host_pci_read(p.host, p.msix) | MSIX_ENABLE) & ~MSIX_MASK_ALL);
    }
    return true;
}

void unplug_passthrough(Guest &g)
{
    for (u32 k = 0; k < g.npcis; k++) {
        GuestPci &p = g.pcis[k];
        if (!p.fn) continue;
        unroute(p);
        host_pci_write(p.host, PCI_COMMAND, (host_pci_read(p.host, PCI_COMMAND) & 0xffff & ~CMD_MASTER) | CMD_INTX_OFF);
        iommu_detach(p.host, g.dma);
    }
    // Every function quiet and detached before any is reset (a bus reset resets its siblings too).
    for (u32 k = 0; k < g.npcis; k++) {
        if (!g.pcis[k].fn) continue;
        reset(g, k);
        g.pcis[k].fn = nullptr;
    }
    iommu_domain_destroy(g.dma);
}

void passthrough_fault(u16 segment, u16 sid)
{
    for (u32 i = 0; i < nclaims_; i++) {
        const Claim &c = claims_[i];
        if (c.fn.segment != segment || c.fn.sid() != sid) continue;
        Guest &g = guests_[c.guest];
        for (u32 k = 0; k < g.npcis; k++)
            if (g.pcis[k].host.sid() == sid && g.pcis[k].host.segment == segment)
                __atomic_fetch_add(&g.pcis[k].faults, 1, __ATOMIC_RELAXED);
    }
}

void print_passthrough_stats(Guest &g, bool asked)
{
    for (u32 k = 0; k < g.npcis; k++) {
        const GuestPci &p = g.pcis[k];
        console::report(asked, Level::info, "stats %s pci=%u device=%04x:%02x:%02x.%u interrupts=%lu dma_faults=%lu "
                        "filtered=%lu bar_maps=%lu", g.name, k, p.host.segment, p.host.bus, p.host.dev, p.host.fn,
                        __atomic_load_n(&p.interrupts, __ATOMIC_RELAXED), __atomic_load_n(&p.faults, __ATOMIC_RELAXED),
                        p.fn ? p.fn->refused() : 0, __atomic_load_n(&p.bar_maps, __ATOMIC_RELAXED));
    }
}

// ------------------------------------------------------------ Keel's DMA canary (tests)

namespace {
PhysAddr canary_;
bool canary_on_;
constexpr unsigned CANARY_ORDER = 9;                 // 2 MiB, 2 MiB aligned: what a DMA sweep by 2 MiB hits
constexpr u64 CANARY_MIN = 64 * MiB;                 // above any small guest's own RAM addresses
u64 canary_word(u64 i) { return (i + 1) * 0x9e3779b97f4a7c15ull ^ 0x4b45454c43414e41ull; }
} // namespace

void dma_canary_arm()
{
    PhysAddr rejects[64];
    u32 n = 0;
    for (;;) {
        auto b = mm::alloc(CANARY_ORDER);
        if (!b) break;
        if (b->raw() >= CANARY_MIN) {
            canary_ = *b;
            canary_on_ = true;
            break;
        }
        if (n == 64) {
            mm::free(*b, CANARY_ORDER);
            break;
        }
        rejects[n++] = *b;
    }
    for (u32 i = 0; i < n; i++) mm::free(rejects[i], CANARY_ORDER);
    if (!canary_on_) {
        log_error("dma canary: no 2 MiB block above %lu MiB", CANARY_MIN / MiB);
        return;
    }
    u64 *w = mm::phys_ptr<u64>(canary_);
    for (u64 i = 0; i < (PAGE_SIZE << CANARY_ORDER) / 8; i++) w[i] = canary_word(i);
    log_info("dma canary: 2 MiB of Keel's memory at host %lx", canary_.raw());
}

void dma_canary_check()
{
    if (!canary_on_) return;
    const u64 *w = mm::phys_ptr<const u64>(canary_);
    for (u64 i = 0; i < (PAGE_SIZE << CANARY_ORDER) / 8; i++)
        if (w[i] != canary_word(i)) {
            log_error("dma canary: CORRUPTED at host %lx", canary_.raw() + 8 * i);
            return;
        }
    log_info("dma canary: intact at host %lx", canary_.raw());
}

// ------------------------------------------------------------ the real device (HostPort)

u64 GuestPci::bar_read(u32 bar, u64 offset, u8 size)
{
    volatile u8 *at = bars[bar].map + offset;
    switch (size) {
    case 1: return *at;
    case 2: return *reinterpret_cast<volatile u16 *>(at);
    case 4: return *reinterpret_cast<volatile u32 *>(at);
    default: return *reinterpret_cast<volatile u64 *>(at);
    }
}

void GuestPci::bar_write(u32 bar, u64 offset, u8 size, u64 value)
{
    volatile u8 *at = bars[bar].map + offset;
    switch (size) {
    case 1: *at = u8(value); break;
    case 2: *reinterpret_cast<volatile u16 *>(at) = u16(value); break;
    case 4: *reinterpret_cast<volatile u32 *>(at) = u32(value); break;
    default: *reinterpret_cast<volatile u64 *>(at) = value; break;
    }
}

void GuestPci::set_bus_master(bool on)
{
    const u32 cmd = host_pci_read(host, PCI_COMMAND) & 0xffff;
    host_pci_write(host, PCI_COMMAND, (on ? cmd | CMD_MASTER : cmd & ~CMD_MASTER) | CMD_MEM | CMD_INTX_OFF);
}

// Under the guest's bus lock, the only place its nested tables change while it runs.
bool GuestPci::map_bar(u32 bar, const BarMapping &m)
{
    for (u32 i = 0; i < m.count; i++) {
        const BarMapping::Range &r = m.ranges[i];
        if (!guest->space.map(GuestPhys(r.guest), PhysAddr(bars[bar].base + r.offset), r.size, false, CacheType::uc)) {
            BarMapping done = m;
            done.count = i;
            unmap_bar(bar, done);
            return false;   // overlaps another mapped BAR (the guest's doing), or no memory: it traps
        }
    }
    __atomic_fetch_add(&bar_maps, 1, __ATOMIC_RELAXED);
    return true;
}

// The translations may live on in a CPU running one of the guest's vCPUs until its next entry;
// they reach only this BAR (never the MSI-X pages), which stays the guest's until release(), and
// no table is freed before destroy().
void GuestPci::unmap_bar(u32 bar, const BarMapping &m)
{
    bool flush = false;
    for (u32 i = 0; i < m.count; i++) {
        const BarMapping::Range &r = m.ranges[i];
        auto changed = guest->space.unmap(GuestPhys(r.guest), r.size);
        if (!changed) log_error("guest %s: BAR%u's mapping at %lx not taken out (%s)", guest->name, bar, r.guest,
                                err_name(changed.error()));
        else flush |= *changed;
    }
    if (flush) virt::flush_all_guest_tlbs();
}

} // namespace hv

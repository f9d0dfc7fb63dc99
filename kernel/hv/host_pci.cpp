// The host's PCI functions, through the ECAM windows of the ACPI MCFG: what
// Keel's own drivers (its NVMe drives) and the IOMMU need of the host's bus.
// Every bus a window reaches from its first bus, following bridges, is
// scanned; each bus's 1 MiB of configuration space is mapped (uncached) when
// first read. Used on the boot CPU while Keel starts, before guests run.
#include "arch/x86_64/mm.hpp"
#include "kernel/hv/internal.hpp"
#include "kernel/lib/console.hpp"

namespace hv {
namespace {

struct Window {
    u64 base;
    u16 segment;
    u8 start, end;
    u8 *bus[256];
};

struct Ecam {
    Window w[Mcfg::MAX];
    u32 n;
    bool ready;
};
Ecam ecam_{};

volatile u32 *at(const HostFn &f, u32 off)
{
    if (f.window >= ecam_.n) return nullptr;
    Window &x = ecam_.w[f.window];
    if (f.bus < x.start || f.bus > x.end || f.dev > 31 || f.fn > 7 || off > 0xffc) return nullptr;
    if (!x.bus[f.bus]) {
        x.bus[f.bus] = reinterpret_cast<u8 *>(mm::map_mmio(PhysAddr(x.base + (u64(f.bus) << 20)), MiB).raw());
        if (!x.bus[f.bus]) return nullptr;
    }
    return reinterpret_cast<volatile u32 *>(x.bus[f.bus] + (u32(f.dev) << 15 | u32(f.fn) << 12 | (off & 0xffc)));
}

void init()
{
    if (ecam_.ready) return;
    ecam_.ready = true;
    const Mcfg &m = boot_acpi().mcfg;
    for (usize i = 0; i < m.count && ecam_.n < Mcfg::MAX; i++) {
        Window &w = ecam_.w[ecam_.n++];
        w.base = m.entries[i].base;
        w.segment = m.entries[i].segment;
        w.start = m.entries[i].start_bus;
        w.end = m.entries[i].end_bus;
    }
    if (!ecam_.n) log_error("pci: no ECAM (ACPI MCFG): Keel cannot reach the host's PCI devices");
}

} // namespace

u32 host_pci_read(const HostFn &f, u32 off)
{
    volatile u32 *p = at(f, off);
    return p ? *p : ~0u;
}

void host_pci_write(const HostFn &f, u32 off, u32 v)
{
    if (volatile u32 *p = at(f, off)) *p = v;
}

// Depth-first from each window's first bus, through bridges' secondary buses;
// then sorted into PCI order (segment, bus, device, function).
u32 host_pci_scan(HostFn *out, u32 max)
{
    init();
    u32 n = 0;
    for (u32 wi = 0; wi < ecam_.n; wi++) {
        bool seen[256] = {};
        u8 stack[256];
        u32 sp = 0;
        stack[sp++] = ecam_.w[wi].start;
        while (sp) {
            const u8 bus = stack[--sp];
            if (seen[bus]) continue;
            seen[bus] = true;
            for (u8 dev = 0; dev < 32; dev++) {
                for (u8 fn = 0; fn < 8; fn++) {
                    HostFn f{ecam_.w[wi].segment, bus, dev, fn, wi, 0, 0};
                    const u32 id = host_pci_read(f, 0);
                    if ((id & 0xffff) == 0xffff || id == 0) {
                        if (fn == 0) break;
                        continue;
                    }
                    f.id = id;
                    f.class_code = host_pci_read(f, PCI_CLASS) >> 8;
                    const u32 hdr = host_pci_read(f, PCI_HEADER) >> 16 & 0xff;
                    if ((hdr & 0x7f) == 1) {
                        const u8 sec = u8(host_pci_read(f, PCI_BUSES) >> 8);
                        if (sec > bus && !seen[sec] && sp < 256) stack[sp++] = sec;
                    }
                    if (n < max) out[n++] = f;
                    if (fn == 0 && !(hdr & 0x80)) break;   // not multi-function
                }
            }
        }
    }
    // SR-IOV virtual functions are not found by a scan (their vendor ID reads all ones, their
    // PF need not be multi-function): each enabled PF's VFs by its capability (PCIe 9.3.3).
    for (u32 i = 0, pfs = n; i < pfs; i++) {
        const HostFn pf = out[i];
        const u32 cap = host_pci_ext_cap(pf, 0x0010);
        if (!cap || !(host_pci_read(pf, cap + 8) & 1)) continue;   // VF Enable
        const u32 num = host_pci_read(pf, cap + 0x10) & 0xffff, route = host_pci_read(pf, cap + 0x14);
        const u32 first = route & 0xffff, stride = route >> 16;
        const u16 vf_device = u16(host_pci_read(pf, cap + 0x18) >> 16);
        for (u32 k = 1; k <= num && k <= 256 && n < max; k++) {
            const u32 rid = u32(pf.sid()) + first + (k - 1) * stride;
            if (rid > 0xffff || (k > 1 && !stride)) break;
            HostFn v{pf.segment, u8(rid >> 8), u8(rid >> 3 & 31), u8(rid & 7), pf.window, 0, 0};
            const u32 cls = host_pci_read(v, PCI_CLASS);
            if (cls == ~0u) continue;                    // not reachable through this window
            v.id = (pf.id & 0xffff) | u32(vf_device) << 16;
            v.class_code = cls >> 8;
            v.vf = u16(k);
            v.pf_sid = pf.sid();
            out[n++] = v;
        }
    }
    auto key = [](const HostFn &f) { return u64(f.segment) << 16 | u64(f.bus) << 8 | f.dev << 3 | f.fn; };
    for (u32 i = 1; i < n; i++)
        for (u32 j = i; j > 0 && key(out[j]) < key(out[j - 1]); j--) {
            const HostFn t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    return n;
}

// A capability's offset in the list at 0x34 (0: none), at most 48 hops.
u32 host_pci_cap(const HostFn &f, u8 id)
{
    if (!(host_pci_read(f, PCI_COMMAND) >> 16 & (1u << 4))) return 0;   // status: capability list
    u32 off = host_pci_read(f, 0x34) & 0xfc;
    for (u32 hops = 0; off >= 0x40 && hops < 48; hops++) {
        const u32 v = host_pci_read(f, off);
        if ((v & 0xff) == id) return off;
        off = v >> 8 & 0xfc;
    }
    return 0;
}

// An extended capability's offset (PCIe, from 0x100; 0: none), at most 480 hops.
u32 host_pci_ext_cap(const HostFn &f, u16 id)
{
    u32 off = 0x100;
    for (u32 hops = 0; off >= 0x100 && off <= 0xffc && hops < 480; hops++) {
        const u32 v = host_pci_read(f, off);
        if (v == 0 || v == ~0u) return 0;
        if ((v & 0xffff) == id) return off;
        off = v >> 20 & 0xffc;
    }
    return 0;
}

// BAR0 (memory; 64-bit or 32-bit) sized with decoding off, then memory space
// and bus mastering on, INTx off; at most `max_map` bytes of it mapped uncached.
HostBar host_pci_bar(const HostFn &f, u32 reg, u32 reg_end)
{
    HostBar b;
    const u32 lo = host_pci_read(f, reg);
    if (lo & 1) {
        b.io = true;
        return b;
    }
    b.wide = (lo >> 1 & 3) == 2;
    b.prefetchable = lo & 8;
    if (b.wide && reg + 8 > reg_end) {
        b.cut = true;
        return b;
    }
    const u32 hi = b.wide ? host_pci_read(f, reg + 4) : 0;
    host_pci_write(f, reg, ~0u);
    u64 mask = host_pci_read(f, reg) & ~0xfu;
    host_pci_write(f, reg, lo);
    if (b.wide) {
        host_pci_write(f, reg + 4, ~0u);
        mask |= u64(host_pci_read(f, reg + 4)) << 32;
        host_pci_write(f, reg + 4, hi);
    } else {
        mask |= 0xffffffff00000000ull;
    }
    if (!(mask & ~0xfull & 0xffffffffull) && !(b.wide && mask >> 32)) return b;   // nothing there
    b.size = ~mask + 1;
    b.base = (u64(hi) << 32 | lo) & ~0xfull;
    return b;
}

volatile u8 *host_pci_map_bar0(const HostFn &f, u64 max_map, const char *who)
{
    const u32 cmd = host_pci_read(f, PCI_COMMAND) & 0xffff;
    host_pci_write(f, PCI_COMMAND, cmd & ~(CMD_MEM | CMD_MASTER));
    const HostBar bar = host_pci_bar(f, PCI_BAR0, PCI_BAR0 + 24);
    if (bar.io) {
        log_error("%s: BAR0 is an I/O BAR", who);
        host_pci_write(f, PCI_COMMAND, cmd);
        return nullptr;
    }
    const u64 base = bar.base, size = bar.size;
    if (!base || size < PAGE_SIZE) {
        log_error("%s: BAR0 %s (base %lx, %lu bytes): not usable", who, base ? "too small" : "not assigned", base, size);
        host_pci_write(f, PCI_COMMAND, cmd);
        return nullptr;
    }
    host_pci_write(f, PCI_COMMAND, cmd | CMD_MEM | CMD_MASTER | CMD_INTX_OFF);
    auto *p = reinterpret_cast<volatile u8 *>(mm::map_mmio(PhysAddr(base), min(size, max_map)).raw());
    if (!p) log_error("%s: cannot map BAR0 at %lx", who, base);
    return p;
}

} // namespace hv

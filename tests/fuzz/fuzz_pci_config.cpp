// libFuzzer target for the PCI host bridge (kernel/pci/pci.cpp): the input is
// a guest's sequence of accesses (ECAM, 0xCF8-0xCFF at every width, BARs
// wherever the guest put them, MSI-X and MSI signals and INTx from the device), with a
// virtio-blk function (kernel/virtio/virtio_pci.cpp) at device 2 whose BAR the
// guest pokes too, a passed-through function (kernel/pci/passthrough.cpp) at
// device 3 shaped like QEMU's NVMe (its MSI-X table of 65 entries at 0x2000 of
// BAR0, the PBA at 0x3000), and one at device 4 shaped like QEMU's edu (MSI
// only: the guest sees one MSI vector); device 1 has both MSI-X and MSI (8
// vectors, maskable). It must never crash or trip ASan/UBSan, and what is
// read-only stays so: the IDs, the BARs' size and type bits, the capability
// list, the MSI-X capability's table size and locations, the MSI capability's
// Multiple Message Capable, 64-bit and masking bits, the NVMe-shaped function's
// PCI Express capability (read-only, filtered). The passed-through
// functions' devices never see an access outside their BARs or into NVMe's
// MSI-X table or PBA, and their Bus Master follows the guest's Command register.
#include <stddef.h>
#include <stdint.h>

#include "kernel/pci/passthrough.hpp"
#include "kernel/pci/pci.hpp"
#include "kernel/virtio/blk.hpp"
#include "kernel/virtio/virtio_pci.hpp"

namespace {

void check(bool c)
{
    if (!c) __builtin_trap();
}

u32 msis, lines;
void on_msi(void *, u64 addr, u32) { msis += (addr >> 20) == 0xfee; }
void on_intx(void *, u32 gsi, bool) { check(gsi >= 16 && gsi < 20), lines++; }

class Device final : public PciFunction {
public:
    Device()
    {
        set_ids({0x1af4, 0x1041, 0x020000, 1, 0x1af4, 1});
        set_bar(0, BarType::mem32, 0x1000, false);
        set_bar(2, BarType::mem64, 0x4000, true);
        set_interrupt_pin(2);
        const u8 vendor[14] = {16, 1, 2, 3};
        add_capability(0x09, vendor, sizeof(vendor));
        add_msix(PciFunction::MAX_MSIX, 2, 0, 2, 0x1000);
        add_msi(8, true);
    }
    u64 bar_read(u32 bar, u64 offset, u8 size) override
    {
        check(bar < 6 && offset < bar_size(bar) && (size == 1 || size == 2 || size == 4 || size == 8));
        return offset;
    }
    void bar_write(u32 bar, u64 offset, u8 size, u64) override
    {
        check(bar < 6 && offset < bar_size(bar) && (size == 1 || size == 2 || size == 4 || size == 8));
    }
};

// The real device behind the passed-through function.
struct HostNvme final : HostPort {
    bool master = false;
    void touch(u32 bar, u64 offset, u8 size)
    {
        check(bar == 0 && offset + size <= 0x4000 && (size == 1 || size == 2 || size == 4 || size == 8));
        check(offset + size <= 0x2000 || offset >= 0x2000 + 65 * 16);   // the host's MSI-X table
        check(offset + size <= 0x3000 || offset >= 0x3010);             // its PBA
    }
    u64 bar_read(u32 bar, u64 offset, u8 size) override
    {
        touch(bar, offset, size);
        return ~0ull;
    }
    void bar_write(u32 bar, u64 offset, u8 size, u64) override { touch(bar, offset, size); }
    void set_bus_master(bool on) override
    {
        check(on != master);
        master = on;
    }
    // Direct mappings: never a page of the MSI-X table or PBA, never past the BAR.
    bool map_bar(u32 bar, const BarMapping &m) override
    {
        check(bar == 0 && m.count <= BarMapping::MAX_RANGES);
        for (u32 i = 0; i < m.count; i++) {
            const BarMapping::Range &r = m.ranges[i];
            check(r.offset % 4096 == 0 && r.size % 4096 == 0 && r.guest % 4096 == 0 && r.offset + r.size <= 0x4000);
            check(r.offset + r.size <= 0x2000);   // the table's page (0x2000) and the PBA's (0x3000) never
        }
        mapped++;
        return true;
    }
    void unmap_bar(u32 bar, const BarMapping &) override
    {
        check(bar == 0 && mapped > 0);
        mapped--;
    }
    u32 mapped = 0;
};

// QEMU's edu: BAR0 1 MiB, MSI only.
struct HostEdu final : HostPort {
    bool master = false;
    u32 mapped = 0;
    void touch(u32 bar, u64 offset, u8 size)
    {
        check(bar == 0 && offset + size <= 0x100000 && (size == 1 || size == 2 || size == 4 || size == 8));
    }
    u64 bar_read(u32 bar, u64 offset, u8 size) override
    {
        touch(bar, offset, size);
        return 0;
    }
    void bar_write(u32 bar, u64 offset, u8 size, u64) override { touch(bar, offset, size); }
    void set_bus_master(bool on) override
    {
        check(on != master);
        master = on;
    }
    bool map_bar(u32 bar, const BarMapping &m) override
    {
        check(bar == 0 && m.count == 1 && m.ranges[0].offset == 0 && m.ranges[0].size == 0x100000);
        mapped++;
        return true;
    }
    void unmap_bar(u32 bar, const BarMapping &) override
    {
        check(bar == 0 && mapped > 0);
        mapped--;
    }
};

HostFunctionInfo edu_info()
{
    HostFunctionInfo h;
    h.ids = {0x1234, 0x11e8, 0x00ff00, 0x10, 0x1af4, 0x1100};
    h.bars[0] = {PciFunction::BarType::mem32, 0x100000, false};
    h.msi_vectors = 1;
    return h;
}

HostFunctionInfo nvme_info()
{
    HostFunctionInfo h;
    h.ids = {0x1b36, 0x0010, 0x010802, 2, 0x1af4, 0x1100};
    h.bars[0] = {PciFunction::BarType::mem64, 0x4000, false};
    h.msix_vectors = 65;
    h.msix_table_offset = 0x2000;
    h.msix_pba_offset = 0x3000;
    // A version-2 PCI Express capability, shown read-only (pcie_view): the fuzzer's writes to it
    // must change nothing.
    const u8 pcie[8] = {0x10, 0x70, 0x02, 0x01, 0x01, 0x80, 0x00, 0x10};
    for (u32 i = 0; i < sizeof(pcie); i++) h.pcie[i] = pcie[i];
    h.pcie[0x0c] = 0x11, h.pcie[0x12] = 0x11;
    h.pcie_len = HostFunctionInfo::PCIE_MAX;
    return h;
}

struct Input {
    const uint8_t *p;
    size_t n;
    u64 take(unsigned bytes)
    {
        u64 v = 0;
        for (unsigned i = 0; i < bytes && n; i++, p++, n--) v |= u64(*p) << 8 * i;
        return v;
    }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    constexpr u64 ECAM = 0xe0000000;
    PciBus bus(ECAM, 16, {on_msi, on_intx, nullptr});
    Device dev;
    if (!bus.plug(1, dev)) __builtin_trap();
    // Guest RAM and a disk for the virtio function: rings the input places anywhere.
    static u8 ram[0x10000], disk[0x4000];
    __builtin_memset(ram, 0, sizeof ram);     // each input starts from the same guest
    GuestMemory mem;
    check(mem.add(GuestPhys(0x100000), sizeof ram, ram).ok());
    virtio::BlkDevice blk(disk, sizeof disk, false);
    virtio::BlkVirtio blkv(blk);
    virtio::VirtioPciFunction vfn(blkv, mem);
    check(vfn.ok() && bus.plug(2, vfn));
    HostNvme host;
    PassthroughFunction pt(nvme_info(), host);
    u64 next = 0xd0000000;
    const PassthroughFunction::Window windows[] = {{0xc0000000, 0xe0000000}};
    pt.set_map_windows(windows, 1);
    check(pt.ok() && pt.place_bars(next, 0xe0000000) && bus.plug(3, pt));
    HostEdu host_edu;
    PassthroughFunction edu(edu_info(), host_edu);
    edu.set_map_windows(windows, 1);
    check(edu.ok() && edu.uses_msi() && edu.place_bars(next, 0xe0000000) && bus.plug(4, edu));
    Input in{data, size};
    const u8 sizes[] = {1, 2, 4, 8};
    while (in.n) {
        const u8 op = u8(in.take(1));
        const u8 sz = sizes[op >> 4 & 3];
        const bool write = op & 0x40;
        u64 value = write ? in.take(sz) : 0;
        switch (op & 7) {
        case 0: case 1: {           // ECAM: device 0-15, any register
            const u64 gpa = ECAM + (in.take(3) & 0x7ffff);
            bus.mmio(0, gpa, sz, write, value);
            if (!write && sz < 8) check(value >> 8 * sz == 0);
            break;
        }
        case 2: case 3: {           // the ports
            u32 v = u32(value);
            check(bus.io(u16(0xcf8 + (in.take(1) & 7)), sz > 4 ? 4 : sz, !write, v));
            break;
        }
        case 4: case 5: {           // near where the guest put the BARs
            const u64 base = op & 1 ? (op & 0x80 ? vfn.bar_base(0) : op & 8 ? edu.bar_base(0) : pt.bar_base(0))
                                    : op & 0x80 ? dev.bar_base(0) : dev.bar_base(2);
            const u64 gpa = base + (in.take(2) & 0x7fff) - 0x100;
            if (bus.covers(gpa)) bus.mmio(0, gpa, sz, write, value);
            break;
        }
        case 6:
            dev.signal_msix(u16(in.take(1) & 63));
            dev.signal_msi(u16(in.take(1) & 15));
            dev.signal_vector(u16(in.take(1) & 63));
            pt.signal_msix(u16(in.take(1) & 63));
            edu.signal_vector(u16(in.take(1) & 3));
            vfn.transport().run_pending();
            break;
        default:
            dev.set_intx(op & 0x80);
            break;
        }
    }
    // Read-only stays read-only.
    check(bus.config_read(1, 0, 0, 4) == 0x10411af4u);
    check(bus.config_read(0, 0, 0x08, 4) >> 8 == 0x060000);
    check((bus.config_read(1, 0, 0x10, 4) & 0xfff) == 0);
    check((bus.config_read(1, 0, 0x18, 4) & 0x3fff) == 0xc);
    check(bus.config_read(1, 0, 0x34, 1) == 0x40);
    const u32 msix = bus.config_read(1, 0, 0x41, 1);
    check(bus.config_read(1, 0, msix, 1) == 0x11);
    check((bus.config_read(1, 0, msix + 2, 2) & 0x7ff) == PciFunction::MAX_MSIX - 1);
    check(bus.config_read(1, 0, msix + 4, 4) == 2 && bus.config_read(1, 0, msix + 8, 4) == 0x1002);
    const u32 msi = bus.config_read(1, 0, msix + 1, 1);
    check(bus.config_read(1, 0, msi, 1) == 0x05 && bus.config_read(1, 0, msi + 1, 1) == 0);
    check((bus.config_read(1, 0, msi + 2, 2) & 0x18e) == 0x186);   // 8 vectors, 64-bit, maskable
    check(bus.config_read(1, 0, msi + 0x10, 4) >> 8 == 0);          // mask bits for 8 vectors only
    check(bus.config_read(1, 0, msi + 0x14, 4) >> 8 == 0);
    check(dev.msi_enabled_vectors() <= 8);
    check(bus.config_read(2, 0, 0, 4) == 0x10421af4u);
    check((bus.config_read(2, 0, 0x10, 4) & 0x7fff) == 0x4);
    check(bus.config_read(3, 0, 0, 4) == 0x00101b36u);
    check((bus.config_read(3, 0, 0x10, 4) & 0x3fff) == 0x4);
    check(host.master == bool(bus.config_read(3, 0, 0x04, 2) & 4));
    check(host.mapped <= 1);
    // Its PCI Express capability after the MSI-X one, as pcie_view made it, untouched.
    const u32 pcie = bus.config_read(3, 0, bus.config_read(3, 0, 0x34, 1) + 1, 1);
    check(bus.config_read(3, 0, pcie, 2) == 0x0010 && bus.config_read(3, 0, pcie + 2, 2) == 0x0002);
    check(bus.config_read(3, 0, pcie + 4, 4) == 0x00008001u && bus.config_read(3, 0, pcie + 8, 4) == 0);
    check(bus.config_read(3, 0, pcie + 0x0c, 4) == 0x11 && bus.config_read(3, 0, pcie + 0x10, 4) == 0x00110000u);
    check(bus.config_read(4, 0, 0, 4) == 0x11e81234u);
    check(bus.config_read(4, 0, 0x34, 1) == 0x40 && bus.config_read(4, 0, 0x40, 2) == 0x05);
    check((bus.config_read(4, 0, 0x42, 2) & 0x18e) == 0x180);        // 1 vector, 64-bit, maskable
    check(edu.msi_enabled_vectors() == 1 && bus.config_read(4, 0, 0x54, 4) >> 1 == 0);
    check(host_edu.master == bool(bus.config_read(4, 0, 0x04, 2) & 4));
    check(host_edu.mapped <= 1);
    check(bus.config_read(5, 0, 0, 4) == ~0u);
    return 0;
}

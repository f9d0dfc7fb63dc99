// The PC platform every guest gets, whatever its kernel format (Multiboot or
// Linux): the legacy area 0xA0000-0xFFFFF backed (a reset stub at F000:FFF0,
// a copy of the RSDP in the BIOS area), the guest's ACPI tables in the last
// page below 640 KiB, the IOAPIC, the ACPI power registers and PM timer, the
// PIT, the (inert) 8259 pair and a PCI Express host bridge with an empty bus
// 0. Rebuilt from scratch at every start of the
// guest: the legacy blocks are in the guest's block list, so release() frees
// them with its RAM.
#include "arch/x86_64/mm.hpp"
#include "arch/x86_64/time.hpp"
#include "kernel/guest/guest_acpi.hpp"
#include "kernel/hv/internal.hpp"
#include "kernel/lib/console.hpp"
#include "kernel/lib/new.hpp"

namespace hv {
namespace {

u64 guest_now(void *ctx) { return static_cast<Guest *>(ctx)->vcpus[0].arch->guest_tsc(); }

// 0xA0000-0xFFFFF: zeroed backing mapped read/write, but not RAM to the guest (its memory map
// says reserved). Returns the host view of 0xC0000-0xFFFFF (the BIOS area), or nullptr.
u8 *build_legacy_area(Guest &g)
{
    static constexpr struct { u64 gpa; unsigned order; } hole[] = {{0xa0000, 5}, {0xc0000, 6}};
    u8 *bios = nullptr;
    for (auto h : hole) {
        auto b = mm::alloc_zeroed(h.order);
        if (!b || g.nblocks == MAX_BLOCKS || !g.space.map(GuestPhys(h.gpa), *b, PAGE_SIZE << h.order)) {
            log_error("guest %s: no memory for its legacy area", g.name);
            if (b) mm::free(*b, h.order);
            return nullptr;
        }
        g.blocks[g.nblocks++] = {*b, u8(h.order)};
        if (h.gpa == 0xc0000) bios = mm::phys_ptr<u8>(*b);
    }
    // There is no BIOS, but a kernel may reboot by jumping to the reset vector (F000:FFF0):
    // what it finds there writes the ACPI reset register. mov al,6; mov dx,port; out dx,al; hlt; jmp $-1
    const u8 reset_stub[] = {0xb0, PowerModel::RESET_VALUE, 0xba, u8(PowerModel::RESET), u8(PowerModel::RESET >> 8),
                             0xee, 0xf4, 0xeb, 0xfd};
    __builtin_memcpy(bios + (0xffff0 - 0xc0000), reset_stub, sizeof(reset_stub));
    return bios;
}

} // namespace

bool build_platform(Guest &g, u64 &rsdp)
{
    u8 *bios = build_legacy_area(g);
    if (!bios) return false;

    GuestAcpiConfig ac;
    ac.base = GUEST_ACPI_BASE;
    ac.vcpus = g.nvcpus;
    ac.sleep_ctl_port = PowerModel::SLEEP_CTL;
    ac.sleep_sts_port = PowerModel::SLEEP_STS;
    ac.reset_port = PowerModel::RESET;
    ac.reset_value = PowerModel::RESET_VALUE;
    ac.s5_slp_typ = PowerModel::S5_TYP;
    ac.pm_timer_port = PowerModel::PM_TMR;
    ac.pcat_compat = true;
    ac.com1 = true;
    // PCI: ECAM below the IOAPIC, a 32-bit window above low RAM and a 64-bit one above all RAM
    // (1 GiB aligned): BARs go where no RAM is, and never into the nested tables.
    ac.pci.ecam_base = PCI_ECAM_BASE;
    ac.pci.mmio32_base = u32(PCI_MMIO32_BASE);
    ac.pci.mmio32_size = u32(PCI_MMIO32_SIZE);
    ac.pci.mmio64_base = pci_mmio64_base(g.cfg->memory);
    ac.pci.mmio64_size = PCI_MMIO64_SIZE;
    ac.pci.devices = PciBus::MAX_DEVICES;
    ac.pci.intx_gsi_base = PCI_INTX_GSI;
    // Built in place, in the guest's page (nothing runs the guest yet): a 4 KiB buffer on the
    // stack would be most of what a restart's deepest path uses.
    u8 *tables = g.mem.span(GuestPhys(ac.base), GUEST_ACPI_MAX_BYTES);
    auto layout = tables ? build_guest_acpi(ac, tables, GUEST_ACPI_MAX_BYTES) : Result<GuestAcpiLayout>(Err::range);
    if (!layout) {
        log_error("guest %s: cannot build its ACPI tables", g.name);
        return false;
    }
    // Where a PC's firmware leaves it (ACPI 6.5, 5.2.5.1): on a 16-byte boundary in the BIOS area.
    // Its XSDT/RSDT pointers are absolute, so the copy is as valid as the original.
    static_assert(GUEST_RSDP_COPY >= 0xe0000 && GUEST_RSDP_COPY + 36 <= 0xffff0 && GUEST_RSDP_COPY % 16 == 0);
    __builtin_memcpy(bios + (GUEST_RSDP_COPY - 0xc0000), tables + (layout->rsdp - ac.base), 36);
    rsdp = layout->rsdp;

    // COM1 is wired to IOAPIC pin 4 (the DSDT says so); every entry starts masked.
    g.ioapic.reset();
    g.ioapic.connect(ioapic_deliver, &g);
    g.ioapic_dev.attach(&g);
    bool ok = g.platform.add_mmio(&g.ioapic_dev);
    auto *power = new (g.power_storage) PowerModel(g.platform, time::tsc_hz(), guest_now, &g);
    ok = ok && g.platform.add_io(power, PowerModel::SLEEP_CTL, PowerModel::RESET);
    ok = ok && g.platform.add_io(power, PowerModel::PM_TMR, PowerModel::PM_TMR + 3);
    // The PIT is how Linux learns the TSC rate on AMD guests (it reads CPUID 0x15/0x16 only on
    // Intel); it counts, but raises no IRQ 0.
    auto *pit = new (g.pit_storage) PitModel(time::tsc_hz(), guest_now, &g);
    ok = ok && g.platform.add_io(pit, 0x40, 0x43);
    ok = ok && g.platform.add_io(pit, 0x61, 0x61);
    // The 8259s answer probes and delivers nothing (interrupts come from the IOAPIC and the APICs).
    auto *pic = new (g.pic_storage) PicModel();
    ok = ok && g.platform.add_io(pic, PicModel::MASTER, PicModel::MASTER + 1);
    ok = ok && g.platform.add_io(pic, PicModel::SLAVE, PicModel::SLAVE + 1);
    ok = ok && g.platform.add_io(pic, PicModel::ELCR, PicModel::ELCR + 1);
    // The host bridge: config through 0xCF8/0xCFC and ECAM, devices' BARs as the guest maps them.
    // Its sinks take the IOAPIC's and the APICs' locks under the bus's (order in pci.hpp).
    g.pci = new (g.pci_storage) PciBus(PCI_ECAM_BASE, PCI_INTX_GSI, PciBus::Sinks{msi_deliver, pci_intx, &g});
    ok = ok && g.platform.add_io(g.pci, PciBus::CONFIG_ADDRESS, PciBus::CONFIG_DATA + 3);
    ok = ok && g.platform.add_mmio(g.pci);
    // The watchdog's heartbeat port, for a guest that has one (armed by its first beat).
    g.heartbeat = nullptr;
    g.beats_seen = 0;
    g.beat_tsc = 0;
    if (g.cfg->watchdog_ns) {
        g.heartbeat = new (g.heartbeat_storage) HeartbeatModel();
        ok = ok && g.platform.add_io(g.heartbeat, HeartbeatModel::PORT, HeartbeatModel::PORT + 3);
    }
    if (!ok) log_error("guest %s: too many devices on its platform", g.name);
    return ok;
}

} // namespace hv

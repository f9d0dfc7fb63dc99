// A virtio device as a modern virtio-pci function (virtio 1.2 section 4.1):
// the PCI side (IDs, one BAR, the virtio capabilities, MSI-X) around a
// PciTransport that owns the registers. It is what a guest's PciBus plugs in.
//
// Identity (4.1.2): vendor 0x1af4, device 0x1040 + the virtio device ID,
// revision 1 (non-transitional: no legacy I/O BAR, so a legacy-only driver
// finds nothing it knows), subsystem vendor 0x1af4 and subsystem ID 0x40 +
// the device ID (4.1.2.1: a non-transitional device SHOULD use 0x40 or
// higher, so old drivers matching the subsystem ID of a transitional device
// do not bind). Linux matches the vendor and device ID only. INTA.
//
// BAR 0, 64-bit memory, not prefetchable (an ISR read clears it: a read has a
// side effect), BAR_BYTES, every structure in its own 4 KiB page so that a
// later fast path can map or route each page on its own:
//      0x0000  common configuration   (cfg_type 1)
//      0x1000  ISR status             (cfg_type 3)
//      0x2000  device configuration   (cfg_type 4)
//      0x3000  notify, 4-byte slots   (cfg_type 2, notify_off_multiplier 4)
//      0x4000  MSI-X table            (handled by PciFunction)
//      0x5000  MSI-X PBA              (handled by PciFunction)
//      0x6000-0x7fff reserved: reads 0, writes dropped
// Each capability's length is the transport's region size, so a driver sees
// exactly the registers that exist. No VIRTIO_PCI_CAP_PCI_CFG (cfg_type 5):
// firmware that needs it to reach a BAR above 4 GiB does not run here.
//
// MSI-X: one vector per queue plus one for configuration changes. With MSI-X
// enabled a vector goes out through signal_msix (pending in the PBA while
// masked); with it disabled every interrupt sets the ISR and raises INTA
// whatever vector was programmed (4.1.5.3-4). With MSI-X enabled, NO_VECTOR
// still sets the ISR bit but PciFunction keeps INTx from the IOAPIC: no
// interrupt, as 4.1.5.1.2 wants.
//
// Locking: bar_read/bar_write come without the bus lock and go straight to
// the transport. The transport's lock is taken before the bus's (INTx level
// changes and the MSI-X Enable query happen under it); nothing here calls the
// transport under the bus lock, so the order holds: transport, PCI bus, IOAPIC.
#pragma once

#include "kernel/pci/pci.hpp"
#include "kernel/virtio/pci_transport.hpp"

namespace virtio {

class VirtioPciFunction final : public PciFunction, public IrqSink {
public:
    static constexpr u32 BAR = 0;
    static constexpr u64 BAR_BYTES = 0x8000;
    static constexpr u32 COMMON_OFFSET = 0x0000;
    static constexpr u32 ISR_OFFSET = 0x1000;
    static constexpr u32 DEVICE_OFFSET = 0x2000;
    static constexpr u32 NOTIFY_OFFSET = 0x3000;
    static constexpr u32 MSIX_TABLE_OFFSET = 0x4000;
    static constexpr u32 MSIX_PBA_OFFSET = 0x5000;
    static constexpr u32 REGION_BYTES = 0x1000;     // the page each region has

    static constexpr u16 VENDOR = 0x1af4;
    static constexpr u16 DEVICE_BASE = 0x1040;
    static constexpr u16 SUBSYSTEM_BASE = 0x40;

    // DEVICE_NEEDS_RESET's one-line reason, for the hypervisor to print with
    // the guest's name. Called under the transport lock: it must not call back
    // into this function or its transport.
    using Report = void (*)(void *ctx, const char *reason);

    // `dev` and `mem` outlive this function. Check ok() before plugging it.
    VirtioPciFunction(VirtioDevice &dev, GuestMemory &mem, Report report = nullptr, void *report_ctx = nullptr);

    // Every part of the PCI description was accepted (BAR, capabilities, MSI-X).
    bool ok() const { return ok_; }
    // For the hypervisor: run_pending(), status, stats, last_error().
    PciTransport &transport() { return transport_; }
    u16 msix_vectors() const { return vectors_; }

    // PciFunction: accesses inside BAR 0 outside the MSI-X table and PBA.
    u64 bar_read(u32 bar, u64 offset, u8 size) override;
    void bar_write(u32 bar, u64 offset, u8 size, u64 value) override;

    // IrqSink.
    void raise(u16 vector) override;
    void raise_intx() override { set_intx(true); }
    void lower_intx() override { set_intx(false); }
    void needs_reset(const char *reason) override;
    bool vectors_enabled() override { return msix_on(); }

    // PCI class code for a virtio device ID (base class, subclass, interface).
    static u32 class_code(u16 device_id);

private:
    // The transport region and offset in it of BAR offset `offset`; false
    // outside every region (reserved space, or past a region's registers).
    bool decode(u64 offset, PciTransport::Region &r, u32 &off) const;
    bool add_virtio_cap(u8 cfg_type, u32 offset, u32 length, bool notify);

    const u16 vectors_;
    Report report_;
    void *report_ctx_;
    PciTransport transport_;
    bool ok_ = false;
};

} // namespace virtio

// A virtio device as a modern virtio-pci function (see virtio_pci.hpp).
#include "kernel/virtio/virtio_pci.hpp"

namespace virtio {

namespace {

constexpr u8 CAP_VENDOR = 0x09;
// virtio_pci_cap.cfg_type (4.1.4).
constexpr u8 CFG_COMMON = 1, CFG_NOTIFY = 2, CFG_ISR = 3, CFG_DEVICE = 4;
constexpr u8 CAP_BYTES = 16, NOTIFY_CAP_BYTES = 20;   // struct virtio_pci_cap, virtio_pci_notify_cap

u16 vectors_for(const VirtioDevice &dev)
{
    return u16(min<u16>(dev.num_queues(), PciTransport::MAX_QUEUES) + 1);
}

} // namespace

u32 VirtioPciFunction::class_code(u16 device_id)
{
    // Linux binds by vendor and device ID only; the class is what lspci shows.
    // virtio-blk is none of the storage subclasses that name a controller
    // interface (SCSI, IDE, AHCI, NVMe...), so "other".
    if (device_id == DEVICE_ID_BLOCK) return 0x018000;    // mass storage, other
    return 0xff0000;                                      // device does not fit any class
}

VirtioPciFunction::VirtioPciFunction(VirtioDevice &dev, GuestMemory &mem, Report report, void *report_ctx)
    : vectors_(vectors_for(dev)), report_(report), report_ctx_(report_ctx), transport_(dev, mem, *this, vectors_)
{
    static_assert(PciTransport::COMMON_BYTES <= REGION_BYTES && PciTransport::ISR_BYTES <= REGION_BYTES);
    static_assert(PciTransport::MAX_QUEUES * PciTransport::NOTIFY_MULTIPLIER <= REGION_BYTES);
    static_assert(PciTransport::MAX_QUEUES + 1 <= MAX_MSIX);
    static_assert(MSIX_PBA_OFFSET + REGION_BYTES <= BAR_BYTES);

    const u16 id = dev.device_id();
    set_ids({VENDOR, u16(DEVICE_BASE + id), class_code(id), 1, VENDOR, u16(SUBSYSTEM_BASE + id)});
    set_interrupt_pin(1);
    using R = PciTransport::Region;
    // A device configuration larger than its page would be cut short by the
    // capability's length: refuse it here rather than hide registers.
    const u32 device_bytes = transport_.region_bytes(R::device);
    ok_ = device_bytes <= REGION_BYTES && set_bar(BAR, BarType::mem64, BAR_BYTES, false) &&
          add_virtio_cap(CFG_COMMON, COMMON_OFFSET, transport_.region_bytes(R::common), false) &&
          add_virtio_cap(CFG_NOTIFY, NOTIFY_OFFSET, transport_.region_bytes(R::notify), true) &&
          add_virtio_cap(CFG_ISR, ISR_OFFSET, transport_.region_bytes(R::isr), false) &&
          // 4.1.4.6: the device capability is present only when the device has a configuration.
          (device_bytes == 0 || add_virtio_cap(CFG_DEVICE, DEVICE_OFFSET, device_bytes, false)) &&
          add_msix(vectors_, u8(BAR), MSIX_TABLE_OFFSET, u8(BAR), MSIX_PBA_OFFSET);
}

bool VirtioPciFunction::add_virtio_cap(u8 cfg_type, u32 offset, u32 length, bool notify)
{
    // struct virtio_pci_cap after cap_vndr and cap_next: cap_len, cfg_type, bar,
    // id (0: one structure of each type), padding[2], offset, length; the
    // notify capability adds notify_off_multiplier. All read-only.
    const u8 len = notify ? NOTIFY_CAP_BYTES : CAP_BYTES;
    const u32 mult = PciTransport::NOTIFY_MULTIPLIER;
    const u8 body[NOTIFY_CAP_BYTES - 2] = {
        len, cfg_type, u8(BAR), 0, 0, 0,
        u8(offset), u8(offset >> 8), u8(offset >> 16), u8(offset >> 24),
        u8(length), u8(length >> 8), u8(length >> 16), u8(length >> 24),
        u8(mult), u8(mult >> 8), u8(mult >> 16), u8(mult >> 24),
    };
    return add_capability(CAP_VENDOR, body, u8(len - 2)) != 0;
}

bool VirtioPciFunction::decode(u64 offset, PciTransport::Region &r, u32 &off) const
{
    using R = PciTransport::Region;
    struct Slot {
        u32 base;
        R region;
    };
    static constexpr Slot SLOTS[] = {
        {COMMON_OFFSET, R::common}, {ISR_OFFSET, R::isr}, {DEVICE_OFFSET, R::device}, {NOTIFY_OFFSET, R::notify},
    };
    for (const Slot &s : SLOTS) {
        if (offset < s.base || offset - s.base >= REGION_BYTES) continue;
        // Past the region's registers (still in its page): nothing, as the capability says.
        if (offset - s.base >= transport_.region_bytes(s.region)) return false;
        r = s.region;
        off = u32(offset - s.base);
        return true;
    }
    return false;
}

u64 VirtioPciFunction::bar_read(u32 bar, u64 offset, u8 size)
{
    PciTransport::Region r;
    u32 off;
    if (bar != BAR || !decode(offset, r, off)) return 0;
    return transport_.read(r, off, size);
}

void VirtioPciFunction::bar_write(u32 bar, u64 offset, u8 size, u64 value)
{
    PciTransport::Region r;
    u32 off;
    if (bar != BAR || !decode(offset, r, off)) return;
    transport_.write(r, off, size, value);
}

void VirtioPciFunction::raise(u16 vector)
{
    // false: the guest disabled MSI-X between the transport's decision (under
    // its lock, MSI-X on) and now. Drivers switch interrupt modes only around a
    // device reset, so the interrupt is for rings being torn down: dropped.
    (void)signal_msix(vector);
}

void VirtioPciFunction::needs_reset(const char *reason)
{
    if (report_) report_(report_ctx_, reason);
}

} // namespace virtio

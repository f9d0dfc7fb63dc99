// A guest's disks ([[guest.disk]]): each a virtio-blk device (virtio/blk) on a
// modern virtio-pci function (virtio/virtio_pci) plugged at PCI device 1, 2,
// ... in configuration order, so the first disk is Linux's /dev/vda.
//
// A disk's backing outlives the guest's starts: a read-only disk is its boot
// module itself; a writable one is a copy of the module made at the guest's
// first creation, in host memory that is never part of any guest's RAM and is
// kept (not copied again) across reboots and restarts, so what the guest wrote
// is there at its next start. Two guests never share it (each copies), and
// the module stays as it was packed. The device models are rebuilt from
// scratch at every start, like the rest of the platform.
#include "arch/x86_64/insn.hpp"
#include "arch/x86_64/mm.hpp"
#include "kernel/hv/internal.hpp"
#include "kernel/lib/console.hpp"
#include "kernel/lib/new.hpp"
#include "kernel/mem/frame_alloc.hpp"

namespace hv {
namespace {

// DEVICE_NEEDS_RESET: the transport's reason with the guest's name and the disk, once per start
// (called under the transport's lock: only the console is touched).
void disk_report(void *ctx, const char *reason)
{
    GuestDisk &d = *static_cast<GuestDisk *>(ctx);
    if (__atomic_exchange_n(&d.reported, true, __ATOMIC_ACQ_REL)) return;
    log_error("guest %s: disk %u: %s", d.guest->name, d.index, reason);
}

u64 tsc_now() { return x86::rdtsc(); }

unsigned order_for(u64 bytes)
{
    unsigned order = 0;
    while ((PAGE_SIZE << order) < bytes) order++;
    return order;
}

} // namespace

bool prepare_disks(Guest &g, const BootModule *(*find)(StrView))
{
    const GuestConfig &c = *g.cfg;
    static_assert(GuestConfig::MAX_DISKS < PciBus::MAX_DEVICES, "disk i is PCI device i + 1");
    for (u32 i = 0; i < c.disk_count; i++) {
        const DiskConfig &dc = c.disks[i];
        GuestDisk &d = g.disks[i];
        d.guest = &g;
        d.index = i;
        if (d.data || d.backend) continue;   // an earlier start made it: keep what the guest wrote
        if (!dc.device.empty()) {
            nvme::Extent x;
            if (!open_device_disk(c, i, x)) {
                log_error("guest %s: keel.toml line %u: disk %u on device '%.*s' is not available (see above); not "
                          "started", g.name, dc.line, i, int(dc.device.n), dc.device.p);
                return false;
            }
            d.backend = new (d.backend_storage) NvmeBackend(x);
            d.bytes = x.bytes();
            continue;
        }
        const BootModule *m = find(dc.file);
        if (!m) {
            log_error("guest %s: keel.toml line %u: disk '%.*s' is not in the image; not started", g.name, dc.line,
                      int(dc.file.n), dc.file.p);
            return false;
        }
        const u64 bytes = m->end - m->start;
        if (bytes == 0 || bytes % virtio::BLK_SECTOR) {
            log_error("guest %s: keel.toml line %u: disk '%.*s' is %lu bytes, not a multiple of %lu; not started",
                      g.name, dc.line, int(dc.file.n), dc.file.p, bytes, virtio::BLK_SECTOR);
            return false;
        }
        if (dc.readonly) {
            d.data = mm::phys_ptr<u8>(m->start);
        } else {
            // One buddy block: the device wants the disk contiguous in the direct map.
            const unsigned order = order_for(bytes);
            auto b = order <= FrameAllocator::MAX_ORDER ? mm::alloc(order) : Result<PhysAddr>(Err::no_memory);
            if (!b) {
                auto st = mm::stats();
                log_error("guest %s: keel.toml line %u: no memory for disk '%.*s' (%lu KiB writable copy, %lu MiB "
                          "free); not started",
                          g.name, dc.line, int(dc.file.n), dc.file.p, bytes / KiB, st.free_frames * PAGE_SIZE / MiB);
                return false;
            }
            d.data = mm::phys_ptr<u8>(*b);
            __builtin_memcpy(d.data, mm::phys_ptr<const u8>(m->start), bytes);
        }
        d.bytes = bytes;
    }
    return true;
}

bool plug_disks(Guest &g)
{
    const GuestConfig &c = *g.cfg;
    g.ndisks = 0;
    for (u32 i = 0; i < c.disk_count; i++) {
        GuestDisk &d = g.disks[i];
        d.reported = false;
        const u16 queues = u16(min<u32>(c.cpus, virtio::PciTransport::MAX_QUEUES));
        d.blk = d.backend ? new (d.blk_storage) virtio::BlkDevice(*d.backend, c.disks[i].readonly, queues)
                          : new (d.blk_storage) virtio::BlkDevice(d.data, d.bytes, c.disks[i].readonly, queues);
        d.blk->set_clock(tsc_now);
        d.adapter = new (d.adapter_storage) virtio::BlkVirtio(*d.blk);
        d.fn = new (d.fn_storage) virtio::VirtioPciFunction(*d.adapter, g.mem, disk_report, &d);
        d.fn->transport().signal_pending(&g.platform.attention, GuestPlatform::ATTN_DEVICES);
        if (!d.fn->ok() || !g.pci->plug(i + 1, *d.fn)) {
            log_error("guest %s: keel.toml line %u: disk %u cannot be plugged at PCI device %u; not started", g.name,
                      c.disks[i].line, i, i + 1);
            return false;
        }
        g.ndisks = i + 1;
    }
    return true;
}

// A notify services its queue on the writing vCPU, at most a queue's size of chains; what is left
// (Serviced::again) is taken here at the guest's next exit, on whichever vCPU takes it.
void service_disks(Guest &g)
{
    for (u32 i = 0; i < g.ndisks; i++) {
        virtio::PciTransport &t = g.disks[i].fn->transport();
        if (t.pending()) (void)t.run_pending();
    }
}

} // namespace hv

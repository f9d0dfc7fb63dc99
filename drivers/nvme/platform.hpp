// What the NVMe driver needs from the machine, and nothing more: the seam
// between drivers/nvme/ (portable, compiled into the kernel and the host unit
// tests) and the hardware. The driver never touches a register, a physical
// address or a clock except through these three interfaces.
//
//  - Regs: the controller's registers (BAR0). In the kernel an MMIO mapping of
//    the BAR (uncached; 64-bit registers may be split into two 32-bit accesses,
//    low dword first, as 3.1 allows); in the tests a simulated controller.
//  - Dma: page-sized, page-aligned, zeroed buffers the controller can reach,
//    each known by its host-physical address (what goes into a queue base or a
//    PRP entry) and Keel's virtual pointer to it. In the kernel the frame
//    allocator and the direct map (and, with an IOMMU, a mapping for the device).
//  - Clock: a monotonic microsecond count, and pause() between two polls of
//    a bounded wait (a PAUSE instruction in the kernel, time passing in the tests).
#pragma once

#include "kernel/lib/device_io.hpp"
#include "kernel/lib/result.hpp"
#include "kernel/lib/types.hpp"

namespace nvme {

using Regs = dev::Regs;
using Clock = dev::Clock;

// One memory page (MEM_PAGE bytes) for the controller to read or write.
struct DmaPage {
    PhysAddr pa;          // host-physical, page-aligned
    u8 *va = nullptr;     // Keel's mapping of it

    bool valid() const { return va != nullptr; }
};

class Dma {
public:
    // A zeroed page, or Err::no_memory.
    virtual Result<DmaPage> alloc_page() = 0;
    virtual void free_page(DmaPage p) = 0;

protected:
    ~Dma() = default;
};

} // namespace nvme

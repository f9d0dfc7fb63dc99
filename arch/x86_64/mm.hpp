// Keel's own memory: the frame allocator over all RAM, the kernel's page
// tables (image with W^X permissions, a direct map of RAM, an uncached MMIO
// window, guarded stacks) built by the shared page-table engine.
#pragma once

#include "arch/x86_64/layout.hpp"
#include "kernel/firmware/multiboot2.hpp"
#include "kernel/lib/result.hpp"

namespace mm {

inline VirtAddr phys_to_virt(PhysAddr p) { return VirtAddr(DIRECT_MAP_BASE + p.raw()); }
template <class T> T *phys_ptr(PhysAddr p) { return reinterpret_cast<T *>(phys_to_virt(p).raw()); }

// Set up the frame allocator (all usable RAM minus Keel's image, the boot
// information and the modules) and switch to Keel's page tables.
// `mbi`/`mbi_size` is the Multiboot2 information, which stays reserved.
Status init(const BootInfo &bi, PhysAddr mbi, u64 mbi_size);

Result<PhysAddr> alloc(unsigned order, u64 limit = ~0ull);
void free(PhysAddr pa, unsigned order);

// Map device registers uncached; returns 0 if the window or memory is exhausted.
VirtAddr map_mmio(PhysAddr pa, u64 size);
// Map firmware memory (ACPI tables) for reading: the direct map when it covers
// the range, else a write-back mapping in the MMIO window. 0 on failure.
VirtAddr map_firmware(PhysAddr pa, u64 size);
// A kernel stack with an unmapped guard page below it; returns its top.
Result<u64> alloc_stack(u64 size);

// Page-table pages straight from the frame allocator (guests' nested tables).
struct FrameTableMem {
    u64 pages = 0;
    Result<PhysAddr> alloc_table();
    void free_table(PhysAddr p);
    u64 *table(PhysAddr p) { return phys_ptr<u64>(p); }
};

// A zeroed block of 2^order frames.
Result<PhysAddr> alloc_zeroed(unsigned order, u64 limit = ~0ull);

// The page below 1 MiB reserved for the application processors' start-up code.
PhysAddr trampoline_page();
u64 kernel_cr3();
bool has_1g_pages();

struct Stats {
    u64 managed_frames;   // frames under the allocator at boot
    u64 free_frames;
    u64 free_blocks[19];
    u64 table_pages;      // kernel page-table pages
};
Stats stats();

struct WxAudit {
    u64 mappings;
    u64 violations;
};
// Walk Keel's page tables and count leaf mappings that are writable and executable.
WxAudit audit_wx();

} // namespace mm

#include "arch/x86_64/mm.hpp"

#include "arch/x86_64/insn.hpp"
#include "kernel/firmware/boot_memory.hpp"
#include "kernel/lib/console.hpp"
#include "kernel/lib/new.hpp"
#include "kernel/lib/spinlock.hpp"
#include "kernel/mem/frame_alloc.hpp"
#include "kernel/mem/ptab.hpp"
#include "kernel/mem/ptab_formats.hpp"

extern "C" char __image_phys_start[], __image_phys_end[];
extern "C" char __text_start[], __text_end[], __rodata_start[], __rodata_end[], __data_start[], __data_end[];

namespace mm {
namespace {

constexpr u64 STACK_AREA_BASE = 0xfffffe0000000000;   // PML4 slot 508: guarded stacks
constexpr u64 STACK_AREA_SIZE = 512 * GiB;
constexpr u64 BOOT_DIRECT_LIMIT = 4 * GiB;             // what the boot page tables map

Spinlock lock_;
FrameAllocator frames_;
u64 table_limit_ = BOOT_DIRECT_LIMIT;   // page-table pages must be reachable before the switch
u64 table_pages_;
u64 managed_frames_;
PhysAddr trampoline_;
bool pages_1g_;

struct TableMem {
    Result<PhysAddr> alloc_table()
    {
        auto r = frames_.alloc(0, table_limit_);
        if (!r) return r;
        __builtin_memset(phys_ptr<u8>(*r), 0, PAGE_SIZE);
        table_pages_++;
        return r;
    }
    void free_table(PhysAddr p)
    {
        if (frames_.free(p, 0)) table_pages_--;
    }
    u64 *table(PhysAddr p) { return phys_ptr<u64>(p); }
};

TableMem table_mem_;
PageTable<HostFormat, TableMem> *kpt_;
alignas(PageTable<HostFormat, TableMem>) u8 kpt_storage_[sizeof(PageTable<HostFormat, TableMem>)];

u64 mmio_next_ = MMIO_WINDOW_BASE;
u64 stack_next_ = STACK_AREA_BASE;

// Regions covered by the direct map (sanitised firmware map entries holding memory).
MemRegion direct_[BootInfo::MAX_MEM];
usize ndirect_;

Status map_kernel_image()
{
    struct Part { const char *start, *end; Attr attr; } parts[] = {
        {__text_start, __text_end, Attr{Perm{.r = true, .w = false, .x = true, .global = true}}},
        {__rodata_start, __rodata_end, Attr{Perm{.r = true, .w = false, .x = false, .global = true}}},
        {__data_start, __data_end, Attr{Perm{.r = true, .w = true, .x = false, .global = true}}},
    };
    for (auto &p : parts) {
        u64 va = reinterpret_cast<u64>(p.start), size = align_up(u64(p.end - p.start), PAGE_SIZE);
        if (size) KEEL_TRY(kpt_->map(va, va - KERNEL_VMA, size, p.attr));
    }
    return {};
}

Status map_direct(const MemRegion *map, usize n)
{
    const Attr rw{Perm{.r = true, .w = true, .x = false, .global = true}};
    // The first MiB (BIOS data, the AP trampoline) and every region that is memory.
    direct_[ndirect_++] = {0, 1 * MiB, MemType::reserved};
    for (usize i = 0; i < n && ndirect_ < BootInfo::MAX_MEM; i++) {
        MemType t = map[i].type;
        if (t != MemType::usable && t != MemType::acpi_reclaim && t != MemType::acpi_nvs) continue;
        u64 b = align_down(map[i].base, PAGE_SIZE), e = align_up(map[i].base + map[i].size, PAGE_SIZE);
        if (e <= 1 * MiB) continue;
        b = max(b, 1 * MiB);
        direct_[ndirect_++] = {b, e - b, t};
    }
    for (usize i = 0; i < ndirect_; i++)
        KEEL_TRY(kpt_->map(DIRECT_MAP_BASE + direct_[i].base, direct_[i].base, direct_[i].size, rw));
    return {};
}

bool in_direct_map(u64 pa, u64 size)
{
    for (usize i = 0; i < ndirect_; i++)
        if (pa >= direct_[i].base && pa + size <= direct_[i].base + direct_[i].size) return true;
    return false;
}

VirtAddr map_window(PhysAddr pa, u64 size, CacheType cache)
{
    u64 off = pa.raw() & (PAGE_SIZE - 1);
    u64 base = pa.raw() - off, len = align_up(size + off, PAGE_SIZE);
    Guard g(lock_);
    if (mmio_next_ + len > MMIO_WINDOW_BASE + MMIO_WINDOW_SIZE) return VirtAddr(0);
    u64 va = mmio_next_;
    if (!kpt_->map(va, base, len, Attr{Perm{.r = true, .w = true, .x = false, .global = true}, cache}))
        return VirtAddr(0);
    mmio_next_ += len + PAGE_SIZE;   // an unmapped page between mappings catches overruns
    return VirtAddr(va + off);
}

} // namespace

Status init(const BootInfo &bi, PhysAddr mbi, u64 mbi_size)
{
    pages_1g_ = x86::cpuid(0x80000001).d & (1u << 26);

    static MemRegion map[BootInfo::MAX_MEM];
    bool truncated = false;
    usize n = sanitize_memory_map(bi.mem, bi.mem_count, map, BootInfo::MAX_MEM, &truncated);
    if (!n) {
        log_error("the boot loader gave no memory map");
        return Err::invalid;
    }
    if (truncated || bi.mem_truncated) log_warn("memory map truncated: some RAM is not used");
    for (usize i = 0; i < n; i++)
        log_debug("mem %016lx-%016lx %s", map[i].base, map[i].base + map[i].size - 1, mem_type_name(map[i].type));

    // What the allocator must never hand out.
    MemRange reserved[3 + BootInfo::MAX_MODULES];
    usize nres = 0;
    // The linker script defines both image symbols as physical addresses.
    u64 image_start = reinterpret_cast<u64>(__image_phys_start), image_end = reinterpret_cast<u64>(__image_phys_end);
    reserved[nres++] = {PhysAddr(image_start), image_end - image_start};
    reserved[nres++] = {mbi, mbi_size};
    for (usize i = 0; i < bi.module_count; i++)
        reserved[nres++] = {bi.modules[i].start, bi.modules[i].end - bi.modules[i].start};

    // One page below 1 MiB for the APs' real-mode start, then all RAM above 1 MiB.
    auto tp = find_free_page(map, n, reserved, nres, 0x1000, 0xa0000);
    if (tp) trampoline_ = *tp;
    else log_warn("no free page below 1 MiB: application processors cannot be started");

    static MemRange ranges[FrameAllocator::MAX_ZONES * 2];
    constexpr usize cap = sizeof(ranges) / sizeof(ranges[0]);
    usize nr = free_ranges(map, n, reserved, nres, 1 * MiB, ranges, cap, &truncated);
    if (truncated) log_warn("too many memory ranges: some RAM is not used");

    // The allocator's metadata comes out of RAM itself, below 4 GiB so the boot map reaches it.
    u64 meta = FrameAllocator::metadata_bytes(ranges, nr);
    auto where = carve(ranges, nr, cap, meta, BOOT_DIRECT_LIMIT);
    if (!where) {
        log_error("no room for the frame allocator's metadata (%lu bytes)", meta);
        return Err::no_memory;
    }
    // Zones may merge differently once a piece is carved: the new need is never larger.
    if (FrameAllocator::metadata_bytes(ranges, nr) > meta) return Err::no_memory;
    KEEL_TRY(frames_.init(ranges, nr, phys_ptr<void>(*where), meta));
    managed_frames_ = frames_.total_frames();
    log_info("memory: %lu MiB in %zu zones, %lu KiB allocator metadata, map from %s", managed_frames_ * PAGE_SIZE / MiB,
             frames_.zone_count(), meta / KiB, bi.mem_source == MemSource::efi ? "EFI" : "e820");

    kpt_ = new (kpt_storage_) PageTable<HostFormat, TableMem>(table_mem_, pages_1g_ ? 3 : 2);
    KEEL_TRY(kpt_->init());
    KEEL_TRY(map_kernel_image());
    KEEL_TRY(map_direct(map, n));

    x86::write_cr3(kpt_->root().raw());
    table_limit_ = ~0ull;
    return {};
}

Result<PhysAddr> alloc(unsigned order, u64 limit)
{
    Guard g(lock_);
    return frames_.alloc(order, limit);
}

void free(PhysAddr pa, unsigned order)
{
    Guard g(lock_);
    auto s = frames_.free(pa, order);
    if (!s) log_error("bad free of %016lx order %u: %s", pa.raw(), order, err_name(s.error()));
}

Result<PhysAddr> alloc_zeroed(unsigned order, u64 limit)
{
    auto r = alloc(order, limit);
    if (r) __builtin_memset(phys_ptr<u8>(*r), 0, PAGE_SIZE << order);
    return r;
}

Result<PhysAddr> FrameTableMem::alloc_table()
{
    auto r = alloc_zeroed(0);
    if (r) pages++;
    return r;
}

void FrameTableMem::free_table(PhysAddr p)
{
    free(p, 0);
    pages--;
}

VirtAddr map_mmio(PhysAddr pa, u64 size) { return map_window(pa, size, CacheType::uc); }

VirtAddr map_firmware(PhysAddr pa, u64 size)
{
    if (in_direct_map(pa.raw(), size)) return phys_to_virt(pa);
    return map_window(pa, size, CacheType::wb);
}

Result<u64> alloc_stack(u64 size)
{
    size = align_up(size, PAGE_SIZE);
    Guard g(lock_);
    if (stack_next_ + size + PAGE_SIZE > STACK_AREA_BASE + STACK_AREA_SIZE) return Err::no_memory;
    u64 va = stack_next_ + PAGE_SIZE;   // the page below stays unmapped: the guard
    for (u64 off = 0; off < size; off += PAGE_SIZE) {
        auto f = frames_.alloc(0);
        if (!f) return f.error();
        if (!kpt_->map(va + off, f->raw(), PAGE_SIZE, Attr{Perm{.r = true, .w = true, .x = false, .global = true}}))
            return Err::no_memory;
    }
    stack_next_ = va + size;
    return va + size;
}

PhysAddr trampoline_page() { return trampoline_; }
u64 kernel_cr3() { return kpt_->root().raw(); }
bool has_1g_pages() { return pages_1g_; }

Stats stats()
{
    Guard g(lock_);
    Stats s{managed_frames_, frames_.free_frames(), {}, table_pages_};
    for (unsigned o = 0; o <= FrameAllocator::MAX_ORDER; o++) s.free_blocks[o] = frames_.free_blocks(o);
    return s;
}

WxAudit audit_wx()
{
    WxAudit a{};
    Guard g(lock_);
    kpt_->for_each_leaf([&](u64 va, u64, u64 size, Attr attr) {
        a.mappings++;
        if (attr.perm.w && attr.perm.x) {
            a.violations++;
            log_error("W^X violation: %016lx +%lx is writable and executable", va, size);
        }
    });
    return a;
}

} // namespace mm

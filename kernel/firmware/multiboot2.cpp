// Multiboot2 boot information parser.
//
// The blob comes from the boot loader and is treated as hostile: every read
// is bounds-checked against the tag it belongs to, fields are assembled from
// bytes (the blob need not be aligned for us), and any inconsistency makes
// the whole parse fail rather than guessing.
#include "kernel/firmware/multiboot2.hpp"

#include "kernel/lib/bytes.hpp"

namespace {

// Length of the NUL-terminated string at p, or -1 if there is no NUL in
// the first max bytes.
i64 strnlen_checked(const u8 *p, usize max)
{
    for (usize i = 0; i < max; i++)
        if (!p[i])
            return static_cast<i64>(i);
    return -1;
}

// Minimum sizes (header included) of the tags whose fields we read.
u32 min_tag_size(u32 type)
{
    switch (type) {
    case mb2::TAG_CMDLINE:
    case mb2::TAG_LOADER_NAME:  return 8 + 1;      // at least the NUL
    case mb2::TAG_MODULE:       return 16 + 1;
    case mb2::TAG_BASIC_MEMINFO:
    case mb2::TAG_MMAP:
    case mb2::TAG_EFI64:
    case mb2::TAG_EFI_MMAP:     return 16;
    case mb2::TAG_FRAMEBUFFER:  return 30;          // through framebuffer_type
    case mb2::TAG_ACPI_OLD:
    case mb2::TAG_ACPI_NEW:     return 8 + 20;      // at least an RSDPv1
    case mb2::TAG_LOAD_BASE:    return 12;
    default:                    return 8;
    }
}

MemType e820_type(u32 t)
{
    switch (t) {
    case 1:  return MemType::usable;
    case 3:  return MemType::acpi_reclaim;
    case 4:  return MemType::acpi_nvs;
    case 5:  return MemType::bad;
    default: return MemType::reserved;   // 2, and whatever GRUB invents (e.g. 20)
    }
}

MemType efi_type(u32 t, bool boot_services)
{
    switch (t) {
    case 1: case 2:                     // EfiLoaderCode/Data
    case 3: case 4:                     // EfiBootServicesCode/Data
        // Only free once ExitBootServices() has been called.
        return boot_services ? MemType::reserved : MemType::usable;
    case 7:  return MemType::usable;    // EfiConventionalMemory
    case 8:  return MemType::bad;       // EfiUnusableMemory
    case 9:  return MemType::acpi_reclaim;
    case 10: return MemType::acpi_nvs;
    default: return MemType::reserved;  // runtime services, MMIO, persistent (14), ...
    }
}

void add_region(BootInfo &bi, u64 base, u64 size, MemType type)
{
    if (!size)
        return;
    if (bi.mem_count) {
        MemRegion &l = bi.mem[bi.mem_count - 1];
        u64 l_end = l.base + l.size;
        // Merge contiguous same-type entries (unless that would wrap).
        if (l.type == type && l_end >= l.base && l_end == base && size <= ~0ull - l.size) {
            l.size += size;
            return;
        }
    }
    if (bi.mem_count == BootInfo::MAX_MEM) {
        bi.mem_truncated = true;
        return;
    }
    bi.mem[bi.mem_count++] = MemRegion{base, size, type};
}

// Entry sizes beyond this are nonsense; rejecting them keeps the rule simple.
constexpr u32 MAX_ENTRY_SIZE = 4096;

// Tag 6: u32 entry_size, u32 entry_version, entries {u64 base, u64 len, u32 type, u32 rsvd}.
Status parse_mmap(BootInfo &bi, const u8 *tag, u32 size)
{
    u32 esz = load_u32(tag + 8);
    if (esz < 24 || esz > MAX_ENTRY_SIZE)
        return Err::invalid;
    // entry_version is 0 and the spec promises later versions stay
    // compatible, so it is not checked. A partial trailing entry is ignored.
    for (u32 off = 16; size - off >= esz; off += esz) {
        const u8 *e = tag + off;
        add_region(bi, load_u64(e), load_u64(e + 8), e820_type(load_u32(e + 16)));
    }
    return {};
}

// Tag 17: u32 descriptor_size, u32 descriptor_version, then EFI_MEMORY_DESCRIPTORs
// {u32 type, u32 pad, u64 phys_start, u64 virt_start, u64 num_pages, u64 attribute}.
Status parse_efi_mmap(BootInfo &bi, const u8 *tag, u32 size)
{
    u32 dsz = load_u32(tag + 8);
    if (dsz < 40 || dsz > MAX_ENTRY_SIZE)
        return Err::invalid;
    bool bs = bi.has_tag(mb2::TAG_EFI_BS);
    for (u32 off = 16; size - off >= dsz; off += dsz) {
        const u8 *d = tag + off;
        u64 pages = load_u64(d + 24);
        u64 bytes = pages > (~0ull >> 12) ? ~0ull : pages << 12;
        add_region(bi, load_u64(d + 8), bytes, efi_type(load_u32(d), bs));
    }
    return {};
}

// A string tag field: NUL-terminated within [p, p + max).
Status get_string(const u8 *p, usize max, const char **str, usize *len)
{
    i64 n = strnlen_checked(p, max);
    if (n < 0)
        return Err::invalid;
    *str = reinterpret_cast<const char *>(p);
    *len = static_cast<usize>(n);
    return {};
}

} // namespace

Status parse_multiboot2(const u8 *mbi, usize avail, BootInfo &bi)
{
    zero_object(bi);
    if (!mbi || avail < 8)
        return Err::invalid;

    u32 total = load_u32(mbi);
    if (total < 16 || total > avail)
        return Err::invalid;

    // Tags we must interpret after seeing all others (tag 18 changes the
    // meaning of tag 17, and tag 6 is preferred over tag 17).
    const u8 *mmap = nullptr, *efi_mmap = nullptr;
    u32 mmap_size = 0, efi_mmap_size = 0;

    for (u32 off = 8;;) {
        if (total - off < 8)
            return Err::invalid;                // no end tag
        const u8 *tag = mbi + off;
        u32 type = load_u32(tag), size = load_u32(tag + 4);
        if (size < 8 || size > total - off)
            return Err::invalid;
        if (type == mb2::TAG_END)
            break;
        if (size < min_tag_size(type))
            return Err::invalid;
        if (type < 64)
            bi.tags_seen |= 1ull << type;

        const u8 *body = tag + 8;
        switch (type) {
        case mb2::TAG_CMDLINE:
            if (!bi.cmdline)
                KEEL_TRY(get_string(body, size - 8, &bi.cmdline, &bi.cmdline_len));
            break;
        case mb2::TAG_LOADER_NAME:
            if (!bi.loader_name)
                KEEL_TRY(get_string(body, size - 8, &bi.loader_name, &bi.loader_name_len));
            break;
        case mb2::TAG_MODULE: {
            BootModule m;
            m.start = PhysAddr(load_u32(body));
            m.end = PhysAddr(load_u32(body + 4));
            if (m.end.raw() < m.start.raw())
                return Err::invalid;
            KEEL_TRY(get_string(tag + 16, size - 16, &m.string, &m.len));
            if (bi.module_count < BootInfo::MAX_MODULES)
                bi.modules[bi.module_count++] = m;
            else
                bi.modules_truncated = true;
            break;
        }
        case mb2::TAG_BASIC_MEMINFO:
            bi.has_meminfo = true;
            bi.mem_lower_kib = load_u32(body);
            bi.mem_upper_kib = load_u32(body + 4);
            break;
        case mb2::TAG_MMAP:
            if (!mmap) { mmap = tag; mmap_size = size; }
            break;
        case mb2::TAG_EFI_MMAP:
            if (!efi_mmap) { efi_mmap = tag; efi_mmap_size = size; }
            break;
        case mb2::TAG_FRAMEBUFFER: {
            Framebuffer &fb = bi.fb;
            fb.present = true;
            fb.addr = load_u64(body);
            fb.pitch = load_u32(body + 8);
            fb.width = load_u32(body + 12);
            fb.height = load_u32(body + 16);
            fb.bpp = body[20];
            fb.type = body[21];
            // Colour info follows the 32-byte common part (u16 reserved at 30).
            if (fb.type == 1 && size >= 38) {
                fb.red_pos = tag[32];   fb.red_size = tag[33];
                fb.green_pos = tag[34]; fb.green_size = tag[35];
                fb.blue_pos = tag[36];  fb.blue_size = tag[37];
            }
            break;
        }
        case mb2::TAG_EFI64:
            bi.has_efi64_st = true;
            bi.efi64_system_table = load_u64(body);
            break;
        case mb2::TAG_ACPI_OLD:
            if (!bi.rsdp_v1) { bi.rsdp_v1 = body; bi.rsdp_v1_len = size - 8; }
            break;
        case mb2::TAG_ACPI_NEW:
            if (!bi.rsdp_v2) { bi.rsdp_v2 = body; bi.rsdp_v2_len = size - 8; }
            break;
        case mb2::TAG_EFI_BS:
            bi.efi_boot_services = true;
            break;
        case mb2::TAG_LOAD_BASE:
            bi.has_load_base = true;
            bi.load_base = load_u32(body);
            break;
        default:
            break;      // APM, ELF sections, SMBIOS, ...: not ours to read
        }

        // Tags are 8-byte aligned; size <= total - off <= 2^32, so no wrap in u64.
        u64 next = off + align_up(static_cast<u64>(size), 8);
        if (next >= total)
            return Err::invalid;                // no room left for the end tag
        off = static_cast<u32>(next);
    }

    // Both maps are validated if present: a malformed one means a confused
    // loader, and then nothing else it says is trustworthy either.
    if (mmap) {
        KEEL_TRY(parse_mmap(bi, mmap, mmap_size));
        if (bi.mem_count || bi.mem_truncated)
            bi.mem_source = MemSource::e820;
    }
    if (efi_mmap) {
        if (bi.mem_source == MemSource::none) {
            KEEL_TRY(parse_efi_mmap(bi, efi_mmap, efi_mmap_size));
            if (bi.mem_count || bi.mem_truncated)
                bi.mem_source = MemSource::efi;
        } else {
            // Unused, but its header must still be sane.
            u32 dsz = load_u32(efi_mmap + 8);
            if (dsz < 40 || dsz > MAX_ENTRY_SIZE)
                return Err::invalid;
        }
    }
    return {};
}

Result<BootInfo> parse_multiboot2(const u8 *mbi, usize avail)
{
    BootInfo bi;
    Status s = parse_multiboot2(mbi, avail, bi);
    if (!s)
        return s.error();
    return bi;
}

namespace {

unsigned rank(MemType t)
{
    switch (t) {
    case MemType::usable:       return 0;
    case MemType::acpi_reclaim: return 1;
    case MemType::reserved:     return 2;
    case MemType::acpi_nvs:     return 3;
    case MemType::bad:          return 4;
    }
    return 2;   // an out-of-range value is treated as reserved
}

constexpr MemType by_rank[] = {MemType::usable, MemType::acpi_reclaim, MemType::reserved,
                               MemType::acpi_nvs, MemType::bad};

// Output side of the sweep: accumulates one region (inclusive bounds, so
// that a region touching 2^64 is representable) and writes it out once
// the next one cannot be merged into it.
struct Emitter {
    MemRegion *out;
    usize      cap;
    usize      count;
    bool       full;
    bool       have;
    u64        first, last;
    MemType    type;

    void put(u64 f, u64 l, MemType t)
    {
        if (have && t == type && last + 1 == f) {   // last < f, so no wrap
            last = l;
            return;
        }
        flush();
        have = true;
        first = f;
        last = l;
        type = t;
    }

    void flush()
    {
        if (!have)
            return;
        have = false;
        u64 b = first, size;
        if (type == MemType::usable) {
            // Shrink inward to whole pages.
            if (b > ~0ull - (PAGE_SIZE - 1))
                return;
            b = align_up(b, PAGE_SIZE);
            if (last == ~0ull) {
                // The end is 2^64 itself: size 2^64 - b, computed mod 2^64.
                // [0, 2^64) does not fit in a u64 size, so drop its top page.
                size = b ? 0 - b : ~0ull & ~(PAGE_SIZE - 1);
            } else {
                u64 e = align_down(last + 1, PAGE_SIZE);
                size = e > b ? e - b : 0;
            }
            if (!size)
                return;
        } else {
            size = last - first + 1;
            if (!size)
                size = ~0ull;                           // [0, 2^64): clip one byte
        }
        if (count < cap)
            out[count++] = MemRegion{b, size, type};
        else
            full = true;
    }
};

} // namespace

usize sanitize_memory_map(const MemRegion *in, usize n, MemRegion *out, usize cap, bool *truncated)
{
    Emitter em{out, cap, 0, false, false, 0, 0, MemType::usable};

    // Sweep the address space from 0 upwards over the elementary intervals
    // delimited by region boundaries; each step costs one pass over the
    // input, so no sorting and no scratch memory are needed.
    for (u64 pos = 0; !em.full;) {
        unsigned best = 0;
        bool covered = false, above = false;
        u64 seg_last = ~0ull, next_start = ~0ull;

        for (usize i = 0; i < n; i++) {
            if (!in[i].size)
                continue;
            u64 first = in[i].base;
            u64 last = in[i].size - 1 > ~0ull - first ? ~0ull : first + in[i].size - 1;
            if (first <= pos && pos <= last) {
                unsigned r = rank(in[i].type);
                if (!covered || r > best)
                    best = r;
                covered = true;
                seg_last = min(seg_last, last);
            } else if (first > pos) {
                above = true;
                next_start = min(next_start, first);
            }
        }

        if (!covered) {
            if (!above)
                break;
            pos = next_start;
            continue;
        }
        if (above)
            seg_last = min(seg_last, next_start - 1);   // next_start > pos
        em.put(pos, seg_last, by_rank[best]);
        if (seg_last == ~0ull)
            break;
        pos = seg_last + 1;
    }
    em.flush();

    if (truncated)
        *truncated = em.full;
    return em.count;
}

const char *mem_type_name(MemType t)
{
    switch (t) {
    case MemType::usable:       return "usable";
    case MemType::reserved:     return "reserved";
    case MemType::acpi_reclaim: return "ACPI reclaimable";
    case MemType::acpi_nvs:     return "ACPI NVS";
    case MemType::bad:          return "bad";
    }
    return "?";
}

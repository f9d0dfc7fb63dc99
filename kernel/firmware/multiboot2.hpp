// Multiboot2 boot information: parsed once, early, from an untrusted blob.
//
// Nothing here allocates: everything lands in fixed arrays inside BootInfo.
// Strings and RSDP copies point *into* the boot information blob, so the
// blob must stay mapped and untouched for as long as they are used.
#pragma once

#include "kernel/lib/result.hpp"
#include "kernel/lib/types.hpp"

namespace mb2 {
// Tag types we know about (Multiboot2 spec 1.0 / GRUB 2.06).
enum Tag : u32 {
    TAG_END = 0, TAG_CMDLINE = 1, TAG_LOADER_NAME = 2, TAG_MODULE = 3,
    TAG_BASIC_MEMINFO = 4, TAG_BOOTDEV = 5, TAG_MMAP = 6, TAG_VBE = 7,
    TAG_FRAMEBUFFER = 8, TAG_ELF_SECTIONS = 9, TAG_APM = 10, TAG_EFI32 = 11,
    TAG_EFI64 = 12, TAG_SMBIOS = 13, TAG_ACPI_OLD = 14, TAG_ACPI_NEW = 15,
    TAG_NETWORK = 16, TAG_EFI_MMAP = 17, TAG_EFI_BS = 18, TAG_EFI32_IH = 19,
    TAG_EFI64_IH = 20, TAG_LOAD_BASE = 21,
};
}

enum class MemType : u8 { usable, reserved, acpi_reclaim, acpi_nvs, bad };

struct MemRegion {
    u64     base;
    u64     size;
    MemType type;
};

enum class MemSource : u8 { none, e820 /* tag 6 */, efi /* tag 17 */ };

struct BootModule {
    PhysAddr    start;      // first byte
    PhysAddr    end;        // one past the last byte (GRUB's mod_end)
    const char *string;     // NUL-terminated, inside the blob
    usize       len;        // strlen(string)
};

struct Framebuffer {
    bool present;
    u8   bpp;
    u8   type;              // 0 indexed, 1 direct RGB, 2 EGA text
    u64  addr;              // physical
    u32  pitch, width, height;
    // Direct RGB only (type 1; zero otherwise).
    u8   red_pos, red_size, green_pos, green_size, blue_pos, blue_size;
};

struct BootInfo {
    static constexpr usize MAX_MODULES = 64;   // the config, and per guest a kernel, an initrd or modules, disks
    static constexpr usize MAX_MEM = 128;

    u64 tags_seen;                      // bit n: a tag of type n (< 64) was present

    const char *cmdline;                // nullptr if absent
    usize       cmdline_len;
    const char *loader_name;
    usize       loader_name_len;

    BootModule modules[MAX_MODULES];
    usize      module_count;
    bool       modules_truncated;

    // Tag 4: informational only. mem_upper is meaningless on EFI machines.
    bool has_meminfo;
    u32  mem_lower_kib, mem_upper_kib;

    // Raw firmware map, normalised but not sanitised (see sanitize_memory_map).
    // Adjacent entries of the same type are merged on the way in so that
    // verbose EFI maps fit; dropping entries beyond MAX_MEM only loses
    // information, it never makes reserved memory look usable.
    MemRegion mem[MAX_MEM];
    usize     mem_count;
    bool      mem_truncated;
    MemSource mem_source;

    // Copies of the RSDP made by the boot loader (tag 14: 20-byte v1 copy,
    // tag 15: full v2+ copy). Pointers into the blob; nullptr if absent.
    const u8 *rsdp_v1;
    usize     rsdp_v1_len;
    const u8 *rsdp_v2;
    usize     rsdp_v2_len;

    Framebuffer fb;

    bool has_efi64_st;
    u64  efi64_system_table;
    bool efi_boot_services;             // tag 18: ExitBootServices() was NOT called

    bool has_load_base;
    u32  load_base;                     // physical load address of the image (tag 21)

    bool has_tag(u32 type) const { return type < 64 && (tags_seen >> type & 1); }

    // Preferred RSDP copy: tag 15 over tag 14. Returns nullptr if neither.
    const u8 *rsdp(usize *len) const
    {
        if (rsdp_v2) { *len = rsdp_v2_len; return rsdp_v2; }
        *len = rsdp_v1_len;
        return rsdp_v1;
    }
};

// Parse the Multiboot2 information at `mbi`, of which `avail` bytes are
// readable. Errors: Err::invalid for any malformed structure.
// BootInfo is ~4 KiB: in the kernel prefer the out-parameter form with a
// static BootInfo over Result<BootInfo> (which copies it on the stack).
Status parse_multiboot2(const u8 *mbi, usize avail, BootInfo &out);
Result<BootInfo> parse_multiboot2(const u8 *mbi, usize avail);

// Build the frame allocator's view of memory: sorted, non-overlapping,
// adjacent same-type regions merged, usable regions shrunk to 4 KiB
// boundaries (empty ones dropped), ranges clipped at 2^64.
// Overlaps: the stronger type wins, bad > acpi_nvs > reserved > acpi_reclaim
// > usable (reclaim loses to reserved because it may be handed to the
// allocator after ACPI is parsed; anything claimed by another entry must not be).
// `in` and `out` must not overlap. Returns the number of regions written;
// if more than `cap` would be needed, the lowest `cap` are kept and
// *truncated (if given) is set. O(n^2) time, O(1) space.
usize sanitize_memory_map(const MemRegion *in, usize n, MemRegion *out, usize cap,
                          bool *truncated = nullptr);

const char *mem_type_name(MemType t);

// Multiboot (v1 and v2) guest kernel loader.
//
// Loads a guest kernel image into the guest's RAM as GRUB would, builds the
// boot information there and returns the registers for the 32-bit entry.
// The image and its headers are untrusted: every field is bounds-checked,
// loops are bounded by the (bounded) header sizes, and every byte written
// goes through GuestMemory. The load is planned and validated completely
// before anything is written: on failure the guest's RAM is untouched.
//
// Placement: the image where its headers say (ELF: PT_LOAD by p_paddr;
// a.out kludge / address tag: load_addr..bss_end_addr), wholly inside RAM,
// outside the legacy hole and below 4 GiB. Then, above the highest loaded
// byte, in RAM below 4 GiB: the modules (each page-aligned), then one
// page-aligned block with the boot information, the module list, the memory
// map and the strings.
#pragma once

#include "kernel/guest/guest_memory.hpp"
#include "kernel/lib/result.hpp"
#include "kernel/lib/types.hpp"

// Host view of one module file (not copied until the load succeeds).
struct GuestModuleSrc {
    const u8   *data;
    u64         size;
    const char *string;         // its command line, may be nullptr (empty)
    usize       string_len;
};

// Initial register state. Besides these the vCPU starts as Multiboot says:
// 32-bit protected mode, CR0 = PE (paging off), CS a flat 32-bit execute/read
// code segment, DS/ES/FS/GS/SS flat 32-bit read/write data segments (base 0,
// limit 0xffffffff), EFLAGS = 0x2 (IF and VM clear), A20 enabled; ESP and
// the GDTR/IDTR are undefined (the guest sets up its own).
struct EntryState {
    u32 eip;
    u32 eax;                    // MB1_BOOT_MAGIC or MB2_BOOT_MAGIC
    u32 ebx;                    // guest-physical address of the boot information
};

struct LoadReport {
    char      msg[128];         // NUL-terminated: what failed, or a summary of the load
    u8        version;          // 1 or 2 once a header with a valid checksum was found, else 0
    GuestPhys image_start;      // loaded image [start, end), bss included
    GuestPhys image_end;
    GuestPhys info;             // boot information
    GuestPhys end;              // one past the last byte written (modules, info)
};

inline constexpr u32 MB1_BOOT_MAGIC = 0x2badb002;
inline constexpr u32 MB2_BOOT_MAGIC = 0x36d76289;
inline constexpr usize MB_MAX_MODULES = 64;
inline constexpr usize MB_MAX_STRING = 64 * KiB;    // per command line (excluding the NUL)
inline constexpr usize MB_MAX_SEGMENTS = 32;        // PT_LOAD program headers with memsz > 0
inline constexpr usize MB_MAX_RESERVED = 4;

// A range of guest RAM the caller keeps (the guest's ACPI tables): the memory
// map reports it with `type` (2 reserved, 3 ACPI reclaimable, 4 ACPI NVS)
// instead of RAM, mem_lower/mem_upper stop at it, no segment may overlap it
// and nothing is placed in it.
struct MbReserved {
    u64 base, size;
    u32 type;
};

// Load `image` (size bytes) into `mem`: a Multiboot2 header is preferred when
// the image has both. The command line and module strings are copied as
// given (len bytes, then a NUL). Errors:
//   Err::not_found    no Multiboot header
//   Err::bad_checksum only headers with a bad checksum
//   Err::invalid      malformed header or ELF, inconsistent addresses, bad arguments
//                     (more than MB_MAX_RESERVED reserved ranges, an empty one or one
//                     of type < 2)
//   Err::unsupported  a required feature Keel does not provide (video mode,
//                     EFI, console, an information tag, an unknown flag)
//   Err::range        a segment outside guest RAM, in the legacy hole, in a reserved
//                     range or above 4 GiB
//   Err::no_memory    modules or boot information do not fit in RAM below 4 GiB
// `report` (optional) says which and where.
Result<EntryState> load_multiboot(GuestMemory &mem, const u8 *image, u64 size, const char *cmdline,
                                  usize cmdline_len, const GuestModuleSrc *mods, usize nmods,
                                  LoadReport *report = nullptr, const MbReserved *reserved = nullptr,
                                  usize nreserved = 0);

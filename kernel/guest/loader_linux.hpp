// Linux guest kernel loader: x86 boot protocol (2.12+), 64-bit entry.
//
// Loads a bzImage (and optionally an initrd) into the guest's RAM and builds
// everything the 64-bit boot protocol asks for: the "zero page" (struct
// boot_params: the file's setup header plus the command line, initrd and
// e820 fields), the command line, a GDT with __BOOT_CS/__BOOT_DS and
// identity-mapped page tables. It returns the registers for the entry at
// the protected-mode kernel's load address + 0x200 (startup_64).
//
// The bzImage and the initrd are untrusted: every header field is checked,
// every address computation is done in u64 without wrapping, and every byte
// written goes through GuestMemory. The load is planned and validated
// completely before anything is written: on failure the guest's RAM is
// untouched.
//
// Placement (all page-aligned, inside RAM runs, never in [0, 4 KiB), the
// legacy hole or a `reserved` range, no two overlapping):
//   kernel       [load, load + init_size): a relocatable kernel at the lowest
//                kernel_alignment-aligned address >= pref_address (a 64-bit
//                kernel loaded below pref_address == LOAD_PHYSICAL_ADDR would
//                decompress at LOAD_PHYSICAL_ADDR anyway, over whatever is
//                there); a non-relocatable one exactly at pref_address.
//                Below 4 GiB unless xloadflags has XLF_CAN_BE_LOADED_ABOVE_4G.
//   boot block   one block at the lowest address that fits (usually 0x1000):
//                boot_params (4 KiB), PML4, PDPT, the page directories, then
//                the GDT (32 bytes) and the command line (at GDT + 0x40).
//                Below 4 GiB under the same rule as the kernel.
//   initrd       the highest address with initrd end - 1 <= initrd_addr_max
//                and below 4 GiB; if it does not fit there and the kernel
//                has XLF_CAN_BE_LOADED_ABOVE_4G, the highest fit above 4 GiB.
// The page tables identity-map [0, mapped) with 2 MiB pages, mapped = the top
// of guest RAM rounded up to 1 GiB, at least 4 GiB, at most 512 GiB (one
// PDPT); the kernel and the boot block are placed below `mapped`.
//
// The e820 map in boot_params: RAM from the extents (adjacent ones merged),
// the legacy hole as reserved (type 2) where it is not RAM, and the
// `reserved` ranges with their types (they take precedence over RAM), sorted,
// non-overlapping, adjacent ranges of one type merged, at most 128 entries.
#pragma once

#include "kernel/guest/guest_memory.hpp"
#include "kernel/lib/result.hpp"
#include "kernel/lib/types.hpp"

inline constexpr usize LINUX_MAX_RESERVED = 8;
inline constexpr usize LINUX_MAX_CMDLINE = 64 * KiB;   // absolute cap (excluding the NUL); the kernel's
                                                       // cmdline_size (2047 for Debian) is checked too
inline constexpr u16 LINUX_MIN_PROTOCOL = 0x020c;      // 2.12: XLF_KERNEL_64 (64-bit entry at +0x200)

// E820 types for LinuxLoadParams::Range::type.
inline constexpr u32 LINUX_E820_RAM = 1, LINUX_E820_RESERVED = 2, LINUX_E820_ACPI = 3, LINUX_E820_NVS = 4,
                     LINUX_E820_UNUSABLE = 5;

struct LinuxLoadParams {
    struct Range {
        u64 base, size;
        u32 type;                   // e820 type; 0 means LINUX_E820_RESERVED; LINUX_E820_RAM is invalid
    };

    const u8   *kernel;             // the bzImage file
    u64         kernel_size;
    const u8   *initrd;             // may be null (with initrd_size 0): no initrd
    u64         initrd_size;
    const char *cmdline;            // copied as given (len bytes), then a NUL; may be null with len 0
    usize       cmdline_len;
    u64         acpi_rsdp;          // guest-physical RSDP for boot_params.acpi_rsdp_addr (0: none)
    // Extra e820 ranges (ACPI tables, MMIO...): the loader places nothing
    // over them; they may lie inside or outside RAM; they must not overlap
    // one another, have size 0 or wrap.
    Range       reserved[LINUX_MAX_RESERVED];
    usize       nreserved;
};

// Initial register state for the 64-bit boot protocol. Besides these:
// CR0 = LINUX_ENTRY_CR0 (PE|ET|PG; a VMX backend may need NE too), CR4 = PAE,
// EFER = LME|LMA, CS = 0x10 (a 64-bit code segment: base 0, limit 4 GiB,
// L=1, D=0, type 0xb, the hidden state matching LINUX_GDT_CODE64), DS = ES =
// SS = 0x18 (flat 4 GiB read/write data, LINUX_GDT_DATA), FS = GS = 0x18 (or
// 0), EFLAGS = 0x2 (interrupts off), RBP = RDI = RBX = 0. RSP and the IDT
// are not used by the protocol (the kernel sets up its own); TR/LDTR as the
// backend requires (an unused TSS, LDTR unusable).
struct LinuxEntryState {
    u64 rip;                        // load address of the protected-mode kernel + 0x200 (startup_64)
    u64 rsi;                        // guest-physical address of boot_params (the "zero page")
    u64 cr3;                        // identity-mapped page tables (PML4) in guest RAM
    u64 gdt_base;                   // GDT in guest RAM
    u16 gdt_limit;
    u16 cs, ds;                     // 0x10, 0x18
};

inline constexpr u16 LINUX_BOOT_CS = 0x10, LINUX_BOOT_DS = 0x18;
inline constexpr u64 LINUX_GDT_CODE64 = 0x00af9b000000ffffull;  // G, L, P, DPL 0, execute/read, accessed
inline constexpr u64 LINUX_GDT_DATA = 0x00cf93000000ffffull;    // G, D/B, P, DPL 0, read/write, accessed
inline constexpr u64 LINUX_ENTRY_CR0 = 0x80000011ull;           // PG | ET | PE
inline constexpr u64 LINUX_ENTRY_CR4 = 0x20ull;                 // PAE
inline constexpr u64 LINUX_ENTRY_EFER = 0x500ull;               // LMA | LME

struct LinuxLoadReport {
    char      msg[128];             // NUL-terminated: what failed, or a summary of the load
    u16       protocol;             // setup header version (0x020f = 2.15) once "HdrS" was found, else 0
    GuestPhys kernel;               // protected-mode kernel load address
    u64       kernel_size;          // bytes of it copied from the file
    u64       init_size;            // [kernel, kernel + init_size) is the kernel's
    GuestPhys boot_params;
    GuestPhys cmdline;
    GuestPhys gdt;
    GuestPhys page_tables;          // PML4; PDPT and page directories follow it
    u64       page_tables_size;
    u64       mapped;               // the page tables identity-map [0, mapped)
    GuestPhys initrd;               // 0 if none
    u64       initrd_size;
    u32       e820_entries;
};

// Load the bzImage p.kernel (and p.initrd) into `mem`. Errors:
//   Err::invalid      not a bzImage (no 0xAA55, no "HdrS", LOADED_HIGH clear),
//                     a malformed header (setup_sects beyond the file, bad
//                     init_size or kernel_alignment), bad arguments (null
//                     pointers, a command line longer than cmdline_size or
//                     LINUX_MAX_CMDLINE, bad reserved ranges)
//   Err::unsupported  protocol older than 2.12, no 64-bit entry (XLF_KERNEL_64),
//                     a memory map of more than 128 entries
//   Err::range        a non-relocatable kernel whose pref_address range is not
//                     usable RAM
//   Err::no_memory    the kernel, the boot block or the initrd do not fit
// `report` (optional) says which and where.
Result<LinuxEntryState> load_linux(GuestMemory &mem, const LinuxLoadParams &p, LinuxLoadReport *report = nullptr);

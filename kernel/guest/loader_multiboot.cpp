// Multiboot v1/v2 guest loader: header -> plan -> checks -> placement -> writes.
//
// Every length and address from the image is checked before use, in u64
// arithmetic that cannot wrap (values are u32 or checked against ~0 first).
// Nothing is written to the guest until the whole load has been planned, and
// then only through GuestMemory, into ranges already checked to be RAM.
#include "kernel/guest/loader_multiboot.hpp"

#include "kernel/lib/bytes.hpp"
#include "kernel/lib/why.hpp"

namespace {

constexpr u32 MB1_MAGIC = 0x1badb002;
constexpr u32 MB2_MAGIC = 0xe85250d6;
constexpr u64 MB1_SEARCH = 8192, MB2_SEARCH = 32768;
constexpr u64 FOUR_GIB = 4 * GiB;
// Modules and the boot information end below this, so that every exclusive
// end address fits the u32 fields of the boot information.
constexpr u64 PLACE_LIMIT = FOUR_GIB - PAGE_SIZE;
constexpr u64 HOLE_LO = GuestMemory::LEGACY_HOLE_START, HOLE_HI = GuestMemory::LEGACY_HOLE_END;

// Multiboot v1 header flags (bits 0-15 are requirements) and info flags.
constexpr u32 MB1_PAGE_ALIGN = 1u << 0, MB1_MEMORY_INFO = 1u << 1, MB1_VIDEO_MODE = 1u << 2;
constexpr u32 MB1_AOUT_KLUDGE = 1u << 16;
constexpr u32 MB1_INFO_FLAGS = 1u << 0 /* mem */ | 1u << 2 /* cmdline */ | 1u << 3 /* mods */ |
                               1u << 6 /* mmap */ | 1u << 9 /* boot_loader_name */;
constexpr u64 MB1_INFO_SIZE = 120;      // struct multiboot_info (116 bytes), rounded to 8

// Multiboot2 header tags and boot information tags.
enum : u16 {
    HT_END = 0, HT_INFO_REQ = 1, HT_ADDRESS = 2, HT_ENTRY = 3, HT_FLAGS = 4, HT_FRAMEBUFFER = 5,
    HT_MODULE_ALIGN = 6, HT_EFI_BS = 7, HT_ENTRY_EFI32 = 8, HT_ENTRY_EFI64 = 9, HT_RELOCATABLE = 10,
};
enum : u32 { IT_END = 0, IT_CMDLINE = 1, IT_LOADER_NAME = 2, IT_MODULE = 3, IT_MEMINFO = 4, IT_MMAP = 6,
             IT_LOAD_BASE = 21 };

constexpr char LOADER_NAME[] = "Keel";
constexpr usize LOADER_NAME_LEN = sizeof(LOADER_NAME) - 1;

// Builds LoadReport::msg and converts to the error it describes (kernel/lib/why.hpp).
using Why = WhyMsg<LoadReport>;

struct Seg {
    u64 off, filesz, memsz;     // file range, memory size (memsz >= filesz)
    u64 gpa, vaddr;
    u32 index;                  // program header index, for messages
};

struct Plan {
    u8          version;
    const char *kind;
    Seg         seg[MB_MAX_SEGMENTS];
    usize       nseg;
    bool        elf;
    u64         elf_entry;      // e_entry (virtual; translated by the segments)
    bool        have_entry;     // physical entry from the header (a.out, tag 3)
    u64         entry;
    bool        relocatable;    // tag 10: the load base is reported (tag 21)
    u64         lo, hi;         // loaded range, bss included
};

// The first header of this kind with a valid checksum at a multiple of
// `step` in the first `search` bytes; -1 if none (bad: a magic was seen).
i64 find_header(const u8 *img, u64 size, u32 magic, u64 search, u64 step, u64 words, bool &bad)
{
    u64 lim = min(size, search);
    for (u64 off = 0; off + 4 * words <= lim; off += step) {
        if (load_u32(img + off) != magic)
            continue;
        u32 sum = 0;
        for (u64 k = 0; k < words; k++)
            sum += load_u32(img + off + 4 * k);
        if (!sum)
            return static_cast<i64>(off);
        bad = true;
    }
    return -1;
}

Status parse_elf(const u8 *img, u64 size, Plan &p, LoadReport *r)
{
    if (size < 52 || img[0] != 0x7f || img[1] != 'E' || img[2] != 'L' || img[3] != 'F')
        return Why(r, Err::invalid).s("not an ELF file, and the header gives no load addresses");
    u8 cls = img[4];
    bool is64 = cls == 2;
    if ((cls != 1 && cls != 2) || img[5] != 1 /* LSB */ || img[6] != 1 /* EV_CURRENT */)
        return Why(r, Err::invalid).s("unsupported ELF class, data encoding or version");
    if (is64 && size < 64)
        return Why(r, Err::invalid).s("truncated ELF64 header");
    u16 type = load_u16(img + 16), machine = load_u16(img + 18);
    if (type != 2 /* ET_EXEC */ && type != 3 /* ET_DYN */)
        return Why(r, Err::invalid).s("ELF type ").d(type).s(" is not an executable");
    if (machine != (is64 ? 62 /* EM_X86_64 */ : 3 /* EM_386 */))
        return Why(r, Err::unsupported).s("ELF machine ").d(machine).s(" is not x86");

    u64 phoff = is64 ? load_u64(img + 32) : load_u32(img + 28);
    u16 phentsize = load_u16(img + (is64 ? 54 : 42)), phnum = load_u16(img + (is64 ? 56 : 44));
    u64 want = is64 ? 56 : 32;
    if (phentsize != want)
        return Why(r, Err::invalid).s("e_phentsize ").d(phentsize).s(", expected ").d(want);
    if (!phnum)
        return Why(r, Err::invalid).s("ELF has no program headers");
    if (phoff > size || phnum * want > size - phoff)
        return Why(r, Err::invalid).s("program headers at ").x(phoff).s(" (").d(phnum)
               .s(" entries) are beyond the end of the file");

    p.kind = is64 ? "ELF64" : "ELF32";
    p.elf = true;
    p.elf_entry = is64 ? load_u64(img + 24) : load_u32(img + 24);
    for (u32 i = 0; i < phnum; i++) {
        const u8 *ph = img + phoff + i * want;
        if (load_u32(ph) != 1 /* PT_LOAD */)
            continue;
        Seg s;
        s.index = i;
        if (is64) {
            s.off = load_u64(ph + 8);
            s.vaddr = load_u64(ph + 16);
            s.gpa = load_u64(ph + 24);
            s.filesz = load_u64(ph + 32);
            s.memsz = load_u64(ph + 40);
        } else {
            s.off = load_u32(ph + 4);
            s.vaddr = load_u32(ph + 8);
            s.gpa = load_u32(ph + 12);
            s.filesz = load_u32(ph + 16);
            s.memsz = load_u32(ph + 20);
        }
        if (s.memsz < s.filesz)
            return Why(r, Err::invalid).s("segment ").d(i).s(": memsz ").x(s.memsz).s(" < filesz ").x(s.filesz);
        if (s.filesz && (s.off > size || s.filesz > size - s.off))
            return Why(r, Err::invalid).s("segment ").d(i).s(": file range ").range(s.off, s.filesz)
                   .s(" is beyond the end of the file");
        if (!s.memsz)
            continue;
        if (p.nseg == MB_MAX_SEGMENTS)
            return Why(r, Err::unsupported).s("more than ").d(MB_MAX_SEGMENTS).s(" loadable segments");
        p.seg[p.nseg++] = s;
    }
    if (!p.nseg)
        return Why(r, Err::invalid).s("ELF has no loadable segments");
    return {};
}

// The a.out kludge (v1) and the address tag (v2): one flat segment, the
// file from hdr_addr - (header_addr - load_addr) on.
Status plan_flat(u64 size, u64 hdr_off, u64 header_addr, u64 load_addr, u64 load_end_addr,
                 u64 bss_end_addr, bool v2, Plan &p, LoadReport *r)
{
    u64 file_off, load = load_addr;
    if (v2 && load_addr == 0xffffffff) {           // v2: load the file from its start
        if (header_addr < hdr_off)
            return Why(r, Err::invalid).s("header_addr ").x(header_addr).s(" is below the header's file offset ")
                   .x(hdr_off);
        load = header_addr - hdr_off;
        file_off = 0;
    } else {
        if (load_addr > header_addr)
            return Why(r, Err::invalid).s("load_addr ").x(load_addr).s(" is above header_addr ").x(header_addr);
        if (header_addr - load_addr > hdr_off)
            return Why(r, Err::invalid).s("load_addr ").x(load_addr).s(" lies before the start of the file");
        file_off = hdr_off - (header_addr - load_addr);
    }
    u64 load_size = size - file_off;
    if (load_end_addr) {
        if (load_end_addr < load)
            return Why(r, Err::invalid).s("load_end_addr ").x(load_end_addr).s(" is below load_addr ").x(load);
        load_size = load_end_addr - load;
        if (load_size > size - file_off)
            return Why(r, Err::invalid).s("load range ").range(file_off, load_size)
                   .s(" is beyond the end of the file");
    }
    u64 memsz = load_size;
    if (bss_end_addr) {
        if (bss_end_addr < load + load_size)
            return Why(r, Err::invalid).s("bss_end_addr ").x(bss_end_addr).s(" is below load_end_addr ")
                   .x(load + load_size);
        memsz = bss_end_addr - load;
    }
    if (!memsz)
        return Why(r, Err::invalid).s("nothing to load");
    p.seg[0] = Seg{file_off, load_size, memsz, load, load, 0};
    p.nseg = 1;
    return {};
}

Status parse_mb1(const u8 *img, u64 size, u64 off, Plan &p, LoadReport *r)
{
    const u8 *h = img + off;
    u32 flags = load_u32(h + 4);
    p.version = 1;
    u32 req = flags & 0xffff & ~(MB1_PAGE_ALIGN | MB1_MEMORY_INFO);
    if (req & MB1_VIDEO_MODE)
        return Why(r, Err::unsupported).s("the kernel requires a video mode (Multiboot flag 2)");
    if (req)
        return Why(r, Err::unsupported).s("the kernel requires unknown Multiboot features (flags ").x(req).s(")");
    if (!(flags & MB1_AOUT_KLUDGE))
        return parse_elf(img, size, p, r);
    if (off + 32 > min(size, MB1_SEARCH))
        return Why(r, Err::invalid).s("Multiboot header at ").x(off).s(" extends past 8 KiB or the file");
    KEEL_TRY(plan_flat(size, off, load_u32(h + 12), load_u32(h + 16), load_u32(h + 20), load_u32(h + 24),
                       false, p, r));
    p.kind = "a.out kludge";
    p.have_entry = true;
    p.entry = load_u32(h + 28);
    return {};
}

u32 min_tag_size(u16 type)
{
    switch (type) {
    case HT_ENTRY: case HT_FLAGS: case HT_ENTRY_EFI32: case HT_ENTRY_EFI64: return 12;
    case HT_FRAMEBUFFER:                        return 20;
    case HT_ADDRESS: case HT_RELOCATABLE:       return 24;
    default:                                    return 8;
    }
}

bool provided(u32 type)
{
    switch (type) {
    case IT_END: case IT_CMDLINE: case IT_LOADER_NAME: case IT_MODULE: case IT_MEMINFO: case IT_MMAP:
        return true;
    default:
        return false;
    }
}

Status parse_mb2(const u8 *img, u64 size, u64 off, Plan &p, LoadReport *r)
{
    const u8 *h = img + off;
    u32 arch = load_u32(h + 4);
    u64 len = load_u32(h + 8);
    p.version = 2;
    if (arch != 0)
        return Why(r, Err::unsupported).s("Multiboot2 architecture ").d(arch).s(" is not i386");
    if (len < 16 + 8)
        return Why(r, Err::invalid).s("Multiboot2 header length ").d(len).s(" is too short");
    if (len > min(size, MB2_SEARCH) - off)
        return Why(r, Err::invalid).s("Multiboot2 header at ").x(off).s(" (").d(len)
               .s(" bytes) extends past 32 KiB or the file");

    bool addr = false, want_base = false;
    u32 a[4] = {};
    // At most len / 8 iterations: every tag is at least 8 bytes.
    for (u64 t = 16;;) {
        if (t > len || len - t < 8)
            return Why(r, Err::invalid).s("Multiboot2 header has no end tag");
        const u8 *tag = h + t;
        u16 type = load_u16(tag);
        bool optional = load_u16(tag + 2) & 1;
        u64 tsize = load_u32(tag + 4);
        if (tsize < 8 || tsize > len - t)
            return Why(r, Err::invalid).s("Multiboot2 header tag ").d(type).s(" at +").x(t).s(": bad size ").d(tsize);
        if (type == HT_END)
            break;
        if (tsize < min_tag_size(type))
            return Why(r, Err::invalid).s("Multiboot2 header tag ").d(type).s(" is too short (").d(tsize).s(" bytes)");
        switch (type) {
        case HT_INFO_REQ:
            for (u64 i = 8; !optional && i + 4 <= tsize; i += 4) {
                u32 want = load_u32(tag + i);
                if (want == IT_LOAD_BASE)
                    want_base = true;
                else if (!provided(want))
                    return Why(r, Err::unsupported).s("the kernel requires boot information tag ").d(want)
                           .s(", which Keel does not provide");
            }
            break;
        case HT_ADDRESS:
            addr = true;
            for (unsigned k = 0; k < 4; k++)
                a[k] = load_u32(tag + 8 + 4 * k);
            break;
        case HT_ENTRY:
            p.have_entry = true;
            p.entry = load_u32(tag + 8);
            break;
        case HT_FLAGS:
            if (!optional && (load_u32(tag + 8) & 1))
                return Why(r, Err::unsupported).s("the kernel requires a console (header tag 4)");
            break;
        case HT_MODULE_ALIGN:                       // modules are always page-aligned
            break;
        case HT_RELOCATABLE:                        // loaded at its preferred address
            p.relocatable = true;
            break;
        case HT_FRAMEBUFFER:
        case HT_EFI_BS:
        case HT_ENTRY_EFI32:
        case HT_ENTRY_EFI64:
        default:
            if (!optional)
                return Why(r, Err::unsupported).s("the kernel requires header tag ").d(type)
                       .s(type == HT_FRAMEBUFFER ? " (framebuffer)" :
                          type >= HT_EFI_BS && type <= HT_ENTRY_EFI64 ? " (EFI)" : " (unknown)");
            break;
        }
        t += align_up(tsize, 8);                    // tsize <= len <= 32 KiB: no wrap
    }
    if (want_base && !p.relocatable)
        return Why(r, Err::unsupported).s("the kernel requires boot information tag 21, but is not relocatable");
    if (!addr)
        return parse_elf(img, size, p, r);
    KEEL_TRY(plan_flat(size, off, a[0], a[1], a[2], a[3], true, p, r));
    p.kind = "address tag";
    if (!p.have_entry)
        return Why(r, Err::invalid).s("Multiboot2 address tag without an entry address tag");
    return {};
}

// The ranges the caller carved out of RAM (ACPI tables...), as the loader sees them.
struct Reserved {
    const MbReserved *r;
    usize n;

    const MbReserved *at(u64 a) const
    {
        for (usize i = 0; i < n; i++)
            if (a >= r[i].base && a - r[i].base < r[i].size) return &r[i];
        return nullptr;
    }
    const MbReserved *overlapping(u64 lo, u64 hi) const
    {
        for (usize i = 0; i < n; i++)
            if (lo < r[i].base + r[i].size && r[i].base < hi) return &r[i];
        return nullptr;
    }
    u64 next_start(u64 a) const   // the lowest base above a (~0 if none)
    {
        u64 best = ~0ull;
        for (usize i = 0; i < n; i++)
            if (r[i].base > a) best = min(best, r[i].base);
        return best;
    }
};

// Every segment wholly in RAM, outside the legacy hole and the reserved ranges,
// below 4 GiB, no two overlapping; the entry point inside one of them.
Status check_plan(const GuestMemory &mem, const Reserved &rv, Plan &p, LoadReport *r)
{
    p.lo = ~0ull;
    p.hi = 0;
    for (usize i = 0; i < p.nseg; i++) {
        const Seg &s = p.seg[i];
        if (s.memsz - 1 > ~0ull - s.gpa)
            return Why(r, Err::range).s("segment ").d(s.index).s(" at ").range(s.gpa, s.memsz).s(" wraps around");
        u64 end = s.gpa + s.memsz;
        if (end > FOUR_GIB)
            return Why(r, Err::range).s("segment ").d(s.index).s(" at ").range(s.gpa, s.memsz).s(" ends above 4 GiB");
        if (s.gpa < HOLE_HI && end > HOLE_LO)
            return Why(r, Err::range).s("segment ").d(s.index).s(" at ").range(s.gpa, s.memsz)
                   .s(" overlaps the legacy hole");
        if (const MbReserved *o = rv.overlapping(s.gpa, end))
            return Why(r, Err::range).s("segment ").d(s.index).s(" at ").range(s.gpa, s.memsz)
                   .s(" overlaps the reserved range ").range(o->base, o->size);
        if (!mem.contains(GuestPhys(s.gpa), s.memsz))
            return Why(r, Err::range).s("segment ").d(s.index).s(" at ").range(s.gpa, s.memsz)
                   .s(" is outside guest RAM");
        for (usize j = 0; j < i; j++) {
            const Seg &o = p.seg[j];
            if (s.gpa < o.gpa + o.memsz && o.gpa < end)
                return Why(r, Err::invalid).s("segments ").d(o.index).s(" and ").d(s.index).s(" overlap");
        }
        p.lo = min(p.lo, s.gpa);
        p.hi = max(p.hi, end);
    }

    u64 entry = p.entry;
    bool found = false;
    for (usize i = 0; i < p.nseg && !found; i++) {
        const Seg &s = p.seg[i];
        if (p.have_entry) {
            found = entry - s.gpa < s.memsz && entry >= s.gpa;
        } else if (p.elf_entry >= s.vaddr && p.elf_entry - s.vaddr < s.memsz) {
            entry = p.elf_entry - s.vaddr + s.gpa;
            found = true;
        }
    }
    if (!found)
        return Why(r, Err::invalid).s("entry point ").x(p.have_entry ? p.entry : p.elf_entry)
               .s(" is not inside a loaded segment");
    p.entry = entry;
    return {};
}

// The first `align`-aligned address >= cursor where `size` bytes are RAM,
// below PLACE_LIMIT and outside the legacy hole and the reserved ranges; the
// cursor moves past it.
bool place(const GuestMemory &m, const Reserved &rv, u64 &cursor, u64 size, u64 align, u64 &out)
{
    u64 lo, hi;
    for (usize i = 0; m.next_run(i, lo, hi);) {
        hi = min(hi, PLACE_LIMIT);
        u64 a = max(cursor, lo);
        for (usize pass = 0; pass < 2 + rv.n; pass++) {   // each obstacle moves a up once at most
            if (a >= hi)
                break;
            a = align_up(a, align);                 // a < 4 GiB: no wrap
            if (a >= hi || size > hi - a)
                break;
            if (a < HOLE_HI && a + size > HOLE_LO) {
                a = HOLE_HI;
                continue;
            }
            if (const MbReserved *o = rv.overlapping(a, a + size)) {
                a = o->base + o->size;
                continue;
            }
            out = a;
            cursor = a + size;
            return true;
        }
    }
    return false;
}

// Contiguous usable RAM from a on (0 if a is not RAM or is reserved).
u64 ram_from(const GuestMemory &m, const Reserved &rv, u64 a)
{
    if (rv.at(a))
        return 0;
    u64 lo, hi;
    for (usize i = 0; m.next_run(i, lo, hi);)
        if (lo <= a && a < hi)
            return min(hi, rv.next_start(a)) - a;
    return 0;
}

// The guest's memory map, ascending: RAM runs as type 1, the legacy hole as
// type 2 (unless RAM was put there), the reserved ranges with their own type
// (they win over both). A sweep over every range's edges: at each one, what
// covers the address, merged with its neighbour when the type is the same.
template <class F>
void for_each_mmap(const GuestMemory &m, const Reserved &rv, F f)
{
    u64 lo, hi;
    bool hole = true;
    for (usize i = 0; m.next_run(i, lo, hi);)
        if (lo < HOLE_HI && hi > HOLE_LO)
            hole = false;
    auto type_at = [&](u64 a) -> u32 {
        if (const MbReserved *o = rv.at(a))
            return o->type;
        for (usize i = 0; m.next_run(i, lo, hi);)
            if (lo <= a && a < hi)
                return 1;
        return hole && a >= HOLE_LO && a < HOLE_HI ? 2 : 0;
    };
    auto next_edge = [&](u64 a) -> u64 {   // the lowest edge above a (~0 if none)
        u64 e = ~0ull;
        auto see = [&](u64 x) {
            if (x > a) e = min(e, x);
        };
        for (usize i = 0; m.next_run(i, lo, hi);)
            see(lo), see(hi);
        if (hole)
            see(HOLE_LO), see(HOLE_HI);
        for (usize i = 0; i < rv.n; i++)
            see(rv.r[i].base), see(rv.r[i].base + rv.r[i].size);
        return e;
    };
    for (u64 a = 0, e; (e = next_edge(a)) != ~0ull || type_at(a); a = e) {
        const u32 t = type_at(a);
        if (e == ~0ull)
            break;                                   // (nothing runs to the end of the address space)
        while (t && type_at(e) == t && next_edge(e) != ~0ull)
            e = next_edge(e);
        if (t)
            f(a, e - a, t);
    }
}

using Writer = GuestWriter;

struct BootArgs {
    const char *cmdline;
    usize cmdline_len;
    const GuestModuleSrc *mods;
    usize nmods;
};

u64 v1_info_size(const BootArgs &b, u64 nmap)
{
    u64 n = MB1_INFO_SIZE + 16 * b.nmods + 24 * nmap + b.cmdline_len + 1 + LOADER_NAME_LEN + 1;
    for (usize i = 0; i < b.nmods; i++)
        n += b.mods[i].string_len + 1;
    return n;
}

u64 v2_info_size(const BootArgs &b, u64 nmap, bool base)
{
    u64 n = 8 + (base ? 16 : 0) + align_up(8 + b.cmdline_len + 1, 8) + align_up(8 + LOADER_NAME_LEN + 1, 8);
    for (usize i = 0; i < b.nmods; i++)
        n += align_up(16 + b.mods[i].string_len + 1, 8);
    return n + 16 /* meminfo */ + 16 + 24 * nmap /* mmap */ + 8 /* end */;
}

void write_v1_info(Writer &w, const GuestMemory &mem, const Reserved &rv, u64 info, const BootArgs &b, const u64 *mod_gpa,
                   u64 nmap, u32 lower, u32 upper)
{
    u64 mods = info + MB1_INFO_SIZE, mmap = mods + 16 * b.nmods;
    u64 cmdline = mmap + 24 * nmap, name = cmdline + b.cmdline_len + 1, str = name + LOADER_NAME_LEN + 1;
    w.w32(info + 0, MB1_INFO_FLAGS);
    w.w32(info + 4, lower);
    w.w32(info + 8, upper);
    w.w32(info + 16, static_cast<u32>(cmdline));
    w.w32(info + 20, static_cast<u32>(b.nmods));
    w.w32(info + 24, static_cast<u32>(mods));
    w.w32(info + 44, static_cast<u32>(24 * nmap));
    w.w32(info + 48, static_cast<u32>(mmap));
    w.w32(info + 64, static_cast<u32>(name));
    w.str(cmdline, b.cmdline, b.cmdline_len);
    w.str(name, LOADER_NAME, LOADER_NAME_LEN);
    for (usize i = 0; i < b.nmods; i++) {
        const GuestModuleSrc &m = b.mods[i];
        u64 e = mods + 16 * i;
        w.w32(e + 0, static_cast<u32>(mod_gpa[i]));
        w.w32(e + 4, static_cast<u32>(mod_gpa[i] + m.size));
        w.w32(e + 8, static_cast<u32>(str));
        w.str(str, m.string, m.string_len);
        str += m.string_len + 1;
    }
    for_each_mmap(mem, rv, [&](u64 base, u64 len, u32 type) {
        w.w32(mmap + 0, 20);                    // size of the entry, not counting this field
        w.w64(mmap + 4, base);
        w.w64(mmap + 12, len);
        w.w32(mmap + 20, type);
        mmap += 24;
    });
}

void write_v2_info(Writer &w, const GuestMemory &mem, const Reserved &rv, u64 info, const BootArgs &b, const u64 *mod_gpa,
                   u64 nmap, u32 lower, u32 upper, bool base, u64 load_base)
{
    u64 t = info + 8;
    if (base) {
        w.w32(t, IT_LOAD_BASE);
        w.w32(t + 4, 12);
        w.w32(t + 8, static_cast<u32>(load_base));
        t += 16;
    }
    w.w32(t, IT_CMDLINE);
    w.w32(t + 4, static_cast<u32>(8 + b.cmdline_len + 1));
    w.str(t + 8, b.cmdline, b.cmdline_len);
    t += align_up(8 + b.cmdline_len + 1, 8);
    w.w32(t, IT_LOADER_NAME);
    w.w32(t + 4, 8 + LOADER_NAME_LEN + 1);
    w.str(t + 8, LOADER_NAME, LOADER_NAME_LEN);
    t += align_up(8 + LOADER_NAME_LEN + 1, 8);
    for (usize i = 0; i < b.nmods; i++) {
        const GuestModuleSrc &m = b.mods[i];
        w.w32(t, IT_MODULE);
        w.w32(t + 4, static_cast<u32>(16 + m.string_len + 1));
        w.w32(t + 8, static_cast<u32>(mod_gpa[i]));
        w.w32(t + 12, static_cast<u32>(mod_gpa[i] + m.size));
        w.str(t + 16, m.string, m.string_len);
        t += align_up(16 + m.string_len + 1, 8);
    }
    w.w32(t, IT_MEMINFO);
    w.w32(t + 4, 16);
    w.w32(t + 8, lower);
    w.w32(t + 12, upper);
    t += 16;
    w.w32(t, IT_MMAP);
    w.w32(t + 4, static_cast<u32>(16 + 24 * nmap));
    w.w32(t + 8, 24);                           // entry_size
    w.w32(t + 12, 0);                           // entry_version
    t += 16;
    for_each_mmap(mem, rv, [&](u64 base_, u64 len, u32 type) {
        w.w64(t, base_);
        w.w64(t + 8, len);
        w.w32(t + 16, type);
        w.w32(t + 20, 0);
        t += 24;
    });
    w.w32(t, IT_END);
    w.w32(t + 4, 8);
    t += 8;
    w.w32(info, static_cast<u32>(t - info));    // total_size
    w.w32(info + 4, 0);
}

Status check_args(const u8 *image, u64 size, const BootArgs &b, LoadReport *r)
{
    if (!image || !size)
        return Why(r, Err::invalid).s("no kernel image");
    if ((!b.cmdline && b.cmdline_len) || b.cmdline_len > MB_MAX_STRING)
        return Why(r, Err::invalid).s("bad command line");
    if (b.nmods > MB_MAX_MODULES || (!b.mods && b.nmods))
        return Why(r, Err::invalid).s("too many modules (at most ").d(MB_MAX_MODULES).s(")");
    for (usize i = 0; i < b.nmods; i++) {
        const GuestModuleSrc &m = b.mods[i];
        if ((!m.data && m.size) || (!m.string && m.string_len) || m.string_len > MB_MAX_STRING)
            return Why(r, Err::invalid).s("bad module ").d(i);
    }
    return {};
}

} // namespace

Result<EntryState> load_multiboot(GuestMemory &mem, const u8 *image, u64 size, const char *cmdline,
                                  usize cmdline_len, const GuestModuleSrc *mods, usize nmods,
                                  LoadReport *report, const MbReserved *reserved, usize nreserved)
{
    LoadReport *r = report;
    if (r)
        *r = LoadReport{};
    const BootArgs b{cmdline, cmdline_len, mods, nmods};
    KEEL_TRY(check_args(image, size, b, r));
    if (nreserved > MB_MAX_RESERVED || (!reserved && nreserved))
        return Why(r, Err::invalid).s("too many reserved ranges");
    for (usize i = 0; i < nreserved; i++)
        if (!reserved[i].size || reserved[i].size > FOUR_GIB || reserved[i].base > FOUR_GIB ||
            reserved[i].type < 2)
            return Why(r, Err::invalid).s("bad reserved range ").d(i);
    const Reserved rv{reserved, nreserved};

    // The header: Multiboot2 first.
    Plan p{};
    bool bad = false;
    i64 off = find_header(image, size, MB2_MAGIC, MB2_SEARCH, 8, 4, bad);
    if (off >= 0) {
        if (r) r->version = 2;
        KEEL_TRY(parse_mb2(image, size, static_cast<u64>(off), p, r));
    } else if ((off = find_header(image, size, MB1_MAGIC, MB1_SEARCH, 4, 3, bad)) >= 0) {
        if (r) r->version = 1;
        KEEL_TRY(parse_mb1(image, size, static_cast<u64>(off), p, r));
    } else if (bad) {
        return Why(r, Err::bad_checksum).s("Multiboot header with a bad checksum");
    } else {
        return Why(r, Err::not_found).s("no Multiboot header in the first 32 KiB");
    }
    KEEL_TRY(check_plan(mem, rv, p, r));

    // Placement above the image: modules, then the boot information.
    u64 cursor = p.hi, mod_gpa[MB_MAX_MODULES];
    for (usize i = 0; i < nmods; i++)
        if (!place(mem, rv, cursor, mods[i].size, PAGE_SIZE, mod_gpa[i]))
            return Why(r, Err::no_memory).s("module ").d(i).s(" (").d(mods[i].size)
                   .s(" bytes) does not fit in guest RAM below 4 GiB");
    u64 nmap = 0;
    for_each_mmap(mem, rv, [&](u64, u64, u32) { nmap++; });
    bool base = p.version == 2 && p.relocatable;
    u64 info_size = p.version == 1 ? v1_info_size(b, nmap) : v2_info_size(b, nmap, base);
    u64 info;
    if (!place(mem, rv, cursor, info_size, PAGE_SIZE, info))
        return Why(r, Err::no_memory).s("boot information (").d(info_size)
               .s(" bytes) does not fit in guest RAM below 4 GiB");

    // Everything fits: write.
    Writer w(mem);
    for (usize i = 0; i < p.nseg; i++) {
        const Seg &s = p.seg[i];
        w.bytes(s.gpa, image + s.off, s.filesz);
        w.zero(s.gpa + s.filesz, s.memsz - s.filesz);
    }
    for (usize i = 0; i < nmods; i++)
        w.bytes(mod_gpa[i], mods[i].data, mods[i].size);
    w.zero(info, info_size);
    u32 lower = static_cast<u32>(min(ram_from(mem, rv, 0), 640 * KiB) / KiB);
    u32 upper = static_cast<u32>(min<u64>(ram_from(mem, rv, 1 * MiB) / KiB, 0xffffffff));
    if (p.version == 1)
        write_v1_info(w, mem, rv, info, b, mod_gpa, nmap, lower, upper);
    else
        write_v2_info(w, mem, rv, info, b, mod_gpa, nmap, lower, upper, base, p.lo);
    if (!w.ok())
        return Why(r, Err::range).s("write to guest RAM failed");

    if (r) {
        r->image_start = GuestPhys(p.lo);
        r->image_end = GuestPhys(p.hi);
        r->info = GuestPhys(info);
        r->end = GuestPhys(cursor);
        Why(r, Err::none).s(p.version == 1 ? "multiboot " : "multiboot2 ").s(p.kind).s(": image ")
            .x(p.lo).s("-").x(p.hi).s(", entry ").x(p.entry).s(", ").d(nmods).s(" modules, info ").x(info);
    }
    return EntryState{static_cast<u32>(p.entry), p.version == 1 ? MB1_BOOT_MAGIC : MB2_BOOT_MAGIC,
                      static_cast<u32>(info)};
}

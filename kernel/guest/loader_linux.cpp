// Linux bzImage loader (x86 boot protocol, 64-bit entry): header -> plan ->
// placement -> writes.
//
// Every field of the setup header is checked before use, in u64 arithmetic
// that cannot wrap. Nothing is written to the guest until the whole load has
// been planned, and then only through GuestMemory, into ranges already known
// to be RAM and disjoint from one another.
#include "kernel/guest/loader_linux.hpp"

#include "kernel/lib/bytes.hpp"
#include "kernel/lib/why.hpp"

namespace {

// Setup header fields: offsets in the bzImage file and in boot_params alike.
enum : u64 {
    H_SETUP_SECTS = 0x1f1, H_BOOT_FLAG = 0x1fe, H_JUMP = 0x200, H_HEADER = 0x202, H_VERSION = 0x206,
    H_TYPE_OF_LOADER = 0x210, H_LOADFLAGS = 0x211, H_CODE32_START = 0x214, H_RAMDISK_IMAGE = 0x218,
    H_RAMDISK_SIZE = 0x21c, H_EXT_LOADER_VER = 0x226, H_EXT_LOADER_TYPE = 0x227, H_CMD_LINE_PTR = 0x228,
    H_INITRD_ADDR_MAX = 0x22c, H_KERNEL_ALIGNMENT = 0x230, H_RELOCATABLE = 0x234, H_XLOADFLAGS = 0x236,
    H_CMDLINE_SIZE = 0x238, H_HARDWARE_SUBARCH = 0x23c, H_HARDWARE_SUBARCH_DATA = 0x240, H_SETUP_DATA = 0x250,
    H_PREF_ADDRESS = 0x258, H_INIT_SIZE = 0x260,
    H_MIN_END = 0x268,                  // protocol 2.12's header ends here (after handover_offset) or later
};
// struct boot_params (the zero page).
enum : u64 {
    BP_ACPI_RSDP = 0x070, BP_EXT_RAMDISK_IMAGE = 0x0c0, BP_EXT_RAMDISK_SIZE = 0x0c4, BP_EXT_CMD_LINE_PTR = 0x0c8,
    BP_E820_ENTRIES = 0x1e8, BP_HDR_LIMIT = 0x290 /* the setup header's room */, BP_E820_TABLE = 0x2d0,
    BP_SIZE = 0x1000,
};
constexpr usize E820_MAX = 128;                 // entries in the zero page
constexpr u64 E820_ENTRY = 20;                  // packed {u64 addr, u64 size, u32 type}
constexpr u32 HDRS = 0x53726448;                // "HdrS"
constexpr u16 BOOT_FLAG = 0xaa55;
constexpr u16 PROTO_ACPI_RSDP = 0x020e;         // 2.14: acpi_rsdp_addr
constexpr u8 LOADED_HIGH = 1u << 0;
constexpr u16 XLF_KERNEL_64 = 1u << 0, XLF_CAN_BE_LOADED_ABOVE_4G = 1u << 1;
constexpr u8 LOADER_UNDEFINED = 0xff;           // type_of_loader: no assigned boot loader ID
constexpr u64 ENTRY_64 = 0x200;                 // startup_64, from the protected-mode kernel's start

constexpr u64 FOUR_GIB = 4 * GiB;
constexpr u64 MAP_MAX = 512 * GiB;              // one PDPT
constexpr u64 HOLE_LO = GuestMemory::LEGACY_HOLE_START, HOLE_HI = GuestMemory::LEGACY_HOLE_END;
constexpr u64 GDT_SIZE = 4 * 8, GDT_AREA = 0x40;    // null, unused, __BOOT_CS, __BOOT_DS; cmdline after 0x40
constexpr u64 PTE_P = 1, PTE_RW = 2, PTE_PS = 0x80;

// Builds LinuxLoadReport::msg and converts to the error it describes (kernel/lib/why.hpp).
using Why = WhyMsg<LinuxLoadReport>;

// What the loader needs from the setup header, validated.
struct Hdr {
    u16 version;
    u16 xloadflags;
    u64 hdr_end;                // one past the setup header in the file
    u64 setup_size;             // (setup_sects + 1) * 512: the protected-mode kernel follows
    u64 payload;                // its size
    u64 init_size;              // memory it needs from its load address
    bool relocatable;
    u64 align;                  // load alignment (relocatable), at least a page
    u64 pref;                   // pref_address
    u64 cmdline_size;           // longest command line (excluding the NUL)
    u64 initrd_end_max;         // initrd_addr_max + 1
};

Status parse_header(const u8 *img, u64 size, Hdr &h, LinuxLoadReport *r)
{
    if (size < H_JUMP)
        return Why(r, Err::invalid).s("file too small (").d(size).s(" bytes) to be a bzImage");
    if (load_u16(img + H_BOOT_FLAG) != BOOT_FLAG)
        return Why(r, Err::invalid).s("no boot sector signature 0xaa55 at 0x1fe: not a bzImage");
    if (size < H_VERSION + 2 || load_u32(img + H_HEADER) != HDRS)
        return Why(r, Err::invalid).s("no setup header (\"HdrS\" at 0x202): not a bzImage");
    h.version = load_u16(img + H_VERSION);
    if (r)
        r->protocol = h.version;
    if (h.version < LINUX_MIN_PROTOCOL)
        return Why(r, Err::unsupported).s("boot protocol ").ver(h.version)
               .s(" is older than 2.12 (no 64-bit entry point)");
    h.hdr_end = H_HEADER + img[H_JUMP + 1];
    if (h.hdr_end < H_MIN_END)
        return Why(r, Err::invalid).s("setup header ends at ").x(h.hdr_end).s(", too short for protocol ")
               .ver(h.version);
    if (h.hdr_end > size)
        return Why(r, Err::invalid).s("setup header (to ").x(h.hdr_end).s(") runs past the end of the file");

    u64 sects = img[H_SETUP_SECTS] ? img[H_SETUP_SECTS] : 4;
    h.setup_size = (sects + 1) * 512;       // >= 1 KiB > hdr_end
    if (h.setup_size > size)
        return Why(r, Err::invalid).s("setup_sects ").d(sects).s(": the setup area (").d(h.setup_size)
               .s(" bytes) is beyond the end of the file (").d(size).s(" bytes)");
    if (!(img[H_LOADFLAGS] & LOADED_HIGH))
        return Why(r, Err::invalid).s("loadflags LOADED_HIGH clear: a zImage, not a bzImage");
    h.xloadflags = load_u16(img + H_XLOADFLAGS);
    if (!(h.xloadflags & XLF_KERNEL_64))
        return Why(r, Err::unsupported).s("xloadflags ").x(h.xloadflags)
               .s(" without XLF_KERNEL_64: no 64-bit entry point");
    h.payload = size - h.setup_size;
    if (h.payload <= ENTRY_64)
        return Why(r, Err::invalid).s("protected-mode kernel (").d(h.payload)
               .s(" bytes) too small for the 64-bit entry at +0x200");
    h.init_size = load_u32(img + H_INIT_SIZE);
    if (h.init_size < h.payload)
        return Why(r, Err::invalid).s("init_size ").x(h.init_size).s(" is smaller than the protected-mode kernel (")
               .x(h.payload).s(" bytes)");
    h.relocatable = img[H_RELOCATABLE] != 0;
    h.align = load_u32(img + H_KERNEL_ALIGNMENT);
    if (h.relocatable && !is_pow2(h.align))
        return Why(r, Err::invalid).s("kernel_alignment ").x(h.align).s(" is not a power of two");
    h.align = max(h.align, PAGE_SIZE);
    h.pref = load_u64(img + H_PREF_ADDRESS);
    h.cmdline_size = load_u32(img + H_CMDLINE_SIZE);
    h.initrd_end_max = u64(load_u32(img + H_INITRD_ADDR_MAX)) + 1;
    return {};
}

Status check_args(const LinuxLoadParams &p, LinuxLoadReport *r)
{
    if (!p.kernel || !p.kernel_size)
        return Why(r, Err::invalid).s("no kernel image");
    if (!p.initrd && p.initrd_size)
        return Why(r, Err::invalid).s("initrd of ").d(p.initrd_size).s(" bytes without data");
    if (!p.cmdline && p.cmdline_len)
        return Why(r, Err::invalid).s("command line of ").d(p.cmdline_len).s(" bytes without data");
    if (p.cmdline_len > LINUX_MAX_CMDLINE)
        return Why(r, Err::invalid).s("command line (").d(p.cmdline_len).s(" bytes) longer than ")
               .d(LINUX_MAX_CMDLINE);
    if (p.nreserved > LINUX_MAX_RESERVED)
        return Why(r, Err::invalid).s("more than ").d(LINUX_MAX_RESERVED).s(" reserved ranges");
    for (usize i = 0; i < p.nreserved; i++) {
        const LinuxLoadParams::Range &a = p.reserved[i];
        if (!a.size || a.size > ~0ull - a.base)
            return Why(r, Err::invalid).s("reserved range ").d(i).s(" (").range(a.base, a.size)
                   .s(") is empty or wraps");
        if (a.type == LINUX_E820_RAM)
            return Why(r, Err::invalid).s("reserved range ").d(i).s(" has type 1 (RAM)");
        for (usize j = 0; j < i; j++) {
            const LinuxLoadParams::Range &b = p.reserved[j];
            if (a.base < b.base + b.size && b.base < a.base + a.size)
                return Why(r, Err::invalid).s("reserved ranges ").d(j).s(" and ").d(i).s(" overlap");
        }
    }
    return {};
}

// ---- placement -------------------------------------------------------------------

struct Span {
    u64 lo, hi;                 // [lo, hi)
};

// Ranges nothing may be placed over: page 0, the legacy hole, the reserved
// ranges and what has been placed so far.
class Avoid {
public:
    static constexpr usize MAX = 2 + LINUX_MAX_RESERVED + 2;

    // size > 0 and base + size <= 2^64 - 1 (checked by the callers).
    void add(u64 base, u64 size)
    {
        if (n_ < MAX)
            s_[n_++] = Span{base, base + size};
    }
    // One span overlapping [a, a + size), or nullptr. a + size must not wrap.
    const Span *hit(u64 a, u64 size) const
    {
        u64 end = a + size;
        for (usize i = 0; i < n_; i++)
            if (a < s_[i].hi && s_[i].lo < end)
                return &s_[i];
        return nullptr;
    }
    usize count() const { return n_; }

private:
    Span s_[MAX];
    usize n_ = 0;
};

// The lowest `align`-aligned a >= lo_b with [a, a + size) inside one RAM run,
// below hi_b and clear of `av`. Each step moves a past one avoided span, so
// at most av.count() + 1 steps per run.
bool find_low(const GuestMemory &m, const Avoid &av, u64 size, u64 align, u64 lo_b, u64 hi_b, u64 &out)
{
    u64 lo, hi;
    for (usize i = 0; m.next_run(i, lo, hi);) {
        hi = min(hi, hi_b);
        u64 a = max(lo, lo_b);
        for (usize k = 0; k <= av.count(); k++) {
            if (a >= hi || a > ~0ull - align)
                break;
            a = align_up(a, align);
            if (a >= hi || size > hi - a)
                break;
            const Span *t = av.hit(a, size);
            if (!t) {
                out = a;
                return true;
            }
            a = t->hi;
        }
    }
    return false;
}

// The highest such a with lo_b <= a and a + size <= hi_b. Runs ascend, so the
// last run with a fit has the highest one.
bool find_high(const GuestMemory &m, const Avoid &av, u64 size, u64 align, u64 lo_b, u64 hi_b, u64 &out)
{
    bool found = false;
    u64 lo, hi;
    for (usize i = 0; m.next_run(i, lo, hi);) {
        lo = max(lo, lo_b);
        hi = min(hi, hi_b);
        if (lo >= hi || size > hi - lo)
            continue;
        u64 a = align_down(hi - size, align);
        for (usize k = 0; k <= av.count(); k++) {
            if (a < lo)
                break;
            const Span *t = av.hit(a, size);
            if (!t) {
                out = a;
                found = true;
                break;
            }
            if (t->lo < size)
                break;
            a = align_down(t->lo - size, align);
        }
    }
    return found;
}

// ---- the e820 map ------------------------------------------------------------------

u32 reserved_type(const LinuxLoadParams::Range &a) { return a.type ? a.type : LINUX_E820_RESERVED; }

// Calls f(base, size, type) for each entry, ascending; returns how many.
// Sweeps the boundaries of the extents, the reserved ranges and the legacy
// hole: the type is constant between two neighbouring boundaries (reserved
// over RAM over hole). At most 2 * (64 + 8 + 1) steps of O(64 + 8) each.
template <class F>
usize for_each_e820(const GuestMemory &m, const LinuxLoadParams &p, F f)
{
    auto type_at = [&](u64 x) -> u32 {
        for (usize i = 0; i < p.nreserved; i++)
            if (x >= p.reserved[i].base && x - p.reserved[i].base < p.reserved[i].size)
                return reserved_type(p.reserved[i]);
        if (m.contains(GuestPhys(x), 1))
            return LINUX_E820_RAM;
        if (x >= HOLE_LO && x < HOLE_HI)
            return LINUX_E820_RESERVED;
        return 0;
    };
    // The smallest boundary above x.
    auto next_after = [&](u64 x, u64 &nx) {
        bool found = false;
        auto see = [&](u64 b) {
            if (b > x && (!found || b < nx)) {
                nx = b;
                found = true;
            }
        };
        for (usize i = 0; i < m.extent_count(); i++) {
            see(m.extent(i).gpa.raw());
            see(m.extent(i).end());
        }
        for (usize i = 0; i < p.nreserved; i++) {
            see(p.reserved[i].base);
            see(p.reserved[i].base + p.reserved[i].size);
        }
        see(HOLE_LO);
        see(HOLE_HI);
        return found;
    };

    usize n = 0;
    u64 cur_lo = 0, x = 0;
    u32 cur = 0;
    for (;;) {
        u32 t = type_at(x);
        if (t != cur) {
            if (cur) {
                f(cur_lo, x - cur_lo, cur);
                n++;
            }
            cur = t;
            cur_lo = x;
        }
        u64 nx;
        if (!next_after(x, nx))
            break;          // nothing extends past the last boundary: cur is 0
        x = nx;
    }
    return n;
}

// ---- writing -------------------------------------------------------------------------

using Writer = GuestWriter;

// PML4 at `pt`, the PDPT after it, then npd page directories of 2 MiB pages
// identity-mapping [0, npd GiB).
void write_page_tables(Writer &w, u64 pt, u64 npd)
{
    u64 pdpt = pt + PAGE_SIZE, pd = pdpt + PAGE_SIZE;
    w.w64(pt, pdpt | PTE_P | PTE_RW);
    for (u64 i = 0; i < npd; i++)
        w.w64(pdpt + 8 * i, (pd + i * PAGE_SIZE) | PTE_P | PTE_RW);
    constexpr usize BATCH = 64;                 // entries per write
    u8 buf[BATCH * 8];
    for (u64 i = 0; i < npd; i++)
        for (u64 j = 0; j < 512; j += BATCH) {
            for (usize k = 0; k < BATCH; k++) {
                u64 e = (i * GiB + (j + k) * 2 * MiB) | PTE_P | PTE_RW | PTE_PS;
                for (unsigned b = 0; b < 8; b++) buf[8 * k + b] = static_cast<u8>(e >> 8 * b);
            }
            w.bytes(pd + i * PAGE_SIZE + 8 * j, buf, sizeof(buf));
        }
}

} // namespace

Result<LinuxEntryState> load_linux(GuestMemory &mem, const LinuxLoadParams &p, LinuxLoadReport *report)
{
    LinuxLoadReport *r = report;
    if (r)
        zero_object(*r);
    KEEL_TRY(check_args(p, r));
    Hdr h{};
    KEEL_TRY(parse_header(p.kernel, p.kernel_size, h, r));
    if (p.cmdline_len > h.cmdline_size)
        return Why(r, Err::invalid).s("command line (").d(p.cmdline_len)
               .s(" bytes) longer than the kernel's cmdline_size ").d(h.cmdline_size);
    if (!mem.extent_count())
        return Why(r, Err::no_memory).s("the guest has no RAM");

    // The identity map: [0, mapped), whole page directories.
    u64 ram_top = mem.extent(mem.extent_count() - 1).end();
    u64 mapped = ram_top >= MAP_MAX ? MAP_MAX : align_up(max(ram_top, FOUR_GIB), GiB);
    u64 npd = mapped / GiB;
    bool above_4g = h.xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G;
    u64 limit = above_4g ? mapped : FOUR_GIB;       // for the kernel and the boot block

    Avoid av;
    av.add(0, PAGE_SIZE);
    av.add(HOLE_LO, HOLE_HI - HOLE_LO);
    for (usize i = 0; i < p.nreserved; i++)
        av.add(p.reserved[i].base, p.reserved[i].size);

    // The protected-mode kernel and the memory it runs in.
    u64 load;
    if (h.relocatable) {
        u64 from = max(h.pref, HOLE_HI);
        if (from >= limit || !find_low(mem, av, h.init_size, h.align, from, limit, load))
            return Why(r, Err::no_memory).s("kernel (init_size ").x(h.init_size).s(", alignment ").x(h.align)
                   .s(") does not fit in guest RAM between ").x(from).s(" and ").x(limit);
    } else {
        load = h.pref;
        if (h.init_size > ~0ull - load || load + h.init_size > limit || !mem.contains(GuestPhys(load), h.init_size))
            return Why(r, Err::range).s("non-relocatable kernel at ").range(load, h.init_size)
                   .s(" is not in guest RAM below ").x(limit);
        if (av.hit(load, h.init_size))
            return Why(r, Err::range).s("non-relocatable kernel at ").range(load, h.init_size)
                   .s(" overlaps page 0, the legacy hole or a reserved range");
    }
    av.add(load, h.init_size);

    // The boot block: boot_params, PML4, PDPT, page directories, GDT + command line.
    u64 pt_size = (2 + npd) * PAGE_SIZE;
    u64 block_size = BP_SIZE + pt_size + align_up(GDT_AREA + p.cmdline_len + 1, PAGE_SIZE);
    u64 block;
    if (!find_low(mem, av, block_size, PAGE_SIZE, 0, limit, block))
        return Why(r, Err::no_memory).s("boot_params, page tables and command line (").d(block_size)
               .s(" bytes) do not fit in guest RAM below ").x(limit);
    av.add(block, block_size);
    u64 bp = block, pt = bp + BP_SIZE, gdt = pt + pt_size, cmd = gdt + GDT_AREA;

    // The initrd: as high as the kernel allows.
    u64 initrd = 0;
    if (p.initrd_size) {
        u64 top = min(h.initrd_end_max, FOUR_GIB);
        bool found = find_high(mem, av, p.initrd_size, PAGE_SIZE, 0, top, initrd);
        if (!found && above_4g)
            found = find_high(mem, av, p.initrd_size, PAGE_SIZE, FOUR_GIB, ~0ull, initrd);
        if (!found)
            return Why(r, Err::no_memory).s("initrd (").d(p.initrd_size).s(" bytes) does not fit in guest RAM below ")
                   .x(top).s(above_4g ? " or above 4 GiB" : "");
    }

    usize n820 = for_each_e820(mem, p, [](u64, u64, u32) {});
    if (n820 > E820_MAX)
        return Why(r, Err::unsupported).s("the memory map needs ").d(n820).s(" entries, more than ").d(E820_MAX);

    // Everything fits: write.
    Writer w(mem);
    w.bytes(load, p.kernel + h.setup_size, h.payload);
    if (p.initrd_size)
        w.bytes(initrd, p.initrd, p.initrd_size);

    w.zero(block, block_size);
    w.bytes(bp + H_SETUP_SECTS, p.kernel + H_SETUP_SECTS, min<u64>(h.hdr_end, BP_HDR_LIMIT) - H_SETUP_SECTS);
    w.w8(bp + H_TYPE_OF_LOADER, LOADER_UNDEFINED);
    w.w8(bp + H_EXT_LOADER_VER, 0);
    w.w8(bp + H_EXT_LOADER_TYPE, 0);
    if (load < FOUR_GIB)
        w.w32(bp + H_CODE32_START, static_cast<u32>(load));
    w.w32(bp + H_RAMDISK_IMAGE, static_cast<u32>(initrd));
    w.w32(bp + H_RAMDISK_SIZE, static_cast<u32>(p.initrd_size));
    w.w32(bp + BP_EXT_RAMDISK_IMAGE, static_cast<u32>(initrd >> 32));
    w.w32(bp + BP_EXT_RAMDISK_SIZE, static_cast<u32>(p.initrd_size >> 32));
    w.w32(bp + H_CMD_LINE_PTR, static_cast<u32>(cmd));
    w.w32(bp + BP_EXT_CMD_LINE_PTR, static_cast<u32>(cmd >> 32));
    w.w32(bp + H_HARDWARE_SUBARCH, 0);          // X86_SUBARCH_PC
    w.w64(bp + H_HARDWARE_SUBARCH_DATA, 0);
    w.w64(bp + H_SETUP_DATA, 0);                // no setup_data list
    if (h.version >= PROTO_ACPI_RSDP)
        w.w64(bp + BP_ACPI_RSDP, p.acpi_rsdp);
    w.w8(bp + BP_E820_ENTRIES, static_cast<u8>(n820));
    u64 e = bp + BP_E820_TABLE;
    for_each_e820(mem, p, [&](u64 base, u64 size, u32 type) {
        w.w64(e, base);
        w.w64(e + 8, size);
        w.w32(e + 16, type);
        e += E820_ENTRY;
    });

    write_page_tables(w, pt, npd);
    w.w64(gdt + 2 * 8, LINUX_GDT_CODE64);
    w.w64(gdt + 3 * 8, LINUX_GDT_DATA);
    w.bytes(cmd, p.cmdline, p.cmdline_len);     // the NUL: zeroed with the block
    if (!w.ok())
        return Why(r, Err::range).s("write to guest RAM failed");

    if (r) {
        r->kernel = GuestPhys(load);
        r->kernel_size = h.payload;
        r->init_size = h.init_size;
        r->boot_params = GuestPhys(bp);
        r->cmdline = GuestPhys(cmd);
        r->gdt = GuestPhys(gdt);
        r->page_tables = GuestPhys(pt);
        r->page_tables_size = pt_size;
        r->mapped = mapped;
        r->initrd = GuestPhys(initrd);
        r->initrd_size = p.initrd_size;
        r->e820_entries = static_cast<u32>(n820);
        Why(r, Err::none).s("linux ").ver(h.version).s(": kernel ").x(load).s(" (init ").x(h.init_size)
            .s("), boot_params ").x(bp).s(", initrd ").range(initrd, p.initrd_size).s(", ").d(n820).s(" e820");
    }
    return LinuxEntryState{load + ENTRY_64, bp, pt, gdt, static_cast<u16>(GDT_SIZE - 1), LINUX_BOOT_CS,
                           LINUX_BOOT_DS};
}

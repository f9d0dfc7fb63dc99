// Linux bzImage loader (boot protocol 2.15, 64-bit entry): synthetic bzImages
// built here, loaded into guest RAM laid out like a PC and checked byte by
// byte (payload, boot_params, e820, page tables, GDT, placement); malformed
// images and arguments; and a randomised corruption loop with guard bytes
// around every backing extent. A real Debian kernel can be tried by hand:
// KEEL_TEST_BZIMAGE=/path/to/vmlinuz (the test is skipped without it).
#include <gtest/gtest.h>

#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernel/guest/guest_memory.hpp"
#include "kernel/guest/loader_linux.hpp"

namespace {

using Bytes = std::vector<u8>;

void put8(Bytes &b, size_t off, u8 v)
{
    if (b.size() < off + 1) b.resize(off + 1);
    b[off] = v;
}
void put16(Bytes &b, size_t off, u16 v)
{
    if (b.size() < off + 2) b.resize(off + 2);
    for (int i = 0; i < 2; i++) b[off + i] = u8(v >> 8 * i);
}
void put32(Bytes &b, size_t off, u32 v)
{
    if (b.size() < off + 4) b.resize(off + 4);
    for (int i = 0; i < 4; i++) b[off + i] = u8(v >> 8 * i);
}
void put64(Bytes &b, size_t off, u64 v)
{
    put32(b, off, u32(v));
    put32(b, off + 4, u32(v >> 32));
}
u16 get16(const Bytes &b, size_t off) { return u16(b[off] | b[off + 1] << 8); }
u32 get32(const Bytes &b, size_t off)
{
    return u32(b[off]) | u32(b[off + 1]) << 8 | u32(b[off + 2]) << 16 | u32(b[off + 3]) << 24;
}
u64 get64(const Bytes &b, size_t off) { return get32(b, off) | u64(get32(b, off + 4)) << 32; }

Bytes pattern(size_t n, u8 seed)
{
    Bytes b(n);
    for (size_t i = 0; i < n; i++) b[i] = u8(seed + i * 13 + (i >> 8));
    return b;
}

// ---- guest RAM -------------------------------------------------------------------

// Guest RAM, each range split into extents of at most `chunk` bytes (like
// buddy blocks), each backed by a vector with guard bytes on both sides.
// `fill` pre-sets RAM so that untouched and zeroed memory are visible.
class Guest {
public:
    static constexpr size_t GUARD = 256;

    explicit Guest(u64 bytes, u64 chunk = 64 * MiB, u8 fill = 0xa5, u64 lowmem_top = 3 * GiB)
    {
        GuestExtent e[3];
        usize n = GuestMemory::pc_layout(bytes, lowmem_top, e);
        for (usize i = 0; i < n; i++)
            for (u64 off = 0; off < e[i].size; off += chunk)
                add(e[i].gpa.raw() + off, std::min(chunk, e[i].size - off), fill);
    }
    Guest() = default;

    void add(u64 gpa, u64 size, u8 fill = 0xa5)
    {
        auto v = std::make_unique<Bytes>(size + 2 * GUARD, 0xcc);
        std::memset(v->data() + GUARD, fill, size);
        EXPECT_TRUE(mem.add(GuestPhys(gpa), size, v->data() + GUARD));
        backs.push_back(std::move(v));
    }

    bool guards_ok() const
    {
        for (auto &v : backs)
            for (size_t i = 0; i < GUARD; i++)
                if ((*v)[i] != 0xcc || (*v)[v->size() - 1 - i] != 0xcc)
                    return false;
        return true;
    }

    // All of RAM and the guards, extent after extent; into a reused buffer
    // (fresh multi-MiB buffers cost page faults), compared in place.
    void snapshot(Bytes &out) const
    {
        size_t n = 0;
        for (auto &v : backs) n += v->size();
        out.resize(n);
        size_t at = 0;
        for (auto &v : backs) {
            std::memcpy(out.data() + at, v->data(), v->size());
            at += v->size();
        }
    }
    Bytes snapshot() const
    {
        Bytes out;
        snapshot(out);
        return out;
    }
    bool same_as(const Bytes &snap) const
    {
        size_t at = 0;
        for (auto &v : backs) {
            if (at + v->size() > snap.size() || std::memcmp(snap.data() + at, v->data(), v->size()))
                return false;
            at += v->size();
        }
        return at == snap.size();
    }

    Bytes rd(u64 gpa, size_t n) const
    {
        Bytes b(n);
        EXPECT_TRUE(mem.read(GuestPhys(gpa), b.data(), n)) << std::hex << gpa << "+" << n;
        return b;
    }
    u8 rd8(u64 gpa) const { return rd(gpa, 1)[0]; }
    u16 rd16(u64 gpa) const { return get16(rd(gpa, 2), 0); }
    u32 rd32(u64 gpa) const { return get32(rd(gpa, 4), 0); }
    u64 rd64(u64 gpa) const { return get64(rd(gpa, 8), 0); }
    std::string str(u64 gpa, size_t max = 1 << 20) const
    {
        std::string s;
        for (size_t i = 0; i < max; i++) {
            u8 c = rd8(gpa + i);
            if (!c) return s;
            s += char(c);
        }
        ADD_FAILURE() << "unterminated string at " << std::hex << gpa;
        return s;
    }

    GuestMemory mem;
    std::vector<std::unique_ptr<Bytes>> backs;
};

// ---- bzImage builder ------------------------------------------------------------------

// Setup header offsets (file and boot_params).
enum : size_t {
    SETUP_SECTS = 0x1f1, ROOT_FLAGS = 0x1f2, SYSSIZE = 0x1f4, VID_MODE = 0x1fa, BOOT_FLAG = 0x1fe, JUMP = 0x200,
    HEADER = 0x202, VERSION = 0x206, KERNEL_VERSION = 0x20e, TYPE_OF_LOADER = 0x210, LOADFLAGS = 0x211,
    CODE32_START = 0x214, RAMDISK_IMAGE = 0x218, RAMDISK_SIZE = 0x21c, CMD_LINE_PTR = 0x228,
    INITRD_ADDR_MAX = 0x22c, KERNEL_ALIGNMENT = 0x230, RELOCATABLE = 0x234, MIN_ALIGNMENT = 0x235,
    XLOADFLAGS = 0x236, CMDLINE_SIZE = 0x238, HARDWARE_SUBARCH = 0x23c, SETUP_DATA = 0x250,
    PREF_ADDRESS = 0x258, INIT_SIZE = 0x260, HANDOVER_OFFSET = 0x264, KERNEL_INFO_OFFSET = 0x268, HDR_END = 0x26c,
    // boot_params
    ACPI_RSDP = 0x070, EXT_RAMDISK_IMAGE = 0x0c0, EXT_RAMDISK_SIZE = 0x0c4, EXT_CMD_LINE_PTR = 0x0c8,
    E820_ENTRIES = 0x1e8, E820_TABLE = 0x2d0,
};
constexpr u16 XLF_KERNEL_64 = 1, XLF_ABOVE_4G = 2;

struct BzSpec {
    u8 setup_sects = 3;             // 0 means 4
    size_t payload = 0x3000;
    u16 version = 0x020f;
    u8 loadflags = 0x01;            // LOADED_HIGH
    u16 xloadflags = XLF_KERNEL_64 | XLF_ABOVE_4G;
    u8 relocatable = 1;
    u32 kernel_alignment = 0x200000;
    u64 pref_address = 0x1000000;
    u32 init_size = 0x800000;
    u32 cmdline_size = 2047;
    u32 initrd_addr_max = 0x7fffffff;
    u8 hdr_len = HDR_END - 0x202;   // the byte at 0x201
};

struct Bz {
    Bytes img;
    size_t setup_size;
    Bytes payload() const { return Bytes(img.begin() + setup_size, img.end()); }
};

Bz make_bz(const BzSpec &s = {})
{
    size_t sects = s.setup_sects ? s.setup_sects : 4;
    Bz bz;
    bz.setup_size = (sects + 1) * 512;
    Bytes &b = bz.img;
    b = pattern(bz.setup_size, 0x31);           // the real-mode setup code, recognisable
    std::fill(b.begin() + SETUP_SECTS, b.begin() + HDR_END, 0);
    put8(b, SETUP_SECTS, s.setup_sects);
    put16(b, ROOT_FLAGS, 1);
    put32(b, SYSSIZE, u32((s.payload + 15) / 16));
    put16(b, VID_MODE, 0xffff);
    put16(b, BOOT_FLAG, 0xaa55);
    put8(b, JUMP, 0xeb);
    put8(b, JUMP + 1, s.hdr_len);
    put32(b, HEADER, 0x53726448);
    put16(b, VERSION, s.version);
    put16(b, KERNEL_VERSION, 0x3c0);
    put8(b, LOADFLAGS, s.loadflags);
    put32(b, CODE32_START, 0x100000);
    put32(b, INITRD_ADDR_MAX, s.initrd_addr_max);
    put32(b, KERNEL_ALIGNMENT, s.kernel_alignment);
    put8(b, RELOCATABLE, s.relocatable);
    put8(b, MIN_ALIGNMENT, 21);
    put16(b, XLOADFLAGS, s.xloadflags);
    put32(b, CMDLINE_SIZE, s.cmdline_size);
    put64(b, PREF_ADDRESS, s.pref_address);
    put32(b, INIT_SIZE, s.init_size);
    put32(b, HANDOVER_OFFSET, 0x190);
    put32(b, KERNEL_INFO_OFFSET, 0x1234);
    Bytes pl = pattern(s.payload, 0x77);
    b.insert(b.end(), pl.begin(), pl.end());
    return bz;
}

// ---- loading and checking -----------------------------------------------------------

const std::string CMDLINE = "console=ttyS0 root=/dev/vda1 ro quiet";
const Bytes INITRD = pattern(0x5432, 0x99);
constexpr u64 RSDP = 0xf5a40;

struct Args {
    const Bytes *initrd = &INITRD;
    std::string cmdline = CMDLINE;
    std::vector<LinuxLoadParams::Range> reserved;
};

LinuxLoadParams params(const Bytes &img, const Args &a)
{
    LinuxLoadParams p{};
    p.kernel = img.data();
    p.kernel_size = img.size();
    if (a.initrd) {
        p.initrd = a.initrd->data();
        p.initrd_size = a.initrd->size();
    }
    p.cmdline = a.cmdline.c_str();
    p.cmdline_len = a.cmdline.size();
    p.acpi_rsdp = RSDP;
    for (auto &r : a.reserved) p.reserved[p.nreserved++] = r;
    return p;
}

struct Loaded {
    Result<LinuxEntryState> r;
    LinuxLoadReport rep;
};

Loaded load(Guest &g, const Bytes &img, const Args &a = {})
{
    Loaded l{Err::invalid, {}};
    LinuxLoadParams p = params(img, a);
    l.r = load_linux(g.mem, p, &l.rep);
    EXPECT_TRUE(g.guards_ok());
    EXPECT_LT(std::strlen(l.rep.msg), sizeof(l.rep.msg));
    return l;
}

// Failure with `e`, a message containing `what`, and guest RAM untouched.
void expect_fail_in(Guest &g, const Bytes &img, Err e, const char *what, const Args &a = {})
{
    Bytes before = g.snapshot();
    Loaded l = load(g, img, a);
    ASSERT_FALSE(l.r.ok()) << l.rep.msg << " (expected a failure: " << what << ")";
    EXPECT_EQ(l.r.error(), e) << l.rep.msg << " (" << err_name(l.r.error()) << ")";
    EXPECT_NE(std::strstr(l.rep.msg, what), nullptr) << "message: " << l.rep.msg << ", expected: " << what;
    EXPECT_TRUE(g.same_as(before)) << "guest RAM modified by a failed load";
}

// The same in a PC guest of `ram` bytes. Guests of the usual size are kept
// (with their snapshot) across calls: a failed load must leave them as they were.
void expect_fail(const Bytes &img, Err e, const char *what, const Args &a = {}, u64 ram = 32 * MiB)
{
    struct Kept {
        u64 ram;
        std::unique_ptr<Guest> g;
        Bytes snap;
    };
    static std::vector<Kept> kept;
    Kept *k = nullptr;
    for (auto &x : kept)
        if (x.ram == ram) k = &x;
    if (!k) {
        kept.push_back({ram, std::make_unique<Guest>(ram, 8 * MiB), {}});
        k = &kept.back();
        k->g->snapshot(k->snap);
    }
    Loaded l = load(*k->g, img, a);
    bool untouched = k->g->same_as(k->snap);
    if (l.r.ok() || !untouched) {                   // start afresh next time
        k->g = std::make_unique<Guest>(ram, 8 * MiB);
        k->g->snapshot(k->snap);
    }
    ASSERT_FALSE(l.r.ok()) << l.rep.msg << " (expected a failure: " << what << ")";
    EXPECT_EQ(l.r.error(), e) << l.rep.msg << " (" << err_name(l.r.error()) << ")";
    EXPECT_NE(std::strstr(l.rep.msg, what), nullptr) << "message: " << l.rep.msg << ", expected: " << what;
    EXPECT_TRUE(untouched) << "guest RAM modified by a failed load";
}

struct E820 {
    u64 base, size;
    u32 type;
    bool operator==(const E820 &o) const { return base == o.base && size == o.size && type == o.type; }
};
std::ostream &operator<<(std::ostream &os, const E820 &e)
{
    return os << std::hex << "{0x" << e.base << ", 0x" << e.size << ", " << std::dec << e.type << "}";
}

std::vector<E820> read_e820(const Guest &g, u64 bp)
{
    std::vector<E820> v;
    u8 n = g.rd8(bp + E820_ENTRIES);
    EXPECT_LE(n, 128);
    for (u8 i = 0; i < n; i++) {
        u64 e = bp + E820_TABLE + 20 * i;
        v.push_back({g.rd64(e), g.rd64(e + 8), g.rd32(e + 16)});
    }
    return v;
}

// Walk the guest's 4-level page tables; ~0 if not mapped.
u64 translate(const Guest &g, u64 cr3, u64 va)
{
    constexpr u64 ADDR = 0x000ffffffffff000ull;
    u64 e = g.rd64((cr3 & ADDR) + 8 * (va >> 39 & 511));
    if (!(e & 1)) return ~0ull;
    e = g.rd64((e & ADDR) + 8 * (va >> 30 & 511));
    if (!(e & 1)) return ~0ull;
    if (e & 0x80) return (e & ADDR & ~(GiB - 1)) | (va & (GiB - 1));
    e = g.rd64((e & ADDR) + 8 * (va >> 21 & 511));
    if (!(e & 1)) return ~0ull;
    if (!(e & 2)) return ~0ull;                 // everything the kernel touches early is written
    if (e & 0x80) return (e & ADDR & ~(2 * MiB - 1)) | (va & (2 * MiB - 1));
    e = g.rd64((e & ADDR) + 8 * (va >> 12 & 511));
    if (!(e & 1)) return ~0ull;
    return (e & ADDR) | (va & 0xfff);
}

struct Obj {
    const char *what;
    u64 lo, size;
};

// Every object inside RAM (or, for reserved ranges, anywhere), outside page
// 0 and the legacy hole, and no two overlapping.
void check_disjoint(const Guest &g, const std::vector<Obj> &placed, const std::vector<Obj> &reserved)
{
    std::vector<Obj> all = placed;
    all.insert(all.end(), reserved.begin(), reserved.end());
    all.push_back({"page 0", 0, 0x1000});
    all.push_back({"legacy hole", 0xa0000, 0x60000});
    for (auto &o : placed) {
        if (!o.size) continue;
        EXPECT_TRUE(g.mem.contains(GuestPhys(o.lo), o.size)) << o.what << " outside RAM";
    }
    for (size_t i = 0; i < placed.size(); i++)       // placed against everything else
        for (size_t j = 0; j < all.size(); j++) {
            const Obj &a = all[i], &b = all[j];
            if (i == j || !a.size || !b.size) continue;
            EXPECT_FALSE(a.lo < b.lo + b.size && b.lo < a.lo + a.size)
                << a.what << " " << std::hex << a.lo << "+" << a.size << " overlaps " << b.what << " " << b.lo
                << "+" << b.size;
        }
}

std::vector<Obj> placed_objects(const LinuxLoadReport &rep, size_t cmdline_len)
{
    return {{"kernel", rep.kernel.raw(), rep.init_size},
            {"boot_params", rep.boot_params.raw(), 4096},
            {"page tables", rep.page_tables.raw(), rep.page_tables_size},
            {"gdt", rep.gdt.raw(), 32},
            {"cmdline", rep.cmdline.raw(), cmdline_len + 1},
            {"initrd", rep.initrd.raw(), rep.initrd_size}};
}

// The GDT's __BOOT_CS is 64-bit code, __BOOT_DS flat read/write data.
void check_gdt(const Guest &g, const LinuxEntryState &s)
{
    EXPECT_EQ(s.cs, 0x10);
    EXPECT_EQ(s.ds, 0x18);
    ASSERT_GE(s.gdt_limit, 0x1f);
    u64 code = g.rd64(s.gdt_base + 0x10), data = g.rd64(s.gdt_base + 0x18);
    auto bit = [](u64 d, int b) { return (d >> b) & 1; };
    EXPECT_EQ(g.rd64(s.gdt_base), 0u);          // null descriptor
    // code: P, S, executable, readable, DPL 0, L=1, D=0
    EXPECT_EQ(bit(code, 47), 1u);
    EXPECT_EQ(bit(code, 44), 1u);
    EXPECT_EQ(bit(code, 43), 1u);
    EXPECT_EQ(bit(code, 41), 1u);
    EXPECT_EQ((code >> 45) & 3, 0u);
    EXPECT_EQ(bit(code, 53), 1u);
    EXPECT_EQ(bit(code, 54), 0u);
    // data: P, S, not executable, writable, DPL 0, base 0, limit 4 GiB (G, limit 0xfffff)
    EXPECT_EQ(bit(data, 47), 1u);
    EXPECT_EQ(bit(data, 44), 1u);
    EXPECT_EQ(bit(data, 43), 0u);
    EXPECT_EQ(bit(data, 41), 1u);
    EXPECT_EQ((data >> 45) & 3, 0u);
    EXPECT_EQ(bit(data, 55), 1u);
    EXPECT_EQ((data & 0xffff) | ((data >> 32) & 0xf0000), 0xfffffu);
    EXPECT_EQ(((data >> 16) & 0xffffff) | ((data >> 32) & 0xff000000), 0u);
    EXPECT_EQ(code, LINUX_GDT_CODE64);
    EXPECT_EQ(data, LINUX_GDT_DATA);
}

// The zero page's setup header: the file's, except what the loader writes.
void check_header_copy(const Guest &g, u64 bp, const Bytes &img)
{
    const std::vector<std::pair<size_t, size_t>> written = {
        {TYPE_OF_LOADER, 1}, {CODE32_START, 4}, {RAMDISK_IMAGE, 4}, {RAMDISK_SIZE, 4}, {0x226, 2},
        {CMD_LINE_PTR, 4}, {HARDWARE_SUBARCH, 12}, {SETUP_DATA, 8}};
    size_t end = 0x202 + img[0x201];
    Bytes got = g.rd(bp, 4096);
    for (size_t off = SETUP_SECTS; off < std::min<size_t>(end, 0x290); off++) {
        bool w = false;
        for (auto &f : written) w |= off >= f.first && off < f.first + f.second;
        if (!w) EXPECT_EQ(got[off], img[off]) << "header byte " << std::hex << off;
    }
    EXPECT_EQ(got[TYPE_OF_LOADER], 0xff);
    EXPECT_EQ(get64(got, SETUP_DATA), 0u);
    EXPECT_EQ(got[0x1ef], 0u);                  // sentinel
}

std::vector<E820> pc_e820(u64 ram_top)
{
    return {{0, 0xa0000, 1}, {0xa0000, 0x60000, 2}, {0x100000, ram_top - 0x100000, 1}};
}

// ---- loading: the normal case -------------------------------------------------------------

TEST(LoaderLinux, LoadsBzImageIn256MiBGuest)
{
    Guest g(256 * MiB, 64 * MiB);
    Bz bz = make_bz();
    Args a;
    a.reserved = {{0xe0000, 0x10000, LINUX_E820_ACPI},                 // in the legacy hole
                  {0xfff0000, 0x10000, LINUX_E820_ACPI},                // in RAM, at the top of it
                  {0xfec00000, 0x1000, 0},                              // IOAPIC
                  {0xfee00000, 0x1000, LINUX_E820_RESERVED}};           // LAPIC
    Loaded l = load(g, bz.img, a);
    ASSERT_TRUE(l.r.ok()) << l.rep.msg;
    const LinuxEntryState &s = *l.r;
    const LinuxLoadReport &rep = l.rep;

    // The protected-mode kernel at pref_address; the 64-bit entry at +0x200.
    EXPECT_EQ(rep.kernel.raw(), 0x1000000u);
    EXPECT_EQ(s.rip, 0x1000200u);
    EXPECT_EQ(rep.kernel_size, 0x3000u);
    EXPECT_EQ(rep.init_size, 0x800000u);
    EXPECT_EQ(g.rd(0x1000000, 0x3000), bz.payload());
    EXPECT_EQ(g.rd8(0x1003000), 0xa5);                          // beyond the payload: untouched
    EXPECT_EQ(rep.protocol, 0x020f);

    // boot_params.
    u64 bp = s.rsi;
    EXPECT_EQ(bp, rep.boot_params.raw());
    EXPECT_EQ(bp % 4096, 0u);
    check_header_copy(g, bp, bz.img);
    EXPECT_EQ(g.rd32(bp + CODE32_START), 0x1000000u);
    u64 cmd = g.rd32(bp + CMD_LINE_PTR) | u64(g.rd32(bp + EXT_CMD_LINE_PTR)) << 32;
    EXPECT_EQ(cmd, rep.cmdline.raw());
    EXPECT_EQ(g.str(cmd), CMDLINE);
    u64 rd = g.rd32(bp + RAMDISK_IMAGE) | u64(g.rd32(bp + EXT_RAMDISK_IMAGE)) << 32;
    u64 rds = g.rd32(bp + RAMDISK_SIZE) | u64(g.rd32(bp + EXT_RAMDISK_SIZE)) << 32;
    EXPECT_EQ(rd, rep.initrd.raw());
    EXPECT_EQ(rds, INITRD.size());
    EXPECT_EQ(g.rd(rd, rds), INITRD);
    EXPECT_EQ(rd % 4096, 0u);
    EXPECT_GT(rd, 128 * MiB);                                   // as high as possible...
    EXPECT_EQ(rd, align_down(0xfff0000 - rds, 4096));            // ...below the ACPI range at the top
    EXPECT_EQ(g.rd64(bp + ACPI_RSDP), RSDP);
    // Everything else in the zero page outside the header and e820 is zero.
    Bytes z = g.rd(bp, 4096);
    for (size_t i = 0; i < 4096; i++) {
        bool hdr = i >= SETUP_SECTS && i < HDR_END, e820 = i >= E820_TABLE && i < E820_TABLE + 20 * 128;
        bool ptrs = (i >= ACPI_RSDP && i < ACPI_RSDP + 8) || (i >= 0xc0 && i < 0xcc) || i == E820_ENTRIES;
        if (!hdr && !e820 && !ptrs) EXPECT_EQ(z[i], 0) << "zero page byte " << std::hex << i;
    }

    // e820: the PC layout, the hole split by the ACPI range, RAM split at the top.
    std::vector<E820> want = {{0, 0xa0000, 1},        {0xa0000, 0x40000, 2},    {0xe0000, 0x10000, 3},
                              {0xf0000, 0x10000, 2},  {0x100000, 0xfef0000, 1}, {0xfff0000, 0x10000, 3},
                              {0xfec00000, 0x1000, 2}, {0xfee00000, 0x1000, 2}};
    EXPECT_EQ(read_e820(g, bp), want);
    EXPECT_EQ(rep.e820_entries, want.size());

    // Nothing overlaps; all in RAM.
    std::vector<Obj> res;
    for (auto &r : a.reserved) res.push_back({"reserved", r.base, r.size});
    check_disjoint(g, placed_objects(rep, CMDLINE.size()), res);

    // The page tables identity-map 0-4 GiB with writable 2 MiB pages.
    EXPECT_EQ(s.cr3, rep.page_tables.raw());
    EXPECT_EQ(s.cr3 % 4096, 0u);
    EXPECT_EQ(rep.mapped, 4 * GiB);
    EXPECT_EQ(rep.page_tables_size, 6 * 4096u);
    for (u64 va : {s.rip, s.rsi, s.rsi + 4095, s.gdt_base, cmd, s.cr3, rep.kernel.raw() + rep.init_size - 1, rd,
                   u64(0), 3 * GiB + 12345, 4 * GiB - 1})
        EXPECT_EQ(translate(g, s.cr3, va), va) << std::hex << va;
    for (u64 va = 0; va < 4 * GiB; va += 2 * MiB) ASSERT_EQ(translate(g, s.cr3, va + 0x1234), va + 0x1234);
    EXPECT_EQ(translate(g, s.cr3, 4 * GiB), ~0ull);

    check_gdt(g, s);
    EXPECT_NE(std::strstr(rep.msg, "linux 2.15: kernel 0x1000000"), nullptr) << rep.msg;
    EXPECT_TRUE(g.guards_ok());
}

TEST(LoaderLinux, NoInitrdNoCmdline)
{
    Guest g(64 * MiB);
    Bz bz = make_bz();
    Args a;
    a.initrd = nullptr;
    a.cmdline = "";
    Loaded l = load(g, bz.img, a);
    ASSERT_TRUE(l.r.ok()) << l.rep.msg;
    u64 bp = l.r->rsi;
    EXPECT_EQ(g.rd32(bp + RAMDISK_IMAGE), 0u);
    EXPECT_EQ(g.rd32(bp + RAMDISK_SIZE), 0u);
    EXPECT_EQ(g.rd32(bp + EXT_RAMDISK_IMAGE), 0u);
    EXPECT_EQ(l.rep.initrd.raw(), 0u);
    u32 cmd = g.rd32(bp + CMD_LINE_PTR);
    EXPECT_NE(cmd, 0u);
    EXPECT_EQ(g.str(cmd), "");
    EXPECT_EQ(read_e820(g, bp), pc_e820(64 * MiB));
    check_disjoint(g, placed_objects(l.rep, 0), {});
}

TEST(LoaderLinux, SetupSectsZeroMeansFour)
{
    Guest g(64 * MiB);
    BzSpec s;
    s.setup_sects = 0;
    Bz bz = make_bz(s);
    ASSERT_EQ(bz.setup_size, 5 * 512u);
    Loaded l = load(g, bz.img);
    ASSERT_TRUE(l.r.ok()) << l.rep.msg;
    EXPECT_EQ(g.rd(0x1000000, 0x3000), bz.payload());
}

TEST(LoaderLinux, MaximalCommandLine)
{
    Guest g(64 * MiB);
    Bz bz = make_bz();
    Args a;
    a.cmdline = std::string(2047, 'k');
    Loaded l = load(g, bz.img, a);
    ASSERT_TRUE(l.r.ok()) << l.rep.msg;
    EXPECT_EQ(g.str(l.rep.cmdline.raw()), a.cmdline);
    check_disjoint(g, placed_objects(l.rep, a.cmdline.size()), {});
}

TEST(LoaderLinux, OlderProtocolsWithoutAcpiRsdp)
{
    // 2.12 and 2.13 load (64-bit entry), but have no acpi_rsdp_addr.
    for (u16 v : {0x020c, 0x020d}) {
        Guest g(64 * MiB);
        BzSpec s;
        s.version = v;
        s.hdr_len = 0x268 - 0x202;                           // through handover_offset
        Bz bz = make_bz(s);
        Loaded l = load(g, bz.img);
        ASSERT_TRUE(l.r.ok()) << l.rep.msg;
        EXPECT_EQ(g.rd64(l.r->rsi + ACPI_RSDP), 0u);
        EXPECT_EQ(g.rd32(l.r->rsi + KERNEL_INFO_OFFSET), 0u);  // not part of that header: not copied
    }
    // 2.14 has it.
    Guest g(64 * MiB);
    BzSpec s;
    s.version = 0x020e;
    Loaded l = load(g, make_bz(s).img);
    ASSERT_TRUE(l.r.ok()) << l.rep.msg;
    EXPECT_EQ(g.rd64(l.r->rsi + ACPI_RSDP), RSDP);
}

TEST(LoaderLinux, RelocatableKernelSkipsReservedRangeAtPrefAddress)
{
    Guest g(64 * MiB);
    Bz bz = make_bz();
    Args a;
    a.reserved = {{0x1000000, 0x1000, LINUX_E820_NVS}};
    Loaded l = load(g, bz.img, a);
    ASSERT_TRUE(l.r.ok()) << l.rep.msg;
    EXPECT_EQ(l.rep.kernel.raw(), 0x1200000u);              // the next 2 MiB boundary
    EXPECT_EQ(l.r->rip, 0x1200200u);
    EXPECT_EQ(g.rd(0x1200000, 0x3000), bz.payload());
    EXPECT_EQ(g.rd32(l.r->rsi + CODE32_START), 0x1200000u);
    std::vector<E820> want = {{0, 0xa0000, 1},           {0xa0000, 0x60000, 2}, {0x100000, 0xf00000, 1},
                              {0x1000000, 0x1000, 4},    {0x1001000, 64 * MiB - 0x1001000, 1}};
    EXPECT_EQ(read_e820(g, l.r->rsi), want);
}

TEST(LoaderLinux, KernelAlignmentAndPrefAddress)
{
    // A 16 MiB alignment with pref_address 0x1800000: the next 16 MiB boundary.
    Guest g(128 * MiB);
    BzSpec s;
    s.kernel_alignment = 0x1000000;
    s.pref_address = 0x1800000;
    Loaded l = load(g, make_bz(s).img);
    ASSERT_TRUE(l.r.ok()) << l.rep.msg;
    EXPECT_EQ(l.rep.kernel.raw(), 0x2000000u);

    // A low pref_address (2 MiB) is honoured; the boot block still fits below it.
    Guest g2(64 * MiB);
    BzSpec s2;
    s2.pref_address = 0x200000;
    Loaded l2 = load(g2, make_bz(s2).img);
    ASSERT_TRUE(l2.r.ok()) << l2.rep.msg;
    EXPECT_EQ(l2.rep.kernel.raw(), 0x200000u);
    check_disjoint(g2, placed_objects(l2.rep, CMDLINE.size()), {});
}

TEST(LoaderLinux, NonRelocatableKernelAtPrefAddress)
{
    Guest g(64 * MiB);
    BzSpec s;
    s.relocatable = 0;
    s.kernel_alignment = 0x12345;                               // ignored when not relocatable
    s.pref_address = 0x1234000;
    Bz bz = make_bz(s);
    Loaded l = load(g, bz.img);
    ASSERT_TRUE(l.r.ok()) << l.rep.msg;
    EXPECT_EQ(l.r->rip, 0x1234200u);
    EXPECT_EQ(g.rd(0x1234000, 0x3000), bz.payload());
}

TEST(LoaderLinux, BootBlockGoesAboveOneMiBWithoutLowMemory)
{
    // RAM only from 1 MiB: the boot block lands there, below the kernel.
    Guest g;
    g.add(0x100000, 63 * MiB);
    Loaded l = load(g, make_bz().img);
    ASSERT_TRUE(l.r.ok()) << l.rep.msg;
    EXPECT_EQ(l.rep.boot_params.raw(), 0x100000u);
    std::vector<E820> want = {{0xa0000, 0x60000, 2}, {0x100000, 63 * MiB, 1}};
    EXPECT_EQ(read_e820(g, l.r->rsi), want);
    check_disjoint(g, placed_objects(l.rep, CMDLINE.size()), {});
}

TEST(LoaderLinux, ManySmallExtentsMergeInE820)
{
    // 2 MiB extents: the kernel, boot block and initrd straddle extent boundaries.
    Guest g(64 * MiB, 2 * MiB);
    ASSERT_GT(g.mem.extent_count(), 30u);
    Bytes big = pattern(3 * MiB + 123, 0x42);
    BzSpec s;
    s.payload = 0x280000;                                       // 2.5 MiB: crosses an extent
    Bz bz = make_bz(s);
    Args a;
    a.initrd = &big;
    Loaded l = load(g, bz.img, a);
    ASSERT_TRUE(l.r.ok()) << l.rep.msg;
    EXPECT_EQ(g.rd(0x1000000, s.payload), bz.payload());
    EXPECT_EQ(g.rd(l.rep.initrd.raw(), big.size()), big);
    EXPECT_EQ(l.rep.initrd.raw(), align_down(64 * MiB - big.size(), 4096));
    EXPECT_EQ(read_e820(g, l.r->rsi), pc_e820(64 * MiB));
}

TEST(LoaderLinux, InitrdAddrMaxIsRespected)
{
    Guest g(256 * MiB);
    BzSpec s;
    s.initrd_addr_max = 0x3ffffff;                              // 64 MiB - 1: the last byte it may use
    Loaded l = load(g, make_bz(s).img);
    ASSERT_TRUE(l.r.ok()) << l.rep.msg;
    EXPECT_EQ(l.rep.initrd.raw() + INITRD.size() - 1 <= 0x3ffffff, true);
    EXPECT_EQ(l.rep.initrd.raw(), align_down(0x4000000 - INITRD.size(), 4096));
}

TEST(LoaderLinux, InitrdAbove4GOnlyWithXlf)
{
    // Low RAM: 640K + [1M, 32M); the kernel takes [16M, 24M). 20 MiB of initrd
    // only fits above 4 GiB.
    auto guest = [](Guest &g) {
        g.add(0, 0xa0000);
        g.add(0x100000, 31 * MiB);
        g.add(4 * GiB, 32 * MiB);
    };
    Bytes big = pattern(20 * MiB, 0x17);
    Args a;
    a.initrd = &big;

    Guest g;
    guest(g);
    Loaded l = load(g, make_bz().img, a);
    ASSERT_TRUE(l.r.ok()) << l.rep.msg;
    u64 bp = l.r->rsi;
    EXPECT_EQ(l.rep.initrd.raw(), 4 * GiB + 12 * MiB);
    EXPECT_EQ(g.rd32(bp + RAMDISK_IMAGE), 12 * MiB);
    EXPECT_EQ(g.rd32(bp + EXT_RAMDISK_IMAGE), 1u);
    EXPECT_EQ(g.rd32(bp + RAMDISK_SIZE), 20 * MiB);
    EXPECT_EQ(g.rd(4 * GiB + 12 * MiB, big.size()), big);
    // RAM above 4 GiB: 5 GiB identity-mapped.
    EXPECT_EQ(l.rep.mapped, 5 * GiB);
    EXPECT_EQ(translate(g, l.r->cr3, 4 * GiB + 12345), 4 * GiB + 12345);
    std::vector<E820> want = {{0, 0xa0000, 1}, {0xa0000, 0x60000, 2}, {0x100000, 31 * MiB, 1}, {4 * GiB, 32 * MiB, 1}};
    EXPECT_EQ(read_e820(g, bp), want);

    BzSpec s;
    s.xloadflags = XLF_KERNEL_64;
    Guest g2;
    guest(g2);
    expect_fail_in(g2, make_bz(s).img, Err::no_memory, "initrd (20971520 bytes) does not fit", a);
}

TEST(LoaderLinux, LargeGuestAbove4G)
{
    // 6 GiB of RAM (sparse backing): 6 GiB + 1 GiB hole mapped, rounded to 7 GiB.
    GuestExtent e[3];
    ASSERT_EQ(GuestMemory::pc_layout(6 * GiB, 3 * GiB, e), 3u);
    std::vector<std::pair<void *, size_t>> maps;
    GuestMemory mem;
    for (usize i = 0; i < 3; i++)
        for (u64 off = 0; off < e[i].size; off += 1 * GiB) {
            size_t n = std::min<u64>(1 * GiB, e[i].size - off);
            void *p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (p == MAP_FAILED) {
                for (auto &m : maps) munmap(m.first, m.second);
                GTEST_SKIP() << "cannot reserve 6 GiB of address space";
            }
            maps.push_back({p, n});
            ASSERT_TRUE(mem.add(e[i].gpa + off, n, static_cast<u8 *>(p)));
        }
    Bz bz = make_bz();
    Args args;
    LinuxLoadParams p = params(bz.img, args);   // args outlives p (p points at its command line)
    LinuxLoadReport rep;
    auto r = load_linux(mem, p, &rep);
    ASSERT_TRUE(r.ok()) << rep.msg;
    EXPECT_EQ(rep.mapped, 7 * GiB);
    EXPECT_EQ(rep.page_tables_size, 9 * 4096u);
    EXPECT_LT(rep.initrd.raw(), 3 * GiB);                       // initrd_addr_max 2 GiB - 1
    EXPECT_LE(rep.initrd.raw() + INITRD.size(), 2 * GiB);
    Guest g;
    for (usize i = 0; i < mem.extent_count(); i++)
        ASSERT_TRUE(g.mem.add(mem.extent(i).gpa, mem.extent(i).size, mem.extent(i).host));
    for (u64 va : {u64(0x1000), 5 * GiB, 7 * GiB - 1}) EXPECT_EQ(translate(g, r->cr3, va), va);
    EXPECT_EQ(translate(g, r->cr3, 7 * GiB), ~0ull);
    std::vector<E820> want = {{0, 0xa0000, 1}, {0xa0000, 0x60000, 2}, {0x100000, 3 * GiB - MiB, 1},
                              {4 * GiB, 3 * GiB, 1}};
    EXPECT_EQ(read_e820(g, r->rsi), want);
    g.mem.clear();
    for (auto &m : maps) munmap(m.first, m.second);
}

// ---- malformed images --------------------------------------------------------------------

TEST(LoaderLinuxBad, NotABzImage)
{
    Bz bz = make_bz();
    Bytes noflag = bz.img;
    put16(noflag, BOOT_FLAG, 0x55aa);
    expect_fail(noflag, Err::invalid, "0xaa55");

    Bytes nohdrs = bz.img;
    put32(nohdrs, HEADER, 0x53726449);
    expect_fail(nohdrs, Err::invalid, "HdrS");

    Bytes zimage = bz.img;
    zimage[LOADFLAGS] = 0;
    expect_fail(zimage, Err::invalid, "zImage");

    expect_fail(Bytes(bz.img.begin(), bz.img.begin() + 0x1ff), Err::invalid, "too small");
    expect_fail(Bytes(bz.img.begin(), bz.img.begin() + 0x204), Err::invalid, "HdrS");
    expect_fail(Bytes(bz.img.begin(), bz.img.begin() + 0x240), Err::invalid, "past the end of the file");
    expect_fail(pattern(0x10000, 3), Err::invalid, "0xaa55");
}

TEST(LoaderLinuxBad, ProtocolTooOldOrNo64BitEntry)
{
    BzSpec s;
    s.version = 0x020b;
    expect_fail(make_bz(s).img, Err::unsupported, "boot protocol 2.11 is older than 2.12");
    s.version = 0x0200;
    expect_fail(make_bz(s).img, Err::unsupported, "2.0 is older");

    BzSpec x;
    x.xloadflags = XLF_ABOVE_4G;
    expect_fail(make_bz(x).img, Err::unsupported, "XLF_KERNEL_64");

    BzSpec h;
    h.hdr_len = 0x60;                                           // header ends at 0x262: no init_size
    expect_fail(make_bz(h).img, Err::invalid, "too short for protocol 2.15");
}

TEST(LoaderLinuxBad, SetupAndPayload)
{
    Bz bz = make_bz();
    Bytes sects = bz.img;
    sects[SETUP_SECTS] = 200;
    expect_fail(sects, Err::invalid, "setup_sects 200: the setup area (102912 bytes) is beyond the end");
    sects[SETUP_SECTS] = 27;                                    // the setup area is all of the file
    expect_fail(sects, Err::invalid, "too small for the 64-bit entry");

    Bytes trunc(bz.img.begin(), bz.img.begin() + bz.setup_size);    // no protected-mode kernel
    expect_fail(trunc, Err::invalid, "too small for the 64-bit entry");
    Bytes tiny(bz.img.begin(), bz.img.begin() + bz.setup_size + 0x200);
    expect_fail(tiny, Err::invalid, "too small for the 64-bit entry");

    BzSpec i;
    i.init_size = 0x2000;                                       // smaller than the 0x3000 payload
    expect_fail(make_bz(i).img, Err::invalid, "init_size 0x2000 is smaller");
    i.init_size = 0;
    expect_fail(make_bz(i).img, Err::invalid, "init_size 0x0");

    BzSpec a;
    a.kernel_alignment = 0x300000;
    expect_fail(make_bz(a).img, Err::invalid, "kernel_alignment 0x300000 is not a power of two");
    a.kernel_alignment = 0;
    expect_fail(make_bz(a).img, Err::invalid, "kernel_alignment 0x0");
}

TEST(LoaderLinuxBad, KernelDoesNotFit)
{
    BzSpec s;
    s.init_size = 0xf0000000;                                   // larger than RAM
    expect_fail(make_bz(s).img, Err::no_memory, "kernel (init_size 0xf0000000");

    // Tiny RAM: 16 MiB ends where the kernel would start.
    expect_fail(make_bz().img, Err::no_memory, "does not fit in guest RAM between 0x1000000", {}, 16 * MiB);
    expect_fail(make_bz().img, Err::no_memory, "kernel", {}, 2 * MiB);

    // pref_address beyond 4 GiB without XLF_CAN_BE_LOADED_ABOVE_4G, and beyond everything with it.
    BzSpec p;
    p.pref_address = 5 * GiB;
    expect_fail(make_bz(p).img, Err::no_memory, "between 0x140000000 and 0x100000000");
    p.pref_address = ~0ull;
    expect_fail(make_bz(p).img, Err::no_memory, "kernel");

    // The boot block fits nowhere: RAM is exactly the kernel's init_size.
    Guest g;
    g.add(0x1000000, 0x800000);
    expect_fail_in(g, make_bz().img, Err::no_memory, "boot_params, page tables and command line");

    // No RAM at all.
    Guest none;
    expect_fail_in(none, make_bz().img, Err::no_memory, "no RAM");
}

TEST(LoaderLinuxBad, NonRelocatableOutsideRam)
{
    BzSpec s;
    s.relocatable = 0;
    s.pref_address = 0xfee00000;
    expect_fail(make_bz(s).img, Err::range, "non-relocatable kernel at 0xfee00000+0x800000 is not in guest RAM");
    s.pref_address = 0x90000;                                   // runs into the hole
    expect_fail(make_bz(s).img, Err::range, "not in guest RAM");
    s.pref_address = 0xfffffffffff00000ull;                     // wraps
    expect_fail(make_bz(s).img, Err::range, "not in guest RAM");
    s.pref_address = 0;                                         // page 0
    s.init_size = 0x10000;
    expect_fail(make_bz(s).img, Err::range, "overlaps page 0");
    s.pref_address = 0x1000000;
    s.init_size = 0x800000;
    Args a;
    a.reserved = {{0x1400000, 0x1000, LINUX_E820_ACPI}};
    expect_fail(make_bz(s).img, Err::range, "reserved range", a);
}

TEST(LoaderLinuxBad, InitrdTooBig)
{
    Bytes big(40 * MiB, 0x11);
    Args a;
    a.initrd = &big;
    expect_fail(make_bz().img, Err::no_memory, "initrd (41943040 bytes) does not fit", a);
    // Larger than the free RAM below pref_address and above the kernel, each.
    Bytes mid(15 * MiB + 1, 0x11);
    a.initrd = &mid;
    expect_fail(make_bz().img, Err::no_memory, "initrd (15728641 bytes) does not fit", a);
    mid.pop_back();                                             // exactly [1 MiB, 16 MiB)
    Guest g(32 * MiB);
    Loaded l = load(g, make_bz().img, a);
    ASSERT_TRUE(l.r.ok()) << l.rep.msg;
    EXPECT_EQ(l.rep.initrd.raw(), 1 * MiB);
    // Fits in RAM, but not below initrd_addr_max (1 MiB - 1: only low memory, where the boot block is).
    BzSpec s;
    s.initrd_addr_max = 0xfffff;
    Bytes mib(1 * MiB, 0x12);
    Args b;
    b.initrd = &mib;
    expect_fail(make_bz(s).img, Err::no_memory, "below 0x100000 or above 4 GiB", b);
}

TEST(LoaderLinuxBad, CommandLines)
{
    Args a;
    a.cmdline = std::string(2048, 'x');
    expect_fail(make_bz().img, Err::invalid, "command line (2048 bytes) longer than the kernel's cmdline_size 2047", a);
    BzSpec s;
    s.cmdline_size = 0xffffffff;
    a.cmdline = std::string(LINUX_MAX_CMDLINE + 1, 'x');
    expect_fail(make_bz(s).img, Err::invalid, "longer than 65536", a);
    // A long command line within both limits is fine, also in a small guest.
    a.cmdline = std::string(LINUX_MAX_CMDLINE, 'y');
    Guest g(32 * MiB);
    Loaded l = load(g, make_bz(s).img, a);
    ASSERT_TRUE(l.r.ok()) << l.rep.msg;
    EXPECT_EQ(g.str(l.rep.cmdline.raw()), a.cmdline);
}

TEST(LoaderLinuxBad, Arguments)
{
    Guest g(64 * MiB);
    Bz bz = make_bz();
    Bytes before = g.snapshot();
    Args args;
    LinuxLoadParams p = params(bz.img, args);   // args outlives p (p points at its command line)
    LinuxLoadReport rep;

    LinuxLoadParams q = p;
    q.kernel = nullptr;
    EXPECT_EQ(load_linux(g.mem, q, &rep).error(), Err::invalid);
    q = p;
    q.kernel_size = 0;
    EXPECT_EQ(load_linux(g.mem, q, &rep).error(), Err::invalid);
    q = p;
    q.initrd = nullptr;
    EXPECT_EQ(load_linux(g.mem, q, &rep).error(), Err::invalid);
    EXPECT_NE(std::strstr(rep.msg, "initrd"), nullptr) << rep.msg;
    q = p;
    q.cmdline = nullptr;
    EXPECT_EQ(load_linux(g.mem, q, &rep).error(), Err::invalid);
    q = p;
    q.nreserved = LINUX_MAX_RESERVED + 1;
    EXPECT_EQ(load_linux(g.mem, q).error(), Err::invalid);
    q = p;
    q.nreserved = 1;
    q.reserved[0] = {~0ull - 10, 100, 2};
    EXPECT_EQ(load_linux(g.mem, q, &rep).error(), Err::invalid);
    EXPECT_NE(std::strstr(rep.msg, "wraps"), nullptr) << rep.msg;
    q.reserved[0] = {0x100000, 0, 2};
    EXPECT_EQ(load_linux(g.mem, q, &rep).error(), Err::invalid);
    q.reserved[0] = {0x100000, 0x1000, LINUX_E820_RAM};
    EXPECT_EQ(load_linux(g.mem, q, &rep).error(), Err::invalid);
    EXPECT_NE(std::strstr(rep.msg, "type 1"), nullptr) << rep.msg;
    q.nreserved = 2;
    q.reserved[0] = {0x100000, 0x2000, 3};
    q.reserved[1] = {0x101000, 0x1000, 4};
    EXPECT_EQ(load_linux(g.mem, q, &rep).error(), Err::invalid);
    EXPECT_NE(std::strstr(rep.msg, "reserved ranges 0 and 1 overlap"), nullptr) << rep.msg;
    EXPECT_TRUE(g.snapshot() == before);

    // A null report is fine; the maximum of reserved ranges is fine.
    q = p;
    q.nreserved = LINUX_MAX_RESERVED;
    for (usize i = 0; i < LINUX_MAX_RESERVED; i++) q.reserved[i] = {0xfe000000 + i * 0x1000, 0x1000, 2};
    EXPECT_TRUE(load_linux(g.mem, q).ok());
    EXPECT_TRUE(g.guards_ok());
}

// ---- randomised corruption --------------------------------------------------------------

TEST(LoaderLinuxFuzz, MutatedImagesNeverEscapeGuestRam)
{
    std::vector<Bytes> seeds;
    {
        BzSpec s;
        s.init_size = 0x400000;
        seeds.push_back(make_bz(s).img);
        s.relocatable = 0;
        s.pref_address = 0x800000;
        seeds.push_back(make_bz(s).img);
        BzSpec t;
        t.setup_sects = 0;
        t.init_size = 0x200000;
        t.pref_address = 0x200000;
        t.xloadflags = XLF_KERNEL_64;
        t.initrd_addr_max = 0x17fffff;
        seeds.push_back(make_bz(t).img);
    }
    const u32 interesting[] = {0,          1,          0x200,      0x1000,     0x3000,     0x9f000,
                               0xfffff,    0x100000,   0x200000,   0x800000,   0x1000000,  0x1800000,
                               0x7fffffff, 0x80000000, 0xfffff000, 0xffffffff, 0x53726448, 0xaa55};
    const u64 initrd_sizes[] = {0, 1, 4096, 5000, 3 * MiB, 40 * MiB};
    Bytes initrd(40 * MiB, 0x5d);
    const std::string cmd(5000, 'c');
    const size_t cmd_lens[] = {0, 10, 100, 2047, 5000};

    // 24 MiB guest ([0, 640K), [1M, 24M)) in 4 MiB extents, reused.
    Guest g(24 * MiB, 4 * MiB);
    std::mt19937 rng(20250611);
    int ok = 0, checked_untouched = 0;
    Bytes before;
    for (int it = 0; it < 5000; it++) {
        size_t k = rng() % seeds.size();
        Bytes img = seeds[k];
        int muts = rng() % 5;                       // 0: only the arguments vary
        for (int j = 0; j < muts; j++) {
            // Mostly hit the setup header.
            size_t off = rng() % 4 ? 0x1f1 + rng() % (0x270 - 0x1f1) : rng() % img.size();
            switch (rng() % 5) {
            case 0: img[off] ^= u8(1u << (rng() % 8)); break;
            case 1: img[off] = u8(rng()); break;
            case 2:
                if (off + 4 <= img.size()) put32(img, off, interesting[rng() % std::size(interesting)]);
                break;
            case 3:
                if (off + 8 <= img.size())
                    put64(img, off, u64(interesting[rng() % std::size(interesting)]) << (rng() % 40));
                break;
            case 4: if (rng() % 4 == 0) img.resize(off + 1); break;
            }
        }
        LinuxLoadParams p{};
        p.kernel = img.data();
        p.kernel_size = img.size();
        p.initrd_size = initrd_sizes[rng() % std::size(initrd_sizes)];
        p.initrd = p.initrd_size ? initrd.data() : nullptr;
        p.cmdline = cmd.data();
        p.cmdline_len = cmd_lens[rng() % std::size(cmd_lens)];
        p.acpi_rsdp = rng();
        p.nreserved = rng() % 3;
        for (usize i = 0; i < p.nreserved; i++) {
            u64 base = (rng() % 0x1800) * 0x1000, size = (1 + rng() % 0x400) * 0x1000;
            p.reserved[i] = {base, size, u32(2 + rng() % 3)};
        }

        bool check = it % 12 == 0;
        if (check) g.snapshot(before);
        LinuxLoadReport rep;
        auto r = load_linux(g.mem, p, &rep);
        ASSERT_TRUE(g.guards_ok()) << "iteration " << it;
        ASSERT_LT(std::strlen(rep.msg), sizeof(rep.msg));
        if (r.ok()) {
            ok++;
            EXPECT_EQ(r->rip, rep.kernel.raw() + 0x200);
            EXPECT_EQ(r->rsi, rep.boot_params.raw());
            EXPECT_EQ(r->cr3, rep.page_tables.raw());
            EXPECT_EQ(r->gdt_base, rep.gdt.raw());
            std::vector<Obj> res;
            for (usize i = 0; i < p.nreserved; i++) res.push_back({"reserved", p.reserved[i].base, p.reserved[i].size});
            check_disjoint(g, placed_objects(rep, p.cmdline_len), res);
            EXPECT_TRUE(g.mem.contains(GuestPhys(r->rip), 1));
            std::vector<E820> e = read_e820(g, r->rsi);
            for (size_t i = 1; i < e.size(); i++) EXPECT_LE(e[i - 1].base + e[i - 1].size, e[i].base);
            if (::testing::Test::HasFailure()) {
                ADD_FAILURE() << "iteration " << it << ": " << rep.msg;
                break;
            }
        } else {
            EXPECT_NE(rep.msg[0], 0) << "failure without a message, iteration " << it;
            if (check) {
                checked_untouched++;
                ASSERT_TRUE(g.same_as(before)) << "failed load modified RAM, iteration " << it << ": " << rep.msg;
            }
        }
    }
    EXPECT_GT(ok, 300);
    EXPECT_GT(checked_untouched, 50);
}

// ---- a real kernel, by hand -------------------------------------------------------------------

// KEEL_TEST_BZIMAGE=/boot/vmlinuz-... [KEEL_TEST_INITRD=...] unit_tests --gtest_filter='*RealBzImage*'
TEST(LoaderLinuxManual, RealBzImage)
{
    const char *path = std::getenv("KEEL_TEST_BZIMAGE");
    if (!path) GTEST_SKIP() << "set KEEL_TEST_BZIMAGE to a bzImage to try it";
    auto slurp = [](const char *f) {
        std::ifstream in(f, std::ios::binary);
        return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    };
    Bytes img = slurp(path);
    ASSERT_GT(img.size(), 0x1000u) << path;
    Bytes rd;
    if (const char *ip = std::getenv("KEEL_TEST_INITRD")) rd = slurp(ip);
    Guest g(512 * MiB, 128 * MiB, 0);
    Args a;
    a.initrd = rd.empty() ? nullptr : &rd;
    Loaded l = load(g, img, a);
    ASSERT_TRUE(l.r.ok()) << l.rep.msg;
    std::printf("%s\n", l.rep.msg);
    u8 sects = img[SETUP_SECTS] ? img[SETUP_SECTS] : 4;
    size_t setup = (sects + 1) * 512u;
    EXPECT_EQ(g.rd(l.rep.kernel.raw(), img.size() - setup), Bytes(img.begin() + setup, img.end()));
    check_header_copy(g, l.r->rsi, img);
    check_gdt(g, *l.r);
    check_disjoint(g, placed_objects(l.rep, CMDLINE.size()), {});
    EXPECT_EQ(translate(g, l.r->cr3, l.r->rip), l.r->rip);
    EXPECT_EQ(read_e820(g, l.r->rsi), pc_e820(512 * MiB));
}

} // namespace

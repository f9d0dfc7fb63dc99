// Multiboot v1/v2 guest loader: images built here (a.out kludge, ELF32/ELF64,
// address tag), loaded into guest RAM laid out like a PC, and checked byte by
// byte; malformed images; and a randomised corruption loop with guard bytes
// around every backing extent.
#include <gtest/gtest.h>

#include <sys/mman.h>

#include <cstring>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernel/guest/guest_memory.hpp"
#include "kernel/guest/loader_multiboot.hpp"

namespace {

using Bytes = std::vector<u8>;

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

// ---- guest RAM -------------------------------------------------------------

// Guest RAM in the PC layout, each range split into extents of at most
// `chunk` bytes (like buddy blocks), each backed by a vector with guard bytes.
// `fill` pre-sets RAM so that zeroing (bss) and untouched memory are visible.
class Guest {
public:
    static constexpr size_t GUARD = 256;

    explicit Guest(u64 bytes, u64 chunk = 1 * GiB, u8 fill = 0xa5, u64 lowmem_top = 3 * GiB)
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

    // All of RAM, extent after extent (to compare before/after).
    Bytes snapshot() const
    {
        Bytes out;
        for (auto &v : backs) out.insert(out.end(), v->begin(), v->end());
        return out;
    }

    Bytes rd(u64 gpa, size_t n) const
    {
        Bytes b(n);
        EXPECT_TRUE(mem.read(GuestPhys(gpa), b.data(), n)) << std::hex << gpa << "+" << n;
        return b;
    }
    u32 rd32(u64 gpa) const { return get32(rd(gpa, 4), 0); }
    std::string str(u64 gpa) const
    {
        std::string s;
        for (int i = 0; i < 4096; i++) {
            u8 c = rd(gpa + i, 1)[0];
            if (!c) return s;
            s += char(c);
        }
        ADD_FAILURE() << "unterminated string at " << std::hex << gpa;
        return s;
    }

    GuestMemory mem;
    std::vector<std::unique_ptr<Bytes>> backs;
};

// ---- image builders ----------------------------------------------------------

constexpr u32 MB1_MAGIC = 0x1badb002, MB2_MAGIC = 0xe85250d6;
constexpr u32 AOUT = 1u << 16;

Bytes mb1_header(u32 flags, u32 header_addr = 0, u32 load_addr = 0, u32 load_end = 0, u32 bss_end = 0,
                 u32 entry = 0)
{
    Bytes h;
    put32(h, 0, MB1_MAGIC);
    put32(h, 4, flags);
    put32(h, 8, u32(-(MB1_MAGIC + flags)));
    if (flags & AOUT) {
        put32(h, 12, header_addr);
        put32(h, 16, load_addr);
        put32(h, 20, load_end);
        put32(h, 24, bss_end);
        put32(h, 28, entry);
    }
    return h;
}

void fix_mb1(Bytes &img, size_t off) { put32(img, off + 8, u32(-(get32(img, off) + get32(img, off + 4)))); }
void fix_mb2(Bytes &img, size_t off)
{
    put32(img, off + 12, u32(-(get32(img, off) + get32(img, off + 4) + get32(img, off + 8))));
}

// Multiboot2 header, tag by tag; the end tag and checksum are added by build().
class Mb2 {
public:
    static constexpr u32 AUTO = ~0u;
    Mb2 &tag(u16 type, u16 flags, const std::vector<u32> &body = {}, u32 size = AUTO)
    {
        size_t at = b_.size();
        put16(b_, at, type);
        put16(b_, at + 2, flags);
        put32(b_, at + 4, size != AUTO ? size : u32(8 + 4 * body.size()));
        for (size_t i = 0; i < body.size(); i++) put32(b_, at + 8 + 4 * i, body[i]);
        while (b_.size() % 8) b_.push_back(0);
        return *this;
    }
    Mb2 &raw(const Bytes &x)
    {
        b_.insert(b_.end(), x.begin(), x.end());
        return *this;
    }
    Bytes build(bool end = true, u32 arch = 0) const
    {
        Bytes h(16);
        h.insert(h.end(), b_.begin(), b_.end());
        if (end) {
            put32(h, h.size(), 0);
            put32(h, h.size(), 8);
        }
        put32(h, 0, MB2_MAGIC);
        put32(h, 4, arch);
        put32(h, 8, u32(h.size()));
        fix_mb2(h, 0);
        return h;
    }

private:
    Bytes b_;
};

struct SegSpec {
    u64 paddr, vaddr;
    Bytes data;
    u64 memsz;
    u32 type = 1;   // PT_LOAD
};

// An ELF executable: ehdr, phdrs, the Multiboot header (8-aligned), segment data.
struct Elf {
    Bytes img;
    bool is64;
    size_t phoff, phentsize, hdr_off;
    std::vector<size_t> data_off;

    // Offset of field `f` of program header i (ELF32 layout names: off, paddr, filesz, memsz).
    size_t ph(size_t i) const { return phoff + i * phentsize; }
    void set_paddr(size_t i, u64 v) { is64 ? put64(img, ph(i) + 24, v) : put32(img, ph(i) + 12, u32(v)); }
    void set_offset(size_t i, u64 v) { is64 ? put64(img, ph(i) + 8, v) : put32(img, ph(i) + 4, u32(v)); }
    void set_filesz(size_t i, u64 v) { is64 ? put64(img, ph(i) + 32, v) : put32(img, ph(i) + 16, u32(v)); }
    void set_memsz(size_t i, u64 v) { is64 ? put64(img, ph(i) + 40, v) : put32(img, ph(i) + 20, u32(v)); }
    void set_phnum(u16 n) { put16(img, is64 ? 56 : 44, n); }
    void set_phentsize(u16 n) { put16(img, is64 ? 54 : 42, n); }
    void set_entry(u64 v) { is64 ? put64(img, 24, v) : put32(img, 24, u32(v)); }
};

Elf make_elf(bool is64, u64 entry, const std::vector<SegSpec> &segs, const Bytes &mbh)
{
    Elf e;
    e.is64 = is64;
    size_t ehsize = is64 ? 64 : 52;
    e.phentsize = is64 ? 56 : 32;
    e.phoff = ehsize;
    Bytes &b = e.img;
    b.resize(ehsize);
    b[0] = 0x7f; b[1] = 'E'; b[2] = 'L'; b[3] = 'F';
    b[4] = is64 ? 2 : 1;
    b[5] = 1;
    b[6] = 1;
    put16(b, 16, 2);                    // ET_EXEC
    put16(b, 18, is64 ? 62 : 3);
    put32(b, 20, 1);
    if (is64) {
        put64(b, 24, entry);
        put64(b, 32, e.phoff);
        put16(b, 52, u16(ehsize));
        put16(b, 54, u16(e.phentsize));
        put16(b, 56, u16(segs.size()));
    } else {
        put32(b, 24, u32(entry));
        put32(b, 28, u32(e.phoff));
        put16(b, 40, u16(ehsize));
        put16(b, 42, u16(e.phentsize));
        put16(b, 44, u16(segs.size()));
    }
    size_t at = (e.phoff + segs.size() * e.phentsize + 7) & ~size_t(7);
    e.hdr_off = at;
    b.resize(at);
    b.insert(b.end(), mbh.begin(), mbh.end());
    for (size_t i = 0; i < segs.size(); i++) {
        const SegSpec &s = segs[i];
        size_t off = (b.size() + 15) & ~size_t(15);
        b.resize(off);
        b.insert(b.end(), s.data.begin(), s.data.end());
        e.data_off.push_back(off);
        size_t p = e.ph(i);
        if (is64) {
            put32(b, p, s.type);
            put32(b, p + 4, 5);
            put64(b, p + 8, off);
            put64(b, p + 16, s.vaddr);
            put64(b, p + 24, s.paddr);
            put64(b, p + 32, s.data.size());
            put64(b, p + 40, s.memsz);
            put64(b, p + 48, 0x1000);
        } else {
            put32(b, p, s.type);
            put32(b, p + 4, u32(off));
            put32(b, p + 8, u32(s.vaddr));
            put32(b, p + 12, u32(s.paddr));
            put32(b, p + 16, u32(s.data.size()));
            put32(b, p + 20, u32(s.memsz));
            put32(b, p + 24, 5);
            put32(b, p + 28, 0x1000);
        }
    }
    return e;
}

// The usual test kernel: text at 1 MiB (linked at 0xc0100000), data + bss after.
const Bytes TEXT = pattern(0x1800, 1), DATA = pattern(0x900, 2);
std::vector<SegSpec> std_segs()
{
    return {SegSpec{0x100000, 0xc0100000, TEXT, 0x1800},
            SegSpec{0x102000, 0xc0102000, DATA, 0x3000},                // 0x2700 bytes of bss
            SegSpec{0, 0, pattern(0x20, 3), 0x20, 4 /* PT_NOTE: ignored */}};
}

// a.out kludge image: loaded from file offset 0 at load_addr, header at hdr_off.
struct Aout {
    Bytes img;
    size_t hdr_off;
};
Aout make_aout(u32 load_addr, size_t file_size, u32 bss, u32 entry_off, size_t hdr_off = 0x40, u32 flags = 0)
{
    Aout a{pattern(file_size, 9), hdr_off};
    u32 load_end = load_addr + u32(file_size);
    Bytes h = mb1_header(AOUT | flags, load_addr + u32(hdr_off), load_addr, load_end, bss ? load_end + bss : 0,
                         load_addr + entry_off);
    std::copy(h.begin(), h.end(), a.img.begin() + hdr_off);
    return a;
}

// v2 image with an address tag: a small prefix, the header, then code.
Bytes make_v2_flat(u32 load_addr, size_t file_size, u32 bss, u32 entry_off, bool from_start = false)
{
    const size_t hdr_off = 0x20;
    u32 load_end = load_addr + u32(file_size), header_addr = load_addr + hdr_off;
    Bytes h = Mb2()
                  .tag(2, 0, {header_addr, from_start ? 0xffffffffu : load_addr, load_end, bss ? load_end + bss : 0})
                  .tag(3, 0, {load_addr + entry_off})
                  .build();
    Bytes img = pattern(file_size, 5);
    std::copy(h.begin(), h.end(), img.begin() + hdr_off);
    return img;
}

// ---- loading ---------------------------------------------------------------------

const std::string CMDLINE = "root=/dev/vda console=ttyS0";
const Bytes MOD0 = pattern(5000, 7), MOD1 = pattern(123, 8);
const std::string MOD0_STR = "initrd.img", MOD1_STR = "config verbose";

struct Loaded {
    Result<EntryState> r;
    LoadReport rep;
};

Loaded load(Guest &g, const Bytes &img, size_t nmods = 2, const std::string &cmd = CMDLINE)
{
    GuestModuleSrc mods[2] = {
        {MOD0.data(), MOD0.size(), MOD0_STR.c_str(), MOD0_STR.size()},
        {MOD1.data(), MOD1.size(), MOD1_STR.c_str(), MOD1_STR.size()},
    };
    Loaded l{Err::invalid, {}};
    l.r = load_multiboot(g.mem, img.data(), img.size(), cmd.c_str(), cmd.size(), mods, nmods, &l.rep);
    EXPECT_TRUE(g.guards_ok());
    return l;
}

// Expect failure with `e`, a message containing `what`, and RAM untouched.
void expect_fail(const Bytes &img, Err e, const char *what, u64 ram = 16 * MiB)
{
    Guest g(ram);
    Bytes before = g.snapshot();
    Loaded l = load(g, img);
    ASSERT_FALSE(l.r.ok()) << l.rep.msg;
    EXPECT_EQ(l.r.error(), e) << l.rep.msg << " (" << err_name(l.r.error()) << ")";
    EXPECT_NE(std::strstr(l.rep.msg, what), nullptr) << "message: " << l.rep.msg << ", expected: " << what;
    EXPECT_TRUE(g.snapshot() == before) << "guest RAM modified by a failed load";
}

struct MmapEntry {
    u64 base, len;
    u32 type;
    bool operator==(const MmapEntry &o) const { return base == o.base && len == o.len && type == o.type; }
};
std::vector<MmapEntry> pc_mmap(u64 ram_top = 64 * MiB)
{
    return {{0, 0xa0000, 1}, {0xa0000, 0x60000, 2}, {0x100000, ram_top - 0x100000, 1}};
}

// Modules: page-aligned, above `above`, contents and strings as given.
void check_module(const Guest &g, u64 start, u64 end, const Bytes &data, u64 above)
{
    EXPECT_EQ(start % PAGE_SIZE, 0u);
    EXPECT_GE(start, above);
    ASSERT_EQ(end - start, data.size());
    EXPECT_EQ(g.rd(start, data.size()), data);
}

// The v1 info structure, modules and strings.
void check_v1_info(const Guest &g, u32 info, u64 image_end, const std::string &cmd = CMDLINE,
                   const std::vector<MmapEntry> &mmap = pc_mmap(), u32 upper = 63 * 1024)
{
    EXPECT_EQ(info % 8, 0u);
    u32 flags = g.rd32(info);
    EXPECT_EQ(flags, 0x24du);                   // mem, cmdline, mods, mmap, loader name
    EXPECT_EQ(g.rd32(info + 4), 640u);
    EXPECT_EQ(g.rd32(info + 8), upper);
    EXPECT_EQ(g.str(g.rd32(info + 16)), cmd);
    EXPECT_EQ(g.str(g.rd32(info + 64)), "Keel");
    EXPECT_EQ(g.rd32(info + 12), 0u);           // no boot device
    ASSERT_EQ(g.rd32(info + 20), 2u);
    u32 mods = g.rd32(info + 24);
    u32 m0s = g.rd32(mods), m0e = g.rd32(mods + 4), m1s = g.rd32(mods + 16), m1e = g.rd32(mods + 20);
    check_module(g, m0s, m0e, MOD0, image_end);
    check_module(g, m1s, m1e, MOD1, m0e);
    EXPECT_EQ(g.str(g.rd32(mods + 8)), MOD0_STR);
    EXPECT_EQ(g.str(g.rd32(mods + 24)), MOD1_STR);
    EXPECT_GE(info, m1e);                       // info after the modules

    u32 len = g.rd32(info + 44), addr = g.rd32(info + 48);
    ASSERT_EQ(len, 24 * mmap.size());
    std::vector<MmapEntry> got;
    for (u32 off = 0; off < len; off += 24) {
        Bytes e = g.rd(addr + off, 24);
        EXPECT_EQ(get32(e, 0), 20u);
        got.push_back({get64(e, 4), get64(e, 12), get32(e, 20)});
    }
    EXPECT_TRUE(got == mmap);
}

struct Tag {
    u32 type;
    u64 at;
    Bytes body;         // without the 8-byte header
};

// Walk a Multiboot2 information structure, checking its framing.
std::vector<Tag> v2_tags(const Guest &g, u32 info)
{
    std::vector<Tag> tags;
    EXPECT_EQ(info % 8, 0u);
    u32 total = g.rd32(info);
    EXPECT_EQ(g.rd32(info + 4), 0u);
    EXPECT_EQ(total % 8, 0u);
    for (u64 off = 8; off + 8 <= total;) {
        u32 type = g.rd32(info + off), size = g.rd32(info + off + 4);
        EXPECT_GE(size, 8u);
        EXPECT_LE(off + size, total);
        if (size < 8 || off + size > total) break;
        tags.push_back({type, info + off, g.rd(info + off + 8, size - 8)});
        if (!type) {
            EXPECT_EQ(size, 8u);
            EXPECT_EQ(off + 8, total);
            return tags;
        }
        off += (size + 7) & ~7u;
    }
    ADD_FAILURE() << "no end tag";
    return tags;
}

std::string cstr(const Bytes &b, size_t off)
{
    std::string s;
    for (size_t i = off; i < b.size() && b[i]; i++) s += char(b[i]);
    EXPECT_LT(off + s.size(), b.size()) << "string not terminated inside its tag";
    return s;
}

void check_v2_info(const Guest &g, u32 info, u64 image_end, bool load_base = false, u32 base = 0,
                   const std::vector<MmapEntry> &mmap = pc_mmap(), u32 upper = 63 * 1024)
{
    std::vector<Tag> t = v2_tags(g, info);
    std::vector<u32> types;
    for (auto &x : t) types.push_back(x.type);
    std::vector<u32> want = {1, 2, 3, 3, 4, 6, 0};
    if (load_base) want.insert(want.begin(), 21);
    ASSERT_EQ(types, want);
    size_t i = 0;
    if (load_base) EXPECT_EQ(get32(t[i++].body, 0), base);
    EXPECT_EQ(cstr(t[i++].body, 0), CMDLINE);
    EXPECT_EQ(cstr(t[i++].body, 0), "Keel");
    const Tag &m0 = t[i++], &m1 = t[i++];
    check_module(g, get32(m0.body, 0), get32(m0.body, 4), MOD0, image_end);
    check_module(g, get32(m1.body, 0), get32(m1.body, 4), MOD1, get32(m0.body, 4));
    EXPECT_EQ(cstr(m0.body, 8), MOD0_STR);
    EXPECT_EQ(cstr(m1.body, 8), MOD1_STR);
    EXPECT_GE(info, get32(m1.body, 4));
    const Tag &mi = t[i++];
    ASSERT_EQ(mi.body.size(), 8u);
    EXPECT_EQ(get32(mi.body, 0), 640u);
    EXPECT_EQ(get32(mi.body, 4), upper);
    const Tag &mm = t[i++];
    EXPECT_EQ(get32(mm.body, 0), 24u);          // entry_size
    EXPECT_EQ(get32(mm.body, 4), 0u);           // entry_version
    ASSERT_EQ(mm.body.size(), 8 + 24 * mmap.size());
    std::vector<MmapEntry> got;
    for (size_t off = 8; off < mm.body.size(); off += 24) {
        got.push_back({get64(mm.body, off), get64(mm.body, off + 8), get32(mm.body, off + 16)});
        EXPECT_EQ(get32(mm.body, off + 20), 0u);
    }
    EXPECT_TRUE(got == mmap);
}

// The standard ELF test kernel's segments in guest RAM: text, data, zeroed bss.
void check_std_segments(const Guest &g)
{
    EXPECT_EQ(g.rd(0x100000, TEXT.size()), TEXT);
    EXPECT_EQ(g.rd(0x102000, DATA.size()), DATA);
    EXPECT_EQ(g.rd(0x102000 + DATA.size(), 0x3000 - DATA.size()), Bytes(0x3000 - DATA.size(), 0));
    EXPECT_EQ(g.rd(0x101800, 0x800), Bytes(0x800, 0xa5));        // the gap is untouched
}

// ---- successful loads ----------------------------------------------------------

TEST(LoaderMultiboot, V1AoutKludge)
{
    Guest g(64 * MiB);
    Aout a = make_aout(0x100000, 0x3004, 0x2000, 0x100, 0x40, 0x3 /* page-align + mem info */);
    Loaded l = load(g, a.img);
    ASSERT_TRUE(l.r.ok()) << l.rep.msg;
    EXPECT_EQ(l.r->eax, MB1_BOOT_MAGIC);
    EXPECT_EQ(l.r->eip, 0x100100u);
    EXPECT_EQ(g.rd(0x100000, a.img.size()), a.img);
    EXPECT_EQ(g.rd(0x103004, 0x2000), Bytes(0x2000, 0));          // bss
    EXPECT_EQ(g.rd(0x105004, 4), Bytes(4, 0xa5));                  // not beyond
    check_v1_info(g, l.r->ebx, 0x105004);
    EXPECT_EQ(l.rep.version, 1);
    EXPECT_EQ(l.rep.image_start.raw(), 0x100000u);
    EXPECT_EQ(l.rep.image_end.raw(), 0x105004u);
    EXPECT_EQ(l.rep.info.raw(), l.r->ebx);
    EXPECT_GT(l.rep.end.raw(), l.rep.info.raw());
    EXPECT_NE(std::strstr(l.rep.msg, "a.out"), nullptr) << l.rep.msg;
}

TEST(LoaderMultiboot, V1AoutWholeFileNoBss)
{
    // load_end_addr 0: the rest of the file; bss_end_addr 0: no bss. Header not at offset 0.
    Guest g(64 * MiB);
    Bytes img = pattern(0x2000, 4);
    Bytes h = mb1_header(AOUT, 0x200100, 0x200000, 0, 0, 0x200010);
    std::copy(h.begin(), h.end(), img.begin() + 0x100);
    Loaded l = load(g, img);
    ASSERT_TRUE(l.r.ok()) << l.rep.msg;
    EXPECT_EQ(g.rd(0x200000, img.size()), img);
    EXPECT_EQ(l.rep.image_end.raw(), 0x202000u);
    check_v1_info(g, l.r->ebx, 0x202000);
}

TEST(LoaderMultiboot, V1Elf32)
{
    Guest g(64 * MiB);
    Elf e = make_elf(false, 0xc0100010, std_segs(), mb1_header(0x2));
    Loaded l = load(g, e.img);
    ASSERT_TRUE(l.r.ok()) << l.rep.msg;
    EXPECT_EQ(l.r->eax, MB1_BOOT_MAGIC);
    EXPECT_EQ(l.r->eip, 0x100010u);                                 // e_entry translated to p_paddr
    check_std_segments(g);
    check_v1_info(g, l.r->ebx, 0x105000);
    EXPECT_EQ(l.rep.image_start.raw(), 0x100000u);
    EXPECT_EQ(l.rep.image_end.raw(), 0x105000u);
}

TEST(LoaderMultiboot, V1ElfIdentityMappedAndEmptyCmdline)
{
    Guest g(64 * MiB);
    std::vector<SegSpec> s = {{0x100000, 0x100000, TEXT, 0x2000}};
    Elf e = make_elf(false, 0x100000, s, mb1_header(0));
    Loaded l = load(g, e.img, 2, "");
    ASSERT_TRUE(l.r.ok()) << l.rep.msg;
    EXPECT_EQ(l.r->eip, 0x100000u);
    check_v1_info(g, l.r->ebx, 0x102000, "");
}

TEST(LoaderMultiboot, V1NoModulesNoCmdline)
{
    Guest g(64 * MiB);
    Elf e = make_elf(false, 0xc0100010, std_segs(), mb1_header(0));
    auto r = load_multiboot(g.mem, e.img.data(), e.img.size(), nullptr, 0, nullptr, 0);
    ASSERT_TRUE(r.ok());
    u32 info = r->ebx;
    EXPECT_EQ(g.rd32(info + 20), 0u);
    EXPECT_EQ(g.str(g.rd32(info + 16)), "");
    EXPECT_EQ(info, 0x105000u);                                     // right after the image
    EXPECT_TRUE(g.guards_ok());
}

TEST(LoaderMultiboot, V2Elf64WithTags)
{
    Guest g(64 * MiB);
    Bytes h = Mb2()
                  .tag(1, 0, {1, 3, 6, 4, 2})                       // required, all provided
                  .tag(1, 1, {8, 14, 15})                           // optional: ignored
                  .tag(6, 0)                                        // module alignment
                  .tag(5, 1, {1024, 768, 32})                       // optional framebuffer
                  .tag(4, 0, {2})                                   // EGA text supported, console not required
                  .tag(7, 1)                                        // optional EFI boot services
                  .tag(9, 1, {0x100000})                            // optional EFI64 entry
                  .tag(10, 0, {0x100000, 0x10000000, 0x1000, 0})    // relocatable
                  .tag(1, 0, {21})                                  // load base: provided (relocatable)
                  .tag(0x1234, 1, {1, 2, 3})                        // unknown, optional
                  .build();
    std::vector<SegSpec> s = std_segs();
    for (auto &x : s) x.vaddr = x.vaddr ? x.vaddr - 0xc0000000 + 0xffffffff80000000ull : 0;
    Elf e = make_elf(true, 0xffffffff80100020ull, s, h);
    Loaded l = load(g, e.img);
    ASSERT_TRUE(l.r.ok()) << l.rep.msg;
    EXPECT_EQ(l.r->eax, MB2_BOOT_MAGIC);
    EXPECT_EQ(l.r->eip, 0x100020u);
    check_std_segments(g);
    check_v2_info(g, l.r->ebx, 0x105000, true, 0x100000);
    EXPECT_EQ(l.rep.version, 2);
    EXPECT_NE(std::strstr(l.rep.msg, "ELF64"), nullptr) << l.rep.msg;
}

TEST(LoaderMultiboot, V2Elf32EntryTagOverrides)
{
    Guest g(64 * MiB);
    Bytes h = Mb2().tag(3, 0, {0x102010}).build();
    Elf e = make_elf(false, 0xdeadbeef /* would not translate */, std_segs(), h);
    Loaded l = load(g, e.img);
    ASSERT_TRUE(l.r.ok()) << l.rep.msg;
    EXPECT_EQ(l.r->eip, 0x102010u);
    check_std_segments(g);
    check_v2_info(g, l.r->ebx, 0x105000);
}

TEST(LoaderMultiboot, V2AddressTag)
{
    Guest g(64 * MiB);
    Bytes img = make_v2_flat(0x180000, 0x1234, 0x3000, 0x40);
    Loaded l = load(g, img);
    ASSERT_TRUE(l.r.ok()) << l.rep.msg;
    EXPECT_EQ(l.r->eip, 0x180040u);
    EXPECT_EQ(g.rd(0x180000, img.size()), img);
    EXPECT_EQ(g.rd(0x181234, 0x3000), Bytes(0x3000, 0));
    check_v2_info(g, l.r->ebx, 0x184234);
}

TEST(LoaderMultiboot, V2AddressTagLoadFromFileStart)
{
    Guest g(64 * MiB);
    Bytes img = make_v2_flat(0x180000, 0x1000, 0, 0x40, true);
    Loaded l = load(g, img);
    ASSERT_TRUE(l.r.ok()) << l.rep.msg;
    EXPECT_EQ(g.rd(0x180000, img.size()), img);
    EXPECT_EQ(l.rep.image_end.raw(), 0x181000u);
}

TEST(LoaderMultiboot, BothHeadersPreferV2)
{
    Guest g(64 * MiB);
    Bytes h = Mb2().build();
    Bytes both = mb1_header(0);
    both.resize(16, 0);                 // v1 header 12 bytes; v2 must be 8-aligned
    both.insert(both.end(), h.begin(), h.end());
    Elf e = make_elf(false, 0xc0100010, std_segs(), both);
    Loaded l = load(g, e.img);
    ASSERT_TRUE(l.r.ok()) << l.rep.msg;
    EXPECT_EQ(l.r->eax, MB2_BOOT_MAGIC);
}

TEST(LoaderMultiboot, KernelInLowMemoryModulesSkipHole)
{
    // A kernel at 0x8000: modules do not fit below 640K with the info, so they move above 1 MiB.
    Guest g(64 * MiB);
    Bytes big = pattern(0x98000, 3);   // 0xa000 + 0x98000 would cross 640K
    std::vector<SegSpec> s = {{0x8000, 0x8000, TEXT, 0x1800}};
    Elf e = make_elf(false, 0x8000, s, mb1_header(0));
    GuestModuleSrc m[2] = {{big.data(), big.size(), "big", 3}, {MOD1.data(), MOD1.size(), nullptr, 0}};
    auto r = load_multiboot(g.mem, e.img.data(), e.img.size(), nullptr, 0, m, 2);
    ASSERT_TRUE(r.ok());
    u32 mods = g.rd32(r->ebx + 24);
    u32 s0 = g.rd32(mods), s1 = g.rd32(mods + 16);
    EXPECT_EQ(s0, 0x100000u);
    EXPECT_EQ(g.rd(s0, big.size()), big);
    EXPECT_EQ(s1, 0x100000u + 0x98000);
    EXPECT_EQ(g.str(g.rd32(mods + 24)), "");
    EXPECT_TRUE(g.guards_ok());
}

// The guest's ACPI page (the last below 640 KiB) carved out of RAM: the map says ACPI there,
// mem_lower stops at it, nothing is placed in it and no segment may cover it.
TEST(LoaderMultiboot, ReservedRangesLeaveTheMapAndPlacement)
{
    const MbReserved acpi[1] = {{0x9f000, 0x1000, 3}};
    {
        Guest g(64 * MiB);
        Elf e = make_elf(false, 0xc0100010, std_segs(), mb1_header(0));
        auto r = load_multiboot(g.mem, e.img.data(), e.img.size(), nullptr, 0, nullptr, 0, nullptr, acpi, 1);
        ASSERT_TRUE(r.ok());
        const u32 info = r->ebx;
        EXPECT_EQ(g.rd32(info + 4), 636u);            // mem_lower: up to the ACPI page
        EXPECT_EQ(g.rd32(info + 8), 63u * 1024);
        const std::vector<MmapEntry> want = {
            {0, 0x9f000, 1}, {0x9f000, 0x1000, 3}, {0xa0000, 0x60000, 2}, {0x100000, 63 * MiB, 1}};
        u32 len = g.rd32(info + 44), addr = g.rd32(info + 48);
        ASSERT_EQ(len, 24 * want.size());
        std::vector<MmapEntry> got;
        for (u32 off = 0; off < len; off += 24) {
            Bytes x = g.rd(addr + off, 24);
            got.push_back({get64(x, 4), get64(x, 12), get32(x, 20)});
        }
        EXPECT_TRUE(got == want);
        EXPECT_TRUE(g.guards_ok());
    }
    {
        // A kernel low in memory: its boot information must not land on the ACPI page.
        Guest g(64 * MiB);
        Bytes big = pattern(0x95000, 3);   // 0xa000 + 0x95000 = 0x9f000: fills RAM up to the page
        std::vector<SegSpec> s = {{0x8000, 0x8000, TEXT, 0x1800}};
        Elf e = make_elf(false, 0x8000, s, mb1_header(0));
        GuestModuleSrc m[1] = {{big.data(), big.size(), "big", 3}};
        Bytes page = g.rd(0x9f000, 0x1000);
        auto r = load_multiboot(g.mem, e.img.data(), e.img.size(), nullptr, 0, m, 1, nullptr, acpi, 1);
        ASSERT_TRUE(r.ok());
        EXPECT_EQ(g.rd32(g.rd32(r->ebx + 24)), 0xa000u);
        EXPECT_GE(r->ebx, 0x100000u);                 // past the page and the hole
        EXPECT_EQ(g.rd(0x9f000, 0x1000), page);
    }
    {
        // A segment over the page is refused, and an invalid range is an invalid argument.
        Guest g(64 * MiB);
        std::vector<SegSpec> s = {{0x90000, 0x90000, TEXT, 0x10000}};
        Elf e = make_elf(false, 0x90000, s, mb1_header(0));
        LoadReport rep{};
        auto r = load_multiboot(g.mem, e.img.data(), e.img.size(), nullptr, 0, nullptr, 0, &rep, acpi, 1);
        ASSERT_FALSE(r.ok());
        EXPECT_EQ(r.error(), Err::range);
        EXPECT_NE(std::strstr(rep.msg, "reserved"), nullptr) << rep.msg;
        const MbReserved bad[1] = {{0x9f000, 0x1000, 1}};
        Elf ok = make_elf(false, 0xc0100010, std_segs(), mb1_header(0));
        EXPECT_EQ(load_multiboot(g.mem, ok.img.data(), ok.img.size(), nullptr, 0, nullptr, 0, nullptr, bad, 1).error(),
                  Err::invalid);
    }
}

TEST(LoaderMultiboot, ManySmallExtents)
{
    // 2 MiB extents: the image, modules and info straddle extent boundaries;
    // the map still shows one RAM range above 1 MiB.
    Guest g(64 * MiB, 2 * MiB);
    ASSERT_GT(g.mem.extent_count(), 30u);
    std::vector<SegSpec> s = {{0x2ff000, 0x2ff000, pattern(0x3000, 6), 0x5000}};   // extent boundary at 3 MiB
    Elf e = make_elf(false, 0x300000, s, mb1_header(0));
    Loaded l = load(g, e.img);
    ASSERT_TRUE(l.r.ok()) << l.rep.msg;
    EXPECT_EQ(g.rd(0x2ff000, 0x3000), pattern(0x3000, 6));
    EXPECT_EQ(g.rd(0x302000, 0x2000), Bytes(0x2000, 0));
    check_v1_info(g, l.r->ebx, 0x304000);
}

// A guest larger than lowmem_top: RAM above 4 GiB appears in the map, but
// modules and info stay below 4 GiB. Sparse (NORESERVE) backing.
TEST(LoaderMultiboot, LargeGuestAbove4G)
{
    GuestExtent e[3];
    ASSERT_EQ(GuestMemory::pc_layout(5 * GiB, 3 * GiB, e), 3u);
    std::vector<std::pair<void *, size_t>> maps;
    GuestMemory mem;
    for (usize i = 0; i < 3; i++)
        for (u64 off = 0; off < e[i].size; off += 1 * GiB) {          // 1 GiB "buddy blocks"
            size_t n = std::min<u64>(1 * GiB, e[i].size - off);
            void *p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (p == MAP_FAILED) {
                for (auto &m : maps) munmap(m.first, m.second);
                GTEST_SKIP() << "cannot reserve 5 GiB of address space";
            }
            maps.push_back({p, n});
            ASSERT_TRUE(mem.add(e[i].gpa + off, n, static_cast<u8 *>(p)));
        }
    EXPECT_EQ(mem.ram_bytes(), 5 * GiB - 384 * KiB);

    Bytes h = Mb2().build();
    Elf elf = make_elf(true, 0xc0100010, std_segs(), h);
    GuestModuleSrc m[2] = {{MOD0.data(), MOD0.size(), MOD0_STR.c_str(), MOD0_STR.size()},
                           {MOD1.data(), MOD1.size(), MOD1_STR.c_str(), MOD1_STR.size()}};
    auto r = load_multiboot(mem, elf.img.data(), elf.img.size(), CMDLINE.c_str(), CMDLINE.size(), m, 2);
    ASSERT_TRUE(r.ok());

    // Read the info back through a Guest-like view.
    Guest g;
    for (usize i = 0; i < mem.extent_count(); i++)
        ASSERT_TRUE(g.mem.add(mem.extent(i).gpa, mem.extent(i).size, mem.extent(i).host));
    std::vector<MmapEntry> want = {{0, 0xa0000, 1}, {0xa0000, 0x60000, 2}, {0x100000, 3 * GiB - MiB, 1},
                                   {4 * GiB, 2 * GiB, 1}};
    check_v2_info(g, r->ebx, 0x105000, false, 0, want, (3 * GiB - MiB) / KiB);
    EXPECT_EQ(g.rd(0x100000, TEXT.size()), TEXT);
    for (auto &p : maps) munmap(p.first, p.second);
}

TEST(LoaderMultiboot, RamAbove4GIsNotUsedForModules)
{
    // Low RAM is nearly full with the kernel; plenty above 4 GiB: still no_memory.
    Guest g;
    g.add(0, 0xa0000);
    g.add(0x100000, 0x20000);
    g.add(4 * GiB, 0x100000);
    std::vector<SegSpec> s = {{0x100000, 0x100000, TEXT, 0x1f000}};
    Elf e = make_elf(false, 0x100000, s, mb1_header(0));
    Bytes before = g.snapshot();
    Loaded l = load(g, e.img);
    ASSERT_FALSE(l.r.ok());
    EXPECT_EQ(l.r.error(), Err::no_memory);
    EXPECT_NE(std::strstr(l.rep.msg, "module 0"), nullptr) << l.rep.msg;
    EXPECT_TRUE(g.snapshot() == before);
}

// ---- malformed images ------------------------------------------------------------

Bytes std_v1_elf() { return make_elf(false, 0xc0100010, std_segs(), mb1_header(0)).img; }

TEST(LoaderMultibootBad, NoHeader)
{
    expect_fail(pattern(0x4000, 1), Err::not_found, "no Multiboot header");
    Bytes img = pattern(0x4000, 1);
    expect_fail(Bytes(img.begin(), img.begin() + 3), Err::not_found, "no Multiboot header");
}

TEST(LoaderMultibootBad, BadChecksums)
{
    Elf e = make_elf(false, 0xc0100010, std_segs(), mb1_header(0));
    put32(e.img, e.hdr_off + 8, get32(e.img, e.hdr_off + 8) + 1);
    expect_fail(e.img, Err::bad_checksum, "checksum");

    Elf e2 = make_elf(true, 0xc0100010, std_segs(), Mb2().build());
    put32(e2.img, e2.hdr_off + 12, get32(e2.img, e2.hdr_off + 12) ^ 0x100);
    expect_fail(e2.img, Err::bad_checksum, "checksum");
}

TEST(LoaderMultibootBad, HeaderPastSearchWindow)
{
    // v1 at 8192 is not searched, nor at 8188 (its 12 bytes would cross 8 KiB);
    // at 8180 it is, and then the image fails for the next reason.
    Bytes h = mb1_header(0);
    Bytes v1(0x4000, 0);
    std::copy(h.begin(), h.end(), v1.begin() + 8192);
    std::copy(h.begin(), h.end(), v1.begin() + 8188);
    expect_fail(v1, Err::not_found, "no Multiboot header");
    std::copy(h.begin(), h.end(), v1.begin() + 8180);
    expect_fail(v1, Err::invalid, "not an ELF file");

    // An a.out header whose address fields run past 8 KiB.
    Bytes a = pattern(0x4000, 1);
    Bytes ah = mb1_header(AOUT, 0x100000 + 8168, 0x100000, 0, 0, 0x100000);
    std::copy(ah.begin(), ah.end(), a.begin() + 8168);
    expect_fail(a, Err::invalid, "past 8 KiB");

    // v2 at 32768 is not searched; one starting inside the window but extending past it is invalid.
    Bytes h2 = Mb2().tag(6, 0).tag(6, 0).tag(6, 0).tag(6, 0).tag(6, 0).tag(6, 0).tag(6, 0).tag(6, 0).build();
    Bytes v2(0x10000, 0);
    std::copy(h2.begin(), h2.end(), v2.begin() + 32768);
    expect_fail(v2, Err::not_found, "no Multiboot header");
    std::copy(h2.begin(), h2.end(), v2.begin() + 32768 - 40);
    expect_fail(v2, Err::invalid, "past 32 KiB");
}

TEST(LoaderMultibootBad, SegmentOutsideRam)
{
    Elf e = make_elf(false, 0xc0100010, std_segs(), mb1_header(0));
    e.set_paddr(1, 16 * MiB - 0x1000);                              // bss runs past the end of RAM
    expect_fail(e.img, Err::range, "segment 1 at 0xfff000+0x3000 is outside guest RAM");

    Elf h = make_elf(false, 0xc0100010, std_segs(), mb1_header(0));
    h.set_paddr(1, 0xb8000);                                        // VGA memory
    expect_fail(h.img, Err::range, "legacy hole");

    Elf h2 = make_elf(false, 0xc0100010, std_segs(), mb1_header(0));
    h2.set_paddr(1, 0x9f000);                                       // straddles 640K
    expect_fail(h2.img, Err::range, "legacy hole");

    Elf m = make_elf(false, 0xc0100010, std_segs(), mb1_header(0));
    m.set_paddr(1, 0xfee00000);                                     // MMIO, not RAM
    expect_fail(m.img, Err::range, "outside guest RAM");
}

TEST(LoaderMultibootBad, SegmentOverflows)
{
    Elf e = make_elf(false, 0xc0100010, std_segs(), mb1_header(0));
    e.set_paddr(1, 0xfffff000);                                     // ELF32: crosses 2^32
    expect_fail(e.img, Err::range, "above 4 GiB");

    Elf e64 = make_elf(true, 0xc0100010, std_segs(), Mb2().build());
    e64.set_paddr(1, 0xfffffffffffff000ull);                         // ELF64: wraps 2^64
    expect_fail(e64.img, Err::range, "wraps");

    Elf big = make_elf(true, 0xc0100010, std_segs(), Mb2().build());
    big.set_memsz(1, ~0ull);
    expect_fail(big.img, Err::range, "wraps");

    Elf hi = make_elf(true, 0xc0100010, std_segs(), Mb2().build());
    hi.set_paddr(1, 5 * GiB);
    expect_fail(hi.img, Err::range, "above 4 GiB");
}

TEST(LoaderMultibootBad, FileRanges)
{
    Elf e = make_elf(false, 0xc0100010, std_segs(), mb1_header(0));
    e.set_offset(0, e.img.size() - 0x10);
    expect_fail(e.img, Err::invalid, "beyond the end of the file");

    Elf e2 = make_elf(true, 0xc0100010, std_segs(), Mb2().build());
    e2.set_offset(0, ~0ull - 0x10);
    expect_fail(e2.img, Err::invalid, "beyond the end of the file");

    Elf e3 = make_elf(true, 0xc0100010, std_segs(), Mb2().build());
    e3.set_filesz(1, ~0ull);
    e3.set_memsz(1, ~0ull);
    expect_fail(e3.img, Err::invalid, "beyond the end of the file");

    Elf e4 = make_elf(false, 0xc0100010, std_segs(), mb1_header(0));
    e4.set_memsz(0, 0x100);
    expect_fail(e4.img, Err::invalid, "memsz");

    Elf t = make_elf(false, 0xc0100010, std_segs(), mb1_header(0));
    t.img.resize(t.data_off[1] + 4);                                 // truncated file
    expect_fail(t.img, Err::invalid, "segment 1: file range");
}

TEST(LoaderMultibootBad, ProgramHeaders)
{
    Elf e = make_elf(false, 0xc0100010, std_segs(), mb1_header(0));
    e.set_phnum(0xffff);
    expect_fail(e.img, Err::invalid, "program headers");

    Elf z = make_elf(false, 0xc0100010, std_segs(), mb1_header(0));
    z.set_phnum(0);
    expect_fail(z.img, Err::invalid, "no program headers");

    Elf p = make_elf(false, 0xc0100010, std_segs(), mb1_header(0));
    p.set_phentsize(40);
    expect_fail(p.img, Err::invalid, "e_phentsize");

    Elf p64 = make_elf(true, 0xc0100010, std_segs(), Mb2().build());
    p64.set_phentsize(32);
    expect_fail(p64.img, Err::invalid, "e_phentsize");

    Elf o = make_elf(true, 0xc0100010, std_segs(), Mb2().build());
    put64(o.img, 32, ~0ull - 8);                                     // e_phoff
    expect_fail(o.img, Err::invalid, "program headers");

    Elf m = make_elf(false, 0xc0100010, std_segs(), mb1_header(0));
    put16(m.img, 18, 62);                                             // ELF32 claiming x86-64
    expect_fail(m.img, Err::unsupported, "machine");

    Elf c = make_elf(false, 0xc0100010, std_segs(), mb1_header(0));
    c.img[4] = 3;
    expect_fail(c.img, Err::invalid, "class");

    // Too many loadable segments (each fine on its own).
    std::vector<SegSpec> many;
    for (u64 i = 0; i < MB_MAX_SEGMENTS + 1; i++) many.push_back({0x100000 + i * 0x1000, 0x100000 + i * 0x1000,
                                                                    pattern(0x10, u8(i)), 0x1000});
    expect_fail(make_elf(false, 0x100000, many, mb1_header(0)).img, Err::unsupported, "loadable segments");

    // Only non-PT_LOAD or empty segments.
    std::vector<SegSpec> none = {{0x100000, 0x100000, {}, 0}, {0, 0, pattern(8, 1), 8, 4}};
    expect_fail(make_elf(false, 0x100000, none, mb1_header(0)).img, Err::invalid, "no loadable segments");
}

TEST(LoaderMultibootBad, OverlapsAndEntry)
{
    Elf e = make_elf(false, 0xc0100010, std_segs(), mb1_header(0));
    e.set_paddr(1, 0x101000);                                        // into the text segment
    expect_fail(e.img, Err::invalid, "segments 0 and 1 overlap");

    Elf n = make_elf(false, 0xc0200000, std_segs(), mb1_header(0));
    expect_fail(n.img, Err::invalid, "entry point 0xc0200000");

    Elf t = make_elf(false, 0xc0100010, std_segs(), Mb2().tag(3, 0, {0x200000}).build());
    expect_fail(t.img, Err::invalid, "entry point 0x200000");

    Aout a = make_aout(0x100000, 0x3000, 0, 0x5000);
    expect_fail(a.img, Err::invalid, "entry point");
}

TEST(LoaderMultibootBad, AoutInconsistent)
{
    auto with = [](u32 header_addr, u32 load, u32 load_end, u32 bss_end) {
        Bytes img = pattern(0x3000, 1);
        Bytes h = mb1_header(AOUT, header_addr, load, load_end, bss_end, 0x100000);
        std::copy(h.begin(), h.end(), img.begin() + 0x40);
        return img;
    };
    expect_fail(with(0x100040, 0x100080, 0, 0), Err::invalid, "above header_addr");
    expect_fail(with(0x100040, 0x0fff00, 0, 0), Err::invalid, "before the start of the file");
    expect_fail(with(0x100040, 0x100000, 0x0fffff, 0), Err::invalid, "below load_addr");
    expect_fail(with(0x100040, 0x100000, 0x104000, 0), Err::invalid, "beyond the end of the file");
    expect_fail(with(0x100040, 0x100000, 0x102000, 0x101000), Err::invalid, "bss_end_addr");
    expect_fail(with(0x100040, 0x100000, 0x100000, 0), Err::invalid, "nothing to load");
    expect_fail(with(0xffffff00, 0xfffffec0, 0, 0x10), Err::invalid, "bss_end_addr");
    expect_fail(with(0xfffff040, 0xfffff000, 0, 0), Err::range, "above 4 GiB");

    // Not ELF and no a.out kludge: nothing says where to load.
    Bytes img = pattern(0x3000, 1);
    Bytes h = mb1_header(0);
    std::copy(h.begin(), h.end(), img.begin() + 0x40);
    expect_fail(img, Err::invalid, "not an ELF file");
}

TEST(LoaderMultibootBad, V1RequiredFlags)
{
    expect_fail(make_elf(false, 0xc0100010, std_segs(), mb1_header(1u << 2)).img, Err::unsupported, "video");
    expect_fail(make_elf(false, 0xc0100010, std_segs(), mb1_header(1u << 5)).img, Err::unsupported, "flags 0x20");
    expect_fail(make_elf(false, 0xc0100010, std_segs(), mb1_header(0x8000)).img, Err::unsupported, "0x8000");
    // Optional bits (16-31, other than the a.out kludge) are ignored.
    Guest g(64 * MiB);
    ASSERT_TRUE(load(g, make_elf(false, 0xc0100010, std_segs(), mb1_header(0x80020003)).img).r.ok());
}

TEST(LoaderMultibootBad, V2RequiredTags)
{
    auto img = [](const Mb2 &m) { return make_elf(true, 0xc0100010, std_segs(), m.build()).img; };
    expect_fail(img(Mb2().tag(5, 0, {1024, 768, 32})), Err::unsupported, "framebuffer");
    expect_fail(img(Mb2().tag(7, 0)), Err::unsupported, "EFI");
    expect_fail(img(Mb2().tag(8, 0, {0x100000})), Err::unsupported, "EFI");
    expect_fail(img(Mb2().tag(9, 0, {0x100000})), Err::unsupported, "EFI");
    expect_fail(img(Mb2().tag(1, 0, {1, 8})), Err::unsupported, "boot information tag 8");
    expect_fail(img(Mb2().tag(1, 0, {21})), Err::unsupported, "tag 21");
    expect_fail(img(Mb2().tag(4, 0, {1})), Err::unsupported, "console");
    expect_fail(img(Mb2().tag(42, 0)), Err::unsupported, "header tag 42");
    expect_fail(make_elf(true, 0xc0100010, std_segs(), Mb2().build(true, 4)).img, Err::unsupported,
                "architecture 4");
    expect_fail(img(Mb2().tag(2, 0, {0x100000, 0x100000, 0, 0})), Err::invalid, "without an entry");
}

TEST(LoaderMultibootBad, V2TagFraming)
{
    auto img = [](const Mb2 &m, bool end = true) { return make_elf(true, 0xc0100010, std_segs(), m.build(end)).img; };
    expect_fail(img(Mb2().tag(6, 0, {}, 0)), Err::invalid, "bad size 0");
    expect_fail(img(Mb2().tag(6, 0, {}, 4)), Err::invalid, "bad size 4");
    expect_fail(img(Mb2().tag(6, 0, {}, 0x1000)), Err::invalid, "bad size");       // past the header
    expect_fail(img(Mb2().tag(6, 0), false), Err::invalid, "no end tag");
    expect_fail(img(Mb2().tag(3, 0, {}, 8)), Err::invalid, "too short");
    expect_fail(img(Mb2().tag(2, 0, {0x100000}, 12)), Err::invalid, "too short");
    // header_length shorter than the tags it claims.
    Elf e = make_elf(true, 0xc0100010, std_segs(), Mb2().tag(6, 0).build());
    put32(e.img, e.hdr_off + 8, 16);
    fix_mb2(e.img, e.hdr_off);
    expect_fail(e.img, Err::invalid, "too short");
}

TEST(LoaderMultibootBad, ModulesDoNotFit)
{
    // 2 MiB of RAM above 1 MiB; the kernel takes 20 KiB; a 1 MiB module fits, a second does not.
    Bytes img = std_v1_elf();
    Bytes big(1 * MiB, 0x42);
    GuestModuleSrc m[2] = {{big.data(), big.size(), "a", 1}, {big.data(), big.size(), "b", 1}};
    Guest g(3 * MiB);
    Bytes before = g.snapshot();
    LoadReport rep;
    auto r = load_multiboot(g.mem, img.data(), img.size(), nullptr, 0, m, 2, &rep);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error(), Err::no_memory);
    EXPECT_NE(std::strstr(rep.msg, "module 1 (1048576 bytes) does not fit"), nullptr) << rep.msg;
    EXPECT_EQ(rep.version, 1);
    EXPECT_TRUE(g.snapshot() == before);
    EXPECT_TRUE(g.guards_ok());

    // The boot information itself not fitting: a huge command line in a tiny guest.
    Guest t(1 * MiB + 0x6000);
    std::string cmd(0x2000, 'x');
    auto r2 = load_multiboot(t.mem, img.data(), img.size(), cmd.c_str(), cmd.size(), nullptr, 0, &rep);
    EXPECT_EQ(r2.error(), Err::no_memory);
    EXPECT_NE(std::strstr(rep.msg, "boot information"), nullptr) << rep.msg;
}

TEST(LoaderMultibootBad, Arguments)
{
    Guest g(4 * MiB);
    Bytes img = std_v1_elf();
    GuestModuleSrc m[1] = {{nullptr, 10, nullptr, 0}};
    EXPECT_EQ(load_multiboot(g.mem, nullptr, 100, nullptr, 0, nullptr, 0).error(), Err::invalid);
    EXPECT_EQ(load_multiboot(g.mem, img.data(), 0, nullptr, 0, nullptr, 0).error(), Err::invalid);
    EXPECT_EQ(load_multiboot(g.mem, img.data(), img.size(), nullptr, 5, nullptr, 0).error(), Err::invalid);
    EXPECT_EQ(load_multiboot(g.mem, img.data(), img.size(), nullptr, 0, m, 1).error(), Err::invalid);
    EXPECT_EQ(load_multiboot(g.mem, img.data(), img.size(), nullptr, 0, nullptr, 1).error(), Err::invalid);
    std::vector<GuestModuleSrc> lots(MB_MAX_MODULES + 1, GuestModuleSrc{MOD1.data(), 1, nullptr, 0});
    EXPECT_EQ(load_multiboot(g.mem, img.data(), img.size(), nullptr, 0, lots.data(), lots.size()).error(),
              Err::invalid);
    std::string huge(MB_MAX_STRING + 1, 'a');
    EXPECT_EQ(load_multiboot(g.mem, img.data(), img.size(), huge.c_str(), huge.size(), nullptr, 0).error(),
              Err::invalid);
    // MB_MAX_MODULES modules are fine.
    lots.pop_back();
    EXPECT_TRUE(load_multiboot(g.mem, img.data(), img.size(), nullptr, 0, lots.data(), lots.size()).ok());
    EXPECT_TRUE(g.guards_ok());
}

// ---- randomised corruption ----------------------------------------------------------

TEST(LoaderMultibootFuzz, MutatedImagesNeverEscapeGuestRam)
{
    std::vector<Bytes> seeds;
    std::vector<size_t> hdr;        // header offset per seed (to re-fix checksums)
    std::vector<int> ver;
    {
        Aout a = make_aout(0x100000, 0x2000, 0x1000, 0x10);
        seeds.push_back(a.img), hdr.push_back(a.hdr_off), ver.push_back(1);
        Elf e1 = make_elf(false, 0xc0100010, std_segs(), mb1_header(3));
        seeds.push_back(e1.img), hdr.push_back(e1.hdr_off), ver.push_back(1);
        Elf e2 = make_elf(true, 0xc0100010, std_segs(),
                          Mb2().tag(1, 0, {1, 3, 6}).tag(6, 0).tag(10, 0, {0x100000, 0x400000, 0x1000, 1}).build());
        seeds.push_back(e2.img), hdr.push_back(e2.hdr_off), ver.push_back(2);
        Elf e3 = make_elf(false, 0xc0100010, std_segs(), Mb2().tag(3, 0, {0x100020}).build());
        seeds.push_back(e3.img), hdr.push_back(e3.hdr_off), ver.push_back(2);
        seeds.push_back(make_v2_flat(0x180000, 0x1800, 0x800, 0x20)), hdr.push_back(0x20), ver.push_back(2);
    }
    const u32 interesting[] = {0, 1, 7, 8, 0x18, 0xa0000, 0xfffff, 0x100000, 0x3ff000, 0x400000,
                               0x7fffffff, 0x80000000, 0xfffff000, 0xffffffff};

    // A small guest: [0, 640K) and [1M, 4M) in 1 MiB extents, reused across iterations.
    Guest g(4 * MiB, 1 * MiB);
    std::mt19937 rng(20240611);
    int ok = 0;
    for (int it = 0; it < 4000; it++) {
        size_t k = rng() % seeds.size();
        Bytes img = seeds[k];
        int muts = 1 + rng() % 6;
        for (int j = 0; j < muts; j++) {
            // Mostly hit the headers (ELF, program headers, Multiboot).
            size_t span = rng() % 4 ? std::min<size_t>(img.size(), hdr[k] + 0x80) : img.size();
            size_t off = rng() % span;
            switch (rng() % 4) {
            case 0: img[off] ^= u8(1u << (rng() % 8)); break;
            case 1: img[off] = u8(rng()); break;
            case 2:
                if (off + 4 <= img.size()) put32(img, off & ~size_t(3), interesting[rng() % std::size(interesting)]);
                break;
            case 3: if (rng() % 4 == 0) img.resize(off + 1); break;
            }
        }
        // Usually keep the checksum valid so that the corruption gets past it.
        if (rng() % 8 && hdr[k] + 16 <= img.size())
            ver[k] == 1 ? fix_mb1(img, hdr[k]) : fix_mb2(img, hdr[k]);

        size_t nmods = rng() % 3;
        GuestModuleSrc m[2] = {{MOD0.data(), MOD0.size(), "m0", 2}, {MOD1.data(), MOD1.size(), "m1", 2}};
        LoadReport rep;
        auto r = load_multiboot(g.mem, img.data(), img.size(), "x", 1, m, nmods, &rep);
        ASSERT_TRUE(g.guards_ok()) << "iteration " << it;
        ASSERT_LT(std::strlen(rep.msg), sizeof(rep.msg));
        if (r.ok()) {
            ok++;
            EXPECT_TRUE(g.mem.contains(GuestPhys(r->eip), 1));
            EXPECT_TRUE(g.mem.contains(GuestPhys(r->ebx), 16));
            EXPECT_TRUE(r->eax == MB1_BOOT_MAGIC || r->eax == MB2_BOOT_MAGIC);
            EXPECT_LE(rep.end.raw(), 4 * MiB);
        } else {
            EXPECT_NE(rep.msg[0], 0) << "failure without a message, iteration " << it;
        }
    }
    // The loop must exercise successful loads too, not only early rejects.
    EXPECT_GT(ok, 100);
}

} // namespace

// Multiboot2 parser and memory map sanitiser, on blobs shaped like the ones
// GRUB 2.06 hands over on BIOS and UEFI machines, and on broken ones.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernel/firmware/multiboot2.hpp"

namespace {

// Builds a Multiboot2 information structure tag by tag.
class Mbi {
public:
    Mbi() { u32_(0); u32_(0); }

    Mbi &u8_(u8 v) { b_.push_back(v); return *this; }
    Mbi &u16_(u16 v) { for (int i = 0; i < 2; i++) u8_(u8(v >> 8 * i)); return *this; }
    Mbi &u32_(u32 v) { for (int i = 0; i < 4; i++) u8_(u8(v >> 8 * i)); return *this; }
    Mbi &u64_(u64 v) { for (int i = 0; i < 8; i++) u8_(u8(v >> 8 * i)); return *this; }
    Mbi &bytes(const void *p, size_t n)
    {
        auto c = static_cast<const u8 *>(p);
        b_.insert(b_.end(), c, c + n);
        return *this;
    }
    Mbi &str(const std::string &s) { return bytes(s.c_str(), s.size() + 1); }

    Mbi &begin(u32 type)
    {
        while (b_.size() % 8) b_.push_back(0);
        tag_ = b_.size();
        return u32_(type).u32_(0);
    }
    Mbi &end()
    {
        set32(tag_ + 4, u32(b_.size() - tag_));
        return *this;
    }

    Mbi &string_tag(u32 type, const std::string &s) { return begin(type).str(s).end(); }

    // e820-style map: entries {base, len, type}.
    struct E { u64 base, len; u32 type; };
    Mbi &mmap(const std::vector<E> &es, u32 entry_size = 24)
    {
        begin(mb2::TAG_MMAP).u32_(entry_size).u32_(0);
        for (auto &e : es) {
            u64_(e.base).u64_(e.len).u32_(e.type).u32_(0);
            for (u32 i = 24; i < entry_size; i++) u8_(0xee);
        }
        return end();
    }

    struct D { u32 type; u64 phys, pages, attr; };
    Mbi &efi_mmap(const std::vector<D> &ds, u32 desc_size = 48)
    {
        begin(mb2::TAG_EFI_MMAP).u32_(desc_size).u32_(1);
        for (auto &d : ds) {
            u32_(d.type).u32_(0).u64_(d.phys).u64_(0).u64_(d.pages).u64_(d.attr);
            for (u32 i = 40; i < desc_size; i++) u8_(0);
        }
        return end();
    }

    // Terminates with the end tag and fixes total_size.
    std::vector<u8> finish()
    {
        begin(mb2::TAG_END).end();
        set32(0, u32(b_.size()));
        return b_;
    }
    std::vector<u8> raw() { return b_; }   // no end tag, total_size as set

    void set32(size_t off, u32 v) { for (int i = 0; i < 4; i++) b_[off + i] = u8(v >> 8 * i); }

private:
    std::vector<u8> b_;
    size_t tag_ = 0;
};

// An exactly sized heap copy, so ASan flags any read past the end.
struct Blob {
    std::unique_ptr<u8[]> p;
    size_t n;
    explicit Blob(const std::vector<u8> &v) : p(new u8[v.size()]), n(v.size())
    {
        memcpy(p.get(), v.data(), n);
    }
};

Result<BootInfo> parse(const std::vector<u8> &v, size_t avail = SIZE_MAX)
{
    Blob b(v);
    auto r = parse_multiboot2(b.p.get(), avail == SIZE_MAX ? b.n : avail);
    // Strings point into the blob: check them before it goes away.
    if (r.ok()) {
        EXPECT_TRUE(r->cmdline == nullptr || strlen(r->cmdline) == r->cmdline_len);
        EXPECT_TRUE(r->loader_name == nullptr || strlen(r->loader_name) == r->loader_name_len);
    }
    return r;
}

std::vector<u8> rsdp_v1_bytes()
{
    std::vector<u8> r(20, 0);
    memcpy(r.data(), "RSD PTR ", 8);
    memcpy(r.data() + 9, "BOCHS ", 6);
    r[16] = 0x00; r[17] = 0x00; r[18] = 0xfe; r[19] = 0x7f;   // RSDT at 0x7ffe0000
    u8 s = 0;
    for (u8 c : r) s = u8(s + c);
    r[8] = u8(-s);
    return r;
}

// QEMU q35, -m 6G, SeaBIOS: the e820 map GRUB copies into tag 6.
const std::vector<Mbi::E> q35_e820 = {
    {0x0, 0x9fc00, 1},
    {0x9fc00, 0x400, 2},
    {0xf0000, 0x10000, 2},
    {0x100000, 0x7fee0000, 1},
    {0x7ffe0000, 0x20000, 2},
    {0xb0000000, 0x10000000, 2},
    {0xfed1c000, 0x4000, 2},
    {0xfeffc000, 0x4000, 2},
    {0xfffc0000, 0x40000, 2},
    {0x100000000, 0x100000000, 1},
};

// GRUB 2.06 on SeaBIOS: the tag order of grub_multiboot2_make_mbi().
std::vector<u8> grub_bios_blob()
{
    Mbi m;
    m.begin(mb2::TAG_LOAD_BASE).u32_(0x200000).end();
    m.string_tag(mb2::TAG_CMDLINE, "/boot/keel.elf serial=0x3f8 loglevel=debug");
    m.string_tag(mb2::TAG_LOADER_NAME, "GRUB 2.06");
    m.begin(mb2::TAG_APM).u16_(0x0102).u16_(0xf000).u32_(0xb1d5).u16_(0xf000).u16_(0xf000)
        .u16_(3).u16_(0xfff0).u16_(0xffff).u16_(0xffff).end();
    m.begin(mb2::TAG_MODULE).u32_(0x1000000).u32_(0x1234567).str("/boot/guest.bin root=/dev/vda").end();
    m.begin(mb2::TAG_MODULE).u32_(0x1300000).u32_(0x1300000).str("").end();
    m.mmap(q35_e820);
    // ELF sections: u32 num, entsize, shndx, then 2 zeroed 64-byte headers.
    m.begin(mb2::TAG_ELF_SECTIONS).u32_(2).u32_(64).u32_(1);
    for (int i = 0; i < 128; i++) m.u8_(0);
    m.end();
    m.begin(mb2::TAG_BASIC_MEMINFO).u32_(639).u32_(2096000).end();
    m.begin(mb2::TAG_BOOTDEV).u32_(0x80).u32_(0xffffffff).u32_(0xffffffff).end();
    // EGA text "framebuffer".
    m.begin(mb2::TAG_FRAMEBUFFER).u64_(0xb8000).u32_(160).u32_(80).u32_(25).u8_(16).u8_(2).u16_(0).end();
    auto r = rsdp_v1_bytes();
    m.begin(mb2::TAG_ACPI_OLD).bytes(r.data(), r.size()).end();
    return m.finish();
}

// OVMF: tag 6 is GRUB's translation of the EFI map (type 20 = EfiRuntimeServicesCode).
const std::vector<Mbi::E> ovmf_e820 = {
    {0x0, 0xa0000, 1},
    {0x100000, 0x700000, 1},
    {0x800000, 0x8000, 4},
    {0x808000, 0x8000, 1},
    {0x810000, 0xf0000, 4},
    {0x900000, 0x7dfef000, 1},
    {0x7e8ef000, 0x100000, 20},
    {0x7e9ef000, 0x100000, 2},
    {0x7eaef000, 0x80000, 3},
    {0x7eb6f000, 0x80000, 4},
    {0x7ebef000, 0x1389000, 1},
    {0xb0000000, 0x10000000, 2},
    {0x100000000, 0x80000000, 1},
};

const std::vector<Mbi::D> ovmf_efi = {
    {3, 0x0, 0xa0, 0xf},            // BootServicesCode
    {7, 0x100000, 0x700, 0xf},      // Conventional
    {10, 0x800000, 0x8, 0xf},       // NVS
    {7, 0x808000, 0x8, 0xf},
    {10, 0x810000, 0xf0, 0xf},
    {2, 0x900000, 0x1000, 0xf},     // LoaderData
    {4, 0x1900000, 0x7cfef, 0xf},   // BootServicesData
    {5, 0x7e8ef000, 0x100, 0x800000000000000full},  // RuntimeServicesCode
    {6, 0x7e9ef000, 0x100, 0x800000000000000full},  // RuntimeServicesData
    {9, 0x7eaef000, 0x80, 0xf},     // ACPIReclaim
    {10, 0x7eb6f000, 0x80, 0xf},
    {1, 0x7ebef000, 0x1389, 0xf},   // LoaderCode
    {11, 0xb0000000, 0x10000, 1},   // MMIO
    {8, 0xc0000000, 0x10, 0xf},     // Unusable
    {14, 0xd0000000, 0x10, 0xf},    // Persistent
    {7, 0x100000000, 0x80000, 0xf},
};

std::vector<u8> rsdp_v2_bytes()
{
    std::vector<u8> r(36, 0);
    memcpy(r.data(), "RSD PTR ", 8);
    memcpy(r.data() + 9, "BOCHS ", 6);
    r[15] = 2;
    r[20] = 36;
    r[24] = 0xe8; r[25] = 0x00; r[26] = 0xb7; r[27] = 0x7e;   // XSDT
    return r;   // checksums are the ACPI parser's business
}

std::vector<u8> grub_uefi_blob(bool with_tag6 = true, bool with_tag17 = true)
{
    Mbi m;
    m.string_tag(mb2::TAG_CMDLINE, "/keel.elf");
    m.string_tag(mb2::TAG_LOADER_NAME, "GRUB 2.06-13+deb12u1");
    if (with_tag6) m.mmap(ovmf_e820);
    m.begin(mb2::TAG_BASIC_MEMINFO).u32_(640).u32_(0x7f000).end();
    m.begin(mb2::TAG_FRAMEBUFFER).u64_(0x80000000).u32_(5120).u32_(1280).u32_(800).u8_(32).u8_(1).u16_(0)
        .u8_(16).u8_(8).u8_(8).u8_(8).u8_(0).u8_(8).end();
    m.begin(mb2::TAG_EFI64).u64_(0x7f9ee018).end();
    auto r1 = rsdp_v1_bytes(), r2 = rsdp_v2_bytes();
    m.begin(mb2::TAG_ACPI_OLD).bytes(r1.data(), r1.size()).end();
    m.begin(mb2::TAG_ACPI_NEW).bytes(r2.data(), r2.size()).end();
    if (with_tag17) m.efi_mmap(ovmf_efi);
    return m.finish();
}

void expect_region(const MemRegion &r, u64 base, u64 size, MemType t)
{
    EXPECT_EQ(r.base, base);
    EXPECT_EQ(r.size, size);
    EXPECT_EQ(r.type, t) << mem_type_name(r.type) << " != " << mem_type_name(t);
}

} // namespace

TEST(Multiboot2, GrubBios)
{
    auto r = parse(grub_bios_blob());
    ASSERT_TRUE(r.ok()) << err_name(r.error());
    const BootInfo &bi = *r;

    for (u32 t : {21u, 1u, 2u, 10u, 3u, 6u, 9u, 4u, 5u, 8u, 14u})
        EXPECT_TRUE(bi.has_tag(t)) << t;
    EXPECT_FALSE(bi.has_tag(15));
    EXPECT_FALSE(bi.has_tag(17));
    EXPECT_FALSE(bi.has_tag(64));

    EXPECT_TRUE(bi.has_load_base);
    EXPECT_EQ(bi.load_base, 0x200000u);
    EXPECT_EQ(bi.cmdline_len, strlen("/boot/keel.elf serial=0x3f8 loglevel=debug"));
    EXPECT_EQ(bi.loader_name_len, 9u);

    ASSERT_EQ(bi.module_count, 2u);
    EXPECT_EQ(bi.modules[0].start.raw(), 0x1000000u);
    EXPECT_EQ(bi.modules[0].end.raw(), 0x1234567u);
    EXPECT_EQ(bi.modules[0].len, strlen("/boot/guest.bin root=/dev/vda"));
    EXPECT_EQ(bi.modules[1].len, 0u);
    EXPECT_FALSE(bi.modules_truncated);

    EXPECT_TRUE(bi.has_meminfo);
    EXPECT_EQ(bi.mem_lower_kib, 639u);

    ASSERT_EQ(bi.mem_source, MemSource::e820);
    ASSERT_EQ(bi.mem_count, q35_e820.size());
    for (size_t i = 0; i < q35_e820.size(); i++)
        expect_region(bi.mem[i], q35_e820[i].base, q35_e820[i].len,
                      q35_e820[i].type == 1 ? MemType::usable : MemType::reserved);

    EXPECT_TRUE(bi.fb.present);
    EXPECT_EQ(bi.fb.type, 2);
    EXPECT_EQ(bi.fb.addr, 0xb8000u);
    EXPECT_EQ(bi.fb.width, 80u);
    EXPECT_EQ(bi.fb.height, 25u);
    EXPECT_EQ(bi.fb.pitch, 160u);
    EXPECT_EQ(bi.fb.bpp, 16);

    EXPECT_FALSE(bi.has_efi64_st);
    EXPECT_EQ(bi.rsdp_v1_len, 20u);
    EXPECT_EQ(bi.rsdp_v2, nullptr);
    usize len = 0;
    EXPECT_EQ(bi.rsdp(&len), bi.rsdp_v1);
    EXPECT_EQ(len, 20u);

    // What the frame allocator gets.
    MemRegion out[32];
    bool trunc = true;
    usize n = sanitize_memory_map(bi.mem, bi.mem_count, out, 32, &trunc);
    EXPECT_FALSE(trunc);
    ASSERT_EQ(n, 10u);
    expect_region(out[0], 0x0, 0x9f000, MemType::usable);              // trimmed from 0x9fc00
    expect_region(out[1], 0x9fc00, 0x400, MemType::reserved);
    expect_region(out[2], 0xf0000, 0x10000, MemType::reserved);
    expect_region(out[3], 0x100000, 0x7fee0000, MemType::usable);
    expect_region(out[4], 0x7ffe0000, 0x20000, MemType::reserved);
    expect_region(out[5], 0xb0000000, 0x10000000, MemType::reserved);
    expect_region(out[6], 0xfed1c000, 0x4000, MemType::reserved);
    expect_region(out[7], 0xfeffc000, 0x4000, MemType::reserved);
    expect_region(out[8], 0xfffc0000, 0x40000, MemType::reserved);
    expect_region(out[9], 0x100000000, 0x100000000, MemType::usable);
}

TEST(Multiboot2, GrubUefiPrefersTag6)
{
    auto r = parse(grub_uefi_blob());
    ASSERT_TRUE(r.ok()) << err_name(r.error());
    const BootInfo &bi = *r;

    EXPECT_TRUE(bi.has_tag(6));
    EXPECT_TRUE(bi.has_tag(17));
    EXPECT_FALSE(bi.has_load_base);
    EXPECT_EQ(bi.cmdline_len, 9u);     // (the blob is gone: no dereferencing)

    ASSERT_EQ(bi.mem_source, MemSource::e820);
    // Type 20 (reserved) and the following type 2 are contiguous: merged.
    ASSERT_EQ(bi.mem_count, ovmf_e820.size() - 1);
    expect_region(bi.mem[0], 0x0, 0xa0000, MemType::usable);
    expect_region(bi.mem[2], 0x800000, 0x8000, MemType::acpi_nvs);
    expect_region(bi.mem[6], 0x7e8ef000, 0x200000, MemType::reserved);
    expect_region(bi.mem[7], 0x7eaef000, 0x80000, MemType::acpi_reclaim);
    expect_region(bi.mem[8], 0x7eb6f000, 0x80000, MemType::acpi_nvs);

    EXPECT_TRUE(bi.fb.present);
    EXPECT_EQ(bi.fb.type, 1);
    EXPECT_EQ(bi.fb.addr, 0x80000000u);
    EXPECT_EQ(bi.fb.pitch, 5120u);
    EXPECT_EQ(bi.fb.width, 1280u);
    EXPECT_EQ(bi.fb.bpp, 32);
    EXPECT_EQ(bi.fb.red_pos, 16);
    EXPECT_EQ(bi.fb.green_pos, 8);
    EXPECT_EQ(bi.fb.blue_pos, 0);
    EXPECT_EQ(bi.fb.blue_size, 8);

    EXPECT_TRUE(bi.has_efi64_st);
    EXPECT_EQ(bi.efi64_system_table, 0x7f9ee018u);
    EXPECT_FALSE(bi.efi_boot_services);

    usize len = 0;
    const u8 *rsdp = bi.rsdp(&len);
    EXPECT_EQ(rsdp, bi.rsdp_v2);
    EXPECT_EQ(len, 36u);
    EXPECT_EQ(bi.rsdp_v1_len, 20u);
}

TEST(Multiboot2, EfiMapOnly)
{
    auto r = parse(grub_uefi_blob(false, true));
    ASSERT_TRUE(r.ok()) << err_name(r.error());
    const BootInfo &bi = *r;
    ASSERT_EQ(bi.mem_source, MemSource::efi);

    // BootServicesCode, Conventional: usable; NVS; Conventional; NVS;
    // LoaderData+BootServicesData (contiguous, merged); RuntimeCode+Data
    // (merged); reclaim; NVS; LoaderCode; MMIO; unusable; persistent; conventional.
    ASSERT_EQ(bi.mem_count, 14u);
    expect_region(bi.mem[0], 0x0, 0xa0000, MemType::usable);
    expect_region(bi.mem[1], 0x100000, 0x700000, MemType::usable);
    expect_region(bi.mem[2], 0x800000, 0x8000, MemType::acpi_nvs);
    expect_region(bi.mem[3], 0x808000, 0x8000, MemType::usable);
    expect_region(bi.mem[4], 0x810000, 0xf0000, MemType::acpi_nvs);
    expect_region(bi.mem[5], 0x900000, 0x7dfef000, MemType::usable);
    expect_region(bi.mem[6], 0x7e8ef000, 0x200000, MemType::reserved);
    expect_region(bi.mem[7], 0x7eaef000, 0x80000, MemType::acpi_reclaim);
    expect_region(bi.mem[8], 0x7eb6f000, 0x80000, MemType::acpi_nvs);
    expect_region(bi.mem[9], 0x7ebef000, 0x1389000, MemType::usable);
    expect_region(bi.mem[10], 0xb0000000, 0x10000000, MemType::reserved);
    expect_region(bi.mem[11], 0xc0000000, 0x10000, MemType::bad);
    expect_region(bi.mem[12], 0xd0000000, 0x10000, MemType::reserved);
    expect_region(bi.mem[13], 0x100000000, 0x80000000, MemType::usable);
}

TEST(Multiboot2, EfiBootServicesNotExited)
{
    // Tag 18 after tag 17: the map is interpreted once all tags are seen.
    auto v = Mbi().efi_mmap({{3, 0x0, 0x10, 0}, {2, 0x10000, 0x10, 0}, {7, 0x20000, 0x10, 0}})
                 .begin(mb2::TAG_EFI_BS).end().finish();
    auto r = parse(v);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->efi_boot_services);
    ASSERT_EQ(r->mem_count, 2u);
    expect_region(r->mem[0], 0x0, 0x20000, MemType::reserved);
    expect_region(r->mem[1], 0x20000, 0x10000, MemType::usable);
}

TEST(Multiboot2, EfiMapHugePageCount)
{
    auto r = parse(Mbi().efi_mmap({{7, 0x1000, 1ull << 60, 0}}).finish());
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->mem_count, 1u);
    EXPECT_EQ(r->mem[0].size, ~0ull);   // saturated; sanitize clips at 2^64
    MemRegion out[2];
    ASSERT_EQ(sanitize_memory_map(r->mem, 1, out, 2), 1u);
    expect_region(out[0], 0x1000, 0 - 0x1000ull, MemType::usable);
}

TEST(Multiboot2, LargerEntrySizeAndPartialTrailer)
{
    // entry_size 32 (a hypothetical version 1 with more fields) is fine.
    auto r = parse(Mbi().mmap({{0, 0x1000, 1}, {0x1000, 0x1000, 5}}, 32).finish());
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->mem_count, 2u);
    expect_region(r->mem[1], 0x1000, 0x1000, MemType::bad);

    // A partial trailing entry is ignored.
    Mbi m;
    m.begin(mb2::TAG_MMAP).u32_(24).u32_(0).u64_(0x1000).u64_(0x1000).u32_(1).u32_(0).u64_(0x5000).end();
    r = parse(m.finish());
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->mem_count, 1u);
}

TEST(Multiboot2, TooManyModulesAndRegions)
{
    Mbi m;
    for (u32 i = 0; i < BootInfo::MAX_MODULES + 4; i++)
        m.begin(mb2::TAG_MODULE).u32_(i << 20).u32_((i << 20) + 100).str("m" + std::to_string(i)).end();
    std::vector<Mbi::E> es;
    for (u64 i = 0; i < 200; i++)       // alternating types: nothing merges
        es.push_back({i << 12, 0x1000, i % 2 ? 2u : 1u});
    m.mmap(es);
    auto r = parse(m.finish());
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->module_count, BootInfo::MAX_MODULES);
    EXPECT_TRUE(r->modules_truncated);
    EXPECT_EQ(r->modules[15].len, 3u);
    EXPECT_EQ(r->mem_count, BootInfo::MAX_MEM);
    EXPECT_TRUE(r->mem_truncated);
    EXPECT_EQ(r->mem[127].base, 127u << 12);
}

TEST(Multiboot2, MergesContiguousSameType)
{
    std::vector<Mbi::E> es;
    for (u64 i = 0; i < 300; i++)
        es.push_back({i << 12, 0x1000, 1});
    auto r = parse(Mbi().mmap(es).finish());
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->mem_count, 1u);
    expect_region(r->mem[0], 0, 300 << 12, MemType::usable);
    EXPECT_FALSE(r->mem_truncated);
}

TEST(Multiboot2, MinimalAndEmptyMap)
{
    auto r = parse(Mbi().finish());
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->tags_seen, 0u);
    EXPECT_EQ(r->mem_source, MemSource::none);
    EXPECT_EQ(r->cmdline, nullptr);

    // 0-length mmap: valid, but no memory; the kernel decides what that means.
    r = parse(Mbi().mmap({}).finish());
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->has_tag(6));
    EXPECT_EQ(r->mem_count, 0u);
    EXPECT_EQ(r->mem_source, MemSource::none);

    // An empty tag 6 falls back to tag 17.
    r = parse(Mbi().mmap({}).efi_mmap({{7, 0, 16, 0}}).finish());
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->mem_source, MemSource::efi);
    EXPECT_EQ(r->mem_count, 1u);
}

TEST(Multiboot2, EmptyCmdline)
{
    auto r = parse(Mbi().string_tag(1, "").finish());
    ASSERT_TRUE(r.ok());
    ASSERT_NE(r->cmdline, nullptr);
    EXPECT_EQ(r->cmdline_len, 0u);
}

TEST(Multiboot2, UnknownTagsSkipped)
{
    Mbi m;
    m.begin(999).u32_(1).u32_(2).u8_(3).end();      // odd size: padding follows
    m.begin(13).u8_(3).u8_(0).end();                 // SMBIOS, ignored
    m.string_tag(1, "x");
    auto r = parse(m.finish());
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->cmdline_len, 1u);
    EXPECT_TRUE(r->has_tag(13));
}

// --- malformed blobs -------------------------------------------------------

TEST(Multiboot2Bad, NullAndTiny)
{
    EXPECT_EQ(parse_multiboot2(nullptr, 100).error(), Err::invalid);
    u8 tiny[8] = {8, 0, 0, 0, 0, 0, 0, 0};
    EXPECT_EQ(parse(std::vector<u8>(tiny, tiny + 8)).error(), Err::invalid);   // total < 16
    EXPECT_EQ(parse(std::vector<u8>(tiny, tiny + 4)).error(), Err::invalid);   // avail < 8
}

TEST(Multiboot2Bad, TotalSizeBeyondAvail)
{
    auto v = grub_bios_blob();
    EXPECT_EQ(parse(v, v.size() - 1).error(), Err::invalid);
    // total_size claims more than the buffer holds.
    Mbi m;
    auto w = m.finish();
    w[0] = 0xff; w[1] = 0xff;
    EXPECT_EQ(parse(w).error(), Err::invalid);
}

TEST(Multiboot2Bad, TruncatedTotalSize)
{
    // total_size cuts the blob in the middle of the memory map tag.
    auto v = grub_bios_blob();
    for (u32 cut = 16; cut < v.size(); cut += 4) {
        auto w = v;
        for (int i = 0; i < 4; i++) w[i] = u8(cut >> 8 * i);
        EXPECT_EQ(parse(w).error(), Err::invalid) << cut;
    }
}

TEST(Multiboot2Bad, TagSizeBelowHeader)
{
    for (u32 sz : {0u, 1u, 7u}) {
        Mbi m;
        m.begin(5).u32_(0).end();
        auto v = m.finish();
        v[12] = u8(sz);
        EXPECT_EQ(parse(v).error(), Err::invalid) << sz;
    }
    // End tag with size 0 (would loop forever if accepted as "next = off").
    auto v = Mbi().finish();
    v[12] = 0;
    EXPECT_EQ(parse(v).error(), Err::invalid);
}

TEST(Multiboot2Bad, TagRunningPastEnd)
{
    auto v = Mbi().string_tag(1, "hello").finish();
    v[12] = 200;        // cmdline tag claims 200 bytes
    EXPECT_EQ(parse(v).error(), Err::invalid);
    v[12] = 0xff; v[13] = 0xff; v[14] = 0xff; v[15] = 0xff;
    EXPECT_EQ(parse(v).error(), Err::invalid);
}

TEST(Multiboot2Bad, MissingEndTag)
{
    Mbi m;
    m.string_tag(1, "abc");
    auto v = m.raw();
    while (v.size() % 8) v.push_back(0);
    for (int i = 0; i < 4; i++) v[i] = u8(v.size() >> 8 * i);
    EXPECT_EQ(parse(v).error(), Err::invalid);

    // Room for part of an end tag only.
    v.push_back(0); v.push_back(0); v.push_back(0); v.push_back(0);
    for (int i = 0; i < 4; i++) v[i] = u8(v.size() >> 8 * i);
    EXPECT_EQ(parse(v).error(), Err::invalid);
}

TEST(Multiboot2Bad, MmapEntrySize)
{
    EXPECT_EQ(parse(Mbi().mmap({{0, 0x1000, 1}}, 16).finish()).error(), Err::invalid);  // too small
    EXPECT_EQ(parse(Mbi().mmap({}, 0).finish()).error(), Err::invalid);
    EXPECT_EQ(parse(Mbi().mmap({}, 0x80000000).finish()).error(), Err::invalid);        // huge
    EXPECT_EQ(parse(Mbi().mmap({}, 0xffffffff).finish()).error(), Err::invalid);
    EXPECT_EQ(parse(Mbi().efi_mmap({{7, 0, 1, 0}}, 24).finish()).error(), Err::invalid);
    EXPECT_EQ(parse(Mbi().efi_mmap({}, 0xfffffff8).finish()).error(), Err::invalid);
    // A broken tag 17 is an error even when tag 6 is used.
    EXPECT_EQ(parse(Mbi().mmap({{0, 0x1000, 1}}).efi_mmap({}, 8).finish()).error(), Err::invalid);
}

TEST(Multiboot2Bad, UnterminatedStrings)
{
    Mbi a;
    a.begin(1).u8_('a').u8_('b').u8_('c').end();
    EXPECT_EQ(parse(a.finish()).error(), Err::invalid);

    // NUL only in the padding after the tag: still unterminated.
    Mbi b;
    b.begin(2).u8_('x').end();
    EXPECT_EQ(parse(b.finish()).error(), Err::invalid);

    Mbi c;
    c.begin(3).u32_(0x1000).u32_(0x2000).u8_('m').end();
    EXPECT_EQ(parse(c.finish()).error(), Err::invalid);
}

TEST(Multiboot2Bad, ShortKnownTags)
{
    for (u32 type : {1u, 2u, 3u, 4u, 6u, 8u, 12u, 14u, 15u, 17u, 21u}) {
        Mbi m;
        m.begin(type).end();        // header only
        EXPECT_EQ(parse(m.finish()).error(), Err::invalid) << type;
    }
}

TEST(Multiboot2Bad, ModuleEndBeforeStart)
{
    Mbi m;
    m.begin(3).u32_(0x2000).u32_(0x1000).str("m").end();
    EXPECT_EQ(parse(m.finish()).error(), Err::invalid);
}

TEST(Multiboot2Bad, RandomCorruptionNeverCrashes)
{
    std::mt19937_64 rng(0x6b65656c);
    const std::vector<u8> seeds[] = {grub_bios_blob(), grub_uefi_blob(), grub_uefi_blob(false)};
    int ok = 0;
    for (int iter = 0; iter < 20000; iter++) {
        auto v = seeds[iter % 3];
        int flips = 1 + int(rng() % 6);
        for (int i = 0; i < flips; i++) {
            size_t at = rng() % v.size();
            switch (rng() % 3) {
            case 0: v[at] ^= u8(1u << (rng() % 8)); break;
            case 1: v[at] = u8(rng()); break;
            case 2: v[at] = (rng() & 1) ? 0xff : 0; break;
            }
        }
        if (rng() % 8 == 0)
            v.resize(rng() % v.size());
        Blob b(v);
        BootInfo bi;
        Status s = parse_multiboot2(b.p.get(), b.n, bi);
        if (!s)
            continue;
        ok++;
        ASSERT_LE(bi.mem_count, BootInfo::MAX_MEM);
        ASSERT_LE(bi.module_count, BootInfo::MAX_MODULES);
        const u8 *lo = b.p.get(), *hi = lo + b.n;
        auto inside = [&](const void *p, usize n) {
            auto c = static_cast<const u8 *>(p);
            return c >= lo && c + n < hi;       // +NUL
        };
        if (bi.cmdline) ASSERT_TRUE(inside(bi.cmdline, bi.cmdline_len));
        for (usize i = 0; i < bi.module_count; i++)
            ASSERT_TRUE(inside(bi.modules[i].string, bi.modules[i].len));
        if (bi.rsdp_v2) ASSERT_TRUE(bi.rsdp_v2 >= lo && bi.rsdp_v2 + bi.rsdp_v2_len <= hi);
        MemRegion out[BootInfo::MAX_MEM];
        usize n = sanitize_memory_map(bi.mem, bi.mem_count, out, BootInfo::MAX_MEM);
        for (usize i = 0; i + 1 < n; i++)
            ASSERT_LE(out[i].base + out[i].size - 1, out[i + 1].base - 1);
    }
    EXPECT_GT(ok, 100);     // the corpus is not rejected wholesale
}

// --- sanitize_memory_map ---------------------------------------------------

namespace {
std::vector<MemRegion> sanitize(const std::vector<MemRegion> &in, usize cap = 64, bool *trunc = nullptr)
{
    std::vector<MemRegion> out(cap);
    usize n = sanitize_memory_map(in.data(), in.size(), out.data(), cap, trunc);
    out.resize(n);
    return out;
}
constexpr MemType U = MemType::usable, R = MemType::reserved, A = MemType::acpi_reclaim,
                  N = MemType::acpi_nvs, B = MemType::bad;
} // namespace

TEST(Sanitize, Empty)
{
    EXPECT_EQ(sanitize_memory_map(nullptr, 0, nullptr, 0), 0u);
    EXPECT_TRUE(sanitize({{0x1000, 0, U}, {0, 0, R}}).empty());
}

TEST(Sanitize, UnsortedOverlapping)
{
    auto o = sanitize({
        {0x100000, 0x100000, U},
        {0x0, 0x100000, U},
        {0x180000, 0x1000, R},      // hole punched into usable
        {0x1ff800, 0x10000, A},     // overlaps the end, unaligned
    });
    ASSERT_EQ(o.size(), 4u);
    expect_region(o[0], 0x0, 0x180000, U);             // two usable merged
    expect_region(o[1], 0x180000, 0x1000, R);
    expect_region(o[2], 0x181000, 0x7e000, U);         // 0x1ff800 rounded down
    expect_region(o[3], 0x1ff800, 0x10000, A);
}

TEST(Sanitize, Priorities)
{
    // Four types stacked over [0x10000, 0x20000).
    auto o = sanitize({
        {0x10000, 0x10000, A},
        {0x12000, 0x1000, R},
        {0x11000, 0x4000, U},
        {0x13000, 0x1000, N},
        {0x13800, 0x100, B},
        {0x1f000, 0x1000, R},
        {0x1f000, 0x1000, A},
    });
    ASSERT_EQ(o.size(), 7u);
    expect_region(o[0], 0x10000, 0x2000, A);           // usable loses to reclaim
    expect_region(o[1], 0x12000, 0x1000, R);
    expect_region(o[2], 0x13000, 0x800, N);
    expect_region(o[3], 0x13800, 0x100, B);
    expect_region(o[4], 0x13900, 0x700, N);
    expect_region(o[5], 0x14000, 0xb000, A);
    expect_region(o[6], 0x1f000, 0x1000, R);           // reserved beats reclaim
}

TEST(Sanitize, AlignmentTrimming)
{
    auto o = sanitize({
        {0x1234, 0x4444, U},        // -> [0x2000, 0x5000)
        {0x10800, 0x800, U},        // sub-page: dropped
        {0x20100, 0xf00, U},        // ends aligned, starts unaligned: dropped
        {0x30000, 0x1fff, U},       // -> [0x30000, 0x31000)
        {0x40123, 0x10, R},         // non-usable kept as is
    });
    ASSERT_EQ(o.size(), 3u);
    expect_region(o[0], 0x2000, 0x3000, U);
    expect_region(o[1], 0x30000, 0x1000, U);
    expect_region(o[2], 0x40123, 0x10, R);
}

TEST(Sanitize, MergeAdjacentThenTrim)
{
    // Two unaligned halves of one page merge before trimming, so the page survives.
    auto o = sanitize({{0x1000, 0x800, U}, {0x1800, 0x800, U}, {0x2000, 0x1000, R}, {0x3000, 0x10, R}});
    ASSERT_EQ(o.size(), 2u);
    expect_region(o[0], 0x1000, 0x1000, U);
    expect_region(o[1], 0x2000, 0x1010, R);
}

TEST(Sanitize, Overflow)
{
    auto o = sanitize({
        {0xfffffffffffff000, 0x10000, R},   // would wrap: clipped at 2^64
        {0xffffffffffff0000, 0x20000, U},
        {0xffffffffffffffff, 5, B},
    });
    ASSERT_EQ(o.size(), 3u);
    expect_region(o[0], 0xffffffffffff0000, 0xf000, U);
    expect_region(o[1], 0xfffffffffffff000, 0xfff, R);
    expect_region(o[2], 0xffffffffffffffff, 1, B);

    // Usable right up to 2^64.
    o = sanitize({{0xfffffffffff00000, ~0ull, U}});
    ASSERT_EQ(o.size(), 1u);
    expect_region(o[0], 0xfffffffffff00000, 0x100000, U);

    // The whole address space does not fit in a u64 size.
    o = sanitize({{0, ~0ull, U}, {0xffffffffffffffff, 1, U}});
    ASSERT_EQ(o.size(), 1u);
    expect_region(o[0], 0, 0xfffffffffffff000, U);
    o = sanitize({{0, ~0ull, R}, {5, ~0ull, R}});
    ASSERT_EQ(o.size(), 1u);
    expect_region(o[0], 0, ~0ull, R);

    // Usable starting in the last page: nothing left after rounding up.
    EXPECT_TRUE(sanitize({{0xfffffffffffff001, 0x10, U}}).empty());
}

TEST(Sanitize, Truncation)
{
    std::vector<MemRegion> in;
    for (u64 i = 0; i < 10; i++)
        in.push_back({(9 - i) << 20, 0x1000, i % 2 ? R : U});
    bool trunc = false;
    auto o = sanitize(in, 4, &trunc);
    EXPECT_TRUE(trunc);
    ASSERT_EQ(o.size(), 4u);
    for (u64 i = 0; i < 4; i++)
        EXPECT_EQ(o[i].base, i << 20);     // the lowest ones are kept
    o = sanitize(in, 10, &trunc);
    EXPECT_FALSE(trunc);
    EXPECT_EQ(o.size(), 10u);
}

TEST(Sanitize, MatchesBruteForce)
{
    // Random small maps on a 256-byte grid over 256 KiB, against a per-unit
    // reference: strongest type wins, runs merge, usable runs trimmed to pages.
    std::mt19937_64 rng(42);
    constexpr u64 UNIT = 256, UNITS = 1024;
    const int rank[] = {0, 2, 1, 3, 4};                 // indexed by MemType
    const MemType types[] = {U, R, A, N, B};
    for (int iter = 0; iter < 3000; iter++) {
        std::vector<MemRegion> in;
        int n = 1 + int(rng() % 12);
        for (int i = 0; i < n; i++) {
            u64 b = rng() % UNITS, s = rng() % 8 == 0 ? 0 : 1 + rng() % (UNITS / 4);
            if (b + s > UNITS) s = UNITS - b;
            MemType t = rng() % 3 ? U : types[rng() % 5];
            in.push_back({b * UNIT, s * UNIT, t});
        }
        int ref[UNITS];
        for (auto &x : ref) x = -1;
        for (auto &r : in)
            for (u64 u = r.base / UNIT; u < (r.base + r.size) / UNIT; u++)
                ref[u] = std::max(ref[u], rank[int(r.type)]);
        std::vector<MemRegion> expect;
        for (u64 u = 0; u < UNITS;) {
            if (ref[u] < 0) { u++; continue; }
            u64 v = u;
            while (v < UNITS && ref[v] == ref[u]) v++;
            MemType t = types[0];
            for (int k = 0; k < 5; k++) if (rank[k] == ref[u]) t = types[k];
            u64 b = u * UNIT, e = v * UNIT;
            if (t == U) { b = align_up(b, 4096); e = align_down(e, 4096); }
            if (e > b) expect.push_back({b, e - b, t});
            u = v;
        }
        auto got = sanitize(in, 2 * UNITS);
        ASSERT_EQ(got.size(), expect.size()) << iter;
        for (size_t i = 0; i < got.size(); i++) {
            ASSERT_EQ(got[i].base, expect[i].base) << iter << " " << i;
            ASSERT_EQ(got[i].size, expect[i].size) << iter << " " << i;
            ASSERT_EQ(got[i].type, expect[i].type) << iter << " " << i;
        }
    }
}

// kernel/storage/gpt: GPT images built here, then corrupted one way at a time.
#include <gtest/gtest.h>

#include <string>

#include "kernel/lib/crc32.hpp"
#include "kernel/storage/gpt.hpp"
#include "tests/unit/storage/gpt_image.hpp"

namespace gpt {
namespace {

using test::Entry;
using test::guid_of;
using test::Image;
using test::LINUX_FS;

StrView sv(const char *s) { return StrView{s, strlen(s)}; }

std::vector<Entry> three()
{
    return {
        {1, guid_of(LINUX_FS), guid_of("11111111-2222-3333-4444-555555555555"), 40, 99, "boot"},
        {2, guid_of(LINUX_FS), guid_of("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"), 100, 899, "web"},
        {4, guid_of(LINUX_FS), guid_of("01234567-89ab-cdef-0123-456789abcdef"), 900, 999, "db"},
    };
}

struct Gpt : ::testing::Test {
    Image img{512, 2048};
    std::vector<u8> scratch = std::vector<u8>(4096);
    Table t;
    Report why;

    Status parse_it() { return parse(img, scratch.data(), t, &why); }
    std::string msg() const { return why.msg; }
};

TEST(Crc32, CheckValues)
{
    EXPECT_EQ(crc32("123456789", 9), 0xcbf43926u);
    EXPECT_EQ(crc32("", 0), 0u);
    EXPECT_EQ(crc32("6789", 4, crc32("12345", 5)), 0xcbf43926u);   // continued
    EXPECT_EQ(crc32("The quick brown fox jumps over the lazy dog", 43), 0x414fa339u);
}

TEST(Guid, ParseAndFormat)
{
    Guid g;
    ASSERT_TRUE(parse_guid(sv("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"), g));   // the EFI system partition
    const u8 want[16] = {0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b};
    EXPECT_EQ(memcmp(g.b, want, 16), 0);
    char text[37];
    format_guid(g, text);
    EXPECT_STREQ(text, "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
    Guid h;
    ASSERT_TRUE(parse_guid(sv(text), h));
    EXPECT_TRUE(h == g);
    EXPECT_FALSE(g.zero());
    EXPECT_TRUE(Guid{}.zero());

    Guid untouched = g;
    EXPECT_FALSE(parse_guid(sv("c12a7328-f81f-11d2-ba4b-00a0c93ec93"), untouched));    // 35
    EXPECT_FALSE(parse_guid(sv("c12a7328-f81f-11d2-ba4b-00a0c93ec93bb"), untouched));  // 37
    EXPECT_FALSE(parse_guid(sv("c12a7328f-81f-11d2-ba4b-00a0c93ec93b"), untouched));   // dash moved
    EXPECT_FALSE(parse_guid(sv("g12a7328-f81f-11d2-ba4b-00a0c93ec93b"), untouched));   // not hex
    EXPECT_FALSE(parse_guid(sv("c12a7328-f81f-11d2-ba4b+00a0c93ec93b"), untouched));
    EXPECT_FALSE(parse_guid(StrView{}, untouched));
    EXPECT_TRUE(untouched == g);
}

TEST_F(Gpt, Valid)
{
    img.write(three());
    ASSERT_TRUE(parse_it().ok()) << msg();
    EXPECT_FALSE(t.used_backup);
    EXPECT_EQ(msg(), "");
    EXPECT_EQ(t.entry_count, 128u);
    EXPECT_EQ(t.entry_size, 128u);
    EXPECT_EQ(t.first_usable, 34u);
    EXPECT_EQ(t.last_usable, 2048u - 34);
    EXPECT_EQ(t.disk.b[0], 0xd0);
    ASSERT_EQ(t.n, 3u);
    EXPECT_EQ(t.part[0].index, 1u);
    EXPECT_EQ(t.part[1].index, 2u);
    EXPECT_EQ(t.part[2].index, 4u);                  // slot 3 is empty: numbers are slots
    EXPECT_EQ(t.part[1].first_lba, 100u);
    EXPECT_EQ(t.part[1].blocks(), 800u);
    char name[37];
    t.part[1].name_ascii(name);
    EXPECT_STREQ(name, "web");
    EXPECT_TRUE(t.part[0].type == guid_of(LINUX_FS));

    auto p = by_index(t, 2);                         // nvme0n1p2
    ASSERT_TRUE(p.ok());
    EXPECT_EQ((*p)->first_lba, 100u);
    EXPECT_EQ(by_index(t, 3).error(), Err::not_found);
    EXPECT_EQ(by_index(t, 0).error(), Err::not_found);
    p = by_name(t, sv("db"));
    ASSERT_TRUE(p.ok());
    EXPECT_EQ((*p)->index, 4u);
    EXPECT_EQ(by_name(t, sv("we")).error(), Err::not_found);    // a prefix is not the name
    EXPECT_EQ(by_name(t, sv("webs")).error(), Err::not_found);
    EXPECT_EQ(by_name(t, sv("WEB")).error(), Err::not_found);
    EXPECT_EQ(by_name(t, sv("")).error(), Err::not_found);
    p = by_guid(t, guid_of("AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE"));
    ASSERT_TRUE(p.ok());
    EXPECT_EQ((*p)->index, 2u);
    EXPECT_EQ(by_guid(t, guid_of(LINUX_FS)).error(), Err::not_found);   // a type is not a unique GUID
}

TEST_F(Gpt, LargeBlocksAndSmallArrays)
{
    Image big(4096, 2048);
    big.write(three(), 32, 256);                     // 32 entries of 256 bytes: two blocks
    ASSERT_TRUE(parse(big, scratch.data(), t, &why).ok()) << why.msg;
    EXPECT_EQ(t.n, 3u);
    EXPECT_EQ(t.first_usable, 4u);
    EXPECT_EQ(t.entry_size, 256u);

    Image odd(512, 2048);                            // an array that ends mid-block: 5 entries
    odd.write(three(), 5);
    ASSERT_TRUE(parse(odd, scratch.data(), t, &why).ok()) << why.msg;
    EXPECT_EQ(t.n, 3u);
}

TEST_F(Gpt, LongNames)
{
    auto e = three();
    e[0].name = std::string(36, 'x');
    e[1].name = std::string(35, 'x');
    img.write(e);
    ASSERT_TRUE(parse_it().ok());
    auto p = by_name(t, StrView{e[0].name.data(), 36});
    ASSERT_TRUE(p.ok());
    EXPECT_EQ((*p)->index, 1u);
    p = by_name(t, StrView{e[1].name.data(), 35});
    ASSERT_TRUE(p.ok());
    EXPECT_EQ((*p)->index, 2u);
    std::string too_long(37, 'x');
    EXPECT_EQ(by_name(t, StrView{too_long.data(), 37}).error(), Err::not_found);
    char name[37];
    t.part[0].name_ascii(name);
    EXPECT_EQ(std::string(name), e[0].name);
}

TEST_F(Gpt, AmbiguousLookupsRefused)
{
    auto e = three();
    e[2].name = "web";
    e[2].unique = e[1].unique;
    img.write(e);
    ASSERT_TRUE(parse_it().ok());
    EXPECT_EQ(by_name(t, sv("web")).error(), Err::exists);
    EXPECT_EQ(by_guid(t, e[1].unique).error(), Err::exists);
    EXPECT_TRUE(by_name(t, sv("boot")).ok());
}

TEST_F(Gpt, PrimaryHeaderCrcBadUsesBackup)
{
    img.write(three());
    img.block(1)[40] ^= 1;                           // FirstUsableLBA changed, CRC stale
    ASSERT_TRUE(parse_it().ok()) << msg();
    EXPECT_TRUE(t.used_backup);
    EXPECT_NE(msg().find("primary header: CRC"), std::string::npos) << msg();
    EXPECT_NE(msg().find("using the backup"), std::string::npos) << msg();
    EXPECT_EQ(t.n, 3u);
    EXPECT_EQ(t.first_usable, 34u);
}

TEST_F(Gpt, PrimaryEntriesCrcBadUsesBackup)
{
    img.write(three());
    img.block(2)[128 + 56] = 'W';                    // "web" -> "Web" in the primary array only
    ASSERT_TRUE(parse_it().ok()) << msg();
    EXPECT_TRUE(t.used_backup);
    EXPECT_NE(msg().find("primary entries: CRC"), std::string::npos) << msg();
    EXPECT_TRUE(by_name(t, sv("web")).ok());
}

TEST_F(Gpt, CorruptArrayReportedAsCorrupt)
{
    img.write(three());
    img.block(2)[128 + 40 + 7] = 0x80;               // "web"'s last LBA far off the disk, CRC stale
    ASSERT_TRUE(parse_it().ok()) << msg();
    EXPECT_TRUE(t.used_backup);
    EXPECT_NE(msg().find("primary entries: CRC"), std::string::npos) << msg();   // not "outside the usable"
}

TEST_F(Gpt, PrimaryMissingUsesBackup)
{
    img.write(three());
    memset(img.block(1), 0, 512);
    ASSERT_TRUE(parse_it().ok());
    EXPECT_TRUE(t.used_backup);
    EXPECT_NE(msg().find("no EFI PART signature"), std::string::npos) << msg();

    img.write(three());
    img.fail_lba = 1;                                // an unreadable primary
    ASSERT_TRUE(parse_it().ok());
    EXPECT_TRUE(t.used_backup);
}

TEST_F(Gpt, BothCopiesBad)
{
    img.write(three());
    img.block(1)[40] ^= 1;
    img.block(2047)[40] ^= 1;
    EXPECT_EQ(parse_it().error(), Err::bad_checksum);
    EXPECT_NE(msg().find("primary header: CRC"), std::string::npos) << msg();
    EXPECT_NE(msg().find("backup header: CRC"), std::string::npos) << msg();
    EXPECT_EQ(t.n, 0u);

    img.write(three());
    memset(img.block(1), 0, 512);
    img.block(2047)[0] = 'X';
    EXPECT_EQ(parse_it().error(), Err::invalid);
}

TEST_F(Gpt, NoProtectiveMbr)
{
    img.write(three());
    img.block(0)[446 + 4] = 0x83;                    // an MBR partition, not GPT's
    EXPECT_EQ(parse_it().error(), Err::invalid);
    EXPECT_NE(msg().find("protective MBR"), std::string::npos);
    img.block(0)[446 + 16 + 4] = 0xee;               // a hybrid MBR: 0xee in another record
    EXPECT_TRUE(parse_it().ok());
    img.block(0)[511] = 0;
    EXPECT_EQ(parse_it().error(), Err::invalid);
}

TEST_F(Gpt, OverlapRefused)
{
    auto e = three();
    e[2].first = 899;                                // shares LBA 899 with "web"
    img.write(e);
    EXPECT_EQ(parse_it().error(), Err::invalid);
    EXPECT_NE(msg().find("partitions 2 and 4 overlap"), std::string::npos) << msg();
    EXPECT_EQ(t.n, 0u);
}

TEST_F(Gpt, EntriesOutsideUsableRangeRefused)
{
    auto e = three();
    e[0].first = 33;                                 // inside the primary array
    img.write(e);
    EXPECT_EQ(parse_it().error(), Err::invalid);
    EXPECT_NE(msg().find("outside the usable"), std::string::npos) << msg();

    e = three();
    e[2].last = 2048 - 33;                           // one past last usable
    img.write(e);
    EXPECT_EQ(parse_it().error(), Err::invalid);

    e = three();
    e[1].first = 500;
    e[1].last = 499;                                 // ends before it starts
    img.write(e);
    EXPECT_EQ(parse_it().error(), Err::invalid);
}

TEST_F(Gpt, AbsurdHeadersRefused)
{
    struct Case {
        u32 off, value, size;
        const char *what;
    } cases[] = {
        {80, 100000, 4, "entries"},                  // entry count
        {80, 0, 4, "entries"},
        {84, 100, 4, "entry size"},                  // not 128 * 2^n
        {84, 1024, 4, "entry size"},                 // larger than a block
        {12, 600, 4, "size"},                        // header larger than a block
        {12, 91, 4, "size"},
        {8, 0x00020000, 4, "revision"},
        {24, 5, 8, "MyLBA"},
        {40, 1, 8, "usable"},                        // usable range over the primary header
        {48, 2047, 8, "usable"},                     // ... over the backup header
        {48, 10, 8, "usable"},                       // last < first
        {72, 1, 8, "entry array"},                   // array over the header
        {72, 20, 8, "entry array"},                  // array into the usable range
        {72, 2040, 8, "entry array"},                // array past the disk's end
        {72, ~u32(0), 4, "entry array"},
    };
    for (const Case &k : cases) {
        img.write(three());
        for (u64 lba : {u64(1), u64(2047)}) {        // the same lie in both copies
            u8 *h = img.block(lba);
            if (k.off == 24) store_le(h + 24, lba + 5, 8);
            else if (k.off == 72 && k.value == 1) store_le(h + 72, lba == 1 ? 1 : 2047, 8);
            else store_le(h + k.off, k.value, k.size);
            img.reseal(lba);
        }
        EXPECT_EQ(parse_it().error(), Err::invalid) << k.what << " " << k.off;
        EXPECT_NE(msg().find(k.what), std::string::npos) << msg();
    }
}

TEST_F(Gpt, TooManyPartitions)
{
    std::vector<Entry> e;
    for (u32 i = 0; i < MAX_PARTITIONS + 1; i++)
        e.push_back({i + 1, guid_of(LINUX_FS), guid_of("11111111-2222-3333-4444-555555555555"), 100 + i, 100 + i, "p"});
    img.write(e, 256);
    EXPECT_EQ(parse_it().error(), Err::unsupported);
    e.pop_back();
    img.write(e, 256);
    ASSERT_TRUE(parse_it().ok()) << msg();
    EXPECT_EQ(t.n, MAX_PARTITIONS);
    EXPECT_EQ(t.part[MAX_PARTITIONS - 1].index, MAX_PARTITIONS);
}

TEST_F(Gpt, OddDevices)
{
    Image tiny(512, 5);
    EXPECT_EQ(parse(tiny, scratch.data(), t, &why).error(), Err::invalid);
    Image weird(768, 100);
    EXPECT_EQ(parse(weird, scratch.data(), t, &why).error(), Err::unsupported);
    Image blank(512, 100);                           // all zeroes
    EXPECT_EQ(parse(blank, scratch.data(), t, &why).error(), Err::invalid);
    EXPECT_EQ(parse(blank, scratch.data(), t, nullptr).error(), Err::invalid);   // no report wanted
    img.write(three());
    img.fail_lba = 0;
    EXPECT_EQ(parse_it().error(), Err::range);       // the device's own error
}

TEST_F(Gpt, BackupEntriesReadWhenPrimaryArrayUnreadable)
{
    img.write(three());
    img.fail_lba = 3;                                // inside the primary array
    ASSERT_TRUE(parse_it().ok()) << msg();
    EXPECT_TRUE(t.used_backup);
    EXPECT_NE(msg().find("read of LBA 3"), std::string::npos) << msg();
}

} // namespace
} // namespace gpt

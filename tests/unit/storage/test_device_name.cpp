// kernel/storage/device_name: the future `device = "..."` values.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>

#include "kernel/storage/device_name.hpp"

namespace {

// Parse an exact-size heap copy (ASan sees a read past the end).
struct Parsed {
    std::unique_ptr<char[]> buf;
    DeviceName d;
    const char *why;
    explicit Parsed(const std::string &s) : buf(new char[s.size() + 1])
    {
        memcpy(buf.get(), s.data(), s.size());
        why = parse_device_name(StrView{buf.get(), s.size()}, d);
    }
};

TEST(DeviceName, Nvme)
{
    Parsed a("nvme0n1");
    ASSERT_EQ(a.why, nullptr);
    EXPECT_EQ(a.d.kind, DeviceKind::nvme_namespace);
    EXPECT_EQ(a.d.controller, 0u);
    EXPECT_EQ(a.d.nsid, 1u);
    Parsed b("nvme12n345p2");
    ASSERT_EQ(b.why, nullptr);
    EXPECT_EQ(b.d.kind, DeviceKind::nvme_partition);
    EXPECT_EQ(b.d.controller, 12u);
    EXPECT_EQ(b.d.nsid, 345u);
    EXPECT_EQ(b.d.partition, 2u);
    Parsed c("nvme255n4294967294p4096");
    ASSERT_EQ(c.why, nullptr) << c.why;
    EXPECT_EQ(c.d.nsid, 4294967294u);
    EXPECT_EQ(c.d.partition, 4096u);
}

TEST(DeviceName, GptName)
{
    Parsed a("gpt-name:web");
    ASSERT_EQ(a.why, nullptr);
    EXPECT_EQ(a.d.kind, DeviceKind::gpt_name);
    EXPECT_TRUE(a.d.name.eq("web"));
    EXPECT_EQ(a.d.name.p, a.buf.get() + 9);          // points into the text
    Parsed b("gpt-name:Linux filesystem");
    ASSERT_EQ(b.why, nullptr);
    EXPECT_EQ(b.d.name.n, 16u);
    EXPECT_EQ(Parsed("gpt-name:" + std::string(36, 'a')).why, nullptr);
}

TEST(DeviceName, GptGuid)
{
    Parsed a("gpt-guid:01234567-89AB-cdef-0123-456789abcdef");
    ASSERT_EQ(a.why, nullptr);
    EXPECT_EQ(a.d.kind, DeviceKind::gpt_guid);
    EXPECT_EQ(a.d.guid.b[0], 0x67);                  // stored little-endian
    EXPECT_EQ(a.d.guid.b[3], 0x01);
    EXPECT_EQ(a.d.guid.b[15], 0xef);
}

TEST(DeviceName, Refused)
{
    const char *bad[] = {
        "", "nvme", "nvme0", "nvmen1", "nvme0n", "nvme0n0", "nvme0n1p", "nvme0n1p0", "nvme00n1", "nvme0n01",
        "nvme0n1p02", "nvme256n1", "nvme0n4294967295", "nvme0n99999999999999999999", "nvme0n1p4097",
        "nvme0n1 ", " nvme0n1", "nvme0n1p2x", "nvme-1n1", "nvme+1n1", "NVME0n1", "sda", "nvme0n1q2",
        "gpt-name:", "gpt-name:a\tb", "gpt-name:caf\xc3\xa9", "gpt-guid:", "gpt-guid:01234567-89ab-cdef-0123-456789abcde",
        "gpt-guid:00000000-0000-0000-0000-000000000000", "gpt-guid:01234567-89ab-cdef-0123-456789abcdeff",
        "gpt:web", "gpt-name", "gpt-guid",
    };
    for (const char *s : bad) {
        Parsed p(s);
        EXPECT_NE(p.why, nullptr) << '"' << s << '"';
    }
    EXPECT_NE(Parsed("gpt-name:" + std::string(37, 'a')).why, nullptr);
    EXPECT_STREQ(Parsed("nvme0n0").why, "namespace IDs start at 1");
    EXPECT_STREQ(Parsed("nvme00n1").why, "numbers have no leading zeros");
    DeviceName d;
    d.nsid = 77;
    EXPECT_NE(parse_device_name(StrView{}, d), nullptr);
    EXPECT_EQ(d.nsid, 77u);                          // untouched on error
}

} // namespace

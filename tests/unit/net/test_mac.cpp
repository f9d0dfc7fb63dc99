// MAC addresses (kernel/net/mac.cpp): the configuration's syntax, printing, and
// the automatic assignment (stable, locally administered unicast, unique).
#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <string>

#include "kernel/net/mac.hpp"

namespace {

using net::Mac;

const char *parse(const std::string &s, Mac &m) { return net::parse_mac(s.data(), s.size(), m); }

std::string text(const Mac &m)
{
    char b[18];
    EXPECT_EQ(net::format_mac(b, m), 17u);
    return b;
}

TEST(Mac, ParsesAndPrints)
{
    Mac m{};
    ASSERT_EQ(parse("02:4B:45:00:00:01", m), nullptr);
    EXPECT_EQ(m, (Mac{{0x02, 0x4b, 0x45, 0, 0, 1}}));
    EXPECT_EQ(text(m), "02:4b:45:00:00:01");
    ASSERT_EQ(parse("fe:dc:ba:98:76:54", m), nullptr);
    EXPECT_EQ(text(m), "fe:dc:ba:98:76:54");
}

TEST(Mac, RejectsWhatIsNotAUnicastAddress)
{
    const std::string form = "is not of the form 02:4b:45:00:00:01";
    for (const char *bad : {"", "02:4b:45:00:00", "02:4b:45:00:00:011", "02-4b-45-00-00-01", "02:4b:45:00:00:0g",
                            "024b:45:00:00:01:", " 2:4b:45:00:00:01", "02:4b:45:00:00:01 ", "0x:4b:45:00:00:01"}) {
        Mac m{{9, 9, 9, 9, 9, 9}};
        EXPECT_EQ(std::string(parse(bad, m) ? parse(bad, m) : "ok"), form) << bad;
        EXPECT_EQ(m, (Mac{{9, 9, 9, 9, 9, 9}})) << "unchanged on error";
    }
    Mac m{};
    EXPECT_STREQ(parse("01:00:5e:00:00:01", m), "is multicast");
    EXPECT_STREQ(parse("ff:ff:ff:ff:ff:ff", m), "is multicast");
    EXPECT_STREQ(parse("03:00:00:00:00:00", m), "is multicast");
    EXPECT_STREQ(parse("00:00:00:00:00:00", m), "is all zero");
    EXPECT_EQ(parse("00:00:00:00:00:01", m), nullptr);
}

TEST(Mac, Predicates)
{
    EXPECT_TRUE((Mac{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}).broadcast());
    EXPECT_TRUE((Mac{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}).multicast());
    EXPECT_FALSE((Mac{{0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}}).broadcast());
    EXPECT_TRUE((Mac{{0x33, 0x33, 0, 0, 0, 1}}).multicast());
    EXPECT_FALSE((Mac{{0x02, 0, 0, 0, 0, 1}}).multicast());
    EXPECT_TRUE((Mac{{0, 0, 0, 0, 0, 0}}).zero());
}

TEST(Mac, DerivedAddressesAreStableLocalUnicastAndDistinct)
{
    const Mac a = net::derive_mac("web", 3, 0);
    EXPECT_EQ(a, net::derive_mac("web", 3, 0));
    EXPECT_EQ(a.b[0], 0x02);
    // The value itself is part of the contract (stable across builds): tests and
    // operators rely on it (tests/vm/linux_net.toml names this one).
    EXPECT_EQ(text(net::derive_mac("db", 2, 0)), "02:43:7c:68:9a:5b");
    EXPECT_EQ(text(net::derive_mac("web", 3, 0)), "02:11:a7:a6:a0:6c");
    std::set<std::string> seen;
    for (const char *name : {"web", "db", "a", "b", "web2", "web3"})
        for (u32 nic = 0; nic < 4; nic++)
            for (u32 attempt = 0; attempt < 3; attempt++) {
                const Mac m = net::derive_mac(name, strlen(name), nic, attempt);
                EXPECT_EQ(m.b[0], 0x02);
                EXPECT_FALSE(m.multicast());
                seen.insert(text(m));
            }
    EXPECT_EQ(seen.size(), 6u * 4 * 3);
}

TEST(Mac, AssignmentKeepsGivenAddressesAndAvoidsThem)
{
    // Slot 2 is given what slot 0 would derive; slot 1 what slot 0 derives next.
    const Mac d0 = net::derive_mac("a", 1, 0, 0), d1 = net::derive_mac("a", 1, 0, 1);
    net::MacSlot s[] = {{"a", 1, 0, false, {}}, {"b", 1, 0, true, d1}, {"c", 1, 0, true, d0}, {"d", 1, 0, false, {}}};
    usize x = 9, y = 9;
    ASSERT_TRUE(net::assign_macs(s, 4, &x, &y));
    EXPECT_EQ(s[1].mac, d1);
    EXPECT_EQ(s[2].mac, d0);
    EXPECT_EQ(s[0].mac, net::derive_mac("a", 1, 0, 2));   // 0 and 1 are taken
    EXPECT_EQ(s[3].mac, net::derive_mac("d", 1, 0, 0));
    EXPECT_EQ(x, 9u);
    // Deterministic: again, the same result.
    net::MacSlot t[] = {{"a", 1, 0, false, {}}, {"b", 1, 0, true, d1}, {"c", 1, 0, true, d0}, {"d", 1, 0, false, {}}};
    ASSERT_TRUE(net::assign_macs(t, 4, &x, &y));
    for (int i = 0; i < 4; i++) EXPECT_EQ(t[i].mac, s[i].mac);
}

TEST(Mac, TwoGivenEqualAddressesAreReported)
{
    const Mac m{{2, 0, 0, 0, 0, 7}};
    net::MacSlot s[] = {{"a", 1, 0, false, {}}, {"b", 1, 0, true, m}, {"c", 1, 0, false, {}}, {"d", 1, 1, true, m}};
    usize x = 0, y = 0;
    EXPECT_FALSE(net::assign_macs(s, 4, &x, &y));
    EXPECT_EQ(x, 1u);
    EXPECT_EQ(y, 3u);
}

// Many NICs of one name and index (a degenerate case) still all get distinct addresses.
TEST(Mac, AssignmentAlwaysEndsUnique)
{
    net::MacSlot s[32];
    for (auto &x : s) x = {"same", 4, 0, false, {}};
    usize a, b;
    ASSERT_TRUE(net::assign_macs(s, 32, &a, &b));
    std::set<std::string> seen;
    for (auto &x : s) seen.insert(text(x.mac));
    EXPECT_EQ(seen.size(), 32u);
}

} // namespace

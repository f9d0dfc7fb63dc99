// The DMAR parser (kernel/firmware/dmar): tables as QEMU's intel-iommu and
// real servers lay them out, and each malformation refused with its reason.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "kernel/firmware/dmar.hpp"

namespace {

using Bytes = std::vector<u8>;

void le(Bytes &b, u64 v, int n)
{
    for (int i = 0; i < n; i++) b.push_back(u8(v >> (8 * i)));
}

Bytes scope(u8 type, u8 id, u8 bus, std::vector<std::pair<u8, u8>> path)
{
    Bytes s{type, u8(6 + 2 * path.size()), 0, 0, id, bus};
    for (auto [d, f] : path) {
        s.push_back(d);
        s.push_back(f);
    }
    return s;
}

Bytes drhd(u64 base, u8 flags, u16 seg, std::vector<Bytes> scopes = {})
{
    Bytes b;
    Bytes body{flags, 0};
    le(body, seg, 2);
    le(body, base, 8);
    for (auto &s : scopes) body.insert(body.end(), s.begin(), s.end());
    le(b, 0, 2);
    le(b, body.size() + 4, 2);
    b.insert(b.end(), body.begin(), body.end());
    return b;
}

Bytes rmrr(u16 seg, u64 base, u64 limit, std::vector<Bytes> scopes)
{
    Bytes b, body;
    le(body, 0, 2);
    le(body, seg, 2);
    le(body, base, 8);
    le(body, limit, 8);
    for (auto &s : scopes) body.insert(body.end(), s.begin(), s.end());
    le(b, 1, 2);
    le(b, body.size() + 4, 2);
    b.insert(b.end(), body.begin(), body.end());
    return b;
}

Bytes table(std::vector<Bytes> structs, u8 haw = 38, u8 flags = 1)
{
    Bytes t(48, 0);
    std::memcpy(t.data(), "DMAR", 4);
    t[36] = haw;
    t[37] = flags;
    for (auto &s : structs) t.insert(t.end(), s.begin(), s.end());
    const u32 n = u32(t.size());
    std::memcpy(t.data() + 4, &n, 4);
    return t;
}

std::string error(const Bytes &t)
{
    dmar::Dmar d;
    dmar::Report r;
    Status s = dmar::parse(t.data(), u32(t.size()), d, &r);
    return s ? "ok" : r.msg;
}

TEST(Dmar, QemuIntelIommu)
{
    // QEMU's q35 with intel-iommu,intremap=on: one INCLUDE_PCI_ALL unit at
    // 0xfed90000 listing the IOAPIC (ID 0 at 00:1f.0... as QEMU puts it).
    Bytes t = table({drhd(0xfed90000, 1, 0, {scope(3, 0, 0xf0, {{0x1f, 0}})})}, 38, 1);
    dmar::Dmar d;
    dmar::Report r;
    ASSERT_TRUE(dmar::parse(t.data(), u32(t.size()), d, &r).ok()) << r.msg;
    EXPECT_EQ(d.host_address_width, 39);
    EXPECT_TRUE(d.intr_remap);
    EXPECT_FALSE(d.x2apic_opt_out);
    ASSERT_EQ(d.n_units, 1u);
    EXPECT_EQ(d.units[0].base.raw(), 0xfed90000u);
    EXPECT_TRUE(d.units[0].include_all);
    ASSERT_EQ(d.units[0].n_scopes, 1u);
    const dmar::Scope &s = d.scopes[d.units[0].first_scope];
    EXPECT_EQ(s.type, dmar::ScopeType::ioapic);
    EXPECT_EQ(s.start_bus, 0xf0);
    EXPECT_EQ(s.path[0].dev, 0x1f);
    EXPECT_EQ(d.n_rmrrs, 0u);
}

TEST(Dmar, UnitsScopesAndRmrrs)
{
    // A server: a unit for the GPU (an endpoint behind a root port), one for a
    // bridge's whole hierarchy, the catch-all last; an RMRR for a USB controller.
    Bytes t = table({drhd(0xfed91000, 0, 0, {scope(1, 0, 0, {{2, 0}}), scope(1, 0, 0, {{1, 0}, {0, 0}})}),
                     drhd(0xfed92000, 0, 0, {scope(2, 0, 0, {{0x1c, 4}})}),
                     rmrr(0, 0x7c000000, 0x7c7fffff, {scope(1, 0, 0, {{0x14, 0}})}),
                     drhd(0xfed93000, 1, 0, {scope(3, 8, 0xf0, {{0x1f, 0}}), scope(4, 0, 0xf0, {{0x0f, 0}})}),
                     Bytes{3, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}});   // an RHSA: skipped
    dmar::Dmar d;
    dmar::Report r;
    ASSERT_TRUE(dmar::parse(t.data(), u32(t.size()), d, &r).ok()) << r.msg;
    ASSERT_EQ(d.n_units, 3u);
    EXPECT_EQ(d.units[0].n_scopes, 2u);
    EXPECT_EQ(d.units[1].n_scopes, 1u);
    EXPECT_EQ(d.scopes[d.units[1].first_scope].type, dmar::ScopeType::bridge);
    EXPECT_TRUE(d.units[2].include_all);
    EXPECT_EQ(d.units[2].n_scopes, 2u);
    ASSERT_EQ(d.n_rmrrs, 1u);
    EXPECT_EQ(d.rmrrs[0].base.raw(), 0x7c000000u);
    EXPECT_EQ(d.rmrrs[0].limit, 0x7c7fffffu);
    EXPECT_EQ(d.skipped, 1u);

    // The path behind the root port: 00:01.0 is a bridge to bus 3, so the scope is 03:00.0.
    const dmar::Scope &behind = d.scopes[d.units[0].first_scope + 1];
    auto bdf = dmar::resolve(behind, [](u8 bus, u8 dev, u8 fn) { return bus == 0 && dev == 1 && fn == 0 ? 3 : -1; });
    ASSERT_TRUE(bdf.ok());
    EXPECT_EQ(bdf->bus, 3);
    EXPECT_EQ(bdf->dev, 0);
    EXPECT_EQ(bdf->fn, 0);
    // No bridge where the path says one is.
    EXPECT_EQ(dmar::resolve(behind, [](u8, u8, u8) { return -1; }).error(), Err::not_found);
}

TEST(Dmar, Malformed)
{
    const Bytes io = scope(3, 0, 0xf0, {{0x1f, 0}});
    Bytes good = table({drhd(0xfed90000, 1, 0, {io})});
    EXPECT_EQ(error(good), "ok");

    Bytes short_hdr(40, 0);
    EXPECT_EQ(error(short_hdr), "table of 40 bytes is shorter than its header");
    Bytes badlen = good;
    badlen[4] ^= 1;
    EXPECT_NE(error(badlen).find("length field"), std::string::npos);
    EXPECT_EQ(error(table({drhd(0xfed90000, 1, 0, {io})}, 20)), "host address width 21");
    EXPECT_EQ(error(table({})), "no DRHD: no remapping hardware");

    // A structure longer than the table, shorter than its header, or of length 0 (no progress).
    Bytes over = good;
    over[48 + 2] = 0xff;
    EXPECT_NE(error(over).find("bad length"), std::string::npos);
    Bytes zero = good;
    zero[48 + 2] = 0;
    zero[48 + 3] = 0;
    EXPECT_NE(error(zero).find("bad length 0"), std::string::npos);
    Bytes d12 = table({Bytes{0, 0, 12, 0, 1, 0, 0, 0, 0, 0, 0xe9, 0xfe}});
    EXPECT_NE(error(d12).find("DRHD at 0x30 is 12 bytes"), std::string::npos);

    // Register bases: zero, unaligned, the same twice; two catch-alls on one segment.
    EXPECT_NE(error(table({drhd(0, 1, 0, {io})})).find("register base 0x0"), std::string::npos);
    EXPECT_NE(error(table({drhd(0xfed90800, 1, 0, {io})})).find("register base"), std::string::npos);
    EXPECT_NE(error(table({drhd(0xfed90000, 0, 0, {scope(1, 0, 0, {{2, 0}})}), drhd(0xfed90000, 1, 0, {io})}))
                  .find("twice"),
              std::string::npos);
    EXPECT_NE(error(table({drhd(0xfed90000, 1, 0, {io}), drhd(0xfed91000, 1, 0, {io})})).find("second INCLUDE_PCI_ALL"),
              std::string::npos);
    // A catch-all unit with a PCI device scope.
    EXPECT_NE(error(table({drhd(0xfed90000, 1, 0, {scope(1, 0, 0, {{2, 0}})})})).find("INCLUDE_PCI_ALL with a PCI"),
              std::string::npos);

    // Device scopes: truncated, odd length, no path, unknown type, hop out of range, too long.
    Bytes trunc = drhd(0xfed90000, 1, 0, {io});
    trunc.resize(trunc.size() - 3);
    trunc[2] = u8(trunc.size());
    EXPECT_NE(error(table({trunc})).find("is truncated"), std::string::npos);
    Bytes odd = scope(3, 0, 0xf0, {{0x1f, 0}});
    odd.push_back(0);
    odd[1] = 9;
    EXPECT_NE(error(table({drhd(0xfed90000, 1, 0, {odd})})).find("bad length 9"), std::string::npos);
    EXPECT_NE(error(table({drhd(0xfed90000, 1, 0, {scope(3, 0, 0, {})})})).find("no path"), std::string::npos);
    EXPECT_NE(error(table({drhd(0xfed90000, 1, 0, {scope(9, 0, 0, {{1, 0}})})})).find("unknown type 9"),
              std::string::npos);
    EXPECT_NE(error(table({drhd(0xfed90000, 0, 0, {scope(1, 0, 0, {{32, 0}})})})).find("path hop 0"),
              std::string::npos);
    EXPECT_NE(error(table({drhd(0xfed90000, 0, 0, {scope(1, 0, 0, {{1, 8}})})})).find("path hop 0"),
              std::string::npos);
    std::vector<std::pair<u8, u8>> long_path(9, {1, 0});
    dmar::Dmar d;
    Bytes lp = table({drhd(0xfed90000, 0, 0, {scope(1, 0, 0, long_path)})});
    EXPECT_EQ(dmar::parse(lp.data(), u32(lp.size()), d, nullptr).error(), Err::unsupported);

    // RMRRs: unaligned or inverted ranges, no device, an IOAPIC scope.
    const Bytes ep = scope(1, 0, 0, {{0x14, 0}});
    const Bytes unit = drhd(0xfed90000, 1, 0, {io});
    EXPECT_EQ(error(table({unit, rmrr(0, 0x1000, 0x1fff, {ep})})), "ok");
    EXPECT_NE(error(table({unit, rmrr(0, 0x1800, 0x1fff, {ep})})).find("range"), std::string::npos);
    EXPECT_NE(error(table({unit, rmrr(0, 0x1000, 0x1ffe, {ep})})).find("range"), std::string::npos);
    EXPECT_NE(error(table({unit, rmrr(0, 0x3000, 0x1fff, {ep})})).find("range"), std::string::npos);
    EXPECT_NE(error(table({unit, rmrr(0, 0x1000, 0x1fff, {})})).find("names no device"), std::string::npos);
    EXPECT_NE(error(table({unit, rmrr(0, 0x1000, 0x1fff, {io})})).find("not a PCI device"), std::string::npos);
}

TEST(Dmar, Limits)
{
    // MAX_UNITS units parse, one more is unsupported, not invalid.
    std::vector<Bytes> units;
    for (u32 i = 0; i < dmar::MAX_UNITS; i++) units.push_back(drhd(0xfed00000 + i * 0x1000, 0, 0, {scope(1, 0, 0, {{u8(i), 0}})}));
    dmar::Dmar d;
    Bytes ok = table(units);
    EXPECT_TRUE(dmar::parse(ok.data(), u32(ok.size()), d, nullptr).ok());
    units.push_back(drhd(0xfee00000, 0, 0, {scope(1, 0, 0, {{1, 1}})}));
    Bytes more = table(units);
    EXPECT_EQ(dmar::parse(more.data(), u32(more.size()), d, nullptr).error(), Err::unsupported);
    // Every truncation of a good table is refused or parsed, never read past its end (ASan).
    Bytes t = table({drhd(0xfed90000, 0, 0, {scope(1, 0, 0, {{2, 0}})}),
                     rmrr(0, 0x1000, 0x1fff, {scope(1, 0, 0, {{0x14, 0}})}), drhd(0xfed91000, 1, 0, {})});
    for (usize n = 0; n <= t.size(); n++) {
        Bytes c(t.begin(), t.begin() + long(n));
        if (n >= 8) {
            const u32 len = u32(n);
            std::memcpy(c.data() + 4, &len, 4);
        }
        (void)dmar::parse(c.data(), u32(c.size()), d, nullptr);
    }
}

} // namespace

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <vector>

#include "kernel/firmware/acpi_s5.hpp"

namespace {

TEST(AcpiS5, QemuStyleBytePrefix)
{
    // Name (_S5, Package (0x04) { 0x05, 0x05, Zero, Zero }) as iasl emits it.
    const u8 aml[] = {0x10, 0x08, 0x5f, 0x53, 0x35, 0x5f, 0x12, 0x0a, 0x04, 0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00};
    u8 a = 9, b = 9;
    ASSERT_TRUE(acpi_find_s5(aml, sizeof(aml), a, b));
    EXPECT_EQ(a, 5);
    EXPECT_EQ(b, 5);
}

TEST(AcpiS5, ZeroAndOneOpsAndRootPrefix)
{
    const u8 aml[] = {0x08, 0x5c, 0x5f, 0x53, 0x35, 0x5f, 0x12, 0x06, 0x04, 0x00, 0x01, 0x00, 0x00};
    u8 a = 9, b = 9;
    ASSERT_TRUE(acpi_find_s5(aml, sizeof(aml), a, b));
    EXPECT_EQ(a, 0);
    EXPECT_EQ(b, 1);
}

TEST(AcpiS5, NotANameOrTruncated)
{
    const u8 method_ref[] = {0x70, 0x5f, 0x53, 0x35, 0x5f, 0x12, 0x06, 0x04, 0x00};   // not NameOp
    u8 a, b;
    EXPECT_FALSE(acpi_find_s5(method_ref, sizeof(method_ref), a, b));
    const u8 cut[] = {0x08, 0x5f, 0x53, 0x35, 0x5f, 0x12};
    EXPECT_FALSE(acpi_find_s5(cut, sizeof(cut), a, b));
    EXPECT_FALSE(acpi_find_s5(cut, 0, a, b));
}

struct S5 {
    bool found;
    u8 a, b;
    bool operator==(const S5 &o) const { return found == o.found && (!found || (a == o.a && b == o.b)); }
};

// The parser on `bytes` at the end of an exactly-sized heap block (ASan: a read past the end
// is a heap-buffer-overflow), and again with each of several tails right after the last byte:
// a parser that reads only its `len` bytes answers the same whatever follows them.
S5 parse_guarded(const std::vector<u8> &bytes, const std::vector<std::vector<u8>> &tails)
{
    const usize n = bytes.size();
    std::unique_ptr<u8[]> exact(new u8[n ? n : 1]);
    std::copy(bytes.begin(), bytes.end(), exact.get());
    S5 r{false, 0xee, 0xee};
    r.found = acpi_find_s5(exact.get(), n, r.a, r.b);
    for (const auto &tail : tails) {
        std::vector<u8> padded(bytes);
        padded.insert(padded.end(), tail.begin(), tail.end());
        S5 t{false, 0xdd, 0xdd};
        t.found = acpi_find_s5(padded.data(), n, t.a, t.b);
        EXPECT_EQ(t, r) << "the answer depends on " << tail.size() << " bytes past the end (len " << n << ")";
    }
    return r;
}

// Name (_S5, Package (0x04) { DWordConst 0x11223344, QWordConst 0x0102030405060708, Zero, Zero })
// with a two-byte PkgLength: SLP_TYPa = 0x44, SLP_TYPb = 0x08 (the low bytes).
const std::vector<u8> S5_PACKAGE = {0x08, 0x5f, 0x53, 0x35, 0x5f, 0x12, 0x40, 0x01, 0x04, 0x0c, 0x44, 0x33, 0x22,
                                    0x11, 0x0e, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0x00, 0x00};
constexpr usize FIRST_END = 14, SECOND_END = 23;   // where the two elements end

TEST(AcpiS5, TruncatedPackageReadsOnlyItsBytes)
{
    u8 a = 0, b = 0;
    ASSERT_TRUE(acpi_find_s5(S5_PACKAGE.data(), S5_PACKAGE.size(), a, b));
    ASSERT_EQ(a, 0x44);
    ASSERT_EQ(b, 0x08);
    // Cut at every length, the rest of the real package right behind the cut: reading past
    // `len` would find a complete package there.
    for (usize k = 0; k <= S5_PACKAGE.size(); k++) {
        const std::vector<u8> cut(S5_PACKAGE.begin(), S5_PACKAGE.begin() + k);
        const std::vector<u8> rest(S5_PACKAGE.begin() + k, S5_PACKAGE.end());
        const S5 r = parse_guarded(cut, {rest, std::vector<u8>(16, 0), std::vector<u8>(16, 0xff)});
        if (k < FIRST_END) EXPECT_FALSE(r.found) << k;                          // SLP_TYPa is not all there
        else if (k < SECOND_END) EXPECT_EQ(r, (S5{true, 0x44, 0})) << k;        // SLP_TYPb cut: 0, not a guess
        else EXPECT_EQ(r, (S5{true, 0x44, 0x08})) << k;
    }
}

TEST(AcpiS5, RandomBytesNeverOverread)
{
    std::mt19937 rng(7);
    // AML-ish bytes: the name's pieces, integer prefixes and constants, anything.
    const u8 tokens[] = {0x08, '\\', '_', 'S', '5', '_', 0x12, 0x0a, 0x0b, 0x0c, 0x0e, 0x00, 0x01, 0xff, 0x40, 0x80};
    auto byte = [&] { return u8(rng() % 2 ? tokens[rng() % sizeof(tokens)] : rng()); };
    int found = 0;
    for (int n = 0; n < 5000; n++) {
        std::vector<u8> v(rng() % 64);
        for (auto &x : v) x = byte();
        // Mostly with a real name and PackageOp planted somewhere, so the parser gets past the name.
        if (v.size() >= 6 && rng() % 4) {
            static const u8 name[] = {0x08, '_', 'S', '5', '_', 0x12};
            const usize at = rng() % (v.size() - 5);
            std::copy(name, name + 6, v.begin() + long(at));
            if (at > 0 && rng() % 2) v[at - 1] = 0x08, v[at] = '\\';   // root-prefixed name
        }
        std::vector<u8> noise(16);
        for (auto &x : noise) x = byte();
        const S5 r = parse_guarded(v, {std::vector<u8>(16, 0x00), std::vector<u8>(16, 0x0a), std::vector<u8>(16, 0xff),
                                       {0x0a, 0x05, 0x0a, 0x07}, noise});
        if (!r.found) continue;
        found++;
        // Found: the name and PackageOp are in the bytes, and the values are ones the bytes hold.
        bool named = false;
        for (usize i = 1; i + 4 < v.size() && !named; i++)
            named = v[i] == '_' && v[i + 1] == 'S' && v[i + 2] == '5' && v[i + 3] == '_' && v[i + 4] == 0x12 &&
                    (v[i - 1] == 0x08 || v[i - 1] == '\\');
        EXPECT_TRUE(named) << "found without _S5_ and a PackageOp in the bytes";
        auto in_bytes = [&](u8 x) { return x == 0 || x == 1 || x == 0xff || std::find(v.begin(), v.end(), x) != v.end(); };
        EXPECT_TRUE(in_bytes(r.a)) << int(r.a);
        EXPECT_TRUE(in_bytes(r.b)) << int(r.b);
    }
    EXPECT_GT(found, 300);   // (478 with this seed) the generator reaches the element parser, not only the name search
}

} // namespace

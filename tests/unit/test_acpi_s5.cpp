#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "kernel/acpi_s5.hpp"

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

TEST(AcpiS5, RandomBytesNeverOverread)
{
    std::mt19937 rng(7);
    for (int n = 0; n < 5000; n++) {
        std::vector<u8> v(rng() % 64);
        for (auto &x : v) x = u8(rng() % 4 == 0 ? "\x08_S5_\x12"[rng() % 6] : rng());
        u8 a, b;
        (void)acpi_find_s5(v.data(), v.size(), a, b);
    }
}

} // namespace

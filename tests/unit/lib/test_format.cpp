// printf-style formatting into a bounded buffer: every conversion, flags,
// widths, truncation, and a differential check against the host's snprintf.
#include <gtest/gtest.h>

#include <climits>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>

#include "kernel/lib/format.hpp"

namespace {

// Formats into a generous buffer and returns the text; checks the return value.
std::string fmt_str(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
std::string fmt_str(const char *fmt, ...)
{
    char buf[512];
    memset(buf, 'Z', sizeof(buf));
    va_list ap;
    va_start(ap, fmt);
    usize n = vformat(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    EXPECT_LT(n, sizeof(buf));
    EXPECT_EQ(buf[n], '\0');
    EXPECT_EQ(strlen(buf), n);
    return std::string(buf);
}

TEST(Format, PlainText)
{
    EXPECT_EQ(fmt_str("hello, world"), "hello, world");
    EXPECT_EQ(fmt_str("%s", ""), "");
    char buf[4] = {'x', 'x', 'x', 'x'};
    EXPECT_EQ(format(buf, sizeof(buf), "%s", ""), 0u);
    EXPECT_EQ(buf[0], '\0');
}

TEST(Format, Strings)
{
    EXPECT_EQ(fmt_str("[%s]", "abc"), "[abc]");
    EXPECT_EQ(fmt_str("[%6s]", "abc"), "[   abc]");
    EXPECT_EQ(fmt_str("[%-6s]", "abc"), "[abc   ]");
    EXPECT_EQ(fmt_str("[%2s]", "abcdef"), "[abcdef]");   // width never truncates
    EXPECT_EQ(fmt_str("[%.2s]", "abcdef"), "[ab]");
    EXPECT_EQ(fmt_str("[%.0s]", "abcdef"), "[]");
    EXPECT_EQ(fmt_str("[%.10s]", "abc"), "[abc]");
    EXPECT_EQ(fmt_str("[%5.2s]", "abcdef"), "[   ab]");
    EXPECT_EQ(fmt_str("[%-5.2s]", "abcdef"), "[ab   ]");
    EXPECT_EQ(fmt_str("[%.*s]", 3, "abcdef"), "[abc]");
    EXPECT_EQ(fmt_str("[%.*s]", 0, "abcdef"), "[]");
    EXPECT_EQ(fmt_str("[%.*s]", -1, "abcdef"), "[abcdef]");   // negative: as if omitted
    EXPECT_EQ(fmt_str("[%6.*s]", 2, "abcdef"), "[    ab]");
    EXPECT_EQ(fmt_str("%s-%s", "a", "b"), "a-b");
}

TEST(Format, NullString)
{
    const char *null = nullptr;
    EXPECT_EQ(fmt_str("[%s]", null), "[(null)]");
    EXPECT_EQ(fmt_str("[%.3s]", null), "[(nu]");
    EXPECT_EQ(fmt_str("[%8s]", null), "[  (null)]");
}

// %.*s must read no more than the precision: the buffer is exactly as long
// as the precision and not NUL-terminated (ASan catches any overread).
TEST(Format, PrecisionBoundsNonTerminatedBuffer)
{
    const char text[] = {'k', 'e', 'e', 'l'};
    auto heap = std::make_unique<char[]>(sizeof(text));
    memcpy(heap.get(), text, sizeof(text));
    EXPECT_EQ(fmt_str("<%.*s>", int(sizeof(text)), heap.get()), "<keel>");
    EXPECT_EQ(fmt_str("<%.*s>", 2, heap.get()), "<ke>");
    EXPECT_EQ(fmt_str("<%.4s>", heap.get()), "<keel>");
    EXPECT_EQ(fmt_str("<%-6.*s>", 4, heap.get()), "<keel  >");
    // A zero-length view may even point one past the end.
    EXPECT_EQ(fmt_str("<%.*s>", 0, heap.get() + sizeof(text)), "<>");
}

TEST(Format, Chars)
{
    EXPECT_EQ(fmt_str("%c%c%c", 'a', 'b', 'c'), "abc");
    EXPECT_EQ(fmt_str("[%c]", ' '), "[ ]");
    EXPECT_EQ(fmt_str("%c", 0x7f), "\x7f");
}

TEST(Format, SignedDecimal)
{
    EXPECT_EQ(fmt_str("%d", 0), "0");
    EXPECT_EQ(fmt_str("%d", 42), "42");
    EXPECT_EQ(fmt_str("%i", -42), "-42");
    EXPECT_EQ(fmt_str("%d", INT_MAX), "2147483647");
    EXPECT_EQ(fmt_str("%d", INT_MIN), "-2147483648");
    EXPECT_EQ(fmt_str("%ld", 1234567890123L), "1234567890123");
    EXPECT_EQ(fmt_str("%ld", LONG_MIN), "-9223372036854775808");
    EXPECT_EQ(fmt_str("%lld", (long long)INT64_MIN), "-9223372036854775808");
    EXPECT_EQ(fmt_str("%lld", (long long)INT64_MAX), "9223372036854775807");
    EXPECT_EQ(fmt_str("%lli", -1LL), "-1");
    EXPECT_EQ(fmt_str("%zd", (ssize_t)-5), "-5");
}

TEST(Format, SignedPadding)
{
    EXPECT_EQ(fmt_str("[%5d]", 42), "[   42]");
    EXPECT_EQ(fmt_str("[%5d]", -42), "[  -42]");
    EXPECT_EQ(fmt_str("[%05d]", 42), "[00042]");
    EXPECT_EQ(fmt_str("[%05d]", -42), "[-0042]");
    EXPECT_EQ(fmt_str("[%-5d]", 42), "[42   ]");
    EXPECT_EQ(fmt_str("[%-5d]", -42), "[-42  ]");
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wformat"   // the point: '0' is ignored when '-' is present
    EXPECT_EQ(fmt_str("[%-05d]", -42), "[-42  ]");
    EXPECT_EQ(fmt_str("[%0-5d]", 42), "[42   ]");
#pragma clang diagnostic pop
    EXPECT_EQ(fmt_str("[%2d]", -42), "[-42]");        // width never truncates
    EXPECT_EQ(fmt_str("[%3d]", -42), "[-42]");
    EXPECT_EQ(fmt_str("[%022lld]", (long long)INT64_MIN), "[-009223372036854775808]");
    EXPECT_EQ(fmt_str("[%-22lld]", (long long)INT64_MIN), "[-9223372036854775808  ]");
}

TEST(Format, Unsigned)
{
    EXPECT_EQ(fmt_str("%u", 0u), "0");
    EXPECT_EQ(fmt_str("%u", UINT_MAX), "4294967295");
    EXPECT_EQ(fmt_str("%lu", ULONG_MAX), "18446744073709551615");
    EXPECT_EQ(fmt_str("%llu", ~0ull), "18446744073709551615");
    EXPECT_EQ(fmt_str("%zu", SIZE_MAX), "18446744073709551615");
    EXPECT_EQ(fmt_str("%zu", sizeof(u64)), "8");
    EXPECT_EQ(fmt_str("[%6u]", 123u), "[   123]");
    EXPECT_EQ(fmt_str("[%06u]", 123u), "[000123]");
    EXPECT_EQ(fmt_str("[%-6u]", 123u), "[123   ]");
}

TEST(Format, Hex)
{
    EXPECT_EQ(fmt_str("%x", 0u), "0");
    EXPECT_EQ(fmt_str("%x", 0xdeadbeefu), "deadbeef");
    EXPECT_EQ(fmt_str("%X", 0xdeadbeefu), "DEADBEEF");
    EXPECT_EQ(fmt_str("%x", UINT_MAX), "ffffffff");
    EXPECT_EQ(fmt_str("%lx", 0xfedcba9876543210ul), "fedcba9876543210");
    EXPECT_EQ(fmt_str("%lX", 0xfedcba9876543210ul), "FEDCBA9876543210");
    EXPECT_EQ(fmt_str("%llx", ~0ull), "ffffffffffffffff");
    EXPECT_EQ(fmt_str("%lx", 0x100000000ul), "100000000");       // the upper half is not lost
    EXPECT_EQ(fmt_str("%zx", size_t(0xabc)), "abc");
    EXPECT_EQ(fmt_str("%016lx", 0x1000ul), "0000000000001000");
    EXPECT_EQ(fmt_str("%016lx-%016lx", 0x9fc00ul, 0x7ffdffffful), "000000000009fc00-00000007ffdfffff");
    EXPECT_EQ(fmt_str("[%8x]", 0xbeefu), "[    beef]");
    EXPECT_EQ(fmt_str("[%-8X]", 0xbeefu), "[BEEF    ]");
    EXPECT_EQ(fmt_str("[%04x]", 0xabcdefu), "[abcdef]");
}

TEST(Format, Pointer)
{
    int x;
    char expect[32];
    snprintf(expect, sizeof(expect), "0x%016lx", (unsigned long)reinterpret_cast<uintptr_t>(&x));
    EXPECT_EQ(fmt_str("%p", static_cast<void *>(&x)), expect);
    EXPECT_EQ(fmt_str("%p", static_cast<void *>(nullptr)), "0x0000000000000000");
    EXPECT_EQ(fmt_str("%p", reinterpret_cast<void *>(uintptr_t(0xffffffff80000000ull))), "0xffffffff80000000");
}

TEST(Format, PercentAndOddities)
{
    EXPECT_EQ(fmt_str("100%%"), "100%");
    EXPECT_EQ(fmt_str("%%d"), "%d");
    EXPECT_EQ(fmt_str("%d%%%d", 1, 2), "1%2");
}

// Behaviour outside the supported subset: harmless and without reading any
// argument (these are deliberately not valid printf formats).
TEST(Format, MalformedFormats)
{
    const char *lone = "abc%";
    const char *unknown = "a%qb";
    const char *dangling = "x%-0";
    char buf[16];
    EXPECT_EQ(format(buf, sizeof(buf), lone, 0), 3u);
    EXPECT_STREQ(buf, "abc");
    EXPECT_EQ(format(buf, sizeof(buf), unknown, 0), 4u);
    EXPECT_STREQ(buf, "a%qb");
    EXPECT_EQ(format(buf, sizeof(buf), dangling, 0), 1u);
    EXPECT_STREQ(buf, "x");
}

// A small cap: the output is cut but NUL-terminated, nothing past cap is
// written, and the return value is the length of the full output.
TEST(Format, Truncation)
{
    char buf[32];
    memset(buf, '#', sizeof(buf));
    EXPECT_EQ(format(buf, 4, "hello %s", "world"), 11u);
    EXPECT_STREQ(buf, "hel");
    for (usize i = 4; i < sizeof(buf); i++) EXPECT_EQ(buf[i], '#') << i;

    memset(buf, '#', sizeof(buf));
    EXPECT_EQ(format(buf, 6, "%016lx", 0x1234ul), 16u);
    EXPECT_STREQ(buf, "00000");
    EXPECT_EQ(buf[6], '#');

    memset(buf, '#', sizeof(buf));
    EXPECT_EQ(format(buf, 1, "%d", 12345), 5u);
    EXPECT_EQ(buf[0], '\0');
    EXPECT_EQ(buf[1], '#');

    // Exactly fits, and one byte short.
    EXPECT_EQ(format(buf, 6, "%s", "abcde"), 5u);
    EXPECT_STREQ(buf, "abcde");
    EXPECT_EQ(format(buf, 5, "%s", "abcde"), 5u);
    EXPECT_STREQ(buf, "abcd");

    // Truncation inside padding and inside a negative number.
    EXPECT_EQ(format(buf, 3, "%-8s|", "ab"), 9u);
    EXPECT_STREQ(buf, "ab");
    EXPECT_EQ(format(buf, 2, "%lld", (long long)INT64_MIN), 20u);
    EXPECT_STREQ(buf, "-");
}

TEST(Format, TruncationOnHeapExactSize)
{
    // ASan: the buffer is exactly cap bytes.
    for (usize cap = 1; cap <= 24; cap++) {
        auto buf = std::make_unique<char[]>(cap);
        EXPECT_EQ(format(buf.get(), cap, "%s=%016lx", "key", 0xfeedul), 20u);
        EXPECT_EQ(strlen(buf.get()), std::min<usize>(cap - 1, 20));
        EXPECT_EQ(std::string(buf.get()), std::string("key=000000000000feed").substr(0, cap - 1));
    }
}

TEST(Format, CapZero)
{
    char buf[8];
    memset(buf, '#', sizeof(buf));
    EXPECT_EQ(format(buf, 0, "%s %d", "abc", 12), 6u);
    for (char c : buf) EXPECT_EQ(c, '#');
    // Measuring only: no buffer at all.
    EXPECT_EQ(format(nullptr, 0, "%lx", ~0ul), 16u);
    EXPECT_EQ(format(nullptr, 0, ""), 0u);
}

// Differential check against the host's vsnprintf on the subset Keel supports
// (everything but %p, which Keel always zero-pads to 16 digits).
TEST(Format, RandomAgainstSnprintf)
{
    std::mt19937 rng(0x6b65656c);
    auto pick = [&](u32 n) { return u32(rng() % n); };
    auto rand64 = [&]() -> u64 {
        u64 v = (u64(rng()) << 32) | rng();
        switch (pick(4)) {
        case 0: return v >> pick(64);                   // any magnitude
        case 1: return v & 0xff;
        case 2: return ~0ull - pick(3);
        default: return (1ull << pick(64)) - pick(2);   // powers of two and neighbours
        }
    };
    static const char *const flags[] = {"", "0", "-", "-0", "0-"};
    static const char *const lens[] = {"", "l", "ll", "z"};
    static const char convs[] = {'d', 'i', 'u', 'x', 'X', 's', 'c', '%'};
    static const char *const strs[] = {"", "a", "keel", "hypervisor", "x y z"};

    for (int iter = 0; iter < 4000; iter++) {
        char conv = convs[pick(sizeof(convs))];
        std::string f = "<%";
        bool numeric = strchr("diuxX", conv) != nullptr;
        if (conv != '%' && conv != 'c') {   // Keel pads neither %c nor %%
            // '0' with %s is undefined in C: numbers only.
            f += numeric ? flags[pick(5)] : (pick(2) ? "-" : "");
            if (pick(3)) f += std::to_string(pick(26));
        }
        int prec = -2;
        if (conv == 's' && pick(2)) {
            if (pick(2)) { f += ".*"; prec = int(pick(12)) - 1; }
            else f += "." + std::to_string(pick(12));
        }
        const char *len = numeric ? lens[pick(4)] : "";
        f += len;
        f += conv;
        f += ">";

        char mine[128], ref[128];
        usize cap = pick(4) ? sizeof(mine) : pick(12);   // often truncated
        memset(mine, '#', sizeof(mine));
        memset(ref, '#', sizeof(ref));
        usize n;
        int rn;
        const char *fs = f.c_str();
        u64 v = rand64();
        if (conv == 's') {
            const char *s = strs[pick(5)];
            if (prec != -2) {
                n = format(mine, cap, fs, prec, s);
                rn = snprintf(ref, cap, fs, prec, s);
            } else {
                n = format(mine, cap, fs, s);
                rn = snprintf(ref, cap, fs, s);
            }
        } else if (conv == 'c') {
            int c = 'A' + int(pick(26));
            n = format(mine, cap, fs, c);
            rn = snprintf(ref, cap, fs, c);
        } else if (conv == '%') {
            n = format(mine, cap, fs, 0);     // the unused argument keeps -Wformat-security quiet
            rn = snprintf(ref, cap, fs, 0);
        } else if (conv == 'd' || conv == 'i') {
            if (!*len) { n = format(mine, cap, fs, int(v)); rn = snprintf(ref, cap, fs, int(v)); }
            else if (len[0] == 'z') { n = format(mine, cap, fs, ssize_t(v)); rn = snprintf(ref, cap, fs, ssize_t(v)); }
            else if (len[1]) { n = format(mine, cap, fs, (long long)v); rn = snprintf(ref, cap, fs, (long long)v); }
            else { n = format(mine, cap, fs, long(v)); rn = snprintf(ref, cap, fs, long(v)); }
        } else {
            if (!*len) { n = format(mine, cap, fs, unsigned(v)); rn = snprintf(ref, cap, fs, unsigned(v)); }
            else if (len[0] == 'z') { n = format(mine, cap, fs, size_t(v)); rn = snprintf(ref, cap, fs, size_t(v)); }
            else if (len[1]) { n = format(mine, cap, fs, (unsigned long long)v); rn = snprintf(ref, cap, fs, (unsigned long long)v); }
            else { n = format(mine, cap, fs, (unsigned long)v); rn = snprintf(ref, cap, fs, (unsigned long)v); }
        }
        ASSERT_EQ(n, usize(rn)) << "format \"" << f << "\" value " << v << " cap " << cap;
        ASSERT_EQ(memcmp(mine, ref, sizeof(mine)), 0) << "format \"" << f << "\" value " << v << " cap " << cap
                                                      << ": \"" << std::string(mine, strnlen(mine, sizeof(mine)))
                                                      << "\" vs \"" << std::string(ref, strnlen(ref, sizeof(ref)))
                                                      << "\"";
    }
}

} // namespace

// Keel's command line ("key key=value ...") and its number parser.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>

#include "kernel/firmware/cmdline.hpp"

namespace {

// Owns an exact-size, not NUL-terminated heap copy of the text (ASan catches
// any read past the length).
struct Line {
    std::unique_ptr<char[]> buf;
    usize n;
    explicit Line(const std::string &s) : buf(std::make_unique<char[]>(s.size() ? s.size() : 1)), n(s.size())
    {
        memcpy(buf.get(), s.data(), s.size());
    }
    Cmdline cl() const { return Cmdline(buf.get(), n); }
};

std::string str(StrView v) { return std::string(v.p ? v.p : "", v.n); }

std::string get_or(const Cmdline &c, const char *key, const char *absent = "<absent>")
{
    StrView v;
    return c.get(key, v) ? str(v) : std::string(absent);
}

// parse_u64 on an exact-size heap copy.
bool parse(const std::string &s, u64 &out)
{
    Line l(s);
    return parse_u64(StrView{l.buf.get(), l.n}, out);
}

TEST(StrView, Eq)
{
    const char text[] = {'c', 'o', 'm', '1'};
    EXPECT_TRUE((StrView{text, 4}).eq("com1"));
    EXPECT_FALSE((StrView{text, 3}).eq("com1"));
    EXPECT_TRUE((StrView{text, 3}).eq("com"));
    EXPECT_FALSE((StrView{text, 4}).eq("com"));
    EXPECT_FALSE((StrView{text, 4}).eq("com2"));
    EXPECT_TRUE((StrView{nullptr, 0}).eq(""));
    EXPECT_FALSE((StrView{text, 1}).eq(""));
}

TEST(Cmdline, EmptyAndDefault)
{
    Cmdline def;
    StrView v;
    EXPECT_FALSE(def.has("console"));
    EXPECT_FALSE(def.get("console", v));
    Line empty("");
    EXPECT_FALSE(empty.cl().has("console"));
    Line blanks("   \t\n ");
    EXPECT_FALSE(blanks.cl().has("console"));
    EXPECT_FALSE(blanks.cl().get("console", v));
}

TEST(Cmdline, AbsentKeys)
{
    Line l("console=com2 loglevel=debug quiet");
    auto c = l.cl();
    StrView v{"untouched", 9};
    EXPECT_FALSE(c.has("smp"));
    EXPECT_FALSE(c.get("smp", v));
    EXPECT_EQ(str(v), "untouched");          // not written when absent
    u64 x = 77;
    EXPECT_FALSE(c.get_u64("smp", x));
    EXPECT_FALSE(c.has("com2"));             // values are not keys
    EXPECT_FALSE(c.has("debug"));
    EXPECT_FALSE(c.has(""));
}

TEST(Cmdline, FlagsVersusValues)
{
    Line l("quiet console=com2 nosmp=");
    auto c = l.cl();
    StrView v;
    EXPECT_TRUE(c.has("quiet"));
    EXPECT_FALSE(c.get("quiet", v));         // a flag has no value
    EXPECT_TRUE(c.has("console"));
    EXPECT_EQ(get_or(c, "console"), "com2");
    // "key=" has an empty value, which is not the same as absent.
    EXPECT_TRUE(c.has("nosmp"));
    ASSERT_TRUE(c.get("nosmp", v));
    EXPECT_TRUE(v.empty());
    u64 x;
    EXPECT_FALSE(c.get_u64("nosmp", x));
}

TEST(Cmdline, LastValueWins)
{
    Line l("loglevel=info console=com1 loglevel=debug console=none loglevel=trace");
    auto c = l.cl();
    EXPECT_EQ(get_or(c, "loglevel"), "trace");
    EXPECT_EQ(get_or(c, "console"), "none");
    Line n("mem=1 mem=0x20 mem=3");
    u64 x = 0;
    ASSERT_TRUE(n.cl().get_u64("mem", x));
    EXPECT_EQ(x, 3u);
    // The last value wins even when it is malformed.
    Line bad("mem=1 mem=oops");
    EXPECT_FALSE(bad.cl().get_u64("mem", x));
}

TEST(Cmdline, KeysThatArePrefixesOfOthers)
{
    Line l("consoleX=a console=b cons=c console2");
    auto c = l.cl();
    EXPECT_EQ(get_or(c, "console"), "b");
    EXPECT_EQ(get_or(c, "consoleX"), "a");
    EXPECT_EQ(get_or(c, "cons"), "c");
    EXPECT_EQ(get_or(c, "con"), "<absent>");
    EXPECT_EQ(get_or(c, "consoleXY"), "<absent>");
    EXPECT_TRUE(c.has("console2"));
    EXPECT_FALSE(c.has("consol"));
    EXPECT_FALSE(c.has("console22"));

    // Only the longer key present: the shorter one is absent.
    Line only("consoleX=a");
    EXPECT_FALSE(only.cl().has("console"));
    EXPECT_EQ(get_or(only.cl(), "console"), "<absent>");
    Line only_short("console=a");
    EXPECT_FALSE(only_short.cl().has("consoleX"));
}

TEST(Cmdline, WhitespaceSeparators)
{
    Line l("\t console=com3\tloglevel=warn\nsmp=4\r\nquiet  \t\n");
    auto c = l.cl();
    EXPECT_EQ(get_or(c, "console"), "com3");
    EXPECT_EQ(get_or(c, "loglevel"), "warn");
    u64 x = 0;
    ASSERT_TRUE(c.get_u64("smp", x));
    EXPECT_EQ(x, 4u);
    EXPECT_TRUE(c.has("quiet"));
    EXPECT_FALSE(c.has("quiet\t"));
}

TEST(Cmdline, ValueContainingEquals)
{
    Line l("root=UUID=1234-abcd opt==x eq=a=b=c");
    auto c = l.cl();
    EXPECT_EQ(get_or(c, "root"), "UUID=1234-abcd");   // split at the first '='
    EXPECT_EQ(get_or(c, "opt"), "=x");
    EXPECT_EQ(get_or(c, "eq"), "a=b=c");
    EXPECT_FALSE(c.has("UUID"));
}

TEST(Cmdline, LengthBounded)
{
    // The length cuts a value short: "console=com2" of "console=com2loglevel=debug".
    std::string text = "console=com2loglevel=debug";
    Line l(text.substr(0, 12));
    auto c = l.cl();
    EXPECT_EQ(get_or(c, "console"), "com2");
    EXPECT_FALSE(c.has("loglevel"));

    // A key at the very end with no terminator after it.
    Line flag("a=1 quiet");
    EXPECT_TRUE(flag.cl().has("quiet"));
    Line val("a=1 smp=12");
    u64 x = 0;
    ASSERT_TRUE(val.cl().get_u64("smp", x));
    EXPECT_EQ(x, 12u);
    Line eq("a=1 key=");
    StrView v;
    ASSERT_TRUE(eq.cl().get("key", v));
    EXPECT_EQ(v.n, 0u);

    // Cut inside a key: "cons" is not "console".
    Line cut(text.substr(0, 4));
    EXPECT_FALSE(cut.cl().has("console"));
    EXPECT_TRUE(cut.cl().has("cons"));

    // Shorter views of one buffer.
    const char *s = "abc=1 def=2";
    EXPECT_FALSE(Cmdline(s, 5).has("def"));
    EXPECT_EQ(get_or(Cmdline(s, 4), "abc"), "");
    EXPECT_FALSE(Cmdline(s, 0).has("abc"));
}

TEST(Cmdline, StopsAtNul)
{
    // GRUB's string is NUL-terminated inside its tag; nothing after the NUL counts.
    const char s[] = "a=1\0b=2";
    Cmdline c(s, sizeof(s) - 1);
    EXPECT_TRUE(c.has("a"));
    EXPECT_FALSE(c.has("b"));
}

TEST(Cmdline, GetU64)
{
    Line l("smp=8 base=0x1000 big=18446744073709551615 over=18446744073709551616 neg=-1 size=4k flag");
    auto c = l.cl();
    u64 x = 0;
    ASSERT_TRUE(c.get_u64("smp", x));
    EXPECT_EQ(x, 8u);
    ASSERT_TRUE(c.get_u64("base", x));
    EXPECT_EQ(x, 0x1000u);
    ASSERT_TRUE(c.get_u64("big", x));
    EXPECT_EQ(x, ~0ull);
    EXPECT_FALSE(c.get_u64("over", x));
    EXPECT_FALSE(c.get_u64("neg", x));
    EXPECT_FALSE(c.get_u64("size", x));
    EXPECT_FALSE(c.get_u64("flag", x));
    EXPECT_FALSE(c.get_u64("absent", x));
}

TEST(ParseU64, Decimal)
{
    u64 x = 0;
    ASSERT_TRUE(parse("0", x));
    EXPECT_EQ(x, 0u);
    ASSERT_TRUE(parse("7", x));
    EXPECT_EQ(x, 7u);
    ASSERT_TRUE(parse("00", x));
    EXPECT_EQ(x, 0u);
    ASSERT_TRUE(parse("1016", x));
    EXPECT_EQ(x, 1016u);
    ASSERT_TRUE(parse("0010", x));                      // no octal
    EXPECT_EQ(x, 10u);
    ASSERT_TRUE(parse("4294967296", x));
    EXPECT_EQ(x, 4294967296ull);
    ASSERT_TRUE(parse("18446744073709551615", x));      // 2^64 - 1
    EXPECT_EQ(x, ~0ull);
    ASSERT_TRUE(parse("000000000000000000000018446744073709551615", x));
    EXPECT_EQ(x, ~0ull);
    ASSERT_TRUE(parse("18446744073709551610", x));
    EXPECT_EQ(x, ~0ull - 5);
}

TEST(ParseU64, Hex)
{
    u64 x = 0;
    ASSERT_TRUE(parse("0x0", x));
    EXPECT_EQ(x, 0u);
    ASSERT_TRUE(parse("0x3f8", x));
    EXPECT_EQ(x, 0x3f8u);
    ASSERT_TRUE(parse("0X2F8", x));
    EXPECT_EQ(x, 0x2f8u);
    ASSERT_TRUE(parse("0xDeadBeef", x));
    EXPECT_EQ(x, 0xdeadbeefu);
    ASSERT_TRUE(parse("0x100000000", x));
    EXPECT_EQ(x, 0x100000000ull);
    ASSERT_TRUE(parse("0xffffffffffffffff", x));
    EXPECT_EQ(x, ~0ull);
    ASSERT_TRUE(parse("0xFFFFFFFFFFFFFFFF", x));
    EXPECT_EQ(x, ~0ull);
    ASSERT_TRUE(parse("0x0000000000000000000000001", x));
    EXPECT_EQ(x, 1u);
    ASSERT_TRUE(parse("0x8000000000000000", x));
    EXPECT_EQ(x, 1ull << 63);
}

TEST(ParseU64, Garbage)
{
    u64 x = 1234;
    for (const char *s : {"", "x", "0x", "0X", "x10", "-1", "+1", " 1", "1 ", "12k", "1.5", "0x1g", "0xg",
                          "1e3", "0b101", "abc", "0x-1", "0x 1", "00x1", "1x1", "0xx1"}) {
        EXPECT_FALSE(parse(s, x)) << '"' << s << '"';
        EXPECT_EQ(x, 1234u) << '"' << s << '"';      // out is left alone on failure
    }
    // Digits beyond the base: a-f are only hex.
    EXPECT_FALSE(parse("12ab", x));
    EXPECT_FALSE(parse(std::string("1\0" "2", 3), x));
}

TEST(ParseU64, Overflow)
{
    u64 x = 99;
    EXPECT_FALSE(parse("18446744073709551616", x));     // 2^64 exactly
    EXPECT_FALSE(parse("18446744073709551620", x));
    EXPECT_FALSE(parse("18446744073709551625", x));
    EXPECT_FALSE(parse("18446744073709551699", x));
    EXPECT_FALSE(parse("18446744073709552000", x));
    EXPECT_FALSE(parse("99999999999999999999", x));
    EXPECT_FALSE(parse("184467440737095516150", x));    // 10 * (2^64 - 1)
    EXPECT_FALSE(parse("36893488147419103232", x));     // 2^65
    EXPECT_FALSE(parse("0x10000000000000000", x));      // 2^64 exactly
    EXPECT_FALSE(parse("0xffffffffffffffff0", x));
    EXPECT_FALSE(parse("0x1ffffffffffffffff", x));
    EXPECT_EQ(x, 99u);
}

TEST(ParseU64, LengthBounded)
{
    const char s[] = "123456";
    u64 x = 0;
    ASSERT_TRUE(parse_u64(StrView{s, 3}, x));
    EXPECT_EQ(x, 123u);
    ASSERT_TRUE(parse_u64(StrView{"0x1fzz", 4}, x));
    EXPECT_EQ(x, 0x1fu);
    // "0x" cut to two characters has no digits; cut to one it is a plain 0.
    EXPECT_FALSE(parse_u64(StrView{"0x10", 2}, x));
    ASSERT_TRUE(parse_u64(StrView{"0x10", 1}, x));
    EXPECT_EQ(x, 0u);
    EXPECT_FALSE(parse_u64(StrView{s, 0}, x));
    EXPECT_FALSE(parse_u64(StrView{}, x));
}

// Every value round-trips through decimal and hex text.
TEST(ParseU64, RoundTrip)
{
    u64 v = 1;
    for (int i = 0; i < 200; i++) {
        v = v * 6364136223846793005ull + 1442695040888963407ull;
        for (u64 w : {v, v >> (i % 64), u64(i)}) {
            u64 x = 0;
            ASSERT_TRUE(parse(std::to_string(w), x));
            EXPECT_EQ(x, w);
            char hex[24];
            snprintf(hex, sizeof(hex), "0x%llx", (unsigned long long)w);
            ASSERT_TRUE(parse(hex, x));
            EXPECT_EQ(x, w);
        }
    }
}

} // namespace

// The management console's language (kernel/mgmt/command.cpp): lines gathered
// from serial bytes, refused when too long or holding control bytes, and parsed.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernel/mgmt/command.hpp"

namespace {

using mgmt::LineReader;

struct Fed {
    std::vector<std::string> lines;
    int too_long = 0, bad = 0;
};

Fed feed(LineReader &r, const std::string &bytes)
{
    Fed f;
    for (char c : bytes) {
        switch (r.feed(u8(c))) {
        case LineReader::Got::line: f.lines.emplace_back(r.line().p, r.line().n); break;
        case LineReader::Got::too_long: f.too_long++; break;
        case LineReader::Got::bad_byte: f.bad++; break;
        case LineReader::Got::none: break;
        }
    }
    return f;
}

TEST(MgmtLine, GathersLinesEndedByCrLfOrBoth)
{
    LineReader r;
    Fed f = feed(r, "list\r\nstats web\nstop db\r\r\n\nhelp");
    EXPECT_EQ(f.lines, (std::vector<std::string>{"list", "stats web", "stop db"}));
    f = feed(r, "\n");
    EXPECT_EQ(f.lines, (std::vector<std::string>{"help"}));
    EXPECT_EQ(f.too_long + f.bad, 0);
}

TEST(MgmtLine, BackspaceAndDelEdit)
{
    LineReader r;
    Fed f = feed(r, "lisx\x7ft\n\b\bstp\bop a\n");
    EXPECT_EQ(f.lines, (std::vector<std::string>{"list", "stop a"}));
}

TEST(MgmtLine, RefusesAnOversizedLineWholeAndRecovers)
{
    LineReader r;
    Fed f = feed(r, std::string(mgmt::MAX_LINE, 'a') + "\n");
    EXPECT_EQ(f.lines.size(), 1u);
    f = feed(r, std::string(mgmt::MAX_LINE + 1, 'a') + "\n");
    EXPECT_TRUE(f.lines.empty());
    EXPECT_EQ(f.too_long, 1);
    // 4 KiB of garbage (every byte value but the line ends), then a good line.
    std::string junk;
    for (int i = 0; i < 4096; i++) {
        char c = char(i * 7 + 3);
        junk += (c == '\n' || c == '\r') ? 'x' : c;
    }
    f = feed(r, junk + "\nlist\n");
    EXPECT_EQ(f.too_long + f.bad, 1);
    EXPECT_EQ(f.lines, (std::vector<std::string>{"list"}));
}

TEST(MgmtLine, RefusesControlBytes)
{
    LineReader r;
    Fed f = feed(r, std::string("stop\x1b[A web\n") + "stop web\n");
    EXPECT_EQ(f.bad, 1);
    EXPECT_EQ(f.lines, (std::vector<std::string>{"stop web"}));
    f = feed(r, std::string("li\0st\n", 6));
    EXPECT_EQ(f.bad, 1);
    EXPECT_TRUE(f.lines.empty());
}

// The command's views point into the line: keep it alive as long as the command.
std::string held;
const char *parse(const std::string &s, mgmt::Command &c)
{
    held = s;
    return mgmt::parse_command({held.data(), held.size()}, c);
}

TEST(MgmtCommand, ParsesEveryVerb)
{
    mgmt::Command c;
    ASSERT_EQ(parse("list", c), nullptr);
    EXPECT_EQ(c.verb, mgmt::Verb::list);
    ASSERT_EQ(parse("  stats  ", c), nullptr);
    EXPECT_EQ(c.verb, mgmt::Verb::stats);
    EXPECT_TRUE(c.guest.empty());
    ASSERT_EQ(parse("stats web", c), nullptr);
    EXPECT_TRUE(c.guest.eq("web"));
    for (auto [s, v] : {std::pair{"stop db", mgmt::Verb::stop}, {"start db", mgmt::Verb::start},
                        {"restart db", mgmt::Verb::restart}, {"pause db", mgmt::Verb::pause},
                        {"resume db", mgmt::Verb::resume}}) {
        ASSERT_EQ(parse(s, c), nullptr) << s;
        EXPECT_EQ(c.verb, v);
        EXPECT_TRUE(c.guest.eq("db"));
    }
    ASSERT_EQ(parse("log debug", c), nullptr);
    EXPECT_EQ(c.verb, mgmt::Verb::log);
    EXPECT_EQ(c.level, Level::debug);
    ASSERT_EQ(parse("help", c), nullptr);
    EXPECT_EQ(c.verb, mgmt::Verb::help);
}

TEST(MgmtCommand, ExplainsWhatItRefuses)
{
    mgmt::Command c;
    EXPECT_STREQ(parse("reboot", c), "unknown command (try help)");
    EXPECT_STREQ(parse("List", c), "unknown command (try help)");
    EXPECT_STREQ(parse("stop", c), "which guest? (try list)");
    EXPECT_STREQ(parse("stop a b", c), "too many arguments (try help)");
    EXPECT_STREQ(parse("list all", c), "takes no argument");
    EXPECT_STREQ(parse("log loud", c), "expected error, warn, info or debug");
    EXPECT_STREQ(parse("log", c), "expected error, warn, info or debug");
}

} // namespace

// Keel's configuration file (kernel/guest/config.cpp, docs/CONFIG.md).
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernel/guest/config.hpp"

namespace {

// Parses an exact-size, not NUL-terminated heap copy of the text (ASan
// catches any read past the length) and keeps it alive with the result.
struct Parsed {
    std::unique_ptr<char[]> text;
    usize len = 0;
    std::unique_ptr<KeelConfig> cfg = std::make_unique<KeelConfig>();
    ConfigError err{};
    bool ok = false;

    explicit Parsed(const std::string &s) : text(std::make_unique<char[]>(s.size() ? s.size() : 1)), len(s.size())
    {
        memcpy(text.get(), s.data(), s.size());
        ok = parse_config(text.get(), len, *cfg, err).ok();
    }
    const GuestConfig &guest(u32 i) const { return cfg->guests[i]; }
    std::string error() const { return ok ? "ok" : "line " + std::to_string(err.line) + ": " + err.msg; }
};

std::string str(StrView v) { return std::string(v.p ? v.p : "", v.n); }

// "line N: message" for a config that must fail, "ok" for one that parses.
std::string error_of(const std::string &s) { return Parsed(s).error(); }

std::string guest(const std::string &name, const std::string &extra = "")
{
    return "[[guest]]\nname = \"" + name + "\"\nkernel = \"k.elf\"\nmemory = \"64M\"\n" + extra;
}

// A minimal valid guest followed by one more key line (on line 5).
std::string with(const std::string &line) { return guest("a", line + "\n"); }

const char FULL[] = R"(# Keel configuration
[keel]
on_idle = "poweroff"      # when every guest has ended
time_slice = "500us"
loglevel = "debug"

[[guest]]
name = "alpha"
kernel = "guests/hello.elf"
modules = ["a.bin", "b.bin",]
cmdline = "console=ttyS0 quiet"
initrd = "initrd.gz"
memory = "64M"
cpus = 2
pin = [0, 3]
on_exit = "restart"

[[guest]]   # the second one
name = "Beta_2-x"
kernel = "../b.elf"
memory = 0x200_0000
cpus = +4
pin = [ 7 ]
on_bad_access = "stop"
)";

TEST(Config, FullExample)
{
    Parsed p(FULL);
    ASSERT_TRUE(p.ok) << p.error();
    const KeelConfig &c = *p.cfg;
    EXPECT_EQ(c.on_idle, KeelConfig::OnIdle::poweroff);
    EXPECT_EQ(c.time_slice_ns, 500'000u);
    EXPECT_TRUE(c.has_loglevel);
    EXPECT_EQ(c.loglevel, Level::debug);
    ASSERT_EQ(c.guest_count, 2u);

    const GuestConfig &a = p.guest(0);
    EXPECT_EQ(str(a.name), "alpha");
    EXPECT_EQ(str(a.kernel), "guests/hello.elf");
    ASSERT_EQ(a.module_count, 2u);
    EXPECT_EQ(str(a.modules[0]), "a.bin");
    EXPECT_EQ(str(a.modules[1]), "b.bin");
    EXPECT_EQ(str(a.cmdline), "console=ttyS0 quiet");
    EXPECT_EQ(str(a.initrd), "initrd.gz");
    EXPECT_EQ(a.memory, 64 * MiB);
    EXPECT_EQ(a.cpus, 2u);
    ASSERT_EQ(a.pin_count, 2u);
    EXPECT_EQ(a.pin[0], 0);
    EXPECT_EQ(a.pin[1], 3);
    EXPECT_EQ(a.on_exit, GuestConfig::OnExit::restart);
    EXPECT_EQ(a.line, 7u);
    EXPECT_EQ(a.kernel_line, 9u);   // the lines of the keys naming files (keel-config-check's messages)
    EXPECT_EQ(a.modules_line, 10u);
    EXPECT_EQ(a.initrd_line, 12u);

    const GuestConfig &b = p.guest(1);
    EXPECT_EQ(str(b.name), "Beta_2-x");
    EXPECT_EQ(str(b.kernel), "../b.elf");
    EXPECT_EQ(b.memory, 32 * MiB);
    EXPECT_EQ(b.cpus, 4u);
    ASSERT_EQ(b.pin_count, 1u);
    EXPECT_EQ(b.pin[0], 7);
    EXPECT_EQ(b.on_exit, GuestConfig::OnExit::stop);
    EXPECT_EQ(b.on_bad_access, GuestConfig::OnBadAccess::stop);
    EXPECT_TRUE(b.cmdline.empty());
    EXPECT_TRUE(b.initrd.empty());
    EXPECT_EQ(b.module_count, 0u);
    EXPECT_EQ(b.line, 18u);
    EXPECT_EQ(b.kernel_line, 20u);
    EXPECT_EQ(b.initrd_line, 0u);
    EXPECT_EQ(b.modules_line, 0u);

    // No escapes: every string is a view into the text itself.
    EXPECT_EQ(c.pool_used, 0u);
    EXPECT_GE(a.name.p, p.text.get());
    EXPECT_LT(a.name.p, p.text.get() + p.len);
}

TEST(Config, Defaults)
{
    Parsed p(guest("solo"));
    ASSERT_TRUE(p.ok) << p.error();
    EXPECT_EQ(p.cfg->on_idle, KeelConfig::OnIdle::halt);
    EXPECT_EQ(p.cfg->time_slice_ns, 10'000'000u);
    EXPECT_FALSE(p.cfg->has_loglevel);
    ASSERT_EQ(p.cfg->guest_count, 1u);
    const GuestConfig &g = p.guest(0);
    EXPECT_EQ(g.cpus, 1u);
    EXPECT_EQ(g.pin_count, 0u);
    EXPECT_EQ(g.module_count, 0u);
    EXPECT_EQ(g.on_exit, GuestConfig::OnExit::stop);
    EXPECT_EQ(g.on_bad_access, GuestConfig::OnBadAccess::pc);
    EXPECT_TRUE(g.cmdline.empty());
    EXPECT_TRUE(g.initrd.empty());

    // An empty [keel] table, an empty file and a file of comments are valid.
    EXPECT_EQ(error_of("[keel]\n" + guest("x")), "ok");
    for (const char *s : {"", "\n", "# only a comment", "  \t\n\n# x\n[keel]\n"}) {
        Parsed e(s);
        EXPECT_TRUE(e.ok) << e.error();
        EXPECT_EQ(e.cfg->guest_count, 0u);
        EXPECT_EQ(e.err.line, 0u);
    }
    // A null pointer with a length parses as empty.
    auto cfg = std::make_unique<KeelConfig>();
    ConfigError err;
    EXPECT_TRUE(parse_config(nullptr, 5, *cfg, err).ok());

    // `out` is reset: a previous parse leaves nothing behind.
    Parsed full(FULL);
    ASSERT_TRUE(full.ok);
    std::string small = "[keel]\n";
    EXPECT_TRUE(parse_config(small.data(), small.size(), *full.cfg, err).ok());
    EXPECT_EQ(full.cfg->guest_count, 0u);
    EXPECT_FALSE(full.cfg->has_loglevel);
    EXPECT_EQ(full.cfg->on_idle, KeelConfig::OnIdle::halt);
}

struct Case {
    std::string text;
    std::string want;
};

void expect_all(const std::vector<Case> &cases)
{
    for (const Case &c : cases) EXPECT_EQ(error_of(c.text), c.want) << "config:\n" << c.text;
}

TEST(Config, SyntaxErrors)
{
    expect_all({
        {"[keel]\non_idle = \"halt\"\nfoo", "line 3: expected '=' after \"foo\""},
        {"[keel]\n= 1\n", "line 2: unexpected character '='"},
        {"[keel]\n\xc3\xa9 = 1\n", "line 2: unexpected byte 0xc3 (only ASCII is supported)"},
        {"[keel]\n\"on_idle\" = \"halt\"\n", "line 2: quoted keys are not supported"},
        {"[keel]\non.idle = \"halt\"\n", "line 2: dotted keys are not supported"},
        {"[keel]\non_idle =\n", "line 2: on_idle: missing value"},
        {"[keel]\non_idle = # nothing\n", "line 2: on_idle: missing value"},
        {"[keel]\non_idle = \"halt\" x\n", "line 2: on_idle: unexpected text after the value"},
        {"[keel]\non_idle = \"halt\"\"\"\n", "line 2: on_idle: unexpected text after the value"},
        {"[keel]\non_idle = \"\"\"halt\"\"\"\n", "line 2: on_idle: multi-line strings are not supported"},
        {"[keel]\non_idle = 'halt'\n", "line 2: on_idle: literal strings ('...') are not supported: use \"...\""},
        {"[keel]\non_idle = \"halt\n", "line 2: on_idle: unterminated string (strings must end on the same line)"},
        {"[keel]\non_idle = \"halt\\\n\"", "line 2: on_idle: unterminated string (strings must end on the same line)"},
        {"[keel]\non_idle = {a = 1}\n", "line 2: on_idle: inline tables are not supported"},
        {"[keel]\non_idle = 1.5\n", "line 2: on_idle: floats are not supported"},
        {"[keel]\non_idle = 1e3\n", "line 2: on_idle: floats are not supported"},
        {"[keel]\non_idle = -inf\n", "line 2: on_idle: floats are not supported"},
        {"[keel]\non_idle = 1979-05-27\n", "line 2: on_idle: dates and times are not supported"},
        {"[keel]\non_idle = 07:32:00\n", "line 2: on_idle: dates and times are not supported"},
        {"[keel]\non_idle = poweroff\n", "line 2: on_idle: unexpected value \"poweroff\" (strings need double quotes)"},
        {"[keel]\non_idle = @\n", "line 2: on_idle: unexpected character '@'"},
        {"[keel]\non_idle = \"\\x41\"\n", "line 2: on_idle: unsupported escape \\x"},
        {"[keel]\non_idle = \"\\r\"\n", "line 2: on_idle: unsupported escape \\r"},
        {"[keel]\non_idle = \"\\u00e9\"\n", "line 2: on_idle: non-ASCII escape \\u00e9 (only ASCII is supported)"},
        {"[keel]\non_idle = \"\\u12\"\n", "line 2: on_idle: \\u needs four hex digits"},
        {"[keel]\non_idle = \"h\xc3\xa9\"\n", "line 2: on_idle: non-ASCII characters are not supported"},
        {"on_idle = \"halt\"\n", "line 1: \"on_idle\" is outside a table: put it under [keel] or [[guest]]"},
        // Tables.
        {"[keel\n", "line 1: expected ']'"},
        {"[[guest]\n", "line 1: expected ']]'"},
        {"[[guest] ]\n", "line 1: expected ']]'"},
        {"[]\n", "line 1: expected a table name"},
        {"[\"keel\"]\n", "line 1: quoted table names are not supported"},
        {"[keel.sub]\n", "line 1: dotted table names other than [[guest.disk]], [[guest.nic]] and [[guest.pci]] are not supported"},
        {"[keel] x\n", "line 1: unexpected text after the table header"},
        {"[keel]\n[keel]\n", "line 2: duplicate [keel] table (first at line 1)"},
        {"[[keel]]\n", "line 1: keel is a single table: write [keel]"},
        {"[guest]\n", "line 1: guest is an array of tables: write [[guest]]"},
        {"\n[guests]\n", "line 2: unknown table [guests] (expected [keel], [[guest]], [[guest.disk]], [[guest.nic]], [[guest.pci]] or [[network]])"},
        // Keys.
        {"[keel]\nfoo = 1\n", "line 2: unknown key \"foo\" in [keel]"},
        {"[keel]\nname = \"x\"\n", "line 2: unknown key \"name\" in [keel]"},
        {with("on_idle = \"halt\""), "line 5: unknown key \"on_idle\" in [[guest]]"},
        {"[keel]\non_idle = \"halt\"\n\non_idle = \"halt\"\n", "line 4: duplicate key \"on_idle\""},
        {with("memory = \"64M\""), "line 5: duplicate key \"memory\""},
        // Arrays.
        {with("pin = [0, 1"), "line 5: pin: unterminated array (arrays must end on the same line)"},
        {with("pin = [0, # one"), "line 5: pin: unterminated array (arrays must end on the same line)"},
        {with("pin = [0 1]"), "line 5: pin: expected ',' or ']' in the array"},
        {with("pin = [,]"), "line 5: pin: expected a value before ','"},
        {with("pin = [0,,1]"), "line 5: pin: expected a value before ','"},
        {with("pin = [[0]]"), "line 5: pin: nested arrays are not supported"},
        {with("pin = [0, \"1\"]"), "line 5: pin: arrays must not mix types"},
        {with("pin = [true]"), "line 5: pin: expected an array of CPU numbers"},
        {with("pin = 0"), "line 5: pin: expected an array of CPU numbers"},
        {with("modules = \"a.bin\""), "line 5: modules: expected an array of strings"},
        {with("modules = [1]"), "line 5: modules: expected an array of strings"},
        {with("modules = [\"a\", 1]"), "line 5: modules: arrays must not mix types"},
        {with("modules = [\"a\" \"b\"]"), "line 5: modules: expected ',' or ']' in the array"},
        {with("modules = [\"a\"] x"), "line 5: modules: unexpected text after the value"},
        {with("modules = [{}]"), "line 5: modules: inline tables are not supported"},
    });
}

TEST(Config, IntegerSyntax)
{
    expect_all({
        {with("cpus = 0x10"), "ok"},
        {with("cpus = 1_0"), "ok"},
        {with("cpus = +1"), "ok"},
        {with("cpus = 0x_1"), "line 5: cpus: invalid integer \"0x_1\""},
        {with("cpus = 1__0"), "line 5: cpus: invalid integer \"1__0\""},
        {with("cpus = 1_"), "line 5: cpus: invalid integer \"1_\""},
        {with("cpus = 0x"), "line 5: cpus: invalid integer \"0x\""},
        {with("cpus = 0X10"), "line 5: cpus: invalid integer \"0X10\""},
        {with("cpus = 12abc"), "line 5: cpus: invalid integer \"12abc\""},
        {with("cpus = 01"), "line 5: cpus: leading zeros are not allowed"},
        {with("cpus = -0x1"), "line 5: cpus: hex integers cannot have a sign"},
        {with("cpus = 0o7"), "line 5: cpus: octal and binary integers are not supported"},
        {with("cpus = 0b1"), "line 5: cpus: octal and binary integers are not supported"},
        {with("cpus = +"), "line 5: cpus: unexpected value \"+\" (strings need double quotes)"},
        {with("cpus = 99999999999999999999"), "line 5: cpus: integer too large"},
        {with("cpus = 0x1_0000_0000_0000_0000"), "line 5: cpus: integer too large"},
        {with("cpus = -1"), "line 5: cpus: must be 1..64"},
        {with("cpus = -0"), "line 5: cpus: must be 1..64"},
        {with("cpus = 0"), "line 5: cpus: must be 1..64"},
        {with("cpus = 65"), "line 5: cpus: must be 1..64"},
        {with("cpus = true"), "line 5: cpus: expected an integer"},
        {with("cpus = \"2\""), "line 5: cpus: expected an integer"},
        {with("cpus = [2]"), "line 5: cpus: expected an integer"},
    });
    Parsed p(with("cpus = 6_4"));
    ASSERT_TRUE(p.ok);
    EXPECT_EQ(p.guest(0).cpus, 64u);
}

TEST(Config, KeelValues)
{
    expect_all({
        {"[keel]\non_idle = \"reboot\"\n", "line 2: on_idle: expected \"halt\" or \"poweroff\""},
        {"[keel]\non_idle = true\n", "line 2: on_idle: expected \"halt\" or \"poweroff\""},
        {"[keel]\non_idle = \"Halt\"\n", "line 2: on_idle: expected \"halt\" or \"poweroff\""},
        {"[keel]\nloglevel = \"verbose\"\n", "line 2: loglevel: expected \"error\", \"warn\", \"info\" or \"debug\""},
        {"[keel]\nloglevel = 3\n", "line 2: loglevel: expected a string"},
        {"[keel]\ntime_slice = 10\n", "line 2: time_slice: expected a duration such as \"10ms\""},
        {"[keel]\ntime_slice = \"10\"\n", "line 2: time_slice: expected a duration such as \"10ms\""},
        {"[keel]\ntime_slice = \"10s\"\n", "line 2: time_slice: must be 100us..1s"},
        {"[keel]\ntime_slice = \"10 ms\"\n", "line 2: time_slice: expected a duration such as \"10ms\""},
        {"[keel]\ntime_slice = \"ms\"\n", "line 2: time_slice: expected a duration such as \"10ms\""},
        {"[keel]\ntime_slice = \"10msx\"\n", "line 2: time_slice: expected a duration such as \"10ms\""},
        {"[keel]\ntime_slice = \"99us\"\n", "line 2: time_slice: must be 100us..1s"},
        {"[keel]\ntime_slice = \"1001ms\"\n", "line 2: time_slice: must be 100us..1s"},
        {"[keel]\ntime_slice = \"0ms\"\n", "line 2: time_slice: must be 100us..1s"},
        {"[keel]\ntime_slice = \"99999999999999999999999ms\"\n", "line 2: time_slice: must be 100us..1s"},
        {"[keel]\ntime_slice = \"18446744073709551ms\"\n", "line 2: time_slice: must be 100us..1s"},
    });
    struct { const char *v; u64 ns; } ok[] = {
        {"100us", 100'000}, {"1s", 1'000'000'000}, {"1000ms", 1'000'000'000}, {"1000000us", 1'000'000'000}, {"1ms", 1'000'000},
    };
    for (auto &o : ok) {
        Parsed p(std::string("[keel]\ntime_slice = \"") + o.v + "\"\n");
        ASSERT_TRUE(p.ok) << p.error();
        EXPECT_EQ(p.cfg->time_slice_ns, o.ns) << o.v;
    }
    const char *levels[] = {"error", "warn", "info", "debug"};
    for (unsigned i = 0; i < 4; i++) {
        Parsed p(std::string("[keel]\nloglevel = \"") + levels[i] + "\"\n");
        ASSERT_TRUE(p.ok) << p.error();
        EXPECT_EQ(p.cfg->loglevel, Level(i));
    }
    Parsed h("[keel]\non_idle = \"halt\"\n");
    ASSERT_TRUE(h.ok);
    EXPECT_EQ(h.cfg->on_idle, KeelConfig::OnIdle::halt);
}

TEST(Config, GuestValues)
{
    const std::string k = "kernel = \"k.elf\"\n", m = "memory = \"64M\"\n";
    expect_all({
        {"[[guest]]\nname = \"\"\n", "line 2: name: must be 1 to 31 characters"},
        {"[[guest]]\nname = \"" + std::string(32, 'a') + "\"\n", "line 2: name: must be 1 to 31 characters"},
        {"[[guest]]\nname = \"a b\"\n", "line 2: name: only A-Z a-z 0-9 _ - are allowed"},
        {"[[guest]]\nname = \"a.b\"\n", "line 2: name: only A-Z a-z 0-9 _ - are allowed"},
        {"[[guest]]\nname = 1\n", "line 2: name: expected a string"},
        {"[[guest]]\nkernel = \"\"\n", "line 2: kernel: expected a non-empty path"},
        {"[[guest]]\nkernel = \"a b.elf\"\n", "line 2: kernel: spaces and control characters are not allowed in paths"},
        {"[[guest]]\nkernel = \"a\\tb\"\n", "line 2: kernel: spaces and control characters are not allowed in paths"},
        {"[[guest]]\nkernel = \"" + std::string(256, 'k') + "\"\n", "line 2: kernel: path longer than 255 bytes"},
        {"[[guest]]\nkernel = [\"k\"]\n", "line 2: kernel: expected a path string"},
        {"[[guest]]\ninitrd = \"\"\n", "line 2: initrd: expected a non-empty path"},
        {"[[guest]]\nmodules = [\"a\", \"\"]\n", "line 2: modules: expected a non-empty path"},
        {"[[guest]]\nmodules = [\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"]\n", "line 2: modules: at most 8 modules"},
        {"[[guest]]\ncmdline = \"" + std::string(256, 'c') + "\"\n", "line 2: cmdline: longer than 255 bytes"},
        {"[[guest]]\ncmdline = \"a\\nb\"\n", "line 2: cmdline: control characters are not allowed"},
        {"[[guest]]\ncmdline = \"a\tb\"\n", "line 2: cmdline: control characters are not allowed"},
        {"[[guest]]\ncmdline = \"\\u0000\"\n", "line 2: cmdline: control characters are not allowed"},
        {"[[guest]]\non_exit = \"reboot\"\n", "line 2: on_exit: expected \"stop\" or \"restart\""},
        {"[[guest]]\non_bad_access = \"ignore\"\n", "line 2: on_bad_access: expected \"pc\" or \"stop\""},
        {"[[guest]]\non_bad_access = 1\n", "line 2: on_bad_access: expected \"pc\" or \"stop\""},
        // Missing required keys: reported at the [[guest]] header, by name when known.
        {"# c\n[[guest]]\n" + k + m, "line 2: [[guest]]: missing required key \"name\""},
        {"[[guest]]\nname = \"a\"\n" + m, "line 1: guest \"a\": missing required key \"kernel\""},
        {"[[guest]]\nname = \"a\"\n" + k, "line 1: guest \"a\": missing required key \"memory\""},
        {"[[guest]]\nname = \"a\"\n" + k + "[keel]\n", "line 1: guest \"a\": missing required key \"memory\""},
        {guest("a") + "[[guest]]\nname = \"b\"\n" + k + "\n[[guest]]\n", "line 5: guest \"b\": missing required key \"memory\""},
        {"[[guest]]\n", "line 1: [[guest]]: missing required key \"name\""},
    });
    Parsed p(with("cmdline = \"\""));
    ASSERT_TRUE(p.ok) << p.error();
    EXPECT_TRUE(p.guest(0).cmdline.empty());
    Parsed e(with("modules = []"));
    ASSERT_TRUE(e.ok) << e.error();
    EXPECT_EQ(e.guest(0).module_count, 0u);
    std::string eight = "modules = [";
    for (int i = 0; i < 8; i++) eight += "\"m" + std::to_string(i) + "\", ";
    Parsed m8(with(eight + "]"));
    ASSERT_TRUE(m8.ok) << m8.error();
    ASSERT_EQ(m8.guest(0).module_count, 8u);
    EXPECT_EQ(str(m8.guest(0).modules[7]), "m7");
    Parsed longest(with("cmdline = \"" + std::string(255, 'c') + "\""));
    ASSERT_TRUE(longest.ok) << longest.error();
    EXPECT_EQ(longest.guest(0).cmdline.n, 255u);
}

// [[guest.disk]]: a virtio-blk disk of the most recent [[guest]].
std::string disk(const std::string &file, const std::string &extra = "")
{
    return "[[guest.disk]]\nfile = \"" + file + "\"\n" + extra;
}

TEST(Config, Disks)
{
    // The issue's example: one writable disk, readonly defaulting to false.
    Parsed one(R"([[guest]]
name = "web"
kernel = "vmlinuz"
initrd = "initrd.gz"
memory = "256M"

[[guest.disk]]          # virtio-blk disks in order: the first is /dev/vda
file = "web.img"        # raw image, packed by scripts/mkimage
readonly = false        # optional, default false
)");
    ASSERT_TRUE(one.ok) << one.error();
    ASSERT_EQ(one.guest(0).disk_count, 1u);
    EXPECT_EQ(str(one.guest(0).disks[0].file), "web.img");
    EXPECT_FALSE(one.guest(0).disks[0].readonly);
    EXPECT_EQ(one.guest(0).disks[0].line, 7u);

    // Two disks in order; readonly defaults to false; a guest without disks has none.
    Parsed two(guest("a") + disk("root.img") + disk("data.img", "readonly = true\n") + guest("b"));
    ASSERT_TRUE(two.ok) << two.error();
    const GuestConfig &a = two.guest(0);
    ASSERT_EQ(a.disk_count, 2u);
    EXPECT_EQ(str(a.disks[0].file), "root.img");
    EXPECT_FALSE(a.disks[0].readonly);
    EXPECT_EQ(a.disks[0].line, 5u);
    EXPECT_EQ(str(a.disks[1].file), "data.img");
    EXPECT_TRUE(a.disks[1].readonly);
    EXPECT_EQ(a.disks[1].line, 7u);
    EXPECT_EQ(two.guest(1).disk_count, 0u);

    // readonly before file; spaces inside the brackets and around the dot (valid TOML).
    Parsed order(guest("a") + "[[ guest . disk ]]\nreadonly = true\nfile = \"x.img\"\n");
    ASSERT_TRUE(order.ok) << order.error();
    EXPECT_TRUE(order.guest(0).disks[0].readonly);
    EXPECT_EQ(str(order.guest(0).disks[0].file), "x.img");

    // A [keel] table in between: the disk still belongs to the last [[guest]], as in TOML.
    Parsed keel(guest("a") + guest("b") + "[keel]\non_idle = \"poweroff\"\n" + disk("b.img"));
    ASSERT_TRUE(keel.ok) << keel.error();
    EXPECT_EQ(keel.guest(0).disk_count, 0u);
    ASSERT_EQ(keel.guest(1).disk_count, 1u);
    EXPECT_EQ(str(keel.guest(1).disks[0].file), "b.img");
    EXPECT_EQ(keel.cfg->on_idle, KeelConfig::OnIdle::poweroff);

    // Inline comments everywhere; CRLF; an escape in the path.
    Parsed comments(guest("a") + "[[guest.disk]]   # data\r\nfile = \"d\\u0031.img\" # the image\r\n"
                    "readonly = true#ro\r\n");
    ASSERT_TRUE(comments.ok) << comments.error();
    EXPECT_EQ(str(comments.guest(0).disks[0].file), "d1.img");
    EXPECT_TRUE(comments.guest(0).disks[0].readonly);

    // Seven disks (PCI devices 1..7); the eighth is one too many, at its own line.
    std::string seven = guest("a");
    for (int i = 0; i < 7; i++) seven += disk("d" + std::to_string(i) + ".img");
    Parsed p7(seven);
    ASSERT_TRUE(p7.ok) << p7.error();
    EXPECT_EQ(p7.guest(0).disk_count, GuestConfig::MAX_DISKS);
    EXPECT_EQ(str(p7.guest(0).disks[6].file), "d6.img");
    EXPECT_EQ(error_of(seven + disk("d7.img")), "line 19: guest \"a\": too many disks (at most 7)");

    // Read-only images may be shared, within a guest and across guests.
    EXPECT_EQ(error_of(guest("a") + disk("base.img", "readonly = true\n") + guest("b") +
                       disk("base.img", "readonly = true\n") + disk("base.img", "readonly = true\n")),
              "ok");
}

// `device`: a disk on Keel's own storage; `file` is then optional (what
// mkimage --disk-out provisions), and a writable device is named once.
TEST(Config, DiskDevices)
{
    auto dev = [](const std::string &d, const std::string &extra = "") {
        return "[[guest.disk]]\ndevice = \"" + d + "\"\n" + extra;
    };
    Parsed p(guest("a") + dev("nvme0n1p2") + dev("gpt-name:web", "file = \"web.img\"\n") +
             dev("gpt-guid:0fc63daf-8483-4772-8e79-3d69d8477de4", "readonly = true\n") + dev("nvme1n3"));
    ASSERT_TRUE(p.ok) << p.error();
    const GuestConfig &a = p.guest(0);
    ASSERT_EQ(a.disk_count, 4u);
    EXPECT_EQ(str(a.disks[0].device), "nvme0n1p2");
    EXPECT_TRUE(a.disks[0].file.empty());
    EXPECT_EQ(a.disks[0].dev.kind, DeviceKind::nvme_partition);
    EXPECT_EQ(a.disks[0].dev.nsid, 1u);
    EXPECT_EQ(a.disks[0].dev.partition, 2u);
    EXPECT_EQ(a.disks[1].dev.kind, DeviceKind::gpt_name);
    EXPECT_EQ(str(a.disks[1].dev.name), "web");
    EXPECT_EQ(str(a.disks[1].file), "web.img");
    EXPECT_EQ(a.disks[2].dev.kind, DeviceKind::gpt_guid);
    EXPECT_TRUE(a.disks[2].readonly);
    EXPECT_EQ(a.disks[3].dev.kind, DeviceKind::nvme_namespace);
    EXPECT_EQ(a.disks[3].dev.controller, 1u);
    EXPECT_EQ(a.disks[3].dev.nsid, 3u);

    // A read-only device may be shared; a device disk and an image disk never clash.
    EXPECT_EQ(error_of(guest("a") + dev("nvme0n1", "readonly = true\n") + guest("b") +
                       dev("nvme0n1", "readonly = true\n")),
              "ok");
    EXPECT_EQ(error_of(guest("a") + dev("gpt-name:x", "file = \"x.img\"\n") + disk("x.img")), "ok");

    expect_all({
        {guest("a") + dev("sda1"),
         "line 6: device: \"sda1\": a device is nvmeXnY, nvmeXnYpZ, gpt-name:NAME or gpt-guid:GUID"},
        {guest("a") + dev("nvme0n0"), "line 6: device: \"nvme0n0\": namespace IDs start at 1"},
        {guest("a") + "[[guest.disk]]\ndevice = 1\n",
         "line 6: device: expected a device name such as \"nvme0n1p2\" or \"gpt-name:web\""},
        {guest("a") + dev("nvme0n1", "device = \"nvme0n2\"\n"), "line 7: duplicate key \"device\""},
        {guest("a") + dev("nvme0n1p1") + guest("b") + dev("nvme0n1p1"),
         "line 11: device \"nvme0n1p1\": two guests may not share a writable device (also at line 5)"},
        {guest("a") + dev("gpt-name:w", "readonly = true\n") + dev("gpt-name:w"),
         "line 8: device \"gpt-name:w\": a guest may not name a writable device twice (also at line 5)"},
    });
}

TEST(Config, DiskErrors)
{
    const std::string ro = "readonly = true\n";
    expect_all({
        // Where a disk may be.
        {"[[guest.disk]]\nfile = \"a.img\"\n", "line 1: [[guest.disk]] before any [[guest]]"},
        {"[keel]\n[[guest.disk]]\n", "line 2: [[guest.disk]] before any [[guest]]"},
        {guest("a") + "[guest.disk]\n", "line 5: disk is an array of tables: write [[guest.disk]]"},
        {guest("a") + "[[guest.disks]]\n", "line 5: dotted table names other than [[guest.disk]], [[guest.nic]] and [[guest.pci]] are not supported"},
        {guest("a") + "[[guest.disk.x]]\n", "line 5: dotted table names other than [[guest.disk]], [[guest.nic]] and [[guest.pci]] are not supported"},
        {guest("a") + "[[guest.\"disk\"]]\n", "line 5: quoted table names are not supported"},
        {guest("a") + "[[guest.disk]\n", "line 5: expected ']]'"},
        {guest("a") + "[[guest.]]\n", "line 5: dotted table names other than [[guest.disk]], [[guest.nic]] and [[guest.pci]] are not supported"},
        // The guest's own table must be complete before its first disk.
        {"[[guest]]\nname = \"a\"\n" + disk("a.img"), "line 1: guest \"a\": missing required key \"kernel\""},
        // Keys.
        {guest("a") + "[[guest.disk]]\nreadonly = true\n", "line 5: [[guest.disk]]: missing required key \"file\" (or \"device\")"},
        {guest("a") + "[[guest.disk]]\n" + disk("b.img"), "line 5: [[guest.disk]]: missing required key \"file\" (or \"device\")"},
        {guest("a") + disk("a.img", "size = \"1M\"\n"), "line 7: unknown key \"size\" in [[guest.disk]]"},
        {guest("a") + disk("a.img", "name = \"x\"\n"), "line 7: unknown key \"name\" in [[guest.disk]]"},
        {guest("a") + disk("a.img", "file = \"b.img\"\n"), "line 7: duplicate key \"file\""},
        {guest("a") + disk("a.img", ro + ro), "line 8: duplicate key \"readonly\""},
        {with("file = \"a.img\""), "line 5: unknown key \"file\" in [[guest]]"},
        {"[keel]\nreadonly = true\n", "line 2: unknown key \"readonly\" in [keel]"},
        {guest("a") + disk("a.img") + "[keel]\nfile = \"b\"\n", "line 8: unknown key \"file\" in [keel]"},
        // Values.
        {guest("a") + disk(""), "line 6: file: expected a non-empty path"},
        {guest("a") + disk("a b.img"), "line 6: file: spaces and control characters are not allowed in paths"},
        {guest("a") + "[[guest.disk]]\nfile = [\"a.img\"]\n", "line 6: file: expected a path string"},
        {guest("a") + "[[guest.disk]]\nfile = a.img\n", "line 6: file: unexpected value \"a.img\" (strings need double quotes)"},
        {guest("a") + disk("a.img", "readonly = \"true\"\n"), "line 7: readonly: expected true or false"},
        {guest("a") + disk("a.img", "readonly = True\n"), "line 7: readonly: expected true or false"},
        {guest("a") + disk("a.img", "readonly = TRUE\n"), "line 7: readonly: expected true or false"},
        {guest("a") + disk("a.img", "readonly = yes\n"), "line 7: readonly: expected true or false"},
        {guest("a") + disk("a.img", "readonly = 1\n"), "line 7: readonly: expected true or false"},
        {guest("a") + disk("a.img", "readonly = truex\n"), "line 7: readonly: expected true or false"},
        {guest("a") + disk("a.img", "readonly = [true]\n"), "line 7: readonly: expected true or false"},
        {guest("a") + disk("a.img", "readonly =\n"), "line 7: readonly: missing value"},
        {guest("a") + disk("a.img", "readonly = true false\n"), "line 7: readonly: unexpected text after the value"},
        {guest("a") + disk("a.img", "readonly = true,\n"), "line 7: readonly: unexpected text after the value"},
        {guest("a") + disk("a.img", "readonly = {}\n"), "line 7: readonly: inline tables are not supported"},
        // A writable image is named once in the whole file: reported at the second disk's line.
        {guest("a") + disk("w.img") + guest("b") + disk("w.img"),
         "line 11: \"w.img\": two guests may not share a writable image (also at line 5)"},
        {guest("a") + disk("w.img", ro) + guest("b") + disk("w.img"),
         "line 12: \"w.img\": two guests may not share a writable image (also at line 5)"},
        {guest("a") + disk("w.img") + guest("b") + disk("w.img", ro),
         "line 11: \"w.img\": two guests may not share a writable image (also at line 5)"},
        {guest("a") + disk("w.img") + disk("x.img") + disk("w.img", ro),
         "line 9: \"w.img\": a guest may not name a writable image twice (also at line 5)"},
        // The same string after unescaping is the same file.
        {guest("a") + disk("w.img") + guest("b") + disk("\\u0077.img"),
         "line 11: \"w.img\": two guests may not share a writable image (also at line 5)"},
    });
}

TEST(Config, Sizes)
{
    struct { const char *v; u64 bytes; } ok[] = {
        {"\"1M\"", MiB}, {"\"1024K\"", MiB}, {"\"64G\"", 64 * GiB}, {"\"1052672\"", MiB + 4 * KiB},
        {"\"2G\"", 2 * GiB}, {"1048576", MiB}, {"0x1000_0000", 256 * MiB}, {"\"0064M\"", 64 * MiB},
    };
    for (auto &o : ok) {
        Parsed p("[[guest]]\nname = \"a\"\nkernel = \"k\"\nmemory = " + std::string(o.v) + "\n");
        ASSERT_TRUE(p.ok) << o.v << ": " << p.error();
        EXPECT_EQ(p.guest(0).memory, o.bytes) << o.v;
    }
    auto mem = [](const std::string &v) { return error_of("[[guest]]\nname = \"a\"\nkernel = \"k\"\nmemory = " + v + "\n"); };
    const std::string range = "line 4: memory: must be 1M..64G";
    const std::string shape = "line 4: memory: expected a size such as \"64M\"";
    EXPECT_EQ(mem("\"99999999999999G\""), range);
    EXPECT_EQ(mem("\"99999999999999999999999\""), range);
    EXPECT_EQ(mem("\"18014398509481984K\""), range);    // 2^54 K overflows u64
    EXPECT_EQ(mem("\"65G\""), range);
    EXPECT_EQ(mem("\"65537M\""), range);
    EXPECT_EQ(mem("\"1020K\""), range);
    EXPECT_EQ(mem("\"0\""), range);
    EXPECT_EQ(mem("\"0M\""), range);
    EXPECT_EQ(mem("4096"), range);
    EXPECT_EQ(mem("-1048576"), range);
    EXPECT_EQ(mem("\"1048577\""), "line 4: memory: must be a multiple of 4K");
    EXPECT_EQ(mem("\"1025K\""), "line 4: memory: must be a multiple of 4K");
    EXPECT_EQ(mem("1052673"), "line 4: memory: must be a multiple of 4K");
    for (const char *bad : {"\"\"", "\"M\"", "\"64MB\"", "\"64m\"", "\"64 M\"", "\"64T\"", "\"1.5G\"", "\"-64M\"",
                            "\"0x100M\"", "true", "[64]"})
        EXPECT_EQ(mem(bad), shape) << bad;
}

TEST(Config, Pin)
{
    Parsed p(with("cpus = 4\npin = [0, 255, 0x10, 3]"));
    ASSERT_TRUE(p.ok) << p.error();
    const GuestConfig &g = p.guest(0);
    ASSERT_EQ(g.pin_count, 4u);
    EXPECT_EQ(g.pin[0], 0);
    EXPECT_EQ(g.pin[1], 255);
    EXPECT_EQ(g.pin[2], 16);
    EXPECT_EQ(g.pin[3], 3);

    // Fewer entries than vCPUs, an empty list, and pin before cpus.
    EXPECT_EQ(error_of(with("cpus = 4\npin = [1]")), "ok");
    EXPECT_EQ(error_of(with("pin = []")), "ok");
    EXPECT_EQ(error_of(with("pin = [2, 3]\ncpus = 2")), "ok");
    EXPECT_EQ(error_of(with("pin = [1, 1]\ncpus = 2")), "ok");   // sharing a CPU is the scheduler's business

    expect_all({
        {with("pin = [256]"), "line 5: pin: CPU numbers must be 0..255"},
        {with("pin = [-1]"), "line 5: pin: CPU numbers must be 0..255"},
        {with("pin = [0, 1]"), "line 5: pin: 2 entries but only 1 cpus"},
        {with("pin = [0, 1, 2]\n\ncpus = 2\n"), "line 5: pin: 3 entries but only 2 cpus"},
        {with("pin = [0, 1, 2]\ncpus = 2\n[[guest]]"), "line 5: pin: 3 entries but only 2 cpus"},
    });

    std::string all = "cpus = 64\npin = [", over = "cpus = 64\npin = [";
    for (int i = 0; i < 64; i++) all += std::to_string(i) + ",";
    for (int i = 0; i < 65; i++) over += std::to_string(i) + ",";
    Parsed full(with(all + "]"));
    ASSERT_TRUE(full.ok) << full.error();
    EXPECT_EQ(full.guest(0).pin_count, 64u);
    EXPECT_EQ(full.guest(0).pin[63], 63);
    EXPECT_EQ(error_of(with(over + "]")), "line 6: pin: at most 64 entries");
}

TEST(Config, GuestCountAndNames)
{
    std::string s;
    for (int i = 0; i < 16; i++) s += guest("g" + std::to_string(i));
    Parsed p16(s);
    ASSERT_TRUE(p16.ok) << p16.error();
    EXPECT_EQ(p16.cfg->guest_count, 16u);
    EXPECT_EQ(str(p16.guest(15).name), "g15");
    EXPECT_EQ(p16.guest(15).line, 61u);
    EXPECT_EQ(error_of(s + "\n[[guest]]\n"), "line 66: too many guests (at most 16)");

    EXPECT_EQ(error_of(guest("alpha") + guest("beta") + guest("alpha")),
              "line 10: name: \"alpha\" is already the guest at line 1");
    EXPECT_EQ(error_of(guest("alpha") + guest("Alpha")), "ok");   // names are case-sensitive
    // A duplicate written with an escape is still a duplicate.
    EXPECT_EQ(error_of(guest("ab") + guest("\\u0061b")), "line 6: name: \"ab\" is already the guest at line 1");
    EXPECT_EQ(error_of(guest(std::string(31, 'n'))), "ok");
}

TEST(Config, Escapes)
{
    Parsed p(with("cmdline = \"say \\\"hi\\\" \\\\ \\u0041\\u007e!\"\nmodules = [\"a\\u002eb\", \"plain\"]"));
    ASSERT_TRUE(p.ok) << p.error();
    const GuestConfig &g = p.guest(0);
    EXPECT_EQ(str(g.cmdline), "say \"hi\" \\ A~!");
    EXPECT_EQ(str(g.modules[0]), "a.b");
    EXPECT_EQ(str(g.modules[1]), "plain");
    const KeelConfig &c = *p.cfg;
    EXPECT_EQ(c.pool_used, g.cmdline.n + 3);
    EXPECT_EQ(g.cmdline.p, c.pool);                       // unescaped into the pool
    EXPECT_EQ(g.modules[0].p, c.pool + g.cmdline.n);
    EXPECT_GE(g.modules[1].p, p.text.get());              // no escapes: a view of the text
    EXPECT_LT(g.modules[1].p, p.text.get() + p.len);

    // Escaped strings share an 8 KiB pool; exhausting it is an error, not an overflow.
    std::string s;
    std::string esc = "\\\\" + std::string(250, 'x');    // 251 bytes once unescaped
    for (int i = 0; i < 16; i++) {
        s += guest("g" + std::to_string(i));
        s += "cmdline = \"" + esc + "\"\nmodules = [\"" + esc + "\", \"" + esc + "\"]\n";
    }
    Parsed full(s);
    EXPECT_FALSE(full.ok);
    // 8192 / 251 = 32.6: the 33rd escaped string (guest 10's second module, line 10 * 6 + 6) fails.
    EXPECT_EQ(full.error(), "line 66: modules: strings with escapes exceed 8192 bytes in total");
    EXPECT_LE(full.cfg->pool_used, KeelConfig::POOL_SIZE);
}

TEST(Config, LineEndings)
{
    // CRLF everywhere, and no newline at the end of the file.
    std::string crlf;
    for (char ch : std::string(FULL)) {
        if (ch == '\n') crlf += '\r';
        crlf += ch;
    }
    Parsed p(crlf);
    ASSERT_TRUE(p.ok) << p.error();
    EXPECT_EQ(str(p.guest(0).cmdline), "console=ttyS0 quiet");
    EXPECT_EQ(str(p.guest(1).kernel), "../b.elf");
    EXPECT_EQ(p.guest(1).line, 18u);
    EXPECT_EQ(error_of(crlf + "\r\nfoo = 1\r\n"), "line 26: unknown key \"foo\" in [[guest]]");

    std::string full(FULL);
    full.pop_back();
    ASSERT_NE(full.back(), '\n');
    Parsed n(full);
    ASSERT_TRUE(n.ok) << n.error();
    EXPECT_EQ(n.guest(1).pin[0], 7);
    EXPECT_EQ(error_of("[keel]\non_idle = \"halt"), "line 2: on_idle: unterminated string (strings must end on the same line)");
    EXPECT_EQ(error_of("[keel]\ntime_slice = \"1ms\"\r"), "line 2: carriage return without a line feed");
    EXPECT_EQ(error_of("[keel]\r\r\n"), "line 1: carriage return without a line feed");
    EXPECT_EQ(error_of("[keel]\ron_idle = \"halt\"\n"), "line 1: carriage return without a line feed");
    EXPECT_EQ(error_of("\xef\xbb\xbf[keel]\n"), "ok");                    // UTF-8 BOM
    EXPECT_EQ(error_of("[keel]\n\xef\xbb\xbf\n"), "line 2: unexpected byte 0xef (only ASCII is supported)");
}

TEST(Config, ControlBytes)
{
    using namespace std::string_literals;
    EXPECT_EQ(error_of("[keel]\non_idle = \"halt\"\0\n"s), "line 2: NUL byte");
    EXPECT_EQ(error_of("[keel]\n# comment \0 here\n"s), "line 2: NUL byte");
    EXPECT_EQ(error_of("[keel]\non_idle = \"ha\0lt\"\n"s), "line 2: NUL byte");
    EXPECT_EQ(error_of("\0"s), "line 1: NUL byte");
    EXPECT_EQ(error_of(guest("a") + "\0"s), "line 5: NUL byte");   // e.g. a C string's terminator passed in
    EXPECT_EQ(error_of("[keel]\n\x01\n"), "line 2: control character 0x01");
    EXPECT_EQ(error_of("[keel]\n# \x7f\n"), "line 2: control character 0x7f");
    EXPECT_EQ(error_of("[keel]\n\x1b[31m\n"), "line 2: control character 0x1b");
    // Tabs are whitespace; non-ASCII is fine in comments.
    EXPECT_EQ(error_of("\t[keel]\t# caf\xc3\xa9\non_idle\t=\t\"halt\"\t\n"), "ok");
}

TEST(Config, LongLines)
{
    std::string big(1 << 20, 'x');
    EXPECT_EQ(error_of("# " + big + "\n[keel]\n"), "ok");
    EXPECT_EQ(error_of("[keel]\n" + big + " = 1\n"), "line 2: unknown key \"" + std::string(32, 'x') + "\" in [keel]");
    EXPECT_EQ(error_of("[keel]\n" + big + "\n"), "line 2: expected '=' after \"" + std::string(32, 'x') + "\"");
    EXPECT_EQ(error_of(with("cmdline = \"" + big + "\"")), "line 5: cmdline: longer than 255 bytes");
    EXPECT_EQ(error_of(with("cmdline = \"" + big)), "line 5: cmdline: unterminated string (strings must end on the same line)");
    EXPECT_EQ(error_of(with("cpus = " + std::string(100000, '1'))), "line 5: cpus: integer too large");
    EXPECT_EQ(error_of(with("cpus = 1" + std::string(100000, ' ') + "# x")), "ok");
    std::string many = "pin = [";
    for (int i = 0; i < 100000; i++) many += "1, ";
    EXPECT_EQ(error_of(with(many + "]")), "line 5: pin: at most 64 entries");
    // Messages stay within the buffer, NUL-terminated.
    Parsed p("[" + big + "]\n");
    EXPECT_FALSE(p.ok);
    EXPECT_LT(strlen(p.err.msg), sizeof(p.err.msg));
    EXPECT_EQ(p.error(), "line 1: unknown table [" + std::string(32, 'x') + "] (expected [keel], [[guest]], [[guest.disk]], [[guest.nic]], [[guest.pci]] or [[network]])");
}

TEST(Config, ManyLines)
{
    std::string s = "[keel]\n";
    for (int i = 0; i < 200000; i++) s += "# line\n";
    s += "bad\n";
    EXPECT_EQ(error_of(s), "line 200002: expected '=' after \"bad\"");
}

// Random mutations of a valid file: never a crash (ASan/UBSan watch), and
// every failure names a line of the file and a reason.
TEST(Config, Mutations)
{
    std::mt19937 rng(1234);
    const std::string base =
        std::string(FULL) + "[[guest.disk]]\nfile = \"b.img\"\nreadonly = true\n[keel]\nloglevel = \"info\"\n";
    const char alphabet[] = "[]\"'=#,.\\ \t\r\n\0_-+0x1uM{}\x80\xff";
    auto cfg = std::make_unique<KeelConfig>();
    unsigned ok = 0;
    for (int iter = 0; iter < 20000; iter++) {
        std::string s = base;
        int edits = 1 + int(rng() % 4);
        for (int e = 0; e < edits; e++) {
            usize at = rng() % (s.size() + 1);
            switch (rng() % 4) {
            case 0: if (at < s.size()) s.erase(at, 1 + rng() % 8); break;
            case 1: s.insert(at, 1, alphabet[rng() % (sizeof(alphabet) - 1)]); break;
            case 2: if (at < s.size()) s[at] = alphabet[rng() % (sizeof(alphabet) - 1)]; break;
            case 3: s.resize(at); break;
            }
        }
        auto buf = std::make_unique<char[]>(s.size() + 1);
        memcpy(buf.get(), s.data(), s.size());
        ConfigError err;
        if (parse_config(buf.get(), s.size(), *cfg, err).ok()) {
            ok++;
            EXPECT_EQ(err.line, 0u);
            EXPECT_LE(cfg->guest_count, KeelConfig::MAX_GUESTS);
            continue;
        }
        usize lines = 1;
        for (char ch : s) lines += ch == '\n';
        EXPECT_GE(err.line, 1u) << s;
        EXPECT_LE(err.line, lines) << s;
        EXPECT_GT(strlen(err.msg), 0u) << s;
    }
    EXPECT_GT(ok, 0u);
}

} // namespace

namespace {

// [[guest.nic]] of the most recent [[guest]]; [[network]] anywhere.
std::string nic(const std::string &network, const std::string &extra = "")
{
    return "[[guest.nic]]\nnetwork = \"" + network + "\"\n" + extra;
}
std::string network(const std::string &name, const std::string &extra = "")
{
    return "[[network]]\nname = \"" + name + "\"\n" + extra;
}
std::string mac_of(const NicConfig &n)
{
    char m[18];
    net::format_mac(m, n.mac);
    return m;
}

} // namespace

TEST(Config, Networks)
{
    // The issue's example: a network, a NIC with a given MAC, one without.
    Parsed p(network("lan") + guest("web") + nic("lan", "mac = \"02:4B:45:00:00:01\"\n") + guest("db") + nic("lan") +
             network("dmz", "kind = \"isolated\"\nmtu = 9000\n") + nic("dmz"));
    ASSERT_EQ(p.error(), "ok");
    ASSERT_EQ(p.cfg->network_count, 2u);
    EXPECT_EQ(str(p.cfg->networks[0].name), "lan");
    EXPECT_EQ(p.cfg->networks[0].mtu, 1500u);
    EXPECT_EQ(p.cfg->networks[1].mtu, 9000u);
    const GuestConfig &web = p.guest(0), &db = p.guest(1);
    ASSERT_EQ(web.nic_count, 1u);
    EXPECT_TRUE(web.nics[0].mac_set);
    EXPECT_EQ(mac_of(web.nics[0]), "02:4b:45:00:00:01");
    EXPECT_EQ(web.nics[0].network_index, 0u);
    EXPECT_EQ(web.nics[0].line, 7u);
    ASSERT_EQ(db.nic_count, 2u);
    EXPECT_FALSE(db.nics[0].mac_set);
    EXPECT_EQ(db.nics[1].network_index, 1u);
    // Assigned: locally administered unicast, derived from the name and index, all different.
    for (u32 i = 0; i < 2; i++) {
        EXPECT_EQ(db.nics[i].mac.b[0], 0x02);
        EXPECT_EQ(net::derive_mac("db", 2, i).b[0], 0x02);
    }
    EXPECT_NE(mac_of(db.nics[0]), mac_of(db.nics[1]));
    EXPECT_NE(mac_of(db.nics[0]), mac_of(web.nics[0]));
    // Stable: the same file gives the same addresses.
    Parsed again(network("lan") + guest("web") + nic("lan", "mac = \"02:4B:45:00:00:01\"\n") + guest("db") + nic("lan") +
                 network("dmz", "kind = \"isolated\"\nmtu = 9000\n") + nic("dmz"));
    EXPECT_EQ(mac_of(again.guest(1).nics[0]), mac_of(db.nics[0]));
    // A guest's name decides its addresses, not its place in the file.
    Parsed swapped(network("lan") + guest("db") + nic("lan") + nic("lan"));
    EXPECT_EQ(mac_of(swapped.guest(0).nics[0]), mac_of(db.nics[0]));
}

TEST(Config, AnAssignedMacNeverTakesAGivenOne)
{
    // Give guest b's would-be address to guest a: b must get another one.
    char taken[18];
    net::format_mac(taken, net::derive_mac("b", 1, 0));
    Parsed p(network("n") + guest("a") + nic("n", std::string("mac = \"") + taken + "\"\n") + guest("b") + nic("n"));
    ASSERT_EQ(p.error(), "ok");
    EXPECT_EQ(mac_of(p.guest(0).nics[0]), taken);
    EXPECT_NE(mac_of(p.guest(1).nics[0]), taken);
    EXPECT_EQ(p.guest(1).nics[0].mac.b[0], 0x02);
}

TEST(Config, NetworkErrors)
{
    expect_all({
        {guest("a") + nic("lan"), "line 5: network: no [[network]] named \"lan\""},
        {network("lan") + guest("a") + nic("lan") + nic("wan"), "line 9: network: no [[network]] named \"wan\""},
        {"[[guest.nic]]\nnetwork = \"lan\"\n", "line 1: [[guest.nic]] before any [[guest]]"},
        {guest("a") + "[guest.nic]\n", "line 5: nic is an array of tables: write [[guest.nic]]"},
        {guest("a") + "[[guest.nic]]\nmac = \"02:00:00:00:00:01\"\n", "line 5: [[guest.nic]]: missing required key \"network\""},
        {network("lan") + guest("a") + nic("lan", "mac = \"01:00:5e:00:00:01\"\n"), "line 9: mac: \"01:00:5e:00:00:01\" is multicast"},
        {network("lan") + guest("a") + nic("lan", "mac = \"ff:ff:ff:ff:ff:ff\"\n"), "line 9: mac: \"ff:ff:ff:ff:ff:ff\" is multicast"},
        {network("lan") + guest("a") + nic("lan", "mac = \"00:00:00:00:00:00\"\n"), "line 9: mac: \"00:00:00:00:00:00\" is all zero"},
        {network("lan") + guest("a") + nic("lan", "mac = \"02:00:00:00:00\"\n"), "line 9: mac: \"02:00:00:00:00\" is not of the form 02:4b:45:00:00:01"},
        {network("lan") + guest("a") + nic("lan", "mac = \"02-00-00-00-00-01\"\n"), "line 9: mac: \"02-00-00-00-00-01\" is not of the form 02:4b:45:00:00:01"},
        {network("lan") + guest("a") + nic("lan", "mac = \"02:00:00:00:00:0g\"\n"), "line 9: mac: \"02:00:00:00:00:0g\" is not of the form 02:4b:45:00:00:01"},
        {network("lan") + guest("a") + nic("lan", "mac = 2\n"), "line 9: mac: expected a MAC address such as \"02:4b:45:00:00:01\""},
        // Two NICs given one address: at the second one's line.
        {network("lan") + guest("a") + nic("lan", "mac = \"02:00:00:00:00:01\"\n") + guest("b") +
             nic("lan", "mac = \"02:00:00:00:00:01\"\n"),
         "line 14: mac: 02:00:00:00:00:01 is also the mac of the nic at line 7"},
        {network("lan") + network("lan"), "line 3: duplicate network name \"lan\" (first at line 1)"},
        {"[[network]]\nmtu = 1500\n", "line 1: [[network]]: missing required key \"name\""},
        {network("lan", "mtu = 67\n"), "line 3: mtu: must be 68..9000"},
        {network("lan", "kind = \"uplink\"\n"), "line 3: kind: expected \"isolated\" (the only kind so far)"},
        {network("a b"), "line 2: name: only A-Z a-z 0-9 _ - are allowed"},
        {network("lan", "file = \"x\"\n"), "line 3: unknown key \"file\" in [[network]]"},
        {"[network]\nname = \"x\"\n", "line 1: network is an array of tables: write [[network]]"},
        // A network may share a guest's name.
        {network("a") + guest("a") + nic("a"), "ok"},
    });
    // At most 4 NICs, and 7 PCI devices with the disks.
    std::string four = network("n") + guest("a");
    for (int i = 0; i < 4; i++) four += nic("n");
    EXPECT_EQ(error_of(four), "ok");
    EXPECT_EQ(error_of(four + nic("n")), "line 15: guest \"a\": too many nics (at most 4)");
    std::string mix = network("n") + guest("a");
    for (int i = 0; i < 4; i++) mix += disk("d" + std::to_string(i) + ".img");
    for (int i = 0; i < 3; i++) mix += nic("n");
    EXPECT_EQ(error_of(mix), "ok");
    EXPECT_EQ(error_of(mix + nic("n")), "line 21: guest \"a\": too many PCI devices (disks, nics and pci together: at most 7)");
    EXPECT_EQ(error_of(mix + disk("x.img")), "line 21: guest \"a\": too many PCI devices (disks, nics and pci together: at most 7)");
}

namespace {

TEST(Config, WatchdogAndRestartLimits)
{
    Parsed p("[[guest]]\nname = \"a\"\nkernel = \"k\"\nmemory = \"4M\"\nwatchdog = \"10s\"\nmax_restarts = 3\n"
             "restart_window = \"2500ms\"\n[[guest]]\nname = \"b\"\nkernel = \"k\"\nmemory = \"4M\"\n");
    ASSERT_TRUE(p.ok) << p.error();
    EXPECT_EQ(p.guest(0).watchdog_ns, 10'000'000'000ull);
    EXPECT_EQ(p.guest(0).max_restarts, 3u);
    EXPECT_EQ(p.guest(0).restart_window_ns, 2'500'000'000ull);
    // Defaults: no watchdog, restarts unlimited, a 60 s window.
    EXPECT_EQ(p.guest(1).watchdog_ns, 0u);
    EXPECT_EQ(p.guest(1).max_restarts, 0u);
    EXPECT_EQ(p.guest(1).restart_window_ns, 60'000'000'000ull);
    expect_all({
        {"[[guest]]\nwatchdog = 10\n", "line 2: watchdog: expected a duration such as \"10s\""},
        {"[[guest]]\nwatchdog = \"10\"\n", "line 2: watchdog: expected a duration such as \"10ms\""},
        {"[[guest]]\nwatchdog = \"9ms\"\n", "line 2: watchdog: must be 10ms..1h"},
        {"[[guest]]\nwatchdog = \"3601s\"\n", "line 2: watchdog: must be 10ms..1h"},
        {"[[guest]]\nwatchdog = \"99999999999999999999s\"\n", "line 2: watchdog: must be 10ms..1h"},
        {"[[guest]]\nmax_restarts = -1\n", "line 2: max_restarts: must be 0..1000"},
        {"[[guest]]\nmax_restarts = 1001\n", "line 2: max_restarts: must be 0..1000"},
        {"[[guest]]\nrestart_window = \"1us\"\n", "line 2: restart_window: must be 10ms..1h"},
        {"[keel]\nwatchdog = \"10s\"\n", "line 2: unknown key \"watchdog\" in [keel]"},
    });
}

// The on_idle of a file Keel refuses, read on its own (from an exact-size copy).
KeelConfig::OnIdle on_idle_of(const std::string &s)
{
    auto t = std::make_unique<char[]>(s.size() ? s.size() : 1);
    memcpy(t.get(), s.data(), s.size());
    return config_on_idle(t.get(), s.size());
}

TEST(Config, OnIdleOfARefusedFile)
{
    using OnIdle = KeelConfig::OnIdle;
    const OnIdle off = OnIdle::poweroff, halt = OnIdle::halt;
    struct {
        const char *text;
        OnIdle want;
    } cases[] = {
        // Refused after on_idle, or before [keel]: either way on_idle is read.
        {"[keel]\non_idle = \"poweroff\"\n[[guest]]\nmemory = \"lots\"\n", off},
        {"[[guest]]\nmemory = \"lots\"\n[keel]\non_idle = \"poweroff\"\n", off},
        {"garbage {\n\x01\n[keel]\ntime_slice = 5\non_idle=\"poweroff\"# c\n", off},
        {"\xef\xbb\xbf[ keel ]  # Keel\r\n\ton_idle\t=  \"poweroff\"  \r\n[[guest]]\n", off},
        {"[keel]\non_idle_x = 1\non_idle = \"poweroff\"\n", off},   // another key, then on_idle
        // halt: said so, not said, said badly, or not in the first [keel] table.
        {"[keel]\non_idle = \"halt\"\nbad\n", halt},
        {"[keel]\ntime_slice = x\n", halt},
        {"bad\n", halt},
        {"", halt},
        {"[keel]\non_idle = poweroff\n", halt},
        {"[keel]\non_idle = \"poweroff\" x\n", halt},
        {"[keel]\non_idle = \"Poweroff\"\n", halt},
        {"[keel]\non_idle = \"power\\u006ff\"\n", halt},   // exactly as written: no escapes
        {"[keel]\non_idle = \"halt\"\non_idle = \"poweroff\"\n", halt},
        {"[keel]\n[keel]\non_idle = \"poweroff\"\n", halt},
        {"[keel]\n[[guest]]\non_idle = \"poweroff\"\n", halt},
        {"[[keel]]\non_idle = \"poweroff\"\n", halt},
        {"[keelx]\non_idle = \"poweroff\"\n", halt},
        {"[keel] x\non_idle = \"poweroff\"\n", halt},
        {"on_idle = \"poweroff\"\n[keel]\n", halt},
        {"[keel]\n# on_idle = \"poweroff\"\n", halt},
    };
    for (auto &c : cases) EXPECT_EQ(on_idle_of(c.text), c.want) << c.text;
    // On a file parse_config accepts, the two agree.
    for (const char *s : {FULL, "[keel]\non_idle = \"halt\"\n", "", "[[guest]]\nname = \"a\"\nkernel = \"k\"\nmemory = \"4M\"\n[keel]\non_idle = \"poweroff\"\n"}) {
        Parsed p(s);
        ASSERT_TRUE(p.ok) << p.error();
        EXPECT_EQ(on_idle_of(s), p.cfg->on_idle) << s;
    }
    EXPECT_EQ(config_on_idle(nullptr, 5), halt);
}

// The line Keel prints at boot for a refused file (keel-config-check prints the same).
TEST(Config, RefusalLine)
{
    Parsed p("[[guest]]\nmemory = \"lots\"\n");
    ASSERT_FALSE(p.ok);
    static std::string out;
    out.clear();
    console::set_sink([](const char *s, usize n) { out.append(s, n); });
    log_config_error(p.err);
    console::set_sink(nullptr);
    EXPECT_EQ(out, "keel: keel.toml line 2: memory: expected a size such as \"64M\"; no guests started\n");
}

} // namespace

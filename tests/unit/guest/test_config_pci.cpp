// PCI passthrough in Keel's configuration file (kernel/guest/config.cpp, docs/CONFIG.md):
// [[guest.pci]] tables, [keel] management_nic, the host PCI address syntax and
// find_pci_conflicts (what Keel refuses at boot and keel-config-check warns about).
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include "kernel/guest/config.hpp"

namespace {

// An exact-size heap copy of the text (ASan catches any read past the length), kept alive with the result.
struct Parsed {
    std::unique_ptr<char[]> text;
    std::unique_ptr<KeelConfig> cfg = std::make_unique<KeelConfig>();
    ConfigError err{};
    bool ok = false;

    explicit Parsed(const std::string &s) : text(std::make_unique<char[]>(s.size() ? s.size() : 1))
    {
        memcpy(text.get(), s.data(), s.size());
        ok = parse_config(text.get(), s.size(), *cfg, err).ok();
    }
    std::string error() const { return ok ? "ok" : "line " + std::to_string(err.line) + ": " + err.msg; }
};

std::string error_of(const std::string &s) { return Parsed(s).error(); }

// Four lines: [[guest]], name, kernel, memory.
std::string guest(const std::string &name)
{
    return "[[guest]]\nname = \"" + name + "\"\nkernel = \"k.elf\"\nmemory = \"64M\"\n";
}

// Two lines (more with extra): [[guest.pci]] and its device.
std::string pci(const std::string &device, const std::string &extra = "")
{
    return "[[guest.pci]]\ndevice = \"" + device + "\"\n" + extra;
}

std::string disk(const std::string &file) { return "[[guest.disk]]\nfile = \"" + file + "\"\n"; }
std::string nic(const std::string &network) { return "[[guest.nic]]\nnetwork = \"" + network + "\"\n"; }
std::string network(const std::string &name) { return "[[network]]\nname = \"" + name + "\"\n"; }
std::string keel_mgmt(const std::string &device) { return "[keel]\nmanagement_nic = \"" + device + "\"\n"; }

std::string text(const PciConfig &p)
{
    char out[PciConfig::TEXT_SIZE];
    format_pci_address(out, p);
    return out;
}

// The error parse_pci_address gives `s`, or its address formatted back.
std::string parsed(const std::string &s)
{
    PciConfig p{};
    std::unique_ptr<char[]> copy(new char[s.size() ? s.size() : 1]);
    memcpy(copy.get(), s.data(), s.size());
    if (const char *why = parse_pci_address(copy.get(), s.size(), p)) return std::string("error: ") + why;
    return text(p);
}

struct Case {
    std::string text;
    std::string want;
};

void expect_all(const std::vector<Case> &cases)
{
    for (const Case &c : cases) EXPECT_EQ(error_of(c.text), c.want) << "config:\n" << c.text;
}

} // namespace

TEST(ConfigPci, LongAndShortForms)
{
    Parsed p(guest("a") + pci("0000:00:04.0") + pci("00:05.1") + pci("FFFF:Ab:1F.7") + guest("b") +
             pci("0001:02:00.3"));
    ASSERT_EQ(p.error(), "ok");
    const GuestConfig &a = p.cfg->guests[0], &b = p.cfg->guests[1];
    ASSERT_EQ(a.pci_count, 3u);
    EXPECT_EQ(a.pci[0].segment, 0);
    EXPECT_EQ(a.pci[0].bus, 0);
    EXPECT_EQ(a.pci[0].dev, 4);
    EXPECT_EQ(a.pci[0].fn, 0);
    EXPECT_EQ(a.pci[0].line, 5u);
    EXPECT_EQ(text(a.pci[1]), "0000:00:05.1");      // the short form is segment 0
    EXPECT_EQ(a.pci[1].line, 7u);
    EXPECT_EQ(a.pci[2].segment, 0xffff);
    EXPECT_EQ(a.pci[2].bus, 0xab);
    EXPECT_EQ(a.pci[2].dev, 0x1f);
    EXPECT_EQ(a.pci[2].fn, 7);
    EXPECT_EQ(text(a.pci[2]), "ffff:ab:1f.7");
    ASSERT_EQ(b.pci_count, 1u);
    EXPECT_EQ(text(b.pci[0]), "0001:02:00.3");
    EXPECT_EQ(b.pci[0].line, 15u);
    // No [[guest.pci]], no management_nic: nothing.
    Parsed none(guest("a") + disk("d.img"));
    ASSERT_EQ(none.error(), "ok");
    EXPECT_EQ(none.cfg->guests[0].pci_count, 0u);
    EXPECT_FALSE(none.cfg->has_management_nic);
    // Comments, spaces around the dot, a [keel] table in between (the pci table still belongs to the guest).
    Parsed spaced(guest("a") + "[keel]\n[[ guest . pci ]]   # the NIC\ndevice = \"00:1f.7\"   # its function\n");
    ASSERT_EQ(spaced.error(), "ok");
    ASSERT_EQ(spaced.cfg->guests[0].pci_count, 1u);
    EXPECT_EQ(spaced.cfg->guests[0].pci[0].line, 6u);
    EXPECT_EQ(text(spaced.cfg->guests[0].pci[0]), "0000:00:1f.7");
}

TEST(ConfigPci, BadAddresses)
{
    const std::string g = guest("a");
    expect_all({
        {g + pci(""), "line 6: device: \"\": empty (expected SSSS:BB:DD.F or BB:DD.F in hex, such as \"0000:00:04.0\")"},
        {g + pci("00:20.0"), "line 6: device: \"00:20.0\": device number above 1f"},
        {g + pci("0000:00:ff.0"), "line 6: device: \"0000:00:ff.0\": device number above 1f"},
        {g + pci("0000:00:04.8"), "line 6: device: \"0000:00:04.8\": function number above 7"},
        {g + pci("00:04.f"), "line 6: device: \"00:04.f\": function number above 7"},
        {g + pci("000:00:04.0"), "line 6: device: \"000:00:04.0\": the segment needs 4 hex digits (SSSS:BB:DD.F)"},
        {g + pci("00000:00:04.0"), "line 6: device: \"00000:00:04.0\": the segment needs 4 hex digits (SSSS:BB:DD.F)"},
        {g + pci("0000:0:04.0"), "line 6: device: \"0000:0:04.0\": the bus needs 2 hex digits (SSSS:BB:DD.F or BB:DD.F)"},
        {g + pci("000:04.0"), "line 6: device: \"000:04.0\": the bus needs 2 hex digits (SSSS:BB:DD.F or BB:DD.F)"},
        {g + pci("00:4.0"), "line 6: device: \"00:4.0\": the device needs 2 hex digits (SSSS:BB:DD.F or BB:DD.F)"},
        {g + pci("0000:00:004.0"),
         "line 6: device: \"0000:00:004.0\": the device needs 2 hex digits (SSSS:BB:DD.F or BB:DD.F)"},
        {g + pci("00:04.00"), "line 6: device: \"00:04.00\": the function needs 1 hex digit (SSSS:BB:DD.F or BB:DD.F)"},
        {g + pci("00:04."), "line 6: device: \"00:04.\": the function needs 1 hex digit (SSSS:BB:DD.F or BB:DD.F)"},
        {g + pci("00:0g.0"),
         "line 6: device: \"00:0g.0\": only hex digits, ':' and '.' are allowed (SSSS:BB:DD.F or BB:DD.F)"},
        {g + pci("0000:00:04.0 "),
         "line 6: device: \"0000:00:04.0 \": only hex digits, ':' and '.' are allowed (SSSS:BB:DD.F or BB:DD.F)"},
        {g + pci("0000:00:04.0x"),
         "line 6: device: \"0000:00:04.0x\": only hex digits, ':' and '.' are allowed (SSSS:BB:DD.F or BB:DD.F)"},
        {g + pci("0x00:04.0"),
         "line 6: device: \"0x00:04.0\": only hex digits, ':' and '.' are allowed (SSSS:BB:DD.F or BB:DD.F)"},
        {g + pci("0000:00:04.0.1"), "line 6: device: \"0000:00:04.0.1\": expected SSSS:BB:DD.F or BB:DD.F"},
        {g + pci("0000:00:04.0:1"), "line 6: device: \"0000:00:04.0:1\": expected SSSS:BB:DD.F or BB:DD.F"},
        {g + pci("00:04:0"), "line 6: device: \"00:04:0\": expected SSSS:BB:DD.F or BB:DD.F"},
        {g + pci("0000.00:04.0"), "line 6: device: \"0000.00:04.0\": expected SSSS:BB:DD.F or BB:DD.F"},
        {g + pci("04.0"), "line 6: device: \"04.0\": expected SSSS:BB:DD.F or BB:DD.F"},
        {g + pci("00:04"), "line 6: device: \"00:04\": expected SSSS:BB:DD.F or BB:DD.F"},
        {g + pci("0000:00:04"), "line 6: device: \"0000:00:04\": expected SSSS:BB:DD.F or BB:DD.F"},
        {g + pci("nvme0n1"),
         "line 6: device: \"nvme0n1\": only hex digits, ':' and '.' are allowed (SSSS:BB:DD.F or BB:DD.F)"},
        // Escapes are unescaped first: a tab is not a digit.
        {g + pci("00:04.\\t"),
         "line 6: device: \"00:04.\t\": only hex digits, ':' and '.' are allowed (SSSS:BB:DD.F or BB:DD.F)"},
        {g + pci("00:04.\\u0030"), "ok"},
        // Not a string.
        {g + "[[guest.pci]]\ndevice = 4\n", "line 6: device: expected a PCI address such as \"0000:00:04.0\""},
        {g + "[[guest.pci]]\ndevice = [\"00:04.0\"]\n", "line 6: device: expected a PCI address such as \"0000:00:04.0\""},
        {g + "[[guest.pci]]\ndevice = 00:04.0\n", "line 6: device: dates and times are not supported"},
        {g + "[[guest.pci]]\ndevice =\n", "line 6: device: missing value"},
        {g + pci("00:04.0") + "junk\n", "line 7: expected '=' after \"junk\""},
        {g + "[[guest.pci]]\ndevice = \"00:04.0\" x\n", "line 6: device: unexpected text after the value"},
    });
}

TEST(ConfigPci, TableErrors)
{
    const std::string g = guest("a");
    expect_all({
        // Unknown keys, as in every table (a disk's and a NIC's keys too).
        {g + pci("00:04.0", "rom = \"x.bin\"\n"), "line 7: unknown key \"rom\" in [[guest.pci]]"},
        {g + pci("00:04.0", "file = \"x.img\"\n"), "line 7: unknown key \"file\" in [[guest.pci]]"},
        {g + pci("00:04.0", "network = \"lan\"\n"), "line 7: unknown key \"network\" in [[guest.pci]]"},
        {g + pci("00:04.0", "device = \"00:05.0\"\n"), "line 7: duplicate key \"device\""},
        // A missing device: at the table's header, also when the table ends at the file's end,
        // at the next header, or with only comments in it.
        {g + "[[guest.pci]]\n", "line 5: [[guest.pci]]: missing required key \"device\""},
        {g + "[[guest.pci]]\n# nothing\n\n" + guest("b"), "line 5: [[guest.pci]]: missing required key \"device\""},
        {g + pci("00:04.0") + "[[guest.pci]]\n" + pci("00:05.0"), "line 7: [[guest.pci]]: missing required key \"device\""},
        // Where the table may be.
        {"[[guest.pci]]\ndevice = \"00:04.0\"\n", "line 1: [[guest.pci]] before any [[guest]]"},
        {"[keel]\n[[guest.pci]]\n", "line 2: [[guest.pci]] before any [[guest]]"},
        {g + "[guest.pci]\ndevice = \"00:04.0\"\n", "line 5: pci is an array of tables: write [[guest.pci]]"},
        {g + "[[guest.pcie]]\n", "line 5: dotted table names other than [[guest.disk]], [[guest.nic]] and [[guest.pci]] are not supported"},
        {g + "[[guest.pci.rom]]\n", "line 5: dotted table names other than [[guest.disk]], [[guest.nic]] and [[guest.pci]] are not supported"},
        {g + "[[pci]]\n", "line 5: unknown table [pci] (expected [keel], [[guest]], [[guest.disk]], [[guest.nic]], [[guest.pci]] or [[network]])"},
        // device in [[guest]] itself is not a passthrough.
        {g + "device = \"00:04.0\"\n", "line 5: unknown key \"device\" in [[guest]]"},
        // A disk's device is still a disk's.
        {g + "[[guest.disk]]\ndevice = \"00:04.0\"\n", "line 6: device: \"00:04.0\": a device is nvmeXnY, nvmeXnYpZ, gpt-name:NAME or gpt-guid:GUID"},
    });
}

TEST(ConfigPci, AtMostFourPerGuest)
{
    std::string four = guest("a");
    for (int i = 0; i < 4; i++) four += pci("00:0" + std::to_string(i) + ".0");
    Parsed p(four);
    ASSERT_EQ(p.error(), "ok");
    EXPECT_EQ(p.cfg->guests[0].pci_count, GuestConfig::MAX_PASSTHROUGH);
    EXPECT_EQ(GuestConfig::MAX_PASSTHROUGH, 4u);
    EXPECT_EQ(error_of(four + pci("00:09.0")), "line 13: guest \"a\": too many pci devices (at most 4)");
    // Per guest: the next guest has its own four.
    EXPECT_EQ(error_of(four + guest("b") + pci("00:09.0") + pci("00:0a.0")), "ok");
}

TEST(ConfigPci, DisksNicsAndPciShareSevenSlots)
{
    // 4 disks + 2 NICs + 1 passed-through function: the 7 devices of the guest's bus.
    std::string full = network("n") + guest("a");                    // lines 1-6
    for (int i = 0; i < 4; i++) full += disk("d" + std::to_string(i) + ".img");   // 7-14
    for (int i = 0; i < 2; i++) full += nic("n");                     // 15-18
    full += pci("00:04.0");                                           // 19-20
    Parsed p(full);
    ASSERT_EQ(p.error(), "ok");
    EXPECT_EQ(p.cfg->guests[0].pci_count, 1u);
    const std::string too_many = "line 21: guest \"a\": too many PCI devices (disks, nics and pci together: at most 7)";
    EXPECT_EQ(error_of(full + pci("00:05.0")), too_many);
    EXPECT_EQ(error_of(full + disk("x.img")), too_many);
    EXPECT_EQ(error_of(full + nic("n")), too_many);
    // Whatever the order: functions first, then disks.
    std::string first = guest("a") + pci("00:04.0") + pci("00:05.0") + pci("00:06.0") + pci("00:07.0");   // 1-12
    for (int i = 0; i < 3; i++) first += disk("d" + std::to_string(i) + ".img");                          // 13-18
    EXPECT_EQ(error_of(first), "ok");
    EXPECT_EQ(error_of(first + disk("x.img")),
              "line 19: guest \"a\": too many PCI devices (disks, nics and pci together: at most 7)");
    // Six disks and one function fit; the limit is per guest.
    std::string six = guest("a");
    for (int i = 0; i < 6; i++) six += disk("d" + std::to_string(i) + ".img");
    EXPECT_EQ(error_of(six + pci("00:04.0") + guest("b") + pci("00:04.1")), "ok");
    EXPECT_EQ(error_of(six + pci("00:04.0") + pci("00:04.1")),
              "line 19: guest \"a\": too many PCI devices (disks, nics and pci together: at most 7)");
}

TEST(ConfigPci, ManagementNic)
{
    Parsed p(keel_mgmt("0000:00:03.0") + guest("a"));
    ASSERT_EQ(p.error(), "ok");
    EXPECT_TRUE(p.cfg->has_management_nic);
    EXPECT_EQ(text(p.cfg->management_nic), "0000:00:03.0");
    EXPECT_EQ(p.cfg->management_nic.line, 2u);
    Parsed shortform("[keel]\non_idle = \"halt\"\nmanagement_nic = \"3a:00.1\"   # Keel's own\n");
    ASSERT_EQ(shortform.error(), "ok");
    EXPECT_TRUE(shortform.cfg->has_management_nic);
    EXPECT_EQ(text(shortform.cfg->management_nic), "0000:3a:00.1");
    EXPECT_EQ(shortform.cfg->management_nic.line, 3u);
    expect_all({
        {keel_mgmt("00:20.0"), "line 2: management_nic: \"00:20.0\": device number above 1f"},
        {keel_mgmt("00:03.8"), "line 2: management_nic: \"00:03.8\": function number above 7"},
        {keel_mgmt("eth0"), "line 2: management_nic: \"eth0\": only hex digits, ':' and '.' are allowed (SSSS:BB:DD.F or BB:DD.F)"},
        {keel_mgmt(""), "line 2: management_nic: \"\": empty (expected SSSS:BB:DD.F or BB:DD.F in hex, such as \"0000:00:04.0\")"},
        {"[keel]\nmanagement_nic = true\n", "line 2: management_nic: expected a PCI address such as \"0000:00:04.0\""},
        {keel_mgmt("00:03.0") + "management_nic = \"00:04.0\"\n", "line 3: duplicate key \"management_nic\""},
        // Only in [keel].
        {guest("a") + "management_nic = \"00:03.0\"\n", "line 5: unknown key \"management_nic\" in [[guest]]"},
        {guest("a") + pci("00:04.0", "management_nic = \"00:03.0\"\n"), "line 7: unknown key \"management_nic\" in [[guest.pci]]"},
    });
}

TEST(ConfigPci, ConflictsAreNotParseErrors)
{
    // The same function twice in a guest, in two guests, and Keel's own: the file parses
    // (Keel refuses only the guests concerned at boot), and find_pci_conflicts names them.
    const std::string conf = keel_mgmt("0000:00:03.0") +                        // 1-2
                             guest("a") + pci("0000:00:04.0") + pci("00:04.0") +  // 3-6, 7-8, 9-10
                             guest("b") + pci("00:05.0") + pci("00:03.0") +       // 11-14, 15-16, 17-18
                             guest("c") + pci("00:05.0") +                        // 19-22, 23-24
                             guest("d") + pci("0001:00:05.0") + pci("00:05.1");    // 25-28, 29-30, 31-32
    Parsed p(conf);
    ASSERT_EQ(p.error(), "ok");
    PciConflict c[MAX_PCI_CONFLICTS];
    const u32 n = find_pci_conflicts(*p.cfg, c, MAX_PCI_CONFLICTS);
    ASSERT_EQ(n, 2u);
    // Guest a names 00:04.0 twice (long and short forms are the same function).
    EXPECT_EQ(c[0].kind, PciConflict::Kind::same_guest);
    EXPECT_EQ(c[0].guest, 0u);
    EXPECT_EQ(c[0].pci, 1u);
    EXPECT_EQ(c[0].other_guest, 0u);
    EXPECT_EQ(c[0].other_line, 7u);
    EXPECT_EQ(p.cfg->guests[0].pci[1].line, 9u);
    // Guest b asks for the management NIC.
    EXPECT_EQ(c[1].kind, PciConflict::Kind::management_nic);
    EXPECT_EQ(c[1].guest, 1u);
    EXPECT_EQ(c[1].pci, 1u);
    EXPECT_EQ(c[1].other_line, 2u);
    // Guest b is refused, so it holds nothing: c may have its 00:05.0. Guest d's functions
    // differ from c's by segment and by function.
}

TEST(ConfigPci, ConflictsBetweenGuests)
{
    Parsed p(guest("a") + pci("00:04.0") + guest("b") + pci("00:06.0") + pci("0000:00:04.0") +   // a 5, b 11, 13
             guest("c") + pci("00:04.0") + guest("d") + pci("00:06.0"));                          // c 19, d 25
    ASSERT_EQ(p.error(), "ok");
    PciConflict c[MAX_PCI_CONFLICTS];
    const u32 n = find_pci_conflicts(*p.cfg, c, MAX_PCI_CONFLICTS);
    ASSERT_EQ(n, 2u);
    // b asks for a's function: b is refused (the later guest in the file).
    EXPECT_EQ(c[0].kind, PciConflict::Kind::other_guest);
    EXPECT_EQ(c[0].guest, 1u);
    EXPECT_EQ(c[0].pci, 1u);
    EXPECT_EQ(c[0].other_guest, 0u);
    EXPECT_EQ(c[0].other_line, 5u);
    // c too, against a (never against b, which is refused).
    EXPECT_EQ(c[1].kind, PciConflict::Kind::other_guest);
    EXPECT_EQ(c[1].guest, 2u);
    EXPECT_EQ(c[1].other_guest, 0u);
    EXPECT_EQ(c[1].other_line, 5u);
    // d may have 00:06.0: only the refused b named it before.
    // The count is exact even when fewer fit in the array, and nothing beyond cap is written.
    PciConflict one[2];
    memset(one, 0xee, sizeof(one));
    EXPECT_EQ(find_pci_conflicts(*p.cfg, one, 1), 2u);
    EXPECT_EQ(one[0].guest, 1u);
    EXPECT_EQ(reinterpret_cast<const u8 *>(&one[1])[0], 0xee);
    EXPECT_EQ(find_pci_conflicts(*p.cfg, nullptr, 0), 2u);
    // Without management_nic, nothing is compared with it (a zeroed PciConfig is 0000:00:00.0).
    Parsed zero(guest("a") + pci("00:00.0"));
    ASSERT_EQ(zero.error(), "ok");
    EXPECT_EQ(find_pci_conflicts(*zero.cfg, c, MAX_PCI_CONFLICTS), 0u);
    Parsed mgmt_zero(keel_mgmt("00:00.0") + guest("a") + pci("00:00.0"));
    ASSERT_EQ(mgmt_zero.error(), "ok");
    EXPECT_EQ(find_pci_conflicts(*mgmt_zero.cfg, c, MAX_PCI_CONFLICTS), 1u);
}

TEST(ConfigPci, AddressRoundTrip)
{
    // Every device and function on a few buses and segments: formatted, parsed back, equal.
    for (u32 seg : {0u, 1u, 0xabcdu, 0xffffu})
        for (u32 bus : {0u, 0x3au, 0xffu})
            for (u32 dev = 0; dev < 32; dev++)
                for (u32 fn = 0; fn < 8; fn++) {
                    PciConfig a{u16(seg), u8(bus), u8(dev), u8(fn), 0};
                    const std::string s = text(a);
                    ASSERT_EQ(s.size(), 12u);
                    EXPECT_EQ(parsed(s), s);
                    if (seg == 0) EXPECT_EQ(parsed(s.substr(5)), s) << s;   // the short form
                }
}

TEST(ConfigPci, RandomAddressesAgainstARegex)
{
    // What is accepted is exactly SSSS:BB:DD.F or BB:DD.F with DD <= 1f and F <= 7.
    const std::regex good("^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[01][0-9a-fA-F]\\.[0-7]$");
    const char alphabet[] = "0123456789abcdefABCDEF01:.:.g x";
    std::mt19937 rng(1312);
    unsigned accepted = 0;
    for (int i = 0; i < 20000; i++) {
        std::string s;
        // Mostly well-shaped strings with one change, so both sides are well covered.
        PciConfig a{u16(rng()), u8(rng()), u8(rng() % 32), u8(rng() % 8), 0};
        s = text(a);
        if (rng() % 2) s = s.substr(5);
        switch (rng() % 4) {
        case 0: break;
        case 1: s[rng() % s.size()] = alphabet[rng() % (sizeof(alphabet) - 1)]; break;
        case 2: s.insert(s.begin() + long(rng() % (s.size() + 1)), alphabet[rng() % (sizeof(alphabet) - 1)]); break;
        case 3: s.erase(s.begin() + long(rng() % s.size())); break;
        }
        const std::string got = parsed(s);
        const bool ok = std::regex_match(s, good);
        ASSERT_EQ(got.rfind("error: ", 0) != 0, ok) << '"' << s << "\": " << got;
        if (!ok) continue;
        accepted++;
        std::string lower = s.size() == 7 ? "0000:" + s : s;
        for (char &ch : lower) ch = char(tolower(ch));
        EXPECT_EQ(got, lower);
    }
    EXPECT_GT(accepted, 5000u);
}

// [keel] sriov: SR-IOV NVMe physical functions Keel keeps, each with its VF count.
std::string keel_sriov(const std::string &list) { return "[keel]\nsriov = " + list + "\n"; }

TEST(ConfigSriov, Entries)
{
    Parsed p(keel_sriov("[\"0000:00:05.0:2\", \"01:00.1:127\", \"ffff:AB:1f.7:1\"]") + guest("a") +
             pci("0000:00:05.1"));
    ASSERT_EQ(p.error(), "ok");
    const KeelConfig &c = *p.cfg;
    ASSERT_EQ(c.sriov_count, 3u);
    EXPECT_EQ(c.sriov_line, 2u);
    EXPECT_EQ(text(c.sriov[0].pf), "0000:00:05.0");
    EXPECT_EQ(c.sriov[0].vfs, 2);
    EXPECT_EQ(c.sriov[0].pf.line, 2u);
    EXPECT_EQ(text(c.sriov[1].pf), "0000:01:00.1");   // the short form is segment 0
    EXPECT_EQ(c.sriov[1].vfs, 127);
    EXPECT_EQ(text(c.sriov[2].pf), "ffff:ab:1f.7");
    EXPECT_EQ(c.sriov[2].vfs, 1);
    // A VF is named in [[guest.pci]] like any function: no conflict with its PF.
    PciConflict x[MAX_PCI_CONFLICTS];
    EXPECT_EQ(find_pci_conflicts(c, x, MAX_PCI_CONFLICTS), 0u);

    Parsed none(guest("a"));
    ASSERT_EQ(none.error(), "ok");
    EXPECT_EQ(none.cfg->sriov_count, 0u);
    EXPECT_EQ(none.cfg->sriov_line, 0u);
    Parsed empty(keel_sriov("[]"));
    ASSERT_EQ(empty.error(), "ok");
    EXPECT_EQ(empty.cfg->sriov_count, 0u);
    Parsed four(keel_sriov("[\"00:01.0:1\", \"00:02.0:1\", \"00:03.0:1\", \"00:04.0:1\"]  # all of them"));
    ASSERT_EQ(four.error(), "ok");
    EXPECT_EQ(four.cfg->sriov_count, 4u);
}

TEST(ConfigSriov, Refused)
{
    const std::string want = "expected an array of strings such as \"0000:00:05.0:2\"";
    expect_all({
        {keel_sriov("\"00:05.0:2\""), "line 2: sriov: " + want},
        {keel_sriov("[2]"), "line 2: sriov: " + want},
        {keel_sriov("[\"00:05.0:2\", 3]"), "line 2: sriov: arrays must not mix types"},
        {keel_sriov("[\"00:05.0:2\""), "line 2: sriov: unterminated array (arrays must end on the same line)"},
        {keel_sriov("[\"00:01.0:1\", \"00:02.0:1\", \"00:03.0:1\", \"00:04.0:1\", \"00:06.0:1\"]"),
         "line 2: sriov: at most 4 entries"},
        {keel_sriov("[\"0000:00:05.0\"]"),
         "line 2: sriov: \"0000:00:05.0\": expected a PF address and its VF count, such as \"0000:00:05.0:2\""},
        {keel_sriov("[\"00:05.0\"]"),
         "line 2: sriov: \"00:05.0\": expected a PF address and its VF count, such as \"0000:00:05.0:2\""},
        {keel_sriov("[\"2\"]"), "line 2: sriov: \"2\": expected a PF address and its VF count, such as \"0000:00:05.0:2\""},
        {keel_sriov("[\"00:05.0:1.5\"]"),
         "line 2: sriov: \"00:05.0:1.5\": expected a PF address and its VF count, such as \"0000:00:05.0:2\""},
        {keel_sriov("[\"00:20.0:2\"]"), "line 2: sriov: \"00:20.0:2\": device number above 1f"},
        {keel_sriov("[\"0:00:05.0:2\"]"), "line 2: sriov: \"0:00:05.0:2\": the segment needs 4 hex digits (SSSS:BB:DD.F)"},
        {keel_sriov("[\"00:05.0:0\"]"), "line 2: sriov: \"00:05.0:0\": the VF count must be 1..127 (in decimal)"},
        {keel_sriov("[\"00:05.0:128\"]"), "line 2: sriov: \"00:05.0:128\": the VF count must be 1..127 (in decimal)"},
        {keel_sriov("[\"00:05.0:99999999999999999999\"]"),
         "line 2: sriov: \"00:05.0:99999999999999999999\": the VF count must be 1..127 (in decimal)"},
        {keel_sriov("[\"00:05.0:\"]"), "line 2: sriov: \"00:05.0:\": the VF count must be 1..127 (in decimal)"},
        {keel_sriov("[\"00:05.0:0x2\"]"), "line 2: sriov: \"00:05.0:0x2\": the VF count must be 1..127 (in decimal)"},
        {keel_sriov("[\"00:05.0:-1\"]"), "line 2: sriov: \"00:05.0:-1\": the VF count must be 1..127 (in decimal)"},
        // A PF named twice, in either form.
        {keel_sriov("[\"00:05.0:2\", \"0000:00:05.0:4\"]"),
         "line 2: sriov: physical function 0000:00:05.0 is named twice"},
        // The management NIC, before or after.
        {"[keel]\nmanagement_nic = \"00:05.0\"\nsriov = [\"0000:00:05.0:2\"]\n",
         "line 3: sriov: physical function 0000:00:05.0 is Keel's management_nic (line 2)"},
        {"[keel]\nsriov = [\"00:04.0:1\", \"0000:00:05.0:2\"]\nmanagement_nic = \"00:05.0\"\n",
         "line 3: management_nic: 0000:00:05.0 is also an SR-IOV physical function in sriov (line 2)"},
        {"[keel]\nsriov = []\nsriov = []\n", "line 3: duplicate key \"sriov\""},
        {guest("a") + "sriov = [\"00:05.0:2\"]\n", "line 5: unknown key \"sriov\" in [[guest]]"},
    });
    // The management NIC beside (not on) a PF is fine.
    EXPECT_EQ(error_of("[keel]\nmanagement_nic = \"00:05.1\"\nsriov = [\"0000:00:05.0:2\"]\n"), "ok");
}

TEST(ConfigSriov, PfGivenToAGuest)
{
    // The PF stays Keel's: a guest naming it is refused at boot, like one naming management_nic.
    Parsed p(keel_sriov("[\"00:04.0:1\", \"0000:00:05.0:2\"]") + guest("a") + pci("00:05.0") + guest("b") +
             pci("00:05.1"));
    ASSERT_EQ(p.error(), "ok");
    PciConflict c[MAX_PCI_CONFLICTS];
    ASSERT_EQ(find_pci_conflicts(*p.cfg, c, MAX_PCI_CONFLICTS), 1u);
    EXPECT_EQ(c[0].kind, PciConflict::Kind::sriov_pf);
    EXPECT_EQ(c[0].guest, 0u);
    EXPECT_EQ(c[0].pci, 0u);
    EXPECT_EQ(c[0].other_line, 2u);
}

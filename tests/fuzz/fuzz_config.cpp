// libFuzzer target for Keel's configuration parser (kernel/guest/config.cpp).
//
// Parses an exact-size heap copy (ASan sees any overread). On failure the
// error must name a line of the input and give a reason; on success the
// result must respect every documented limit, its strings must lie in the
// input or the pool, and writing it back out as TOML must parse to the same
// configuration.
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <memory>
#include <string>

#include "kernel/guest/config.hpp"

namespace {

void check(bool c)
{
    if (!c) __builtin_trap();
}

bool bare(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

bool printable(char c) { return static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f; }

struct Bounds {
    const char *text;
    size_t len;
    const KeelConfig &c;

    // Every view lies inside the input or the used part of the pool.
    void view(StrView s) const
    {
        if (s.empty()) return;
        check(s.p != nullptr);
        bool in_text = s.p >= text && s.n <= len && s.p <= text + len - s.n;
        bool in_pool = s.p >= c.pool && s.n <= c.pool_used && s.p <= c.pool + c.pool_used - s.n;
        check(in_text || in_pool);
    }

    void path(StrView s) const
    {
        check(s.n >= 1 && s.n <= GuestConfig::MAX_PATH);
        view(s);
        for (size_t i = 0; i < s.n; i++) check(printable(s.p[i]) && s.p[i] != ' ');
    }
};

bool same(StrView a, StrView b) { return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0); }

void invariants(const char *text, size_t len, const KeelConfig &c)
{
    Bounds b{text, len, c};
    check(c.pool_used <= KeelConfig::POOL_SIZE);
    check(c.on_idle == KeelConfig::OnIdle::halt || c.on_idle == KeelConfig::OnIdle::poweroff);
    check(c.time_slice_ns >= KeelConfig::MIN_TIME_SLICE && c.time_slice_ns <= KeelConfig::MAX_TIME_SLICE);
    check(static_cast<unsigned>(c.loglevel) <= static_cast<unsigned>(Level::debug));
    check(c.guest_count <= KeelConfig::MAX_GUESTS);
    check(!c.has_management_nic || (c.management_nic.dev < 32 && c.management_nic.fn < 8 && c.management_nic.line >= 1));
    u32 functions = 0;
    for (u32 i = 0; i < c.guest_count; i++) {
        const GuestConfig &g = c.guests[i];
        check(g.name.n >= 1 && g.name.n <= GuestConfig::MAX_NAME);
        b.view(g.name);
        for (size_t k = 0; k < g.name.n; k++) check(bare(g.name.p[k]));
        for (u32 j = 0; j < i; j++) check(!same(g.name, c.guests[j].name));
        b.path(g.kernel);
        if (!g.initrd.empty()) b.path(g.initrd);
        check(g.module_count <= GuestConfig::MAX_MODULES);
        for (u32 m = 0; m < g.module_count; m++) b.path(g.modules[m]);
        check(g.cmdline.n <= GuestConfig::MAX_CMDLINE);
        b.view(g.cmdline);
        for (size_t k = 0; k < g.cmdline.n; k++) check(printable(g.cmdline.p[k]));
        check(g.memory >= GuestConfig::MIN_MEMORY && g.memory <= GuestConfig::MAX_MEMORY);
        check(g.memory % 4096 == 0);
        check(g.cpus >= 1 && g.cpus <= GuestConfig::MAX_CPUS);
        check(g.pin_count <= g.cpus && g.pin_count <= GuestConfig::MAX_PIN);
        check(g.on_exit == GuestConfig::OnExit::stop || g.on_exit == GuestConfig::OnExit::restart);
        check(g.line >= 1);
        if (i) check(g.line > c.guests[i - 1].line);
        // Disks: in file order, after their guest's header and before the next
        // guest's; a writable image is named by no other disk.
        check(g.disk_count <= GuestConfig::MAX_DISKS);
        for (u32 k = 0; k < g.disk_count; k++) {
            const DiskConfig &d = g.disks[k];
            b.path(d.file);
            check(d.line > (k ? g.disks[k - 1].line : g.line));
            if (i + 1 < c.guest_count) check(d.line < c.guests[i + 1].line);
            for (u32 j = 0; j <= i; j++)
                for (u32 m = 0; m < c.guests[j].disk_count && (j < i || m < k); m++) {
                    const DiskConfig &e = c.guests[j].disks[m];
                    check(!same(d.file, e.file) || (d.readonly && e.readonly));
                }
        }
        // Passed-through functions: valid addresses, in file order inside the guest, and
        // they share the guest's PCI devices with the disks and NICs.
        check(g.pci_count <= GuestConfig::MAX_PASSTHROUGH);
        check(g.disk_count + g.nic_count + g.pci_count <= GuestConfig::MAX_PCI);
        for (u32 k = 0; k < g.pci_count; k++) {
            const PciConfig &p = g.pci[k];
            check(p.dev < 32 && p.fn < 8);
            check(p.line > (k ? g.pci[k - 1].line : g.line));
            if (i + 1 < c.guest_count) check(p.line < c.guests[i + 1].line);
            char t[PciConfig::TEXT_SIZE];
            format_pci_address(t, p);
            PciConfig back{};
            check(parse_pci_address(t, 12, back) == nullptr && back.same_function(p));
        }
        functions += g.pci_count;
    }
    // At most one conflict per function, each naming a real one; the guest refused
    // is the later one (or the same).
    PciConflict conflicts[MAX_PCI_CONFLICTS];
    const u32 n = find_pci_conflicts(c, conflicts, MAX_PCI_CONFLICTS);
    check(n <= functions);
    for (u32 k = 0; k < n; k++) {
        const PciConflict &x = conflicts[k];
        check(x.guest < c.guest_count && x.pci < c.guests[x.guest].pci_count && x.other_guest <= x.guest);
        check(x.kind != PciConflict::Kind::management_nic || c.has_management_nic);
    }
}

void quoted(std::string &o, StrView s)
{
    o += '"';
    for (size_t i = 0; i < s.n; i++) {
        if (s.p[i] == '"' || s.p[i] == '\\') o += '\\';
        o += s.p[i];
    }
    o += '"';
}

// The configuration written back out in the documented format.
std::string emit(const KeelConfig &c)
{
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    std::string o = "[keel]\non_idle = ";
    o += c.on_idle == KeelConfig::OnIdle::poweroff ? "\"poweroff\"" : "\"halt\"";
    o += "\ntime_slice = \"" + std::to_string(c.time_slice_ns / 1000) + "us\"\n";
    if (c.has_loglevel) o += std::string("loglevel = \"") + levels[static_cast<unsigned>(c.loglevel)] + "\"\n";
    char t[PciConfig::TEXT_SIZE];
    if (c.has_management_nic) {
        format_pci_address(t, c.management_nic);
        o += std::string("management_nic = \"") + t + "\"\n";
    }
    for (u32 i = 0; i < c.guest_count; i++) {
        const GuestConfig &g = c.guests[i];
        o += "[[guest]]\nname = ";
        quoted(o, g.name);
        o += "\nkernel = ";
        quoted(o, g.kernel);
        o += "\nmemory = " + std::to_string(g.memory) + "\ncpus = " + std::to_string(g.cpus) + "\n";
        if (!g.initrd.empty()) { o += "initrd = "; quoted(o, g.initrd); o += "\n"; }
        if (!g.cmdline.empty()) { o += "cmdline = "; quoted(o, g.cmdline); o += "\n"; }
        o += "modules = [";
        for (u32 m = 0; m < g.module_count; m++) { quoted(o, g.modules[m]); o += ", "; }
        o += "]\npin = [";
        for (u32 p = 0; p < g.pin_count; p++) o += std::to_string(g.pin[p]) + ",";
        o += "]\non_exit = ";
        o += g.on_exit == GuestConfig::OnExit::restart ? "\"restart\"\n" : "\"stop\"\n";
        for (u32 k = 0; k < g.disk_count; k++) {
            o += "[[guest.disk]]\nfile = ";
            quoted(o, g.disks[k].file);
            o += g.disks[k].readonly ? "\nreadonly = true\n" : "\n";
        }
        for (u32 k = 0; k < g.pci_count; k++) {
            format_pci_address(t, g.pci[k]);
            o += std::string("[[guest.pci]]\ndevice = \"") + t + "\"\n";
        }
    }
    return o;
}

void equal(const KeelConfig &a, const KeelConfig &b)
{
    check(a.on_idle == b.on_idle && a.time_slice_ns == b.time_slice_ns && a.has_loglevel == b.has_loglevel);
    check(!a.has_loglevel || a.loglevel == b.loglevel);
    check(a.has_management_nic == b.has_management_nic);
    check(!a.has_management_nic || a.management_nic.same_function(b.management_nic));
    check(a.guest_count == b.guest_count);
    for (u32 i = 0; i < a.guest_count; i++) {
        const GuestConfig &x = a.guests[i], &y = b.guests[i];
        check(same(x.name, y.name) && same(x.kernel, y.kernel) && same(x.cmdline, y.cmdline) &&
              same(x.initrd, y.initrd));
        check(x.module_count == y.module_count);
        for (u32 m = 0; m < x.module_count; m++) check(same(x.modules[m], y.modules[m]));
        check(x.memory == y.memory && x.cpus == y.cpus && x.on_exit == y.on_exit);
        check(x.pin_count == y.pin_count && memcmp(x.pin, y.pin, x.pin_count) == 0);
        check(x.disk_count == y.disk_count);
        for (u32 k = 0; k < x.disk_count; k++)
            check(same(x.disks[k].file, y.disks[k].file) && x.disks[k].readonly == y.disks[k].readonly);
        check(x.pci_count == y.pci_count);
        for (u32 k = 0; k < x.pci_count; k++) check(x.pci[k].same_function(y.pci[k]));
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    std::unique_ptr<char[]> text(new char[size ? size : 1]);
    if (size) memcpy(text.get(), data, size);
    auto cfg = std::make_unique<KeelConfig>();
    ConfigError err;
    if (!parse_config(text.get(), size, *cfg, err).ok()) {
        size_t lines = 1;
        for (size_t i = 0; i < size; i++) lines += data[i] == '\n';
        check(err.line >= 1 && err.line <= lines);
        check(memchr(err.msg, 0, sizeof(err.msg)) != nullptr && err.msg[0] != 0);
        return 0;
    }
    check(err.line == 0 && err.msg[0] == 0);
    invariants(text.get(), size, *cfg);

    std::string again = emit(*cfg);
    auto cfg2 = std::make_unique<KeelConfig>();
    check(parse_config(again.data(), again.size(), *cfg2, err).ok());
    invariants(again.data(), again.size(), *cfg2);
    equal(*cfg, *cfg2);
    return 0;
}

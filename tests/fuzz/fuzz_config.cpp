// libFuzzer target for Keel's configuration parser (kernel/guest/config.cpp).
//
// Parses an exact-size heap copy (ASan sees any overread). On failure the
// error must name a line of the input and give a reason; on success the
// result must respect every documented limit, its strings must lie in the
// input or the pool, and writing it back out as TOML (every field the parser
// fills: [keel], guests with their disks, NICs and PCI functions, networks)
// must parse to the same configuration.
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <memory>
#include <string>

#include "kernel/guest/config.hpp"
#include "kernel/net/mac.hpp"
#include "kernel/storage/device_name.hpp"

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

bool same_device(const DeviceName &a, const DeviceName &b)
{
    return a.kind == b.kind && a.controller == b.controller && a.nsid == b.nsid && a.partition == b.partition &&
           same(a.name, b.name) && a.guid == b.guid;
}

bool ident(StrView s)
{
    if (s.n < 1 || s.n > GuestConfig::MAX_NAME) return false;
    for (size_t k = 0; k < s.n; k++)
        if (!bare(s.p[k])) return false;
    return true;
}

bool duration_ok(u64 ns) { return ns >= GuestConfig::MIN_WATCHDOG && ns <= GuestConfig::MAX_WATCHDOG && ns % 1000 == 0; }

void invariants(const char *text, size_t len, const KeelConfig &c)
{
    Bounds b{text, len, c};
    check(c.pool_used <= KeelConfig::POOL_SIZE);
    check(c.on_idle == KeelConfig::OnIdle::halt || c.on_idle == KeelConfig::OnIdle::poweroff);
    check(c.time_slice_ns >= KeelConfig::MIN_TIME_SLICE && c.time_slice_ns <= KeelConfig::MAX_TIME_SLICE);
    check(static_cast<unsigned>(c.loglevel) <= static_cast<unsigned>(Level::debug));
    check(c.guest_count <= KeelConfig::MAX_GUESTS);
    check(!c.has_management_nic || (c.management_nic.dev < 32 && c.management_nic.fn < 8 && c.management_nic.line >= 1));
    // SR-IOV physical functions: valid, distinct, none of them the management NIC.
    check(c.sriov_count <= KeelConfig::MAX_SRIOV);
    check(!c.sriov_count || c.sriov_line >= 1);
    for (u32 i = 0; i < c.sriov_count; i++) {
        const SriovConfig &r = c.sriov[i];
        check(r.pf.dev < 32 && r.pf.fn < 8 && r.pf.line == c.sriov_line);
        check(r.vfs >= 1 && r.vfs <= SriovConfig::MAX_VFS);
        check(!c.has_management_nic || !r.pf.same_function(c.management_nic));
        for (u32 j = 0; j < i; j++) check(!r.pf.same_function(c.sriov[j].pf));
    }
    // Networks: valid, uniquely named, in file order.
    check(c.network_count <= KeelConfig::MAX_NETWORKS);
    for (u32 i = 0; i < c.network_count; i++) {
        const NetworkConfig &n = c.networks[i];
        b.view(n.name);
        check(ident(n.name));
        check(n.mtu >= NetworkConfig::MIN_MTU && n.mtu <= NetworkConfig::MAX_MTU);
        check(n.line >= 1 && (i == 0 || n.line > c.networks[i - 1].line));
        for (u32 j = 0; j < i; j++) check(!same(n.name, c.networks[j].name));
    }
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
        check(g.on_bad_access == GuestConfig::OnBadAccess::pc || g.on_bad_access == GuestConfig::OnBadAccess::stop);
        check(g.watchdog_ns == 0 || duration_ok(g.watchdog_ns));
        check(g.max_restarts <= GuestConfig::MAX_MAX_RESTARTS);
        check(duration_ok(g.restart_window_ns));
        check(g.line >= 1);
        if (i) check(g.line > c.guests[i - 1].line);
        // Disks: in file order, after their guest's header and before the next
        // guest's; a writable image is named by no other disk.
        check(g.disk_count <= GuestConfig::MAX_DISKS);
        for (u32 k = 0; k < g.disk_count; k++) {
            const DiskConfig &d = g.disks[k];
            // An image (file, in RAM) or a device of Keel's storage, whose file is
            // optional and never packed (only mkimage --disk-out reads it).
            check(!d.file.empty() || !d.device.empty());
            if (!d.file.empty()) b.path(d.file);
            if (!d.device.empty()) {
                b.view(d.device);
                DeviceName dev{};
                check(parse_device_name(d.device, dev) == nullptr && same_device(dev, d.dev));
            }
            check(d.line > (k ? g.disks[k - 1].line : g.line));
            if (i + 1 < c.guest_count) check(d.line < c.guests[i + 1].line);
            // A writable image or device is named by no other disk (as written); a
            // device disk and an image disk never clash, whatever their files.
            for (u32 j = 0; j <= i; j++)
                for (u32 m = 0; m < c.guests[j].disk_count && (j < i || m < k); m++) {
                    const DiskConfig &e = c.guests[j].disks[m];
                    if (d.readonly && e.readonly) continue;
                    if (d.device.empty() && e.device.empty()) check(!same(d.file, e.file));
                    if (!d.device.empty()) check(!same(d.device, e.device));
                }
        }
        // NICs: in file order, each on an existing network, with a unicast, non-zero
        // MAC (given or assigned) that no other NIC has.
        check(g.nic_count <= GuestConfig::MAX_NICS);
        for (u32 k = 0; k < g.nic_count; k++) {
            const NicConfig &n = g.nics[k];
            b.view(n.network);
            check(n.network_index < c.network_count && same(n.network, c.networks[n.network_index].name));
            check(!n.mac.multicast() && !n.mac.zero());
            check(n.line > (k ? g.nics[k - 1].line : g.line));
            if (i + 1 < c.guest_count) check(n.line < c.guests[i + 1].line);
            for (u32 j = 0; j <= i; j++)
                for (u32 m = 0; m < c.guests[j].nic_count && (j < i || m < k); m++)
                    check(!(n.mac == c.guests[j].nics[m].mac));
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
        check(x.kind != PciConflict::Kind::sriov_pf || c.sriov_count);
    }
}

void quoted(std::string &o, StrView s)
{
    static const char hex[] = "0123456789abcdef";
    o += '"';
    for (size_t i = 0; i < s.n; i++) {
        const unsigned char ch = static_cast<unsigned char>(s.p[i]);
        if (ch < 0x20 || ch == 0x7f) {     // none today (every string is printable), but stay exact
            o += "\\u00";
            o += hex[ch >> 4];
            o += hex[ch & 15];
            continue;
        }
        if (ch == '"' || ch == '\\') o += '\\';
        o += s.p[i];
    }
    o += '"';
}

// Nanoseconds (a multiple of 1000, as every parsed duration is) as "<n>us".
std::string micros(u64 ns) { return "\"" + std::to_string(ns / 1000) + "us\""; }

// The configuration written back out in the documented format.
std::string emit(const KeelConfig &c)
{
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    std::string o = "[keel]\non_idle = ";
    o += c.on_idle == KeelConfig::OnIdle::poweroff ? "\"poweroff\"" : "\"halt\"";
    o += "\ntime_slice = " + micros(c.time_slice_ns) + "\n";
    if (c.has_loglevel) o += std::string("loglevel = \"") + levels[static_cast<unsigned>(c.loglevel)] + "\"\n";
    char t[PciConfig::TEXT_SIZE];
    if (c.has_management_nic) {
        format_pci_address(t, c.management_nic);
        o += std::string("management_nic = \"") + t + "\"\n";
    }
    if (c.sriov_line) {
        o += "sriov = [";
        for (u32 i = 0; i < c.sriov_count; i++) {
            format_pci_address(t, c.sriov[i].pf);
            o += std::string(i ? ", \"" : "\"") + t + ":" + std::to_string(c.sriov[i].vfs) + "\"";
        }
        o += "]\n";
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
        o += "on_bad_access = ";
        o += g.on_bad_access == GuestConfig::OnBadAccess::stop ? "\"stop\"\n" : "\"pc\"\n";
        if (g.watchdog_ns) o += "watchdog = " + micros(g.watchdog_ns) + "\n";
        o += "max_restarts = " + std::to_string(g.max_restarts) + "\n";
        o += "restart_window = " + micros(g.restart_window_ns) + "\n";
        for (u32 k = 0; k < g.disk_count; k++) {
            const DiskConfig &d = g.disks[k];
            o += "[[guest.disk]]\n";
            if (!d.file.empty()) { o += "file = "; quoted(o, d.file); o += "\n"; }
            if (!d.device.empty()) { o += "device = "; quoted(o, d.device); o += "\n"; }
            o += d.readonly ? "readonly = true\n" : "readonly = false\n";
        }
        for (u32 k = 0; k < g.nic_count; k++) {
            const NicConfig &n = g.nics[k];
            o += "[[guest.nic]]\nnetwork = ";
            quoted(o, n.network);
            o += "\n";
            if (n.mac_set) {        // an assigned MAC is assigned again, the same
                char m[18];
                net::format_mac(m, n.mac);
                o += std::string("mac = \"") + m + "\"\n";
            }
        }
        for (u32 k = 0; k < g.pci_count; k++) {
            format_pci_address(t, g.pci[k]);
            o += std::string("[[guest.pci]]\ndevice = \"") + t + "\"\n";
        }
    }
    // After the guests: a NIC may name a network further down the file.
    for (u32 i = 0; i < c.network_count; i++) {
        o += "[[network]]\nname = ";
        quoted(o, c.networks[i].name);
        o += "\nkind = \"isolated\"\nmtu = " + std::to_string(c.networks[i].mtu) + "\n";
    }
    return o;
}

void equal(const KeelConfig &a, const KeelConfig &b)
{
    check(a.on_idle == b.on_idle && a.time_slice_ns == b.time_slice_ns && a.has_loglevel == b.has_loglevel);
    check(!a.has_loglevel || a.loglevel == b.loglevel);
    check(a.has_management_nic == b.has_management_nic);
    check(!a.has_management_nic || a.management_nic.same_function(b.management_nic));
    check(a.sriov_count == b.sriov_count && !a.sriov_line == !b.sriov_line);
    for (u32 i = 0; i < a.sriov_count; i++)
        check(a.sriov[i].pf.same_function(b.sriov[i].pf) && a.sriov[i].vfs == b.sriov[i].vfs);
    check(a.network_count == b.network_count);
    for (u32 i = 0; i < a.network_count; i++)
        check(same(a.networks[i].name, b.networks[i].name) && a.networks[i].mtu == b.networks[i].mtu);
    check(a.guest_count == b.guest_count);
    for (u32 i = 0; i < a.guest_count; i++) {
        const GuestConfig &x = a.guests[i], &y = b.guests[i];
        check(same(x.name, y.name) && same(x.kernel, y.kernel) && same(x.cmdline, y.cmdline) &&
              same(x.initrd, y.initrd));
        check(x.module_count == y.module_count);
        for (u32 m = 0; m < x.module_count; m++) check(same(x.modules[m], y.modules[m]));
        check(x.memory == y.memory && x.cpus == y.cpus && x.on_exit == y.on_exit);
        check(x.on_bad_access == y.on_bad_access && x.watchdog_ns == y.watchdog_ns &&
              x.max_restarts == y.max_restarts && x.restart_window_ns == y.restart_window_ns);
        check(x.pin_count == y.pin_count && memcmp(x.pin, y.pin, x.pin_count) == 0);
        check(x.disk_count == y.disk_count);
        for (u32 k = 0; k < x.disk_count; k++) {
            const DiskConfig &d = x.disks[k], &e = y.disks[k];
            check(same(d.file, e.file) && same(d.device, e.device) && d.readonly == e.readonly);
            check(d.device.empty() || same_device(d.dev, e.dev));
        }
        check(x.nic_count == y.nic_count);
        for (u32 k = 0; k < x.nic_count; k++) {
            const NicConfig &n = x.nics[k], &m = y.nics[k];
            check(same(n.network, m.network) && n.network_index == m.network_index);
            check(n.mac_set == m.mac_set && n.mac == m.mac);
        }
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

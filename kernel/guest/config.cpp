// Keel's configuration file parser (the format: docs/CONFIG.md).
//
// One pass, line by line. Each line is first screened for bytes that never
// belong in the file (NUL, control characters, a bare CR); the parser proper
// then works on [i_, end_) of that line and never looks past end_. Arrays and
// strings are single-line, so nothing spans lines and nothing recurses.
#include "kernel/guest/config.hpp"

#include <stdarg.h>

#include "kernel/lib/format.hpp"

namespace {

// Reset in place: `x = T{}` could build a 16 KiB temporary on the stack.
template <class T>
void zero(T &x)
{
    static_assert(__is_trivially_copyable(T));
    u8 *p = reinterpret_cast<u8 *>(&x);
    for (usize i = 0; i < sizeof(T); i++) p[i] = 0;
}

bool ws(char c) { return c == ' ' || c == '\t'; }
bool digit(char c) { return c >= '0' && c <= '9'; }
bool alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool bare(char c) { return alpha(c) || digit(c) || c == '_' || c == '-'; }
bool token_char(char c) { return bare(c) || c == '+' || c == '.' || c == ':'; }
bool printable(u8 c) { return c >= 0x20 && c < 0x7f; }

int hexval(char c)
{
    if (digit(c)) return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool same(StrView a, StrView b)
{
    if (a.n != b.n) return false;
    for (usize i = 0; i < a.n; i++)
        if (a.p[i] != b.p[i]) return false;
    return true;
}

// Length for "%.*s" in messages, capped so that the message stays readable.
int shown(StrView s) { return int(min<usize>(s.n, 32)); }

enum class Table : u8 { none, keel, guest, disk, nic, pci, network };
enum class Key : u8 {
    on_idle, time_slice, loglevel, management_nic, sriov,
    name, kernel, modules, cmdline, initrd, memory, cpus, pin, on_exit, on_bad_access,
    watchdog, max_restarts, restart_window,
    file, readonly, device,
    nic_network, mac,
    pci_device,
    net_name, kind, mtu,
};

struct KeyDef {
    const char *name;
    Table table;
};

constexpr KeyDef KEYS[] = {
    {"on_idle", Table::keel}, {"time_slice", Table::keel}, {"loglevel", Table::keel},
    {"management_nic", Table::keel}, {"sriov", Table::keel},
    {"name", Table::guest}, {"kernel", Table::guest}, {"modules", Table::guest},
    {"cmdline", Table::guest}, {"initrd", Table::guest}, {"memory", Table::guest},
    {"cpus", Table::guest}, {"pin", Table::guest}, {"on_exit", Table::guest},
    {"on_bad_access", Table::guest}, {"watchdog", Table::guest}, {"max_restarts", Table::guest},
    {"restart_window", Table::guest},
    {"file", Table::disk}, {"readonly", Table::disk}, {"device", Table::disk},
    {"network", Table::nic}, {"mac", Table::nic},
    {"device", Table::pci},
    {"name", Table::network}, {"kind", Table::network}, {"mtu", Table::network},
};
constexpr unsigned NKEYS = sizeof(KEYS) / sizeof(KEYS[0]);
static_assert(NKEYS == unsigned(Key::mtu) + 1, "KEYS follows Key");
static_assert(NKEYS <= 32);

constexpr u32 bit(Key k) { return 1u << unsigned(k); }

struct Val {
    enum class Kind : u8 { str, integer, boolean, array } kind;   // array: at '[', not consumed
    StrView s;
    u64 mag;            // integer magnitude, or boolean
    bool neg;
};

class Parser {
public:
    Parser(const char *t, usize n, KeelConfig &c, ConfigError &e) : t_(t), n_(n), c_(c), e_(e) {}

    bool run()
    {
        usize p = 0;
        if (n_ >= 3 && u8(t_[0]) == 0xef && u8(t_[1]) == 0xbb && u8(t_[2]) == 0xbf) p = 3;   // UTF-8 BOM
        while (p < n_) {
            if (line_ != ~0u) line_++;
            key_ = nullptr;
            usize le = p;
            while (le < n_ && t_[le] != '\n') le++;
            usize ce = le;
            if (le < n_ && ce > p && t_[ce - 1] == '\r') ce--;
            if (!screen(p, ce) || !parse_line(p, ce)) return false;
            p = le + 1;
        }
        return end_table() && end_file();
    }

private:
    const char *t_;
    usize n_;
    KeelConfig &c_;
    ConfigError &e_;
    usize i_ = 0, end_ = 0;         // cursor, end of the current line's content
    u32 line_ = 0;
    Table table_ = Table::none;
    u32 seen_ = 0;                  // keys seen in the current table
    u32 keel_line_ = 0;             // line of [keel], 0 before it
    u32 pin_line_ = 0;
    GuestConfig *g_ = nullptr;      // the current [[guest]], or the last one
    DiskConfig *d_ = nullptr;       // the current [[guest.disk]]
    NicConfig *nic_ = nullptr;      // the current [[guest.nic]]
    PciConfig *pci_ = nullptr;      // the current [[guest.pci]]
    NetworkConfig *net_ = nullptr;  // the current [[network]]
    const char *key_ = nullptr;     // prefixes messages about a value

    bool vfail(u32 line, const char *fmt, va_list ap)
    {
        e_.line = line;
        usize k = key_ ? format(e_.msg, sizeof(e_.msg), "%s: ", key_) : 0;
        if (k < sizeof(e_.msg)) vformat(e_.msg + k, sizeof(e_.msg) - k, fmt, ap);
        return false;
    }

    __attribute__((format(printf, 2, 3))) bool fail(const char *fmt, ...)
    {
        va_list ap;
        va_start(ap, fmt);
        vfail(line_, fmt, ap);
        va_end(ap);
        return false;
    }

    __attribute__((format(printf, 3, 4))) bool fail_at(u32 line, const char *fmt, ...)
    {
        va_list ap;
        va_start(ap, fmt);
        vfail(line, fmt, ap);
        va_end(ap);
        return false;
    }

    bool unexpected()
    {
        if (i_ >= end_) return fail("unexpected end of line");
        u8 b = u8(t_[i_]);
        if (printable(b)) return fail("unexpected character '%c'", b);
        return fail("unexpected byte 0x%02x (only ASCII is supported)", b);
    }

    bool eol() const { return i_ >= end_ || t_[i_] == '#'; }
    bool peek(char c) const { return i_ < end_ && t_[i_] == c; }
    void skip_ws() { while (i_ < end_ && ws(t_[i_])) i_++; }

    StrView bare_key()
    {
        usize s = i_;
        while (i_ < end_ && bare(t_[i_])) i_++;
        return StrView{t_ + s, i_ - s};
    }

    bool screen(usize p, usize e)
    {
        for (; p < e; p++) {
            u8 b = u8(t_[p]);
            if (b == 0) return fail("NUL byte");
            if (b == '\r') return fail("carriage return without a line feed");
            if ((b < 0x20 && b != '\t') || b == 0x7f) return fail("control character 0x%02x", b);
        }
        return true;
    }

    bool parse_line(usize p, usize e)
    {
        i_ = p;
        end_ = e;
        skip_ws();
        if (eol()) return true;
        return t_[i_] == '[' ? header() : keyval();
    }

    bool header()
    {
        if (!end_table()) return false;
        i_++;
        bool arr = peek('[');
        if (arr) i_++;
        skip_ws();
        if (peek('"') || peek('\'')) return fail("quoted table names are not supported");
        StrView name = bare_key();
        if (name.empty()) return fail("expected a table name");
        skip_ws();
        // The dotted names are guest.disk, guest.nic and guest.pci (TOML allows spaces around the dot).
        bool disk = false, nic = false, pci = false;
        if (peek('.')) {
            i_++;
            skip_ws();
            if (peek('"') || peek('\'')) return fail("quoted table names are not supported");
            StrView sub = bare_key();
            skip_ws();
            disk = name.eq("guest") && sub.eq("disk") && !peek('.');
            nic = name.eq("guest") && sub.eq("nic") && !peek('.');
            pci = name.eq("guest") && sub.eq("pci") && !peek('.');
            if (!disk && !nic && !pci)
                return fail("dotted table names other than [[guest.disk]], [[guest.nic]] and [[guest.pci]] are not "
                            "supported");
        }
        if (!peek(']')) return fail(arr ? "expected ']]'" : "expected ']'");
        i_++;
        if (arr) {
            if (!peek(']')) return fail("expected ']]'");
            i_++;
        }
        skip_ws();
        if (!eol()) return fail("unexpected text after the table header");

        seen_ = 0;
        if (disk) return disk_header(arr);
        if (nic) return nic_header(arr);
        if (pci) return pci_header(arr);
        if (name.eq("network")) {
            if (!arr) return fail("network is an array of tables: write [[network]]");
            if (c_.network_count == KeelConfig::MAX_NETWORKS)
                return fail("too many networks (at most %u)", KeelConfig::MAX_NETWORKS);
            net_ = &c_.networks[c_.network_count++];
            net_->mtu = NetworkConfig::DEFAULT_MTU;
            net_->line = line_;
            table_ = Table::network;
            return true;
        }
        if (name.eq("keel")) {
            if (arr) return fail("keel is a single table: write [keel]");
            if (keel_line_) return fail("duplicate [keel] table (first at line %u)", keel_line_);
            keel_line_ = line_;
            table_ = Table::keel;
            return true;
        }
        if (name.eq("guest")) {
            if (!arr) return fail("guest is an array of tables: write [[guest]]");
            if (c_.guest_count == KeelConfig::MAX_GUESTS)
                return fail("too many guests (at most %u)", KeelConfig::MAX_GUESTS);
            g_ = &c_.guests[c_.guest_count++];
            g_->cpus = 1;
            g_->on_exit = GuestConfig::OnExit::stop;
            g_->on_bad_access = GuestConfig::OnBadAccess::pc;
            g_->restart_window_ns = GuestConfig::DEFAULT_RESTART_WINDOW;
            g_->line = line_;
            pin_line_ = 0;
            table_ = Table::guest;
            return true;
        }
        return fail("unknown table [%.*s] (expected [keel], [[guest]], [[guest.disk]], [[guest.nic]], [[guest.pci]] "
                    "or [[network]])", shown(name), name.p);
    }

    // [[guest.disk]] belongs to the most recent [[guest]], even across a [keel]
    // table in between (as in TOML).
    bool disk_header(bool arr)
    {
        if (!arr) return fail("disk is an array of tables: write [[guest.disk]]");
        if (!g_) return fail("[[guest.disk]] before any [[guest]]");
        if (g_->disk_count == GuestConfig::MAX_DISKS)
            return fail("guest \"%.*s\": too many disks (at most %u)", shown(g_->name), g_->name.p,
                        GuestConfig::MAX_DISKS);
        if (!pci_slot()) return false;
        d_ = &g_->disks[g_->disk_count++];
        d_->line = line_;
        table_ = Table::disk;
        return true;
    }

    // Disks, NICs and passed-through functions share the guest's PCI devices 1..MAX_PCI.
    bool pci_slot()
    {
        if (g_->disk_count + g_->nic_count + g_->pci_count < GuestConfig::MAX_PCI) return true;
        return fail("guest \"%.*s\": too many PCI devices (disks, nics and pci together: at most %u)",
                    shown(g_->name), g_->name.p, GuestConfig::MAX_PCI);
    }

    // [[guest.pci]], like [[guest.disk]], belongs to the most recent [[guest]]. Whether
    // its function is free (not Keel's, not another guest's) is not the parser's to
    // refuse: Keel refuses only that guest at boot (find_pci_conflicts).
    bool pci_header(bool arr)
    {
        if (!arr) return fail("pci is an array of tables: write [[guest.pci]]");
        if (!g_) return fail("[[guest.pci]] before any [[guest]]");
        if (g_->pci_count == GuestConfig::MAX_PASSTHROUGH)
            return fail("guest \"%.*s\": too many pci devices (at most %u)", shown(g_->name), g_->name.p,
                        GuestConfig::MAX_PASSTHROUGH);
        if (!pci_slot()) return false;
        pci_ = &g_->pci[g_->pci_count++];
        pci_->line = line_;
        table_ = Table::pci;
        return true;
    }

    // [[guest.nic]], like [[guest.disk]], belongs to the most recent [[guest]].
    bool nic_header(bool arr)
    {
        if (!arr) return fail("nic is an array of tables: write [[guest.nic]]");
        if (!g_) return fail("[[guest.nic]] before any [[guest]]");
        if (g_->nic_count == GuestConfig::MAX_NICS)
            return fail("guest \"%.*s\": too many nics (at most %u)", shown(g_->name), g_->name.p,
                        GuestConfig::MAX_NICS);
        if (!pci_slot()) return false;
        nic_ = &g_->nics[g_->nic_count++];
        nic_->line = line_;
        table_ = Table::nic;
        return true;
    }

    // Checks that need the whole table.
    bool end_table()
    {
        Table t = table_;
        table_ = Table::none;
        key_ = nullptr;
        if (t == Table::guest) return end_guest();
        if (t == Table::disk) return end_disk();
        if (t == Table::nic) return end_nic();
        if (t == Table::pci) return end_pci();
        if (t == Table::network) return end_network();
        return true;
    }

    bool end_nic()
    {
        if (!(seen_ & bit(Key::nic_network)))
            return fail_at(nic_->line, "[[guest.nic]]: missing required key \"network\"");
        return true;
    }

    bool end_pci()
    {
        if (!(seen_ & bit(Key::pci_device)))
            return fail_at(pci_->line, "[[guest.pci]]: missing required key \"device\"");
        return true;
    }

    bool end_network()
    {
        const NetworkConfig &n = *net_;
        if (!(seen_ & bit(Key::net_name))) return fail_at(n.line, "[[network]]: missing required key \"name\"");
        for (u32 i = 0; &c_.networks[i] != &n; i++)
            if (same(c_.networks[i].name, n.name))
                return fail_at(n.line, "duplicate network name \"%.*s\" (first at line %u)", shown(n.name), n.name.p,
                               c_.networks[i].line);
        return true;
    }

    // Checks that need the whole file: each NIC's network exists (networks may come
    // after the guests), two given MACs differ, and every other NIC gets its MAC.
    bool end_file()
    {
        struct Slot {
            GuestConfig *g;
            NicConfig *nic;
        };
        Slot where[KeelConfig::MAX_GUESTS * GuestConfig::MAX_NICS];
        net::MacSlot slots[KeelConfig::MAX_GUESTS * GuestConfig::MAX_NICS];
        usize n = 0;
        for (u32 gi = 0; gi < c_.guest_count; gi++) {
            GuestConfig &g = c_.guests[gi];
            for (u32 k = 0; k < g.nic_count; k++) {
                NicConfig &nic = g.nics[k];
                u32 i = 0;
                while (i < c_.network_count && !same(c_.networks[i].name, nic.network)) i++;
                if (i == c_.network_count)
                    return fail_at(nic.line, "network: no [[network]] named \"%.*s\"", shown(nic.network),
                                   nic.network.p);
                nic.network_index = i;
                where[n] = Slot{&g, &nic};
                slots[n] = net::MacSlot{g.name.p, g.name.n, k, nic.mac_set, nic.mac};
                n++;
            }
        }
        usize a = 0, b = 0;
        if (!net::assign_macs(slots, n, &a, &b)) {
            char m[18];
            net::format_mac(m, slots[b].mac);
            return fail_at(where[b].nic->line, "mac: %s is also the mac of the nic at line %u", m,
                           where[a].nic->line);
        }
        for (usize i = 0; i < n; i++) where[i].nic->mac = slots[i].mac;
        return true;
    }

    bool end_guest()
    {
        const GuestConfig &g = *g_;
        static constexpr Key required[] = {Key::name, Key::kernel, Key::memory};
        for (Key k : required) {
            if (seen_ & bit(k)) continue;
            const char *kn = KEYS[unsigned(k)].name;
            if (seen_ & bit(Key::name))
                return fail_at(g.line, "guest \"%.*s\": missing required key \"%s\"", shown(g.name), g.name.p, kn);
            return fail_at(g.line, "[[guest]]: missing required key \"%s\"", kn);
        }
        if (g.pin_count > g.cpus)
            return fail_at(pin_line_, "pin: %u entries but only %u cpus", g.pin_count, g.cpus);
        return true;
    }

    // A disk needs its file or its device, and a writable image or device may
    // be named only once in the whole file: shared, one writer would corrupt
    // what the other reads. The same string only: mkimage packs each path once,
    // so that is also what makes two disks one image in memory; two names for
    // one partition are caught at boot.
    bool end_disk()
    {
        const DiskConfig &d = *d_;
        if (!(seen_ & (bit(Key::file) | bit(Key::device))))
            return fail_at(d.line, "[[guest.disk]]: missing required key \"file\" (or \"device\")");
        for (u32 gi = 0; gi < c_.guest_count; gi++) {
            const GuestConfig &o = c_.guests[gi];
            for (u32 k = 0; k < o.disk_count; k++) {
                const DiskConfig &e = o.disks[k];
                if (&e == &d) return true;      // every earlier disk has been compared
                if (e.readonly && d.readonly) continue;
                // The same device written twice; overlapping extents under
                // different names are found at boot, once Keel has read the GPTs.
                if (!d.device.empty() && same(e.device, d.device)) {
                    if (&o == g_)
                        return fail_at(d.line, "device \"%.*s\": a guest may not name a writable device twice (also "
                                               "at line %u)", shown(d.device), d.device.p, e.line);
                    return fail_at(d.line, "device \"%.*s\": two guests may not share a writable device (also at "
                                           "line %u)", shown(d.device), d.device.p, e.line);
                }
                if (d.file.empty() || !d.device.empty() || !e.device.empty()) continue;
                if (!same(e.file, d.file)) continue;
                if (&o == g_)
                    return fail_at(d.line, "\"%.*s\": a guest may not name a writable image twice (also at line %u)",
                                   shown(d.file), d.file.p, e.line);
                return fail_at(d.line, "\"%.*s\": two guests may not share a writable image (also at line %u)",
                               shown(d.file), d.file.p, e.line);
            }
        }
        return true;
    }

    bool keyval()
    {
        if (peek('"') || peek('\'')) return fail("quoted keys are not supported");
        StrView k = bare_key();
        if (k.empty()) return unexpected();
        skip_ws();
        if (peek('.')) return fail("dotted keys are not supported");
        if (!peek('=')) return fail("expected '=' after \"%.*s\"", shown(k), k.p);
        i_++;
        skip_ws();
        if (table_ == Table::none)
            return fail("\"%.*s\" is outside a table: put it under [keel] or [[guest]]", shown(k), k.p);
        const char *tn = table_ == Table::keel    ? "[keel]"
                         : table_ == Table::guest ? "[[guest]]"
                         : table_ == Table::disk  ? "[[guest.disk]]"
                         : table_ == Table::nic   ? "[[guest.nic]]"
                         : table_ == Table::pci   ? "[[guest.pci]]"
                                                  : "[[network]]";
        unsigned idx = 0;
        while (idx < NKEYS && !(KEYS[idx].table == table_ && k.eq(KEYS[idx].name))) idx++;
        if (idx == NKEYS) return fail("unknown key \"%.*s\" in %s", shown(k), k.p, tn);
        Key key = Key(idx);
        if (seen_ & bit(key)) return fail("duplicate key \"%s\"", KEYS[idx].name);
        seen_ |= bit(key);
        key_ = KEYS[idx].name;
        if (!value(key)) return false;
        skip_ws();
        if (!eol()) return fail("unexpected text after the value");
        return true;
    }

    // ---- values ----

    bool value(Key k)
    {
        GuestConfig *g = g_;
        DiskConfig *d = d_;
        StrView s;
        u64 v;
        switch (k) {
        case Key::on_idle: {
            const char *want = "expected \"halt\" or \"poweroff\"";
            if (!str(s, want)) return false;
            if (s.eq("halt")) c_.on_idle = KeelConfig::OnIdle::halt;
            else if (s.eq("poweroff")) c_.on_idle = KeelConfig::OnIdle::poweroff;
            else return fail("%s", want);
            return true;
        }
        case Key::time_slice:
            return str(s, "expected a duration such as \"10ms\"") &&
                   duration(s, c_.time_slice_ns, KeelConfig::MIN_TIME_SLICE, KeelConfig::MAX_TIME_SLICE,
                            "must be 100us..1s");
        case Key::loglevel:
            if (!str(s, "expected a string")) return false;
            if (!console::parse_level(s.p, s.n, c_.loglevel))
                return fail("expected \"error\", \"warn\", \"info\" or \"debug\"");
            c_.has_loglevel = true;
            return true;
        case Key::management_nic:
            if (!pci_address(c_.management_nic)) return false;
            c_.management_nic.line = line_;
            c_.has_management_nic = true;
            for (u32 i = 0; i < c_.sriov_count; i++)
                if (c_.sriov[i].pf.same_function(c_.management_nic)) {
                    char t[PciConfig::TEXT_SIZE];
                    format_pci_address(t, c_.management_nic);
                    return fail("%s is also an SR-IOV physical function in sriov (line %u)", t, c_.sriov_line);
                }
            return true;
        case Key::sriov:
            c_.sriov_line = line_;
            return array("expected an array of strings such as \"0000:00:05.0:2\"", [&](const Val &e) {
                if (e.kind != Val::Kind::str) return fail("expected an array of strings such as \"0000:00:05.0:2\"");
                if (c_.sriov_count == KeelConfig::MAX_SRIOV) return fail("at most %u entries", KeelConfig::MAX_SRIOV);
                return sriov_entry(e.s);
            });
        case Key::name:
            if (!str(s, "expected a string") || !name(s)) return false;
            g->name = s;
            return true;
        case Key::kernel:
            if (!str(s, "expected a path string") || !path(s)) return false;
            g->kernel = s;
            g->kernel_line = line_;
            return true;
        case Key::initrd:
            if (!str(s, "expected a path string") || !path(s)) return false;
            g->initrd = s;
            g->initrd_line = line_;
            return true;
        case Key::cmdline:
            if (!str(s, "expected a string")) return false;
            if (s.n > GuestConfig::MAX_CMDLINE) return fail("longer than %zu bytes", GuestConfig::MAX_CMDLINE);
            for (usize i = 0; i < s.n; i++)
                if (!printable(u8(s.p[i]))) return fail("control characters are not allowed");
            g->cmdline = s;
            return true;
        case Key::modules:
            g->modules_line = line_;
            return array("expected an array of strings", [&](const Val &e) {
                if (e.kind != Val::Kind::str) return fail("expected an array of strings");
                if (g->module_count == GuestConfig::MAX_MODULES)
                    return fail("at most %u modules", GuestConfig::MAX_MODULES);
                if (!path(e.s)) return false;
                g->modules[g->module_count++] = e.s;
                return true;
            });
        case Key::memory:
            return size(g->memory);
        case Key::cpus:
            if (!integer(1, GuestConfig::MAX_CPUS, v)) return false;
            g->cpus = u32(v);
            return true;
        case Key::pin:
            pin_line_ = line_;
            return array("expected an array of CPU numbers", [&](const Val &e) {
                if (e.kind != Val::Kind::integer) return fail("expected an array of CPU numbers");
                if ((e.neg && e.mag) || e.mag > GuestConfig::MAX_PCPU)
                    return fail("CPU numbers must be 0..%u", GuestConfig::MAX_PCPU);
                if (g->pin_count == GuestConfig::MAX_PIN) return fail("at most %u entries", GuestConfig::MAX_PIN);
                g->pin[g->pin_count++] = u8(e.mag);
                return true;
            });
        case Key::on_exit: {
            const char *want = "expected \"stop\" or \"restart\"";
            if (!str(s, want)) return false;
            if (s.eq("stop")) g->on_exit = GuestConfig::OnExit::stop;
            else if (s.eq("restart")) g->on_exit = GuestConfig::OnExit::restart;
            else return fail("%s", want);
            return true;
        }
        case Key::on_bad_access: {
            const char *want = "expected \"pc\" or \"stop\"";
            if (!str(s, want)) return false;
            if (s.eq("pc")) g->on_bad_access = GuestConfig::OnBadAccess::pc;
            else if (s.eq("stop")) g->on_bad_access = GuestConfig::OnBadAccess::stop;
            else return fail("%s", want);
            return true;
        }
        case Key::watchdog:
            return str(s, "expected a duration such as \"10s\"") &&
                   duration(s, g->watchdog_ns, GuestConfig::MIN_WATCHDOG, GuestConfig::MAX_WATCHDOG,
                            "must be 10ms..1h");
        case Key::max_restarts:
            if (!integer(0, GuestConfig::MAX_MAX_RESTARTS, v)) return false;
            g->max_restarts = u32(v);
            return true;
        case Key::restart_window:
            return str(s, "expected a duration such as \"60s\"") &&
                   duration(s, g->restart_window_ns, GuestConfig::MIN_WATCHDOG, GuestConfig::MAX_WATCHDOG,
                            "must be 10ms..1h");
        case Key::file:
            if (!str(s, "expected a path string") || !path(s)) return false;
            d->file = s;
            return true;
        case Key::readonly:
            return boolean(d->readonly);
        case Key::device: {
            if (!str(s, "expected a device name such as \"nvme0n1p2\" or \"gpt-name:web\"")) return false;
            if (const char *why = parse_device_name(s, d->dev))
                return fail("\"%.*s\": %s", shown(s), s.p, why);
            d->device = s;
            return true;
        }
        case Key::nic_network:
            if (!str(s, "expected a network name") || !ident(s)) return false;
            nic_->network = s;
            return true;
        case Key::mac: {
            if (!str(s, "expected a MAC address such as \"02:4b:45:00:00:01\"")) return false;
            if (const char *why = net::parse_mac(s.p, s.n, nic_->mac))
                return fail("\"%.*s\" %s", shown(s), s.p, why);
            nic_->mac_set = true;
            return true;
        }
        case Key::pci_device:
            return pci_address(*pci_);
        case Key::net_name:
            if (!str(s, "expected a string") || !ident(s)) return false;
            net_->name = s;
            return true;
        case Key::kind:
            if (!str(s, "expected \"isolated\"")) return false;
            if (!s.eq("isolated")) return fail("expected \"isolated\" (the only kind so far)");
            return true;
        case Key::mtu:
            if (!integer(NetworkConfig::MIN_MTU, NetworkConfig::MAX_MTU, v)) return false;
            net_->mtu = u32(v);
            return true;
        }
        return fail("internal error");
    }

    bool str(StrView &s, const char *want)
    {
        Val v;
        if (!scalar(v)) return false;
        if (v.kind != Val::Kind::str) return fail("%s", want);
        s = v.s;
        return true;
    }

    // Strictly true or false: no strings, numbers or other spellings.
    bool boolean(bool &out)
    {
        const char *want = "expected true or false";
        if (eol()) return fail("missing value");
        usize s = i_;
        if (token_char(t_[i_])) {
            while (i_ < end_ && token_char(t_[i_])) i_++;
            StrView tok{t_ + s, i_ - s};
            if (!tok.eq("true") && !tok.eq("false")) return fail("%s", want);
            out = tok.eq("true");
            return true;
        }
        Val v;
        return scalar(v) && fail("%s", want);
    }

    bool integer(u64 lo, u64 hi, u64 &out)
    {
        Val v;
        if (!scalar(v)) return false;
        if (v.kind != Val::Kind::integer) return fail("expected an integer");
        if ((v.neg && v.mag) || v.mag < lo || v.mag > hi)
            return fail("must be %llu..%llu", (unsigned long long)lo, (unsigned long long)hi);
        out = v.mag;
        return true;
    }

    // Calls f(element) for each element of a single-line array of scalars.
    template <class F>
    bool array(const char *want, F &&f)
    {
        if (!peek('[')) {
            Val v;
            return scalar(v) && fail("%s", want);
        }
        i_++;
        bool any = false;
        Val::Kind kind = Val::Kind::str;
        for (;;) {
            skip_ws();
            if (eol()) return fail("unterminated array (arrays must end on the same line)");
            if (peek(']')) { i_++; return true; }
            if (peek('[')) return fail("nested arrays are not supported");
            if (peek(',')) return fail("expected a value before ','");
            Val v;
            if (!scalar(v)) return false;
            if (any && v.kind != kind) return fail("arrays must not mix types");
            any = true;
            kind = v.kind;
            if (!f(v)) return false;
            skip_ws();
            if (peek(',')) { i_++; continue; }
            if (peek(']')) { i_++; return true; }
            if (eol()) return fail("unterminated array (arrays must end on the same line)");
            return fail("expected ',' or ']' in the array");
        }
    }

    // A string, integer or boolean; at '[' only reports an array (unconsumed).
    bool scalar(Val &v)
    {
        v = Val{};
        if (eol()) return fail("missing value");
        char ch = t_[i_];
        if (ch == '"') { v.kind = Val::Kind::str; return string(v.s); }
        if (ch == '[') { v.kind = Val::Kind::array; return true; }
        if (ch == '\'') return fail("literal strings ('...') are not supported: use \"...\"");
        if (ch == '{') return fail("inline tables are not supported");
        usize s = i_;
        while (i_ < end_ && token_char(t_[i_])) i_++;
        if (i_ == s) return unexpected();
        return token(StrView{t_ + s, i_ - s}, v);
    }

    bool token(StrView tok, Val &v)
    {
        if (tok.eq("true") || tok.eq("false")) {
            v.kind = Val::Kind::boolean;
            v.mag = tok.eq("true");
            return true;
        }
        bool sign = tok.p[0] == '+' || tok.p[0] == '-';
        StrView r{tok.p + sign, tok.n - sign};
        if (r.eq("inf") || r.eq("nan")) return fail("floats are not supported");
        if (r.empty() || !digit(r.p[0]))
            return fail("unexpected value \"%.*s\" (strings need double quotes)", shown(tok), tok.p);
        for (usize i = 0; i < r.n; i++)
            if (r.p[i] == ':' || r.p[i] == '-') return fail("dates and times are not supported");
        v.kind = Val::Kind::integer;
        v.neg = tok.p[0] == '-';
        if (r.n > 1 && r.p[0] == '0' && r.p[1] == 'x') {
            if (sign) return fail("hex integers cannot have a sign");
            return digits(StrView{r.p + 2, r.n - 2}, 16, tok, v.mag);
        }
        if (r.n > 1 && r.p[0] == '0' && (r.p[1] == 'o' || r.p[1] == 'b'))
            return fail("octal and binary integers are not supported");
        for (usize i = 0; i < r.n; i++)
            if (r.p[i] == '.' || r.p[i] == 'e' || r.p[i] == 'E') return fail("floats are not supported");
        if (r.n > 1 && r.p[0] == '0' && (digit(r.p[1]) || r.p[1] == '_')) return fail("leading zeros are not allowed");
        return digits(r, 10, tok, v.mag);
    }

    // Digits with single underscores between them.
    bool digits(StrView d, unsigned base, StrView tok, u64 &out)
    {
        u64 v = 0;
        bool prev = false;
        for (usize i = 0; i < d.n; i++) {
            if (d.p[i] == '_' && prev) { prev = false; continue; }
            int x = hexval(d.p[i]);
            if (x < 0 || unsigned(x) >= base) break;
            if (v > (~0ull - unsigned(x)) / base) return fail("integer too large");
            v = v * base + unsigned(x);
            prev = true;
            if (i + 1 == d.n) { out = v; return true; }
        }
        return fail("invalid integer \"%.*s\"", shown(tok), tok.p);
    }

    // A basic string; unescaped into the pool if it has escapes.
    bool string(StrView &out)
    {
        if (i_ + 2 < end_ && t_[i_ + 1] == '"' && t_[i_ + 2] == '"')
            return fail("multi-line strings are not supported");
        usize start = ++i_;
        char *dst = nullptr;
        usize dn = 0;
        auto put = [&](char ch) {
            if (c_.pool_used + dn >= KeelConfig::POOL_SIZE)
                return fail("strings with escapes exceed %zu bytes in total", KeelConfig::POOL_SIZE);
            dst[dn++] = ch;
            return true;
        };
        for (;;) {
            if (i_ >= end_) return fail("unterminated string (strings must end on the same line)");
            char ch = t_[i_];
            if (ch == '"') break;
            if (u8(ch) >= 0x80) return fail("non-ASCII characters are not supported");
            i_++;
            if (ch != '\\') {
                if (dst && !put(ch)) return false;
                continue;
            }
            if (!dst) {
                dst = c_.pool + c_.pool_used;
                for (usize k = start; k < i_ - 1; k++)
                    if (!put(t_[k])) return false;
            }
            if (i_ >= end_) return fail("unterminated string (strings must end on the same line)");
            char e = t_[i_++];
            switch (e) {
            case '"': ch = '"'; break;
            case '\\': ch = '\\'; break;
            case 'n': ch = '\n'; break;
            case 't': ch = '\t'; break;
            case 'u': {
                u32 cp = 0;
                for (int k = 0; k < 4; k++, i_++) {
                    if (i_ >= end_ || hexval(t_[i_]) < 0) return fail("\\u needs four hex digits");
                    cp = cp * 16 + u32(hexval(t_[i_]));
                }
                if (cp >= 0x80) return fail("non-ASCII escape \\u%04x (only ASCII is supported)", cp);
                ch = char(cp);
                break;
            }
            default:
                if (printable(u8(e))) return fail("unsupported escape \\%c", e);
                return fail("unsupported escape");
            }
            if (!put(ch)) return false;
        }
        out = dst ? StrView{dst, dn} : StrView{t_ + start, i_ - start};
        c_.pool_used += dn;
        i_++;   // closing quote
        return true;
    }

    // ---- checks of particular values ----

    // A host PCI function (line untouched).
    bool pci_address(PciConfig &out)
    {
        StrView s;
        if (!str(s, "expected a PCI address such as \"0000:00:04.0\"")) return false;
        if (const char *why = parse_pci_address(s.p, s.n, out)) return fail("\"%.*s\": %s", shown(s), s.p, why);
        return true;
    }

    // One `sriov` entry: a PF address, ':', its VF count in decimal.
    bool sriov_entry(StrView s)
    {
        usize colon = s.n, dot = s.n;
        for (usize i = 0; i < s.n; i++) {
            if (s.p[i] == ':') colon = i;
            if (s.p[i] == '.') dot = i;
        }
        if (colon == s.n || dot == s.n || colon < dot)
            return fail("\"%.*s\": expected a PF address and its VF count, such as \"0000:00:05.0:2\"", shown(s), s.p);
        SriovConfig &r = c_.sriov[c_.sriov_count];
        if (const char *why = parse_pci_address(s.p, colon, r.pf)) return fail("\"%.*s\": %s", shown(s), s.p, why);
        u32 vfs = 0;
        const usize digits = s.n - colon - 1;
        for (usize i = colon + 1; i < s.n; i++) {
            if (s.p[i] < '0' || s.p[i] > '9') {
                vfs = ~0u;
                break;
            }
            if (vfs <= SriovConfig::MAX_VFS) vfs = vfs * 10 + u32(s.p[i] - '0');
        }
        if (!digits || vfs < 1 || vfs > SriovConfig::MAX_VFS)
            return fail("\"%.*s\": the VF count must be 1..%u (in decimal)", shown(s), s.p, unsigned(SriovConfig::MAX_VFS));
        r.vfs = u16(vfs);
        r.pf.line = line_;
        char t[PciConfig::TEXT_SIZE];
        format_pci_address(t, r.pf);
        for (u32 i = 0; i < c_.sriov_count; i++)
            if (c_.sriov[i].pf.same_function(r.pf)) return fail("physical function %s is named twice", t);
        if (c_.has_management_nic && c_.management_nic.same_function(r.pf))
            return fail("physical function %s is Keel's management_nic (line %u)", t, c_.management_nic.line);
        c_.sriov_count++;
        return true;
    }

    // A guest's or a network's name.
    bool ident(StrView s)
    {
        if (s.n < 1 || s.n > GuestConfig::MAX_NAME)
            return fail("must be 1 to %zu characters", GuestConfig::MAX_NAME);
        for (usize i = 0; i < s.n; i++)
            if (!bare(s.p[i])) return fail("only A-Z a-z 0-9 _ - are allowed");
        return true;
    }

    bool name(StrView s)
    {
        if (!ident(s)) return false;
        for (u32 i = 0; i + 1 < c_.guest_count; i++)
            if (same(c_.guests[i].name, s))
                return fail("\"%.*s\" is already the guest at line %u", shown(s), s.p, c_.guests[i].line);
        return true;
    }

    bool path(StrView s)
    {
        if (s.empty()) return fail("expected a non-empty path");
        if (s.n > GuestConfig::MAX_PATH) return fail("path longer than %zu bytes", GuestConfig::MAX_PATH);
        for (usize i = 0; i < s.n; i++)
            if (!printable(u8(s.p[i])) || s.p[i] == ' ')
                return fail("spaces and control characters are not allowed in paths");
        return true;
    }

    // Decimal digits of s from k on; `big` on overflow.
    static u64 decimal(StrView s, usize &k, bool &big)
    {
        u64 v = 0;
        for (; k < s.n && digit(s.p[k]); k++) {
            unsigned d = unsigned(s.p[k] - '0');
            if (v > (~0ull - d) / 10) big = true;
            else v = v * 10 + d;
        }
        return v;
    }

    static bool scale(u64 &v, u64 mul)
    {
        if (v > ~0ull / mul) return false;
        v *= mul;
        return true;
    }

    // "<n>", "<n>K", "<n>M", "<n>G" (a string) or plain bytes (an integer).
    bool size(u64 &out)
    {
        const char *want = "expected a size such as \"64M\"";
        Val v;
        if (!scalar(v)) return false;
        bool big = false;
        u64 n = v.mag;
        if (v.kind == Val::Kind::integer) {
            big = v.neg && v.mag;
        } else if (v.kind == Val::Kind::str) {
            usize k = 0;
            n = decimal(v.s, k, big);
            if (k == 0) return fail("%s", want);
            if (k < v.s.n) {
                u64 mul = v.s.p[k] == 'K' ? KiB : v.s.p[k] == 'M' ? MiB : v.s.p[k] == 'G' ? GiB : 0;
                if (!mul) return fail("%s", want);
                if (!scale(n, mul)) big = true;
                k++;
            }
            if (k != v.s.n) return fail("%s", want);
        } else {
            return fail("%s", want);
        }
        if (big || n < GuestConfig::MIN_MEMORY || n > GuestConfig::MAX_MEMORY) return fail("must be 1M..64G");
        if (n % PAGE_SIZE) return fail("must be a multiple of 4K");
        out = n;
        return true;
    }

    // "<n>us", "<n>ms" or "<n>s", within lo..hi nanoseconds.
    bool duration(StrView s, u64 &ns, u64 lo, u64 hi, const char *range)
    {
        const char *want = "expected a duration such as \"10ms\"";
        usize k = 0;
        bool big = false;
        u64 n = decimal(s, k, big);
        if (k == 0) return fail("%s", want);
        if (k + 1 == s.n && s.p[k] == 's') big |= !scale(n, 1000000000);
        else if (k + 2 == s.n && s.p[k + 1] == 's' && s.p[k] == 'u') big |= !scale(n, 1000);
        else if (k + 2 == s.n && s.p[k + 1] == 's' && s.p[k] == 'm') big |= !scale(n, 1000000);
        else return fail("%s", want);
        if (big || n < lo || n > hi) return fail("%s", range);
        ns = n;
        return true;
    }
};

} // namespace

const char *parse_pci_address(const char *s, usize n, PciConfig &out)
{
    if (n == 0) return "empty (expected SSSS:BB:DD.F or BB:DD.F in hex, such as \"0000:00:04.0\")";
    // Fields of hex digits between the separators, the last after the '.'.
    constexpr usize MAXF = 4;
    u32 val[MAXF] = {};
    usize len[MAXF] = {};
    char sep[MAXF] = {};         // sep[k]: the separator after field k
    usize f = 0;
    for (usize i = 0; i < n; i++) {
        char c = s[i];
        if (c == ':' || c == '.') {
            if (f + 1 == MAXF) return "expected SSSS:BB:DD.F or BB:DD.F";
            sep[f++] = c;
            continue;
        }
        int x = hexval(c);
        if (x < 0) return "only hex digits, ':' and '.' are allowed (SSSS:BB:DD.F or BB:DD.F)";
        if (len[f] < 8) val[f] = val[f] * 16 + u32(x);
        len[f]++;
    }
    // "BB:DD.F" (three fields) or "SSSS:BB:DD.F" (four).
    const bool longf = f == 3;
    if (!(f == 2 && sep[0] == ':' && sep[1] == '.') && !(longf && sep[0] == ':' && sep[1] == ':' && sep[2] == '.'))
        return "expected SSSS:BB:DD.F or BB:DD.F";
    const usize b = longf ? 1 : 0;
    if (longf && len[0] != 4) return "the segment needs 4 hex digits (SSSS:BB:DD.F)";
    if (len[b] != 2) return "the bus needs 2 hex digits (SSSS:BB:DD.F or BB:DD.F)";
    if (len[b + 1] != 2) return "the device needs 2 hex digits (SSSS:BB:DD.F or BB:DD.F)";
    if (len[b + 2] != 1) return "the function needs 1 hex digit (SSSS:BB:DD.F or BB:DD.F)";
    if (val[b + 1] > 0x1f) return "device number above 1f";
    if (val[b + 2] > 7) return "function number above 7";
    out.segment = longf ? u16(val[0]) : 0;
    out.bus = u8(val[b]);
    out.dev = u8(val[b + 1]);
    out.fn = u8(val[b + 2]);
    return nullptr;
}

void format_pci_address(char (&out)[PciConfig::TEXT_SIZE], const PciConfig &p)
{
    format(out, sizeof(out), "%04x:%02x:%02x.%x", unsigned(p.segment), unsigned(p.bus), unsigned(p.dev),
           unsigned(p.fn));
}

u32 find_pci_conflicts(const KeelConfig &c, PciConflict *out, u32 cap)
{
    u32 count = 0;
    bool refused[KeelConfig::MAX_GUESTS] = {};
    auto add = [&](PciConflict x) {
        if (count < cap) out[count] = x;
        count++;
    };
    for (u32 gi = 0; gi < c.guest_count && gi < KeelConfig::MAX_GUESTS; gi++) {
        const GuestConfig &g = c.guests[gi];
        for (u32 k = 0; k < g.pci_count && k < GuestConfig::MAX_PASSTHROUGH; k++) {
            const PciConfig &p = g.pci[k];
            const auto conflict = [&]() -> bool {
                if (c.has_management_nic && p.same_function(c.management_nic)) {
                    add(PciConflict{PciConflict::Kind::management_nic, gi, k, gi, c.management_nic.line});
                    return true;
                }
                for (u32 j = 0; j < c.sriov_count && j < KeelConfig::MAX_SRIOV; j++)
                    if (p.same_function(c.sriov[j].pf)) {
                        add(PciConflict{PciConflict::Kind::sriov_pf, gi, k, gi, c.sriov[j].pf.line});
                        return true;
                    }
                for (u32 j = 0; j < k; j++)
                    if (p.same_function(g.pci[j])) {
                        add(PciConflict{PciConflict::Kind::same_guest, gi, k, gi, g.pci[j].line});
                        return true;
                    }
                for (u32 oi = 0; oi < gi; oi++) {
                    if (refused[oi]) continue;
                    const GuestConfig &o = c.guests[oi];
                    for (u32 j = 0; j < o.pci_count && j < GuestConfig::MAX_PASSTHROUGH; j++)
                        if (p.same_function(o.pci[j])) {
                            add(PciConflict{PciConflict::Kind::other_guest, gi, k, oi, o.pci[j].line});
                            return true;
                        }
                }
                return false;
            }();
            if (conflict) refused[gi] = true;
        }
    }
    return count;
}

Status parse_config(const char *text, usize len, KeelConfig &out, ConfigError &err)
{
    zero(out);
    zero(err);
    out.on_idle = KeelConfig::OnIdle::halt;
    out.time_slice_ns = KeelConfig::DEFAULT_TIME_SLICE;
    out.loglevel = Level::info;
    if (!text) len = 0;
    Parser p(text, len, out, err);
    if (!p.run()) return Err::invalid;
    return {};
}

void log_config_error(const ConfigError &err)
{
    log_error("keel.toml line %u: %s; no guests started", err.line, err.msg);
}

KeelConfig::OnIdle config_on_idle(const char *t, usize n)
{
    using OnIdle = KeelConfig::OnIdle;
    if (!t) return OnIdle::halt;
    usize p = 0;
    if (n >= 3 && u8(t[0]) == 0xef && u8(t[1]) == 0xbb && u8(t[2]) == 0xbf) p = 3;   // UTF-8 BOM
    bool in_keel = false;
    while (p < n) {
        usize e = p;
        while (e < n && t[e] != '\n') e++;
        const usize next = e + 1;
        if (e > p && t[e - 1] == '\r') e--;
        usize i = p;
        auto skip_ws = [&] { while (i < e && ws(t[i])) i++; };
        auto lit = [&](const char *s) {
            usize k = 0;
            for (; s[k]; k++)
                if (i + k >= e || t[i + k] != s[k]) return false;
            i += k;
            return true;
        };
        auto rest_is_comment = [&] {
            skip_ws();
            return i == e || t[i] == '#';
        };
        skip_ws();
        if (lit("[")) {
            if (in_keel) return OnIdle::halt;   // the [keel] table ended without on_idle
            skip_ws();
            if (lit("keel")) {
                skip_ws();
                in_keel = lit("]") && rest_is_comment();
            }
        } else if (in_keel && lit("on_idle")) {
            skip_ws();
            if (lit("=")) {   // (else another key that starts with "on_idle")
                skip_ws();
                if (lit("\"poweroff\"") && rest_is_comment()) return OnIdle::poweroff;
                return OnIdle::halt;   // "halt", or a value Keel refuses
            }
        }
        p = next;
    }
    return OnIdle::halt;
}

// The guest ACPI builder, checked by reading its output back the way a guest
// would: Keel's own table parser (kernel/firmware/acpi.hpp) through a fake guest-physical
// memory, the \_S5 finder, and a structural AML walker written here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernel/firmware/acpi.hpp"
#include "kernel/firmware/acpi_s5.hpp"
#include "kernel/guest/guest_acpi.hpp"

namespace {

using Bytes = std::vector<u8>;

constexpr u64 BASE = 0x7ffe0000;
constexpr u16 SLEEP_CTL = 0x604, SLEEP_STS = 0x605, RESET_PORT = 0xcf9;
constexpr u8 RESET_VALUE = 0x06, S5 = 5;
constexpr u32 PNP0501 = 0x0105d041;

GuestAcpiConfig config(u32 vcpus)
{
    GuestAcpiConfig c;
    c.base = BASE;
    c.vcpus = vcpus;
    c.sleep_ctl_port = SLEEP_CTL;
    c.sleep_sts_port = SLEEP_STS;
    c.reset_port = RESET_PORT;
    c.reset_value = RESET_VALUE;
    c.s5_slp_typ = S5;
    c.pm_timer_port = 0x608;
    c.pcat_compat = true;
    c.com1 = true;
    c.virtio[0] = {0xd0000000, 0x200, 5};
    c.virtio[1] = {0xd0000200, 0x200, 6};
    c.nvirtio = 2;
    return c;
}

// The largest configuration there is.
GuestAcpiConfig max_config()
{
    GuestAcpiConfig c = config(GuestAcpiConfig::MAX_VCPUS);
    for (u32 i = 0; i < GuestAcpiConfig::MAX_VIRTIO; i++)
        c.virtio[i] = {0xfffff000ull - 0x1000ull * i, 0x1000, 0xffffff00u + i};
    c.ioapic_gsi_base = 0xffffff00u - 200;      // GSIs up to 2^32 - 1
    c.ioapic_pins = 240;
    c.nvirtio = GuestAcpiConfig::MAX_VIRTIO;
    c.pci = {0xe0000000, 0xc0000000, 0x20000000, 0x100000000ull, 0xfffffff000000000ull, 32, 0xffffff00u - 200};
    return c;
}

struct Built {
    Bytes blob;
    GuestAcpiLayout layout;
};

Built build(const GuestAcpiConfig &c)
{
    Bytes buf(GUEST_ACPI_MAX_BYTES + 64, 0xaa);
    Result<GuestAcpiLayout> r = build_guest_acpi(c, buf.data(), buf.size());
    EXPECT_TRUE(r.ok()) << err_name(r.error());
    if (!r.ok()) return {};
    EXPECT_LE(r->size, GUEST_ACPI_MAX_BYTES);
    for (size_t i = r->size; i < buf.size(); i++) EXPECT_EQ(buf[i], 0xaa) << "byte " << i << " past the end written";
    buf.resize(r->size);
    return {buf, *r};
}

// Guest-physical memory holding the blob at `base`. Every map() returns a
// fresh, exactly sized copy and frees the previous one, so ASan catches reads
// past the requested length and uses of a stale mapping.
class GuestMem : public AcpiMemory {
public:
    GuestMem(u64 base, const Bytes &b) : base_(base), bytes_(b) {}

    const u8 *map(PhysAddr pa, usize len) override
    {
        window_.reset();
        if (pa.raw() < base_ || pa.raw() - base_ > bytes_.size() || len > bytes_.size() - (pa.raw() - base_))
            return nullptr;
        window_.reset(new u8[len]);
        memcpy(window_.get(), bytes_.data() + (pa.raw() - base_), len);
        return window_.get();
    }

private:
    u64 base_;
    Bytes bytes_;
    std::unique_ptr<u8[]> window_;
};

u8 sum(const u8 *p, size_t n)
{
    u8 s = 0;
    for (size_t i = 0; i < n; i++) s = u8(s + p[i]);
    return s;
}
u16 rd16(const u8 *p) { return u16(p[0] | p[1] << 8); }
u32 rd32(const u8 *p) { return u32(p[0]) | u32(p[1]) << 8 | u32(p[2]) << 16 | u32(p[3]) << 24; }
u64 rd64(const u8 *p) { return rd32(p) | u64(rd32(p + 4)) << 32; }

// A table's bytes inside the blob, by guest-physical address.
const u8 *table_at(const Built &b, u64 gpa)
{
    const u64 base = b.layout.rsdp;     // the RSDP is at offset 0
    EXPECT_GE(gpa, base);
    EXPECT_LE(gpa - base + 36, b.blob.size());
    return b.blob.data() + (gpa - base);
}

// ------------------------------------------------------------------ AML

// What the walker saw: every Name() with its full path and value.
struct AmlValue {
    enum Kind { INTEGER, STRING, BUFFER, PACKAGE } kind;
    u64 integer = 0;
    std::string string;
    Bytes buffer;
    std::vector<u64> package;
    std::vector<std::vector<u64>> rows;   // a package of packages (a _PRT): its elements
};
struct AmlName {
    std::string path;     // e.g. "\_SB_.COM1._HID"
    AmlValue value;
};

// A structural AML walker for the subset the builder emits: Scope, Device,
// Name with integer/string/buffer/package data. Every PkgLength must stay
// inside its parent and every byte must be consumed; anything else fails.
class AmlWalker {
public:
    AmlWalker(const u8 *p, size_t n) : p_(p), n_(n) {}

    bool walk()
    {
        size_t i = 0;
        return term_list(i, n_, "\\") && i == n_;
    }
    std::vector<AmlName> names;
    std::vector<std::string> scopes;    // Scope and Device blocks opened, by path
    std::string error;
    size_t pkglen_bytes[5] = {};        // PkgLength encodings seen, by size

private:
    bool fail(const std::string &why, size_t at)
    {
        if (error.empty()) error = why + " at " + std::to_string(at);
        return false;
    }

    // PkgLength at i: the package ends at i + length (the length counts its own bytes).
    bool pkg_length(size_t &i, size_t end, size_t &pkg_end)
    {
        const size_t start = i;
        if (i >= end) return fail("PkgLength past the end", i);
        const u8 lead = p_[i++];
        const size_t follow = lead >> 6;
        size_t len;
        if (follow == 0) {
            len = lead & 0x3f;
        } else {
            if (lead & 0x30) return fail("PkgLength reserved bits set", start);
            if (end - i < follow) return fail("PkgLength truncated", start);
            len = lead & 0x0f;
            for (size_t k = 0; k < follow; k++) len |= size_t(p_[i++]) << (4 + 8 * k);
        }
        // The builder encodes minimally.
        const size_t minimal = len <= 0x3f ? 1 : len <= 0xfff ? 2 : len <= 0xfffff ? 3 : 4;
        if (follow + 1 != minimal) return fail("PkgLength not minimal", start);
        pkglen_bytes[follow + 1]++;
        if (len < follow + 1 || len > end - start) return fail("PkgLength outside its parent", start);
        pkg_end = start + len;
        return true;
    }

    bool name_seg(size_t &i, size_t end, std::string &out)
    {
        if (end - i < 4) return fail("NameSeg truncated", i);
        for (int k = 0; k < 4; k++) {
            const char c = char(p_[i + k]);
            const bool ok = (c >= 'A' && c <= 'Z') || c == '_' || (k > 0 && c >= '0' && c <= '9');
            if (!ok) return fail("bad NameSeg character", i + k);
        }
        out.append(reinterpret_cast<const char *>(p_ + i), 4);
        i += 4;
        return true;
    }

    // NameString relative to `scope`, as an absolute path.
    bool name_string(size_t &i, size_t end, const std::string &scope, std::string &out)
    {
        if (i >= end) return fail("NameString past the end", i);
        std::string base = scope;
        if (p_[i] == '\\') {
            base = "\\";
            i++;
        }
        if (i >= end) return fail("NameString truncated", i);
        size_t segs = 1;
        if (p_[i] == 0x2e) {
            segs = 2;
            i++;
        } else if (p_[i] == 0x2f) {
            if (end - i < 2) return fail("MultiNamePrefix truncated", i);
            segs = p_[i + 1];
            i += 2;
        } else if (p_[i] == 0x00) {
            i++;
            out = base;
            return true;
        }
        out = base;
        for (size_t s = 0; s < segs; s++) {
            if (out.back() != '\\') out += '.';
            if (!name_seg(i, end, out)) return false;
        }
        return true;
    }

    bool integer(size_t &i, size_t end, u64 &v)
    {
        if (i >= end) return fail("integer past the end", i);
        const u8 op = p_[i++];
        size_t w = 0;
        switch (op) {
        case 0x00: v = 0; return true;
        case 0x01: v = 1; return true;
        case 0xff: v = ~0ull; return true;
        case 0x0a: w = 1; break;
        case 0x0b: w = 2; break;
        case 0x0c: w = 4; break;
        case 0x0e: w = 8; break;
        default: return fail("not an integer", i - 1);
        }
        if (end - i < w) return fail("integer truncated", i);
        v = 0;
        for (size_t k = 0; k < w; k++) v |= u64(p_[i + k]) << 8 * k;
        i += w;
        return true;
    }

    bool data(size_t &i, size_t end, AmlValue &v)
    {
        if (i >= end) return fail("data past the end", i);
        const size_t at = i;
        switch (p_[i]) {
        case 0x0d: {    // string
            i++;
            v.kind = AmlValue::STRING;
            while (i < end && p_[i]) {
                if (p_[i] > 0x7f) return fail("non-ASCII string", i);
                v.string += char(p_[i++]);
            }
            if (i >= end) return fail("unterminated string", at);
            i++;
            return true;
        }
        case 0x11: {    // buffer
            i++;
            size_t pend;
            if (!pkg_length(i, end, pend)) return false;
            u64 size;
            if (!integer(i, pend, size)) return false;
            if (size != pend - i) return fail("buffer size differs from its contents", at);
            v.kind = AmlValue::BUFFER;
            v.buffer.assign(p_ + i, p_ + pend);
            i = pend;
            return true;
        }
        case 0x12: {    // package
            i++;
            size_t pend;
            if (!pkg_length(i, end, pend)) return false;
            if (i >= pend) return fail("package without a count", at);
            const size_t count = p_[i++];
            v.kind = AmlValue::PACKAGE;
            while (i < pend) {
                if (p_[i] == 0x12) {            // a package in the package (one level, integers)
                    AmlValue row;
                    if (!data(i, pend, row)) return false;
                    if (!row.rows.empty()) return fail("packages nested twice", at);
                    v.rows.push_back(row.package);
                    continue;
                }
                u64 x;
                if (!integer(i, pend, x)) return false;
                v.package.push_back(x);
            }
            if (v.package.size() + v.rows.size() != count) return fail("package count differs from its elements", at);
            return true;
        }
        default:
            v.kind = AmlValue::INTEGER;
            return integer(i, end, v.integer);
        }
    }

    bool term_list(size_t &i, size_t end, const std::string &scope)
    {
        while (i < end) {
            const size_t at = i;
            const u8 op = p_[i++];
            if (op == 0x08) {                   // Name
                AmlName n;
                if (!name_string(i, end, scope, n.path) || !data(i, end, n.value)) return false;
                names.push_back(n);
            } else if (op == 0x10 || (op == 0x5b && i < end && p_[i] == 0x82)) {   // Scope, Device
                if (op == 0x5b) i++;
                size_t pend;
                std::string path;
                if (!pkg_length(i, end, pend) || !name_string(i, pend, scope, path)) return false;
                scopes.push_back(path);
                if (!term_list(i, pend, path)) return false;
                if (i != pend) return fail("block not consumed exactly", at);
            } else {
                return fail("unexpected opcode", at);
            }
        }
        return i == end || fail("term list overran", i);
    }

    const u8 *p_;
    size_t n_;
};

// One resource descriptor of a ResourceTemplate.
struct Resource {
    u8 tag;               // small: 0x08 IO, 0x04 IRQ, 0x0f End; large: 0x86, 0x89 (with bit 7)
    Bytes body;
};

// Split a ResourceTemplate into descriptors; it must end with an End Tag
// exactly at its end.
bool parse_resources(const Bytes &b, std::vector<Resource> &out, std::string &err)
{
    size_t i = 0;
    while (i < b.size()) {
        const u8 h = b[i];
        size_t hdr, len;
        u8 tag;
        if (h & 0x80) {
            if (b.size() - i < 3) return err = "large descriptor header truncated", false;
            tag = h;
            len = rd16(&b[i + 1]);
            hdr = 3;
        } else {
            tag = u8(h >> 3 & 0x0f);
            len = h & 7;
            hdr = 1;
        }
        if (len > b.size() - i - hdr) return err = "descriptor overruns the buffer", false;
        out.push_back({tag, Bytes(b.begin() + long(i + hdr), b.begin() + long(i + hdr + len))});
        i += hdr + len;
        if (tag == 0x0f) {
            if (len != 1) return err = "End Tag of the wrong length", false;
            if (i != b.size()) return err = "bytes after the End Tag", false;
            const u8 check = out.back().body[0];
            if (check != 0 && sum(b.data(), b.size()) != 0) return err = "bad End Tag checksum", false;
            return true;
        }
    }
    return err = "no End Tag", false;
}

const AmlName *find_name(const AmlWalker &w, const std::string &path)
{
    for (const AmlName &n : w.names)
        if (n.path == path) return &n;
    return nullptr;
}

// Parse everything and check it against the configuration.
// \_SB.PCI0 and RES0 as Linux reads them.
void check_pci(const GuestAcpiConfig &c, const AmlWalker &w)
{
    const AmlName *hid = find_name(w, "\\_SB_.PCI0._HID");
    if (!c.pci.ecam_base) {
        EXPECT_EQ(hid, nullptr);
        return;
    }
    ASSERT_NE(hid, nullptr);
    EXPECT_EQ(hid->value.integer, 0x080ad041u);            // EisaId("PNP0A08")
    EXPECT_EQ(find_name(w, "\\_SB_.PCI0._CID")->value.integer, 0x030ad041u);
    for (const char *n : {"_SEG", "_BBN", "_UID"}) {
        const AmlName *v = find_name(w, std::string("\\_SB_.PCI0.") + n);
        ASSERT_NE(v, nullptr) << n;
        EXPECT_EQ(v->value.integer, 0u);
    }
    const AmlName *crs = find_name(w, "\\_SB_.PCI0._CRS");
    ASSERT_NE(crs, nullptr);
    std::vector<Resource> r;
    std::string err;
    ASSERT_TRUE(parse_resources(crs->value.buffer, r, err)) << err;
    const size_t want = 3 + (c.pci.mmio32_size ? 1 : 0) + (c.pci.mmio64_size ? 1 : 0);
    ASSERT_EQ(r.size(), want);
    EXPECT_EQ(r[0].tag, 0x88);                              // WordBusNumber 0-0
    EXPECT_EQ(r[0].body, (Bytes{2, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0}));
    EXPECT_EQ(r[1].tag, 0x08);                              // IO 0xCF8, 8 ports
    EXPECT_EQ(r[1].body, (Bytes{1, 0xf8, 0x0c, 0xf8, 0x0c, 1, 8}));
    size_t k = 2;
    if (c.pci.mmio32_size) {
        EXPECT_EQ(r[k].tag, 0x87);
        ASSERT_EQ(r[k].body.size(), 23u);
        EXPECT_EQ(rd32(&r[k].body[7]), c.pci.mmio32_base);
        EXPECT_EQ(rd32(&r[k].body[11]), c.pci.mmio32_base + c.pci.mmio32_size - 1);
        EXPECT_EQ(rd32(&r[k].body[19]), c.pci.mmio32_size);
        k++;
    }
    if (c.pci.mmio64_size) {
        EXPECT_EQ(r[k].tag, 0x8a);
        ASSERT_EQ(r[k].body.size(), 43u);
        EXPECT_EQ(rd64(&r[k].body[11]), c.pci.mmio64_base);
        EXPECT_EQ(rd64(&r[k].body[19]), c.pci.mmio64_base + c.pci.mmio64_size - 1);
        EXPECT_EQ(rd64(&r[k].body[35]), c.pci.mmio64_size);
    }
    const AmlName *prt = find_name(w, "\\_SB_.PCI0._PRT");
    ASSERT_NE(prt, nullptr);
    ASSERT_EQ(prt->value.kind, AmlValue::PACKAGE);
    const u32 routed = c.pci.devices > 1 ? c.pci.devices - 1 : 0;
    ASSERT_EQ(prt->value.rows.size(), routed * 4);
    for (u32 i = 0; i < routed * 4; i++) {
        const u32 dev = 1 + i / 4, pin = i % 4;
        EXPECT_EQ(prt->value.rows[i], (std::vector<u64>{dev << 16 | 0xffff, pin, 0, c.pci.intx_gsi_base + (dev + pin) % 4}));
    }
    const AmlName *res = find_name(w, "\\_SB_.RES0._HID");
    ASSERT_NE(res, nullptr);
    EXPECT_EQ(res->value.integer, 0x020cd041u);            // EisaId("PNP0C02")
    const AmlName *rcrs = find_name(w, "\\_SB_.RES0._CRS");
    ASSERT_NE(rcrs, nullptr);
    r.clear();
    ASSERT_TRUE(parse_resources(rcrs->value.buffer, r, err)) << err;
    ASSERT_EQ(r.size(), 2u);
    EXPECT_EQ(r[0].tag, 0x86);
    EXPECT_EQ(rd32(&r[0].body[1]), c.pci.ecam_base);
    EXPECT_EQ(rd32(&r[0].body[5]), 1u << 20);
}

void check_all(const GuestAcpiConfig &c, const Built &b)
{
    ASSERT_GE(b.blob.size(), 36u);
    EXPECT_EQ(b.layout.rsdp, c.base);
    EXPECT_EQ(b.layout.size, b.blob.size());

    // RSDP by hand: both checksums, revision 2.
    const u8 *rsdp = b.blob.data();
    EXPECT_EQ(memcmp(rsdp, "RSD PTR ", 8), 0);
    EXPECT_EQ(sum(rsdp, 20), 0);
    EXPECT_EQ(sum(rsdp, 36), 0);
    EXPECT_EQ(rsdp[15], 2);
    EXPECT_EQ(rd32(rsdp + 20), 36u);
    EXPECT_EQ(memcmp(rsdp + 9, "KEEL  ", 6), 0);

    GuestMem mem(c.base, b.blob);
    auto a = std::make_unique<Acpi>();
    ASSERT_TRUE(acpi_parse(mem, rsdp, 36, *a).ok());
    EXPECT_TRUE(a->xsdt);
    EXPECT_EQ(a->xsdt_err, Err::none);
    EXPECT_EQ(a->bad_count, 0u);
    EXPECT_EQ(a->revision, 2);
    const bool pci = c.pci.ecam_base != 0;
    EXPECT_EQ(a->table_count, pci ? 4u : 3u);     // FACP, APIC, MCFG (from the XSDT), DSDT (from the FADT)
    EXPECT_EQ(a->mcfg.present, pci);
    if (pci) {
        EXPECT_EQ(a->mcfg.err, Err::none);
        ASSERT_EQ(a->mcfg.count, 1u);
        EXPECT_EQ(a->mcfg.entries[0].base, c.pci.ecam_base);
        EXPECT_EQ(a->mcfg.entries[0].segment, 0);
        EXPECT_EQ(a->mcfg.entries[0].start_bus, 0);
        EXPECT_EQ(a->mcfg.entries[0].end_bus, 0);
    }

    // Every table: valid checksum and Keel's ids.
    for (size_t i = 0; i < a->table_count; i++) {
        const u8 *t = table_at(b, a->tables[i].pa.raw());
        EXPECT_EQ(sum(t, a->tables[i].length), 0);
        EXPECT_EQ(memcmp(t + 10, "KEEL  ", 6), 0);
        EXPECT_EQ(memcmp(t + 16, "KEELVM  ", 8), 0);
        EXPECT_EQ(memcmp(t + 28, "KEEL", 4), 0);
        EXPECT_EQ(a->tables[i].pa.raw() % 8, 0u);
    }
    const u8 *xsdt = table_at(b, a->root.raw());
    EXPECT_EQ(memcmp(xsdt + 10, "KEEL  ", 6), 0);

    // FADT.
    const Fadt &f = a->fadt;
    ASSERT_TRUE(f.present);
    EXPECT_EQ(f.revision, 6);
    EXPECT_EQ(f.length, 276u);
    EXPECT_TRUE(f.hw_reduced());
    EXPECT_TRUE(f.flags & (1u << 4));      // PWR_BUTTON: no fixed power button
    EXPECT_TRUE(f.flags & (1u << 5));      // SLP_BUTTON
    EXPECT_TRUE(f.flags & (1u << 19));     // FORCE_APIC_PHYSICAL_DESTINATION_MODE
    EXPECT_EQ(f.iapc_boot_arch & (Fadt::LEGACY_DEVICES | Fadt::HAS_8042), 0);
    EXPECT_TRUE(f.iapc_boot_arch & Fadt::VGA_NOT_PRESENT);
    EXPECT_EQ(bool(f.iapc_boot_arch & Fadt::CMOS_RTC_NOT_PRESENT), !c.cmos_rtc);
    EXPECT_EQ(f.sci_int, 0);
    EXPECT_EQ(f.smi_cmd, 0u);
    EXPECT_EQ(f.pm1a_evt_blk | f.pm1a_cnt_blk, 0u);
    EXPECT_EQ(f.pm_timer().address, 0u);   // Keel's own parser: none on a HW-reduced platform
    // The PM timer anyway (Linux reads it), in both forms, 24 bits (TMR_VAL_EXT clear).
    EXPECT_EQ(f.pm_tmr_blk, c.pm_timer_port);
    EXPECT_EQ(f.pm_tmr_len, c.pm_timer_port ? 4 : 0);
    EXPECT_FALSE(f.pm_timer_32bit());
    if (c.pm_timer_port) {
        EXPECT_EQ(f.x_pm_tmr_blk.space, Gas::SYSTEM_IO);
        EXPECT_EQ(f.x_pm_tmr_blk.bit_width, 32);
        EXPECT_EQ(f.x_pm_tmr_blk.access_size, 3);
        EXPECT_EQ(f.x_pm_tmr_blk.address, c.pm_timer_port);
    } else {
        EXPECT_EQ(f.x_pm_tmr_blk.address, 0u);
    }
    EXPECT_EQ(f.facs, 0u);
    if (c.reset_port) {
        EXPECT_TRUE(f.has_reset);
        EXPECT_EQ(f.reset_reg.space, Gas::SYSTEM_IO);
        EXPECT_EQ(f.reset_reg.bit_width, 8);
        EXPECT_EQ(f.reset_reg.bit_offset, 0);
        EXPECT_EQ(f.reset_reg.access_size, 1);
        EXPECT_EQ(f.reset_reg.address, c.reset_port);
        EXPECT_EQ(f.reset_value, c.reset_value);
    } else {
        EXPECT_FALSE(f.has_reset);
        EXPECT_FALSE(f.flags & Fadt::RESET_REG_SUP);
        EXPECT_EQ(f.reset_reg.address, 0u);
    }
    for (auto [g, port] : {std::pair{f.sleep_control, c.sleep_ctl_port}, std::pair{f.sleep_status, c.sleep_sts_port}}) {
        if (port) {
            EXPECT_EQ(g.space, Gas::SYSTEM_IO);
            EXPECT_EQ(g.bit_width, 8);
            EXPECT_EQ(g.bit_offset, 0);
            EXPECT_EQ(g.access_size, 1);
        } else {
            EXPECT_EQ(g.space, 0);
            EXPECT_EQ(g.bit_width, 0);
        }
        EXPECT_EQ(g.address, port);
    }
    const AcpiTable *facp = a->find("FACP");
    ASSERT_NE(facp, nullptr);
    const u8 *ft = table_at(b, facp->pa.raw());
    EXPECT_EQ(memcmp(ft + 268, "KEEL\0\0\0\0", 8), 0);   // hypervisor vendor identity
    EXPECT_EQ(ft[131], 3);                              // minor version: ACPI 6.3
    EXPECT_EQ(rd16(ft + 129), 0);                       // ARM_BOOT_ARCH
    EXPECT_EQ(rd32(ft + 40), f.dsdt);                   // DSDT and X_DSDT agree
    EXPECT_EQ(rd64(ft + 140), f.dsdt);

    // MADT.
    const Madt &m = a->madt;
    ASSERT_TRUE(m.present);
    EXPECT_EQ(m.err, Err::none);
    EXPECT_EQ(m.lapic_addr, c.lapic_base);
    EXPECT_EQ(bool(m.flags & Madt::PCAT_COMPAT), c.pcat_compat);
    EXPECT_EQ(m.cpu_count, c.vcpus);
    EXPECT_EQ(m.usable_cpus, c.vcpus);
    EXPECT_EQ(m.duplicate_cpus, 0u);
    for (u32 i = 0; i < m.cpu_count && i < c.vcpus; i++) {
        EXPECT_EQ(m.cpus[i].apic_id, i);
        EXPECT_EQ(m.cpus[i].uid, i);
        EXPECT_TRUE(m.cpus[i].usable);
        EXPECT_FALSE(m.cpus[i].x2apic);
    }
    ASSERT_EQ(m.ioapic_count, 1u);
    EXPECT_EQ(m.ioapics[0].id, c.ioapic_id);
    EXPECT_EQ(m.ioapics[0].addr, c.ioapic_base);
    EXPECT_EQ(m.ioapics[0].gsi_base, c.ioapic_gsi_base);
    EXPECT_EQ(m.override_count, 0u);
    ASSERT_EQ(m.lapic_nmi_count, 1u);
    EXPECT_EQ(m.lapic_nmis[0].uid, MadtLapicNmi::ALL);
    EXPECT_EQ(m.lapic_nmis[0].lint, 1);
    EXPECT_FALSE(m.truncated);

    // The RSDT describes the same tables: a 20-byte (ACPI 1.0) RSDP makes the parser use it.
    auto a1 = std::make_unique<Acpi>();
    ASSERT_TRUE(acpi_parse(mem, rsdp, 20, *a1).ok());
    EXPECT_FALSE(a1->xsdt);
    ASSERT_EQ(a1->table_count, a->table_count);
    for (size_t i = 0; i < a->table_count; i++) EXPECT_EQ(a1->tables[i].pa, a->tables[i].pa);

    // DSDT.
    const AcpiTable *dt = a->find("DSDT");
    ASSERT_NE(dt, nullptr);
    EXPECT_EQ(dt->pa.raw(), f.dsdt);
    const u8 *d = table_at(b, dt->pa.raw());
    EXPECT_EQ(d[8], 2);     // revision 2: 64-bit integers
    u8 typa = 99, typb = 99;
    ASSERT_TRUE(acpi_find_s5(d, dt->length, typa, typb));
    EXPECT_EQ(typa, c.s5_slp_typ);
    EXPECT_EQ(typb, 0);

    AmlWalker w(d + 36, dt->length - 36);
    ASSERT_TRUE(w.walk()) << w.error;
    const AmlName *s5 = find_name(w, "\\_S5_");
    ASSERT_NE(s5, nullptr);
    ASSERT_EQ(s5->value.kind, AmlValue::PACKAGE);
    EXPECT_EQ(s5->value.package, (std::vector<u64>{c.s5_slp_typ, 0, 0, 0}));

    size_t devices = 0;
    for (const std::string &s : w.scopes) devices += s.rfind("\\_SB_.", 0) == 0;
    EXPECT_EQ(devices, c.nvirtio + (c.com1 ? 1 : 0) + (pci ? 2 : 0));
    check_pci(c, w);
    EXPECT_EQ(w.scopes.front(), "\\_SB_");

    const AmlName *hid = find_name(w, "\\_SB_.COM1._HID");
    if (c.com1) {
        ASSERT_NE(hid, nullptr);
        EXPECT_EQ(hid->value.kind, AmlValue::INTEGER);
        EXPECT_EQ(hid->value.integer, PNP0501);
        const AmlName *uid = find_name(w, "\\_SB_.COM1._UID");
        ASSERT_NE(uid, nullptr);
        EXPECT_EQ(uid->value.integer, 0u);
        const AmlName *crs = find_name(w, "\\_SB_.COM1._CRS");
        ASSERT_NE(crs, nullptr);
        ASSERT_EQ(crs->value.kind, AmlValue::BUFFER);
        std::vector<Resource> r;
        std::string err;
        ASSERT_TRUE(parse_resources(crs->value.buffer, r, err)) << err;
        ASSERT_EQ(r.size(), 3u);
        EXPECT_EQ(r[0].tag, 0x08);                          // IO
        EXPECT_EQ(r[0].body, (Bytes{1, 0xf8, 0x03, 0xf8, 0x03, 1, 8}));
        EXPECT_EQ(r[1].tag, 0x89);                          // Extended Interrupt
        ASSERT_EQ(r[1].body.size(), 6u);
        EXPECT_EQ(r[1].body[0], 0x03);                      // consumer, edge, active high, exclusive
        EXPECT_EQ(r[1].body[1], 1);
        EXPECT_EQ(rd32(&r[1].body[2]), c.ioapic_gsi_base + 4);
    } else {
        EXPECT_EQ(hid, nullptr);
    }

    size_t lnro = 0;
    for (const AmlName &n : w.names)
        if (n.value.kind == AmlValue::STRING && n.value.string == "LNRO0005") lnro++;
    EXPECT_EQ(lnro, c.nvirtio);
    for (u32 i = 0; i < c.nvirtio; i++) {
        const std::string dev = std::string("\\_SB_.VRT") + char('0' + i);
        const AmlName *vh = find_name(w, dev + "._HID");
        ASSERT_NE(vh, nullptr) << dev;
        EXPECT_EQ(vh->value.string, "LNRO0005");
        const AmlName *vu = find_name(w, dev + "._UID");
        ASSERT_NE(vu, nullptr);
        EXPECT_EQ(vu->value.integer, i);
        const AmlName *cca = find_name(w, dev + "._CCA");
        ASSERT_NE(cca, nullptr);
        EXPECT_EQ(cca->value.integer, 1u);
        const AmlName *crs = find_name(w, dev + "._CRS");
        ASSERT_NE(crs, nullptr);
        ASSERT_EQ(crs->value.kind, AmlValue::BUFFER);
        std::vector<Resource> r;
        std::string err;
        ASSERT_TRUE(parse_resources(crs->value.buffer, r, err)) << err;
        ASSERT_EQ(r.size(), 3u);
        EXPECT_EQ(r[0].tag, 0x86);                          // Memory32Fixed
        ASSERT_EQ(r[0].body.size(), 9u);
        EXPECT_EQ(r[0].body[0], 1);                         // read-write
        EXPECT_EQ(rd32(&r[0].body[1]), c.virtio[i].base);
        EXPECT_EQ(rd32(&r[0].body[5]), c.virtio[i].size);
        EXPECT_EQ(r[1].tag, 0x89);
        ASSERT_EQ(r[1].body.size(), 6u);
        EXPECT_EQ(r[1].body[0], 0x01);                      // consumer, level, active high, exclusive
        EXPECT_EQ(r[1].body[1], 1);
        EXPECT_EQ(rd32(&r[1].body[2]), c.virtio[i].gsi);
    }
}

// The bytes of the DSDT of a built blob (through the parser).
Bytes dsdt_of(const Built &b)
{
    GuestMem mem(b.layout.rsdp, b.blob);
    auto a = std::make_unique<Acpi>();
    EXPECT_TRUE(acpi_parse(mem, b.blob.data(), 36, *a).ok());
    const AcpiTable *dt = a->find("DSDT");
    if (!dt) return {};
    const u8 *d = table_at(b, dt->pa.raw());
    return Bytes(d, d + dt->length);
}

Err build_err(const GuestAcpiConfig &c)
{
    Bytes buf(GUEST_ACPI_MAX_BYTES);
    Result<GuestAcpiLayout> r = build_guest_acpi(c, buf.data(), buf.size());
    return r.error();
}

// ------------------------------------------------------------------ tests

TEST(GuestAcpi, OneTwoAndSixtyFourCpus)
{
    for (u32 n : {1u, 2u, 64u}) {
        SCOPED_TRACE(n);
        const GuestAcpiConfig c = config(n);
        const Built b = build(c);
        check_all(c, b);
    }
}

TEST(GuestAcpi, EisaIdAndHidBytesAppearInTheDsdt)
{
    const Built b = build(config(2));
    const Bytes d = dsdt_of(b);
    const u8 pnp[] = {0x0c, 0x41, 0xd0, 0x05, 0x01};        // DWordPrefix 0x0105D041
    EXPECT_NE(std::search(d.begin(), d.end(), pnp, pnp + 5), d.end());
    const char lnro[] = "\x0dLNRO0005";                     // StringPrefix "LNRO0005" NUL
    EXPECT_NE(std::search(d.begin(), d.end(), lnro, lnro + sizeof(lnro)), d.end());
    const u8 s5[] = {0x08, '\\', '_', 'S', '5', '_', 0x12};
    EXPECT_NE(std::search(d.begin(), d.end(), s5, s5 + sizeof(s5)), d.end());
}

// The DSDT body for COM1 and one virtio device, byte for byte. Checked by hand
// with `iasl -d` (acpica-tools 20200925): it disassembles to
//   Scope (\_SB) { Device (COM1) { Name (_HID, EisaId ("PNP0501")) Name (_UID, Zero)
//       Name (_CRS, ResourceTemplate () { IO (Decode16, 0x03F8, 0x03F8, 0x01, 0x08)
//       Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, ) {4} }) }
//     Device (VRT0) { Name (_HID, "LNRO0005") Name (_UID, Zero) Name (_CCA, One)
//       Name (_CRS, ResourceTemplate () { Memory32Fixed (ReadWrite, 0xD0000000, 0x200)
//       Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive, ,, ) {5} }) } }
//   Name (\_S5, Package (0x04) { 0x05, Zero, Zero, Zero })
// and recompiling that with iasl gives the same bytes except that iasl drops
// the (redundant) root prefixes of \_SB_ and \_S5_.
TEST(GuestAcpi, DsdtGolden)
{
    GuestAcpiConfig c;
    c.base = BASE;
    c.vcpus = 1;
    c.s5_slp_typ = 5;
    c.com1 = true;
    c.virtio[0] = {0xd0000000, 0x200, 5};
    c.nvirtio = 1;
    const Bytes d = dsdt_of(build(c));
    const Bytes want = {
        0x10, 0x4d, 0x07, 0x5c, 0x5f, 0x53, 0x42, 0x5f, 0x5b, 0x82, 0x31, 0x43,
        0x4f, 0x4d, 0x31, 0x08, 0x5f, 0x48, 0x49, 0x44, 0x0c, 0x41, 0xd0, 0x05,
        0x01, 0x08, 0x5f, 0x55, 0x49, 0x44, 0x00, 0x08, 0x5f, 0x43, 0x52, 0x53,
        0x11, 0x16, 0x0a, 0x13, 0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08,
        0x89, 0x06, 0x00, 0x03, 0x01, 0x04, 0x00, 0x00, 0x00, 0x79, 0x00, 0x5b,
        0x82, 0x41, 0x04, 0x56, 0x52, 0x54, 0x30, 0x08, 0x5f, 0x48, 0x49, 0x44,
        0x0d, 0x4c, 0x4e, 0x52, 0x4f, 0x30, 0x30, 0x30, 0x35, 0x00, 0x08, 0x5f,
        0x55, 0x49, 0x44, 0x00, 0x08, 0x5f, 0x43, 0x43, 0x41, 0x01, 0x08, 0x5f,
        0x43, 0x52, 0x53, 0x11, 0x1a, 0x0a, 0x17, 0x86, 0x09, 0x00, 0x01, 0x00,
        0x00, 0x00, 0xd0, 0x00, 0x02, 0x00, 0x00, 0x89, 0x06, 0x00, 0x01, 0x01,
        0x05, 0x00, 0x00, 0x00, 0x79, 0x00, 0x08, 0x5c, 0x5f, 0x53, 0x35, 0x5f,
        0x12, 0x07, 0x04, 0x0a, 0x05, 0x00, 0x00, 0x00,
    };
    ASSERT_GE(d.size(), 36u);
    EXPECT_EQ(Bytes(d.begin() + 36, d.end()), want);
}

// The walker itself rejects broken AML (so its passing means something).
TEST(GuestAcpi, WalkerRejectsBrokenAml)
{
    const Bytes d = dsdt_of(build(config(2)));
    ASSERT_GT(d.size(), 40u);
    const Bytes body(d.begin() + 36, d.end());
    {
        AmlWalker w(body.data(), body.size());
        EXPECT_TRUE(w.walk()) << w.error;
    }
    // Scope(\_SB) comes first, with a 2-byte PkgLength here.
    ASSERT_EQ(body[0], 0x10);
    ASSERT_EQ(body[1] >> 6, 1);
    const size_t scope_end = 1 + ((body[1] & 0x0f) | size_t(body[2]) << 4);
    // Every truncation fails, except right after the whole scope (a complete term).
    for (size_t n = 1; n < body.size(); n++) {
        AmlWalker w(body.data(), n);
        EXPECT_EQ(w.walk(), n == scope_end) << "truncated to " << n;
    }
    // The scope's PkgLength one smaller or larger.
    for (int delta : {-1, 1}) {
        Bytes b = body;
        b[1] = u8(b[1] + delta);
        AmlWalker w(b.data(), b.size());
        EXPECT_FALSE(w.walk()) << delta;
    }
    // A resource template without its End Tag.
    std::vector<Resource> r;
    std::string err;
    EXPECT_FALSE(parse_resources(Bytes{0x47, 1, 0xf8, 3, 0xf8, 3, 1, 8}, r, err));
    EXPECT_FALSE(parse_resources(Bytes{0x79, 0x00, 0x00}, r, err));
}

TEST(GuestAcpi, LargestConfigurationFitsAndUsesTwoBytePkgLengths)
{
    GuestAcpiConfig c = max_config();
    c.base = 0xfffff000;                                    // the last page below 4 GiB
    const Built b = build(c);
    EXPECT_LE(b.layout.size, GUEST_ACPI_MAX_BYTES);
    check_all(c, b);
    const Bytes d = dsdt_of(b);
    AmlWalker w(d.data() + 36, d.size() - 36);
    ASSERT_TRUE(w.walk()) << w.error;
    EXPECT_GT(w.pkglen_bytes[1], 0u);
    EXPECT_GT(w.pkglen_bytes[2], 0u);
}

TEST(GuestAcpi, MinimalConfiguration)
{
    GuestAcpiConfig c;
    c.base = 0x1000;
    c.vcpus = 1;
    const Built b = build(c);
    check_all(c, b);    // no reset, no sleep registers, no devices: empty \_SB scope
}

TEST(GuestAcpi, OptionalFields)
{
    GuestAcpiConfig c = config(4);
    c.cmos_rtc = true;
    c.ioapic_id = 4;
    c.ioapic_gsi_base = 32;
    c.virtio[0].gsi = 40;
    c.virtio[1].gsi = 40;   // shared level-triggered lines are allowed
    c.lapic_base = 0xfee10000;
    c.ioapic_base = 0xfec10000;
    c.s5_slp_typ = 7;
    c.reset_value = 0xfe;
    c.reset_port = 0x64;
    const Built b = build(c);
    check_all(c, b);
}

TEST(GuestAcpi, PciHostBridge)
{
    GuestAcpiConfig c = config(2);
    c.pci = {0xe0000000, 0xc0000000, 0x20000000, 0x140000000ull, 0x400000000ull, 8, 16};
    check_all(c, build(c));
    c.pci.mmio32_size = 0;                  // windows are optional
    c.pci.mmio64_size = 0;
    c.pci.devices = 0;                      // an empty _PRT
    check_all(c, build(c));
    // Bad ones: ECAM misaligned or above 4 GiB, a 32-bit window past 4 GiB, a 64-bit one below
    // it or wrapping, too many devices, INTx GSIs off the IOAPIC.
    for (auto bad : {+[](GuestAcpiConfig::Pci &p) { p.ecam_base = 0xe0080000; },
                     +[](GuestAcpiConfig::Pci &p) { p.ecam_base = 0x100000000ull; },
                     +[](GuestAcpiConfig::Pci &p) { p.mmio32_base = 0xf0000000; p.mmio32_size = 0x20000000; },
                     +[](GuestAcpiConfig::Pci &p) { p.mmio64_base = 0x80000000; p.mmio64_size = 1; },
                     +[](GuestAcpiConfig::Pci &p) { p.mmio64_base = ~0ull - 10; p.mmio64_size = 12; },
                     +[](GuestAcpiConfig::Pci &p) { p.devices = 33; },
                     +[](GuestAcpiConfig::Pci &p) { p.intx_gsi_base = 21; }}) {
        GuestAcpiConfig b = config(2);
        b.pci = {0xe0000000, 0xc0000000, 0x20000000, 0x140000000ull, 0x400000000ull, 8, 16};
        bad(b.pci);
        EXPECT_EQ(build_err(b), Err::invalid);
    }
}

TEST(GuestAcpi, PointersAreGuestPhysical)
{
    GuestAcpiConfig c = config(2);
    const Built b1 = build(c);
    c.base = 0x100000;
    const Built b2 = build(c);
    ASSERT_EQ(b1.blob.size(), b2.blob.size());
    check_all(c, b2);
    // Only pointers and checksums differ: the RSDT/XSDT pointers, FADT's DSDT
    // pointers and the checksums.
    size_t diff = 0;
    for (size_t i = 0; i < b1.blob.size(); i++) diff += b1.blob[i] != b2.blob[i];
    EXPECT_GT(diff, 0u);
    EXPECT_LT(diff, 40u);
}

TEST(GuestAcpi, TooSmallABufferIsNoMemory)
{
    const GuestAcpiConfig c = config(64);
    const Built b = build(c);
    ASSERT_GT(b.layout.size, 0u);
    // Exactly sized heap buffers: ASan catches any write past cap.
    for (size_t cap = 0; cap < b.layout.size; cap++) {
        std::unique_ptr<u8[]> buf(new u8[cap]);
        Result<GuestAcpiLayout> r = build_guest_acpi(c, buf.get(), cap);
        ASSERT_EQ(r.error(), Err::no_memory) << "cap " << cap;
    }
    std::unique_ptr<u8[]> buf(new u8[b.layout.size]);
    Result<GuestAcpiLayout> r = build_guest_acpi(c, buf.get(), b.layout.size);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(Bytes(buf.get(), buf.get() + r->size), b.blob);
}

TEST(GuestAcpi, InvalidConfigurations)
{
    EXPECT_EQ(build_err(config(0)), Err::invalid);
    EXPECT_EQ(build_err(config(65)), Err::invalid);
    EXPECT_EQ(build_err(config(1000)), Err::invalid);

    auto bad = [](auto change) {
        GuestAcpiConfig c = config(2);
        change(c);
        return build_err(c);
    };
    EXPECT_EQ(bad([](GuestAcpiConfig &c) { c.nvirtio = 9; }), Err::invalid);
    EXPECT_EQ(bad([](GuestAcpiConfig &c) { c.s5_slp_typ = 8; }), Err::invalid);
    EXPECT_EQ(bad([](GuestAcpiConfig &c) { c.base = BASE + 16; }), Err::invalid);
    EXPECT_EQ(bad([](GuestAcpiConfig &c) { c.base = 0x100000000ull; }), Err::invalid);
    EXPECT_EQ(bad([](GuestAcpiConfig &c) { c.lapic_base = 0x100000000ull; }), Err::invalid);
    EXPECT_EQ(bad([](GuestAcpiConfig &c) { c.ioapic_base = 0x100000000ull; }), Err::invalid);
    EXPECT_EQ(bad([](GuestAcpiConfig &c) { c.virtio[1].size = 0; }), Err::invalid);
    EXPECT_EQ(bad([](GuestAcpiConfig &c) { c.virtio[1].base = 0xfffff000; c.virtio[1].size = 0x2000; }), Err::invalid);
    EXPECT_EQ(bad([](GuestAcpiConfig &c) { c.virtio[1].base = 0x100000000ull; }), Err::invalid);
    EXPECT_EQ(bad([](GuestAcpiConfig &c) { c.virtio[1].base = 0xd00001ff; }), Err::invalid);   // overlaps VRT0
    EXPECT_EQ(bad([](GuestAcpiConfig &c) { c.virtio[1].gsi = 4; }), Err::invalid);           // COM1's line
    EXPECT_EQ(bad([](GuestAcpiConfig &c) { c.ioapic_gsi_base = 8; c.virtio[0].gsi = 7; }), Err::invalid);
    EXPECT_EQ(bad([](GuestAcpiConfig &c) { c.ioapic_gsi_base = 0xfffffffe; }), Err::invalid);  // GSIs overflow
    EXPECT_EQ(bad([](GuestAcpiConfig &c) { c.virtio[1].gsi = 24; }), Err::invalid);          // not on the IOAPIC
    EXPECT_EQ(bad([](GuestAcpiConfig &c) { c.ioapic_pins = 0; }), Err::invalid);
    EXPECT_EQ(bad([](GuestAcpiConfig &c) { c.ioapic_pins = 241; }), Err::invalid);
    EXPECT_EQ(bad([](GuestAcpiConfig &c) { c.ioapic_pins = 4; c.virtio[0].gsi = 0; c.virtio[1].gsi = 1; }),
              Err::invalid);                                                                 // no pin 4 for COM1

    // Without COM1, GSI 4 is free; the edge of a range is not an overlap.
    EXPECT_EQ(bad([](GuestAcpiConfig &c) { c.com1 = false; c.virtio[1].gsi = 4; }), Err::none);
    EXPECT_EQ(bad([](GuestAcpiConfig &c) { c.virtio[1].base = 0xd0000200; }), Err::none);
    EXPECT_EQ(bad([](GuestAcpiConfig &c) { c.virtio[1].base = 0xfffff000; c.virtio[1].size = 0x1000; }), Err::none);
    EXPECT_EQ(bad([](GuestAcpiConfig &c) { c.virtio[1].gsi = 23; }), Err::none);
    EXPECT_EQ(bad([](GuestAcpiConfig &c) {
                  c.ioapic_gsi_base = 0xffffffff - 23;
                  c.virtio[0].gsi = 0xffffffff;
                  c.virtio[1].gsi = 0xffffffff - 23;
              }),
              Err::none);

    const GuestAcpiConfig c = config(2);
    EXPECT_EQ(build_guest_acpi(c, nullptr, 4096).error(), Err::invalid);
}

TEST(GuestAcpi, RandomConfigurations)
{
    std::mt19937_64 rng(1234);
    for (int iter = 0; iter < 300; iter++) {
        GuestAcpiConfig c;
        c.base = (rng() % 0x100000) * PAGE_SIZE;
        c.vcpus = 1 + u32(rng() % 64);
        c.ioapic_gsi_base = u32(rng() % 64);
        c.ioapic_id = u8(rng());
        c.sleep_ctl_port = u16(rng() % 2 ? rng() : 0);
        c.sleep_sts_port = u16(rng() % 2 ? rng() : 0);
        c.reset_port = u16(rng() % 2 ? rng() : 0);
        c.reset_value = u8(rng());
        c.s5_slp_typ = u8(rng() % 8);
        c.com1 = rng() % 2;
        c.cmos_rtc = rng() % 2;
        c.nvirtio = u32(rng() % 9);
        for (u32 i = 0; i < c.nvirtio; i++) {
            const u32 size = 0x200u << (rng() % 4);
            c.virtio[i] = {0xc0000000ull + 0x10000ull * i, size, c.ioapic_gsi_base + 5 + u32(rng() % 19)};
        }
        SCOPED_TRACE(iter);
        const Built b = build(c);
        check_all(c, b);
        if (HasFatalFailure() || HasNonfatalFailure()) break;
    }
}

} // namespace

// A guest's ACPI tables (see guest_acpi.hpp for what they say and why).
//
// Layout of the blob, every table 8-byte aligned:
//   RSDP | XSDT | RSDT | FACP | APIC | DSDT
// Tables are written in that order with zero placeholders for the pointers
// between them; once everything is in place the pointers are patched and
// the checksums computed last.
//
// The DSDT's AML comes from a small emitter run twice over the same code: a
// PkgLength (1-4 bytes) and a buffer's size precede the bytes they measure,
// so a first pass only counts and records every package's length in order,
// and the second writes each length, minimally encoded, before its body.
// Nothing is written twice and nothing beyond the final size is touched.
#include "kernel/guest/guest_acpi.hpp"

namespace {

constexpr u32 HDR = 36;                     // standard description header
constexpr u64 FOUR_GIB = 0x100000000ull;

// Bounds-checked writer over the caller's buffer. The first failure sticks:
// later writes do nothing and err() reports it. Without a buffer it only
// counts (the measuring pass).
class Out {
public:
    Out(u8 *buf, usize cap) : buf_(buf), cap_(cap) {}
    static Out counter() { return Out(nullptr, ~usize{0}); }
    bool counting() const { return !buf_; }

    Err err() const { return err_; }
    bool ok() const { return err_ == Err::none; }
    usize pos() const { return pos_; }
    void fail(Err e)
    {
        if (err_ == Err::none) err_ = e;
    }

    void le(u64 v, unsigned n)
    {
        if (!room(n)) return;
        if (buf_)
            for (unsigned i = 0; i < n; i++) buf_[pos_ + i] = static_cast<u8>(v >> 8 * i);
        pos_ += n;
    }
    void b(u8 v) { le(v, 1); }
    void zeros(usize n)
    {
        if (!room(n)) return;
        if (buf_)
            for (usize i = 0; i < n; i++) buf_[pos_ + i] = 0;
        pos_ += n;
    }
    // Exactly n characters of s (which has at least n).
    void chars(const char *s, usize n)
    {
        if (!room(n)) return;
        if (buf_)
            for (usize i = 0; i < n; i++) buf_[pos_ + i] = static_cast<u8>(s[i]);
        pos_ += n;
    }
    void align(usize a) { zeros((a - pos_ % a) % a); }

    // Overwrite already written bytes [off, off + n).
    void patch(usize off, u64 v, unsigned n)
    {
        if (!ok() || off > pos_ || n > pos_ - off) return fail(Err::range);
        if (buf_)
            for (unsigned i = 0; i < n; i++) buf_[off + i] = static_cast<u8>(v >> 8 * i);
    }
    u8 *at(usize off) { return buf_ + off; }

private:
    bool room(usize n)
    {
        if (!ok()) return false;
        if (n > cap_ - pos_) {
            err_ = Err::no_memory;
            return false;
        }
        return true;
    }

    u8 *buf_;
    usize cap_;
    usize pos_ = 0;
    Err err_ = Err::none;
};

u8 sum(const u8 *p, usize n)
{
    u8 s = 0;
    for (usize i = 0; i < n; i++) s = static_cast<u8>(s + p[i]);
    return s;
}

// ---------------------------------------------------------------- tables

// Standard header with length and checksum left zero; returns the table's offset.
usize table_begin(Out &o, const char *sig, u8 revision)
{
    o.align(8);
    const usize start = o.pos();
    o.chars(sig, 4);
    o.le(0, 4);                     // length: table_end
    o.b(revision);
    o.b(0);                         // checksum: finish
    o.chars("KEEL  ", 6);           // OEM ID
    o.chars("KEELVM  ", 8);         // OEM table ID
    o.le(1, 4);                     // OEM revision
    o.chars("KEEL", 4);             // creator ID
    o.le(1, 4);                     // creator revision
    return start;
}

void table_end(Out &o, usize start) { o.patch(start + 4, o.pos() - start, 4); }

// Checksum a finished table in place (its length field is final).
void table_checksum(Out &o, usize start)
{
    u8 *t = o.at(start);
    const u32 len = static_cast<u32>(t[4] | t[5] << 8 | t[6] << 16 | static_cast<u32>(t[7]) << 24);
    t[9] = 0;
    t[9] = static_cast<u8>(-sum(t, len));
}

// Generic Address Structure for a byte-wide I/O register; all zero (absent) for port 0.
void gas_io8(Out &o, u16 port)
{
    if (!port) return o.zeros(12);
    o.b(1);         // system I/O
    o.b(8);         // bit width
    o.b(0);         // bit offset
    o.b(1);         // access size: byte
    o.le(port, 8);
}

// The same for a dword-wide I/O register (the PM timer).
void gas_io32(Out &o, u16 port)
{
    if (!port) return o.zeros(12);
    o.b(1);         // system I/O
    o.b(32);        // bit width
    o.b(0);         // bit offset
    o.b(3);         // access size: dword
    o.le(port, 8);
}

// FADT (ACPI 6.3: revision 6, minor 3, 276 bytes).
enum : u32 {
    F_DSDT = 40, F_FLAGS = 112, F_X_DSDT = 140, FADT_LEN = 276,
};
enum : u32 {
    FF_PWR_BUTTON = 1u << 4,        // no fixed-feature power button
    FF_SLP_BUTTON = 1u << 5,        // no fixed-feature sleep button
    FF_RESET_REG_SUP = 1u << 10,
    FF_APIC_PHYSICAL = 1u << 19,    // FORCE_APIC_PHYSICAL_DESTINATION_MODE
    FF_HW_REDUCED = 1u << 20,
};
enum : u16 { BA_VGA_NOT_PRESENT = 1u << 2, BA_CMOS_RTC_NOT_PRESENT = 1u << 5 };

usize fadt(Out &o, const GuestAcpiConfig &c)
{
    const usize t = table_begin(o, "FACP", 6);
    o.le(0, 4);                     // 36 FIRMWARE_CTRL: no FACS on HW-reduced
    o.le(0, 4);                     // 40 DSDT: patched
    o.b(0);                         // 44 reserved
    o.b(0);                         // 45 preferred PM profile: unspecified
    o.le(0, 2);                     // 46 SCI_INT: none
    o.le(0, 4);                     // 48 SMI_CMD: none (always in ACPI mode)
    o.zeros(4);                     // 52 ACPI_ENABLE, ACPI_DISABLE, S4BIOS_REQ, PSTATE_CNT
    o.zeros(20);                    // 56 PM1a/b EVT, PM1a/b CNT, PM2 CNT blocks
    o.le(c.pm_timer_port, 4);       // 76 PM_TMR_BLK
    o.zeros(8);                     // 80 GPE0, GPE1 blocks
    o.zeros(3);                     // 88 PM1_EVT_LEN, PM1_CNT_LEN, PM2_CNT_LEN
    o.b(c.pm_timer_port ? 4 : 0);   // 91 PM_TMR_LEN
    o.zeros(4);                     // 92 GPE0/1 lengths, GPE1_BASE, CST_CNT
    o.zeros(8);                     // 96 P_LVL2/3_LAT, FLUSH_SIZE/STRIDE
    o.zeros(5);                     // 104 DUTY_OFFSET/WIDTH, DAY/MON_ALRM, CENTURY
    u16 boot_arch = BA_VGA_NOT_PRESENT;     // no LEGACY_DEVICES, no 8042
    if (!c.cmos_rtc) boot_arch |= BA_CMOS_RTC_NOT_PRESENT;
    o.le(boot_arch, 2);             // 109 IAPC_BOOT_ARCH
    o.b(0);                         // 111 reserved
    u32 flags = FF_PWR_BUTTON | FF_SLP_BUTTON | FF_APIC_PHYSICAL | FF_HW_REDUCED;
    if (c.reset_port) flags |= FF_RESET_REG_SUP;
    o.le(flags, 4);                 // 112 flags
    gas_io8(o, c.reset_port);       // 116 RESET_REG
    o.b(c.reset_port ? c.reset_value : 0);  // 128 RESET_VALUE
    o.le(0, 2);                     // 129 ARM_BOOT_ARCH
    o.b(3);                         // 131 FADT minor version
    o.le(0, 8);                     // 132 X_FIRMWARE_CTRL
    o.le(0, 8);                     // 140 X_DSDT: patched
    o.zeros(5 * 12);                // 148 X_PM1a/b EVT, X_PM1a/b CNT, X_PM2 CNT
    gas_io32(o, c.pm_timer_port);   // 208 X_PM_TMR_BLK
    o.zeros(2 * 12);                // 220 X_GPE0/1
    gas_io8(o, c.sleep_ctl_port);   // 244 SLEEP_CONTROL_REG
    gas_io8(o, c.sleep_sts_port);   // 256 SLEEP_STATUS_REG
    o.chars("KEEL\0\0\0\0", 8);     // 268 hypervisor vendor identity
    if (o.ok() && o.pos() - t != FADT_LEN) o.fail(Err::range);
    table_end(o, t);
    return t;
}

// MADT (revision 5, ACPI 6.3).
usize madt(Out &o, const GuestAcpiConfig &c)
{
    const usize t = table_begin(o, "APIC", 5);
    o.le(c.lapic_base, 4);          // local interrupt controller address
    o.le(c.pcat_compat ? 1 : 0, 4); // flags: PCAT_COMPAT (8259s present, to be masked)
    for (u32 i = 0; i < c.vcpus; i++) {
        o.b(0);                     // processor local APIC
        o.b(8);
        o.b(static_cast<u8>(i));    // ACPI processor UID
        o.b(static_cast<u8>(i));    // APIC ID
        o.le(1, 4);                 // enabled
    }
    o.b(1);                         // I/O APIC
    o.b(12);
    o.b(c.ioapic_id);
    o.b(0);
    o.le(c.ioapic_base, 4);
    o.le(c.ioapic_gsi_base, 4);
    o.b(4);                         // local APIC NMI
    o.b(6);
    o.b(0xff);                      // all processors
    o.le(0, 2);                     // MPS INTI flags: conforming
    o.b(1);                         // LINT1
    table_end(o, t);
    return t;
}

// ---------------------------------------------------------------- AML

enum : u8 {
    AML_ZERO = 0x00, AML_ONE = 0x01, AML_NAME = 0x08, AML_BYTE = 0x0a, AML_WORD = 0x0b,
    AML_DWORD = 0x0c, AML_STRING = 0x0d, AML_QWORD = 0x0e, AML_SCOPE = 0x10, AML_BUFFER = 0x11,
    AML_PACKAGE = 0x12, AML_DUAL_NAME = 0x2e, AML_MULTI_NAME = 0x2f, AML_EXT = 0x5b,
    AML_DEVICE = 0x82, AML_ROOT = 0x5c, AML_PARENT = 0x5e,
};

// Bytes of the shortest encoding of an integer (what Aml::integer emits).
usize integer_size(u64 v)
{
    return v <= 1 ? 1 : v <= 0xff ? 2 : v <= 0xffff ? 3 : v <= 0xffffffff ? 5 : 9;
}

// Bytes of the minimal PkgLength for a body of `body` bytes; 0 if too long.
usize pkg_length_size(usize body)
{
    return body + 1 <= 0x3f ? 1 : body + 2 <= 0xfff ? 2 : body + 3 <= 0xfffff ? 3 : body + 4 <= 0xfffffff ? 4 : 0;
}

// Lengths found by the measuring pass, in the order the packages begin.
struct AmlSizes {
    static constexpr usize MAX = 64;
    u32 len[MAX];           // body bytes after the PkgLength (buffers: data bytes)
    usize count;
};

class Aml {
public:
    // Measuring (o counting): records sizes; emitting: uses them.
    Aml(Out &o, AmlSizes &sizes) : o_(o), sizes_(sizes)
    {
        if (o_.counting()) sizes_.count = 0;
    }
    // The emitting pass met exactly the packages the measuring pass did.
    bool complete() const { return next_ == sizes_.count; }

    // A PkgLength and the body after it.
    struct Pkg {
        usize idx, start;   // measuring: where the body starts
    };
    Pkg pkg_begin()
    {
        const usize idx = next_++;
        if (o_.counting()) {
            if (idx >= AmlSizes::MAX) o_.fail(Err::range);
            else sizes_.count = idx + 1;
            return {idx, o_.pos()};
        }
        if (idx >= sizes_.count) {
            o_.fail(Err::range);
            return {idx, 0};
        }
        const usize body = sizes_.len[idx];
        const usize n = pkg_length_size(body);
        const usize len = body + n;     // the PkgLength counts its own bytes
        if (n == 1) {
            o_.b(static_cast<u8>(len));
        } else {
            o_.b(static_cast<u8>((n - 1) << 6 | (len & 0xf)));
            o_.le(len >> 4, static_cast<unsigned>(n - 1));
        }
        return {idx, o_.pos()};
    }
    void pkg_end(Pkg p)
    {
        if (!o_.ok()) return;
        const usize body = o_.pos() - p.start;
        if (o_.counting()) {
            const usize n = pkg_length_size(body);
            if (!n) return o_.fail(Err::range);
            sizes_.len[p.idx] = static_cast<u32>(body);
            o_.zeros(n);                // the PkgLength goes before the body: count it
        } else if (body != sizes_.len[p.idx]) {
            o_.fail(Err::range);        // the passes disagree: a bug, never a bad blob
        }
    }

    // NameString: optional '\' or '^'s, then segments split by '.', each 1-4
    // characters ([A-Z_][A-Z0-9_]*), padded with '_'.
    void name_string(const char *path)
    {
        usize i = 0;
        if (path[0] == '\\') {
            o_.b(AML_ROOT);
            i = 1;
        } else {
            while (path[i] == '^') {
                o_.b(AML_PARENT);
                i++;
            }
        }
        usize segs = 0;
        if (path[i]) {
            segs = 1;
            for (usize j = i; path[j]; j++) segs += path[j] == '.';
        }
        if (segs == 0) return o_.b(0);     // NullName
        if (segs > 255) return o_.fail(Err::invalid);
        if (segs == 2) o_.b(AML_DUAL_NAME);
        if (segs > 2) {
            o_.b(AML_MULTI_NAME);
            o_.b(static_cast<u8>(segs));
        }
        while (true) {
            usize n = 0;
            while (path[i + n] && path[i + n] != '.') n++;
            if (n == 0 || n > 4) return o_.fail(Err::invalid);
            for (usize k = 0; k < n; k++) {
                const char ch = path[i + k];
                const bool lead = (ch >= 'A' && ch <= 'Z') || ch == '_';
                if (!lead && !(k > 0 && ch >= '0' && ch <= '9')) return o_.fail(Err::invalid);
            }
            o_.chars(path + i, n);
            o_.chars("____", 4 - n);
            i += n;
            if (!path[i]) break;
            i++;                        // '.'
        }
    }

    // The shortest integer encoding.
    void integer(u64 v)
    {
        if (v == 0) return o_.b(AML_ZERO);
        if (v == 1) return o_.b(AML_ONE);
        if (v <= 0xff) {
            o_.b(AML_BYTE);
            return o_.le(v, 1);
        }
        if (v <= 0xffff) {
            o_.b(AML_WORD);
            return o_.le(v, 2);
        }
        if (v <= 0xffffffff) {
            o_.b(AML_DWORD);
            return o_.le(v, 4);
        }
        o_.b(AML_QWORD);
        o_.le(v, 8);
    }

    // A printable ASCII string.
    void string(const char *s)
    {
        o_.b(AML_STRING);
        for (usize i = 0; s[i]; i++) {
            if (s[i] < 0x20 || s[i] > 0x7e) return o_.fail(Err::invalid);
            o_.b(static_cast<u8>(s[i]));
        }
        o_.b(0);
    }

    // EisaId("ABC1234"): compressed vendor letters and product number, as a DWord.
    void eisa_id(const char *id)
    {
        u32 v = 0;
        for (usize i = 0; i < 3; i++) {
            if (id[i] < 'A' || id[i] > 'Z') return o_.fail(Err::invalid);
            v = v << 5 | static_cast<u32>(id[i] - '@');
        }
        u32 product = 0;
        for (usize i = 3; i < 7; i++) {
            const char ch = id[i];
            u32 d;
            if (ch >= '0' && ch <= '9') d = static_cast<u32>(ch - '0');
            else if (ch >= 'A' && ch <= 'F') d = static_cast<u32>(ch - 'A' + 10);
            else return o_.fail(Err::invalid);
            product = product << 4 | d;
        }
        if (id[7]) return o_.fail(Err::invalid);
        // Bytes: vendor (big-endian 16 bits), then product (big-endian 16 bits).
        const u32 bytes = (v >> 8 & 0xff) | (v & 0xff) << 8 | (product >> 8 & 0xff) << 16 | (product & 0xff) << 24;
        o_.b(AML_DWORD);
        o_.le(bytes, 4);
    }

    void name(const char *path)
    {
        o_.b(AML_NAME);
        name_string(path);
    }

    Pkg scope_begin(const char *path)
    {
        o_.b(AML_SCOPE);
        const Pkg p = pkg_begin();
        name_string(path);
        return p;
    }
    Pkg device_begin(const char *path)
    {
        o_.b(AML_EXT);
        o_.b(AML_DEVICE);
        const Pkg p = pkg_begin();
        name_string(path);
        return p;
    }
    void block_end(Pkg p) { pkg_end(p); }

    // Package(count) { elements... }: the caller emits exactly `count` elements.
    Pkg package_begin(u8 count)
    {
        o_.b(AML_PACKAGE);
        const Pkg p = pkg_begin();
        o_.b(count);
        return p;
    }
    void package_end(Pkg p) { pkg_end(p); }

    // Buffer(size) { bytes }: the data's size is a second recorded length.
    struct BufferMark {
        Pkg pkg, data;
    };
    BufferMark buffer_begin()
    {
        o_.b(AML_BUFFER);
        const Pkg pkg = pkg_begin();
        // Measuring: data.start marks the data. Emitting: BufferSize first.
        const usize idx = next_++;
        if (o_.counting()) {
            if (idx >= AmlSizes::MAX) o_.fail(Err::range);
            else sizes_.count = idx + 1;
        } else if (idx >= sizes_.count) {
            o_.fail(Err::range);
        } else {
            integer(sizes_.len[idx]);
        }
        return {pkg, {idx, o_.pos()}};
    }
    void buffer_end(BufferMark m)
    {
        if (!o_.ok()) return;
        const usize n = o_.pos() - m.data.start;
        if (o_.counting()) {
            sizes_.len[m.data.idx] = static_cast<u32>(n);
            o_.zeros(integer_size(n));  // BufferSize goes before the data: count it
        } else if (n != sizes_.len[m.data.idx]) {
            return o_.fail(Err::range);
        }
        pkg_end(m.pkg);
    }

    // Resource descriptors (ACPI 6.x, 6.4), for ResourceTemplate buffers.
    void rd_io16(u16 min, u16 max, u8 align, u8 len)
    {
        o_.b(0x47);                 // small item 0x08, 7 bytes
        o_.b(1);                    // decodes 16 address bits
        o_.le(min, 2);
        o_.le(max, 2);
        o_.b(align);
        o_.b(len);
    }
    void rd_mem32_fixed(bool writable, u32 base, u32 len)
    {
        o_.b(0x86);                 // large item 0x06
        o_.le(9, 2);
        o_.b(writable ? 1 : 0);
        o_.le(base, 4);
        o_.le(len, 4);
    }
    // Extended Interrupt, ResourceConsumer, one GSI, no resource source.
    void rd_interrupt(bool edge, bool active_low, bool shared, u32 gsi)
    {
        o_.b(0x89);                 // large item 0x09
        o_.le(6, 2);
        o_.b(static_cast<u8>(1 | (edge ? 2 : 0) | (active_low ? 4 : 0) | (shared ? 8 : 0)));
        o_.b(1);                    // interrupt table length
        o_.le(gsi, 4);
    }
    void rd_end()
    {
        o_.b(0x79);                 // small item 0x0f, 1 byte
        o_.b(0);                    // checksum 0: "ignore"
    }

private:
    Out &o_;
    AmlSizes &sizes_;
    usize next_ = 0;
};

static_assert(GuestAcpiConfig::MAX_VIRTIO <= 10, "device names VRT0..VRT9");

// The DSDT's definition block (everything after the header).
void dsdt_body(Aml &a, const GuestAcpiConfig &c)
{
    const Aml::Pkg sb = a.scope_begin("\\_SB_");
    if (c.com1) {
        const Aml::Pkg d = a.device_begin("COM1");
        a.name("_HID");
        a.eisa_id("PNP0501");
        a.name("_UID");
        a.integer(0);
        a.name("_CRS");
        const Aml::BufferMark crs = a.buffer_begin();
        a.rd_io16(0x3f8, 0x3f8, 1, 8);
        a.rd_interrupt(true, false, false, c.ioapic_gsi_base + 4);
        a.rd_end();
        a.buffer_end(crs);
        a.block_end(d);
    }
    for (u32 i = 0; i < c.nvirtio; i++) {
        const GuestAcpiConfig::MmioDevice &v = c.virtio[i];
        const char name[5] = {'V', 'R', 'T', static_cast<char>('0' + i), 0};
        const Aml::Pkg d = a.device_begin(name);
        a.name("_HID");
        a.string("LNRO0005");
        a.name("_UID");
        a.integer(i);
        a.name("_CCA");             // cache-coherent DMA
        a.integer(1);
        a.name("_CRS");
        const Aml::BufferMark crs = a.buffer_begin();
        a.rd_mem32_fixed(true, static_cast<u32>(v.base), v.size);
        a.rd_interrupt(false, false, false, v.gsi);
        a.rd_end();
        a.buffer_end(crs);
        a.block_end(d);
    }
    a.block_end(sb);

    a.name("\\_S5_");
    const Aml::Pkg pkg = a.package_begin(4);
    a.integer(c.s5_slp_typ);
    a.integer(0);
    a.integer(0);
    a.integer(0);
    a.package_end(pkg);
}

usize dsdt(Out &o, const GuestAcpiConfig &c)
{
    const usize t = table_begin(o, "DSDT", 2);    // revision 2: 64-bit integers
    AmlSizes sizes{};
    Out counter = Out::counter();
    {
        Aml measure(counter, sizes);
        dsdt_body(measure, c);
    }
    if (!counter.ok()) {
        o.fail(counter.err());
        return t;
    }
    Aml emit(o, sizes);
    dsdt_body(emit, c);
    if (o.ok() && !emit.complete()) o.fail(Err::range);
    table_end(o, t);
    return t;
}

// ---------------------------------------------------------------- checks

bool below_4g(u64 base, u64 size) { return base < FOUR_GIB && size <= FOUR_GIB - base; }

Status validate(const GuestAcpiConfig &c)
{
    if (c.vcpus < 1 || c.vcpus > GuestAcpiConfig::MAX_VCPUS) return Err::invalid;
    if (c.nvirtio > GuestAcpiConfig::MAX_VIRTIO) return Err::invalid;
    if (c.s5_slp_typ > 7) return Err::invalid;
    if (c.base & (PAGE_SIZE - 1) || c.base >= FOUR_GIB) return Err::invalid;
    if (c.lapic_base >= FOUR_GIB || c.ioapic_base >= FOUR_GIB) return Err::invalid;
    // The IOAPIC's GSIs must be representable: base + pins - 1 <= 2^32 - 1.
    if (c.ioapic_pins < 1 || c.ioapic_pins > 240 || c.ioapic_gsi_base > 0xffffffff - (c.ioapic_pins - 1))
        return Err::invalid;
    if (c.com1 && c.ioapic_pins <= 4) return Err::invalid;
    const u64 com1_gsi = u64{c.ioapic_gsi_base} + 4;
    for (u32 i = 0; i < c.nvirtio; i++) {
        const GuestAcpiConfig::MmioDevice &v = c.virtio[i];
        if (!v.size || !below_4g(v.base, v.size)) return Err::invalid;
        if (v.gsi < c.ioapic_gsi_base || v.gsi - c.ioapic_gsi_base >= c.ioapic_pins) return Err::invalid;
        if (c.com1 && v.gsi == com1_gsi) return Err::invalid;
        for (u32 j = 0; j < i; j++) {
            const GuestAcpiConfig::MmioDevice &w = c.virtio[j];
            if (v.base < w.base + w.size && w.base < v.base + v.size) return Err::invalid;
        }
    }
    return {};
}

} // namespace

Result<GuestAcpiLayout> build_guest_acpi(const GuestAcpiConfig &c, u8 *buf, usize cap)
{
    KEEL_TRY(validate(c));
    if (!buf) return Err::invalid;
    Out o(buf, cap);

    // RSDP (ACPI 2.0+, 36 bytes), pointers and checksums filled in below.
    o.chars("RSD PTR ", 8);
    o.b(0);                         // 8 checksum of the first 20 bytes
    o.chars("KEEL  ", 6);           // 9 OEM ID
    o.b(2);                         // 15 revision
    o.le(0, 4);                     // 16 RSDT address
    o.le(36, 4);                    // 20 length
    o.le(0, 8);                     // 24 XSDT address
    o.b(0);                         // 32 extended checksum
    o.zeros(3);

    const usize xsdt = table_begin(o, "XSDT", 1);
    o.le(0, 8);                     // FACP
    o.le(0, 8);                     // APIC
    table_end(o, xsdt);
    const usize rsdt = table_begin(o, "RSDT", 1);
    o.le(0, 4);
    o.le(0, 4);
    table_end(o, rsdt);
    const usize facp = fadt(o, c);
    const usize apic = madt(o, c);
    const usize dsdt_at = dsdt(o, c);
    if (!o.ok()) return o.err();

    const u64 size = o.pos();
    if (size > FOUR_GIB - c.base) return Err::invalid;    // pointers are 32-bit too

    o.patch(16, c.base + rsdt, 4);
    o.patch(24, c.base + xsdt, 8);
    o.patch(xsdt + HDR, c.base + facp, 8);
    o.patch(xsdt + HDR + 8, c.base + apic, 8);
    o.patch(rsdt + HDR, c.base + facp, 4);
    o.patch(rsdt + HDR + 4, c.base + apic, 4);
    o.patch(facp + F_DSDT, c.base + dsdt_at, 4);
    o.patch(facp + F_X_DSDT, c.base + dsdt_at, 8);
    if (!o.ok()) return o.err();

    const usize tables[] = {xsdt, rsdt, facp, apic, dsdt_at};
    for (usize t : tables) table_checksum(o, t);
    u8 *r = o.at(0);
    r[8] = static_cast<u8>(-sum(r, 20));
    r[32] = static_cast<u8>(-sum(r, 36));

    return GuestAcpiLayout{c.base, size};
}

// A tiny AML and ACPI-table writer for the tables Keel builds for its guests
// (guest_acpi.cpp): a bounds-checked byte writer (AcpiOut) and an AML emitter
// (Aml) for the few terms a DSDT needs: names, integers, strings, EISA IDs,
// scopes, devices, packages, buffers, and resource descriptors (ACPI 6.5,
// 6.4) for _CRS templates.
//
// The emitter runs twice over the same code: a PkgLength (1-4 bytes) and a
// buffer's size precede the bytes they measure, so a first pass (over
// AcpiOut::counter()) only counts and records every package's length in
// order, and the second writes each length, minimally encoded, before its
// body. Nothing is written twice and nothing beyond the final size is touched.
#pragma once

#include "kernel/lib/result.hpp"
#include "kernel/lib/types.hpp"

namespace aml {

// Bounds-checked writer over the caller's buffer. The first failure sticks:
// later writes do nothing and err() reports it. Without a buffer it only
// counts (the measuring pass).
class AcpiOut {
public:
    AcpiOut(u8 *buf, usize cap) : buf_(buf), cap_(cap) {}
    static AcpiOut counter() { return AcpiOut(nullptr, ~usize{0}); }
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


enum : u8 {
    AML_ZERO = 0x00, AML_ONE = 0x01, AML_NAME = 0x08, AML_BYTE = 0x0a, AML_WORD = 0x0b,
    AML_DWORD = 0x0c, AML_STRING = 0x0d, AML_QWORD = 0x0e, AML_SCOPE = 0x10, AML_BUFFER = 0x11,
    AML_PACKAGE = 0x12, AML_DUAL_NAME = 0x2e, AML_MULTI_NAME = 0x2f, AML_EXT = 0x5b,
    AML_DEVICE = 0x82, AML_ROOT = 0x5c, AML_PARENT = 0x5e,
};

// Bytes of the shortest encoding of an integer (what Aml::integer emits).
inline usize integer_size(u64 v)
{
    return v <= 1 ? 1 : v <= 0xff ? 2 : v <= 0xffff ? 3 : v <= 0xffffffff ? 5 : 9;
}

// Bytes of the minimal PkgLength for a body of `body` bytes; 0 if too long.
inline usize pkg_length_size(usize body)
{
    return body + 1 <= 0x3f ? 1 : body + 2 <= 0xfff ? 2 : body + 3 <= 0xfffff ? 3 : body + 4 <= 0xfffffff ? 4 : 0;
}

// Lengths found by the measuring pass, in the order the packages begin.
struct AmlSizes {
    static constexpr usize MAX = 256;   // a _PRT is a package per routed pin
    u32 len[MAX];           // body bytes after the PkgLength (buffers: data bytes)
    usize count;
};

class Aml {
public:
    // Measuring (o counting): records sizes; emitting: uses them.
    Aml(AcpiOut &o, AmlSizes &sizes) : o_(o), sizes_(sizes)
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
    // Address space descriptors (6.4.3.5) of a host bridge's windows: a
    // producer, minimum and maximum fixed, positive decode, no translation.
    // WordBusNumber: the bus range it decodes.
    void rd_word_bus(u16 min, u16 max)
    {
        o_.b(0x88);                 // large item 0x08, 13 bytes
        o_.le(13, 2);
        o_.b(2);                    // resource type: bus number range
        o_.b(0x0c);                 // general flags: _MAF, _MIF, producer
        o_.b(0);                    // type-specific flags
        o_.le(0, 2);                // granularity
        o_.le(min, 2);
        o_.le(max, 2);
        o_.le(0, 2);                // translation offset
        o_.le(u32(max) - min + 1, 2);
    }
    // DWordMemory: a read-write, non-cacheable window [min, max].
    void rd_dword_mem(u32 min, u32 max)
    {
        o_.b(0x87);                 // large item 0x07, 23 bytes
        o_.le(23, 2);
        o_.b(0);                    // memory range
        o_.b(0x0c);
        o_.b(1);                    // read-write, non-cacheable, AddressRangeMemory
        o_.le(0, 4);                // granularity
        o_.le(min, 4);
        o_.le(max, 4);
        o_.le(0, 4);
        o_.le(u64(max) - min + 1, 4);
    }
    // QWordMemory: the same above 4 GiB.
    void rd_qword_mem(u64 min, u64 max)
    {
        o_.b(0x8a);                 // large item 0x0a, 43 bytes
        o_.le(43, 2);
        o_.b(0);
        o_.b(0x0c);
        o_.b(1);
        o_.le(0, 8);
        o_.le(min, 8);
        o_.le(max, 8);
        o_.le(0, 8);
        o_.le(max - min + 1, 8);
    }
    void rd_end()
    {
        o_.b(0x79);                 // small item 0x0f, 1 byte
        o_.b(0);                    // checksum 0: "ignore"
    }

private:
    AcpiOut &o_;
    AmlSizes &sizes_;
    usize next_ = 0;
};

} // namespace aml

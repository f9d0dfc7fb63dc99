// The AML emitter (kernel/guest/aml.hpp) against byte sequences worked out by
// hand from the ACPI 6.5 grammar (20.2) and resource descriptor formats (6.4):
// name strings, integers, EISA IDs, PkgLength at its one/two-byte boundary,
// buffers, devices, and the descriptors of a host bridge's _CRS.
#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "kernel/guest/aml.hpp"

namespace {

using Bytes = std::vector<u8>;
using aml::AcpiOut;
using aml::Aml;
using aml::AmlSizes;

// Run `body` as the builder does: a measuring pass, then the emitting one.
Bytes emit(const std::function<void(Aml &)> &body)
{
    AmlSizes sizes{};
    AcpiOut counter = AcpiOut::counter();
    {
        Aml measure(counter, sizes);
        body(measure);
    }
    EXPECT_TRUE(counter.ok());
    Bytes buf(counter.pos() + 16, 0xcc);
    AcpiOut o(buf.data(), buf.size());
    Aml a(o, sizes);
    body(a);
    EXPECT_TRUE(o.ok());
    EXPECT_TRUE(a.complete());
    EXPECT_EQ(o.pos(), counter.pos());
    buf.resize(o.pos());
    return buf;
}

Bytes str(const char *s) { return Bytes(s, s + __builtin_strlen(s)); }
Bytes cat(std::initializer_list<Bytes> parts)
{
    Bytes r;
    for (const Bytes &p : parts) r.insert(r.end(), p.begin(), p.end());
    return r;
}

TEST(Aml, NameStrings)
{
    EXPECT_EQ(emit([](Aml &a) { a.name_string("_HID"); }), str("_HID"));
    EXPECT_EQ(emit([](Aml &a) { a.name_string("PCI"); }), str("PCI_"));
    EXPECT_EQ(emit([](Aml &a) { a.name_string("\\_SB_"); }), cat({{0x5c}, str("_SB_")}));
    EXPECT_EQ(emit([](Aml &a) { a.name_string("\\_SB_.PCI0"); }), cat({{0x5c, 0x2e}, str("_SB_PCI0")}));
    EXPECT_EQ(emit([](Aml &a) { a.name_string("A.B.C"); }), cat({{0x2f, 3}, str("A___B___C___")}));
    EXPECT_EQ(emit([](Aml &a) { a.name_string("^^X1"); }), cat({{0x5e, 0x5e}, str("X1__")}));
    EXPECT_EQ(emit([](Aml &a) { a.name_string("\\"); }), (Bytes{0x5c, 0x00}));
}

TEST(Aml, BadNamesFail)
{
    for (const char *bad : {"1ABC", "ABCDE", "A..B", "a", "AB-C"}) {
        AmlSizes sizes{};
        AcpiOut counter = AcpiOut::counter();
        Aml a(counter, sizes);
        a.name_string(bad);
        EXPECT_FALSE(counter.ok()) << bad;
    }
}

TEST(Aml, Integers)
{
    EXPECT_EQ(emit([](Aml &a) { a.integer(0); }), (Bytes{0x00}));
    EXPECT_EQ(emit([](Aml &a) { a.integer(1); }), (Bytes{0x01}));
    EXPECT_EQ(emit([](Aml &a) { a.integer(2); }), (Bytes{0x0a, 0x02}));
    EXPECT_EQ(emit([](Aml &a) { a.integer(0xff); }), (Bytes{0x0a, 0xff}));
    EXPECT_EQ(emit([](Aml &a) { a.integer(0x100); }), (Bytes{0x0b, 0x00, 0x01}));
    EXPECT_EQ(emit([](Aml &a) { a.integer(0x1ffff); }), (Bytes{0x0c, 0xff, 0xff, 0x01, 0x00}));
    EXPECT_EQ(emit([](Aml &a) { a.integer(0x100000000ull); }), (Bytes{0x0e, 0, 0, 0, 0, 1, 0, 0, 0}));
    EXPECT_EQ(emit([](Aml &a) { a.string("LNRO0005"); }), cat({{0x0d}, str("LNRO0005"), {0}}));
}

TEST(Aml, EisaIds)
{
    EXPECT_EQ(emit([](Aml &a) { a.eisa_id("PNP0A08"); }), (Bytes{0x0c, 0x41, 0xd0, 0x0a, 0x08}));
    EXPECT_EQ(emit([](Aml &a) { a.eisa_id("PNP0A03"); }), (Bytes{0x0c, 0x41, 0xd0, 0x0a, 0x03}));
    EXPECT_EQ(emit([](Aml &a) { a.eisa_id("PNP0C02"); }), (Bytes{0x0c, 0x41, 0xd0, 0x0c, 0x02}));
}

// Package(n) { Zero... }: a body of 62 bytes is the last with a one-byte PkgLength (63 in all).
TEST(Aml, PkgLengthBoundary)
{
    auto zeros = [](u8 n) {
        return [n](Aml &a) {
            const Aml::Pkg p = a.package_begin(n);
            for (u8 i = 0; i < n; i++) a.integer(0);
            a.package_end(p);
        };
    };
    Bytes b = emit(zeros(61));
    ASSERT_EQ(b.size(), 2u + 1 + 61);
    EXPECT_EQ((Bytes{b[0], b[1], b[2]}), (Bytes{0x12, 0x3f, 61}));
    b = emit(zeros(62));
    ASSERT_EQ(b.size(), 3u + 1 + 62);
    // 2 + 1 + 62 = 65 = 0x41: 0x40 | (0x41 & 0xf), then 0x41 >> 4.
    EXPECT_EQ((Bytes{b[0], b[1], b[2], b[3]}), (Bytes{0x12, 0x41, 0x04, 62}));
    b = emit(zeros(255));
    // 2 + 1 + 255 = 258 = 0x102.
    EXPECT_EQ((Bytes{b[0], b[1], b[2], b[3]}), (Bytes{0x12, 0x42, 0x10, 0xff}));
}

TEST(Aml, NestedPackages)
{
    // Package(1) { Package(4) { 0x1FFFF, 0, 0, 17 } }: one _PRT row.
    const Bytes b = emit([](Aml &a) {
        const Aml::Pkg outer = a.package_begin(1);
        const Aml::Pkg row = a.package_begin(4);
        a.integer(0x1ffff);
        a.integer(0);
        a.integer(0);
        a.integer(17);
        a.package_end(row);
        a.package_end(outer);
    });
    EXPECT_EQ(b, (Bytes{0x12, 0x0e, 0x01, 0x12, 0x0b, 0x04, 0x0c, 0xff, 0xff, 0x01, 0x00, 0x00, 0x00, 0x0a, 0x11}));
}

TEST(Aml, DeviceWithResourceTemplate)
{
    // Device (RES0) { Name (_CRS, ResourceTemplate () { IO (Decode16, 0xCF8, 0xCF8, 1, 8) }) }
    const Bytes b = emit([](Aml &a) {
        const Aml::Pkg d = a.device_begin("RES0");
        a.name("_CRS");
        const Aml::BufferMark m = a.buffer_begin();
        a.rd_io16(0xcf8, 0xcf8, 1, 8);
        a.rd_end();
        a.buffer_end(m);
        a.block_end(d);
    });
    const Bytes buffer = {0x11, 0x0d, 0x0a, 0x0a, 0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08, 0x79, 0x00};
    EXPECT_EQ(b, cat({{0x5b, 0x82, 0x18}, str("RES0"), {0x08}, str("_CRS"), buffer}));
}

TEST(Aml, AddressSpaceDescriptors)
{
    // WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, 0, 0xFF, 0, 0x100)
    EXPECT_EQ(emit([](Aml &a) { a.rd_word_bus(0, 0xff); }),
              (Bytes{0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0, 0, 0, 0, 0xff, 0, 0, 0, 0x00, 0x01}));
    // DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite,
    //              0, 0xC0000000, 0xDFFFFFFF, 0, 0x20000000)
    EXPECT_EQ(emit([](Aml &a) { a.rd_dword_mem(0xc0000000, 0xdfffffff); }),
              (Bytes{0x87, 0x17, 0x00, 0x00, 0x0c, 0x01, 0, 0, 0, 0, 0, 0, 0, 0xc0, 0xff, 0xff, 0xff, 0xdf,
                     0, 0, 0, 0, 0, 0, 0, 0x20}));
    // QWordMemory (..., 0, 0x100000000, 0x4FFFFFFFF, 0, 0x400000000)
    EXPECT_EQ(emit([](Aml &a) { a.rd_qword_mem(0x100000000ull, 0x4ffffffffull); }),
              (Bytes{0x8a, 0x2b, 0x00, 0x00, 0x0c, 0x01,
                     0, 0, 0, 0, 0, 0, 0, 0,
                     0, 0, 0, 0, 1, 0, 0, 0,
                     0xff, 0xff, 0xff, 0xff, 4, 0, 0, 0,
                     0, 0, 0, 0, 0, 0, 0, 0,
                     0, 0, 0, 0, 4, 0, 0, 0}));
    EXPECT_EQ(emit([](Aml &a) { a.rd_mem32_fixed(false, 0xe0000000, 0x100000); }),
              (Bytes{0x86, 0x09, 0x00, 0x00, 0, 0, 0, 0xe0, 0, 0, 0x10, 0}));
}

// The emitting pass writes nothing past a too-small buffer and says so.
TEST(Aml, TooSmallBuffer)
{
    auto body = [](Aml &a) {
        const Aml::Pkg d = a.device_begin("PCI0");
        a.name("_HID");
        a.eisa_id("PNP0A08");
        a.block_end(d);
    };
    AmlSizes sizes{};
    AcpiOut counter = AcpiOut::counter();
    {
        Aml m(counter, sizes);
        body(m);
    }
    Bytes buf(counter.pos() + 4, 0xcc);
    AcpiOut o(buf.data(), counter.pos() - 1);
    Aml a(o, sizes);
    body(a);
    EXPECT_EQ(o.err(), Err::no_memory);
    EXPECT_EQ(buf[counter.pos() - 1], 0xcc);
}

} // namespace

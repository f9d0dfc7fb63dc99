// The PCI host bridge (kernel/pci/pci.cpp): a function's configuration space
// (IDs, read-only fields, command register, BAR sizing and relocation, the
// capability list, MSI-X table/PBA/masking, MSI with multiple messages and
// per-vector masking), the 0xCF8/0xCFC mechanism at
// every width and offset, ECAM, BAR dispatch, and a randomised hostile guest.
#include <gtest/gtest.h>

#include <random>
#include <thread>
#include <vector>

#include "kernel/pci/pci.hpp"

namespace {

struct Msg {
    u64 addr;
    u32 data;
};
struct Line {
    u32 gsi;
    bool level;
};
struct Sink {
    std::vector<Msg> msis;
    std::vector<Line> lines;
};
void on_msi(void *ctx, u64 addr, u32 data) { static_cast<Sink *>(ctx)->msis.push_back({addr, data}); }
void on_intx(void *ctx, u32 gsi, bool level) { static_cast<Sink *>(ctx)->lines.push_back({gsi, level}); }

constexpr u64 ECAM = 0xe0000000;
constexpr u32 GSI = 16;

// A device with a 32-bit BAR0 (4 KiB, MSI-X table at 0, PBA at 0x800), a
// 64-bit prefetchable BAR2 (1 MiB) and BAR4 (64 KiB, 32-bit), INTA, a vendor capability.
class TestDevice final : public PciFunction {
public:
    TestDevice(u16 vectors = 4)
    {
        set_ids({0x1af4, 0x1041, 0x020000, 1, 0x1af4, 0x0001});
        EXPECT_TRUE(set_bar(0, BarType::mem32, 0x1000, false));
        EXPECT_TRUE(set_bar(2, BarType::mem64, 0x100000, true));
        EXPECT_TRUE(set_bar(4, BarType::mem32, 0x10000, false));
        set_interrupt_pin(1);
        const u8 vendor[14] = {16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};
        const u8 wmask[14] = {0, 0, 0xff};
        vendor_cap = add_capability(0x09, vendor, sizeof(vendor), wmask);
        if (vectors) EXPECT_TRUE(add_msix(vectors, 0, 0, 0, 0x800));
    }
    u64 bar_read(u32 bar, u64 offset, u8 size) override
    {
        reads.push_back({bar, offset, size, 0});
        return 0x1234;
    }
    void bar_write(u32 bar, u64 offset, u8 size, u64 value) override { writes.push_back({bar, offset, size, value}); }

    struct Access {
        u32 bar;
        u64 offset;
        u8 size;
        u64 value;
    };
    std::vector<Access> reads, writes;
    u8 vendor_cap = 0;
    using PciFunction::add_capability;
    using PciFunction::set_bar;
};

struct Fixture {
    Sink sink;
    PciBus bus{ECAM, GSI, {on_msi, on_intx, &sink}};
    TestDevice dev;
    Spinlock port_lock;
    Fixture() { EXPECT_TRUE(bus.plug(1, dev)); }

    u32 rd(u32 d, u32 reg, u8 size = 4) { return bus.config_read(d, 0, reg, size); }
    void wr(u32 d, u32 reg, u32 v, u8 size = 4) { bus.config_write(d, 0, reg, size, v); }
    u64 mmio_rd(u64 gpa, u8 size)
    {
        u64 v = 0;
        EXPECT_TRUE(bus.covers(gpa));
        bus.mmio(0, gpa, size, false, v);
        return v;
    }
    void mmio_wr(u64 gpa, u8 size, u64 v)
    {
        EXPECT_TRUE(bus.covers(gpa));
        bus.mmio(0, gpa, size, true, v);
    }
    u32 cf8_rd(u32 dev_, u32 reg, u16 port_off, u8 size)
    {
        u32 a = 0x80000000u | dev_ << 11 | (reg & 0xfc);
        EXPECT_TRUE(bus.io(0xcf8, 4, false, a));
        u32 v = 0;
        EXPECT_TRUE(bus.io(u16(0xcfc + port_off), size, true, v));
        return v;
    }
    // Program BAR0 at 0xc0000000 and BAR2 at 0x8_0000_0000, memory decode on.
    void map()
    {
        wr(1, 0x10, 0xc0000000);
        wr(1, 0x18, 0);
        wr(1, 0x1c, 8);
        wr(1, 0x04, 2, 2);
    }
};

TEST(Pci, HostBridgeAndEmptySlots)
{
    Fixture f;
    EXPECT_EQ(f.rd(0, 0), u32(PciBus::HOST_DEVICE) << 16 | PciBus::HOST_VENDOR);
    EXPECT_EQ(f.rd(0, 0x08) >> 8, 0x060000u);
    EXPECT_EQ(f.rd(0, 0x0c) >> 16 & 0xff, 0u);            // header type 0, single function
    EXPECT_EQ(f.rd(2, 0), ~0u);
    EXPECT_EQ(f.rd(2, 0, 2), 0xffffu);
    EXPECT_EQ(f.rd(7, 0x3c, 1), 0xffu);
    EXPECT_EQ(f.bus.config_read(1, 1, 0, 4), ~0u);        // function 1 does not exist
    EXPECT_EQ(f.bus.config_read(8, 0, 0, 4), ~0u);
    // Writes to nothing change nothing.
    f.wr(3, 0x04, 0xffff);
    EXPECT_EQ(f.rd(3, 0x04), ~0u);
}

TEST(Pci, IdsAreReadOnly)
{
    Fixture f;
    EXPECT_EQ(f.rd(1, 0), 0x10411af4u);
    EXPECT_EQ(f.rd(1, 0x08), 0x02000001u);
    EXPECT_EQ(f.rd(1, 0x2c), 0x00011af4u);
    for (u32 reg : {0x00u, 0x08u, 0x2cu, 0x30u, 0x34u}) {
        const u32 before = f.rd(1, reg);
        f.wr(1, reg, 0x5a5a5a5a);
        f.wr(1, reg + 1, 0xa5, 1);
        EXPECT_EQ(f.rd(1, reg), before) << reg;
    }
    EXPECT_EQ(f.rd(1, 0x30), 0u);                         // no expansion ROM
}

TEST(Pci, CommandRegister)
{
    Fixture f;
    EXPECT_EQ(f.rd(1, 0x04, 2), 0u);
    f.wr(1, 0x04, 0xffff, 2);
    EXPECT_EQ(f.rd(1, 0x04, 2), 0x0407u);                 // IO, memory, bus master, INTx disable
    f.wr(1, 0x05, 0, 1);
    EXPECT_EQ(f.rd(1, 0x04, 2), 0x0007u);
    // Interrupt line is the guest's scratch, the pin read-only.
    f.wr(1, 0x3c, 0xffff, 2);
    EXPECT_EQ(f.rd(1, 0x3c, 2), 0x01ffu);
}

TEST(Pci, Bar32SizingAndRelocation)
{
    Fixture f;
    EXPECT_EQ(f.rd(1, 0x10), 0u);
    f.wr(1, 0x10, ~0u);
    EXPECT_EQ(f.rd(1, 0x10), 0xfffff000u);                // 4 KiB, memory, 32-bit, not prefetchable
    f.wr(1, 0x10, 0xc0001234);
    EXPECT_EQ(f.rd(1, 0x10), 0xc0001000u);                // low bits are the size's
    EXPECT_EQ(f.dev.bar_base(0), 0xc0001000u);
    // Byte writes relocate too.
    f.wr(1, 0x13, 0xd0, 1);
    EXPECT_EQ(f.dev.bar_base(0), 0xd0001000u);
    // Unimplemented BARs read 0 whatever is written.
    f.wr(1, 0x14, ~0u);
    EXPECT_EQ(f.rd(1, 0x14), 0u);
}

TEST(Pci, Bar64SizingAndRelocation)
{
    Fixture f;
    EXPECT_EQ(f.rd(1, 0x18), 0xcu);                       // 64-bit, prefetchable
    f.wr(1, 0x18, ~0u);
    f.wr(1, 0x1c, ~0u);
    EXPECT_EQ(f.rd(1, 0x18), 0xfff0000cu);                // 1 MiB
    EXPECT_EQ(f.rd(1, 0x1c), ~0u);
    f.wr(1, 0x18, 0x00100000);
    f.wr(1, 0x1c, 0x8);
    EXPECT_EQ(f.dev.bar_base(2), 0x800100000ull);
    EXPECT_EQ(f.dev.bar_base(3), 0u);                     // the upper half is no BAR of its own
    EXPECT_EQ(f.dev.bar_size(2), 0x100000u);
}

TEST(Pci, BarDescriptionsChecked)
{
    TestDevice d(0);
    EXPECT_FALSE(d.set_bar(0, PciFunction::BarType::mem32, 0x1000, false));   // taken
    EXPECT_FALSE(d.set_bar(3, PciFunction::BarType::mem32, 0x1000, false));   // BAR2's upper half
    EXPECT_FALSE(d.set_bar(5, PciFunction::BarType::mem64, 0x1000, false));   // no room for the upper half
    EXPECT_FALSE(d.set_bar(5, PciFunction::BarType::mem32, 0x1800, false));   // not a power of two
    EXPECT_FALSE(d.set_bar(5, PciFunction::BarType::mem32, 8, false));
    EXPECT_TRUE(d.set_bar(5, PciFunction::BarType::mem32, 16, false));
}

TEST(Pci, CapabilityListWalk)
{
    Fixture f;
    EXPECT_TRUE(f.rd(1, 0x04) >> 16 & 0x10);              // status: capabilities list
    EXPECT_FALSE(f.rd(0, 0x04) >> 16 & 0x10);             // the host bridge has none
    std::vector<u8> ids;
    u32 at = f.rd(1, 0x34, 1);
    for (int guard = 0; at && guard < 48; guard++) {
        EXPECT_EQ(at % 4, 0u);
        EXPECT_GE(at, 0x40u);
        ids.push_back(u8(f.rd(1, at, 1)));
        at = f.rd(1, at + 1, 1);
    }
    EXPECT_EQ(ids, (std::vector<u8>{0x09, 0x11}));
    // The vendor capability: its length byte first, one writable byte, the rest read-only.
    const u32 v = f.dev.vendor_cap;
    EXPECT_EQ(f.rd(1, v + 2, 1), 16u);
    f.wr(1, v + 2, 0xffffffff);
    EXPECT_EQ(f.rd(1, v + 2), 0x03ff0110u);
    // A capability that does not fit is refused.
    u8 big[250] = {};
    EXPECT_EQ(f.dev.add_capability(0x09, big, 250), 0);
}

TEST(Pci, MsixCapability)
{
    Fixture f;
    u32 at = f.rd(1, 0x34, 1);
    while (at && f.rd(1, at, 1) != 0x11) at = f.rd(1, at + 1, 1);
    ASSERT_NE(at, 0u);
    EXPECT_EQ(f.rd(1, at + 2, 2), 3u);                    // 4 vectors, disabled, not masked
    EXPECT_EQ(f.rd(1, at + 4), 0u);                       // table: BAR0 offset 0
    EXPECT_EQ(f.rd(1, at + 8), 0x800u);                   // PBA: BAR0 offset 0x800
    f.wr(1, at + 2, 0xffff, 2);
    EXPECT_EQ(f.rd(1, at + 2, 2), 0xc003u);               // enable and function mask only
    f.wr(1, at + 4, ~0u);
    EXPECT_EQ(f.rd(1, at + 4), 0u);
}

// Program vector n: address, data, unmasked.
void program(Fixture &f, u32 n, u32 data, bool masked)
{
    const u64 e = 0xc0000000 + 16 * n;
    f.mmio_wr(e, 4, 0xfee00000 | n << 12);
    f.mmio_wr(e + 4, 4, 0);
    f.mmio_wr(e + 8, 4, data);
    f.mmio_wr(e + 12, 4, masked ? 1 : 0);
}

u32 msix_cap(Fixture &f)
{
    u32 at = f.rd(1, 0x34, 1);
    while (at && f.rd(1, at, 1) != 0x11) at = f.rd(1, at + 1, 1);
    return at;
}

TEST(Pci, MsixTableAndDelivery)
{
    Fixture f;
    f.map();
    const u32 cap = msix_cap(f);
    // Reset state: every vector masked, nothing pending; MSI-X off: signals refused.
    EXPECT_EQ(f.mmio_rd(0xc000000c, 4), 1u);
    EXPECT_EQ(f.mmio_rd(0xc0000800, 8), 0u);
    EXPECT_FALSE(f.dev.signal_msix(0));
    f.wr(1, cap + 2, 0x8000, 2);                          // enable
    program(f, 0, 0x41, false);
    program(f, 1, 0x42, true);
    EXPECT_EQ(f.mmio_rd(0xc0000000, 8), 0xfee00000u);
    f.mmio_wr(0xc0000020, 4, 0xfee00003);                 // address bits 1:0 are reserved
    EXPECT_EQ(f.mmio_rd(0xc0000020, 4), 0xfee00000u);
    EXPECT_EQ(f.mmio_rd(0xc0000018, 4), 0x42u);
    f.mmio_wr(0xc000001c, 4, 0xfffffffe);                 // reserved bits of vector control stay 0
    EXPECT_EQ(f.mmio_rd(0xc000001c, 4), 0u);
    f.mmio_wr(0xc000001c, 4, 1);

    EXPECT_TRUE(f.dev.signal_msix(0));
    ASSERT_EQ(f.sink.msis.size(), 1u);
    EXPECT_EQ(f.sink.msis[0].addr, 0xfee00000u);
    EXPECT_EQ(f.sink.msis[0].data, 0x41u);
    EXPECT_FALSE(f.dev.signal_msix(4));                   // no such vector

    // Masked: pending in the PBA, delivered once on unmask.
    EXPECT_TRUE(f.dev.signal_msix(1));
    EXPECT_TRUE(f.dev.signal_msix(1));
    EXPECT_EQ(f.sink.msis.size(), 1u);
    EXPECT_EQ(f.mmio_rd(0xc0000800, 4), 2u);
    f.mmio_wr(0xc0000800, 4, 0);                          // the PBA is read-only
    EXPECT_TRUE(f.dev.msix_pending(1));
    f.mmio_wr(0xc000001c, 4, 0);
    ASSERT_EQ(f.sink.msis.size(), 2u);
    EXPECT_EQ(f.sink.msis[1].addr, 0xfee01000u);
    EXPECT_EQ(f.sink.msis[1].data, 0x42u);
    EXPECT_EQ(f.mmio_rd(0xc0000800, 8), 0u);

    // Function mask: everything pends, delivered when it clears.
    f.wr(1, cap + 2, 0xc000, 2);
    EXPECT_TRUE(f.dev.signal_msix(0));
    EXPECT_TRUE(f.dev.signal_msix(1));
    EXPECT_EQ(f.sink.msis.size(), 2u);
    EXPECT_EQ(f.mmio_rd(0xc0000800, 4), 3u);
    f.wr(1, cap + 2, 0x8000, 2);
    EXPECT_EQ(f.sink.msis.size(), 4u);
    EXPECT_EQ(f.mmio_rd(0xc0000800, 4), 0u);

    // Odd widths inside the table read 0 and write nothing; the device never sees them.
    EXPECT_EQ(f.mmio_rd(0xc0000001, 1), 0u);
    f.mmio_wr(0xc0000008, 2, 0xffff);
    EXPECT_EQ(f.mmio_rd(0xc0000008, 4), 0x41u);
    EXPECT_TRUE(f.dev.reads.empty());
    EXPECT_TRUE(f.dev.writes.empty());
}

// A function with MSI only: `vectors` offered, per-vector masking or not.
class MsiDevice final : public PciFunction {
public:
    MsiDevice(u8 vectors, bool maskable)
    {
        set_ids({0x1234, 0x11e8, 0x00ff00, 0x10, 0x1af4, 0x1100});
        EXPECT_TRUE(set_bar(0, BarType::mem32, 0x100000, false));
        set_interrupt_pin(1);
        EXPECT_TRUE(add_msi(vectors, maskable));
        EXPECT_FALSE(add_msi(vectors, maskable));           // one MSI capability
    }
    u64 bar_read(u32, u64, u8) override { return 0; }
    void bar_write(u32, u64, u8, u64) override {}
    using PciFunction::add_msi;
};

struct MsiFixture {
    Sink sink;
    PciBus bus{ECAM, GSI, {on_msi, on_intx, &sink}};
    MsiDevice dev;
    u32 cap = 0;
    MsiFixture(u8 vectors, bool maskable) : dev(vectors, maskable)
    {
        EXPECT_TRUE(bus.plug(1, dev));
        cap = bus.config_read(1, 0, 0x34, 1);
        while (cap && bus.config_read(1, 0, cap, 1) != 0x05) cap = bus.config_read(1, 0, cap + 1, 1);
        EXPECT_NE(cap, 0u);
    }
    u32 rd(u32 reg, u8 size = 4) { return bus.config_read(1, 0, cap + reg, size); }
    void wr(u32 reg, u32 v, u8 size = 4) { bus.config_write(1, 0, cap + reg, size, v); }
};

TEST(Pci, MsiCapabilityLayout)
{
    MsiFixture f(8, true);
    EXPECT_EQ(f.rd(1, 1), 0u);                            // the only capability
    EXPECT_EQ(f.rd(2, 2), 0x0186u);                       // per-vector masking, 64-bit, 8 vectors, off
    f.wr(2, 0xffff, 2);
    EXPECT_EQ(f.rd(2, 2), 0x01f7u);                       // only enable and Multiple Message Enable
    f.wr(4, ~0u);
    EXPECT_EQ(f.rd(4), 0xfffffffcu);                      // dword aligned
    f.wr(8, ~0u);
    EXPECT_EQ(f.rd(8), ~0u);
    f.wr(0x0c, ~0u);
    EXPECT_EQ(f.rd(0x0c), 0xffffu);                       // no Extended Message Data
    f.wr(0x10, ~0u);
    EXPECT_EQ(f.rd(0x10), 0xffu);                         // a mask bit per vector offered
    f.wr(0x14, ~0u);
    EXPECT_EQ(f.rd(0x14), 0u);                            // Pending Bits are read-only

    MsiFixture g(1, false);
    EXPECT_EQ(g.rd(2, 2), 0x0080u);                       // 64-bit, 1 vector, no masking
    g.wr(0x10, ~0u);
    EXPECT_EQ(g.rd(0x10), 0u);                            // no Mask Bits: past the capability
}

TEST(Pci, MsiDeliveryFollowsEnableAndMultipleMessageEnable)
{
    MsiFixture f(4, false);
    f.wr(4, 0xfee01000);
    f.wr(8, 0);
    f.wr(0x0c, 0x4b);
    EXPECT_FALSE(f.dev.signal_msi(0));                    // MSI off
    EXPECT_FALSE(f.dev.signal_vector(0));
    EXPECT_TRUE(f.sink.msis.empty());
    f.wr(2, 0x0001, 2);                                   // on, one message
    EXPECT_TRUE(f.dev.msi_enabled());
    EXPECT_EQ(f.dev.msi_enabled_vectors(), 1u);
    EXPECT_TRUE(f.dev.signal_msi(0));
    EXPECT_TRUE(f.dev.signal_msi(3));                     // folds onto message 0
    EXPECT_FALSE(f.dev.signal_msi(4));                    // not offered
    ASSERT_EQ(f.sink.msis.size(), 2u);
    EXPECT_EQ(f.sink.msis[0].addr, 0xfee01000u);
    EXPECT_EQ(f.sink.msis[0].data, 0x4bu);
    EXPECT_EQ(f.sink.msis[1].data, 0x4bu);
    // Four messages: the message number replaces the data's two low bits.
    f.wr(0x0c, 0x48);
    f.wr(2, 0x0021, 2);
    EXPECT_EQ(f.dev.msi_enabled_vectors(), 4u);
    EXPECT_TRUE(f.dev.signal_vector(3));
    EXPECT_TRUE(f.dev.signal_msi(1));
    ASSERT_EQ(f.sink.msis.size(), 4u);
    EXPECT_EQ(f.sink.msis[2].data, 0x4bu);
    EXPECT_EQ(f.sink.msis[3].data, 0x49u);
    f.wr(2, 0x0051, 2);                                   // 32 asked, 4 offered: 4
    EXPECT_EQ(f.dev.msi_enabled_vectors(), 4u);
    // A 64-bit address.
    f.wr(8, 0x12);
    EXPECT_TRUE(f.dev.signal_msi(0));
    EXPECT_EQ(f.sink.msis.back().addr, 0x12fee01000ull);
    // Off again: nothing goes, nothing is latched.
    f.wr(2, 0x0020, 2);
    EXPECT_FALSE(f.dev.signal_msi(0));
    f.wr(2, 0x0021, 2);
    EXPECT_EQ(f.sink.msis.size(), 5u);
}

TEST(Pci, MsiPerVectorMaskLatchesPending)
{
    MsiFixture f(2, true);
    f.wr(4, 0xfee00000);
    f.wr(0x0c, 0x60);
    f.wr(0x10, 0x2);                                      // vector 1 masked
    f.wr(2, 0x0011, 2);                                   // on, two messages
    EXPECT_TRUE(f.dev.signal_msi(1));
    EXPECT_TRUE(f.dev.signal_msi(1));                     // latched once
    EXPECT_TRUE(f.dev.signal_msi(0));
    ASSERT_EQ(f.sink.msis.size(), 1u);
    EXPECT_EQ(f.sink.msis[0].data, 0x60u);
    EXPECT_EQ(f.rd(0x14), 0x2u);
    EXPECT_EQ(f.dev.msi_pending(), 0x2u);
    f.wr(0x10, 0x3);                                      // masking more delivers nothing
    EXPECT_EQ(f.sink.msis.size(), 1u);
    f.wr(0x10, 0x1, 1);                                   // vector 1 unmasked: delivered once
    ASSERT_EQ(f.sink.msis.size(), 2u);
    EXPECT_EQ(f.sink.msis[1].data, 0x61u);
    EXPECT_EQ(f.rd(0x14), 0u);
    // Pending while MSI is turned off and on again: delivered on enable.
    EXPECT_TRUE(f.dev.signal_msi(0));
    EXPECT_EQ(f.rd(0x14), 0x1u);
    f.wr(2, 0x0010, 2);
    f.wr(0x10, 0);
    EXPECT_EQ(f.sink.msis.size(), 2u);
    f.wr(2, 0x0011, 2);
    ASSERT_EQ(f.sink.msis.size(), 3u);
    EXPECT_EQ(f.sink.msis[2].data, 0x60u);
    EXPECT_EQ(f.rd(0x14), 0u);
}

TEST(Pci, MsiEnabledTurnsIntxOff)
{
    MsiFixture f(1, false);
    f.dev.set_intx(true);
    ASSERT_EQ(f.sink.lines.size(), 1u);
    EXPECT_TRUE(f.sink.lines[0].level);
    f.wr(2, 0x0001, 2);
    ASSERT_EQ(f.sink.lines.size(), 2u);
    EXPECT_FALSE(f.sink.lines[1].level);
    f.wr(2, 0x0000, 2);
    ASSERT_EQ(f.sink.lines.size(), 3u);
    EXPECT_TRUE(f.sink.lines[2].level);
}

// signal_vector prefers MSI-X when a function has both.
class BothDevice final : public PciFunction {
public:
    BothDevice()
    {
        set_ids({0x1af4, 0x1041, 0x020000, 1, 0x1af4, 1});
        EXPECT_TRUE(set_bar(0, BarType::mem32, 0x1000, false));
        EXPECT_TRUE(add_msix(2, 0, 0, 0, 0x800));
        EXPECT_TRUE(add_msi(1, true));
    }
    u64 bar_read(u32, u64, u8) override { return 0; }
    void bar_write(u32, u64, u8, u64) override {}
};

TEST(Pci, SignalVectorUsesWhicheverIsEnabled)
{
    Sink sink;
    PciBus bus{ECAM, GSI, {on_msi, on_intx, &sink}};
    BothDevice dev;
    ASSERT_TRUE(bus.plug(1, dev));
    const u32 msix = bus.config_read(1, 0, 0x34, 1);
    const u32 msi = bus.config_read(1, 0, msix + 1, 1);
    ASSERT_EQ(bus.config_read(1, 0, msix, 1), 0x11u);
    ASSERT_EQ(bus.config_read(1, 0, msi, 1), 0x05u);
    bus.config_write(1, 0, msi + 4, 4, 0xfee00000);
    bus.config_write(1, 0, msi + 0x0c, 4, 0x33);
    bus.config_write(1, 0, msi + 2, 2, 1);
    EXPECT_TRUE(dev.signal_vector(0));
    ASSERT_EQ(sink.msis.size(), 1u);
    EXPECT_EQ(sink.msis[0].data, 0x33u);
    bus.config_write(1, 0, msi + 2, 2, 0);
    bus.config_write(1, 0, 0x10, 4, 0xc0000000);
    bus.config_write(1, 0, 0x04, 2, 2);
    u64 v = 0x44;
    bus.mmio(0, 0xc0000008, 4, true, v);
    v = 0;
    bus.mmio(0, 0xc000000c, 4, true, v);
    bus.config_write(1, 0, msix + 2, 2, 0x8000);
    EXPECT_TRUE(dev.signal_vector(0));
    ASSERT_EQ(sink.msis.size(), 2u);
    EXPECT_EQ(sink.msis[1].data, 0x44u);
    bus.config_write(1, 0, msix + 2, 2, 0);
    EXPECT_FALSE(dev.signal_vector(0));
}

TEST(Pci, BarDispatch)
{
    Fixture f;
    EXPECT_FALSE(f.bus.covers(0xc0000000));               // not programmed, decode off
    f.wr(1, 0x10, 0xc0000000);
    EXPECT_FALSE(f.bus.covers(0xc0000000));               // decode still off
    f.map();
    // Outside the MSI-X structures: the device's registers.
    EXPECT_EQ(f.mmio_rd(0xc0000c00, 4), 0x1234u);
    f.mmio_wr(0x800000010, 8, 0xabcdef);
    f.mmio_wr(0x8000ffff8, 2, 7);
    ASSERT_EQ(f.dev.reads.size(), 1u);
    EXPECT_EQ(f.dev.reads[0].bar, 0u);
    EXPECT_EQ(f.dev.reads[0].offset, 0xc00u);
    ASSERT_EQ(f.dev.writes.size(), 2u);
    EXPECT_EQ(f.dev.writes[0].bar, 2u);
    EXPECT_EQ(f.dev.writes[0].offset, 0x10u);
    EXPECT_EQ(f.dev.writes[0].value, 0xabcdefu);
    EXPECT_EQ(f.dev.writes[1].offset, 0xffff8u);
    EXPECT_FALSE(f.bus.covers(0x800100000));
    EXPECT_FALSE(f.bus.covers(0xc0001000));
    // Relocation moves the decode; memory decode off removes it.
    f.wr(1, 0x10, 0xd0000000);
    EXPECT_FALSE(f.bus.covers(0xc0000000));
    EXPECT_TRUE(f.bus.covers(0xd0000fff));
    f.wr(1, 0x04, 0, 2);
    EXPECT_FALSE(f.bus.covers(0xd0000000));
    u64 v = 0;
    f.bus.mmio(0, 0xd0000000, 4, false, v);               // routed before decode went off
    EXPECT_EQ(v, ~0ull);
}

TEST(Pci, Intx)
{
    Fixture f;
    EXPECT_EQ(PciBus::intx_gsi(GSI, 1, 1), GSI + 1);
    EXPECT_EQ(PciBus::intx_gsi(GSI, 3, 2), GSI + 0);
    f.dev.set_intx(true);
    ASSERT_EQ(f.sink.lines.size(), 1u);
    EXPECT_EQ(f.sink.lines[0].gsi, GSI + 1);              // device 1, INTA
    EXPECT_TRUE(f.sink.lines[0].level);
    EXPECT_TRUE(f.rd(1, 0x04) >> 16 & 0x08);              // interrupt status
    f.wr(1, 0x04, 0x400, 2);                              // INTx disable: the line drops, status stays
    ASSERT_EQ(f.sink.lines.size(), 2u);
    EXPECT_FALSE(f.sink.lines[1].level);
    EXPECT_TRUE(f.rd(1, 0x04) >> 16 & 0x08);
    f.wr(1, 0x04, 0, 2);
    EXPECT_EQ(f.sink.lines.size(), 3u);
    f.dev.set_intx(false);
    EXPECT_EQ(f.sink.lines.size(), 4u);
    EXPECT_FALSE(f.rd(1, 0x04) >> 16 & 0x08);
}

TEST(Pci, PlugRules)
{
    Sink s;
    PciBus bus{ECAM, GSI, {on_msi, on_intx, &s}};
    TestDevice a, b;
    EXPECT_FALSE(bus.plug(0, a));                         // the host bridge's
    EXPECT_FALSE(bus.plug(PciBus::MAX_DEVICES, a));
    EXPECT_TRUE(bus.plug(2, a));
    EXPECT_FALSE(bus.plug(2, b));
    EXPECT_FALSE(bus.plug(3, a));                         // already on a bus
    EXPECT_TRUE(bus.plug(3, b));
}

TEST(Pci, ConfigMechanism1)
{
    Fixture f;
    u32 v = 0;
    // CONFIG_ADDRESS: dword only, reserved bits read 0 (Linux's type 1 probe reads back 0x80000000).
    u32 a = 0x80000000;
    EXPECT_TRUE(f.bus.io(0xcf8, 4, false, a));
    EXPECT_TRUE(f.bus.io(0xcf8, 4, true, v));
    EXPECT_EQ(v, 0x80000000u);
    a = 0xffffffff;
    f.bus.io(0xcf8, 4, false, a);
    f.bus.io(0xcf8, 4, true, v);
    EXPECT_EQ(v, 0x80fffffcu);
    f.bus.io(0xcfb, 1, true, v);
    EXPECT_EQ(v, 0xffu);
    a = 1;
    f.bus.io(0xcfb, 1, false, a);                         // not CONFIG_ADDRESS
    f.bus.io(0xcf8, 4, true, v);
    EXPECT_EQ(v, 0x80fffffcu);
    EXPECT_FALSE(f.bus.io(0xcf7, 1, true, v));
    EXPECT_FALSE(f.bus.io(0xd00, 1, true, v));

    // Every width at every offset of CONFIG_DATA.
    EXPECT_EQ(f.cf8_rd(1, 0, 0, 4), 0x10411af4u);
    EXPECT_EQ(f.cf8_rd(1, 0, 0, 2), 0x1af4u);
    EXPECT_EQ(f.cf8_rd(1, 0, 2, 2), 0x1041u);
    EXPECT_EQ(f.cf8_rd(1, 0, 1, 1), 0x1au);
    EXPECT_EQ(f.cf8_rd(1, 0, 3, 1), 0x10u);
    EXPECT_EQ(f.cf8_rd(1, 0, 1, 2), 0x411au);
    EXPECT_EQ(f.cf8_rd(1, 0, 2, 4), 0xffff1041u);          // only 0xCFE-0xCFF are data
    EXPECT_EQ(f.cf8_rd(1, 8, 1, 2), 0x0000u);              // class bytes
    EXPECT_EQ(f.cf8_rd(1, 8, 3, 1), 0x02u);
    EXPECT_EQ(f.cf8_rd(4, 0, 0, 4), ~0u);
    EXPECT_EQ(f.cf8_rd(4, 0, 2, 2), 0xffffu);
    // Writes through it, at an offset.
    a = 0x80000000u | 1 << 11 | 0x10;
    f.bus.io(0xcf8, 4, false, a);
    u32 w = 0xc0;
    f.bus.io(0xcff, 1, false, w);
    EXPECT_EQ(f.dev.bar_base(0), 0xc0000000u);
    // Enable bit clear, or another bus: all ones, writes dropped.
    a = 1 << 11;
    f.bus.io(0xcf8, 4, false, a);
    f.bus.io(0xcfc, 4, true, v);
    EXPECT_EQ(v, ~0u);
    a = 0x80010000u | 1 << 11;
    f.bus.io(0xcf8, 4, false, a);
    f.bus.io(0xcfc, 2, true, v);
    EXPECT_EQ(v, 0xffffu);
}

TEST(Pci, Ecam)
{
    Fixture f;
    EXPECT_TRUE(f.bus.covers(ECAM));
    EXPECT_TRUE(f.bus.covers(ECAM + PciBus::ECAM_BUS_BYTES - 1));
    EXPECT_FALSE(f.bus.covers(ECAM + PciBus::ECAM_BUS_BYTES));
    EXPECT_FALSE(f.bus.covers(ECAM - 1));
    const u64 d1 = ECAM + (1 << 15);
    EXPECT_EQ(f.mmio_rd(d1, 4), 0x10411af4u);
    EXPECT_EQ(f.mmio_rd(d1 + 2, 2), 0x1041u);
    EXPECT_EQ(f.mmio_rd(d1 + 0xb, 1), 0x02u);
    EXPECT_EQ(f.mmio_rd(d1, 8), 0x0010000010411af4ull);   // split in two dwords: status says capabilities
    EXPECT_EQ(f.mmio_rd(d1 + 0x100, 4), 0u);              // extended space: no capabilities
    EXPECT_EQ(f.mmio_rd(d1 + 0xffc, 4), 0u);
    EXPECT_EQ(f.mmio_rd(d1 + (1 << 12), 4), ~0u);         // function 1
    EXPECT_EQ(f.mmio_rd(ECAM + (9 << 15), 2), 0xffffu);
    EXPECT_EQ(f.mmio_rd(ECAM, 4), u32(PciBus::HOST_DEVICE) << 16 | PciBus::HOST_VENDOR);
    f.mmio_wr(d1 + 0x18, 8, 0x0000000900000000ull);       // a qword into BAR2/3
    EXPECT_EQ(f.dev.bar_base(2), 0x900000000ull);
    f.mmio_wr(d1 + 0x100, 4, ~0ull);
    EXPECT_EQ(f.mmio_rd(d1 + 0x100, 4), 0u);
}

// Several vCPUs and a device back end at once: the bus lock keeps every
// access whole (ASan/UBSan watch; a deadlock would hang the test).
TEST(Pci, ConcurrentAccesses)
{
    Fixture f;
    f.map();
    const u32 cap = msix_cap(f);
    f.wr(1, cap + 2, 0x8000, 2);
    for (u32 n = 0; n < 4; n++) program(f, n, 0x40 + n, false);
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; t++)
        ts.emplace_back([&f, t] {
            std::mt19937 rng(t);
            for (int i = 0; i < 20000; i++) {
                u64 v = rng();
                switch (t) {
                // Config traffic that leaves the BARs and MSI-X where they are (a moved BAR
                // would send thread 2's writes to the test device, which has no lock).
                case 0: f.bus.mmio(0, ECAM + (1 << 15) + (v & 0xfc), 4, false, v); break;
                case 1: {
                    u32 a = 0x80000800u | (v & 1 ? 0x3c : 0x00), d = u32(v >> 8);
                    Guard lk(f.port_lock);      // the platform's io_lock
                    f.bus.io(0xcf8, 4, false, a);
                    f.bus.io(0xcfc, 4, false, d);
                    break;
                }
                case 2:
                    if (f.bus.covers(0xc000000c)) f.bus.mmio(0, 0xc000000c + 16 * (v & 3), 4, true, v);
                    break;
                default: f.dev.signal_msix(u16(v & 3)); break;
                }
            }
        });
    for (auto &t : ts) t.join();
    EXPECT_EQ(f.rd(1, 0), 0x10411af4u);
}

// A hostile guest: random config, ECAM, port and BAR accesses never break the
// invariants (IDs, BAR size bits, the capability list).
TEST(Pci, RandomAccesses)
{
    Fixture f;
    std::mt19937_64 rng(1234);
    const u8 sizes[] = {1, 2, 4, 8};
    for (int i = 0; i < 200000; i++) {
        const u64 r = rng();
        u64 v = rng();
        const u8 size = sizes[r & 3];
        const bool write = r >> 2 & 1;
        switch (r >> 3 & 3) {
        case 0: {
            const u64 gpa = ECAM + (r >> 8) % (2 * PciBus::ECAM_BUS_BYTES / 2);
            f.bus.mmio(0, gpa, size, write, v);
            break;
        }
        case 1: {
            u32 pv = u32(v);
            f.bus.io(u16(0xcf8 + (r >> 8) % 8), u8(size > 4 ? 4 : size), !write, pv);
            break;
        }
        case 2: {
            const u64 gpa = (r >> 8 & 1 ? 0xc0000000 : 0x800000000) + (r >> 9) % 0x100000;
            if (f.bus.covers(gpa)) f.bus.mmio(0, gpa, size, write, v);
            break;
        }
        default:
            f.dev.signal_msix(u16(r >> 8 & 7));
            break;
        }
        if (i % 1000 == 0) f.map();
    }
    EXPECT_EQ(f.rd(1, 0), 0x10411af4u);
    EXPECT_EQ(f.rd(1, 0x10) & 0xfff, 0u);
    EXPECT_EQ(f.rd(1, 0x18) & 0xfffff, 0xcu);
    EXPECT_EQ(f.rd(1, 0x34, 1), 0x40u);
}

} // namespace

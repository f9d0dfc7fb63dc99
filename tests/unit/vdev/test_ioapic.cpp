// The guest I/O APIC model (kernel/vdev/ioapic.cpp): register access, edge and
// level semantics with remote IRR and EOI, masking, the delivery sink, and a
// randomised hostile-guest loop.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "kernel/vdev/ioapic.hpp"

namespace {

struct Msg {
    u32 dest;
    bool logical;
    u8 vector, mode;
    bool level;
    bool operator==(const Msg &o) const
    {
        return dest == o.dest && logical == o.logical && vector == o.vector && mode == o.mode && level == o.level;
    }
};

void sink(void *ctx, u32 dest, bool logical, u8 vector, u8 mode, bool level)
{
    static_cast<std::vector<Msg> *>(ctx)->push_back({dest, logical, vector, mode, level});
}

constexpr u32 LEVEL = 1u << 15, MASKED = 1u << 16, LOGICAL = 1u << 11, REMOTE_IRR = 1u << 14;

struct Io {
    std::vector<Msg> msgs;
    IoapicModel io{sink, &msgs};

    u32 rd(u32 idx)
    {
        io.mmio_write(0x00, idx);
        return io.mmio_read(0x10);
    }
    void wr(u32 idx, u32 v)
    {
        io.mmio_write(0x00, idx);
        io.mmio_write(0x10, v);
    }
    void route(u32 pin, u32 lo, u8 dest = 0)
    {
        wr(0x11 + 2 * pin, u32(dest) << 24);
        wr(0x10 + 2 * pin, lo);
    }
    std::vector<Msg> take() { return std::exchange(msgs, {}); }
};

constinit IoapicModel g_static_ioapics[2] = {};

TEST(Ioapic, Registers)
{
    Io t;
    EXPECT_EQ(t.rd(1), 0x00170020u);
    EXPECT_EQ(t.rd(0), 0u);
    t.wr(0, 0xffffffff);
    EXPECT_EQ(t.rd(0), 0x0f000000u);            // 4-bit ID
    EXPECT_EQ(t.rd(2), 0x0f000000u);            // arbitration ID follows
    t.wr(1, 0);
    t.wr(2, 0);
    EXPECT_EQ(t.rd(1), 0x00170020u);            // read-only
    t.io.mmio_write(0x00, 0x12345678);
    EXPECT_EQ(t.io.mmio_read(0x00), 0x78u);     // IOREGSEL is 8 bits
    for (u32 idx : {3u, 0xfu, 0x40u, 0x41u, 0xffu}) {
        t.wr(idx, ~0u);
        EXPECT_EQ(t.rd(idx), 0u) << idx;
    }
    for (u32 pin = 0; pin < IoapicModel::PINS; pin++) {
        EXPECT_EQ(t.rd(0x10 + 2 * pin), MASKED) << pin;
        EXPECT_EQ(t.rd(0x11 + 2 * pin), 0u) << pin;
    }
    EXPECT_EQ(t.io.mmio_read(0x40), 0u);        // EOI register: write-only
    EXPECT_EQ(t.io.mmio_read(0x04), 0u);
    EXPECT_EQ(t.io.mmio_read(0x20), 0u);
    EXPECT_TRUE(t.take().empty());
    EXPECT_EQ(g_static_ioapics[0].entry(0), MASKED);
    g_static_ioapics[0].set_irq(0, true);       // no sink: nothing happens
}

TEST(Ioapic, RedirectionReadBack)
{
    Io t;
    t.wr(0x10 + 2 * 5, 0xffffffff);
    EXPECT_EQ(t.rd(0x10 + 2 * 5), 0x1afffu);    // delivery status, remote IRR, bits 31:17 read 0
    t.wr(0x11 + 2 * 5, 0xffffffff);
    EXPECT_EQ(t.rd(0x11 + 2 * 5), 0xff000000u); // bits 55:32 reserved
    EXPECT_EQ(t.io.entry(5), 0xff0000000001afffull);
    EXPECT_EQ(t.rd(0x10 + 2 * 4), MASKED);      // neighbours untouched
    EXPECT_EQ(t.rd(0x10 + 2 * 6), MASKED);
    t.wr(0x10 + 2 * 23, 0x21);
    EXPECT_EQ(t.io.entry(23), 0x21u);
    t.io.reset();
    EXPECT_EQ(t.io.entry(5), MASKED);
    EXPECT_EQ(t.io.entry(23), MASKED);
}

TEST(Ioapic, EdgeTriggered)
{
    Io t;
    t.route(2, LOGICAL | (1u << 8) | 0x31, 0xab);
    t.io.set_irq(2, true);
    EXPECT_EQ(t.take(), (std::vector<Msg>{{0xab, true, 0x31, 1, false}}));
    t.io.set_irq(2, true);                      // no new edge
    EXPECT_TRUE(t.take().empty());
    t.io.set_irq(2, false);
    EXPECT_TRUE(t.take().empty());
    t.io.set_irq(2, true);
    EXPECT_EQ(t.take().size(), 1u);
    EXPECT_EQ(t.rd(0x10 + 4) & REMOTE_IRR, 0u); // edge: no remote IRR
    t.io.eoi(0x31);
    EXPECT_TRUE(t.take().empty());

    t.io.set_irq(2, false);                     // an edge while masked is lost
    t.route(2, MASKED | 0x31, 0xab);
    t.io.set_irq(2, true);
    t.route(2, 0x31, 0xab);
    EXPECT_TRUE(t.take().empty());
    t.io.set_irq(99, true);                     // no such pin
    t.io.set_irq(~0u, true);
    EXPECT_TRUE(t.take().empty());
}

TEST(Ioapic, LevelTriggeredRemoteIrrAndEoi)
{
    Io t;
    t.route(9, LEVEL | 0x49, 3);
    t.io.set_irq(9, true);
    EXPECT_EQ(t.take(), (std::vector<Msg>{{3, false, 0x49, 0, true}}));
    EXPECT_TRUE(t.rd(0x10 + 18) & REMOTE_IRR);
    t.io.set_irq(9, true);                      // still asserted, remote IRR set: nothing
    EXPECT_TRUE(t.take().empty());
    t.io.eoi(0x48);                             // another vector
    EXPECT_TRUE(t.take().empty());
    t.io.eoi(0x49);                             // still asserted: again
    EXPECT_EQ(t.take().size(), 1u);
    EXPECT_TRUE(t.rd(0x10 + 18) & REMOTE_IRR);
    t.io.set_irq(9, false);
    t.io.mmio_write(0x40, 0x49);                // EOI register
    EXPECT_TRUE(t.take().empty());
    EXPECT_FALSE(t.rd(0x10 + 18) & REMOTE_IRR);
    t.wr(0x10 + 18, 0xffffffff & ~REMOTE_IRR);  // guest cannot touch remote IRR / delivery status
    EXPECT_FALSE(t.rd(0x10 + 18) & REMOTE_IRR);
}

TEST(Ioapic, SharedVectorEoi)
{
    Io t;
    t.route(10, LEVEL | 0x60);
    t.route(11, LEVEL | 0x60);
    t.io.set_irq(10, true);
    t.io.set_irq(11, true);
    EXPECT_EQ(t.take().size(), 2u);
    t.io.set_irq(10, false);
    t.io.eoi(0x60);                             // both cleared, 11 delivered again
    EXPECT_EQ(t.take().size(), 1u);
    EXPECT_FALSE(t.io.entry(10) & REMOTE_IRR);
    EXPECT_TRUE(t.io.entry(11) & REMOTE_IRR);
}

TEST(Ioapic, Masking)
{
    Io t;
    t.route(4, MASKED | LEVEL | 0x34, 1);
    t.io.set_irq(4, true);
    EXPECT_TRUE(t.take().empty());
    EXPECT_FALSE(t.io.entry(4) & REMOTE_IRR);
    t.route(4, LEVEL | 0x34, 1);                // unmasking an asserted level pin delivers
    EXPECT_EQ(t.take(), (std::vector<Msg>{{1, false, 0x34, 0, true}}));
    t.route(4, MASKED | LEVEL | 0x34, 1);       // masked with remote IRR set
    t.io.eoi(0x34);
    EXPECT_TRUE(t.take().empty());
    EXPECT_FALSE(t.io.entry(4) & REMOTE_IRR);
    t.io.set_irq(4, false);
    t.route(4, LEVEL | 0x34, 1);                // deasserted: nothing
    EXPECT_TRUE(t.take().empty());
    t.route(4, 0x34, 1);                        // edge, line asserted earlier: unmasking does not deliver
    EXPECT_TRUE(t.take().empty());
}

TEST(Ioapic, SwitchToEdgeClearsRemoteIrr)
{
    Io t;
    t.route(7, LEVEL | 0x57);
    t.io.set_irq(7, true);
    EXPECT_EQ(t.take().size(), 1u);
    t.route(7, 0x57);
    EXPECT_FALSE(t.io.entry(7) & REMOTE_IRR);
    EXPECT_TRUE(t.take().empty());
}

TEST(Ioapic, NonFixedModesAreEdge)
{
    Io t;
    t.route(1, LEVEL | (4u << 8), 0xff);        // NMI programmed level: edge semantics
    t.io.set_irq(1, true);
    EXPECT_EQ(t.take(), (std::vector<Msg>{{0xff, false, 0, 4, false}}));
    EXPECT_FALSE(t.io.entry(1) & REMOTE_IRR);
    t.io.set_irq(1, true);
    EXPECT_TRUE(t.take().empty());
    t.route(0, (7u << 8));                      // ExtINT
    t.io.set_irq(0, true);
    EXPECT_EQ(t.take(), (std::vector<Msg>{{0, false, 0, 7, false}}));
}

TEST(Ioapic, SinkSeesExactFields)
{
    Io t;
    for (u32 pin = 0; pin < IoapicModel::PINS; pin++) {
        const u8 vec = u8(0x20 + pin), dest = u8(pin * 11), mode = pin % 2;
        const bool logical = pin & 2;
        t.route(pin, (logical ? LOGICAL : 0) | (u32(mode) << 8) | vec | (1u << 13), dest);
        t.io.set_irq(pin, true);
        EXPECT_EQ(t.take(), (std::vector<Msg>{{dest, logical, vec, mode, false}})) << pin;
        EXPECT_TRUE(t.io.asserted(pin));
    }
}

TEST(Ioapic, RandomisedHostileGuest)
{
    std::mt19937_64 rng(0x10a71c);
    Io t;
    for (int i = 0; i < 200000; i++) {
        const u64 r = rng();
        switch (r % 8) {
        case 0: case 1: t.io.mmio_write(r & 1 ? u32(rng() % 0x50) : 0x00, u32(rng())); break;
        case 2: t.io.mmio_write(0x10, u32(rng())); break;
        case 3: (void)t.io.mmio_read(u32(rng() % 0x100)); break;
        case 4: case 5: t.io.set_irq(u32(rng() % 30), rng() & 1); break;
        case 6: t.io.eoi(u8(rng())); break;
        case 7: t.io.mmio_write(0x00, u32(rng() % 0x40)); break;
        }
        if (t.msgs.size() > 1000) t.msgs.clear();
        ASSERT_EQ(t.io.mmio_read(0x00) >> 8, 0u);
    }
    // Every entry still has its reserved bits clear and level-only remote IRR.
    for (u32 pin = 0; pin < IoapicModel::PINS; pin++) {
        const u64 e = t.io.entry(pin);
        EXPECT_EQ(e & 0x00fffffffffe1000ull, 0u) << pin;
        if (e & REMOTE_IRR) EXPECT_TRUE((e & LEVEL) && ((e >> 8) & 7) <= 1) << pin;
    }
    EXPECT_EQ(t.rd(1), 0x00170020u);
}

} // namespace

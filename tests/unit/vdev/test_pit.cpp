#include <gtest/gtest.h>

#include "kernel/vdev/pit.hpp"

namespace {

struct Clock {
    u64 t = 1000;
    static u64 read(void *c) { return static_cast<Clock *>(c)->t; }
};

constexpr u64 TSC_HZ = 2'000'000'000;   // 2 GHz guest TSC

u32 in(PitModel &p, u16 port)
{
    u32 v = 0;
    EXPECT_TRUE(p.io(port, 1, true, v));
    return v;
}
void out(PitModel &p, u16 port, u32 v) { EXPECT_TRUE(p.io(port, 1, false, v)); }

TEST(Pit, Channel2Mode0AsLinuxCalibratesIt)
{
    Clock clk;
    PitModel pit(TSC_HZ, Clock::read, &clk);
    out(pit, 0x61, (in(pit, 0x61) & ~0x02u) | 0x01);   // gate high, speaker off
    out(pit, 0x43, 0xb0);                               // channel 2, lo/hi, mode 0
    out(pit, 0x42, 0xff);
    out(pit, 0x42, 0xff);
    EXPECT_FALSE(in(pit, 0x61) & 0x20);                 // OUT2 low while counting
    // After half the count (0x8000 ticks of 1.193182 MHz), the MSB reads about 0x7f.
    clk.t += 0x8000ull * TSC_HZ / PitModel::PIT_HZ;
    in(pit, 0x42);                                      // low byte
    const u32 msb = in(pit, 0x42);
    EXPECT_NEAR(double(msb), 0x7f, 1.0);
    clk.t += 0x8100ull * TSC_HZ / PitModel::PIT_HZ;
    EXPECT_TRUE(in(pit, 0x61) & 0x20);                  // terminal count: OUT2 high
}

TEST(Pit, LatchFreezesTheCount)
{
    Clock clk;
    PitModel pit(TSC_HZ, Clock::read, &clk);
    out(pit, 0x43, 0x34);                               // channel 0, lo/hi, mode 2
    out(pit, 0x40, 0x9c);
    out(pit, 0x40, 0x2e);                               // 11932: 10 ms
    clk.t += TSC_HZ / 1000;                             // 1 ms: about 1193 ticks
    out(pit, 0x43, 0x00);                               // latch channel 0
    clk.t += TSC_HZ / 1000;
    const u32 lo = in(pit, 0x40), hi = in(pit, 0x40);
    EXPECT_NEAR(double(lo | hi << 8), 11932.0 - 1193.0, 2.0);
}

TEST(Pit, UnclaimedPortsAndNoiseDoNotCrash)
{
    Clock clk;
    PitModel pit(0, Clock::read, &clk);                 // a zero rate is clamped
    u32 v = 0;
    EXPECT_FALSE(pit.io(0x44, 1, true, v));
    for (u32 i = 0; i < 4096; i++) {
        u32 x = i * 2654435761u;
        u16 port = u16(0x40 + (x & 3));
        pit.io(port, 1, (x >> 8) & 1, x);
        clk.t += x & 0xffff;
    }
}

} // namespace

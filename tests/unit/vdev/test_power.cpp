#include <gtest/gtest.h>

#include "kernel/vdev/power.hpp"

namespace {

struct Clock {
    u64 t = 0;
    static u64 read(void *c) { return static_cast<Clock *>(c)->t; }
};

constexpr u64 TSC_HZ = 2'000'000'000;

u32 in(PowerModel &p, u16 port, u8 size = 1)
{
    u32 v = 0xdeadbeef;
    EXPECT_TRUE(p.io(port, size, true, v));
    return v;
}

TEST(Power, PmTimerCountsAt3579545HzFromTheGuestTsc)
{
    GuestPlatform plat;
    Clock clk;
    PowerModel pm(plat, TSC_HZ, Clock::read, &clk);
    EXPECT_EQ(in(pm, PowerModel::PM_TMR, 4), 0u);
    clk.t = TSC_HZ / 1000;   // 1 ms
    EXPECT_EQ(in(pm, PowerModel::PM_TMR, 4), 3579u);
    clk.t = TSC_HZ;          // 1 s
    EXPECT_EQ(in(pm, PowerModel::PM_TMR, 4), u32(PowerModel::PM_TMR_HZ));
    EXPECT_EQ(in(pm, PowerModel::PM_TMR + 1, 1) & 0xff, (PowerModel::PM_TMR_HZ >> 8) & 0xff);
}

TEST(Power, PmTimerWrapsAt24Bits)
{
    GuestPlatform plat;
    Clock clk;
    PowerModel pm(plat, TSC_HZ, Clock::read, &clk);
    // 2^24 ticks take 4.687 s; at 5 s the count has wrapped once.
    clk.t = 5 * TSC_HZ;
    EXPECT_EQ(in(pm, PowerModel::PM_TMR, 4), u32(5 * PowerModel::PM_TMR_HZ - (1u << 24)));
    // Hours of guest time (and a large TSC) do not overflow the conversion.
    clk.t = 36000 * TSC_HZ + TSC_HZ / 2;
    const u64 ticks = 36000 * PowerModel::PM_TMR_HZ + PowerModel::PM_TMR_HZ / 2;
    EXPECT_EQ(in(pm, PowerModel::PM_TMR, 4), u32(ticks & 0xffffff));
    u32 v = 123;
    EXPECT_TRUE(pm.io(PowerModel::PM_TMR, 4, false, v));   // writes are ignored
}

TEST(Power, SleepS5EndsAndResetReboots)
{
    GuestPlatform plat;
    Clock clk;
    PowerModel pm(plat, TSC_HZ, Clock::read, &clk);
    EXPECT_EQ(in(pm, PowerModel::SLEEP_STS), 0x80u);
    u32 v = PowerModel::S5_TYP << 2 | 0x20;
    EXPECT_TRUE(pm.io(PowerModel::SLEEP_CTL, 1, false, v));
    EXPECT_TRUE(plat.exit_requested);
    v = PowerModel::RESET_VALUE;
    EXPECT_TRUE(pm.io(PowerModel::RESET, 1, false, v));
    EXPECT_TRUE(plat.reset_requested);
    EXPECT_FALSE(pm.io(0x603, 1, true, v));
}

} // namespace

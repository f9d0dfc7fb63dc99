// The guest local APIC model (kernel/vdev/lapic.cpp): registers, priorities,
// the timer in every mode and divider, errors, IPIs, x2APIC and APIC_BASE
// rules, and a randomised hostile-guest loop.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "kernel/vdev/lapic.hpp"

namespace {

using Ipi = LapicModel::Ipi;

constexpr u32
    ID = 0x20, VER = 0x30, TPR = 0x80, APR = 0x90, PPR = 0xa0, EOI = 0xb0, LDR = 0xd0, DFR = 0xe0,
    SVR = 0xf0, ISR = 0x100, TMR = 0x180, IRR = 0x200, ESR = 0x280, CMCI = 0x2f0, ICR = 0x300,
    ICR2 = 0x310, LVTT = 0x320, THERM = 0x330, PERF = 0x340, LINT0 = 0x350, LINT1 = 0x360,
    LVTERR = 0x370, TMICT = 0x380, TMCCT = 0x390, TDCR = 0x3e0;
constexpr u32 MASKED = 1u << 16, PERIODIC = 1u << 17, DEADLINE = 2u << 17;
constexpr u64 BASE_DEFAULT = 0xfee00000, EN = 1u << 11, EXTD = 1u << 10, BSP = 1u << 8;
constexpr u64 TSC_HZ = 2'400'000'000, BUS_HZ = 1'000'000'000;   // 2.4 TSC ticks per bus tick: not integral

// TDCR encoding -> divider
constexpr struct { u32 tdcr, div; } DIVIDERS[] = {
    {0x0, 2}, {0x1, 4}, {0x2, 8}, {0x3, 16}, {0x8, 32}, {0x9, 64}, {0xa, 128}, {0xb, 1},
};

using u128 = unsigned __int128;

// Reference: TSC ticks (ceil) for n timer ticks at divider div.
u64 tsc_for(u64 n, u32 div, u64 tsc = TSC_HZ, u64 bus = BUS_HZ)
{
    return u64((u128(n) * div * tsc + bus - 1) / bus);
}

struct Apic {
    LapicModel l;
    explicit Apic(u32 id = 0, bool bsp = true, u64 tsc = TSC_HZ, u64 bus = BUS_HZ) { l.reset(id, bsp, tsc, bus); }
    u32 rd(u32 off, u64 now = 0) { return l.mmio_read(off, now); }
    void wr(u32 off, u32 v, u64 now = 0) { l.mmio_write(off, v, now); }
    void enable(u8 spurious = 0xff) { wr(SVR, 0x100 | spurious); }
    u32 esr()
    {
        wr(ESR, 0);
        return rd(ESR);
    }
    bool irr(u8 v) { return rd(IRR + (v >> 5) * 0x10) >> (v & 31) & 1; }
    bool isr(u8 v) { return rd(ISR + (v >> 5) * 0x10) >> (v & 31) & 1; }
    bool tmr(u8 v) { return rd(TMR + (v >> 5) * 0x10) >> (v & 31) & 1; }
    // Inject what is pending, as the hypervisor would.
    int take(u64 now = 0)
    {
        const int v = l.pending(now);
        if (v >= 0) l.ack(u8(v));
        return v;
    }
    std::vector<Ipi> ipis()
    {
        std::vector<Ipi> out;
        Ipi i;
        while (l.take_ipi(i)) out.push_back(i);
        return out;
    }
    bool to_x2apic() { return l.set_apic_base(BASE_DEFAULT | EN | EXTD | BSP); }
};

// Usable in a static array initialised with {} without a global constructor.
constinit LapicModel g_static_lapics[2] = {};

TEST(Lapic, ResetValues)
{
    Apic a(3, false);
    EXPECT_EQ(a.l.apic_base(), BASE_DEFAULT | EN);
    EXPECT_TRUE(a.l.xapic_mmio_active());
    EXPECT_FALSE(a.l.x2apic_mode());
    EXPECT_EQ(a.l.mmio_base(), BASE_DEFAULT);
    EXPECT_EQ(a.rd(ID), 3u << 24);
    EXPECT_EQ(a.rd(VER), 0x50014u);
    EXPECT_EQ(a.rd(SVR), 0xffu);
    EXPECT_FALSE(a.l.sw_enabled());
    EXPECT_EQ(a.rd(DFR), ~0u);
    for (u32 r : {TPR, APR, PPR, EOI, LDR, ESR, ICR, ICR2, TMICT, TMCCT, TDCR}) EXPECT_EQ(a.rd(r), 0u) << r;
    for (u32 r : {CMCI, LVTT, THERM, PERF, LINT0, LINT1, LVTERR}) EXPECT_EQ(a.rd(r), MASKED) << r;
    for (u32 i = 0; i < 8; i++) EXPECT_EQ(a.rd(ISR + i * 0x10) | a.rd(TMR + i * 0x10) | a.rd(IRR + i * 0x10), 0u);
    EXPECT_EQ(a.l.next_event(), ~0ull);
    EXPECT_EQ(Apic(0, true).l.apic_base(), BASE_DEFAULT | EN | BSP);
    EXPECT_EQ(a.esr(), 0u);                 // none of that was an error
}

TEST(Lapic, ZeroInitialisedIsInert)
{
    LapicModel &l = g_static_lapics[0];
    EXPECT_FALSE(l.enabled());
    EXPECT_FALSE(l.xapic_mmio_active());
    EXPECT_EQ(l.mmio_read(VER, 0), 0u);
    l.mmio_write(SVR, 0x1ff, 0);
    u64 v = 0;
    EXPECT_FALSE(l.msr_read(0x803, v, 0));
    EXPECT_FALSE(l.accept(0x40, false));
    EXPECT_EQ(l.pending(0), -1);
    EXPECT_EQ(l.next_event(), ~0ull);
    EXPECT_FALSE(l.set_apic_base(BASE_DEFAULT | EN));     // not configured by reset()
    EXPECT_FALSE(l.match_dest(0xff, false));
}

TEST(Lapic, RegisterReadBackMasks)
{
    Apic a;
    a.enable();
    a.wr(TPR, 0xffffffff);
    EXPECT_EQ(a.rd(TPR), 0xffu);
    a.wr(LDR, 0xffffffff);
    EXPECT_EQ(a.rd(LDR), 0xff000000u);
    a.wr(DFR, 0);
    EXPECT_EQ(a.rd(DFR), 0x0fffffffu);
    a.wr(SVR, 0xffffffff);
    EXPECT_EQ(a.rd(SVR), 0x3ffu);
    a.wr(LVTT, 0xffffffff);
    EXPECT_EQ(a.rd(LVTT), 0x700ffu);
    a.wr(LINT0, 0xffffffff);
    EXPECT_EQ(a.rd(LINT0), 0x1a7ffu);
    a.wr(LVTERR, 0xffffffff);
    EXPECT_EQ(a.rd(LVTERR), 0x100ffu);
    a.wr(CMCI, 0xffffffff);
    EXPECT_EQ(a.rd(CMCI), 0x107ffu);
    a.wr(TDCR, 0xffffffff);
    EXPECT_EQ(a.rd(TDCR), 0xbu);
    a.wr(ICR2, 0xffffffff);
    EXPECT_EQ(a.rd(ICR2), 0xff000000u);
    a.wr(ID, 0x12345678);
    EXPECT_EQ(a.rd(ID), 0x12000000u);
    for (u32 r : {VER, PPR, ISR, IRR + 0x70, TMR}) {    // read-only
        const u32 before = a.rd(r);
        a.wr(r, 0xdeadbeef);
        EXPECT_EQ(a.rd(r), before) << r;
    }
    a.esr();
    EXPECT_EQ(a.rd(0x24), 0u);                          // unaligned: 0, no error
    a.wr(0x84, 0x55);
    EXPECT_EQ(a.rd(TPR), 0xffu);
    EXPECT_EQ(a.esr(), 0u);
}

TEST(Lapic, TprPprGating)
{
    Apic a;
    a.enable();
    EXPECT_FALSE(a.l.irr_any());
    ASSERT_TRUE(a.l.accept(0x51, false));
    EXPECT_EQ(a.l.pending(0), 0x51);
    a.wr(TPR, 0x50);
    EXPECT_EQ(a.rd(PPR), 0x50u);
    EXPECT_EQ(a.l.pending(0), -1);              // same class as TPR: blocked
    EXPECT_TRUE(a.l.irr_any());                 // but requested: a lower TPR or an EOI lets it in
    a.wr(TPR, 0x4f);
    EXPECT_EQ(a.l.pending(0), 0x51);
    a.l.set_tpr(0x60);                          // CR8 = 6
    EXPECT_EQ(a.rd(TPR), 0x60u);
    EXPECT_EQ(a.l.pending(0), -1);
    a.l.set_tpr(0);
    EXPECT_EQ(a.take(), 0x51);
    EXPECT_FALSE(a.l.irr_any());                // in service now, nothing requested
    EXPECT_EQ(a.rd(PPR), 0x50u);                // ISR class
    a.wr(TPR, 0x34);
    EXPECT_EQ(a.rd(PPR), 0x50u);
    a.wr(TPR, 0x75);
    EXPECT_EQ(a.rd(PPR), 0x75u);                // TPR wins with its low bits
    a.wr(TPR, 0);
    ASSERT_TRUE(a.l.accept(0x5f, false));
    EXPECT_EQ(a.l.pending(0), -1);              // same class as the in-service vector
    ASSERT_TRUE(a.l.accept(0x60, false));
    EXPECT_EQ(a.l.pending(0), 0x60);
}

TEST(Lapic, NestedPrioritiesAndEoiOrder)
{
    Apic a;
    a.enable();
    a.l.accept(0x30, false);
    EXPECT_EQ(a.take(), 0x30);
    a.l.accept(0x50, false);
    a.l.accept(0x40, false);
    a.l.accept(0x20, false);
    EXPECT_EQ(a.take(), 0x50);                  // preempts 0x30
    EXPECT_EQ(a.take(), -1);                    // 0x40 < class 5
    EXPECT_TRUE(a.isr(0x30) && a.isr(0x50));
    a.wr(EOI, 0);
    EXPECT_FALSE(a.isr(0x50));
    EXPECT_TRUE(a.isr(0x30));
    EXPECT_EQ(a.take(), 0x40);                  // above 0x30's class
    a.wr(EOI, 0x1234);                          // value ignored in xAPIC mode
    EXPECT_FALSE(a.isr(0x40));
    EXPECT_EQ(a.take(), -1);                    // 0x20 still below 0x30
    a.wr(EOI, 0);
    EXPECT_EQ(a.take(), 0x20);
    a.wr(EOI, 0);
    EXPECT_EQ(a.rd(PPR), 0u);
    a.wr(EOI, 0);                               // nothing in service: harmless
    EXPECT_EQ(a.l.take_eoi_broadcast(), -1);    // all edge
    // The same vector again while in service: IRR and ISR both hold it.
    a.l.accept(0x70, false);
    EXPECT_EQ(a.take(), 0x70);
    a.l.accept(0x70, false);
    EXPECT_EQ(a.l.pending(0), -1);
    a.wr(EOI, 0);
    EXPECT_EQ(a.take(), 0x70);
    a.l.ack(0x99);                              // not requested: ignored
    EXPECT_FALSE(a.isr(0x99));
}

TEST(Lapic, LevelEoiBroadcast)
{
    Apic a;
    a.enable();
    a.l.accept(0x61, true);
    a.l.accept(0x41, false);
    EXPECT_TRUE(a.tmr(0x61));
    EXPECT_FALSE(a.tmr(0x41));
    EXPECT_EQ(a.take(), 0x61);
    EXPECT_EQ(a.take(), -1);
    EXPECT_FALSE(a.l.has_outgoing());
    a.wr(EOI, 0);
    EXPECT_TRUE(a.l.has_outgoing());            // the level EOI is for the IOAPIC
    EXPECT_EQ(a.l.take_eoi_broadcast(), 0x61);
    EXPECT_EQ(a.l.take_eoi_broadcast(), -1);
    EXPECT_FALSE(a.l.has_outgoing());
    a.wr(ICR2, 1u << 24);
    a.wr(ICR, 0x4050);                          // fixed IPI to APIC 1: queued
    EXPECT_TRUE(a.l.has_outgoing());
    EXPECT_EQ(a.ipis().size(), 1u);
    EXPECT_FALSE(a.l.has_outgoing());
    EXPECT_EQ(a.take(), 0x41);
    a.wr(EOI, 0);
    EXPECT_EQ(a.l.take_eoi_broadcast(), -1);
    EXPECT_FALSE(a.l.has_outgoing());           // an edge EOI leaves nothing for the hypervisor
    a.l.accept(0x61, false);                    // edge this time: TMR cleared
    EXPECT_FALSE(a.tmr(0x61));
}

TEST(Lapic, SoftwareDisabled)
{
    Apic a;
    EXPECT_FALSE(a.l.accept(0x40, false));      // SVR bit 8 clear after reset
    EXPECT_EQ(a.l.pending(0), -1);
    a.wr(LVTT, 0x30);
    EXPECT_EQ(a.rd(LVTT), 0x30u | MASKED);      // cannot unmask
    a.enable();
    EXPECT_EQ(a.rd(LVTT), 0x30u | MASKED);      // enabling does not unmask
    a.wr(LVTT, 0x30);
    a.wr(LINT0, 0x700);
    EXPECT_EQ(a.rd(LVTT), 0x30u);
    a.l.accept(0x40, false);
    a.wr(SVR, 0xff);                            // disable: every LVT masked, IRR held
    for (u32 r : {CMCI, LVTT, THERM, PERF, LINT0, LINT1, LVTERR}) EXPECT_TRUE(a.rd(r) & MASKED) << r;
    EXPECT_EQ(a.rd(LINT0), 0x700u | MASKED);
    EXPECT_TRUE(a.irr(0x40));
    EXPECT_EQ(a.l.pending(0), -1);
    a.enable();
    EXPECT_EQ(a.l.pending(0), 0x40);
}

TEST(Lapic, OneShotEveryDivider)
{
    for (auto [tdcr, div] : DIVIDERS) {
        SCOPED_TRACE(div);
        Apic a;
        a.enable();
        a.wr(TDCR, tdcr);
        a.wr(LVTT, 0x40);
        const u64 t0 = 1'000'003;
        const u32 init = 1000;
        a.wr(TMICT, init, t0);
        EXPECT_EQ(a.rd(TMICT), init);
        EXPECT_EQ(a.rd(TMCCT, t0), init);
        for (u64 dt : {u64(0), u64(1), u64(2), u64(3), u64(100), u64(1234), tsc_for(init, div) / 2}) {
            const u64 ticks = u64(u128(dt) * BUS_HZ / (u128(TSC_HZ) * div));
            EXPECT_EQ(a.rd(TMCCT, t0 + dt), init - ticks) << dt;
        }
        const u64 expiry = t0 + tsc_for(init, div);
        EXPECT_EQ(a.l.next_event(), expiry);
        EXPECT_EQ(a.rd(TMCCT, expiry - 1), 1u);
        a.l.update(expiry - 1);
        EXPECT_FALSE(a.irr(0x40));
        a.l.update(expiry);
        EXPECT_TRUE(a.irr(0x40));
        EXPECT_EQ(a.rd(TMCCT, expiry), 0u);
        EXPECT_EQ(a.l.next_event(), ~0ull);
        EXPECT_EQ(a.take(expiry + 5), 0x40);
        a.wr(EOI, 0);
        a.l.update(expiry * 10);
        EXPECT_FALSE(a.irr(0x40));              // one-shot: once
        EXPECT_EQ(a.rd(TMCCT, expiry * 10), 0u);
    }
}

TEST(Lapic, TimerReadsFireExpiredTimer)
{
    Apic a;
    a.enable();
    a.wr(LVTT, 0x41);
    a.wr(TDCR, 0xb);                            // divide by 1
    a.wr(TMICT, 10, 0);
    EXPECT_EQ(a.l.pending(tsc_for(10, 1)), 0x41);
    a.wr(TMICT, 0, 0);                          // 0 stops the timer
    EXPECT_EQ(a.l.next_event(), ~0ull);
}

TEST(Lapic, PeriodicNoDriftEveryDivider)
{
    for (auto [tdcr, div] : DIVIDERS) {
        SCOPED_TRACE(div);
        Apic a;
        a.enable();
        a.wr(TDCR, tdcr);
        a.wr(LVTT, PERIODIC | 0x50);
        const u64 t0 = 777;
        const u32 init = 12345;                 // 12345 * 2.4 TSC: a fractional period with divide by 1
        a.wr(TMICT, init, t0);
        for (u64 k = 1; k <= 1000; k++) {
            const u64 expect = t0 + tsc_for(k * init, div);
            ASSERT_EQ(a.l.next_event(), expect) << k;
            a.l.update(expect - 1);
            ASSERT_FALSE(a.irr(0x50)) << k;
            ASSERT_EQ(a.rd(TMCCT, expect - 1), 1u) << k;
            // the hypervisor is late by up to half a period: no effect on the next period
            const u64 late = expect + (k * 7919) % (tsc_for(init, div) / 2);
            ASSERT_EQ(a.take(late), 0x50) << k;
            a.wr(EOI, 0, late);
            const u64 ticks = u64(u128(late - t0) * BUS_HZ / (u128(TSC_HZ) * div));
            ASSERT_EQ(a.rd(TMCCT, late), init - ticks % init) << k;
        }
    }
}

TEST(Lapic, PeriodicMissedPeriodsCoalesce)
{
    Apic a;
    a.enable();
    a.wr(TDCR, 0xb);
    a.wr(LVTT, PERIODIC | 0x50);
    a.wr(TMICT, 100, 0);
    const u64 period = tsc_for(100, 1);
    a.l.update(period * 10 + 1);                // ten periods missed: one interrupt
    EXPECT_EQ(a.take(period * 10 + 1), 0x50);
    EXPECT_EQ(a.take(period * 10 + 2), -1);
    EXPECT_EQ(a.l.next_event(), tsc_for(1100, 1));
}

TEST(Lapic, MaskedTimerExpiresWithoutInterrupt)
{
    Apic a;
    a.enable();
    a.wr(TDCR, 0xb);
    a.wr(LVTT, MASKED | PERIODIC | 0x50);
    a.wr(TMICT, 1000, 0);
    for (u64 k = 1; k <= 5; k++) {
        const u64 e = a.l.next_event();
        ASSERT_EQ(e, tsc_for(k * 1000, 1));
        a.l.update(e);
        EXPECT_FALSE(a.irr(0x50));
    }
    a.wr(LVTT, PERIODIC | 0x50);                // unmask: the next period interrupts
    a.l.update(a.l.next_event());
    EXPECT_TRUE(a.irr(0x50));
    // One-shot masked: expires (next_event goes away) without an interrupt.
    a.wr(LVTT, MASKED | 0x51);
    a.wr(TMICT, 10, 0);
    a.l.update(tsc_for(10, 1));
    EXPECT_FALSE(a.irr(0x51));
    EXPECT_EQ(a.l.next_event(), ~0ull);
    EXPECT_EQ(a.rd(TMCCT, tsc_for(10, 1)), 0u);
}

TEST(Lapic, OneShotPeriodicSwitchKeepsCounting)
{
    Apic a;
    a.enable();
    a.wr(TDCR, 0xb);
    a.wr(LVTT, 0x50);
    a.wr(TMICT, 100, 0);
    a.wr(LVTT, PERIODIC | 0x50, 10);
    EXPECT_EQ(a.l.next_event(), tsc_for(100, 1));
    a.l.update(tsc_for(100, 1));
    EXPECT_EQ(a.l.next_event(), tsc_for(200, 1));   // now periodic
    a.wr(LVTT, 0x50, tsc_for(150, 1));              // back to one-shot: ends with this period
    a.l.update(tsc_for(200, 1));
    EXPECT_EQ(a.l.next_event(), ~0ull);
}

TEST(Lapic, DivideChangeWhileCounting)
{
    Apic a;
    a.enable();
    a.wr(TDCR, 0xb);                                // by 1
    a.wr(LVTT, 0x50);
    a.wr(TMICT, 1000, 0);
    const u64 t = tsc_for(400, 1);
    EXPECT_EQ(a.rd(TMCCT, t), 600u);
    a.wr(TDCR, 0x0, t);                             // by 2: 600 ticks left at half the rate
    EXPECT_EQ(a.rd(TMCCT, t), 600u);
    EXPECT_EQ(a.l.next_event(), t + tsc_for(600, 2));
    EXPECT_EQ(a.rd(TMCCT, t + tsc_for(100, 2)), 500u);
}

TEST(Lapic, TscDeadline)
{
    Apic a;
    a.enable();
    a.l.tsc_deadline_write(5000, 0);                // not in deadline mode: ignored
    EXPECT_EQ(a.l.tsc_deadline_read(0), 0u);
    a.wr(LVTT, DEADLINE | 0x60);
    EXPECT_EQ(a.l.next_event(), ~0ull);
    a.l.tsc_deadline_write(5000, 100);
    EXPECT_EQ(a.l.tsc_deadline_read(100), 5000u);
    EXPECT_EQ(a.l.next_event(), 5000u);
    a.wr(TMICT, 1234, 200);                         // ignored in deadline mode
    EXPECT_EQ(a.rd(TMICT, 200), 0u);
    EXPECT_EQ(a.rd(TMCCT, 200), 0u);
    a.l.update(4999);
    EXPECT_FALSE(a.irr(0x60));
    a.l.update(5000);
    EXPECT_TRUE(a.irr(0x60));
    EXPECT_EQ(a.l.tsc_deadline_read(5001), 0u);     // cleared when it fires
    EXPECT_EQ(a.l.next_event(), ~0ull);
    EXPECT_EQ(a.take(5001), 0x60);
    a.wr(EOI, 0);

    a.l.tsc_deadline_write(9000, 6000);             // disarm with 0
    a.l.tsc_deadline_write(0, 6000);
    EXPECT_EQ(a.l.next_event(), ~0ull);
    a.l.update(~0ull);
    EXPECT_FALSE(a.irr(0x60));

    a.l.tsc_deadline_write(100, 6000);              // in the past: fires at once
    EXPECT_TRUE(a.irr(0x60));

    a.l.tsc_deadline_write(9000, 6000);             // mode switch disarms
    a.wr(LVTT, 0x60, 6001);
    EXPECT_EQ(a.l.next_event(), ~0ull);
    a.wr(LVTT, DEADLINE | 0x60, 6002);
    EXPECT_EQ(a.l.tsc_deadline_read(6003), 0u);

    a.wr(LVTT, MASKED | DEADLINE | 0x61, 7000);     // masked: expires silently
    a.l.tsc_deadline_write(7100, 7000);
    a.l.update(8000);
    EXPECT_FALSE(a.irr(0x61));
    EXPECT_EQ(a.l.tsc_deadline_read(8000), 0u);
}

TEST(Lapic, OneShotToDeadlineDisarms)
{
    Apic a;
    a.enable();
    a.wr(LVTT, 0x50);
    a.wr(TMICT, 1000, 0);
    a.wr(LVTT, DEADLINE | 0x50, 1);
    EXPECT_EQ(a.rd(TMICT, 1), 0u);
    EXPECT_EQ(a.l.next_event(), ~0ull);
    a.wr(LVTT, 0x50, 2);                            // back: still disarmed
    EXPECT_EQ(a.l.next_event(), ~0ull);
    a.l.update(~0ull);
    EXPECT_FALSE(a.irr(0x50));
}

TEST(Lapic, TimerExtremes)
{
    // A slow TSC, a fast bus, huge counts, time going backwards, the end of TSC time. The
    // answers are the timer's definition, computed here in 128 bits: the count falls by one
    // every `div` bus clocks (bus Hz), the TSC runs at tsc Hz, both clamped by reset() to
    // [1, 2^48]; an instant at or past the last TSC value is "never" (~0).
    constexpr u64 HZ_MAX = 1ull << 48;
    for (auto [tsc, bus] : {std::pair<u64, u64>{1, 1ull << 48}, {1ull << 48, 1}, {0, 0}, {~0ull, ~0ull}, {3, 7}}) {
        const u64 T = std::clamp<u64>(tsc, 1, HZ_MAX), B = std::clamp<u64>(bus, 1, HZ_MAX);
        for (auto [tdcr, div] : DIVIDERS) {
            SCOPED_TRACE(::testing::Message() << "tsc " << tsc << " bus " << bus << " div " << div);
            // Timer ticks in dt TSC ticks; the first TSC at which n ticks have passed since base.
            auto ticks = [&](u64 dt) { return u128(dt) * B / (u128(T) * div); };
            auto tsc_after = [&](u64 base, u128 n) {
                const u128 at = u128(base) + (n * T * div + B - 1) / B;
                return at >= ~0ull ? ~0ull : u64(at);
            };
            const u64 base = ~0ull - 5;
            const u32 init = ~0u;
            const u128 t5 = ticks(5);                   // ticks between base and the end of time

            // Periodic, the largest count, started 5 TSC ticks before the end of time.
            Apic a(0, true, tsc, bus);
            a.enable();
            a.wr(TDCR, tdcr);
            a.wr(LVTT, PERIODIC | 0x50);
            a.wr(TMICT, init, base);
            EXPECT_EQ(a.rd(TMCCT, 0), init);            // the TSC went back: nothing counted
            EXPECT_EQ(a.rd(TMCCT, base), init);
            EXPECT_FALSE(a.irr(0x50));
            EXPECT_EQ(a.l.next_event(), tsc_after(base, init));
            EXPECT_EQ(a.rd(TMCCT, ~0ull), init - u32(t5 % init));
            a.l.update(~0ull);
            EXPECT_EQ(a.irr(0x50), t5 >= init);
            EXPECT_EQ(a.l.next_event(), tsc_after(base, (t5 / init + 1) * init));
            if (a.irr(0x50)) {
                EXPECT_EQ(a.take(~0ull), 0x50);
                a.wr(EOI, 0, ~0ull);
            }

            // Periodic, count 1, started at 10: at the end of time every period has passed.
            a.wr(TMICT, 1, 10);
            EXPECT_EQ(a.rd(TMCCT, 5), 1u);              // before its start
            EXPECT_EQ(a.l.next_event(), tsc_after(10, 1));
            a.l.update(~0ull);
            EXPECT_TRUE(a.irr(0x50));
            EXPECT_EQ(a.rd(TMCCT, ~0ull), 1u);          // a period of one tick: always reloaded
            EXPECT_EQ(a.l.next_event(), tsc_after(10, ticks(~0ull - 10) + 1));
            EXPECT_EQ(a.l.next_event(), ~0ull);         // ... which is past the end of time
            EXPECT_EQ(a.take(~0ull), 0x50);
            a.wr(EOI, 0, ~0ull);
            a.l.update(~0ull);
            EXPECT_FALSE(a.irr(0x50));                  // missed periods coalesced into one

            // One-shot, the largest count, from the same late start.
            Apic o(0, true, tsc, bus);
            o.enable();
            o.wr(TDCR, tdcr);
            o.wr(LVTT, 0x51);
            o.wr(TMICT, init, base);
            EXPECT_EQ(o.rd(TMCCT, 0), init);
            EXPECT_EQ(o.l.next_event(), tsc_after(base, init));
            EXPECT_EQ(o.rd(TMCCT, ~0ull), t5 >= init ? 0u : init - u32(t5));
            o.l.update(~0ull);
            EXPECT_EQ(o.irr(0x51), t5 >= init);
            EXPECT_EQ(o.l.next_event(), t5 >= init ? ~0ull : tsc_after(base, init));
        }

        // TSC-deadline at the last TSC value: armed, not "never" until it fires.
        Apic d(0, true, tsc, bus);
        d.enable();
        d.wr(LVTT, DEADLINE | 0x52);
        d.l.tsc_deadline_write(~0ull, 0);
        EXPECT_EQ(d.l.tsc_deadline_read(0), ~0ull);
        d.l.update(~0ull - 1);
        EXPECT_FALSE(d.irr(0x52));
        d.l.update(~0ull);
        EXPECT_TRUE(d.irr(0x52));
        EXPECT_EQ(d.l.tsc_deadline_read(~0ull), 0u);
        EXPECT_EQ(d.l.next_event(), ~0ull);
    }
}

TEST(Lapic, IllegalVectorsAndErrorInterrupt)
{
    Apic a;
    a.enable();
    EXPECT_FALSE(a.l.accept(15, false));
    EXPECT_FALSE(a.irr(15));
    EXPECT_EQ(a.rd(ESR), 0u);                       // not visible before the ESR write
    EXPECT_EQ(a.esr(), LapicModel::ESR_RECV_ILLEGAL);
    EXPECT_EQ(a.esr(), 0u);                         // cleared by the next write

    a.wr(LVTERR, 0xe0);
    a.wr(ICR, 0x0005);                              // fixed IPI with vector 5
    EXPECT_TRUE(a.ipis().empty());
    EXPECT_TRUE(a.irr(0xe0));                       // error interrupt
    a.l.accept(3, false);                           // once until the ESR is written
    EXPECT_EQ(a.take(), 0xe0);
    a.wr(EOI, 0);
    EXPECT_FALSE(a.irr(0xe0));
    EXPECT_EQ(a.esr(), LapicModel::ESR_SEND_ILLEGAL | LapicModel::ESR_RECV_ILLEGAL);
    (void)a.rd(0x3f0);                              // unimplemented register
    EXPECT_TRUE(a.irr(0xe0));
    EXPECT_EQ(a.esr(), LapicModel::ESR_ILLEGAL_REG);
    a.wr(0x400, 1);
    EXPECT_EQ(a.esr(), LapicModel::ESR_ILLEGAL_REG);

    // The timer with an illegal vector logs an error instead of an interrupt.
    a.wr(LVTERR, MASKED);
    a.wr(LVTT, 0x07);
    a.wr(TMICT, 1, 0);
    a.l.update(1000);
    EXPECT_FALSE(a.irr(7));
    EXPECT_EQ(a.esr(), LapicModel::ESR_RECV_ILLEGAL);
    // An error LVT with an illegal vector just logs that too.
    a.wr(LVTERR, 0x02);
    a.l.accept(1, false);
    EXPECT_EQ(a.esr(), LapicModel::ESR_RECV_ILLEGAL);
    EXPECT_FALSE(a.irr(2));
}

TEST(Lapic, IcrIpis)
{
    Apic a(0);
    a.enable();
    a.wr(ICR2, 0x03000000);
    a.wr(ICR, 0x00004031);                          // fixed, physical, assert
    a.wr(ICR2, 0x0f000000);
    a.wr(ICR, 0x00000945);                          // lowest priority, logical
    a.wr(ICR2, 0x01000000);
    a.wr(ICR, 0x0000c500);                          // INIT level assert
    a.wr(ICR, 0x00008500);                          // INIT level de-assert
    a.wr(ICR, 0x00004699);                          // SIPI vector 0x99
    a.wr(ICR, 0x000c4400);                          // NMI to all but self
    a.wr(ICR, 0x00044061);                          // fixed to self
    a.wr(ICR, 0x00084062);                          // fixed to all incl. self
    a.wr(ICR, 0x00000300);                          // reserved delivery mode: nothing
    EXPECT_EQ(a.rd(ICR) & (1u << 12), 0u);          // delivery status: idle
    EXPECT_EQ(a.rd(ICR), 0x00000300u);
    auto v = a.ipis();
    ASSERT_EQ(v.size(), 8u);
    auto chk = [](const Ipi &i, u32 dest, u8 vec, u8 dm, u8 sh, bool logical, bool assert, bool deassert) {
        EXPECT_EQ(i.dest, dest);
        EXPECT_EQ(i.vector, vec);
        EXPECT_EQ(i.delivery, dm);
        EXPECT_EQ(i.shorthand, sh);
        EXPECT_EQ(i.logical, logical);
        EXPECT_EQ(i.level_assert, assert);
        EXPECT_EQ(i.init_deassert, deassert);
    };
    chk(v[0], 3, 0x31, 0, 0, false, true, false);
    chk(v[1], 0x0f, 0x45, 1, 0, true, false, false);
    chk(v[2], 1, 0x00, 5, 0, false, true, false);
    chk(v[3], 1, 0x00, 5, 0, false, false, true);
    chk(v[4], 1, 0x99, 6, 0, false, true, false);
    chk(v[5], 1, 0x00, 4, 3, false, true, false);
    chk(v[6], 1, 0x61, 0, 1, false, true, false);
    chk(v[7], 1, 0x62, 0, 2, false, true, false);
    EXPECT_EQ(a.esr(), 0u);
}

// A software-disabled APIC still sends IPIs (NMI to itself here) and sends NMI's vector as 0.
TEST(Lapic, SoftwareDisabledSendsNmiIpis)
{
    Apic a(0);
    ASSERT_FALSE(a.l.sw_enabled());
    a.wr(ICR, 0x00044400);                          // NMI, self
    a.wr(ICR2, 0x01000000);
    a.wr(ICR, 0x00004400);                          // NMI to APIC 1
    auto v = a.ipis();
    ASSERT_EQ(v.size(), 2u);
    EXPECT_EQ(v[0].delivery, 4);
    EXPECT_EQ(v[0].shorthand, 1);
    EXPECT_EQ(v[1].delivery, 4);
    EXPECT_EQ(v[1].dest, 1u);
    EXPECT_EQ(a.esr(), 0u);                         // vector 0 is legal for NMI
}

TEST(Lapic, IpiQueueOverflowKeepsOldest)
{
    Apic a;
    for (u32 i = 0; i < 12; i++) a.wr(ICR, 0x20 + i);
    EXPECT_EQ(a.l.ipis_dropped(), 4u);
    auto v = a.ipis();
    ASSERT_EQ(v.size(), LapicModel::IPI_QUEUE);
    for (u32 i = 0; i < v.size(); i++) EXPECT_EQ(v[i].vector, 0x20 + i);
    a.wr(ICR, 0x40);                                // room again (the ring wraps)
    v = a.ipis();
    ASSERT_EQ(v.size(), 1u);
    EXPECT_EQ(v[0].vector, 0x40);
}

TEST(Lapic, MatchDest)
{
    Apic a(5);
    EXPECT_TRUE(a.l.match_dest(5, false));
    EXPECT_FALSE(a.l.match_dest(6, false));
    EXPECT_TRUE(a.l.match_dest(0xff, false));
    a.wr(LDR, 0x24000000);                          // flat: bits 2 and 5
    EXPECT_TRUE(a.l.match_dest(0x04, true));
    EXPECT_TRUE(a.l.match_dest(0x21, true));
    EXPECT_FALSE(a.l.match_dest(0x03, true));
    a.wr(DFR, 0x0fffffff);                          // cluster 2, member bit 2
    EXPECT_TRUE(a.l.match_dest(0x24, true));
    EXPECT_FALSE(a.l.match_dest(0x34, true));
    EXPECT_FALSE(a.l.match_dest(0x21, true));
    EXPECT_TRUE(a.l.match_dest(0xf4, true));        // all clusters
    ASSERT_TRUE(a.to_x2apic());
    Apic b(0x123);
    ASSERT_TRUE(b.to_x2apic());
    EXPECT_TRUE(b.l.match_dest(0x123, false));
    EXPECT_FALSE(b.l.match_dest(0x23, false));
    EXPECT_TRUE(b.l.match_dest(~0u, false));
    EXPECT_FALSE(b.l.match_dest(0xff, false));
    EXPECT_TRUE(b.l.match_dest(0xff, false, true)); // 8-bit broadcast
    EXPECT_TRUE(b.l.match_dest(0x00120008, true));  // cluster 0x12, bit 3
    EXPECT_FALSE(b.l.match_dest(0x00130008, true));
    EXPECT_FALSE(b.l.match_dest(0x00120004, true));
    ASSERT_TRUE(b.l.set_apic_base(BASE_DEFAULT));
    EXPECT_FALSE(b.l.match_dest(~0u, false));       // disabled
}

TEST(Lapic, X2apicRegisters)
{
    Apic a(0x12345, true);
    u64 v = 0;
    EXPECT_FALSE(a.l.msr_read(0x802, v, 0));        // xAPIC mode: #GP
    EXPECT_FALSE(a.l.msr_write(0x808, 0, 0));
    ASSERT_TRUE(a.to_x2apic());
    EXPECT_TRUE(a.l.x2apic_mode());
    EXPECT_FALSE(a.l.xapic_mmio_active());
    EXPECT_EQ(a.rd(VER), 0u);                       // MMIO no longer decoded
    a.wr(SVR, 0);
    ASSERT_TRUE(a.l.msr_read(0x802, v, 0));
    EXPECT_EQ(v, 0x12345u);
    ASSERT_TRUE(a.l.msr_read(0x803, v, 0));
    EXPECT_EQ(v, 0x50014u);
    ASSERT_TRUE(a.l.msr_read(0x80d, v, 0));
    EXPECT_EQ(v, (0x1234u << 16) | (1u << 5));
    ASSERT_TRUE(a.l.msr_read(0x80f, v, 0));
    EXPECT_EQ(v, 0xffu);                            // the MMIO write above was ignored

    ASSERT_TRUE(a.l.msr_write(0x80f, 0x1ff, 0));
    ASSERT_TRUE(a.l.msr_write(0x808, 0x20, 0));
    ASSERT_TRUE(a.l.msr_read(0x80a, v, 0));
    EXPECT_EQ(v, 0x20u);
    ASSERT_TRUE(a.l.msr_write(0x835, 0x700, 0));    // LINT0 ExtINT
    EXPECT_EQ(a.l.lvt(LapicModel::LVT_LINT0), 0x700u);

    // #GP: reserved/absent registers, write-only reads, read-only writes, reserved bits.
    for (u32 m : {0x800u, 0x801u, 0x804u, 0x809u, 0x80cu, 0x80eu, 0x831u, 0x83au, 0x83fu, 0x80bu, 0x840u, 0x8ffu})
        EXPECT_FALSE(a.l.msr_read(m, v, 0)) << std::hex << m;
    for (u32 m : {0x802u, 0x803u, 0x80au, 0x80du, 0x80eu, 0x810u, 0x818u, 0x827u, 0x831u, 0x839u, 0x840u})
        EXPECT_FALSE(a.l.msr_write(m, 0, 0)) << std::hex << m;
    EXPECT_FALSE(a.l.msr_write(0x80b, 1, 0));       // EOI non-zero
    EXPECT_FALSE(a.l.msr_write(0x828, 1, 0));       // ESR non-zero
    EXPECT_FALSE(a.l.msr_write(0x808, 0x100, 0));   // TPR bits 31:8
    EXPECT_FALSE(a.l.msr_write(0x808, 1ull << 32, 0));
    EXPECT_FALSE(a.l.msr_write(0x80f, 0x1000, 0));  // SVR: no EOI-broadcast suppression
    EXPECT_FALSE(a.l.msr_write(0x832, 0x80000, 0)); // LVT timer bit 19
    EXPECT_FALSE(a.l.msr_write(0x83e, 0x4, 0));     // TDCR bit 2
    EXPECT_FALSE(a.l.msr_write(0x83f, 0x100, 0));   // SELF IPI bits 31:8
    EXPECT_FALSE(a.l.msr_write(0x830, 0x2000, 0));  // ICR bit 13
    EXPECT_FALSE(a.l.msr_read(0x1b, v, 0));         // not ours
    EXPECT_TRUE(a.l.msr_write(0x832, 0x1000 | 0x40, 0));     // read-only delivery status: ignored
    EXPECT_EQ(a.l.lvt(LapicModel::LVT_TIMER), 0x40u);
    ASSERT_TRUE(a.l.msr_read(0x808, v, 0));
    EXPECT_EQ(v, 0x20u);                            // unchanged by the failed writes

    // EOI and ESR
    a.l.accept(0x80, true);
    EXPECT_EQ(a.take(), 0x80);
    ASSERT_TRUE(a.l.msr_write(0x80b, 0, 0));
    EXPECT_EQ(a.l.take_eoi_broadcast(), 0x80);
    a.l.accept(9, false);
    ASSERT_TRUE(a.l.msr_write(0x828, 0, 0));
    ASSERT_TRUE(a.l.msr_read(0x828, v, 0));
    EXPECT_EQ(v, LapicModel::ESR_RECV_ILLEGAL);

    // ICR: 64 bits with a 32-bit destination; self IPI
    ASSERT_TRUE(a.l.msr_write(0x830, 0xabcdef0000004c42ull, 0));
    ASSERT_TRUE(a.l.msr_read(0x830, v, 0));
    EXPECT_EQ(v, 0xabcdef0000004c42ull);
    ASSERT_TRUE(a.l.msr_write(0x83f, 0x77, 0));
    ASSERT_TRUE(a.l.msr_write(0x83f, 0x07, 0));     // illegal: send error, no IPI
    auto ipis = a.ipis();
    ASSERT_EQ(ipis.size(), 2u);
    EXPECT_EQ(ipis[0].dest, 0xabcdef00u);
    EXPECT_EQ(ipis[0].vector, 0x42);
    EXPECT_EQ(ipis[0].delivery, 4);
    EXPECT_TRUE(ipis[0].logical);
    EXPECT_EQ(ipis[1].vector, 0x77);
    EXPECT_EQ(ipis[1].delivery, 0);
    EXPECT_EQ(ipis[1].shorthand, 1);
    ASSERT_TRUE(a.l.msr_write(0x828, 0, 0));
    ASSERT_TRUE(a.l.msr_read(0x828, v, 0));
    EXPECT_EQ(v, LapicModel::ESR_SEND_ILLEGAL);

    // Timer through MSRs
    ASSERT_TRUE(a.l.msr_write(0x83e, 0xb, 0));
    ASSERT_TRUE(a.l.msr_write(0x832, 0x45, 0));
    ASSERT_TRUE(a.l.msr_write(0x838, 100, 0));
    ASSERT_TRUE(a.l.msr_read(0x839, v, tsc_for(40, 1)));
    EXPECT_EQ(v, 60u);
    EXPECT_EQ(a.l.pending(tsc_for(100, 1)), 0x45);
}

TEST(Lapic, ApicBaseTransitions)
{
    Apic a(1, true);
    const u64 B = BASE_DEFAULT | BSP;
    EXPECT_FALSE(a.l.set_apic_base(B | EXTD));                  // invalid: x2APIC while disabled flag clear
    EXPECT_FALSE(a.l.set_apic_base(B | EN | 1));                // reserved bit 0
    EXPECT_FALSE(a.l.set_apic_base(B | EN | (1u << 9)));        // reserved bit 9
    EXPECT_FALSE(a.l.set_apic_base(B | EN | (1ull << 46)));     // above MAXPHYADDR
    EXPECT_TRUE(a.l.set_apic_base(0xfed00000 | EN));            // relocate; BSP is read-only
    EXPECT_EQ(a.l.apic_base(), 0xfed00000 | EN | BSP);
    EXPECT_EQ(a.l.mmio_base(), 0xfed00000u);
    EXPECT_TRUE(a.l.set_apic_base(B | EN));
    EXPECT_TRUE(a.l.set_apic_base(B | EN | EXTD));              // xAPIC -> x2APIC
    EXPECT_FALSE(a.l.set_apic_base(B | EN));                    // x2APIC -> xAPIC: #GP
    EXPECT_TRUE(a.l.x2apic_mode());
    EXPECT_TRUE(a.l.set_apic_base(B | EN | EXTD));              // same state: fine
    EXPECT_TRUE(a.l.set_apic_base(B));                          // x2APIC -> disabled
    EXPECT_FALSE(a.l.enabled());
    EXPECT_FALSE(a.l.xapic_mmio_active());
    EXPECT_FALSE(a.l.set_apic_base(B | EN | EXTD));             // disabled -> x2APIC: #GP
    EXPECT_TRUE(a.l.set_apic_base(B | EN));                     // disabled -> xAPIC
    EXPECT_TRUE(a.l.xapic_mmio_active());

    Apic n;
    n.l.reset(0, false, TSC_HZ, BUS_HZ, false, 36);             // no x2APIC in CPUID, 36-bit MAXPHYADDR
    EXPECT_FALSE(n.l.set_apic_base(BASE_DEFAULT | EN | EXTD));
    EXPECT_FALSE(n.l.set_apic_base(BASE_DEFAULT | EN | (1ull << 36)));
    EXPECT_TRUE(n.l.set_apic_base(0xffffff000ull | EN));
}

TEST(Lapic, DisableResetsState)
{
    Apic a(2);
    a.enable();
    a.wr(TPR, 0x30);
    a.wr(LDR, 0x01000000);
    a.wr(LVTT, PERIODIC | 0x40);
    a.wr(TMICT, 100, 0);
    a.l.accept(0x50, true);
    a.take();
    a.l.accept(0x60, false);
    a.wr(ID, 0x09000000);
    EXPECT_TRUE(a.l.set_apic_base(BASE_DEFAULT | BSP));
    EXPECT_EQ(a.rd(VER), 0u);
    EXPECT_FALSE(a.l.accept(0x70, false));
    a.l.update(~0ull);
    EXPECT_EQ(a.l.next_event(), ~0ull);
    EXPECT_TRUE(a.l.set_apic_base(BASE_DEFAULT | EN | BSP));
    EXPECT_EQ(a.rd(ID), 2u << 24);
    EXPECT_EQ(a.rd(SVR), 0xffu);
    EXPECT_EQ(a.rd(TPR), 0u);
    EXPECT_EQ(a.rd(LDR), 0u);
    EXPECT_EQ(a.rd(LVTT), MASKED);
    EXPECT_EQ(a.rd(TMICT), 0u);
    EXPECT_FALSE(a.irr(0x60));
    EXPECT_FALSE(a.isr(0x50));
    EXPECT_EQ(a.l.next_event(), ~0ull);

    // INIT keeps the mode and APIC_BASE, resets the rest.
    ASSERT_TRUE(a.to_x2apic());
    u64 v = 0;
    ASSERT_TRUE(a.l.msr_write(0x80f, 0x1ff, 0));
    a.l.init_signal();
    EXPECT_TRUE(a.l.x2apic_mode());
    ASSERT_TRUE(a.l.msr_read(0x80f, v, 0));
    EXPECT_EQ(v, 0xffu);
}

TEST(Lapic, DivSatMatchesNative)
{
    std::mt19937_64 rng(42);
    using lapic_detail::div_sat;
    EXPECT_EQ(div_sat(5, 0), ~0ull);
    EXPECT_EQ(div_sat(u128(1) << 64, 1), ~0ull);
    EXPECT_EQ(div_sat((u128(1) << 64) - 1, 1), ~0ull);
    EXPECT_EQ(div_sat(u128(~0ull) * 3 + 2, 3), ~0ull);
    EXPECT_EQ(div_sat(u128(1) << 100, 1ull << 40), 1ull << 60);
    for (int i = 0; i < 200000; i++) {
        const unsigned dbits = 1 + rng() % 64, hbits = rng() % 65;
        u64 d = rng() >> (64 - dbits);
        if (!d) d = 1;
        const u64 hi = hbits ? rng() >> (64 - hbits) : 0;
        const u128 n = u128(hi) << 64 | rng();
        const u128 q = n / d;
        ASSERT_EQ(div_sat(n, d), q >> 64 ? ~0ull : u64(q)) << i;
    }
}

// A hostile guest: random registers, values and times; then invariants.
TEST(Lapic, RandomisedHostileGuest)
{
    std::mt19937_64 rng(0x1a91c);
    for (int round = 0; round < 40; round++) {
        Apic a(u32(rng()), rng() & 1, rng() % (1ull << 50), rng() % (1ull << 50));
        u64 now = rng() % 1000000;
        for (int i = 0; i < 5000; i++) {
            const u64 r = rng();
            const u32 val = u32(rng() >> 7);
            now += (r >> 40) % 3 ? rng() % 5000 : 0;
            if (r % 97 == 0) now = rng();            // the guest TSC may jump either way
            u32 off = (r >> 8) & 0xff0;
            if (r % 13 == 0) off = u32(rng());       // anything at all
            switch (r % 16) {
            case 0: case 1: case 2: case 3: case 4: a.l.mmio_write(off, val, now); break;
            case 5: case 6: case 7: (void)a.l.mmio_read(off, now); break;
            case 8: {
                u64 v;
                const u32 msr = 0x800 + u32(rng() % 0x110);
                if (rng() & 1) (void)a.l.msr_read(msr, v, now);
                else (void)a.l.msr_write(msr, rng() & 1 ? rng() : rng() % 0x10000, now);
                break;
            }
            case 9: (void)a.l.set_apic_base(rng() & 1 ? rng() : (BASE_DEFAULT | (rng() & 0xd00))); break;
            case 10: (void)a.l.accept(u8(rng()), rng() & 1); break;
            case 11: {
                const int v = a.l.pending(now);
                ASSERT_TRUE(v == -1 || (v >= 16 && v < 256));
                if (v >= 0) a.l.ack(u8(v));
                break;
            }
            case 12: a.l.update(now); break;
            case 13: a.l.tsc_deadline_write(rng() & 1 ? now + rng() % 100000 : rng(), now); break;
            case 14: {
                Ipi ipi;
                while (a.l.take_ipi(ipi)) ASSERT_NE(ipi.delivery, 3);
                while (a.l.take_eoi_broadcast() >= 16) {}
                break;
            }
            case 15:
                if (rng() % 50 == 0) a.l.init_signal();
                else (void)a.l.match_dest(u32(rng()), rng() & 1, rng() & 1);
                break;
            }
            // invariants: nothing expired is left unfired, registers keep their shape
            a.l.update(now);
            ASSERT_TRUE(a.l.next_event() > now || now == ~0ull);
            if (a.l.xapic_mmio_active()) {
                ASSERT_EQ(a.l.mmio_read(0x30, now), 0x50014u);
                ASSERT_EQ(a.l.mmio_read(0x200, now) & 0xffff, 0u);  // vectors 0-15 never pending
                ASSERT_EQ(a.l.mmio_read(0x100, now) & 0xffff, 0u);
                ASSERT_EQ(a.l.mmio_read(0x300, now) & (1u << 12), 0u);
            }
        }
    }
}

// The timer never fires before next_event() and always by it.
TEST(Lapic, RandomisedTimerAgreesWithNextEvent)
{
    std::mt19937_64 rng(7);
    for (int round = 0; round < 300; round++) {
        const u64 tsc = 1 + rng() % 5'000'000'000ull, bus = 1 + rng() % 2'000'000'000ull;
        Apic a(0, true, tsc, bus);
        a.enable();
        const auto [tdcr, div] = DIVIDERS[rng() % 8];
        a.wr(TDCR, tdcr);
        const bool periodic = rng() & 1;
        a.wr(LVTT, (periodic ? PERIODIC : 0) | 0x40);
        u64 now = rng() % (1ull << 40);
        a.wr(TMICT, 1 + u32(rng() % 100000), now);
        for (int k = 0; k < 20; k++) {
            const u64 ev = a.l.next_event();
            if (ev == ~0ull) break;
            ASSERT_GT(ev, now);
            a.l.update(ev - 1);
            ASSERT_FALSE(a.irr(0x40));
            a.l.update(ev);
            ASSERT_TRUE(a.irr(0x40));
            ASSERT_EQ(a.take(ev), 0x40);
            a.wr(EOI, 0, ev);
            now = ev;
            ASSERT_EQ(a.l.next_event() != ~0ull, periodic);
        }
    }
}

// Everything a guest can see of an APIC at `now`: its registers, what it would inject, its
// timer's next event, the IPIs and EOI broadcasts it has queued (taken from it).
std::vector<u64> observe(LapicModel &l, u64 now)
{
    std::vector<u64> seen{l.apic_base(), l.next_event()};
    for (u32 reg = 0; reg < 0x40; reg++) {
        if (l.xapic_mmio_active()) {
            seen.push_back(l.mmio_read(reg << 4, now));
        } else {
            u64 v = 0;
            seen.push_back(l.msr_read(LapicModel::MSR_FIRST + reg, v, now) ? v : ~0ull);
        }
    }
    seen.push_back(u64(i64(l.pending(now))));
    Ipi i;
    while (l.take_ipi(i)) seen.insert(seen.end(), {i.dest, i.vector, i.delivery, i.shorthand, i.logical, i.level_assert, i.init_deassert});
    for (int v; (v = l.take_eoi_broadcast()) >= 0;) seen.push_back(u64(v));
    return seen;
}

// The registers whose writes do not need the time (the local APIC device then does not read the
// guest's clock: an EOI or an IPI sent costs no guest-TSC read) behave the same whatever `now`
// the write is given, once the timer is brought up to date; the others need it.
TEST(Lapic, TimelessWritesIgnoreNow)
{
    constexpr u32 TIMELESS[] = {0x02, 0x08, 0x0b, 0x0d, 0x0e, 0x28, 0x30, 0x31, 0x3f};   // ID TPR EOI LDR DFR ESR ICR ICR2 SELF IPI
    for (u32 reg = 0; reg < 0x40; reg++)
        EXPECT_EQ(LapicModel::write_needs_time(reg), std::find(std::begin(TIMELESS), std::end(TIMELESS), reg) == std::end(TIMELESS))
            << "register " << reg;
    std::mt19937_64 rng(0x7e0c);
    int compared = 0, differed = 0;   // time-free writes compared; others that differed
    for (int round = 0; round < 3000; round++) {
        // A random APIC with interrupts in service and pending and a timer running, often due.
        Apic a(u32(rng() % 4), true, TSC_HZ, BUS_HZ);
        if (rng() % 3 == 0) ASSERT_TRUE(a.to_x2apic());
        const bool x2 = a.l.x2apic_mode();
        auto write = [&](LapicModel &l, u32 reg, u64 v, u64 now) {
            if (x2) (void)l.msr_write(LapicModel::MSR_FIRST + reg, v, now);
            else l.mmio_write(reg << 4, u32(v), now);
        };
        write(a.l, 0x0f, 0x1ff, 0);
        for (int k = 0; k < 4; k++) {
            a.l.accept(u8(32 + rng() % 200), rng() & 1);
            if (rng() & 1) (void)a.take(0);
        }
        const u64 start = rng() % 100000;
        write(a.l, 0x3e, rng() % 16, start);
        write(a.l, 0x32, 0x40 | (rng() % 3 == 0 ? PERIODIC : 0) | (rng() % 5 == 0 ? MASKED : 0), start);
        write(a.l, 0x38, 1 + rng() % 1000, start);
        const u64 now = start + rng() % 40000;
        // One write, given the true time or none at all.
        const u32 reg = rng() & 1 ? TIMELESS[rng() % std::size(TIMELESS)] : u32(rng() % 0x40);
        u64 v = rng() % 3 == 0 ? 0 : u32(rng());
        if (reg == 0x30 && rng() % 2) v = (v & ~0x700ull) | 0x4000 | (32 + rng() % 200);   // a fixed IPI
        LapicModel with = a.l, without = a.l;
        write(with, reg, v, now);
        write(without, reg, v, 0);
        const bool same = observe(with, now) == observe(without, now);
        if (!LapicModel::write_needs_time(reg)) {
            EXPECT_TRUE(same) << "register " << reg << " value " << v;
            compared++;
        } else {
            differed += !same;
        }
    }
    EXPECT_GT(compared, 1500);   // the time-free registers, each many times
    EXPECT_GT(differed, 0);   // the time matters to the others: the comparison can tell
}

} // namespace

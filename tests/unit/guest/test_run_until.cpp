// The backends' own exit loop (exits_detail::run_until, LoadedVcpu::enter): exits the run loop
// has nothing to decide about go straight back into the guest; every other one comes back to the
// run loop at once. A scripted fake guest makes each kind of exit, and "another CPU" (a side
// effect of the script) sets what must bring the vCPU out: a vCPU that stayed in the backend
// would stay there until the next tick, which no host test would notice otherwise.
#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "kernel/guest/vcpu_irq.hpp"
#include "kernel/guest/vm_exits.hpp"
#include "tests/unit/guest/plain_vcpu.hpp"

namespace {

struct Step {
    ExitReason reason;
    std::function<void()> also;   // what happens meanwhile (on this or another CPU)
};

class ScriptedVcpu final : private PlainLoadedVcpu {
public:
    std::vector<Step> script;
    usize next = 0;
    std::vector<int> delivered;   // vectors injected before each entry (-1: none)
    u64 rip_ = 0x1000;
    int pending_vector = -1;

    LoadedVcpu &loaded() { return *this; }

private:
    void run(Gprs &, ExitInfo &e) override
    {
        delivered.push_back(pending_vector);
        pending_vector = -1;
        // Running off the script's end is a test failure (the loop should have come back).
        if (next >= script.size()) {
            ADD_FAILURE() << "entered the guest after the script's last exit";
            e = ExitInfo{};
            e.reason = ExitReason::shutdown;
            return;
        }
        Step &s = script[next++];
        e = ExitInfo{};
        e.reason = s.reason;
        e.next_rip = rip_ + 2;
        if (s.reason == ExitReason::io) e.port = 0x80, e.size = 1, e.in = true;   // an unclaimed port
        if (s.also) s.also();
    }
    bool can_inject() override { return pending_vector < 0; }
    void inject_interrupt(u8 v) override { pending_vector = v; }
    void request_window(bool) override {}
    bool can_inject_nmi() override { return true; }
    void inject_nmi() override {}
    void request_nmi_window(bool) override {}
    void exit_by(u64) override {}
    u64 rip() override { return rip_; }
    u64 set_rip(u64 r) override
    {
        rip_ = r;
        return 0;
    }
    u64 rflags() override { return 0x202; }
    bool arch_wrmsr(u32, u64) override { return true; }   // (the WRMSR tests' MSRs are accepted)
    u64 tsc() override { return 1000; }
};

struct Fixture {
    ScriptedVcpu cpu;
    VcpuIrq irq;
    VcpuStats stats;
    GuestPlatform p;
    GuestMemory mem;
    Gprs g{};
    ExitInfo e;
    RunGate gate;
    Fixture()
    {
        p.mem = &mem;
        irq.lapic.reset(0, true, 1000000, 1000000);
        irq.lapic.mmio_write(0xf0, 0x1ff, 0);   // software-enabled
        irq.deadline = ~0ull;                   // no timer armed
        gate = RunGate{~0ull, ~0ull, ~0ull, &irq, &stats};
    }
    ExitOutcome enter() { return cpu.loaded().enter(gate, g, e, p, 0); }
    std::vector<Step> cpuids(int n, std::vector<Step> then)
    {
        std::vector<Step> s(n, Step{ExitReason::cpuid, {}});
        s.insert(s.end(), then.begin(), then.end());
        return s;
    }
};

TEST(RunUntil, InstructionsEmulatedStayInTheBackendUntilAHalt)
{
    Fixture f;
    f.cpu.script = f.cpuids(5, {{ExitReason::io, {}}, {ExitReason::cpuid, {}}, {ExitReason::hlt, {}}});
    const ExitOutcome out = f.enter();
    EXPECT_EQ(out.action, ExitAction::halt);
    EXPECT_EQ(f.cpu.next, 8u);
    EXPECT_EQ(f.e.reason, ExitReason::hlt);
    EXPECT_EQ(f.stats.exits, 8u);   // every exit counted, as the run loop did
    EXPECT_EQ(f.stats.by_reason[u8(ExitReason::cpuid)], 6u);
    EXPECT_EQ(f.stats.by_reason[u8(ExitReason::io)], 1u);
    EXPECT_EQ(f.stats.by_reason[u8(ExitReason::hlt)], 1u);
    EXPECT_EQ(f.cpu.rip_, 0x1000u + 2 * 8);   // each one retired
}

TEST(RunUntil, TheHostsInterruptAndAStopComeBack)
{
    Fixture f;
    f.cpu.script = f.cpuids(3, {{ExitReason::intr, {}}});
    EXPECT_EQ(f.enter().action, ExitAction::resume);
    EXPECT_EQ(f.e.reason, ExitReason::intr);
    EXPECT_EQ(f.cpu.next, 4u);

    Fixture s;
    s.cpu.script = s.cpuids(2, {{ExitReason::shutdown, {}}});
    EXPECT_EQ(s.enter().action, ExitAction::stop);
    EXPECT_EQ(s.cpu.next, 3u);
}

TEST(RunUntil, AWrmsrToTheTscComesBackOthersStay)
{
    // IA32_TSC moves the guest's TSC, from which the run loop computed gate.until.
    Fixture f;
    Gprs &g = f.g;
    f.cpu.script = f.cpuids(2, {{ExitReason::wrmsr, [&g] { g.rcx = 0x277; }},   // PAT: stays
                                {ExitReason::wrmsr, [&g] { g.rcx = 0x10; }},
                                {ExitReason::cpuid, {}}});
    EXPECT_EQ(f.enter().action, ExitAction::resume);
    EXPECT_EQ(f.e.reason, ExitReason::wrmsr);
    EXPECT_EQ(f.cpu.next, 4u);
    EXPECT_EQ(f.stats.by_reason[u8(ExitReason::wrmsr)], 2u);
}

TEST(RunUntil, EachAttentionBitSetMeanwhileComesBackAtTheNextExit)
{
    for (u32 bit : {GuestPlatform::ATTN_EXIT, GuestPlatform::ATTN_RESET, GuestPlatform::ATTN_STATE,
                    GuestPlatform::ATTN_PAUSE, GuestPlatform::ATTN_DEVICES}) {
        Fixture f;
        GuestPlatform &p = f.p;
        f.cpu.script = f.cpuids(3, {{ExitReason::cpuid, [&p, bit] { p.attend(bit); }}, {ExitReason::cpuid, {}}});
        EXPECT_EQ(f.enter().action, ExitAction::resume);
        EXPECT_EQ(f.cpu.next, 4u) << "bit " << bit;
        // Cleared (the run loop serviced it): the next enter stays in again.
        p.unattend(bit);
        f.cpu.script.push_back({ExitReason::hlt, {}});
        EXPECT_EQ(f.enter().action, ExitAction::halt);
        EXPECT_EQ(f.cpu.next, 6u);
    }
}

TEST(RunUntil, TheDeviceExitAndResetRequestsSetAttention)
{
    GuestPlatform p;
    EXPECT_FALSE(p.needs_attention());
    p.request_reset();
    EXPECT_TRUE(p.reset_requested);
    EXPECT_EQ(p.attention, GuestPlatform::ATTN_RESET);
    p.request_exit(7);
    EXPECT_TRUE(p.exit_requested);
    EXPECT_EQ(p.exit_code, 7u);
    EXPECT_EQ(p.attention, GuestPlatform::ATTN_RESET | GuestPlatform::ATTN_EXIT);
}

TEST(RunUntil, PastTheGatesTimeEveryExitComesBack)
{
    Fixture f;
    f.gate.until = 0;   // already past: a sleeper's timer, the slice's end, the tick
    f.cpu.script = f.cpuids(3, {});
    for (usize i = 1; i <= 3; i++) {
        EXPECT_EQ(f.enter().action, ExitAction::resume);
        EXPECT_EQ(f.cpu.next, i);
    }
    EXPECT_EQ(f.stats.exits, 3u);
}

TEST(RunUntil, AnInterruptMeanwhileIsDeliveredBeforeTheNextEntry)
{
    // An IPI from another vCPU (or a device's MSI) while this one loops: delivered by the
    // backend's loop itself, at the very next entry, as the run loop would.
    Fixture f;
    VcpuIrq &irq = f.irq;
    f.cpu.script = f.cpuids(2, {{ExitReason::cpuid,
                                 [&irq] {
                                     Guard lk(irq.lock);
                                     irq.lapic.accept(0x41, false);
                                     irq.poke();
                                 }},
                                {ExitReason::cpuid, {}},
                                {ExitReason::hlt, {}}});
    EXPECT_EQ(f.enter().action, ExitAction::halt);
    EXPECT_EQ(f.cpu.next, 5u);
    ASSERT_EQ(f.cpu.delivered.size(), 5u);
    EXPECT_EQ(f.cpu.delivered[3], 0x41);   // at the entry after the exit that saw it
    EXPECT_EQ(f.cpu.delivered[2], -1);
    EXPECT_EQ(f.cpu.delivered[4], -1);
}

TEST(RunUntil, IpisToRouteComeBack)
{
    // The guest wrote its ICR: the run loop routes the IPI to the other vCPUs.
    Fixture f;
    VcpuIrq &irq = f.irq;
    f.cpu.script = f.cpuids(1, {{ExitReason::io,
                                 [&irq] {
                                     irq.ipi_out = true;
                                     irq.poke();
                                 }},
                                {ExitReason::cpuid, {}}});
    EXPECT_EQ(f.enter().action, ExitAction::resume);
    EXPECT_EQ(f.cpu.next, 2u);
    EXPECT_TRUE(irq.ipi_out);
    EXPECT_TRUE(irq.check);   // left for the run loop
}

TEST(RunUntil, IpisAreRoutedByTheGatesCallbackThenInterruptsDelivered)
{
    // With the run loop's router in the gate, the backend sends them itself and stays in; what
    // the routing made pending for this vCPU (a self-IPI) is delivered at the next entry.
    Fixture f;
    VcpuIrq &irq = f.irq;
    struct Router {
        VcpuIrq *irq;
        int calls = 0;
    } r{&irq};
    f.gate.route_ipis = [](void *ctx) {
        Router &r = *static_cast<Router *>(ctx);
        r.calls++;
        Guard lk(r.irq->lock);
        r.irq->ipi_out = false;
        r.irq->lapic.accept(0x43, false);   // to itself
        r.irq->check = true;
    };
    f.gate.route_ctx = &r;
    f.cpu.script = f.cpuids(1, {{ExitReason::io,
                                 [&irq] {
                                     irq.ipi_out = true;
                                     irq.poke();
                                 }},
                                {ExitReason::cpuid, {}},
                                {ExitReason::hlt, {}}});
    EXPECT_EQ(f.enter().action, ExitAction::halt);
    EXPECT_EQ(r.calls, 1);
    EXPECT_EQ(f.cpu.next, 4u);
    ASSERT_EQ(f.cpu.delivered.size(), 4u);
    EXPECT_EQ(f.cpu.delivered[2], 0x43);
}

TEST(RunUntil, IpisAreRoutedWithoutACheck)
{
    // An ICR write leaves nothing to deliver on the sender (no check), only IPIs to route: they
    // are routed all the same, before the next entry, and the sender stays in.
    Fixture f;
    VcpuIrq &irq = f.irq;
    struct Router {
        VcpuIrq *irq;
        int calls = 0;
    } r{&irq};
    f.gate.route_ipis = [](void *ctx) {
        Router &r = *static_cast<Router *>(ctx);
        r.calls++;
        r.irq->ipi_out = false;
    };
    f.gate.route_ctx = &r;
    f.cpu.script = f.cpuids(1, {{ExitReason::io, [&irq] { irq.ipi_out = true; }},
                                {ExitReason::cpuid, {}},
                                {ExitReason::hlt, {}}});
    EXPECT_EQ(f.enter().action, ExitAction::halt);
    EXPECT_EQ(r.calls, 1);
    EXPECT_EQ(f.cpu.next, 4u);
    EXPECT_FALSE(irq.ipi_out);
    EXPECT_FALSE(irq.check);
}

TEST(RunUntil, ATimerProgrammedMeanwhileComesBack)
{
    // The guest armed its APIC timer (an MMIO write: check): the deadline the gate's time was
    // computed for is no longer the vCPU's, so the run loop computes it again.
    Fixture f;
    VcpuIrq &irq = f.irq;
    f.cpu.script = f.cpuids(1, {{ExitReason::cpuid,
                                 [&irq] {
                                     Guard lk(irq.lock);
                                     irq.lapic.mmio_write(0x3e0, 0xb, 1000);        // divide by 1
                                     irq.lapic.mmio_write(0x320, 0x42, 1000);       // one-shot
                                     irq.lapic.mmio_write(0x380, 500000, 1000);     // due later
                                     irq.check = true;
                                 }},
                                {ExitReason::cpuid, {}}});
    EXPECT_EQ(f.enter().action, ExitAction::resume);
    EXPECT_EQ(f.cpu.next, 2u);
    EXPECT_NE(irq.deadline, ~0ull);
}

} // namespace

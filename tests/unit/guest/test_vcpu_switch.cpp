// The run loop's vCPU switch and interrupt delivery (kernel/guest/vcpu_irq) through a fake backend
// that models what the hardware does: VMREAD/VMWRITE act on the CPU's *current* VMCS, whichever
// vCPU's accessor is called. A delivery made through a vCPU that is not the loaded one lands in
// another guest's VMCS: exactly the cross-guest injection this seam makes impossible.
#include <gtest/gtest.h>

#include <vector>

#include "kernel/guest/vcpu_irq.hpp"
#include "tests/unit/guest/plain_vcpu.hpp"

namespace {

struct FakeVmcs {
    int entry_vector = -1;       // event injection field (-2: an NMI)
    bool irq_window = false;
    bool nmi_window = false;
    bool nmi_blocked = false;    // the guest's NMI blocking (set by an NMI's delivery, cleared by its IRET)
    bool shadow = false;         // STI / MOV SS shadow
    u64 rflags = 0x202;          // IF set
    std::vector<u8> delivered;   // what the "guest" received, in order
};

class FakeCpu;

class FakeVcpu final : public VcpuHandle, private PlainLoadedVcpu {
public:
    FakeVcpu(FakeCpu &c, const char *name) : name(name), cpu_(c) {}
    const char *name;
    LoadedVcpu &load() override;
    u64 guest_tsc() const override;
    void start_at_sipi(u8) override {}
    void retire() override {}
    void destroy() override {}

    FakeVmcs vmcs;               // this vCPU's VMCS contents
    int foreign_accesses = 0;    // accessor calls while another VMCS was current

private:
    FakeVmcs &current();         // the VMCS the hardware would really touch
    void run(Gprs &, ExitInfo &e) override;
    bool can_inject() override
    {
        FakeVmcs &v = current();
        return (v.rflags & 0x200) && !v.shadow && v.entry_vector == -1;
    }
    bool can_inject_nmi() override
    {
        FakeVmcs &v = current();
        return !v.nmi_blocked && !v.shadow && v.entry_vector == -1;
    }
    void inject_nmi() override { current().entry_vector = -2; }
    void request_nmi_window(bool on) override { current().nmi_window = on; }
    void inject_interrupt(u8 vector) override { current().entry_vector = vector; }
    void request_window(bool on) override { current().irq_window = on; }
    void exit_by(u64) override {}
    u64 rip() override { return 0; }
    u64 set_rip(u64) override { return 0; }
    u64 rflags() override { return current().rflags; }
    u64 tsc() override { return guest_tsc(); }

    FakeCpu &cpu_;

};

class FakeCpu {
public:
    FakeVcpu *current = nullptr;
    u64 now = 0;   // the TSC
};

LoadedVcpu &FakeVcpu::load()
{
    cpu_.current = this;   // VMPTRLD
    return *this;
}

u64 FakeVcpu::guest_tsc() const { return cpu_.now; }

FakeVmcs &FakeVcpu::current()
{
    if (cpu_.current != this) foreign_accesses++;
    return cpu_.current->vmcs;
}

// VM entry: the pending event is delivered to the guest whose VMCS is current.
void FakeVcpu::run(Gprs &, ExitInfo &e)
{
    FakeVmcs &v = current();
    if (v.entry_vector >= 0) v.delivered.push_back(u8(v.entry_vector));
    if (v.entry_vector == -2) {
        v.delivered.push_back(2);   // NMI (vector 2)
        v.nmi_blocked = true;
    }
    v.entry_vector = -1;
    e = ExitInfo{};
    e.reason = ExitReason::intr;
}

struct Vcpu {
    FakeVcpu arch;
    VcpuIrq irq;
    Gprs g{};
    Vcpu(FakeCpu &c, const char *n, u8 vector, u64 period) : arch(c, n)
    {
        irq.lapic.reset(0, true, 1000000, 1000000);
        irq.lapic.mmio_write(0xf0, 0x1ff, 0);               // software-enabled
        irq.lapic.mmio_write(0x3e0, 0xb, 0);                // divide by 1
        irq.lapic.mmio_write(0x320, vector | 1u << 17, 0);  // periodic
        irq.lapic.mmio_write(0x380, u32(period), 0);
        irq.check = true;
    }
    // One slice as the run loop makes it: load, then enter (deliver + run) a few times.
    void slice(int entries)
    {
        LoadedVcpu &cpu = arch.load();
        ExitInfo e;
        for (int i = 0; i < entries; i++) {
            enter_guest(irq, arch, cpu, g, e);
            // The guest's handler ends with an EOI (what a real guest does before the next tick).
            while (!arch.vmcs.delivered.empty() && eois < arch.vmcs.delivered.size()) {
                irq.lapic.mmio_write(0xb0, 0, arch.guest_tsc());
                eois++;
            }
        }
    }
    usize eois = 0;
};

TEST(VcpuSwitch, TwoGuestsOnOneCpuGetOnlyTheirOwnTimerInterrupts)
{
    FakeCpu cpu;
    Vcpu a(cpu, "a", 0x40, 1000), b(cpu, "b", 0x50, 1500);
    for (int round = 0; round < 200; round++) {
        cpu.now += 250;
        a.slice(2);
        cpu.now += 250;
        b.slice(2);
    }
    EXPECT_EQ(a.arch.foreign_accesses, 0);
    EXPECT_EQ(b.arch.foreign_accesses, 0);
    ASSERT_FALSE(a.arch.vmcs.delivered.empty());
    ASSERT_FALSE(b.arch.vmcs.delivered.empty());
    for (u8 v : a.arch.vmcs.delivered) EXPECT_EQ(v, 0x40);
    for (u8 v : b.arch.vmcs.delivered) EXPECT_EQ(v, 0x50);
    // 100000 TSC ticks: every period of each timer delivered (a: 1000, b: 1500), none lost in service.
    EXPECT_GE(a.arch.vmcs.delivered.size(), 99u);
    EXPECT_GE(b.arch.vmcs.delivered.size(), 66u);
}

// The defect the seam removes: delivering before the vCPU is loaded (the old run loop) puts
// the vector into the VMCS of whoever ran last. The fake sees it, so the test above can fail.
TEST(VcpuSwitch, FakeCatchesDeliveryToTheWrongVmcs)
{
    FakeCpu cpu;
    Vcpu a(cpu, "a", 0x40, 100), b(cpu, "b", 0x50, 1000000);
    LoadedVcpu &stale_a = a.arch.load();
    b.arch.load();                       // b ran last on this CPU
    cpu.now = 150;                       // a's timer is due
    deliver_interrupts(a.irq, stale_a, cpu.now);   // old order: through a's handle, b's VMCS current
    EXPECT_GT(a.arch.foreign_accesses, 0);
    EXPECT_EQ(b.arch.vmcs.entry_vector, 0x40);     // the foreign vector sits in b's VMCS
}

TEST(VcpuSwitch, WindowRequestedWhenTheGuestCannotTakeIt)
{
    FakeCpu cpu;
    Vcpu a(cpu, "a", 0x40, 100);
    a.arch.vmcs.rflags = 0x2;            // IF clear
    cpu.now = 150;
    a.slice(1);
    EXPECT_TRUE(a.arch.vmcs.irq_window);
    EXPECT_TRUE(a.arch.vmcs.delivered.empty());
    a.arch.vmcs.rflags = 0x202;
    a.slice(1);
    ASSERT_EQ(a.arch.vmcs.delivered.size(), 1u);
    EXPECT_EQ(a.arch.vmcs.delivered[0], 0x40);
}

// ---- NMIs: one latch, injected only while the guest is not blocking NMIs ----

struct NmiVcpu {
    FakeCpu cpu;
    FakeVcpu arch{cpu, "n"};
    VcpuIrq irq;
    Gprs g{};
    NmiVcpu()
    {
        irq.lapic.reset(0, true, 1000000, 1000000);
        irq.lapic.mmio_write(0xf0, 0x1ff, 0);
    }
    void nmi()
    {
        Guard lk(irq.lock);
        irq.raise_nmi();
        irq.poke();
    }
    void enter()
    {
        LoadedVcpu &c = arch.load();
        ExitInfo e;
        enter_guest(irq, arch, c, g, e);
    }
    usize count(u8 v) const
    {
        usize n = 0;
        for (u8 x : arch.vmcs.delivered) n += x == v;
        return n;
    }
};

TEST(Nmi, DeliveredOnceAndBlockedUntilIret)
{
    NmiVcpu n;
    n.nmi();
    n.enter();
    EXPECT_EQ(n.count(2), 1u);
    EXPECT_TRUE(n.arch.vmcs.nmi_blocked);
    n.nmi();                               // while the handler runs
    for (int i = 0; i < 5; i++) n.enter();
    EXPECT_EQ(n.count(2), 1u);             // held until IRET
    EXPECT_TRUE(n.arch.vmcs.nmi_window);   // with a window requested
    n.arch.vmcs.nmi_blocked = false;       // the guest's IRET
    n.enter();
    EXPECT_EQ(n.count(2), 2u);
    EXPECT_FALSE(n.arch.vmcs.nmi_window);
    n.arch.vmcs.nmi_blocked = false;
    for (int i = 0; i < 5; i++) n.enter();
    EXPECT_EQ(n.count(2), 2u);             // nothing more
    EXPECT_EQ(n.irq.nmis_received, 2u);
    EXPECT_EQ(n.irq.nmis_injected, 2u);
}

TEST(Nmi, NmisWhileOneWaitsMerge)
{
    NmiVcpu n;
    n.arch.vmcs.nmi_blocked = true;
    for (int i = 0; i < 100; i++) n.nmi();   // a flood while blocked: one latch
    n.enter();
    n.arch.vmcs.nmi_blocked = false;
    for (int i = 0; i < 5; i++) {
        n.enter();
        n.arch.vmcs.nmi_blocked = false;
    }
    EXPECT_EQ(n.count(2), 1u);
}

TEST(Nmi, GoesBeforeAnInterruptAndIgnoresIf)
{
    NmiVcpu n;
    n.irq.lapic.accept(0x40, false);
    n.nmi();
    n.arch.vmcs.rflags = 0x2;              // IF clear: the NMI still goes
    n.enter();
    ASSERT_EQ(n.arch.vmcs.delivered.size(), 1u);
    EXPECT_EQ(n.arch.vmcs.delivered[0], 2);
    EXPECT_TRUE(n.arch.vmcs.irq_window);
    n.arch.vmcs.rflags = 0x202;
    n.enter();
    ASSERT_EQ(n.arch.vmcs.delivered.size(), 2u);
    EXPECT_EQ(n.arch.vmcs.delivered[1], 0x40);
}

TEST(Nmi, ShadowDefersIt)
{
    NmiVcpu n;
    n.arch.vmcs.shadow = true;
    n.nmi();
    n.enter();
    EXPECT_EQ(n.count(2), 0u);
    EXPECT_TRUE(n.arch.vmcs.nmi_window);
    n.arch.vmcs.shadow = false;
    n.enter();
    EXPECT_EQ(n.count(2), 1u);
}

TEST(Nmi, SoftwareDisabledApicTakesNmisGloballyDisabledDoesNot)
{
    NmiVcpu n;
    n.irq.lapic.mmio_write(0xf0, 0xff, 0);            // SVR bit 8 clear
    {
        Guard lk(n.irq.lock);
        EXPECT_TRUE(n.irq.raise_nmi());
        n.irq.nmi = false;
        ASSERT_TRUE(n.irq.lapic.set_apic_base(LapicModel::DEFAULT_BASE | LapicModel::BASE_BSP));   // bit 11 clear
        EXPECT_FALSE(n.irq.raise_nmi());
        EXPECT_FALSE(n.irq.nmi);
    }
}

TEST(Nmi, HaltedVcpuWakesForAnNmi)
{
    NmiVcpu n;
    EXPECT_FALSE(irq_wanted(n.irq, 0));
    n.nmi();
    EXPECT_TRUE(irq_wanted(n.irq, 0));
}

// SVM without vNMI: Keel's own blocking, ended by the exit after the intercepted IRET.
TEST(SoftNmiBlocking, EndsAfterTheIretRetires)
{
    SoftNmiBlocking b;
    EXPECT_FALSE(b.blocked());
    b.injected();
    EXPECT_TRUE(b.blocked());
    EXPECT_TRUE(b.wants_iret_exit());
    b.exited_at(0x1000);                   // another exit inside the handler
    EXPECT_TRUE(b.blocked());
    b.iret_intercepted(0x1234);            // before the IRET runs
    EXPECT_TRUE(b.blocked());
    EXPECT_FALSE(b.wants_iret_exit());
    b.exited_at(0x1234);                   // still at the IRET: not retired
    EXPECT_TRUE(b.blocked());
    b.exited_at(0x2000);                   // back in the interrupted code
    EXPECT_FALSE(b.blocked());
    b.iret_intercepted(0x1234);            // an IRET with no NMI in service changes nothing
    EXPECT_FALSE(b.blocked());
    b.injected();
    b.reset();                             // INIT/SIPI
    EXPECT_FALSE(b.blocked());
}

// ---- an exception intercepted while the CPU delivered another event ----

constexpr u32 ev(u8 type, u8 vec) { return 1u << 31 | u32(type) << 8 | vec; }

TEST(CombineEvents, NothingInterruptedDeliversTheException)
{
    EXPECT_EQ(combine_events(0, 1), EventCombine::deliver);
    EXPECT_EQ(combine_events(ev(3, 13) & ~(1u << 31), 13), EventCombine::deliver);   // not valid
}

TEST(CombineEvents, InterruptsAndNmisComeAfterTheException)
{
    EXPECT_EQ(combine_events(ev(0, 0x30), 1), EventCombine::deliver_then_interrupted);
    EXPECT_EQ(combine_events(ev(0, 0x30), 13), EventCombine::deliver_then_interrupted);
    EXPECT_EQ(combine_events(ev(2, 2), 17), EventCombine::deliver_then_interrupted);
}

TEST(CombineEvents, SoftwareEventsAreNotRepeated)
{
    // RIP still points at INT n / INT3 / INTO / ICEBP: re-injecting it later would run it twice.
    for (u8 type : {4, 5, 6}) EXPECT_EQ(combine_events(ev(type, 0x80), 13), EventCombine::deliver) << int(type);
}

TEST(CombineEvents, Table6_5)
{
    const u8 benign[] = {1, 2, 3, 4, 5, 6, 7, 9, 16, 17, 18, 19};
    const u8 contrib[] = {0, 10, 11, 12, 13};
    for (u8 f : benign) {
        for (u8 s : benign) EXPECT_EQ(combine_events(ev(3, f), s), EventCombine::deliver);
        for (u8 s : contrib) EXPECT_EQ(combine_events(ev(3, f), s), EventCombine::deliver);
        EXPECT_EQ(combine_events(ev(3, f), 14), EventCombine::deliver);
    }
    for (u8 f : contrib) {
        for (u8 s : benign) EXPECT_EQ(combine_events(ev(3, f), s), EventCombine::deliver);
        for (u8 s : contrib) EXPECT_EQ(combine_events(ev(3, f), s), EventCombine::double_fault);
        EXPECT_EQ(combine_events(ev(3, f), 14), EventCombine::deliver) << "contributory then #PF: serial";
    }
    for (u8 s : benign) EXPECT_EQ(combine_events(ev(3, 14), s), EventCombine::deliver);
    for (u8 s : contrib) EXPECT_EQ(combine_events(ev(3, 14), s), EventCombine::double_fault);
    EXPECT_EQ(combine_events(ev(3, 14), 14), EventCombine::double_fault);
}

TEST(CombineEvents, FaultWhileDeliveringDoubleFaultShutsDown)
{
    EXPECT_EQ(combine_events(ev(3, 8), 13), EventCombine::shutdown);
    EXPECT_EQ(combine_events(ev(3, 8), 14), EventCombine::shutdown);
    EXPECT_EQ(combine_events(ev(3, 8), 0), EventCombine::shutdown);
    EXPECT_EQ(combine_events(ev(3, 8), 1), EventCombine::deliver);    // #DB: benign, serial
    EXPECT_EQ(combine_events(ev(3, 8), 17), EventCombine::deliver);   // #AC
}

} // namespace

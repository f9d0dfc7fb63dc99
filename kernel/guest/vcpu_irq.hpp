// Interrupt delivery to one vCPU: its local APIC model and the step the run loop takes before
// every entry. Portable (unit-tested with a fake backend): it reaches the hardware only through
// the LoadedVcpu it is handed, so it acts on the vCPU that is loaded, by construction.
#pragma once

#include "kernel/guest/vcpu.hpp"
#include "kernel/lib/spinlock.hpp"
#include "kernel/vdev/lapic.hpp"

struct VcpuIrq {
    Spinlock lock;          // the vCPU's CPU, and IPI/IOAPIC senders on other CPUs
    LapicModel lapic;
    bool check = false;     // set by APIC accesses, IPIs and interrupt windows (atomic)
    bool ipi_out = false;   // set (on the vCPU's own CPU, check or not) when the guest's APIC has IPIs
                            // or EOI broadcasts to send (routed before the next entry: other vCPUs,
                            // the IOAPIC; each target is then poked)
    u64 deadline = 0;       // the APIC timer's next event (guest TSC); ~0 for none
    // The NMI latch (under lock): one NMI waits here until the guest can take it; NMIs that
    // arrive while one is already waiting merge with it, as on hardware (SDM vol. 3 6.7.1).
    bool nmi = false;
    u64 nmis_received = 0, nmis_injected = 0;

    // Another CPU (or device) made an interrupt pending: look at the APIC before the next entry.
    void poke() { __atomic_store_n(&check, true, __ATOMIC_RELEASE); }
    // An NMI for this vCPU (IPI, IOAPIC), under lock; the caller pokes. A globally disabled
    // APIC receives nothing; a software-disabled one still takes NMIs (SDM vol. 3 10.4.7.2).
    bool raise_nmi()
    {
        if (!lapic.enabled()) return false;
        nmi = true;
        nmis_received++;
        return true;
    }
};

// NMI blocking where the CPU does not keep it for the guest (SVM without vNMI): blocking starts
// when an NMI is injected and ends when the guest's IRET has retired. The IRET intercept fires
// before the IRET executes, so blocking ends at the first exit after it at another RIP (the
// backend makes that exit come soon: an interrupt window; otherwise the next tick), as KVM does.
struct SoftNmiBlocking {
    enum class State : u8 { open, blocked, iret_seen };
    State state = State::open;
    u64 iret_rip = 0;

    bool blocked() const { return state != State::open; }
    // The backend intercepts IRET exactly while this is true.
    bool wants_iret_exit() const { return state == State::blocked; }
    void injected() { state = State::blocked; }
    void iret_intercepted(u64 rip)
    {
        if (state != State::blocked) return;
        state = State::iret_seen;
        iret_rip = rip;
    }
    // Every exit: the IRET retired once the guest is elsewhere.
    void exited_at(u64 rip)
    {
        if (state == State::iret_seen && rip != iret_rip) state = State::open;
    }
    void reset() { state = State::open; }
};

// Before entering the guest: inject the NMI waiting in the latch, else the interrupt the local
// APIC has for it (one event per entry, NMI first), or ask the CPU to exit as soon as the guest
// can take what waits. `now` is the guest's TSC.
void deliver_interrupts(VcpuIrq &s, LoadedVcpu &cpu, u64 now);

// A halted vCPU wakes when its local APIC has something for it.
bool irq_wanted(VcpuIrq &s, u64 now);

// An exception the CPU raised while it delivered another event to the guest (VMX IDT-vectoring
// information, SVM EXITINTINFO), and Keel intercepted: what the guest must see instead (SDM
// vol. 3 6.15 tables 6-4 and 6-5, APM vol. 2 8.2.9). `interrupted` is the event in the encoding
// both vendors share: bit 31 valid, bits 10:8 type (0 external interrupt, 2 NMI, 3 hardware
// exception, 4 software interrupt, 5 privileged and 6 other software exception), bits 7:0 vector.
enum class EventCombine : u8 {
    deliver,                 // the new exception; the interrupted one is gone (a software event
                             // re-executes: RIP still points at its instruction)
    deliver_then_interrupted,// the new exception, then the interrupted external interrupt or NMI
    double_fault,            // #DF (error code 0) instead of both
    shutdown,                // a fault while delivering #DF: triple fault
};
EventCombine combine_events(u32 interrupted, u8 vector);

// One entry into the guest, as the run loop makes it: interrupts first, to the vCPU that is
// loaded (`cpu`, from handle.load()), then run to the next exit.
inline void enter_guest(VcpuIrq &s, VcpuHandle &handle, LoadedVcpu &cpu, Gprs &g, ExitInfo &e)
{
    // Nothing to look at (no APIC access, IPI or window since the last look, no timer armed):
    // no guest TSC read, no lock.
    if (__atomic_load_n(&s.check, __ATOMIC_ACQUIRE) || __atomic_load_n(&s.deadline, __ATOMIC_RELAXED) != ~0ull)
        deliver_interrupts(s, cpu, handle.guest_tsc());
    cpu.run(g, e);
}

// The same, then exits handled in the backend until one the run loop must see (LoadedVcpu::enter:
// one call into the backend for a run of exits). `gate.irq` is &s.
inline ExitOutcome enter_and_handle(VcpuIrq &s, VcpuHandle &handle, LoadedVcpu &cpu, const RunGate &gate, Gprs &g,
                                    ExitInfo &e, GuestPlatform &p, u32 vcpu_index)
{
    if (__atomic_load_n(&s.check, __ATOMIC_ACQUIRE) || __atomic_load_n(&s.deadline, __ATOMIC_RELAXED) != ~0ull)
        deliver_interrupts(s, cpu, handle.guest_tsc());
    return cpu.enter(gate, g, e, p, vcpu_index);
}

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
    u64 deadline = 0;       // the APIC timer's next event (guest TSC); ~0 for none

    // Another CPU (or device) made an interrupt pending: look at the APIC before the next entry.
    void poke() { __atomic_store_n(&check, true, __ATOMIC_RELEASE); }
};

// Before entering the guest: inject the interrupt the local APIC has for it, or ask the CPU to
// exit as soon as the guest can take one. `now` is the guest's TSC.
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

#include "kernel/guest/vcpu_irq.hpp"

void deliver_interrupts(VcpuIrq &s, LoadedVcpu &cpu, u64 now)
{
    if (!__atomic_load_n(&s.check, __ATOMIC_ACQUIRE) && now < s.deadline) return;
    Guard lk(s.lock);
    s.check = false;
    const int vec = s.lapic.pending(now);   // (the timer brought up to `now` first)
    s.deadline = s.lapic.next_event();
    if (s.nmi) {
        // An NMI goes before any interrupt; the guest blocks the next one until its IRET.
        if (cpu.can_inject_nmi()) {
            s.nmi = false;
            s.nmis_injected++;
            cpu.inject_nmi();
            cpu.request_nmi_window(false);
        } else {
            cpu.request_nmi_window(true);
            s.check = true;   // looked at again after the next exit (the window, or any other)
        }
    }
    if (vec < 0) return;
    if (cpu.can_inject()) {
        s.lapic.ack(u8(vec));
        cpu.inject_interrupt(u8(vec));
    } else {
        cpu.request_window(true);
    }
    s.check = true;   // more may be pending behind it (looked at again after the next exit)
}

bool irq_wanted(VcpuIrq &s, u64 now)
{
    Guard lk(s.lock);
    s.lapic.update(now);
    return s.nmi || s.lapic.pending(now) >= 0;
}

namespace {
// Table 6-4: #DE, #TS, #NP, #SS, #GP are contributory; #PF is a class of its own; the rest benign.
bool contributory(u8 v) { return v == 0 || (v >= 10 && v <= 13); }
} // namespace

EventCombine combine_events(u32 interrupted, u8 vector)
{
    if (!(interrupted & (1u << 31))) return EventCombine::deliver;
    const u8 type = (interrupted >> 8) & 7, first = u8(interrupted);
    if (type == 0 || type == 2) return EventCombine::deliver_then_interrupted;
    if (type != 3) return EventCombine::deliver;   // INT n, INT3, INTO, ICEBP: the guest re-executes it
    const bool second_counts = contributory(vector) || vector == 14;
    if (first == 8) return second_counts ? EventCombine::shutdown : EventCombine::deliver;
    // Table 6-5: contributory then contributory, #PF then contributory or #PF: double fault.
    // Contributory then #PF, and anything with a benign exception, are handled serially.
    if (contributory(first) && contributory(vector)) return EventCombine::double_fault;
    if (first == 14 && second_counts) return EventCombine::double_fault;
    return EventCombine::deliver;
}

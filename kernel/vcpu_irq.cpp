#include "vcpu_irq.hpp"

void deliver_interrupts(VcpuIrq &s, LoadedVcpu &cpu, u64 now)
{
    if (!__atomic_load_n(&s.check, __ATOMIC_ACQUIRE) && now < s.deadline) return;
    Guard lk(s.lock);
    s.check = false;
    s.lapic.update(now);
    const int vec = s.lapic.pending(now);
    s.deadline = s.lapic.next_event();
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
    return s.lapic.pending(now) >= 0;
}

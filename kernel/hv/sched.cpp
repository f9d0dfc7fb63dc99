// The run queues' sleepers: halted vCPUs parked on their CPU until their local
// APIC has something for them. (The queues themselves are RunQueue in
// internal.hpp; a vCPU is placed on its CPU once, when its guest is created.)
#include "arch/x86_64/insn.hpp"
#include "kernel/hv/internal.hpp"

namespace hv {

// Does a halted vCPU of this CPU have an interrupt waiting? (Its owner's CPU only.)
bool sleeper_due(RunQueue &q)
{
    for (u32 i = 0; i < q.nsleepers; i++) {
        Vcpu &s = *q.sleepers[i];
        if (!s.hung && s.state == Vcpu::State::halted && wants_to_run(s)) return true;
    }
    return false;
}

// On each wake-up of a CPU: halted vCPUs whose APIC has an interrupt become runnable;
// those of a guest that is ending go back to the queue to be stopped here.
void wake_sleepers(RunQueue &q)
{
    q.sleep_deadline = ~0ull;   // recomputed from those that stay
    for (u32 i = 0; i < q.nsleepers;) {
        Vcpu &v = *q.sleepers[i];
        bool wake;
        {
            Guard lk(v.guest->lock);
            wake = v.state != Vcpu::State::halted || v.guest->state != Guest::State::running;
        }
        if (wake || (!v.hung && wants_to_run(v))) {
            q.sleepers[i] = q.sleepers[--q.nsleepers];
            if (v.state == Vcpu::State::halted) v.state = Vcpu::State::runnable;
            v.ready_since = x86::rdtsc();
            q.push(&v);
        } else {
            if (!v.hung) {
                if (v.irq.deadline != ~0ull) q.sleep_deadline = min(q.sleep_deadline, host_deadline(v, v.irq.deadline));
            }
            i++;
        }
    }
}

} // namespace hv

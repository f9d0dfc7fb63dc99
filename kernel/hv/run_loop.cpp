// Each CPU's loop: take a vCPU from its run queue and run it until its slice
// ends, it halts or its guest ends; exits handled on the way (handle_exit).
#include "arch/x86_64/insn.hpp"
#include "arch/x86_64/mm.hpp"
#include "kernel/guest/guest_paging.hpp"
#include "kernel/guest/vm_exits.hpp"
#include "kernel/hv/hypervisor.hpp"
#include "kernel/hv/internal.hpp"

namespace hv {
namespace {

// Run one vCPU for up to a time slice.
void run_slice(Vcpu &v);

// A vCPU of a paused guest leaves its CPU until resume_vcpus (false: not paused after all).
bool park(Vcpu &v)
{
    Guard lk(v.guest->lock);
    if (!v.guest->paused || v.guest->state != Guest::State::running) return false;
    v.state = Vcpu::State::paused;
    return true;
}
void run(Vcpu &v)
{
    // The watchdog says which guest a stuck CPU was running.
    __atomic_store_n(&cpu()->running, v.guest->name, __ATOMIC_RELEASE);
    if (v.state == Vcpu::State::rebuilding) rebuild_step(v);
    else run_slice(v);
    __atomic_store_n(&cpu()->running, static_cast<const char *>(nullptr), __ATOMIC_RELEASE);
}

// After a fault stopped a guest: the guest's page-table entries on the way to CR2 (a triple
// fault's last page fault) and RSP, so a corrupted entry shows itself. The guest's memory lives
// until its last vCPU has stopped.
[[gnu::noinline, gnu::cold]] void log_walks(Guest &g, Vcpu &v, LoadedVcpu &cpu)
{
    const GuestPagingState ps{cpu.cr0(), cpu.cr3(), cpu.cr4(), cpu.efer()};
    if (!(ps.cr0 & (1ull << 31))) return;
    const u64 at[2] = {cpu.cr2(), cpu.rsp()};
    const char *what[2] = {"cr2", "rsp"};
    // The nested tables' view of the same guest-physical pages (the guest's tables and where the
    // walk ends) must be the guest's RAM: if the walk is intact in memory, this says whether the
    // CPU could still have been sent elsewhere.
    u32 checked = 0, wrong = 0;
    auto check = [&](u64 gpa) {
        const u8 *ram = g.mem.span(GuestPhys(gpa), 1);
        if (!ram) return;
        checked++;
        const Result<PhysAddr> hpa = g.space.translate(GuestPhys(gpa));
        if (hpa && mm::phys_ptr<const u8>(*hpa) == ram) return;
        wrong++;
        log_error("guest %s vCPU %u: nested tables send guest-physical %lx to %lx, its RAM is at %lx", g.name, v.index,
                  gpa, hpa ? hpa->raw() : ~u64(0), u64(ram) - mm::phys_to_virt(PhysAddr(0)).raw());
    };
    for (unsigned i = 0; i < 2; i++) {
        GuestWalk w;
        const Result<u64> r = guest_translate(g.mem, ps, at[i], &w);
        for (unsigned k = w.n; k < 5; k++) w.entry[k] = 0;
        log_error("guest %s vCPU %u: walk of %s %lx: %u entries %lx %lx %lx %lx %lx -> %lx", g.name, v.index,
                  what[i], at[i], w.n, w.entry[0], w.entry[1], w.entry[2], w.entry[3], w.entry[4],
                  r ? *r : ~u64(0));
        for (unsigned k = 0; k < w.n; k++) check(w.at[k]);
        if (r) check(*r);
    }
    if (!wrong) log_error("guest %s vCPU %u: nested tables agree with its RAM at the %u addresses of the walks", g.name,
                          v.index, checked);
}

// RunGate::route_ipis: the backend's loop sends what the guest's APIC queued.
void route_ipis_of(void *vcpu)
{
    Vcpu &v = *static_cast<Vcpu *>(vcpu);
    route_ipis(*v.guest, v);
}

void run_slice(Vcpu &v)
{
    Guest &g = *v.guest;
    u64 now = x86::rdtsc();
    v.stats.ready_tsc += now - v.ready_since;
    const u64 slice_end = now + slice_tsc_;
    v.state = Vcpu::State::running;
    // From here to the end of the slice this vCPU is the one loaded on this CPU: its VMCS/VMCB
    // state, registers and MSRs are reachable only through `cpu`.
    LoadedVcpu &cpu = v.arch->load();
    ExitInfo e;
    ExitOutcome out;
    u64 t0 = now;   // one TSC read per exit: each exit's end is the next one's start (and its `now`)
    // The guest leaves by the next tick at the latest: fixed per tick, not per entry, so a storm of
    // quick exits (a #DB loop) cannot keep pushing it out.
    u64 next_tick = now + tick_tsc_;
    for (;;) {
        if (Guest::State(__atomic_load_n(reinterpret_cast<u8 *>(&g.state), __ATOMIC_ACQUIRE)) != Guest::State::running)
            return vcpu_stopped(v);
        if (__atomic_load_n(&g.paused, __ATOMIC_RELAXED) && park(v)) return;
        {
            // Leave the guest by the next tick, its own timer or a sleeper's, whichever is first.
            const u64 host_now = t0;
            if (host_now >= next_tick) next_tick = host_now + tick_tsc_;
            u64 by = min(next_tick, rq_[v.cpu].sleep_deadline);
            const u64 own = __atomic_load_n(&v.irq.deadline, __ATOMIC_RELAXED);
            if (own != ~0ull) by = min(by, max(host_deadline(v, own), host_now));
            // The exits that need nothing below (the common ones: an instruction emulated, a
            // device register) go straight back in: what follows looks at time and at the
            // scheduler, and every change of those comes with an exit that leaves this loop
            // (the host's tick or the preemption timer: `intr`; a halt or a stop; the guest's own
            // timer moved; its end, a pause, a reset asked for; `by`, the deadline the entry was
            // given, or the slice's end passed: a sleeper of this CPU due, which SVM leaves to
            // the loop, or a slice shorter than the tick used up). The backend itself re-enters
            // after the exits that need nothing here either (exits_detail::run_until).
            const RunGate gate{by, min(by, slice_end), own, &v.irq, &v.stats, route_ipis_of, &v};
            for (;;) {
                out = enter_and_handle(v.irq, *v.arch, cpu, gate, v.gprs, e, g.platform, v.index);
                if (v.irq.ipi_out) route_ipis(g, v);   // (the backend came back before routing them)
                // (Cleared before the look: work left from now on sets it again.)
                if (__atomic_load_n(&g.platform.attention, __ATOMIC_RELAXED) & GuestPlatform::ATTN_DEVICES)
                    g.platform.unattend(GuestPlatform::ATTN_DEVICES);
                if (g.ndisks) service_disks(g);
                if (g.nnics) service_nics(g);
                if (out.action != ExitAction::resume || e.reason == ExitReason::intr || g.platform.exit_requested ||
                    g.platform.reset_requested || __atomic_load_n(&v.irq.deadline, __ATOMIC_RELAXED) != own ||
                    Guest::State(__atomic_load_n(reinterpret_cast<u8 *>(&g.state), __ATOMIC_ACQUIRE)) !=
                        Guest::State::running ||
                    __atomic_load_n(&g.paused, __ATOMIC_RELAXED) || x86::rdtsc() >= gate.until)
                    break;
            }
        }
        const u64 t1 = x86::rdtsc();
        v.stats.run_tsc += t1 - t0;
        t0 = t1;
        if (e.reason == ExitReason::intr && v.cpu == 0) manage_poll();   // the boot CPU's tick

        if (g.platform.exit_requested) {
            end_guest(g, g.platform.exit_code, nullptr, 0);
            return vcpu_stopped(v);
        }
        if (g.platform.reset_requested) {
            end_guest(g, 0, nullptr, 0, true);
            return vcpu_stopped(v);
        }
        if (out.action == ExitAction::stop) {
            const bool first = g.state == Guest::State::running;   // (not ended by another vCPU already)
            end_guest(g, ~0u, out.why, out.addr);
            // Where it was, for the operator and the guest's developer (read while still loaded).
            if (first)
                log_error("guest %s vCPU %u: rip=%lx rsp=%lx rflags=%lx cr0=%lx cr2=%lx cr3=%lx cr4=%lx efer=%lx", g.name,
                          v.index, cpu.rip(), cpu.rsp(), cpu.rflags(), cpu.cr0(), cpu.cr2(), cpu.cr3(), cpu.cr4(),
                          cpu.efer());
            if (first) log_walks(g, v, cpu);
            return vcpu_stopped(v);
        }
        if (out.action == ExitAction::halt) {
            if (wants_to_run(v)) continue;   // an interrupt is already waiting: HLT ends at once
            const bool hung = !(cpu.rflags() & (1u << 9));
            if (hung) {
                // HLT with interrupts off ends a CPU for good (an OS stopping its other CPUs does this).
                // When every started vCPU of the guest has done so, nothing can ever run it again.
                bool all;
                {
                    Guard lk(g.lock);
                    all = ++g.hung == g.started;
                }
                if (all) {
                    end_guest(g, ~0u, "halted with interrupts disabled at", cpu.rip());
                    return vcpu_stopped(v);
                }
            }
            // Sleep until the local APIC has an interrupt (its timer, or an IPI): the CPU looks at each tick.
            Guard lk(g.lock);
            if (g.state != Guest::State::running) return vcpu_stopped(v);
            RunQueue &q = rq_[v.cpu];
            if (q.nsleepers == RunQueue::MAX_SLEEPERS) continue;   // no room to sleep: keep polling by running
            v.state = Vcpu::State::halted;
            v.hung = hung;
            q.sleepers[q.nsleepers++] = &v;
            if (!hung) {
                if (v.irq.deadline != ~0ull) q.sleep_deadline = min(q.sleep_deadline, host_deadline(v, v.irq.deadline));
            }
            return;
        }
        // A halted vCPU of this CPU whose timer or interrupt is due goes first: its guest's
        // interrupts are not late by the rest of this slice (the tick is 1 ms).
        // The slice ends at any exit after its time (an exit storm must not hold the CPU); a
        // sleeper whose timer is due goes first.
        RunQueue &q = rq_[v.cpu];
        if (t1 < slice_end && e.reason != ExitReason::intr && t1 < q.sleep_deadline) continue;
        const bool due = sleeper_due(q);
        if (due || t1 >= q.sleep_deadline) wake_sleepers(q);   // (also recomputes sleep_deadline)
        if (t1 >= slice_end || due) {
            // Slice used up, or a woken sleeper goes first: to the back of the queue (it runs on
            // at once if it is alone).
            v.state = Vcpu::State::runnable;
            v.ready_since = t1;
            q.push(&v);
            return;
        }
    }
}

} // namespace

void resume_vcpus(Guest &g)
{
    Vcpu *back[MAX_VCPUS];
    u32 n = 0;
    {
        Guard lk(g.lock);
        g.paused = false;
        g.platform.unattend(GuestPlatform::ATTN_PAUSE);
        for (u32 i = 0; i < g.nvcpus; i++)
            if (g.vcpus[i].state == Vcpu::State::paused) {
                g.vcpus[i].state = Vcpu::State::runnable;
                back[n++] = &g.vcpus[i];
            }
    }
    for (u32 i = 0; i < n; i++) {
        back[i]->ready_since = x86::rdtsc();
        rq_[back[i]->cpu].push(back[i]);
    }
}

[[noreturn]] void cpu_loop()
{
    RunQueue &q = rq_[cpu()->index];
    const bool boot_cpu = cpu()->index == 0;
    for (;;) {
        if (boot_cpu && stats_every_tsc_ && x86::rdtsc() >= stats_next_) {
            stats_next_ = x86::rdtsc() + stats_every_tsc_;
            for (u32 i = 0; i < config_.guest_count; i++)
                if (guests_[i].state == Guest::State::running) print_stats(guests_[i]);
        }
        if (boot_cpu) manage_poll();
        if (q.nsleepers) wake_sleepers(q);
        restart_due(cpu()->index);
        Vcpu *v = q.pop();
        if (!v) {
            // Idle. A sleeper's timer due before the next tick is waited for here (halt polling,
            // at most one tick), so a guest's timer is not late by up to a tick.
            const u64 now = x86::rdtsc(), due = q.sleep_deadline;
            if (due <= now) {
                asm volatile("sti; nop; cli" ::: "memory");   // already due: wake it now (take what is pending)
            } else if (due - now < tick_tsc_) {
                const u64 seen = __atomic_load_n(&cpu()->ticks, __ATOMIC_RELAXED);
                x86::sti();
                while (x86::rdtsc() < due && __atomic_load_n(&cpu()->ticks, __ATOMIC_RELAXED) == seen) x86::pause();
                x86::cli();
            } else {
                x86::sti_hlt();
                x86::cli();
            }
            continue;
        }
        run(*v);
    }
}

} // namespace hv

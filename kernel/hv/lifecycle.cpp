// A guest's life: launched, ended (by itself or by Keel), restarted (its RAM
// zeroed in slices by its vCPU 0 in the run queue), and what happens when its
// last vCPU is off its CPU.
#include "arch/x86_64/insn.hpp"
#include "arch/x86_64/mm.hpp"
#include "arch/x86_64/power.hpp"
#include "arch/x86_64/time.hpp"
#include "kernel/hv/internal.hpp"
#include "kernel/lib/console.hpp"

namespace hv {

// Hand the guest's boot vCPU to its CPU.
void launch(Guest &g)
{
    for (u32 i = 0; i < g.nvcpus; i++) {
        Vcpu &v = g.vcpus[i];
        v.state = i == 0 ? Vcpu::State::runnable : Vcpu::State::idle;
        if (i == 0) {
            v.ready_since = x86::rdtsc();
            rq_[v.cpu].push(&v);
        }
    }
}

void all_guests_ended()
{
    dma_canary_check();
    if (config_.on_idle == KeelConfig::OnIdle::poweroff) {
        log_info("all guests have ended: powering off");
        iommu_stats();
        storage_quiesce(true);
        power::off(boot_acpi());
    } else {
        log_info("all guests have ended: idle");
        storage_quiesce(false);
    }
}

namespace {

void restart_failed(Guest &g)
{
    g.state = Guest::State::ended;
    if (__atomic_sub_fetch(&live_guests_, 1, __ATOMIC_ACQ_REL) == 0) all_guests_ended();
}

} // namespace

// Restart a guest whose vCPUs are all off their CPUs. Its RAM is reserved now and zeroed in
// slices by its vCPU 0 standing in its CPU's run queue (rebuild_step), so a guest that restarts
// over and over takes its turn like any other vCPU and never more.
void restart(Guest &g, const char *why)
{
    log_info("guest %s: restarting (%s, start %u)", g.name, why, g.starts + 1);
    if (!create_memory(g, false)) return restart_failed(g);
    g.zero_block = 0;
    g.zero_off = 0;
    Vcpu &v = g.vcpus[0];
    v.state = Vcpu::State::rebuilding;
    v.ready_since = x86::rdtsc();
    rq_[v.cpu].push(&v);
}

// One slice of a restart: zero RAM until the slice ends; once all is zero, load and launch.
void rebuild_step(Vcpu &v)
{
    Guest &g = *v.guest;
    const u64 t0 = x86::rdtsc(), end = t0 + slice_tsc_;
    constexpr u64 CHUNK = 16 * KiB;   // small enough to stop near the slice's end even when emulated
    while (g.zero_block < g.nblocks) {
        const Guest::Block &b = g.blocks[g.zero_block];
        const u64 size = PAGE_SIZE << b.order, n = min(size - g.zero_off, CHUNK);
        __builtin_memset(mm::phys_ptr<u8>(b.pa) + g.zero_off, 0, n);
        g.zero_off += n;
        if (g.zero_off == size) g.zero_block++, g.zero_off = 0;
        if (x86::rdtsc() >= end) break;
    }
    if (g.zero_block < g.nblocks) {
        g.rebuild_tsc += x86::rdtsc() - t0;
        v.ready_since = x86::rdtsc();
        rq_[v.cpu].push(&v);
        return;
    }
    const bool ok = create(g, true);
    g.rebuild_tsc += x86::rdtsc() - t0;
    if (!ok) {
        release(g);   // (create releases only what it reserved itself)
        return restart_failed(g);
    }
    launch(g);
}

namespace {

// The last vCPU of a stopping guest is off its CPU: account, free, maybe restart.
void finish(Guest &g)
{
    {
        Guard io(g.platform.io_lock);
        g.uart->flush();
    }
    print_stats(g);
    for (u32 i = 0; i < g.nvcpus; i++) __atomic_fetch_sub(&rq_[g.vcpus[i].cpu].placed, 1, __ATOMIC_RELAXED);
    release(g);
    bool again = !g.held && (g.reboot || g.cfg->on_exit == GuestConfig::OnExit::restart);
    const u64 now = x86::rdtsc(), ms = max<u64>(time::tsc_hz() / 1000, 1);
    if (again && !g.reboot && g.cfg->max_restarts) {
        // max_restarts per restart_window (the window opens at the first restart in it).
        const u64 window = g.cfg->restart_window_ns / 1000000 * ms;
        if (!g.window_tsc || now - g.window_tsc >= window) g.window_tsc = now, g.window_restarts = 0;
        if (g.window_restarts == g.cfg->max_restarts) {
            log_error("guest %s: %u restarts within %lu ms (max_restarts): stopped", g.name, g.window_restarts,
                      g.cfg->restart_window_ns / 1000000);
            again = false;
        } else {
            g.window_restarts++;
        }
    }
    if (again) {
        g.restarts++;
        const char *why = g.reboot ? "it asked to reboot" : "on_exit = restart";
        g.quick_restarts = (now - g.started_tsc) / ms < RESTART_YOUNG_MS ? g.quick_restarts + 1 : 0;
        if (g.quick_restarts <= RESTART_FREE) return restart(g, why);
        const u32 k = min<u32>(g.quick_restarts - RESTART_FREE - 1, 16);
        const u64 delay = min<u64>(10ull << k, RESTART_MAX_DELAY_MS);
        log_warn("guest %s: %u quick restarts in a row: next start in %lu ms", g.name, g.quick_restarts, delay);
        __atomic_store_n(&g.restart_at, now + delay * ms, __ATOMIC_RELEASE);
        return;   // the CPU loop starts it when the time comes (restart_due)
    }
    g.state = Guest::State::ended;
    if (__atomic_sub_fetch(&live_guests_, 1, __ATOMIC_ACQ_REL) == 0) all_guests_ended();
}

} // namespace

// On the vCPU's own CPU (or for one that never ran).
void vcpu_stopped(Vcpu &v)
{
    v.arch->retire();
    v.state = Vcpu::State::stopped;
    if (__atomic_sub_fetch(&v.guest->live, 1, __ATOMIC_ACQ_REL) == 0) finish(*v.guest);
}

// The guest ends: say why once. vCPUs that never ran stop now; halted ones are found by
// their own CPU's next look at its sleepers (their hardware state lives there); running
// ones stop at their next exit.
void end_guest(Guest &g, u32 code, const char *why, u64 addr, bool reboot)
{
    Vcpu *stop_now[MAX_VCPUS];
    u32 n = 0;
    {
        Guard lk(g.lock);
        if (g.state != Guest::State::running) return;
        g.state = Guest::State::stopping;
        g.platform.attend(GuestPlatform::ATTN_STATE);   // its vCPUs in their backends' loops come out
        g.exit_code = code;
        g.why = why;
        g.why_addr = addr;
        {
            Guard io(g.platform.io_lock);   // a vCPU on another CPU may be writing to it
            g.uart->flush();
        }
        g.reboot = reboot;
        if (reboot) log_info("guest %s reboots", g.name);
        else if (why && addr == NO_ADDR) log_error("guest %s stopped: %s", g.name, why);
        else if (why) log_error("guest %s stopped: %s 0x%lx", g.name, why, addr);
        else log_info("guest %s exited code=%u", g.name, code);
        for (u32 i = 0; i < g.nvcpus; i++)
            if (g.vcpus[i].state == Vcpu::State::idle) stop_now[n++] = &g.vcpus[i];
    }
    for (u32 i = 0; i < n; i++) vcpu_stopped(*stop_now[i]);
    resume_vcpus(g);   // parked vCPUs of a paused guest go back to their CPUs, to be stopped there
}

// Delayed restarts are made by the CPU the guest's boot vCPU last ran on.
void restart_due(u32 cpu_index)
{
    const u64 now = x86::rdtsc();
    for (u32 i = 0; i < config_.guest_count; i++) {
        Guest &g = guests_[i];
        u64 at = __atomic_load_n(&g.restart_at, __ATOMIC_ACQUIRE);
        if (!at || now < at || g.vcpus[0].cpu != cpu_index) continue;
        if (!__atomic_compare_exchange_n(&g.restart_at, &at, 0, false, __ATOMIC_ACQ_REL,
                                         __ATOMIC_RELAXED))
            continue;
        restart(g, "on_exit = restart");
    }
}

} // namespace hv

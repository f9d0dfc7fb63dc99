// The management console on Keel's serial line, and the guests' watchdogs.
//
// Both run on the boot CPU only, at its ticks (an exit for the host's timer,
// or a wake-up when it idles): input is read without waiting, a whole line is
// executed there and then, and no CPU that runs guests ever waits for the
// operator. Replies are whole lines through the console lock, so they never
// interleave with guests' lines. The language is kernel/mgmt/command.hpp;
// docs/OPERATING.md is the operator's side.
#include "arch/x86_64/insn.hpp"
#include "arch/x86_64/irq.hpp"
#include "arch/x86_64/time.hpp"
#include "kernel/hv/internal.hpp"
#include "kernel/lib/console.hpp"
#include "kernel/lib/format.hpp"
#include "kernel/mgmt/command.hpp"

namespace hv {
namespace {

mgmt::LineReader reader_;

u64 ms_of(u64 tsc) { return tsc / max<u64>(time::tsc_hz() / 1000, 1); }

const char *state_name(const Guest &g)
{
    switch (Guest::State(__atomic_load_n(reinterpret_cast<const u8 *>(&g.state), __ATOMIC_ACQUIRE))) {
    case Guest::State::running: return __atomic_load_n(&g.paused, __ATOMIC_RELAXED) ? "paused" : "running";
    case Guest::State::stopping: return "restarting";   // (stopping for good is brief: finish() ends it)
    case Guest::State::ended: return "stopped";
    case Guest::State::free: break;
    }
    return "free";
}

Guest *find(StrView name)
{
    for (u32 i = 0; i < config_.guest_count; i++)
        if (name.eq(guests_[i].name)) return &guests_[i];
    console::reply("console: no guest named '%.*s' (try list)", int(name.n), name.p);
    return nullptr;
}

bool running(Guest &g)
{
    return Guest::State(__atomic_load_n(reinterpret_cast<u8 *>(&g.state), __ATOMIC_ACQUIRE)) == Guest::State::running;
}

void list()
{
    const u64 now = x86::rdtsc();
    for (u32 i = 0; i < config_.guest_count; i++) {
        Guest &g = guests_[i];
        char cpus[96];
        usize k = 0;
        cpus[0] = '\0';
        for (u32 j = 0; j < g.cfg->cpus && j < MAX_VCPUS; j++)
            k = min(k + format(cpus + k, sizeof(cpus) - k, j ? ",%u" : "%u", g.vcpus[j].cpu), sizeof(cpus) - 1);
        const bool up = running(g);
        const u64 up_ms = up ? ms_of(now - g.started_tsc) : 0;
        console::reply("guest %s state=%s vcpus=%u cpus=%s memory_mib=%lu uptime_ms=%lu starts=%u restarts=%u%s", g.name,
                       state_name(g), g.cfg->cpus, cpus, g.cfg->memory / MiB, up_ms, g.starts, g.restarts,
                       g.cfg->watchdog_ns ? (g.beat_tsc ? " watchdog=armed" : " watchdog=waiting") : "");
    }
}

void stats(StrView name)
{
    if (!name.empty()) {
        Guest *g = find(name);
        if (!g) return;
        if (!running(*g)) return console::reply("console: guest %s is %s: no statistics", g->name, state_name(*g));
        return print_stats(*g, true);
    }
    for (u32 i = 0; i < config_.guest_count; i++)
        if (running(guests_[i])) print_stats(guests_[i], true);
}

void stop(Guest &g)
{
    if (!running(g)) return console::reply("console: guest %s is %s", g.name, state_name(g));
    g.held = true;
    end_guest(g, ~0u, "by the operator", NO_ADDR);
}

void start(Guest &g)
{
    // A guest on its way to a restart (on_exit, reboot) is left to it; a held or failed one starts.
    if (__atomic_load_n(&g.restart_at, __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&g.restart_at, x86::rdtsc(), __ATOMIC_RELEASE);   // its delayed restart: now
        return console::reply("console: guest %s starts now", g.name);
    }
    if (g.state != Guest::State::ended) return console::reply("console: guest %s is %s", g.name, state_name(g));
    g.held = false;
    g.window_restarts = 0;
    __atomic_fetch_add(&live_guests_, 1, __ATOMIC_ACQ_REL);
    restart(g, "the operator started it");
}

void restart_cmd(Guest &g)
{
    if (g.state == Guest::State::ended) return start(g);
    if (!running(g)) return console::reply("console: guest %s is %s", g.name, state_name(g));
    g.held = false;
    end_guest(g, 0, nullptr, 0, true);   // as a reboot: started again whatever on_exit says
}

void pause(Guest &g)
{
    {
        Guard lk(g.lock);
        if (g.state != Guest::State::running) return console::reply("console: guest %s is %s", g.name, state_name(g));
        if (g.paused) return console::reply("console: guest %s is already paused", g.name);
        g.paused = true;
        g.platform.attend(GuestPlatform::ATTN_PAUSE);
    }
    log_info("guest %s paused by the operator", g.name);
}

void resume(Guest &g)
{
    {
        Guard lk(g.lock);
        if (g.state != Guest::State::running || !g.paused)
            return console::reply("console: guest %s is %s", g.name, state_name(g));
    }
    if (g.beat_tsc) g.beat_tsc = x86::rdtsc();   // a pause is not a missed heartbeat
    resume_vcpus(g);
    log_info("guest %s resumed by the operator", g.name);
}

void execute(StrView line)
{
    console::reply("> %.*s", int(line.n), line.p);
    mgmt::Command c;
    if (const char *why = mgmt::parse_command(line, c)) return console::reply("console: %s", why);
    Guest *g = nullptr;
    switch (c.verb) {
    case mgmt::Verb::help:
        for (usize i = 0; i < mgmt::HELP_LINES; i++) console::reply("  %s", mgmt::HELP[i]);
        return;
    case mgmt::Verb::list: return list();
    case mgmt::Verb::stats: return stats(c.guest);
    case mgmt::Verb::log:
        console::set_level(c.level);
        return console::reply("console: log level %.*s", int(line.n - 4), line.p + 4);
    default: break;
    }
    if (!(g = find(c.guest))) return;
    switch (c.verb) {
    case mgmt::Verb::stop: return stop(*g);
    case mgmt::Verb::start: return start(*g);
    case mgmt::Verb::restart: return restart_cmd(*g);
    case mgmt::Verb::pause: return pause(*g);
    case mgmt::Verb::resume: return resume(*g);
    default: return;
    }
}

// Each running guest with a watchdog: armed by its first heartbeat, it fires when the next does
// not come within the period (a paused guest's clock stands still: resume re-arms it).
void watchdogs()
{
    const u64 now = x86::rdtsc();
    for (u32 i = 0; i < config_.guest_count; i++) {
        Guest &g = guests_[i];
        if (!g.cfg || !g.cfg->watchdog_ns || !running(g) || !g.heartbeat || __atomic_load_n(&g.paused, __ATOMIC_RELAXED))
            continue;
        const u64 beats = g.heartbeat->beats();
        if (beats != g.beats_seen) {
            if (!g.beat_tsc) log_info("guest %s: watchdog armed (%lu ms)", g.name, g.cfg->watchdog_ns / 1000000);
            g.beats_seen = beats;
            g.beat_tsc = now;
            continue;
        }
        if (g.beat_tsc && ms_of(now - g.beat_tsc) >= g.cfg->watchdog_ns / 1000000) {
            g.beat_tsc = 0;
            end_guest(g, ~0u, "watchdog: no heartbeat in time", NO_ADDR);
        }
    }
}

} // namespace

void manage_poll()
{
    if (!started_) return;
    // A bounded number of bytes per tick (the UART's FIFO holds 16): a flood cannot keep this CPU.
    for (u32 i = 0; i < 64; i++) {
        u8 c;
        if (!console::read_byte(c)) break;
        switch (reader_.feed(c)) {
        case mgmt::LineReader::Got::line: execute(reader_.line()); break;
        case mgmt::LineReader::Got::too_long:
            console::reply("console: line too long (at most %zu bytes): ignored", mgmt::MAX_LINE);
            break;
        case mgmt::LineReader::Got::bad_byte: console::reply("console: control characters in line: ignored"); break;
        case mgmt::LineReader::Got::none: break;
        }
    }
    watchdogs();
    iommu_poll();
    u8 stray_vector;
    if (const u64 strays = irq_take_strays(stray_vector))
        log_warn("%lu stray interrupt%s (last on vector 0x%02x): no handler, acknowledged", strays,
                 strays == 1 ? "" : "s", stray_vector);
}

} // namespace hv

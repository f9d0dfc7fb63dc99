// A guest's UART lines on Keel's console: its name before each, and a rate
// limit so one guest cannot hold the console every guest and Keel share.
#include "arch/x86_64/insn.hpp"
#include "arch/x86_64/time.hpp"
#include "kernel/hv/internal.hpp"
#include "kernel/lib/console.hpp"
#include "kernel/lib/format.hpp"

namespace hv {

void guest_line(void *ctx, const char *line, usize n)
{
    auto *g = static_cast<Guest *>(ctx);
    const u64 now = x86::rdtsc(), per_line = max<u64>(time::tsc_hz() / CONSOLE_PER_SEC, 1);
    if (now > g->con_refill_tsc) {
        g->con_tokens = min(g->con_tokens + (now - g->con_refill_tsc) / per_line, CONSOLE_BURST);
        g->con_refill_tsc += (now - g->con_refill_tsc) / per_line * per_line;
    }
    if (!g->con_tokens) {
        if (g->con_dropped++ == 0) log_warn("guest %s: console rate limit: lines dropped", g->name);
        return;
    }
    g->con_tokens--;
    if (g->con_dropped) {
        log_warn("guest %s: %lu console lines dropped", g->name, g->con_dropped);
        g->con_dropped = 0;
    }
    char buf[200];
    usize k = format(buf, sizeof(buf), "[%s] %.*s\n", g->name, int(n), line);
    console::write(buf, min(k, sizeof(buf) - 1));
}

} // namespace hv

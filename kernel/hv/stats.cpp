// Per-vCPU accounting (kept in TSC ticks on the exit path), printed when a
// guest ends and every stats_interval seconds.
#include "arch/x86_64/insn.hpp"
#include "arch/x86_64/time.hpp"
#include "kernel/guest/vm_exits.hpp"
#include "kernel/hv/internal.hpp"
#include "kernel/lib/console.hpp"
#include "kernel/lib/format.hpp"

namespace hv {
namespace {

// Accounting is kept in TSC ticks (cheap on the exit path) and converted when printed.
u64 tsc_to_us(u64 t) { return t / max<u64>(time::tsc_hz() / 1000000, 1); }

} // namespace

void print_stats(Guest &g, bool asked)
{
    for (u32 i = 0; i < g.nvcpus; i++) {
        const VcpuStats &s = g.vcpus[i].stats;
        char reasons[256];
        usize k = 0;
        for (u8 r = 0; r < u8(ExitReason::count); r++)
            if (s.by_reason[r])
                k = min(k + format(reasons + k, sizeof(reasons) - k, " %s=%lu", exit_reason_name(ExitReason(r)),
                                   s.by_reason[r]),
                        sizeof(reasons) - 1);
        // NMIs: those sent to the vCPU, and those it took (fewer when they merged while one waited).
        const VcpuIrq &irq = g.vcpus[i].irq;
        if (irq.nmis_received)
            k = min(k + format(reasons + k, sizeof(reasons) - k, " nmi_received=%lu nmi_injected=%lu",
                               irq.nmis_received, irq.nmis_injected),
                    sizeof(reasons) - 1);
        reasons[k] = '\0';
        // Shares of the time since this start (per mille, printed as a percentage with one decimal).
        const u64 up = max<u64>(x86::rdtsc() - g.started_tsc, 1);
        const u64 run_pm = min<u64>(s.run_tsc * 1000 / up, 1000), ready_pm = min<u64>(s.ready_tsc * 1000 / up, 1000);
        console::report(asked, Level::info, "stats %s vcpu=%u cpu=%u run_us=%lu ready_us=%lu run_pct=%lu.%lu ready_pct=%lu.%lu exits=%lu%s",
                       g.name, i, g.vcpus[i].cpu, tsc_to_us(s.run_tsc), tsc_to_us(s.ready_tsc), run_pm / 10,
                       run_pm % 10, ready_pm / 10, ready_pm % 10, s.exits, reasons);
        if (i == 0 && g.rebuild_tsc)
            console::report(asked, Level::info, "stats %s rebuild_us=%lu starts=%u", g.name, tsc_to_us(g.rebuild_tsc), g.starts);
        if (i == 0 && g.platform.bad_accesses)
            console::report(asked, Level::info, "stats %s bad_access=%lu pages=%lu", g.name, g.platform.bad_accesses, u64(g.platform.nbad_pages));
    }
    for (u32 i = 0; i < g.ndisks; i++) {
        const virtio::BlkStats d = g.disks[i].blk->stats();
        console::report(asked, Level::info, "stats %s disk=%u requests=%lu read_bytes=%lu written_bytes=%lu flushes=%lu errors=%lu service_us=%lu "
                 "max_service_us=%lu",
                 g.name, i, d.requests, d.bytes_read, d.bytes_written, d.flushes, d.errors, tsc_to_us(d.service_ticks),
                 tsc_to_us(d.max_service_ticks));
    }
    print_nic_stats(g, asked);
    print_passthrough_stats(g, asked);
}

} // namespace hv

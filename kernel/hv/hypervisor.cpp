// Keel's hypervisor core: its state and start(). The rest of the core is in
// the files listed in internal.hpp.
#include "kernel/hv/hypervisor.hpp"

#include "arch/x86_64/guest_state.hpp"
#include "arch/x86_64/insn.hpp"
#include "arch/x86_64/mm.hpp"
#include "arch/x86_64/power.hpp"
#include "arch/x86_64/smp.hpp"
#include "arch/x86_64/time.hpp"
#include "kernel/hv/internal.hpp"
#include "kernel/lib/console.hpp"
#include "kernel/lib/format.hpp"
#include "kernel/security/mitigations.hpp"

namespace hv {

constinit KeelConfig config_{};
constinit Guest guests_[KeelConfig::MAX_GUESTS]{};
constinit RunQueue rq_[MAX_CPUS]{};
u32 ncpus_;
u64 slice_tsc_;
u64 tick_tsc_;                            // the scheduler's tick (1 ms) in TSC ticks
u32 live_guests_;
u64 stats_every_tsc_;                     // "stats_interval=N" on Keel's command line: periodic statistics
u64 stats_next_;
const BootInfo *boot_;
bool started_;

[[noreturn]] void start(const BootInfo &bi, const Cmdline &cmdline)
{
    boot_ = &bi;
    ncpus_ = smp::online();
    const char *why = nullptr;
    if (virt::init_boot_cpu(why) == virt::Vendor::none) {
        log_error("virtualization unavailable: %s; Keel stays up without guests", why);
        smp::idle();
    }
    smp::run_on_aps([] {
        if (auto s = virt::init_cpu(); !s) {
            log_error("cpu %u: cannot enable virtualization: %s", cpu()->index, err_name(s.error()));
            smp::idle();
        }
        cpu_loop();
    });

    {
        char m[96];
        describe_mitigations(gstate::mitigations(), m, sizeof(m));
        log_info("hardening: %sretpoline stack_protector; guest state switched: xsave=%s dr spec_ctrl=%s", m,
                 gstate::has_xsave() ? "yes" : "fxsave", gstate::mitigations().spec_ctrl ? "yes" : "no");
    }

    const BootModule *cfg = nullptr;
    for (usize i = 0; i < bi.module_count; i++) {
        StrView s{bi.modules[i].string, bi.modules[i].len};
        if (s.eq("keel.toml")) cfg = &bi.modules[i];
    }
    if (!cfg) {
        log_info("virtualization: %s on %u CPUs; no configuration module (keel.toml): no guests",
                 virt::vendor_name(), ncpus_);
        cpu_loop();
    }
    ConfigError err{};
    const char *text = mm::phys_ptr<const char>(cfg->start);
    const usize len = cfg->end - cfg->start;
    if (auto s = parse_config(text, len, config_, err); !s) {
        log_config_error(err);
        // A refused configuration still says what to do when nothing runs, if its on_idle
        // line can be read on its own (wherever the error is): power off, with a failure code.
        if (config_on_idle(text, len) == KeelConfig::OnIdle::poweroff) {
            constexpr u8 CONFIG_REFUSED = 1;
            log_error("configuration refused: powering off (failure code %u)", CONFIG_REFUSED);
            u64 port = 0;
            if (cmdline.has("debug_exit") && (!cmdline.get_u64("debug_exit", port) || port == 0 || port > 0xffff)) {
                log_error("debug_exit: not an I/O port 0x1..0xffff: ignored");
                port = 0;
            }
            power::off_failed(boot_acpi(), u16(port), CONFIG_REFUSED);
        }
        cpu_loop();
    }
    if (config_.has_loglevel) console::set_level(config_.loglevel);
    slice_tsc_ = time::tsc_hz() / 1000000 * (config_.time_slice_ns / 1000);
    tick_tsc_ = max<u64>(time::tsc_hz() / 1000, 1);
    log_info("virtualization: %s on %u CPUs; %u guest%s, time slice %lu us", virt::vendor_name(), ncpus_,
             config_.guest_count, config_.guest_count == 1 ? "" : "s", config_.time_slice_ns / 1000);
    u64 every = 0;
    if (cmdline.get_u64("stats_interval", every) && every) {
        stats_every_tsc_ = every * time::tsc_hz();
        stats_next_ = x86::rdtsc() + stats_every_tsc_;
    }

    init_iommu(storage_needed(config_) || passthrough_needed(config_));
    if (cmdline.has("iommu_selftest")) iommu_selftest();
    if (cmdline.has("iommu_irq_selftest")) {
        StrView v;
        iommu_irq_selftest(cmdline.get("iommu_irq_selftest", v) && v.eq("qemu"));
    }
    if (storage_needed(config_)) init_storage(config_);
    init_sriov(config_);
    claim_passthrough(config_);
    if (cmdline.has("dma_canary")) dma_canary_arm();
    create_networks();
    for (u32 i = 0; i < config_.guest_count; i++) {
        Guest &g = guests_[i];
        g.cfg = &config_.guests[i];
        format(g.name, sizeof(g.name), "%.*s", int(g.cfg->name.n), g.cfg->name.p);
        __atomic_fetch_add(&live_guests_, 1, __ATOMIC_ACQ_REL);
        if (!create(g)) {
            g.state = Guest::State::ended;
            __atomic_fetch_sub(&live_guests_, 1, __ATOMIC_ACQ_REL);
        }
    }
    // All guests are built before any runs, so they really run side by side.
    for (u32 i = 0; i < config_.guest_count; i++)
        if (guests_[i].state == Guest::State::running) launch(guests_[i]);
    started_ = true;
    if (__atomic_load_n(&live_guests_, __ATOMIC_ACQUIRE) == 0) all_guests_ended();
    cpu_loop();
}

} // namespace hv

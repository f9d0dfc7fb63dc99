#include "arch/x86_64/smp.hpp"

#include "arch/x86_64/insn.hpp"
#include "arch/x86_64/irq.hpp"
#include "arch/x86_64/lapic.hpp"
#include "arch/x86_64/mm.hpp"
#include "arch/x86_64/time.hpp"
#include "kernel/lib/console.hpp"

extern "C" char trampoline_start[], trampoline_end[];
extern "C" char t_gdtr[], t_far32[], t_far64[], t_cr3[], t_stack[], t_cpu[], t_entry[], t_kcr3[];
extern "C" char ap_start64[];
extern "C" char t_pm32_off[], t_lm64_off[], t_gdt_off[];
extern "C" char boot_pml4[];

namespace smp {
namespace {

Cpu cpus_[MAX_CPUS];
void (*ap_work_)();
unsigned ncpus_ = 1;
unsigned online_;

constexpr unsigned TIMER_HZ = 1000;   // the scheduler's tick: time slices are whole ticks

// The watchdog: once a second each CPU looks at the next online CPU's tick count. A CPU that
// took no timer interrupt for 2 s is stuck with interrupts off: in Keel, or in a guest that
// never exits (a microcode loop). Reported once, with where it was. (Keel enables interrupts
// only where it holds no lock, so reporting from here cannot deadlock on the console.)
void watchdog(Cpu &c)
{
    if (ncpus_ < 2) return;
    Cpu &o = cpus_[(c.index + 1) % ncpus_];
    if (o.index != 0 && !__atomic_load_n(&o.online, __ATOMIC_ACQUIRE)) return;   // the boot CPU is always up
    const u64 t = __atomic_load_n(&o.ticks, __ATOMIC_RELAXED);
    if (t != c.wd_seen) {
        c.wd_seen = t;
        c.wd_quiet = 0;
        c.wd_reported = false;
        return;
    }
    if (++c.wd_quiet >= 2 && !c.wd_reported) {
        c.wd_reported = true;
        const char *g = __atomic_load_n(&o.running, __ATOMIC_ACQUIRE);
        log_error("watchdog: cpu %u has taken no timer interrupt for %u s (%s%s)", o.index, c.wd_quiet,
                  g ? "in guest " : "in Keel", g ? g : "");
    }
}

void on_timer(Frame &)
{
    Cpu *c = cpu();
    const u64 t = __atomic_add_fetch(&c->ticks, 1, __ATOMIC_RELAXED);
    lapic::eoi();
    if (t % TIMER_HZ == 0) watchdog(*c);
}

template <class T> void patch(u8 *page, const char *field, T v)
{
    __builtin_memcpy(page + (field - trampoline_start), &v, sizeof(v));
}

bool start_one(Cpu &c)
{
    PhysAddr tp = mm::trampoline_page();
    auto stack = mm::alloc_stack(CPU_STACK_SIZE);
    if (!stack) return false;
    c.stack_top = *stack;

    u8 *page = mm::phys_ptr<u8>(tp);
    usize len = usize(trampoline_end - trampoline_start);
    __builtin_memcpy(page, trampoline_start, len);
    u32 base = u32(tp.raw());
    patch<u32>(page, t_gdtr + 2, base + u32(reinterpret_cast<u64>(t_gdt_off)));
    patch<u32>(page, t_far32, base + u32(reinterpret_cast<u64>(t_pm32_off)));
    patch<u32>(page, t_far64, base + u32(reinterpret_cast<u64>(t_lm64_off)));
    patch<u64>(page, t_cr3, reinterpret_cast<u64>(boot_pml4) - KERNEL_VMA);
    patch<u64>(page, t_stack, c.stack_top);
    patch<u64>(page, t_cpu, reinterpret_cast<u64>(&c));
    patch<u64>(page, t_entry, reinterpret_cast<u64>(ap_start64));
    patch<u64>(page, t_kcr3, mm::kernel_cr3());

    // INIT, 10 ms, SIPI, 200 us, and a second SIPI only if the first was missed (SDM 8.4.4.1).
    if (!lapic::send_init(c.apic_id)) return false;
    time::delay_us(10000);
    for (int i = 0; i < 2 && !__atomic_load_n(&c.online, __ATOMIC_ACQUIRE); i++) {
        if (!lapic::send_sipi(c.apic_id, tp.raw())) return false;
        // Emulators can be slow to schedule a new CPU: wait long for it, but bounded.
        for (unsigned w = 0; w < (i ? 20000 : 200) && !__atomic_load_n(&c.online, __ATOMIC_ACQUIRE); w++)
            time::delay_us(100);
    }
    return __atomic_load_n(&c.online, __ATOMIC_ACQUIRE);
}

} // namespace

// Where an AP lands in the kernel, on its own stack and Keel's page tables (see ap_start64).
[[noreturn]] void ap_main(Cpu *c)
{
    if (!setup_cpu(*c)) x86::halt_forever();
    __atomic_store_n(&c->online, true, __ATOMIC_RELEASE);
    __atomic_fetch_add(&online_, 1, __ATOMIC_RELEASE);
    idle();
}

Cpu &boot_cpu() { return cpus_[0]; }

u32 apic_id(unsigned index) { return cpus_[index < MAX_CPUS ? index : 0].apic_id; }

[[noreturn]] void idle()
{
    for (;;) {
        x86::sti_hlt();
        x86::cli();
        auto fn = __atomic_load_n(&ap_work_, __ATOMIC_ACQUIRE);
        if (fn && cpu()->index != 0) fn();
    }
}

void run_on_aps(void (*fn)()) { __atomic_store_n(&ap_work_, fn, __ATOMIC_RELEASE); }
unsigned online() { return __atomic_load_n(&online_, __ATOMIC_ACQUIRE); }

Status setup_cpu(Cpu &c)
{
    cpu_setup::load(c);
    cpu_setup::enable_features();
    for (unsigned i = 0; i < 3; i++) {
        auto ist = mm::alloc_stack(IST_STACK_SIZE);
        if (!ist) return ist.error();
        c.tss.ist[i] = *ist;
    }
    lapic::enable();
    if (c.index == 0) {
        register_irq(vec::TIMER, on_timer);
        lapic::calibrate_timer(time::tsc_hz());
    }
    lapic::start_timer(vec::TIMER, TIMER_HZ);
    c.apic_id = lapic::id();
    return {};
}

unsigned start_aps(const Madt &madt)
{
    __atomic_store_n(&online_, 1u, __ATOMIC_RELEASE);   // the boot CPU
    if (!madt.present) {
        log_warn("no MADT: running on the boot CPU only");
        return online_;
    }
    if (!mm::trampoline_page().raw()) return online_;
    u32 self = lapic::id();
    for (usize i = 0; i < madt.cpu_count; i++) {
        const MadtCpu &m = madt.cpus[i];
        if (!m.usable || m.apic_id == self) continue;
        if (!lapic::x2apic() && m.apic_id > 0xfe) {
            log_warn("CPU with APIC id %u needs x2APIC mode: not started", m.apic_id);
            continue;
        }
        if (ncpus_ == MAX_CPUS) {
            log_warn("more than %u CPUs: the rest stay off", MAX_CPUS);
            break;
        }
        // A slot is never reused, even if its CPU failed to start: it might still wake up late.
        Cpu &c = cpus_[ncpus_];
        c.index = ncpus_++;
        c.apic_id = m.apic_id;
        if (start_one(c)) {
            log_debug("cpu %u online (APIC id %u)", c.index, c.apic_id);
        } else {
            log_error("CPU with APIC id %u did not start", m.apic_id);
        }
    }
    return online();
}

} // namespace smp

extern "C" [[noreturn]] void ap_entry(Cpu *c) { smp::ap_main(c); }

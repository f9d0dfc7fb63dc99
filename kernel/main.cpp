// Keel's boot flow on the boot CPU: console, memory, ACPI, time, SMP, ready.
#include "arch/x86_64/cpu.hpp"
#include "arch/x86_64/insn.hpp"
#include "arch/x86_64/lapic.hpp"
#include "arch/x86_64/mm.hpp"
#include "arch/x86_64/smp.hpp"
#include "arch/x86_64/time.hpp"
#include "drivers/uart16550.hpp"
#include "kernel/firmware/acpi.hpp"
#include "kernel/firmware/cmdline.hpp"
#include "kernel/firmware/multiboot2.hpp"
#include "kernel/hv/hypervisor.hpp"
#include "kernel/lib/bytes.hpp"
#include "kernel/lib/console.hpp"
#include "kernel/lib/format.hpp"
#include "kernel/lib/version.hpp"
#include "kernel/mem/frame_alloc.hpp"

namespace {

constexpr u32 MB2_BOOTED = 0x36d76289;

Uart16550 uart;
BootInfo boot_info;
Acpi acpi;
Cmdline cmdline;

void uart_sink(const char *s, usize n) { uart.write(s, n); }
bool uart_source(u8 &c) { return uart.read(c); }

void setup_console()
{
    u64 port = 0x3f8;
    StrView v;
    if (cmdline.get("console", v)) {
        static const u16 com[] = {0x3f8, 0x2f8, 0x3e8, 0x2e8};
        if (v.eq("none")) port = 0;
        else if (v.n == 4 && v.p[0] == 'c' && v.p[1] == 'o' && v.p[2] == 'm' && v.p[3] >= '1' && v.p[3] <= '4')
            port = com[v.p[3] - '1'];
        else if (!parse_u64(v, port) || port > 0xfff8) port = 0x3f8;   // bad value: fall back to COM1
    }
    if (port && uart.init(u16(port))) {
        console::set_sink(uart_sink);
        console::set_source(uart_source);
    }
    Level l;
    if (cmdline.get("loglevel", v) && console::parse_level(v.p, v.n, l)) console::set_level(l);
}

// ACPI tables are read through the direct map, or mapped on demand when firmware keeps them elsewhere.
struct FirmwareMemory final : AcpiMemory {
    const u8 *map(PhysAddr pa, usize len) override
    {
        return reinterpret_cast<const u8 *>(mm::map_firmware(pa, len).raw());
    }
};

void setup_acpi()
{
    usize len = 0;
    const u8 *rsdp = boot_info.rsdp(&len);
    if (!rsdp) {
        log_warn("the boot loader passed no ACPI RSDP: one CPU, no ACPI devices");
        return;
    }
    FirmwareMemory fw;
    auto s = acpi_parse(fw, rsdp, len, acpi);
    if (!s) {
        log_error("ACPI: unusable tables (%s): one CPU, no ACPI devices", err_name(s.error()));
        return;
    }
    char sigs[Acpi::MAX_TABLES * 5 + 1];
    usize k = 0;
    for (usize i = 0; i < acpi.table_count; i++) {
        for (char c : acpi.tables[i].sig) sigs[k++] = c;
        sigs[k++] = ' ';
    }
    sigs[k ? k - 1 : 0] = '\0';
    log_info("ACPI rev %u (%s): %s", acpi.revision, acpi.xsdt ? "XSDT" : "RSDT", sigs);
    for (usize i = 0; i < min(acpi.bad_count, Acpi::MAX_BAD); i++)
        log_warn("ACPI table %.4s at %lx rejected: %s", acpi.bad[i].sig, acpi.bad[i].pa.raw(),
                 err_name(acpi.bad[i].err));
    if (acpi.madt.present && acpi.madt.err != Err::none)
        log_warn("ACPI MADT malformed (%s): using the entries before the fault", err_name(acpi.madt.err));
}

// Debug switch: take an exception on purpose so tests can check the report.
void debug_fault()
{
    StrView v;
    if (!cmdline.get("debug_fault", v)) return;
    log_info("taking a deliberate exception: %.*s", int(v.n), v.p);
    if (v.eq("ud")) asm volatile("ud2");
    if (v.eq("pf")) (void)*reinterpret_cast<volatile u64 *>(0xdead0000000ull);
    if (v.eq("gp")) (void)*reinterpret_cast<volatile u64 *>(0x8000000000000000ull);
    if (v.eq("de")) asm volatile("xor %%ecx, %%ecx; div %%ecx" ::: "eax", "ecx", "edx");
    if (v.eq("df")) asm volatile("mov $0x1000, %%rsp; push %%rax" ::: "memory");   // #PF cannot be delivered
    log_error("unknown debug_fault '%.*s' (ud, pf, gp, de, df)", int(v.n), v.p);
}

[[noreturn]] void boot_continue()
{
    Cpu &bsp = smp::boot_cpu();
    setup_acpi();
    Gas pm = acpi.fadt.pm_timer();
    u16 pm_port = pm.space == Gas::SYSTEM_IO && pm.address <= 0xfffc ? u16(pm.address) : 0;
    // "nopit" exercises the fallback on machines that have a PIT.
    const char *src = time::calibrate_tsc(pm_port, acpi.fadt.pm_timer_32bit(), !cmdline.has("nopit"));
    log_info("TSC %lu kHz (%s)", time::tsc_hz() / 1000, src);

    lapic::setup(!cmdline.has("nox2apic"));
    if (auto s = smp::setup_cpu(bsp); !s) {
        log_error("boot CPU setup failed: %s", err_name(s.error()));
        x86::halt_forever();
    }
    // Keel drives no 8259: mask both so nothing legacy arrives once interrupts are on.
    x86::outb(0x21, 0xff);
    x86::outb(0xa1, 0xff);
    x86::sti();

    unsigned cpus = smp::start_aps(acpi.madt);

    // The timer must really tick before we call ourselves ready.
    u64 deadline = x86::rdtsc() + time::tsc_hz();
    while (__atomic_load_n(&bsp.ticks, __ATOMIC_RELAXED) < 2 && x86::rdtsc() < deadline) x86::pause();
    if (__atomic_load_n(&bsp.ticks, __ATOMIC_RELAXED) < 2) log_warn("local APIC timer is not ticking");

    auto wx = mm::audit_wx();
    log_info("wx-check mappings=%lu violations=%lu", wx.mappings, wx.violations);
    auto st = mm::stats();
    log_info("frames: %lu managed, %lu free, %lu kernel page-table pages", st.managed_frames, st.free_frames,
             st.table_pages);
    char orders[(FrameAllocator::MAX_ORDER + 1) * 21];
    usize k = 0;
    for (unsigned o = 0; o <= FrameAllocator::MAX_ORDER; o++)
        k = min(k + format(orders + k, sizeof(orders) - k, "%s%lu", o ? " " : "", st.free_blocks[o]), sizeof(orders) - 1);
    log_debug("free blocks by order 0..%u: %s", FrameAllocator::MAX_ORDER, orders);

    debug_fault();

    log_info("ready cpus=%u ram=%lu tsc=%lu apic=%s version=%s", cpus, st.managed_frames * PAGE_SIZE / MiB,
             time::tsc_hz() / 1000000, lapic::x2apic() ? "x2apic" : "xapic", KEEL_VERSION);
    if (cmdline.has("debug_hang")) {
        // For the watchdog's test: this CPU stops taking interrupts for good.
        log_info("debug_hang: cpu 0 spins with interrupts off");
        x86::cli();
        for (;;) x86::pause();
    }
    hv::start(boot_info, cmdline);
}

[[noreturn]] void run_on_stack(u64 top, void (*fn)())
{
    asm volatile("mov %0, %%rsp; xor %%ebp, %%ebp; call *%1; ud2" : : "r"(top), "r"(fn) : "memory");
    __builtin_unreachable();
}

} // namespace

const Acpi &boot_acpi() { return acpi; }

extern "C" u64 __stack_chk_guard;

extern "C" [[noreturn]] void kmain(u32 magic, u32 mbi_phys)
{
    // A canary no one can predict: kmain never returns, so changing it here is safe.
    {
        u64 r = 0;
        bool ok = false;
        if (x86::cpuid(1).c & (1u << 30)) asm volatile("rdrand %0" : "=r"(r), "=@ccc"(ok));
        __stack_chk_guard ^= x86::rdtsc() * 0x9e3779b97f4a7c15ull ^ (ok ? r : 0);
    }
    // Exceptions are reported from the first instruction on.
    Cpu &bsp = smp::boot_cpu();
    cpu_setup::init_idt();
    cpu_setup::load(bsp);

    // The boot page tables map 0-4 GiB at the direct map; GRUB keeps the information below 4 GiB.
    const u8 *mbi = mm::phys_ptr<const u8>(PhysAddr(mbi_phys));
    u32 mbi_size = load_u32(mbi);
    auto parsed = parse_multiboot2(mbi, mbi_size, boot_info);
    if (parsed) cmdline = Cmdline(boot_info.cmdline, boot_info.cmdline_len);
    setup_console();

    log_info("Keel %s, a microhypervisor, loaded by %.*s", KEEL_VERSION,
             int(boot_info.loader_name ? boot_info.loader_name_len : 7),
             boot_info.loader_name ? boot_info.loader_name : "unknown");
    if (magic != MB2_BOOTED || !parsed) {
        log_error("invalid Multiboot2 information (%s): cannot continue", parsed ? "magic" : err_name(parsed.error()));
        x86::halt_forever();
    }
    if (boot_info.cmdline_len) log_info("command line: %.*s", int(boot_info.cmdline_len), boot_info.cmdline);

    if (auto s = mm::init(boot_info, PhysAddr(mbi_phys), mbi_size); !s) {
        log_error("memory setup failed: %s", err_name(s.error()));
        x86::halt_forever();
    }
    auto stack = mm::alloc_stack(CPU_STACK_SIZE);
    if (!stack) {
        log_error("no memory for the boot CPU's stack");
        x86::halt_forever();
    }
    bsp.stack_top = *stack;
    run_on_stack(*stack, boot_continue);
}

#include "kernel/hv/hypervisor.hpp"

#include "arch/x86_64/cpu.hpp"
#include "arch/x86_64/guest_state.hpp"
#include "arch/x86_64/insn.hpp"
#include "arch/x86_64/mm.hpp"
#include "arch/x86_64/power.hpp"
#include "arch/x86_64/smp.hpp"
#include "arch/x86_64/time.hpp"
#include "arch/x86_64/virt.hpp"
#include "kernel/firmware/cmdline.hpp"
#include "kernel/guest/config.hpp"
#include "kernel/guest/guest_acpi.hpp"
#include "kernel/guest/guest_memory.hpp"
#include "kernel/guest/loader_linux.hpp"
#include "kernel/guest/loader_multiboot.hpp"
#include "kernel/guest/vcpu_irq.hpp"
#include "kernel/guest/vm_exits.hpp"
#include "kernel/lib/bytes.hpp"
#include "kernel/lib/console.hpp"
#include "kernel/lib/format.hpp"
#include "kernel/lib/new.hpp"
#include "kernel/lib/spinlock.hpp"
#include "kernel/mem/frame_alloc.hpp"
#include "kernel/vdev/ioapic.hpp"
#include "kernel/vdev/lapic.hpp"
#include "kernel/vdev/pit.hpp"
#include "kernel/vdev/power.hpp"
#include "kernel/vdev/uart.hpp"

extern const Acpi &boot_acpi();

namespace hv {
namespace {

constexpr u32 MAX_VCPUS = 16;             // per guest
constexpr u64 LOWMEM_TOP = 3 * GiB;       // guest RAM above this continues at 4 GiB
constexpr usize MAX_BLOCKS = 128;

struct Guest;

struct Vcpu {
    // rebuilding: vCPU 0 stands in the run queue for its guest's restart (zeroing its RAM in slices).
    enum class State : u8 { idle, runnable, running, halted, stopped, rebuilding };

    Guest *guest;
    u32 index;
    u32 cpu;                              // the physical CPU it is placed on (vCPUs do not migrate)
    State state;
    Gprs gprs;
    alignas(16) u8 arch_storage[virt::ARCH_VCPU_STORAGE];
    virt::ArchVcpu *arch;
    VcpuStats stats;
    u64 ready_since;
    Vcpu *next;
    VcpuIrq irq;                          // its local APIC (exit-path shortcut: looked at only when needed)
    bool init_seen;                       // an application processor got INIT: the next SIPI starts it
    bool hung;                            // halted with interrupts off: only the guest's end moves it
    bool ipi_out;                         // the guest wrote its APIC: IPIs or EOIs may be queued
};

// The local APICs' register page and MSRs, routed to the accessing vCPU's model.
class LapicDevice final : public MmioDevice, public MsrDevice {
public:
    void attach(Guest *g) { g_ = g; }
    bool covers(u64 gpa) const override;
    void mmio(u32 vcpu, u64 gpa, u8 size, bool write, u64 &value) override;
    bool rdmsr(u32 vcpu, u32 msr, u64 &value, bool &ok) override;
    bool wrmsr(u32 vcpu, u32 msr, u64 value, bool &ok) override;

private:
    Guest *g_ = nullptr;
};

// The guest's IOAPIC register page.
class IoapicDevice final : public MmioDevice {
public:
    void attach(Guest *g) { g_ = g; }
    bool covers(u64 gpa) const override { return (gpa & ~0xfffull) == IoapicModel::DEFAULT_BASE; }
    void mmio(u32 vcpu, u64 gpa, u8 size, bool write, u64 &value) override;

private:
    Guest *g_ = nullptr;
};

struct Guest {
    enum class State : u8 { free, running, stopping, ended };

    const GuestConfig *cfg;
    char name[GuestConfig::MAX_NAME + 1];
    State state;
    Spinlock lock;
    GuestMemory mem;
    struct Block { PhysAddr pa; u8 order; } blocks[MAX_BLOCKS];
    usize nblocks;
    virt::NestedSpace space;
    GuestPlatform platform;
    CpuProfile profile;                   // its CPU: CPUID and everything that must agree with it
    alignas(UartModel) u8 uart_storage[sizeof(UartModel)];
    alignas(DebugExitModel) u8 exit_storage[sizeof(DebugExitModel)];
    UartModel *uart;
    LapicDevice lapics;
    IoapicDevice ioapic_dev;
    Spinlock ioapic_lock;
    IoapicModel ioapic;
    alignas(PowerModel) u8 power_storage[sizeof(PowerModel)];
    alignas(PitModel) u8 pit_storage[sizeof(PitModel)];
    bool linux;                           // booted by the Linux boot protocol (ACPI platform)
    bool reboot;                          // it asked for a reset: start it again whatever on_exit says
    Vcpu vcpus[MAX_VCPUS];
    u32 nvcpus;
    u32 live;                             // vCPUs not stopped yet
    u32 started;                          // vCPUs that have run (the boot vCPU, APs after SIPI)
    u32 hung;                             // of those, halted with interrupts off
    u32 exit_code;
    u32 starts;
    const char *why;                      // set when Keel stopped it
    u64 why_addr;
    // Console rate limit (a token bucket, under platform.io_lock): one guest cannot hold
    // Keel's console, which every guest and Keel share.
    u64 con_tokens, con_refill_tsc;
    u64 con_dropped;
    // Restarts are bounded: a guest that keeps dying young waits longer each time, so rebuilding
    // it (zeroing and reloading its RAM) cannot take a CPU from its neighbours.
    u64 started_tsc;                      // when the current start began
    u32 quick_restarts;                   // consecutive starts that lived less than RESTART_YOUNG
    u64 restart_at;                       // a restart waits until then (0: none pending)
    u64 rebuild_tsc;                      // time spent rebuilding it, all starts (TSC ticks)
    u32 zero_block;                       // a restart's progress zeroing its RAM: block, offset
    u64 zero_off;
};

constexpr u32 RESTART_FREE = 3;           // quick restarts allowed without delay
constexpr u64 RESTART_YOUNG_MS = 1000;    // a start that ended sooner counts as quick
constexpr u64 RESTART_MAX_DELAY_MS = 5000;

constexpr u64 CONSOLE_BURST = 4000;       // lines a guest may print at once
constexpr u64 CONSOLE_PER_SEC = 1000;     // and then per second

struct RunQueue {
    static constexpr u32 MAX_SLEEPERS = 64;

    Spinlock lock;
    Vcpu *head, *tail;
    u32 placed;                           // vCPUs placed on this CPU (for load balancing at creation)
    Vcpu *sleepers[MAX_SLEEPERS];         // halted vCPUs of this CPU, woken by their timer or an interrupt
    u32 nsleepers;
    u64 sleep_deadline = ~0ull;           // the earliest sleeper's timer (host TSC; ~0 for none)

    void push(Vcpu *v)
    {
        Guard g(lock);
        v->next = nullptr;
        if (tail) tail->next = v;
        else head = v;
        tail = v;
    }
    Vcpu *pop()
    {
        Guard g(lock);
        Vcpu *v = head;
        if (v) {
            head = v->next;
            if (!head) tail = nullptr;
        }
        return v;
    }
};

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

// Accounting is kept in TSC ticks (cheap on the exit path) and converted when printed.
u64 tsc_to_us(u64 t) { return t / max<u64>(time::tsc_hz() / 1000000, 1); }

const BootModule *find_module(StrView path)
{
    for (usize i = 0; i < boot_->module_count; i++) {
        const BootModule &m = boot_->modules[i];
        if (m.len == path.n && __builtin_memcmp(m.string, path.p, path.n) == 0) return &m;
    }
    return nullptr;
}

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

u64 guest_now(Vcpu &v) { return v.arch->guest_tsc(); }

// The guest may move its APICs' page (IA32_APIC_BASE): any vCPU's current page is an APIC page.
bool LapicDevice::covers(u64 gpa) const
{
    for (u32 i = 0; i < g_->nvcpus; i++)
        if (g_->vcpus[i].irq.lapic.xapic_mmio_active() && (gpa & ~0xfffull) == g_->vcpus[i].irq.lapic.mmio_base()) return true;
    return false;
}

void LapicDevice::mmio(u32 vcpu, u64 gpa, u8 size, bool write, u64 &value)
{
    Vcpu &v = g_->vcpus[vcpu];
    Guard lk(v.irq.lock);
    const u64 now = guest_now(v);
    // The APIC's registers are 32 bits wide, 16-byte aligned: other accesses read 0 and write nothing.
    if (size != 4 || (gpa & 3)) {
        if (!write) value = 0;
        return;
    }
    if (!v.irq.lapic.xapic_mmio_active()) {   // disabled or in x2APIC mode: the page is not the APIC
        if (!write) value = ~0u;
        return;
    }
    if (write) v.irq.lapic.mmio_write(u32(gpa & 0xfff), u32(value), now);
    else value = v.irq.lapic.mmio_read(u32(gpa & 0xfff), now);
    v.irq.check = v.ipi_out = true;
}

bool LapicDevice::rdmsr(u32 vcpu, u32 msr, u64 &value, bool &ok)
{
    Vcpu &v = g_->vcpus[vcpu];
    Guard lk(v.irq.lock);
    const u64 now = guest_now(v);
    if (msr == 0x1b) value = v.irq.lapic.apic_base(), ok = true;
    else if (msr == 0x6e0) value = v.irq.lapic.tsc_deadline_read(now), ok = true;
    else if (msr >= LapicModel::MSR_FIRST && msr <= LapicModel::MSR_LAST) ok = v.irq.lapic.msr_read(msr, value, now);
    else return false;
    v.irq.check = true;
    return true;
}

bool LapicDevice::wrmsr(u32 vcpu, u32 msr, u64 value, bool &ok)
{
    Vcpu &v = g_->vcpus[vcpu];
    Guard lk(v.irq.lock);
    const u64 now = guest_now(v);
    if (msr == 0x1b) ok = v.irq.lapic.set_apic_base(value);
    else if (msr == 0x6e0) v.irq.lapic.tsc_deadline_write(value, now), ok = true;
    else if (msr >= LapicModel::MSR_FIRST && msr <= LapicModel::MSR_LAST) ok = v.irq.lapic.msr_write(msr, value, now);
    else return false;
    v.irq.check = v.ipi_out = true;
    return true;
}

// An IOAPIC message: to every local APIC it names (lowest priority: the first of them).
void ioapic_deliver(void *ctx, u32 dest, bool logical, u8 vector, u8 mode, bool level)
{
    Guest &g = *static_cast<Guest *>(ctx);
    if (mode != 0 && mode != 1) return;   // NMI/INIT/SMI/ExtINT through the IOAPIC: not modelled
    for (u32 i = 0; i < g.nvcpus; i++) {
        Vcpu &to = g.vcpus[i];
        Guard lk(to.irq.lock);
        if (!to.irq.lapic.match_dest(dest, logical, true)) continue;
        to.irq.lapic.accept(vector, level);
        __atomic_store_n(&to.irq.check, true, __ATOMIC_RELEASE);
        if (mode == 1) return;
    }
}

void IoapicDevice::mmio(u32 vcpu, u64 gpa, u8 size, bool write, u64 &value)
{
    Guard lk(g_->ioapic_lock);
    if (size != 4 || (gpa & 3)) {
        if (!write) value = 0;
        return;
    }
    if (write) g_->ioapic.mmio_write(u32(gpa & 0xfff), u32(value));
    else value = g_->ioapic.mmio_read(u32(gpa & 0xfff));
}

// Is `to` a destination of this IPI from `from`? (Lowest priority goes to every match: the guest cannot tell.)
bool ipi_hits(const LapicModel::Ipi &ipi, Vcpu &from, Vcpu &to)
{
    switch (ipi.shorthand) {
    case 1: return &to == &from;
    case 2: return true;
    case 3: return &to != &from;
    default: {
        Guard lk(to.irq.lock);
        return to.irq.lapic.match_dest(ipi.dest, ipi.logical);
    }
    }
}

// INIT and start-up IPIs: an application processor that has not run yet (waiting for SIPI)
// starts in real mode at the vector's page, on its own CPU. INIT to a running vCPU is not modelled.
void start_ap(Guest &g, Vcpu &to, u8 delivery, u8 vector)
{
    Guard lk(g.lock);
    if (to.state != Vcpu::State::idle || g.state != Guest::State::running) return;
    if (delivery == 5) {
        Guard al(to.irq.lock);
        to.irq.lapic.init_signal();
        to.init_seen = true;
        return;
    }
    if (!to.init_seen) return;   // a SIPI counts only after an INIT
    to.arch->start_at_sipi(vector);
    to.gprs = Gprs{};
    g.started++;
    to.state = Vcpu::State::runnable;
    to.ready_since = x86::rdtsc();
    rq_[to.cpu].push(&to);
}

// Fixed and lowest-priority IPIs between the guest's own vCPUs (INIT/SIPI need AP start-up: not yet).
void route_ipis(Guest &g, Vcpu &from)
{
    if (!from.ipi_out) return;
    from.ipi_out = false;
    // EOIs of level-triggered vectors go to the IOAPIC (outside the APIC's lock: it may deliver again).
    for (;;) {
        int vec;
        {
            Guard lk(from.irq.lock);
            vec = from.irq.lapic.take_eoi_broadcast();
        }
        if (vec < 0) break;
        Guard lk(g.ioapic_lock);
        g.ioapic.eoi(u8(vec));
    }
    LapicModel::Ipi ipi;
    for (;;) {
        {
            Guard lk(from.irq.lock);
            if (!from.irq.lapic.take_ipi(ipi)) return;
        }
        if (ipi.init_deassert) continue;
        if (ipi.delivery == 5 || ipi.delivery == 6) {   // INIT, start-up
            for (u32 i = 0; i < g.nvcpus; i++)
                if (ipi_hits(ipi, from, g.vcpus[i])) start_ap(g, g.vcpus[i], ipi.delivery, ipi.vector);
            continue;
        }
        if (ipi.delivery != 0 && ipi.delivery != 1) continue;
        for (u32 i = 0; i < g.nvcpus; i++) {
            Vcpu &to = g.vcpus[i];
            if (!ipi_hits(ipi, from, to)) continue;
            Guard lk(to.irq.lock);
            to.irq.lapic.accept(ipi.vector, false);
            __atomic_store_n(&to.irq.check, true, __ATOMIC_RELEASE);
        }
    }
}

// A guest-TSC time of this vCPU as host TSC (the guest's TSC runs at the host's rate, offset).
u64 host_deadline(Vcpu &v, u64 guest_tsc) { return guest_tsc - (guest_now(v) - x86::rdtsc()); }

// A halted vCPU wakes when its local APIC has something for it.
bool wants_to_run(Vcpu &v) { return irq_wanted(v.irq, guest_now(v)); }

void release(Guest &g)
{
    for (u32 i = 0; i < g.nvcpus; i++)
        if (g.vcpus[i].arch) g.vcpus[i].arch->destroy();
    g.space.destroy();
    virt::flush_all_guest_tlbs();   // before the memory can serve anyone else
    for (usize i = 0; i < g.nblocks; i++) mm::free(g.blocks[i].pa, g.blocks[i].order);
    g.nblocks = 0;
    g.mem.clear();
}

// RAM for the guest, reserved up front and zeroed: blocks as large as the
// guest-physical alignment allows, so the nested tables can use 2 MiB/1 GiB pages.
Status build_memory(Guest &g, bool zero)
{
    GuestExtent layout[3];
    usize n = GuestMemory::pc_layout(g.cfg->memory, LOWMEM_TOP, layout);
    for (usize i = 0; i < n; i++) {
        u64 at = layout[i].gpa.raw(), end = layout[i].end();
        while (at < end) {
            unsigned order = 0;
            while (order < FrameAllocator::MAX_ORDER && (at & ((PAGE_SIZE << (order + 1)) - 1)) == 0 &&
                   at + (PAGE_SIZE << (order + 1)) <= end)
                order++;
            if (g.nblocks == MAX_BLOCKS) return Err::range;
            auto b = zero ? mm::alloc_zeroed(order) : mm::alloc(order);
            if (!b) return Err::no_memory;
            g.blocks[g.nblocks++] = {*b, u8(order)};
            const u64 size = PAGE_SIZE << order;
            KEEL_TRY(g.mem.add(GuestPhys(at), size, mm::phys_ptr<u8>(*b)));
            KEEL_TRY(g.space.map(GuestPhys(at), *b, size));
            at += size;
        }
    }
    return {};
}

bool is_bzimage(const u8 *img, u64 size)
{
    return size > 0x260 && load_u16(img + 0x1fe) == 0xaa55 && load_u32(img + 0x202) == 0x53726448;   // "HdrS"
}

constexpr u64 GUEST_ACPI_BASE = 0x9f000;   // the last page below 640 KiB, reserved in the guest's e820

// A Linux guest: its ACPI tables, the PC's legacy area backed (ROM scans read it), the
// bzImage and initrd placed by the boot protocol, a 64-bit entry on the loader's tables.
bool load_linux_guest(Guest &g, const u8 *image, u64 size, virt::EntryState &es, Gprs &regs, char *what, usize n)
{
    const GuestConfig &c = *g.cfg;
    // 0xA0000-0xFFFFF: zeroed backing mapped read/write, but not RAM to the guest (e820 reserved).
    static constexpr struct { u64 gpa; unsigned order; } hole[] = {{0xa0000, 5}, {0xc0000, 6}};
    for (auto h : hole) {
        auto b = mm::alloc_zeroed(h.order);
        if (!b || g.nblocks == MAX_BLOCKS || !g.space.map(GuestPhys(h.gpa), *b, PAGE_SIZE << h.order)) {
            log_error("guest %s: no memory for its legacy area", g.name);
            if (b) mm::free(*b, h.order);
            return false;
        }
        g.blocks[g.nblocks++] = {*b, u8(h.order)};
        if (h.gpa == 0xc0000) {
            // There is no BIOS, but a kernel may reboot by jumping to the reset vector (F000:FFF0):
            // what it finds there writes the ACPI reset register. mov al,6; mov dx,port; out dx,al; hlt; jmp $-1
            const u8 reset_stub[] = {0xb0, PowerModel::RESET_VALUE, 0xba, u8(PowerModel::RESET), u8(PowerModel::RESET >> 8),
                                     0xee, 0xf4, 0xeb, 0xfd};
            __builtin_memcpy(mm::phys_ptr<u8>(*b) + (0xffff0 - 0xc0000), reset_stub, sizeof(reset_stub));
        }
    }

    GuestAcpiConfig ac;
    ac.base = GUEST_ACPI_BASE;
    ac.vcpus = g.nvcpus;
    ac.sleep_ctl_port = PowerModel::SLEEP_CTL;
    ac.sleep_sts_port = PowerModel::SLEEP_STS;
    ac.reset_port = PowerModel::RESET;
    ac.reset_value = PowerModel::RESET_VALUE;
    ac.s5_slp_typ = PowerModel::S5_TYP;
    ac.com1 = true;
    u8 tables[GUEST_ACPI_MAX_BYTES];
    auto layout = build_guest_acpi(ac, tables, sizeof(tables));
    if (!layout || !g.mem.write(GuestPhys(ac.base), tables, layout->size)) {
        log_error("guest %s: cannot build its ACPI tables", g.name);
        return false;
    }

    LinuxLoadParams lp{};
    lp.kernel = image;
    lp.kernel_size = size;
    if (!c.initrd.empty()) {
        const BootModule *rd = find_module(c.initrd);
        if (!rd) {
            log_error("guest %s: initrd '%.*s' is not in the image", g.name, int(c.initrd.n), c.initrd.p);
            return false;
        }
        lp.initrd = mm::phys_ptr<const u8>(rd->start);
        lp.initrd_size = rd->end - rd->start;
    }
    // Linux reads the TSC rate from CPUID 0x15/0x16 only on Intel; on AMD it would calibrate
    // against the PIT with hundreds of exits in a 10 ms window and give up. Say it on the
    // command line too (unless the configuration already does).
    char cmdline[GuestConfig::MAX_CMDLINE + 64];
    StrView user{c.cmdline.p, c.cmdline.n};
    usize len = format(cmdline, sizeof(cmdline), "%.*s", int(user.n), user.p ? user.p : "");
    if (!Cmdline(user.p, user.n).has("tsc_early_khz"))
        len = min(len + format(cmdline + len, sizeof(cmdline) - len, "%stsc_early_khz=%lu", len ? " " : "",
                               time::tsc_hz() / 1000),
                  sizeof(cmdline) - 1);
    // Which start of this guest this is (1, 2, ... across reboots and restarts): lets a guest tell.
    len = min(len + format(cmdline + len, sizeof(cmdline) - len, " keel.boot=%u", g.starts + 1), sizeof(cmdline) - 1);
    lp.cmdline = cmdline;
    lp.cmdline_len = len;
    lp.acpi_rsdp = layout->rsdp;
    lp.reserved[0] = {ac.base, PAGE_SIZE, LINUX_E820_ACPI};
    lp.nreserved = 1;
    LinuxLoadReport rep{};
    auto e = load_linux(g.mem, lp, &rep);
    if (!e) {
        log_error("guest %s: cannot load Linux '%.*s': %s (%s)", g.name, int(c.kernel.n), c.kernel.p, rep.msg,
                  err_name(e.error()));
        return false;
    }
    es.mode = virt::EntryState::Mode::long64;
    es.rip = e->rip;
    es.cr0 = LINUX_ENTRY_CR0;
    es.cr3 = e->cr3;
    es.cr4 = LINUX_ENTRY_CR4;
    es.efer = LINUX_ENTRY_EFER;
    es.gdt_base = e->gdt_base;
    es.gdt_limit = e->gdt_limit;
    es.cs = e->cs;
    es.ds = e->ds;
    regs.rsi = e->rsi;

    g.ioapic.reset();
    g.ioapic.connect(ioapic_deliver, &g);
    g.ioapic_dev.attach(&g);
    g.platform.add_mmio(&g.ioapic_dev);
    g.platform.add_io(new (g.power_storage) PowerModel(g.platform));
    // The PIT is how Linux learns the TSC rate on AMD guests (it reads CPUID 0x15/0x16 only on Intel).
    g.platform.add_io(new (g.pit_storage) PitModel(time::tsc_hz(), [](void *ctx) {
        return static_cast<Guest *>(ctx)->vcpus[0].arch->guest_tsc();
    }, &g));
    format(what, n, "Linux boot protocol %x.%02x, entry %lx", rep.protocol >> 8, rep.protocol & 0xff, e->rip);
    return true;
}

// RAM reserved and mapped for the guest (zeroed, unless a restart zeroes it in slices).
bool create_memory(Guest &g, bool zero)
{
    const GuestConfig &c = *g.cfg;
    g.nblocks = 0;
    if (auto s = g.space.init(); !s) {
        log_error("guest %s: no memory for its nested page tables", g.name);
        return false;
    }
    if (auto s = build_memory(g, zero); !s) {
        auto st = mm::stats();
        log_error("guest %s: cannot reserve %lu MiB of RAM (%lu MiB free): not started", g.name, c.memory / MiB,
                  st.free_frames * PAGE_SIZE / MiB);
        release(g);
        return false;
    }
    return true;
}

// Build the guest: its RAM (unless `memory_ready`: a restart zeroed it already), platform,
// kernel and vCPUs.
bool create(Guest &g, bool memory_ready = false)
{
    const GuestConfig &c = *g.cfg;
    g.why = nullptr;
    g.exit_code = 0;
    g.nvcpus = min<u32>(c.cpus, MAX_VCPUS);
    if (c.cpus > MAX_VCPUS) log_warn("guest %s: %u vCPUs asked, %u supported", g.name, c.cpus, MAX_VCPUS);

    const BootModule *kernel = find_module(c.kernel);
    if (!kernel) {
        log_error("guest %s: kernel '%.*s' is not in the image", g.name, int(c.kernel.n), c.kernel.p);
        return false;
    }
    GuestModuleSrc mods[GuestConfig::MAX_MODULES];
    for (u32 i = 0; i < c.module_count; i++) {
        const BootModule *m = find_module(c.modules[i]);
        if (!m) {
            log_error("guest %s: module '%.*s' is not in the image", g.name, int(c.modules[i].n), c.modules[i].p);
            return false;
        }
        mods[i] = {mm::phys_ptr<const u8>(m->start), m->end - m->start, c.modules[i].p, c.modules[i].n};
    }

    if (!memory_ready && !create_memory(g, true)) return false;

    g.platform = GuestPlatform{};
    g.con_tokens = CONSOLE_BURST;
    g.con_refill_tsc = x86::rdtsc();
    g.con_dropped = 0;
    g.platform.mem = &g.mem;
    g.platform.vcpu_count = g.nvcpus;
    g.uart = new (g.uart_storage) UartModel(0x3f8, guest_line, &g, [](void *ctx, bool level) {
        // COM1 is wired to IOAPIC pin 4 (the guest's DSDT says so).
        Guest &gg = *static_cast<Guest *>(ctx);
        if (!gg.linux) return;
        Guard lk(gg.ioapic_lock);
        gg.ioapic.set_irq(4, level);
    });
    g.platform.add_io(g.uart);
    g.platform.add_io(new (g.exit_storage) DebugExitModel(0xf4, g.platform));
    g.lapics.attach(&g);
    g.platform.add_mmio(&g.lapics);
    g.platform.msr = &g.lapics;
    {
        struct Host final : ProfileHost {
            void cpuid(u32 leaf, u32 sub, u32 out[4]) override
            {
                auto r = x86::cpuid(leaf, sub);
                out[0] = r.a, out[1] = r.b, out[2] = r.c, out[3] = r.d;
            }
        } host;
        ProfileOptions po;
        po.vcpu_count = g.nvcpus;
        po.lapic = true;
        po.tsc_hz = time::tsc_hz();
        g.profile.build(host, po);
        // The guest may enable only what Keel switches for it.
        g.platform.profile = &g.profile;
        g.platform.name = g.name;
        g.platform.stop_on_bad_access = c.on_bad_access == GuestConfig::OnBadAccess::stop;
        g.platform.amd = g.profile.vendor() == CpuVendor::amd;
        g.platform.cr4_reserved = g.profile.cr4_reserved();
        g.platform.xcr0_supported = g.profile.xcr0_supported() & gstate::switched_xcr0();
    }

    const u8 *image = mm::phys_ptr<const u8>(kernel->start);
    const u64 image_size = kernel->end - kernel->start;
    virt::EntryState es;
    Gprs boot_regs{};
    char what[80];
    g.linux = is_bzimage(image, image_size);
    if (g.linux) {
        if (!load_linux_guest(g, image, image_size, es, boot_regs, what, sizeof(what))) {
            release(g);
            return false;
        }
    } else {
        LoadReport rep{};
        // As GRUB and QEMU pass it: the kernel's path (argv[0]), then the configured arguments.
        char mbcmd[GuestConfig::MAX_PATH + 1 + GuestConfig::MAX_CMDLINE + 1];
        const usize mbn = format(mbcmd, sizeof(mbcmd), "%.*s%s%.*s", int(c.kernel.n), c.kernel.p, c.cmdline.n ? " " : "",
                                 int(c.cmdline.n), c.cmdline.p ? c.cmdline.p : "");
        auto entry = load_multiboot(g.mem, image, image_size, mbcmd, mbn, mods, c.module_count, &rep);
        if (!entry) {
            log_error("guest %s: cannot load '%.*s': %s (%s)", g.name, int(c.kernel.n), c.kernel.p, rep.msg,
                      err_name(entry.error()));
            release(g);
            return false;
        }
        es.rip = entry->eip;
        boot_regs.rax = entry->eax;
        boot_regs.rbx = entry->ebx;
        format(what, sizeof(what), "Multiboot%s, entry %x", rep.version == 2 ? "2" : "", entry->eip);
    }

    for (u32 i = 0; i < g.nvcpus; i++) {
        Vcpu &v = g.vcpus[i];
        v = Vcpu{};
        v.guest = &g;
        v.index = i;
        // The APIC timer counts at the TSC rate (divide by 1): the guest reads both rates from CPUID.
        v.irq.lapic.reset(i, i == 0, time::tsc_hz(), time::tsc_hz());
        v.irq.check = true;
        v.arch = virt::make_vcpu(v.arch_storage);
        es.cr4_reserved = g.platform.cr4_reserved;
        if (auto s = v.arch->setup(g.space, es, u64(&g - guests_) << 32 | g.starts); !s) {
            log_error("guest %s: cannot set up vCPU %u", g.name, i);
            release(g);
            return false;
        }
        // Placement: the pinned CPU, else the least loaded one.
        u32 cpu = 0;
        if (i < c.pin_count && c.pin[i] < ncpus_) cpu = c.pin[i];
        else {
            if (i < c.pin_count) log_warn("guest %s: vCPU %u pinned to CPU %u, which is not online", g.name, i, c.pin[i]);
            for (u32 k = 1; k < ncpus_; k++)
                if (rq_[k].placed < rq_[cpu].placed) cpu = k;
        }
        v.cpu = cpu;
        __atomic_fetch_add(&rq_[cpu].placed, 1, __ATOMIC_RELAXED);
    }
    g.vcpus[0].gprs = boot_regs;
    // Application processors wait for INIT and a start-up IPI from the guest.
    g.live = g.nvcpus;
    g.started = 1;
    g.hung = 0;
    g.starts++;
    g.started_tsc = x86::rdtsc();
    g.state = Guest::State::running;
    // What Keel spends on the guest beyond its RAM: nested tables, VMCB/VMCS pages, the legacy area.
    u64 overhead = g.space.table_pages() * PAGE_SIZE + g.nvcpus * PAGE_SIZE;
    if (g.linux) overhead += 0x60000;   // the backed legacy area 0xA0000-0xFFFFF
    log_info("guest %s: %lu MiB, %u vCPU%s, '%.*s' loaded (%s), keel_overhead_kib=%lu", g.name, c.memory / MiB,
             g.nvcpus, g.nvcpus > 1 ? "s" : "", int(c.kernel.n), c.kernel.p, what, overhead / KiB);
    return true;
}

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

void print_stats(Guest &g)
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
        reasons[k] = '\0';
        log_info("stats %s vcpu=%u cpu=%u run_us=%lu ready_us=%lu exits=%lu%s", g.name, i, g.vcpus[i].cpu,
                 tsc_to_us(s.run_tsc), tsc_to_us(s.ready_tsc), s.exits, reasons);
        if (i == 0 && g.rebuild_tsc)
            log_info("stats %s rebuild_us=%lu starts=%u", g.name, tsc_to_us(g.rebuild_tsc), g.starts);
        if (i == 0 && g.platform.bad_accesses)
            log_info("stats %s bad_access=%lu pages=%lu", g.name, g.platform.bad_accesses, u64(g.platform.nbad_pages));
    }
}

void all_guests_ended()
{
    if (config_.on_idle == KeelConfig::OnIdle::poweroff) {
        log_info("all guests have ended: powering off");
        power::off(boot_acpi());
    } else {
        log_info("all guests have ended: idle");
    }
}

void restart_failed(Guest &g)
{
    g.state = Guest::State::ended;
    if (__atomic_sub_fetch(&live_guests_, 1, __ATOMIC_ACQ_REL) == 0) all_guests_ended();
}

// Restart a guest whose vCPUs are all off their CPUs. Its RAM is reserved now and zeroed in
// slices by its vCPU 0 standing in its CPU's run queue (rebuild_step), so a guest that restarts
// over and over takes its turn like any other vCPU and never more.
void restart(Guest &g)
{
    log_info("guest %s: restarting (on_exit = restart, start %u)", g.name, g.starts + 1);
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
    if (g.reboot || g.cfg->on_exit == GuestConfig::OnExit::restart) {
        const u64 now = x86::rdtsc(), ms = max<u64>(time::tsc_hz() / 1000, 1);
        g.quick_restarts = (now - g.started_tsc) / ms < RESTART_YOUNG_MS ? g.quick_restarts + 1 : 0;
        if (g.quick_restarts <= RESTART_FREE) return restart(g);
        const u32 k = min<u32>(g.quick_restarts - RESTART_FREE - 1, 16);
        const u64 delay = min<u64>(10ull << k, RESTART_MAX_DELAY_MS);
        log_warn("guest %s: %u quick restarts in a row: next start in %lu ms", g.name, g.quick_restarts, delay);
        __atomic_store_n(&g.restart_at, now + delay * ms, __ATOMIC_RELEASE);
        return;   // the CPU loop starts it when the time comes (restart_due)
    }
    g.state = Guest::State::ended;
    if (__atomic_sub_fetch(&live_guests_, 1, __ATOMIC_ACQ_REL) == 0) all_guests_ended();
}

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
void end_guest(Guest &g, u32 code, const char *why, u64 addr, bool reboot = false)
{
    Vcpu *stop_now[MAX_VCPUS];
    u32 n = 0;
    {
        Guard lk(g.lock);
        if (g.state != Guest::State::running) return;
        g.state = Guest::State::stopping;
        g.exit_code = code;
        g.why = why;
        g.why_addr = addr;
        {
            Guard io(g.platform.io_lock);   // a vCPU on another CPU may be writing to it
            g.uart->flush();
        }
        g.reboot = reboot;
        if (reboot) log_info("guest %s reboots", g.name);
        else if (why) log_error("guest %s stopped: %s 0x%lx", g.name, why, addr);
        else log_info("guest %s exited code=%u", g.name, code);
        for (u32 i = 0; i < g.nvcpus; i++)
            if (g.vcpus[i].state == Vcpu::State::idle) stop_now[n++] = &g.vcpus[i];
    }
    for (u32 i = 0; i < n; i++) vcpu_stopped(*stop_now[i]);
}

void wake_sleepers(RunQueue &q);

// Does a halted vCPU of this CPU have an interrupt waiting? (Its owner's CPU only.)
bool sleeper_due(RunQueue &q)
{
    for (u32 i = 0; i < q.nsleepers; i++) {
        Vcpu &s = *q.sleepers[i];
        if (!s.hung && s.state == Vcpu::State::halted && wants_to_run(s)) return true;
    }
    return false;
}

// Run one vCPU for up to a time slice.
void run_slice(Vcpu &v);
void run(Vcpu &v)
{
    // The watchdog says which guest a stuck CPU was running.
    __atomic_store_n(&cpu()->running, v.guest->name, __ATOMIC_RELEASE);
    if (v.state == Vcpu::State::rebuilding) rebuild_step(v);
    else run_slice(v);
    __atomic_store_n(&cpu()->running, static_cast<const char *>(nullptr), __ATOMIC_RELEASE);
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
    u64 t0 = now;   // one TSC read per exit: each exit's end is the next one's start
    // The guest leaves by the next tick at the latest: fixed per tick, not per entry, so a storm of
    // quick exits (a #DB loop) cannot keep pushing it out.
    u64 next_tick = now + tick_tsc_;
    for (;;) {
        if (Guest::State(__atomic_load_n(reinterpret_cast<u8 *>(&g.state), __ATOMIC_ACQUIRE)) != Guest::State::running)
            return vcpu_stopped(v);
        {
            // Leave the guest by the next tick, its own timer or a sleeper's, whichever is first.
            const u64 host_now = x86::rdtsc();
            if (host_now >= next_tick) next_tick = host_now + tick_tsc_;
            u64 by = min(next_tick, rq_[v.cpu].sleep_deadline);
            const u64 own = __atomic_load_n(&v.irq.deadline, __ATOMIC_RELAXED);
            if (own != ~0ull) by = min(by, max(host_deadline(v, own), host_now));
            cpu.exit_by(by);
        }
        enter_guest(v.irq, *v.arch, cpu, v.gprs, e);
        v.stats.exits++;
        v.stats.by_reason[u8(e.reason)]++;
        ExitOutcome out = handle_exit(e, v.gprs, cpu, g.platform, v.index);
        route_ipis(g, v);
        const u64 t1 = x86::rdtsc();
        v.stats.run_tsc += t1 - t0;
        t0 = t1;

        if (g.platform.exit_requested) {
            end_guest(g, g.platform.exit_code, nullptr, 0);
            return vcpu_stopped(v);
        }
        if (g.platform.reset_requested) {
            end_guest(g, 0, nullptr, 0, true);
            return vcpu_stopped(v);
        }
        if (out.action == ExitAction::stop) {
            end_guest(g, ~0u, out.why, out.addr);
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
        restart(g);
    }
}

} // namespace

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
    if (auto s = parse_config(text, cfg->end - cfg->start, config_, err); !s) {
        log_error("keel.toml line %u: %s; no guests started", err.line, err.msg);
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

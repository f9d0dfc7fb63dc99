// A guest built from its configuration: RAM reserved up front and mapped, its
// platform (devices, CPU profile), its kernel loaded (Multiboot or Linux), its
// vCPUs set up and placed on CPUs. release() gives it all back.
#include "arch/x86_64/guest_state.hpp"
#include "arch/x86_64/insn.hpp"
#include "arch/x86_64/mm.hpp"
#include "arch/x86_64/time.hpp"
#include "kernel/guest/guest_acpi.hpp"
#include "kernel/guest/loader_linux.hpp"
#include "kernel/guest/loader_multiboot.hpp"
#include "kernel/hv/internal.hpp"
#include "kernel/lib/bytes.hpp"
#include "kernel/lib/console.hpp"
#include "kernel/lib/format.hpp"
#include "kernel/lib/new.hpp"
#include "kernel/mem/frame_alloc.hpp"

namespace hv {
namespace {

const BootModule *find_module(StrView path)
{
    for (usize i = 0; i < boot_->module_count; i++) {
        const BootModule &m = boot_->modules[i];
        if (m.len == path.n && __builtin_memcmp(m.string, path.p, path.n) == 0) return &m;
    }
    return nullptr;
}

} // namespace

void release(Guest &g)
{
    unplug_passthrough(g);   // its devices' DMA blocked before their memory goes
    unplug_nics(g);   // no other guest's frame lands in this RAM from here on
    for (u32 i = 0; i < g.nvcpus; i++)
        if (g.vcpus[i].arch) g.vcpus[i].arch->destroy();
    g.space.destroy();
    virt::flush_all_guest_tlbs();   // before the memory can serve anyone else
    for (usize i = 0; i < g.nblocks; i++) mm::free(g.blocks[i].pa, g.blocks[i].order);
    g.nblocks = 0;
    g.mem.clear();
}

namespace {

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
            g.blocks[g.nblocks++] = {*b, u8(order), at, true};
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

// A Linux guest: the bzImage and initrd placed by the boot protocol, a 64-bit entry on the
// loader's tables, the ACPI tables (built with the platform) passed in boot_params.
bool load_linux_guest(Guest &g, const u8 *image, u64 size, u64 rsdp, virt::EntryState &es, Gprs &regs, char *what,
                      usize n)
{
    const GuestConfig &c = *g.cfg;
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
    lp.acpi_rsdp = rsdp;
    lp.reserved[0] = {GUEST_ACPI_BASE, PAGE_SIZE, LINUX_E820_ACPI};
    // The ECAM window reserved as a PC's firmware does: Linux then uses MMCONFIG from its first
    // PCI probe, not only once ACPI has shown it reserved (RES0).
    lp.reserved[1] = {PCI_ECAM_BASE, PciBus::ECAM_BUS_BYTES, LINUX_E820_RESERVED};
    lp.nreserved = 2;
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

    format(what, n, "Linux boot protocol %x.%02x, entry %lx", rep.protocol >> 8, rep.protocol & 0xff, e->rip);
    return true;
}

} // namespace

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
        release(g);   // first: what it did reserve is free again, and counted as free below
        const auto st = mm::stats();
        log_error("guest %s: cannot reserve %lu MiB of RAM (%lu MiB free): not started", g.name, c.memory / MiB,
                  st.free_frames * PAGE_SIZE / MiB);
        return false;
    }
    return true;
}

// Build the guest: its RAM (unless `memory_ready`: a restart zeroed it already), platform,
// kernel and vCPUs.
bool create(Guest &g, bool memory_ready)
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

    if (g.pci_refused) return false;   // a [[guest.pci]] was refused at start (logged at its line)

    // The disks' backing before any RAM: made at the first start, kept by the later ones.
    g.ndisks = 0;
    if (!prepare_disks(g, find_module)) return false;

    if (!memory_ready && !create_memory(g, true)) return false;

    // Reset in place: a GuestPlatform{} temporary would put several KiB on this CPU's stack.
    g.platform.~GuestPlatform();
    new (&g.platform) GuestPlatform();
    g.con_tokens = CONSOLE_BURST;
    g.con_refill_tsc = x86::rdtsc();
    g.con_dropped = 0;
    g.platform.mem = &g.mem;
    g.platform.vcpu_count = g.nvcpus;
    g.uart = new (g.uart_storage) UartModel(0x3f8, guest_line, &g, [](void *ctx, bool level) {
        // COM1 is wired to IOAPIC pin 4 (the guest's DSDT says so).
        Guest &gg = *static_cast<Guest *>(ctx);
        Guard lk(gg.ioapic_lock);
        gg.ioapic.set_irq(4, level);
    });
    g.platform.add_io(g.uart, 0x3f8, 0x3ff);
    g.platform.add_io(new (g.exit_storage) DebugExitModel(0xf4, g.platform), 0xf4, 0xf4);
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
    u64 rsdp = 0;
    if (!build_platform(g, rsdp) || !plug_disks(g) || !plug_nics(g) || !plug_passthrough(g)) {
        release(g);
        return false;
    }
    g.linux = is_bzimage(image, image_size);
    if (g.linux) {
        if (!load_linux_guest(g, image, image_size, rsdp, es, boot_regs, what, sizeof(what))) {
            release(g);
            return false;
        }
    } else {
        LoadReport rep{};
        // As GRUB and QEMU pass it: the kernel's path (argv[0]), then the configured arguments.
        char mbcmd[GuestConfig::MAX_PATH + 1 + GuestConfig::MAX_CMDLINE + 1];
        const usize mbn = format(mbcmd, sizeof(mbcmd), "%.*s%s%.*s", int(c.kernel.n), c.kernel.p, c.cmdline.n ? " " : "",
                                 int(c.cmdline.n), c.cmdline.p ? c.cmdline.p : "");
        // The ACPI page is not RAM to the guest (the legacy area never was).
        const MbReserved acpi = {GUEST_ACPI_BASE, PAGE_SIZE, 3 /* ACPI reclaimable */};
        auto entry = load_multiboot(g.mem, image, image_size, mbcmd, mbn, mods, c.module_count, &rep, &acpi, 1);
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
        if (i < c.pin_count && c.pin[i] < ncpus_) {
            cpu = c.pin[i];
            __atomic_fetch_add(&rq_[cpu].placed, 1, __ATOMIC_RELAXED);
        } else {
            // Two guests restarting at once on two CPUs place their vCPUs at the same time: the
            // count taken is the count seen, or the choice is made again.
            for (;;) {
                cpu = 0;
                u32 least = __atomic_load_n(&rq_[0].placed, __ATOMIC_RELAXED);
                for (u32 k = 1; k < ncpus_; k++) {
                    const u32 n = __atomic_load_n(&rq_[k].placed, __ATOMIC_RELAXED);
                    if (n < least) cpu = k, least = n;
                }
                if (__atomic_compare_exchange_n(&rq_[cpu].placed, &least, least + 1, false, __ATOMIC_RELAXED,
                                                __ATOMIC_RELAXED))
                    break;
            }
            if (i < c.pin_count)
                log_warn("guest %s: vCPU %u pinned to CPU %u, which is not online (CPUs 0..%u are): it runs on CPU %u, "
                         "the least loaded, instead",
                         g.name, i, c.pin[i], ncpus_ - 1, cpu);
        }
        v.cpu = cpu;
    }
    if (!route_passthrough_irqs(g)) {
        release(g);
        return false;
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
    const u64 overhead = g.space.table_pages() * PAGE_SIZE + g.nvcpus * PAGE_SIZE + LEGACY_AREA_BYTES;
    log_info("guest %s: %lu MiB, %u vCPU%s, '%.*s' loaded (%s), keel_overhead_kib=%lu", g.name, c.memory / MiB,
             g.nvcpus, g.nvcpus > 1 ? "s" : "", int(c.kernel.n), c.kernel.p, what, overhead / KiB);
    return true;
}

} // namespace hv

// The IOMMU (Intel VT-d), enabled by Keel at start when the firmware's DMAR
// table names remapping units: DMA from every device is blocked (default
// deny: no root or context entry is present) but for the devices Keel gives a
// domain. Today that is Keel's own drives (domain KEEL_DID), whose domain maps
// exactly the pages Keel hands them for DMA (their queues, PRP lists and
// bounce buffers), identity (IOVA = host-physical). Guests' memory is never
// mapped there. Faults are drained on the boot CPU at its ticks and reported,
// rate-limited, with the device, the address and the reason.
//
// One root table and its context tables serve every unit (each unit only sees
// its own devices' requests). Domains are 4-level tables; where a unit walks
// only 3 levels (39-bit: QEMU's default intel-iommu, some client chipsets),
// every unit is given the domain's first level-3 table, and DMA addresses stay
// below 512 GiB (and below every unit's MGAW). Invalidations are global for
// context entries and per domain for the IOTLB, through the invalidation queue
// where the unit has one (else its registers); each is bounded.
#include "arch/x86_64/device_io.hpp"
#include "arch/x86_64/insn.hpp"
#include "arch/x86_64/mm.hpp"
#include "arch/x86_64/time.hpp"
#include "drivers/vtd/vtd.hpp"
#include "kernel/firmware/dmar.hpp"
#include "kernel/hv/internal.hpp"
#include "kernel/lib/console.hpp"
#include "kernel/lib/format.hpp"
#include "kernel/lib/new.hpp"
#include "kernel/mem/ptab.hpp"
#include "kernel/security/iommu_groups.hpp"

namespace hv {
namespace {

constexpr u16 KEEL_DID = 1;

using DmaTable = PageTable<DmarFormat, mm::FrameTableMem>;
constexpr u32 FAULT_BURST = 16;        // fault lines logged at once
constexpr u64 FAULT_EVERY_MS = 100;    // then one per this, at most

struct UnitState {
    x86::MmioRegs regs;
    alignas(vtd::Unit) u8 storage[sizeof(vtd::Unit)];
    vtd::Unit *unit;
    PhysAddr base;
    u16 segment;
};

struct Iommu {
    dmar::Dmar dmar;
    UnitState units[dmar::MAX_UNITS];
    u32 n;
    bool on;
    bool coherent;
    unsigned levels;                     // the tables every unit walks: 4, or 3
    u64 iova_limit;                      // DMA addresses below this (levels, MGAW)
    PhysAddr root;                       // root table: one entry per bus
    PhysAddr context[256];               // context tables, made on demand
    mm::FrameTableMem table_mem;
    alignas(DmaTable) u8 keel_storage[sizeof(DmaTable)];
    DmaTable *keel;                      // Keel's own devices' domain
    Spinlock lock;
    u64 faults, faults_unlogged, overflows;
    u64 tokens, refill_tsc, quiet_unlogged;   // the fault log's rate limit
};
Iommu io_{};
x86::TscClock clock_;

// Where a context entry points for domain table t: its root, or its first level-3 table.
Result<PhysAddr> slpt(DmaTable &t)
{
    if (io_.levels == 4) return t.root();
    return t.table_at(0, 3);
}

// Tables the unit reads: written back from the caches when it does not snoop.
void publish()
{
    if (!io_.coherent) x86::wbinvd();
}

} // namespace

// One recorded fault, logged: a DMA request's page, or an interrupt request's index.
void iommu_log_fault(const char *prefix, u16 segment, const vtd::Fault &f)
{
    if (f.interrupt())
        log_warn("%sinterrupt blocked: %04x:%02x:%02x.%u entry %u: %s (reason 0x%02x)", prefix, segment, f.sid >> 8,
                 f.sid >> 3 & 31, f.sid & 7, f.index(), vtd::reason_text(f.reason), f.reason);
    else
        log_warn("%sDMA blocked: %04x:%02x:%02x.%u %s %lx: %s (reason %u)", prefix, segment, f.sid >> 8,
                 f.sid >> 3 & 31, f.sid & 7, f.read ? "read of" : "write to", f.addr, vtd::reason_text(f.reason),
                 f.reason);
}

namespace {

bool set_context(u8 bus, u8 devfn, vtd::Entry e)
{
    if (!io_.context[bus].raw()) {
        auto t = mm::alloc_zeroed(0);
        if (!t) return false;
        io_.context[bus] = *t;
        vtd::Entry *root = mm::phys_ptr<vtd::Entry>(io_.root);
        root[bus] = vtd::root_entry(*t);
    }
    vtd::Entry *ctx = mm::phys_ptr<vtd::Entry>(io_.context[bus]);
    // The high half (domain, width) first: the unit looks at P in the low half.
    ctx[devfn].hi = e.hi;
    __atomic_store_n(&ctx[devfn].lo, e.lo, __ATOMIC_RELEASE);
    return true;
}

bool invalidate_all_context()
{
    bool ok = true;
    for (u32 i = 0; i < io_.n; i++)
        if (Status s = io_.units[i].unit->invalidate_context(); !s) {
            log_error("iommu %lx: %s", io_.units[i].base.raw(), io_.units[i].unit->why());
            ok = false;
        }
    return ok;
}

bool invalidate_iotlb(u16 did)
{
    bool ok = true;
    for (u32 i = 0; i < io_.n; i++)
        if (Status s = io_.units[i].unit->invalidate_iotlb(did); !s) {
            log_error("iommu %lx: %s", io_.units[i].base.raw(), io_.units[i].unit->why());
            ok = false;
        }
    return ok;
}

// The host's IOMMU groups, logged at start (one line per group of several
// functions): what a device assignment is checked against.
void log_groups()
{
    static HostFn fns[iommu::MAX_FUNCTIONS];
    static u32 group[iommu::MAX_FUNCTIONS];
    const u32 n = iommu_host_groups(fns, group, iommu::MAX_FUNCTIONS);
    u32 groups = 0;
    for (u32 i = 0; i < n; i++) {
        if (group[i] != i) continue;
        groups++;
        u32 members = 0;
        for (u32 k = i; k < n; k++) members += group[k] == i;
        if (members < 2) continue;
        char list[160];
        usize at = 0;
        for (u32 k = i; k < n && at + 16 < sizeof(list); k++)
            if (group[k] == i)
                at += format(list + at, sizeof(list) - at, " %02x:%02x.%u", fns[k].bus, fns[k].dev, fns[k].fn);
        log_info("iommu: group of %u:%s (assigned whole or not at all)", members, list);
    }
    log_info("iommu: %u PCI functions in %u groups", n, groups);
}

} // namespace

// The host's IOMMU groups, from each function's PCIe port type and ACS controls.
u32 iommu_host_groups(HostFn *fns, u32 *group, u32 max)
{
    static iommu::Function topo[iommu::MAX_FUNCTIONS];
    if (max > iommu::MAX_FUNCTIONS) max = iommu::MAX_FUNCTIONS;
    const u32 n = host_pci_scan(fns, max);
    for (u32 i = 0; i < n; i++) {
        const HostFn &f = fns[i];
        iommu::Function &t = topo[i];
        t = iommu::Function{f.segment, f.bus, f.dev, f.fn, iommu::Kind::endpoint, 0, 0, 0, f.vf != 0};
        const bool bridge = (host_pci_read(f, PCI_HEADER) >> 16 & 0x7f) == 1;
        if (bridge) {
            const u32 buses = host_pci_read(f, PCI_BUSES);
            t.secondary = u8(buses >> 8);
            t.subordinate = u8(buses >> 16);
            t.kind = iommu::Kind::pci_bridge;
        }
        if (const u32 pcie = host_pci_cap(f, 0x10)) {
            switch (host_pci_read(f, pcie) >> 20 & 0xf) {
            case 4: t.kind = iommu::Kind::root_port; break;
            case 5: t.kind = iommu::Kind::upstream_port; break;
            case 6: t.kind = iommu::Kind::downstream_port; break;
            case 7: t.kind = iommu::Kind::pcie_to_pci; break;
            default: if (!bridge) t.kind = iommu::Kind::endpoint; break;
            }
        }
        if (const u32 acs = host_pci_ext_cap(f, 0x000d)) t.acs = u16(host_pci_read(f, acs + 4) >> 16);
    }
    iommu::compute_groups(topo, n, group);
    return n;
}

bool iommu_on() { return io_.on; }
u64 iommu_dma_limit() { return io_.on ? io_.iova_limit : ~0ull; }

void init_iommu(bool required)
{
    const AcpiTable *t = boot_acpi().find("DMAR");
    if (!t) {
        if (required) log_warn("iommu: no DMAR table: no DMA remapping (devices can reach all memory)");
        return;
    }
    const u8 *p = reinterpret_cast<const u8 *>(mm::map_firmware(t->pa, t->length).raw());
    dmar::Report why{};
    if (!p || !dmar::parse(p, t->length, io_.dmar, &why)) {
        log_error("iommu: DMAR table refused: %s; no DMA remapping", p ? why.msg : "cannot map it");
        return;
    }
    const dmar::Dmar &d = io_.dmar;
    log_info("iommu: DMAR: %u remapping unit%s, %u RMRR%s, %u-bit DMA addresses%s", d.n_units,
             d.n_units == 1 ? "" : "s", d.n_rmrrs, d.n_rmrrs == 1 ? "" : "s", d.host_address_width,
             d.intr_remap ? ", interrupt remapping" : "");
    for (u32 i = 0; i < d.n_rmrrs; i++)
        log_warn("iommu: RMRR %lx..%lx (segment %u): firmware DMA to it is blocked; such devices are never assigned",
                 d.rmrrs[i].base.raw(), d.rmrrs[i].limit, d.rmrrs[i].segment);

    auto root = mm::alloc_zeroed(0);
    if (!root) {
        log_error("iommu: no memory for the root table; no DMA remapping");
        return;
    }
    io_.root = *root;
    io_.keel = new (io_.keel_storage) DmaTable(io_.table_mem, 1);   // 4 KiB pages only
    if (!io_.keel->init()) {
        log_error("iommu: no memory for Keel's DMA domain; no DMA remapping");
        return;
    }
    io_.coherent = true;
    for (u32 i = 0; i < d.n_units; i++) {
        UnitState &u = io_.units[io_.n];
        u.base = d.units[i].base;
        u.segment = d.units[i].segment;
        u.regs.base = reinterpret_cast<volatile u8 *>(mm::map_mmio(u.base, PAGE_SIZE << d.units[i].size).raw());
        if (!u.regs.base) {
            log_error("iommu %lx: cannot map its registers; no DMA remapping", u.base.raw());
            return;
        }
        u.unit = new (u.storage) vtd::Unit(u.regs, clock_);
        if (Status s = u.unit->probe(); !s) {
            log_error("iommu %lx: %s; no DMA remapping", u.base.raw(), u.unit->why());
            return;
        }
        const vtd::Caps &c = u.unit->caps();
        io_.coherent &= c.coherent();
        log_info("iommu %lx: VT-d %u.%u, %u domains, %u-bit, %u fault records%s%s%s%s", u.base.raw(),
                 u.unit->version() >> 4 & 0xf, u.unit->version() & 0xf, c.domains(), c.mgaw(), c.nfr(),
                 c.qi() ? ", queued invalidation" : "", c.ir() ? ", interrupt remapping" : "",
                 c.caching_mode() ? ", caching mode" : "", c.coherent() ? "" : ", not coherent");
        io_.n++;
    }
    bool all4 = true, all3 = true;
    io_.iova_limit = u64(1) << 48;
    for (u32 i = 0; i < io_.n; i++) {
        const vtd::Caps &c = io_.units[i].unit->caps();
        all4 &= c.four_level();
        all3 &= c.three_level();
        io_.iova_limit = min(io_.iova_limit, u64(1) << min(c.mgaw(), 48u));
    }
    if (!all4 && !all3) {
        log_error("iommu: its units share no table depth (some walk only 4 levels, some only 3); no DMA remapping");
        return;
    }
    io_.levels = all4 ? 4 : 3;
    if (io_.levels == 3) io_.iova_limit = min(io_.iova_limit, u64(1) << 39);
    publish();
    for (u32 i = 0; i < io_.n; i++) {
        UnitState &u = io_.units[i];
        vtd::Page q, st;
        if (u.unit->caps().qi()) {
            auto qp = mm::alloc_zeroed(0), sp = mm::alloc_zeroed(0);
            if (qp && sp) {
                q = {*qp, mm::phys_ptr<u8>(*qp)};
                st = {*sp, mm::phys_ptr<u8>(*sp)};
            }
        }
        if (Status s = u.unit->enable(io_.root, q, st); !s) {
            log_error("iommu %lx: %s; DMA remapping may be partial", u.base.raw(), u.unit->why());
            continue;
        }
    }
    io_.on = true;
    io_.tokens = FAULT_BURST;
    log_info("iommu: on: DMA blocked for every device but Keel's own (invalidation %s, %u-level tables, DMA "
             "addresses below %lu GiB)", io_.n && io_.units[0].unit->queued() ? "queued" : "by registers", io_.levels,
             io_.iova_limit >> 30);
    init_interrupt_remapping();
    log_groups();
}

// Keel's own device: its requests translated through Keel's domain.
bool iommu_attach_keel(const HostFn &f, const char *who)
{
    if (!io_.on) return true;
    Guard<Spinlock> g(io_.lock);
    auto t = slpt(*io_.keel);
    if (!t || !set_context(f.bus, vtd::devfn(f.dev, f.fn), vtd::context_entry(*t, KEEL_DID, io_.levels))) {
        log_error("%s: no memory for its IOMMU tables", who);
        return false;
    }
    publish();
    if (!invalidate_all_context()) return false;
    log_info("iommu: %s (%02x:%02x.%u) in Keel's DMA domain", who, f.bus, f.dev, f.fn);
    return true;
}

Status iommu_map_keel(PhysAddr pa)
{
    if (!io_.on) return {};
    if (pa.raw() >= io_.iova_limit) return Err::range;   // beyond what the units translate
    Guard<Spinlock> g(io_.lock);
    KEEL_TRY(io_.keel->map(pa.raw(), pa.raw(), PAGE_SIZE, Attr{Perm{true, true}, CacheType::wb}));
    publish();
    // Caching mode: the unit may have cached the page as not present.
    for (u32 i = 0; i < io_.n; i++)
        if (io_.units[i].unit->caps().caching_mode()) (void)io_.units[i].unit->invalidate_iotlb(KEEL_DID);
    return {};
}

void iommu_unmap_keel(PhysAddr pa)
{
    if (!io_.on) return;
    Guard<Spinlock> g(io_.lock);
    // Tables left empty stay (reclaim false): the unit may hold them in its paging-structure
    // caches until the invalidation below, so none may be freed and reused before it.
    auto r = io_.keel->unmap(pa.raw(), PAGE_SIZE, false);
    publish();
    if (r && *r) (void)invalidate_iotlb(KEEL_DID);
}

bool iommu_rmrr_device(const HostFn &f)
{
    const dmar::Dmar &d = io_.dmar;
    for (u32 r = 0; r < d.n_rmrrs; r++) {
        if (d.rmrrs[r].segment != f.segment) continue;
        for (u32 k = 0; k < d.rmrrs[r].n_scopes; k++) {
            const dmar::Scope &sc = d.scopes[d.rmrrs[r].first_scope + k];
            auto bdf = dmar::resolve(sc, [&](u8 bus, u8 dev, u8 fn) {
                const HostFn b{f.segment, bus, dev, fn, f.window, 0, 0};
                const u32 id = host_pci_read(b, 0);
                if ((id & 0xffff) == 0xffff || (host_pci_read(b, PCI_HEADER) >> 16 & 0x7f) != 1) return -1;
                return int(host_pci_read(b, PCI_BUSES) >> 8 & 0xff);
            });
            if (bdf && bdf->bus == f.bus && bdf->dev == f.dev && bdf->fn == f.fn) return true;
        }
    }
    return false;
}

// A guest's domain: each RAM block at its guest-physical address (IOVA), read/write, 4 KiB
// pages; the legacy area and everything else (other guests, Keel, MMIO) absent.
namespace {
// What a DmaDomain's storage holds for VT-d.
struct VtdDomain {
    mm::FrameTableMem mem;
    alignas(DmaTable) u8 table_storage[sizeof(DmaTable)];
    DmaTable *table;
};
static_assert(sizeof(VtdDomain) <= DmaDomain::STORAGE && alignof(VtdDomain) <= 8);
VtdDomain &vtd_of(DmaDomain &d) { return *reinterpret_cast<VtdDomain *>(d.storage); }
} // namespace

Status iommu_domain_build(DmaDomain &d, u16 did, const Guest &g)
{
    if (!io_.on) return Err::unsupported;
    d.did = did;
    VtdDomain &v = *new (d.storage) VtdDomain{};
    v.table = new (v.table_storage) DmaTable(v.mem, 1);
    if (Status s = v.table->init(); !s) return s;
    d.built = true;
    for (usize i = 0; i < g.nblocks; i++) {
        const Guest::Block &b = g.blocks[i];
        if (!b.ram) continue;
        if (b.gpa + (PAGE_SIZE << b.order) > io_.iova_limit) {
            iommu_domain_destroy(d);
            return Err::range;   // RAM beyond what the units translate
        }
        if (Status s = v.table->map(b.gpa, b.pa.raw(), PAGE_SIZE << b.order, Attr{Perm{true, true}, CacheType::wb});
            !s) {
            iommu_domain_destroy(d);
            return s;
        }
    }
    Guard<Spinlock> lk(io_.lock);
    publish();
    return {};
}

bool iommu_attach(const HostFn &f, DmaDomain &d, const char *who)
{
    if (!io_.on || !d.built) return false;
    Guard<Spinlock> lk(io_.lock);
    auto t = slpt(*vtd_of(d).table);
    if (!t || !set_context(f.bus, vtd::devfn(f.dev, f.fn), vtd::context_entry(*t, d.did, io_.levels))) {
        log_error("%s: no memory for its IOMMU tables", who);
        return false;
    }
    publish();
    return invalidate_all_context() && invalidate_iotlb(d.did);
}

// Its context entry not present again (default deny), then nothing of the domain stays cached.
void iommu_detach(const HostFn &f, DmaDomain &d)
{
    if (!io_.on || !io_.context[f.bus].raw()) return;
    Guard<Spinlock> lk(io_.lock);
    vtd::Entry *ctx = mm::phys_ptr<vtd::Entry>(io_.context[f.bus]);
    __atomic_store_n(&ctx[vtd::devfn(f.dev, f.fn)].lo, 0, __ATOMIC_RELEASE);
    ctx[vtd::devfn(f.dev, f.fn)].hi = 0;
    publish();
    (void)invalidate_all_context();
    (void)invalidate_iotlb(d.did);
}

void iommu_domain_destroy(DmaDomain &d)
{
    if (!d.built) return;
    vtd_of(d).table->destroy();
    d.built = false;
}

// At the boot CPU's ticks: every recorded fault taken, a few logged per tick.
// At the boot CPU's ticks: every recorded fault taken and counted (for the guest whose device
// made it, too); the first FAULT_BURST logged, then at most one per FAULT_EVERY_MS, the rest
// counted and summed up in one line once the storm has passed. Draining is bounded per tick.
void iommu_poll()
{
    if (!io_.on) return;
    const u64 now = x86::rdtsc(), every = time::tsc_hz() / 1000 * FAULT_EVERY_MS;
    if (now - io_.refill_tsc >= every) {
        io_.refill_tsc = now;
        if (io_.tokens < FAULT_BURST) io_.tokens++;
        if (io_.tokens == FAULT_BURST && io_.quiet_unlogged) {
            log_warn("iommu: %lu more DMA faults were not logged (rate limit); see the stats", io_.quiet_unlogged);
            io_.quiet_unlogged = 0;
        }
    }
    for (u32 i = 0; i < io_.n; i++) {
        UnitState &u = io_.units[i];
        vtd::Fault f;
        bool over = false;
        for (u32 k = 0; k < 64 && u.unit->next_fault(f, over); k++) {
            io_.faults++;
            passthrough_fault(u.segment, f.sid);
            if (io_.tokens) {
                io_.tokens--;
                iommu_log_fault("iommu: ", u.segment, f);
            } else {
                io_.faults_unlogged++;
                io_.quiet_unlogged++;
            }
            if (over) io_.overflows++;
            over = false;
        }
        if (over) io_.overflows++;
    }
}

u64 iommu_faults() { return io_.faults; }
void iommu_stats()
{
    if (io_.on)
        log_info("stats iommu faults=%lu unlogged=%lu overflows=%lu", io_.faults, io_.faults_unlogged, io_.overflows);
}

// "iommu_selftest" on Keel's command line, with QEMU's `edu` device (1234:11e8)
// present: a device no one owns is told to DMA into a canary page of Keel's and
// to read from it. Both must be blocked, recorded as faults naming the device
// and the page, and the canary must be intact. Prints one PASS or FAIL line.
void iommu_selftest()
{
    HostFn fns[128];
    const u32 n = host_pci_scan(fns, 128);
    const HostFn *edu = nullptr;
    for (u32 i = 0; i < n && !edu; i++)
        if (fns[i].id == (0x11e8u << 16 | 0x1234)) edu = &fns[i];
    if (!edu) {
        log_error("iommu selftest: FAIL: no edu device (1234:11e8)");
        return;
    }
    if (!io_.on) {
        log_error("iommu selftest: FAIL: the IOMMU is not on");
        return;
    }
    volatile u8 *bar = host_pci_map_bar0(*edu, PAGE_SIZE, "edu");
    auto canary = mm::alloc_zeroed(0, u64(1) << 28);   // edu reaches 28 bits
    if (!bar || !canary) {
        log_error("iommu selftest: FAIL: cannot set it up");
        return;
    }
    u8 *c = mm::phys_ptr<u8>(*canary);
    __builtin_memset(c, 0x5a, PAGE_SIZE);
    auto reg = [&](u32 off) -> volatile u64 & { return *reinterpret_cast<volatile u64 *>(bar + off); };
    constexpr u32 SRC = 0x80, DST = 0x88, CNT = 0x90, CMD = 0x98;
    constexpr u64 EDU_BUF = 0x40000, START = 1, TO_RAM = 2;
    bool ok = true;
    for (int dir = 0; dir < 2; dir++) {
        const bool to_ram = dir == 0;
        reg(SRC) = to_ram ? EDU_BUF : canary->raw();
        reg(DST) = to_ram ? canary->raw() : EDU_BUF;
        reg(CNT) = 64;
        reg(CMD) = START | (to_ram ? TO_RAM : 0);
        // edu runs its transfer on a 100 ms timer; bounded at 2 s.
        const u64 end = x86::rdtsc() + 2 * time::tsc_hz();
        while ((reg(CMD) & START) && x86::rdtsc() < end) x86::pause();
        if (reg(CMD) & START) {
            log_error("iommu selftest: edu's DMA did not finish");
            ok = false;
            break;
        }
        bool seen = false;
        for (u32 i = 0; i < io_.n; i++) {
            vtd::Fault f;
            bool over = false;
            while (io_.units[i].unit->next_fault(f, over)) {
                io_.faults++;
                log_info("iommu selftest: fault: %02x:%02x.%u %s %lx: %s", f.sid >> 8, f.sid >> 3 & 31, f.sid & 7,
                         f.read ? "read of" : "write to", f.addr, vtd::reason_text(f.reason));
                seen |= f.sid == edu->sid() && f.addr == canary->raw() && f.read == !to_ram;
            }
        }
        if (!seen) {
            log_error("iommu selftest: no fault recorded for edu's DMA %s the canary", to_ram ? "write to" : "read of");
            ok = false;
        }
    }
    for (u32 i = 0; i < PAGE_SIZE; i++)
        if (c[i] != 0x5a) {
            log_error("iommu selftest: canary byte %u changed to %02x", i, c[i]);
            ok = false;
            break;
        }
    host_pci_write(*edu, PCI_COMMAND, host_pci_read(*edu, PCI_COMMAND) & ~CMD_MASTER);
    mm::free(*canary, 0);
    if (ok) log_info("iommu selftest: PASS: edu %02x:%02x.%u blocked both ways, faults reported, canary intact",
                     edu->bus, edu->dev, edu->fn);
    else log_error("iommu selftest: FAIL");
}

// ---- For iommu_irq.cpp (interrupt remapping): the units Keel turned on ----

u32 iommu_units() { return io_.on ? io_.n : 0; }
vtd::Unit &iommu_unit(u32 i) { return *io_.units[i].unit; }
PhysAddr iommu_unit_base(u32 i) { return io_.units[i].base; }
u16 iommu_unit_segment(u32 i) { return io_.units[i].segment; }
Spinlock &iommu_lock() { return io_.lock; }
void iommu_publish() { publish(); }
bool iommu_firmware_remaps_interrupts() { return io_.dmar.intr_remap; }
void iommu_take_faults(void (*fn)(void *ctx, u16 segment, const vtd::Fault &f), void *ctx)
{
    for (u32 i = 0; i < iommu_units(); i++) {
        vtd::Fault f;
        bool over = false;
        while (io_.units[i].unit->next_fault(f, over)) {
            io_.faults++;
            fn(ctx, io_.units[i].segment, f);
        }
    }
}

} // namespace hv

// Keel's own storage: the NVMe controllers on the host's PCI buses, their
// namespaces and GPTs, and the guest disks a configuration puts on them
// (`device = "nvme0n1p2"`, "gpt-name:web", ...).
//
// Once at start, and only when some disk names a device: every PCI bus the
// MCFG's ECAM windows reach from their first bus (following bridges) is scanned
// for NVMe controllers (class 01:08:02); they are numbered in (segment, bus,
// device, function) order: nvme0 is the first. Each is brought up by
// drivers/nvme (bus mastering on, INTx off, polled I/O), its active namespaces
// identified and each namespace's GPT read (storage/gpt). Then every guest's
// device disks are resolved to block ranges, and any overlap in which one disk
// is writable stops the guest that names the later one. Partitions a boot
// loader lives on (EFI system, BIOS boot), and whole namespaces holding one,
// are refused as writable disks: that is where Keel boots from.
#include "arch/x86_64/device_io.hpp"
#include "arch/x86_64/mm.hpp"
#include "drivers/nvme/extent.hpp"
#include "kernel/hv/internal.hpp"
#include "kernel/lib/console.hpp"
#include "kernel/lib/format.hpp"
#include "kernel/lib/new.hpp"
#include "kernel/storage/gpt.hpp"

namespace hv {
namespace {

constexpr u32 MAX_CONTROLLERS = 4;
constexpr u32 MAX_NAMESPACES = 8;       // per controller
constexpr u32 MAX_FUNCTIONS = 32;       // NVMe functions found
constexpr u64 MAX_BAR_MAP = 64 * KiB;   // registers and the first doorbells

// Pages the drives may reach: with the IOMMU on, each is mapped in Keel's DMA
// domain while the driver holds it. Freed pages stay mapped in a small pool
// for the next command (PRP lists come and go with every large transfer): they
// are Keel's, never a guest's, and are zeroed again before reuse.
class FrameDma final : public nvme::Dma {
public:
    Result<nvme::DmaPage> alloc_page() override
    {
        {
            Guard<Spinlock> g(lock_);
            if (n_) {
                const PhysAddr pa = pool_[--n_];
                __builtin_memset(mm::phys_ptr<u8>(pa), 0, PAGE_SIZE);
                return nvme::DmaPage{pa, mm::phys_ptr<u8>(pa)};
            }
        }
        auto p = mm::alloc_zeroed(0, iommu_dma_limit());   // (IOVA = host-physical)
        if (!p) return p.error();
        if (Status s = iommu_map_keel(*p); !s) {
            mm::free(*p, 0);
            return s.error();
        }
        return nvme::DmaPage{*p, mm::phys_ptr<u8>(*p)};
    }
    void free_page(nvme::DmaPage p) override
    {
        {
            Guard<Spinlock> g(lock_);
            if (n_ < POOL) {
                pool_[n_++] = p.pa;
                return;
            }
        }
        iommu_unmap_keel(p.pa);
        mm::free(p.pa, 0);
    }

private:
    static constexpr u32 POOL = 64;
    Spinlock lock_;
    PhysAddr pool_[POOL];
    u32 n_ = 0;
};

struct Namespace {
    nvme::NamespaceInfo info;
    gpt::Table *table = nullptr;        // nullptr: no valid GPT
    bool boot = false;                  // its GPT has a boot loader's partition
};

struct Nvme {
    HostFn pci;
    char name[8];                       // "nvme0"
    x86::MmioRegs regs;            // split64: NVMe controllers may take only dwords
    alignas(nvme::Controller) u8 ctrl_storage[sizeof(nvme::Controller)];
    alignas(nvme::Port) u8 port_storage[sizeof(nvme::Port)];
    nvme::Controller *ctrl = nullptr;
    nvme::Port *port = nullptr;         // nullptr: not usable
    Namespace ns[MAX_NAMESPACES];
    u32 nns = 0;
};

// A guest disk resolved: a range of one namespace.
struct Resolved {
    Nvme *c = nullptr;
    Namespace *ns = nullptr;
    u64 first = 0, blocks = 0;
    bool ok = false;
};

FrameDma dma_{};
x86::TscClock clock_;
Nvme nvme_[MAX_CONTROLLERS]{};
u32 nnvme_;
Resolved resolved_[KeelConfig::MAX_GUESTS][GuestConfig::MAX_DISKS];

constexpr u32 CLASS_NVME = 0x010802;

bool map_bar0(Nvme &c)
{
    // In Keel's DMA domain before bus mastering is on.
    if (!iommu_attach_keel(c.pci, c.name)) return false;
    c.regs.split64 = true;
    c.regs.base = host_pci_map_bar0(c.pci, MAX_BAR_MAP, c.name);
    return c.regs.base != nullptr;
}

// A namespace's blocks for the GPT parser, through the controller's port.
class NsSource final : public gpt::BlockSource {
public:
    NsSource(nvme::Port &p, const nvme::NamespaceInfo &ns) : x_(p, ns, 0, ns.blocks) {}
    u32 block_size() const override { return x_.block_size(); }
    u64 block_count() const override { return x_.bytes() / x_.block_size(); }
    Status read(u64 lba, u8 *dst) override
    {
        return x_.read(lba * x_.block_size(), x_.block_size(), [&](const u8 *src, u64 n, u64 pos) {
            __builtin_memcpy(dst + pos, src, n);
            return true;
        });
    }

private:
    nvme::Extent x_;
};

// EFI system partition and BIOS boot partition (UEFI 2.10 table 5.7; GRUB's).
bool boot_type(const Guid &t)
{
    Guid esp, bios;
    (void)parse_guid(StrView{"c12a7328-f81f-11d2-ba4b-00a0c93ec93b", 36}, esp);
    (void)parse_guid(StrView{"21686148-6449-6e6f-744e-656564454649", 36}, bios);
    return t == esp || t == bios;
}

void read_gpt(Nvme &c, Namespace &ns)
{
    const unsigned order = 3;   // a gpt::Table fits in 32 KiB
    static_assert(sizeof(gpt::Table) <= (PAGE_SIZE << 3));
    auto tp = mm::alloc(order);
    auto sp = mm::alloc(4);     // one block, up to 64 KiB
    if (!tp || !sp) {
        log_error("%sn%u: no memory to read its partition table", c.name, ns.info.nsid);
        if (tp) mm::free(*tp, order);
        if (sp) mm::free(*sp, 4);
        return;
    }
    gpt::Table *t = new (mm::phys_ptr<void>(*tp)) gpt::Table();
    NsSource src(*c.port, ns.info);
    gpt::Report why{};
    const Status s = gpt::parse(src, mm::phys_ptr<u8>(*sp), *t, &why);
    mm::free(*sp, 4);
    if (!s) {
        log_info("%sn%u: no usable GPT (%s%s%s)", c.name, ns.info.nsid, err_name(s.error()), why.msg[0] ? ": " : "",
                 why.msg);
        mm::free(*tp, order);
        return;
    }
    if (t->used_backup) log_warn("%sn%u: GPT primary unusable, backup used: %s", c.name, ns.info.nsid, why.msg);
    ns.table = t;
    for (u32 i = 0; i < t->n; i++) {
        const gpt::Partition &p = t->part[i];
        char name[gpt::NAME_UNITS + 1];
        p.name_ascii(name);
        char guid[GUID_TEXT + 1];
        format_guid(p.unique, guid);
        ns.boot |= boot_type(p.type);
        log_info("%sn%up%u: \"%s\" %s lba %lu..%lu (%lu MiB)%s", c.name, ns.info.nsid, p.index, name, guid,
                 p.first_lba, p.last_lba, (p.blocks() << ns.info.block_shift) / MiB,
                 boot_type(p.type) ? " boot loader's" : "");
    }
}

void bring_up(Nvme &c)
{
    const HostFn &f = c.pci;
    if (!map_bar0(c)) return;
    c.ctrl = new (c.ctrl_storage) nvme::Controller(c.regs, dma_, clock_);
    nvme::Controller &ctl = *c.ctrl;
    if (Status s = ctl.enable(); !s) {
        log_error("%s (%04x:%02x:%02x.%u): not usable: %s", c.name, f.segment, f.bus, f.dev, f.fn, ctl.why());
        return;
    }
    if (Status s = ctl.create_io_queues(); !s) {
        log_error("%s: no I/O queues: %s", c.name, ctl.why());
        return;
    }
    nvme::Port *port = new (c.port_storage) nvme::Port(ctl, dma_);
    port->set_name(c.name);
    if (!port->init()) {
        log_error("%s: no memory for its bounce buffers", c.name);
        return;
    }
    c.port = port;
    const nvme::ControllerInfo &in = ctl.info();
    log_info("%s: %04x:%02x:%02x.%u \"%s\" serial \"%s\" fw \"%s\", NVMe %u.%u, %u namespaces, write cache %s%s%s",
             c.name, f.segment, f.bus, f.dev, f.fn, in.model, in.serial, in.firmware, in.version >> 16,
             in.version >> 8 & 0xff, in.nn, in.volatile_write_cache ? "volatile" : "none",
             in.write_zeroes ? ", write zeroes" : "", in.dsm ? ", deallocate" : "");
    u32 ids[MAX_NAMESPACES];
    auto n = ctl.active_namespaces(ids, MAX_NAMESPACES);
    if (!n) {
        log_error("%s: cannot list its namespaces: %s", c.name, ctl.why());
        return;
    }
    if (*n > MAX_NAMESPACES) log_warn("%s: %u namespaces, Keel uses the first %u", c.name, *n, MAX_NAMESPACES);
    for (u32 i = 0; i < min(*n, MAX_NAMESPACES); i++) {
        Namespace &ns = c.ns[c.nns];
        if (Status s = ctl.identify_namespace(ids[i], ns.info); !s) {
            log_warn("%sn%u: cannot identify: %s", c.name, ids[i], ctl.why());
            continue;
        }
        if (!ns.info.usable) {
            log_warn("%sn%u: format not usable (%u-byte blocks, %u metadata bytes)", c.name, ids[i],
                     ns.info.block_size, ns.info.metadata_size);
            continue;
        }
        log_info("%sn%u: %lu blocks of %u bytes (%lu MiB)", c.name, ids[i], ns.info.blocks, ns.info.block_size,
                 (ns.info.blocks << ns.info.block_shift) / MiB);
        c.nns++;
        read_gpt(c, ns);
    }
}

Namespace *find_ns(u32 ctl, u32 nsid, Nvme *&c)
{
    if (ctl >= nnvme_ || !nvme_[ctl].port) return nullptr;
    c = &nvme_[ctl];
    for (u32 i = 0; i < c->nns; i++)
        if (c->ns[i].info.nsid == nsid) return &c->ns[i];
    return nullptr;
}

// One disk's device to a block range, or why not (logged by the caller).
const char *resolve(const DiskConfig &dc, Resolved &r)
{
    const DeviceName &d = dc.dev;
    if (d.kind == DeviceKind::nvme_namespace || d.kind == DeviceKind::nvme_partition) {
        if (d.controller >= nnvme_) return "no such NVMe controller";
        if (!nvme_[d.controller].port) return "that NVMe controller is not usable (see above)";
        r.ns = find_ns(d.controller, d.nsid, r.c);
        if (!r.ns) return "no such (usable) namespace";
        if (d.kind == DeviceKind::nvme_namespace) {
            if (r.ns->boot && !dc.readonly) return "the namespace holds a boot loader's partition: only read-only";
            r.first = 0;
            r.blocks = r.ns->info.blocks;
            return nullptr;
        }
        if (!r.ns->table) return "the namespace has no usable GPT";
        auto p = gpt::by_index(*r.ns->table, d.partition);
        if (!p) return "no such partition";
        if (boot_type((*p)->type) && !dc.readonly) return "a boot loader's partition: only read-only";
        r.first = (*p)->first_lba;
        r.blocks = (*p)->blocks();
        return nullptr;
    }
    // By GPT name or GUID: exactly one partition on all namespaces.
    const gpt::Partition *found = nullptr;
    for (u32 ci = 0; ci < nnvme_; ci++) {
        Nvme &c = nvme_[ci];
        if (!c.port) continue;
        for (u32 ni = 0; ni < c.nns; ni++) {
            Namespace &ns = c.ns[ni];
            if (!ns.table) continue;
            auto p = d.kind == DeviceKind::gpt_name ? gpt::by_name(*ns.table, d.name) : gpt::by_guid(*ns.table, d.guid);
            if (!p && p.error() == Err::exists) return "several partitions match";
            if (!p) continue;
            if (found) return "several partitions match (on different namespaces)";
            found = *p;
            r.c = &c;
            r.ns = &ns;
        }
    }
    if (!found) return "no partition matches";
    if (boot_type(found->type) && !dc.readonly) return "a boot loader's partition: only read-only";
    r.first = found->first_lba;
    r.blocks = found->blocks();
    return nullptr;
}

} // namespace

// WRITE_ZEROES and DISCARD: Write Zeroes where the controller has it, else
// zeroes written (in the port's chunks).
Status NvmeBackend::zero(u64 off, u64 len)
{
    if (x_.can_zero()) return x_.zero(off, len);
    return x_.write(off, len, [](u8 *dst, u64 n, u64) {
        __builtin_memset(dst, 0, n);
        return true;
    });
}

bool storage_needed(const KeelConfig &cfg)
{
    if (cfg.sriov_count) return true;   // the PFs are Keel's drives
    for (u32 i = 0; i < cfg.guest_count; i++)
        for (u32 k = 0; k < cfg.guests[i].disk_count; k++)
            if (!cfg.guests[i].disks[k].device.empty()) return true;
    return false;
}

void init_storage(const KeelConfig &cfg)
{
    // Once, on the boot CPU before any other runs: static, not 4 KiB of its stack.
    static HostFn all[MAX_FUNCTIONS * 4];
    const u32 na = host_pci_scan(all, MAX_FUNCTIONS * 4);
    static HostFn fns[MAX_FUNCTIONS];
    u32 nf = 0;
    for (u32 i = 0; i < na; i++)
        if (all[i].class_code == CLASS_NVME && nf < MAX_FUNCTIONS) fns[nf++] = all[i];
    if (nf > MAX_CONTROLLERS) log_warn("storage: %u NVMe controllers, Keel drives the first %u", nf, MAX_CONTROLLERS);
    nnvme_ = min(nf, MAX_CONTROLLERS);
    log_info("storage: %u NVMe controller%s", nnvme_, nnvme_ == 1 ? "" : "s");
    for (u32 i = 0; i < nnvme_; i++) {
        nvme_[i].pci = fns[i];
        format(nvme_[i].name, sizeof(nvme_[i].name), "nvme%u", i);
        bring_up(nvme_[i]);
    }

    // Every device disk resolved; then overlaps, in configuration order: the later disk's guest is not started.
    for (u32 gi = 0; gi < cfg.guest_count; gi++) {
        const GuestConfig &g = cfg.guests[gi];
        for (u32 k = 0; k < g.disk_count; k++) {
            const DiskConfig &dc = g.disks[k];
            if (dc.device.empty()) continue;
            Resolved &r = resolved_[gi][k];
            if (const char *why = resolve(dc, r)) {
                log_error("guest %.*s: keel.toml line %u: device \"%.*s\": %s", int(g.name.n), g.name.p, dc.line,
                          int(dc.device.n), dc.device.p, why);
                continue;
            }
            r.ok = true;
            for (u32 gj = 0; gj <= gi && r.ok; gj++) {
                const GuestConfig &o = cfg.guests[gj];
                for (u32 j = 0; j < o.disk_count && r.ok; j++) {
                    if (gj == gi && j == k) break;
                    const Resolved &e = resolved_[gj][j];
                    if (!e.ok || e.ns != r.ns || (dc.readonly && o.disks[j].readonly)) continue;
                    if (r.first <= e.first + e.blocks - 1 && e.first <= r.first + r.blocks - 1) {
                        log_error("guest %.*s: keel.toml line %u: device \"%.*s\" overlaps \"%.*s\" (line %u), and one "
                                  "of them is writable",
                                  int(g.name.n), g.name.p, dc.line, int(dc.device.n), dc.device.p,
                                  int(o.disks[j].device.n), o.disks[j].device.p, o.disks[j].line);
                        r.ok = false;
                    }
                }
            }
            if (r.ok)
                log_info("guest %.*s: disk %u: %sn%u blocks %lu..%lu (%lu MiB)%s", int(g.name.n), g.name.p, k,
                         r.c->name, r.ns->info.nsid, r.first, r.first + r.blocks - 1,
                         (r.blocks << r.ns->info.block_shift) / MiB, dc.readonly ? " read-only" : "");
        }
    }
}

// Every controller's volatile cache put on media; with `power_off`, each then
// shut down as NVMe asks before power is removed (CC.SHN, 7.6.2).
void storage_quiesce(bool power_off)
{
    for (u32 i = 0; i < nnvme_; i++) {
        Nvme &c = nvme_[i];
        if (!c.port) continue;
        Guard<Spinlock> g(c.port->lock());
        log_info("stats %s media_errors=%lu failures=%lu resets=%lu", c.name, c.port->media_errors,
                 c.port->failures, c.port->resets);
        bool ok = true;
        for (u32 k = 0; k < c.nns; k++) ok &= c.port->flush(c.ns[k].info).ok();
        if (!ok) log_error("%s: flush before %s failed", c.name, power_off ? "power-off" : "idling");
        if (!power_off) continue;
        if (Status s = c.ctrl->shutdown(); !s) log_error("%s: shutdown: %s", c.name, c.ctrl->why());
        else log_info("%s: shut down, write cache flushed", c.name);
        c.port = nullptr;   // nothing uses it any more
    }
}

bool storage_owns(const HostFn &f)
{
    for (u32 gi = 0; gi < KeelConfig::MAX_GUESTS; gi++)
        for (u32 k = 0; k < GuestConfig::MAX_DISKS; k++) {
            const Resolved &r = resolved_[gi][k];
            if (r.ok && r.c->pci.segment == f.segment && r.c->pci.sid() == f.sid()) return true;
        }
    return false;
}

// A drive no guest's disk is on, given to a guest: shut down, and Keel never touches it again.
void storage_release(const HostFn &f)
{
    for (u32 i = 0; i < nnvme_; i++) {
        Nvme &c = nvme_[i];
        if (c.pci.segment != f.segment || c.pci.sid() != f.sid() || !c.port) continue;
        {
            Guard<Spinlock> g(c.port->lock());
            if (Status s = c.ctrl->shutdown(); !s) log_warn("%s: shutdown: %s", c.name, c.ctrl->why());
            c.port = nullptr;
        }
        log_info("%s: given to a guest: Keel no longer drives it", c.name);
    }
}

bool storage_drives(const HostFn &f)
{
    for (u32 i = 0; i < nnvme_; i++)
        if (nvme_[i].port && nvme_[i].pci.segment == f.segment && nvme_[i].pci.sid() == f.sid()) return true;
    return false;
}

const char *storage_vf_online(const HostFn &pf, u16 vfn, u16 nvq, u16 nvi, u32 nsid)
{
    for (u32 i = 0; i < nnvme_; i++) {
        Nvme &c = nvme_[i];
        if (!c.port || c.pci.segment != pf.segment || c.pci.sid() != pf.sid()) continue;
        Guard<Spinlock> g(c.port->lock());
        if (Status s = c.ctrl->bring_vf_online(vfn, nvq, nvi, nsid); !s) return c.ctrl->why();
        return nullptr;
    }
    return "not one of Keel's drives";
}

bool open_device_disk(const GuestConfig &g, u32 disk, nvme::Extent &out)
{
    const usize gi = usize(&g - config_.guests);
    if (gi >= KeelConfig::MAX_GUESTS || disk >= GuestConfig::MAX_DISKS) return false;
    const Resolved &r = resolved_[gi][disk];
    if (!r.ok) return false;
    out = nvme::Extent(*r.c->port, r.ns->info, r.first, r.blocks);
    return out.valid();
}

} // namespace hv

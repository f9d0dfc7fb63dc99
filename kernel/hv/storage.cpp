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
#include "arch/x86_64/insn.hpp"
#include "arch/x86_64/mm.hpp"
#include "arch/x86_64/time.hpp"
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
constexpr u32 MAX_FUNCTIONS = 32;       // NVMe functions found before sorting
constexpr u64 MAX_BAR_MAP = 64 * KiB;   // registers and the first doorbells

// PCI configuration space through the ECAM windows of the MCFG.
struct Ecam {
    struct Window {
        u64 base;
        u16 segment;
        u8 start, end;
        u8 *bus[256];      // each bus's 1 MiB, mapped when first scanned
    };
    Window w[Mcfg::MAX];
    u32 n = 0;

    volatile u32 *at(u32 wi, u8 bus, u8 dev, u8 fn, u32 off)
    {
        Window &x = w[wi];
        if (bus < x.start || bus > x.end) return nullptr;
        if (!x.bus[bus]) {
            const PhysAddr pa(x.base + (u64(bus) << 20));
            x.bus[bus] = reinterpret_cast<u8 *>(mm::map_mmio(pa, MiB).raw());
            if (!x.bus[bus]) return nullptr;
        }
        return reinterpret_cast<volatile u32 *>(x.bus[bus] + (u32(dev) << 15 | u32(fn) << 12 | (off & 0xffc)));
    }
    u32 read(u32 wi, u8 b, u8 d, u8 f, u32 off)
    {
        volatile u32 *p = at(wi, b, d, f, off);
        return p ? *p : ~0u;
    }
    void write(u32 wi, u8 b, u8 d, u8 f, u32 off, u32 v)
    {
        if (volatile u32 *p = at(wi, b, d, f, off)) *p = v;
    }
};

struct Function {
    u32 window;
    u16 segment;
    u8 bus, dev, fn;
};

class MmioRegs final : public nvme::Regs {
public:
    volatile u8 *base = nullptr;
    u32 read32(u32 off) override { return *reinterpret_cast<volatile u32 *>(base + off); }
    void write32(u32 off, u32 v) override { *reinterpret_cast<volatile u32 *>(base + off) = v; }
    // Two dword accesses, low first (NVMe 1.4, 3.1).
    u64 read64(u32 off) override { return u64(read32(off)) | u64(read32(off + 4)) << 32; }
    void write64(u32 off, u64 v) override
    {
        write32(off, u32(v));
        write32(off + 4, u32(v >> 32));
    }
};

class FrameDma final : public nvme::Dma {
public:
    Result<nvme::DmaPage> alloc_page() override
    {
        auto p = mm::alloc_zeroed(0);
        if (!p) return p.error();
        return nvme::DmaPage{*p, mm::phys_ptr<u8>(*p)};
    }
    void free_page(nvme::DmaPage p) override { mm::free(p.pa, 0); }
};

class TscClock final : public nvme::Clock {
public:
    u64 now_us() override { return x86::rdtsc() / max<u64>(time::tsc_hz() / 1000000, 1); }
    void pause() override { __builtin_ia32_pause(); }
};

struct Namespace {
    nvme::NamespaceInfo info;
    gpt::Table *table = nullptr;        // nullptr: no valid GPT
    bool boot = false;                  // its GPT has a boot loader's partition
};

struct Nvme {
    Function pci;
    char name[8];                       // "nvme0"
    MmioRegs regs;
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

Ecam ecam_{};
FrameDma dma_;
TscClock clock_;
Nvme nvme_[MAX_CONTROLLERS]{};
u32 nnvme_;
Resolved resolved_[KeelConfig::MAX_GUESTS][GuestConfig::MAX_DISKS];

constexpr u32 PCI_COMMAND = 0x04, PCI_CLASS = 0x08, PCI_HEADER = 0x0c, PCI_BAR0 = 0x10, PCI_BUSES = 0x18;
constexpr u32 CMD_MEM = 1u << 1, CMD_MASTER = 1u << 2, CMD_INTX_OFF = 1u << 10;
constexpr u32 CLASS_NVME = 0x010802;

// Depth-first from each window's first bus, through bridges' secondary buses.
void scan(Function *out, u32 &n)
{
    for (u32 wi = 0; wi < ecam_.n; wi++) {
        bool seen[256] = {};
        u8 stack[256];
        u32 sp = 0;
        stack[sp++] = ecam_.w[wi].start;
        while (sp) {
            const u8 bus = stack[--sp];
            if (seen[bus]) continue;
            seen[bus] = true;
            for (u8 dev = 0; dev < 32; dev++) {
                for (u8 fn = 0; fn < 8; fn++) {
                    const u32 id = ecam_.read(wi, bus, dev, fn, 0);
                    if ((id & 0xffff) == 0xffff || id == 0) {
                        if (fn == 0) break;
                        continue;
                    }
                    const u32 hdr = ecam_.read(wi, bus, dev, fn, PCI_HEADER) >> 16 & 0xff;
                    const u32 cls = ecam_.read(wi, bus, dev, fn, PCI_CLASS) >> 8;
                    if ((hdr & 0x7f) == 1) {
                        const u8 sec = u8(ecam_.read(wi, bus, dev, fn, PCI_BUSES) >> 8);
                        if (sec > bus && !seen[sec] && sp < 256) stack[sp++] = sec;
                    } else if (cls == CLASS_NVME && n < MAX_FUNCTIONS) {
                        out[n++] = Function{wi, ecam_.w[wi].segment, bus, dev, fn};
                    }
                    if (fn == 0 && !(hdr & 0x80)) break;   // not multi-function
                }
            }
        }
    }
    // PCI order: segment, bus, device, function (insertion sort: a handful).
    auto key = [](const Function &f) { return u64(f.segment) << 16 | u64(f.bus) << 8 | f.dev << 3 | f.fn; };
    for (u32 i = 1; i < n; i++)
        for (u32 j = i; j > 0 && key(out[j]) < key(out[j - 1]); j--) {
            const Function t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
}

// BAR0 (64-bit memory) sized with decoding off, then memory space and bus
// mastering on, INTx off (Keel polls).
bool map_bar0(Nvme &c)
{
    const Function &f = c.pci;
    const u32 cmd = ecam_.read(f.window, f.bus, f.dev, f.fn, PCI_COMMAND) & 0xffff;
    const u32 lo = ecam_.read(f.window, f.bus, f.dev, f.fn, PCI_BAR0);
    if (lo & 1) {
        log_error("%s: BAR0 is an I/O BAR: not an NVMe controller Keel can drive", c.name);
        return false;
    }
    const bool wide = (lo >> 1 & 3) == 2;
    const u32 hi = wide ? ecam_.read(f.window, f.bus, f.dev, f.fn, PCI_BAR0 + 4) : 0;
    ecam_.write(f.window, f.bus, f.dev, f.fn, PCI_COMMAND, cmd & ~(CMD_MEM | CMD_MASTER));
    ecam_.write(f.window, f.bus, f.dev, f.fn, PCI_BAR0, ~0u);
    const u32 mask = ecam_.read(f.window, f.bus, f.dev, f.fn, PCI_BAR0) & ~0xfu;
    ecam_.write(f.window, f.bus, f.dev, f.fn, PCI_BAR0, lo);
    const u64 base = (u64(hi) << 32 | lo) & ~0xfull;
    const u64 size = mask ? u64(~mask) + 1 : 0;
    if (!base || size < 0x2000) {
        log_error("%s: BAR0 %s (base %lx, %lu bytes): not usable", c.name, base ? "too small" : "not assigned", base,
                  size);
        ecam_.write(f.window, f.bus, f.dev, f.fn, PCI_COMMAND, cmd);
        return false;
    }
    ecam_.write(f.window, f.bus, f.dev, f.fn, PCI_COMMAND, cmd | CMD_MEM | CMD_MASTER | CMD_INTX_OFF);
    c.regs.base = reinterpret_cast<volatile u8 *>(mm::map_mmio(PhysAddr(base), min(size, MAX_BAR_MAP)).raw());
    if (!c.regs.base) {
        log_error("%s: cannot map BAR0 at %lx", c.name, base);
        return false;
    }
    return true;
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
    const Function &f = c.pci;
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
const char *resolve(const GuestConfig &g, const DiskConfig &dc, Resolved &r)
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
    (void)g;
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
    for (u32 i = 0; i < cfg.guest_count; i++)
        for (u32 k = 0; k < cfg.guests[i].disk_count; k++)
            if (!cfg.guests[i].disks[k].device.empty()) return true;
    return false;
}

void init_storage(const KeelConfig &cfg)
{
    const Mcfg &m = boot_acpi().mcfg;
    for (usize i = 0; i < m.count && ecam_.n < Mcfg::MAX; i++) {
        Ecam::Window &w = ecam_.w[ecam_.n++];
        w.base = m.entries[i].base;
        w.segment = m.entries[i].segment;
        w.start = m.entries[i].start_bus;
        w.end = m.entries[i].end_bus;
    }
    if (!ecam_.n) log_error("storage: no PCI ECAM (ACPI MCFG): Keel cannot reach its NVMe drives");
    Function fns[MAX_FUNCTIONS];
    u32 nf = 0;
    scan(fns, nf);
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
            if (const char *why = resolve(g, dc, r)) {
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

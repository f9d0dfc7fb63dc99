// What the files of Keel's hypervisor core share (kernel-only, never included
// outside kernel/hv/): a guest, its vCPUs, the per-CPU run queues, the core's
// state, and the functions one file of the core calls in another.
//
//   hypervisor.cpp     the core's state, start()
//   create.cpp         a guest built from its configuration: RAM, platform, loader, vCPUs and their placement
//   platform.cpp       the PC platform of every guest: legacy area, ACPI tables, IOAPIC, power, PIT, PIC, PCI
//   lifecycle.cpp      launch, end, restart (and its rebuild in slices), the last vCPU's finish
//   irq.cpp            the guest's APIC and IOAPIC pages and MSRs, MSIs and INTx, IPIs, INIT/SIPI
//   sched.cpp          the run queues' sleepers: halted vCPUs and when they wake
//   run_loop.cpp       cpu_loop: pick a vCPU, run it for a slice, handle its exits
//   disk.cpp           [[guest.disk]]: backing made once, virtio-blk functions on the PCI bus, their stats
//   nic.cpp            [[network]] switches, [[guest.nic]]: virtio-net functions on switch ports, their stats
//   stats.cpp          per-vCPU accounting printed
//   guest_console.cpp  a guest's console lines: its name before them, a rate limit
//   manage.cpp         the management console on Keel's serial line, and the guests' watchdogs
#pragma once

#include "arch/x86_64/cpu.hpp"
#include "arch/x86_64/virt.hpp"
#include "drivers/nvme/extent.hpp"
#include "drivers/vtd/irte.hpp"
#include "kernel/firmware/acpi.hpp"
#include "kernel/firmware/multiboot2.hpp"
#include "kernel/guest/config.hpp"
#include "kernel/guest/cpu_profile.hpp"
#include "kernel/guest/guest_memory.hpp"
#include "kernel/guest/vcpu.hpp"
#include "kernel/guest/vcpu_irq.hpp"
#include "kernel/lib/spinlock.hpp"
#include "kernel/pci/passthrough.hpp"
#include "kernel/pci/pci.hpp"
#include "kernel/vdev/guest_platform.hpp"
#include "kernel/vdev/heartbeat.hpp"
#include "kernel/vdev/ioapic.hpp"
#include "kernel/vdev/pic.hpp"
#include "kernel/vdev/pit.hpp"
#include "kernel/vdev/power.hpp"
#include "kernel/vdev/uart.hpp"
#include "kernel/net/switch.hpp"
#include "kernel/virtio/blk.hpp"
#include "kernel/virtio/net.hpp"
#include "kernel/virtio/virtio_pci.hpp"

extern const Acpi &boot_acpi();

namespace hv {

constexpr u32 MAX_VCPUS = 16;             // per guest
constexpr u64 LOWMEM_TOP = 3 * GiB;       // guest RAM above this continues at 4 GiB
constexpr usize MAX_BLOCKS = 128;
constexpr u64 GUEST_ACPI_BASE = 0x9f000;  // the guest's ACPI tables: the last page below 640 KiB (not RAM to it)
constexpr u64 GUEST_RSDP_COPY = 0xe0000;  // the RSDP's copy in the BIOS area, where scans find it
constexpr u64 LEGACY_AREA_BYTES = 0x60000;   // 0xA0000-0xFFFFF, backed for every guest
// The PCI host bridge's guest-physical layout: the 32-bit BAR window between low RAM's end and
// the ECAM window, ECAM (bus 0: 1 MiB) below the IOAPIC and APICs; the 64-bit window sits above RAM.
constexpr u64 PCI_MMIO32_BASE = LOWMEM_TOP, PCI_MMIO32_SIZE = 0x20000000;   // 0xC0000000-0xDFFFFFFF
constexpr u64 PCI_ECAM_BASE = 0xe0000000;
constexpr u64 PCI_MMIO64_SIZE = 16 * GiB;
// The 64-bit window's base for a guest of `memory` bytes: the first 1 GiB boundary above its RAM.
constexpr u64 pci_mmio64_base(u64 memory)
{
    const u64 high_end = memory > LOWMEM_TOP ? 4 * GiB + (memory - LOWMEM_TOP) : 4 * GiB;
    return (high_end + GiB - 1) & ~(GiB - 1);
}
constexpr u32 PCI_INTX_GSI = 16;          // INTA-INTD swizzle onto IOAPIC pins 16-19
static_assert(PCI_MMIO32_BASE + PCI_MMIO32_SIZE <= PCI_ECAM_BASE);

struct Guest;

struct Vcpu {
    // rebuilding: vCPU 0 stands in the run queue for its guest's restart (zeroing its RAM in slices).
    // paused: off every queue until the operator resumes its guest (or the guest ends).
    enum class State : u8 { idle, runnable, running, halted, stopped, rebuilding, paused };

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
};

// The local APICs' register page and MSRs, routed to the accessing vCPU's model.
class LapicDevice final : public MmioDevice, public MsrDevice {
public:
    void attach(Guest *g) { g_ = g; }
    bool covers(u64 gpa) const override;
    // Only the accessing vCPU's own APIC: while it is globally disabled (or in x2APIC mode) its
    // page is unclaimed memory for that vCPU, whatever the other vCPUs' APICs do.
    bool covers_for(u32 vcpu, u64 gpa) const override;
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

// A disk on Keel's NVMe storage, as virtio-blk sees it: a range of a namespace
// through its controller's port (drivers/nvme/extent).
class NvmeBackend final : public virtio::BlkBackend {
public:
    explicit NvmeBackend(const nvme::Extent &x) : x_(x) {}
    u64 bytes() const override { return x_.bytes(); }
    u32 block_size() const override { return x_.block_size(); }
    bool volatile_cache() const override { return x_.volatile_cache(); }
    Status read(u64 off, u64 len, Copy &to) override
    {
        return x_.read(off, len, [&](const u8 *src, u64 n, u64 pos) { return to.piece(const_cast<u8 *>(src), n, pos); });
    }
    Status write(u64 off, u64 len, Copy &from) override
    {
        return x_.write(off, len, [&](u8 *dst, u64 n, u64 pos) { return from.piece(dst, n, pos); });
    }
    Status flush() override { return x_.flush(); }
    Status zero(u64 off, u64 len) override;

private:
    nvme::Extent x_;
};

// One [[guest.disk]]: its backing (kept across the guest's starts) and its device models
// (rebuilt at every start, placement-new in the storage).
struct GuestDisk {
    Guest *guest;
    u32 index;                            // 0: /dev/vda, at PCI device 1
    u8 *data;                             // a RAM disk's backing, host memory (nullptr: not made yet)
    u64 bytes;
    // A disk on a device: its backend (nullptr: not opened yet, or a RAM disk).
    alignas(NvmeBackend) u8 backend_storage[sizeof(NvmeBackend)];
    NvmeBackend *backend;
    bool reported;                        // its DEVICE_NEEDS_RESET was printed (this start)
    alignas(virtio::BlkDevice) u8 blk_storage[sizeof(virtio::BlkDevice)];
    alignas(virtio::BlkVirtio) u8 adapter_storage[sizeof(virtio::BlkVirtio)];
    alignas(virtio::VirtioPciFunction) u8 fn_storage[sizeof(virtio::VirtioPciFunction)];
    virtio::BlkDevice *blk;
    virtio::BlkVirtio *adapter;
    virtio::VirtioPciFunction *fn;
};

struct GuestNic {
    Guest *guest;
    u32 index;                            // 0: eth0
    bool reported;                        // its DEVICE_NEEDS_RESET was printed (this start)
    net::Switch *sw;                      // its network's
    alignas(virtio::NetDevice) u8 dev_storage[sizeof(virtio::NetDevice)];
    alignas(virtio::VirtioPciFunction) u8 fn_storage[sizeof(virtio::VirtioPciFunction)];
    virtio::NetDevice *dev;
    virtio::VirtioPciFunction *fn;
};

// A host PCI function as host_pci.cpp finds it.
struct HostFn {
    u16 segment;
    u8 bus, dev, fn;
    u32 window;             // the ECAM window it was found through
    u32 id;                 // vendor | device << 16
    u32 class_code;         // class, subclass, programming interface
    u16 vf = 0;             // an SR-IOV virtual function: its number (1-based) at its PF; 0: not a VF
    u16 pf_sid = 0;         // a VF's physical function (same segment)
    u16 sid() const { return u16(bus << 8 | dev << 3 | fn); }
};

// A DMA domain of the IOMMU: a guest's RAM as its devices see it (IOVA = guest-physical). Opaque
// outside the IOMMU backend (VT-d: iommu.cpp keeps its second-level table in `storage`; an AMD-Vi
// backend would keep its own table format there).
struct DmaDomain {
    static constexpr usize STORAGE = 128;
    alignas(8) u8 storage[STORAGE];
    bool built;
    u16 did;
};

// A host PCI function given to the guest ([[guest.pci]], passthrough.cpp): the real device behind
// its PassthroughFunction, reached through ECAM and its BARs mapped in Keel's MMIO window.
struct GuestPci final : HostPort {
    struct Bar {
        u64 base = 0, size = 0;
        volatile u8 *map = nullptr;                 // Keel's uncached mapping (nullptr: not a memory BAR)
    };
    Guest *guest = nullptr;
    u32 index = 0;                        // in the guest's [[guest.pci]] order
    HostFn host{};
    Bar bars[PciFunction::BARS]{};
    u32 saved_bars[PciFunction::BARS]{}; // the BAR registers as the firmware set them, restored after a reset
    u16 saved_devctl = 0, saved_linkctl = 0;   // PCIe Device and Link Control, likewise (MPS must match the port's)
    HostFunctionInfo info{};
    // No FLR: the bridge above it, whose secondary bus reset resets it (everything below that
    // bridge is given to this guest); sbr false: it has neither and is not reset between starts.
    HostFn sbr_bridge{};
    bool sbr = false;
    u32 pcie = 0;                         // its PCI Express capability (0: none)
    u32 msix = 0;                         // its MSI-X capability (0: none)
    u32 msi = 0;                          // its MSI capability (0: none)
    bool msi64 = false, msi_maskable = false;   // its MSI's 64-bit address, per-vector masking
    bool flr = false;                     // it has Function Level Reset
    // Its MSI-X vectors (or its one MSI vector) as the host routes them: the device's entry n
    // (its MSI message) raises IRTE `irte`, which interrupts Keel on `host` (on the CPU of the
    // guest's vCPU 0); the handler raises the guest's vector n through its emulated MSI-X table
    // or MSI capability (masks and pending bits as the guest set them).
    struct Vector {
        GuestPci *p = nullptr;
        u16 n = 0, irte = 0;
        u8 host = 0;                        // 0: not routed
    } vectors[PciFunction::MAX_MSIX]{};
    u64 interrupts = 0;
    u64 faults = 0;                       // DMA and interrupt faults it caused (all starts)                    // taken from the device (this start)
    alignas(PassthroughFunction) u8 fn_storage[sizeof(PassthroughFunction)]{};
    PassthroughFunction *fn = nullptr;           // this start's (nullptr: not plugged)

    u64 bar_read(u32 bar, u64 offset, u8 size) override;
    void bar_write(u32 bar, u64 offset, u8 size, u64 value) override;
    void set_bus_master(bool on) override;
    // Its BARs' pages straight in the guest's nested tables (uncached, not executable).
    bool map_bar(u32 bar, const BarMapping &m) override;
    void unmap_bar(u32 bar, const BarMapping &m) override;
    u64 bar_maps = 0;                     // times a BAR was mapped directly (this start)
};

struct Guest {
    enum class State : u8 { free, running, stopping, ended };

    const GuestConfig *cfg;
    char name[GuestConfig::MAX_NAME + 1];
    State state;
    Spinlock lock;
    GuestMemory mem;
    struct Block { PhysAddr pa; u8 order; u64 gpa = 0; bool ram = false; } blocks[MAX_BLOCKS];   // ram: at gpa, DMA-able by its devices
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
    alignas(PicModel) u8 pic_storage[sizeof(PicModel)];
    alignas(PciBus) u8 pci_storage[sizeof(PciBus)];
    PciBus *pci;
    GuestDisk disks[GuestConfig::MAX_DISKS];
    u32 ndisks;                           // plugged this start
    GuestNic nics[GuestConfig::MAX_NICS];
    u32 nnics;                            // plugged (on their switches) this start
    GuestPci pcis[GuestConfig::MAX_PASSTHROUGH];
    u32 npcis;                            // claimed at start (their host functions found and checked)
    bool pci_refused;                     // a [[guest.pci]] was refused: never started
    DmaDomain dma;                        // its passed-through devices' domain (this start)
    bool linux;                           // booted by the Linux boot protocol
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
    // The management console (manage.cpp). held: the operator stopped it, nothing restarts it
    // but the operator. paused: its vCPUs park at their next exit (under g.lock).
    bool held;
    bool paused;
    u32 restarts;                         // starts after the first made by Keel (on_exit, watchdog, reboot)
    u64 window_tsc;                       // max_restarts: when the current window began, and its restarts
    u32 window_restarts;
    // Watchdog (cfg->watchdog_ns): armed by the first heartbeat of each start.
    alignas(HeartbeatModel) u8 heartbeat_storage[sizeof(HeartbeatModel)];
    HeartbeatModel *heartbeat;            // nullptr: no watchdog
    u64 beats_seen;
    u64 beat_tsc;                         // when beats_seen last changed (0: not armed yet)
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

// The core's state (hypervisor.cpp).
extern KeelConfig config_;
extern Guest guests_[KeelConfig::MAX_GUESTS];
extern RunQueue rq_[MAX_CPUS];
extern u32 ncpus_;
extern u64 slice_tsc_;
extern u64 tick_tsc_;                     // the scheduler's tick (1 ms) in TSC ticks
extern u32 live_guests_;
extern u64 stats_every_tsc_;              // "stats_interval=N" on Keel's command line: periodic statistics
extern u64 stats_next_;
extern const BootInfo *boot_;
extern bool started_;

// create.cpp
void release(Guest &g);
bool create_memory(Guest &g, bool zero);
bool create(Guest &g, bool memory_ready = false);

// platform.cpp: the legacy area (in g.blocks), the ACPI tables in guest RAM (rsdp: where), the
// IOAPIC, power/PM timer, PIT and PIC models on g.platform. false: logged, the caller releases.
bool build_platform(Guest &g, u64 &rsdp);

// disk.cpp: prepare_disks makes each disk's backing once (false: logged at the disk's line, not
// started); plug_disks puts its virtio-blk function on g.pci (after build_platform).
bool prepare_disks(Guest &g, const BootModule *(*find)(StrView));
// host_pci.cpp: the host's PCI functions (HostFn, above) through the MCFG's ECAM (boot CPU, while Keel starts).
inline constexpr u32 PCI_COMMAND = 0x04, PCI_CLASS = 0x08, PCI_HEADER = 0x0c, PCI_BAR0 = 0x10, PCI_BUSES = 0x18;
inline constexpr u32 CMD_MEM = 1u << 1, CMD_MASTER = 1u << 2, CMD_INTX_OFF = 1u << 10;
u32 host_pci_read(const HostFn &f, u32 off);
void host_pci_write(const HostFn &f, u32 off, u32 v);
u32 host_pci_scan(HostFn *out, u32 max);
volatile u8 *host_pci_map_bar0(const HostFn &f, u64 max_map, const char *who);
u32 host_pci_cap(const HostFn &f, u8 id);
// One BAR at configuration offset `reg` (a function's own BARs, or an SR-IOV capability's VF
// BARs, which end at `reg_end`), sized the PCI way: all ones written, the mask read back, the
// value restored. The caller keeps the function's memory decoding off meanwhile. An I/O BAR
// is only reported as such; a 64-bit BAR whose upper half would be past reg_end is `cut`.
struct HostBar {
    u64 base = 0, size = 0;   // size 0: no BAR here (sizing reads 0)
    bool io = false, wide = false, prefetchable = false, cut = false;
};
HostBar host_pci_bar(const HostFn &f, u32 reg, u32 reg_end);
u32 host_pci_ext_cap(const HostFn &f, u16 id);

// The IOMMU, as the rest of Keel uses it (the seam an AMD-Vi backend would implement too: nothing
// above this line of functions names VT-d; the VT-d backend is iommu.cpp and iommu_irq.cpp).
// init_iommu once at start (before Keel's drivers): default deny; Keel's own devices are attached
// to its DMA domain, which maps only the pages given to them.
void init_iommu(bool required);
bool iommu_on();
// DMA addresses the IOMMU translates are below this (~0: no IOMMU on): where Keel's own DMA
// pages must be (its domain maps them at IOVA = host-physical).
u64 iommu_dma_limit();
bool iommu_attach_keel(const HostFn &f, const char *who);
Status iommu_map_keel(PhysAddr pa);
void iommu_unmap_keel(PhysAddr pa);
// A guest's domain: built over its RAM blocks (DID `did`), devices attached and detached (their
// context entries, invalidated), destroyed once none is attached.
Status iommu_domain_build(DmaDomain &d, u16 did, const Guest &g);
bool iommu_attach(const HostFn &f, DmaDomain &d, const char *who);
void iommu_detach(const HostFn &f, DmaDomain &d);
void iommu_domain_destroy(DmaDomain &d);
// The function is named by a firmware RMRR (its DMA to reserved memory must keep working).
bool iommu_rmrr_device(const HostFn &f);
// The host's PCI functions with their IOMMU groups (group[i]: index of its group's first member).
u32 iommu_host_groups(HostFn *fns, u32 *group, u32 max);
void iommu_poll();
u64 iommu_faults();
void iommu_stats();     // "keel: stats iommu faults=N unlogged=N overflows=N"
void iommu_selftest();
// VT-d backend internals. iommu.cpp, for iommu_irq.cpp: the units Keel turned on (none while the IOMMU is off), the
// lock every submission to their queues takes, the tables' write-back where the units do not
// snoop, each recorded fault taken (and counted), a fault logged.
u32 iommu_units();
vtd::Unit &iommu_unit(u32 i);
PhysAddr iommu_unit_base(u32 i);
u16 iommu_unit_segment(u32 i);
Spinlock &iommu_lock();
void iommu_publish();
bool iommu_firmware_remaps_interrupts();   // the DMAR's INTR_REMAP flag
void iommu_take_faults(void (*fn)(void *ctx, u16 segment, const vtd::Fault &f), void *ctx);
void iommu_log_fault(const char *prefix, u16 segment, const vtd::Fault &f);

// iommu_irq.cpp: interrupt remapping, turned on by init_iommu when every unit has it: a device's
// MSI/MSI-X messages name an entry Keel made for it (its source-id checked by the unit),
// which sends a fixed, edge, physical-destination interrupt to `dest_apic_id` on `vector`
// (a Keel vector: irq_vector_alloc, arch/x86_64/irq.hpp). Without it (false), MSI devices
// are not assigned. alloc: Err::unsupported (no remapping), Err::busy (table full),
// Err::invalid (a vector below 16, or a destination wider than the table's mode).
void init_interrupt_remapping();
bool iommu_irq_remapping();
Result<u16> iommu_irte_alloc(u16 sid, u32 dest_apic_id, u8 vector);
Status iommu_irte_retarget(u16 handle, u32 dest_apic_id, u8 vector);
void iommu_irte_free(u16 handle);
struct IommuMsi {
    u32 addr_lo, addr_hi, data;
};
IommuMsi iommu_irte_msi(u16 handle);   // what the device's MSI capability or MSI-X entry gets
void iommu_irq_selftest(bool qemu_deviations);

// storage.cpp: Keel's NVMe drives. init_storage (once, before any guest is created, when
// storage_needed) finds and brings up the controllers, reads their GPTs and resolves every
// device disk of the configuration (errors logged at the disk's line); open_device_disk gives
// guest `g`'s disk `disk` its range (false: it did not resolve).
bool storage_needed(const KeelConfig &cfg);
void init_storage(const KeelConfig &cfg);
bool open_device_disk(const GuestConfig &g, u32 disk, nvme::Extent &out);
// The host function is one of Keel's drives (never given to a guest).
bool storage_owns(const HostFn &f);
// A drive Keel brought up but no disk is on, now given to a guest: shut down and left alone.
void storage_release(const HostFn &f);
// The function is one of Keel's NVMe drives, up and driven.
bool storage_drives(const HostFn &f);
// Through the drive `pf`: its VF number vfn made usable (nvq queues, nvi interrupts, online,
// namespace nsid attached). nullptr, or why not.
const char *storage_vf_online(const HostFn &pf, u16 vfn, u16 nvq, u16 nvi, u32 nsid);

// sriov.cpp: [keel] sriov (after init_storage, before claim_passthrough): each PF's VFs enabled
// and made usable (errors logged at the line); sriov_pf: f is such a PF (Keel's); sriov_vf_bar:
// a VF's BAR as its PF's SR-IOV capability places it (false: not a VF of Keel's, or no such BAR).
void init_sriov(const KeelConfig &cfg);
bool sriov_pf(const HostFn &f);
bool sriov_vf_bar(const HostFn &vf, u32 bar, u64 &base, u64 &size, bool &wide);
// When every guest has ended: the drives' caches flushed, and before power-off the controllers shut down.
void storage_quiesce(bool power_off);
bool plug_disks(Guest &g);
// On the guest's exits: the queues whose last batch ended at its budget, serviced once more.
void service_disks(Guest &g);

// nic.cpp: create_networks makes each [[network]]'s switch (once, before any guest);
// plug_nics puts the guest's virtio-net functions on g.pci after its disks and their ports on
// the switches; unplug_nics takes the ports off (before the guest's memory goes).
void create_networks();
bool plug_nics(Guest &g);
void unplug_nics(Guest &g);
void service_nics(Guest &g);
void print_nic_stats(Guest &g, bool asked);

// passthrough.cpp: claim_passthrough (once, before any guest is created) finds and checks
// every [[guest.pci]] of every guest, in file order (a refused one: logged at its line, that
// guest never starts); plug_passthrough (each start, after the NICs) resets each device, builds
// the guest's DMA domain and puts its functions on g.pci; unplug_passthrough (before the
// guest's memory goes) detaches them from the IOMMU and resets them.
bool passthrough_needed(const KeelConfig &cfg);
void claim_passthrough(const KeelConfig &cfg);
bool plug_passthrough(Guest &g);
void unplug_passthrough(Guest &g);
// Once its vCPUs are placed: each device's MSI-X vectors (or its one MSI vector) routed through
// interrupt remapping to the CPU of the guest's vCPU 0 (false: logged, not started).
bool route_passthrough_irqs(Guest &g);
// A DMA or interrupt fault by this requester (boot CPU, from iommu_poll): counted for the device
// and its guest, if it is a passed-through one.
void passthrough_fault(u16 segment, u16 sid);
// "stats NAME pci=K device=SSSS:BB:DD.F interrupts=N dma_faults=N filtered=N" for each device.
void print_passthrough_stats(Guest &g, bool asked);
// "dma_canary" on Keel's command line (tests): 2 MiB of Keel's memory, 2 MiB aligned above 64 MiB,
// filled with a pattern at start and checked when every guest has ended.
void dma_canary_arm();
void dma_canary_check();

// lifecycle.cpp
void launch(Guest &g);
void all_guests_ended();
void restart(Guest &g, const char *why);
void rebuild_step(Vcpu &v);
void vcpu_stopped(Vcpu &v);
constexpr u64 NO_ADDR = ~0ull;            // end_guest's `why` has no address after it
void end_guest(Guest &g, u32 code, const char *why, u64 addr, bool reboot = false);
void restart_due(u32 cpu_index);

// irq.cpp
void ioapic_deliver(void *ctx, u32 dest, bool logical, u8 vector, u8 mode, bool level);
void msi_deliver(void *ctx, u64 address, u32 data);
void pci_intx(void *ctx, u32 gsi, bool level);
void route_ipis(Guest &g, Vcpu &from);
u64 host_deadline(Vcpu &v, u64 guest_tsc);
bool wants_to_run(Vcpu &v);

// sched.cpp
bool sleeper_due(RunQueue &q);
void wake_sleepers(RunQueue &q);

// stats.cpp
// asked: the operator's `stats` (printed whatever the log level).
void print_stats(Guest &g, bool asked = false);

// guest_console.cpp
void guest_line(void *ctx, const char *line, usize n);

// manage.cpp: on the boot CPU, at each of its ticks and idle wake-ups: console input, watchdogs.
void manage_poll();
// run_loop.cpp: park a vCPU of a paused guest (its own CPU); resume puts them back.
void resume_vcpus(Guest &g);

} // namespace hv

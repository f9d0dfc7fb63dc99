// A host PCI function given to a guest (issue 13): what the guest sees of it
// on its virtual bus, and the filter between the guest and the real device.
//
// The guest sees an emulated configuration space built from the host
// function's: its IDs and class, its memory BARs with their real sizes and
// types (at addresses Keel chose in the guest's PCI window; the guest may move
// them), INTx absent, and one message-interrupt capability: MSI-X with the
// host's table layout (at most MAX_MSIX vectors) when the host function has
// MSI-X (its MSI, if it has both, is not shown), else, when it has only MSI,
// an emulated MSI capability with one vector (64-bit address, per-vector
// masking), whatever the host's Multiple Message Capable says; and the host's
// PCI Express capability, read-only through a filter (pcie_view). Nothing else
// of the host's configuration space (power management, SR-IOV, vendor
// capabilities, extended space) is shown or reachable.
//
// Why one MSI vector: a multi-message function decides how it spreads its
// events over its messages from its own Multiple Message Enable, which the
// host side (Keel) programs once, while the guest's may differ and change;
// and remapping several messages needs a block of consecutive interrupt
// remapping entries addressed through the subhandle (VT-d 5.1.5.2, SHV). One
// vector needs neither: the device sends message 0 only.
//
// BAR accesses reach the device through HostPort, except the host's MSI-X
// table and PBA: the guest's MSI-X table or MSI capability is the emulated one
// of PciFunction (its vectors are raised by signal_vector when the host's
// interrupt for that vector arrives), and the host's own table and MSI
// registers, which Keel programs, are never readable or writable by the guest
// (the MSI registers are in configuration space, which is all emulated). The guest's Bus Master bit is forwarded:
// the device masters DMA only while the guest lets it (and the IOMMU confines
// it to the guest's RAM whatever it does).
//
// Direct mapping (issue 13): while the guest decodes memory (its Command
// register) and a BAR sits at a page-aligned address inside one of the windows
// set by set_map_windows, its pages are handed to HostPort::map_bar to be mapped
// straight into the guest's nested page tables (uncached): the guest reaches
// the device without an exit. Never mapped: the 4 KiB pages holding any part
// of the host's MSI-X table or PBA (their accesses keep trapping into the
// emulated table and the filter), and BARs smaller than a page (their page
// would reach beyond the BAR, into whatever the host put next to it). A BAR
// write that moves it, or Memory Space turned off, unmaps it first
// (HostPort::unmap_bar with what was mapped), then it is mapped at its new
// place if that qualifies. All of this runs under the guest's bus lock.
//
// Portable: no hardware, no globals. The kernel side (kernel/hv/passthrough)
// implements HostPort over ECAM, the mapped BARs and the guest's nested tables.
#pragma once

#include "kernel/pci/pci.hpp"

// What of one BAR is mapped directly: page-granular ranges, guest-physical
// address and offset in the BAR (both 4 KiB aligned), at most three (the BAR
// around the MSI-X table's pages and the PBA's).
struct BarMapping {
    static constexpr u64 PAGE = 4096;
    static constexpr u32 MAX_RANGES = 3;
    struct Range {
        u64 guest, offset, size;
    };
    u64 base = 0;                 // the BAR's guest-physical address
    u32 count = 0;
    Range ranges[MAX_RANGES]{};
};

// The real function, as the passed-through function reaches it.
class HostPort {
public:
    // An access inside host BAR `bar` (already checked against its size).
    virtual u64 bar_read(u32 bar, u64 offset, u8 size) = 0;
    virtual void bar_write(u32 bar, u64 offset, u8 size, u64 value) = 0;
    // The device may master DMA (the guest set Bus Master) or not.
    virtual void set_bus_master(bool on) = 0;
    // Map every range of m (guest page -> host BAR `bar` + offset, uncached) into the guest's
    // nested tables: all of them or, returning false, none (the BAR keeps trapping).
    virtual bool map_bar(u32 bar, const BarMapping &m) = 0;
    // Take out what map_bar(bar, m) mapped; the guest's TLBs are flushed before it next runs.
    virtual void unmap_bar(u32 bar, const BarMapping &m) = 0;

protected:
    ~HostPort() = default;
};

// What the host function is, read by the kernel from its configuration space
// (BARs sized with decoding off).
struct HostFunctionInfo {
    struct Bar {
        PciFunction::BarType type = PciFunction::BarType::none;   // I/O BARs: none (not passed through)
        u64 size = 0;
        bool prefetchable = false;
    };
    PciFunction::Ids ids{};
    Bar bars[PciFunction::BARS];
    u16 msix_vectors = 0;            // the host's table size (0: no MSI-X)
    u8 msix_table_bar = 0, msix_pba_bar = 0;
    u32 msix_table_offset = 0, msix_pba_offset = 0;
    u8 msi_vectors = 0;              // the host's MSI Multiple Message Capable, as a count (0: no MSI)
    // The host's PCI Express capability as read, from its ID byte: 60 bytes (version 2) or 36
    // (version 1); 0: none. Shown read-only, filtered (pcie_view).
    static constexpr u8 PCIE_MAX = 60;
    u8 pcie[PCIE_MAX]{};
    u8 pcie_len = 0;
};

// What the guest sees of the host's PCI Express capability (in: `len` bytes from its ID): the
// function's type, device and link capabilities and controls as the host has them, read-only
// (nothing the guest writes there reaches the device: Max Payload Size must match the host's
// port, and ASPM and the link are the host's); Function Level Reset not offered (Keel resets
// the function between starts; the guest cannot); no slot or root port fields; status bits
// clear but for the link's current speed and width. Returns the length shown (0: refused: too
// short, or not a PCI Express capability).
u8 pcie_view(const u8 *in, u8 len, u8 (&out)[HostFunctionInfo::PCIE_MAX]);

class PassthroughFunction final : public PciFunction {
public:
    // The guest sees the host's BARs (place them with place_bars) and MSI-X, or MSI.
    // ok() false: the description is inconsistent (a BAR not a power of two,
    // the MSI-X table or PBA outside its BAR...): the device is not assigned.
    PassthroughFunction(const HostFunctionInfo &info, HostPort &port);
    bool ok() const { return ok_; }
    const char *why() const { return why_; }

    // Give every BAR a guest-physical address in [base, limit), naturally
    // aligned, from `next` on (updated); false if they do not fit.
    bool place_bars(u64 &next, u64 limit);

    // Guest-physical windows [base, end) a BAR may be mapped directly in (the guest's PCI
    // windows: no RAM, no other device of Keel's there). None (the default): nothing is.
    // Before the function is plugged.
    static constexpr u32 MAX_WINDOWS = 2;
    struct Window {
        u64 base, end;
    };
    void set_map_windows(const Window *w, u32 n);

    // What of BAR `bar` would be mapped directly at guest address `base` (false: nothing:
    // sub-page BAR, unaligned or outside the windows, or every page holds MSI-X structures).
    bool mapping_for(u32 bar, u64 base, BarMapping &m) const;
    // What is mapped now (nullptr: BAR `bar` traps).
    const BarMapping *mapped(u32 bar) const { return bar < BARS && mapped_[bar] ? &mapping_[bar] : nullptr; }

    // The vectors the guest's MSI-X table has (min(host's, MAX_MSIX)), or 1 when it is shown
    // MSI (uses_msi()), 0 when neither: the host vectors Keel routes, each raising
    // signal_vector(n).
    u16 vectors() const { return vectors_; }
    bool uses_msi() const { return msi_; }

    u64 bar_read(u32 bar, u64 offset, u8 size) override;
    void bar_write(u32 bar, u64 offset, u8 size, u64 value) override;

    // Accesses the filter refused (the host's MSI-X structures, outside a BAR).
    u64 refused() const { return __atomic_load_n(&refused_, __ATOMIC_RELAXED); }

protected:
    void command_written(u16 old_command) override;
    void bar_written(u32 bar) override;

private:
    // Bring BAR `bar`'s direct mapping in line with its address and the Command register.
    void update_mapping(u32 bar);
    // (bar, offset, size) touches the host's MSI-X table or PBA, or leaves the BAR.
    bool filtered(u32 bar, u64 offset, u8 size) const;

    HostFunctionInfo info_;
    HostPort &port_;
    u16 vectors_ = 0;
    bool msi_ = false;
    bool ok_ = false;
    const char *why_ = "";
    u64 refused_ = 0;
    Window windows_[MAX_WINDOWS]{};
    u32 nwindows_ = 0;
    BarMapping mapping_[BARS]{};
    bool mapped_[BARS]{};
};

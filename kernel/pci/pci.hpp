// A guest's PCI Express host bridge: bus 0 with up to MAX_DEVICES
// single-function devices, device 0 the host bridge itself. It is the general
// mechanism later device models (virtio-pci, passed-through functions) plug
// into: the bus owns every function's configuration space (PCI Local Bus 3.0,
// header type 0), BAR decoding and MSI-X; a device model only describes
// itself (IDs, BARs, capabilities) and answers accesses inside its BARs.
//
// The guest reaches configuration space two ways: ECAM (PCIe 4.0, 7.2.2; the
// MCFG table points at it) and the legacy mechanism #1 at 0xCF8/0xCFC (PCI
// 3.0, 3.2.2.3.2), which Linux probes before it reads ACPI. Both end in
// config_read/config_write. Unimplemented devices read all ones.
//
// Message interrupts: a function may have MSI-X (add_msix: the table and PBA in
// a BAR) and/or MSI (add_msi: the 64-bit capability, 1-32 vectors, optional
// per-vector masking; PCI Local Bus 3.0, 6.8.1). Either ends in the bus's msi
// sink as the (address, data) the guest programmed; signal_vector uses the one
// the guest enabled.
//
// Locking: one lock per bus serialises every access (config, BARs' MSI-X
// structures, signals) between the guest's vCPUs and device back ends. The
// sinks are called with it held: order io_lock, PCI bus, IOAPIC, APICs.
// bar_read/bar_write are called WITHOUT it, so a device may signal from
// inside them; a device serialises its own state.
//
// No hardware, no globals, no allocation: a function's state lives in the
// device model's object (PciFunction), the bus holds pointers.
#pragma once

#include "kernel/lib/spinlock.hpp"
#include "kernel/lib/types.hpp"
#include "kernel/vdev/guest_platform.hpp"

class PciBus;

// One PCI function as a device model implements it. The derived class fills
// in its description (set_ids, set_bar, set_interrupt_pin, add_capability,
// add_msix) before it is plugged; the bus owns the rest of the state.
class PciFunction {
public:
    static constexpr u32 CONFIG_SIZE = 256;       // PCI-compatible space; 0x100-0xFFF (ECAM) reads 0
    static constexpr u32 BARS = 6;
    static constexpr u32 MAX_MSIX = 32;
    static constexpr u32 MAX_MSI = 32;            // MSI's own limit (Multiple Message Capable 101b)

    enum class BarType : u8 { none, mem32, mem64 };

    struct Ids {
        u16 vendor, device;
        u32 class_code;          // base class << 16 | subclass << 8 | programming interface
        u8 revision;
        u16 subsystem_vendor, subsystem;
    };

    // An access inside BAR `bar` at `offset` (size 1, 2, 4 or 8) that is not
    // the MSI-X table or PBA. Called without the bus lock (see above).
    virtual u64 bar_read(u32 bar, u64 offset, u8 size) = 0;
    virtual void bar_write(u32 bar, u64 offset, u8 size, u64 value) = 0;

    // Raise MSI-X vector n: delivered now, or pending in the PBA while masked
    // (delivered on unmask). false: MSI-X is off or n is not a vector (the
    // device should use INTx then).
    bool signal_msix(u16 n);
    // Raise MSI vector n (message n of those the guest enabled with Multiple Message Enable;
    // an n beyond them folds onto them, n mod that count, as a device given fewer messages
    // than it asked for shares them): delivered now, or latched in the Pending Bits while
    // masked (delivered on unmask or when MSI is enabled again). false: MSI is off or n is not
    // below the vectors the capability offers.
    bool signal_msi(u16 n);
    // Raise vector n through whichever of MSI-X and MSI the guest enabled (MSI-X if both:
    // software must not enable both, PCI 3.0 6.8). false: neither is on.
    bool signal_vector(u16 n);
    // The guest's MSI-X Enable bit, read under the bus lock (so a device may
    // ask from under its own lock, which comes before the bus's).
    bool msix_on() const;
    // Drive the function's INTx line (level; the interrupt status bit follows
    // it, INTx Disable keeps it from the IOAPIC).
    void set_intx(bool asserted);

    // The register file (reg < 0x1000, any size 1-4), as the bus reads and writes it under its
    // lock (the unit tests call them directly); unlocked, a read may race a guest's write.
    u32 config_read(u32 reg, u8 size) const;
    void config_write(u32 reg, u8 size, u32 value);
    u16 command() const { return u16(cfg_[0x04] | cfg_[0x05] << 8); }
    // The BAR's current guest-physical base (0: unassigned); a 64-bit BAR's upper half reads 0.
    u64 bar_base(u32 bar) const;
    u64 bar_size(u32 bar) const { return bar < BARS ? bars_[bar].size : 0; }
    bool msix_pending(u16 n) const { return n < msix_.vectors && (msix_.pba[n / 64] >> (n % 64) & 1); }
    // MSI as the guest set it: enabled, and the vectors it enabled (1 << Multiple Message
    // Enable, at most those offered); the Pending Bits (0 without per-vector masking).
    bool msi_enabled() const { return msi_.vectors && (msi_control() & 1); }
    u32 msi_enabled_vectors() const;
    u32 msi_pending() const { return msi_.maskable ? config_read(msi_.cap + 0x14u, 4) : 0; }

protected:
    PciFunction();
    ~PciFunction() = default;

    void set_ids(const Ids &ids);
    // size: a power of two, at least 16 (mem32: at most 2 GiB). A mem64 BAR takes bar and bar + 1.
    bool set_bar(u32 bar, BarType type, u64 size, bool prefetchable);
    void set_interrupt_pin(u8 pin);                    // 1-4: INTA-INTD; 0 none
    // Append a capability with this ID; `body` is what follows its ID and next
    // pointer (len bytes; a vendor-specific capability's length byte is
    // body[0]). wmask (optional, len bytes) marks the bits the guest may
    // write. Returns its offset in config space, 0 if it does not fit.
    u8 add_capability(u8 id, const u8 *body, u8 len, const u8 *wmask = nullptr);
    // MSI-X with `vectors` entries: the table at table_offset in table_bar, the
    // PBA at pba_offset in pba_bar (8-byte aligned, inside the BARs).
    bool add_msix(u16 vectors, u8 table_bar, u32 table_offset, u8 pba_bar, u32 pba_offset);
    // An MSI capability offering `vectors` (1, 2, 4, 8, 16 or 32) with a 64-bit address, and
    // per-vector masking (Mask and Pending Bits) if `maskable`. Starts disabled, unmasked.
    bool add_msi(u8 vectors, bool maskable);

    // After a configuration write changed the Command register (under the bus lock): a
    // passed-through function forwards Bus Master to the real device.
    virtual void command_written(u16 old_command) { (void)old_command; }
    // After a configuration write changed the address of memory BAR `bar` (the low BAR of a
    // mem64 pair, whichever half was written), under the bus lock: a passed-through function
    // moves its direct mapping. Called after command_written when one write did both.
    virtual void bar_written(u32 bar) { (void)bar; }

private:
    friend class PciBus;

    struct Bar {
        u64 size = 0;
        BarType type = BarType::none;
        bool upper = false;      // the high half of a mem64 BAR
    };
    struct Msix {
        u16 vectors = 0;
        u8 cap = 0;              // its offset in config space
        u8 table_bar = 0, pba_bar = 0;
        u32 table_offset = 0, pba_offset = 0;
        u32 table[MAX_MSIX][4] = {};   // address low, address high, data, vector control
        u64 pba[(MAX_MSIX + 63) / 64] = {};
    };

    struct Msi {
        u8 vectors = 0;          // Multiple Message Capable, as a count (0: no MSI)
        u8 cap = 0;
        bool maskable = false;
    };

    u16 msix_control() const;
    u16 msi_control() const { return msi_.vectors ? u16(config_read(msi_.cap + 2u, 2)) : 0; }
    bool msi_masked(u32 n) const { return msi_.maskable && (config_read(msi_.cap + 0x10u, 4) >> n & 1); }
    void set_msi_pending(u32 bits);     // the Pending Bits (read-only to the guest)
    void msi_deliver(u32 n);
    void msi_deliver_pending();
    bool msix_enabled() const { return msix_.vectors && (msix_control() & 0x8000); }
    bool msix_function_masked() const { return msix_control() & 0x4000; }
    bool vector_masked(u16 n) const { return msix_function_masked() || (msix_.table[n][3] & 1); }
    void deliver_pending();
    void update_intx();
    // MSI-X table/PBA: true if (bar, offset) is in one of them (and handled).
    bool msix_access(u32 bar, u64 offset, u8 size, bool write, u64 &value);
    void deliver(u16 n);

    u8 cfg_[CONFIG_SIZE] = {};
    u8 wmask_[CONFIG_SIZE] = {};        // writable bits
    Bar bars_[BARS];
    Msix msix_;
    Msi msi_;
    u8 next_cap_ = 0x40;                 // where the next capability goes
    u8 last_cap_ = 0;                    // the last one's offset (its next pointer is patched)
    bool intx_ = false;                  // the device's line
    bool intx_out_ = false;              // what the IOAPIC sees
    PciBus *bus_ = nullptr;
    u32 gsi_ = 0;
};

// Bus 0 of a guest's host bridge, on its port space (0xCF8-0xCFF) and its
// physical space (the ECAM window and the BARs as programmed).
class PciBus final : public IoDevice, public MmioDevice {
public:
    static constexpr u32 MAX_DEVICES = 8;    // device numbers 0..7 on bus 0
    static constexpr u64 ECAM_BUS_BYTES = 1ull << 20;
    static constexpr u16 CONFIG_ADDRESS = 0xcf8, CONFIG_DATA = 0xcfc;
    // The host bridge's IDs: Red Hat's generic PCIe host bridge (1b36:0008),
    // which guests know and treat as a plain host bridge (no chipset quirks).
    static constexpr u16 HOST_VENDOR = 0x1b36, HOST_DEVICE = 0x0008;

    // MSI and MSI-X messages (address, data) and INTx lines (GSI, level) leave through these.
    struct Sinks {
        void (*msi)(void *ctx, u64 address, u32 data) = nullptr;
        void (*intx)(void *ctx, u32 gsi, bool level) = nullptr;
        void *ctx = nullptr;
    };

    // ecam_base: 1 MiB aligned (bus 0's window). intx_gsi_base: the first of the four GSIs INTA-INTD swizzle onto.
    PciBus(u64 ecam_base, u32 intx_gsi_base, const Sinks &sinks);

    // Put f at device number dev (1..MAX_DEVICES-1, free). Before the guest runs.
    bool plug(u32 dev, PciFunction &f);
    // The GSI device dev's pin (1-4 = INTA-INTD) is wired to: the usual swizzle
    // over four lines (the DSDT's _PRT says the same).
    static u32 intx_gsi(u32 gsi_base, u32 dev, u8 pin) { return gsi_base + (dev + pin - 1) % 4; }

    u64 ecam_base() const { return ecam_; }

    // Configuration space of bus 0 (reg 0..0xFFF, any size 1-4 inside it).
    u32 config_read(u32 dev, u32 fn, u32 reg, u8 size);
    void config_write(u32 dev, u32 fn, u32 reg, u8 size, u32 value);

    bool io(u16 port, u8 size, bool in, u32 &value) override;
    bool covers(u64 gpa) const override;
    void mmio(u32 vcpu, u64 gpa, u8 size, bool write, u64 &value) override;

private:
    friend class PciFunction;

    class HostBridge final : public PciFunction {
    public:
        HostBridge();
        u64 bar_read(u32, u64, u8) override { return ~0ull; }
        void bar_write(u32, u64, u8, u64) override {}
    };

    PciFunction *function(u32 dev, u32 fn) const { return dev < MAX_DEVICES && fn == 0 ? fns_[dev] : nullptr; }
    u32 config_read_locked(u32 dev, u32 fn, u32 reg, u8 size);
    void config_write_locked(u32 dev, u32 fn, u32 reg, u8 size, u32 value);
    // The function and BAR decoding gpa (memory decode on), or nullptr.
    PciFunction *decode(u64 gpa, u32 &bar, u64 &offset) const;

    mutable Spinlock lock_;
    u64 ecam_;
    u32 gsi_base_;
    Sinks sinks_;
    u32 address_ = 0;                // CONFIG_ADDRESS
    PciFunction *fns_[MAX_DEVICES] = {};
    HostBridge host_;
};

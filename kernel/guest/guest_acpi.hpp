// The ACPI tables of one guest: what an unmodified Linux (6.1) needs to find
// its CPUs, interrupt controllers, devices and power controls on Keel's
// virtual platform. Built into a caller-provided buffer; the caller copies it
// into guest RAM at `base`. Every pointer inside is guest-physical
// (base + offset), so the blob is only valid at that address.
//
// The platform is ACPI "hardware-reduced" (ACPI 6.x, 4.1): no PM1
// event/control blocks, no GPEs, no SCI, no FACS. Sleep (S5 only) and reset go
// through three byte-wide I/O ports that Keel emulates. The PM timer
// (pm_timer_port) is given anyway, in PM_TMR_BLK and X_PM_TMR_BLK with
// PM_TMR_LEN = 4: the spec lets a hardware-reduced OSPM ignore it, but Linux
// reads it (acpi_pm clocksource; x86's acpi_parse_fadt takes X_PM_TMR_BLK
// whatever the flags say) and so do guests that time things with it.
//
//   RSDP (rev 2) -> XSDT (64-bit) and RSDT (32-bit) -> FACP, APIC
//   FACP (rev 6.3, 276 bytes) -> DSDT (DSDT and X_DSDT both set)
//   DSDT (rev 2): Scope(\_SB) { COM1 (PNP0501), VRT0..VRT7 (LNRO0005) },
//                 Name(\_S5_, Package(4) { s5_slp_typ, 0, 0, 0 })
//   with a PCI host bridge: MCFG (XSDT/RSDT), and in \_SB: PCI0 (PNP0A08,
//   _CRS windows, _PRT) and RES0 (PNP0C02, the ECAM window)
//
// What Linux does with it (and what the device models must then do):
// - Power-off writes 0x80 (WAK_STS, write-1-to-clear) to sleep_sts_port, then
//   (s5_slp_typ << 2) | 0x20 (SLP_TYP, SLP_EN) to sleep_ctl_port, then polls
//   sleep_sts_port for bit 7. Linux offers ACPI power-off only if both ports
//   are non-zero.
// - Reboot writes reset_value to reset_port (e.g. 0xFE to 0x64, or 0x06 to 0xCF9).
// - COM1 is an ACPI PNP device: IO 0x3F8-0x3FF and an Extended Interrupt
//   descriptor for GSI ioapic_gsi_base + 4 (IOAPIC pin 4), edge, active high,
//   exclusive. On HW-reduced ACPI Linux installs no legacy PIC and makes no
//   identity ISA IRQ mappings, so the _CRS is what routes the UART's interrupt.
// - virtio-mmio devices: _HID "LNRO0005" (Linux's virtio_mmio ACPI match),
//   _UID n, _CCA 1, Memory32Fixed(ReadWrite, base, size) and an Extended
//   Interrupt for `gsi`: level-triggered, active high, exclusive (as QEMU's
//   microvm does): the IOAPIC model must implement level semantics (Remote
//   IRR, EOI).
// - MADT: one enabled Local APIC per vCPU (APIC id = UID = 0..vcpus-1), one
//   IOAPIC, one Local APIC NMI (all CPUs, LINT1), PCAT_COMPAT when
//   cfg.pcat_compat (the 8259s are there but inert: Linux on HW-reduced ACPI
//   uses no legacy PIC whatever the flag says).
//   No interrupt source overrides: on HW-reduced ACPI Linux never programs
//   the PIT as its timer (x86_init.timers.timer_init is a no-op) and has no
//   ISA IRQ identity map for an IRQ0 -> GSI2 override to amend.
// - No processor objects: Linux 6.1 brings CPUs up from the MADT alone
//   (ACPI processor objects would only add idle/frequency control).
// - FADT IAPC_BOOT_ARCH: VGA not present; no legacy devices, no 8042 (Linux
//   then leaves the i8042 alone), and CMOS RTC not present unless cfg.cmos_rtc.
//   FADT flags also force APIC physical destination mode (Linux 6.1 then uses
//   physflat / x2APIC physical, never logical or cluster destinations).
//
// The loader's part: copy [0, size) to `base` in guest RAM, describe that
// range as reserved (or ACPI) in the guest's E820 map, and pass the RSDP in
// boot_params.acpi_rsdp_addr; for guests that scan the BIOS area as the ACPI
// spec says (5.2.5.1), copy the RSDP's 36 bytes to a 16-byte boundary in
// 0xE0000-0xFFFFF (its pointers are absolute: the copy is valid as it is).
#pragma once

#include "kernel/lib/result.hpp"
#include "kernel/lib/types.hpp"

struct GuestAcpiConfig {
    static constexpr u32 MAX_VCPUS = 64;
    static constexpr u32 MAX_VIRTIO = 8;

    u64 base = 0;               // guest-physical address of the blob: 4 KiB aligned, blob below 4 GiB
    u32 vcpus = 0;              // 1..MAX_VCPUS: local APIC ids and processor UIDs 0..vcpus-1
    u64 lapic_base = 0xfee00000, ioapic_base = 0xfec00000;   // below 4 GiB
    u32 ioapic_gsi_base = 0;
    u32 ioapic_pins = 24;       // GSIs ioapic_gsi_base .. + pins - 1 (IoapicModel::PINS); 1..240
    u8 ioapic_id = 0;           // the IOAPIC's ID (its ID register should report the same)

    // Hardware-reduced sleep/reset registers (8-bit I/O). A port of 0 leaves
    // the register out (all-zero GAS; reset: RESET_REG_SUP clear).
    u16 sleep_ctl_port = 0, sleep_sts_port = 0;
    u16 reset_port = 0;
    u8 reset_value = 0;
    u8 s5_slp_typ = 0;          // SLP_TYPa of \_S5: 0..7 (3 bits in the sleep control register)

    u16 pm_timer_port = 0;      // the ACPI PM timer (32-bit I/O, 24-bit count: TMR_VAL_EXT = 0); 0: none
    bool pcat_compat = false;   // MADT PCAT_COMPAT: the PC's 8259s are present (Keel's are masked, inert)

    bool com1 = false;          // the 16550 at 0x3F8, GSI ioapic_gsi_base + 4
    bool cmos_rtc = false;      // false: FADT says "CMOS RTC not present"

    // virtio-mmio transports: [base, base + size) below 4 GiB, non-empty, not
    // overlapping each other; gsi one of the IOAPIC's (not COM1's).
    struct MmioDevice {
        u64 base;
        u32 size;
        u32 gsi;
    } virtio[MAX_VIRTIO] = {};
    u32 nvirtio = 0;

    // The PCI Express host bridge (kernel/pci/pci.hpp), segment 0, bus 0;
    // absent while ecam_base is 0. The MCFG table gives its ECAM window, a
    // PNP0C02 device reserves it (Linux uses MMCONFIG only where the firmware
    // reserves it), and \_SB.PCI0 its windows and INTx routing.
    struct Pci {
        u64 ecam_base = 0;              // 1 MiB (bus 0), 1 MiB aligned, below 4 GiB
        u32 mmio32_base = 0, mmio32_size = 0;   // the BAR window below 4 GiB; size 0: none
        u64 mmio64_base = 0, mmio64_size = 0;   // the one above 4 GiB; size 0: none
        u32 devices = 0;                // _PRT for device numbers 1..devices-1 (at most 32)
        u32 intx_gsi_base = 16;         // INTA-INTD of device d: GSI base + (d + pin) % 4
    } pci;
};

struct GuestAcpiLayout {
    u64 rsdp = 0;               // guest-physical address of the RSDP (= base: offset 0)
    u64 size = 0;               // bytes of the buffer used (copy [0, size) to base)
};

// Every configuration fits in this many bytes (one page).
inline constexpr usize GUEST_ACPI_MAX_BYTES = 4096;

// Build the tables into buf[0, cap). Err::invalid for a bad configuration
// (vcpus 0 or > 64, nvirtio > 8, s5_slp_typ > 7, base not 4 KiB aligned or the
// blob not below 4 GiB, LAPIC/IOAPIC/virtio ranges not below 4 GiB, an empty
// or overlapping virtio range, ioapic_pins 0 or > 240 (or < 5 with COM1), a
// GSI not on the IOAPIC, a virtio GSI equal to COM1's, a null buf),
// Err::no_memory if cap is too small (buf is then partly written, never
// beyond cap).
Result<GuestAcpiLayout> build_guest_acpi(const GuestAcpiConfig &c, u8 *buf, usize cap);

// What one guest's exit handlers and device models can reach: its own memory,
// its own devices, its own exit request. Nothing global, by construction.
#pragma once

#include "kernel/guest/cpu_profile.hpp"
#include "kernel/guest/guest_memory.hpp"
#include "kernel/guest/x86_decode.hpp"
#include "kernel/lib/spinlock.hpp"
#include "kernel/lib/types.hpp"

// A device on the guest's I/O port space.
class IoDevice {
public:
    // Handle an access if the port is ours; value is in/out (low `size` bytes).
    virtual bool io(u16 port, u8 size, bool in, u32 &value) = 0;

protected:
    ~IoDevice() = default;
};

// A device on the guest's physical address space (its pages are left out of
// the nested tables, so every access exits and is emulated).
class MmioDevice {
public:
    virtual bool covers(u64 gpa) const = 0;
    // Does it answer this vCPU there? Per-vCPU devices (the local APICs) say no for a vCPU whose
    // own device is not at gpa: the access is then the platform's bad access.
    virtual bool covers_for(u32 vcpu, u64 gpa) const
    {
        (void)vcpu;
        return covers(gpa);
    }
    // A read fills value (size 1, 2, 4 or 8 bytes); `vcpu` is the accessing vCPU (local APICs are per vCPU).
    virtual void mmio(u32 vcpu, u64 gpa, u8 size, bool write, u64 &value) = 0;

protected:
    ~MmioDevice() = default;
};

// MSRs backed by a device model (the local APIC's: APIC_BASE, x2APIC, TSC deadline).
class MsrDevice {
public:
    // true if the MSR is this device's; ok = false then means #GP.
    virtual bool rdmsr(u32 vcpu, u32 msr, u64 &value, bool &ok) = 0;
    virtual bool wrmsr(u32 vcpu, u32 msr, u64 value, bool &ok) = 0;

protected:
    ~MsrDevice() = default;
};

struct GuestPlatform {
    static constexpr usize MAX_IO = 12;
    static constexpr usize MAX_MMIO = 8;

    GuestMemory *mem = nullptr;
    // Port ranges and their devices: an exit for a port compares ranges, and calls only the
    // device that claims it (an unclaimed port reads all ones, and takes no lock).
    struct IoRange {
        u16 first, last;
        IoDevice *dev;
    };
    IoRange io[MAX_IO] = {};
    usize nio = 0;
    static constexpr u32 IO_BLOCK = 16;
    u8 io_claimed[65536 / IO_BLOCK / 8] = {};   // a bit per block of 16 ports that some range touches
    MmioDevice *mmio[MAX_MMIO] = {};
    usize nmmio = 0;
    MsrDevice *msr = nullptr;
    // Serialises the port devices between the guest's vCPUs (MMIO devices lock themselves:
    // the local APICs per vCPU, the IOAPIC and the PCI bus their own). Order: io_lock, PCI bus,
    // IOAPIC, APICs.
    Spinlock io_lock;
    u32 vcpu_count = 1;
    // The guest's CPU: its CPUID view, and from it the CR4, XCR0 and MSR checks (set by the
    // hypervisor for every guest; the fields below are copied from it).
    const CpuProfile *profile = nullptr;
    u64 cr4_reserved = 0;
    u64 xcr0_supported = 0;      // 0: no XSAVE
    bool amd = false;

    // Guest-physical accesses no RAM or device claims (config on_bad_access): stop the guest, or
    // behave as a PC (reads all ones, writes dropped), counting them and logging each page once.
    const char *name = "";        // for the log
    bool stop_on_bad_access = false;
    static constexpr usize MAX_BAD_PAGES = 16;
    Spinlock bad_lock;
    u64 bad_accesses = 0;         // under bad_lock
    u64 bad_pages[MAX_BAD_PAGES] = {};
    usize nbad_pages = 0;
    // Count one; true when its page has not been logged yet (and now is remembered as logged;
    // past MAX_BAD_PAGES pages, only the count grows and the first overflow is reported once).
    bool note_bad_access(u64 gpa)
    {
        Guard lk(bad_lock);
        bad_accesses++;
        const u64 page = gpa >> 12;
        for (usize i = 0; i < nbad_pages; i++)
            if (bad_pages[i] == page) return false;
        if (nbad_pages == MAX_BAD_PAGES) return false;
        bad_pages[nbad_pages++] = page;
        return true;
    }

    // Per-vCPU MSRs with no hardware register behind them.
    static constexpr u32 MAX_VCPUS = 16;
    // IA32_MISC_ENABLE: fast strings, BTS and PEBS unavailable (as KVM); the guest may toggle
    // the bits that change nothing it can see (fast strings, automatic TCC, EIST, xTPR).
    static constexpr u64 MISC_ENABLE_RESET = 1u << 0 | 1u << 11 | 1u << 12;
    static constexpr u64 MISC_ENABLE_WRITABLE = 1u << 0 | 1u << 3 | 1u << 16 | 1u << 23;
    static constexpr u64 MISC_ENABLE_READ_ONLY = 1u << 11 | 1u << 12;   // writes ignore them
    struct SoftMsrs {
        u64 misc_enable = MISC_ENABLE_RESET;
    } soft_msrs[MAX_VCPUS];
    // Each vCPU's last decoded MMIO instruction (only that vCPU's exits touch its entry).
    x86::DecodeMemo mmio_memo[MAX_VCPUS];

    // Set by the debug-exit device or ACPI S5: the guest ends. By the reset register: it reboots.
    bool exit_requested = false;
    u32 exit_code = 0;
    bool reset_requested = false;

    // Something the run loops of this guest's vCPUs must look at before their next entry (a bit
    // per cause, set by whoever causes it, on any CPU): the backends handle exits and re-enter
    // by themselves only while this is 0 (exits_detail::run_until).
    static constexpr u32 ATTN_EXIT = 1u << 0,      // exit_requested
                         ATTN_RESET = 1u << 1,     // reset_requested
                         ATTN_STATE = 1u << 2,     // the guest is no longer running (ending, stopped)
                         ATTN_PAUSE = 1u << 3,     // the operator paused it
                         ATTN_DEVICES = 1u << 4;   // a device has work left for the run loop
    u32 attention = 0;
    void attend(u32 bits) { __atomic_fetch_or(&attention, bits, __ATOMIC_RELEASE); }
    void unattend(u32 bits) { __atomic_fetch_and(&attention, ~bits, __ATOMIC_RELEASE); }
    bool needs_attention() const { return __atomic_load_n(&attention, __ATOMIC_ACQUIRE) != 0; }
    void request_exit(u32 code)
    {
        exit_code = code;
        exit_requested = true;
        attend(ATTN_EXIT);
    }
    void request_reset()
    {
        reset_requested = true;
        attend(ATTN_RESET);
    }

    bool add_io(IoDevice *d, u16 first, u16 last)
    {
        if (nio == MAX_IO || first > last) return false;
        io[nio++] = {first, last, d};
        for (u32 b = first / IO_BLOCK; b <= last / IO_BLOCK; b++) io_claimed[b / 8] |= u8(1u << (b % 8));
        return true;
    }
    IoDevice *find_io(u16 port) const
    {
        // Ports nothing claims (0x80, Linux's I/O delay, above all) answer without the scan.
        const u32 b = port / IO_BLOCK;
        if (!(io_claimed[b / 8] & (1u << (b % 8)))) return nullptr;
        for (usize i = 0; i < nio; i++)
            if (port >= io[i].first && port <= io[i].last) return io[i].dev;
        return nullptr;
    }
    bool add_mmio(MmioDevice *d)
    {
        if (nmmio == MAX_MMIO) return false;
        mmio[nmmio++] = d;
        return true;
    }
    MmioDevice *find_mmio(u64 gpa) const
    {
        for (usize i = 0; i < nmmio; i++)
            if (mmio[i]->covers(gpa)) return mmio[i];
        return nullptr;
    }
    // The device vCPU `vcpu` reaches at gpa.
    MmioDevice *find_mmio(u64 gpa, u32 vcpu) const
    {
        for (usize i = 0; i < nmmio; i++)
            if (mmio[i]->covers_for(vcpu, gpa)) return mmio[i];
        return nullptr;
    }
};

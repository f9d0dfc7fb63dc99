// Keel's configuration file: a small, strict subset of TOML (docs/CONFIG.md).
//
// The text is untrusted: the parser reads only below `len`, never recurses,
// runs in one pass over the text and stops at the first error, which it
// reports with its line number and reason.
#pragma once

#include "kernel/firmware/cmdline.hpp"
#include "kernel/lib/console.hpp"
#include "kernel/lib/result.hpp"
#include "kernel/lib/types.hpp"
#include "kernel/net/mac.hpp"
#include "kernel/storage/device_name.hpp"

struct ConfigError {
    u32  line;          // 1-based; 0 only on success
    char msg[160];      // NUL-terminated, e.g. "memory: expected a size such as \"64M\""
};

// One [[guest.disk]] table: a virtio-blk disk backed either by a raw image
// that scripts/mkimage packs into the boot image (its size is the disk's size),
// or by Keel's own storage (`device`: an NVMe namespace or a GPT partition of
// one, storage/device_name). With `device`, `file` is optional and is not
// packed: it is what `scripts/mkimage --disk-out` writes into the partition.
struct DiskConfig {
    StrView file;                       // path, relative to the config file; may be empty with device
    StrView device;                     // as written; empty: the disk is `file` in RAM
    DeviceName dev;                     // device parsed (valid when device is not empty)
    bool    readonly;                   // default false
    u32     line;                       // line of its [[guest.disk]] header (for messages)
};

// One [[guest.nic]] table: a virtio-net NIC on a port of a [[network]]'s switch.
struct NicConfig {
    StrView  network;                   // the [[network]]'s name
    u32      network_index;             // into KeelConfig::networks (resolved after the whole file)
    bool     mac_set;                   // mac was given; otherwise it is assigned (net/mac: assign_macs)
    net::Mac mac;                       // the NIC's address, given or assigned
    u32      line;                      // line of its [[guest.nic]] header (for messages)
};

// A host PCI function, as `[[guest.pci]] device` and `[keel] management_nic` name it:
// "SSSS:BB:DD.F" (segment, bus, device, function in hex: 4, 2, 2 and 1 digits, either
// case) or "BB:DD.F" (segment 0). Device 0..1f, function 0..7.
struct PciConfig {
    static constexpr usize TEXT_SIZE = 13;      // "0000:00:04.0" and its NUL

    u16 segment;
    u8  bus, dev, fn;
    u32 line;                           // line of its [[guest.pci]] header, or of the management_nic key

    bool same_function(const PciConfig &o) const
    {
        return segment == o.segment && bus == o.bus && dev == o.dev && fn == o.fn;
    }
};

// One entry of `[keel] sriov`: an SR-IOV NVMe physical function Keel keeps and
// drives, and how many of its virtual functions it enables ("SSSS:BB:DD.F:N" or
// "BB:DD.F:N"). The VFs are then host functions like any other, named in
// [[guest.pci]] by their own addresses.
struct SriovConfig {
    static constexpr u16 MAX_VFS = 127;   // a Secondary Controller List page's worth

    PciConfig pf;                       // line: the sriov key's
    u16       vfs;                      // 1..MAX_VFS
};

// Parses `s` (exactly `n` bytes) into out's segment, bus, dev and fn (line untouched).
// Returns nullptr, or why not, e.g. "device number above 1f".
const char *parse_pci_address(const char *s, usize n, PciConfig &out);

// "0000:00:04.0" (always the long form, lower case) into `out`.
void format_pci_address(char (&out)[PciConfig::TEXT_SIZE], const PciConfig &p);

// One [[network]] table: an isolated L2 network, one switch inside Keel.
struct NetworkConfig {
    static constexpr u32 DEFAULT_MTU = 1500;
    static constexpr u32 MIN_MTU = 68;          // IPv4's minimum
    static constexpr u32 MAX_MTU = 9000;

    StrView name;                       // [A-Za-z0-9_-]{1,31}, unique
    u32     mtu;                        // what each NIC reports (VIRTIO_NET_F_MTU)
    u32     line;
};

// Strings are views: into the config text when the value has no escapes,
// otherwise into KeelConfig::pool. An absent optional string is empty.
struct GuestConfig {
    static constexpr u32   MAX_MODULES = 8;
    static constexpr u32   MAX_DISKS   = 7;   // PCI devices 1..7 (0 is the host bridge)
    static constexpr u32   MAX_NICS    = 4;
    static constexpr u32   MAX_PASSTHROUGH = 4;   // [[guest.pci]] tables
    static constexpr u32   MAX_PCI     = 7;   // disks, NICs and passed-through functions together
    static constexpr u32   MAX_CPUS    = 64;
    static constexpr u32   MAX_PIN     = 64;
    static constexpr u32   MAX_PCPU    = 255;   // largest value in pin
    static constexpr usize MAX_NAME    = 31;
    static constexpr usize MAX_PATH    = 255;
    static constexpr usize MAX_CMDLINE = 255;
    static constexpr u64   MIN_MEMORY  = MiB;
    static constexpr u64   MAX_MEMORY  = 64 * GiB;
    static constexpr u64   MIN_WATCHDOG = 10'000'000;                  // ns (also restart_window's range)
    static constexpr u64   MAX_WATCHDOG = 3600'000'000'000;
    static constexpr u64   DEFAULT_RESTART_WINDOW = 60'000'000'000;
    static constexpr u32   MAX_MAX_RESTARTS = 1000;

    enum class OnExit : u8 { stop, restart };
    // A guest-physical access no RAM or device claims: as on a PC (reads all ones, writes
    // dropped; counted, logged once per page), or the guest is stopped.
    enum class OnBadAccess : u8 { pc, stop };

    StrView name;                       // [A-Za-z0-9_-]{1,31}, unique
    StrView kernel;                     // path, relative to the config file
    StrView cmdline;                    // may be empty
    StrView initrd;                     // path, or empty
    StrView modules[MAX_MODULES];       // paths
    u32     module_count;
    u64     memory;                     // bytes, multiple of 4 KiB, MIN..MAX_MEMORY
    u32     cpus;                       // 1..MAX_CPUS
    u8      pin[MAX_PIN];               // vCPU i runs on physical CPU pin[i], i < pin_count
    u32     pin_count;                  // <= cpus; vCPUs beyond it are not pinned
    OnExit  on_exit;
    OnBadAccess on_bad_access;
    u64     watchdog_ns;                // 0: none; else the guest's heartbeat must come this often (once armed)
    u32     max_restarts;               // 0: unlimited; else restarts by on_exit within restart_window, then stop
    u64     restart_window_ns;
    u32     line;                       // line of its [[guest]] header (for messages)
    u32     kernel_line;                // lines of its kernel, initrd and modules keys (0: absent),
    u32     initrd_line;                //   for messages about the files they name
    u32     modules_line;
    DiskConfig disks[MAX_DISKS];        // in file order: disks[0] is the guest's /dev/vda
    u32     disk_count;
    NicConfig nics[MAX_NICS];           // in file order: nics[0] is the guest's eth0
    u32     nic_count;
    PciConfig pci[MAX_PASSTHROUGH];     // host functions passed through, in file order
    u32     pci_count;
};

// About 26 KiB: keep it static, not on a kernel stack.
struct KeelConfig {
    static constexpr u32   MAX_GUESTS       = 16;
    static constexpr u32   MAX_NETWORKS     = 8;
    static constexpr u32   MAX_SRIOV        = 4;        // [keel] sriov entries
    static constexpr usize POOL_SIZE        = 8192;     // unescaped strings
    static constexpr u64   MIN_TIME_SLICE   = 100'000;          // ns
    static constexpr u64   MAX_TIME_SLICE   = 1'000'000'000;    // ns
    static constexpr u64   DEFAULT_TIME_SLICE = 10'000'000;     // ns

    enum class OnIdle : u8 { halt, poweroff };

    OnIdle      on_idle;
    u64         time_slice_ns;
    bool        has_loglevel;           // loglevel is only meaningful if set
    Level       loglevel;
    bool        has_management_nic;     // management_nic is only meaningful if set
    PciConfig   management_nic;         // Keel's own NIC, never given to a guest (line: its key's)
    SriovConfig sriov[MAX_SRIOV];       // SR-IOV physical functions Keel keeps, in file order
    u32         sriov_count;
    u32         sriov_line;             // line of the sriov key (0: absent)
    GuestConfig guests[MAX_GUESTS];
    u32         guest_count;            // 0..MAX_GUESTS (an empty file is valid)
    NetworkConfig networks[MAX_NETWORKS];
    u32         network_count;
    usize       pool_used;
    char        pool[POOL_SIZE];
};

// Parse `len` bytes of `text` (no terminating NUL needed; a NUL byte is an
// error) into `out`, which is reset first. On failure returns Err::invalid,
// fills `err` and leaves `out` unspecified. `text` must outlive `out`, and
// `out` must not be copied (its views may point into its own pool).
Status parse_config(const char *text, usize len, KeelConfig &out, ConfigError &err);

// A [[guest.pci]] that cannot be honoured, though parse_config accepts the file: its
// function is Keel's management_nic or one of its [keel] sriov physical functions, or named earlier by the same guest, or held by an
// earlier guest (one that is not itself refused). The contract: Keel is to refuse that
// guest at boot and start the others (passthrough is being built: Keel's boot does not
// act on [[guest.pci]] yet); keel-config-check warns about each one. Found in file order:
// a refused guest holds none of its functions, so a later guest may be given them.
struct PciConflict {
    enum class Kind : u8 { management_nic, sriov_pf, same_guest, other_guest };
    Kind kind;
    u32  guest;                 // index of the guest Keel refuses
    u32  pci;                   // index into its pci[]
    u32  other_guest;           // the guest that holds it (other_guest; same_guest: == guest)
    u32  other_line;            // line of the earlier [[guest.pci]], or of management_nic or sriov
};

// At most one conflict per [[guest.pci]] (the first of: management_nic, an sriov PF, the same guest,
// an earlier guest). Writes up to `cap` into `out` and returns how many there are.
static constexpr u32 MAX_PCI_CONFLICTS = KeelConfig::MAX_GUESTS * GuestConfig::MAX_PASSTHROUGH;
u32 find_pci_conflicts(const KeelConfig &c, PciConflict *out, u32 cap);

// The line Keel prints at boot when parse_config refuses its keel.toml
// ("keel: keel.toml line N: REASON; no guests started"), through Keel's log. The
// host tool keel-config-check (scripts/config_check.cpp) prints it with the same
// function, so what scripts/mkimage shows is exactly what Keel would say.
void log_config_error(const ConfigError &err);

// What the file's `[keel] on_idle` says, read on its own, for when parse_config
// refuses the file: Keel then still knows whether to power off. Only the first
// [keel] table counts, and in it the first line whose key is on_idle: it must be
// exactly `on_idle = "halt"` or `on_idle = "poweroff"` (spaces, tabs and a
// trailing comment allowed). Every other line is skipped whatever it holds, so
// the error may be anywhere, before or after. `halt` when nothing can be read.
KeelConfig::OnIdle config_on_idle(const char *text, usize len);

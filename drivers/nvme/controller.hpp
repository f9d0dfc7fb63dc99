// One NVMe controller: bring-up, the admin queue, one I/O queue pair and
// synchronous (polled) commands with timeouts. Portable: registers, DMA memory
// and time come through the interfaces of platform.hpp, so the host unit tests
// drive it against a simulated controller. The kernel side (PCI enumeration of
// the host's ECAM, BAR mapping, MSI-X, bus mastering) builds the three
// interfaces and calls enable(); interrupt-driven I/O will submit and reap
// through the same QueuePair.
//
// Failure is never a hang: every wait on the controller ends after its bound
// (Options, CAP.TO) on the injected clock, or after max_polls polls if that
// clock stands still. CSTS.CFS (controller fatal status) while waiting is an
// error. A command that times out, or fatal status, leaves the controller
// needing reset(): until then every command is refused (Outcome::fatal), since
// the controller may still read or write what the lost command named.
#pragma once

#include "drivers/nvme/identify.hpp"
#include "drivers/nvme/platform.hpp"
#include "drivers/nvme/prp.hpp"
#include "drivers/nvme/queue.hpp"
#include "drivers/nvme/status.hpp"

namespace nvme {

struct Options {
    u16 admin_entries = 32;
    u16 io_sq_entries = QueuePair::MAX_SQ_ENTRIES;
    u16 io_cq_entries = QueuePair::MAX_SQ_ENTRIES;
    u64 admin_timeout_us = 10'000'000;
    u64 io_timeout_us = 30'000'000;
    u64 ready_timeout_us = 0;        // 0: CAP.TO (500 ms units, at least one)
    u64 max_polls = u64(1) << 32;    // a backstop for a clock that stands still
};

class Controller {
public:
    static constexpr u16 IO_QID = 1;

    Controller(Regs &regs, Dma &dma, Clock &clock, const Options &opt = {})
        : regs_(regs), dma_(dma), clock_(clock), opt_(opt) {}
    Controller(const Controller &) = delete;
    Controller &operator=(const Controller &) = delete;

    // Bring-up (7.6.1): CAP checked (NVM command set, 4 KiB pages), the
    // controller disabled (RDY = 0 awaited; I/O queues and every command
    // forgotten), the admin queue programmed, CC
    // enabled (4 KiB pages, 64/16-byte entries), RDY = 1 awaited, Identify
    // Controller. Err::unsupported for a controller Keel cannot drive,
    // Err::timeout for a wait that ran out, Err::invalid for fatal status or
    // bad identify data, Err::no_memory; why() says which.
    Status enable();
    // I/O queue pair IO_QID: Set Features (Number of Queues), Create I/O CQ
    // (polled: no interrupt yet), Create I/O SQ.
    Status create_io_queues();
    // CC.EN = 0 and RDY = 0 awaited (this also clears fatal status).
    Status disable();
    // After a timeout or fatal status: enable() again (which disables first),
    // and re-create the I/O queues if there were any.
    Status reset();
    // Orderly shutdown (CC.SHN normal, SHST complete awaited).
    Status shutdown();
    // Free every DMA page (only once the controller is disabled or shut down).
    void release();

    u64 cap() const { return cap_; }
    u32 version() const { return vs_; }
    const ControllerInfo &info() const { return info_; }
    bool needs_reset() const { return needs_reset_; }
    // Why the last failing call failed, one line.
    const char *why() const { return why_.msg; }
    // The last admin command's result.
    const CmdResult &last() const { return last_; }

    // Active namespace IDs (Identify CNS 02h), at most `max` of them into `out`.
    Result<u32> active_namespaces(u32 *out, u32 max);
    Status identify_namespace(u32 nsid, NamespaceInfo &out);

    // SR-IOV, the physical function's side (NVMe 2.0, 8.26 and 5.29). None of
    // these is gated on OACS bit 7 (Virtualization Management): QEMU 7.2
    // supports the command without announcing it. The controller's refusal is
    // an error like any admin failure (last() has its status).
    //
    // Identify Primary Controller Capabilities (CNS 14h); Err::invalid when its
    // allocations exceed its totals.
    Result<PrimaryCaps> identify_primary_caps();
    // Identify Secondary Controller List (CNS 15h) from controller id `first`
    // on: at most `max` entries into `out`; returns how many the page holds
    // (<= SECONDARY_LIST_MAX). Err::invalid for a count the page cannot hold.
    Result<u32> secondary_list(SecondaryController *out, u32 max, u16 first = 0);
    // The secondary controller of VF `vfn` (1-based), read through as many
    // list pages as the controller has. Err::not_found when none lists it.
    Result<SecondaryController> find_secondary(u16 vfn);
    // Virtualization Management: action `act` (VM_ACT_*), resource type `rt`
    // (VM_RT_*), controller `cntlid`, `nr` resources. Returns completion DW0
    // (for an assignment: the resources assigned).
    Result<u32> virt_mgmt(u8 act, u8 rt, u16 cntlid, u32 nr);
    // Namespace Attachment of `nsid` to (from) the one controller `cntlid`.
    Status attach_namespace(u32 nsid, u16 cntlid);
    Status detach_namespace(u32 nsid, u16 cntlid);
    // Make VF `vfn` a usable controller: its secondary controller found, taken
    // offline if online (whatever uses the VF loses it), given `nvq` flexible
    // queue resources (>= 2: its admin queue and one I/O queue) and `nvi`
    // interrupt resources (>= 1), of each type the primary's CRT offers, put
    // online, then namespace `nsid` attached to it (0: none; already attached
    // is fine). The counts are checked against VQFRSM/VIFRSM and what is free
    // before anything is changed: Err::invalid (below the minimum), Err::range
    // (above the per-secondary maximum), Err::no_memory (not free). why() names
    // the VF and the step.
    Status bring_vf_online(u16 vfn, u16 nvq, u16 nvi, u32 nsid);

    // I/O on namespace `ns`, synchronous. Refused (never submitted): the
    // namespace not usable (Err::unsupported), blocks outside it (Err::range),
    // a buffer whose length is not blocks * block size (Err::invalid), a
    // transfer over MDTS (Err::range), no I/O queues (Err::invalid).
    CmdResult read(const NamespaceInfo &ns, u64 lba, u32 blocks, const DataBuffer &buf);
    CmdResult write(const NamespaceInfo &ns, u64 lba, u32 blocks, const DataBuffer &buf);
    // Without a volatile write cache there is nothing to flush: ok, no command.
    CmdResult flush(const NamespaceInfo &ns);
    // Only when ONCS announces them, else refused with Err::unsupported.
    CmdResult deallocate(const NamespaceInfo &ns, u64 lba, u32 blocks);
    CmdResult write_zeroes(const NamespaceInfo &ns, u64 lba, u32 blocks);

    // Submit `cmd` on `q` and poll until it completes, the timeout runs out or
    // the controller reports fatal status. `owned` (may be null) moves to the
    // command (freed when it completes).
    CmdResult execute(QueuePair &q, Sqe cmd, OwnedPages *owned, u64 timeout_us);
    QueuePair &admin_queue() { return admin_; }
    QueuePair &io_queue() { return io_; }

private:
    struct Why {
        char msg[160];
    };

    Status wait_ready(bool ready, bool cfs_fatal, const char *what);
    Status admin(Sqe cmd, const char *what);
    Status ns_attachment(u32 nsid, u16 cntlid, bool detach);
    // why() prefixed with "VF n: ", keeping the error.
    Status vf_why(u16 vfn, Err e);
    CmdResult io(const NamespaceInfo &ns, u8 opcode, u64 lba, u32 blocks, const DataBuffer &buf);
    CmdResult check_range(const NamespaceInfo &ns, u64 lba, u32 blocks);

    Regs &regs_;
    Dma &dma_;
    Clock &clock_;
    Options opt_;
    u64 cap_ = 0;
    u32 vs_ = 0;
    u32 dstrd_ = 0;
    u64 ready_timeout_us_ = 0;
    ControllerInfo info_;
    QueuePair admin_, io_;
    DmaPage scratch_;        // identify data
    bool needs_reset_ = false;
    CmdResult last_;
    Why why_ = {};
};

} // namespace nvme

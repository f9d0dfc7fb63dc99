// One NVMe queue pair (NVMe 1.4, 4.1): a submission queue and the completion
// queue its commands complete on, each one memory page of DMA memory.
//
// Submission: the command is copied into the slot at the tail, the tail moves
// on and is written to the SQ's doorbell. The SQ is full when the tail is one
// behind the head; the head is known only from completions (their SQ head
// field), so a full SQ is refused (Err::busy), never overwritten.
//
// Completion: an entry is new when its phase tag equals the phase the host
// expects; the expected phase starts at 1 and flips each time the head wraps.
// Each new entry marks its command done (status, dword 0), frees the pages it
// owned (PRP lists) and moves the SQ head; then the new CQ head is written to
// the CQ's doorbell.
//
// Command ids: a slot table of MAX_CIDS; a command id is its slot. At most
// cq_entries - 1 commands are in flight, so the CQ cannot overflow. A command
// given up on (timed out) keeps its slot and its pages until the controller
// completes it or reset() - the controller may still read or write them.
//
// Not locked: the caller serialises submit/reap/take on one queue pair.
#pragma once

#include "drivers/nvme/platform.hpp"
#include "drivers/nvme/prp.hpp"
#include "drivers/nvme/spec.hpp"
#include "drivers/nvme/status.hpp"

namespace nvme {

class QueuePair {
public:
    static constexpr u16 MAX_SQ_ENTRIES = MEM_PAGE / sizeof(Sqe);   // 64: one page
    static constexpr u16 MAX_CQ_ENTRIES = MEM_PAGE / sizeof(Cqe);   // 256: one page
    static constexpr u16 MAX_CIDS = 64;

    QueuePair() = default;
    QueuePair(const QueuePair &) = delete;
    QueuePair &operator=(const QueuePair &) = delete;

    // Allocate both rings. Entries: 2..MAX_*_ENTRIES (the caller also keeps
    // them within CAP.MQES + 1). Err::invalid for bad sizes, Err::exists when
    // already set up, Err::no_memory.
    Status init(Dma &dma, u16 qid, u16 sq_entries, u16 cq_entries, u32 dstrd);
    // Free the rings and every page commands still own (the controller must no
    // longer be able to reach them: disabled, or the queues deleted).
    void destroy(Dma &dma);
    // After a controller reset: empty rings, heads, tails and phase as new,
    // every command forgotten and its pages freed.
    void reset(Dma &dma);

    bool live() const { return sq_.valid(); }
    u16 qid() const { return qid_; }
    u16 sq_entries() const { return sq_n_; }
    u16 cq_entries() const { return cq_n_; }
    PhysAddr sq_base() const { return sq_.pa; }
    PhysAddr cq_base() const { return cq_.pa; }

    // Submit `cmd` (its command id is set here) stamped with `now`; `owned`
    // (may be null) moves into the command's slot. Returns the command id, or
    // Err::busy when the SQ is full or MAX_CIDS/cq_entries-1 are in flight
    // (then `owned` stays the caller's), Err::invalid when not live.
    Result<u16> submit(Regs &regs, Sqe cmd, OwnedPages *owned, u64 now);

    // Take in every completion present. Returns how many.
    u32 reap(Regs &regs, Dma &dma);

    // If command `cid` has completed, its result (ok or failed), and the slot
    // is free again.
    bool take(u16 cid, CmdResult &out);
    // Give up on `cid`: its slot and pages stay reserved until it completes
    // anyway or reset().
    void abandon(u16 cid);
    // Submitted at or before now - timeout_us and not complete.
    bool overdue(u16 cid, u64 now, u64 timeout_us) const;

    // Commands the SQ can take now.
    u16 sq_free() const { return sq_n_ ? u16((sq_head_ + sq_n_ - sq_tail_ - 1) % sq_n_) : 0; }
    u16 in_flight() const { return in_flight_; }
    // Completions that named no command in flight, or an SQ head beyond the
    // queue: a controller bug, counted and ignored.
    u32 bogus() const { return bogus_; }
    u16 sq_tail() const { return sq_tail_; }
    u16 sq_head() const { return sq_head_; }
    u16 cq_head() const { return cq_head_; }
    bool cq_phase() const { return phase_; }

private:
    enum class Slot : u8 { free, in_flight, done, abandoned };
    struct Cmd {
        Slot state = Slot::free;
        u64 submitted = 0;
        CmdResult result;
        OwnedPages owned;
    };

    void forget_all(Dma &dma);

    DmaPage sq_, cq_;
    u16 qid_ = 0;
    u16 sq_n_ = 0, cq_n_ = 0;
    u32 sq_db_ = 0, cq_db_ = 0;
    u16 sq_tail_ = 0, sq_head_ = 0, cq_head_ = 0;
    bool phase_ = true;
    u16 in_flight_ = 0;   // slots not free and not yet taken: in_flight + abandoned
    u32 bogus_ = 0;
    Cmd cmds_[MAX_CIDS];
};

} // namespace nvme

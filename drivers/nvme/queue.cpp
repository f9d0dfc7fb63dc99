// One NVMe queue pair (NVMe 1.4, 4.1, 4.6, 7.2).
#include "drivers/nvme/queue.hpp"

namespace nvme {

namespace {

void zero_page(u8 *p)
{
    for (u64 i = 0; i < MEM_PAGE; i++) p[i] = 0;
}

} // namespace

Status QueuePair::init(Dma &dma, u16 qid, u16 sq_entries, u16 cq_entries, u32 dstrd)
{
    if (live()) return Err::exists;
    if (sq_entries < 2 || sq_entries > MAX_SQ_ENTRIES || cq_entries < 2 || cq_entries > MAX_CQ_ENTRIES || dstrd > 15)
        return Err::invalid;
    auto sq = dma.alloc_page();
    if (!sq) return sq.error();
    auto cq = dma.alloc_page();
    if (!cq) {
        dma.free_page(*sq);
        return cq.error();
    }
    sq_ = *sq;
    cq_ = *cq;
    qid_ = qid;
    sq_n_ = sq_entries;
    cq_n_ = cq_entries;
    sq_db_ = sq_tail_doorbell(qid, dstrd);
    cq_db_ = cq_head_doorbell(qid, dstrd);
    reset(dma);
    return {};
}

void QueuePair::forget_all(Dma &dma)
{
    for (Cmd &c : cmds_) {
        c.owned.release(dma);
        c.state = Slot::free;
    }
    in_flight_ = 0;
}

void QueuePair::destroy(Dma &dma)
{
    if (!live()) return;
    forget_all(dma);
    dma.free_page(sq_);
    dma.free_page(cq_);
    sq_ = cq_ = DmaPage{};
    sq_n_ = cq_n_ = 0;
}

void QueuePair::reset(Dma &dma)
{
    forget_all(dma);
    if (!live()) return;
    zero_page(sq_.va);
    zero_page(cq_.va);
    sq_tail_ = sq_head_ = cq_head_ = 0;
    phase_ = true;
}

Result<u16> QueuePair::submit(Regs &regs, Sqe cmd, OwnedPages *owned, u64 now)
{
    if (!live()) return Err::invalid;
    if (sq_free() == 0) return Err::busy;
    if (in_flight_ >= cq_n_ - 1) return Err::busy;
    u16 cid = 0;
    while (cid < MAX_CIDS && cmds_[cid].state != Slot::free) cid++;
    if (cid == MAX_CIDS) return Err::busy;

    Cmd &c = cmds_[cid];
    c.state = Slot::in_flight;
    c.submitted = now;
    c.result = CmdResult{};
    c.owned = OwnedPages{};
    if (owned) {
        c.owned = *owned;
        owned->n = 0;
    }
    in_flight_++;

    cmd.set_cid(cid);
    reinterpret_cast<Sqe *>(sq_.va)[sq_tail_] = cmd;
    sq_tail_ = u16((sq_tail_ + 1) % sq_n_);
    // The entry is in memory before the controller learns of it.
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    regs.write32(sq_db_, sq_tail_);
    return cid;
}

u32 QueuePair::reap(Regs &regs, Dma &dma)
{
    if (!live()) return 0;
    Cqe *ring = reinterpret_cast<Cqe *>(cq_.va);
    u32 n = 0;
    for (;;) {
        Cqe *slot = &ring[cq_head_];
        // The phase tag is read first; the rest of the entry only once it is new.
        const u16 st = __atomic_load_n(&slot->status, __ATOMIC_ACQUIRE);
        if (bool(st & 1) != phase_) break;
        const Cqe e = *slot;
        n++;
        if (++cq_head_ == cq_n_) {
            cq_head_ = 0;
            phase_ = !phase_;
        }

        // The SQ head can only move forward, and not past what was submitted.
        const u16 moved = u16((e.sq_head + sq_n_ - sq_head_) % sq_n_);
        const u16 pending = u16((sq_tail_ + sq_n_ - sq_head_) % sq_n_);
        if (e.sq_head < sq_n_ && moved <= pending) sq_head_ = e.sq_head;
        else bogus_++;
        if (e.cid >= MAX_CIDS || (cmds_[e.cid].state != Slot::in_flight && cmds_[e.cid].state != Slot::abandoned)) {
            bogus_++;
            continue;
        }
        Cmd &c = cmds_[e.cid];
        c.owned.release(dma);
        const StatusField sf{e.status_field()};
        c.result = CmdResult{sf.success() ? Outcome::ok : Outcome::failed, sf, e.dw0, Err::none};
        if (c.state == Slot::abandoned) {
            // Late: nobody waits for it any more.
            c.state = Slot::free;
            in_flight_--;
        } else {
            c.state = Slot::done;
        }
    }
    if (n) regs.write32(cq_db_, cq_head_);
    return n;
}

bool QueuePair::take(u16 cid, CmdResult &out)
{
    if (cid >= MAX_CIDS || cmds_[cid].state != Slot::done) return false;
    out = cmds_[cid].result;
    cmds_[cid].state = Slot::free;
    in_flight_--;
    return true;
}

void QueuePair::abandon(u16 cid)
{
    if (cid < MAX_CIDS && cmds_[cid].state == Slot::in_flight) cmds_[cid].state = Slot::abandoned;
}

bool QueuePair::overdue(u16 cid, u64 now, u64 timeout_us) const
{
    if (cid >= MAX_CIDS || cmds_[cid].state != Slot::in_flight) return false;
    return now - cmds_[cid].submitted >= timeout_us;
}

} // namespace nvme

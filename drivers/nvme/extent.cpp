// A disk on an NVMe namespace: the shared I/O path of one controller (Port)
// and a range of one namespace's blocks (Extent).
#include "drivers/nvme/extent.hpp"

#include "drivers/nvme/commands.hpp"
#include "kernel/lib/console.hpp"

namespace nvme {

Status Port::init()
{
    const u64 mt = ctrl_.info().max_transfer;
    u64 chunk = u64(BOUNCE_PAGES) * MEM_PAGE;
    if (mt && mt < chunk) chunk = mt;
    for (n_ = 0; n_ < (chunk + MEM_PAGE - 1) / MEM_PAGE; n_++) {
        auto p = dma_.alloc_page();
        if (!p) {
            release();
            return p.error();
        }
        bounce_[n_] = *p;
        pa_[n_] = p->pa;
    }
    chunk_ = u32(chunk);
    return {};
}

void Port::release()
{
    while (n_) dma_.free_page(bounce_[--n_]);
    chunk_ = 0;
}

Status Port::outcome(const CmdResult &r)
{
    switch (r.outcome) {
    case Outcome::ok:
        return {};
    case Outcome::failed:
        if (r.status.media_error()) media_errors++;
        else failures++;
        // The first few are told (a failing drive must not flood Keel's console); all are counted.
        if (media_errors + failures <= MAX_REPORTED)
            log_warn("%s: command failed: %s (sct %u sc %02x)%s", name_, status_text(r.status), r.status.sct(),
                     r.status.sc(), media_errors + failures == MAX_REPORTED ? "; further failures only counted" : "");
        return Err::invalid;
    case Outcome::timed_out:
    case Outcome::fatal: {
        // The lost command may still name the bounce pages: they are reused
        // only once the controller has been disabled, which recover() does
        // first (and ready() retries before the next use if it failed).
        const Status s = recover();
        log_error("%s: %s: controller reset %s", name_,
                  r.outcome == Outcome::timed_out ? "a command timed out" : "controller fatal status (CSTS.CFS)",
                  s ? "and its queues re-created" : "failed: retried before the next command");
        return Err::timeout;
    }
    case Outcome::refused:
        failures++;
        return r.why == Err::none ? Err::invalid : r.why;
    }
    return Err::invalid;
}

// Controller::reset() is not enough here: when its enable() fails after the
// disable (the controller never comes ready), needs_reset() is already false
// and the I/O queues are gone, so reset() would neither be asked for again nor
// re-create them, and every later command would be refused for good.
Status Port::recover()
{
    resets++;
    Status s = ctrl_.enable();   // disables first: the controller forgets every command
    if (s) s = ctrl_.create_io_queues();
    down_ = !s;
    return s ? Status() : Status(Err::timeout);
}

Status Port::ready()
{
    if (!down_ && !ctrl_.needs_reset()) return {};
    return recover();
}

Status Port::transfer(const NamespaceInfo &ns, bool write, u64 lba, u32 blocks)
{
    if (!chunk_ || (u64(blocks) << ns.block_shift) > chunk_) return Err::range;
    KEEL_TRY(ready());
    DataBuffer buf{pa_, n_, 0, u32(u64(blocks) << ns.block_shift)};
    return outcome(write ? ctrl_.write(ns, lba, blocks, buf) : ctrl_.read(ns, lba, blocks, buf));
}

Status Port::flush(const NamespaceInfo &ns)
{
    KEEL_TRY(ready());
    return outcome(ctrl_.flush(ns));
}

Status Port::zero(const NamespaceInfo &ns, u64 lba, u32 blocks)
{
    KEEL_TRY(ready());
    return outcome(ctrl_.write_zeroes(ns, lba, blocks));
}

Status Extent::check(u64 off, u64 len) const
{
    if (!valid()) return Err::invalid;
    const u64 mask = ns_.block_size - 1;
    if ((off | len) & mask || off > bytes() || len > bytes() - off) return Err::range;
    if (port_->chunk_bytes() < ns_.block_size) return Err::unsupported;
    return {};
}

Status Extent::flush()
{
    if (!valid()) return Err::invalid;
    Guard<Spinlock> g(port_->lock());
    return port_->flush(ns_);
}

Status Extent::zero(u64 off, u64 len)
{
    if (Status s = check(off, len); !s) return s;
    if (!can_zero()) return Err::unsupported;
    Guard<Spinlock> g(port_->lock());
    for (u64 done = 0; done < len;) {
        const u64 blocks = min<u64>((len - done) >> ns_.block_shift, MAX_BLOCKS_PER_CMD);
        if (Status s = port_->zero(ns_, first_ + ((off + done) >> ns_.block_shift), u32(blocks)); !s) return s;
        done += blocks << ns_.block_shift;
    }
    return {};
}

} // namespace nvme

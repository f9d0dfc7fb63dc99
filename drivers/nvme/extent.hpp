// A disk on an NVMe namespace, as its users see it: a range of the namespace's
// blocks (the whole namespace, or a GPT partition of it) read and written by
// byte offsets inside the range, so no user can name a block outside it.
//
// Every extent of one controller shares its Port: the controller's one I/O
// queue pair under one lock, and its bounce pages. Data moves between the
// caller and the bounce pages (Keel's own DMA memory), and the controller
// reads and writes only those: it never sees a guest's RAM, so with an IOMMU
// Keel's NVMe domain maps the bounce pages and nothing a guest owns.
//
// Each call is synchronous: it returns once the controller completed every
// command it issued (a write is on the device, in its volatile cache or on
// media, before write() returns; flush() puts the cache on media). A command
// that times out, or the controller's fatal status, resets the controller (its
// queues are re-created) and fails that call with Err::timeout; a completion
// with an error status fails it with Err::invalid (media errors too: `errors`
// counts them). The caller then reports an I/O error for that request alone.
#pragma once

#include "drivers/nvme/controller.hpp"
#include "kernel/lib/spinlock.hpp"

namespace nvme {

class Port {
public:
    // Bounce pages: the largest transfer one command moves (128 KiB, or less with MDTS).
    static constexpr u32 BOUNCE_PAGES = 32;

    Port(Controller &ctrl, Dma &dma) : ctrl_(ctrl), dma_(dma) {}
    // What its reports call it ("nvme0"); the string must outlive the port.
    void set_name(const char *name) { name_ = name; }
    Port(const Port &) = delete;
    Port &operator=(const Port &) = delete;

    // The bounce pages (Err::no_memory). Once, after the controller's I/O queues exist.
    Status init();
    void release();

    Controller &controller() { return ctrl_; }
    Spinlock &lock() { return lock_; }
    // Bytes one command moves at most: the bounce pages, or MDTS.
    u32 chunk_bytes() const { return chunk_; }
    u8 *page(u32 i) { return bounce_[i].va; }

    // A controller left broken by an earlier timeout (or a reset that failed)
    // is reset again first (Err::timeout if that fails). Until that succeeds
    // the controller may still own the bounce pages (a lost command's late
    // DMA): a write stages its data in them only after this. Call with lock() held.
    Status ready();
    // One read or write of `blocks` blocks at `lba` between the device and the
    // first bytes of the bounce pages. Call with lock() held. Resets the
    // controller after a timeout or fatal status.
    Status transfer(const NamespaceInfo &ns, bool write, u64 lba, u32 blocks);
    Status flush(const NamespaceInfo &ns);
    Status zero(const NamespaceInfo &ns, u64 lba, u32 blocks);

    // Counters (under lock()).
    u64 media_errors = 0;     // completions with a media error status
    u64 failures = 0;         // other error statuses, refusals
    u64 resets = 0;           // controller resets after a timeout or fatal status

private:
    Status outcome(const CmdResult &r);
    // Disable, enable and the I/O queues again; down_ until that worked.
    Status recover();

    static constexpr u64 MAX_REPORTED = 8;
    Controller &ctrl_;
    Dma &dma_;
    const char *name_ = "nvme";
    Spinlock lock_;
    DmaPage bounce_[BOUNCE_PAGES];
    PhysAddr pa_[BOUNCE_PAGES];
    u32 n_ = 0;
    u32 chunk_ = 0;
    bool down_ = false;
};

class Extent {
public:
    Extent() = default;
    // Blocks [first_lba, first_lba + blocks) of namespace `ns`; the caller has
    // checked that they lie inside it (valid() checks again).
    Extent(Port &port, const NamespaceInfo &ns, u64 first_lba, u64 blocks)
        : port_(&port), ns_(ns), first_(first_lba), blocks_(blocks) {}

    bool valid() const
    {
        return port_ && ns_.usable && blocks_ && first_ < ns_.blocks && blocks_ <= ns_.blocks - first_;
    }
    u64 bytes() const { return blocks_ << ns_.block_shift; }
    u32 block_size() const { return ns_.block_size; }
    bool volatile_cache() const { return port_->controller().info().volatile_write_cache; }
    bool can_zero() const { return port_->controller().info().write_zeroes; }

    // `len` bytes at byte offset `off` of the extent; both multiples of the
    // block size and inside the extent (else Err::range, nothing moves).
    // read: `to(const u8 *src, u64 n, u64 pos)` takes each piece read, pos
    // counting from 0; write: `from(u8 *dst, u64 n, u64 pos)` fills each piece
    // to be written. Either returning false stops the call with Err::invalid.
    template <class To> Status read(u64 off, u64 len, To to);
    template <class From> Status write(u64 off, u64 len, From from);
    Status flush();
    // Write Zeroes over the range (Err::unsupported without it).
    Status zero(u64 off, u64 len);

private:
    Status check(u64 off, u64 len) const;
    // Bytes one command moves: the port's chunk in whole blocks (check() made sure it holds one).
    u64 step() const { return port_->chunk_bytes() & ~u64(ns_.block_size - 1); }

    Port *port_ = nullptr;
    NamespaceInfo ns_;
    u64 first_ = 0;
    u64 blocks_ = 0;
};

template <class To>
Status Extent::read(u64 off, u64 len, To to)
{
    if (Status s = check(off, len); !s) return s;
    Port &p = *port_;
    Guard<Spinlock> g(p.lock());
    for (u64 done = 0; done < len;) {
        const u32 n = u32(min<u64>(len - done, step()));
        if (Status s = p.transfer(ns_, false, first_ + ((off + done) >> ns_.block_shift), n >> ns_.block_shift); !s)
            return s;
        for (u32 k = 0; k < n; k += MEM_PAGE)
            if (!to(p.page(k / MEM_PAGE), min<u64>(n - k, MEM_PAGE), done + k)) return Err::invalid;
        done += n;
    }
    return Err::none;
}

template <class From>
Status Extent::write(u64 off, u64 len, From from)
{
    if (Status s = check(off, len); !s) return s;
    Port &p = *port_;
    Guard<Spinlock> g(p.lock());
    for (u64 done = 0; done < len;) {
        const u32 n = u32(min<u64>(len - done, step()));
        if (Status s = p.ready(); !s) return s;
        for (u32 k = 0; k < n; k += MEM_PAGE)
            if (!from(p.page(k / MEM_PAGE), min<u64>(n - k, MEM_PAGE), done + k)) return Err::invalid;
        if (Status s = p.transfer(ns_, true, first_ + ((off + done) >> ns_.block_shift), n >> ns_.block_shift); !s)
            return s;
        done += n;
    }
    return Err::none;
}

} // namespace nvme

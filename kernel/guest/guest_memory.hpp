// A guest's RAM as seen from Keel: the one bounds-checked view through which
// loaders and device models touch guest-physical memory.
//
// RAM is backed by a few host-contiguous extents (buddy blocks), each mapped
// at some guest-physical address. Every access is checked against the extents
// before a single byte moves: an access that is not wholly inside RAM fails
// and copies nothing, so guest-supplied addresses can never reach anything but
// this guest's own RAM. Adjacent extents form one contiguous RAM range for
// read/write/fill/contains; span() hands out a host pointer only inside one
// extent.
//
// Not locked: extents are added during VM set-up, before anyone accesses the
// memory. The guest may change its RAM at any time while it runs, so device
// models read() what they validate (a copy) rather than validating through a
// span() pointer and reading twice.
#pragma once

#include "kernel/lib/result.hpp"
#include "kernel/lib/types.hpp"

struct GuestExtent {
    GuestPhys gpa;              // first byte
    u64       size = 0;         // bytes
    u8       *host = nullptr;   // Keel's virtual address of the backing

    u64 end() const { return gpa.raw() + size; }    // one past the last byte
};

class GuestMemory {
public:
    static constexpr usize MAX_EXTENTS = 64;

    constexpr GuestMemory() = default;
    GuestMemory(const GuestMemory &) = delete;
    GuestMemory &operator=(const GuestMemory &) = delete;

    // Back [gpa, gpa + size) with host memory at `host` (sorted insert).
    // Err::invalid for size 0, a null host or a range that wraps (the end must
    // be representable: gpa + size <= 2^64 - 1), Err::exists if it overlaps an
    // extent, Err::range if MAX_EXTENTS are in use.
    Status add(GuestPhys gpa, u64 size, u8 *host);
    // Forget all extents (the backing is the caller's).
    void clear() { n_ = 0; }

    // [gpa, gpa + len) is wholly inside RAM (possibly across adjacent
    // extents). The empty range is always contained.
    bool contains(GuestPhys gpa, u64 len) const;

    // Copy out of / into / set guest RAM. Err::range (nothing copied) unless
    // [gpa, gpa + len) is wholly inside RAM; Err::invalid for a null buffer
    // with len > 0. len 0 succeeds without touching anything. The host buffer
    // must not overlap this guest's RAM.
    Status read(GuestPhys gpa, void *dst, u64 len) const;
    Status write(GuestPhys gpa, const void *src, u64 len);
    Status fill(GuestPhys gpa, u8 value, u64 len);

    // Host pointer to [gpa, gpa + len) if it lies wholly inside one extent,
    // else nullptr (also for len 0).
    // (Inline for the common case, the extent of the last lookup: the exit path's instruction
    // fetch and page walks.)
    const u8 *span(GuestPhys gpa, u64 len) const
    {
        const usize h = __atomic_load_n(&hint_, __ATOMIC_RELAXED);
        if (h < n_) {
            const GuestExtent &e = ext_[h];
            const u64 off = gpa.raw() - e.gpa.raw();   // (below the extent: wraps to a huge offset)
            if (off < e.size && len - 1 < e.size - off) return e.host + off;   // (len 0: never)
        }
        return span_slow(gpa, len);
    }
    u8 *span(GuestPhys gpa, u64 len)
    {
        return const_cast<u8 *>(static_cast<const GuestMemory *>(this)->span(gpa, len));
    }

    u64 ram_bytes() const;
    // Runs of adjacent extents (what the guest sees as contiguous RAM): [lo, hi) from
    // extent i on, and i moves past the run. False when i is past the last extent.
    bool next_run(usize &i, u64 &lo, u64 &hi) const
    {
        if (i >= n_) return false;
        lo = extent(i).gpa.raw();
        hi = extent(i).end();
        for (i++; i < n_ && extent(i).gpa.raw() == hi; i++) hi = extent(i).end();
        return true;
    }
    usize extent_count() const { return n_; }
    // Extents sorted by gpa; an empty extent (size 0) for i >= extent_count().
    const GuestExtent &extent(usize i) const;

    // The PC layout for `bytes` of RAM (like QEMU's): [0, 640K), [1M, min(bytes,
    // lowmem_top)) and, if bytes > lowmem_top, [4G, 4G + bytes - lowmem_top).
    // The 384 KiB under the legacy hole are not RAM (bytes is the top of low
    // memory, not the sum of the sizes). bytes and lowmem_top are rounded down
    // to pages, lowmem_top clamped to [1M, 4G]. Writes up to 3 entries to out[]
    // (host = nullptr) and returns how many.
    static usize pc_layout(u64 bytes, u64 lowmem_top, GuestExtent *out);

    static constexpr u64 LEGACY_HOLE_START = 0xa0000;
    static constexpr u64 LEGACY_HOLE_END = 0x100000;

private:
    // Index of the extent containing a, or n_ if none.
    usize find(u64 a) const;
    const u8 *span_slow(GuestPhys gpa, u64 len) const;
    // Calls f(host, len) for each piece of [a, a + len); false (f never called)
    // unless the range is wholly inside RAM.
    template <class F> bool walk(u64 a, u64 len, F f) const;

    GuestExtent ext_[MAX_EXTENTS];
    usize       n_ = 0;
    // The extent the last lookup found: tried first (the next access is most often in it).
    // Only a hint, checked before use; shared by the guest's vCPUs, hence relaxed atomics.
    mutable usize hint_ = 0;
};

// Little-endian stores into ranges a loader already checked are RAM; remembers any failure
// (a loader checks everything first, then writes, then asks ok()).
class GuestWriter {
public:
    explicit GuestWriter(GuestMemory &m) : m_(m) {}

    void bytes(u64 gpa, const void *p, u64 n) { if (ok_) ok_ = m_.write(GuestPhys(gpa), p, n).ok(); }
    void zero(u64 gpa, u64 n) { if (ok_) ok_ = m_.fill(GuestPhys(gpa), 0, n).ok(); }
    void w8(u64 gpa, u8 v) { bytes(gpa, &v, 1); }
    void w32(u64 gpa, u32 v)
    {
        u8 b[4];
        for (unsigned i = 0; i < 4; i++) b[i] = static_cast<u8>(v >> 8 * i);
        bytes(gpa, b, 4);
    }
    void w64(u64 gpa, u64 v)
    {
        w32(gpa, static_cast<u32>(v));
        w32(gpa + 4, static_cast<u32>(v >> 32));
    }
    // The string and its NUL.
    void str(u64 gpa, const char *s, usize n)
    {
        bytes(gpa, s, n);
        zero(gpa + n, 1);
    }
    bool ok() const { return ok_; }

private:
    GuestMemory &m_;
    bool ok_ = true;
};

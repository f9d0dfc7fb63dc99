// Buddy allocator for host-physical 4 KiB frames.
//
// Blocks of 2^order frames (order 0..18, 4 KiB..1 GiB) are naturally aligned in
// absolute physical address, so 2 MiB and 1 GiB blocks can back large pages.
// Each contiguous RAM range is a zone; per zone and order a hierarchical
// bitmap (64-ary summaries) records the free blocks, so every operation is
// O(orders * levels) and never touches the managed memory itself: free frames
// need not even be mapped. All state lives in a caller-provided metadata buffer.
//
// Per block the buddy tree is in one of three states: free (free bit), split
// (split bit: its two halves are tracked one order below) or allocated (neither
// bit, and its parent is split or it is a zone root). This makes free() exact:
// double, misaligned, foreign and wrong-order frees are all detected.
//
// Not locked: the caller serialises.
#pragma once

#include "kernel/lib/result.hpp"
#include "kernel/lib/types.hpp"

struct MemRange {
    PhysAddr base;
    u64 size;
};

class FrameAllocator {
public:
    static constexpr unsigned MAX_ORDER = 18;       // 1 GiB
    static constexpr unsigned MAX_ZONES = 64;
    static constexpr u64 MAX_PHYS = 1ull << 52;     // architectural MAXPHYADDR limit
    // Allocations without a limit take memory at or above this address first,
    // so that DMA32-capable memory lasts as long as possible.
    static constexpr u64 HIGH_MEMORY = 4 * GiB;

    constexpr FrameAllocator() = default;
    FrameAllocator(const FrameAllocator &) = delete;
    FrameAllocator &operator=(const FrameAllocator &) = delete;

    // Bytes of metadata (8-byte aligned) needed for these ranges; 0 if they are
    // invalid (init() would fail) or empty.
    static u64 metadata_bytes(const MemRange *ranges, usize n);

    // Manage these ranges, all frames free. Ranges are page-aligned, do not
    // overlap, lie below MAX_PHYS, may come in any order; empty ones are ignored
    // and adjacent ones merged. Err::invalid on bad input or a too small or
    // misaligned buffer, Err::range if more than MAX_ZONES zones remain.
    // On failure the allocator is unchanged. May be called again to start over.
    Status init(const MemRange *ranges, usize n, void *metadata, u64 metadata_size);

    // 2^order contiguous frames, aligned to their size, ending at or below limit.
    // Policy: blocks starting at or above HIGH_MEMORY first; within that, the
    // smallest order that has a free block (least fragmentation), then the
    // highest address. Err::no_memory if nothing fits, Err::invalid for bad order.
    Result<PhysAddr> alloc(unsigned order, u64 limit = ~0ull);

    // Return a block from alloc() with the same order. Anything else (double
    // free, wrong order, misaligned, unmanaged) gives Err::invalid and changes nothing.
    Status free(PhysAddr pa, unsigned order);

    // Take a fixed, currently free, page-aligned range inside one zone.
    // Err::exists if any frame in it is in use, Err::invalid if it is empty,
    // misaligned or not entirely managed memory. All or nothing.
    Status reserve(PhysAddr base, u64 size);

    // Give back a range taken by reserve() (same base and size); more generally
    // any range whose maximal aligned blocks are each allocated as one block.
    // Err::invalid otherwise, changing nothing.
    Status release(PhysAddr base, u64 size);

    u64 total_frames() const { return total_; }
    u64 free_frames() const { return free_; }
    u64 free_blocks(unsigned order) const { return order <= MAX_ORDER ? nfree_[order] : 0; }
    usize zone_count() const { return nzones_; }
    MemRange zone(usize i) const;

    // Full O(frames) consistency check of the metadata (tests, debugging).
    bool check() const;

private:
    static constexpr unsigned LEVELS = 7;   // enough for 2^40 frames (MAX_PHYS)

    // The blocks of one order in one zone. Bit i stands for absolute block
    // number first + i; blocks only partly inside the zone are never set.
    struct OrderMap {
        u64 first;
        u64 nbits;
        u64 nfree;
        u64 *split;             // nullptr at order 0
        u64 *lvl[LEVELS];       // lvl[0]: one bit per block; lvl[l+1]: one per word of lvl[l]
        unsigned nlevels;

        bool test(u64 i) const { return lvl[0][i >> 6] >> (i & 63) & 1; }
        void set(u64 i);
        void clear(u64 i);
        u64 find_last(u64 i) const;
    };

    struct Zone {
        u64 base = 0, end = 0;  // frame numbers
        unsigned top = 0;       // largest order of a block that fits
        OrderMap *map = nullptr;

        bool contains(unsigned k, u64 b) const { return b << k >= base && (b + 1) << k <= end; }
    };

    static u64 lay_out(u64 base, u64 end, unsigned top, u8 *buf);
    Result<PhysAddr> search(unsigned order, u64 lim, u64 floor);
    Zone *find_zone(u64 frame);
    bool is_free(const Zone &z, unsigned k, u64 b) const;
    bool is_split(const Zone &z, unsigned k, u64 b) const;
    bool is_allocated(const Zone &z, unsigned k, u64 b) const;
    unsigned free_ancestor(const Zone &z, unsigned k, u64 frame) const;
    void put(Zone &z, unsigned k, u64 b);
    void take(Zone &z, unsigned k, u64 b);
    void carve(Zone &z, unsigned j, u64 b, unsigned k, u64 frame);
    void give_back(Zone &z, unsigned k, u64 b);
    Result<Zone *> range_zone(PhysAddr base, u64 size);

    Zone zones_[MAX_ZONES] = {};
    usize nzones_ = 0;
    u64 total_ = 0;
    u64 free_ = 0;
    u64 nfree_[MAX_ORDER + 1] = {};
};

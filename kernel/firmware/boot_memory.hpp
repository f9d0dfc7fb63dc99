// From the firmware's memory map to the frame allocator's input: usable RAM
// minus what must stay untouched (Keel's image, boot information, modules).
#pragma once

#include "kernel/firmware/multiboot2.hpp"
#include "kernel/mem/frame_alloc.hpp"

// Usable regions of a sanitised map, minus the reserved ranges (any alignment:
// they are widened to whole pages), and minus everything below `floor`.
// Returns the count written to out (sorted by address); *truncated is set if
// more than cap ranges would be needed.
usize free_ranges(const MemRegion *map, usize n, const MemRange *reserved, usize nres, u64 floor,
                  MemRange *out, usize cap, bool *truncated = nullptr);

// Take `size` bytes (page-rounded, page-aligned) from the top of the highest
// range that can give them entirely below `limit`; the range shrinks, splits
// (room permitting: n < cap) or is removed. Err::no_memory if none can.
Result<PhysAddr> carve(MemRange *ranges, usize &n, usize cap, u64 size, u64 limit);

// The first page in [lo, hi) that a usable region of the map covers and no reserved range touches.
Result<PhysAddr> find_free_page(const MemRegion *map, usize n, const MemRange *reserved, usize nres,
                                u64 lo, u64 hi);

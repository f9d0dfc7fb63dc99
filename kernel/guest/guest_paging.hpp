// Walking a guest's own page tables (read-only), for instructions Keel must
// fetch and decode itself: 32-bit, PAE and 4-level paging, large pages too.
#pragma once

#include "kernel/guest/guest_memory.hpp"
#include "kernel/lib/result.hpp"

struct GuestPagingState {
    u64 cr0, cr3, cr4, efer;
};

// Guest-linear to guest-physical (32-bit, PAE, 4- and 5-level paging). Err::not_found for a
// non-present entry, Err::range if a table lies outside the guest's RAM.
Result<u64> guest_translate(const GuestMemory &mem, const GuestPagingState &s, u64 linear);

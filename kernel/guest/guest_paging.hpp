// Walking a guest's own page tables (read-only), for instructions Keel must
// fetch and decode itself: 32-bit, PAE and 4-level paging, large pages too.
#pragma once

#include "kernel/guest/guest_memory.hpp"
#include "kernel/lib/result.hpp"

struct GuestPagingState {
    u64 cr0, cr3, cr4, efer;
};

// The entries a walk read, top level first (for reports: a triple fault's page walk).
struct GuestWalk {
    u64 entry[5];
    u64 at[5];       // the guest-physical address each entry was read from
    unsigned n = 0;
};

// Guest-linear to guest-physical (32-bit, PAE, 4- and 5-level paging). Err::not_found for a
// non-present entry, Err::range if a table lies outside the guest's RAM. With `walk`, the
// entries read on the way are kept there (the non-present one last).
Result<u64> guest_translate(const GuestMemory &mem, const GuestPagingState &s, u64 linear, GuestWalk *walk = nullptr);
// The same with the registers by value (the exit path's caller then keeps no local whose
// address is taken, and no stack canary).
Result<u64> guest_translate_regs(const GuestMemory &mem, u64 cr0, u64 cr3, u64 cr4, u64 efer, u64 linear);

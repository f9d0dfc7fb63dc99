// Physical Region Page entries (NVMe 1.4, 4.3): how a command tells the
// controller where its data is.
//
// A data buffer is a list of memory pages: its first byte is at pages[0] +
// offset, and it continues at the start of pages[1], pages[2], ... The rules:
//  - PRP1 is the first page with the offset (dword-aligned);
//  - a transfer that ends in PRP1's page has PRP2 = 0; one that ends in the
//    next page has PRP2 = that page;
//  - otherwise PRP2 points to a PRP list: 8-byte entries, each a page (offset
//    0) for the rest of the transfer. When more entries are needed than a list
//    page holds (512), its last entry points to the next list page instead.
// List pages come from Dma and belong to the command (PrpSet) until it completes.
#pragma once

#include "drivers/nvme/platform.hpp"
#include "drivers/nvme/spec.hpp"

namespace nvme {

// The largest transfer Keel builds PRPs for, whatever MDTS allows: 4 MiB.
inline constexpr u64 MAX_TRANSFER = 4 * MiB;
inline constexpr u32 PRP_PER_LIST = MEM_PAGE / 8;

struct DataBuffer {
    const PhysAddr *pages = nullptr;   // page-aligned host-physical pages
    u32 n_pages = 0;
    u32 offset = 0;                    // of the first byte in pages[0]
    u32 length = 0;                    // bytes

    // Pages the transfer touches.
    u64 pages_spanned() const { return (u64(offset) + length + MEM_PAGE - 1) / MEM_PAGE; }
};

// The DMA pages one command owns (its PRP lists, a DSM range page): freed when
// it completes, kept while the controller may still read them.
struct OwnedPages {
    static constexpr u32 MAX = 4;
    DmaPage page[MAX];
    u32 n = 0;

    Status add(DmaPage p);
    void release(Dma &dma);
};

struct Prps {
    u64 prp1 = 0;
    u64 prp2 = 0;
};

// Build PRP1/PRP2 (and list pages, added to `owned`) for `buf`.
// Err::invalid: empty buffer, offset not a multiple of 4 or not inside the
// first page, a page not page-aligned; Err::range: fewer pages than the buffer
// spans, or a transfer over `max_transfer` (MDTS) or MAX_TRANSFER;
// Err::no_memory: no page for a list. On error nothing is left allocated.
Result<Prps> build_prps(const DataBuffer &buf, u64 max_transfer, Dma &dma, OwnedPages &owned);

} // namespace nvme

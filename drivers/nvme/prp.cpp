// PRP entries and lists (NVMe 1.4, 4.3).
#include "drivers/nvme/prp.hpp"

namespace nvme {

Status OwnedPages::add(DmaPage p)
{
    if (n == MAX) return Err::range;
    page[n++] = p;
    return {};
}

void OwnedPages::release(Dma &dma)
{
    while (n) dma.free_page(page[--n]);
}

Result<Prps> build_prps(const DataBuffer &buf, u64 max_transfer, Dma &dma, OwnedPages &owned)
{
    if (!buf.length || !buf.pages) return Err::invalid;
    if (buf.offset % 4 || buf.offset >= MEM_PAGE) return Err::invalid;
    if (buf.length > MAX_TRANSFER || (max_transfer && buf.length > max_transfer)) return Err::range;
    const u64 n = buf.pages_spanned();
    if (n > buf.n_pages) return Err::range;
    for (u64 i = 0; i < n; i++)
        if (!buf.pages[i].aligned(MEM_PAGE)) return Err::invalid;

    Prps p;
    p.prp1 = buf.pages[0].raw() + buf.offset;
    if (n == 1) return p;
    if (n == 2) {
        p.prp2 = buf.pages[1].raw();
        return p;
    }

    // Entries for pages[1..n), in list pages of PRP_PER_LIST entries; a page
    // that is not the last gives its last entry to the next page's address.
    const u32 first_owned = owned.n;
    u64 next = 1;
    u64 *slot = nullptr;   // where the next list page's address goes
    while (next < n) {
        auto page = dma.alloc_page();
        if (!page || !owned.add(*page)) {
            if (page) dma.free_page(*page);
            while (owned.n > first_owned) dma.free_page(owned.page[--owned.n]);
            return page ? Err::range : page.error();
        }
        if (slot) *slot = page->pa.raw();
        else p.prp2 = page->pa.raw();
        u64 *e = reinterpret_cast<u64 *>(page->va);
        const u64 left = n - next;
        const u64 here = left > PRP_PER_LIST ? PRP_PER_LIST - 1 : left;
        for (u64 i = 0; i < here; i++) e[i] = buf.pages[next + i].raw();
        next += here;
        slot = left > PRP_PER_LIST ? &e[PRP_PER_LIST - 1] : nullptr;
    }
    return p;
}

} // namespace nvme

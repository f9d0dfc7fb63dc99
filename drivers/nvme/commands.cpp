// Command builders (NVMe 1.4, figures 105, 243, 244, 248, 284, 346, 360, 375, 381).
#include "drivers/nvme/commands.hpp"

#include "kernel/lib/bytes.hpp"

namespace nvme::cmd {

namespace {

Sqe make(u8 opcode, u32 nsid)
{
    Sqe s{};
    s.cdw0 = opcode;
    s.nsid = nsid;
    return s;
}

bool blocks_ok(u64 lba, u32 blocks) { return blocks >= 1 && blocks <= MAX_BLOCKS_PER_CMD && lba + blocks > lba; }

Sqe rw(u8 opcode, u32 nsid, u64 lba, u32 blocks)
{
    Sqe s = make(opcode, nsid);
    s.cdw10 = u32(lba);
    s.cdw11 = u32(lba >> 32);
    s.cdw12 = blocks - 1;
    return s;
}

} // namespace

Sqe identify(u8 cns, u32 nsid, u64 prp1)
{
    Sqe s = make(ADMIN_IDENTIFY, nsid);
    s.prp1 = prp1;
    s.cdw10 = cns;
    return s;
}

Sqe identify_secondary_list(u16 first, u64 prp1)
{
    Sqe s = identify(CNS_SECONDARY_CTRL_LIST, 0, prp1);
    s.cdw10 |= u32(first) << 16;
    return s;
}

Result<Sqe> virt_mgmt(u8 act, u8 rt, u16 cntlid, u32 nr)
{
    if (act > 0xf || rt > 7) return Err::invalid;
    Sqe s = make(ADMIN_VIRT_MGMT, 0);
    s.cdw10 = act | u32(rt) << 8 | u32(cntlid) << 16;
    s.cdw11 = nr;
    return s;
}

Result<Sqe> namespace_attachment(u32 nsid, bool detach, PhysAddr list_page)
{
    if (nsid == 0 || nsid == 0xffffffff || !list_page.aligned(MEM_PAGE)) return Err::invalid;
    Sqe s = make(ADMIN_NS_ATTACHMENT, nsid);
    s.prp1 = list_page.raw();
    s.cdw10 = detach ? NS_DETACH : NS_ATTACH;
    return s;
}

Status controller_list(u8 *page, const u16 *ids, u32 n)
{
    if (n < 1 || n > CONTROLLER_LIST_MAX) return Err::invalid;
    for (u32 i = 0; i < MEM_PAGE; i++) page[i] = 0;
    store_le(page, n, 2);
    for (u32 i = 0; i < n; i++) store_le(page + 2 + 2 * i, ids[i], 2);
    return {};
}

Sqe set_number_of_queues(u16 sqs, u16 cqs)
{
    Sqe s = make(ADMIN_SET_FEATURES, 0);
    s.cdw10 = FEAT_NUMBER_OF_QUEUES;
    s.cdw11 = u32(sqs - 1) | u32(cqs - 1) << 16;
    return s;
}

Sqe create_io_cq(u16 qid, u16 entries, PhysAddr base, int irq_vector)
{
    Sqe s = make(ADMIN_CREATE_CQ, 0);
    s.prp1 = base.raw();
    s.cdw10 = qid | u32(entries - 1) << 16;
    s.cdw11 = 1;                                  // PC: physically contiguous
    if (irq_vector >= 0) s.cdw11 |= 2 | u32(irq_vector & 0xffff) << 16;   // IEN, IV
    return s;
}

Sqe create_io_sq(u16 qid, u16 entries, PhysAddr base, u16 cqid)
{
    Sqe s = make(ADMIN_CREATE_SQ, 0);
    s.prp1 = base.raw();
    s.cdw10 = qid | u32(entries - 1) << 16;
    s.cdw11 = 1 | u32(cqid) << 16;                // PC, QPRIO 0 (urgent; unused with round robin)
    return s;
}

Sqe delete_io_sq(u16 qid)
{
    Sqe s = make(ADMIN_DELETE_SQ, 0);
    s.cdw10 = qid;
    return s;
}

Sqe delete_io_cq(u16 qid)
{
    Sqe s = make(ADMIN_DELETE_CQ, 0);
    s.cdw10 = qid;
    return s;
}

Result<Sqe> read(u32 nsid, u64 lba, u32 blocks, Prps p)
{
    if (!blocks_ok(lba, blocks)) return Err::invalid;
    Sqe s = rw(NVM_READ, nsid, lba, blocks);
    s.prp1 = p.prp1;
    s.prp2 = p.prp2;
    return s;
}

Result<Sqe> write(u32 nsid, u64 lba, u32 blocks, Prps p, bool fua)
{
    if (!blocks_ok(lba, blocks)) return Err::invalid;
    Sqe s = rw(NVM_WRITE, nsid, lba, blocks);
    s.prp1 = p.prp1;
    s.prp2 = p.prp2;
    if (fua) s.cdw12 |= 1u << 30;
    return s;
}

Sqe flush(u32 nsid) { return make(NVM_FLUSH, nsid); }

Result<Sqe> write_zeroes(u32 nsid, u64 lba, u32 blocks, bool deallocate)
{
    if (!blocks_ok(lba, blocks)) return Err::invalid;
    Sqe s = rw(NVM_WRITE_ZEROES, nsid, lba, blocks);
    if (deallocate) s.cdw12 |= WZ_DEAC;
    return s;
}

Result<Sqe> dsm_deallocate(u32 nsid, u32 ranges, PhysAddr range_page)
{
    if (ranges < 1 || ranges > DSM_MAX_RANGES || !range_page.aligned(MEM_PAGE)) return Err::invalid;
    Sqe s = make(NVM_DSM, nsid);
    s.prp1 = range_page.raw();     // 256 ranges x 16 bytes: exactly one page
    s.cdw10 = ranges - 1;
    s.cdw11 = DSM_AD;
    return s;
}

void dsm_range(u8 *range_page, u32 index, u64 lba, u32 blocks)
{
    u8 *r = range_page + index * DSM_RANGE_BYTES;
    store_le(r + 0, 0, 4);          // context attributes
    store_le(r + 4, blocks, 4);     // length in logical blocks
    store_le(r + 8, lba, 8);        // starting LBA
}

} // namespace nvme::cmd

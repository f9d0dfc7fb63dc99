// Command builders (NVMe 1.4, 5 and 6): each returns the 64-byte entry with
// every field but the command id, which the queue pair assigns. Arguments are
// checked where the encoding could silently truncate them.
#pragma once

#include "drivers/nvme/prp.hpp"
#include "drivers/nvme/spec.hpp"
#include "kernel/lib/result.hpp"

namespace nvme {

// Blocks one Read/Write/Write Zeroes command covers: NLB is 16 bits, 0-based.
inline constexpr u32 MAX_BLOCKS_PER_CMD = 65536;

namespace cmd {

Sqe identify(u8 cns, u32 nsid, u64 prp1);
// Identify Secondary Controller List (CNS 15h) from controller id `first` on.
Sqe identify_secondary_list(u16 first, u64 prp1);
// Virtualization Management (2.0, 5.29): action `act` (4 bits), resource type
// `rt` (3 bits), controller `cntlid`, `nr` resources. Err::invalid when act or
// rt do not fit their fields.
Result<Sqe> virt_mgmt(u8 act, u8 rt, u16 cntlid, u32 nr);
// Namespace Attachment (1.4, 5.20): attach (or detach) `nsid` to the
// controllers listed in the page at `list_page` (written by controller_list()).
// Err::invalid for nsid 0 or broadcast, or an unaligned page.
Result<Sqe> namespace_attachment(u32 nsid, bool detach, PhysAddr list_page);
// A controller list page: `n` (1..CONTROLLER_LIST_MAX) ids, the rest zeroed.
// Err::invalid for a count out of range.
Status controller_list(u8 *page, const u16 *ids, u32 n);
// Set Features, Number of Queues (5.21.1.7): sq/cq counts, 1-based here.
Sqe set_number_of_queues(u16 sqs, u16 cqs);
// Create I/O Completion / Submission Queue (5.3, 5.4), physically contiguous
// (one page). The CQ's interrupts are off unless `irq_vector` >= 0.
Sqe create_io_cq(u16 qid, u16 entries, PhysAddr base, int irq_vector);
Sqe create_io_sq(u16 qid, u16 entries, PhysAddr base, u16 cqid);
Sqe delete_io_sq(u16 qid);
Sqe delete_io_cq(u16 qid);

// Read / Write (6.9, 6.15) of `blocks` (1..MAX_BLOCKS_PER_CMD) at `lba`.
// Err::invalid for a block count out of range or lba + blocks wrapping.
Result<Sqe> read(u32 nsid, u64 lba, u32 blocks, Prps p);
Result<Sqe> write(u32 nsid, u64 lba, u32 blocks, Prps p, bool fua = false);
Sqe flush(u32 nsid);
// Write Zeroes (6.16); `deallocate` lets the controller deallocate them.
Result<Sqe> write_zeroes(u32 nsid, u64 lba, u32 blocks, bool deallocate);
// Dataset Management with the deallocate attribute (6.7): `ranges` (1..256)
// range entries at `range_page`, written by dsm_range().
Result<Sqe> dsm_deallocate(u32 nsid, u32 ranges, PhysAddr range_page);
void dsm_range(u8 *range_page, u32 index, u64 lba, u32 blocks);

} // namespace cmd
} // namespace nvme

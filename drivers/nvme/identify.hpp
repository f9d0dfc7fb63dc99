// Identify data (NVMe 1.4, 5.15.2): what Keel reads from the controller and
// namespace data structures. The pages are the controller's output, untrusted:
// every field is read by offset from the 4 KiB page and checked.
#pragma once

#include "kernel/lib/result.hpp"
#include "kernel/lib/types.hpp"

namespace nvme {

struct ControllerInfo {
    u16 vid = 0;
    char serial[21] = {};     // trailing spaces removed
    char model[41] = {};
    char firmware[9] = {};
    u8 mdts = 0;              // raw: 2^MDTS minimum pages, 0 = no limit
    u64 max_transfer = 0;     // bytes, from MDTS and CAP.MPSMIN; 0 = no limit
    u16 cntlid = 0;
    u32 version = 0;          // VER (may be 0 before 1.2)
    u16 oncs = 0;
    bool dsm = false;         // Dataset Management (deallocate)
    bool write_zeroes = false;
    bool volatile_write_cache = false;   // VWC bit 0: flushes matter
    u32 nn = 0;               // namespaces
};

struct NamespaceInfo {
    u32 nsid = 0;
    u64 blocks = 0;           // NSZE
    u64 capacity = 0;         // NCAP
    u32 block_size = 0;       // bytes of an LBA (data)
    u8 block_shift = 0;
    u16 metadata_size = 0;    // per LBA, of the format in use
    u8 format = 0;            // FLBAS index
    // Keel reads and writes it: a data size of 512 B..64 KiB, no metadata.
    bool usable = false;
};

// Controller data structure (CNS 01h). `cap` is the CAP register (MDTS is in
// units of its minimum page size). Err::invalid when SQES/CQES do not allow
// 64/16-byte entries.
Status parse_identify_controller(const u8 *page, u64 cap, ControllerInfo &out);

// Namespace data structure (CNS 00h). Err::not_found for an inactive
// namespace (all zero, NSZE 0); Err::invalid for a format index beyond NLBAF
// or a data size below 512 bytes or above 64 KiB.
Status parse_identify_namespace(const u8 *page, u32 nsid, NamespaceInfo &out);

// Active namespace ID list (CNS 02h): up to 1024 increasing IDs, ending at
// the first 0. Copies at most `max`; returns how many the page holds.
// Err::invalid when the list is not strictly increasing.
Result<u32> parse_namespace_list(const u8 *page, u32 *out, u32 max);

} // namespace nvme

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

// Primary Controller Capabilities (CNS 14h, NVMe 2.0 figure 312): the flexible
// resources of an SR-IOV physical function. VQ: queues (a secondary needs at
// least 2, its admin queue and one I/O queue), VI: interrupt vectors.
struct PrimaryCaps {
    u16 cntlid = 0;
    u16 crt = 0;              // CRT_VQ | CRT_VI: the resource types it can assign
    u32 vqfrt = 0;            // VQ flexible resources, total
    u32 vqrfa = 0;            //   assigned to secondaries
    u16 vqrfap = 0;           //   allocated to the primary
    u16 vqprt = 0;            //   the primary's private ones
    u16 vqfrsm = 0;           //   most a secondary may get
    u16 vqgran = 0;           //   granularity
    u32 vifrt = 0;            // VI: the same
    u32 virfa = 0;
    u16 virfap = 0;
    u16 viprt = 0;
    u16 vifrsm = 0;
    u16 vigran = 0;

    // Flexible resources neither the primary nor any secondary holds.
    u32 vq_free() const { return vqfrt - vqrfap - vqrfa; }
    u32 vi_free() const { return vifrt - virfap - virfa; }
};

// One entry of the Secondary Controller List (CNS 15h, 2.0 figure 314).
struct SecondaryController {
    u16 scid = 0;             // its controller id
    u16 pcid = 0;             // its primary's
    bool online = false;      // SCS bit 0
    u16 vfn = 0;              // its VF number, 1-based (0: not a VF)
    u16 nvq = 0;              // flexible VQ resources assigned
    u16 nvi = 0;              // flexible VI resources assigned
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

// Primary Controller Capabilities (CNS 14h). Err::invalid when the primary's
// and the secondaries' allocations exceed the total of either resource type
// (so vq_free()/vi_free() never wrap).
Status parse_primary_caps(const u8 *page, PrimaryCaps &out);

// Secondary Controller List (CNS 15h): copies at most `max` entries into
// `out` and returns how many the page holds. Err::invalid for a count above
// SECONDARY_LIST_MAX (127 entries fill the page; more would lie beyond it).
Result<u32> parse_secondary_list(const u8 *page, SecondaryController *out, u32 max);
// Entry `i` (< SECONDARY_LIST_MAX) of a Secondary Controller List page.
SecondaryController parse_secondary_entry(const u8 *page, u32 i);

} // namespace nvme

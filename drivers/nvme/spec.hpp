// NVMe over PCIe, as the NVM Express Base Specification 1.4 defines it: the
// controller registers (3.1), the queue entries (4.2, 4.6), the admin and NVM
// opcodes Keel uses and the fields of their command dwords. Only constants and
// layouts here; what acts on them lives in the other files of drivers/nvme/.
#pragma once

#include "kernel/lib/types.hpp"

namespace nvme {

// Controller registers (3.1), offsets into BAR0.
inline constexpr u32 REG_CAP = 0x00;     // 64-bit controller capabilities
inline constexpr u32 REG_VS = 0x08;      // version
inline constexpr u32 REG_INTMS = 0x0c;   // interrupt mask set
inline constexpr u32 REG_INTMC = 0x10;   // interrupt mask clear
inline constexpr u32 REG_CC = 0x14;      // controller configuration
inline constexpr u32 REG_CSTS = 0x1c;    // controller status
inline constexpr u32 REG_AQA = 0x24;     // admin queue attributes
inline constexpr u32 REG_ASQ = 0x28;     // 64-bit admin submission queue base
inline constexpr u32 REG_ACQ = 0x30;     // 64-bit admin completion queue base
inline constexpr u32 REG_DOORBELLS = 0x1000;

// CAP fields.
inline constexpr u32 cap_mqes(u64 cap) { return u32(cap & 0xffff); }               // max entries - 1
inline constexpr bool cap_cqr(u64 cap) { return cap >> 16 & 1; }                   // contiguous queues required
inline constexpr u32 cap_to(u64 cap) { return u32(cap >> 24 & 0xff); }              // ready timeout, 500 ms units
inline constexpr u32 cap_dstrd(u64 cap) { return u32(cap >> 32 & 0xf); }            // doorbell stride 4 << DSTRD
inline constexpr bool cap_css_nvm(u64 cap) { return cap >> 37 & 1; }               // NVM command set
inline constexpr u32 cap_mpsmin(u64 cap) { return u32(cap >> 48 & 0xf); }           // page 2^(12+MPSMIN)
inline constexpr u32 cap_mpsmax(u64 cap) { return u32(cap >> 52 & 0xf); }

// CC fields.
inline constexpr u32 CC_EN = 1u << 0;
inline constexpr u32 cc_css(u32 v) { return (v & 7) << 4; }      // 0: NVM command set
inline constexpr u32 cc_mps(u32 v) { return (v & 0xf) << 7; }    // memory page 2^(12+MPS)
inline constexpr u32 cc_ams(u32 v) { return (v & 7) << 11; }     // 0: round robin
inline constexpr u32 CC_SHN_MASK = 3u << 14;
inline constexpr u32 CC_SHN_NORMAL = 1u << 14;
inline constexpr u32 cc_iosqes(u32 v) { return (v & 0xf) << 16; } // log2 SQ entry size
inline constexpr u32 cc_iocqes(u32 v) { return (v & 0xf) << 20; } // log2 CQ entry size

// CSTS fields.
inline constexpr u32 CSTS_RDY = 1u << 0;
inline constexpr u32 CSTS_CFS = 1u << 1;     // controller fatal status
inline constexpr u32 CSTS_SHST_MASK = 3u << 2;
inline constexpr u32 CSTS_SHST_DONE = 2u << 2;

// AQA: both sizes 0-based, 12 bits.
inline constexpr u32 aqa(u32 sq_entries, u32 cq_entries)
{
    return ((sq_entries - 1) & 0xfff) | ((cq_entries - 1) & 0xfff) << 16;
}

// Doorbells (3.1.24, 3.1.25): SQ y tail at 0x1000 + (2y) * (4 << DSTRD), CQ y
// head at 0x1000 + (2y + 1) * (4 << DSTRD).
inline constexpr u32 sq_tail_doorbell(u16 qid, u32 dstrd) { return REG_DOORBELLS + (2u * qid) * (4u << dstrd); }
inline constexpr u32 cq_head_doorbell(u16 qid, u32 dstrd) { return REG_DOORBELLS + (2u * qid + 1) * (4u << dstrd); }

// The memory page size Keel configures (CC.MPS = 0): every queue, PRP entry and
// list is in these units.
inline constexpr u64 MEM_PAGE = 4096;

// A submission queue entry (4.2), 64 bytes.
struct Sqe {
    u32 cdw0;      // opcode 7:0, fuse 9:8, PSDT 15:14 (0: PRPs), command id 31:16
    u32 nsid;
    u32 cdw2, cdw3;
    u64 mptr;
    u64 prp1, prp2;
    u32 cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;

    u8 opcode() const { return u8(cdw0); }
    u16 cid() const { return u16(cdw0 >> 16); }
    void set_cid(u16 cid) { cdw0 = (cdw0 & 0xffff) | u32(cid) << 16; }
};
static_assert(sizeof(Sqe) == 64);

// A completion queue entry (4.6), 16 bytes.
struct Cqe {
    u32 dw0;        // command specific
    u32 dw1;
    u16 sq_head;    // how far the controller has consumed the SQ
    u16 sq_id;
    u16 cid;
    u16 status;     // phase tag bit 0, status field 15:1

    bool phase() const { return status & 1; }
    u16 status_field() const { return u16(status >> 1); }   // SC 7:0, SCT 10:8, CRD 12:11, M 13, DNR 14
};
static_assert(sizeof(Cqe) == 16);

inline constexpr u32 SQE_SHIFT = 6;   // CC.IOSQES
inline constexpr u32 CQE_SHIFT = 4;   // CC.IOCQES

// Admin opcodes (5).
inline constexpr u8 ADMIN_DELETE_SQ = 0x00;
inline constexpr u8 ADMIN_CREATE_SQ = 0x01;
inline constexpr u8 ADMIN_DELETE_CQ = 0x04;
inline constexpr u8 ADMIN_CREATE_CQ = 0x05;
inline constexpr u8 ADMIN_IDENTIFY = 0x06;
inline constexpr u8 ADMIN_ABORT = 0x08;
inline constexpr u8 ADMIN_SET_FEATURES = 0x09;
inline constexpr u8 ADMIN_GET_FEATURES = 0x0a;
inline constexpr u8 ADMIN_NS_ATTACHMENT = 0x15;    // Namespace Attachment (1.4 5.20)
inline constexpr u8 ADMIN_VIRT_MGMT = 0x1c;        // Virtualization Management (1.4 5.22, 2.0 5.29)

// Identify CNS values (5.15).
inline constexpr u8 CNS_NAMESPACE = 0x00;
inline constexpr u8 CNS_CONTROLLER = 0x01;
inline constexpr u8 CNS_ACTIVE_NS_LIST = 0x02;
inline constexpr u8 CNS_PRIMARY_CTRL_CAPS = 0x14;     // Primary Controller Capabilities
inline constexpr u8 CNS_SECONDARY_CTRL_LIST = 0x15;   // Secondary Controller List (CDW10 31:16: lowest SCID)

// Primary Controller Capabilities (2.0, figure 312) CRT: which flexible
// resources the primary controller hands to its secondaries.
inline constexpr u16 CRT_VQ = 1u << 0;    // VQ resources (queues)
inline constexpr u16 CRT_VI = 1u << 1;    // VI resources (interrupts)

// Secondary Controller List (2.0, figures 313-314): a count byte, then up to
// 127 entries of 32 bytes from byte 32.
inline constexpr u32 SECONDARY_LIST_MAX = 127;
inline constexpr u32 SECONDARY_ENTRY_OFFSET = 32;
inline constexpr u32 SECONDARY_ENTRY_BYTES = 32;

// Virtualization Management (2.0, 5.29) CDW10: ACT 3:0, RT 10:8, CNTLID 31:16;
// CDW11: NR. Completion DW0 of an assignment: the resources assigned.
inline constexpr u8 VM_ACT_PRIMARY_FLEXIBLE = 0x1;
inline constexpr u8 VM_ACT_SECONDARY_OFFLINE = 0x7;
inline constexpr u8 VM_ACT_SECONDARY_ASSIGN = 0x8;
inline constexpr u8 VM_ACT_SECONDARY_ONLINE = 0x9;
inline constexpr u8 VM_RT_VQ = 0;
inline constexpr u8 VM_RT_VI = 1;

// Namespace Attachment (1.4, 5.20) CDW10 SEL; PRP1 names a 4 KiB controller
// list (u16 count, then that many u16 controller ids, at most 2047).
inline constexpr u8 NS_ATTACH = 0;
inline constexpr u8 NS_DETACH = 1;
inline constexpr u32 CONTROLLER_LIST_MAX = 2047;

// Feature identifiers (5.21.1).
inline constexpr u8 FEAT_VOLATILE_WRITE_CACHE = 0x06;
inline constexpr u8 FEAT_NUMBER_OF_QUEUES = 0x07;

// NVM command set opcodes (6).
inline constexpr u8 NVM_FLUSH = 0x00;
inline constexpr u8 NVM_WRITE = 0x01;
inline constexpr u8 NVM_READ = 0x02;
inline constexpr u8 NVM_WRITE_ZEROES = 0x08;
inline constexpr u8 NVM_DSM = 0x09;

// Identify Controller ONCS bits (5.15.2.2).
inline constexpr u16 ONCS_DSM = 1u << 2;
inline constexpr u16 ONCS_WRITE_ZEROES = 1u << 3;

// DSM (6.7): CDW11 attribute "deallocate"; each range is 16 bytes.
inline constexpr u32 DSM_AD = 1u << 2;
inline constexpr u32 DSM_RANGE_BYTES = 16;
inline constexpr u32 DSM_MAX_RANGES = 256;

// Write Zeroes (6.16) CDW12 DEAC: the controller may deallocate the blocks.
inline constexpr u32 WZ_DEAC = 1u << 25;

// Status code types (4.6.1.2).
inline constexpr u8 SCT_GENERIC = 0;
inline constexpr u8 SCT_COMMAND_SPECIFIC = 1;
inline constexpr u8 SCT_MEDIA = 2;
inline constexpr u8 SCT_PATH = 3;
inline constexpr u8 SCT_VENDOR = 7;

// A few status codes Keel names (4.6.1.2.1, 4.6.1.2.3).
inline constexpr u8 SC_SUCCESS = 0x00;
inline constexpr u8 SC_INVALID_OPCODE = 0x01;
inline constexpr u8 SC_INVALID_FIELD = 0x02;
inline constexpr u8 SC_DATA_TRANSFER_ERROR = 0x04;
inline constexpr u8 SC_INTERNAL_ERROR = 0x06;
inline constexpr u8 SC_ABORT_REQUESTED = 0x07;
inline constexpr u8 SC_INVALID_NAMESPACE = 0x0b;
inline constexpr u8 SC_LBA_OUT_OF_RANGE = 0x80;
inline constexpr u8 SC_WRITE_FAULT = 0x80;              // SCT_MEDIA
// SCT_COMMAND_SPECIFIC, of Namespace Attachment and Virtualization Management.
inline constexpr u8 SC_NS_ALREADY_ATTACHED = 0x18;
inline constexpr u8 SC_NS_IS_PRIVATE = 0x19;
inline constexpr u8 SC_NS_NOT_ATTACHED = 0x1a;
inline constexpr u8 SC_CONTROLLER_LIST_INVALID = 0x1c;
inline constexpr u8 SC_INVALID_CONTROLLER_ID = 0x1f;
inline constexpr u8 SC_INVALID_SECONDARY_STATE = 0x20;
inline constexpr u8 SC_INVALID_NUM_RESOURCES = 0x21;
inline constexpr u8 SC_INVALID_RESOURCE_ID = 0x22;
inline constexpr u8 SC_UNRECOVERED_READ_ERROR = 0x81;   // SCT_MEDIA

} // namespace nvme

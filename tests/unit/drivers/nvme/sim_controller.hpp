// A simulated NVMe controller for the driver's unit tests, written from the
// specification independently of drivers/nvme/ (only its constants and entry
// layouts are shared): registers over host memory, queues in "physical"
// memory handed out by FakeDma, a RAM-backed namespace. A doorbell write runs
// the submission queue at once (unless held), writing completions with the
// right phase. Knobs make it misbehave: never ready, a dropped command, fatal
// status, media errors, no volatile write cache, ONCS and MDTS of choice.
//
// SR-IOV (NVMe 2.0, modelled on QEMU 7.2's nvme): the controller is a primary
// (controller id 1) with secondary controllers (add_secondaries: ids 2.., VF
// numbers 1..), flexible VQ/VI resources, Identify CNS 14h/15h, Virtualization
// Management and Namespace Attachment with the status codes QEMU returns.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "drivers/nvme/platform.hpp"
#include "drivers/nvme/spec.hpp"
#include "tests/unit/drivers/fake_clock.hpp"

namespace nvme::sim {

// "Physical" memory: pages of a host arena at fake physical addresses; counts
// what is outstanding so a test sees leaks.
class FakeDma : public Dma {
public:
    static constexpr u64 BASE = 0x40000000;

    explicit FakeDma(u64 pages = 4096) : n_(pages), mem_(new u8[pages * MEM_PAGE]), used_(pages, false) {}

    Result<DmaPage> alloc_page() override
    {
        if (fail_after_ == 0) return Err::no_memory;
        if (fail_after_ > 0) fail_after_--;
        for (u64 i = 0; i < n_; i++) {
            const u64 k = (next_ + i) % n_;
            if (used_[k]) continue;
            used_[k] = true;
            next_ = k + 1;
            outstanding++;
            std::memset(mem_.get() + k * MEM_PAGE, 0, MEM_PAGE);
            return DmaPage{PhysAddr(BASE + k * MEM_PAGE), mem_.get() + k * MEM_PAGE};
        }
        return Err::no_memory;
    }

    void free_page(DmaPage p) override
    {
        const u64 k = (p.pa.raw() - BASE) / MEM_PAGE;
        ASSERT_LT(k, n_);
        ASSERT_TRUE(used_[k]) << "double free of " << std::hex << p.pa.raw();
        ASSERT_EQ(p.va, mem_.get() + k * MEM_PAGE);
        used_[k] = false;
        outstanding--;
        std::memset(p.va, 0x5a, MEM_PAGE);   // poison: a late access reads garbage
    }

    // Host pointer to [pa, pa + len) if it lies inside the arena, else nullptr.
    u8 *at(u64 pa, u64 len)
    {
        if (pa < BASE || len > n_ * MEM_PAGE || pa - BASE > n_ * MEM_PAGE - len) return nullptr;
        return mem_.get() + (pa - BASE);
    }

    i64 outstanding = 0;
    i64 fail_after_ = -1;   // allocations that succeed before Err::no_memory (-1: never fail)

private:
    u64 n_;
    std::unique_ptr<u8[]> mem_;
    std::vector<bool> used_;
    u64 next_ = 0;
};

using FakeClock = FakeClockT<1'000'000, 100>;

struct Namespace {
    u32 nsid = 1;
    u64 blocks = 0;
    u8 shift = 9;
    u16 metadata = 0;
    std::vector<u8> data;
    bool shared = false;                 // NMIC: may be attached to more than one controller
    std::vector<u16> attached = {1};     // controller ids (1: the primary)
};

// A secondary controller of the primary (SR-IOV).
struct Secondary {
    u16 scid = 0;
    u16 vfn = 0;
    bool online = false;
    u16 nvq = 0, nvi = 0;
};

class SimController : public Regs {
public:
    // --- knobs ---
    u16 mqes = 255;                 // CAP.MQES (0-based)
    u8 dstrd = 0;
    u8 to = 2;                      // CAP.TO, 500 ms units
    u8 mpsmin = 0;
    bool never_ready = false;       // CSTS.RDY never follows CC.EN = 1
    bool stuck_ready = false;       // CSTS.RDY never drops after CC.EN = 0
    u32 ready_delay = 3;            // CSTS reads before RDY follows EN
    bool fatal = false;             // CSTS.CFS (cleared by CC.EN 1 -> 0)
    bool hold = false;              // doorbells recorded, queues run only by run()
    u32 drop = 0;                   // the next `drop` commands vanish (no completion)
    u64 media_error_lba = ~u64(0);  // reads/writes touching it fail with a media error
    bool vwc = true;
    u16 oncs = ONCS_DSM | ONCS_WRITE_ZEROES;
    u8 mdts = 5;                    // 2^5 pages = 128 KiB
    u32 nn = 2;
    u16 sqes = 0x66, cqes = 0x44;
    // SR-IOV: the primary's capabilities (CNS 14h); VQRFA/VIRFA are the sums of
    // what the secondaries hold.
    static constexpr u16 PRIMARY_ID = 1;
    u16 crt = CRT_VQ | CRT_VI;
    u32 vqfrt = 0, vifrt = 0;
    u16 vqrfap = 0, virfap = 0;
    u16 vqfrsm = 0, vifrsm = 0;
    u16 vfs_enabled = 0;             // VFs the PCI side enabled: only their controllers can be attached to
    int secondary_list_count = -1;   // >= 0: the list page's count byte, whatever the list holds
    std::vector<Secondary> secondaries;

    // --- what happened ---
    u32 flushes = 0;
    u32 commands = 0;
    u32 list_pages_walked = 0;
    std::vector<Sqe> log;           // every command taken from an SQ
    std::vector<u16> sq_tail_writes;
    std::vector<std::pair<u64, u32>> deallocated;   // DSM ranges (lba, blocks)
    bool protocol_error = false;    // the driver broke a rule the sim checks

    FakeDma &mem;
    std::vector<Namespace> ns;

    explicit SimController(FakeDma &m) : mem(m) {}

    // What QEMU 7.2 shows at power-on with sriov_max_vfs=N, sriov_vq_flexible=2N,
    // sriov_vi_flexible=N: every secondary offline and empty.
    void qemu_sriov(u16 vfs = 2)
    {
        crt = CRT_VQ | CRT_VI;
        vqfrt = 2u * vfs;
        vifrt = vfs;
        vqrfap = virfap = 0;
        vqfrsm = 2;
        vifrsm = 1;
        add_secondaries(vfs);
    }

    void add_secondaries(u16 n)
    {
        secondaries.clear();
        for (u16 i = 0; i < n; i++) secondaries.push_back(Secondary{u16(PRIMARY_ID + 1 + i), u16(i + 1)});
    }

    Secondary *secondary(u16 scid)
    {
        for (auto &c : secondaries)
            if (c.scid == scid) return &c;
        return nullptr;
    }

    u32 vqrfa() const
    {
        u32 n = 0;
        for (auto &c : secondaries) n += c.nvq;
        return n;
    }
    u32 virfa() const
    {
        u32 n = 0;
        for (auto &c : secondaries) n += c.nvi;
        return n;
    }

    Namespace &add_namespace(u32 nsid, u64 blocks, u8 shift = 9, u16 metadata = 0)
    {
        Namespace n;
        n.nsid = nsid;
        n.blocks = blocks;
        n.shift = shift;
        n.metadata = metadata;
        n.data.assign(blocks << shift, 0);
        ns.push_back(std::move(n));
        return ns.back();
    }

    u64 cap() const
    {
        return u64(mqes) | u64(1) << 16 | u64(to) << 24 | u64(dstrd) << 32 | u64(1) << 37 | u64(mpsmin) << 48 |
               u64(4) << 52;
    }

    // --- Regs ---
    u32 read32(u32 off) override
    {
        switch (off) {
        case REG_VS: return 0x00010400;
        case REG_CC: return cc_;
        case REG_CSTS: return csts();
        case REG_AQA: return aqa_;
        case REG_CAP: return u32(cap());
        case REG_CAP + 4: return u32(cap() >> 32);
        }
        return 0;
    }

    u64 read64(u32 off) override
    {
        switch (off) {
        case REG_CAP: return cap();
        case REG_ASQ: return asq_;
        case REG_ACQ: return acq_;
        }
        return u64(read32(off + 4)) << 32 | read32(off);
    }

    void write64(u32 off, u64 v) override
    {
        if (off == REG_ASQ) asq_ = v;
        else if (off == REG_ACQ) acq_ = v;
        else protocol_error = true;
    }

    void write32(u32 off, u32 v) override
    {
        if (off == REG_CC) return write_cc(v);
        if (off == REG_AQA) {
            aqa_ = v;
            return;
        }
        if (off < REG_DOORBELLS) return;
        const u32 stride = 4u << dstrd;
        if ((off - REG_DOORBELLS) % stride) {
            protocol_error = true;
            return;
        }
        const u32 idx = (off - REG_DOORBELLS) / stride;
        const u16 qid = u16(idx / 2);
        if (!ready_ || fatal) return;
        if (idx % 2 == 0) {
            auto it = sqs_.find(qid);
            if (it == sqs_.end() || v >= it->second.size) {
                protocol_error = true;
                return;
            }
            it->second.tail = u16(v);
            sq_tail_writes.push_back(u16(v));
            if (!hold) run_sq(qid);
        } else {
            auto it = cqs_.find(qid);
            if (it == cqs_.end() || v >= it->second.size) {
                protocol_error = true;
                return;
            }
            it->second.head = u16(v);
            // Completions that waited for room.
            if (!hold)
                for (auto &[id, sq] : sqs_)
                    if (sq.cqid == qid) run_sq(id);
        }
    }

    // Run every submission queue (after `hold`).
    void run()
    {
        for (auto &[id, sq] : sqs_) run_sq(id);
    }

    // Entries of an SQ the controller has not taken yet.
    u16 sq_pending(u16 qid)
    {
        auto &q = sqs_.at(qid);
        return u16((q.tail + q.size - q.head) % q.size);
    }
    bool has_sq(u16 qid) const { return sqs_.count(qid); }
    bool has_cq(u16 qid) const { return cqs_.count(qid); }
    u16 cq_size(u16 qid) const { return cqs_.at(qid).size; }
    u16 sq_size(u16 qid) const { return sqs_.at(qid).size; }

private:
    struct Sq {
        u64 base;
        u16 size, head = 0, tail = 0, cqid;
    };
    struct Cq {
        u64 base;
        u16 size, head = 0, tail = 0;
        bool phase = true;
    };

    u32 csts()
    {
        if (cc_ & CC_EN) {
            if (!never_ready && !ready_ && ++reads_ >= ready_delay) ready_ = true;
        } else if (!stuck_ready) {
            ready_ = false;
        }
        u32 v = ready_ ? CSTS_RDY : 0;
        if (fatal) v |= CSTS_CFS;
        if ((cc_ & CC_SHN_MASK) && ready_) v |= CSTS_SHST_DONE;
        return v;
    }

    void write_cc(u32 v)
    {
        const bool was = cc_ & CC_EN, now = v & CC_EN;
        cc_ = v;
        if (was && !now) {
            sqs_.clear();
            cqs_.clear();
            fatal = false;
            reads_ = 0;
        }
        if (!was && now) {
            reads_ = 0;
            // The admin queue from AQA/ASQ/ACQ; entry sizes must be 64/16 bytes.
            if (((v >> 16) & 0xf) != SQE_SHIFT || ((v >> 20) & 0xf) != CQE_SHIFT || ((v >> 7) & 0xf) != 0 ||
                asq_ % MEM_PAGE || acq_ % MEM_PAGE || !asq_ || !acq_) {
                protocol_error = true;
                fatal = true;
                return;
            }
            sqs_.clear();
            cqs_.clear();
            sqs_[0] = Sq{asq_, u16((aqa_ & 0xfff) + 1), 0, 0, 0};
            cqs_[0] = Cq{acq_, u16((aqa_ >> 16 & 0xfff) + 1)};
        }
    }

    void run_sq(u16 qid)
    {
        for (;;) {
            auto it = sqs_.find(qid);
            if (it == sqs_.end() || fatal) return;
            Sq &q = it->second;
            if (q.head == q.tail) return;
            Cq &cq = cqs_.at(q.cqid);
            if (u16((cq.tail + 1) % cq.size) == cq.head) return;   // no room: wait for the host
            Sqe e;
            std::memcpy(&e, mem.at(q.base + u64(q.head) * sizeof(Sqe), sizeof(Sqe)), sizeof(Sqe));
            q.head = u16((q.head + 1) % q.size);
            const u16 head = q.head, cqid = q.cqid;
            log.push_back(e);
            commands++;
            if (drop) {
                drop--;
                continue;
            }
            u32 dw0 = 0;
            const u16 sf = qid == 0 ? admin(e, dw0) : io(e);
            post(cqid, qid, head, e.cid(), sf, dw0);
        }
    }

    void post(u16 cqid, u16 sqid, u16 sq_head, u16 cid, u16 sf, u32 dw0)
    {
        Cq &cq = cqs_.at(cqid);
        Cqe c{};
        c.dw0 = dw0;
        c.sq_head = sq_head;
        c.sq_id = sqid;
        c.cid = cid;
        c.status = u16(sf << 1 | (cq.phase ? 1 : 0));
        std::memcpy(mem.at(cq.base + u64(cq.tail) * sizeof(Cqe), sizeof(Cqe)), &c, sizeof(Cqe));
        if (++cq.tail == cq.size) {
            cq.tail = 0;
            cq.phase = !cq.phase;
        }
    }

    static u16 sf(u8 sct, u8 sc) { return u16(sc | sct << 8); }

    Namespace *find_ns(u32 nsid)
    {
        for (auto &n : ns)
            if (n.nsid == nsid) return &n;
        return nullptr;
    }

    // Walk the PRPs of a len-byte transfer: fn(host pointer, bytes) per piece.
    // False (and nothing more done) on a rule broken or memory outside the arena.
    template <class Fn>
    bool walk_prps(u64 prp1, u64 prp2, u64 len, Fn fn)
    {
        if (prp1 & 3) return false;
        u64 first = MEM_PAGE - (prp1 & (MEM_PAGE - 1));
        if (first > len) first = len;
        u8 *p = mem.at(prp1, first);
        if (!p) return false;
        fn(p, first);
        len -= first;
        if (!len) return true;
        if (len <= MEM_PAGE) {
            if (prp2 & (MEM_PAGE - 1)) return false;
            p = mem.at(prp2, len);
            if (!p) return false;
            fn(p, len);
            return true;
        }
        // A list: entries from prp2 to the end of its page; the last one of a
        // page chains when more than one page of data is left.
        u64 entry = prp2;
        if (entry & 7) return false;
        list_pages_walked++;
        while (len) {
            const u8 *e = mem.at(entry, 8);
            if (!e) return false;
            u64 v;
            std::memcpy(&v, e, 8);
            const bool last_slot = (entry & (MEM_PAGE - 1)) == MEM_PAGE - 8;
            if (last_slot && len > MEM_PAGE) {
                if (v & (MEM_PAGE - 1)) return false;
                entry = v;
                list_pages_walked++;
                continue;
            }
            if (v & (MEM_PAGE - 1)) return false;
            const u64 n = len < MEM_PAGE ? len : MEM_PAGE;
            p = mem.at(v, n);
            if (!p) return false;
            fn(p, n);
            len -= n;
            entry += 8;
        }
        return true;
    }

    u16 admin(const Sqe &e, u32 &dw0)
    {
        switch (e.opcode()) {
        case ADMIN_IDENTIFY: {
            u8 page[MEM_PAGE] = {};
            const u8 cns = u8(e.cdw10);
            if (cns == CNS_CONTROLLER) {
                page[0] = 0x4b;   // VID 0x4b4b
                page[1] = 0x4b;
                std::memcpy(page + 4, "SIM0001             ", 20);
                std::memcpy(page + 24, "Keel simulated NVMe                     ", 40);
                std::memcpy(page + 64, "1.0     ", 8);
                page[77] = mdts;
                page[78] = 1;
                page[80] = 0x00;
                page[81] = 0x04;
                page[82] = 0x01;
                page[512] = u8(sqes);
                page[513] = u8(cqes);
                std::memcpy(page + 516, &nn, 4);
                std::memcpy(page + 520, &oncs, 2);
                page[525] = vwc ? 1 : 0;
            } else if (cns == CNS_NAMESPACE) {
                if (e.nsid == 0 || e.nsid > nn) return sf(SCT_GENERIC, SC_INVALID_NAMESPACE);
                if (Namespace *n = find_ns(e.nsid)) {
                    std::memcpy(page + 0, &n->blocks, 8);
                    std::memcpy(page + 8, &n->blocks, 8);
                    std::memcpy(page + 16, &n->blocks, 8);
                    page[25] = 1;    // two formats
                    page[26] = n->metadata ? 1 : 0;
                    const u32 f0 = u32(n->shift) << 16;
                    const u32 f1 = u32(n->shift) << 16 | n->metadata;
                    std::memcpy(page + 128, &f0, 4);
                    std::memcpy(page + 132, &f1, 4);
                }
            } else if (cns == CNS_PRIMARY_CTRL_CAPS) {
                auto put = [&](u32 off, u64 v, u32 n) { std::memcpy(page + off, &v, n); };
                put(0, PRIMARY_ID, 2);
                put(4, crt, 2);
                put(32, vqfrt, 4);
                put(36, vqrfa(), 4);
                put(40, vqrfap, 2);
                put(44, vqfrsm, 2);
                put(46, 1, 2);
                put(64, vifrt, 4);
                put(68, virfa(), 4);
                put(72, virfap, 2);
                put(76, vifrsm, 2);
                put(78, 1, 2);
            } else if (cns == CNS_SECONDARY_CTRL_LIST) {
                const u16 first = u16(e.cdw10 >> 16);
                u32 k = 0;
                for (auto &c : secondaries) {
                    if (c.scid < first || k == SECONDARY_LIST_MAX) continue;
                    u8 *en = page + SECONDARY_ENTRY_OFFSET + SECONDARY_ENTRY_BYTES * k++;
                    const u16 pcid = PRIMARY_ID;
                    std::memcpy(en + 0, &c.scid, 2);
                    std::memcpy(en + 2, &pcid, 2);
                    en[4] = c.online ? 1 : 0;
                    std::memcpy(en + 8, &c.vfn, 2);
                    std::memcpy(en + 10, &c.nvq, 2);
                    std::memcpy(en + 12, &c.nvi, 2);
                }
                page[0] = u8(secondary_list_count >= 0 ? secondary_list_count : int(k));
            } else if (cns == CNS_ACTIVE_NS_LIST) {
                u32 k = 0;
                for (auto &n : ns)
                    if (n.nsid > e.nsid) std::memcpy(page + 4 * k++, &n.nsid, 4);
            } else {
                return sf(SCT_GENERIC, SC_INVALID_FIELD);
            }
            if (!walk_prps(e.prp1, e.prp2, MEM_PAGE, [&, off = u64(0)](u8 *p, u64 n) mutable {
                    std::memcpy(p, page + off, n);
                    off += n;
                }))
                return sf(SCT_GENERIC, SC_DATA_TRANSFER_ERROR);
            return 0;
        }
        case ADMIN_SET_FEATURES:
            if ((e.cdw10 & 0xff) != FEAT_NUMBER_OF_QUEUES) return sf(SCT_GENERIC, SC_INVALID_FIELD);
            dw0 = 3 | 3u << 16;   // four of each granted
            return 0;
        case ADMIN_CREATE_CQ: {
            const u16 qid = u16(e.cdw10), size = u16((e.cdw10 >> 16) + 1);
            if (!qid || cqs_.count(qid) || qid > 4) return sf(SCT_COMMAND_SPECIFIC, 0x01);
            if (size < 2 || size > mqes + 1u || !(e.cdw11 & 1) || e.prp1 % MEM_PAGE ||
                !mem.at(e.prp1, u64(size) * sizeof(Cqe)))
                return sf(SCT_COMMAND_SPECIFIC, 0x02);
            cqs_[qid] = Cq{e.prp1, size};
            return 0;
        }
        case ADMIN_CREATE_SQ: {
            const u16 qid = u16(e.cdw10), size = u16((e.cdw10 >> 16) + 1), cqid = u16(e.cdw11 >> 16);
            if (!qid || sqs_.count(qid) || qid > 4) return sf(SCT_COMMAND_SPECIFIC, 0x01);
            if (!cqs_.count(cqid) || !cqid) return sf(SCT_COMMAND_SPECIFIC, 0x00);
            if (size < 2 || size > mqes + 1u || !(e.cdw11 & 1) || e.prp1 % MEM_PAGE ||
                !mem.at(e.prp1, u64(size) * sizeof(Sqe)))
                return sf(SCT_COMMAND_SPECIFIC, 0x02);
            sqs_[qid] = Sq{e.prp1, size, 0, 0, cqid};
            return 0;
        }
        case ADMIN_DELETE_SQ:
            if (!sqs_.erase(u16(e.cdw10))) return sf(SCT_COMMAND_SPECIFIC, 0x01);
            return 0;
        case ADMIN_DELETE_CQ:
            if (!cqs_.erase(u16(e.cdw10))) return sf(SCT_COMMAND_SPECIFIC, 0x01);
            return 0;
        case ADMIN_VIRT_MGMT: return virt_mgmt(e, dw0);
        case ADMIN_NS_ATTACHMENT: return ns_attachment(e);
        }
        return sf(SCT_GENERIC, SC_INVALID_OPCODE);
    }

    // As QEMU 7.2's nvme_virt_mgmt: the resource type is checked before the action.
    u16 virt_mgmt(const Sqe &e, u32 &dw0)
    {
        const u8 act = e.cdw10 & 0xf, rt = u8(e.cdw10 >> 8 & 7);
        const u16 cntlid = u16(e.cdw10 >> 16);
        const u32 nr = e.cdw11;
        if (rt != VM_RT_VQ && rt != VM_RT_VI) return sf(SCT_COMMAND_SPECIFIC, SC_INVALID_RESOURCE_ID);
        const bool q = rt == VM_RT_VQ;
        const u32 total = q ? vqfrt : vifrt, primary = q ? vqrfap : virfap, assigned = q ? vqrfa() : virfa();
        if (act == VM_ACT_PRIMARY_FLEXIBLE) {
            if (cntlid != PRIMARY_ID) return sf(SCT_COMMAND_SPECIFIC, SC_INVALID_CONTROLLER_ID);
            if (nr > total - assigned) return sf(SCT_COMMAND_SPECIFIC, SC_INVALID_NUM_RESOURCES);
            (q ? vqrfap : virfap) = u16(nr);   // QEMU: at the next reset; at once here
            dw0 = nr;
            return 0;
        }
        if (act != VM_ACT_SECONDARY_OFFLINE && act != VM_ACT_SECONDARY_ASSIGN && act != VM_ACT_SECONDARY_ONLINE)
            return sf(SCT_GENERIC, SC_INVALID_FIELD);
        Secondary *c = secondary(cntlid);
        if (!c) return sf(SCT_COMMAND_SPECIFIC, SC_INVALID_CONTROLLER_ID);
        if (act == VM_ACT_SECONDARY_OFFLINE) {
            c->online = false;
            return 0;
        }
        if (act == VM_ACT_SECONDARY_ONLINE) {
            if (((crt & CRT_VQ) && c->nvq < 2) || ((crt & CRT_VI) && c->nvi < 1))
                return sf(SCT_COMMAND_SPECIFIC, SC_INVALID_SECONDARY_STATE);
            c->online = true;
            return 0;
        }
        if (c->online) return sf(SCT_COMMAND_SPECIFIC, SC_INVALID_SECONDARY_STATE);
        if (!(crt & (q ? CRT_VQ : CRT_VI))) return sf(SCT_COMMAND_SPECIFIC, SC_INVALID_RESOURCE_ID);
        u16 &own = q ? c->nvq : c->nvi;
        if ((q && nr == 1) || nr > (q ? vqfrsm : vifrsm) || nr > total - primary - assigned + own)
            return sf(SCT_COMMAND_SPECIFIC, SC_INVALID_NUM_RESOURCES);
        own = u16(nr);
        dw0 = nr;
        return 0;
    }

    bool controller_exists(u16 id)
    {
        if (id == PRIMARY_ID) return true;
        Secondary *c = secondary(id);
        return c && c->vfn <= vfs_enabled;
    }

    u16 ns_attachment(const Sqe &e)
    {
        const u8 sel = e.cdw10 & 0xf;
        if (sel != NS_ATTACH && sel != NS_DETACH) return sf(SCT_GENERIC, SC_INVALID_FIELD);
        Namespace *n = find_ns(e.nsid);
        if (!n) return sf(SCT_GENERIC, SC_INVALID_FIELD);
        const u8 *list = mem.at(e.prp1, MEM_PAGE);
        if (!list || e.prp1 % MEM_PAGE) return sf(SCT_GENERIC, SC_DATA_TRANSFER_ERROR);
        u16 count;
        std::memcpy(&count, list, 2);
        if (count == 0 || count > CONTROLLER_LIST_MAX)
            return sf(SCT_COMMAND_SPECIFIC, SC_CONTROLLER_LIST_INVALID);
        for (u32 i = 0; i < count; i++) {
            u16 id;
            std::memcpy(&id, list + 2 + 2 * i, 2);
            if (!controller_exists(id)) return sf(SCT_COMMAND_SPECIFIC, SC_CONTROLLER_LIST_INVALID);
            auto at = std::find(n->attached.begin(), n->attached.end(), id);
            if (sel == NS_ATTACH) {
                if (at != n->attached.end()) return sf(SCT_COMMAND_SPECIFIC, SC_NS_ALREADY_ATTACHED);
                if (!n->shared && !n->attached.empty()) return sf(SCT_COMMAND_SPECIFIC, SC_NS_IS_PRIVATE);
                n->attached.push_back(id);
            } else {
                if (at == n->attached.end()) return sf(SCT_COMMAND_SPECIFIC, SC_NS_NOT_ATTACHED);
                n->attached.erase(at);
            }
        }
        return 0;
    }

    u16 io(const Sqe &e)
    {
        Namespace *n = find_ns(e.nsid);
        if (!n) return sf(SCT_GENERIC, SC_INVALID_NAMESPACE);
        const u64 lba = u64(e.cdw11) << 32 | e.cdw10;
        const u64 blocks = (e.cdw12 & 0xffff) + 1u;
        auto in_range = [&] { return lba < n->blocks && blocks <= n->blocks - lba; };
        auto hits_bad = [&] { return media_error_lba >= lba && media_error_lba < lba + blocks; };
        switch (e.opcode()) {
        case NVM_FLUSH:
            flushes++;
            return 0;
        case NVM_READ:
        case NVM_WRITE: {
            if (!in_range()) return sf(SCT_GENERIC, SC_LBA_OUT_OF_RANGE);
            if (mdts && (blocks << n->shift) > (u64(1) << (12 + mdts))) return sf(SCT_GENERIC, SC_INVALID_FIELD);
            if (hits_bad()) return sf(SCT_MEDIA, e.opcode() == NVM_READ ? SC_UNRECOVERED_READ_ERROR : SC_WRITE_FAULT);
            u8 *d = n->data.data() + (lba << n->shift);
            const bool rd = e.opcode() == NVM_READ;
            if (!walk_prps(e.prp1, e.prp2, blocks << n->shift, [&](u8 *p, u64 len) {
                    if (rd) std::memcpy(p, d, len);
                    else std::memcpy(d, p, len);
                    d += len;
                }))
                return sf(SCT_GENERIC, SC_DATA_TRANSFER_ERROR);
            return 0;
        }
        case NVM_WRITE_ZEROES:
            if (!(oncs & ONCS_WRITE_ZEROES)) return sf(SCT_GENERIC, SC_INVALID_OPCODE);
            if (!in_range()) return sf(SCT_GENERIC, SC_LBA_OUT_OF_RANGE);
            std::memset(n->data.data() + (lba << n->shift), 0, blocks << n->shift);
            return 0;
        case NVM_DSM: {
            if (!(oncs & ONCS_DSM)) return sf(SCT_GENERIC, SC_INVALID_OPCODE);
            const u32 nr = (e.cdw10 & 0xff) + 1;
            const u8 *r = mem.at(e.prp1, nr * DSM_RANGE_BYTES);
            if (!r || !(e.cdw11 & DSM_AD)) return sf(SCT_GENERIC, SC_INVALID_FIELD);
            for (u32 i = 0; i < nr; i++) {
                u32 len;
                u64 start;
                std::memcpy(&len, r + 16 * i + 4, 4);
                std::memcpy(&start, r + 16 * i + 8, 8);
                if (start >= n->blocks || len > n->blocks - start) return sf(SCT_GENERIC, SC_LBA_OUT_OF_RANGE);
                deallocated.push_back({start, len});
                std::memset(n->data.data() + (start << n->shift), 0, u64(len) << n->shift);
            }
            return 0;
        }
        }
        return sf(SCT_GENERIC, SC_INVALID_OPCODE);
    }

    u32 cc_ = 0, aqa_ = 0;
    u64 asq_ = 0, acq_ = 0;
    bool ready_ = false;
    u32 reads_ = 0;
    std::map<u16, Sq> sqs_;
    std::map<u16, Cq> cqs_;
};

} // namespace nvme::sim

// A simulated VT-d remapping unit for the driver's unit tests, written from
// the VT-d 4.1 specification independently of drivers/vtd/vtd.cpp (only its
// register offsets and bit constants are shared): registers over a small
// arena of "physical" pages, the global command/status handshake, register
// and queued invalidation, fault recording, and a DMA and MSI translation
// helper that walks the tables in the arena like the hardware would
// (root -> context -> second-level tables; the interrupt remapping table),
// with a context cache and an IOTLB so a missing invalidation shows.
//
// Knobs make it misbehave: commands that never complete, a queue that never
// runs, descriptor types it refuses (IQE).
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "drivers/vtd/irte.hpp"
#include "drivers/vtd/vtd.hpp"
#include "tests/unit/drivers/fake_clock.hpp"

namespace vtd::sim {

// "Physical" memory: pages of a host arena at fake physical addresses. Also a
// Mem policy for kernel/mem/ptab.hpp's PageTable, so Keel's table engine
// builds second-level tables right here.
class Arena {
public:
    static constexpr u64 BASE = 0x8000'0000;

    explicit Arena(u64 pages = 512) : n_(pages), mem_(new u8[pages * PAGE_SIZE]), used_(pages, false) {}

    Page alloc()
    {
        for (u64 k = 0; k < n_; k++) {
            if (used_[k]) continue;
            used_[k] = true;
            std::memset(mem_.get() + k * PAGE_SIZE, 0, PAGE_SIZE);
            return Page{PhysAddr(BASE + k * PAGE_SIZE), mem_.get() + k * PAGE_SIZE};
        }
        ADD_FAILURE() << "arena exhausted";
        return Page{};
    }

    // Host pointer to [pa, pa + len) if it lies inside the arena, else nullptr.
    u8 *at(u64 pa, u64 len)
    {
        if (pa < BASE || len > n_ * PAGE_SIZE || pa - BASE > n_ * PAGE_SIZE - len) return nullptr;
        return mem_.get() + (pa - BASE);
    }
    bool read64(u64 pa, u64 &v)
    {
        u8 *p = at(pa, 8);
        if (!p) return false;
        std::memcpy(&v, p, 8);
        return true;
    }
    template <class T> T *ptr(PhysAddr pa) { return reinterpret_cast<T *>(at(pa.raw(), PAGE_SIZE)); }

    // --- PageTable's Mem policy ---
    Result<PhysAddr> alloc_table()
    {
        Page p = alloc();
        if (!p.va) return Err::no_memory;
        tables++;
        return p.pa;
    }
    void free_table(PhysAddr p)
    {
        const u64 k = (p.raw() - BASE) / PAGE_SIZE;
        ASSERT_LT(k, n_);
        used_[k] = false;
        tables--;
        std::memset(mem_.get() + k * PAGE_SIZE, 0xa5, PAGE_SIZE);
    }
    u64 *table(PhysAddr p) { return ptr<u64>(p); }

    i64 tables = 0;

private:
    u64 n_;
    std::unique_ptr<u8[]> mem_;
    std::vector<bool> used_;
};

using FakeClock = FakeClockT<5'000'000, 10>;

// Fault reasons (VT-d 4.1, appendix A).
inline constexpr u8 FR_ROOT_NOT_PRESENT = 0x1, FR_CONTEXT_NOT_PRESENT = 0x2, FR_INVALID_CONTEXT = 0x3,
                    FR_ADDRESS_WIDTH = 0x4, FR_WRITE = 0x5, FR_READ = 0x6, FR_PT_ACCESS = 0x7, FR_ROOT_ACCESS = 0x8,
                    FR_CONTEXT_ACCESS = 0x9, FR_ROOT_RESERVED = 0xa, FR_CONTEXT_RESERVED = 0xb,
                    FR_PT_RESERVED = 0xc;
inline constexpr u8 FR_IR_INDEX = 0x21, FR_IR_NOT_PRESENT = 0x22, FR_IR_ACCESS = 0x23, FR_IR_RESERVED = 0x24,
                    FR_IR_COMPAT = 0x25, FR_IR_SID = 0x26;

class SimUnit : public Regs {
public:
    // --- knobs (capabilities) ---
    u32 ver = 0x10;                // 1.0
    u8 nd = 2;                     // 2^(4 + 2 * ND) domains: 256
    bool rwbf = false;
    bool caching_mode = false;
    u8 sagaw = 0x4;                // bit 2: 48-bit, 4-level
    u8 mgaw = 48;
    u8 sllps = 0;                  // second-level large pages: bit 0 2 MiB, bit 1 1 GiB
    u32 nfr = 8;                   // fault recording registers
    u32 fro = 0x200;               // their offset (a multiple of 16)
    u32 iro = 0x100;               // IOTLB registers' offset (a multiple of 16)
    bool qi = true;
    bool ir = true;
    bool eim = true;
    bool coherent = false;
    bool all_ones = false;         // the registers read as all ones (no device there)
    u32 delay = 2;                 // status reads before a command takes effect

    // Commands that never complete.
    bool stuck_srtp = false, stuck_te = false, stuck_qie = false, stuck_wbf = false, stuck_ccmd = false,
         stuck_iotlb = false, stuck_queue = false, stuck_sirtp = false, stuck_ire = false;
    std::set<u64> refuse;          // descriptor types the queue treats as invalid (IQE)

    // --- what happened ---
    struct Write {
        u32 off;
        u64 v;
        unsigned bits;
    };
    std::vector<Write> writes;            // every register write, in order
    std::vector<Entry> descs;             // every descriptor the queue processed
    u32 ccmd_invalidations = 0, iotlb_invalidations = 0, wbf_flushes = 0, wait_interrupts = 0;
    u32 fault_events = 0;                 // fault interrupts (not masked)
    u32 iec_global = 0, iec_index = 0;    // interrupt entry cache invalidations processed
    bool protocol_error = false;          // the driver broke a rule the sim checks
    std::string protocol_what;

    Arena &mem;
    explicit SimUnit(Arena &m) : mem(m) {}
    // Firmware left compatibility-format interrupts allowed (CFIS set) before Keel.
    void firmware_set_cfi() { gsts_ |= GCMD_CFI; }

    u64 cap() const
    {
        return u64(nd & 7) | u64(rwbf) << 4 | u64(caching_mode) << 7 | u64(sagaw & 0x1f) << 8 |
               u64((mgaw - 1) & 0x3f) << 16 | u64(sllps & 0xf) << 34 | u64(fro / 16 & 0x3ff) << 24 |
               u64((nfr - 1) & 0xff) << 40;
    }
    u64 ecap() const
    {
        return u64(coherent) | u64(qi) << 1 | u64(ir) << 3 | u64(eim) << 4 | u64(iro / 16 & 0x3ff) << 8;
    }
    u32 gsts() const { return gsts_; }
    u32 domains() const { return 1u << (4 + 2 * nd); }
    bool translating() const { return gsts_ & GCMD_TE; }
    u64 root() const { return root_; }           // the latched root table pointer
    u64 iqh() const { return u64(head_) << 4; }

    // --- Regs ---
    u32 read32(u32 off) override
    {
        if (all_ones) return ~0u;
        if (off == GSTS) return tick(), gsts_;
        if (off == VER) return ver;
        if (off == FSTS) return fsts();
        if (off == FECTL) return fectl_;
        const u64 v = read64(off & ~7u);
        return off & 4 ? u32(v >> 32) : u32(v);
    }

    u64 read64(u32 off) override
    {
        if (all_ones) return ~0ull;
        switch (off) {
        case CAP: return cap();
        case ECAP: return ecap();
        case RTADDR: return rtaddr_;
        case CCMD: tick(); return ccmd_;
        case IQH: return u64(head_) << 4;
        case IQT: return u64(tail_) << 4;
        case IQA: return iqa_;
        case IRTA: return irta_;
        }
        if (off == iro) return iva_;
        if (off == iro + 8) return tick(), iotlb_reg_;
        if (off >= fro && off < fro + nfr * 16) {
            const Record &r = fr_[(off - fro) / 16];
            return (off - fro) % 16 ? r.hi : r.lo;
        }
        return 0;
    }

    void write32(u32 off, u32 v) override
    {
        writes.push_back({off, v, 32});
        switch (off) {
        case GCMD: return gcmd(v);
        case FSTS: return write_fsts(v);
        case FECTL: fectl_ = v & FECTL_IM; return;
        }
        if (off >= fro && off < fro + nfr * 16 && (off - fro) % 16 == 12) {
            if (v >> 31) fr_[(off - fro) / 16].hi &= ~(1ull << 63);
            return;
        }
        fail("32-bit write to a register Keel should not write that way", off);
    }

    void write64(u32 off, u64 v) override
    {
        writes.push_back({off, v, 64});
        switch (off) {
        case RTADDR: rtaddr_ = v; return;
        case CCMD: return write_ccmd(v);
        case IQT:
            if (v & ~0x7fff0ull) fail("IQT reserved bits", off);
            tail_ = u32(v >> 4) & 0x7fff;
            if (tail_ >= queue_entries()) fail("IQT beyond the queue", off);
            run_queue();
            return;
        case IQA:
            if (gsts_ & GCMD_QIE) fail("IQA written with queued invalidation on", off);
            iqa_ = v;
            return;
        case IRTA: irta_ = v; return;
        }
        if (off == iro) {
            iva_ = v;
            return;
        }
        if (off == iro + 8) return write_iotlb(v);
        if (off >= fro && off < fro + nfr * 16 && (off - fro) % 16 == 8) {
            if (v >> 63) fr_[(off - fro) / 16].hi &= ~(1ull << 63);
            return;
        }
        fail("64-bit write to an unexpected register", off);
    }

    // --- tests' hooks ---

    // Record a fault like the hardware does (7.2.1): at the current index if
    // its record is free, else overflow; nothing while PFO is set.
    bool record_fault(u16 sid, u64 addr, bool read, u8 reason)
    {
        if (pfo_) return false;
        Record &r = fr_[next_fr_];
        if (r.hi >> 63) {
            pfo_ = true;
            return false;
        }
        if (!any_pending()) fri_ = next_fr_;
        r.lo = addr & ~0xfffull;
        r.hi = 1ull << 63 | u64(read) << 62 /* T: 1 read */ | u64(reason) << 32 | sid;
        next_fr_ = (next_fr_ + 1) % nfr;
        if (!(fectl_ & FECTL_IM)) fault_events++;
        return true;
    }
    u32 pending_faults() const
    {
        u32 n = 0;
        for (u32 i = 0; i < nfr; i++) n += fr_[i].hi >> 63;
        return n;
    }

    struct Xlate {
        bool ok = false;
        u64 pa = 0;
        u8 reason = 0;
    };

    // A DMA request from bus:devfn to `iova`, translated like the hardware
    // would (when translation is on; else untranslated). A fault is recorded
    // unless the context entry says FPD.
    Xlate dma(u8 bus, u8 devfn, u64 iova, bool write)
    {
        if (!translating()) return {true, iova, 0};
        const u16 sid = u16(bus << 8 | devfn);
        bool fpd = false;
        Xlate x = walk(bus, devfn, iova, write, fpd);
        if (!x.ok && !fpd) record_fault(sid, iova, !write, x.reason);
        return x;
    }

    struct Interrupt {
        bool ok = false;
        u8 reason = 0;
        u8 vector = 0;
        u32 dest = 0;
        bool logical = false, redirect = false, level = false;
        u8 delivery = 0;
        u32 index = 0;
    };

    // An MSI write (address, data) from requester `sid`, through interrupt
    // remapping (9.10, 5.1.4): the remappable format's handle, the IRTE at
    // it, its source validation. Compatibility format is blocked unless CFIS.
    Interrupt msi(u16 sid, u64 addr, u32 data)
    {
        Interrupt out;
        if (!(gsts_ & GCMD_IRE)) return irq_fault(out, sid, 0, 0);   // not remapping: reason 0 = passed on
        if ((addr >> 20) != 0xfee) return irq_fault(out, sid, 0, FR_IR_RESERVED);
        if (!(addr & 1u << 4)) {
            // Compatibility format (5.1.4): passed on only with CFIS set and EIME clear.
            if ((gsts_ & GCMD_CFI) && !(irta_latched_ & IRTA_EIME)) return irq_fault(out, sid, 0, 0);
            return irq_fault(out, sid, 0, FR_IR_COMPAT);
        }
        u32 index = u32(addr >> 5 & 0x7fff) | u32(addr >> 2 & 1) << 15;
        if (addr & 1u << 3) index += data & 0xffff;   // SHV: the subhandle added
        else if (data) return irq_fault(out, sid, index, 0x20);
        out.index = index;
        const u32 entries = 2u << (irta_latched_ & 0xf);
        if (index >= entries) return irq_fault(out, sid, index, FR_IR_INDEX);
        u64 lo, hi;
        if (auto it = iec_.find(index); it != iec_.end()) {
            lo = it->second.lo;
            hi = it->second.hi;
        } else {
            const u64 at = (irta_latched_ & ~0xfffull) + u64(index) * 16;
            if (!mem.read64(at, lo) || !mem.read64(at + 8, hi)) return irq_fault(out, sid, index, FR_IR_ACCESS);
            if (lo & 1) iec_[index] = Entry{lo, hi};   // present entries are cached (9.10)
        }
        if (!(lo & 1)) return irq_fault(out, sid, index, FR_IR_NOT_PRESENT);
        const bool x2 = irta_latched_ & IRTA_EIME;
        u64 reserved_lo = 0x7000ull | 0xff000000ull | 1ull << 15 /* IM: posted, unsupported here */;
        if (!x2) reserved_lo |= 0xff000000'00000000ull | 0xff'00000000ull;
        const u8 dlm = lo >> 5 & 7;
        if ((lo & reserved_lo) || (hi >> 20) || (hi >> 18 & 3) == 3 || (dlm != 0 && dlm != 1 && dlm != 4))
            return irq_fault(out, sid, index, FR_IR_RESERVED);
        const u16 esid = u16(hi);
        const u8 sq = hi >> 16 & 3, svt = hi >> 18 & 3;
        if (svt == 1) {
            const u16 ignore = sq == 0 ? 0 : sq == 1 ? 0x4 : sq == 2 ? 0x6 : 0x7;
            if ((sid & ~ignore) != (esid & ~ignore)) return irq_fault(out, sid, index, FR_IR_SID);
        } else if (svt == 2) {
            if ((sid >> 8) < (esid >> 8) || (sid >> 8) > (esid & 0xff)) return irq_fault(out, sid, index, FR_IR_SID);
        }
        out.ok = true;
        out.logical = lo >> 2 & 1;
        out.redirect = lo >> 3 & 1;
        out.level = lo >> 4 & 1;
        out.delivery = dlm;
        out.vector = u8(lo >> 16);
        out.dest = x2 ? u32(lo >> 32) : u32(lo >> 40 & 0xff);
        return out;
    }

    // Cached translations (for tests of invalidation).
    size_t cached_contexts() const { return ctx_cache_.size(); }
    size_t cached_translations() const { return iotlb_.size(); }
    size_t cached_interrupt_entries() const { return iec_.size(); }
    u64 irta_latched() const { return irta_latched_; }

private:
    struct Record {
        u64 lo = 0, hi = 0;
    };
    struct Tlb {
        u64 pa;
        bool r, w;
    };
    struct Pending {
        bool on = false;
        u32 reads = 0;
    };

    u32 gsts_ = 0, fectl_ = FECTL_IM;
    u64 rtaddr_ = 0, root_ = 0, ccmd_ = 0, iva_ = 0, iotlb_reg_ = 0, iqa_ = 0, irta_ = 0, irta_latched_ = 0;
    u32 head_ = 0, tail_ = 0;
    bool iqe_ = false, pfo_ = false;
    u32 fri_ = 0, next_fr_ = 0;
    Record fr_[256];
    // A GCMD change or register invalidation in flight: applied after `delay` status reads.
    u32 want_gsts_ = 0;
    u32 gsts_reads_ = 0;
    bool gsts_pending_ = false;
    bool ccmd_pending_ = false, iotlb_pending_ = false;
    u32 ccmd_reads_ = 0, iotlb_reads_ = 0;
    std::map<u16, Entry> ctx_cache_;                       // by SID: cached context entries
    std::map<std::pair<u16, u64>, Tlb> iotlb_;              // by (DID, page)
    std::map<u32, Entry> iec_;                              // interrupt entry cache, by index

    void fail(const char *what, u32 off)
    {
        if (!protocol_error) protocol_what = std::string(what) + " @" + std::to_string(off);
        protocol_error = true;
    }

    u32 queue_entries() const { return 256u << (iqa_ & 7); }
    bool any_pending() const
    {
        for (u32 i = 0; i < nfr; i++)
            if (fr_[i].hi >> 63) return true;
        return false;
    }
    u32 fsts() const
    {
        return u32(pfo_) | (any_pending() ? FSTS_PPF : 0) | (iqe_ ? FSTS_IQE : 0) |
               (any_pending() ? fri_ << 8 : 0);
    }
    void write_fsts(u32 v)
    {
        if (v & FSTS_PFO) pfo_ = false;
        if ((v & FSTS_IQE) && iqe_) {
            iqe_ = false;
            run_queue();   // resumes at the descriptor that failed (IQH)
        }
    }

    // Status reads move commands in flight along.
    void tick()
    {
        if (gsts_pending_ && ++gsts_reads_ >= delay) complete_gcmd();
        if (ccmd_pending_ && !stuck_ccmd && ++ccmd_reads_ >= delay) {
            ccmd_pending_ = false;
            const u64 g = ccmd_ >> 61 & 3;
            invalidate_ctx(g, u16(ccmd_), u16(ccmd_ >> 16));
            ccmd_ = (ccmd_ & ~(1ull << 63)) | g << 59;   // CAIG: done as asked
        }
        if (iotlb_pending_ && !stuck_iotlb && ++iotlb_reads_ >= delay) {
            iotlb_pending_ = false;
            const u64 g = iotlb_reg_ >> 60 & 3;
            invalidate_tlb(g, u16(iotlb_reg_ >> 32), iva_ & ~0xfffull);
            iotlb_reg_ = (iotlb_reg_ & ~(1ull << 63)) | g << 57;   // IAIG
        }
    }

    // Global command (10.4.4): one change per write; states follow the
    // command after a few status reads, one-shots run and their status says so.
    void gcmd(u32 v)
    {
        if (gsts_pending_) fail("GCMD written while a command is in flight", GCMD);
        constexpr u32 STATES = GCMD_TE | GCMD_QIE | GCMD_IRE | GCMD_CFI;
        constexpr u32 ONESHOTS = GCMD_SRTP | GCMD_WBF | GCMD_SIRTP | (1u << 29) | (1u << 28);
        const u32 changed = (v ^ gsts_) & STATES, shots = v & ONESHOTS;
        if (__builtin_popcount(changed) + __builtin_popcount(shots) != 1) {
            fail("GCMD write changes other than exactly one thing", GCMD);
            return;
        }
        if (shots == GCMD_WBF && !rwbf) fail("WBF without CAP.RWBF", GCMD);
        if ((changed & GCMD_TE) && (v & GCMD_TE) && !(gsts_ & GCMD_SRTP)) fail("TE before a root table", GCMD);
        if ((changed & GCMD_QIE) && (v & GCMD_QIE) && !qi) fail("QIE without ECAP.QI", GCMD);
        if ((changed & GCMD_IRE) && (v & GCMD_IRE) && !ir) fail("IRE without ECAP.IR", GCMD);
        if ((changed & GCMD_IRE) && (v & GCMD_IRE) && !(gsts_ & GCMD_SIRTP)) fail("IRE before a table pointer", GCMD);
        if (shots == GCMD_SIRTP && (irta_ & IRTA_EIME) && !eim) fail("IRTA.EIME without ECAP.EIM", GCMD);
        want_gsts_ = (gsts_ & STATES & ~changed) | (v & changed);
        shot_ = shots;
        if (shots == GCMD_SRTP) gsts_ &= ~GCMD_SRTP;    // RTPS clears until the pointer is latched
        if (shots == GCMD_SIRTP) gsts_ &= ~GCMD_SIRTP;  // IRTPS likewise
        if (shots == GCMD_WBF) {
            gsts_ |= GCMD_WBF;                         // WBFS: flush in progress
            wbf_flushes++;
        }
        gsts_pending_ = true;
        gsts_reads_ = 0;
    }
    u32 shot_ = 0;
    bool ir_pointer_fresh_ = false;

    void complete_gcmd()
    {
        const u32 changed = (want_gsts_ ^ gsts_) & (GCMD_TE | GCMD_QIE | GCMD_IRE | GCMD_CFI);
        if ((shot_ == GCMD_SRTP && stuck_srtp) || (shot_ == GCMD_WBF && stuck_wbf) ||
            ((changed & GCMD_TE) && stuck_te) || ((changed & GCMD_QIE) && stuck_qie) ||
            (shot_ == GCMD_SIRTP && stuck_sirtp) || ((changed & GCMD_IRE) && stuck_ire))
            return;
        gsts_pending_ = false;
        if (shot_ == GCMD_SRTP) {
            root_ = rtaddr_;
            gsts_ |= GCMD_SRTP;
        } else if (shot_ == GCMD_SIRTP) {
            irta_latched_ = irta_;
            gsts_ |= GCMD_SIRTP;
            ir_pointer_fresh_ = true;   // to be followed by a global IEC invalidation (10.4.4)
        } else if (shot_ == GCMD_WBF) {
            gsts_ &= ~GCMD_WBF;
        }
        if (changed & GCMD_QIE) {
            if (want_gsts_ & GCMD_QIE) {
                head_ = 0;   // 6.5.2: IQH reset when the queue is enabled
            } else if (head_ != tail_) {
                fail("QIE cleared with descriptors pending", GCMD);
            }
        }
        if ((changed & GCMD_IRE) && (want_gsts_ & GCMD_IRE) && ir_pointer_fresh_)
            fail("IRE with no global interrupt entry cache invalidation after SIRTP", GCMD);
        gsts_ = (gsts_ & ~(GCMD_TE | GCMD_QIE | GCMD_IRE | GCMD_CFI)) | want_gsts_;
        shot_ = 0;
    }

    void write_ccmd(u64 v)
    {
        if (gsts_ & GCMD_QIE) fail("register-based context invalidation with queued invalidation on", CCMD);
        ccmd_ = v;
        if (v >> 63) {
            const u64 g = v >> 61 & 3;
            if (g == 0) fail("CCMD: no granularity", CCMD);
            ccmd_invalidations++;
            ccmd_pending_ = true;
            ccmd_reads_ = 0;
        }
    }

    void write_iotlb(u64 v)
    {
        if (gsts_ & GCMD_QIE) fail("register-based IOTLB invalidation with queued invalidation on", iro + 8);
        iotlb_reg_ = v;
        if (v >> 63) {
            if ((v >> 60 & 3) == 0) fail("IOTLB: no granularity", iro + 8);
            iotlb_invalidations++;
            iotlb_pending_ = true;
            iotlb_reads_ = 0;
        }
    }

    // g: 1 global, 2 domain, 3 device (context) or page (IOTLB).
    void invalidate_ctx(u64 g, u16 did, u16 sid)
    {
        for (auto it = ctx_cache_.begin(); it != ctx_cache_.end();) {
            const bool hit = g == 1 || (g == 2 && u16(it->second.hi >> 8) == did) || (g == 3 && it->first == sid);
            it = hit ? ctx_cache_.erase(it) : std::next(it);
        }
    }
    void invalidate_tlb(u64 g, u16 did, u64 page)
    {
        for (auto it = iotlb_.begin(); it != iotlb_.end();) {
            const bool hit = g == 1 || (g == 2 && it->first.first == did) ||
                             (g == 3 && it->first.first == did && it->first.second == page);
            it = hit ? iotlb_.erase(it) : std::next(it);
        }
    }

    // The invalidation queue (6.5.2): descriptors from head to tail, each
    // 128 bits; an invalid one stops the queue with IQE, IQH left at it.
    void run_queue()
    {
        if (!(gsts_ & GCMD_QIE) || stuck_queue) return;
        while (head_ != tail_ && !iqe_) {
            u64 lo, hi;
            const u64 at = (iqa_ & ~0xfffull) + u64(head_) * 16;
            if (!mem.read64(at, lo) || !mem.read64(at + 8, hi) || !descriptor(lo, hi)) {
                iqe_ = true;
                return;
            }
            descs.push_back(Entry{lo, hi});
            head_ = (head_ + 1) % queue_entries();
        }
    }

    bool descriptor(u64 lo, u64 hi)
    {
        if (refuse.count(lo & 0xf)) return false;
        switch (lo & 0xf) {
        case QI_CONTEXT: {
            const u64 g = lo >> 4 & 3;
            if (g == 0) return false;
            invalidate_ctx(g, u16(lo >> 16), u16(lo >> 32));
            return true;
        }
        case QI_IOTLB: {
            const u64 g = lo >> 4 & 3;
            if (g == 0) return false;
            invalidate_tlb(g, u16(lo >> 16), hi & ~0xfffull);
            return true;
        }
        case QI_IEC: {
            if (!ir) return false;   // no interrupt remapping: the descriptor type is invalid
            if (lo >> 4 & 1) {
                const u32 idx = u32(lo >> 32 & 0xffff), mask = u32(lo >> 27 & 0x1f);
                const u32 first = idx & ~((1u << mask) - 1), count = 1u << mask;
                for (u32 i = first; i < first + count; i++) iec_.erase(i);
                iec_index++;
            } else {
                iec_.clear();
                iec_global++;
                ir_pointer_fresh_ = false;
            }
            return true;
        }
        case QI_WAIT:
            if (lo >> 4 & 1) wait_interrupts++;
            if (lo & QI_WAIT_SW) {
                u8 *p = mem.at(hi & ~3ull, 4);
                if (!p) return false;
                const u32 data = u32(lo >> 32);
                std::memcpy(p, &data, 4);
            }
            return true;
        }
        return false;
    }

    Interrupt &irq_fault(Interrupt &out, u16 sid, u32 index, u8 reason)
    {
        out.ok = reason == 0;
        out.reason = reason;
        if (reason) record_fault(sid, u64(index) << 48, false, reason);
        return out;
    }

    // Root entry -> context entry -> second-level table (3.4.3, 9.1, 9.3, 9.8).
    Xlate walk(u8 bus, u8 devfn, u64 iova, bool write, bool &fpd)
    {
        const u16 sid = u16(bus << 8 | devfn);
        Entry ctx;
        if (auto it = ctx_cache_.find(sid); it != ctx_cache_.end()) {
            ctx = it->second;
        } else {
            Entry root;
            const u64 ra = (root_ & ~0xfffull) + u64(bus) * 16;
            if (root_ & 0xc00) return fault(FR_ROOT_RESERVED);   // TTM other than legacy
            if (!mem.read64(ra, root.lo) || !mem.read64(ra + 8, root.hi)) return fault(FR_ROOT_ACCESS);
            if (!(root.lo & 1)) return fault(FR_ROOT_NOT_PRESENT);
            if ((root.lo & 0xffe) || root.hi || (root.lo >> 12) >= (1ull << (mgaw - 12)))
                return fault(FR_ROOT_RESERVED);
            const u64 ca = (root.lo & ~0xfffull) + u64(devfn) * 16;
            if (!mem.read64(ca, ctx.lo) || !mem.read64(ca + 8, ctx.hi)) return fault(FR_CONTEXT_ACCESS);
            if (!(ctx.lo & 1)) {
                if (caching_mode) ctx_cache_[sid] = ctx;
                return fault(FR_CONTEXT_NOT_PRESENT);
            }
            ctx_cache_[sid] = ctx;
        }
        if (!(ctx.lo & 1)) return fault(FR_CONTEXT_NOT_PRESENT);
        fpd = ctx.lo >> 1 & 1;
        if ((ctx.lo & 0xff0) || (ctx.hi & 0x80) || (ctx.hi >> 24) || u32(ctx.hi >> 8 & 0xffff) >= domains())
            return fault(FR_CONTEXT_RESERVED);
        const u32 aw = ctx.hi & 7, tt = ctx.lo >> 2 & 3;
        if (tt != 0 || aw > 4 || !(sagaw >> aw & 1)) return fault(FR_INVALID_CONTEXT);
        const u16 did = u16(ctx.hi >> 8);
        const unsigned levels = aw + 2, width = 12 + 9 * levels;
        if (width < 64 && (iova >> min<unsigned>(width, mgaw))) return fault(FR_ADDRESS_WIDTH);
        const u64 page = iova & ~0xfffull;
        if (auto it = iotlb_.find({did, page}); it != iotlb_.end()) {
            const Tlb &t = it->second;
            if (write ? !t.w : !t.r) return fault(write ? FR_WRITE : FR_READ);
            return {true, t.pa | (iova & 0xfff), 0};
        }
        u64 table = ctx.lo & ~0xfffull;
        bool r = true, w = true;
        for (unsigned level = levels; level; level--) {
            u64 e;
            if (!mem.read64(table + (iova >> (12 + 9 * (level - 1)) & 511) * 8, e)) return fault(FR_PT_ACCESS);
            r &= e & 1;
            w &= e >> 1 & 1;
            const bool large = level > 1 && (e >> 7 & 1);
            if (large && (level > 3 || !(sllps >> (level - 2) & 1))) return fault(FR_PT_RESERVED);
            if (!(e & 3)) {
                if (caching_mode) iotlb_[{did, page}] = Tlb{0, false, false};
                return fault(write ? FR_WRITE : FR_READ);
            }
            if (level == 1 || large) {
                const u64 size = 1ull << (12 + 9 * (level - 1));
                const u64 pa = (e & 0x000f'ffff'ffff'f000ull & ~(size - 1)) | (iova & (size - 1));
                iotlb_[{did, page}] = Tlb{pa & ~0xfffull, r, w};
                if (write ? !w : !r) return fault(write ? FR_WRITE : FR_READ);
                return {true, pa, 0};
            }
            table = e & 0x000f'ffff'ffff'f000ull;
        }
        return fault(FR_PT_RESERVED);
    }
    static Xlate fault(u8 reason) { return {false, 0, reason}; }
};

} // namespace vtd::sim

// One NVMe controller (NVMe 1.4, 7.6.1 initialisation, 7.6.2 shutdown).
#include "drivers/nvme/controller.hpp"

#include "drivers/nvme/commands.hpp"
#include "kernel/lib/why.hpp"

namespace nvme {

namespace {

constexpr u64 HALF_SECOND_US = 500'000;

u16 clamp_entries(u16 want, u16 page_max, u64 cap)
{
    const u32 mqes = cap_mqes(cap) + 1;   // 0-based in CAP; at least 2 per the spec
    u32 n = want < page_max ? want : page_max;
    if (n > mqes) n = mqes;
    return u16(n < 2 ? 2 : n);
}

} // namespace

Status Controller::wait_ready(bool ready, bool cfs_fatal, const char *what)
{
    const u64 start = clock_.now_us();
    for (u64 polls = 0;; polls++) {
        const u32 csts = regs_.read32(REG_CSTS);
        if (cfs_fatal && (csts & CSTS_CFS))
            return WhyMsg(&why_, Err::invalid).s(what).s(": controller fatal status (CSTS ").x(csts).s(")");
        if (csts != 0xffffffff && bool(csts & CSTS_RDY) == ready) return {};
        if (clock_.now_us() - start >= ready_timeout_us_ || polls >= opt_.max_polls)
            return WhyMsg(&why_, Err::timeout)
                .s(what).s(": CSTS.RDY not ").d(ready).s(" after ").d(ready_timeout_us_ / 1000).s(" ms (CSTS ")
                .x(csts).s(")");
        clock_.pause();
    }
}

Status Controller::disable()
{
    const u32 cc = regs_.read32(REG_CC);
    if (cc & CC_EN) regs_.write32(REG_CC, cc & ~CC_EN);
    return wait_ready(false, false, "disable");
}

Status Controller::enable()
{
    cap_ = regs_.read64(REG_CAP);
    vs_ = regs_.read32(REG_VS);
    if (cap_ == ~u64(0)) return WhyMsg(&why_, Err::unsupported).s("no controller answers (CAP all ones)");
    if (!cap_css_nvm(cap_)) return WhyMsg(&why_, Err::unsupported).s("no NVM command set (CAP ").x(cap_).s(")");
    if (cap_mpsmin(cap_) != 0)
        return WhyMsg(&why_, Err::unsupported).s("minimum page size ").d(4096u << cap_mpsmin(cap_)).s(" (Keel uses 4096)");
    dstrd_ = cap_dstrd(cap_);
    const u64 to = cap_to(cap_) ? cap_to(cap_) : 1;
    ready_timeout_us_ = opt_.ready_timeout_us ? opt_.ready_timeout_us : to * HALF_SECOND_US;

    KEEL_TRY(disable());
    // Disabled, the controller has forgotten every queue and reaches nothing.
    io_.destroy(dma_);
    needs_reset_ = false;

    if (!admin_.live()) {
        const u16 n = clamp_entries(opt_.admin_entries, QueuePair::MAX_SQ_ENTRIES, cap_);
        Status s = admin_.init(dma_, 0, n, n, dstrd_);
        if (!s) return WhyMsg(&why_, s.error()).s("admin queue: ").s(err_name(s.error()));
    } else {
        admin_.reset(dma_);
    }
    if (!scratch_.valid()) {
        auto p = dma_.alloc_page();
        if (!p) return WhyMsg(&why_, p.error()).s("no page for identify data");
        scratch_ = *p;
    }

    regs_.write32(REG_AQA, aqa(admin_.sq_entries(), admin_.cq_entries()));
    regs_.write64(REG_ASQ, admin_.sq_base().raw());
    regs_.write64(REG_ACQ, admin_.cq_base().raw());
    regs_.write32(REG_CC, cc_css(0) | cc_mps(0) | cc_ams(0) | cc_iosqes(SQE_SHIFT) | cc_iocqes(CQE_SHIFT) | CC_EN);
    KEEL_TRY(wait_ready(true, true, "enable"));

    KEEL_TRY(admin(cmd::identify(CNS_CONTROLLER, 0, scratch_.pa.raw()), "identify controller"));
    Status s = parse_identify_controller(scratch_.va, cap_, info_);
    if (!s) return WhyMsg(&why_, s.error()).s("identify controller: unusable SQES/CQES");
    return {};
}

Status Controller::admin(Sqe c, const char *what)
{
    last_ = execute(admin_, c, nullptr, opt_.admin_timeout_us);
    if (last_.ok()) return {};
    WhyMsg w(&why_, Err::invalid);
    w.s(what).s(": ").s(outcome_text(last_.outcome));
    switch (last_.outcome) {
    case Outcome::failed:
        w.s(": ").s(status_text(last_.status)).s(" (sct ").d(last_.status.sct()).s(" sc ").x(last_.status.sc()).s(")");
        return Err::invalid;
    case Outcome::timed_out: return Err::timeout;
    case Outcome::refused: w.s(": ").s(err_name(last_.why)); return last_.why;
    default: return Err::invalid;
    }
}

Status Controller::create_io_queues()
{
    if (io_.live()) return WhyMsg(&why_, Err::exists).s("I/O queues exist");
    KEEL_TRY(admin(cmd::set_number_of_queues(1, 1), "set number of queues"));
    const u16 sq = clamp_entries(opt_.io_sq_entries, QueuePair::MAX_SQ_ENTRIES, cap_);
    const u16 cq = clamp_entries(opt_.io_cq_entries, QueuePair::MAX_CQ_ENTRIES, cap_);
    Status s = io_.init(dma_, IO_QID, sq, cq, dstrd_);
    if (!s) return WhyMsg(&why_, s.error()).s("I/O queue: ").s(err_name(s.error()));
    s = admin(cmd::create_io_cq(IO_QID, cq, io_.cq_base(), -1), "create I/O completion queue");
    if (s) {
        s = admin(cmd::create_io_sq(IO_QID, sq, io_.sq_base(), IO_QID), "create I/O submission queue");
        if (!s && !needs_reset_) (void)admin(cmd::delete_io_cq(IO_QID), "delete I/O completion queue");
    }
    // After a timeout the controller may still own the rings: they go at reset().
    if (!s && !needs_reset_) io_.destroy(dma_);
    return s;
}

Status Controller::reset()
{
    const bool had_io = io_.live();
    KEEL_TRY(enable());
    if (had_io) KEEL_TRY(create_io_queues());
    return {};
}

Status Controller::shutdown()
{
    const u32 cc = regs_.read32(REG_CC);
    regs_.write32(REG_CC, (cc & ~CC_SHN_MASK) | CC_SHN_NORMAL);
    const u64 start = clock_.now_us();
    for (u64 polls = 0;; polls++) {
        const u32 csts = regs_.read32(REG_CSTS);
        if ((csts & CSTS_SHST_MASK) == CSTS_SHST_DONE) return {};
        if (clock_.now_us() - start >= ready_timeout_us_ || polls >= opt_.max_polls)
            return WhyMsg(&why_, Err::timeout).s("shutdown not complete after ").d(ready_timeout_us_ / 1000).s(" ms");
        clock_.pause();
    }
}

void Controller::release()
{
    io_.destroy(dma_);
    admin_.destroy(dma_);
    if (scratch_.valid()) dma_.free_page(scratch_);
    scratch_ = DmaPage{};
}

CmdResult Controller::execute(QueuePair &q, Sqe c, OwnedPages *owned, u64 timeout_us)
{
    if (needs_reset_ || !q.live()) {
        if (owned) owned->release(dma_);
        return needs_reset_ ? CmdResult{Outcome::fatal, {}, 0, Err::none} : CmdResult::refuse(Err::invalid);
    }
    auto cid = q.submit(regs_, c, owned, clock_.now_us());
    if (!cid) {
        if (owned) owned->release(dma_);
        return CmdResult::refuse(cid.error());
    }
    for (u64 polls = 0;; polls++) {
        q.reap(regs_, dma_);
        CmdResult r;
        if (q.take(*cid, r)) return r;
        if (regs_.read32(REG_CSTS) & CSTS_CFS) {
            q.abandon(*cid);
            needs_reset_ = true;
            WhyMsg(&why_, Err::invalid).s("controller fatal status");
            return CmdResult{Outcome::fatal, {}, 0, Err::none};
        }
        if (q.overdue(*cid, clock_.now_us(), timeout_us) || polls >= opt_.max_polls) {
            q.abandon(*cid);
            needs_reset_ = true;
            WhyMsg(&why_, Err::timeout).s("command ").x(c.opcode()).s(" on queue ").d(q.qid()).s(" timed out");
            return CmdResult{Outcome::timed_out, {}, 0, Err::none};
        }
        clock_.pause();
    }
}

Result<u32> Controller::active_namespaces(u32 *out, u32 max)
{
    KEEL_TRY(admin(cmd::identify(CNS_ACTIVE_NS_LIST, 0, scratch_.pa.raw()), "identify namespace list"));
    auto n = parse_namespace_list(scratch_.va, out, max);
    if (!n) return WhyMsg(&why_, n.error()).s("namespace list not increasing");
    return n;
}

Status Controller::identify_namespace(u32 nsid, NamespaceInfo &out)
{
    if (nsid == 0 || nsid == 0xffffffff) return WhyMsg(&why_, Err::invalid).s("namespace id ").x(nsid);
    KEEL_TRY(admin(cmd::identify(CNS_NAMESPACE, nsid, scratch_.pa.raw()), "identify namespace"));
    Status s = parse_identify_namespace(scratch_.va, nsid, out);
    if (!s) return WhyMsg(&why_, s.error()).s("namespace ").d(nsid).s(": ").s(s.error() == Err::not_found ? "inactive" : "bad format");
    return {};
}

Result<PrimaryCaps> Controller::identify_primary_caps()
{
    KEEL_TRY(admin(cmd::identify(CNS_PRIMARY_CTRL_CAPS, 0, scratch_.pa.raw()), "identify primary controller capabilities"));
    PrimaryCaps caps;
    if (!parse_primary_caps(scratch_.va, caps))
        return WhyMsg(&why_, Err::invalid)
            .s("primary controller capabilities: allocated beyond the totals (VQ ").d(caps.vqfrt).s(" total, ")
            .d(caps.vqrfap).s("+").d(caps.vqrfa).s("; VI ").d(caps.vifrt).s(" total, ").d(caps.virfap).s("+")
            .d(caps.virfa).s(")");
    return caps;
}

Result<u32> Controller::secondary_list(SecondaryController *out, u32 max, u16 first)
{
    KEEL_TRY(admin(cmd::identify_secondary_list(first, scratch_.pa.raw()), "identify secondary controller list"));
    auto n = parse_secondary_list(scratch_.va, out, max);
    if (!n)
        return WhyMsg(&why_, n.error())
            .s("secondary controller list: ").d(scratch_.va[0]).s(" entries (a page holds ").d(SECONDARY_LIST_MAX).s(")");
    return n;
}

Result<SecondaryController> Controller::find_secondary(u16 vfn)
{
    if (!vfn) return WhyMsg(&why_, Err::invalid).s("VF 0: VF numbers start at 1");
    u32 first = 0, listed = 0;
    // Each page lists up to 127 controllers from `first` on; a full page may
    // have a successor. Controller ids are 16 bits: 517 pages cover them all.
    for (u32 pages = 0; pages <= 0x10000 / SECONDARY_LIST_MAX; pages++) {
        auto n = secondary_list(nullptr, 0, u16(first));
        if (!n) return n.error();
        u32 next = first;
        for (u32 i = 0; i < *n; i++) {
            const SecondaryController e = parse_secondary_entry(scratch_.va, i);
            if (e.vfn == vfn) return e;
            if (e.scid < first)
                return WhyMsg(&why_, Err::invalid)
                    .s("secondary controller list from id ").d(first).s(" lists controller ").d(e.scid);
            if (e.scid + 1u > next) next = e.scid + 1u;
        }
        listed += *n;
        if (*n < SECONDARY_LIST_MAX || next > 0xffff || next == first) break;
        first = next;
    }
    return WhyMsg(&why_, Err::not_found)
        .s("VF ").d(vfn).s(": no secondary controller has that VF number (").d(listed).s(" listed)");
}

Result<u32> Controller::virt_mgmt(u8 act, u8 rt, u16 cntlid, u32 nr)
{
    auto c = cmd::virt_mgmt(act, rt, cntlid, nr);
    if (!c) return WhyMsg(&why_, Err::invalid).s("virtualization management: action ").x(act).s(" type ").x(rt);
    struct {
        char msg[64];
    } what;
    WhyMsg<decltype(what)> w(&what, Err::none);
    switch (act) {
    case VM_ACT_PRIMARY_FLEXIBLE: w.s("primary flexible allocation"); break;
    case VM_ACT_SECONDARY_OFFLINE: w.s("secondary offline"); break;
    case VM_ACT_SECONDARY_ASSIGN: w.s("secondary assign"); break;
    case VM_ACT_SECONDARY_ONLINE: w.s("secondary online"); break;
    default: w.s("action ").x(act);
    }
    if (act == VM_ACT_PRIMARY_FLEXIBLE || act == VM_ACT_SECONDARY_ASSIGN)
        w.s(" of ").d(nr).s(rt == VM_RT_VQ ? " VQ" : rt == VM_RT_VI ? " VI" : " ?");
    w.s(" (controller ").d(cntlid).s(")");
    KEEL_TRY(admin(*c, what.msg));
    return last_.dw0;
}

Status Controller::ns_attachment(u32 nsid, u16 cntlid, bool detach)
{
    const char *what = detach ? "namespace detach" : "namespace attach";
    auto c = cmd::namespace_attachment(nsid, detach, scratch_.pa);
    if (!c) return WhyMsg(&why_, Err::invalid).s(what).s(": namespace id ").x(nsid);
    (void)cmd::controller_list(scratch_.va, &cntlid, 1);
    return admin(*c, what);
}

Status Controller::attach_namespace(u32 nsid, u16 cntlid) { return ns_attachment(nsid, cntlid, false); }
Status Controller::detach_namespace(u32 nsid, u16 cntlid) { return ns_attachment(nsid, cntlid, true); }

Status Controller::vf_why(u16 vfn, Err e)
{
    Why inner = why_;
    return WhyMsg(&why_, e).s("VF ").d(vfn).s(": ").s(inner.msg);
}

Status Controller::bring_vf_online(u16 vfn, u16 nvq, u16 nvi, u32 nsid)
{
    if (nsid == 0xffffffff) return WhyMsg(&why_, Err::invalid).s("VF ").d(vfn).s(": namespace id ").x(nsid);
    auto caps = identify_primary_caps();
    if (!caps) return vf_why(vfn, caps.error());
    auto found = find_secondary(vfn);
    if (!found) return found.error();   // why() names the VF already
    const SecondaryController sc = *found;
    const bool vq = caps->crt & CRT_VQ, vi = caps->crt & CRT_VI;

    // Checked before anything changes: a refusal halfway would leave the VF offline.
    struct Want {
        bool offered;
        const char *name;
        u16 want, min, max;     // max: VQFRSM / VIFRSM
        u32 free, own;          // free in the pool, and what the VF holds already
    };
    const Want wants[] = {
        {vq, "VQ", nvq, 2, caps->vqfrsm, caps->vq_free(), sc.nvq},
        {vi, "VI", nvi, 1, caps->vifrsm, caps->vi_free(), sc.nvi},
    };
    for (const Want &r : wants) {
        if (!r.offered) continue;
        if (r.want < r.min)
            return WhyMsg(&why_, Err::invalid)
                .s("VF ").d(vfn).s(": ").d(r.want).s(" ").s(r.name).s(" resources asked, a secondary needs at least ").d(r.min);
        if (r.want > r.max)
            return WhyMsg(&why_, Err::range)
                .s("VF ").d(vfn).s(": ").d(r.want).s(" ").s(r.name).s(" resources asked, at most ").d(r.max)
                .s(" per secondary");
        if (r.want > u64(r.free) + r.own)
            return WhyMsg(&why_, Err::no_memory)
                .s("VF ").d(vfn).s(": ").d(r.want).s(" ").s(r.name).s(" resources asked, ").d(r.free)
                .s(" free and ").d(r.own).s(" its own");
    }

    if (sc.online) {
        auto r = virt_mgmt(VM_ACT_SECONDARY_OFFLINE, VM_RT_VQ, sc.scid, 0);
        if (!r) return vf_why(vfn, r.error());
    }
    for (const Want &r : wants) {
        if (!r.offered) continue;
        const u8 rt = &r == &wants[0] ? VM_RT_VQ : VM_RT_VI;
        auto got = virt_mgmt(VM_ACT_SECONDARY_ASSIGN, rt, sc.scid, r.want);
        if (!got) return vf_why(vfn, got.error());
        if (*got != r.want)
            return WhyMsg(&why_, Err::no_memory)
                .s("VF ").d(vfn).s(": ").d(r.want).s(" ").s(r.name).s(" resources asked, ").d(*got).s(" assigned");
    }
    // RT must be valid even here: QEMU checks it before the action.
    auto on = virt_mgmt(VM_ACT_SECONDARY_ONLINE, VM_RT_VQ, sc.scid, 0);
    if (!on) return vf_why(vfn, on.error());

    if (!nsid) return {};
    Status s = attach_namespace(nsid, sc.scid);
    if (!s && last_.outcome == Outcome::failed && last_.status.sct() == SCT_COMMAND_SPECIFIC &&
        last_.status.sc() == SC_NS_ALREADY_ATTACHED)
        return {};
    if (!s) return vf_why(vfn, s.error());
    return {};
}

CmdResult Controller::check_range(const NamespaceInfo &ns, u64 lba, u32 blocks)
{
    if (!io_.live()) return CmdResult::refuse(Err::invalid);
    if (!ns.usable) return CmdResult::refuse(Err::unsupported);
    if (!blocks || blocks > MAX_BLOCKS_PER_CMD || lba >= ns.blocks || blocks > ns.blocks - lba)
        return CmdResult::refuse(Err::range);
    return CmdResult{Outcome::ok, {}, 0, Err::none};
}

CmdResult Controller::io(const NamespaceInfo &ns, u8 opcode, u64 lba, u32 blocks, const DataBuffer &buf)
{
    CmdResult r = check_range(ns, lba, blocks);
    if (!r.ok()) return r;
    if (u64(buf.length) != u64(blocks) << ns.block_shift) return CmdResult::refuse(Err::invalid);
    OwnedPages owned;
    auto prps = build_prps(buf, info_.max_transfer, dma_, owned);
    if (!prps) return CmdResult::refuse(prps.error());
    auto c = opcode == NVM_READ ? cmd::read(ns.nsid, lba, blocks, *prps) : cmd::write(ns.nsid, lba, blocks, *prps);
    if (!c) {
        owned.release(dma_);
        return CmdResult::refuse(c.error());
    }
    return execute(io_, *c, &owned, opt_.io_timeout_us);
}

CmdResult Controller::read(const NamespaceInfo &ns, u64 lba, u32 blocks, const DataBuffer &buf)
{
    return io(ns, NVM_READ, lba, blocks, buf);
}

CmdResult Controller::write(const NamespaceInfo &ns, u64 lba, u32 blocks, const DataBuffer &buf)
{
    return io(ns, NVM_WRITE, lba, blocks, buf);
}

CmdResult Controller::flush(const NamespaceInfo &ns)
{
    if (!io_.live()) return CmdResult::refuse(Err::invalid);
    if (!info_.volatile_write_cache) return CmdResult{Outcome::ok, {}, 0, Err::none};
    return execute(io_, cmd::flush(ns.nsid), nullptr, opt_.io_timeout_us);
}

CmdResult Controller::deallocate(const NamespaceInfo &ns, u64 lba, u32 blocks)
{
    if (!info_.dsm) return CmdResult::refuse(Err::unsupported);
    CmdResult r = check_range(ns, lba, blocks);
    if (!r.ok()) return r;
    auto page = dma_.alloc_page();
    if (!page) return CmdResult::refuse(page.error());
    OwnedPages owned;
    (void)owned.add(*page);
    cmd::dsm_range(page->va, 0, lba, blocks);
    auto c = cmd::dsm_deallocate(ns.nsid, 1, page->pa);
    if (!c) {
        owned.release(dma_);
        return CmdResult::refuse(c.error());
    }
    return execute(io_, *c, &owned, opt_.io_timeout_us);
}

CmdResult Controller::write_zeroes(const NamespaceInfo &ns, u64 lba, u32 blocks)
{
    if (!info_.write_zeroes) return CmdResult::refuse(Err::unsupported);
    CmdResult r = check_range(ns, lba, blocks);
    if (!r.ok()) return r;
    auto c = cmd::write_zeroes(ns.nsid, lba, blocks, false);
    if (!c) return CmdResult::refuse(c.error());
    return execute(io_, *c, nullptr, opt_.io_timeout_us);
}

} // namespace nvme

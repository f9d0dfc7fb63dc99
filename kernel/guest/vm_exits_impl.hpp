// The exit handlers as templates over the vCPU interface: instantiated for VcpuOps (the
// portable handle_exit, unit-tested with fakes) and for each backend's final class, where every
// VMCB/VMCS accessor is a direct, inlined call (no virtual call, no retpoline, per access).
#pragma once

#include "kernel/guest/guest_paging.hpp"
#include "kernel/guest/vcpu_irq.hpp"
#include "kernel/guest/vm_exits.hpp"
#include "kernel/guest/x86_decode.hpp"
#include "kernel/lib/console.hpp"

namespace exits_detail {


constexpr u8 DB = 1, GP = 13, UD = 6;

// What answers on a PC where nothing does: reads float to all ones, writes go nowhere.
constexpr u64 DR6_BS = 1u << 14;

class OpenBus final : public MmioDevice {
public:
    bool covers(u64) const override { return true; }
    void mmio(u32, u64, u8, bool write, u64 &value) override
    {
        if (!write) value = ~0ull;
    }
};

// Keel emulated the instruction at RIP: it retires as on the CPU (SDM vol. 3 6.8.3, 17.3.1.4).
// RIP moves past it, the STI/MOV SS shadow ends (set_rip), and the debug traps that follow it
// come as one #DB: the data/I/O breakpoints it hit (hits: B0-B3), those a MOV SS held back for
// it, and with RFLAGS.TF the single-step (BS). B0-B3 not hit are cleared, as the CPU does for
// any #DB. True if a #DB follows.
template <class Ops>
[[gnu::always_inline]] inline bool retire_insn(Ops &ops, u64 nrip, u64 hits = 0)
{
    hits |= ops.set_rip(nrip);
    if (ops.rflags() & (1u << 8)) hits |= DR6_BS;
    if (!hits) return false;
    ops.set_dr6((ops.dr6() & ~u64(0xf)) | 0xffff0ff0 | hits);
    ops.inject_exception(DB, false, 0);
    return true;
}

// The breakpoints an emulated access hits (0 when DR7 enables none: one read on the exit path).
template <class Ops>
[[gnu::noinline]] u32 armed_hits(Ops &ops, u64 dr7, u64 addr, u8 size, BpAccess access)
{
    const u64 drs[4] = {ops.dr(0), ops.dr(1), ops.dr(2), ops.dr(3)};
    return breakpoint_hits(dr7, drs, addr, size, access, ops.cr4() & (1u << 3));
}

// (Inline, and the work out of line: most exits see no breakpoint armed.)
template <class Ops>
inline u32 access_hits(Ops &ops, u64 addr, u8 size, BpAccess access)
{
    const u64 dr7 = ops.dr7();
    return dr7 & 0xff ? armed_hits(ops, dr7, addr, size, access) : 0;
}

// Out of line, in vm_exits.cpp: no vCPU access.
bool soft_rdmsr(u32 msr, u32 vcpu_index, u64 &v);
bool msr_value_valid(u32 msr, u64 v, unsigned va_bits);
bool xcr0_allowed(const GuestPlatform &p, u64 v);
bool profile_msr(GuestPlatform &p, u32 vcpu, u32 msr, bool write, Gprs &g, bool &ok);
inline u32 size_mask(u8 size) { return size >= 4 ? ~0u : (1u << (size * 8)) - 1; }
// Port devices are shared by the guest's vCPUs: one at a time (the UART's line buffer, the
// PIT's latches, ... are not safe against two CPUs at once). The device's part out of line;
// an unclaimed port (Linux's I/O delay at 0x80) is answered inline.
u32 device_in(GuestPlatform &p, IoDevice &d, u16 port, u8 size);
void device_out(GuestPlatform &p, IoDevice &d, u16 port, u8 size, u32 v);
inline u32 port_in(GuestPlatform &p, u16 port, u8 size)
{
    if (IoDevice *d = p.find_io(port)) return device_in(p, *d, port, size);
    return ~0u & size_mask(size);   // unclaimed ports float high
}
inline void port_out(GuestPlatform &p, u16 port, u8 size, u32 v)
{
    if (IoDevice *d = p.find_io(port)) device_out(p, *d, port, size, v);
}


// Fetch up to 15 instruction bytes at CS:RIP through the guest's own paging.
// Returns a pointer to them (in place when they sit in one extent) and their count.
template <class Ops>
[[gnu::always_inline]] inline const u8 *fetch_insn(Ops &ops, GuestPlatform &p, x86::CpuMode mode, u8 (&copy)[15], usize &n)
{
    GuestPagingState ps{ops.cr0(), 0, 0, 0};
    if (ps.cr0 & (1ull << 31)) ps.cr3 = ops.cr3(), ps.cr4 = ops.cr4(), ps.efer = ops.efer();
    // 64-bit mode ignores the CS base; elsewhere linear addresses wrap at 4 GiB.
    const bool long64 = mode == x86::CpuMode::long64;
    const u64 lmask = long64 ? ~0ull : 0xffffffffull;
    const u64 linear = ((long64 ? 0 : ops.cs_base()) + ops.rip()) & lmask;
    // (Paging off: the linear address is the physical one, as guest_translate would say.)
    Result<u64> gpa = ps.cr0 & (1ull << 31) ? guest_translate(*p.mem, ps, linear) : Result<u64>(linear);
    if (!gpa) {
        log_debug("instruction fetch at %lx failed (%s): cr0=%lx cr3=%lx cr4=%lx efer=%lx", linear,
                  err_name(gpa.error()), ps.cr0, ps.cr3, ps.cr4, ps.efer);
        return nullptr;
    }
    // Bytes on the first page; the rest (if any) comes from the next page, translated on its own.
    const u64 first = min<u64>(15, PAGE_SIZE - (linear & (PAGE_SIZE - 1)));
    if (!(ps.cr0 & (1ull << 31)) || first == 15) {
        n = 15;
        if (const u8 *in_place = p.mem->span(GuestPhys(*gpa), n)) return in_place;
    }
    n = 0;
    for (; n < first && p.mem->read(GuestPhys(*gpa + n), copy + n, 1); n++) {}
    if (n == first && n < 15) {
        auto next = guest_translate(*p.mem, ps, (linear + first) & lmask);
        for (usize k = 0; next && n < 15 && p.mem->read(GuestPhys(*next + k), copy + n, 1); n++, k++) {}
    }
    return copy;
}

// RIP after an instruction of `len` bytes, wrapped as the CPU mode wraps it.
template <class Ops>
u64 rip_after(Ops &ops, x86::CpuMode m, usize len)
{
    const u64 r = ops.rip() + len;
    return m == x86::CpuMode::long64 ? r : m == x86::CpuMode::prot32 ? r & 0xffffffff : r & 0xffff;
}

// The next RIP when the hardware did not say, the general way: up to 15 bytes copied and
// decoded (kept out of line: its buffer would put a stack canary on every exit's frame).
template <class Ops>
[[gnu::noinline]] bool decode_next_rip_slow(Ops &ops, GuestPlatform &p, x86::CpuMode m, u64 &out)
{
    u8 copy[15];
    usize n = 0;
    const u8 *bytes = fetch_insn(ops, p, m, copy, n);
    if (!bytes) return false;
    auto insn = x86::decode(bytes, n, m);
    if (!insn) return false;
    out = rip_after(ops, m, insn->len);
    return true;
}

// The length of the instructions that exit most when they have no prefix (their one encoding
// in practice): CPUID, RDMSR, WRMSR, RDPMC, WBINVD, INVD (two bytes), HLT (one). 0: decode it.
inline usize common_insn_len(u8 b0, u8 b1)
{
    if (b0 == 0xf4) return 1;
    if (b0 != 0x0f) return 0;
    return b1 == 0xa2 || b1 == 0x30 || b1 == 0x32 || b1 == 0x33 || b1 == 0x09 || b1 == 0x08 ? 2 : 0;
}

// Where the instruction at RIP is: RIP, its linear address (64-bit mode ignores the CS base;
// elsewhere linear addresses wrap at 4 GiB, as fetch_insn has it) and the mask RIP wraps with
// (as rip_after). A backend may answer it without building the CPU mode (SvmVcpu::code_at).
struct CodeAt {
    u64 rip, linear, wrap;
};
// The same from the registers that decide the mode (x86::cpu_mode's: CR0.PE, RFLAGS.VM,
// EFER.LMA, and CS.L and CS.D in its attributes, AMD's 12-bit form), without building the mode.
[[gnu::always_inline]] inline CodeAt code_at_regs(u64 rip, u64 cs_base, u64 cr0, u64 rflags, u64 efer, u16 cs_attr)
{
    const bool protected_mode = (cr0 & 1) && !(rflags & (1u << 17));   // else real or virtual-8086: 16-bit code
    if (protected_mode && (cs_attr & (1u << 9)) && (efer & (1u << 10))) return {rip, rip, ~0ull};
    return {rip, (cs_base + rip) & 0xffffffffull, protected_mode && (cs_attr & (1u << 10)) ? 0xffffffffull : 0xffffull};
}
template <class Ops>
[[gnu::always_inline]] inline CodeAt code_at(Ops &ops)
{
    if constexpr (requires { ops.code_at(); }) {
        return ops.code_at();
    } else {
        const x86::CpuMode m = ops.mode();
        const u64 rip = ops.rip();
        if (m == x86::CpuMode::long64) return {rip, rip, ~0ull};
        return {rip, (ops.cs_base() + rip) & 0xffffffffull, m == x86::CpuMode::prot32 ? 0xffffffffull : 0xffffull};
    }
}

// The next RIP when the hardware did not say (SVM without NRIPS, as under QEMU TCG). The
// common instructions are recognised by their first two bytes, read in place (one translation,
// no copy); anything else, or two bytes across a page or out of RAM, takes the decoder.
template <class Ops>
[[gnu::noinline]] bool decode_next_rip(Ops &ops, GuestPlatform &p, u64 &out)
{
    const CodeAt at = code_at(ops);
    const u64 linear = at.linear;
    if ((linear & (PAGE_SIZE - 1)) <= PAGE_SIZE - 2) {
        const u64 cr0 = ops.cr0();
        Result<u64> gpa = linear;
        if (cr0 & (1ull << 31))
            gpa = guest_translate_regs(*p.mem, cr0, ops.cr3(), ops.cr4(), ops.efer(), linear);
        if (gpa) {
            if (const u8 *b = p.mem->span(GuestPhys(*gpa), 2)) {
                // (Each byte read once: the guest may be rewriting them.)
                const usize len =
                    common_insn_len(__atomic_load_n(b, __ATOMIC_RELAXED), __atomic_load_n(b + 1, __ATOMIC_RELAXED));
                if (len) {
                    out = (at.rip + len) & at.wrap;
                    return true;
                }
            }
        }
    }
    return decode_next_rip_slow(ops, p, ops.mode(), out);
}

// Is the instruction at RIP a HLT (without prefixes)? Then `out` is the RIP after it.
template <class Ops>
[[gnu::noinline]] bool hlt_at_rip(Ops &ops, GuestPlatform &p, u64 &out)
{
    u8 copy[15];
    usize n = 0;
    const x86::CpuMode m = ops.mode();
    const u8 *bytes = fetch_insn(ops, p, m, copy, n);
    if (!bytes || n < 1 || bytes[0] != 0xf4) return false;
    out = rip_after(ops, m, 1);
    return true;
}

// Find the next RIP: from the hardware if it told us, else by decoding the instruction.
template <class Ops>
inline bool next_rip(const ExitInfo &e, Ops &ops, GuestPlatform &p, u64 &out)
{
    if (e.next_rip) {
        out = e.next_rip;
        return true;
    }
    return decode_next_rip(ops, p, out);
}

// Emulate the instruction that touched an MMIO device: MOV loads and stores (register or
// immediate), MOVZX/MOVSX loads. Anything else stops the guest: device registers are
// not memory, and guessing would corrupt the device or the guest.
template <class Ops>
ExitOutcome emulate_mmio(const ExitInfo &e, Gprs &g, Ops &ops, GuestPlatform &p, u32 vcpu, MmioDevice &dev)
{
    u8 copy[15];
    usize n = 0;
    const x86::CpuMode m = ops.mode();
    const u8 *bytes = fetch_insn(ops, p, m, copy, n);
    if (!bytes) return {ExitAction::stop, "cannot fetch the instruction accessing MMIO at", e.gpa};
    // The same instruction as this vCPU's last MMIO exit (all its bytes compared, same mode): its
    // decoding again.
    x86::DecodeMemo *memo = vcpu < GuestPlatform::MAX_VCPUS ? &p.mmio_memo[vcpu] : nullptr;
    const x86::Insn *hit = memo ? memo->lookup(bytes, n, m) : nullptr;
    x86::Insn decoded;   // (filled only on a miss: no stores for it on a hit)
    if (!hit) {
        auto r = x86::decode(bytes, n, m);
        if (!r || !r->mem) return {ExitAction::stop, "cannot decode the instruction accessing MMIO at", e.gpa};
        decoded = *r;
        if (memo) memo->remember(bytes, n, m, decoded);
        hit = &decoded;
    }
    const x86::Insn &in = *hit;
    using K = x86::Insn::Kind;
    // What the device sees must be one load or one store: read-modify-write (OR, AND, ADD...),
    // string and other instructions stop the guest, named as such (their mem_size says nothing).
    if (in.kind != K::mov_load && in.kind != K::movzx && in.kind != K::movsx && in.kind != K::mov_store &&
        in.kind != K::mov_store_imm)
        return {ExitAction::stop, "unsupported instruction accessing MMIO at", e.gpa};
    const u8 size = in.mem_size;
    if (size != 1 && size != 2 && size != 4 && size != 8) return {ExitAction::stop, "bad MMIO access size at", e.gpa};
    const u64 mask = size == 8 ? ~0ull : (1ull << (size * 8)) - 1;
    // RSP lives in the VMCB/VMCS, not in Gprs: work on a copy and write it back (read only when
    // the instruction names it: a VMREAD on VMX).
    u64 rsp_copy = in.kind != K::mov_store_imm && !in.high8 && in.reg == 4 ? ops.rsp() : 0;
    bool rsp_written = false;
    auto reg_ref = [&](u8 reg, bool high8) -> u64 & {
        if (!high8 && reg == 4) return rsp_copy;
        return g[high8 ? reg - 4 : reg];
    };
    // Writes a result of op_size bytes into a register as the CPU does (32-bit writes zero-extend).
    auto set_reg = [&](u8 reg, bool high8, u8 op_size, u64 v) {
        u64 &r64 = reg_ref(reg, high8);
        if (op_size == 8) r64 = v;
        else if (op_size == 4) r64 = u32(v);
        else if (op_size == 2) r64 = (r64 & ~0xffffull) | (v & 0xffff);
        else if (high8) r64 = (r64 & ~0xff00ull) | (v & 0xff) << 8;
        else r64 = (r64 & ~0xffull) | (v & 0xff);
        if (!high8 && reg == 4) rsp_written = true;
    };
    u64 v = 0;
    switch (in.kind) {
    case x86::Insn::Kind::mov_load:
        dev.mmio(vcpu, e.gpa, size, false, v);
        set_reg(in.reg, in.high8, in.op_size, v & mask);
        break;
    case x86::Insn::Kind::movzx:
    case x86::Insn::Kind::movsx: {
        dev.mmio(vcpu, e.gpa, size, false, v);
        v &= mask;
        if (in.kind == x86::Insn::Kind::movsx && size < 8 && (v >> (size * 8 - 1)) & 1) v |= ~mask;
        set_reg(in.reg, false, in.op_size, v);
        break;
    }
    case x86::Insn::Kind::mov_store: {
        u64 src = reg_ref(in.reg, in.high8);
        v = (in.high8 ? src >> 8 : src) & mask;
        dev.mmio(vcpu, e.gpa, size, true, v);
        break;
    }
    case x86::Insn::Kind::mov_store_imm:
        v = u64(in.simm()) & mask;
        dev.mmio(vcpu, e.gpa, size, true, v);
        break;
    default:
        return {ExitAction::stop, "unsupported instruction accessing MMIO at", e.gpa};
    }
    // Data breakpoints see the operand's linear address: its segment's base (only FS and GS
    // have one in 64-bit mode) plus the effective address, as the registers were before.
    u32 hits = 0;
    if (ops.dr7() & 0xff) {
        u64 gpr[16];
        for (unsigned i = 0; i < 16; i++) gpr[i] = g[i];
        gpr[4] = ops.rsp();
        u64 la = in.ea(gpr, ops.rip());
        if (m != x86::CpuMode::long64 || in.segment == x86::Seg::fs || in.segment == x86::Seg::gs)
            la += ops.seg_base(in.segment);
        if (m != x86::CpuMode::long64) la &= 0xffffffff;
        hits = access_hits(ops, la, size, in.kind == x86::Insn::Kind::mov_store || in.kind == x86::Insn::Kind::mov_store_imm
                                              ? BpAccess::write : BpAccess::read);
    }
    if (rsp_written) ops.set_rsp(rsp_copy);
    u64 rip = ops.rip() + in.len;
    if (m == x86::CpuMode::prot32) rip &= 0xffffffff;
    else if (m != x86::CpuMode::long64) rip &= 0xffff;
    retire_insn(ops, rip, hits);
    return {};
}

// MOV to CR0 (VMX, when it changes a bit Keel owns) or CR4 (both): the checks the CPU makes
// (SDM vol. 3 2.5, MOV CRn), then the guest's CPU profile: what CPUID hides cannot be enabled.
template <class Ops>
ExitOutcome mov_to_cr(const ExitInfo &e, Gprs &g, Ops &ops, GuestPlatform &p)
{
    u64 value = e.cr_value, nrip = e.next_rip;
    const x86::CpuMode m = ops.mode();
    if (!e.cr_decoded || !nrip) {
        u8 copy[15];
        usize n = 0;
        const u8 *bytes = fetch_insn(ops, p, m, copy, n);
        auto in = bytes ? x86::decode(bytes, n, m) : Result<x86::Insn>(Err::invalid);
        if (!in || in->kind != x86::Insn::Kind::mov_to_cr || in->reg != e.cr)
            return {ExitAction::stop, "cannot decode the MOV to a control register at", ops.rip()};
        value = in->rm == 4 ? ops.rsp() : g[in->rm];
        nrip = ops.rip() + in->len;
        if (m != x86::CpuMode::long64) nrip &= m == x86::CpuMode::prot32 ? 0xffffffff : 0xffff;
    }
    if (m != x86::CpuMode::long64) value = u32(value);
    const bool lma = ops.efer() & (1u << 10);
    auto gp = [&] { ops.inject_exception(GP, true, 0); return ExitOutcome{}; };
    if (e.cr == 4) {
        const u64 old = ops.cr4();
        constexpr u64 PAE = 1u << 5, LA57 = 1u << 12, PCIDE = 1u << 17;
        if (value & p.cr4_reserved) return gp();
        if ((value & PCIDE) && !(old & PCIDE) && (!lma || (ops.cr3() & 0xfff))) return gp();
        if (lma && (!(value & PAE) || ((value ^ old) & LA57))) return gp();
        ops.set_cr4(value);
    } else if (e.cr == 0) {
        constexpr u64 PE = 1, NW = 1u << 29, CD = 1u << 30, PG = 1ull << 31;
        const u64 old = ops.cr0();
        if (value >> 32) return gp();
        if ((value & PG) && !(value & PE)) return gp();
        if ((value & NW) && !(value & CD)) return gp();
        if ((value & PG) && !(old & PG) && (ops.efer() & (1u << 8)) && !(ops.cr4() & (1u << 5))) return gp();
        if (!(value & PG) && (old & PG) && m == x86::CpuMode::long64) return gp();
        ops.set_cr0(value | 0x10);   // ET is hardwired
    } else {
        return {ExitAction::stop, "unexpected control register access at", ops.rip()};
    }
    retire_insn(ops, nrip);
    return {};
}


// INS/OUTS, with or without REP, on flat guest memory (paging off: linear = physical).
// Bounded work per exit: a long REP resumes where it stopped (RCX/RSI/RDI updated, RIP kept).
template <class Ops>
ExitOutcome string_io(const ExitInfo &e, Gprs &g, Ops &ops, GuestPlatform &p, u64 nrip)
{
    if (ops.cr0() & (1ull << 31)) return {ExitAction::stop, "string I/O with guest paging on is not supported", 0};
    const u64 amask = e.addr_size == 8 ? ~0ull : e.addr_size == 4 ? 0xffffffffull : 0xffffull;
    const u64 step = (ops.rflags() & (1u << 10)) ? -u64(e.size) : u64(e.size);   // DF
    u64 count = e.rep ? g.rcx & amask : 1;
    u64 done = 0;
    for (; done < count && done < 4096; done++) {
        u64 &ptr = e.in ? g.rdi : g.rsi;
        GuestPhys at(ptr & amask);
        u32 v = 0;
        if (e.in) {
            v = port_in(p, e.port, e.size);
            if (!p.mem->write(at, &v, e.size)) return {ExitAction::stop, "INS outside its memory at", at.raw()};
        } else {
            if (!p.mem->read(at, &v, e.size)) return {ExitAction::stop, "OUTS outside its memory at", at.raw()};
            port_out(p, e.port, e.size, v);
        }
        ptr = (ptr & ~amask) | ((ptr + step) & amask);
    }
    if (e.rep) g.rcx = (g.rcx & ~amask) | ((g.rcx - done) & amask);
    if (!e.rep || (g.rcx & amask) == 0) retire_insn(ops, nrip, access_hits(ops, e.port, e.size, BpAccess::io));
    return {};
}

// The work of the exits guests make most, shared by their handlers below and by the backends'
// fast paths (SvmVcpu/VmxVcpu::run_inline), which answer them from the exit's own fields
// before ExitInfo is built, as KVM's exit fast path does. A fast path takes only what needs
// nothing else: no event being delivered, no single-step, no breakpoint enabled, no MOV SS
// shadow; everything else comes here through ExitInfo.
inline bool io_size_valid(u8 size) { return size == 1 || size == 2 || size == 4; }

// IN or OUT (not INS/OUTS) of a valid size, on the port's device; an unclaimed port floats high.
[[gnu::always_inline]] inline void in_or_out(GuestPlatform &p, Gprs &g, u16 port, u8 size, bool in)
{
    if (in) {
        // What an IN leaves of RAX: the bits above an 8- or 16-bit result; nothing above a
        // 32-bit one (32-bit results zero-extend).
        static constexpr u64 KEEP[5] = {0, ~0xffull, ~0xffffull, 0, 0};
        const u64 keep = KEEP[size];
        IoDevice *d = p.find_io(port);
        g.rax = (g.rax & keep) | (d ? device_in(p, *d, port, size) : u32(~keep));
    } else {
        port_out(p, port, size, u32(g.rax));
    }
}

// CPUID's answer when the leaf in EAX has one, computed when the guest was built
// (CpuProfile::fixed_leaf); null for the other leaves. cpuid_answer puts it in the registers.
[[gnu::always_inline]] inline const u32 *cpuid_fixed(const GuestPlatform &p, const Gprs &g)
{
    return p.profile ? p.profile->fixed_leaf(u32(g.rax)) : nullptr;
}
[[gnu::always_inline]] inline void cpuid_answer(Gprs &g, const u32 *r)
{
    g.rax = r[0], g.rbx = r[1], g.rcx = r[2], g.rdx = r[3];
}

// The exits guests make most, each as a function of its own: handle_exit_t tests for them
// before its switch (a compare tree without jump tables: retpolines forbid those).
template <class Ops>
[[gnu::always_inline]] inline ExitOutcome exit_cpuid(const ExitInfo &e, Gprs &g, Ops &ops, GuestPlatform &p, u32 vcpu_index)
{
    u64 nrip = 0;
    if (!next_rip(e, ops, p, nrip)) return {ExitAction::stop, "cannot decode CPUID", ops.rip()};
    // The guest's CPU profile answers (no host CPUID on the exit path); a guest without one
    // (never built by the hypervisor) sees a CPU without features.
    if (const u32 *f = cpuid_fixed(p, g)) {
        cpuid_answer(g, f);
        retire_insn(ops, nrip);
        return {};
    }
    u32 r[4] = {0, 0, 0, 0};
    // CPUID.1:EDX.APIC follows IA32_APIC_BASE's global enable (read from the APIC's model).
    bool apic_on = true;
    if (u32(g.rax) == 1 && p.msr) {
        u64 base = 0;
        bool ok = false;
        if (p.msr->rdmsr(vcpu_index, 0x1b, base, ok) && ok) apic_on = base & (1u << 11);
    }
    // CR4 and XCR0 (an XGETBV, three VMREADs for CR4 on VMX) only for the leaves that show them.
    const u32 leaf = u32(g.rax);
    if (p.profile)
        p.profile->cpuid(leaf, u32(g.rcx), vcpu_index, CpuProfile::cpuid_uses_cr4(leaf) ? ops.cr4() : 0,
                         CpuProfile::cpuid_uses_xcr0(leaf) ? ops.xcr0() : 0, r, apic_on);
    cpuid_answer(g, r);
    retire_insn(ops, nrip);
    return {};
}

template <class Ops>
[[gnu::always_inline]] inline ExitOutcome exit_io(const ExitInfo &e, Gprs &g, Ops &ops, GuestPlatform &p)
{
    u64 nrip = 0;
    if (!next_rip(e, ops, p, nrip)) return {ExitAction::stop, "cannot decode I/O instruction", ops.rip()};
    if (!io_size_valid(e.size)) return {ExitAction::stop, "bad I/O size", e.port};
    if (e.string) return string_io(e, g, ops, p, nrip);
    in_or_out(p, g, e.port, e.size, e.in);
    retire_insn(ops, nrip, access_hits(ops, e.port, e.size, BpAccess::io));
    return {ExitAction::resume};
}

// A nested page fault: an MMIO device's access (emulated), or an access nothing claims.
template <class Ops>
[[gnu::always_inline]] inline ExitOutcome exit_npf(const ExitInfo &e, Gprs &g, Ops &ops, GuestPlatform &p, u32 vcpu_index)
{
    if (e.in_delivery && !e.fetch && p.find_mmio(e.gpa))
        // The CPU was delivering an event (IDT, stack) through device memory: no instruction to emulate.
        return {ExitAction::stop, "event delivery touched device memory at", e.gpa};
    if (!e.fetch) {
        if (MmioDevice *dev = p.find_mmio(e.gpa, vcpu_index)) return emulate_mmio(e, g, ops, p, vcpu_index, *dev);
        if (!p.stop_on_bad_access && !e.in_delivery) {
            if (p.note_bad_access(e.gpa))
                log_warn("guest %s: %s unclaimed guest-physical %lx (reads all ones, writes dropped; "
                         "this page is not logged again)", p.name, e.write ? "write to" : "read from", e.gpa);
            OpenBus nothing;
            return emulate_mmio(e, g, ops, p, vcpu_index, nothing);
        }
    }
    return {ExitAction::stop, e.fetch ? "instruction fetch outside its memory at"
                             : e.write ? "write outside its memory at" : "read outside its memory at",
            e.gpa};
}

template <class Ops>
[[gnu::always_inline]] inline ExitOutcome handle_exit_t(const ExitInfo &e, Gprs &g, Ops &ops, GuestPlatform &p, u32 vcpu_index)
{
    if (e.reason == ExitReason::io) return exit_io(e, g, ops, p);
    if (e.reason == ExitReason::cpuid) return exit_cpuid(e, g, ops, p, vcpu_index);
    if (e.reason == ExitReason::npf) return exit_npf(e, g, ops, p, vcpu_index);
    u64 nrip = 0;
    switch (e.reason) {   // (I/O, CPUID and NPF: above)
    case ExitReason::hlt:
        if (!next_rip(e, ops, p, nrip)) return {ExitAction::stop, "cannot decode HLT", ops.rip()};
        // Single-stepped: the #DB is an event, and a vCPU with an event does not halt (as KVM).
        if (retire_insn(ops, nrip)) return {};
        return {ExitAction::halt};
    case ExitReason::rdmsr:
    case ExitReason::wrmsr: {
        if (!next_rip(e, ops, p, nrip)) return {ExitAction::stop, "cannot decode RDMSR/WRMSR", ops.rip()};
        const u32 msr = u32(g.rcx);
        const bool write = e.reason == ExitReason::wrmsr;
        bool ok = false;
        // The guest's MSR table first: it may refuse the MSR, or answer it (no-state MSRs).
        const bool decided = p.profile && profile_msr(p, vcpu_index, msr, write, g, ok);
        if (!decided) {
            if (!write) {
                u64 v = 0;
                if (!(p.msr && p.msr->rdmsr(vcpu_index, msr, v, ok)))
                    ok = ops.arch_rdmsr(msr, v) || soft_rdmsr(msr, vcpu_index, v);
                if (ok) g.rax = u32(v), g.rdx = v >> 32;
            } else {
                const u64 v = u64(u32(g.rdx)) << 32 | u32(g.rax);
                if (!(p.msr && p.msr->wrmsr(vcpu_index, msr, v, ok))) {
                    // Canonical means: for the widest linear address the CPU supports (57 bits with LA57).
                    u32 r[4];
                    ops.host_cpuid(7, 0, r);
                    ok = msr_value_valid(msr, v, (r[2] & (1u << 16)) ? 57 : 48) && ops.arch_wrmsr(msr, v);
                    // IA32_BIOS_SIGN_ID: writing it (0, before CPUID) is how the microcode revision is read.
                    if (!ok && msr == 0x8b) ok = true;
                }
            }
        }
        log_debug("vcpu %u %s msr %x: %s", vcpu_index, e.reason == ExitReason::rdmsr ? "rdmsr" : "wrmsr", msr,
                  ok ? "ok" : "#GP");
        if (!ok) {
            ops.inject_exception(GP, true, 0);   // not on the allow-list
            return {};
        }
        retire_insn(ops, nrip);
        return {};
    }
    case ExitReason::vmcall:
    case ExitReason::undefined:
    case ExitReason::monitor:
        ops.inject_exception(UD, false, 0);   // no hypercalls; no SVM/VMX, MONITOR/MWAIT in the guest's CPUID
        return {};
    case ExitReason::xsetbv: {
        // XSETBV (SDM vol. 2): #UD without CR4.OSXSAVE; #GP at CPL > 0, for XCR != 0, or for a
        // value the guest's CPU profile does not allow (bit 0 clear, AVX without SSE, ...).
        if (!(ops.cr4() & (1u << 18))) {
            ops.inject_exception(UD, false, 0);
            return {};
        }
        if (!next_rip(e, ops, p, nrip)) return {ExitAction::stop, "cannot decode XSETBV", ops.rip()};
        const u64 v = u64(u32(g.rdx)) << 32 | u32(g.rax);
        if (ops.cpl() != 0 || u32(g.rcx) != 0 || !xcr0_allowed(p, v)) {
            ops.inject_exception(GP, true, 0);
            return {};
        }
        ops.set_xcr0(v);
        retire_insn(ops, nrip);
        return {};
    }
    case ExitReason::cache_flush:
        // WBINVD/INVD: coherent caches need neither; INVD would drop dirty lines of other guests.
        if (!next_rip(e, ops, p, nrip)) return {ExitAction::stop, "cannot decode WBINVD/INVD", ops.rip()};
        retire_insn(ops, nrip);
        return {};
    case ExitReason::rdpmc: {
        // No PMU is virtualised. Intel's CPUID says so (leaf 0xA: no counters): #GP. AMD's four legacy
        // counters are architectural: they read 0. CPL > 0 without CR4.PCE: #GP.
        const u32 idx = u32(g.rcx);
        if ((ops.cpl() != 0 && !(ops.cr4() & (1u << 8))) || !p.amd || idx > 3) {
            ops.inject_exception(GP, true, 0);
            return {};
        }
        if (!next_rip(e, ops, p, nrip)) return {ExitAction::stop, "cannot decode RDPMC", ops.rip()};
        g.rax = 0, g.rdx = 0;
        retire_insn(ops, nrip);
        return {};
    }
    case ExitReason::cr_access:
        return mov_to_cr(e, g, ops, p);
    case ExitReason::machine_check:
        return {ExitAction::stop, "machine check (host) while it ran; exit", e.raw};
    case ExitReason::shutdown:
        return {ExitAction::stop, "triple fault (shutdown)", ops.rip()};
    case ExitReason::intr:
    case ExitReason::nmi:
        // Taken between STI and the HLT it shadows: the HLT completes here (the guest runs it next
        // anyway, with no interrupt before it). Re-entering at the HLT instead would rely on the
        // CPU keeping the shadow across the entry, which QEMU TCG does not (its VMRUN never
        // reads the VMCB's interrupt shadow): an interrupt waiting for the guest would be taken
        // before the HLT, and the HLT after its handler would sleep through the wake-up the
        // guest counted on (`sti; hlt` is how guests wait for an interrupt).
        if (ops.sti_shadow() && hlt_at_rip(ops, p, nrip)) {
            if (retire_insn(ops, nrip)) return {};   // single-stepped: the #DB is an event, no halt
            return {ExitAction::halt};
        }
        return {};
    case ExitReason::exception:   // reflected into the guest by the backend
    case ExitReason::irq_window:
        return {};   // taken by Keel already, or: the run loop injects what is pending
    case ExitReason::invalid_state:
        return {ExitAction::stop, "invalid guest state", e.raw};
    default:
        return {ExitAction::stop, "unhandled exit", e.raw};
    }
}

// LoadedVcpu::enter: the run loop's inner loop, inside the backend. After an exit handled here,
// straight back into the guest while the run loop would decide nothing new; back to it at the
// first exit that
//   - is not "resume": a halt, or the guest must stop;
//   - is the host's interrupt (its tick, the preemption timer: `intr`), which the run loop
//     answers (the scheduler, the management console);
//   - is a WRMSR to IA32_TSC: it moves the guest's TSC, from which `until` was computed;
//   - finds the guest's attention word set (GuestPlatform::attention: it ends, reboots, is
//     paused, or a device has work left), whichever CPU set it;
//   - comes at or after gate.until: the run loop computed it as the earliest of the tick, the
//     slice's end, a sleeper's timer on this CPU and this vCPU's own timer (gate.deadline);
//   - leaves a vCPU timer other than gate.deadline (the guest programmed it: `until` no longer
//     covers it).
// An exit the backend's fast path handled (run_inline returned true: IN/OUT, CPUID's fixed
// leaves) is a resume, neither `intr` nor a WRMSR: only the attention word and `until` apply.
// Interrupts are delivered before each entry here as the run loop would (VcpuIrq::check: an
// APIC access that may change what is deliverable, an IPI, an interrupt behind the one
// injected), after the IPIs the guest sent are routed (VcpuIrq::ipi_out, with or without check:
// gate.route_ipis); with no check, deliver_interrupts would find nothing: no timer falls
// due before `until`. Everything the run loop looks at after an exit is thus either one of these
// or only changes with one of them. Every exit is counted in gate.stats, as the run loop would.
// `loaded` is `ops` as the interface deliver_interrupts takes.
template <class Ops>
[[gnu::always_inline]] inline ExitOutcome run_until(Ops &ops, LoadedVcpu &loaded, const RunGate &gate, Gprs &g,
                                                    ExitInfo &e, GuestPlatform &p, u32 vcpu_index)
{
    VcpuIrq &irq = *gate.irq;
    ops.exit_by(gate.by);
    // A backend's final class: its entry and the handlers inlined here (one frame for the whole
    // loop), and the CPU it is loaded on looked up and checked once. The portable default (fakes in
    // tests): through the interface.
    auto &&at = [&]() -> decltype(auto) {
        if constexpr (requires { ops.entry_context(); }) return ops.entry_context();
        else return 0;
    }();
    ExitOutcome out;   // (one object, returned from every path: built in the caller's slot)
    // An exit the backend's fast path handled (port I/O, CPUID: see in_or_out) sets only
    // e.reason, and resumes; `e` is made whole if the loop ends there.
    bool fast = false;
    const auto settle = [&] {
        if (!fast) return;
        const ExitReason r = e.reason;
        e = ExitInfo{};
        e.reason = r;
        out = {};
    };
    for (;;) {
        if constexpr (requires { ops.run_inline(g, e, at, &p); }) {
            fast = ops.run_inline(g, e, at, &p);
            if (!fast) out = handle_exit_t(e, g, ops, p, vcpu_index);
        } else {
            ops.run(g, e);
            out = ops.handle(e, g, p, vcpu_index);
        }
        gate.stats->exits++;
        gate.stats->by_reason[u8(e.reason)]++;
        constexpr u32 IA32_TSC = 0x10;
        if (fast) {
            if (p.needs_attention() || __builtin_ia32_rdtsc() >= gate.until) {
                settle();
                return out;
            }
        } else if (out.action != ExitAction::resume || e.reason == ExitReason::intr ||
                   (e.reason == ExitReason::wrmsr && u32(g.rcx) == IA32_TSC) || p.needs_attention() ||
                   __builtin_ia32_rdtsc() >= gate.until) {
            return out;
        }
        // (IPIs first: a self-IPI pokes this vCPU. ipi_out is only ever set on this CPU.)
        if (__atomic_load_n(&irq.ipi_out, __ATOMIC_RELAXED)) {
            if (!gate.route_ipis) {
                settle();
                return out;
            }
            gate.route_ipis(gate.route_ctx);
        }
        if (__atomic_load_n(&irq.check, __ATOMIC_ACQUIRE)) deliver_interrupts(irq, loaded, ops.tsc());
        if (__atomic_load_n(&irq.deadline, __ATOMIC_RELAXED) != gate.deadline) {
            settle();
            return out;
        }
    }
}

} // namespace exits_detail

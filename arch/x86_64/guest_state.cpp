// Eager switching of the state VM entry/exit leave alone (see guest_state.hpp).
#include "arch/x86_64/guest_state.hpp"

#include "arch/x86_64/cpu.hpp"
#include "arch/x86_64/insn.hpp"
#include "arch/x86_64/mm.hpp"
#include "kernel/lib/console.hpp"
#include "kernel/security/mitigations.hpp"

// MSR accesses whose #GP is caught: trap() moves RIP from the access to msr_fault (cpu.cpp).
asm(R"(
    .text
    .globl msr_read_safe, msr_write_safe, msr_read_insn, msr_write_insn, msr_fault
msr_read_safe:
    mov     %edi, %ecx
msr_read_insn:
    rdmsr
    shl     $32, %rdx
    or      %rdx, %rax
    mov     %rax, (%rsi)
    mov     $1, %eax
    ret
msr_write_safe:
    mov     %edi, %ecx
    mov     %esi, %eax
    mov     %rsi, %rdx
    shr     $32, %rdx
msr_write_insn:
    wrmsr
    mov     $1, %eax
    ret
msr_fault:
    xor     %eax, %eax
    ret

    .globl rsb_fill
rsb_fill:
    /* 32 calls whose return addresses are speculation traps (INT3 stops it), unrolled: 34
       instructions run, no loop counter. */
    .rept 32
    call    1f
    int3
1:
    .endr
    add     $(32 * 8), %rsp
    ret
)");

namespace gstate {

Mitigations mitigations_;   // decided once, on the boot CPU (init_cpu); read on every entry

namespace {

constexpr u64 XCR0_X87 = 1, XCR0_SSE = 2, XCR0_AVX = 4, XCR0_PKRU = 1u << 9;
constexpr u32 MSR_SPEC_CTRL = 0x48, MSR_PRED_CMD = 0x49;

struct PerCpu {
    ExtState *loaded;
    u64 loaded_id;
    u64 last_owner;       // the guest whose state this CPU last ran (IBPB when it changes)
    u64 spec_ctrl;
};
PerCpu percpu_[MAX_CPUS];
bool xsave_;
u64 switched_;            // XCR0 components switched
u32 area_size_;
u64 next_id_ = 1;
bool warned_unswitched_;   // a guest's XCR0 was found with components outside switched_ (said once)

void xsetbv(u64 v) { asm volatile("xsetbv" : : "c"(0), "a"(u32(v)), "d"(u32(v >> 32)) : "memory"); }
u64 xgetbv()
{
    u32 lo, hi;
    asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return u64(hi) << 32 | lo;
}

using x86::read_dr;
using x86::write_dr;

void decide()
{
    HostSpecFacts f;
    auto v = x86::cpuid(0);
    if (v.b == 0x756e6547) f.maker = CpuMaker::intel;          // "Genu"
    else if (v.b == 0x68747541) f.maker = CpuMaker::amd;       // "Auth"
    if (v.a >= 7) {
        auto l7 = x86::cpuid(7, 0);
        f.leaf7_edx = l7.d;
        f.rtm = l7.b & (1u << 11);
    }
    if (x86::cpuid(0x80000000).a >= 0x80000008) f.ext8_ebx = x86::cpuid(0x80000008).b;
    if (f.leaf7_edx & (1u << 29)) {
        u64 ac = 0;
        if (msr_read_safe(0x10a, &ac)) f.arch_capabilities = ac;
    }
    mitigations_ = decide_mitigations(f);
    // What the CPU enumerates an emulator may still refuse: keep only what really works.
    u64 probe = 0;
    if (mitigations_.spec_ctrl && !(msr_read_safe(MSR_SPEC_CTRL, &probe) && msr_write_safe(MSR_SPEC_CTRL, probe))) {
        log_warn("cpu enumerates IA32_SPEC_CTRL but refuses it: not used");
        mitigations_.spec_ctrl = false;
    }
    if (mitigations_.ibpb && !msr_write_safe(MSR_PRED_CMD, 1)) {
        log_warn("cpu enumerates IBPB but refuses PRED_CMD: not used");
        mitigations_.ibpb = false;
    }
    if (mitigations_.flush_l1d && !msr_write_safe(0x10b, 1)) mitigations_.flush_l1d = false;
}

} // namespace

Status init_cpu()
{
    Cpu *c = cpu();
    PerCpu &pc = percpu_[c->index];
    const bool boot = c->index == 0;
    auto l1 = x86::cpuid(1);
    if (boot) {
        xsave_ = l1.c & (1u << 26);
        decide();
    }
    u64 cr4 = x86::read_cr4() | x86::cr4::OSFXSR | x86::cr4::OSXMMEXCPT;
    if (xsave_) cr4 |= 1u << 18;   // OSXSAVE
    x86::write_cr4(cr4);
    if (xsave_) {
        if (boot) {
            auto d = x86::cpuid(0xd, 0);
            const u64 host = d.a | u64(d.d) << 32;
            switched_ = host & (XCR0_X87 | XCR0_SSE | XCR0_AVX | XCR0_PKRU);
        }
        xsetbv(switched_);
        // IA32_XSS = 0: a guest's XSAVES (hidden by its CPUID; #UD on VMX, but SVM cannot
        // intercept it) then covers its XCR0 components only, never a supervisor state.
        if (x86::cpuid(0xd, 1).a & (1u << 3)) msr_write_safe(0xda0, 0);
        if (boot) {
            area_size_ = x86::cpuid(0xd, 0).b;   // for the components enabled now
            if (area_size_ > PAGE_SIZE) return Err::unsupported;
        }
    } else if (boot) {
        area_size_ = 512;   // FXSAVE
    }
    if (mitigations_.spec_ctrl) msr_read_safe(MSR_SPEC_CTRL, &pc.spec_ctrl);
    return {};
}

bool has_xsave() { return xsave_; }
u64 switched_xcr0() { return switched_; }

Status ExtState::init(u64 owner, unsigned live)
{
    auto p = mm::alloc_zeroed(0);
    if (!p) return p.error();
    area_ = *p;
    // The architectural reset state: an all-zero XSAVE header means every component in its
    // initial state; MXCSR is loaded from the legacy area whatever the header says.
    u8 *a = mm::phys_ptr<u8>(area_);
    *reinterpret_cast<u16 *>(a + 0) = 0x37f;     // FCW (FXRSTOR path)
    *reinterpret_cast<u32 *>(a + 24) = 0x1f80;   // MXCSR
    xcr0_ = XCR0_X87;
    for (u64 &d : dr_) d = 0;
    dr6_ = 0xffff0ff0;
    cr2_ = 0;
    spec_ctrl_ = 0;
    for (u64 &m : syscall_) m = 0;
    owner_ = owner;
    live_ = live;
    id_ = __atomic_fetch_add(&next_id_, 1, __ATOMIC_RELAXED);
    return {};
}

void ExtState::free()
{
    if (area_.raw()) mm::free(area_, 0);
    area_ = PhysAddr(0);
    id_ = 0;   // no CPU that still names it saves into it (load compares ids)
}

void ExtState::save()
{
    u8 *a = mm::phys_ptr<u8>(area_);
    if (xsave_) {
        // Every switched component: SSE registers are usable whatever XCR0 says (XCR0 governs
        // XSAVE and AVX, CR4.OSFXSR governs SSE), so the guest's own XCR0 is not enough.
        // While loaded, the vCPU's XCR0 is the register's. (QEMU TCG does not intercept XSETBV
        // under SVM: a guest's XSETBV lands there without an exit. Hardware intercepts it.)
        const u64 now = xgetbv();
        if ((now & ~switched_) && !__atomic_exchange_n(&warned_unswitched_, true, __ATOMIC_RELAXED))
            log_warn("a guest enabled XCR0 components Keel does not switch (xcr0=%llx, switched=%llx): "
                     "XSETBV was not intercepted; those registers are not isolated",
                     (unsigned long long)now, (unsigned long long)switched_);
        xcr0_ = now & switched_;
        if (now != switched_) xsetbv(switched_);
        asm volatile("xsave64 (%0)" : : "r"(a), "a"(u32(switched_)), "d"(u32(switched_ >> 32)) : "memory");
    } else {
        asm volatile("fxsave64 (%0)" : : "r"(a) : "memory");
    }
    for (unsigned i = 0; i < 4; i++) dr_[i] = read_dr(i);
    if (live_ & live_dr6) dr6_ = read_dr(6);
    // Keel itself takes no page faults, so the register holds the guest's last fault address.
    if (live_ & live_cr2) cr2_ = x86::read_cr2();
    // The others change only by an intercepted WRMSR; SWAPGS changes this one without an exit.
    if (live_ & live_syscall_msrs) syscall_[4] = x86::rdmsr(0xc0000102);
}

void ExtState::restore()
{
    PerCpu &pc = percpu_[cpu()->index];
    u8 *a = mm::phys_ptr<u8>(area_);
    if (xsave_) {
        // Every switched component is written, from this vCPU's area or its initial state,
        // whatever this vCPU has enabled: nothing of the previous vCPU survives in a register
        // this one could later enable with XSETBV. The register says what XCR0 is (Keel keeps
        // no copy): a vCPU forgotten without a save may have changed it without an exit (TCG
        // SVM), and an XRSTOR under a smaller XCR0 would leave the rest of the previous state live.
        if (xgetbv() != switched_) xsetbv(switched_);
        asm volatile("xrstor64 (%0)" : : "r"(a), "a"(u32(switched_)), "d"(u32(switched_ >> 32)) : "memory");
        if (xcr0_ != switched_) xsetbv(xcr0_);
    } else {
        asm volatile("fxrstor64 (%0)" : : "r"(a) : "memory");
    }
    for (unsigned i = 0; i < 4; i++) write_dr(i, dr_[i]);
    if (live_ & live_dr6) write_dr(6, dr6_);
    if (live_ & live_cr2) x86::write_cr2(cr2_);
    if (live_ & live_syscall_msrs)
        for (usize i = 0; i < NSYSCALL; i++) x86::wrmsr(SYSCALL_MSRS[i], syscall_[i]);
    if (mitigations_.spec_ctrl && pc.spec_ctrl != spec_ctrl_) {
        x86::wrmsr(MSR_SPEC_CTRL, spec_ctrl_);
        pc.spec_ctrl = spec_ctrl_;
    }
}

u64 ExtState::xcr0() const
{
    const PerCpu &pc = percpu_[cpu()->index];
    if (xsave_ && pc.loaded == this && pc.loaded_id == id_) return xgetbv();
    return xcr0_;
}

void ExtState::set_xcr0(u64 v)
{
    xsetbv(v);
    xcr0_ = v;
}

void ExtState::set_spec_ctrl(u64 v)
{
    spec_ctrl_ = v;
    if (mitigations_.spec_ctrl) {
        x86::wrmsr(MSR_SPEC_CTRL, v);
        percpu_[cpu()->index].spec_ctrl = v;
    }
}

bool ExtState::syscall_rdmsr(u32 msr, u64 &v) const
{
    if (!(live_ & live_syscall_msrs)) return false;
    for (usize i = 0; i < NSYSCALL; i++)
        if (SYSCALL_MSRS[i] == msr) {
            v = msr == 0xc0000102 ? x86::rdmsr(msr) : syscall_[i];
            return true;
        }
    return false;
}

bool ExtState::syscall_wrmsr(u32 msr, u64 v)
{
    if (!(live_ & live_syscall_msrs)) return false;
    for (usize i = 0; i < NSYSCALL; i++)
        if (SYSCALL_MSRS[i] == msr) {
            syscall_[i] = v;
            x86::wrmsr(msr, v);
            return true;
        }
    return false;
}

bool guest_spec_rdmsr(u32 msr, u64 &v)
{
    if (msr != 0x10a) return false;
    // What the host is not vulnerable to, and what the guest itself need not do.
    u64 host = 0;
    msr_read_safe(0x10a, &host);
    v = host & (arch_cap::RDCL_NO | arch_cap::IBRS_ALL | arch_cap::SKIP_L1DFL_VMENTRY | arch_cap::MDS_NO |
                arch_cap::TAA_NO | arch_cap::SBDR_SSDP_NO | arch_cap::FBSDP_NO | arch_cap::PSDP_NO |
                arch_cap::FB_CLEAR);
    v |= arch_cap::SKIP_L1DFL_VMENTRY;   // a guest is never a hypervisor here
    return true;
}

bool guest_spec_wrmsr(u32 msr, u64 v)
{
    if (msr == 0x49) {
        if ((v & 1) && mitigations_.ibpb) x86::wrmsr(MSR_PRED_CMD, 1);
        return true;
    }
    if (msr == 0x10b) {
        if ((v & 1) && mitigations_.flush_l1d) x86::wrmsr(0x10b, 1);
        return true;
    }
    return false;
}

bool load(ExtState &s)
{
    PerCpu &pc = percpu_[cpu()->index];
    if (pc.loaded == &s && pc.loaded_id == s.id_) return false;
    // The previous owner's registers go to its area, if it is still the state this CPU loaded
    // (not freed, nor set up again for a new vCPU at the same address since).
    if (pc.loaded && pc.loaded->id_ == pc.loaded_id) pc.loaded->save();
    // Branch predictions trained by another guest must not steer this one.
    if (mitigations_.ibpb && pc.last_owner != s.owner_) x86::wrmsr(MSR_PRED_CMD, 1);
    s.restore();
    pc.loaded = &s;
    pc.loaded_id = s.id_;
    pc.last_owner = s.owner_;
    return true;
}

void forget(ExtState &s)
{
    PerCpu &pc = percpu_[cpu()->index];
    if (pc.loaded == &s) pc.loaded = nullptr, pc.loaded_id = 0;
}

} // namespace gstate

// AMD SVM (APM vol. 2, ch. 15): VMCB setup, the VMRUN loop and exit decoding.
#include "arch/x86_64/svm.hpp"

#include "arch/x86_64/cpu.hpp"
#include "arch/x86_64/guest_state.hpp"
#include "arch/x86_64/insn.hpp"
#include "kernel/guest/vcpu_irq.hpp"
#include "kernel/guest/vm_exits_impl.hpp"
#include "kernel/lib/console.hpp"
#include "kernel/lib/new.hpp"

extern "C" void svm_run(u64 vmcb_pa, Gprs *g, u64 host_vmcb_pa);

namespace svm {
namespace {

namespace msr {
constexpr u32 VM_CR = 0xc0010114, VM_HSAVE_PA = 0xc0010117;
}

// VMCB offsets (APM vol. 2, appendix B).
enum class V : u16 {
    intercept_cr = 0x000, intercept_dr = 0x004, intercept_exc = 0x008, intercept_misc1 = 0x00c,
    intercept_misc2 = 0x010, iopm = 0x040, msrpm = 0x048, tsc_offset = 0x050, asid = 0x058,
    tlb_control = 0x05c, vintr = 0x060, int_shadow = 0x068, exitcode = 0x070, exitinfo1 = 0x078,
    exitinfo2 = 0x080, exitintinfo = 0x088, np_enable = 0x090, eventinj = 0x0a8, ncr3 = 0x0b0,
    clean = 0x0c0, nrip = 0x0c8,
    es = 0x400, cs = 0x410, ss = 0x420, ds = 0x430, fs = 0x440, gs = 0x450, gdtr = 0x460, ldtr = 0x470,
    idtr = 0x480, tr = 0x490, cpl = 0x4cb, efer = 0x4d0, cr4 = 0x548, cr3 = 0x550, cr0 = 0x558, dr7 = 0x560,
    dr6 = 0x568, rflags = 0x570, rip = 0x578, rsp = 0x5d8, rax = 0x5f8, star = 0x600, lstar = 0x608,
    cstar = 0x610, sfmask = 0x618, kernel_gs_base = 0x620, sysenter_cs = 0x628, sysenter_esp = 0x630,
    sysenter_eip = 0x638, cr2 = 0x640, g_pat = 0x668,
};

// Intercept bits in misc1 (0x00c) and misc2 (0x010).
constexpr u32 I1_INTR = 1u << 0, I1_NMI = 1u << 1, I1_SMI = 1u << 2, I1_INIT = 1u << 3, I1_VINTR = 1u << 4,
              I1_RDPMC = 1u << 15, I1_IRET = 1u << 20, I1_CPUID = 1u << 18,
              I1_INVD = 1u << 22, I1_HLT = 1u << 24, I1_INVLPGA = 1u << 26, I1_IOIO = 1u << 27, I1_MSR = 1u << 28,
              I1_TASK_SWITCH = 1u << 29, I1_SHUTDOWN = 1u << 31;
constexpr u32 I2_VMRUN = 1u << 0, I2_VMMCALL = 1u << 1, I2_VMLOAD = 1u << 2, I2_VMSAVE = 1u << 3,
              I2_STGI = 1u << 4, I2_CLGI = 1u << 5, I2_SKINIT = 1u << 6, I2_WBINVD = 1u << 9,
              I2_MONITOR = 1u << 10, I2_MWAIT = 1u << 11, I2_MWAIT_ARMED = 1u << 12, I2_XSETBV = 1u << 13,
              I2_RDPRU = 1u << 14;

// Exit codes.
constexpr u64 EX_WRITE_CR4 = 0x14, EX_EXCP0 = 0x40, EX_INTR = 0x60, EX_NMI = 0x61,
              EX_VINTR = 0x64, EX_RDPMC = 0x6f, EX_IRET = 0x74, EX_CPUID = 0x72, EX_INVD = 0x76, EX_HLT = 0x78, EX_INVLPGA = 0x7a,
              EX_IOIO = 0x7b, EX_MSR = 0x7c, EX_SHUTDOWN = 0x7f, EX_VMRUN = 0x80, EX_VMMCALL = 0x81,
              EX_VMLOAD = 0x82, EX_VMSAVE = 0x83, EX_STGI = 0x84, EX_CLGI = 0x85, EX_SKINIT = 0x86,
              EX_WBINVD = 0x89, EX_MONITOR = 0x8a, EX_MWAIT = 0x8b, EX_MWAIT_ARMED = 0x8c, EX_XSETBV = 0x8d,
              EX_RDPRU = 0x8e, EX_NPF = 0x400, EX_INVALID = ~0ull;
constexpr u32 INVALID32 = 0xffffffffu;   // VMEXIT_INVALID as a 32-bit value

constexpr u64 EFER_SVME = 1u << 12;

struct Vmcb {
    u8 *p;
    template <class T> T &at(V off) { return *reinterpret_cast<T *>(p + u16(off)); }
    u64 &q(V off) { return at<u64>(off); }
    u32 &d(V off) { return at<u32>(off); }
    void seg(V off, u16 sel, u16 attr, u32 limit, u64 base)
    {
        at<u16>(off) = sel;
        *reinterpret_cast<u16 *>(p + u16(off) + 2) = attr;
        *reinterpret_cast<u32 *>(p + u16(off) + 4) = limit;
        *reinterpret_cast<u64 *>(p + u16(off) + 8) = base;
    }
    u16 seg_attr(V off) { return *reinterpret_cast<u16 *>(p + u16(off) + 2); }
    u64 seg_base(V off) { return *reinterpret_cast<u64 *>(p + u16(off) + 8); }
};

struct PerCpu {
    PhysAddr hsave, host_vmcb;
    u32 next_asid;
    u32 asid_generation;
    u64 flush_epoch;
    const void *loaded;          // the vCPU whose load() ran last on this CPU
};
PerCpu percpu_[MAX_CPUS];
u32 max_asid_;
bool nrips_, flush_by_asid_;
PhysAddr iopm_, msrpm_;
u64 flush_epoch_ = 1;

void clgi() { asm volatile("clgi" ::: "memory"); }
void stgi() { asm volatile("stgi" ::: "memory"); }

// MSRs a guest may read directly: their state is in the VMCB and switched by
// VMLOAD/VMSAVE. Writes still exit, so Keel checks the values first.
void allow_msr_read(u8 *map, u32 msr)
{
    u32 base, off;
    if (msr < 0x2000) base = 0, off = msr;
    else if (msr >= 0xc0000000 && msr < 0xc0002000) base = 0x800, off = msr - 0xc0000000;
    else return;
    map[base + off / 4] &= u8(~(1u << ((off % 4) * 2)));
}

// Where the VMCB keeps an MSR of the VMLOAD/VMSAVE set (0 if it does not).
u16 vmcb_msr_offset(u32 msr)
{
    switch (msr) {
    case 0xc0000081: return u16(V::star);
    case 0xc0000082: return u16(V::lstar);
    case 0xc0000083: return u16(V::cstar);
    case 0xc0000084: return u16(V::sfmask);
    case 0xc0000100: return u16(V::fs) + 8;
    case 0xc0000101: return u16(V::gs) + 8;
    case 0xc0000102: return u16(V::kernel_gs_base);
    case 0x174: return u16(V::sysenter_cs);
    case 0x175: return u16(V::sysenter_esp);
    case 0x176: return u16(V::sysenter_eip);
    default: return 0;
    }
}

// The vCPU as its owner holds it (ArchVcpu) and, privately, as the loaded vCPU (LoadedVcpu). The
// LoadedVcpu base comes first (the primary base): the per-exit call, enter(), needs no
// this-adjusting thunk.
// the VMCB's run-time state is reachable only through load().
class SvmVcpu final : private LoadedVcpu, public virt::ArchVcpu {
public:
    Status setup(const virt::NestedSpace &space, const virt::EntryState &entry, u64 owner) override;
    LoadedVcpu &load() override;
    u64 guest_tsc() const override { return x86::rdtsc() + tsc_offset_; }
    void start_at_sipi(u8 vector) override
    {
        sipi_vector_ = vector;
        __atomic_store_n(&sipi_pending_, true, __ATOMIC_RELEASE);   // applied by load(), on the vCPU's CPU
    }
    void retire() override;
    void destroy() override;

    // ---- LoadedVcpu: only while this vCPU is loaded on this CPU ----
    // (Public within this file for exits_detail::handle_exit_t<SvmVcpu>; outside it, only
    // load() hands the interface out.)
    // Where this vCPU is loaded: this CPU's state, checked to be this vCPU's. Once per run(),
    // once per enter() (its loop never leaves the CPU, and nothing unloads the vCPU inside it).
    struct EntryCtx {
        PerCpu &pc;
        u32 cpu;
    };
    EntryCtx entry_context()
    {
        const u32 index = cpu()->index;
        PerCpu &pc = percpu_[index];
        KEEL_BUG_ON(pc.loaded != this);   // only load() hands out this interface
        return {pc, index};
    }
    void run(Gprs &g, ExitInfo &e) override { run_inline(g, e, entry_context(), nullptr); }
    // run(), inlined into enter() too: one frame per exit.
    // With `fast` (the guest's platform), the exits exits_detail::in_or_out and cpuid_fixed
    // answer are handled here: true, and only e.reason is set.
    [[gnu::always_inline]] inline bool run_inline(Gprs &g, ExitInfo &e, const EntryCtx &at, GuestPlatform *fast);
    bool can_inject() override
    {
        Vmcb v = vmcb();
        return (v.q(V::rflags) & (1u << 9)) && !(v.q(V::int_shadow) & 1) && !(v.q(V::eventinj) & (1u << 31)) &&
               !virq_pending(v);
    }
    // External interrupts go in as virtual interrupts (V_IRQ with the vector, TPR ignored), not
    // through EVENTINJ. The guest takes one where it would take a real one (IF set, no interrupt
    // shadow: can_inject), before its first instruction. QEMU TCG (7.2) delivers an EVENTINJ
    // interrupt inside VMRUN but leaves it as its own pending exception, and delivers it a second
    // time if its loop is kicked before the next exit: a guest saw one IPI twice (and hung
    // waiting for the next); V_IRQ is taken by its ordinary interrupt path.
    void inject_interrupt(u8 vector) override { set_virq(vmcb(), vector); }
    void request_window(bool on) override
    {
        // A virtual interrupt the guest accepts as soon as it can, intercepted: that exit is the window.
        // (Not while V_IRQ holds an interrupt not taken yet: what waits behind it is looked at
        // after the next exit, its handler's EOI at the latest.)
        Vmcb v = vmcb();
        if (virq_pending(v)) return;
        if (on) {
            v.q(V::vintr) |= V_IRQ | V_PRIO | V_IGN_TPR;
            v.d(V::intercept_misc1) |= I1_VINTR;
        } else {
            v.q(V::vintr) &= ~(V_IRQ | V_PRIO | V_IGN_TPR);
            v.d(V::intercept_misc1) &= ~I1_VINTR;
        }
    }
    // NMIs without vNMI (absent under QEMU TCG): Keel keeps the guest's NMI blocking (nmi_block_)
    // and intercepts IRET while an NMI is in service (KVM's way).
    bool can_inject_nmi() override
    {
        Vmcb v = vmcb();
        return !nmi_block_.blocked() && !(v.q(V::int_shadow) & 1) && !(v.q(V::eventinj) & (1u << 31));
    }
    void inject_nmi() override
    {
        Vmcb v = vmcb();
        v.q(V::eventinj) = 2 | 2u << 8 | 1u << 31;   // vector 2, type 2 (NMI), valid
        nmi_block_.injected();
        v.d(V::intercept_misc1) |= I1_IRET;
    }
    void request_nmi_window(bool on) override
    {
        // Blocked by an NMI in service: its IRET exits (intercepted), and the exit after that
        // opens the window. Otherwise (an event being injected, an interrupt shadow): exit as soon
        // as the guest takes a virtual interrupt; failing that (IF clear), at the next tick.
        if (on && !nmi_block_.wants_iret_exit()) request_window(true);
    }
    void exit_by(u64) override {}   // the host's 1 ms tick exits the guest (INTR intercept)
    u64 rip() override { return vmcb().q(V::rip); }
    u64 set_rip(u64 rip) override
    {
        Vmcb v = vmcb();
        v.q(V::rip) = rip;
        v.q(V::int_shadow) &= ~1ull;
        // SVM keeps no debug traps across an intercept: a MOV SS's single-step is the one
        // retire_insn delivers after the next instruction.
        return 0;
    }
    bool sti_shadow() override { return vmcb().q(V::int_shadow) & 1; }
    u64 rflags() override { return vmcb().q(V::rflags); }
    u64 dr6() override { return vmcb().q(V::dr6); }
    void set_dr6(u64 v) override { vmcb().q(V::dr6) = v; }
    u64 dr7() override { return vmcb().q(V::dr7); }
    u64 dr(unsigned n) override { return x86::read_dr(n & 3); }   // live while loaded (gstate::ExtState)
    u64 seg_base(x86::Seg s) override { return vmcb().seg_base(V(u16(V::es) + 16 * unsigned(s))); }
    x86::CpuMode mode() override
    {
        Vmcb v = vmcb();
        const u16 cs = v.seg_attr(V::cs);
        return x86::cpu_mode(v.q(V::cr0) & 1, v.q(V::rflags) & (1u << 17), v.q(V::efer) & (1u << 10), cs & (1u << 9),
                             cs & (1u << 10));
    }
    u64 cs_base() override { return vmcb().seg_base(V::cs); }
    // exits_detail::code_at from the VMCB directly: what mode() says, without building the mode.
    exits_detail::CodeAt code_at()
    {
        Vmcb v = vmcb();
        return exits_detail::code_at_regs(v.q(V::rip), v.seg_base(V::cs), v.q(V::cr0), v.q(V::rflags), v.q(V::efer),
                                          v.seg_attr(V::cs));
    }
    u64 cr0() override { return vmcb().q(V::cr0); }
    u64 cr3() override { return vmcb().q(V::cr3); }
    u64 cr2() override { return vmcb().q(V::cr2); }
    u64 cr4() override { return vmcb().q(V::cr4); }
    u64 efer() override { return vmcb().q(V::efer) & ~EFER_SVME; }
    u64 rsp() override { return vmcb().q(V::rsp); }
    void set_rsp(u64 v) override { vmcb().q(V::rsp) = v; }
    u8 cpl() override { return vmcb().at<u8>(V::cpl) & 3; }
    u64 xcr0() override { return ext_.xcr0(); }
    void set_xcr0(u64 v) override { ext_.set_xcr0(v); }
    void set_cr0(u64 v) override { vmcb().q(V::cr0) = v | 0x10; }
    void set_cr4(u64 v) override
    {
        // An emulated MOV to CR4 flushes the guest's TLB as the real one would (PGE, PCIDE, ...).
        Vmcb b = vmcb();
        b.q(V::cr4) = v;
        b.at<u8>(V::tlb_control) = flush_by_asid_ ? 3 : 1;
    }
    void inject_exception(u8 vector, bool has_error, u32 error) override
    {
        // EVENTINJ: vector, type 3 (exception), error-code valid, valid.
        vmcb().q(V::eventinj) = vector | 3u << 8 | (has_error ? 1u << 11 : 0) | 1u << 31 | u64(error) << 32;
    }
    bool arch_rdmsr(u32 msr, u64 &v) override;
    bool arch_wrmsr(u32 msr, u64 v) override;
    u64 tsc() override { return guest_tsc(); }
    void host_cpuid(u32 leaf, u32 sub, u32 out[4]) override
    {
        auto r = x86::cpuid(leaf, sub);
        out[0] = r.a, out[1] = r.b, out[2] = r.c, out[3] = r.d;
    }
    // The exit handlers instantiated for this final class: direct, inlined VMCB accesses.
    ExitOutcome handle(const ExitInfo &e, Gprs &g, GuestPlatform &p, u32 vcpu_index) override
    {
        return exits_detail::handle_exit_t(e, g, *this, p, vcpu_index);
    }
    ExitOutcome enter(const RunGate &gate, Gprs &g, ExitInfo &e, GuestPlatform &p, u32 vcpu_index) override
    {
        return exits_detail::run_until(*this, *this, gate, g, e, p, vcpu_index);
    }

private:
    Vmcb vmcb() { return Vmcb{mm::phys_ptr<u8>(vmcb_pa_)}; }
    static constexpr u64 V_IRQ = 1u << 8, V_PRIO = 0xfu << 16, V_IGN_TPR = 1u << 20, V_VECTOR = 0xffull << 32;
    // V_IRQ holds an interrupt for the guest that it has not taken yet (not a window request,
    // which has the VINTR intercept on); the CPU clears V_IRQ when the guest takes it.
    static bool virq_pending(Vmcb v) { return (v.q(V::vintr) & V_IRQ) && !(v.d(V::intercept_misc1) & I1_VINTR); }
    static void set_virq(Vmcb v, u8 vector)
    {
        v.q(V::vintr) = (v.q(V::vintr) & ~(V_IRQ | V_PRIO | V_IGN_TPR | V_VECTOR)) | V_IRQ | u64(vector >> 4) << 16 |
                        V_IGN_TPR | u64(vector) << 32;
        v.d(V::intercept_misc1) &= ~I1_VINTR;
    }
    // The same vCPU again on the same CPU, nothing flushed since (the common case): its ASID stays.
    [[gnu::always_inline]] void pick_asid(const EntryCtx &at)
    {
        const u64 epoch = __atomic_load_n(&flush_epoch_, __ATOMIC_ACQUIRE);
        if (asid_cpu_ == at.cpu && asid_generation_ == at.pc.asid_generation && at.pc.flush_epoch == epoch)
            return;   // TLB_CONTROL stays as exit handling left it (a flush after an emulated MOV to CR4)
        new_asid(at, epoch);
    }
    void new_asid(const EntryCtx &at, u64 epoch);
    void apply_sipi();
    void reflect(ExitInfo &e, u8 vector, u32 error);

    PhysAddr vmcb_pa_;
    u32 asid_ = 0, asid_generation_ = 0, asid_cpu_ = ~0u;
    u64 tsc_aux_ = 0;
    u64 tsc_offset_ = 0;
    u64 deferred_ = 0;          // an interrupt or NMI interrupted by an intercepted exception: injected after it
    SoftNmiBlocking nmi_block_; // the guest's NMI blocking (the CPU keeps none for it without vNMI)
    gstate::ExtState ext_;
    u8 sipi_vector_ = 0;
    bool sipi_pending_ = false;
};

LoadedVcpu &SvmVcpu::load()
{
    PerCpu &pc = percpu_[cpu()->index];
    if (gstate::load(ext_)) x86::wrmsr(0xc0000103, tsc_aux_);   // TSC_AUX is not in the VMCB
    pc.loaded = this;
    if (__atomic_load_n(&sipi_pending_, __ATOMIC_ACQUIRE)) apply_sipi();
    return *this;
}

void SvmVcpu::apply_sipi()
{
    // Real mode (NPT allows it): CS from the vector, flat 64 KiB data segments, caches as at reset.
    sipi_pending_ = false;
    Vmcb v = vmcb();
    v.seg(V::cs, u16(sipi_vector_) << 8, 0x9b, 0xffff, u64(sipi_vector_) << 12);
    static constexpr V data_segs[] = {V::ds, V::es, V::ss, V::fs, V::gs};
    for (V s : data_segs) v.seg(s, 0, 0x93, 0xffff, 0);
    v.seg(V::gdtr, 0, 0, 0xffff, 0);
    v.seg(V::idtr, 0, 0, 0xffff, 0);
    v.q(V::cr0) = 0x10;
    v.q(V::cr3) = 0;
    v.q(V::cr4) = 0;
    v.q(V::efer) = EFER_SVME;
    v.q(V::rflags) = 2;
    v.q(V::rip) = 0;
    v.q(V::rsp) = 0;
    v.q(V::eventinj) = 0;
    v.q(V::vintr) &= ~(V_IRQ | V_PRIO | V_IGN_TPR | V_VECTOR);   // an interrupt not taken yet, or a window
    v.d(V::intercept_misc1) &= ~I1_VINTR;
    v.q(V::int_shadow) = 0;
    v.at<u8>(V::cpl) = 0;
    nmi_block_.reset();
    v.d(V::intercept_misc1) &= ~I1_IRET;
}

void SvmVcpu::retire()
{
    // Called on this vCPU's CPU: forget its state there, so nothing is compared to a stale address.
    // Whether or not it ever entered the guest (an ASID is picked at the first entry, but load()
    // already made its extended state this CPU's: a vCPU stopped between the two would leave
    // the CPU saving into it after it is freed).
    PerCpu &pc = percpu_[cpu()->index];
    if (pc.loaded == this) pc.loaded = nullptr;
    gstate::forget(ext_);
    asid_cpu_ = ~0u;
}

Status SvmVcpu::setup(const virt::NestedSpace &space, const virt::EntryState &entry, u64 owner)
{
    auto page = mm::alloc_zeroed(0);
    if (!page) return page.error();
    vmcb_pa_ = *page;
    if (auto s = ext_.init(owner, 0); !s) {   // DR6 lives in the VMCB
        mm::free(vmcb_pa_, 0);
        vmcb_pa_ = PhysAddr(0);
        return s;
    }
    Vmcb v = vmcb();

    // #DB (a breakpoint on the delivery of #DB itself would loop in microcode: CVE-2015-8104),
    // #AC (the same with alignment checks), #MC (the host's, never the guest's).
    v.d(V::intercept_exc) = 1u << 1 | 1u << 17 | 1u << 18;
    v.d(V::intercept_cr) = 1u << (16 + 4);        // MOV to CR4: what CPUID hides cannot be enabled
    v.d(V::intercept_misc1) = I1_INTR | I1_NMI | I1_SMI | I1_INIT | I1_RDPMC | I1_CPUID | I1_INVD | I1_HLT |
                              I1_INVLPGA | I1_IOIO | I1_MSR | I1_TASK_SWITCH | I1_SHUTDOWN;
    // XSETBV: intercepted on hardware; QEMU TCG ignores this bit (the guest's XSETBV never exits),
    // so guest_state reads XCR0 back with XGETBV. XSAVES/XRSTORS have no intercept on SVM: CPUID
    // hides them and IA32_XSS stays 0, so they reach the guest's XCR0 components only.
    v.d(V::intercept_misc2) = I2_VMRUN | I2_VMMCALL | I2_VMLOAD | I2_VMSAVE | I2_STGI | I2_CLGI | I2_SKINIT |
                              I2_WBINVD | I2_MONITOR | I2_MWAIT | I2_MWAIT_ARMED | I2_XSETBV | I2_RDPRU;
    v.q(V::iopm) = iopm_.raw();
    v.q(V::msrpm) = msrpm_.raw();
    v.q(V::vintr) = 1u << 24;                     // V_INTR_MASKING: the guest's IF does not mask Keel's interrupts
    v.q(V::np_enable) = 1;
    v.q(V::ncr3) = space.root().raw();

    // Flat segments: 32-bit protected mode (Multiboot), or 64-bit code (Linux).
    const bool lm = entry.mode == virt::EntryState::Mode::long64;
    constexpr u16 CODE32 = 0xc9b, CODE64 = 0xa9b, DATA = 0xc93;
    v.seg(V::cs, entry.cs, lm ? CODE64 : CODE32, 0xffffffff, 0);
    static constexpr V data_segs[] = {V::ds, V::es, V::ss, V::fs, V::gs};
    for (V s : data_segs) v.seg(s, entry.ds, DATA, 0xffffffff, 0);
    v.seg(V::gdtr, 0, 0, entry.gdt_limit, entry.gdt_base);
    v.seg(V::idtr, 0, 0, 0xffff, 0);
    v.seg(V::ldtr, 0, 0x82, 0xffff, 0);
    v.seg(V::tr, 0, 0x8b, 0xffff, 0);
    v.q(V::cr0) = entry.cr0 | 0x10;               // ET is hardwired
    v.q(V::cr3) = entry.cr3;
    v.q(V::cr4) = entry.cr4;
    v.q(V::efer) = entry.efer | EFER_SVME;        // SVME must be set in the guest's EFER (hidden from it)
    v.q(V::rflags) = 2;
    v.q(V::rip) = entry.rip;
    v.q(V::dr6) = 0xffff0ff0;
    v.q(V::dr7) = 0x400;
    v.q(V::g_pat) = 0x0007040600070406ull;        // the architectural reset value
    return {};
}

void SvmVcpu::destroy()
{
    if (vmcb_pa_.raw()) mm::free(vmcb_pa_, 0);
    vmcb_pa_ = PhysAddr(0);
    ext_.free();
}

// ASIDs are handed out per CPU in generations: when a CPU runs out, it flushes
// every ASID and starts over, so a vCPU never runs on stale translations.
void SvmVcpu::new_asid(const EntryCtx &at, u64 epoch)
{
    PerCpu &pc = at.pc;
    Vmcb v = vmcb();
    bool flush_all = false;
    if (pc.flush_epoch != epoch || pc.next_asid > max_asid_ || pc.asid_generation == 0) {
        pc.flush_epoch = epoch;
        pc.asid_generation++;
        pc.next_asid = 1;
        flush_all = true;   // a new generation: no ASID on this CPU may keep stale entries
    }
    asid_ = pc.next_asid++;
    asid_generation_ = pc.asid_generation;
    asid_cpu_ = at.cpu;
    v.d(V::asid) = asid_;
    v.at<u8>(V::tlb_control) = flush_all || !flush_by_asid_ ? 1 : 3;
}

// An exception intercepted while the guest ran goes back to it, combined as the CPU would
// with an event whose delivery it interrupted (combine_events).
void SvmVcpu::reflect(ExitInfo &e, u8 vec, u32 error)
{
    Vmcb v = vmcb();
    e.reason = ExitReason::exception;
    e.vector = vec;
    const u64 pending = v.q(V::eventinj);   // the interrupted event, if any (set from EXITINTINFO)
    v.q(V::eventinj) = 0;
    switch (combine_events(u32(pending), vec)) {
    case EventCombine::shutdown: e.reason = ExitReason::shutdown; return;
    case EventCombine::double_fault: inject_exception(8, true, 0); return;
    case EventCombine::deliver_then_interrupted: deferred_ = u32(pending); break;
    case EventCombine::deliver: break;
    }
    inject_exception(vec, vec == 17 || vec == 8 || (vec >= 10 && vec <= 14), error);
}

// ExitInfo's fields that every exit has.
[[gnu::always_inline]] inline void start_exit_info(ExitInfo &e, u64 code, Vmcb v, u64 pending)
{
    e = ExitInfo{};
    e.raw = code;
    e.next_rip = nrips_ ? v.q(V::nrip) : 0;
    e.in_delivery = pending & (1u << 31);
}

inline bool SvmVcpu::run_inline(Gprs &g, ExitInfo &e, const EntryCtx &at, GuestPlatform *fast)
{
    PerCpu &pc = at.pc;
    Vmcb v = vmcb();
    pick_asid(at);
    v.d(V::clean) = 0;   // Keel does not track clean bits: the CPU reloads everything

    if (deferred_ && !(v.q(V::eventinj) & (1u << 31))) {
        const u8 type = (deferred_ >> 8) & 7;
        if (type != 0) {
            v.q(V::eventinj) = deferred_;
            deferred_ = 0;
        } else if (!virq_pending(v)) {
            // An external interrupt goes in as a virtual one, taken when the guest can (never
            // through EVENTINJ: see inject_interrupt). Behind one not taken yet it waits here.
            set_virq(v, u8(deferred_));
            deferred_ = 0;
        }
    }
    // An external interrupt waiting in EVENTINJ (an interrupted delivery, a deferred one) goes in
    // as a virtual interrupt too (inject_interrupt says why).
    if ((v.q(V::eventinj) & (1u << 31 | 7u << 8)) == 1u << 31) {
        if (!virq_pending(v)) {
            set_virq(v, u8(v.q(V::eventinj)));
            v.q(V::eventinj) = 0;
        } else if (!deferred_) {
            deferred_ = u32(v.q(V::eventinj));   // behind the virtual one not taken yet
            v.q(V::eventinj) = 0;
        }
    }
    v.q(V::rax) = g.rax;
    const Mitigations &mit = gstate::mitigations();
    x86::cli();
    clgi();
    x86::sti();          // interrupts stay pending until GIF=1, and exit the guest (INTR intercept)
    if (mit.verw) {
        u16 sel = SEL_DATA;
        asm volatile("verw %0" : : "m"(sel) : "cc");
    }
    svm_run(vmcb_pa_.raw(), &g, pc.host_vmcb.raw());
    if (mit.rsb_stuff) rsb_fill();
    stgi();              // a pending host interrupt (or NMI, #MC) is taken here, by Keel
    x86::cli();
    g.rax = v.q(V::rax);

    const u64 code = v.q(V::exitcode);
    const u64 info1 = v.q(V::exitinfo1), info2 = v.q(V::exitinfo2);
    if (nmi_block_.state == SoftNmiBlocking::State::iret_seen) nmi_block_.exited_at(v.q(V::rip));
    v.at<u8>(V::tlb_control) = 0;
    // An event being delivered when the exit happened must be delivered again.
    const u64 pending = v.q(V::exitintinfo);
    v.q(V::eventinj) = pending & (1u << 31) ? pending : 0;

    // The exits guests make most first, each on its own branch (a switch is a compare tree:
    // retpolines forbid jump tables; without [[likely]], LLVM merges these into it).
    if (code == EX_NPF) [[likely]] {
        start_exit_info(e, code, v, pending);
        e.reason = ExitReason::npf;
        e.gpa = info2;
        e.write = info1 & 2;
        e.fetch = info1 & 16;
        return false;
    }
    // The fast path (exits_detail::in_or_out says what it takes): IN/OUT and CPUID's fixed
    // leaves, retired here as retire_insn would (RIP, the STI shadow; no #DB: neither TF nor a
    // breakpoint). SVM keeps no MOV SS debug traps across an intercept (set_rip).
    if (fast && (code == EX_IOIO || code == EX_CPUID) && !(pending & (1u << 31)) && !(v.q(V::rflags) & (1u << 8)) &&
        !(v.q(V::dr7) & 0xff)) {
        if (code == EX_IOIO && !(info1 & 4) && exits_detail::io_size_valid((info1 >> 4) & 7)) {
            exits_detail::in_or_out(*fast, g, u16(info1 >> 16), (info1 >> 4) & 7, info1 & 1);
            v.q(V::rip) = info2;   // the next RIP, always provided for IOIO
            v.q(V::int_shadow) &= ~1ull;
            e.reason = ExitReason::io;
            return true;
        }
        if (code == EX_CPUID) {
            u64 nrip = v.q(V::nrip);
            const u32 *leaf = exits_detail::cpuid_fixed(*fast, g);
            if (leaf && (nrips_ || exits_detail::decode_next_rip(*this, *fast, nrip))) {
                exits_detail::cpuid_answer(g, leaf);
                v.q(V::rip) = nrip;
                v.q(V::int_shadow) &= ~1ull;
                e.reason = ExitReason::cpuid;
                return true;
            }
        }
    }

    start_exit_info(e, code, v, pending);
    if (code == EX_IOIO) [[likely]] {
        e.reason = ExitReason::io;
        e.in = info1 & 1;
        e.string = info1 & 4;
        e.rep = info1 & 8;
        e.size = (info1 >> 4) & 7;   // SZ8, SZ16, SZ32 (one bit set): the size in bytes
        if (info1 & 4) e.addr_size = (info1 & 0x80) ? 2 : (info1 & 0x100) ? 4 : 8;
        e.port = u16(info1 >> 16);
        e.next_rip = info2;   // always provided for IOIO
        return false;
    }
    if (code == EX_CPUID) [[likely]] {
        e.reason = ExitReason::cpuid;
        return false;
    }
    switch (code) {
    case EX_HLT: e.reason = ExitReason::hlt; break;
    case EX_MSR: e.reason = info1 ? ExitReason::wrmsr : ExitReason::rdmsr; break;
    case EX_WRITE_CR4:
        e.reason = ExitReason::cr_access;
        e.cr = 4;
        if (info1 & (1ull << 63)) {   // decode assists: the GPR is named
            const unsigned r = info1 & 15;
            e.cr_decoded = true;
            e.cr_value = r == 4 ? v.q(V::rsp) : g[r];
        }
        break;
    case EX_SHUTDOWN: e.reason = ExitReason::shutdown; break;
    case EX_INTR: e.reason = ExitReason::intr; break;
    case EX_VINTR:
        e.reason = ExitReason::irq_window;
        request_window(false);
        break;
    case EX_NMI: e.reason = ExitReason::nmi; break;   // taken by Keel at STGI above
    case EX_IRET:
        // The guest's IRET ends its NMI blocking once it retires (this exit comes before it runs):
        // let it run, and exit again soon after (an interrupt window) to inject what waits.
        nmi_block_.iret_intercepted(v.q(V::rip));
        v.d(V::intercept_misc1) &= ~I1_IRET;
        request_window(true);
        e.reason = ExitReason::irq_window;
        break;
    case EX_VMMCALL: e.reason = ExitReason::vmcall; break;
    case EX_XSETBV: e.reason = ExitReason::xsetbv; break;
    case EX_RDPMC: e.reason = ExitReason::rdpmc; break;
    case EX_INVD: case EX_WBINVD: e.reason = ExitReason::cache_flush; break;
    case EX_MONITOR: case EX_MWAIT: case EX_MWAIT_ARMED: e.reason = ExitReason::monitor; break;
    case EX_INVLPGA: case EX_VMRUN: case EX_VMLOAD: case EX_VMSAVE: case EX_STGI: case EX_CLGI: case EX_SKINIT:
    case EX_RDPRU:
        e.reason = ExitReason::undefined;   // the guest's CPU has no SVM (CPUID): #UD
        break;
    default:
        if (code == EX_INVALID || u32(code) == INVALID32) {
            e.reason = ExitReason::invalid_state;
        } else if (code == EX_EXCP0 + 18) {
            e.reason = ExitReason::machine_check;   // Keel's to report; the guest never sees the host's #MC
            e.vector = 18;
        } else if (code >= EX_EXCP0 && code < EX_EXCP0 + 32) {
            // #DB (DR6 is already in the VMCB) and #AC: intercepted only to break event storms.
            reflect(e, u8(code - EX_EXCP0), u32(info1));
        } else {
            e.reason = ExitReason::other;   // task switch, SMI, INIT
        }
        break;
    }
    return false;
}

bool SvmVcpu::arch_rdmsr(u32 msr, u64 &val)
{
    if (gstate::guest_spec_rdmsr(msr, val)) return true;
    Vmcb v = vmcb();
    if (u16 off = vmcb_msr_offset(msr)) {
        val = *reinterpret_cast<u64 *>(v.p + off);
        return true;
    }
    switch (msr) {
    case 0xc0000103: val = tsc_aux_; return true;
    case 0x48: val = ext_.spec_ctrl(); return true;
    case 0xc0000080: val = v.q(V::efer) & ~EFER_SVME; return true;
    case 0x277: val = v.q(V::g_pat); return true;
    case 0x10: val = guest_tsc(); return true;
    default: return false;
    }
}

bool SvmVcpu::arch_wrmsr(u32 msr, u64 val)
{
    if (gstate::guest_spec_wrmsr(msr, val)) return true;
    Vmcb v = vmcb();
    if (u16 off = vmcb_msr_offset(msr)) {
        *reinterpret_cast<u64 *>(v.p + off) = val;   // VMLOAD puts it in place before the next VMRUN
        return true;
    }
    switch (msr) {
    case 0xc0000103:
        // Not in the VMCB: this vCPU's value is in the register while it is loaded.
        tsc_aux_ = val;
        x86::wrmsr(msr, val);
        return true;
    case 0x48:
        ext_.set_spec_ctrl(val);   // bits checked by the caller against the guest's profile
        return true;
    case 0xc0000080: {
        // SCE, LME, NXE only; LMA is the CPU's to set. LME cannot change while paging is on.
        if (val & ~u64(1 | 1u << 8 | 1u << 10 | 1u << 11)) return false;
        const u64 old = v.q(V::efer);
        if ((v.q(V::cr0) & (1ull << 31)) && ((old ^ val) & (1u << 8))) return false;
        v.q(V::efer) = (val & ~u64(1u << 10)) | (old & (1u << 10)) | EFER_SVME;
        return true;
    }
    case 0x277:
        for (unsigned i = 0; i < 8; i++) {
            u8 t = u8(val >> (8 * i));
            if (t == 2 || t == 3 || t > 7) return false;   // reserved memory types
        }
        v.q(V::g_pat) = val;
        return true;
    case 0x10:
        tsc_offset_ = val - x86::rdtsc();
        v.q(V::tsc_offset) = tsc_offset_;
        return true;
    default:
        return false;
    }
}

} // namespace

const char *unsupported()
{
    if (!(x86::cpuid(0x80000001).c & (1u << 2))) return "the CPU has no SVM";
    if (x86::rdmsr(msr::VM_CR) & (1u << 4)) return "SVM is disabled by the firmware (VM_CR.SVMDIS)";
    if (x86::cpuid(0x80000000).a < 0x8000000a) return "the CPU does not report SVM features";
    if (!(x86::cpuid(0x8000000a).d & 1)) return "the CPU has SVM but no nested paging";
    return nullptr;
}

Status enable_cpu()
{
    Cpu *c = cpu();
    PerCpu &pc = percpu_[c->index];
    if (c->index == 0) {
        auto l = x86::cpuid(0x8000000a);
        max_asid_ = l.b - 1;
        nrips_ = l.d & (1u << 3);
        flush_by_asid_ = l.d & (1u << 6);
        // Shared permission maps: every port and every MSR intercepted, but for VMCB-held MSRs.
        auto io = mm::alloc(2), ms = mm::alloc(1);
        if (!io || !ms) return Err::no_memory;
        iopm_ = *io, msrpm_ = *ms;
        __builtin_memset(mm::phys_ptr<u8>(iopm_), 0xff, 4 * PAGE_SIZE);
        u8 *m = mm::phys_ptr<u8>(msrpm_);
        __builtin_memset(m, 0xff, 2 * PAGE_SIZE);
        static constexpr u32 vmcb_msrs[] = {0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084, 0xc0000100,
                                            0xc0000101, 0xc0000102, 0x174, 0x175, 0x176};
        for (u32 msr : vmcb_msrs) allow_msr_read(m, msr);
    }
    auto hs = mm::alloc_zeroed(0), hv = mm::alloc_zeroed(0);
    if (!hs || !hv) return Err::no_memory;
    pc.hsave = *hs;
    pc.host_vmcb = *hv;
    x86::wrmsr(x86::msr::EFER, x86::rdmsr(x86::msr::EFER) | EFER_SVME);
    x86::wrmsr(msr::VM_HSAVE_PA, pc.hsave.raw());
    // Host state that VMRUN does not switch (FS/GS bases, TR, syscall MSRs) lives in this VMCB.
    asm volatile("vmsave %%rax" : : "a"(pc.host_vmcb.raw()) : "memory");
    return {};
}

virt::ArchVcpu *make_vcpu(void *storage)
{
    static_assert(sizeof(SvmVcpu) <= virt::ARCH_VCPU_STORAGE);
    return new (storage) SvmVcpu();
}

void flush_all() { __atomic_fetch_add(&flush_epoch_, 1, __ATOMIC_RELEASE); }

} // namespace svm

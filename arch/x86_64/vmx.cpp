// Intel VMX (SDM vol. 3C, ch. 23-28): VMXON per CPU, one VMCS per vCPU with
// EPT, VPID and unrestricted guest, the VMLAUNCH/VMRESUME loop and exit decoding.
#include "arch/x86_64/vmx.hpp"

#include "arch/x86_64/cpu.hpp"
#include "arch/x86_64/guest_state.hpp"
#include "arch/x86_64/insn.hpp"
#include "kernel/guest/vcpu_irq.hpp"
#include "kernel/guest/vm_exits_impl.hpp"
#include "kernel/lib/console.hpp"
#include "kernel/lib/new.hpp"
#include "kernel/lib/spinlock.hpp"

extern "C" u64 vmx_run(Gprs *g, u64 launched);
extern "C" char vmx_exit[];

namespace vmx {
namespace {

namespace msr {
constexpr u32 FEATURE_CONTROL = 0x3a, BASIC = 0x480, PINBASED = 0x481, PROCBASED = 0x482, EXIT = 0x483,
              ENTRY = 0x484, CR0_FIXED0 = 0x486, CR0_FIXED1 = 0x487, CR4_FIXED0 = 0x488, CR4_FIXED1 = 0x489,
              PROCBASED2 = 0x48b, EPT_VPID_CAP = 0x48c, TRUE_PINBASED = 0x48d, TRUE_PROCBASED = 0x48e,
              TRUE_EXIT = 0x48f, TRUE_ENTRY = 0x490;
}

// VMCS field encodings (SDM vol. 3D, appendix B).
enum class F : u32 {
    vpid = 0x0000,
    guest_es = 0x0800, guest_cs = 0x0802, guest_ss = 0x0804, guest_ds = 0x0806, guest_fs = 0x0808,
    guest_gs = 0x080a, guest_ldtr = 0x080c, guest_tr = 0x080e,
    host_es = 0x0c00, host_cs = 0x0c02, host_ss = 0x0c04, host_ds = 0x0c06, host_fs = 0x0c08, host_gs = 0x0c0a,
    host_tr = 0x0c0c,
    msr_bitmap = 0x2004, tsc_offset = 0x2010, eptp = 0x201a, guest_phys = 0x2400,
    link = 0x2800, guest_debugctl = 0x2802, guest_pat = 0x2804, guest_efer = 0x2806,
    host_pat = 0x2c00, host_efer = 0x2c02,
    pin = 0x4000, proc = 0x4002, exc_bitmap = 0x4004, cr3_count = 0x400a, exit_ctl = 0x400c,
    exit_msr_store = 0x400e, exit_msr_load = 0x4010, entry_ctl = 0x4012, entry_msr_load = 0x4014,
    entry_intr = 0x4016, entry_error = 0x4018, entry_len = 0x401a, proc2 = 0x401e,
    insn_error = 0x4400, exit_reason = 0x4402, exit_intr = 0x4404, exit_intr_error = 0x4406,
    idt_vectoring = 0x4408, idt_vectoring_error = 0x440a, exit_len = 0x440c,
    guest_es_limit = 0x4800, guest_es_ar = 0x4814, guest_gdtr_limit = 0x4810, guest_idtr_limit = 0x4812,
    guest_interruptibility = 0x4824, guest_activity = 0x4826, guest_sysenter_cs = 0x482a, guest_ss_ar = 0x4818,
    preemption_timer = 0x482e,
    host_sysenter_cs = 0x4c00,
    cr0_mask = 0x6000, cr4_mask = 0x6002, cr0_shadow = 0x6004, cr4_shadow = 0x6006,
    exit_qual = 0x6400,
    guest_cr0 = 0x6800, guest_cr3 = 0x6802, guest_cr4 = 0x6804, guest_es_base = 0x6806, guest_cs_base = 0x6808,
    guest_gdtr_base = 0x6816, guest_idtr_base = 0x6818, guest_dr7 = 0x681a, guest_rsp = 0x681c,
    guest_rip = 0x681e, guest_rflags = 0x6820, guest_sysenter_esp = 0x6824, guest_sysenter_eip = 0x6826,
    guest_fs_base = 0x680e, guest_gs_base = 0x6810, guest_pending_dbg = 0x6822,
    host_cr0 = 0x6c00, host_cr3 = 0x6c02, host_cr4 = 0x6c04, host_fs_base = 0x6c06, host_gs_base = 0x6c08,
    host_tr_base = 0x6c0a, host_gdtr_base = 0x6c0c, host_idtr_base = 0x6c0e, host_sysenter_esp = 0x6c10,
    host_sysenter_eip = 0x6c12, host_rsp = 0x6c14, host_rip = 0x6c16,
};

u64 vmread(F f)
{
    u64 v;
    asm volatile("vmread %1, %0" : "=r"(v) : "r"(u64(f)) : "cc");
    return v;
}

void vmwrite(F f, u64 v) { asm volatile("vmwrite %1, %0" : : "r"(u64(f)), "r"(v) : "cc", "memory"); }

// Segment n (0 = ES .. 7 = TR) of a per-segment field group: encodings step by 2.
F seg(F base, unsigned n) { return F(u32(base) + 2 * n); }

// Controls: set what we want, then apply the CPU's must-be-one/may-be-one bits. False if a wanted bit is not allowed.
bool adjust(u32 want, u32 msr_nr, u32 &out)
{
    u64 caps = x86::rdmsr(msr_nr);
    u32 must = u32(caps), may = u32(caps >> 32);
    out = (want | must) & may;
    return (out & want) == want;
}

struct Invdesc {
    u64 a, b;
};
void invept_all()
{
    Invdesc d{0, 0};
    asm volatile("invept %0, %1" : : "m"(d), "r"(2ull) : "cc", "memory");
}
void invvpid(u64 type, u16 vpid)
{
    Invdesc d{vpid, 0};
    asm volatile("invvpid %0, %1" : : "m"(d), "r"(type) : "cc", "memory");
}

struct PerCpu {
    PhysAddr vmxon;
    const void *current;     // the VMCS loaded with VMPTRLD (by load())
    u64 flush_epoch;
};
PerCpu percpu_[MAX_CPUS];
u32 revision_;
bool true_ctls_;
u64 ept_caps_;
PhysAddr msr_bitmap_;
u64 flush_epoch_ = 1;
u16 next_vpid_ = 1;
Spinlock vpid_lock_;
u32 pin_ctl_, proc_ctl_, proc2_ctl_, exit_ctl_, entry_ctl_;
bool preempt_timer_;      // the VMX-preemption timer: the guest leaves by a deadline Keel sets
bool vnmi_;               // virtual NMIs and NMI-window exiting: the CPU keeps the guest's NMI blocking
unsigned preempt_shift_;  // it counts down at TSC >> this

void allow_msr(u8 *map, u32 msr, bool read, bool write)
{
    u32 base;
    if (msr < 0x2000) base = 0;
    else if (msr >= 0xc0000000 && msr < 0xc0002000) base = 1024, msr -= 0xc0000000;
    else return;
    if (read) map[base + msr / 8] &= u8(~(1u << (msr % 8)));
    if (write) map[2048 + base + msr / 8] &= u8(~(1u << (msr % 8)));
}

// The vCPU as its owner holds it (ArchVcpu) and, privately, as the loaded vCPU (LoadedVcpu). The
// LoadedVcpu base comes first (the primary base): the per-exit call, enter(), needs no
// this-adjusting thunk.
// every VMREAD/VMWRITE is behind load(), which makes this vCPU's VMCS the current one.
class VmxVcpu final : private LoadedVcpu, public virt::ArchVcpu {
public:
    Status setup(const virt::NestedSpace &space, const virt::EntryState &entry, u64 owner) override;
    LoadedVcpu &load() override;
    u64 guest_tsc() const override { return x86::rdtsc() + tsc_offset_; }
    void retire() override;
    void destroy() override;
    void start_at_sipi(u8 vector) override
    {
        sipi_vector_ = vector;
        __atomic_store_n(&sipi_pending_, true, __ATOMIC_RELEASE);   // applied by load(), VMCS current
    }

    // ---- LoadedVcpu: only while this vCPU's VMCS is the current one ----
    // (Public within this file for exits_detail::handle_exit_t<VmxVcpu>; outside it, only
    // load() hands the interface out.)
    // Where this vCPU is loaded: this CPU's state, checked to hold this vCPU's VMCS. Once per
    // run(), once per enter() (its loop never leaves the CPU, and nothing unloads the vCPU inside it).
    PerCpu &entry_context()
    {
        PerCpu &pc = percpu_[cpu()->index];
        KEEL_BUG_ON(pc.current != this);   // only load() hands out this interface, with the VMCS current
        return pc;
    }
    void run(Gprs &g, ExitInfo &e) override { run_inline(g, e, entry_context(), nullptr); }
    // run(), inlined into enter() too: one frame per exit. With `fast` (the guest's platform),
    // the exits exits_detail::in_or_out and cpuid_fixed answer are handled here: true, and only
    // e.reason is set.
    [[gnu::always_inline]] inline bool run_inline(Gprs &g, ExitInfo &e, PerCpu &pc, GuestPlatform *fast);
    // The mask RIP wraps with in the guest's mode (RFLAGS read already).
    u64 rip_wrap(u64 rflags)
    {
        // (code_at_regs takes AMD's 12-bit segment attributes: VMX's L and D, bits 13 and 14, shifted.)
        return exits_detail::code_at_regs(0, 0, vmread(F::guest_cr0), rflags, vmread(F::guest_efer),
                                          u16(vmread(seg(F::guest_es_ar, 1)) >> 4))
            .wrap;
    }
    bool can_inject() override
    {
        return (vmread(F::guest_rflags) & (1u << 9)) && !(vmread(F::guest_interruptibility) & 3) &&
               !(vmread(F::entry_intr) & (1u << 31));
    }
    void inject_interrupt(u8 vector) override { vmwrite(F::entry_intr, vector | 1u << 31); }   // type 0
    static constexpr u32 IRQ_WINDOW = 1u << 2, NMI_WINDOW = 1u << 22;
    static constexpr u64 BLOCK_MOV_SS = 2, BLOCK_NMI = 8;
    void set_windows(u32 w)
    {
        if (w == windows_) return;
        windows_ = w;
        vmwrite(F::proc, proc_ctl_ | w);
    }
    void request_window(bool on) override { set_windows(on ? windows_ | IRQ_WINDOW : windows_ & ~IRQ_WINDOW); }
    // With virtual NMIs the CPU blocks NMIs from the injection to the guest's IRET (the
    // interruptibility state's blocking by NMI) and exits when that ends (NMI-window exiting).
    // Exactly the window's condition (no NMI, no MOV SS blocking; STI blocking does not hold an
    // NMI off at VM entry): an NMI-window exit can always inject, it never exits again in place.
    bool can_inject_nmi() override
    {
        return !(vmread(F::guest_interruptibility) & (BLOCK_MOV_SS | (vnmi_ ? BLOCK_NMI : 0))) &&
               !(vmread(F::entry_intr) & (1u << 31));
    }
    void inject_nmi() override { vmwrite(F::entry_intr, 2 | 2u << 8 | 1u << 31); }
    void request_nmi_window(bool on) override
    {
        if (vnmi_) set_windows(on ? windows_ | NMI_WINDOW : windows_ & ~NMI_WINDOW);
        else if (on) request_window(true);   // no NMI window without virtual NMIs: the next one
    }
    void exit_by(u64 host_tsc) override { exit_by_ = host_tsc; }

    u64 rip() override { return vmread(F::guest_rip); }
    u64 set_rip(u64 rip) override
    {
        vmwrite(F::guest_rip, rip);
        const u64 blocking = vmread(F::guest_interruptibility);
        if (!(blocking & 3)) return 0;
        vmwrite(F::guest_interruptibility, blocking & ~3ull);
        if (!(blocking & BLOCK_MOV_SS)) return 0;
        // A MOV SS held its own debug traps for after this instruction: they become part of the
        // #DB Keel delivers for it (retire_insn), not a second one after the next entry.
        const u64 held = vmread(F::guest_pending_dbg) & 0x400f;
        vmwrite(F::guest_pending_dbg, 0);
        return held;
    }
    u64 dr7() override { return vmread(F::guest_dr7); }
    u64 dr(unsigned n) override { return x86::read_dr(n & 3); }   // live while loaded (gstate::ExtState)
    u64 seg_base(x86::Seg s) override { return vmread(seg(F::guest_es_base, unsigned(s))); }
    bool sti_shadow() override { return vmread(F::guest_interruptibility) & 1; }   // blocking by STI
    u64 rflags() override { return vmread(F::guest_rflags); }
    // VM exits leave the guest's DR6 in the register (switched with the vCPU: gstate::ExtState).
    u64 dr6() override
    {
        u64 v;
        asm volatile("mov %%db6, %0" : "=r"(v));
        return v;
    }
    void set_dr6(u64 v) override { asm volatile("mov %0, %%db6" : : "r"(v)); }
    x86::CpuMode mode() override
    {
        u64 ar = vmread(seg(F::guest_es_ar, 1));
        return x86::cpu_mode(vmread(F::guest_cr0) & 1, vmread(F::guest_rflags) & (1u << 17),
                        vmread(F::guest_efer) & (1u << 10), ar & (1u << 13), ar & (1u << 14));
    }
    u64 cs_base() override { return vmread(F::guest_cs_base); }
    u64 cr0() override { return vmread(F::cr0_shadow) | (vmread(F::guest_cr0) & ~vmread(F::cr0_mask)); }
    u64 cr3() override { return vmread(F::guest_cr3); }
    u64 cr2() override { return x86::read_cr2(); }   // live while loaded (gstate::ExtState)
    u64 cr4() override { return vmread(F::cr4_shadow) | (vmread(F::guest_cr4) & ~vmread(F::cr4_mask)); }
    u64 efer() override { return vmread(F::guest_efer); }
    u64 rsp() override { return vmread(F::guest_rsp); }
    void set_rsp(u64 v) override { vmwrite(F::guest_rsp, v); }
    u8 cpl() override { return u8((vmread(F::guest_ss_ar) >> 5) & 3); }
    u64 xcr0() override { return ext_.xcr0(); }
    void set_xcr0(u64 v) override { ext_.set_xcr0(v); }
    void set_cr0(u64 v) override;
    void set_cr4(u64 v) override
    {
        vmwrite(F::cr4_shadow, v);
        vmwrite(F::guest_cr4, v | cr4_fixed0_);
    }
    void inject_exception(u8 vector, bool has_error, u32 error) override
    {
        vmwrite(F::entry_intr, vector | 3u << 8 | (has_error ? 1u << 11 : 0) | 1u << 31);
        if (has_error) vmwrite(F::entry_error, error);
    }
    bool arch_rdmsr(u32 msr, u64 &v) override;
    bool arch_wrmsr(u32 msr, u64 v) override;
    u64 tsc() override { return guest_tsc(); }
    void host_cpuid(u32 leaf, u32 sub, u32 out[4]) override
    {
        auto r = x86::cpuid(leaf, sub);
        out[0] = r.a, out[1] = r.b, out[2] = r.c, out[3] = r.d;
    }
    // The exit handlers instantiated for this final class: direct, inlined VMREAD/VMWRITEs.
    ExitOutcome handle(const ExitInfo &e, Gprs &g, GuestPlatform &p, u32 vcpu_index) override
    {
        return exits_detail::handle_exit_t(e, g, *this, p, vcpu_index);
    }
    ExitOutcome enter(const RunGate &gate, Gprs &g, ExitInfo &e, GuestPlatform &p, u32 vcpu_index) override
    {
        return exits_detail::run_until(*this, *this, gate, g, e, p, vcpu_index);
    }

private:
    void first_run();
    void apply_sipi();
    void reflect(ExitInfo &e, u64 info);

    PhysAddr vmcs_;
    u64 eptp_ = 0;
    virt::EntryState entry_{};
    u64 cr0_fixed0_ = 0, cr4_fixed0_ = 0;
    u64 tsc_offset_ = 0;
    u64 deferred_ = 0;           // an interrupt or NMI interrupted by an intercepted exception: injected after it
    u32 windows_ = 0;            // IRQ_WINDOW / NMI_WINDOW set in the processor-based controls
    u64 exit_by_ = 0;            // host TSC by which the guest must exit (0: the tick decides)
    gstate::ExtState ext_;
    u16 vpid_ = 0;
    u32 cpu_ = ~0u;
    bool launched_ = false;
    u8 sipi_vector_ = 0;
    bool sipi_pending_ = false;
};

LoadedVcpu &VmxVcpu::load()
{
    Cpu *c = cpu();
    PerCpu &pc = percpu_[c->index];
    if (cpu_ == ~0u) first_run();
    else if (pc.current != this) {
        u64 pa = vmcs_.raw();
        asm volatile("vmptrld %0" : : "m"(pa) : "cc", "memory");
        pc.current = this;
    }
    // State that is neither in the VMCS nor Keel's: this vCPU's, in the registers while it is loaded.
    gstate::load(ext_);
    if (__atomic_load_n(&sipi_pending_, __ATOMIC_ACQUIRE)) apply_sipi();
    return *this;
}

// Real mode at vector:0000 (unrestricted guest), as an application processor wakes up.
void VmxVcpu::apply_sipi()
{
    sipi_pending_ = false;
    vmwrite(F::guest_cr0, 0x10 | cr0_fixed0_);
    vmwrite(F::cr0_shadow, 0x10);
    vmwrite(F::guest_cr4, cr4_fixed0_);
    vmwrite(F::cr4_shadow, 0);
    vmwrite(F::guest_cr3, 0);
    vmwrite(F::guest_efer, 0);
    vmwrite(F::entry_ctl, entry_ctl_);
    for (unsigned s = 0; s < 6; s++) {
        vmwrite(seg(F::guest_es, s), s == 1 ? u16(sipi_vector_) << 8 : 0);
        vmwrite(seg(F::guest_es_base, s), s == 1 ? u64(sipi_vector_) << 12 : 0);
        vmwrite(seg(F::guest_es_limit, s), 0xffff);
        vmwrite(seg(F::guest_es_ar, s), s == 1 ? 0x9b : 0x93);
    }
    vmwrite(F::guest_gdtr_base, 0);
    vmwrite(F::guest_gdtr_limit, 0xffff);
    vmwrite(F::guest_idtr_base, 0);
    vmwrite(F::guest_idtr_limit, 0xffff);
    vmwrite(F::guest_rip, 0);
    vmwrite(F::guest_rsp, 0);
    vmwrite(F::guest_rflags, 2);
    vmwrite(F::guest_interruptibility, 0);
    vmwrite(F::entry_intr, 0);
}

Status VmxVcpu::setup(const virt::NestedSpace &space, const virt::EntryState &entry, u64 owner)
{
    auto page = mm::alloc_zeroed(0);
    if (!page) return page.error();
    vmcs_ = *page;
    // VM exits leave the guest's DR6, CR2 and SYSCALL MSRs in the registers.
    if (auto s = ext_.init(owner, gstate::ExtState::live_dr6 | gstate::ExtState::live_cr2 |
                                                gstate::ExtState::live_syscall_msrs); !s) {
        mm::free(vmcs_, 0);
        vmcs_ = PhysAddr(0);
        return s;
    }
    cr0_fixed0_ = x86::rdmsr(msr::CR0_FIXED0) & ~u64(1 | 1ull << 31);   // PE, PG are free with UG
    cr4_fixed0_ = x86::rdmsr(msr::CR4_FIXED0);
    *mm::phys_ptr<u32>(vmcs_) = revision_;
    eptp_ = EptFormat::eptp(space.root());
    entry_ = entry;
    Guard g(vpid_lock_);
    vpid_ = next_vpid_;
    next_vpid_ = next_vpid_ == 0xffff ? 1 : next_vpid_ + 1;
    return {};
}

// A VMCS may be cached by the CPU it is active on: only that CPU may VMCLEAR it,
// and only then may its page be reused.
void VmxVcpu::retire()
{
    if (cpu_ == ~0u) return;
    u64 pa = vmcs_.raw();
    asm volatile("vmclear %0" : : "m"(pa) : "cc", "memory");
    PerCpu &pc = percpu_[cpu_];
    if (pc.current == this) pc.current = nullptr;
    gstate::forget(ext_);
    cpu_ = ~0u;
    launched_ = false;
}

void VmxVcpu::destroy()
{
    if (vmcs_.raw()) mm::free(vmcs_, 0);
    vmcs_ = PhysAddr(0);
    ext_.free();
}

// The VMCS is filled on the CPU the vCPU runs on (host state is per CPU); a vCPU never migrates.
void VmxVcpu::first_run()
{
    Cpu *c = cpu();
    cpu_ = c->index;
    u64 pa = vmcs_.raw();
    asm volatile("vmclear %0" : : "m"(pa) : "cc", "memory");
    asm volatile("vmptrld %0" : : "m"(pa) : "cc", "memory");
    percpu_[c->index].current = this;

    vmwrite(F::pin, pin_ctl_);
    vmwrite(F::proc, proc_ctl_ | windows_);
    vmwrite(F::proc2, proc2_ctl_);
    vmwrite(F::exit_ctl, exit_ctl_);
    vmwrite(F::entry_ctl, entry_ctl_);
    // #DB (a breakpoint on the delivery of #DB itself loops in microcode: CVE-2015-8104), #AC (the
    // same with alignment checks), #MC (the host's, never the guest's).
    vmwrite(F::exc_bitmap, 1u << 1 | 1u << 17 | 1u << 18);
    vmwrite(F::cr3_count, 0);
    vmwrite(F::exit_msr_store, 0);
    vmwrite(F::exit_msr_load, 0);
    vmwrite(F::entry_msr_load, 0);
    vmwrite(F::msr_bitmap, msr_bitmap_.raw());
    vmwrite(F::eptp, eptp_);
    vmwrite(F::vpid, vpid_);
    vmwrite(F::link, ~0ull);

    // Host state: this CPU's.
    vmwrite(F::host_cr0, x86::read_cr0());
    vmwrite(F::host_cr3, x86::read_cr3());
    vmwrite(F::host_cr4, x86::read_cr4());
    vmwrite(F::host_cs, SEL_CODE64);
    vmwrite(F::host_ss, SEL_DATA);
    vmwrite(F::host_ds, SEL_DATA);
    vmwrite(F::host_es, SEL_DATA);
    vmwrite(F::host_fs, 0);
    vmwrite(F::host_gs, 0);
    vmwrite(F::host_tr, SEL_TSS);
    vmwrite(F::host_fs_base, 0);
    vmwrite(F::host_gs_base, reinterpret_cast<u64>(c));
    vmwrite(F::host_tr_base, reinterpret_cast<u64>(&c->tss));
    vmwrite(F::host_gdtr_base, reinterpret_cast<u64>(c->gdt));
    struct [[gnu::packed]] { u16 limit; u64 base; } idtr;
    asm volatile("sidt %0" : "=m"(idtr));
    vmwrite(F::host_idtr_base, idtr.base);
    vmwrite(F::host_sysenter_cs, 0);
    vmwrite(F::host_sysenter_esp, 0);
    vmwrite(F::host_sysenter_eip, 0);
    vmwrite(F::host_efer, x86::rdmsr(x86::msr::EFER));
    vmwrite(F::host_pat, x86::rdmsr(x86::msr::PAT));
    vmwrite(F::host_rip, reinterpret_cast<u64>(vmx_exit));

    // Guest: 32-bit protected mode, flat, paging off (unrestricted guest), or 64-bit code.
    const bool lm = entry_.mode == virt::EntryState::Mode::long64;
    vmwrite(F::guest_cr0, entry_.cr0 | 0x10 | cr0_fixed0_);
    vmwrite(F::cr0_mask, cr0_fixed0_);             // bits the CPU insists on: the guest sees its own view
    vmwrite(F::cr0_shadow, entry_.cr0 | 0x10);
    vmwrite(F::guest_cr4, entry_.cr4 | cr4_fixed0_);
    // Owned by Keel: what the CPU insists on, and what the guest's CPU profile hides (a MOV
    // that sets one exits and gets #GP).
    vmwrite(F::cr4_mask, cr4_fixed0_ | entry_.cr4_reserved);
    vmwrite(F::cr4_shadow, entry_.cr4);
    vmwrite(F::guest_cr3, entry_.cr3);
    vmwrite(F::entry_ctl, lm ? entry_ctl_ | (1u << 9) : entry_ctl_);   // IA-32e mode guest
    for (unsigned s = 0; s < 6; s++) {
        vmwrite(seg(F::guest_es, s), s == 1 ? entry_.cs : entry_.ds);
        vmwrite(seg(F::guest_es_base, s), 0);
        vmwrite(seg(F::guest_es_limit, s), 0xffffffff);
        vmwrite(seg(F::guest_es_ar, s), s == 1 ? (lm ? 0xa09b : 0xc09b) : 0xc093);
    }
    vmwrite(F::guest_ldtr, 0);
    vmwrite(seg(F::guest_es_base, 6), 0);
    vmwrite(seg(F::guest_es_limit, 6), 0);
    vmwrite(seg(F::guest_es_ar, 6), 1u << 16);     // unusable
    vmwrite(F::guest_tr, 0);
    vmwrite(seg(F::guest_es_base, 7), 0);
    vmwrite(seg(F::guest_es_limit, 7), 0x67);
    vmwrite(seg(F::guest_es_ar, 7), 0x8b);
    vmwrite(F::guest_gdtr_base, entry_.gdt_base);
    vmwrite(F::guest_gdtr_limit, entry_.gdt_limit);
    vmwrite(F::guest_idtr_base, 0);
    vmwrite(F::guest_idtr_limit, 0xffff);
    vmwrite(F::guest_dr7, 0x400);
    vmwrite(F::guest_rsp, 0);
    vmwrite(F::guest_rip, entry_.rip);
    vmwrite(F::guest_rflags, 2);
    vmwrite(F::guest_interruptibility, 0);
    vmwrite(F::guest_activity, 0);
    vmwrite(F::guest_sysenter_cs, 0);
    vmwrite(F::guest_sysenter_esp, 0);
    vmwrite(F::guest_sysenter_eip, 0);
    vmwrite(F::guest_debugctl, 0);
    vmwrite(F::guest_pat, 0x0007040600070406ull);
    vmwrite(F::guest_efer, entry_.efer);
    vmwrite(F::tsc_offset, 0);
    vmwrite(F::entry_intr, 0);
    // The VPID may have been used before on this CPU by a vCPU that is gone.
    invvpid(1, vpid_);
}

// A MOV to CR0 that changed a bit Keel owns, checked by the exit handler: the shadow takes the
// guest's value, the real CR0 adds what VMX needs; paging on/off with LME switches IA-32e mode.
void VmxVcpu::set_cr0(u64 v)
{
    const u64 old = cr0();
    vmwrite(F::cr0_shadow, v);
    vmwrite(F::guest_cr0, v | cr0_fixed0_);
    constexpr u64 PG = 1ull << 31;
    if ((old ^ v) & PG) {
        u64 efer = vmread(F::guest_efer);
        const bool lma = (v & PG) && (efer & (1u << 8));
        efer = lma ? efer | (1u << 10) : efer & ~u64(1u << 10);
        vmwrite(F::guest_efer, efer);
        vmwrite(F::entry_ctl, lma ? entry_ctl_ | (1u << 9) : entry_ctl_ & ~(1u << 9));
    }
}

// An exception intercepted while the guest ran goes back to it, combined as the CPU would with
// an event whose delivery it interrupted (combine_events).
void VmxVcpu::reflect(ExitInfo &e, u64 info)
{
    const u8 vec = u8(info), type = (info >> 8) & 7;
    e.reason = ExitReason::exception;
    e.vector = vec;
    if (vec == 1 && type == 3) {
        // A #DB that exits leaves DR6 alone: the exit qualification has what the CPU would have put
        // there (B0-B3 replaced, BD and BS added; RTM is active-low).
        const u64 qual = vmread(F::exit_qual);
        u64 dr6;
        asm volatile("mov %%db6, %0" : "=r"(dr6));
        dr6 = (dr6 & ~u64(0xf)) | 0xffff0ff0 | (qual & 0x600f);
        if (qual & (1u << 16)) dr6 &= ~u64(1u << 16);
        asm volatile("mov %0, %%db6" : : "r"(dr6));
    }
    const u64 pending = vmread(F::entry_intr);   // the interrupted event, if any (from IDT-vectoring)
    vmwrite(F::entry_intr, 0);
    switch (combine_events(u32(pending), vec)) {
    case EventCombine::shutdown: e.reason = ExitReason::shutdown; return;
    case EventCombine::double_fault: inject_exception(8, true, 0); return;
    case EventCombine::deliver_then_interrupted: deferred_ = u32(pending); break;   // no error code
    case EventCombine::deliver: break;
    }
    // Same type as it came (ICEBP is a privileged software exception: its length goes along).
    u32 inj = u32(info & (0xff | 7u << 8 | 1u << 11)) | 1u << 31;
    vmwrite(F::entry_intr, inj);
    if (info & (1u << 11)) vmwrite(F::entry_error, vmread(F::exit_intr_error));
    if (type >= 4) vmwrite(F::entry_len, vmread(F::exit_len));
}

inline bool VmxVcpu::run_inline(Gprs &g, ExitInfo &e, PerCpu &pc, GuestPlatform *fast)
{
    if (pc.flush_epoch != __atomic_load_n(&flush_epoch_, __ATOMIC_ACQUIRE)) {
        pc.flush_epoch = __atomic_load_n(&flush_epoch_, __ATOMIC_ACQUIRE);
        invept_all();
        invvpid(2, 0);
    }
    if (deferred_ && !(vmread(F::entry_intr) & (1u << 31))) {
        const u8 type = (deferred_ >> 8) & 7;
        if (type != 0 || can_inject()) {
            vmwrite(F::entry_intr, deferred_);
            deferred_ = 0;
        } else {
            request_window(true);
        }
    }
    const Mitigations &mit = gstate::mitigations();

    x86::cli();
    if (preempt_timer_) {
        const u64 now = x86::rdtsc();
        const u64 left = exit_by_ > now ? (exit_by_ - now) >> preempt_shift_ : 0;
        vmwrite(F::preemption_timer, min<u64>(left, 0xffffffff));
    }
    if (mit.flush_l1d) x86::wrmsr(0x10b, 1);   // L1TF: nothing of Keel's or another guest's left in L1D
    else if (mit.verw) {
        u16 sel = SEL_DATA;
        asm volatile("verw %0" : : "m"(sel) : "cc");
    }
    u64 failed = vmx_run(&g, launched_);
    if (mit.rsb_stuff) rsb_fill();
    // An external interrupt that caused the exit is taken here: STI holds interrupts off for one
    // more instruction, so the NOP is the window (with "sti; cli" it would never open).
    asm volatile("sti; nop; cli" ::: "memory");
    if (failed) {
        e = ExitInfo{};
        e.reason = ExitReason::invalid_state;
        e.raw = 0x10000 | vmread(F::insn_error);
        return false;
    }
    launched_ = true;
    const u64 reason = vmread(F::exit_reason);

    // The fast path (exits_detail::in_or_out says what it takes): IN/OUT and CPUID's fixed
    // leaves. Neither exits while an event is being delivered (no IDT-vectoring information:
    // SDM vol. 3 28.2.4). Retired here as retire_insn would: RIP, the STI shadow; with a MOV SS
    // shadow (the debug traps it holds), TF or an enabled breakpoint, the full path.
    if (fast && (reason == 30 || reason == 10)) {
        const u64 rflags = vmread(F::guest_rflags), blocking = vmread(F::guest_interruptibility);
        if (!(rflags & (1u << 8)) && !(blocking & BLOCK_MOV_SS) && !(vmread(F::guest_dr7) & 0xff)) {
            bool done = false;
            if (reason == 30) {
                const u64 qual = vmread(F::exit_qual);
                const u8 size = u8((qual & 7) + 1);
                if (!(qual & 16) && exits_detail::io_size_valid(size)) {
                    exits_detail::in_or_out(*fast, g, u16(qual >> 16), size, qual & 8);
                    done = true;
                }
            } else if (const u32 *leaf = exits_detail::cpuid_fixed(*fast, g)) {
                exits_detail::cpuid_answer(g, leaf);
                done = true;
            }
            if (done) {
                vmwrite(F::guest_rip, (vmread(F::guest_rip) + vmread(F::exit_len)) & rip_wrap(rflags));
                if (blocking & 1) vmwrite(F::guest_interruptibility, blocking & ~1ull);
                e.reason = reason == 30 ? ExitReason::io : ExitReason::cpuid;
                return true;
            }
        }
    }

    e = ExitInfo{};
    e.raw = reason;
    if (reason & (1u << 31)) {   // the entry failed: invalid guest state (33), MSR loading (34), #MC (41)
        e.reason = (reason & 0xffff) == 41 ? ExitReason::machine_check : ExitReason::invalid_state;
        return false;
    }
    // An event being delivered when the exit happened must be delivered again (software events
    // with their instruction length).
    const u64 vect = vmread(F::idt_vectoring);
    if (vect & (1u << 31)) {
        vmwrite(F::entry_intr, vect & ~u64(1u << 12));
        if (vect & (1u << 11)) vmwrite(F::entry_error, vmread(F::idt_vectoring_error));
        const u8 type = (vect >> 8) & 7;
        if (type >= 4) vmwrite(F::entry_len, vmread(F::exit_len));
        e.in_delivery = true;
    }
    // (The exit qualification only for the exits that have one Keel uses: CR access, I/O, EPT.)
    // EPT violations (MMIO) first, on a branch of their own: the switch is a compare tree
    // (retpolines forbid jump tables).
    if ((reason & 0xffff) == 48) [[likely]] {
        const u64 qual = vmread(F::exit_qual);
        // An IRET that touched unmapped memory runs again (or is emulated), still blocked.
        if (vnmi_ && (qual & (1u << 12)) && !(vect & (1u << 31)))
            vmwrite(F::guest_interruptibility, vmread(F::guest_interruptibility) | BLOCK_NMI);
        e.reason = ExitReason::npf;
        e.gpa = vmread(F::guest_phys);
        e.write = qual & 2;
        e.fetch = qual & 4;
        return false;
    }
    switch (reason & 0xffff) {
    case 0: {   // exception or NMI
        const u64 info = vmread(F::exit_intr);
        if (((info >> 8) & 7) == 2) {
            // The host's NMI caused the exit and is blocked, not delivered: run Keel's handler now.
            e.reason = ExitReason::nmi;
            asm volatile("int $2" ::: "memory");
        } else if (u8(info) == 18) {
            e.reason = ExitReason::machine_check;   // Keel's to report; the guest never sees the host's #MC
            e.vector = 18;
        } else {
            // A fault in the guest's IRET undid its NMI unblocking: the IRET runs again, blocked.
            if (vnmi_ && (info & (1u << 12)) && !(vect & (1u << 31)))
                vmwrite(F::guest_interruptibility, vmread(F::guest_interruptibility) | BLOCK_NMI);
            reflect(e, info);   // #DB, #AC: intercepted only to break event storms
        }
        return false;
    }
    case 1: case 52: e.reason = ExitReason::intr; return false;   // a host interrupt, or the preemption timer
    case 7:
        e.reason = ExitReason::irq_window;
        request_window(false);
        return false;
    case 8:   // NMI window: the guest's IRET ended its NMI blocking
        e.reason = ExitReason::irq_window;
        request_nmi_window(false);
        return false;
    case 2: e.reason = ExitReason::shutdown; return false;
    case 10: e.reason = ExitReason::cpuid; break;
    case 12: e.reason = ExitReason::hlt; break;
    case 13: case 54: e.reason = ExitReason::cache_flush; break;   // INVD, WBINVD
    case 15: e.reason = ExitReason::rdpmc; break;
    case 18: e.reason = ExitReason::vmcall; break;
    case 19: case 20: case 21: case 22: case 23: case 24: case 25: case 26: case 27: case 50: case 53:
        e.reason = ExitReason::undefined;   // VMX instructions, INVEPT, INVVPID: the guest has no VMX
        break;
    case 28: {
        const u64 qual = vmread(F::exit_qual);
        const unsigned cr = qual & 15, type = (qual >> 4) & 3, reg = (qual >> 8) & 15;
        e.reason = ExitReason::cr_access;
        if (type != 0 || (cr != 0 && cr != 4)) return false;   // only MOV to CR0/CR4 can exit here
        e.cr = u8(cr);
        e.cr_decoded = true;
        e.cr_value = reg == 4 ? vmread(F::guest_rsp) : g[reg];
        break;
    }
    case 30: {
        const u64 qual = vmread(F::exit_qual);
        e.reason = ExitReason::io;
        e.size = u8((qual & 7) + 1);
        e.in = qual & 8;
        e.string = qual & 16;
        e.rep = qual & 32;
        e.port = u16(qual >> 16);   // addr_size: below, from the mode read once
        break;
    }
    case 31: e.reason = ExitReason::rdmsr; break;
    case 32: e.reason = ExitReason::wrmsr; break;
    case 33: e.reason = ExitReason::invalid_state; return false;
    case 36: case 39: e.reason = ExitReason::monitor; break;   // MWAIT, MONITOR
    case 55: e.reason = ExitReason::xsetbv; break;
    default: e.reason = ExitReason::other; return false;
    }
    // Instruction exits: the CPU tells us the length.
    e.next_rip = rip() + vmread(F::exit_len);
    const x86::CpuMode m = mode();
    if (m == x86::CpuMode::prot32) e.next_rip &= 0xffffffff;
    else if (m != x86::CpuMode::long64) e.next_rip &= 0xffff;
    if (e.reason == ExitReason::io) e.addr_size = m == x86::CpuMode::long64 ? 8 : m == x86::CpuMode::prot32 ? 4 : 2;
    return false;
}

bool VmxVcpu::arch_rdmsr(u32 msr, u64 &v)
{
    if (gstate::guest_spec_rdmsr(msr, v)) return true;
    switch (msr) {
    case 0xc0000080: v = vmread(F::guest_efer); return true;
    case 0x277: v = vmread(F::guest_pat); return true;
    case 0x10: v = guest_tsc(); return true;
    case 0x48: v = ext_.spec_ctrl(); return true;
    case 0xc0000100: v = vmread(F::guest_fs_base); return true;
    case 0xc0000101: v = vmread(F::guest_gs_base); return true;
    case 0x174: v = vmread(F::guest_sysenter_cs); return true;
    case 0x175: v = vmread(F::guest_sysenter_esp); return true;
    case 0x176: v = vmread(F::guest_sysenter_eip); return true;
    }
    return ext_.syscall_rdmsr(msr, v);
}

bool VmxVcpu::arch_wrmsr(u32 msr, u64 v)
{
    if (gstate::guest_spec_wrmsr(msr, v)) return true;
    switch (msr) {
    case 0x48: ext_.set_spec_ctrl(v); return true;   // bits checked by the caller against the profile
    case 0xc0000080: {
        if (v & ~u64(1 | 1u << 8 | 1u << 10 | 1u << 11)) return false;
        // LME cannot change while paging is on.
        if ((cr0() & (1ull << 31)) && ((vmread(F::guest_efer) ^ v) & (1u << 8))) return false;
        // LMA follows LME once paging is on; the entry control must agree with it.
        u64 lma = (v & (1u << 8)) && (vmread(F::guest_cr0) & (1ull << 31)) ? 1u << 10 : 0;
        vmwrite(F::guest_efer, (v & ~u64(1u << 10)) | lma);
        vmwrite(F::entry_ctl, lma ? entry_ctl_ | (1u << 9) : entry_ctl_ & ~(1u << 9));
        return true;
    }
    case 0x277:
        for (unsigned i = 0; i < 8; i++) {
            u8 t = u8(v >> (8 * i));
            if (t == 2 || t == 3 || t > 7) return false;
        }
        vmwrite(F::guest_pat, v);
        return true;
    case 0x10:
        tsc_offset_ = v - x86::rdtsc();
        vmwrite(F::tsc_offset, tsc_offset_);
        return true;
    }
    return ext_.syscall_wrmsr(msr, v);   // in the registers while this vCPU is loaded
}

} // namespace

const char *unsupported()
{
    if (!(x86::cpuid(1).c & (1u << 5))) return "the CPU has no VMX";
    u64 fc = x86::rdmsr(msr::FEATURE_CONTROL);
    if ((fc & 1) && !(fc & 4)) return "VMX is disabled by the firmware (IA32_FEATURE_CONTROL locked without VMX)";
    u64 basic = x86::rdmsr(msr::BASIC);
    true_ctls_ = basic & (1ull << 55);
    revision_ = u32(basic & 0x7fffffff);
    bool ok = adjust(1u << 0 | 1u << 3, true_ctls_ ? msr::TRUE_PINBASED : msr::PINBASED, pin_ctl_);
    u32 with_timer;
    if (ok && adjust(pin_ctl_ | 1u << 6, true_ctls_ ? msr::TRUE_PINBASED : msr::PINBASED, with_timer)) {
        // Timers are not left to the host's interrupt alone (Bochs does not exit a running guest
        // for it): the guest exits by the earliest deadline of this CPU's vCPUs, or the tick.
        pin_ctl_ = with_timer;
        preempt_timer_ = true;
        preempt_shift_ = unsigned(x86::rdmsr(0x485) & 0x1f);   // IA32_VMX_MISC
    }
    // Virtual NMIs (with NMI exiting) and NMI-window exiting: NMIs for the guest, blocked by the CPU.
    {
        u32 pin, proc;
        vnmi_ = ok && adjust(pin_ctl_ | 1u << 5, true_ctls_ ? msr::TRUE_PINBASED : msr::PINBASED, pin) &&
                adjust(1u << 22, true_ctls_ ? msr::TRUE_PROCBASED : msr::PROCBASED, proc);
        if (vnmi_) pin_ctl_ = pin;
    }
    // HLT, unconditional I/O, MSR bitmaps, secondary controls; no CR3 exits (EPT).
    // HLT, MWAIT, RDPMC, unconditional I/O, MSR bitmaps, MONITOR, secondary controls.
    u32 want_proc = 1u << 7 | 1u << 10 | 1u << 11 | 1u << 24 | 1u << 28 | 1u << 29 | 1u << 31;
    if (!adjust(want_proc, true_ctls_ ? msr::TRUE_PROCBASED : msr::PROCBASED, proc_ctl_) || !ok)
        return "VMX lacks basic controls (HLT/I/O exiting, MSR bitmaps, secondary controls)";
    // EPT, RDTSCP, VPID, unrestricted guest.
    // EPT, VPID, WBINVD exiting, unrestricted guest.
    if (!adjust(1u << 1 | 1u << 5 | 1u << 6 | 1u << 7, msr::PROCBASED2, proc2_ctl_))
        return "VMX lacks EPT, VPID, WBINVD exiting or unrestricted guest";
    // RDTSCP and INVPCID: without their enables they raise #UD in the guest although CPUID shows them.
    u32 more;
    if (adjust(proc2_ctl_ | 1u << 3, msr::PROCBASED2, more)) proc2_ctl_ = more;
    if (adjust(proc2_ctl_ | 1u << 12, msr::PROCBASED2, more)) proc2_ctl_ = more;
    // "Enable XSAVES/XRSTORS" (bit 20) stays clear, so both are #UD in a guest: CPUID hides
    // them (0xD.1 EAX[3]) and Keel does not virtualise IA32_XSS. A CPU that forces it on would
    // let a guest reach supervisor states through Keel's IA32_XSS.
    if (proc2_ctl_ & 1u << 20) return "VMX forces XSAVES/XRSTORS on (Keel does not virtualise IA32_XSS)";
    // Save debug controls (the guest's DR7), 64-bit host, save/load PAT and EFER.
    if (!adjust(1u << 2 | 1u << 9 | 1u << 18 | 1u << 19 | 1u << 20 | 1u << 21, true_ctls_ ? msr::TRUE_EXIT : msr::EXIT,
                exit_ctl_))
        return "VMX lacks the exit controls Keel needs";
    // Load debug controls, PAT and EFER.
    if (!adjust(1u << 2 | 1u << 14 | 1u << 15, true_ctls_ ? msr::TRUE_ENTRY : msr::ENTRY, entry_ctl_))
        return "VMX lacks the entry controls Keel needs";
    ept_caps_ = x86::rdmsr(msr::EPT_VPID_CAP);
    if (!(ept_caps_ & (1u << 6)) || !(ept_caps_ & (1u << 14))) return "EPT lacks 4-level walks or write-back";
    if (!(ept_caps_ & (1u << 20)) || !(ept_caps_ & (1u << 26)) || !(ept_caps_ & (1ull << 32)) ||
        !(ept_caps_ & (1ull << 42)) || !(ept_caps_ & (1ull << 41)))
        return "INVEPT/INVVPID lack the all-context or single-context types";
    return nullptr;
}

Status enable_cpu()
{
    Cpu *c = cpu();
    PerCpu &pc = percpu_[c->index];
    if (c->index == 0) {
        auto mb = mm::alloc(0);
        if (!mb) return Err::no_memory;
        msr_bitmap_ = *mb;
        u8 *m = mm::phys_ptr<u8>(msr_bitmap_);
        __builtin_memset(m, 0xff, PAGE_SIZE);
        // Guest state held in the VMCS: reads and writes go straight to it.
        static constexpr u32 vmcs_msrs[] = {0xc0000100, 0xc0000101, 0x174, 0x175, 0x176};
        for (u32 msr : vmcs_msrs) allow_msr(m, msr, true, true);
    }
    u64 fc = x86::rdmsr(msr::FEATURE_CONTROL);
    if (!(fc & 1)) x86::wrmsr(msr::FEATURE_CONTROL, fc | 1 | 4);   // unlocked: enable VMX and lock
    u64 cr0 = (x86::read_cr0() | x86::rdmsr(msr::CR0_FIXED0)) & x86::rdmsr(msr::CR0_FIXED1);
    u64 cr4 = (x86::read_cr4() | x86::cr4::VMXE | x86::rdmsr(msr::CR4_FIXED0)) & x86::rdmsr(msr::CR4_FIXED1);
    x86::write_cr0(cr0);
    x86::write_cr4(cr4);
    auto r = mm::alloc_zeroed(0);
    if (!r) return Err::no_memory;
    pc.vmxon = *r;
    *mm::phys_ptr<u32>(pc.vmxon) = revision_;
    u64 pa = pc.vmxon.raw();
    bool fail;
    asm volatile("vmxon %1" : "=@ccbe"(fail) : "m"(pa) : "memory");
    if (fail) return Err::unsupported;
    invept_all();
    invvpid(2, 0);
    return {};
}

virt::ArchVcpu *make_vcpu(void *storage)
{
    static_assert(sizeof(VmxVcpu) <= virt::ARCH_VCPU_STORAGE);
    return new (storage) VmxVcpu();
}

void flush_all() { __atomic_fetch_add(&flush_epoch_, 1, __ATOMIC_RELEASE); }

unsigned ept_max_leaf_level() { return (ept_caps_ & (1u << 17)) ? 3 : (ept_caps_ & (1u << 16)) ? 2 : 1; }

} // namespace vmx

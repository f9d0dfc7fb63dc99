// The arch-neutral view of a virtual CPU: saved registers, exits normalised to
// common reasons, per-vCPU accounting, and the seam (VcpuOps) through which
// exit handlers written once reach the SVM or VMX specifics.
#pragma once

#include "kernel/guest/x86_decode.hpp"
#include "kernel/lib/result.hpp"
#include "kernel/lib/types.hpp"

// General-purpose registers in x86 encoding order (RSP's slot is unused: the
// hardware keeps the guest RSP in the VMCB/VMCS).
struct Gprs {
    u64 rax, rcx, rdx, rbx, rsp_unused, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15;
    u64 &operator[](unsigned i) { return (&rax)[i & 15]; }
};
static_assert(sizeof(Gprs) == 16 * 8);

enum class ExitReason : u8 {
    cpuid, hlt, io, rdmsr, wrmsr, npf, shutdown, intr, nmi, vmcall, cr_access, exception, xsetbv,
    irq_window, invalid_state, other,
    cache_flush,     // WBINVD, INVD: emulated as no-ops (INVD would drop other guests' dirty lines)
    monitor,         // MONITOR, MWAIT: hidden in CPUID, #UD
    rdpmc,           // no PMU is virtualised
    undefined,       // instructions the guest's CPU does not have (SVM's own, INVLPGA, VMX's): #UD
    machine_check,   // a host #MC while the guest ran: Keel's, never the guest's
    count
};
const char *exit_reason_name(ExitReason r);

struct ExitInfo {
    // (The small fields first, packed: clearing one for each exit takes a few wide stores.)
    ExitReason reason = ExitReason::other;
    // io
    u8 size = 0;          // 1, 2, 4
    bool in = false, string = false, rep = false;
    u8 addr_size = 4;     // string I/O: 2, 4 or 8
    u16 port = 0;
    // npf
    bool write = false, fetch = false;
    // exception
    u8 vector = 0;
    // cr_access: which control register, and the value a MOV to it writes (when the hardware decoded it)
    u8 cr = 0;
    bool cr_decoded = false;
    // The exit interrupted the delivery of an event (the backend re-injects it): RIP does not
    // point at an instruction that caused the exit.
    bool in_delivery = false;
    u64 raw = 0;          // the hardware's exit code, for reports
    u64 next_rip = 0;     // when the hardware told us (0: unknown, decode the instruction)
    u64 gpa = 0;          // npf
    u64 cr_value = 0;     // cr_access
};

struct VcpuStats {
    u64 run_tsc = 0;      // time on a CPU: in guest mode plus exit handling (TSC ticks)
    u64 ready_tsc = 0;    // runnable but waiting for a CPU (TSC ticks)
    u64 exits = 0;
    u64 by_reason[u8(ExitReason::count)] = {};
};

enum class ExitAction : u8 {
    resume,   // back into the guest
    halt,     // the vCPU waits (HLT): give the CPU away
    stop,     // the guest must end (see ExitOutcome::why)
};

struct ExitOutcome {
    ExitAction action = ExitAction::resume;
    const char *why = nullptr;   // for stop: a report for the console
    u64 addr = 0;                // the address involved, if any
};

struct GuestPlatform;
struct VcpuIrq;

// What the run loop hands the backend for one LoadedVcpu::enter: the backend handles exits and
// goes straight back into the guest by itself while the run loop would decide nothing new (see
// exits_detail::run_until), and counts every exit.
struct RunGate {
    u64 by = ~0ull;               // host TSC: the guest leaves by then at the latest (exit_by)
    u64 until = 0;                // host TSC: after an exit past it, back to the run loop
    u64 deadline = ~0ull;         // the vCPU's timer (VcpuIrq::deadline) `until` was computed for
    VcpuIrq *irq = nullptr;       // the vCPU's interrupts (vcpu_irq.hpp)
    VcpuStats *stats = nullptr;
    // Sends the IPIs and EOI broadcasts the guest's APIC queued (VcpuIrq::ipi_out) to the other
    // vCPUs and the IOAPIC: the run loop's, called from the backend's loop (null: come back).
    void (*route_ipis)(void *ctx) = nullptr;
    void *route_ctx = nullptr;
};

// What exit handlers may do to the vCPU; implemented by the SVM and VMX backends (and fakes in tests).
class VcpuOps {
public:
    virtual u64 rip() = 0;
    // Keel completed the instruction at RIP: RIP moves on, an STI / MOV SS shadow ends. Returns
    // the debug traps the CPU held back for it (VMX: those pending in a MOV SS shadow, B0-B3 and
    // BS), which belong in the #DB that follows it.
    virtual u64 set_rip(u64 rip) = 0;
    // Is the instruction at RIP in an STI shadow (no interrupt before it completes)?
    virtual bool sti_shadow() { return false; }
    virtual u64 rflags() = 0;
    virtual x86::CpuMode mode() = 0;
    virtual u64 cs_base() = 0;
    virtual u64 cr0() = 0;
    virtual u64 cr3() = 0;
    virtual u64 cr2() = 0;             // for reports (a triple fault's last page fault)
    virtual u64 cr4() = 0;      // as the guest sees it
    virtual u64 efer() = 0;
    virtual u64 rsp() = 0;
    virtual void set_rsp(u64 rsp) = 0;
    virtual u8 cpl() = 0;
    virtual u64 xcr0() = 0;
    virtual void set_xcr0(u64 xcr0) = 0;   // checked by the caller against the guest's CPU profile
    // MOV to CR0/CR4 (checked by the caller): the backend applies what the hardware needs on top.
    virtual void set_cr0(u64 v) = 0;
    virtual void set_cr4(u64 v) = 0;
    virtual void inject_exception(u8 vector, bool has_error, u32 error) = 0;
    // The guest's DR6 (a #DB Keel injects reports its cause there, as the CPU would).
    virtual u64 dr6() = 0;
    virtual void set_dr6(u64 v) = 0;
    // Breakpoints on the accesses Keel emulates: the guest's DR7, DR0-DR3 (n < 4), and the base
    // of a segment (the linear address of a memory operand).
    virtual u64 dr7() = 0;
    virtual u64 dr(unsigned n) = 0;
    virtual u64 seg_base(x86::Seg s) = 0;
    // MSRs whose storage is the hardware's (VMCB/VMCS fields): true if handled.
    virtual bool arch_rdmsr(u32 msr, u64 &value) = 0;
    virtual bool arch_wrmsr(u32 msr, u64 value) = 0;
    virtual void host_cpuid(u32 leaf, u32 sub, u32 out[4]) = 0;
    virtual u64 tsc() = 0;   // the guest's TSC now

protected:
    ~VcpuOps() = default;
};

// A vCPU that is loaded on this CPU: its VMCS current (VMX), its FPU/XSAVE, debug and MSR
// state in the registers. Only ArchVcpu::load() hands one out, so nothing can reach a vCPU's
// hardware state while another vCPU is loaded: the handle is valid until the next load().
class LoadedVcpu : public VcpuOps {
public:
    // Enter the guest; return at the next exit, normalised.
    virtual void run(Gprs &g, ExitInfo &e) = 0;
    // External interrupts: can one be injected at the next entry (IF set, no interrupt
    // shadow, no event already pending)? If not, ask for an exit when it can (irq_window).
    virtual bool can_inject() = 0;
    virtual void inject_interrupt(u8 vector) = 0;
    virtual void request_window(bool on) = 0;
    // NMIs: can one be injected at the next entry (no event already pending, no STI/MOV SS
    // shadow, and the guest is not blocking NMIs: an NMI it took has not ended with IRET yet)?
    // inject_nmi() starts the guest's NMI blocking; its IRET ends it. If one cannot be injected,
    // request_nmi_window() asks for an exit (irq_window) when it can.
    virtual bool can_inject_nmi() = 0;
    virtual void inject_nmi() = 0;
    virtual void request_nmi_window(bool on) = 0;
    // Leave the guest by this host TSC at the latest (a timer of this CPU's vCPUs is due, or the
    // tick). VMX arms its preemption timer; SVM relies on the host's tick interrupt.
    virtual void exit_by(u64 host_tsc) = 0;
    // Handle the exit run() returned (handle_exit, kernel/guest/vm_exits.hpp). The backends
    // instantiate the handlers for their own final class, so the vCPU accessors the handlers
    // use are direct calls; this default goes through VcpuOps (fakes in tests).
    virtual ExitOutcome handle(const ExitInfo &e, Gprs &g, GuestPlatform &p, u32 vcpu_index);
    // Round trips as the run loop makes them: exit_by(gate.by), then run(g, e) and handle(e, ...)
    // until an exit the run loop must see (exits_detail::run_until says which); `e` and the
    // result are that exit's. The backends instantiate run_until for their own final class (no
    // indirect call per exit); this default goes through VcpuOps (fakes in tests).
    virtual ExitOutcome enter(const RunGate &gate, Gprs &g, ExitInfo &e, GuestPlatform &p, u32 vcpu_index);

protected:
    ~LoadedVcpu() = default;
};

// One vCPU's hardware side, as its owner (the scheduler) holds it. What needs the vCPU loaded
// is on LoadedVcpu; what is here is safe from any CPU at any time.
class VcpuHandle {
public:
    // Make this vCPU the loaded one on this CPU (the CPU it is placed on) and return the
    // only way to its hardware state. Switching from another vCPU saves that one's state first.
    virtual LoadedVcpu &load() = 0;
    // The guest's TSC now (its offset is kept in software: no VMCS/VMCB access).
    virtual u64 guest_tsc() const = 0;
    // A start-up IPI: at the next run the vCPU begins in real mode at vector:0000.
    virtual void start_at_sipi(u8 vector) = 0;
    // On the CPU the vCPU ran on, once it will not run again (VMX: VMCLEAR there; its state is
    // forgotten by that CPU, so a later vCPU at the same address starts from its own state).
    virtual void retire() = 0;
    virtual void destroy() = 0;

protected:
    ~VcpuHandle() = default;
};

// The arch-neutral view of a virtual CPU: saved registers, exits normalised to
// common reasons, per-vCPU accounting, and the seam (VcpuOps) through which
// exit handlers written once reach the SVM or VMX specifics.
#pragma once

#include "result.hpp"
#include "types.hpp"
#include "x86_decode.hpp"

// General-purpose registers in x86 encoding order (RSP's slot is unused: the
// hardware keeps the guest RSP in the VMCB/VMCS).
struct Gprs {
    u64 rax, rcx, rdx, rbx, rsp_unused, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15;
    u64 &operator[](unsigned i) { return (&rax)[i & 15]; }
};
static_assert(sizeof(Gprs) == 16 * 8);

enum class ExitReason : u8 {
    cpuid, hlt, io, rdmsr, wrmsr, npf, shutdown, intr, nmi, vmcall, cr_access, exception, xsetbv,
    irq_window, invalid_state, other, count
};
const char *exit_reason_name(ExitReason r);

struct ExitInfo {
    ExitReason reason = ExitReason::other;
    u64 raw = 0;          // the hardware's exit code, for reports
    u64 next_rip = 0;     // when the hardware told us (0: unknown, decode the instruction)
    // io
    u16 port = 0;
    u8 size = 0;          // 1, 2, 4
    bool in = false, string = false, rep = false;
    u8 addr_size = 4;     // string I/O: 2, 4 or 8
    // npf
    u64 gpa = 0;
    bool write = false, fetch = false;
    // exception
    u8 vector = 0;
};

struct VcpuStats {
    u64 run_tsc = 0;      // time on a CPU: in guest mode plus exit handling (TSC ticks)
    u64 ready_tsc = 0;    // runnable but waiting for a CPU (TSC ticks)
    u64 exits = 0;
    u64 by_reason[u8(ExitReason::count)] = {};
};

// What exit handlers may do to the vCPU; implemented by the SVM and VMX backends (and fakes in tests).
class VcpuOps {
public:
    virtual u64 rip() = 0;
    virtual void set_rip(u64 rip) = 0;
    virtual u64 rflags() = 0;
    virtual x86::CpuMode mode() = 0;
    virtual u64 cs_base() = 0;
    virtual u64 cr0() = 0;
    virtual u64 cr3() = 0;
    virtual u64 cr4() = 0;      // as the guest sees it
    virtual u64 efer() = 0;
    virtual void inject_exception(u8 vector, bool has_error, u32 error) = 0;
    // MSRs whose storage is the hardware's (VMCB/VMCS fields): true if handled.
    virtual bool arch_rdmsr(u32 msr, u64 &value) = 0;
    virtual bool arch_wrmsr(u32 msr, u64 value) = 0;
    virtual void host_cpuid(u32 leaf, u32 sub, u32 out[4]) = 0;
    virtual u64 tsc() = 0;   // the guest's TSC now

protected:
    ~VcpuOps() = default;
};

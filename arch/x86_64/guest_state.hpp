// What VM entry and exit do not switch between vCPUs that share a CPU: the x87/SSE/AVX/PKRU
// registers (XSAVE, with each vCPU's own XCR0), DR0-DR3, IA32_SPEC_CTRL, and where the hardware
// leaves them live (VMX) DR6, CR2 and the SYSCALL MSRs with KERNEL_GS_BASE. A CPU holds exactly one
// vCPU's copy in its registers; loading another saves it first (eager switching: nothing is left
// for a later trap to fix up).
#pragma once

#include "kernel/lib/result.hpp"
#include "kernel/lib/types.hpp"
#include "kernel/security/mitigations.hpp"

namespace gstate {

// Every CPU, before it runs a guest: CR4.OSFXSR/OSXMMEXCPT, and with XSAVE CR4.OSXSAVE and
// XCR0 = every component Keel switches.
Status init_cpu();
bool has_xsave();
// The XSAVE components Keel saves and restores for every vCPU (a guest may enable a subset).
u64 switched_xcr0();
// Host protection decisions, made once on the boot CPU (kernel/security/mitigations.hpp).
extern Mitigations mitigations_;
inline const Mitigations &mitigations() { return mitigations_; }   // (inline: read on every entry)

class ExtState {
public:
    // What VM exits leave in the registers (VMX: DR6; CR2, which a guest's #PF sets without an
    // exit and the VMCB holds on SVM; STAR, LSTAR, CSTAR, SFMASK, KERNEL_GS_BASE, TSC_AUX, which
    // SVM switches with VMLOAD/VMSAVE): switched here too.
    enum Live : unsigned { live_dr6 = 1, live_syscall_msrs = 2, live_cr2 = 4 };
    Status init(u64 owner, unsigned live);
    void free();
    u64 owner() const { return owner_; }
    // The guest's XCR0. While loaded on this CPU it is read from the register (XGETBV): QEMU
    // TCG does not intercept XSETBV under SVM although Keel asks, so a guest's XSETBV may land
    // there without an exit; leaf 0xD's sizes must follow what the guest really enabled.
    u64 xcr0() const;
    // While loaded on this CPU: the guest's XSETBV (validated by the caller).
    void set_xcr0(u64 v);
    u64 spec_ctrl() const { return spec_ctrl_; }
    void set_spec_ctrl(u64 v);   // while loaded
    // While loaded, with live_syscall_msrs: the guest's RDMSR/WRMSR of one of the SYSCALL MSRs
    // (false: not one of them). KERNEL_GS_BASE changes without an exit (SWAPGS): the register
    // has the truth.
    bool syscall_rdmsr(u32 msr, u64 &v) const;
    bool syscall_wrmsr(u32 msr, u64 v);

    static constexpr u32 SYSCALL_MSRS[] = {0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084, 0xc0000102, 0xc0000103};
    static constexpr usize NSYSCALL = sizeof(SYSCALL_MSRS) / sizeof(SYSCALL_MSRS[0]);

private:
    friend bool load(ExtState &s);
    friend void forget(ExtState &s);
    void save();
    void restore();

    PhysAddr area_{0};
    u64 xcr0_ = 1;
    u64 dr_[4] = {};
    u64 dr6_ = 0xffff0ff0;
    u64 cr2_ = 0;
    u64 spec_ctrl_ = 0;
    u64 syscall_[NSYSCALL] = {};
    u64 owner_ = 0;
    u64 id_ = 0;          // unique per init(): a new vCPU at an old address is still a stranger
    unsigned live_ = 0;
};

// The guest's own speculation commands and what it may know of the host (PRED_CMD, FLUSH_CMD,
// ARCH_CAPABILITIES), carried out when the host has them: true if the MSR is one of these.
bool guest_spec_rdmsr(u32 msr, u64 &v);
bool guest_spec_wrmsr(u32 msr, u64 v);

// Make `s` the state in this CPU's registers, saving the one that was there. True if it
// switched (false: `s` was loaded already).
bool load(ExtState &s);
// `s` will not run again: this CPU forgets it (call on the CPU it ran on).
void forget(ExtState &s);

} // namespace gstate

// MSR accesses that may fault (a feature the CPU says it has but the emulator lacks): false on #GP.
extern "C" bool msr_read_safe(u32 msr, u64 *value);
extern "C" bool msr_write_safe(u32 msr, u64 value);

// Refill the return stack buffer with harmless entries (after a VM exit: the guest's
// return predictions must not steer Keel's returns).
extern "C" void rsb_fill();

// A broken invariant in Keel itself: report where, then stop this CPU through an exception report.
#define KEEL_BUG_ON(cond)                                                                \
    do {                                                                                 \
        if (__builtin_expect(!!(cond), 0)) {                                             \
            log_error("BUG: %s (%s:%d)", #cond, __FILE__, __LINE__);                     \
            __builtin_trap();                                                            \
        }                                                                                \
    } while (0)

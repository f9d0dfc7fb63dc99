// What VM entry and exit do not switch between vCPUs that share a CPU: the x87/SSE/AVX/PKRU
// registers (XSAVE, with each vCPU's own XCR0), DR0-DR3 (and DR6 where the hardware leaves it
// live), IA32_SPEC_CTRL. A CPU holds exactly one vCPU's copy in its registers; loading another
// saves it first (eager switching: nothing is left for a later trap to fix up).
#pragma once

#include "kernel/mitigations.hpp"
#include "kernel/result.hpp"
#include "kernel/types.hpp"

namespace gstate {

// Every CPU, before it runs a guest: CR4.OSFXSR/OSXMMEXCPT, and with XSAVE CR4.OSXSAVE and
// XCR0 = every component Keel switches.
Status init_cpu();
bool has_xsave();
// The XSAVE components Keel saves and restores for every vCPU (a guest may enable a subset).
u64 switched_xcr0();
// Host protection decisions, made once on the boot CPU (kernel/mitigations.hpp).
const Mitigations &mitigations();

class ExtState {
public:
    // `dr6_live`: the hardware leaves the guest's DR6 in the register (VMX), so it is switched here.
    Status init(u64 owner, bool dr6_live);
    void free();
    u64 owner() const { return owner_; }
    u64 xcr0() const { return xcr0_; }
    // While loaded on this CPU: the guest's XSETBV (validated by the caller).
    void set_xcr0(u64 v);
    u64 spec_ctrl() const { return spec_ctrl_; }
    void set_spec_ctrl(u64 v);   // while loaded

private:
    friend bool load(ExtState &s);
    friend void forget(ExtState &s);
    void save();
    void restore();

    PhysAddr area_{0};
    u64 xcr0_ = 1;
    u64 dr_[4] = {};
    u64 dr6_ = 0xffff0ff0;
    u64 spec_ctrl_ = 0;
    u64 owner_ = 0;
    u64 id_ = 0;          // unique per init(): a new vCPU at an old address is still a stranger
    bool dr6_live_ = false;
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

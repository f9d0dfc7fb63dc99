// Exit handlers, written once for SVM and VMX: they see a normalised exit,
// the guest's registers, the VcpuOps seam and the guest's own platform.
#pragma once

#include "kernel/guest/vcpu.hpp"
#include "kernel/vdev/guest_platform.hpp"

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

ExitOutcome handle_exit(const ExitInfo &e, Gprs &g, VcpuOps &ops, GuestPlatform &p, u32 vcpu_index);

inline constexpr u32 KEEL_CPUID_MAX = CpuProfile::HV_LEAF_MAX;

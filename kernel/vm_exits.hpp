// Exit handlers, written once for SVM and VMX: they see a normalised exit,
// the guest's registers, the VcpuOps seam and the guest's own platform.
#pragma once

#include "guest_platform.hpp"
#include "vcpu.hpp"

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

// The CPUID view a guest gets: Keel's leaves, hypervisor bit set, VMX/SVM hidden.
// max_std/max_ext cache the host's highest leaves (0: not read yet).
void guest_cpuid(VcpuOps &ops, u32 leaf, u32 sub, u32 vcpu_index, u32 vcpu_count, u32 out[4], u32 &max_std,
                 u32 &max_ext);

// MSRs Keel emulates in software for every guest (beyond the arch-stored ones).
inline constexpr u32 KEEL_CPUID_MAX = 0x40000001;

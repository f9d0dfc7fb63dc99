// Which speculative-execution mitigations Keel turns on, decided from what the CPU reports.
// Portable logic (unit-tested): emulators cannot exercise most of these, so the decision is
// tested here and the boot log says what is on.
#pragma once

#include "kernel/lib/types.hpp"

enum class CpuMaker : u8 { intel, amd, other };

// What the host CPU says about itself.
struct HostSpecFacts {
    CpuMaker maker = CpuMaker::other;
    u32 leaf7_edx = 0;        // CPUID.(7,0).EDX: MD_CLEAR(10), SPEC_CTRL(26), STIBP(27), L1D_FLUSH(28), ARCH_CAP(29), SSBD(31)
    u32 ext8_ebx = 0;         // CPUID.0x80000008.EBX (AMD): IBPB(12), IBRS(14), STIBP(15), SSBD(24)
    u64 arch_capabilities = 0;   // IA32_ARCH_CAPABILITIES when CPUID says it exists, else 0
    bool rtm = false;         // TSX present (TAA)
};

struct Mitigations {
    bool ibpb = false;        // IBPB (PRED_CMD) when a CPU switches between guests
    bool spec_ctrl = false;   // IA32_SPEC_CTRL exists: virtualised and switched per vCPU
    bool flush_l1d = false;   // L1D flush (FLUSH_CMD) before VM entry after a switch of guests (L1TF)
    bool verw = false;        // VERW before VM entry clears CPU buffers (MDS, TAA, MMIO stale data)
    bool rsb_stuff = true;    // the return stack buffer refilled after every VM exit
};

Mitigations decide_mitigations(const HostSpecFacts &f);

// ARCH_CAPABILITIES bits used above.
namespace arch_cap {
inline constexpr u64 RDCL_NO = 1u << 0, IBRS_ALL = 1u << 1, SKIP_L1DFL_VMENTRY = 1u << 3, MDS_NO = 1u << 5,
                     TAA_NO = 1u << 8, SBDR_SSDP_NO = 1u << 13, FBSDP_NO = 1u << 14, PSDP_NO = 1u << 15,
                     FB_CLEAR = 1u << 17;
}

// One line for the boot log, e.g. "ibpb rsb verw" ("none" if nothing is on).
usize describe_mitigations(const Mitigations &m, char *buf, usize n);

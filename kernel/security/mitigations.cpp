#include "kernel/security/mitigations.hpp"

#include "kernel/lib/format.hpp"

Mitigations decide_mitigations(const HostSpecFacts &f)
{
    Mitigations m;
    const bool intel = f.maker == CpuMaker::intel, amd = f.maker == CpuMaker::amd;
    const u32 e7 = f.leaf7_edx, x8 = f.ext8_ebx;
    const u64 ac = (e7 & (1u << 29)) ? f.arch_capabilities : 0;   // only read when enumerated
    // IBPB: Intel enumerates it with SPEC_CTRL (bit 26), AMD separately (0x80000008 EBX 12).
    m.ibpb = (intel && (e7 & (1u << 26))) || (amd && (x8 & (1u << 12)));
    m.spec_ctrl = (e7 & (1u << 26)) || (amd && (x8 & ((1u << 14) | (1u << 15) | (1u << 24))));
    // L1TF: Intel parts without RDCL_NO; VMX entry must flush L1D unless the CPU says it need not.
    m.flush_l1d = intel && !(ac & arch_cap::RDCL_NO) && !(ac & arch_cap::SKIP_L1DFL_VMENTRY) && (e7 & (1u << 28));
    // MDS / TAA / MMIO stale data: VERW clears the buffers where MD_CLEAR (or FB_CLEAR) says it does.
    const bool mds = intel && !(ac & arch_cap::MDS_NO);
    const bool taa = intel && f.rtm && !(ac & arch_cap::TAA_NO);
    const bool mmio = intel && !((ac & arch_cap::SBDR_SSDP_NO) && (ac & arch_cap::FBSDP_NO) && (ac & arch_cap::PSDP_NO));
    const bool clears = (e7 & (1u << 10)) || (ac & arch_cap::FB_CLEAR);
    // With an L1D flush on every entry that matters, the buffers are flushed too (FLUSH_CMD includes VERW's effect).
    m.verw = clears && (mds || taa || mmio);
    m.rsb_stuff = true;
    return m;
}

usize describe_mitigations(const Mitigations &m, char *buf, usize n)
{
    return format(buf, n, "%s%s%s%s%s%s", m.ibpb ? "ibpb " : "", m.spec_ctrl ? "spec_ctrl " : "",
                  m.flush_l1d ? "l1d_flush " : "", m.verw ? "verw " : "", m.rsb_stuff ? "rsb_stuff " : "",
                  (m.ibpb || m.spec_ctrl || m.flush_l1d || m.verw || m.rsb_stuff) ? "" : "none");
}

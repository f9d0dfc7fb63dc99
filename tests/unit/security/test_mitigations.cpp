// Which mitigations Keel turns on for which CPU (kernel/security/mitigations): the decisions emulators
// cannot exercise.
#include <gtest/gtest.h>

#include <cstring>

#include "kernel/security/mitigations.hpp"

namespace {

constexpr u32 MD_CLEAR = 1u << 10, SPEC_CTRL = 1u << 26, L1D_FLUSH = 1u << 28, ARCH_CAP = 1u << 29;

TEST(Mitigations, OldIntelGetsEverything)
{
    HostSpecFacts f;
    f.maker = CpuMaker::intel;
    f.leaf7_edx = MD_CLEAR | SPEC_CTRL | L1D_FLUSH;   // no ARCH_CAPABILITIES: affected by all
    f.rtm = true;
    auto m = decide_mitigations(f);
    EXPECT_TRUE(m.ibpb);
    EXPECT_TRUE(m.spec_ctrl);
    EXPECT_TRUE(m.flush_l1d);
    EXPECT_TRUE(m.verw);
    EXPECT_TRUE(m.rsb_stuff);
}

TEST(Mitigations, IntelThatSaysItIsNotAffected)
{
    HostSpecFacts f;
    f.maker = CpuMaker::intel;
    f.leaf7_edx = MD_CLEAR | SPEC_CTRL | L1D_FLUSH | ARCH_CAP;
    f.arch_capabilities = arch_cap::RDCL_NO | arch_cap::MDS_NO | arch_cap::TAA_NO | arch_cap::SBDR_SSDP_NO |
                          arch_cap::FBSDP_NO | arch_cap::PSDP_NO;
    auto m = decide_mitigations(f);
    EXPECT_FALSE(m.flush_l1d);
    EXPECT_FALSE(m.verw);
    EXPECT_TRUE(m.ibpb);
    // ARCH_CAPABILITIES is believed only when CPUID enumerates it.
    f.leaf7_edx &= ~ARCH_CAP;
    m = decide_mitigations(f);
    EXPECT_TRUE(m.flush_l1d);
    EXPECT_TRUE(m.verw);
}

TEST(Mitigations, L1dFlushNeedsFlushCmdAndCanBeSkipped)
{
    HostSpecFacts f;
    f.maker = CpuMaker::intel;
    f.leaf7_edx = SPEC_CTRL;
    EXPECT_FALSE(decide_mitigations(f).flush_l1d);   // affected but no FLUSH_CMD: nothing to use
    f.leaf7_edx |= L1D_FLUSH | ARCH_CAP;
    f.arch_capabilities = arch_cap::SKIP_L1DFL_VMENTRY;
    EXPECT_FALSE(decide_mitigations(f).flush_l1d);
}

TEST(Mitigations, Amd)
{
    HostSpecFacts f;
    f.maker = CpuMaker::amd;
    EXPECT_FALSE(decide_mitigations(f).ibpb);
    f.ext8_ebx = 1u << 12 | 1u << 24;   // IBPB, SSBD
    auto m = decide_mitigations(f);
    EXPECT_TRUE(m.ibpb);
    EXPECT_TRUE(m.spec_ctrl);
    EXPECT_FALSE(m.flush_l1d);   // not affected by L1TF or MDS
    EXPECT_FALSE(m.verw);
    f.leaf7_edx = L1D_FLUSH | MD_CLEAR;
    m = decide_mitigations(f);
    EXPECT_FALSE(m.flush_l1d);
    EXPECT_FALSE(m.verw);
}

TEST(Mitigations, Describe)
{
    char buf[128];
    Mitigations m;
    m.rsb_stuff = false;
    describe_mitigations(m, buf, sizeof buf);
    EXPECT_STREQ(buf, "none");
    m.ibpb = m.verw = m.rsb_stuff = true;
    describe_mitigations(m, buf, sizeof buf);
    EXPECT_STREQ(buf, "ibpb verw rsb_stuff ");
}

} // namespace

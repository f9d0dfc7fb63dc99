// A fake vCPU's architectural state that a test does not look at: a flat 32-bit protected-mode
// CPU, paging and breakpoints off, no MSRs of its own, XCR0 = x87. Fakes derive from it and
// override what their test is about (entry, interrupt injection, RIP, ...).
#pragma once

#include "kernel/guest/vcpu.hpp"

class PlainLoadedVcpu : public LoadedVcpu {
public:
    x86::CpuMode mode() override { return x86::CpuMode::prot32; }
    u64 cs_base() override { return 0; }
    u64 cr0() override { return 0x11; }
    u64 cr3() override { return 0; }
    u64 cr2() override { return 0; }
    u64 cr4() override { return 0; }
    u64 efer() override { return 0; }
    u64 rsp() override { return 0; }
    void set_rsp(u64) override {}
    u8 cpl() override { return 0; }
    u64 xcr0() override { return 1; }
    void set_xcr0(u64) override {}
    void set_cr0(u64) override {}
    void set_cr4(u64) override {}
    void inject_exception(u8, bool, u32) override {}
    u64 dr6() override { return 0xffff0ff0; }
    void set_dr6(u64) override {}
    u64 dr7() override { return 0x400; }
    u64 dr(unsigned) override { return 0; }
    u64 seg_base(x86::Seg) override { return 0; }
    bool arch_rdmsr(u32, u64 &) override { return false; }
    bool arch_wrmsr(u32, u64) override { return false; }
    void host_cpuid(u32, u32, u32 out[4]) override { out[0] = out[1] = out[2] = out[3] = 0; }

protected:
    ~PlainLoadedVcpu() = default;
};

// The arch-neutral exit handlers (kernel/guest/vm_exits.cpp) and the guest UART /
// debug-exit devices (kernel/vdev/uart.cpp), driven through a fake VcpuOps (the devices on
// their own: vdev/test_uart.cpp).
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "kernel/guest/vm_exits.hpp"
#include "kernel/guest/vm_exits_impl.hpp"
#include "kernel/vdev/uart.hpp"

namespace {

constexpr u8 GP = 13, UD = 6;
constexpr u64 CR0_PE = 1, CR0_PG = 1ull << 31, CR4_PAE = 1u << 5, EFER_LME = 1u << 8, EFER_LMA = 1u << 10;
constexpr u64 RFLAGS_DF = 1u << 10;
constexpr u32 MSR_EFER = 0xc0000080, MSR_PAT = 0x277, MSR_FS_BASE = 0xc0000100, MSR_LSTAR = 0xc0000082,
              MSR_TSC_AUX = 0xc0000103;

struct Injected {
    u8 vector;
    bool has_error;
    u32 error;
};

class FakeOps final : public VcpuOps {
public:
    u64 rip_ = 0x1000, rflags_ = 2, rsp_ = 0x8000, xcr0_ = 1;
    u8 cpl_ = 0;
    x86::CpuMode mode_ = x86::CpuMode::prot32;
    u64 cs_base_ = 0, cr0_ = CR0_PE, cr3_ = 0, cr4_ = 0, efer_ = 0;
    std::vector<Injected> injected;
    std::map<u32, u64> msrs{{MSR_EFER, 0x500}, {MSR_PAT, 0x0007040600070406ull}, {MSR_FS_BASE, 0}, {MSR_LSTAR, 0}};
    std::vector<std::pair<u32, u64>> wrmsr_calls;   // every arch_wrmsr call, handled or not
    int rdmsr_calls = 0;

    u64 rip() override { return rip_; }
    u64 held_db_ = 0;   // what a MOV SS shadow held back (VMX), handed out by set_rip
    u64 set_rip(u64 r) override
    {
        rip_ = r;
        sti_shadow_ = false;
        const u64 h = held_db_;
        held_db_ = 0;
        return h;
    }
    bool sti_shadow_ = false;
    bool sti_shadow() override { return sti_shadow_; }
    u64 rflags() override { return rflags_; }
    u64 dr6_ = 0xffff0ff0, dr7_ = 0x400, drs_[4] = {}, seg_base_[6] = {};
    u64 dr6() override { return dr6_; }
    void set_dr6(u64 v) override { dr6_ = v; }
    u64 dr7() override { return dr7_; }
    u64 dr(unsigned n) override { return drs_[n & 3]; }
    u64 seg_base(x86::Seg s) override { return seg_base_[unsigned(s)]; }
    x86::CpuMode mode() override { return mode_; }
    u64 cs_base() override { return cs_base_; }
    u64 cr0() override { return cr0_; }
    u64 cr3() override { return cr3_; }
    u64 cr2() override { return 0; }
    u64 cr4() override { return cr4_; }
    u64 efer() override { return efer_; }
    u64 rsp() override { return rsp_; }
    void set_rsp(u64 v) override { rsp_ = v; }
    u8 cpl() override { return cpl_; }
    u64 xcr0() override { return xcr0_; }
    void set_xcr0(u64 v) override { xcr0_ = v; }
    void set_cr0(u64 v) override { cr0_ = v; }
    void set_cr4(u64 v) override { cr4_ = v; }
    void inject_exception(u8 vector, bool has_error, u32 error) override
    {
        injected.push_back({vector, has_error, error});
    }
    bool arch_rdmsr(u32 msr, u64 &value) override
    {
        rdmsr_calls++;
        auto it = msrs.find(msr);
        if (it == msrs.end()) return false;
        value = it->second;
        return true;
    }
    bool arch_wrmsr(u32 msr, u64 value) override
    {
        wrmsr_calls.push_back({msr, value});
        auto it = msrs.find(msr);
        if (it == msrs.end()) return false;
        it->second = value;
        return true;
    }
    void host_cpuid(u32 leaf, u32 sub, u32 out[4]) override
    {
        switch (leaf) {
        case 0:   // max leaf 0xd, "GenuineIntel"
            out[0] = 0xd, out[1] = 0x756e6547, out[2] = 0x6c65746e, out[3] = 0x49656e69;
            return;
        case 1:   // APIC id 0x37, 16 logical CPUs; ECX: SSE3, VMX, SMX, x2APIC, XSAVE, AVX; EDX: FPU, TSC, MSR, PAE, APIC, SEP, PAT, FXSR, SSE, SSE2, HTT
            out[0] = 0x000906ea;
            out[1] = 0x37100800;
            out[2] = (1u << 0) | (1u << 5) | (1u << 6) | (1u << 21) | (1u << 26) | (1u << 28);
            out[3] = (1u << 0) | (1u << 4) | (1u << 5) | (1u << 6) | (1u << 9) | (1u << 11) | (1u << 16) | (1u << 24) |
                     (1u << 25) | (1u << 26) | (1u << 28);
            return;
        case 7:
            out[0] = sub == 0 ? 1 : 0;
            out[1] = (1u << 0) | (1u << 2) | (1u << 5) | (1u << 9) | (1u << 16);   // FSGSBASE, SGX, AVX2, ERMS, AVX512F
            out[2] = 1u << 3;
            out[3] = 0xffffffff;
            return;
        case 0x80000000:
            out[0] = 0x8000000a, out[1] = out[2] = out[3] = 0;
            return;
        case 0xd:   // XSAVE: x87, SSE, AVX (standard layout: AVX at 576, 256 bytes)
            out[0] = out[1] = out[2] = out[3] = 0;
            if (sub == 0) out[0] = 7, out[1] = 832, out[2] = 832;
            if (sub == 1) out[0] = 1;
            if (sub == 2) out[0] = 256, out[1] = 576;
            return;
        case 0x80000001:   // ECX: LAHF, SVM, IBS; EDX: SYSCALL, NX, RDTSCP, LM
            out[0] = 0, out[1] = 0;
            out[2] = (1u << 0) | (1u << 2) | (1u << 10);
            out[3] = (1u << 11) | (1u << 20) | (1u << 27) | (1u << 29);
            return;
        case 0x8000000a:   // SVM revision, ASIDs, features
            out[0] = 1, out[1] = 0x40, out[2] = 0, out[3] = 0xff;
            return;
        default:           // something visible, so "zero" can only come from Keel
            out[0] = leaf, out[1] = sub, out[2] = 0x12345678, out[3] = 0x9abcdef0;
            return;
        }
    }
    u64 tsc() override { return 0; }
};

constexpr u64 RAM_SIZE = 1 << 20;

struct Vm {
    std::vector<u8> ram = std::vector<u8>(RAM_SIZE);
    GuestMemory mem;
    GuestPlatform p;
    std::vector<std::string> lines;
    UartModel uart{0x3f8, &Vm::sink, this};
    DebugExitModel dbg{0xf4, p};
    FakeOps ops;
    Gprs g{};
    CpuProfile profile;

    // The guest's CPU profile, built from the fake host (no APIC model: APIC/x2APIC hidden).
    struct Host final : ProfileHost {
        FakeOps *ops;
        void cpuid(u32 leaf, u32 sub, u32 out[4]) override { ops->host_cpuid(leaf, sub, out); }
    };

    explicit Vm(bool lapic = false)
    {
        Host h;
        h.ops = &ops;
        ProfileOptions po;
        po.vcpu_count = 4;
        po.lapic = lapic;
        profile.build(h, po);
        p.profile = &profile;
        EXPECT_TRUE(mem.add(GuestPhys(0), ram.size(), ram.data()).ok());
        p.mem = &mem;
        p.vcpu_count = 4;
        EXPECT_TRUE(p.add_io(&uart, 0x3f8, 0x3ff));
        EXPECT_TRUE(p.add_io(&dbg, 0xf4, 0xf4));
    }

    static void sink(void *ctx, const char *line, usize n)
    {
        static_cast<Vm *>(ctx)->lines.emplace_back(line, n);
    }

    void put(u64 gpa, std::initializer_list<u8> bytes)
    {
        for (u8 b : bytes) ram.at(gpa++) = b;
    }
    void put64(u64 gpa, u64 v) { memcpy(&ram.at(gpa), &v, 8); }

    ExitOutcome run(const ExitInfo &e, u32 vcpu = 0) { return handle_exit(e, g, ops, p, vcpu); }

    // CPUID exit, decoded from `0f a2` at RIP (next_rip unknown).
    ExitOutcome cpuid(u32 leaf, u32 sub = 0, u32 vcpu = 0)
    {
        g.rax = leaf, g.rcx = sub;
        ExitInfo e;
        e.reason = ExitReason::cpuid;
        return run(e, vcpu);
    }

    ExitOutcome msr(bool write, u32 msr, u64 value = 0, u32 vcpu = 0)
    {
        g.rcx = msr;
        if (write) g.rax = u32(value), g.rdx = value >> 32;
        ExitInfo e;
        e.reason = write ? ExitReason::wrmsr : ExitReason::rdmsr;
        e.next_rip = ops.rip_ + 2;
        return run(e, vcpu);
    }

    ExitOutcome out(u16 port, u8 size, u32 value)
    {
        g.rax = value;
        ExitInfo e;
        e.reason = ExitReason::io;
        e.port = port, e.size = size, e.in = false;
        e.next_rip = ops.rip_ + 1;
        return run(e);
    }
    void out_str(u16 port, const std::string &s)
    {
        for (char c : s) ASSERT_EQ(out(port, 1, u8(c)).action, ExitAction::resume);
    }
    u64 in(u16 port, u8 size, u64 rax_before = 0)
    {
        g.rax = rax_before;
        ExitInfo e;
        e.reason = ExitReason::io;
        e.port = port, e.size = size, e.in = true;
        e.next_rip = ops.rip_ + 1;
        EXPECT_EQ(run(e).action, ExitAction::resume);
        return g.rax;
    }

    ExitInfo string_io(u16 port, u8 size, bool in, bool rep, u8 addr_size = 4)
    {
        ExitInfo e;
        e.reason = ExitReason::io;
        e.port = port, e.size = size, e.in = in, e.string = true, e.rep = rep, e.addr_size = addr_size;
        e.next_rip = ops.rip_ + 2;
        return e;
    }
};

// ---------------------------------------------------------------------------------------------- CPUID

TEST(VmExitCpuid, HypervisorBitAndKeelLeaves)
{
    Vm vm;
    vm.put(0x1000, {0x0f, 0xa2});
    ASSERT_EQ(vm.cpuid(1).action, ExitAction::resume);
    EXPECT_TRUE(vm.g.rcx & (1u << 31));
    EXPECT_EQ(vm.g.rax, 0x000906eau);

    ASSERT_EQ(vm.cpuid(0x40000000).action, ExitAction::resume);
    EXPECT_GE(vm.g.rax, 0x40000001u);
    char sig[13] = {};
    const u32 regs[3] = {u32(vm.g.rbx), u32(vm.g.rcx), u32(vm.g.rdx)};
    memcpy(sig, regs, 12);
    EXPECT_STREQ(sig, "KeelKeelKeel");
    EXPECT_TRUE(vm.ops.injected.empty());
}

// CPUID.1:EDX.APIC follows IA32_APIC_BASE's global enable (bit 11), read from the APIC's model.
struct FakeApicBase final : MsrDevice {
    u64 base = 0xfee00900;
    bool rdmsr(u32, u32 msr, u64 &v, bool &ok) override
    {
        if (msr != 0x1b) return false;
        v = base;
        ok = true;
        return true;
    }
    bool wrmsr(u32, u32, u64, bool &) override { return false; }
};

TEST(VmExitCpuid, ApicBitFollowsTheApicBase)
{
    Vm vm(true);
    FakeApicBase apic;
    vm.p.msr = &apic;
    vm.put(0x1000, {0x0f, 0xa2});
    ASSERT_EQ(vm.cpuid(1).action, ExitAction::resume);
    EXPECT_TRUE(vm.g.rdx & (1u << 9));
    const u64 ecx = vm.g.rcx;
    apic.base &= ~0x800ull;                // globally disabled
    ASSERT_EQ(vm.cpuid(1).action, ExitAction::resume);
    EXPECT_FALSE(vm.g.rdx & (1u << 9));
    EXPECT_EQ(vm.g.rcx, ecx);
    apic.base |= 0x800;
    ASSERT_EQ(vm.cpuid(1).action, ExitAction::resume);
    EXPECT_TRUE(vm.g.rdx & (1u << 9));
}

TEST(VmExitCpuid, VirtualisationAndUnmodelledFeaturesHidden)
{
    Vm vm;
    vm.put(0x1000, {0x0f, 0xa2});
    ASSERT_EQ(vm.cpuid(1).action, ExitAction::resume);
    EXPECT_FALSE(vm.g.rcx & (1u << 5));    // VMX
    EXPECT_FALSE(vm.g.rcx & (1u << 6));    // SMX
    EXPECT_FALSE(vm.g.rcx & (1u << 21));   // x2APIC
    EXPECT_TRUE(vm.g.rcx & 1u);            // SSE3 passes through
    EXPECT_FALSE(vm.g.rdx & (1u << 9));    // no APIC model
    EXPECT_TRUE(vm.g.rdx & 1u);            // FPU passes through

    ASSERT_EQ(vm.cpuid(0x80000001).action, ExitAction::resume);
    EXPECT_FALSE(vm.g.rcx & (1u << 2));    // SVM
    EXPECT_TRUE(vm.g.rcx & 1u);            // LAHF passes through
    EXPECT_EQ(vm.g.rdx, (1u << 11) | (1u << 20) | (1u << 27) | (1u << 29));

    ASSERT_EQ(vm.cpuid(0x8000000a).action, ExitAction::resume);
    EXPECT_EQ(vm.g.rax | vm.g.rbx | vm.g.rcx | vm.g.rdx, 0u);

    ASSERT_EQ(vm.cpuid(7, 0).action, ExitAction::resume);
    EXPECT_TRUE(vm.g.rbx & 1u);            // FSGSBASE kept
    EXPECT_FALSE(vm.g.rbx & ((1u << 2) | (1u << 16)));   // SGX, AVX-512F
    EXPECT_TRUE(vm.g.rbx & (1u << 5));                    // AVX2: AVX is switched (XSAVE) now
    // Only the speculation controls Keel virtualises (MD_CLEAR, SPEC_CTRL, STIBP, L1D_FLUSH, ARCH_CAP, SSBD).
    EXPECT_EQ(vm.g.rdx & ~((1u << 10) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 29) | (1u << 31)), 0u);
}

TEST(VmExitCpuid, OutOfRangeLeavesAreZero)
{
    Vm vm;
    vm.put(0x1000, {0x0f, 0xa2});
    for (u32 leaf : {0xeu, 0x1000u, 0x3fffffffu, 0x40000001u, 0x40000002u, 0x4fffffffu, 0x50000000u,
                     0x8000000bu, 0x80000020u, 0xffffffffu}) {
        vm.g.rbx = vm.g.rdx = 0xdead;
        ASSERT_EQ(vm.cpuid(leaf).action, ExitAction::resume) << std::hex << leaf;
        EXPECT_EQ(vm.g.rax | vm.g.rbx | vm.g.rcx | vm.g.rdx, 0u) << std::hex << leaf;
    }
    // In range: the host's answer where the profile passes it (the brand string), upper halves cleared.
    vm.g.rax = 0xffffffff00000000ull | 0x80000002;
    vm.g.rcx = 0;
    ExitInfo e;
    e.reason = ExitReason::cpuid;
    ASSERT_EQ(vm.run(e).action, ExitAction::resume);
    EXPECT_EQ(vm.g.rax, 0x80000002u);
    EXPECT_EQ(vm.g.rcx, 0x12345678u);
}

TEST(VmExitCpuid, ApicIdIsVcpuIndex)
{
    Vm vm;
    vm.put(0x1000, {0x0f, 0xa2});
    for (u32 i : {0u, 1u, 3u}) {
        ASSERT_EQ(vm.cpuid(1, 0, i).action, ExitAction::resume);
        EXPECT_EQ(vm.g.rbx >> 24, i);
        EXPECT_EQ((vm.g.rbx >> 16) & 0xff, 4u);     // vcpu_count
        EXPECT_EQ(vm.g.rbx & 0xffff, 0x0800u);      // CLFLUSH size etc. kept
    }
}

TEST(VmExitCpuid, RipAdvancedByDecodedLength)
{
    Vm vm;
    vm.ops.rip_ = 0x2345;
    vm.put(0x2345, {0x0f, 0xa2});
    ASSERT_EQ(vm.cpuid(0).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.rip_, 0x2347u);

    // Prefixed: the whole length counts.
    vm.ops.rip_ = 0x3000;
    vm.put(0x3000, {0x66, 0x2e, 0x0f, 0xa2});
    ASSERT_EQ(vm.cpuid(0).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.rip_, 0x3004u);

    // CS base added for the fetch, not to RIP.
    vm.ops.cs_base_ = 0x10000;
    vm.ops.rip_ = 0x100;
    vm.put(0x10100, {0x0f, 0xa2});
    ASSERT_EQ(vm.cpuid(0).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.rip_, 0x102u);
}

TEST(VmExitCpuid, LinearAddressOfTheFetch)
{
    // 64-bit mode: the CS base is ignored (the hidden base may hold a descriptor's stale value).
    Vm vm;
    vm.ops.mode_ = x86::CpuMode::long64;
    vm.ops.cs_base_ = 0x10000;
    vm.ops.rip_ = 0x2000;
    vm.put(0x2000, {0x0f, 0xa2});
    vm.put(0x12000, {0xf4});
    ASSERT_EQ(vm.cpuid(0).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.rip_, 0x2002u);

    // 32-bit mode: CS base + EIP wraps at 4 GiB.
    vm.ops.mode_ = x86::CpuMode::prot32;
    vm.ops.cs_base_ = 0xfffff000;
    vm.ops.rip_ = 0x3000;
    vm.put(0x2000, {0x66, 0x0f, 0xa2});
    ASSERT_EQ(vm.cpuid(0).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.rip_, 0x3003u);
}

TEST(VmExitCpuid, RipFromHardwareNextRip)
{
    Vm vm;
    vm.ops.rip_ = 0x5000;   // RAM holds zeros here: nothing is decoded
    ExitInfo e;
    e.reason = ExitReason::cpuid;
    e.next_rip = 0x5007;
    vm.g.rax = 0;
    ASSERT_EQ(vm.run(e).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.rip_, 0x5007u);
    EXPECT_EQ(vm.g.rax, 0xdu);
}

TEST(VmExitCpuid, RipWrapsIn16BitMode)
{
    for (auto mode : {x86::CpuMode::real16, x86::CpuMode::prot16}) {
        Vm vm;
        vm.ops.mode_ = mode;
        vm.ops.cr0_ = mode == x86::CpuMode::real16 ? 0 : CR0_PE;
        vm.ops.cs_base_ = 0x10000;
        vm.ops.rip_ = 0xfffe;
        vm.put(0x1fffe, {0x0f, 0xa2});
        ASSERT_EQ(vm.cpuid(0).action, ExitAction::resume);
        EXPECT_EQ(vm.ops.rip_, 0u);
    }
    // 32-bit mode wraps at 4 GiB (a page of RAM just below it).
    Vm vm;
    std::vector<u8> top(PAGE_SIZE);
    ASSERT_TRUE(vm.mem.add(GuestPhys(0x100000000ull - PAGE_SIZE), top.size(), top.data()).ok());
    top[PAGE_SIZE - 2] = 0x0f, top[PAGE_SIZE - 1] = 0xa2;
    vm.ops.rip_ = 0xfffffffe;
    ASSERT_EQ(vm.cpuid(0).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.rip_, 0u);
    // ... and so does the fetch of an instruction across the 4 GiB line.
    top[PAGE_SIZE - 1] = 0x0f;
    vm.ram[0] = 0xa2;
    vm.ops.rip_ = 0xffffffff;
    ASSERT_EQ(vm.cpuid(0).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.rip_, 1u);
    // Long mode does not wrap.
    top[PAGE_SIZE - 2] = 0x0f, top[PAGE_SIZE - 1] = 0xa2;
    vm.ops.mode_ = x86::CpuMode::long64;
    vm.ops.rip_ = 0xfffffffe;
    ASSERT_EQ(vm.cpuid(0).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.rip_, 0x100000000ull);
}

TEST(VmExitCpuid, UndecodableStops)
{
    Vm vm;
    vm.ops.rip_ = RAM_SIZE + 0x1000;   // outside RAM
    auto o = vm.cpuid(0);
    EXPECT_EQ(o.action, ExitAction::stop);
    EXPECT_EQ(o.addr, RAM_SIZE + 0x1000);
    ASSERT_NE(o.why, nullptr);

    // Only the first byte inside RAM: the decoder wants more.
    vm.ops.rip_ = RAM_SIZE - 1;
    vm.ram[RAM_SIZE - 1] = 0x0f;
    EXPECT_EQ(vm.cpuid(0).action, ExitAction::stop);
    EXPECT_EQ(vm.ops.rip_, RAM_SIZE - 1);

    // The last two bytes of RAM: decodes with fewer than 15 bytes available.
    vm.ops.rip_ = RAM_SIZE - 2;
    vm.put(RAM_SIZE - 2, {0x0f, 0xa2});
    EXPECT_EQ(vm.cpuid(0).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.rip_, RAM_SIZE);
}

// ------------------------------------------------------------------------------------ guest paging

// 4-level tables at 0x10000..: linear 0x40000000 -> gpa 0x20000, linear 0x40001000 -> gpa 0x50000
// (not adjacent, so a page-crossing fetch must translate each page).
void long_mode_paging(Vm &vm)
{
    vm.put64(0x10000 + 0 * 8, 0x11000 | 3);   // PML4[0]
    vm.put64(0x11000 + 1 * 8, 0x12000 | 3);   // PDPT[1]: 1 GiB
    vm.put64(0x12000 + 0 * 8, 0x13000 | 3);   // PD[0]
    vm.put64(0x13000 + 0 * 8, 0x20000 | 3);   // PT[0]
    vm.put64(0x13000 + 1 * 8, 0x50000 | 3);   // PT[1]
    vm.put64(0x12000 + 1 * 8, 0x200000 | 0x83);   // PD[1]: 2 MiB page at 2 MiB (outside RAM)
    vm.ops.mode_ = x86::CpuMode::long64;
    vm.ops.cr0_ = CR0_PE | CR0_PG;
    vm.ops.cr3_ = 0x10000;
    vm.ops.cr4_ = CR4_PAE;
    vm.ops.efer_ = EFER_LME | EFER_LMA;
}

TEST(VmExitPaging, CpuidDecodedThroughPageWalk)
{
    Vm vm;
    long_mode_paging(vm);
    vm.put(0x20010, {0x0f, 0xa2});
    vm.ops.rip_ = 0x40000010;
    ASSERT_EQ(vm.cpuid(0x40000000).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.rip_, 0x40000012u);
    EXPECT_EQ(vm.g.rax, KEEL_CPUID_MAX);
}

TEST(VmExitPaging, InstructionStraddlingPages)
{
    Vm vm;
    long_mode_paging(vm);
    vm.put(0x20fff, {0x0f});
    vm.put(0x50000, {0xa2});
    vm.ops.rip_ = 0x40000fff;
    ASSERT_EQ(vm.cpuid(0).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.rip_, 0x40001001u);

    // Longer, split after three bytes.
    vm.put(0x20ffd, {0x66, 0x2e, 0x3e});
    vm.put(0x50000, {0x0f, 0xa2});
    vm.ops.rip_ = 0x40000ffd;
    ASSERT_EQ(vm.cpuid(0).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.rip_, 0x40001002u);
}

TEST(VmExitPaging, SecondPageUnmappedStops)
{
    Vm vm;
    long_mode_paging(vm);
    vm.put64(0x13000 + 1 * 8, 0);             // PT[1] not present
    vm.put(0x20fff, {0x0f});
    vm.ops.rip_ = 0x40000fff;
    auto o = vm.cpuid(0);
    EXPECT_EQ(o.action, ExitAction::stop);
    EXPECT_EQ(o.addr, 0x40000fffu);
    EXPECT_EQ(vm.ops.rip_, 0x40000fffu);

    // First page unmapped, or mapped outside RAM.
    vm.ops.rip_ = 0x40002000;
    EXPECT_EQ(vm.cpuid(0).action, ExitAction::stop);
    vm.ops.rip_ = 0x40200000;
    EXPECT_EQ(vm.cpuid(0).action, ExitAction::stop);
}

TEST(VmExitPaging, StringIoWithPagingStops)
{
    Vm vm;
    long_mode_paging(vm);
    vm.g.rsi = 0x40000000;
    vm.g.rcx = 1;
    auto o = vm.run(vm.string_io(0x3f8, 1, false, true, 8));
    EXPECT_EQ(o.action, ExitAction::stop);
    EXPECT_EQ(vm.g.rcx, 1u);
}

// ------------------------------------------------------------------------------------------- MSRs

TEST(VmExitMsr, UnknownInjectsGpAndKeepsRip)
{
    Vm vm;
    vm.g.rax = 0x1111, vm.g.rdx = 0x2222;
    ASSERT_EQ(vm.msr(false, 0x12345).action, ExitAction::resume);
    ASSERT_EQ(vm.ops.injected.size(), 1u);
    EXPECT_EQ(vm.ops.injected[0].vector, GP);
    EXPECT_TRUE(vm.ops.injected[0].has_error);
    EXPECT_EQ(vm.ops.injected[0].error, 0u);
    EXPECT_EQ(vm.ops.rip_, 0x1000u);
    EXPECT_EQ(vm.g.rax, 0x1111u);
    EXPECT_EQ(vm.g.rdx, 0x2222u);

    ASSERT_EQ(vm.msr(true, 0x12345, 1).action, ExitAction::resume);
    ASSERT_EQ(vm.ops.injected.size(), 2u);
    EXPECT_EQ(vm.ops.injected[1].vector, GP);
    EXPECT_EQ(vm.ops.injected[1].error, 0u);
    EXPECT_EQ(vm.ops.rip_, 0x1000u);

    // Soft MSRs are read-only.
    ASSERT_EQ(vm.msr(true, 0x1b, 0xfee00900).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.injected.size(), 3u);
    EXPECT_EQ(vm.ops.rip_, 0x1000u);
}

TEST(VmExitMsr, SoftMsrs)
{
    Vm vm(true);   // APIC_BASE exists only where CPUID shows an APIC
    vm.g.rdx = 0xffffffffffffffffull;
    ASSERT_EQ(vm.msr(false, 0x1b, 0, 0).action, ExitAction::resume);
    EXPECT_EQ(vm.g.rax, 0xfee00000u | (1u << 11) | (1u << 8));
    EXPECT_EQ(vm.g.rdx, 0u);
    EXPECT_EQ(vm.ops.rip_, 0x1002u);

    ASSERT_EQ(vm.msr(false, 0x1b, 0, 1).action, ExitAction::resume);
    EXPECT_EQ(vm.g.rax, 0xfee00000u | (1u << 11));

    ASSERT_EQ(vm.msr(false, 0x1a0).action, ExitAction::resume);
    EXPECT_EQ(vm.g.rax, 0x1801u);   // fast strings; BTS, PEBS unavailable
    EXPECT_EQ(vm.g.rdx, 0u);
    for (u32 m : {0x8bu, 0x17u}) {
        vm.g.rax = 5;
        ASSERT_EQ(vm.msr(false, m).action, ExitAction::resume);
        EXPECT_EQ(vm.g.rax, 0u);
    }
    EXPECT_TRUE(vm.ops.injected.empty());
    EXPECT_EQ(vm.ops.rip_, 0x1000u + 5 * 2);
}

TEST(VmExitMsr, MiscEnableWritableBitsPerVcpu)
{
    Vm vm(true);
    vm.p.vcpu_count = 2;
    // Clear fast strings, set EIST and xTPR disable on vCPU 1; the read-only bits stay.
    ASSERT_EQ(vm.msr(true, 0x1a0, 1u << 16 | 1u << 23, 1).action, ExitAction::resume);
    EXPECT_TRUE(vm.ops.injected.empty());
    ASSERT_EQ(vm.msr(false, 0x1a0, 0, 1).action, ExitAction::resume);
    EXPECT_EQ(vm.g.rax, 1u << 16 | 1u << 23 | 0x1800u);
    ASSERT_EQ(vm.msr(false, 0x1a0, 0, 0).action, ExitAction::resume);   // vCPU 0 untouched
    EXPECT_EQ(vm.g.rax, 0x1801u);
    // What Keel does not model cannot be switched on: MWAIT (18), CPUID limit (22), XD disable (34).
    for (u64 bad : {1ull << 18, 1ull << 22, 1ull << 34, 1ull << 63}) {
        const usize n = vm.ops.injected.size();
        ASSERT_EQ(vm.msr(true, 0x1a0, 0x1801 | bad, 0).action, ExitAction::resume);
        ASSERT_EQ(vm.ops.injected.size(), n + 1) << std::hex << bad;
        EXPECT_EQ(vm.ops.injected.back().vector, GP);
    }
    ASSERT_EQ(vm.msr(false, 0x1a0, 0, 0).action, ExitAction::resume);
    EXPECT_EQ(vm.g.rax, 0x1801u);
    // Writing the read-only bits as 0 is ignored (they stay set), as on the CPU.
    ASSERT_EQ(vm.msr(true, 0x1a0, 1, 0).action, ExitAction::resume);
    ASSERT_EQ(vm.msr(false, 0x1a0, 0, 0).action, ExitAction::resume);
    EXPECT_EQ(vm.g.rax, 0x1801u);
}

TEST(VmExitMsr, ArchMsrsRouted)
{
    Vm vm;
    vm.g.rax = 0xffffffff00000000ull;
    ASSERT_EQ(vm.msr(false, MSR_PAT).action, ExitAction::resume);
    EXPECT_EQ(vm.g.rax, 0x00070406u);
    EXPECT_EQ(vm.g.rdx, 0x00070406u);
    EXPECT_EQ(vm.ops.rip_, 0x1002u);

    // RCX's upper half is ignored.
    vm.g.rcx = 0xdead0000ull << 32 | MSR_EFER;
    ExitInfo e;
    e.reason = ExitReason::rdmsr;
    e.next_rip = 0x2000;
    ASSERT_EQ(vm.run(e).action, ExitAction::resume);
    EXPECT_EQ(vm.g.rax, 0x500u);
    EXPECT_EQ(vm.ops.rip_, 0x2000u);

    ASSERT_EQ(vm.msr(true, MSR_PAT, 0x0106010601060106ull).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.msrs[MSR_PAT], 0x0106010601060106ull);
    EXPECT_EQ(vm.ops.rip_, 0x2002u);

    // WRMSR takes EDX:EAX, ignoring the upper halves.
    vm.g.rcx = MSR_FS_BASE;
    vm.g.rax = 0xaaaaaaaa00001000ull;
    vm.g.rdx = 0xbbbbbbbbffff8000ull;
    e.reason = ExitReason::wrmsr;
    e.next_rip = 0x3000;
    ASSERT_EQ(vm.run(e).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.msrs[MSR_FS_BASE], 0xffff800000001000ull);
    EXPECT_TRUE(vm.ops.injected.empty());
}

TEST(VmExitMsr, InvalidValuesRefusedBeforeTheBackend)
{
    Vm vm;
    const std::pair<u32, u64> bad[] = {
        {MSR_FS_BASE, 0x0000800000000000ull}, {MSR_LSTAR, 0x8000000000000000ull},
        {0xc0000101, 0x00ff000000000000ull},   {0x176, 0x1234000000000000ull},
        {MSR_TSC_AUX, 0x100000000ull},         {0xc0000084, 0xffffffff00000000ull},
    };
    for (auto [msr, v] : bad) {
        ASSERT_EQ(vm.msr(true, msr, v).action, ExitAction::resume) << std::hex << msr;
    }
    EXPECT_TRUE(vm.ops.wrmsr_calls.empty());
    ASSERT_EQ(vm.ops.injected.size(), std::size(bad));
    for (auto &i : vm.ops.injected) {
        EXPECT_EQ(i.vector, GP);
        EXPECT_EQ(i.error, 0u);
    }
    EXPECT_EQ(vm.ops.rip_, 0x1000u);
    EXPECT_EQ(vm.ops.msrs[MSR_FS_BASE], 0u);

    // The canonical extremes are fine.
    ASSERT_EQ(vm.msr(true, MSR_LSTAR, 0x00007fffffffffffull).action, ExitAction::resume);
    ASSERT_EQ(vm.msr(true, MSR_FS_BASE, 0xffff800000000000ull).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.msrs[MSR_LSTAR], 0x00007fffffffffffull);
    EXPECT_EQ(vm.ops.msrs[MSR_FS_BASE], 0xffff800000000000ull);
    EXPECT_EQ(vm.ops.injected.size(), std::size(bad));
    // A valid TSC_AUX reaches the backend (which refuses it here).
    ASSERT_EQ(vm.msr(true, MSR_TSC_AUX, 0xffffffff).action, ExitAction::resume);
    ASSERT_EQ(vm.ops.wrmsr_calls.size(), 3u);
    EXPECT_EQ(vm.ops.wrmsr_calls[2].first, MSR_TSC_AUX);
}

// --------------------------------------------------------------------------------------- Port I/O

TEST(VmExitIo, UartLine)
{
    Vm vm;
    vm.out_str(0x3f8, "hi\n");
    ASSERT_EQ(vm.lines.size(), 1u);
    EXPECT_EQ(vm.lines[0], "hi");
    EXPECT_EQ(vm.ops.rip_, 0x1003u);
    // CR is dropped, a partial line waits for flush.
    vm.out_str(0x3f8, "a\r\nb");
    ASSERT_EQ(vm.lines.size(), 2u);
    EXPECT_EQ(vm.lines[1], "a");
    vm.uart.flush();
    ASSERT_EQ(vm.lines.size(), 3u);
    EXPECT_EQ(vm.lines[2], "b");
    vm.uart.flush();
    EXPECT_EQ(vm.lines.size(), 3u);
}

TEST(VmExitIo, InFromUnclaimedPort)
{
    Vm vm;
    const u64 rax = 0x1122334455667788ull;
    EXPECT_EQ(vm.in(0x80, 1, rax), 0x11223344556677ffull);
    EXPECT_EQ(vm.in(0x80, 2, rax), 0x112233445566ffffull);
    EXPECT_EQ(vm.in(0x80, 4, rax), 0xffffffffull);
    EXPECT_EQ(vm.ops.rip_, 0x1003u);
    // The debug-exit port reads all-ones too.
    EXPECT_EQ(vm.in(0xf4, 1, rax), 0x11223344556677ffull);
}

TEST(VmExitIo, UartRegisters)
{
    Vm vm;
    const u64 rax = 0xaabbccddeeff0011ull;
    EXPECT_EQ(vm.in(0x3fd, 1, rax), 0xaabbccddeeff0060ull);   // LSR
    EXPECT_EQ(vm.in(0x3fd, 4, rax), 0x60u);
    EXPECT_EQ(vm.in(0x3fa, 1), 0x01u);                        // IIR
    ASSERT_EQ(vm.out(0x3ff, 1, 0x5a).action, ExitAction::resume);
    EXPECT_EQ(vm.in(0x3ff, 1, rax), 0xaabbccddeeff005aull);
    EXPECT_EQ(vm.in(0x3f8, 1), 0u);                           // nothing received
    // Divisor latch: with DLAB set, writes to 0/1 do not transmit.
    vm.out(0x3fb, 1, 0x83);
    vm.out(0x3f8, 1, 0x03);
    vm.out(0x3f9, 1, 0x00);
    EXPECT_EQ(vm.in(0x3f8, 1), 0x03u);
    EXPECT_EQ(vm.in(0x3fb, 1), 0x83u);
    vm.out(0x3fb, 1, 0x03);
    vm.out(0x3f9, 1, 0xff);
    EXPECT_EQ(vm.in(0x3f9, 1), 0x0fu);                        // IER keeps 4 bits
    EXPECT_TRUE(vm.lines.empty());
    vm.uart.flush();
    EXPECT_TRUE(vm.lines.empty());
    // Ports just outside the UART are unclaimed.
    EXPECT_EQ(vm.in(0x3f7, 1), 0xffu);
    EXPECT_EQ(vm.in(0x400, 1), 0xffu);
}

TEST(VmExitIo, UartControlCharsReplaced)
{
    Vm vm;
    vm.out_str(0x3f8, std::string("a\x1b[2Jb\tc\x7f\x01") + char(0x80) + char(0xff) + "\n");
    ASSERT_EQ(vm.lines.size(), 1u);
    EXPECT_EQ(vm.lines[0], "a.[2Jb\tc....");
}

TEST(VmExitIo, UartLongLineSplit)
{
    Vm vm;
    std::string s;
    for (int i = 0; i < 170; i++) s += char('a' + i % 26);
    vm.out_str(0x3f8, s + "\n");
    ASSERT_EQ(vm.lines.size(), 2u);
    EXPECT_EQ(vm.lines[0], s.substr(0, 160));
    EXPECT_EQ(vm.lines[1], s.substr(160));

    // Exactly 160 characters and a newline: one line, no empty one.
    vm.lines.clear();
    vm.out_str(0x3f8, s.substr(0, 160) + "\n");
    ASSERT_EQ(vm.lines.size(), 1u);
    EXPECT_EQ(vm.lines[0].size(), 160u);
}

TEST(VmExitIo, WideOutToUartSendsLowByte)
{
    Vm vm;
    ASSERT_EQ(vm.out(0x3f8, 4, 0x41424344).action, ExitAction::resume);
    ASSERT_EQ(vm.out(0x3f8, 2, 0x0a0a).action, ExitAction::resume);
    ASSERT_EQ(vm.lines.size(), 1u);
    EXPECT_EQ(vm.lines[0], "D");
}

TEST(VmExitIo, DebugExit)
{
    Vm vm;
    ASSERT_EQ(vm.out(0xf5, 4, 0x31).action, ExitAction::resume);   // not the port
    EXPECT_FALSE(vm.p.exit_requested);
    EXPECT_EQ(vm.in(0xf4, 4), 0xffffffffu);
    EXPECT_FALSE(vm.p.exit_requested);
    ASSERT_EQ(vm.out(0xf4, 4, 0x31).action, ExitAction::resume);
    EXPECT_TRUE(vm.p.exit_requested);
    EXPECT_EQ(vm.p.exit_code, 0x31u);
    EXPECT_EQ(vm.ops.rip_, 0x1003u);
}

TEST(VmExitIo, DebugExitAnyWidth)
{
    // OUTB and OUTW work as on QEMU's isa-debug-exit: only the bytes written count.
    Vm b;
    ASSERT_EQ(b.out(0xf4, 1, 0xabcd12).action, ExitAction::resume);
    EXPECT_TRUE(b.p.exit_requested);
    EXPECT_EQ(b.p.exit_code, 0x12u);
    Vm w;
    ASSERT_EQ(w.out(0xf4, 2, 0xabcd12).action, ExitAction::resume);
    EXPECT_TRUE(w.p.exit_requested);
    EXPECT_EQ(w.p.exit_code, 0xcd12u);
}

TEST(VmExitIo, BadSizeStops)
{
    Vm vm;
    EXPECT_EQ(vm.out(0x3f8, 3, 'x').action, ExitAction::stop);
    EXPECT_EQ(vm.out(0x3f8, 8, 'x').action, ExitAction::stop);
    EXPECT_EQ(vm.ops.rip_, 0x1000u);
    vm.uart.flush();
    EXPECT_TRUE(vm.lines.empty());
}

TEST(VmExitIo, DecodedOutInstruction)
{
    Vm vm;
    vm.put(0x1000, {0xe6, 0x80});    // out 0x80, al
    vm.put(0x1002, {0xee});          // out dx, al
    ExitInfo e;
    e.reason = ExitReason::io;
    e.port = 0x80, e.size = 1;
    ASSERT_EQ(vm.run(e).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.rip_, 0x1002u);
    e.port = 0x3f8;
    vm.g.rax = '\n';
    ASSERT_EQ(vm.run(e).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.rip_, 0x1003u);
}

// ------------------------------------------------------------------------------------- String I/O

TEST(VmExitStringIo, RepOutsbToUart)
{
    Vm vm;
    const char msg[] = "hello, world\n";
    memcpy(&vm.ram[0x2000], msg, sizeof(msg) - 1);
    vm.g.rsi = 0x2000;
    vm.g.rcx = sizeof(msg) - 1;
    ASSERT_EQ(vm.run(vm.string_io(0x3f8, 1, false, true)).action, ExitAction::resume);
    ASSERT_EQ(vm.lines.size(), 1u);
    EXPECT_EQ(vm.lines[0], "hello, world");
    EXPECT_EQ(vm.g.rsi, 0x2000u + sizeof(msg) - 1);
    EXPECT_EQ(vm.g.rcx, 0u);
    EXPECT_EQ(vm.ops.rip_, 0x1002u);

    // REP with RCX = 0: nothing moves, RIP advances.
    ASSERT_EQ(vm.run(vm.string_io(0x3f8, 1, false, true)).action, ExitAction::resume);
    EXPECT_EQ(vm.g.rsi, 0x2000u + sizeof(msg) - 1);
    EXPECT_EQ(vm.ops.rip_, 0x1004u);

    // Without REP: one element, RCX untouched.
    vm.g.rsi = 0x2000;
    vm.g.rcx = 77;
    ASSERT_EQ(vm.run(vm.string_io(0x3f8, 1, false, false)).action, ExitAction::resume);
    EXPECT_EQ(vm.g.rsi, 0x2001u);
    EXPECT_EQ(vm.g.rcx, 77u);
    EXPECT_EQ(vm.ops.rip_, 0x1006u);
}

TEST(VmExitStringIo, LongRepResumesWithoutAdvancingRip)
{
    Vm vm;
    const u64 n = 5000;
    memset(&vm.ram[0x10000], 'x', n);
    vm.g.rsi = 0x10000;
    vm.g.rcx = n;
    ASSERT_EQ(vm.run(vm.string_io(0x3f8, 1, false, true)).action, ExitAction::resume);
    EXPECT_EQ(vm.g.rcx, n - 4096);
    EXPECT_EQ(vm.g.rsi, 0x10000u + 4096);
    EXPECT_EQ(vm.ops.rip_, 0x1000u);
    ASSERT_EQ(vm.run(vm.string_io(0x3f8, 1, false, true)).action, ExitAction::resume);
    EXPECT_EQ(vm.g.rcx, 0u);
    EXPECT_EQ(vm.g.rsi, 0x10000u + n);
    EXPECT_EQ(vm.ops.rip_, 0x1002u);
    vm.uart.flush();
    usize total = 0;
    for (auto &l : vm.lines) total += l.size();
    EXPECT_EQ(total, n);
}

TEST(VmExitStringIo, DirectionFlag)
{
    Vm vm;
    vm.put(0x3000, {'\n', 'i', 'h'});
    vm.ops.rflags_ |= RFLAGS_DF;
    vm.g.rsi = 0x3002;
    vm.g.rcx = 3;
    ASSERT_EQ(vm.run(vm.string_io(0x3f8, 1, false, true)).action, ExitAction::resume);
    ASSERT_EQ(vm.lines.size(), 1u);
    EXPECT_EQ(vm.lines[0], "hi");
    EXPECT_EQ(vm.g.rsi, 0x2fffu);
    EXPECT_EQ(vm.g.rcx, 0u);

    // Word-sized INS backwards.
    vm.g.rdi = 0x4004;
    vm.g.rcx = 2;
    ASSERT_EQ(vm.run(vm.string_io(0x80, 2, true, true)).action, ExitAction::resume);
    EXPECT_EQ(vm.g.rdi, 0x4000u);
    EXPECT_EQ(vm.ram[0x4004], 0xff);
    EXPECT_EQ(vm.ram[0x4003], 0xff);
    EXPECT_EQ(vm.ram[0x4002], 0xff);
    EXPECT_EQ(vm.ram[0x4006], 0x00);
    EXPECT_EQ(vm.ram[0x4001], 0x00);
}

TEST(VmExitStringIo, SourceOutsideRamStops)
{
    Vm vm;
    vm.g.rsi = RAM_SIZE + 0x100;
    vm.g.rcx = 4;
    auto o = vm.run(vm.string_io(0x3f8, 1, false, true));
    EXPECT_EQ(o.action, ExitAction::stop);
    EXPECT_EQ(o.addr, RAM_SIZE + 0x100);
    ASSERT_NE(o.why, nullptr);
    EXPECT_NE(strstr(o.why, "OUTS"), nullptr);
    EXPECT_EQ(vm.ops.rip_, 0x1000u);

    // Running off the end of RAM part-way.
    vm.ram[RAM_SIZE - 1] = 'z';
    vm.g.rsi = RAM_SIZE - 1;
    vm.g.rcx = 4;
    o = vm.run(vm.string_io(0x3f8, 1, false, true));
    EXPECT_EQ(o.action, ExitAction::stop);
    EXPECT_EQ(o.addr, RAM_SIZE);

    // A dword straddling the end of RAM.
    vm.g.rdi = RAM_SIZE - 2;
    o = vm.run(vm.string_io(0x3fd, 4, true, false));
    EXPECT_EQ(o.action, ExitAction::stop);
    EXPECT_EQ(o.addr, RAM_SIZE - 2);
    EXPECT_EQ(vm.ram[RAM_SIZE - 2], 0);
}

TEST(VmExitStringIo, InsWritesGuestRam)
{
    Vm vm;
    vm.g.rdi = 0x4000;
    vm.g.rcx = 4;
    ASSERT_EQ(vm.run(vm.string_io(0x3fd, 1, true, true)).action, ExitAction::resume);
    for (int i = 0; i < 4; i++) EXPECT_EQ(vm.ram[0x4000 + i], 0x60);
    EXPECT_EQ(vm.ram[0x4004], 0);
    EXPECT_EQ(vm.g.rdi, 0x4004u);
    EXPECT_EQ(vm.g.rcx, 0u);
    EXPECT_EQ(vm.ops.rip_, 0x1002u);

    // Dword INS from an unclaimed port.
    vm.g.rdi = 0x5000;
    ASSERT_EQ(vm.run(vm.string_io(0x80, 4, true, false)).action, ExitAction::resume);
    u32 v;
    memcpy(&v, &vm.ram[0x5000], 4);
    EXPECT_EQ(v, 0xffffffffu);
    EXPECT_EQ(vm.g.rdi, 0x5004u);
}

TEST(VmExitStringIo, AddressSizeWraps)
{
    Vm vm;
    vm.ram[0xffff] = 'q';
    vm.ram[0] = '\n';
    vm.g.rsi = 0xabcd0000ffffull;
    vm.g.rcx = 0x1234560000000002ull;   // CX = 2
    ASSERT_EQ(vm.run(vm.string_io(0x3f8, 1, false, true, 2)).action, ExitAction::resume);
    EXPECT_EQ(vm.g.rsi, 0xabcd00000001ull);
    EXPECT_EQ(vm.g.rcx, 0x1234560000000000ull);
    ASSERT_EQ(vm.lines.size(), 1u);
    EXPECT_EQ(vm.lines[0], "q");
    EXPECT_EQ(vm.ops.rip_, 0x1002u);
}

// ------------------------------------------------------------------------------------ other exits

TEST(VmExitOther, NestedPageFaultStopsWhenAsked)
{
    Vm vm;
    vm.p.stop_on_bad_access = true;   // on_bad_access = "stop"
    struct {
        bool write, fetch;
        const char *word;
    } cases[] = {{false, false, "read"}, {true, false, "write"}, {false, true, "fetch"}, {true, true, "fetch"}};
    for (auto &c : cases) {
        ExitInfo e;
        e.reason = ExitReason::npf;
        e.gpa = 0xfee00030;
        e.write = c.write, e.fetch = c.fetch;
        auto o = vm.run(e);
        EXPECT_EQ(o.action, ExitAction::stop);
        EXPECT_EQ(o.addr, 0xfee00030u);
        ASSERT_NE(o.why, nullptr);
        EXPECT_NE(strstr(o.why, c.word), nullptr) << o.why;
    }
    EXPECT_EQ(vm.ops.rip_, 0x1000u);
}

// ---- on_bad_access = "pc": unclaimed guest-physical space floats high ----

TEST(VmExitBadAccess, ReadsAllOnesWritesDroppedCountedLoggedOncePerPage)
{
    Vm vm;
    vm.g.rax = 0xe0000000;
    vm.g.rbx = 0x11223344;
    vm.put(0x1000, {0x8b, 0x18});   // mov (%eax), %ebx
    ExitInfo e;
    e.reason = ExitReason::npf;
    e.gpa = 0xe0000000;
    ASSERT_EQ(vm.run(e).action, ExitAction::resume);
    EXPECT_EQ(vm.g.rbx, 0xffffffffu);
    EXPECT_EQ(vm.ops.rip_, 0x1002u);
    vm.put(0x1002, {0x89, 0x08});   // mov %ecx, (%eax)
    e.write = true;
    ASSERT_EQ(vm.run(e).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.rip_, 0x1004u);
    EXPECT_EQ(vm.p.bad_accesses, 2u);
    EXPECT_EQ(vm.p.nbad_pages, 1u);   // one page: logged once
    // Many pages: the log stops at MAX_BAD_PAGES, the count goes on.
    for (u64 i = 0; i < 40; i++) EXPECT_EQ(vm.p.note_bad_access(0xe1000000 + i * 4096), i < 15);
    EXPECT_EQ(vm.p.nbad_pages, GuestPlatform::MAX_BAD_PAGES);
    EXPECT_EQ(vm.p.bad_accesses, 42u);
}

// A per-vCPU device (a local APIC) that one vCPU has switched off: for that vCPU its page is
// unclaimed memory (all ones, counted), while another vCPU still reaches its own device there.
TEST(VmExitBadAccess, PerVcpuDeviceOffIsUnclaimedForThatVcpu)
{
    struct Dev final : MmioDevice {
        int calls = 0;
        bool covers(u64 gpa) const override { return (gpa & ~0xfffull) == 0xfee00000; }
        bool covers_for(u32 vcpu, u64 gpa) const override { return vcpu == 1 && covers(gpa); }
        void mmio(u32, u64, u8, bool, u64 &v) override
        {
            calls++;
            v = 0x50014;
        }
    } dev;
    Vm vm;
    ASSERT_TRUE(vm.p.add_mmio(&dev));
    vm.g.rax = 0xfee00030;
    vm.put(0x1000, {0x8b, 0x18});   // mov (%eax), %ebx
    ExitInfo e;
    e.reason = ExitReason::npf;
    e.gpa = 0xfee00030;
    ASSERT_EQ(vm.run(e, 0).action, ExitAction::resume);
    EXPECT_EQ(vm.g.rbx, 0xffffffffu);
    EXPECT_EQ(dev.calls, 0);
    EXPECT_EQ(vm.p.bad_accesses, 1u);
    vm.put(0x1002, {0x8b, 0x18});
    ASSERT_EQ(vm.run(e, 1).action, ExitAction::resume);
    EXPECT_EQ(vm.g.rbx, 0x50014u);
    EXPECT_EQ(dev.calls, 1);
    EXPECT_EQ(vm.p.bad_accesses, 1u);
    vm.p.stop_on_bad_access = true;   // on_bad_access = "stop": stops there, as anywhere unclaimed
    vm.put(0x1004, {0x8b, 0x18});
    EXPECT_EQ(vm.run(e, 0).action, ExitAction::stop);
}

TEST(VmExitBadAccess, FetchAndEventDeliveryStillStop)
{
    Vm vm;
    ExitInfo e;
    e.reason = ExitReason::npf;
    e.gpa = 0xe0000000;
    e.fetch = true;
    EXPECT_EQ(vm.run(e).action, ExitAction::stop);   // nothing to execute there
    e.fetch = false;
    e.in_delivery = true;                            // an IDT or stack in nowhere
    EXPECT_EQ(vm.run(e).action, ExitAction::stop);
    e.in_delivery = false;
    vm.put(0x1000, {0xf3, 0xa5});                    // rep movsd: not a plain MOV
    EXPECT_EQ(vm.run(e).action, ExitAction::stop);
    EXPECT_EQ(vm.ops.rip_, 0x1000u);
}

// A read-modify-write on a device (what clang makes of `*p |= 6` on volatile) is named for what it
// is, not as a bad access size.
TEST(VmExitMmio, ReadModifyWriteStopsAsUnsupported)
{
    struct Dev final : MmioDevice {
        int calls = 0;
        bool covers(u64 gpa) const override { return (gpa & ~0xfffull) == 0xfee00000; }
        void mmio(u32, u64, u8, bool, u64 &) override { calls++; }
    } dev;
    Vm vm;
    ASSERT_TRUE(vm.p.add_mmio(&dev));
    vm.g.rax = 0xfee00030;
    vm.put(0x1000, {0x66, 0x83, 0x08, 0x06});         // orw $6, (%eax)
    ExitInfo e;
    e.reason = ExitReason::npf;
    e.gpa = 0xfee00030;
    const ExitOutcome out = vm.run(e);
    EXPECT_EQ(out.action, ExitAction::stop);
    ASSERT_NE(out.why, nullptr);
    EXPECT_STREQ(out.why, "unsupported instruction accessing MMIO at");
    EXPECT_EQ(dev.calls, 0);
    EXPECT_EQ(vm.ops.rip_, 0x1000u);
}

// A vCPU's MMIO instructions are decoded once and reused (x86::DecodeMemo) only while every byte
// of the instruction and the CPU mode are the same: a guest that rewrites the instruction at the
// same RIP, or runs the same bytes in another mode, gets the new instruction's effect.
TEST(VmExitMmio, DecodeMemoFollowsTheBytesAndTheMode)
{
    struct Dev final : MmioDevice {
        int reads = 0, writes = 0;
        u64 last = 0;
        bool covers(u64 gpa) const override { return (gpa & ~0xfffull) == 0xfee00000; }
        void mmio(u32, u64, u8 size, bool write, u64 &v) override
        {
            if (write) writes++, last = v;
            else reads++, v = 0x1234;
        }
    } dev;
    Vm vm;
    ASSERT_TRUE(vm.p.add_mmio(&dev));
    ExitInfo e;
    e.reason = ExitReason::npf;
    e.gpa = 0xfee000b0;
    vm.g.rax = 0xfee000b0;
    vm.g.rbx = 0x77;
    for (int i = 0; i < 3; i++) {   // the same store again and again (cached after the first)
        vm.ops.rip_ = 0x1000;
        vm.put(0x1000, {0x89, 0x18});   // mov %ebx, (%eax)
        ASSERT_EQ(vm.run(e).action, ExitAction::resume);
        EXPECT_EQ(vm.ops.rip_, 0x1002u);
    }
    EXPECT_EQ(dev.writes, 3);
    EXPECT_EQ(dev.last, 0x77u);
    // Rewritten in place: a load now, into EBX.
    vm.ops.rip_ = 0x1000;
    vm.put(0x1000, {0x8b, 0x18});       // mov (%eax), %ebx
    ASSERT_EQ(vm.run(e).action, ExitAction::resume);
    EXPECT_EQ(dev.reads, 1);
    EXPECT_EQ(vm.g.rbx, 0x1234u);
    // Only the last byte differs (the immediate of movl $imm32, disp32): the new value is written.
    vm.ops.rip_ = 0x1000;
    vm.put(0x1000, {0xc7, 0x05, 0xb0, 0x00, 0xe0, 0xfe, 0x11, 0x22, 0x33, 0x44});
    ASSERT_EQ(vm.run(e).action, ExitAction::resume);
    EXPECT_EQ(dev.last, 0x44332211u);
    EXPECT_EQ(vm.ops.rip_, 0x100au);
    vm.ops.rip_ = 0x1000;
    vm.put(0x1009, {0x55});
    ASSERT_EQ(vm.run(e).action, ExitAction::resume);
    EXPECT_EQ(dev.last, 0x55332211u);
    // The same bytes in 16-bit mode: 66 89 18 is mov %ebx, (%bx,%si) there, a 32-bit store in
    // 32-bit mode with 66 is a 16-bit one. Decoded per mode.
    vm.ops.rip_ = 0x1000;
    vm.put(0x1000, {0x66, 0x89, 0x18});
    vm.g.rbx = 0xabcdef01;
    ASSERT_EQ(vm.run(e).action, ExitAction::resume);
    EXPECT_EQ(dev.last, 0xef01u);       // 16-bit store
    vm.ops.mode_ = x86::CpuMode::real16;
    vm.ops.rip_ = 0x1000;
    ASSERT_EQ(vm.run(e).action, ExitAction::resume);
    EXPECT_EQ(dev.last, 0xabcdef01u);   // 32-bit store (66 in 16-bit code)
    EXPECT_EQ(vm.ops.rip_, 0x1003u);
}

TEST(VmExitOther, ShutdownStops)
{
    Vm vm;
    ExitInfo e;
    e.reason = ExitReason::shutdown;
    auto o = vm.run(e);
    EXPECT_EQ(o.action, ExitAction::stop);
    EXPECT_NE(o.why, nullptr);
}

TEST(VmExitOther, HltHaltsAndAdvances)
{
    Vm vm;
    vm.put(0x1000, {0xf4});
    ExitInfo e;
    e.reason = ExitReason::hlt;
    EXPECT_EQ(vm.run(e).action, ExitAction::halt);
    EXPECT_EQ(vm.ops.rip_, 0x1001u);
    e.next_rip = 0x1234;
    EXPECT_EQ(vm.run(e).action, ExitAction::halt);
    EXPECT_EQ(vm.ops.rip_, 0x1234u);
}

// A host interrupt taken between STI and HLT: the HLT completes in Keel (an interrupt waiting for
// the guest must come after it, never before it: QEMU's VMRUN would drop the shadow).
TEST(VmExitOther, InterruptInStiShadowCompletesTheHlt)
{
    for (auto r : {ExitReason::intr, ExitReason::nmi}) {
        Vm vm;
        vm.put(0x1000, {0xf4});
        vm.ops.sti_shadow_ = true;
        ExitInfo e;
        e.reason = r;
        EXPECT_EQ(vm.run(e).action, ExitAction::halt);
        EXPECT_EQ(vm.ops.rip_, 0x1001u);
        EXPECT_FALSE(vm.ops.sti_shadow_);
    }
    // No shadow, or no HLT behind it: the exit changes nothing.
    Vm vm;
    vm.put(0x1000, {0xf4});
    ExitInfo e;
    e.reason = ExitReason::intr;
    EXPECT_EQ(vm.run(e).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.rip_, 0x1000u);
    vm.put(0x1000, {0x90});
    vm.ops.sti_shadow_ = true;
    EXPECT_EQ(vm.run(e).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.rip_, 0x1000u);
    EXPECT_TRUE(vm.ops.sti_shadow_);
    // Single-stepped: the HLT retires with its #DB and the vCPU runs on to take it.
    vm.put(0x1000, {0xf4});
    vm.ops.rflags_ = 2 | (1u << 8);
    EXPECT_EQ(vm.run(e).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.rip_, 0x1001u);
    ASSERT_EQ(vm.ops.injected.size(), 1u);
    EXPECT_EQ(vm.ops.injected[0].vector, 1);
}

// ---- single-step: an instruction Keel emulates retires with its #DB, as on the CPU ----

constexpr u64 TF = 1u << 8, DR6_BS = 1u << 14;

TEST(VmExitSingleStep, EmulatedInstructionsTrapOnceEach)
{
    Vm vm;
    vm.ops.rflags_ = 2 | TF;
    vm.ops.dr6_ = 0xffff0ff0 | 0x3;   // B0, B1 left from an earlier breakpoint: a single-step clears them
    vm.put(0x1000, {0x0f, 0xa2});
    ASSERT_EQ(vm.cpuid(0).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.rip_, 0x1002u);
    ASSERT_EQ(vm.ops.injected.size(), 1u);
    EXPECT_EQ(vm.ops.injected[0].vector, 1);
    EXPECT_FALSE(vm.ops.injected[0].has_error);
    EXPECT_EQ(vm.ops.dr6_, 0xffff0ff0 | DR6_BS);

    ASSERT_EQ(vm.out(0x80, 1, 0).action, ExitAction::resume);   // port I/O
    ASSERT_EQ(vm.ops.injected.size(), 2u);
    EXPECT_EQ(vm.ops.injected[1].vector, 1);
    ASSERT_EQ(vm.msr(false, 0x1a0).action, ExitAction::resume);   // RDMSR MISC_ENABLE
    ASSERT_EQ(vm.ops.injected.size(), 3u);
    EXPECT_EQ(vm.ops.injected[2].vector, 1);
}

TEST(VmExitSingleStep, NoTrapWithoutTfOrWhenTheInstructionFaults)
{
    Vm vm;
    vm.put(0x1000, {0x0f, 0xa2});
    ASSERT_EQ(vm.cpuid(0).action, ExitAction::resume);
    EXPECT_TRUE(vm.ops.injected.empty());
    EXPECT_EQ(vm.ops.dr6_, 0xffff0ff0u);

    // A faulting instruction does not retire: #GP only, RIP stays, no single-step trap.
    vm.ops.rflags_ = 2 | TF;
    vm.ops.rip_ = 0x1000;
    ASSERT_EQ(vm.msr(false, 0x12345).action, ExitAction::resume);
    ASSERT_EQ(vm.ops.injected.size(), 1u);
    EXPECT_EQ(vm.ops.injected[0].vector, GP);
    EXPECT_EQ(vm.ops.rip_, 0x1000u);
    EXPECT_EQ(vm.ops.dr6_, 0xffff0ff0u);
}

// ---- data and I/O breakpoints on accesses Keel emulates ----

// DR7 for breakpoint n: L bit, RW and LEN fields (LEN encodings: 0 = 1, 1 = 2, 3 = 4, 2 = 8 bytes).
constexpr u64 bp(unsigned n, unsigned rw, unsigned len_code)
{
    return 1ull << (2 * n) | u64(rw) << (16 + 4 * n) | u64(len_code) << (18 + 4 * n);
}

TEST(Breakpoints, TypesLengthsAndAlignment)
{
    const u64 drs[4] = {0x1000, 0x1003, 0x2006, 0x80};
    // RW=01: writes only; RW=11: reads and writes; RW=00 (execution) never matches data.
    EXPECT_EQ(breakpoint_hits(bp(0, 1, 3), drs, 0x1000, 4, BpAccess::write, false), 1u);
    EXPECT_EQ(breakpoint_hits(bp(0, 1, 3), drs, 0x1000, 4, BpAccess::read, false), 0u);
    EXPECT_EQ(breakpoint_hits(bp(0, 3, 3), drs, 0x1000, 4, BpAccess::read, false), 1u);
    EXPECT_EQ(breakpoint_hits(bp(0, 0, 0), drs, 0x1000, 4, BpAccess::read, false), 0u);
    // Disabled (neither L nor G) never hits; G alone does.
    EXPECT_EQ(breakpoint_hits(u64(3) << 16 | u64(3) << 18, drs, 0x1000, 4, BpAccess::write, false), 0u);
    EXPECT_EQ(breakpoint_hits(2 | u64(3) << 16 | u64(3) << 18, drs, 0x1000, 4, BpAccess::write, false), 1u);
    // Overlap, not equality: a 1-byte access inside a 4-byte breakpoint, a 4-byte access over a
    // 1-byte one; DR1 = 0x1003 with LEN 4 covers 0x1000-0x1003 (aligned down).
    EXPECT_EQ(breakpoint_hits(bp(0, 3, 3), drs, 0x1002, 1, BpAccess::read, false), 1u);
    EXPECT_EQ(breakpoint_hits(bp(1, 3, 0), drs, 0x1000, 4, BpAccess::read, false), 2u);
    EXPECT_EQ(breakpoint_hits(bp(1, 3, 3), drs, 0x1000, 1, BpAccess::read, false), 2u);
    EXPECT_EQ(breakpoint_hits(bp(0, 3, 3), drs, 0x1004, 4, BpAccess::read, false), 0u);
    EXPECT_EQ(breakpoint_hits(bp(0, 3, 3), drs, 0x0ffc, 4, BpAccess::read, false), 0u);
    // LEN 8: 0x2006 covers 0x2000-0x2007.
    EXPECT_EQ(breakpoint_hits(bp(2, 1, 2), drs, 0x2000, 1, BpAccess::write, false), 4u);
    EXPECT_EQ(breakpoint_hits(bp(2, 1, 2), drs, 0x2008, 1, BpAccess::write, false), 0u);
    // RW=10: I/O, only with CR4.DE; a memory access never matches it, nor an I/O one RW=11.
    EXPECT_EQ(breakpoint_hits(bp(3, 2, 0), drs, 0x80, 1, BpAccess::io, true), 8u);
    EXPECT_EQ(breakpoint_hits(bp(3, 2, 0), drs, 0x80, 1, BpAccess::io, false), 0u);
    EXPECT_EQ(breakpoint_hits(bp(3, 2, 0), drs, 0x80, 1, BpAccess::write, true), 0u);
    EXPECT_EQ(breakpoint_hits(bp(3, 3, 0), drs, 0x80, 1, BpAccess::io, true), 0u);
    // Several at once.
    EXPECT_EQ(breakpoint_hits(bp(0, 3, 3) | bp(1, 3, 0), drs, 0x1000, 4, BpAccess::write, false), 3u);
}

TEST(Breakpoints, EmulatedMmioStoreAndPortOutTrapAfterTheInstruction)
{
    struct Dev final : MmioDevice {
        bool covers(u64 gpa) const override { return (gpa & ~0xfffull) == 0xfec00000; }
        void mmio(u32, u64, u8, bool write, u64 &v) override
        {
            if (!write) v = 0x20;
        }
    } dev;
    Vm vm;
    ASSERT_TRUE(vm.p.add_mmio(&dev));
    vm.ops.seg_base_[unsigned(x86::Seg::ds)] = 0x100;   // linear = DS base + offset
    vm.g.rax = 0xfec00000 - 0x100;
    vm.ops.drs_[2] = 0xfec00010;
    vm.ops.dr7_ = 0x400 | bp(2, 1, 3);
    vm.ops.dr6_ = 0xffff0ff0 | 1;                         // B0 from before: cleared
    vm.put(0x1000, {0x89, 0x48, 0x10});                   // mov %ecx, 0x10(%eax)
    ExitInfo e;
    e.reason = ExitReason::npf;
    e.gpa = 0xfec00010;
    e.write = true;
    ASSERT_EQ(vm.run(e).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.rip_, 0x1003u);
    ASSERT_EQ(vm.ops.injected.size(), 1u);
    EXPECT_EQ(vm.ops.injected[0].vector, 1);
    EXPECT_EQ(vm.ops.dr6_, 0xffff0ff0u | 4);
    // A load does not hit a write breakpoint.
    vm.put(0x1003, {0x8b, 0x48, 0x10});                   // mov 0x10(%eax), %ecx
    e.write = false;
    ASSERT_EQ(vm.run(e).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.injected.size(), 1u);
    EXPECT_EQ(vm.g.rcx, 0x20u);

    // OUT to a port under an I/O breakpoint (CR4.DE), with TF too: one #DB, B1 and BS.
    vm.ops.cr4_ |= 1u << 3;
    vm.ops.drs_[1] = 0x80;
    vm.ops.dr7_ = 0x400 | bp(1, 2, 0);
    vm.ops.rflags_ = 2 | TF;
    ASSERT_EQ(vm.out(0x80, 1, 0).action, ExitAction::resume);
    ASSERT_EQ(vm.ops.injected.size(), 2u);
    EXPECT_EQ(vm.ops.dr6_, 0xffff0ff0u | 2 | DR6_BS);
}

TEST(Breakpoints, TrapsHeldByMovSsJoinTheNextInstructionsDb)
{
    Vm vm;
    vm.put(0x1000, {0x0f, 0xa2});
    // CPUID right after a MOV SS that single-stepped: the CPU held BS back (VMX pending debug
    // exceptions); the guest gets exactly one #DB, after CPUID, with BS.
    vm.ops.rflags_ = 2 | TF;
    vm.ops.held_db_ = DR6_BS;
    ASSERT_EQ(vm.cpuid(0).action, ExitAction::resume);
    ASSERT_EQ(vm.ops.injected.size(), 1u);
    EXPECT_EQ(vm.ops.dr6_, 0xffff0ff0u | DR6_BS);
    // A data breakpoint the MOV SS hit (B0) without TF: still one #DB, after CPUID.
    vm.ops.rip_ = 0x1000;
    vm.ops.rflags_ = 2;
    vm.ops.dr6_ = 0xffff0ff0;   // as the guest's handler left it (BS is never cleared by the CPU)
    vm.ops.held_db_ = 1;
    ASSERT_EQ(vm.cpuid(0).action, ExitAction::resume);
    ASSERT_EQ(vm.ops.injected.size(), 2u);
    EXPECT_EQ(vm.ops.dr6_, 0xffff0ff0u | 1);
}

TEST(VmExitSingleStep, HltWithTfDoesNotHalt)
{
    Vm vm;
    vm.ops.rflags_ = 2 | TF;
    vm.put(0x1000, {0xf4});
    ExitInfo e;
    e.reason = ExitReason::hlt;
    EXPECT_EQ(vm.run(e).action, ExitAction::resume);   // the #DB is an event: the vCPU runs on
    EXPECT_EQ(vm.ops.rip_, 0x1001u);
    ASSERT_EQ(vm.ops.injected.size(), 1u);
    EXPECT_EQ(vm.ops.injected[0].vector, 1);
}

TEST(VmExitOther, VmcallMonitorAndForeignInstructionsInjectUd)
{
    Vm vm;
    for (auto r : {ExitReason::vmcall, ExitReason::xsetbv /* CR4.OSXSAVE clear */, ExitReason::monitor,
                   ExitReason::undefined}) {
        ExitInfo e;
        e.reason = r;
        e.next_rip = 0x1003;
        EXPECT_EQ(vm.run(e).action, ExitAction::resume);
    }
    ASSERT_EQ(vm.ops.injected.size(), 4u);
    for (auto &i : vm.ops.injected) {
        EXPECT_EQ(i.vector, UD);
        EXPECT_FALSE(i.has_error);
    }
    EXPECT_EQ(vm.ops.rip_, 0x1000u);
}

TEST(VmExitOther, UnknownReasonsStop)
{
    Vm vm;
    for (auto r : {ExitReason::other, ExitReason::invalid_state, ExitReason::machine_check, ExitReason::count,
                   ExitReason(200)}) {
        ExitInfo e;
        e.reason = r;
        e.raw = 0x7b;
        auto o = vm.run(e);
        EXPECT_EQ(o.action, ExitAction::stop) << int(r);
        EXPECT_EQ(o.addr, 0x7bu);
        EXPECT_NE(o.why, nullptr);
    }
    // Taken by Keel, reflected by the backend, or an interrupt window for the run loop: back to the guest.
    for (auto r : {ExitReason::intr, ExitReason::nmi, ExitReason::exception, ExitReason::irq_window}) {
        ExitInfo e;
        e.reason = r;
        EXPECT_EQ(vm.run(e).action, ExitAction::resume);
    }
    EXPECT_EQ(vm.ops.rip_, 0x1000u);
    EXPECT_TRUE(vm.ops.injected.empty());
}

TEST(VmExitOther, ReasonNames)
{
    EXPECT_STREQ(exit_reason_name(ExitReason::cpuid), "cpuid");
    EXPECT_STREQ(exit_reason_name(ExitReason::other), "other");
    EXPECT_STREQ(exit_reason_name(ExitReason::count), "?");
}

} // namespace

// ---- XSETBV, MOV to CR0/CR4, WBINVD, RDPMC: the guest's CPU profile decides ----

namespace {
constexpr u64 CR4_OSXSAVE = 1u << 18;

ExitOutcome xsetbv(Vm &vm, u64 value, u32 xcr = 0)
{
    vm.g.rcx = xcr, vm.g.rax = u32(value), vm.g.rdx = value >> 32;
    ExitInfo e;
    e.reason = ExitReason::xsetbv;
    e.next_rip = vm.ops.rip_ + 3;
    return vm.run(e);
}

ExitOutcome mov_cr(Vm &vm, u8 cr, u64 value)
{
    ExitInfo e;
    e.reason = ExitReason::cr_access;
    e.cr = cr, e.cr_decoded = true, e.cr_value = value;
    e.next_rip = vm.ops.rip_ + 3;
    return vm.run(e);
}
} // namespace

TEST(VmExitXsetbv, ArchitecturalRules)
{
    Vm vm;
    vm.p.xcr0_supported = 0x7;   // x87, SSE, AVX
    vm.ops.cr4_ = CR4_OSXSAVE;
    struct { u64 v; bool ok; } cases[] = {
        {0x1, true}, {0x3, true}, {0x7, true}, {0x0, false}, {0x2, false}, {0x5, false},
        {0x207, false} /* PKRU not supported */, {0xe7, false} /* AVX-512 not supported */, {1ull << 63, false}};
    for (auto c : cases) {
        vm.ops.injected.clear();
        const u64 rip = vm.ops.rip_, before = vm.ops.xcr0_;
        EXPECT_EQ(xsetbv(vm, c.v).action, ExitAction::resume);
        if (c.ok) {
            EXPECT_TRUE(vm.ops.injected.empty()) << std::hex << c.v;
            EXPECT_EQ(vm.ops.xcr0_, c.v);
            EXPECT_EQ(vm.ops.rip_, rip + 3);
        } else {
            ASSERT_EQ(vm.ops.injected.size(), 1u) << std::hex << c.v;
            EXPECT_EQ(vm.ops.injected[0].vector, GP);
            EXPECT_EQ(vm.ops.xcr0_, before);
            EXPECT_EQ(vm.ops.rip_, rip);
        }
    }
    // XCR other than 0, or CPL 3: #GP.
    vm.ops.injected.clear();
    xsetbv(vm, 3, 1);
    vm.ops.cpl_ = 3;
    xsetbv(vm, 3);
    ASSERT_EQ(vm.ops.injected.size(), 2u);
    EXPECT_EQ(vm.ops.injected[0].vector, GP);
    EXPECT_EQ(vm.ops.injected[1].vector, GP);
}

TEST(VmExitCr, HiddenCr4BitsFault)
{
    Vm vm;
    vm.p.cr4_reserved = 1u << 13 | 1u << 14 | 1u << 22 | ~0ull << 23;
    for (unsigned bit : {13u, 14u, 22u, 23u, 31u}) {
        vm.ops.injected.clear();
        vm.ops.cr4_ = 0;
        EXPECT_EQ(mov_cr(vm, 4, 1ull << bit).action, ExitAction::resume);
        ASSERT_EQ(vm.ops.injected.size(), 1u) << bit;
        EXPECT_EQ(vm.ops.injected[0].vector, GP);
        EXPECT_EQ(vm.ops.cr4_, 0u);
    }
    vm.ops.injected.clear();
    const u64 rip = vm.ops.rip_;
    EXPECT_EQ(mov_cr(vm, 4, 1u << 7 | 1u << 9).action, ExitAction::resume);   // PGE, OSFXSR: allowed
    EXPECT_TRUE(vm.ops.injected.empty());
    EXPECT_EQ(vm.ops.cr4_, 1u << 7 | 1u << 9);
    EXPECT_EQ(vm.ops.rip_, rip + 3);
}

TEST(VmExitCr, Cr4ModeRules)
{
    Vm vm;
    // PCIDE outside long mode, clearing PAE in long mode, toggling LA57 in long mode: #GP.
    vm.ops.cr4_ = 0;
    mov_cr(vm, 4, 1u << 17);
    vm.ops.efer_ = 0x500, vm.ops.mode_ = x86::CpuMode::long64, vm.ops.cr4_ = 1u << 5;
    mov_cr(vm, 4, 0);
    mov_cr(vm, 4, 1u << 5 | 1u << 12);
    vm.ops.cr3_ = 0x1001;
    mov_cr(vm, 4, 1u << 5 | 1u << 17);   // PCIDE with CR3[11:0] != 0
    ASSERT_EQ(vm.ops.injected.size(), 4u);
    vm.ops.injected.clear();
    vm.ops.cr3_ = 0x1000;
    mov_cr(vm, 4, 1u << 5 | 1u << 17);
    EXPECT_TRUE(vm.ops.injected.empty());
    EXPECT_EQ(vm.ops.cr4_, 1u << 5 | 1u << 17);
}

TEST(VmExitCr, Cr0Rules)
{
    Vm vm;
    vm.ops.cr0_ = 0x11;
    for (u64 bad : {u64(0x80000010) /* PG without PE */, u64(0x20000011) /* NW without CD */})
        mov_cr(vm, 0, bad);
    vm.ops.mode_ = x86::CpuMode::long64;
    mov_cr(vm, 0, 1ull << 32 | 0x11);   // reserved high half (only a 64-bit MOV can carry it)
    vm.ops.mode_ = x86::CpuMode::prot32;
    ASSERT_EQ(vm.ops.injected.size(), 3u);
    for (auto &i : vm.ops.injected) EXPECT_EQ(i.vector, GP);
    EXPECT_EQ(vm.ops.cr0_, 0x11u);
    // Paging on with LME but without PAE: #GP; with PAE: allowed.
    vm.ops.injected.clear();
    vm.ops.efer_ = 0x100;
    mov_cr(vm, 0, 0x80000011);
    EXPECT_EQ(vm.ops.injected.size(), 1u);
    vm.ops.cr4_ = 1u << 5;
    mov_cr(vm, 0, 0x80000011);
    EXPECT_EQ(vm.ops.injected.size(), 1u);
    EXPECT_EQ(vm.ops.cr0_, 0x80000011u);
}

TEST(VmExitCr, UndecodedCr4WriteIsDecoded)
{
    Vm vm;
    vm.p.cr4_reserved = 1u << 13;
    // mov %eax, %cr4 (0f 22 e0) at RIP 0x1000; then mov %esp, %cr4 (0f 22 e4): RSP is not in Gprs.
    vm.put(0x1000, {0x0f, 0x22, 0xe0, 0x0f, 0x22, 0xe4});
    vm.g.rax = 1u << 9;
    ExitInfo e;
    e.reason = ExitReason::cr_access;
    e.cr = 4;
    EXPECT_EQ(vm.run(e).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.cr4_, 1u << 9);
    EXPECT_EQ(vm.ops.rip_, 0x1003u);
    vm.ops.rsp_ = 1u << 13;
    EXPECT_EQ(vm.run(e).action, ExitAction::resume);
    ASSERT_EQ(vm.ops.injected.size(), 1u);
    EXPECT_EQ(vm.ops.injected[0].vector, GP);
    EXPECT_EQ(vm.ops.rip_, 0x1003u);
}

TEST(VmExitOther, CacheFlushIsANop)
{
    Vm vm;
    vm.put(0x1000, {0x0f, 0x09});   // wbinvd
    ExitInfo e;
    e.reason = ExitReason::cache_flush;
    EXPECT_EQ(vm.run(e).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.rip_, 0x1002u);
    EXPECT_TRUE(vm.ops.injected.empty());
}

// Without the hardware's next RIP (SVM without NRIPS), the common instructions are told by
// their first two bytes; anything else, or bytes at a page's end, goes through the decoder.
// Either way the length is the instruction's.
TEST(VmExitOther, NextRipOfTheCommonInstructionsAndTheRest)
{
    struct Case {
        std::initializer_list<u8> bytes;
        u64 len;
    };
    const Case cases[] = {
        {{0x0f, 0x09}, 2},       {{0x0f, 0x08}, 2},       {{0x0f, 0xa2}, 2},       {{0x0f, 0x30}, 2},
        {{0x0f, 0x32}, 2},       {{0x0f, 0x33}, 2},       {{0xf4, 0x0f}, 1},       {{0xf3, 0x0f, 0x09}, 3},
        {{0x0f, 0x01, 0xd1}, 3}, {{0x2e, 0x0f, 0xa2}, 3}, {{0x66, 0x0f, 0x30}, 3},
    };
    for (u64 rip : {0x1000ull, 0x1ffeull, 0x1fffull}) {
        for (const Case &c : cases) {
            Vm vm;
            vm.ops.rip_ = rip;
            vm.put(rip, c.bytes);
            ExitInfo e;
            e.reason = ExitReason::cache_flush;
            EXPECT_EQ(vm.run(e).action, ExitAction::resume) << std::hex << rip;
            EXPECT_EQ(vm.ops.rip_, rip + c.len) << std::hex << rip << " " << int(*c.bytes.begin());
        }
    }
    // Real mode: the fetch adds the CS base, the next RIP wraps at 64 KiB.
    Vm vm;
    vm.ops.mode_ = x86::CpuMode::real16;
    vm.ops.cr0_ = 0;
    vm.ops.cs_base_ = 0x10000;
    vm.ops.rip_ = 0xfffe;
    vm.put(0x1fffe, {0x0f, 0xa2});
    ASSERT_EQ(vm.cpuid(0).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.rip_, 0u);
}

// SVM's next-RIP decode finds the instruction from the mode's registers without building the
// mode (exits_detail::code_at_regs): the same linear address and wrap as the mode gives, for
// every combination of CR0.PE, RFLAGS.VM, EFER.LMA, CS.L and CS.D.
TEST(VmExitOther, CodeAtAgreesWithTheMode)
{
    for (unsigned bits = 0; bits < 32; bits++) {
        const bool pe = bits & 1, vm = bits & 2, lma = bits & 4, cs_l = bits & 8, cs_d = bits & 16;
        const x86::CpuMode m = x86::cpu_mode(pe, vm, lma, cs_l, cs_d);
        for (u64 rip : {0x0ull, 0xfffeull, 0x12345678ull, 0xfffffffeull, 0xffffffff80001000ull}) {
            for (u64 base : {0x0ull, 0x10000ull, 0xffff0000ull}) {
                const auto at = exits_detail::code_at_regs(rip, base, pe ? 0x80000011 : 0x10, vm ? 0x20202 : 0x202,
                                                           lma ? 0x500 : 0, u16((cs_l ? 1u << 9 : 0) | (cs_d ? 1u << 10 : 0) | 0x9b));
                const bool long64 = m == x86::CpuMode::long64;
                EXPECT_EQ(at.rip, rip);
                EXPECT_EQ(at.linear, long64 ? rip : (base + rip) & 0xffffffff) << bits << std::hex << " " << rip;
                EXPECT_EQ(at.wrap, long64 ? ~0ull : m == x86::CpuMode::prot32 ? 0xffffffffull : 0xffffull) << bits;
            }
        }
    }
}

TEST(VmExitOther, RdpmcByVendor)
{
    ExitInfo e;
    e.reason = ExitReason::rdpmc;
    e.next_rip = 0x1002;
    {
        Vm vm;   // Intel profile: no counters, #GP
        vm.g.rcx = 0;
        vm.run(e);
        ASSERT_EQ(vm.ops.injected.size(), 1u);
        EXPECT_EQ(vm.ops.injected[0].vector, GP);
        EXPECT_EQ(vm.ops.rip_, 0x1000u);
    }
    {
        Vm vm;   // AMD: legacy counters 0-3 read 0; 4 does not exist; CPL 3 without CR4.PCE: #GP
        vm.p.amd = true;
        vm.g.rcx = 2, vm.g.rax = 5, vm.g.rdx = 6;
        vm.run(e);
        EXPECT_TRUE(vm.ops.injected.empty());
        EXPECT_EQ(vm.g.rax, 0u);
        EXPECT_EQ(vm.g.rdx, 0u);
        EXPECT_EQ(vm.ops.rip_, 0x1002u);
        vm.ops.rip_ = 0x1000;
        vm.g.rcx = 4;
        vm.run(e);
        vm.g.rcx = 0, vm.ops.cpl_ = 3;
        vm.run(e);
        ASSERT_EQ(vm.ops.injected.size(), 2u);
        EXPECT_EQ(vm.ops.injected[1].vector, GP);
    }
}

TEST(VmExitOther, NpfDuringEventDeliveryStops)
{
    struct Dev final : MmioDevice {
        int calls = 0;
        bool covers(u64 gpa) const override { return (gpa & ~0xfffull) == 0xfec00000; }
        void mmio(u32, u64, u8, bool, u64 &) override { calls++; }
    } dev;
    Vm vm;
    ASSERT_TRUE(vm.p.add_mmio(&dev));
    vm.put(0x1000, {0x8b, 0x00});   // an innocent "mov (%eax), %eax" at RIP: not the accessor
    ExitInfo e;
    e.reason = ExitReason::npf;
    e.gpa = 0xfec00010;
    e.write = true;
    e.in_delivery = true;
    auto o = vm.run(e);
    EXPECT_EQ(o.action, ExitAction::stop);
    EXPECT_EQ(o.addr, 0xfec00010u);
    EXPECT_EQ(dev.calls, 0);
}

TEST(VmExitMmio, RspOperandUsesTheRealRsp)
{
    struct Dev final : MmioDevice {
        u64 written = 0;
        bool covers(u64 gpa) const override { return (gpa & ~0xfffull) == 0xfec00000; }
        void mmio(u32, u64, u8, bool write, u64 &v) override
        {
            if (write) written = v;
            else v = 0x12345678;
        }
    } dev;
    Vm vm;
    ASSERT_TRUE(vm.p.add_mmio(&dev));
    vm.g.rax = 0xfec00000;
    vm.g.rsp_unused = 0xdead;          // a stale slot must never be used
    vm.ops.rsp_ = 0xabcd;
    vm.put(0x1000, {0x89, 0x20});      // mov %esp, (%eax)
    ExitInfo e;
    e.reason = ExitReason::npf;
    e.gpa = 0xfec00000;
    e.write = true;
    EXPECT_EQ(vm.run(e).action, ExitAction::resume);
    EXPECT_EQ(dev.written, 0xabcdu);
    vm.put(0x1002, {0x8b, 0x20});      // mov (%eax), %esp
    e.write = false;
    EXPECT_EQ(vm.run(e).action, ExitAction::resume);
    EXPECT_EQ(vm.ops.rsp_, 0x12345678u);
    EXPECT_EQ(vm.ops.rip_, 0x1004u);
}

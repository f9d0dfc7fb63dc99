// The guest CPU profile (kernel/guest/cpu_profile.cpp): the CPUID view built from an allow-list
// over two fake hosts (QEMU TCG -cpu max, AMD; Bochs corei7_skylake_x, Intel) and random
// ones, and everything that must agree with it: CR4 reserved bits, XCR0 rules and XSAVE
// sizes, the MSR table. The expectations are written from the SDM/APM, not from the code:
// every CPUID bit is checked through cpuid(), never through has().
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "kernel/guest/cpu_profile.hpp"

namespace {

constexpr u32 EAX = 0, EBX = 1, ECX = 2, EDX = 3;
constexpr u32 ANY_SUB = ~0u;
constexpr u64 CR4_OSXSAVE = 1u << 18, CR4_PKE = 1u << 22;

constexpr u32 b(unsigned i) { return 1u << i; }

using Regs = std::array<u32, 4>;

// A host CPU: (leaf, sub) -> registers; ANY_SUB for leaves without sub-leaves.
class FakeHost final : public ProfileHost {
public:
    std::map<std::pair<u32, u32>, Regs> leaves;
    int calls = 0;

    void cpuid(u32 leaf, u32 sub, u32 out[4]) override
    {
        calls++;
        auto it = leaves.find({leaf, sub});
        if (it == leaves.end()) it = leaves.find({leaf, ANY_SUB});
        Regs r = it == leaves.end() ? Regs{} : it->second;
        for (int i = 0; i < 4; i++) out[i] = r[i];
    }
    void set(u32 leaf, Regs r, u32 sub = ANY_SUB) { leaves[{leaf, sub}] = r; }
    Regs &at(u32 leaf, u32 sub = ANY_SUB) { return leaves.at({leaf, sub}); }
    void vendor(const char *s)   // leaf 0 EBX, EDX, ECX
    {
        Regs &r = leaves[{0, ANY_SUB}];
        memcpy(&r[EBX], s, 4), memcpy(&r[EDX], s + 4, 4), memcpy(&r[ECX], s + 8, 4);
    }
};

// XSAVE layout (SDM vol. 1, 13.4 and table 13-1 / leaf 0xD): component -> size, offset.
constexpr struct { u32 comp, size, offset; } XSAVE_LAYOUT[] = {
    {2, 256, 576}, {3, 64, 960}, {4, 64, 1024}, {5, 64, 1088}, {6, 512, 1152}, {7, 1024, 1664}, {9, 8, 2688},
};

// QEMU TCG -cpu max: AuthenticAMD, SVM, no x2APIC, XSAVE with AVX and PKRU.
FakeHost amd_qemu_max()
{
    FakeHost h;
    h.set(0, {0xd, 0, 0, 0});
    h.vendor("AuthenticAMD");
    h.set(1, {0x000806f1, 0x00000800,
              b(0) | b(1) | b(3) | b(9) | b(12) | b(13) | b(17) | b(19) | b(20) | b(22) | b(23) | b(25) | b(26) |
                  b(27) | b(28) | b(29) | b(30),
              0x178bfbff});
    h.set(4, {0x121, 0x1c0003f, 0x3f, 0x1});            // leaf 4 as QEMU fills it
    h.set(5, {0x40, 0x40, 0x3, 0x11142120});             // MONITOR line sizes
    h.set(6, {0x4, 0, 0, 0});                            // ARAT
    h.set(7, {0, b(0) | b(3) | b(5) | b(7) | b(8) | b(9) | b(10) | b(18) | b(19) | b(20) | b(23) | b(24) | b(29),
              b(2) | b(3) | b(4) | b(8) | b(9) | b(10) | b(16) | b(22), b(4)}, 0);   // + OSPKE, GFNI, VAES, VPCLMUL, FSRM
    h.set(7, {}, 1);
    h.set(0xb, {0, 1, 0x100, 0});
    h.set(0xd, {0x207, 0x340, 0xa88, 0}, 0);
    h.set(0xd, {0xf, 0x340, 0, 0}, 1);                   // XSAVEOPT, XSAVEC, XGETBV1, XSAVES
    h.set(0xd, {256, 576, 0, 0}, 2);
    h.set(0xd, {8, 2688, 0, 0}, 9);
    h.set(0x80000000, {0x8000001f, 0x68747541, 0x444d4163, 0x69746e65});
    h.set(0x80000001, {0x000806f1, 0,
                       b(0) | b(1) | b(2) | b(4) | b(5) | b(6) | b(7) | b(8) | b(22),    // + CMP_LEGACY, SVM, CR8, TOPOEXT
                       0x2fd3fbff});
    h.set(0x80000002, {0x554d4551, 0x72695620, 0x6c617574, 0x55504320});                  // "QEMU Virtual CPU "
    h.set(0x80000003, {0x72657620, 0x6e6f6973, 0x352e3220, 0x0000002b});
    h.set(0x80000004, {});
    h.set(0x80000005, {0x01ff01ff, 0x01ff01ff, 0x40020140, 0x40020140});
    h.set(0x80000006, {0, 0x42004200, 0x02008140, 0x00808140});
    h.set(0x80000007, {0, 0, 0, b(8) | b(9)});           // invariant TSC, CPB
    h.set(0x80000008, {0x00003030, b(0) | b(9) | b(12) | b(14) | b(24) | b(25), 0x3, 0});
    h.set(0x8000000a, {1, 0x10, 0, 0x1ff});
    h.set(0x8000001e, {0, 0x100, 0, 0});
    h.set(0x8000001f, {0x1, 0x3f, 0, 0});
    return h;
}

// Bochs corei7_skylake_x: GenuineIntel, VMX, AVX-512F/DQ/BW/VL, MPX, PKU, x2APIC, TSX; with
// the speculation-control bits of its microcode updates.
FakeHost intel_skylake_x()
{
    FakeHost h;
    h.set(0, {0x16, 0, 0, 0});
    h.vendor("GenuineIntel");
    h.set(1, {0x00050654, 0x37100800, 0x7ffefbff, 0xbfebfbff});   // everything but bits 16, 31 / 10, 20, 30
    h.set(2, {0x76036301, 0x00f0b5ff, 0, 0x00c30000});
    h.set(4, {0x1c004121, 0x01c0003f, 0x3f, 0}, 0);
    h.set(5, {0x40, 0x40, 0x3, 0x00002020});
    h.set(6, {0x77, 0x2, 0x9, 0});
    h.set(7, {0, b(0) | b(1) | b(2) | b(3) | b(4) | b(5) | b(6) | b(7) | b(8) | b(9) | b(10) | b(11) | b(12) | b(13) |
                     b(14) | b(15) | b(16) | b(17) | b(18) | b(19) | b(20) | b(23) | b(24) | b(25) | b(28) | b(30) | b(31),
              b(3) | b(4) | b(30), b(10) | b(11) | b(13) | b(26) | b(27) | b(28) | b(29) | b(31)}, 0);
    h.set(0xa, {0x07300404, 0, 0, 0x603});
    h.set(0xb, {1, 2, 0x100, 0x37}, 0);
    h.set(0xd, {0x2ff, 0x240, 2696, 0}, 0);
    h.set(0xd, {0xf, 0x3c0, 0x100, 0}, 1);
    for (auto c : XSAVE_LAYOUT) h.set(0xd, {c.size, c.offset, 0, 0}, c.comp);
    h.set(0xd, {128, 0, 1, 0}, 8);                       // PT: supervisor state
    h.set(0x12, {0x3, 0, 0, 0x1f1f});                    // SGX
    h.set(0x14, {0x1, 0xf, 0x7, 0});                     // PT
    h.set(0x15, {2, 216, 0, 0});                         // the host's own crystal
    h.set(0x16, {3000, 4000, 100, 0});
    h.set(0x80000000, {0x80000008, 0, 0, 0});
    h.set(0x80000001, {0, 0, b(0) | b(5) | b(8), b(11) | b(20) | b(26) | b(27) | b(29)});
    h.set(0x80000002, {0x65746e49, 0x2952286c, 0x6f655820, 0x2952286e});
    h.set(0x80000003, {0x55504320, 0x00000000, 0, 0});
    h.set(0x80000004, {});
    h.set(0x80000006, {0, 0, 0x04008040, 0});
    h.set(0x80000007, {0, 0, 0, b(8)});
    h.set(0x80000008, {0x0000302e, b(9), 0, 0});
    return h;
}

ProfileOptions opts(u32 vcpus = 2, bool lapic = true, u64 tsc_hz = 2'400'000'000)
{
    ProfileOptions o;
    o.vcpu_count = vcpus, o.lapic = lapic, o.tsc_hz = tsc_hz;
    return o;
}

CpuProfile profile_of(FakeHost h, const ProfileOptions &o = opts())
{
    CpuProfile p;
    p.build(h, o);
    return p;
}

Regs q(const CpuProfile &p, u32 leaf, u32 sub = 0, u32 vcpu = 0, u64 cr4 = 0, u64 xcr0 = 3)
{
    Regs r;
    p.cpuid(leaf, sub, vcpu, cr4, xcr0, r.data());
    return r;
}

bool bit_of(const CpuProfile &p, u32 leaf, u32 sub, u32 reg, unsigned bit)
{
    return q(p, leaf, sub)[reg] >> bit & 1;
}

struct NamedHost {
    const char *name;
    FakeHost host;
};
std::vector<NamedHost> fakes() { return {{"amd_qemu_max", amd_qemu_max()}, {"intel_skylake_x", intel_skylake_x()}}; }

// ---- the allow-list, written from the brief (independent of cpu_profile.cpp) ------------------

struct Allowed {
    u32 leaf, sub, reg, mask;
};
constexpr Allowed FEATURE_ALLOW[] = {
    {1, 0, ECX, b(0) | b(1) | b(9) | b(12) | b(13) | b(17) | b(19) | b(20) | b(21) | b(22) | b(23) | b(24) | b(25) |
                    b(26) | b(27) | b(28) | b(29) | b(30) | b(31)},
    {1, 0, EDX, b(0) | b(1) | b(2) | b(3) | b(4) | b(5) | b(6) | b(8) | b(9) | b(11) | b(13) | b(15) | b(16) | b(17) |
                    b(19) | b(23) | b(24) | b(25) | b(26) | b(27) | b(28)},
    {7, 0, EAX, 0},
    {7, 0, EBX, b(0) | b(3) | b(5) | b(7) | b(8) | b(9) | b(10) | b(18) | b(19) | b(20) | b(23) | b(24) | b(29)},
    {7, 0, ECX, b(2) | b(3) | b(4) | b(16) | b(22)},
    {7, 0, EDX, b(10) | b(26) | b(27) | b(28) | b(29) | b(31)},
    {0xd, 0, EAX, b(0) | b(1) | b(2) | b(9)},
    {0xd, 0, EDX, 0},
    {0xd, 1, EAX, b(0) | b(1) | b(2)},
    {0xd, 1, EBX, ~0u},   // a size (the compacted format's): LeafDCompactedFormat
    {0xd, 1, ECX, 0}, {0xd, 1, EDX, 0},
    {0x80000001, 0, EBX, 0},
    {0x80000001, 0, ECX, b(0) | b(5) | b(6) | b(7) | b(8)},
    {0x80000001, 0, EDX, 0x3ff | b(11) | b(12) | b(13) | b(14) | b(15) | b(16) | b(17) | b(20) | b(22) | b(23) |
                             b(24) | b(25) | b(26) | b(27) | b(29) | b(30) | b(31)},
    {0x80000007, 0, EAX, 0}, {0x80000007, 0, EBX, 0}, {0x80000007, 0, ECX, 0}, {0x80000007, 0, EDX, b(8)},
    {0x80000008, 0, EAX, 0xffff},
    {0x80000008, 0, EBX, b(2) | b(12) | b(14) | b(15) | b(16) | b(17) | b(18) | b(19) | b(24) | b(26) | b(29)},
    {0x80000008, 0, ECX, 0xff}, {0x80000008, 0, EDX, 0},
};
// Whole leaves that must read 0 (every sub-leaf we try): topology, MONITOR, power, PMU,
// RDT, SGX, PT, SVM, AMD topology and encryption.
constexpr u32 ZERO_LEAVES[] = {3, 4, 5, 6, 8, 9, 0xa, 0xb, 0xc, 0xe, 0xf, 0x10, 0x11, 0x12, 0x13, 0x14, 0x17,
                               0x18, 0x1f, 0x20, 0x8000000a, 0x80000019, 0x8000001a, 0x8000001d, 0x8000001e,
                               0x8000001f, 0x80000020, 0x80000021};

// Everything a profile shows must be inside the allow-list, whatever the host said.
void expect_within_allow_list(const CpuProfile &p, const std::string &what)
{
    for (const Allowed &a : FEATURE_ALLOW)
        for (u64 cr4 : {0ull, ~0ull}) {
            Regs r;
            p.cpuid(a.leaf, a.sub, 7, cr4, ~0ull, r.data());
            EXPECT_EQ(r[a.reg] & ~a.mask, 0u) << what << " leaf " << std::hex << a.leaf << "." << a.sub << " reg "
                                              << a.reg << " = " << r[a.reg];
        }
    for (u32 leaf : ZERO_LEAVES)
        for (u32 sub : {0u, 1u, 2u, 3u})
            EXPECT_EQ(q(p, leaf, sub), Regs{}) << what << " leaf " << std::hex << leaf << "." << sub;
    for (u32 sub = 1; sub < 8; sub++) EXPECT_EQ(q(p, 7, sub), Regs{}) << what << " 7." << sub;
    for (u32 sub = 2; sub < 64; sub++) {
        const Regs r = q(p, 0xd, sub);
        if (sub != 2 && sub != 9) EXPECT_EQ(r, Regs{}) << what << " 0xd." << sub;
        EXPECT_EQ(r[ECX] & ~b(1), 0u) << what << " 0xd." << sub << " ECX";
        EXPECT_EQ(r[EDX], 0u) << what << " 0xd." << sub << " EDX";
    }
    // Nothing beyond the limits.
    EXPECT_LE(p.max_std(), 0x16u) << what;
    EXPECT_LE(p.max_ext(), 0x80000008u) << what;
    EXPECT_GE(p.max_ext(), 0x80000000u) << what;
    EXPECT_EQ(q(p, 0)[EAX], p.max_std()) << what;
    EXPECT_EQ(q(p, 0x80000000)[EAX], p.max_ext()) << what;
    for (u32 leaf : {p.max_std() + 1, 0x17u, 0x7fffffffu, p.max_ext() + 1, 0x80000009u, 0xffffffffu, 0x50000000u})
        EXPECT_EQ(q(p, leaf), Regs{}) << what << std::hex << " leaf " << leaf;
}

// Feature dependencies, read from the guest's CPUID.
void expect_dependencies(const CpuProfile &p, const std::string &what)
{
    const Regs l1 = q(p, 1), l7 = q(p, 7), e1 = q(p, 0x80000001), d0 = q(p, 0xd, 0, 0, 0, 3);
    const bool xsave = l1[ECX] & b(26), avx = l1[ECX] & b(28);
    const u64 sup = u64(d0[EDX]) << 32 | d0[EAX];
    EXPECT_EQ(sup, p.xcr0_supported()) << what;
    if (avx) EXPECT_TRUE(xsave && (sup & 4)) << what << ": AVX without its state";
    if (!avx) {
        EXPECT_FALSE(l1[ECX] & b(12)) << what << ": FMA without AVX";
        EXPECT_FALSE(l1[ECX] & b(29)) << what << ": F16C without AVX";
        EXPECT_FALSE(l7[EBX] & b(5)) << what << ": AVX2 without AVX";
    }
    if (l7[ECX] & b(3)) EXPECT_TRUE(sup & b(9)) << what << ": PKU without PKRU";
    if (l7[ECX] & b(22)) EXPECT_TRUE(e1[EDX] & b(27)) << what << ": RDPID without RDTSCP";
    EXPECT_TRUE(l1[ECX] & b(31)) << what << ": hypervisor bit";
    if (!xsave) {
        EXPECT_EQ(q(p, 0xd, 0), Regs{}) << what;
        EXPECT_EQ(sup, 0u) << what;
        EXPECT_FALSE(p.xcr0_valid(1)) << what;
        EXPECT_FALSE(p.xcr0_valid(3)) << what;
    } else {
        EXPECT_EQ(sup & 3, 3u) << what;
        EXPECT_TRUE(p.xcr0_valid(sup)) << what;
        EXPECT_GE(p.max_std(), 0xdu) << what;
    }
    // AMD's copies of leaf 1 EDX follow the guest's leaf 1.
    constexpr u32 mirror = 0x3ff | b(12) | b(13) | b(14) | b(15) | b(16) | b(17) | b(23) | b(24);
    EXPECT_EQ(e1[EDX] & mirror & ~l1[EDX], 0u) << what;
}

// CR4 bit -> the CPUID bit that allows it (SDM vol. 3, 2.5 and the CPUID feature tables).
struct Cr4Need {
    enum Kind { cpuid, always, never } kind;
    u32 leaf, reg;
    unsigned bit;
};
Cr4Need cr4_need(unsigned cr4_bit)
{
    switch (cr4_bit) {
    case 0: return {Cr4Need::cpuid, 1, EDX, 1};          // VME
    case 1: return {Cr4Need::cpuid, 1, EDX, 1};          // PVI: with VME
    case 2: return {Cr4Need::cpuid, 1, EDX, 4};          // TSD: TSC
    case 3: return {Cr4Need::cpuid, 1, EDX, 2};          // DE
    case 4: return {Cr4Need::cpuid, 1, EDX, 3};          // PSE
    case 5: return {Cr4Need::cpuid, 1, EDX, 6};          // PAE
    case 6: return {Cr4Need::cpuid, 1, EDX, 7};          // MCE
    case 7: return {Cr4Need::cpuid, 1, EDX, 13};         // PGE
    case 8: return {Cr4Need::always, 0, 0, 0};           // PCE
    case 9: return {Cr4Need::cpuid, 1, EDX, 24};         // OSFXSR: FXSR
    case 10: return {Cr4Need::cpuid, 1, EDX, 25};        // OSXMMEXCPT: SSE
    case 11: return {Cr4Need::cpuid, 7, ECX, 2};         // UMIP
    case 12: return {Cr4Need::cpuid, 7, ECX, 16};        // LA57
    case 16: return {Cr4Need::cpuid, 7, EBX, 0};         // FSGSBASE
    case 17: return {Cr4Need::cpuid, 1, ECX, 17};        // PCIDE: PCID
    case 18: return {Cr4Need::cpuid, 1, ECX, 26};        // OSXSAVE: XSAVE
    case 20: return {Cr4Need::cpuid, 7, EBX, 7};         // SMEP
    case 21: return {Cr4Need::cpuid, 7, EBX, 20};        // SMAP
    case 22: return {Cr4Need::cpuid, 7, ECX, 3};         // PKE: PKU
    default: return {Cr4Need::never, 0, 0, 0};           // VMXE, SMXE, 15, KL, CET, PKS, 25-63
    }
}

// fixed_leaf (the exit path's answer without cpuid()) is what cpuid() says, whatever the sub-leaf,
// vCPU, CR4, XCR0 and APIC; the leaves that vary have none.
void expect_fixed_leaves_agree(const CpuProfile &p, const std::string &what)
{
    std::vector<u32> leaves;
    for (u32 l = 0; l <= 0x20; l++) leaves.push_back(l);
    for (u32 l = 0x80000000; l <= 0x8000000a; l++) leaves.push_back(l);
    for (u32 l : {0x40000000u, 0x40000010u, 0x7fffffffu, 0xffffffffu}) leaves.push_back(l);
    struct In { u32 sub, vcpu; u64 cr4, xcr0; bool apic; };
    const In ins[] = {{0, 0, 0, 3, true}, {1, 1, 1u << 18 | 1u << 22, 7, true}, {2, 7, ~0ull, 0x207, false},
                      {9, 255, 1u << 18, 0x2ff, true}, {0xffffffff, 3, 0, 1, false}};
    unsigned fixed = 0;
    for (u32 leaf : leaves) {
        const u32 *f = p.fixed_leaf(leaf);
        if ((leaf == 1 || leaf == 7 || leaf == 0xd) && leaf <= p.max_std())
            EXPECT_EQ(f, nullptr) << what << std::hex << ": leaf " << leaf << " varies";
        if (!f) continue;
        fixed++;
        for (const In &in : ins) {
            u32 r[4];
            p.cpuid(leaf, in.sub, in.vcpu, in.cr4, in.xcr0, r, in.apic);
            EXPECT_EQ((Regs{r[0], r[1], r[2], r[3]}), (Regs{f[0], f[1], f[2], f[3]}))
                << what << std::hex << ": leaf " << leaf << " sub " << in.sub;
        }
    }
    // Leaf 0, 0x80000000 and the leaves above the limits at least.
    EXPECT_NE(p.fixed_leaf(0), nullptr) << what;
    EXPECT_NE(p.fixed_leaf(0x80000000), nullptr) << what;
    EXPECT_GE(fixed, 20u) << what;
}

void expect_cr4_agrees(const CpuProfile &p, const std::string &what)
{
    for (unsigned bit = 0; bit < 64; bit++) {
        const Cr4Need n = cr4_need(bit);
        const bool allowed = n.kind == Cr4Need::always || (n.kind == Cr4Need::cpuid && bit_of(p, n.leaf, 0, n.reg, n.bit));
        EXPECT_EQ(!(p.cr4_reserved() >> bit & 1), allowed) << what << ": CR4 bit " << bit;
    }
}

// The feature an MSR rule names, decided from the guest's CPUID alone.
bool feature_from_cpuid(const CpuProfile &p, Feature f)
{
    const Regs l7 = q(p, 7), e1 = q(p, 0x80000001), e8 = q(p, 0x80000008);
    switch (f) {
    case Feature::always: return true;
    case Feature::spec_ctrl: return (l7[EDX] & b(26)) || (e8[EBX] & (b(14) | b(15) | b(24)));
    case Feature::ibpb: return (l7[EDX] & b(26)) || (e8[EBX] & b(12));
    case Feature::tsc_aux: return (e1[EDX] & b(27)) || (l7[ECX] & b(22));
    default: break;
    }
    // A single bit: (word << 5 | bit), words in the order of CpuidWord.
    static const struct { u32 leaf, sub, reg; } words[] = {
        {1, 0, ECX}, {1, 0, EDX}, {7, 0, EBX}, {7, 0, ECX}, {7, 0, EDX},
        {0x80000001, 0, ECX}, {0x80000001, 0, EDX}, {0x80000007, 0, EDX}, {0x80000008, 0, EBX}, {0xd, 1, EAX},
    };
    const unsigned w = unsigned(f) >> 5, bit = unsigned(f) & 31;
    if (w >= sizeof(words) / sizeof(words[0])) {
        ADD_FAILURE() << "no CPUID oracle for feature " << unsigned(f);
        return false;
    }
    return q(p, words[w].leaf, words[w].sub)[words[w].reg] >> bit & 1;
}

// Which MSR exists when, written from the SDM/APM (which CPUID bit announces it), not from the
// table: every rule of the table must be one of these, with the same range and access.
struct Guest {
    Regs l1, l7, e1, e8;
};
struct MsrExpect {
    u32 first, last;
    u8 vendors;
    bool (*exists)(const Guest &);
    MsrAccess access;
};
constexpr u8 INTEL = msr_vendor::intel, AMD = msr_vendor::amd, ANY = msr_vendor::any;
using MA = MsrAccess;
const MsrExpect MSR_EXPECT[] = {
    {0x10, 0x10, ANY, [](const Guest &g) { return bool(g.l1[EDX] & b(4)); }, MA::read_write},        // TSC
    {0x17, 0x17, INTEL, [](const Guest &) { return true; }, MA::zero_read_only},                     // PLATFORM_ID
    {0x1b, 0x1b, ANY, [](const Guest &g) { return bool(g.l1[EDX] & b(9)); }, MA::read_write},        // APIC_BASE
    {0x48, 0x48, ANY, [](const Guest &g) { return (g.l7[EDX] & b(26)) || (g.e8[EBX] & (b(14) | b(15) | b(24))); },
     MA::read_write},                                                                                // SPEC_CTRL
    {0x49, 0x49, ANY, [](const Guest &g) { return (g.l7[EDX] & b(26)) || (g.e8[EBX] & b(12)); }, MA::write_only},
    {0x8b, 0x8b, ANY, [](const Guest &) { return true; }, MA::read_write},                           // BIOS_SIGN_ID
    {0x10a, 0x10a, ANY, [](const Guest &g) { return bool(g.l7[EDX] & b(29)); }, MA::read_only},      // ARCH_CAPABILITIES
    {0x10b, 0x10b, ANY, [](const Guest &g) { return bool(g.l7[EDX] & b(28)); }, MA::write_only},     // FLUSH_CMD
    {0x174, 0x176, ANY, [](const Guest &g) { return bool(g.l1[EDX] & b(11)); }, MA::read_write},     // SYSENTER
    {0x179, 0x179, ANY, [](const Guest &) { return true; }, MA::zero_read_only},                     // MCG_CAP
    {0x17a, 0x17a, ANY, [](const Guest &) { return true; }, MA::zero},                               // MCG_STATUS
    {0x1a0, 0x1a0, ANY, [](const Guest &) { return true; }, MA::read_write},                         // MISC_ENABLE (as KVM)
    {0x277, 0x277, ANY, [](const Guest &g) { return bool(g.l1[EDX] & b(16)); }, MA::read_write},     // PAT
    {0x6e0, 0x6e0, ANY, [](const Guest &g) { return bool(g.l1[ECX] & b(24)); }, MA::read_write},     // TSC_DEADLINE
    {0x800, 0x8ff, ANY, [](const Guest &g) { return bool(g.l1[ECX] & b(21)); }, MA::read_write},     // x2APIC
    {0xc0000080, 0xc0000080, ANY, [](const Guest &g) { return bool(g.e1[EDX] & b(29)); }, MA::read_write},   // EFER
    {0xc0000081, 0xc0000081, ANY, [](const Guest &g) { return bool(g.e1[EDX] & b(11)); }, MA::read_write},   // STAR
    {0xc0000082, 0xc0000084, ANY, [](const Guest &g) { return bool(g.e1[EDX] & b(29)); }, MA::read_write},
    {0xc0000100, 0xc0000102, ANY, [](const Guest &g) { return bool(g.e1[EDX] & b(29)); }, MA::read_write},
    {0xc0000103, 0xc0000103, ANY, [](const Guest &g) { return (g.e1[EDX] & b(27)) || (g.l7[ECX] & b(22)); },
     MA::read_write},                                                                                // TSC_AUX
    {0xc0010000, 0xc0010007, AMD, [](const Guest &) { return true; }, MA::zero},                     // K7 perf
    {0xc0010055, 0xc0010055, AMD, [](const Guest &) { return true; }, MA::zero_read_only},           // INT_PENDING_MSG
};

void expect_msr_table_agrees(const CpuProfile &p, const std::string &what)
{
    usize n = 0;
    const MsrRule *rules = msr_rules(n);
    ASSERT_GT(n, 0u);
    const u8 vendor = u8(1u << u8(p.vendor()));
    const Guest guest{q(p, 1), q(p, 7), q(p, 0x80000001), q(p, 0x80000008)};
    EXPECT_EQ(n, sizeof(MSR_EXPECT) / sizeof(MSR_EXPECT[0])) << "a rule the test does not know, or one missing";
    for (const MsrExpect &x : MSR_EXPECT) {
        const bool exists = (x.vendors & vendor) && x.exists(guest);
        for (u32 msr : {x.first, x.first + (x.last - x.first) / 2, x.last}) {
            EXPECT_EQ(msr_exists(p, msr, false), exists && x.access != MA::write_only) << what << std::hex << ": " << msr;
            EXPECT_EQ(msr_exists(p, msr, true), exists && x.access != MA::read_only && x.access != MA::zero_read_only)
                << what << std::hex << ": " << msr;
            const MsrRule *r = msr_rule(p, msr);
            ASSERT_EQ(r != nullptr, exists) << what << std::hex << ": " << msr;
            if (r) EXPECT_TRUE(r->first == x.first && r->last == x.last && r->access == x.access) << r->name;
        }
    }
    // Walk the table itself: each rule's feature, read back from CPUID, decides it.
    for (usize i = 0; i < n; i++) {
        const MsrRule &r = rules[i];
        const bool exists = (r.vendors & vendor) && feature_from_cpuid(p, r.needs);
        for (u32 msr : {r.first, r.first + (r.last - r.first) / 2, r.last}) {
            EXPECT_EQ(msr_rule(p, msr) != nullptr, exists) << what << ": " << r.name << std::hex << " " << msr;
            EXPECT_EQ(msr_exists(p, msr, false), exists && r.access != MsrAccess::write_only) << what << ": " << r.name;
            EXPECT_EQ(msr_exists(p, msr, true),
                      exists && r.access != MsrAccess::read_only && r.access != MsrAccess::zero_read_only)
                << what << ": " << r.name;
        }
        for (usize j = 0; j < i; j++)
            EXPECT_TRUE(r.first > rules[j].last || r.last < rules[j].first) << r.name << " overlaps " << rules[j].name;
    }
    // Not in the table: VMX/SMX locks, TSC_ADJUST, VMX capabilities, MTRRs, DEBUGCTL, MC banks,
    // PMU, XSS, SVM's VM_CR/HSAVE, VIRT_SPEC_CTRL, HWCR, KVM's.
    for (u32 msr : {0x0u, 0x3au, 0x3bu, 0xc1u, 0xfeu, 0x186u, 0x1d9u, 0x200u, 0x2ffu, 0x345u, 0x38fu, 0x400u,
                    0x480u, 0x491u, 0x4d0u, 0x6e1u, 0x7ffu, 0x900u, 0xda0u, 0xc0000104u, 0xc0010004u + 0x10u,
                    0xc0010015u, 0xc0010114u, 0xc0010117u, 0xc001011fu, 0x4b564d00u, 0x40000000u, 0xffffffffu}) {
        EXPECT_EQ(msr_rule(p, msr), nullptr) << what << std::hex << ": msr " << msr;
        EXPECT_FALSE(msr_exists(p, msr, false)) << what << std::hex << ": msr " << msr;
        EXPECT_FALSE(msr_exists(p, msr, true)) << what << std::hex << ": msr " << msr;
    }
}

// ---- the two fakes ---------------------------------------------------------------------------

TEST(CpuProfile, VendorAndLimits)
{
    const CpuProfile amd = profile_of(amd_qemu_max()), intel = profile_of(intel_skylake_x());
    EXPECT_EQ(amd.vendor(), CpuVendor::amd);
    EXPECT_EQ(intel.vendor(), CpuVendor::intel);
    // 0x15/0x16 are Keel's: shown (max 0x16) whenever the TSC rate is known, even if the host stops at 0xd.
    EXPECT_EQ(amd.max_std(), 0x16u);
    EXPECT_EQ(profile_of(amd_qemu_max(), opts(1, true, 0)).max_std(), 0xdu);
    EXPECT_EQ(intel.max_std(), 0x16u);
    EXPECT_EQ(amd.max_ext(), 0x80000008u);   // host 0x8000001f
    EXPECT_EQ(intel.max_ext(), 0x80000008u);
    const Regs l0 = q(intel, 0);
    EXPECT_EQ(std::string(reinterpret_cast<const char *>(&l0[EBX]), 4) +
                  std::string(reinterpret_cast<const char *>(&l0[EDX]), 4) +
                  std::string(reinterpret_cast<const char *>(&l0[ECX]), 4),
              "GenuineIntel");
    EXPECT_EQ(q(amd, 0x80000000), (Regs{0x80000008, 0x68747541, 0x444d4163, 0x69746e65}));
    EXPECT_EQ(q(intel, 0x80000000), (Regs{0x80000008, 0, 0, 0}));
    // Brand string and cache leaves come from the host.
    EXPECT_EQ(q(amd, 0x80000002), amd_qemu_max().at(0x80000002));
    EXPECT_EQ(q(amd, 0x80000005), amd_qemu_max().at(0x80000005));
    EXPECT_EQ(q(intel, 0x80000006), intel_skylake_x().at(0x80000006));
    EXPECT_EQ(q(intel, 2), intel_skylake_x().at(2));
    EXPECT_EQ(q(amd, 2), Regs{});

    FakeHost other = amd_qemu_max();
    other.vendor("CentaurHauls");
    EXPECT_EQ(profile_of(other).vendor(), CpuVendor::other);
}

TEST(CpuProfile, FixedLeavesAgreeWithCpuid)
{
    for (auto &[name, host] : fakes()) {
        expect_fixed_leaves_agree(profile_of(host), name);
        expect_fixed_leaves_agree(profile_of(host, opts(1, true, 0)), std::string(name) + " without a TSC rate");
    }
}

TEST(CpuProfile, HiddenFeaturesAreHidden)
{
    for (auto &[name, host] : fakes()) {
        SCOPED_TRACE(name);
        const CpuProfile p = profile_of(host);
        expect_within_allow_list(p, name);
        const Regs l1 = q(p, 1, 0, 0, ~0ull, ~0ull), l7 = q(p, 7, 0, 0, ~0ull, ~0ull), e1 = q(p, 0x80000001);
        EXPECT_FALSE(l1[ECX] & b(5)) << "VMX";
        EXPECT_FALSE(l1[ECX] & b(6)) << "SMX";
        EXPECT_FALSE(l1[ECX] & b(3)) << "MONITOR";
        EXPECT_FALSE(l1[ECX] & (b(2) | b(4) | b(7) | b(8) | b(11) | b(14) | b(15) | b(18))) << "DTES64 DS-CPL EST TM2 SDBG xTPR PDCM DCA";
        EXPECT_FALSE(l1[EDX] & b(7)) << "MCE";
        EXPECT_FALSE(l1[EDX] & b(14)) << "MCA";
        EXPECT_FALSE(l1[EDX] & b(12)) << "MTRR";
        EXPECT_FALSE(l1[EDX] & (b(18) | b(21) | b(22) | b(29) | b(31))) << "PSN DS ACPI TM PBE";
        EXPECT_FALSE(e1[ECX] & b(2)) << "SVM";
        EXPECT_FALSE(e1[ECX] & (b(1) | b(3) | b(4) | b(22))) << "CMP_LEGACY ExtApic AltMovCr8 TOPOEXT";
        EXPECT_FALSE(e1[EDX] & (b(7) | b(12) | b(14))) << "MCE MTRR MCA (AMD copies)";
        EXPECT_EQ(l7[EBX] & (b(16) | b(17) | b(21) | b(26) | b(27) | b(28) | b(30) | b(31)), 0u) << "AVX-512";
        EXPECT_EQ(l7[ECX] & (b(1) | b(6) | b(11) | b(12) | b(14)), 0u) << "AVX-512 (ECX)";
        EXPECT_EQ(l7[EDX] & (b(2) | b(3) | b(8) | b(23)), 0u) << "AVX-512 (EDX)";
        EXPECT_FALSE(l7[EBX] & b(14)) << "MPX";
        EXPECT_FALSE(l7[EBX] & (b(4) | b(11))) << "TSX (HLE, RTM)";
        EXPECT_FALSE(l7[EDX] & (b(11) | b(13))) << "TSX (RTM_ALWAYS_ABORT, TSX_FORCE_ABORT)";
        EXPECT_FALSE(l7[EBX] & b(2)) << "SGX";
        EXPECT_FALSE(l7[ECX] & b(30)) << "SGX_LC";
        EXPECT_FALSE(l7[EBX] & b(25)) << "PT";
        EXPECT_FALSE(l7[EBX] & b(1)) << "TSC_ADJUST";
        EXPECT_FALSE(l7[ECX] & (b(8) | b(9) | b(10))) << "GFNI VAES VPCLMULQDQ";
        EXPECT_FALSE(l7[EDX] & b(4)) << "FSRM";
        EXPECT_EQ(q(p, 0xd, 1)[EAX] & (b(3) | b(4)), 0u) << "XSAVES, XFD";
        EXPECT_EQ(q(p, 0xd, 0)[EAX] & 0xf8, 0u) << "MPX and AVX-512 XSAVE components";
        EXPECT_FALSE(p.has(Feature::vmx) || p.has(Feature::svm) || p.has(Feature::monitor) || p.has(Feature::mce) ||
                     p.has(Feature::mtrr) || p.has(Feature::rtm) || p.has(Feature::hle) || p.has(Feature::mpx) ||
                     p.has(Feature::avx512f) || p.has(Feature::xsaves) || p.has(Feature::sgx));
    }
    // The host's own values for the hidden leaves were not zero: zero is Keel's doing.
    const FakeHost i = intel_skylake_x(), a = amd_qemu_max();
    EXPECT_NE(i.leaves.at({4, 0}), Regs{});
    EXPECT_NE(i.leaves.at({0xa, ANY_SUB}), Regs{});
    EXPECT_NE(i.leaves.at({0xb, 0}), Regs{});
    EXPECT_NE(a.leaves.at({0x8000001e, ANY_SUB}), Regs{});
    EXPECT_NE(a.leaves.at({0x8000000a, ANY_SUB}), Regs{});
}

TEST(CpuProfile, KnownFeaturesPassThrough)
{
    const CpuProfile intel = profile_of(intel_skylake_x()), amd = profile_of(amd_qemu_max());
    const u32 l1c_common = b(0) | b(1) | b(9) | b(12) | b(13) | b(17) | b(19) | b(20) | b(22) | b(23) | b(25) | b(26) |
                           b(28) | b(29) | b(30) | b(31);
    EXPECT_EQ(q(intel, 1)[ECX], l1c_common | b(21) | b(24));
    EXPECT_EQ(q(amd, 1)[ECX], l1c_common | b(21) | b(24));   // x2APIC and TSC-deadline: Keel's model, not the host's
    const u32 l1d = b(0) | b(1) | b(2) | b(3) | b(4) | b(5) | b(6) | b(8) | b(9) | b(11) | b(13) | b(15) | b(16) | b(17) |
                    b(19) | b(23) | b(24) | b(25) | b(26) | b(28);
    EXPECT_EQ(q(amd, 1)[EDX], l1d);
    EXPECT_EQ(q(intel, 1)[EDX], l1d | b(27));   // self-snoop
    const u32 l7b = b(0) | b(3) | b(5) | b(7) | b(8) | b(9) | b(10) | b(18) | b(19) | b(20) | b(23) | b(24) | b(29);
    EXPECT_EQ(q(amd, 7), (Regs{0, l7b, b(2) | b(3) | b(16) | b(22), 0}));
    EXPECT_EQ(q(intel, 7), (Regs{0, l7b & ~b(29), b(3), b(10) | b(26) | b(27) | b(28) | b(29) | b(31)}));
    EXPECT_EQ(q(amd, 0x80000001)[ECX], b(0) | b(5) | b(6) | b(7) | b(8));
    EXPECT_EQ(q(amd, 0x80000001)[EDX], (l1d & (0x3ff | 0x3f000 | b(23) | b(24))) | b(11) | b(20) | b(22) | b(25) |
                                           b(26) | b(27) | b(29));
    EXPECT_EQ(q(intel, 0x80000001), (Regs{0, 0, b(0) | b(5) | b(8), b(11) | b(20) | b(26) | b(27) | b(29)}));
    EXPECT_EQ(q(amd, 0x80000007), (Regs{0, 0, 0, b(8)}));
    EXPECT_EQ(q(amd, 0x80000008), (Regs{0x3030, b(12) | b(14) | b(24), 0, 0}));
    EXPECT_EQ(q(intel, 0x80000008), (Regs{0x302e, 0, 0, 0}));
    for (Feature f : {Feature::xsave, Feature::avx, Feature::pku, Feature::rdtscp, Feature::spec_ctrl, Feature::ibpb,
                      Feature::x2apic, Feature::tsc_deadline, Feature::apic, Feature::la57, Feature::tsc_aux})
        EXPECT_TRUE(amd.has(f)) << unsigned(f);
    for (Feature f : {Feature::xsave, Feature::avx, Feature::avx2, Feature::pku, Feature::spec_ctrl, Feature::ibpb,
                      Feature::flush_l1d, Feature::arch_capabilities, Feature::md_clear, Feature::invpcid})
        EXPECT_TRUE(intel.has(f)) << unsigned(f);
    EXPECT_FALSE(intel.has(Feature::la57));
    EXPECT_FALSE(amd.has(Feature::flush_l1d));
    EXPECT_EQ(amd.spec_ctrl_bits(), 5u);     // IBRS, SSBD (no STIBP on that host)
    EXPECT_EQ(intel.spec_ctrl_bits(), 7u);

    // Without the APIC model: no APIC, x2APIC, TSC-deadline (nor AMD's APIC copy).
    const CpuProfile bare = profile_of(amd_qemu_max(), opts(1, false));
    EXPECT_FALSE(bit_of(bare, 1, 0, EDX, 9));
    EXPECT_FALSE(bit_of(bare, 1, 0, ECX, 21));
    EXPECT_FALSE(bit_of(bare, 1, 0, ECX, 24));
    EXPECT_FALSE(bit_of(bare, 0x80000001, 0, EDX, 9));
    EXPECT_TRUE(bit_of(amd, 0x80000001, 0, EDX, 9));
}

TEST(CpuProfile, DependentFeaturesFollowTheirBase)
{
    for (auto &[name, host] : fakes()) {
        expect_dependencies(profile_of(host), name);

        FakeHost no_avx_state = host;   // AVX reported, but its XSAVE component is not
        no_avx_state.at(0xd, 0)[EAX] &= ~b(2);
        const CpuProfile p1 = profile_of(no_avx_state);
        expect_dependencies(p1, name + std::string(" without the AVX component"));
        EXPECT_FALSE(bit_of(p1, 1, 0, ECX, 28));
        EXPECT_FALSE(bit_of(p1, 1, 0, ECX, 12));
        EXPECT_FALSE(bit_of(p1, 7, 0, EBX, 5));

        FakeHost no_xsave = host;
        no_xsave.at(1)[ECX] &= ~b(26);
        const CpuProfile p2 = profile_of(no_xsave);
        expect_dependencies(p2, name + std::string(" without XSAVE"));
        EXPECT_FALSE(bit_of(p2, 7, 0, ECX, 3)) << "PKU without XSAVE";
        EXPECT_TRUE(p2.cr4_reserved() & CR4_OSXSAVE);
        EXPECT_TRUE(p2.cr4_reserved() & CR4_PKE);

        FakeHost bad_size = host;       // a PKRU component of the wrong size: not trusted
        bad_size.at(0xd, 9)[EAX] = 16;
        EXPECT_FALSE(bit_of(profile_of(bad_size), 7, 0, ECX, 3));

        FakeHost no_rdtscp = host;
        no_rdtscp.at(0x80000001)[EDX] &= ~b(27);
        const CpuProfile p3 = profile_of(no_rdtscp);
        EXPECT_FALSE(bit_of(p3, 7, 0, ECX, 22)) << "RDPID without RDTSCP";
        EXPECT_FALSE(p3.has(Feature::tsc_aux));
    }
}

TEST(CpuProfile, TscLeaves)
{
    const CpuProfile p = profile_of(intel_skylake_x(), opts(1, true, 2'400'000'000));
    EXPECT_EQ(q(p, 0x15), (Regs{1, 1, 2'400'000'000u, 0}));
    EXPECT_EQ(q(p, 0x16), (Regs{2400, 2400, 2400, 0}));
    EXPECT_EQ(q(p, 0x40000000), (Regs{0x40000010, 0x6c65654b, 0x6c65654b, 0x6c65654b}));   // "KeelKeelKeel"
    EXPECT_EQ(q(p, 0x40000001), Regs{});
    EXPECT_EQ(q(p, 0x40000010), (Regs{2'400'000, 2'400'000, 0, 0}));
    EXPECT_EQ(q(p, 0x40000011), Regs{});
    EXPECT_EQ(q(p, 0x40000100), Regs{});

    const CpuProfile fast = profile_of(amd_qemu_max(), opts(1, true, 5'000'000'001));   // does not fit in 32 bits
    const Regs r15 = q(fast, 0x15);
    ASSERT_NE(r15[EAX], 0u);
    EXPECT_NEAR(double(r15[ECX]) * r15[EBX] / r15[EAX], 5'000'000'001.0, 2.0);
    EXPECT_EQ(q(fast, 0x16)[EAX], 5000u);

    const CpuProfile unknown = profile_of(intel_skylake_x(), opts(1, true, 0));
    EXPECT_EQ(unknown.max_std(), 0x16u);
    EXPECT_EQ(q(unknown, 0x15), Regs{});          // not the host's crystal
    EXPECT_EQ(q(unknown, 0x16), Regs{});
    EXPECT_EQ(q(unknown, 0x40000010), Regs{});
    EXPECT_EQ(q(unknown, 0x40000000)[EAX], 0x40000010u);
}

TEST(CpuProfile, ApicIdAndCountFollowTheVcpu)
{
    for (auto &[name, host] : fakes()) {
        SCOPED_TRACE(name);
        const u32 host_ebx = host.at(1)[EBX];
        for (u32 count : {1u, 2u, 4u, 255u, 300u}) {
            const CpuProfile p = profile_of(host, opts(count));
            for (u32 v : {0u, 1u, count - 1}) {
                const Regs r = q(p, 1, 0, v);
                EXPECT_EQ(r[EBX] >> 24, v & 0xff);
                EXPECT_EQ(r[EBX] >> 16 & 0xff, std::min(count, 255u));
                EXPECT_EQ(r[EBX] & 0xffff, host_ebx & 0xffff);   // brand index, CLFLUSH line size
                EXPECT_EQ(r[EAX], host.at(1)[EAX]);
                EXPECT_EQ(bool(r[EDX] & b(28)), count > 1) << "HTT";
            }
        }
    }
}

TEST(CpuProfile, OsxsaveAndOspkeFollowCr4)
{
    for (auto &[name, host] : fakes()) {
        SCOPED_TRACE(name);
        const CpuProfile p = profile_of(host);
        for (u64 cr4 : {u64(0), CR4_OSXSAVE, CR4_PKE, CR4_OSXSAVE | CR4_PKE, ~u64(0)}) {
            EXPECT_EQ(bool(q(p, 1, 0, 0, cr4)[ECX] & b(27)), bool(cr4 & CR4_OSXSAVE)) << cr4;
            EXPECT_EQ(bool(q(p, 7, 0, 0, cr4)[ECX] & b(4)), bool(cr4 & CR4_PKE)) << cr4;
        }
        // Without the features, the CR4 bits show nothing (and cannot be set: CrFourAgrees).
        FakeHost h = host;
        h.at(1)[ECX] &= ~b(26);
        const CpuProfile no = profile_of(h);
        EXPECT_FALSE(q(no, 1, 0, 0, ~0ull)[ECX] & b(27));
        EXPECT_FALSE(q(no, 7, 0, 0, ~0ull)[ECX] & b(4));
    }
}

TEST(CpuProfile, ApicBitFollowsTheGlobalEnable)
{
    for (auto &[name, host] : fakes()) {
        SCOPED_TRACE(name);
        const CpuProfile p = profile_of(host);
        Regs on, off;
        p.cpuid(1, 0, 0, 0, 3, on.data(), true);
        p.cpuid(1, 0, 0, 0, 3, off.data(), false);
        EXPECT_TRUE(on[EDX] & b(9));
        EXPECT_FALSE(off[EDX] & b(9));
        EXPECT_EQ(on[EDX] & ~b(9), off[EDX]);    // nothing else changes
        EXPECT_EQ(on[ECX], off[ECX]);
        EXPECT_TRUE(q(p, 1)[EDX] & b(9));        // enabled unless told
    }
}

TEST(CpuProfile, CrFourReservedAgreesWithCpuid)
{
    for (auto &[name, host] : fakes()) {
        for (bool lapic : {false, true}) expect_cr4_agrees(profile_of(host, opts(2, lapic)), name);
        // Take each CR4-relevant feature away in turn: its CR4 bit becomes reserved.
        for (unsigned bit = 0; bit < 64; bit++) {
            const Cr4Need n = cr4_need(bit);
            if (n.kind != Cr4Need::cpuid) continue;
            FakeHost h = host;
            h.at(n.leaf, n.leaf == 7 ? 0 : ANY_SUB)[n.reg] &= ~b(n.bit);
            const CpuProfile p = profile_of(h);
            expect_cr4_agrees(p, std::string(name) + " without CR4 bit " + std::to_string(bit) + "'s feature");
            EXPECT_TRUE(p.cr4_reserved() >> bit & 1) << name << " CR4 bit " << bit;
        }
    }
    // The fixed answers on the Intel fake, spelled out.
    const CpuProfile i = profile_of(intel_skylake_x());
    const u64 allowed = 0x7ff /* VME..OSXMMEXCPT but MCE */ & ~(1ull << 6);
    EXPECT_EQ(~i.cr4_reserved(), allowed | 1ull << 16 | 1ull << 17 | 1ull << 18 | 1ull << 20 | 1ull << 21 | 1ull << 22);
    const CpuProfile a = profile_of(amd_qemu_max());
    EXPECT_EQ(~a.cr4_reserved(),
              allowed | 1ull << 11 | 1ull << 12 | 1ull << 16 | 1ull << 17 | 1ull << 18 | 1ull << 20 | 1ull << 21 | 1ull << 22);
}

TEST(CpuProfile, Xcr0Rules)
{
    for (auto &[name, host] : fakes()) {
        SCOPED_TRACE(name);
        const CpuProfile p = profile_of(host);
        EXPECT_EQ(p.xcr0_supported(), 0x207u);
        const struct { u64 xcr0; bool ok; } table[] = {
            {0x1, true},     {0x3, true},     {0x7, true},    {0x201, true},   {0x203, true},   {0x207, true},
            {0x0, false},    {0x2, false},    {0x6, false},   {0x5, false},    {0x205, false},  // no x87; AVX without SSE
            {0x18, false},   {0x1b, false},   {0xb, false},   {0x13, false},   // MPX (hidden), and not paired
            {0xe7, false},   {0x27, false},   {0x67, false},  {0x2e7, false},  // AVX-512 (hidden)
            {0x107, false},  {0x407, false},  {0x60007, false}, {0x20007, false},   // XSS bit, CET, AMX
            {1ull << 62 | 7, false}, {~0ull, false},
        };
        for (auto t : table) EXPECT_EQ(p.xcr0_valid(t.xcr0), t.ok) << std::hex << t.xcr0;

        FakeHost h = host;   // no PKU: PKRU not allowed
        h.at(7, 0)[ECX] &= ~b(3);
        const CpuProfile np = profile_of(h);
        EXPECT_EQ(np.xcr0_supported(), 0x7u);
        EXPECT_FALSE(np.xcr0_valid(0x207));
        EXPECT_FALSE(np.xcr0_valid(0x203));
        EXPECT_TRUE(np.xcr0_valid(0x7));
    }
}

TEST(CpuProfile, LeafDAgreesWithXcr0AndSizes)
{
    for (auto &[name, host] : fakes()) {
        SCOPED_TRACE(name);
        const CpuProfile p = profile_of(host);
        EXPECT_EQ(q(p, 0xd, 0, 0, 0, 3)[EBX], 576u);
        EXPECT_EQ(q(p, 0xd, 0, 0, 0, 7)[EBX], 832u);
        EXPECT_EQ(q(p, 0xd, 0, 0, 0, 0x207)[EBX], 2696u);
        EXPECT_EQ(q(p, 0xd, 0, 0, 0, 0x203)[EBX], 2696u);
        EXPECT_EQ(q(p, 0xd, 0, 0, 0, 0x2ff)[EBX], 2696u);   // what is not supported does not count
        EXPECT_EQ(q(p, 0xd, 0)[ECX], 2696u);
        EXPECT_EQ(p.xsave_max_size(), 2696u);
        EXPECT_EQ(q(p, 0xd, 1), (Regs{7, 576, 0, 0}));   // XSAVEOPT, XSAVEC, XGETBV1; compacted x87+SSE
        EXPECT_EQ(q(p, 0xd, 2), (Regs{256, 576, 0, 0}));
        EXPECT_EQ(q(p, 0xd, 9), (Regs{8, 2688, 0, 0}));
        // Every subset of the supported components: EBX = xsave_size = the end of the last one.
        const u64 sup = p.xcr0_supported();
        for (u64 x = 0; x < 0x400; x++) {
            if ((x & ~sup) || !(x & 1)) continue;
            u32 want = 576;
            for (u32 i = 2; i < 10; i++)
                if (x >> i & 1) want = std::max(want, q(p, 0xd, i)[EAX] + q(p, 0xd, i)[EBX]);
            EXPECT_EQ(p.xsave_size(x), want) << x;
            EXPECT_EQ(q(p, 0xd, 0, 0, 0, x)[EBX], want) << x;
        }
    }
}

// The compacted format (SDM vol. 1, 13.4.3): 0xD.1 EBX is the size of an XSAVEC area for the
// current XCR0 (IA32_XSS = 0): 576 bytes of legacy region and header, then each enabled
// component i >= 2 in order, first moved up to a 64-byte boundary when 0xD.i ECX[1] is set.
// Linux (arch/x86/kernel/fpu/xstate.c) uses the compacted format whenever XSAVEC or XSAVES is
// shown, sizes its buffer by 0xD.1 EBX and checks that against the sub-leaves: a 0 there is its
// "XSAVE consistency problem". Without XSAVEC, EBX and the alignment bits are 0. XSAVES is never
// shown (Keel does not virtualise IA32_XSS): 0xD.1 EAX[3] and the XSS bits ECX:EDX are 0.
// (With the components a guest can have today, x87/SSE end at 576 and AVX at 832, both on a
// 64-byte boundary, and PKRU comes last: the alignment bit is passed on but never moves one.)
u32 compacted_from_subleaves(const CpuProfile &p, u64 xcr0)
{
    u32 size = 576;
    for (u32 i = 2; i < 63; i++) {
        if (!(xcr0 >> i & 1)) continue;
        const Regs c = q(p, 0xd, i);
        if (c[ECX] & b(1)) size = (size + 63) / 64 * 64;
        size += c[EAX];
    }
    return size;
}

TEST(CpuProfile, LeafDCompactedFormat)
{
    for (auto &[name, base] : fakes()) {
        SCOPED_TRACE(name);
        for (bool align_pkru : {false, true})
            for (bool xsavec : {true, false}) {
                SCOPED_TRACE(std::string(align_pkru ? "PKRU 64-byte aligned" : "no alignment") +
                             (xsavec ? ", XSAVEC" : ", no XSAVEC"));
                FakeHost h = base;
                if (align_pkru) h.at(0xd, 9)[ECX] = b(1);
                if (!xsavec) h.at(0xd, 1)[EAX] &= ~b(1);
                h.at(0xd, 1)[ECX] = 0x100, h.at(0xd, 1)[EDX] = 0;   // the host's XSS bits: PT
                const CpuProfile p = profile_of(h);
                const u64 sup = p.xcr0_supported();
                ASSERT_EQ(sup, 0x207u);
                const Regs d1 = q(p, 0xd, 1, 0, 0, sup);
                EXPECT_EQ(d1[EAX], xsavec ? 7u : 5u) << "XSAVEOPT, XSAVEC as the host, XGETBV1; never XSAVES";
                EXPECT_EQ(d1[ECX], 0u) << "no IA32_XSS bits";
                EXPECT_EQ(d1[EDX], 0u) << "no IA32_XSS bits";
                EXPECT_FALSE(p.has(Feature::xsaves));
                EXPECT_EQ(p.has(Feature::xsavec), xsavec);
                // The alignment bit is shown only with the compacted format, never the supervisor bit.
                EXPECT_EQ(q(p, 0xd, 9)[ECX], xsavec && align_pkru ? b(1) : 0u);
                EXPECT_EQ(q(p, 0xd, 2)[ECX], 0u);
                EXPECT_EQ(q(p, 0xd, 8), Regs{}) << "PT (a supervisor state) is not a guest's";
                for (u64 x = 0; x < 0x400; x++) {
                    if ((x & ~sup) || !(x & 1)) continue;
                    const u32 want = xsavec ? compacted_from_subleaves(p, x) : 0;
                    EXPECT_EQ(p.xsave_compacted_size(x), want) << std::hex << x;
                    EXPECT_EQ(q(p, 0xd, 1, 0, 0, x)[EBX], want) << std::hex << x;
                    // Compacted never larger than the standard format, and it follows XCR0.
                    if (xsavec) EXPECT_LE(want, q(p, 0xd, 0, 0, 0, x)[EBX]) << std::hex << x;
                }
                // The values, worked by hand: x87+SSE 576; +AVX 576+256; +PKRU 832+8 (832 is
                // already on a 64-byte boundary); x87+SSE+PKRU 576+8.
                if (xsavec) {
                    EXPECT_EQ(q(p, 0xd, 1, 0, 0, 3)[EBX], 576u);
                    EXPECT_EQ(q(p, 0xd, 1, 0, 0, 7)[EBX], 832u);
                    EXPECT_EQ(q(p, 0xd, 1, 0, 0, 0x207)[EBX], 840u);
                    EXPECT_EQ(q(p, 0xd, 1, 0, 0, 0x203)[EBX], 584u);
                    EXPECT_EQ(q(p, 0xd, 1, 0, 0, 0x2ff)[EBX], 840u) << "unsupported components do not count";
                }
            }
    }
    // A host with no XSAVE at all: the whole leaf is 0.
    FakeHost no_xsave = intel_skylake_x();
    no_xsave.at(1)[ECX] &= ~b(26);
    const CpuProfile p = profile_of(no_xsave);
    EXPECT_EQ(q(p, 0xd, 1, 0, 0, 7), Regs{});
    EXPECT_EQ(p.xsave_compacted_size(7), 0u);
}

TEST(CpuProfile, MsrTableAgreesWithCpuid)
{
    for (auto &[name, host] : fakes()) {
        for (bool lapic : {false, true}) expect_msr_table_agrees(profile_of(host, opts(2, lapic)), name);
        // Each feature-bit of the speculation MSRs taken away in turn.
        for (auto [leaf, reg, bit] : {std::tuple{7u, EDX, 26u}, {7u, EDX, 28u}, {7u, EDX, 29u}, {0x80000008u, EBX, 12u},
                                      {0x80000008u, EBX, 14u}, {0x80000008u, EBX, 24u}, {0x80000001u, EDX, 27u}}) {
            FakeHost h = host;
            h.at(leaf, leaf == 7 ? 0 : ANY_SUB)[reg] &= ~b(bit);
            expect_msr_table_agrees(profile_of(h), std::string(name) + " minus one bit");
        }
    }
    const CpuProfile i = profile_of(intel_skylake_x()), a = profile_of(amd_qemu_max());
    // The examples, spelled out.
    EXPECT_TRUE(msr_exists(i, 0x48, true));     // SPEC_CTRL: 7.EDX[26]
    EXPECT_TRUE(msr_exists(a, 0x48, false));    // SPEC_CTRL: AMD IBRS/SSBD
    EXPECT_TRUE(msr_exists(i, 0x49, true));     // PRED_CMD: write-only
    EXPECT_FALSE(msr_exists(i, 0x49, false));
    EXPECT_TRUE(msr_exists(i, 0x10a, false));   // ARCH_CAPABILITIES: read-only
    EXPECT_FALSE(msr_exists(i, 0x10a, true));
    EXPECT_FALSE(msr_exists(a, 0x10a, false));  // not on that AMD host
    EXPECT_TRUE(msr_exists(i, 0x10b, true));    // FLUSH_CMD
    EXPECT_FALSE(msr_exists(a, 0x10b, true));
    EXPECT_TRUE(msr_exists(i, 0x17, false));    // PLATFORM_ID: Intel only
    EXPECT_FALSE(msr_exists(a, 0x17, false));
    EXPECT_TRUE(msr_exists(i, 0x1a0, false));   // MISC_ENABLE: every vendor (guests probe it)
    EXPECT_TRUE(msr_exists(a, 0x1a0, false));
    EXPECT_TRUE(msr_exists(a, 0xc0010004, true));   // AMD legacy perf counters
    EXPECT_FALSE(msr_exists(i, 0xc0010004, false));
    EXPECT_TRUE(msr_exists(a, 0x830, true));    // x2APIC ICR: Keel's APIC model, though the host has no x2APIC
    EXPECT_TRUE(msr_exists(a, 0x6e0, true));
    EXPECT_FALSE(msr_exists(profile_of(amd_qemu_max(), opts(1, false)), 0x830, true));
    EXPECT_FALSE(msr_exists(profile_of(amd_qemu_max(), opts(1, false)), 0x1b, false));
    EXPECT_TRUE(msr_exists(a, 0xc0000103, true));   // TSC_AUX: RDTSCP
    EXPECT_TRUE(msr_exists(i, 0x179, false));   // MCG_CAP: reads 0, read-only
    EXPECT_FALSE(msr_exists(i, 0x179, true));
    EXPECT_TRUE(msr_exists(i, 0x17a, true));    // MCG_STATUS: zero
    for (u32 msr : {0x3au, 0x480u, 0xc0010114u, 0xda0u, 0x1d9u}) {
        EXPECT_FALSE(msr_exists(i, msr, false)) << std::hex << msr;
        EXPECT_FALSE(msr_exists(a, msr, false)) << std::hex << msr;
    }
    // A zero-initialised profile is a CPU without features: nothing exists.
    const CpuProfile empty{};
    EXPECT_FALSE(msr_exists(empty, 0x10, false));
    EXPECT_EQ(empty.cr4_reserved(), ~0ull);
}

// ---- random hosts ----------------------------------------------------------------------------

// A host answering every (leaf, sub) with bits from one seed: all ones, random, or random with
// a real vendor, sane leaf limits and the SDM's XSAVE layout (so deeper paths are reached).
class RandomHost final : public ProfileHost {
public:
    enum Mode { ones, random, plausible } mode;
    u64 seed;
    RandomHost(Mode m, u64 s) : mode(m), seed(s) {}

    void cpuid(u32 leaf, u32 sub, u32 out[4]) override
    {
        std::mt19937_64 g(seed * 0x9e3779b97f4a7c15ull ^ (u64(leaf) << 32 | sub));
        for (int i = 0; i < 4; i++) out[i] = mode == ones ? ~0u : u32(g());
        if (mode != plausible) return;
        if (leaf == 0 || leaf == 0x80000000) {
            static const char *const vendors[] = {"GenuineIntel", "AuthenticAMD", "HygonGenuine", "CentaurHauls"};
            const char *v = vendors[seed % 4];
            memcpy(&out[1], v, 4), memcpy(&out[3], v + 4, 4), memcpy(&out[2], v + 8, 4);
            out[0] = leaf == 0 ? u32(g() % 0x30) : 0x80000000 + u32(g() % 0x30);
        }
        if (leaf == 1 && g() % 4) out[2] |= b(26) | b(28), out[3] |= b(24) | b(25);   // mostly XSAVE, AVX, FXSR, SSE
        if (leaf == 7 && sub == 0 && g() % 2) out[2] |= b(3);                        // PKU
        if (leaf == 0xd && sub == 0) out[0] |= g() % 4 ? 0x207 : 3;
        if (leaf == 0xd && sub >= 2)
            for (auto c : XSAVE_LAYOUT)
                if (c.comp == sub && g() % 4) out[0] = c.size, out[1] = c.offset;
    }
};

TEST(CpuProfile, RandomHostsStayInsideTheAllowList)
{
    int xsave_seen = 0, avx_seen = 0, pku_seen = 0;
    for (u64 seed = 0; seed < 1500; seed++) {
        const RandomHost::Mode mode = seed == 0 ? RandomHost::ones : seed % 2 ? RandomHost::random : RandomHost::plausible;
        RandomHost host(mode, seed);
        std::mt19937 g{u32(seed)};
        ProfileOptions o = opts(1 + g() % 300, g() % 2, g() % 2 ? u64(g()) * (g() % 8) : 0);
        CpuProfile p;
        p.build(host, o);
        const std::string what = "seed " + std::to_string(seed);
        expect_within_allow_list(p, what);
        expect_dependencies(p, what);
        expect_cr4_agrees(p, what);
        expect_msr_table_agrees(p, what);
        expect_fixed_leaves_agree(p, what);
        EXPECT_EQ(q(p, 0xd, 0)[EAX] & ~0x207u, 0u);
        if (p.has(Feature::xsave)) {
            xsave_seen++;
            EXPECT_EQ(p.xsave_size(3), 576u) << what;
            EXPECT_GE(p.xsave_max_size(), 576u) << what;
            EXPECT_EQ(q(p, 0xd, 0)[ECX], p.xsave_max_size()) << what;
            if (p.xcr0_supported() & 4) {
                avx_seen++;
                EXPECT_EQ(p.xsave_size(7), 832u) << what;
            }
            if (p.xcr0_supported() & 0x200) {
                pku_seen++;
                EXPECT_EQ(p.xsave_size(0x201), 2696u) << what;
            }
        }
        if (::testing::Test::HasFailure()) break;   // one seed's report is enough
    }
    // The random hosts reached the interesting paths.
    printf("random hosts: %d with XSAVE, %d with AVX, %d with PKU\n", xsave_seen, avx_seen, pku_seen);
    EXPECT_GT(xsave_seen, 50);
    EXPECT_GT(avx_seen, 20);
    EXPECT_GT(pku_seen, 10);
}

} // namespace

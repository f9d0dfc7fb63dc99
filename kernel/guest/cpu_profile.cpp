#include "kernel/guest/cpu_profile.hpp"

namespace {

constexpr u32 bit(unsigned b) { return 1u << b; }

// ---- the allow-lists ------------------------------------------------------------------------
// Bits taken from the host when the host has them. Bits Keel sets itself (hypervisor, the
// APIC model's, HTT) and the dynamic ones (OSXSAVE, OSPKE) are added in build()/cpuid().

// Leaf 1 ECX: SSE3, PCLMULQDQ, SSSE3, FMA, CX16, PCID, SSE4.1, SSE4.2, MOVBE, POPCNT, AES,
// XSAVE, AVX, F16C, RDRAND. Hidden: MONITOR (3, no MWAIT), DS-CPL (4), VMX (5), SMX (6),
// EST (7), TM2 (8), CNXT-ID (10), SDBG (11), xTPR (14), PDCM (15), DCA (18); x2APIC (21) and
// TSC-deadline (24) are the APIC model's, OSXSAVE (27) is CR4's, hypervisor (31) is Keel's.
constexpr u32 L1_ECX = bit(0) | bit(1) | bit(9) | bit(12) | bit(13) | bit(17) | bit(19) | bit(20) | bit(22) |
                       bit(23) | bit(25) | bit(26) | bit(28) | bit(29) | bit(30);
// Leaf 1 EDX: FPU, VME, DE, PSE, TSC, MSR, PAE, CX8, SEP, PGE, CMOV, PAT, PSE36, CLFSH, MMX,
// FXSR, SSE, SSE2, SS (self-snoop: a cache property, nothing to virtualise). Hidden: MCE (7)
// and MCA (14) (no machine-check banks), MTRR (12, no MTRR MSRs), PSN (18), DS (21),
// ACPI (22, thermal MSRs), TM (29), PBE (31). APIC (9) is the APIC model's, HTT (28) Keel's.
constexpr u32 L1_EDX = bit(0) | bit(1) | bit(2) | bit(3) | bit(4) | bit(5) | bit(6) | bit(8) | bit(11) | bit(13) |
                       bit(15) | bit(16) | bit(17) | bit(19) | bit(23) | bit(24) | bit(25) | bit(26) | bit(27);
// Leaf 7.0 EBX: FSGSBASE, BMI1, AVX2 (with AVX), SMEP, BMI2, ERMS, INVPCID, RDSEED, ADX, SMAP,
// CLFLUSHOPT, CLWB, SHA. Hidden: TSC_ADJUST (1, no MSR), SGX (2), HLE (4), RTM (11), PQM (12),
// MPX (14), PQE (15), every AVX-512 bit (16, 17, 21, 26, 27, 28, 30, 31), PT (25).
constexpr u32 L7_EBX = bit(0) | bit(3) | bit(5) | bit(7) | bit(8) | bit(9) | bit(10) | bit(18) | bit(19) | bit(20) |
                       bit(23) | bit(24) | bit(29);
// Leaf 7.0 ECX: UMIP, PKU (with its XSAVE component), LA57, RDPID (with RDTSCP: one TSC_AUX).
// Hidden: WAITPKG (5), CET (7), SGX_LC (30), every AVX-512 bit. OSPKE (4) is CR4's.
constexpr u32 L7_ECX = bit(2) | bit(3) | bit(16) | bit(22);
// Leaf 7.0 EDX: MD_CLEAR, SPEC_CTRL (IBRS+IBPB), STIBP, L1D_FLUSH, ARCH_CAPABILITIES, SSBD:
// the MSRs behind them are virtualised. Hidden: TSX controls, hybrid, CET, AMX, ...
constexpr u32 L7_EDX = bit(10) | bit(26) | bit(27) | bit(28) | bit(29) | bit(31);
// 0x80000001 ECX: LAHF/SAHF, ABM (LZCNT), SSE4A, MisAlignSSE, 3DNowPrefetch (PREFETCHW).
// Hidden: CMP_LEGACY (1), SVM (2), ExtApicSpace (3), AltMovCr8 (4), OSVW (9), IBS (10), XOP
// (11), SKINIT (12), WDT (13), LWP (15), FMA4 (16), TBM (21), TOPOEXT (22), perf counters (23+).
constexpr u32 E1_ECX = bit(0) | bit(5) | bit(6) | bit(7) | bit(8);
// 0x80000001 EDX: SYSCALL, NX, MMXEXT, FFXSR, 1 GiB pages, RDTSCP, LM, 3DNow!/3DNow!Ext (the
// host's own instructions, nothing to virtualise), and AMD's copies of leaf 1 EDX bits, which
// follow the guest's leaf 1 (E1_EDX_MIRROR & the guest's leaf 1 EDX).
constexpr u32 E1_EDX = bit(11) | bit(20) | bit(22) | bit(25) | bit(26) | bit(27) | bit(29) | bit(30) | bit(31);
constexpr u32 E1_EDX_MIRROR = 0x3ff | bit(12) | bit(13) | bit(14) | bit(15) | bit(16) | bit(17) | bit(23) | bit(24);
// 0x80000007 EDX: invariant TSC only (no power management, no CPB, ...).
constexpr u32 E7_EDX = bit(8);
// 0x80000008 EBX: XSAVEERPTR (2), IBPB (12), IBRS (14), STIBP (15), IBRS/STIBP always-on (16,
// 17), IBRS preferred (18), IBRS same mode (19), SSBD (24), SSB_NO (26), BTC_NO (29). Hidden:
// CLZERO (0), IRPERF (1), INVLPGB (3), RDPRU (4), MCOMMIT (8), WBNOINVD (9), PPIN (23),
// VIRT_SSBD (25: VIRT_SPEC_CTRL is not modelled), CPPC (27), PSFD (28), IBPB_RET (30).
constexpr u32 E8_EBX = bit(2) | bit(12) | bit(14) | bit(15) | bit(16) | bit(17) | bit(18) | bit(19) | bit(24) |
                       bit(26) | bit(29);
// 0xD sub-leaf 1 EAX: XSAVEOPT, XSAVEC, XGETBV with ECX = 1. Hidden: XSAVES (3: no IA32_XSS;
// VMX makes it #UD by leaving "enable XSAVES/XRSTORS" clear, SVM cannot intercept it and a
// guest that runs it anyway uses Keel's IA32_XSS, 0: the XCR0 components only), XFD (4).
constexpr u32 D1_EAX = bit(0) | bit(1) | bit(2);

// XSAVE components a guest may get, with their architectural sizes: x87 and SSE (in the
// legacy region), AVX (YMM_Hi128), PKRU. Never: MPX (3, 4), AVX-512 (5-7), supervisor
// states (8, 10-16: no XSS), AMX (17, 18).
constexpr u64 XCR0_X87 = 1, XCR0_SSE = 2, XCR0_AVX = 4, XCR0_BNDREGS = 8, XCR0_BNDCSR = 16, XCR0_OPMASK = 32,
              XCR0_ZMM_HI256 = 64, XCR0_HI16_ZMM = 128, XCR0_PKRU = 512, XCR0_TILECFG = 1ull << 17,
              XCR0_TILEDATA = 1ull << 18;
constexpr u64 XCR0_AVX512 = XCR0_OPMASK | XCR0_ZMM_HI256 | XCR0_HI16_ZMM;

constexpr u64 CR4_OSXSAVE = 1u << 18, CR4_PKE = 1u << 22;
constexpr u32 L1_ECX_OSXSAVE = bit(27), L7_ECX_OSPKE = bit(4), L1_EDX_APIC = bit(9);

// Which CR4 bit the guest may set given which feature: one row per defined bit.
// VMXE (13), SMXE (14), KL (19), CET (23), PKS (24) and everything undefined: never.
struct Cr4Rule {
    u8 bit;
    Feature needs;
};
constexpr Cr4Rule CR4_RULES[] = {
    {0, Feature::vme},      {1, Feature::vme},        // VME, PVI (announced by VME)
    {2, Feature::tsc},      {3, Feature::de},         // TSD, DE
    {4, Feature::pse},      {5, Feature::pae},
    {6, Feature::mce},                                // hidden: reserved
    {7, Feature::pge},      {8, Feature::always},     // PCE: no CPUID bit (RDPMC itself is #UD: no PMU)
    {9, Feature::fxsr},     {10, Feature::sse},       // OSFXSR, OSXMMEXCPT
    {11, Feature::umip},    {12, Feature::la57},
    {16, Feature::fsgsbase}, {17, Feature::pcid},     // FSGSBASE, PCIDE
    {18, Feature::xsave},                             // OSXSAVE
    {20, Feature::smep},    {21, Feature::smap},
    {22, Feature::pku},                               // PKE
};

constexpr bool vendor_is(const u32 id[3], const char *s)   // id: EBX, EDX, ECX of leaf 0
{
    for (unsigned i = 0; i < 12; i++)
        if (u8(id[i / 4] >> (8 * (i % 4))) != u8(s[i])) return false;
    return true;
}

struct HostLeaf {
    u32 r[4] = {};
};

} // namespace

void CpuProfile::build(ProfileHost &host, const ProfileOptions &opt)
{
    *this = CpuProfile{};
    vcpu_count_ = opt.vcpu_count ? opt.vcpu_count : 1;
    tsc_hz_ = opt.tsc_hz;

    // The host's leaves, never beyond its own maximum (Intel answers those with other data).
    HostLeaf h0;
    host.cpuid(0, 0, h0.r);
    const u32 host_max = h0.r[0];
    auto std_leaf = [&](u32 leaf, u32 sub = 0) {
        HostLeaf l;
        if (leaf <= host_max) host.cpuid(leaf, sub, l.r);
        return l;
    };
    HostLeaf e0;
    host.cpuid(0x80000000, 0, e0.r);
    const u32 host_max_ext = e0.r[0] >= 0x80000000 && e0.r[0] <= 0x8000ffff ? e0.r[0] : 0x80000000;
    auto ext_leaf = [&](u32 leaf) {
        HostLeaf l;
        if (leaf <= host_max_ext) host.cpuid(leaf, 0, l.r);
        return l;
    };

    vendor_id_[0] = h0.r[1], vendor_id_[1] = h0.r[3], vendor_id_[2] = h0.r[2];
    if (vendor_is(vendor_id_, "GenuineIntel")) vendor_ = CpuVendor::intel;
    else if (vendor_is(vendor_id_, "AuthenticAMD") || vendor_is(vendor_id_, "HygonGenuine")) vendor_ = CpuVendor::amd;
    if (e0.r[1] == h0.r[1] && e0.r[2] == h0.r[2] && e0.r[3] == h0.r[3])
        ext0_id_[0] = e0.r[1], ext0_id_[1] = e0.r[2], ext0_id_[2] = e0.r[3];

    // Leaf 1.
    const HostLeaf h1 = std_leaf(1);
    l1_eax_ = h1.r[0];
    l1_ebx_ = h1.r[1] & 0xffff;
    u32 l1c = h1.r[2] & L1_ECX, l1d = h1.r[3] & L1_EDX;
    l1c |= bit(31);                                          // running under a hypervisor
    if (opt.lapic) l1c |= bit(21) | bit(24), l1d |= bit(9);  // x2APIC, TSC-deadline, APIC: the model has them
    if (vcpu_count_ > 1) l1d |= bit(28);                     // HTT: EBX[23:16] is meaningful

    // Leaf 2: cache and TLB descriptors (Intel; AMD reports 0). Passed through: they describe
    // the host's caches, which the guest really runs on, and announce no feature; Linux sizes
    // its caches from them because leaf 4 is 0. Only a well-formed leaf (AL = 1) is passed.
    if (vendor_ == CpuVendor::intel) {
        const HostLeaf h2 = std_leaf(2);
        if ((h2.r[0] & 0xff) == 1)
            for (unsigned i = 0; i < 4; i++) leaf2_[i] = h2.r[i];
    }

    // Leaf 7.0.
    const HostLeaf h7 = std_leaf(7);
    u32 l7b = h7.r[1] & L7_EBX, l7c = h7.r[2] & L7_ECX, l7d = h7.r[3] & L7_EDX;

    // XSAVE: the host's components, only those Keel allows, each only if the host describes
    // it with its architectural size at a sane offset (standard format).
    const HostLeaf hd0 = std_leaf(0xd, 0);
    const u64 host_xcr0 = u64(hd0.r[3]) << 32 | hd0.r[0];
    const bool xsave = (h1.r[2] & bit(26)) && host_max >= 0xd && (host_xcr0 & (XCR0_X87 | XCR0_SSE)) == 3 &&
                       (l1d & (bit(24) | bit(25))) == (bit(24) | bit(25));   // FXSR, SSE
    u64 xcr0 = 0;
    if (xsave) {
        xcr0 = XCR0_X87 | XCR0_SSE;
        struct { unsigned i; u32 size; bool wanted; } extra[] = {
            {2, 256, (h1.r[2] & bit(28)) != 0},   // AVX: YMM_Hi128
            {9, 8, (h7.r[2] & bit(3)) != 0},      // PKU: PKRU
        };
        for (auto c : extra) {
            if (!c.wanted || !(host_xcr0 & (1ull << c.i))) continue;
            const HostLeaf hc = std_leaf(0xd, c.i);
            if (hc.r[0] != c.size || hc.r[1] < XSAVE_LEGACY_SIZE || hc.r[1] > 0x10000) continue;
            xcr0 |= 1ull << c.i;
            comp_size_[c.i] = hc.r[0];
            comp_offset_[c.i] = hc.r[1];
            comp_ecx_[c.i] = hc.r[2] & bit(1);   // 64-byte aligned when compacted; user state (bit 0 = 0)
        }
        word(CpuidWord::d1_eax) = std_leaf(0xd, 1).r[0] & D1_EAX;
    }
    xcr0_supported_ = xcr0;

    // Dependencies: what needs a state the guest cannot enable goes with it.
    if (!xsave) l1c &= ~bit(26);
    if (!(xcr0 & XCR0_AVX)) {
        l1c &= ~(bit(28) | bit(12) | bit(29));   // AVX, and the VEX instructions on YMM state: FMA, F16C
        l7b &= ~bit(5);                          // AVX2
    }
    if (!(xcr0 & XCR0_PKRU)) l7c &= ~bit(3);     // PKU

    // 0x80000001.
    const HostLeaf he1 = ext_leaf(0x80000001);
    e1_eax_ = he1.r[0];
    const u32 e1c = he1.r[2] & E1_ECX;
    const u32 e1d = (he1.r[3] & E1_EDX) | (he1.r[3] & E1_EDX_MIRROR & l1d);
    if (!(e1d & bit(27))) l7c &= ~bit(22);        // RDPID only with RDTSCP (one TSC_AUX MSR)

    // 0x80000007, 0x80000008.
    const u32 e7d = ext_leaf(0x80000007).r[3] & E7_EDX;
    const HostLeaf he8 = ext_leaf(0x80000008);
    e8_eax_ = he8.r[0] & 0xffff;                  // physical and linear address bits; guest physical: 0
    const u32 e8b = he8.r[1] & E8_EBX;

    word(CpuidWord::l1_ecx) = l1c, word(CpuidWord::l1_edx) = l1d;
    word(CpuidWord::l7_ebx) = l7b, word(CpuidWord::l7_ecx) = l7c, word(CpuidWord::l7_edx) = l7d;
    word(CpuidWord::e1_ecx) = e1c, word(CpuidWord::e1_edx) = e1d;
    word(CpuidWord::e7_edx) = e7d, word(CpuidWord::e8_ebx) = e8b;

    u32 synth = bit(3);                                                    // always
    if (has(Feature::intel_spec_ctrl) || has(Feature::amd_ibrs) || has(Feature::amd_stibp) || has(Feature::amd_ssbd))
        synth |= bit(0);                                                   // spec_ctrl
    if (has(Feature::intel_spec_ctrl) || has(Feature::amd_ibpb)) synth |= bit(1);   // ibpb
    if (has(Feature::rdtscp) || has(Feature::rdpid)) synth |= bit(2);     // tsc_aux
    word(CpuidWord::synth) = synth;

    // Brand string and cache information: text and sizes, no features.
    for (u32 i = 0; i < 3; i++) {
        const HostLeaf hb = ext_leaf(0x80000002 + i);
        for (unsigned j = 0; j < 4; j++) brand_[i * 4 + j] = hb.r[j];
    }
    const HostLeaf he5 = ext_leaf(0x80000005), he6 = ext_leaf(0x80000006);
    for (unsigned j = 0; j < 4; j++) e5_[j] = he5.r[j], e6_[j] = he6.r[j];

    // The highest leaves. 0x15/0x16 are Keel's (the TSC rate): shown whenever the rate is
    // known, even if the host stops below them (the leaves in between read 0: nothing).
    max_std_ = max<u32>(min<u32>(host_max, STD_LIMIT), 1);   // leaf 1 is Keel's too (hypervisor bit, APIC)
    if (xsave) max_std_ = max<u32>(max_std_, 0xd);
    if (tsc_hz_) max_std_ = STD_LIMIT;
    max_ext_ = min<u32>(host_max_ext, EXT_LIMIT);

    // CR4: everything reserved but what the features allow.
    u64 allowed = 0;
    for (const Cr4Rule &r : CR4_RULES)
        if (has(r.needs)) allowed |= 1ull << r.bit;
    cr4_reserved_ = ~allowed;

    // The leaves whose answer is the leaf's alone, answered once here (fixed_leaf). Leaf 1
    // (the vCPU's index, CR4.OSXSAVE, the APIC bit), 7 (sub-leaves, CR4.PKE) and 0xD
    // (sub-leaves, XCR0) vary while they exist; above max_std_ they read 0 like any other.
    fixed_mask_ = 0;
    for (u32 i = 0; i < FIXED_SLOTS; i++) {
        const u32 leaf = i <= STD_LIMIT ? i : 0x80000000u + (i - (STD_LIMIT + 1));
        if ((leaf == 1 || leaf == 7 || leaf == 0xd) && leaf <= max_std_) continue;
        cpuid(leaf, 0, 0, 0, 0, fixed_[i], true);
        fixed_mask_ |= 1u << i;
    }
}

void CpuProfile::cpuid(u32 leaf, u32 sub, u32 vcpu_index, u64 cr4, u64 xcr0, u32 out[4], bool apic_enabled) const
{
    out[0] = out[1] = out[2] = out[3] = 0;
    if (leaf >= HV_LEAF_BASE && leaf < 0x50000000) {
        if (leaf == HV_LEAF_BASE) out[0] = HV_LEAF_MAX, out[1] = out[2] = out[3] = HV_SIGNATURE;
        else if (leaf == HV_LEAF_TIMING) out[0] = out[1] = u32(min<u64>(tsc_hz_ / 1000, 0xffffffff));
        return;
    }
    if (leaf < 0x80000000 ? leaf > max_std_ : leaf > max_ext_) return;

    switch (leaf) {
    case 0:
        out[0] = max_std_, out[1] = vendor_id_[0], out[2] = vendor_id_[2], out[3] = vendor_id_[1];
        return;
    case 1:
        out[0] = l1_eax_;
        out[1] = l1_ebx_ | min<u32>(vcpu_count_, 0xff) << 16 | (vcpu_index & 0xff) << 24;
        out[2] = word(CpuidWord::l1_ecx);
        if (has(Feature::xsave) && (cr4 & CR4_OSXSAVE)) out[2] |= L1_ECX_OSXSAVE;
        out[3] = word(CpuidWord::l1_edx);
        if (!apic_enabled) out[3] &= ~L1_EDX_APIC;
        return;
    case 2:
        for (unsigned i = 0; i < 4; i++) out[i] = leaf2_[i];
        return;
    case 7:
        if (sub != 0) return;   // EAX = 0: sub-leaf 0 is the only one
        out[1] = word(CpuidWord::l7_ebx);
        out[2] = word(CpuidWord::l7_ecx);
        if (has(Feature::pku) && (cr4 & CR4_PKE)) out[2] |= L7_ECX_OSPKE;
        out[3] = word(CpuidWord::l7_edx);
        return;
    case 0xd:
        if (!has(Feature::xsave)) return;
        if (sub == 0) {
            out[0] = u32(xcr0_supported_), out[3] = u32(xcr0_supported_ >> 32);
            out[1] = xsave_size(xcr0), out[2] = xsave_max_size();
        } else if (sub == 1) {
            // EBX: the compacted size for XCR0 | IA32_XSS (XSS is 0); ECX:EDX (the IA32_XSS
            // bits): 0, XSAVES is hidden. Linux sizes its buffers by EBX when XSAVEC is shown
            // and checks it against the sub-leaves' sizes ("XSAVE consistency problem").
            out[0] = word(CpuidWord::d1_eax);
            out[1] = xsave_compacted_size(xcr0);
        } else if (sub < XSAVE_COMPONENTS && (xcr0_supported_ >> sub & 1)) {
            // ECX[1] (64-byte aligned when compacted) only means something with XSAVEC.
            out[0] = comp_size_[sub], out[1] = comp_offset_[sub];
            out[2] = has(Feature::xsavec) ? comp_ecx_[sub] : 0;
        }
        return;
    case 0x15:
        if (tsc_hz_) {
            // TSC = ECX * EBX / EAX: the crystal is the TSC itself, or a whole fraction of it
            // when the rate does not fit in 32 bits.
            const u64 k = tsc_hz_ / 0x100000000ull + 1;
            out[0] = 1, out[1] = u32(k), out[2] = u32(tsc_hz_ / k);
        }
        return;
    case 0x16:
        if (tsc_hz_) out[0] = out[1] = out[2] = u32(min<u64>(tsc_hz_ / 1000000, 0xffff));   // base = max = bus, MHz
        return;
    case 0x80000000:
        out[0] = max_ext_, out[1] = ext0_id_[0], out[2] = ext0_id_[1], out[3] = ext0_id_[2];
        return;
    case 0x80000001:
        out[0] = e1_eax_, out[2] = word(CpuidWord::e1_ecx), out[3] = word(CpuidWord::e1_edx);
        return;
    case 0x80000002: case 0x80000003: case 0x80000004:
        for (unsigned i = 0; i < 4; i++) out[i] = brand_[(leaf - 0x80000002) * 4 + i];
        return;
    case 0x80000005:
        for (unsigned i = 0; i < 4; i++) out[i] = e5_[i];
        return;
    case 0x80000006:
        for (unsigned i = 0; i < 4; i++) out[i] = e6_[i];
        return;
    case 0x80000007:
        out[3] = word(CpuidWord::e7_edx);
        return;
    case 0x80000008:
        // ECX = 0: one core (leaf 1's count with HTT is the whole topology; ECX[7:0] =
        // vcpu_count - 1 would be as valid, but says nothing leaves 4/0xb do not).
        out[0] = e8_eax_, out[1] = word(CpuidWord::e8_ebx);
        return;
    default:
        // 3-6, 8-0xc, 0xe-0x14 (topology, MONITOR, power, PMU, RDT, SGX, PT, ...),
        // 0x80000009 and up (SVM, topology, encryption): nothing.
        return;
    }
}

bool CpuProfile::xcr0_valid(u64 xcr0) const
{
    if (!(xcr0 & XCR0_X87)) return false;
    if (xcr0 & ~xcr0_supported_) return false;
    if ((xcr0 & XCR0_AVX) && !(xcr0 & XCR0_SSE)) return false;
    if ((xcr0 & XCR0_AVX512) && ((xcr0 & XCR0_AVX512) != XCR0_AVX512 || !(xcr0 & XCR0_AVX))) return false;
    if (!(xcr0 & XCR0_BNDREGS) != !(xcr0 & XCR0_BNDCSR)) return false;
    if (!(xcr0 & XCR0_TILECFG) != !(xcr0 & XCR0_TILEDATA)) return false;
    return true;
}

u32 CpuProfile::xsave_size(u64 xcr0) const
{
    if (!xcr0_supported_) return 0;
    u32 size = XSAVE_LEGACY_SIZE;
    xcr0 &= xcr0_supported_;
    for (unsigned i = 2; i < XSAVE_COMPONENTS; i++)
        if (xcr0 >> i & 1) size = max(size, comp_offset_[i] + comp_size_[i]);
    return size;
}

u32 CpuProfile::xsave_compacted_size(u64 xcr0) const
{
    if (!xcr0_supported_ || !has(Feature::xsavec)) return 0;
    u32 size = XSAVE_LEGACY_SIZE;   // x87 and SSE stay in the legacy region, whatever XCR0 says
    xcr0 &= xcr0_supported_;
    for (unsigned i = 2; i < XSAVE_COMPONENTS; i++) {
        if (!(xcr0 >> i & 1)) continue;
        if (comp_ecx_[i] & 2) size = (size + 63) & ~63u;
        size += comp_size_[i];
    }
    return size;
}

u64 CpuProfile::spec_ctrl_bits() const
{
    u64 b = 0;
    if (has(Feature::intel_spec_ctrl) || has(Feature::amd_ibrs)) b |= 1;   // IBRS
    if (has(Feature::intel_stibp) || has(Feature::amd_stibp)) b |= 2;      // STIBP
    if (has(Feature::intel_ssbd) || has(Feature::amd_ssbd)) b |= 4;        // SSBD
    return b;
}

// ---- MSRs ----------------------------------------------------------------------------------

namespace {

using A = MsrAccess;
using F = Feature;
namespace V = msr_vendor;

// Not here, so #GP: IA32_FEATURE_CONTROL (0x3a, VMX/SMX locks), IA32_TSC_ADJUST (0x3b, hidden),
// the VMX capability MSRs (0x480-0x491), MTRRs (0xfe, 0x200-0x2ff: MTRR hidden), DEBUGCTL
// (0x1d9: LBR/BTF state Keel neither switches nor announces; no CPUID bit, so a guest probes
// it with a fault-safe read), the machine-check banks (0x400+), PMU MSRs (leaf 0xa is 0),
// IA32_XSS (0xda0: XSAVES hidden), VM_CR/VM_HSAVE_PA (0xc0010114/7: SVM hidden),
// VIRT_SPEC_CTRL (0xc001011f: VIRT_SSBD hidden), HWCR and the other AMD model MSRs.
constexpr MsrRule MSR_TABLE[] = {
    {0x10, 0x10, V::any, F::tsc, A::read_write, "TSC"},
    {0x17, 0x17, V::intel, F::always, A::zero_read_only, "PLATFORM_ID"},
    {0x1b, 0x1b, V::any, F::apic, A::read_write, "APIC_BASE"},
    {0x48, 0x48, V::any, F::spec_ctrl, A::read_write, "SPEC_CTRL"},          // bits: spec_ctrl_bits()
    {0x49, 0x49, V::any, F::ibpb, A::write_only, "PRED_CMD"},                // bit 0: IBPB
    {0x8b, 0x8b, V::any, F::always, A::read_write, "BIOS_SIGN_ID"},          // AMD: PATCH_LEVEL; reads 0
    {0x10a, 0x10a, V::any, F::arch_capabilities, A::read_only, "ARCH_CAPABILITIES"},
    {0x10b, 0x10b, V::any, F::flush_l1d, A::write_only, "FLUSH_CMD"},        // bit 0: L1D_FLUSH
    {0x174, 0x176, V::any, F::sep, A::read_write, "SYSENTER_CS/ESP/EIP"},
    // No banks (MCG_CAP.Count = 0) and nothing pending. MCE/MCA are hidden, but these two are
    // read by firmware-style probes without looking at CPUID; reading 0 is the truth.
    {0x179, 0x179, V::any, F::always, A::zero_read_only, "MCG_CAP"},
    {0x17a, 0x17a, V::any, F::always, A::zero, "MCG_STATUS"},
    {0x1a0, 0x1a0, V::any, F::always, A::read_write, "MISC_ENABLE"},        // every vendor, as KVM: guests probe it
    {0x277, 0x277, V::any, F::pat, A::read_write, "PAT"},
    {0x6e0, 0x6e0, V::any, F::tsc_deadline, A::read_write, "TSC_DEADLINE"},
    {0x800, 0x8ff, V::any, F::x2apic, A::read_write, "x2APIC"},              // per register: the APIC model's
    {0xc0000080, 0xc0000080, V::any, F::lm, A::read_write, "EFER"},
    {0xc0000081, 0xc0000081, V::any, F::syscall, A::read_write, "STAR"},
    {0xc0000082, 0xc0000084, V::any, F::lm, A::read_write, "LSTAR/CSTAR/SFMASK"},
    {0xc0000100, 0xc0000102, V::any, F::lm, A::read_write, "FS/GS/KERNEL_GS_BASE"},
    {0xc0000103, 0xc0000103, V::any, F::tsc_aux, A::read_write, "TSC_AUX"},
    // K7 performance counters (PERFEVTSEL0-3, PERFCTR0-3): architectural on every AMD CPU, so
    // Linux touches them without CPUID; no PMU: they read 0 and take only 0.
    {0xc0010000, 0xc0010007, V::amd, F::always, A::zero, "PERF_LEGACY"},
    // K8 rev F and later: the C1E/SMI interrupt-pending message register. Linux reads it
    // (without a fault fixup) on CPUs its erratum-400 table names, as QEMU's family 0xf is;
    // no C1E here: it reads 0 (as on KVM).
    {0xc0010055, 0xc0010055, V::amd, F::always, A::zero_read_only, "INT_PENDING_MSG"},
};

} // namespace

const MsrRule *msr_rules(usize &count)
{
    count = sizeof(MSR_TABLE) / sizeof(MSR_TABLE[0]);
    return MSR_TABLE;
}

const MsrRule *msr_rule(const CpuProfile &p, u32 msr)
{
    const u8 vendor = u8(1u << u8(p.vendor()));
    for (const MsrRule &r : MSR_TABLE)
        if (msr >= r.first && msr <= r.last) return (r.vendors & vendor) && p.has(r.needs) ? &r : nullptr;
    return nullptr;
}

bool msr_exists(const CpuProfile &p, u32 msr, bool write)
{
    const MsrRule *r = msr_rule(p, msr);
    if (!r) return false;
    return write ? r->access != MsrAccess::read_only && r->access != MsrAccess::zero_read_only
                 : r->access != MsrAccess::write_only;
}

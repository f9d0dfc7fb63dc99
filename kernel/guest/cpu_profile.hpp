// One guest's CPU: the CPUID view it gets and everything that must agree with it.
//
// build() reads the host CPU once and keeps an ALLOW-LIST view: a feature bit reaches the
// guest only if Keel knows it virtualises it (and the host has it, where it is the host's);
// every bit not named in cpu_profile.cpp is 0, whatever a future CPU reports. From that
// one view follow, by construction:
//   - cpuid(): the guest's CPUID, with the per-vCPU and per-state bits filled in (APIC ID,
//     OSXSAVE = CR4.OSXSAVE, OSPKE = CR4.PKE, APIC = IA32_APIC_BASE's global enable, XSAVE
//     size for the current XCR0);
//   - cr4_reserved(): what a MOV to CR4 may not set (a feature CPUID hides cannot be enabled);
//   - xcr0_valid()/xcr0_supported()/xsave_size()/xsave_compacted_size(): the XSETBV rules and
//     leaf 0xD (both formats' sizes follow the XCR0 passed to cpuid());
//   - has(): what the exit handlers ask, and the MSR table below (msr_rule): an MSR exists
//     for the guest iff the CPUID bit that announces it is set; every other MSR is #GP.
// Also Keel's own leaves 0x40000000-0x4fffffff (see HV_* below).
//
// Portable and freestanding: no host CPUID after build() (the exit path only reads the
// stored view), no heap, no globals. A CpuProfile is plain data; zero-initialised it is a
// CPU with no features (build() fills it).
#pragma once

#include "kernel/lib/types.hpp"

enum class CpuVendor : u8 { intel, amd, other };

// The host CPU as build() sees it (the real CPUID instruction in the kernel, a fake in tests).
class ProfileHost {
public:
    virtual void cpuid(u32 leaf, u32 sub, u32 out[4]) = 0;

protected:
    ~ProfileHost() = default;
};

struct ProfileOptions {
    u32 vcpu_count = 1;   // leaf 1 EBX[23:16] and HTT
    bool lapic = true;    // the local APIC model exists: APIC, x2APIC, TSC-deadline are shown
    u64 tsc_hz = 0;       // the guest's TSC rate, for leaves 0x15, 0x16 and 0x40000010 (0: unknown)
};

// The registers a feature bit can live in: the words a profile stores. `synth` holds
// features that are not one CPUID bit (the union of an Intel and an AMD bit, ...).
enum class CpuidWord : u8 {
    l1_ecx, l1_edx,                  // leaf 1
    l7_ebx, l7_ecx, l7_edx,          // leaf 7 sub-leaf 0
    e1_ecx, e1_edx,                  // 0x80000001
    e7_edx,                          // 0x80000007
    e8_ebx,                          // 0x80000008
    d1_eax,                          // 0xD sub-leaf 1
    synth,
    count
};

constexpr u16 cpuid_bit(CpuidWord w, unsigned bit) { return u16(u16(w) << 5 | (bit & 31)); }

// A feature as (word << 5 | bit). Hidden features are listed too (they read false), so an
// exit handler can ask "does the guest have MONITOR?" and get the guest's answer.
enum class Feature : u16 {
    // leaf 1 ECX
    sse3 = cpuid_bit(CpuidWord::l1_ecx, 0), pclmulqdq = cpuid_bit(CpuidWord::l1_ecx, 1),
    monitor = cpuid_bit(CpuidWord::l1_ecx, 3), vmx = cpuid_bit(CpuidWord::l1_ecx, 5),
    ssse3 = cpuid_bit(CpuidWord::l1_ecx, 9), fma = cpuid_bit(CpuidWord::l1_ecx, 12),
    cx16 = cpuid_bit(CpuidWord::l1_ecx, 13), pcid = cpuid_bit(CpuidWord::l1_ecx, 17),
    sse4_1 = cpuid_bit(CpuidWord::l1_ecx, 19), sse4_2 = cpuid_bit(CpuidWord::l1_ecx, 20),
    x2apic = cpuid_bit(CpuidWord::l1_ecx, 21), movbe = cpuid_bit(CpuidWord::l1_ecx, 22),
    popcnt = cpuid_bit(CpuidWord::l1_ecx, 23), tsc_deadline = cpuid_bit(CpuidWord::l1_ecx, 24),
    aes = cpuid_bit(CpuidWord::l1_ecx, 25), xsave = cpuid_bit(CpuidWord::l1_ecx, 26),
    avx = cpuid_bit(CpuidWord::l1_ecx, 28), f16c = cpuid_bit(CpuidWord::l1_ecx, 29),
    rdrand = cpuid_bit(CpuidWord::l1_ecx, 30), hypervisor = cpuid_bit(CpuidWord::l1_ecx, 31),
    // leaf 1 EDX
    fpu = cpuid_bit(CpuidWord::l1_edx, 0), vme = cpuid_bit(CpuidWord::l1_edx, 1),
    de = cpuid_bit(CpuidWord::l1_edx, 2), pse = cpuid_bit(CpuidWord::l1_edx, 3),
    tsc = cpuid_bit(CpuidWord::l1_edx, 4), msr = cpuid_bit(CpuidWord::l1_edx, 5),
    pae = cpuid_bit(CpuidWord::l1_edx, 6), mce = cpuid_bit(CpuidWord::l1_edx, 7),
    cx8 = cpuid_bit(CpuidWord::l1_edx, 8), apic = cpuid_bit(CpuidWord::l1_edx, 9),
    sep = cpuid_bit(CpuidWord::l1_edx, 11), mtrr = cpuid_bit(CpuidWord::l1_edx, 12),
    pge = cpuid_bit(CpuidWord::l1_edx, 13), mca = cpuid_bit(CpuidWord::l1_edx, 14),
    cmov = cpuid_bit(CpuidWord::l1_edx, 15), pat = cpuid_bit(CpuidWord::l1_edx, 16),
    pse36 = cpuid_bit(CpuidWord::l1_edx, 17), clflush = cpuid_bit(CpuidWord::l1_edx, 19),
    mmx = cpuid_bit(CpuidWord::l1_edx, 23), fxsr = cpuid_bit(CpuidWord::l1_edx, 24),
    sse = cpuid_bit(CpuidWord::l1_edx, 25), sse2 = cpuid_bit(CpuidWord::l1_edx, 26),
    self_snoop = cpuid_bit(CpuidWord::l1_edx, 27), htt = cpuid_bit(CpuidWord::l1_edx, 28),
    // leaf 7 EBX
    fsgsbase = cpuid_bit(CpuidWord::l7_ebx, 0), sgx = cpuid_bit(CpuidWord::l7_ebx, 2),
    bmi1 = cpuid_bit(CpuidWord::l7_ebx, 3), hle = cpuid_bit(CpuidWord::l7_ebx, 4),
    avx2 = cpuid_bit(CpuidWord::l7_ebx, 5), smep = cpuid_bit(CpuidWord::l7_ebx, 7),
    bmi2 = cpuid_bit(CpuidWord::l7_ebx, 8), erms = cpuid_bit(CpuidWord::l7_ebx, 9),
    invpcid = cpuid_bit(CpuidWord::l7_ebx, 10), rtm = cpuid_bit(CpuidWord::l7_ebx, 11),
    mpx = cpuid_bit(CpuidWord::l7_ebx, 14), avx512f = cpuid_bit(CpuidWord::l7_ebx, 16),
    rdseed = cpuid_bit(CpuidWord::l7_ebx, 18), adx = cpuid_bit(CpuidWord::l7_ebx, 19),
    smap = cpuid_bit(CpuidWord::l7_ebx, 20), clflushopt = cpuid_bit(CpuidWord::l7_ebx, 23),
    clwb = cpuid_bit(CpuidWord::l7_ebx, 24), intel_pt = cpuid_bit(CpuidWord::l7_ebx, 25),
    sha = cpuid_bit(CpuidWord::l7_ebx, 29),
    // leaf 7 ECX
    umip = cpuid_bit(CpuidWord::l7_ecx, 2), pku = cpuid_bit(CpuidWord::l7_ecx, 3),
    waitpkg = cpuid_bit(CpuidWord::l7_ecx, 5), la57 = cpuid_bit(CpuidWord::l7_ecx, 16),
    rdpid = cpuid_bit(CpuidWord::l7_ecx, 22),
    // leaf 7 EDX (Intel's speculation controls)
    md_clear = cpuid_bit(CpuidWord::l7_edx, 10), intel_spec_ctrl = cpuid_bit(CpuidWord::l7_edx, 26),
    intel_stibp = cpuid_bit(CpuidWord::l7_edx, 27), flush_l1d = cpuid_bit(CpuidWord::l7_edx, 28),
    arch_capabilities = cpuid_bit(CpuidWord::l7_edx, 29), intel_ssbd = cpuid_bit(CpuidWord::l7_edx, 31),
    // 0x80000001 ECX
    lahf_lm = cpuid_bit(CpuidWord::e1_ecx, 0), svm = cpuid_bit(CpuidWord::e1_ecx, 2),
    abm = cpuid_bit(CpuidWord::e1_ecx, 5), sse4a = cpuid_bit(CpuidWord::e1_ecx, 6),
    misalign_sse = cpuid_bit(CpuidWord::e1_ecx, 7), prefetchw = cpuid_bit(CpuidWord::e1_ecx, 8),
    // 0x80000001 EDX
    syscall = cpuid_bit(CpuidWord::e1_edx, 11), nx = cpuid_bit(CpuidWord::e1_edx, 20),
    mmxext = cpuid_bit(CpuidWord::e1_edx, 22), ffxsr = cpuid_bit(CpuidWord::e1_edx, 25),
    page1gb = cpuid_bit(CpuidWord::e1_edx, 26), rdtscp = cpuid_bit(CpuidWord::e1_edx, 27),
    lm = cpuid_bit(CpuidWord::e1_edx, 29),
    // 0x80000007 EDX
    invariant_tsc = cpuid_bit(CpuidWord::e7_edx, 8),
    // 0x80000008 EBX (AMD's speculation controls)
    amd_ibpb = cpuid_bit(CpuidWord::e8_ebx, 12), amd_ibrs = cpuid_bit(CpuidWord::e8_ebx, 14),
    amd_stibp = cpuid_bit(CpuidWord::e8_ebx, 15), amd_ssbd = cpuid_bit(CpuidWord::e8_ebx, 24),
    amd_virt_ssbd = cpuid_bit(CpuidWord::e8_ebx, 25),
    // 0xD sub-leaf 1 EAX
    xsaveopt = cpuid_bit(CpuidWord::d1_eax, 0), xsavec = cpuid_bit(CpuidWord::d1_eax, 1),
    xgetbv1 = cpuid_bit(CpuidWord::d1_eax, 2), xsaves = cpuid_bit(CpuidWord::d1_eax, 3),
    // synthetic: unions of the bits above
    spec_ctrl = cpuid_bit(CpuidWord::synth, 0),   // IA32_SPEC_CTRL: 7.EDX[26] or AMD IBRS/STIBP/SSBD
    ibpb = cpuid_bit(CpuidWord::synth, 1),        // IA32_PRED_CMD: 7.EDX[26] or AMD IBPB
    tsc_aux = cpuid_bit(CpuidWord::synth, 2),     // IA32_TSC_AUX: RDTSCP or RDPID
    always = cpuid_bit(CpuidWord::synth, 3),      // every guest (no CPUID bit announces it)
};

class CpuProfile {
public:
    // Keel's own leaves (0x40000000-0x4fffffff). 0x40000000: EAX = HV_LEAF_MAX, EBX:ECX:EDX =
    // "KeelKeelKeel". 0x40000001: 0 (no paravirtual features). 0x40000010 (the VMware-style
    // timing leaf): EAX = TSC kHz, EBX = local APIC timer kHz (Keel's APIC timer counts at the
    // TSC rate), ECX = EDX = 0. Everything else in the range: 0.
    static constexpr u32 HV_LEAF_BASE = 0x40000000, HV_LEAF_TIMING = 0x40000010, HV_LEAF_MAX = 0x40000010;
    static constexpr u32 HV_SIGNATURE = 'K' | 'e' << 8 | 'e' << 16 | u32('l') << 24;   // "Keel"
    // The highest leaves a guest can ever see.
    static constexpr u32 STD_LIMIT = 0x16, EXT_LIMIT = 0x80000008;
    // The XSAVE legacy region (512) and header (64): the XSAVE area's size for x87/SSE only.
    static constexpr u32 XSAVE_LEGACY_SIZE = 576;

    // Once per guest: read the host's leaves and keep the guest's view.
    void build(ProfileHost &host, const ProfileOptions &opt);

    // The guest's CPUID(leaf, sub) on vCPU vcpu_index whose CR4 and XCR0 are cr4/xcr0 now and
    // whose local APIC is globally enabled (IA32_APIC_BASE[11]) or not: CPUID.1:EDX.APIC follows
    // it, as on hardware (SDM vol. 3 10.4.3). Leaves above max_std()/max_ext() (and unknown
    // ranges) read 0 (AMD's behaviour; Intel would repeat the highest basic leaf, which nothing
    // relies on).
    void cpuid(u32 leaf, u32 sub, u32 vcpu_index, u64 cr4, u64 xcr0, u32 out[4], bool apic_enabled = true) const;
    // The leaves whose answer depends on CR4 (1: OSXSAVE, 7: OSPKE) and on XCR0 (0xD: sizes): for
    // the others cpuid() ignores those arguments, and the exit handler need not read them.
    static constexpr bool cpuid_uses_cr4(u32 leaf) { return leaf == 1 || leaf == 7; }
    static constexpr bool cpuid_uses_xcr0(u32 leaf) { return leaf == 0xd; }
    // The answer for a leaf that depends on nothing but the leaf (not the sub-leaf, vCPU, CR4,
    // XCR0 or APIC): computed once by build(), so the exit path answers it with a few loads.
    // nullptr for the others (1, 7 and 0xD up to max_std(), Keel's own leaves, unknown ranges):
    // ask cpuid().
    const u32 *fixed_leaf(u32 leaf) const
    {
        u32 i;
        if (leaf <= STD_LIMIT) i = leaf;
        else if (leaf - 0x80000000u <= EXT_LIMIT - 0x80000000u) i = STD_LIMIT + 1 + (leaf - 0x80000000u);
        else return nullptr;
        return fixed_mask_ >> i & 1 ? fixed_[i] : nullptr;
    }

    CpuVendor vendor() const { return vendor_; }
    u32 max_std() const { return max_std_; }
    u32 max_ext() const { return max_ext_; }
    bool has(Feature f) const
    {
        const u16 v = u16(f);
        return (v >> 5) < u16(CpuidWord::count) && (words_[v >> 5] >> (v & 31) & 1);
    }

    // CR4 bits the guest may not set: a MOV to CR4 with any of them is #GP. (The mode rules,
    // e.g. PCIDE only in long mode with CR3[11:0] = 0, are the exit handler's.)
    u64 cr4_reserved() const { return cr4_reserved_; }

    // XSETBV of XCR0 (SDM vol. 1, 13.3): x87 set; only supported components; AVX needs SSE;
    // AVX-512 (opmask, ZMM_Hi256, Hi16_ZMM) all or none and only with AVX; BNDREG = BNDCSR;
    // AMX TILECFG = TILEDATA. Always false when the guest has no XSAVE.
    bool xcr0_valid(u64 xcr0) const;
    // The XCR0 components the guest may enable: leaf 0xD sub-leaf 0 EDX:EAX (0 without XSAVE).
    u64 xcr0_supported() const { return xcr0_supported_; }
    // The standard-format XSAVE area's size for these components (unsupported ones ignored):
    // leaf 0xD sub-leaf 0 EBX when XCR0 = xcr0.
    u32 xsave_size(u64 xcr0) const;
    u32 xsave_max_size() const { return xsave_size(xcr0_supported_); }
    // The compacted-format XSAVE area's size for these components (SDM vol. 1, 13.4.3): the
    // legacy region and header (576 bytes), then each supported component of xcr0 in order,
    // on the next 64-byte boundary when its sub-leaf's ECX[1] says so. Leaf 0xD sub-leaf 1 EBX
    // when XCR0 = xcr0 (IA32_XSS is always 0: XSAVES is hidden). 0 when the guest has no
    // XSAVEC: then nothing uses the compacted format, and EBX is 0 as on CPUs without it.
    u32 xsave_compacted_size(u64 xcr0) const;

    // IA32_SPEC_CTRL bits the guest may set: IBRS(0), STIBP(1), SSBD(2) as its CPUID shows them.
    u64 spec_ctrl_bits() const;

private:
    u32 &word(CpuidWord w) { return words_[u8(w)]; }
    u32 word(CpuidWord w) const { return words_[u8(w)]; }

    CpuVendor vendor_ = CpuVendor::other;
    u32 max_std_ = 0, max_ext_ = 0;
    u32 vendor_id_[3] = {};           // leaf 0 EBX, EDX, ECX
    u32 ext0_id_[3] = {};             // 0x80000000 EBX, ECX, EDX (AMD repeats the vendor)
    u32 l1_eax_ = 0, l1_ebx_ = 0;     // signature; brand index and CLFLUSH size (EBX[15:0])
    u32 leaf2_[4] = {};               // cache descriptors (Intel)
    u32 words_[u8(CpuidWord::count)] = {};
    u64 xcr0_supported_ = 0;
    static constexpr unsigned XSAVE_COMPONENTS = 10;   // 0..9: x87 .. PKRU
    u32 comp_size_[XSAVE_COMPONENTS] = {}, comp_offset_[XSAVE_COMPONENTS] = {}, comp_ecx_[XSAVE_COMPONENTS] = {};
    u32 e1_eax_ = 0;
    u32 brand_[12] = {};              // 0x80000002-0x80000004
    u32 e5_[4] = {}, e6_[4] = {};     // cache and TLB information
    u32 e8_eax_ = 0;                  // address sizes
    u32 vcpu_count_ = 1;
    u64 tsc_hz_ = 0;
    // fixed_leaf's answers: slot i is leaf i (0..STD_LIMIT), then 0x80000000..EXT_LIMIT.
    static constexpr unsigned FIXED_SLOTS = STD_LIMIT + 1 + (EXT_LIMIT - 0x80000000u + 1);
    static_assert(FIXED_SLOTS <= 32);
    u32 fixed_[FIXED_SLOTS][4] = {};
    u32 fixed_mask_ = 0;
    u64 cr4_reserved_ = ~0ull;
};

// ---- MSRs ----------------------------------------------------------------------------------
// One table of every MSR Keel accepts from a guest: the vendors it exists on and the feature
// (CPUID bit) that announces it. An MSR exists for a guest iff its rule's vendor matches and
// the guest has the feature; every other MSR is #GP. Values and bit checks are the handlers'.

enum class MsrAccess : u8 {
    read_write,
    read_only,        // WRMSR #GP
    write_only,       // RDMSR #GP (commands: PRED_CMD, FLUSH_CMD)
    zero,             // no state: reads 0; a write of 0 is accepted and dropped, anything else #GP
    zero_read_only,   // reads 0; WRMSR #GP
};

namespace msr_vendor {
inline constexpr u8 intel = 1u << u8(CpuVendor::intel), amd = 1u << u8(CpuVendor::amd),
                    any = intel | amd | 1u << u8(CpuVendor::other);
}

struct MsrRule {
    u32 first, last;    // inclusive range
    u8 vendors;         // msr_vendor:: mask
    Feature needs;
    MsrAccess access;
    const char *name;
};

// The whole table (for walking it: tests, logs).
const MsrRule *msr_rules(usize &count);
// The rule for `msr` if the MSR exists for this guest, else nullptr (#GP).
const MsrRule *msr_rule(const CpuProfile &p, u32 msr);
// The MSR exists and may be read (write = false) or written (write = true).
bool msr_exists(const CpuProfile &p, u32 msr, bool write);

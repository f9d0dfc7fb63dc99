// cpuid: what Keel's CPUID shows a guest. Checks, in this order (the exit code
// is the number of the first failed check, 0 if all pass):
//   1 leaf 1 ECX bit 31 (hypervisor present) is set
//   2 leaf 0x40000000 EBX,ECX,EDX = "KeelKeelKeel"
//   3 leaf 0x40000000 EAX (max hypervisor leaf) >= 0x40000000
//   4 leaf 1 ECX bit 5 (VMX) is clear
//   5 leaf 0x80000000 EAX (max extended leaf) is in 0x80000001..0x8000ffff: every x86-64 CPU
//     has leaf 0x80000001 (it reports long mode), so a smaller or garbage value is a bug
//   6 leaf 0x80000001 EDX bit 29 (long mode) is set: the leaf is the real one
//   7 leaf 0x80000001 ECX bit 2 (SVM) is clear
// Leaf 0xD, the XSAVE sizes (what Linux's arch/x86/kernel/fpu/xstate.c checks at boot, its
// "XSAVE consistency problem"), each for a series of XCR0 values set with XSETBV: x87|SSE,
// +AVX, +AVX+PKRU, +PKRU, x87 only (as far as 0xD.0 EDX:EAX supports them), then x87|SSE again.
// Without XSAVE (CPUID.1:ECX[26]) checks 8-15 pass as not applicable.
//   8 CR4.OSXSAVE can be set; XSETBV takes each XCR0 and XGETBV reads it back
//   9 0xD.0 EBX = the standard format's size for the XCR0 just set: the end of the last
//     enabled component by its sub-leaf's EBX (offset) + EAX (size), at least 576
//  10 0xD.0 ECX = the same for every supported component, whatever XCR0 is
//  11 XSAVE of everything enabled writes nothing at or beyond 0xD.0 EBX
//  12 0xD.1 EBX: with XSAVEC (0xD.1 EAX[1]) the compacted format's size for the XCR0 just set
//     (SDM vol. 1, 13.4.3: 576, then each enabled component in order, first moved up to a
//     64-byte boundary when its sub-leaf's ECX[1] is set); without XSAVEC (and XSAVES) 0
//  13 sub-leaves 2..62 of enabled-capable components: ECX[0] (supervisor) clear; ECX[1]
//     (aligned when compacted) only with XSAVEC
//  14 XSAVEC (when shown) writes nothing at or beyond 0xD.1 EBX and sets XCOMP_BV[63]
//  15 XSAVES is hidden: 0xD.1 EAX[3] clear, ECX = EDX = 0 (no IA32_XSS bits); and on Intel it
//     raises #UD (VMX leaves "enable XSAVES/XRSTORS" clear; SVM cannot intercept it, so on AMD
//     what it does is only printed)
// 9 and 12 are read right after each XSETBV: under QEMU TCG's SVM a guest's XSETBV does not
// exit, so Keel must find the guest's XCR0 in the register. Bare QEMU 7.2 TCG itself answers
// 0xD.1 EBX with the compacted size of every supported component, whatever XCR0 is and
// without XSAVEC: check 12 asserts the hardware's behaviour and fails there (guests.bare.cpuid).
#include "lib/guest.hpp"
#include "lib/probe.hpp"

extern "C" const char guest_name[] = "cpuid";

namespace {

constexpr u32 CR4_OSXSAVE = 1u << 18;
constexpr u32 AREA = 4096, PATTERN = 0xa5;
alignas(64) u8 area[AREA + 64];

u32 read_cr4() { u32 v; asm volatile("movl %%cr4, %0" : "=r"(v)); return v; }

u64 xgetbv() {
    u32 lo, hi;
    asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return u64(hi) << 32 | lo;
}

// The save instructions with every component requested (RFBM = XCR0), into a fresh pattern.
enum class Save { xsave, xsavec, xsaves };
u32 try_save(Save how) {
    memset(area, PATTERN, sizeof(area));
    probe_arm();
    if (how == Save::xsave)
        asm volatile("movl $1f, %0\n\txsave (%1)\n1:" : "=m"(probe.resume) : "r"(area), "a"(~0u), "d"(~0u) : "memory");
    else if (how == Save::xsavec)
        asm volatile("movl $1f, %0\n\txsavec (%1)\n1:" : "=m"(probe.resume) : "r"(area), "a"(~0u), "d"(~0u) : "memory");
    else
        asm volatile("movl $1f, %0\n\txsaves (%1)\n1:" : "=m"(probe.resume) : "r"(area), "a"(~0u), "d"(~0u) : "memory");
    return probe_done();
}

// The first byte at or beyond `from` that the last save changed, or AREA + 64 if none.
u32 written_from(u32 from) {
    for (u32 i = from; i < sizeof(area); i++)
        if (area[i] != PATTERN) return i;
    return sizeof(area);
}

// The sizes as a guest computes them from the component sub-leaves (Linux does the same).
u32 standard_size(u64 xcr0) {
    u32 size = 576;
    for (u32 i = 2; i < 63; i++)
        if (xcr0 >> i & 1) {
            const CpuidResult c = cpuid(0xd, i);
            if (c.ebx + c.eax > size) size = c.ebx + c.eax;
        }
    return size;
}

u32 compacted_size(u64 xcr0) {
    u32 size = 576;
    for (u32 i = 2; i < 63; i++)
        if (xcr0 >> i & 1) {
            const CpuidResult c = cpuid(0xd, i);
            if (c.ecx & 2) size = (size + 63) & ~63u;
            size += c.eax;
        }
    return size;
}

void leaf_d(Checks &t, bool xsave, bool intel) {
    if (!xsave) {
        for (u32 n = 8; n <= 15; n++) t.check(true, "XSAVE not advertised: leaf 0xD not applicable");
        return;
    }
    probe_install();
    const CpuidResult d0 = cpuid(0xd, 0), d1 = cpuid(0xd, 1);
    const u64 supported = u64(d0.edx) << 32 | d0.eax;
    const bool xsavec = d1.eax & 2, xsaves = d1.eax & 8;
    printf("cpuid: leaf 0xd.0 eax=0x%08x ebx=%u ecx=%u edx=0x%08x; 0xd.1 eax=0x%08x ebx=%u ecx=0x%08x edx=0x%08x\n",
           d0.eax, d0.ebx, d0.ecx, d0.edx, d1.eax, d1.ebx, d1.ecx, d1.edx);
    for (u32 i = 2; i < 63; i++)
        if (supported >> i & 1) {
            const CpuidResult c = cpuid(0xd, i);
            printf("cpuid: leaf 0xd.%u size=%u offset=%u ecx=0x%x\n", i, c.eax, c.ebx, c.ecx);
        }

    // The XCR0 values to walk through, as far as they are supported (AVX needs SSE; x87 always).
    u64 want[6];
    u32 n = 0;
    want[n++] = 3;
    if (supported & 4) want[n++] = 7;
    if ((supported & 0x204) == 0x204) want[n++] = 0x207;
    if (supported & 0x200) want[n++] = 0x203;
    want[n++] = 1;
    want[n++] = 3;

    const u32 cr4 = try_write_cr4(read_cr4() | CR4_OSXSAVE);
    bool set_ok = cr4 == kNoFault && (read_cr4() & CR4_OSXSAVE);
    u64 bad_xcr0 = 0, got_xcr0 = 0;
    bool d0_ok = true, xsave_ok = true, d1_ok = true, xsavec_ok = true;
    u32 bad_d0 = 0, want_d0 = 0, bad_d1 = 0, want_d1 = 0, x_written = 0, x_limit = 0, c_written = 0, c_limit = 0;
    u64 d0_at = 0, d1_at = 0, x_at = 0, c_at = 0, xcomp_bv = 0;
    for (u32 k = 0; k < n && set_ok; k++) {
        const u64 x = want[k];
        if (try_xsetbv(0, x) != kNoFault || xgetbv() != x) {
            set_ok = false, bad_xcr0 = x, got_xcr0 = xgetbv();
            break;
        }
        // Right after the XSETBV: the sizes must already follow it.
        const CpuidResult a = cpuid(0xd, 0), b = cpuid(0xd, 1);
        const u32 stdsz = standard_size(x), cmp = xsavec || xsaves ? compacted_size(x) : 0;
        printf("cpuid: xcr0=0x%llx 0xd.0 ebx=%u (components: %u) 0xd.1 ebx=%u (components: %u)\n", x, a.ebx, stdsz,
               b.ebx, cmp);
        if (d0_ok && a.ebx != stdsz) d0_ok = false, bad_d0 = a.ebx, want_d0 = stdsz, d0_at = x;
        if (d1_ok && b.ebx != cmp) d1_ok = false, bad_d1 = b.ebx, want_d1 = cmp, d1_at = x;
        if (a.ebx <= AREA) {
            const u32 v = try_save(Save::xsave), w = written_from(a.ebx);
            if (xsave_ok && (v != kNoFault || w != sizeof(area)))
                xsave_ok = false, x_written = v == kNoFault ? w : v, x_limit = a.ebx, x_at = x;
        }
        if (xsavec && b.ebx && b.ebx <= AREA) {
            const u32 v = try_save(Save::xsavec), w = written_from(b.ebx);
            u64 bv;
            memcpy(&bv, area + 520, 8);
            if (xsavec_ok && (v != kNoFault || w != sizeof(area) || !(bv >> 63)))
                xsavec_ok = false, c_written = v == kNoFault ? w : v, c_limit = b.ebx, c_at = x, xcomp_bv = bv;
        }
    }
    // Each check says what it covered when it passes and the first mismatch when it fails.
    if (set_ok) t.check(true, "XSAVE: CR4.OSXSAVE set, XSETBV takes each XCR0, XGETBV reads it back", "%u values", n);
    else t.check(false, "XSAVE: CR4.OSXSAVE set, XSETBV takes each XCR0, XGETBV reads it back",
                 "mov cr4: %s; xcr0 0x%llx read back as 0x%llx", vector_name(cr4), bad_xcr0, got_xcr0);
    if (set_ok && d0_ok) t.check(true, "leaf 0xd.0 ebx = the standard size for the XCR0 just set", "%u values", n);
    else t.check(false, "leaf 0xd.0 ebx = the standard size for the XCR0 just set",
                 "xcr0=0x%llx: ebx=%u, the components end at %u", d0_at, bad_d0, want_d0);
    t.check(d0.ecx == standard_size(supported), "leaf 0xd.0 ecx = the standard size for every supported component",
            "ecx=%u, the components end at %u", d0.ecx, standard_size(supported));
    if (set_ok && xsave_ok) t.check(true, "XSAVE writes nothing at or beyond leaf 0xd.0 ebx", "%u values", n);
    else t.check(false, "XSAVE writes nothing at or beyond leaf 0xd.0 ebx",
                 "xcr0=0x%llx: limit %u, written at %u (or the vector)", x_at, x_limit, x_written);
    const char *d1_what = xsavec ? "leaf 0xd.1 ebx = the compacted size for the XCR0 just set (XSAVEC shown)"
                                 : "leaf 0xd.1 ebx = 0 (no XSAVEC)";
    if (set_ok && d1_ok) t.check(true, d1_what, "%u values", n);
    else t.check(false, d1_what, "xcr0=0x%llx: ebx=%u, expected %u", d1_at, bad_d1, want_d1);
    u32 bad_sub = 0, bad_ecx = 0;
    for (u32 i = 2; i < 63 && !bad_sub; i++) {
        if (!(supported >> i & 1)) continue;
        const u32 ecx = cpuid(0xd, i).ecx;
        if ((ecx & 1) || ((ecx & 2) && !xsavec && !xsaves)) bad_sub = i, bad_ecx = ecx;
    }
    if (!bad_sub) t.check(true, "leaf 0xd.i ecx: user components, 64-byte alignment only with the compacted format");
    else t.check(false, "leaf 0xd.i ecx: user components, 64-byte alignment only with the compacted format",
                 "0xd.%u ecx=0x%x", bad_sub, bad_ecx);
    if (!xsavec) t.check(true, "XSAVEC not shown: nothing to run");
    else if (set_ok && xsavec_ok) t.check(true, "XSAVEC writes nothing at or beyond leaf 0xd.1 ebx, XCOMP_BV[63] set",
                                         "%u values", n);
    else t.check(false, "XSAVEC writes nothing at or beyond leaf 0xd.1 ebx, XCOMP_BV[63] set",
                 "xcr0=0x%llx: limit %u, written at %u (or the vector), xcomp_bv=0x%llx", c_at, c_limit, c_written,
                 xcomp_bv);
    // XSAVES: hidden in CPUID, and on Intel (VMX) #UD. With XCR0 = 3 from the last step.
    const u32 v = try_save(Save::xsaves);
    printf("cpuid: xsaves: %s\n", vector_name(v));
    t.check(!xsaves && d1.ecx == 0 && d1.edx == 0 && (!intel || v == 6),
            "XSAVES hidden (0xd.1 eax[3], no IA32_XSS bits in ecx:edx), #UD on Intel",
            "0xd.1 eax=0x%08x ecx=0x%08x edx=0x%08x, xsaves: %s", d1.eax, d1.ecx, d1.edx, vector_name(v));
}

} // namespace

u32 guest_main() {
    Checks t;
    CpuidResult l0 = cpuid(0);
    char vendor[13];
    memcpy(vendor + 0, &l0.ebx, 4);
    memcpy(vendor + 4, &l0.edx, 4);
    memcpy(vendor + 8, &l0.ecx, 4);
    vendor[12] = 0;
    printf("cpuid: vendor \"%s\" max basic leaf 0x%x\n", vendor, l0.eax);

    CpuidResult l1 = cpuid(1);
    printf("cpuid: leaf 1 eax=0x%08x ebx=0x%08x ecx=0x%08x edx=0x%08x\n", l1.eax, l1.ebx, l1.ecx, l1.edx);
    t.check(l1.ecx & (1u << 31), "hypervisor bit (leaf 1 ecx[31]) set", "ecx=0x%08x", l1.ecx);

    CpuidResult hv = cpuid(0x40000000);
    char sig[13];
    memcpy(sig + 0, &hv.ebx, 4);
    memcpy(sig + 4, &hv.ecx, 4);
    memcpy(sig + 8, &hv.edx, 4);
    sig[12] = 0;
    for (int i = 0; i < 12; ++i)
        if (sig[i] < 0x20 || sig[i] > 0x7e) sig[i] = '.';
    t.check(memcmp(sig, "KeelKeelKeel", 12) == 0, "leaf 0x40000000 signature \"KeelKeelKeel\"",
            "got \"%s\" (ebx=0x%08x ecx=0x%08x edx=0x%08x)", sig, hv.ebx, hv.ecx, hv.edx);
    t.check(hv.eax >= 0x40000000 && hv.eax < 0x40010000, "leaf 0x40000000 eax (max hypervisor leaf) >= 0x40000000",
            "eax=0x%08x", hv.eax);

    t.check(!(l1.ecx & (1u << 5)), "VMX (leaf 1 ecx[5]) hidden", "ecx=0x%08x", l1.ecx);

    // Asked unconditionally: a missing leaf 0x80000001 must not make "SVM hidden" pass by default.
    u32 max_ext = cpuid(0x80000000).eax;
    t.check(max_ext >= 0x80000001 && max_ext < 0x80010000, "max extended leaf (0x80000000 eax) >= 0x80000001",
            "eax=0x%08x", max_ext);
    CpuidResult e1 = cpuid(0x80000001);
    printf("cpuid: leaf 0x80000001 ecx=0x%08x edx=0x%08x\n", e1.ecx, e1.edx);
    t.check(e1.edx & (1u << 29), "long mode (leaf 0x80000001 edx[29]) reported", "edx=0x%08x", e1.edx);
    t.check(!(e1.ecx & (1u << 2)), "SVM (leaf 0x80000001 ecx[2]) hidden", "ecx=0x%08x", e1.ecx);

    const bool intel = memcmp(vendor, "GenuineIntel", 12) == 0;
    leaf_d(t, (l1.ecx & (1u << 26)) && l0.eax >= 0xd, intel);
    return t.finish();
}

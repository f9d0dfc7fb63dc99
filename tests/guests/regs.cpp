// regs: register isolation. Two instances with different seeds share one
// physical CPU; each loads seed-derived values into registers the hypervisor
// must switch per vCPU, keeps busy long enough to be preempted many times, and
// checks after every round that each register still holds its own value (a
// neighbour's value shows a leak: the high byte of every value is the seed).
//
// cmdline: seed=N (default 1), rounds=R (default 20), spin=N (loop iterations
// per round, default 1000000), verbose (one line per round).
//
// It enables what CPUID promises, and only that:
//   SSE (CPUID.1:EDX.SSE)         CR4.OSFXSR|OSXMMEXCPT          -> XMM0-7
//   XSAVE (CPUID.1:ECX.XSAVE)     CR4.OSXSAVE, XSETBV XCR0 = x87|SSE (|AVX
//   AVX (CPUID.1:ECX.AVX)           with AVX): a #GP/#UD fails    -> YMM0-7 upper halves
//   PKU (CPUID.7.0:ECX.PKU)       CR4.PKE, WRPKRU                 -> PKRU
//   always                        DR0-DR3 (DR7 = 0x400: all disabled), DR7
//   LM (CPUID.80000001:EDX.LM)    GS.base and KERNEL_GS_BASE, exchanged by SWAPGS in
//                                 64-bit mode (lib/longmode.S): no WRMSR tells the
//                                 hypervisor KERNEL_GS_BASE's new value -> "kgs"
//   always                        CR2 (MOV to CR2; VMX leaves the guest's CR2 in the
//                                 register, a #PF sets it without an exit)    -> "cr2"
//
// Checks (numbered, see Checks in guest.hpp):
//   1 SSE is advertised and CR4.OSFXSR|OSXMMEXCPT can be set
//   2 XSAVE: CR4.OSXSAVE can be set and XSETBV takes XCR0 (ok when not advertised)
//   3 XSAVE: XGETBV(0) reads back that XCR0 (ok when not advertised)
//   4 PKU: CR4.PKE can be set and RDPKRU reads back WRPKRU's value (ok when not advertised)
//   5 every register kept its value over all rounds
// Last line: "regs: PASS (R rounds, xmm ymm dr pkru kgs cr2)" naming the classes really
// checked, or "regs: FAIL (...)". Exit code 0, or the first failed check.
#include "lib/guest.hpp"
#include "lib/probe.hpp"

extern "C" const char guest_name[] = "regs";

namespace {

constexpr u32 CR4_OSFXSR = 1u << 9, CR4_OSXMMEXCPT = 1u << 10, CR4_OSXSAVE = 1u << 18, CR4_PKE = 1u << 22;

u32 seed;

// Class 1 = XMM/YMM, 2 = DR, 3 = PKRU, 4 = GS.base/KERNEL_GS_BASE, 5 = CR2. High byte: the seed, so a leaked value names its owner.
u32 value(u32 cls, u32 reg, u32 word) {
    u32 h = (seed * 0x9e3779b1u) ^ (cls << 16) ^ (reg << 8) ^ word;
    h ^= h >> 15;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    return (seed & 0xff) << 24 | cls << 20 | reg << 16 | word << 12 | (h & 0xfff);
}

u32 read_cr4() { u32 v; asm volatile("movl %%cr4, %0" : "=r"(v)); return v; }
u32 read_cr2() { u32 v; asm volatile("movl %%cr2, %0" : "=r"(v)); return v; }
void write_cr2(u32 v) { asm volatile("movl %0, %%cr2" : : "r"(v)); }

u32 try_wrpkru(u32 v) {
    probe_arm();
    asm volatile("movl $1f, %0\n\t"
                 "wrpkru\n"
                 "1:" : "=m"(probe.resume) : "a"(v), "c"(0), "d"(0) : "memory");
    return probe_done();
}

u32 rdpkru() {
    u32 v, d;
    asm volatile("rdpkru" : "=a"(v), "=d"(d) : "c"(0));
    return v;
}

// 8 registers x 8 dwords (YMM) or 4 (XMM).
alignas(32) u32 want_vec[8][8], got_vec[8][8];

void load_xmm(const u32 (*b)[8]) {
    asm volatile("movdqu 0(%0), %%xmm0\n\t"
                 "movdqu 32(%0), %%xmm1\n\t"
                 "movdqu 64(%0), %%xmm2\n\t"
                 "movdqu 96(%0), %%xmm3\n\t"
                 "movdqu 128(%0), %%xmm4\n\t"
                 "movdqu 160(%0), %%xmm5\n\t"
                 "movdqu 192(%0), %%xmm6\n\t"
                 "movdqu 224(%0), %%xmm7\n\t" : : "r"(b) : "memory");
}
void store_xmm(u32 (*b)[8]) {
    asm volatile("movdqu %%xmm0, 0(%0)\n\t"
                 "movdqu %%xmm1, 32(%0)\n\t"
                 "movdqu %%xmm2, 64(%0)\n\t"
                 "movdqu %%xmm3, 96(%0)\n\t"
                 "movdqu %%xmm4, 128(%0)\n\t"
                 "movdqu %%xmm5, 160(%0)\n\t"
                 "movdqu %%xmm6, 192(%0)\n\t"
                 "movdqu %%xmm7, 224(%0)\n\t" : : "r"(b) : "memory");
}
void load_ymm(const u32 (*b)[8]) {
    asm volatile("vmovdqu 0(%0), %%ymm0\n\t"
                 "vmovdqu 32(%0), %%ymm1\n\t"
                 "vmovdqu 64(%0), %%ymm2\n\t"
                 "vmovdqu 96(%0), %%ymm3\n\t"
                 "vmovdqu 128(%0), %%ymm4\n\t"
                 "vmovdqu 160(%0), %%ymm5\n\t"
                 "vmovdqu 192(%0), %%ymm6\n\t"
                 "vmovdqu 224(%0), %%ymm7\n\t" : : "r"(b) : "memory");
}
void store_ymm(u32 (*b)[8]) {
    asm volatile("vmovdqu %%ymm0, 0(%0)\n\t"
                 "vmovdqu %%ymm1, 32(%0)\n\t"
                 "vmovdqu %%ymm2, 64(%0)\n\t"
                 "vmovdqu %%ymm3, 96(%0)\n\t"
                 "vmovdqu %%ymm4, 128(%0)\n\t"
                 "vmovdqu %%ymm5, 160(%0)\n\t"
                 "vmovdqu %%ymm6, 192(%0)\n\t"
                 "vmovdqu %%ymm7, 224(%0)\n\t" : : "r"(b) : "memory");
}

void write_drs(const u32 v[4]) {
    asm volatile("movl %0, %%dr0" : : "r"(v[0]));
    asm volatile("movl %0, %%dr1" : : "r"(v[1]));
    asm volatile("movl %0, %%dr2" : : "r"(v[2]));
    asm volatile("movl %0, %%dr3" : : "r"(v[3]));
    asm volatile("movl %0, %%dr7" : : "r"(0x400u));
}
void read_drs(u32 v[5]) {
    asm volatile("movl %%dr0, %0" : "=r"(v[0]));
    asm volatile("movl %%dr1, %0" : "=r"(v[1]));
    asm volatile("movl %%dr2, %0" : "=r"(v[2]));
    asm volatile("movl %%dr3, %0" : "=r"(v[3]));
    asm volatile("movl %%dr7, %0" : "=r"(v[4]));
}

u32 mismatches;
void mismatch(u32 round, const char* reg, u32 index, u32 word, u32 got, u32 want) {
    if (++mismatches <= 16)
        printf("regs: round %u: %s%u dword %u = 0x%08x, expected 0x%08x%s\n", round, reg, index, word, got, want,
               (got >> 24) != (want >> 24) && ((got >> 20) & 0xf) == ((want >> 20) & 0xf)
                   ? " (another seed's value: leaked)" : "");
}

u32 busy(u32 n) {
    u32 state = seed, sum = 0;
    for (u32 i = 0; i < n; ++i) {
        state = state * 1664525u + 1013904223u;
        sum = sum * 31u + state;
        asm volatile("" : "+r"(state), "+r"(sum));
    }
    return sum;
}

} // namespace

u32 guest_main() {
    seed = u32(cmdline_u64("seed", 1));
    const u32 rounds = u32(cmdline_u64("rounds", 20));
    const u32 spin = u32(cmdline_u64("spin", 1000000));
    const bool verbose = cmdline_flag("verbose");
    probe_install();
    Checks c;

    const CpuidResult l0 = cpuid(0), l1 = cpuid(1);
    const CpuidResult l7 = l0.eax >= 7 ? cpuid(7, 0) : CpuidResult{};
    const bool has_sse = (l1.edx >> 25) & 1 && (l1.edx >> 24) & 1;
    const bool has_xsave = (l1.ecx >> 26) & 1;
    const bool has_avx = has_xsave && ((l1.ecx >> 28) & 1);
    const bool has_pku = (l7.ecx >> 3) & 1;
    const bool has_lm = cpuid(0x80000000).eax >= 0x80000001 && (cpuid(0x80000001).edx >> 29) & 1;
    printf("regs: seed=%u rounds=%u spin=%u cpuid: sse=%u xsave=%u avx=%u pku=%u\n", seed, rounds, spin,
           u32(has_sse), u32(has_xsave), u32((l1.ecx >> 28) & 1), u32(has_pku));

    // 1: SSE
    bool xmm = false;
    if (has_sse) {
        u32 cr0;
        asm volatile("movl %%cr0, %0" : "=r"(cr0));
        cr0 = (cr0 & ~(1u << 2 | 1u << 3)) | 1u << 1;   // EM=0 TS=0 MP=1
        asm volatile("movl %0, %%cr0" : : "r"(cr0));
        const u32 v = try_write_cr4(read_cr4() | CR4_OSFXSR | CR4_OSXMMEXCPT);
        xmm = v == kNoFault && (read_cr4() & CR4_OSFXSR);
        c.check(xmm, "SSE: CR4.OSFXSR|OSXMMEXCPT set", "%s, cr4=0x%x", vector_name(v), read_cr4());
    } else {
        c.check(false, "SSE advertised", "CPUID.1:EDX=0x%08x", l1.edx);
    }

    // 2, 3: XSAVE and XCR0
    bool ymm = false;
    if (has_xsave) {
        u32 v = try_write_cr4(read_cr4() | CR4_OSXSAVE);
        const u64 xcr0 = has_avx ? 7 : 3;
        u32 x = kNoFault;
        if (v == kNoFault) x = try_xsetbv(0, xcr0);
        c.check(v == kNoFault && x == kNoFault, "XSAVE: CR4.OSXSAVE and XSETBV(XCR0)",
                "mov cr4: %s, xsetbv 0x%llx: %s", vector_name(v), xcr0, vector_name(x));
        u64 got = 0;
        const u32 g = v == kNoFault ? try_xgetbv(0, &got) : v;
        c.check(g == kNoFault && got == xcr0, "XSAVE: XGETBV(0) reads XCR0 back", "%s, 0x%llx (wrote 0x%llx)",
                vector_name(g), got, xcr0);
        ymm = has_avx && v == kNoFault && x == kNoFault && got == xcr0;
    } else {
        c.check(true, "XSAVE not advertised: XCR0 untouched");
        c.check(true, "XSAVE not advertised: XGETBV not tried");
    }

    // 4: PKU
    bool pkru = false;
    const u32 pkru_value = value(3, 0, 0);
    if (has_pku) {
        u32 v = try_write_cr4(read_cr4() | CR4_PKE);
        u32 w = v == kNoFault ? try_wrpkru(pkru_value) : v;
        const u32 got = w == kNoFault ? rdpkru() : 0;
        pkru = v == kNoFault && w == kNoFault && got == pkru_value;
        c.check(pkru, "PKU: CR4.PKE, WRPKRU/RDPKRU", "mov cr4: %s, wrpkru: %s, rdpkru=0x%08x (wrote 0x%08x)",
                vector_name(v), vector_name(w), got, pkru_value);
    } else {
        c.check(true, "PKU not advertised: PKRU untouched");
    }

    // Load everything, then rounds of busy work, each followed by a check.
    const u32 words = ymm ? 8 : 4;
    for (u32 r = 0; r < 8; ++r)
        for (u32 w = 0; w < 8; ++w) want_vec[r][w] = w < words ? value(1, r, w) : 0;
    u32 want_dr[4];
    for (u32 r = 0; r < 4; ++r) want_dr[r] = value(2, r, 0);
    if (ymm) load_ymm(want_vec);
    else if (xmm) load_xmm(want_vec);
    write_drs(want_dr);
    // GS.base <- a, KERNEL_GS_BASE <- b by WRMSR, then SWAPGS: the hypervisor saw a and b
    // written, but the registers now hold them the other way round.
    constexpr u32 MSR_GS_BASE = 0xc0000101, MSR_KERNEL_GS_BASE = 0xc0000102;
    const u32 want_kgs = value(4, 0, 0), want_gs = value(4, 1, 0);
    auto load_kgs = [&] {
        wrmsr(MSR_GS_BASE, want_kgs);
        wrmsr(MSR_KERNEL_GS_BASE, want_gs);
        swapgs_in_long_mode();
    };
    if (has_lm) load_kgs();
    // CR2 as a #PF leaves it: a guest's fault address must be its own when its handler reads it.
    const u32 want_cr2 = value(5, 0, 0);
    write_cr2(want_cr2);

    u32 sink = 0;
    u64 t0 = rdtsc();
    for (u32 round = 1; round <= rounds; ++round) {
        sink += busy(spin);
        if (ymm || xmm) {
            if (ymm) store_ymm(got_vec);
            else store_xmm(got_vec);
            for (u32 r = 0; r < 8; ++r)
                for (u32 w = 0; w < words; ++w)
                    if (got_vec[r][w] != want_vec[r][w])
                        mismatch(round, ymm && w >= 4 ? "ymm" : "xmm", r, w, got_vec[r][w], want_vec[r][w]);
        }
        u32 dr[5];
        read_drs(dr);
        for (u32 r = 0; r < 4; ++r)
            if (dr[r] != want_dr[r]) mismatch(round, "dr", r, 0, dr[r], want_dr[r]);
        if ((dr[4] & 0xff) != 0 || (dr[4] & 0xffff0000u) != 0) mismatch(round, "dr", 7, 0, dr[4], 0x400);
        if (pkru) {
            const u32 got = rdpkru();
            if (got != pkru_value) mismatch(round, "pkru", 0, 0, got, pkru_value);
        }
        if (has_lm) {
            const u64 kgs = rdmsr(MSR_KERNEL_GS_BASE), gs = rdmsr(MSR_GS_BASE);
            if (kgs != want_kgs) mismatch(round, "kernel_gs_base", 0, 0, u32(kgs), want_kgs);
            if (gs != want_gs) mismatch(round, "gs_base", 0, 0, u32(gs), want_gs);
        }
        if (const u32 cr2 = read_cr2(); cr2 != want_cr2) mismatch(round, "cr2", 0, 0, cr2, want_cr2);
        if (verbose)
            printf("regs: round %u: xmm0=0x%08x dr0=0x%08x mismatches=%u\n", round, got_vec[0][0], dr[0], mismatches);
        // Put back what was lost, so each round's check stands on its own.
        if (mismatches) {
            if (ymm) load_ymm(want_vec);
            else if (xmm) load_xmm(want_vec);
            write_drs(want_dr);
            if (pkru) try_wrpkru(pkru_value);
            if (has_lm) load_kgs();
            write_cr2(want_cr2);
        }
    }
    const u64 cycles = rdtsc() - t0;
    char classes[32];
    u32 n = 0;
    auto add = [&](const char* s) {
        if (n) classes[n++] = ' ';
        while (*s) classes[n++] = *s++;
    };
    if (xmm) add("xmm");
    if (ymm) add("ymm");
    add("dr");
    if (pkru) add("pkru");
    if (has_lm) add("kgs");
    add("cr2");
    classes[n] = 0;
    printf("regs: %u rounds of %u iterations in %llu TSC cycles (sink 0x%x)\n", rounds, spin, cycles, sink);
    c.check(mismatches == 0, "registers kept their values", "%u mismatches in %u rounds (%s)", mismatches, rounds,
            classes);
    if (c.failed == 0) printf("regs: PASS (%u rounds, %s)\n", rounds, classes);
    else printf("regs: FAIL (%u of %u checks failed, first #%u; %u rounds, %s)\n", c.failed, c.number,
                c.first_failed, rounds, classes);
    return c.exit_code();
}

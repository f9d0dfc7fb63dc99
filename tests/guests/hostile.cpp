// hostile: instructions a guest may use against its hypervisor, each checked
// for its ARCHITECTURAL result, as CPUID describes the CPU; the guest must
// survive every one. Numbered checks (see Checks in guest.hpp); which checks
// exist depends on what CPUID advertises (vendor, XSAVE, AVX, MONITOR).
//
//   CR4 bits that CPUID may hide: VMXE(13) SMXE(14) OSXSAVE(18) PKE(22) LA57(12)
//     UMIP(11) FSGSBASE(16) SMEP(20) SMAP(21) CET(23, with CR0.WP=1) PCIDE(17):
//     MOV to CR4 with the bit set raises #GP exactly when the feature is not
//     advertised (PCIDE: always, outside IA-32e mode); the bit is cleared again.
//   XSETBV with CR4.OSXSAVE=0: #UD. If XSAVE is advertised, with CR4.OSXSAVE=1:
//     XCR0 = 0, 2 (SSE without x87), 1|4 (AVX without SSE) raise #GP; 1|2 (and
//     1|2|4 with AVX) are taken and XGETBV(0) reads them back.
//   A write data breakpoint (DR0 = a variable, DR7 L0, RW0=01, LEN0=11): the
//     write raises #DB with DR6.B0, EIP after the write. Single step (TF) over
//     one instruction: #DB with DR6.BS, EIP after it. DR7/DR6 cleared after.
//   RDPMC: Intel vendor with CPUID.0xA EAX[15:8] = 0 (no counters): #GP.
//     AMD vendor: counter 0 reads without a fault (0 under Keel, which has no
//     counters), counter 4 (6 with PerfCtrExtCore) raises #GP.
//   MONITOR/MWAIT: under Keel (its CPUID signature), CPUID.1:ECX.MONITOR is 0;
//     when MONITOR is not advertised both raise #UD (when it is, MONITOR runs
//     and MWAIT is not tried: nothing would wake it).
//   WBINVD, INVD: no fault, execution goes on (Keel emulates both as no-ops).
//
// cmdline: nocr4 (do not try CR4 bits that CPUID does not advertise).
//
// Bare QEMU 7.2 TCG differs from Keel: RDPMC always raises #UD there (TCG has
// no counters), MONITOR/MWAIT are advertised, and MOV to CR4 with a reserved bit
// outside an SVM guest hangs the emulated CPU (TCG takes an SVM error exit, not
// #GP): the bare test runs with `nocr4` and only checks that the guest gets to
// its report.
//
// Exit code 0, or the number of the first failed check.
#include "lib/guest.hpp"
#include "lib/probe.hpp"

extern "C" const char guest_name[] = "hostile";

namespace {

Checks c;
bool skip_reserved_cr4;

u32 read_cr4() { u32 v; asm volatile("movl %%cr4, %0" : "=r"(v)); return v; }
u32 read_cr0() { u32 v; asm volatile("movl %%cr0, %0" : "=r"(v)); return v; }
void write_cr0(u32 v) { asm volatile("movl %0, %%cr0" : : "r"(v)); }
void write_cr4(u32 v) { asm volatile("movl %0, %%cr4" : : "r"(v)); }

u32 try_rdpmc(u32 counter, u64* out) {
    u32 lo = 0xdeadbeef, hi = 0xdeadbeef;
    probe_arm();
    asm volatile("movl $1f, %2\n\t"
                 "rdpmc\n"
                 "1:" : "+a"(lo), "+d"(hi), "=m"(probe.resume) : "c"(counter) : "memory");
    *out = u64(hi) << 32 | lo;
    return probe_done();
}

volatile u32 monitored[16];

u32 try_monitor() {
    probe_arm();
    asm volatile("movl $1f, %0\n\t"
                 "monitor\n"
                 "1:" : "=m"(probe.resume) : "a"(uptr(monitored)), "c"(0), "d"(0) : "memory");
    return probe_done();
}

u32 try_mwait() {
    probe_arm();
    asm volatile("movl $1f, %0\n\t"
                 "mwait\n"
                 "1:" : "=m"(probe.resume) : "a"(0), "c"(0) : "memory");
    return probe_done();
}

u32 try_wbinvd() {
    probe_arm();
    asm volatile("movl $1f, %0\n\t"
                 "wbinvd\n"
                 "1:" : "=m"(probe.resume) : : "memory");
    return probe_done();
}

u32 try_invd() {
    probe_arm();
    asm volatile("movl $1f, %0\n\t"
                 "invd\n"
                 "1:" : "=m"(probe.resume) : : "memory");
    return probe_done();
}

void cr4_bit(u32 bit, const char* name, bool advertised) {
    if (skip_reserved_cr4 && !advertised) {
        printf("hostile: %s: not advertised, not tried (nocr4)\n", name);
        return;
    }
    const u32 before = read_cr4();
    const u32 v = try_write_cr4(before | 1u << bit);
    const u32 after = read_cr4();
    if (after != before) write_cr4(before);
    const bool gp = v == 13;
    c.check(gp == !advertised && (v == kNoFault || gp), name, "%s, feature %s: expected %s; cr4 0x%x -> 0x%x",
            vector_name(v), advertised ? "advertised" : "not advertised", advertised ? "no fault" : "#GP", before,
            after);
}

volatile u32 watched;

void data_breakpoint() {
    u32 after_write;
    asm volatile("movl %0, %%dr6" : : "r"(0xffff0ff0u));
    asm volatile("movl %0, %%dr0" : : "r"(uptr(&watched)));
    asm volatile("movl %0, %%dr7" : : "r"(0x400u | 1u | 1u << 16 | 3u << 18));   // L0, write, 4 bytes
    probe_arm();
    asm volatile("movl $1f, %0\n\t"
                 "movl $0x1234, %1\n"
                 "1:" : "=r"(after_write), "=m"(watched) : : "memory");
    const u32 v = probe_done();
    asm volatile("movl %0, %%dr7" : : "r"(0x400u));
    asm volatile("movl %0, %%dr0" : : "r"(0u));
    asm volatile("movl %0, %%dr6" : : "r"(0xffff0ff0u));
    c.check(v == 1 && (probe.dr6 & 1) && probe.eip == after_write && watched == 0x1234,
            "data breakpoint: #DB with DR6.B0, EIP after the write",
            "%s dr6=0x%x eip=0x%x (after the write: 0x%x), value 0x%x", vector_name(v), probe.dr6, probe.eip,
            after_write, watched);
}

void single_step() {
    u32 after_step;
    asm volatile("movl %0, %%dr6" : : "r"(0xffff0ff0u));
    probe_arm();
    asm volatile("movl $1f, %0\n\t"
                 "pushfl\n\t"
                 "orl $0x100, (%%esp)\n\t"
                 "popfl\n\t"
                 "nop\n"
                 "1:" : "=r"(after_step) : : "memory", "cc");
    const u32 v = probe_done();
    u32 eflags;
    asm volatile("pushfl; popl %0" : "=r"(eflags));
    asm volatile("movl %0, %%dr6" : : "r"(0xffff0ff0u));
    c.check(v == 1 && (probe.dr6 & (1u << 14)) && probe.eip == after_step && !(eflags & 0x100),
            "single step: #DB with DR6.BS, EIP after the stepped instruction",
            "%s dr6=0x%x eip=0x%x (expected 0x%x), TF now %u", vector_name(v), probe.dr6, probe.eip, after_step,
            (eflags >> 8) & 1);
}

} // namespace

u32 guest_main() {
    probe_install();
    skip_reserved_cr4 = cmdline_flag("nocr4");
    const CpuidResult l0 = cpuid(0), l1 = cpuid(1);
    const CpuidResult l7 = l0.eax >= 7 ? cpuid(7, 0) : CpuidResult{};
    const CpuidResult la = l0.eax >= 0xa ? cpuid(0xa) : CpuidResult{};
    const CpuidResult e0 = cpuid(0x80000000);
    const CpuidResult e1 = e0.eax >= 0x80000001 ? cpuid(0x80000001) : CpuidResult{};
    const CpuidResult hv = cpuid(0x40000000);
    const u32 keel = 'K' | 'e' << 8 | 'e' << 16 | u32('l') << 24;
    const bool under_keel = (l1.ecx >> 31) & 1 && hv.ebx == keel && hv.ecx == keel && hv.edx == keel;
    const bool intel = l0.ebx == 0x756e6547 && l0.edx == 0x49656e69 && l0.ecx == 0x6c65746e;   // GenuineIntel
    const bool amd = l0.ebx == 0x68747541 && l0.edx == 0x69746e65 && l0.ecx == 0x444d4163;     // AuthenticAMD
    const bool has_xsave = (l1.ecx >> 26) & 1, has_avx = (l1.ecx >> 28) & 1, has_monitor = (l1.ecx >> 3) & 1;
    printf("hostile: vendor %s%s, cpuid.1:ecx=0x%08x cpuid.7:ebx=0x%08x ecx=0x%08x edx=0x%08x\n",
           intel ? "Intel" : amd ? "AMD" : "other", under_keel ? ", under Keel" : "", l1.ecx, l7.ebx, l7.ecx, l7.edx);

    // CR4 bits. CET needs CR0.WP=1 (harmless with paging off); put CR0 back after.
    const u32 cr0 = read_cr0();
    write_cr0(cr0 | 1u << 16);
    cr4_bit(13, "CR4.VMXE", (l1.ecx >> 5) & 1);
    cr4_bit(14, "CR4.SMXE", (l1.ecx >> 6) & 1);
    cr4_bit(18, "CR4.OSXSAVE", has_xsave);
    cr4_bit(22, "CR4.PKE", (l7.ecx >> 3) & 1);
    cr4_bit(12, "CR4.LA57", (l7.ecx >> 16) & 1);
    cr4_bit(11, "CR4.UMIP", (l7.ecx >> 2) & 1);
    cr4_bit(16, "CR4.FSGSBASE", l7.ebx & 1);
    cr4_bit(20, "CR4.SMEP", (l7.ebx >> 7) & 1);
    cr4_bit(21, "CR4.SMAP", (l7.ebx >> 20) & 1);
    cr4_bit(23, "CR4.CET", ((l7.ecx >> 7) & 1) || ((l7.edx >> 20) & 1));
    cr4_bit(17, "CR4.PCIDE (not in IA-32e mode)", false);
    write_cr0(cr0);

    // XSETBV and XCR0.
    {
        u32 v = try_xsetbv(0, 3);
        c.check(v == 6, "XSETBV with CR4.OSXSAVE=0 raises #UD", "%s", vector_name(v));
    }
    if (has_xsave) {
        const u32 cr4 = read_cr4();
        const u32 v = try_write_cr4(cr4 | 1u << 18);
        if (c.check(v == kNoFault, "CR4.OSXSAVE can be set (XSAVE advertised)", "%s", vector_name(v))) {
            struct { u64 xcr0; const char* what; } bad[] = {
                {0, "XSETBV XCR0=0 raises #GP"},
                {2, "XSETBV XCR0=SSE without x87 raises #GP"},
                {5, "XSETBV XCR0=AVX without SSE raises #GP"},
            };
            for (auto& b : bad) {
                const u32 x = try_xsetbv(0, b.xcr0);
                c.check(x == 13, b.what, "%s", vector_name(x));
            }
            const u64 good[] = {3, 7};
            for (u32 i = 0; i < (has_avx ? 2u : 1u); ++i) {
                const u32 x = try_xsetbv(0, good[i]);
                u64 got = 0;
                const u32 g = x == kNoFault ? try_xgetbv(0, &got) : x;
                c.check(x == kNoFault && g == kNoFault && got == good[i], i ? "XSETBV XCR0=x87|SSE|AVX, XGETBV reads it"
                                                                           : "XSETBV XCR0=x87|SSE, XGETBV reads it",
                        "xsetbv: %s, xgetbv: %s = 0x%llx", vector_name(x), vector_name(g), got);
            }
            try_xsetbv(0, 3);
            write_cr4(cr4);
        }
    }

    // Debug registers.
    data_breakpoint();
    single_step();

    // RDPMC.
    if (intel) {
        const u32 counters = (la.eax >> 8) & 0xff;
        u64 val = 0;
        const u32 v = try_rdpmc(0, &val);
        if (counters == 0)
            c.check(v == 13, "RDPMC counter 0 raises #GP (Intel, CPUID.0xA: no counters)", "%s", vector_name(v));
        else
            c.check(v == kNoFault, "RDPMC counter 0 reads (Intel, CPUID.0xA: counters)", "%s, %u counters",
                    vector_name(v), counters);
    } else if (amd) {
        u64 val = ~0ull;
        const u32 v = try_rdpmc(0, &val);
        if (under_keel)
            c.check(v == kNoFault && val == 0, "RDPMC counter 0 reads 0 (AMD, Keel has no counters)",
                    "%s, 0x%llx", vector_name(v), val);
        else
            c.check(v == kNoFault, "RDPMC counter 0 reads (AMD)", "%s, 0x%llx", vector_name(v), val);
        const u32 beyond = (e1.ecx >> 23) & 1 ? 6 : 4;   // PerfCtrExtCore: 6 core counters
        const u32 w = try_rdpmc(beyond, &val);
        c.check(w == 13, "RDPMC beyond the last counter raises #GP (AMD)", "counter %u: %s", beyond, vector_name(w));
    } else {
        printf("hostile: unknown vendor: RDPMC not tried\n");
    }

    // MONITOR/MWAIT.
    if (under_keel)
        c.check(!has_monitor, "CPUID.1:ECX.MONITOR is 0 under Keel", "ecx=0x%08x", l1.ecx);
    {
        const u32 v = try_monitor();
        c.check(has_monitor ? v == kNoFault : v == 6, "MONITOR: #UD exactly when not advertised", "%s, %s",
                vector_name(v), has_monitor ? "advertised" : "not advertised");
        if (!has_monitor) {
            const u32 w = try_mwait();
            c.check(w == 6, "MWAIT raises #UD (not advertised)", "%s", vector_name(w));
        }
    }

    // Cache flushes: last, INVD especially (a hypervisor that does not handle it may stop the guest).
    {
        monitored[0] = 0x5a5a5a5a;
        const u32 v = try_wbinvd();
        c.check(v == kNoFault && monitored[0] == 0x5a5a5a5a, "WBINVD: no fault, execution goes on", "%s",
                vector_name(v));
        const u32 w = try_invd();
        c.check(w == kNoFault, "INVD: no fault, execution goes on", "%s", vector_name(w));
    }
    return c.finish();
}

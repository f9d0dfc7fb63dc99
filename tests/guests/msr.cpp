// msr: Keel's MSR allow-list. The exit code is the number of the first failed
// check (0 if all pass); every check prints one numbered line.
//  - every allow-listed MSR reads without #GP; IA32_TSC lies between two RDTSCs;
//  - writable ones (PAT, EFER (same value), STAR, LSTAR, CSTAR, SFMASK, FS/GS/
//    KERNEL_GS base, TSC_AUX (if RDTSCP exists), SYSENTER_CS/ESP/EIP) read back
//    what was written, then get their old value back; MISC_ENABLE with fast
//    strings toggled; on AMD the K7 counters 0xC0010000-7 read 0 and take 0;
//  - invalid values for allowed MSRs (non-canonical LSTAR, FS/GS/KERNEL_GS base,
//    SYSENTER_ESP/EIP; a reserved PAT type; a reserved EFER bit) raise #GP(0)
//    exactly once, as on hardware and as VM entry requires (skip with `novalidate`);
//  - MSRs off the list (VM_CR 0xC0010114, FEATURE_CONTROL 0x3A, VMX_BASIC 0x480,
//    0x12345678, or `extra=0xN`) raise #GP(0) exactly once on RDMSR and on WRMSR.
#include "lib/guest.hpp"

extern "C" const char guest_name[] = "msr";

namespace {

Checks t;

struct Msr { u32 index; const char* name; };

constexpr u32 IA32_TSC = 0x10, IA32_APIC_BASE = 0x1B, IA32_MISC_ENABLE = 0x1A0, IA32_PAT = 0x277;
constexpr u32 SYSENTER_CS = 0x174, SYSENTER_ESP = 0x175, SYSENTER_EIP = 0x176;
constexpr u32 EFER = 0xC0000080, STAR = 0xC0000081, LSTAR = 0xC0000082, CSTAR = 0xC0000083, SFMASK = 0xC0000084;
constexpr u32 FS_BASE = 0xC0000100, GS_BASE = 0xC0000101, KERNEL_GS_BASE = 0xC0000102, TSC_AUX = 0xC0000103;

// Non-canonical with 48-bit and with 57-bit (LA57) linear addresses alike.
constexpr u64 kNonCanonical = 0x8000000000000000ull;

u32 gp_count() { return gp_record.count; }

bool read_ok(u32 msr, const char* name, u64* out = nullptr) {
    u32 before = gp_count();
    u64 v = rdmsr(msr);
    u32 gps = gp_count() - before;
    bool ok = t.check(gps == 0, name, "rdmsr 0x%x = 0x%016llx, #GP taken %u times", msr, v, gps);
    if (out) *out = v;
    return ok;
}

void write_readback(u32 msr, const char* name, u64 value) {
    u32 before = gp_count();
    u64 orig = rdmsr(msr);
    wrmsr(msr, value);
    u64 back = rdmsr(msr);
    u32 gps = gp_count() - before;
    wrmsr(msr, orig);
    u64 restored = rdmsr(msr);
    gps = gp_count() - before;
    t.check(gps == 0 && back == value && restored == orig, name,
            "msr 0x%x wrote 0x%016llx read back 0x%016llx, restored 0x%016llx (was 0x%016llx), #GP %u times", msr,
            value, back, restored, orig, gps);
}

void expect_gp_read(u32 msr, const char* name) {
    u32 before = gp_count();
    u64 v = rdmsr(msr, 0x5a5a5a5a5a5a5a5aull);
    u32 gps = gp_count() - before;
    u32 err = gp_record.last_error;
    t.check(gps == 1 && err == 0, name, "rdmsr 0x%x: #GP taken %u times (error 0x%x), edx:eax=0x%016llx", msr, gps,
            gps ? err : 0, v);
}

// WRMSR of `value` must #GP once. If it did not, the old value (read first,
// when `restore`) is put back.
void expect_gp_write(u32 msr, const char* name, u64 value, bool restore) {
    u64 orig = restore ? rdmsr(msr) : 0;
    u32 before = gp_count();
    wrmsr(msr, value);
    u32 gps = gp_count() - before;
    u32 err = gp_record.last_error;
    if (gps == 0 && restore) wrmsr(msr, orig);
    t.check(gps == 1 && err == 0, name, "wrmsr 0x%x <- 0x%016llx: #GP taken %u times (error 0x%x)", msr, value, gps,
            gps ? err : 0);
}

}  // namespace

u32 guest_main() {
    u32 max_ext = cpuid(0x80000000).eax;
    u32 ext_edx = max_ext >= 0x80000001 && max_ext < 0x80010000 ? cpuid(0x80000001).edx : 0;
    bool has_rdtscp = ext_edx & (1u << 27);
    printf("msr: rdtscp %s, long mode %s\n", has_rdtscp ? "yes" : "no", (ext_edx & (1u << 29)) ? "yes" : "no");

    // Reads of the allow-list.
    static const Msr readable[] = {
        {IA32_TSC, "read IA32_TSC"},           {IA32_APIC_BASE, "read IA32_APIC_BASE"},
        {IA32_MISC_ENABLE, "read IA32_MISC_ENABLE"}, {IA32_PAT, "read IA32_PAT"},
        {SYSENTER_CS, "read SYSENTER_CS"},     {SYSENTER_ESP, "read SYSENTER_ESP"},
        {SYSENTER_EIP, "read SYSENTER_EIP"},   {EFER, "read EFER"},
        {STAR, "read STAR"},                   {LSTAR, "read LSTAR"},
        {CSTAR, "read CSTAR"},                 {SFMASK, "read SFMASK"},
        {FS_BASE, "read FS_BASE"},             {GS_BASE, "read GS_BASE"},
        {KERNEL_GS_BASE, "read KERNEL_GS_BASE"},
    };
    for (const Msr& m : readable) read_ok(m.index, m.name);
    if (has_rdtscp) read_ok(TSC_AUX, "read TSC_AUX");

    // IA32_TSC is the counter RDTSC reads.
    u64 t1 = rdtsc();
    u64 m = rdmsr(IA32_TSC);
    u64 t2 = rdtsc();
    t.check(t1 <= m && m <= t2, "IA32_TSC between two RDTSCs", "rdtsc 0x%llx <= rdmsr 0x%llx <= rdtsc 0x%llx", t1, m,
            t2);

    // Writes that must stick.
    write_readback(IA32_PAT, "write+read IA32_PAT", 0x0007010600070106ull);
    u64 efer = rdmsr(EFER);
    write_readback(EFER, "write+read EFER (same value)", efer);
    write_readback(STAR, "write+read STAR", 0x0023001000000000ull);
    write_readback(LSTAR, "write+read LSTAR", 0xffffffff81234560ull);
    write_readback(CSTAR, "write+read CSTAR", 0xffffffff81234570ull);
    write_readback(SFMASK, "write+read SFMASK", 0x47700);
    write_readback(FS_BASE, "write+read FS_BASE", 0x12345000);
    write_readback(GS_BASE, "write+read GS_BASE", 0x23456000);
    write_readback(KERNEL_GS_BASE, "write+read KERNEL_GS_BASE", 0xffff800012345000ull);
    if (has_rdtscp) write_readback(TSC_AUX, "write+read TSC_AUX", 0x1234);
    write_readback(SYSENTER_CS, "write+read SYSENTER_CS", 0x10);
    write_readback(SYSENTER_ESP, "write+read SYSENTER_ESP", 0x00200000);
    write_readback(SYSENTER_EIP, "write+read SYSENTER_EIP", 0x00101000);
    // MISC_ENABLE takes writes to its writable bits (Linux toggles fast strings, as KVM allows).
    write_readback(IA32_MISC_ENABLE, "write+read MISC_ENABLE (fast strings toggled)", rdmsr(IA32_MISC_ENABLE) ^ 1);
    // AMD's K7 performance counters are architectural: no PMU, so they read 0 and take 0.
    if (cpuid(0).ebx == 0x68747541) {   // "Auth"enticAMD
        u32 before = gp_count(), nonzero = 0;
        for (u32 m = 0xC0010000; m <= 0xC0010007; m++) {
            if (rdmsr(m) != 0) nonzero++;
            wrmsr(m, 0);
        }
        t.check(gp_count() == before && nonzero == 0, "AMD PERFEVTSEL0-3/PERFCTR0-3 read 0 and take 0",
                "#GP %u times, %u nonzero", gp_count() - before, nonzero);
        // Linux reads the K8 interrupt-pending message register without a fixup (erratum 400).
        before = gp_count();
        const u64 pending = rdmsr(0xC0010055);
        t.check(gp_count() == before && pending == 0, "AMD INT_PENDING_MSG reads 0", "#GP %u times, value 0x%llx",
                gp_count() - before, pending);
    }

    // Values hardware refuses (and a VM entry would refuse in the guest state).
    if (!cmdline_flag("novalidate")) {
        expect_gp_write(IA32_PAT, "IA32_PAT reserved type 2 -> #GP", 0x0007040600070402ull, true);
        expect_gp_write(EFER, "EFER reserved bit 1 -> #GP", efer | 2, true);
        expect_gp_write(LSTAR, "LSTAR non-canonical -> #GP", kNonCanonical, true);
        expect_gp_write(FS_BASE, "FS_BASE non-canonical -> #GP", kNonCanonical, true);
        expect_gp_write(GS_BASE, "GS_BASE non-canonical -> #GP", kNonCanonical, true);
        expect_gp_write(KERNEL_GS_BASE, "KERNEL_GS_BASE non-canonical -> #GP", kNonCanonical, true);
        expect_gp_write(SYSENTER_ESP, "SYSENTER_ESP non-canonical -> #GP", kNonCanonical, true);
        expect_gp_write(SYSENTER_EIP, "SYSENTER_EIP non-canonical -> #GP", kNonCanonical, true);
    }

    // MSRs off the allow-list: #GP(0) once per access, reads and writes.
    static const Msr denied[] = {
        {0xC0010114, "VM_CR 0xC0010114"},
        {0x3A, "IA32_FEATURE_CONTROL 0x3A"},
        {0x480, "IA32_VMX_BASIC 0x480"},
        {0x12345678, "0x12345678"},
    };
    char what[96];
    for (const Msr& d : denied) {
        usize n = strlen(d.name);
        memcpy(what, "rdmsr ", 6);
        memcpy(what + 6, d.name, n);
        memcpy(what + 6 + n, " -> #GP", 8);
        expect_gp_read(d.index, what);
        memcpy(what, "wrmsr ", 6);
        expect_gp_write(d.index, what, 0, false);
    }
    u64 extra;
    if ((extra = cmdline_u64("extra", ~0ull)) != ~0ull) {
        expect_gp_read(u32(extra), "rdmsr extra= -> #GP");
        expect_gp_write(u32(extra), "wrmsr extra= -> #GP", 0, false);
    }

    printf("msr: #GP taken %u times in all\n", gp_count());
    return t.finish();
}

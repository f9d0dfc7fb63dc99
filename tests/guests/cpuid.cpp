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
#include "lib/guest.hpp"

extern "C" const char guest_name[] = "cpuid";

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
    return t.finish();
}

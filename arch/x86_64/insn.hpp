// Every privileged x86 instruction Keel uses, in one place: the seam between
// logic and hardware (later mocked for exit-handling tests).
#pragma once

#include "kernel/lib/types.hpp"

namespace x86 {

struct Cpuid { u32 a, b, c, d; };

inline Cpuid cpuid(u32 leaf, u32 sub = 0)
{
    Cpuid r;
    asm volatile("cpuid" : "=a"(r.a), "=b"(r.b), "=c"(r.c), "=d"(r.d) : "a"(leaf), "c"(sub));
    return r;
}

inline u64 rdmsr(u32 msr)
{
    u32 lo, hi;
    asm volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return u64(hi) << 32 | lo;
}

inline void wrmsr(u32 msr, u64 v)
{
    asm volatile("wrmsr" : : "c"(msr), "a"(u32(v)), "d"(u32(v >> 32)) : "memory");
}

inline u8 inb(u16 port) { u8 v; asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
inline u16 inw(u16 port) { u16 v; asm volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
inline u32 inl(u16 port) { u32 v; asm volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
inline void outb(u16 port, u8 v) { asm volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
inline void outw(u16 port, u16 v) { asm volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
inline void outl(u16 port, u32 v) { asm volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }

#define KEEL_CR(n)                                                                    \
    inline u64 read_cr##n() { u64 v; asm volatile("mov %%cr" #n ", %0" : "=r"(v)); return v; } \
    inline void write_cr##n(u64 v) { asm volatile("mov %0, %%cr" #n : : "r"(v) : "memory"); }
KEEL_CR(0)
KEEL_CR(2)
KEEL_CR(3)
KEEL_CR(4)
#undef KEEL_CR

// DR0-DR3 and DR6 (n = 0-3, 6).
inline u64 read_dr(unsigned n)
{
    u64 v = 0;
    switch (n) {
    case 0: asm volatile("mov %%db0, %0" : "=r"(v)); break;
    case 1: asm volatile("mov %%db1, %0" : "=r"(v)); break;
    case 2: asm volatile("mov %%db2, %0" : "=r"(v)); break;
    case 3: asm volatile("mov %%db3, %0" : "=r"(v)); break;
    case 6: asm volatile("mov %%db6, %0" : "=r"(v)); break;
    }
    return v;
}

inline void write_dr(unsigned n, u64 v)
{
    switch (n) {
    case 0: asm volatile("mov %0, %%db0" : : "r"(v)); break;
    case 1: asm volatile("mov %0, %%db1" : : "r"(v)); break;
    case 2: asm volatile("mov %0, %%db2" : : "r"(v)); break;
    case 3: asm volatile("mov %0, %%db3" : : "r"(v)); break;
    case 6: asm volatile("mov %0, %%db6" : : "r"(v)); break;
    }
}

inline u64 rdtsc()
{
    u32 lo, hi;
    asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return u64(hi) << 32 | lo;
}

inline void pause() { __builtin_ia32_pause(); }
inline void hlt() { asm volatile("hlt" ::: "memory"); }
inline void cli() { asm volatile("cli" ::: "memory"); }
inline void sti() { asm volatile("sti" ::: "memory"); }
inline void sti_hlt() { asm volatile("sti; hlt" ::: "memory"); }
inline void invlpg(u64 va) { asm volatile("invlpg (%0)" : : "r"(va) : "memory"); }
inline void wbinvd() { asm volatile("wbinvd" ::: "memory"); }

[[noreturn]] inline void halt_forever()
{
    for (;;) asm volatile("cli; hlt" ::: "memory");
}

// MSRs and control-register bits Keel touches.
namespace msr {
inline constexpr u32 APIC_BASE = 0x1b;
inline constexpr u32 PAT = 0x277;
inline constexpr u32 EFER = 0xc0000080;
inline constexpr u32 FS_BASE = 0xc0000100;
inline constexpr u32 GS_BASE = 0xc0000101;
inline constexpr u32 KERNEL_GS_BASE = 0xc0000102;
inline constexpr u32 X2APIC_BASE = 0x800;
} // namespace msr

namespace cr0 { inline constexpr u64 PE = 1, MP = 1u << 1, EM = 1u << 2, TS = 1u << 3, WP = 1u << 16, PG = 1ull << 31; }
namespace cr4 {
inline constexpr u64 PAE = 1u << 5, PGE = 1u << 7, OSFXSR = 1u << 9, OSXMMEXCPT = 1u << 10,
                     VMXE = 1u << 13, FSGSBASE = 1u << 16, SMEP = 1u << 20, SMAP = 1u << 21;
}
namespace efer { inline constexpr u64 SCE = 1, LME = 1u << 8, LMA = 1u << 10, NXE = 1u << 11, SVME = 1u << 12; }

} // namespace x86

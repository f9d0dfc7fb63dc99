// The shared runtime of Keel's test guests: 32-bit protected mode, paging off,
// loaded at 1 MiB by a Multiboot v1 loader (Keel, or QEMU's -kernel).
//
// A guest defines
//     extern "C" const char guest_name[] = "hello";
//     u32 guest_main();                 // its return value is the exit code
// and links with the runtime, which prints "<name>: start" first, copies the
// Multiboot information into its own memory (so a guest may overwrite the
// loader's copy), installs a GDT and an IDT, then calls guest_main().
#pragma once

using u8 = unsigned char;
using u16 = unsigned short;
using u32 = unsigned int;
using u64 = unsigned long long;
using i32 = int;
using i64 = long long;
using usize = unsigned int;
using uptr = unsigned int;

static_assert(sizeof(u64) == 8 && sizeof(uptr) == 4, "i386 only");

extern "C" const char guest_name[];
u32 guest_main();

// ---- ports and privileged instructions ------------------------------------
inline u8 inb(u16 port) { u8 v; asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
inline u16 inw(u16 port) { u16 v; asm volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
inline u32 inl(u16 port) { u32 v; asm volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
inline void outb(u16 port, u8 v) { asm volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
inline void outw(u16 port, u16 v) { asm volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
inline void outl(u16 port, u32 v) { asm volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }

struct CpuidResult { u32 eax, ebx, ecx, edx; };
inline CpuidResult cpuid(u32 leaf, u32 subleaf = 0) {
    CpuidResult r;
    asm volatile("cpuid" : "=a"(r.eax), "=b"(r.ebx), "=c"(r.ecx), "=d"(r.edx) : "a"(leaf), "c"(subleaf));
    return r;
}

// Device registers at physical address a (no paging). The asm barrier keeps the compiler
// from fusing a load and a later store into one read-modify-write instruction (clang turns
// `*p = *p | x` on volatile into `or`): Keel emulates MMIO moves only, as device registers want.
template <typename T> T mmio_rd(u32 a)
{
    T v = *reinterpret_cast<volatile T*>(a);
    asm volatile("" : "+r"(v));
    return v;
}
template <typename T> void mmio_wr(u32 a, T v) { *reinterpret_cast<volatile T*>(a) = v; }

inline u64 rdtsc() { u32 lo, hi; asm volatile("rdtsc" : "=a"(lo), "=d"(hi)); return (u64(hi) << 32) | lo; }

// rdmsr/wrmsr are emitted as the bare 2-byte instructions: the #GP handler
// skips exactly 2 bytes when one of them faults. On a fault EDX:EAX is left as
// loaded below (rdmsr), so a faulting read returns `fault_value`.
inline u64 rdmsr(u32 msr, u64 fault_value = 0xdeadbeefdeadbeefull) {
    u32 lo = u32(fault_value), hi = u32(fault_value >> 32);
    asm volatile("rdmsr" : "+a"(lo), "+d"(hi) : "c"(msr) : "memory");
    return (u64(hi) << 32) | lo;
}
// lib/longmode.S: SWAPGS, in a brief trip to 64-bit mode (interrupts off, no paging before or after).
extern "C" void swapgs_in_long_mode();

inline void wrmsr(u32 msr, u64 v) {
    asm volatile("wrmsr" : : "c"(msr), "a"(u32(v)), "d"(u32(v >> 32)) : "memory");
}

// ---- faults -----------------------------------------------------------------
// #GP on rdmsr/wrmsr is recorded and the instruction skipped; every other
// exception (and #GP anywhere else) prints a report and exits with
// kExitUnexpectedException | vector.
constexpr u32 kExitUnexpectedException = 0xEE00;
constexpr u32 kExitBadMagic = 0xEEFF;

struct GpRecord {
    u32 count;       // #GPs taken on rdmsr/wrmsr since boot
    u32 last_error;  // error code of the last one
    u32 last_eip;    // address of the faulting instruction
};
extern volatile GpRecord gp_record;

// What the exception stubs (entry.S) save: trap_entry(frame) may change eip/eflags.
struct TrapFrame {
    u32 edi, esi, ebp, esp, ebx, edx, ecx, eax;   // pushal
    u32 vector, error;
    u32 eip, cs, eflags;
};

// Optional: a guest that takes exceptions on purpose sets trap_hook. It sees every
// exception (vectors 0..31) first; returning true resumes at f->eip (which it may
// change), false leaves the exception to the runtime (above). Unset by default.
using TrapHook = bool (*)(TrapFrame* f);
extern TrapHook trap_hook;

// ---- console and exit -------------------------------------------------------
void putc(char c);
void puts(const char* s);                       // no newline added
// printf-lite: %s %c %d %i %u %x %X %p %%, flags '0' '-', width, length 'l' (32-bit) and 'll' (64-bit).
void printf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
[[noreturn]] void exit(u32 code);               // outl(0xF4, code)

// ---- boot information (copied at start) --------------------------------------
constexpr u32 kMultibootMagic = 0x2BADB002;

struct MemRegion { u64 base, length; u32 type; };  // type 1 = RAM

struct BootInfo {
    u32 magic;          // EAX at entry
    u32 mbi_addr;       // EBX at entry
    u32 mbi_size;       // bytes of the info structure proper (fixed part)
    u32 flags;          // Multiboot info flags
    bool has_mem;       // flags bit 0
    u32 mem_lower_kib, mem_upper_kib;
    bool has_cmdline;   // flags bit 2
    u32 cmdline_addr;
    char cmdline[1024]; // NUL-terminated copy (truncated)
    bool has_mmap;      // flags bit 6
    u32 mmap_addr, mmap_length;
    u32 mmap_count;
    bool mmap_truncated;
    MemRegion mmap[64];
    // CPU state found at entry, before the runtime touched anything.
    u32 entry_eflags, entry_cr0, entry_cr4;
    u16 entry_cs, entry_ds, entry_ss, entry_es;
};
extern BootInfo boot;

// The guest's own image (linker symbols), page-aligned end.
u32 image_start();
u32 image_end();

// ---- command line -----------------------------------------------------------
// The command line is a list of whitespace-separated words; a word may be
// key=value. A leading word without '=' (the kernel path QEMU and GRUB pass)
// is harmless. Numbers are decimal or 0x-hex, optionally suffixed K/M/G.
bool cmdline_value(const char* key, const char** value, usize* len);
bool cmdline_flag(const char* word);            // a bare word, or key=1/yes/on
u64 cmdline_u64(const char* key, u64 fallback);
bool parse_u64(const char* s, usize len, u64* out);

// ---- checks -----------------------------------------------------------------
// Numbered checks: each prints "<name>: [N] ok <what>" or "<name>: [N] FAIL <what>: <detail>".
// The exit code is 0 when all passed, else the number of the first failed check.
struct Checks {
    u32 number = 0;
    u32 failed = 0;
    u32 first_failed = 0;
    bool check(bool ok, const char* what, const char* detail_fmt = nullptr, ...)
        __attribute__((format(printf, 4, 5)));
    u32 exit_code() const { return first_failed; }
    // Prints "<name>: PASS (N checks)" or "<name>: FAIL (k of N checks failed, first #F)".
    u32 finish() const;
};

// ---- freestanding runtime ---------------------------------------------------
extern "C" void* memset(void* dst, int c, usize n);
extern "C" void* memcpy(void* dst, const void* src, usize n);
extern "C" int memcmp(const void* a, const void* b, usize n);
usize strlen(const char* s);
bool streq(const char* a, const char* b);

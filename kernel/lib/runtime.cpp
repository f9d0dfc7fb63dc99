// The few C runtime symbols the compiler may call in a freestanding kernel.
#include "kernel/lib/console.hpp"
#include "kernel/lib/types.hpp"

// The stack protector's canary: a fixed value until kmain mixes in the TSC and RDRAND, first thing.
extern "C" u64 __stack_chk_guard;
u64 __stack_chk_guard = 0x595e9fbd94fda766ull;

extern "C" {

[[noreturn]] void __stack_chk_fail()
{
    log_error("stack protector: a stack frame was overwritten");
    __builtin_trap();
}

void *memcpy(void *dst, const void *src, usize n)
{
    // Eight bytes per iteration, then the tail: as fast as `rep movsb` on CPUs with
    // ERMS, much faster on those without (and under emulators, which count iterations).
    auto *d = static_cast<u8 *>(dst);
    auto *s = static_cast<const u8 *>(src);
    usize q = n / 8, r = n % 8;
    asm volatile("rep movsq" : "+D"(d), "+S"(s), "+c"(q) : : "memory");
    asm volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(r) : : "memory");
    return dst;
}

void *memmove(void *dst, const void *src, usize n)
{
    auto *d = static_cast<u8 *>(dst);
    auto *s = static_cast<const u8 *>(src);
    if (d <= s || d >= s + n) return memcpy(dst, src, n);
    for (usize i = n; i--;) d[i] = s[i];
    return dst;
}

void *memset(void *dst, int c, usize n)
{
    auto *d = static_cast<u8 *>(dst);
    usize q = n / 8, r = n % 8;
    const u64 v = u64(u8(c)) * 0x0101010101010101ull;
    asm volatile("rep stosq" : "+D"(d), "+c"(q) : "a"(v) : "memory");
    asm volatile("rep stosb" : "+D"(d), "+c"(r) : "a"(v) : "memory");
    return dst;
}

int memcmp(const void *a, const void *b, usize n)
{
    auto *x = static_cast<const u8 *>(a);
    auto *y = static_cast<const u8 *>(b);
    for (usize i = 0; i < n; i++)
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
}

usize strlen(const char *s)
{
    usize n = 0;
    while (s[n]) n++;
    return n;
}

void __cxa_pure_virtual() { __builtin_trap(); }

} // extern "C"

// There is no heap behind operator new; a virtual destructor may still reference delete.
void operator delete(void *, usize) noexcept { __builtin_trap(); }
void operator delete(void *) noexcept { __builtin_trap(); }

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
    auto *d = static_cast<u8 *>(dst);
    auto *s = static_cast<const u8 *>(src);
    asm volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
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
    asm volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
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

// What the fuzzers share: a broken invariant traps (libFuzzer reports it as a crash), and a
// host buffer with guard bytes on both sides, so a write outside what a guest owns is seen.
#pragma once

#include <string.h>

#include "kernel/lib/types.hpp"

namespace fuzz {

inline void check(bool c)
{
    if (!c) __builtin_trap();
}

// N usable bytes at mid(), with GUARD bytes of 0xcc on each side; ok() while they are intact.
template <usize N, usize GUARD = 64>
struct Guarded {
    u8 b[GUARD + N + GUARD];
    u8 *mid() { return b + GUARD; }
    void init() { memset(b, 0xcc, sizeof b); }
    bool ok() const
    {
        for (usize i = 0; i < GUARD; i++)
            if (b[i] != 0xcc || b[sizeof b - 1 - i] != 0xcc) return false;
        return true;
    }
};

} // namespace fuzz

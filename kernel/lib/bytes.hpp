// Reading untrusted byte blobs (boot information, firmware tables, guest
// images): little-endian fields assembled from bytes, no alignment assumed.
#pragma once

#include "kernel/lib/types.hpp"

inline u16 load_u16(const u8 *p) { return static_cast<u16>(p[0] | p[1] << 8); }

inline u32 load_u32(const u8 *p)
{
    return static_cast<u32>(p[0]) | static_cast<u32>(p[1]) << 8 | static_cast<u32>(p[2]) << 16 |
           static_cast<u32>(p[3]) << 24;
}

inline u64 load_u64(const u8 *p) { return load_u32(p) | static_cast<u64>(load_u32(p + 4)) << 32; }

// The n low bytes of v, little-endian (building a register file or a table).
inline void store_le(u8 *p, u64 v, unsigned n)
{
    for (unsigned i = 0; i < n; i++) p[i] = u8(v >> 8 * i);
}

// Reset a result object in place. A plain `x = T{}` may build a temporary of
// several KiB on the stack first; all-zero is every field's "absent".
template <class T>
void zero_object(T &x)
{
    static_assert(__is_trivially_copyable(T));
    u8 *p = reinterpret_cast<u8 *>(&x);
    for (usize i = 0; i < sizeof(T); i++) p[i] = 0;
}

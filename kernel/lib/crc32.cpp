#include "kernel/lib/crc32.hpp"

namespace {

struct Table {
    u32 t[256];
};

constexpr Table make_table()
{
    Table tb{};
    for (u32 i = 0; i < 256; i++) {
        u32 c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
        tb.t[i] = c;
    }
    return tb;
}

constexpr Table TABLE = make_table();   // in .rodata: no constructor runs

} // namespace

u32 crc32(const void *p, usize n, u32 prev)
{
    const u8 *b = static_cast<const u8 *>(p);
    u32 c = ~prev;
    for (usize i = 0; i < n; i++) c = TABLE.t[(c ^ b[i]) & 0xff] ^ (c >> 8);
    return ~c;
}

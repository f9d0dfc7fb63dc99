#include "kernel/storage/guid.hpp"

namespace {

// Text position of each stored byte: the first three fields byte-swapped.
constexpr u8 POS[16] = {6, 4, 2, 0, 11, 9, 16, 14, 19, 21, 24, 26, 28, 30, 32, 34};

int hex(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool dash_at(usize i) { return i == 8 || i == 13 || i == 18 || i == 23; }

} // namespace

bool Guid::zero() const
{
    for (u8 x : b)
        if (x) return false;
    return true;
}

bool Guid::operator==(const Guid &o) const
{
    for (usize i = 0; i < 16; i++)
        if (b[i] != o.b[i]) return false;
    return true;
}

bool parse_guid(StrView s, Guid &out)
{
    if (s.n != GUID_TEXT || !s.p) return false;
    for (usize i = 0; i < GUID_TEXT; i++)
        if (dash_at(i) ? s.p[i] != '-' : hex(s.p[i]) < 0) return false;
    for (usize i = 0; i < 16; i++) out.b[i] = u8(hex(s.p[POS[i]]) << 4 | hex(s.p[POS[i] + 1]));
    return true;
}

void format_guid(const Guid &g, char *out)
{
    for (usize i = 0; i < GUID_TEXT; i++) out[i] = '-';
    for (usize i = 0; i < 16; i++) {
        out[POS[i]] = "0123456789abcdef"[g.b[i] >> 4];
        out[POS[i] + 1] = "0123456789abcdef"[g.b[i] & 0xf];
    }
    out[GUID_TEXT] = 0;
}

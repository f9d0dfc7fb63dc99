#include "kernel/firmware/acpi_s5.hpp"

namespace {

// One integer element of a package: ZeroOp, OneOp, OnesOp, BytePrefix n (WordPrefix etc. keep the low byte).
bool element(const u8 *p, usize n, usize &i, u8 &out)
{
    if (i >= n) return false;
    switch (p[i]) {
    case 0x00: out = 0; i += 1; return true;
    case 0x01: out = 1; i += 1; return true;
    case 0xff: out = 0xff; i += 1; return true;
    case 0x0a: case 0x0b: case 0x0c: case 0x0e: {
        const usize width = p[i] == 0x0a ? 1 : p[i] == 0x0b ? 2 : p[i] == 0x0c ? 4 : 8;
        if (n - i < 1 + width) return false;
        out = p[i + 1];
        i += 1 + width;
        return true;
    }
    default: return false;
    }
}

} // namespace

bool acpi_find_s5(const u8 *aml, usize len, u8 &a, u8 &b)
{
    for (usize at = 1; at + 4 <= len; at++) {
        if (aml[at] != '_' || aml[at + 1] != 'S' || aml[at + 2] != '5' || aml[at + 3] != '_') continue;
        // NameOp, optionally with the root prefix before the name.
        const bool named = aml[at - 1] == 0x08 || (aml[at - 1] == '\\' && at >= 2 && aml[at - 2] == 0x08);
        if (!named) continue;
        usize i = at + 4;
        if (i >= len || aml[i] != 0x12) continue;   // PackageOp
        i++;
        if (i >= len) return false;
        const usize pkglen_bytes = 1 + (aml[i] >> 6);
        if (len - i < pkglen_bytes + 1) return false;
        i += pkglen_bytes;
        const u8 count = aml[i++];
        if (count < 1) continue;
        u8 x = 0, y = 0;
        if (!element(aml, len, i, x)) continue;
        if (count >= 2 && !element(aml, len, i, y)) y = 0;
        a = x;
        b = y;
        return true;
    }
    return false;
}

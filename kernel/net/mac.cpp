// MAC addresses (see mac.hpp).
#include "kernel/net/mac.hpp"

namespace net {
namespace {

int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

constexpr u64 FNV_OFFSET = 0xcbf29ce484222325ull, FNV_PRIME = 0x100000001b3ull;

u64 fnv(u64 h, const void *p, usize n)
{
    const u8 *b = static_cast<const u8 *>(p);
    for (usize i = 0; i < n; i++) h = (h ^ b[i]) * FNV_PRIME;
    return h;
}

} // namespace

const char *parse_mac(const char *s, usize n, Mac &out)
{
    static const char *const form = "is not of the form 02:4b:45:00:00:01";
    if (n != 17) return form;
    Mac m;
    for (unsigned i = 0; i < 6; i++) {
        const int hi = hexval(s[3 * i]), lo = hexval(s[3 * i + 1]);
        if (hi < 0 || lo < 0 || (i < 5 && s[3 * i + 2] != ':')) return form;
        m.b[i] = u8(hi << 4 | lo);
    }
    if (m.multicast()) return "is multicast";
    if (m.zero()) return "is all zero";
    out = m;
    return nullptr;
}

usize format_mac(char *out, const Mac &m)
{
    static const char digits[] = "0123456789abcdef";
    for (unsigned i = 0; i < 6; i++) {
        out[3 * i] = digits[m.b[i] >> 4];
        out[3 * i + 1] = digits[m.b[i] & 15];
        out[3 * i + 2] = i < 5 ? ':' : '\0';
    }
    return 17;
}

Mac derive_mac(const char *name, usize n, u32 nic, u32 attempt)
{
    u64 h = fnv(FNV_OFFSET, name, n);
    const u8 tail[8] = {u8(nic), u8(nic >> 8), u8(nic >> 16), u8(nic >> 24),
                        u8(attempt), u8(attempt >> 8), u8(attempt >> 16), u8(attempt >> 24)};
    h = fnv(h, tail, sizeof tail);
    Mac m;
    m.b[0] = 0x02;
    for (unsigned i = 1; i < 6; i++) m.b[i] = u8(h >> 8 * (i - 1));
    return m;
}

bool assign_macs(MacSlot *slots, usize n, usize *dup_a, usize *dup_b)
{
    for (usize j = 0; j < n; j++)
        for (usize i = 0; i < j; i++)
            if (slots[i].configured && slots[j].configured && slots[i].mac == slots[j].mac) {
                *dup_a = i;
                *dup_b = j;
                return false;
            }
    for (usize j = 0; j < n; j++) {
        if (slots[j].configured) continue;
        for (u32 attempt = 0;; attempt++) {
            const Mac m = derive_mac(slots[j].guest, slots[j].guest_len, slots[j].nic, attempt);
            bool taken = false;
            for (usize i = 0; i < n && !taken; i++)
                taken = (slots[i].configured || i < j) && slots[i].mac == m;
            if (taken) continue;   // at most n - 1 addresses are taken: this ends
            slots[j].mac = m;
            break;
        }
    }
    return true;
}

} // namespace net

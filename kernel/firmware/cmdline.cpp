#include "kernel/firmware/cmdline.hpp"

bool StrView::eq(const char *lit) const
{
    usize i = 0;
    for (; i < n && lit[i]; i++)
        if (p[i] != lit[i]) return false;
    return i == n && !lit[i];
}

namespace {
bool space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Visit each word: f(key, value, has_value).
template <class F>
void each_word(const char *s, usize n, F &&f)
{
    usize i = 0;
    while (i < n && s[i]) {
        while (i < n && space(s[i])) i++;
        usize start = i;
        while (i < n && s[i] && !space(s[i])) i++;
        if (i == start) break;
        usize eq = start;
        while (eq < i && s[eq] != '=') eq++;
        StrView key{s + start, eq - start};
        StrView val{eq < i ? s + eq + 1 : nullptr, eq < i ? i - eq - 1 : 0};
        f(key, val, eq < i);
    }
}
} // namespace

bool Cmdline::get(const char *key, StrView &value) const
{
    bool found = false;
    each_word(s_, n_, [&](StrView k, StrView v, bool has_v) {
        if (has_v && k.eq(key)) { value = v; found = true; }
    });
    return found;
}

bool Cmdline::has(const char *key) const
{
    bool found = false;
    each_word(s_, n_, [&](StrView k, StrView, bool) { found |= k.eq(key); });
    return found;
}

bool parse_u64(StrView s, u64 &out)
{
    if (s.empty()) return false;
    unsigned base = 10;
    usize i = 0;
    if (s.n > 2 && s.p[0] == '0' && (s.p[1] == 'x' || s.p[1] == 'X')) { base = 16; i = 2; }
    u64 v = 0;
    for (; i < s.n; i++) {
        char c = s.p[i];
        unsigned d;
        if (c >= '0' && c <= '9') d = unsigned(c - '0');
        else if (base == 16 && c >= 'a' && c <= 'f') d = unsigned(c - 'a' + 10);
        else if (base == 16 && c >= 'A' && c <= 'F') d = unsigned(c - 'A' + 10);
        else return false;
        if (v > (~0ull - d) / base) return false;   // overflow
        v = v * base + d;
    }
    out = v;
    return true;
}

bool Cmdline::get_u64(const char *key, u64 &out) const
{
    StrView v;
    return get(key, v) && parse_u64(v, out);
}

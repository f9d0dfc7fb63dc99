#include "kernel/lib/format.hpp"

namespace {

struct Out {
    char *buf;
    usize cap, len;
    void put(char c)
    {
        if (len + 1 < cap) buf[len] = c;
        len++;
    }
};

void put_num(Out &o, u64 v, unsigned base, bool upper, bool neg, unsigned width, bool zero, bool left)
{
    char tmp[24];
    unsigned n = 0;
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    do {
        tmp[n++] = digits[v % base];
        v /= base;
    } while (v);
    unsigned len = n + (neg ? 1 : 0);
    if (!left && !zero)
        for (; width > len; width--) o.put(' ');
    if (neg) o.put('-');
    if (!left && zero)
        for (; width > len; width--) o.put('0');
    while (n) o.put(tmp[--n]);
    if (left)
        for (; width > len; width--) o.put(' ');
}

} // namespace

usize vformat(char *buf, usize cap, const char *fmt, va_list ap)
{
    Out o{buf, cap, 0};
    for (const char *p = fmt; *p; p++) {
        if (*p != '%') {
            o.put(*p);
            continue;
        }
        p++;
        bool zero = false, left = false;
        for (;; p++) {
            if (*p == '0') zero = true;
            else if (*p == '-') left = true;
            else break;
        }
        unsigned width = 0;
        while (*p >= '0' && *p <= '9') width = width * 10 + unsigned(*p++ - '0');
        int prec = -1;
        if (*p == '.') {
            p++;
            if (*p == '*') {
                prec = va_arg(ap, int);
                p++;
            } else {
                prec = 0;
                while (*p >= '0' && *p <= '9') prec = prec * 10 + (*p++ - '0');
            }
        }
        unsigned lng = 0;
        while (*p == 'l') { lng++; p++; }
        if (*p == 'z') { lng = 2; p++; }

        auto uarg = [&]() -> u64 {
            return lng ? va_arg(ap, unsigned long long) : va_arg(ap, unsigned);
        };
        switch (*p) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (!s) s = "(null)";
            usize n = 0;
            while ((prec < 0 || n < usize(prec)) && s[n]) n++;
            if (!left) for (usize w = n; w < width; w++) o.put(' ');
            for (usize i = 0; i < n; i++) o.put(s[i]);
            if (left) for (usize w = n; w < width; w++) o.put(' ');
            break;
        }
        case 'c': o.put(char(va_arg(ap, int))); break;
        case 'd': case 'i': {
            i64 v = lng ? va_arg(ap, long long) : va_arg(ap, int);
            u64 mag = v < 0 ? u64(0) - u64(v) : u64(v);
            put_num(o, mag, 10, false, v < 0, width, zero, left);
            break;
        }
        case 'u': put_num(o, uarg(), 10, false, false, width, zero, left); break;
        case 'x': put_num(o, uarg(), 16, false, false, width, zero, left); break;
        case 'X': put_num(o, uarg(), 16, true, false, width, zero, left); break;
        case 'p':
            o.put('0'); o.put('x');
            put_num(o, u64(reinterpret_cast<uintptr_t>(va_arg(ap, void *))), 16, false, false, 16, true, false);
            break;
        case '%': o.put('%'); break;
        case '\0': p--; break;   // a lone '%' at the end
        default: o.put('%'); o.put(*p); break;
        }
    }
    if (cap) buf[o.len < cap ? o.len : cap - 1] = '\0';
    return o.len;
}

usize format(char *buf, usize cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    usize n = vformat(buf, cap, fmt, ap);
    va_end(ap);
    return n;
}

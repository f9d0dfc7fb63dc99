// An error with its explanation: loaders build a report's message piece by piece
// (no printf on their hot paths, no libc) and return the error it describes.
#pragma once

#include "kernel/lib/result.hpp"

// Report: any struct with a `char msg[N]`.
template <class Report>
class WhyMsg {
public:
    WhyMsg(Report *r, Err e) : r_(r), e_(e)
    {
        if (r_) r_->msg[0] = 0;
    }

    WhyMsg &s(const char *t)
    {
        while (*t) put(*t++);
        return *this;
    }
    WhyMsg &d(u64 v)
    {
        char b[20];
        usize n = 0;
        do b[n++] = static_cast<char>('0' + v % 10);
        while (v /= 10);
        while (n) put(b[--n]);
        return *this;
    }
    WhyMsg &x(u64 v)
    {
        s("0x");
        unsigned sh = 60;
        while (sh && !(v >> sh)) sh -= 4;
        for (;; sh -= 4) {
            put("0123456789abcdef"[v >> sh & 0xf]);
            if (!sh) break;
        }
        return *this;
    }
    // "0x1000+0x2000"
    WhyMsg &range(u64 a, u64 n) { return x(a).s("+").x(n); }
    // "2.15" for 0x020f (a boot protocol version)
    WhyMsg &ver(u16 v) { return d(v >> 8).s(".").d(v & 0xff); }

    operator Status() const { return e_; }
    template <class T> operator Result<T>() const { return e_; }

private:
    void put(char c)
    {
        if (r_ && n_ + 1 < sizeof(r_->msg)) {
            r_->msg[n_++] = c;
            r_->msg[n_] = 0;
        }
    }

    Report *r_;
    Err e_;
    usize n_ = 0;
};

// Keel's command line: space-separated words, each "key" or "key=value".
#pragma once

#include "kernel/lib/types.hpp"

struct StrView {
    const char *p = nullptr;
    usize n = 0;
    bool empty() const { return n == 0; }
    bool eq(const char *lit) const;
};

class Cmdline {
public:
    Cmdline() = default;
    Cmdline(const char *s, usize n) : s_(s), n_(n) {}

    // The value of "key=value" (the last one wins), or false if the key is absent.
    bool get(const char *key, StrView &value) const;
    // True if "key" or "key=..." is present.
    bool has(const char *key) const;
    // Parse a number value (decimal, or hex with 0x); false when absent or malformed.
    bool get_u64(const char *key, u64 &out) const;

private:
    const char *s_ = nullptr;
    usize n_ = 0;
};

bool parse_u64(StrView s, u64 &out);

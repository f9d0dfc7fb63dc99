#include "kernel/storage/device_name.hpp"

#include "kernel/storage/gpt.hpp"

namespace {

bool starts(StrView s, const char *lit, usize &n)
{
    n = 0;
    while (lit[n]) {
        if (n >= s.n || s.p[n] != lit[n]) return false;
        n++;
    }
    return true;
}

// A decimal number at s[i..], no leading zero, at most `max`; i moves past it.
const char *number(StrView s, usize &i, u64 max, u64 &out, const char *what)
{
    const usize start = i;
    out = 0;
    while (i < s.n && s.p[i] >= '0' && s.p[i] <= '9') {
        out = out * 10 + u64(s.p[i] - '0');
        if (out > max) return what;
        i++;
    }
    if (i == start) return what;
    if (s.p[start] == '0' && i - start > 1) return "numbers have no leading zeros";
    return nullptr;
}

} // namespace

const char *parse_device_name(StrView s, DeviceName &out)
{
    DeviceName d;
    usize i = 0;
    if (s.empty() || !s.p) return "empty device name";
    if (starts(s, "gpt-name:", i)) {
        const StrView name{s.p + i, s.n - i};
        if (name.empty()) return "gpt-name: needs a partition name";
        if (name.n > gpt::NAME_UNITS) return "a GPT partition name has at most 36 characters";
        for (usize k = 0; k < name.n; k++)
            if (name.p[k] < 0x20 || name.p[k] > 0x7e) return "a GPT partition name is printable ASCII";
        d.kind = DeviceKind::gpt_name;
        d.name = name;
        out = d;
        return nullptr;
    }
    if (starts(s, "gpt-guid:", i)) {
        if (!parse_guid(StrView{s.p + i, s.n - i}, d.guid)) return "gpt-guid: needs a GUID like 01234567-89ab-cdef-0123-456789abcdef";
        if (d.guid.zero()) return "the zero GUID names no partition";
        d.kind = DeviceKind::gpt_guid;
        out = d;
        return nullptr;
    }
    if (!starts(s, "nvme", i)) return "a device is nvmeXnY, nvmeXnYpZ, gpt-name:NAME or gpt-guid:GUID";
    u64 v;
    if (const char *why = number(s, i, 255, v, "nvme needs a controller number 0..255")) return why;
    d.controller = u32(v);
    if (i >= s.n || s.p[i] != 'n') return "nvmeX needs a namespace: nvmeXnY";
    i++;
    if (const char *why = number(s, i, 0xfffffffe, v, "a namespace ID is 1..4294967294")) return why;
    if (v == 0) return "namespace IDs start at 1";
    d.nsid = u32(v);
    d.kind = DeviceKind::nvme_namespace;
    if (i < s.n && s.p[i] == 'p') {
        i++;
        if (const char *why = number(s, i, gpt::MAX_ENTRIES, v, "a partition number is 1..4096")) return why;
        if (v == 0) return "partitions are numbered from 1";
        d.partition = u32(v);
        d.kind = DeviceKind::nvme_partition;
    }
    if (i != s.n) return "unexpected characters after the device name";
    out = d;
    return nullptr;
}

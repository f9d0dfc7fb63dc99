// MAC addresses: parsed from the configuration (untrusted text), printed, and
// assigned to NICs that have none, stably and without collisions.
#pragma once

#include "kernel/lib/types.hpp"

namespace net {

struct Mac {
    u8 b[6];

    bool operator==(const Mac &o) const
    {
        for (unsigned i = 0; i < 6; i++)
            if (b[i] != o.b[i]) return false;
        return true;
    }
    bool multicast() const { return b[0] & 1; }   // group bit; broadcast included
    bool broadcast() const { return b[0] == 0xff && b[1] == 0xff && b[2] == 0xff && b[3] == 0xff && b[4] == 0xff && b[5] == 0xff; }
    bool zero() const { return !(b[0] | b[1] | b[2] | b[3] | b[4] | b[5]); }
};

// Parses exactly "xx:xx:xx:xx:xx:xx" (17 characters, hex digits in either case).
// nullptr and `out` set on success; otherwise why not: "is not of the form
// 02:4b:45:00:00:01", "is multicast" or "is all zero" (a NIC's own address is
// unicast and not zero).
const char *parse_mac(const char *s, usize n, Mac &out);

// "02:4b:45:00:00:01" and a NUL into out (at least 18 bytes); returns 17.
usize format_mac(char *out, const Mac &m);

// The automatic address of NIC `nic` of the guest named (name, n), try `attempt`:
// 02 (locally administered, unicast) and five bytes of an FNV-1a hash of the name,
// the NIC's index and the attempt. The same inputs give the same address on every
// build and boot.
Mac derive_mac(const char *name, usize n, u32 nic, u32 attempt = 0);

struct MacSlot {
    const char *guest;
    usize guest_len;
    u32 nic;
    bool configured;   // mac given in the configuration
    Mac mac;           // in: the given one; out: the final one
};

// Gives every slot without a configured MAC the first derive_mac(attempt 0, 1, ...)
// that is no configured MAC and no MAC assigned to an earlier slot (slots in
// configuration order: deterministic). False if two configured MACs are equal:
// the first such pair is (*dup_a, *dup_b), dup_a < dup_b; nothing is assigned then.
bool assign_macs(MacSlot *slots, usize n, usize *dup_a, usize *dup_b);

} // namespace net

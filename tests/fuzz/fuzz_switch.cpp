// libFuzzer target for the virtual switch and MAC parsing: the input is a program
// of operations on two switches (two networks) with six NICs: attach, detach,
// send (from a NIC, with a chosen destination, source and length), let time pass,
// make a NIC refuse frames, parse a MAC. A model kept here predicts every port's
// counters; each delivery is checked as it happens. Any broken invariant traps:
//  - a frame reaches only NICs attached to the sender's switch, never the sender;
//  - a frame with a source other than the sender's MAC, or a bad length, reaches nobody;
//  - a detached NIC receives nothing;
//  - tx/drop counters equal the model's; parse_mac accepts exactly unicast non-zero
//    "xx:xx:xx:xx:xx:xx" and format_mac gives it back in lower case.
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernel/net/switch.hpp"
#include "tests/fuzz/guarded.hpp"

namespace {

using fuzz::check;
using net::Delivery;
using net::Mac;

constexpr int NICS = 6;
constexpr u32 MAX_FRAME = 100;

struct Bytes final : net::FrameSource {
    u8 b[MAX_FRAME + 16];
    u32 n = 0;
    bool read(u32 off, void *dst, u32 k) const override
    {
        if (u64(off) + k > n) return false;
        memcpy(dst, b + off, k);
        return true;
    }
};

struct Nic final : net::PortSink {
    Mac mac;
    int sw = -1;      // attached to switch 0 or 1, or -1
    int port = -1;
    Delivery answer = Delivery::ok;
    u64 tx = 0, spoofed = 0, malformed = 0;
    Delivery deliver(const net::Frame &f) override;
};

Nic nics[NICS];
int sending = -1;      // the NIC whose frame is being forwarded
u32 delivered = 0;

Delivery Nic::deliver(const net::Frame &f)
{
    const Nic &from = nics[sending];
    check(sw >= 0 && sw == from.sw);                       // attached, and on the sender's network
    check(this != &from);                                  // never back to the sender
    check(memcmp(f.header + 6, from.mac.b, 6) == 0);       // only the sender's own source
    check(f.len >= net::ETH_HEADER && f.len <= MAX_FRAME);
    u8 first[net::ETH_HEADER];
    check(f.src->read(0, first, sizeof first) && memcmp(first, f.header, sizeof first) == 0);
    if (answer == Delivery::ok) delivered++;
    return answer;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    net::Switch sw[2] = {net::Switch(MAX_FRAME, 50), net::Switch(MAX_FRAME, 50)};
    for (int i = 0; i < NICS; i++) {
        nics[i] = Nic{};
        nics[i].mac = Mac{{0x02, 0, 0, 0, 0, u8(i + 1)}};
    }
    u64 now = 0;
    size_t i = 0;
    auto next = [&]() -> u8 { return i < size ? data[i++] : 0; };
    while (i < size) {
        const u8 op = next();
        Nic &n = nics[(op >> 4) % NICS];
        switch (op & 7) {
        case 0:   // attach to switch (bit 3)
            if (n.sw < 0) {
                n.sw = op >> 3 & 1;
                n.port = sw[n.sw].attach(n.mac, n);
                check(n.port >= 0);
                n.tx = n.spoofed = n.malformed = 0;
            }
            break;
        case 1:   // detach
            if (n.sw >= 0) {
                sw[n.sw].detach(n.port);
                n.sw = -1;
            }
            break;
        case 2: {   // send
            const u8 how = next(), len = next();
            Bytes bytes;
            bytes.n = len % (MAX_FRAME + 10);
            for (u32 k = 0; k < bytes.n; k++) bytes.b[k] = next();
            Mac dst = how & 1 ? nics[(how >> 1) % NICS].mac : Mac{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
            Mac src = how & 16 ? nics[(how >> 5) % NICS].mac : n.mac;
            if (how & 8) dst.b[0] |= 1;   // multicast
            if (bytes.n >= 12) memcpy(bytes.b, dst.b, 6), memcpy(bytes.b + 6, src.b, 6);
            net::Frame f;
            memcpy(f.header, bytes.b, net::ETH_HEADER);
            f.len = bytes.n;
            f.src = &bytes;
            sending = int(&n - nics);
            delivered = 0;
            if (n.sw < 0) break;   // (a detached NIC's device has no port to send on)
            const u32 got = sw[n.sw].send(n.port, f, now);
            check(got == delivered);
            const bool bad_len = bytes.n < net::ETH_HEADER || bytes.n > MAX_FRAME;
            if (bad_len) n.malformed++;
            else if (!(src == n.mac)) n.spoofed++;
            else n.tx++;
            if (bad_len || !(src == n.mac)) check(got == 0);
            const net::PortStats s = sw[n.sw].stats(n.port);
            check(s.tx_packets == n.tx && s.drop_spoofed == n.spoofed && s.drop_malformed == n.malformed);
            break;
        }
        case 3: now += next(); break;
        case 4: n.answer = Delivery(next() % 3); break;
        case 5: {   // parse a MAC from the next 17 bytes
            char t[17];
            for (char &c : t) c = char(next());
            Mac m{{9, 9, 9, 9, 9, 9}};
            const char *why = net::parse_mac(t, sizeof t, m);
            if (why) {
                check(m == (Mac{{9, 9, 9, 9, 9, 9}}));
                break;
            }
            check(!m.multicast() && !m.zero());
            char out[18];
            check(net::format_mac(out, m) == 17 && out[17] == 0);
            for (int k = 0; k < 17; k++) {
                const char a = t[k] >= 'A' && t[k] <= 'F' ? char(t[k] - 'A' + 'a') : t[k];
                check(out[k] == a);
            }
            break;
        }
        default: break;
        }
    }
    for (Nic &n : nics)
        if (n.sw >= 0) sw[n.sw].detach(n.port);
    return 0;
}

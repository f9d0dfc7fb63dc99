// vnet: a virtio-net driver in a Multiboot guest, polling (IF=0, no paging), to
// drive Keel's NICs and switch through real VM exits. One NIC, at PCI device 1.
//
//   mode=echo    peer=MAC count=N: answers pings 0..N-1 addressed to it from `peer` (the
//                same frame back, addresses swapped). Every frame it sees must come
//                from `peer` (or be a hello): a forged source reaching it fails a check.
//   mode=hostile echo=MAC sink=MAC count=N flood=F spoof=K:
//                K frames with forged source MACs (another NIC's, a made-up one,
//                broadcast), to the echo guest and to broadcast: the switch must drop
//                them; then N rounds of F frames flooding the sink followed by a ping
//                to the echo guest that must come back (resent until it does).
//   mode=sink    posts its receive buffers once and never drains them; says hello
//                (a broadcast, so the switch learns it), waits until its ring is
//                full and then `linger=S` more seconds (default 3) while others
//                keep sending to it.
// Checked lines as every checked guest (tests/guests/README.md).
//
// Memory: rings at 2 MiB (receive: +0, transmit: +16 KiB), receive buffers from
// 2 MiB + 64 KiB, transmit buffers from 2 MiB + 128 KiB; >= 8 MiB RAM.
#include "lib/guest.hpp"

extern "C" const char guest_name[] = "vnet";

namespace {

constexpr u32 ECAM = 0xE0000000;
constexpr u32 BAR = 0xC0000000;
constexpr u16 QS = 16;
constexpr u32 RXQ = 0x200000, TXQ = 0x204000;
constexpr u32 RXBUF = 0x210000, TXBUF = 0x220000, BUFSZ = 2048;
constexpr u32 HDR = 12;
constexpr u8 S_ACK = 1, S_DRIVER = 2, S_DRIVER_OK = 4, S_FEATURES_OK = 8, S_NEEDS_RESET = 0x40;
constexpr u16 F_WRITE = 2;
constexpr u16 ETHERTYPE = 0x88b5;   // IEEE local experimental

template <typename T> T rd(u32 a) { return mmio_rd<T>(a); }
template <typename T> void wr(u32 a, T v) { mmio_wr<T>(a, v); }

struct Desc { u64 addr; u32 len; u16 flags, next; };
struct Mac { u8 b[6]; };

bool same(const u8* a, const u8* b) { return !__builtin_memcmp(a, b, 6); }

bool parse_mac(const char* key, Mac& m)
{
    const char* v;
    usize n;
    if (!cmdline_value(key, &v, &n) || n != 17) return false;
    for (u32 i = 0; i < 6; i++) {
        u32 x = 0;
        for (u32 k = 0; k < 2; k++) {
            const char c = v[i * 3 + k];
            x = x * 16 + u32(c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c - 'A' + 10);
        }
        m.b[i] = u8(x);
    }
    return true;
}

struct Nic {
    u32 common = 0, notify = 0, devcfg = 0, mult = 0;
    u32 rx_kick = 0, tx_kick = 0;
    Mac mac{};
    u16 rx_seen = 0, tx_avail = 0;

    u8 status() const { return rd<u8>(common + 0x14); }

    bool probe()
    {
        const u32 cfg = ECAM + (1 << 15);
        if (rd<u32>(cfg) != 0x10411af4) return false;
        wr<u32>(cfg + 0x10, BAR);
        wr<u32>(cfg + 0x14, 0);
        wr<u16>(cfg + 0x04, u16(rd<u16>(cfg + 0x04) | 0x6));
        for (u32 p = rd<u8>(cfg + 0x34); p; p = rd<u8>(cfg + p + 1)) {
            if (rd<u8>(cfg + p) != 0x09) continue;
            const u32 at = BAR + rd<u32>(cfg + p + 8);
            switch (rd<u8>(cfg + p + 3)) {
            case 1: common = at; break;
            case 2: notify = at; mult = rd<u32>(cfg + p + 16); break;
            case 4: devcfg = at; break;
            }
        }
        return common && notify && devcfg;
    }

    u32 queue(u16 q, u32 rings)
    {
        for (u32 i = 0; i < 0x3000; i += 4) wr<u32>(rings + i, 0);
        wr<u16>(rings + 0x1000, 1);   // VIRTQ_AVAIL_F_NO_INTERRUPT
        wr<u16>(common + 0x16, q);
        wr<u16>(common + 0x18, QS);
        wr<u32>(common + 0x20, rings);
        wr<u32>(common + 0x24, 0);
        wr<u32>(common + 0x28, rings + 0x1000);
        wr<u32>(common + 0x2c, 0);
        wr<u32>(common + 0x30, rings + 0x2000);
        wr<u32>(common + 0x34, 0);
        wr<u16>(common + 0x1c, 1);
        return notify + rd<u16>(common + 0x1e) * mult;
    }

    // Reset .. DRIVER_OK with VERSION_1 | MAC only; every receive buffer posted.
    bool start()
    {
        wr<u8>(common + 0x14, 0);
        wr<u8>(common + 0x14, S_ACK | S_DRIVER);
        wr<u32>(common + 0x08, 0);
        wr<u32>(common + 0x0c, 1u << 5);
        wr<u32>(common + 0x08, 1);
        wr<u32>(common + 0x0c, 1);
        wr<u8>(common + 0x14, S_ACK | S_DRIVER | S_FEATURES_OK);
        if (!(status() & S_FEATURES_OK)) return false;
        for (u32 i = 0; i < 6; i++) mac.b[i] = rd<u8>(devcfg + i);
        rx_kick = queue(0, RXQ);
        tx_kick = queue(1, TXQ);
        Desc* d = reinterpret_cast<Desc*>(RXQ);
        for (u16 i = 0; i < QS; i++) {
            d[i] = {RXBUF + i * BUFSZ, BUFSZ, F_WRITE, 0};
            wr<u16>(RXQ + 0x1000 + 4 + i * 2, i);
        }
        asm volatile("" ::: "memory");
        wr<u16>(RXQ + 0x1000 + 2, QS);
        wr<u8>(common + 0x14, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
        wr<u16>(rx_kick, 0);
        return status() == (S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
    }

    // Sends len bytes of frame (after our header); true once the device used the chain.
    bool send(const u8* frame, u32 len)
    {
        const u16 slot = tx_avail % QS;
        const u32 buf = TXBUF + slot * BUFSZ;
        for (u32 i = 0; i < HDR; i++) wr<u8>(buf + i, 0);
        __builtin_memcpy(reinterpret_cast<void*>(buf + HDR), frame, len);
        Desc* d = reinterpret_cast<Desc*>(TXQ);
        d[slot] = {buf, HDR + len, 0, 0};
        wr<u16>(TXQ + 0x1000 + 4 + slot * 2, slot);
        tx_avail++;
        asm volatile("" ::: "memory");
        wr<u16>(TXQ + 0x1000 + 2, tx_avail);
        wr<u16>(tx_kick, 1);
        return rd<u16>(TXQ + 0x2000 + 2) == tx_avail;   // Keel transmits inside the notify
    }

    // The next received frame (its bytes after the header), or nullptr.
    const u8* recv(u32& len, u16& id)
    {
        if (rd<u16>(RXQ + 0x2000 + 2) == rx_seen) return nullptr;
        const u32 e = RXQ + 0x2000 + 4 + (rx_seen % QS) * 8;
        id = u16(rd<u32>(e));
        len = rd<u32>(e + 4) - HDR;
        rx_seen++;
        return reinterpret_cast<const u8*>(RXBUF + (id % QS) * BUFSZ + HDR);
    }
    // Gives buffer id back to the device.
    void repost(u16 id)
    {
        const u16 idx = rd<u16>(RXQ + 0x1000 + 2);
        wr<u16>(RXQ + 0x1000 + 4 + (idx % QS) * 2, id);
        asm volatile("" ::: "memory");
        wr<u16>(RXQ + 0x1000 + 2, u16(idx + 1));
    }
};

Checks checks;
u8 frame[64];

void build(const u8* dst, const u8* src, u32 kind, u32 seq)
{
    __builtin_memcpy(frame, dst, 6);
    __builtin_memcpy(frame + 6, src, 6);
    frame[12] = ETHERTYPE >> 8;
    frame[13] = ETHERTYPE & 0xff;
    __builtin_memcpy(frame + 14, &kind, 4);
    __builtin_memcpy(frame + 18, &seq, 4);
    for (u32 i = 22; i < sizeof frame; i++) frame[i] = u8(i);
}

constexpr u32 K_PING = 1, K_PONG = 2, K_FLOOD = 3, K_FORGED = 4, K_HELLO = 5;
const u8 BCAST[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

u64 seconds(u64 s) { return s * 1000000000ull; }   // the TSC runs at ~1 GHz under Keel (a bound, not a measure)

u32 run_echo(Nic& n)
{
    Mac peer{};
    checks.check(parse_mac("peer", peer), "peer= given");
    const u64 want = cmdline_u64("count", 100);
    u64 echoed = 0, foreign = 0, other = 0;
    build(BCAST, n.mac.b, K_HELLO, 0);
    n.send(frame, sizeof frame);
    const u64 end = rdtsc() + seconds(cmdline_u64("timeout", 60));
    while (echoed < want && rdtsc() < end) {
        u32 len;
        u16 id;
        const u8* f = n.recv(len, id);
        if (!f) continue;
        u32 kind = 0;
        if (len >= 22) __builtin_memcpy(&kind, f + 14, 4);
        if (!same(f + 6, peer.b) && kind != K_HELLO) foreign++;
        else if (same(f, n.mac.b) && kind == K_PING && len == sizeof frame) {
            __builtin_memcpy(frame, f, sizeof frame);
            __builtin_memcpy(frame, f + 6, 6);
            __builtin_memcpy(frame + 6, n.mac.b, 6);
            const u32 pong = K_PONG;
            __builtin_memcpy(frame + 14, &pong, 4);
            u32 seq;
            __builtin_memcpy(&seq, f + 18, 4);
            n.repost(id);
            // A resent ping is answered again but counted once: `count` distinct pings.
            if (n.send(frame, sizeof frame) && seq >= echoed) echoed = seq + 1;
            continue;
        } else other++;
        n.repost(id);
    }
    checks.check(echoed == want, "echoed every ping", "%llu of %llu", echoed, want);
    checks.check(foreign == 0, "no frame with a forged source arrived", "%llu did (%llu others)", foreign, other);
    checks.check(!(n.status() & S_NEEDS_RESET), "device still fine", "status %x", n.status());
    return 0;
}

u32 run_hostile(Nic& n)
{
    Mac echo{}, sink{};
    checks.check(parse_mac("echo", echo) && parse_mac("sink", sink), "echo= and sink= given");
    const u64 spoof = cmdline_u64("spoof", 30), rounds = cmdline_u64("count", 100), flood = cmdline_u64("flood", 20);
    // Forged sources: the echo guest's own MAC, a made-up one, broadcast; to echo and to everyone.
    u64 sent = 0;
    for (u64 i = 0; i < spoof; i++) {
        u8 src[6] = {0x02, 0x66, 0, 0, 0, u8(i)};
        const u8* from = i % 3 == 0 ? echo.b : i % 3 == 1 ? src : BCAST;
        build(i % 2 ? BCAST : echo.b, from, K_FORGED, u32(i));
        if (n.send(frame, sizeof frame)) sent++;
    }
    checks.check(sent == spoof, "forged frames sent (and used by the device)", "%llu of %llu", sent, spoof);
    u64 answered = 0, flooded = 0;
    for (u32 r = 0; r < rounds; r++) {
        for (u64 k = 0; k < flood; k++) {
            build(sink.b, n.mac.b, K_FLOOD, u32(k));
            if (n.send(frame, sizeof frame)) flooded++;
        }
        bool got = false;
        for (u32 tries = 0; tries < 100 && !got; tries++) {
            build(echo.b, n.mac.b, K_PING, r);
            n.send(frame, sizeof frame);
            const u64 until = rdtsc() + seconds(1) / 5;
            while (!got && rdtsc() < until) {
                u32 len;
                u16 id;
                const u8* f = n.recv(len, id);
                if (!f) continue;
                u32 kind = 0, seq = ~0u;
                if (len >= 22) __builtin_memcpy(&kind, f + 14, 4), __builtin_memcpy(&seq, f + 18, 4);
                got = kind == K_PONG && seq == r && same(f + 6, echo.b);
                n.repost(id);
            }
        }
        if (got) answered++;
        else break;
    }
    checks.check(answered == rounds, "every ping answered while flooding the sink", "%llu of %llu (%llu flood frames)",
                 answered, rounds, flooded);
    checks.check(!(n.status() & S_NEEDS_RESET), "device still fine", "status %x", n.status());
    return 0;
}

u32 run_sink(Nic& n)
{
    build(BCAST, n.mac.b, K_HELLO, 0);
    n.send(frame, sizeof frame);
    const u64 end = rdtsc() + seconds(cmdline_u64("timeout", 60));
    while (rd<u16>(RXQ + 0x2000 + 2) != QS && rdtsc() < end) {}
    const u16 got = rd<u16>(RXQ + 0x2000 + 2);
    checks.check(got == QS, "receive ring filled up", "%u of %u buffers used", got, QS);
    const u64 linger = rdtsc() + seconds(cmdline_u64("linger", 3));
    while (rdtsc() < linger) {}
    checks.check(rd<u16>(RXQ + 0x2000 + 2) == QS && !(n.status() & S_NEEDS_RESET),
                 "nothing more used, device fine", "used %u, status %x", rd<u16>(RXQ + 0x2000 + 2), n.status());
    return 0;
}

}  // namespace

u32 guest_main()
{
    Nic n;
    if (!n.probe()) {
        printf("vnet: no virtio-net function at PCI device 1\n");
        return 1;
    }
    if (!checks.check(n.start(), "device starts", "status %x", n.status())) return checks.finish();
    printf("vnet: mac %02x:%02x:%02x:%02x:%02x:%02x\n", n.mac.b[0], n.mac.b[1], n.mac.b[2], n.mac.b[3], n.mac.b[4],
           n.mac.b[5]);
    const char* mode = "";
    usize len = 0;
    cmdline_value("mode", &mode, &len);
    if (len == 4 && !__builtin_memcmp(mode, "echo", 4)) run_echo(n);
    else if (len == 7 && !__builtin_memcmp(mode, "hostile", 7)) run_hostile(n);
    else if (len == 4 && !__builtin_memcmp(mode, "sink", 4)) run_sink(n);
    else checks.check(false, "mode is echo, hostile or sink");
    return checks.finish();
}

// virtio-net on a switch (kernel/virtio/net.cpp): two NICs on one switch, each on
// its own fake guest behind a real virtio-pci transport. A frame sent by one lands
// in the other's receive buffers once, with its header; merged buffers, checksum
// completion, and everything a sender or receiver can get wrong.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "kernel/net/switch.hpp"
#include "kernel/virtio/net.hpp"
#include "kernel/virtio/pci_transport.hpp"
#include "tests/unit/virtio/fake_ring.hpp"

namespace {

using namespace virtio;
using namespace virtio::common;
using fake::BASE;
using fake::NEXT;
using fake::Ring;
using fake::WRITE;
using Region = PciTransport::Region;

constexpr u8 ACK = STATUS_ACKNOWLEDGE, DRV = STATUS_DRIVER, FOK = STATUS_FEATURES_OK, DOK = STATUS_DRIVER_OK;
constexpr u64 RXQ = BASE, TXQ = BASE + 0x4000;   // each queue's rings: desc, avail +0x1000, used +0x2000
constexpr u64 TXBUF = BASE + 0x10000, RXBUF = BASE + 0x40000;

struct Sink final : IrqSink {
    std::vector<u16> msix;
    std::string reason;
    void raise(u16 v) override { msix.push_back(v); }
    void raise_intx() override {}
    void lower_intx() override {}
    void needs_reset(const char *r) override { reason = r; }
};

// A clock that moves 5 ticks at every look.
u64 ticks = 0;
u64 now() { return ticks += 5; }

net::Mac mac(u8 last) { return net::Mac{{0x02, 0x4b, 0x45, 0, 0, last}}; }

struct Nic {
    fake::Guest g;
    NetDevice dev;
    Sink sink;
    PciTransport t;
    Ring rx{g, 16, RXQ, RXQ + 0x1000, RXQ + 0x2000};
    Ring tx{g, 16, TXQ, TXQ + 0x1000, TXQ + 0x2000};
    net::Switch *sw = nullptr;
    int port = -1;

    explicit Nic(u8 last) : dev(mac(last), 1500, now), t(dev, g.mem, sink, 3) { dev.set_transport(t); }
    void join(net::Switch &s)
    {
        sw = &s;
        port = s.attach(dev.mac(), dev);
        ASSERT_GE(port, 0);
        dev.connect(&s, port);
    }
    void wr(u32 off, u8 size, u64 v) { t.write(Region::common, off, size, v); }
    u64 rd(u32 off, u8 size) { return t.read(Region::common, off, size); }
    void queue(u16 q, const Ring &r, u16 vector)
    {
        wr(QUEUE_SELECT, 2, q);
        wr(QUEUE_SIZE, 2, r.size);
        wr(QUEUE_DESC, 4, u32(r.desc));
        wr(QUEUE_DRIVER, 4, u32(r.avail));
        wr(QUEUE_DEVICE, 4, u32(r.used));
        wr(QUEUE_MSIX_VECTOR, 2, vector);
        wr(QUEUE_ENABLE, 2, 1);
    }
    // Linux's bring-up with `features` (VERSION_1 always).
    void up(u64 features)
    {
        wr(DEVICE_STATUS, 1, 0);
        wr(DEVICE_STATUS, 1, ACK | DRV);
        features |= F_VERSION_1;
        wr(DRIVER_FEATURE_SELECT, 4, 0);
        wr(DRIVER_FEATURE, 4, u32(features));
        wr(DRIVER_FEATURE_SELECT, 4, 1);
        wr(DRIVER_FEATURE, 4, features >> 32);
        wr(DEVICE_STATUS, 1, ACK | DRV | FOK);
        ASSERT_EQ(rd(DEVICE_STATUS, 1), ACK | DRV | FOK);
        queue(NetDevice::RX, rx, 0);
        queue(NetDevice::TX, tx, 1);
        wr(DEVICE_STATUS, 1, ACK | DRV | FOK | DOK);
        ASSERT_EQ(rd(DEVICE_STATUS, 1), ACK | DRV | FOK | DOK);
    }
    void kick(u16 q) { t.write(Region::notify, q * PciTransport::NOTIFY_MULTIPLIER, 2, q); }
    // Receive buffers: n of `len` bytes each, descriptors 0..n-1.
    void post_rx(u32 n, u32 len)
    {
        for (u32 i = 0; i < n; i++) {
            rx.set(i, RXBUF + i * 0x800, len, WRITE);
            rx.offer(u16(i));
        }
    }
    // Sends `frame` with header `h` (one descriptor for the header, one for the frame).
    void send(const std::vector<u8> &frame, const NetHdr &h = {})
    {
        u8 hb[NET_HDR_BYTES] = {h.flags, h.gso_type};
        std::memcpy(hb + 6, &h.csum_start, 2);
        std::memcpy(hb + 8, &h.csum_offset, 2);
        std::memcpy(g.at(TXBUF), hb, sizeof hb);
        std::memcpy(g.at(TXBUF + 0x100), frame.data(), frame.size());
        const u16 d = u16(2 * (tx.idx % 8));
        tx.set(d, TXBUF, NET_HDR_BYTES, NEXT, u16(d + 1));
        tx.set(d + 1, TXBUF + 0x100, u32(frame.size()));
        tx.offer(d);
        kick(NetDevice::TX);
    }
    std::vector<u8> rx_bytes(u32 buffer, u32 len)
    {
        const u8 *p = g.at(RXBUF + buffer * 0x800);
        return std::vector<u8>(p, p + len);
    }
};

std::vector<u8> frame(const net::Mac &dst, const net::Mac &src, u32 len)
{
    std::vector<u8> f(len);
    std::memcpy(f.data(), dst.b, 6);
    std::memcpy(f.data() + 6, src.b, 6);
    f[12] = 0x86, f[13] = 0xdd;   // IPv6
    for (u32 i = 14; i < len; i++) f[i] = u8(i * 13 + 7);
    return f;
}

const net::Mac BCAST{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};

struct NetPair : ::testing::Test {
    net::Switch sw{1518, 1000};
    Nic a{1}, b{2};
    void SetUp() override
    {
        a.join(sw);
        b.join(sw);
    }
};

TEST_F(NetPair, ConfigSpaceHasMacLinkAndMtu)
{
    EXPECT_EQ(b.t.read(Region::device, 0, 4), 0x00454b02u);
    EXPECT_EQ(b.t.read(Region::device, 4, 2), 0x0200u);
    EXPECT_EQ(b.t.read(Region::device, 6, 2), NET_S_LINK_UP);
    EXPECT_EQ(b.t.read(Region::device, 10, 2), 1500u);
    EXPECT_TRUE(b.dev.features() & NET_F_MAC);
    EXPECT_TRUE(b.dev.features() & NET_F_MRG_RXBUF);
}

TEST_F(NetPair, BroadcastArrivesOnceWithItsHeader)
{
    a.up(0);
    b.up(0);
    b.post_rx(4, 1526);
    const auto f = frame(BCAST, mac(1), 300);
    a.send(f);
    EXPECT_EQ(a.tx.used_idx(), 1);                 // the sender's chain is back
    ASSERT_EQ(b.rx.used_idx(), 1);
    EXPECT_EQ(b.rx.used_len(0), NET_HDR_BYTES + 300);
    const auto got = b.rx_bytes(0, NET_HDR_BYTES + 300);
    EXPECT_EQ(got[0], 0);                          // flags
    EXPECT_EQ(got[10] | got[11] << 8, 1);          // num_buffers
    EXPECT_TRUE(std::equal(f.begin(), f.end(), got.begin() + NET_HDR_BYTES));
    EXPECT_EQ(b.sink.msix, std::vector<u16>{0});   // the receive queue's vector
    const auto s = sw.stats(b.port);
    EXPECT_EQ(s.rx_packets, 1u);
    EXPECT_EQ(s.rx_bytes, 300u);
    EXPECT_EQ(sw.stats(a.port).tx_packets, 1u);
    EXPECT_TRUE(a.g.guards_ok() && b.g.guards_ok());
}

TEST_F(NetPair, MergedBuffersCarryALargeFrame)
{
    a.up(0);
    b.up(NET_F_MRG_RXBUF);
    b.post_rx(8, 512);
    const auto f = frame(mac(2), mac(1), 1400);
    a.send(f);
    ASSERT_EQ(b.rx.used_idx(), 3);                 // 12 + 1400 bytes in 512-byte buffers
    EXPECT_EQ(b.rx.used_len(0), 512u);
    EXPECT_EQ(b.rx.used_len(1), 512u);
    EXPECT_EQ(b.rx.used_len(2), NET_HDR_BYTES + 1400 - 1024);
    const auto h = b.rx_bytes(0, NET_HDR_BYTES);
    EXPECT_EQ(h[10] | h[11] << 8, 3);
    std::vector<u8> got;
    for (u32 i = 0; i < 3; i++) {
        const auto part = b.rx_bytes(i, b.rx.used_len(u16(i)));
        got.insert(got.end(), part.begin(), part.end());
    }
    EXPECT_TRUE(std::equal(f.begin(), f.end(), got.begin() + NET_HDR_BYTES));
}

TEST_F(NetPair, WithoutMergeAFrameTooBigForOneBufferIsDroppedAndTheBufferKept)
{
    a.up(0);
    b.up(0);
    b.post_rx(2, 512);
    a.send(frame(mac(2), mac(1), 1000));
    EXPECT_EQ(b.rx.used_idx(), 0);
    EXPECT_EQ(b.dev.stats().rx_too_big, 1u);
    EXPECT_EQ(sw.stats(b.port).drop_rx_error, 1u);
    a.send(frame(mac(2), mac(1), 400));            // the next one that fits takes the first buffer
    ASSERT_EQ(b.rx.used_idx(), 1);
    EXPECT_EQ(b.rx.used_id(0), 0u);
}

TEST_F(NetPair, NoReceiveBuffersDropsWithoutStallingTheSender)
{
    a.up(0);
    b.up(0);
    for (int i = 0; i < 5; i++) a.send(frame(mac(2), mac(1), 100));
    EXPECT_EQ(a.tx.used_idx(), 5);
    EXPECT_EQ(sw.stats(b.port).drop_rx_full, 5u);
    EXPECT_EQ(sw.stats(b.port).rx_packets, 0u);
}

TEST_F(NetPair, AReceiverNotYetDrivenLosesTheFrame)
{
    a.up(0);
    b.post_rx(2, 1526);
    a.send(frame(mac(2), mac(1), 100));
    EXPECT_EQ(a.tx.used_idx(), 1);
    EXPECT_EQ(b.rx.used_idx(), 0);
    EXPECT_EQ(sw.stats(b.port).drop_rx_full, 1u);
    EXPECT_EQ(b.rd(DEVICE_STATUS, 1), 0u);         // and nothing happened to it
}

TEST_F(NetPair, ForgedSourceIsDroppedAndCounted)
{
    a.up(0);
    b.up(0);
    b.post_rx(2, 1526);
    a.send(frame(mac(2), mac(9), 100));
    EXPECT_EQ(a.tx.used_idx(), 1);
    EXPECT_EQ(b.rx.used_idx(), 0);
    EXPECT_EQ(sw.stats(a.port).drop_spoofed, 1u);
}

TEST_F(NetPair, MalformedTransmitsAreDroppedNotFatal)
{
    a.up(0);
    b.up(0);
    b.post_rx(4, 1526);
    a.send(std::vector<u8>(6, 0xff));              // shorter than an Ethernet header
    NetHdr gso;
    gso.gso_type = 1;
    a.send(frame(mac(2), mac(1), 100), gso);       // GSO not offered
    NetHdr csum;
    csum.flags = NET_HDR_F_NEEDS_CSUM;
    csum.csum_start = 14;
    csum.csum_offset = 6;
    a.send(frame(mac(2), mac(1), 100), csum);      // NEEDS_CSUM without CSUM
    EXPECT_EQ(a.tx.used_idx(), 3);
    EXPECT_EQ(a.dev.stats().tx_malformed, 3u);
    EXPECT_EQ(b.rx.used_idx(), 0);
    EXPECT_EQ(a.rd(DEVICE_STATUS, 1) & STATUS_NEEDS_RESET, 0u);
    a.send(frame(mac(2), mac(1), 100));            // and the NIC still works
    EXPECT_EQ(b.rx.used_idx(), 1);
}

// A UDP-like payload: 16-bit words from csum_start, with the checksum field seeded
// as a stack would (here: 0), completed by Keel for a receiver without GUEST_CSUM.
TEST_F(NetPair, PartialChecksumIsCompletedForAReceiverWithoutGuestCsum)
{
    a.up(NET_F_CSUM);
    b.up(0);
    b.post_rx(2, 1526);
    auto f = frame(mac(2), mac(1), 201);           // odd length: the last byte is padded
    f[54 + 6] = f[54 + 7] = 0;
    NetHdr h;
    h.flags = NET_HDR_F_NEEDS_CSUM;
    h.csum_start = 54;
    h.csum_offset = 6;
    a.send(f, h);
    ASSERT_EQ(b.rx.used_idx(), 1);
    const auto got = b.rx_bytes(0, NET_HDR_BYTES + 201);
    EXPECT_EQ(got[0], 0);                          // a complete frame: no flag
    u32 sum = 0;
    for (u32 i = 54; i < 201; i += 2) sum += u32(got[NET_HDR_BYTES + i]) << 8 | (i + 1 < 201 ? got[NET_HDR_BYTES + i + 1] : 0);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    EXPECT_EQ(sum, 0xffffu);                       // the completed sum verifies
    EXPECT_EQ(b.dev.stats().csum_completed, 1u);
    for (u32 i = 0; i < 201; i++)
        if (i != 60 && i != 61) ASSERT_EQ(got[NET_HDR_BYTES + i], f[i]) << i;
}

TEST_F(NetPair, PartialChecksumPassesToAReceiverWithGuestCsum)
{
    a.up(NET_F_CSUM);
    b.up(NET_F_GUEST_CSUM);
    b.post_rx(2, 1526);
    NetHdr h;
    h.flags = NET_HDR_F_NEEDS_CSUM;
    h.csum_start = 54;
    h.csum_offset = 6;
    a.send(frame(mac(2), mac(1), 200), h);
    ASSERT_EQ(b.rx.used_idx(), 1);
    const auto got = b.rx_bytes(0, NET_HDR_BYTES);
    EXPECT_EQ(got[0], NET_HDR_F_NEEDS_CSUM);
    EXPECT_EQ(got[6] | got[7] << 8, 54);
    EXPECT_EQ(got[8] | got[9] << 8, 6);
    EXPECT_EQ(b.dev.stats().csum_completed, 0u);
}

// A receive ring whose buffer lies outside the receiver's RAM: that device needs a
// reset; the sender and the switch go on.
TEST_F(NetPair, ABrokenReceiveRingFailsOnlyItsOwner)
{
    a.up(0);
    b.up(0);
    b.rx.set(0, 0x10000000, 1526, WRITE);
    b.rx.offer(0);
    a.send(frame(mac(2), mac(1), 100));
    EXPECT_EQ(a.tx.used_idx(), 1);
    EXPECT_TRUE(b.rd(DEVICE_STATUS, 1) & STATUS_NEEDS_RESET);
    EXPECT_NE(b.sink.reason.find("outside"), std::string::npos) << b.sink.reason;
    EXPECT_EQ(a.rd(DEVICE_STATUS, 1) & STATUS_NEEDS_RESET, 0u);
}

} // namespace

namespace {

// A receiver that offers 1-byte buffers: a frame would need more than MAX_MERGE of
// them; it is dropped (its loss), the buffers stay, and the sender is not held up.
TEST_F(NetPair, TooManyTinyBuffersDropTheFrameNotTheRing)
{
    a.up(0);
    b.up(NET_F_MRG_RXBUF);
    b.post_rx(16, 1);
    a.send(frame(mac(2), mac(1), 100));
    EXPECT_EQ(a.tx.used_idx(), 1);
    EXPECT_EQ(b.rx.used_idx(), 0);
    EXPECT_EQ(b.dev.stats().rx_too_big, 1u);
    EXPECT_EQ(b.rd(DEVICE_STATUS, 1) & STATUS_NEEDS_RESET, 0u);
}

} // namespace

namespace {

// The receiver gets the Ethernet header the switch checked, not what the sender's
// buffer holds by the time it is copied (another vCPU of the sender may rewrite it).
struct Rewriting final : net::FrameSource {
    const net::FrameSource *inner;
    bool read(u32 off, void *dst, u32 n) const override
    {
        if (!inner->read(off, dst, n)) return false;
        for (u32 i = 0; i < n; i++)
            if (off + i >= 6 && off + i < 12) static_cast<u8 *>(dst)[i] = 0x66;   // a forged source
        return true;
    }
};

struct Direct final : net::FrameSource {
    std::vector<u8> b;
    bool read(u32 off, void *dst, u32 n) const override
    {
        if (u64(off) + n > b.size()) return false;
        std::memcpy(dst, b.data() + off, n);
        return true;
    }
};

TEST_F(NetPair, TheCheckedHeaderIsWhatArrives)
{
    b.up(0);
    b.post_rx(2, 1526);
    Direct bytes;
    bytes.b = frame(mac(2), mac(1), 100);
    Rewriting src;
    src.inner = &bytes;
    net::Frame f;
    std::memcpy(f.header, bytes.b.data(), net::ETH_HEADER);
    f.len = 100;
    f.src = &src;
    const NetHdr meta;
    f.meta = &meta;
    ASSERT_EQ(b.dev.deliver(f), net::Delivery::ok);
    const auto got = b.rx_bytes(0, NET_HDR_BYTES + 100);
    EXPECT_TRUE(std::equal(bytes.b.begin(), bytes.b.begin() + 14, got.begin() + NET_HDR_BYTES));
}

} // namespace

namespace {

// Transmit notifies are timed on the device's clock (the stats' service time).
TEST_F(NetPair, TransmitServiceTimeFromTheClock)
{
    a.up(0);
    b.up(0);
    b.post_rx(2, 1526);
    const u64 before = a.dev.stats().service_ticks;
    a.send(frame(mac(2), mac(1), 100));   // looks: start, the switch's time, end
    EXPECT_EQ(a.dev.stats().service_ticks - before, 10u);
    EXPECT_EQ(b.dev.stats().service_ticks, 0u);   // receiving is the sender's time
}

} // namespace

// The virtual switch (kernel/net/switch.cpp): learning with aging, flooding,
// anti-spoofing, receivers without room, lengths, and that two switches (two
// networks) never exchange a frame.
#include <gtest/gtest.h>

#include <cstring>
#include <thread>
#include <vector>

#include "kernel/net/switch.hpp"

namespace {

using net::Delivery;
using net::Mac;

Mac mac(u8 last) { return Mac{{0x02, 0, 0, 0, 0, last}}; }
const Mac BCAST{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};

struct Bytes final : net::FrameSource {
    std::vector<u8> b;
    bool read(u32 off, void *dst, u32 n) const override
    {
        if (u64(off) + n > b.size()) return false;
        std::memcpy(dst, b.data() + off, n);
        return true;
    }
};

// Records what it receives; answers `answer`.
struct Sink final : net::PortSink {
    std::vector<std::vector<u8>> got;
    Delivery answer = Delivery::ok;
    Delivery deliver(const net::Frame &f) override
    {
        if (answer != Delivery::ok) return answer;
        std::vector<u8> v(f.len);
        EXPECT_TRUE(f.src->read(0, v.data(), f.len));
        got.push_back(v);
        return Delivery::ok;
    }
};

struct Sent {
    Bytes bytes;
    net::Frame f;
    Sent(const Mac &dst, const Mac &src, u32 len = 60, u8 fill = 0x5a)
    {
        bytes.b.assign(len, fill);
        if (len >= 12) {
            std::memcpy(bytes.b.data(), dst.b, 6);
            std::memcpy(bytes.b.data() + 6, src.b, 6);
        }
        std::memcpy(f.header, bytes.b.data(), len < 14 ? len : 14);
        f.len = len;
        f.src = &bytes;
    }
};

struct Three : ::testing::Test {
    net::Switch sw{1518, 100};
    Sink s[3];
    int p[3];
    void SetUp() override
    {
        for (int i = 0; i < 3; i++) p[i] = sw.attach(mac(u8(i + 1)), s[i]);
    }
    u32 send(int from, const Mac &dst, u64 now = 0, u32 len = 60)
    {
        Sent x(dst, mac(u8(from + 1)), len);
        return sw.send(p[from], x.f, now);
    }
};

TEST_F(Three, BroadcastGoesToEveryoneElse)
{
    EXPECT_EQ(send(0, BCAST), 2u);
    EXPECT_EQ(s[0].got.size(), 0u);
    EXPECT_EQ(s[1].got.size(), 1u);
    EXPECT_EQ(s[2].got.size(), 1u);
    EXPECT_EQ(s[1].got[0].size(), 60u);
    EXPECT_EQ(sw.stats(p[0]).tx_packets, 1u);
    EXPECT_EQ(sw.stats(p[0]).tx_bytes, 60u);
    EXPECT_EQ(sw.stats(p[1]).rx_packets, 1u);
    EXPECT_EQ(sw.stats(p[2]).rx_bytes, 60u);
}

TEST_F(Three, MulticastIsFlooded)
{
    EXPECT_EQ(send(1, Mac{{0x33, 0x33, 0, 0, 0, 1}}), 2u);
    EXPECT_EQ(s[0].got.size() + s[2].got.size(), 2u);
}

TEST_F(Three, UnknownUnicastIsFloodedThenLearnedUnicastGoesToOnePort)
{
    EXPECT_EQ(send(0, mac(2)), 2u);    // 2 has not spoken: flooded
    EXPECT_EQ(s[2].got.size(), 1u);
    EXPECT_EQ(send(1, mac(1)), 1u);    // 1 is known (it sent): only to it; 2 is learned now
    EXPECT_EQ(s[0].got.size(), 1u);
    EXPECT_EQ(s[2].got.size(), 1u);
    EXPECT_EQ(send(0, mac(2)), 1u);    // now straight to 2
    EXPECT_EQ(s[1].got.size(), 2u);
    EXPECT_EQ(s[2].got.size(), 1u);
    EXPECT_EQ(sw.learned(0), 2u);
}

TEST_F(Three, AFrameToItselfIsFiltered)
{
    send(0, BCAST);
    EXPECT_EQ(send(0, mac(1)), 0u);
    for (auto &x : s) EXPECT_LE(x.got.size(), 1u);
}

TEST_F(Three, AgedEntriesAreFloodedAgain)
{
    send(1, BCAST, 0);                 // learn 2 at t=0
    EXPECT_EQ(send(0, mac(2), 100), 1u);
    EXPECT_EQ(send(0, mac(2), 101), 2u);   // older than aging (100): unknown again
    EXPECT_EQ(sw.learned(101), 1u);        // only port 0's own, learned at 100 and 101
}

TEST_F(Three, ForgedSourceIsDroppedAndCounted)
{
    for (const Mac &src : {mac(2), mac(9), BCAST, Mac{{0x01, 0, 0x5e, 0, 0, 1}}}) {
        Sent x(BCAST, src);
        EXPECT_EQ(sw.send(p[0], x.f, 0), 0u);
    }
    EXPECT_EQ(sw.stats(p[0]).drop_spoofed, 4u);
    EXPECT_EQ(sw.stats(p[0]).tx_packets, 0u);
    EXPECT_TRUE(s[1].got.empty() && s[2].got.empty());
    // And it learned nothing from them: port 2's address is not moved to port 0.
    send(1, BCAST);
    Sent back(mac(2), mac(3));
    EXPECT_EQ(sw.send(p[2], back.f, 0), 1u);
    EXPECT_EQ(s[1].got.size(), 1u);
}

TEST_F(Three, LengthsOutsideAHeaderAndMaxFrameAreDropped)
{
    EXPECT_EQ(send(0, BCAST, 0, 13), 0u);
    EXPECT_EQ(send(0, BCAST, 0, 1519), 0u);
    EXPECT_EQ(sw.stats(p[0]).drop_malformed, 2u);
    EXPECT_EQ(send(0, BCAST, 0, 14), 2u);
    EXPECT_EQ(send(0, BCAST, 0, 1518), 2u);
}

TEST_F(Three, AFullReceiverLosesOnlyItsOwnFrames)
{
    s[1].answer = Delivery::no_room;
    s[2].answer = Delivery::error;
    EXPECT_EQ(send(0, BCAST), 0u);
    s[2].answer = Delivery::ok;
    for (int i = 0; i < 100; i++) EXPECT_EQ(send(0, BCAST), 1u);
    EXPECT_EQ(sw.stats(p[1]).drop_rx_full, 101u);
    EXPECT_EQ(sw.stats(p[2]).drop_rx_error, 1u);
    EXPECT_EQ(sw.stats(p[2]).rx_packets, 100u);
    EXPECT_EQ(sw.stats(p[0]).tx_packets, 101u);
}

TEST_F(Three, DetachForgetsThePortAndItsAddresses)
{
    send(1, BCAST);
    sw.detach(p[1]);
    EXPECT_EQ(send(0, mac(2)), 1u);    // not to the detached port; unknown: flooded to 2 only
    EXPECT_EQ(s[1].got.size(), 0u);
    EXPECT_EQ(sw.learned(0), 1u);
    Sent x(BCAST, mac(2));
    EXPECT_EQ(sw.send(p[1], x.f, 0), 0u);   // a detached port sends nothing
    EXPECT_EQ(sw.send(-1, x.f, 0), 0u);
    EXPECT_EQ(sw.send(net::Switch::MAX_PORTS, x.f, 0), 0u);
    // Its index is reused, with fresh counters.
    Sink again;
    EXPECT_EQ(sw.attach(mac(7), again), p[1]);
    EXPECT_EQ(sw.stats(p[1]).rx_packets, 0u);
}

TEST(Switch, PortsRunOut)
{
    net::Switch sw;
    Sink s;
    for (u32 i = 0; i < net::Switch::MAX_PORTS; i++) EXPECT_EQ(sw.attach(mac(u8(i)), s), int(i));
    EXPECT_EQ(sw.attach(mac(99), s), -1);
}

TEST(Switch, AFullTableReplacesTheOldestEntry)
{
    net::Switch sw(1518, 1u << 30);
    Sink s[2];
    const int a = sw.attach(mac(1), s[0]);
    sw.attach(mac(2), s[1]);

    for (u64 t = 0; t < net::Switch::TABLE + 10; t++) {
        Sent x(BCAST, mac(1));
        sw.send(a, x.f, t);
    }
    EXPECT_EQ(sw.learned(1000), 1u);   // one address, re-learned in place: never more entries than addresses
}

// Two networks are two switches: nothing connects them.
TEST(Switch, TwoNetworksNeverExchangeAFrame)
{
    net::Switch lan, dmz;
    Sink a, b, c, d;
    const int pa = lan.attach(mac(1), a);
    lan.attach(mac(2), b);
    const int pc = dmz.attach(mac(3), c);
    dmz.attach(mac(4), d);
    Sent x(BCAST, mac(1));
    EXPECT_EQ(lan.send(pa, x.f, 0), 1u);
    Sent y(mac(1), mac(3));
    EXPECT_EQ(dmz.send(pc, y.f, 0), 1u);   // flooded within dmz only
    EXPECT_EQ(a.got.size(), 0u);
    EXPECT_EQ(b.got.size(), 1u);
    EXPECT_EQ(d.got.size(), 1u);
    EXPECT_EQ(c.got.size(), 0u);
}

// Senders on several threads at once (several vCPUs): every frame is counted once.
TEST(Switch, ConcurrentSendersAreCountedExactly)
{
    net::Switch sw;
    Sink s[4];
    int p[4];
    for (int i = 0; i < 4; i++) p[i] = sw.attach(mac(u8(i + 1)), s[i]);
    s[3].answer = Delivery::no_room;
    std::vector<std::thread> t;
    for (int i = 0; i < 3; i++)
        t.emplace_back([&, i] {
            for (int k = 0; k < 2000; k++) {
                Sent x(mac(4), mac(u8(i + 1)));
                sw.send(p[i], x.f, 0);
            }
        });
    for (auto &x : t) x.join();
    EXPECT_EQ(sw.stats(p[3]).drop_rx_full, 6000u);
    for (int i = 0; i < 3; i++) EXPECT_EQ(sw.stats(p[i]).tx_packets, 2000u);
}

} // namespace

namespace {

TEST(Switch, AttachRefusesMulticastZeroAndTakenMacs)
{
    net::Switch sw;
    Sink s;
    EXPECT_EQ(sw.attach(BCAST, s), -1);
    EXPECT_EQ(sw.attach(Mac{{0x33, 0x33, 0, 0, 0, 1}}, s), -1);
    EXPECT_EQ(sw.attach(Mac{{0, 0, 0, 0, 0, 0}}, s), -1);
    EXPECT_EQ(sw.attach(mac(1), s), 0);
    EXPECT_EQ(sw.attach(mac(1), s), -1);
    sw.detach(0);
    EXPECT_EQ(sw.attach(mac(1), s), 0);
}

} // namespace

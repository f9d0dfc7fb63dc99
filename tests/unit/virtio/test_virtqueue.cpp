// The split virtqueue engine (kernel/virtio/virtqueue.cpp): chains direct and
// indirect, the used ring, notification suppression, index wrap-around, and each
// malformed ring or chain stopping the queue with its own reason and without a
// byte written outside the guest's RAM (or into the used ring).
#include <gtest/gtest.h>

#include "tests/unit/virtio/fake_ring.hpp"

namespace {

using namespace virtio;
using fake::BUF;
using fake::Guest;
using fake::INDIRECT;
using fake::NEXT;
using fake::Ring;
using fake::WRITE;

constexpr u64 ALL = F_VERSION_1 | F_INDIRECT_DESC | F_EVENT_IDX;

TEST(Virtqueue, EnableChecksSizeAlignmentAndRam)
{
    Guest g;
    Virtqueue vq;
    for (u32 bad : {0u, 3u, 24u, 65536u}) {
        Ring r(g, bad);
        EXPECT_FALSE(r.setup(vq, ALL)) << bad;
        EXPECT_EQ(vq.error(), VqError::bad_size) << bad;
        EXPECT_FALSE(vq.enabled());
    }
    struct Case {
        u64 d, a, u;
        VqError e;
    } cases[] = {
        {fake::DESC + 8, fake::AVAIL, fake::USED, VqError::ring_unaligned},
        {fake::DESC, fake::AVAIL + 1, fake::USED, VqError::ring_unaligned},
        {fake::DESC, fake::AVAIL, fake::USED + 2, VqError::ring_unaligned},
        {0x1000, fake::AVAIL, fake::USED, VqError::ring_outside_ram},
        {fake::DESC, fake::BASE + fake::SIZE - 8, fake::USED, VqError::ring_outside_ram},   // straddles the end
        {fake::DESC, fake::AVAIL, fake::BASE + fake::SIZE - 4, VqError::ring_outside_ram},
        {fake::DESC, fake::AVAIL, ~0ull - 3, VqError::ring_outside_ram},                     // wraps
    };
    for (const Case &c : cases) {
        Ring r(g, 16, c.d, c.a, c.u);
        EXPECT_FALSE(r.setup(vq, ALL));
        EXPECT_EQ(vq.error(), c.e) << vq_error_text(vq.error());
    }
    Ring ok(g, 32768);
    EXPECT_TRUE(ok.setup(vq, ALL));
    Ring one(g, 1);
    EXPECT_TRUE(one.setup(vq, ALL));
    EXPECT_TRUE(g.guards_ok());
}

TEST(Virtqueue, PopsAChainAndPushesItBack)
{
    Guest g;
    Ring r(g, 8);
    Virtqueue vq;
    ASSERT_TRUE(r.setup(vq, ALL));
    Chain c;
    EXPECT_FALSE(vq.pop(c));   // nothing offered yet

    r.set(5, BUF, 16, NEXT, 2);
    r.set(2, BUF + 0x100, 512, NEXT | WRITE, 7);
    r.set(7, BUF + 0x400, 1, WRITE);
    r.offer(5);
    ASSERT_TRUE(vq.pop(c));
    EXPECT_EQ(c.head, 5);
    ASSERT_EQ(c.n, 3);
    EXPECT_EQ(c.n_readable, 1);
    EXPECT_EQ(c.readable, 16u);
    EXPECT_EQ(c.writable, 513u);
    EXPECT_EQ(c.seg[0].gpa, BUF);
    EXPECT_FALSE(c.seg[0].writable);
    EXPECT_EQ(c.seg[1].gpa, BUF + 0x100);
    EXPECT_EQ(c.seg[1].len, 512u);
    EXPECT_TRUE(c.seg[2].writable);
    EXPECT_FALSE(vq.pop(c));

    EXPECT_EQ(r.used_idx(), 0);
    ASSERT_TRUE(vq.push(5, 513));
    EXPECT_EQ(r.used_idx(), 1);
    EXPECT_EQ(r.used_id(0), 5u);
    EXPECT_EQ(r.used_len(0), 513u);
    EXPECT_EQ(vq.error(), VqError::none);

    // A head the device never had is its own bug: the queue stops.
    EXPECT_FALSE(vq.push(8, 0));
    EXPECT_EQ(vq.error(), VqError::bad_push);
    EXPECT_EQ(r.used_idx(), 1);
}

TEST(Virtqueue, IndirectTableAfterDirectDescriptors)
{
    Guest g;
    Ring r(g, 4);
    Virtqueue vq;
    ASSERT_TRUE(r.setup(vq, ALL));
    const u64 table = BUF + 0x1000;
    Ring::put_desc(g, table, 0, BUF + 0x10, 8, NEXT, 2);   // next indices are the table's own
    Ring::put_desc(g, table, 1, BUF + 0x30, 1, WRITE, 0);
    Ring::put_desc(g, table, 2, BUF + 0x20, 4096, NEXT | WRITE, 1);
    r.set(0, BUF, 8, NEXT, 3);
    r.set(3, table, 3 * 16, INDIRECT | WRITE);              // WRITE on the table itself is ignored
    r.offer(0);
    Chain c;
    ASSERT_TRUE(vq.pop(c));
    ASSERT_EQ(c.n, 4);
    EXPECT_EQ(c.n_readable, 2);
    EXPECT_EQ(c.seg[1].gpa, BUF + 0x10);
    EXPECT_EQ(c.seg[2].gpa, BUF + 0x20);
    EXPECT_EQ(c.seg[3].gpa, BUF + 0x30);
    EXPECT_EQ(c.readable, 16u);
    EXPECT_EQ(c.writable, 4097u);

    // An indirect table may be longer than the queue (Linux builds them so).
    for (u32 i = 0; i < Chain::MAX; i++)
        Ring::put_desc(g, table, i, BUF, 1, i + 1 < Chain::MAX ? NEXT : 0, u16(i + 1));
    r.set(1, table, Chain::MAX * 16, INDIRECT);
    r.offer(1);
    ASSERT_TRUE(vq.pop(c));
    EXPECT_EQ(c.n, Chain::MAX);
    EXPECT_EQ(vq.error(), VqError::none);
}

TEST(Virtqueue, IndicesWrapAround)
{
    Guest g;
    Ring r(g, 4);
    Virtqueue vq;
    ASSERT_TRUE(r.setup(vq, 0));
    r.set(0, BUF, 4, WRITE);
    r.set(1, BUF, 4, WRITE);
    Chain c;
    for (u32 i = 0; i < 70000; i++) {
        r.offer(u16(i & 1));
        ASSERT_TRUE(vq.pop(c)) << i;
        ASSERT_EQ(c.head, i & 1);
        ASSERT_TRUE(vq.push(c.head, i));
    }
    EXPECT_EQ(r.used_idx(), u16(70000));
    EXPECT_EQ(r.used_len(u16(69999)), 69999u);
}

TEST(Virtqueue, EventIdxDecidesInterrupts)
{
    Guest g;
    Ring r(g, 8);
    Virtqueue vq;
    ASSERT_TRUE(r.setup(vq, ALL));
    Chain c;
    auto round = [&](unsigned n) {
        for (unsigned i = 0; i < n; i++) {
            r.set(i, BUF, 1, WRITE);
            r.offer(u16(i));
            ASSERT_TRUE(vq.pop(c));
            ASSERT_TRUE(vq.push(c.head, 1));
        }
    };
    EXPECT_FALSE(vq.needs_notify());    // nothing pushed
    r.set_used_event(0);
    round(1);                           // used idx 0 -> 1 passes event 0
    EXPECT_TRUE(vq.needs_notify());
    EXPECT_FALSE(vq.needs_notify());    // nothing new
    round(2);                           // 1 -> 3: event 0 already passed
    EXPECT_FALSE(vq.needs_notify());
    r.set_used_event(4);
    round(1);                           // 3 -> 4: not past 4 yet
    EXPECT_FALSE(vq.needs_notify());
    round(2);                           // 4 -> 6 passes 4
    EXPECT_TRUE(vq.needs_notify());
    // With EVENT_IDX the driver's NO_INTERRUPT flag means nothing.
    r.set_avail_flags(1);
    r.set_used_event(6);
    round(1);
    EXPECT_TRUE(vq.needs_notify());

    // Driver -> device: avail_event in the used ring; the NO_NOTIFY flag is not used.
    vq.set_avail_event(0x1234);
    EXPECT_EQ(r.avail_event(), 0x1234);
    vq.set_no_notify(true);
    EXPECT_EQ(r.used_flags(), 0);
}

TEST(Virtqueue, NoInterruptFlagWithoutEventIdx)
{
    Guest g;
    Ring r(g, 8);
    Virtqueue vq;
    ASSERT_TRUE(r.setup(vq, F_VERSION_1));
    Chain c;
    r.set(0, BUF, 1, WRITE);
    r.set_used_event(0xffff);           // ignored without EVENT_IDX
    r.offer(0);
    ASSERT_TRUE(vq.pop(c));
    ASSERT_TRUE(vq.push(0, 1));
    r.set_avail_flags(1);               // VRING_AVAIL_F_NO_INTERRUPT
    EXPECT_FALSE(vq.needs_notify());
    r.offer(0);
    ASSERT_TRUE(vq.pop(c));
    ASSERT_TRUE(vq.push(0, 1));
    r.set_avail_flags(0);
    EXPECT_TRUE(vq.needs_notify());
    EXPECT_FALSE(vq.needs_notify());

    vq.set_no_notify(true);
    EXPECT_EQ(r.used_flags(), 1);
    vq.set_no_notify(false);
    EXPECT_EQ(r.used_flags(), 0);
    vq.set_avail_event(7);              // needs EVENT_IDX: not written
    EXPECT_EQ(r.avail_event(), 0);

    EXPECT_FALSE(vq.has_avail());
    r.offer(0);
    EXPECT_TRUE(vq.has_avail());
}

// One malformed chain per case, offered on a fresh 8-entry queue.
struct Malformed {
    const char *name;
    VqError expect;
    u64 features;
    void (*build)(Guest &, Ring &);
};

const u64 TABLE = BUF + 0x2000;

const Malformed MALFORMED[] = {
    {"loop", VqError::chain_loop, ALL, [](Guest &, Ring &r) {
         r.set(0, BUF, 4, NEXT, 1);
         r.set(1, BUF, 4, NEXT, 0);
         r.offer(0);
     }},
    {"self loop", VqError::chain_loop, ALL, [](Guest &, Ring &r) {
         r.set(3, BUF, 4, NEXT, 3);
         r.offer(3);
     }},
    {"next beyond the queue", VqError::desc_index, ALL, [](Guest &, Ring &r) {
         r.set(0, BUF, 4, NEXT, 8);
         r.offer(0);
     }},
    {"head beyond the queue", VqError::head_index, ALL, [](Guest &, Ring &r) { r.offer(8); }},
    {"avail idx jumps", VqError::avail_idx_jump, ALL, [](Guest &g, Ring &r) {
         r.set(0, BUF, 4);
         r.offer(0);
         g.put(r.avail + 2, 9, 2);
     }},
    {"buffer outside RAM", VqError::buffer_outside_ram, ALL, [](Guest &, Ring &r) {
         r.set(0, 0x1000, 4, WRITE);
         r.offer(0);
     }},
    {"buffer past the end of RAM", VqError::buffer_outside_ram, ALL, [](Guest &, Ring &r) {
         r.set(0, fake::BASE + fake::SIZE - 2, 4, WRITE);
         r.offer(0);
     }},
    {"address wraps", VqError::addr_wrap, ALL, [](Guest &, Ring &r) {
         r.set(0, ~0ull - 1, 4, WRITE);
         r.offer(0);
     }},
    {"readable after writable", VqError::read_after_write, ALL, [](Guest &, Ring &r) {
         r.set(0, BUF, 4, WRITE | NEXT, 1);
         r.set(1, BUF, 4, 0);
         r.offer(0);
     }},
    {"too many bytes", VqError::chain_too_big, ALL, [](Guest &g, Ring &r) {
         // 129 x 512 KiB = 64.5 MiB, every piece in RAM.
         for (u32 i = 0; i < 129; i++) Ring::put_desc(g, TABLE, i, fake::BASE, 512 * 1024, i < 128 ? NEXT : 0, u16(i + 1));
         r.set(0, TABLE, 129 * 16, INDIRECT);
         r.offer(0);
     }},
    {"indirect not negotiated", VqError::indirect_not_negotiated, F_VERSION_1, [](Guest &g, Ring &r) {
         Ring::put_desc(g, TABLE, 0, BUF, 4, 0, 0);
         r.set(0, TABLE, 16, INDIRECT);
         r.offer(0);
     }},
    {"indirect with next", VqError::indirect_with_next, ALL, [](Guest &g, Ring &r) {
         Ring::put_desc(g, TABLE, 0, BUF, 4, 0, 0);
         r.set(0, TABLE, 16, INDIRECT | NEXT, 1);
         r.set(1, BUF, 4, 0);
         r.offer(0);
     }},
    {"nested indirect", VqError::indirect_nested, ALL, [](Guest &g, Ring &r) {
         Ring::put_desc(g, TABLE, 0, BUF, 4, NEXT, 1);
         Ring::put_desc(g, TABLE, 1, TABLE, 32, INDIRECT, 0);
         r.set(0, TABLE, 32, INDIRECT);
         r.offer(0);
     }},
    {"indirect length zero", VqError::indirect_len, ALL, [](Guest &, Ring &r) {
         r.set(0, TABLE, 0, INDIRECT);
         r.offer(0);
     }},
    {"indirect length not a multiple of 16", VqError::indirect_len, ALL, [](Guest &, Ring &r) {
         r.set(0, TABLE, 24, INDIRECT);
         r.offer(0);
     }},
    {"indirect table outside RAM", VqError::indirect_outside_ram, ALL, [](Guest &, Ring &r) {
         r.set(0, fake::BASE + fake::SIZE - 16, 32, INDIRECT);
         r.offer(0);
     }},
    {"indirect table too long", VqError::chain_too_long, ALL, [](Guest &, Ring &r) {
         r.set(0, TABLE, (Chain::MAX + 1) * 16, INDIRECT);
         r.offer(0);
     }},
    {"too many descriptors in all", VqError::chain_too_long, ALL, [](Guest &g, Ring &r) {
         for (u32 i = 0; i < Chain::MAX; i++) Ring::put_desc(g, TABLE, i, BUF, 1, i + 1 < Chain::MAX ? NEXT : 0, u16(i + 1));
         r.set(0, BUF, 1, NEXT, 1);
         r.set(1, TABLE, Chain::MAX * 16, INDIRECT);
         r.offer(0);
     }},
    {"indirect loop", VqError::chain_loop, ALL, [](Guest &g, Ring &r) {
         Ring::put_desc(g, TABLE, 0, BUF, 4, NEXT, 1);
         Ring::put_desc(g, TABLE, 1, BUF, 4, NEXT, 0);
         r.set(0, TABLE, 32, INDIRECT);
         r.offer(0);
     }},
    {"indirect next beyond the table", VqError::desc_index, ALL, [](Guest &g, Ring &r) {
         Ring::put_desc(g, TABLE, 0, BUF, 4, NEXT, 2);
         Ring::put_desc(g, TABLE, 2, BUF, 4, 0, 0);   // in RAM, but not in this 2-entry table
         r.set(0, TABLE, 32, INDIRECT);
         r.offer(0);
     }},
    {"indirect readable after writable", VqError::read_after_write, ALL, [](Guest &g, Ring &r) {
         Ring::put_desc(g, TABLE, 0, BUF, 4, NEXT, 1);
         Ring::put_desc(g, TABLE, 1, BUF, 4, 0, 0);
         r.set(0, BUF, 4, WRITE | NEXT, 1);
         r.set(1, TABLE, 32, INDIRECT);
         r.offer(0);
     }},
};

TEST(Virtqueue, EachMalformedChainStopsTheQueueWithItsReason)
{
    for (const Malformed &m : MALFORMED) {
        SCOPED_TRACE(m.name);
        Guest g;
        Ring r(g, 8);
        Virtqueue vq;
        ASSERT_TRUE(r.setup(vq, m.features));
        m.build(g, r);
        Chain c;
        EXPECT_FALSE(vq.pop(c));
        EXPECT_EQ(vq.error(), m.expect) << vq_error_text(vq.error());
        EXPECT_FALSE(vq.enabled());
        // Stopped for good: nothing more is taken or returned, nothing written.
        r.set(0, BUF, 4, WRITE);
        r.offer(0);
        EXPECT_FALSE(vq.pop(c));
        EXPECT_FALSE(vq.push(0, 4));
        EXPECT_FALSE(vq.needs_notify());
        EXPECT_EQ(r.used_idx(), 0);
        EXPECT_EQ(vq.error(), m.expect);
        EXPECT_TRUE(g.guards_ok());
        // Until the transport resets it.
        ASSERT_TRUE(r.setup(vq, m.features));
        EXPECT_EQ(vq.error(), VqError::none);
    }
}

TEST(Virtqueue, ErrorTextsAreDistinct)
{
    for (unsigned a = 0; a <= unsigned(VqError::bad_push); a++)
        for (unsigned b = a + 1; b <= unsigned(VqError::bad_push); b++)
            EXPECT_STRNE(vq_error_text(VqError(a)), vq_error_text(VqError(b)));
}

TEST(Virtqueue, ALiveQueueIgnoresReprogramming)
{
    Guest g;
    Ring r(g, 8);
    Virtqueue vq;
    ASSERT_TRUE(r.setup(vq, ALL));
    vq.set_size(3);
    vq.set_rings(1, 2, 3);
    vq.set_features(0);
    EXPECT_EQ(vq.size(), 8u);
    EXPECT_EQ(vq.desc_addr(), fake::DESC);
    r.set(0, TABLE, 16, INDIRECT);          // INDIRECT still negotiated
    Ring::put_desc(g, TABLE, 0, BUF, 4, WRITE, 0);
    r.offer(0);
    Chain c;
    EXPECT_TRUE(vq.pop(c));
}

} // namespace

// virtio-blk over a RAM disk (kernel/virtio/blk.cpp): every request type, the
// status byte, IOERR outside the disk and on a read-only disk (nothing moved),
// the framing rules, the config space and the service loop.
#include <gtest/gtest.h>

#include <string>
#include <thread>

#include "kernel/virtio/blk.hpp"
#include "tests/unit/virtio/fake_ring.hpp"

namespace {

using namespace virtio;
using fake::BUF;
using fake::Guest;
using fake::INDIRECT;
using fake::NEXT;
using fake::Ring;
using fake::WRITE;

constexpr u64 DISK = 64 * 1024;   // 128 sectors
constexpr u64 HDR = BUF, DATA = BUF + 0x1000, STATUS = BUF + 0x40000;

struct Rig {
    Guest g;
    Ring r{g, 16};
    Virtqueue vq;
    std::vector<u8> disk = std::vector<u8>(DISK);
    BlkDevice blk;

    explicit Rig(bool ro = false, u64 features = F_VERSION_1 | F_INDIRECT_DESC | F_EVENT_IDX)
        : blk(disk.data(), DISK, ro)
    {
        for (u64 i = 0; i < DISK; i++) disk[i] = u8(i * 7 + i / 512);
        EXPECT_TRUE(r.setup(vq, features));
    }
    void header(u32 type, u64 sector)
    {
        g.put(HDR, type, 4);
        g.put(HDR + 4, 0, 4);
        g.put(HDR + 8, sector, 8);
    }
    // header, one data descriptor (unless len 0), status; returns the used length.
    u32 request(u32 type, u64 sector, u32 len, bool data_writable)
    {
        header(type, sector);
        g.put(STATUS, 0xee, 1);
        r.set(0, HDR, 16, NEXT, len ? 1 : 2);
        r.set(1, DATA, len, NEXT | (data_writable ? WRITE : 0), 2);
        r.set(2, STATUS, 1, WRITE);
        return run(0);
    }
    u32 run(u16 head)
    {
        const u16 before = r.used_idx();
        r.offer(head);
        BlkDevice::Serviced s = blk.service(vq);
        EXPECT_EQ(vq.error(), VqError::none) << vq_error_text(vq.error());
        EXPECT_FALSE(s.again);
        EXPECT_EQ(r.used_idx(), u16(before + 1));
        EXPECT_EQ(r.used_id(before), head);
        EXPECT_TRUE(g.guards_ok());
        return r.used_len(before);
    }
    u8 status() { return g.at(STATUS)[0]; }
    bool data_is(u64 sector, u64 len) { return std::memcmp(g.at(DATA), disk.data() + sector * 512, len) == 0; }
};

TEST(VirtioBlk, ReadsIntoGuestBuffers)
{
    Rig t;
    EXPECT_EQ(t.request(BLK_T_IN, 3, 1024, true), 1025u);
    EXPECT_EQ(t.status(), BLK_S_OK);
    EXPECT_TRUE(t.data_is(3, 1024));
    EXPECT_EQ(t.blk.stats().requests, 1u);
    EXPECT_EQ(t.blk.stats().bytes_read, 1024u);
    EXPECT_EQ(t.blk.stats().errors, 0u);
    // The last sector.
    EXPECT_EQ(t.request(BLK_T_IN, 127, 512, true), 513u);
    EXPECT_EQ(t.status(), BLK_S_OK);
    EXPECT_TRUE(t.data_is(127, 512));
}

TEST(VirtioBlk, WritesFromGuestBuffers)
{
    Rig t;
    for (u32 i = 0; i < 1536; i++) t.g.at(DATA)[i] = u8(0x5a ^ i);
    EXPECT_EQ(t.request(BLK_T_OUT, 10, 1536, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_OK);
    EXPECT_TRUE(t.data_is(10, 1536));
    EXPECT_EQ(t.blk.stats().bytes_written, 1536u);
}

TEST(VirtioBlk, OutsideTheDiskIsIoerrAndMovesNothing)
{
    Rig t;
    const std::vector<u8> before = t.disk;
    struct Case {
        u64 sector;
        u32 len;
    } cases[] = {{127, 1024}, {128, 512}, {~0ull / 512, 1024}, {~0ull, 512}, {1ull << 55, 512}, {0, 100}};
    for (const Case &c : cases) {
        std::memset(t.g.at(DATA), 0xaa, 2048);
        EXPECT_EQ(t.request(BLK_T_IN, c.sector, c.len, true), 1u) << c.sector;
        EXPECT_EQ(t.status(), BLK_S_IOERR);
        for (u32 i = 0; i < 2048; i++) ASSERT_EQ(t.g.at(DATA)[i], 0xaa);
        EXPECT_EQ(t.request(BLK_T_OUT, c.sector, c.len, false), 1u);
        EXPECT_EQ(t.status(), BLK_S_IOERR);
    }
    EXPECT_EQ(t.disk, before);
    EXPECT_EQ(t.blk.stats().errors, 12u);
    EXPECT_EQ(t.blk.stats().bytes_read, 0u);
}

TEST(VirtioBlk, ReadOnlyDisk)
{
    Rig t(true);
    const std::vector<u8> before = t.disk;
    EXPECT_TRUE(t.blk.features() & BLK_F_RO);
    EXPECT_FALSE(t.blk.features() & (BLK_F_DISCARD | BLK_F_WRITE_ZEROES));
    EXPECT_EQ(t.request(BLK_T_OUT, 0, 512, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_IOERR);
    t.g.put(DATA, 0, 8);
    t.g.put(DATA + 8, 1, 4);
    t.g.put(DATA + 12, 0, 4);
    EXPECT_EQ(t.request(BLK_T_WRITE_ZEROES, 0, 16, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_IOERR);
    EXPECT_EQ(t.request(BLK_T_DISCARD, 0, 16, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_IOERR);
    EXPECT_EQ(t.disk, before);
    // Reads and flushes still work.
    EXPECT_EQ(t.request(BLK_T_IN, 0, 512, true), 513u);
    EXPECT_EQ(t.status(), BLK_S_OK);
    EXPECT_EQ(t.request(BLK_T_FLUSH, 0, 0, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_OK);
}

TEST(VirtioBlk, FlushGetIdAndUnsupported)
{
    Rig t;
    EXPECT_EQ(t.request(BLK_T_FLUSH, 0, 0, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_OK);
    EXPECT_EQ(t.blk.stats().flushes, 1u);

    std::memset(t.g.at(DATA), 0xaa, 32);
    t.blk.set_id("disk-0");
    EXPECT_EQ(t.request(BLK_T_GET_ID, 0, 20, true), 21u);
    EXPECT_EQ(t.status(), BLK_S_OK);
    EXPECT_EQ(std::string(reinterpret_cast<char *>(t.g.at(DATA))), "disk-0");
    for (u32 i = 6; i < 20; i++) EXPECT_EQ(t.g.at(DATA)[i], 0);
    EXPECT_EQ(t.g.at(DATA)[20], 0xaa);
    t.blk.set_id("0123456789abcdefghijKLMN");   // cut at 20 bytes, no NUL
    EXPECT_EQ(t.request(BLK_T_GET_ID, 0, 20, true), 21u);
    EXPECT_EQ(std::memcmp(t.g.at(DATA), "0123456789abcdefghij", 20), 0);

    for (u32 type : {2u, 7u, 10u, 14u, 0x80000000u}) {
        EXPECT_EQ(t.request(type, 0, 512, true), 1u) << type;
        EXPECT_EQ(t.status(), BLK_S_UNSUPP) << type;
    }
}

TEST(VirtioBlk, WriteZeroesAndDiscard)
{
    Rig t;
    auto range = [&](unsigned i, u64 sector, u32 n, u32 flags) {
        t.g.put(DATA + 16 * i, sector, 8);
        t.g.put(DATA + 16 * i + 8, n, 4);
        t.g.put(DATA + 16 * i + 12, flags, 4);
    };
    auto zero = [&](u64 sector, u64 n) {
        for (u64 i = sector * 512; i < (sector + n) * 512; i++)
            if (t.disk[i]) return false;
        return true;
    };
    range(0, 4, 2, 1);     // unmap allowed for write zeroes
    range(1, 20, 1, 0);
    EXPECT_EQ(t.request(BLK_T_WRITE_ZEROES, 0, 32, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_OK);
    EXPECT_TRUE(zero(4, 2) && zero(20, 1));
    EXPECT_FALSE(zero(6, 1) || zero(3, 1) || zero(21, 1));

    range(0, 30, 3, 0);
    EXPECT_EQ(t.request(BLK_T_DISCARD, 0, 16, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_OK);
    EXPECT_TRUE(zero(30, 3));

    // A bad range fails the whole request before anything is zeroed.
    const std::vector<u8> before = t.disk;
    range(0, 40, 1, 0);
    range(1, 127, 2, 0);
    EXPECT_EQ(t.request(BLK_T_WRITE_ZEROES, 0, 32, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_IOERR);
    range(1, 50, 1, 1);    // unmap is not a discard flag
    EXPECT_EQ(t.request(BLK_T_DISCARD, 0, 32, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_UNSUPP);
    range(1, 50, 1, 2);    // unknown write-zeroes flag
    EXPECT_EQ(t.request(BLK_T_WRITE_ZEROES, 0, 32, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_UNSUPP);
    range(1, 50, BlkDevice::MAX_RANGE_SECTORS + 1, 0);
    EXPECT_EQ(t.request(BLK_T_WRITE_ZEROES, 0, 32, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_IOERR);
    EXPECT_EQ(t.request(BLK_T_WRITE_ZEROES, 0, 24, false), 1u);   // not whole ranges
    EXPECT_EQ(t.status(), BLK_S_IOERR);
    EXPECT_EQ(t.request(BLK_T_DISCARD, 0, 0, false), 1u);         // no range
    EXPECT_EQ(t.status(), BLK_S_IOERR);
    EXPECT_EQ(t.request(BLK_T_DISCARD, 0, 16 * (BlkDevice::MAX_RANGES + 1), false), 1u);
    EXPECT_EQ(t.status(), BLK_S_IOERR);
    EXPECT_EQ(t.disk, before);
}

TEST(VirtioBlk, FramingIsByBytesNotDescriptors)
{
    Rig t;
    // Header split in two, data and status in one writable descriptor, all in an indirect table.
    const u64 table = BUF + 0x3000;
    t.header(BLK_T_IN, 5);
    Ring::put_desc(t.g, table, 0, HDR, 10, NEXT, 1);
    Ring::put_desc(t.g, table, 1, HDR + 10, 6, NEXT, 2);
    Ring::put_desc(t.g, table, 2, DATA, 300, NEXT | WRITE, 3);
    Ring::put_desc(t.g, table, 3, DATA + 300, 213, WRITE, 0);
    t.r.set(4, table, 64, INDIRECT);
    EXPECT_EQ(t.run(4), 513u);
    EXPECT_TRUE(t.data_is(5, 512));
    EXPECT_EQ(t.g.at(DATA)[512], BLK_S_OK);
}

TEST(VirtioBlk, BadLayouts)
{
    Rig t;
    // A header shorter than 16 bytes: IOERR in the status byte.
    t.header(BLK_T_IN, 0);
    t.g.put(STATUS, 0xee, 1);
    t.r.set(0, HDR, 8, NEXT, 1);
    t.r.set(1, STATUS, 1, WRITE);
    EXPECT_EQ(t.run(0), 1u);
    EXPECT_EQ(t.status(), BLK_S_IOERR);
    // No writable byte: nowhere to answer; returned with nothing written.
    t.r.set(0, HDR, 16);
    EXPECT_EQ(t.run(0), 0u);
    EXPECT_EQ(t.blk.stats().errors, 2u);
    EXPECT_EQ(t.blk.stats().requests, 2u);
}

TEST(VirtioBlk, ConfigSpaceAndFeatures)
{
    std::vector<u8> disk(DISK + 100);
    BlkDevice b(disk.data(), disk.size(), false, 4);
    EXPECT_EQ(b.config_read(0, 8), DISK / 512);
    EXPECT_EQ(b.config_read(0, 4), DISK / 512);
    EXPECT_EQ(b.config_read(12, 4), BlkDevice::SEG_MAX);
    EXPECT_EQ(b.config_read(20, 4), 512u);
    EXPECT_EQ(b.config_read(34, 2), 4u);
    EXPECT_EQ(b.config_read(36, 4), BlkDevice::MAX_RANGE_SECTORS);
    EXPECT_EQ(b.config_read(40, 4), BlkDevice::MAX_RANGES);
    EXPECT_EQ(b.config_read(44, 4), 1u);
    EXPECT_EQ(b.config_read(48, 4), BlkDevice::MAX_RANGE_SECTORS);
    EXPECT_EQ(b.config_read(52, 4), BlkDevice::MAX_RANGES);
    EXPECT_EQ(b.config_read(56, 1), 0u);                   // write_zeroes_may_unmap: nothing is ever deallocated
    EXPECT_EQ(b.config_read(8, 4), 0u);                    // size_max: not offered
    EXPECT_EQ(b.config_read(BLK_CONFIG_SIZE - 2, 4), 0u);  // past the end reads 0
    EXPECT_EQ(b.config_read(~0u, 8), 0u);
    const u64 f = b.features();
    for (u64 bit : {F_VERSION_1, F_INDIRECT_DESC, F_EVENT_IDX, BLK_F_SEG_MAX, BLK_F_BLK_SIZE, BLK_F_FLUSH, BLK_F_MQ,
                    BLK_F_DISCARD, BLK_F_WRITE_ZEROES})
        EXPECT_TRUE(f & bit) << bit;
    EXPECT_FALSE(f & BLK_F_RO);
    // SEG_MAX data segments plus header and status fit a chain.
    EXPECT_EQ(BlkDevice::SEG_MAX + 2, Chain::MAX);
    // One range request zeroes at most what one chain may move.
    EXPECT_EQ(u64(BlkDevice::MAX_RANGES) * BlkDevice::MAX_RANGE_SECTORS * 512, Virtqueue::MAX_CHAIN_BYTES);
}

TEST(VirtioBlk, ServiceBatchesAndRearmsKicks)
{
    Rig t;
    t.r.set_used_event(0);
    // Three reads, one per head, each its own header/status.
    for (u16 i = 0; i < 3; i++) {
        const u64 h = BUF + 0x100 * i;
        t.g.put(h, BLK_T_IN, 4);
        t.g.put(h + 8, i, 8);
        t.r.set(3 * i, h, 16, NEXT, u16(3 * i + 1));
        t.r.set(3 * i + 1, DATA + 512 * i, 512, NEXT | WRITE, u16(3 * i + 2));
        t.r.set(3 * i + 2, h + 0x80, 1, WRITE);
        t.r.offer(u16(3 * i));
    }
    BlkDevice::Serviced s = t.blk.service(t.vq);
    EXPECT_TRUE(s.notify);
    EXPECT_FALSE(s.again);
    EXPECT_EQ(t.r.used_idx(), 3);
    EXPECT_EQ(t.r.avail_event(), 3);   // kick me at the next buffer
    EXPECT_EQ(std::memcmp(t.g.at(DATA), t.disk.data(), 1536), 0);
    // A kick with nothing new: no interrupt.
    s = t.blk.service(t.vq);
    EXPECT_FALSE(s.notify);

    // A full queue's worth in one go: all taken in one call, within the budget.
    t.r.set_used_event(3);
    for (u32 i = 0; i < 16; i++) t.r.offer(0);
    s = t.blk.service(t.vq);
    EXPECT_TRUE(s.notify);
    EXPECT_FALSE(s.again);
    EXPECT_EQ(t.r.used_idx(), 3 + 16);
    EXPECT_EQ(t.r.avail_event(), 3 + 16);
    EXPECT_EQ(t.vq.error(), VqError::none);
}

// Two vCPUs kicking one queue: the queue's lock makes them take turns, so each
// chain is executed and returned exactly once.
TEST(VirtioBlk, ConcurrentKicksTakeTurns)
{
    Rig t;
    constexpr u16 N = 16;
    // Chains of two: header in descriptor i (even), data and status in i + 1.
    for (u16 i = 0; i < N; i += 2) {
        const u64 h = BUF + 0x100 * i;
        t.g.put(h, BLK_T_IN, 4);
        t.g.put(h + 8, i, 8);
        t.r.set(i, h, 16, NEXT, u16(i + 1));
        t.r.set(i + 1, DATA + 512 * i, 513, WRITE);
        t.r.offer(i);
    }
    BlkDevice::Serviced a, b;
    std::thread t1([&] { a = t.blk.service(t.vq); });
    std::thread t2([&] { b = t.blk.service(t.vq); });
    t1.join();
    t2.join();
    EXPECT_EQ(t.vq.error(), VqError::none);
    EXPECT_EQ(t.r.used_idx(), N / 2);
    EXPECT_EQ(t.blk.stats().requests, N / 2u);
    bool seen[N] = {};
    for (u16 k = 0; k < N / 2; k++) {
        const u32 id = t.r.used_id(k);
        ASSERT_LT(id, N);
        EXPECT_FALSE(seen[id]);
        seen[id] = true;
        EXPECT_EQ(t.r.used_len(k), 513u);
    }
    EXPECT_TRUE(a.notify || b.notify);
    EXPECT_TRUE(t.g.guards_ok());
}

TEST(VirtioBlk, MalformedQueueStopsService)
{
    Rig t;
    t.r.set(0, HDR, 16, NEXT, 0);   // a loop
    t.r.offer(0);
    BlkDevice::Serviced s = t.blk.service(t.vq);
    EXPECT_FALSE(s.notify);
    EXPECT_EQ(t.vq.error(), VqError::chain_loop);
    EXPECT_EQ(t.r.used_idx(), 0);
    EXPECT_EQ(t.blk.stats().requests, 0u);
    EXPECT_TRUE(t.g.guards_ok());
}

} // namespace

// Service time: each request's execution between two clock reads, summed, and the longest.
namespace {
u64 fake_now = 0;
u64 fake_clock()
{
    // 10 ticks per read: each request measures 10 (one read before, one after).
    return fake_now += 10;
}
} // namespace

TEST(VirtioBlk, ServiceTimeFromTheClock)
{
    Rig t;
    t.request(BLK_T_IN, 0, 512, true);
    EXPECT_EQ(t.blk.stats().service_ticks, 0u);   // no clock: nothing measured
    t.blk.set_clock(fake_clock);
    t.request(BLK_T_IN, 0, 512, true);
    t.request(BLK_T_OUT, 0, 512, false);
    EXPECT_EQ(t.blk.stats().requests, 3u);
    EXPECT_EQ(t.blk.stats().service_ticks, 20u);
    EXPECT_EQ(t.blk.stats().max_service_ticks, 10u);
}

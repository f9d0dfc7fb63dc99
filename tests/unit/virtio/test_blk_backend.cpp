// virtio-blk over a BlkBackend (kernel/virtio/blk.cpp): a fake backend with a
// volatile cache that records its calls. A request's status is written only
// after the backend returned; FLUSH and write-through reach the backend's
// flush; backend failures are IOERR for that request alone; CONFIG_WCE and the
// writeback byte; a 4 KiB block size; data split across odd descriptors moved
// exactly through backend pieces handed in any order.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

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

constexpr u64 HDR = BUF, STATUS = BUF + 0x100, DATA = BUF + 0x1000;
constexpr u8 UNANSWERED = 0xee;

struct Call {
    char what;          // 'r' read, 'w' write, 'f' flush, 'z' zero
    u64 off, len;
    u8 status_then;     // the request's status byte while the backend ran
    u16 used_then;      // the used ring's idx while the backend ran
};

// A disk in a host vector that hands data in pieces of at most `piece` bytes,
// cut at multiples of `piece` of the disk offset, in the order `order` says.
class FakeBackend final : public BlkBackend {
public:
    enum class Order { forward, backward, odd_then_even };

    std::vector<u8> disk;
    u32 bs;
    bool cache;
    u64 piece = 4096;
    Order order = Order::forward;
    bool fail_read = false, fail_write = false, fail_flush = false, fail_zero = false;
    u64 fail_off = ~u64(0);     // reads and writes at this offset fail
    std::vector<Call> calls;
    std::vector<std::pair<u64, u64>> pieces;   // (n, pos) of the last read or write
    // Where to look while a call runs (the request's status byte, the used ring).
    Guest *g = nullptr;
    Ring *r = nullptr;
    u64 status_gpa = STATUS;

    FakeBackend(u64 bytes, u32 block = 512, bool volatile_cache = true) : disk(bytes), bs(block), cache(volatile_cache)
    {
        for (u64 i = 0; i < bytes; i++) disk[i] = u8(i * 7 + i / 512);
    }

    u64 bytes() const override { return disk.size(); }
    u32 block_size() const override { return bs; }
    bool volatile_cache() const override { return cache; }

    Status read(u64 off, u64 len, Copy &to) override
    {
        note('r', off, len);
        EXPECT_EQ(off % bs, 0u);
        EXPECT_EQ(len % bs, 0u);
        EXPECT_LE(off + len, disk.size());
        if (fail_read || off == fail_off) return Err::invalid;
        return each(off, len, [&](u64 o, u64 n, u64 pos) { return to.piece(disk.data() + o, n, pos); });
    }
    Status write(u64 off, u64 len, Copy &from) override
    {
        note('w', off, len);
        EXPECT_EQ(off % bs, 0u);
        EXPECT_EQ(len % bs, 0u);
        EXPECT_LE(off + len, disk.size());
        if (fail_write || off == fail_off) return Err::invalid;
        // Staged like a real backend: into a buffer, then onto the disk.
        std::vector<u8> stage(len, 0x77);
        Status s = each(off, len, [&](u64, u64 n, u64 pos) { return from.piece(stage.data() + pos, n, pos); });
        if (!s) return s;
        std::memcpy(disk.data() + off, stage.data(), len);
        return {};
    }
    Status flush() override
    {
        note('f', 0, 0);
        if (fail_flush) return Err::timeout;
        return {};
    }
    Status zero(u64 off, u64 len) override
    {
        note('z', off, len);
        if (fail_zero) return Err::invalid;
        std::memset(disk.data() + off, 0, len);
        return {};
    }

    std::string trace() const
    {
        std::string s;
        for (const Call &c : calls) s += c.what;
        return s;
    }

private:
    void note(char what, u64 off, u64 len)
    {
        calls.push_back({what, off, len, g ? g->at(status_gpa)[0] : u8(0), r ? r->used_idx() : u16(0)});
    }

    // The request's pieces: cut at multiples of `piece` of the disk offset.
    template <class F>
    Status each(u64 off, u64 len, F f)
    {
        std::vector<std::pair<u64, u64>> v;   // (pos, n)
        for (u64 pos = 0; pos < len;) {
            const u64 o = off + pos;
            const u64 n = std::min(len - pos, piece - o % piece);
            v.push_back({pos, n});
            pos += n;
        }
        if (order == Order::backward) std::reverse(v.begin(), v.end());
        if (order == Order::odd_then_even) {
            std::vector<std::pair<u64, u64>> w;
            for (usize k = 1; k < v.size(); k += 2) w.push_back(v[k]);
            for (usize k = 0; k < v.size(); k += 2) w.push_back(v[k]);
            v = w;
        }
        pieces.clear();
        for (auto [pos, n] : v) {
            pieces.push_back({n, pos});
            if (!f(off + pos, n, pos)) return Err::invalid;
        }
        return {};
    }
};

struct Desc {
    u64 gpa;
    u32 len;
    bool writable;
};

struct Rig {
    Guest g;
    Ring r{g, 64};
    Virtqueue vq;
    FakeBackend be;
    std::unique_ptr<BlkDevice> blk;

    explicit Rig(u64 bytes = 256 * 1024, u32 bs = 512, bool cache = true, bool ro = false) : be(bytes, bs, cache)
    {
        be.g = &g;
        be.r = &r;
        blk = std::make_unique<BlkDevice>(be, ro);
        EXPECT_TRUE(r.setup(vq, F_VERSION_1 | F_INDIRECT_DESC | F_EVENT_IDX));
    }
    void header(u64 at, u32 type, u64 sector)
    {
        g.put(at, type, 4);
        g.put(at + 4, 0, 4);
        g.put(at + 8, sector, 8);
    }
    // Descriptors [first, first + d.size()) chained; returns the head.
    u16 chain(u16 first, const std::vector<Desc> &d)
    {
        for (usize i = 0; i < d.size(); i++) {
            const bool last = i + 1 == d.size();
            r.set(u32(first + i), d[i].gpa, d[i].len, u16((last ? 0 : NEXT) | (d[i].writable ? WRITE : 0)),
                  last ? 0 : u16(first + i + 1));
        }
        return first;
    }
    // header, one data descriptor (unless len 0), status at STATUS; returns the used length.
    u32 request(u32 type, u64 sector, u32 len, bool data_writable)
    {
        header(HDR, type, sector);
        g.put(STATUS, UNANSWERED, 1);
        std::vector<Desc> d{{HDR, 16, false}};
        if (len) d.push_back({DATA, len, data_writable});
        d.push_back({STATUS, 1, true});
        return run(chain(0, d));
    }
    u32 run(u16 head)
    {
        const u16 before = r.used_idx();
        r.offer(head);
        BlkDevice::Serviced s = blk->service(vq);
        EXPECT_EQ(vq.error(), VqError::none) << vq_error_text(vq.error());
        EXPECT_FALSE(s.again);
        EXPECT_EQ(r.used_idx(), u16(before + 1));
        EXPECT_EQ(r.used_id(before), head);
        EXPECT_TRUE(g.guards_ok());
        return r.used_len(before);
    }
    u8 status() { return g.at(STATUS)[0]; }
    // A range of a DISCARD / WRITE_ZEROES request's payload.
    void range(unsigned i, u64 sector, u32 n, u32 flags)
    {
        g.put(DATA + 16 * i, sector, 8);
        g.put(DATA + 16 * i + 8, n, 4);
        g.put(DATA + 16 * i + 12, flags, 4);
    }
};

TEST(VirtioBlkBackend, OutAcknowledgedOnlyAfterTheBackendReturned)
{
    Rig t;
    for (u32 i = 0; i < 2048; i++) t.g.at(DATA)[i] = u8(i ^ 0x3c);
    EXPECT_EQ(t.request(BLK_T_OUT, 6, 2048, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_OK);
    ASSERT_EQ(t.be.trace(), "w");
    EXPECT_EQ(t.be.calls[0].off, 6u * 512);
    EXPECT_EQ(t.be.calls[0].len, 2048u);
    EXPECT_EQ(t.be.calls[0].status_then, UNANSWERED);   // no status before the backend had the data
    EXPECT_EQ(t.be.calls[0].used_then, 0);              // nor the chain returned
    EXPECT_EQ(std::memcmp(t.be.disk.data() + 6 * 512, t.g.at(DATA), 2048), 0);
    EXPECT_EQ(t.blk->stats().bytes_written, 2048u);

    EXPECT_EQ(t.request(BLK_T_IN, 1, 1024, true), 1025u);
    EXPECT_EQ(t.status(), BLK_S_OK);
    ASSERT_EQ(t.be.trace(), "wr");
    EXPECT_EQ(t.be.calls[1].status_then, UNANSWERED);
    EXPECT_EQ(t.be.calls[1].used_then, 1);
    EXPECT_EQ(std::memcmp(t.be.disk.data() + 512, t.g.at(DATA), 1024), 0);
    // Write-back (the default): no flush of its own.
    EXPECT_EQ(t.blk->config().writeback, 1);
}

TEST(VirtioBlkBackend, FlushReachesTheBackend)
{
    Rig t;
    EXPECT_EQ(t.request(BLK_T_FLUSH, 0, 0, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_OK);
    ASSERT_EQ(t.be.trace(), "f");
    EXPECT_EQ(t.be.calls[0].status_then, UNANSWERED);
    EXPECT_EQ(t.blk->stats().flushes, 1u);
    EXPECT_EQ(t.blk->stats().errors, 0u);

    t.be.fail_flush = true;
    EXPECT_EQ(t.request(BLK_T_FLUSH, 0, 0, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_IOERR);
    EXPECT_EQ(t.be.trace(), "ff");
    EXPECT_EQ(t.blk->stats().errors, 1u);
    t.be.fail_flush = false;
    EXPECT_EQ(t.request(BLK_T_FLUSH, 0, 0, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_OK);
    EXPECT_EQ(t.blk->stats().errors, 1u);
}

TEST(VirtioBlkBackend, FailingReadOrWriteIsIoerrForThatRequestAlone)
{
    Rig t;
    // Three chains in one batch: a read the backend fails, a write and a read that work.
    const u64 h[3] = {BUF + 0x200, BUF + 0x300, BUF + 0x400};
    const u64 st[3] = {BUF + 0x280, BUF + 0x380, BUF + 0x480};
    const u64 data[3] = {BUF + 0x8000, BUF + 0x9000, BUF + 0xa000};
    t.be.fail_off = 8 * 512;
    t.header(h[0], BLK_T_IN, 8);
    t.header(h[1], BLK_T_OUT, 16);
    t.header(h[2], BLK_T_IN, 0);
    for (u32 i = 0; i < 1024; i++) t.g.at(data[1])[i] = u8(0xa5 ^ i);
    std::memset(t.g.at(data[0]), 0xaa, 1024);
    for (u16 i = 0; i < 3; i++) {
        t.g.put(st[i], UNANSWERED, 1);
        t.chain(u16(3 * i), {{h[i], 16, false}, {data[i], 1024, i != 1}, {st[i], 1, true}});
        t.r.offer(u16(3 * i));
    }
    (void)t.blk->service(t.vq);
    EXPECT_EQ(t.vq.error(), VqError::none);
    ASSERT_EQ(t.r.used_idx(), 3);
    EXPECT_EQ(t.g.at(st[0])[0], BLK_S_IOERR);
    EXPECT_EQ(t.r.used_len(0), 1u);                     // nothing read counted as written
    EXPECT_EQ(t.g.at(st[1])[0], BLK_S_OK);
    EXPECT_EQ(t.g.at(st[2])[0], BLK_S_OK);
    EXPECT_EQ(t.r.used_len(2), 1025u);
    EXPECT_EQ(std::memcmp(t.be.disk.data() + 16 * 512, t.g.at(data[1]), 1024), 0);
    EXPECT_EQ(std::memcmp(t.be.disk.data(), t.g.at(data[2]), 1024), 0);
    EXPECT_EQ(t.blk->stats().errors, 1u);
    EXPECT_EQ(t.blk->stats().bytes_read, 1024u);
    EXPECT_EQ(t.blk->stats().bytes_written, 1024u);

    // A failing write: IOERR, counted, nothing acknowledged as written.
    t.be.fail_off = ~u64(0);
    t.be.fail_write = true;
    EXPECT_EQ(t.request(BLK_T_OUT, 2, 512, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_IOERR);
    EXPECT_EQ(t.blk->stats().errors, 2u);
    EXPECT_EQ(t.blk->stats().bytes_written, 1024u);
    t.be.fail_write = false;
    t.be.fail_read = true;
    EXPECT_EQ(t.request(BLK_T_IN, 2, 512, true), 1u);
    EXPECT_EQ(t.status(), BLK_S_IOERR);
    EXPECT_EQ(t.blk->stats().errors, 3u);
    t.be.fail_read = false;
    // The zeroing call failing.
    t.be.fail_zero = true;
    t.range(0, 4, 2, 0);
    EXPECT_EQ(t.request(BLK_T_WRITE_ZEROES, 0, 16, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_IOERR);
    EXPECT_EQ(t.blk->stats().errors, 4u);
    t.be.fail_zero = false;
    EXPECT_EQ(t.request(BLK_T_IN, 2, 512, true), 513u);
    EXPECT_EQ(t.status(), BLK_S_OK);
    EXPECT_EQ(t.blk->stats().errors, 4u);
}

TEST(VirtioBlkBackend, ConfigWceOfferedOnlyForAWritableVolatileCache)
{
    {
        Rig t;                                            // volatile cache, writable
        EXPECT_TRUE(t.blk->features() & BLK_F_CONFIG_WCE);
        EXPECT_TRUE(t.blk->features() & BLK_F_FLUSH);
    }
    {
        Rig t(256 * 1024, 512, false);                    // no cache: nothing to choose
        EXPECT_FALSE(t.blk->features() & BLK_F_CONFIG_WCE);
        EXPECT_TRUE(t.blk->features() & BLK_F_FLUSH);
        t.blk->config_write(32, 1, 0);                    // not offered: read-only
        EXPECT_EQ(t.blk->config_read(32, 1), 1u);
    }
    {
        Rig t(256 * 1024, 512, true, true);               // read-only disk
        EXPECT_FALSE(t.blk->features() & BLK_F_CONFIG_WCE);
        t.blk->config_write(32, 1, 0);
        EXPECT_EQ(t.blk->config_read(32, 1), 1u);
    }
    // And through the transport's view.
    Rig t;
    BlkVirtio v(*t.blk);
    EXPECT_TRUE(v.features() & BLK_F_CONFIG_WCE);
    EXPECT_EQ(v.config_read(32, 1), 1u);
}

TEST(VirtioBlkBackend, WritebackByte)
{
    Rig t;
    EXPECT_EQ(t.blk->config_read(32, 1), 1u);
    // Its neighbours: topology (unset) before it, num_queues after the padding byte.
    EXPECT_EQ(t.blk->config_read(33, 1), 0u);
    EXPECT_EQ(t.blk->config_read(32, 4), 1u | 1u << 16);   // writeback, unused, num_queues = 1

    // Only a 1-byte write at offset 32 changes it.
    t.blk->config_write(32, 2, 0);
    t.blk->config_write(32, 4, 0);
    t.blk->config_write(30, 4, 0);
    t.blk->config_write(31, 2, 0);
    t.blk->config_write(33, 1, 0);
    EXPECT_EQ(t.blk->config_read(32, 1), 1u);
    t.blk->config_write(32, 1, 0);
    EXPECT_EQ(t.blk->config_read(32, 1), 0u);
    EXPECT_EQ(t.blk->config().writeback, 0);
    EXPECT_EQ(t.blk->config_read(34, 2), 1u);             // num_queues untouched
    EXPECT_EQ(t.blk->config_read(20, 4), 512u);           // blk_size untouched
    t.blk->config_write(32, 1, 1);
    EXPECT_EQ(t.blk->config_read(32, 1), 1u);
    t.blk->config_write(32, 1, 0);

    // Device reset: write-back again.
    t.blk->reset();
    EXPECT_EQ(t.blk->config_read(32, 1), 1u);
    t.blk->config_write(32, 1, 0);
    BlkVirtio v(*t.blk);
    v.config_write(32, 1, 1);
    EXPECT_EQ(v.config_read(32, 1), 1u);
    v.config_write(32, 1, 0);
    EXPECT_EQ(v.config_read(32, 1), 0u);
    v.reset();
    EXPECT_EQ(v.config_read(32, 1), 1u);
}

TEST(VirtioBlkBackend, WriteThroughFlushesEveryOutBeforeItsStatus)
{
    Rig t;
    t.blk->config_write(32, 1, 0);
    for (u32 i = 0; i < 1024; i++) t.g.at(DATA)[i] = u8(i * 3);
    EXPECT_EQ(t.request(BLK_T_OUT, 4, 1024, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_OK);
    ASSERT_EQ(t.be.trace(), "wf");
    EXPECT_EQ(t.be.calls[1].status_then, UNANSWERED);    // the flush before the status
    EXPECT_EQ(t.be.calls[1].used_then, 0);
    EXPECT_EQ(t.request(BLK_T_OUT, 8, 512, false), 1u);
    EXPECT_EQ(t.be.trace(), "wfwf");
    // Reads are not flushed.
    EXPECT_EQ(t.request(BLK_T_IN, 8, 512, true), 513u);
    EXPECT_EQ(t.be.trace(), "wfwfr");

    // A failing flush fails the write.
    t.be.fail_flush = true;
    const u64 written = t.blk->stats().bytes_written;
    EXPECT_EQ(t.request(BLK_T_OUT, 8, 512, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_IOERR);
    EXPECT_EQ(t.be.trace(), "wfwfrwf");
    EXPECT_EQ(t.blk->stats().errors, 1u);
    EXPECT_EQ(t.blk->stats().bytes_written, written);
    t.be.fail_flush = false;

    // A write the backend refuses is not flushed.
    t.be.fail_write = true;
    EXPECT_EQ(t.request(BLK_T_OUT, 8, 512, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_IOERR);
    EXPECT_EQ(t.be.trace(), "wfwfrwfw");
    t.be.fail_write = false;

    // Back to write-back: writes alone.
    t.blk->config_write(32, 1, 1);
    EXPECT_EQ(t.request(BLK_T_OUT, 8, 512, false), 1u);
    EXPECT_EQ(t.be.trace(), "wfwfrwfww");
    t.blk->config_write(32, 1, 0);
    t.blk->reset();
    EXPECT_EQ(t.request(BLK_T_OUT, 8, 512, false), 1u);
    EXPECT_EQ(t.be.trace(), "wfwfrwfwww");
}

// Write-through covers every request that writes the medium: WRITE_ZEROES and
// DISCARD (which Keel turns into zeroing) are flushed before their status too.
TEST(VirtioBlkBackend, WriteThroughFlushesZeroedRanges)
{
    Rig t;
    t.range(0, 4, 2, 0);
    EXPECT_EQ(t.request(BLK_T_WRITE_ZEROES, 0, 16, false), 1u);
    EXPECT_EQ(t.be.trace(), "z");                        // write-back: no flush
    t.blk->config_write(32, 1, 0);
    EXPECT_EQ(t.request(BLK_T_WRITE_ZEROES, 0, 16, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_OK);
    ASSERT_EQ(t.be.trace(), "zzf");
    EXPECT_EQ(t.be.calls[2].status_then, UNANSWERED);
    EXPECT_EQ(t.request(BLK_T_DISCARD, 0, 16, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_OK);
    EXPECT_EQ(t.be.trace(), "zzfzf");
    t.be.fail_flush = true;
    EXPECT_EQ(t.request(BLK_T_DISCARD, 0, 16, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_IOERR);
    EXPECT_EQ(t.blk->stats().errors, 1u);
}

TEST(VirtioBlkBackend, BlockSize4096)
{
    Rig t(1024 * 1024, 4096);
    EXPECT_EQ(t.blk->config_read(20, 4), 4096u);
    EXPECT_EQ(t.blk->config_read(0, 8), 2048u);           // capacity still in 512-byte sectors
    EXPECT_TRUE(t.blk->features() & BLK_F_BLK_SIZE);

    // 512-byte aligned but not 4096: IOERR, the backend never called.
    struct Case {
        u64 sector;
        u32 len;
    } bad[] = {{1, 4096}, {7, 4096}, {8, 512}, {8, 3584}, {0, 4608}, {2044, 4096}, {2048, 4096}};
    for (const Case &c : bad) {
        std::memset(t.g.at(DATA), 0xaa, 8192);
        EXPECT_EQ(t.request(BLK_T_IN, c.sector, c.len, true), 1u) << c.sector << " " << c.len;
        EXPECT_EQ(t.status(), BLK_S_IOERR);
        EXPECT_EQ(t.g.at(DATA)[0], 0xaa);
        EXPECT_EQ(t.request(BLK_T_OUT, c.sector, c.len, false), 1u) << c.sector << " " << c.len;
        EXPECT_EQ(t.status(), BLK_S_IOERR);
    }
    t.range(0, 8, 8, 0);
    t.range(1, 17, 8, 0);                                 // not on a block
    EXPECT_EQ(t.request(BLK_T_WRITE_ZEROES, 0, 32, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_IOERR);
    t.range(1, 16, 4, 0);                                 // half a block
    EXPECT_EQ(t.request(BLK_T_DISCARD, 0, 32, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_IOERR);
    EXPECT_EQ(t.be.trace(), "");
    EXPECT_EQ(t.blk->stats().errors, 2u * std::size(bad) + 2);

    // Whole blocks work.
    EXPECT_EQ(t.request(BLK_T_IN, 8, 8192, true), 8193u);
    EXPECT_EQ(t.status(), BLK_S_OK);
    EXPECT_EQ(std::memcmp(t.g.at(DATA), t.be.disk.data() + 4096, 8192), 0);
    EXPECT_EQ(t.request(BLK_T_OUT, 2040, 4096, false), 1u);   // the last block
    EXPECT_EQ(t.status(), BLK_S_OK);
    t.range(0, 8, 8, 0);                                  // DATA was read into: the ranges again
    t.range(1, 16, 8, 0);
    EXPECT_EQ(t.request(BLK_T_DISCARD, 0, 32, false), 1u);
    EXPECT_EQ(t.status(), BLK_S_OK);
    ASSERT_EQ(t.be.trace(), "rwzz");
    EXPECT_EQ(t.be.calls[2].off, 4096u);
    EXPECT_EQ(t.be.calls[2].len, 4096u);
    EXPECT_EQ(t.be.calls[3].off, 8192u);
}

// Data in many small descriptors of odd lengths, the header and status sharing
// descriptors with data; the backend's pieces cut across descriptors and
// arrive in order, backwards, or odd ones first (ChainCopy seeks).
TEST(VirtioBlkBackend, OddDescriptorsAndPiecesMoveExactlyTheRightBytes)
{
    const u32 lens[] = {1, 511, 3, 4093, 2, 4096, 1000, 7, 5000, 1, 1, 2558, 4096, 37, 1, 1000, 126};
    u32 total = 0;
    for (u32 l : lens) total += l;
    for (auto order : {FakeBackend::Order::forward, FakeBackend::Order::backward, FakeBackend::Order::odd_then_even}) {
        for (u64 sector : {u64(0), u64(3), u64(9)}) {
            Rig t(256 * 1024);
            t.be.order = order;
            // OUT: the header's descriptor carries the first 5 data bytes, then
            // the lens[] descriptors, the last one 10 bytes short: 44 sectors.
            const u32 data_len = 5 + total - 10;
            ASSERT_EQ(data_len % 512, 0u);
            std::vector<u8> src(data_len);
            for (u32 i = 0; i < data_len; i++) src[i] = u8(i * 131 + i / 251 + 1);
            std::vector<Desc> d;
            t.header(HDR, BLK_T_OUT, sector);
            std::memcpy(t.g.at(HDR + 16), src.data(), 5);
            d.push_back({HDR, 21, false});
            u64 gpa = DATA, at = 5;
            for (usize i = 0; i < std::size(lens); i++) {
                const u32 n = i + 1 == std::size(lens) ? lens[i] - 10 : lens[i];
                std::memcpy(t.g.at(gpa), src.data() + at, n);
                d.push_back({gpa, n, false});
                at += n;
                gpa += n + 0x40 + (n & 0x3f);             // scattered
            }
            ASSERT_EQ(at, data_len);
            t.g.put(STATUS, UNANSWERED, 1);
            d.push_back({STATUS, 1, true});
            const std::vector<u8> before = t.be.disk;
            EXPECT_EQ(t.run(t.chain(0, d)), 1u);
            ASSERT_EQ(t.status(), BLK_S_OK);
            EXPECT_GT(t.be.pieces.size(), 4u);
            std::vector<u8> want = before;
            std::memcpy(want.data() + sector * 512, src.data(), data_len);
            ASSERT_TRUE(t.be.disk == want) << "OUT, order " << int(order) << " sector " << sector;

            // IN into other odd descriptors; the last carries the status byte too.
            const u64 in_base = DATA + 0x20000;
            std::memset(t.g.at(in_base), 0xcd, 0x10000);
            d.clear();
            t.header(HDR, BLK_T_IN, sector);
            d.push_back({HDR, 16, false});
            std::vector<std::pair<u64, u32>> where;
            gpa = in_base;
            at = 0;
            for (usize i = std::size(lens); i-- > 0;) {        // the lengths the other way round
                u32 n = lens[i];
                if (at + n > data_len) n = u32(data_len - at);
                if (!n) break;
                where.push_back({gpa, n});
                at += n;
                gpa += n + 0x33;
            }
            ASSERT_EQ(at, data_len);
            // The last data descriptor gets the status byte as its last byte.
            for (usize i = 0; i < where.size(); i++)
                d.push_back({where[i].first, where[i].second + (i + 1 == where.size() ? 1u : 0u), true});
            const u64 status_gpa = where.back().first + where.back().second;
            t.g.put(status_gpa, UNANSWERED, 1);
            t.be.status_gpa = status_gpa;
            EXPECT_EQ(t.run(t.chain(0, d)), data_len + 1);
            EXPECT_EQ(t.g.at(status_gpa)[0], BLK_S_OK);
            EXPECT_EQ(t.be.calls.back().status_then, UNANSWERED);
            std::vector<u8> got;
            for (auto [g, n] : where) got.insert(got.end(), t.g.at(g), t.g.at(g) + n);
            ASSERT_TRUE(got == src) << "IN, order " << int(order) << " sector " << sector;
            // The gaps between the descriptors untouched.
            for (usize i = 0; i + 1 < where.size(); i++)
                for (u64 k = where[i].first + where[i].second; k < where[i + 1].first; k++)
                    ASSERT_EQ(t.g.at(k)[0], 0xcd) << k;
            EXPECT_EQ(t.g.at(status_gpa + 1)[0], 0xcd);
        }
    }
}

// The same through an indirect table: more descriptors than the ring has.
TEST(VirtioBlkBackend, ManyDescriptorsInAnIndirectTable)
{
    Rig t(256 * 1024);
    t.be.order = FakeBackend::Order::odd_then_even;
    const u64 table = BUF + 0x4000;
    constexpr u32 N = 200;                                // data descriptors: 199 of 41 bytes and the rest
    const u32 data_len = 16 * 1024;
    std::vector<u8> src(data_len);
    for (u32 i = 0; i < data_len; i++) src[i] = u8(i * 17 + (i >> 7));
    t.header(HDR, BLK_T_OUT, 5);
    Ring::put_desc(t.g, table, 0, HDR, 16, NEXT, 1);
    u64 gpa = DATA + 0x30000, at = 0;
    for (u32 i = 0; i < N; i++) {
        const u32 n = i + 1 == N ? data_len - u32(at) : 41;
        std::memcpy(t.g.at(gpa), src.data() + at, n);
        Ring::put_desc(t.g, table, i + 1, gpa, n, NEXT, u16(i + 2));
        at += n;
        gpa += n + 3;
    }
    t.g.put(STATUS, UNANSWERED, 1);
    Ring::put_desc(t.g, table, N + 1, STATUS, 1, WRITE, 0);
    t.r.set(0, table, 16 * (N + 2), INDIRECT);
    EXPECT_EQ(t.run(0), 1u);
    ASSERT_EQ(t.status(), BLK_S_OK);
    EXPECT_EQ(std::memcmp(t.be.disk.data() + 5 * 512, src.data(), data_len), 0);
    EXPECT_EQ(t.be.pieces.size(), 5u);                    // 1536 + 3 * 4096 + 2560 bytes
}

} // namespace

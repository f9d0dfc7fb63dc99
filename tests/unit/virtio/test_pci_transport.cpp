// The virtio-pci modern transport's registers (kernel/virtio/pci_transport.cpp):
// the common configuration layout at every width, feature negotiation, Linux's
// bring-up then a virtio-blk read through a notify (MSI-X and INTx), each
// driver misstep ending in DEVICE_NEEDS_RESET with its reason and nothing else
// changed, and a reset that forgets everything.
#include <gtest/gtest.h>

#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kernel/virtio/blk.hpp"
#include "kernel/virtio/pci_transport.hpp"
#include "tests/unit/virtio/fake_ring.hpp"

namespace {

using namespace virtio;
using namespace virtio::common;
using fake::BUF;
using fake::Guest;
using fake::NEXT;
using fake::Ring;
using fake::WRITE;
using Region = PciTransport::Region;

constexpr u64 DISK = 64 * 1024;
constexpr u64 HDR = BUF, DATA = BUF + 0x1000, STATUS = BUF + 0x40000;
constexpr u8 ACK = STATUS_ACKNOWLEDGE, DRV = STATUS_DRIVER, FOK = STATUS_FEATURES_OK, DOK = STATUS_DRIVER_OK;

// MSI-X messages arrive from several vCPUs at once (no transport lock held).
struct Sink final : IrqSink {
    std::mutex m;
    std::vector<u16> msix;
    int intx_raises = 0;
    bool intx = false;
    std::string reason;
    void raise(u16 v) override
    {
        std::lock_guard<std::mutex> g(m);
        msix.push_back(v);
    }
    void raise_intx() override
    {
        intx_raises++;
        intx = true;
    }
    void lower_intx() override { intx = false; }
    void needs_reset(const char *r) override { reason = r; }
};

struct Rig {
    Guest g;
    std::vector<u8> disk = std::vector<u8>(DISK);
    BlkDevice blk;
    BlkVirtio dev{blk};
    Sink sink;
    PciTransport t;
    Ring r{g, 16};

    explicit Rig(u16 msix = 4, u16 queues = 1) : blk(disk.data(), DISK, false, queues), t(dev, g.mem, sink, msix)
    {
        for (u64 i = 0; i < DISK; i++) disk[i] = u8(i * 7 + i / 512);
    }
    u64 rd(u32 off, u8 size) { return t.read(Region::common, off, size); }
    void wr(u32 off, u8 size, u64 v) { t.write(Region::common, off, size, v); }
    u8 status() { return u8(rd(DEVICE_STATUS, 1)); }
    u64 offered() { return dev.features(); }
    void features(u64 f)
    {
        wr(DRIVER_FEATURE_SELECT, 4, 0);
        wr(DRIVER_FEATURE, 4, u32(f));
        wr(DRIVER_FEATURE_SELECT, 4, 1);
        wr(DRIVER_FEATURE, 4, f >> 32);
    }
    // Queue `q` on ring `ring`, as Linux's vp_modern_find_vqs sets one up.
    void setup_queue(u16 q, const Ring &ring, u16 vector)
    {
        wr(QUEUE_SELECT, 2, q);
        EXPECT_EQ(rd(QUEUE_SIZE, 2), BlkVirtio::QUEUE_SIZE);
        wr(QUEUE_SIZE, 2, ring.size);
        const std::pair<u32, u64> rings[] = {{QUEUE_DESC, ring.desc}, {QUEUE_DRIVER, ring.avail}, {QUEUE_DEVICE, ring.used}};
        for (auto [off, a] : rings) {
            wr(off, 4, u32(a));
            wr(off + 4, 4, a >> 32);
        }
        wr(QUEUE_MSIX_VECTOR, 2, vector);
        EXPECT_EQ(rd(QUEUE_NOTIFY_OFF, 2), q);
    }
    // Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK, the queue, DRIVER_OK (3.1.1).
    void bring_up(u16 config_vector = 0, u16 queue_vector = 1)
    {
        wr(DEVICE_STATUS, 1, 0);
        ASSERT_EQ(status(), 0);
        wr(DEVICE_STATUS, 1, ACK);
        wr(DEVICE_STATUS, 1, ACK | DRV);
        wr(DEVICE_FEATURE_SELECT, 4, 0);
        u64 f = rd(DEVICE_FEATURE, 4);
        wr(DEVICE_FEATURE_SELECT, 4, 1);
        f |= rd(DEVICE_FEATURE, 4) << 32;
        ASSERT_EQ(f, offered());
        features(f);
        wr(DEVICE_STATUS, 1, ACK | DRV | FOK);
        ASSERT_EQ(status(), ACK | DRV | FOK);
        wr(CONFIG_MSIX_VECTOR, 2, config_vector);
        setup_queue(0, r, queue_vector);
        wr(QUEUE_ENABLE, 2, 1);
        ASSERT_EQ(rd(QUEUE_ENABLE, 2), 1u);
        wr(DEVICE_STATUS, 1, ACK | DRV | FOK | DOK);
        ASSERT_EQ(status(), ACK | DRV | FOK | DOK);
    }
    // A one-sector read of `sector` as chain 0..2, offered on r.
    void offer_read(u64 sector)
    {
        g.put(HDR, BLK_T_IN, 4);
        g.put(HDR + 4, 0, 4);
        g.put(HDR + 8, sector, 8);
        g.put(STATUS, 0xee, 1);
        r.set(0, HDR, 16, NEXT, 1);
        r.set(1, DATA, 512, NEXT | WRITE, 2);
        r.set(2, STATUS, 1, WRITE);
        r.offer(0);
    }
    void notify(u16 q) { t.write(Region::notify, q * PciTransport::NOTIFY_MULTIPLIER, 2, q); }
    // What a misstep must leave alone: every register but device_status.
    std::vector<u64> registers()
    {
        std::vector<u64> v;
        for (u32 off = 0; off < PciTransport::COMMON_BYTES; off++)
            if (off != DEVICE_STATUS) v.push_back(rd(off, 1));
        return v;
    }
};

TEST(VirtioPci, RegistersAfterReset)
{
    Rig t;
    EXPECT_EQ(t.rd(NUM_QUEUES, 2), 1u);
    EXPECT_EQ(t.status(), 0);
    EXPECT_EQ(t.rd(CONFIG_MSIX_VECTOR, 2), NO_VECTOR);
    EXPECT_EQ(t.rd(QUEUE_SIZE, 2), BlkVirtio::QUEUE_SIZE);
    EXPECT_EQ(t.rd(QUEUE_MSIX_VECTOR, 2), NO_VECTOR);
    EXPECT_EQ(t.rd(QUEUE_ENABLE, 2), 0u);
    EXPECT_EQ(t.rd(QUEUE_DESC, 4), 0u);
    EXPECT_EQ(t.rd(DEVICE_FEATURE, 4), u32(t.offered()));
    t.wr(DEVICE_FEATURE_SELECT, 4, 1);
    EXPECT_EQ(t.rd(DEVICE_FEATURE, 4), t.offered() >> 32);
    EXPECT_EQ(t.rd(DEVICE_FEATURE, 4) & 1, 1u);   // VERSION_1 is bit 32
    t.wr(DEVICE_FEATURE_SELECT, 4, 2);
    EXPECT_EQ(t.rd(DEVICE_FEATURE, 4), 0u);
    EXPECT_EQ(t.t.region_bytes(Region::common), 0x3cu);
    EXPECT_EQ(t.t.region_bytes(Region::notify), 4u);
    EXPECT_EQ(t.t.region_bytes(Region::isr), 1u);
    EXPECT_EQ(t.t.region_bytes(Region::device), BLK_CONFIG_SIZE);
    EXPECT_STREQ(t.t.last_error(), "");
    // The device region is virtio-blk's configuration: capacity in sectors.
    EXPECT_EQ(t.t.read(Region::device, 0, 8), DISK / 512);
    EXPECT_EQ(t.t.read(Region::device, BLK_CONFIG_SIZE, 4), 0u);
}

TEST(VirtioPci, FeaturesOkRefusedWithoutVersion1OrWithUnofferedBits)
{
    Rig t;
    t.wr(DEVICE_STATUS, 1, ACK | DRV);
    const u64 bad[] = {
        t.offered() & ~F_VERSION_1,   // legacy: refused, this transport is modern only
        t.offered() | 1ull << 1,      // SIZE_MAX, not offered
        t.offered() | 1ull << 33,     // ACCESS_PLATFORM, not offered
    };
    for (u64 f : bad) {
        t.features(f);
        t.wr(DEVICE_STATUS, 1, ACK | DRV | FOK);
        EXPECT_EQ(t.status(), ACK | DRV) << std::hex << f;   // the bit stays clear; no NEEDS_RESET
    }
    // A subset with VERSION_1 is accepted, and then the features are frozen.
    t.features(F_VERSION_1 | BLK_F_FLUSH);
    t.wr(DEVICE_STATUS, 1, ACK | DRV | FOK);
    EXPECT_EQ(t.status(), ACK | DRV | FOK);
    t.features(t.offered());
    t.wr(DRIVER_FEATURE_SELECT, 4, 0);
    EXPECT_EQ(t.rd(DRIVER_FEATURE, 4), BLK_F_FLUSH);
    EXPECT_EQ(t.t.stats().errors, 0u);
}

TEST(VirtioPci, LinuxBringUpThenABlkReadWithMsix)
{
    Rig t;
    t.bring_up(0, 1);
    EXPECT_EQ(t.rd(QUEUE_MSIX_VECTOR, 2), 1u);
    EXPECT_EQ(t.rd(CONFIG_MSIX_VECTOR, 2), 0u);
    t.offer_read(5);
    t.notify(0);
    EXPECT_EQ(t.r.used_idx(), 1u);
    EXPECT_EQ(t.r.used_id(0), 0u);
    EXPECT_EQ(t.r.used_len(0), 513u);
    EXPECT_EQ(t.g.at(STATUS)[0], BLK_S_OK);
    EXPECT_EQ(std::memcmp(t.g.at(DATA), t.disk.data() + 5 * 512, 512), 0);
    EXPECT_EQ(t.sink.msix, std::vector<u16>{1});
    EXPECT_EQ(t.sink.intx_raises, 0);
    EXPECT_EQ(t.t.read(Region::isr, 0, 1), 0u);
    const TransportStats s = t.t.stats();
    EXPECT_EQ(s.notifies, 1u);
    EXPECT_EQ(s.interrupts, 1u);
    EXPECT_EQ(s.resets, 1u);
    EXPECT_EQ(s.errors, 0u);
    EXPECT_EQ(t.blk.stats().requests, 1u);
    // Suppression is the engine's (EVENT_IDX was negotiated): used_event 5 asks for none yet.
    t.r.set_used_event(5);
    t.offer_read(6);
    t.notify(0);
    EXPECT_EQ(t.r.used_idx(), 2u);
    EXPECT_EQ(t.sink.msix.size(), 1u);
    EXPECT_TRUE(t.g.guards_ok());
}

TEST(VirtioPci, IntxSetsIsrAndAReadClearsIt)
{
    Rig t(0);   // no MSI-X table: every vector reads back NO_VECTOR
    t.bring_up(0, 0);
    EXPECT_EQ(t.rd(QUEUE_MSIX_VECTOR, 2), NO_VECTOR);
    EXPECT_EQ(t.rd(CONFIG_MSIX_VECTOR, 2), NO_VECTOR);
    t.offer_read(1);
    t.notify(0);
    EXPECT_EQ(t.r.used_idx(), 1u);
    EXPECT_TRUE(t.sink.msix.empty());
    EXPECT_EQ(t.sink.intx_raises, 1);
    EXPECT_TRUE(t.sink.intx);
    EXPECT_EQ(t.t.read(Region::isr, 0, 1), ISR_QUEUE);
    EXPECT_FALSE(t.sink.intx);
    EXPECT_EQ(t.t.read(Region::isr, 0, 1), 0u);
    // A vector beyond the table reads back NO_VECTOR (4.1.5.1.2): Linux then falls back.
    Rig m(2);
    m.wr(CONFIG_MSIX_VECTOR, 2, 2);
    EXPECT_EQ(m.rd(CONFIG_MSIX_VECTOR, 2), NO_VECTOR);
    m.wr(CONFIG_MSIX_VECTOR, 2, 1);
    EXPECT_EQ(m.rd(CONFIG_MSIX_VECTOR, 2), 1u);
}

// Each misstep: NEEDS_RESET, its reason, a configuration interrupt, nothing else changed.
struct Misstep {
    const char *reason;
    void (*before)(Rig &);   // up to the misstep
    void (*step)(Rig &);
    u8 status;               // device_status after, NEEDS_RESET aside
};

TEST(VirtioPci, EachMisstepSetsNeedsReset)
{
    const Misstep cases[] = {
        {"DRIVER_OK before FEATURES_OK",
         [](Rig &t) { t.wr(DEVICE_STATUS, 1, ACK | DRV); },
         [](Rig &t) { t.wr(DEVICE_STATUS, 1, ACK | DRV | DOK); }, ACK | DRV},
        {"queue 0 enabled before FEATURES_OK",
         [](Rig &t) {
             t.wr(DEVICE_STATUS, 1, ACK | DRV);
             t.setup_queue(0, t.r, 1);
         },
         [](Rig &t) { t.wr(QUEUE_ENABLE, 2, 1); }, ACK | DRV},
        {"queue 0 size 24 not a power of two <= 256",
         [](Rig &t) {
             t.wr(DEVICE_STATUS, 1, ACK | DRV);
             t.features(F_VERSION_1);
             t.wr(DEVICE_STATUS, 1, ACK | DRV | FOK);
             t.setup_queue(0, t.r, 1);
             t.wr(QUEUE_SIZE, 2, 24);
         },
         [](Rig &t) { t.wr(QUEUE_ENABLE, 2, 1); }, ACK | DRV | FOK},
        {"queue 0 size 512 not a power of two <= 256",
         [](Rig &t) {
             t.wr(DEVICE_STATUS, 1, ACK | DRV);
             t.features(F_VERSION_1);
             t.wr(DEVICE_STATUS, 1, ACK | DRV | FOK);
             t.setup_queue(0, t.r, 1);
             t.wr(QUEUE_SIZE, 2, 512);
         },
         [](Rig &t) { t.wr(QUEUE_ENABLE, 2, 1); }, ACK | DRV | FOK},
        {"queue 0: ring outside guest RAM (0x1000)",
         [](Rig &t) {
             t.wr(DEVICE_STATUS, 1, ACK | DRV);
             t.features(F_VERSION_1);
             t.wr(DEVICE_STATUS, 1, ACK | DRV | FOK);
             t.setup_queue(0, t.r, 1);
             t.wr(QUEUE_DESC, 4, 0x1000);
         },
         [](Rig &t) { t.wr(QUEUE_ENABLE, 2, 1); }, ACK | DRV | FOK},
        {"notify of queue 0 before DRIVER_OK",
         [](Rig &t) {
             t.wr(DEVICE_STATUS, 1, ACK | DRV);
             t.features(F_VERSION_1);
             t.wr(DEVICE_STATUS, 1, ACK | DRV | FOK);
             t.setup_queue(0, t.r, 1);
             t.wr(QUEUE_ENABLE, 2, 1);
             t.offer_read(0);
         },
         [](Rig &t) { t.notify(0); }, ACK | DRV | FOK},
        {"queue 0: avail ring head beyond the queue (0x10)",
         [](Rig &t) {
             t.bring_up(0, 1);
             t.r.offer(16);
         },
         [](Rig &t) { t.notify(0); }, ACK | DRV | FOK | DOK},
    };
    for (const Misstep &c : cases) {
        SCOPED_TRACE(c.reason);
        Rig t;
        t.wr(CONFIG_MSIX_VECTOR, 2, 3);
        c.before(t);
        // bring_up programs its own config vector (0).
        const u16 config_vector = u16(t.rd(CONFIG_MSIX_VECTOR, 2));
        const std::vector<u64> regs = t.registers();
        const usize raised = t.sink.msix.size();
        c.step(t);
        EXPECT_EQ(t.status(), c.status | STATUS_NEEDS_RESET);
        EXPECT_STREQ(t.t.last_error(), c.reason);
        EXPECT_EQ(t.sink.reason, c.reason);
        EXPECT_EQ(t.registers(), regs);
        ASSERT_EQ(t.sink.msix.size(), raised + 1);
        EXPECT_EQ(t.sink.msix.back(), config_vector);
        EXPECT_EQ(t.t.stats().errors, 1u);
        EXPECT_EQ(t.blk.stats().requests, 0u);   // nothing serviced
        // Stopped: nothing is serviced, a second misstep keeps the first reason.
        t.offer_read(0);
        t.notify(0);
        t.wr(DEVICE_STATUS, 1, ACK | DRV | DOK);
        EXPECT_EQ(t.blk.stats().requests, 0u);
        EXPECT_STREQ(t.t.last_error(), c.reason);
        EXPECT_EQ(t.t.stats().errors, 1u);
        // The driver's way out.
        t.bring_up(0, 1);
        EXPECT_STREQ(t.t.last_error(), "");
    }
}

TEST(VirtioPci, NeedsResetRaisesIsrConfigOnIntx)
{
    Rig t(0);
    t.wr(DEVICE_STATUS, 1, ACK | DRV | DOK);
    EXPECT_TRUE(t.sink.intx);
    EXPECT_EQ(t.t.read(Region::isr, 0, 1), ISR_CONFIG);
    EXPECT_FALSE(t.sink.intx);
}

TEST(VirtioPci, ResetForgetsEverything)
{
    Rig t(0);
    const std::vector<u64> fresh = t.registers();
    t.bring_up();
    t.offer_read(2);
    t.notify(0);
    EXPECT_TRUE(t.sink.intx);
    t.wr(QUEUE_SELECT, 2, 0);
    t.wr(DEVICE_FEATURE_SELECT, 4, 1);
    t.wr(DRIVER_FEATURE_SELECT, 4, 1);
    t.wr(DEVICE_STATUS, 1, 0);
    EXPECT_EQ(t.status(), 0);
    EXPECT_FALSE(t.sink.intx);
    EXPECT_EQ(t.t.read(Region::isr, 0, 1), 0u);
    EXPECT_EQ(t.registers(), fresh);
    t.wr(DRIVER_FEATURE_SELECT, 4, 1);
    EXPECT_EQ(t.rd(DRIVER_FEATURE, 4), 0u);
    EXPECT_EQ(t.t.stats().resets, 2u);
    // After a fresh bring-up the queue restarts at index 0.
    t.r.idx = 0;
    t.g.put(t.r.used + 2, 0, 2);
    t.bring_up();
    t.offer_read(3);
    t.notify(0);
    EXPECT_EQ(t.r.used_idx(), 1u);
    EXPECT_EQ(t.g.at(STATUS)[0], BLK_S_OK);
}

TEST(VirtioPci, QueueFieldsReadOnlyOnceEnabledAndEnableZeroIgnored)
{
    Rig t;
    t.bring_up();
    const std::vector<u64> regs = t.registers();
    t.wr(QUEUE_SIZE, 2, 8);
    t.wr(QUEUE_DESC, 4, 0x4000);
    t.wr(QUEUE_DRIVER + 4, 4, 1);
    t.wr(QUEUE_DEVICE, 4, 0);
    t.wr(QUEUE_ENABLE, 2, 0);
    EXPECT_EQ(t.registers(), regs);
    // Read-only fields.
    t.wr(NUM_QUEUES, 2, 9);
    t.wr(CONFIG_GENERATION, 1, 9);
    t.wr(QUEUE_NOTIFY_OFF, 2, 9);
    t.wr(DEVICE_FEATURE, 4, 0);
    t.wr(QUEUE_NOTIFY_DATA, 2, 9);
    t.wr(QUEUE_RESET, 2, 1);
    EXPECT_EQ(t.registers(), regs);
    // The queue still runs; its vector may move.
    t.wr(QUEUE_MSIX_VECTOR, 2, 2);
    t.offer_read(0);
    t.notify(0);
    EXPECT_EQ(t.r.used_idx(), 1u);
    EXPECT_EQ(t.sink.msix, std::vector<u16>{2});
}

TEST(VirtioPci, OddWidthsAndOffsets)
{
    Rig t;
    // Byte by byte into a 64-bit address, read back whole and by halves.
    for (u32 i = 0; i < 8; i++) t.wr(QUEUE_DESC + i, 1, 0x10 * (i + 1));
    EXPECT_EQ(t.rd(QUEUE_DESC, 8), 0x8070605040302010ull);
    EXPECT_EQ(t.rd(QUEUE_DESC + 4, 4), 0x80706050u);
    EXPECT_EQ(t.rd(QUEUE_DESC + 2, 2), 0x4030u);
    t.wr(QUEUE_DRIVER, 8, 0x1122334455667788ull);
    EXPECT_EQ(t.rd(QUEUE_DRIVER + 4, 4), 0x11223344u);
    // One 4-byte write over device_status, config_generation (read-only) and queue_select.
    t.wr(DEVICE_STATUS, 4, 0x00000101);   // status ACK, queue_select 0
    EXPECT_EQ(t.rd(DEVICE_STATUS, 4), 0x00000001u);
    // One 4-byte read over config_msix_vector and num_queues.
    EXPECT_EQ(t.rd(CONFIG_MSIX_VECTOR, 4), 0x0001ffffu);
    // Half of a driver_feature word.
    t.wr(DRIVER_FEATURE + 1, 1, 0xab);
    EXPECT_EQ(t.rd(DRIVER_FEATURE, 4), 0xab00u);
    // Misaligned and odd sizes: read 0, write nothing.
    const std::vector<u64> regs = t.registers();
    EXPECT_EQ(t.rd(QUEUE_SIZE + 1, 2), 0u);
    EXPECT_EQ(t.rd(QUEUE_DESC + 2, 4), 0u);
    EXPECT_EQ(t.rd(QUEUE_SIZE, 3), 0u);
    EXPECT_EQ(t.rd(QUEUE_DESC, 16), 0u);
    t.wr(QUEUE_SIZE + 1, 2, 0xffff);
    t.wr(QUEUE_DESC + 4, 8, ~0ull);
    t.wr(QUEUE_SIZE, 0, 1);
    EXPECT_EQ(t.registers(), regs);
    // Past the structure and unimplemented fields read 0.
    for (u32 off : {0x3cu, 0x40u, 0x100u, 0xfffffff8u}) {
        EXPECT_EQ(t.rd(off, 4), 0u) << off;
        t.wr(off, 4, ~0u);
    }
    EXPECT_EQ(t.rd(QUEUE_NOTIFY_DATA, 2), 0u);
    EXPECT_EQ(t.rd(QUEUE_RESET, 2), 0u);
    EXPECT_EQ(t.t.read(Region::isr, 1, 1), 0u);
    EXPECT_EQ(t.t.read(Region::notify, 0, 2), 0u);
    EXPECT_EQ(t.registers(), regs);
    // A queue_select past the queues: size 0 ("not available"), writes dropped.
    t.wr(QUEUE_SELECT, 2, 1);
    EXPECT_EQ(t.rd(QUEUE_SIZE, 2), 0u);
    t.wr(QUEUE_SIZE, 2, 16);
    t.wr(QUEUE_DESC, 4, 0x1000);
    EXPECT_EQ(t.rd(QUEUE_SIZE, 2), 0u);
    EXPECT_EQ(t.rd(QUEUE_DESC, 4), 0u);
    EXPECT_EQ(t.rd(QUEUE_NOTIFY_OFF, 2), 0u);
}

TEST(VirtioPci, NotifyAddressesAndStrayWrites)
{
    Rig t;
    t.bring_up();
    t.offer_read(0);
    // Inside the slot, past the last queue, or in the ISR: not a notify.
    t.t.write(Region::notify, 2, 2, 0);
    t.t.write(Region::notify, 4, 2, 1);
    t.t.write(Region::isr, 0, 1, 0xff);
    EXPECT_EQ(t.r.used_idx(), 0u);
    EXPECT_EQ(t.t.stats().errors, 0u);
    // The value is not looked at: the slot says which queue; a 4-byte write works too.
    t.t.write(Region::notify, 0, 4, 7);
    EXPECT_EQ(t.r.used_idx(), 1u);
    EXPECT_EQ(t.t.stats().notifies, 3u);
}

// A device whose batches end at their budget, to see run_pending() finish them.
struct BudgetDevice final : VirtioDevice {
    int calls = 0;
    u16 device_id() const override { return 0x1f; }
    u64 features() const override { return F_VERSION_1; }
    u16 num_queues() const override { return 2; }
    u16 queue_max_size() const override { return 4; }
    u32 config_size() const override { return 0; }
    u64 config_read(u32, u8) const override { return 0; }
    void config_write(u32, u8, u64) override {}
    Serviced service(u16, Virtqueue &) override { return {true, ++calls < 3}; }
    void reset() override {}
};

TEST(VirtioPci, AgainIsLeftForRunPending)
{
    Guest g;
    BudgetDevice dev;
    Sink sink;
    PciTransport t(dev, g.mem, sink, 4);
    // Each batch left pending is also said in the owner's word (GuestPlatform::attention: the
    // backends' exit loops come back to the run loop, which calls run_pending).
    u32 word = 0x1;
    t.signal_pending(&word, 0x10);
    t.write(Region::common, DEVICE_STATUS, 1, ACK | DRV);
    t.write(Region::common, DRIVER_FEATURE_SELECT, 4, 1);
    t.write(Region::common, DRIVER_FEATURE, 4, 1);
    t.write(Region::common, DEVICE_STATUS, 1, ACK | DRV | FOK);
    Ring r(g, 4);
    t.write(Region::common, QUEUE_SELECT, 2, 1);
    t.write(Region::common, QUEUE_SIZE, 2, 4);
    t.write(Region::common, QUEUE_DESC, 8, r.desc);
    t.write(Region::common, QUEUE_DRIVER, 8, r.avail);
    t.write(Region::common, QUEUE_DEVICE, 8, r.used);
    t.write(Region::common, QUEUE_MSIX_VECTOR, 2, 3);
    t.write(Region::common, QUEUE_ENABLE, 2, 1);
    t.write(Region::common, DEVICE_STATUS, 1, ACK | DRV | FOK | DOK);
    EXPECT_EQ(word, 0x1u);
    t.write(Region::notify, 4, 2, 1);
    EXPECT_EQ(word, 0x11u);   // its other bits kept
    word = 0;
    EXPECT_TRUE(t.run_pending());
    EXPECT_EQ(word, 0x10u);   // the second batch ended at its budget too
    word = 0;
    EXPECT_FALSE(t.run_pending());
    EXPECT_EQ(word, 0u);      // the third finished: nothing left, nothing said
    EXPECT_FALSE(t.run_pending());
    EXPECT_EQ(dev.calls, 3);
    EXPECT_EQ(sink.msix, (std::vector<u16>{3, 3, 3}));
    EXPECT_EQ(t.stats().notifies, 1u);
    // A reset forgets a pending queue.
    dev.calls = 0;
    t.write(Region::notify, 4, 2, 1);
    t.write(Region::common, DEVICE_STATUS, 1, 0);
    EXPECT_FALSE(t.run_pending());
    EXPECT_EQ(dev.calls, 1);
    EXPECT_EQ(t.stats().errors, 0u);
}

// Two vCPUs each drive their own queue while a third reads registers: every
// request is answered once, and the queues' interrupts go to their vectors.
TEST(VirtioPci, QueuesOfOneDeviceFromSeveralVcpus)
{
    Rig t(4, 2);
    Ring r1(t.g, 16, fake::DESC + 0x8000, fake::AVAIL + 0x8000, fake::USED + 0x8000);
    t.wr(DEVICE_STATUS, 1, ACK | DRV);
    t.features(t.offered() & ~F_EVENT_IDX);
    t.wr(DEVICE_STATUS, 1, ACK | DRV | FOK);
    t.setup_queue(0, t.r, 1);
    t.wr(QUEUE_ENABLE, 2, 1);
    t.setup_queue(1, r1, 2);
    t.wr(QUEUE_ENABLE, 2, 1);
    t.wr(DEVICE_STATUS, 1, ACK | DRV | FOK | DOK);
    ASSERT_EQ(t.status(), ACK | DRV | FOK | DOK);

    constexpr int N = 200;
    auto drive = [&](Ring &r, u16 q, u64 buf) {
        for (int i = 0; i < N; i++) {
            const u16 d = u16(2 * (i % 8));
            Ring::put_desc(t.g, r.desc, d, buf, 16, NEXT, u16(d + 1));
            Ring::put_desc(t.g, r.desc, d + 1, buf + 16, 1, WRITE, 0);
            t.g.put(buf, BLK_T_FLUSH, 4);
            r.offer(d);
            t.notify(q);
            while (r.used_idx() != u16(i + 1)) std::this_thread::yield();
        }
    };
    std::thread a([&] { drive(t.r, 0, BUF); });
    std::thread b([&] { drive(r1, 1, BUF + 0x100); });
    std::thread c([&] {
        for (int i = 0; i < 2000; i++) (void)t.t.read(Region::common, QUEUE_DESC, 4);
    });
    a.join();
    b.join();
    c.join();
    EXPECT_EQ(t.blk.stats().flushes, 2u * N);
    EXPECT_EQ(t.t.stats().errors, 0u) << t.t.last_error();
    usize v1 = 0, v2 = 0;
    for (u16 v : t.sink.msix) (v == 1 ? v1 : v2)++;
    EXPECT_EQ(v1, usize(N));
    EXPECT_EQ(v2, usize(N));
}

} // namespace

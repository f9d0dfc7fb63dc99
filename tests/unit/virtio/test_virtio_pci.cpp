// A virtio device as a PCI function (kernel/virtio/virtio_pci.cpp): a
// virtio-blk function plugged into a PciBus, driven only the way a guest can
// reach it (ECAM and 0xCF8/0xCFC configuration cycles, MMIO in its BAR), as
// Linux's virtio_pci_modern probe does: IDs, BAR sizing and placement, the
// capability walk, MSI-X set-up, the status/feature/queue bring-up, a blk read
// through the notify region and its MSI message; then INTx without MSI-X, the
// BAR's holes, and a driver misstep reported to the hypervisor's callback.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "kernel/pci/pci.hpp"
#include "kernel/virtio/blk.hpp"
#include "kernel/virtio/virtio_pci.hpp"
#include "tests/unit/virtio/fake_ring.hpp"

namespace {

using namespace virtio;
using namespace virtio::common;
using fake::BUF;
using fake::Guest;
using fake::NEXT;
using fake::Ring;
using fake::WRITE;

constexpr u64 ECAM = 0xe0000000;
constexpr u32 GSI = 16;
constexpr u32 DEV = 3;                         // device number on bus 0
constexpr u64 BAR_GPA = 0xfe000000;
constexpr u64 DISK = 64 * 1024;
constexpr u64 HDR = BUF, DATA = BUF + 0x1000, STATUS = BUF + 0x40000;
constexpr u8 ACK = STATUS_ACKNOWLEDGE, DRV = STATUS_DRIVER, FOK = STATUS_FEATURES_OK, DOK = STATUS_DRIVER_OK;
constexpr u64 MSI_ADDR = 0xfee01000;           // local APIC 1
constexpr u32 MSI_DATA_BASE = 0x40;

struct Msg {
    u64 addr;
    u32 data;
    bool operator==(const Msg &o) const { return addr == o.addr && data == o.data; }
};
struct Line {
    u32 gsi;
    bool level;
};
struct Sinks {
    std::vector<Msg> msis;
    std::vector<Line> lines;
    std::vector<std::string> reports;
};
void on_msi(void *ctx, u64 addr, u32 data) { static_cast<Sinks *>(ctx)->msis.push_back({addr, data}); }
void on_intx(void *ctx, u32 gsi, bool level) { static_cast<Sinks *>(ctx)->lines.push_back({gsi, level}); }
void on_report(void *ctx, const char *reason) { static_cast<Sinks *>(ctx)->reports.push_back(reason); }

// One virtio structure as its capability describes it.
struct Where {
    bool found = false;
    u8 bar = 0xff;
    u32 offset = 0, length = 0;
};

struct Rig {
    Guest g;
    std::vector<u8> disk = std::vector<u8>(DISK);
    BlkDevice blk{disk.data(), DISK, false};
    BlkVirtio dev{blk};
    Sinks sinks;
    PciBus bus{ECAM, GSI, {on_msi, on_intx, &sinks}};
    VirtioPciFunction fn{dev, g.mem, on_report, &sinks};
    Ring r{g, 16};

    // What the driver learnt from the probe.
    u64 bar = 0;
    Where common_cfg, notify, isr, device;
    u32 notify_mult = 0;
    u8 msix_cap = 0;
    u16 msix_size = 0;
    u8 table_bir = 0xff, pba_bir = 0xff;
    u32 table_off = 0, pba_off = 0;

    Rig()
    {
        for (u64 i = 0; i < DISK; i++) disk[i] = u8(i * 7 + i / 512);
        EXPECT_TRUE(fn.ok());
        EXPECT_TRUE(bus.plug(DEV, fn));
    }

    // Configuration space through ECAM (the MCFG window), as Linux does after ACPI.
    u32 cfg(u32 reg, u8 size = 4)
    {
        u64 v = 0;
        const u64 gpa = ECAM + (u64(DEV) << 15) + reg;
        EXPECT_TRUE(bus.covers(gpa));
        bus.mmio(0, gpa, size, false, v);
        return u32(v);
    }
    void cfg_w(u32 reg, u32 v, u8 size = 4)
    {
        u64 x = v;
        bus.mmio(0, ECAM + (u64(DEV) << 15) + reg, size, true, x);
    }
    // And through 0xCF8/0xCFC, as Linux's first probe does.
    u32 cf8(u32 reg)
    {
        u32 a = 0x80000000u | DEV << 11 | reg;
        EXPECT_TRUE(bus.io(PciBus::CONFIG_ADDRESS, 4, false, a));
        u32 v = 0;
        EXPECT_TRUE(bus.io(PciBus::CONFIG_DATA, 4, true, v));
        return v;
    }
    u64 mmio(u64 gpa, u8 size)
    {
        u64 v = 0;
        EXPECT_TRUE(bus.covers(gpa)) << std::hex << gpa;
        bus.mmio(1, gpa, size, false, v);
        return v;
    }
    void mmio_w(u64 gpa, u8 size, u64 v)
    {
        EXPECT_TRUE(bus.covers(gpa)) << std::hex << gpa;
        bus.mmio(1, gpa, size, true, v);
    }
    u64 at(const Where &w, u32 off) const { return bar + w.offset + off; }
    u64 rd(u32 off, u8 size) { return mmio(at(common_cfg, off), size); }
    void wr(u32 off, u8 size, u64 v) { mmio_w(at(common_cfg, off), size, v); }
    u8 status() { return u8(rd(DEVICE_STATUS, 1)); }

    // pci_setup_device + the BAR's sizing, then the resource assignment and
    // pci_enable_device (memory decode) + pci_set_master.
    void enumerate()
    {
        ASSERT_EQ(cf8(0x00), 0x10421af4u);
        ASSERT_EQ(cfg(0x00), 0x10421af4u);
        const u32 bar0 = cfg(0x10);
        ASSERT_EQ(bar0 & 0xf, 0x4u);                    // memory, 64-bit, not prefetchable
        cfg_w(0x10, ~0u);
        cfg_w(0x14, ~0u);
        const u64 sizing = (u64(cfg(0x14)) << 32 | cfg(0x10)) & ~0xfull;
        ASSERT_EQ(~sizing + 1, VirtioPciFunction::BAR_BYTES);
        for (u32 b = 2; b < 6; b++) EXPECT_EQ(cfg(0x10 + 4 * b), 0u) << b;   // nothing else, no I/O BAR
        cfg_w(0x10, u32(BAR_GPA));
        cfg_w(0x14, u32(BAR_GPA >> 32));
        bar = BAR_GPA;
        EXPECT_FALSE(bus.covers(bar));                  // not until memory decode is on
        cfg_w(0x04, cfg(0x04, 2) | 0x6, 2);             // memory space, bus master
    }

    // virtio_pci_find_capability for each cfg_type, and the MSI-X capability.
    void walk_caps()
    {
        ASSERT_TRUE(cfg(0x04) >> 16 & 0x10);             // status: capabilities list
        u32 at = cfg(0x34, 1) & ~3u;
        int guard = 0;
        while (at && guard++ < 48) {
            const u8 id = u8(cfg(at, 1));
            if (id == 0x09) {
                const u8 len = u8(cfg(at + 2, 1)), type = u8(cfg(at + 3, 1));
                EXPECT_GE(len, 16u);
                Where w{true, u8(cfg(at + 4, 1)), cfg(at + 8), cfg(at + 12)};
                if (type == 1) common_cfg = w;
                if (type == 2) {
                    EXPECT_EQ(len, 20u);
                    notify = w;
                    notify_mult = cfg(at + 16);
                }
                if (type == 3) isr = w;
                if (type == 4) device = w;
            } else if (id == 0x11) {
                msix_cap = u8(at);
                msix_size = u16((cfg(at + 2, 2) & 0x7ff) + 1);
                const u32 t = cfg(at + 4), p = cfg(at + 8);
                table_bir = u8(t & 7), table_off = t & ~7u;
                pba_bir = u8(p & 7), pba_off = p & ~7u;
            }
            at = cfg(at + 1, 1) & ~3u;
        }
        ASSERT_TRUE(common_cfg.found && notify.found && isr.found && device.found && msix_cap);
    }

    // vp_request_msix_vectors: enable with the function masked, program the
    // table, unmask the entries, then the function.
    void enable_msix()
    {
        const u16 ctl = u16(cfg(msix_cap + 2, 2));
        cfg_w(msix_cap + 2, ctl | 0xc000, 2);
        const u64 table = bar + table_off;
        for (u16 v = 0; v < msix_size; v++) {
            mmio_w(table + 16 * v, 4, MSI_ADDR);
            mmio_w(table + 16 * v + 4, 4, 0);
            mmio_w(table + 16 * v + 8, 4, MSI_DATA_BASE + v);
            mmio_w(table + 16 * v + 12, 4, 0);
        }
        cfg_w(msix_cap + 2, (ctl | 0x8000) & ~0x4000u, 2);
    }

    // virtio_pci_modern's bring-up through the common configuration (3.1.1).
    void bring_up(u16 config_vector, u16 queue_vector)
    {
        wr(DEVICE_STATUS, 1, 0);
        ASSERT_EQ(status(), 0);
        wr(DEVICE_STATUS, 1, ACK);
        wr(DEVICE_STATUS, 1, ACK | DRV);
        wr(DEVICE_FEATURE_SELECT, 4, 0);
        u64 f = rd(DEVICE_FEATURE, 4);
        wr(DEVICE_FEATURE_SELECT, 4, 1);
        f |= rd(DEVICE_FEATURE, 4) << 32;
        ASSERT_TRUE(f & F_VERSION_1);
        wr(DRIVER_FEATURE_SELECT, 4, 0);
        wr(DRIVER_FEATURE, 4, u32(f));
        wr(DRIVER_FEATURE_SELECT, 4, 1);
        wr(DRIVER_FEATURE, 4, f >> 32);
        wr(DEVICE_STATUS, 1, ACK | DRV | FOK);
        ASSERT_EQ(status(), ACK | DRV | FOK);
        // Linux writes the vector and reads it back: NO_VECTOR means "refused".
        wr(CONFIG_MSIX_VECTOR, 2, config_vector);
        ASSERT_EQ(rd(CONFIG_MSIX_VECTOR, 2), config_vector);
        ASSERT_EQ(rd(NUM_QUEUES, 2), 1u);
        wr(QUEUE_SELECT, 2, 0);
        ASSERT_EQ(rd(QUEUE_SIZE, 2), BlkVirtio::QUEUE_SIZE);
        wr(QUEUE_SIZE, 2, r.size);
        const std::pair<u32, u64> rings[] = {{QUEUE_DESC, r.desc}, {QUEUE_DRIVER, r.avail}, {QUEUE_DEVICE, r.used}};
        for (auto [off, a] : rings) {
            wr(off, 4, u32(a));
            wr(off + 4, 4, a >> 32);
        }
        wr(QUEUE_MSIX_VECTOR, 2, queue_vector);
        ASSERT_EQ(rd(QUEUE_MSIX_VECTOR, 2), queue_vector);
        wr(QUEUE_ENABLE, 2, 1);
        wr(DEVICE_STATUS, 1, ACK | DRV | FOK | DOK);
        ASSERT_EQ(status(), ACK | DRV | FOK | DOK);
    }

    // A one-sector read of `sector`, offered on r, and the notify (vp_notify: a 16-bit write of the queue index).
    void read_sector(u64 sector)
    {
        g.put(HDR, BLK_T_IN, 4);
        g.put(HDR + 4, 0, 4);
        g.put(HDR + 8, sector, 8);
        g.put(STATUS, 0xee, 1);
        r.set(0, HDR, 16, NEXT, 1);
        r.set(1, DATA, 512, NEXT | WRITE, 2);
        r.set(2, STATUS, 1, WRITE);
        r.offer(0);
        // EVENT_IDX is negotiated: the driver asks for the next completion, as
        // virtqueue_enable_cb does once it has seen the used ring up to here.
        r.set_used_event(r.used_idx());
        wr(QUEUE_SELECT, 2, 0);
        const u32 notify_off = u32(rd(QUEUE_NOTIFY_OFF, 2));
        mmio_w(at(notify, notify_off * notify_mult), 2, 0);
    }
    void expect_read_done(u16 n, u64 sector)
    {
        EXPECT_EQ(r.used_idx(), n);
        EXPECT_EQ(r.used_id(u16(n - 1)), 0u);
        EXPECT_EQ(r.used_len(u16(n - 1)), 513u);
        EXPECT_EQ(g.at(STATUS)[0], BLK_S_OK);
        EXPECT_EQ(std::memcmp(g.at(DATA), disk.data() + sector * 512, 512), 0);
        EXPECT_TRUE(g.guards_ok());
    }
};

TEST(VirtioPciFunction, IdsAndHeader)
{
    Rig t;
    EXPECT_EQ(t.cfg(0x00), 0x10421af4u);                        // 1af4:1042, virtio-blk modern
    EXPECT_EQ(t.cfg(0x08), 0x01800001u);                        // class 018000, revision 1
    EXPECT_EQ(t.cfg(0x2c), 0x00421af4u);                        // subsystem 1af4:0042
    EXPECT_EQ(t.cfg(0x3d, 1), 1u);                              // INTA
    EXPECT_EQ(t.fn.msix_vectors(), 2u);                         // one queue + configuration
}

TEST(VirtioPciFunction, LinuxProbeThenABlkReadWithMsix)
{
    Rig t;
    t.enumerate();
    t.walk_caps();
    // Every structure in BAR 0, each in its page, lengths the transport's.
    for (const Where *w : {&t.common_cfg, &t.notify, &t.isr, &t.device}) EXPECT_EQ(w->bar, 0u);
    EXPECT_EQ(t.common_cfg.offset, 0x0000u);
    EXPECT_EQ(t.common_cfg.length, PciTransport::COMMON_BYTES);
    EXPECT_EQ(t.isr.offset, 0x1000u);
    EXPECT_EQ(t.isr.length, 1u);
    EXPECT_EQ(t.device.offset, 0x2000u);
    EXPECT_EQ(t.device.length, BLK_CONFIG_SIZE);
    EXPECT_EQ(t.notify.offset, 0x3000u);
    EXPECT_EQ(t.notify.length, 4u);
    EXPECT_EQ(t.notify_mult, 4u);
    EXPECT_EQ(t.msix_size, 2u);
    EXPECT_EQ(t.table_bir, 0u);
    EXPECT_EQ(t.table_off, 0x4000u);
    EXPECT_EQ(t.pba_bir, 0u);
    EXPECT_EQ(t.pba_off, 0x5000u);

    t.enable_msix();
    t.bring_up(0, 1);
    // virtio_blk's probe reads the capacity from the device configuration.
    EXPECT_EQ(t.mmio(t.at(t.device, 0), 8), DISK / 512);

    t.read_sector(7);
    t.expect_read_done(1, 7);
    // Vector 1's message, as programmed in the table, reached the bus's MSI sink; no INTx.
    EXPECT_EQ(t.sinks.msis, (std::vector<Msg>{{MSI_ADDR, MSI_DATA_BASE + 1}}));
    EXPECT_TRUE(t.sinks.lines.empty());
    EXPECT_EQ(t.mmio(t.at(t.isr, 0), 1), 0u);
    EXPECT_TRUE(t.sinks.reports.empty());

    // A masked vector waits in the PBA and goes out on unmask.
    t.mmio_w(t.bar + t.table_off + 16 + 12, 4, 1);
    t.read_sector(9);
    t.expect_read_done(2, 9);
    EXPECT_EQ(t.sinks.msis.size(), 1u);
    EXPECT_EQ(t.mmio(t.bar + t.pba_off, 8), 0x2u);
    t.mmio_w(t.bar + t.table_off + 16 + 12, 4, 0);
    EXPECT_EQ(t.sinks.msis.size(), 2u);
    EXPECT_EQ(t.sinks.msis.back(), (Msg{MSI_ADDR, MSI_DATA_BASE + 1}));
    EXPECT_EQ(t.mmio(t.bar + t.pba_off, 8), 0u);
    EXPECT_EQ(t.fn.transport().stats().notifies, 2u);
}

TEST(VirtioPciFunction, IntxWithoutMsix)
{
    Rig t;
    t.enumerate();
    t.walk_caps();
    // vp_find_vqs_intx: no MSI-X, every vector NO_VECTOR.
    t.bring_up(NO_VECTOR, NO_VECTOR);
    t.read_sector(3);
    t.expect_read_done(1, 3);
    EXPECT_TRUE(t.sinks.msis.empty());
    const u32 gsi = PciBus::intx_gsi(GSI, DEV, 1);
    ASSERT_EQ(t.sinks.lines.size(), 1u);
    EXPECT_EQ(t.sinks.lines[0].gsi, gsi);
    EXPECT_TRUE(t.sinks.lines[0].level);
    EXPECT_TRUE(t.cfg(0x04) >> 16 & 0x8);                        // status: interrupt
    // vp_interrupt reads the ISR: queue bit, and the read clears it and drops the line.
    EXPECT_EQ(t.mmio(t.at(t.isr, 0), 1), ISR_QUEUE);
    ASSERT_EQ(t.sinks.lines.size(), 2u);
    EXPECT_EQ(t.sinks.lines[1].gsi, gsi);
    EXPECT_FALSE(t.sinks.lines[1].level);
    EXPECT_FALSE(t.cfg(0x04) >> 16 & 0x8);
    EXPECT_EQ(t.mmio(t.at(t.isr, 0), 1), 0u);
    EXPECT_EQ(t.sinks.lines.size(), 2u);
}

TEST(VirtioPciFunction, VectorsIgnoredWhileMsixIsOff)
{
    // A driver that programmed vectors but left MSI-X disabled still gets its
    // interrupts, by ISR and INTx (4.1.5.3); enabling MSI-X turns INTx off.
    Rig t;
    t.enumerate();
    t.walk_caps();
    t.bring_up(0, 1);
    t.read_sector(1);
    t.expect_read_done(1, 1);
    EXPECT_TRUE(t.sinks.msis.empty());
    ASSERT_EQ(t.sinks.lines.size(), 1u);
    EXPECT_TRUE(t.sinks.lines[0].level);
    EXPECT_EQ(t.mmio(t.at(t.isr, 0), 1), ISR_QUEUE);
    EXPECT_FALSE(t.sinks.lines.back().level);

    t.enable_msix();
    t.read_sector(2);
    t.expect_read_done(2, 2);
    EXPECT_EQ(t.sinks.msis, (std::vector<Msg>{{MSI_ADDR, MSI_DATA_BASE + 1}}));
    EXPECT_EQ(t.sinks.lines.size(), 2u);
}

TEST(VirtioPciFunction, HolesAndOtherWidthsReadZero)
{
    Rig t;
    t.enumerate();
    t.walk_caps();
    t.enable_msix();
    t.bring_up(0, 1);
    // Past each region's registers, in its page, and the reserved pages: 0, writes dropped.
    const u64 holes[] = {PciTransport::COMMON_BYTES, 0x1001, 0x2000 + BLK_CONFIG_SIZE + 4, 0x3004, 0x6000, 0x7ff8};
    for (u64 off : holes) {
        t.mmio_w(t.bar + off, 4, 0xffffffff);
        EXPECT_EQ(t.mmio(t.bar + off, 4), 0u) << std::hex << off;
    }
    // A notify beyond the queue's slot is nothing; the device is still fine.
    t.mmio_w(t.bar + 0x3800, 2, 0);
    EXPECT_EQ(t.status(), ACK | DRV | FOK | DOK);
    EXPECT_EQ(t.fn.transport().stats().notifies, 0u);
    // The MSI-X table reads what was programmed (PciFunction's, not the transport's).
    EXPECT_EQ(t.mmio(t.bar + t.table_off + 8, 4), MSI_DATA_BASE);
    // Past the BAR: not decoded.
    EXPECT_FALSE(t.bus.covers(t.bar + VirtioPciFunction::BAR_BYTES));
}

TEST(VirtioPciFunction, DriverMisstepIsReported)
{
    Rig t;
    t.enumerate();
    t.walk_caps();
    t.enable_msix();
    t.wr(DEVICE_STATUS, 1, ACK | DRV);
    t.wr(CONFIG_MSIX_VECTOR, 2, 0);
    t.mmio_w(t.at(t.notify, 0), 2, 0);                          // a notify before DRIVER_OK
    EXPECT_TRUE(t.status() & STATUS_NEEDS_RESET);
    ASSERT_EQ(t.sinks.reports.size(), 1u);
    EXPECT_EQ(t.sinks.reports[0], "notify of queue 0 before DRIVER_OK");
    EXPECT_STREQ(t.fn.transport().last_error(), "notify of queue 0 before DRIVER_OK");
    // The configuration change interrupt on the config vector (0).
    EXPECT_EQ(t.sinks.msis, (std::vector<Msg>{{MSI_ADDR, MSI_DATA_BASE}}));
    // A reset clears it, and the device comes up again.
    t.bring_up(0, 1);
    EXPECT_STREQ(t.fn.transport().last_error(), "");
    t.read_sector(4);
    t.expect_read_done(1, 4);
}

} // namespace

// libFuzzer target for the virtio-pci transport's registers with virtio-blk
// behind them: the input is a program of register accesses and notifies, then
// the guest's RAM image (rings, descriptors, requests).
//
// Program: one opcode byte each (low 3 bits), its operands after it:
//   0 write common: off (byte, mod 0x40), size log2 (byte, mod 4), value (8 bytes)
//   1 read common:  off, size log2
//   2 notify:       off (byte, mod 16), size log2
//   3 read ISR
//   4 device config: off (byte), size log2, write if bit 7 of the opcode (value byte)
//   5 Linux's bring-up of queue 0: flags (bit 0 no VERSION_1, bit 1 an unoffered
//     feature, bit 2 no EVENT_IDX, bit 3 skip FEATURES_OK, bit 4 skip DRIVER_OK),
//     queue size log2, desc/avail/used (bytes, x16 from RAM's start), vector
//   6 run_pending
//   7 end of the program; the rest is the RAM image from gpa 0x1000.
// Guest RAM is 8 KiB at 0x1000 inside a host buffer with guard bytes, and so is
// the 4 KiB disk. Whatever the program: nothing outside RAM or the disk
// changes; DEVICE_NEEDS_RESET has a reason and stops all servicing until a
// reset; FEATURES_OK means VERSION_1 and only offered bits were negotiated;
// MSI-X vectors stay inside the table; the INTx line follows the ISR. Any
// broken invariant traps.
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernel/virtio/blk.hpp"
#include "tests/fuzz/guarded.hpp"
#include "kernel/virtio/pci_transport.hpp"

namespace {

using namespace virtio;
using Region = PciTransport::Region;

constexpr u64 RAM = 0x1000, RAM_BYTES = 0x2000, DISK = 0x1000;
constexpr u16 MSIX = 2;

using fuzz::check;
using fuzz::Guarded;

Guarded<RAM_BYTES> ram;
Guarded<DISK> disk;

struct Sink final : IrqSink {
    bool intx = false;
    u64 reasons = 0;
    void raise(u16 v) override { check(v < MSIX); }
    void raise_intx() override { intx = true; }
    void lower_intx() override { intx = false; }
    void needs_reset(const char *r) override
    {
        check(r && r[0]);
        reasons++;
    }
};

struct Input {
    const u8 *p, *end;
    u8 byte() { return p < end ? *p++ : 0; }
    u64 u64le()
    {
        u64 v = 0;
        for (unsigned i = 0; i < 8; i++) v |= u64(byte()) << 8 * i;
        return v;
    }
};

struct Rig {
    BlkDevice blk{disk.mid(), DISK, false};
    BlkVirtio dev{blk};
    Sink sink;
    GuestMemory mem;
    PciTransport t{dev, mem, sink, MSIX};

    u64 rd(u32 off, u8 size) { return t.read(Region::common, off, size); }
    void wr(u32 off, u8 size, u64 v) { t.write(Region::common, off, size, v); }

    void bring_up(Input &in)
    {
        using namespace common;
        const u8 flags = in.byte();
        const u8 qlog = in.byte();
        const u64 desc = RAM + 16ull * in.byte(), avail = RAM + 16ull * in.byte(), used = RAM + 16ull * in.byte();
        const u8 vec = in.byte();
        wr(DEVICE_STATUS, 1, 0);
        wr(DEVICE_STATUS, 1, STATUS_ACKNOWLEDGE);
        wr(DEVICE_STATUS, 1, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        u64 f = dev.features();
        if (flags & 1) f &= ~F_VERSION_1;
        if (flags & 2) f |= 1ull << 1;
        if (flags & 4) f &= ~F_EVENT_IDX;
        for (u32 half = 0; half < 2; half++) {
            wr(DRIVER_FEATURE_SELECT, 4, half);
            wr(DRIVER_FEATURE, 4, u32(f >> 32 * half));
        }
        u8 st = STATUS_ACKNOWLEDGE | STATUS_DRIVER;
        if (!(flags & 8)) wr(DEVICE_STATUS, 1, st |= STATUS_FEATURES_OK);
        wr(QUEUE_SELECT, 2, 0);
        wr(QUEUE_SIZE, 2, 1u << (qlog % 10));
        wr(QUEUE_DESC, 8, desc);
        wr(QUEUE_DRIVER, 8, avail);
        wr(QUEUE_DEVICE, 8, used);
        wr(QUEUE_MSIX_VECTOR, 2, vec < 0x80 ? vec % 4 : NO_VECTOR);
        wr(CONFIG_MSIX_VECTOR, 2, vec & 1 ? 0 : NO_VECTOR);
        wr(QUEUE_ENABLE, 2, 1);
        if (!(flags & 16)) wr(DEVICE_STATUS, 1, st | STATUS_DRIVER_OK);
    }

    // What must hold between any two accesses.
    void invariants(u8 status_before, u64 requests_before, bool was_reset)
    {
        using namespace common;
        const u8 st = t.status();
        const char *why = t.last_error();
        check((st & STATUS_NEEDS_RESET) ? why[0] != 0 : why[0] == 0);
        const TransportStats s = t.stats();
        check(s.errors <= s.resets + 1 && s.errors == sink.reasons);
        // Stopped means stopped, until the driver resets the device.
        if ((status_before & STATUS_NEEDS_RESET) && !was_reset) check(blk.stats().requests == requests_before);
        if (st & STATUS_FEATURES_OK) {
            // Reading through the select is neutral: restore it.
            const u64 sel = rd(DRIVER_FEATURE_SELECT, 4);
            wr(DRIVER_FEATURE_SELECT, 4, 0);
            u64 f = rd(DRIVER_FEATURE, 4);
            wr(DRIVER_FEATURE_SELECT, 4, 1);
            f |= rd(DRIVER_FEATURE, 4) << 32;
            wr(DRIVER_FEATURE_SELECT, 4, sel);
            check((f & F_VERSION_1) && !(f & ~dev.features()));
        }
        check(!(st & STATUS_DRIVER_OK) || (st & STATUS_FEATURES_OK));
        const u64 v = rd(CONFIG_MSIX_VECTOR, 2);
        check(v < MSIX || v == NO_VECTOR);
        check(rd(NUM_QUEUES, 2) == 1);
        check(ram.ok() && disk.ok());
    }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ram.init();
    disk.init();
    memset(ram.mid(), 0, RAM_BYTES);
    for (u64 i = 0; i < DISK; i++) disk.mid()[i] = u8(i);

    // The program runs up to opcode 7 (or the input's end); the RAM image follows it.
    static constexpr unsigned OPERANDS[8] = {10, 2, 2, 0, 3, 6, 0, 0};
    const u8 *p = data, *end = data + size;
    while (p < end && (*p & 7) != 7) p += 1 + min<usize>(OPERANDS[*p & 7], usize(end - p - 1));
    Input in{data, p};
    if (p < end) p++;
    memcpy(ram.mid(), p, min<usize>(usize(end - p), RAM_BYTES));

    Rig r;
    check(r.mem.add(GuestPhys(RAM), RAM_BYTES, ram.mid()).ok());
    // Fresh from construction: nothing stopped yet, the constructor's reset uncounted.
    check(r.t.status() == 0 && r.t.stats().resets == 0);

    for (unsigned ops = 0; in.p < in.end && ops < 256; ops++) {
        const u8 st = r.t.status();
        const u64 req = r.blk.stats().requests;
        const u64 resets = r.t.stats().resets;
        const u8 op = in.byte();
        switch (op & 7) {
        case 0: {
            const u32 off = in.byte() % 0x40;
            const u8 sz = u8(1u << (in.byte() % 4));
            r.wr(off, sz, in.u64le());
            break;
        }
        case 1: {
            const u32 off = in.byte() % 0x40;
            (void)r.rd(off, u8(1u << (in.byte() % 4)));
            break;
        }
        case 2: {
            const u32 off = in.byte() % 16;
            r.t.write(Region::notify, off, u8(1u << (in.byte() % 4)), 0);
            break;
        }
        case 3: {
            const bool line = r.sink.intx;
            const u64 isr = r.t.read(Region::isr, 0, 1);
            check(isr <= (ISR_QUEUE | ISR_CONFIG) && line == (isr != 0) && !r.sink.intx);
            break;
        }
        case 4: {
            const u32 off = in.byte();
            const u8 sz = u8(1u << (in.byte() % 4));
            const u8 v = in.byte();
            if (op & 0x80) r.t.write(Region::device, off, sz, v);
            else check(r.t.read(Region::device, off, sz) == (off % sz == 0 && off < BLK_CONFIG_SIZE ? r.blk.config_read(off, sz) : 0));
            break;
        }
        case 5: r.bring_up(in); break;
        case 6: (void)r.t.run_pending(); break;
        }
        r.invariants(st, req, r.t.stats().resets != resets);
    }
    return 0;
}
